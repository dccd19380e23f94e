# SPDX-License-Identifier: GPL-3.0-or-later
"""Landmark-map operators: automatic mapping, import/export, and a viewport check.

* ``facsgen.map_landmarks``: "Map Face Landmarks" (MediaPipe; explains how to install it when missing)
* ``facsgen.import_landmark_map``: from a JSON file, or from a vertex group + MediaPipe index list
* ``facsgen.export_landmark_map``: to a JSON file
* ``facsgen.show_landmarks``: toggles a 3D View overlay drawing the mapped landmarks of the
  evaluated mesh (points coloured by confidence, optional indices). Drawing is skipped in
  background mode; :func:`unregister_draw_handlers` removes the handlers (call it on unregister).

The target is the scene's FACS character (``scene.facsgen.character``), else the active mesh.
"""

from __future__ import annotations

import bpy
import numpy as np
from bpy.props import BoolProperty, EnumProperty, IntProperty, StringProperty
from bpy_extras.io_utils import ExportHelper, ImportHelper

from ..landmark_map import LandmarkMapError


def _target(context) -> bpy.types.Object | None:
    settings = getattr(context.scene, "facsgen", None)
    obj = getattr(settings, "character", None) if settings is not None else None
    if obj is None:
        obj = context.active_object
    if obj is None:
        try:
            from ..pipeline import head

            obj = next((o for o in context.scene.objects if head.is_builtin_head(o)), None)
        except ImportError:
            obj = None
    return obj if obj is not None and obj.type == "MESH" else None


def _no_target(op) -> set[str]:
    op.report({"ERROR"}, "Choose a character (FACS panel) or make a mesh object active first")
    return {"CANCELLED"}


# ----------------------------------------------------------------------------- automatic mapping


class FACSGEN_OT_map_landmarks(bpy.types.Operator):
    """Find the 468 MediaPipe face landmarks on the character's mesh automatically
    (renders the neutral face from a few views and runs MediaPipe Face Mesh)"""

    bl_idname = "facsgen.map_landmarks"
    bl_label = "Map Face Landmarks"
    bl_options = {"REGISTER", "UNDO"}

    views: IntProperty(name="Views", description="Number of rendered views around the front", min=1, max=30,
                       default=9)
    resolution: IntProperty(name="Resolution", description="Render size in pixels (square)", min=128, max=2048,
                            default=384)
    samples: IntProperty(name="Samples", description="Cycles samples per view", min=1, max=256, default=16)
    neutral: BoolProperty(name="Neutral Face", description="Mute expression shape keys while rendering",
                          default=True)

    @classmethod
    def poll(cls, context):
        return _target(context) is not None

    def invoke(self, context, event):
        return context.window_manager.invoke_props_dialog(self)

    def execute(self, context):
        from ..pipeline import automap as am
        from ..pipeline import landmark_maps as lmaps

        obj = _target(context)
        if obj is None:
            return _no_target(self)
        if not am.has_mediapipe():
            self.report({"ERROR"}, am.INSTALL_HINT)
            return {"CANCELLED"}
        opt = am.AutomapOptions(views=self.views, resolution=self.resolution, samples=self.samples,
                                neutral=self.neutral)
        wm = context.window_manager
        wm.progress_begin(0, self.views + 1)
        try:
            lmap = am.automap(obj, opt, progress=lambda done, total, msg: wm.progress_update(done),
                              source_scene=context.scene)
            lmaps.store_map(obj, lmap)
        except LandmarkMapError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        finally:
            wm.progress_end()
        low = int(np.sum(lmap.confidence < 0.5))
        self.report({"WARNING" if low > 20 else "INFO"},
                    f"Mapped 468 landmarks on '{obj.name}' in {lmap.meta.get('seconds', 0):.0f} s "
                    f"(mean confidence {lmap.confidence.mean():.2f}, {low} below 0.5); stored on the object")
        _tag_redraw(context)
        return {"FINISHED"}


# ----------------------------------------------------------------------------- import / export


class FACSGEN_OT_import_landmark_map(bpy.types.Operator, ImportHelper):
    """Import a landmark map for the character: a JSON file (refused when made for another topology), or the
    original tool's format: a vertex group plus the MediaPipe index of each of its vertices"""

    bl_idname = "facsgen.import_landmark_map"
    bl_label = "Import Landmark Map"
    bl_options = {"REGISTER", "UNDO"}

    filename_ext = ".json"
    filter_glob: StringProperty(default="*.json", options={"HIDDEN"})
    source: EnumProperty(
        name="Source",
        items=(("FILE", "JSON File", "A landmark map exported by this extension"),
               ("VERTEX_GROUP", "Vertex Group", "A vertex group whose vertices (in vertex-index order) are the "
                                                "listed MediaPipe landmarks")),
        default="FILE",
    )
    vertex_group: StringProperty(name="Vertex Group", default="landmarks")
    indices: StringProperty(
        name="Indices",
        description="MediaPipe indices of the group's vertices in vertex-index order (comma separated), "
                    "or a text file holding them",
    )
    fill_missing: BoolProperty(
        name="Fill Missing Automatically",
        description="When the group covers fewer than 468 landmarks, map the others with MediaPipe "
                    "(otherwise a partial map is refused)",
        default=False,
    )

    @classmethod
    def poll(cls, context):
        return _target(context) is not None

    def invoke(self, context, event):
        if self.source == "VERTEX_GROUP":
            return context.window_manager.invoke_props_dialog(self)
        return ImportHelper.invoke(self, context, event)

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "source")
        if self.source == "VERTEX_GROUP":
            layout.prop(self, "vertex_group")
            layout.prop(self, "indices")
            layout.prop(self, "fill_missing")

    def execute(self, context):
        from ..pipeline import landmark_maps as lmaps

        obj = _target(context)
        if obj is None:
            return _no_target(self)
        try:
            if self.source == "FILE":
                lmap = lmaps.import_map_file(obj, self.filepath)
            else:
                lmap = lmaps.map_from_vertex_group(obj, self.indices, group=self.vertex_group,
                                                   fill="automap" if self.fill_missing else None)
                lmaps.store_map(obj, lmap)
        except (LandmarkMapError, OSError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Landmark map stored on '{obj.name}': {lmaps.describe_map(lmap)}")
        _tag_redraw(context)
        return {"FINISHED"}


class FACSGEN_OT_export_landmark_map(bpy.types.Operator, ExportHelper):
    """Export the character's landmark map to a JSON file (another user can import it for the same mesh)"""

    bl_idname = "facsgen.export_landmark_map"
    bl_label = "Export Landmark Map"

    filename_ext = ".json"
    filter_glob: StringProperty(default="*.json", options={"HIDDEN"})

    @classmethod
    def poll(cls, context):
        return _target(context) is not None

    def execute(self, context):
        from ..pipeline import landmark_maps as lmaps

        obj = _target(context)
        if obj is None:
            return _no_target(self)
        try:
            path = lmaps.export_map(obj, self.filepath)
        except (LandmarkMapError, OSError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Landmark map of '{obj.name}' written to {path}")
        return {"FINISHED"}


# ----------------------------------------------------------------------------- viewport check

_draw_state: dict = {"objects": set(), "indices": False, "handles": [], "shader": None}


def _landmarks_for_draw(obj):
    """(468, 3) world positions and (468,) confidence for ``obj``, or None."""
    from ..pipeline import landmark_maps as lmaps
    from ..pipeline.landmarks import world_landmarks

    try:
        dg = bpy.context.evaluated_depsgraph_get()
        lmap = lmaps.find_map(obj, dg)
        if lmap is None:
            return None
        return world_landmarks(obj, lmap, dg), lmap.confidence
    except (LandmarkMapError, ReferenceError, RuntimeError):
        return None


def _draw_objects():
    out = []
    for name in list(_draw_state["objects"]):
        obj = bpy.data.objects.get(name)
        if obj is None or obj.type != "MESH":
            continue
        got = _landmarks_for_draw(obj)
        if got is not None:
            out.append(got)
    return out


def _draw_points_3d():
    if bpy.app.background:
        return
    try:
        import gpu
        from gpu_extras.batch import batch_for_shader
    except ImportError:
        return
    data = _draw_objects()
    if not data:
        return
    shader = _draw_state.get("shader")
    if shader is None:
        for name in ("POINT_FLAT_COLOR", "FLAT_COLOR"):
            try:
                shader = gpu.shader.from_builtin(name)
                break
            except (ValueError, SystemError):
                continue
        if shader is None:
            return
        _draw_state["shader"] = shader
    gpu.state.point_size_set(6.0)
    gpu.state.depth_test_set("NONE")
    gpu.state.blend_set("ALPHA")
    for pts, conf in data:
        c = np.clip(conf, 0.0, 1.0)[:, None]
        cols = np.concatenate([1.0 - c, 0.25 + 0.75 * c, 0.2 * np.ones_like(c), np.ones_like(c)], axis=1)
        batch = batch_for_shader(shader, "POINTS", {"pos": pts.astype(np.float32).tolist(),
                                                      "color": cols.astype(np.float32).tolist()})
        shader.bind()
        batch.draw(shader)
    gpu.state.blend_set("NONE")
    gpu.state.point_size_set(1.0)


def _draw_indices_2d():
    if bpy.app.background or not _draw_state["indices"]:
        return
    import blf
    from bpy_extras.view3d_utils import location_3d_to_region_2d

    ctx = bpy.context
    region, rv3d = ctx.region, ctx.region_data
    if region is None or rv3d is None:
        return
    font = 0
    blf.size(font, 11)
    blf.color(font, 1.0, 1.0, 1.0, 0.9)
    for pts, _conf in _draw_objects():
        for i, p in enumerate(pts):
            xy = location_3d_to_region_2d(region, rv3d, p)
            if xy is not None:
                blf.position(font, xy[0] + 3, xy[1] + 3, 0)
                blf.draw(font, str(i))


def _ensure_handlers():
    if _draw_state["handles"]:
        return
    sv = bpy.types.SpaceView3D
    _draw_state["handles"] = [
        sv.draw_handler_add(_draw_points_3d, (), "WINDOW", "POST_VIEW"),
        sv.draw_handler_add(_draw_indices_2d, (), "WINDOW", "POST_PIXEL"),
    ]


def unregister_draw_handlers():
    """Remove the overlay's draw handlers (safe to call any time, e.g. from ``unregister``)."""
    sv = bpy.types.SpaceView3D
    for h in _draw_state["handles"]:
        try:
            sv.draw_handler_remove(h, "WINDOW")
        except (ValueError, RuntimeError):
            pass
    _draw_state["handles"] = []
    _draw_state["objects"] = set()
    _draw_state["shader"] = None


def landmarks_shown(obj=None) -> bool:
    if obj is None:
        return bool(_draw_state["objects"])
    return obj.name in _draw_state["objects"]


def _tag_redraw(context):
    wm = getattr(context, "window_manager", None)
    for win in getattr(wm, "windows", ()):
        for area in win.screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()


class FACSGEN_OT_show_landmarks(bpy.types.Operator):
    """Show or hide the character's mapped landmarks in the 3D View (green = confident, red = doubtful)"""

    bl_idname = "facsgen.show_landmarks"
    bl_label = "Show Landmarks"

    show_indices: BoolProperty(name="Indices", description="Also draw each landmark's index", default=False)
    action: EnumProperty(
        name="Action",
        items=(("TOGGLE", "Toggle", ""), ("SHOW", "Show", ""), ("HIDE", "Hide", "")),
        default="TOGGLE",
    )

    def execute(self, context):
        from ..pipeline import landmark_maps as lmaps

        obj = _target(context)
        if obj is None and self.action != "HIDE":
            return _no_target(self)
        name = obj.name if obj is not None else None
        show = (self.action == "SHOW") or (self.action == "TOGGLE" and name not in _draw_state["objects"])
        if not show:
            if name is None:
                _draw_state["objects"].clear()
            else:
                _draw_state["objects"].discard(name)
            if not _draw_state["objects"]:
                unregister_draw_handlers()
            _tag_redraw(context)
            self.report({"INFO"}, "Landmarks hidden")
            return {"FINISHED"}
        try:
            lmap = lmaps.require_map(obj)
        except LandmarkMapError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        _draw_state["objects"].add(name)
        _draw_state["indices"] = self.show_indices
        _ensure_handlers()
        _tag_redraw(context)
        self.report({"INFO"}, f"Showing the landmarks of '{name}': {lmaps.describe_map(lmap)}")
        return {"FINISHED"}


CLASSES: tuple[type, ...] = (
    FACSGEN_OT_map_landmarks,
    FACSGEN_OT_import_landmark_map,
    FACSGEN_OT_export_landmark_map,
    FACSGEN_OT_show_landmarks,
)
