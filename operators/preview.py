# SPDX-License-Identifier: GPL-3.0-or-later
"""Preview a sample (pose + its 468 landmarks drawn in the viewport), camera views, jump to a view.

Posing for a preview changes the character (shape keys, rig sliders, identity); the state
before the first preview is kept and put back by Clear Preview, by the next Generate,
and is also one undo step away (the operators push undo steps).
"""

from __future__ import annotations

import dataclasses
import traceback

import bpy
import numpy as np
from bpy.props import EnumProperty, IntProperty
from mathutils import Matrix

from .. import settings as st
from ..core import config as cfg
from ..panels import overlay
from ._reporting import call_reporting, expected_errors

# --------------------------------------------------------------------------- scene-state snapshot


def _take_state(scene) -> dict:
    """Values a preview may change: shape keys, object/pose-bone transforms, material inputs, camera."""
    state: dict = {("camera",): scene.camera.name if scene.camera else None}
    mats = set()
    for obj in scene.objects:
        state[("basis", obj.name)] = np.array(obj.matrix_basis, dtype=np.float64)
        if obj.type == "MESH":
            state[("color", obj.name)] = tuple(obj.color)
            keys = obj.data.shape_keys
            if keys is not None:
                vals = np.empty(len(keys.key_blocks), dtype=np.float32)
                keys.key_blocks.foreach_get("value", vals)
                names = tuple(k.name for k in keys.key_blocks)
                state[("keys", obj.name)] = (names, vals)
                if keys.animation_data is not None:  # adapters may mute drivers of the keys they set
                    state[("drivers", obj.name)] = tuple(
                        (fc.data_path, fc.array_index, fc.mute) for fc in keys.animation_data.drivers)
            for slot in obj.material_slots:
                if slot.material is not None:
                    mats.add(slot.material)
        elif obj.type == "ARMATURE" and obj.pose is not None:
            for pb in obj.pose.bones:
                state[("bone", obj.name, pb.name)] = np.array(pb.matrix_basis, dtype=np.float64)
    for mat in mats:
        if mat.node_tree is None:
            continue
        for node in mat.node_tree.nodes:
            for sock in node.inputs:
                if hasattr(sock, "default_value"):
                    v = sock.default_value
                    try:
                        v = tuple(v)
                    except TypeError:
                        pass
                    if isinstance(v, (float, int, tuple)):
                        state[("mat", mat.name, node.name, sock.identifier)] = v
    return state


def _equal(a, b) -> bool:
    if isinstance(a, tuple) and len(a) == 2 and isinstance(a[1], np.ndarray):
        return a[0] == b[0] and np.array_equal(a[1], b[1])
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    return a == b


def _restore_value(scene, key, value) -> None:
    kind = key[0]
    if kind == "camera":
        cam = bpy.data.objects.get(value) if value else None
        scene.camera = cam
        return
    if kind == "mat":
        mat = bpy.data.materials.get(key[1])
        node = mat.node_tree.nodes.get(key[2]) if mat and mat.node_tree else None
        if node is None:
            return
        for sock in node.inputs:
            if sock.identifier == key[3]:
                sock.default_value = value
        return
    obj = bpy.data.objects.get(key[1])
    if obj is None:
        return
    if kind == "basis":
        obj.matrix_basis = Matrix(value.tolist())
    elif kind == "color":
        obj.color = value
    elif kind == "keys":
        names, vals = value
        keys = obj.data.shape_keys
        if keys is None:
            return
        if tuple(k.name for k in keys.key_blocks) == names:
            keys.key_blocks.foreach_set("value", vals)
        else:
            for n, v in zip(names, vals):
                kb = keys.key_blocks.get(n)
                if kb is not None:
                    kb.value = float(v)
        obj.data.update()
    elif kind == "drivers":
        keys = obj.data.shape_keys
        ad = keys.animation_data if keys is not None else None
        if ad is not None:
            mute = {(path, idx): m for path, idx, m in value}
            for fc in ad.drivers:
                m = mute.get((fc.data_path, fc.array_index))
                if m is not None and fc.mute != m:
                    fc.mute = m
    elif kind == "bone" and obj.pose is not None:
        pb = obj.pose.bones.get(key[2])
        if pb is not None:
            pb.matrix_basis = Matrix(value.tolist())


# Preview state: the values before the first preview, which of them previews changed,
# and the objects previews added (removed again on restore).
_PREVIEW: dict = {"scene": None, "orig": None, "touched": set(), "added": set(), "orig_objects": None}


def preview_active() -> bool:
    return _PREVIEW["orig"] is not None


def forget_preview() -> None:
    """Drop the stored state without restoring (undo / file load already replaced the data)."""
    _PREVIEW.update(scene=None, orig=None, touched=set(), added=set(), orig_objects=None)
    overlay.clear_landmarks()


def sync_after_undo() -> None:
    """After undo/redo: forget the preview if the data is back to the user's state, else keep it."""
    if _PREVIEW["orig"] is None:
        overlay.clear_landmarks()
        return
    scene = bpy.data.scenes.get(_PREVIEW["scene"] or "")
    if scene is None:
        forget_preview()
        return
    now = _take_state(scene)
    orig = _PREVIEW["orig"]
    added_present = any(n in bpy.data.objects for n in _PREVIEW["added"])
    posed = added_present or any(k in now and k in orig and not _equal(now[k], orig[k]) for k in _PREVIEW["touched"])
    if not posed:
        forget_preview()


def _posing(scene, fn):
    """Run ``fn()`` (which poses the scene) recording what it changed; returns fn's result."""
    if _PREVIEW["orig"] is None or _PREVIEW["scene"] != scene.name:
        if _PREVIEW["orig"] is not None:  # preview in another scene: put that one back first
            restore_preview(bpy.context)
        _PREVIEW.update(scene=scene.name, orig=_take_state(scene), touched=set(), added=set(),
                        orig_objects={o.name for o in bpy.data.objects})
    before = _take_state(scene)
    try:
        return fn()
    finally:
        after = _take_state(scene)
        for k, v in before.items():
            if k not in after or not _equal(after[k], v):
                _PREVIEW["touched"].add(k)
        _PREVIEW["added"] |= {o.name for o in bpy.data.objects} - _PREVIEW["orig_objects"]


def _remove_objects(names) -> None:
    for name in names:
        obj = bpy.data.objects.get(name)
        if obj is None:
            continue
        data = obj.data
        bpy.data.objects.remove(obj, do_unlink=True)
        if data is not None and data.users == 0 and isinstance(data, bpy.types.Mesh):
            bpy.data.meshes.remove(data)


def _run_restoring(scene, fn):
    """Run ``fn()`` and put back everything it changed (a pose used only to measure something)."""
    before = _take_state(scene)
    objects = {o.name for o in bpy.data.objects}
    try:
        return fn()
    finally:
        after = _take_state(scene)
        for k, v in before.items():
            if k in after and not _equal(after[k], v):
                _restore_value(scene, k, v)
        _remove_objects({o.name for o in bpy.data.objects} - objects)
        bpy.context.view_layer.update()


def restore_preview(context) -> bool:
    """Put back what previews changed; True if anything was restored."""
    if _PREVIEW["orig"] is None:
        overlay.clear_landmarks()
        return False
    scene = bpy.data.scenes.get(_PREVIEW["scene"]) or context.scene
    orig = _PREVIEW["orig"]
    for key in _PREVIEW["touched"]:
        if key in orig:
            try:
                _restore_value(scene, key, orig[key])
            except (AttributeError, TypeError, ValueError, ReferenceError):
                traceback.print_exc()
    _remove_objects(_PREVIEW["added"])
    forget_preview()
    if context is not None and getattr(context, "view_layer", None) is not None:
        context.view_layer.update()
    return True


# --------------------------------------------------------------------------- helpers


def _config(context) -> tuple[cfg.GenerationConfig, cfg.Preset]:
    """The scene's generation config; the output folder is irrelevant for previews."""
    s = context.scene.facsgen
    try:
        return st.to_config(s)
    except cfg.ConfigError as exc:
        if "output folder" not in str(exc):
            raise
        return st.to_config(s, out=bpy.app.tempdir or "/tmp")


def _runner():
    from ..pipeline import runner

    return runner


def _call_reporting(op, what: str, fn, *args):
    return call_reporting(op, what, fn, *args,
                          expected=expected_errors(KeyError, IndexError))


def _views_config(conf: cfg.GenerationConfig, emotion: str, views: int) -> cfg.GenerationConfig:
    """A config whose emotion's first expression draw covers every view 0..views-1."""
    return dataclasses.replace(conf, emotions=(emotion,), emotion_counts={emotion: views}, emotion_weights={},
                               count=views, shard=(0, 1), resume=False)


def _n_views(context, conf) -> int:
    if conf.camera.layout == "object":
        if not conf.camera.source_object:
            raise cfg.ConfigError("camera layout 'object' needs a Camera Source object")
        from ..pipeline import render_setup

        pos = render_setup.object_vertex_positions(context.scene, conf.camera.source_object, conf.camera.vertex_group)
        return len(pos)
    return int(conf.camera.views)


def camera_views(context) -> tuple[np.ndarray, np.ndarray | None]:
    """(V, 4, 4) camera world matrices of views 0..V-1 and the aim point, exactly as the dataset places them.

    Uses ``runner.camera_views`` when the pipeline offers it; else previews the first
    expression of the first enabled emotion from every view and puts the pose back.
    """
    runner = _runner()
    conf, preset = _config(context)
    scene = context.scene
    if hasattr(runner, "camera_views"):
        res = runner.camera_views(conf, preset, scene)
        mats = np.asarray(res[0] if isinstance(res, tuple) else res, dtype=np.float64)
        target = np.asarray(res[1], dtype=np.float64) if isinstance(res, tuple) and len(res) > 1 else None
        return mats.reshape(-1, 4, 4), target
    emotion = conf.emotions[0]
    views = _n_views(context, conf)
    vconf = _views_config(conf, emotion, views)
    mats = []
    lms = None

    def run():
        nonlocal lms
        for k in range(views):  # each from the user's pose: a posed identity would move the face frame
            r = _run_restoring(scene, lambda k=k: runner.preview(vconf, preset, emotion, k, scene))
            mats.append(np.asarray(r["camera_matrix_world"], dtype=np.float64))
            lms = r.get("landmarks_world")

    # measure from the user's own pose (a shown preview's identity would move the face frame)
    _label, meta = overlay.landmarks_info()
    again = (meta.get("emotion"), meta.get("index")) if preview_active() else None
    restore_preview(context)
    try:
        _run_restoring(scene, run)
    finally:
        if again is not None and again[0] is not None:
            _show_preview(context, again[0], again[1])
    target = None
    if lms is not None:
        lm = np.asarray(lms, dtype=np.float64)
        # the point between the eyes: mean of MediaPipe's inner eye corners (133, 362)
        target = (lm[133] + lm[362]) / 2.0
    return np.stack(mats), target


def _show_preview(context, emotion: str, index: int) -> dict[str, float]:
    """Pose sample ``index`` of ``emotion`` from the user's own state and draw its landmarks; returns its AUs.

    On any error the user's state is back in place and the exception propagates.
    """
    scene = context.scene
    s = scene.facsgen
    runner = _runner()
    restore_preview(context)  # every preview starts from the user's pose (identity included)
    try:
        conf, preset = _config(context)
        if emotion not in conf.emotions:
            raise cfg.ConfigError(f"{emotion} is not enabled in the Emotions panel")
        result = _posing(scene, lambda: runner.preview(conf, preset, emotion, index, scene))
    except BaseException:
        restore_preview(context)
        raise
    lms = np.asarray(result["landmarks_world"], dtype=np.float64)
    aus = {k: float(v) for k, v in (result.get("aus") or {}).items()}
    overlay.set_landmarks(lms, f"{emotion} sample {index}",
                          meta={"aus": aus, "emotion": emotion, "index": index,
                                "camera_matrix_world": result.get("camera_matrix_world")})
    s.preview_emotion, s.preview_index = emotion, index
    return aus


# --------------------------------------------------------------------------- operators


class FACSGEN_OT_preview_sample(bpy.types.Operator):
    """Pose the character exactly as the chosen sample of the dataset would be posed (same seed logic) """ \
        """and draw its 468 landmarks in the viewport; Clear Preview puts the character back"""

    bl_idname = "facsgen.preview_sample"
    bl_label = "Preview FACS Sample"
    bl_options = {"REGISTER", "UNDO"}

    emotion: EnumProperty(name="Emotion", items=tuple((e, e, f"Preview a {e} sample") for e in cfg.EMOTIONS),
                          default=cfg.EMOTIONS[0], options={"SKIP_SAVE"})
    index: IntProperty(name="Sample", description="Index of the sample within the emotion", min=0, default=0,
                       options={"SKIP_SAVE"})

    @classmethod
    def poll(cls, context):
        if getattr(context.scene, "facsgen", None) is None:
            return False
        try:
            from . import generate

            if generate.is_running():
                cls.poll_message_set("Not while a dataset is being generated")
                return False
        except ImportError:
            pass
        return True

    def invoke(self, context, event):
        s = context.scene.facsgen
        if not self.properties.is_property_set("emotion"):
            self.emotion = s.preview_emotion
        if not self.properties.is_property_set("index"):
            self.index = s.preview_index
        return self.execute(context)

    def execute(self, context):
        ok, aus = _call_reporting(self, "Preview", _show_preview, context, self.emotion, self.index)
        if not ok:
            return {"CANCELLED"}
        active = ", ".join(f"{k} {v:.2f}" for k, v in sorted(aus.items(), key=lambda kv: cfg.au_sort_key(kv[0]))
                           if v > 0) or "no AU (neutral)"
        self.report({"INFO"}, f"Previewing {self.emotion} sample {self.index}: {active}")
        return {"FINISHED"}


class FACSGEN_OT_clear_preview(bpy.types.Operator):
    """Remove the previewed landmarks and put the character back as it was before the preview"""

    bl_idname = "facsgen.clear_preview"
    bl_label = "Clear FACS Preview"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return preview_active() or overlay.landmarks_shown()

    def execute(self, context):
        restored = restore_preview(context)
        overlay.clear_landmarks()
        self.report({"INFO"}, "Preview cleared, pose restored" if restored else "Preview cleared")
        return {"FINISHED"}


class FACSGEN_OT_show_camera_views(bpy.types.Operator):
    """Show (or hide) the dataset's camera positions in the viewport; drawn only, no objects are added"""

    bl_idname = "facsgen.show_camera_views"
    bl_label = "Show FACS Camera Views"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        return getattr(context.scene, "facsgen", None) is not None

    def execute(self, context):
        if overlay.cameras_shown():
            overlay.clear_cameras()
            self.report({"INFO"}, "Camera views hidden")
            return {"FINISHED"}
        ok, views = _call_reporting(self, "Placing the cameras", camera_views, context)
        if not ok:
            return {"CANCELLED"}
        mats, target = views
        overlay.set_cameras(mats[:, :3, 3], target=target, matrices=mats, label=f"{len(mats)} views")
        self.report({"INFO"}, f"Showing {len(mats)} camera views")
        return {"FINISHED"}


class FACSGEN_OT_jump_to_view(bpy.types.Operator):
    """Move the scene's active camera to one of the dataset's camera views (adds a camera if there is none)"""

    bl_idname = "facsgen.jump_to_view"
    bl_label = "Jump Camera to FACS View"
    bl_options = {"REGISTER", "UNDO"}

    view: IntProperty(name="View", description="Camera view index (0 = first)", min=0, default=0,
                      options={"SKIP_SAVE"})

    @classmethod
    def poll(cls, context):
        return getattr(context.scene, "facsgen", None) is not None

    def invoke(self, context, event):
        if not self.properties.is_property_set("view"):
            self.view = context.scene.facsgen.preview_view
        return self.execute(context)

    def execute(self, context):
        scene = context.scene
        ok, views = _call_reporting(self, "Placing the cameras", camera_views, context)
        if not ok:
            return {"CANCELLED"}
        mats = views[0]
        if not 0 <= self.view < len(mats):
            self.report({"ERROR"}, f"View {self.view} does not exist: the camera layout has {len(mats)} views "
                                   f"(0-{len(mats) - 1})")
            return {"CANCELLED"}
        cam = scene.camera
        if cam is None:
            data = bpy.data.cameras.new("FACS View")
            cam = bpy.data.objects.new("FACS View", data)
            scene.collection.objects.link(cam)
            scene.camera = cam
        cam.matrix_world = Matrix(mats[self.view].tolist())
        if cam.type == "CAMERA":
            cam.data.lens = scene.facsgen.focal_length
        scene.facsgen.preview_view = self.view
        screen = getattr(context, "screen", None)
        for area in (screen.areas if screen else ()):
            if area.type == "VIEW_3D":
                area.spaces.active.region_3d.view_perspective = "CAMERA"
                area.tag_redraw()
        self.report({"INFO"}, f"Camera '{cam.name}' moved to view {self.view} of {len(mats)}")
        return {"FINISHED"}


CLASSES: tuple[type, ...] = (
    FACSGEN_OT_preview_sample,
    FACSGEN_OT_clear_preview,
    FACSGEN_OT_show_camera_views,
    FACSGEN_OT_jump_to_view,
)
