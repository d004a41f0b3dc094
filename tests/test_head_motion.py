"""head_motion: residual head rotation and translation of aligned driving frames, as StyleGAN3
input transforms (``projector_video.py --follow-head``).

* Landmarks of one synthetic face, rotated by known angles (clockwise on screen, about the face
  centre or another pivot) and shifted, give those angles and shifts back, with the documented
  signs and units.
* The transforms built from them move the synthesized image the expected way: exactly so at the
  Fourier-feature input (a 90-degree clockwise head turn is ``rot90`` clockwise of the features, a
  head moved right by k input samples shifts them k samples right), approximately for the whole
  config-R / config-T network, and equal to synthesizing with the buffer set through
  ``input_transform_params``.
"""

import copy
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # project root, when run from elsewhere

import face_align  # noqa: E402
import head_motion as hm  # noqa: E402
from networks import stylegan3 as sg3  # noqa: E402

DATA = Path(__file__).parent / 'data'

pytestmark = pytest.mark.usefixtures('one_thread')


# ----------------------------------------------------------------------------
# A synthetic face and its motions.

def _face(seed: int = 0, centre=(300.0, 200.0), size: float = 100.0) -> np.ndarray:
    """``[68, 2]`` upright face landmarks (pixels): the rest jittered, eyes and mouth corners mirror images.

    Left-right symmetric eyes and mouth corners make the FFHQ quad exactly upright (``theta = 0``).
    """
    rng = np.random.RandomState(seed)
    unit = rng.uniform(-0.4, 0.4, size=[68, 2])
    unit[36:42] = [-0.2, -0.1] + rng.uniform(-0.03, 0.03, size=[6, 2])
    unit[42:48] = unit[36:42] * [-1, 1]
    unit[48], unit[54] = [-0.15, 0.25], [0.15, 0.25]
    return np.asarray(centre) + size * unit


def _rcw(degrees: float) -> np.ndarray:
    """``[2, 2]`` rotation turning points clockwise on screen (y down) by ``degrees``."""
    a = math.radians(degrees)
    return np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])


def _rotate(points: np.ndarray, degrees: float, pivot) -> np.ndarray:
    """``points`` turned clockwise on screen by ``degrees`` about ``pivot``."""
    pivot = np.asarray(pivot, dtype=np.float64)
    return (points - pivot) @ _rcw(degrees).T + pivot


def _centre_side(points: np.ndarray):
    centre, _, side = hm.quad_pose(face_align.ffhq_quad(points))
    return centre[0], side[0]


def test_synthetic_face_is_upright():
    centre, theta, side = hm.quad_pose(face_align.ffhq_quad(_face()))
    assert abs(theta[0]) < 1e-9 and side[0] > 50


ANGLES = [0.0, 5.0, -12.5, 30.0, -90.0, 179.0]


def test_rotation_about_face_centre():
    face = _face()
    c0, _ = _centre_side(face)
    points = np.stack([_rotate(face, a, c0) for a in ANGLES])
    motion = hm.motion_from_landmarks(points)
    assert len(motion) == len(ANGLES)
    assert np.allclose(motion.angle, [-a for a in ANGLES], atol=1e-9)  # clockwise head: negative angle
    assert np.allclose(motion.tx, 0, atol=1e-9) and np.allclose(motion.ty, 0, atol=1e-9)
    assert np.allclose(motion.scale, 1, atol=1e-12)
    assert motion.as_rows()[0] == dict(frame=0, angle=0.0, tx=0.0, ty=0.0, scale=1.0)


def test_rotation_and_shift_upright_reference():
    face = _face(1)
    c0, side0 = _centre_side(face)
    shifts = [(0, 0), (10, 0), (0, -25), (-7.5, 12)]
    points = np.stack([_rotate(face, a, c0) + d for a, d in zip([0, 10, -20, 45], shifts)])
    motion = hm.motion_from_landmarks(points)
    assert np.allclose(motion.angle, [0, -10, 20, -45], atol=1e-9)
    # Upright frame 0: tx, ty are the pixel shifts over the quad side (+ right, + down).
    assert np.allclose(motion.tx, [d[0] / side0 for d in shifts], atol=1e-12)
    assert np.allclose(motion.ty, [d[1] / side0 for d in shifts], atol=1e-12)


def test_tilted_reference_measures_in_its_own_axes():
    face = _face(2)
    c0, side0 = _centre_side(face)
    base = _rotate(face, 25.0, c0)  # frame 0 already tilted clockwise by 25 degrees
    along = side0 * 0.1 * _rcw(25.0)[:, 0]   # 0.1 along the tilted face's x axis
    across = side0 * -0.2 * _rcw(25.0)[:, 1]  # 0.2 towards the tilted face's top
    points = np.stack([base, base + along, base + across, _rotate(base, -15.0, c0)])
    motion = hm.motion_from_landmarks(points)
    assert np.allclose(motion.angle, [0, 0, 0, 15], atol=1e-9)
    assert np.allclose(motion.tx, [0, 0.1, 0, 0], atol=1e-12)
    assert np.allclose(motion.ty, [0, 0, -0.2, 0], atol=1e-12)


def test_rotation_about_another_pivot_moves_the_centre():
    face = _face(3)
    c0, side0 = _centre_side(face)
    pivot = c0 + [0.0, 1.5 * side0]  # a neck below the face
    motion = hm.motion_from_landmarks(np.stack([face, _rotate(face, 20.0, pivot)]))
    expected = (pivot + _rcw(20.0) @ (c0 - pivot) - c0) / side0
    assert math.isclose(motion.angle[1], -20.0, abs_tol=1e-9)
    assert np.allclose([motion.tx[1], motion.ty[1]], expected, atol=1e-12)
    assert motion.tx[1] > 0  # the head swings to the right when it turns clockwise about the neck


def test_scale_reported_not_applied_and_reference_frame():
    face = _face(4)
    c0, _ = _centre_side(face)
    bigger = (face - c0) * 1.25 + c0
    motion = hm.motion_from_landmarks(np.stack([face, bigger]))
    assert np.allclose(motion.scale, [1, 1.25]) and np.allclose(motion.angle, 0, atol=1e-9)
    assert np.allclose(hm.input_transforms(motion), np.eye(3), atol=1e-12)
    # Relative to the last frame instead of the first.
    points = np.stack([_rotate(face, a, c0) for a in (0, 10, 30)])
    assert np.allclose(hm.motion_from_landmarks(points, reference=-1).angle, [30, 20, 0], atol=1e-9)
    # Smoothing a still sequence changes nothing.
    assert np.allclose(hm.motion_from_landmarks(np.stack([face] * 5), sigma=2.0).angle, 0, atol=1e-9)


def test_quads_from_alignment_and_errors():
    face = _face(5)
    c0, _ = _centre_side(face)
    quads = np.stack([face_align.ffhq_quad(_rotate(face, a, c0)) for a in (0, -8)])
    assert np.allclose(hm.motion_from_quads(quads).angle, [0, 8], atol=1e-9)
    smoothed = face_align.smooth_quads(quads, 0)  # what VideoAlignment.quads holds
    assert np.allclose(hm.motion_from_quads(smoothed).angle, [0, 8], atol=1e-9)
    with pytest.raises(ValueError):
        hm.quad_pose(np.zeros([3, 5, 2]))
    with pytest.raises(ValueError):
        hm.motion_from_landmarks(np.zeros([2, 5, 2]))
    with pytest.raises(ValueError):
        hm.motion_from_quads(quads, reference=2)


def test_input_transforms_parameters_and_base():
    motion = hm.HeadMotion(angle=np.array([0.0, -10.0, 33.0]), tx=np.array([0.0, 0.1, -0.05]),
                           ty=np.array([0.0, 0.0, 0.2]), scale=np.ones(3))
    T = hm.input_transforms(motion)
    assert T.shape == (3, 3, 3) and np.allclose(T[0], np.eye(3))
    for row, a, x, y in zip(T, motion.angle, motion.tx, motion.ty):
        assert np.allclose(sg3.input_transform_params(row), (a, x, y), atol=1e-12)
    assert np.allclose(hm.input_transforms(motion, rotate=False)[:, :2, :2], np.eye(2))
    assert np.allclose(hm.input_transforms(motion, translate=False)[:, :2, 2], 0)
    base = torch.from_numpy(sg3.make_input_transform(5, 0.02, -0.01)).float()
    Tb = motion.transforms(base=base)
    assert np.array_equal(Tb[0], base.double().numpy())  # frame 0 renders as without transforms
    assert np.allclose(Tb, base.double().numpy()[None] @ T)
    with pytest.raises(ValueError):
        hm.input_transforms(motion, base=np.eye(2))


# ----------------------------------------------------------------------------
# The transforms move the synthesized image with the head.

@pytest.fixture(scope='module')
def nets():
    import legacy
    out = {}
    for name in ('sg3-t-tiny', 'sg3-r-tiny'):
        with open(DATA / f'{name}.pkl', 'rb') as f:
            G = legacy.load_network_pkl(f)['G_ema'].eval().requires_grad_(False)
        out[name] = (G, torch.from_numpy(np.load(DATA / f'{name}-expected.npz')['ws']))
    return out


def _motion(points_of_frames) -> hm.HeadMotion:
    return hm.motion_from_landmarks(np.stack(points_of_frames))


def test_input_features_follow_the_head_exactly(nets):
    G, ws = nets['sg3-r-tiny']
    layer = G.synthesis.input
    face = _face(6)
    c0, side0 = _centre_side(face)
    k = 3  # input samples
    motion = _motion([face, _rotate(face, 90.0, c0), _rotate(face, -90.0, c0),
                      face + [k / layer.sampling_rate * side0, 0], face + [0, k / layer.sampling_rate * side0]])
    T = torch.from_numpy(motion.transforms(base=layer.transform))
    w = ws[:1, 0].expand(len(motion), -1)
    with torch.no_grad():
        base = layer(ws[:1, 0])      # the buffer, as without --follow-head
        feats = layer(w, transform=T)
    # Same function, different float operations (the identity transform goes through the matrix path):
    # a few ulps at values about 1.5; an AMX Xeon gave 2.5e-6.
    assert float((feats[0:1] - base).abs().max()) < 1e-5
    # Head turned clockwise by 90 degrees: the features turn clockwise (rot90 with k=-1), not counterclockwise.
    assert float((feats[1:2] - torch.rot90(base, -1, dims=(2, 3))).abs().max()) < 1e-4
    assert float((feats[1:2] - torch.rot90(base, 1, dims=(2, 3))).abs().max()) > 1e-2
    assert float((feats[2:3] - torch.rot90(base, 1, dims=(2, 3))).abs().max()) < 1e-4
    # Head moved right / down by k input samples: the features move k samples right / down.
    assert float((feats[3:4, :, :, k:] - base[..., :-k]).abs().max()) < 1e-4
    assert float((feats[4:5, :, k:, :] - base[..., :-k, :]).abs().max()) < 1e-4


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()))


def test_images_follow_the_head(nets):
    face = _face(7)
    c0, side0 = _centre_side(face)
    # Config R turns with the head (clockwise head, clockwise image).
    G, ws = nets['sg3-r-tiny']
    motion = _motion([face, _rotate(face, 90.0, c0)])
    T = torch.from_numpy(motion.transforms())
    with torch.no_grad():
        img = G.synthesis(ws[:1].expand(2, -1, -1), transforms=T)
    cw, ccw = _corr(img[1:], torch.rot90(img[:1], -1, dims=(2, 3))), _corr(img[1:], torch.rot90(img[:1], 1, dims=(2, 3)))
    assert cw > 0.99 and cw > ccw + 0.05
    # Config T follows a head that moves a quarter of the face to the right (8 of 32 pixels).
    G, ws = nets['sg3-t-tiny']
    motion = _motion([face, face + [0.25 * side0, 0]])
    with torch.no_grad():
        img = G.synthesis(ws[:1].expand(2, -1, -1), transforms=torch.from_numpy(motion.transforms()))
    assert _corr(img[1:, ..., 4:28, 12:28], img[:1, ..., 4:28, 4:20]) > 0.999
    assert _corr(img[1:, ..., 4:28, 4:20], img[:1, ..., 4:28, 12:28]) < 0.9


@pytest.mark.parametrize('name', ['sg3-t-tiny', 'sg3-r-tiny'])
def test_transforms_equal_buffer_set_by_params(nets, name):
    G, ws = nets[name]
    face = _face(8)
    c0, side0 = _centre_side(face)
    motion = _motion([face, _rotate(face, 17.0, c0) + [0.1 * side0, -0.05 * side0],
                      _rotate(face, -40.0, c0 + [0, side0])])
    T = motion.transforms()
    with torch.no_grad():
        batch = G.synthesis(ws[:3], transforms=torch.from_numpy(T))
        for i in range(3):
            angle, tx, ty = sg3.input_transform_params(T[i])
            assert np.allclose((angle, tx, ty), (motion.angle[i], motion.tx[i], motion.ty[i]), atol=1e-9)
            G2 = copy.deepcopy(G)
            G2.synthesis.input.set_transform(angle, tx, ty)
            assert float((G2.synthesis(ws[i:i + 1]) - batch[i:i + 1]).abs().max()) < 1e-5


def test_pil_rotate_is_counterclockwise_so_angle_is_positive():
    """The hint for projector_video's test: a frame rotated with PIL's ``Image.rotate(a)`` gives ``angle = +a``."""
    from PIL import Image
    frame = np.zeros([64, 64], np.uint8)
    frame[31:33, 47:49] = 255  # a dot right of the centre (32, 32)
    turned = np.asarray(Image.fromarray(frame).rotate(90))  # about the image centre
    ys, xs = np.nonzero(turned > 128)
    assert abs(xs.mean() - 32) < 1 and ys.mean() < 20  # the dot went up: counterclockwise on screen
    face = _face(9, centre=(32.0, 32.0), size=30.0)
    motion = hm.motion_from_landmarks(np.stack([face, _rotate(face, -90.0, (32.0, 32.0))]))
    assert math.isclose(motion.angle[1], 90.0, abs_tol=1e-9)
