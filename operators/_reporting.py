# SPDX-License-Identifier: GPL-3.0-or-later
"""How operators turn exceptions into reports: the user sees one line, never a traceback.

Expected errors (bad configuration, a generation error, a missing file ...) are reported as
they are; anything else is an internal error whose traceback goes to the system console."""

from __future__ import annotations

import traceback

from ..core import config as cfg


def expected_errors(*extra: type[BaseException]) -> tuple[type[BaseException], ...]:
    """The exception types whose message is meant for the user."""
    errors = [cfg.ConfigError, ValueError, OSError, *extra]
    try:
        from ..pipeline import runner
    except ImportError:
        pass
    else:
        errors.insert(0, runner.GenerationError)
    return tuple(errors)


def report_exception(op, what: str, exc: BaseException, expected: tuple = ()) -> str:
    """Report ``exc`` on ``op`` as an ERROR; returns the reported text."""
    if isinstance(exc, ImportError):
        msg = f"The generation pipeline is not available: {exc}"
    elif isinstance(exc, expected or expected_errors()):
        msg = str(exc)
    else:
        traceback.print_exc()
        msg = f"{what} failed ({type(exc).__name__}: {exc}); details in the system console"
    op.report({"ERROR"}, msg)
    return msg


def call_reporting(op, what: str, fn, *args, expected: tuple = ()):
    """``fn(*args)`` with errors reported on ``op``: ``(True, result)``, or ``(False, None)``
    after an ERROR report."""
    try:
        return True, fn(*args)
    except Exception as exc:  # noqa: BLE001 - a UI never shows a traceback; the console gets it
        report_exception(op, what, exc, expected)
        return False, None
