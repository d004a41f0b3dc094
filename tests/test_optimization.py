"""The optimization core (schedule, noise regularization, W statistics, ``project``), the
objective terms, and self-consistency of projection with the LPIPS and heat-map losses.

Everything runs on the tiny generator with random FAN / VGG weights: nothing is downloaded.
"""

import copy
import dataclasses
import math

import numpy as np
import pytest
import torch

import image_io
import landmark_loss
import objectives
import optimization as opt
import perceptual
from conftest import render


# Small networks, many test processes on few cores: one thread is much faster than contention.
pytestmark = pytest.mark.usefixtures('one_thread')


def _latent(G, seed):
    z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).float()
    with torch.no_grad():
        return G.mapping(z, None)                              # [1, num_ws, w_dim]


def _mse_objective(target):
    def objective(image, ws, index):
        return {'mse': (image - target).square().mean(dim=[1, 2, 3])}
    return objective


@pytest.fixture(scope='module')
def mse_target(tiny_G):
    with torch.no_grad():
        return tiny_G.synthesis(_latent(tiny_G, 11), noise_mode='const')


# ----------------------------------------------------------------------------
# Schedule.

@pytest.mark.parametrize('t, expected', [
    (0.0, 0.0),
    (0.025, 0.05),                                            # half-way up the ramp, no ramp-down yet
    (0.05, 0.1),
    (0.5, 0.1),
    (0.75, 0.1),
    (0.875, 0.1 * (0.5 - 0.5 * math.cos(math.pi * 0.5))),    # half-way down: 0.05
    (1.0, 0.0),
])
def test_learning_rate(t, expected):
    assert opt.learning_rate(t) == pytest.approx(expected, abs=1e-12)


def test_learning_rate_custom_and_shape():
    assert opt.learning_rate(0.5, initial=0.3) == pytest.approx(0.3)
    assert opt.learning_rate(0.0, rampup_length=0) == pytest.approx(0.1)
    values = [opt.learning_rate(s / 100) for s in range(101)]
    assert max(values) == pytest.approx(0.1)
    assert all(0 <= v <= 0.1 + 1e-12 for v in values)
    assert values[:6] == sorted(values[:6])                  # ramp-up increases
    assert values[75:] == sorted(values[75:], reverse=True)  # ramp-down decreases


@pytest.mark.parametrize('t, factor', [(0.0, 1.0), (0.375, 0.25), (0.75, 0.0), (0.9, 0.0), (1.0, 0.0)])
def test_w_noise_std(t, factor):
    w_std = 4.7
    assert opt.w_noise_std(t, w_std) == pytest.approx(w_std * 0.05 * factor, abs=1e-12)


# ----------------------------------------------------------------------------
# Noise regularization.

def test_noise_regularization_constant_map():
    # Levels 16x16 and 8x8; each adds (mean of 1*1)^2 for x and for y.
    value = opt.noise_regularization([torch.ones([1, 1, 16, 16])])
    assert float(value) == pytest.approx(4.0)


def test_noise_regularization_checkerboard():
    ii, jj = np.meshgrid(np.arange(16), np.arange(16), indexing='ij')
    board = torch.from_numpy(np.where((ii + jj) % 2 == 0, 1.0, -1.0)).float()[None, None]
    # 16x16: every product with a neighbour is -1 -> (-1)^2 in x and y; 8x8: the pooled board is 0.
    assert float(opt.noise_regularization([board])) == pytest.approx(2.0)
    assert float(opt.noise_regularization([board, torch.ones([1, 1, 16, 16])])) == pytest.approx(6.0)


def _direct_noise_reg(maps):
    total = 0.0
    for m in maps:
        x = m.detach().double().numpy().reshape(m.shape[-2:])
        while True:
            h, w = x.shape
            sx = sum(x[i, j] * x[i, (j - 1) % w] for i in range(h) for j in range(w)) / (h * w)
            sy = sum(x[i, j] * x[(i - 1) % h, j] for i in range(h) for j in range(w)) / (h * w)
            total += sx ** 2 + sy ** 2
            if h <= 8:
                break
            x = x.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    return total


def test_noise_regularization_matches_direct_loop():
    gen = torch.Generator().manual_seed(3)
    maps = [torch.randn([1, 1, r, r], generator=gen) + 0.3 for r in (4, 8, 32)]
    got = opt.noise_regularization(maps)
    assert got.shape == (1,)                     # one value per sample
    assert float(got) == pytest.approx(_direct_noise_reg(maps), rel=1e-5)
    # 2-D maps are accepted too.
    assert float(opt.noise_regularization([m[0, 0] for m in maps])) == pytest.approx(float(got), rel=1e-6)


def test_noise_regularization_is_per_sample():
    gen = torch.Generator().manual_seed(5)
    maps = [torch.randn([3, 1, r, r], generator=gen) + 0.2 * i for i, r in enumerate((4, 8, 32))]
    got = opt.noise_regularization(maps)
    assert got.shape == (3,)
    for i in range(3):
        assert float(got[i]) == pytest.approx(_direct_noise_reg([m[i:i + 1] for m in maps]), rel=1e-5)


def test_noise_regularization_empty_and_gradient():
    assert float(opt.noise_regularization([])) == 0.0
    m = torch.randn([1, 1, 16, 16]).requires_grad_(True)
    opt.noise_regularization([m]).backward()
    assert m.grad is not None and m.grad.abs().sum() > 0


def test_normalize_noise():
    gen = torch.Generator().manual_seed(4)
    maps = [torch.randn([1, 1, r, r], generator=gen) * 3 + 2 for r in (4, 8, 16, 64)]
    opt.normalize_noise_(maps)
    for m in maps:
        assert abs(float(m.mean())) < 1e-5
        assert float(m.square().mean()) == pytest.approx(1.0, abs=1e-5)
    # Each sample of a batch of maps on its own.
    batch = torch.randn([3, 1, 8, 8], generator=gen) * torch.tensor([1.0, 4.0, 9.0])[:, None, None, None] + 5
    opt.normalize_noise_([batch])
    assert batch.mean(dim=[1, 2, 3]).abs().max() < 1e-5
    torch.testing.assert_close(batch.square().mean(dim=[1, 2, 3]), torch.ones(3))
    # Works on leaf tensors that require gradients (as in project).
    leaf = (torch.randn([1, 1, 8, 8]) * 5).requires_grad_(True)
    opt.normalize_noise_([leaf])
    assert float(leaf.detach().square().mean()) == pytest.approx(1.0, abs=1e-5)


def test_adam_equals_torch_adam_bit_for_bit():
    """The in-house Adam follows torch.optim.Adam's single-tensor arithmetic exactly, with a learning
    rate that changes every step and a parameter that has no gradient on some steps."""
    gen = torch.Generator().manual_seed(5)
    start = [torch.randn([2, 1, 8], generator=gen), torch.randn([1, 1, 4, 4], generator=gen)]
    ours = [t.clone().requires_grad_(True) for t in start]
    theirs = [t.clone().requires_grad_(True) for t in start]
    adam = opt.Adam(ours, betas=(0.9, 0.999))
    reference = torch.optim.Adam(theirs, lr=0.1, betas=(0.9, 0.999))
    for step in range(12):
        lr = opt.learning_rate(step / 12)
        for group in reference.param_groups:
            group['lr'] = lr
        adam.zero_grad()
        reference.zero_grad(set_to_none=True)
        grads = [torch.randn(t.shape, generator=gen) * 10 ** (step % 3 - 1) for t in start]
        for params in (ours, theirs):
            params[0].grad = grads[0].clone()
            if step % 4 != 1:  # the second parameter sits out some steps
                params[1].grad = grads[1].clone()
        adam.step(lr)
        reference.step()
        for a, b in zip(ours, theirs):
            assert torch.equal(a.detach(), b.detach()), step
    assert adam.state[1]['step'] == 9 and adam.state[0]['step'] == 12


# ----------------------------------------------------------------------------
# W statistics.

def test_w_stats_matches_direct_computation(tiny_G):
    G = copy.deepcopy(tiny_G)   # own mapping network: the cache is per network, not per argument
    w_avg, w_std = opt.w_stats(G, num_samples=500)
    assert w_avg.shape == (1, 1, G.w_dim)
    z = np.random.RandomState(123).randn(500, G.z_dim)
    with torch.no_grad():
        w = G.mapping(torch.from_numpy(z).float(), None)[:, 0].double().numpy()
    mean = w.mean(axis=0)
    std = np.sqrt(((w - mean) ** 2).sum() / 500)
    np.testing.assert_allclose(w_avg[0, 0].numpy(), mean, rtol=1e-5, atol=1e-5)
    assert w_std == pytest.approx(std, rel=1e-5)
    assert opt.w_stats(G, num_samples=500) is opt.w_stats(G, num_samples=500)


def test_w_stats_default_is_cached(tiny_G):
    first = opt.w_stats(tiny_G)
    assert opt.w_stats(tiny_G) is first
    w_avg, w_std = first
    assert w_avg.shape == (1, 1, tiny_G.w_dim) and w_std > 0


# ----------------------------------------------------------------------------
# project.

def test_project_shapes_and_w_space(tiny_G, mse_target):
    res = opt.project(tiny_G, _mse_objective(mse_target), opt.ProjectionSettings(num_steps=30))
    assert res.ws.shape == (1, tiny_G.num_ws, tiny_G.w_dim)
    assert res.image.shape == mse_target.shape
    # Noise maps keyed by the generator's buffer names, in noise_layers() order.
    assert list(res.noise) == [f'{name}.noise_const' for name, _ in tiny_G.synthesis.noise_layers()]
    assert list(res.noise)[:2] == ['b4.conv1.noise_const', 'b8.conv0.noise_const']
    assert [tuple(n.shape) for n in res.noise.values()] == [(1, 1, l.resolution, l.resolution)
                                                             for _, l in tiny_G.synthesis.noise_layers()]
    assert (res.ws == res.ws[:, :1]).all()                     # one vector broadcast to every layer
    assert len(res.losses) == 1 and set(res.losses[0]) == {'mse', 'noise_reg', 'total'}
    losses = res.losses[0]
    assert losses['total'] == pytest.approx(losses['mse'] + losses['noise_reg'], rel=1e-5)
    assert len(res.history) == 30
    assert [h['step'] for h in res.history] == list(range(30))
    first = np.mean([h['mse'] for h in res.history[:3]])
    last = np.mean([h['mse'] for h in res.history[-3:]])
    assert last < 0.7 * first
    # The final image is synthesized from the returned latent and noise, without w noise.
    with torch.no_grad():
        again = tiny_G.synthesis(res.ws, noise=list(res.noise.values()), force_fp32=True)
    torch.testing.assert_close(res.image, again)
    assert losses['mse'] == pytest.approx(float((again - mse_target).square().mean()), rel=1e-5)
    # Noise maps end normalized.
    for n in res.noise.values():
        assert abs(float(n.mean())) < 1e-4 and float(n.square().mean()) == pytest.approx(1, abs=1e-4)


def test_project_w_plus(tiny_G, mse_target):
    res = opt.project(tiny_G, _mse_objective(mse_target), opt.ProjectionSettings(num_steps=30, latent='w+'))
    assert res.ws.shape == (1, tiny_G.num_ws, tiny_G.w_dim)
    rows = res.ws[0]
    assert not torch.allclose(rows[0], rows[1]) and not torch.allclose(rows[0], rows[-1])
    assert res.history[-1]['mse'] < res.history[0]['mse']


def test_project_is_deterministic_per_seed(tiny_G, mse_target):
    objective = _mse_objective(mse_target)
    a = opt.project(tiny_G, objective, opt.ProjectionSettings(num_steps=10, seed=5))
    b = opt.project(tiny_G, objective, opt.ProjectionSettings(num_steps=10, seed=5))
    c = opt.project(tiny_G, objective, opt.ProjectionSettings(num_steps=10, seed=6))
    torch.testing.assert_close(a.ws, b.ws, atol=1e-6, rtol=0)
    for na, nb in zip(a.noise.values(), b.noise.values()):
        torch.testing.assert_close(na, nb, atol=1e-6, rtol=0)
    assert (a.ws - c.ws).abs().max() > 1e-4


def test_project_callbacks(tiny_G, mse_target):
    infos = []
    other = []
    res = opt.project(tiny_G, _mse_objective(mse_target), opt.ProjectionSettings(num_steps=7),
                      callbacks=[infos.append, lambda info: other.append(info.step)])
    assert len(infos) == 7 and other == list(range(7))
    for s, info in enumerate(infos):
        assert isinstance(info, opt.StepInfo)
        assert info.step == s and info.num_steps == 7
        assert info.learning_rate == pytest.approx(opt.learning_rate(s / 7))
        assert len(info.losses) == 1 and set(info.losses[0]) == {'mse', 'noise_reg', 'total'}
        assert info.losses == res.history[s]['losses']
        assert res.history[s]['total'] == info.losses[0]['total']
        assert info.image.shape == mse_target.shape and not info.image.requires_grad
        assert info.ws.shape == (1, tiny_G.num_ws, tiny_G.w_dim) and not info.ws.requires_grad
    torch.testing.assert_close(infos[-1].ws, res.ws)


def test_project_zero_steps_returns_w_init(tiny_G, mse_target):
    objective = _mse_objective(mse_target)
    w1 = _latent(tiny_G, 21)[:, 0]                                # [1, w_dim]
    res = opt.project(tiny_G, objective, opt.ProjectionSettings(num_steps=0), w_init=w1)
    assert torch.equal(res.ws, w1[:, None].expand(1, tiny_G.num_ws, tiny_G.w_dim))
    assert res.history == []
    with torch.no_grad():
        expected = float((tiny_G.synthesis(res.ws, noise=list(res.noise.values())) - mse_target).square().mean())
    assert res.losses[0]['mse'] == pytest.approx(expected, rel=1e-6)

    w3 = _latent(tiny_G, 22)[:, :1]                               # [1, 1, w_dim]
    res = opt.project(tiny_G, objective, opt.ProjectionSettings(num_steps=0, latent='w+'), w_init=w3)
    assert torch.equal(res.ws, w3.expand(1, tiny_G.num_ws, tiny_G.w_dim))

    wplus = torch.randn([1, tiny_G.num_ws, tiny_G.w_dim])
    res = opt.project(tiny_G, objective, opt.ProjectionSettings(num_steps=0, latent='w+'), w_init=wplus)
    assert torch.equal(res.ws, wplus)
    res = opt.project(tiny_G, objective, opt.ProjectionSettings(num_steps=0), w_init=wplus)
    torch.testing.assert_close(res.ws, wplus.mean(dim=1, keepdim=True).expand_as(wplus))

    # Default start: w_avg.
    res = opt.project(tiny_G, objective, opt.ProjectionSettings(num_steps=0))
    torch.testing.assert_close(res.ws, opt.w_stats(tiny_G)[0].expand(1, tiny_G.num_ws, tiny_G.w_dim))

    with pytest.raises(ValueError):
        opt.project(tiny_G, objective, opt.ProjectionSettings(num_steps=0),
                    w_init=torch.zeros([1, tiny_G.num_ws + 1, tiny_G.w_dim]))


def test_project_warm_start_is_used(tiny_G, mse_target):
    objective = _mse_objective(mse_target)
    w_start = _latent(tiny_G, 23)[:, :1]
    w_avg = opt.w_stats(tiny_G)[0]
    settings = opt.ProjectionSettings(num_steps=5, initial_learning_rate=0.01)
    warm = opt.project(tiny_G, objective, settings, w_init=w_start)
    cold = opt.project(tiny_G, objective, settings)
    assert (warm.ws[0, 0] - w_start[0, 0]).norm() < 0.2 * (w_start - w_avg).norm()
    assert (warm.ws - cold.ws).abs().max() > 0.1


def test_synthesize_asks_for_the_backward_friendly_modconv_only_when_gradients_flow(tiny_G, monkeypatch):
    calls = []
    original = tiny_G.synthesis.forward

    def spy(*args, **kwargs):
        calls.append(kwargs.get('fused_modconv'))
        return original(*args, **kwargs)
    monkeypatch.setattr(tiny_G.synthesis, 'forward', spy)
    ws = _latent(tiny_G, 0).repeat([1, 1, 1])
    with torch.no_grad():
        plain = opt.synthesize(tiny_G, ws)
    opt.synthesize(tiny_G, ws)                                   # no gradient wanted
    grad = opt.synthesize(tiny_G, ws.clone().requires_grad_(True))
    assert calls == [None, None, 'for_backward']
    torch.testing.assert_close(grad.detach(), plain, atol=1e-5, rtol=0)


def test_project_does_not_change_generator(tiny_G, mse_target):
    before = {k: v.clone() for k, v in tiny_G.state_dict().items()}
    flags = {k: p.requires_grad for k, p in tiny_G.named_parameters()}
    opt.project(tiny_G, _mse_objective(mse_target), opt.ProjectionSettings(num_steps=5, latent='w+'))
    after = tiny_G.state_dict()
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]), k
    assert flags == {k: p.requires_grad for k, p in tiny_G.named_parameters()}
    assert all(p.grad is None for p in tiny_G.parameters())


def test_project_fixed_noise(tiny_G, mse_target):
    gen = torch.Generator().manual_seed(9)
    maps = [torch.randn([1, 1, l.resolution, l.resolution], generator=gen) * 2
            for _, l in tiny_G.synthesis.noise_layers()]
    originals = [m.clone() for m in maps]
    res = opt.project(tiny_G, _mse_objective(mse_target), opt.ProjectionSettings(num_steps=5, optimize_noise=False),
                      noise_init=maps)
    assert 'noise_reg' not in res.losses[0]
    for got, m, orig in zip(res.noise.values(), maps, originals):
        assert torch.equal(got, orig)              # used as given: not optimized, not renormalized
        assert torch.equal(m, orig)                # the caller's maps are untouched

    # Optimized noise starts from a copy: the caller's maps are not changed in place.
    res = opt.project(tiny_G, _mse_objective(mse_target), opt.ProjectionSettings(num_steps=5), noise_init=maps)
    for got, m, orig in zip(res.noise.values(), maps, originals):
        assert torch.equal(m, orig)
        assert not torch.equal(got, orig)

    with pytest.raises(ValueError):
        opt.project(tiny_G, _mse_objective(mse_target), opt.ProjectionSettings(num_steps=1), noise_init=maps[:-1])


def test_projection_settings_validation():
    with pytest.raises(ValueError):
        opt.ProjectionSettings(latent='z')
    with pytest.raises(ValueError):
        opt.ProjectionSettings(num_steps=-1)
    d = dataclasses.asdict(opt.ProjectionSettings())  # the defaults SPEC gives
    assert d['num_steps'] == 1000 and d['initial_learning_rate'] == 0.1 and d['seed'] == 303
    assert d['latent'] == 'w' and d['regularize_noise_weight'] == 1e5


def test_project_rejects_terms_of_the_wrong_shape(tiny_G, mse_target):
    def objective(image, ws, index):
        return {'bad': (image - mse_target).square().mean(dim=[2, 3])}         # [b, 3], not [b]
    with pytest.raises(ValueError, match='bad'):
        opt.project(tiny_G, objective, opt.ProjectionSettings(num_steps=1))

    def scalar_objective(image, ws, index):
        return {'summed': (image - mse_target).square().mean()}                 # one value for 2 latents
    with pytest.raises(ValueError, match='summed'):
        opt.project(tiny_G, scalar_objective, opt.ProjectionSettings(num_steps=1), seeds=[1, 2])


def test_project_accepts_the_one_latent_objective_form(tiny_G, mse_target):
    """objective(image, ws) -> scalars is the single-latent form: the same run as the batched form."""
    def old(image, ws):
        return {'mse': (image - mse_target).square().mean()}
    settings = opt.ProjectionSettings(num_steps=4)
    a = opt.project(tiny_G, old, settings)
    b = opt.project(tiny_G, _mse_objective(mse_target), settings)
    torch.testing.assert_close(a.ws, b.ws)
    with pytest.raises(ValueError, match='index'):
        opt.project(tiny_G, old, settings, seeds=[1, 2])


# ----------------------------------------------------------------------------
# Objective terms.

def test_latent_distances_on_known_values():
    a = torch.zeros([2, 3, 4])
    b = torch.full([2, 3, 4], 3.0)
    # Charbonnier: each of the 24 elements contributes sqrt(9 + 1e-6); equal latents sqrt(1e-6) each.
    assert float(objectives.charbonnier_distance(a, b)) == pytest.approx(24 * 3.0, rel=1e-6)
    assert float(objectives.charbonnier_distance(a, a)) == pytest.approx(24 * 1e-3, rel=1e-4)
    # L2: sqrt(24 * 9).
    assert float(objectives.l2_distance(a, b)) == pytest.approx(np.sqrt(24 * 9.0), rel=1e-6)
    assert float(objectives.l2_distance(a, a)) == 0.0
    # A [1, 1, C] anchor (w_avg) broadcasts over latents and layers.
    anchor = torch.full([1, 1, 4], 3.0)
    assert float(objectives.charbonnier_distance(a, anchor)) == pytest.approx(24 * 3.0, rel=1e-6)
    assert float(objectives.l2_distance(a, anchor)) == pytest.approx(np.sqrt(24 * 9.0), rel=1e-6)
    assert objectives.latent_distance('charbonnier') is objectives.charbonnier_distance
    assert objectives.latent_distance('l2') is objectives.l2_distance
    assert objectives.DEFAULT_LATENT_DISTANCE == 'charbonnier' and objectives.DEFAULT_SMOOTHNESS_WEIGHT == 0.005
    with pytest.raises(ValueError):
        objectives.latent_distance('l1')


def test_charbonnier_is_smooth_l1():
    """Large differences count linearly (like L1), tiny ones quadratically; the gradient stays in [-1, 1]."""
    big = objectives.charbonnier_distance(torch.tensor([100.0]), torch.tensor([0.0]))
    assert float(big) == pytest.approx(100.0, rel=1e-6)
    x = torch.tensor([-2.0, -1e-4, 0.0, 1e-4, 2.0], requires_grad=True)
    objectives.charbonnier_distance(x, torch.zeros(5)).backward()
    assert x.grad.abs().max() <= 1.0 and torch.isfinite(x.grad).all()
    assert float(x.grad[2]) == 0.0                   # at a == b the gradient is 0, not undefined
    assert 0 < float(x.grad[3]) < 0.2                # near it, small (quadratic, not L1's jump)


def test_neighbour_distance_sums_consecutive_pairs():
    ws = torch.tensor([[0.0], [1.0], [3.0], [3.0]])[:, :, None]          # [4, 1, 1]
    # |1-0| + |3-1| + |3-3|, each sqrt(d^2 + 1e-6)
    expected = sum(np.sqrt(d * d + 1e-6) for d in (1.0, 2.0, 0.0))
    assert float(objectives.neighbour_distance(ws)) == pytest.approx(expected, rel=1e-6)
    assert float(objectives.neighbour_distance(ws, 'l2')) == pytest.approx(np.sqrt(1 + 4), rel=1e-6)
    assert float(objectives.neighbour_distance(ws[:1])) == 0.0


class _SpyD(torch.nn.Module):
    """Logit = the image mean; records the keyword arguments it was called with."""
    c_dim = 0

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, img, c, **kwargs):
        self.calls.append(kwargs)
        assert c.shape == (img.shape[0], 0)
        return img.mean(dim=[1, 2, 3])[:, None]


def test_realism_term_per_image_and_in_fp32():
    D = _SpyD()
    img = torch.stack([torch.zeros([3, 8, 8]), torch.full([3, 8, 8], 30.0), torch.full([3, 8, 8], -30.0)])
    got = objectives.realism_term(D, img)
    assert got.shape == (3,)
    # At D's decision boundary (logit 0) the term is log 2; an image D finds very real costs ~0,
    # a very fake one about its logit.
    assert float(got[0]) == pytest.approx(math.log(2), rel=1e-6)
    assert float(got[1]) < 1e-9
    assert float(got[2]) == pytest.approx(30.0, rel=1e-6)
    assert D.calls == [dict(force_fp32=True)]
    objectives.realism_term(D, img, force_fp32=False)
    assert D.calls[-1] == dict(force_fp32=False)


class _Stub:
    def __init__(self, value):
        self.value = value
        self.calls = 0

    def __call__(self, image):
        self.calls += 1
        return torch.full([image.shape[0]], self.value) + image.mean(dim=[1, 2, 3])


def test_look_and_landmarks_weights():
    image, ws = torch.zeros([1, 3, 8, 8]), torch.zeros([1, 4, 16])
    p, l = _Stub(0.4), _Stub(30.0)
    terms = objectives.look_and_landmarks(p, l, lpips_weight=0.5, landmark_weight=0.1)(image, ws)
    assert set(terms) == {'lpips', 'landmark'}
    assert float(terms['lpips']) == pytest.approx(0.2)
    assert float(terms['landmark']) == pytest.approx(3.0)
    assert all(t.ndim == 0 for t in terms.values())


def test_look_and_landmarks_per_latent_with_index():
    image = torch.stack([torch.zeros([3, 8, 8]), torch.ones([3, 8, 8])])          # [2, 3, 8, 8]
    ws = torch.zeros([2, 4, 16])
    p, l = _Stub(0.4), _Stub(30.0)
    objective = objectives.look_and_landmarks(p, l, lpips_weight=0.5, landmark_weight=0.1)
    terms = objective(image, ws, torch.tensor([0, 1]))
    assert {k: v.shape for k, v in terms.items()} == {'lpips': (2,), 'landmark': (2,)}
    torch.testing.assert_close(terms['lpips'], torch.tensor([0.2, 0.7]))
    torch.testing.assert_close(terms['landmark'], torch.tensor([3.0, 3.1]))
    # Without the index: the one-latent form, each term's batch mean.
    assert float(objective(image, ws)['lpips']) == pytest.approx(0.45)

    # One loss per latent (own targets), or one that selects its target with the index.
    per = objectives.look_and_landmarks(None, [_Stub(1.0), _Stub(2.0), _Stub(3.0)], lpips_weight=0,
                                        landmark_weight=1)
    torch.testing.assert_close(per(image, ws, torch.tensor([2, 0]))['landmark'], torch.tensor([3.0, 2.0]))
    targets = torch.tensor([10.0, 20.0, 30.0])
    selecting = objectives.look_and_landmarks(lambda img, index: targets[index], None, lpips_weight=1,
                                              landmark_weight=0)
    torch.testing.assert_close(selecting(image, ws, torch.tensor([1, 2]))['lpips'], torch.tensor([20.0, 30.0]))


def test_per_latent_objectives():
    image, ws = torch.zeros([2, 3, 8, 8]), torch.zeros([2, 4, 16])
    seen = []

    def make(value, name):
        def objective(img, w, index):
            seen.append(index.tolist())
            return {name: torch.full([img.shape[0]], value)}
        return objective

    combined = objectives.per_latent([make(1.0, 'a'), make(2.0, 'b'), make(3.0, 'a')])
    terms = combined(image, ws, torch.tensor([2, 1]))
    torch.testing.assert_close(terms['a'], torch.tensor([3.0, 0.0]))     # latent 1 has no 'a' term
    torch.testing.assert_close(terms['b'], torch.tensor([0.0, 2.0]))
    assert seen == [[0], [0]]       # each objective sees its latent as a one-latent batch


def test_look_and_landmarks_omits_zero_weights():
    image, ws = torch.zeros([1, 3, 8, 8]), torch.zeros([1, 4, 16])
    p, l = _Stub(0.4), _Stub(30.0)
    terms = objectives.look_and_landmarks(p, l, lpips_weight=0, landmark_weight=2)(image, ws)
    assert set(terms) == {'landmark'} and p.calls == 0 and l.calls == 1
    assert float(terms['landmark']) == pytest.approx(60.0)
    terms = objectives.look_and_landmarks(p, None, lpips_weight=1, landmark_weight=0)(image, ws)
    assert set(terms) == {'lpips'} and l.calls == 1
    terms = objectives.look_and_landmarks(None, None, lpips_weight=0, landmark_weight=0,
                                          extra=lambda img, w: {'smooth': w.sum() + 1})(image, ws)
    assert set(terms) == {'smooth'} and float(terms['smooth']) == 1.0
    with pytest.raises(ValueError):
        objectives.look_and_landmarks(None, l, lpips_weight=1)
    with pytest.raises(ValueError):
        objectives.look_and_landmarks(p, None, lpips_weight=1, landmark_weight=0.1)


# ----------------------------------------------------------------------------
# Self-consistency: projection reduces each loss when the target comes from G itself.

def test_self_consistency_lpips(tiny_G, vgg_weights):
    # Look rendered by G from a known latent (seed 2); landmark weight 0; default settings
    # (W space, seed 303) but 100 steps.
    look = image_io.to_tensor(render(tiny_G, 2))
    loss = perceptual.PerceptualLoss(vgg_weights)
    objective = objectives.look_and_landmarks(perceptual=loss.distance_to(look), lpips_weight=1, landmark_weight=0)
    start = opt.project(tiny_G, objective, opt.ProjectionSettings(num_steps=0))    # the w_avg image
    res = opt.project(tiny_G, objective, opt.ProjectionSettings(num_steps=100))
    assert 'landmark' not in res.losses[0]
    with torch.no_grad():
        end = float(loss.distance(res.image, look))
        begin = float(loss.distance(start.image, look))
    assert end == pytest.approx(res.losses[0]['lpips'], rel=1e-4)
    assert end <= 0.5 * begin, (begin, end)


def test_self_consistency_landmarks(tiny_G, fan_weights):
    # Target rendered from another latent (seed 3); LPIPS weight 0; landmark weight 1; W space,
    # seed 303. 20 steps (the loss is at ~1/3 of its start by then): a 1-hourglass FAN on
    # 256x256 crops costs ~0.5 s per step (forward and backward) on one core. Checked on the
    # landmark error itself (landmark positions, normalized by the eye distance), not only the loss.
    target = image_io.to_tensor(render(tiny_G, 3))
    loss = landmark_loss.LandmarkLoss(landmark_loss.load_fan(fan_weights), target)
    objective = objectives.look_and_landmarks(landmarks=loss, lpips_weight=0, landmark_weight=1)
    start = opt.project(tiny_G, objective, opt.ProjectionSettings(num_steps=0))    # the w_avg image
    res = opt.project(tiny_G, objective, opt.ProjectionSettings(num_steps=20))
    assert 'lpips' not in res.losses[0]
    with torch.no_grad():
        end = float(loss(res.image))
    assert end == pytest.approx(res.losses[0]['landmark'], rel=1e-4)
    assert end <= 0.5 * start.losses[0]['landmark'], (start.losses[0]['landmark'], end)
    error_start, error_end = loss.measure(start.image)[0], loss.measure(res.image)[0]
    assert error_end < 0.8 * error_start, (error_start, error_end)
