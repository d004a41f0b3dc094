"""Our generator and discriminator compute the same functions as the reference implementation.

The fixtures were written by the reference code (StyleGAN2-ADA; converted from a TensorFlow-era
pickle by its converter; the stylegan3 repository's StyleGAN2: see tests/data/README.md);
every array must match within 1e-4 absolute.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

import legacy

DATA = Path(__file__).parent / 'data'
ATOL = 1e-4


@pytest.fixture(scope='module', params=['tiny-skip', 'cond-orig', 'tf-tiny', 'sg3repo-sg2-tiny'])
def fixture(request):
    with open(DATA / f'{request.param}.pkl', 'rb') as f:
        nets = legacy.load_network_pkl(f)
    expected = dict(np.load(DATA / f'{request.param}-expected.npz'))
    return nets, expected


def _close(actual: torch.Tensor, expected: np.ndarray):
    actual = actual.detach().cpu().numpy()
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=0, atol=ATOL)


def test_mapping(fixture):
    nets, e = fixture
    G = nets['G_ema']
    z, c = torch.from_numpy(e['z']), torch.from_numpy(e['c'])
    _close(G.mapping(z, c), e['ws'])
    _close(G.mapping(z, c, truncation_psi=0.7), e['ws_psi07'])
    _close(G.mapping(z, c, truncation_psi=0.5, truncation_cutoff=2), e['ws_psi05_cutoff2'])


@pytest.mark.parametrize('noise_mode', ['const', 'none'])
def test_synthesis(fixture, noise_mode):
    nets, e = fixture
    ws = torch.from_numpy(e['ws'])
    _close(nets['G_ema'].synthesis(ws, noise_mode=noise_mode, force_fp32=True), e[f'img_{noise_mode}'])


def test_synthesis_non_fused_matches(fixture):
    nets, e = fixture
    ws = torch.from_numpy(e['ws'])
    img = nets['G_ema'].synthesis(ws, noise_mode='const', force_fp32=True, fused_modconv=False)
    _close(img, e['img_const'])


def test_full_generator(fixture):
    nets, e = fixture
    z, c = torch.from_numpy(e['z']), torch.from_numpy(e['c'])
    _close(nets['G_ema'](z, c, truncation_psi=0.7, noise_mode='const', force_fp32=True), e['img_G_psi07'])


def test_discriminator(fixture):
    nets, e = fixture
    logits = nets['D'](torch.from_numpy(e['img_const']), torch.from_numpy(e['c']), force_fp32=True)
    _close(logits, e['d_logits'])


def test_synthesis_backward(fixture):
    nets, e = fixture
    ws = torch.from_numpy(e['ws']).clone().requires_grad_(True)
    img = nets['G_ema'].synthesis(ws, noise_mode='const', force_fp32=True)
    (img * torch.from_numpy(e['grad_probe'])).sum().backward()
    _close(ws.grad, e['grad_ws'])


def test_explicit_noise_equals_const(fixture):
    """The projector passes its own noise maps; the buffers' values must give img_const."""
    nets, e = fixture
    G = nets['G_ema']
    noise = [layer.noise_const[None, None] for _, layer in G.synthesis.noise_layers()]
    img = G.synthesis(torch.from_numpy(e['ws']), noise=noise, force_fp32=True)
    _close(img, e['img_const'])


def test_attributes(fixture):
    nets, e = fixture
    G = nets['G_ema']
    assert G.num_ws == e['ws'].shape[1]
    assert G.w_dim == e['ws'].shape[2]
    assert G.z_dim == e['z'].shape[1]
    assert G.c_dim == e['c'].shape[1]
    assert G.img_resolution == e['img_const'].shape[-1]
    assert not any(p.requires_grad for p in G.parameters())
    assert not G.training
