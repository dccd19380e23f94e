# SPDX-License-Identifier: GPL-3.0-or-later
"""Write ``landmark_map/builtin_head.json``: the exact landmark map of the built-in head.

The fingerprint is computed by ``pipeline.landmarks.mesh_fingerprint`` on the evaluated
mesh of a freshly built head (``tests/test_head_bpy.py`` checks the shipped file matches).

    /work/venv/bin/python scripts/build_head_map.py
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> int:
    import head_mediapipe as hb

    hb._import_pkg()
    import bpy

    from facs_dataset_generator.landmark_map import MAP_DIR
    from facs_dataset_generator.pipeline import head as head_mod

    bpy.ops.wm.read_factory_settings(use_empty=True)
    obj = head_mod.add_builtin_head(bpy.context.scene)
    lmap = head_mod.builtin_landmark_map(obj)
    out = lmap.save(MAP_DIR / "builtin_head.json")
    print(f"wrote {out}: {lmap.fingerprint}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
