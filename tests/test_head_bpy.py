# SPDX-License-Identifier: GPL-3.0-or-later
"""The built-in head in Blender: object, shape keys, exact landmarks, shipped map, speed."""

from __future__ import annotations

import time

import numpy as np
import pytest


def _head(addon):
    import bpy

    from facs_dataset_generator.pipeline import head

    return head, head.add_builtin_head(bpy.context.scene)


def test_add_head_object_and_keys(addon):
    import bpy

    from facs_dataset_generator.core import au_fields

    head, obj = _head(addon)
    assert obj.name in bpy.context.scene.objects
    assert obj.type == "MESH" and obj["facsgen_builtin"] == 1 and head.is_builtin_head(obj)
    assert not head.is_builtin_head(None)
    kb = obj.data.shape_keys.key_blocks
    names = [k.name for k in kb]
    assert names[0] == "Basis"
    for au in au_fields.au_names():
        assert au in names and kb[au].slider_min == 0.0
    ids = [n for n in names if n.startswith("ID_")]
    assert len(ids) >= 6 and all(kb[n].slider_min == -1.0 for n in ids)
    assert {m.name for m in obj.data.materials} >= {"FACS Skin", "FACS Mouth", "FACS Sclera", "FACS Iris", "FACS Pupil"}
    # a second head reuses the materials
    obj2 = head.add_builtin_head(bpy.context.scene, name="Second")
    assert obj2.data.materials[0] == obj.data.materials[0]


def test_build_time(addon):
    import bpy

    from facs_dataset_generator.core import au_fields
    from facs_dataset_generator.core import head_model as hm
    from facs_dataset_generator.pipeline import head

    hm.build_head.cache_clear()
    au_fields.load_table.cache_clear()
    t = time.perf_counter()
    head.add_builtin_head(bpy.context.scene)
    cold = time.perf_counter() - t
    t = time.perf_counter()
    head.add_builtin_head(bpy.context.scene)
    warm = time.perf_counter() - t
    assert cold < 1.0, cold
    assert warm < 0.5, warm


def test_identity(addon):
    import bpy

    from facs_dataset_generator.pipeline.landmarks import world_landmarks

    head, obj = _head(addon)
    rng = np.random.default_rng(3)
    ident = head.random_identity(rng)
    assert set(ident) == set(head.identity_keys()) | {"skin_tone"}
    assert all(-1 <= v <= 1 for k, v in ident.items() if k != "skin_tone") and 0 <= ident["skin_tone"] <= 1
    assert head.random_identity(np.random.default_rng(3)) == ident
    lmap = head.builtin_landmark_map(obj)
    before = world_landmarks(obj, lmap)
    head.apply_identity(obj, ident)
    assert obj["facsgen_skin_tone"] == pytest.approx(ident["skin_tone"])
    after = world_landmarks(obj, lmap, bpy.context.evaluated_depsgraph_get())
    assert np.linalg.norm(after - before, axis=1).max() > 0.001  # ground truth follows identity
    head.apply_identity(obj, {})
    assert np.allclose(world_landmarks(obj, lmap), before, atol=1e-7)
    with pytest.raises(ValueError, match="ID_bogus"):
        head.apply_identity(obj, {"ID_bogus": 0.5})


def test_landmarks_lie_on_the_evaluated_surface(addon):
    import bpy
    from mathutils import Matrix
    from mathutils.bvhtree import BVHTree

    from facs_dataset_generator.pipeline.landmarks import world_landmarks

    head, obj = _head(addon)
    obj.matrix_world = Matrix.Translation((0.1, -0.2, 1.5)) @ Matrix.Rotation(0.4, 4, "Z")
    head.apply_identity(obj, head.random_identity(np.random.default_rng(1)))
    kb = obj.data.shape_keys.key_blocks
    for au, v in (("AU12", 0.8), ("AU26", 0.6), ("AU43", 0.5), ("AU01", 1.0)):
        kb[au].value = v
    dg = bpy.context.evaluated_depsgraph_get()
    lm = world_landmarks(obj, head.builtin_landmark_map(obj, dg), dg)
    bvh = BVHTree.FromObject(obj, dg)
    inv = np.array(obj.matrix_world.inverted())
    local = lm @ inv[:3, :3].T + inv[:3, 3]
    dist = np.array([bvh.find_nearest(p)[3] for p in local])
    assert dist.max() < 1e-4  # < 0.1 mm
    # and the landmarks did move with the pose (the map is not the rest pose)
    kb["AU26"].value = 0.0
    dg = bpy.context.evaluated_depsgraph_get()
    lm0 = world_landmarks(obj, head.builtin_landmark_map(obj, dg), dg)
    assert np.linalg.norm(lm0[152] - lm[152]) > 0.005


def test_shipped_map_matches_a_fresh_head(addon):
    from facs_dataset_generator.landmark_map import MAP_DIR, LandmarkMap, find_shipped_map
    from facs_dataset_generator.pipeline.landmarks import evaluated_fingerprint

    head, obj = _head(addon)
    shipped = LandmarkMap.load(MAP_DIR / "builtin_head.json")
    fresh = head.builtin_landmark_map(obj)
    assert shipped.fingerprint == fresh.fingerprint == evaluated_fingerprint(obj)
    assert np.array_equal(shipped.tri, fresh.tri) and np.allclose(shipped.bary, fresh.bary)
    assert np.array_equal(shipped.tri[:, 0], np.arange(468))
    found = find_shipped_map(evaluated_fingerprint(obj))
    assert found is not None and found.fingerprint == fresh.fingerprint


def test_operator_adds_head(addon):
    import bpy

    n = len(bpy.data.objects)
    assert bpy.ops.facsgen.add_builtin_head() == {"FINISHED"}
    assert len(bpy.data.objects) == n + 1
    obj = bpy.context.view_layer.objects.active
    from facs_dataset_generator.pipeline import head

    assert head.is_builtin_head(obj)
    assert bpy.types.FACSGEN_OT_add_builtin_head.bl_label == "Add Built-in FACS Head"


def test_skin_tone_changes_the_render(addon):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import head_mediapipe as hb

    from facs_dataset_generator.pipeline import head

    scene, cam = hb.setup_scene(res=48, samples=4, denoise=False)
    obj = head.add_builtin_head(scene)
    target, _ = hb.head_target(obj)
    hb.place_camera(cam, target, 0, 0, 0.3)
    means = []
    for tone in (0.0, 1.0):
        head.apply_identity(obj, {"skin_tone": tone})
        rgb = hb.render_rgb(scene)
        means.append(rgb[16:32, 16:32].mean())
    assert means[0] > means[1] + 40, means
