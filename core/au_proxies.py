# SPDX-License-Identifier: GPL-3.0-or-later
"""Geometric AU proxies on the 468 MediaPipe landmarks (bpy-free).

Each proxy is a scalar measured on the landmarks in a face-aligned 2D frame: origin
half-way between the outer eye corners p33 / p263, unit = inter-ocular distance
IOD = ||p33 - p263||, ``a`` along p33 -> p263 (image right in a frontal view), ``h`` =
height *upward* (perpendicular to ``a``). Input points are either image pixels
``(468, 2)`` (x right, y down: e.g. MediaPipe detections) or Blender-frame 3D points
``(468, 3)`` (X = image right in the front view, Z up), which are projected frontally.

``sign`` is the direction the proxy moves from intensity 0 to 1; ``min_change`` (IOD)
is the minimum ground-truth change the built-in head must produce (tests assert it).

======  ==========================================================  ====  ==========
AU      proxy (unit IOD)                                            sign  min_change
======  ==========================================================  ====  ==========
AU01    inner brow 107/336 height above inner eye corner 133/362     +     0.04
AU02    outer brow 63/293 height above outer eye corner 33/263       +     0.04
AU04    mean brow (105,107,334,336) height above the eye corners      -     0.025
AU05    lid gap: 159-145 and 386-374 (mean)                          +     0.015
AU06    cheek 118/347 height (above the eye line)                    +     0.015
AU07    lid gap                                                      -     0.015
AU09    alar base 98/327 height                                      +     0.015
AU10    upper lip 0 to subnasale 2 distance                          -     0.02
AU12    corners 61/291 height relative to the lip centre (13+14)/2   +     0.04
        (tests also check the mouth widens: 61-291 distance grows)
AU14    mouth width 61-291                                           +     0.005
AU15    corners 61/291 height relative to the lip centre             -     0.04
AU16    lower lip 17 to upper lip 0 distance                         +     0.02
AU17    chin 152 height relative to the nose tip 1                   +     0.02
AU20    mouth width 61-291                                           +     0.06
AU23    red lip height (0..17 minus the 13..14 gap)                  -     0.04
        (tests also check the mouth narrows: 61-291 distance falls)
AU24    red lip height                                               -     0.01
AU25    lip gap 13-14                                                +     0.03
AU26    chin 152 depth below the eye line (tests: and 13-14 part)    +     0.08
AU27    chin 152 depth below the eye line                            +     0.15
AU43    lid gap                                                      -     0.05
AU45    lid gap                                                      -     0.05
_L/_R   AU12_x: that corner's rise; AU14_x: that corner's distance
        from the lip centre (L = subject's left = 291 side)         +     0.02 / 0.003
======  ==========================================================  ====  ==========
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


def face_frame(points) -> tuple[np.ndarray, float]:
    """(468, 2|3) -> (468, 2) face-aligned coordinates (a, h) in IOD units, and IOD."""
    p = np.asarray(points, dtype=np.float64)
    if p.shape[1] == 3:
        p = np.stack([p[:, 0], -p[:, 2]], axis=1)  # Blender front view -> image-like (y down)
    r, lft = p[33], p[263]
    iod = float(np.linalg.norm(lft - r))
    u = (lft - r) / iod
    down = np.array([-u[1], u[0]])
    q = p - 0.5 * (r + lft)
    return np.stack([q @ u, -(q @ down)], axis=1) / iod, iod


def _h(f, i):
    return f[i, 1]


def _dist(f, i, j):
    return float(np.linalg.norm(f[i] - f[j]))


def inner_brow_height(f):
    return 0.5 * ((_h(f, 107) - _h(f, 133)) + (_h(f, 336) - _h(f, 362)))


def outer_brow_height(f):
    return 0.5 * ((_h(f, 63) - _h(f, 33)) + (_h(f, 293) - _h(f, 263)))


def brow_height(f):
    eye = np.mean(f[[33, 133, 263, 362], 1])
    return float(np.mean(f[[105, 107, 334, 336], 1]) - eye)


def lid_gap(f):
    return 0.5 * (_dist(f, 159, 145) + _dist(f, 386, 374))


def cheek_height(f):
    return float(np.mean(f[[118, 347], 1]))


def alar_height(f):
    return float(np.mean(f[[98, 327], 1]))


def upper_lip_to_nose(f):
    return _dist(f, 0, 2)


def lip_centre(f):
    return 0.5 * (f[13] + f[14])


def corner_rise(f, corners=(61, 291)):
    c = lip_centre(f)
    return float(np.mean([f[i, 1] - c[1] for i in corners]))


def mouth_width(f):
    return _dist(f, 61, 291)


def lower_lip_drop(f):
    return _dist(f, 17, 0)


def chin_height(f):
    return float(f[152, 1] - f[1, 1])


def red_lip_height(f):
    return _dist(f, 0, 17) - _dist(f, 13, 14)


def lip_gap(f):
    return _dist(f, 13, 14)


def chin_depth(f):
    return float(-f[152, 1])


def corner_distance(f, corner):
    return float(np.linalg.norm(f[corner] - lip_centre(f)))


@dataclass(frozen=True)
class Proxy:
    func: Callable
    sign: int
    min_change: float
    text: str


PROXIES: dict[str, Proxy] = {
    "AU01": Proxy(inner_brow_height, +1, 0.04, "inner brow 107/336 above inner eye corner 133/362"),
    "AU02": Proxy(outer_brow_height, +1, 0.04, "outer brow 63/293 above outer eye corner 33/263"),
    "AU04": Proxy(brow_height, -1, 0.025, "brows 105/107/334/336 above the eye corners"),
    "AU05": Proxy(lid_gap, +1, 0.015, "lid gap 159-145, 386-374"),
    "AU06": Proxy(cheek_height, +1, 0.015, "cheek 118/347 height"),
    "AU07": Proxy(lid_gap, -1, 0.015, "lid gap"),
    "AU09": Proxy(alar_height, +1, 0.015, "alar base 98/327 height"),
    "AU10": Proxy(upper_lip_to_nose, -1, 0.02, "upper lip 0 to subnasale 2"),
    "AU12": Proxy(corner_rise, +1, 0.04, "corners 61/291 relative to the lip centre"),
    "AU14": Proxy(mouth_width, +1, 0.005, "mouth width 61-291"),
    "AU15": Proxy(corner_rise, -1, 0.04, "corners 61/291 relative to the lip centre"),
    "AU16": Proxy(lower_lip_drop, +1, 0.02, "lower lip 17 to upper lip 0"),
    "AU17": Proxy(chin_height, +1, 0.02, "chin 152 relative to the nose tip 1"),
    "AU20": Proxy(mouth_width, +1, 0.06, "mouth width 61-291"),
    "AU23": Proxy(red_lip_height, -1, 0.04, "red lip height"),
    "AU24": Proxy(red_lip_height, -1, 0.01, "red lip height"),
    "AU25": Proxy(lip_gap, +1, 0.03, "lip gap 13-14"),
    "AU26": Proxy(chin_depth, +1, 0.08, "chin 152 below the eye line"),
    "AU27": Proxy(chin_depth, +1, 0.15, "chin 152 below the eye line"),
    "AU43": Proxy(lid_gap, -1, 0.05, "lid gap"),
    "AU45": Proxy(lid_gap, -1, 0.05, "lid gap"),
    "AU12_L": Proxy(lambda f: corner_rise(f, (291,)), +1, 0.02, "left corner 291 rise"),
    "AU12_R": Proxy(lambda f: corner_rise(f, (61,)), +1, 0.02, "right corner 61 rise"),
    "AU14_L": Proxy(lambda f: corner_distance(f, 291), +1, 0.003, "left corner 291 to lip centre"),
    "AU14_R": Proxy(lambda f: corner_distance(f, 61), +1, 0.003, "right corner 61 to lip centre"),
}


def proxy(au: str, points) -> float:
    """The proxy of ``au`` measured on (468, 2) image points or (468, 3) Blender points."""
    if au not in PROXIES:
        raise KeyError(f"no geometric proxy for {au!r} (have: {', '.join(PROXIES)})")
    f, _ = face_frame(points)
    return float(PROXIES[au].func(f))


def proxy_change(au: str, neutral, posed) -> float:
    return proxy(au, posed) - proxy(au, neutral)


def agrees(au: str, neutral, posed, min_change: float | None = None) -> bool:
    """True when the proxy moves in the documented direction by at least ``min_change``."""
    d = proxy_change(au, neutral, posed) * PROXIES[au].sign
    return d >= (PROXIES[au].min_change if min_change is None else min_change)
