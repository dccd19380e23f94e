# SPDX-License-Identifier: GPL-3.0-or-later
"""Emotion/AU presets: load, save (never over a bundled one), edit the AU table."""

from __future__ import annotations

from pathlib import Path

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, StringProperty

from .. import settings as st
from ..core import config as cfg


def _is_bundled(path: Path) -> bool:
    try:
        path = path.resolve()
        bundled_dir = cfg.PRESET_DIR.resolve()
    except OSError:
        return False
    return path.parent == bundled_dir or bundled_dir in path.parents


def _safe_name(name: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_ ." else "_" for c in name.strip())
    return keep.strip(" .")


class FACSGEN_OT_load_preset(bpy.types.Operator):
    """Replace the emotion table's AU ranges with a preset (bundled or a JSON file you choose)"""

    bl_idname = "facsgen.load_preset"
    bl_label = "Load FACS Preset"
    bl_options = {"REGISTER", "UNDO"}

    filepath: StringProperty(name="Preset File", description="JSON preset file (empty: choose one)",
                             subtype="FILE_PATH", default="", options={"SKIP_SAVE"})
    preset: StringProperty(name="Bundled Preset", description="Name of a bundled preset, e.g. emfacs",
                           default="", options={"SKIP_SAVE"})
    filter_glob: StringProperty(default="*.json", options={"HIDDEN"})

    @classmethod
    def poll(cls, context):
        return getattr(context.scene, "facsgen", None) is not None

    def invoke(self, context, event):
        if self.filepath or self.preset:
            return self.execute(context)
        folder = Path(st.user_preset_dir(context))
        if not folder.is_dir():
            folder = cfg.PRESET_DIR
        self.filepath = str(folder) + "/"
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        source = self.preset or bpy.path.abspath(self.filepath)
        if not source or source.endswith(("/", "\\")):
            self.report({"ERROR"}, "No preset chosen")
            return {"CANCELLED"}
        try:
            preset = cfg.load_preset(source)  # raises ConfigError before anything changes
        except cfg.ConfigError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        settings = context.scene.facsgen
        st.load_preset_into(settings, preset)
        n = sum(len(e.aus) for e in preset.emotions.values())
        self.report({"INFO"}, f"Loaded preset '{preset.name}' ({len(preset.emotions)} emotions, {n} AU ranges)")
        return {"FINISHED"}


class FACSGEN_OT_save_preset(bpy.types.Operator):
    """Save the emotion table (AU ranges) as a JSON preset in your user presets folder"""

    bl_idname = "facsgen.save_preset"
    bl_label = "Save FACS Preset"
    bl_options = {"REGISTER"}

    name: StringProperty(name="Name", description="Preset name (also the file name)", default="")
    filepath: StringProperty(name="File", description="Explicit file to write (empty: user presets folder)",
                             subtype="FILE_PATH", default="", options={"SKIP_SAVE"})
    overwrite: BoolProperty(name="Overwrite", description="Replace an existing user preset of that name",
                            default=False, options={"SKIP_SAVE"})

    @classmethod
    def poll(cls, context):
        s = getattr(context.scene, "facsgen", None)
        return s is not None and len(s.emotions) > 0

    def invoke(self, context, event):
        if not self.name:
            current = context.scene.facsgen.preset
            self.name = current if current and current not in cfg.bundled_presets() else "my_preset"
        return context.window_manager.invoke_props_dialog(self)

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "name")
        layout.prop(self, "overwrite")
        layout.label(text=f"Folder: {st.user_preset_dir(context)}")

    def target_path(self, context) -> Path:
        if self.filepath:
            return Path(bpy.path.abspath(self.filepath))
        return Path(st.user_preset_dir(context)) / f"{_safe_name(self.name)}.json"

    def execute(self, context):
        if not self.filepath and not _safe_name(self.name):
            self.report({"ERROR"}, "Give the preset a name")
            return {"CANCELLED"}
        path = self.target_path(context)
        stem = path.stem
        if _is_bundled(path) or (not self.filepath and stem in cfg.bundled_presets()):
            self.report({"ERROR"}, f"'{stem}' is a bundled preset and read-only: save under another name")
            return {"CANCELLED"}
        if path.exists() and not self.overwrite:
            self.report({"ERROR"}, f"A preset '{stem}' already exists ({path}): enable Overwrite or pick a new name")
            return {"CANCELLED"}
        settings = context.scene.facsgen
        try:
            preset = st.preset_from_settings(settings, name=self.name or stem)
        except cfg.ConfigError as exc:
            self.report({"ERROR"}, f"Cannot save: {exc}")
            return {"CANCELLED"}
        try:
            cfg.save_preset(preset, path)
        except OSError as exc:
            self.report({"ERROR"}, f"Cannot write {path}: {exc.strerror or exc}")
            return {"CANCELLED"}
        settings.preset = preset.name
        settings.preset_source = str(path)
        self.report({"INFO"}, f"Saved preset '{preset.name}' to {path}")
        return {"FINISHED"}


def _au_items(self, context):
    items = []
    for n in cfg.KNOWN_AU_NUMBERS:
        base = f"AU{n:02d}"
        items.append((base, base, f"Action unit {n}, both sides"))
        items.append((f"{base}_L", f"{base} L", f"Action unit {n}, the subject's left side only"))
        items.append((f"{base}_R", f"{base} R", f"Action unit {n}, the subject's right side only"))
    return items


class FACSGEN_OT_add_au(bpy.types.Operator):
    """Add an action unit with an intensity range to the selected emotion"""

    bl_idname = "facsgen.add_au"
    bl_label = "Add AU to Emotion"
    bl_options = {"REGISTER", "UNDO"}
    bl_property = "au"

    au: EnumProperty(name="AU", description="Action unit to add", items=_au_items)
    min: FloatProperty(name="Min", min=0.0, max=1.0, default=0.2, subtype="FACTOR")
    max: FloatProperty(name="Max", min=0.0, max=1.0, default=0.8, subtype="FACTOR")

    @classmethod
    def poll(cls, context):
        s = getattr(context.scene, "facsgen", None)
        return s is not None and 0 <= s.active_emotion_index < len(s.emotions)

    def invoke(self, context, event):
        context.window_manager.invoke_search_popup(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        s = context.scene.facsgen
        emo = s.emotions[s.active_emotion_index]
        au = cfg.canonical_au(self.au)
        if any(r.au == au for r in emo.aus):
            self.report({"ERROR"}, f"{emo.name} already has {au}")
            return {"CANCELLED"}
        if self.min > self.max:
            self.report({"ERROR"}, f"min {self.min:.2f} > max {self.max:.2f}")
            return {"CANCELLED"}
        r = emo.aus.add()
        r.au = au
        r.max = self.max
        r.min = self.min
        # keep the list sorted like presets and CSV columns
        target = sum(1 for x in emo.aus if x.au != au and cfg.au_sort_key(x.au) < cfg.au_sort_key(au))
        emo.aus.move(len(emo.aus) - 1, target)
        emo.active_au_index = [x.au for x in emo.aus].index(au)
        self.report({"INFO"}, f"Added {au} to {emo.name}")
        return {"FINISHED"}


class FACSGEN_OT_remove_au(bpy.types.Operator):
    """Remove the selected action unit from the selected emotion"""

    bl_idname = "facsgen.remove_au"
    bl_label = "Remove AU from Emotion"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        s = getattr(context.scene, "facsgen", None)
        if s is None or not 0 <= s.active_emotion_index < len(s.emotions):
            return False
        emo = s.emotions[s.active_emotion_index]
        return 0 <= emo.active_au_index < len(emo.aus)

    def execute(self, context):
        s = context.scene.facsgen
        emo = s.emotions[s.active_emotion_index]
        au = emo.aus[emo.active_au_index].au
        emo.aus.remove(emo.active_au_index)
        emo.active_au_index = min(emo.active_au_index, len(emo.aus) - 1)
        self.report({"INFO"}, f"Removed {au} from {emo.name}")
        return {"FINISHED"}


class FACSGEN_OT_reset_emotions(bpy.types.Operator):
    """Reset the emotion table to the bundled EMFACS prototypes (all emotions enabled, equal weights)"""

    bl_idname = "facsgen.reset_emotions"
    bl_label = "Reset Emotions to EMFACS"
    bl_options = {"REGISTER", "UNDO"}

    preset: StringProperty(name="Preset", default="emfacs", description="Bundled preset to reset to")

    @classmethod
    def poll(cls, context):
        return getattr(context.scene, "facsgen", None) is not None

    def execute(self, context):
        try:
            preset = cfg.load_preset(self.preset)
        except cfg.ConfigError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        s = context.scene.facsgen
        s.emotions.clear()  # a reset also resets enable / weight / count
        st.load_preset_into(s, preset)
        s.active_emotion_index = 0
        self.report({"INFO"}, f"Emotion table reset to '{preset.name}'")
        return {"FINISHED"}


CLASSES: tuple[type, ...] = (
    FACSGEN_OT_load_preset,
    FACSGEN_OT_save_preset,
    FACSGEN_OT_add_au,
    FACSGEN_OT_remove_au,
    FACSGEN_OT_reset_emotions,
)
