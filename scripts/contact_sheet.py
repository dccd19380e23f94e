# SPDX-License-Identifier: GPL-3.0-or-later
"""Render a contact sheet of the built-in head with Cycles: neutral, every AU shape key
at 1.0, the 8 emotions (``au_presets/emfacs.json``, each AU at the top of its range;
a small built-in table if the preset is missing) and 6 random identities.

    /work/venv/bin/python scripts/contact_sheet.py [--tile 160] [--samples 8] [--out docs/contact_sheet.png]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import head_mediapipe as hb  # noqa: E402

FALLBACK_EMOTIONS = {
    "Joy": {"AU06": 0.9, "AU12": 1.0},
    "Sadness": {"AU01": 1.0, "AU04": 0.7, "AU15": 1.0},
    "Anger": {"AU04": 1.0, "AU05": 0.7, "AU07": 0.9, "AU23": 0.9},
    "Fear": {"AU01": 0.9, "AU02": 0.8, "AU04": 0.6, "AU05": 1.0, "AU07": 0.6, "AU20": 0.9, "AU26": 0.8},
    "Disgust": {"AU09": 1.0, "AU15": 0.7, "AU16": 0.7},
    "Surprise": {"AU01": 1.0, "AU02": 1.0, "AU05": 1.0, "AU26": 1.0},
    "Neutral": {},
    "Contempt": {"AU12_R": 0.7, "AU14_R": 1.0},
}


def emotions() -> dict[str, dict[str, float]]:
    p = ROOT / "au_presets" / "emfacs.json"
    try:
        data = json.loads(p.read_text())["emotions"]
        return {e: {au: float(rng[1]) for au, rng in aus.items()} for e, aus in data.items()}
    except (OSError, ValueError, KeyError):
        return FALLBACK_EMOTIONS


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tile", type=int, default=160)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--out", default=str(ROOT / "docs" / "contact_sheet.png"))
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    hb._import_pkg()
    from PIL import Image, ImageDraw

    from facs_dataset_generator.core import au_fields
    from facs_dataset_generator.pipeline import head as head_mod

    t0 = time.time()
    scene, cam = hb.setup_scene(args.tile, args.samples)
    obj = head_mod.add_builtin_head(scene)
    kb = obj.data.shape_keys.key_blocks
    neutral_id = {k: 0.0 for k in head_mod.identity_keys()} | {"skin_tone": head_mod.DEFAULT_SKIN_TONE}

    cells: list[tuple[str, dict, dict, float]] = [("Neutral", {}, neutral_id, 0.0)]
    aliases = set(au_fields.load_table().get("aliases", {}))
    for au in au_fields.au_names():
        if au not in aliases:
            cells.append((au, {au: 1.0}, neutral_id, 0.0))
    for emo, aus in emotions().items():
        cells.append((emo, aus, neutral_id, 0.0))
    rng = np.random.default_rng(args.seed)
    for i in range(6):
        cells.append((f"identity {i + 1}", {}, head_mod.random_identity(rng), 25.0 if i % 2 else -25.0))

    tiles = []
    for label, aus, ident, yaw in cells:
        head_mod.apply_identity(obj, ident)
        for k in kb[1:]:
            if not k.name.startswith("ID_"):
                k.value = aus.get(k.name, 0.0)
        target, _ = hb.head_target(obj)
        hb.place_camera(cam, target + np.array([0, 0, -0.02]), yaw, 4.0, 0.36)
        im = Image.fromarray(hb.render_rgb(scene))
        d = ImageDraw.Draw(im)
        d.rectangle((0, 0, args.tile, 13), fill=(0, 0, 0))
        d.text((3, 1), label, fill=(255, 255, 255))
        tiles.append(im)
        print(f"{label}: done", flush=True)
    cols = 8
    rows = (len(tiles) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * args.tile, rows * args.tile), (40, 40, 40))
    for i, im in enumerate(tiles):
        sheet.paste(im, ((i % cols) * args.tile, (i // cols) * args.tile))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    print(f"wrote {out} ({len(tiles)} tiles, {time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
