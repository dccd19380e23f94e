# SPDX-License-Identifier: GPL-3.0-or-later
"""Per-sample labels from the evaluated mesh: landmarks (one ``foreach_get``), projection,
self-occlusion (one BVH per expression, rays batched with NumPy) and head pose.

Visibility of landmark i = it is in front of the camera, inside the image, and the ray
from the camera centre to it meets no surface of the character's evaluated mesh more than
``OCCLUSION_EPS`` x (camera distance) before reaching it. The BVH is built once per
expression (``BVHTree.FromObject`` on the evaluated mesh, in the object's local space) and
reused for every view of that expression; ray origins, directions and distances are
computed in one NumPy step, the casts are one tight loop over ``bvh.ray_cast``.
"""

from __future__ import annotations

from dataclasses import dataclass

import bpy
import numpy as np

from ..core import cameras
from ..landmark_map import LandmarkMap
from .landmarks import evaluated_vertices

#: Relative depth tolerance of the occlusion test (1 mm at 1 m).
OCCLUSION_EPS = 1e-3


@dataclass
class ExpressionGeometry:
    """What one pose of the character gives every view: world landmarks and a BVH."""

    landmarks: np.ndarray  # (468, 3) world
    bvh: object  # mathutils.bvhtree.BVHTree in object-local coordinates
    world_to_local: np.ndarray  # 4x4
    head_rotation: np.ndarray | None = None  # 3x3, set by the runner


def evaluate_expression(obj: bpy.types.Object, lmap: LandmarkMap, depsgraph, with_bvh: bool = True
                        ) -> ExpressionGeometry:
    from mathutils.bvhtree import BVHTree

    verts = evaluated_vertices(obj, depsgraph, world=True)  # one foreach_get
    lm = lmap.evaluate(verts)
    ob_eval = obj.evaluated_get(depsgraph)
    mw = np.array(ob_eval.matrix_world, dtype=np.float64)
    bvh = BVHTree.FromObject(obj, depsgraph) if with_bvh else None
    return ExpressionGeometry(lm, bvh, np.linalg.inv(mw))


def unoccluded(geom: ExpressionGeometry, camera_position, eps: float = OCCLUSION_EPS) -> np.ndarray:
    """(468,) bool: the landmark is not hidden by the character's own mesh."""
    n = len(geom.landmarks)
    if geom.bvh is None:
        return np.ones(n, dtype=bool)
    m = geom.world_to_local
    origin = np.asarray(camera_position, dtype=np.float64) @ m[:3, :3].T + m[:3, 3]
    targets = geom.landmarks @ m[:3, :3].T + m[:3, 3]
    vec = targets - origin
    dist = np.linalg.norm(vec, axis=1)
    dirs = vec / np.maximum(dist, 1e-12)[:, None]
    limit = dist * (1.0 - eps)
    cast = geom.bvh.ray_cast
    o = tuple(origin.tolist())
    hits = [cast(o, d, lim)[0] is not None for d, lim in zip(dirs.tolist(), limit.tolist())]
    return ~np.asarray(hits, dtype=bool)


@dataclass
class Labels:
    uv: np.ndarray  # (468, 2) pixels, origin top-left corner
    depth: np.ndarray  # (468,) metres along the camera axis
    visible: np.ndarray  # (468,) bool
    r: np.ndarray  # 3x3 OpenCV world->camera
    t: np.ndarray  # (3,)
    cam_position: np.ndarray  # (3,) world
    pose: tuple[float, float, float]  # yaw, pitch, roll (degrees)


def label(geom: ExpressionGeometry, cam_matrix_world, k: np.ndarray, width: int, height: int,
          face_axes_world: np.ndarray) -> Labels:
    """All labels of one view of one expression."""
    cm = np.asarray(cam_matrix_world, dtype=np.float64).reshape(4, 4)
    r, t = cameras.opencv_extrinsics(cm)
    uv, depth = cameras.project(k, r, t, geom.landmarks)
    inside = cameras.inside_image(uv, depth, width, height)
    vis = inside & unoccluded(geom, cm[:3, 3])
    pose = cameras.head_pose(r, face_axes_world)
    return Labels(uv, depth, vis, r, t, cm[:3, 3].copy(), pose)
