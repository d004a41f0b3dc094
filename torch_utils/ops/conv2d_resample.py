"""2D convolution combined with FIR upsampling or downsampling.

``conv2d_resample`` computes, up to float rounding, the composition
``upfirdn2d(up) -> conv2d -> upfirdn2d(down)`` but picks the cheapest equivalent order:
a strided convolution after filtering when downsampling, a strided transposed
convolution before filtering when upsampling.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F

from .. import misc
from .upfirdn2d import get_filter_size, parse_padding, upfirdn2d


def _conv(x: torch.Tensor, w: torch.Tensor, stride: int = 1, padding=0, groups: int = 1,
          transpose: bool = False, flip_weight: bool = True) -> torch.Tensor:
    """``conv2d`` (or ``conv_transpose2d``) that optionally flips the kernel first.

    PyTorch's convolution is a correlation; ``flip_weight=False`` turns it into a true
    convolution by flipping the kernel spatially.
    """
    if not flip_weight and (w.shape[2] > 1 or w.shape[3] > 1):
        w = w.flip([2, 3])
    op = F.conv_transpose2d if transpose else F.conv2d
    return op(misc.conv_layout(x), w, stride=stride, padding=padding, groups=groups)


def conv2d_resample(x: torch.Tensor, w: torch.Tensor, f: Optional[torch.Tensor] = None, up: int = 1,
                    down: int = 1, padding: Union[int, Sequence[int]] = 0, groups: int = 1,
                    flip_weight: bool = True, flip_filter: bool = False) -> torch.Tensor:
    """Convolve ``x`` with ``w``, upsampling or downsampling with filter ``f``.

    Args:
        x:       Input ``[N, C_in, H, W]``.
        w:       Weight ``[C_out, C_in // groups, kh, kw]``.
        f:       FIR filter from ``upfirdn2d.setup_filter`` (needed when ``up`` or ``down`` > 1).
        up:      Integer upsampling factor (applied before the convolution).
        down:    Integer downsampling factor (applied after the convolution).
        padding: Padding of the convolution in the upsampled frame: int, ``[x, y]`` or
                 ``[x0, x1, y0, y1]``.
        groups:  Convolution groups.
        flip_weight: ``True`` correlates (as ``torch.nn.functional.conv2d``), ``False`` convolves.
        flip_filter: ``False`` convolves with ``f``, ``True`` correlates.
    Returns:
        Output ``[N, C_out, H_out, W_out]``.
    """
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError(f"expected 4D input and weight, got {list(x.shape)} and {list(w.shape)}")
    if w.dtype != x.dtype:
        raise ValueError(f"input and weight dtypes differ: {x.dtype} vs {w.dtype}")
    if (up > 1 or down > 1) and f is None:
        raise ValueError("a resampling filter is required when up or down > 1")
    if not (isinstance(up, int) and isinstance(down, int) and up >= 1 and down >= 1):
        raise ValueError("up and down must be positive integers")
    out_channels, in_per_group, kh, kw = w.shape
    fw, fh = get_filter_size(f)
    px0, px1, py0, py1 = parse_padding(padding)

    # Padding that centres the resampling filter.
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

    pointwise = kw == 1 and kh == 1

    # 1x1 kernel with downsampling: filter and decimate first, then the cheap pointwise conv.
    if pointwise and down > 1 and up == 1:
        x = upfirdn2d(x, f, down=down, padding=[px0, px1, py0, py1], flip_filter=flip_filter)
        return _conv(x, w, groups=groups, flip_weight=flip_weight)

    # 1x1 kernel with upsampling: pointwise conv at low resolution, then upsample.
    if pointwise and up > 1 and down == 1:
        x = _conv(x, w, groups=groups, flip_weight=flip_weight)
        return upfirdn2d(x, f, up=up, padding=[px0, px1, py0, py1], gain=up ** 2, flip_filter=flip_filter)

    # Downsampling only: filter, then a strided convolution.
    if down > 1 and up == 1:
        x = upfirdn2d(x, f, padding=[px0, px1, py0, py1], flip_filter=flip_filter)
        return _conv(x, w, stride=down, groups=groups, flip_weight=flip_weight)

    # Upsampling: strided transposed convolution, then the filter.
    if up > 1:
        if groups == 1:
            w = w.transpose(0, 1)
        else:
            w = w.reshape(groups, out_channels // groups, in_per_group, kh, kw)
            w = w.transpose(1, 2).reshape(groups * in_per_group, out_channels // groups, kh, kw)
        px0 -= kw - 1
        px1 -= kw - up
        py0 -= kh - 1
        py1 -= kh - up
        pxt = max(min(-px0, -px1), 0)
        pyt = max(min(-py0, -py1), 0)
        x = _conv(x, w, stride=up, padding=[pyt, pxt], groups=groups, transpose=True, flip_weight=not flip_weight)
        x = upfirdn2d(x, f, padding=[px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt], gain=up ** 2,
                      flip_filter=flip_filter)
        if down > 1:
            x = upfirdn2d(x, f, down=down, flip_filter=flip_filter)
        return x

    # No resampling and symmetric padding: a plain convolution.
    if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
        return _conv(x, w, padding=[py0, px0], groups=groups, flip_weight=flip_weight)

    # Asymmetric or negative padding: pad (or crop) explicitly, then convolve.
    x = upfirdn2d(x, None, padding=[px0, px1, py0, py1], flip_filter=flip_filter)
    return _conv(x, w, groups=groups, flip_weight=flip_weight)
