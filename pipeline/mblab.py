# SPDX-License-Identifier: GPL-3.0-or-later
"""MB-Lab specifics: the FACS slider rig and MB-Lab's AU -> expression shape-key table.

Nothing here ships or copies MB-Lab data. MB-Lab's own table (``data/face_rig/facs_au.json``)
is *read* from the installed MB-Lab add-on when there is one (or from the file named by the
environment variable ``FACSGEN_MBLAB_FACS_JSON`` / :data:`FACS_JSON_OVERRIDE`); otherwise the
project's own table ``au_presets/mblab_shapekeys.json`` is used.

MB-Lab's table format (``facs_au.json``)::

    {"Divisor": {"au_value": 0.377, "gz_value": 0.189},
     "AU01": {"Expressions_browsMidVert_max": 0.546296, ...}, ...,
     "GZ0H": {...}, "GZ0V": {...}}

MB-Lab's rig drives each shape key with ``value = sum_AU slider_x * weight / au_value``, so
at intensity 1 (slider at ``au_value``) a key moves by ``weight``; the gaze entries (GZ*) are
not action units and are ignored here.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import bpy

#: MB-Lab's slider travel for intensity 1.0 (``Divisor.au_value`` of facs_au.json).
AU_VALUE = 0.377

ENV_FACS_JSON = "FACSGEN_MBLAB_FACS_JSON"

#: Explicit path of an MB-Lab ``facs_au.json`` (set by code, e.g. tests or a preference);
#: takes precedence over the environment variable and the installed add-on.
FACS_JSON_OVERRIDE: str | None = None

OWN_TABLE = Path(__file__).resolve().parent.parent / "au_presets" / "mblab_shapekeys.json"

EXPRESSION_PREFIX = "Expressions_"
_EXPR_KEY_RE = re.compile(r"^Expressions_\w+_(?:max|min)$")
_EXPR_SIDE_RE = re.compile(r"^Expressions_\w*?[a-z0-9]([LR])_(?:max|min)$")

#: ``facs_rig_slider_AU12.<mesh>`` (MB-Lab) or the seed script's renamed ``AU12`` / ``AU1`` sliders.
SLIDER_NAME_RE = re.compile(r"^(?:facs_rig_slider_)?(AU\d{1,2}|GZ0[HV])(?:\.(?P<mesh>.+))?$", re.IGNORECASE)
_DEDUP_RE = re.compile(r"\.\d{3,}$")


class MBLabTableError(ValueError):
    """An MB-Lab AU table could not be read (the message names the file)."""


@dataclass
class AUTable:
    """AU -> {shape key name: value at intensity 1}, with where it came from."""

    name: str
    source: str
    aus: dict[str, dict[str, float]] = field(default_factory=dict)
    from_mblab: bool = False


# --------------------------------------------------------------------------- tables


def is_expression_key(name: str) -> bool:
    return bool(_EXPR_KEY_RE.match(name))


def expression_key_side(name: str) -> str | None:
    """``"L"`` / ``"R"`` for one-sided MB-Lab keys (``Expressions_mouthSmileL_max``), else None."""
    m = _EXPR_SIDE_RE.match(name)
    return m.group(1) if m else None


def load_facs_au_json(path: str | Path) -> AUTable:
    """Read MB-Lab's ``facs_au.json`` into an :class:`AUTable` (weights per unit intensity)."""
    from ..core.config import ConfigError, canonical_au

    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MBLabTableError(f"MB-Lab FACS table not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MBLabTableError(f"MB-Lab FACS table {path} cannot be read: {exc}") from None
    if not isinstance(data, dict):
        raise MBLabTableError(f"MB-Lab FACS table {path}: top level must be an object")
    aus: dict[str, dict[str, float]] = {}
    for code, weights in data.items():
        if not re.match(r"^AU\d+$", code):
            continue  # "Divisor", gaze "GZ0H"/"GZ0V"
        try:
            au = canonical_au(code)
        except ConfigError:
            continue  # an AU this project does not know
        if not isinstance(weights, dict):
            raise MBLabTableError(f"MB-Lab FACS table {path}: {code} must map shape keys to weights")
        try:
            aus[au] = {str(k): float(w) for k, w in weights.items()}
        except (TypeError, ValueError):
            raise MBLabTableError(f"MB-Lab FACS table {path}: {code} has a non-numeric weight") from None
    if not aus:
        raise MBLabTableError(f"MB-Lab FACS table {path}: no AU entries found")
    return AUTable(name="MB-Lab facs_au.json", source=str(path), aus=aus, from_mblab=True)


def load_own_table(path: str | Path = OWN_TABLE) -> AUTable:
    """The project's own AU -> MB-Lab expression-key table (``au_presets/mblab_shapekeys.json``)."""
    from .characters import load_au_table

    return load_au_table(path)


def _installed_mblab_dirs() -> list[Path]:
    """Folders of installed add-ons / extensions whose module name looks like MB-Lab."""
    try:
        import addon_utils
    except ImportError:
        return []
    dirs = []
    try:
        mods = addon_utils.modules(refresh=False)
    except Exception:  # noqa: BLE001 - a broken add-on elsewhere must not break us
        return []
    for mod in mods:
        name = getattr(mod, "__name__", "").lower().replace("-", "_")
        if "mb_lab" in name or "mblab" in name or "manuelbastionilab" in name:
            f = getattr(mod, "__file__", None)
            if f:
                dirs.append(Path(f).resolve().parent)
    return dirs


def find_facs_au_json() -> tuple[Path | None, str]:
    """Locate MB-Lab's ``facs_au.json``: (path or None, how it was found / why not).

    Order: :data:`FACS_JSON_OVERRIDE`, ``$FACSGEN_MBLAB_FACS_JSON``, the installed MB-Lab
    add-on (``<addon>/data/face_rig/facs_au.json``). An explicit path that does not exist
    raises :class:`MBLabTableError` (a typo must not silently fall back to another table).
    """
    for label, value in (("override", FACS_JSON_OVERRIDE), (ENV_FACS_JSON, os.environ.get(ENV_FACS_JSON))):
        if value:
            p = Path(value).expanduser()
            if not p.is_file():
                raise MBLabTableError(f"{label} names an MB-Lab FACS table that does not exist: {p}")
            return p, label
    for d in _installed_mblab_dirs():
        p = d / "data" / "face_rig" / "facs_au.json"
        if p.is_file():
            return p, f"installed MB-Lab add-on ({d})"
    return None, "MB-Lab is not installed"


def mblab_table(choice: str | Path | None = None) -> tuple[AUTable, str]:
    """The AU table to use for MB-Lab expression keys, and a note on the choice.

    ``choice``: None/"auto" = MB-Lab's own table when found, else the project's; "own" = the
    project's table; a path = that ``facs_au.json`` (or a table in the project's schema).
    """
    if choice is not None and str(choice) not in ("auto", "own"):
        p = Path(choice)
        if p.suffix == ".json" and p.is_file():
            try:
                data = json.loads(p.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise MBLabTableError(f"AU table {p} cannot be read: {exc}") from None
            if isinstance(data, dict) and "aus" in data:
                return load_own_table(p), f"table {p}"
        return load_facs_au_json(p), f"MB-Lab table {p}"
    if choice != "own":
        path, how = find_facs_au_json()
        if path is not None:
            try:
                return load_facs_au_json(path), f"MB-Lab's table from {how}"
            except MBLabTableError as exc:
                if how.startswith("installed"):
                    return load_own_table(), f"own table ({exc}; using the project's table)"
                raise
        note = f"project's own table ({how})"
    else:
        note = "project's own table (requested)"
    return load_own_table(), note


# --------------------------------------------------------------------------- slider rig


@dataclass
class Slider:
    code: str  # "AU12", "GZ0H"
    obj: bpy.types.Object
    scale: float  # local X at intensity 1.0
    rest: float = 0.0


def slider_code(name: str) -> str | None:
    """``facs_rig_slider_AU12.MBlab_female`` / ``AU12`` / ``AU1`` -> ``AU12``; GZ0H/GZ0V kept."""
    m = SLIDER_NAME_RE.match(name)
    if not m:
        return None
    code = m.group(1).upper()
    if code.startswith("AU"):
        code = f"AU{int(code[2:]):02d}"
    return code


def slider_mesh_suffix(name: str) -> str | None:
    m = SLIDER_NAME_RE.match(name)
    return m.group("mesh") if m else None


def suffix_matches(suffix: str | None, mesh_name: str) -> bool:
    """Does a slider's ``.<mesh>`` suffix name this mesh (tolerating Blender's ``.001`` dedup)?"""
    if suffix is None:
        return False
    if suffix == mesh_name:
        return True
    return _DEDUP_RE.sub("", suffix) == _DEDUP_RE.sub("", mesh_name)


def slider_scale(obj: bpy.types.Object) -> float:
    """Local X travel for intensity 1: the LIMIT_LOCATION max X when set, else MB-Lab's 0.377."""
    for c in obj.constraints:
        if c.type == "LIMIT_LOCATION" and c.use_max_x and c.max_x > 1e-6:
            return float(c.max_x)
    return AU_VALUE


def driver_sliders(key: bpy.types.Key) -> tuple[dict[str, list[bpy.types.Object]], list]:
    """Objects whose local X location drives this Key's shape keys, by AU/gaze code.

    Returns ({code: [objects]}, [driver F-curves that read a slider]). The code comes from the
    object's name (``facs_rig_slider_AU12.<mesh>`` or ``AU12``), else from the variable name.
    """
    found: dict[str, list[bpy.types.Object]] = {}
    fcurves = []
    ad = key.animation_data if key is not None else None
    if ad is None:
        return found, fcurves
    for fc in ad.drivers:
        if not fc.data_path.startswith("key_blocks["):
            continue
        hit = False
        for var in fc.driver.variables:
            if var.type != "TRANSFORMS":
                continue
            for t in var.targets:
                ob = t.id
                if ob is None or not isinstance(ob, bpy.types.Object) or t.transform_type != "LOC_X":
                    continue
                code = slider_code(ob.name) or slider_code(var.name)
                if code is None:
                    continue
                lst = found.setdefault(code, [])
                if ob not in lst:
                    lst.append(ob)
                hit = True
        if hit:
            fcurves.append(fc)
    return found, fcurves


def find_rig_sliders(mesh_obj: bpy.types.Object) -> tuple[dict[str, Slider], list[str]]:
    """The FACS sliders that drive ``mesh_obj``'s shape keys: ({code: Slider}, notes).

    The drivers are the ground truth (a slider only counts if it moves this mesh); when two
    objects claim one AU, the one whose ``.<mesh>`` suffix names this mesh wins.
    """
    notes: list[str] = []
    key = mesh_obj.data.shape_keys if mesh_obj.type == "MESH" else None
    found, _ = driver_sliders(key)
    sliders: dict[str, Slider] = {}
    for code, objs in sorted(found.items()):
        if len(objs) > 1:
            own = [o for o in objs if suffix_matches(slider_mesh_suffix(o.name), mesh_obj.name)]
            chosen = own[0] if own else objs[0]
            notes.append(f"{code}: several slider objects drive it ({', '.join(o.name for o in objs)}); "
                         f"using {chosen.name}")
        else:
            chosen = objs[0]
        rest = 0.0
        for c in chosen.constraints:
            if c.type == "LIMIT_LOCATION" and c.use_min_x and c.min_x > 0:
                rest = float(c.min_x)
        sliders[code] = Slider(code=code, obj=chosen, scale=slider_scale(chosen), rest=rest)
    return sliders, notes


def python_drivers_blocked(fcurves) -> bool:
    """True when some driver needs Python and Python auto-execution is blocked for this file."""
    if not getattr(bpy.app, "autoexec_fail", False):
        return False
    return any(not fc.driver.is_simple_expression and fc.driver.type == "SCRIPTED" for fc in fcurves)
