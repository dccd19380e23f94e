# SPDX-License-Identifier: GPL-3.0-or-later
"""bpy-side engine: built-in head, character adapters, landmark evaluation, render loop.

Operators and the ``facsgen`` CLI both call :mod:`.runner`; nothing here draws UI.
"""
