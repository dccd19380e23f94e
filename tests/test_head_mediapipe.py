# SPDX-License-Identifier: GPL-3.0-or-later
"""An independent detector sees the built-in head and its expressions (Cycles + MediaPipe).

Renders at 384 px (12 samples, denoised) and runs ``mediapipe.solutions.face_mesh``
(static image mode). Figures for more views: ``benchmarks/head_mediapipe.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import has_mediapipe

pytestmark = [
    pytest.mark.slow,
    pytest.mark.mediapipe,
    pytest.mark.skipif(not has_mediapipe(), reason="mediapipe not installed"),
]

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

VISIBLE_AUS = ("AU01", "AU02", "AU04", "AU12", "AU15", "AU20", "AU25", "AU26", "AU43")


@pytest.fixture
def rig(addon):
    import head_mediapipe as hb

    from facs_dataset_generator.pipeline import head

    scene, cam = hb.setup_scene(res=384, samples=12)
    obj = head.add_builtin_head(scene)
    return hb, scene, cam, obj


def test_face_found_and_landmarks_agree(rig):
    hb, scene, cam, obj = rig
    errors = {}
    for yaw in (0, 30, -30, 45, -45):
        r = hb.measure_view(scene, cam, obj, yaw, 0.0)
        assert r["found"], f"MediaPipe found no face at yaw {yaw}"
        errors[yaw] = r["err_iod"]
    print("mean landmark error / IOD per yaw:", {k: round(v, 3) for k, v in errors.items()})
    assert errors[0] < 0.04  # MediaPipe's own canonical mesh: 0.037 (shared README)
    assert max(errors[30], errors[-30]) < 0.07
    assert max(errors[45], errors[-45]) < 0.12


def test_expressions_are_visible_to_mediapipe(rig):
    from facs_dataset_generator.core import au_proxies

    hb, scene, cam, obj = rig
    neutral = hb.measure_view(scene, cam, obj, 0.0, 0.0)
    assert neutral["found"]
    report = {}
    for au in VISIBLE_AUS:
        r = hb.measure_view(scene, cam, obj, 0.0, 0.0, {au: 1.0})
        assert r["found"], au
        sign = au_proxies.PROXIES[au].sign
        det = au_proxies.proxy_change(au, neutral["det_px"], r["det_px"]) * sign
        gt = au_proxies.proxy_change(au, neutral["gt_px"], r["gt_px"]) * sign
        report[au] = (round(gt, 3), round(det, 3))
        assert det > max(0.01, 0.2 * gt), f"{au}: MediaPipe proxy change {det:+.3f} IOD (ground truth {gt:+.3f})"
    print("proxy change (ground truth, MediaPipe) in IOD, documented sign:", report)
    assert np.isfinite(list(report.values())).all()
