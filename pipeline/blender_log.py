# SPDX-License-Identifier: GPL-3.0-or-later
"""Keep Blender's own log lines out of a command-line run's output, without losing them.

Blender writes from C straight to the process's file descriptors: every render prints
``render | Saved: '...'`` and Cycles' first use prints ``WARNING CUEW initialization failed``
on machines without CUDA. Between ``facsgen``'s progress lines these are noise, so the CLI
runs those calls inside :func:`captured`: file descriptors 1 and 2 go to a temporary file
for the duration, and the text is kept so that a failed render can quote it."""

from __future__ import annotations

import ctypes
import os
import sys
import tempfile
from contextlib import contextmanager


class Captured:
    """What the C side wrote while captured (``text`` is filled when the block ends)."""

    def __init__(self):
        self.text = ""

    def tail(self, lines: int = 8) -> str:
        """The last ``lines`` non-empty lines."""
        kept = [ln for ln in self.text.splitlines() if ln.strip()]
        return "\n".join(kept[-lines:])


def _flush_c_stdio() -> None:
    try:
        ctypes.CDLL(None).fflush(None)  # C stdio buffers (printf) before the descriptors move
    except (OSError, AttributeError, TypeError):  # e.g. Windows: no process-wide libc handle
        pass


@contextmanager
def captured(enabled: bool = True):
    """Inside the block, fds 1 and 2 write to a temporary file; yields a :class:`Captured`.

    Disabled (``enabled=False``), nothing is redirected and the ``Captured`` stays empty."""
    box = Captured()
    if not enabled:
        yield box
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, ValueError):
            pass
    _flush_c_stdio()
    saved = (os.dup(1), os.dup(2))
    tmp = tempfile.TemporaryFile()
    try:
        os.dup2(tmp.fileno(), 1)
        os.dup2(tmp.fileno(), 2)
        yield box
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (AttributeError, ValueError):
                pass
        _flush_c_stdio()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])
        tmp.seek(0)
        box.text = tmp.read().decode("utf-8", errors="replace")
        tmp.close()
