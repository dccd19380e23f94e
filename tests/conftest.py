# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared fixtures: the extension is registered once in the bpy module; every test
starts from an empty file (autouse ``reset_file``), as in Molecular Nodes' conftest."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
MBLAB_DIR = SHARED / "data" / "mblab"
CANONICAL_OBJ = SHARED / "data" / "mediapipe_canonical" / "canonical_landmarks.obj"


def _ensure_package_importable():
    """Import the repo root as package ``facs_dataset_generator`` (editable install or a link)."""
    try:
        import facs_dataset_generator  # noqa: F401

        return
    except ImportError:
        pass
    link_dir = ROOT / ".pytest_cache" / "pkg"
    link_dir.mkdir(parents=True, exist_ok=True)
    link = link_dir / "facs_dataset_generator"
    if not link.exists():
        os.symlink(ROOT, link, target_is_directory=True)
    sys.path.insert(0, str(link_dir))


_ensure_package_importable()


@pytest.fixture(scope="session")
def addon():
    """The extension, registered in the bpy module for the whole session."""
    import facs_dataset_generator as pkg
    from facs_dataset_generator import registration

    registration.register()
    yield pkg


@pytest.fixture(autouse=True)
def reset_file(request):
    """Every test that uses bpy starts from (and leaves) an empty file."""
    if "bpy" not in sys.modules:
        yield
        return
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    yield
    bpy.ops.wm.read_factory_settings(use_empty=True)


@pytest.fixture
def mblab_blend():
    def get(which: str = "female") -> Path:
        p = MBLAB_DIR / f"mblab_{which}_facs.blend"
        if not p.is_file():
            pytest.skip(f"MB-Lab test character not available ({p})")
        return p

    return get


def has_mediapipe() -> bool:
    try:
        import mediapipe  # noqa: F401

        return True
    except ImportError:
        return False


@pytest.fixture
def without_mediapipe(monkeypatch):
    """Imports of ``mediapipe`` fail for the test, as on a machine where it is not installed."""
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *a, **k):
        if name == "mediapipe" or name.startswith("mediapipe."):
            raise ImportError("No module named 'mediapipe'")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake_import)
