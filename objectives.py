"""Objective terms, as pure functions of images and latents, and the objectives built from them.

An objective maps ``(image [1, 3, R, R] in [-1, 1], ws [1, num_ws, w_dim])`` to a dict of
weighted scalar terms; ``optimization.project`` sums them. Terms with weight 0 are not
computed at all.
"""

from __future__ import annotations

from typing import Dict, Optional

import torch
import torch.nn.functional as F

from optimization import Objective


def smoothness_term(ws: torch.Tensor, ws_prev: torch.Tensor) -> torch.Tensor:
    """``||w_i - w_{i-1}||``: the L2 norm of the latent change between neighbouring frames."""
    return (ws - ws_prev).flatten().norm()


def fidelity_term(ws: torch.Tensor, w_avg: torch.Tensor) -> torch.Tensor:
    """``||w_i - w_avg||``: distance from the average latent (keeps faces plausible)."""
    return (ws - w_avg.expand_as(ws)).flatten().norm()


def realism_term(D, image: torch.Tensor) -> torch.Tensor:
    """``softplus(-D(image))`` averaged over the batch: low when D finds the image real."""
    c = torch.zeros([image.shape[0], D.c_dim], device=image.device)
    return F.softplus(-D(image, c)).mean()


def look_and_landmarks(perceptual=None, landmarks=None, lpips_weight: float = 1.0,
                       landmark_weight: float = 0.1, extra: Optional[Objective] = None) -> Objective:
    """``lpips_weight * LPIPS(x, look) + landmark_weight * HL(x, target)`` (+ ``extra`` terms)."""
    if lpips_weight and perceptual is None:
        raise ValueError('lpips_weight > 0 needs a perceptual loss')
    if landmark_weight and landmarks is None:
        raise ValueError('landmark_weight > 0 needs a landmark loss')

    def objective(image: torch.Tensor, ws: torch.Tensor) -> Dict[str, torch.Tensor]:
        terms = {}
        if lpips_weight:
            terms['lpips'] = lpips_weight * perceptual(image).mean()
        if landmark_weight:
            terms['landmark'] = landmark_weight * landmarks(image).mean()
        if extra is not None:
            terms.update(extra(image, ws))
        return terms

    return objective
