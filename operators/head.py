# SPDX-License-Identifier: GPL-3.0-or-later
"""Add the built-in FACS head (the same function ``facsgen generate`` uses without a character)."""

import bpy

from ..pipeline import head as head_mod


class FACSGEN_OT_add_builtin_head(bpy.types.Operator):
    """Add the built-in FACS head: a MediaPipe-topology head with AU shape keys (AU01 ... AU43,
    AU12_L/R, AU14_L/R), identity shape keys (ID_...) and a skin-tone property, whose first 468
    vertices are the exact Face Mesh landmarks"""

    bl_idname = "facsgen.add_builtin_head"
    bl_label = "Add Built-in FACS Head"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        obj = head_mod.add_builtin_head(context.scene)
        obj.location = context.scene.cursor.location
        for o in context.selected_objects:
            o.select_set(False)
        obj.select_set(True)
        context.view_layer.objects.active = obj
        self.report({"INFO"}, f"Added {obj.name}: {len(obj.data.vertices)} vertices, "
                              f"{len(obj.data.shape_keys.key_blocks) - 1} shape keys")
        return {"FINISHED"}


CLASSES = (FACSGEN_OT_add_builtin_head,)
