# SPDX-License-Identifier: GPL-3.0-or-later
"""Emotion -> AU range presets and AU -> shape-key tables (JSON data)."""
