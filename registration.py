# SPDX-License-Identifier: GPL-3.0-or-later
"""One explicit list of classes, registered in order and unregistered in reverse."""

import bpy

from . import operators, panels, settings

CLASSES: tuple[type, ...] = (
    *settings.CLASSES,
    *operators.CLASSES,
    *panels.CLASSES,
)

_registered = False


def register():
    global _registered
    if _registered:
        return
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    settings.register_properties()
    panels.register_menus()
    from . import cli

    cli.register_blender_command()
    _registered = True


def unregister():
    global _registered
    if not _registered:
        return
    from . import cli

    cli.unregister_blender_command()
    operators.landmarks.unregister_draw_handlers()
    panels.unregister_menus()
    settings.unregister_properties()
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
    _registered = False
