# SPDX-License-Identifier: GPL-3.0-or-later
"""Generation configuration and emotion/AU presets (bpy-free).

A preset is JSON::

    {
      "name": "EMFACS prototypes",
      "description": "...",
      "emotions": {
        "Joy":     {"AU06": [0.4, 0.9], "AU12": [0.5, 1.0]},
        "Neutral": {}
      }
    }

AU names are canonicalised to ``AU`` + two digits (``AU1`` -> ``AU01``), with an
optional ``_L`` / ``_R`` suffix for the subject's own left / right side.
Every error is a :class:`ConfigError` whose message names the offending item.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

EMOTIONS: tuple[str, ...] = ("Joy", "Sadness", "Anger", "Fear", "Disgust", "Surprise", "Neutral", "Contempt")

#: FACS action units the project knows about (numbers).
KNOWN_AU_NUMBERS: tuple[int, ...] = (
    1, 2, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 20, 22, 23, 24, 25, 26, 27, 28, 43, 45,
)

PRESET_DIR = Path(__file__).resolve().parent.parent / "au_presets"

_AU_RE = re.compile(r"^\s*(?:AU)?\s*0*(\d{1,2})\s*(?:[_\s]?([LR]))?\s*$", re.IGNORECASE)


class ConfigError(ValueError):
    """Invalid configuration or preset; the message names the problem."""


def canonical_au(name: str) -> str:
    """Return the canonical AU name (``AU01``, ``AU12_L``) or raise ConfigError."""
    m = _AU_RE.match(str(name))
    if not m:
        raise ConfigError(f"unknown AU name {name!r} (expected e.g. 'AU12', 'AU12_L')")
    num = int(m.group(1))
    if num not in KNOWN_AU_NUMBERS:
        raise ConfigError(
            f"unknown AU name {name!r}: AU{num:02d} is not a supported FACS action unit "
            f"(supported: {', '.join(f'AU{n:02d}' for n in KNOWN_AU_NUMBERS)})"
        )
    side = m.group(2)
    return f"AU{num:02d}" + (f"_{side.upper()}" if side else "")


def canonical_emotion(name: str) -> str:
    for e in EMOTIONS:
        if e.lower() == str(name).strip().lower():
            return e
    raise ConfigError(f"unknown emotion {name!r} (expected one of: {', '.join(EMOTIONS)})")


def au_sort_key(au: str) -> tuple[int, str]:
    base, _, side = au.partition("_")
    return (int(base[2:]), side)


@dataclass
class EmotionSpec:
    name: str
    aus: dict[str, tuple[float, float]] = field(default_factory=dict)
    enabled: bool = True
    weight: float = 1.0
    count: int | None = None  # explicit number of samples; None = share of the total by weight


@dataclass
class Preset:
    name: str
    emotions: dict[str, EmotionSpec]
    description: str = ""
    source: str = ""

    def au_columns(self) -> list[str]:
        """Every AU named anywhere in the preset, sorted (the CSV's AU columns)."""
        aus = {au for spec in self.emotions.values() for au in spec.aus}
        return sorted(aus, key=au_sort_key)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "emotions": {
                e: {au: [lo, hi] for au, (lo, hi) in sorted(s.aus.items(), key=lambda kv: au_sort_key(kv[0]))}
                for e, s in self.emotions.items()
            },
        }


def _validate_range(where: str, value) -> tuple[float, float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value, value]
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ConfigError(f"{where}: expected [min, max], got {value!r}")
    try:
        lo, hi = float(value[0]), float(value[1])
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: min and max must be numbers, got {value!r}") from None
    if not (0.0 <= lo <= 1.0) or not (0.0 <= hi <= 1.0):
        raise ConfigError(f"{where}: intensities must lie in [0, 1], got [{lo}, {hi}]")
    if lo > hi:
        raise ConfigError(f"{where}: min {lo} > max {hi}")
    return lo, hi


def preset_from_dict(data, source: str = "<dict>") -> Preset:
    if not isinstance(data, dict):
        raise ConfigError(f"preset {source}: top level must be a JSON object")
    emotions_raw = data.get("emotions")
    if not isinstance(emotions_raw, dict):
        raise ConfigError(f"preset {source}: missing 'emotions' object")
    emotions: dict[str, EmotionSpec] = {}
    for ename, aus_raw in emotions_raw.items():
        try:
            emo = canonical_emotion(ename)
        except ConfigError as exc:
            raise ConfigError(f"preset {source}: {exc}") from None
        if not isinstance(aus_raw, dict):
            raise ConfigError(f"preset {source}: emotion {ename!r} must map AU names to [min, max]")
        aus: dict[str, tuple[float, float]] = {}
        for au_name, rng in aus_raw.items():
            try:
                au = canonical_au(au_name)
            except ConfigError as exc:
                raise ConfigError(f"preset {source}: emotion {emo}: {exc}") from None
            if au in aus:
                raise ConfigError(f"preset {source}: emotion {emo}: AU {au} listed twice")
            aus[au] = _validate_range(f"preset {source}: emotion {emo} {au}", rng)
        emotions[emo] = EmotionSpec(emo, aus)
    return Preset(
        name=str(data.get("name", Path(source).stem)),
        emotions=emotions,
        description=str(data.get("description", "")),
        source=source,
    )


def bundled_presets() -> dict[str, Path]:
    return {p.stem: p for p in sorted(PRESET_DIR.glob("*.json")) if not p.stem.startswith("_") and _is_emotion_preset(p)}


def _is_emotion_preset(path: Path) -> bool:
    try:
        return "emotions" in json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False


def load_preset(name_or_path: str | Path) -> Preset:
    """Load a bundled preset by name (``emfacs``) or a JSON file by path."""
    p = Path(name_or_path)
    if not p.suffix and not p.exists():
        bundled = bundled_presets()
        if str(name_or_path) not in bundled:
            raise ConfigError(
                f"unknown preset {str(name_or_path)!r} (bundled: {', '.join(bundled) or 'none'}; or give a .json path)"
            )
        p = bundled[str(name_or_path)]
    if not p.is_file():
        raise ConfigError(f"preset file not found: {p}")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"preset {p}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"preset {p}: cannot be read ({exc})") from None
    return preset_from_dict(data, source=str(p))


def save_preset(preset: Preset, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(preset.to_dict(), indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


# --------------------------------------------------------------------------- generation config


@dataclass
class CameraConfig:
    layout: str = "fibonacci"  # "fibonacci" | "grid" | "object"
    views: int = 8
    yaw_range: tuple[float, float] = (-60.0, 60.0)  # degrees, + = camera to the subject's left
    pitch_range: tuple[float, float] = (-20.0, 30.0)  # degrees, + = camera above the face
    distance: float | None = None  # metres from the point between the eyes; None = use face_fraction
    face_fraction: float = 0.55  # face height / image height when distance is None
    roll_jitter: float = 0.0  # degrees, uniform in [-j, j]
    focal_length: float = 50.0  # mm
    sensor_width: float = 36.0  # mm
    sensor_fit: str = "AUTO"  # AUTO | HORIZONTAL | VERTICAL
    source_object: str | None = None  # layout "object": cameras at this object's vertices
    vertex_group: str | None = None  # ... optionally only this vertex group


#: Render device choices: auto = a GPU when Cycles has one, else the CPU; gpu = the same but an
#: error without a GPU; a backend name = the GPU through that Cycles backend only.
DEVICES = ("auto", "cpu", "gpu", "optix", "cuda", "hip", "metal", "oneapi")

#: Menu label and tooltip of each device (the N-panel and the add-on preferences).
DEVICE_INFO = {
    "auto": ("Auto", "A GPU when Cycles has one (OptiX, then CUDA, HIP, Metal, oneAPI; or the devices set in "
                     "Preferences > System), else the CPU"),
    "cpu": ("CPU", "Always render on the CPU"),
    "gpu": ("GPU", "Like Auto, but an error when there is no GPU"),
    "optix": ("OptiX", "NVIDIA GPUs through OptiX only (an error naming the GPUs found when it has none)"),
    "cuda": ("CUDA", "NVIDIA GPUs through CUDA only (an error naming the GPUs found when it has none)"),
    "hip": ("HIP", "AMD GPUs through HIP only (an error naming the GPUs found when it has none)"),
    "metal": ("Metal", "Apple GPUs through Metal only (an error naming the GPUs found when it has none)"),
    "oneapi": ("oneAPI", "Intel GPUs through oneAPI only (an error naming the GPUs found when it has none)"),
}


@dataclass
class RenderConfig:
    engine: str = "CYCLES"  # CYCLES | BLENDER_EEVEE_NEXT
    device: str = "auto"  # auto | cpu | gpu | optix | cuda | hip | metal | oneapi
    resolution: tuple[int, int] = (512, 512)
    resolution_percentage: int = 100
    # Cycles: at most this many samples per pixel; adaptive sampling stops a pixel once its noise
    # is below ``noise_threshold`` (0 = adaptive sampling off, every pixel gets ``samples``).
    # 28 / 0.02, not Blender's 4096 / 0.01 or the 16 spp people use for datasets: with blue-noise
    # sampling and OIDN's FAST prefilter this is as close to a converged render as 16 spp with
    # Blender's default settings, in about half the time (issue 8, benchmarks/throughput.py
    # --quality; pipeline.render_setup.DEFAULT_SAMPLES / NOISE_THRESHOLD)
    samples: int = 28
    noise_threshold: float = 0.02
    denoise: bool = True


@dataclass
class LightingConfig:
    mode: str = "hdri"  # "hdri" | "scene"
    strength_range: tuple[float, float] = (0.7, 1.3)
    hdris: tuple[str, ...] = ()  # empty = all of Blender's bundled studio HDRIs


@dataclass
class GenerationConfig:
    out: str = "dataset"
    count: int = 16
    seed: int = 0
    preset: str = "emfacs"
    emotions: tuple[str, ...] = EMOTIONS  # which emotions to generate
    emotion_counts: dict[str, int] = field(default_factory=dict)  # explicit per-emotion counts
    emotion_weights: dict[str, float] = field(default_factory=dict)
    sampling: str = "random"  # "random" | "grid"
    grid_steps: int = 3
    character: str | None = None  # object name; None = built-in head
    blend: str | None = None
    identity: bool = True  # random identity + skin tone per sample (built-in head)
    allow_drop_unsupported: bool = False
    shard: tuple[int, int] = (0, 1)
    resume: bool = False
    camera: CameraConfig = field(default_factory=CameraConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    lighting: LightingConfig = field(default_factory=LightingConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> GenerationConfig:
        d = dict(d)
        cam = CameraConfig(**_tuples(d.pop("camera", {}) or {}))
        ren = RenderConfig(**_tuples(d.pop("render", {}) or {}))
        lig = LightingConfig(**_tuples(d.pop("lighting", {}) or {}))
        return cls(**_tuples(d), camera=cam, render=ren, lighting=lig)


def _tuples(d: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
