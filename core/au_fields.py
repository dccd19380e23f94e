# SPDX-License-Identifier: GPL-3.0-or-later
"""AU and identity displacement fields of the built-in head, from a readable data table.

The table is ``data/head_au_fields.json`` (its ``about`` string documents the format).
Each AU is a list of components evaluated on the head's base mesh (canonical frame, cm):

* ``translate``: ``mag * dir * w(v)``; ``w`` = soft union over the region landmarks of
  ``exp(-(d/radius)^2)`` (d = rest distance), times an optional mask. ``side: both``
  uses the region and its mirror image and mirrors the x of ``dir`` smoothly across
  the midline (directions are written for the subject's right side, x < 0).
* ``rotate``: rotation about ``axis`` through ``pivot`` by ``angle * mask(v)`` degrees
  (the jaw).
* ``lid``: the lid skin rotates about the eyeball centre (so it slides over the eyeball,
  never into it) by a fraction of the lid gap angle, measured per lid-margin vertex;
  the angle is spread to the surrounding skin by a harmonic field that is 0 on the brows
  and cheeks. ``upper: 0.82, lower: 0.18`` closes the eye exactly.

Masks are harmonic fields on the mesh graph (1 on the ``one`` groups, 0 on ``zero``,
0.5 on ``half``); they keep e.g. the jaw motion off the upper lip, so lips never cross.
Mouth-pocket and lid-rim vertices copy the value of the contour vertex they come from.

Identity keys (``ID_...``, values in [-1, 1]) are translate components; around the eyes
they are made rigid (the eye region moves as a whole, and the eyeball with it).
``AU12_L`` etc. are generated from ``unilateral``: L/R = the subject's own side
(L: x > 0 in the canonical frame).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from . import head_model as hm

FIELDS_JSON = Path(__file__).resolve().parent.parent / "data" / "head_au_fields.json"


@functools.lru_cache(maxsize=1)
def load_table(path: str | None = None) -> dict:
    p = Path(path) if path else FIELDS_JSON
    data = json.loads(p.read_text(encoding="utf-8"))
    if data.get("format") != "facsgen-head-fields":
        raise ValueError(f"{p}: not a facsgen head-fields table")
    return data


def au_names(table: dict | None = None) -> list[str]:
    """All AU shape-key names the head gets (bilateral, unilateral variants, aliases)."""
    t = table or load_table()
    names = list(t["action_units"])
    for au, sides in t.get("unilateral", {}).items():
        names += [f"{au}_{s}" for s in sides]
    names += list(t.get("aliases", {}))
    return names


def identity_names(table: dict | None = None) -> list[str]:
    return list((table or load_table())["identity"])


class _Ctx:
    """Base mesh + resolved groups and cached masks."""

    def __init__(self, base: hm.BaseMesh, table: dict):
        self.base = base
        self.table = table
        self.v = base.verts
        self.n = len(self.v)
        self.mirror = hm.mirror_map()
        graph_faces = base.faces[np.isin(base.part[base.faces], (0, 1)).all(axis=1)]
        self.edges, _ = hm.unique_edges(graph_faces)
        self.graph_vertices = np.isin(base.part, (0, 1))
        self._masks: dict[str, np.ndarray] = {}

    # ---------------------------------------------------------------- groups
    def group(self, name) -> np.ndarray:
        if isinstance(name, int):
            return np.array([name])
        g = self.table["groups"]
        if name in g:
            return np.asarray(g[name], dtype=np.int64)
        if name.endswith("_L") and name[:-2] + "_R" in g:
            return self.mirror[np.asarray(g[name[:-2] + "_R"], dtype=np.int64)]
        b = self.base
        if name == "@cranium":
            return np.flatnonzero(b.part == 1)
        raise KeyError(f"unknown landmark group {name!r} in {FIELDS_JSON.name}")

    def region(self, names, side) -> np.ndarray:
        idx = np.unique(np.concatenate([self.group(n) for n in names]))
        if side == "both":
            idx = np.unique(np.concatenate([idx, self.mirror[idx[idx < hm.N_LANDMARKS]], idx[idx >= hm.N_LANDMARKS]]))
        elif side == "L":
            idx = self.mirror[idx]
        return idx

    # ---------------------------------------------------------------- masks
    def copy_from_source(self, values: np.ndarray) -> np.ndarray:
        b = self.base
        src = b.source
        has = src >= 0
        values[has] = values[src[has]]
        # pocket back vertex: mean of the pocket
        lone = (b.part == 2) & ~has
        if lone.any():
            values[lone] = values[(b.part == 2) & has].mean(axis=0)
        return values

    def mask(self, name: str | None) -> np.ndarray:
        if not name:
            return np.ones(self.n)
        if name.startswith("!"):
            return 1.0 - self.mask(name[1:])
        if name not in self._masks:
            spec = self.table["masks"][name]
            idx, val = [], []
            for key, value in (("zero", 0.0), ("one", 1.0), ("half", 0.5)):
                for g in spec.get(key, []):
                    gi = self.group(g)
                    idx.append(gi)
                    val.append(np.full(len(gi), value))
            crn = self.group("@cranium")
            profile = spec.get("cranium", 0.0)
            idx.insert(0, crn)
            val.insert(0, self.cranium_profile(profile, crn))
            idx = np.concatenate(idx)
            val = np.concatenate(val)
            idx, first = np.unique(idx[::-1], return_index=True)  # later lists win
            val = val[::-1][first]
            m = hm.graph_laplacian_solve(self.n, self.edges, idx, val, free_mask=self.graph_vertices)[:, 0]
            self._masks[name] = self.copy_from_source(np.clip(m, 0, 1))
        return self._masks[name]

    def cranium_profile(self, profile, idx) -> np.ndarray:
        """Constraint values of the cranium vertices: a number, or ``underjaw`` (1 under the
        jaw bone, fading to 0 toward the neck and the ears: the skin the jaw carries)."""
        if profile == "underjaw":
            p = self.v[idx] - hm.HEAD_CENTRE
            return hm._smoothstep(-6.5, -9.0, p[:, 1]) * hm._smoothstep(-4.0, 0.0, p[:, 2])
        return np.full(len(idx), float(profile))

    # ---------------------------------------------------------------- components
    def falloff(self, idx: np.ndarray, radius: float) -> np.ndarray:
        d = np.linalg.norm(self.v[:, None, :] - self.v[idx][None], axis=2)
        g = np.exp(-((d / radius) ** 2))
        w = 1.0 - np.prod(1.0 - g, axis=1)
        # the closed lips' seam: facing upper / lower contour vertices (0.3 mm apart) get the
        # same weight, so that a field without a lip-separating mask never makes them cross
        up, lo = np.array(hm.LIP_INNER_UPPER[1:-1]), np.array(hm.LIP_INNER_LOWER[1:-1])
        w[up] = w[lo] = 0.5 * (w[up] + w[lo])
        return w

    def side_ramp(self, side):
        x = self.v[:, 0]
        if side == "R":
            return 0.5 * (1 - np.tanh(x / 0.6))
        if side == "L":
            return 0.5 * (1 + np.tanh(x / 0.6))
        return np.ones(self.n)

    def translate(self, c, side_override=None):
        side = c.get("side", "both")
        if side_override and side in ("both", "mid"):
            side = side_override if side == "both" else side
            ramp = self.side_ramp(side_override) if c.get("side", "both") == "mid" else 1.0
        else:
            ramp = 1.0
        idx = self.region(c["region"], side)
        w = self.falloff(idx, float(c["radius"])) * self.mask(c.get("mask")) * ramp
        d = np.asarray(c["dir"], float)
        disp = np.tile(d, (self.n, 1))
        if side == "both":
            disp[:, 0] = d[0] * -np.tanh(self.v[:, 0] / 0.4)
        elif side == "L":
            disp[:, 0] = -d[0]
        return float(c["mag"]) * disp * w[:, None]

    @staticmethod
    def rotate_points(p, pivot, axis, angle):
        """Rotate points p (n,3) about axis through pivot by per-point angles (rad)."""
        k = np.asarray(axis, float)
        k = k / np.linalg.norm(k)
        q = p - pivot
        cos, sin = np.cos(angle)[:, None], np.sin(angle)[:, None]
        r = q * cos + np.cross(k, q) * sin + k * (q @ k)[:, None] * (1 - cos)
        return r + pivot

    def rotate(self, c, side_override=None):
        w = self.mask(c.get("mask"))
        if side_override:
            w = w * self.side_ramp(side_override)
        ang = np.radians(float(c["angle"])) * w
        # right-hand rotation about +x moves the chin down and back for a positive angle
        return self.rotate_points(self.v, np.asarray(c["pivot"], float), c["axis"], ang) - self.v

    @functools.cached_property
    def lid_data(self):
        """Per eye: centre, lid margin gap angles (about x through the centre)."""
        out = []
        for ei, (up, lo) in enumerate(((hm.EYE_R_UPPER, hm.EYE_R_LOWER), (hm.EYE_L_UPPER, hm.EYE_L_LOWER))):
            c = self.base.eye_centres[ei]
            up_i, lo_i = np.array(up[1:-1]), np.array(lo[1:-1])

            def elev(i, c=c):
                q = self.v[i] - c
                return np.arctan2(q[:, 1], q[:, 2])

            xs_lo = self.v[lo_i, 0]
            order = np.argsort(xs_lo)
            corners = np.array([up[0], up[-1]])
            xc = self.v[corners, 0]
            xs = np.concatenate([xs_lo[order], xc])
            es = np.concatenate([elev(lo_i)[order], elev(corners)])
            o2 = np.argsort(xs)
            gap_up = elev(up_i) - np.interp(self.v[up_i, 0], xs[o2], es[o2])
            xs_u = np.concatenate([self.v[up_i, 0], xc])
            es_u = np.concatenate([elev(up_i), elev(corners)])
            o3 = np.argsort(xs_u)
            gap_lo = np.interp(self.v[lo_i, 0], xs_u[o3], es_u[o3]) - elev(lo_i)
            # far constraint: 0 beyond the eye region, on brows and cheeks
            dist = np.linalg.norm((self.v - c)[:, :2], axis=1)
            far = np.flatnonzero(((dist > 2.3) & self.graph_vertices)
                                 | np.isin(np.arange(self.n), self.region(["brow_R"], "both")))
            out.append((c, up_i, lo_i, np.maximum(gap_up, 0), np.maximum(gap_lo, 0), corners, far))
        return out

    def lid(self, c, side_override=None):
        side = side_override or c.get("side", "both")
        eyes = {"both": (0, 1), "R": (0,), "L": (1,)}[side]
        fu, fl = float(c.get("upper", 0.0)), float(c.get("lower", 0.0))
        disp = np.zeros((self.n, 3))
        for ei in eyes:
            centre, up_i, lo_i, gu, gl, corners, far = self.lid_data[ei]
            idx = np.concatenate([up_i, lo_i, corners, far])
            val = np.concatenate([fu * gu, -fl * gl, np.zeros(len(corners) + len(far))])
            idx, first = np.unique(idx, return_index=True)
            ang = hm.graph_laplacian_solve(self.n, self.edges, idx, val[first], free_mask=self.graph_vertices)[:, 0]
            ang = self.copy_from_source(ang)
            # only the skin near this eye (pocket vertices have nothing to do with it)
            ang[self.base.part == 2] = 0.0
            rim_other = (self.base.part == 3) & (np.linalg.norm(self.v - centre, axis=1) > 3.0)
            ang[rim_other] = 0.0
            q = self.rotate_points(self.v, centre, [1, 0, 0], ang)
            # lift by the chord sag (half of 1 - cos) so that partial values and sums of lid keys
            # (linear shape keys move along chords) stay outside the eyeball
            q = centre + (q - centre) * (1.0 + 0.5 * (1.0 - np.cos(ang)))[:, None]
            disp += q - self.v
        return disp

    def component(self, c, side_override=None):
        t = c.get("type", "translate")
        if t == "translate":
            return self.translate(c, side_override)
        if t == "rotate":
            return self.rotate(c, side_override)
        if t == "lid":
            return self.lid(c, side_override)
        raise ValueError(f"unknown component type {t!r} in {FIELDS_JSON.name}")

    def field(self, comps, side_override=None):
        d = np.zeros((self.n, 3))
        for c in comps:
            d += self.component(c, side_override)
        return d

    @functools.cached_property
    def eye_rigid_weight(self):
        """1 on the lids / lid rims, falling to 0 about 1.2 cm away from the lid contour."""
        w = np.zeros(self.n)
        for up, lo in ((hm.EYE_R_UPPER, hm.EYE_R_LOWER), (hm.EYE_L_UPPER, hm.EYE_L_LOWER)):
            loop = self.v[list(hm.eye_loop(up, lo))]
            d = np.linalg.norm(self.v[:, None] - loop[None], axis=2).min(axis=1)
            w = np.maximum(w, 1 - hm._smoothstep(0.35, 1.3, d))
        w[self.base.part == 3] = 1.0
        return w


def evaluate_fields(base: hm.BaseMesh, table: dict | None = None) -> dict:
    """name -> (delta on base vertices (n,3) cm, [eye R translation, eye L translation])."""
    t = table or load_table()
    ctx = _Ctx(base, t)
    zero_eyes = [np.zeros(3), np.zeros(3)]
    out = {}
    for au, spec in t["action_units"].items():
        out[au] = (ctx.field(spec["components"]), zero_eyes)
    for au, sides in t.get("unilateral", {}).items():
        for s in sides:
            out[f"{au}_{s}"] = (ctx.field(t["action_units"][au]["components"], side_override=s), zero_eyes)
    for alias, target in t.get("aliases", {}).items():
        out[alias] = out[target]
    w = ctx.eye_rigid_weight
    loops = [np.array(hm.eye_loop(hm.EYE_R_UPPER, hm.EYE_R_LOWER)), np.array(hm.eye_loop(hm.EYE_L_UPPER, hm.EYE_L_LOWER))]
    for name, spec in t["identity"].items():
        d = ctx.field(spec["components"])
        eye_t = []
        for ei, loop in enumerate(loops):
            mean = d[loop].mean(axis=0)
            near = np.linalg.norm(ctx.v - base.eye_centres[ei], axis=1) < 3.2
            sel = near[:, None]
            d = np.where(sel, d * (1 - w[:, None]) + mean * w[:, None], d)
            eye_t.append(mean)
        out[name] = (d, eye_t)
    return out
