# SPDX-License-Identifier: GPL-3.0-or-later
"""FACS Dataset Generator: a Blender extension for synthetic facial-expression datasets.

Layout (see README "Architecture"):

* ``core/``         bpy-free math, sampling, presets, writers, validation
* ``pipeline/``     the bpy-side engine (built-in head, character adapters, render loop)
* ``landmark_map/`` 468-point MediaPipe landmark maps (format + shipped maps)
* ``operators/``    thin operators calling ``pipeline`` (the same API as the CLI)
* ``panels/``       the 3D View sidebar and menu entries
* ``cli/``          ``facsgen`` (console script and ``blender --command facsgen``)
"""


def register():
    from . import registration

    registration.register()


def unregister():
    from . import registration

    registration.unregister()
