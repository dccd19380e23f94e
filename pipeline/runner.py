# SPDX-License-Identifier: GPL-3.0-or-later
"""The generation pipeline: one :class:`Job` used by the CLI, the modal operator and
``blender -b --command facsgen generate``.

``generate(config)`` = ``Job.prepare()`` + ``Job.step()`` until it returns False +
``Job.finish()``. ``prepare`` validates everything (configuration, preset, character,
AUs the character can express, landmark map, output folder) *before* anything is
rendered or written, then sets the scene up (own camera, own world, render settings) and
remembers the user's scene so that ``finish`` / ``cancel`` restore it exactly.

Per sample (expression-major order, see :mod:`..core.sampling`): pose the character once
per expression (adapter ``set_aus`` + identity; landmarks from the evaluated mesh with one
``foreach_get``; one BVH for occlusion), then per view: move the camera, set the lighting,
compute the labels, render to a temporary file, rename it, write the CSV (which commits
the sample).

HDRI lighting is turned by turning the character and the camera (``CharacterTurntable``),
so the world changes only with the HDRI; the draws that share an HDRI are rendered one after
another (``SamplePlan.render_order``). Labels are always computed in the scene's own frame.
"""

from __future__ import annotations

import math
import os
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import bpy
import numpy as np

from ..core import cameras, dataset
from ..core import config as cfg
from ..core.config import ConfigError
from ..core.sampling import SamplePlan, sample_id
from ..landmark_map import LandmarkMapError
from . import annotate, blender_log, characters, head, landmark_maps, render_setup


class GenerationError(RuntimeError):
    """The run cannot proceed (no landmark map, render failure ...); the message says why."""


@dataclass
class GenerationResult:
    written: int  # samples rendered by this run
    total: int  # samples in this run's shard
    skipped: int  # samples already complete (resume)
    out: str


# --------------------------------------------------------------------------- character helpers


def _is_builtin(obj) -> bool:
    return bool(head.is_builtin_head(obj))


def find_landmark_map(obj, depsgraph=None):
    """The landmark map of ``obj``: the built-in head's own, else the one
    ``landmark_maps.find_map`` finds (stored on the object, shipped, user maps); None if none."""
    if head.is_builtin_head(obj):
        return head.builtin_landmark_map(obj, depsgraph)
    return landmark_maps.find_map(obj, depsgraph)


def _missing_map_message(obj, depsgraph) -> str:
    try:
        landmark_maps.require_map(obj, depsgraph)
    except LandmarkMapError as exc:
        return str(exc)
    return f"no landmark map for mesh {obj.name!r} ({len(obj.data.vertices)} vertices)"


def extension_version() -> str:
    try:
        import tomllib

        p = Path(__file__).resolve().parent.parent / "blender_manifest.toml"
        return str(tomllib.loads(p.read_text(encoding="utf-8")).get("version", "unknown"))
    except (OSError, ValueError):
        return "unknown"


# --------------------------------------------------------------------------- config validation


def _check_number(name, v, lo=None, hi=None, lo_open=False, integer=False):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, float) and not math.isfinite(v)):
        raise ConfigError(f"{name} must be a number, got {v!r}")
    if integer and int(v) != v:
        raise ConfigError(f"{name} must be a whole number, got {v!r}")
    if lo is not None and (v <= lo if lo_open else v < lo):
        raise ConfigError(f"{name} must be {'>' if lo_open else '>='} {lo}, got {v!r}")
    if hi is not None and v > hi:
        raise ConfigError(f"{name} must be <= {hi}, got {v!r}")


def validate_config(conf: cfg.GenerationConfig) -> None:
    """Every check that needs neither Blender data nor the disk (ConfigError)."""
    if not conf.out or not str(conf.out).strip():
        raise ConfigError("no output folder given")
    r = conf.render
    if r.engine not in ("CYCLES", "BLENDER_EEVEE_NEXT", "BLENDER_EEVEE"):
        raise ConfigError(f"unknown render engine {r.engine!r} (expected CYCLES or BLENDER_EEVEE_NEXT)")
    if str(r.device).lower() not in cfg.DEVICES:
        raise ConfigError(f"unknown device {r.device!r} (expected {', '.join(cfg.DEVICES)})")
    if len(tuple(r.resolution)) != 2:
        raise ConfigError(f"resolution must be (width, height), got {r.resolution!r}")
    for k, v in zip(("width", "height"), r.resolution):
        _check_number(f"resolution {k}", v, 1, 16384, integer=True)
    _check_number("resolution percentage", r.resolution_percentage, 1, 100, integer=True)
    w, h = cameras.render_size(*r.resolution, r.resolution_percentage)
    if w < 1 or h < 1:
        raise ConfigError(f"resolution {r.resolution[0]}x{r.resolution[1]} at {r.resolution_percentage}% is empty")
    _check_number("render samples", r.samples, 1, integer=True)
    _check_number("noise threshold", r.noise_threshold, 0, 1)
    c = conf.camera
    if c.layout not in ("fibonacci", "grid", "object"):
        raise ConfigError(f"unknown camera layout {c.layout!r} (expected fibonacci, grid or object)")
    _check_number("views", c.views, 1, integer=True)
    if c.layout == "object" and not c.source_object:
        raise ConfigError("camera layout 'object' needs a camera source object (--camera-object)")
    if c.layout != "object":
        cameras.hemisphere_views(c.layout, 1, c.yaw_range, c.pitch_range)  # range checks
    if c.distance is not None:
        _check_number("camera distance", c.distance, 0, lo_open=True)
    _check_number("face fraction", c.face_fraction, 0, 1, lo_open=True)
    _check_number("roll jitter", c.roll_jitter, 0, 180)
    _check_number("focal length", c.focal_length, 0, lo_open=True)
    _check_number("sensor width", c.sensor_width, 0, lo_open=True)
    if c.sensor_fit not in cameras.SENSOR_FITS:
        raise ConfigError(f"unknown sensor fit {c.sensor_fit!r} (expected one of: {', '.join(cameras.SENSOR_FITS)})")
    li = conf.lighting
    if li.mode not in ("hdri", "scene"):
        raise ConfigError(f"unknown lighting mode {li.mode!r} (expected hdri or scene)")
    lo, hi = li.strength_range
    _check_number("lighting strength min", lo, 0)
    _check_number("lighting strength max", hi, 0)
    if lo > hi:
        raise ConfigError(f"lighting strength range: min {lo} > max {hi}")
    k, n = conf.shard
    if not (isinstance(k, int) and isinstance(n, int)) or n < 1 or not 0 <= k < n:
        raise ConfigError(f"shard must be K/N with 0 <= K < N, got {k}/{n}")


def check_output_folder(out: str) -> Path:
    """The output folder must be a folder (or creatable) and writable; nothing is created."""
    p = Path(os.path.abspath(os.path.expanduser(str(out))))
    if p.exists() and not p.is_dir():
        raise ConfigError(f"output folder {p} exists and is not a folder")
    probe = p
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"output folder {p} is not writable ({probe} does not allow writing)")
    return p


def _emotion_aus(preset: cfg.Preset, counts: dict[str, int]) -> set[str]:
    return {au for e, n in counts.items() if n > 0 for au in preset.emotions[e].aus}


def _resolve_preset(conf: cfg.GenerationConfig, preset: cfg.Preset | None) -> cfg.Preset:
    return preset if preset is not None else cfg.load_preset(conf.preset)


# --------------------------------------------------------------------------- the job


class Job:
    """One generation run, driven one sample at a time (CLI loop or modal operator)."""

    def __init__(self, config: cfg.GenerationConfig, preset: cfg.Preset | None = None, scene=None, progress=None,
                 capture_blender_log: bool = False, turn_character: bool = True):
        self.config = config
        #: HDRI lighting: turn the character and the camera instead of the world, and scale
        #: Cycles film exposure instead of the world's strength (see render_setup.CharacterTurntable);
        #: False rotates the world itself (same images up to noise; a world change costs a
        #: rebuild of Cycles' world importance map)
        self.turn_character = turn_character
        self.turntable: render_setup.CharacterTurntable | None = None
        self.lighting_turn = "none"
        #: keep Blender's own log lines (render "Saved: ...", Cycles device warnings) off the
        #: terminal (the CLI; see :mod:`.blender_log`); a failed render quotes them
        self.capture_blender_log = capture_blender_log
        self._blog = blender_log.BlenderLog(enabled=False)
        self._preset_arg = preset
        self.scene = scene
        self.progress = progress
        self.total = 0
        self.done = 0
        self.written = 0
        self.skipped = 0
        self.out: Path | None = None
        self.render_seconds = 0.0  # time inside the render call
        self.step_seconds = 0.0  # whole step() time
        #: seconds per phase of step(): posing + evaluating (once per expression), camera/lighting/labels,
        #: the render call, committing the files
        self.timings = {"pose": 0.0, "label": 0.0, "render": 0.0, "write": 0.0}
        self._state: render_setup.SceneState | None = None
        self._pending: deque[int] = deque()
        self._prepared = False
        self._closed = False
        self._geom: annotate.ExpressionGeometry | None = None
        self._expr_key: int | None = None

    # ---------------------------------------------------------------- prepare
    def prepare(self) -> Job:
        conf = self.config
        validate_config(conf)
        preset = _resolve_preset(conf, self._preset_arg)
        SamplePlan(conf, preset)  # emotions, counts, AU ranges, seed, sampling (ConfigError)
        if conf.blend:
            blend = Path(conf.blend)
            if not blend.is_file():
                raise ConfigError(f".blend file not found: {blend}")
            try:
                bpy.ops.wm.open_mainfile(filepath=str(blend))
            except RuntimeError as exc:
                raise GenerationError(f"cannot open {blend}: {exc}") from None
            self.scene = None
        scene = self.scene or bpy.context.scene
        self.scene = scene
        out = check_output_folder(conf.out)
        state = render_setup.SceneState(scene)
        self._state = state
        try:
            self._prepare_scene(conf, preset, scene, state, out)
        except BaseException:
            self._blog.close()
            state.restore()
            self._state = None
            raise
        self._prepared = True
        return self

    def _setup_character(self, conf, preset, scene, state):
        """Character, adapter, AU check, landmark map (shared with :func:`preview`)."""
        char_errors = (characters.CharacterError,)
        builtin_before = {ob.name for ob in scene.objects if ob.type == "MESH" and _is_builtin(ob)}
        n_mats = set(bpy.data.materials)
        try:
            obj = characters.find_character(scene, conf.character)
        except char_errors as exc:
            raise ConfigError(str(exc)) from None
        if obj is None:
            raise ConfigError(f"character {conf.character!r} not found")
        if state is not None and conf.character is None and obj.name not in builtin_before:
            # the built-in head was added for this run: remove it again afterwards
            state.created(obj)
            if obj.data is not None:
                state.created(obj.data)
            for m in set(bpy.data.materials) - n_mats:
                state.created(m)
        try:
            adapter = characters.detect_adapter(obj)
        except char_errors as exc:
            raise ConfigError(str(exc)) from None
        obj = adapter.obj
        if state is not None and hasattr(adapter, "save_state"):
            state.on_restore(adapter.restore_state, adapter.save_state())
        plan0 = SamplePlan(conf, preset)
        needed = _emotion_aus(preset, plan0.counts)
        supported = set(adapter.supported_aus())
        unsupported = sorted(needed - supported, key=cfg.au_sort_key)
        if unsupported and not conf.allow_drop_unsupported:
            raise ConfigError(
                f"character {obj.name!r} ({adapter.describe()}) cannot express "
                f"{', '.join(unsupported)}, used by the selected emotions; remove them from the preset, pick "
                f"other emotions, or allow dropping them (labelled 0, recorded in dataset.json: "
                f"--allow-drop-unsupported)"
            )
        depsgraph = self._depsgraph(scene)
        lmap = find_landmark_map(obj, depsgraph)
        if lmap is None:
            raise GenerationError(_missing_map_message(obj, depsgraph))
        return obj, adapter, lmap, unsupported

    @staticmethod
    def _depsgraph(scene):
        if scene == bpy.context.scene:
            return bpy.context.evaluated_depsgraph_get()
        vl = scene.view_layers[0]
        vl.update()
        return vl.depsgraph

    def _prepare_scene(self, conf, preset, scene, state, out):
        obj, adapter, lmap, dropped = self._setup_character(conf, preset, scene, state)
        self.obj, self.adapter, self.lmap, self.dropped = obj, adapter, lmap, dropped
        self.builtin = _is_builtin(obj)
        self.apply_identity = bool(conf.identity and self.builtin)

        # lighting and layout
        hdris = render_setup.available_hdris(conf.lighting.hdris) if conf.lighting.mode == "hdri" else {}
        if conf.lighting.mode == "hdri" and not hdris:
            raise ConfigError("no studio HDRI found in Blender's datafiles/studiolights/world; use --lighting scene")
        eyes = None
        if conf.camera.layout == "object":
            eyes = render_setup.object_vertex_positions(scene, conf.camera.source_object, conf.camera.vertex_group)
            views = len(eyes)
        else:
            views = int(conf.camera.views)
        plan = SamplePlan(conf, preset, views=views, hdris=sorted(hdris))
        self.plan, self.preset = plan, preset

        # output folder: compare with an existing dataset, find what is done
        ids = plan.shard_indices(conf.shard)
        generation = self._generation_meta(conf, preset, plan, obj, adapter)
        meta_old = dataset.read_metadata(out)
        if meta_old is not None and meta_old.get("generation") != generation:
            raise ConfigError(
                f"output folder {out} holds a dataset generated with different settings; "
                f"choose another --out (or the same settings to resume)"
            )
        complete = dataset.scan(out).complete if out.is_dir() else set()
        mine = {_sid(i) for i in ids}
        self._mine = mine
        already = complete & mine
        if already and not conf.resume:
            raise ConfigError(
                f"output folder {out} already contains {len(already)} of this run's samples; "
                f"pass --resume to continue it, or choose an empty folder"
            )

        # ---- from here on the scene and the disk are modified
        state.snapshot_character(obj)
        self._blog = blender_log.BlenderLog(self.capture_blender_log)
        with self._blog.captured():  # Cycles' device probing prints warnings
            self.device = render_setup.apply_render_settings(scene, conf.render, state)
        self.camera = render_setup.make_camera(scene, conf.camera, state)
        self.world = render_setup.HdriWorld(scene, hdris, state) if hdris else None
        state.set(scene.render, "filepath", scene.render.filepath)  # set per sample in step()
        self.hidden = render_setup.isolate_character(scene, obj, conf.lighting.mode == "scene", state)
        self.k, self.width, self.height = render_setup.camera_intrinsics(self.camera, scene)

        self._neutral_frame(conf, eyes)
        if self.world is not None:
            self.world.only_light(scene, state)
            self._set_up_turntable(scene, state)

        created = not out.exists()
        try:
            out.mkdir(parents=True, exist_ok=True)
            dataset.ensure_layout(out)
            if meta_old is None:
                dataset.write_metadata(out, self._metadata(conf, preset, plan, generation))
        except OSError as exc:
            if created:
                import shutil

                shutil.rmtree(out, ignore_errors=True)
            raise ConfigError(f"output folder {out} is not writable ({exc.strerror or exc})") from None
        self.out = out
        dataset.clean_partial(out, mine)
        complete = dataset.scan(out).complete
        pending = [i for i in ids if _sid(i) not in complete]
        # with the turntable only a change of HDRI rebuilds the world's importance map:
        # render the draws that share an HDRI one after another (content unchanged)
        self._pending = deque(plan.render_order(pending) if self.turntable is not None else pending)
        self.total = len(ids)
        self.skipped = self.total - len(self._pending)
        self.done = self.skipped
        self.formatter = dataset.RowFormatter(plan.au_columns)

    def _neutral_frame(self, conf, eyes) -> None:
        """Face frame (target between the eyes, axes), head axes and camera positions from
        the neutral pose (with the default identity when identities are randomised, so that
        nothing depends on the state the head was left in)."""
        self.adapter.reset()
        if self.apply_identity:
            head.apply_identity(self.obj, {})
        geom0 = annotate.evaluate_expression(self.obj, self.lmap, self._depsgraph(self.scene), with_bvh=False)
        target, face_axes, face_height = cameras.face_frame(geom0.landmarks)
        head_rot = cameras.orthonormalize(np.array(self.adapter.head_matrix_world(), dtype=np.float64)[:3, :3])
        self.face_in_head = cameras.snap_to_axes(head_rot.T @ face_axes)
        self.target, self.face_axes, self.face_height = target, head_rot @ self.face_in_head, face_height
        self.eyes = self._camera_positions(conf, eyes, target, self.face_axes, face_height)

    def _set_up_turntable(self, scene, state) -> None:
        """Use :class:`render_setup.CharacterTurntable` for the lighting's rotation and strength
        when turning the character is verified to turn it rigidly (else rotate the world)."""
        if not self.turn_character:
            self.lighting_turn = "world rotated (turntable off)"
            return
        tt = render_setup.CharacterTurntable(scene, self.obj, state)
        problem = tt.check(lambda: annotate.evaluate_expression(
            self.obj, self.lmap, self._depsgraph(scene), with_bvh=False).landmarks)
        if problem is None:
            self.turntable = tt
            self.lighting_turn = "character and camera turned, world fixed; strength as Cycles film exposure"
        else:
            self.lighting_turn = f"world rotated ({problem})"

    def _camera_positions(self, conf, eyes, target, face_axes, face_height):
        c = conf.camera
        if eyes is not None:
            return np.asarray(eyes, dtype=np.float64)
        views = cameras.hemisphere_views(c.layout, int(c.views), c.yaw_range, c.pitch_range)
        if c.distance is not None:
            dist = float(c.distance)
        else:
            dist = cameras.distance_for_face_fraction(face_height, self.k[1, 1], self.height, c.face_fraction)
        self.distance = dist
        return np.array([target + dist * cameras.view_direction(face_axes, y, p) for y, p in views])

    def _generation_meta(self, conf, preset, plan, obj, adapter) -> dict:
        """What defines the dataset's content (compared when resuming / adding shards)."""
        return {
            "config": dataset.run_independent_config(conf.to_dict()),
            "preset": preset.to_dict(),
            "au_columns": plan.au_columns,
            "counts": plan.counts,
            "views": plan.views,
            "hdris": list(plan.hdris),
            "character": {"name": obj.name, "kind": getattr(adapter, "kind", "unknown")},
        }

    def _metadata(self, conf, preset, plan, generation) -> dict:
        cols = dataset.columns(plan.au_columns)
        return {
            "schema_version": dataset.SCHEMA_VERSION,
            "generator": "facs_dataset_generator",
            "extension_version": extension_version(),
            "blender_version": bpy.app.version_string,
            "seed": int(conf.seed),
            "total_samples": plan.total,
            "config": conf.to_dict(),
            "generation": generation,
            "character": {"name": self.obj.name, "kind": getattr(self.adapter, "kind", "unknown"),
                          "description": self.adapter.describe()},
            "dropped_aus": list(self.dropped),
            "render": {"device": self.device, "width": self.width, "height": self.height,
                       "engine": self.scene.render.engine, "lighting_rotation": self.lighting_turn},
            "sampling": {
                "order": "expression-major, camera-minor: sample i = emotion block, expression draw "
                         "(views samples each), view",
                "render_order": "index order; with the lighting turntable, draws sharing an HDRI are "
                                "rendered one after another within windows of 256 draws",
                "random_streams": "SeedSequence([seed, i0, 0]) AUs, [seed, i0, 1] identity seed, "
                                  "[seed, i0, 3] lighting, [seed, i, 2] roll; i0 = first sample of the "
                                  "expression draw",
                "identity": "per expression draw (shared by its views)" if self.apply_identity else "not applied",
            },
            "columns": cols,
            "column_docs": dataset.column_docs(plan.au_columns),
        }

    # ---------------------------------------------------------------- per sample
    def camera_matrix(self, sample) -> np.ndarray:
        eye = self.eyes[sample.view % len(self.eyes)]
        return cameras.look_at(eye, self.target, self.face_axes[:, 1], sample.roll)

    def _pose(self, sample) -> None:
        aus = {au: v for au, v in sample.aus.items() if au not in self.dropped}
        self.adapter.set_aus(aus)
        if self.apply_identity:
            head.apply_identity(self.obj, head.random_identity(np.random.default_rng(sample.identity_seed)))

    def step(self) -> bool:
        """Render exactly one pending sample; False when none is left."""
        if not self._prepared or self._closed:
            return False
        if not self._pending:
            return False
        t0 = time.perf_counter()
        i = self._pending[0]
        s = self.plan[i]
        scene = self.scene
        tt = self.turntable
        if self._expr_key != s.expression:  # once per expression draw (expression-major order)
            if tt is not None:
                tt.turn(0.0)  # pose and read the geometry in the scene's own frame
            self._pose(s)
            self._geom = annotate.evaluate_expression(self.obj, self.lmap, self._depsgraph(scene))
            head_rot = cameras.orthonormalize(np.array(self.adapter.head_matrix_world(), dtype=np.float64)[:3, :3])
            self._geom.head_rotation = head_rot @ self.face_in_head
            self._expr_key = s.expression
        tp = time.perf_counter()
        cm = self.camera_matrix(s)
        render_setup.set_matrix_world(self.camera, cm)
        # the labels: this camera (as Blender stores it) in the scene's own frame, whatever the lighting
        cam_mw = np.array(self.camera.matrix_world, dtype=np.float64)
        if tt is not None:
            tt.turn(s.hdri_rotation)
            render_setup.set_matrix_world(self.camera, tt.matrix @ cm)
            exposed = tt.set_strength(s.hdri_strength)
            self.world.set(s.hdri, 0.0, 1.0 if exposed else s.hdri_strength)
        elif self.world is not None:
            self.world.set(s.hdri, s.hdri_rotation, s.hdri_strength)
        lab = annotate.label(self._geom, cam_mw, self.k, self.width, self.height, self._geom.head_rotation)
        identity_seed = s.identity_seed if self.apply_identity else -1
        aus = {au: (0.0 if au in self.dropped else v) for au, v in s.aus.items()}
        row = self.formatter.format(
            s.sample_id, s.emotion, f"{dataset.IMAGES}/{s.sample_id}.png", self.width, self.height, identity_seed,
            aus, lab.pose, lab.cam_position, self.k, lab.r, lab.t, lab.uv, lab.depth, lab.visible,
        )
        final = dataset.image_path(self.out, s.sample_id)
        tmp = dataset.tmp_path(final)
        scene.render.filepath = str(tmp)
        t1 = time.perf_counter()
        log = None
        try:
            with self._blog.captured() as log:
                bpy.ops.render.render(write_still=True, scene=scene.name)
        except RuntimeError as exc:
            raise GenerationError(f"rendering sample {s.sample_id} failed: {exc}{_quote(log)}") from None
        t2 = time.perf_counter()
        self.timings["pose"] += tp - t0
        self.timings["label"] += t1 - tp
        self.timings["render"] += t2 - t1
        if not tmp.is_file():
            raise GenerationError(f"rendering sample {s.sample_id} wrote no image ({tmp}){_quote(log)}")
        dataset.commit_image(self.out, s.sample_id, tmp)
        dataset.write_annotation(self.out, s.sample_id, self.formatter.header, row)
        self._pending.popleft()
        self.done += 1
        self.written += 1
        t3 = time.perf_counter()
        self.timings["write"] += t3 - t2
        self.render_seconds += t2 - t1
        self.step_seconds += t3 - t0
        if self.progress is not None:
            self.progress(self.done, self.total, f"{s.sample_id} {s.emotion} view {s.view}")
        return True

    # ---------------------------------------------------------------- end
    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self.out is not None and self.out.is_dir() and self._index_due():
                dataset.rebuild_index(self.out)
        finally:
            self._blog.close()
            if self._state is not None:
                self._state.restore()

    def _index_due(self) -> bool:
        """Rebuild the index unless other shards share this folder and are still running:
        then the last shard to finish writes it (every shard re-reading every CSV would cost
        N times the whole index)."""
        if tuple(self.config.shard)[1] <= 1 or not self._prepared:
            return True
        s = dataset.scan(self.out)
        present = s.complete | s.csv_only
        others = present - self._mine
        return not others or len(s.complete) >= self.plan.total

    def finish(self) -> GenerationResult:
        """Write the index and restore the user's scene."""
        self._close()
        return GenerationResult(self.written, self.total, self.skipped, str(self.out) if self.out else "")

    def cancel(self) -> GenerationResult:
        """Stop: restore the scene; what is written stays valid (``--resume`` continues)."""
        return self.finish()

    @property
    def blender_log_path(self) -> Path | None:
        """Where Blender's own output of this run goes while it runs (None: not captured)."""
        return self._blog.path

    @property
    def remaining(self) -> int:
        return len(self._pending)


def _quote(log: blender_log.Captured | None) -> str:
    """Blender's last log lines, to append to an error message (empty when none were captured)."""
    tail = log.tail() if log is not None else ""
    return f"\nBlender said:\n{tail}" if tail else ""


def _sid(i: int) -> str:
    return sample_id(i)


def generate(config: cfg.GenerationConfig, preset: cfg.Preset | None = None, progress=None, context=None,
             capture_blender_log: bool = False) -> GenerationResult:
    """Validate, render every pending sample of the shard, write the index, restore the scene.

    ``capture_blender_log``: keep Blender's own log lines off the terminal (see :class:`Job`)."""
    scene = getattr(context, "scene", None) if context is not None else None
    job = Job(config, preset, scene=scene, progress=progress, capture_blender_log=capture_blender_log)
    job.prepare()
    if progress is not None:
        where = f"; Blender's log: {job.blender_log_path} (deleted at the end)" if job.blender_log_path else ""
        progress(job.done, job.total, f"{job.remaining} to render ({job.skipped} already done) on "
                                      f"{render_setup.device_label(job.scene)}{where}")
    try:
        while job.step():
            pass
    except BaseException:
        job.cancel()
        raise
    return job.finish()


# --------------------------------------------------------------------------- preview


def _config_intrinsics(config: cfg.GenerationConfig, scene):
    """K, W, H of the camera a run would create (render_setup.make_camera) for ``config``."""
    c, r = config.camera, scene.render
    return cameras.intrinsics(
        c.focal_length, c.sensor_width, c.sensor_width * 24.0 / 36.0, c.sensor_fit, *config.render.resolution,
        config.render.resolution_percentage, r.pixel_aspect_x, r.pixel_aspect_y,
    )


def preview(config: cfg.GenerationConfig, preset: cfg.Preset | None, emotion: str, index: int, scene=None) -> dict:
    """Pose the character exactly as sample ``index`` of ``emotion`` would be posed (AUs and
    identity; the pose is left in place) and return its world landmarks, AUs and camera.

    Returns ``{"landmarks_world": (468, 3), "aus": {AU: value for every AU column},
    "camera_matrix_world": mathutils.Matrix, "sample_index": i, "sample_id": str,
    "view": v, "identity_seed": int, "landmarks_px": (468, 2), "visible": (468,) bool,
    "K": 3x3, "resolution": (W, H)}``."""
    import mathutils

    validate_config(config)
    preset = _resolve_preset(config, preset)
    scene = scene or bpy.context.scene
    job = Job(config, preset, scene=scene)
    obj, adapter, lmap, dropped = job._setup_character(config, preset, scene, None)
    job.obj, job.adapter, job.lmap, job.dropped = obj, adapter, lmap, dropped
    job.apply_identity = bool(config.identity and _is_builtin(obj))
    eyes = None
    if config.camera.layout == "object":
        eyes = render_setup.object_vertex_positions(scene, config.camera.source_object, config.camera.vertex_group)
    hdris = render_setup.available_hdris(config.lighting.hdris) if config.lighting.mode == "hdri" else {}
    plan = SamplePlan(config, preset, views=len(eyes) if eyes is not None else None, hdris=sorted(hdris))
    i = plan.global_index(emotion, index)
    s = plan[i]
    job.k, job.width, job.height = _config_intrinsics(config, scene)
    job._neutral_frame(config, eyes)
    job._pose(s)
    geom = annotate.evaluate_expression(obj, lmap, job._depsgraph(scene))
    cm = job.camera_matrix(s)
    head_rot = cameras.orthonormalize(np.array(adapter.head_matrix_world(), dtype=np.float64)[:3, :3])
    lab = annotate.label(geom, cm, job.k, job.width, job.height, head_rot @ job.face_in_head)
    return {
        "landmarks_world": geom.landmarks,
        "aus": {au: (0.0 if au in dropped else float(s.aus.get(au, 0.0))) for au in plan.au_columns},
        "camera_matrix_world": mathutils.Matrix(cm.tolist()),
        "sample_index": i,
        "sample_id": s.sample_id,
        "view": s.view,
        "identity_seed": s.identity_seed if job.apply_identity else -1,
        "landmarks_px": lab.uv,
        "visible": lab.visible,
        "K": job.k,
        "resolution": (job.width, job.height),
        "pose": lab.pose,
    }


def camera_views(config: cfg.GenerationConfig, preset: cfg.Preset | None = None, scene=None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """((V, 4, 4) camera ``matrix_world`` of views 0..V-1 without roll jitter, (3,) aim point),
    exactly as the dataset places them. The character's pose is measured at neutral and put
    back afterwards (nothing in the scene changes)."""
    validate_config(config)
    preset = _resolve_preset(config, preset)
    scene = scene or bpy.context.scene
    had_head = {ob.name for ob in scene.objects}
    job = Job(config, preset, scene=scene)
    obj, adapter, lmap, dropped = job._setup_character(config, preset, scene, None)
    state = render_setup.SceneState(scene)
    if obj.name not in had_head:
        state.created(obj)  # the built-in head was added only to measure it
    state.snapshot_character(obj)
    if hasattr(adapter, "save_state"):
        state.on_restore(adapter.restore_state, adapter.save_state())
    try:
        job.obj, job.adapter, job.lmap, job.dropped = obj, adapter, lmap, dropped
        job.apply_identity = bool(config.identity and _is_builtin(obj))
        eyes = None
        if config.camera.layout == "object":
            eyes = render_setup.object_vertex_positions(scene, config.camera.source_object,
                                                        config.camera.vertex_group)
        job.k, job.width, job.height = _config_intrinsics(config, scene)
        job._neutral_frame(config, eyes)
        mats = np.stack([cameras.look_at(e, job.target, job.face_axes[:, 1]) for e in job.eyes])
        return mats, np.asarray(job.target, dtype=np.float64)
    finally:
        state.restore()
