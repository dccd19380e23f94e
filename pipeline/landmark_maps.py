# SPDX-License-Identifier: GPL-3.0-or-later
"""Finding, storing, importing and exporting landmark maps for a character's mesh.

Lookup order of :func:`find_map` (the first whose topology fingerprint matches the
*evaluated* mesh wins):

1. the map stored on the object itself (custom property ``facsgen_landmark_map``, JSON;
   it travels with the .blend);
2. the built-in head's exact map (:func:`pipeline.head.builtin_landmark_map`);
3. the maps shipped with the extension (``landmark_map/*.json``);
4. the user's maps folder (:func:`user_maps_dir`: ``$FACSGEN_LANDMARK_MAPS`` when set, else
   the extension's user folder ``landmark_maps/``).

Maps always cover all 468 landmarks. The original tool's partial vertex-group maps (75
points) are refused with a message listing what is missing, unless the caller asks to fill
the missing landmarks by automatic mapping (:func:`map_from_vertex_group` ``fill="automap"``):
then the vertex-group points are exact (confidence 1) and the others come from MediaPipe
with their own confidence, and ``meta["source"]`` says so.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import bpy
import numpy as np

from ..landmark_map import N_LANDMARKS, LandmarkMap, LandmarkMapError, find_shipped_map
from .landmarks import MAP_PROPERTY, evaluated_fingerprint, mesh_fingerprint

USER_MAPS_ENV = "FACSGEN_LANDMARK_MAPS"
VERTEX_GROUP = "landmarks"

__all__ = [
    "LandmarkMapError", "MAP_PROPERTY", "USER_MAPS_ENV", "VERTEX_GROUP", "find_map", "require_map",
    "stored_map", "store_map", "clear_map", "user_maps_dir", "export_map", "import_map_file",
    "save_user_map", "map_from_vertex_group", "parse_index_list", "describe_map",
]


# ----------------------------------------------------------------------------- folders


def user_maps_dir(create: bool = False) -> Path | None:
    """The user's landmark-map folder (``$FACSGEN_LANDMARK_MAPS``, else the extension's user folder)."""
    env = os.environ.get(USER_MAPS_ENV)
    if env:
        p = Path(env).expanduser()
    else:
        p = None
        pkg = __package__.rpartition(".")[0]
        try:  # Blender 4.2+ extensions: a per-extension writable folder
            p = Path(bpy.utils.extension_path_user(pkg, path="landmark_maps", create=create))
        except (ValueError, AttributeError, RuntimeError, TypeError):
            base = bpy.utils.user_resource("CONFIG")
            if base:
                p = Path(base) / "facsgen" / "landmark_maps"
    if p is not None and create:
        p.mkdir(parents=True, exist_ok=True)
    return p


# ----------------------------------------------------------------------------- object property


def stored_map(obj: bpy.types.Object) -> LandmarkMap | None:
    """The map stored on ``obj`` (not checked against its topology), or None. Malformed -> LandmarkMapError."""
    raw = obj.get(MAP_PROPERTY) if obj is not None else None
    if raw is None:
        return None
    try:
        d = json.loads(raw if isinstance(raw, str) else str(raw))
    except ValueError as exc:
        raise LandmarkMapError(f"the landmark map stored on '{obj.name}' is not valid JSON ({exc})") from None
    return LandmarkMap.from_dict(d, source=f"object '{obj.name}'")


def store_map(obj: bpy.types.Object, lmap: LandmarkMap, depsgraph=None, check: bool = True) -> None:
    """Store ``lmap`` on ``obj`` (custom property, saved with the .blend). Refuses a wrong topology."""
    if obj is None or obj.type != "MESH":
        raise LandmarkMapError(f"a landmark map can only be stored on a mesh object, got {getattr(obj, 'name', obj)!r}")
    if check:
        lmap.check_topology(evaluated_fingerprint(obj, depsgraph), what=f"'{obj.name}'")
    obj[MAP_PROPERTY] = json.dumps(lmap.to_dict(), separators=(",", ":"))


def clear_map(obj: bpy.types.Object) -> bool:
    if obj is not None and MAP_PROPERTY in obj:
        del obj[MAP_PROPERTY]
        return True
    return False


# ----------------------------------------------------------------------------- lookup


def _builtin_map(obj, fp):
    try:
        from . import head
    except ImportError:
        return None
    try:
        if not head.is_builtin_head(obj):
            return None
        m = head.builtin_landmark_map(obj)
    except (AttributeError, LandmarkMapError):
        return None
    if m is not None and m.fingerprint != fp:
        return None
    return m


def find_map(obj: bpy.types.Object, depsgraph=None) -> LandmarkMap | None:
    """The landmark map for ``obj``'s evaluated mesh (see the module docstring), or None."""
    if obj is None or obj.type != "MESH":
        return None
    fp = evaluated_fingerprint(obj, depsgraph)
    try:
        m = stored_map(obj)
    except LandmarkMapError:
        m = None
    if m is not None and m.fingerprint == fp:
        return m
    m = _builtin_map(obj, fp)
    if m is not None:
        return m
    extra = [d for d in (user_maps_dir(),) if d is not None and d.is_dir()]
    return find_shipped_map(fp, extra_dirs=extra)


def require_map(obj: bpy.types.Object, depsgraph=None) -> LandmarkMap:
    """Like :func:`find_map` but raises :class:`LandmarkMapError` explaining what is missing."""
    m = find_map(obj, depsgraph)
    if m is not None:
        return m
    name = getattr(obj, "name", obj)
    if obj is None or obj.type != "MESH":
        raise LandmarkMapError(f"'{name}' is not a mesh object, so it has no landmark map")
    fp = evaluated_fingerprint(obj, depsgraph)
    why = ""
    try:
        s = stored_map(obj)
    except LandmarkMapError as exc:
        why = f" (its stored map is unreadable: {exc})"
    else:
        if s is not None:
            why = (f" (it stores a map made for {s.fingerprint['vertices']} vertices / {s.fingerprint['faces']} "
                   f"faces, but the evaluated mesh has {fp['vertices']} / {fp['faces']}: a modifier or an edit "
                   "changed its topology)")
    raise LandmarkMapError(
        f"no 468-point landmark map for '{name}' ({fp['vertices']} vertices, {fp['faces']} faces){why}. "
        "Create one with 'Map Face Landmarks' (facsgen automap --blend FILE --character NAME) or import one "
        "(JSON file or a 'landmarks' vertex group + index list)."
    )


def describe_map(lmap: LandmarkMap) -> str:
    meta = lmap.meta or {}
    how = meta.get("method", meta.get("source", "unknown"))
    low = int(np.sum(lmap.confidence < 0.5))
    return (f"{how} map, {lmap.fingerprint['vertices']} vertices, mean confidence {float(lmap.confidence.mean()):.2f}"
            + (f", {low} landmarks below 0.5" if low else ""))


# ----------------------------------------------------------------------------- files


def export_map(obj_or_map, path: str | Path, depsgraph=None) -> Path:
    """Write a map (given, or found for an object) to a JSON file another user can load."""
    lmap = obj_or_map if isinstance(obj_or_map, LandmarkMap) else require_map(obj_or_map, depsgraph)
    path = Path(bpy.path.abspath(str(path)) if str(path).startswith("//") else path)
    if path.suffix.lower() != ".json":
        path = path.with_suffix(".json")
    return lmap.save(path)


def import_map_file(obj: bpy.types.Object, path: str | Path, depsgraph=None, store: bool = True) -> LandmarkMap:
    """Load a JSON map, refuse it (LandmarkMapError) unless it was made for ``obj``'s topology, store it."""
    path = Path(bpy.path.abspath(str(path)) if str(path).startswith("//") else path)
    lmap = LandmarkMap.load(path)
    fp = evaluated_fingerprint(obj, depsgraph)
    try:
        lmap.check_topology(fp, what=f"'{obj.name}'")
    except LandmarkMapError as exc:
        raise LandmarkMapError(f"{path.name} does not fit '{obj.name}': {exc}") from None
    if store:
        store_map(obj, lmap, depsgraph, check=False)
    return lmap


def save_user_map(lmap: LandmarkMap, name: str) -> Path:
    """Save a map into the user's maps folder, where :func:`find_map` finds it for any mesh of that topology."""
    d = user_maps_dir(create=True)
    if d is None:
        raise LandmarkMapError("no user maps folder available (set $FACSGEN_LANDMARK_MAPS)")
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "map"
    return lmap.save(d / f"{safe}_{lmap.fingerprint['hash'][:8]}.json")


# ----------------------------------------------------------------------------- vertex group import


def parse_index_list(text) -> list[int]:
    """MediaPipe indices from a list, or text: numbers separated by commas/spaces/newlines, or a file path."""
    if not isinstance(text, (str, bytes, os.PathLike)):
        vals = [int(x) for x in text]
    else:
        s = str(text).strip()
        p = Path(bpy.path.abspath(s)) if s.startswith("//") else Path(s)
        if s and len(s) < 1024 and not re.fullmatch(r"[\d,;\s\[\]()]+", s) and p.is_file():
            s = p.read_text(encoding="utf-8")
        tokens = [t for t in re.split(r"[\s,;\[\]()]+", s) if t]
        try:
            vals = [int(t) for t in tokens]
        except ValueError:
            bad = next(t for t in tokens if not t.lstrip("-").isdigit())
            raise LandmarkMapError(f"index list: {bad!r} is not an integer") from None
    if not vals:
        raise LandmarkMapError("index list is empty")
    out_of_range = [v for v in vals if not 0 <= v < N_LANDMARKS]
    if out_of_range:
        raise LandmarkMapError(f"index list: {out_of_range[:10]} outside 0..{N_LANDMARKS - 1}")
    seen, dup = set(), []
    for v in vals:
        if v in seen:
            dup.append(v)
        seen.add(v)
    if dup:
        raise LandmarkMapError(f"index list: landmark(s) {sorted(set(dup))[:10]} listed twice")
    return vals


def _group_vertices(obj: bpy.types.Object, group: str) -> np.ndarray:
    vg = obj.vertex_groups.get(group)
    if vg is None:
        names = ", ".join(g.name for g in obj.vertex_groups) or "none"
        raise LandmarkMapError(f"'{obj.name}' has no vertex group '{group}' (it has: {names})")
    gi = vg.index
    # one-time import, not a hot path: vertex-group membership is not exposed to foreach_get
    members = [v.index for v in obj.data.vertices if any(g.group == gi and g.weight > 0 for g in v.groups)]
    return np.asarray(members, dtype=np.int64)


def map_from_vertex_group(obj: bpy.types.Object, indices, group: str = VERTEX_GROUP, fill: str | None = None,
                          depsgraph=None, automap_options=None, progress=None) -> LandmarkMap:
    """The original tool's format: the vertices of vertex group ``group``, in vertex-index order, are the
    MediaPipe landmarks ``indices`` (same length).

    A group covering fewer than 468 landmarks is refused (LandmarkMapError naming the missing ones) unless
    ``fill="automap"``: the missing landmarks are then mapped automatically (needs MediaPipe) and the map's
    ``meta`` records which landmarks came from where (``meta["from_vertex_group"]``).
    """
    if obj is None or obj.type != "MESH":
        raise LandmarkMapError(f"vertex-group import needs a mesh object, got {getattr(obj, 'name', obj)!r}")
    if fill not in (None, "automap"):
        raise LandmarkMapError(f"fill must be None or 'automap', got {fill!r}")
    lm = parse_index_list(indices)
    verts = _group_vertices(obj, group)
    if len(verts) != len(lm):
        raise LandmarkMapError(
            f"vertex group '{group}' of '{obj.name}' has {len(verts)} vertices but the index list has {len(lm)} "
            "entries (vertex i of the group, in vertex-index order, is landmark list[i])"
        )
    fp_data = mesh_fingerprint(obj.data)
    fp = evaluated_fingerprint(obj, depsgraph)
    if fp != fp_data:
        raise LandmarkMapError(
            f"'{obj.name}' has modifiers that change its topology ({fp_data['vertices']} -> {fp['vertices']} "
            "vertices), so vertex-group indices do not address the evaluated mesh; apply or disable them first"
        )
    lm_arr = np.asarray(lm)
    missing = sorted(set(range(N_LANDMARKS)) - set(lm))
    if missing and fill is None:
        shown = ", ".join(map(str, missing[:20])) + (", ..." if len(missing) > 20 else "")
        raise LandmarkMapError(
            f"vertex group '{group}' covers {len(lm)} of the {N_LANDMARKS} landmarks; {len(missing)} are missing "
            f"({shown}). The dataset needs all {N_LANDMARKS}: map the rest automatically (fill='automap', "
            "'Fill Missing Automatically' in the import dialog) or run 'Map Face Landmarks'."
        )
    meta = {"method": "vertex_group", "source": f"vertex group '{group}' + {len(lm)} indices",
            "from_vertex_group": sorted(lm)}
    if not missing:
        order = np.empty(N_LANDMARKS, dtype=np.int64)
        order[lm_arr] = verts
        return LandmarkMap.from_vertices(order, fp, meta=meta)
    from . import automap as am

    auto = am.automap(obj, automap_options, progress=progress)
    tri, bary, conf = auto.tri.copy(), auto.bary.copy(), auto.confidence.copy()
    tri[lm_arr] = np.stack([verts, verts, verts], axis=1)
    bary[lm_arr] = (1.0, 0.0, 0.0)
    conf[lm_arr] = 1.0
    meta.update(method="vertex_group+automap", automap=auto.meta,
                source=f"vertex group '{group}' ({len(lm)} landmarks) + automatic mapping ({len(missing)})")
    return LandmarkMap(tri, bary, fp, confidence=conf, meta=meta)
