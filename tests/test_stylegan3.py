"""StyleGAN3 generator (networks/stylegan3.py) and the filtered leaky ReLU op.

* Parity: the ``sg3-t-tiny`` / ``sg3-r-tiny`` fixtures (pickles written by the official StyleGAN3
  code with random weights, and what that code computed from them), loaded through
  ``legacy.load_network_pkl``: mapping, synthesis, the full generator, an image after setting the
  input transform, and the gradient with respect to ``ws``.
* ``filtered_lrelu`` against the literal composition of its steps (``upfirdn2d`` and
  ``bias_act``), and its float64 gradients.
* The input-transform helpers, and the structure and API of randomly initialized networks.
"""

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # project root, when run from elsewhere

from networks import stylegan3 as sg3  # noqa: E402
from torch_utils.ops.bias_act import bias_act  # noqa: E402
from torch_utils.ops.filtered_lrelu import filtered_lrelu  # noqa: E402
from torch_utils.ops.upfirdn2d import upfirdn2d  # noqa: E402

DATA = Path(__file__).parent / 'data'
FIXTURES = ['sg3-t-tiny', 'sg3-r-tiny']

pytestmark = pytest.mark.usefixtures('one_thread')


# ----------------------------------------------------------------------------
# Parity with the reference, through the safe loader.

@pytest.fixture(scope='module')
def fixture_nets():
    """``name -> (G_ema, expected arrays, json)``; skips when legacy cannot read StyleGAN3 pickles yet."""
    import legacy
    loaded = {}
    for name in FIXTURES:
        try:
            with open(DATA / f'{name}.pkl', 'rb') as f:
                data = legacy.load_network_pkl(f)
        except legacy.NetworkLoadError as exc:
            pytest.skip(f'legacy.load_network_pkl cannot read StyleGAN3 pickles yet ({exc})')
        G = data['G_ema']
        assert isinstance(G, sg3.Generator), f'{name}: G_ema loaded as {type(G).__module__}.{type(G).__name__}'
        expected = dict(np.load(DATA / f'{name}-expected.npz'))
        meta = json.loads((DATA / f'{name}.json').read_text())
        loaded[name] = (G, expected, meta)
    return loaded


def _max_diff(actual: torch.Tensor, expected: np.ndarray) -> float:
    assert tuple(actual.shape) == expected.shape
    return float((actual.detach().double() - torch.from_numpy(expected).double()).abs().max())


@pytest.mark.parametrize('name', FIXTURES)
def test_fixture_structure(fixture_nets, name):
    G, _, meta = fixture_nets[name]
    assert G.num_ws == G.synthesis.num_ws == G.mapping.num_ws == meta['num_ws']
    assert G.synthesis.layer_names == meta['synthesis_arguments']['layer_names']
    assert G.config == ('R' if name == 'sg3-r-tiny' else 'T')
    assert G.synthesis.noise_layers() == []
    assert G.mapping.fc0.weight.shape == (G.w_dim, G.z_dim)
    stored = torch.tensor(meta['stored_input_transform'])
    assert torch.allclose(G.synthesis.input.transform, stored, atol=1e-7)
    # Our filter design reproduces the reference's stored filters (constructor from the JSON arguments).
    fresh = sg3.Generator(**meta['G_kwargs']).state_dict()
    loaded = G.state_dict()
    assert fresh.keys() == loaded.keys()
    for key, value in loaded.items():
        assert fresh[key].shape == value.shape, key
        if key.endswith('_filter'):
            assert torch.allclose(fresh[key], value, atol=1e-7, rtol=0), key


@pytest.mark.parametrize('name', FIXTURES)
def test_fixture_mapping(fixture_nets, name):
    G, e, _ = fixture_nets[name]
    z, c = torch.from_numpy(e['z']), torch.from_numpy(e['c'])
    with torch.no_grad():
        assert _max_diff(G.mapping(z, c), e['ws']) < 1e-4
        assert _max_diff(G.mapping(z, c, truncation_psi=0.7), e['ws_psi07']) < 1e-4
        assert _max_diff(G.mapping(z, c, truncation_psi=0.5, truncation_cutoff=2), e['ws_psi05_cutoff2']) < 1e-4


@pytest.mark.parametrize('name', FIXTURES)
def test_fixture_synthesis(fixture_nets, name):
    G, e, _ = fixture_nets[name]
    ws = torch.from_numpy(e['ws'])
    with torch.no_grad():
        img = G.synthesis(ws, force_fp32=True)
        assert _max_diff(img, e['img']) < 1e-4
        # noise_mode is accepted and changes nothing; the project's core passes noise=[].
        assert torch.equal(G.synthesis(ws, noise_mode='random', force_fp32=True), img)
        assert torch.equal(G.synthesis(ws, noise=[], noise_mode='none'), img)
        z, c = torch.from_numpy(e['z']), torch.from_numpy(e['c'])
        assert _max_diff(G(z, c, truncation_psi=0.7, force_fp32=True), e['img_G_psi07']) < 1e-4


@pytest.mark.parametrize('name', FIXTURES)
def test_fixture_input_transform(fixture_nets, name):
    G, e, meta = fixture_nets[name]
    ws = torch.from_numpy(e['ws'])
    spec = meta['transform_for_img_transformed']
    stored = G.synthesis.input.transform.clone()
    try:
        with torch.no_grad():
            G.synthesis.input.transform.copy_(torch.from_numpy(e['input_transform']))
            assert _max_diff(G.synthesis(ws, force_fp32=True), e['img_transformed']) < 1e-4
            # The helper builds the same matrix from the angle and translation.
            G.synthesis.input.set_transform(spec['angle_degrees'], *spec['translate'])
            assert _max_diff(G.synthesis.input.transform, e['input_transform']) < 1e-6
            assert _max_diff(G.synthesis(ws, force_fp32=True), e['img_transformed']) < 1e-4
    finally:
        with torch.no_grad():
            G.synthesis.input.transform.copy_(stored)


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()))


def test_fixture_transform_directions(fixture_nets):
    """The documented geometry of make_input_transform: +tx right, +ty down, +angle counterclockwise."""
    G, e, _ = fixture_nets['sg3-t-tiny']
    ws = torch.from_numpy(e['ws'])
    stored = G.synthesis.input.transform.clone()
    try:
        with torch.no_grad():
            G.synthesis.input.set_transform()
            base = G.synthesis(ws)
            G.synthesis.input.set_transform(0, 0.25, 0)  # 8 of 32 pixels to the right
            moved = G.synthesis(ws)
            assert _corr(moved[..., 4:28, 12:28], base[..., 4:28, 4:20]) > 0.999
            assert _corr(moved[..., 4:28, 4:20], base[..., 4:28, 12:28]) < 0.9  # not to the left
            G.synthesis.input.set_transform(0, 0, 0.25)  # 8 pixels down
            moved = G.synthesis(ws)
            assert _corr(moved[..., 12:28, 4:28], base[..., 4:20, 4:28]) > 0.999
            assert _corr(moved[..., 4:20, 4:28], base[..., 12:28, 4:28]) < 0.9
    finally:
        with torch.no_grad():
            G.synthesis.input.transform.copy_(stored)
    G, e, _ = fixture_nets['sg3-r-tiny']
    ws = torch.from_numpy(e['ws'])
    stored = G.synthesis.input.transform.clone()
    try:
        with torch.no_grad():
            G.synthesis.input.set_transform()
            base = G.synthesis(ws)
            G.synthesis.input.set_transform(90)
            turned = G.synthesis(ws)
        ccw, cw = _corr(turned, torch.rot90(base, 1, dims=(2, 3))), _corr(turned, torch.rot90(base, -1, dims=(2, 3)))
        assert ccw > 0.999 and ccw > cw + 0.05
    finally:
        with torch.no_grad():
            G.synthesis.input.transform.copy_(stored)


@pytest.mark.parametrize('name', FIXTURES)
def test_fixture_gradient(fixture_nets, name):
    G, e, _ = fixture_nets[name]
    ws = torch.from_numpy(e['ws']).clone().requires_grad_(True)
    (G.synthesis(ws, force_fp32=True) * torch.from_numpy(e['grad_probe'])).sum().backward()
    # Leaky-ReLU kinks make this gradient jump under rounding changes (see the fixtures' README).
    assert _max_diff(ws.grad, e['grad_ws']) < 1e-2


# ----------------------------------------------------------------------------
# filtered_lrelu against the literal composition of its steps.

def _filtered_lrelu_composed(x, fu=None, fd=None, b=None, up=1, down=1, padding=0, gain=math.sqrt(2), slope=0.2,
                             clamp=None, flip_filter=False):
    """Bias; zero-stuff, pad and filter with fu; lrelu, gain, clamp; filter with fd and decimate."""
    x = bias_act(x, b)
    x = upfirdn2d(x, fu, up=up, padding=padding, gain=up ** 2, flip_filter=flip_filter)
    x = bias_act(x, act='lrelu', alpha=slope, gain=gain, clamp=clamp)
    return upfirdn2d(x, fd, down=down, flip_filter=flip_filter)


def _filter(kind, factor, gen):
    if kind is None:
        return None
    if kind == 'sep':
        return torch.randn([4 * factor if factor > 1 else 3], generator=gen, dtype=torch.float64)
    return torch.randn([5, 4], generator=gen, dtype=torch.float64)


@pytest.mark.parametrize('up,down', [(1, 1), (2, 1), (1, 2), (2, 2), (3, 2), (4, 4)])
@pytest.mark.parametrize('fu_kind,fd_kind', [('sep', 'sep'), ('sep', '2d'), ('2d', 'sep'), (None, 'sep'),
                                             ('sep', None), (None, None)])
@pytest.mark.parametrize('padding', [[3, 2, 4, 1], [-1, 2, 0, -2], 5])
@pytest.mark.parametrize('flip_filter', [False, True])
def test_filtered_lrelu_matches_composition(up, down, fu_kind, fd_kind, padding, flip_filter):
    gen = torch.Generator().manual_seed(up * 100 + down * 10 + (padding if isinstance(padding, int) else padding[0]))
    x = torch.randn([2, 3, 14, 13], generator=gen, dtype=torch.float64)
    b = torch.randn([3], generator=gen, dtype=torch.float64)
    fu, fd = _filter(fu_kind, up, gen), _filter(fd_kind, down, gen)
    kwargs = dict(fu=fu, fd=fd, b=b, up=up, down=down, padding=padding, gain=1.3, slope=0.25, clamp=1.5,
                  flip_filter=flip_filter)
    expected = _filtered_lrelu_composed(x, **kwargs)
    actual = filtered_lrelu(x, **kwargs)
    assert actual.shape == expected.shape and actual.dtype == torch.float64
    assert torch.allclose(actual, expected, atol=1e-12, rtol=0)


def test_filtered_lrelu_stylegan3_layer_shapes():
    """A typical config-T layer (up 2, down 2, 12-tap Kaiser filters) and a config-R one (radial down filter)."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn([2, 4, 38, 38], generator=gen)
    fu = sg3.design_lowpass_filter(12, cutoff=4.0, width=8.0, fs=64)
    for fd in (sg3.design_lowpass_filter(12, cutoff=4.76, width=22.5, fs=64),
               sg3.design_lowpass_filter(12, cutoff=4.76, width=22.5, fs=64, radial=True)):
        kwargs = dict(fu=fu, fd=fd, b=torch.randn([4], generator=gen), up=2, down=2, padding=[9, 8, 9, 8], clamp=256)
        y = filtered_lrelu(x, **kwargs)
        assert y.shape == (2, 4, 36, 36) and y.dtype == torch.float32
        assert torch.allclose(y, _filtered_lrelu_composed(x, **kwargs), atol=1e-5, rtol=0)


def test_filtered_lrelu_defaults_and_dtypes():
    x = torch.randn([1, 2, 5, 5], dtype=torch.float64)
    # No filters, no resampling: a plain leaky ReLU with gain sqrt(2).
    expected = torch.nn.functional.leaky_relu(x, 0.2) * math.sqrt(2)
    assert torch.allclose(filtered_lrelu(x), expected, atol=1e-14)
    # slope 1 and gain 1 make it linear (the ToRGB layer).
    assert torch.allclose(filtered_lrelu(x, gain=1, slope=1), x, atol=1e-14)
    y = filtered_lrelu(x.half(), fu=torch.ones([2]) / 2, up=2, padding=[0, 1, 0, 1])
    assert y.dtype == torch.float16 and y.shape == (1, 2, 10, 10)


def test_filtered_lrelu_errors():
    x = torch.randn([1, 2, 5, 5])
    with pytest.raises(ValueError):
        filtered_lrelu(x, b=torch.zeros([3]))
    with pytest.raises(ValueError):
        filtered_lrelu(x, up=0)
    with pytest.raises(ValueError):
        filtered_lrelu(x[0])
    with pytest.raises(ValueError):
        filtered_lrelu(x, fd=torch.ones([2, 2, 2]))
    with pytest.raises(ValueError):
        filtered_lrelu(x, padding=-3)


@pytest.mark.parametrize('up,down,fu_kind,fd_kind', [(2, 2, 'sep', 'sep'), (2, 2, 'sep', '2d'), (1, 2, None, 'sep'),
                                                     (2, 1, '2d', None), (3, 1, 'sep', 'sep')])
def test_filtered_lrelu_gradcheck(up, down, fu_kind, fd_kind):
    gen = torch.Generator().manual_seed(7)
    x = torch.randn([1, 2, 6, 7], generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn([2], generator=gen, dtype=torch.float64, requires_grad=True)
    fu, fd = _filter(fu_kind, up, gen), _filter(fd_kind, down, gen)

    def fn(x_, b_):
        return filtered_lrelu(x_, fu=fu, fd=fd, b=b_, up=up, down=down, padding=[6, 5, 5, 6], gain=1.3,
                              slope=0.3, clamp=50.0)
    assert torch.autograd.gradcheck(fn, (x, b), eps=1e-6, atol=1e-5)
    if (up, down, fu_kind, fd_kind) == (2, 2, 'sep', 'sep'):  # second order once (slow)
        assert torch.autograd.gradgradcheck(fn, (x, b), eps=1e-6, atol=1e-5)


# ----------------------------------------------------------------------------
# Input transform helpers.

def _gen_images_make_transform(translate, angle):
    """The forward matrix of gen_images.py (rotation by ``angle`` degrees, then ``translate``)."""
    a = np.radians(angle)
    return np.array([[np.cos(a), np.sin(a), translate[0]], [-np.sin(a), np.cos(a), translate[1]], [0, 0, 1]])


@pytest.mark.parametrize('angle', [-170.0, -45.0, -3.5, 0.0, 10.0, 30.0, 90.0, 179.0])
@pytest.mark.parametrize('translate', [(0.0, 0.0), (0.1, -0.05), (-0.3, 0.25)])
def test_make_input_transform_round_trip(angle, translate):
    m = sg3.make_input_transform(angle, *translate)
    assert m.shape == (3, 3) and m.dtype == np.float64
    assert np.allclose(m @ _gen_images_make_transform(translate, angle), np.eye(3), atol=1e-12)
    back = sg3.input_transform_params(m)
    assert np.allclose(back, (angle, *translate), atol=1e-9)
    back32 = sg3.input_transform_params(torch.from_numpy(m).float())
    assert np.allclose(back32, (angle, *translate), atol=1e-4)


def test_make_input_transform_fixture_value():
    """gen_images.py --rotate=10 --translate=0.1,-0.05, as stored with the fixtures."""
    expected = np.load(DATA / 'sg3-t-tiny-expected.npz')['input_transform']
    assert np.allclose(sg3.make_input_transform(10, 0.1, -0.05), expected, atol=1e-6)
    assert sg3.make_input_transform().tolist() == np.eye(3).tolist()


def test_set_transform_writes_buffer():
    G = _tiny_G('T')
    G.synthesis.input.set_transform(30, 0.2, -0.1)
    t = G.synthesis.input.transform
    assert t.dtype == torch.float32
    assert np.allclose(sg3.input_transform_params(t), (30, 0.2, -0.1), atol=1e-5)
    G.synthesis.input.set_transform()
    assert torch.equal(t, torch.eye(3))


# ----------------------------------------------------------------------------
# Random networks: structure and API.

def _tiny_G(config, seed=0, res=16, **kwargs):
    torch.manual_seed(seed)
    extra = dict(conv_kernel=1, use_radial_filters=True) if config == 'R' else {}
    G = sg3.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=res, img_channels=3,
                      mapping_kwargs=dict(num_layers=2), channel_base=128, channel_max=8, num_layers=4,
                      num_critical=2, margin_size=2, **extra, **kwargs)
    return G.eval()


@pytest.mark.parametrize('config', ['T', 'R'])
def test_random_generator_api(config):
    G = _tiny_G(config)
    assert G.config == config
    assert G.num_ws == 6 and len(G.synthesis.layer_names) == 5
    assert G.synthesis.layers[-1].is_torgb
    assert all(layer.conv_kernel == (1 if config == 'R' else 3) for layer in G.synthesis.layers[:-1])
    z = torch.randn([2, 8])
    with torch.no_grad():
        img = G(z, None)
        assert img.shape == (2, 3, 16, 16) and img.dtype == torch.float32 and torch.isfinite(img).all()
        ws = G.mapping(z, None)
        assert torch.equal(G.synthesis(ws, fused_modconv=True), img)  # StyleGAN2 option: accepted, ignored
    with pytest.raises(ValueError):
        G.synthesis(ws, noise=[torch.zeros([1, 1, 16, 16])])
    with pytest.raises(ValueError):
        G.synthesis(ws, noise_mode='bogus')
    with pytest.raises(TypeError):
        G.synthesis(ws, bogus=1)
    with pytest.raises(AssertionError):
        G.synthesis(ws[:, 1:])


def test_random_generator_batch_independence_and_grad():
    G = _tiny_G('T')
    ws = torch.randn([3, G.num_ws, G.w_dim])
    with torch.no_grad():
        together = G.synthesis(ws)
        alone = torch.cat([G.synthesis(ws[i:i + 1]) for i in range(3)])
    assert torch.allclose(together, alone, atol=1e-5)
    with torch.no_grad():  # initialized to zero: the input's rotation and translation ignore w until trained
        G.synthesis.input.affine.weight.normal_()
    w = ws[:1].clone().requires_grad_(True)
    G.synthesis(w).square().mean().backward()
    assert w.grad is not None and torch.isfinite(w.grad).all()
    assert (w.grad.abs().sum(dim=2) > 0).all()  # every w, the input layer's included, moves the image


def test_update_emas():
    G = _tiny_G('R')
    layer = G.synthesis.layers[0]
    before_mag, before_avg = layer.magnitude_ema.clone(), G.mapping.w_avg.clone()
    with torch.no_grad():
        G(torch.randn([2, 8]), None)
    assert torch.equal(layer.magnitude_ema, before_mag) and torch.equal(G.mapping.w_avg, before_avg)
    with torch.no_grad():
        G(torch.randn([2, 8]), None, update_emas=True)
    assert not torch.equal(layer.magnitude_ema, before_mag) and not torch.equal(G.mapping.w_avg, before_avg)


def test_fp16_flags_stay_float32_on_cpu():
    G = _tiny_G('T', res=32, num_fp16_res=1, conv_clamp=256)
    flags = [layer.use_fp16 for layer in G.synthesis.layers]
    assert flags == [layer.out_sampling_rate == 32 for layer in G.synthesis.layers]  # the top resolution
    assert any(flags) and not all(flags)
    ws = torch.randn([1, G.num_ws, G.w_dim])
    with torch.no_grad():
        assert torch.equal(G.synthesis(ws), G.synthesis(ws, force_fp32=True))


def test_official_names_and_frozen_mapping():
    G = _tiny_G('T')
    keys = set(G.state_dict())
    for key in ['synthesis.input.transform', 'synthesis.input.freqs', 'synthesis.input.phases',
                'synthesis.input.weight', 'synthesis.input.affine.weight', 'mapping.w_avg', 'mapping.fc1.bias']:
        assert key in keys
    first = G.synthesis.layer_names[0]
    assert {f'synthesis.{first}.{n}' for n in ('magnitude_ema', 'up_filter', 'down_filter', 'weight', 'bias',
                                                'affine.weight', 'affine.bias')} <= keys
    assert not any(k.startswith(f'synthesis.{G.synthesis.layer_names[-1]}.') and k.endswith('_filter') for k in keys)
    # Freeze-M / Freeze-E keep the state-dict names and only stop training.
    mapping = sg3.MappingNetwork(z_dim=8, c_dim=3, w_dim=8, num_ws=6, num_layers=2, freeze_layers=1,
                                 freeze_embed=True)
    names = {n for n, _ in mapping.named_parameters()}
    assert names == {'fc1.weight', 'fc1.bias'}
    assert set(mapping.state_dict()) == {'embed.weight', 'embed.bias', 'fc0.weight', 'fc0.bias', 'fc1.weight',
                                         'fc1.bias', 'w_avg'}
    assert mapping(torch.randn([2, 8]), torch.eye(3)[:2]).shape == (2, 6, 8)
