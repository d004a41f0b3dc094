"""Filtered leaky ReLU: StyleGAN3's alias-suppressing nonlinearity, in plain PyTorch.

For each channel of ``x`` the function computes, in this order:

1. add the bias ``b``;
2. upsample by ``up`` with the FIR filter ``fu`` (zero insertion, ``padding``, convolution,
   gain ``up**2``), exactly as ``upfirdn2d(x, fu, up=up, padding=padding, gain=up**2)``;
3. leaky ReLU with slope ``slope``, times ``gain``, clamped to ``[-clamp, clamp]``;
4. filter with ``fd`` (no padding: every output sample sees a full filter footprint) and keep
   every ``down``-th sample, as ``upfirdn2d(x, fd, down=down)``.

Steps 2 and 4 are not computed literally: the upsampling runs in polyphase form (``up``
short convolutions at the input rate, interleaved: no multiplications by inserted zeros) and
the downsampling as a convolution with stride ``down`` (no samples computed only to be thrown
away), all as depthwise convolutions; separable (1D) filters run as two 1D passes. The
result equals the literal composition up to float rounding (tests/test_stylegan3.py checks
that, and the float64 gradients). Half-precision inputs are computed in float32 and the
result is returned in float16.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F

from .bias_act import bias_act
from .upfirdn2d import get_filter_size, parse_padding


def _check_filter(f: Optional[torch.Tensor], name: str) -> None:
    if f is not None and (not isinstance(f, torch.Tensor) or f.ndim not in (1, 2)):
        raise ValueError(f'{name} must be None or a 1D (separable) or 2D filter tensor')


def _upsample_axis(x: torch.Tensor, f: torch.Tensor, up: int, dim: int) -> torch.Tensor:
    """Full convolution of the ``up``-fold zero-stuffed ``x`` with the 1D kernel ``f`` along ``dim`` (2 or 3).

    Computed in polyphase form: phase ``p`` of the output is the plain convolution of ``x`` with
    ``f[p::up]``; the phases are then interleaved. Output length ``(L - 1) * up + len(f')``,
    with ``f'`` = ``f`` zero-padded to a multiple of ``up`` taps.
    """
    channels = x.shape[1]
    taps = -(-f.shape[0] // up)  # taps per phase
    f = F.pad(f, [0, taps * up - f.shape[0]])
    phases = torch.stack([f[p::up].flip(0) for p in range(up)])  # conv2d correlates: flip to convolve
    shape = [up, 1, 1, taps] if dim == 3 else [up, 1, taps, 1]
    weight = phases.reshape(shape).repeat(channels, 1, 1, 1)  # [C * up, 1, kh, kw]
    padding = (0, taps - 1) if dim == 3 else (taps - 1, 0)
    y = F.conv2d(x, weight, padding=padding, groups=channels)  # [N, C * up, H', W']
    n, _, h, w = y.shape
    y = y.reshape(n, channels, up, h, w)
    if dim == 3:
        return y.permute(0, 1, 3, 4, 2).reshape(n, channels, h, w * up)
    return y.permute(0, 1, 3, 2, 4).reshape(n, channels, h * up, w)


def _upsample(x: torch.Tensor, fu: Optional[torch.Tensor], up: int, padding, flip_filter: bool) -> torch.Tensor:
    """``upfirdn2d(x, fu, up=up, padding=padding, gain=up**2, flip_filter=flip_filter)``."""
    px0, px1, py0, py1 = padding
    fw, fh = get_filter_size(fu)
    in_h, in_w = x.shape[2:]
    if fu is None and up == 1:
        return F.pad(x, [px0, px1, py0, py1])
    if fu is None:
        fu = torch.ones([1], dtype=x.dtype, device=x.device)
    f = fu.to(dtype=x.dtype, device=x.device)
    f = f.flip(list(range(f.ndim))) if flip_filter else f
    channels = x.shape[1]
    if f.ndim == 1:
        x = _upsample_axis(x, f * up, up, dim=3)
        x = _upsample_axis(x, f * up, up, dim=2)
    else:  # non-separable: a depthwise transposed convolution (scatters the kernel, i.e. convolves)
        weight = (f * (up * up)).reshape(1, 1, fh, fw).repeat(channels, 1, 1, 1)
        x = F.conv_transpose2d(x, weight, stride=up, groups=channels)
    # x is now the full convolution of the zero-stuffed image, less its trailing up-1 zero
    # samples: shift and cut it to the requested padding.
    x0, y0 = px0 - fw + 1, py0 - fh + 1
    x1 = in_w * up + px0 + px1 - fw + 1 - x.shape[3] - x0
    y1 = in_h * up + py0 + py1 - fh + 1 - x.shape[2] - y0
    return F.pad(x, [x0, x1, y0, y1])


def _downsample(x: torch.Tensor, fd: Optional[torch.Tensor], down: int, flip_filter: bool) -> torch.Tensor:
    """``upfirdn2d(x, fd, down=down, flip_filter=flip_filter)``: a depthwise strided convolution."""
    if fd is None:
        return x[:, :, ::down, ::down] if down > 1 else x
    fw, fh = get_filter_size(fd)
    channels = x.shape[1]
    f = fd.to(dtype=x.dtype, device=x.device)
    f = f if flip_filter else f.flip(list(range(f.ndim)))  # conv2d correlates: flip to convolve
    if f.ndim == 1:
        x = F.conv2d(x, f.reshape(1, 1, 1, fw).repeat(channels, 1, 1, 1), stride=(1, down), groups=channels)
        return F.conv2d(x, f.reshape(1, 1, fh, 1).repeat(channels, 1, 1, 1), stride=(down, 1), groups=channels)
    return F.conv2d(x, f.reshape(1, 1, fh, fw).repeat(channels, 1, 1, 1), stride=down, groups=channels)


def filtered_lrelu(x: torch.Tensor, fu: Optional[torch.Tensor] = None, fd: Optional[torch.Tensor] = None,
                   b: Optional[torch.Tensor] = None, up: int = 1, down: int = 1,
                   padding: Union[int, Sequence[int]] = 0, gain: float = math.sqrt(2), slope: float = 0.2,
                   clamp: Optional[float] = None, flip_filter: bool = False) -> torch.Tensor:
    """Bias, FIR upsampling, leaky ReLU with gain and clamp, FIR downsampling.

    Args:
        x:       Input ``[N, C, H, W]`` (float16, float32 or float64).
        fu:      Upsampling filter: ``[fh, fw]``, separable ``[fw]``, or ``None`` (identity).
        fd:      Downsampling filter, same forms as ``fu``.
        b:       Optional bias ``[C]``.
        up:      Integer upsampling factor.
        down:    Integer downsampling factor.
        padding: Padding of the upsampled image before ``fu``: int, ``[x, y]`` or
                 ``[x0, x1, y0, y1]``; negative values crop.
        gain:    Scale applied after the upsampling filter, before clamping.
        slope:   Slope of the leaky ReLU for negative inputs (1 makes it linear).
        clamp:   Clamp the activations to ``[-clamp, clamp]``; ``None`` disables it.
        flip_filter: ``False`` convolves with the filters, ``True`` correlates.
    Returns:
        ``[N, C, H_out, W_out]`` in the dtype of ``x``, with
        ``W_out = (W * up + px0 + px1 - (fu_w - 1) - (fd_w - 1) + down - 1) // down`` (``H_out`` alike).
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f'expected images [N, C, H, W], got {getattr(x, "shape", type(x))}')
    _check_filter(fu, 'fu')
    _check_filter(fd, 'fd')
    if not (isinstance(up, int) and isinstance(down, int) and up >= 1 and down >= 1):
        raise ValueError('up and down must be positive integers')
    if not gain > 0 or slope < 0 or (clamp is not None and clamp < 0):
        raise ValueError('gain must be positive, slope and clamp non-negative')
    pad = parse_padding(padding)
    batch_size, channels, in_h, in_w = x.shape
    if b is not None and (b.ndim != 1 or b.shape[0] != channels):
        raise ValueError(f'bias of shape {list(b.shape)} does not fit {channels} channels')
    fu_w, fu_h = get_filter_size(fu)
    fd_w, fd_h = get_filter_size(fd)
    out_w = (in_w * up + pad[0] + pad[1] - (fu_w - 1) - (fd_w - 1) + (down - 1)) // down
    out_h = (in_h * up + pad[2] + pad[3] - (fu_h - 1) - (fd_h - 1) + (down - 1)) // down
    if out_w < 1 or out_h < 1:
        raise ValueError(f'padding {list(pad)} leaves no output for a {in_h}x{in_w} input')

    in_dtype = x.dtype
    work_dtype = torch.float32 if in_dtype == torch.float16 else in_dtype
    y = x.to(work_dtype)
    if b is not None:
        y = y + b.to(work_dtype).reshape(1, -1, 1, 1)
    y = _upsample(y, fu, up, pad, flip_filter)
    y = bias_act(y, act='lrelu', alpha=slope, gain=gain, clamp=clamp)
    y = _downsample(y, fd, down, flip_filter)
    if y.shape[2:] != (out_h, out_w):  # cannot happen unless the size formulas above are wrong
        raise AssertionError(f'filtered_lrelu produced {list(y.shape[2:])}, expected {[out_h, out_w]}')
    return y.to(in_dtype)
