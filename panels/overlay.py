# SPDX-License-Identifier: GPL-3.0-or-later
"""Viewport overlays drawn with the ``gpu`` module (nothing is added to the scene).

Two things are drawn in every 3D View while they are set:

* the 468 landmarks of a previewed pose (green points, optional indices);
* the dataset's camera positions (points, a line to the aim point, a small frustum each).

State is kept here as numpy arrays; the draw handlers are added lazily the first time
something is shown and removed by :func:`remove_handlers` (called on unregister).
In background mode (no GPU) nothing is drawn, but the state still works.
"""

from __future__ import annotations

import bpy
import numpy as np

_handles: list[tuple[str, object]] = []  # (region kind, handle)
_state: dict = {
    "landmarks": None,  # (468, 3) world positions
    "landmarks_label": "",
    "landmarks_meta": {},
    "cameras": None,  # (N, 3) positions
    "camera_matrices": None,  # (N, 4, 4) or None
    "camera_target": None,  # (3,)
    "camera_label": "",
}
_cache: dict = {}

LANDMARK_COLOR = (0.1, 1.0, 0.35, 1.0)
CAMERA_COLOR = (1.0, 0.65, 0.1, 1.0)
ACTIVE_CAMERA_COLOR = (1.0, 0.2, 0.2, 1.0)


# --------------------------------------------------------------------------- state


def set_landmarks(points, label: str = "", meta: dict | None = None) -> None:
    pts = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    _state["landmarks"] = pts
    _state["landmarks_label"] = label
    _state["landmarks_meta"] = dict(meta or {})
    _cache.clear()
    ensure_handlers()
    tag_redraw()


def clear_landmarks() -> None:
    _state["landmarks"] = None
    _state["landmarks_label"] = ""
    _state["landmarks_meta"] = {}
    _cache.clear()
    tag_redraw()


def landmarks():
    return _state["landmarks"]


def landmarks_info() -> tuple[str, dict]:
    return _state["landmarks_label"], _state["landmarks_meta"]


def set_cameras(positions, target=None, matrices=None, label: str = "") -> None:
    _state["cameras"] = np.asarray(positions, dtype=np.float32).reshape(-1, 3)
    _state["camera_target"] = None if target is None else np.asarray(target, dtype=np.float32).reshape(3)
    _state["camera_matrices"] = None if matrices is None else np.asarray(matrices, dtype=np.float32).reshape(-1, 4, 4)
    _state["camera_label"] = label
    _cache.clear()
    ensure_handlers()
    tag_redraw()


def clear_cameras() -> None:
    _state["cameras"] = None
    _state["camera_target"] = None
    _state["camera_matrices"] = None
    _state["camera_label"] = ""
    _cache.clear()
    tag_redraw()


def cameras():
    return _state["cameras"]


def cameras_shown() -> bool:
    return _state["cameras"] is not None


def landmarks_shown() -> bool:
    return _state["landmarks"] is not None


def clear_all() -> None:
    clear_landmarks()
    clear_cameras()


# --------------------------------------------------------------------------- handlers


def handlers_active() -> bool:
    return bool(_handles)


def ensure_handlers() -> None:
    if _handles:
        return
    _handles.append(("WINDOW", bpy.types.SpaceView3D.draw_handler_add(_draw_3d, (), "WINDOW", "POST_VIEW")))
    _handles.append(("WINDOW", bpy.types.SpaceView3D.draw_handler_add(_draw_2d, (), "WINDOW", "POST_PIXEL")))


def remove_handlers() -> None:
    while _handles:
        region, handle = _handles.pop()
        try:
            bpy.types.SpaceView3D.draw_handler_remove(handle, region)
        except (ValueError, RuntimeError):
            pass
    _cache.clear()


def tag_redraw() -> None:
    wm = getattr(bpy.context, "window_manager", None)
    if wm is None:
        return
    for window in wm.windows:
        screen = window.screen
        if screen is None:
            continue
        for area in screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()


# --------------------------------------------------------------------------- geometry (bpy/gpu-free)


def frustum_lines(matrices: np.ndarray, size: float = 0.02) -> np.ndarray:
    """Line segments (2K, 3) of a small pyramid for each camera matrix (Blender camera: looks along -Z)."""
    corners = np.array([[1, 1, -1.6], [-1, 1, -1.6], [-1, -1, -1.6], [1, -1, -1.6]], dtype=np.float32) * size
    apex = np.zeros(3, dtype=np.float32)
    segs_local = []
    for i in range(4):
        segs_local += [apex, corners[i], corners[i], corners[(i + 1) % 4]]
    up = np.array([[0.6, 1.2, -1.6], [0.0, 1.6, -1.6], [0.0, 1.6, -1.6], [-0.6, 1.2, -1.6]],
                  dtype=np.float32) * size  # a little "up" tick
    segs_local = np.concatenate([np.array(segs_local), up])
    hom = np.concatenate([segs_local, np.ones((len(segs_local), 1), np.float32)], axis=1)
    out = np.einsum("nij,kj->nki", matrices, hom)[..., :3]
    return out.reshape(-1, 3)


def camera_lines() -> np.ndarray | None:
    cams = _state["cameras"]
    if cams is None:
        return None
    parts = []
    target = _state["camera_target"]
    if target is not None:
        # from each camera 85% of the way to the aim point
        ends = cams + 0.85 * (target[None, :] - cams)
        parts.append(np.stack([cams, ends], axis=1).reshape(-1, 3))
    mats = _state["camera_matrices"]
    if mats is not None:
        size = 0.02
        if target is not None:
            size = float(np.median(np.linalg.norm(cams - target[None, :], axis=1))) * 0.06 or 0.02
        parts.append(frustum_lines(mats, size))
    return np.concatenate(parts).astype(np.float32) if parts else None


# --------------------------------------------------------------------------- drawing


def _shader(kind: str):
    import gpu

    key = ("shader", kind)
    if key not in _cache:
        names = {"points": ("POINT_UNIFORM_COLOR", "UNIFORM_COLOR"), "lines": ("UNIFORM_COLOR",)}[kind]
        last = None
        for n in names:
            try:
                _cache[key] = gpu.shader.from_builtin(n)
                break
            except (ValueError, SystemError) as exc:
                last = exc
        else:
            raise last
    return _cache[key]


def _batch(key, kind: str, prim: str, coords):
    from gpu_extras.batch import batch_for_shader

    if key not in _cache:
        _cache[key] = batch_for_shader(_shader(kind), prim, {"pos": np.ascontiguousarray(coords, np.float32)})
    return _cache[key]


def _draw_3d():
    try:
        import gpu

        lms = _state["landmarks"]
        cams = _state["cameras"]
        if lms is None and cams is None:
            return
        gpu.state.blend_set("ALPHA")
        gpu.state.depth_test_set("NONE")
        if lms is not None:
            shader = _shader("points")
            gpu.state.point_size_set(5.0)
            shader.bind()
            shader.uniform_float("color", LANDMARK_COLOR)
            _batch("lm", "points", "POINTS", lms).draw(shader)
        if cams is not None:
            shader = _shader("points")
            gpu.state.point_size_set(8.0)
            shader.bind()
            shader.uniform_float("color", CAMERA_COLOR)
            _batch("cam", "points", "POINTS", cams).draw(shader)
            lines = camera_lines()
            if lines is not None and len(lines):
                ls = _shader("lines")
                ls.bind()
                ls.uniform_float("color", CAMERA_COLOR)
                gpu.state.line_width_set(1.5)
                _batch("camlines", "lines", "LINES", lines).draw(ls)
                gpu.state.line_width_set(1.0)
        gpu.state.point_size_set(1.0)
        gpu.state.blend_set("NONE")
    except Exception as exc:  # a draw callback must never raise every redraw
        _report_once("draw_3d", exc)


def _draw_2d():
    try:
        scene = bpy.context.scene
        settings = getattr(scene, "facsgen", None) if scene else None
        lms = _state["landmarks"]
        cams = _state["cameras"]
        if lms is None and cams is None:
            return
        import blf
        from bpy_extras.view3d_utils import location_3d_to_region_2d

        region = bpy.context.region
        rv3d = bpy.context.region_data
        if region is None or rv3d is None:
            return
        font = 0
        if lms is not None and settings is not None and settings.show_landmark_indices:
            blf.size(font, 10)
            blf.color(font, *LANDMARK_COLOR)
            for i, p in enumerate(lms):
                xy = location_3d_to_region_2d(region, rv3d, p)
                if xy is not None:
                    blf.position(font, xy[0] + 3, xy[1] + 3, 0)
                    blf.draw(font, str(i))
        if cams is not None:
            blf.size(font, 12)
            blf.color(font, *CAMERA_COLOR)
            for i, p in enumerate(cams):
                xy = location_3d_to_region_2d(region, rv3d, p)
                if xy is not None:
                    blf.position(font, xy[0] + 5, xy[1] + 5, 0)
                    blf.draw(font, str(i))
    except Exception as exc:
        _report_once("draw_2d", exc)


_reported: set[str] = set()


def _report_once(where: str, exc: Exception) -> None:
    if where not in _reported:
        _reported.add(where)
        print(f"facsgen overlay ({where}): {type(exc).__name__}: {exc}")
