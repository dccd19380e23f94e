# SPDX-License-Identifier: GPL-3.0-or-later
"""Generate (modal: one sample per timer tick, Esc cancels) and Validate Dataset.

The operator drives :class:`pipeline.runner.Job`, the same engine ``facsgen generate``
runs: ``prepare()`` in invoke (every configuration error is reported before anything
renders), ``step()`` per timer event, ``finish()`` at the end, ``cancel()`` on Esc (the
samples written so far stay valid; Resume continues them). In background mode
(``blender -b``, the ``bpy`` module) the same operator runs synchronously.

The logic lives in module functions taking the operator as first argument, so tests can
drive it with a stand-in object and fake events.
"""

from __future__ import annotations

import time
import traceback

import bpy
from bpy.props import StringProperty

from .. import settings as st
from ._reporting import call_reporting, expected_errors, report_exception

TIMER_INTERVAL = 0.02  # seconds between samples (the UI handles its events in between)

# The one generation that may run at a time (the panel shows its progress).
_RUNNING: dict = {"job": None, "op": None, "cancel_requested": False, "scene": None}


def is_running() -> bool:
    return _RUNNING["job"] is not None


def request_cancel() -> None:
    if is_running():
        _RUNNING["cancel_requested"] = True


def abort_running(reason: str = "aborted") -> None:
    """Cancel the running generation now (e.g. before another file is loaded)."""
    op = _RUNNING["op"]
    if op is not None:
        _cancel(op, bpy.context, reason, report=False)


def _synchronous(context) -> bool:
    """Run without a modal handler: background mode, or no window to own a timer."""
    return bool(bpy.app.background) or getattr(context, "window", None) is None


class _Rate:
    """Samples per second and ETA over the samples rendered in this run."""

    def __init__(self, done: int):
        self.t0 = time.perf_counter()
        self.done0 = done

    def text(self, done: int, total: int) -> str:
        elapsed = time.perf_counter() - self.t0
        n = done - self.done0
        rate = n / elapsed if elapsed > 0 and n > 0 else 0.0
        if rate > 0:
            eta = time.strftime("%H:%M:%S", time.gmtime((total - done) / rate))
        else:
            eta = "--:--:--"
        return f"{done}/{total} samples  {rate:.2f} samples/s  ETA {eta}"


# --------------------------------------------------------------------------- run state helpers


def _settings(context):
    return context.scene.facsgen


def _status_text(context, text: str | None) -> None:
    ws = getattr(context, "workspace", None)
    if ws is not None:
        try:
            ws.status_text_set(text)
        except (AttributeError, RuntimeError, TypeError):
            pass


def _redraw() -> None:
    from ..panels import overlay

    overlay.tag_redraw()


def _update_progress(op, context) -> None:
    job = op._job
    total = max(int(getattr(job, "total", 0)), 0)
    done = int(getattr(job, "done", 0))
    s = _settings(context)
    text = op._rate.text(done, total)
    s.progress = min(done / total, 1.0) if total else 1.0
    s.status = text
    wm = context.window_manager
    if wm is not None and total:
        wm.progress_update(min(done, total))
    _status_text(context, f"FACS dataset: {text}  (Esc to cancel)")
    _redraw()


def _begin(op, context) -> bool:
    """Validate and prepare the job; False (with an ERROR report) when it cannot start."""
    s = _settings(context)
    if is_running():
        op.report({"ERROR"}, "A FACS dataset is already being generated (cancel it first)")
        return False
    try:
        from . import preview

        preview.restore_preview(context)  # never generate from (or restore to) a previewed pose
    except ImportError:
        pass
    try:
        from ..pipeline import runner

        conf, preset = st.to_config(s)
        job = runner.Job(conf, preset, scene=context.scene)
        job.prepare()
    except Exception as exc:  # noqa: BLE001 - a UI never shows a traceback; the console gets it
        s.status = "Error: " + report_exception(op, "Preparing the run", exc)
        return False
    op._job = job
    op._conf = conf
    from ..pipeline import render_setup

    # which device, and on a GPU that the first render may compile kernels (a long silent wait)
    op.report({"INFO"}, f"Rendering {job.remaining} samples on {render_setup.device_label(context.scene)}")
    # the job restores the scene; the output path it renders to is put back here too (belt and braces)
    op._render_filepath = (context.scene.name, context.scene.render.filepath)
    op._rate = _Rate(int(getattr(job, "done", 0)))
    op._timer = None
    _RUNNING.update(job=job, op=op, cancel_requested=False, scene=context.scene.name)
    s.is_running = True
    s.progress = 0.0
    wm = context.window_manager
    if wm is not None:
        wm.progress_begin(0, max(int(getattr(job, "total", 0)), 1))
    _update_progress(op, context)
    return True


def _cleanup(op, context) -> None:
    wm = context.window_manager
    timer = getattr(op, "_timer", None)
    if timer is not None and wm is not None:
        try:
            wm.event_timer_remove(timer)
        except (ValueError, RuntimeError, ReferenceError):
            pass
    op._timer = None
    saved = getattr(op, "_render_filepath", None)
    if saved is not None:
        scene = bpy.data.scenes.get(saved[0])
        if scene is not None and scene.render.filepath != saved[1]:
            scene.render.filepath = saved[1]
        op._render_filepath = None
    if wm is not None:
        wm.progress_end()
    _status_text(context, None)
    try:
        s = _settings(context)
        s.is_running = False
    except (AttributeError, ReferenceError):
        pass
    _RUNNING.update(job=None, op=None, cancel_requested=False, scene=None)
    _redraw()


def _tick(op, context) -> set[str]:
    """Render one sample; finish when none is left."""
    job = op._job
    if job is None:
        return {"CANCELLED"}
    try:
        more = job.step()
    except Exception as exc:  # noqa: BLE001
        if not isinstance(exc, expected_errors()):
            traceback.print_exc()
        try:
            job.cancel()
        except Exception:  # noqa: BLE001
            traceback.print_exc()
        msg = f"Generation stopped after {getattr(job, 'done', '?')} samples: {exc}"
        _settings(context).status = f"Error: {exc}"
        op.report({"ERROR"}, msg)
        _cleanup(op, context)
        op._job = None
        return {"CANCELLED"}
    _update_progress(op, context)
    if more:
        return {"RUNNING_MODAL"}
    return _finish(op, context)


def _finish(op, context) -> set[str]:
    job = op._job
    try:
        result = job.finish()
    except Exception as exc:  # noqa: BLE001
        if not isinstance(exc, expected_errors()):
            traceback.print_exc()
        _settings(context).status = f"Error: {exc}"
        op.report({"ERROR"}, f"Could not finish the dataset: {exc}")
        _cleanup(op, context)
        op._job = None
        return {"CANCELLED"}
    rate = op._rate.text(int(getattr(job, "done", 0)), int(getattr(job, "total", 0)))
    s = _settings(context)
    msg = (f"Wrote {result.written} new samples ({result.total} in the dataset, {result.skipped} already there) "
           f"to {result.out}")
    s.progress = 1.0
    s.status = f"Done: {result.written} new samples, {rate.split('  ')[1]}"
    op.report({"INFO"}, msg)
    _cleanup(op, context)
    op._job = None
    op._result = result
    return {"FINISHED"}


def _cancel(op, context, reason: str, report: bool = True) -> set[str]:
    job = getattr(op, "_job", None)
    if job is None:
        return {"CANCELLED"}
    try:
        job.cancel()
    except Exception as exc:  # noqa: BLE001
        traceback.print_exc()
        if report:
            op.report({"ERROR"}, f"Error while cancelling: {exc}")
    done = int(getattr(job, "done", 0))
    total = int(getattr(job, "total", 0))
    try:
        _settings(context).status = f"{reason}: {done}/{total} samples kept (Resume continues)"
    except (AttributeError, ReferenceError):
        pass
    if report:
        op.report({"WARNING"}, f"{reason}: {done} of {total} samples are written and valid; "
                               "Generate again with Resume on to continue")
    _cleanup(op, context)
    op._job = None
    return {"CANCELLED"}


def _modal(op, context, event) -> set[str]:
    if getattr(op, "_job", None) is None:
        return {"CANCELLED"}
    if (event.type == "ESC" and event.value == "PRESS") or _RUNNING["cancel_requested"]:
        return _cancel(op, context, "Generation cancelled")
    if event.type == "TIMER":
        return _tick(op, context)
    return {"PASS_THROUGH"}


def _invoke(op, context, event) -> set[str]:
    if _synchronous(context):
        return _execute(op, context)
    if not _begin(op, context):
        return {"CANCELLED"}
    wm = context.window_manager
    op._timer = wm.event_timer_add(TIMER_INTERVAL, window=context.window)
    wm.modal_handler_add(op)
    return {"RUNNING_MODAL"}


def _execute(op, context) -> set[str]:
    """Synchronous run (background mode / scripts): the same job, every sample in a loop."""
    if not _begin(op, context):
        return {"CANCELLED"}
    while True:
        result = _tick(op, context)
        if result != {"RUNNING_MODAL"}:
            return result


# --------------------------------------------------------------------------- operators


class FACSGEN_OT_generate_dataset(bpy.types.Operator):
    """Render the FACS dataset with the settings of the FACS sidebar tab; one sample at a time, so Blender """ \
        """stays usable. Esc cancels (what is written stays valid and Resume continues it)"""

    bl_idname = "facsgen.generate_dataset"
    bl_label = "Generate FACS Dataset"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        if getattr(context.scene, "facsgen", None) is None:
            return False
        if is_running():
            cls.poll_message_set("A dataset is already being generated")
            return False
        return True

    def invoke(self, context, event):
        return _invoke(self, context, event)

    def execute(self, context):
        return _execute(self, context)

    def modal(self, context, event):
        return _modal(self, context, event)

    def cancel(self, context):  # Blender ends the modal (window closed, file loaded)
        _cancel(self, context, "Generation interrupted", report=False)


class FACSGEN_OT_cancel_generation(bpy.types.Operator):
    """Stop the running dataset generation after the current sample (what is written stays valid)"""

    bl_idname = "facsgen.cancel_generation"
    bl_label = "Cancel FACS Dataset Generation"
    bl_options = {"REGISTER", "INTERNAL"}

    @classmethod
    def poll(cls, context):
        return is_running()

    def execute(self, context):
        request_cancel()
        return {"FINISHED"}


class FACSGEN_OT_validate_dataset(bpy.types.Operator):
    """Check a dataset folder: every row has its image and CSV, image sizes, value ranges, flags, """ \
        """no duplicates"""

    bl_idname = "facsgen.validate_dataset"
    bl_label = "Validate FACS Dataset"
    bl_options = {"REGISTER"}

    directory: StringProperty(name="Dataset Folder", description="Folder to check (empty: the output folder)",
                              subtype="DIR_PATH", default="")

    @classmethod
    def poll(cls, context):
        return getattr(context.scene, "facsgen", None) is not None

    def _folder(self, context) -> str:
        if self.directory:
            return bpy.path.abspath(self.directory)
        s = context.scene.facsgen
        if s.output_dir:
            return bpy.path.abspath(s.output_dir)
        prefs = st._addon_prefs(context)
        return bpy.path.abspath(prefs.default_output_dir) if prefs else ""

    def execute(self, context):
        import os

        out = self._folder(context)
        if not out or out.startswith("//"):
            self.report({"ERROR"}, "No dataset folder: set the output folder (or save the .blend first)")
            return {"CANCELLED"}
        if not os.path.isdir(out):
            self.report({"ERROR"}, f"Dataset folder not found: {out}")
            return {"CANCELLED"}
        from ..core import dataset

        ok, problems = call_reporting(self, f"Validating {out}", dataset.validate_dataset, out)
        if not ok:
            return {"CANCELLED"}
        s = context.scene.facsgen
        if problems:
            for line in problems:
                print(f"facsgen validate: {line}")
            more = f" (+{len(problems) - 1} more, see the system console)" if len(problems) > 1 else ""
            s.status = f"Invalid dataset: {len(problems)} problems"
            self.report({"ERROR"}, f"{out}: {problems[0]}{more}")
            return {"CANCELLED"}
        n = dataset.count_samples(out)
        s.status = f"Dataset OK: {n} samples"
        self.report({"INFO"}, f"Dataset OK: {n} samples in {out}")
        return {"FINISHED"}


CLASSES: tuple[type, ...] = (
    FACSGEN_OT_generate_dataset,
    FACSGEN_OT_cancel_generation,
    FACSGEN_OT_validate_dataset,
)
