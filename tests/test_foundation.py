# SPDX-License-Identifier: GPL-3.0-or-later
"""Packaging, installation through Blender's extension machinery, registration, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = "facs_dataset_generator"

#: Every user-facing operator; each must be registered and reachable from a menu.
USER_OPERATORS = (
    "facsgen.generate_dataset",
    "facsgen.preview_sample",
    "facsgen.add_builtin_head",
    "facsgen.map_landmarks",
    "facsgen.validate_dataset",
    "facsgen.load_preset",
    "facsgen.save_preset",
)


def _blender_ext() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("bpy")
    base = Path(spec.origin).parent
    hits = sorted(base.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    assert hits, "blender_ext.py not found in the bpy wheel"
    return hits[-1]


def _run(cmd, env=None, timeout=300):
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)


def test_manifest_fields():
    m = tomllib.loads((ROOT / "blender_manifest.toml").read_text())
    assert m["schema_version"] == "1.0.0"
    assert m["id"] == PKG
    assert m["type"] == "add-on"
    assert m["blender_version_min"] == "4.2.0"
    assert m["license"] == ["SPDX:GPL-3.0-or-later"]
    assert "files" in m["permissions"]
    assert "/tests/" in m["build"]["paths_exclude_pattern"]
    v = tuple(int(x) for x in m["version"].split("."))
    assert len(v) == 3
    py = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert py["project"]["version"] == m["version"], "pyproject and manifest versions differ"
    assert "GNU GENERAL PUBLIC LICENSE" in (ROOT / "LICENSE").read_text()[:200]
    assert "bl_info" not in (ROOT / "__init__.py").read_text()


@pytest.fixture(scope="module")
def built_zip(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    r = _run([sys.executable, str(_blender_ext()), "build", "--source-dir", str(ROOT), "--output-dir", str(out)])
    assert r.returncode == 0, r.stdout + r.stderr
    zips = list(out.glob("*.zip"))
    assert len(zips) == 1, r.stdout
    r = _run([sys.executable, str(_blender_ext()), "validate", str(zips[0])])
    assert r.returncode == 0, r.stdout + r.stderr
    return zips[0]


def test_zip_contents(built_zip):
    names = zipfile.ZipFile(built_zip).namelist()
    assert "blender_manifest.toml" in names and "__init__.py" in names
    for needed in ("au_presets/emfacs.json", "landmark_map/builtin_head.json", "core/config.py",
                   "pipeline/runner.py", "LICENSE", "NOTICE"):
        assert needed in names, needed
    for banned in ("tests/", "benchmarks/", ".ci/", "pyproject.toml", ".venv/"):
        assert not any(n.startswith(banned) for n in names), banned
    assert not any("__pycache__" in n for n in names)


INSTALL_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import bpy
    zip_path = sys.argv[-1]
    res = bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default",
                                                  enable_on_install=True)
    mod_name = "bl_ext.user_default.facs_dataset_generator"
    out = {"result": sorted(res), "module_loaded": mod_name in sys.modules,
           "enabled": mod_name in bpy.context.preferences.addons.keys()}
    ops = []
    for attr in dir(bpy.ops.facsgen):
        op = getattr(bpy.ops.facsgen, attr)
        try:
            op.get_rna_type()
            ops.append("facsgen." + attr)
        except Exception:
            pass
    out["operators"] = sorted(ops)
    out["panels"] = sorted(n for n in dir(bpy.types) if n.startswith("FACSGEN_PT_"))
    menus = {}
    for mname in ("VIEW3D_MT_mesh_add", "TOPBAR_MT_render"):
        funcs = getattr(bpy.types, mname)._dyn_ui_initialize()
        menus[mname] = [f.__module__ for f in funcs if f.__module__.startswith(mod_name)]
    out["menus"] = menus
    out["scene_prop"] = hasattr(bpy.types.Scene, "facsgen")
    prefs = bpy.context.preferences.addons[mod_name].preferences
    out["prefs"] = type(prefs).__name__
    # run a real operator from the installed copy
    bpy.ops.wm.read_homefile(use_empty=True)  # keeps preferences (factory settings would disable it)
    bpy.ops.facsgen.add_builtin_head()
    out["head"] = [o.name for o in bpy.context.scene.objects if o.type == "MESH"]
    print("RESULT" + json.dumps(out))
    """
)


def test_install_zip_like_a_user(built_zip, tmp_path):
    """Install + enable through Blender's extension machinery, then find what it registered."""
    script = tmp_path / "install.py"
    script.write_text(INSTALL_SCRIPT)
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "user"))
    r = _run([sys.executable, str(script), str(built_zip)], env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("RESULT"))
    out = json.loads(line[len("RESULT"):])
    assert out["result"] == ["FINISHED"]
    assert out["module_loaded"] and out["enabled"]
    assert (tmp_path / "user" / "extensions" / "user_default" / PKG / "blender_manifest.toml").is_file()
    for op in USER_OPERATORS:
        assert op in out["operators"], op
    assert out["panels"], "no sidebar panels registered"
    assert out["menus"]["VIEW3D_MT_mesh_add"], "Add > Mesh entry missing"
    assert out["menus"]["TOPBAR_MT_render"], "Render menu entry missing"
    assert out["scene_prop"]
    assert out["prefs"] == "FACSGEN_AddonPreferences"
    assert len(out["head"]) >= 1


def _our_menu_funcs(bpy, menu):
    return [f for f in getattr(bpy.types, menu)._dyn_ui_initialize() if f.__module__.startswith(PKG)]


def test_register_unregister_register(addon):
    import bpy

    from facs_dataset_generator import registration

    n_classes = len(registration.CLASSES)
    assert n_classes > 5
    assert hasattr(bpy.types.Scene, "facsgen")
    assert _our_menu_funcs(bpy, "VIEW3D_MT_mesh_add")
    registration.unregister()
    try:
        assert not hasattr(bpy.types.Scene, "facsgen")
        assert not [n for n in dir(bpy.types) if n.startswith("FACSGEN_")]
        assert not any(c.is_registered for c in registration.CLASSES)
        assert not _our_menu_funcs(bpy, "VIEW3D_MT_mesh_add")
        assert not _our_menu_funcs(bpy, "TOPBAR_MT_render")
        assert not any(getattr(h, "__module__", "").startswith(PKG)
                       for hs in (bpy.app.handlers.load_post, bpy.app.handlers.depsgraph_update_post) for h in hs)
    finally:
        registration.register()
    assert hasattr(bpy.types.Scene, "facsgen")
    assert all(c.is_registered for c in registration.CLASSES)
    assert len(_our_menu_funcs(bpy, "VIEW3D_MT_mesh_add")) == 1
    # every class name follows FACSGEN_<KIND>_name and operators' bl_idname matches
    for cls in registration.CLASSES:
        assert cls.__name__.startswith("FACSGEN_"), cls
        if issubclass(cls, bpy.types.Operator):
            kind, _, rest = cls.__name__.partition("_OT_")
            assert cls.bl_idname == f"facsgen.{rest}", cls
            assert cls.__doc__ or getattr(cls, "bl_description", ""), f"{cls.__name__} has no tooltip"


def test_settings_pointer_saved_in_blend(addon, tmp_path):
    import bpy

    s = bpy.context.scene.facsgen
    s.count = 123
    s.yaw_min = -33.0
    p = tmp_path / "s.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(p))
    bpy.ops.wm.read_factory_settings(use_empty=True)
    assert bpy.context.scene.facsgen.count != 123
    bpy.ops.wm.open_mainfile(filepath=str(p))
    assert bpy.context.scene.facsgen.count == 123
    assert bpy.context.scene.facsgen.yaw_min == -33.0


# ----------------------------------------------------------------------------- CLI


def _facsgen(*args, timeout=120):
    return _run([sys.executable, "-m", f"{PKG}.cli", *args], timeout=timeout)


def test_console_script_installed():
    exe = Path(sys.executable).parent / "facsgen"
    assert exe.is_file(), "pip install . must provide the facsgen console script"
    r = _run([str(exe), "--help"])
    assert r.returncode == 0 and "generate" in r.stdout and "validate" in r.stdout


def test_help_lists_every_option_with_default():
    r = _facsgen("generate", "--help")
    assert r.returncode == 0, r.stderr
    for opt in ("--out", "--count", "--seed", "--resolution", "--resolution-percentage", "--samples", "--device",
                "--blend", "--character", "--preset", "--emotions", "--views", "--yaw-range", "--pitch-range",
                "--shard", "--resume"):
        assert opt in r.stdout, opt
    assert "(default: 16)" in r.stdout  # --count
    assert "(default: (-60.0, 60.0))" in r.stdout
    assert _facsgen("validate", "--help").returncode == 0
    assert _facsgen("--help").returncode == 0


@pytest.mark.parametrize(
    "args,needle",
    [
        (["generate", "--out", "x", "--count", "zero"], "--count"),
        (["generate", "--out", "x", "--count", "0"], "--count"),
        (["generate", "--out", "x", "--resolution", "12y"], "--resolution"),
        (["generate", "--out", "x", "--yaw-range", "60,-60"], "--yaw-range"),
        (["generate", "--out", "x", "--shard", "3/2"], "--shard"),
        (["generate", "--out", "x", "--emotions", "Joy,Glee"], "Glee"),
        (["generate", "--out", "x", "--device", "tpu"], "--device"),
        (["generate", "--out", "x", "--resolution-percentage", "101"], "--resolution-percentage"),
        (["generate"], "--out"),
        (["frobnicate"], "frobnicate"),
    ],
)
def test_bad_arguments_one_line_exit_2(args, needle):
    r = _facsgen(*args)
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert needle in lines[0]
    assert "Traceback" not in r.stderr


def test_negative_range_values_parse():
    from facs_dataset_generator import cli

    ns = cli.parse_args(["generate", "--out", "x", "--yaw-range", "-60,60", "--pitch-range", "-20,-5",
                         "--resolution", "640x480"])
    assert ns.yaw_range == (-60.0, 60.0) and ns.pitch_range == (-20.0, -5.0)
    conf = cli.config_from_args(ns)
    assert conf.render.resolution == (640, 480)
    assert conf.camera.yaw_range == (-60.0, 60.0)


def test_blender_command_entry(addon, tmp_path):
    """The function registered for ``blender --command facsgen`` runs the same CLI."""
    from facs_dataset_generator import cli

    assert cli._cli_handle is not None
    assert cli._blender_command(["validate", str(tmp_path / "missing")]) == 1
    assert cli._blender_command(["generate", "--count", "x"]) == 2


def test_validate_and_merge_run_without_bpy(tmp_path):
    """``facsgen validate`` / ``merge`` only read and write tables: they must work where bpy
    cannot be imported (a login node, a CI job checking shards) and never start Blender."""
    code = (
        "import sys, builtins\n"
        "real = builtins.__import__\n"
        "def guard(name, *a, **k):\n"
        "    if name == 'bpy' or name.startswith('bpy.'):\n"
        "        raise ImportError('bpy must not be imported by validate/merge')\n"
        "    return real(name, *a, **k)\n"
        "builtins.__import__ = guard\n"
        f"from {PKG} import cli\n"
        "sys.exit(cli.main(sys.argv[1:]))\n"
    )
    missing = tmp_path / "missing"
    r = _run([sys.executable, "-c", code, "validate", str(missing)])
    assert r.returncode == 1 and "not a folder" in r.stderr and "bpy must not" not in r.stderr, r.stderr
    r = _run([sys.executable, "-c", code, "merge", str(tmp_path / "m"), str(missing)])
    assert r.returncode == 2 and "missing" in r.stderr and "bpy must not" not in r.stderr and "Traceback" not in r.stderr, r.stderr
