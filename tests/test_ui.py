# SPDX-License-Identifier: GPL-3.0-or-later
"""N-panel UI: panels draw on every kind of scene, menus reach every user-facing operator,
presets round-trip, settings survive a .blend round trip, the modal Generate operator
(driven by fake timer events) writes the same dataset as ``facsgen generate``, and
cancelling leaves a valid, resumable dataset."""

from __future__ import annotations

import filecmp
import importlib.util
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest
from conftest import MBLAB_DIR

bpy = pytest.importorskip("bpy")

PKG = "facs_dataset_generator"


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(f"{PKG}.{module}") is not None
    except ImportError:
        return False


# --------------------------------------------------------------------------- recording layout stub

_LAYOUT_FUNCS = bpy.types.UILayout.bl_rna.functions
_ICONS = set(_LAYOUT_FUNCS["label"].parameters["icon"].enum_items.keys())
_CONTAINERS = {"row", "column", "box", "split", "column_flow", "grid_flow", "panel", "panel_prop"}


class OpProps:
    """What ``layout.operator`` returns: operator properties can be set on it."""

    def __init__(self, idname):
        object.__setattr__(self, "idname", idname)
        object.__setattr__(self, "props", {})

    def __setattr__(self, name, value):
        self.props[name] = value


class Layout:
    """Records every UILayout call (checking its keyword arguments, icons and property names
    against Blender's RNA, as the real layout would) and returns itself for containers."""

    def __init__(self, log=None):
        object.__setattr__(self, "log", [] if log is None else log)

    def __setattr__(self, name, value):  # layout flags: use_property_split, alert, enabled, ...
        assert name in bpy.types.UILayout.bl_rna.properties, f"UILayout has no attribute {name!r}"
        object.__setattr__(self, name, value)

    def __getattr__(self, name):
        if name not in _LAYOUT_FUNCS:
            raise AttributeError(f"UILayout has no function {name!r}")
        params = _LAYOUT_FUNCS[name].parameters
        names = [p.identifier for p in params if not p.is_output]

        def call(*args, **kwargs):
            for k in kwargs:
                assert k in names, f"UILayout.{name}() got an unexpected keyword argument {k!r}"
            assert len(args) <= len(names), f"UILayout.{name}(): too many positional arguments"
            bound = dict(zip(names, args))
            bound.update(kwargs)
            icon = bound.get("icon")
            if icon is not None:
                assert icon in _ICONS, f"unknown icon {icon!r} in UILayout.{name}()"
            if name in ("prop", "prop_search", "template_list"):
                self._check_props(name, bound)
            self.log.append((name, bound))
            if name in _CONTAINERS:
                return Layout(self.log)
            if name == "operator":
                return OpProps(bound["operator"])
            return None

        return call

    @staticmethod
    def _check_props(name, b):
        pairs = {
            "prop": [("data", "property")],
            "prop_search": [("data", "property"), ("search_data", "search_property")],
            "template_list": [("dataptr", "propname"), ("active_dataptr", "active_propname")],
        }[name]
        for d, p in pairs:
            data, prop = b[d], b[p]
            assert prop in data.bl_rna.properties, f"{data!r} has no property {prop!r}"

    # queries -----------------------------------------------------------
    def calls(self, kind):
        return [b for n, b in self.log if n == kind]

    def operators(self):
        return [b["operator"] for b in self.calls("operator")]

    def labels(self):
        return [b.get("text", "") for b in self.calls("label")]

    def props(self):
        return [b["property"] for b in self.calls("prop")]


def _ns(layout):
    return types.SimpleNamespace(layout=layout, bl_idname="stub")


def _draw_all(context):
    """Poll + draw every panel, and draw every UIList row, into recording layouts."""
    from facs_dataset_generator import panels

    out = {}
    for cls in panels.CLASSES:
        if issubclass(cls, bpy.types.Panel):
            if not cls.poll(context):
                out[cls.__name__] = None
                continue
            lay = Layout()
            cls.draw(_ns(lay), context)
            out[cls.__name__] = lay
    s = context.scene.facsgen
    lay = Layout()
    for i, e in enumerate(s.emotions):
        panels.FACSGEN_UL_emotions.draw_item(None, context, lay, s, e, 0, s, "active_emotion_index", i)
        for j, r in enumerate(e.aus):
            panels.FACSGEN_UL_aus.draw_item(None, context, lay, e, r, 0, e, "active_au_index", j)
    out["ulists"] = lay
    return out


# --------------------------------------------------------------------------- scenes

TEST_PRESET = {
    "name": "ui_test",
    "emotions": {
        "Joy": {"AU06": [0.2, 0.6], "AU12": [0.3, 0.9]},
        "Sadness": {"AU01": [0.2, 0.5], "AU04": [0.1, 0.4], "AU15": [0.2, 0.5]},
        "Anger": {"AU04": [0.3, 0.7], "AU05": [0.2, 0.4], "AU07": [0.2, 0.5], "AU23": [0.1, 0.3]},
        "Fear": {"AU01": [0.2, 0.4], "AU02": [0.2, 0.5], "AU05": [0.2, 0.5], "AU20": [0.2, 0.4], "AU26": [0.3, 0.5]},
        "Disgust": {"AU09": [0.2, 0.5], "AU15": [0.1, 0.3], "AU16": [0.1, 0.3]},
        "Surprise": {"AU01": [0.2, 0.4], "AU02": [0.2, 0.5], "AU05": [0.3, 0.5], "AU26": [0.3, 0.5]},
        "Neutral": {},
        "Contempt": {"AU12_L": [0.2, 0.5], "AU14_L": [0.2, 0.5]},
    },
}

ARKIT_NAMES = (
    "browInnerUp", "browDownLeft", "browDownRight", "browOuterUpLeft", "browOuterUpRight",
    "eyeWideLeft", "eyeWideRight", "cheekSquintLeft", "cheekSquintRight", "mouthSmileLeft",
    "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight", "jawOpen", "eyeBlinkLeft", "eyeBlinkRight",
)


def _load_test_preset(addon):
    from facs_dataset_generator import settings as st
    from facs_dataset_generator.core import config as cfg

    st.load_preset_into(bpy.context.scene.facsgen, cfg.preset_from_dict(TEST_PRESET, source="test"))


def _arkit_mesh(name="ARKit Face"):
    import bmesh

    me = bpy.data.meshes.new(name)
    bm = bmesh.new()
    bmesh.ops.create_uvsphere(bm, u_segments=16, v_segments=8, radius=0.1)
    bm.to_mesh(me)
    bm.free()
    obj = bpy.data.objects.new(name, me)
    bpy.context.scene.collection.objects.link(obj)
    obj.shape_key_add(name="Basis")
    for n in ARKIT_NAMES:
        kb = obj.shape_key_add(name=n, from_mix=False)
        kb.data[0].co.z += 0.01
    return obj


def _scene_empty(addon):
    return None


def _scene_builtin(addon):
    if not _has("pipeline.head"):
        pytest.skip("pipeline.head not written yet")
    from facs_dataset_generator.pipeline import head

    obj = head.add_builtin_head(bpy.context.scene)
    bpy.context.scene.facsgen.character = obj
    return obj


def _scene_builtin_implicit(addon):
    """The built-in head in the scene but no character chosen (the default)."""
    if not _has("pipeline.head"):
        pytest.skip("pipeline.head not written yet")
    from facs_dataset_generator.pipeline import head

    return head.add_builtin_head(bpy.context.scene)


def _scene_arkit(addon):
    obj = _arkit_mesh()
    bpy.context.scene.facsgen.character = obj
    return obj


def _scene_mblab(addon):
    p = MBLAB_DIR / "mblab_female_facs.blend"
    if not p.is_file():
        pytest.skip("MB-Lab test character not available")
    bpy.ops.wm.open_mainfile(filepath=str(p))
    obj = bpy.data.objects["MBlab_female"]
    bpy.context.scene.facsgen.character = obj
    return obj


def _scene_mblab_shapekeys(addon):
    """MB-Lab character without its slider rig (shape-key adapter)."""
    obj = _scene_mblab(addon)
    for o in list(bpy.data.objects):
        if o.name.startswith("facs_rig_slider"):
            bpy.data.objects.remove(o, do_unlink=True)
    return obj


SCENES = {
    "empty": _scene_empty,
    "builtin": _scene_builtin,
    "builtin_implicit": _scene_builtin_implicit,
    "arkit": _scene_arkit,
    "mblab_rig": _scene_mblab,
    "mblab_shapekeys": _scene_mblab_shapekeys,
}


# --------------------------------------------------------------------------- drawing


@pytest.mark.parametrize("kind", list(SCENES))
@pytest.mark.parametrize("with_emotions", [False, True], ids=["no_table", "table"])
def test_panels_poll_and_draw(addon, kind, with_emotions):
    from facs_dataset_generator import panels

    obj = SCENES[kind](addon)
    if with_emotions:
        _load_test_preset(addon)
    panels.invalidate_character_info()
    ctx = bpy.context
    drawn = _draw_all(ctx)
    names = [c.__name__ for c in panels.CLASSES if issubclass(c, bpy.types.Panel)]
    assert set(names) == {
        "FACSGEN_PT_character", "FACSGEN_PT_emotions", "FACSGEN_PT_presets", "FACSGEN_PT_camera",
        "FACSGEN_PT_render", "FACSGEN_PT_preview", "FACSGEN_PT_generate",
    }
    for n in names:
        assert drawn[n] is not None, f"{n}.poll() is False with Scene.facsgen registered"
        assert drawn[n].log, f"{n} drew nothing"
    for cls in panels.CLASSES:
        if issubclass(cls, bpy.types.Panel):
            assert cls.bl_category == "FACS" and cls.bl_space_type == "VIEW_3D" and cls.bl_region_type == "UI"
    gen = drawn["FACSGEN_PT_generate"]
    assert "facsgen.generate_dataset" in gen.operators()
    char = drawn["FACSGEN_PT_character"]
    assert "facsgen.add_builtin_head" in char.operators()
    assert "character" in char.props()
    emo = drawn["FACSGEN_PT_emotions"]
    if with_emotions:
        lists = [b["listtype_name"] for b in emo.calls("template_list")]
        assert lists == ["FACSGEN_UL_emotions", "FACSGEN_UL_aus"]
        assert {"facsgen.add_au", "facsgen.remove_au"} <= set(emo.operators())
        ul = drawn["ulists"]
        assert {"min", "max", "enabled"} <= set(ul.props())
    else:
        assert "facsgen.reset_emotions" in emo.operators()
    if obj is not None and _has("pipeline.characters"):
        info = panels.character_info(ctx)
        assert info.obj == obj
        if kind == "arkit":
            assert info.kind == "arkit", info.error
        elif kind.startswith("builtin"):
            assert info.kind == "builtin", info.error
        elif kind.startswith("mblab"):
            assert info.kind == kind, info.error
        labels = " ".join(char.labels())
        assert ("Kind:" in labels) or info.error
        if info.supported is not None and with_emotions:
            bad = panels.unsupported_aus(ctx)
            ul_labels = drawn["ulists"].labels()
            marked = [t for t in ul_labels if t.endswith("(n/a)")]
            if bad:
                assert marked, "AUs the character cannot express must be marked"
                assert any("cannot express" in t for t in emo.labels())
            if kind == "arkit":  # the test ARKit face has no nose sneer / dimpler / ...
                assert "AU09" in bad.get("Disgust", []) and any(t.startswith("AU09") for t in marked)
            if kind.startswith("builtin"):
                assert not marked


def test_panel_draw_while_running_and_preview(addon, monkeypatch):
    """The Generate panel shows a progress bar (done, samples/s, ETA) while a job runs."""
    from facs_dataset_generator.operators import generate

    _load_test_preset(addon)
    s = bpy.context.scene.facsgen
    s.progress = 0.25
    s.status = "2/8 samples  1.50 samples/s  ETA 00:00:04"
    monkeypatch.setattr(generate, "is_running", lambda: True)
    drawn = _draw_all(bpy.context)
    gen = drawn["FACSGEN_PT_generate"]
    bars = gen.calls("progress")
    assert bars and bars[0]["factor"] == pytest.approx(0.25) and "samples/s" in bars[0]["text"]
    assert "facsgen.cancel_generation" in gen.operators()
    assert "facsgen.generate_dataset" not in gen.operators()


# --------------------------------------------------------------------------- menus (F3)

USER_FACING = {
    "facsgen.generate_dataset", "facsgen.preview_sample", "facsgen.add_builtin_head", "facsgen.map_landmarks",
    "facsgen.show_landmarks", "facsgen.validate_dataset", "facsgen.load_preset", "facsgen.save_preset",
}


def _menu_operators(ctx):
    from facs_dataset_generator import panels

    found = {}
    for menu_name, fn in panels.MENU_HOOKS:
        menu = getattr(bpy.types, menu_name)
        assert fn in menu._dyn_ui_initialize(), f"{fn.__name__} is not appended to {menu_name}"
        lay = Layout()
        fn(_ns(lay), ctx)
        todo = [b["menu"] for b in lay.calls("menu")]
        found[menu_name] = set(lay.operators())
        while todo:
            sub = getattr(bpy.types, todo.pop())
            sl = Layout()
            sub.draw(_ns(sl), ctx)
            found[menu_name] |= set(sl.operators())
            todo += [b["menu"] for b in sl.calls("menu")]
    return found


def test_every_user_facing_operator_is_in_a_menu(addon):
    from facs_dataset_generator import operators

    found = _menu_operators(bpy.context)
    everything = set().union(*found.values())
    assert USER_FACING <= everything, f"not in any menu: {USER_FACING - everything}"
    assert "facsgen.add_builtin_head" in found["VIEW3D_MT_mesh_add"]
    assert {"facsgen.generate_dataset", "facsgen.preview_sample", "facsgen.map_landmarks", "facsgen.show_landmarks",
            "facsgen.validate_dataset", "facsgen.load_preset", "facsgen.save_preset"} <= found["TOPBAR_MT_render"]
    # every registered, non-internal operator of the extension is reachable (F3 searches menus)
    for cls in operators.CLASSES:
        if "INTERNAL" not in getattr(cls, "bl_options", set()) and cls.bl_idname not in (
                "facsgen.add_au", "facsgen.remove_au"):  # these edit the selected list row: panel only
            assert cls.bl_idname in everything, f"{cls.bl_idname} is in no menu"
        assert cls.__doc__ and len(cls.__doc__.split()) >= 5, f"{cls.__name__} needs a tooltip"


def test_menus_and_handlers_removed_on_unregister(addon):
    from facs_dataset_generator import panels, registration
    from facs_dataset_generator.panels import overlay

    overlay.set_landmarks([[0, 0, 0]] * 468, "x")
    assert overlay.handlers_active()
    registration.unregister()
    try:
        for menu_name, fn in panels.MENU_HOOKS:
            assert fn not in getattr(bpy.types, menu_name)._dyn_ui_initialize()
        assert not overlay.handlers_active()
        for attr, fn in panels._HANDLERS:
            assert fn not in getattr(bpy.app.handlers, attr)
        assert not hasattr(bpy.types.Scene, "facsgen")
    finally:
        registration.register()
    assert panels.menu_render in bpy.types.TOPBAR_MT_render._dyn_ui_initialize()


def test_overlay_geometry(addon):
    """Camera frustums are built around the camera matrices (drawing itself needs a GPU)."""
    import numpy as np

    from facs_dataset_generator.panels import overlay

    m = np.eye(4)
    m[:3, 3] = (0.0, -1.0, 0.0)
    segs = overlay.frustum_lines(m[None].astype(np.float32), size=0.1)
    assert segs.shape[1] == 3 and len(segs) % 2 == 0
    assert np.allclose(segs[0], (0, -1, 0))  # apex at the camera
    overlay.set_cameras([(0, -1, 0), (1, -1, 0)], target=(0, 0, 0), matrices=np.stack([m, m]))
    assert overlay.cameras_shown() and len(overlay.camera_lines()) > 4
    overlay.clear_all()
    assert not overlay.cameras_shown() and not overlay.landmarks_shown()


# --------------------------------------------------------------------------- presets


@pytest.fixture
def user_presets(addon, tmp_path):
    """Add-on preferences with a user presets folder under tmp_path."""
    prefs = bpy.context.preferences
    entry = prefs.addons.get(PKG) or prefs.addons.new()
    entry.module = PKG
    d = tmp_path / "user_presets"
    entry.preferences.user_preset_dir = str(d)
    yield d
    entry = prefs.addons.get(PKG)
    if entry is not None:
        entry.preferences.user_preset_dir = ""


def _snapshot():
    from facs_dataset_generator import settings as st

    return st.settings_as_dict(bpy.context.scene.facsgen)


def test_preset_round_trip(addon, user_presets):
    from facs_dataset_generator import settings as st

    _load_test_preset(addon)
    s = bpy.context.scene.facsgen
    s.emotions[1].enabled = False
    s.emotions[0].aus[0].min = 0.123
    s.emotions[0].aus[1].max = 0.987
    s.emotions[7].aus[0].min = 0.0
    bpy.ops.facsgen.save_preset(name="round trip")
    path = user_presets / "round trip.json"
    assert path.is_file()
    before = _snapshot()
    assert before["preset"] == "round trip"
    # scramble, then load
    s.emotions[0].aus[0].min = 0.5
    s.emotions[0].aus.remove(1)
    s.emotions[3].aus.clear()
    s.preset = "x"
    assert _snapshot() != before
    bpy.ops.facsgen.load_preset(filepath=str(path))
    assert _snapshot() == before
    # the user preset is listed in the Presets panel and the Load Preset menu
    drawn = _draw_all(bpy.context)
    assert "round trip" in drawn["FACSGEN_PT_presets"].labels()
    lay = Layout()
    from facs_dataset_generator import panels

    panels.FACSGEN_MT_load_preset.draw(_ns(lay), bpy.context)
    assert str(path) in [b.props.get("filepath") for b in []] or any(
        "round trip" == b.get("text") for b in lay.calls("operator"))
    # the file is the bpy-free preset format
    data = json.loads(path.read_text())
    assert data["emotions"]["Joy"]["AU06"][0] == pytest.approx(0.123, abs=1e-6)
    assert st.preset_from_settings(s).emotions["Joy"].aus["AU06"][0] == pytest.approx(0.123, abs=1e-6)


def test_save_preset_refuses_bundled_and_existing(addon, user_presets):
    from facs_dataset_generator.core import config as cfg

    _load_test_preset(addon)
    bundled_dir = cfg.PRESET_DIR
    before = {p.name: p.read_bytes() for p in bundled_dir.glob("*.json")}
    target = bundled_dir / "should_not_exist.json"
    with pytest.raises(RuntimeError, match="bundled preset and read-only"):
        bpy.ops.facsgen.save_preset(name="x", filepath=str(target))
    assert not target.exists()
    for name in cfg.bundled_presets():
        with pytest.raises(RuntimeError, match="read-only"):
            bpy.ops.facsgen.save_preset(name=name, overwrite=True)
        assert not (user_presets / f"{name}.json").exists()
    assert {p.name: p.read_bytes() for p in bundled_dir.glob("*.json")} == before
    bpy.ops.facsgen.save_preset(name="mine")
    with pytest.raises(RuntimeError, match="already exists"):
        bpy.ops.facsgen.save_preset(name="mine")
    bpy.ops.facsgen.save_preset(name="mine", overwrite=True)


@pytest.mark.parametrize("content, message", [
    ("{ not json", "not valid JSON"),
    ('{"name": "x"}', "missing 'emotions'"),
    ('{"emotions": {"Joy": {"AU12": [0.9, 0.1]}}}', "min 0.9 > max 0.1"),
    ('{"emotions": {"Joy": {"AU99": [0.1, 0.2]}}}', "AU99"),
    ('{"emotions": {"Happyness": {}}}', "unknown emotion"),
    ('{"emotions": {"Joy": {"AU12": [0.1, 1.5]}}}', r"\[0, 1\]"),
])
def test_corrupt_preset_clear_error_and_no_change(addon, tmp_path, content, message):
    _load_test_preset(addon)
    before = _snapshot()
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    with pytest.raises(RuntimeError, match=message) as err:
        bpy.ops.facsgen.load_preset(filepath=str(bad))
    assert "Traceback" not in str(err.value)
    assert _snapshot() == before


def test_add_remove_au_and_min_max_coupling(addon):
    _load_test_preset(addon)
    s = bpy.context.scene.facsgen
    s.active_emotion_index = 0  # Joy: AU06, AU12
    bpy.ops.facsgen.add_au(au="AU09", min=0.1, max=0.3)
    joy = s.emotions[0]
    assert [r.au for r in joy.aus] == ["AU06", "AU09", "AU12"]
    with pytest.raises(RuntimeError, match="already has AU09"):
        bpy.ops.facsgen.add_au(au="AU09")
    joy.active_au_index = 1
    bpy.ops.facsgen.remove_au()
    assert [r.au for r in joy.aus] == ["AU06", "AU12"]
    r = joy.aus[0]
    r.min, r.max = 0.2, 0.4
    r.min = 0.7
    assert r.max == pytest.approx(0.7)
    r.max = 0.1
    assert r.min == pytest.approx(0.1)


def test_reset_emotions(addon):
    from facs_dataset_generator.core import config as cfg

    if "emfacs" not in cfg.bundled_presets():
        pytest.skip("au_presets/emfacs.json not written yet")
    bpy.ops.facsgen.reset_emotions()
    s = bpy.context.scene.facsgen
    assert [e.name for e in s.emotions] == list(cfg.EMOTIONS)
    joy = {r.au for r in s.emotions["Joy"].aus}
    assert joy == {"AU06", "AU12"}


# --------------------------------------------------------------------------- settings in the .blend


def test_settings_survive_blend_round_trip(addon, tmp_path):
    from facs_dataset_generator import settings as st

    _load_test_preset(addon)
    s = bpy.context.scene.facsgen
    obj = _arkit_mesh("My Face")
    src = _arkit_mesh("Cam Source")
    s.character = obj
    s.camera_source = src
    s.camera_vertex_group = "ring"
    s.emotions[2].enabled = False
    s.emotions[0].weight = 2.5
    s.emotions[4].count = 7
    s.emotions[0].aus[1].min = 0.345
    s.distribution = "counts"
    s.sampling = "grid"
    s.grid_steps = 4
    s.count, s.seed = 123, 42
    s.camera_layout = "grid"
    s.views, s.yaw_min, s.pitch_max = 5, -33.0, 12.5
    s.distance, s.roll_jitter, s.focal_length = 0.6, 3.0, 85.0
    s.lighting = "scene"
    s.engine, s.device = "BLENDER_EEVEE_NEXT", "cpu"
    s.resolution_x, s.resolution_y, s.resolution_percentage = 640, 480, 50
    s.samples, s.denoise, s.resume = 4, False, False
    s.output_dir = str(tmp_path / "out")
    s.identity, s.allow_drop_unsupported = False, True
    s.preview_emotion, s.preview_index, s.preview_view = "Fear", 3, 2
    s.active_emotion_index = 4
    before = st.settings_as_dict(s)
    path = tmp_path / "settings.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    bpy.ops.wm.read_factory_settings(use_empty=True)
    assert st.settings_as_dict(bpy.context.scene.facsgen) != before
    bpy.ops.wm.open_mainfile(filepath=str(path))
    after = st.settings_as_dict(bpy.context.scene.facsgen)
    assert after == before
    assert bpy.context.scene.facsgen.character == bpy.data.objects["My Face"]


def test_run_state_reset_on_load(addon, tmp_path):
    s = bpy.context.scene.facsgen
    s.is_running, s.progress, s.status = True, 0.5, "4/8"
    path = tmp_path / "running.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    bpy.ops.wm.open_mainfile(filepath=str(path))
    s = bpy.context.scene.facsgen
    assert (s.is_running, s.progress, s.status) == (False, 0.0, "")


def test_to_config_distribution(addon, tmp_path):
    from facs_dataset_generator import settings as st
    from facs_dataset_generator.core import config as cfg

    _load_test_preset(addon)
    s = bpy.context.scene.facsgen
    s.output_dir = str(tmp_path)
    conf, preset = st.to_config(s)
    assert conf.emotions == cfg.EMOTIONS and conf.emotion_weights == {} and conf.emotion_counts == {}
    s.emotions[0].weight = 3.0
    conf, _ = st.to_config(s)
    assert conf.emotion_weights["Joy"] == 3.0
    s.distribution = "counts"
    with pytest.raises(cfg.ConfigError, match="count of 0"):
        st.to_config(s)
    for e in s.emotions:
        e.count = 2
    s.emotions[1].enabled = False
    conf, _ = st.to_config(s)
    assert conf.count == 14 and "Sadness" not in conf.emotion_counts
    for e in s.emotions:
        e.enabled = False
    with pytest.raises(cfg.ConfigError, match="no emotion"):
        st.to_config(s)


# --------------------------------------------------------------------------- generation (needs the pipeline)

GEN_ARGS = dict(count=4, seed=3, res=32, views=2, emotions=("Joy", "Sadness"))


def _need_runner():
    if not _has("pipeline.runner"):
        pytest.skip("pipeline.runner not written yet")


def _cli(*args, check=True):
    cmd = [sys.executable, "-m", f"{PKG}.cli", *map(str, args)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if check:
        assert r.returncode == 0, f"{' '.join(cmd)} -> {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


def _cli_generate(out, *extra):
    a = GEN_ARGS
    return _cli("generate", "--out", out, "--count", a["count"], "--seed", a["seed"], "--resolution", a["res"],
                "--samples", 1, "--no-denoise", "--device", "cpu", "--views", a["views"],
                "--emotions", ",".join(a["emotions"]), "--quiet", *extra)


@pytest.fixture(scope="module")
def cli_reference(tmp_path_factory):
    """The dataset `facsgen generate` writes with GEN_ARGS (a separate process)."""
    _need_runner()
    out = tmp_path_factory.mktemp("cli") / "ds"
    _cli_generate(out)
    return out


def _ui_settings(out, resume=False):
    """Scene settings equal to GEN_ARGS (the panel's defaults match the CLI's otherwise)."""
    bpy.ops.facsgen.reset_emotions()
    s = bpy.context.scene.facsgen
    a = GEN_ARGS
    for e in s.emotions:
        e.enabled = e.name in a["emotions"]
    s.output_dir = str(out)
    s.count, s.seed, s.views = a["count"], a["seed"], a["views"]
    s.resolution_x = s.resolution_y = a["res"]
    s.samples, s.denoise, s.device, s.resume = 1, False, "cpu", resume
    return s


class FakeWM:
    def __init__(self):
        self.calls = []

    def event_timer_add(self, step, window=None):
        self.calls.append(("timer_add", step))
        return "timer"

    def event_timer_remove(self, timer):
        self.calls.append(("timer_remove", timer))

    def modal_handler_add(self, op):
        self.calls.append(("modal_handler_add", op))
        return True

    def progress_begin(self, lo, hi):
        self.calls.append(("progress_begin", lo, hi))

    def progress_update(self, v):
        self.calls.append(("progress_update", v))

    def progress_end(self):
        self.calls.append(("progress_end",))


class FakeWorkspace:
    def __init__(self):
        self.texts = []

    def status_text_set(self, text):
        self.texts.append(text)


class FakeOp:
    """Stands in for the operator instance (bpy cannot instantiate operators outside Blender's UI)."""

    def __init__(self):
        self.reports = []

    def report(self, kind, message):
        self.reports.append((set(kind), message))


def _fake_context():
    return types.SimpleNamespace(scene=bpy.context.scene, window_manager=FakeWM(), window=object(),
                                 workspace=FakeWorkspace(), view_layer=bpy.context.view_layer,
                                 preferences=bpy.context.preferences, screen=None)


def _event(kind, value="NOTHING"):
    return types.SimpleNamespace(type=kind, value=value)


def _scene_state():
    sc = bpy.context.scene
    r = sc.render
    return (r.engine, r.resolution_x, r.resolution_y, r.resolution_percentage, r.filepath,
            sc.camera.name if sc.camera else None, sc.world.name if sc.world else None,
            sorted(o.name for o in sc.objects))


def _start_modal(monkeypatch):
    from facs_dataset_generator.operators import generate

    monkeypatch.setattr(generate, "_synchronous", lambda context: False)
    op, ctx = FakeOp(), _fake_context()
    res = generate.FACSGEN_OT_generate_dataset.invoke(op, ctx, _event("LEFTMOUSE", "PRESS"))
    assert res == {"RUNNING_MODAL"}, op.reports
    assert ("modal_handler_add", op) in ctx.window_manager.calls
    assert generate.is_running()
    return generate.FACSGEN_OT_generate_dataset, op, ctx


def _dataset_files(out):
    out = Path(out)
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())


def _assert_same_dataset(a, b):
    a, b = Path(a), Path(b)
    fa, fb = _dataset_files(a), _dataset_files(b)
    assert fa == fb
    csvs = [f for f in fa if f.startswith("annotations/")]
    assert csvs
    for f in csvs + ["index.csv"]:
        assert filecmp.cmp(a / f, b / f, shallow=False), f"{f} differs"
    import numpy as np

    for f in fa:
        if f.endswith(".png"):
            ia = bpy.data.images.load(str(a / f))
            ib = bpy.data.images.load(str(b / f))
            pa, pb = np.array(ia.pixels[:]), np.array(ib.pixels[:])
            assert pa.shape == pb.shape and np.abs(pa - pb).max() < 2 / 255, f"{f} differs"


def test_modal_generate_matches_cli(addon, tmp_path, monkeypatch, cli_reference):
    from facs_dataset_generator.operators import generate

    out = tmp_path / "ui"
    _ui_settings(out)
    scene_before = _scene_state()
    op_cls, op, ctx = _start_modal(monkeypatch)
    ticks = 0
    res = {"RUNNING_MODAL"}
    while res == {"RUNNING_MODAL"}:
        assert op_cls.modal(op, ctx, _event("MOUSEMOVE")) == {"PASS_THROUGH"}  # the UI stays usable
        res = op_cls.modal(op, ctx, _event("TIMER"))
        ticks += 1
        assert ticks <= GEN_ARGS["count"] + 1
    assert res == {"FINISHED"}, op.reports
    assert ticks in (GEN_ARGS["count"], GEN_ARGS["count"] + 1)
    assert not generate.is_running()
    s = bpy.context.scene.facsgen
    assert not s.is_running and s.progress == 1.0
    wm = ctx.window_manager.calls
    assert wm[0] == ("progress_begin", 0, GEN_ARGS["count"]) or ("progress_begin", 0, GEN_ARGS["count"]) in wm
    assert ("progress_update", GEN_ARGS["count"]) in wm and wm[-1] == ("progress_end",)
    texts = ctx.workspace.texts
    assert any("samples/s" in (t or "") and "ETA" in (t or "") and "/4" in (t or "") for t in texts)
    assert texts[-1] is None  # status bar given back
    assert ("timer_remove", "timer") in wm
    assert any("INFO" in k and "Wrote 4 new samples" in m for k, m in op.reports), op.reports
    assert _scene_state() == scene_before  # render settings, camera, world, objects put back
    _assert_same_dataset(cli_reference, out)
    assert _cli("validate", out).returncode == 0


def test_cancel_keeps_valid_dataset_and_resume_completes(addon, tmp_path, monkeypatch, cli_reference):
    from facs_dataset_generator.operators import generate

    out = tmp_path / "cancelled"
    _ui_settings(out)
    scene_before = _scene_state()
    op_cls, op, ctx = _start_modal(monkeypatch)
    for _ in range(2):
        assert op_cls.modal(op, ctx, _event("TIMER")) == {"RUNNING_MODAL"}
    assert bpy.context.scene.facsgen.progress == pytest.approx(0.5)
    assert op_cls.modal(op, ctx, _event("ESC", "PRESS")) == {"CANCELLED"}
    assert not generate.is_running()
    assert any("WARNING" in k and "Resume" in m for k, m in op.reports), op.reports
    assert ctx.workspace.texts[-1] is None and ctx.window_manager.calls[-1] == ("progress_end",)
    assert _scene_state() == scene_before
    r = _cli("validate", out, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    pngs = [f for f in _dataset_files(out) if f.endswith(".png")]
    assert len(pngs) == 2
    _cli_generate(out, "--resume")
    assert _cli("validate", out).returncode == 0
    _assert_same_dataset(cli_reference, out)


def test_cancel_button_and_errors_reported(addon, tmp_path, monkeypatch):
    """A bad setting is reported as one clear ERROR line before anything renders; the Cancel button stops a run."""
    from facs_dataset_generator.operators import generate

    _need_runner()
    s = _ui_settings(tmp_path / "x")
    s.character = _arkit_mesh("Not A Face")  # an ARKit sphere: no landmark map for it
    op, ctx = FakeOp(), _fake_context()
    monkeypatch.setattr(generate, "_synchronous", lambda context: False)
    assert generate.FACSGEN_OT_generate_dataset.invoke(op, ctx, _event("NONE")) == {"CANCELLED"}
    assert op.reports and "ERROR" in op.reports[0][0] and "Traceback" not in op.reports[0][1]
    assert not generate.is_running() and not (tmp_path / "x" / "images").exists()
    assert bpy.context.scene.facsgen.status.startswith("Error")
    # the same through bpy.ops (background mode: execute runs synchronously)
    monkeypatch.undo()
    with pytest.raises(RuntimeError) as err:
        bpy.ops.facsgen.generate_dataset()
    assert "Traceback" not in str(err.value)
    # cancel button
    s.character = None
    op_cls, op, ctx = _start_modal(monkeypatch)
    bpy.ops.facsgen.cancel_generation()
    assert op_cls.modal(op, ctx, _event("TIMER")) == {"CANCELLED"}
    assert not generate.is_running()


def test_device_menu_offers_every_backend(addon, tmp_path, monkeypatch):
    """The panel's Device menu and the preferences' Render Device offer every device the CLI
    takes (core.config.DEVICES); a backend picked there reaches the config, and one this
    machine lacks stops Generate with one error naming it, before anything is written."""
    from facs_dataset_generator import settings as st
    from facs_dataset_generator.core import config as cfg
    from facs_dataset_generator.operators import generate
    from facs_dataset_generator.pipeline import render_setup

    items = st.FACSGEN_PG_settings.bl_rna.properties["device"].enum_items
    assert tuple(i.identifier for i in items) == cfg.DEVICES
    assert all(i.description for i in items)
    prefs_cls = next(c for c in (getattr(st, n) for n in dir(st)) if isinstance(c, type)
                     and issubclass(c, bpy.types.AddonPreferences) and c is not bpy.types.AddonPreferences)
    prefs_items = prefs_cls.bl_rna.properties["render_device"].enum_items
    assert tuple(i.identifier for i in prefs_items) == tuple(d.upper() for d in cfg.DEVICES)

    _need_runner()
    s = _ui_settings(tmp_path / "x")
    s.device = "cuda"
    assert st.to_config(s)[0].render.device == "cuda"
    s.device = "auto"  # Auto follows the preferences' choice
    monkeypatch.setattr(st, "_addon_prefs", lambda context=None: types.SimpleNamespace(
        render_device="OPTIX", default_output_dir="", user_preset_dir=""))
    assert st.to_config(s)[0].render.device == "optix"
    monkeypatch.undo()

    backend = next((b for b in ("HIP", "ONEAPI", "METAL", "CUDA", "OPTIX")
                    if not render_setup.gpu_devices_available(configure=False, backend=b)), None)
    if backend is None:
        pytest.skip("this machine has a GPU of every backend")
    s.device = backend.lower()
    op, ctx = FakeOp(), _fake_context()
    monkeypatch.setattr(generate, "_synchronous", lambda context: False)
    assert generate.FACSGEN_OT_generate_dataset.invoke(op, ctx, _event("NONE")) == {"CANCELLED"}
    assert len(op.reports) == 1 and "ERROR" in op.reports[0][0], op.reports
    assert f"render device {backend.lower()!r}: Cycles has no {backend} device" in op.reports[0][1]
    assert "Traceback" not in op.reports[0][1]
    assert not generate.is_running() and not (tmp_path / "x" / "images").exists()


def test_background_generate_runs_synchronously(addon, tmp_path, cli_reference):
    from facs_dataset_generator import settings as st

    out = tmp_path / "bg"
    s = _ui_settings(out)
    before = st.settings_as_dict(s)
    assert bpy.app.background
    assert bpy.ops.facsgen.generate_dataset("INVOKE_DEFAULT") == {"FINISHED"}
    _assert_same_dataset(cli_reference, out)
    assert bpy.ops.facsgen.validate_dataset() == {"FINISHED"}
    assert s.status.startswith("Dataset OK: 4")
    after = st.settings_as_dict(s)
    for k in ("status", "progress", "is_running"):
        before.pop(k), after.pop(k)
    assert after == before
    # validate reports a broken dataset
    next((out / "images").glob("*.png")).unlink()
    with pytest.raises(RuntimeError, match="problems|missing|image"):
        bpy.ops.facsgen.validate_dataset()


# --------------------------------------------------------------------------- preview


def _shape_key_values(obj):
    import numpy as np

    kb = obj.data.shape_keys.key_blocks
    v = np.empty(len(kb), dtype=np.float32)
    kb.foreach_get("value", v)
    return v


def test_preview_poses_like_the_dataset_and_restores(addon, tmp_path, cli_reference):
    import numpy as np

    from facs_dataset_generator.operators import preview
    from facs_dataset_generator.panels import overlay
    from facs_dataset_generator.pipeline import head

    _ui_settings(tmp_path / "unused")
    obj = head.add_builtin_head(bpy.context.scene)
    before = _shape_key_values(obj)
    import pandas as pd

    pd_rows = pd.read_csv(cli_reference / "index.csv", dtype={"sample_id": str})
    sad = pd_rows[pd_rows.emotion == "Sadness"].reset_index(drop=True)
    index = 1
    bpy.ops.facsgen.preview_sample(emotion="Sadness", index=index)
    assert preview.preview_active() and overlay.landmarks_shown()
    lms = np.asarray(overlay.landmarks(), dtype=np.float64)
    assert lms.shape == (468, 3)
    row = sad.iloc[index]
    # AUs of the preview = the labels of that sample
    _label, meta = overlay.landmarks_info()
    for au, v in meta["aus"].items():
        assert row[au] == pytest.approx(v, abs=1e-6), au
    # the drawn landmarks, projected with that sample's camera, are its labelled pixels
    k = np.array([[row.fx, 0, row.cx], [0, row.fy, row.cy], [0, 0, 1]])
    r = np.array([[row[f"r{i}{j}"] for j in range(3)] for i in range(3)])
    t = np.array([row.tx, row.ty, row.tz])
    cam = lms @ r.T + t
    uv = cam @ k.T
    uv = uv[:, :2] / uv[:, 2:]
    labelled = np.stack([[row[f"lm{i:03d}_x"] for i in range(468)], [row[f"lm{i:03d}_y"] for i in range(468)]], 1)
    assert np.abs(uv - labelled).max() < 0.05
    assert not np.array_equal(_shape_key_values(obj), before)  # posed
    # drawn panel shows the previewed AUs
    drawn = _draw_all(bpy.context)
    assert any("Sadness sample 1" in t for t in drawn["FACSGEN_PT_preview"].labels())
    bpy.ops.facsgen.clear_preview()
    assert np.array_equal(_shape_key_values(obj), before)
    assert not preview.preview_active() and not overlay.landmarks_shown()


def test_preview_adds_no_object_and_generate_restores_pose(addon, tmp_path):
    import numpy as np

    from facs_dataset_generator.operators import preview

    _need_runner()
    _ui_settings(tmp_path / "unused")
    names = {o.name for o in bpy.data.objects}
    bpy.ops.facsgen.preview_sample(emotion="Joy", index=0)
    assert preview.preview_active()
    bpy.ops.facsgen.clear_preview()
    assert {o.name for o in bpy.data.objects} == names  # the built-in head it needed is gone again
    # preview, then a Generate that fails in prepare still puts the pose back first
    from facs_dataset_generator.pipeline import head

    obj = head.add_builtin_head(bpy.context.scene)
    before = _shape_key_values(obj)
    bpy.ops.facsgen.preview_sample(emotion="Joy", index=0)
    assert not np.array_equal(_shape_key_values(obj), before)
    bpy.context.scene.facsgen.output_dir = ""
    with pytest.raises(RuntimeError):
        bpy.ops.facsgen.generate_dataset()
    assert np.array_equal(_shape_key_values(obj), before)
    assert not preview.preview_active()


def test_camera_views_and_jump(addon, tmp_path, cli_reference):
    import numpy as np
    import pandas as pd

    from facs_dataset_generator.panels import overlay
    from facs_dataset_generator.pipeline import head

    _ui_settings(tmp_path / "unused")
    obj = head.add_builtin_head(bpy.context.scene)
    before = _shape_key_values(obj)
    bpy.ops.facsgen.show_camera_views()
    cams = overlay.cameras()
    assert cams is not None and len(cams) == GEN_ARGS["views"]
    assert np.array_equal(_shape_key_values(obj), before)  # measuring the views left no pose behind
    assert {o.name for o in bpy.data.objects} == {obj.name}
    rows = pd.read_csv(cli_reference / "index.csv", dtype={"sample_id": str})
    joy = rows[rows.emotion == "Joy"].reset_index(drop=True)
    # the dataset's cameras of Joy's first expression are at the drawn positions
    for v in range(GEN_ARGS["views"]):
        assert np.allclose(cams[v], joy.loc[v, ["cam_x", "cam_y", "cam_z"]].to_numpy(float), atol=1e-4)
    bpy.ops.facsgen.show_camera_views()
    assert not overlay.cameras_shown()
    bpy.ops.facsgen.jump_to_view(view=1)
    cam = bpy.context.scene.camera
    assert cam is not None
    assert np.allclose(np.array(cam.matrix_world.translation), joy.loc[1, ["cam_x", "cam_y", "cam_z"]].to_numpy(float),
                       atol=1e-4)
    with pytest.raises(RuntimeError, match="does not exist"):
        bpy.ops.facsgen.jump_to_view(view=99)


def test_preview_restore_logic_with_stand_in_pipeline(addon, monkeypatch, tmp_path):
    """Whatever a preview changes (shape keys, driver mutes, transforms, added objects) Clear puts back,
    without touching what the user changed in between."""
    import numpy as np

    from facs_dataset_generator import panels
    from facs_dataset_generator.operators import preview
    from facs_dataset_generator.panels import overlay

    _load_test_preset(addon)
    s = bpy.context.scene.facsgen
    s.output_dir = str(tmp_path)
    face = _arkit_mesh()
    other = _arkit_mesh("Other")
    s.character = face
    keys = face.data.shape_keys
    fc = keys.driver_add('key_blocks["jawOpen"].value')
    fc.driver.expression = "0.25"
    face.location = (0.1, 0.2, 0.3)
    bpy.context.view_layer.update()
    before = _shape_key_values(face)
    assert before[keys.key_blocks.find("jawOpen")] == pytest.approx(0.25)  # driven
    calls = []

    def fake_preview(config, preset, emotion, index, scene):
        calls.append((emotion, index, config.seed))
        kb = face.data.shape_keys.key_blocks
        kb["mouthSmileLeft"].value = 0.5 + index / 10
        face.data.shape_keys.animation_data.drivers[0].mute = True
        face.location = (0, 0, 0)
        if "Stand-in Head" not in bpy.data.objects:
            me = bpy.data.meshes.new("Stand-in Head")
            scene.collection.objects.link(bpy.data.objects.new("Stand-in Head", me))
        m = np.eye(4)
        m[:3, 3] = (0, -1.0 - index, 0)
        return {"landmarks_world": np.zeros((468, 3)), "aus": {"AU12": 0.5 + index / 10},
                "camera_matrix_world": m}

    monkeypatch.setattr(preview, "_runner", lambda: types.SimpleNamespace(preview=fake_preview,
                                                                          GenerationError=RuntimeError))
    bpy.ops.facsgen.preview_sample(emotion="Joy", index=2)
    assert calls == [("Joy", 2, s.seed)]
    assert overlay.landmarks_shown() and "Stand-in Head" in bpy.data.objects
    other.location = (5, 5, 5)  # the user moves another object meanwhile: kept
    bpy.ops.facsgen.preview_sample(emotion="Joy", index=3)  # a second preview keeps the first state
    # undo/redo that leaves the pose in place keeps the preview (Clear still restores) ...
    panels._on_undo()
    assert preview.preview_active() and overlay.landmarks_shown()
    bpy.ops.facsgen.clear_preview()
    assert np.array_equal(_shape_key_values(face), before)
    assert not face.data.shape_keys.animation_data.drivers[0].mute
    assert tuple(face.location) == pytest.approx((0.1, 0.2, 0.3))
    assert tuple(other.location) == pytest.approx((5, 5, 5))
    assert "Stand-in Head" not in bpy.data.objects
    assert not overlay.landmarks_shown()
    # ... and one that brings the data back to the user's state (as Ctrl+Z of the preview does) drops it
    bpy.ops.facsgen.preview_sample(emotion="Joy", index=1)
    state = dict(preview._PREVIEW)
    for key in state["touched"]:
        preview._restore_value(bpy.context.scene, key, state["orig"][key])
    preview._remove_objects(state["added"])
    panels._on_undo()
    assert not preview.preview_active() and not overlay.landmarks_shown()
    # a disabled emotion is refused with a clear message, nothing posed
    s.emotions["Fear"].enabled = False
    with pytest.raises(RuntimeError, match="Fear is not enabled"):
        bpy.ops.facsgen.preview_sample(emotion="Fear", index=0)
    assert np.array_equal(_shape_key_values(face), before)
    # camera views through the same stand-in: one per view, and nothing left posed
    s.views = 3
    bpy.ops.facsgen.show_camera_views()
    assert len(overlay.cameras()) == 3 and overlay.cameras()[2][1] == pytest.approx(-3.0)
    assert np.array_equal(_shape_key_values(face), before) and "Stand-in Head" not in bpy.data.objects
    bpy.ops.facsgen.jump_to_view(view=2)
    assert bpy.context.scene.camera.matrix_world.translation.y == pytest.approx(-3.0)
    assert tuple(face.location) == pytest.approx((0.1, 0.2, 0.3))
