# SPDX-License-Identifier: GPL-3.0-or-later
"""core.qa: the comparison math of the detector check (bpy-free, synthetic data)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from facs_dataset_generator.core import au_proxies, qa


def _project(points_cam, f=500.0, c=(160.0, 120.0)):
    """Pinhole projection of (N, 3) OpenCV camera points -> pixels, depth, K."""
    k = np.array([[f, 0, c[0]], [0, f, c[1]], [0, 0, 1.0]])
    uv = points_cam[:, :2] / points_cam[:, 2:3] * f + np.asarray(c)
    return uv, points_cam[:, 2].copy(), k


def _face_cam(yaw_deg=0.0, dist=0.6):
    """Canonical face (cm -> m) turned by yaw (> 0: face to the image's left) and placed at
    ``dist`` in front of an OpenCV camera (x right, y down, z forward)."""
    v, _ = qa.canonical_mesh()
    p = v * 0.01
    p = np.stack([p[:, 0], -p[:, 1], -p[:, 2]], axis=1)  # y up -> down, z to viewer -> away
    a = math.radians(yaw_deg)
    # turning the face to the image's left = rotating its forward axis (-z) towards -x
    ry = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    p = p @ ry.T
    return p + np.array([0.0, 0.0, dist])


def test_iod_errors_and_stats():
    lab = np.zeros((468, 2))
    lab[33], lab[263] = (100, 100), (160, 100)
    assert qa.iod(lab) == 60.0
    det = lab + np.array([3.0, 4.0])
    e = qa.landmark_errors(lab, det)
    assert np.allclose(e, 5.0 / 60.0)
    s = qa.error_stats([1, 2, 3, 4, np.nan])
    assert s["mean"] == 2.5 and s["median"] == 2.5 and s["n"] == 4
    assert math.isnan(qa.error_stats([])["mean"])
    with pytest.raises(ValueError):
        qa.landmark_errors(lab, det[:10])


def test_flip_labels_and_yaw_bins():
    xy = np.array([[10.0, 20.0], [300.0, 1.0]])
    assert np.allclose(qa.flip_labels(xy, 320, 240, "y"), [[10, 220], [300, 239]])
    assert np.allclose(qa.flip_labels(xy, 320, 240, "x"), [[310, 20], [20, 1]])
    assert np.allclose(xy, [[10.0, 20.0], [300.0, 1.0]])  # input untouched
    with pytest.raises(ValueError):
        qa.flip_labels(xy, 320, 240, "z")
    assert qa.yaw_bin(0) == "0-15" and qa.yaw_bin(-15) == "15-30" and qa.yaw_bin(44.9) == "30-45"
    assert qa.yaw_bin(-75) == "60+"


def test_similarity_fit_recovers_scale_rotation_shift():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 300, (468, 2))
    a = math.radians(3.0)
    r = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    dst = 0.5 * src @ r.T + np.array([4.0, -2.0])
    f = qa.similarity_fit(src, dst)
    assert f["scale"] == pytest.approx(0.5, abs=1e-9)
    assert f["rotation_deg"] == pytest.approx(3.0, abs=1e-9)
    assert f["rms"] < 1e-9
    g = qa.similarity_fit(src, src + np.array([0.7, -0.2]))
    assert g["scale"] == pytest.approx(1.0) and g["shift_x"] == pytest.approx(0.7) and g["shift_y"] == pytest.approx(-0.2)


def test_correlations():
    x = np.arange(10.0)
    assert qa.pearson(x, 2 * x + 1) == pytest.approx(1.0)
    assert qa.spearman(x, x**3) == pytest.approx(1.0)
    assert qa.spearman(x, -np.exp(x)) == pytest.approx(-1.0)
    assert math.isnan(qa.pearson(np.zeros(5), x[:5]))


def test_au_agreement_sees_a_smile_and_not_noise():
    v, _ = qa.canonical_mesh()
    base = np.stack([v[:, 0], -v[:, 1]], axis=1) * 10 + 200  # image-like, y down
    rng = np.random.default_rng(1)
    intens = rng.uniform(0, 1, 12)
    pts = []
    for t in intens:
        p = base.copy()
        p[[61, 291], 1] -= 8.0 * t  # corners rise (y down)
        pts.append(p + rng.normal(0, 0.05, p.shape))
    res = qa.au_agreement({"AU12": intens, "AU15": intens, "AU99": intens}, pts)
    assert "AU99" not in res
    assert res["AU12"]["r"] > 0.95 and res["AU15"]["r"] < -0.95  # AU15's proxy has the opposite sign
    assert res["AU12"]["n"] == 12
    shuffled = qa.au_agreement({"AU12": rng.permutation(intens)}, pts)["AU12"]["r"]
    assert abs(shuffled) < 0.9
    missing = qa.au_agreement({"AU12": intens}, [None] * 6 + pts[6:])["AU12"]
    assert missing["n"] == 6
    assert au_proxies.PROXIES["AU12"].sign == 1


def test_nose_offset_sign_follows_yaw():
    for yaw in (-30.0, 30.0):
        uv, _, _ = _project(_face_cam(yaw))
        off = qa.nose_offset(uv)
        assert np.sign(off) == -np.sign(yaw), (yaw, off)


def test_mirror_partners_and_lips():
    m = qa.mirror_partners()
    assert m[33] == 263 and m[263] == 33 and m[61] == 291 and m[1] == 1
    assert np.array_equal(m[m], np.arange(468))
    lips = qa.lip_landmarks()
    assert {13, 14, 78, 308, 61, 291, 0, 17} <= lips
    assert not ({1, 33, 263, 152, 10} & lips)


@pytest.mark.parametrize("yaw", [0.0, 35.0, -35.0])
def test_visibility_audit_on_consistent_flags(yaw):
    pc = _face_cam(yaw)
    uv, depth, k = _project(pc)
    cos = qa.facing(pc)
    assert cos[1] > 0.6  # nose tip faces the camera
    visible = cos > 0.1  # a back-face test is a consistent (if crude) flag
    a = qa.visibility_audit(uv, depth, visible, k, 320, 240)
    assert a["inside"].all()
    assert not a["unexplained"].any() and not a["near_facing_hidden"].any() and not a["far_away_visible"].any()
    if yaw:
        # yaw > 0 turns the face to the image's left: the camera sees the subject's left side
        near, far = (263, 33) if yaw > 0 else (33, 263)
        assert a["far_m"][far] > 0 > a["far_m"][near]
        assert a["far"][[454, 234][int(yaw > 0)]]


def test_visibility_audit_catches_wrong_flags():
    pc = _face_cam(35.0)
    uv, depth, k = _project(pc)
    good = qa.facing(pc) > 0.1
    inverted = qa.visibility_audit(uv, depth, ~good, k, 320, 240)
    assert inverted["near_facing_hidden"].sum() > 50 and inverted["far_away_visible"].sum() > 5
    assert inverted["unexplained"].sum() > 50
    all_visible = qa.visibility_audit(uv, depth, np.ones(468, bool), k, 320, 240)
    assert all_visible["far_away_visible"].sum() > 5
    all_hidden = qa.visibility_audit(uv, depth, np.zeros(468, bool), k, 320, 240)
    assert all_hidden["unexplained"].sum() > 100
    # a landmark pushed outside the image but flagged visible
    uv2 = uv.copy()
    uv2[10] = (-5.0, 50.0)
    assert qa.visibility_audit(uv2, depth, good, k, 320, 240)["outside_visible"][10]


def test_label_arrays_from_dataframe():
    pd = pytest.importorskip("pandas")
    rows = []
    for s in range(2):
        r = {"sample_id": f"{s:06d}", "emotion": "Joy", "width": 320, "height": 240, "yaw": 10.0 * s,
             "fx": 500.0, "fy": 501.0, "cx": 160.0, "cy": 120.0}
        for i in range(468):
            r[f"lm{i:03d}_x"], r[f"lm{i:03d}_y"] = i + s, 2 * i
            r[f"lm{i:03d}_depth"], r[f"lm{i:03d}_visible"] = 0.6, i % 2
        rows.append(r)
    lab = qa.label_arrays(pd.DataFrame(rows))
    assert lab["xy"].shape == (2, 468, 2) and lab["xy"][1, 5].tolist() == [6.0, 10.0]
    assert lab["visible"][0, :4].tolist() == [False, True, False, True]
    assert lab["K"][0, 1, 1] == 501.0 and lab["K"][0, 2, 2] == 1.0
    assert lab["yaw"].tolist() == [0.0, 10.0]


def test_expression_specificity_prefers_the_own_pose():
    uv, _, _ = _project(_face_cam(10.0))
    smile = uv.copy()
    smile[list(qa.lip_landmarks()), 1] += 5.0  # jaw drop
    smile[[61, 291], 1] -= 8.0
    xy = np.stack([uv, smile, uv])
    vis = np.ones((3, 468), dtype=bool)
    dets = [uv + 0.1, smile - 0.1, None]
    res = qa.expression_specificity(xy, vis, dets, ["a", "a", "b"])
    assert [i for i, _, _ in res] == [0, 1]  # sample 2: no detection, no partner
    for _, own, other in res:
        assert own < 0.5 * other
    swapped = qa.expression_specificity(xy[[1, 0, 2]], vis, dets, ["a", "a", "b"])
    assert all(own > other for _, own, other in swapped)
    assert qa.expressive_landmarks().sum() > 80 and qa.expressive_landmarks()[[61, 107, 159, 152]].all()


def test_eye_line_angle_and_nose_drop_signs():
    uv, _, _ = _project(_face_cam(0.0))
    c = uv.mean(0)
    a = math.radians(10.0)  # clockwise on screen (y down)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    assert qa.eye_line_angle((uv - c) @ rot.T + c) == pytest.approx(qa.eye_line_angle(uv) + 10.0, abs=1e-9)
    assert abs(qa.eye_line_angle(uv)) < 1e-6
    # face looks up (pitch > 0): rotate about the camera x axis so the forehead recedes
    v, _ = qa.canonical_mesh()
    drops = []
    for pitch in (-15.0, 0.0, 15.0):
        b = math.radians(pitch)
        rx = np.array([[1, 0, 0], [0, math.cos(b), math.sin(b)], [0, -math.sin(b), math.cos(b)]])
        p = _face_cam(0.0) - np.array([0, 0, 0.6])
        drops.append(qa.nose_drop(_project(p @ rx.T + np.array([0, 0, 0.6]))[0]))
    assert drops[0] > drops[1] > drops[2]


def test_expression_specificity_removes_a_different_roll():
    uv, _, _ = _project(_face_cam(0.0))
    a = math.radians(12.0)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    rolled = (uv - [160, 120]) @ rot.T + [160, 120]  # same pose, camera rolled
    xy = np.stack([uv, rolled])
    res = qa.expression_specificity(xy, np.ones((2, 468), bool), [uv, rolled], ["a", "a"])
    for _, own, other in res:  # same expression: the aligned other labels fit as well
        assert own < 1e-9 and other < 1e-6
