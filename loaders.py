"""Load the frozen networks a run needs: G (and D) from a pickle, FAN, LPIPS."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

import legacy
import dnnlib


@dataclass
class Networks:
    G: torch.nn.Module                      # networks.Generator (G_ema), eval, frozen
    D: Optional[torch.nn.Module] = None     # networks.Discriminator, when asked for
    fan: Optional[torch.nn.Module] = None   # face_alignment FAN, when asked for
    perceptual: Optional[torch.nn.Module] = None  # perceptual.PerceptualLoss, when asked for


def load_networks(network_pkl: str, device: torch.device, fan_weights: Optional[str] = None,
                  vgg_weights: Optional[str] = None, need_D: bool = False, need_fan: bool = True,
                  need_lpips: bool = True) -> Networks:
    """Load what a run needs; every missing or unreadable file raises ``UserError``."""
    with dnnlib.util.open_url(network_pkl) as f:
        try:
            data = legacy.load_network_pkl(f)
        except legacy.NetworkLoadError as exc:
            raise legacy.NetworkLoadError(f'--network {network_pkl}: {exc}') from None
    G = data['G_ema'] if data['G_ema'] is not None else data['G']
    if G is None:
        raise legacy.NetworkLoadError(f'{network_pkl} holds no generator')
    if G.img_channels != 3:
        raise legacy.NetworkLoadError(f'{network_pkl}: the generator makes {G.img_channels}-channel images; '
                                      f'faces need RGB')
    D = None
    if need_D:
        D = data['D']
        if D is None:
            raise legacy.NetworkLoadError(f'{network_pkl} holds no discriminator (needed for --d_weight)')
        D = D.to(device)
    nets = Networks(G=G.to(device), D=D)
    if need_fan:
        from landmark_loss import load_fan
        nets.fan = load_fan(fan_weights, device)
    if need_lpips:
        from perceptual import PerceptualLoss
        nets.perceptual = PerceptualLoss(vgg_weights, device)
    return nets
