# SPDX-License-Identifier: GPL-3.0-or-later
"""Operators: thin wrappers over :mod:`..pipeline` (the API the ``facsgen`` CLI uses too).

Every class is named ``FACSGEN_OT_verb_noun`` with ``bl_idname = "facsgen.verb_noun"``.
"""

from . import generate, head, landmarks, presets, preview

CLASSES: tuple[type, ...] = (
    *head.CLASSES,
    *presets.CLASSES,
    *preview.CLASSES,
    *landmarks.CLASSES,
    *generate.CLASSES,
)
