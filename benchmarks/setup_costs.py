# SPDX-License-Identifier: GPL-3.0-or-later
"""Set-up and posing costs that are not render time: building the built-in head (numpy
only, then as a Blender object, cold and warm) and one ``set_aus`` call on the built-in
head and on the MB-Lab rig (``../shared/data/mblab/``, skipped when absent).

    /work/venv/bin/python benchmarks/setup_costs.py [--repeats 200]

Each figure is the median of ``--repeats`` calls (build figures: of 5 cold builds).
Targets: head build < 0.8 s cold (numpy) / < 1 s as an object, < 0.5 s warm; ``set_aus``
< 5 ms per call. They were timing assertions in the tests once; they live here so that a
busy CI machine cannot fail a correct build.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from _common import import_pkg

ROOT = Path(__file__).resolve().parent.parent
MBLAB_BLEND = ROOT.parent / "shared" / "data" / "mblab" / "mblab_female_facs.blend"


def _median_time(fn, n: int) -> float:
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=200, help="set_aus calls per character")
    args = ap.parse_args(argv)
    import_pkg()
    import bpy

    from facs_dataset_generator.core import au_fields
    from facs_dataset_generator.core import head_model as hm
    from facs_dataset_generator.pipeline import characters as ch
    from facs_dataset_generator.pipeline import head

    def cold_numpy():
        hm.build_head.cache_clear()
        hm.load_canonical.cache_clear()
        au_fields.load_table.cache_clear()
        hm.build_head()

    def cold_object():
        bpy.ops.wm.read_factory_settings(use_empty=True)
        hm.build_head.cache_clear()
        au_fields.load_table.cache_clear()
        t = time.perf_counter()
        head.add_builtin_head(bpy.context.scene)
        return time.perf_counter() - t

    print("== setup costs (median); command: benchmarks/setup_costs.py", " ".join(argv or []))
    print(f"  built-in head, numpy build (cold caches):  {_median_time(cold_numpy, 5) * 1e3:8.1f} ms  (target < 800)")
    cold = statistics.median(cold_object() for _ in range(5))
    print(f"  built-in head as an object, cold:          {cold * 1e3:8.1f} ms  (target < 1000)")
    bpy.ops.wm.read_factory_settings(use_empty=True)
    head.add_builtin_head(bpy.context.scene)
    warm = _median_time(lambda: head.add_builtin_head(bpy.context.scene), 5)
    print(f"  built-in head as an object, warm:          {warm * 1e3:8.1f} ms  (target < 500)")

    def per_call(obj, aus) -> float:
        ad = ch.detect_adapter(obj)
        i = iter(range(10**9))
        return _median_time(lambda: ad.set_aus({a: (next(i) % 10) / 10 for a in aus}), args.repeats)

    bpy.ops.wm.read_factory_settings(use_empty=True)
    obj = head.add_builtin_head(bpy.context.scene)
    print(f"  set_aus, built-in head (3 AUs):            {per_call(obj, ('AU06', 'AU12', 'AU45')) * 1e3:8.3f} ms  (target < 5)")
    if MBLAB_BLEND.is_file():
        bpy.ops.wm.open_mainfile(filepath=str(MBLAB_BLEND))
        obj = bpy.data.objects["MBlab_female"]
        print(f"  set_aus, MB-Lab rig (3 AUs):               {per_call(obj, ('AU06', 'AU12', 'AU45')) * 1e3:8.3f} ms  (target < 5)")
    else:
        print(f"  set_aus, MB-Lab rig: skipped ({MBLAB_BLEND} not found)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
