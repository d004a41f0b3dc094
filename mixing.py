"""Blending two latents ``Wp`` and ``Wc`` (``[num_ws, w_dim]``) with a degree ``l`` in ``[0, 1]``.

* linear:    ``W = l * Wp + (1 - l) * Wc``
* style:     layers below ``k`` take ``l * Wp + (1 - l) * Wc``, layers from ``k`` on take
             ``(1 - l) * Wp + l * Wc``
* attribute: the same split, over channels (the last axis) instead of layers

and the perceptual path length of a blend, ``E_t[d(G(W(t)), G(W(t + eps))) / eps^2]``.
All functions work on numpy arrays and torch tensors alike and keep the input shape.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import torch

METHODS = ('linear', 'style', 'attribute')


def _check(wp, wc) -> None:
    if wp.shape != wc.shape or len(wp.shape) != 2:
        raise ValueError(f'expected two latents of the same shape [num_ws, w_dim], got {tuple(wp.shape)} '
                         f'and {tuple(wc.shape)}')


def linear_mix(wp, wc, degree: float):
    """``degree * wp + (1 - degree) * wc``."""
    _check(wp, wc)
    return degree * wp + (1 - degree) * wc


def style_mix(wp, wc, degree: float, crossover: int):
    """Layers ``< crossover`` blend with ``degree``; layers ``>= crossover`` with ``1 - degree``."""
    _check(wp, wc)
    if not 0 <= crossover <= wp.shape[0]:
        raise ValueError(f'style crossover must be in [0, {wp.shape[0]}], got {crossover}')
    out = linear_mix(wp, wc, degree)
    out[crossover:] = linear_mix(wp, wc, 1 - degree)[crossover:]
    return out


def attribute_mix(wp, wc, degree: float, crossover: int):
    """Channels ``< crossover`` blend with ``degree``; channels ``>= crossover`` with ``1 - degree``."""
    _check(wp, wc)
    if not 0 <= crossover <= wp.shape[1]:
        raise ValueError(f'attribute crossover must be in [0, {wp.shape[1]}], got {crossover}')
    out = linear_mix(wp, wc, degree)
    out[:, crossover:] = linear_mix(wp, wc, 1 - degree)[:, crossover:]
    return out


def mix(method: str, wp, wc, degree: float, crossover: Optional[int] = None):
    """Dispatch on ``method`` (one of ``METHODS``); ``crossover`` defaults to the middle layer / channel."""
    if method == 'linear':
        return linear_mix(wp, wc, degree)
    if method == 'style':
        return style_mix(wp, wc, degree, wp.shape[0] // 2 if crossover is None else crossover)
    if method == 'attribute':
        return attribute_mix(wp, wc, degree, wp.shape[1] // 2 if crossover is None else crossover)
    raise ValueError(f'unknown mixing method {method!r}; expected one of {METHODS}')


@torch.no_grad()
def perceptual_path_length(G, distance: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                           blend: Callable[[float], torch.Tensor], num_samples: int = 32, epsilon: float = 1e-4,
                           seed: int = 0, noise=None) -> float:
    """``mean_t d(G(blend(t)), G(blend(t + epsilon))) / epsilon^2`` for ``t ~ U[0, 1 - epsilon]``.

    ``blend(t)`` returns a latent ``[num_ws, w_dim]``; ``distance`` compares two image batches
    ``[N, 3, R, R]`` and returns ``[N]``; ``noise`` (optional) fixes the generator's noise maps.
    """
    ts = np.random.RandomState(seed).uniform(0.0, 1.0 - epsilon, size=num_samples)
    device = G.mapping.fc0.weight.device
    total = 0.0
    for t in ts:
        ws = torch.stack([torch.as_tensor(blend(float(t))), torch.as_tensor(blend(float(t) + epsilon))])
        kwargs = dict(noise=noise) if noise is not None else dict(noise_mode='const')
        images = G.synthesis(ws.to(device=device, dtype=torch.float32), **kwargs)
        total += float(distance(images[:1], images[1:])[0]) / epsilon ** 2
    return total / num_samples
