"""Landmark groups, FAN loading, the face box and crop, and the heat-map loss (HL).

FAN gets the random 1-hourglass weights of the ``fan_weights`` fixture: nothing is downloaded.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import image_io
import landmark_loss as ll
from conftest import one_line_message, render
from dnnlib.util import UserError

# FAN runs on 256x256 crops; several test processes share few cores, so one thread each.
pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def fan(fan_weights):
    return ll.load_fan(fan_weights)


# ----------------------------------------------------------------------------
# Groups and weights.

def test_groups_cover_all_points_once_in_order():
    assert list(ll.LANDMARK_GROUPS) == ['jaw', 'left_eyebrow', 'right_eyebrow', 'nose_bridge', 'lower_nose',
                                        'left_eye', 'right_eye', 'outer_lip', 'inner_lip']
    covered = []
    for first, last in ll.LANDMARK_GROUPS.values():
        assert first <= last
        covered.extend(range(first, last + 1))
    assert sorted(covered) == list(range(68))
    assert len(covered) == len(set(covered)) == 68
    # Groups are contiguous and in ascending order.
    assert covered == list(range(68))


def test_default_weight_vector():
    w = ll.landmark_weight_vector(ll.DEFAULT_GROUP_WEIGHTS)
    assert w.shape == (68,)
    expected = np.empty(68)
    expected[0:17] = 0.05
    expected[17:27] = 1
    expected[27:31] = 0.1
    expected[31:36] = 1
    expected[36:48] = 1
    expected[48:68] = 5
    np.testing.assert_allclose(w.numpy(), expected, rtol=1e-6)
    assert float(w[30]) == pytest.approx(0.1)
    assert float(w[31]) == 1
    assert float(w[16]) == pytest.approx(0.05) and float(w[17]) == 1


def test_weight_vector_custom_groups():
    w = ll.landmark_weight_vector([1, 2, 3, 4, 5, 6, 7, 8, 9]).numpy()
    for value, (first, last) in zip(range(1, 10), ll.LANDMARK_GROUPS.values()):
        assert (w[first:last + 1] == value).all()


def test_parse_group_weights_ok():
    assert ll.parse_group_weights('0.05,1,1,0.1,1,1,1,5,5') == (0.05, 1, 1, 0.1, 1, 1, 1, 5, 5)
    assert ll.parse_group_weights(' 0, 1 ,2,3,4,5,6,7,8 ') == tuple(float(i) for i in range(9))
    assert ll.parse_group_weights((1, 1, 1, 1, 1, 1, 1, 1, 1)) == (1.0,) * 9


@pytest.mark.parametrize('text', [
    '1,1,1,1,1,1,1,1',             # 8 values
    '1,1,1,1,1,1,1,1,1,1',         # 10 values
    '',
    '1,1,1,1,x,1,1,1,1',
    '1;1;1;1;1;1;1;1;1',
    '1,1,1,-0.5,1,1,1,1,1',
    'nan,1,1,1,1,1,1,1,1',
    '1,1,1,1,1,1,1,1,inf',
])
def test_parse_group_weights_errors(text):
    with pytest.raises(UserError) as excinfo:
        ll.parse_group_weights(text)
    one_line_message(excinfo)


def test_parse_group_weights_count_message_names_groups():
    with pytest.raises(UserError, match='9') as excinfo:
        ll.parse_group_weights('1,2,3')
    assert 'jaw' in one_line_message(excinfo)


# ----------------------------------------------------------------------------
# The loss.

def test_heatmap_loss_properties():
    """Zero for equal maps, symmetric, scales with the weights, and grows with a peak's displacement."""
    gen = torch.Generator().manual_seed(0)
    hm = torch.randn([2, 68, 64, 64], generator=gen)
    target = torch.randn([1, 68, 64, 64], generator=gen)
    weights = torch.rand([68], generator=gen) * 3
    got = ll.heatmap_loss(hm, target, weights)
    assert got.shape == (2,) and (got > 0).all()
    torch.testing.assert_close(ll.heatmap_loss(target.expand(2, -1, -1, -1), hm, weights), got)  # symmetric
    torch.testing.assert_close(ll.heatmap_loss(hm, target, 2.5 * weights), 2.5 * got)          # homogeneous
    torch.testing.assert_close(ll.heatmap_loss(target + 3 * (hm - target), target, weights), 3 * got)
    # One landmark's peak moved further and further away: the loss never decreases.
    maps = [_gaussian_maps([(20 + d, 30)] + [(30, 30)] * 67) for d in range(0, 12, 2)]
    values = [float(ll.heatmap_loss(m, maps[0], ll.landmark_weight_vector())) for m in maps]
    assert values[0] == 0 and all(b > a for a, b in zip(values, values[1:]))


def test_heatmap_loss_per_sample_target_and_zero():
    gen = torch.Generator().manual_seed(1)
    hm = torch.randn([3, 68, 8, 8], generator=gen)
    w = ll.landmark_weight_vector()
    assert torch.equal(ll.heatmap_loss(hm, hm, w), torch.zeros(3))
    # Zero-weight groups do not count.
    w0 = ll.landmark_weight_vector([0, 0, 0, 0, 0, 0, 0, 1, 0])
    other = hm.clone()
    other[:, :48] += 10
    other[:, 60:] -= 10
    assert torch.allclose(ll.heatmap_loss(other, hm, w0), torch.zeros(3))


def test_heatmap_loss_gradient():
    hm = torch.randn([1, 68, 64, 64], requires_grad=True)
    loss = ll.heatmap_loss(hm, torch.zeros([1, 68, 64, 64]), ll.landmark_weight_vector())
    loss.sum().backward()
    assert hm.grad is not None and hm.grad.abs().sum() > 0


# ----------------------------------------------------------------------------
# Landmarks from heat maps.

def _gaussian_maps(centres, sigma=1.5, size=64):
    """``[1, K, size, size]`` with one Gaussian per map centred at continuous grid ``(x, y)``."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    maps = [np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma ** 2)) for x, y in centres]
    return torch.from_numpy(np.stack(maps)[None]).float()


def _expected_image_coords(px, py, box, size=64):
    return (box.cx + (px + 0.5) / size * box.size - 0.5 * box.size,
            box.cy + (py + 0.5) / size * box.size - 0.5 * box.size)


def test_landmarks_from_symmetric_peaks():
    rng = np.random.RandomState(0)
    peaks = [(int(rng.randint(2, 62)), int(rng.randint(2, 62))) for _ in range(68)]
    box = ll.FaceBox(cx=100.0, cy=120.0, size=128.0)
    pts = ll.landmarks_from_heatmaps(_gaussian_maps(peaks), box)
    assert pts.shape == (1, 68, 2)
    expected = np.array([_expected_image_coords(px, py, box) for px, py in peaks])
    np.testing.assert_allclose(pts[0].numpy(), expected, atol=1e-4)


def test_landmarks_from_asymmetric_peaks_refine_quarter_pixel():
    rng = np.random.RandomState(1)
    peaks = [(int(rng.randint(2, 62)), int(rng.randint(2, 62))) for _ in range(68)]
    # Maximum still on the integer pixel, but the right / upper neighbour is larger.
    centres = [(px + 0.3, py - 0.3) for px, py in peaks]
    box = ll.FaceBox(cx=64.0, cy=70.0, size=200.0)
    pts = ll.landmarks_from_heatmaps(_gaussian_maps(centres), box)
    expected = np.array([_expected_image_coords(px + 0.25, py - 0.25, box) for px, py in peaks])
    np.testing.assert_allclose(pts[0].numpy(), expected, atol=1e-4)


def test_landmarks_at_heatmap_border_are_not_refined():
    centres = [(0.2, 10), (63 - 0.2, 63 - 0.2)] + [(30, 30)] * 66
    box = ll.FaceBox.full(256)
    pts = ll.landmarks_from_heatmaps(_gaussian_maps(centres), box)[0]
    np.testing.assert_allclose(pts[0].numpy(), _expected_image_coords(0, 10, box), atol=1e-4)
    np.testing.assert_allclose(pts[1].numpy(), _expected_image_coords(63, 63, box), atol=1e-4)


def test_landmarks_full_box_maps_grid_to_image_pixels():
    # With the whole-image box of a 256 image, heat-map cell (px, py) is the 4x4 block at 4*px.
    pts = ll.landmarks_from_heatmaps(_gaussian_maps([(10, 20)] * 68), ll.FaceBox.full(256))
    np.testing.assert_allclose(pts[0, 0].numpy(), [42.0, 82.0], atol=1e-4)


# ----------------------------------------------------------------------------
# Face box.

def test_face_box_from_square_points():
    rng = np.random.RandomState(2)
    pts = rng.uniform(50, 150, size=(68, 2))
    pts[0] = (50, 60)
    pts[1] = (150, 160)
    pts[2:, 1] = np.clip(pts[2:, 1] + 10, 60, 160)
    box = ll.FaceBox.from_landmarks(pts, 256)
    assert box.cx == pytest.approx(100.0)
    assert box.cy == pytest.approx(110.0 - 0.12 * 100)
    assert box.size == pytest.approx(200 * 200 / 195)


def test_face_box_from_rectangular_points():
    pts = np.zeros((68, 2))
    pts[:, 0] = np.linspace(300, 500, 68)   # width 200
    pts[:, 1] = np.linspace(400, 700, 68)   # height 300
    box = ll.FaceBox.from_landmarks(pts, 1024)
    assert (box.cx, box.cy) == pytest.approx((400.0, 550.0 - 36.0))
    assert box.size == pytest.approx(500 * 200 / 195)


def test_face_box_degenerate_points_clamped():
    box = ll.FaceBox.from_landmarks(np.full((68, 2), 10.0), 256)
    assert box.size == pytest.approx(64.0)
    assert box.size >= 256 / 4
    assert (box.cx, box.cy) == pytest.approx((10.0, 10.0))


def test_face_box_centre_and_size_clamped():
    far = np.tile([[-30.0, 300.0]], (68, 1))
    box = ll.FaceBox.from_landmarks(far, 256)
    assert (box.cx, box.cy) == (0.0, 256.0)
    huge = np.array([[-1000.0, -1000.0], [2000.0, 2000.0]] * 34)
    box = ll.FaceBox.from_landmarks(huge, 256)
    assert box.size == pytest.approx(512.0)
    assert 0 <= box.cx <= 256 and 0 <= box.cy <= 256


def test_face_box_full():
    assert ll.FaceBox.full(32) == ll.FaceBox(16.0, 16.0, 32.0)


# ----------------------------------------------------------------------------
# Crop.

def test_crop_full_box_without_reduction_equals_bilinear_resize():
    img = torch.rand([2, 3, 256, 256], generator=torch.Generator().manual_seed(256)) * 2 - 1
    crop = ll.crop_faces(img, ll.FaceBox.full(256))
    assert crop.shape == (2, 3, 256, 256)
    ref = F.interpolate((img + 1) / 2, size=(256, 256), mode='bilinear', align_corners=False)
    torch.testing.assert_close(crop, ref, atol=5e-5, rtol=0)  # grid_sample rounding


@pytest.mark.parametrize('res', [512, 1024])
def test_crop_that_reduces_is_prefiltered(res):
    """A reducing crop equals the antialiased resize, not plain bilinear sampling (which aliases)."""
    gen = torch.Generator().manual_seed(res)
    img = torch.rand([1, 3, res, res], generator=gen) * 2 - 1
    crop = ll.crop_faces(img, ll.FaceBox.full(res))
    ref = F.interpolate((img + 1) / 2, size=(256, 256), mode='bilinear', antialias=True, align_corners=False)
    torch.testing.assert_close(crop, ref, atol=5e-5, rtol=0)
    # A one-pixel checkerboard has no content at the crop's scale: the crop is a flat grey
    # (plain bilinear sampling at a 2x or 4x reduction would return the checkerboard's pixels).
    yy, xx = torch.meshgrid(torch.arange(res), torch.arange(res), indexing='ij')
    checker = (((yy + xx) % 2) * 2 - 1).float().expand(1, 3, res, res)
    flat = ll.crop_faces(checker, ll.FaceBox.full(res))[..., 4:-4, 4:-4]
    torch.testing.assert_close(flat, torch.full_like(flat, 0.5), atol=0.02, rtol=0)


def test_crop_at_4x_reduction_gives_every_face_pixel_a_gradient():
    # A 1024x1024 image whose 1024-pixel face box (partly outside the image, off the pixel grid)
    # is read at 256x256: a 4x reduction.
    res = 1024
    img = (torch.rand([1, 3, res, res], generator=torch.Generator().manual_seed(3)) * 2 - 1).requires_grad_(True)
    box = ll.FaceBox(cx=530.3, cy=489.6, size=1024.0)
    crop = ll.crop_faces(img, box)
    weights = torch.rand(crop.shape, generator=torch.Generator().manual_seed(4)) + 0.5  # positive: no cancelling
    (crop * weights).sum().backward()
    grad = img.grad.abs().sum(dim=1)[0]  # [H, W]
    x0, x1 = int(np.ceil(box.cx - box.size / 2)), int(np.floor(box.cx + box.size / 2))
    y0, y1 = int(np.ceil(box.cy - box.size / 2)), int(np.floor(box.cy + box.size / 2))
    inside = grad[max(y0, 0):min(y1, res), max(x0, 0):min(x1, res)]
    assert inside.numel() > 0.9 * res * res
    assert (inside > 0).all(), f'{int((inside == 0).sum())} face pixels get no gradient'
    # A smaller box inside the image, reduced 2x: every pixel inside it too.
    img.grad = None
    box = ll.FaceBox(cx=400.0, cy=600.0, size=512.0)
    ll.crop_faces(img, box).sum().backward()
    grad = img.grad.abs().sum(dim=1)[0]
    assert (grad[600 - 255:600 + 255, 400 - 255:400 + 255] > 0).all()
    assert (grad[:, :100] == 0).all()  # far outside the box: nothing


def test_crop_with_one_box_per_image():
    img = torch.rand([2, 3, 64, 64], generator=torch.Generator().manual_seed(8)) * 2 - 1
    boxes = [ll.FaceBox(30.0, 34.0, 40.0), ll.FaceBox(20.0, 25.0, 64.0)]
    crops = ll.crop_faces(img, boxes, 32)
    assert crops.shape == (2, 3, 32, 32)
    for i, b in enumerate(boxes):
        torch.testing.assert_close(crops[i:i + 1], ll.crop_faces(img[i:i + 1], b, 32))
    with pytest.raises(ValueError):
        ll.crop_faces(img, boxes[:1], 32)


def test_crop_full_box_of_small_image_interior_equals_bilinear_resize():
    # Upsampling 32 -> 256: away from the outer half source pixel the crop is the bilinear resize.
    img = torch.rand([1, 3, 32, 32], generator=torch.Generator().manual_seed(5)) * 2 - 1
    crop = ll.crop_faces(img, ll.FaceBox.full(32))
    ref = F.interpolate((img + 1) / 2, size=(256, 256), mode='bilinear', align_corners=False)
    torch.testing.assert_close(crop[..., 4:-4, 4:-4], ref[..., 4:-4, 4:-4], atol=5e-5, rtol=0)


@pytest.mark.parametrize('value', [-1.0, -0.5, 0.0, 0.6, 1.0])
def test_crop_constant_image(value):
    img = torch.full([1, 3, 512, 512], value)
    crop = ll.crop_faces(img, ll.FaceBox.full(512))  # a 2x reduction: prefiltered
    torch.testing.assert_close(crop, torch.full_like(crop, (value + 1) / 2), atol=1e-6, rtol=0)
    small = ll.crop_faces(torch.full([1, 3, 32, 32], value), ll.FaceBox.full(32))
    torch.testing.assert_close(small[..., 4:-4, 4:-4], torch.full([1, 3, 248, 248], (value + 1) / 2),
                               atol=1e-6, rtol=0)


@pytest.mark.parametrize('res', [32, 512])
def test_crop_keeps_orientation(res):
    ramp = torch.linspace(-1, 1, res)
    horizontal = ramp.reshape(1, 1, 1, res).expand(1, 3, res, res)   # dark left, bright right
    vertical = ramp.reshape(1, 1, res, 1).expand(1, 3, res, res)     # dark top, bright bottom
    box = ll.FaceBox.full(res)
    ch = ll.crop_faces(horizontal, box)[0, 0]
    cv = ll.crop_faces(vertical, box)[0, 0]
    assert ch[:, 16:64].mean() < ch[:, 192:240].mean()
    assert (ch[128, 16:240].diff() >= -1e-6).all()        # increases left to right
    assert cv[16:64, :].mean() < cv[192:240, :].mean()
    assert (cv[16:240, 128].diff() >= -1e-6).all()        # increases top to bottom
    assert ch[8:-8, 128].std() < 1e-5 and cv[128, 8:-8].std() < 1e-5


def test_crop_box_outside_image_is_black():
    img = torch.rand([1, 3, 256, 256]) * 2 - 1
    crop = ll.crop_faces(img, ll.FaceBox(0.0, 0.0, 256.0))
    assert (crop[..., :127, :] == 0).all() and (crop[..., :, :127] == 0).all()
    torch.testing.assert_close(crop[..., 128:, 128:], (img[..., :128, :128] + 1) / 2, atol=5e-5, rtol=0)


def test_crop_subregion_scale():
    # A box of side 128 centred at (96, 64) in a 256 image: crop pixel (j, i) samples image (j/2 + 32, i/2).
    img = torch.rand([1, 3, 256, 256]) * 2 - 1
    crop = ll.crop_faces(img, ll.FaceBox(96.0, 64.0, 128.0))
    ref = F.interpolate((img[..., 0:128, 32:160] + 1) / 2, size=(256, 256), mode='bilinear', align_corners=False)
    torch.testing.assert_close(crop[..., 2:-2, 2:-2], ref[..., 2:-2, 2:-2], atol=5e-5, rtol=0)


def test_crop_is_differentiable():
    img = (torch.rand([2, 3, 32, 32]) * 2 - 1).requires_grad_(True)
    crop = ll.crop_faces(img, ll.FaceBox(14.0, 17.0, 20.0))
    (crop * torch.randn_like(crop)).sum().backward()
    assert img.grad is not None and img.grad.abs().sum() > 0
    assert img.grad.shape == img.shape


# ----------------------------------------------------------------------------
# Loading FAN.

def test_load_fan_one_module(fan_weights):
    from fan_network import FAN
    fan = ll.load_fan(fan_weights)
    assert isinstance(fan, FAN)
    assert fan.stacks == 1
    assert not fan.training
    assert not any(p.requires_grad for p in fan.parameters())
    saved = torch.load(fan_weights, weights_only=True)
    for name, value in fan.state_dict().items():
        assert torch.equal(value, saved[name]), name


def test_load_fan_two_modules_and_wrapped(tmp_path):
    from face_alignment.models import FAN
    torch.manual_seed(7)
    state = FAN(2).state_dict()
    path = tmp_path / 'fan2.pth'
    torch.save(state, path)
    fan = ll.load_fan(str(path))
    assert fan.stacks == 2
    assert torch.equal(fan.state_dict()['m1.b1_1.conv1.weight'], state['m1.b1_1.conv1.weight'])
    # The form face_alignment's own checkpoints sometimes take: {'state_dict': {'module.' + name: ...}}.
    wrapped = tmp_path / 'fan2-wrapped.pth'
    torch.save({'state_dict': {'module.' + k: v for k, v in state.items()}}, wrapped)
    fan = ll.load_fan(str(wrapped))
    assert fan.stacks == 2
    assert torch.equal(fan.state_dict()['conv1.weight'], state['conv1.weight'])


def test_load_fan_missing_file(tmp_path):
    missing = tmp_path / 'nope.pth'
    with pytest.raises(UserError) as excinfo:
        ll.load_fan(str(missing))
    msg = one_line_message(excinfo)
    assert str(missing) in msg and '--fan-weights' in msg


def test_load_fan_not_a_state_dict(tmp_path):
    text = tmp_path / 'fan.pth'
    text.write_text('this is not a checkpoint\n')
    with pytest.raises(UserError) as excinfo:
        ll.load_fan(str(text))
    assert str(text) in one_line_message(excinfo)
    # A pickle that weights_only loading accepts, but not a dict of tensors.
    odd = tmp_path / 'list.pth'
    torch.save([torch.zeros(3)], odd)
    with pytest.raises(UserError) as excinfo:
        ll.load_fan(str(odd))
    one_line_message(excinfo)


def test_load_fan_wrong_state_dict(tmp_path, fan_weights):
    other = tmp_path / 'linear.pth'
    torch.save(torch.nn.Linear(3, 4).state_dict(), other)
    with pytest.raises(UserError) as excinfo:
        ll.load_fan(str(other))
    assert str(other) in one_line_message(excinfo)

    state = torch.load(fan_weights, weights_only=True)
    state['conv1.weight'] = torch.zeros(5, 5)
    broken = tmp_path / 'broken.pth'
    torch.save(state, broken)
    with pytest.raises(UserError) as excinfo:
        ll.load_fan(str(broken))
    one_line_message(excinfo)

    state = torch.load(fan_weights, weights_only=True)
    del state['l0.weight']
    incomplete = tmp_path / 'incomplete.pth'
    torch.save(state, incomplete)
    with pytest.raises(UserError) as excinfo:
        ll.load_fan(str(incomplete))
    one_line_message(excinfo)


# ----------------------------------------------------------------------------
# LandmarkLoss.

class _CountingFan(torch.nn.Module):
    def __init__(self, fan):
        super().__init__()
        self.fan = fan
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.fan(x)


def test_landmark_loss_target_heatmaps_computed_once(fan, tiny_G):
    target = image_io.to_tensor(render(tiny_G, 2))
    counting = _CountingFan(fan)
    loss = ll.LandmarkLoss(counting, target)
    assert counting.calls == 2          # whole-image pass for the box, then the target heat maps
    assert isinstance(loss.box, ll.FaceBox)
    assert loss.target_heatmaps.shape == (1, 68, 64, 64)
    assert not loss.target_heatmaps.requires_grad
    assert loss.target_landmarks.shape == (1, 68, 2)
    saved = loss.target_heatmaps.clone()
    assert loss.last_heatmaps is None

    other = image_io.to_tensor(render(tiny_G, 3)).requires_grad_(True)
    values = [loss(other) for _ in range(2)]
    values.append(loss(target))
    assert counting.calls == 5
    assert torch.equal(loss.target_heatmaps, saved)
    assert not loss.target_heatmaps.requires_grad

    # Loss of the target itself is ~0; of another image it is not.
    assert values[2].shape == (1,)
    v = [float(x.detach()) for x in values]
    assert v[2] < 1e-4 * v[0] + 1e-5
    assert v[0] > 0
    assert v[0] == pytest.approx(v[1], rel=1e-6)

    # Differentiable w.r.t. the image; the target heat maps get no gradient.
    values[0].sum().backward()
    assert other.grad is not None and other.grad.abs().sum() > 0
    assert counting.calls == 5
    assert not any(p.requires_grad for p in fan.parameters())

    # last_heatmaps: those of the latest forward, detached.
    assert loss.last_heatmaps is not None and not loss.last_heatmaps.requires_grad
    torch.testing.assert_close(loss.last_heatmaps, saved, atol=1e-5, rtol=0)
    err = loss.error()
    assert err.shape == (1,)
    assert float(err) == pytest.approx(0.0, abs=1e-6)
    assert counting.calls == 5          # landmarks/error reuse the stored heat maps


def test_landmark_loss_batch_and_error(fan, tiny_G):
    target = image_io.to_tensor(render(tiny_G, 2))
    box = ll.FaceBox.full(32)
    counting = _CountingFan(fan)
    loss = ll.LandmarkLoss(counting, target, box=box)
    assert counting.calls == 1          # a given box skips the whole-image pass
    assert loss.box == box
    with pytest.raises(RuntimeError):
        loss.landmarks()

    batch = torch.cat([image_io.to_tensor(render(tiny_G, 5)), target])
    values = loss(batch)
    assert values.shape == (2,)
    assert float(values[1]) < 1e-3 * float(values[0])
    assert loss.last_heatmaps.shape == (2, 68, 64, 64)
    assert loss.landmarks().shape == (2, 68, 2)
    err = loss.error()
    assert err.shape == (2,)
    assert float(err[1]) == pytest.approx(0.0, abs=1e-6)
    # Explicit heat maps override the stored ones.
    assert loss.error(loss.target_heatmaps.expand(3, -1, -1, -1)).shape == (3,)


def test_landmark_loss_group_weights(fan, tiny_G):
    target = image_io.to_tensor(render(tiny_G, 2))
    box = ll.FaceBox.full(32)
    only_lips = ll.LandmarkLoss(fan, target, group_weights=[0, 0, 0, 0, 0, 0, 0, 1, 1], box=box)
    assert torch.equal(only_lips.point_weights[:48], torch.zeros(48))
    img = image_io.to_tensor(render(tiny_G, 4))
    got = only_lips(img)
    assert float(got) > 0
    # Heat maps that differ from the target's only outside the lips cost nothing.
    other = only_lips.target_heatmaps.clone()
    other[:, :48] += 1.0
    assert float(ll.heatmap_loss(other, only_lips.target_heatmaps, only_lips.point_weights)) == 0.0
    uniform = ll.LandmarkLoss(fan, target, group_weights=[1] * 9, box=box)
    assert float(uniform(img)) > float(got)  # the other groups add to it


# ----------------------------------------------------------------------------
# Landmark error and drawing.

def test_landmark_error():
    rng = np.random.RandomState(3)
    target = torch.from_numpy(rng.uniform(0, 256, size=(2, 68, 2))).float()
    assert torch.equal(ll.landmark_error(target, target), torch.zeros(2))
    shifted = target + torch.tensor([3.0, 4.0])       # every point moved by 5 pixels
    eye = np.linalg.norm(target[:, 36].numpy() - target[:, 45].numpy(), axis=1)
    np.testing.assert_allclose(ll.landmark_error(shifted, target).numpy(), 5.0 / eye, rtol=1e-5)
    # Normalized by the target's eye corners, not the prediction's.
    moved = target.clone()
    moved[:, 45] += torch.tensor([50.0, 0.0])
    np.testing.assert_allclose(ll.landmark_error(moved, target).numpy(), 50.0 / 68 / eye, rtol=1e-5)


def test_draw_landmarks():
    rng = np.random.RandomState(4)
    image = rng.randint(0, 100, size=(64, 48, 3)).astype(np.uint8)
    original = image.copy()
    points = rng.uniform(4, 44, size=(68, 2))
    out = ll.draw_landmarks(image, points, color=(0, 255, 0))
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.array_equal(image, original)
    changed = (out != image).any(axis=2)
    assert changed.sum() > 68
    assert (out[changed] == [0, 255, 0]).all()
    # Works on tensors of points too (as LandmarkLoss.landmarks returns them).
    out2 = ll.draw_landmarks(image, torch.from_numpy(points).float(), color=(255, 0, 0))
    assert out2.shape == image.shape and (out2 != image).any()


def test_bf16_heatmaps_same_in_channels_last(fan, monkeypatch):
    # On an AMX CPU FAN's input is NHWC under bf16 autocast (torch_utils.misc.conv_layout); that path
    # gives the heat maps of the NCHW path. Compared on 64x64 crops (FAN is fully convolutional):
    # at 256x256 one bf16 forward takes about 45 s on a CPU without native bf16 kernels.
    from torch_utils import misc
    crops = torch.rand([1, 3, 64, 64], generator=torch.Generator().manual_seed(0))
    results = {}
    for amx in (False, True):
        monkeypatch.setattr(misc, 'cpu_has_amx', lambda amx=amx: amx)
        with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
            x = misc.conv_layout(crops)
            assert x.is_contiguous(memory_format=torch.channels_last) is amx
            results[amx] = fan(x)[-1].float()
    scale = float(results[False].abs().max())
    torch.testing.assert_close(results[True], results[False], atol=2e-2 * scale, rtol=0)
    # fan_heatmaps takes that layout wherever bf16 kernels are native (elsewhere FAN runs in fp32).
    seen = []
    monkeypatch.setattr(ll.precision_mod, 'cpu_supports_bf16', lambda: True)
    monkeypatch.setattr(misc, 'conv_layout', lambda x: seen.append(x) or x)
    stub = lambda x: [torch.zeros(x.shape[0], ll.NUM_LANDMARKS, ll.HEATMAP_SIZE, ll.HEATMAP_SIZE)]  # noqa: E731
    with torch.autocast('cpu', dtype=torch.bfloat16):
        ll.fan_heatmaps(stub, torch.zeros(1, 3, ll.CROP_SIZE, ll.CROP_SIZE))
    assert len(seen) == 1
