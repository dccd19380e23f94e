# SPDX-License-Identifier: GPL-3.0-or-later
"""What every benchmark script needs: the extension importable as ``facs_dataset_generator``.

Installed (``pip install -e .``, as ``scripts/test.sh`` does) it is imported as it is;
otherwise the repository root is loaded as that package, so that the scripts also run from
a plain checkout next to the ``bpy`` wheel."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def import_pkg():
    """Import and return the ``facs_dataset_generator`` package."""
    try:
        import facs_dataset_generator as pkg
    except ImportError:
        spec = importlib.util.spec_from_file_location("facs_dataset_generator", ROOT / "__init__.py",
                                                      submodule_search_locations=[str(ROOT)])
        pkg = importlib.util.module_from_spec(spec)
        sys.modules["facs_dataset_generator"] = pkg
        spec.loader.exec_module(pkg)
    return pkg
