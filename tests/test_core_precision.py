"""Issue 10.6: the precision flags that reach the networks.

Synthesis and the discriminator run with ``force_fp32=True`` unless reduced precision is asked
for; the perceptual path length runs in fp32 with TF32 off (the flags restored afterwards).
Checked with spies on the networks' ``forward``; tiny generator and discriminator.
"""

import copy

import numpy as np
import pytest
import torch

import loaders
import mixing
import morph
import objectives
import optimization as opt

pytestmark = pytest.mark.usefixtures('one_thread')


def spy_forward(module):
    """Record the keyword arguments of every call of ``module`` (its forward still runs)."""
    calls = []
    real = module.forward

    def forward(*args, **kwargs):
        calls.append(dict(kwargs, tf32=(torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)))
        return real(*args, **kwargs)

    module.forward = forward
    return calls


@pytest.fixture
def G(tiny_G):
    return copy.deepcopy(tiny_G)


def mse(image, ws, index):
    return {'mse': image.square().mean(dim=[1, 2, 3])}


def test_project_synthesizes_in_fp32(G):
    calls = spy_forward(G.synthesis)
    opt.project(G, mse, opt.ProjectionSettings(num_steps=2), seeds=[1, 2], chunk_size=1)
    assert len(calls) == 2 * 3
    assert all(c['force_fp32'] is True for c in calls)
    assert opt.ProjectionSettings().precision == 'fp32'


def test_fp16_precision_lets_the_networks_use_their_fp16_layers(G):
    """The one switch: precision 'fp16' passes force_fp32=False to the steps (on the CPU G still runs
    fp32); the final image is rendered in fp32, so the saved latent reproduces it."""
    calls = spy_forward(G.synthesis)
    opt.project(G, mse, opt.ProjectionSettings(num_steps=1, precision='fp16'))
    assert len(calls) == 2 and calls[0]['force_fp32'] is False and calls[-1]['force_fp32'] is True
    with pytest.raises(ValueError):
        opt.ProjectionSettings(precision='auto')              # only resolved precisions


def test_realism_term_runs_D_in_fp32(tiny_pkl):
    nets = loaders.load_networks(tiny_pkl, torch.device('cpu'), need_D=True, need_fan=False, need_lpips=False)
    calls = spy_forward(nets.D)
    with torch.no_grad():
        img = nets.G.synthesis(opt.w_stats(nets.G)[0].expand(2, nets.G.num_ws, nets.G.w_dim), noise_mode='const')
        value = objectives.realism_term(nets.D, img)
    assert value.shape == (2,) and torch.isfinite(value).all()
    assert [c['force_fp32'] for c in calls] == [True]


def test_ppl_in_fp32_with_tf32_off_and_restored(G):
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = True, True
    try:
        calls = spy_forward(G.synthesis)
        seen = []

        def distance(a, b):
            seen.append((torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, a.dtype))
            return (a - b).square().mean(dim=[1, 2, 3])

        w = opt.w_stats(G)[0][0].expand(G.num_ws, G.w_dim)
        value = mixing.perceptual_path_length(G, distance, lambda t: w * (1 + t), num_samples=2)
        assert np.isfinite(value)
        assert len(calls) == 2 and all(c['force_fp32'] is True and c['tf32'] == (False, False) for c in calls)
        assert seen == [(False, False, torch.float32)] * 2
        # Restored afterwards, also when the measurement fails.
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (True, True)
        with pytest.raises(ZeroDivisionError):
            mixing.perceptual_path_length(G, lambda a, b: 1 / 0, lambda t: w, num_samples=1)
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (True, True)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def test_morph_renders_in_fp32(G):
    calls = spy_forward(G.synthesis)
    w = opt.w_stats(G)[0][0].expand(G.num_ws, G.w_dim).numpy()
    image = morph.synthesize(G, w)
    assert image.shape == (G.img_resolution, G.img_resolution, 3)
    assert [c['force_fp32'] for c in calls] == [True]
