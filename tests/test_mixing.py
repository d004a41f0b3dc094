"""Tests of ``mixing.py``: linear / style / attribute blending and the perceptual path length.

The blends are checked against the formulas of the spec ("Morphing"), on numpy arrays and torch
tensors; the path length is checked against a direct computation on the tiny generator with a
random-VGG LPIPS distance (nothing is downloaded).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import mixing

NUM_WS, W_DIM = 8, 32
SHAPE = (NUM_WS, W_DIM)


# ----------------------------------------------------------------------------
# Helpers.

def latents(seed: int = 0, shape=SHAPE):
    rng = np.random.RandomState(seed)
    return rng.randn(*shape).astype(np.float32), rng.randn(*shape).astype(np.float32)


def as_numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def lerp(wp, wc, l):
    return l * wp + (1 - l) * wc


def expected_split(wp, wc, l, k, axis):
    """Reference: indices < k along ``axis`` take lerp(l), indices >= k take lerp(1 - l)."""
    out = np.array(lerp(wp, wc, l))
    swapped = lerp(wp, wc, 1 - l)
    index = [slice(None)] * 2
    index[axis] = slice(k, None)
    out[tuple(index)] = swapped[tuple(index)]
    return out


def to_kind(kind, *arrays):
    if kind == 'numpy':
        return tuple(a.copy() for a in arrays)
    return tuple(torch.from_numpy(a.copy()) for a in arrays)


KINDS = ['numpy', 'torch']


# ----------------------------------------------------------------------------
# Linear.

@pytest.mark.parametrize('kind', KINDS)
def test_linear_endpoints_and_formula(kind):
    wp_np, wc_np = latents(1)
    wp, wc = to_kind(kind, wp_np, wc_np)
    np.testing.assert_allclose(as_numpy(mixing.linear_mix(wp, wc, 1.0)), wp_np, rtol=0, atol=0)
    np.testing.assert_allclose(as_numpy(mixing.linear_mix(wp, wc, 0.0)), wc_np, rtol=0, atol=0)
    out = mixing.linear_mix(wp, wc, 0.7)
    assert type(out) is type(wp)
    assert tuple(out.shape) == SHAPE
    np.testing.assert_allclose(as_numpy(out), 0.7 * wp_np + 0.3 * wc_np, rtol=1e-6, atol=1e-6)
    # The inputs are untouched.
    np.testing.assert_array_equal(as_numpy(wp), wp_np)
    np.testing.assert_array_equal(as_numpy(wc), wc_np)


# ----------------------------------------------------------------------------
# Style and attribute mixing.

SPLITS = [
    ('style', mixing.style_mix, 0, NUM_WS),
    ('attribute', mixing.attribute_mix, 1, W_DIM),
]


@pytest.mark.parametrize('kind', KINDS)
@pytest.mark.parametrize('name, func, axis, size', SPLITS, ids=[s[0] for s in SPLITS])
@pytest.mark.parametrize('degree', [0.0, 0.3, 0.7, 1.0])
def test_split_formula(kind, name, func, axis, size, degree):
    wp_np, wc_np = latents(2)
    for k in sorted({0, 1, size // 2, size - 1, size}):
        wp, wc = to_kind(kind, wp_np, wc_np)
        out = func(wp, wc, degree, k)
        assert type(out) is type(wp)
        assert tuple(out.shape) == SHAPE
        np.testing.assert_allclose(as_numpy(out), expected_split(wp_np, wc_np, degree, k, axis),
                                   rtol=1e-6, atol=1e-6, err_msg=f'{name} k={k}')
        # Explicitly: below k uses l, from k on uses 1 - l.
        o = as_numpy(out)
        lo = o[:k] if axis == 0 else o[:, :k]
        hi = o[k:] if axis == 0 else o[:, k:]
        ref_lo = lerp(wp_np, wc_np, degree)
        ref_hi = lerp(wp_np, wc_np, 1 - degree)
        np.testing.assert_allclose(lo, ref_lo[:k] if axis == 0 else ref_lo[:, :k], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(hi, ref_hi[k:] if axis == 0 else ref_hi[:, k:], rtol=1e-6, atol=1e-6)
        # The inputs are untouched.
        np.testing.assert_array_equal(as_numpy(wp), wp_np)
        np.testing.assert_array_equal(as_numpy(wc), wc_np)


@pytest.mark.parametrize('kind', KINDS)
@pytest.mark.parametrize('name, func, axis, size', SPLITS, ids=[s[0] for s in SPLITS])
def test_split_extremes_match_linear(kind, name, func, axis, size):
    wp_np, wc_np = latents(3)
    wp, wc = to_kind(kind, wp_np, wc_np)
    for degree in (0.0, 0.25, 0.7, 1.0):
        # Crossover 0: everything swapped, i.e. linear with 1 - l.
        np.testing.assert_allclose(as_numpy(func(wp, wc, degree, 0)),
                                   as_numpy(mixing.linear_mix(wp, wc, 1 - degree)), rtol=1e-6, atol=1e-6)
        # Crossover at the size: nothing swapped, i.e. linear.
        np.testing.assert_allclose(as_numpy(func(wp, wc, degree, size)),
                                   as_numpy(mixing.linear_mix(wp, wc, degree)), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize('name, func, axis, size', SPLITS, ids=[s[0] for s in SPLITS])
def test_split_last_index(name, func, axis, size):
    """Crossover size - 1: only the last layer / channel is swapped."""
    wp, wc = latents(4)
    out = func(wp.copy(), wc.copy(), 1.0, size - 1)
    if axis == 0:
        np.testing.assert_array_equal(out[:-1], wp[:-1])
        np.testing.assert_array_equal(out[-1], wc[-1])
    else:
        np.testing.assert_array_equal(out[:, :-1], wp[:, :-1])
        np.testing.assert_array_equal(out[:, -1], wc[:, -1])


@pytest.mark.parametrize('kind', KINDS)
@pytest.mark.parametrize('name, func, axis, size', SPLITS, ids=[s[0] for s in SPLITS])
def test_split_out_of_range(kind, name, func, axis, size):
    wp, wc = to_kind(kind, *latents(5))
    for k in (-1, size + 1, size + 100):
        with pytest.raises(ValueError):
            func(wp, wc, 0.5, k)


def test_style_and_attribute_differ_on_axes():
    """Style splits rows (layers), attribute splits columns (channels)."""
    wp = np.ones(SHAPE, np.float32)
    wc = np.zeros(SHAPE, np.float32)
    style = mixing.style_mix(wp, wc, 1.0, 3)
    assert (style[:3] == 1).all() and (style[3:] == 0).all()
    attribute = mixing.attribute_mix(wp, wc, 1.0, 5)
    assert (attribute[:, :5] == 1).all() and (attribute[:, 5:] == 0).all()


# ----------------------------------------------------------------------------
# Dispatch.

@pytest.mark.parametrize('kind', KINDS)
def test_mix_dispatch_and_defaults(kind):
    wp_np, wc_np = latents(6)
    wp, wc = to_kind(kind, wp_np, wc_np)
    l = 0.7
    np.testing.assert_allclose(as_numpy(mixing.mix('linear', wp, wc, l)), lerp(wp_np, wc_np, l), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(as_numpy(mixing.mix('style', wp, wc, l)),
                               expected_split(wp_np, wc_np, l, NUM_WS // 2, 0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(as_numpy(mixing.mix('attribute', wp, wc, l)),
                               expected_split(wp_np, wc_np, l, W_DIM // 2, 1), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(as_numpy(mixing.mix('style', wp, wc, l, 2)),
                               expected_split(wp_np, wc_np, l, 2, 0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(as_numpy(mixing.mix('attribute', wp, wc, l, 0)),
                               expected_split(wp_np, wc_np, l, 0, 1), rtol=1e-6, atol=1e-6)
    # The crossover is ignored by linear mixing.
    np.testing.assert_allclose(as_numpy(mixing.mix('linear', wp, wc, l, 3)), lerp(wp_np, wc_np, l),
                               rtol=1e-6, atol=1e-6)
    assert tuple(mixing.METHODS) == ('linear', 'style', 'attribute')


def test_mix_unknown_method():
    wp, wc = latents(7)
    for method in ('cubic', 'all', '', 'Linear'):
        with pytest.raises(ValueError, match='method'):
            mixing.mix(method, wp, wc, 0.5)


@pytest.mark.parametrize('method', mixing.METHODS)
def test_mismatched_shapes(method):
    wp, _ = latents(8)
    for other in (np.zeros((NUM_WS, W_DIM + 1), np.float32), np.zeros((NUM_WS - 1, W_DIM), np.float32),
                  np.zeros((1, NUM_WS, W_DIM), np.float32)):
        with pytest.raises(ValueError):
            mixing.mix(method, wp, other, 0.5)
        with pytest.raises(ValueError):
            mixing.mix(method, other, wp, 0.5)
    # A batched pair of equal shapes is not a single latent either.
    batched = np.zeros((1, NUM_WS, W_DIM), np.float32)
    with pytest.raises(ValueError):
        mixing.mix(method, batched, batched.copy(), 0.5)


# ----------------------------------------------------------------------------
# Perceptual path length.

@pytest.fixture(scope='module')
def perceptual(vgg_weights):
    from perceptual import PerceptualLoss
    return PerceptualLoss(vgg_weights)


@pytest.fixture(scope='module')
def endpoints(tiny_G):
    """Two W latents of the tiny generator, broadcast to [num_ws, w_dim]."""
    z = torch.from_numpy(np.random.RandomState(11).randn(2, tiny_G.z_dim)).float()
    with torch.no_grad():
        ws = tiny_G.mapping(z, None)
    assert tuple(ws.shape) == (2, NUM_WS, W_DIM)
    return ws[0].clone(), ws[1].clone()


def test_ppl_zero_for_identical_endpoints(tiny_G, perceptual, endpoints):
    """A blend that returns the same latent for every t has a path length of exactly 0."""
    wp, _ = endpoints
    ppl = mixing.perceptual_path_length(tiny_G, perceptual.distance, lambda t: wp, num_samples=2, seed=0)
    assert ppl == 0.0


def test_ppl_positive_for_different_endpoints(tiny_G, perceptual, endpoints):
    wp, wc = endpoints
    for method in mixing.METHODS:
        ppl = mixing.perceptual_path_length(tiny_G, perceptual.distance,
                                            lambda t: mixing.mix(method, wp, wc, t), num_samples=1, seed=1)
        assert math.isfinite(ppl), method
        assert ppl > 0, method


def test_ppl_matches_direct_computation(tiny_G, perceptual, endpoints):
    wp, wc = endpoints
    n, eps, seed = 4, 1e-4, 5
    calls = []

    def blend(t):
        calls.append(t)
        return mixing.linear_mix(wp, wc, t)

    got = mixing.perceptual_path_length(tiny_G, perceptual.distance, blend, num_samples=n, epsilon=eps, seed=seed)

    ts = np.random.RandomState(seed).uniform(0, 1 - eps, n)
    assert len(calls) == 2 * n
    np.testing.assert_allclose(sorted(calls), sorted(list(ts) + list(ts + eps)), rtol=0, atol=1e-12)
    total = 0.0
    with torch.no_grad():
        for t in ts:
            w0 = (t * wp + (1 - t) * wc).float()
            w1 = ((t + eps) * wp + (1 - t - eps) * wc).float()
            img0 = tiny_G.synthesis(w0[None], noise_mode='const')
            img1 = tiny_G.synthesis(w1[None], noise_mode='const')
            total += float(perceptual.distance(img0, img1)[0]) / eps ** 2
    expected = total / n
    assert math.isfinite(expected) and expected > 0
    assert got == pytest.approx(expected, rel=5e-3)


def test_ppl_same_for_numpy_and_torch_blends(tiny_G, perceptual, endpoints):
    """Same seed, same t's: a numpy blend and a torch blend give the same (deterministic) value."""
    wp, wc = endpoints
    wp_np, wc_np = wp.numpy(), wc.numpy()
    a = mixing.perceptual_path_length(tiny_G, perceptual.distance, lambda t: mixing.linear_mix(wp, wc, t),
                                      num_samples=1, seed=3)
    b = mixing.perceptual_path_length(tiny_G, perceptual.distance, lambda t: mixing.linear_mix(wp_np, wc_np, t),
                                      num_samples=1, seed=3)
    assert math.isfinite(a) and a > 0
    assert b == pytest.approx(a, rel=1e-3)
