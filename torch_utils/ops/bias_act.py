"""Bias addition, activation, gain and clamping in one call.

``bias_act(x, b, act='lrelu')`` is what every layer of the networks ends with. The
activation table gives each function its default slope parameter ``alpha`` and the
gain that keeps unit variance for unit-variance inputs (``def_gain``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Activation:
    func: Callable[[torch.Tensor, float], torch.Tensor]
    def_alpha: float
    def_gain: float


activation_funcs = {
    'linear':   Activation(lambda x, alpha: x,                       0.0, 1.0),
    'relu':     Activation(lambda x, alpha: F.relu(x),               0.0, math.sqrt(2)),
    'lrelu':    Activation(lambda x, alpha: F.leaky_relu(x, alpha),  0.2, math.sqrt(2)),
    'tanh':     Activation(lambda x, alpha: torch.tanh(x),           0.0, 1.0),
    'sigmoid':  Activation(lambda x, alpha: torch.sigmoid(x),        0.0, 1.0),
    'elu':      Activation(lambda x, alpha: F.elu(x),                0.0, 1.0),
    'selu':     Activation(lambda x, alpha: F.selu(x),               0.0, 1.0),
    'softplus': Activation(lambda x, alpha: F.softplus(x),           0.0, 1.0),
    'swish':    Activation(lambda x, alpha: torch.sigmoid(x) * x,    0.0, math.sqrt(2)),
}


def bias_act(x: torch.Tensor, b: Optional[torch.Tensor] = None, dim: int = 1, act: str = 'linear',
             alpha: Optional[float] = None, gain: Optional[float] = None,
             clamp: Optional[float] = None) -> torch.Tensor:
    """Compute ``clamp(act(x + b, alpha) * gain, -clamp, clamp)``.

    Args:
        x:     Input of any shape.
        b:     Optional bias of shape ``[x.shape[dim]]``, broadcast along ``dim``.
        dim:   Dimension of ``x`` the bias runs along.
        act:   Name of the activation (a key of ``activation_funcs``).
        alpha: Slope parameter (only ``lrelu`` uses it); ``None`` takes the default.
        gain:  Output scale; ``None`` takes the activation's default gain.
        clamp: Clamp the output to ``[-clamp, clamp]``; ``None`` or negative disables it.
    Returns:
        A tensor of the shape and dtype of ``x``.
    """
    if act not in activation_funcs:
        raise ValueError(f"unknown activation {act!r}; expected one of {sorted(activation_funcs)}")
    spec = activation_funcs[act]
    alpha = spec.def_alpha if alpha is None else float(alpha)
    gain = spec.def_gain if gain is None else float(gain)
    clamp = -1.0 if clamp is None else float(clamp)

    if b is not None:
        if b.ndim != 1 or b.shape[0] != x.shape[dim]:
            raise ValueError(f"bias of shape {list(b.shape)} does not fit dimension {dim} of {list(x.shape)}")
        x = x + b.reshape([-1 if i == dim % x.ndim else 1 for i in range(x.ndim)])
    x = spec.func(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x
