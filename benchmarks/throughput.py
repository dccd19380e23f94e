# SPDX-License-Identifier: GPL-3.0-or-later
"""Throughput of the generation pipeline against a deliberately naive baseline.

Every variant runs in its own Python subprocess (same start-up conditions: fresh bpy,
factory settings, same scene preparation), variants are interleaved and repeated
(``--repeats``) because the machine is shared, and the ratios are computed from runs made
side by side in one invocation.

Variants (``--variants``, comma separated):

* ``naive``   the straightforward script: the scene prepared by ``Job.prepare()`` (same
  character, camera positions, HDRI lighting, same samples), then Cycles render settings put
  back to the defaults of a new Blender scene (denoiser OIDN prefilter ACCURATE quality HIGH,
  default light paths, adaptive sampling defaults, sampling pattern AUTOMATIC = blue noise at
  these sample counts, world importance map AUTOMATIC, no persistent data; 16 spp / the
  resolution asked),
  and per sample: set AUs, move the camera, ``view_layer.update()``, project the landmarks
  one vertex at a time with ``bpy_extras.object_utils.world_to_camera_view``, render a still
  with ``write_still``, write a CSV with the ``csv`` module.
* ``ours``    the project's pipeline: ``pipeline.runner.Job`` exactly as
  ``pipeline.runner.generate`` drives it (prepare, ``step()`` until False, finish), with
  the pipeline's own defaults.
* ``proto``   like ``ours`` plus scene overrides applied after ``Job.prepare()``
  (``--proto-set cycles.denoising_prefilter=FAST,...``): used to try settings before they
  become pipeline defaults.

Printed per variant and character: samples/s (of the per-sample loop; and of the whole run
including prepare/finish), the share of the loop time spent outside the render call, peak
RSS (VmHWM), and the ratio naive_time / ours_time; with ``--quality`` the PSNR of every
variant's images against a converged reference render of the same samples (``--ref-spp``
samples, no denoiser, default light paths; cached under ``--work``).

Characters: ``builtin`` (the built-in head) and ``mblab`` (``../shared/data/mblab``
female test character, FACS slider rig). If no landmark map for the MB-Lab mesh is found
(stored on the object, shipped, or user maps), the benchmark builds a ROUGH one itself
(MediaPipe's canonical face scaled into the automap's initial face frame, each point
projected onto the mesh along the face normal, nearest vertex): it only exercises the same
code paths (map evaluation, projection, occlusion), its accuracy is not the point; the
output says when this happened.

Examples::

    /work/venv/bin/python benchmarks/throughput.py --n 16 --res 256 --spp 16 --repeats 2 --quality
    /work/venv/bin/python benchmarks/throughput.py --memory            # peak RSS at 10, 100, 200, 500, 1000 samples
    /work/venv/bin/python benchmarks/throughput.py --shards 2          # 1 process x 2 threads vs 2 x 1
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
MBLAB_BLEND = SHARED / "data" / "mblab" / "mblab_female_facs.blend"
MBLAB_MESH = "MBlab_female"

#: Cycles settings the naive baseline puts back to Blender's defaults (read from a new scene).
CYCLES_DEFAULT_PROPS = (
    "denoiser", "denoising_prefilter", "denoising_quality", "denoising_input_passes", "denoising_use_gpu",
    "max_bounces", "diffuse_bounces", "glossy_bounces", "transmission_bounces", "volume_bounces",
    "transparent_max_bounces", "caustics_reflective", "caustics_refractive", "blur_glossy",
    "sample_clamp_direct", "sample_clamp_indirect", "use_adaptive_sampling", "adaptive_threshold",
    "adaptive_min_samples", "use_light_tree", "light_sampling_threshold", "tile_size", "use_auto_tile",
    "time_limit", "use_guiding", "sampling_pattern",
)


# =========================================================================== memory helpers
def proc_status() -> dict[str, int]:
    """VmRSS / VmHWM in KiB from /proc/self/status (Linux); ru_maxrss as fallback."""
    out = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                k, v = line.split(":", 1)
                out[k] = int(v.split()[0])
    except OSError:
        pass
    if "VmHWM" not in out:
        import resource

        out["VmHWM"] = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return out


# =========================================================================== worker side
def _import_pkg():
    try:
        import facs_dataset_generator  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(ROOT / "tests"))
        import conftest  # noqa: F401
    import facs_dataset_generator

    return facs_dataset_generator


def _config(a: dict):
    from facs_dataset_generator.core import config as cfg

    conf = cfg.GenerationConfig(
        out=a["out"], count=int(a["n"]), seed=int(a.get("seed", 0)), preset="emfacs",
        allow_drop_unsupported=True,
        render=cfg.RenderConfig(device=a.get("device", "cpu"), resolution=(a["res"], a["res"]), samples=a["spp"],
                                denoise=not a.get("no_denoise", False)),
        camera=cfg.CameraConfig(views=int(a.get("views", 8))),
        **({"emotions": tuple(a["emotions"])} if a.get("emotions") else {}),
        shard=tuple(a.get("shard", (0, 1))),
    )
    if a["char"] == "mblab":
        conf.character = MBLAB_MESH
    return conf


def _rough_mblab_map(obj):
    """A rough 468-point map for the MB-Lab mesh (benchmark only, see the module docstring)."""
    import bpy
    import numpy as np
    from mathutils.bvhtree import BVHTree

    from facs_dataset_generator.landmark_map import LandmarkMap
    from facs_dataset_generator.pipeline import automap
    from facs_dataset_generator.pipeline.landmarks import evaluated_fingerprint, evaluated_vertices

    dg = bpy.context.evaluated_depsgraph_get()
    verts = evaluated_vertices(obj, dg, world=True)
    frame = automap.initial_frame(obj, verts)
    can = np.load(ROOT / "data" / "canonical_face.npz")["verts"].astype(np.float64)  # cm, y up, z to viewer
    can = can - can.mean(axis=0)
    h = float(np.linalg.norm(can[10] - can[152]))
    s = 2.0 * frame.radius * 0.8 / h
    right, up, front = frame.right, frame.up, frame.front
    pts = frame.centre + s * (np.outer(can[:, 0], right) + np.outer(can[:, 1], up) + np.outer(can[:, 2], front))
    mw = np.array(obj.matrix_world, dtype=np.float64)
    inv = np.linalg.inv(mw)
    bvh = BVHTree.FromObject(obj, dg)
    idx = np.empty(468, dtype=np.int64)
    d_local = inv[:3, :3] @ (-front)
    d_local /= np.linalg.norm(d_local)
    for i, p in enumerate(pts):  # once per run
        o = inv[:3, :3] @ (p + front * 0.3) + inv[:3, 3]
        hit = bvh.ray_cast(o.tolist(), d_local.tolist(), 1.0)[0]
        q = np.array(hit) if hit is not None else inv[:3, :3] @ p + inv[:3, 3]
        qw = mw[:3, :3] @ q + mw[:3, 3]
        idx[i] = int(np.argmin(np.linalg.norm(verts - qw, axis=1)))
    return LandmarkMap.from_vertices(idx, evaluated_fingerprint(obj, dg), meta={"source": "benchmark rough fit"})


def _setup_file(a: dict) -> dict:
    """Fresh file (+ MB-Lab character and its map); returns notes."""
    import bpy

    pkg = _import_pkg()
    from facs_dataset_generator import registration

    try:
        registration.register()
    except Exception:  # already registered / UI-only parts in background mode
        pass
    notes = {}
    if a["char"] == "mblab":
        bpy.ops.wm.open_mainfile(filepath=str(MBLAB_BLEND))
        obj = bpy.data.objects[MBLAB_MESH]
        from facs_dataset_generator.pipeline import landmark_maps

        dg = bpy.context.evaluated_depsgraph_get()
        if landmark_maps.find_map(obj, dg) is None:
            landmark_maps.store_map(obj, _rough_mblab_map(obj), dg)
            notes["landmark_map"] = "rough map built by the benchmark (nearest vertices to a scaled canonical face)"
        else:
            notes["landmark_map"] = "found by landmark_maps.find_map"
    else:
        bpy.ops.wm.read_factory_settings(use_empty=True)
    del pkg
    return notes


def _apply_overrides(scene, overrides: dict) -> None:
    """``--set`` / ``--proto-set`` on ``scene``. A value Cycles only offers with its debug
    options on (e.g. ``cycles.sampling_pattern=SOBOL_BURLEY``) is set with them on for that
    one assignment, as the Preferences' Developer Extras + Cycles Debug would allow."""
    import bpy

    owners = {"cycles": scene.cycles, "render": scene.render, "world": getattr(scene.world, "cycles", None)}
    for key, val in overrides.items():
        owner_name, _, attr = key.partition(".")
        owner = owners.get(owner_name)
        if owner is None or not attr:
            raise SystemExit(f"override {key!r}: expected cycles.<setting>, render.<setting> or world.<setting>")
        try:
            setattr(owner, attr, val)
        except TypeError:
            prefs = bpy.context.preferences
            old = (prefs.experimental.use_cycles_debug, prefs.view.show_developer_ui)
            prefs.experimental.use_cycles_debug = prefs.view.show_developer_ui = True
            try:
                setattr(owner, attr, val)
            finally:
                prefs.experimental.use_cycles_debug, prefs.view.show_developer_ui = old


def _reset_to_defaults(scene) -> dict:
    """Naive baseline: Cycles light paths, sampling extras and denoiser back to Blender defaults."""
    import bpy

    tmp = bpy.data.scenes.new("_facsgen_defaults")
    try:
        for p in CYCLES_DEFAULT_PROPS:
            if hasattr(tmp.cycles, p):
                setattr(scene.cycles, p, getattr(tmp.cycles, p))
        scene.render.use_persistent_data = tmp.render.use_persistent_data
        scene.cycles.use_denoising = True
        for p in ("color_mode", "color_depth", "compression"):
            setattr(scene.render.image_settings, p, getattr(tmp.render.image_settings, p))
    finally:
        bpy.data.scenes.remove(tmp)
    if scene.world is not None and hasattr(scene.world, "cycles"):  # world importance map: default
        w = bpy.data.worlds.new("_facsgen_default_world")
        scene.world.cycles.sampling_method = w.cycles.sampling_method
        scene.world.cycles.sample_map_resolution = w.cycles.sample_map_resolution
        bpy.data.worlds.remove(w)
    c = scene.cycles
    return {"denoiser": c.denoiser, "prefilter": c.denoising_prefilter, "quality": c.denoising_quality,
            "max_bounces": c.max_bounces, "persistent_data": scene.render.use_persistent_data,
            "sampling_pattern": c.sampling_pattern,
            "world_map": scene.world.cycles.sampling_method if scene.world is not None else None}


def _settings_summary(scene) -> dict:
    from facs_dataset_generator.pipeline.render_setup import compute_devices

    c, r = scene.cycles, scene.render
    device = c.device if c.device == "CPU" else f"{c.device} ({compute_devices()})"
    return {"device": device, "samples": c.samples, "pattern": c.sampling_pattern, "denoise": c.use_denoising,
            "denoiser": c.denoiser,
            "prefilter": c.denoising_prefilter, "quality": c.denoising_quality,
            "passes": c.denoising_input_passes, "denoise_gpu": c.denoising_use_gpu,
            "adaptive": (c.use_adaptive_sampling, round(c.adaptive_threshold, 4)),
            "bounces": (c.max_bounces, c.diffuse_bounces, c.glossy_bounces, c.transmission_bounces,
                        c.transparent_max_bounces), "light_tree": c.use_light_tree,
            "persistent_data": r.use_persistent_data,
            "threads": (r.threads_mode, r.threads),
            "world_map": ((scene.world.cycles.sampling_method, scene.world.cycles.sample_map_resolution)
                          if scene.world is not None and hasattr(scene.world, "cycles") else None)}


def run_ours(a: dict) -> dict:
    import bpy

    from facs_dataset_generator.cli.memory import fix_mmap_threshold
    from facs_dataset_generator.pipeline import runner

    notes = _setup_file(a)
    notes["mmap_threshold"] = fix_mmap_threshold()  # as `facsgen generate` does
    mem_marks = {}
    t0 = time.perf_counter()
    job = runner.Job(_config(a), turn_character=a.get("turn", True))
    job.prepare()
    scene = job.scene
    if a.get("threads"):
        scene.render.threads_mode, scene.render.threads = "FIXED", int(a["threads"])
    if a.get("overrides"):
        _apply_overrides(scene, a["overrides"])
    settings = _settings_summary(scene)
    notes["lighting"] = job.lighting_turn
    t1 = time.perf_counter()
    c1 = time.process_time()
    marks = set(a.get("mem_marks", ()))
    hdris = set()
    while job.step():
        if marks and job.world is not None and job.world.env.image is not None:
            hdris.add(job.world.env.image.name)
        if job.done in marks:
            mem_marks[job.done] = {**proc_status(), "hdris": len(hdris)}
    t2 = time.perf_counter()
    c2 = time.process_time()
    res = job.finish()
    t3 = time.perf_counter()
    del bpy
    return {"n": res.written, "loop_s": t2 - t1, "loop_cpu": c2 - c1, "render_s": job.render_seconds, "prepare_s": t1 - t0,
            "finish_s": t3 - t2, "mem": proc_status(), "mem_marks": mem_marks, "settings": settings, "notes": notes}


def run_naive(a: dict) -> dict:
    """The straightforward script (see the module docstring)."""
    import csv

    import bpy
    from bpy_extras.object_utils import world_to_camera_view
    from mathutils import Vector

    from facs_dataset_generator.pipeline import runner

    notes = _setup_file(a)
    t0 = time.perf_counter()
    job = runner.Job(_config(a), turn_character=False)
    job.prepare()  # same scene content, camera positions, lighting and samples as "ours"
    scene = job.scene
    notes["defaults"] = _reset_to_defaults(scene)
    if a.get("threads"):
        scene.render.threads_mode, scene.render.threads = "FIXED", int(a["threads"])
    settings = _settings_summary(scene)
    out = Path(a["out"])
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    cam = job.camera
    obj, lmap = job.obj, job.lmap
    w, h = job.width, job.height
    ids = list(job.plan.shard_indices(job.config.shard))
    render_s = 0.0
    marks = set(a.get("mem_marks", ()))
    mem_marks = {}
    t1 = time.perf_counter()
    c1 = time.process_time()
    for done, i in enumerate(ids, 1):
        s = job.plan[i]
        job._pose(s)  # set AUs (+ identity on the built-in head)
        runner.render_setup.set_matrix_world(cam, job.camera_matrix(s))
        if job.world is not None:
            job.world.set(s.hdri, s.hdri_rotation, s.hdri_strength)
        bpy.context.view_layer.update()
        dg = bpy.context.evaluated_depsgraph_get()
        ob_eval = obj.evaluated_get(dg)
        me = ob_eval.to_mesh()
        mw = ob_eval.matrix_world
        rows = []
        for li in range(len(lmap.tri)):  # one landmark at a time
            p = Vector((0.0, 0.0, 0.0))
            for k in range(3):
                p += me.vertices[int(lmap.tri[li][k])].co * float(lmap.bary[li][k])
            pw = mw @ p
            ndc = world_to_camera_view(scene, cam, pw)
            x, y = ndc.x * w, (1.0 - ndc.y) * h
            vis = int(0.0 <= ndc.x <= 1.0 and 0.0 <= ndc.y <= 1.0 and ndc.z > 0)
            rows.append((li, x, y, ndc.z, vis))
        ob_eval.to_mesh_clear()
        scene.render.filepath = str(out / "images" / f"{s.sample_id}.png")
        r0 = time.perf_counter()
        bpy.ops.render.render(write_still=True)
        render_s += time.perf_counter() - r0
        with open(out / "annotations" / f"{s.sample_id}.csv", "w", newline="") as f:
            wr = csv.writer(f)
            wr.writerow(["sample_id", "emotion", *s.aus.keys(), "landmark", "x", "y", "depth", "visible"])
            for r in rows:
                wr.writerow([s.sample_id, s.emotion, *s.aus.values(), *r])
        if done in marks:
            mem_marks[done] = proc_status()
    t2 = time.perf_counter()
    c2 = time.process_time()
    job._pending.clear()
    job.finish()
    t3 = time.perf_counter()
    return {"n": len(ids), "loop_s": t2 - t1, "loop_cpu": c2 - c1, "render_s": render_s, "prepare_s": t1 - t0, "finish_s": t3 - t2,
            "mem": proc_status(), "mem_marks": mem_marks, "settings": settings, "notes": notes}


def run_reference(a: dict) -> dict:
    """Converged reference: same samples, ``ref_spp`` samples, no denoiser, default light paths."""
    a = dict(a, spp=a["ref_spp"], no_denoise=True)
    import bpy

    from facs_dataset_generator.pipeline import runner

    _setup_file(a)
    job = runner.Job(_config(a), turn_character=False)  # the world itself rotated: the definition
    job.prepare()
    _reset_to_defaults(job.scene)
    job.scene.cycles.use_denoising = False
    job.scene.cycles.use_adaptive_sampling = False
    job.scene.render.use_persistent_data = True  # does not change the image, saves re-syncs
    job.scene.render.image_settings.color_mode = "RGB"
    job.scene.cycles.seed = int(a.get("ref_seed", 0))  # another seed: the reference's own noise (render_costs.py)
    settings = _settings_summary(job.scene)
    t0 = time.perf_counter()
    left = int(a.get("stop_after", 0)) or job.total
    while left > 0 and job.step():
        left -= 1
    job._pending.clear()
    job.finish()
    del bpy
    return {"n": job.written, "loop_s": time.perf_counter() - t0, "settings": settings}


def worker_main(spec: str) -> None:
    a = json.loads(spec)
    fn = {"naive": run_naive, "ours": run_ours, "proto": run_ours, "reference": run_reference}[a["variant"]]
    res = fn(a)
    res["variant"] = a["variant"]
    print("@@RESULT " + json.dumps(res, default=str), flush=True)


# =========================================================================== parent side
def spawn(a: dict, log: Path | None = None, wait: bool = True, script: Path | None = None):
    """Run a worker (``script --worker JSON``, this file unless given) in a fresh Python process."""
    cmd = [sys.executable, str(script or Path(__file__).resolve()), "--worker", json.dumps(a)]
    env = dict(os.environ)
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=str(ROOT))
    if not wait:
        return p
    return collect(p, a, log)


def collect(p, a: dict, log: Path | None = None) -> dict:
    out, _ = p.communicate()
    if log is not None:
        with open(log, "a") as f:
            f.write(f"==== {a['variant']} {a['char']}\n{out}\n")
    for line in out.splitlines():
        if line.startswith("@@RESULT "):
            return json.loads(line[len("@@RESULT "):])
    tail = "\n".join(out.splitlines()[-30:])
    raise RuntimeError(f"worker {a['variant']}/{a['char']} failed (rc {p.returncode}):\n{tail}")


def psnr_dirs(test: Path, ref: Path) -> tuple[float, float]:
    """(mean PSNR over images, PSNR of the pooled MSE) in dB, 8-bit RGB, peak 255."""
    import cv2
    import numpy as np

    vals, mses = [], []
    for rp in sorted((ref / "images").glob("*.png")):
        tp = test / "images" / rp.name
        if not tp.is_file():
            raise RuntimeError(f"{tp} missing")
        r = cv2.imread(str(rp), cv2.IMREAD_COLOR).astype(np.float64)
        t = cv2.imread(str(tp), cv2.IMREAD_COLOR).astype(np.float64)
        mse = float(np.mean((r - t) ** 2))
        mses.append(mse)
        vals.append(10 * np.log10(255.0 ** 2 / max(mse, 1e-12)))
    pooled = 10 * np.log10(255.0 ** 2 / max(float(np.mean(mses)), 1e-12))
    return float(np.mean(vals)), float(pooled)


#: Student's t, two-sided 95 %, by degrees of freedom (1-30); 1.96 beyond.
_T95 = (12.71, 4.30, 3.18, 2.78, 2.57, 2.45, 2.36, 2.31, 2.26, 2.23, 2.20, 2.18, 2.16, 2.14, 2.13,
        2.12, 2.11, 2.10, 2.09, 2.09, 2.08, 2.07, 2.07, 2.06, 2.06, 2.06, 2.05, 2.05, 2.05, 2.04)


def mean_ci(values) -> tuple[float, float, float]:
    """Mean of the per-repeat values and its 95 % interval (Student's t): repeats are few and
    this machine drifts, so a ratio at the target line is read with its interval."""
    vals = [float(v) for v in values]
    m = statistics.fmean(vals)
    if len(vals) < 2:
        return m, m, m
    df = len(vals) - 1
    half = (_T95[df - 1] if df <= len(_T95) else 1.96) * statistics.stdev(vals) / len(vals) ** 0.5
    return m, m - half, m + half


def parse_overrides(items) -> dict:
    ov = {}
    for item in items or ():
        for part in item.split(","):
            if not part.strip():
                continue
            k, _, v = part.partition("=")
            v = v.strip()
            if v.lower() in ("true", "false"):
                val = v.lower() == "true"
            else:
                try:
                    val = int(v)
                except ValueError:
                    try:
                        val = float(v)
                    except ValueError:
                        val = v
            ov[k.strip()] = val
    return ov


def pipeline_default_samples() -> int:
    """``RenderConfig().samples`` (the pipeline's default, also the CLI's ``--samples`` default),
    read without importing the package (its ``__init__`` needs bpy)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_facsgen_config", ROOT / "core" / "config.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look the module up
    spec.loader.exec_module(mod)
    return int(mod.RenderConfig().samples)


def _scene_key(base: dict) -> str:
    """What the reference images depend on besides size/count/seed: the samples drawn (emotions,
    views) and the built-in head's geometry and materials; a cached reference is reused only
    when all of it matches."""
    import hashlib

    h = hashlib.sha1(json.dumps([base["emotions"], base["views"]]).encode())
    for rel in ("pipeline/head.py", "core/head_model.py", "data/head_au_fields.json"):
        h.update((ROOT / rel).read_bytes())
    return h.hexdigest()[:10]


def variant_plan(variants: list[str], proto_sets) -> tuple[list[str], dict]:
    """The variants to run, each once, and the overrides of each ``--proto-set`` (named ``proto``,
    or ``proto0``, ``proto1`` ... when there are several); ``--variants`` may name them or not."""
    protos = {}
    for k, item in enumerate(proto_sets or ()):
        protos[f"proto{k}" if len(proto_sets) > 1 else "proto"] = parse_overrides([item])
    if protos:
        variants = [v for v in variants if v != "proto" and v not in protos] + list(protos)
    return list(dict.fromkeys(variants)), protos


def fmt_mb(kib) -> str:
    return f"{kib / 1024:.0f} MiB"


def bench(args) -> None:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    log = work / "workers.log"
    chars = args.chars.split(",")
    variants = args.variants.split(",")
    emotions = [e.strip() for e in args.emotions.split(",") if e.strip()] if args.emotions else []
    base = {"n": args.n, "res": args.res, "spp": args.spp, "views": args.views, "device": args.device,
            "threads": args.threads, "seed": args.seed, "emotions": emotions}
    variants, protos = variant_plan(variants, args.proto_set)
    ours_spp = args.ours_spp or pipeline_default_samples()
    results: dict[tuple[str, str], list[dict]] = {}
    for rep in range(args.repeats):
        for char in chars:
            order = variants if rep % 2 == 0 else list(reversed(variants))  # interleave
            for v in order:
                out = work / f"{char}_{v}_{rep}"
                shutil.rmtree(out, ignore_errors=True)
                kind = "proto" if v.startswith("proto") else v.split(":")[0]
                a = dict(base, char=char, variant=kind, out=str(out))
                if kind in ("ours", "proto"):  # the pipeline's own sample count unless asked
                    a["spp"] = ours_spp
                if ":" in v:  # e.g. ours:12 = the pipeline at 12 spp (quality-matched point)
                    a["spp"] = int(v.split(":")[1])
                if v in protos:
                    a["overrides"] = protos[v]
                r = spawn(a, log)
                r["out"] = str(out)
                results.setdefault((char, v), []).append(r)
                share = 1 - r["render_s"] / r["loop_s"]
                print(f"  [{rep}] {char:7s} {v:8s} {r['n'] / r['loop_s']:.3f} samples/s  "
                      f"({r['loop_s'] / r['n']:.3f} s/sample, outside render {100 * share:.1f}%, "
                      f"peak RSS {fmt_mb(r['mem']['VmHWM'])})", flush=True)
    refs = {}
    if args.quality:
        for char in chars:
            ref = work / f"ref_{char}_{args.res}_{args.n}_{args.ref_spp}_{args.seed}_{_scene_key(base)}"
            if not (ref / "images").is_dir() or len(list((ref / "images").glob("*.png"))) < args.n:
                shutil.rmtree(ref, ignore_errors=True)
                t = time.perf_counter()
                spawn(dict(base, char=char, variant="reference", out=str(ref), ref_spp=args.ref_spp), log)
                print(f"  reference {char}: {args.ref_spp} spp, {time.perf_counter() - t:.0f} s", flush=True)
            refs[char] = ref

    print()
    print(f"== throughput: N={args.n} samples ({', '.join(emotions) or 'all emotions'}, {args.views} views per "
          f"expression), {args.res}x{args.res}, naive {args.spp} spp, ours {ours_spp} spp "
          f"(pipeline default {pipeline_default_samples()}), device {args.device}, "
          f"{args.repeats} repeat(s), {os.cpu_count()} CPUs; command: {' '.join(sys.argv)}")
    for char in chars:
        print(f"-- character {char}")
        naive = results.get((char, "naive"))
        for v in variants:
            rs = results[(char, v)]
            per = [r["loop_s"] / r["n"] for r in rs]
            best = min(per)
            share = statistics.median(1 - r["render_s"] / r["loop_s"] for r in rs)
            whole = statistics.median(r["n"] / (r["prepare_s"] + r["loop_s"] + r["finish_s"]) for r in rs)
            hwm = max(r["mem"]["VmHWM"] for r in rs)
            line = (f"  {v:8s} {1 / statistics.median(per):6.3f} samples/s median (best {1 / best:.3f}; "
                    f"whole run incl. prepare/finish {whole:.3f}); outside render {100 * share:4.1f}%; "
                    f"peak RSS {fmt_mb(hwm)}")
            if naive and v != "naive":
                ratios = [nv["loop_s"] / nv["n"] / (r["loop_s"] / r["n"]) for nv, r in zip(naive, rs)]
                cpu = [nv["loop_cpu"] / nv["n"] / (r["loop_cpu"] / r["n"]) for nv, r in zip(naive, rs)]
                line += f"; naive/ours time ratio {statistics.median(ratios):.2f} (per repeat: " \
                        f"{', '.join(f'{x:.2f}' for x in ratios)}"
                if len(ratios) >= 3:
                    m, lo, hi = mean_ci(ratios)
                    line += f"; mean {m:.3f}, 95% interval of the mean {lo:.2f}-{hi:.2f}"
                line += f"; CPU-time ratio {statistics.median(cpu):.2f})"
            if char in refs:
                mean, pooled = psnr_dirs(Path(rs[0]["out"]), refs[char])
                line += f"; PSNR vs {args.ref_spp}spp ref {mean:.2f} dB (pooled {pooled:.2f})"
            print(line)
            print(f"           settings: {rs[0]['settings']}")
            if rs[0].get("notes", {}).get("landmark_map"):
                print(f"           landmark map: {rs[0]['notes']['landmark_map']}")
            if rs[0].get("notes", {}).get("lighting"):
                print(f"           lighting: {rs[0]['notes']['lighting']}")
            if rs[0].get("notes", {}).get("mmap_threshold"):
                print("           allocator: glibc M_MMAP_THRESHOLD fixed at 256 KiB, as facsgen generate does")


def memory(args) -> None:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    n = args.mem_n
    print(f"== memory: {n} samples, 32x32, 1 spp per variant/character; peak RSS (VmHWM) at 10, 100, 200, 500 and {n} samples; "
          f"command: {' '.join(sys.argv)}")
    for char in args.chars.split(","):
        for v in args.variants.split(","):
            if v not in ("ours", "naive"):
                continue
            out = work / f"mem_{char}_{v}"
            shutil.rmtree(out, ignore_errors=True)
            marks = sorted({10, 100, 200, 500, n})
            a = {"n": n, "res": 32, "spp": 1, "views": args.views, "device": args.device, "threads": args.threads,
                 "seed": args.seed, "char": char, "variant": v, "out": str(out), "mem_marks": marks}
            t = time.perf_counter()
            r = spawn(a, work / "workers.log")
            m = {int(k): val for k, val in r["mem_marks"].items()}
            h100, h200, hn = m[100]["VmHWM"], m[200]["VmHWM"], m[n]["VmHWM"]
            print(f"  {char:7s} {v:6s} peak RSS " + ", ".join(
                f"at {k}: {fmt_mb(m[k]['VmHWM'])}" + (f" ({m[k]['hdris']} HDRIs so far)" if "hdris" in m[k] else "")
                for k in marks)
                  + f"; {n} vs 100: {100 * (hn / h100 - 1):+.1f}%, {n} vs 200: {100 * (hn / h200 - 1):+.1f}%; "
                  f"RSS now at 100 {fmt_mb(m[100]['VmRSS'])}, at {n} {fmt_mb(m[n]['VmRSS'])}; "
                  f"{time.perf_counter() - t:.0f} s", flush=True)
            shutil.rmtree(out, ignore_errors=True)


def shards(args) -> None:
    """One process with all threads vs ``--shards`` processes with threads split."""
    work = Path(args.work)
    k = args.shards
    ncpu = os.cpu_count() or 1
    print(f"== worker processes: N={args.n}, {args.res}x{args.res}, {args.spp} spp, {ncpu} CPUs; command: "
          f"{' '.join(sys.argv)}")
    for char in args.chars.split(","):
        for _rep in range(args.repeats):
            out = work / f"shard1_{char}"
            shutil.rmtree(out, ignore_errors=True)
            base = {"n": args.n, "res": args.res, "spp": args.spp, "views": args.views, "device": args.device,
                    "seed": args.seed, "char": char, "variant": "ours"}
            t = time.perf_counter()
            spawn(dict(base, out=str(out), threads=0), work / "workers.log")
            one = time.perf_counter() - t
            out = work / f"shardN_{char}"
            shutil.rmtree(out, ignore_errors=True)
            t = time.perf_counter()
            procs = [(spawn(dict(base, out=str(out), threads=max(1, ncpu // k), shard=[s, k]), wait=False),
                      dict(base, variant="ours", char=char)) for s in range(k)]
            for p, a in procs:
                collect(p, a, work / "workers.log")
            many = time.perf_counter() - t
            print(f"  {char:7s} 1 process x {ncpu} threads: {args.n / one:.3f} samples/s (wall incl. start-up "
                  f"{one:.1f} s); {k} processes x {max(1, ncpu // k)} thread(s): {args.n / many:.3f} samples/s "
                  f"({many:.1f} s); speed-up {one / many:.2f}", flush=True)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, default=16, help="samples per run (default 16)")
    p.add_argument("--res", type=int, default=256)
    p.add_argument("--spp", type=int, default=16,
                   help="samples per pixel of the naive baseline (and of the reference runs' layout; default 16)")
    p.add_argument("--ours-spp", type=int, default=0,
                   help="samples per pixel of 'ours'/'proto' (default 0 = the pipeline's default, "
                        "RenderConfig().samples = the CLI's --samples default); 'ours:N' forces N")
    p.add_argument("--views", type=int, default=8, help="camera views per expression (pipeline default 8)")
    p.add_argument("--emotions", default="",
                   help="emotions to draw, comma separated (default: all 8 of the preset). With N=16 and all "
                        "8, each expression draw gets only 2 of its --views views (start-up case); "
                        "--emotions Joy,Surprise gives 2 expressions x 8 views (the steady state of a long run)")
    p.add_argument("--device", default="cpu", choices=("auto", "cpu", "gpu", "optix", "cuda", "hip", "metal", "oneapi"),
                   help="render device as in facsgen generate --device (default cpu; optix/cuda/...: that GPU backend)")
    p.add_argument("--threads", type=int, default=0, help="Cycles threads (0 = all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--chars", default="builtin,mblab")
    p.add_argument("--variants", default="naive,ours")
    p.add_argument("--proto-set", action="append", help="variant 'proto' with overrides, e.g. "
                   "cycles.denoising_prefilter=FAST,cycles.samples=24 (repeatable: proto0, proto1 ...)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--quality", action="store_true", help="PSNR against a converged reference")
    p.add_argument("--ref-spp", type=int, default=512)
    p.add_argument("--memory", action="store_true", help="peak RSS at 100 and --mem-n samples (32 px, 1 spp)")
    p.add_argument("--mem-n", type=int, default=1000)
    p.add_argument("--shards", type=int, default=0, help="compare 1 process with this many worker processes")
    p.add_argument("--work", default="/tmp/facsgen_throughput")
    return p


def main(argv=None) -> None:
    args = _parser().parse_args(argv)
    if args.worker:
        worker_main(args.worker)
    elif args.memory:
        memory(args)
    elif args.shards:
        shards(args)
    else:
        bench(args)


if __name__ == "__main__":
    main()
