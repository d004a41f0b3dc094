"""Tests of ``face_align``: the FFHQ quad, its temporal smoothing, the crop, and FAN landmarks.

Everything here is synthetic (hand-made landmark sets, gradient images); the one FAN test uses
the random-weight FAN file from ``conftest.py``, so nothing is downloaded.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

import face_align
from face_landmarks import FaceLandmarks
from landmark_loss import FaceBox, load_fan


# ----------------------------------------------------------------------------
# Helpers.

def synthetic_face(eye_left=(70.0, 80.0), eye_right=(130.0, 80.0), mouth_left=(80.0, 140.0),
                   mouth_right=(120.0, 140.0), seed: int = 0) -> np.ndarray:
    """``[68, 2]`` points: eyes (36-41, 42-47) as hexagons around the given centres, mouth
    corners 48 and 54 as given, and every other point somewhere that ``ffhq_quad`` must ignore."""
    rng = np.random.RandomState(seed)
    pts = rng.uniform(0, 300, size=(68, 2))
    angles = np.arange(6) * (np.pi / 3)
    ring = np.stack([9.0 * np.cos(angles), 4.0 * np.sin(angles)], axis=1)  # mean exactly zero
    pts[36:42] = np.asarray(eye_left) + ring
    pts[42:48] = np.asarray(eye_right) + ring
    pts[48] = mouth_left
    pts[54] = mouth_right
    return pts


def rotation(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s], [s, c]])


def expected_quad(eye_avg, eye_to_eye_len, eye_to_mouth_vec):
    """The axis-aligned square for an upright face, corners TL, BL, BR, TR (image y points down)."""
    eye_avg = np.asarray(eye_avg, dtype=np.float64)
    em = np.asarray(eye_to_mouth_vec, dtype=np.float64)
    centre = eye_avg + 0.1 * em
    half = max(2.0 * eye_to_eye_len, 1.8 * np.hypot(*em))
    return np.array([centre + [-half, -half], centre + [-half, half], centre + [half, half], centre + [half, -half]])


def jitter(track: np.ndarray) -> float:
    """Standard deviation of the frame-to-frame differences of a ``[T, ...]`` track."""
    return float(np.std(np.diff(np.asarray(track, dtype=np.float64), axis=0)))


def gradient_image(height: int = 160, width: int = 200, square: bool = True) -> np.ndarray:
    """``uint8 [height, width, 3]``: horizontal ramp in R, vertical ramp in G, constant B, and a bright square."""
    yy, xx = np.mgrid[:height, :width].astype(np.float64)
    img = np.stack([xx * 255.0 / width, yy * 255.0 / height, np.full_like(xx, 80.0)], axis=-1)
    if square:
        img[60:80, 70:90] = 250.0
    return np.uint8(np.rint(img))


def axis_quad(x0, y0, x1, y1) -> np.ndarray:
    """Corners top-left, bottom-left, bottom-right, top-right of the box ``[x0, x1] x [y0, y1]``."""
    return np.array([[x0, y0], [x0, y1], [x1, y1], [x1, y0]], dtype=np.float64)


# ----------------------------------------------------------------------------
# ffhq_quad.

@pytest.mark.parametrize('eye_left, eye_right, mouth_left, mouth_right', [
    # Eye distance dominates: half-side = 2 * 60 = 120 > 1.8 * 60.
    ((70, 80), (130, 80), (80, 140), (120, 140)),
    # Eye-to-mouth distance dominates: half-side = 1.8 * 90 = 162 > 2 * 40.
    ((30, 50), (70, 50), (40, 140), (60, 140)),
])
def test_ffhq_quad_frontal_face(eye_left, eye_right, mouth_left, mouth_right):
    pts = synthetic_face(eye_left, eye_right, mouth_left, mouth_right)
    quad = face_align.ffhq_quad(pts)
    assert quad.shape == (4, 2)

    eye_avg = (np.add(eye_left, eye_right)) / 2
    eye_to_eye = np.subtract(eye_right, eye_left)
    eye_to_mouth = np.add(mouth_left, mouth_right) / 2 - eye_avg
    want = expected_quad(eye_avg, np.hypot(*eye_to_eye), eye_to_mouth)
    np.testing.assert_allclose(quad, want, atol=1e-9)

    # Corner order: top-left, bottom-left, bottom-right, top-right (y grows downwards).
    tl, bl, br, tr = quad
    assert tl[0] < tr[0] and bl[0] < br[0]
    assert tl[1] < bl[1] and tr[1] < br[1]

    # A square: equal sides, right angles; axis-aligned for an upright face.
    sides = [quad[(i + 1) % 4] - quad[i] for i in range(4)]
    lengths = [np.hypot(*s) for s in sides]
    np.testing.assert_allclose(lengths, lengths[0], rtol=1e-12)
    for i in range(4):
        assert abs(np.dot(sides[i], sides[(i + 1) % 4])) < 1e-9 * lengths[0] ** 2
    assert abs(tl[1] - tr[1]) < 1e-9 and abs(tl[0] - bl[0]) < 1e-9


def test_ffhq_quad_ignores_other_points():
    a = face_align.ffhq_quad(synthetic_face(seed=1))
    b = face_align.ffhq_quad(synthetic_face(seed=2))
    np.testing.assert_allclose(a, b, atol=1e-12)


@pytest.mark.parametrize('angle', [0.3, -0.7, 2.0])
def test_ffhq_quad_rotates_with_the_points(angle):
    pts = synthetic_face()
    pivot = np.array([55.0, -20.0])
    rot = rotation(angle)
    rotated = (pts - pivot) @ rot.T + pivot
    want = (face_align.ffhq_quad(pts) - pivot) @ rot.T + pivot
    np.testing.assert_allclose(face_align.ffhq_quad(rotated), want, atol=1e-9)


@pytest.mark.parametrize('scale', [0.25, 3.0])
def test_ffhq_quad_scales_with_the_points(scale):
    pts = synthetic_face()
    pivot = np.array([10.0, 200.0])
    want = (face_align.ffhq_quad(pts) - pivot) * scale + pivot
    np.testing.assert_allclose(face_align.ffhq_quad((pts - pivot) * scale + pivot), want, atol=1e-9)


def test_ffhq_quad_translates_with_the_points():
    pts = synthetic_face()
    shift = np.array([-123.5, 42.25])
    np.testing.assert_allclose(face_align.ffhq_quad(pts + shift), face_align.ffhq_quad(pts) + shift, atol=1e-9)


def test_quad_params_round_trip():
    rng = np.random.RandomState(3)
    quads = np.stack([face_align.ffhq_quad((synthetic_face(seed=i) - 100) @ rotation(rng.uniform(-3, 3)).T
                                           * rng.uniform(0.5, 2) + rng.uniform(-50, 50, 2))
                      for i in range(5)])
    params = face_align.quad_to_params(quads)
    assert params.shape == (5, 4)
    np.testing.assert_allclose(face_align.params_to_quad(params), quads, atol=1e-9)
    # Single quad, and the parameters' meaning: centre, then the half-side vector along the top edge.
    quad = axis_quad(10, 20, 50, 60)
    np.testing.assert_allclose(face_align.quad_to_params(quad), [30, 40, 20, 0])
    np.testing.assert_allclose(face_align.params_to_quad(np.array([30.0, 40.0, 20.0, 0.0])), quad)
    params = rng.randn(7, 4)
    np.testing.assert_allclose(face_align.quad_to_params(face_align.params_to_quad(params)), params, atol=1e-12)


# ----------------------------------------------------------------------------
# Temporal smoothing.

def test_smooth_track_keeps_straight_lines():
    t = np.arange(40, dtype=np.float64)
    line = np.stack([3.0 + 0.7 * t, -2.0 - 1.3 * t, 5.0 + 0.0 * t], axis=1)  # [T, 3]
    for sigma in (0.5, 2.0, 6.0):
        out = face_align.smooth_track(line, sigma)
        assert out.shape == line.shape
        np.testing.assert_allclose(out, line, atol=1e-9)  # including the first and last frames
    # Extra dimensions are smoothed independently.
    line4 = np.stack([line, 2 * line], axis=1)  # [T, 2, 3]
    np.testing.assert_allclose(face_align.smooth_track(line4, 2.0), line4, atol=1e-9)


def test_smooth_track_removes_jitter_and_follows_drift():
    rng = np.random.RandomState(0)
    t = np.arange(100, dtype=np.float64)
    drift = np.stack([0.2 * t + 50, -0.2 * t + 10], axis=1)
    noise_std = 2.0
    track = drift + rng.normal(0, noise_std, size=drift.shape)
    smoothed = face_align.smooth_track(track, 2.0)
    assert smoothed.shape == track.shape
    assert jitter(smoothed) <= 0.5 * jitter(track)
    # It follows the drift without lag: the error is well below the noise, also at the ends.
    error = np.abs(smoothed - drift)
    assert error.mean() < 0.5 * noise_std
    assert abs((smoothed - drift).mean()) < 0.3  # no systematic offset (lag would give -0.2 * delay)
    assert error[:3].mean() < 2 * noise_std and error[-3:].mean() < 2 * noise_std


def test_smooth_track_sigma_zero_and_short_tracks_are_unchanged():
    rng = np.random.RandomState(1)
    track = rng.randn(10, 4)
    out = face_align.smooth_track(track, 0)
    np.testing.assert_array_equal(out, track)
    assert out is not track  # a copy, so callers may modify it
    np.testing.assert_array_equal(face_align.smooth_track(track[:2], 3.0), track[:2])
    quads = np.stack([face_align.ffhq_quad(synthetic_face(seed=i) + rng.randn(2)) for i in range(4)])
    np.testing.assert_allclose(face_align.smooth_quads(quads, 0), quads, atol=1e-9)


def test_smooth_quads_cuts_jitter_of_noisy_landmark_tracks():
    rng = np.random.RandomState(5)
    base = synthetic_face()
    quads, clean = [], []
    for i in range(80):
        # The head moves slowly to the right and turns a little; the detector adds noise to every point.
        angle = 0.002 * i
        moved = (base - [100, 100]) @ rotation(angle).T + [100 + 0.3 * i, 100]
        clean.append(face_align.ffhq_quad(moved))
        quads.append(face_align.ffhq_quad(moved + rng.normal(0, 1.5, size=moved.shape)))
    quads, clean = np.stack(quads), np.stack(clean)
    smoothed = face_align.smooth_quads(quads, 2.0)
    assert smoothed.shape == quads.shape
    assert jitter(smoothed) <= 0.5 * jitter(quads)
    assert np.abs(smoothed - clean).mean() < 0.6 * np.abs(quads - clean).mean()
    # Still squares.
    for quad in smoothed:
        sides = [np.hypot(*(quad[(k + 1) % 4] - quad[k])) for k in range(4)]
        np.testing.assert_allclose(sides, sides[0], rtol=1e-9)


# ----------------------------------------------------------------------------
# align_image.

def test_align_image_inside_matches_resized_crop():
    img = gradient_image()
    quad = axis_quad(40, 30, 120, 110)  # 80x80 region, well inside the 200x160 image
    out = face_align.align_image(img, quad, 32)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    want = np.asarray(Image.fromarray(img[30:110, 40:120]).resize((32, 32), Image.LANCZOS), dtype=np.float64)
    diff = np.abs(out.astype(np.float64) - want)
    assert diff.mean() < 3.0
    # Away from the bright square's edges the gradient must match closely.
    smooth = np.ones((32, 32), dtype=bool)
    smooth[10:22, 10:22] = False  # source rows 55-85, columns 65-95 hold the square's edges
    assert diff[smooth].max() <= 3.0


def test_align_image_large_quad_is_shrunk_first():
    img = gradient_image(square=False)
    quad = axis_quad(20, 10, 148, 138)  # 128 px onto 16 px: shrink by 4 first
    out = face_align.align_image(img, quad, 16)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    want = np.asarray(Image.fromarray(img[10:138, 20:148]).resize((16, 16), Image.LANCZOS), dtype=np.float64)
    assert np.abs(out.astype(np.float64) - want).max() <= 4.0


def test_align_image_exact_registration_at_unit_scale():
    img = gradient_image()
    quad = axis_quad(40, 30, 120, 110)
    out = face_align.align_image(img, quad, 80, transform_size=80)
    np.testing.assert_allclose(out.astype(np.float64), img[30:110, 40:120].astype(np.float64), atol=1.0)


def test_align_image_quad_partly_outside_is_padded():
    img = gradient_image(square=False)
    quad = axis_quad(-30, -20, 50, 60)  # 80x80, top-left part outside the image
    out = face_align.align_image(img, quad, 80, transform_size=80)
    assert out.shape == (80, 80, 3) and out.dtype == np.uint8
    # Where the quad covers the image (away from the padded border), the gradient is reproduced.
    inside = out[30:, 40:].astype(np.float64)
    want = img[10:60, 10:50].astype(np.float64)
    assert np.abs(inside - want).mean() < 2.0
    # Also at the generator's size.
    small = face_align.align_image(img, axis_quad(150, 100, 260, 210), 32)
    assert small.shape == (32, 32, 3) and small.dtype == np.uint8


def test_align_image_quad_entirely_outside_and_tiny_quads():
    img = gradient_image()
    for quad in (axis_quad(10, 10, 12, 12), axis_quad(100, 50, 102.5, 52.5), axis_quad(195, 155, 199, 159),
                 axis_quad(300, 300, 340, 340)):
        out = face_align.align_image(img, quad, 32)
        assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    # A rotated square still gives the requested size.
    pts = (synthetic_face() - 100) @ rotation(0.5).T + [100, 80]
    out = face_align.align_image(img, face_align.ffhq_quad(pts) * 0.3 + [60, 40], 24)
    assert out.shape == (24, 24, 3)


@pytest.mark.parametrize('side', [1.0, 0.2])
def test_align_image_sub_pixel_quad(side):
    # ffhq_quad gives such quads (half-side down to 1e-3) when the detected points collapse together.
    img = gradient_image()
    out = face_align.align_image(img, axis_quad(100, 50, 100 + side, 50 + side), 32)
    assert out.shape == (32, 32, 3)
    collapsed = face_align.ffhq_quad(np.full((68, 2), 40.0))
    assert face_align.align_image(img, collapsed, 32).shape == (32, 32, 3)


# ----------------------------------------------------------------------------
# FaceLandmarks.landmarks with a random FAN on a photo that is not square.

def test_landmarks_on_non_square_image(fan_weights):
    fan = load_fan(fan_weights, 'cpu')
    rng = np.random.RandomState(7)
    image = np.uint8(rng.randint(0, 256, size=(48, 72, 3)))
    points, box = FaceLandmarks(fan).landmarks(image, refinements=1)
    assert isinstance(points, np.ndarray) and points.shape == (68, 2)
    assert np.isfinite(points).all()
    assert isinstance(box, FaceBox)
    assert np.isfinite([box.cx, box.cy, box.size]).all() and box.size > 0
    # The refitted box stays on the image (FaceBox.from_landmarks clamps it).
    assert 0 <= box.cx <= 72 and 0 <= box.cy <= 48
    # Whatever a random FAN finds, the quad and the crop are usable.
    out = face_align.align_image(image, face_align.ffhq_quad(points), 16)
    assert out.shape == (16, 16, 3)
