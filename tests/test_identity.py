"""FaceNet (identity): the published weight layout, loading errors, the crop box, the loss and its gradient.

FaceNet gets random weights, its batch-norm statistics calibrated on a few tiny-generator
images so that different faces get different embeddings (untouched random batch norms map
every image to nearly the same embedding). Nothing is downloaded.
"""

import numpy as np
import pytest
import torch

import face_align
import identity
import image_io
import optimization as opt
from conftest import one_line_message, render
from dnnlib.util import UserError
from landmark_loss import FaceBox, crop_faces

pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def facenet_file(facenet_weights):
    return facenet_weights


@pytest.fixture(scope='module')
def net(facenet_file):
    return identity.load_facenet(facenet_file)


@pytest.fixture(scope='module')
def faces(tiny_G):
    """Three different renders ``[1, 3, 32, 32]``: look, other, third."""
    return [image_io.to_tensor(render(tiny_G, s)) for s in (1, 2, 3)]


# ----------------------------------------------------------------------------
# The published layout and loading.

KNOWN_SHAPES = {
    'conv2d_1a.conv.weight': [32, 3, 3, 3],
    'conv2d_1a.bn.running_var': [32],
    'conv2d_4b.conv.weight': [256, 192, 3, 3],
    'repeat_1.0.branch0.conv.weight': [32, 256, 1, 1],
    'repeat_1.4.branch2.2.conv.weight': [32, 32, 3, 3],
    'repeat_1.0.conv2d.weight': [256, 96, 1, 1],
    'mixed_6a.branch0.conv.weight': [384, 256, 3, 3],
    'mixed_6a.branch1.2.conv.weight': [256, 192, 3, 3],
    'repeat_2.9.branch1.1.conv.weight': [128, 128, 1, 7],
    'repeat_2.9.branch1.2.conv.weight': [128, 128, 7, 1],
    'mixed_7a.branch2.2.conv.weight': [256, 256, 3, 3],
    'repeat_3.4.branch1.2.conv.weight': [192, 192, 3, 1],
    'block8.conv2d.weight': [1792, 384, 1, 1],
    'block8.conv2d.bias': [1792],
    'last_linear.weight': [512, 1792],
    'last_bn.running_mean': [512],
    'logits.weight': [8631, 512],
    'logits.bias': [8631],
}


def test_state_dict_has_the_published_layout():
    state = identity.InceptionResnetV1().state_dict()
    # facenet-pytorch's InceptionResnetV1(pretrained='vggface2'): 604 tensors besides the
    # batch-norm counters (one per batch norm: 111 BatchNorm2d and last_bn).
    assert len([k for k in state if not k.endswith('num_batches_tracked')]) == 604
    assert len([k for k in state if k.endswith('num_batches_tracked')]) == 112
    for key, shape in KNOWN_SHAPES.items():
        assert list(state[key].shape) == shape, key
    assert 'last_linear.bias' not in state and 'repeat_1.0.branch0.conv.bias' not in state
    tops = {k.split('.')[0] for k in state}
    assert tops == {'conv2d_1a', 'conv2d_2a', 'conv2d_2b', 'conv2d_3b', 'conv2d_4a', 'conv2d_4b', 'repeat_1',
                    'mixed_6a', 'repeat_2', 'mixed_7a', 'repeat_3', 'block8', 'last_linear', 'last_bn', 'logits'}


def test_weights_load_strictly_from_a_file(facenet_file, faces, tiny_G):
    state = torch.load(facenet_file, weights_only=True)
    net = identity.load_facenet(facenet_file)
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    loaded = net.state_dict()
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    # Same function as the module the file was written from.
    reference = identity.InceptionResnetV1()
    reference.load_state_dict(state, strict=True)
    box = identity.ffhq_box(tiny_G.img_resolution)
    with torch.no_grad():
        np.testing.assert_allclose(identity.embed(net, faces[0], box).numpy(),
                                   identity.embed(reference.eval(), faces[0], box).numpy(), atol=1e-6)


def test_weights_without_batch_counters_load(facenet_file, tmp_path):
    state = torch.load(facenet_file, weights_only=True)
    path = tmp_path / 'old.pt'
    torch.save({k: v for k, v in state.items() if not k.endswith('num_batches_tracked')}, path)
    net = identity.load_facenet(str(path))
    assert torch.equal(net.state_dict()['last_bn.running_mean'], state['last_bn.running_mean'])


def test_not_a_state_dict_is_one_line_error(tmp_path):
    path = tmp_path / 'weights.pt'
    path.write_text('not weights')
    with pytest.raises(UserError) as excinfo:
        identity.load_facenet(str(path))
    msg = one_line_message(excinfo)
    assert '--id-weights' in msg and str(path) in msg
    with pytest.raises(UserError) as excinfo:
        identity.load_facenet(str(tmp_path / 'missing.pt'))
    assert 'not found' in one_line_message(excinfo)


def test_wrong_network_is_one_line_error(facenet_file, fan_weights, tmp_path):
    with pytest.raises(UserError) as excinfo:
        identity.load_facenet(fan_weights)                        # FAN's weights, not FaceNet's
    msg = one_line_message(excinfo)
    assert '--id-weights' in msg and 'missing' in msg and 'unexpected' in msg

    state = torch.load(facenet_file, weights_only=True)
    truncated = dict(state)
    del truncated['block8.conv2d.weight']
    torch.save(truncated, tmp_path / 'truncated.pt')
    with pytest.raises(UserError) as excinfo:
        identity.load_facenet(str(tmp_path / 'truncated.pt'))
    assert 'block8.conv2d.weight' in one_line_message(excinfo)

    reshaped = dict(state)
    reshaped['last_linear.weight'] = torch.zeros(128, 1792)   # a 128-d FaceNet is not this network
    torch.save(reshaped, tmp_path / 'reshaped.pt')
    with pytest.raises(UserError) as excinfo:
        identity.load_facenet(str(tmp_path / 'reshaped.pt'))
    msg = one_line_message(excinfo)
    assert 'last_linear.weight' in msg and '[128, 1792]' in msg


def test_casia_classifier_size_loads(facenet_file, tmp_path):
    state = torch.load(facenet_file, weights_only=True)
    state['logits.weight'] = torch.zeros(10575, 512)               # the CASIA-WebFace weights' classifier
    state['logits.bias'] = torch.zeros(10575)
    torch.save(state, tmp_path / 'casia.pt')
    assert identity.load_facenet(str(tmp_path / 'casia.pt')).logits.out_features == 10575


def test_download_failure_names_url_and_option(offline_hub):
    with pytest.raises(UserError) as excinfo:
        identity.load_facenet(None)
    msg = one_line_message(excinfo)
    assert identity.FACENET_URL in msg and '--id-weights' in msg
    assert offline_hub == [identity.FACENET_URL]


def test_identity_requested(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path))   # an empty hub cache
    assert not identity.weights_available()
    assert not identity.identity_requested(0.0)
    assert identity.identity_requested(0.5)
    assert identity.identity_requested(0.0, weights='facenet.pt')
    assert not identity.identity_requested(0.0, weights='facenet.pt', no_identity=True)
    with pytest.raises(UserError):
        identity.identity_requested(1.0, no_identity=True)
    with pytest.raises(UserError):
        identity.identity_requested(-1.0)
    cached = tmp_path / 'checkpoints' / '20180402-114759-vggface2.pt'
    cached.parent.mkdir()
    cached.write_bytes(b'')
    assert identity.cached_weights_path() == str(cached)
    assert identity.weights_available() and identity.identity_requested(0.0)


# ----------------------------------------------------------------------------
# The crop box.

def test_ffhq_landmarks_are_ffhq_aligned():
    for resolution in (256, 1024):
        quad = face_align.ffhq_quad(identity.ffhq_landmarks(resolution))
        full = np.array([[0, 0], [0, resolution], [resolution, resolution], [resolution, 0]], dtype=np.float64)
        np.testing.assert_allclose(quad, full, atol=1e-6 * resolution)


def test_box_on_ffhq_aligned_landmarks_frames_the_face():
    resolution = 1024
    points = identity.ffhq_landmarks(resolution)
    box = identity.identity_box(points, resolution, resolution)
    x0, y0 = box.cx - box.size / 2, box.cy - box.size / 2
    x1, y1 = box.cx + box.size / 2, box.cy + box.size / 2
    # The whole face is inside, with the margin: 14 of 160 crop pixels in all, 7 on each side of the longer extent.
    inner = box.size * (1 - identity.DEFAULT_MARGIN / identity.CROP_SIZE)
    assert (points[:, 0] > x0).all() and (points[:, 0] < x1).all()
    assert (points[:, 1] > y0).all() and (points[:, 1] < y1).all()
    assert max(np.ptp(points[:, 0]), np.ptp(points[:, 1])) == pytest.approx(inner)
    # The face of an FFHQ image, not the image: horizontally centred, about 60% of the side, inside it.
    assert box.cx == pytest.approx(resolution / 2)
    assert 0.5 * resolution < box.size < 0.7 * resolution
    assert 0 < x0 and x1 < resolution and 0 < y0 and y1 < resolution
    # In the 160x160 crop: eyes in the upper half, mouth in the lower half, chin above the bottom.
    to_crop = lambda p: (np.asarray(p) - [x0, y0]) / box.size * identity.CROP_SIZE  # noqa: E731
    eyes = to_crop([points[36:42].mean(0), points[42:48].mean(0)])
    mouth, chin = to_crop((points[48] + points[54]) / 2), to_crop(points[8])
    assert (eyes[:, 1] < 80).all() and 80 < mouth[1] < chin[1] < 160
    assert eyes[0, 0] < 80 < eyes[1, 0]


def test_box_follows_the_face_and_scales_with_resolution():
    base = identity.ffhq_box(256)
    big = identity.ffhq_box(1024)
    assert big.size == pytest.approx(4 * base.size) and big.cy == pytest.approx(4 * base.cy)
    shifted = identity.identity_box(identity.ffhq_landmarks(1024) + [30, -20], 1024, 1024)
    assert (shifted.cx - big.cx, shifted.cy - big.cy) == (pytest.approx(30), pytest.approx(-20))
    assert identity.identity_box(identity.ffhq_landmarks(1024), 1024, margin=0).size == pytest.approx(
        big.size * (1 - identity.DEFAULT_MARGIN / identity.CROP_SIZE))


def test_box_of_meaningless_landmarks_stays_usable():
    collapsed = np.full([68, 2], 3.0)
    box = identity.identity_box(collapsed, 64, 48)
    assert box.size == pytest.approx(48 / 4)
    far = identity.identity_box(np.random.RandomState(0).rand(68, 2) * 1e5, 64, 48)
    assert far.size == pytest.approx(96) and 0 <= far.cx <= 64 and 0 <= far.cy <= 48
    with pytest.raises(ValueError):
        identity.identity_box(collapsed, 64, margin=160)


def test_crop_lands_on_painted_eyes():
    """An image with two bright dots at the eye centres: the crop shows them where the box puts them."""
    resolution = 256
    points = identity.ffhq_landmarks(resolution)
    box = identity.identity_box(points, resolution)
    image = -torch.ones([1, 3, resolution, resolution])
    yy, xx = torch.meshgrid(torch.arange(resolution) + 0.5, torch.arange(resolution) + 0.5, indexing='ij')
    eyes = [points[36:42].mean(0), points[42:48].mean(0)]
    for ex, ey in eyes:
        image[:, :, ((xx - ex) ** 2 + (yy - ey) ** 2) < 9] = 1
    crop = crop_faces(image, box, identity.CROP_SIZE)[0, 0]          # [160, 160] in [0, 1]
    for ex, ey in eyes:
        cx = (ex - (box.cx - box.size / 2)) / box.size * identity.CROP_SIZE
        cy = (ey - (box.cy - box.size / 2)) / box.size * identity.CROP_SIZE
        assert float(crop[int(cy), int(cx)]) > 0.9
    assert float(crop.mean()) < 0.05


def test_box_from_image_with_fan(fan_weights, faces):
    from landmark_loss import load_fan
    box = identity.box_from_image(load_fan(fan_weights), faces[0])
    assert isinstance(box, FaceBox) and 32 / 4 <= box.size <= 64 and 0 <= box.cx <= 32 and 0 <= box.cy <= 32


# ----------------------------------------------------------------------------
# Embeddings, the loss and the score.

def test_standardization():
    x = torch.tensor([0.0, 0.5, 1.0])
    np.testing.assert_allclose(identity.standardize(x).numpy(), [-127.5 / 128, 0, 127.5 / 128], atol=1e-7)


def test_embeddings_are_unit_vectors(net, faces, tiny_G):
    box = identity.ffhq_box(tiny_G.img_resolution)
    with torch.no_grad():
        e = identity.embed(net, torch.cat(faces), box)
    assert e.shape == (3, 512)
    np.testing.assert_allclose(e.norm(dim=1).numpy(), 1, atol=1e-5)
    # Per-image boxes: the same box for each gives the same embeddings.
    with torch.no_grad():
        e2 = identity.embed(net, torch.cat(faces), [box] * 3)
    np.testing.assert_allclose(e2.numpy(), e.numpy(), atol=1e-6)


def test_loss_and_similarity(net, faces, tiny_G):
    box = identity.ffhq_box(tiny_G.img_resolution)
    look, other, third = faces
    loss = identity.IdentityLoss(net, look, box)
    batch = torch.cat([look, other, third])
    with torch.no_grad():
        values, sims = loss(batch), loss.similarity(batch)
    assert values.shape == sims.shape == (3,)
    np.testing.assert_allclose((values + sims).numpy(), 1, atol=1e-6)
    assert float(values[0]) == pytest.approx(0, abs=1e-5) and (values[1:] > 1e-3).all() and (values <= 2).all()
    score = identity.identity_similarity(net, batch, look, box)
    np.testing.assert_allclose(score.numpy(), sims.numpy(), atol=1e-6)
    # Symmetric, and 2 - 2 cos is the squared distance of the unit embeddings.
    ab = float(identity.identity_similarity(net, other, look, box)[0])
    assert ab == pytest.approx(float(identity.identity_similarity(net, look, other, box)[0]), abs=1e-6)
    with torch.no_grad():
        ea, eb = identity.embed(net, look, box), identity.embed(net, other, box)
    assert float((ea - eb).square().sum()) == pytest.approx(identity.similarity_to_squared_distance(ab), abs=1e-5)


def test_per_pair_anchors(net, faces, tiny_G):
    box = identity.ffhq_box(tiny_G.img_resolution)
    look, other, third = faces
    loss = identity.IdentityLoss(net, torch.cat([look, other]), box)
    with torch.no_grad():
        values = loss(torch.cat([other, other, look]), index=torch.tensor([1, 0, 0]))
    assert float(values[0]) == pytest.approx(0, abs=1e-5) and float(values[2]) == pytest.approx(0, abs=1e-5)
    assert float(values[1]) > 1e-3
    with pytest.raises(ValueError):
        loss(look)                                                  # two anchors: which one?
    loss.set_anchor(third)                                          # free animation: the first frame's result
    with torch.no_grad():
        assert float(loss(third)[0]) == pytest.approx(0, abs=1e-5)
        # One anchor shared by a batch of latents: the batch's index does not select among anchors.
        shared = loss(torch.cat([third, look]), index=torch.tensor([3, 5]))
    assert float(shared[0]) == pytest.approx(0, abs=1e-5) and float(shared[1]) > 1e-3


def test_gradient_reaches_w(net, faces, tiny_G):
    G = tiny_G
    loss = identity.IdentityLoss(net, faces[0], identity.ffhq_box(G.img_resolution))
    z = torch.from_numpy(np.random.RandomState(5).randn(1, G.z_dim)).float()
    with torch.no_grad():
        ws = G.mapping(z, None)
    ws.requires_grad_(True)
    value = loss(G.synthesis(ws, noise_mode='const'))
    value.sum().backward()
    assert ws.grad is not None and torch.isfinite(ws.grad).all() and float(ws.grad.abs().sum()) > 0
    assert not any(p.grad is not None for p in net.parameters())


def _project(G, objective, steps):
    # W+, no exploration noise and fixed noise maps: on the tiny generator the noise maps would
    # otherwise soak up much of a 12-step run.
    settings = opt.ProjectionSettings(num_steps=steps, seed=7, latent='w+', initial_noise_factor=0.0,
                                      optimize_noise=False)
    return opt.project(G, objective, settings)


def test_identity_term_keeps_the_look(net, faces, tiny_G):
    """Pulled towards another face by MSE, a projection with id_weight 10 stays closer to the look's identity."""
    G = tiny_G
    look, other, _ = faces
    box = identity.ffhq_box(G.img_resolution)
    id_loss = identity.IdentityLoss(net, look, box)

    def make_objective(id_weight):
        # Works with both objective signatures of optimization.project: (image, ws) -> scalars,
        # and the batched (image, ws, index) -> [b] per latent.
        def objective(image, ws, index=None):
            terms = {'mse': (image - other).square().mean(dim=[1, 2, 3])}
            if id_weight:
                terms['identity'] = id_weight * id_loss(image)
            return terms if index is not None else {k: v.mean() for k, v in terms.items()}
        return objective

    sims = {}
    for weight in (0, 10):
        result = _project(G, make_objective(weight), steps=12)
        sims[weight] = float(identity.identity_similarity(net, result.image[:1], look, box)[0])
    assert sims[10] > sims[0] + 0.2, sims

