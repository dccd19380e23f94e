# SPDX-License-Identifier: GPL-3.0-or-later
"""``facsgen``: the batch runner.

Two entry points run the same code:

* the console script ``facsgen`` (``pip install .`` beside the ``bpy`` wheel), which
  imports ``bpy``, registers this extension in it and dispatches;
* ``blender -b scene.blend --command facsgen ...`` through
  ``bpy.utils.register_cli_command`` (registered when the extension is enabled).

Argument parsing is bpy-free, so ``facsgen --help`` is instant. Bad arguments give a
single ``facsgen: error: ...`` line and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
import time

from ..core import config as cfg

PROG = "facsgen"
_RANGE_OPTIONS = ("--yaw-range", "--pitch-range", "--strength-range")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, no usage dump
        self.exit(2, f"{self.prog}: error: {message}\n")


class UsageError(Exception):
    """Invalid argument values detected after parsing (exit status 2)."""


def _resolution(text: str) -> tuple[int, int]:
    try:
        if "x" in text.lower():
            w, h = text.lower().split("x", 1)
            res = (int(w), int(h))
        else:
            res = (int(text), int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or WxH (e.g. 512 or 640x480), got {text!r}") from None
    if min(res) < 8 or max(res) > 16384:
        raise argparse.ArgumentTypeError(f"resolution must be between 8 and 16384 pixels, got {text!r}")
    return res


def _float_range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN,MAX (e.g. -60,60), got {text!r}") from None
    if lo > hi:
        raise argparse.ArgumentTypeError(f"min {lo:g} > max {hi:g} in {text!r}")
    return lo, hi


def _shard(text: str) -> tuple[int, int]:
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K/N (e.g. 0/4), got {text!r}") from None
    if n < 1 or not 0 <= k < n:
        raise argparse.ArgumentTypeError(f"need 0 <= K < N, got {text!r}")
    return k, n


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {v}")
    return v


def _nonneg_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


def _percentage(text: str) -> int:
    v = _positive_int(text)
    if v > 100:
        raise argparse.ArgumentTypeError(f"must be between 1 and 100, got {v}")
    return v


def _unit_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}") from None
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}")
    return v


def _emotions(text: str) -> tuple[str, ...]:
    try:
        names = tuple(cfg.canonical_emotion(e) for e in text.split(",") if e.strip())
    except cfg.ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not names:
        raise argparse.ArgumentTypeError("no emotion given")
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"emotion listed twice in {text!r}")
    return names


def build_parser() -> argparse.ArgumentParser:
    d = cfg.GenerationConfig()
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = _Parser(prog=PROG, formatter_class=fmt,
                description="Generate and check synthetic FACS facial-expression datasets with Blender.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)

    g = sub.add_parser("generate", formatter_class=fmt, help="render a dataset",
                       description="Render a dataset: images + per-sample CSV (AUs, head pose, camera, 468 landmarks).")
    g.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    g.add_argument("--count", type=_positive_int, default=d.count, metavar="N",
                   help="total number of samples (split over --emotions, remainder to the first listed)")
    g.add_argument("--seed", type=_nonneg_int, default=d.seed, metavar="S",
                   help="random seed: sample i depends only on (seed, i)")
    g.add_argument("--resolution", type=_resolution, default=d.render.resolution, metavar="N|WxH",
                   help="image size in pixels, e.g. 512 or 640x480")
    g.add_argument("--resolution-percentage", type=_percentage, default=d.render.resolution_percentage, metavar="P",
                   help="Blender's resolution percentage (images and labels are scaled)")
    g.add_argument("--samples", type=_positive_int, default=d.render.samples, metavar="SPP",
                   help="render samples per pixel, at most (with the default --noise-threshold, blue-noise "
                        "sampling and the FAST denoiser prefilter, 28 matches Blender's 16 spp with default "
                        "settings in quality, in about half the time; see benchmarks/throughput.py)")
    g.add_argument("--device", choices=cfg.DEVICES,
                   default=d.render.device,
                   help="Cycles device: auto = a GPU when there is one (OptiX, then CUDA, HIP, Metal, oneAPI; "
                        "or the devices set in Blender's preferences), else the CPU; gpu = the same but an error "
                        "without a GPU; optix/cuda/... = that GPU backend only")
    g.add_argument("--engine", choices=("CYCLES", "BLENDER_EEVEE_NEXT"), default=d.render.engine,
                   help="render engine")
    g.add_argument("--noise-threshold", type=_unit_float, default=d.render.noise_threshold, metavar="T",
                   help="Cycles adaptive sampling: a pixel stops once its noise is below T (0 = off: every "
                        "pixel gets --samples)")
    g.add_argument("--no-denoise", action="store_true", help="disable Cycles denoising")
    g.add_argument("--blend", metavar="FILE", default=None, help=".blend file to open first")
    g.add_argument("--character", metavar="OBJECT_NAME", default=None,
                   help="mesh object to animate (default: the built-in head, added if missing)")
    g.add_argument("--preset", metavar="FILE_OR_NAME", default=d.preset,
                   help="emotion/AU preset: a bundled name (emfacs, original_script) or a JSON file")
    g.add_argument("--emotions", type=_emotions, default=d.emotions, metavar="A,B,...",
                   help="emotions to generate")
    g.add_argument("--sampling", choices=("random", "grid"), default=d.sampling,
                   help="random = uniform in each AU range; grid = evenly spaced values, full product")
    g.add_argument("--grid-steps", type=_positive_int, default=d.grid_steps, metavar="N",
                   help="values per AU with --sampling grid")
    g.add_argument("--no-identity", action="store_true",
                   help="keep the built-in head's default identity and skin tone")
    g.add_argument("--allow-drop-unsupported", action="store_true",
                   help="label AUs the character cannot express as 0 (recorded in dataset.json) instead of failing")
    g.add_argument("--views", type=_positive_int, default=d.camera.views, metavar="N",
                   help="camera views per expression")
    g.add_argument("--layout", choices=("fibonacci", "grid", "object"), default=d.camera.layout,
                   help="camera layout on the hemisphere")
    g.add_argument("--yaw-range", type=_float_range, default=d.camera.yaw_range, metavar="MIN,MAX",
                   help="camera yaw range in degrees")
    g.add_argument("--pitch-range", type=_float_range, default=d.camera.pitch_range, metavar="MIN,MAX",
                   help="camera pitch range in degrees")
    g.add_argument("--distance", type=float, default=d.camera.distance, metavar="M",
                   help="camera distance in metres (default: fit --face-fraction)")
    g.add_argument("--face-fraction", type=float, default=d.camera.face_fraction, metavar="F",
                   help="face height as a fraction of the image height (when --distance is not given)")
    g.add_argument("--roll-jitter", type=float, default=d.camera.roll_jitter, metavar="DEG",
                   help="random camera roll in [-DEG, DEG]")
    g.add_argument("--focal-length", type=float, default=d.camera.focal_length, metavar="MM",
                   help="camera focal length")
    g.add_argument("--camera-object", default=None, metavar="NAME",
                   help="with --layout object: place cameras at this object's vertices")
    g.add_argument("--camera-vertex-group", default=None, metavar="GROUP",
                   help="with --layout object: only the vertices of this vertex group")
    g.add_argument("--lighting", choices=("hdri", "scene"), default=d.lighting.mode,
                   help="hdri = Blender's studio HDRIs, random rotation/strength; scene = the scene's world")
    g.add_argument("--shard", type=_shard, default=d.shard, metavar="K/N",
                   help="render only every N-th expression draw, starting with draw K (all its views; "
                        "shards merge into one dataset)")
    g.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    g.add_argument("--quiet", action="store_true", help="no progress lines")
    g.add_argument("--blender-log", action="store_true",
                   help="show Blender's own log lines (render 'Saved: ...', Cycles device warnings); by default "
                        "they are kept off the terminal and quoted only when a render fails")
    r = g.add_argument_group("Ray cluster (pip install 'facs-dataset-generator[ray]')")
    r.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="run the shards as Ray tasks: on the cluster at ADDRESS (e.g. auto, ray://host:10001) "
                        "or, without ADDRESS, on a local Ray instance")
    r.add_argument("--ray-shards", type=_positive_int, default=None, metavar="N",
                   help="number of shards; unset: one per GPU, else one per --ray-cpus-per-shard CPUs")
    r.add_argument("--ray-cpus-per-shard", type=_positive_int, default=1, metavar="C",
                   help="CPU budget of one shard process when the cluster has no GPUs")
    r.add_argument("--ray-cpus", type=_positive_int, default=None, metavar="C",
                   help="CPUs of the local Ray instance; unset: all")
    r.add_argument("--ray-retries", type=_nonneg_int, default=3, metavar="R",
                   help="retries of a failed or lost shard (each resumes where it stopped)")

    v = sub.add_parser("validate", formatter_class=fmt, help="check a dataset (exit 0 only if consistent)",
                       description="Check a dataset: every row has its image and CSV, sizes, ranges, flags, "
                                   "no duplicates. Exit status 0 only when everything holds.")
    v.add_argument("out", metavar="DIR", help="dataset folder")
    v.add_argument("--rebuild-index", action="store_true",
                   help="rebuild index.csv / index.parquet from the per-sample CSVs first")
    from . import automap as _automap

    _automap.add_parser(sub)
    m = sub.add_parser("merge", formatter_class=fmt, help="merge shard folders into one dataset",
                       description="Merge datasets rendered into separate folders (e.g. --shard K/N runs with "
                                   "different --out) into OUT; their configurations must agree.")
    m.add_argument("out", metavar="OUT", help="merged dataset folder (created if missing)")
    m.add_argument("sources", nargs="+", metavar="SRC", help="dataset folders to merge")
    return p


def _preprocess(argv: list[str]) -> list[str]:
    """Allow ``--yaw-range -60,60`` (argparse would take -60,60 for an option)."""
    out: list[str] = []
    it = iter(range(len(argv)))
    skip = False
    for i in it:
        if skip:
            skip = False
            continue
        a = argv[i]
        if a in _RANGE_OPTIONS and i + 1 < len(argv) and argv[i + 1].startswith("-"):
            out.append(f"{a}={argv[i + 1]}")
            skip = True
        else:
            out.append(a)
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(_preprocess(list(sys.argv[1:] if argv is None else argv)))


def config_from_args(ns: argparse.Namespace) -> cfg.GenerationConfig:
    return cfg.GenerationConfig(
        out=ns.out,
        count=ns.count,
        seed=ns.seed,
        preset=ns.preset,
        emotions=ns.emotions,
        sampling=ns.sampling,
        grid_steps=ns.grid_steps,
        character=ns.character,
        blend=ns.blend,
        identity=not ns.no_identity,
        allow_drop_unsupported=ns.allow_drop_unsupported,
        shard=ns.shard,
        resume=ns.resume,
        camera=cfg.CameraConfig(
            layout=ns.layout,
            views=ns.views,
            yaw_range=ns.yaw_range,
            pitch_range=ns.pitch_range,
            distance=ns.distance,
            face_fraction=ns.face_fraction,
            roll_jitter=ns.roll_jitter,
            focal_length=ns.focal_length,
            source_object=ns.camera_object,
            vertex_group=ns.camera_vertex_group,
        ),
        render=cfg.RenderConfig(
            engine=ns.engine,
            device=ns.device,
            resolution=tuple(ns.resolution),
            resolution_percentage=ns.resolution_percentage,
            samples=ns.samples,
            noise_threshold=ns.noise_threshold,
            denoise=not ns.no_denoise,
        ),
        lighting=cfg.LightingConfig(mode=ns.lighting),
    )


class CliProgress:
    """Prints ``[done/total] x.xx samples/s ETA h:mm:ss`` lines."""

    def __init__(self, quiet: bool = False, stream=None):
        self.quiet = quiet
        self.stream = stream or sys.stdout
        self.t0 = time.perf_counter()
        self.first_done: int | None = None

    def __call__(self, done: int, total: int, message: str = "") -> None:
        if self.quiet:
            return
        now = time.perf_counter()
        if self.first_done is None:
            self.first_done, self.t0 = done, now
            rate = 0.0
        else:
            rate = (done - self.first_done) / max(now - self.t0, 1e-9)
        eta = (total - done) / rate if rate > 0 else float("nan")
        eta_s = time.strftime("%H:%M:%S", time.gmtime(eta)) if eta == eta else "--:--:--"
        line = f"[{done}/{total}] {rate:.2f} samples/s ETA {eta_s}"
        if message:
            line += f"  {message}"
        print(line, file=self.stream, flush=True)


def run(ns: argparse.Namespace) -> int:
    """Execute a parsed command inside bpy (extension already registered)."""
    if ns.command == "validate":
        from ..core import dataset

        if ns.rebuild_index:
            dataset.rebuild_index(ns.out)
        problems = dataset.validate_dataset(ns.out)
        if problems:
            for line in problems[:50]:
                print(f"{PROG} validate: {line}", file=sys.stderr)
            if len(problems) > 50:
                print(f"{PROG} validate: ... and {len(problems) - 50} more problems", file=sys.stderr)
            return 1
        print(f"{PROG} validate: OK ({dataset.count_samples(ns.out)} samples in {ns.out})")
        return 0
    if ns.command == "automap":
        from . import automap as _automap

        return _automap.run(ns)
    if ns.command == "merge":
        from ..core import dataset

        try:
            n = dataset.merge_datasets(ns.sources, ns.out)
        except cfg.ConfigError as exc:
            print(f"{PROG} merge: error: {exc}", file=sys.stderr)
            return 2
        print(f"{PROG} merge: {n} samples in {ns.out}")
        return 0
    if ns.command == "generate":
        from ..pipeline import runner
        from .memory import fix_mmap_threshold

        conf = config_from_args(ns)
        fix_mmap_threshold()  # peak memory flat over long runs (see cli/memory.py)
        try:
            result = runner.generate(conf, progress=CliProgress(ns.quiet), capture_blender_log=not ns.blender_log)
        except (cfg.ConfigError, runner.GenerationError) as exc:
            print(f"{PROG} generate: error: {exc}", file=sys.stderr)
            return 2 if isinstance(exc, cfg.ConfigError) else 1
        print(f"{PROG} generate: wrote {result.written} new samples ({result.total} in shard) to {conf.out}")
        return 0
    raise AssertionError(ns.command)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point."""
    argv = list(sys.argv[1:] if argv is None else argv)
    ns = parse_args(argv)
    if ns.command == "generate" and ns.ray is not None:
        from . import cluster  # the Ray driver never imports bpy

        return cluster.run(ns, _preprocess(argv))
    if ns.command in ("validate", "merge"):
        return run(ns)  # bpy-free: works wherever pandas is installed, no Blender start-up
    import bpy  # noqa: F401  (the wheel; imported only after parsing so --help is instant)

    from .. import registration

    registration.register()
    return run(ns)


# --------------------------------------------------------------------------- blender --command


def _blender_command(argv: list[str]) -> int:
    try:
        ns = parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if ns.command == "generate" and ns.ray is not None:
        from . import cluster

        return cluster.run(ns, _preprocess(argv))
    return run(ns)


def register_blender_command():
    global _cli_handle
    import bpy

    _cli_handle = bpy.utils.register_cli_command(PROG, _blender_command)


def unregister_blender_command():
    global _cli_handle
    import bpy

    if _cli_handle is not None:
        bpy.utils.unregister_cli_command(_cli_handle)
        _cli_handle = None


_cli_handle = None
