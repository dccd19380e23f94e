# SPDX-License-Identifier: GPL-3.0-or-later
"""Accuracy of automatic landmark mapping (``pipeline.automap``).

Prints, as fractions of the inter-ocular distance ||p33 - p263||:

* the built-in head: automatic map vs the exact map (mean / median / p95 / max, per region);
* a re-topologised copy (every face split in 4, vertex order shuffled; truth known by construction);
* MB-Lab test characters (../shared/data/mblab): share of each region's landmarks inside its expected
  zone (relative to the mesh's own eyeballs), and the map's mean confidence.

Usage: ``python benchmarks/automap_accuracy.py [--views N] [--resolution N] [--skip-mblab] [--skip-retopo]
[--pitch-range MIN,MAX] [--no-refine] [--no-ensemble] [--track-passes N] [--fusion triangulate|surface]``
(the options switch back to earlier methods, for before/after figures: ``--pitch-range=-10,15 --no-ensemble``
= before the lower views and the two-model average; add ``--no-refine --track-passes 0 --fusion surface``
for the first method).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--views", type=int, default=9)
    ap.add_argument("--resolution", type=int, default=384)
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--skip-mblab", action="store_true")
    ap.add_argument("--skip-retopo", action="store_true")
    ap.add_argument("--no-refine", action="store_true", help="MediaPipe without refine_landmarks")
    ap.add_argument("--no-ensemble", action="store_true",
                    help="one landmark model only (no average of the attention and plain models)")
    ap.add_argument("--pitch-range", default="-25,15", metavar="MIN,MAX",
                    help="camera pitch patch in degrees (before the lower views: -10,15)")
    ap.add_argument("--track-passes", type=int, default=2, help="ROI re-crop passes per image")
    ap.add_argument("--fusion", choices=("triangulate", "surface"), default="triangulate")
    ns = ap.parse_args(argv)

    import bpy
    import conftest  # noqa: F401  (makes the package importable, like the tests)
    from test_automap import eye_centres, landmark_errors, region_membership, retopologise

    from facs_dataset_generator import registration
    from facs_dataset_generator.landmark_map import N_LANDMARKS, REGIONS
    from facs_dataset_generator.pipeline import automap as am
    from facs_dataset_generator.pipeline import head
    from facs_dataset_generator.pipeline.landmarks import evaluated_vertices, world_landmarks

    registration.register()
    opt = dict(views=ns.views, resolution=ns.resolution, samples=ns.samples, refine_landmarks=not ns.no_refine,
               model_ensemble=not ns.no_ensemble,
               pitch_range=tuple(float(x) for x in ns.pitch_range.split(",")),
               track_passes=ns.track_passes, fusion=ns.fusion)
    print(f"automap benchmark: {opt} (Blender {bpy.app.version_string})")

    def report(name, err, lmap, secs):
        print(f"\n{name}: mean {err.mean():.4f}  median {np.median(err):.4f}  p95 {np.percentile(err, 95):.4f}  "
              f"max {err.max():.4f} (landmark {int(err.argmax())})  [x IOD]  {secs:.1f} s")
        print("   per region (mean / max): " + ", ".join(
            f"{k} {err[list(v)].mean():.3f}/{err[list(v)].max():.3f}" for k, v in REGIONS.items()))
        c = lmap.confidence
        print(f"   confidence: mean {c.mean():.2f}, corr(confidence, error) {np.corrcoef(c, err)[0, 1]:+.2f}, "
              f"{int((c < 0.5).sum())} below 0.5")

    # built-in head
    bpy.ops.wm.read_factory_settings(use_empty=True)
    ob = head.add_builtin_head(bpy.context.scene)
    truth = evaluated_vertices(ob, bpy.context.evaluated_depsgraph_get())[:N_LANDMARKS]
    t = time.perf_counter()
    lmap = am.automap(ob, am.AutomapOptions(**opt))
    err = landmark_errors(world_landmarks(ob, lmap, bpy.context.evaluated_depsgraph_get()), truth)
    report("built-in head", err, lmap, time.perf_counter() - t)

    if not ns.skip_retopo:
        bpy.ops.wm.read_factory_settings(use_empty=True)
        src = head.add_builtin_head(bpy.context.scene)
        ob, truth = retopologise(src)
        bpy.data.objects.remove(src)
        t = time.perf_counter()
        lmap = am.automap(ob, am.AutomapOptions(**opt))
        err = landmark_errors(world_landmarks(ob, lmap, bpy.context.evaluated_depsgraph_get()), truth)
        report(f"re-topologised head ({len(ob.data.vertices)} vertices, shuffled)", err, lmap,
               time.perf_counter() - t)

    if not ns.skip_mblab:
        mblab = ROOT.parent / "shared" / "data" / "mblab"
        for which in ("female", "male"):
            p = mblab / f"mblab_{which}_facs.blend"
            if not p.is_file():
                print(f"\nMB-Lab {which}: not available ({p})")
                continue
            bpy.ops.wm.open_mainfile(filepath=str(p))
            ob = bpy.data.objects[f"MBlab_{which}"]
            t = time.perf_counter()
            lmap = am.automap(ob, am.AutomapOptions(**opt))
            secs = time.perf_counter() - t
            for kb in ob.data.shape_keys.key_blocks[1:]:
                kb.mute = True
            pts = world_landmarks(ob, lmap, bpy.context.evaluated_depsgraph_get())
            share = region_membership(pts, *eye_centres(ob))
            print(f"\nMB-Lab {which}: region membership " + ", ".join(f"{k} {v:.2f}" for k, v in share.items())
                  + f"; mean confidence {lmap.confidence.mean():.2f}; {secs:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
