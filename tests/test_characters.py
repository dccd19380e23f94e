# SPDX-License-Identifier: GPL-3.0-or-later
"""Character adapters (issue 5): MB-Lab FACS rig, MB-Lab expression keys, ARKit-52, built-in.

The MB-Lab tests read ``../shared/data/mblab`` (AGPL test data, never copied into the repo) and
are skipped when it is absent.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from conftest import MBLAB_DIR  # noqa: E402
from mathutils import Matrix, Vector  # noqa: E402

from facs_dataset_generator.pipeline import characters as ch  # noqa: E402
from facs_dataset_generator.pipeline import mblab  # noqa: E402

FACS_JSON = MBLAB_DIR / "facs_au.json"
TOL = 1e-6


# --------------------------------------------------------------------------- helpers


def _open(path) -> bpy.types.Object:
    bpy.ops.wm.open_mainfile(filepath=str(path))
    meshes = [o for o in bpy.data.objects if o.name.startswith("MBlab_") and o.type == "MESH"]
    assert len(meshes) == 1, [o.name for o in bpy.data.objects]
    return meshes[0]


def _evaluated_key_values(obj) -> dict[str, float]:
    """Shape-key values after a depsgraph evaluation (drivers run)."""
    dg = bpy.context.evaluated_depsgraph_get()
    dg.update()
    key_eval = obj.data.shape_keys.evaluated_get(dg)
    kbs = key_eval.key_blocks
    vals = np.empty(len(kbs), dtype=np.float32)
    kbs.foreach_get("value", vals)
    return {kb.name: float(v) for kb, v in zip(kbs, vals) if kb.name != kbs[0].name}


def _evaluated_verts(obj) -> np.ndarray:
    from facs_dataset_generator.pipeline.landmarks import evaluated_vertices

    dg = bpy.context.evaluated_depsgraph_get()
    dg.update()
    return evaluated_vertices(obj, dg, world=False)


def _mblab_table() -> dict:
    if not FACS_JSON.is_file():
        pytest.skip(f"MB-Lab FACS table not available ({FACS_JSON})")
    return json.loads(FACS_JSON.read_text(encoding="utf-8"))


def _remove_sliders():
    sliders = [o for o in bpy.data.objects if o.name.startswith("facs_rig_slider_")]
    assert sliders
    for o in sliders:
        bpy.data.objects.remove(o)


@pytest.fixture
def no_installed_mblab(monkeypatch):
    """As if MB-Lab were not installed (and no override set)."""
    monkeypatch.delenv(mblab.ENV_FACS_JSON, raising=False)
    monkeypatch.setattr(mblab, "FACS_JSON_OVERRIDE", None)
    monkeypatch.setattr(mblab, "_installed_mblab_dirs", lambda: [])


@pytest.fixture
def mblab_installed(monkeypatch):
    """As if MB-Lab were installed: its facs_au.json is the shared test copy."""
    _mblab_table()
    monkeypatch.setattr(mblab, "FACS_JSON_OVERRIDE", None)
    monkeypatch.setenv(mblab.ENV_FACS_JSON, str(FACS_JSON))


def _mesh(name="Face", n=60, keys=(), scene=None):
    """A small grid mesh with shape keys; key i moves vertex i up by 1 cm."""
    verts = [(x * 0.01, 0.0, z * 0.01) for z in range(6) for x in range(n // 6)]
    me = bpy.data.meshes.new(name)
    me.from_pydata(verts, [], [])
    obj = bpy.data.objects.new(name, me)
    (scene or bpy.context.scene).collection.objects.link(obj)
    obj.shape_key_add(name="Basis")
    for i, k in enumerate(keys):
        kb = obj.shape_key_add(name=k, from_mix=False)
        kb.value = 0.0  # new keys start at 1.0 in Blender 5
        co = kb.data[i % n].co
        kb.data[i % n].co = (co[0], co[1], co[2] + 0.01)
    return obj


def _values(obj) -> dict[str, float]:
    return {kb.name: kb.value for kb in obj.data.shape_keys.key_blocks[1:]}


# --------------------------------------------------------------------------- MB-Lab rig


@pytest.mark.mblab
@pytest.mark.parametrize("which", ["female", "male"])
def test_rig_au12_moves_exactly_mblab_table_keys(addon, mblab_blend, which):
    table = _mblab_table()
    obj = _open(mblab_blend(which))
    drivers = list(obj.data.shape_keys.animation_data.drivers)
    assert drivers and all(fc.driver.type == "SCRIPTED" for fc in drivers)

    ad = ch.detect_adapter(obj)
    assert ad.kind == "mblab_rig" and ad.obj is obj
    sliders = {mblab.slider_code(o.name) for o in bpy.data.objects if o.name.startswith("facs_rig_slider_AU")}
    assert ad.supported_aus() == sliders
    assert len(sliders) == 18 and "GZ0H" not in ad.supported_aus()
    # MB-Lab has no AU 16, 24 or 27: listed, never skipped
    assert ad.unsupported(["AU12", "AU16", "AU24", "AU27", "AU12_L"]) == ["AU12_L", "AU16", "AU24", "AU27"]

    ad.reset()
    neutral = _evaluated_key_values(obj)
    assert max(abs(v) for k, v in neutral.items() if k.startswith("Expressions_")) < 1e-7

    ad.set_aus({"AU12": 1.0})
    slider = next(o for o in bpy.data.objects if o.name == f"facs_rig_slider_AU12.{obj.name}")
    assert slider.location.x == pytest.approx(0.377, abs=1e-6)
    after = _evaluated_key_values(obj)
    moved = {k: v for k, v in after.items() if abs(v - neutral[k]) > 1e-7}
    expected = {k: min(w, 1.0) for k, w in table["AU12"].items()}
    assert set(moved) == set(expected)
    for k, w in expected.items():
        assert moved[k] == pytest.approx(w, abs=TOL), k

    # set_aus only moves sliders; AUs absent from the dict go back to 0
    ad.set_aus({"AU01": 0.5})
    assert slider.location.x == 0.0
    # repeated calls (per-call cost: benchmarks/setup_costs.py) leave exactly the last pose
    for i in range(20):
        ad.set_aus({"AU06": (i % 10) / 10, "AU12": 0.5, "AU45": 0.2})
    assert slider.location.x == pytest.approx(0.377 * 0.5, abs=1e-6)


@pytest.mark.mblab
@pytest.mark.parametrize("which", ["female", "male"])
def test_shapekey_adapter_matches_rig(addon, mblab_blend, mblab_installed, which):
    obj = _open(mblab_blend(which))
    rig = ch.detect_adapter(obj)
    assert rig.kind == "mblab_rig"
    aus = sorted(rig.supported_aus())
    rng = np.random.default_rng(5)
    combos = [{"AU12": 1.0}, {"AU06": 1.0, "AU12": 1.0}, {a: 0.5 for a in aus}]
    combos += [{a: float(v) for a, v in zip(aus, rng.uniform(0, 1, len(aus))) if v > 0.4} for _ in range(3)]
    combos += [{a: float(v) for a, v in zip(aus, rng.uniform(0, 1, len(aus)))} for _ in range(20)]
    # near 0 / 1 the rig's driver F-curves snap to their keyframes (Blender's 1e-4 threshold)
    combos += [{"AU14": 2e-5, "AU12": 0.99999, "AU45": 3e-4, "AU26": 5e-4}]
    ref = []
    for c in combos:
        rig.set_aus(c)
        ref.append(_evaluated_key_values(obj))

    _remove_sliders()
    ad = ch.detect_adapter(obj)
    assert ad.kind == "mblab_shapekeys"
    assert ad.table.from_mblab and ad.table.source == str(FACS_JSON)
    assert {"AU11", "AU13", "AU18", "AU22"} <= ad.supported_aus()  # in MB-Lab's table, no slider in the rig
    worst = 0.0
    for c, r in zip(combos, ref):
        ad.set_aus(c)
        got = _evaluated_key_values(obj)  # the orphaned drivers must not override the values
        assert got.keys() == r.keys()
        worst = max(worst, max(abs(got[k] - r[k]) for k in r))
    print(f"\n{which}: max |shape-key adapter - rig| over {len(combos)} AU combinations = {worst:.3g}")
    assert worst < TOL

    # the project's own table applies to the same mesh and names only keys it has
    own = ch.detect_adapter(obj, mblab_table="own")
    assert not own.missing, own.missing
    assert {"AU16", "AU24", "AU27", "AU12_L", "AU12_R", "AU14_L"} <= own.supported_aus()


@pytest.mark.mblab
def test_own_table_fallback_moves_the_right_region(addon, mblab_blend, no_installed_mblab):
    obj = _open(mblab_blend("female"))
    _remove_sliders()
    ad = ch.detect_adapter(obj)
    assert ad.kind == "mblab_shapekeys"
    assert not ad.table.from_mblab and ad.table.source.endswith("mblab_shapekeys.json")
    assert "own table" in ad.describe()

    ad.reset()
    base = _evaluated_verts(obj)
    centroid, peak = {}, {}
    for au in ("AU01", "AU04", "AU45", "AU12", "AU12_L", "AU15", "AU26"):
        ad.set_aus({au: 1.0})
        d = np.linalg.norm(_evaluated_verts(obj) - base, axis=1)
        peak[au] = d.max()
        centroid[au] = (base * d[:, None]).sum(0) / d.sum()
    assert min(peak.values()) > 0.002, peak  # every AU moves something by > 2 mm
    z = {au: c[2] for au, c in centroid.items()}
    # MB-Lab faces -Y with Z up: brows above eyes above mouth above jaw; subject's left = +X
    assert z["AU01"] > z["AU45"] + 0.005 and z["AU04"] > z["AU45"]
    assert z["AU45"] > z["AU12"] + 0.04
    assert z["AU12"] > z["AU26"]
    assert abs(centroid["AU12"][0]) < 0.003 and abs(centroid["AU01"][0]) < 0.003
    assert centroid["AU12_L"][0] > 0.01
    assert abs(z["AU12_L"] - z["AU12"]) < 0.01 and abs(z["AU15"] - z["AU12"]) < 0.02


def test_mblab_table_lookup_through_installed_addon(addon, tmp_path, monkeypatch):
    """The installed add-on's data/face_rig/facs_au.json is found through addon_utils."""
    _mblab_table()
    monkeypatch.delenv(mblab.ENV_FACS_JSON, raising=False)
    monkeypatch.setattr(mblab, "FACS_JSON_OVERRIDE", None)
    addon_dir = tmp_path / "MB-Lab"
    (addon_dir / "data" / "face_rig").mkdir(parents=True)
    (addon_dir / "data" / "face_rig" / "facs_au.json").write_text(FACS_JSON.read_text(encoding="utf-8"))
    (addon_dir / "__init__.py").write_text("")

    import types

    import addon_utils

    FakeModule = types.ModuleType("MB-Lab")
    FakeModule.__file__ = str(addon_dir / "__init__.py")

    monkeypatch.setattr(addon_utils, "modules", lambda *a, **k: [FakeModule])
    path, how = mblab.find_facs_au_json()
    assert path == addon_dir / "data" / "face_rig" / "facs_au.json" and "installed" in how
    table, note = mblab.mblab_table()
    assert table.from_mblab and "installed" in note
    assert table.aus["AU12"]["Expressions_mouthSmile_max"] == pytest.approx(1.0)
    assert "GZ0H" not in table.aus and "Divisor" not in table.aus

    monkeypatch.setattr(addon_utils, "modules", lambda *a, **k: [])
    assert mblab.find_facs_au_json()[0] is None
    assert not mblab.mblab_table()[0].from_mblab

    monkeypatch.setenv(mblab.ENV_FACS_JSON, str(tmp_path / "missing.json"))
    with pytest.raises(mblab.MBLabTableError, match="missing.json"):
        mblab.find_facs_au_json()


@pytest.mark.mblab
def test_rig_variants_seed_names_custom_limit_gaze(addon, mblab_blend):
    obj = _open(mblab_blend("female"))
    objs = bpy.data.objects
    s12 = objs[f"facs_rig_slider_AU12.{obj.name}"]
    s01 = objs[f"facs_rig_slider_AU01.{obj.name}"]
    s06 = objs[f"facs_rig_slider_AU06.{obj.name}"]
    gz = objs[f"facs_rig_slider_GZ0H.{obj.name}"]
    # a stray copy that drives nothing, named like Blender's dedup would
    stray = bpy.data.objects.new(f"facs_rig_slider_AU12.{obj.name}.001", None)
    bpy.context.scene.collection.objects.link(stray)
    # seed-style renamed sliders (the drivers follow the objects)
    s12.name, s01.name = "AU12", "AU1"
    s06.constraints[0].max_x = 0.5  # a slider with its own travel
    gz.location.x = 0.1

    ad = ch.detect_adapter(obj)
    assert ad.kind == "mblab_rig" and len(ad.supported_aus()) == 18
    assert ad.au_sliders["AU12"].obj is s12 and ad.au_sliders["AU01"].obj is s01
    ad.set_aus({"AU12": 1.0, "AU06": 0.5})
    assert s12.location.x == pytest.approx(0.377, abs=1e-6)
    assert s06.location.x == pytest.approx(0.25, abs=1e-6)
    assert gz.location.x == 0.0 and stray.location.x == 0.0
    vals = _evaluated_key_values(obj)
    assert vals["Expressions_mouthSmile_max"] == pytest.approx(1.0, abs=TOL)
    assert vals["Expressions_eyesHoriz_max"] == 0.0 and vals["Expressions_eyesHoriz_min"] == 0.0
    ad.set_aus({"AU06": 1.0})
    assert s06.location.x == pytest.approx(0.5, abs=1e-6) and s12.location.x == 0.0
    assert "0.377" in ad.describe() and "0.5" in ad.describe()


@pytest.mark.mblab
def test_unsupported_and_bad_au_names_are_errors(addon, mblab_blend):
    obj = _open(mblab_blend("female"))
    ad = ch.detect_adapter(obj)
    with pytest.raises(ch.CharacterError, match=r"MBlab_female.*AU16.*AU24|AU16, AU24") as ei:
        ad.set_aus({"AU12": 0.5, "AU16": 0.5, "AU24": 1.0})
    assert "MBlab_female" in str(ei.value) and "AU16" in str(ei.value) and "AU24" in str(ei.value)
    with pytest.raises(ch.CharacterError, match="AU12_L"):  # one-sided request, bilateral slider only
        ad.set_aus({"AU12_L": 1.0})
    with pytest.raises(ch.CharacterError, match="AU99"):
        ad.set_aus({"AU99": 1.0})
    with pytest.raises(ch.CharacterError, match="'smile'"):
        ad.set_aus({"smile": 1.0})
    with pytest.raises(ch.CharacterError, match=r"outside \[0, 1\]"):
        ad.set_aus({"AU12": 1.5})
    with pytest.raises(ch.CharacterError, match=r"outside"):
        ad.set_aus({"AU12": float("nan")})
    with pytest.raises(ch.CharacterError, match="number"):
        ad.set_aus({"AU12": "high"})
    assert isinstance(ch.CharacterError("x"), ValueError)
    # spellings are canonicalised
    ad.set_aus({"au1": 1.0, "12": 0.25})
    assert ad.au_sliders["AU01"].obj.location.x == pytest.approx(0.377, abs=1e-6)
    assert ad.au_sliders["AU12"].obj.location.x == pytest.approx(0.25 * 0.377, abs=1e-6)


@pytest.mark.mblab
def test_head_matrix_from_head_bone(addon, mblab_blend):
    obj = _open(mblab_blend("female"))
    ad = ch.detect_adapter(obj)
    assert ad.head_matrix_world() == obj.matrix_world  # no armature: the mesh's transform

    arm_data = bpy.data.armatures.new("MBlab_skeleton")
    arm = bpy.data.objects.new("MBlab_sk", arm_data)
    bpy.context.scene.collection.objects.link(arm)
    bpy.context.view_layer.objects.active = arm
    bpy.ops.object.mode_set(mode="EDIT")
    root = arm_data.edit_bones.new("root")
    root.head, root.tail = (0, 0, 0), (0, 0, 0.2)
    neck = arm_data.edit_bones.new("neck")
    neck.head, neck.tail, neck.parent = (0, -0.03, 1.45), (0, -0.04, 1.52), root
    head = arm_data.edit_bones.new("head")
    head.head, head.tail, head.parent = (0, -0.04, 1.52), (0, -0.04, 1.70), neck
    bpy.ops.object.mode_set(mode="OBJECT")
    obj.parent = arm
    mod = obj.modifiers.new("Armature", "ARMATURE")
    mod.object = arm
    arm.location = (1.0, 2.0, 0.0)
    arm.rotation_euler = (0.0, 0.0, math.radians(90))

    pb = arm.pose.bones["head"]
    pb.rotation_mode = "XYZ"
    pb.rotation_euler = (0.0, math.radians(30), 0.0)  # about the bone's own Y axis = world up
    bpy.context.view_layer.update()

    m = ad.head_matrix_world()
    expected_rot = Matrix.Rotation(math.radians(90), 3, "Z") @ Matrix.Rotation(math.radians(30), 3, "Z")
    assert np.allclose(np.array(m.to_3x3()), np.array(expected_rot), atol=1e-5)
    expected_loc = arm.matrix_world @ Vector((0, -0.04, 1.52))
    assert (m.translation - expected_loc).length < 1e-5
    dg = bpy.context.evaluated_depsgraph_get()
    assert np.allclose(np.array(ad.head_matrix_world(dg)), np.array(m), atol=1e-6)
    assert "bone 'head'" in ad.describe()

    # at rest the head frame has the mesh object's axes
    pb.rotation_euler = (0.0, 0.0, 0.0)
    bpy.context.view_layer.update()
    rest = ad.head_matrix_world()
    assert np.allclose(np.array(rest.to_3x3()), np.array(obj.matrix_world.to_3x3().normalized()), atol=1e-6)

    # the armature selects the same character
    assert ch.detect_adapter(arm).obj is obj


def test_head_bone_name_variants(addon):
    for name in ("mixamorig:Head", "J_Bip_C_Head", "CC_Base_Head", "DEF-head"):
        arm = bpy.data.objects.new("Rig", bpy.data.armatures.new("Rig"))
        bpy.context.scene.collection.objects.link(arm)
        bpy.context.view_layer.objects.active = arm
        bpy.ops.object.mode_set(mode="EDIT")
        for bn in ("Hips", "HeadTop_End" if name.startswith("mixamo") else "Neck", name):
            b = arm.data.edit_bones.new(bn)
            b.head, b.tail = (0, 0, 0), (0, 0, 0.1)
        bpy.ops.object.mode_set(mode="OBJECT")
        assert ch.find_head_bone(arm) == name


# --------------------------------------------------------------------------- ARKit

# spellings of the 52 names as exported by different tools
_VARIANT_NAMES = {
    "browInnerUp": "A01_BrowInnerUp",
    "browDownLeft": "A02_Brow_Down_Left",
    "browDownRight": "A03_Brow_Down_Right",
    "mouthSmileLeft": "blendShape1.mouthSmile_L",
    "mouthSmileRight": "blendShape1.mouthSmile_R",
    "eyeBlinkLeft": "EyeBlinkLeft",
    "eyeBlinkRight": "eyeblinkright",
    "eyeWideLeft": "eyeWide_l",
    "eyeWideRight": "eyeWide.R",
    "jawOpen": "JawOpen",
    "mouthRollUpper": "mouth_roll_upper",
    "cheekSquintLeft": "cheekSquintL",
    "mouthPressLeft": "Mouth_Press_Left",
}


def _arkit_mesh(skip=(), extra=()):
    names = [_VARIANT_NAMES.get(n, n) for n in ch.ARKIT_NAMES if n not in skip]
    return _mesh("ARKitFace", n=60, keys=[*names, *extra])


@pytest.mark.parametrize(("name", "expected"), [
    ("mouthSmileLeft", "mouthSmileLeft"), ("blendShape1.mouthSmile_L", "mouthSmileLeft"),
    ("A38_Mouth_Smile_Left", "mouthSmileLeft"), ("MouthSmileRight", "mouthSmileRight"),
    ("mouthSmileR", "mouthSmileRight"), ("mouthSmile.L", "mouthSmileLeft"), ("mouthSmile_l", "mouthSmileLeft"),
    ("A01_BrowInnerUp", "browInnerUp"), ("EyeBlinkLeft", "eyeBlinkLeft"), ("jawopen", "jawOpen"),
    ("blendShape2.jawLeft", "jawLeft"), ("mouthRollLower", "mouthRollLower"), ("Expressions_mouthSmile_max", None),
    ("AU12_L", None), ("mouthSmile", None), ("Basis", None),
])
def test_arkit_name_variants(name, expected):
    assert ch.arkit_canonical(name) == expected


def test_arkit_adapter(addon):
    obj = _arkit_mesh(extra=("MyCorrective",))
    obj.data.shape_keys.key_blocks["MyCorrective"].value = 0.3
    ad = ch.detect_adapter(obj)
    assert ad.kind == "arkit" and len(ad.names) == 52
    assert ad.names["browInnerUp"] == "A01_BrowInnerUp"
    assert ad.names["mouthSmileLeft"] == "blendShape1.mouthSmile_L"
    assert ad.names["eyeBlinkLeft"] == "EyeBlinkLeft"
    sup = ad.supported_aus()
    assert {"AU01", "AU02", "AU02_L", "AU02_R", "AU12", "AU12_L", "AU12_R", "AU17", "AU26", "AU27", "AU28",
            "AU43_L", "AU45_R"} <= sup
    assert not {"AU01_L", "AU28_L", "AU26_R", "AU11"} & sup

    ad.set_aus({"AU12": 1.0})
    v = _values(obj)
    moved = {k for k, x in v.items() if x and k != "MyCorrective"}
    assert moved == {"blendShape1.mouthSmile_L", "blendShape1.mouthSmile_R"}
    assert v["blendShape1.mouthSmile_L"] == 1.0 and v["MyCorrective"] == pytest.approx(0.3)

    ad.set_aus({"AU12_L": 0.5, "AU26": 1.0, "AU28": 0.4, "AU45_R": 1.0})
    v = _values(obj)
    assert v["blendShape1.mouthSmile_L"] == pytest.approx(0.5) and v["blendShape1.mouthSmile_R"] == 0.0
    assert v["JawOpen"] == pytest.approx(0.6)
    assert v["mouth_roll_upper"] == pytest.approx(0.4) and v["mouthRollLower"] == pytest.approx(0.4)
    assert v["eyeblinkright"] == 1.0 and v["EyeBlinkLeft"] == 0.0
    ad.set_aus({"AU23": 1.0, "AU24": 1.0})  # sums clip at the key's slider max
    assert _values(obj)["Mouth_Press_Left"] == pytest.approx(1.0)
    # the evaluated mesh follows (the key moves its vertex by 1 cm)
    i = [kb.name for kb in obj.data.shape_keys.key_blocks].index("Mouth_Press_Left") - 1
    assert _evaluated_verts(obj)[i, 2] == pytest.approx(obj.data.vertices[i].co.z + 0.01, abs=1e-6)
    ad.reset()
    v = _values(obj)
    assert all(x == 0 for k, x in v.items() if k != "MyCorrective") and v["MyCorrective"] == pytest.approx(0.3)
    assert "52 of 52" in ad.describe()


def test_arkit_missing_blendshape_and_drivers(addon):
    obj = _arkit_mesh(skip=("browOuterUpRight",))
    fc = obj.data.shape_keys.driver_add('key_blocks["JawOpen"].value')
    fc.driver.type = "SCRIPTED"
    fc.driver.expression = "0.0"
    ad = ch.detect_adapter(obj)
    assert "AU02" not in ad.supported_aus() and "AU02_L" in ad.supported_aus()
    assert "browOuterUpRight" in ad.missing["AU02"] and "AU02" in ad.describe()
    with pytest.raises(ch.CharacterError, match="browOuterUpRight"):
        ad.set_aus({"AU02": 1.0})

    obj.data.shape_keys.key_blocks["browOuterUpLeft"].value = 0.2
    state = ad.save_state()
    ad.set_aus({"AU27": 1.0, "AU02_L": 1.0})
    assert fc.mute  # the driver would overwrite the value
    vals = _evaluated_key_values(obj)
    assert vals["JawOpen"] == pytest.approx(1.0) and vals["browOuterUpLeft"] == pytest.approx(1.0)
    ad.restore_state(state)
    assert not fc.mute and _values(obj)["browOuterUpLeft"] == pytest.approx(0.2)


# --------------------------------------------------------------------------- built-in naming


def test_builtin_au_named_keys(addon):
    obj = _mesh("FACS Head", keys=("AU01", "AU04", "AU12_L", "AU12_R", "AU14", "ID_jaw"))
    obj["facsgen_builtin"] = 1
    obj.data.shape_keys.key_blocks["ID_jaw"].value = 0.7
    ad = ch.detect_adapter(obj)
    assert ad.kind == "builtin" and ad.label == "built-in head"
    assert ad.supported_aus() == {"AU01", "AU04", "AU12", "AU12_L", "AU12_R", "AU14"}
    ad.set_aus({"AU12": 0.8, "AU01": 0.1})
    v = _values(obj)
    assert v["AU12_L"] == pytest.approx(0.8) and v["AU12_R"] == pytest.approx(0.8)
    assert v["AU01"] == pytest.approx(0.1) and v["AU04"] == 0.0
    ad.set_aus({"AU12_R": 0.5})
    v = _values(obj)
    assert v["AU12_L"] == 0.0 and v["AU12_R"] == pytest.approx(0.5)
    with pytest.raises(ch.CharacterError, match="AU14_L"):  # one-sided request on a bilateral key
        ad.set_aus({"AU14_L": 1.0})
    ad.reset()
    assert _values(obj)["ID_jaw"] == pytest.approx(0.7) and _values(obj)["AU12_R"] == 0.0

    del obj["facsgen_builtin"]
    assert ch.detect_adapter(obj).kind == "builtin"  # by naming alone


def test_detection_order(addon):
    both = _mesh("Both", keys=(*ch.ARKIT_NAMES[:10], "AU01", "AU12"))
    assert ch.detect_adapter(both).kind == "arkit"  # ARKit before AU naming
    assert ch.detect_adapter(both, kind="builtin").kind == "builtin"
    both["facsgen_builtin"] = 1
    assert ch.detect_adapter(both).kind == "builtin"  # the built-in marker wins
    mb = _mesh("MB", keys=("Expressions_mouthSmile_max", "Expressions_mouthSmileL_max", "Expressions_browsMidVert_max",
                           "Expressions_eyeClosedL_max", "Expressions_eyeClosedR_max", *ch.ARKIT_NAMES[:10]))
    assert ch.detect_adapter(mb).kind == "mblab_shapekeys"  # MB-Lab keys before ARKit


def test_detection_errors(addon, monkeypatch):
    empty = bpy.data.objects.new("Empty", None)
    bpy.context.scene.collection.objects.link(empty)
    with pytest.raises(ch.CharacterError, match="'Empty' is a empty object, not a mesh"):
        ch.detect_adapter(empty)
    bare = _mesh("Bare")
    bare.shape_key_clear()
    with pytest.raises(ch.CharacterError, match="'Bare' has no shape keys"):
        ch.detect_adapter(bare)
    odd = _mesh("Odd", keys=("smile", "frown"))
    with pytest.raises(ch.CharacterError, match="'Odd' is not a recognised character.*'smile'"):
        ch.detect_adapter(odd)
    with pytest.raises(ch.CharacterError, match="cannot be used as arkit"):
        ch.detect_adapter(odd, kind="arkit")
    with pytest.raises(ch.CharacterError, match="unknown character kind"):
        ch.detect_adapter(odd, kind="metahuman")
    with pytest.raises(ch.CharacterError, match="no character object"):
        ch.detect_adapter(None)

    mb = _mesh("MBKeys", keys=("Expressions_mouthSmile_max", "Expressions_mouthSmile_min",
                               "Expressions_browsMidVert_max", "Expressions_eyeClosedL_max"))
    monkeypatch.setattr(mblab, "FACS_JSON_OVERRIDE", None)
    monkeypatch.setenv(mblab.ENV_FACS_JSON, "/nonexistent/facs_au.json")
    with pytest.raises(ch.CharacterError, match="/nonexistent/facs_au.json"):
        ch.detect_adapter(mb)

    scene = bpy.context.scene
    with pytest.raises(ch.CharacterError, match="'Odf' not found.*'Odd'"):
        ch.find_character(scene, "Odf")
    assert ch.find_character(scene, "Odd") is odd
    other = bpy.data.objects.new("Elsewhere", bpy.data.meshes.new("Elsewhere"))
    with pytest.raises(ch.CharacterError, match="'Elsewhere' exists but is not in scene"):
        ch.find_character(scene, other.name)


def test_find_character_builtin_head(addon):
    head = pytest.importorskip("facs_dataset_generator.pipeline.head")
    if not hasattr(head, "add_builtin_head"):
        pytest.skip("pipeline.head has no add_builtin_head yet")
    scene = bpy.context.scene
    obj = ch.find_character(scene, None)
    assert head.is_builtin_head(obj)
    assert ch.find_character(scene, None) is obj  # found, not added twice
    ad = ch.detect_adapter(obj)
    assert ad.kind == "builtin" and "AU12" in ad.supported_aus()
    ad.set_aus({"AU12": 1.0})
    ad.reset()
