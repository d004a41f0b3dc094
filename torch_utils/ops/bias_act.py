"""Bias addition, activation, gain and clamping in one call.

``bias_act(x, b, act='lrelu')`` is what every layer of the networks ends with. The
activation table gives each function its default slope parameter ``alpha`` and the
gain that keeps unit variance for unit-variance inputs (``def_gain``).

For ``linear`` and ``lrelu`` with a positive gain (every StyleGAN2 synthesis and toRGB
layer) the four steps run in one autograd node that writes one tensor and keeps only its
output for the backward pass, as NVIDIA's CUDA kernel does: the gradient follows from the
output's sign and whether it reached the clamp. Plain autograd would allocate four
activations, keep two of them, and take five or six passes over the gradient; in a
projection step at 256x256 that was about a tenth of the generator's time on a CPU. The
values are the same, bit for bit, as the step-by-step composition.
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
        b = b.reshape([-1 if i == dim % x.ndim else 1 for i in range(x.ndim)])
    if act in ('linear', 'lrelu') and gain > 0 and alpha >= 0 and (act == 'lrelu' or gain != 1 or clamp >= 0):
        return _LinearOrLReLU.apply(x, b, act == 'lrelu', alpha, gain, clamp)
    if b is not None:
        x = x + b
    x = spec.func(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


class _LinearOrLReLU(torch.autograd.Function):
    """``clamp(act(x + b) * gain, -clamp, clamp)`` for ``act`` linear or leaky ReLU, ``gain > 0``, ``alpha >= 0``.

    Forward: one new tensor ``y``, the steps applied in place in the order of the plain
    composition (so the values are identical). Backward, from ``y`` alone: zero where ``y``
    reached the clamp (``|y| >= clamp``, the clamp rounded to ``y``'s dtype), ``alpha * gain``
    where ``y < 0`` (leaky ReLU; the sign of ``y`` is that of ``x + b`` because the gain is
    positive) and ``gain`` elsewhere. ``b`` is already shaped to broadcast against ``x`` (or None).
    """

    @staticmethod
    def forward(ctx, x, b, lrelu: bool, alpha: float, gain: float, clamp: float):
        if b is not None:
            y = x + b
            if lrelu:
                F.leaky_relu_(y, alpha)
        else:
            y = F.leaky_relu(x, alpha) if lrelu else x.clone()
        if gain != 1:
            y.mul_(gain)
        if clamp >= 0:
            y.clamp_(-clamp, clamp)
        ctx.lrelu, ctx.alpha, ctx.gain, ctx.clamp = lrelu, alpha, gain, clamp
        ctx.bias_shape = None if b is None else b.shape
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, dy):
        # Differentiable ops only, so that a second derivative (create_graph=True) is right too:
        # linear in dy, and zero almost everywhere in y.
        (y,) = ctx.saved_tensors
        dx = dy
        if ctx.clamp >= 0:
            # The bound as the forward pass stored it: in bf16 or fp16 ``clamp`` rounds to the nearest
            # representable value, which may lie below it. Outputs at that value count as clamped
            # (an unclamped output exactly there is the one case where the composition differs).
            bound = torch.tensor(ctx.clamp, dtype=y.dtype).item()
            dx = torch.ops.aten.hardtanh_backward(dx, y, -bound, bound)
        if ctx.lrelu:
            dx = torch.ops.aten.leaky_relu_backward(dx, y, ctx.alpha, True)
        if ctx.gain != 1:
            in_place = dx is not dy and not torch.is_grad_enabled()
            dx = dx.mul_(ctx.gain) if in_place else dx * ctx.gain
        db = None
        if ctx.needs_input_grad[1]:
            db = dx.sum_to_size(ctx.bias_shape)
        return dx, db, None, None, None, None
