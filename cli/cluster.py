# SPDX-License-Identifier: GPL-3.0-or-later
"""``facsgen generate --ray [ADDRESS]``: run the deterministic shards on a Ray cluster.

No scheduler of our own: the run is split into ``N`` shards (``--shard K/N``: every N-th
expression draw, all its views); each shard is one Ray task that runs the normal ``facsgen generate`` in its
own process (Blender is one renderer per process), with ``num_gpus=1`` when the cluster has
GPUs, else a CPU budget. Ray retries failed or lost tasks; a retried shard runs with
``--resume``, so it continues where it stopped and never duplicates a sample. All shards
write into the same output folder (a shared file system on a real cluster). When every
shard is done the index is rebuilt from the per-sample CSVs and the dataset is validated.

This module is bpy-free: the driver process never imports Blender.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

PID_DIR = ".facsgen_shards"  # inside OUT: one pid file per running shard process (for operators and tests)
RAY_HINT = "pip install 'facs-dataset-generator[ray]' (Ray >= 2.40, < 2.54)"


class ClusterError(RuntimeError):
    pass


def worker_args(argv: list[str], out: str) -> list[str]:
    """The ``generate`` arguments for a shard: ``argv`` minus ``--ray*``/``--shard``, ``--out`` absolute."""
    res: list[str] = []
    skip_next = False
    toks = list(argv)
    for i, a in enumerate(toks):
        if skip_next:
            skip_next = False
            continue
        name = a.split("=", 1)[0]
        if name in ("--ray", "--ray-shards", "--ray-cpus", "--shard", "--out", "--resume", "--quiet"):
            if "=" not in a and name in ("--ray-shards", "--ray-cpus", "--shard", "--out"):
                skip_next = True
            elif "=" not in a and name == "--ray" and i + 1 < len(toks) and not toks[i + 1].startswith("-"):
                skip_next = True
            continue
        res.append(a)
    if res and res[0] == "generate":
        res = res[1:]
    return ["--out", str(Path(out).resolve()), *res]


def _run_shard(args: list[str], k: int, n: int, out: str, threads: int | None = None) -> dict:
    """Body of the Ray task: one ``facsgen generate --shard k/n --resume`` process."""
    cmd = [sys.executable, "-m", "facs_dataset_generator.cli", "generate", *args,
           "--shard", f"{k}/{n}", "--resume", "--quiet"]
    pid_dir = Path(out) / PID_DIR
    pid_dir.mkdir(parents=True, exist_ok=True)
    pid_file = pid_dir / f"shard-{k}.pid"
    t0 = time.time()
    env = dict(os.environ)
    if threads:
        env["FACSGEN_RENDER_THREADS"] = str(threads)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    pid_file.write_text(str(proc.pid))
    try:
        output, _ = proc.communicate()
    finally:
        try:
            pid_file.unlink()
        except FileNotFoundError:
            pass
    if proc.returncode != 0:
        tail = "\n".join(output.strip().splitlines()[-5:])
        raise ClusterError(f"shard {k}/{n} exited with status {proc.returncode}: {tail}")
    return {"shard": k, "seconds": time.time() - t0}


def _count_done(out: Path) -> int:
    from ..core import dataset

    return dataset.count_samples(out)


def _plan_total(ns) -> int:
    try:
        from ..core import sampling
        from . import config_from_args

        return sampling.total_samples(config_from_args(ns))
    except Exception:
        return ns.count


def _progress_line(shards_done: int, n: int, done: int, total: int, rate: float) -> str:
    eta = (total - done) / rate if rate > 0 else float("nan")
    eta_s = time.strftime("%H:%M:%S", time.gmtime(eta)) if eta == eta else "--:--:--"
    return f"[ray] shards {shards_done}/{n}  samples {done}/{total}  {rate:.2f} samples/s  ETA {eta_s}"


def run(ns, argv: list[str]) -> int:
    """Drive a ``generate --ray`` run; returns the process exit status."""
    try:
        import ray
    except ImportError:
        print(f"facsgen generate: error: --ray needs Ray, which is not installed: {RAY_HINT}", file=sys.stderr)
        return 2
    from ..core import dataset

    out = Path(ns.out).resolve()
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".facsgen_write_probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        print(f"facsgen generate: error: output folder {out} is not writable ({exc.strerror})", file=sys.stderr)
        return 2

    address = None if ns.ray in (None, "local") else ns.ray
    init_kw = {"include_dashboard": False, "log_to_driver": False, "ignore_reinit_error": True}
    if address is None:
        init_kw["num_cpus"] = ns.ray_cpus or os.cpu_count() or 1
    try:
        ray.init(address=address, **init_kw)
    except Exception as exc:  # connection errors come in many types
        print(f"facsgen generate: error: cannot start/connect to Ray at {ns.ray!r}: {exc}", file=sys.stderr)
        return 1
    try:
        res = ray.cluster_resources()
        gpus = int(res.get("GPU", 0))
        cpus = int(res.get("CPU", 1))
        cpus_per_shard = 1 if gpus else max(1, min(cpus, ns.ray_cpus_per_shard))
        n = ns.ray_shards or (gpus if gpus else max(1, cpus // cpus_per_shard))
        total = _plan_total(ns)
        n = max(1, min(n, total))
        args = worker_args(argv, str(out))
        opts = {"num_gpus": 1, "num_cpus": 1} if gpus else {"num_cpus": cpus_per_shard}
        task = ray.remote(max_retries=ns.ray_retries, retry_exceptions=True)(_run_shard).options(**opts)
        print(f"[ray] {n} shards on {cpus} CPUs / {gpus} GPUs ({'1 GPU' if gpus else f'{cpus_per_shard} CPU'}"
              f" per shard), {total} samples -> {out}", flush=True)
        threads = None if gpus else cpus_per_shard
        pending = {task.remote(args, k, n, str(out), threads): k for k in range(n)}
        t0 = time.time()
        start_done = _count_done(out)
        shards_done = 0
        failures: list[str] = []
        last_print = 0.0
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=2.0)
            for ref in ready:
                k = pending.pop(ref)
                try:
                    ray.get(ref)
                    shards_done += 1
                except Exception as exc:  # retries exhausted
                    failures.append(f"shard {k}/{n}: {getattr(exc, 'cause', None) or exc}")
            now = time.time()
            if ready or now - last_print >= 5.0 or not pending:
                done = _count_done(out)
                rate = (done - start_done) / max(now - t0, 1e-9)
                if not ns.quiet:
                    print(_progress_line(shards_done, n, done, total, rate), flush=True)
                last_print = now
    finally:
        ray.shutdown()
    if failures:
        for f in failures:
            print(f"facsgen generate: error: {f}", file=sys.stderr)
        print("facsgen generate: rerun the same command with --resume to finish the failed shards", file=sys.stderr)
        return 1
    dataset.rebuild_index(out)
    problems = dataset.validate_dataset(out)
    if problems:
        for p in problems[:20]:
            print(f"facsgen validate: {p}", file=sys.stderr)
        return 1
    print(f"facsgen generate: {dataset.count_samples(out)} samples in {out} (validated)")
    return 0


def kill_shard(out: str | Path, k: int, sig: int = signal.SIGKILL) -> bool:
    """Kill the process of running shard ``k`` (used by tests and by users who want to stop one)."""
    pid_file = Path(out) / PID_DIR / f"shard-{k}.pid"
    try:
        pid = int(pid_file.read_text())
    except (FileNotFoundError, ValueError):
        return False
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True
