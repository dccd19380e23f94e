# SPDX-License-Identifier: GPL-3.0-or-later
"""The fast path of issue 8 is what the pipeline really applies by default (no timings here:
those are in ``benchmarks/throughput.py``). Renders are tiny (32 px, 1 sample, CPU)."""

from __future__ import annotations

import pytest

pytest.importorskip("bpy")


def _benchmark(name: str):
    """A script of ``benchmarks/`` imported as a module (``throughput``, ``render_costs``)."""
    import importlib
    import sys
    from pathlib import Path

    folder = str(Path(__file__).resolve().parent.parent / "benchmarks")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return importlib.import_module(name)


def _conf(out, **kw):
    from facs_dataset_generator.core import config as cfg

    c = cfg.GenerationConfig(out=str(out), **kw)
    c.render.resolution = (32, 32)
    c.render.samples = 1
    c.render.device = "cpu"
    return c


def _blender_defaults():
    import bpy

    tmp = bpy.data.scenes.new("_defaults")
    try:
        c = tmp.cycles
        return {p: getattr(c, p) for p in ("max_bounces", "diffuse_bounces", "glossy_bounces",
                                            "transmission_bounces", "transparent_max_bounces",
                                            "sample_clamp_indirect", "denoising_prefilter")}
    finally:
        bpy.data.scenes.remove(tmp)


def test_fast_path_render_settings_are_applied_and_restored(addon, tmp_path):
    import bpy

    from facs_dataset_generator.pipeline import render_setup, runner

    defaults = _blender_defaults()
    scene = bpy.context.scene
    scene.render.use_persistent_data = False
    scene.cycles.denoising_prefilter = "ACCURATE"
    job = runner.Job(_conf(tmp_path / "ds", count=2, emotions=("Joy",)), scene=scene)
    job.prepare()
    try:
        c = scene.cycles
        assert scene.render.engine == "CYCLES"
        assert scene.render.use_persistent_data is True  # unchanged geometry is not re-synchronised
        assert c.use_denoising is True
        assert render_setup.DENOISING_PREFILTER == "FAST"
        assert c.denoising_prefilter == "FAST"
        w = scene.world
        assert w is not None and w.name.startswith(render_setup.WORLD_NAME)
        assert w.cycles.sampling_method == "MANUAL"
        assert w.cycles.sample_map_resolution == render_setup.WORLD_MAP_RESOLUTION == 2048
        # light paths stay Blender's defaults (the fast path must not change the images)
        for p in ("max_bounces", "diffuse_bounces", "glossy_bounces", "transmission_bounces",
                  "transparent_max_bounces", "sample_clamp_indirect"):
            assert getattr(c, p) == defaults[p], p
        assert c.device in ("CPU", "GPU")
        assert job.step()
    finally:
        job.finish()
    # the user's scene is given back
    assert scene.render.use_persistent_data is False
    assert scene.cycles.denoising_prefilter == "ACCURATE"


def test_default_sampling_is_the_quality_matched_one(addon, tmp_path):
    """Blue noise + FAST prefilter + at most 28 spp with adaptive threshold 0.02 (at least 4
    samples) is the measured quality match of a new scene's 16 spp defaults; the config, the
    CLI's defaults, the panel's defaults and the render all use it, and the user's scene gets
    its own settings back."""
    import bpy

    from facs_dataset_generator import cli
    from facs_dataset_generator.core import config as cfg
    from facs_dataset_generator.pipeline import render_setup, runner

    assert cfg.RenderConfig().samples == render_setup.DEFAULT_SAMPLES == 28
    assert cfg.RenderConfig().noise_threshold == render_setup.NOISE_THRESHOLD == 0.02
    ns = cli.parse_args(["generate", "--out", str(tmp_path / "x")])
    assert (ns.samples, ns.noise_threshold) == (28, 0.02)
    from facs_dataset_generator import settings as st

    bpy.context.scene.facsgen.output_dir = str(tmp_path / "ui")
    conf, _ = st.to_config(bpy.context.scene.facsgen)  # the panel's defaults
    assert (conf.render.samples, conf.render.noise_threshold) == (28, 0.02)
    conf = _conf(tmp_path / "ds", count=1, emotions=("Joy",))
    conf.render.samples = cfg.RenderConfig().samples
    scene = bpy.context.scene
    c = scene.cycles
    c.sampling_pattern, c.adaptive_threshold, c.adaptive_min_samples = "TABULATED_SOBOL", 0.05, 0
    job = runner.Job(conf, scene=scene).prepare()
    try:
        assert c.samples == 28 and c.use_adaptive_sampling is True
        assert c.adaptive_threshold == pytest.approx(0.02) and c.adaptive_min_samples == 4
        assert c.sampling_pattern == render_setup.SAMPLING_PATTERN == "BLUE_NOISE"
    finally:
        job.finish()
    assert (c.sampling_pattern, c.adaptive_min_samples) == ("TABULATED_SOBOL", 0)
    assert c.adaptive_threshold == pytest.approx(0.05)


def test_noise_threshold_zero_turns_adaptive_sampling_off(addon, tmp_path):
    import bpy

    from facs_dataset_generator import cli
    from facs_dataset_generator.core.config import ConfigError
    from facs_dataset_generator.pipeline import runner

    conf = cli.config_from_args(cli.parse_args(["generate", "--out", str(tmp_path / "ds"), "--noise-threshold", "0",
                                                "--resolution", "32", "--samples", "2", "--device", "cpu"]))
    scene = bpy.context.scene
    job = runner.Job(conf, scene=scene).prepare()
    try:
        assert scene.cycles.use_adaptive_sampling is False and scene.cycles.samples == 2
    finally:
        job.finish()
    conf.render.noise_threshold = 1.5
    with pytest.raises(ConfigError, match="noise threshold must be <= 1"):
        runner.validate_config(conf)


def test_no_denoise_leaves_the_prefilter_alone(addon, tmp_path):
    import bpy

    from facs_dataset_generator.pipeline import runner

    scene = bpy.context.scene
    scene.cycles.denoising_prefilter = "NONE"
    conf = _conf(tmp_path / "ds", count=1, emotions=("Joy",))
    conf.render.denoise = False
    job = runner.Job(conf, scene=scene).prepare()
    try:
        assert scene.cycles.use_denoising is False
        assert scene.cycles.denoising_prefilter == "NONE"
    finally:
        job.finish()


def test_expression_major_order_poses_once_per_expression(addon, tmp_path, monkeypatch):
    """6 samples, 3 views per expression: 2 expressions -> the character is posed and its
    evaluated mesh read (one foreach_get, one BVH) twice, the camera moved 6 times."""
    from facs_dataset_generator.pipeline import annotate, landmarks, runner

    conf = _conf(tmp_path / "ds", count=6, emotions=("Joy",), seed=3)
    conf.render.denoise = False
    conf.camera.views = 3
    job = runner.Job(conf).prepare()
    try:
        order = [job.plan[i] for i in job._pending]
        assert [s.view for s in order] == [0, 1, 2, 0, 1, 2]  # camera-minor
        assert [s.expression for s in order] == [0, 0, 0, 3, 3, 3]  # expression-major
        calls = {"evaluate": 0, "foreach": 0, "pose": 0}
        real_eval, real_verts, real_pose = annotate.evaluate_expression, annotate.evaluated_vertices, job._pose

        def counting_eval(*a, **k):
            calls["evaluate"] += 1
            return real_eval(*a, **k)

        def counting_verts(*a, **k):
            calls["foreach"] += 1
            return real_verts(*a, **k)

        def counting_pose(s):
            calls["pose"] += 1
            return real_pose(s)

        monkeypatch.setattr(annotate, "evaluate_expression", counting_eval)
        monkeypatch.setattr(annotate, "evaluated_vertices", counting_verts)
        monkeypatch.setattr(landmarks, "evaluated_vertices", counting_verts)
        monkeypatch.setattr(job, "_pose", counting_pose)
        cams = []
        while job.step():
            cams.append(tuple(round(v, 6) for row in job.camera.matrix_world for v in row))
        assert job.written == 6
        assert calls == {"evaluate": 2, "foreach": 2, "pose": 2}
        assert len(set(cams[:3])) == 3  # every view has its own camera
    finally:
        job.finish()


def test_device_auto_never_requires_a_gpu(addon):
    from facs_dataset_generator.pipeline import render_setup

    assert render_setup.choose_device("cpu") == "CPU"
    auto = render_setup.choose_device("auto")
    assert auto == ("GPU" if render_setup.gpu_devices_available(configure=False) else "CPU")


class _FakeDevice:
    def __init__(self, name, type_, use=True):
        self.name, self.type, self.use = name, type_, use
        self.id = f"{type_}_{name}"


class _FakeCyclesPrefs:
    """Stands in for Cycles' add-on preferences: the backends of this fake machine and their
    devices (objects persist across refreshes, as Blender's do; a refresh lists every backend's
    entries, GPUs ticked and the CPU not, as Cycles does); setting a backend that is not an
    item of the enum raises TypeError, as RNA does."""

    ITEMS = ("NONE", "CUDA", "OPTIX", "HIP", "ONEAPI")  # a Linux build: no METAL item

    def __init__(self, machine):
        self._all = [_FakeDevice(n, t) for t, names in machine.items() for n in names] + [_FakeDevice("EPYC", "CPU", False)]
        self._type = "NONE"
        self.devices = []

    @property
    def compute_device_type(self):
        return self._type

    @compute_device_type.setter
    def compute_device_type(self, value):
        if value not in self.ITEMS:
            raise TypeError(f"enum {value!r} not found")
        self._type = value

    def refresh_devices(self):
        self.devices = list(self._all)

    def get_devices_for_type(self, type_):
        return [d for d in self._all if d.type in (type_, "CPU")]


@pytest.fixture
def fake_gpus(addon, monkeypatch):
    from facs_dataset_generator.pipeline import render_setup

    def install(machine):
        prefs = _FakeCyclesPrefs(machine)
        monkeypatch.setattr(render_setup, "_cycles_prefs", lambda: prefs)
        return prefs
    return install


def test_device_backend_choice(fake_gpus):
    """``--device auto/gpu`` takes the first backend with a GPU (OptiX before CUDA) and leaves
    the CPU out; ``--device cuda`` (etc.) takes that backend only; a backend with no device
    here, or an unknown name, is a ConfigError that names it and lists the GPUs found."""
    from facs_dataset_generator.core.config import ConfigError
    from facs_dataset_generator.pipeline import render_setup

    h100 = {"OPTIX": ["NVIDIA H100"], "CUDA": ["NVIDIA H100"]}
    prefs = fake_gpus(h100)
    assert render_setup.choose_device("auto") == "GPU"
    assert prefs.compute_device_type == "OPTIX"
    assert [(d.type, d.use) for d in prefs.get_devices_for_type("OPTIX")] == [("OPTIX", True), ("CPU", False)]

    prefs = fake_gpus(h100)
    assert render_setup.choose_device("cuda") == "GPU"
    assert prefs.compute_device_type == "CUDA"
    assert [(d.type, d.use) for d in prefs.get_devices_for_type("CUDA")] == [("CUDA", True), ("CPU", False)]
    assert render_setup.compute_devices() == "CUDA: NVIDIA H100"

    # the GPUs the user picked inside the backend stay the choice
    prefs = fake_gpus({"CUDA": ["GPU 0", "GPU 1"]})
    prefs._all[0].use = False
    assert render_setup.choose_device("cuda") == "GPU"
    assert [(d.name, d.use) for d in prefs.devices] == [("GPU 0", False), ("GPU 1", True), ("EPYC", False)]

    for device, backend in (("hip", "HIP"), ("metal", "METAL")):  # no HIP device; no Metal item on Linux
        fake_gpus(h100)
        with pytest.raises(ConfigError) as err:
            render_setup.choose_device(device)
        assert f"no {backend} device" in str(err.value) and "CUDA: NVIDIA H100" in str(err.value)

    fake_gpus({})
    with pytest.raises(ConfigError, match="no Cycles GPU"):
        render_setup.choose_device("gpu")
    assert render_setup.choose_device("auto") == "CPU"
    with pytest.raises(ConfigError, match="unknown render device 'vulkan'"):
        render_setup.choose_device("vulkan")


def test_device_choice_restores_the_preferences(fake_gpus):
    """A run's GPU choice is undone with the run's scene state: the backend and every device's
    tick (the CPU the user had ticked next to the GPUs, the other backends' GPUs) come back.
    ``auto`` keeps a backend the user has set up with a GPU ticked."""
    import bpy

    from facs_dataset_generator.pipeline import render_setup

    prefs = fake_gpus({"OPTIX": ["GPU 0", "GPU 1"], "CUDA": ["GPU 0", "GPU 1"]})
    prefs.compute_device_type = "CUDA"
    prefs.refresh_devices()
    user = {"OPTIX_GPU 0": False, "OPTIX_GPU 1": True, "CUDA_GPU 0": True, "CUDA_GPU 1": False, "CPU_EPYC": True}
    for d in prefs._all:
        d.use = user[d.id]
    # auto keeps the backend the user set up (with their CPU tick); a named backend leaves the CPU out
    for device, backend, ticked in (("auto", "CUDA", ["GPU 0", "EPYC"]), ("cuda", "CUDA", ["GPU 0"]),
                                    ("optix", "OPTIX", ["GPU 1"])):
        state = render_setup.SceneState(bpy.context.scene)
        assert render_setup.choose_device(device, state) == "GPU"
        assert prefs.compute_device_type == backend
        assert [d.name for d in prefs.get_devices_for_type(backend) if d.use] == ticked
        state.restore()
        assert prefs.compute_device_type == "CUDA"
        assert {d.id: d.use for d in prefs._all} == user


def test_device_backend_without_that_gpu_fails_before_writing(addon, tmp_path):
    """``facsgen generate --device <backend>`` on a machine without that backend's GPU: one
    line naming it, exit 2, no dataset folder (the real Cycles preferences, no fake)."""
    import subprocess
    import sys

    from facs_dataset_generator.pipeline import render_setup

    backend = next((b for b in ("HIP", "ONEAPI", "METAL", "CUDA")
                    if not render_setup.gpu_devices_available(configure=False, backend=b)), None)
    if backend is None:
        pytest.skip("this machine has a GPU of every backend tried")
    out = tmp_path / "ds"
    r = subprocess.run([sys.executable, "-m", "facs_dataset_generator.cli", "generate", "--out", str(out),
                        "--count", "1", "--resolution", "32", "--samples", "1", "--device", backend.lower()],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and f"no {backend} device" in lines[0] and "Traceback" not in r.stderr, r.stderr
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("device", ["GPU", "CPU"])
def test_gpu_run_denoises_on_the_gpu_and_cpu_run_does_not(addon, tmp_path, monkeypatch, device):
    """Blender's default denoises on the CPU even when Cycles renders on the GPU; a GPU run of
    the pipeline asks for OIDN on the GPU (tested without a GPU: the device choice is forced,
    the setting is what is checked), a CPU run keeps it off, and both are restored."""
    import bpy

    from facs_dataset_generator.pipeline import render_setup, runner

    scene = bpy.context.scene
    assert scene.cycles.denoising_use_gpu is False  # Blender's default
    monkeypatch.setattr(render_setup, "choose_device", lambda _device, state=None: device)
    job = runner.Job(_conf(tmp_path / "ds", count=1, emotions=("Joy",)), scene=scene)
    job.prepare()
    try:
        assert scene.cycles.device == device
        assert scene.cycles.denoising_use_gpu is (device == "GPU")
    finally:
        job.finish()
    assert scene.cycles.denoising_use_gpu is False


def test_first_progress_line_names_the_device(addon, tmp_path, monkeypatch):
    """The run says what it renders on; on a GPU, that the first render may compile kernels
    (on an H200 with bpy 5.0.1 that first render took longer than 4 minutes, with no output)."""
    import bpy

    from facs_dataset_generator.pipeline import render_setup, runner

    lines = []
    runner.generate(_conf(tmp_path / "ds", count=1, emotions=("Joy",)),
                    progress=lambda done, total, msg="": lines.append(msg))
    assert lines[0].endswith("1 to render (0 already done) on CPU"), lines[0]
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "GPU"
    label = render_setup.device_label(scene)
    assert label.startswith("GPU (") and "compiles Cycles' kernels" in label
    scene.cycles.device = "CPU"
    assert render_setup.device_label(scene) == "CPU"


# --------------------------------------------------------------------------- lighting turntable


def _lit_conf(out, seed, count=1, views=1, hdris=("sunset",)):
    c = _conf(out, count=count, emotions=("Joy",), seed=seed)
    c.render.resolution = (64, 64)
    c.render.samples = 16
    c.lighting.hdris = tuple(hdris)
    c.camera.views = views
    return c


def _side_lit_seed():
    """A seed whose first expression draw has the HDRI turned by about +-90 degrees (a
    mirrored turn then lights the face from the other side) and a strength far from 1 (so
    that the film exposure standing in for it is checked too)."""
    from facs_dataset_generator.core import config as cfg
    from facs_dataset_generator.core.sampling import SamplePlan

    for seed in range(200):
        c = _lit_conf("/nonexistent", seed)
        _, rot, strength = SamplePlan(c, cfg.load_preset(c.preset), hdris=["sunset"]).lighting(0)
        if 70 < rot % 180 < 110 and abs(strength - 1.0) > 0.15:
            return seed, rot
    raise AssertionError("no seed found")


def _render_one(out, seed, turn, world_sign=1.0):
    import bpy
    import cv2

    from facs_dataset_generator.core import dataset
    from facs_dataset_generator.pipeline import runner

    bpy.ops.wm.read_factory_settings(use_empty=True)
    job = runner.Job(_lit_conf(out, seed), turn_character=turn).prepare()
    try:
        if world_sign != 1.0:
            real = job.world.set
            job.world.set = lambda name, rot, strength: real(name, world_sign * rot, strength)
        assert job.step()
    finally:
        job.finish()
    img = cv2.imread(str(dataset.image_path(out, "000000"))).astype(float)
    return img, job


def test_turntable_renders_what_rotating_the_world_renders(addon, tmp_path):
    """Turning the character and the camera by the lighting's angle (fixed world, strength as
    exposure) gives the image of the world rotated by that angle, up to render noise; the
    world rotated the other way is far off (so a sign error would fail). The labels are the
    same either way."""
    pytest.importorskip("cv2")
    import numpy as np

    seed, rot = _side_lit_seed()
    tt, job_tt = _render_one(tmp_path / "tt", seed, True)
    assert job_tt.turntable is not None
    world, job_w = _render_one(tmp_path / "world", seed, False)
    assert job_w.turntable is None
    mirrored, _ = _render_one(tmp_path / "mirror", seed, False, world_sign=-1.0)
    same = np.abs(tt - world).mean()
    other = np.abs(mirrored - world).mean()
    assert same < 2.0 and other > 10 * same, (rot, same, other)

    # the labels do not depend on how the lighting was turned: same CSV, byte for byte
    csv_tt = (tmp_path / "tt" / "annotations" / "000000.csv").read_bytes()
    assert csv_tt == (tmp_path / "world" / "annotations" / "000000.csv").read_bytes()


def test_turntable_keeps_the_world_fixed_and_restores_the_scene(addon, tmp_path, monkeypatch):
    """With 3 HDRIs over 12 expression draws the world changes only when the HDRI does (draws
    sharing an HDRI are rendered together), its rotation stays 0 and its strength 1; the
    character is put back, film exposure too; the view transform's exposure is never touched
    (every distinct value of it costs a colour-management processor that is never freed)."""
    import json

    import bpy
    import numpy as np

    from facs_dataset_generator.pipeline import head, render_setup, runner

    bpy.ops.wm.read_factory_settings(use_empty=True)
    ob = head.add_builtin_head(bpy.context.scene)
    ob.location = (0.3, -0.2, 0.1)
    ob.rotation_euler = (0.0, 0.0, 0.4)
    bpy.context.view_layer.update()
    before = np.array(ob.matrix_world)
    scene = bpy.context.scene
    scene.view_settings.exposure = 0.25
    scene.cycles.film_exposure = 0.8
    conf = _lit_conf(tmp_path / "ds", seed=2, count=24, views=2, hdris=("city", "forest", "sunset"))
    conf.character = ob.name
    conf.render.resolution = (16, 16)
    conf.render.samples = 1
    seen = []
    real_set = render_setup.HdriWorld.set

    def spy(self, name, rotation, strength):
        real_set(self, name, rotation, strength)
        seen.append((self.env.image.name, self.mapping.inputs["Rotation"].default_value[2],
                     self.bg.inputs["Strength"].default_value))

    monkeypatch.setattr(render_setup.HdriWorld, "set", spy)
    job = runner.Job(conf, scene=scene).prepare()
    try:
        assert job.turntable is not None and job.turntable.roots == [ob]
        hdris = [job.plan[i].hdri for i in job._pending]
        exposures, turned = [], []
        while job.step():
            exposures.append(scene.cycles.film_exposure)
            assert scene.view_settings.exposure == 0.25
            turned.append(np.array(ob.matrix_world))
    finally:
        job.finish()
    assert job.written == 24
    assert all(r == 0.0 and s == 1.0 for _, r, s in seen)
    changes = sum(a[0] != b[0] for a, b in zip(seen, seen[1:]))
    assert changes == sum(a != b for a, b in zip(hdris, hdris[1:])) == len(set(hdris)) - 1
    # film exposure carries the strength on top of the user's film exposure
    strengths = [job.plan[i].hdri_strength for i in job.plan.render_order(range(24))]
    assert len(set(strengths)) == 12  # one per expression draw
    assert np.allclose(exposures, [0.8 * s for s in strengths], atol=1e-6)
    # the head was turned about Z around the origin, keeping its own transform
    rots = [job.plan[i].hdri_rotation for i in job.plan.render_order(range(24))]
    for m, r in zip(turned, rots):
        assert np.allclose(m, render_setup.rotation_z(r) @ before, atol=1e-5)
    # everything given back
    assert np.allclose(np.array(ob.matrix_world), before, atol=1e-6)
    assert scene.view_settings.exposure == pytest.approx(0.25)
    assert scene.cycles.film_exposure == pytest.approx(0.8)
    meta = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert meta["render"]["lighting_rotation"].startswith("character and camera turned")


def test_turntable_falls_back_to_rotating_the_world(addon, tmp_path):
    """A character that does not turn rigidly with its top-level object (here a Limit
    Rotation constraint) gets the world rotated instead, and says so."""
    import json

    import bpy

    from facs_dataset_generator.pipeline import head, runner

    bpy.ops.wm.read_factory_settings(use_empty=True)
    ob = head.add_builtin_head(bpy.context.scene)
    con = ob.constraints.new("LIMIT_ROTATION")
    con.use_limit_z, con.min_z, con.max_z = True, 0.0, 0.0
    conf = _lit_conf(tmp_path / "ds", seed=1, count=2, views=1)
    conf.character = ob.name
    conf.render.resolution = (16, 16)
    conf.render.samples = 1
    job = runner.Job(conf).prepare()
    try:
        assert job.turntable is None
        assert "did not turn" in job.lighting_turn or "landmarks moved" in job.lighting_turn
        while job.step():
            pass
    finally:
        job.finish()
    assert job.written == 2
    meta = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert meta["render"]["lighting_rotation"].startswith("world rotated")


def test_hdri_lighting_turns_the_light_tree_off(addon, tmp_path):
    import bpy

    from facs_dataset_generator.pipeline import runner

    scene = bpy.context.scene
    scene.cycles.use_light_tree = True
    job = runner.Job(_conf(tmp_path / "ds", count=1, emotions=("Joy",)), scene=scene).prepare()
    try:
        assert scene.cycles.use_light_tree is False  # the world is the only light
    finally:
        job.finish()
    assert scene.cycles.use_light_tree is True
    conf = _conf(tmp_path / "ds2", count=1, emotions=("Joy",))
    conf.lighting.mode = "scene"
    job = runner.Job(conf, scene=scene).prepare()
    try:
        assert scene.cycles.use_light_tree is True  # the user's lights: Cycles' default stays
    finally:
        job.finish()


def test_benchmark_device_choices_are_the_pipelines():
    """benchmarks/throughput.py lists --device choices without importing the package at parse
    time; they must stay the pipeline's own (core.config.DEVICES)."""
    from facs_dataset_generator.core import config as cfg

    throughput = _benchmark("throughput")

    with pytest.raises(SystemExit):
        throughput.main(["--device", "vulkan"])
    choices = next(a.choices for a in throughput._parser()._actions if a.dest == "device")
    assert tuple(choices) == cfg.DEVICES


def test_benchmark_runs_each_variant_once():
    """``--variants ours,proto0,proto1`` with two ``--proto-set`` runs three variants, each once
    (naming a proto in --variants used to run it twice, the second run replacing the
    first's images)."""
    throughput = _benchmark("throughput")

    sets = ["cycles.samples=64", "cycles.samples=8,cycles.use_denoising=False"]
    variants, protos = throughput.variant_plan(["ours", "proto0", "proto1"], sets)
    assert variants == ["ours", "proto0", "proto1"]
    assert protos == {"proto0": {"cycles.samples": 64},
                      "proto1": {"cycles.samples": 8, "cycles.use_denoising": False}}
    assert throughput.variant_plan(["naive", "ours"], sets)[0] == ["naive", "ours", "proto0", "proto1"]
    assert throughput.variant_plan(["ours", "proto"], ["render.threads=1"]) == (
        ["ours", "proto"], {"proto": {"render.threads": 1}})
    assert throughput.variant_plan(["naive", "ours", "ours"], None) == (["naive", "ours"], {})


def test_render_costs_sample_count_map(addon, tmp_path):
    """benchmarks/render_costs.py's sample-count map: Cycles' Debug Sample Count pass written
    as the image (8-bit = 255 * count / samples). Without adaptive sampling every pixel took all
    samples; with it, the background (a converged HDRI lookup) stops at the first check (16) and
    the face goes on to 32."""
    import bpy
    import cv2
    import numpy as np

    from facs_dataset_generator.pipeline import head, runner

    render_costs = _benchmark("render_costs")

    head.add_builtin_head(bpy.context.scene)
    counts, rendered = {}, {}
    for case, adaptive, threshold in (("fixed", False, None), ("adaptive", True, None), ("all_converge", True, 1.0)):
        conf = _conf(tmp_path / case, count=1, emotions=("Neutral",))
        conf.camera.views = 1
        conf.render.samples = 32
        conf.render.denoise = False
        job = runner.Job(conf, scene=bpy.context.scene).prepare()
        try:
            job.scene.cycles.use_adaptive_sampling = adaptive  # threshold: the pipeline's 0.02
            if threshold is not None:
                job.scene.cycles.adaptive_threshold = threshold
            render_costs._sample_count_output(job.scene)
            with render_costs.RenderedSamples() as counter:
                assert job.step()
                rendered[case] = counter.take()
        finally:
            job.finish()
        img = cv2.imread(str(next((tmp_path / case / "images").glob("*.png"))), cv2.IMREAD_GRAYSCALE)
        counts[case] = (img, np.rint(img / 255.0 * rendered[case]))
    assert rendered["fixed"] == rendered["adaptive"] == 32
    assert (counts["fixed"][1] == 32).all()
    assert set(np.unique(counts["adaptive"][1])) == {16.0, 32.0}  # background at the first check, the face on
    # every pixel converged at the first check: Cycles stopped at 16, and the pass is a share of
    # the 16 samples rendered (all ~255), so decoding it with the setting (32) would be wrong
    assert rendered["all_converge"] == 16
    assert (counts["all_converge"][0] >= 250).all() and (counts["all_converge"][1] == 16).all()  # 8-bit dither: 254-255


def test_render_costs_samples_split(tmp_path):
    """Mean samples per region from a coverage mask and a sample-count map."""
    import cv2
    import numpy as np

    render_costs = _benchmark("render_costs")

    alpha = np.zeros((20, 20), np.uint8)
    alpha[5:15, 5:15] = 255  # the character; its border pixels are partly covered
    alpha[5, 5:15] = alpha[14, 5:15] = alpha[5:15, 5] = alpha[5:15, 14] = 128
    rgba = np.dstack([alpha] * 4)
    spp = np.full((20, 20), 16, np.uint8)
    spp[alpha == 128] = 28
    spp[8:12, 8:12] = 20
    for folder, img in (("mask", rgba), ("spp", np.rint(spp / 28 * 255).astype(np.uint8))):
        (tmp_path / folder / "images").mkdir(parents=True)
        cv2.imwrite(str(tmp_path / folder / "images" / "000000.png"), img)
    s = render_costs.samples_split(tmp_path / "spp", tmp_path / "mask", 1, 28)
    half = render_costs.samples_split(tmp_path / "spp", tmp_path / "mask", 1, 56, rendered=[28])  # stopped at 28 of 56
    assert half["interior"]["mean"] == pytest.approx(s["interior"]["mean"]) and half["silhouette"]["at_max"] == 0
    assert (s["unknown_rendered"], half["unknown_rendered"]) == (0, 0)  # None: the setting, by the caller's choice
    unknown = render_costs.samples_split(tmp_path / "spp", tmp_path / "mask", 1, 28, rendered=[0])
    assert unknown["unknown_rendered"] == 1 and unknown["interior"] == s["interior"]
    with pytest.raises(ValueError, match="for 0 images, expected 1"):
        render_costs.samples_split(tmp_path / "spp", tmp_path / "mask", 1, 28, rendered=[])
    # silhouette band = the partly covered ring dilated by 1 px: rows/cols 4..15 minus 7..12
    band = np.zeros((20, 20), bool)
    band[4:16, 4:16] = True
    band[7:13, 7:13] = False
    assert s["silhouette"]["mean"] == pytest.approx(spp[band].mean())
    assert s["interior"]["mean"] == pytest.approx(spp[7:13, 7:13].mean())
    assert s["background"]["mean"] == 16 and s["background"]["at_max"] == 0
    assert s["silhouette"]["at_max"] == pytest.approx((spp[band] == 28).mean())


def test_render_costs_denoiser_spec():
    """``render_costs.py --denoisers``: PREFILTER:AUX[:QUALITY], any case; a wrong part is named."""
    render_costs = _benchmark("render_costs")

    assert render_costs.parse_denoiser("accurate:Albedo+Normal") == ("ACCURATE", "albedo+normal", "HIGH")
    assert render_costs.parse_denoiser("NONE:none:fast") == ("NONE", "none", "FAST")
    for bad, word in (("FAST", "expected PREFILTER:AUX"), ("SLOW:albedo", "prefilter 'SLOW'"),
                      ("FAST:depth", "aux 'depth'"), ("FAST:albedo:ULTRA", "quality 'ULTRA'")):
        with pytest.raises(ValueError, match=word):
            render_costs.parse_denoiser(bad)


def test_render_costs_compositor_denoiser(addon, tmp_path):
    """The compositor's Denoise node with the pipeline's own settings (FAST prefilter, albedo +
    normal, HIGH) gives the images Cycles' own denoiser gives, so ``--denoisers`` variants are
    compared on equal terms; another prefilter or no guide passes give other images."""
    import bpy
    import cv2
    import numpy as np

    from facs_dataset_generator.pipeline import head, runner

    render_costs = _benchmark("render_costs")

    head.add_builtin_head(bpy.context.scene)
    imgs = {}
    for tag, denoiser in (("cycles", None), ("fast", ("FAST", "albedo+normal", "HIGH")),
                          ("accurate", ("ACCURATE", "albedo+normal", "HIGH")), ("bare", ("FAST", "none", "HIGH"))):
        conf = _conf(tmp_path / tag, count=1, emotions=("Joy",))
        conf.camera.views = 1
        conf.render.resolution = (96, 96)
        conf.render.samples = 8
        job = runner.Job(conf, scene=bpy.context.scene).prepare()
        try:
            assert job.scene.cycles.use_denoising and job.scene.cycles.denoising_prefilter == "FAST"
            if denoiser:
                render_costs._denoise_output(job.scene, denoiser)
            assert job.step()
        finally:
            job.finish()
        imgs[tag] = cv2.imread(str(next((tmp_path / tag / "images").glob("*.png")))).astype(int)
    assert np.abs(imgs["fast"] - imgs["cycles"]).max() <= 1
    for other in ("accurate", "bare"):
        assert np.abs(imgs[other] - imgs["cycles"]).mean() > 0.1, other  # measured 0.69 and 0.77


def test_benchmark_overrides_reach_debug_only_cycles_values(addon):
    """``--proto-set cycles.sampling_pattern=SOBOL_BURLEY`` (a value Cycles lists only with its
    debug options on) is applied, the debug options are off again afterwards, and a wrong
    owner or value is an error that names it."""
    import bpy

    throughput = _benchmark("throughput")

    scene = bpy.context.scene
    prefs = bpy.context.preferences
    before = (prefs.experimental.use_cycles_debug, prefs.view.show_developer_ui)
    throughput._apply_overrides(scene, throughput.parse_overrides(
        ["cycles.sampling_pattern=SOBOL_BURLEY,cycles.samples=12,render.threads_mode=FIXED"]))
    prefs.experimental.use_cycles_debug = prefs.view.show_developer_ui = True  # to read the debug value back
    assert scene.cycles.sampling_pattern == "SOBOL_BURLEY"
    prefs.experimental.use_cycles_debug, prefs.view.show_developer_ui = before
    assert (scene.cycles.samples, scene.render.threads_mode) == (12, "FIXED")
    with pytest.raises(TypeError, match="NO_SUCH_PATTERN"):
        throughput._apply_overrides(scene, {"cycles.sampling_pattern": "NO_SUCH_PATTERN"})
    assert (prefs.experimental.use_cycles_debug, prefs.view.show_developer_ui) == before
    with pytest.raises(SystemExit, match="eevee.samples"):
        throughput._apply_overrides(scene, {"eevee.samples": 4})


def test_benchmark_ratio_interval():
    """The benchmark's mean and 95 % interval of per-repeat ratios (Student's t)."""
    throughput = _benchmark("throughput")

    m, lo, hi = throughput.mean_ci([2.01, 1.98, 1.99, 2.01])
    # mean 1.9975, sd 0.015, t(3) = 3.18: half-width 3.18 * 0.015 / 2 = 0.0239
    assert m == pytest.approx(1.9975)
    assert (lo, hi) == pytest.approx((1.9975 - 0.02385, 1.9975 + 0.02385), abs=2e-4)
    assert throughput.mean_ci([2.0]) == (2.0, 2.0, 2.0)
    big = [2.0 + 0.01 * (k % 3) for k in range(40)]  # beyond the table: normal quantile
    m, lo, hi = throughput.mean_ci(big)
    import statistics
    assert hi - m == pytest.approx(1.96 * statistics.stdev(big) / 40 ** 0.5)
