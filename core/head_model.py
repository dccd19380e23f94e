# SPDX-License-Identifier: GPL-3.0-or-later
"""The built-in FACS head, built in NumPy (bpy-free) from MediaPipe's canonical face mesh.

Construction (all in the canonical mesh's frame first: centimetres, x to the subject's
left, y up, z toward the viewer; converted to Blender metres at the end):

1. ``data/canonical_face.npz``: 468 landmarks (vertex i = Face Mesh landmark i) and 898
   triangles. The eyes and the mouth are triangulated closed there, so the triangles
   inside the lid contours and inside the inner lip contour are removed (openings).
   The canonical mean face has its lips 5 mm apart; a rest correction closes them.
2. Head: the face mask's only open boundary (the 36-vertex face oval) is continued by
   rings that sweep around a forward-pointing polar axis to a pole at the back of the
   head; each ring vertex lies on a star-shaped head surface (soft union of a cranium
   ellipsoid and a jaw superellipsoid), blended into the face near the oval.
   A mouth pocket (dark) is lofted from the inner lip contour into the head and a short
   lid rim from each lid contour into the eyeball.
3. Interpolating refinement: ``levels`` times, every triangle is split in four with the
   new edge vertex at the PN-triangle (cubic) edge midpoint. Old vertices keep their
   index and position, so vertices 0..467 are the landmarks *and* lie on the rendered
   surface (no subdivision modifier is used).
4. Separate parts appended after the skin: a neck tube and two eyeballs whose faces are
   split by latitude into sclera / iris / pupil material zones.
5. Shape keys: AU and identity displacement fields from ``data/head_au_fields.json``
   (see :mod:`.au_fields`) evaluated on the base mesh and carried to the refined mesh
   linearly; eyeballs follow identity keys rigidly and never move with AUs.

:func:`build_head` returns a :class:`HeadModel` (vertices in Blender metres, faces,
material index per face, shape-key deltas, per-vertex float attributes for the
material: ``facs_brow``, ``facs_lip``, ``facs_hair``). The result is cached.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
CANONICAL_NPZ = DATA_DIR / "canonical_face.npz"

N_LANDMARKS = 468

# Landmark loops (MediaPipe Face Mesh indices). "R" = the subject's right (x < 0).
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400,
             377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)
EYE_R_UPPER = (33, 246, 161, 160, 159, 158, 157, 173, 133)  # outer corner ... inner corner
EYE_R_LOWER = (33, 7, 163, 144, 145, 153, 154, 155, 133)
EYE_L_UPPER = (263, 466, 388, 387, 386, 385, 384, 398, 362)
EYE_L_LOWER = (263, 249, 390, 373, 374, 380, 381, 382, 362)
LIP_INNER_UPPER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)  # right corner ... left corner
LIP_INNER_LOWER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
LIP_OUTER_UPPER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
LIP_OUTER_LOWER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
# the lip ring just outside the inner contour: the fronts of the lips at the seam
LIP_SEAM_UPPER = (62, 183, 42, 41, 38, 12, 268, 271, 272, 407, 292)
LIP_SEAM_LOWER = (62, 96, 89, 179, 86, 15, 316, 403, 319, 325, 292)
LIP_SEAM_RECESS = 0.15  # cm: the closed-lip seam sits this far behind the lip fronts
LIP_SEAM_CLEAR = 0.15  # cm: the seam ring stays this far above / below the seam
BROW_R_UPPER = (70, 63, 105, 66, 107)  # outer ... inner
BROW_R_LOWER = (46, 53, 52, 65, 55)
BROW_L_UPPER = (300, 293, 334, 296, 336)
BROW_L_LOWER = (276, 283, 282, 295, 285)

# Head frame (canonical cm): centre of the head, about between the ears at eye height.
HEAD_CENTRE = np.array([0.0, 2.0, -4.5])
MATERIALS = ("FACS Skin", "FACS Mouth", "FACS Sclera", "FACS Iris", "FACS Pupil", "FACS Teeth")
MAT_SKIN, MAT_MOUTH, MAT_SCLERA, MAT_IRIS, MAT_PUPIL, MAT_TEETH = range(6)
PART_FACE, PART_CRANIUM, PART_POCKET, PART_RIM, PART_NECK, PART_EYE = range(6)

# Eyeball zones (radius in cm of the visible disc).
IRIS_RADIUS = 0.58
PUPIL_RADIUS = 0.2


def eye_loop(upper, lower) -> tuple[int, ...]:
    """Closed lid contour: upper lid outer->inner, then lower lid inner->outer (no repeats)."""
    return tuple(upper) + tuple(reversed(lower[1:-1]))


def lip_loop() -> tuple[int, ...]:
    return tuple(LIP_INNER_UPPER) + tuple(reversed(LIP_INNER_LOWER[1:-1]))


@functools.lru_cache(maxsize=1)
def load_canonical():
    """(verts (468,3) cm float64, faces (898,3) int64, uvs (468,2)) in landmark order."""
    with np.load(CANONICAL_NPZ) as d:
        return d["verts"].astype(np.float64), d["faces"].astype(np.int64), d["uvs"].astype(np.float64)


@functools.lru_cache(maxsize=1)
def mirror_map() -> np.ndarray:
    """mirror_map()[i] = the landmark mirrored across the mid-sagittal plane (x -> -x)."""
    v, _, _ = load_canonical()
    d = np.linalg.norm((v * [-1, 1, 1])[:, None, :] - v[None, :, :], axis=2)
    return np.argmin(d, axis=1)


# --------------------------------------------------------------------------- mesh helpers
def face_normals(v, f, normalise=True):
    n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    if normalise:
        n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    return n


def vertex_normals(v, f):
    fn = face_normals(v, f, normalise=False)  # area weighted
    n = np.zeros_like(v)
    for k in range(3):
        np.add.at(n, f[:, k], fn)
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)


def unique_edges(f):
    e = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
    return np.unique(e, axis=0, return_inverse=True)


def refine_once(v, f):
    """Split each triangle in 4; new edge vertex = cubic (PN triangle) edge midpoint.

    Returns (new verts, new faces, edges (E,2)): new vertex ``len(v) + e`` sits on edge e.
    Old vertices keep index and position (interpolating scheme).
    """
    edges, inv = unique_edges(f)
    inv = inv.reshape(-1)
    nrm = vertex_normals(v, f)
    a, b = edges[:, 0], edges[:, 1]
    d = v[b] - v[a]
    w_ab = np.einsum("ij,ij->i", d, nrm[a])
    w_ba = -np.einsum("ij,ij->i", d, nrm[b])
    mid = 0.5 * (v[a] + v[b]) - (w_ab[:, None] * nrm[a] + w_ba[:, None] * nrm[b]) / 8.0
    nv = len(v)
    m = nv + inv.reshape(3, -1).T  # per face: edge (0,1), (1,2), (2,0)
    m01, m12, m20 = m[:, 0], m[:, 1], m[:, 2]
    f0, f1, f2 = f[:, 0], f[:, 1], f[:, 2]
    nf = np.concatenate([
        np.stack([f0, m01, m20], 1), np.stack([f1, m12, m01], 1),
        np.stack([f2, m20, m12], 1), np.stack([m01, m12, m20], 1),
    ])
    return np.concatenate([v, mid]), nf, edges


def interpolate_linear(values, edge_levels):
    """Carry per-vertex values (N, ...) through the refinement levels (edge midpoints)."""
    for edges in edge_levels:
        values = np.concatenate([values, 0.5 * (values[edges[:, 0]] + values[edges[:, 1]])])
    return values


def graph_laplacian_solve(n, edges, fixed_idx, fixed_val, free_mask=None):
    """Harmonic extension on the mesh graph (uniform weights), dense solve.

    ``fixed_val`` (k, c) values at ``fixed_idx``; returns (n, c). Vertices not reachable
    from a constraint (or excluded by ``free_mask`` False and not fixed) get 0.
    """
    fixed_val = np.asarray(fixed_val, dtype=np.float64)
    if fixed_val.ndim == 1:
        fixed_val = fixed_val[:, None]
    is_fixed = np.zeros(n, bool)
    is_fixed[fixed_idx] = True
    active = np.ones(n, bool) if free_mask is None else (free_mask | is_fixed)
    e = edges[active[edges[:, 0]] & active[edges[:, 1]]]
    free = np.flatnonzero(active & ~is_fixed)
    pos = -np.ones(n, np.int64)
    pos[free] = np.arange(len(free))
    lap = np.zeros((len(free), len(free)))
    rhs = np.zeros((len(free), fixed_val.shape[1]))
    full = np.zeros((n, fixed_val.shape[1]))
    full[fixed_idx] = fixed_val
    for i, j in ((0, 1), (1, 0)):
        a, b = e[:, i], e[:, j]
        sel = pos[a] >= 0
        a, b = a[sel], b[sel]
        np.add.at(lap, (pos[a], pos[a]), 1.0)
        bf = pos[b] >= 0
        np.add.at(lap, (pos[a[bf]], pos[b[bf]]), -1.0)
        np.add.at(rhs, pos[a[~bf]], full[b[~bf]])
    diag = np.diag(lap).copy()
    lap[np.arange(len(free)), np.arange(len(free))] = np.where(diag == 0, 1.0, diag)
    full[free] = np.linalg.solve(lap, rhs)
    return full


# --------------------------------------------------------------------------- the head surface
def _superellipsoid_r(u, axes_pos, axes_neg, p):
    """Distance from the centre to a superellipsoid (per-sign semi-axes) along unit u."""
    ax = np.where(u >= 0, axes_pos, axes_neg)
    return 1.0 / np.power(np.sum(np.abs(u / ax) ** p, axis=1), 1.0 / p)


def head_radius(u):
    """Star-shaped cranium+jaw surface around HEAD_CENTRE along unit directions u (cm)."""
    cranium = _superellipsoid_r(u, np.array([7.7, 11.4, 9.6]), np.array([7.7, 7.5, 9.9]), 2.3)
    jaw = _superellipsoid_r(u, np.array([5.6, 1.0, 9.2]), np.array([5.6, 12.3, 2.0]), 3.2)
    k = 10.0
    return (cranium**k + jaw**k) ** (1.0 / k)


def _frame_dirs(theta, psi):
    """Unit directions at polar angle theta from +z (forward), azimuth psi in the x-y plane."""
    st = np.sin(theta)
    return np.stack([st * np.cos(psi), st * np.sin(psi), np.cos(theta)], axis=-1)


@dataclass
class BaseMesh:
    verts: np.ndarray  # (n, 3) cm, canonical frame
    faces: np.ndarray  # (m, 3)
    mat: np.ndarray  # (m,) material index
    part: np.ndarray  # (n,) 0 face, 1 cranium, 2 mouth pocket, 3 eye rim
    source: np.ndarray  # (n,) for pocket/rim vertices: the contour vertex they come from, else -1
    ring: np.ndarray  # (n,) cranium ring index (1..), 0 for face vertices
    oval_src: np.ndarray  # (n,) for cranium vertices: the oval vertex of their column, else -1
    eye_centres: np.ndarray  # (2, 3) right, left
    eye_radius: float
    groups: dict = field(default_factory=dict)


def _close_lips(v, faces):
    """Rest correction: close the canonical (parted) lips at the FRONT of the lips.

    The canonical mean face has its inner lip contours 5 mm apart and 1-3 mm behind the
    fronts of the lips. Each inner contour vertex is moved to the visible seam: half-way
    between the two contours in height, and forward to just behind the lip fronts (the
    second lip ring, ``LIP_SEAM_UPPER`` / ``LIP_SEAM_LOWER``). That ring is kept above /
    below the seam (the red lips never overhang it), the rest follows harmonically, and
    the mouth pocket (built from the moved contour) starts behind the seam.
    """
    up = np.array(LIP_INNER_UPPER[1:-1])
    lo = np.array(LIP_INNER_LOWER[1:-1])
    corners = np.array([LIP_INNER_UPPER[0], LIP_INNER_UPPER[-1]])
    mu = np.array(LIP_SEAM_UPPER[1:-1])
    ml = np.array(LIP_SEAM_LOWER[1:-1])
    mc = np.array([LIP_SEAM_UPPER[0], LIP_SEAM_UPPER[-1]])
    seam_y = 0.5 * (v[up, 1] + v[lo, 1])
    front = 0.5 * (v[mu, 2] + v[ml, 2])
    seam_z = np.maximum(front - LIP_SEAM_RECESS, 0.5 * (v[up, 2] + v[lo, 2]))
    gap = 0.03  # cm left open so that the pocket stays non-degenerate
    seam_x = 0.5 * (v[up, 0] + v[lo, 0])  # facing vertices exactly one above the other
    tgt_up = np.stack([seam_x, seam_y + gap / 2, seam_z], 1)
    tgt_lo = np.stack([seam_x, seam_y - gap / 2, seam_z], 1)
    # the mouth corners: forward onto the lip front where the seam ring runs past them
    # (the ring's corner vertex sits just outside the contour's corner)
    nxt = 0.5 * (v[[LIP_SEAM_UPPER[1], LIP_SEAM_UPPER[-2]]] + v[[LIP_SEAM_LOWER[1], LIP_SEAM_LOWER[-2]]])
    frac = np.clip((v[corners, 0] - v[mc, 0]) / (nxt[:, 0] - v[mc, 0]), 0, 1)
    tgt_c = v[corners].copy()
    tgt_c[:, 2] = np.maximum(v[mc, 2] + frac * (nxt[:, 2] - v[mc, 2]) - 0.5 * LIP_SEAM_RECESS, v[corners, 2])
    tgt_mc = v[mc].copy()
    tgt_mc[:, 1] = v[corners, 1]
    tgt_mc[:, 2] = np.maximum(v[mc, 2], tgt_c[:, 2] + (0.0))
    # the seam ring stays clear of the seam (above it on the upper lip, below on the lower)
    # (it follows most of the contour's closing motion, as the outer lips do on a real face)
    tgt_mu = v[mu].copy()
    tgt_mu[:, 1] = np.maximum(v[mu, 1] + 0.8 * (tgt_up[:, 1] - v[up, 1]), seam_y + LIP_SEAM_CLEAR)
    tgt_ml = v[ml].copy()
    tgt_ml[:, 1] = np.minimum(v[ml, 1] + 0.8 * (tgt_lo[:, 1] - v[lo, 1]), seam_y - LIP_SEAM_CLEAR)
    edges, _ = unique_edges(faces)
    fixed = [up, lo, corners, mu, ml, mc,
             np.array(FACE_OVAL), np.array([4, 1, 2, 94, 19, 168, 6]), np.array([152, 175, 199])]
    vals = [tgt_up - v[up], tgt_lo - v[lo], tgt_c - v[corners], tgt_mu - v[mu], tgt_ml - v[ml],
            tgt_mc - v[mc]] + [np.zeros((len(x), 3)) for x in fixed[6:]]
    disp = graph_laplacian_solve(len(v), edges, np.concatenate(fixed), np.concatenate(vals))
    return v + disp


def _eyeball(v, upper, lower):
    loop = np.array(eye_loop(upper, lower))
    ctr = v[loop].mean(axis=0)
    z_front = v[loop, 2].mean() + 0.12
    near = np.flatnonzero(np.linalg.norm(v[:, :2] - ctr[:2], axis=1) < 2.2)
    near = near[~np.isin(near, loop)]
    r = 1.3
    for _ in range(30):
        c = np.array([ctr[0], ctr[1], z_front - r])
        d_loop = np.linalg.norm(v[loop] - c, axis=1).min() - 0.1
        d_near = np.linalg.norm(v[near] - c, axis=1).min() - 0.12
        r_new = min(d_loop, d_near)
        if abs(r_new - r) < 1e-6:
            break
        r = 0.5 * (r + r_new)
    return np.array([ctr[0], ctr[1], z_front - r]), r


def build_base() -> BaseMesh:
    v0, f0, _ = load_canonical()
    # 1. openings
    loops = [eye_loop(EYE_R_UPPER, EYE_R_LOWER), eye_loop(EYE_L_UPPER, EYE_L_LOWER), lip_loop()]
    drop = np.zeros(len(f0), bool)
    for lp in loops:
        drop |= np.isin(f0, lp).all(axis=1)
    faces = [f0[~drop]]
    mats = [np.full((~drop).sum(), MAT_SKIN)]
    v = _close_lips(v0, f0[~drop])
    verts = [v]
    part = [np.zeros(len(v), np.int64)]
    source = [np.full(len(v), -1)]
    ring = [np.zeros(len(v), np.int64)]
    oval_src = [np.full(len(v), -1)]
    n = len(v)

    def add(points, p, src=None, rg=0, osrc=None):
        nonlocal n
        k = len(points)
        verts.append(np.asarray(points, float))
        part.append(np.full(k, p))
        source.append(np.full(k, -1) if src is None else np.asarray(src))
        ring.append(np.full(k, rg))
        oval_src.append(np.full(k, -1) if osrc is None else np.asarray(osrc))
        idx = np.arange(n, n + k)
        n += k
        return idx

    def existing_dir(i, j):
        """True if an existing face runs i -> j, False if j -> i."""
        allf = np.concatenate(faces)
        for k in range(3):
            if np.any((allf[:, k] == i) & (allf[:, (k + 1) % 3] == j)):
                return True
        for k in range(3):
            if np.any((allf[:, k] == j) & (allf[:, (k + 1) % 3] == i)):
                return False
        raise AssertionError(f"edge {i}-{j} not in mesh")

    def strip(a, b, mat):
        """Quads between closed index rows a (existing boundary) and b -> 2 triangles each,
        wound consistently with the faces already on the other side of row a."""
        a = np.asarray(a)
        b = np.asarray(b)
        a1, b1 = np.roll(a, -1), np.roll(b, -1)
        t = np.concatenate([np.stack([a, b, b1], 1), np.stack([a, b1, a1], 1)])
        if not existing_dir(a[0], a[1]):
            t = t[:, ::-1]
        faces.append(t)
        mats.append(np.full(len(t), mat))

    def fan(row, centre, mat):
        row = np.asarray(row)
        t = np.stack([row, np.full(len(row), centre), np.roll(row, -1)], 1)
        if not existing_dir(row[0], row[1]):
            t = t[:, ::-1]
        faces.append(t)
        mats.append(np.full(len(t), mat))

    # 2. cranium rings from the face oval to a pole at the back of the head
    oval = np.array(FACE_OVAL)
    rel = v[oval] - HEAD_CENTRE
    r_oval = np.linalg.norm(rel, axis=1)
    u = rel / r_oval[:, None]
    theta0 = np.arccos(np.clip(u[:, 2], -1, 1))
    psi = np.arctan2(u[:, 1], u[:, 0])
    off0 = r_oval - head_radius(u)
    n_rings = 14
    prev = oval
    for j in range(1, n_rings + 1):
        s = j / (n_rings + 1)
        s_eff = s ** 0.85
        th = theta0 + (np.pi - theta0) * s_eff
        uu = _frame_dirs(th, psi)
        decay = np.clip(1.0 - s / 0.28, 0, 1) ** 2
        r = head_radius(uu) + off0 * decay
        idx = add(HEAD_CENTRE + uu * r[:, None], 1, rg=j, osrc=oval)
        strip(prev, idx, MAT_SKIN)
        prev = idx
    pole_u = np.array([[0.0, 0.0, -1.0]])
    pole = add(HEAD_CENTRE + pole_u * head_radius(pole_u)[:, None], 1, rg=n_rings + 1)
    fan(prev, pole[0], MAT_SKIN)

    # 3. mouth pocket
    lp = np.array(lip_loop())
    pl = v[lp]
    cen = pl.mean(axis=0)
    half = np.where(np.isin(lp, LIP_INNER_LOWER[1:-1]), -1.0, 1.0)
    half[np.isin(lp, (78, 308))] = 0.0
    xs = (pl[:, 0] - cen[0])
    rows = []
    for depth, xscale, ydelta, mat in ((0.35, 0.97, 0.12, MAT_MOUTH), (1.1, 0.92, 0.55, MAT_MOUTH),
                                       (2.4, 0.7, 0.75, MAT_MOUTH)):
        p = np.stack([cen[0] + xs * xscale, pl[:, 1] + half * ydelta, pl[:, 2] - depth], 1)
        rows.append((add(p, 2, src=lp), mat))
    strip(lp, rows[0][0], MAT_MOUTH)
    strip(rows[0][0], rows[1][0], MAT_MOUTH)
    strip(rows[1][0], rows[2][0], MAT_MOUTH)
    back = add([[cen[0], cen[1], cen[2] - 3.0]], 2, src=[-1])
    fan(rows[2][0], back[0], MAT_MOUTH)

    # 4. eyeballs and lid rims (a short skin band from the lid contour into the eyeball)
    centres, radii = [], []
    for up, lo in ((EYE_R_UPPER, EYE_R_LOWER), (EYE_L_UPPER, EYE_L_LOWER)):
        c, r = _eyeball(v, up, lo)
        centres.append(c)
        radii.append(r)
    r_eye = float(min(radii))
    for (up, lo), c in zip(((EYE_R_UPPER, EYE_R_LOWER), (EYE_L_UPPER, EYE_L_LOWER)), centres):
        el = np.array(eye_loop(up, lo))
        d = v[el] - c
        inner = c + d / np.linalg.norm(d, axis=1, keepdims=True) * (r_eye - 0.12)
        rim = add(inner, 3, src=el)
        strip(el, rim, MAT_SKIN)

    V = np.concatenate(verts)
    F = np.concatenate(faces)
    M = np.concatenate(mats)
    return BaseMesh(
        verts=V, faces=F, mat=M, part=np.concatenate(part), source=np.concatenate(source),
        ring=np.concatenate(ring), oval_src=np.concatenate(oval_src),
        eye_centres=np.array(centres), eye_radius=r_eye,
    )


# --------------------------------------------------------------------------- extra parts
def eyeball_mesh(centre, radius, segments=32):
    """UV sphere about the forward axis with rings at the pupil and iris edges."""
    a_p = np.arcsin(PUPIL_RADIUS / radius)
    a_i = np.arcsin(IRIS_RADIUS / radius)
    rings = np.concatenate([[a_p * 0.5, a_p, a_i * 0.6, a_i * 0.85, a_i],
                            np.linspace(a_i, np.pi, 12)[1:-1] + 0.0])
    ang = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    pts = [np.array([[0, 0, 1.0]])]
    for t in rings:
        pts.append(np.stack([np.sin(t) * np.cos(ang), np.sin(t) * np.sin(ang), np.full(segments, np.cos(t))], 1))
    pts.append(np.array([[0, 0, -1.0]]))
    p = np.concatenate(pts) * radius + centre
    faces, mats = [], []
    row = lambda i: 1 + i * segments + np.arange(segments)  # noqa: E731
    first = row(0)
    faces.append(np.stack([np.zeros(segments, int), first, np.roll(first, -1)], 1))
    mats.append(np.full(segments, MAT_PUPIL))
    for i in range(len(rings) - 1):
        a, b = row(i), row(i + 1)
        t = np.concatenate([np.stack([a, b, np.roll(b, -1)], 1), np.stack([a, np.roll(b, -1), np.roll(a, -1)], 1)])
        faces.append(t)
        zone = rings[i + 1]
        mats.append(np.full(len(t), MAT_PUPIL if zone <= a_p + 1e-9 else MAT_IRIS if zone <= a_i + 1e-9 else MAT_SCLERA))
    last = row(len(rings) - 1)
    pole = len(p) - 1
    faces.append(np.stack([last, np.full(segments, pole), np.roll(last, -1)], 1))
    mats.append(np.full(segments, MAT_SCLERA))
    return p, np.concatenate(faces), np.concatenate(mats)


def neck_mesh(segments=28):
    """Elliptic neck tube from inside the head down to a closed bottom (canonical cm)."""
    ang = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    rows = []
    for y, rx, rz, zc in ((-2.0, 5.0, 4.6, -5.6), (-8.0, 5.4, 5.0, -5.8), (-12.0, 5.5, 5.1, -6.0),
                          (-16.0, 5.7, 5.3, -6.3), (-19.0, 6.2, 5.6, -6.6), (-20.0, 6.0, 5.4, -6.6)):
        rows.append(np.stack([rx * np.cos(ang), np.full(segments, y), zc + rz * np.sin(ang)], 1))
    p = np.concatenate(rows + [np.array([[0.0, -20.2, -6.6]])])
    faces = []
    for i in range(len(rows) - 1):
        a = i * segments + np.arange(segments)
        b = a + segments
        faces.append(np.stack([a, np.roll(a, -1), np.roll(b, -1)], 1))
        faces.append(np.stack([a, np.roll(b, -1), b], 1))
    last = (len(rows) - 1) * segments + np.arange(segments)
    faces.append(np.stack([last, np.roll(last, -1), np.full(segments, len(p) - 1)], 1))
    f = np.concatenate(faces)
    # outward orientation
    fn = face_normals(p, f)
    axis_pt = p[f].mean(axis=1) * [0, 1, 0] + [0, 0, -6.0]
    out = np.einsum("ij,ij->i", fn, p[f].mean(axis=1) - axis_pt)
    f[out < 0] = f[out < 0][:, ::-1]
    return p, f


# --------------------------------------------------------------------------- result
@dataclass
class HeadModel:
    verts: np.ndarray  # (N, 3) float64, Blender metres (X right of image, -Y toward the viewer, Z up)
    faces: np.ndarray  # (M, 3) int
    material_index: np.ndarray  # (M,)
    materials: tuple[str, ...]
    shape_keys: dict[str, np.ndarray]  # name -> (N, 3) delta in metres
    attributes: dict[str, np.ndarray]  # name -> (N,) float per vertex
    landmark_indices: np.ndarray  # (468,) == arange(468)
    eye_centres: np.ndarray  # (2, 3) metres (subject's right, left)
    eye_radius: float
    n_skin: int  # vertices 0..n_skin-1 are the refined skin (face, cranium, pocket, rims)
    part: np.ndarray  # (N,) PART_* code per vertex

    @property
    def landmarks(self) -> np.ndarray:
        return self.verts[:N_LANDMARKS]


def to_blender(p_cm: np.ndarray) -> np.ndarray:
    """Canonical cm (x left, y up, z toward viewer) -> Blender metres (origin at head centre)."""
    p = np.asarray(p_cm, dtype=np.float64) - HEAD_CENTRE
    return np.stack([p[..., 0], -p[..., 2], p[..., 1]], axis=-1) / 100.0


def delta_to_blender(d_cm: np.ndarray) -> np.ndarray:
    d = np.asarray(d_cm, dtype=np.float64)
    return np.stack([d[..., 0], -d[..., 2], d[..., 1]], axis=-1) / 100.0


def _polyline_distance(p, poly):
    """Distance from points (N,2|3) to a polyline (K,2|3)."""
    a = poly[:-1][None]
    b = poly[1:][None]
    ab = b - a
    t = np.clip(np.einsum("nkd,nkd->nk", p[:, None] - a, ab) / np.maximum(np.einsum("nkd,nkd->nk", ab, ab), 1e-12), 0, 1)
    q = a + t[..., None] * ab
    return np.linalg.norm(p[:, None] - q, axis=2).min(axis=1), t


def _point_in_polygon(p2, poly2):
    x, y = p2[:, 0:1], p2[:, 1:2]
    x0, y0 = poly2[:, 0][None], poly2[:, 1][None]
    x1, y1 = np.roll(poly2[:, 0], -1)[None], np.roll(poly2[:, 1], -1)[None]
    cond = (y0 > y) != (y1 > y)
    xint = x0 + (y - y0) * (x1 - x0) / np.where(y1 == y0, 1e-12, y1 - y0)
    return (cond & (x < xint)).sum(axis=1) % 2 == 1


def _smoothstep(e0, e1, x):
    t = np.clip((x - e0) / (e1 - e0), 0, 1)
    return t * t * (3 - 2 * t)


def _material_attributes(v, is_face):
    """Per-vertex brow / lip / hair weights (canonical cm positions of the refined mesh)."""
    n = len(v)
    brow = np.zeros(n)
    for up, lo in ((BROW_R_UPPER, BROW_R_LOWER), (BROW_L_UPPER, BROW_L_LOWER)):
        base, _, _ = load_canonical()
        pu, pl = base[list(up)], base[list(lo)]
        mid = 0.5 * (pu + pl)
        # extend the brow a little beyond the outer end, thinner there
        tail = mid[0] + (mid[0] - mid[1]) * 0.35
        centre = np.concatenate([[tail], mid])
        half = np.concatenate([[0.12], 0.5 * np.linalg.norm(pu - pl, axis=1) * np.array([0.75, 0.85, 0.95, 1.0, 0.9])])
        d, t = _polyline_distance(v[:, :2], centre[:, :2])
        # thickness interpolated along the brow from the closest segment
        seg = np.argmin(np.linalg.norm(v[:, None, :2] - (centre[:-1, :2] + centre[1:, :2])[None] / 2, axis=2), axis=1)
        tt = t[np.arange(n), seg]
        hw = half[seg] * (1 - tt) + half[seg + 1] * tt
        w = 1 - _smoothstep(hw * 0.8, hw * 1.15, d)
        near = np.abs(v[:, 2] - np.interp(v[:, 0], np.sort(centre[:, 0]), centre[np.argsort(centre[:, 0]), 2])) < 1.2
        brow = np.maximum(brow, w * near * is_face)
    base, _, _ = load_canonical()
    outer = np.concatenate([base[list(LIP_OUTER_UPPER)], base[list(LIP_OUTER_LOWER[1:-1])][::-1]])
    inside = _point_in_polygon(v[:, :2], outer[:, :2])
    d, _ = _polyline_distance(v[:, :2], np.concatenate([outer, outer[:1]])[:, :2])
    lip = np.where(inside, _smoothstep(0.0, 0.12, d), 0.0) * (v[:, 2] > 3.0) * is_face
    return brow.astype(np.float32), lip.astype(np.float32)


@functools.lru_cache(maxsize=4)
def build_head(levels: int = 2) -> HeadModel:
    """Build the head (cached). ``levels`` = interpolating refinement steps of the skin."""
    from . import au_fields

    base = build_base()
    v, f = base.verts, base.faces
    edge_levels = []
    for _ in range(levels):
        v, f, e = refine_once(v, f)
        edge_levels.append(e)
    mat = np.tile(base.mat, 4**levels) if levels else base.mat
    # faces of refine_once are stacked in 4 blocks of the old faces: materials tile
    n_skin = len(v)
    is_face_base = (base.part == 0).astype(np.float64)
    is_face = interpolate_linear(is_face_base, edge_levels) > 0.99
    brow, lip = _material_attributes(v, is_face)
    hair_base = np.zeros(len(base.verts))
    crn = base.part == 1
    hb = base.verts[crn] - HEAD_CENTRE
    # hair cap: the cranium above the ears from just behind the forehead edge, down to the nape
    top = _smoothstep(-1.8, 0.2, hb[:, 1]) * _smoothstep(0.5, 1.6, base.ring[crn])
    nape = _smoothstep(-7.5, -5.5, hb[:, 1]) * _smoothstep(-1.0, -3.5, hb[:, 2])
    hair_base[crn] = np.clip(np.maximum(top, nape), 0, 1)
    hair = interpolate_linear(hair_base, edge_levels)

    # extra parts
    neck_p, neck_f = neck_mesh()
    parts_v = [v, neck_p]
    parts_f = [f, neck_f + n_skin]
    parts_m = [mat, np.full(len(neck_f), MAT_SKIN)]
    offset = n_skin + len(neck_p)
    eye_ranges = []
    for c in base.eye_centres:
        ep, ef, em = eyeball_mesh(c, base.eye_radius)
        parts_v.append(ep)
        parts_f.append(ef + offset)
        parts_m.append(em)
        eye_ranges.append((offset, offset + len(ep)))
        offset += len(ep)
    V = np.concatenate(parts_v)
    F = np.concatenate(parts_f)
    M = np.concatenate(parts_m)
    N = len(V)

    # shape keys (canonical cm deltas on the base mesh -> refined linearly)
    keys_cm = au_fields.evaluate_fields(base)
    shape_keys = {}
    for name, (d_base, eye_d) in keys_cm.items():
        d = np.zeros((N, 3))
        d[:n_skin] = interpolate_linear(d_base, edge_levels)
        for (a, b), ed in zip(eye_ranges, eye_d):
            d[a:b] = ed
        shape_keys[name] = delta_to_blender(d).astype(np.float32)

    part = base.part.copy()
    for e in edge_levels:
        part = np.concatenate([part, np.maximum(part[e[:, 0]], part[e[:, 1]])])
    part = np.concatenate([part, np.full(len(neck_p), PART_NECK), np.full(N - n_skin - len(neck_p), PART_EYE)])

    def pad(x):
        out = np.zeros(N, np.float32)
        out[: len(x)] = x
        return out

    return HeadModel(
        verts=to_blender(V), faces=F.astype(np.int32), material_index=M.astype(np.int32), materials=MATERIALS,
        shape_keys=shape_keys,
        attributes={"facs_brow": pad(brow), "facs_lip": pad(lip), "facs_hair": pad(hair)},
        landmark_indices=np.arange(N_LANDMARKS), eye_centres=to_blender(base.eye_centres),
        eye_radius=base.eye_radius / 100.0, n_skin=n_skin, part=part,
    )
