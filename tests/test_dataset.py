# SPDX-License-Identifier: GPL-3.0-or-later
"""Dataset writers, index, resume helpers and validation (bpy-free)."""

from __future__ import annotations

import json
import os
import struct
import zlib

import numpy as np
import pandas as pd
import pytest

from facs_dataset_generator.core import dataset as ds
from facs_dataset_generator.core.config import ConfigError

AUS = ["AU01", "AU06", "AU12", "AU12_R"]


def _png(w: int, h: int) -> bytes:
    raw = b"".join(b"\x00" + bytes(3 * w) for _ in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def _write_sample(out, i, w=32, h=24, aus=None, fmt=None, sid=None):
    fmt = fmt or ds.RowFormatter(AUS)
    sid = sid or f"{i:06d}"
    rng = np.random.default_rng(i)
    uv = rng.uniform([0, 0], [w, h], (468, 2))
    depth = rng.uniform(0.4, 0.6, 468)
    vis = rng.integers(0, 2, 468)
    ds.atomic_write_bytes(ds.image_path(out, sid), _png(w, h))
    row = fmt.format(sid, "Joy", f"images/{sid}.png", w, h, 1234, aus or {"AU06": 0.5, "AU12": 0.75},
                     (1.0, 2.0, 3.0), (0.0, -0.5, 0.1), np.array([[40, 0, 16], [0, 40, 12], [0, 0, 1.0]]),
                     np.eye(3), np.array([0, 0, 0.5]), uv, depth, vis)
    ds.write_annotation(out, sid, fmt.header, row)
    return sid


def _make(tmp_path, n=3, name="d"):
    out = ds.ensure_layout(tmp_path / name)
    fmt = ds.RowFormatter(AUS)
    ds.write_metadata(out, {"config": {"seed": 1, "out": str(out), "shard": [0, 1]}, "columns": fmt.columns,
                            "generation": {"config": {"seed": 1}}})
    for i in range(n):
        _write_sample(out, i, fmt=fmt)
    ds.rebuild_index(out)
    return out


def test_columns_exactly_as_specified():
    cols = ds.columns(AUS)
    assert cols[:6] == ["sample_id", "emotion", "image", "width", "height", "identity_seed"]
    assert cols[6:10] == AUS
    assert cols[10:13] == ["yaw", "pitch", "roll"]
    assert cols[13:16] == ["cam_x", "cam_y", "cam_z"]
    assert cols[16:20] == ["fx", "fy", "cx", "cy"]
    assert cols[20:29] == ["r00", "r01", "r02", "r10", "r11", "r12", "r20", "r21", "r22"]
    assert cols[29:32] == ["tx", "ty", "tz"]
    assert cols[32:36] == ["lm000_x", "lm000_y", "lm000_depth", "lm000_visible"]
    assert cols[-1] == "lm467_visible"
    assert len(cols) == 32 + 4 * 468
    assert len(set(cols)) == len(cols)


def test_row_round_trip(tmp_path):
    out = _make(tmp_path, 2)
    df = pd.read_csv(ds.csv_path(out, "000001"), dtype={"sample_id": str})
    assert list(df.columns) == ds.columns(AUS)
    row = df.iloc[0]
    assert row.sample_id == "000001" and row.AU12 == 0.75 and row.AU01 == 0 and row.identity_seed == 1234
    rng = np.random.default_rng(1)
    uv = rng.uniform([0, 0], [32, 24], (468, 2))
    assert row.lm005_x == pytest.approx(uv[5, 0], abs=1e-4)
    assert row.fx == 40 and row.cy == 12 and row.r11 == 1 and row.tz == 0.5
    idx = ds.read_index(out)
    assert list(idx["sample_id"]) == ["000000", "000001"]
    pq = ds.read_parquet(out / "index.parquet")
    assert list(pq.columns) == ds.columns(AUS)
    assert np.allclose(pq["lm100_y"], idx["lm100_y"])
    assert ds.count_samples(out) == 2
    assert ds.validate_dataset(out) == []


def test_validate_catches_missing_image(tmp_path):
    out = _make(tmp_path)
    ds.image_path(out, "000001").unlink()
    probs = ds.validate_dataset(out)
    assert any("000001.png is missing" in p for p in probs), probs


def test_validate_catches_duplicates(tmp_path):
    out = _make(tmp_path)
    # a CSV whose row claims another sample's id
    text = ds.csv_path(out, "000002").read_text().replace("\n000002,", "\n000001,")
    ds.csv_path(out, "000002").write_text(text)
    probs = ds.validate_dataset(out)
    assert any("duplicate sample_id 000001" in p for p in probs), probs
    # duplicated index rows
    out2 = _make(tmp_path, name="e")
    idx = ds.read_index(out2)
    pd.concat([idx, idx.iloc[:1]]).to_csv(out2 / "index.csv", index=False)
    probs = ds.validate_dataset(out2)
    assert any("index.csv: duplicate sample_id 000000" in p for p in probs), probs


def test_validate_catches_out_of_range_au_and_bad_numbers(tmp_path):
    out = _make(tmp_path)
    _write_sample(out, 1, aus={"AU12": 1.5})
    _write_sample(out, 2, aus={"AU06": -0.25})
    ds.rebuild_index(out)
    probs = ds.validate_dataset(out)
    assert any("AU12 outside [0, 1]" in p for p in probs), probs
    assert any("AU06 outside [0, 1]" in p for p in probs), probs
    # a value that does not parse
    p = ds.csv_path(out, "000000")
    lines = p.read_text().splitlines()
    cells = lines[1].split(",")
    cells[ds.columns(AUS).index("lm010_depth")] = "abc"
    p.write_text(lines[0] + "\n" + ",".join(cells) + "\n")
    probs = ds.validate_dataset(out)
    assert any("lm010_depth" in p and "finite" in p for p in probs), probs


def test_validate_catches_flags_sizes_partial_and_stale_index(tmp_path):
    out = _make(tmp_path)
    p = ds.csv_path(out, "000000")
    lines = p.read_text().splitlines()
    cells = lines[1].split(",")
    cells[ds.columns(AUS).index("lm003_visible")] = "2"
    p.write_text(lines[0] + "\n" + ",".join(cells) + "\n")
    ds.atomic_write_bytes(ds.image_path(out, "000001"), _png(10, 10))
    (out / "images" / ".000009.tmp.png").write_bytes(b"partial")
    ds.atomic_write_bytes(ds.image_path(out, "000007"), _png(32, 24))  # image without CSV
    probs = ds.validate_dataset(out)
    text = "\n".join(probs)
    assert "visible flags other than 0/1" in text
    assert "image is 10x10, row says 32x24" in text
    assert "partial file" in text and ".000009.tmp.png" in text
    assert "000007.png has no annotation CSV" in text
    assert "index.csv does not match" in text  # the edited row differs from the index
    # visible landmark outside the image
    out2 = _make(tmp_path, name="f")
    p = ds.csv_path(out2, "000000")
    lines = p.read_text().splitlines()
    cells = lines[1].split(",")
    c = ds.columns(AUS)
    cells[c.index("lm004_x")], cells[c.index("lm004_visible")] = "40.0", "1"
    p.write_text(lines[0] + "\n" + ",".join(cells) + "\n")
    ds.rebuild_index(out2)
    assert any("outside the image" in q for q in ds.validate_dataset(out2))


def test_validate_missing_metadata_and_index(tmp_path):
    out = _make(tmp_path)
    (out / "index.parquet").unlink()
    (out / "dataset.json").unlink()
    probs = ds.validate_dataset(out)
    assert any("dataset.json missing" in p for p in probs)
    assert any("index.parquet missing" in p for p in probs)
    assert ds.validate_dataset(tmp_path / "nope") == [f"{tmp_path / 'nope'}: not a folder"]


def test_clean_partial_only_touches_given_ids(tmp_path):
    out = _make(tmp_path)
    ds.atomic_write_bytes(ds.image_path(out, "000005"), _png(4, 4))
    (out / "images" / ".000005.tmp.png").write_bytes(b"x")
    (out / "annotations" / ".000005.tmp.csv").write_text("x")
    (out / "images" / ".000006.tmp.png").write_bytes(b"x")
    removed = ds.clean_partial(out, {"000005"})
    assert {p.name for p in removed} == {".000005.tmp.png", ".000005.tmp.csv", "000005.png"}
    assert (out / "images" / ".000006.tmp.png").exists()
    assert ds.count_samples(out) == 3
    (out / ".index.tmp-999999999.csv").write_text("x")  # left by a killed process
    (out / f".index.tmp-{os.getpid()}.parquet").write_text("x")  # a live process (this one) is writing
    ds.clean_partial(out)
    assert not (out / "images" / ".000006.tmp.png").exists()
    assert not (out / ".index.tmp-999999999.csv").exists()
    assert (out / f".index.tmp-{os.getpid()}.parquet").exists()
    s = ds.scan(out)
    assert s.tmp_files == [] and s.image_only == set() and len(s.complete) == 3


def test_atomic_write_leaves_no_tmp(tmp_path):
    p = ds.atomic_write_text(tmp_path / "a.csv", "x\n")
    assert p.read_text() == "x\n"
    assert [q.name for q in tmp_path.iterdir()] == ["a.csv"]
    assert ds.tmp_path(tmp_path / "000001.png").name == f".000001.tmp-{os.getpid()}.png"
    assert ds.is_tmp(".000001.tmp.png") and not ds.is_tmp("000001.png")


def test_rebuild_index_sorted_and_empty(tmp_path):
    out = ds.ensure_layout(tmp_path / "x")
    fmt = ds.RowFormatter(AUS)
    ds.write_metadata(out, {"columns": fmt.columns})
    df = ds.rebuild_index(out)
    assert len(df) == 0 and list(df.columns) == fmt.columns
    for i in (5, 2, 9):
        _write_sample(out, i, fmt=fmt)
    df = ds.rebuild_index(out)
    assert list(df["sample_id"]) == ["000002", "000005", "000009"]


def test_merge_shards(tmp_path):
    a = _make(tmp_path, 0, name="a")
    b = _make(tmp_path, 0, name="b")
    for i in range(0, 6, 2):
        _write_sample(a, i)
    for i in range(1, 6, 2):
        _write_sample(b, i)
    n = ds.merge_datasets([a, b], tmp_path / "m")
    assert n == 6
    assert ds.validate_dataset(tmp_path / "m") == []
    for i in range(6):
        src = a if i % 2 == 0 else b
        assert ds.csv_path(tmp_path / "m", f"{i:06d}").read_text() == ds.csv_path(src, f"{i:06d}").read_text()
    c = _make(tmp_path, 1, name="c")
    meta = json.loads((c / "dataset.json").read_text())
    meta["generation"] = {"config": {"seed": 2}}
    meta["config"]["seed"] = 2
    (c / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="different configuration"):
        ds.merge_datasets([a, c], tmp_path / "m2")


def test_png_size(tmp_path):
    p = tmp_path / "x.png"
    p.write_bytes(_png(7, 5))
    assert ds.png_size(p) == (7, 5)
    p.write_bytes(b"not a png at all, no sir")
    assert ds.png_size(p) is None


def test_column_docs_cover_every_group():
    docs = ds.column_docs(AUS)
    for key in ("sample_id", "yaw", "pitch", "roll", "fx, fy, cx, cy", "r00..r22", "lmNNN_visible"):
        assert key in docs
    assert docs["au_columns"] == "AU01, AU06, AU12, AU12_R"


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux /proc to count native threads")
def test_index_io_starts_no_native_threads(tmp_path):
    """Writing and checking the index must not start Arrow's thread pools: their threads can
    still be alive at interpreter exit and abort the process after the work is done
    ("terminate called without an active exception", exit -6; seen in CI as ``facsgen validate``
    printing OK and then dying, about 1 run in 8 on a loaded machine). Counted in a fresh
    process, so that nothing this pytest process started is counted."""
    import subprocess
    import sys
    import textwrap

    out = _make(tmp_path, 3)
    code = textwrap.dedent(f"""
        import os, sys
        import pandas, pyarrow, pyarrow.parquet  # their import-time threads are not what we count
        from facs_dataset_generator.core import dataset as ds
        before = len(os.listdir("/proc/self/task"))
        ds.rebuild_index({str(out)!r})
        problems = ds.validate_dataset({str(out)!r})
        after = len(os.listdir("/proc/self/task"))
        print(before, after, problems)
        sys.exit(0 if (after == before and not problems) else 1)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, (r.stdout, r.stderr)
