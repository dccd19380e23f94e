# SPDX-License-Identifier: GPL-3.0-or-later
"""Keep a long batch run's peak memory flat (Linux, glibc).

glibc serves large allocations with ``mmap`` and gives them back on ``free``, but the first
time such a block is freed it raises its threshold to that block's size (up to 32 MiB), so
later blocks of that size come from the heap, which keeps its high-water mark. In a run peak
RSS steps up by about 50 MiB when the HDRI first changes (most likely the buffers of the
world importance-map rebuild; not traced inside Cycles) and again, less, later; with the
threshold fixed the step is gone.
Fixing the threshold turns the dynamic adjustment off. ``benchmarks/throughput.py
--memory`` (1,000 samples, built-in head): peak 435 -> 500 MiB (+15%) with glibc's default,
424 -> 450 MiB (+6%, +1.4% over 5,000 samples) with 256 KiB; samples/s at 256x256 about 1%
lower (side by side, 3 runs each).

Only the batch runner (``facsgen generate``, ``blender --command facsgen``, Ray shards)
calls this: an interactive Blender session keeps its allocator as it is. A
``MALLOC_MMAP_THRESHOLD_`` in the environment is the user's choice and is left alone;
``FACSGEN_MALLOC=default`` keeps glibc's dynamic threshold.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

#: bytes; blocks at least this large are mmapped and returned to the system when freed
MMAP_THRESHOLD = 256 * 1024
_M_MMAP_THRESHOLD = -3  # <malloc.h>


def fix_mmap_threshold(nbytes: int = MMAP_THRESHOLD) -> bool:
    """Set glibc's ``M_MMAP_THRESHOLD`` (True when set; False off Linux/glibc or when the
    environment already sets it or asks for the default)."""
    if (not sys.platform.startswith("linux") or "MALLOC_MMAP_THRESHOLD_" in os.environ
            or os.environ.get("FACSGEN_MALLOC") == "default"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return mallopt(_M_MMAP_THRESHOLD, int(nbytes)) == 1
