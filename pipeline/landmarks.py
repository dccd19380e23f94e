# SPDX-License-Identifier: GPL-3.0-or-later
"""Landmarks from the evaluated (deformed) mesh: one ``foreach_get`` per sample."""

from __future__ import annotations

import bpy
import numpy as np

from ..landmark_map import LandmarkMap, fingerprint

MAP_PROPERTY = "facsgen_landmark_map"  # JSON of a LandmarkMap stored on the object (travels with the .blend)


def mesh_fingerprint(mesh: bpy.types.Mesh) -> dict:
    n = len(mesh.polygons)
    totals = np.empty(n, dtype=np.int32)
    mesh.polygons.foreach_get("loop_total", totals)
    lv = np.empty(len(mesh.loops), dtype=np.int32)
    mesh.loops.foreach_get("vertex_index", lv)
    return fingerprint(len(mesh.vertices), totals, lv)


def evaluated_vertices(obj: bpy.types.Object, depsgraph=None, world: bool = True) -> np.ndarray:
    """(N, 3) float64 vertex positions of the evaluated mesh (modifiers, shape keys, drivers)."""
    depsgraph = depsgraph or bpy.context.evaluated_depsgraph_get()
    ob_eval = obj.evaluated_get(depsgraph)
    mesh = ob_eval.to_mesh()
    try:
        co = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
        mesh.vertices.foreach_get("co", co)
    finally:
        ob_eval.to_mesh_clear()
    co = co.reshape(-1, 3).astype(np.float64)
    if world:
        m = np.array(ob_eval.matrix_world, dtype=np.float64)
        co = co @ m[:3, :3].T + m[:3, 3]
    return co


def evaluated_fingerprint(obj: bpy.types.Object, depsgraph=None) -> dict:
    depsgraph = depsgraph or bpy.context.evaluated_depsgraph_get()
    ob_eval = obj.evaluated_get(depsgraph)
    mesh = ob_eval.to_mesh()
    try:
        return mesh_fingerprint(mesh)
    finally:
        ob_eval.to_mesh_clear()


def world_landmarks(obj: bpy.types.Object, lmap: LandmarkMap, depsgraph=None) -> np.ndarray:
    """(468, 3) world-space landmark positions on the evaluated surface."""
    return lmap.evaluate(evaluated_vertices(obj, depsgraph, world=True))
