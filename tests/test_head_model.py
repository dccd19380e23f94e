# SPDX-License-Identifier: GPL-3.0-or-later
"""The built-in head's NumPy builder, AU fields and proxies (bpy-free)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from conftest import CANONICAL_OBJ, ROOT

from facs_dataset_generator.core import au_fields, au_proxies
from facs_dataset_generator.core import head_model as hm


@pytest.fixture(scope="module")
def head():
    return hm.build_head()


def _posed(head, values):
    x = head.verts.copy()
    for k, v in values.items():
        x += v * head.shape_keys[k]
    return x


def test_landmarks_are_the_first_vertices(head):
    canon = hm.to_blender(hm.load_canonical()[0])
    dev = np.linalg.norm(head.verts[:468] - canon, axis=1)
    # only the lips are corrected (the canonical mean face has them 5 mm apart)
    assert dev.max() < 0.004
    moved = set(np.flatnonzero(dev > 1e-4).tolist())
    assert moved and not moved & set(hm.eye_loop(hm.EYE_R_UPPER, hm.EYE_R_LOWER))
    assert np.array_equal(head.landmark_indices, np.arange(468))
    iod = np.linalg.norm(head.verts[33] - head.verts[263])
    assert 0.08 < iod < 0.1  # metres: a real head's size
    z = head.verts[:, 2]
    assert 0.2 < z.max() - head.verts[head.part <= 1, 2].min() < 0.3  # head + neck stub height


def test_mesh_is_closed_and_consistently_wound(head):
    f = head.faces[head.part[head.faces].max(axis=1) <= hm.PART_RIM]
    directed = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    key = directed[:, 0].astype(np.int64) * 10**6 + directed[:, 1]
    assert len(np.unique(key)) == len(key), "an edge is used twice in the same direction"
    und, counts = np.unique(np.sort(directed, axis=1), axis=0, return_counts=True)
    assert counts.max() == 2
    boundary = und[counts == 1]
    # the only open edges are the lid rims' inner ends, hidden inside the eyeballs
    assert np.all(head.part[boundary] == hm.PART_RIM)
    # outward: the skin (not pocket) faces point away from the head centre on average
    c = head.verts[f].mean(axis=1)
    n = hm.face_normals(head.verts, f)
    skin = (head.part[f] <= hm.PART_CRANIUM).all(axis=1)
    assert np.mean(np.einsum("ij,ij->i", n[skin], c[skin]) > 0) > 0.97


def test_materials_and_attributes(head):
    counts = np.bincount(head.material_index, minlength=len(head.materials))
    for m in (hm.MAT_SKIN, hm.MAT_MOUTH, hm.MAT_SCLERA, hm.MAT_IRIS, hm.MAT_PUPIL):
        assert counts[m] > 0, head.materials[m]
    brow = head.attributes["facs_brow"]
    assert brow[[66, 296, 52, 282]].min() > 0.4 and brow[[1, 152, 10]].max() == 0
    lip = head.attributes["facs_lip"]
    assert lip[[0, 17]].min() > 0.5 and lip[[1, 152]].max() == 0


@pytest.mark.parametrize("au", list(au_proxies.PROXIES))
def test_proxy_moves_the_documented_way(head, au):
    p = au_proxies.PROXIES[au]
    neutral = head.verts[:468]
    posed = _posed(head, {au: 1.0})[:468]
    half = _posed(head, {au: 0.5})[:468]
    d1 = au_proxies.proxy_change(au, neutral, posed) * p.sign
    d_half = au_proxies.proxy_change(au, neutral, half) * p.sign
    assert d1 >= p.min_change, f"{au}: proxy change {d1:.4f} IOD < {p.min_change}"
    assert 0 < d_half < d1


def test_extra_proxy_checks(head):
    n = head.verts[:468]
    assert au_proxies.proxy_change("AU20", n, _posed(head, {"AU12": 1})[:468]) > 0.04  # smile widens the mouth
    assert au_proxies.proxy_change("AU25", n, _posed(head, {"AU26": 1})[:468]) > 0.1  # jaw drop parts the lips
    # unilateral keys move their own side only (L = subject's left = +X)
    for au, own, other in (("AU12_L", 291, 61), ("AU12_R", 61, 291), ("AU14_L", 291, 61), ("AU14_R", 61, 291)):
        d = head.shape_keys[au]
        assert np.linalg.norm(d[own]) > 0.003
        assert np.linalg.norm(d[other]) < 0.1 * np.linalg.norm(d[own])
    assert head.verts[291, 0] > 0 and head.verts[61, 0] < 0


def test_all_shape_keys_present(head):
    names = set(head.shape_keys)
    for au in ("AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU12", "AU14", "AU15", "AU16",
               "AU17", "AU20", "AU23", "AU24", "AU25", "AU26", "AU27", "AU43", "AU45",
               "AU12_L", "AU12_R", "AU14_L", "AU14_R"):
        assert au in names
    ids = [k for k in names if k.startswith("ID_")]
    assert len(ids) >= 6
    assert set(au_fields.au_names()) | set(au_fields.identity_names()) == names


def test_fields_are_smooth(head):
    v, f, part = head.verts, head.faces, head.part
    contour = np.array(hm.lip_loop() + hm.eye_loop(hm.EYE_R_UPPER, hm.EYE_R_LOWER)
                       + hm.eye_loop(hm.EYE_L_UPPER, hm.EYE_L_LOWER))
    dc = np.linalg.norm(v[:, None] - v[contour][None], axis=2).min(axis=1)
    e, _ = hm.unique_edges(f[(part[f] <= hm.PART_CRANIUM).all(axis=1)])
    e = e[(dc[e] > 0.006).all(axis=1)]
    length = np.linalg.norm(v[e[:, 0]] - v[e[:, 1]], axis=1)
    for name, d in head.shape_keys.items():
        assert np.isfinite(d).all()
        strain = np.linalg.norm(d[e[:, 0]] - d[e[:, 1]], axis=1) / length
        limit = 2.0 if name in ("AU26", "AU27") else 0.8
        assert strain.max() < limit, f"{name}: max strain {strain.max():.2f}"
    # the neck and the eyeballs never move with AUs
    rigid = part >= hm.PART_NECK
    for name, d in head.shape_keys.items():
        if not name.startswith("ID_"):
            assert np.abs(d[rigid]).max() == 0


LIP_COMBO_AUS = ("AU25", "AU26", "AU27")


def _lip_gap_min(x):
    up = np.array(hm.LIP_INNER_UPPER[1:-1])
    lo = np.array(hm.LIP_INNER_LOWER[1:-1])
    return float((x[up, 2] - x[lo, 2]).min())


def test_lips_do_not_cross(head):
    for vals in itertools.product((0.0, 0.5, 1.0), repeat=3):
        x = _posed(head, dict(zip(LIP_COMBO_AUS, vals)))
        assert _lip_gap_min(x) > -1e-5, vals
    aus = [k for k in head.shape_keys if not k.startswith("ID_")]
    for a, b in itertools.combinations(aus, 2):
        assert _lip_gap_min(_posed(head, {a: 1.0, b: 1.0})) > -1e-5, (a, b)
    # the open jaw really opens the mouth
    assert _lip_gap_min(_posed(head, {"AU26": 1.0})) > 0.005


def _lid_clearance(head, x):
    face = head.part == hm.PART_FACE
    return min(float(np.linalg.norm(x[face] - c, axis=1).min() - head.eye_radius) for c in head.eye_centres)


def test_lids_stay_outside_the_eyeballs(head):
    assert _lid_clearance(head, head.verts) > 0
    for v in (0.25, 0.5, 0.75, 1.0):
        assert _lid_clearance(head, _posed(head, {"AU43": v})) > 0
    aus = [k for k in head.shape_keys if not k.startswith("ID_")]
    for a, b in itertools.combinations_with_replacement(aus, 2):
        assert _lid_clearance(head, _posed(head, {a: 1.0, b: 1.0} if a != b else {a: 1.0})) > 0, (a, b)
    # AU43 closes the eye: upper lid margin meets the lower one
    x = _posed(head, {"AU43": 1.0})
    for up, lo in ((159, 145), (386, 374)):
        assert abs(x[up, 2] - x[lo, 2]) < 0.0008  # seen from the front the lid gap is closed
        assert np.linalg.norm(x[up] - x[lo]) < 0.0025  # the upper lid rests on the lower one


def test_identity_keys_change_the_face(head):
    n = head.verts[:468]
    iod = np.linalg.norm(n[33] - n[263])
    eye_loops = [np.array(hm.eye_loop(hm.EYE_R_UPPER, hm.EYE_R_LOWER)), np.array(hm.eye_loop(hm.EYE_L_UPPER, hm.EYE_L_LOWER))]
    eye_parts = np.flatnonzero(head.part == hm.PART_EYE)
    for name in au_fields.identity_names():
        for s in (-1.0, 1.0):
            x = head.verts + s * head.shape_keys[name]
            assert np.linalg.norm(x[:468] - n, axis=1).max() > 0.02 * iod, name
            # the eyeballs follow the lids rigidly: the lids stay outside
            d = head.shape_keys[name][eye_parts]
            centres = head.eye_centres + s * np.array([d[: len(d) // 2].mean(0), d[len(d) // 2:].mean(0)])
            for c, loop in zip(centres, eye_loops):
                assert np.linalg.norm(x[loop] - c, axis=1).min() > head.eye_radius, name
    # different keys do different things
    flat = np.array([head.shape_keys[k][:468].ravel() for k in au_fields.identity_names()])
    corr = np.corrcoef(flat)
    assert np.abs(corr[np.triu_indices(len(flat), 1)]).max() < 0.9


def test_cold_build_and_data_size():
    # build time is a benchmark figure (benchmarks/setup_costs.py); here: a cold build is the cached one's equal
    hm.build_head.cache_clear()
    hm.load_canonical.cache_clear()
    au_fields.load_table.cache_clear()
    a = hm.build_head()
    hm.build_head.cache_clear()
    b = hm.build_head()
    assert a is not b and np.array_equal(a.verts, b.verts) and np.array_equal(a.faces, b.faces)
    size = sum((ROOT / p).stat().st_size for p in ("data/canonical_face.npz", "data/head_au_fields.json",
                                                     "data/LICENSE-mediapipe.txt", "landmark_map/builtin_head.json"))
    assert size < 1_000_000
    assert (ROOT / "NOTICE").read_text().count("MediaPipe") >= 2


def test_npz_is_reproducible(tmp_path, monkeypatch):
    if not CANONICAL_OBJ.is_file():
        pytest.skip("../shared canonical mesh not available")
    import importlib.util

    spec = importlib.util.spec_from_file_location("convert", ROOT / "scripts" / "convert_canonical_mesh.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    v, f, uv = mod.read_obj(CANONICAL_OBJ)
    cv, cf, cuv = hm.load_canonical()
    assert np.array_equal(v, cv.astype(np.float32)) and np.array_equal(f, cf) and np.array_equal(uv, cuv.astype(np.float32))


def test_proxy_input_conventions(head):
    n3 = head.verts[:468]
    # image points (y down) of a frontal view give the same proxies as the 3D points
    n2 = np.stack([n3[:, 0], -n3[:, 2]], axis=1) * 1000 + 200
    for au in ("AU01", "AU12", "AU26", "AU43"):
        assert au_proxies.proxy(au, n2) == pytest.approx(au_proxies.proxy(au, n3), abs=1e-9)
    with pytest.raises(KeyError):
        au_proxies.proxy("AU99", n3)


@pytest.mark.parametrize("fullness", [-1.0, 0.0, 1.0])
def test_au23_tightens_the_lips(head, fullness):
    """AU23: red lips thinner (both lips), mouth narrower, lips still closed, for any lip
    fullness; as large as the other lip AUs (not a barely visible change)."""
    base = head.verts + fullness * head.shape_keys["ID_lip_fullness"]
    posed = base + head.shape_keys["AU23"]
    n, p = au_proxies.face_frame(base[:468])[0], au_proxies.face_frame(posed[:468])[0]
    d_red = au_proxies.red_lip_height(p) - au_proxies.red_lip_height(n)
    assert d_red <= -au_proxies.PROXIES["AU23"].min_change
    assert au_proxies.PROXIES["AU23"].min_change >= 0.04
    for a, b in ((0, 13), (14, 17)):  # upper and lower red lip each get thinner
        assert np.linalg.norm(p[a] - p[b]) < np.linalg.norm(n[a] - n[b]) - 0.015
    assert au_proxies.mouth_width(p) < au_proxies.mouth_width(n) - 0.02  # lips narrowed
    assert au_proxies.lip_gap(p) < 0.005  # still closed
    # it dominates a co-occurring lip AU's own red-lip change (AU24 lip presser)
    both = base + head.shape_keys["AU23"] + head.shape_keys["AU24"]
    d_both = au_proxies.red_lip_height(au_proxies.face_frame(both[:468])[0]) - au_proxies.red_lip_height(n)
    assert d_both < d_red
