# SPDX-License-Identifier: GPL-3.0-or-later
"""Comparison math for checking a dataset against an independent face-landmark detector
(bpy-free, NumPy only; the detector itself lives in ``benchmarks/dataset_vs_mediapipe.py``).

Everything here works on the dataset's own columns (``lm{i:03d}_x``, ``lm{i:03d}_y``,
``lm{i:03d}_depth``, ``lm{i:03d}_visible``, ``fx`` ... ``cy``, ``width``, ``height``)
and on detections given as ``(468, 2)`` pixel arrays (x right, y down, origin at the
top-left corner: the labels' convention) or ``None`` when no face was found.

* **Landmark error**: ``||det_i - label_i|| / IOD`` with IOD = ``||p33 - p263||`` of the
  *labels*, over the landmarks flagged visible.
* **Flipped labels** (``flip_labels``): ``y -> H - y`` (what a y-up bug would write) and
  ``x -> W - x``; the comparison must find them much worse, which shows it would catch
  such a bug.
* **Similarity fit** (``similarity_fit``): the 2D scale / rotation / translation that maps
  the labels onto the detections best; a scale far from 1 or a shift of several pixels
  means a systematic error (resolution percentage, principal point, sensor fit).
* **Visibility audit** (``visibility_audit``): the flag is checked against the labels'
  own 3D geometry, independently of the ray casts that produced it: camera-space points
  from (x, y, depth, K), vertex normals on MediaPipe's canonical triangulation, and each
  landmark's mirror partner (the canonical mesh is left/right symmetric). A hidden
  landmark inside the image must be on the *far side* (deeper than its mirror partner),
  *grazing or back-facing* (normal nearly perpendicular to, or away from, the view ray),
  or on the *lips* (inside the outer lip contour, where closed lips cover the inner
  contour); a landmark on the near side that faces the camera must be visible, and one on
  the far side that faces away must be hidden.
* **Expression specificity** (``expression_specificity``): among samples seen from the
  same camera position (the views of different expression draws), a sample's own labels
  must fit its detections better, on the expressive regions (lips, brows, lids, chin),
  than the labels of the other expressions; labels taken from the rest mesh or from the
  wrong pose would not.
* **AU agreement** (``au_agreement``): per AU with a geometric proxy
  (:mod:`.au_proxies`), Pearson and Spearman correlation across samples between the label
  intensity and ``sign * proxy`` measured on the detections (positive = the expression the
  label claims is visible in the image).
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np

from . import au_proxies

N_LANDMARKS = 468
LM_RIGHT_EYE_OUTER, LM_LEFT_EYE_OUTER, LM_NOSE_TIP = 33, 263, 1
CANONICAL_NPZ = Path(__file__).resolve().parent.parent / "data" / "canonical_face.npz"

#: |yaw| bin edges in degrees (last bin open-ended).
YAW_BIN_EDGES = (0.0, 15.0, 30.0, 45.0, 60.0)

#: MediaPipe's outer lip contour (FACEMESH_LIPS), right corner 61 -> upper -> left corner 291 -> lower.
LIP_OUTER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146)

#: Visibility audit thresholds: cosine between the vertex normal and the direction to the
#: camera below which a landmark counts as grazing / back-facing; depth difference to the
#: mirror partner (metres) beyond which it counts as far / near side.
GRAZING_COS = 0.35
FAR_SIDE_M = 1e-3
FACING_COS = 0.5
NEAR_SIDE_M = -2e-3
BACK_COS = -0.25
CLEAR_FAR_M = 5e-3


# --------------------------------------------------------------------------- columns


def lm_columns(kind: str, n: int = N_LANDMARKS) -> list[str]:
    return [f"lm{i:03d}_{kind}" for i in range(n)]


def label_arrays(df) -> dict[str, np.ndarray]:
    """The labels of a pandas DataFrame (one row per sample) as arrays:
    ``xy`` (N, 468, 2), ``depth`` (N, 468), ``visible`` (N, 468) bool, ``K`` (N, 3, 3),
    ``width``, ``height``, ``yaw`` (N,)."""
    n = len(df)
    xy = np.stack([df[lm_columns("x")].to_numpy(np.float64), df[lm_columns("y")].to_numpy(np.float64)], axis=2)
    k = np.zeros((n, 3, 3))
    k[:, 0, 0], k[:, 1, 1] = df["fx"].to_numpy(float), df["fy"].to_numpy(float)
    k[:, 0, 2], k[:, 1, 2], k[:, 2, 2] = df["cx"].to_numpy(float), df["cy"].to_numpy(float), 1.0
    return {
        "xy": xy,
        "depth": df[lm_columns("depth")].to_numpy(np.float64),
        "visible": df[lm_columns("visible")].to_numpy(np.int64) == 1,
        "K": k,
        "width": df["width"].to_numpy(np.int64),
        "height": df["height"].to_numpy(np.int64),
        "yaw": df["yaw"].to_numpy(np.float64),
    }


# --------------------------------------------------------------------------- errors


def iod(points) -> float:
    """Inter-ocular distance ||p33 - p263|| of (468, 2|3) points."""
    p = np.asarray(points, dtype=np.float64)
    return float(np.linalg.norm(p[LM_RIGHT_EYE_OUTER] - p[LM_LEFT_EYE_OUTER]))


def flip_labels(xy, width: float, height: float, axis: str) -> np.ndarray:
    """Labels as a y-up (``axis="y"``: y -> H - y) or mirrored (``"x"``: x -> W - x) bug would write them."""
    out = np.array(xy, dtype=np.float64, copy=True)
    if axis == "y":
        out[..., 1] = height - out[..., 1]
    elif axis == "x":
        out[..., 0] = width - out[..., 0]
    else:
        raise ValueError(f"axis must be 'x' or 'y', got {axis!r}")
    return out


def landmark_errors(labels_xy, det_xy, scale: float | None = None) -> np.ndarray:
    """(468,) ||det - label|| / scale; scale = IOD of the labels by default."""
    lab = np.asarray(labels_xy, dtype=np.float64)
    det = np.asarray(det_xy, dtype=np.float64)
    if lab.shape != det.shape:
        raise ValueError(f"shape mismatch: labels {lab.shape}, detections {det.shape}")
    s = iod(lab) if scale is None else float(scale)
    if not s > 0:
        raise ValueError("inter-ocular distance of the labels is zero")
    return np.linalg.norm(det - lab, axis=-1) / s


def error_stats(values) -> dict[str, float]:
    """mean / median / p95 / n of a 1-D sample (NaN when empty)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"mean": math.nan, "median": math.nan, "p95": math.nan, "n": 0}
    return {"mean": float(v.mean()), "median": float(np.median(v)), "p95": float(np.percentile(v, 95)),
            "n": int(v.size)}


def yaw_bin(yaw: float, edges=YAW_BIN_EDGES) -> str:
    """Label of the |yaw| bin, e.g. ``"15-30"`` or ``"60+"``."""
    a = abs(float(yaw))
    for lo, hi in zip(edges[:-1], edges[1:]):
        if lo <= a < hi:
            return f"{lo:g}-{hi:g}"
    return f"{edges[-1]:g}+"


def similarity_fit(src, dst) -> dict[str, float]:
    """Least-squares 2D similarity dst ~ s R src + t (Umeyama). Returns scale, rotation
    (degrees), tx, ty (pixels, applied after scaling about the origin), the mean shift
    dst - src (pixels) and the RMS residual."""
    a = np.asarray(src, dtype=np.float64).reshape(-1, 2)
    b = np.asarray(dst, dtype=np.float64).reshape(-1, 2)
    if len(a) < 2:
        raise ValueError("similarity_fit needs at least 2 points")
    ma, mb = a.mean(0), b.mean(0)
    ac, bc = a - ma, b - mb
    var = (ac**2).sum() / len(a)
    cov = bc.T @ ac / len(a)
    u, d, vt = np.linalg.svd(cov)
    s_fix = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rot = u @ s_fix @ vt
    scale = float(np.trace(np.diag(d) @ s_fix) / var) if var > 0 else math.nan
    t = mb - scale * rot @ ma
    res = b - (scale * a @ rot.T + t)
    shift = mb - ma
    return {"scale": scale, "rotation_deg": float(math.degrees(math.atan2(rot[1, 0], rot[0, 0]))),
            "tx": float(t[0]), "ty": float(t[1]), "shift_x": float(shift[0]), "shift_y": float(shift[1]),
            "rms": float(np.sqrt((res**2).sum(1).mean()))}


def nose_offset(points) -> float:
    """Horizontal offset of the nose tip from the outer eye corners' midpoint, in IOD, +
    = image right. With the dataset's yaw sign (yaw > 0: the face turns to the image's
    left) it falls as yaw grows."""
    p = np.asarray(points, dtype=np.float64)
    mid = 0.5 * (p[LM_RIGHT_EYE_OUTER] + p[LM_LEFT_EYE_OUTER])
    return float((p[LM_NOSE_TIP, 0] - mid[0]) / iod(p))


def eye_line_angle(points) -> float:
    """Angle (degrees) of the line from p33 to p263 in the image, y down: + = clockwise.
    Close to the dataset's roll for near-frontal views (roll > 0: the head tilts clockwise)."""
    p = np.asarray(points, dtype=np.float64)
    d = p[LM_LEFT_EYE_OUTER] - p[LM_RIGHT_EYE_OUTER]
    return float(math.degrees(math.atan2(d[1], d[0])))


def nose_drop(points) -> float:
    """Nose tip below the outer eye corners' midpoint, in IOD, measured perpendicular to
    the eye line (image y down). With the dataset's pitch sign (pitch > 0: the face looks
    up) it falls as pitch grows."""
    p = np.asarray(points, dtype=np.float64)
    r, lft = p[LM_RIGHT_EYE_OUTER], p[LM_LEFT_EYE_OUTER]
    u = (lft - r) / np.linalg.norm(lft - r)
    down = np.array([-u[1], u[0]])
    return float((p[LM_NOSE_TIP] - 0.5 * (r + lft)) @ down / iod(p))


# --------------------------------------------------------------------------- statistics


def pearson(x, y) -> float:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.size < 3 or x.std() == 0 or y.std() == 0:
        return math.nan
    return float(np.corrcoef(x, y)[0, 1])


def _ranks(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    order = np.argsort(v, kind="mergesort")
    r = np.empty(len(v))
    r[order] = np.arange(len(v), dtype=np.float64)
    for val in np.unique(v):  # average ties
        m = v == val
        if m.sum() > 1:
            r[m] = r[m].mean()
    return r


def spearman(x, y) -> float:
    return pearson(_ranks(x), _ranks(y))


def au_agreement(au_labels: dict[str, np.ndarray], points: list) -> dict[str, dict]:
    """Per AU with a proxy: ``{"n": samples with a detection, "r": Pearson, "rho": Spearman,
    "range": (min, max) label}`` between the label intensity and ``sign * proxy`` measured
    on ``points`` (one (468, 2) array or None per sample). AUs without a proxy are skipped;
    r is NaN when the label (or the proxy) does not vary."""
    found = np.array([p is not None for p in points])
    out: dict[str, dict] = {}
    for au, lab in au_labels.items():
        if au not in au_proxies.PROXIES:
            continue
        lab = np.asarray(lab, dtype=np.float64)
        sign = au_proxies.PROXIES[au].sign
        idx = np.where(found)[0]
        meas = np.array([sign * au_proxies.proxy(au, points[i]) for i in idx])
        y = lab[idx]
        out[au] = {"n": int(len(idx)), "r": pearson(y, meas), "rho": spearman(y, meas),
                   "range": (float(lab.min()), float(lab.max())) if lab.size else (math.nan, math.nan)}
    return out


# --------------------------------------------------------------------------- expression specificity

#: Brows, lid centres and chin: with the lips, the landmarks that AUs move most.
EXPRESSIVE_EXTRA = (70, 63, 105, 66, 107, 46, 53, 52, 65, 55, 300, 293, 334, 296, 336, 276, 283, 282, 295, 285,
                    159, 145, 386, 374, 152)


def expressive_landmarks() -> np.ndarray:
    """(468,) bool: lips (``lip_landmarks``) + brows, lid centres and chin."""
    m = np.zeros(N_LANDMARKS, dtype=bool)
    m[list(lip_landmarks())] = True
    m[list(EXPRESSIVE_EXTRA)] = True
    return m


def _apply_similarity(xy, fit) -> np.ndarray:
    a = math.radians(fit["rotation_deg"])
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return fit["scale"] * np.asarray(xy, dtype=np.float64) @ rot.T + np.array([fit["tx"], fit["ty"]])


def expression_specificity(xy, visible, dets, camera_keys) -> list[tuple[int, float, float]]:
    """For each sample with a detection and at least one other sample of the same
    ``camera_keys`` value (camera position): (index, own error, smallest error of another
    sample's labels), mean error / IOD over its visible expressive landmarks. The other
    labels are first aligned to this sample's labels by the 2D similarity that fits their
    non-expressive landmarks (removing a different camera roll), so that only the pose of
    the face differs."""
    region = expressive_landmarks()
    out = []
    keys = list(camera_keys)
    for i, d in enumerate(dets):
        if d is None:
            continue
        others = [j for j in range(len(keys)) if j != i and keys[j] == keys[i]]
        if not others:
            continue
        m = np.asarray(visible[i], dtype=bool) & region
        s = iod(xy[i])
        det = np.asarray(d, dtype=np.float64)[:, :2]
        own = float(landmark_errors(xy[i], det, s)[m].mean())
        errs = []
        for j in others:
            rigid = np.asarray(visible[i], dtype=bool) & np.asarray(visible[j], dtype=bool) & ~region
            other_xy = _apply_similarity(xy[j], similarity_fit(xy[j][rigid], xy[i][rigid]))
            errs.append(float(landmark_errors(other_xy, det, s)[m].mean()))
        out.append((i, own, min(errs)))
    return out


# --------------------------------------------------------------------------- visibility


@functools.lru_cache(maxsize=1)
def canonical_mesh() -> tuple[np.ndarray, np.ndarray]:
    """(468, 3) canonical landmarks (cm, x to the subject's left, y up, z to the viewer) and
    (898, 3) triangles of MediaPipe's canonical face mesh (``data/canonical_face.npz``)."""
    d = np.load(CANONICAL_NPZ)
    return d["verts"].astype(np.float64), d["faces"].astype(np.int64)


@functools.lru_cache(maxsize=1)
def mirror_partners() -> np.ndarray:
    """(468,) index of each landmark's left/right mirror partner (itself on the midline)."""
    v, _ = canonical_mesh()
    m = v * np.array([-1.0, 1.0, 1.0])
    return np.argmin(((m[:, None, :] - v[None, :, :]) ** 2).sum(-1), axis=1)


@functools.lru_cache(maxsize=1)
def lip_landmarks() -> frozenset[int]:
    """Landmarks inside (or on) MediaPipe's outer lip contour in the canonical front view."""
    v, _ = canonical_mesh()
    poly = v[list(LIP_OUTER), :2]
    pts = v[:, :2]
    inside = np.zeros(len(pts), dtype=bool)
    j = len(poly) - 1
    for i in range(len(poly)):  # even-odd rule, vectorised over the points
        xi, yi = poly[i]
        xj, yj = poly[j]
        cross = (yi > pts[:, 1]) != (yj > pts[:, 1])
        with np.errstate(divide="ignore", invalid="ignore"):
            xint = (xj - xi) * (pts[:, 1] - yi) / (yj - yi) + xi
        inside ^= cross & (pts[:, 0] < xint)
        j = i
    return frozenset(np.where(inside)[0].tolist()) | frozenset(LIP_OUTER)


def camera_points(xy, depth, k) -> np.ndarray:
    """(468, 3) OpenCV camera-space points from pixel labels, depth and K."""
    xy, depth, k = np.asarray(xy, float), np.asarray(depth, float), np.asarray(k, float)
    x = (xy[:, 0] - k[0, 2]) / k[0, 0] * depth
    y = (xy[:, 1] - k[1, 2]) / k[1, 1] * depth
    return np.stack([x, y, depth], axis=1)


def vertex_normals(points, faces) -> np.ndarray:
    p = np.asarray(points, dtype=np.float64)
    f = np.asarray(faces)
    n = np.cross(p[f[:, 1]] - p[f[:, 0]], p[f[:, 2]] - p[f[:, 0]])
    vn = np.zeros_like(p)
    for c in range(3):
        np.add.at(vn, f[:, c], n)
    return vn / np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-30)


def facing(points_cam) -> np.ndarray:
    """(468,) cosine between each landmark's outward normal and the direction to the camera
    (1 = faces the camera, 0 = grazing, < 0 = faces away)."""
    _, faces = canonical_mesh()
    p = np.asarray(points_cam, dtype=np.float64)
    vn = vertex_normals(p, faces)
    to_cam = -p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-30)
    cos = np.einsum("ij,ij->i", vn, to_cam)
    # The canonical winding gives outward normals in a right-handed frame; OpenCV camera
    # space is right-handed too, but orient by the forehead / nose region to be safe:
    front = [1, 4, 5, 6, 151, 9, 8, 168]
    return cos if np.mean(cos[front]) >= 0 else -cos


def inside_image(xy, width, height) -> np.ndarray:
    xy = np.asarray(xy, dtype=np.float64)
    return (xy[:, 0] >= 0) & (xy[:, 0] < width) & (xy[:, 1] >= 0) & (xy[:, 1] < height)


def visibility_audit(xy, depth, visible, k, width, height) -> dict[str, np.ndarray]:
    """Check one sample's visibility flags against its own label geometry (see the module
    docstring). Returns boolean (468,) masks: ``inside``, ``far`` (deeper than the mirror
    partner by > FAR_SIDE_M), ``grazing`` (cos < GRAZING_COS), ``lips``, ``unexplained``
    (hidden, inside, and none of the three), ``near_facing_hidden`` (near side, cos >
    FACING_COS, not lips, yet hidden), ``far_away_visible`` (deeper than the mirror by >
    CLEAR_FAR_M and cos < BACK_COS, yet visible); and ``cos``, ``far_m`` (floats)."""
    visible = np.asarray(visible, dtype=bool)
    pc = camera_points(xy, depth, k)
    cos = facing(pc)
    far_m = pc[:, 2] - pc[mirror_partners(), 2]
    lips = np.zeros(len(visible), dtype=bool)
    lips[list(lip_landmarks())] = True
    inside = inside_image(xy, width, height)
    far = far_m > FAR_SIDE_M
    grazing = cos < GRAZING_COS
    hidden_in = inside & ~visible
    return {
        "inside": inside,
        "far": far,
        "grazing": grazing,
        "lips": lips,
        "hidden_inside": hidden_in,
        "unexplained": hidden_in & ~far & ~grazing & ~lips,
        "near_facing_hidden": inside & ~visible & (far_m < NEAR_SIDE_M) & (cos > FACING_COS) & ~lips,
        "far_away_visible": visible & (far_m > CLEAR_FAR_M) & (cos < BACK_COS),
        "outside_visible": visible & ~inside,
        "cos": cos,
        "far_m": far_m,
    }
