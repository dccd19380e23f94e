# SPDX-License-Identifier: GPL-3.0-or-later
"""MediaPipe Face Mesh on Cycles renders of the built-in head.

Prints, per yaw bin (0, 15, 30, 45, 60 degrees, both signs), the detection rate and the
mean landmark error / inter-ocular distance (||p33 - p263|| of the ground truth in
pixels), and per AU the proxy (``core.au_proxies``) measured on MediaPipe's detections
at intensity 0 and 1 (frontal): agreement = the detected proxy moves the way the label
says, by at least a third of the ground-truth change.

    /work/venv/bin/python benchmarks/head_mediapipe.py [--res 384] [--samples 16] [--quick]

The helpers here (scene, camera, render, projection, detection) are also used by
``tests/test_head_mediapipe.py`` and ``scripts/contact_sheet.py``.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import import_pkg

ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- scene
def setup_scene(res=384, samples=16, denoise=True):
    """Empty file, Cycles CPU, neutral studio-like lighting, a camera; returns (scene, cam)."""
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.cycles.use_denoising = bool(denoise)
    scene.cycles.max_bounces = 3
    scene.render.resolution_x = scene.render.resolution_y = res
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "PNG"
    scene.render.film_transparent = False
    scene.view_settings.view_transform = "Standard"
    world = bpy.data.worlds.new("FACS World")
    world.use_nodes = True
    bg = world.node_tree.nodes["Background"]
    bg.inputs["Color"].default_value = (0.42, 0.44, 0.47, 1.0)
    bg.inputs["Strength"].default_value = 0.35
    scene.world = world
    for name, loc, energy, size in (("Key", (-0.35, -0.7, 0.45), 22.0, 0.5), ("Fill", (0.6, -0.45, 0.1), 8.0, 0.6),
                                    ("Rim", (0.2, 0.6, 0.5), 12.0, 0.4)):
        ld = bpy.data.lights.new(name, "AREA")
        ld.energy = energy
        ld.size = size
        lo = bpy.data.objects.new(name, ld)
        lo.location = loc
        d = -np.asarray(loc, float)
        lo.rotation_euler = _look_rotation(d)
        scene.collection.objects.link(lo)
    cam_data = bpy.data.cameras.new("Camera")
    cam_data.lens = 50.0
    cam_data.sensor_width = 36.0
    cam = bpy.data.objects.new("Camera", cam_data)
    scene.collection.objects.link(cam)
    scene.camera = cam
    return scene, cam


def _look_rotation(direction):
    from mathutils import Vector

    return Vector(direction).to_track_quat("-Z", "Y").to_euler()


def place_camera(cam, target, yaw_deg=0.0, pitch_deg=0.0, dist=0.62):
    """Camera on a sphere around ``target``: yaw > 0 = camera toward the subject's left
    (+X), pitch > 0 = camera above; it looks at the target."""
    yaw, pitch = math.radians(yaw_deg), math.radians(pitch_deg)
    d = np.array([math.sin(yaw) * math.cos(pitch), -math.cos(yaw) * math.cos(pitch), math.sin(pitch)])
    loc = np.asarray(target, float) + dist * d
    cam.location = loc
    cam.rotation_euler = _look_rotation(-d)


def render_rgb(scene) -> np.ndarray:
    """Render the scene and return an (H, W, 3) uint8 RGB array."""
    import bpy

    with tempfile.TemporaryDirectory() as td:
        path = str(Path(td) / "r.png")
        scene.render.filepath = path
        bpy.ops.render.render(write_still=True, scene=scene.name)
        img = bpy.data.images.load(path)
        w, h = img.size
        px = np.empty(w * h * 4, dtype=np.float32)
        img.pixels.foreach_get(px)
        bpy.data.images.remove(img)
    rgb = px.reshape(h, w, 4)[::-1, :, :3]  # Blender rows start at the bottom
    return np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)


def project(scene, cam, points_world) -> np.ndarray:
    """World points -> pixel coordinates (x right, y down, origin top-left corner)."""
    import bpy  # noqa: F401
    from bpy_extras.object_utils import world_to_camera_view
    from mathutils import Vector

    r = scene.render
    w = r.resolution_x * r.resolution_percentage / 100.0
    h = r.resolution_y * r.resolution_percentage / 100.0
    out = np.empty((len(points_world), 2))
    for i, p in enumerate(points_world):
        c = world_to_camera_view(scene, cam, Vector(p))
        out[i] = (c.x * w, (1.0 - c.y) * h)
    return out


_FACE_MESH = None


def detect(rgb: np.ndarray):
    """MediaPipe Face Mesh (static image mode, refined eyes/lips): the first 468 landmarks
    in pixels, or None."""
    global _FACE_MESH
    import mediapipe as mp

    if _FACE_MESH is None:
        _FACE_MESH = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True, max_num_faces=1, refine_landmarks=True, min_detection_confidence=0.3)
    res = _FACE_MESH.process(np.ascontiguousarray(rgb))
    if not res.multi_face_landmarks:
        return None
    h, w = rgb.shape[:2]
    lm = res.multi_face_landmarks[0].landmark
    return np.array([[p.x * w, p.y * h] for p in lm[:468]])


def head_target(obj):
    """World position between the eyes (landmark 168) of the posed head."""
    from facs_dataset_generator.pipeline import head as head_mod
    from facs_dataset_generator.pipeline.landmarks import world_landmarks

    lm = world_landmarks(obj, head_mod.builtin_landmark_map(obj))
    return lm[168], lm


def iod_px(lm_px):
    return float(np.linalg.norm(lm_px[33] - lm_px[263]))


def measure_view(scene, cam, obj, yaw, pitch=0.0, aus=None, dist=0.62):
    """Pose (AU values), render, detect. Returns dict(found, err_iod, gt_px, det_px, rgb)."""
    from facs_dataset_generator.pipeline.landmarks import world_landmarks

    kb = obj.data.shape_keys.key_blocks
    for k in kb[1:]:
        if not k.name.startswith("ID_"):
            k.value = 0.0
    for k, v in (aus or {}).items():
        kb[k].value = v
    from facs_dataset_generator.pipeline import head as head_mod

    lm0 = world_landmarks(obj, head_mod.builtin_landmark_map(obj))
    place_camera(cam, lm0[168], yaw, pitch, dist)
    import bpy

    bpy.context.view_layer.update()
    gt = project(scene, cam, lm0)
    rgb = render_rgb(scene)
    det = detect(rgb)
    out = {"found": det is not None, "gt_px": gt, "det_px": det, "rgb": rgb, "lm_world": lm0}
    if det is not None:
        out["err_iod"] = float(np.linalg.norm(det - gt, axis=1).mean() / iod_px(gt))
    return out


# --------------------------------------------------------------------------- benchmark
YAW_BINS = (0, 15, 30, 45, 60)
VISIBLE_AUS = ("AU01", "AU02", "AU04", "AU12", "AU15", "AU20", "AU25", "AU26", "AU43")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--res", type=int, default=384)
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--quick", action="store_true", help="one sign per yaw, fewer AUs")
    args = ap.parse_args(argv)
    import_pkg()
    from facs_dataset_generator.core import au_proxies
    from facs_dataset_generator.pipeline import head as head_mod

    t0 = time.time()
    scene, cam = setup_scene(args.res, args.samples)
    obj = head_mod.add_builtin_head(scene)
    print(f"MediaPipe Face Mesh on the built-in head, Cycles {args.res}px {args.samples} spp")
    print(f"{'yaw':>5} {'pitch':>5} {'found':>6} {'err/IOD':>8}")
    per_bin = {}
    for yb in YAW_BINS:
        signs = (1,) if yb == 0 or args.quick else (1, -1)
        for s in signs:
            for pitch in ((0.0,) if args.quick else (0.0, 20.0, -15.0)):
                r = measure_view(scene, cam, obj, s * yb, pitch)
                per_bin.setdefault(yb, []).append(r)
                e = f"{r['err_iod']:.3f}" if r["found"] else "-"
                print(f"{s * yb:>5} {pitch:>5.0f} {str(r['found']):>6} {e:>8}", flush=True)
    print("\nper yaw bin: detection rate, mean error / IOD")
    for yb, rs in per_bin.items():
        errs = [r["err_iod"] for r in rs if r["found"]]
        rate = sum(r["found"] for r in rs) / len(rs)
        print(f"  |yaw|={yb:>2}: rate {rate:.2f} ({sum(r['found'] for r in rs)}/{len(rs)}), "
              f"mean err/IOD {np.mean(errs) if errs else float('nan'):.3f}")
    print("\nper-AU proxy agreement (frontal, intensity 0 -> 1): ground truth vs MediaPipe")
    neutral = measure_view(scene, cam, obj, 0.0, 0.0)
    aus = VISIBLE_AUS[:5] if args.quick else VISIBLE_AUS
    n_ok = 0
    for au in aus:
        r = measure_view(scene, cam, obj, 0.0, 0.0, {au: 1.0})
        sign = au_proxies.PROXIES[au].sign
        gt_d = au_proxies.proxy(au, r["gt_px"]) - au_proxies.proxy(au, neutral["gt_px"])
        if r["found"] and neutral["found"]:
            det_d = au_proxies.proxy(au, r["det_px"]) - au_proxies.proxy(au, neutral["det_px"])
            ok = det_d * sign > 0 and abs(det_d) >= abs(gt_d) / 3
        else:
            det_d, ok = float("nan"), False
        n_ok += ok
        print(f"  {au}: GT change {gt_d:+.3f} IOD, MediaPipe change {det_d:+.3f} IOD, "
              f"expected sign {'+' if sign > 0 else '-'}: {'agree' if ok else 'DISAGREE'}")
    print(f"  agreement {n_ok}/{len(aus)}")
    print(f"\ntotal {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
