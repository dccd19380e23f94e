# SPDX-License-Identifier: GPL-3.0-or-later
"""Landmark maps: format, lookup, storage, import/export, wrong topology, vertex groups (fast, no render)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from facs_dataset_generator.landmark_map import (
    N_LANDMARKS,
    REGIONS,
    LandmarkMap,
    LandmarkMapError,
    fingerprint,
    inter_ocular_distance,
    mirror_permutation,
)


def _fp(nv=600, seed=0):
    rng = np.random.default_rng(seed)
    totals = np.full(200, 3)
    return fingerprint(nv, totals, rng.integers(0, nv, 600))


def _random_map(nv=600, seed=0):
    rng = np.random.default_rng(seed)
    tri = rng.integers(0, nv, (N_LANDMARKS, 3))
    bary = rng.random((N_LANDMARKS, 3))
    bary /= bary.sum(axis=1, keepdims=True)
    return LandmarkMap(tri, bary, _fp(nv, seed), confidence=rng.random(N_LANDMARKS), meta={"method": "test"})


# ----------------------------------------------------------------------------- bpy-free format


def test_json_round_trip(tmp_path):
    m = _random_map()
    p = m.save(tmp_path / "m.json")
    back = LandmarkMap.load(p)
    assert np.array_equal(back.tri, m.tri)
    assert np.allclose(back.bary, m.bary, atol=1e-8)
    assert np.allclose(back.confidence, m.confidence, atol=1e-6)
    assert back.fingerprint == m.fingerprint and back.meta == m.meta


def test_barycentric_evaluation_is_vectorised_and_exact():
    rng = np.random.default_rng(3)
    verts = rng.normal(size=(600, 3))
    m = _random_map()
    got = m.evaluate(verts)
    want = np.array([sum(m.bary[i, k] * verts[m.tri[i, k]] for k in range(3)) for i in range(N_LANDMARKS)])
    assert got.shape == (N_LANDMARKS, 3)
    assert np.allclose(got, want, atol=1e-12)
    # a vertex map returns the vertices themselves
    v = LandmarkMap.from_vertices(np.arange(N_LANDMARKS), _fp())
    assert np.array_equal(v.evaluate(verts), verts[:N_LANDMARKS])
    # batch of poses (K, N, 3) evaluated without a Python loop over landmarks
    poses = rng.normal(size=(4, 600, 3))
    assert np.allclose(np.stack([m.evaluate(p) for p in poses]), np.einsum("lk,blkj->blj", m.bary, poses[:, m.tri]))


def test_malformed_maps_refused(tmp_path):
    m = _random_map()
    with pytest.raises(LandmarkMapError, match="468"):
        LandmarkMap(m.tri[:75], m.bary[:75], m.fingerprint)
    bad = m.bary.copy()
    bad[0] = (0.5, 0.5, 0.5)
    with pytest.raises(LandmarkMapError, match="sum to 1"):
        LandmarkMap(m.tri, bad, m.fingerprint)
    p = tmp_path / "x.json"
    p.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(LandmarkMapError, match="not a facsgen landmark map"):
        LandmarkMap.load(p)
    with pytest.raises(LandmarkMapError, match="refers to vertex"):
        m.evaluate(np.zeros((10, 3)))


def test_wrong_topology_refused_with_clear_message():
    m = _random_map()
    other = _fp(601, 1)
    with pytest.raises(LandmarkMapError, match=r"different topology: map has 600 vertices .* has 601"):
        m.check_topology(other, what="'Bob'")
    m.check_topology(_fp())  # the right one passes


def test_mirror_permutation_and_regions():
    perm = mirror_permutation()
    assert np.array_equal(perm[perm], np.arange(N_LANDMARKS))  # an involution
    assert perm[33] == 263 and perm[133] == 362 and perm[1] == 1 and perm[61] == 291
    assert set(REGIONS["left_eye"]) == {int(perm[i]) for i in REGIONS["right_eye"]}
    assert set(REGIONS["left_eyebrow"]) == {int(perm[i]) for i in REGIONS["right_eyebrow"]}
    pts = np.zeros((N_LANDMARKS, 3))
    pts[263, 0] = 2.5
    assert inter_ocular_distance(pts) == pytest.approx(2.5)


def test_mirror_permutation_matches_canonical_mesh():
    from facs_dataset_generator.landmark_map import MAP_DIR

    npz = MAP_DIR.parent / "data" / "canonical_face.npz"
    if not npz.is_file():
        pytest.skip("data/canonical_face.npz not present")
    v = np.load(npz)["verts"].astype(float)
    m = v.copy()
    m[:, 0] *= -1
    assert np.allclose(v[mirror_permutation()], m, atol=1e-4)


# ----------------------------------------------------------------------------- bpy side


def _grid_object(name="Grid", n=24):
    """A (n x n)-vertex grid mesh (>= 468 vertices), y = 0 plane."""
    import bpy

    xs, zs = np.meshgrid(np.linspace(-0.1, 0.1, n), np.linspace(-0.1, 0.1, n))
    verts = np.stack([xs.ravel(), np.zeros(n * n), zs.ravel()], axis=1)
    faces = [(r * n + c, r * n + c + 1, (r + 1) * n + c + 1, (r + 1) * n + c) for r in range(n - 1) for c in range(n - 1)]
    me = bpy.data.meshes.new(name)
    me.from_pydata(verts.tolist(), [], faces)
    me.update()
    ob = bpy.data.objects.new(name, me)
    bpy.context.scene.collection.objects.link(ob)
    return ob


def test_store_find_and_world_landmarks(addon):
    from facs_dataset_generator.pipeline import landmark_maps as lmaps
    from facs_dataset_generator.pipeline.landmarks import (
        evaluated_fingerprint,
        evaluated_vertices,
        world_landmarks,
    )

    ob = _grid_object()
    assert lmaps.find_map(ob) is None
    with pytest.raises(LandmarkMapError, match="no 468-point landmark map for 'Grid'"):
        lmaps.require_map(ob)
    fp = evaluated_fingerprint(ob)
    m = LandmarkMap.from_vertices(np.arange(N_LANDMARKS)[::-1], fp, meta={"method": "test"})
    lmaps.store_map(ob, m)
    got = lmaps.find_map(ob)
    assert got is not None and np.array_equal(got.tri, m.tri)
    ob.location = (1.0, 2.0, 3.0)
    import bpy

    bpy.context.view_layer.update()
    w = world_landmarks(ob, got)
    assert np.allclose(w, evaluated_vertices(ob)[N_LANDMARKS - 1::-1])
    assert np.allclose(w[0], np.array(ob.data.vertices[467].co) + (1, 2, 3), atol=1e-6)


def test_stored_map_for_other_topology_is_not_used_and_explained(addon):
    from facs_dataset_generator.pipeline import landmark_maps as lmaps
    from facs_dataset_generator.pipeline.landmarks import evaluated_fingerprint

    ob = _grid_object()
    lmaps.store_map(ob, LandmarkMap.from_vertices(np.arange(N_LANDMARKS), evaluated_fingerprint(ob)))
    ob.modifiers.new("sub", "SUBSURF").levels = 1  # changes the evaluated topology
    assert lmaps.find_map(ob) is None
    with pytest.raises(LandmarkMapError, match="stores a map made for 576 vertices"):
        lmaps.require_map(ob)
    with pytest.raises(LandmarkMapError, match="different topology"):
        lmaps.store_map(ob, LandmarkMap.from_vertices(np.arange(N_LANDMARKS), _fp()))


def test_export_import_json_and_wrong_topology(addon, tmp_path):
    from facs_dataset_generator.pipeline import landmark_maps as lmaps
    from facs_dataset_generator.pipeline.landmarks import evaluated_fingerprint

    a = _grid_object("A")
    b = _grid_object("B", n=25)
    m = LandmarkMap.from_vertices(np.arange(N_LANDMARKS), evaluated_fingerprint(a), meta={"method": "test"})
    lmaps.store_map(a, m)
    path = lmaps.export_map(a, tmp_path / "a_map")
    assert path.suffix == ".json" and path.is_file()
    a2 = _grid_object("A2")  # same topology: accepted and stored
    lmaps.import_map_file(a2, path)
    assert lmaps.find_map(a2) is not None
    with pytest.raises(LandmarkMapError, match=r"a_map.json does not fit 'B'.*576 vertices.*625"):
        lmaps.import_map_file(b, path)
    assert lmaps.find_map(b) is None


def test_user_maps_folder_is_searched(addon, tmp_path, monkeypatch):
    from facs_dataset_generator.pipeline import landmark_maps as lmaps
    from facs_dataset_generator.pipeline.landmarks import evaluated_fingerprint

    monkeypatch.setenv(lmaps.USER_MAPS_ENV, str(tmp_path / "maps"))
    ob = _grid_object()
    m = LandmarkMap.from_vertices(np.arange(N_LANDMARKS), evaluated_fingerprint(ob), meta={"method": "test"})
    saved = lmaps.save_user_map(m, "my grid")
    assert saved.parent == tmp_path / "maps"
    found = lmaps.find_map(ob)
    assert found is not None and found.fingerprint == m.fingerprint
    assert lmaps.find_map(_grid_object("Other", n=25)) is None


def test_builtin_head_map_found(addon):
    from facs_dataset_generator.pipeline import landmark_maps as lmaps

    head = pytest.importorskip("facs_dataset_generator.pipeline.head")
    ob = head.add_builtin_head()
    m = lmaps.find_map(ob)
    assert m is not None and np.array_equal(m.tri[:, 0], np.arange(N_LANDMARKS))


def _add_group(ob, verts, name="landmarks"):
    vg = ob.vertex_groups.new(name=name)
    vg.add([int(v) for v in verts], 1.0, "REPLACE")
    return vg


def test_vertex_group_import_full(addon):
    from facs_dataset_generator.pipeline import landmark_maps as lmaps

    ob = _grid_object()
    rng = np.random.default_rng(5)
    verts = np.sort(rng.choice(576, N_LANDMARKS, replace=False))  # group members in vertex-index order
    lm_of_vertex = rng.permutation(N_LANDMARKS)  # the index list: landmark of each member
    _add_group(ob, verts)
    text = ", ".join(map(str, lm_of_vertex))
    m = lmaps.map_from_vertex_group(ob, text)
    assert np.array_equal(m.tri[lm_of_vertex, 0], verts)
    assert m.meta["method"] == "vertex_group"
    co = np.array([v.co for v in ob.data.vertices])
    assert np.allclose(m.evaluate(co)[lm_of_vertex[10]], co[verts[10]])


def test_vertex_group_partial_refused_and_bad_lists(addon, tmp_path):
    from facs_dataset_generator.pipeline import landmark_maps as lmaps

    ob = _grid_object()
    _add_group(ob, range(75))
    idx = list(range(0, 150, 2))  # 75 landmarks, like the original tool
    with pytest.raises(LandmarkMapError, match=r"covers 75 of the 468 landmarks; 393 are missing \(1, 3, 5"):
        lmaps.map_from_vertex_group(ob, idx)
    with pytest.raises(LandmarkMapError, match="has 75 vertices but the index list has 74"):
        lmaps.map_from_vertex_group(ob, idx[:-1])
    with pytest.raises(LandmarkMapError, match="listed twice"):
        lmaps.map_from_vertex_group(ob, idx[:-1] + [0])
    with pytest.raises(LandmarkMapError, match="outside 0..467"):
        lmaps.parse_index_list("1, 2, 468")
    with pytest.raises(LandmarkMapError, match="no vertex group 'faces'"):
        lmaps.map_from_vertex_group(ob, idx, group="faces")
    f = tmp_path / "idx.txt"
    f.write_text("\n".join(map(str, idx)))
    assert lmaps.parse_index_list(str(f)) == idx


def test_vertex_group_import_fill_automap_needs_mediapipe_message(addon, without_mediapipe):
    """Without MediaPipe, filling a partial map fails with the install hint (simulated)."""
    from facs_dataset_generator.pipeline import automap as am
    from facs_dataset_generator.pipeline import landmark_maps as lmaps

    assert not am.has_mediapipe()
    ob = _grid_object()
    _add_group(ob, range(75))
    with pytest.raises(am.MediapipeMissingError, match=r"pip install mediapipe==0\.10\.14"):
        lmaps.map_from_vertex_group(ob, range(75), fill="automap")


def test_operators_in_background(addon, tmp_path):
    import bpy

    from facs_dataset_generator.operators import landmarks as ops
    from facs_dataset_generator.pipeline import landmark_maps as lmaps
    from facs_dataset_generator.pipeline.landmarks import evaluated_fingerprint

    ob = _grid_object()
    bpy.context.view_layer.objects.active = ob
    # no map yet: show refuses cleanly
    with pytest.raises(RuntimeError, match="no 468-point landmark map"):
        bpy.ops.facsgen.show_landmarks(action="SHOW")
    lmaps.store_map(ob, LandmarkMap.from_vertices(np.arange(N_LANDMARKS), evaluated_fingerprint(ob)))
    assert bpy.ops.facsgen.show_landmarks(action="SHOW", show_indices=True) == {"FINISHED"}
    assert ops.landmarks_shown(ob)
    assert bpy.ops.facsgen.show_landmarks() == {"FINISHED"}  # toggle off
    assert not ops.landmarks_shown()
    assert bpy.ops.facsgen.show_landmarks(action="SHOW") == {"FINISHED"}
    ops.unregister_draw_handlers()
    assert not ops.landmarks_shown() and not ops._draw_state["handles"]
    out = tmp_path / "exported.json"
    assert bpy.ops.facsgen.export_landmark_map(filepath=str(out)) == {"FINISHED"}
    assert LandmarkMap.load(out).fingerprint == evaluated_fingerprint(ob)
    lmaps.clear_map(ob)
    assert bpy.ops.facsgen.import_landmark_map(filepath=str(out)) == {"FINISHED"}
    assert lmaps.find_map(ob) is not None
    lmaps.clear_map(ob)
    _add_group(ob, range(N_LANDMARKS))
    assert bpy.ops.facsgen.import_landmark_map(source="VERTEX_GROUP",
                                               indices=",".join(map(str, range(N_LANDMARKS)))) == {"FINISHED"}
    assert np.array_equal(lmaps.find_map(ob).tri[:, 0], np.arange(N_LANDMARKS))


def test_cli_automap_parser_and_errors(addon, tmp_path, capsys):
    import argparse

    from facs_dataset_generator.cli import automap as cli_automap

    p = argparse.ArgumentParser(prog="facsgen")
    sub = p.add_subparsers(dest="command")
    cli_automap.add_parser(sub)
    ns = p.parse_args(["automap", "--character", "Nobody", "--views", "3", "--resolution", "256"])
    assert ns.views == 3 and ns.resolution == 256 and ns.out is None and not ns.save_blend
    assert cli_automap.run(ns) == 2
    assert "character 'Nobody' not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        p.parse_args(["automap", "--character", "X", "--views", "0"])
