# SPDX-License-Identifier: GPL-3.0-or-later
"""The built-in head in Blender: object, shape keys, exact landmarks, shipped map, speed."""

from __future__ import annotations

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


def test_build_cold_and_warm(addon):
    import bpy

    from facs_dataset_generator.core import au_fields
    from facs_dataset_generator.core import head_model as hm
    from facs_dataset_generator.pipeline import head

    # timings: benchmarks/setup_costs.py; here a cold build and a warm (cached) one give the same object data
    hm.build_head.cache_clear()
    au_fields.load_table.cache_clear()
    cold = head.add_builtin_head(bpy.context.scene)
    warm = head.add_builtin_head(bpy.context.scene)
    assert cold is not warm and cold.name != warm.name
    n = len(cold.data.vertices)
    assert n == len(warm.data.vertices) and n > 468
    a, b = np.empty(n * 3, np.float32), np.empty(n * 3, np.float32)
    cold.data.vertices.foreach_get("co", a)
    warm.data.vertices.foreach_get("co", b)
    assert np.array_equal(a, b)
    assert [k.name for k in cold.data.shape_keys.key_blocks] == [k.name for k in warm.data.shape_keys.key_blocks]


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


INNER_LIP = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 95, 88, 178, 87, 14, 317, 402, 318, 324, 62, 292)


@pytest.mark.parametrize("aus", [{}, {"AU12": 0.8, "AU06": 0.6}, {"AU01": 0.8, "AU04": 0.6, "AU15": 0.8}],
                         ids=["neutral", "joy", "sadness"])
def test_closed_lips_seam_is_visible_from_the_front(addon, aus):
    """The inner-lip contour of closed lips lies on the visible seam: in a frontal view each
    inner-lip landmark is the first surface its camera ray meets (within 0.5 mm)."""
    import bpy

    from facs_dataset_generator.pipeline import annotate

    head, obj = _head(addon)
    kb = obj.data.shape_keys.key_blocks
    for au, v in aus.items():
        kb[au].value = v
    dg = bpy.context.evaluated_depsgraph_get()
    geom = annotate.evaluate_expression(obj, head.builtin_landmark_map(obj, dg), dg)
    lm = geom.landmarks
    cam = np.array([lm[[33, 263], 0].mean(), lm[:, 1].min() - 0.5, lm[13, 2]])
    idx = list(INNER_LIP)
    m = geom.world_to_local  # the BVH is in object space
    cam_l = cam @ m[:3, :3].T + m[:3, 3]
    lm_l = lm @ m[:3, :3].T + m[:3, 3]
    gaps = []
    for i in idx:
        vec = lm_l[i] - cam_l
        dist = float(np.linalg.norm(vec))
        hit = geom.bvh.ray_cast(cam_l.tolist(), (vec / dist).tolist(), dist + 0.01)
        # no hit: the ray slipped exactly through the landmark vertex (nothing in front of it)
        gaps.append(0.0 if hit[0] is None else dist - hit[3])
    gaps = np.array(gaps)
    assert gaps.max() < 5e-4, dict(zip(idx, np.round(gaps * 1000, 2)))
    # and the pipeline's own occlusion test calls them visible
    assert annotate.unoccluded(geom, cam)[idx].all()
    # the lips really are closed there (no open mouth)
    assert np.linalg.norm(lm[13] - lm[14]) < 1e-3


def test_open_mouth_shows_the_dark_pocket(addon):
    import bpy

    from facs_dataset_generator.core import head_model as hm
    from facs_dataset_generator.pipeline import annotate

    head, obj = _head(addon)
    obj.data.shape_keys.key_blocks["AU26"].value = 1.0
    dg = bpy.context.evaluated_depsgraph_get()
    geom = annotate.evaluate_expression(obj, head.builtin_landmark_map(obj, dg), dg)
    lm = geom.landmarks
    m = geom.world_to_local  # the BVH is in object space (the head is not rotated)
    lm = lm @ m[:3, :3].T + m[:3, 3]
    mid = 0.5 * (lm[13] + lm[14])
    cam = np.array([mid[0], lm[:, 1].min() - 0.5, mid[2]])
    hit = geom.bvh.ray_cast(cam.tolist(), [0.0, 1.0, 0.0], 1.0)
    assert hit[0] is not None
    assert obj.data.polygons[hit[2]].material_index in (hm.MAT_MOUTH, hm.MAT_TEETH)
    assert hit[3] > lm[13, 1] - cam[1] + 0.003  # the pocket lies well behind the lips
