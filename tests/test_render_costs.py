# SPDX-License-Identifier: GPL-3.0-or-later
"""``benchmarks/render_costs.py``'s error split (plain numpy/OpenCV, no Blender needed): the
squared error of a test image against a reference lands in the region the coverage mask puts
it in, and the figures add up."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import render_costs  # noqa: E402


def _write(folder: Path, img: np.ndarray) -> None:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(folder / "images" / "000000.png"), img)


def test_error_split_by_region(tmp_path):
    h = w = 32
    alpha = np.zeros((h, w), np.uint8)
    alpha[8:24, 8:24] = 255  # the character: a square
    alpha[8:24, 23] = 128  # its right edge partly covered
    mask = np.dstack([np.zeros((h, w, 3), np.uint8), alpha])
    ref = np.full((h, w, 3), 100, np.uint8)
    test = ref.copy()
    test[12:20, 12:16] += 3  # inside the square, away from the edge band: error 3 on 32 pixels
    test[10, 23] += 10  # on the partly covered column: error 10 on one pixel
    test[0, 0] += 2  # background corner: error 2 on one pixel
    _write(tmp_path / "mask", mask)
    _write(tmp_path / "ref", ref)
    _write(tmp_path / "test", test)

    s = render_costs.error_split(tmp_path / "test", tmp_path / "ref", tmp_path / "mask", 1)

    band = np.zeros((h, w), bool)
    band[7:25, 22:25] = True  # column 23 dilated by one pixel (3x3)
    interior = (alpha == 255) & ~band
    background = (alpha == 0) & ~band
    assert s["interior"]["pixel_share"] == pytest.approx(interior.sum() / (h * w))
    assert s["silhouette"]["pixel_share"] == pytest.approx(band.sum() / (h * w))
    assert s["background"]["pixel_share"] == pytest.approx(background.sum() / (h * w))
    assert s["interior"]["mse"] == pytest.approx(32 * 9 / interior.sum())
    assert s["silhouette"]["mse"] == pytest.approx(100 / band.sum())
    assert s["background"]["mse"] == pytest.approx(4 / background.sum())
    total = 32 * 9 + 100 + 4
    assert s["silhouette"]["error_share"] == pytest.approx(100 / total)
    assert sum(s[k]["error_share"] for k in ("interior", "silhouette", "background")) == pytest.approx(1.0)
    assert s["psnr"] == pytest.approx(10 * np.log10(255.0**2 / (total / (h * w))))


def test_error_split_needs_the_same_images(tmp_path):
    img = np.zeros((8, 8, 3), np.uint8)
    _write(tmp_path / "ref", img)
    _write(tmp_path / "test", img)
    _write(tmp_path / "mask", np.zeros((8, 8, 4), np.uint8))
    with pytest.raises(FileNotFoundError, match="000001.png"):
        render_costs.error_split(tmp_path / "test", tmp_path / "ref", tmp_path / "mask", 2)  # no 000001.png
