# SPDX-License-Identifier: GPL-3.0-or-later
"""End to end on the MB-Lab test characters, through the ``facsgen`` CLI in subprocesses.

Per character (``../shared/data/mblab/mblab_{female,male}_facs.blend``, copied to ``tmp_path``;
the AGPL test data never enters the repository):

1. ``facsgen automap --blend COPY --character NAME --save-blend`` (few views, small renders);
2. ``facsgen generate`` with emotions whose AUs the MB-Lab rig lacks (Disgust: AU16, Contempt:
   AU12_R/AU14_R): without ``--allow-drop-unsupported`` it stops before rendering anything, with
   an error naming the AUs and the character; with the flag it writes a 4-sample dataset whose
   ``dataset.json`` records the dropped AUs and whose columns for them are 0;
3. ``facsgen validate DIR`` exits 0, and the CSV landmarks lie on the face: inside the image,
   the eyes above the nose tip above the mouth, the eyes on either side of the nose.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
MBLAB = ROOT.parent / "shared" / "data" / "mblab"

pytestmark = [
    pytest.mark.mblab,
    pytest.mark.slow,
    pytest.mark.mediapipe,
    pytest.mark.skipif(not MBLAB.is_dir(), reason=f"MB-Lab test characters not available ({MBLAB})"),
    pytest.mark.skipif(importlib.util.find_spec("mediapipe") is None, reason="mediapipe not installed"),
]

#: emotions of the default (EMFACS) preset that need AUs the MB-Lab FACS rig has no slider for,
#: plus two it can express fully
EMOTIONS = "Disgust,Contempt,Joy,Surprise"
DROPPED = ("AU12_R", "AU14_R", "AU16")

EYES = (33, 133, 159, 145, 263, 362, 386, 374)  # eye corners and lid centres, both eyes
MOUTH = (0, 13, 14, 17, 61, 291)  # lip centres and mouth corners
NOSE_TIP = 1


def facsgen(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """Run ``python -m facs_dataset_generator.cli ARGS`` in a fresh process (as a user would)."""
    return subprocess.run([sys.executable, "-m", "facs_dataset_generator.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT.parent)


def _landmarks(row: dict) -> tuple[np.ndarray, np.ndarray]:
    xy = np.array([[float(row[f"lm{i:03d}_x"]), float(row[f"lm{i:03d}_y"])] for i in range(468)])
    vis = np.array([int(float(row[f"lm{i:03d}_visible"])) for i in range(468)])
    return xy, vis


@pytest.mark.parametrize("which", ["female", "male"])
def test_mblab_automap_generate_validate(which, tmp_path):
    src = MBLAB / f"mblab_{which}_facs.blend"
    if not src.is_file():
        pytest.skip(f"{src} not available")
    name = f"MBlab_{which}"
    blend = tmp_path / src.name
    shutil.copy(src, blend)  # the test saves the map into this copy

    # 1. automatic landmark map, stored on the object and saved in the .blend
    r = facsgen("automap", "--blend", blend, "--character", name, "--save-blend",
                "--views", 3, "--resolution", 256, "--samples", 4, "--quiet")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert f"stored the map on '{name}'" in r.stdout, r.stdout[-2000:]

    common = ("generate", "--blend", blend, "--character", name, "--count", 4, "--resolution", 64,
              "--samples", 2, "--emotions", EMOTIONS, "--quiet")

    # 2a. unsupported AUs: refused before anything renders, naming the AUs and the character
    refused = tmp_path / "refused"
    r = facsgen(*common, "--out", refused)
    assert r.returncode != 0, r.stdout[-2000:]
    err = r.stderr
    assert name in err and "cannot express" in err, err[-2000:]
    for au in DROPPED:
        assert au in err, (au, err[-2000:])
    assert "--allow-drop-unsupported" in err
    assert not list(refused.glob("images/*.png")) and not list(refused.glob("annotations/*.csv"))

    # 2b. explicitly allowed: dropped AUs labelled 0 and recorded
    out = tmp_path / "ds"
    r = facsgen(*common, "--out", out, "--allow-drop-unsupported")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    meta = json.loads((out / "dataset.json").read_text())
    assert sorted(meta["dropped_aus"]) == sorted(DROPPED), meta["dropped_aus"]
    assert meta["character"]["name"] == name and meta["character"]["kind"].startswith("mblab")
    rows = list(csv.DictReader((out / "index.csv").open()))
    assert len(rows) == 4 and len(list((out / "images").glob("*.png"))) == 4
    assert {row["emotion"] for row in rows} == set(EMOTIONS.split(","))
    for row in rows:
        for au in DROPPED:
            assert float(row[au]) == 0.0, (row["emotion"], au, row[au])
    disgust = next(row for row in rows if row["emotion"] == "Disgust")
    assert float(disgust["AU09"]) > 0.4  # the AUs the rig has are still labelled

    # 3. the dataset validates (CLI) and its landmarks are on the face
    r = facsgen("validate", out)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    for row in rows:
        w, h = int(row["width"]), int(row["height"])
        xy, vis = _landmarks(row)
        assert np.all(np.isfinite(xy))
        inside = (xy[:, 0] >= 0) & (xy[:, 0] <= w) & (xy[:, 1] >= 0) & (xy[:, 1] <= h)
        assert inside.mean() > 0.98, (row["sample_id"], inside.mean())
        assert vis.mean() > 0.5, (row["sample_id"], vis.mean())  # a face seen from the front half
        eyes_y = xy[list(EYES), 1].mean()
        mouth_y = xy[list(MOUTH), 1].mean()
        nose_y = xy[NOSE_TIP, 1]
        assert eyes_y < nose_y < mouth_y, (row["sample_id"], eyes_y, nose_y, mouth_y)  # image y grows down
        # the subject's right eye (33) is on the image left of the left eye (263), the nose between
        # (for views within 40 degrees of frontal; further round, the nose tip passes the far eye)
        assert xy[33, 0] < xy[263, 0], (row["sample_id"], xy[[33, 263], 0])
        if abs(float(row["yaw"])) < 40:
            assert xy[33, 0] < xy[NOSE_TIP, 0] < xy[263, 0], (row["sample_id"], xy[[33, 1, 263], 0])
        # and the face is a plausible size: eye distance 8..60% of the image width
        assert 0.08 * w < np.linalg.norm(xy[33] - xy[263]) < 0.6 * w
