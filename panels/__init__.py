# SPDX-License-Identifier: GPL-3.0-or-later
"""3D View sidebar (N-panel) tab "FACS" and the menu entries that make operators F3-searchable."""

CLASSES: tuple[type, ...] = ()


def register_menus():
    pass


def unregister_menus():
    pass
