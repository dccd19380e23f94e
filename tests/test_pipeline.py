# SPDX-License-Identifier: GPL-3.0-or-later
"""The generation pipeline with bpy: exact labels, occlusion, crash safety, shards,
determinism, config errors, scene restore. Renders are tiny (<= 96 px, 1-4 samples, CPU)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("bpy")

ROOT = Path(__file__).resolve().parent.parent
N = 468


def _conf(out, **kw):
    from facs_dataset_generator.core import config as cfg

    cam = kw.pop("camera", {})
    ren = kw.pop("render", {})
    lig = kw.pop("lighting", {})
    c = cfg.GenerationConfig(out=str(out), **kw)
    c.render.resolution = (48, 48)
    c.render.samples = 1
    c.render.denoise = False
    c.render.device = "cpu"
    for k, v in cam.items():
        setattr(c.camera, k, v)
    for k, v in ren.items():
        setattr(c.render, k, v)
    for k, v in lig.items():
        setattr(c.lighting, k, v)
    return c


def _row(out, sid) -> pd.Series:
    return pd.read_csv(Path(out) / "annotations" / f"{sid}.csv", dtype={"sample_id": str}).iloc[0]


def _lm(row, what):
    return np.array([row[f"lm{i:03d}_{what}"] for i in range(N)], dtype=np.float64)


def _krt(row):
    k = np.array([[row.fx, 0, row.cx], [0, row.fy, row.cy], [0, 0, 1]])
    r = np.array([row[f"r{i}{j}"] for i in range(3) for j in range(3)]).reshape(3, 3)
    t = np.array([row.tx, row.ty, row.tz])
    return k, r, t


def _blender_camera(name, matrix_world, lens=50.0, sensor_width=36.0, sensor_fit="AUTO", shift=(0.0, 0.0)):
    import bpy

    data = bpy.data.cameras.new(name)
    data.lens, data.sensor_width, data.sensor_fit = lens, sensor_width, sensor_fit
    data.sensor_height = sensor_width * 24 / 36
    data.shift_x, data.shift_y = shift
    ob = bpy.data.objects.new(name, data)
    bpy.context.scene.collection.objects.link(ob)
    ob.matrix_world = matrix_world
    bpy.context.view_layer.update()
    return ob


def _w2cv(scene, cam, pts):
    from bpy_extras.object_utils import world_to_camera_view
    from mathutils import Vector

    w = scene.render.resolution_x * scene.render.resolution_percentage // 100
    h = scene.render.resolution_y * scene.render.resolution_percentage // 100
    out = np.array([tuple(world_to_camera_view(scene, cam, Vector(p))) for p in pts])
    return np.stack([out[:, 0] * w, (1 - out[:, 1]) * h], axis=1), out[:, 2]


# --------------------------------------------------------------------------- re-projection


@pytest.mark.parametrize("res, pct, fit", [
    ((48, 48), 100, "AUTO"),
    ((64, 40), 100, "AUTO"),
    ((40, 64), 100, "AUTO"),  # portrait
    ((96, 64), 50, "AUTO"),  # resolution percentage 50
    ((64, 40), 100, "VERTICAL"),  # vertical sensor fit
])
def test_reprojection_reproduces_labels(addon, tmp_path, res, pct, fit):
    import bpy

    from facs_dataset_generator.pipeline import runner

    out = tmp_path / "d"
    conf = _conf(out, count=2, seed=5, emotions=("Surprise",), render={"resolution": res, "resolution_percentage": pct},
                 camera={"views": 2, "sensor_fit": fit, "roll_jitter": 10.0})
    runner.generate(conf)
    scene = bpy.context.scene
    w, h = res[0] * pct // 100, res[1] * pct // 100
    for j in range(2):
        row = _row(out, f"{j:06d}")
        assert (row.width, row.height) == (w, h)
        pv = runner.preview(conf, None, "Surprise", j, scene)
        x = pv["landmarks_world"]
        k, r, t = _krt(row)
        p = (x @ r.T + t) @ k.T
        uv = p[:, :2] / p[:, 2:]
        err = np.abs(uv - np.stack([_lm(row, "x"), _lm(row, "y")], axis=1)).max()
        assert err < 0.01, err
        assert np.abs((x @ r.T + t)[:, 2] - _lm(row, "depth")).max() < 1e-5
        # Blender's own projection agrees
        scene.render.resolution_x, scene.render.resolution_y = res
        scene.render.resolution_percentage = pct
        cam = _blender_camera(f"check{j}", pv["camera_matrix_world"], sensor_fit=fit)
        uv_b, depth_b = _w2cv(scene, cam, x)
        assert np.abs(uv_b - uv).max() < 0.01
        assert np.abs(depth_b - _lm(row, "depth")).max() < 1e-5
        assert np.array([row.cam_x, row.cam_y, row.cam_z]) == pytest.approx(
            np.array(pv["camera_matrix_world"].translation), abs=1e-6)


@pytest.mark.parametrize("shift, aspect, fit, res", [
    ((0.1, -0.05), (1, 1), "AUTO", (64, 48)),
    ((-0.07, 0.12), (1, 1), "VERTICAL", (48, 64)),
    ((0.0, 0.0), (1, 2), "HORIZONTAL", (64, 48)),
    ((0.05, 0.05), (2, 1), "AUTO", (40, 64)),
])
def test_intrinsics_from_blender_camera(addon, shift, aspect, fit, res):
    """K read from an actual Blender camera (shift, pixel aspect, sensor fit) matches Blender."""
    import bpy
    from mathutils import Euler, Matrix

    from facs_dataset_generator.core import cameras
    from facs_dataset_generator.pipeline import render_setup

    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y = res
    scene.render.pixel_aspect_x, scene.render.pixel_aspect_y = aspect
    m = Matrix.LocRotScale((0.05, -0.6, 0.1), Euler((1.45, 0.05, 0.2)), None)
    cam = _blender_camera("c", m, lens=35, sensor_fit=fit, shift=shift)
    k, w, h = render_setup.camera_intrinsics(cam, scene)
    r, t = cameras.opencv_extrinsics(np.array(cam.matrix_world))
    pts = np.random.default_rng(0).uniform([-0.1, -0.1, -0.1], [0.1, 0.1, 0.1], (50, 3))
    uv, depth = cameras.project(k, r, t, pts)
    uv_b, depth_b = _w2cv(scene, cam, pts)
    assert np.abs(uv - uv_b).max() < 0.01
    assert np.abs(depth - depth_b).max() < 1e-6


# --------------------------------------------------------------------------- rendered pixel


def _marker_centroids(path, thresh=0.15):
    import bpy

    img = bpy.data.images.load(str(path))
    w, h = img.size
    px = np.empty(w * h * 4, dtype=np.float32)
    img.pixels.foreach_get(px)
    lum = px.reshape(h, w, 4)[::-1, :, :3].mean(axis=2)  # top row first
    bpy.data.images.remove(img)
    mask = lum > thresh * lum.max()
    # connected components (4-neighbour flood fill; markers are a few pixels)
    seen = np.zeros_like(mask)
    cents = []
    for y0, x0 in zip(*np.nonzero(mask)):
        if seen[y0, x0]:
            continue
        stack, pix = [(y0, x0)], []
        seen[y0, x0] = True
        while stack:
            y, x = stack.pop()
            pix.append((y, x))
            for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                yy, xx = y + dy, x + dx
                if 0 <= yy < h and 0 <= xx < w and mask[yy, xx] and not seen[yy, xx]:
                    seen[yy, xx] = True
                    stack.append((yy, xx))
        pix = np.array(pix)
        wgt = lum[pix[:, 0], pix[:, 1]]
        cents.append(((pix[:, 1] + 0.5) * wgt).sum() / wgt.sum())
        cents[-1] = (cents[-1], ((pix[:, 0] + 0.5) * wgt).sum() / wgt.sum())
    return np.array(cents)


def _render_markers(tmp_path, points, cam_matrix, res, shift=(0.0, 0.0), name="markers.png"):
    """Render small emissive spheres at ``points`` (nothing else) and return the image path."""
    import bpy

    scene = bpy.context.scene
    for ob in scene.objects:
        ob.hide_render = True
    scene.world = None
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 16
    scene.cycles.use_denoising = False
    scene.cycles.filter_width = 0.5
    scene.render.resolution_x, scene.render.resolution_y = res
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "PNG"
    scene.view_settings.view_transform = "Standard"
    cam = _blender_camera("marker_cam", cam_matrix, shift=shift)
    scene.camera = cam
    mat = bpy.data.materials.new("emit")
    mat.use_nodes = True
    nt = mat.node_tree
    nt.nodes.clear()
    em = nt.nodes.new("ShaderNodeEmission")
    em.inputs["Strength"].default_value = 20.0
    outn = nt.nodes.new("ShaderNodeOutputMaterial")
    nt.links.new(em.outputs[0], outn.inputs[0])
    from facs_dataset_generator.pipeline import render_setup

    k, _, _ = render_setup.camera_intrinsics(cam, scene)
    cam_pos = np.array(cam_matrix.translation)
    for i, p in enumerate(points):
        radius = 0.8 * np.linalg.norm(p - cam_pos) / k[0, 0]  # 0.8 px
        me = bpy.data.meshes.new(f"m{i}")
        import bmesh

        bm = bmesh.new()
        bmesh.ops.create_uvsphere(bm, u_segments=12, v_segments=6, radius=radius)
        bm.to_mesh(me)
        bm.free()
        me.materials.append(mat)
        ob = bpy.data.objects.new(f"m{i}", me)
        ob.location = p
        scene.collection.objects.link(ob)
    path = tmp_path / name
    scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True)
    return path


def test_labelled_pixel_is_rendered_pixel(addon, tmp_path):
    """Emissive markers at a few landmarks render at the labelled pixels (within 1 px)."""
    import bpy

    from facs_dataset_generator.pipeline import runner

    out = tmp_path / "d"
    res = (96, 72)
    conf = _conf(out, count=2, seed=3, emotions=("Joy",), render={"resolution": res},
                 camera={"views": 2, "yaw_range": (-35, 35), "roll_jitter": 15.0})
    runner.generate(conf)
    picks = [1, 33, 263, 61, 291, 152, 10]  # nose tip, eye corners, mouth corners, chin, forehead
    for j in range(2):
        row = _row(out, f"{j:06d}")
        pv = runner.preview(conf, None, "Joy", j, bpy.context.scene)
        lab = np.stack([_lm(row, "x"), _lm(row, "y")], axis=1)[picks]
        path = _render_markers(tmp_path, pv["landmarks_world"][picks], pv["camera_matrix_world"], res,
                               name=f"m{j}.png")
        cents = _marker_centroids(path)
        assert len(cents) == len(picks), cents
        d = np.linalg.norm(lab[:, None, :] - cents[None, :, :], axis=2)
        assert d.min(axis=1).max() < 1.0, d.min(axis=1)
        bpy.ops.wm.read_factory_settings(use_empty=True)


def test_labelled_pixel_with_shift_and_vertical_fit(addon, tmp_path):
    """Same with lens shift + vertical sensor fit: K from the Blender camera and the render agree."""
    import bpy
    from mathutils import Matrix

    from facs_dataset_generator.core import cameras
    from facs_dataset_generator.pipeline import render_setup

    pts = np.array([[0.0, 0.0, 0.0], [0.04, 0.01, 0.03], [-0.05, -0.02, -0.04], [0.02, 0.03, -0.06]])
    m = Matrix(cameras.look_at([0.1, -0.5, 0.05], [0, 0, 0], [0, 0, 1], roll_deg=8).tolist())
    res = (64, 88)
    path = _render_markers(tmp_path, pts, m, res, shift=(0.06, -0.04))
    cam = bpy.context.scene.camera
    cam.data.sensor_fit = "AUTO"
    k, w, h = render_setup.camera_intrinsics(cam, bpy.context.scene)
    r, t = cameras.opencv_extrinsics(np.array(cam.matrix_world))
    uv, _ = cameras.project(k, r, t, pts)
    cents = _marker_centroids(path)
    assert len(cents) == len(pts)
    d = np.linalg.norm(uv[:, None, :] - cents[None, :, :], axis=2)
    assert d.min(axis=1).max() < 1.0, d.min(axis=1)


# --------------------------------------------------------------------------- occlusion


def test_occlusion_in_profile_view(addon, tmp_path):
    """Camera 70 degrees to the subject's left: the right side of the face is hidden."""
    import bpy

    from facs_dataset_generator.pipeline import runner

    out = tmp_path / "d"
    conf = _conf(out, count=1, emotions=("Neutral",), identity=False,
                 camera={"views": 1, "yaw_range": (70, 70), "pitch_range": (0, 0)}, render={"resolution": (64, 64)})
    runner.generate(conf)
    row = _row(out, "000000")
    assert row.yaw == pytest.approx(70, abs=1e-4) and row.pitch == pytest.approx(0, abs=1e-4)
    vis = _lm(row, "visible")
    pv = runner.preview(conf, None, "Neutral", 0, bpy.context.scene)
    x = pv["landmarks_world"][:, 0]  # +X = the subject's left (near side)
    half = np.abs(x).max()
    # (at -0.35 the forehead is at a grazing angle; the mouth corner at 0.33 lies in a crease)
    far, near = x < -0.5 * half, x > 0.4 * half
    assert far.sum() > 50 and near.sum() > 50
    assert vis[far].mean() == 0.0, np.nonzero(far & (vis == 1))
    assert vis[near].mean() == 1.0, np.nonzero(near & (vis == 0))
    assert vis[[234, 33, 133]].sum() == 0  # right face edge, right eye corners
    assert vis[[454, 263]].sum() == 2  # left face edge, left eye outer corner
    assert pv["visible"].tolist() == (vis == 1).tolist()


# --------------------------------------------------------------------------- scene restore & preview


def test_scene_is_restored_and_preview_matches(addon, tmp_path):
    import bpy

    from facs_dataset_generator.pipeline import characters, head, runner

    scene = bpy.context.scene
    obj = head.add_builtin_head(scene)
    kb = obj.data.shape_keys.key_blocks
    kb["AU12"].value = 0.3
    ident_key = head.identity_keys()[0]
    kb[ident_key].value = 0.25
    scene.render.engine = "BLENDER_WORKBENCH"
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 1920, 1080, 37
    scene.render.filepath = "//mine_"
    cam_data = bpy.data.cameras.new("UserCam")
    user_cam = bpy.data.objects.new("UserCam", cam_data)
    scene.collection.objects.link(user_cam)
    scene.camera = user_cam
    world = bpy.data.worlds.new("UserWorld")
    scene.world = world
    cube = bpy.data.objects.new("Cube", bpy.data.meshes.new("Cube"))
    scene.collection.objects.link(cube)
    before_objects = sorted(o.name for o in bpy.data.objects)
    before_counts = (len(bpy.data.cameras), len(bpy.data.worlds), len(bpy.data.meshes), len(bpy.data.materials))
    tone = obj[head.SKIN_TONE_PROP]

    out = tmp_path / "d"
    conf = _conf(out, count=4, seed=11, emotions=("Joy", "Contempt"), camera={"views": 2})
    res = runner.generate(conf)
    assert (res.written, res.total, res.skipped) == (4, 4, 0)

    assert sorted(o.name for o in bpy.data.objects) == before_objects
    assert (len(bpy.data.cameras), len(bpy.data.worlds), len(bpy.data.meshes), len(bpy.data.materials)) == before_counts
    assert scene.render.engine == "BLENDER_WORKBENCH"
    assert (scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage) == (1920, 1080, 37)
    assert scene.render.filepath == "//mine_"
    assert scene.camera == user_cam and scene.world == world
    assert kb["AU12"].value == pytest.approx(0.3) and kb[ident_key].value == pytest.approx(0.25)
    assert kb["AU06"].value == 0.0
    assert obj[head.SKIN_TONE_PROP] == pytest.approx(tone)
    assert not cube.hide_render

    # preview poses exactly as the dataset: same AUs, same landmarks in pixels
    for j, emo in ((1, "Joy"), (0, "Contempt")):
        pv = runner.preview(conf, None, emo, j, scene)
        row = _row(out, pv["sample_id"])
        assert row.emotion == emo
        for au, v in pv["aus"].items():
            assert row[au] == pytest.approx(v, abs=1e-6)
        assert np.abs(pv["landmarks_px"][:, 0] - _lm(row, "x")).max() < 1e-3
        assert (pv["yaw"] if "yaw" in pv else pv["pose"][0]) == pytest.approx(row.yaw, abs=1e-4)
        ad = characters.detect_adapter(obj)
        assert ad.obj == obj
        if emo == "Contempt":
            assert kb["AU12_R"].value == pytest.approx(row.AU12_R, abs=1e-6)
            assert kb["AU12"].value == 0.0


def test_camera_views_match_the_dataset(addon, tmp_path):
    import bpy

    from facs_dataset_generator.core import cameras
    from facs_dataset_generator.pipeline import runner

    out = tmp_path / "d"
    conf = _conf(out, count=3, seed=2, emotions=("Fear",), camera={"views": 3, "layout": "grid"})
    runner.generate(conf)
    before = sorted(o.name for o in bpy.data.objects)
    mats, target = runner.camera_views(conf, None, bpy.context.scene)
    assert sorted(o.name for o in bpy.data.objects) == before  # the head added to measure is gone again
    assert mats.shape == (3, 4, 4) and target.shape == (3,)
    for j in range(3):
        row = _row(out, f"{j:06d}")
        k, r, t = _krt(row)
        r2, t2 = cameras.opencv_extrinsics(mats[j])
        assert np.abs(r - r2).max() < 1e-6 and np.abs(t - t2).max() < 1e-6
        # the aim point projects to the principal point
        uv, _ = cameras.project(k, r, t, target[None])
        assert uv[0] == pytest.approx([row.cx, row.cy], abs=1e-3)


def test_job_cancel_keeps_a_valid_dataset_that_resume_completes(addon, tmp_path):
    import bpy

    from facs_dataset_generator.core import dataset
    from facs_dataset_generator.pipeline import runner

    out = tmp_path / "d"
    seen = []
    conf = _conf(out, count=5, seed=9, emotions=("Sadness", "Neutral"), camera={"views": 2})
    job = runner.Job(conf, scene=bpy.context.scene, progress=lambda d, t, m: seen.append((d, t)))
    job.prepare()
    assert (job.total, job.done) == (5, 0)
    assert job.step() and job.step()
    assert job.done == 2 and seen == [(1, 5), (2, 5)]
    res = job.cancel()
    assert (res.written, res.total) == (2, 5)
    assert not job.step()
    assert dataset.validate_dataset(out) == []
    assert dataset.count_samples(out) == 2
    assert bpy.context.scene.camera is None and not [o for o in bpy.data.objects if o.type == "CAMERA"]
    conf.resume = True
    res = runner.generate(conf)
    assert (res.written, res.skipped, res.total) == (3, 2, 5)
    assert dataset.validate_dataset(out) == []
    assert sorted(_csvs(out)) == [f"{i:06d}" for i in range(5)]


def test_object_layout_places_cameras_at_vertices(addon, tmp_path):
    import bpy

    from facs_dataset_generator.core.config import ConfigError
    from facs_dataset_generator.pipeline import runner

    scene = bpy.context.scene
    verts = [(0.0, -0.6, 0.05), (0.3, -0.5, 0.1), (-0.3, -0.5, 0.0), (0.0, -0.55, 0.3)]
    me = bpy.data.meshes.new("rig")
    me.from_pydata(verts, [], [])
    src = bpy.data.objects.new("CamRig", me)
    scene.collection.objects.link(src)
    src.location = (0.0, -0.05, 0.0)
    vg = src.vertex_groups.new(name="front")
    vg.add([0, 1, 2], 1.0, "REPLACE")
    out = tmp_path / "d"
    conf = _conf(out, count=3, emotions=("Joy",), camera={"layout": "object", "source_object": "CamRig",
                                                          "vertex_group": "front"})
    runner.generate(conf)
    for j in range(3):
        row = _row(out, f"{j:06d}")
        expect = np.array(verts[j]) + np.array([0.0, -0.05, 0.0])
        assert np.array([row.cam_x, row.cam_y, row.cam_z]) == pytest.approx(expect, abs=1e-6)
        assert row.cx == 24 and np.abs(_lm(row, "visible")).sum() > 200
    assert src.hide_render is False  # hidden during the run, restored
    with pytest.raises(ConfigError, match="no vertex group 'back'"):
        runner.generate(_conf(tmp_path / "e", count=1, emotions=("Joy",),
                              camera={"layout": "object", "source_object": "CamRig", "vertex_group": "back"}))


# --------------------------------------------------------------------------- config errors


def _bad_preset(tmp_path, emotions) -> str:
    p = tmp_path / f"bad{len(list(tmp_path.glob('bad*.json')))}.json"
    p.write_text(json.dumps({"name": "bad", "emotions": emotions}))
    return str(p)


def test_config_errors_write_nothing(addon, tmp_path):
    import bpy

    from facs_dataset_generator.core.config import ConfigError
    from facs_dataset_generator.pipeline import head, runner

    scene = bpy.context.scene
    obj = head.add_builtin_head(scene)
    out = tmp_path / "never"
    afile = tmp_path / "a_file"
    afile.write_text("x")
    cases = [
        (dict(emotions=("Happy",)), ConfigError, "unknown emotion 'Happy'"),
        (dict(preset=_bad_preset(tmp_path, {"Joy": {"AU99": [0.1, 0.2]}}), emotions=("Joy",)), ConfigError, "AU99"),
        (dict(preset=_bad_preset(tmp_path, {"Joy": {"AU12": [0.8, 0.2]}}), emotions=("Joy",)), ConfigError,
         "min 0.8 > max 0.2"),
        (dict(preset=_bad_preset(tmp_path, {"Joy": {"AU12": [0.2, 1.2]}}), emotions=("Joy",)), ConfigError,
         r"\[0, 1\]"),
        (dict(preset=_bad_preset(tmp_path, {"Joy": {"AU22": [0.2, 0.4], "AU28": [0.1, 0.3], "AU12": [0, 1]}}),
              emotions=("Joy",)), ConfigError, r"'FACS Head'.*cannot express AU22, AU28"),
        (dict(character="Nobody"), ConfigError, "'Nobody' not found"),
        (dict(emotions=("Joy",), preset="no_such_preset"), ConfigError, "unknown preset"),
        (dict(camera={"views": 0}), ConfigError, "views must be >= 1"),
        (dict(camera={"yaw_range": (30, -30)}), ConfigError, "min 30 > max -30"),
        (dict(render={"resolution_percentage": 0}), ConfigError, "percentage"),
        (dict(lighting={"mode": "sun"}), ConfigError, "lighting mode"),
    ]
    before = sorted(o.name for o in bpy.data.objects)
    for kw, exc, msg in cases:
        with pytest.raises(exc, match=msg):
            runner.generate(_conf(out, count=2, **kw))
        assert not out.exists(), kw
        assert sorted(o.name for o in bpy.data.objects) == before, kw
        assert scene.camera is None and scene.world is None
    with pytest.raises(ConfigError, match="not writable|not a folder"):
        runner.generate(_conf(afile / "sub", count=2))
    with pytest.raises(ConfigError, match="not a folder"):
        runner.generate(_conf(afile, count=2))
    # a folder that cannot be created even by root (os.access says yes for root)
    if Path("/proc/self").is_dir():
        with pytest.raises(ConfigError, match="is not writable"):
            runner.generate(_conf(Path("/proc/facsgen_cannot_write"), count=2))
        assert scene.camera is None and scene.world is None
    # no landmark map: a mesh with AU shape keys but unknown topology
    me = bpy.data.meshes.new("Blob")
    me.from_pydata([(0, 0, 0), (0.1, 0, 0), (0, 0, 0.1), (0.1, 0, 0.1)], [], [(0, 1, 3, 2)])
    blob = bpy.data.objects.new("Blob", me)
    scene.collection.objects.link(blob)
    blob.shape_key_add(name="Basis")
    blob.shape_key_add(name="AU12")
    with pytest.raises(runner.GenerationError, match="no 468-point landmark map for 'Blob' \\(4 vertices"):
        runner.generate(_conf(out, count=1, character="Blob", emotions=("Joy",),
                              preset=_bad_preset(tmp_path, {"Joy": {"AU12": [0, 1]}})))
    assert not out.exists()
    del obj


def test_allow_drop_unsupported(addon, tmp_path):
    import bpy

    from facs_dataset_generator.pipeline import head, runner

    head.add_builtin_head(bpy.context.scene)
    out = tmp_path / "d"
    preset = _bad_preset(tmp_path, {"Joy": {"AU22": [0.2, 0.4], "AU12": [0.5, 0.6]}})
    runner.generate(_conf(out, count=1, emotions=("Joy",), preset=preset, allow_drop_unsupported=True))
    row = _row(out, "000000")
    assert row.AU22 == 0.0 and 0.5 <= row.AU12 <= 0.6
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["dropped_aus"] == ["AU22"]
    assert meta["schema_version"] and meta["blender_version"] and meta["extension_version"]
    assert meta["columns"][:6] == ["sample_id", "emotion", "image", "width", "height", "identity_seed"]


def test_resume_refuses_a_different_dataset(addon, tmp_path):
    import bpy

    from facs_dataset_generator.core.config import ConfigError
    from facs_dataset_generator.pipeline import head, runner

    head.add_builtin_head(bpy.context.scene)
    out = tmp_path / "d"
    runner.generate(_conf(out, count=1, emotions=("Joy",)))
    with pytest.raises(ConfigError, match="already contains 1 of this run's samples; pass --resume"):
        runner.generate(_conf(out, count=1, emotions=("Joy",)))
    with pytest.raises(ConfigError, match="different settings"):
        runner.generate(_conf(out, count=1, emotions=("Joy",), seed=99, resume=True))
    res = runner.generate(_conf(out, count=1, emotions=("Joy",), resume=True))
    assert (res.written, res.skipped) == (0, 1)


# --------------------------------------------------------------------------- CLI: kill/resume, shards, determinism


FACSGEN = [sys.executable, "-c", "import sys; from facs_dataset_generator.cli import main; sys.exit(main())"]
ARGS = ["--count", "10", "--views", "2", "--resolution", "40x32", "--samples", "1", "--no-denoise", "--device", "cpu",
        "--emotions", "Joy,Anger,Contempt", "--seed", "4", "--roll-jitter", "5", "--quiet"]


def _cli(*args, timeout=240):
    return subprocess.run([*FACSGEN, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def _csvs(out) -> dict[str, str]:
    return {p.stem: p.read_text() for p in sorted((Path(out) / "annotations").glob("*.csv"))}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "d"
    r = _cli("generate", "--out", str(out), *ARGS)
    assert r.returncode == 0, r.stderr[-2000:]
    return out


def test_cli_validate(reference, tmp_path):
    from facs_dataset_generator.core import dataset

    assert dataset.validate_dataset(reference) == []
    assert dataset.count_samples(reference) == 10
    bad = tmp_path / "bad"
    shutil.copytree(reference, bad)
    (bad / "images" / "000003.png").unlink()
    r = _cli("validate", str(bad))
    assert r.returncode == 1 and "000003.png is missing" in r.stderr


def test_determinism_same_seed_same_csvs(reference, tmp_path):
    out = tmp_path / "again"
    r = _cli("generate", "--out", str(out), *ARGS)
    assert r.returncode == 0, r.stderr[-2000:]
    # Blender's own log lines (render "Saved: ...", Cycles device probing) stay off the terminal
    assert "Saved:" not in r.stdout + r.stderr and "| render" not in r.stdout + r.stderr, r.stdout + r.stderr
    a, b = _csvs(reference), _csvs(out)
    assert len(a) == 10 and a == b
    assert (reference / "index.csv").read_text() == (out / "index.csv").read_text()
    from facs_dataset_generator.core import dataset

    assert dataset.read_parquet(reference / "index.parquet").equals(dataset.read_parquet(out / "index.parquet"))


def test_blender_log_on_request(tmp_path):
    """``--blender-log`` shows what Blender prints; our own lines are there either way."""
    args = ["--count", "2", "--views", "2", "--resolution", "24x16", "--samples", "1", "--no-denoise",
            "--device", "cpu", "--emotions", "Joy", "--seed", "1"]
    r = _cli("generate", "--out", str(tmp_path / "a"), *args, "--blender-log")
    assert r.returncode == 0, r.stderr[-2000:]
    both = r.stdout + r.stderr
    assert both.count("Saved:") == 2 and "[2/2]" in both and "wrote 2 new samples" in both, both
    r = _cli("generate", "--out", str(tmp_path / "b"), *args)
    both = r.stdout + r.stderr
    assert r.returncode == 0 and "Saved:" not in both and "[2/2]" in both and "wrote 2 new samples" in both, both
    # the run said where Blender's output went (what a crash would leave there), and removed it at the end
    import re

    m = re.search(r"Blender's log: (\S+facsgen-blender-\S+\.log)", both)
    assert m, both
    assert not Path(m.group(1)).exists()


def test_shards_merge_into_the_single_run(reference, tmp_path):
    from facs_dataset_generator.core import dataset

    sep = [tmp_path / "s0", tmp_path / "s1"]
    procs = [subprocess.Popen([*FACSGEN, "generate", "--out", str(sep[k]), *ARGS, "--shard", f"{k}/2"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT) for k in range(2)]
    for p in procs:
        assert p.wait(timeout=240) == 0, p.stderr.read()[-2000:]
    # Joy 4, Anger 3, Contempt 3 samples, 2 views: draws [0 1] [2 3] [4 5] [6] [7 8] [9];
    # shard K/2 takes every other draw, whole
    expected = [[0, 1, 4, 5, 7, 8], [2, 3, 6, 9]]
    for k in range(2):
        assert sorted(_csvs(sep[k])) == [f"{i:06d}" for i in expected[k]]
        assert dataset.validate_dataset(sep[k]) == []
    # shards in separate folders, merged
    merged = tmp_path / "merged"
    assert dataset.merge_datasets(sep, merged) == 10
    assert _csvs(merged) == _csvs(reference)
    assert dataset.validate_dataset(merged) == []
    assert (merged / "index.csv").read_text() == (reference / "index.csv").read_text()
    # shards into one folder: shard 0 added to a folder holding shard 1
    same = tmp_path / "same"
    shutil.copytree(sep[1], same)
    r = _cli("generate", "--out", str(same), *ARGS, "--shard", "0/2")
    assert r.returncode == 0, r.stderr[-2000:]
    assert _csvs(same) == _csvs(reference)
    assert dataset.validate_dataset(same) == []


def test_kill_and_resume(reference, tmp_path):
    out = tmp_path / "k"
    proc = subprocess.Popen([*FACSGEN, "generate", "--out", str(out), *ARGS], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=ROOT)
    t0 = time.time()
    while time.time() - t0 < 120:
        ann = out / "annotations"
        if ann.is_dir() and len([p for p in ann.iterdir() if p.suffix == ".csv"]) >= 3:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    n_done = len(list((out / "annotations").glob("[0-9]*.csv")))
    assert 3 <= n_done < 10, n_done
    # what a kill can leave behind: a half-written temp image and an image without its CSV
    (out / "images" / ".000009.tmp.png").write_bytes(b"\x89PNG partial")
    shutil.copy(reference / "images" / "000008.png", out / "images" / "000008.png")
    (out / "annotations" / "000008.csv").unlink(missing_ok=True)
    r = _cli("generate", "--out", str(out), *ARGS)
    assert r.returncode != 0 and "--resume" in r.stderr
    r = _cli("generate", "--out", str(out), *ARGS, "--resume")
    assert r.returncode == 0, r.stderr[-2000:]
    assert _csvs(out) == _csvs(reference)
    names = sorted(p.name for p in (out / "images").iterdir())
    assert names == [f"{i:06d}.png" for i in range(10)]
    assert sorted(p.name for p in (out / "annotations").iterdir()) == [f"{i:06d}.csv" for i in range(10)]
    assert _cli("validate", str(out)).returncode == 0
