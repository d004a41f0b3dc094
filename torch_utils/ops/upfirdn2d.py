"""FIR filtering with optional upsampling and downsampling (upfirdn).

The pipeline for each channel of ``x`` is: insert ``up - 1`` zeros between samples,
pad (negative padding crops), convolve with the FIR filter ``f``, keep every
``down``-th sample. ``filter2d``, ``upsample2d`` and ``downsample2d`` choose the padding
so that the output is centred and has the expected size.

Filters are 2D ``[fh, fw]`` (non-separable) or 1D ``[fw]`` (separable, applied along
both axes); ``setup_filter`` builds either from a list such as ``[1, 3, 3, 1]``.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from .. import misc

IntPair = Union[int, Sequence[int]]


def _pair(value: IntPair) -> Tuple[int, int]:
    """Return ``(x, y)`` from an int or a pair."""
    if isinstance(value, int):
        return value, value
    vx, vy = value
    return int(vx), int(vy)


def parse_padding(padding: Union[int, Sequence[int]]) -> Tuple[int, int, int, int]:
    """Return ``(px0, px1, py0, py1)`` from an int, ``[px, py]`` or ``[px0, px1, py0, py1]``."""
    if isinstance(padding, int):
        return padding, padding, padding, padding
    padding = [int(p) for p in padding]
    if len(padding) == 2:
        px, py = padding
        return px, px, py, py
    if len(padding) == 4:
        return padding[0], padding[1], padding[2], padding[3]
    raise ValueError(f"padding must be an int or have 2 or 4 entries, got {padding}")


def get_filter_size(f: Optional[torch.Tensor]) -> Tuple[int, int]:
    """Return ``(width, height)`` of a 1D or 2D filter; ``(1, 1)`` for ``None``."""
    if f is None:
        return 1, 1
    if f.ndim not in (1, 2):
        raise ValueError(f"filter must be 1D or 2D, got shape {list(f.shape)}")
    return int(f.shape[-1]), int(f.shape[0])


def setup_filter(f, device: Union[str, torch.device] = 'cpu', normalize: bool = True,
                 flip_filter: bool = False, gain: float = 1, separable: Optional[bool] = None) -> torch.Tensor:
    """Turn a list or tensor of taps into a float32 filter for the functions below.

    A 1D list becomes separable only when it has 8 or more taps (or ``separable=True``);
    otherwise it is expanded to its 2D outer product. ``normalize`` makes the taps sum to 1,
    ``gain`` scales the overall response.
    """
    if f is None:
        f = 1
    f = torch.as_tensor(f, dtype=torch.float32)
    if f.ndim == 0:
        f = f[None]
    if f.ndim not in (1, 2) or f.numel() == 0:
        raise ValueError(f"filter taps must be a non-empty 1D or 2D array, got shape {list(f.shape)}")
    if separable is None:
        separable = f.ndim == 1 and f.numel() >= 8
    if f.ndim == 1 and not separable:
        f = torch.outer(f, f)
    if separable and f.ndim != 1:
        raise ValueError("a separable filter must be 1D")
    if normalize:
        f = f / f.sum()
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    f = f * (gain ** (f.ndim / 2))
    return f.to(device=device)


def upfirdn2d(x: torch.Tensor, f: Optional[torch.Tensor], up: IntPair = 1, down: IntPair = 1,
              padding: Union[int, Sequence[int]] = 0, flip_filter: bool = False, gain: float = 1) -> torch.Tensor:
    """Upsample, pad, FIR-filter and downsample a batch of images.

    Args:
        x:       Images ``[N, C, H, W]``.
        f:       Filter ``[fh, fw]`` or separable ``[fw]``; ``None`` means identity.
        up:      Integer upsampling factor, or ``[x, y]``.
        down:    Integer downsampling factor, or ``[x, y]``.
        padding: ``int``, ``[x, y]`` or ``[x0, x1, y0, y1]``, applied after upsampling;
                 negative values crop.
        flip_filter: ``False`` convolves (the filter is flipped), ``True`` correlates.
        gain:    Overall scale of the response.
    Returns:
        ``[N, C, (H * up_y + py0 + py1 - fh + 1) // down_y, ...]`` images (rounded up).
    """
    if x.ndim != 4:
        raise ValueError(f"expected images [N, C, H, W], got shape {list(x.shape)}")
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    upx, upy = _pair(up)
    downx, downy = _pair(down)
    px0, px1, py0, py1 = parse_padding(padding)
    if upx < 1 or upy < 1 or downx < 1 or downy < 1:
        raise ValueError("up and down must be positive integers")
    n, c, h, w = x.shape

    # Zero insertion.
    if upx > 1 or upy > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, upx - 1, 0, 0, 0, upy - 1])
        x = x.reshape(n, c, h * upy, w * upx)

    # Pad, then crop where the padding is negative.
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0), max(-px0, 0): x.shape[3] - max(-px1, 0)]

    # FIR filter as a depthwise convolution (conv2d correlates, so flip to convolve).
    f = (f * (gain ** (f.ndim / 2))).to(x.dtype)
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))
    x = misc.conv_layout(x)
    if f.ndim == 2:
        weight = f[None, None].expand(c, 1, *f.shape)
        x = F.conv2d(x, weight, groups=c)
    else:
        x = F.conv2d(x, f[None, None, None, :].expand(c, 1, 1, f.shape[0]), groups=c)
        x = F.conv2d(x, f[None, None, :, None].expand(c, 1, f.shape[0], 1), groups=c)

    # Decimation.
    if downx > 1 or downy > 1:
        x = x[:, :, ::downy, ::downx]
    return x


def filter2d(x: torch.Tensor, f: Optional[torch.Tensor], padding: Union[int, Sequence[int]] = 0,
             flip_filter: bool = False, gain: float = 1) -> torch.Tensor:
    """Filter ``[N, C, H, W]`` images with ``f``, keeping the size (plus ``padding``)."""
    px0, px1, py0, py1 = parse_padding(padding)
    fw, fh = get_filter_size(f)
    pad = [px0 + fw // 2, px1 + (fw - 1) // 2, py0 + fh // 2, py1 + (fh - 1) // 2]
    return upfirdn2d(x, f, padding=pad, flip_filter=flip_filter, gain=gain)


def upsample2d(x: torch.Tensor, f: Optional[torch.Tensor], up: IntPair = 2,
               padding: Union[int, Sequence[int]] = 0, flip_filter: bool = False, gain: float = 1) -> torch.Tensor:
    """Upsample ``[N, C, H, W]`` images by ``up`` with anti-imaging filter ``f``: ``[N, C, H*up, W*up]``."""
    upx, upy = _pair(up)
    px0, px1, py0, py1 = parse_padding(padding)
    fw, fh = get_filter_size(f)
    pad = [px0 + (fw + upx - 1) // 2, px1 + (fw - upx) // 2,
           py0 + (fh + upy - 1) // 2, py1 + (fh - upy) // 2]
    return upfirdn2d(x, f, up=up, padding=pad, flip_filter=flip_filter, gain=gain * upx * upy)


def downsample2d(x: torch.Tensor, f: Optional[torch.Tensor], down: IntPair = 2,
                 padding: Union[int, Sequence[int]] = 0, flip_filter: bool = False, gain: float = 1) -> torch.Tensor:
    """Downsample ``[N, C, H, W]`` images by ``down`` with anti-aliasing filter ``f``: ``[N, C, H/down, W/down]``."""
    downx, downy = _pair(down)
    px0, px1, py0, py1 = parse_padding(padding)
    fw, fh = get_filter_size(f)
    pad = [px0 + (fw - downx + 1) // 2, px1 + (fw - downx) // 2,
           py0 + (fh - downy + 1) // 2, py1 + (fh - downy) // 2]
    return upfirdn2d(x, f, down=down, padding=pad, flip_filter=flip_filter, gain=gain)
