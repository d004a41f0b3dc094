"""Objective terms, as pure functions of images and latents, and the objectives built from them.

An objective maps ``(image [b, 3, R, R] in [-1, 1], ws [b, num_ws, w_dim], index LongTensor [b])``
to a dict of weighted per-latent terms ``{name: [b]}``; ``optimization.project`` sums them.
``index`` says which latents of the batch the ``b`` images are, so objectives holding one target
per latent can select theirs. Called without ``index`` (the one-latent form ``f(image, ws)``),
the objectives here return each term's batch mean as a scalar. Terms with weight 0 are not
computed at all.

Distances between latents (video smoothness and fidelity) come in two forms:

* ``charbonnier_distance(a, b) = sum(sqrt((a - b)^2 + 1e-6))`` over all elements: the form of
  the original code (``projector_video_parallel_v2.py``), the default (``DEFAULT_LATENT_DISTANCE``);
* ``l2_distance(a, b) = ||a - b||_2``: the form the blog post describes.
"""

from __future__ import annotations

import inspect
from typing import Callable, Dict, Optional, Sequence, Union

import torch
import torch.nn.functional as F

from optimization import Objective

CHARBONNIER_EPS = 1e-6
LATENT_DISTANCES = ('charbonnier', 'l2')
DEFAULT_LATENT_DISTANCE = 'charbonnier'
# The original's default weights for its joint video schedule (projector_video_parallel_v2.py):
# smoothness between neighbouring frames 0.005 (of the Charbonnier sum); fidelity 0 on its command line.
DEFAULT_SMOOTHNESS_WEIGHT = 0.005
DEFAULT_FIDELITY_WEIGHT = 0.0
# Weight of the realism term softplus(-D(x)) when it is switched on with --d_loss and no --d_weight
# is given. The original accepts --d_loss but never uses D (its D loss is a TODO), so there is no
# original value: 0.1 makes the term (about 0.7 at D's decision boundary) a fraction of LPIPS.
DEFAULT_D_WEIGHT = 0.1


# ----------------------------------------------------------------------------
# Distances between latents.

def charbonnier_distance(a: torch.Tensor, b: torch.Tensor, eps: float = CHARBONNIER_EPS) -> torch.Tensor:
    """``sum(sqrt((a - b)^2 + eps))`` over all elements (scalar): a smooth L1 distance.

    ``b`` broadcasts to ``a`` (e.g. ``w_avg [1, 1, w_dim]`` against ``ws [N, num_ws, w_dim]``). It
    is never exactly zero: ``a == b`` gives ``sqrt(eps)`` per element.
    """
    return torch.sqrt((a - b).square() + eps).sum()


def l2_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``||a - b||_2`` over all elements (scalar); ``b`` broadcasts to ``a``."""
    return (a - b.expand_as(a)).flatten().norm()


def latent_distance(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The distance function for ``--latent_distance NAME`` (``'charbonnier'`` or ``'l2'``)."""
    if name == 'charbonnier':
        return charbonnier_distance
    if name == 'l2':
        return l2_distance
    raise ValueError(f'latent distance must be one of {LATENT_DISTANCES}, got {name!r}')


def neighbour_distance(ws: torch.Tensor, distance: Union[str, Callable] = DEFAULT_LATENT_DISTANCE) -> torch.Tensor:
    """Smoothness of a sequence of latents ``[N, ...]``: ``distance(ws[1:], ws[:-1])`` (0 for one latent).

    With the Charbonnier distance this is the original's ``sum(sqrt((w[:-1] - w[1:])^2 + 1e-6))``.
    """
    fn = latent_distance(distance) if isinstance(distance, str) else distance
    if ws.shape[0] < 2:
        return ws.new_zeros([])
    return fn(ws[1:], ws[:-1])


def smoothness_term(ws: torch.Tensor, ws_prev: torch.Tensor) -> torch.Tensor:
    """``||w_i - w_{i-1}||``: the L2 norm of the latent change between neighbouring frames."""
    return l2_distance(ws, ws_prev)


def fidelity_term(ws: torch.Tensor, w_avg: torch.Tensor) -> torch.Tensor:
    """``||w_i - w_avg||``: distance from the average latent (keeps faces plausible)."""
    return l2_distance(ws, w_avg)


# ----------------------------------------------------------------------------
# Image terms.

def _accepts_keyword(module, name: str) -> bool:
    try:
        params = inspect.signature(module.forward if isinstance(module, torch.nn.Module) else module).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind == p.VAR_KEYWORD for p in params.values())


def realism_term(D, image: torch.Tensor, force_fp32: bool = True) -> torch.Tensor:
    """``softplus(-D(image))`` per image ``[N]``: low when D finds the image real.

    D runs with ``force_fp32`` (the default; pass False only for reduced precision), as the
    original ran its networks; a D whose ``forward`` has no such argument is called without it.
    """
    c = torch.zeros([image.shape[0], D.c_dim], device=image.device)
    kwargs = dict(force_fp32=force_fp32) if _accepts_keyword(D, 'force_fp32') else {}
    return F.softplus(-D(image, c, **kwargs)).reshape(image.shape[0], -1).mean(dim=1)


def _takes(fn, n: int) -> bool:
    """Whether ``fn`` (a function, or a module's ``forward``) accepts ``n`` positional arguments."""
    try:
        params = list(inspect.signature(fn.forward if isinstance(fn, torch.nn.Module) else fn).parameters.values())
    except (TypeError, ValueError):
        return False
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return True
    return len([p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]) >= n


def _call(fn, image: torch.Tensor, index: Optional[torch.Tensor]) -> torch.Tensor:
    """``fn(image[, index]) -> [b]``: a per-latent sequence of callables, or one callable (with index if it takes one)."""
    if isinstance(fn, (list, tuple)):
        if index is None:
            raise ValueError('one loss per latent needs the batch index')
        return torch.cat([fn[int(i)](image[j:j + 1]).reshape(1) for j, i in enumerate(index.tolist())])
    # A loss with one target compares every image with it; one with several targets (one per
    # latent: LookDistance, LandmarkLoss with T targets) selects them with the index.
    if index is not None and getattr(fn, 'num_targets', 2) > 1 and _takes(fn, 2):
        return fn(image, index)
    return fn(image)


LossFn = Union[Callable[..., torch.Tensor], Sequence[Callable[[torch.Tensor], torch.Tensor]]]


def look_and_landmarks(perceptual: Optional[LossFn] = None, landmarks: Optional[LossFn] = None,
                       lpips_weight: float = 1.0, landmark_weight: float = 0.1,
                       extra: Optional[Callable[..., Dict[str, torch.Tensor]]] = None) -> Objective:
    """``lpips_weight * LPIPS(x, look) + landmark_weight * HL(x, target)`` (+ ``extra`` terms), per latent.

    ``perceptual`` and ``landmarks`` each give distances ``[b]`` for images ``[b, 3, R, R]``: one
    callable ``f(images)`` (the same target for every latent) or ``f(images, index)`` (per-latent
    targets, e.g. ``perceptual.LookDistance``; one with ``num_targets == 1`` is called without the
    index), or a sequence of one-image callables, one per latent (``landmarks[i]`` scores latent ``i``). ``extra(image, ws[, index])`` adds terms
    ``{name: [b]}`` (a scalar is accepted for one latent).
    """
    if lpips_weight and perceptual is None:
        raise ValueError('lpips_weight > 0 needs a perceptual loss')
    if landmark_weight and landmarks is None:
        raise ValueError('landmark_weight > 0 needs a landmark loss')

    def objective(image: torch.Tensor, ws: torch.Tensor, index: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        b = image.shape[0]
        terms = {}
        if lpips_weight:
            terms['lpips'] = lpips_weight * _call(perceptual, image, index).reshape(b)
        if landmark_weight:
            terms['landmark'] = landmark_weight * _call(landmarks, image, index).reshape(b)
        if extra is not None:
            more = extra(image, ws, index) if (index is not None and _takes(extra, 3)) else extra(image, ws)
            for name, value in more.items():
                terms[name] = value.reshape(1).expand(b) if (value.ndim == 0 and b == 1) else value
        if index is None:  # the one-latent form: scalars
            return {name: value.mean() for name, value in terms.items()}
        return terms

    return objective


def per_latent(objectives: Sequence[Objective]) -> Objective:
    """One objective per latent, as one batched objective: latent ``i`` of a chunk is scored by ``objectives[i]``.

    Each is called on its own image as latent 0 of a one-latent batch (``b = 1``, index ``[0]``), so
    single-target objectives work unchanged; terms missing from some latents' dicts count 0 there.
    For many look/landmark pairs with their own targets and weights.
    """
    objectives = list(objectives)

    def objective(image: torch.Tensor, ws: torch.Tensor, index: torch.Tensor) -> Dict[str, torch.Tensor]:
        rows = []
        for j, i in enumerate(index.tolist()):
            terms = objectives[i](image[j:j + 1], ws[j:j + 1], index.new_zeros(1))
            rows.append({k: v.reshape(1) for k, v in terms.items()})
        names = list(dict.fromkeys(k for row in rows for k in row))
        return {k: torch.cat([row[k] if k in row else image.new_zeros([1]) for row in rows]) for k in names}

    return objective
