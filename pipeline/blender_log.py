# SPDX-License-Identifier: GPL-3.0-or-later
"""Keep Blender's own log lines out of a command-line run's output, without losing them.

Blender writes from C straight to the process's file descriptors: every render prints
``render | Saved: '...'`` and Cycles' first use prints ``WARNING CUEW initialization failed``
on machines without CUDA. Between ``facsgen``'s progress lines these are noise, so the CLI
runs those calls inside :meth:`BlenderLog.captured`: file descriptors 1 and 2 go to one log
file per run for the duration, which holds the output of the current call only (a few lines).
A failed render quotes them in its error; a run that ends normally deletes the file; a process
that dies inside Blender (a crash prints its backtrace there) leaves it behind, at the path
given when the run started."""

from __future__ import annotations

import ctypes
import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path


class Captured:
    """What the C side wrote during one captured block (``text`` is filled when it ends)."""

    def __init__(self):
        self.text = ""

    def tail(self, lines: int = 8) -> str:
        """The last ``lines`` non-empty lines."""
        kept = [ln for ln in self.text.splitlines() if ln.strip()]
        return "\n".join(kept[-lines:])


def _flush_all() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, ValueError):
            pass
    try:
        ctypes.CDLL(None).fflush(None)  # C stdio buffers (printf) before the descriptors move
    except (OSError, AttributeError, TypeError):  # e.g. Windows: no process-wide libc handle
        pass


class BlenderLog:
    """One run's capture file. ``enabled=False``: nothing is redirected, nothing is written."""

    def __init__(self, enabled: bool = True, directory: str | None = None):
        self.enabled = enabled
        self.path: Path | None = None
        self._fd: int | None = None
        if enabled:
            fd, name = tempfile.mkstemp(prefix="facsgen-blender-", suffix=".log", dir=directory)
            self._fd, self.path = fd, Path(name)

    @contextmanager
    def captured(self):
        """Inside the block, fds 1 and 2 append to the log file; yields a :class:`Captured`."""
        box = Captured()
        if not self.enabled or self._fd is None:
            yield box
            return
        _flush_all()
        os.ftruncate(self._fd, 0)  # the file holds the current block only: what a crash leaves stays small
        os.lseek(self._fd, 0, os.SEEK_SET)
        saved = (os.dup(1), os.dup(2))
        try:
            os.dup2(self._fd, 1)
            os.dup2(self._fd, 2)
            yield box
        finally:
            _flush_all()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            box.text = self._read_all()

    def _read_all(self) -> str:
        end = os.lseek(self._fd, 0, os.SEEK_END)
        os.lseek(self._fd, 0, os.SEEK_SET)
        chunks, left = [], end
        while left > 0:
            b = os.read(self._fd, left)
            if not b:
                break
            chunks.append(b)
            left -= len(b)
        os.lseek(self._fd, 0, os.SEEK_END)
        return b"".join(chunks).decode("utf-8", errors="replace")

    def close(self, keep: bool = False) -> None:
        """Close the file; delete it unless ``keep``."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            if not keep and self.path is not None:
                try:
                    self.path.unlink()
                except OSError:
                    pass

