"""The optimization core: find latents (and noise maps) that minimize an objective.

Every command (single image, many pairs, animation, morphing) calls ``project``; what differs
between them is the objective, the starting points, the number of latents and of steps. The
schedule follows StyleGAN2's projector:

* Adam (betas 0.9, 0.999) over ``w`` and, optionally, the per-layer noise maps;
* at step ``s`` of ``N``, ``t = s / N``, the learning rate is
  ``lr0 * rampdown(t) * rampup(t)`` with ``rampdown = 0.5 - 0.5 cos(pi * min(1, (1 - t) / 0.25))``
  and ``rampup = min(1, t / 0.05)``;
* Gaussian noise of std ``w_std * 0.05 * max(0, 1 - t / 0.75)^2`` is added to ``w`` before
  synthesis (exploration early on, none in the last quarter);
* ``1e5 *`` a multi-scale autocorrelation penalty keeps the noise maps from carrying the image,
  and after every step each map is renormalized to zero mean and unit variance.

``project`` optimizes ``B`` latents at once (``[B, num_ws, w_dim]``; one noise set and one random
stream per latent). The loss it backpropagates is the sum of the per-latent losses, so each
latent's gradient is its own and, Adam being element-wise, latent ``i`` of a batch follows the
same path as a single run with its seed (to float rounding). In ``'w'`` space one vector per
latent is optimized and broadcast to all layers; in ``'w+'`` space every layer has its own.
On a StyleGAN3 generator, ``transforms`` gives each latent its own synthesis input transform
(rotation and translation of the output; ``synthesize`` and ``project``).
"""

from __future__ import annotations

import inspect
import math
import time
import weakref
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from torch_utils import misc

# objective(image [b, 3, R, R] in [-1, 1], ws [b, num_ws, w_dim], index LongTensor [b]) -> {name: [b]}
Objective = Callable[..., Dict[str, torch.Tensor]]
# latent_objective(ws [B, num_ws, w_dim]) -> {name: scalar}
LatentObjective = Callable[[torch.Tensor], Dict[str, torch.Tensor]]
NoiseMaps = Dict[str, torch.Tensor]

PRECISIONS = ('fp32', 'bf16', 'fp16')


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
    """Per-sample sum over maps and pyramid levels of the squared one-pixel autocorrelations in x and y.

    Each map ``[N, 1, H, W]`` (or ``[H, W]``, counted as ``N = 1``) is average-pooled 2x2
    repeatedly down to 8x8; at every level the squared mean (over one sample's map) of
    ``map * roll(map, 1, x)`` and of ``map * roll(map, 1, y)`` is added. Returns ``[N]``
    (a 0-d zero when there are no maps).
    """
    total = None
    for noise in noise_maps:
        x = noise[None, None] if noise.ndim == 2 else noise
        while True:
            level = ((x * torch.roll(x, shifts=1, dims=3)).mean(dim=[1, 2, 3]) ** 2
                     + (x * torch.roll(x, shifts=1, dims=2)).mean(dim=[1, 2, 3]) ** 2)
            total = level if total is None else total + level
            if x.shape[2] <= 8:
                break
            x = torch.nn.functional.avg_pool2d(x, kernel_size=2)
    return total if total is not None else torch.zeros([])


@torch.no_grad()
def normalize_noise_(noise_maps: Sequence[torch.Tensor]) -> None:
    """Renormalize each sample's map in place (``[N, 1, H, W]`` or ``[H, W]``) to zero mean and unit variance."""
    for noise in noise_maps:
        dims = [1, 2, 3] if noise.ndim == 4 else list(range(noise.ndim))
        noise -= noise.mean(dim=dims, keepdim=True)
        noise *= noise.square().mean(dim=dims, keepdim=True).rsqrt()


# ----------------------------------------------------------------------------
# The optimizer.

class Adam:
    """Adam over a fixed list of tensors, computed as ``torch.optim.Adam`` computes it on one tensor
    at a time (no weight decay, no AMSGrad), so a run's results do not change.

    Written here because building a ``torch.optim.Adam`` imports ``torch._dynamo``, about 1.5 s
    at the start of every command (measured with torch 2.14 on the project's 2-core CPU), which a
    loop of short runs pays each time. ``step(lr)`` takes the learning rate of the step;
    parameters without a gradient are left alone, as torch does.
    """

    def __init__(self, params: Sequence[torch.Tensor], betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.params = list(params)
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = float(eps)
        self.state: Dict[int, dict] = {}  # index -> dict(step, exp_avg, exp_avg_sq)

    def zero_grad(self) -> None:
        for param in self.params:
            param.grad = None

    @torch.no_grad()
    def step(self, lr: float) -> None:
        beta1, beta2 = self.betas
        for i, param in enumerate(self.params):
            grad = param.grad
            if grad is None:
                continue
            state = self.state.setdefault(i, dict(step=0, exp_avg=torch.zeros_like(param),
                                                  exp_avg_sq=torch.zeros_like(param)))
            state['step'] += 1
            step = float(state['step'])
            state['exp_avg'].lerp_(grad, 1 - beta1)
            state['exp_avg_sq'].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            bias_correction2_sqrt = (1 - beta2 ** step) ** 0.5
            denom = (state['exp_avg_sq'].sqrt() / bias_correction2_sqrt).add_(self.eps)
            param.addcdiv_(state['exp_avg'], denom, value=-(lr / (1 - beta1 ** step)))


# ----------------------------------------------------------------------------
# Statistics of W.

_W_STATS_CACHE: "weakref.WeakKeyDictionary[torch.nn.Module, dict]" = weakref.WeakKeyDictionary()


@torch.no_grad()
def w_stats(G, num_samples: int = 10000, seed: int = 123, batch: int = 2000) -> Tuple[torch.Tensor, float]:
    """Mean ``[1, 1, w_dim]`` and scalar std of ``w = G.mapping(z)`` over ``num_samples`` z's.

    ``z`` comes from ``numpy.random.RandomState(seed)``; the std is
    ``sqrt(sum of squared deviations / num_samples)``. Cached per mapping network and arguments.
    """
    device = misc.module_device(G.mapping)
    cached = _W_STATS_CACHE.get(G.mapping, {}).get((num_samples, seed))
    if cached is not None and cached[0].device == device:
        return cached
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
# Noise maps by buffer name.

def noise_buffer_names(G) -> List[str]:
    """Names of ``G.synthesis``'s noise buffers in ``noise_layers()`` order (``'b8.conv0.noise_const'``, ...).

    Empty for a generator without noise inputs (StyleGAN3).
    """
    return [f'{name}.noise_const' for name, _ in G.synthesis.noise_layers()]


def const_noise(G) -> NoiseMaps:
    """The generator's own noise buffers as maps ``{name: [1, 1, r, r]}`` (what ``noise_mode='const'`` uses)."""
    return {f'{name}.noise_const': layer.noise_const.detach().reshape(1, 1, *layer.noise_const.shape[-2:])
            for name, layer in G.synthesis.noise_layers()}


def noise_as_list(G, noise: Union[Mapping[str, torch.Tensor], Sequence[torch.Tensor], None]) -> Optional[List[torch.Tensor]]:
    """Noise maps as the list ``G.synthesis(noise=...)`` takes; a dict is checked against the buffer names."""
    if noise is None:
        return None
    names = noise_buffer_names(G)
    if isinstance(noise, Mapping):
        missing = [n for n in names if n not in noise]
        extra = [n for n in noise if n not in names]
        if missing or extra:
            raise ValueError(f'noise maps do not fit this generator: missing {missing}, unexpected {extra}')
        return [noise[n] for n in names]
    noise = list(noise)
    if len(noise) != len(names):
        raise ValueError(f'expected {len(names)} noise maps, got {len(noise)}')
    return noise


# ----------------------------------------------------------------------------
# Per-latent input transforms (StyleGAN3).

def has_input_transform(G) -> bool:
    """Whether ``G.synthesis`` takes per-latent input transforms (StyleGAN3's Fourier-feature input); False for StyleGAN2."""
    layer = getattr(getattr(G, 'synthesis', None), 'input', None)
    return isinstance(getattr(layer, 'transform', None), torch.Tensor) and hasattr(layer, 'check_transform')


def prepare_transforms(G, transforms, n: int, device=None) -> Optional[torch.Tensor]:
    """``transforms`` (``[n, 3, 3]``, ``[1, 3, 3]`` or ``[3, 3]``; tensor or array) as float32 ``[n, 3, 3]`` on ``device``.

    None stays None. A generator without an input transform (StyleGAN2) is refused with a
    ``ValueError``, as is a wrong shape.
    """
    if transforms is None:
        return None
    if not has_input_transform(G):
        raise ValueError('per-latent input transforms need a StyleGAN3 generator (a synthesis input with a '
                         'rotation/translation transform); this generator has none')
    t = torch.as_tensor(transforms)
    if t.ndim == 2:
        t = t.unsqueeze(0)
    if t.ndim != 3 or tuple(t.shape[1:]) != (3, 3) or t.shape[0] not in (1, n):
        raise ValueError(f'transforms must be [{n}, 3, 3], [1, 3, 3] or [3, 3], got {list(t.shape)}')
    device = misc.module_device(G.synthesis) if device is None else device
    return t.to(device=device, dtype=torch.float32).expand(n, 3, 3)


def synthesize(G, ws: torch.Tensor, noise: Union[Mapping[str, torch.Tensor], Sequence[torch.Tensor], None] = None,
               precision: str = 'fp32', transforms=None) -> torch.Tensor:
    """``G.synthesis`` as the projector calls it: images ``[N, C, R, R]`` from ``ws [N, num_ws, w_dim]``.

    ``noise`` (a dict by buffer name, or a list in ``noise_layers()`` order; maps ``[N or 1, 1, r, r]``)
    replaces the constant noise; without it, and for generators without noise inputs, the
    network's own constant noise is used. ``force_fp32=True`` unless ``precision`` is ``'fp16'``.
    When gradients flow to ``ws``, StyleGAN2 gets ``fused_modconv='for_backward'``.
    ``transforms`` (StyleGAN3 only; ``[N, 3, 3]`` or ``[3, 3]``, see
    ``networks.stylegan3.make_input_transforms``) replaces the synthesis input's ``transform``
    buffer, one matrix per latent, for this call; None (the default) is the call as before.
    """
    import precision as precision_mod
    kwargs = precision_mod.synthesis_kwargs(precision)
    if torch.is_grad_enabled() and ws.requires_grad:
        # A step's backward pass: wide StyleGAN2 blocks run unfused, which spares the weight
        # gradients (networks.generator.UNFUSED_MIN_CHANNELS); the same function, and StyleGAN3
        # ignores it.
        kwargs['fused_modconv'] = 'for_backward'
    if transforms is not None:
        kwargs = dict(kwargs, transforms=prepare_transforms(G, transforms, int(ws.shape[0]), ws.device))
    maps = noise_as_list(G, noise)
    if maps:
        return G.synthesis(ws, noise=maps, **kwargs)
    return G.synthesis(ws, noise_mode='const', **kwargs)


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
    seed: int = 303                 # the default seed of every latent (see project's ``seeds``)
    share_noise: bool = False       # one noise set for all latents (the original's joint video schedule)
    precision: str = 'fp32'         # a resolved precision (precision.resolve): 'fp32', 'bf16' or 'fp16'

    def __post_init__(self):
        if self.latent not in ('w', 'w+'):
            raise ValueError(f"latent must be 'w' or 'w+', got {self.latent!r}")
        if self.num_steps < 0:
            raise ValueError('num_steps must not be negative')
        if self.precision not in PRECISIONS:
            raise ValueError(f'precision must be one of {PRECISIONS} (resolved), got {self.precision!r}')


@dataclass
class StepInfo:
    """What a callback sees after each step (tensors are detached)."""
    step: int                       # 0-based index of the finished step
    num_steps: int
    learning_rate: float
    losses: List[Dict[str, float]]  # per latent: its weighted terms, 'noise_reg' and 'total'
    image: torch.Tensor             # [B, C, R, R] synthesized in this step (with the step's w noise)
    ws: torch.Tensor                # [B, num_ws, w_dim] the optimized latents after the step
    latent_losses: Dict[str, float] = field(default_factory=dict)  # latent_objective's terms


@dataclass
class ProjectionResult:
    ws: torch.Tensor                  # [B, num_ws, w_dim]
    noise: NoiseMaps                  # {buffer name: [B, 1, r, r]} ([1, ...] with share_noise); {} without noise
    image: torch.Tensor               # [B, C, R, R] synthesized from ws and noise, no w noise
    losses: List[Dict[str, float]]    # per latent: the objective at ``ws`` (no w noise), 'noise_reg', 'total'
    history: List[dict] = field(default_factory=list)   # per step: step, lr, total, losses, latent terms
    seconds: float = 0.0
    latent_losses: Dict[str, float] = field(default_factory=dict)  # latent_objective at ``ws``
    seeds: List[int] = field(default_factory=list)

    def noise_of(self, i: int) -> NoiseMaps:
        """Latent ``i``'s noise maps ``{name: [1, 1, r, r]}``."""
        return {k: (v[i:i + 1] if v.shape[0] > 1 else v) for k, v in self.noise.items()}

    def select(self, i: int) -> 'ProjectionResult':
        """Latent ``i`` alone, as a one-latent result (its history entries keep only its losses)."""
        history = [dict(step=h['step'], lr=h['lr'], **h['losses'][i], losses=[h['losses'][i]]) for h in self.history]
        return ProjectionResult(ws=self.ws[i:i + 1], noise=self.noise_of(i), image=self.image[i:i + 1],
                                losses=[self.losses[i]], history=history, seconds=self.seconds,
                                latent_losses=dict(self.latent_losses), seeds=self.seeds[i:i + 1])


def _takes_index(objective: Callable) -> bool:
    """Whether ``objective`` accepts a third positional argument (the batched form)."""
    try:
        params = list(inspect.signature(objective).parameters.values())
    except (TypeError, ValueError):
        return True
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 3


def _per_latent_terms(raw: Mapping[str, torch.Tensor], b: int, what: str) -> Dict[str, torch.Tensor]:
    """Check an objective's terms: each ``[b]`` (a 0-d term is accepted when ``b == 1``); float32."""
    terms = {}
    for name, value in raw.items():
        if not isinstance(value, torch.Tensor):
            value = torch.as_tensor(value, dtype=torch.float32)
        if value.ndim == 0 and b == 1:
            value = value.reshape(1)
        if tuple(value.shape) != (b,):
            raise ValueError(f'{what} term {name!r} must have shape [{b}] (one value per latent), '
                             f'got {list(value.shape)}')
        terms[name] = value.float()
    return terms


def _prepare_w_init(w_init: Optional[torch.Tensor], w_avg: torch.Tensor, B: int, num_ws: int, w_dim: int,
                    latent: str, device) -> torch.Tensor:
    """The starting latents as the optimized leaf: ``[B, 1, w_dim]`` ('w') or ``[B, num_ws, w_dim]`` ('w+')."""
    if w_init is None:
        w_init = w_avg
    w = w_init.detach().to(device=device, dtype=torch.float32)
    if w.ndim == 2:
        w = w[:, None, :]
    if w.ndim != 3 or w.shape[2] != w_dim or w.shape[0] not in (1, B) or w.shape[1] not in (1, num_ws):
        raise ValueError(f'w_init must be [{B} or 1, 1 or {num_ws}, {w_dim}] (or [{B} or 1, {w_dim}]), '
                         f'got {list(w_init.shape)}')
    w = w.expand(B, *w.shape[1:])
    if latent == 'w':
        return w.mean(dim=1, keepdim=True).clone()         # [B, 1, C]; a W+ start uses its mean over layers
    return w.expand(B, num_ws, w_dim).clone()               # [B, num_ws, C]


def _prepare_noise(G, noise_init, generators: Sequence[torch.Generator], B: int, shared: bool,
                   device) -> Tuple[List[str], List[torch.Tensor]]:
    """Noise maps ``[B, 1, r, r]`` (``[1, 1, r, r]`` when shared) per noise layer, as fresh tensors."""
    layers = G.synthesis.noise_layers()
    names = noise_buffer_names(G)
    n = 1 if shared else B
    if noise_init is None:
        per_latent = [[torch.randn([1, 1, layer.resolution, layer.resolution], generator=gen) for _, layer in layers]
                      for gen in generators[:n]]
        maps = [torch.cat([latent[j] for latent in per_latent]).to(device) if per_latent else None
                for j in range(len(layers))]
        return names, maps
    given = noise_as_list(G, noise_init)
    maps = []
    for name, (_, layer), m in zip(names, layers, given):
        m = m.detach().to(device=device, dtype=torch.float32)
        m = m.reshape(-1, 1, *m.shape[-2:])
        if tuple(m.shape[-2:]) != (layer.resolution, layer.resolution) or m.shape[0] not in (1, n):
            raise ValueError(f'noise map {name} must be [{n} or 1, 1, {layer.resolution}, {layer.resolution}], '
                             f'got {list(m.shape)}')
        maps.append(m.expand(n, *m.shape[1:]).clone())
    return names, maps


def project(G, objective: Objective, settings: ProjectionSettings = ProjectionSettings(),
            w_init: Optional[torch.Tensor] = None,
            noise_init: Union[Mapping[str, torch.Tensor], Sequence[torch.Tensor], None] = None,
            callbacks: Sequence[Callable[[StepInfo], None]] = (), seeds: Optional[Sequence[int]] = None,
            num_latents: Optional[int] = None, latent_objective: Optional[LatentObjective] = None,
            chunk_size: Optional[int] = None, transforms=None) -> ProjectionResult:
    """Optimize ``B`` latents of ``G`` to minimize ``objective`` (and ``latent_objective``).

    Args:
        G:          Generator (frozen; its parameters and buffers are not changed).
        objective:  ``f(image [b, C, R, R] in [-1, 1], ws [b, num_ws, w_dim], index LongTensor [b])
                    -> {name: [b]}``: per-latent, already weighted terms of the ``b`` latents of a
                    chunk; ``index`` says which of the ``B`` latents they are. ``ws`` is the
                    optimized latent (without the step's w noise). A two-argument objective
                    ``f(image, ws) -> {name: scalar}`` is accepted for ``B == 1``.
        settings:   Schedule, latent space, noise handling, precision.
        w_init:     Starting latents ``[B or 1, 1 or num_ws, w_dim]`` or ``[B or 1, w_dim]``
                    (default: ``w_avg``). A W-space run from a W+ start uses its mean over layers.
        noise_init: Starting noise maps: ``{buffer name: [B or 1, 1, r, r]}`` (names as
                    ``noise_buffer_names(G)``) or a list in ``noise_layers()`` order (default:
                    random, from each latent's generator). With ``settings.optimize_noise=False``
                    they are used as given. Never changed in place.
        callbacks:  Called with a ``StepInfo`` after every step.
        seeds:      One seed per latent (default ``[settings.seed] * B``): latent ``i`` draws its
                    initial noise maps, then each step's w noise, from ``torch.Generator(seeds[i])``,
                    exactly as a single run with that seed does.
        num_latents: ``B`` when neither ``seeds`` nor a ``[B, ...]`` ``w_init`` gives it (default 1).
        latent_objective: ``g(ws [B, num_ws, w_dim]) -> {name: scalar}``: terms on all latents
                    together (smoothness between neighbours, fidelity), added once per step.
        chunk_size: Synthesize and evaluate at most this many latents at a time; gradients of the
                    chunks accumulate and Adam steps once per pass (default: all ``B`` at once).
        transforms: StyleGAN3 only: input transforms ``[B, 3, 3]`` (or ``[1, 3, 3]`` / ``[3, 3]`` for
                    all), latent ``i`` synthesized with ``transforms[i]`` in every step and in the
                    final image (see ``synthesize``). Default None: the network's own buffer.

    The backpropagated loss is ``sum_i (sum of latent i's terms + noise_reg_i) + sum(latent terms)``.
    """
    start_time = time.perf_counter()
    device = misc.module_device(G.synthesis)
    num_ws, w_dim = G.num_ws, G.w_dim
    if seeds is not None:
        seeds = [int(s) for s in seeds]
        B = len(seeds)
    elif w_init is not None and w_init.ndim >= 2 and w_init.shape[0] > 1:
        B = int(w_init.shape[0])
    else:
        B = int(num_latents or 1)
    if seeds is None:
        seeds = [settings.seed] * B
    if num_latents is not None and num_latents != B:
        raise ValueError(f'num_latents={num_latents} contradicts the {B} latents given by seeds / w_init')
    if B < 1:
        raise ValueError('project needs at least one latent')
    chunk = B if not chunk_size else int(chunk_size)
    if chunk < 1:
        raise ValueError(f'chunk_size must be at least 1, got {chunk_size}')
    batched_objective = _takes_index(objective)
    if not batched_objective and chunk > 1 and B > 1:
        raise ValueError('a batched projection (B > 1) needs objective(image, ws, index) -> {name: [b]}')
    if not batched_objective:
        chunk = 1

    transforms = prepare_transforms(G, transforms, B, device)
    w_avg, w_std = w_stats(G)
    generators = [torch.Generator(device='cpu').manual_seed(s) for s in seeds]
    w_opt = _prepare_w_init(w_init, w_avg, B, num_ws, w_dim, settings.latent, device).requires_grad_(True)
    shared = settings.share_noise
    names, noise = _prepare_noise(G, noise_init, generators, B, shared, device)
    regularize = bool(noise) and settings.optimize_noise and bool(settings.regularize_noise_weight)
    params = [w_opt]
    if settings.optimize_noise and noise:
        for n in noise:
            n.requires_grad_(True)
        params += noise
        normalize_noise_(noise)
    optimizer = Adam(params, betas=(0.9, 0.999))

    # The one place where the precision reaches the networks: the autocast context around
    # synthesis and objective, and G's own fp16 layers (force_fp32=False) only for 'fp16'.
    import precision as precision_mod
    autocast = lambda precision: precision_mod.autocast(precision, device)  # noqa: E731

    def to_ws(w: torch.Tensor) -> torch.Tensor:
        return w.expand(w.shape[0], num_ws, w_dim) if w.shape[1] == 1 else w

    def chunk_noise(lo: int, hi: int) -> List[torch.Tensor]:
        return [n if shared else n[lo:hi] for n in noise]

    def evaluate(lo: int, hi: int, ws_synth: torch.Tensor,
                 precision: str = settings.precision) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """Image of latents ``lo:hi`` and their terms ``{name: [b]}`` (noise_reg included)."""
        maps = chunk_noise(lo, hi)
        with autocast(precision):
            image = synthesize(G, ws_synth, maps, precision,
                               transforms=None if transforms is None else transforms[lo:hi])
            ws_clean = to_ws(w_opt[lo:hi])
            if batched_objective:
                raw = objective(image, ws_clean, torch.arange(lo, hi, device=device))
            else:
                raw = objective(image, ws_clean)
        terms = _per_latent_terms(raw, hi - lo, 'objective')
        if regularize and not shared:
            terms['noise_reg'] = settings.regularize_noise_weight * noise_regularization(maps).float()
        return image.float(), terms

    def evaluate_latent_terms() -> Dict[str, torch.Tensor]:
        terms = {}
        if latent_objective is not None:
            for name, value in latent_objective(to_ws(w_opt)).items():
                if value.numel() != 1:
                    raise ValueError(f'latent_objective term {name!r} must be a scalar, got {list(value.shape)}')
                terms[name] = value.reshape([]).float()
        if regularize and shared:
            terms['noise_reg'] = settings.regularize_noise_weight * noise_regularization(noise).sum().float()
        return terms

    def as_floats(terms: Dict[str, torch.Tensor], b: int) -> List[Dict[str, float]]:
        values = {name: value.detach().cpu().tolist() for name, value in terms.items()}
        out = []
        for j in range(b):
            d = {name: float(v[j]) for name, v in values.items()}
            d['total'] = float(sum(d.values()))
            out.append(d)
        return out

    history: List[dict] = []
    for step in range(settings.num_steps):
        t = step / settings.num_steps
        lr = learning_rate(t, settings.initial_learning_rate, settings.lr_rampdown_length, settings.lr_rampup_length)
        sigma = w_noise_std(t, w_std, settings.initial_noise_factor, settings.noise_ramp_length)
        w_noise = torch.cat([torch.randn([1, *w_opt.shape[1:]], generator=gen) for gen in generators]).to(device)
        w_noise = w_noise * sigma

        optimizer.zero_grad()
        losses: List[Dict[str, float]] = []
        images = []
        for lo in range(0, B, chunk):
            hi = min(B, lo + chunk)
            image, terms = evaluate(lo, hi, to_ws(w_opt[lo:hi] + w_noise[lo:hi]))
            loss = sum(v.sum() for v in terms.values()) if terms else None
            if loss is not None and loss.requires_grad:
                loss.backward()
            losses += as_floats(terms, hi - lo)
            if callbacks:
                images.append(image.detach())
        latent_terms = evaluate_latent_terms()
        if latent_terms:
            loss = sum(latent_terms.values())
            if loss.requires_grad:
                loss.backward()
        latent_losses = {name: float(v.detach()) for name, v in latent_terms.items()}
        optimizer.step(lr)
        if settings.optimize_noise:
            normalize_noise_(noise)

        total = sum(d['total'] for d in losses) + sum(latent_losses.values())
        entry = dict(step=step, lr=lr, total=total, losses=losses, **latent_losses)
        if B == 1:  # a one-latent run's history reads like its losses
            entry.update({k: v for k, v in losses[0].items() if k != 'total'})
        history.append(entry)
        if callbacks:
            info = StepInfo(step=step, num_steps=settings.num_steps, learning_rate=lr, losses=losses,
                            image=torch.cat(images), ws=to_ws(w_opt).detach(), latent_losses=latent_losses)
            for callback in callbacks:
                callback(info)

    # Final images and losses at the optimized latents, without exploration noise, in fp32 whatever
    # the precision of the steps: the saved latent and noise maps then reproduce the final image.
    with torch.no_grad():
        ws = to_ws(w_opt).detach()
        images, losses = [], []
        for lo in range(0, B, chunk):
            hi = min(B, lo + chunk)
            image, terms = evaluate(lo, hi, ws[lo:hi], 'fp32')
            images.append(image)
            losses += as_floats(terms, hi - lo)
        latent_losses = {name: float(v) for name, v in evaluate_latent_terms().items()}
    misc.assert_shape(ws, [B, num_ws, w_dim])
    return ProjectionResult(ws=ws.clone(), noise={name: n.detach() for name, n in zip(names, noise)},
                            image=torch.cat(images), losses=losses, history=history,
                            seconds=time.perf_counter() - start_time, latent_losses=latent_losses, seeds=seeds)
