# SPDX-License-Identifier: GPL-3.0-or-later
"""Automatic landmark mapping with MediaPipe (slow: Cycles renders + MediaPipe).

* the built-in head: the automatic map against the exact one (error / inter-ocular distance);
* a re-topologised copy (every triangle split in 4, vertex order shuffled): same check, the
  answer is known by construction (the landmark vertices keep their positions);
* an MB-Lab test character through ``facsgen automap`` (CLI code path): the landmarks land in
  the expected facial regions, judged against the mesh's own eyeballs (no MediaPipe involved).

The figures for the report come from ``benchmarks/automap_accuracy.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

from facs_dataset_generator.landmark_map import N_LANDMARKS, REGIONS, inter_ocular_distance


def has_mediapipe() -> bool:
    import importlib.util

    return importlib.util.find_spec("mediapipe") is not None

pytestmark = [
    pytest.mark.slow,
    pytest.mark.mediapipe,
    pytest.mark.skipif(not has_mediapipe(), reason="mediapipe not installed"),
]

# Issue 6's bounds (fraction of the inter-ocular distance ||p33 - p263||).
SPEC_MEAN, SPEC_MAX = 0.02, 0.06
# Measured (benchmarks/automap_accuracy.py, 9 views, pitch -25..15, both landmark models averaged): mean 0.0154 /
# max 0.0514 (built-in head), 0.0153 / 0.0511 (re-topologised copy). The built-in head is held to the issue's bounds
# (test_builtin_head_automap_issue_bounds); the re-topologised copy too (test_retopologised_head_automap).
GUARD_MEAN, GUARD_MAX = SPEC_MEAN, SPEC_MAX

HEAD_VIEWS = 9
RETOPO_VIEWS = 9
MBLAB_VIEWS = 5


# ----------------------------------------------------------------------------- helpers (also used by the benchmark)


def landmark_errors(points: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per-landmark distance / inter-ocular distance of the truth."""
    return np.linalg.norm(points - truth, axis=1) / inter_ocular_distance(truth)


def retopologise(src, name: str = "Retopo Head", seed: int = 0):
    """A copy of ``src``'s current evaluated surface with every face split in four (same surface)
    and a shuffled vertex order. Returns (object, truth (468, 3) world positions of src's exact landmarks)."""
    import bmesh
    import bpy

    from facs_dataset_generator.pipeline.landmarks import evaluated_vertices

    dg = bpy.context.evaluated_depsgraph_get()
    truth = evaluated_vertices(src, dg)[:N_LANDMARKS]
    bm = bmesh.new()
    bm.from_object(src, dg)  # evaluated mesh, shape keys applied
    bmesh.ops.subdivide_edges(bm, edges=bm.edges[:], cuts=1, use_grid_fill=True)
    rng = np.random.default_rng(seed)
    bm.verts.ensure_lookup_table()
    order = rng.permutation(len(bm.verts))
    for v, k in zip(bm.verts, order):
        v.index = int(k)
    bm.verts.sort()
    me = bpy.data.meshes.new(name)
    bm.to_mesh(me)
    bm.free()
    for mat in src.data.materials:
        me.materials.append(mat)
    ob = bpy.data.objects.new(name, me)
    ob.matrix_world = src.matrix_world
    for k, v in src.items():
        if k.startswith("facsgen_") and k not in ("facsgen_builtin", "facsgen_landmark_map"):
            ob[k] = v
    bpy.context.scene.collection.objects.link(ob)
    return ob, truth


def eye_centres(obj) -> tuple[np.ndarray, np.ndarray]:
    """World centres of the eyeballs (subject's right, left): small sphere-like connected parts of the
    mesh in its upper half, x < 0 / x > 0. Independent of any landmark detection."""
    import bpy
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from facs_dataset_generator.pipeline.landmarks import evaluated_vertices

    co = evaluated_vertices(obj, bpy.context.evaluated_depsgraph_get())
    me = obj.data
    ev = np.empty(len(me.edges) * 2, dtype=np.int64)
    me.edges.foreach_get("vertices", ev)
    ev = ev.reshape(-1, 2)
    n = len(co)
    g = coo_matrix((np.ones(len(ev)), (ev[:, 0], ev[:, 1])), shape=(n, n))
    _k, labels = connected_components(g, directed=False)
    top, height = co[:, 2].max(), np.ptp(co[:, 2])
    right, left = [], []
    for lab in np.unique(labels):
        p = co[labels == lab]
        ext = np.ptp(p, axis=0)
        if len(p) < 50 or ext.max() > 0.06 or ext.min() < 0.5 * ext.max():
            continue  # not an eyeball-sized sphere
        c = p.mean(axis=0)
        if c[2] < top - 0.5 * height or abs(c[0]) < 0.01:
            continue
        (right if c[0] < 0 else left).append((len(p), c))
    if not right or not left:
        raise AssertionError(f"no eyeballs found on {obj.name}")
    cr = np.average([c for _n, c in right], axis=0, weights=[n for n, _c in right])
    cl = np.average([c for _n, c in left], axis=0, weights=[n for n, _c in left])
    return cr, cl


def region_membership(p: np.ndarray, eye_r: np.ndarray, eye_l: np.ndarray) -> dict[str, float]:
    """Fraction of each MediaPipe region's landmarks inside its expected zone of the frontal (x, z) plane,
    zones relative to the eyeball centres (d = their distance): generous boxes, not exact positions."""
    d = float(np.linalg.norm(eye_l - eye_r))
    mid = (eye_l + eye_r) / 2
    x = (p[:, 0] - mid[0]) / d
    z = (p[:, 2] - mid[2]) / d

    def near_eye(e):
        return np.hypot(p[:, 0] - e[0], p[:, 2] - e[2]) < 0.5 * d

    def brow(e, side):
        dz = (p[:, 2] - e[2]) / d
        return (dz > 0.05) & (dz < 0.95) & (np.abs(p[:, 0] - e[0]) < 0.8 * d) & (side * x > 0)

    r = np.hypot(x / 1.25, (z + 0.5) / 1.4)
    zones = {
        "right_eye": near_eye(eye_r) & (x < 0),
        "left_eye": near_eye(eye_l) & (x > 0),
        "right_eyebrow": brow(eye_r, -1),
        "left_eyebrow": brow(eye_l, 1),
        "nose": (np.abs(x) < 0.5) & (z > -1.1) & (z < 0.6),
        "lips": (np.abs(x) < 0.85) & (z > -2.0) & (z < -0.75),
        "face_oval": (r > 0.7) & (r < 1.45),
    }
    return {k: float(np.mean(zones[k][list(REGIONS[k])])) for k in REGIONS}


REGION_MIN = {"right_eye": 0.95, "left_eye": 0.95, "right_eyebrow": 0.9, "left_eyebrow": 0.9, "nose": 0.9,
              "lips": 0.8, "face_oval": 0.8}


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def builtin_result(addon):
    """Automatic map of the built-in head (computed once): (errors / IOD, map)."""
    import bpy

    head = pytest.importorskip("facs_dataset_generator.pipeline.head")
    from facs_dataset_generator.pipeline import automap as am
    from facs_dataset_generator.pipeline.landmarks import evaluated_vertices, world_landmarks

    bpy.ops.wm.read_factory_settings(use_empty=True)
    ob = head.add_builtin_head(bpy.context.scene)
    dg = bpy.context.evaluated_depsgraph_get()
    truth = evaluated_vertices(ob, dg)[:N_LANDMARKS]
    lmap = am.automap(ob, am.AutomapOptions(views=HEAD_VIEWS))
    err = landmark_errors(world_landmarks(ob, lmap, bpy.context.evaluated_depsgraph_get()), truth)
    return err, lmap


# ----------------------------------------------------------------------------- tests


def test_builtin_head_automap_close_to_exact(builtin_result):
    err, lmap = builtin_result
    print(f"built-in head: mean {err.mean():.4f} max {err.max():.4f} IOD")
    assert err.mean() < GUARD_MEAN, err.mean()
    assert err.max() < GUARD_MAX, (int(err.argmax()), err.max())
    assert np.percentile(err, 90) < 0.035
    # inner-lip landmarks (closed lips: the rays pass the lip line into the mouth) stay on the lips
    inner_lips = [78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 95, 88, 178, 87, 14, 317, 402, 318, 324]
    assert err[inner_lips].max() < 0.06, (inner_lips[int(err[inner_lips].argmax())], err[inner_lips].max())
    # the confidence says where the map is doubtful: the worst 5% of landmarks are less confident
    worst = err > np.percentile(err, 95)
    assert lmap.confidence[worst].mean() < lmap.confidence[~worst].mean()
    meta = lmap.meta
    assert meta["method"] == "automap" and meta["detector_version"] and len(meta["views"]) == HEAD_VIEWS
    assert all(v[2] for v in meta["views"]), "MediaPipe should find the face in every view"


def test_builtin_head_automap_issue_bounds(builtin_result):
    """Issue 6: mean < 2% and max < 6% of the inter-ocular distance (the worst landmarks are the upper
    eyelid-crease rings 259/29, placed ~5% IOD too high in the front and upper views; the views from below
    (pitch -25) and the average of MediaPipe's two landmark models bring them to ~5%)."""
    err, _ = builtin_result
    assert err.mean() < SPEC_MEAN, err.mean()
    assert err.max() < SPEC_MAX, (int(err.argmax()), err.max())


def test_retopologised_head_automap(addon):
    import bpy

    head = pytest.importorskip("facs_dataset_generator.pipeline.head")
    from facs_dataset_generator.pipeline import automap as am
    from facs_dataset_generator.pipeline import landmark_maps as lmaps
    from facs_dataset_generator.pipeline.landmarks import world_landmarks

    src = head.add_builtin_head(bpy.context.scene)
    ob, truth = retopologise(src)
    src.hide_render = True
    bpy.data.objects.remove(src)
    assert len(ob.data.vertices) > 2 * N_LANDMARKS
    assert lmaps.find_map(ob) is None  # not the built-in head any more
    lmap = am.automap(ob, am.AutomapOptions(views=RETOPO_VIEWS))
    lmaps.store_map(ob, lmap)
    got = lmaps.find_map(ob)
    err = landmark_errors(world_landmarks(ob, got, bpy.context.evaluated_depsgraph_get()), truth)
    print(f"re-topologised head: mean {err.mean():.4f} max {err.max():.4f} IOD")
    assert err.mean() < GUARD_MEAN, err.mean()
    assert err.max() < GUARD_MAX, (int(err.argmax()), err.max())


@pytest.mark.mblab
def test_mblab_cli_automap_regions(addon, mblab_blend, tmp_path, capsys):
    """``facsgen automap`` on an MB-Lab character: JSON + map stored in the saved .blend; regions right."""
    import argparse
    import shutil

    import bpy

    from facs_dataset_generator.cli import automap as cli_automap
    from facs_dataset_generator.landmark_map import LandmarkMap
    from facs_dataset_generator.pipeline import landmark_maps as lmaps
    from facs_dataset_generator.pipeline.landmarks import world_landmarks

    blend = tmp_path / "female.blend"
    shutil.copy(mblab_blend("female"), blend)  # temporary copy: the test saves into it
    p = argparse.ArgumentParser(prog="facsgen")
    cli_automap.add_parser(p.add_subparsers(dest="command"))
    ns = p.parse_args(["automap", "--blend", str(blend), "--character", "MBlab_female", "--out",
                       str(tmp_path / "map.json"), "--save-blend", "--views", str(MBLAB_VIEWS), "--quiet"])
    assert cli_automap.run(ns) == 0, capsys.readouterr().err
    jmap = LandmarkMap.load(tmp_path / "map.json")
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    ob = bpy.data.objects["MBlab_female"]
    lmap = lmaps.find_map(ob)
    assert lmap is not None and np.array_equal(lmap.tri, jmap.tri)
    for kb in ob.data.shape_keys.key_blocks[1:]:  # judge the basis shape (the file leaves many keys at 1.0)
        kb.mute = True
    pts = world_landmarks(ob, lmap, bpy.context.evaluated_depsgraph_get())
    er, el = eye_centres(ob)
    share = region_membership(pts, er, el)
    print("MB-Lab female regions:", {k: round(v, 3) for k, v in share.items()})
    bad = {k: v for k, v in share.items() if v < REGION_MIN[k]}
    assert not bad, bad
    iod = inter_ocular_distance(pts)
    assert 1.1 < iod / np.linalg.norm(el - er) < 1.8  # outer eye corners just outside the eyeballs


def test_region_zones_hold_for_the_exact_builtin_map(addon):
    """The zones of :func:`region_membership` are right: the built-in head's exact map passes them."""
    import bpy

    head = pytest.importorskip("facs_dataset_generator.pipeline.head")
    from facs_dataset_generator.pipeline.landmarks import evaluated_vertices

    ob = head.add_builtin_head(bpy.context.scene)
    pts = evaluated_vertices(ob, bpy.context.evaluated_depsgraph_get())[:N_LANDMARKS]
    share = region_membership(pts, *eye_centres(ob))
    assert all(v >= REGION_MIN[k] for k, v in share.items()), share
    # and a map shifted by one eye distance downwards fails them
    er, el = eye_centres(ob)
    shifted = region_membership(pts - [0, 0, np.linalg.norm(el - er)], er, el)
    assert sum(v >= REGION_MIN[k] for k, v in shifted.items()) <= 2


def test_automap_without_mediapipe_explains(addon, without_mediapipe):
    import bpy

    from facs_dataset_generator.pipeline import automap as am

    me = bpy.data.meshes.new("m")
    me.from_pydata([(0, 0, 0), (1, 0, 0), (0, 0, 1)], [], [(0, 1, 2)])
    ob = bpy.data.objects.new("m", me)
    bpy.context.scene.collection.objects.link(ob)
    n_scenes = len(bpy.data.scenes)
    with pytest.raises(am.MediapipeMissingError, match=r"pip install mediapipe==0\.10\.14"):
        am.automap(ob)
    assert len(bpy.data.scenes) == n_scenes  # nothing was left behind
    with pytest.raises(RuntimeError, match="needs MediaPipe"):
        bpy.context.view_layer.objects.active = ob
        bpy.ops.facsgen.map_landmarks("EXEC_DEFAULT")


def test_connected_parts_labels_separate_pieces(addon):
    """The numpy-only component labelling used to keep eyelid landmarks off the eyeballs."""
    from facs_dataset_generator.pipeline.automap import connected_parts

    # two separate strips of triangles (0-1-2-3 and 4-5-6) and an isolated vertex 7; vertex order mixed
    tris = np.array([[3, 1, 2], [2, 1, 0], [6, 4, 5]])
    lab = connected_parts(8, tris)
    assert lab[0] == lab[1] == lab[2] == lab[3]
    assert lab[4] == lab[5] == lab[6] != lab[0]
    assert lab[7] not in (lab[0], lab[4])
    # a long chain (worst case for label propagation) ends up as one part
    n = 2000
    chain = np.stack([np.arange(n - 2), np.arange(1, n - 1), np.arange(2, n)], axis=1)[::-1]
    assert len(np.unique(connected_parts(n, chain))) == 1


def test_cli_and_operator_defaults_match_the_options(addon):
    """``facsgen automap``, the Map Face Landmarks operator and AutomapOptions render the same way."""
    import bpy

    from facs_dataset_generator import cli
    from facs_dataset_generator.pipeline import automap as am

    d = am.AutomapOptions()
    ns = cli.parse_args(["automap", "--character", "Head"])
    assert (ns.views, ns.resolution, ns.samples) == (d.views, d.resolution, d.samples)
    props = bpy.ops.facsgen.map_landmarks.get_rna_type().properties
    assert (props["views"].default, props["resolution"].default, props["samples"].default) == \
        (d.views, d.resolution, d.samples)
