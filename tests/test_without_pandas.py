# SPDX-License-Identifier: GPL-3.0-or-later
"""Inside a stock Blender there is no pandas/pyarrow: generation must still finish
(index.csv with the standard library), and validation must say what is missing."""

from __future__ import annotations

import sys

from facs_dataset_generator.core import config as cfg
from facs_dataset_generator.core import dataset


def _conf(out):
    c = cfg.GenerationConfig(out=str(out), count=3, emotions=("Joy", "Anger", "Neutral"), seed=4)
    c.render.resolution = (40, 40)
    c.render.samples = 1
    c.render.denoise = False
    c.render.device = "cpu"
    return c


def test_generate_and_validate_without_pandas(addon, tmp_path, monkeypatch):
    from facs_dataset_generator.pipeline import runner

    out = tmp_path / "ds"
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "pandas", None)
        m.setitem(sys.modules, "pyarrow", None)
        assert not dataset.have_tables()
        res = runner.generate(_conf(out))
        assert res.written == 3
        assert (out / "index.csv").is_file()
        assert not (out / "index.parquet").exists()
        problems = dataset.validate_dataset(out)
        assert len(problems) == 1 and "pandas and pyarrow are not installed" in problems[0]
    plain = dataset.read_index(out)
    # with pandas back: the only problem is the missing parquet, and the plain index.csv
    # holds exactly the rows that a pandas rebuild writes
    problems = dataset.validate_dataset(out)
    assert problems and all("index.parquet missing" in p for p in problems), problems
    df = dataset.rebuild_index(out)
    assert df is not None and dataset.validate_dataset(out) == []
    rebuilt = dataset.read_index(out)
    assert list(plain.columns) == list(rebuilt.columns)
    assert plain["sample_id"].tolist() == rebuilt["sample_id"].tolist() == ["000000", "000001", "000002"]
    num = [c for c in plain.columns if c not in ("sample_id", "emotion", "image")]
    assert (abs(plain[num].to_numpy(float) - rebuilt[num].to_numpy(float)) < 1e-9).all()
