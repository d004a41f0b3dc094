"""LPIPS-VGG perceptual loss: same function as ``lpips.LPIPS(net='vgg')`` with the same backbone.

The VGG16 backbone has the random weights of the ``vgg_weights`` fixture; nothing is downloaded.
"""

import warnings

import pytest
import torch
import torch.nn.functional as F

import perceptual
from conftest import one_line_message
from dnnlib.util import UserError

pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def loss(vgg_weights):
    return perceptual.PerceptualLoss(vgg_weights)


@pytest.fixture(scope='module')
def reference(vgg_weights):
    """``lpips.LPIPS(net='vgg')`` with its backbone layers set from the VGG16 state dict's ``features.<i>``."""
    import lpips
    state = torch.load(vgg_weights, map_location='cpu', weights_only=True, mmap=True)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        model = lpips.LPIPS(net='vgg', pretrained=True, pnet_rand=True, verbose=False)
    copied = 0
    for i in range(1, 6):
        for name, module in getattr(model.net, f'slice{i}').named_children():
            if isinstance(module, torch.nn.Conv2d):     # children keep torchvision's indices as names
                with torch.no_grad():
                    module.weight.copy_(state[f'features.{name}.weight'])
                    module.bias.copy_(state[f'features.{name}.bias'])
                copied += 1
    assert copied == 13
    return model.eval().requires_grad_(False)


def _images(n, size, seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand([n, 3, size, size], generator=gen) * 2 - 1


def test_backbone_weights_loaded(loss, vgg_weights):
    state = torch.load(vgg_weights, map_location='cpu', weights_only=True, mmap=True)
    convs = [m for i in range(1, 6) for m in getattr(loss.model.net, f'slice{i}') if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 13
    keys = [k for k in state if k.startswith('features.') and k.endswith('.weight')]
    assert len(keys) == 13
    for conv, key in zip(convs, sorted(keys, key=lambda k: int(k.split('.')[1]))):
        assert torch.equal(conv.weight, state[key])
        assert torch.equal(conv.bias, state[key[:-len('weight')] + 'bias'])
    assert not any(p.requires_grad for p in loss.parameters())


def test_matches_lpips_reference(loss, reference):
    a, b = _images(2, 64, 0), _images(2, 64, 1)
    with torch.no_grad():
        expected = reference(a, b).reshape(-1)
        got = loss.distance(a, b)
    assert got.shape == (2,)
    assert (expected > 0).all()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)

    loss.set_target(b[:1])
    with torch.no_grad():
        got = loss(a)
        expected = reference(a, b[:1].expand_as(a)).reshape(-1)
    assert got.shape == (2,)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)


def test_distance_to_itself_is_zero(loss):
    a = _images(2, 48, 2)
    with torch.no_grad():
        assert torch.equal(loss.distance(a, a), torch.zeros(2))
    loss.set_target(a[1:])
    with torch.no_grad():
        assert float(loss(a[1:])) == 0.0


def test_gradient_flows_to_image(loss):
    loss.set_target(_images(1, 32, 3))
    x = _images(1, 32, 4).requires_grad_(True)
    loss(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_large_images_are_area_downsampled(loss):
    a, b = _images(1, 512, 5), _images(1, 512, 6)
    a256, b256 = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)      # 2x2 area averaging
    with torch.no_grad():
        big = loss.distance(a, b)
        small = loss.distance(a256, b256)
    torch.testing.assert_close(big, small, rtol=1e-5, atol=1e-7)
    # The target of set_target is reduced the same way.
    loss.set_target(b)
    with torch.no_grad():
        torch.testing.assert_close(loss(a256), small, rtol=1e-5, atol=1e-7)


def test_forward_needs_target(vgg_weights):
    fresh = perceptual.PerceptualLoss(vgg_weights)
    with pytest.raises(RuntimeError, match='set_target'):
        fresh(_images(1, 32, 7))
    with pytest.raises(ValueError):
        fresh.set_target(_images(2, 32, 7))
    with pytest.raises(ValueError):
        fresh.distance(torch.zeros([1, 1, 32, 32]), torch.zeros([1, 1, 32, 32]))


def test_missing_file(tmp_path):
    missing = tmp_path / 'vgg.pth'
    with pytest.raises(UserError) as excinfo:
        perceptual.PerceptualLoss(str(missing))
    msg = one_line_message(excinfo)
    assert str(missing) in msg and '--vgg-weights' in msg


def test_not_a_vgg_state_dict(tmp_path, vgg_weights):
    text = tmp_path / 'text.pth'
    text.write_text('hello\n')
    with pytest.raises(UserError) as excinfo:
        perceptual.PerceptualLoss(str(text))
    assert str(text) in one_line_message(excinfo)

    other = tmp_path / 'linear.pth'
    torch.save(torch.nn.Linear(4, 2).state_dict(), other)
    with pytest.raises(UserError) as excinfo:
        perceptual.PerceptualLoss(str(other))
    assert str(other) in one_line_message(excinfo)

    state = torch.load(vgg_weights, map_location='cpu', weights_only=True, mmap=True)
    state = {k: v for k, v in state.items() if k.startswith('features.')}
    state['features.10.weight'] = torch.zeros(3, 3)
    wrong = tmp_path / 'wrong-shape.pth'
    torch.save(state, wrong)
    with pytest.raises(UserError) as excinfo:
        perceptual.PerceptualLoss(str(wrong))
    one_line_message(excinfo)


def test_look_distance_holds_its_own_features(vgg_weights):
    """distance_to keeps the looks' features in the LookDistance, not in the (shared) network."""
    fresh = perceptual.PerceptualLoss(vgg_weights)
    looks, images = _images(3, 32, 8), _images(2, 32, 9)
    one = fresh.distance_to(looks[:1])
    many = fresh.distance_to(looks)
    assert fresh._target_feats is None                       # the network holds no target
    with torch.no_grad():
        torch.testing.assert_close(one(images), fresh.distance(images, looks[:1].expand_as(images)))
        # With several looks, image j is compared with look index[j].
        got = many(images, torch.tensor([2, 0]))
        expected = torch.stack([fresh.distance(images[:1], looks[2:3])[0], fresh.distance(images[1:], looks[:1])[0]])
        torch.testing.assert_close(got, expected)
        # features / compare split distance in two.
        torch.testing.assert_close(fresh.compare(fresh.features(images), fresh.features(looks[:2])),
                                   fresh.distance(images, looks[:2]))
    assert one.num_targets == 1 and many.num_targets == 3
    with pytest.raises(ValueError):
        many(images)                                          # 2 images for 3 looks: the index is needed
    x = images.clone().requires_grad_(True)
    one(x).sum().backward()
    assert x.grad.abs().sum() > 0


def test_building_the_loss_imports_neither_lpips_nor_torchvision(vgg_weights):
    """The lpips import costs seconds of every command's start; only its weights file is read."""
    import os
    import subprocess
    import sys
    code = ('import sys, perceptual; perceptual.PerceptualLoss(sys.argv[1]); '
            'print(sorted(m for m in ("lpips", "torchvision") if m in sys.modules))')
    out = subprocess.run([sys.executable, '-c', code, vgg_weights], capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.abspath(perceptual.__file__)), timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == '[]'


def test_missing_lpips_package_is_one_clear_error(vgg_weights, monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, 'find_spec', lambda name, *a: None if name == 'lpips' else real(name, *a))
    with pytest.raises(UserError, match='lpips package is not installed'):
        perceptual.PerceptualLoss(vgg_weights)


def test_bf16_distances_same_in_channels_last(loss, monkeypatch):
    # On an AMX CPU the VGG input is NHWC under bf16 autocast (torch_utils.misc.conv_layout); forcing that
    # path anywhere gives the distances of the NCHW path.
    from torch_utils import misc
    a, b = _images(1, 64, 0), _images(1, 64, 1)  # one pair: bf16 VGG is slow without native bf16 kernels
    results = {}
    for amx in (False, True):
        monkeypatch.setattr(misc, 'cpu_has_amx', lambda amx=amx: amx)
        with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
            results[amx] = loss.distance(a, b).float()
    torch.testing.assert_close(results[True], results[False], atol=0, rtol=2e-2)
