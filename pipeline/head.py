# SPDX-License-Identifier: GPL-3.0-or-later
"""The built-in FACS head in Blender: one mesh object with AU and identity shape keys.

The geometry, shape keys and material weights come from the bpy-free builder
:func:`..core.head_model.build_head` (cached); this module turns them into Blender data
with ``foreach_set`` only. Vertices 0..467 are the MediaPipe landmarks and lie on the
rendered surface (no modifiers), so the landmark map is exact: ``tri = (i, i, i)``.

Identity: shape keys ``ID_...`` (values in [-1, 1]) and the object custom property
``facsgen_skin_tone`` (0 = light .. 1 = dark) that the skin material reads with an
Attribute node (type Object), so several heads can share the material.
"""

from __future__ import annotations

import bpy
import numpy as np

from ..core import au_fields
from ..core import head_model as hm
from ..landmark_map import LandmarkMap
from .landmarks import evaluated_fingerprint

BUILTIN_PROP = "facsgen_builtin"
SKIN_TONE_PROP = "facsgen_skin_tone"
DEFAULT_SKIN_TONE = 0.3
ID_RANGE = (-1.0, 1.0)

# skin tone ramp (linear RGB) from light to dark
_SKIN_STOPS = (
    (0.0, (0.80, 0.56, 0.45)),
    (0.35, (0.62, 0.38, 0.26)),
    (0.7, (0.33, 0.17, 0.10)),
    (1.0, (0.13, 0.065, 0.04)),
)


def identity_keys() -> list[str]:
    return au_fields.identity_names()


def au_keys() -> list[str]:
    return au_fields.au_names()


def is_builtin_head(obj) -> bool:
    return bool(obj is not None and getattr(obj, "type", None) == "MESH" and obj.get(BUILTIN_PROP) == 1)


def random_identity(rng: np.random.Generator) -> dict:
    """Random identity: every ``ID_...`` key in [-1, 1] (clipped normal) and ``skin_tone`` in [0, 1]."""
    ident = {k: float(np.clip(rng.normal(0.0, 0.5), *ID_RANGE)) for k in identity_keys()}
    ident["skin_tone"] = float(rng.uniform(0.0, 1.0))
    return ident


def apply_identity(obj, identity: dict) -> None:
    """Set ID shape keys (missing ones go to 0) and the skin tone of a built-in head."""
    if not is_builtin_head(obj):
        raise ValueError(f"{getattr(obj, 'name', obj)!r} is not the built-in FACS head")
    kb = obj.data.shape_keys.key_blocks
    unknown = [k for k in identity if k != "skin_tone" and k not in kb]
    if unknown:
        raise ValueError(f"unknown identity parameter(s) for the built-in head: {', '.join(sorted(unknown))}")
    for k in identity_keys():
        kb[k].value = float(np.clip(identity.get(k, 0.0), *ID_RANGE))
    tone = float(np.clip(identity.get("skin_tone", DEFAULT_SKIN_TONE), 0.0, 1.0))
    obj[SKIN_TONE_PROP] = tone
    obj.update_tag()


def builtin_landmark_map(obj, depsgraph=None) -> LandmarkMap:
    """Exact map of the built-in head: landmark i is vertex i of the evaluated mesh."""
    fp = evaluated_fingerprint(obj, depsgraph)
    return LandmarkMap.from_vertices(np.arange(hm.N_LANDMARKS), fp, meta={"name": "FACS built-in head", "exact": True})


# --------------------------------------------------------------------------- materials
def _node(nodes, kind, loc, **props):
    n = nodes.new(kind)
    n.location = loc
    for k, v in props.items():
        setattr(n, k, v)
    return n


def _principled(mat, color, roughness=0.5, specular=0.5):
    mat.use_nodes = True
    nt = mat.node_tree
    bsdf = nt.nodes.get("Principled BSDF") or _node(nt.nodes, "ShaderNodeBsdfPrincipled", (0, 0))
    bsdf.inputs["Base Color"].default_value = (*color, 1.0)
    bsdf.inputs["Roughness"].default_value = roughness
    if "Specular IOR Level" in bsdf.inputs:
        bsdf.inputs["Specular IOR Level"].default_value = specular
    mat.diffuse_color = (*color, 1.0)
    return bsdf


def _skin_material(name):
    mat = bpy.data.materials.new(name)
    bsdf = _principled(mat, _SKIN_STOPS[1][1], roughness=0.55, specular=0.35)
    nt = mat.node_tree
    nodes, links = nt.nodes, nt.links
    tone = _node(nodes, "ShaderNodeAttribute", (-1200, 300), attribute_type="OBJECT", attribute_name=SKIN_TONE_PROP)
    ramp = _node(nodes, "ShaderNodeValToRGB", (-1000, 300))
    els = ramp.color_ramp.elements
    while len(els) < len(_SKIN_STOPS):
        els.new(0.5)
    for el, (pos, col) in zip(els, _SKIN_STOPS):
        el.position = pos
        el.color = (*col, 1.0)
    links.new(tone.outputs["Fac"], ramp.inputs["Fac"])
    color = ramp.outputs["Color"]
    for i, (attr, col, strength) in enumerate((
        ("facs_lip", (0.45, 0.12, 0.11), 0.85),
        ("facs_hair", (0.035, 0.022, 0.015), 1.0),
        ("facs_brow", (0.03, 0.02, 0.014), 0.92),
    )):
        a = _node(nodes, "ShaderNodeAttribute", (-1000, -100 - 250 * i), attribute_type="GEOMETRY", attribute_name=attr)
        scale = _node(nodes, "ShaderNodeMath", (-800, -100 - 250 * i), operation="MULTIPLY")
        scale.inputs[1].default_value = strength
        links.new(a.outputs["Fac"], scale.inputs[0])
        mix = _node(nodes, "ShaderNodeMix", (-550 + 150 * i, 200), data_type="RGBA")
        mix.blend_type = "MULTIPLY" if attr == "facs_lip" else "MIX"
        links.new(scale.outputs[0], mix.inputs["Factor"])
        links.new(color, mix.inputs[6])
        mix.inputs[7].default_value = (*col, 1.0) if attr != "facs_lip" else (0.78, 0.36, 0.36, 1.0)
        color = mix.outputs[2]
    links.new(color, bsdf.inputs["Base Color"])
    # hair and brows are matte
    rough = _node(nodes, "ShaderNodeMapRange", (-300, -400))
    rough.inputs["To Min"].default_value = 0.5
    rough.inputs["To Max"].default_value = 0.95
    hair_attr = _node(nodes, "ShaderNodeAttribute", (-550, -400), attribute_type="GEOMETRY", attribute_name="facs_hair")
    links.new(hair_attr.outputs["Fac"], rough.inputs["Value"])
    links.new(rough.outputs["Result"], bsdf.inputs["Roughness"])
    if "Subsurface Weight" in bsdf.inputs:
        # Christensen-Burley, not the default random walk: at this 3 mm radius the two look
        # alike on a head without ears, and random walk costs ~22 % more path-tracing time per
        # sample (256x256, 24 spp, CPU; benchmarks/throughput.py, README "Benchmarks")
        if hasattr(bsdf, "subsurface_method"):
            bsdf.subsurface_method = "BURLEY"
        bsdf.inputs["Subsurface Weight"].default_value = 0.15
        bsdf.inputs["Subsurface Radius"].default_value = (1.0, 0.35, 0.2)
        bsdf.inputs["Subsurface Scale"].default_value = 0.003
    return mat


def _materials() -> list:
    specs = {
        "FACS Mouth": ((0.045, 0.008, 0.008), 0.7),
        "FACS Sclera": ((0.78, 0.74, 0.70), 0.25),
        "FACS Iris": ((0.16, 0.085, 0.035), 0.3),
        "FACS Pupil": ((0.005, 0.005, 0.005), 0.2),
        "FACS Teeth": ((0.8, 0.78, 0.7), 0.35),
    }
    mats = []
    for name in hm.MATERIALS:
        mat = bpy.data.materials.get(name)
        if mat is None or not mat.get("facsgen_builtin"):
            if name == "FACS Skin":
                mat = _skin_material(name)
            else:
                col, rough = specs[name]
                mat = bpy.data.materials.new(name)
                _principled(mat, col, roughness=rough)
            mat["facsgen_builtin"] = 1
        mats.append(mat)
    return mats


# --------------------------------------------------------------------------- the object
def _make_mesh(name: str, model: hm.HeadModel):
    me = bpy.data.meshes.new(name)
    nv, nf = len(model.verts), len(model.faces)
    me.vertices.add(nv)
    me.vertices.foreach_set("co", model.verts.astype(np.float32).ravel())
    me.loops.add(nf * 3)
    me.loops.foreach_set("vertex_index", model.faces.astype(np.int32).ravel())
    me.polygons.add(nf)
    me.polygons.foreach_set("loop_start", np.arange(0, nf * 3, 3, dtype=np.int32))
    me.polygons.foreach_set("material_index", model.material_index.astype(np.int32))
    me.polygons.foreach_set("use_smooth", np.ones(nf, dtype=bool))
    me.update(calc_edges=True)
    for attr, values in model.attributes.items():
        a = me.attributes.new(attr, "FLOAT", "POINT")
        a.data.foreach_set("value", values.astype(np.float32))
    for mat in _materials():
        me.materials.append(mat)
    return me


def add_builtin_head(scene=None, name: str = "FACS Head"):
    """Create the built-in head (mesh object, shape keys AU.. and ID_..) linked to ``scene``."""
    scene = scene or bpy.context.scene
    model = hm.build_head()
    me = _make_mesh(name, model)
    obj = bpy.data.objects.new(name, me)
    scene.collection.objects.link(obj)
    obj[BUILTIN_PROP] = 1
    obj[SKIN_TONE_PROP] = DEFAULT_SKIN_TONE
    basis = obj.shape_key_add(name="Basis", from_mix=False)
    basis.interpolation = "KEY_LINEAR"
    rest = model.verts.astype(np.float32)
    id_names = set(identity_keys())
    for key, delta in model.shape_keys.items():
        kb = obj.shape_key_add(name=key, from_mix=False)
        kb.data.foreach_set("co", (rest + delta).ravel())
        if key in id_names:
            kb.slider_min, kb.slider_max = ID_RANGE
        else:
            kb.slider_min, kb.slider_max = 0.0, 1.0
        kb.value = 0.0
    me.shape_keys.use_relative = True
    return obj
