"""Blending two latents ``Wp`` and ``Wc`` (``[num_ws, w_dim]``) with a degree ``l`` in ``[0, 1]``.

* linear:    ``W = l * Wp + (1 - l) * Wc``
* style:     layers below ``k`` take ``l * Wp + (1 - l) * Wc``, layers from ``k`` on take
             ``(1 - l) * Wp + l * Wc``
* attribute: the same split, over channels (the last axis) instead of layers

and the perceptual path length of a blend, ``E_t[d(G(W(t)), G(W(t + eps))) / eps^2]``.
All functions work on numpy arrays and torch tensors alike and keep the input shape.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional

import numpy as np
import torch

from torch_utils import misc

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


def mix_noise(method: str, noise_p: Dict[str, torch.Tensor], noise_c: Dict[str, torch.Tensor], degree: float,
              crossover: Optional[int] = None, num_ws: Optional[int] = None) -> Dict[str, torch.Tensor]:
    """Blend two sets of noise maps ``{buffer name: [1, 1, r, r]}`` along with their latents.

    Each map is ``degree * p + (1 - degree) * c`` (``method`` linear or attribute: attribute mixing
    splits the latents' channels, which noise maps do not have); for style mixing, the map of
    noise layer ``j`` (in ``noise_layers()`` order, the layer modulated by ``w[j]`` in StyleGAN2)
    takes ``degree`` below ``crossover`` and ``1 - degree`` from it on, like its latent layer.
    Maps equal in both sets are returned unchanged, so degree 1 gives ``noise_p`` and degree 0
    ``noise_c`` exactly.
    """
    if list(noise_p) != list(noise_c):
        raise ValueError('the two noise sets must have the same buffers in the same order')
    if method not in METHODS:
        raise ValueError(f'unknown mixing method {method!r}; expected one of {METHODS}')
    if method == 'style' and crossover is None:
        if num_ws is None:
            raise ValueError('style mixing of noise maps needs num_ws (for the default crossover)')
        crossover = num_ws // 2
    out = {}
    for j, name in enumerate(noise_p):
        a, b = noise_p[name], noise_c[name]
        if torch.equal(a, b):
            out[name] = a
            continue
        t = degree if (method != 'style' or j < crossover) else 1 - degree
        out[name] = a if t == 1 else b if t == 0 else t * a + (1 - t) * b
    return out


@torch.no_grad()
def perceptual_path_length(G, distance: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                           blend: Callable[[float], torch.Tensor], num_samples: int = 32, epsilon: float = 1e-4,
                           seed: int = 0, noise=None) -> float:
    """``mean_t d(G(blend(t)), G(blend(t + epsilon))) / epsilon^2`` for ``t ~ U[0, 1 - epsilon]``.

    ``blend(t)`` returns a latent ``[num_ws, w_dim]``; ``distance`` compares two image batches
    ``[N, 3, R, R]`` and returns ``[N]``. ``noise`` (optional) fixes the generator's noise maps:
    a dict by buffer name or a list of maps, or a function ``t -> such maps`` for noise that is
    blended along with the latent (default: the generator's constant noise).

    Measured as NVlabs' metrics measure it: synthesis with ``force_fp32=True`` and TF32 off for
    CUDA matmuls and convolutions (restored afterwards); the tiny ``epsilon`` needs full precision.
    """
    from optimization import noise_as_list
    ts = np.random.RandomState(seed).uniform(0.0, 1.0 - epsilon, size=num_samples)
    device = misc.module_device(G)
    total = 0.0
    with misc.tf32_disabled():
        for t in ts:
            ws = torch.stack([torch.as_tensor(blend(float(t))), torch.as_tensor(blend(float(t) + epsilon))])
            ws = ws.to(device=device, dtype=torch.float32)
            if noise is None:
                images = G.synthesis(ws, noise_mode='const', force_fp32=True)
            else:
                pair = [noise(float(t)), noise(float(t) + epsilon)] if callable(noise) else [noise, noise]
                maps = [torch.cat([m.reshape(1, 1, *m.shape[-2:]) for m in layer]).to(device)
                        for layer in zip(*(noise_as_list(G, p) for p in pair))]
                images = G.synthesis(ws, noise=maps, force_fp32=True) if maps else \
                    G.synthesis(ws, noise_mode='const', force_fp32=True)
            total += float(distance(images[:1], images[1:])[0]) / epsilon ** 2
    return total / num_samples
