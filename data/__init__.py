# SPDX-License-Identifier: GPL-3.0-or-later
"""Data shipped with the extension (built-in head geometry converted from MediaPipe)."""
