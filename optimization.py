"""The optimization core: find a latent (and noise maps) that minimizes an objective.

Every command (single image, animation, morphing) calls ``project``; what differs between
them is the objective, the starting point and the number of steps. The schedule follows
StyleGAN2's projector:

* Adam (betas 0.9, 0.999) over ``w`` and, optionally, the per-layer noise maps;
* at step ``s`` of ``N``, ``t = s / N``, the learning rate is
  ``lr0 * rampdown(t) * rampup(t)`` with ``rampdown = 0.5 - 0.5 cos(pi * min(1, (1 - t) / 0.25))``
  and ``rampup = min(1, t / 0.05)``;
* Gaussian noise of std ``w_std * 0.05 * max(0, 1 - t / 0.75)^2`` is added to ``w`` before
  synthesis (exploration early on, none in the last quarter);
* ``1e5 *`` a multi-scale autocorrelation penalty keeps the noise maps from carrying the image,
  and after every step each map is renormalized to zero mean and unit variance.

Latents are ``[1, num_ws, w_dim]``. In ``'w'`` space one vector is optimized and broadcast to
all layers; in ``'w+'`` space every layer has its own.
"""

from __future__ import annotations

import math
import time
import weakref
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from torch_utils import misc

Objective = Callable[[torch.Tensor, torch.Tensor], Dict[str, torch.Tensor]]


# ----------------------------------------------------------------------------
# Pure schedule and regularization functions.

def learning_rate(t: float, initial: float = 0.1, rampdown_length: float = 0.25, rampup_length: float = 0.05) -> float:
    """Learning rate at progress ``t`` in ``[0, 1]``: cosine ramp-down at the end, linear ramp-up at the start."""
    rampdown = 0.5 - 0.5 * math.cos(math.pi * min(1.0, (1.0 - t) / rampdown_length))
    rampup = min(1.0, t / rampup_length) if rampup_length > 0 else 1.0
    return initial * rampdown * rampup


def w_noise_std(t: float, w_std: float, initial_noise_factor: float = 0.05, noise_ramp_length: float = 0.75) -> float:
    """Std of the exploration noise added to ``w`` at progress ``t``."""
    return w_std * initial_noise_factor * max(0.0, 1.0 - t / noise_ramp_length) ** 2


def noise_regularization(noise_maps: Sequence[torch.Tensor]) -> torch.Tensor:
    """Sum over maps and pyramid levels of the squared one-pixel autocorrelations in x and y.

    Each map ``[1, 1, H, W]`` is average-pooled 2x2 repeatedly down to 8x8; at every level
    the squared mean of ``map * roll(map, 1, x)`` and of ``map * roll(map, 1, y)`` is added.
    """
    total = 0.0
    for noise in noise_maps:
        x = noise[None, None] if noise.ndim == 2 else noise
        while True:
            total = total + (x * torch.roll(x, shifts=1, dims=3)).mean() ** 2
            total = total + (x * torch.roll(x, shifts=1, dims=2)).mean() ** 2
            if x.shape[2] <= 8:
                break
            x = torch.nn.functional.avg_pool2d(x, kernel_size=2)
    return total if isinstance(total, torch.Tensor) else torch.zeros([])


@torch.no_grad()
def normalize_noise_(noise_maps: Sequence[torch.Tensor]) -> None:
    """Renormalize each map in place to zero mean and unit variance."""
    for noise in noise_maps:
        noise -= noise.mean()
        noise *= noise.square().mean().rsqrt()


# ----------------------------------------------------------------------------
# Statistics of W.

_W_STATS_CACHE: "weakref.WeakKeyDictionary[torch.nn.Module, dict]" = weakref.WeakKeyDictionary()


@torch.no_grad()
def w_stats(G, num_samples: int = 10000, seed: int = 123, batch: int = 2000) -> Tuple[torch.Tensor, float]:
    """Mean ``[1, 1, w_dim]`` and scalar std of ``w = G.mapping(z)`` over ``num_samples`` z's.

    ``z`` comes from ``numpy.random.RandomState(seed)``; the std is
    ``sqrt(sum of squared deviations / num_samples)``. Cached per mapping network and arguments.
    """
    cached = _W_STATS_CACHE.get(G.mapping, {}).get((num_samples, seed))
    if cached is not None and cached[0].device == G.mapping.fc0.weight.device:
        return cached
    device = G.mapping.fc0.weight.device
    z = np.random.RandomState(seed).randn(num_samples, G.z_dim)
    ws = []
    for start in range(0, num_samples, batch):
        zb = torch.from_numpy(z[start:start + batch]).to(device=device, dtype=torch.float32)
        cb = torch.zeros([zb.shape[0], G.c_dim], device=device)
        ws.append(G.mapping(zb, cb)[:, :1, :].double())  # [B, 1, C]
    w = torch.cat(ws)
    w_avg = w.mean(dim=0, keepdim=True)  # [1, 1, C]
    w_std = float((((w - w_avg) ** 2).sum() / num_samples) ** 0.5)
    result = (w_avg.float(), w_std)
    _W_STATS_CACHE.setdefault(G.mapping, {})[(num_samples, seed)] = result
    return result


# ----------------------------------------------------------------------------
# The loop.

@dataclass
class ProjectionSettings:
    num_steps: int = 1000
    initial_learning_rate: float = 0.1
    initial_noise_factor: float = 0.05
    lr_rampdown_length: float = 0.25
    lr_rampup_length: float = 0.05
    noise_ramp_length: float = 0.75
    regularize_noise_weight: float = 1e5
    latent: str = 'w'               # 'w' or 'w+'
    optimize_noise: bool = True
    seed: int = 303

    def __post_init__(self):
        if self.latent not in ('w', 'w+'):
            raise ValueError(f"latent must be 'w' or 'w+', got {self.latent!r}")
        if self.num_steps < 0:
            raise ValueError('num_steps must not be negative')


@dataclass
class StepInfo:
    """What a callback sees after each step (tensors are detached)."""
    step: int                 # 0-based index of the finished step
    num_steps: int
    learning_rate: float
    losses: Dict[str, float]  # weighted terms, 'noise_reg' and 'total'
    image: torch.Tensor       # [1, C, R, R] synthesized in this step (with the step's w noise)
    ws: torch.Tensor          # [1, num_ws, w_dim] the optimized latent after the step


@dataclass
class ProjectionResult:
    ws: torch.Tensor                  # [1, num_ws, w_dim]
    noise: List[torch.Tensor]         # one [1, 1, r, r] map per noise layer
    image: torch.Tensor               # [1, C, R, R] synthesized from ws and noise, no w noise
    losses: Dict[str, float]          # the objective at ``ws`` (no w noise), plus 'total'
    history: List[Dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def _evaluate(objective: Objective, image: torch.Tensor, ws: torch.Tensor,
              noise: Sequence[torch.Tensor], settings: ProjectionSettings) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    terms = dict(objective(image, ws))
    for name, value in terms.items():
        if value.ndim != 0:
            raise ValueError(f'objective term {name!r} must be a scalar, got shape {list(value.shape)}')
    if settings.optimize_noise and settings.regularize_noise_weight:
        terms['noise_reg'] = settings.regularize_noise_weight * noise_regularization(noise)
    total = sum(terms.values()) if terms else image.new_zeros([])
    return total, terms


def project(G, objective: Objective, settings: ProjectionSettings = ProjectionSettings(),
            w_init: Optional[torch.Tensor] = None, noise_init: Optional[Sequence[torch.Tensor]] = None,
            callbacks: Sequence[Callable[[StepInfo], None]] = ()) -> ProjectionResult:
    """Optimize a latent of ``G`` to minimize ``objective``.

    Args:
        G:          Generator (frozen; its parameters are not changed).
        objective:  ``f(image [1, C, R, R] in [-1, 1], ws [1, num_ws, w_dim]) -> {name: scalar}``;
                    the terms are summed (weights belong inside the terms).
        settings:   Schedule and latent space.
        w_init:     Starting latent ``[1, w_dim]``, ``[1, 1, w_dim]`` or ``[1, num_ws, w_dim]``
                    (default: ``w_avg``). A W-space run from a W+ start uses its mean over layers.
        noise_init: Starting noise maps (default: random, seeded); with
                    ``settings.optimize_noise=False`` they are used as given.
        callbacks:  Called with a ``StepInfo`` after every step.
    """
    start_time = time.perf_counter()
    device = G.mapping.fc0.weight.device
    num_ws, w_dim = G.num_ws, G.w_dim
    w_avg, w_std = w_stats(G)
    generator = torch.Generator(device='cpu').manual_seed(settings.seed)

    # Starting point.
    if w_init is None:
        w_init = w_avg
    w_init = w_init.detach().to(device=device, dtype=torch.float32).reshape(1, -1, w_dim)
    if w_init.shape[1] not in (1, num_ws):
        raise ValueError(f'w_init must have 1 or {num_ws} layers, got {w_init.shape[1]}')
    if settings.latent == 'w':
        w_opt = w_init.mean(dim=1, keepdim=True).clone()                 # [1, 1, C]
    else:
        w_opt = w_init.expand(1, num_ws, w_dim).clone()                  # [1, num_ws, C]
    w_opt.requires_grad_(True)

    layers = G.synthesis.noise_layers()
    if noise_init is None:
        noise = [torch.randn([1, 1, layer.resolution, layer.resolution], generator=generator).to(device)
                 for _, layer in layers]
    else:
        if len(noise_init) != len(layers):
            raise ValueError(f'expected {len(layers)} noise maps, got {len(noise_init)}')
        noise = [n.detach().to(device=device, dtype=torch.float32).reshape(1, 1, *n.shape[-2:]).clone()
                 for n in noise_init]
    params = [w_opt]
    if settings.optimize_noise:
        for n in noise:
            n.requires_grad_(True)
        params += noise
    optimizer = torch.optim.Adam(params, betas=(0.9, 0.999), lr=settings.initial_learning_rate)
    if settings.optimize_noise:
        normalize_noise_(noise)

    def to_ws(w: torch.Tensor) -> torch.Tensor:
        return w.expand(1, num_ws, w_dim) if w.shape[1] == 1 else w

    history: List[Dict[str, float]] = []
    for step in range(settings.num_steps):
        t = step / settings.num_steps
        lr = learning_rate(t, settings.initial_learning_rate, settings.lr_rampdown_length, settings.lr_rampup_length)
        for group in optimizer.param_groups:
            group['lr'] = lr
        sigma = w_noise_std(t, w_std, settings.initial_noise_factor, settings.noise_ramp_length)
        w_noise = torch.randn(w_opt.shape, generator=generator).to(device) * sigma

        ws = to_ws(w_opt + w_noise)
        image = G.synthesis(ws, noise=noise)
        total, terms = _evaluate(objective, image, to_ws(w_opt), noise, settings)

        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        if settings.optimize_noise:
            normalize_noise_(noise)

        losses = {name: float(value.detach()) for name, value in terms.items()}
        losses['total'] = float(total.detach())
        history.append(dict(step=step, lr=lr, **losses))
        if callbacks:
            info = StepInfo(step=step, num_steps=settings.num_steps, learning_rate=lr, losses=losses,
                            image=image.detach(), ws=to_ws(w_opt).detach())
            for callback in callbacks:
                callback(info)

    # Final image and losses at the optimized latent, without exploration noise.
    with torch.no_grad():
        ws = to_ws(w_opt).detach()
        noise = [n.detach() for n in noise]
        image = G.synthesis(ws, noise=noise)
        total, terms = _evaluate(objective, image, ws, noise, settings)
        losses = {name: float(value) for name, value in terms.items()}
        losses['total'] = float(total)
    misc.assert_shape(ws, [1, num_ws, w_dim])
    return ProjectionResult(ws=ws.clone(), noise=noise, image=image, losses=losses, history=history,
                            seconds=time.perf_counter() - start_time)
