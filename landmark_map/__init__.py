# SPDX-License-Identifier: GPL-3.0-or-later
"""468-point MediaPipe Face Mesh landmark maps (bpy-free format + the shipped maps).

A map gives, for each landmark i, a triangle of the character's *evaluated* mesh
(``tri[i]``: three vertex indices) and barycentric weights (``bary[i]``, summing to 1);
a vertex is the special case ``tri=(v, v, v)``, ``bary=(1, 0, 0)``. It is keyed by a
topology fingerprint (vertex count, face count, hash of the face-vertex indices) so a
map is only ever applied to the mesh it was made for.

JSON files in this folder are the maps shipped with the extension (the built-in head's).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

N_LANDMARKS = 468
FORMAT_VERSION = 1
MAP_DIR = Path(__file__).resolve().parent

#: The inter-ocular distance used for every accuracy figure: ``||p[33] - p[263]||``
#: (outer eye corners, subject's right / left).
IOD_PAIR = (33, 263)

#: MediaPipe Face Mesh regions (landmark indices of ``mediapipe.solutions.face_mesh_connections``;
#: "LEFT" is the subject's own left, which is image right in a frontal view).
REGIONS: dict[str, tuple[int, ...]] = {
    "face_oval": (10, 21, 54, 58, 67, 93, 103, 109, 127, 132, 136, 148, 149, 150, 152, 162, 172, 176, 234, 251,
                  284, 288, 297, 323, 332, 338, 356, 361, 365, 377, 378, 379, 389, 397, 400, 454),
    "left_eye": (249, 263, 362, 373, 374, 380, 381, 382, 384, 385, 386, 387, 388, 390, 398, 466),
    "right_eye": (7, 33, 133, 144, 145, 153, 154, 155, 157, 158, 159, 160, 161, 163, 173, 246),
    "left_eyebrow": (276, 282, 283, 285, 293, 295, 296, 300, 334, 336),
    "right_eyebrow": (46, 52, 53, 55, 63, 65, 66, 70, 105, 107),
    "lips": (0, 13, 14, 17, 37, 39, 40, 61, 78, 80, 81, 82, 84, 87, 88, 91, 95, 146, 178, 181, 185, 191, 267, 269,
             270, 291, 308, 310, 311, 312, 314, 317, 318, 321, 324, 375, 402, 405, 409, 415),
    "nose": (1, 2, 4, 5, 6, 19, 45, 48, 64, 94, 97, 98, 115, 168, 195, 197, 220, 275, 278, 294, 326, 327, 344, 440),
}

# Left/right mirror pairs of the canonical mesh (exact: mirrored positions coincide). Landmarks 248..467
# are the subject's left-side partners of these right-side ones; the 28 others lie on the midline.
_MIRROR_RIGHT = (
    3, 7, *range(20, 94), *range(95, 151), *range(153, 164), *range(165, 168), *range(169, 175),
    *range(176, 195), 196, 198, *range(201, 248),
)


def mirror_permutation() -> np.ndarray:
    """(468,) int: ``perm[i]`` is the landmark at the mirror position of landmark ``i``."""
    perm = np.arange(N_LANDMARKS)
    right = np.asarray(_MIRROR_RIGHT)
    left = np.arange(248, N_LANDMARKS)
    perm[right], perm[left] = left, right
    return perm


def inter_ocular_distance(points: np.ndarray) -> float:
    """``||p[33] - p[263]||`` of (468, D) landmark positions."""
    points = np.asarray(points, dtype=np.float64)
    return float(np.linalg.norm(points[IOD_PAIR[0]] - points[IOD_PAIR[1]]))


class LandmarkMapError(ValueError):
    """A map is malformed or does not belong to the mesh it is applied to."""


def fingerprint(n_vertices: int, loop_totals: np.ndarray, loop_vertices: np.ndarray) -> dict:
    """Topology fingerprint from polygon sizes and the flat loop->vertex index array."""
    h = hashlib.sha1()
    h.update(np.asarray(loop_totals, dtype="<i4").tobytes())
    h.update(np.asarray(loop_vertices, dtype="<i4").tobytes())
    return {"vertices": int(n_vertices), "faces": int(len(loop_totals)), "hash": h.hexdigest()}


@dataclass
class LandmarkMap:
    tri: np.ndarray  # (468, 3) int: vertex indices of the evaluated mesh
    bary: np.ndarray  # (468, 3) float: barycentric weights
    fingerprint: dict
    confidence: np.ndarray = field(default_factory=lambda: np.ones(N_LANDMARKS))
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.tri = np.asarray(self.tri, dtype=np.int64).reshape(-1, 3)
        self.bary = np.asarray(self.bary, dtype=np.float64).reshape(-1, 3)
        self.confidence = np.asarray(self.confidence, dtype=np.float64).reshape(-1)
        if self.tri.shape != (N_LANDMARKS, 3) or self.bary.shape != (N_LANDMARKS, 3):
            raise LandmarkMapError(f"a landmark map needs {N_LANDMARKS} entries, got {len(self.tri)}")
        if self.confidence.shape != (N_LANDMARKS,):
            raise LandmarkMapError("confidence must have one value per landmark")
        if not np.allclose(self.bary.sum(axis=1), 1.0, atol=1e-6):
            raise LandmarkMapError("barycentric weights must sum to 1 for every landmark")
        if self.tri.min() < 0:
            raise LandmarkMapError("negative vertex index in landmark map")

    @classmethod
    def from_vertices(cls, vertex_indices, fingerprint: dict, meta: dict | None = None) -> LandmarkMap:
        v = np.asarray(vertex_indices, dtype=np.int64)
        tri = np.stack([v, v, v], axis=1)
        bary = np.zeros((len(v), 3))
        bary[:, 0] = 1.0
        return cls(tri, bary, fingerprint, meta=dict(meta or {}))

    def check_topology(self, fp: dict, what: str = "mesh") -> None:
        if fp != self.fingerprint:
            raise LandmarkMapError(
                f"landmark map made for a different topology: map has {self.fingerprint['vertices']} vertices / "
                f"{self.fingerprint['faces']} faces (hash {self.fingerprint['hash'][:10]}), {what} has "
                f"{fp['vertices']} / {fp['faces']} (hash {fp['hash'][:10]})"
            )

    def evaluate(self, verts: np.ndarray) -> np.ndarray:
        """(N, 3) vertex positions -> (468, 3) landmark positions (vectorised)."""
        verts = np.asarray(verts)
        if self.tri.max() >= len(verts):
            raise LandmarkMapError(f"landmark map refers to vertex {int(self.tri.max())}, mesh has {len(verts)}")
        return np.einsum("lk,lkj->lj", self.bary, verts[self.tri])

    # ---------------------------------------------------------------- JSON
    def to_dict(self) -> dict:
        return {
            "format": "facsgen-landmark-map",
            "version": FORMAT_VERSION,
            "fingerprint": self.fingerprint,
            "meta": self.meta,
            "tri": self.tri.tolist(),
            "bary": np.round(self.bary, 9).tolist(),
            "confidence": np.round(self.confidence, 6).tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict, source: str = "<dict>") -> LandmarkMap:
        if not isinstance(d, dict) or d.get("format") != "facsgen-landmark-map":
            raise LandmarkMapError(f"{source}: not a facsgen landmark map")
        if d.get("version") != FORMAT_VERSION:
            raise LandmarkMapError(f"{source}: unsupported landmark map version {d.get('version')!r}")
        try:
            return cls(
                tri=d["tri"], bary=d["bary"], fingerprint=dict(d["fingerprint"]),
                confidence=d.get("confidence", np.ones(N_LANDMARKS)), meta=dict(d.get("meta", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, LandmarkMapError):
                raise LandmarkMapError(f"{source}: {exc}") from None
            raise LandmarkMapError(f"{source}: malformed landmark map ({exc})") from None

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), separators=(",", ":")), encoding="utf-8")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> LandmarkMap:
        path = Path(path)
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise LandmarkMapError(f"cannot read landmark map {path}: {exc}") from None
        return cls.from_dict(d, source=str(path))


def shipped_maps() -> list[Path]:
    return sorted(MAP_DIR.glob("*.json"))


_load_cache: dict[Path, tuple[tuple[int, int], LandmarkMap | None]] = {}


def load_cached(path: str | Path) -> LandmarkMap | None:
    """``LandmarkMap.load`` memoised on (mtime, size); None for an unreadable/malformed file."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        return None
    key = (st.st_mtime_ns, st.st_size)
    hit = _load_cache.get(path)
    if hit is not None and hit[0] == key:
        return hit[1]
    try:
        m = LandmarkMap.load(path)
    except LandmarkMapError:
        m = None
    _load_cache[path] = (key, m)
    return m


def find_shipped_map(fp: dict, extra_dirs=()) -> LandmarkMap | None:
    """The first map in this folder (or ``extra_dirs``) whose fingerprint matches."""
    for d in (MAP_DIR, *map(Path, extra_dirs)):
        for p in sorted(Path(d).glob("*.json")):
            m = load_cached(p)
            if m is not None and m.fingerprint == fp:
                return m
    return None
