# SPDX-License-Identifier: GPL-3.0-or-later
"""Scene settings (one PointerProperty ``Scene.facsgen``) and add-on preferences.

``to_config`` / ``from_config`` convert between these properties and the bpy-free
:class:`core.config.GenerationConfig` that the pipeline, the CLI and the operators share.
"""

from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from .core import config as cfg

# the device menus (scene settings, add-on preferences): every device the CLI takes
_DEVICE_ITEMS = tuple((d, *cfg.DEVICE_INFO[d]) for d in cfg.DEVICES)
_PREFS_DEVICE_ITEMS = tuple((d.upper(), *cfg.DEVICE_INFO[d]) for d in cfg.DEVICES)


def _addon_prefs(context=None):
    context = context or bpy.context
    prefs = getattr(context, "preferences", None) or bpy.context.preferences
    addon = prefs.addons.get(__package__)
    return addon.preferences if addon else None


def default_user_preset_dir() -> str:
    """The extension's user folder when installed as an extension, else Blender's config folder."""
    if __package__.startswith("bl_ext."):
        try:
            return bpy.utils.extension_path_user(__package__, path="presets", create=False)
        except (ValueError, RuntimeError):
            pass
    return bpy.utils.user_resource("CONFIG", path="facsgen_presets", create=False)


def user_preset_dir(context=None) -> str:
    """Folder of the user's own presets (AddonPreferences ``user_preset_dir`` or the default)."""
    prefs = _addon_prefs(context)
    if prefs is not None and prefs.user_preset_dir:
        return bpy.path.abspath(prefs.user_preset_dir)
    return default_user_preset_dir()


class FACSGEN_AddonPreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    default_output_dir: StringProperty(
        name="Default Output Folder",
        description="Folder used for new datasets when a scene has none set",
        subtype="DIR_PATH",
        default="//facs_dataset",
    )
    render_device: EnumProperty(
        name="Render Device",
        description="Device used by Cycles for dataset renders",
        items=_PREFS_DEVICE_ITEMS,
        default="AUTO",
    )
    user_preset_dir: StringProperty(
        name="User Presets Folder",
        description="Where emotion/AU presets you save are stored (bundled presets are read-only)",
        subtype="DIR_PATH",
        default="",
    )

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "default_output_dir")
        layout.prop(self, "render_device")
        layout.prop(self, "user_preset_dir")
        if not self.user_preset_dir:
            layout.label(text=f"Presets are saved in {default_user_preset_dir()}", icon="INFO")


def _min_changed(self, _context):
    if self.min > self.max:
        self.max = self.min


def _max_changed(self, _context):
    if self.max < self.min:
        self.min = self.max


class FACSGEN_PG_au_range(bpy.types.PropertyGroup):
    au: StringProperty(name="AU", description="FACS action unit, e.g. AU12 or AU12_L")
    min: FloatProperty(name="Min", description="Lowest intensity of this AU for the emotion (0 = absent, "
                       "1 = FACS E); raising it above Max raises Max", min=0.0, max=1.0,
                       default=0.0, subtype="FACTOR", update=_min_changed)
    max: FloatProperty(name="Max", description="Highest intensity of this AU for the emotion (0 = absent, "
                       "1 = FACS E); lowering it below Min lowers Min", min=0.0, max=1.0,
                       default=1.0, subtype="FACTOR", update=_max_changed)


class FACSGEN_PG_emotion(bpy.types.PropertyGroup):
    name: StringProperty(name="Emotion")
    enabled: BoolProperty(name="Enabled", description="Generate samples of this emotion", default=True)
    weight: FloatProperty(name="Weight", description="Share of the total sample count (Sample Counts: Total by "
                          "Weight)", min=0.0, default=1.0)
    count: IntProperty(name="Count", description="Number of samples of this emotion (Sample Counts: Per Emotion)",
                       min=0, default=0)
    aus: CollectionProperty(type=FACSGEN_PG_au_range)
    active_au_index: IntProperty(name="Active AU", default=0)


class FACSGEN_PG_settings(bpy.types.PropertyGroup):
    character: PointerProperty(
        name="Character", type=bpy.types.Object,
        description="Mesh whose face is animated (empty = the built-in head)",
        poll=lambda self, obj: obj.type == "MESH",
    )
    preset: StringProperty(name="Preset", description="Preset the emotion table was loaded from", default="emfacs")
    preset_source: StringProperty(
        name="Preset Source", description="Bundled preset name or file the emotion table was loaded from "
        "(used as is while the table still equals it)", default="",
    )
    emotions: CollectionProperty(type=FACSGEN_PG_emotion)
    distribution: EnumProperty(
        name="Sample Counts",
        description="How many samples each enabled emotion gets",
        items=(("weights", "Total by Weight", "Split the total sample count over the enabled emotions by weight "
                "(equal weights: evenly, the remainder to the first ones)"),
               ("counts", "Per Emotion", "An explicit number of samples for each enabled emotion")),
        default="weights",
    )
    active_emotion_index: IntProperty(name="Active Emotion", default=0)
    sampling: EnumProperty(
        name="Sampling",
        items=(("random", "Random", "Uniform in each AU range, per sample"),
               ("grid", "Grid", "Evenly spaced values per AU, full product (the original script)")),
        default="random",
    )
    grid_steps: IntProperty(name="Grid Steps", min=1, max=10, default=3)
    count: IntProperty(name="Samples", description="Total number of samples", min=1, default=16)
    seed: IntProperty(name="Seed", description="Everything about sample i depends only on (seed, i)", min=0,
                      default=0)
    identity: BoolProperty(name="Random Identity", description="Random identity and skin tone per sample",
                           default=True)
    allow_drop_unsupported: BoolProperty(
        name="Drop Unsupported AUs",
        description="Label AUs the character cannot express as 0 (recorded in dataset.json) instead of refusing",
        default=False,
    )
    # camera
    camera_layout: EnumProperty(
        name="Layout",
        items=(("fibonacci", "Fibonacci", "Even coverage of the yaw/pitch patch"),
               ("grid", "Grid", "Regular yaw x pitch grid"),
               ("object", "Object Vertices", "Cameras at the vertices of an object / vertex group")),
        default="fibonacci",
    )
    views: IntProperty(name="Views", description="Camera views per expression", min=1, default=8)
    yaw_min: FloatProperty(name="Yaw Min", min=-90, max=90, default=-60)
    yaw_max: FloatProperty(name="Yaw Max", min=-90, max=90, default=60)
    pitch_min: FloatProperty(name="Pitch Min", min=-89, max=89, default=-20)
    pitch_max: FloatProperty(name="Pitch Max", min=-89, max=89, default=30)
    distance: FloatProperty(name="Distance", description="Camera distance in metres (0 = fit face_fraction)",
                            min=0.0, default=0.0, unit="LENGTH")
    face_fraction: FloatProperty(name="Face Fraction", min=0.05, max=1.0, default=0.55)
    roll_jitter: FloatProperty(name="Roll Jitter", min=0.0, max=45.0, default=0.0)
    focal_length: FloatProperty(name="Focal Length", min=1.0, default=50.0, unit="CAMERA")
    camera_source: PointerProperty(name="Camera Source", type=bpy.types.Object)
    camera_vertex_group: StringProperty(name="Vertex Group")
    preview_view: IntProperty(name="View", description="Camera view to show or jump to (0 = first)", min=0,
                              default=0)
    preview_emotion: EnumProperty(
        name="Emotion", description="Emotion of the sample to preview",
        items=tuple((e, e, f"Preview a {e} sample") for e in cfg.EMOTIONS),
        default=cfg.EMOTIONS[0],
    )
    preview_index: IntProperty(
        name="Sample", description="Index of the sample within that emotion, posed exactly as the dataset "
        "would pose it (same seed logic)", min=0, default=0,
    )
    show_landmark_indices: BoolProperty(
        name="Show Indices", description="Draw the landmark numbers beside the previewed landmarks",
        default=False,
    )
    # lighting
    lighting: EnumProperty(
        name="Lighting",
        items=(("hdri", "Studio HDRIs", "Blender's bundled studio HDRIs, random rotation and strength"),
               ("scene", "Scene World", "Use the scene's own world and lights")),
        default="hdri",
    )
    # render & output
    engine: EnumProperty(
        name="Engine",
        items=(("CYCLES", "Cycles", ""), ("BLENDER_EEVEE_NEXT", "EEVEE", "")),
        default="CYCLES",
    )
    device: EnumProperty(
        name="Device",
        description="Cycles device for the dataset's renders (Auto follows the add-on preferences' Render Device)",
        items=_DEVICE_ITEMS,
        default="auto",
    )
    resolution_x: IntProperty(name="Width", min=16, default=512)
    resolution_y: IntProperty(name="Height", min=16, default=512)
    resolution_percentage: IntProperty(name="%", min=1, max=100, default=100, subtype="PERCENTAGE")
    samples: IntProperty(name="Render Samples", description="Samples per pixel, at most (Cycles)", min=1,
                         default=cfg.RenderConfig.samples)
    noise_threshold: FloatProperty(
        name="Noise Threshold", min=0.0, max=1.0, precision=3, step=0.1, default=cfg.RenderConfig.noise_threshold,
        description="Cycles adaptive sampling: a pixel stops once its noise is below this (0 = off)",
    )
    denoise: BoolProperty(name="Denoise", default=True)
    output_dir: StringProperty(name="Output", subtype="DIR_PATH", default="")
    resume: BoolProperty(name="Resume", description="Continue an interrupted dataset in the output folder",
                         default=True)
    # run state (shown by the Generate panel)
    is_running: BoolProperty(default=False, options={"SKIP_SAVE"})
    progress: FloatProperty(default=0.0, min=0.0, max=1.0, subtype="FACTOR", options={"SKIP_SAVE"})
    status: StringProperty(default="", options={"SKIP_SAVE"})


def settings_as_dict(settings: FACSGEN_PG_settings) -> dict:
    """Every stored setting as plain Python (for comparisons, e.g. after a .blend round trip)."""
    def conv(v):
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        if isinstance(v, bpy.types.ID):
            return v.name
        if isinstance(v, bpy.types.bpy_prop_collection):
            return [conv(i) for i in v]
        if hasattr(v, "bl_rna"):
            return {k: conv(getattr(v, k)) for k in v.bl_rna.properties.keys() if k != "rna_type"}
        if hasattr(v, "__len__") and not isinstance(v, str):
            return list(v)
        return v

    return conv(settings)


CLASSES = (
    FACSGEN_AddonPreferences,
    FACSGEN_PG_au_range,
    FACSGEN_PG_emotion,
    FACSGEN_PG_settings,
)


def register_properties():
    bpy.types.Scene.facsgen = PointerProperty(type=FACSGEN_PG_settings)


def unregister_properties():
    if hasattr(bpy.types.Scene, "facsgen"):
        del bpy.types.Scene.facsgen


# --------------------------------------------------------------------------- conversion


def load_preset_into(settings: FACSGEN_PG_settings, preset: cfg.Preset) -> None:
    """Replace the emotion table's AU ranges with ``preset`` (all 8 emotions listed, in order).

    Emotions the preset lists keep their enable / count / weight when the table already
    had them (those are generation settings, not part of a preset); emotions it does not
    list are disabled and get no AUs.
    """
    old = {e.name: (e.enabled, e.weight, e.count) for e in settings.emotions}
    active = settings.active_emotion_index
    settings.emotions.clear()
    for name in cfg.EMOTIONS:
        item = settings.emotions.add()
        item.name = name
        spec = preset.emotions.get(name)
        enabled, weight, count = old.get(name, (True, 1.0, 0))
        item.enabled = enabled and spec is not None
        item.weight, item.count = weight, count
        for au, (lo, hi) in (spec.aus.items() if spec else ()):
            r = item.aus.add()
            r.au = au
            r.max = hi  # max first: the update callbacks keep min <= max
            r.min = lo
            r.max = hi
    settings.active_emotion_index = min(max(active, 0), len(settings.emotions) - 1)
    settings.preset = preset.name
    settings.preset_source = _source_key(preset.source)


def _f(x: float) -> float:
    """A float property's value as the decimal the user typed: Blender stores single precision
    (0.55 -> 0.550000011920929); the shortest decimal that gives the same float32 is what was meant."""
    return float(str(np.float32(x)))


def _source_key(source: str) -> str:
    """A bundled preset's name (``emfacs``), else the file path the preset came from ("" if none)."""
    if not source:
        return ""
    p = Path(source)
    try:
        if p.is_file() and p.resolve().parent == cfg.PRESET_DIR.resolve():
            return p.stem
    except OSError:
        return ""
    return str(p) if p.is_file() else ""


def _table(settings, names=None) -> dict:
    return {e.name: {r.au: (_f(r.min), _f(r.max)) for r in e.aus}
            for e in settings.emotions if names is None or e.name in names or e.aus or e.enabled}


def source_preset(settings: FACSGEN_PG_settings) -> tuple[str, cfg.Preset] | None:
    """(key, preset) of the file the table was loaded from, while the table still equals it exactly."""
    key = settings.preset_source
    if not key:
        return None
    try:
        preset = cfg.load_preset(key)
    except cfg.ConfigError:
        return None
    file_table = {e: dict(spec.aus) for e, spec in preset.emotions.items()}
    if _table(settings, names=set(file_table)) != file_table:
        return None
    return key, preset


def preset_from_settings(settings: FACSGEN_PG_settings, name: str | None = None) -> cfg.Preset:
    data = {
        "name": name or settings.preset or "custom",
        # single precision back to the decimals a preset is written in (same ranges, same samples)
        "emotions": {e.name: {r.au: [_f(r.min), _f(r.max)] for r in e.aus} for e in settings.emotions},
    }
    return cfg.preset_from_dict(data, source="scene settings")


def ensure_emotions(settings: FACSGEN_PG_settings) -> None:
    if not settings.emotions:
        load_preset_into(settings, cfg.load_preset("emfacs"))


def to_config(settings: FACSGEN_PG_settings, out: str | None = None) -> tuple[cfg.GenerationConfig, cfg.Preset]:
    """Scene settings -> (GenerationConfig, Preset); raises ConfigError on bad values."""
    ensure_emotions(settings)
    src = source_preset(settings)
    if src is not None:  # unchanged bundled/user preset: the same config as `facsgen generate --preset KEY`
        preset_key, preset = src
    else:
        preset = preset_from_settings(settings)
        preset_key = preset.name
    enabled = tuple(e.name for e in settings.emotions if e.enabled)
    if not enabled:
        raise cfg.ConfigError("no emotion is enabled")
    if settings.distribution == "counts":
        counts = {e.name: e.count for e in settings.emotions if e.enabled}
        zero = [name for name, n in counts.items() if n < 1]
        if zero:
            raise cfg.ConfigError(f"per-emotion counts: {', '.join(zero)} enabled with a count of 0 "
                                  "(give a count or disable it)")
        weights: dict[str, float] = {}
        total = sum(counts.values())
    else:
        counts = {}
        weights = {e.name: _f(e.weight) for e in settings.emotions if e.enabled}
        if sum(weights.values()) <= 0:
            raise cfg.ConfigError("every enabled emotion has weight 0")
        if len(set(weights.values())) == 1:
            weights = {}  # equal weights = the CLI's even split: keep the config identical to `facsgen generate`
        total = settings.count
    prefs = _addon_prefs()
    out_dir = out or (bpy.path.abspath(settings.output_dir) if settings.output_dir else "")
    if not out_dir:
        out_dir = bpy.path.abspath(prefs.default_output_dir) if prefs else ""
    if not out_dir:
        raise cfg.ConfigError("no output folder set (Render & Output > Output)")
    if out_dir.startswith("//"):  # relative to an unsaved .blend: bpy.path.abspath left it as is
        raise cfg.ConfigError(f"output folder {out_dir!r} is relative to the .blend file, which is not saved yet: "
                              "save the file or choose an absolute folder")
    device = settings.device
    if device == "auto" and prefs is not None and prefs.render_device != "AUTO":
        device = prefs.render_device.lower()
    conf = cfg.GenerationConfig(
        out=out_dir,
        count=total,
        seed=settings.seed,
        preset=preset_key,
        emotions=enabled,
        emotion_counts=counts,
        emotion_weights=weights,
        sampling=settings.sampling,
        grid_steps=settings.grid_steps,
        character=settings.character.name if settings.character else None,
        identity=settings.identity,
        allow_drop_unsupported=settings.allow_drop_unsupported,
        resume=settings.resume,
        camera=cfg.CameraConfig(
            layout=settings.camera_layout,
            views=settings.views,
            yaw_range=(_f(settings.yaw_min), _f(settings.yaw_max)),
            pitch_range=(_f(settings.pitch_min), _f(settings.pitch_max)),
            distance=_f(settings.distance) or None,
            face_fraction=_f(settings.face_fraction),
            roll_jitter=_f(settings.roll_jitter),
            focal_length=_f(settings.focal_length),
            source_object=settings.camera_source.name if settings.camera_source else None,
            vertex_group=settings.camera_vertex_group or None,
        ),
        render=cfg.RenderConfig(
            engine=settings.engine,
            device=device,
            resolution=(settings.resolution_x, settings.resolution_y),
            resolution_percentage=settings.resolution_percentage,
            samples=settings.samples,
            noise_threshold=_f(settings.noise_threshold),
            denoise=settings.denoise,
        ),
        lighting=cfg.LightingConfig(mode=settings.lighting),
    )
    return conf, preset
