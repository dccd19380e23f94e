# SPDX-License-Identifier: GPL-3.0-or-later
"""pipeline.blender_log: C-level output captured during a block, quoted on failure."""

from __future__ import annotations

import os
import sys

from facs_dataset_generator.pipeline import blender_log


def test_captures_file_descriptors_and_restores_them(capfd):
    print("before", flush=True)
    run = blender_log.BlenderLog()
    with run.captured() as log:
        os.write(1, b"render | Saved: 'x.png'\n")
        os.write(2, b"cycles | WARNING CUEW initialization failed\n")
        os.write(1, b"last line\n")
    print("after", flush=True)
    out, err = capfd.readouterr()
    assert out == "before\nafter\n" and err == ""
    assert "Saved: 'x.png'" in log.text and "CUEW" in log.text
    assert log.tail(1) == "last line"
    run.close()
    assert not run.path.exists()


def test_disabled_leaves_output_alone(capfd):
    with blender_log.BlenderLog(enabled=False).captured() as log:
        os.write(1, b"shown\n")
    assert capfd.readouterr().out == "shown\n" and log.text == "" and log.tail() == ""


def test_restored_after_an_exception(capfd):
    run = blender_log.BlenderLog()
    try:
        with run.captured() as log:
            os.write(2, b"Error: cannot write image\n")
            raise RuntimeError("render failed")
    except RuntimeError:
        pass
    sys.stderr.write("visible again\n")
    sys.stderr.flush()
    assert capfd.readouterr().err == "visible again\n"
    assert log.tail() == "Error: cannot write image"
    run.close()


def test_run_log_file_kept_only_when_asked(tmp_path, capfd):
    log = blender_log.BlenderLog(directory=str(tmp_path))
    assert log.path is not None and log.path.parent == tmp_path and log.path.name.startswith("facsgen-blender-")
    with log.captured() as first:
        os.write(1, b"one\n")
    with log.captured() as second:
        os.write(2, b"two\n")
    assert first.text == "one\n" and second.text == "two\n"  # each block sees its own lines
    assert log.path.read_text() == "two\n"  # the last block's output (what a crash would leave), no more
    assert capfd.readouterr() == ("", "")
    log.close()
    assert not log.path.exists()
    kept = blender_log.BlenderLog(directory=str(tmp_path))
    with kept.captured():
        os.write(1, b"backtrace\n")
    kept.close(keep=True)
    assert kept.path.read_text() == "backtrace\n"
    off = blender_log.BlenderLog(enabled=False)
    with off.captured() as box:
        os.write(1, b"shown\n")
    assert off.path is None and box.text == "" and capfd.readouterr().out == "shown\n"
