# SPDX-License-Identifier: GPL-3.0-or-later
"""Automatic 468-point landmark mapping of any head mesh with MediaPipe Face Mesh.

How it works (:func:`automap`):

1. **Find the face.** A first frontal render is framed from the character's head bone (an
   armature bone named like ``head``) when there is one, else from the mesh itself: the
   character is assumed to look along its object's -Y axis with +Z up (Blender's front
   view); the head is the top part of the mesh, cut off where the width profile jumps
   (shoulders) or after 2 head widths. MediaPipe's face detector finds the face in that
   render; its landmarks, back-projected onto the mesh, give the face's centre, size and
   orientation (eye corners 33/263, forehead 10, chin 152). When the first framing finds no
   face, wider/tighter framings and the other horizontal directions are tried.
2. **Render views around the face.** ``views`` cameras on a yaw/pitch patch around that
   face frame (default 9 views, yaw -30..30, pitch -25..15, always including the frontal
   view; symmetric pairs so left/right biases of the detector cancel; the views from below see
   the upper eyelids, which front and upper views place too high), the face filling
   ``face_fraction`` of the image height. A temporary scene holds the character (and its
   child meshes), a camera, two sun lights and a grey world; every surface gets one plain
   skin material (a view-layer material override), Cycles CPU at a few samples. Nothing of
   the user's scene is changed; shape keys other than ``Basis``/``ID_*`` are muted while
   rendering so the face is neutral (``neutral=False`` keeps the current pose).
3. **Detect.** MediaPipe Face Mesh with ``refine_landmarks=True`` (the attention model: better
   eyelids and lips; its first 468 points are kept) on each render and on its mirror image
   (indices swapped with the canonical mesh's left/right permutation); both predictions are
   averaged. With ``model_ensemble`` (default) MediaPipe's plain landmark model (no attention) runs on
   the same images too and the two models' predictions are averaged: each model alone places some
   landmarks with a bias that is the same in every view, so no multi-view fusion removes it (e.g. the
   upper eyelid-crease rings 27-30/257-260, ~5% IOD too high on a face without a visible crease), and
   the two models' biases differ. Only detection time is added (no extra renders). Each image is fed
   ``1 + track_passes`` times to a fresh tracking-mode Face Mesh: the first pass crops the face with
   the face detector's box, each further pass re-crops around the previous pass's landmarks, which
   the landmark model predicts more accurately.
4. **Back-project** every detected landmark by casting the camera ray through its pixel
   against one BVH tree of the evaluated mesh (world space), keeping the hit and the
   incidence angle.
5. **Fuse robustly** (:func:`fuse_triangulate`, the default), per landmark: the 3D point closest to
   all views' rays (iteratively reweighted least squares, Cauchy weights, so an outlying view has
   little pull), then the closest surface point to it on the connected part of the mesh that most
   views' rays hit (an eyelid landmark cannot land on the eyeball, a lip landmark on the teeth).
   It uses the rays, not where they stop, so landmarks whose rays pass through a gap (closed lips:
   the lip line) or graze a silhouette (face oval) come out right. ``fusion="surface"`` selects the
   earlier method (:func:`fuse_rays`): every view's surface hit is a hypothesis,
   scored by how close the other views' rays pass by it (a hit is wrong where the landmark is
   hidden in that view: MediaPipe still predicts hidden landmarks, and the ray stops on whatever
   is in front); the best is refined to the surface point minimising a robust (Cauchy) sum of
   squared distances to all views' rays, i.e. the reprojection error, moving along the surface
   seen by the winning view (so it cannot slide onto hidden inner surfaces such as the mouth
   interior).
6. **Snap**: that point's triangle of the evaluated mesh + barycentric weights, and a
   per-landmark **confidence** in [0, 1]: ``(share of rays within 10% IOD) *
   exp(-(robust RMS ray distance / 5% IOD)^2)``.

The map's ``meta`` records how it was made (method, views, resolution, samples, date,
MediaPipe/Blender versions, mean spread, detection counts).

MediaPipe is an optional dependency: without it :func:`automap` raises
:class:`MediapipeMissingError` whose message says how to install it.
"""

from __future__ import annotations

import datetime as _dt
import math
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import bpy
import numpy as np
from mathutils import Matrix, Vector
from mathutils.bvhtree import BVHTree

from ..landmark_map import IOD_PAIR, N_LANDMARKS, LandmarkMap, LandmarkMapError, mirror_permutation
from .landmarks import mesh_fingerprint

MEDIAPIPE_PIN = "mediapipe==0.10.14"
INSTALL_HINT = (
    "automatic landmark mapping needs MediaPipe, which is not installed in this Python. "
    f"Install it into Blender's Python: `\"<blender>/<version>/python/bin/python3\" -m pip install {MEDIAPIPE_PIN}` "
    f"(or, with the bpy wheel, `pip install {MEDIAPIPE_PIN}` in that virtual environment; it needs numpy<2). "
    "Everything else works without it; you can also import a landmark map (JSON or vertex group)."
)


class AutomapError(LandmarkMapError):
    """Automatic mapping failed; the message says why."""


class MediapipeMissingError(AutomapError):
    """MediaPipe is not installed (message: how to install it)."""


def require_mediapipe():
    """Return the ``mediapipe`` module or raise :class:`MediapipeMissingError`."""
    try:
        import mediapipe

        mediapipe.solutions.face_mesh.FaceMesh  # noqa: B018  (the legacy "solutions" API)
    except (ImportError, AttributeError) as exc:
        raise MediapipeMissingError(f"{INSTALL_HINT} (import failed: {exc})") from None
    return mediapipe


def has_mediapipe() -> bool:
    try:
        require_mediapipe()
    except MediapipeMissingError:
        return False
    return True


@dataclass
class AutomapOptions:
    views: int = 9
    resolution: int = 384
    # 16, not 8: on the built-in head one landmark (164, below the nose) flipped between 5.1 % and
    # 6.0 % IOD with the render noise of 8 samples; 16 gave 5.1 % for both skin SSS methods
    samples: int = 16
    yaw_range: tuple[float, float] = (-30.0, 30.0)
    pitch_range: tuple[float, float] = (-25.0, 15.0)  # camera below (<0) .. above; views from below see the upper lids
    face_fraction: float = 0.62  # face (forehead..chin) height / image height
    focal_length: float = 85.0  # mm, 36 mm sensor
    flip_augment: bool = True  # also detect on the mirror image
    neutral: bool = True  # mute expression shape keys while rendering
    include_children: bool = True  # render the character's child meshes (eyes, brows) too
    material: str = "auto"  # "auto" (own materials when complete, else plain skin), "own", "override"
    min_detection_confidence: float = 0.3
    refine_landmarks: bool = True  # MediaPipe's attention model (better eyes and lips); first 468 points kept
    model_ensemble: bool = True  # also run the other landmark model (refine_landmarks toggled); average both
    track_passes: int = 2  # re-detect with the ROI from the previous pass's landmarks (tracking mode)
    fusion: str = "triangulate"  # "triangulate" (rays -> robust 3D point -> surface) or "surface" (older)
    keep_images: str | None = None  # folder to keep the renders in (debugging)

    def check(self):
        if self.views < 1:
            raise AutomapError(f"views must be at least 1, got {self.views}")
        if not 64 <= self.resolution <= 4096:
            raise AutomapError(f"resolution must be between 64 and 4096 pixels, got {self.resolution}")
        if self.samples < 1:
            raise AutomapError(f"samples must be at least 1, got {self.samples}")
        if self.track_passes < 0:
            raise AutomapError(f"track_passes must be 0 or more, got {self.track_passes}")
        if self.fusion not in ("triangulate", "surface"):
            raise AutomapError(f"fusion must be 'triangulate' or 'surface', got {self.fusion!r}")
        if self.material not in ("auto", "own", "override"):
            raise AutomapError(f"material must be 'auto', 'own' or 'override', got {self.material!r}")
        for name in ("yaw_range", "pitch_range"):
            lo, hi = getattr(self, name)
            if lo > hi or abs(lo) > 80 or abs(hi) > 80:
                raise AutomapError(f"{name} must be MIN<=MAX within -80..80 degrees, got {lo:g},{hi:g}")


# ----------------------------------------------------------------------------- view layout


def view_angles(n: int, yaw_range=(-30.0, 30.0), pitch_range=(-25.0, 15.0)) -> list[tuple[float, float]]:
    """``n`` (yaw, pitch) pairs in degrees: frontal first, then symmetric pairs over the patch."""
    y0, y1 = yaw_range
    p0, p1 = pitch_range
    yc = min(max(0.0, y0), y1)
    pc = min(max(0.0, p0), p1)
    # normalised positions (u in [-1, 1] across yaw, v in [-1, 1] across pitch), preferred order
    order = [(0, 0), (-1, 0), (1, 0), (0, 1), (0, -1), (-1, 1), (1, 1), (-1, -1), (1, -1),
             (-0.5, 0.5), (0.5, 0.5), (-0.5, -0.5), (0.5, -0.5), (0, 0.5), (0, -0.5), (-0.5, 0), (0.5, 0)]
    out: list[tuple[float, float]] = []
    k = 0
    while len(out) < n:
        if k < len(order):
            u, v = order[k]
        else:  # Halton points beyond the table
            j = k - len(order) + 1
            u, v = 2 * _halton(j, 2) - 1, 2 * _halton(j, 3) - 1
        k += 1
        yaw = yc + (u * (y1 - yc) if u >= 0 else -u * (y0 - yc))
        pitch = pc + (v * (p1 - pc) if v >= 0 else -v * (p0 - pc))
        cand = (round(float(yaw), 6), round(float(pitch), 6))
        if cand not in out:
            out.append(cand)
        if k > 10000:
            break
    return out


def _halton(i: int, b: int) -> float:
    f, r = 1.0, 0.0
    while i > 0:
        f /= b
        r += f * (i % b)
        i //= b
    return r


# ----------------------------------------------------------------------------- surface queries


class MeshSurface:
    """The evaluated mesh of an object in world space: BVH ray casts, closest points,
    barycentric coordinates (triangles = the evaluated mesh's loop triangles)."""

    def __init__(self, obj: bpy.types.Object, depsgraph):
        ob_eval = obj.evaluated_get(depsgraph)
        mesh = ob_eval.to_mesh()
        try:
            mesh.calc_loop_triangles()
            nv = len(mesh.vertices)
            co = np.empty(nv * 3, dtype=np.float32)
            mesh.vertices.foreach_get("co", co)
            tris = np.empty(len(mesh.loop_triangles) * 3, dtype=np.int32)
            mesh.loop_triangles.foreach_get("vertices", tris)
            self.fingerprint = mesh_fingerprint(mesh)
        finally:
            ob_eval.to_mesh_clear()
        if nv == 0 or len(tris) == 0:
            raise AutomapError(f"'{obj.name}' has no faces to map landmarks onto")
        m = np.array(ob_eval.matrix_world, dtype=np.float64)
        self.verts = co.reshape(-1, 3).astype(np.float64) @ m[:3, :3].T + m[:3, 3]
        self.tris = tris.reshape(-1, 3).astype(np.int64)
        self.bvh = BVHTree.FromPolygons(self.verts.tolist(), self.tris.tolist(), all_triangles=True)
        self._tri_part: np.ndarray | None = None
        self._part_bvh: dict[int, BVHTree] = {}

    @property
    def tri_part(self) -> np.ndarray:
        """(T,) connected-component label of every triangle (eyeballs, teeth, ... are their own parts)."""
        if self._tri_part is None:
            self._tri_part = connected_parts(len(self.verts), self.tris)[self.tris[:, 0]]
        return self._tri_part

    def nearest_in_part(self, points: np.ndarray, parts: np.ndarray):
        """Closest points restricted to connected part ``parts[k]`` of the mesh: (K, 3) locations, (K,) triangles."""
        loc = np.empty((len(points), 3))
        idx = np.empty(len(points), dtype=np.int64)
        labels = self.tri_part
        for part in np.unique(parts):
            part = int(part)
            if part not in self._part_bvh:
                sel = np.where(labels == part)[0]
                self._part_bvh[part] = (BVHTree.FromPolygons(self.verts.tolist(), self.tris[sel].tolist(),
                                                             all_triangles=True), sel)
            bvh, sel = self._part_bvh[part]
            for i in np.where(parts == part)[0]:
                lo, _n, ix, _d = bvh.find_nearest(Vector(points[i]))
                if lo is None:
                    raise AutomapError("closest-point query failed (empty mesh part?)")
                loc[i] = lo
                idx[i] = sel[ix]
        return loc, idx

    def ray_cast(self, origin: np.ndarray, dirs: np.ndarray):
        """Rays from one origin: (K, 3) directions -> hits (K, 3) (NaN on miss), normals, tri index."""
        k = len(dirs)
        hits = np.full((k, 3), np.nan)
        normals = np.full((k, 3), np.nan)
        index = np.full(k, -1, dtype=np.int64)
        o = Vector(origin)
        ray_cast = self.bvh.ray_cast
        for i in range(k):
            d = dirs[i]
            if not np.all(np.isfinite(d)):
                continue
            loc, nor, idx, _dist = ray_cast(o, Vector(d))
            if loc is not None:
                hits[i] = loc
                normals[i] = nor
                index[i] = idx
        return hits, normals, index

    def visible(self, origin: np.ndarray, points: np.ndarray, tol: float) -> np.ndarray:
        """(K,) bool: the segment origin -> point is not blocked by the surface (``tol`` slack)."""
        out = np.zeros(len(points), dtype=bool)
        o = Vector(origin)
        for i, p in enumerate(points):
            if not np.all(np.isfinite(p)):
                continue
            d = p - origin
            dist = float(np.linalg.norm(d))
            loc, _n, _i, hd = self.bvh.ray_cast(o, Vector(d / dist))
            out[i] = loc is None or hd >= dist - tol
        return out

    def nearest(self, points: np.ndarray, normals: bool = False):
        """Closest surface points: (K, 3) locations, (K,) triangle indices (and (K, 3) unit normals)."""
        loc = np.empty((len(points), 3))
        nor = np.empty((len(points), 3))
        idx = np.empty(len(points), dtype=np.int64)
        find = self.bvh.find_nearest
        for i, p in enumerate(points):
            lo, n, ix, _d = find(Vector(p))
            if lo is None:
                raise AutomapError("closest-point query failed (empty mesh?)")
            loc[i] = lo
            nor[i] = n
            idx[i] = ix
        return (loc, idx, nor) if normals else (loc, idx)

    def barycentric(self, points: np.ndarray, tri_index: np.ndarray) -> np.ndarray:
        """(K, 3) barycentric weights of points (on or near) triangles ``tri_index`` (clamped inside)."""
        a, b, c = (self.verts[self.tris[tri_index, j]] for j in range(3))
        v0, v1, v2 = b - a, c - a, points - a
        d00 = np.einsum("ij,ij->i", v0, v0)
        d01 = np.einsum("ij,ij->i", v0, v1)
        d11 = np.einsum("ij,ij->i", v1, v1)
        d20 = np.einsum("ij,ij->i", v2, v0)
        d21 = np.einsum("ij,ij->i", v2, v1)
        den = d00 * d11 - d01 * d01
        den = np.where(np.abs(den) < 1e-30, 1e-30, den)
        v = (d11 * d20 - d01 * d21) / den
        w = (d00 * d21 - d01 * d20) / den
        bary = np.stack([1.0 - v - w, v, w], axis=1)
        bary = np.clip(bary, 0.0, None)
        s = bary.sum(axis=1, keepdims=True)
        bary = np.where(s > 0, bary / np.where(s > 0, s, 1), np.array([1.0, 0.0, 0.0]))
        return bary

    def snap(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Closest point on the surface -> (tri (K, 3) vertex indices, bary (K, 3))."""
        loc, idx = self.nearest(points)
        return self.tris[idx].copy(), self.barycentric(loc, idx)


def connected_parts(n_verts: int, tris: np.ndarray) -> np.ndarray:
    """(n_verts,) label of each vertex's connected component (edges of ``tris``), numpy only
    (min-label propagation with pointer jumping; Blender's Python has no scipy)."""
    lab = np.arange(n_verts, dtype=np.int64)
    a = np.concatenate([tris[:, 0], tris[:, 1], tris[:, 2]])
    b = np.concatenate([tris[:, 1], tris[:, 2], tris[:, 0]])
    for _ in range(10000):
        m = np.minimum(lab[a], lab[b])
        new = lab.copy()
        np.minimum.at(new, a, m)
        np.minimum.at(new, b, m)
        while True:  # pointer jumping: every label points at its root
            jumped = new[new]
            if np.array_equal(jumped, new):
                break
            new = jumped
        if np.array_equal(new, lab):
            break
        lab = new
    return lab


# ----------------------------------------------------------------------------- camera geometry


def _look_rotation(forward: np.ndarray, up: np.ndarray) -> np.ndarray:
    """3x3 camera rotation (columns: camera X, Y, Z) looking along ``forward``."""
    f = forward / np.linalg.norm(forward)
    r = np.cross(f, up)
    if np.linalg.norm(r) < 1e-9:
        r = np.cross(f, np.array([0.0, 1.0, 0.0]))
    r /= np.linalg.norm(r)
    u = np.cross(r, f)
    return np.stack([r, u, -f], axis=1)


def _matrix(rot: np.ndarray, loc) -> Matrix:
    m = Matrix.Identity(4)
    for i in range(3):
        for j in range(3):
            m[i][j] = float(rot[i, j])
        m[i][3] = float(loc[i])
    return m


def _rotate(v: np.ndarray, axis: np.ndarray, deg: float) -> np.ndarray:
    return np.array(Matrix.Rotation(math.radians(deg), 3, Vector(axis)) @ Vector(v))


@dataclass
class FaceFrame:
    centre: np.ndarray  # world point the cameras aim at
    front: np.ndarray  # unit vector from the face toward a frontal camera
    up: np.ndarray  # unit vector, face up
    radius: float  # half the face height (forehead..chin), metres

    @property
    def right(self) -> np.ndarray:  # subject's left (image right in a frontal view)
        return np.cross(self.up, self.front)


@dataclass
class View:
    yaw: float
    pitch: float
    location: np.ndarray
    rotation: np.ndarray  # 3x3, columns camera X, Y, Z (world)

    def rays(self, xy: np.ndarray, tan_half: float, aspect: float = 1.0) -> np.ndarray:
        """Normalised image coordinates (x right, y down, [0, 1]) -> unit world directions."""
        cx = (xy[:, 0] - 0.5) * 2.0 * tan_half
        cy = (0.5 - xy[:, 1]) * 2.0 * tan_half / aspect
        d = np.stack([cx, cy, -np.ones_like(cx)], axis=1) @ self.rotation.T
        return d / np.linalg.norm(d, axis=1, keepdims=True)


def _make_view(frame: FaceFrame, yaw: float, pitch: float, distance: float) -> View:
    d = _rotate(frame.front, frame.up, yaw)
    right = np.cross(frame.up, d)
    right /= np.linalg.norm(right)
    d = _rotate(d, right, -pitch)  # positive pitch: camera above the face, looking down
    loc = frame.centre + distance * d
    return View(yaw, pitch, loc, _look_rotation(-d, frame.up))


# ----------------------------------------------------------------------------- initial framing


_HEAD_BONE_NAMES = ("head", "mixamorig:head", "def-head", "org-head", "cc_base_head", "head.x", "c_head.x", "j_bip_c_head")


def _head_bone_world(obj: bpy.types.Object):
    """(head, tail) world positions of the character's head bone, or None."""
    arms = []
    for m in getattr(obj, "modifiers", ()):
        if m.type == "ARMATURE" and m.object is not None:
            arms.append(m.object)
    if obj.parent is not None and obj.parent.type == "ARMATURE":
        arms.append(obj.parent)
    for arm in arms:
        bones = {b.name.lower(): b for b in arm.pose.bones}
        for name in _HEAD_BONE_NAMES:
            pb = bones.get(name)
            if pb is not None:
                mw = np.array(arm.matrix_world)
                h = mw[:3, :3] @ np.array(pb.head) + mw[:3, 3]
                t = mw[:3, :3] @ np.array(pb.tail) + mw[:3, 3]
                if np.linalg.norm(t - h) > 1e-6:
                    return h, t
    return None


def initial_frame(obj: bpy.types.Object, verts: np.ndarray) -> FaceFrame:
    """A rough face frame from the head bone or the mesh's shape (see module docstring)."""
    mw = np.array(obj.matrix_world, dtype=np.float64)[:3, :3]
    front = -mw[:, 1] / max(np.linalg.norm(mw[:, 1]), 1e-12)
    up = mw[:, 2] / max(np.linalg.norm(mw[:, 2]), 1e-12)
    right = np.cross(up, front)
    pts = verts
    bone = _head_bone_world(obj)
    if bone is not None:
        h, t = bone
        length = float(np.linalg.norm(t - h))
        mid = (h + t) / 2
        sel = np.linalg.norm(verts - mid, axis=1) < 1.6 * max(length, 0.05)
        if sel.sum() >= 50:
            pts = verts[sel]
    else:
        pts = _head_region(verts, up, right)
    ur = pts @ right
    uu = pts @ up
    uf = pts @ front
    width = float(ur.max() - ur.min())
    height = float(uu.max() - uu.min())
    cu = 0.5 * (uu.max() + uu.min())
    cr = 0.5 * (ur.max() + ur.min())
    cf = float(uf.max()) - 0.25 * max(width, 1e-6)
    centre = cr * right + cu * up + cf * front
    radius = 0.5 * max(min(height, 1.5 * width), 1e-6)
    return FaceFrame(centre, front, up, radius)


def _head_region(verts: np.ndarray, up: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Vertices of the top part of the mesh down to the shoulders or 2 head widths.

    Slices from the top: the head width W is the largest slice width while the depth below the
    top is under W (the cranium down to the ears); below that the head ends at the first slice
    wider than 1.5 W (shoulders, arms) or at a depth of 2 W."""
    uu = verts @ up
    ur = verts @ right
    top, bottom = float(uu.max()), float(uu.min())
    height = top - bottom
    if height <= 0:
        return verts
    nb = 400
    step = height / nb
    W = 0.0
    frozen = False
    cut = bottom
    b = np.clip(((top - uu) / step).astype(np.int64), 0, nb - 1)
    lo_w = np.full(nb, np.inf)
    hi_w = np.full(nb, -np.inf)
    np.minimum.at(lo_w, b, ur)
    np.maximum.at(hi_w, b, ur)
    for k in range(nb):
        if not np.isfinite(lo_w[k]):
            continue
        w = float(hi_w[k] - lo_w[k])
        depth = (k + 1) * step
        if not frozen:
            W = max(W, w)
            if depth >= W and W > 0:
                frozen = True
            continue
        if w > 1.5 * W or depth > 2.0 * W:
            cut = top - k * step
            break
    sel = uu >= cut
    return verts[sel] if sel.sum() >= 20 else verts


def frame_from_landmarks(points: np.ndarray, fallback: FaceFrame) -> FaceFrame | None:
    """The face frame from (468, 3) back-projected landmarks (NaN rows allowed)."""
    need = [IOD_PAIR[0], IOD_PAIR[1], 10, 152]
    if not np.all(np.isfinite(points[need])):
        return None
    right = points[IOD_PAIR[1]] - points[IOD_PAIR[0]]
    up = points[10] - points[152]
    if np.linalg.norm(right) < 1e-9 or np.linalg.norm(up) < 1e-9:
        return None
    right /= np.linalg.norm(right)
    up = up - right * (up @ right)
    up /= np.linalg.norm(up)
    front = np.cross(right, up)
    if front @ fallback.front < 0:  # detector saw a mirror image?? keep the camera side
        front = -front
    ok = np.all(np.isfinite(points), axis=1)
    p = points[ok]
    centre = p.mean(axis=0)
    rel = p - centre
    rel -= np.outer(rel @ front, front)
    radius = float(np.max(rel @ up) - np.min(rel @ up)) / 2
    if radius <= 0:
        return None
    return FaceFrame(centre, front, up, radius)


# ----------------------------------------------------------------------------- rendering


#: Suns relative to the camera: (yaw, pitch, strength, angular diameter), degrees; and the world.
LIGHTS = ((-35.0, 35.0, 3.2, 12.0), (40.0, 5.0, 1.3, 25.0))
WORLD_COLOR = (0.42, 0.44, 0.48)
WORLD_STRENGTH = 0.6


def _use_override(obj: bpy.types.Object, mode: str) -> bool:
    """Plain skin material unless the character's own materials are complete (``auto``): every slot
    filled and no image texture whose file is missing (those render pink)."""
    if mode != "auto":
        return mode == "override"
    slots = list(obj.material_slots)
    if not slots or any(s.material is None for s in slots):
        return True
    for s in slots:
        nt = s.material.node_tree if getattr(s.material, "node_tree", None) else None
        for n in (nt.nodes if nt else ()):
            if n.type == "TEX_IMAGE" and (n.image is None or not n.image.has_data and not n.image.packed_file
                                          and not Path(bpy.path.abspath(n.image.filepath)).is_file()):
                return True
    return False


class _Stage:
    """A temporary scene with the character, a camera, lights, a grey world and one skin material."""

    def __init__(self, obj: bpy.types.Object, options: AutomapOptions, source_scene=None):
        self.obj = obj
        self.opt = options
        src = source_scene or bpy.context.scene
        self.tmpdir = Path(tempfile.mkdtemp(prefix="facsgen_automap_"))
        self.ids: list = []
        self.muted: list = []
        sc = bpy.data.scenes.new("FACSGEN_automap")
        self.scene = sc
        sc.frame_current = src.frame_current if src is not None else 1
        r = sc.render
        r.engine = "CYCLES"
        r.resolution_x = r.resolution_y = options.resolution
        r.resolution_percentage = 100
        r.film_transparent = False
        r.image_settings.file_format = "PNG"
        r.image_settings.color_mode = "RGB"
        r.use_file_extension = True
        try:
            sc.view_settings.view_transform = "Standard"
        except TypeError:
            pass
        cy = sc.cycles
        cy.device = "CPU"
        cy.samples = options.samples
        cy.use_adaptive_sampling = False
        cy.use_denoising = True
        cy.max_bounces = 2
        cy.diffuse_bounces = 1
        cy.glossy_bounces = 0
        cy.transmission_bounces = 0
        cy.transparent_max_bounces = 2
        cy.caustics_reflective = cy.caustics_refractive = False
        for attr, val in (("denoiser", "OPENIMAGEDENOISE"), ("use_light_tree", False)):
            try:
                setattr(cy, attr, val)
            except (AttributeError, TypeError):
                pass
        # world
        world, bg = self._new_with_node(bpy.data.worlds, "FACSGEN_automap", "BACKGROUND")
        if bg is not None:
            bg.inputs["Color"].default_value = (*WORLD_COLOR, 1.0)
            bg.inputs["Strength"].default_value = WORLD_STRENGTH
        world.color = WORLD_COLOR
        sc.world = world
        # material override
        mat, bsdf = self._new_with_node(bpy.data.materials, "FACSGEN_automap_skin", "BSDF_PRINCIPLED")
        if bsdf is not None:
            bsdf.inputs["Base Color"].default_value = (0.80, 0.57, 0.46, 1.0)
            bsdf.inputs["Roughness"].default_value = 0.55
        mat.diffuse_color = (0.80, 0.57, 0.46, 1.0)
        self.override = _use_override(obj, options.material)
        if self.override:
            sc.view_layers[0].material_override = mat
        # camera
        cam_data = bpy.data.cameras.new("FACSGEN_automap_cam")
        self.ids.append(cam_data)
        cam_data.lens = options.focal_length
        cam_data.sensor_width = 36.0
        cam_data.sensor_fit = "HORIZONTAL"
        cam = bpy.data.objects.new("FACSGEN_automap_cam", cam_data)
        self.ids.insert(0, cam)
        sc.collection.objects.link(cam)
        sc.camera = cam
        self.cam = cam
        self.tan_half = 18.0 / options.focal_length
        # lights (positioned per view, relative to the camera)
        self.lights = []
        for name, (_yaw, _pitch, energy, angle) in zip(("key", "fill"), LIGHTS):
            ld = bpy.data.lights.new(f"FACSGEN_automap_{name}", "SUN")
            ld.energy = energy
            ld.angle = math.radians(angle)
            lo = bpy.data.objects.new(ld.name, ld)
            self.ids.insert(0, lo)
            self.ids.append(ld)
            sc.collection.objects.link(lo)
            self.lights.append(lo)
        # the character (+ child meshes)
        sc.collection.objects.link(obj)
        self.linked = [obj]
        if options.include_children:
            for ch in obj.children_recursive:
                if ch.type in {"MESH", "CURVES", "CURVE", "SURFACE", "META", "FONT"} and ch.name not in sc.collection.objects:
                    # only children near the head matter, but linking all is harmless
                    if ch.type == "MESH" and not ch.hide_render:
                        sc.collection.objects.link(ch)
                        self.linked.append(ch)
        if options.neutral and obj.type == "MESH" and obj.data.shape_keys is not None:
            keys = obj.data.shape_keys.key_blocks
            ref = obj.data.shape_keys.reference_key
            for kb in keys:
                if kb == ref or kb.name.startswith("ID_") or kb.mute:
                    continue
                kb.mute = True
                self.muted.append(kb.name)
        self.view_layer = sc.view_layers[0]
        self.view_layer.update()
        self.depsgraph = self.view_layer.depsgraph
        self.depsgraph.update()

    def _new_with_node(self, collection, name: str, node_type: str):
        """A new world/material (removed again by :meth:`close`) with node trees on, and its
        default node of ``node_type`` (None when there is none)."""
        idb = collection.new(name)
        self.ids.append(idb)
        if hasattr(idb, "use_nodes") and not idb.use_nodes:  # Blender < 5: node trees are opt-in
            idb.use_nodes = True
        nodes = idb.node_tree.nodes if idb.node_tree else ()
        return idb, next((n for n in nodes if n.type == node_type), None)

    def set_view(self, view: View):
        self.cam.matrix_world = _matrix(view.rotation, view.location)
        rot = view.rotation
        for lo, (yaw, pitch, _e, _a) in zip(self.lights, LIGHTS):
            # suns shining from beside/above the camera (angles relative to the camera axes)
            d = _rotate(-rot[:, 2], rot[:, 1], -yaw)
            d = _rotate(d, rot[:, 0], -pitch)
            lo.matrix_world = _matrix(_look_rotation(d, rot[:, 1]), view.location)

    def render(self, name: str) -> np.ndarray:
        """Render the current view; (H, W, 3) uint8 RGB."""
        import cv2

        path = self.tmpdir / f"{name}.png"
        self.scene.render.filepath = str(path)
        bpy.ops.render.render(write_still=True, scene=self.scene.name)
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise AutomapError(f"render of view {name} produced no image ({path})")
        if self.opt.keep_images:
            Path(self.opt.keep_images).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(self.opt.keep_images) / path.name)
        return np.ascontiguousarray(img[:, :, ::-1])

    def close(self):
        obj = self.obj
        if obj.type == "MESH" and obj.data.shape_keys is not None:
            keys = obj.data.shape_keys.key_blocks
            for name in self.muted:
                kb = keys.get(name)
                if kb is not None:
                    kb.mute = False
        for ob in self.linked:
            if ob.name in self.scene.collection.objects:
                self.scene.collection.objects.unlink(ob)
        for idb in self.ids:
            try:
                if isinstance(idb, bpy.types.Object):
                    bpy.data.objects.remove(idb)
                elif isinstance(idb, bpy.types.World):
                    bpy.data.worlds.remove(idb)
                elif isinstance(idb, bpy.types.Material):
                    bpy.data.materials.remove(idb)
                elif isinstance(idb, bpy.types.Camera):
                    bpy.data.cameras.remove(idb)
                elif isinstance(idb, bpy.types.Light):
                    bpy.data.lights.remove(idb)
            except ReferenceError:
                pass
        bpy.data.scenes.remove(self.scene)
        shutil.rmtree(self.tmpdir, ignore_errors=True)


# ----------------------------------------------------------------------------- detection


class _Detector:
    """MediaPipe Face Mesh on one image (and its mirror image).

    Static image mode crops the face with the face detector's box; the landmark model is more
    accurate on the crop that its own landmarks define (what tracking mode uses from the second
    frame of a video on). So each image is fed ``1 + track_passes`` times to a fresh tracking-mode
    Face Mesh: the first pass detects, each further pass re-crops around the previous landmarks."""

    def __init__(self, options: AutomapOptions):
        mp = require_mediapipe()
        self.face_mesh = mp.solutions.face_mesh
        self.version = getattr(mp, "__version__", "?")
        self.opt = options
        self.flip = options.flip_augment
        self.perm = mirror_permutation()
        # the attention model (refine_landmarks) first; with ``model_ensemble`` also the plain one (or vice versa)
        self.models = (options.refine_landmarks, not options.refine_landmarks)[: 2 if options.model_ensemble else 1]
        self.static = None
        if not options.track_passes:
            self.static = {refine: self._new(static=True, refine=refine) for refine in self.models}

    def _new(self, static: bool, refine: bool):
        return self.face_mesh.FaceMesh(
            static_image_mode=static, max_num_faces=1, refine_landmarks=refine,
            min_detection_confidence=self.opt.min_detection_confidence, min_tracking_confidence=0.1,
        )

    @staticmethod
    def _xy(res) -> np.ndarray | None:
        if not res.multi_face_landmarks:
            return None
        lm = res.multi_face_landmarks[0].landmark
        return np.array([(p.x, p.y) for p in lm[:N_LANDMARKS]], dtype=np.float64)

    def _once(self, img: np.ndarray, refine: bool) -> np.ndarray | None:
        if self.static is not None:
            return self._xy(self.static[refine].process(img))
        fm = self._new(static=False, refine=refine)  # fresh state per image: no ROI carried over from another image
        try:
            out = None
            for _ in range(1 + self.opt.track_passes):
                xy = self._xy(fm.process(img))
                if xy is None:
                    break
                out = xy
            return out
        finally:
            fm.close()

    def _model(self, img: np.ndarray, refine: bool) -> np.ndarray | None:
        """One landmark model on the image, averaged with its prediction on the mirror image."""
        a = self._once(img, refine)
        if not self.flip:
            return a
        b = self._once(np.ascontiguousarray(img[:, ::-1]), refine)
        if b is not None:
            fb = np.empty_like(b)
            fb[self.perm] = np.stack([1.0 - b[:, 0], b[:, 1]], axis=1)
            b = fb
        if a is None:
            return b
        if b is None:
            return a
        return 0.5 * (a + b)

    def detect(self, img: np.ndarray) -> np.ndarray | None:
        """(468, 2) normalised image coordinates (x right, y down), or None when no face."""
        preds = [xy for xy in (self._model(img, refine) for refine in self.models) if xy is not None]
        if not preds:
            return None
        return np.mean(preds, axis=0)

    def close(self):
        for fm in (self.static or {}).values():
            fm.close()


# ----------------------------------------------------------------------------- fusion


def ray_distances(points: np.ndarray, origins: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """Distances of points (L, 3) [or (V, L, 3)] to rays ``origins`` (V, 3) + t ``dirs`` (V, L, 3): (V, L)."""
    rel = (points if points.ndim == 3 else points[None]) - origins[:, None, :]
    t = np.einsum("vlj,vlj->vl", rel, dirs)
    return np.linalg.norm(rel - t[..., None] * dirs, axis=2)


def fuse_rays(origins: np.ndarray, dirs: np.ndarray, hits: np.ndarray, cos: np.ndarray,
              surf: MeshSurface, iod: float, iterations: int = 8, incidence_power: float = 0.0,
              scale: float = 0.04, view_weights: np.ndarray | None = None):
    """Robust multi-view fusion of back-projected detections, constrained to the surface.

    ``origins`` (V, 3) camera positions; ``dirs`` (V, L, 3) unit rays through the detections (NaN where
    a view saw no face); ``hits`` (V, L, 3) first surface hits of those rays (NaN on miss); ``cos``
    (V, L) incidence cosines of the hits.

    1. Hypotheses: every view's surface hit. A hit is wrong when the landmark is hidden in that view
       (the ray then stops on whatever is in front: MediaPipe still predicts hidden landmarks), so each
       hypothesis is scored by how well the *other* views' rays pass by it
       (sum of ``exp(-(d / 5% IOD)^2)``), times ``0.5 + 0.5 cos(incidence)``; the best one wins.
    2. Refinement: the surface point minimising the robust (Cauchy, scale 4% IOD) sum of squared
       distances to all views' rays, i.e. the reprojection error, by iterated least squares in the
       tangent plane followed by a closest-point snap.

    Returns ``(points (L, 3) on the surface, tri_index (L,), residual (L,) robust RMS ray distance,
    inlier_fraction (L,))``.
    """
    V, L = dirs.shape[:2]
    ray_ok = np.all(np.isfinite(dirs), axis=2)  # (V, L)
    hit_ok = np.all(np.isfinite(hits), axis=2)
    dz = np.where(ray_ok[..., None], dirs, 0.0)
    # 1. hypothesis voting: dist of hypothesis (from view v) to ray of view u -> (V_hyp, V_ray, L)
    s = 0.05 * iod
    support = np.zeros((V, L))
    for v in range(V):
        d = ray_distances(np.where(hit_ok[v][:, None], hits[v], 0.0), origins, dz)  # (V, L)
        support[v] = np.sum(np.where(ray_ok, np.exp(-((d / s) ** 2)), 0.0), axis=0)
    score = np.where(hit_ok, support * (0.5 + 0.5 * np.clip(cos, 0, 1)), -1.0)
    best = np.argmax(score, axis=0)
    has_hit = hit_ok.any(axis=0)
    p = hits[best, np.arange(L)]
    if not has_hit.all():  # no view's ray hit the mesh: least-squares triangulation, then snap
        tri_pt = _triangulate(origins, dz, ray_ok.astype(float))
        p = np.where(has_hit[:, None], p, tri_pt)
        if not np.all(np.isfinite(p)):
            bad = np.where(~np.all(np.isfinite(p), axis=1))[0]
            raise AutomapError(f"{len(bad)} landmarks were never detected (e.g. {bad[:10].tolist()})")
    p, idx, nor = surf.nearest(p, normals=True)
    # 2. robust reprojection refinement on the surface, staying on the surface seen by the winning view
    #    (a closest-point snap could slide onto hidden inner surfaces: mouth interior, teeth, eyelid folds)
    c = scale * iod
    lam = 1e3
    eye = np.eye(3)
    vw = np.ones(V) if view_weights is None else np.asarray(view_weights, dtype=np.float64)

    def ray_weights(p, nor):
        d = ray_distances(p, origins, dz)  # (V, L)
        w = np.where(ray_ok, 1.0 / (1.0 + (d / c) ** 2), 0.0) * vw[:, None]
        if incidence_power:
            inc = np.clip(-np.einsum("vlj,lj->vl", dz, nor), 0.05, 1.0)
            w = w * inc**incidence_power
        return d, w

    if incidence_power:  # meshes with inverted normals: orient so most rays meet front faces
        facing = -np.einsum("vlj,lj->vl", dz, nor)[ray_ok]
        flip = -1.0 if facing.size and np.median(facing) < 0 else 1.0
    else:
        flip = 1.0

    for _ in range(iterations):
        nor = nor * flip
        d, w = ray_weights(p, nor)
        proj = eye[None, None] - dz[..., :, None] * dz[..., None, :]  # (V, L, 3, 3)
        A = np.einsum("vl,vlij->lij", w, proj)
        b = np.einsum("vl,vlij,vj->li", w, proj, origins)
        nn = nor[:, :, None] * nor[:, None, :]
        wsum = w.sum(axis=0)[:, None, None]
        A = A + lam * wsum * nn + 1e-6 * np.maximum(wsum, 1e-9) * eye[None]
        b = b + np.einsum("lij,lj->li", lam * wsum * nn + 1e-6 * np.maximum(wsum, 1e-9) * eye[None], p)
        target = np.linalg.solve(A, b[..., None])[..., 0]
        step = target - p
        cap = 0.1 * iod  # keep each step local
        n = np.linalg.norm(step, axis=1, keepdims=True)
        step = np.where(n > cap, step * cap / np.maximum(n, 1e-12), step)
        p, idx, nor = _recast(surf, origins[best], p + step, p, idx, nor)
    d, w = ray_weights(p, nor * flip)
    n_rays = np.maximum(ray_ok.sum(axis=0), 1)
    inlier_fraction = np.sum(ray_ok & (d < 2.5 * c), axis=0) / n_rays
    residual = np.sqrt(np.sum(w * d**2, axis=0) / np.maximum(w.sum(axis=0), 1e-12))
    return p, idx, residual, inlier_fraction


def fuse_triangulate(origins: np.ndarray, dirs: np.ndarray, hit_tri: np.ndarray, surf: MeshSurface, iod: float,
                     scale: float = 0.08, iterations: int = 5, hits: np.ndarray | None = None):
    """Multi-view fusion by robust triangulation, then a snap to the surface part the views saw.

    ``origins`` (V, 3) camera positions; ``dirs`` (V, L, 3) unit rays through the detections (NaN where a
    view saw no face); ``hit_tri`` (V, L) triangle index of each ray's first surface hit (-1 on a miss);
    ``hits`` (V, L, 3) those hit points (optional: used for landmarks only one view saw).

    1. Per landmark, the 3D point closest to all views' rays: iteratively reweighted least squares with
       Cauchy weights (scale ``scale`` x IOD), so a view whose detection is off does not drag it away.
       This uses the rays only, not where they stop: a ray through a gap (closed lips: it passes the lip
       line into the mouth) or grazing a silhouette (face oval) still constrains the point, where its
       surface hit would be far off.
    2. The closest surface point to it, restricted to the connected part of the mesh that most views'
       rays hit for this landmark (so an eyelid landmark cannot snap onto the eyeball just behind the
       lid margin, or a lip landmark onto the teeth; those are separate parts of most head meshes).
       Landmarks that fewer than two views saw keep their surface hit.

    Returns ``(points (L, 3) on the surface, tri_index (L,), residual (L,) robust RMS ray distance,
    inlier_fraction (L,))`` like :func:`fuse_rays`.
    """
    V, L = dirs.shape[:2]
    ray_ok = np.all(np.isfinite(dirs), axis=2)
    dz = np.where(ray_ok[..., None], dirs, 0.0)
    w0 = ray_ok.astype(np.float64)
    c = scale * iod
    p = _triangulate(origins, dz, w0)
    for _ in range(iterations):
        ok = np.all(np.isfinite(p), axis=1)
        d = ray_distances(np.where(ok[:, None], p, 0.0), origins, dz)
        w = w0 / (1.0 + (d / c) ** 2)
        p_new = _triangulate(origins, dz, np.where(ok[None], w, w0))
        p = np.where(np.all(np.isfinite(p_new), axis=1)[:, None], p_new, p)
    # surface part per landmark: majority over the views' hits
    labels = surf.tri_part
    hit_ok = hit_tri >= 0
    part_of_hit = np.where(hit_ok, labels[np.maximum(hit_tri, 0)], -1)
    parts = np.empty(L, dtype=np.int64)
    first_hit = np.full(L, -1, dtype=np.int64)
    first_pt = np.full((L, 3), np.nan)
    for lm in range(L):
        ph = part_of_hit[:, lm][hit_ok[:, lm]]
        if len(ph):
            vals, counts = np.unique(ph, return_counts=True)
            parts[lm] = vals[np.argmax(counts)]
            v0 = int(np.argmax(hit_ok[:, lm]))
            first_hit[lm] = hit_tri[v0, lm]
            if hits is not None:
                first_pt[lm] = hits[v0, lm]
        else:
            parts[lm] = -1
    finite = np.all(np.isfinite(p), axis=1)
    lost = ~finite & (first_hit < 0)
    if lost.any() and hits is not None:  # one ray, no hit (grazes a silhouette): its point at the face's depth
        for lm in np.where(lost)[0]:
            vs = np.where(ray_ok[:, lm])[0]
            if not len(vs):
                continue
            v = vs[0]
            hv = np.all(np.isfinite(hits[v]), axis=1)
            if hv.any():
                depth = np.median(np.einsum("lj,lj->l", hits[v][hv] - origins[v], dz[v][hv]))
                p[lm] = origins[v] + depth * dz[v, lm]
        finite = np.all(np.isfinite(p), axis=1)
    if not np.all(finite | (first_hit >= 0)):
        bad = np.where(~(finite | (first_hit >= 0)))[0]
        raise AutomapError(f"{len(bad)} landmarks were never detected (e.g. {bad[:10].tolist()})")
    if (parts < 0).any():  # no view's ray hit the mesh: nearest part to the triangulated point
        miss = parts < 0
        _loc, ix = surf.nearest(np.where(finite[:, None], p, 0.0)[miss])
        parts[miss] = labels[ix]
    # under-determined (one view): that view's hit point
    if not finite.all():
        a, b_, cc = (surf.verts[surf.tris[first_hit[~finite], j]] for j in range(3))
        p[~finite] = np.where(np.isfinite(first_pt[~finite]), first_pt[~finite], (a + b_ + cc) / 3.0)
    points, idx = surf.nearest_in_part(p, parts)
    d = ray_distances(points, origins, dz)
    w = np.where(ray_ok, 1.0 / (1.0 + (d / (0.04 * iod)) ** 2), 0.0)
    n_rays = np.maximum(ray_ok.sum(axis=0), 1)
    inlier_fraction = np.sum(ray_ok & (d < 0.1 * iod), axis=0) / n_rays
    residual = np.sqrt(np.sum(w * d**2, axis=0) / np.maximum(w.sum(axis=0), 1e-12))
    return points, idx, residual, inlier_fraction


def _recast(surf: MeshSurface, cams: np.ndarray, targets: np.ndarray, p: np.ndarray, idx: np.ndarray,
            nor: np.ndarray):
    """First surface hits of the rays ``cams[l] -> targets[l]`` (keeping ``p``/``idx``/``nor`` on a miss)."""
    p, idx, nor = p.copy(), idx.copy(), nor.copy()
    ray_cast = surf.bvh.ray_cast
    for i in range(len(targets)):
        d = targets[i] - cams[i]
        n = float(np.linalg.norm(d))
        if not np.isfinite(n) or n == 0:
            continue
        loc, nr, ix, _dist = ray_cast(Vector(cams[i]), Vector(d / n))
        if loc is not None:
            p[i], nor[i], idx[i] = loc, nr, ix
    return p, idx, nor


def _triangulate(origins: np.ndarray, dirs: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted least-squares intersection of rays per landmark (NaN where under-determined)."""
    eye = np.eye(3)
    proj = eye[None, None] - dirs[..., :, None] * dirs[..., None, :]
    A = np.einsum("vl,vlij->lij", w, proj)
    b = np.einsum("vl,vlij,vj->li", w, proj, origins)
    out = np.full((A.shape[0], 3), np.nan)
    ok = np.linalg.cond(A) < 1e8
    if ok.any():
        out[ok] = np.linalg.solve(A[ok], b[ok][..., None])[..., 0]
    return out


# ----------------------------------------------------------------------------- main entry


def automap(obj: bpy.types.Object, options: AutomapOptions | None = None, progress=None,
            source_scene=None, details: dict | None = None) -> LandmarkMap:
    """Map the 468 MediaPipe landmarks onto ``obj``'s evaluated mesh (see module docstring).

    ``progress(done, total, message)`` is called after each render; ``details``, when a dict, receives
    the intermediate arrays (views, detections, hits, weights) for diagnostics. Raises
    :class:`MediapipeMissingError` without MediaPipe, :class:`AutomapError` when no face is found.
    """
    import time

    t0 = time.perf_counter()
    opt = options or AutomapOptions()
    opt.check()
    if obj is None or obj.type != "MESH":
        raise AutomapError(f"automatic mapping needs a mesh object, got {getattr(obj, 'name', obj)!r}"
                           f" ({getattr(obj, 'type', type(obj).__name__)})")
    detector = _Detector(opt)  # raises MediapipeMissingError first, before touching the scene
    stage = _Stage(obj, opt, source_scene)
    angles = view_angles(opt.views, opt.yaw_range, opt.pitch_range)
    total = len(angles) + 1
    try:
        surf = MeshSurface(obj, stage.depsgraph)

        def shoot(view: View, name: str):
            stage.set_view(view)
            img = stage.render(name)
            xy = detector.detect(img)
            if xy is None:
                return None
            dirs = view.rays(xy, stage.tan_half)
            hits, normals, tri_idx = surf.ray_cast(view.location, dirs)
            cos = np.abs(np.einsum("ij,ij->i", np.nan_to_num(normals), dirs))
            return xy, dirs, hits, cos, tri_idx

        # 1. find the face
        frame0 = initial_frame(obj, surf.verts)
        frame = None
        attempts = []
        for k, (scale, turn) in enumerate(((1.0, 0), (1.8, 0), (0.6, 0), (1.4, 180), (1.4, 90), (1.4, -90))):
            f = FaceFrame(frame0.centre, _rotate(frame0.front, frame0.up, turn), frame0.up, frame0.radius * scale)
            dist = f.radius / (0.8 * stage.tan_half)
            v = _make_view(f, 0.0, 0.0, dist)
            if turn:  # aim at the head's centre from another side
                v = _make_view(FaceFrame(frame0.centre - frame0.front * 0.25 * frame0.radius, f.front, f.up,
                                         f.radius), 0.0, 0.0, dist)
            res = shoot(v, f"locate{k}")
            attempts.append((scale, turn, res is not None))
            if res is not None:
                frame = frame_from_landmarks(res[2], f)
                if frame is not None:
                    break
        if progress:
            progress(1, total, "face located" if frame else "no face found")
        if frame is None:
            raise AutomapError(
                f"MediaPipe found no face on '{obj.name}' (tried {len(attempts)} framings around its "
                "head; the character should face its -Y axis with +Z up, as in Blender's front view, "
                "with an unobstructed, human-like face)"
            )
        # 2.-4. views around the face
        dist = frame.radius / (opt.face_fraction * stage.tan_half)
        V = len(angles)
        hits = np.full((V, N_LANDMARKS, 3), np.nan)
        cosw = np.zeros((V, N_LANDMARKS))
        hit_tri = np.full((V, N_LANDMARKS), -1, dtype=np.int64)
        views: list[View] = []
        xys: dict[int, np.ndarray] = {}
        detected = []
        for i, (yaw, pitch) in enumerate(angles):
            view = _make_view(frame, yaw, pitch, dist)
            views.append(view)
            res = shoot(view, f"view{i:02d}")
            detected.append(res is not None)
            if res is not None:
                xys[i] = res[0]
                hits[i] = res[2]
                cosw[i] = res[3]
                hit_tri[i] = res[4]
            if progress:
                progress(i + 2, total, f"view {i + 1}/{V} yaw {yaw:+.0f} pitch {pitch:+.0f}"
                         + ("" if res is not None else " (no face)"))
        if sum(detected) == 0:
            raise AutomapError(f"MediaPipe found no face in any of the {V} views of '{obj.name}'")
        # 5. fusion
        dirs = np.full((V, N_LANDMARKS, 3), np.nan)
        for i, xy in xys.items():
            dirs[i] = views[i].rays(xy, stage.tan_half)
        origins = np.array([v.location for v in views])
        est = np.nanmedian(np.where(np.isfinite(hits), hits, np.nan), axis=0)
        iod = float(np.linalg.norm(est[IOD_PAIR[0]] - est[IOD_PAIR[1]]))
        if not np.isfinite(iod) or iod <= 0:
            iod = frame.radius * 0.7
        if opt.fusion == "triangulate":
            points, tri_index, residual, inlier_fraction = fuse_triangulate(origins, dirs, hit_tri, surf, iod, hits=hits)
        else:
            points, tri_index, residual, inlier_fraction = fuse_rays(origins, dirs, hits, cosw, surf, iod)
        if details is not None:
            details.update(views=views, hits=hits, cos=cosw, dirs=dirs, fused=points, residual=residual,
                           inlier_fraction=inlier_fraction, frame=frame, tan_half=stage.tan_half, xy=xys,
                           hit_tri=hit_tri)
        # 6. snap (triangle + barycentric) + confidence
        tri = surf.tris[tri_index].copy()
        bary = surf.barycentric(points, tri_index)
        conf = np.clip(inlier_fraction * np.exp(-((residual / (0.05 * iod)) ** 2)), 0.0, 1.0)
        meta = {
            "method": "automap",
            "detector": "mediapipe.solutions.face_mesh (refine_landmarks={}{}, {} ROI re-crop passes, mirror {})".format(
                opt.refine_landmarks, " + the other model, averaged" if opt.model_ensemble else "", opt.track_passes,
                "averaged" if opt.flip_augment else "off"),
            "fusion": opt.fusion,
            "detector_version": detector.version,
            "blender": bpy.app.version_string,
            "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "object": obj.name,
            "material": "plain skin (override)" if stage.override else "own materials",
            "views": [[float(a), float(b), bool(d)] for (a, b), d in zip(angles, detected)],
            "options": {k: v for k, v in asdict(opt).items() if k != "keep_images"},
            "mean_residual_iod": round(float(np.mean(residual) / iod), 5),
            "low_confidence": int(np.sum(conf < 0.5)),
            "iod": iod,
            "locate_attempts": len(attempts),
            "seconds": round(time.perf_counter() - t0, 2),
        }
        return LandmarkMap(tri=tri, bary=bary, fingerprint=surf.fingerprint, confidence=conf, meta=meta)
    finally:
        detector.close()
        stage.close()
