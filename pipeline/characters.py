# SPDX-License-Identifier: GPL-3.0-or-later
"""Character adapters: one interface to pose any supported face with FACS action units.

``detect_adapter(obj)`` picks the adapter for a mesh (in this order):

1. ``builtin``          the extension's own head (custom property ``facsgen_builtin``)
2. ``mblab_rig``        MB-Lab's FACS slider rig (``facs_rig_slider_AU12.<mesh>`` objects, or the
                        seed script's renamed ``AU12`` sliders) driving ``Expressions_*`` keys
3. ``mblab_shapekeys``  MB-Lab ``Expressions_*_max/_min`` shape keys without the rig, mapped with
                        MB-Lab's own ``facs_au.json`` when MB-Lab is installed, else with the
                        project's ``au_presets/mblab_shapekeys.json``
4. ``arkit``            ARKit-52 blendshapes (name variants accepted), ``au_presets/arkit52.json``
5. ``builtin``          any mesh whose shape keys are named after AUs (``AU01``, ``AU12_L``)

Every adapter has ``kind``, ``obj`` (the mesh), ``supported_aus()``, ``set_aus(values)`` (AUs
missing from ``values`` go to 0), ``reset()``, ``head_matrix_world()`` and ``describe()``.
AU names are canonical (``AU12``, ``AU12_L``: ``_L``/``_R`` = the subject's own left/right).
An AU the character cannot express is never skipped: ``set_aus`` raises :class:`CharacterError`
naming it and the character.

"Neutral" means every expression control the adapter knows at 0 (all MB-Lab ``Expressions_*``
keys, all ARKit blendshapes, all ``AUxx`` keys, all FACS sliders and gaze sliders at rest);
other shape keys (identity, correctives) are left alone. Shape keys an adapter writes that
carry drivers (e.g. MB-Lab keys whose sliders were deleted) get those drivers muted on the
first write, because a driver would overwrite the value; ``save_state`` / ``restore_state``
undo everything an adapter changed.

Unilateral AUs: a table entry whose targets are all one-sided (``browOuterUpLeft`` +
``browOuterUpRight``) also yields ``AU02_L`` / ``AU02_R`` (the one side's targets). A bilateral
request on a character that only has one-sided keys moves both sides; a one-sided request
on a character with only a bilateral control is unsupported.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import bpy
import numpy as np
from mathutils import Matrix

from ..core.config import ConfigError, au_sort_key, canonical_au
from . import mblab

PRESET_DIR = Path(__file__).resolve().parent.parent / "au_presets"
ARKIT_TABLE = PRESET_DIR / "arkit52.json"

KINDS = ("builtin", "mblab_rig", "mblab_shapekeys", "arkit")

#: The 52 ARKit blendshape names (Apple ARFaceAnchor.BlendShapeLocation); Left = subject's left.
ARKIT_NAMES: tuple[str, ...] = (
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight",
    "eyeBlinkLeft", "eyeBlinkRight", "eyeLookDownLeft", "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight",
    "eyeLookOutLeft", "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft", "eyeSquintRight",
    "eyeWideLeft", "eyeWideRight",
    "jawForward", "jawLeft", "jawOpen", "jawRight",
    "mouthClose", "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft", "mouthFrownRight", "mouthFunnel",
    "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthPressLeft", "mouthPressRight",
    "mouthPucker", "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthSmileLeft", "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthUpperUpLeft", "mouthUpperUpRight",
    "noseSneerLeft", "noseSneerRight",
    "tongueOut",
)

_AU_KEY_RE = re.compile(r"^AU\d{1,2}(?:_[LR])?$")
HEAD_BONE_NAMES = ("head", "Head", "HEAD")


class CharacterError(ValueError):
    """A character cannot be found, recognised or posed as asked; the message says why."""


# --------------------------------------------------------------------------- helpers


def _sorted_aus(aus) -> list[str]:
    return sorted(aus, key=au_sort_key)


def _au_list(aus, limit: int = 0) -> str:
    items = _sorted_aus(aus)
    if limit and len(items) > limit:
        return ", ".join(items[:limit]) + f", ... ({len(items)} in all)"
    return ", ".join(items) if items else "none"


def _side_of_au(au: str) -> str | None:
    return au[-1] if au.endswith(("_L", "_R")) else None


def load_au_table(path: str | Path) -> mblab.AUTable:
    """Read an AU -> shape-key table in the project's schema (see the ``_doc`` of the files)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CharacterError(f"AU table {path} cannot be read: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("aus"), dict):
        raise CharacterError(f"AU table {path}: expected an object with an 'aus' object")
    aus: dict[str, dict[str, float]] = {}
    for name, targets in data["aus"].items():
        try:
            au = canonical_au(name)
        except ConfigError as exc:
            raise CharacterError(f"AU table {path}: {exc}") from None
        if not isinstance(targets, dict) or not targets:
            raise CharacterError(f"AU table {path}: {name} must map shape keys to weights")
        try:
            aus[au] = {str(k): float(w) for k, w in targets.items()}
        except (TypeError, ValueError):
            raise CharacterError(f"AU table {path}: {name} has a non-numeric weight") from None
    return mblab.AUTable(name=str(data.get("name", path.stem)), source=str(path), aus=aus)


def expand_unilateral(aus: dict[str, dict[str, float]], side_of) -> dict[str, dict[str, float]]:
    """Add ``AUxx_L`` / ``AUxx_R`` for bilateral entries whose targets are all one-sided."""
    out = dict(aus)
    for au, targets in aus.items():
        if _side_of_au(au):
            continue
        sides = {k: side_of(k) for k in targets}
        if not targets or any(s is None for s in sides.values()) or set(sides.values()) != {"L", "R"}:
            continue
        for side in ("L", "R"):
            out.setdefault(f"{au}_{side}", {k: w for k, w in targets.items() if sides[k] == side})
    return out


# ARKit name variants ------------------------------------------------------------------------

_SIDE_WORD = {"l": "L", "left": "L", "r": "R", "right": "R"}
_PREFIX_RE = re.compile(r"^[A-Za-z]\d{1,3}_")  # Character Creator "A01_", "A38_"
_SIDE_SUFFIX_WORD_RE = re.compile(r"(?:[_\-\s.]?)(Left|Right|left|right|LEFT|RIGHT)$")
_SIDE_SUFFIX_LETTER_RE = re.compile(r"(?:[_\-\s.]([LlRr])|(?<=[a-z0-9])([LR]))$")


def arkit_key(name: str) -> tuple[str, str | None]:
    """Normalise a blendshape name to (base, side): ``blendShape1.mouthSmile_L``,
    ``A38_Mouth_Smile_Left``, ``MouthSmileLeft``, ``mouthSmileL`` -> ("mouthsmile", "L")."""
    s = name.strip()
    side = None
    parts = s.split(".")
    if len(parts) > 1 and parts[-1].lower() in _SIDE_WORD:
        side = _SIDE_WORD[parts[-1].lower()]
        parts = parts[:-1]
    s = parts[-1] if parts else s
    s = _PREFIX_RE.sub("", s)
    if side is None:
        m = _SIDE_SUFFIX_WORD_RE.search(s)
        if m and m.start() > 0:
            side = _SIDE_WORD[m.group(1).lower()]
            s = s[: m.start()]
        else:
            m = _SIDE_SUFFIX_LETTER_RE.search(s)
            if m and m.start() > 0:
                side = (m.group(1) or m.group(2)).upper()
                s = s[: m.start()]
    base = re.sub(r"[^0-9a-z]", "", s.lower())
    return base, side


_ARKIT_BY_KEY: dict[tuple[str, str | None], str] = {arkit_key(n): n for n in ARKIT_NAMES}
assert len(_ARKIT_BY_KEY) == len(ARKIT_NAMES)


def arkit_canonical(name: str) -> str | None:
    """The ARKit-52 name a blendshape name stands for, or None."""
    return _ARKIT_BY_KEY.get(arkit_key(name))


def arkit_side(name: str) -> str | None:
    return "L" if name.endswith("Left") else "R" if name.endswith("Right") else None


def resolve_arkit_names(key_names) -> tuple[dict[str, str], list[str]]:
    """{ARKit name: shape key name} for a mesh's shape keys, and notes on duplicates."""
    found: dict[str, list[str]] = {}
    for kn in key_names:
        c = arkit_canonical(kn)
        if c is not None:
            found.setdefault(c, []).append(kn)
    mapping, notes = {}, []
    for c, names in found.items():
        exact = [n for n in names if n == c]
        mapping[c] = exact[0] if exact else names[0]
        if len(names) > 1:
            notes.append(f"{c}: several shape keys match ({', '.join(names)}); using {mapping[c]!r}")
    return mapping, notes


def _is_builtin_marked(obj) -> bool:
    try:
        if obj.get("facsgen_builtin"):
            return True
    except (AttributeError, TypeError):
        return False
    return False


def _au_key_names(key_names) -> dict[str, str]:
    """{canonical AU: shape key name} for keys named ``AU01``, ``AU12_L``, ``AU1`` ..."""
    out = {}
    for kn in key_names:
        if not _AU_KEY_RE.match(kn):
            continue
        try:
            out.setdefault(canonical_au(kn), kn)
        except ConfigError:
            continue
    return out


# --------------------------------------------------------------------------- base class


class CharacterAdapter:
    """Common interface (see the module docstring); subclasses implement ``supported_aus`` and
    ``set_aus``. Extras used by the pipeline: ``unsupported``, ``check_aus``, ``save_state`` /
    ``restore_state``, ``head_bone``, ``notes`` and ``missing`` (AU -> why it cannot be expressed)."""

    kind: str = ""
    label: str = "character"

    def __init__(self, obj: bpy.types.Object):
        if obj is None or obj.type != "MESH":
            raise CharacterError(f"{getattr(obj, 'name', obj)!r} is not a mesh object")
        self.obj = obj
        self.notes: list[str] = []
        #: AUs the source table names but this character cannot express, with the reason.
        self.missing: dict[str, str] = {}

    # -- the interface -------------------------------------------------------------------
    def supported_aus(self) -> set[str]:
        raise NotImplementedError

    def set_aus(self, values: dict[str, float]) -> None:
        raise NotImplementedError

    def reset(self) -> None:
        self.set_aus({})

    def head_matrix_world(self, depsgraph=None) -> Matrix:
        """World transform of the head.

        Without an armature: the mesh object's ``matrix_world``. With one: the head bone's
        pose applied to the mesh object's frame, i.e. the axes are the mesh object's (for a
        character facing -Y with Z up they stay so at rest) rotated by how the head bone is
        posed, and the origin is the head bone's head; no scale. ``depsgraph``: read the
        evaluated objects (default: the original data, current after the last evaluation).
        """
        obj = self.obj.evaluated_get(depsgraph) if depsgraph is not None else self.obj
        arm, bone_name = self.head_bone()
        if arm is None:
            return obj.matrix_world.copy()
        arm_e = arm.evaluated_get(depsgraph) if depsgraph is not None else arm
        pb = arm_e.pose.bones[bone_name]
        a = arm_e.matrix_world
        m = a @ pb.matrix @ pb.bone.matrix_local.inverted() @ a.inverted() @ obj.matrix_world
        rot = m.to_3x3().normalized().to_quaternion()
        return Matrix.LocRotScale(a @ pb.head, rot, None)

    def head_bone(self) -> tuple[bpy.types.Object | None, str | None]:
        """(armature object, head bone name) or (None, None) when there is no armature/head bone."""
        arm = self.obj.find_armature()
        if arm is None and self.obj.parent is not None and self.obj.parent.type == "ARMATURE":
            arm = self.obj.parent
        if arm is None or arm.pose is None:
            return None, None
        name = find_head_bone(arm)
        return (arm, name) if name else (None, None)

    def describe(self) -> str:
        sup = self.supported_aus()
        bilateral = [a for a in sup if not _side_of_au(a)]
        arm, bone = self.head_bone()
        if arm is not None:
            head = f"head pose from bone '{bone}' of '{arm.name}'"
        elif self.obj.find_armature() is not None:
            head = f"head pose from the object transform (armature '{self.obj.find_armature().name}' has no head bone)"
        else:
            head = "head pose from the object transform"
        text = (f"{self.label} '{self.obj.name}': {len(bilateral)} AUs ({_au_list(bilateral)})"
                f"{'; one-sided: ' + _au_list(set(sup) - set(bilateral)) if len(sup) > len(bilateral) else ''}"
                f"; {head}")
        if self.missing:
            text += "; cannot express: " + ", ".join(f"{a} ({why})" for a, why in
                                                    sorted(self.missing.items(), key=lambda kv: au_sort_key(kv[0])))
        if self.notes:
            text += "; notes: " + "; ".join(self.notes)
        return text

    # -- helpers shared by the pipeline ----------------------------------------------------
    def unsupported(self, aus) -> list[str]:
        """The AUs of ``aus`` (any spelling) this character cannot express, canonical and sorted."""
        sup = self.supported_aus()
        out = set()
        for a in aus:
            au = self._canonical(a)
            if au not in sup:
                out.add(au)
        return _sorted_aus(out)

    def check_aus(self, aus) -> None:
        bad = self.unsupported(aus)
        if bad:
            raise CharacterError(self._unsupported_message(bad))

    def save_state(self):
        """Opaque snapshot of everything this adapter may change (shape-key values, sliders,
        driver mute flags); give it back to :meth:`restore_state`."""
        key = self.obj.data.shape_keys
        vals = None
        if key is not None:
            vals = np.empty(len(key.key_blocks), dtype=np.float32)
            key.key_blocks.foreach_get("value", vals)
        drivers = {}
        if key is not None and key.animation_data is not None:
            drivers = {(fc.data_path, fc.array_index): fc.mute for fc in key.animation_data.drivers}
        return {"values": vals, "drivers": drivers, "extra": self._save_extra()}

    def restore_state(self, state) -> None:
        key = self.obj.data.shape_keys
        if key is not None and key.animation_data is not None:
            for fc in key.animation_data.drivers:
                m = state["drivers"].get((fc.data_path, fc.array_index))
                if m is not None and fc.mute != m:
                    fc.mute = m
        vals = state["values"]
        if key is not None and vals is not None and len(vals) == len(key.key_blocks):
            key.key_blocks.foreach_set("value", vals)
        self._restore_extra(state["extra"])
        self.obj.data.update_tag()

    def _save_extra(self):
        return None

    def _restore_extra(self, extra) -> None:
        return None

    # -- validation ------------------------------------------------------------------------
    def _canonical(self, name) -> str:
        try:
            return canonical_au(name)
        except ConfigError as exc:
            raise CharacterError(f"character '{self.obj.name}' ({self.label}): {exc}") from None

    def _unsupported_message(self, bad) -> str:
        sup = self.supported_aus()
        why = [f"{a}: {self.missing[a]}" for a in bad if a in self.missing]
        return (f"character '{self.obj.name}' ({self.label}) cannot express {', '.join(bad)}"
                f"{' (' + '; '.join(why) + ')' if why else ''}; it supports: {_au_list(sup)}")

    def _validate(self, values) -> dict[str, float]:
        if values is None:
            return {}
        if not isinstance(values, dict):
            raise CharacterError(f"character '{self.obj.name}': AU values must be a dict, got {type(values).__name__}")
        out: dict[str, float] = {}
        for name, v in values.items():
            au = self._canonical(name)
            try:
                x = float(v)
            except (TypeError, ValueError):
                raise CharacterError(f"character '{self.obj.name}': {au} intensity must be a number, got {v!r}") from None
            if not math.isfinite(x) or x < -1e-9 or x > 1 + 1e-9:
                raise CharacterError(f"character '{self.obj.name}': {au} intensity {v!r} is outside [0, 1]")
            if au in out:
                raise CharacterError(f"character '{self.obj.name}': {au} given twice ({name!r})")
            out[au] = min(max(x, 0.0), 1.0)
        bad = [a for a in out if a not in self.supported_aus()]
        if bad:
            raise CharacterError(self._unsupported_message(_sorted_aus(bad)))
        return out

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.kind} {self.obj.name!r}>"


def find_head_bone(arm: bpy.types.Object) -> str | None:
    """The head bone of an armature: ``head`` (MB-Lab), else a bone whose last name part is
    "head" (``mixamorig:Head``, ``J_Bip_C_Head``, ``CC_Base_Head``, ``DEF-head``), deform first."""
    bones = arm.pose.bones
    for n in HEAD_BONE_NAMES:
        if n in bones:
            return n
    cands = []
    for pb in bones:
        last = re.split(r"[:_\-\s.]", pb.name.lower())[-1] if pb.name else ""
        if last == "head":
            cands.append(pb)
    if not cands:
        return None
    cands.sort(key=lambda pb: (not pb.bone.use_deform, len(pb.name)))
    return cands[0].name


# --------------------------------------------------------------------------- shape-key tables


class _KeyTableAdapter(CharacterAdapter):
    """An adapter that writes shape-key values: value = clip(sum_AU intensity * weight)."""

    #: Sums within this distance of 0 or 1 are written as exactly 0 / 1 (see MBLabShapeKeyAdapter).
    snap_eps: float = 0.0

    def __init__(self, obj, table: dict[str, dict[str, float]], neutral_keys, side_of=None,
                 source: str = ""):
        super().__init__(obj)
        key = obj.data.shape_keys
        if key is None:
            raise CharacterError(f"mesh '{obj.name}' has no shape keys")
        if not key.use_relative:
            raise CharacterError(f"mesh '{obj.name}' uses absolute shape keys; only relative shape keys are supported")
        self.source = source
        names = [kb.name for kb in key.key_blocks]
        present = set(names)
        if side_of is not None:
            table = expand_unilateral(table, side_of)
        self._table: dict[str, dict[str, float]] = {}
        for au, targets in table.items():
            lacking = [k for k in targets if k not in present]
            if lacking:
                self.missing[au] = "no shape key " + ", ".join(repr(k) for k in lacking)
            elif not any(w != 0 for w in targets.values()):
                self.missing[au] = "all weights are 0"
            else:
                self._table[au] = dict(targets)
        managed = {n for n in neutral_keys if n in present}
        managed.update(k for t in self._table.values() for k in t)
        self._managed_names = sorted(managed, key=names.index)
        self._layout = None
        self._muted: list = []

    def supported_aus(self) -> set[str]:
        return set(self._table)

    # key indices are cached but re-derived whenever the key list changes
    def _get_layout(self):
        key = self.obj.data.shape_keys
        if key is None:
            raise CharacterError(f"mesh '{self.obj.name}' lost its shape keys")
        kbs = key.key_blocks
        sig = (len(kbs), kbs[0].name if len(kbs) else "", kbs[-1].name if len(kbs) else "")
        if self._layout is None or self._layout["sig"] != sig:
            idx = {}
            for n in self._managed_names:
                i = kbs.find(n)
                if i < 0:
                    raise CharacterError(f"shape key {n!r} of '{self.obj.name}' disappeared; detect the character again")
                idx[n] = i
            managed = np.array([idx[n] for n in self._managed_names], dtype=np.int64)
            lo = np.array([kbs[i].slider_min for i in managed], dtype=np.float64)
            hi = np.array([kbs[i].slider_max for i in managed], dtype=np.float64)
            pos = {n: j for j, n in enumerate(self._managed_names)}
            rows = {au: (np.array([pos[k] for k in t], dtype=np.int64), np.array(list(t.values()), dtype=np.float64))
                    for au, t in self._table.items()}
            self._layout = {"sig": sig, "managed": managed, "lo": lo, "hi": hi, "rows": rows, "n": len(kbs)}
        return self._layout

    def _mute_drivers(self) -> None:
        key = self.obj.data.shape_keys
        ad = key.animation_data
        if ad is None:
            return
        managed = set(self._managed_names)
        for fc in ad.drivers:
            m = re.match(r'^key_blocks\["(.+)"\]\.value$', fc.data_path)
            if m and m.group(1).replace('\\"', '"') in managed and not fc.mute:
                fc.mute = True
                self._muted.append(fc.data_path)
        if self._muted:
            note = f"muted {len(self._muted)} driver(s) on the shape keys it sets"
            if note not in self.notes:
                self.notes.append(note)

    def key_values(self, values: dict[str, float]) -> dict[str, float]:
        """{shape key name: value} that ``set_aus(values)`` writes (validated, clipped)."""
        vals = self._validate(values)
        lay = self._get_layout()
        acc = np.zeros(len(self._managed_names), dtype=np.float64)
        for au, v in vals.items():
            cols, w = lay["rows"][au]
            np.add.at(acc, cols, v * w)
        if self.snap_eps:
            for k in (0.0, 1.0):
                acc[np.abs(acc - k) <= self.snap_eps] = k
        acc = np.clip(acc, lay["lo"], lay["hi"])
        return dict(zip(self._managed_names, acc.tolist()))

    def set_aus(self, values: dict[str, float]) -> None:
        target = self.key_values(values)
        lay = self._layout
        kbs = self.obj.data.shape_keys.key_blocks
        self._mute_drivers()
        cur = np.empty(lay["n"], dtype=np.float32)
        kbs.foreach_get("value", cur)
        new = cur.copy()
        new[lay["managed"]] = np.fromiter(target.values(), dtype=np.float64, count=len(target))
        if not np.array_equal(new, cur):
            kbs.foreach_set("value", new)
            self.obj.data.update_tag()


class MBLabShapeKeyAdapter(_KeyTableAdapter):
    kind = "mblab_shapekeys"
    label = "MB-Lab expression shape keys"

    # MB-Lab's rig passes every driver through Blender's default driver F-curve (keyframes (0,0)
    # and (1,1), made by ``driver_add``), which returns the keyframe value exactly when its input
    # lies within 1e-4 of a keyframe. Doing the same keeps this adapter equal to the rig to float
    # precision (the change is at most 1e-4 of a key, i.e. about a micrometre on the face).
    snap_eps = 1e-4

    def __init__(self, obj, table_choice=None):
        try:
            table, note = mblab.mblab_table(table_choice)
        except mblab.MBLabTableError as exc:
            raise CharacterError(f"character '{obj.name}': {exc}") from None
        key = obj.data.shape_keys
        neutral = [kb.name for kb in key.key_blocks if kb.name.startswith(mblab.EXPRESSION_PREFIX)] if key else []
        super().__init__(obj, table.aus, neutral, side_of=mblab.expression_key_side, source=table.source)
        self.table = table
        self.table_note = note

    def describe(self) -> str:
        return super().describe() + f"; AU table: {self.table_note}"


class ARKitAdapter(_KeyTableAdapter):
    kind = "arkit"
    label = "ARKit-52 blendshapes"

    def __init__(self, obj, table_path: str | Path = ARKIT_TABLE):
        key = obj.data.shape_keys
        names = [kb.name for kb in key.key_blocks] if key else []
        self.names, notes = resolve_arkit_names(names)
        table = load_au_table(table_path)
        # table in ARKit names -> table in this mesh's key names (missing ones keep their ARKit name)
        expanded = expand_unilateral(table.aus, arkit_side)
        local = {au: {self.names.get(k, k): w for k, w in t.items()} for au, t in expanded.items()}
        super().__init__(obj, local, self.names.values(), side_of=None, source=table.source)
        self.notes.extend(notes)
        unknown = {k for t in table.aus.values() for k in t if k not in ARKIT_NAMES}
        if unknown:
            raise CharacterError(f"ARKit table {table.source}: unknown blendshape name(s) {', '.join(sorted(unknown))}")

    def describe(self) -> str:
        return super().describe() + f"; {len(self.names)} of 52 ARKit blendshapes found"


class BuiltinAdapter(_KeyTableAdapter):
    kind = "builtin"
    label = "built-in head"

    def __init__(self, obj):
        key = obj.data.shape_keys
        names = [kb.name for kb in key.key_blocks] if key else []
        keys = _au_key_names(names)
        if not keys:
            raise CharacterError(f"mesh '{obj.name}' has no shape keys named after AUs (AU01, AU12_L, ...)")
        table = {au: {kn: 1.0} for au, kn in keys.items()}
        for au in list(keys):
            base = au.split("_")[0]
            if _side_of_au(au) and base not in keys and f"{base}_L" in keys and f"{base}_R" in keys:
                table[base] = {keys[f"{base}_L"]: 1.0, keys[f"{base}_R"]: 1.0}
        super().__init__(obj, table, keys.values(), side_of=None, source="AU-named shape keys")
        if not _is_builtin_marked(obj):
            self.label = "AU-named shape keys"


# --------------------------------------------------------------------------- MB-Lab rig


class MBLabRigAdapter(CharacterAdapter):
    """MB-Lab's FACS sliders: intensity v puts a slider's local X at v * (its LIMIT_LOCATION max X)."""

    kind = "mblab_rig"
    label = "MB-Lab FACS slider rig"

    def __init__(self, obj, sliders: dict[str, mblab.Slider] | None = None, notes=None):
        super().__init__(obj)
        if sliders is None:
            sliders, notes = mblab.find_rig_sliders(obj)
        self.notes.extend(notes or [])
        self.sliders = sliders
        self.au_sliders: dict[str, mblab.Slider] = {}
        for code, s in sliders.items():
            if not code.startswith("AU"):
                continue
            try:
                self.au_sliders[canonical_au(code)] = s
            except ConfigError:
                self.notes.append(f"slider {s.obj.name} ({code}) is not a FACS AU this project knows; kept at rest")
        if not self.au_sliders:
            raise CharacterError(f"mesh '{obj.name}' has no FACS sliders driving its shape keys")
        _, fcurves = mblab.driver_sliders(obj.data.shape_keys)
        if mblab.python_drivers_blocked(fcurves):
            raise CharacterError(
                f"the FACS rig of '{obj.name}' uses Python-expression drivers and Python auto-execution is "
                "disabled for this file: reload it as trusted (or allow Auto Run Python Scripts)")
        for s in sliders.values():
            ad = s.obj.animation_data
            if ad is not None and ad.action is not None:
                self.notes.append(f"slider {s.obj.name} is animated; its keyframes override set values on frame change")
        # undriven MB-Lab expression keys must be 0 for a neutral face
        key = obj.data.shape_keys
        driven = set()
        if key.animation_data is not None:
            for fc in key.animation_data.drivers:
                m = re.match(r'^key_blocks\["(.+)"\]\.value$', fc.data_path)
                if m and not fc.mute:
                    driven.add(m.group(1))
        self._stray = [kb.name for kb in key.key_blocks
                       if kb.name.startswith(mblab.EXPRESSION_PREFIX) and kb.name not in driven]

    def supported_aus(self) -> set[str]:
        return set(self.au_sliders)

    def _zero_stray(self) -> None:
        if not self._stray:
            return
        kbs = self.obj.data.shape_keys.key_blocks
        cur = np.empty(len(kbs), dtype=np.float32)
        kbs.foreach_get("value", cur)
        idx = [i for i in (kbs.find(n) for n in self._stray) if i >= 0]
        if np.any(cur[idx] != 0):
            cur[idx] = 0
            kbs.foreach_set("value", cur)
            self.obj.data.update_tag()

    def slider_positions(self, values: dict[str, float]) -> dict[str, float]:
        """{slider object name: local X} that ``set_aus(values)`` writes (gaze sliders at rest)."""
        vals = self._validate(values)
        out = {}
        au_of = {id(s): au for au, s in self.au_sliders.items()}
        for s in self.sliders.values():
            au = au_of.get(id(s))
            v = vals.get(au, 0.0) if au else 0.0
            out[s.obj.name] = s.rest + v * (s.scale - s.rest)
        return out

    def set_aus(self, values: dict[str, float]) -> None:
        pos = self.slider_positions(values)
        for s in self.sliders.values():
            x = pos[s.obj.name]
            if s.obj.location.x != x:
                s.obj.location.x = x
        self._zero_stray()

    def _save_extra(self):
        return {s.obj.name: tuple(s.obj.location) for s in self.sliders.values()}

    def _restore_extra(self, extra) -> None:
        for s in self.sliders.values():
            loc = extra.get(s.obj.name)
            if loc is not None and tuple(s.obj.location) != loc:
                s.obj.location = loc

    def describe(self) -> str:
        scales = sorted({round(s.scale, 6) for s in self.au_sliders.values()})
        gaze = sorted(c for c in self.sliders if c.startswith("GZ"))
        extra = f"; slider travel for intensity 1: {', '.join(str(x) for x in scales)}"
        if gaze:
            extra += f"; gaze sliders {', '.join(gaze)} kept at rest"
        if self._stray:
            extra += f"; {len(self._stray)} undriven Expressions_* keys held at 0"
        return super().describe() + extra


# --------------------------------------------------------------------------- detection


def _key_names(obj) -> list[str]:
    key = obj.data.shape_keys if obj.type == "MESH" else None
    return [kb.name for kb in key.key_blocks] if key else []


def _candidate_kinds(obj) -> list[str]:
    """Adapter kinds that apply to a mesh, best first (cheap; changes nothing)."""
    names = _key_names(obj)
    kinds = []
    marked = _is_builtin_marked(obj)
    if marked:
        kinds.append("builtin")
    if names:
        sliders, _ = mblab.find_rig_sliders(obj)
        if any(c.startswith("AU") for c in sliders):
            kinds.append("mblab_rig")
        if sum(1 for n in names if mblab.is_expression_key(n)) >= 4:
            kinds.append("mblab_shapekeys")
        if len({arkit_canonical(n) for n in names} - {None}) >= 5:
            kinds.append("arkit")
        if not marked and _au_key_names(names):
            kinds.append("builtin")
    return kinds


def _make(obj, kind: str, mblab_table=None) -> CharacterAdapter:
    if kind == "builtin":
        return BuiltinAdapter(obj)
    if kind == "mblab_rig":
        return MBLabRigAdapter(obj)
    if kind == "mblab_shapekeys":
        return MBLabShapeKeyAdapter(obj, mblab_table)
    if kind == "arkit":
        return ARKitAdapter(obj)
    raise CharacterError(f"unknown character kind {kind!r} (expected one of: {', '.join(KINDS)})")


def _explain_none(obj) -> str:
    names = _key_names(obj)
    if obj.type == "MESH" and not names:
        return f"mesh '{obj.name}' has no shape keys"
    shown = ", ".join(repr(n) for n in names[1:9]) + (", ..." if len(names) > 9 else "")
    return (f"mesh '{obj.name}' is not a recognised character: none of its {max(len(names) - 1, 0)} shape keys "
            f"({shown}) are MB-Lab expressions (Expressions_*_max/_min), ARKit-52 blendshapes or AU-named keys "
            f"(AU01, AU12_L), and no MB-Lab FACS sliders drive it")


def _kind_rank(obj, kind: str) -> int:
    order = ("mblab_rig", "mblab_shapekeys", "arkit", "builtin")
    return -1 if kind == "builtin" and _is_builtin_marked(obj) else order.index(kind)


def _resolve_mesh(obj) -> bpy.types.Object:
    if obj is None:
        raise CharacterError("no character object given")
    if not isinstance(obj, bpy.types.Object):
        raise CharacterError(f"{obj!r} is not a Blender object")
    if obj.type == "MESH":
        return obj
    if obj.type == "ARMATURE":
        meshes = [c for c in obj.children_recursive if c.type == "MESH" and c.data.shape_keys is not None]
        ranked = []
        for m in meshes:
            kinds = _candidate_kinds(m)
            if kinds:
                ranked.append((_kind_rank(m, kinds[0]), -len(m.data.shape_keys.key_blocks), m.name, m))
        if not ranked:
            raise CharacterError(f"armature '{obj.name}' has no child mesh with FACS-capable shape keys")
        ranked.sort(key=lambda r: r[:3])
        return ranked[0][3]
    raise CharacterError(f"'{obj.name}' is a {obj.type.lower()} object, not a mesh (choose the character's face mesh)")


def detect_adapter(obj, *, kind: str | None = None, mblab_table=None) -> CharacterAdapter:
    """The adapter for ``obj`` (a mesh, or an armature whose child mesh is the character).

    ``kind`` forces one adapter kind; ``mblab_table`` chooses the MB-Lab AU table for
    ``mblab_shapekeys`` ("auto" default, "own", or a path to a ``facs_au.json``).
    Raises :class:`CharacterError` with the reason when nothing fits.
    """
    mesh = _resolve_mesh(obj)
    kinds = _candidate_kinds(mesh)
    if kind is not None:
        if kind not in KINDS:
            raise CharacterError(f"unknown character kind {kind!r} (expected one of: {', '.join(KINDS)})")
        if kind not in kinds:
            raise CharacterError(f"'{mesh.name}' cannot be used as {kind}: {_explain_none(mesh) if not kinds else 'detected as ' + ', '.join(kinds)}")
        return _make(mesh, kind, mblab_table)
    if not kinds:
        raise CharacterError(_explain_none(mesh))
    errors = []
    for k in kinds:
        try:
            return _make(mesh, k, mblab_table)
        except CharacterError as exc:
            errors.append(str(exc))
    raise CharacterError("; ".join(errors))


def find_character(scene=None, name: str | None = None) -> bpy.types.Object:
    """The character object: ``name`` in ``scene``, or (None) the built-in head, added if missing."""
    scene = scene or bpy.context.scene
    if name is None or name == "":
        try:
            from . import head
        except ImportError as exc:
            raise CharacterError(f"the built-in head is not available in this build ({exc})") from None
        for ob in scene.objects:
            if head.is_builtin_head(ob):
                return ob
        return head.add_builtin_head(scene)
    obj = bpy.data.objects.get(name)
    if obj is None:
        import difflib

        meshes = [o.name for o in scene.objects if o.type in ("MESH", "ARMATURE")]
        close = difflib.get_close_matches(name, meshes, n=3)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else (
            f"; objects in scene '{scene.name}': {', '.join(repr(m) for m in meshes[:10])}" if meshes else "")
        raise CharacterError(f"character {name!r} not found{hint}")
    if scene.objects.get(obj.name) is None:
        raise CharacterError(f"character {name!r} exists but is not in scene '{scene.name}'")
    return obj
