# SPDX-License-Identifier: GPL-3.0-or-later
"""Scene settings (one PointerProperty ``Scene.facsgen``) and add-on preferences.

``to_config`` / ``from_config`` convert between these properties and the bpy-free
:class:`core.config.GenerationConfig` that the pipeline, the CLI and the operators share.
"""

from __future__ import annotations

import bpy
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


def _addon_prefs(context=None):
    context = context or bpy.context
    addon = context.preferences.addons.get(__package__)
    return addon.preferences if addon else None


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
        items=(
            ("AUTO", "Auto", "GPU when one is configured in Preferences > System, else CPU"),
            ("CPU", "CPU", "Always render on the CPU"),
            ("GPU", "GPU", "Render on the GPU (fails if none is available)"),
        ),
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


class FACSGEN_PG_au_range(bpy.types.PropertyGroup):
    au: StringProperty(name="AU", description="FACS action unit, e.g. AU12 or AU12_L")
    min: FloatProperty(name="Min", description="Lowest intensity (0 = absent, 1 = FACS E)", min=0.0, max=1.0,
                       default=0.0, subtype="FACTOR")
    max: FloatProperty(name="Max", description="Highest intensity (0 = absent, 1 = FACS E)", min=0.0, max=1.0,
                       default=1.0, subtype="FACTOR")


class FACSGEN_PG_emotion(bpy.types.PropertyGroup):
    name: StringProperty(name="Emotion")
    enabled: BoolProperty(name="Enabled", description="Generate samples of this emotion", default=True)
    weight: FloatProperty(name="Weight", description="Share of the total sample count", min=0.0, default=1.0)
    count: IntProperty(name="Count", description="Explicit number of samples (0 = share of the total by weight)",
                       min=0, default=0)
    aus: CollectionProperty(type=FACSGEN_PG_au_range)
    active_au_index: IntProperty(default=0)


class FACSGEN_PG_settings(bpy.types.PropertyGroup):
    character: PointerProperty(
        name="Character", type=bpy.types.Object,
        description="Mesh whose face is animated (empty = the built-in head)",
        poll=lambda self, obj: obj.type == "MESH",
    )
    preset: StringProperty(name="Preset", description="Preset the emotion table was loaded from", default="emfacs")
    emotions: CollectionProperty(type=FACSGEN_PG_emotion)
    active_emotion_index: IntProperty(default=0)
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
    preview_view: IntProperty(name="View", min=0, default=0)
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
        items=(("auto", "Auto", ""), ("cpu", "CPU", ""), ("gpu", "GPU", "")),
        default="auto",
    )
    resolution_x: IntProperty(name="Width", min=16, default=512)
    resolution_y: IntProperty(name="Height", min=16, default=512)
    resolution_percentage: IntProperty(name="%", min=1, max=100, default=100, subtype="PERCENTAGE")
    samples: IntProperty(name="Render Samples", min=1, default=16)
    denoise: BoolProperty(name="Denoise", default=True)
    output_dir: StringProperty(name="Output", subtype="DIR_PATH", default="")
    resume: BoolProperty(name="Resume", description="Continue an interrupted dataset in the output folder",
                         default=True)
    # run state (shown by the Generate panel)
    is_running: BoolProperty(default=False, options={"SKIP_SAVE"})
    progress: FloatProperty(default=0.0, min=0.0, max=1.0, subtype="FACTOR", options={"SKIP_SAVE"})
    status: StringProperty(default="", options={"SKIP_SAVE"})


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
    """Replace the emotion table with ``preset`` (all 8 emotions listed, in order)."""
    settings.emotions.clear()
    for name in cfg.EMOTIONS:
        item = settings.emotions.add()
        item.name = name
        spec = preset.emotions.get(name)
        item.enabled = spec is not None
        for au, (lo, hi) in (spec.aus.items() if spec else ()):
            r = item.aus.add()
            r.au = au
            r.min, r.max = lo, hi
    settings.preset = preset.name


def preset_from_settings(settings: FACSGEN_PG_settings, name: str | None = None) -> cfg.Preset:
    data = {
        "name": name or settings.preset or "custom",
        "emotions": {e.name: {r.au: [r.min, r.max] for r in e.aus} for e in settings.emotions},
    }
    return cfg.preset_from_dict(data, source="scene settings")


def ensure_emotions(settings: FACSGEN_PG_settings) -> None:
    if not settings.emotions:
        load_preset_into(settings, cfg.load_preset("emfacs"))


def to_config(settings: FACSGEN_PG_settings, out: str | None = None) -> tuple[cfg.GenerationConfig, cfg.Preset]:
    """Scene settings -> (GenerationConfig, Preset); raises ConfigError on bad values."""
    ensure_emotions(settings)
    preset = preset_from_settings(settings)
    enabled = tuple(e.name for e in settings.emotions if e.enabled)
    if not enabled:
        raise cfg.ConfigError("no emotion is enabled")
    counts = {e.name: e.count for e in settings.emotions if e.enabled and e.count > 0}
    weights = {e.name: e.weight for e in settings.emotions if e.enabled}
    out_dir = out or (bpy.path.abspath(settings.output_dir) if settings.output_dir else "")
    if not out_dir:
        prefs = _addon_prefs()
        out_dir = bpy.path.abspath(prefs.default_output_dir) if prefs else ""
    if not out_dir:
        raise cfg.ConfigError("no output folder set")
    conf = cfg.GenerationConfig(
        out=out_dir,
        count=sum(counts.values()) if len(counts) == len(enabled) else settings.count,
        seed=settings.seed,
        preset=preset.name,
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
            yaw_range=(settings.yaw_min, settings.yaw_max),
            pitch_range=(settings.pitch_min, settings.pitch_max),
            distance=settings.distance or None,
            face_fraction=settings.face_fraction,
            roll_jitter=settings.roll_jitter,
            focal_length=settings.focal_length,
            source_object=settings.camera_source.name if settings.camera_source else None,
            vertex_group=settings.camera_vertex_group or None,
        ),
        render=cfg.RenderConfig(
            engine=settings.engine,
            device=settings.device,
            resolution=(settings.resolution_x, settings.resolution_y),
            resolution_percentage=settings.resolution_percentage,
            samples=settings.samples,
            denoise=settings.denoise,
        ),
        lighting=cfg.LightingConfig(mode=settings.lighting),
    )
    return conf, preset
