# SPDX-License-Identifier: GPL-3.0-or-later
"""cli.memory: the batch runner fixes glibc's mmap threshold (peak memory flat over long
runs; figures in benchmarks/throughput.py --memory)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from facs_dataset_generator.cli import memory

# 4 MiB allocated after an 8 MiB block was freed: mmapped (counted in mallinfo2().hblkhd)
# only when the threshold no longer follows the freed blocks' size
PROBE = r"""
import ctypes, ctypes.util, sys
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                                 "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
if not hasattr(libc, "mallinfo2"):
    print("no-mallinfo2"); sys.exit(0)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "fixed":
    from facs_dataset_generator.cli.memory import fix_mmap_threshold
    assert fix_mmap_threshold()
p = libc.malloc(8 << 20)
libc.free(p)
before = libc.mallinfo2().hblkhd
q = libc.malloc(4 << 20)
print(libc.mallinfo2().hblkhd - before)
libc.free(q)
"""


def _probe(mode: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    r = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_fixed_threshold_keeps_large_blocks_mmapped():
    default, fixed = _probe("default"), _probe("fixed")
    if default == "no-mallinfo2":
        pytest.skip("glibc without mallinfo2 (< 2.33)")
    assert int(default) == 0  # glibc's dynamic threshold: the 4 MiB block came from the heap
    assert int(fixed) >= 4 << 20


def test_environment_and_platform_win(monkeypatch):
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert memory.fix_mmap_threshold() is False
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_")
    monkeypatch.setenv("FACSGEN_MALLOC", "default")
    assert memory.fix_mmap_threshold() is False
    monkeypatch.delenv("FACSGEN_MALLOC")
    monkeypatch.setattr(sys, "platform", "win32")
    assert memory.fix_mmap_threshold() is False


def test_generate_fixes_it_before_rendering(addon, tmp_path, monkeypatch):
    from facs_dataset_generator import cli
    from facs_dataset_generator.pipeline import runner

    calls = []
    monkeypatch.setattr(memory, "fix_mmap_threshold", lambda *a: calls.append("fix") or True)
    real = runner.generate
    monkeypatch.setattr(runner, "generate", lambda *a, **k: (calls.append("generate"), real(*a, **k))[1])
    ns = cli.parse_args(["generate", "--out", str(tmp_path / "ds"), "--count", "1", "--character", "NoSuchMesh"])
    assert cli.run(ns) == 2  # the missing character: a clear error, after the allocator was set
    assert calls == ["fix", "generate"]
