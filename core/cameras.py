# SPDX-License-Identifier: GPL-3.0-or-later
"""Camera math (bpy-free): hemisphere layouts, look-at, intrinsics, extrinsics, projection,
head pose.

Conventions
-----------

* **Face frame** (world vectors, columns of a 3x3 matrix): ``left`` = towards the
  subject's own left, ``up`` = towards the top of the head, ``forward`` = out of the face
  (towards a frontal viewer); ``forward = left x up``. For the built-in head (face looking
  along -Y, Z up) the frame is (+X, +Z, -Y).
* **Camera layouts** give (yaw, pitch) in degrees in the face frame: yaw > 0 puts the
  camera towards the subject's left, pitch > 0 above the face. The camera looks at the
  point between the eyes.
* **Pixels**: origin at the top-left *corner* of the image, x right, y down; pixel (0, 0)
  covers [0, 1) x [0, 1), its centre is (0.5, 0.5). This is what
  ``bpy_extras.object_utils.world_to_camera_view`` gives (``x = u * W``,
  ``y = (1 - v) * H``).
* **OpenCV extrinsics**: ``X_cam = R @ X_world + t`` with the camera's x right, y down,
  z forward (along the optical axis); ``depth = X_cam.z`` (metres along the camera axis).
  ``[u, v, 1]^T ~ K @ X_cam``.
* **Head pose** (300W-LP / 6DRepNet convention): ``R = Rz(roll) @ Ry(yaw) @ Rx(pitch)``
  with the right-handed elementary rotations of 6DRepNet's ``utils.get_R`` (the same as
  face3d's ``angle2matrix``), angles in degrees. Signs, as 6DRepNet's / Hopenet's
  ``draw_axis`` draws them on 300W-LP and AFLW2000 labels:

  - **yaw > 0**: the face turns towards the image's *left* (the subject turns to their
    own right);
  - **pitch > 0**: the face looks *up*;
  - **roll > 0**: the head tilts *clockwise* in the image (the top of the head moves to
    the image's right, the subject tilts towards their own left shoulder).

  Equivalently: in the frame F = (x image-right, y image-up, z towards the viewer), the
  head's axes (left, up, forward) are the columns of ``R.T``. A camera moved to the
  subject's left by a layout yaw of +a sees head yaw +a; a camera raised by a layout
  pitch of +b sees head pitch -b (the face looks down relative to that camera).
"""

from __future__ import annotations

import math

import numpy as np

from .config import ConfigError

LAYOUTS = ("fibonacci", "grid")
SENSOR_FITS = ("AUTO", "HORIZONTAL", "VERTICAL")

#: MediaPipe landmark indices used for the face frame.
LM_RIGHT_EYE = (33, 133)  # subject's right eye: outer, inner corner
LM_LEFT_EYE = (263, 362)  # subject's left eye: outer, inner corner
LM_FOREHEAD = 10
LM_CHIN = 152

# Blender camera axes (x right, y up, looking along -z) -> OpenCV (x right, y down, z forward)
_B2CV = np.diag([1.0, -1.0, -1.0])
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0  # 0.618..., the golden-ratio conjugate


# --------------------------------------------------------------------------- layouts


def _check_range(name: str, rng, lo_lim: float, hi_lim: float) -> tuple[float, float]:
    lo, hi = (float(v) for v in rng)
    if lo > hi:
        raise ConfigError(f"{name} range: min {lo:g} > max {hi:g}")
    if lo < lo_lim or hi > hi_lim:
        raise ConfigError(f"{name} range must lie within [{lo_lim:g}, {hi_lim:g}] degrees, got [{lo:g}, {hi:g}]")
    return lo, hi


def hemisphere_views(layout: str, n: int, yaw_range=(-60.0, 60.0), pitch_range=(-20.0, 30.0)) -> np.ndarray:
    """(n, 2) array of (yaw, pitch) in degrees.

    ``grid``: rows of equal pitch (as many rows as keep the cells roughly square in
    degrees), yaw evenly spaced within each row including the range ends; one point in a
    row or range = its middle. ``fibonacci``: a golden-ratio lattice that covers the
    yaw/pitch patch of the sphere evenly by area (sin(pitch) uniform), starting near the
    frontal middle.
    """
    n = int(n)
    if n < 1:
        raise ConfigError(f"number of views must be >= 1, got {n}")
    y0, y1 = _check_range("yaw", yaw_range, -180.0, 180.0)
    p0, p1 = _check_range("pitch", pitch_range, -89.0, 89.0)
    if layout == "grid":
        ys, ps = y1 - y0, p1 - p0
        if ps <= 0:
            rows = 1
        elif ys <= 0:
            rows = n
        else:
            rows = int(np.clip(round(math.sqrt(n * ps / ys)), 1, n))
        per_row = [n // rows + (1 if r < n % rows else 0) for r in range(rows)]
        pitches = [(p0 + p1) / 2.0] if rows == 1 else list(np.linspace(p0, p1, rows))
        out = []
        for r, k in enumerate(per_row):
            yaws = [(y0 + y1) / 2.0] if k == 1 else list(np.linspace(y0, y1, k))
            out.extend((y, pitches[r]) for y in yaws)
        return np.asarray(out, dtype=np.float64).reshape(n, 2)
    if layout == "fibonacci":
        k = np.arange(n, dtype=np.float64)
        s0, s1 = math.sin(math.radians(p0)), math.sin(math.radians(p1))
        s = s0 + (k + 0.5) / n * (s1 - s0)
        pitch = np.degrees(np.arcsin(np.clip(s, -1.0, 1.0)))
        frac = np.mod(0.5 + k * _GOLDEN, 1.0)
        yaw = y0 + frac * (y1 - y0)
        return np.stack([yaw, pitch], axis=1)
    raise ConfigError(f"unknown camera layout {layout!r} (expected one of: {', '.join(LAYOUTS)}, object)")


def view_direction(face_axes: np.ndarray, yaw: float, pitch: float) -> np.ndarray:
    """Unit vector from the face to a camera at (yaw, pitch) degrees, in world coordinates."""
    a, b = math.radians(yaw), math.radians(pitch)
    local = np.array([math.sin(a) * math.cos(b), math.sin(b), math.cos(a) * math.cos(b)])
    return np.asarray(face_axes, dtype=np.float64) @ local


def look_at(eye, target, up, roll_deg: float = 0.0) -> np.ndarray:
    """4x4 Blender camera ``matrix_world`` at ``eye`` looking at ``target``.

    The image's up is ``up`` projected onto the image plane; ``roll_deg`` then rotates the
    camera about its optical axis (positive = counter-clockwise as seen from behind the
    camera, so the picture turns clockwise).
    """
    eye = np.asarray(eye, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    z = eye - target  # Blender cameras look along their local -Z
    dist = np.linalg.norm(z)
    if dist <= 0:
        raise ValueError("camera position coincides with its target")
    z /= dist
    x = np.cross(np.asarray(up, dtype=np.float64), z)
    if np.linalg.norm(x) < 1e-9:  # looking straight along 'up': pick any perpendicular
        x = np.cross(np.array([0.0, 1.0, 0.0]) if abs(z[1]) < 0.9 else np.array([1.0, 0.0, 0.0]), z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    if roll_deg:
        c, s = math.cos(math.radians(roll_deg)), math.sin(math.radians(roll_deg))
        x, y = c * x + s * y, -s * x + c * y
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = x, y, z, eye
    return m


def face_frame(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(point between the eyes, face axes (3x3, columns left/up/forward), face height)
    from the 468 world landmarks."""
    lm = np.asarray(landmarks, dtype=np.float64)
    right = lm[list(LM_RIGHT_EYE)].mean(axis=0)
    left = lm[list(LM_LEFT_EYE)].mean(axis=0)
    centre = (right + left) / 2.0
    x = left - right
    x /= np.linalg.norm(x)
    up = lm[LM_FOREHEAD] - lm[LM_CHIN]
    height = float(np.linalg.norm(up))
    y = up - x * (up @ x)
    y /= np.linalg.norm(y)
    z = np.cross(x, y)
    return centre, np.stack([x, y, z], axis=1), height


def snap_to_axes(rel: np.ndarray, tol_deg: float = 20.0) -> np.ndarray:
    """A rotation close (within ``tol_deg``) to a signed axis permutation -> that permutation.

    Used to express the face frame in the head's local axes exactly when a character is
    modelled axis-aligned (the usual case), so a frontal camera gives pose (0, 0, 0)."""
    rel = np.asarray(rel, dtype=np.float64)
    p = np.zeros((3, 3))
    idx = np.argmax(np.abs(rel), axis=0)
    if len(set(idx.tolist())) != 3:
        return rel
    for c, r in enumerate(idx):
        p[r, c] = np.sign(rel[r, c])
    if np.linalg.det(p) < 0.5:
        return rel
    cos = np.clip((np.trace(p.T @ rel) - 1.0) / 2.0, -1.0, 1.0)
    return p if math.degrees(math.acos(cos)) <= tol_deg else rel


def orthonormalize(m: np.ndarray) -> np.ndarray:
    """Nearest rotation (polar decomposition) of a 3x3 matrix with scale/shear."""
    u, _, vt = np.linalg.svd(np.asarray(m, dtype=np.float64)[:3, :3])
    r = u @ vt
    if np.linalg.det(r) < 0:
        u[:, -1] *= -1
        r = u @ vt
    return r


def distance_for_face_fraction(face_height: float, f_px: float, image_height_px: float, fraction: float) -> float:
    """Camera distance at which a face of ``face_height`` metres spans ``fraction`` of the
    image height (pinhole, frontal)."""
    if not 0 < fraction <= 1.0:
        raise ConfigError(f"face fraction must be in (0, 1], got {fraction}")
    return float(face_height) * float(f_px) / (float(fraction) * float(image_height_px))


# --------------------------------------------------------------------------- intrinsics


def render_size(resolution_x: int, resolution_y: int, percentage: int = 100) -> tuple[int, int]:
    """Pixel size of the rendered image (Blender: ``res * percentage // 100``)."""
    return int(resolution_x) * int(percentage) // 100, int(resolution_y) * int(percentage) // 100


def intrinsics(
    lens: float,
    sensor_width: float,
    sensor_height: float,
    sensor_fit: str,
    resolution_x: int,
    resolution_y: int,
    percentage: int = 100,
    pixel_aspect_x: float = 1.0,
    pixel_aspect_y: float = 1.0,
    shift_x: float = 0.0,
    shift_y: float = 0.0,
) -> tuple[np.ndarray, int, int]:
    """(K, width, height) of a perspective Blender camera, as Blender's
    ``BKE_camera_params_compute_viewplane`` defines the view plane (sensor fit AUTO /
    HORIZONTAL / VERTICAL, pixel aspect, lens shift, resolution percentage)."""
    if sensor_fit not in SENSOR_FITS:
        raise ConfigError(f"unknown sensor fit {sensor_fit!r} (expected one of: {', '.join(SENSOR_FITS)})")
    w, h = render_size(resolution_x, resolution_y, percentage)
    if w < 1 or h < 1:
        raise ConfigError(f"render size {w}x{h} is empty (resolution {resolution_x}x{resolution_y} at {percentage}%)")
    ax, ay = float(pixel_aspect_x), float(pixel_aspect_y)
    fit = sensor_fit
    if fit == "AUTO":
        sensor = float(sensor_width)
        fit = "HORIZONTAL" if ax * w >= ay * h else "VERTICAL"
    else:
        sensor = float(sensor_width if fit == "HORIZONTAL" else sensor_height)
    ycor = ay / ax
    viewfac = w if fit == "HORIZONTAL" else ycor * h
    f = float(lens) / sensor * viewfac
    k = np.array(
        [
            [f, 0.0, w / 2.0 - float(shift_x) * viewfac],
            [0.0, f / ycor, h / 2.0 + float(shift_y) * viewfac / ycor],
            [0.0, 0.0, 1.0],
        ]
    )
    return k, w, h


# --------------------------------------------------------------------------- extrinsics & projection


def opencv_extrinsics(matrix_world) -> tuple[np.ndarray, np.ndarray]:
    """(R, t), world -> OpenCV camera, from a Blender camera ``matrix_world`` (scale ignored)."""
    m = np.asarray(matrix_world, dtype=np.float64).reshape(4, 4)
    rot = orthonormalize(m[:3, :3])  # camera -> world, Blender camera axes
    r = _B2CV @ rot.T
    t = -r @ m[:3, 3]
    return r, t


def project(k: np.ndarray, r: np.ndarray, t: np.ndarray, points) -> tuple[np.ndarray, np.ndarray]:
    """World points (N, 3) -> (pixels (N, 2) with origin at the top-left corner, depth (N,))."""
    x = np.asarray(points, dtype=np.float64) @ np.asarray(r).T + np.asarray(t)
    depth = x[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uvw = x @ np.asarray(k).T
        uv = uvw[:, :2] / uvw[:, 2:3]
    return uv, depth


def inside_image(uv: np.ndarray, depth: np.ndarray, width: int, height: int) -> np.ndarray:
    """Boolean mask: in front of the camera and within [0, W) x [0, H)."""
    return (depth > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < width) & (uv[:, 1] >= 0) & (uv[:, 1] < height) & np.isfinite(
        uv
    ).all(axis=1)


# --------------------------------------------------------------------------- head pose


def _rx(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]], dtype=np.float64)


def _ry(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=np.float64)


def _rz(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=np.float64)


def pose_matrix(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """6DRepNet's ``get_R(pitch, yaw, roll)`` = Rz(roll) Ry(yaw) Rx(pitch), degrees in."""
    return _rz(math.radians(roll)) @ _ry(math.radians(yaw)) @ _rx(math.radians(pitch))


def pose_angles(rot: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees from R = Rz(roll) Ry(yaw) Rx(pitch) (6DRepNet's
    ``compute_euler_angles_from_rotation_matrices``)."""
    r = np.asarray(rot, dtype=np.float64)
    sy = math.hypot(r[0, 0], r[1, 0])
    if sy > 1e-6:
        pitch = math.atan2(r[2, 1], r[2, 2])
        yaw = math.atan2(-r[2, 0], sy)
        roll = math.atan2(r[1, 0], r[0, 0])
    else:  # gimbal lock: yaw = +-90
        pitch = math.atan2(-r[1, 2], r[1, 1])
        yaw = math.atan2(-r[2, 0], sy)
        roll = 0.0
    return math.degrees(yaw), math.degrees(pitch), math.degrees(roll)


def head_pose(r_world_to_cv: np.ndarray, face_axes_world: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) of the head relative to the camera (module docstring for signs).

    ``face_axes_world``: columns left / up / forward of the head in world coordinates."""
    axes_cv = np.asarray(r_world_to_cv) @ np.asarray(face_axes_world, dtype=np.float64)
    axes_f = _B2CV @ axes_cv  # x right, y up, z towards the viewer
    return pose_angles(orthonormalize(axes_f).T)
