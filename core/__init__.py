# SPDX-License-Identifier: GPL-3.0-or-later
"""bpy-free core: configuration, presets, sampling, camera math, writers, validation.

Nothing in this package imports ``bpy``; every module has plain pytest tests.
The bpy-side code (``..pipeline``) and the UI (``..operators``, ``..panels``)
call into it.
"""
