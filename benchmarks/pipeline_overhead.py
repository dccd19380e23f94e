# SPDX-License-Identifier: GPL-3.0-or-later
"""Pipeline overhead: samples/s and the share of each sample's time spent outside the
render call, on the built-in head (Cycles CPU unless --device says otherwise).

    /work/venv/bin/python benchmarks/pipeline_overhead.py                 # 256x256 and 512x512, 16 spp
    /work/venv/bin/python benchmarks/pipeline_overhead.py --sizes 256 --count 24 --views 4

Per configuration: one run of ``--count`` samples through ``pipeline.runner.Job`` (the
same code as ``facsgen generate``). "outside" = step time - time inside
``bpy.ops.render.render``; it includes posing the character (once per expression),
landmark evaluation, BVH occlusion, labels, lighting/camera updates and committing the
PNG + CSV. The first sample (kernel and scene set-up) is reported separately and not
counted in the steady-state figures. Target: outside share < 5%.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from _common import import_pkg


def run_one(size: int, count: int, views: int, spp: int, device: str, denoise: bool, out: Path) -> dict:
    import bpy

    from facs_dataset_generator.core import config as cfg
    from facs_dataset_generator.pipeline import runner

    bpy.ops.wm.read_factory_settings(use_empty=True)
    conf = cfg.GenerationConfig(out=str(out), count=count, seed=0, emotions=("Joy", "Anger", "Surprise", "Contempt"))
    conf.camera.views = views
    conf.camera.roll_jitter = 5.0
    conf.render.resolution = (size, size)
    conf.render.samples = spp
    conf.render.device = device
    conf.render.denoise = denoise
    t0 = time.perf_counter()
    job = runner.Job(conf)
    job.prepare()
    t_prep = time.perf_counter() - t0
    # first sample: kernel loading, BVH build, HDRI upload
    t1 = time.perf_counter()
    job.step()
    t_first = time.perf_counter() - t1
    base = dict(job.timings)
    step0, render0 = job.step_seconds, job.render_seconds
    t2 = time.perf_counter()
    while job.step():
        pass
    t_loop = time.perf_counter() - t2
    t3 = time.perf_counter()
    job.finish()
    t_finish = time.perf_counter() - t3
    n = job.written - 1
    step = job.step_seconds - step0
    render = job.render_seconds - render0
    phases = {k: (job.timings[k] - base[k]) / max(n, 1) for k in job.timings}
    return {
        "size": size, "n": n, "device": job.device, "prepare": t_prep, "first": t_first,
        "samples_per_s": n / t_loop, "step_ms": 1000 * step / n, "render_ms": 1000 * render / n,
        "outside_share": (t_loop - render) / t_loop, "outside_ms": 1000 * (t_loop - render) / n,
        "phases_ms": {k: 1000 * v for k, v in phases.items()}, "finish": t_finish,
        "finish_per_sample_ms": 1000 * t_finish / job.written,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="256,512", help="square image sizes, comma separated")
    ap.add_argument("--count", type=int, default=17, help="samples per size (the first one is warm-up)")
    ap.add_argument("--views", type=int, default=4, help="camera views per expression")
    ap.add_argument("--spp", type=int, default=16, help="Cycles samples per pixel")
    ap.add_argument("--device", default="cpu", choices=("cpu", "gpu", "auto"))
    ap.add_argument("--no-denoise", action="store_true", help="disable the denoiser (default: Blender's default)")
    ap.add_argument("--keep", metavar="DIR", help="keep the datasets under DIR")
    args = ap.parse_args(argv)

    import_pkg()
    import bpy

    from facs_dataset_generator import registration

    registration.register()
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="facsgen_bench_"))
    results = []
    try:
        for size in (int(s) for s in args.sizes.split(",")):
            out = root / f"bench_{size}"
            shutil.rmtree(out, ignore_errors=True)
            results.append(run_one(size, args.count, args.views, args.spp, args.device, not args.no_denoise, out))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(f"\nBlender {bpy.app.version_string}, built-in head, {args.spp} spp, denoise {not args.no_denoise}, "
          f"{args.views} views per expression, {args.count - 1} steady-state samples per size")
    print(f"{'size':>6} {'device':>6} {'samples/s':>10} {'step ms':>8} {'render ms':>10} {'outside ms':>10} "
          f"{'outside %':>9}  phases ms (pose/label/render/write)   first s  index ms/sample")
    for r in results:
        ph = r["phases_ms"]
        print(f"{r['size']:>6} {r['device']:>6} {r['samples_per_s']:>10.2f} {r['step_ms']:>8.1f} {r['render_ms']:>10.1f} "
              f"{r['outside_ms']:>10.1f} {100 * r['outside_share']:>8.2f}%  "
              f"{ph['pose']:.1f}/{ph['label']:.1f}/{ph['render']:.1f}/{ph['write']:.1f}"
              f"{'':>14}{r['first']:.2f}   {r['finish_per_sample_ms']:.1f}")
    worst = max(r["outside_share"] for r in results)
    print(f"\noutside-render share: max {100 * worst:.2f}% (target < 5%): {'OK' if worst < 0.05 else 'ABOVE TARGET'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
