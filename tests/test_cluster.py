# SPDX-License-Identifier: GPL-3.0-or-later
"""``facsgen generate --ray``: shards as Ray tasks on a local cluster (loopback, 2 CPUs)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from facs_dataset_generator.cli import cluster

ROOT = Path(__file__).resolve().parent.parent
SMALL = ["--count", "6", "--views", "2", "--resolution", "48", "--samples", "1", "--seed", "7",
         "--emotions", "Joy,Anger,Neutral", "--device", "cpu"]


def test_worker_args_strip_cluster_options(tmp_path):
    argv = ["generate", "--out", "rel", "--ray", "--count", "6", "--ray-shards", "3", "--shard", "0/2",
            "--resume", "--yaw-range=-10,10"]
    args = cluster.worker_args(argv, str(tmp_path / "rel"))
    assert args == ["--out", str((tmp_path / "rel").resolve()), "--count", "6", "--yaw-range=-10,10"]
    args = cluster.worker_args(["generate", "--ray", "auto", "--out=x", "--seed", "3"], "x")
    assert args[2:] == ["--seed", "3"]


def test_missing_ray_gives_clear_message(monkeypatch, capsys, tmp_path):
    from facs_dataset_generator import cli

    monkeypatch.setitem(sys.modules, "ray", None)
    ns = cli.parse_args(["generate", "--out", str(tmp_path), "--ray"])
    assert cluster.run(ns, ["generate", "--out", str(tmp_path), "--ray"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--ray needs Ray" in err[0] and "pip install" in err[0]


def _facsgen(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "facs_dataset_generator.cli", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


def _csvs(out: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted((out / "annotations").glob("*.csv"))}


@pytest.fixture(scope="module")
def single_process_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("single")
    r = _facsgen("generate", "--out", str(out), *SMALL, "--quiet")
    assert r.returncode == 0, r.stderr[-2000:]
    return out


@pytest.mark.slow
def test_ray_shards_equal_single_process(single_process_run, tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "ray"
    r = _facsgen("generate", "--out", str(out), *SMALL, "--ray", "--ray-shards", "3", "--ray-cpus", "2")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "[ray] shards 3/3" in r.stdout
    a, b = _csvs(single_process_run), _csvs(out)
    assert len(a) == 6 and a == b
    assert _facsgen("validate", str(out)).returncode == 0


@pytest.mark.slow
def test_killed_shard_is_retried_without_duplicates(single_process_run, tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "ray_kill"
    killed = []

    def killer():
        deadline = time.time() + 240
        while time.time() < deadline and not killed:
            # kill shard 0 once it has written at least one sample of its own
            done = [p for p in (out / "annotations").glob("*.csv")] if (out / "annotations").is_dir() else []
            if done and cluster.kill_shard(out, 0):
                killed.append(time.time())
                return
            time.sleep(0.05)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    r = _facsgen("generate", "--out", str(out), *SMALL, "--ray", "--ray-shards", "2", "--ray-cpus", "2",
                 "--count", "10")
    t.join(timeout=1)
    assert killed, "the test did not manage to kill a shard mid-run"
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    names = sorted(p.name for p in (out / "annotations").glob("*.csv"))
    assert len(names) == 10 == len(set(names))
    assert not list(out.rglob("*.tmp*")), "partial files left behind"
    assert _facsgen("validate", str(out)).returncode == 0


@pytest.mark.slow
def test_job_array_shards_in_separate_folders_merge(single_process_run, tmp_path):
    """The SLURM-style path: shards rendered into separate folders, then ``facsgen merge``."""
    parts = []
    for k in range(2):
        part = tmp_path / f"part{k}"
        r = _facsgen("generate", "--out", str(part), *SMALL, "--shard", f"{k}/2", "--quiet")
        assert r.returncode == 0, r.stderr[-2000:]
        parts.append(str(part))
    merged = tmp_path / "merged"
    r = _facsgen("merge", str(merged), *parts)
    assert r.returncode == 0, r.stderr
    assert _csvs(merged) == _csvs(single_process_run)
    assert _facsgen("validate", str(merged)).returncode == 0
    bad = _facsgen("merge", str(tmp_path / "m2"), str(tmp_path / "nope"))
    assert bad.returncode == 2 and "no dataset.json" in bad.stderr
