"""Behavioural tests for our StyleGAN2 generator and discriminator (random weights, CPU, tiny sizes).

Agreement with the reference numbers is tested with the fixtures elsewhere; these tests cover the
structure (official names, ``num_ws``), shapes, truncation, noise handling, the two modulated
convolution paths, gradients, and the discriminator's minibatch standard deviation.
"""

import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # project root, when run from elsewhere

import networks  # noqa: E402
from networks import generator as generator_mod  # noqa: E402
from networks import Discriminator, Generator, MinibatchStdLayer  # noqa: E402

ARCHITECTURES = ['orig', 'skip', 'resnet']
RES = 16


# These networks are tiny: thread start-up and contention cost far more than they save.
pytestmark = pytest.mark.usefixtures('one_thread')


def make_G(architecture='skip', c_dim=0, res=RES, seed=0):
    torch.manual_seed(seed)
    G = Generator(z_dim=16, c_dim=c_dim, w_dim=16, img_resolution=res, img_channels=3,
                  mapping_kwargs=dict(num_layers=2),
                  synthesis_kwargs=dict(channel_base=128, channel_max=16, architecture=architecture))
    return G.eval()


def make_D(architecture='resnet', c_dim=0, group_size=4, seed=0):
    torch.manual_seed(seed)
    D = Discriminator(c_dim=c_dim, img_resolution=RES, img_channels=3, architecture=architecture,
                      channel_base=128, channel_max=16, epilogue_kwargs=dict(mbstd_group_size=group_size))
    return D.eval()


def randomize_noise_strength(G, value=1.0):
    with torch.no_grad():
        for _, layer in G.synthesis.noise_layers():
            layer.noise_strength.fill_(value)


def random_ws(G, n=2, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn([n, G.num_ws, G.w_dim], generator=gen)


def one_hot(labels, c_dim):
    return torch.nn.functional.one_hot(torch.tensor(labels), c_dim).float()


# ----------------------------------------------------------------------------
# Generator structure and shapes.

@pytest.mark.parametrize('architecture', ARCHITECTURES)
def test_generator_output(architecture):
    G = make_G(architecture)
    expected_num_ws = 2 * int(math.log2(RES)) - 2  # one per conv layer, plus the last ToRGB
    assert G.num_ws == G.synthesis.num_ws == G.mapping.num_ws == expected_num_ws == 6
    blocks = G.synthesis.blocks
    assert [b.resolution for b in blocks] == [4, 8, 16]
    assert G.num_ws == sum(b.num_conv for b in blocks) + blocks[-1].num_torgb
    assert [b.num_conv for b in blocks] == [1, 2, 2]
    assert [b.num_torgb for b in blocks] == ([1, 1, 1] if architecture == 'skip' else [0, 0, 1])

    z = torch.randn([3, 16])
    with torch.no_grad():
        img = G(z, None, noise_mode='const')
    assert img.shape == (3, 3, RES, RES)
    assert img.dtype == torch.float32
    assert torch.isfinite(img).all()
    assert img.std() > 0


def test_num_ws_other_resolutions():
    for res, num_ws in [(4, 2), (8, 4), (32, 8)]:
        G = make_G('skip', res=res)
        assert G.num_ws == num_ws
        with torch.no_grad():
            assert G(torch.randn([1, 16]), None).shape == (1, 3, res, res)


def test_official_state_dict_names():
    names = set(make_G('skip').state_dict())
    for name in ['mapping.fc0.weight', 'mapping.fc0.bias', 'mapping.fc1.weight', 'mapping.w_avg',
                 'synthesis.b4.const', 'synthesis.b4.resample_filter', 'synthesis.b4.conv1.affine.weight',
                 'synthesis.b4.conv1.affine.bias', 'synthesis.b4.conv1.weight', 'synthesis.b4.conv1.noise_const',
                 'synthesis.b4.torgb.weight', 'synthesis.b8.conv0.noise_const', 'synthesis.b8.conv0.noise_strength',
                 'synthesis.b8.conv0.resample_filter', 'synthesis.b8.conv1.bias',
                 'synthesis.b16.torgb.weight', 'synthesis.b16.torgb.bias', 'synthesis.b16.torgb.affine.weight']:
        assert name in names, name
    assert 'mapping.embed.weight' not in names
    assert not any('skip' in n for n in names)

    cond = set(make_G('orig', c_dim=3).state_dict())
    assert {'mapping.embed.weight', 'mapping.embed.bias', 'synthesis.b16.torgb.weight'} <= cond
    assert 'synthesis.b8.torgb.weight' not in cond  # orig: ToRGB only at the last block

    resnet = set(make_G('resnet').state_dict())
    assert {'synthesis.b8.skip.weight', 'synthesis.b16.skip.weight'} <= resnet
    assert 'synthesis.b4.skip.weight' not in resnet

    G = make_G('skip')
    assert G.synthesis.b8.conv0.noise_const.shape == (8, 8)
    assert G.synthesis.b8.conv0.noise_strength.shape == ()
    assert G.synthesis.b4.const.shape == (16, 4, 4)
    assert G.mapping.w_avg.shape == (16,)
    buffers = dict(G.named_buffers())
    assert 'mapping.w_avg' in buffers and 'synthesis.b8.conv0.noise_const' in buffers
    params = dict(G.named_parameters())
    assert 'synthesis.b8.conv0.noise_strength' in params and 'synthesis.b4.const' in params


def test_noise_layers_order():
    G = make_G('skip')
    names = [name for name, _ in G.synthesis.noise_layers()]
    assert names == ['b4.conv1', 'b8.conv0', 'b8.conv1', 'b16.conv0', 'b16.conv1']
    for name, layer in G.synthesis.noise_layers():
        assert layer is G.synthesis.get_submodule(name)


def test_conditional_generator():
    G = make_G('skip', c_dim=3)
    z = torch.randn([1, 16]).repeat(3, 1)
    c = one_hot([0, 1, 2], 3)
    with torch.no_grad():
        img = G(z, c, noise_mode='const')
        ws = G.mapping(z, c)
    assert img.shape == (3, 3, RES, RES)
    assert torch.isfinite(img).all()
    assert ws.shape == (3, G.num_ws, 16)
    assert not torch.allclose(img[0], img[1]) and not torch.allclose(img[1], img[2])  # the label matters


# ----------------------------------------------------------------------------
# Mapping and truncation.

def test_mapping_broadcasts_w():
    G = make_G()
    with torch.no_grad():
        ws = G.mapping(torch.randn([2, 16]), None)
    assert ws.shape == (2, G.num_ws, 16)
    assert torch.equal(ws, ws[:, :1].expand_as(ws))


@pytest.mark.parametrize('c_dim', [0, 3])
def test_truncation(c_dim):
    G = make_G('skip', c_dim=c_dim)
    with torch.no_grad():
        G.mapping.w_avg.copy_(torch.randn([16]))
    z = torch.randn([2, 16])
    c = one_hot([0, 2], 3) if c_dim else None
    with torch.no_grad():
        ws = G.mapping(z, c)
        assert torch.equal(G.mapping(z, c, truncation_psi=1), ws)
        ws0 = G.mapping(z, c, truncation_psi=0)
        torch.testing.assert_close(ws0, G.mapping.w_avg.expand_as(ws0), atol=1e-6, rtol=0)
        ws_half = G.mapping(z, c, truncation_psi=0.5)
        torch.testing.assert_close(ws_half, G.mapping.w_avg + 0.5 * (ws - G.mapping.w_avg), atol=1e-5, rtol=0)
        cut = G.mapping(z, c, truncation_psi=0, truncation_cutoff=2)
        torch.testing.assert_close(cut[:, :2], G.mapping.w_avg.expand_as(cut[:, :2]), atol=1e-6, rtol=0)
        assert torch.equal(cut[:, 2:], ws[:, 2:])

        img = G(z, c, noise_mode='const')
        assert torch.equal(G(z, c, truncation_psi=1, noise_mode='const'), img)
        assert torch.equal(G.synthesis(ws, noise_mode='const'), img)
        img0 = G(z, c, truncation_psi=0, noise_mode='const')
        torch.testing.assert_close(img0[0], img0[1], atol=1e-5, rtol=0)  # everything collapses onto w_avg


# ----------------------------------------------------------------------------
# Modulated convolution paths.

@pytest.mark.parametrize('architecture', ARCHITECTURES)
def test_fused_modconv_equivalent(architecture):
    G = make_G(architecture)
    randomize_noise_strength(G, 0.5)  # exercise the noise term on both paths too
    ws = random_ws(G, n=3)
    with torch.no_grad():
        fused = G.synthesis(ws, noise_mode='const', fused_modconv=True)
        unfused = G.synthesis(ws, noise_mode='const', fused_modconv=False)
        default = G.synthesis(ws, noise_mode='const')
    torch.testing.assert_close(fused, unfused, atol=1e-5, rtol=0)
    torch.testing.assert_close(default, fused, atol=1e-5, rtol=0)


def _fused_flags_per_layer(G, ws, monkeypatch, **kwargs):
    """The ``fused_modconv`` each modulated convolution got, in call order."""
    seen = []
    original = generator_mod.modulated_conv2d

    def spy(*args, **kw):
        seen.append(kw['fused_modconv'])
        return original(*args, **kw)
    monkeypatch.setattr(generator_mod, 'modulated_conv2d', spy)
    G.synthesis(ws, noise_mode='const', **kwargs)
    monkeypatch.setattr(generator_mod, 'modulated_conv2d', original)
    return seen


def test_for_backward_unfuses_exactly_the_wide_blocks(monkeypatch):
    G = make_G()
    ws = random_ws(G, n=1)
    widths = []
    for block in G.synthesis.blocks:
        widths += [block.conv1.out_channels] * (block.num_conv + block.num_torgb)
    assert len(set(widths)) > 1, 'the test network needs blocks of different widths'
    cut = sorted(set(widths))[1]
    monkeypatch.setattr(generator_mod, 'UNFUSED_MIN_CHANNELS', cut)
    flags = _fused_flags_per_layer(G, ws, monkeypatch, fused_modconv='for_backward')
    assert flags == [w < cut for w in widths]
    assert True in flags and False in flags


@pytest.mark.parametrize('architecture', ARCHITECTURES)
def test_for_backward_same_image_and_gradient_as_fused(architecture, monkeypatch):
    G = make_G(architecture).requires_grad_(False)
    randomize_noise_strength(G, 0.5)
    widths = sorted({b.conv1.out_channels for b in G.synthesis.blocks})
    monkeypatch.setattr(generator_mod, 'UNFUSED_MIN_CHANNELS', widths[1])  # some blocks each way
    weights = torch.randn([2, 3, RES, RES], generator=torch.Generator().manual_seed(3))
    results = {}
    for mode in (True, 'for_backward'):
        ws = random_ws(G).requires_grad_(True)
        img = G.synthesis(ws, noise_mode='const', fused_modconv=mode)
        (img * weights).sum().backward()
        results[mode] = img.detach(), ws.grad
    torch.testing.assert_close(results['for_backward'][0], results[True][0], atol=1e-5, rtol=0)
    torch.testing.assert_close(results['for_backward'][1], results[True][1], atol=1e-4, rtol=1e-4)


def test_bf16_synthesis_same_image_and_gradient_in_channels_last(monkeypatch):
    # Under CPU bf16 autocast on an AMX CPU the convolutions get NHWC inputs (torch_utils.misc.conv_layout):
    # forcing that path on any CPU must give the image and latent gradient of the NCHW path, to bf16
    # rounding. On a CPU without native bf16 kernels (AVX2) the layouts take different reference
    # kernels that round differently (their gradients differ by about 2.6% here, against 7.5% between
    # either and fp32), so each is held to the fp32 result, and their difference to a fraction of
    # bf16's own error.
    from torch_utils import misc
    G = make_G('skip').requires_grad_(False)
    randomize_noise_strength(G, 0.5)
    weights = torch.randn([2, 3, RES, RES], generator=torch.Generator().manual_seed(3))
    results = {}
    for layout in ('fp32', 'nchw', 'nhwc'):
        monkeypatch.setattr(misc, 'cpu_has_amx', lambda amx=(layout == 'nhwc'): amx)
        ws = random_ws(G).requires_grad_(True)
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=layout != 'fp32'):
            img = G.synthesis(ws, noise_mode='const', force_fp32=True, fused_modconv='for_backward')
        (img.float() * weights).sum().backward()
        results[layout] = img.detach().float(), ws.grad
    ref_img, ref_grad = results['fp32']
    relative = lambda a, b: float((a - b).norm() / b.norm())  # noqa: E731
    for layout in ('nchw', 'nhwc'):
        img, grad = results[layout]
        torch.testing.assert_close(img, ref_img, atol=2e-2 * float(ref_img.abs().max()), rtol=0)
        assert relative(grad, ref_grad) < 0.15
    bf16_error = relative(results['nchw'][1], ref_grad)
    assert relative(results['nhwc'][1], results['nchw'][1]) < 0.5 * bf16_error + 1e-6


# ----------------------------------------------------------------------------
# Noise.

def test_noise_const_deterministic_and_random_varies():
    G = make_G('skip')
    ws = random_ws(G)
    with torch.no_grad():
        # Freshly built: noise_strength is 0, so every noise mode gives the same image.
        base = G.synthesis(ws, noise_mode='none')
        assert torch.equal(G.synthesis(ws, noise_mode='random'), base)

        randomize_noise_strength(G, 1.0)
        const1 = G.synthesis(ws, noise_mode='const')
        const2 = G.synthesis(ws, noise_mode='const')
        assert torch.equal(const1, const2)
        rand1 = G.synthesis(ws, noise_mode='random')
        rand2 = G.synthesis(ws, noise_mode='random')
        assert not torch.allclose(rand1, rand2)
        assert not torch.allclose(rand1, const1)
        none = G.synthesis(ws, noise_mode='none')
        assert torch.equal(none, base)
        assert not torch.allclose(none, const1)
        torch.manual_seed(123)
        seeded1 = G.synthesis(ws, noise_mode='random')
        torch.manual_seed(123)
        seeded2 = G.synthesis(ws, noise_mode='random')
        assert torch.equal(seeded1, seeded2)


def test_bad_noise_mode():
    G = make_G()
    with pytest.raises(ValueError, match='noise_mode'):
        G.synthesis(random_ws(G), noise_mode='bogus')


@pytest.mark.parametrize('architecture', ARCHITECTURES)
def test_explicit_noise_reproduces_const(architecture):
    G = make_G(architecture)
    randomize_noise_strength(G, 1.0)
    ws = random_ws(G)
    layers = G.synthesis.noise_layers()
    noise = [layer.noise_const.clone().reshape(1, 1, layer.resolution, layer.resolution) for _, layer in layers]
    assert [n.shape[-1] for n in noise] == [4, 8, 8, 16, 16]
    with torch.no_grad():
        const = G.synthesis(ws, noise_mode='const')
        explicit = G.synthesis(ws, noise=noise)  # overrides the default noise_mode='random'
        explicit_none_mode = G.synthesis(ws, noise=noise, noise_mode='none')
    torch.testing.assert_close(explicit, const, atol=1e-6, rtol=0)
    torch.testing.assert_close(explicit_none_mode, const, atol=1e-6, rtol=0)

    # Different maps change the image, and zero maps equal noise_mode='none'.
    zeros = [torch.zeros_like(n) for n in noise]
    with torch.no_grad():
        torch.testing.assert_close(G.synthesis(ws, noise=zeros), G.synthesis(ws, noise_mode='none'),
                                   atol=1e-6, rtol=0)
        assert not torch.allclose(G.synthesis(ws, noise=[n * 2 for n in noise]), const)


def test_gradients_flow_to_noise_maps():
    G = make_G('skip')
    randomize_noise_strength(G, 1.0)
    noise = [torch.randn([1, 1, layer.resolution, layer.resolution], requires_grad=True)
             for _, layer in G.synthesis.noise_layers()]
    G.synthesis(random_ws(G), noise=noise).square().sum().backward()
    for n in noise:
        assert n.grad is not None and n.grad.abs().sum() > 0


# ----------------------------------------------------------------------------
# Gradients.

@pytest.mark.parametrize('architecture', ARCHITECTURES)
def test_gradients_flow_to_ws(architecture):
    G = make_G(architecture).requires_grad_(False)
    ws = random_ws(G).requires_grad_(True)
    img = G.synthesis(ws, noise_mode='const')
    (img * torch.randn_like(img)).sum().backward()
    assert ws.grad is not None
    assert ws.grad.shape == ws.shape
    assert torch.isfinite(ws.grad).all()
    per_w = ws.grad.abs().sum(dim=(0, 2))
    assert (per_w > 0).all(), f'some ws entries get no gradient: {per_w}'
    assert all(p.grad is None for p in G.parameters())


def test_gradients_through_mapping():
    G = make_G('skip')
    z = torch.randn([2, 16], requires_grad=True)
    G(z, None, noise_mode='const').sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert G.mapping.fc0.weight.grad is not None
    assert G.synthesis.b4.const.grad is not None


# ----------------------------------------------------------------------------
# Bad shapes.

def test_bad_ws_shape_raises():
    G = make_G('skip')
    with pytest.raises(AssertionError):
        G.synthesis(torch.randn([1, G.num_ws + 1, 16]))
    with pytest.raises(AssertionError):
        G.synthesis(torch.randn([1, G.num_ws - 1, 16]))
    with pytest.raises(AssertionError):
        G.synthesis(torch.randn([1, G.num_ws, 8]))
    with pytest.raises(AssertionError):
        G.synthesis(torch.randn([G.num_ws, 16]))


def test_bad_latent_shape_raises():
    G = make_G('skip', c_dim=3)
    with pytest.raises(AssertionError):
        G.mapping(torch.randn([2, 15]), one_hot([0, 1], 3))
    with pytest.raises(AssertionError):
        G.mapping(torch.randn([2, 16]), one_hot([0, 1], 4))


def test_bad_noise_shape_raises():
    G = make_G('skip')
    randomize_noise_strength(G, 1.0)
    noise = [torch.randn([1, 1, 5, 5]) for _ in G.synthesis.noise_layers()]
    with pytest.raises(RuntimeError):
        G.synthesis(random_ws(G), noise=noise)


def test_bad_constructor_arguments():
    with pytest.raises(ValueError):
        make_G('bogus')
    with pytest.raises(ValueError):
        make_G('skip', res=12)
    with pytest.raises(ValueError):
        make_D('bogus')


# ----------------------------------------------------------------------------
# Discriminator.

@pytest.mark.parametrize('c_dim', [0, 3], ids=['uncond', 'cond'])
@pytest.mark.parametrize('architecture', ARCHITECTURES)
def test_discriminator_logits(architecture, c_dim):
    D = make_D(architecture, c_dim=c_dim)
    img = torch.randn([4, 3, RES, RES])
    c = one_hot([0, 1, 2, 0], 3) if c_dim else None
    with torch.no_grad():
        logits = D(img, c)
    assert logits.shape == (4, 1)
    assert torch.isfinite(logits).all()
    assert logits.std() > 0
    names = set(D.state_dict())
    assert {'b16.fromrgb.weight', 'b16.conv0.weight', 'b16.conv1.weight', 'b8.conv0.weight',
            'b4.conv.weight', 'b4.fc.weight', 'b4.out.weight'} <= names
    assert ('b8.fromrgb.weight' in names) == (architecture == 'skip')
    assert ('b4.fromrgb.weight' in names) == (architecture == 'skip')
    assert ('b8.skip.weight' in names) == (architecture == 'resnet')
    assert ('mapping.embed.weight' in names) == bool(c_dim)
    assert D.b4.out.out_features == (16 if c_dim else 1)


def test_discriminator_label_matters():
    D = make_D('resnet', c_dim=3)
    img = torch.randn([1, 3, RES, RES]).repeat(4, 1, 1, 1)
    with torch.no_grad():
        logits = D(img, one_hot([0, 1, 2, 0], 3))
    assert not torch.allclose(logits[0], logits[1])
    assert torch.allclose(logits[0], logits[3])


def test_discriminator_gradients_to_image():
    D = make_D('skip').requires_grad_(False)
    img = torch.randn([4, 3, RES, RES], requires_grad=True)
    D(img, None).sum().backward()
    assert img.grad is not None and torch.isfinite(img.grad).all() and img.grad.abs().sum() > 0


def test_discriminator_bad_image_shape():
    D = make_D()
    with pytest.raises(AssertionError):
        D(torch.randn([4, 3, 8, 8]), None)
    with pytest.raises(AssertionError):
        D(torch.randn([4, 1, RES, RES]), None)


def _reference_mbstd(x, group):
    """Official grouping: sample i shares a group with i + k * (n / group)."""
    n, c, h, w = x.shape
    m = n // group
    stats = []
    for i in range(n):
        members = x[[i % m + k * m for k in range(group)]]
        std = (members.var(dim=0, unbiased=False) + 1e-8).sqrt()
        stats.append(std.mean())
    y = torch.stack(stats).reshape(n, 1, 1, 1).expand(n, 1, h, w)
    return torch.cat([x, y], dim=1)


@pytest.mark.parametrize('group, batch', [(2, 4), (4, 4), (4, 8), (None, 4), (4, 2), (1, 3)])
def test_minibatch_std_layer(group, batch):
    layer = MinibatchStdLayer(group_size=group)
    x = torch.randn([batch, 6, 4, 4], dtype=torch.float64)
    effective = batch if group is None else min(group, batch)
    torch.testing.assert_close(layer(x), _reference_mbstd(x, effective))


def test_minibatch_std_multiple_channels():
    layer = MinibatchStdLayer(group_size=2, num_channels=2)
    x = torch.randn([4, 6, 4, 4], dtype=torch.float64)
    y = layer(x)
    assert y.shape == (4, 8, 4, 4)
    for f in range(2):
        part = x[:, 3 * f:3 * (f + 1)]
        torch.testing.assert_close(y[:, 6 + f:7 + f], _reference_mbstd(part, 2)[:, 3:])


def test_minibatch_std_indivisible_batch():
    with pytest.raises(ValueError, match='divisible'):
        MinibatchStdLayer(group_size=2)(torch.randn([3, 4, 4, 4]))


@pytest.mark.parametrize('group', [2, 4])
def test_discriminator_minibatch_groups(group):
    D = make_D('resnet', group_size=group)
    assert D.b4.mbstd.group_size == group
    img = torch.randn([4, 3, RES, RES])
    changed = img.clone()
    changed[1] = torch.randn([3, RES, RES])
    with torch.no_grad():
        before = D(img, None)
        after = D(changed, None)
    # With group 2, sample 1 shares its statistics only with sample 3 (official strided grouping).
    same_group = {1, 3} if group == 2 else {0, 1, 2, 3}
    for i in range(4):
        if i in same_group:
            assert not torch.equal(before[i], after[i]), i
        else:
            assert torch.equal(before[i], after[i]), i


def test_discriminator_small_batch_uses_whole_batch():
    D = make_D('orig', group_size=4)
    with torch.no_grad():
        assert D(torch.randn([2, 3, RES, RES]), None).shape == (2, 1)
        assert D(torch.randn([1, 3, RES, RES]), None).shape == (1, 1)
    with pytest.raises(ValueError):
        D(torch.randn([6, 3, RES, RES]), None)


def test_exports():
    for name in networks.__all__:
        assert hasattr(networks, name)
