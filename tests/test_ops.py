"""Unit tests for the differentiable ops in torch_utils/ops.

Every op is compared with an independent, deliberately naive reference (direct formulas,
explicit numpy loops over output pixels, or a plain composition of steps), and the
double-precision gradients are checked with ``torch.autograd.gradcheck``.
"""

import math
import pathlib
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # project root, when run from elsewhere

from torch_utils.ops.bias_act import bias_act
from torch_utils.ops.conv2d_resample import conv2d_resample
from torch_utils.ops.fma import fma
from torch_utils.ops.upfirdn2d import downsample2d, filter2d, setup_filter, upfirdn2d, upsample2d

DT = torch.float64


# The tensors here are tiny; intra-op threads only add overhead (a lot, on a busy machine).
pytestmark = pytest.mark.usefixtures('one_thread')


def _rng(seed=0):
    return np.random.default_rng(seed)


def _t(a):
    return torch.from_numpy(np.asarray(a, dtype=np.float64))


# ----------------------------------------------------------------------------------------
# bias_act
# ----------------------------------------------------------------------------------------

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def _ref_act(name, v, alpha):
    """Activations written out from their textbook definitions (numpy, float64)."""
    if name == 'linear':
        return v
    if name == 'relu':
        return np.maximum(v, 0.0)
    if name == 'lrelu':
        return np.where(v > 0, v, alpha * v)
    if name == 'tanh':
        return np.tanh(v)
    if name == 'sigmoid':
        return 1.0 / (1.0 + np.exp(-v))
    if name == 'elu':
        return np.where(v > 0, v, np.exp(v) - 1.0)
    if name == 'selu':
        return SELU_SCALE * np.where(v > 0, v, SELU_ALPHA * (np.exp(v) - 1.0))
    if name == 'softplus':
        return np.log1p(np.exp(v))
    if name == 'swish':
        return v / (1.0 + np.exp(-v))
    raise KeyError(name)


DEF_GAIN = {'linear': 1.0, 'relu': math.sqrt(2), 'lrelu': math.sqrt(2), 'tanh': 1.0, 'sigmoid': 1.0,
            'elu': 1.0, 'selu': 1.0, 'softplus': 1.0, 'swish': math.sqrt(2)}
ACTS = sorted(DEF_GAIN)


def _ref_bias_act(x, b, dim, act, alpha, gain, clamp):
    v = np.array(x, dtype=np.float64)
    if b is not None:
        shape = [1] * v.ndim
        shape[dim] = -1
        v = v + np.asarray(b, dtype=np.float64).reshape(shape)
    alpha = 0.2 if alpha is None else alpha  # only lrelu uses it
    gain = DEF_GAIN[act] if gain is None else gain
    v = _ref_act(act, v, alpha) * gain
    if clamp is not None:
        v = np.clip(v, -clamp, clamp)
    return v


@pytest.mark.parametrize('act', ACTS)
@pytest.mark.parametrize('with_bias', [False, True])
def test_bias_act_defaults(act, with_bias):
    rng = _rng(1)
    x = rng.normal(size=[2, 3, 4, 5]) * 2
    b = rng.normal(size=[3]) if with_bias else None
    y = bias_act(_t(x), None if b is None else _t(b), act=act)
    assert y.shape == (2, 3, 4, 5) and y.dtype == DT
    np.testing.assert_allclose(y.numpy(), _ref_bias_act(x, b, 1, act, None, None, None), rtol=1e-12, atol=1e-12)


def test_bias_act_default_gains_and_alpha():
    x = _t([[-2.0, 3.0]])
    np.testing.assert_allclose(bias_act(x, act='relu').numpy(), [[0.0, 3 * math.sqrt(2)]], rtol=1e-12)
    np.testing.assert_allclose(bias_act(x, act='lrelu').numpy(), [[-0.4 * math.sqrt(2), 3 * math.sqrt(2)]],
                               rtol=1e-12)
    np.testing.assert_allclose(bias_act(x, act='linear').numpy(), [[-2.0, 3.0]], rtol=1e-12)
    np.testing.assert_allclose(bias_act(x, act='tanh').numpy(), np.tanh([[-2.0, 3.0]]), rtol=1e-12)


@pytest.mark.parametrize('act', ACTS)
@pytest.mark.parametrize('alpha,gain,clamp', [
    (0.1, None, None),
    (None, 0.5, None),
    (None, None, 0.7),
    (0.3, 2.5, 1.5),
    (None, 1.0, 0.0),
])
def test_bias_act_alpha_gain_clamp(act, alpha, gain, clamp):
    rng = _rng(2)
    x = rng.normal(size=[3, 4, 5]) * 2
    b = rng.normal(size=[4])
    y = bias_act(_t(x), _t(b), act=act, alpha=alpha, gain=gain, clamp=clamp)
    ref = _ref_bias_act(x, b, 1, act, alpha, gain, clamp)
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-12, atol=1e-12)
    if clamp is not None:
        assert float(y.abs().max()) <= clamp + 1e-12


def test_bias_act_lrelu_custom_alpha_explicit():
    x = _t([-1.0, -0.5, 0.5, 1.0])
    y = bias_act(x, dim=0, act='lrelu', alpha=0.1, gain=1)
    np.testing.assert_allclose(y.numpy(), [-0.1, -0.05, 0.5, 1.0], rtol=1e-12)


def test_bias_act_clamp_none_and_negative_disable_clamp():
    x = _t([-100.0, 100.0])
    np.testing.assert_allclose(bias_act(x, dim=0, clamp=None).numpy(), [-100.0, 100.0])
    np.testing.assert_allclose(bias_act(x, dim=0, clamp=-1).numpy(), [-100.0, 100.0])
    np.testing.assert_allclose(bias_act(x, dim=0, clamp=3).numpy(), [-3.0, 3.0])


def _composed_bias_act(x, b, act, alpha, gain, clamp):
    """The plain autograd composition that bias_act's fused node (linear / lrelu) stands for."""
    if b is not None:
        x = x + b.reshape(1, -1, 1, 1)
    if act == 'lrelu':
        x = torch.nn.functional.leaky_relu(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


@pytest.mark.parametrize('act,alpha,gain,clamp', [
    ('lrelu', 0.2, math.sqrt(2), None), ('lrelu', 0.2, math.sqrt(2), 1.03), ('lrelu', 0.0, 0.5, 0.831),
    ('linear', 0.0, 1.0, 1.03), ('linear', 0.0, math.sqrt(0.5), None), ('linear', 0.0, 2.0, 0.831),
    ('lrelu', 0.2, 1.0, 0.83)])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize('with_bias', [False, True])
def test_fused_bias_act_equals_the_composition_and_keeps_one_tensor(act, alpha, gain, clamp, dtype, with_bias):
    # An unclamped output exactly at the clamp is where the two differ (the composition passes its
    # gradient; the fused node, which sees only the output, takes it as clamped), so the clamps are
    # not round numbers. In bf16, 1.03 and 0.831 round up (every output at the bound was clamped),
    # 0.83 down (below the bound: clamped outputs must still be recognized).
    gen = torch.Generator().manual_seed(5)
    x = (torch.randn([2, 6, 5, 5], generator=gen) * 2).to(dtype)
    b = torch.randn([6], generator=gen).to(dtype) if with_bias else None
    dy = torch.randn([2, 6, 5, 5], generator=gen).to(dtype)
    runs = []
    for fn in (lambda x, b: bias_act(x, b, act=act, alpha=alpha, gain=gain, clamp=clamp),
               lambda x, b: _composed_bias_act(x, b, act, alpha, gain, clamp)):
        xi = x.clone().requires_grad_(True)
        bi = None if b is None else b.clone().requires_grad_(True)
        y = fn(xi, bi)
        saved = len(getattr(y.grad_fn, "saved_tensors", ()))
        y.backward(dy)
        runs.append((y, xi.grad, None if bi is None else bi.grad, saved))
    (y, gx, gb, saved), (y_ref, gx_ref, gb_ref, _) = runs
    assert y.dtype == dtype and torch.equal(y.detach(), y_ref.detach())    # the same values, bit for bit
    torch.testing.assert_close(gx, gx_ref)     # the factors are multiplied in another order: rounding only
    if with_bias:
        torch.testing.assert_close(gb, gb_ref)
    assert type(y.grad_fn).__name__ == '_LinearOrLReLUBackward' and saved == 1


def test_bias_act_outside_the_fused_cases_is_the_composition():
    x = torch.randn([2, 3, 4, 4], generator=torch.Generator().manual_seed(6), requires_grad=True)
    for kwargs in (dict(act='tanh'), dict(act='lrelu', gain=-1.0), dict(act='linear')):
        y = bias_act(x, **kwargs)
        assert y.grad_fn is None or type(y.grad_fn).__name__ != '_LinearOrLReLUBackward'


@pytest.mark.parametrize('shape,dim', [
    ([2, 3, 4, 5], 1),
    ([2, 3, 4, 5], 0),
    ([2, 3, 4, 5], 3),
    ([2, 3, 4, 5], -1),
    ([2, 3, 4, 5], -2),
    ([6, 7], 1),
    ([6, 7], 0),
    ([5], 0),
])
@pytest.mark.parametrize('act', ['linear', 'lrelu', 'softplus'])
def test_bias_act_bias_dim(shape, dim, act):
    rng = _rng(3)
    x = rng.normal(size=shape)
    b = rng.normal(size=[shape[dim]])
    y = bias_act(_t(x), _t(b), dim=dim, act=act)
    assert list(y.shape) == shape
    np.testing.assert_allclose(y.numpy(), _ref_bias_act(x, b, dim, act, None, None, None), rtol=1e-12, atol=1e-12)


def test_bias_act_bias_runs_along_dim():
    # A bias of [0, 10, 20] along dim 2 must shift x[..., k, :] by 10*k and nothing else.
    x = torch.zeros([1, 2, 3, 4], dtype=DT)
    y = bias_act(x, _t([0.0, 10.0, 20.0]), dim=2)
    for k in range(3):
        assert torch.all(y[:, :, k, :] == 10.0 * k)


def test_bias_act_unknown_activation():
    with pytest.raises((ValueError, KeyError, AssertionError)):
        bias_act(torch.zeros([1, 2]), act='gelu_nonexistent')


def test_bias_act_wrong_bias_shape():
    with pytest.raises((ValueError, AssertionError, RuntimeError)):
        bias_act(torch.zeros([1, 2, 3, 3]), torch.zeros([3]), dim=1)


def test_bias_act_float32():
    rng = _rng(4)
    x = rng.normal(size=[2, 3, 4, 4]).astype(np.float32)
    b = rng.normal(size=[3]).astype(np.float32)
    y = bias_act(torch.from_numpy(x), torch.from_numpy(b), act='lrelu')
    assert y.dtype == torch.float32
    np.testing.assert_allclose(y.numpy(), _ref_bias_act(x, b, 1, 'lrelu', None, None, None), rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------------------
# upfirdn2d: explicit loop reference
# ----------------------------------------------------------------------------------------

def _pad4(padding):
    if isinstance(padding, int):
        return padding, padding, padding, padding
    if len(padding) == 2:
        return padding[0], padding[0], padding[1], padding[1]
    return tuple(padding)


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def ref_upfirdn2d(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1.0):
    """Naive upfirdn2d: loops over every output pixel of every channel.

    x: numpy [N, C, H, W]; f: numpy [fh, fw], 1D [fw] (separable) or None.
    Step by step: zero-insertion upsampling (input sample i lands at index i*up), padding
    by (x0, x1, y0, y1) (negative crops), "valid" true convolution with f (correlation if
    flip_filter), then keeping every down-th sample starting at 0.
    """
    x = np.asarray(x, dtype=np.float64)
    if f is None:
        f2 = np.ones([1, 1])
    else:
        f = np.asarray(f, dtype=np.float64)
        f2 = np.outer(f, f) if f.ndim == 1 else f  # separable filter == outer product
    f2 = f2 * gain
    fh, fw = f2.shape
    upx, upy = _pair(up)
    downx, downy = _pair(down)
    px0, px1, py0, py1 = _pad4(padding)
    n, c, h, w = x.shape

    # Size of the padded (upsampled) signal, and of the filtered one.
    hp = h * upy + py0 + py1
    wp = w * upx + px0 + px1
    hf = hp - fh + 1
    wf = wp - fw + 1
    ho = -(-hf // downy)
    wo = -(-wf // downx)

    def padded(ni, ci, r, s):
        """Sample (r, s) of the upsampled-and-padded image."""
        r_up = r - py0
        s_up = s - px0
        if r_up < 0 or s_up < 0 or r_up >= h * upy or s_up >= w * upx:
            return 0.0
        if r_up % upy or s_up % upx:
            return 0.0
        return x[ni, ci, r_up // upy, s_up // upx]

    out = np.zeros([n, c, ho, wo])
    for ni in range(n):
        for ci in range(c):
            for oy in range(ho):
                for ox in range(wo):
                    r0 = oy * downy
                    s0 = ox * downx
                    acc = 0.0
                    for a in range(fh):
                        for bb in range(fw):
                            if flip_filter:   # correlation
                                acc += f2[a, bb] * padded(ni, ci, r0 + a, s0 + bb)
                            else:             # convolution: y[n] = sum_k f[k] p[n + K - 1 - k]
                                acc += f2[a, bb] * padded(ni, ci, r0 + fh - 1 - a, s0 + fw - 1 - bb)
                    out[ni, ci, oy, ox] = acc
    return out


def test_ref_upfirdn2d_sanity():
    # Delta at x=0, filter [1, 2] padded left by 1: convolution gives [1, 2, 0], correlation [2, 1, 0].
    x = np.array([1.0, 0.0, 0.0]).reshape(1, 1, 1, 3)
    f = np.array([[1.0, 2.0]])
    np.testing.assert_array_equal(ref_upfirdn2d(x, f, padding=[1, 0, 0, 0]).ravel(), [1, 2, 0])
    np.testing.assert_array_equal(ref_upfirdn2d(x, f, padding=[1, 0, 0, 0], flip_filter=True).ravel(), [2, 1, 0])


def test_upfirdn2d_hand_computed():
    x = torch.tensor([1.0, 0.0, 0.0], dtype=DT).reshape(1, 1, 1, 3)
    f = torch.tensor([[1.0, 2.0]], dtype=DT)
    y = upfirdn2d(x, f, padding=[1, 0, 0, 0])
    np.testing.assert_array_equal(y.numpy().ravel(), [1, 2, 0])
    y = upfirdn2d(x, f, padding=[1, 0, 0, 0], flip_filter=True)
    np.testing.assert_array_equal(y.numpy().ravel(), [2, 1, 0])
    # Zero insertion: [a, b] up 2 with identity filter -> [a, 0, b, 0].
    x = torch.tensor([3.0, 5.0], dtype=DT).reshape(1, 1, 1, 2)
    y = upfirdn2d(x, None, up=[2, 1])
    np.testing.assert_array_equal(y.numpy().ravel(), [3, 0, 5, 0])
    # Decimation keeps samples 0, 2, 4.
    x = torch.arange(5, dtype=DT).reshape(1, 1, 1, 5)
    y = upfirdn2d(x, None, down=[2, 1])
    np.testing.assert_array_equal(y.numpy().ravel(), [0, 2, 4])


UPFIRDN_CASES = [
    # (up, down, padding, filter shape ('2d', fh, fw) or ('1d', n) or None, flip_filter, gain)
    (1, 1, 0, ('2d', 3, 3), False, 1.0),
    (1, 1, 1, ('2d', 3, 3), True, 1.0),
    (1, 1, [2, 0, 1, 3], ('2d', 2, 3), False, 1.0),
    (2, 1, [2, 1, 2, 1], ('2d', 4, 4), False, 4.0),
    (2, 1, [2, 1, 2, 1], ('1d', 4), False, 4.0),
    (2, 1, [1, 2, 0, 3], ('1d', 4), True, 1.0),
    (1, 2, [1, 1, 1, 1], ('2d', 4, 4), False, 1.0),
    (1, 2, [1, 1, 1, 1], ('1d', 4), True, 1.0),
    (1, 2, [2, 1], ('1d', 3), False, 2.0),
    (2, 2, [1, 2, 1, 0], ('2d', 3, 4), False, 1.0),
    (2, 2, [1, 2, 1, 0], ('2d', 3, 4), True, 0.5),
    (3, 2, [0, 1, 2, 0], ('1d', 5), False, 1.0),
    (1, 3, 2, ('2d', 3, 3), False, 1.0),
    (1, 1, [-1, 2, 1, -2], ('2d', 3, 3), False, 1.0),
    (2, 1, [-2, -1, 0, -3], ('2d', 2, 2), True, 1.0),
    (1, 2, [-1, 0, 0, -1], ('1d', 2), False, 3.0),
    ([2, 1], [1, 2], [1, 0, 2, 1], ('2d', 3, 2), False, 1.0),
    ([1, 3], [2, 1], [0, 2, 1, 1], ('1d', 3), True, 1.5),
    (2, 1, [1, 0, 1, 0], None, False, 1.0),
    (1, 2, 0, None, False, 2.0),
]


def _make_filter(spec, rng):
    if spec is None:
        return None
    if spec[0] == '2d':
        return rng.normal(size=[spec[1], spec[2]])
    return rng.normal(size=[spec[1]])


@pytest.mark.parametrize('up,down,padding,fspec,flip_filter,gain', UPFIRDN_CASES)
def test_upfirdn2d_matches_loop_reference(up, down, padding, fspec, flip_filter, gain):
    rng = _rng(5)
    x = rng.normal(size=[2, 2, 5, 4])
    f = _make_filter(fspec, rng)   # random, asymmetric: flipping and orientation matter
    y = upfirdn2d(_t(x), None if f is None else _t(f), up=up, down=down, padding=padding,
                  flip_filter=flip_filter, gain=gain)
    ref = ref_upfirdn2d(x, f, up=up, down=down, padding=padding, flip_filter=flip_filter, gain=gain)
    assert tuple(y.shape) == ref.shape
    assert y.dtype == DT
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-10, atol=1e-12)


def test_upfirdn2d_float32_filter_with_float64_input():
    rng = _rng(6)
    x = rng.normal(size=[1, 3, 4, 4])
    f = setup_filter([1, 3, 3, 1])
    y = upfirdn2d(_t(x), f, up=2, padding=[2, 1, 2, 1], gain=4)
    ref = ref_upfirdn2d(x, f.double().numpy(), up=2, padding=[2, 1, 2, 1], gain=4)
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-10, atol=1e-12)


def test_upfirdn2d_identity():
    x = torch.randn([2, 3, 5, 6], dtype=DT)
    assert torch.equal(upfirdn2d(x, None), x)
    assert torch.equal(upfirdn2d(x, torch.ones([1], dtype=DT)), x)


# ----------------------------------------------------------------------------------------
# setup_filter, filter2d, upsample2d, downsample2d
# ----------------------------------------------------------------------------------------

def test_setup_filter_outer_product_and_normalisation():
    f = setup_filter([1, 3, 3, 1])
    assert f.dtype == torch.float32 and tuple(f.shape) == (4, 4)
    ref = np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64.0
    np.testing.assert_allclose(f.numpy(), ref, rtol=1e-7)
    assert abs(float(f.sum()) - 1) < 1e-6


def test_setup_filter_variants():
    # Long 1D lists stay separable (1D), normalised to sum 1.
    f = setup_filter([1, 2, 3, 4, 4, 3, 2, 1])
    assert tuple(f.shape) == (8,)
    np.testing.assert_allclose(f.numpy(), np.array([1, 2, 3, 4, 4, 3, 2, 1]) / 20.0, rtol=1e-6)
    # separable=True keeps a short list 1D.
    f = setup_filter([1, 2, 1], separable=True)
    assert tuple(f.shape) == (3,)
    np.testing.assert_allclose(f.numpy(), [0.25, 0.5, 0.25], rtol=1e-6)
    # 7 taps: still expanded to 2D.
    assert tuple(setup_filter([1] * 7).shape) == (7, 7)
    # normalize=False keeps the raw outer product.
    np.testing.assert_allclose(setup_filter([1, 2], normalize=False).numpy(), [[1, 2], [2, 4]])
    # flip_filter flips both axes.
    raw = [[1.0, 2.0], [3.0, 4.0]]
    np.testing.assert_allclose(setup_filter(raw, normalize=False, flip_filter=True).numpy(), [[4, 3], [2, 1]])
    # gain scales the overall response (2D: sum == gain; 1D: per-axis sqrt(gain)).
    assert abs(float(setup_filter([1, 3, 3, 1], gain=4).sum()) - 4) < 1e-5
    f1 = setup_filter([1, 3, 3, 1], gain=4, separable=True)
    assert abs(float(f1.sum()) - 2) < 1e-6
    # None -> identity.
    np.testing.assert_allclose(setup_filter(None).numpy().ravel(), [1.0])
    # 2D input normalised.
    np.testing.assert_allclose(setup_filter(raw).numpy(), np.array(raw) / 10.0, rtol=1e-6)


FILTERS = [
    None,
    [1, 1],
    [1, 2, 1],
    [1, 3, 3, 1],
    [1, 4, 6, 4, 1],
    [1, 2, 3, 4, 4, 3, 2, 1],   # separable (8 taps)
]


@pytest.mark.parametrize('taps', FILTERS)
@pytest.mark.parametrize('h,w', [(8, 8), (6, 10)])
def test_resample_output_sizes(taps, h, w):
    f = setup_filter(taps)
    x = torch.randn([1, 2, h, w])
    assert tuple(filter2d(x, f).shape) == (1, 2, h, w)
    assert tuple(upsample2d(x, f).shape) == (1, 2, 2 * h, 2 * w)
    assert tuple(downsample2d(x, f).shape) == (1, 2, h // 2, w // 2)
    # Extra padding adds to the size.
    assert tuple(filter2d(x, f, padding=[1, 2, 0, 3]).shape) == (1, 2, h + 3, w + 3)


def test_resample_factor_pairs():
    f = setup_filter([1, 3, 3, 1])
    x = torch.randn([1, 1, 6, 8])
    assert tuple(upsample2d(x, f, up=[2, 1]).shape) == (1, 1, 6, 16)
    assert tuple(downsample2d(x, f, down=[1, 2]).shape) == (1, 1, 3, 8)
    assert tuple(upsample2d(x, f, up=4).shape) == (1, 1, 24, 32)


@pytest.mark.parametrize('taps', [[1, 3, 3, 1], [1, 2, 1], [1, 4, 6, 4, 1], [1, 2, 3, 4, 4, 3, 2, 1]])
def test_constant_image_stays_constant(taps):
    f = setup_filter(taps)
    x = torch.full([1, 2, 12, 12], 0.7, dtype=DT)
    m = 4  # border margin affected by the zero padding
    y = filter2d(x, f)
    np.testing.assert_allclose(y[:, :, m:-m, m:-m].numpy(), 0.7, rtol=1e-6)
    u = upsample2d(x, f)
    np.testing.assert_allclose(u[:, :, 2 * m:-2 * m, 2 * m:-2 * m].numpy(), 0.7, rtol=1e-6)
    d = downsample2d(u, f)
    assert tuple(d.shape) == (1, 2, 12, 12)
    np.testing.assert_allclose(d[:, :, m:-m, m:-m].numpy(), 0.7, rtol=1e-6)
    dd = downsample2d(x, f)
    np.testing.assert_allclose(dd[:, :, 2:-2, 2:-2].numpy(), 0.7, rtol=1e-6)


def _ramp(n=16):
    return torch.arange(n, dtype=DT)[None, None, None, :].expand(1, 1, n, n).contiguous()


@pytest.mark.parametrize('taps', [[1, 2, 1], [1, 4, 6, 4, 1]])
def test_filter2d_odd_symmetric_filter_is_centred(taps):
    # A linear ramp is reproduced exactly (away from the borders) only if the output is centred.
    # (At the same resolution only odd-length filters can be centred on the pixel grid.)
    ramp, m = _ramp(), 4
    y = filter2d(ramp, setup_filter(taps))
    np.testing.assert_allclose(y[..., m:-m, m:-m].numpy(), ramp[..., m:-m, m:-m].numpy(), rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize('taps', [[1, 1], [1, 3, 3, 1], [1, 2, 3, 4, 4, 3, 2, 1]])
def test_up_down_even_symmetric_filter_is_centred(taps):
    # With pixel centres at i + 0.5, an even-length symmetric filter keeps upsample2d and
    # downsample2d centred, so their composition reproduces a linear ramp in the interior,
    # and the two upsampled pixels 2i, 2i+1 sit symmetrically around input pixel i.
    f = setup_filter(taps)
    ramp, m = _ramp(), 5
    y = downsample2d(upsample2d(ramp, f), f)
    np.testing.assert_allclose(y[..., m:-m, m:-m].numpy(), ramp[..., m:-m, m:-m].numpy(), rtol=1e-6, atol=1e-5)
    u = upsample2d(ramp, f)[0, 0, 16]
    pair_mean = (u[0::2] + u[1::2]) / 2
    i = torch.arange(16, dtype=DT)
    np.testing.assert_allclose(pair_mean[m:-m].numpy(), i[m:-m].numpy(), rtol=1e-6, atol=1e-5)
    if taps == [1, 3, 3, 1]:  # bilinear: exactly the ramp sampled at j / 2 - 1/4
        j = torch.arange(32, dtype=DT)
        np.testing.assert_allclose(u[2 * m:-2 * m].numpy(), (j / 2 - 0.25)[2 * m:-2 * m].numpy(), rtol=1e-6)
    d = downsample2d(ramp, f)[0, 0, 4]
    k = torch.arange(8, dtype=DT)
    np.testing.assert_allclose(d[2:-2].numpy(), (2 * k + 0.5)[2:-2].numpy(), rtol=1e-6, atol=1e-5)


def _wrapper_filter(spec):
    if spec[0] == 'taps':
        return setup_filter(spec[1]).double()   # float64 so the reference can be matched tightly
    g = torch.Generator().manual_seed(13)
    return torch.rand(spec[1], generator=g, dtype=torch.float64) + 0.1   # asymmetric 2D [fh, fw]


WRAPPER_FILTERS = [('taps', [1, 3, 3, 1]), ('taps', [1, 2, 3, 4, 4, 3, 2, 1]), ('taps', [1, 2, 1]),
                   ('taps', [1, 4, 6, 4, 1]), ('rand', [3, 4]), ('rand', [5, 2])]


@pytest.mark.parametrize('fspec', WRAPPER_FILTERS)
@pytest.mark.parametrize('factor,padding,flip_filter,gain', [
    (2, 0, False, 1.0),
    (3, 0, True, 1.0),
    (2, [1, 0, 2, 1], False, 2.0),
])
def test_resample_wrappers_match_reference(fspec, factor, padding, flip_filter, gain):
    # The wrappers pad by the call's padding plus what centres the filter:
    #   filter2d:     [fw // 2,                 (fw - 1) // 2]
    #   upsample2d:   [(fw + up - 1) // 2,      (fw - up) // 2]     (and gain * up**2)
    #   downsample2d: [(fw - down + 1) // 2,    (fw - down) // 2]
    # (same with fh along y).
    rng = _rng(7)
    x = rng.normal(size=[1, 2, 6, 5])
    f = _wrapper_filter(fspec)
    fn = f.double().numpy()
    fh, fw = (fn.shape[0], fn.shape[0]) if fn.ndim == 1 else fn.shape
    px0, px1, py0, py1 = _pad4(padding)
    kw = dict(flip_filter=flip_filter, gain=gain)

    y = filter2d(_t(x), f, padding=padding, **kw)
    pad = [px0 + fw // 2, px1 + (fw - 1) // 2, py0 + fh // 2, py1 + (fh - 1) // 2]
    np.testing.assert_allclose(y.numpy(), ref_upfirdn2d(x, fn, padding=pad, **kw), rtol=1e-10, atol=1e-12)

    y = upsample2d(_t(x), f, up=factor, padding=padding, **kw)
    u = factor
    pad = [px0 + (fw + u - 1) // 2, px1 + (fw - u) // 2, py0 + (fh + u - 1) // 2, py1 + (fh - u) // 2]
    ref = ref_upfirdn2d(x, fn, up=u, padding=pad, flip_filter=flip_filter, gain=gain * u * u)
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-10, atol=1e-12)

    y = downsample2d(_t(x), f, down=factor, padding=padding, **kw)
    d = factor
    pad = [px0 + (fw - d + 1) // 2, px1 + (fw - d) // 2, py0 + (fh - d + 1) // 2, py1 + (fh - d) // 2]
    np.testing.assert_allclose(y.numpy(), ref_upfirdn2d(x, fn, down=d, padding=pad, **kw), rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------------------
# conv2d_resample: against the direct composition
# ----------------------------------------------------------------------------------------

def _adjusted_padding(padding, f, up, down):
    """The call's padding, plus what centres the resampling filter (as conv2d_resample does)."""
    px0, px1, py0, py1 = _pad4(padding)
    if f is None:
        fw = fh = 1
    else:
        fh, fw = (f.shape[0], f.shape[0]) if f.ndim == 1 else tuple(f.shape)
    if up > 1:
        px0 += (fw + up - 1) // 2
        px1 += (fw - up) // 2
        py0 += (fh + up - 1) // 2
        py1 += (fh - up) // 2
    if down > 1:
        px0 += (fw - down + 1) // 2
        px1 += (fw - down) // 2
        py0 += (fh - down + 1) // 2
        py1 += (fh - down) // 2
    return [px0, px1, py0, py1]


def ref_conv2d_resample(x, w, f, up, down, padding, groups, flip_weight, flip_filter):
    """upfirdn2d(up, pad) -> conv2d -> upfirdn2d(down), using the loop reference for upfirdn2d."""
    fn = None if f is None else f.double().numpy()
    pad = _adjusted_padding(padding, f, up, down)
    xn = x.numpy()
    if up > 1:
        y = ref_upfirdn2d(xn, fn, up=up, padding=pad, flip_filter=flip_filter, gain=up ** 2)
    else:
        y = ref_upfirdn2d(xn, None, padding=pad)   # plain zero padding / cropping
    wk = w if flip_weight else w.flip([2, 3])      # F.conv2d correlates; flip to convolve
    y = F.conv2d(_t(y), wk, groups=groups).numpy()
    if down > 1:
        y = ref_upfirdn2d(y, fn, down=down, flip_filter=flip_filter)
    return y


CONV_CASES = [
    # (k, up, down, padding, groups, flip_weight, flip_filter, filter)
    (3, 1, 1, 1, 1, True, False, None),
    (3, 1, 1, 1, 1, False, False, None),
    (3, 1, 1, 0, 2, True, False, None),
    (3, 1, 1, [0, 1, 2, 1], 1, True, False, None),
    (3, 1, 1, [-1, 1, 2, 0], 1, False, False, None),
    (3, 2, 1, 1, 1, True, False, 'sym4'),
    (3, 2, 1, 1, 1, False, False, 'sym4'),
    (3, 2, 1, 0, 1, True, False, 'sym4'),
    (3, 2, 1, 1, 2, True, False, 'sym4'),
    (3, 2, 1, 1, 2, False, False, 'sym4'),
    (3, 2, 1, [0, 1, 1, 2], 1, True, False, 'sym4'),
    (3, 2, 1, 1, 1, True, False, 'rand3x4'),
    (3, 2, 1, 1, 1, True, True, 'rand3x4'),
    (3, 2, 1, 1, 1, True, False, 'sep8'),
    (2, 2, 1, 1, 1, True, False, 'sym4'),
    (5, 2, 1, 2, 1, False, False, 'sym4'),
    (3, 1, 2, 1, 1, True, False, 'sym4'),
    (3, 1, 2, 1, 1, False, False, 'sym4'),
    (3, 1, 2, 1, 2, True, False, 'sym4'),
    (3, 1, 2, [1, 0, 2, 1], 1, True, False, 'sym4'),
    (3, 1, 2, 1, 1, False, True, 'rand3x4'),
    (3, 1, 2, 0, 1, True, False, 'sep8'),
    (1, 2, 1, 0, 1, True, False, 'sym4'),
    (1, 2, 1, 0, 2, False, False, 'sym4'),
    (1, 2, 1, [1, 0, 0, 1], 1, True, True, 'rand3x4'),
    (1, 1, 2, 0, 1, True, False, 'sym4'),
    (1, 1, 2, 0, 2, False, False, 'sym4'),
    (1, 1, 2, [0, 1, 1, 0], 1, True, True, 'rand3x4'),
    (3, 2, 2, 1, 1, True, False, 'sym4'),
    (3, 2, 2, 1, 2, False, True, 'rand3x4'),
    (3, 2, 1, 1, 1, True, False, 'rand2x5'),
    (3, 1, 2, 1, 1, True, False, 'rand2x5'),
    (1, 2, 1, 0, 1, False, False, 'rand2x5'),
    (1, 1, 2, 0, 1, False, False, 'rand2x5'),
    (3, 2, 2, [1, 0, 0, 2], 1, True, False, 'rand2x5'),
    # non-square kernels [kh, kw]
    ((3, 1), 2, 1, 1, 1, True, False, 'sym4'),
    ((1, 3), 2, 1, [1, 1, 0, 0], 2, False, False, 'rand3x4'),
    ((2, 3), 1, 2, 1, 1, False, False, 'rand2x5'),
    ((2, 3), 1, 1, [0, 2, 1, 0], 1, True, False, None),
    ((3, 5), 2, 2, 1, 1, False, False, 'sym4'),
    ((3, 5), 2, 1, 0, 1, True, False, 'sym4'),              # transposed-conv padding differs in x and y
    ((5, 3), 2, 1, [0, 1, -1, 0], 2, False, False, 'sym4'),
    (3, 1, 1, [2, 1], 1, True, False, None),                 # symmetric but different in x and y
    ((3, 5), 1, 1, [2, 1], 1, False, False, None),
]


def _conv_filter(name):
    if name is None:
        return None
    if name == 'sym4':
        return setup_filter([1, 3, 3, 1])
    if name == 'sep8':
        return setup_filter([1, 2, 3, 4, 4, 3, 2, 1])
    g = torch.Generator().manual_seed(11)
    shape = [3, 4] if name == 'rand3x4' else [2, 5]
    return torch.rand(shape, generator=g, dtype=torch.float64) + 0.1   # asymmetric, non-square [fh, fw]


@pytest.mark.parametrize('k,up,down,padding,groups,flip_weight,flip_filter,fname', CONV_CASES)
def test_conv2d_resample_matches_composition(k, up, down, padding, groups, flip_weight, flip_filter, fname):
    g = torch.Generator().manual_seed(3)
    cin, cout = 4, 6
    x = torch.randn([2, cin, 6, 5], generator=g, dtype=DT)
    kh, kw = (k, k) if isinstance(k, int) else k
    w = torch.randn([cout, cin // groups, kh, kw], generator=g, dtype=DT)
    f = _conv_filter(fname)
    y = conv2d_resample(x, w, f=f, up=up, down=down, padding=padding, groups=groups,
                        flip_weight=flip_weight, flip_filter=flip_filter)
    ref = ref_conv2d_resample(x, w, f, up, down, padding, groups, flip_weight, flip_filter)
    assert tuple(y.shape) == ref.shape
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize('up,down,expected', [(1, 1, (8, 8)), (2, 1, (16, 16)), (1, 2, (4, 4))])
def test_conv2d_resample_stylegan_sizes(up, down, expected):
    # The StyleGAN2 layers use padding = kernel_size // 2 and expect H, 2H, H/2.
    x = torch.randn([1, 3, 8, 8])
    w = torch.randn([5, 3, 3, 3])
    y = conv2d_resample(x, w, f=setup_filter([1, 3, 3, 1]), up=up, down=down, padding=1)
    assert tuple(y.shape) == (1, 5) + expected


def test_conv2d_resample_flip_weight_matters():
    g = torch.Generator().manual_seed(5)
    x = torch.randn([1, 2, 5, 5], generator=g, dtype=DT)
    w = torch.randn([3, 2, 3, 3], generator=g, dtype=DT)
    a = conv2d_resample(x, w, padding=1, flip_weight=True)
    b = conv2d_resample(x, w, padding=1, flip_weight=False)
    torch.testing.assert_close(a, F.conv2d(x, w, padding=1))
    torch.testing.assert_close(b, F.conv2d(x, w.flip([2, 3]), padding=1))
    assert not torch.allclose(a, b)


def test_conv2d_resample_errors():
    x = torch.randn([1, 2, 5, 5])
    w = torch.randn([3, 2, 3, 3])
    with pytest.raises((ValueError, AssertionError)):
        conv2d_resample(x, w, f=None, up=2)
    with pytest.raises((ValueError, AssertionError)):
        conv2d_resample(x, w.double())


# ----------------------------------------------------------------------------------------
# fma
# ----------------------------------------------------------------------------------------

@pytest.mark.parametrize('sa,sb,sc', [
    ([2, 3], [2, 3], [2, 3]),
    ([2, 3, 4], [3, 1], [4]),
    ([1, 3, 1], [2, 1, 4], [2, 3, 4]),
    ([3], [3], [2, 3]),          # c larger than a * b
    ([], [2, 3], [1]),
    ([4, 1, 5], [1], [1, 5]),
])
def test_fma_broadcasting(sa, sb, sc):
    rng = _rng(8)
    a, b, c = rng.normal(size=sa), rng.normal(size=sb), rng.normal(size=sc)
    y = fma(_t(a), _t(b), _t(c))
    ref = a * b + c
    assert tuple(y.shape) == ref.shape
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-12, atol=1e-12)


def test_fma_gradient_shapes():
    a = torch.randn([2, 3, 1], dtype=DT, requires_grad=True)
    b = torch.randn([1, 3, 4], dtype=DT, requires_grad=True)
    c = torch.randn([4], dtype=DT, requires_grad=True)
    fma(a, b, c).sum().backward()
    assert a.grad.shape == a.shape and b.grad.shape == b.shape and c.grad.shape == c.shape
    torch.testing.assert_close(c.grad, torch.full([4], 6.0, dtype=DT))
    torch.testing.assert_close(a.grad, b.detach().sum(dim=2, keepdim=True).expand(2, 3, 1))


# ----------------------------------------------------------------------------------------
# gradcheck (float64)
# ----------------------------------------------------------------------------------------

def _away_from_zero(shape, g, margin=0.3):
    v = torch.rand(shape, generator=g, dtype=DT) + margin
    sign = torch.where(torch.rand(shape, generator=g) < 0.5, -1.0, 1.0).to(DT)
    return v * sign


def test_gradcheck_bias_act_lrelu():
    g = torch.Generator().manual_seed(0)
    b = torch.randn([2], generator=g, dtype=DT)
    z = _away_from_zero([1, 2, 5, 5], g)           # pre-activation values, |z| >= 0.3
    x = (z - b[None, :, None, None]).clone().requires_grad_(True)
    b.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x, b: bias_act(x, b, act='lrelu', alpha=0.2), (x, b))
    assert torch.autograd.gradcheck(lambda x, b: bias_act(x, b, act='relu', gain=1.5), (x, b))


@pytest.mark.parametrize('act', ['softplus', 'swish', 'tanh', 'sigmoid', 'elu', 'selu'])
def test_gradcheck_bias_act_smooth(act):
    g = torch.Generator().manual_seed(1)
    x = _away_from_zero([1, 2, 5, 5], g, margin=0.05).requires_grad_(True)
    b = torch.randn([5], generator=g, dtype=DT).mul(0.01).requires_grad_(True)
    # bias along the last dim; elu/selu stay away from their kink at 0.
    assert torch.autograd.gradcheck(lambda x, b: bias_act(x, b, dim=3, act=act, gain=1.3), (x, b))


def test_gradcheck_bias_act_clamp_away_from_bounds():
    g = torch.Generator().manual_seed(2)
    x = (torch.rand([1, 2, 5, 5], generator=g, dtype=DT) * 0.8 - 0.4).requires_grad_(True)  # tanh < 0.4 < clamp
    assert torch.autograd.gradcheck(lambda x: bias_act(x, act='tanh', clamp=0.8), (x,))
    # Saturated values have zero gradient.
    xs = torch.tensor([5.0, -5.0], dtype=DT, requires_grad=True)
    bias_act(xs, dim=0, act='linear', clamp=1.0).sum().backward()
    torch.testing.assert_close(xs.grad, torch.zeros(2, dtype=DT))


@pytest.mark.parametrize('up,down,padding,separable,flip_filter', [
    (2, 1, [2, 1, 2, 1], False, False),
    (1, 2, [1, 1, 1, 1], True, False),
    (2, 2, [1, 2, 0, 1], False, True),
    (1, 1, [-1, 2, 1, 0], True, False),
])
def test_gradcheck_upfirdn2d(up, down, padding, separable, flip_filter):
    g = torch.Generator().manual_seed(3)
    x = torch.randn([1, 2, 5, 5], generator=g, dtype=DT, requires_grad=True)
    f = torch.randn([3] if separable else [3, 4], generator=g, dtype=DT)
    assert torch.autograd.gradcheck(
        lambda x: upfirdn2d(x, f, up=up, down=down, padding=padding, flip_filter=flip_filter, gain=1.7), (x,))


def test_gradcheck_resample_wrappers():
    g = torch.Generator().manual_seed(4)
    x = torch.randn([1, 2, 6, 6], generator=g, dtype=DT, requires_grad=True)
    f = setup_filter([1, 3, 3, 1])
    assert torch.autograd.gradcheck(lambda x: upsample2d(x, f), (x,))
    assert torch.autograd.gradcheck(lambda x: downsample2d(x, f), (x,))
    assert torch.autograd.gradcheck(lambda x: filter2d(x, f), (x,))


@pytest.mark.parametrize('k,up,down,groups,flip_weight', [
    (3, 2, 1, 1, True),
    (3, 2, 1, 2, False),
    (3, 1, 2, 1, True),
    (3, 1, 2, 2, False),
    (1, 2, 1, 1, True),
    (1, 1, 2, 1, True),
    (3, 1, 1, 1, False),
])
def test_gradcheck_conv2d_resample(k, up, down, groups, flip_weight):
    g = torch.Generator().manual_seed(5)
    x = torch.randn([1, 2, 5, 5], generator=g, dtype=DT, requires_grad=True)
    w = torch.randn([2, 2 // groups, k, k], generator=g, dtype=DT, requires_grad=True)
    f = setup_filter([1, 3, 3, 1])
    assert torch.autograd.gradcheck(
        lambda x, w: conv2d_resample(x, w, f=f, up=up, down=down, padding=k // 2, groups=groups,
                                     flip_weight=flip_weight), (x, w))


def test_gradcheck_fma():
    g = torch.Generator().manual_seed(6)
    a = torch.randn([2, 3, 1], generator=g, dtype=DT, requires_grad=True)
    b = torch.randn([1, 3, 4], generator=g, dtype=DT, requires_grad=True)
    c = torch.randn([4], generator=g, dtype=DT, requires_grad=True)
    assert torch.autograd.gradcheck(fma, (a, b, c))


# ----------------------------------------------------------------------------
# Memory layout of the convolutions' inputs (torch_utils.misc.conv_layout).

def test_conv_layout_is_channels_last_only_in_cpu_bf16_autocast_with_amx(monkeypatch):
    from torch_utils import misc
    x = torch.randn(2, 8, 5, 5)
    channels_last = lambda t: t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()  # noqa: E731
    monkeypatch.setattr(misc, 'cpu_has_amx', lambda: True)
    assert misc.conv_layout(x) is x                                  # no autocast: as it is
    with torch.autocast('cpu', dtype=torch.bfloat16):
        y = misc.conv_layout(x)
        assert channels_last(y) and torch.equal(y, x)                # same values, NHWC strides
        flat = torch.randn(2, 8, 5)
        assert misc.conv_layout(flat) is flat                        # not 4-D
    with torch.autocast('cpu', dtype=torch.float16):
        assert misc.conv_layout(x) is x                              # bf16 only
    monkeypatch.setattr(misc, 'cpu_has_amx', lambda: False)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert misc.conv_layout(x) is x                              # CPUs without AMX keep NCHW


@pytest.mark.parametrize('up,down', [(1, 1), (2, 1), (1, 2)])
def test_conv2d_resample_same_result_in_either_layout(up, down, monkeypatch):
    """Under bf16 autocast, NCHW and NHWC inputs give the fp32 result to bf16 accuracy.

    Each layout is compared with the fp32 result rather than with the other: on a CPU without
    native bf16 kernels (AVX2) the two layouts take different reference kernels, whose roundings
    differ by about 1% of the largest gradient, so a bound on their difference in absolute units
    held on AMX CPUs only. The bound is 2% of each tensor's largest magnitude (bf16 keeps 8
    significant bits; a 3x3x4 convolution sums 36 rounded products).
    """
    from torch_utils import misc
    gen = torch.Generator().manual_seed(0)
    w = torch.randn([6, 4, 3, 3], generator=gen)
    f = setup_filter([1, 3, 3, 1])
    results = {}
    for layout in ('fp32', 'nchw', 'nhwc'):
        monkeypatch.setattr(misc, 'cpu_has_amx', lambda amx=(layout == 'nhwc'): amx)
        x = torch.randn([2, 4, 8, 8], generator=torch.Generator().manual_seed(1)).requires_grad_(True)
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=layout != 'fp32'):
            y = conv2d_resample(x, w, f=f, up=up, down=down, padding=1)
        y.float().square().sum().backward()
        results[layout] = y.detach().float(), x.grad
    ref_y, ref_grad = results['fp32']
    for layout in ('nchw', 'nhwc'):
        y, grad = results[layout]
        torch.testing.assert_close(y, ref_y, atol=2e-2 * float(ref_y.abs().max()), rtol=0)
        torch.testing.assert_close(grad, ref_grad, atol=2e-2 * float(ref_grad.abs().max()), rtol=0)
