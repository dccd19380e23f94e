# SPDX-License-Identifier: GPL-3.0-or-later
"""Camera math (bpy-free): layouts, look-at, intrinsics, extrinsics, projection, head pose."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from facs_dataset_generator.core import cameras
from facs_dataset_generator.core.config import ConfigError

CANONICAL_OBJ = Path(__file__).resolve().parent.parent.parent / "shared/data/mediapipe_canonical/canonical_landmarks.obj"

FACE_AXES = np.array([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]])  # columns left=+X, up=+Z, forward=-Y


def _canonical_landmarks() -> np.ndarray:
    if not CANONICAL_OBJ.is_file():
        pytest.skip("canonical mesh not available")
    v = np.array([ln.split()[1:4] for ln in CANONICAL_OBJ.read_text().splitlines() if ln.startswith("v ")], float)
    v /= 100.0
    return np.stack([v[:, 0], -v[:, 2], v[:, 1]], axis=1)  # Blender: face along -Y, Z up


@pytest.mark.parametrize("layout", ["grid", "fibonacci"])
@pytest.mark.parametrize("n", [1, 2, 5, 8, 13])
def test_layouts_count_and_ranges(layout, n):
    v = cameras.hemisphere_views(layout, n, (-60, 40), (-20, 30))
    assert v.shape == (n, 2)
    assert (v[:, 0] >= -60 - 1e-9).all() and (v[:, 0] <= 40 + 1e-9).all()
    assert (v[:, 1] >= -20 - 1e-9).all() and (v[:, 1] <= 30 + 1e-9).all()
    assert len({tuple(np.round(x, 6)) for x in v}) == n  # distinct
    if n == 1:
        assert v[0, 0] == pytest.approx(-10.0)


def test_grid_layout_is_regular():
    v = cameras.hemisphere_views("grid", 8, (-60, 60), (-20, 30))
    assert sorted(set(np.round(v[:, 1], 6))) == [-20.0, 30.0]
    assert sorted(set(np.round(v[:, 0], 6))) == [-60.0, -20.0, 20.0, 60.0]


def test_fibonacci_covers_evenly():
    v = cameras.hemisphere_views("fibonacci", 64, (-60, 60), (-30, 30))
    d = np.stack([cameras.view_direction(np.eye(3), y, p) for y, p in v])
    # nearest-neighbour angles are similar (even coverage) and no two points coincide
    ang = np.degrees(np.arccos(np.clip(d @ d.T, -1, 1)))
    np.fill_diagonal(ang, 999)
    nn = ang.min(axis=1)
    assert nn.min() > 0.4 * np.median(nn)
    # equal-area: half of the points are below the area median pitch (0 here)
    assert abs((v[:, 1] < 0).sum() - 32) <= 2


def test_layout_errors():
    with pytest.raises(ConfigError, match="min 10 > max -10"):
        cameras.hemisphere_views("grid", 4, (10, -10), (0, 0))
    with pytest.raises(ConfigError, match="pitch range"):
        cameras.hemisphere_views("grid", 4, (0, 0), (-95, 0))
    with pytest.raises(ConfigError, match="unknown camera layout"):
        cameras.hemisphere_views("spiral", 4)


def test_view_direction_and_look_at():
    d = cameras.view_direction(FACE_AXES, 0, 0)
    assert d == pytest.approx([0, -1, 0])
    d = cameras.view_direction(FACE_AXES, 90, 0)
    assert d == pytest.approx([1, 0, 0])  # yaw > 0: towards the subject's left (+X)
    d = cameras.view_direction(FACE_AXES, 0, 90)
    assert d == pytest.approx([0, 0, 1], abs=1e-12)
    m = cameras.look_at([0, -2, 0], [0, 0, 0], [0, 0, 1])
    assert -m[:3, 2] == pytest.approx([0, 1, 0])  # looks along its -Z at the target
    assert m[:3, 1] == pytest.approx([0, 0, 1])  # image up = world up
    assert m[:3, 0] == pytest.approx([1, 0, 0])
    m2 = cameras.look_at([0, -2, 0], [0, 0, 0], [0, 0, 1], roll_deg=90)
    assert m2[:3, 0] == pytest.approx(m[:3, 1])
    assert abs(np.linalg.det(m2[:3, :3]) - 1) < 1e-12


def test_intrinsics_square_and_nonsquare():
    k, w, h = cameras.intrinsics(50, 36, 24, "AUTO", 200, 100)
    assert (w, h) == (200, 100)
    assert k[0, 0] == pytest.approx(50 / 36 * 200) and k[1, 1] == k[0, 0]
    assert (k[0, 2], k[1, 2]) == (100, 50)
    # portrait, AUTO: the sensor width spans the larger (vertical) side
    k, w, h = cameras.intrinsics(50, 36, 24, "AUTO", 100, 200)
    assert k[0, 0] == pytest.approx(50 / 36 * 200)
    # VERTICAL: sensor height spans the image height
    k, w, h = cameras.intrinsics(50, 36, 24, "VERTICAL", 200, 100)
    assert k[1, 1] == pytest.approx(50 / 24 * 100)
    # HORIZONTAL portrait: sensor width spans the width
    k, w, h = cameras.intrinsics(50, 36, 24, "HORIZONTAL", 100, 200)
    assert k[0, 0] == pytest.approx(50 / 36 * 100)


def test_intrinsics_percentage_shift_pixel_aspect():
    k, w, h = cameras.intrinsics(50, 36, 24, "AUTO", 301, 201, percentage=50)
    assert (w, h) == (150, 100)  # Blender: res * pct // 100
    assert k[0, 2] == 75 and k[1, 2] == 50
    k, w, h = cameras.intrinsics(50, 36, 24, "AUTO", 200, 100, shift_x=0.1, shift_y=-0.2)
    assert k[0, 2] == pytest.approx(100 - 0.1 * 200)
    assert k[1, 2] == pytest.approx(50 - 0.2 * 200)  # shift_y < 0 (view down): the axis point moves up
    k, w, h = cameras.intrinsics(50, 36, 24, "HORIZONTAL", 200, 100, pixel_aspect_x=1, pixel_aspect_y=2)
    assert k[1, 1] == pytest.approx(k[0, 0] / 2)
    with pytest.raises(ConfigError, match="sensor fit"):
        cameras.intrinsics(50, 36, 24, "DIAGONAL", 100, 100)


def test_extrinsics_and_projection():
    m = cameras.look_at([0.3, -2, 0.1], [0.3, 0, 0.1], [0, 0, 1])
    r, t = cameras.opencv_extrinsics(m)
    assert r @ r.T == pytest.approx(np.eye(3))
    assert np.linalg.det(r) == pytest.approx(1)
    k, w, h = cameras.intrinsics(50, 36, 24, "AUTO", 100, 100)
    uv, depth = cameras.project(k, r, t, np.array([[0.3, 0, 0.1], [0.4, 0, 0.1], [0.3, 0, 0.2], [0.3, -3, 0.1]]))
    assert uv[0] == pytest.approx([50, 50])
    assert depth[0] == pytest.approx(2.0)
    assert uv[1, 0] > 50 and uv[1, 1] == pytest.approx(50)  # +X (world right here) -> image right
    assert uv[2, 1] < 50  # up -> smaller y
    assert depth[3] < 0
    vis = cameras.inside_image(uv, depth, w, h)
    assert list(vis) == [True, True, True, False]
    # scale in matrix_world is ignored
    m_scaled = m.copy()
    m_scaled[:3, :3] *= 3
    r2, t2 = cameras.opencv_extrinsics(m_scaled)
    assert r2 == pytest.approx(r) and t2 == pytest.approx(t)


def test_distance_for_face_fraction():
    k, w, h = cameras.intrinsics(50, 36, 24, "AUTO", 100, 80)
    d = cameras.distance_for_face_fraction(0.2, k[1, 1], h, 0.5)
    m = cameras.look_at([0, -d, 0], [0, 0, 0], [0, 0, 1])
    r, t = cameras.opencv_extrinsics(m)
    uv, _ = cameras.project(k, r, t, np.array([[0, 0, 0.1], [0, 0, -0.1]]))
    assert abs(uv[0, 1] - uv[1, 1]) == pytest.approx(0.5 * h)
    with pytest.raises(ConfigError):
        cameras.distance_for_face_fraction(0.2, 100, 100, 0)


def test_pose_matrix_round_trip_and_6drepnet_form():
    rng = np.random.default_rng(0)
    for _ in range(50):
        y, p, r = rng.uniform(-80, 80), rng.uniform(-80, 80), rng.uniform(-170, 170)
        m = cameras.pose_matrix(y, p, r)
        assert cameras.pose_angles(m) == pytest.approx((y, p, r), abs=1e-9)
    # 6DRepNet's get_R(x=pitch, y=yaw, z=roll) = Rz Ry Rx with right-handed rotations
    a = math.radians(20)
    rz = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    assert cameras.pose_matrix(0, 0, 20) == pytest.approx(rz)


def _cam_at(yaw, pitch, roll=0.0):
    eye = 0.6 * cameras.view_direction(FACE_AXES, yaw, pitch)
    return cameras.look_at(eye, [0, 0, 0], FACE_AXES[:, 1], roll)


def test_head_pose_signs():
    r, _ = cameras.opencv_extrinsics(_cam_at(0, 0))
    assert cameras.head_pose(r, FACE_AXES) == pytest.approx((0, 0, 0), abs=1e-9)
    # camera towards the subject's left: the face turns towards the image's left -> yaw > 0
    r, t = cameras.opencv_extrinsics(_cam_at(30, 0))
    assert cameras.head_pose(r, FACE_AXES) == pytest.approx((30, 0, 0), abs=1e-9)
    k, _, _ = cameras.intrinsics(50, 36, 24, "AUTO", 100, 100)
    nose = np.array([[0, -0.1, 0], [0, 0, 0]])  # a point in front of the face, the face centre
    uv, _ = cameras.project(k, r, t, nose)
    assert uv[0, 0] < uv[1, 0]  # the nose points to the image's left
    # camera above the face: the face looks down relative to it -> pitch < 0
    r, t = cameras.opencv_extrinsics(_cam_at(0, 20))
    assert cameras.head_pose(r, FACE_AXES) == pytest.approx((0, -20, 0), abs=1e-9)
    uv, _ = cameras.project(k, r, t, nose)
    assert uv[0, 1] > uv[1, 1]  # nose points down in the image
    # camera rolled counter-clockwise (seen from behind) -> picture turns clockwise -> roll > 0
    r, t = cameras.opencv_extrinsics(_cam_at(0, 0, roll=10))
    assert cameras.head_pose(r, FACE_AXES) == pytest.approx((0, 0, 10), abs=1e-9)
    top = np.array([[0, 0, 0.1], [0, 0, 0]])
    uv, _ = cameras.project(k, r, t, top)
    assert uv[0, 0] > uv[1, 0]  # top of the head moved to the image's right


def test_head_pose_matches_pose_matrix():
    """R.T's columns are the head axes in (x right, y up, z towards the viewer)."""
    for yaw, pitch in [(25, -10), (-40, 15), (60, 5)]:
        r, _ = cameras.opencv_extrinsics(_cam_at(yaw, pitch, roll=7))
        y, p, ro = cameras.head_pose(r, FACE_AXES)
        m = cameras.pose_matrix(y, p, ro)
        axes_f = np.diag([1, -1, -1]) @ r @ FACE_AXES
        assert m.T == pytest.approx(axes_f, abs=1e-9)


def test_face_frame_from_canonical_landmarks():
    lm = _canonical_landmarks()
    centre, axes, height = cameras.face_frame(lm)
    assert axes[:, 0] == pytest.approx([1, 0, 0], abs=1e-6)
    assert axes[:, 2] @ np.array([0, -1, 0]) > 0.99
    assert 0.15 < height < 0.2
    assert centre[0] == pytest.approx(0, abs=1e-9)
    snapped = cameras.snap_to_axes(axes)
    assert snapped == pytest.approx(FACE_AXES)
    tilted = cameras.pose_matrix(40, 0, 0) @ FACE_AXES
    assert cameras.snap_to_axes(tilted) == pytest.approx(tilted)  # too far: kept


def test_orthonormalize():
    rng = np.random.default_rng(1)
    m = cameras.pose_matrix(10, 20, 30) @ np.diag([2, 3, 4]) + rng.normal(0, 1e-9, (3, 3))
    q = cameras.orthonormalize(cameras.pose_matrix(10, 20, 30) * 2.5)
    assert q == pytest.approx(cameras.pose_matrix(10, 20, 30))
    assert np.linalg.det(cameras.orthonormalize(m)) == pytest.approx(1)
