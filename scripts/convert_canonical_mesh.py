# SPDX-License-Identifier: GPL-3.0-or-later
"""Convert MediaPipe's canonical face mesh (landmark order) into ``data/canonical_face.npz``.

Source: ``../shared/data/mediapipe_canonical/canonical_landmarks.obj`` (Apache-2.0,
rebuilt from MediaPipe's ``geometry_pipeline_metadata_landmarks.pbtxt``; vertex i is
Face Mesh landmark i). The npz keeps the data exactly as published (units cm, MediaPipe
axes: x to the subject's left, y up, z toward the viewer); ``core/head_model.py`` does
the conversion to Blender metres / axes.

    python scripts/convert_canonical_mesh.py [path/to/canonical_landmarks.obj]

Arrays: ``verts`` (468, 3) float32 cm, ``faces`` (898, 3) int16 0-based vertex indices,
``uvs`` (468, 2) float32 (one UV per vertex: the obj's vt i belongs to v i).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SRC = ROOT.parent / "shared" / "data" / "mediapipe_canonical" / "canonical_landmarks.obj"
DST = ROOT / "data" / "canonical_face.npz"


def read_obj(path: Path):
    verts, uvs, faces = [], [], []
    for line in path.read_text().splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "v":
            verts.append([float(x) for x in parts[1:4]])
        elif parts[0] == "vt":
            uvs.append([float(x) for x in parts[1:3]])
        elif parts[0] == "f":
            idx = [p.split("/") for p in parts[1:]]
            if any(len(i) > 1 and i[1] and i[1] != i[0] for i in idx):
                raise ValueError(f"{path}: face with vt index different from v index: {line}")
            faces.append([int(i[0]) - 1 for i in idx])
    verts = np.asarray(verts, dtype=np.float32)
    faces = np.asarray(faces, dtype=np.int16)
    uvs = np.asarray(uvs, dtype=np.float32)
    if verts.shape != (468, 3) or faces.shape[1] != 3 or uvs.shape != (468, 2):
        raise ValueError(f"{path}: expected 468 vertices/uvs and triangles, got {verts.shape} {faces.shape} {uvs.shape}")
    return verts, faces, uvs


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    src = Path(argv[0]) if argv else DEFAULT_SRC
    verts, faces, uvs = read_obj(src)
    DST.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        DST, verts=verts, faces=faces, uvs=uvs,
        source=np.array("MediaPipe canonical face mesh in landmark order (Apache-2.0), from " + src.name),
    )
    print(f"wrote {DST} ({DST.stat().st_size} bytes): {len(verts)} vertices, {len(faces)} triangles")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
