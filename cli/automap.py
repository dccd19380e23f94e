# SPDX-License-Identifier: GPL-3.0-or-later
"""``facsgen automap``: map the 468 MediaPipe landmarks onto a character automatically.

    facsgen automap --blend FILE --character NAME [--out MAP.json] [--save-blend]
                    [--views N] [--resolution N] [--samples N]

The map is stored on the object (custom property, travels with the .blend) and the .blend is
saved in place when ``--save-blend`` is given, or when no ``--out`` is given (otherwise the
result would be lost); ``--out`` writes a JSON file another user can import.
Exit status: 0 done, 1 mapping failed (message on stderr), 2 bad arguments / missing MediaPipe.

Wiring (in ``cli/__init__.py``): ``automap.add_parser(sub)`` in ``build_parser`` and
``if ns.command == "automap": return automap.run(ns)`` in ``run``.
"""

from __future__ import annotations

import argparse
import sys

PROG = "facsgen automap"


def _int_in(lo: int, hi: int):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"must be between {lo} and {hi}, got {v}")
        return v

    return parse


def add_parser(subparsers) -> argparse.ArgumentParser:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    a = subparsers.add_parser(
        "automap", formatter_class=fmt, help="map the 468 face landmarks onto a character (MediaPipe)",
        description="Render the character's neutral face from a few views, detect the 468 MediaPipe Face Mesh "
                    "landmarks, back-project and fuse them, and save the landmark map (on the object and/or "
                    "as JSON). Needs mediapipe (pip install mediapipe==0.10.14).",
    )
    a.add_argument("--blend", metavar="FILE", default=None, help=".blend file to open; unset: the open file")
    a.add_argument("--character", metavar="OBJECT_NAME", required=True, help="mesh object to map")
    a.add_argument("--out", metavar="MAP.json", default=None, help="also write the map to this JSON file")
    a.add_argument("--save-blend", action="store_true",
                   help="store the map on the object and save the .blend (implied when --out is not given)")
    a.add_argument("--views", type=_int_in(1, 30), default=9, metavar="N", help="number of rendered views")
    a.add_argument("--resolution", type=_int_in(128, 2048), default=384, metavar="N", help="render size (square)")
    a.add_argument("--samples", type=_int_in(1, 256), default=16, metavar="N",  # = pipeline.automap.AutomapOptions.samples
                   help="Cycles samples per view")
    a.add_argument("--keep-pose", action="store_true",
                   help="map the face as currently posed (default: expression shape keys muted)")
    a.add_argument("--quiet", action="store_true", help="no progress lines")
    return a


def run(ns: argparse.Namespace) -> int:
    import bpy

    from ..landmark_map import LandmarkMapError
    from ..pipeline import automap as am
    from ..pipeline import landmark_maps as lmaps

    if ns.blend:
        try:
            bpy.ops.wm.open_mainfile(filepath=str(ns.blend))
        except RuntimeError as exc:
            print(f"{PROG}: error: cannot open {ns.blend}: {exc}", file=sys.stderr)
            return 2
    obj = bpy.data.objects.get(ns.character)
    if obj is None or obj.type != "MESH":
        meshes = [o.name for o in bpy.data.objects if o.type == "MESH"]
        what = "is not a mesh" if obj is not None else "not found"
        print(f"{PROG}: error: character {ns.character!r} {what} (meshes: {', '.join(meshes[:12]) or 'none'})",
              file=sys.stderr)
        return 2
    if not am.has_mediapipe():
        print(f"{PROG}: error: {am.INSTALL_HINT}", file=sys.stderr)
        return 2
    save_blend = ns.save_blend or not ns.out
    if save_blend and not bpy.data.filepath:
        print(f"{PROG}: error: nothing to save the map into: give --blend FILE or --out MAP.json", file=sys.stderr)
        return 2

    def progress(done, total, msg):
        if not ns.quiet:
            print(f"[{done}/{total}] {msg}", flush=True)

    opt = am.AutomapOptions(views=ns.views, resolution=ns.resolution, samples=ns.samples, neutral=not ns.keep_pose)
    scene = next((s for s in bpy.data.scenes if s.objects.get(obj.name) is not None), bpy.context.scene)
    try:
        lmap = am.automap(obj, opt, progress=progress, source_scene=scene)
        if ns.out:
            path = lmaps.export_map(lmap, ns.out)
            print(f"{PROG}: wrote {path}")
        if save_blend:
            lmaps.store_map(obj, lmap, check=False)
            bpy.ops.wm.save_mainfile(filepath=bpy.data.filepath)
            print(f"{PROG}: stored the map on '{obj.name}' and saved {bpy.data.filepath}")
    except LandmarkMapError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    print(f"{PROG}: {lmaps.describe_map(lmap)}; mean residual {lmap.meta.get('mean_residual_iod', float('nan')):.3f} "
          f"IOD; {lmap.meta.get('seconds', 0):.0f} s")
    return 0
