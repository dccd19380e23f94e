# SPDX-License-Identifier: GPL-3.0-or-later
"""3D View sidebar (N-panel) tab "FACS" and the menu entries that make operators F3-searchable.

Panels draw only from ``Scene.facsgen`` and cheap, cached queries about the chosen
character; they never change data (Blender forbids it in ``draw``). Operators are
referenced by ``bl_idname`` so a panel draws even when an operator module is missing.
"""

from __future__ import annotations

import time
from pathlib import Path

import bpy
from bpy.app.handlers import persistent

from ..core import config as cfg
from . import overlay

CATEGORY = "FACS"

KIND_LABELS = {
    "builtin": "Built-in head",
    "mblab_rig": "MB-Lab FACS rig",
    "mblab_shapekeys": "MB-Lab expression shape keys",
    "arkit": "ARKit-52 blendshapes",
}

# Every user-facing operator, in the order of the Render > FACS Dataset menu.
OP_GENERATE = "facsgen.generate_dataset"
OP_CANCEL = "facsgen.cancel_generation"
OP_VALIDATE = "facsgen.validate_dataset"
OP_PREVIEW = "facsgen.preview_sample"
OP_CLEAR_PREVIEW = "facsgen.clear_preview"
OP_SHOW_CAMERAS = "facsgen.show_camera_views"
OP_JUMP = "facsgen.jump_to_view"
OP_LOAD_PRESET = "facsgen.load_preset"
OP_SAVE_PRESET = "facsgen.save_preset"
OP_RESET_EMOTIONS = "facsgen.reset_emotions"
OP_ADD_AU = "facsgen.add_au"
OP_REMOVE_AU = "facsgen.remove_au"
OP_ADD_HEAD = "facsgen.add_builtin_head"
OP_MAP_LANDMARKS = "facsgen.map_landmarks"
OP_SHOW_LANDMARKS = "facsgen.show_landmarks"
OP_IMPORT_MAP = "facsgen.import_landmark_map"
OP_EXPORT_MAP = "facsgen.export_landmark_map"


def _settings(context):
    scene = getattr(context, "scene", None)
    return getattr(scene, "facsgen", None) if scene is not None else None


# --------------------------------------------------------------------------- character info (cached)


class CharacterInfo:
    """What the panels show about the chosen character (computed outside ``draw`` cost-wise: cached)."""

    def __init__(self, obj=None, kind=None, description="", supported=None, has_map=None, error="",
                 builtin_missing=False):
        self.obj = obj
        self.kind = kind
        self.description = description
        self.supported = supported  # set[str] | None (unknown)
        self.has_map = has_map  # bool | None (unknown)
        self.error = error
        self.builtin_missing = builtin_missing


_info_cache: dict = {}
_INFO_TTL = 1.0  # seconds


def _find_builtin_head(scene):
    try:
        from ..pipeline import head
    except ImportError:
        return None
    for obj in scene.objects:
        try:
            if obj.type == "MESH" and head.is_builtin_head(obj):
                return obj
        except Exception:  # noqa: BLE001 - a panel must draw whatever the object is
            continue
    return None


def _key_of(obj):
    if obj is None:
        return None
    keys = obj.data.shape_keys if obj.type == "MESH" else None
    n_keys = len(keys.key_blocks) if keys else 0
    return (obj.name, obj.as_pointer(), n_keys, len(obj.data.vertices) if obj.type == "MESH" else 0)


def character_info(context) -> CharacterInfo:
    """The chosen character (or the scene's built-in head), its adapter kind, AUs and map status."""
    s = _settings(context)
    scene = context.scene
    obj = s.character if s is not None else None
    if obj is None and scene is not None:
        obj = _find_builtin_head(scene)
    if obj is None:
        return CharacterInfo(builtin_missing=True)
    key = (_key_of(obj), len(scene.objects) if scene else 0)
    hit = _info_cache.get("info")
    now = time.monotonic()
    if hit and hit[0] == key and now - hit[1] < _INFO_TTL:
        return hit[2]
    info = _compute_info(obj, scene)
    _info_cache["info"] = (key, now, info)
    return info


def invalidate_character_info() -> None:
    _info_cache.clear()


def _compute_info(obj, scene) -> CharacterInfo:
    info = CharacterInfo(obj=obj)
    try:
        from ..pipeline import characters
    except ImportError:
        info.error = "character adapters are not available in this build"
        return info
    try:
        adapter = characters.detect_adapter(obj)
    except ValueError as exc:  # CharacterError
        info.error = str(exc)
        return info
    except Exception as exc:  # noqa: BLE001 - never break the panel
        info.error = f"{type(exc).__name__}: {exc}"
        return info
    info.kind = getattr(adapter, "kind", None)
    try:
        info.description = adapter.describe()
    except Exception:  # noqa: BLE001
        info.description = ""
    try:
        info.supported = set(adapter.supported_aus())
    except Exception:  # noqa: BLE001
        info.supported = None
    info.has_map = _has_landmark_map(obj)
    return info


def _has_landmark_map(obj):
    try:
        from ..pipeline import landmark_maps
    except ImportError:
        landmark_maps = None
    if landmark_maps is not None and hasattr(landmark_maps, "find_map"):
        try:
            return landmark_maps.find_map(obj) is not None
        except Exception:  # noqa: BLE001 - e.g. a stored map for another topology
            return False
    try:
        from ..pipeline import head

        return bool(head.is_builtin_head(obj))
    except Exception:  # noqa: BLE001
        return None


def supported_aus(context):
    return character_info(context).supported


def unsupported_aus(context) -> dict[str, list[str]]:
    """{emotion: [AUs the character cannot express]} for the enabled emotions (empty when unknown)."""
    s = _settings(context)
    sup = supported_aus(context)
    if s is None or sup is None:
        return {}
    out = {}
    for e in s.emotions:
        if e.enabled:
            bad = [r.au for r in e.aus if r.au not in sup]
            if bad:
                out[e.name] = bad
    return out


def _wrapped_labels(layout, words, per_line=6, icon="NONE"):
    words = list(words)
    col = layout.column(align=True)
    for i in range(0, len(words), per_line):
        col.label(text=" ".join(words[i:i + per_line]), icon=icon if i == 0 else "BLANK1")
    return col


# --------------------------------------------------------------------------- UI lists


class FACSGEN_UL_emotions(bpy.types.UIList):
    """The 8 emotions: enable, name, number of AUs, and count or weight."""

    bl_idname = "FACSGEN_UL_emotions"

    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index=0, flt_flag=0):
        s = _settings(context)
        row = layout.row(align=True)
        row.prop(item, "enabled", text="")
        sub = row.row()
        sub.active = item.enabled
        sub.label(text=item.name)
        bad = unsupported_aus(context).get(item.name)
        sub.label(text=f"{len(item.aus)} AU", icon="ERROR" if bad else "NONE")
        if s is not None and s.distribution == "counts":
            sub.prop(item, "count", text="")
        else:
            sub.prop(item, "weight", text="")


class FACSGEN_UL_aus(bpy.types.UIList):
    """AUs of one emotion with their min/max intensity; AUs the character cannot express are marked."""

    bl_idname = "FACSGEN_UL_aus"

    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index=0, flt_flag=0):
        sup = supported_aus(context)
        ok = sup is None or item.au in sup
        row = layout.row(align=True)
        row.alert = not ok
        split = row.split(factor=0.3, align=True)
        split.label(text=item.au if ok else f"{item.au} (n/a)", icon="NONE" if ok else "ERROR")
        sub = split.row(align=True)
        sub.prop(item, "min", text="", slider=True)
        sub.prop(item, "max", text="", slider=True)


# --------------------------------------------------------------------------- panels


class _FacsPanel:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = CATEGORY

    @classmethod
    def poll(cls, context):
        return _settings(context) is not None


class FACSGEN_PT_character(_FacsPanel, bpy.types.Panel):
    bl_idname = "FACSGEN_PT_character"
    bl_label = "Character"

    def draw(self, context):
        draw_character(self.layout, context)


def draw_character(layout, context):
    s = _settings(context)
    layout.prop(s, "character", text="Mesh")
    info = character_info(context)
    if info.builtin_missing:
        box = layout.box()
        box.label(text="Built-in head (added when you preview or generate)", icon="INFO")
        box.operator(OP_ADD_HEAD, text="Add Built-in Head", icon="MESH_MONKEY")
        return
    box = layout.box()
    if info.obj is not None and s.character is None:
        box.label(text=f"Using the built-in head '{info.obj.name}'", icon="INFO")
    if info.error:
        col = box.column()
        col.alert = True
        _wrapped_labels(col, info.error.split(), per_line=7, icon="ERROR")
    if info.kind:
        box.label(text=f"Kind: {KIND_LABELS.get(info.kind, info.kind)}", icon="CHECKMARK")
    if info.description:
        _wrapped_labels(box, info.description.split(), per_line=7)
    if info.supported is not None:
        box.label(text=f"Expressible AUs ({len(info.supported)}):")
        _wrapped_labels(box, sorted(info.supported, key=_au_key) or ["none"])
    lm = layout.box()
    if info.has_map is True:
        lm.label(text="Landmark map: found", icon="CHECKMARK")
    elif info.has_map is False:
        row = lm.row()
        row.alert = True
        row.label(text="No landmark map for this mesh", icon="ERROR")
    else:
        lm.label(text="Landmark map: unknown", icon="QUESTION")
    row = lm.row(align=True)
    row.operator(OP_MAP_LANDMARKS, text="Map Face Landmarks", icon="SHADERFX")
    row.operator(OP_SHOW_LANDMARKS, text="Show", icon="HIDE_OFF")
    row = lm.row(align=True)
    row.operator(OP_IMPORT_MAP, text="Import Map", icon="IMPORT")
    row.operator(OP_EXPORT_MAP, text="Export Map", icon="EXPORT")
    layout.operator(OP_ADD_HEAD, text="Add Built-in Head", icon="MESH_MONKEY")


def _au_key(au):
    try:
        return cfg.au_sort_key(au)
    except (ValueError, IndexError):
        return (999, au)


class FACSGEN_PT_emotions(_FacsPanel, bpy.types.Panel):
    bl_idname = "FACSGEN_PT_emotions"
    bl_label = "Emotions"

    def draw(self, context):
        draw_emotions(self.layout, context)


def draw_emotions(layout, context):
    s = _settings(context)
    if not s.emotions:
        layout.label(text="No emotion table yet", icon="INFO")
        layout.operator(OP_RESET_EMOTIONS, text="Load Default Emotions (EMFACS)", icon="FILE_REFRESH")
        return
    layout.prop(s, "distribution", expand=True)
    row = layout.row()
    row.template_list("FACSGEN_UL_emotions", "", s, "emotions", s, "active_emotion_index", rows=8)
    side = row.column(align=True)
    side.operator(OP_RESET_EMOTIONS, text="", icon="FILE_REFRESH")
    if s.distribution == "weights":
        layout.prop(s, "count", text="Total Samples")
    idx = s.active_emotion_index
    if not 0 <= idx < len(s.emotions):
        return
    emo = s.emotions[idx]
    box = layout.box()
    head = box.row()
    head.label(text=f"{emo.name}: AU intensity ranges", icon="SHAPEKEY_DATA")
    row = box.row()
    row.template_list("FACSGEN_UL_aus", "", emo, "aus", emo, "active_au_index", rows=4)
    side = row.column(align=True)
    side.operator(OP_ADD_AU, text="", icon="ADD")
    side.operator(OP_REMOVE_AU, text="", icon="REMOVE")
    if not emo.aus:
        box.label(text="No AU: a neutral face" if emo.name == "Neutral" else "No AU yet (add one with +)")
    bad = unsupported_aus(context)
    if bad:
        warn = layout.box()
        col = warn.column(align=True)
        col.alert = not s.allow_drop_unsupported
        col.label(text="The character cannot express:", icon="ERROR")
        for name, aus in bad.items():
            col.label(text=f"  {name}: {', '.join(aus)}")
        warn.prop(s, "allow_drop_unsupported")


class FACSGEN_PT_presets(_FacsPanel, bpy.types.Panel):
    bl_idname = "FACSGEN_PT_presets"
    bl_label = "Presets"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        draw_presets(self.layout, context)


def user_presets(context=None) -> dict[str, Path]:
    from .. import settings as st

    d = Path(st.user_preset_dir(context))
    try:
        return {p.stem: p for p in sorted(d.glob("*.json"))} if d.is_dir() else {}
    except OSError:
        return {}


def draw_presets(layout, context):
    s = _settings(context)
    from .. import settings as st

    layout.label(text=f"Current table: {s.preset or 'custom'}")
    box = layout.box()
    box.label(text="Bundled (read-only)", icon="LOCKED")
    bundled = cfg.bundled_presets()
    if not bundled:
        box.label(text="none found")
    for name, path in bundled.items():
        row = box.row(align=True)
        row.label(text=name, icon="PRESET")
        op = row.operator(OP_LOAD_PRESET, text="Load", icon="IMPORT")
        op.filepath = str(path)
    box = layout.box()
    box.label(text="User presets", icon="USER")
    box.label(text=st.user_preset_dir(context))
    users = user_presets(context)
    if not users:
        box.label(text="none yet")
    for name, path in users.items():
        row = box.row(align=True)
        row.label(text=name, icon="PRESET")
        op = row.operator(OP_LOAD_PRESET, text="Load", icon="IMPORT")
        op.filepath = str(path)
    row = layout.row(align=True)
    row.operator(OP_SAVE_PRESET, text="Save Preset...", icon="FILE_TICK")
    row.operator(OP_LOAD_PRESET, text="Load File...", icon="FILEBROWSER").filepath = ""
    layout.operator(OP_RESET_EMOTIONS, text="Reset to EMFACS", icon="FILE_REFRESH")


class FACSGEN_PT_camera(_FacsPanel, bpy.types.Panel):
    bl_idname = "FACSGEN_PT_camera"
    bl_label = "Camera"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        draw_camera(self.layout, context)


def draw_camera(layout, context):
    s = _settings(context)
    layout.use_property_split = True
    layout.use_property_decorate = False
    layout.prop(s, "camera_layout")
    if s.camera_layout == "object":
        layout.prop(s, "camera_source", text="Object")
        if s.camera_source is not None and s.camera_source.type == "MESH":
            layout.prop_search(s, "camera_vertex_group", s.camera_source, "vertex_groups")
        else:
            layout.prop(s, "camera_vertex_group")
    else:
        layout.prop(s, "views")
        col = layout.column(align=True)
        col.prop(s, "yaw_min", text="Yaw Min")
        col.prop(s, "yaw_max", text="Max")
        col = layout.column(align=True)
        col.prop(s, "pitch_min", text="Pitch Min")
        col.prop(s, "pitch_max", text="Max")
    layout.prop(s, "distance")
    sub = layout.row()
    sub.active = s.distance == 0.0
    sub.prop(s, "face_fraction")
    layout.prop(s, "roll_jitter")
    layout.prop(s, "focal_length")
    layout.prop(s, "lighting")
    layout.use_property_split = False
    row = layout.row(align=True)
    shown = overlay.cameras_shown()
    row.operator(OP_SHOW_CAMERAS, text="Hide Camera Views" if shown else "Show Camera Views",
                 icon="HIDE_ON" if shown else "HIDE_OFF", depress=shown)
    row = layout.row(align=True)
    row.prop(s, "preview_view")
    row.operator(OP_JUMP, text="Jump Camera", icon="VIEW_CAMERA")


class FACSGEN_PT_render(_FacsPanel, bpy.types.Panel):
    bl_idname = "FACSGEN_PT_render"
    bl_label = "Render & Output"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        draw_render(self.layout, context)


def draw_render(layout, context):
    s = _settings(context)
    layout.use_property_split = True
    layout.use_property_decorate = False
    layout.prop(s, "engine")
    if s.engine == "CYCLES":
        layout.prop(s, "device")
    col = layout.column(align=True)
    col.prop(s, "resolution_x", text="Resolution X")
    col.prop(s, "resolution_y", text="Y")
    col.prop(s, "resolution_percentage")
    layout.prop(s, "samples")
    if s.engine == "CYCLES":
        layout.prop(s, "noise_threshold")
    if s.engine == "CYCLES":
        layout.prop(s, "denoise")
    layout.separator()
    layout.prop(s, "output_dir")
    row = layout.row()
    row.enabled = s.distribution == "weights"
    row.prop(s, "count")
    layout.prop(s, "seed")
    layout.prop(s, "resume")
    layout.prop(s, "sampling")
    if s.sampling == "grid":
        layout.prop(s, "grid_steps")
    layout.prop(s, "identity")
    layout.prop(s, "allow_drop_unsupported")


class FACSGEN_PT_preview(_FacsPanel, bpy.types.Panel):
    bl_idname = "FACSGEN_PT_preview"
    bl_label = "Preview"

    def draw(self, context):
        draw_preview(self.layout, context)


def draw_preview(layout, context):
    s = _settings(context)
    row = layout.row(align=True)
    row.prop(s, "preview_emotion", text="")
    row.prop(s, "preview_index")
    row = layout.row(align=True)
    row.operator(OP_PREVIEW, text="Preview Sample", icon="HIDE_OFF")
    sub = row.row(align=True)
    sub.enabled = overlay.landmarks_shown() or _preview_active()
    sub.operator(OP_CLEAR_PREVIEW, text="Clear", icon="X")
    layout.prop(s, "show_landmark_indices")
    label, meta = overlay.landmarks_info()
    if label:
        box = layout.box()
        box.label(text=label, icon="SHAPEKEY_DATA")
        aus = meta.get("aus") or {}
        active = [f"{k} {v:.2f}" for k, v in sorted(aus.items(), key=lambda kv: _au_key(kv[0])) if v > 0]
        if active:
            _wrapped_labels(box, active, per_line=3)


def _preview_active() -> bool:
    try:
        from ..operators import preview

        return preview.preview_active()
    except (ImportError, AttributeError):
        return False


class FACSGEN_PT_generate(_FacsPanel, bpy.types.Panel):
    bl_idname = "FACSGEN_PT_generate"
    bl_label = "Generate"

    def draw(self, context):
        draw_generate(self.layout, context)


def _generation_running() -> bool:
    try:
        from ..operators import generate

        return generate.is_running()
    except (ImportError, AttributeError):
        return False


def draw_generate(layout, context):
    s = _settings(context)
    if _generation_running():
        layout.progress(factor=s.progress, type="BAR", text=s.status or "Generating...")
        layout.operator(OP_CANCEL, text="Cancel (Esc)", icon="CANCEL")
        return
    col = layout.column()
    col.scale_y = 1.5
    col.operator(OP_GENERATE, text="Generate Dataset", icon="RENDER_STILL")
    layout.operator(OP_VALIDATE, text="Validate Dataset", icon="CHECKMARK")
    if s.status:
        layout.label(text=s.status, icon="INFO")


# --------------------------------------------------------------------------- menus (F3 search)


class FACSGEN_MT_load_preset(bpy.types.Menu):
    bl_idname = "FACSGEN_MT_load_preset"
    bl_label = "Load FACS Preset"

    def draw(self, context):
        layout = self.layout
        for name, path in cfg.bundled_presets().items():
            layout.operator(OP_LOAD_PRESET, text=f"{name} (bundled)", icon="LOCKED").filepath = str(path)
        users = user_presets(context)
        if users:
            layout.separator()
        for name, path in users.items():
            layout.operator(OP_LOAD_PRESET, text=name, icon="PRESET").filepath = str(path)
        layout.separator()
        layout.operator(OP_LOAD_PRESET, text="Load Preset File...", icon="FILEBROWSER").filepath = ""


class FACSGEN_MT_dataset(bpy.types.Menu):
    """Render > FACS Dataset: every user-facing operator of the extension."""

    bl_idname = "FACSGEN_MT_dataset"
    bl_label = "FACS Dataset"

    def draw(self, context):
        draw_dataset_menu(self.layout, context)


def draw_dataset_menu(layout, context):
    layout.operator(OP_GENERATE, text="Generate Dataset", icon="RENDER_STILL")
    layout.operator(OP_VALIDATE, text="Validate Dataset", icon="CHECKMARK")
    layout.separator()
    layout.operator(OP_PREVIEW, text="Preview Sample", icon="HIDE_OFF")
    layout.operator(OP_CLEAR_PREVIEW, text="Clear Preview", icon="X")
    layout.operator(OP_SHOW_CAMERAS, text="Show Camera Views", icon="OUTLINER_OB_CAMERA")
    layout.operator(OP_JUMP, text="Jump Camera to View", icon="VIEW_CAMERA")
    layout.separator()
    layout.operator(OP_ADD_HEAD, text="Add Built-in FACS Head", icon="MESH_MONKEY")
    layout.operator(OP_MAP_LANDMARKS, text="Map Face Landmarks", icon="SHADERFX")
    layout.operator(OP_SHOW_LANDMARKS, text="Show Landmarks", icon="HIDE_OFF")
    layout.operator(OP_IMPORT_MAP, text="Import Landmark Map", icon="IMPORT")
    layout.operator(OP_EXPORT_MAP, text="Export Landmark Map", icon="EXPORT")
    layout.separator()
    layout.operator(OP_LOAD_PRESET, text="Load Preset", icon="IMPORT").filepath = ""
    layout.menu(FACSGEN_MT_load_preset.bl_idname, text="Load Preset From", icon="PRESET")
    layout.operator(OP_SAVE_PRESET, text="Save Preset", icon="FILE_TICK")
    layout.operator(OP_RESET_EMOTIONS, text="Reset Emotions to EMFACS", icon="FILE_REFRESH")


def menu_render(self, context):
    """Appended to TOPBAR_MT_render."""
    self.layout.separator()
    self.layout.menu(FACSGEN_MT_dataset.bl_idname, icon="SHADERFX")


def menu_mesh_add(self, context):
    """Appended to VIEW3D_MT_mesh_add (Add > Mesh)."""
    self.layout.separator()
    self.layout.operator(OP_ADD_HEAD, text="Add Built-in FACS Head", icon="MESH_MONKEY")


MENU_HOOKS = (
    ("TOPBAR_MT_render", menu_render),
    ("VIEW3D_MT_mesh_add", menu_mesh_add),
)


# --------------------------------------------------------------------------- handlers


@persistent
def _on_load_pre(*_args):
    """A file is about to be loaded: stop a running generation, forget the preview (its scene goes away)."""
    try:
        from ..operators import generate, preview

        generate.abort_running("a file was loaded")
        preview.forget_preview()
    except (ImportError, AttributeError):
        pass
    overlay.clear_all()
    invalidate_character_info()


@persistent
def _on_load_post(*_args):
    """Run state is never meaningful in a loaded file."""
    for scene in bpy.data.scenes:
        s = getattr(scene, "facsgen", None)
        if s is not None and (s.is_running or s.progress or s.status):
            s.is_running = False
            s.progress = 0.0
            s.status = ""


@persistent
def _on_undo(*_args):
    """Undo/redo restored the scene data: the drawn preview no longer matches it."""
    try:
        from ..operators import preview

        preview.sync_after_undo()
    except (ImportError, AttributeError):
        overlay.clear_landmarks()
    invalidate_character_info()


_HANDLERS = (
    ("load_pre", _on_load_pre),
    ("load_post", _on_load_post),
    ("undo_post", _on_undo),
    ("redo_post", _on_undo),
)


def register_handlers():
    for attr, fn in _HANDLERS:
        lst = getattr(bpy.app.handlers, attr)
        if fn not in lst:
            lst.append(fn)


def unregister_handlers():
    for attr, fn in _HANDLERS:
        lst = getattr(bpy.app.handlers, attr)
        while fn in lst:
            lst.remove(fn)
    overlay.clear_all()
    overlay.remove_handlers()


def register_menus():
    for menu_name, fn in MENU_HOOKS:
        getattr(bpy.types, menu_name).append(fn)
    register_handlers()


def unregister_menus():
    unregister_handlers()
    for menu_name, fn in MENU_HOOKS:
        menu = getattr(bpy.types, menu_name, None)
        if menu is not None:
            try:
                menu.remove(fn)
            except ValueError:
                pass


CLASSES: tuple[type, ...] = (
    FACSGEN_UL_emotions,
    FACSGEN_UL_aus,
    FACSGEN_MT_load_preset,
    FACSGEN_MT_dataset,
    FACSGEN_PT_character,
    FACSGEN_PT_emotions,
    FACSGEN_PT_presets,
    FACSGEN_PT_camera,
    FACSGEN_PT_render,
    FACSGEN_PT_preview,
    FACSGEN_PT_generate,
)
