"""Numeric precision of a run: which one to use, and the contexts that apply it.

``--precision`` takes ``auto``, ``fp32``, ``bf16`` or ``fp16``; ``resolve`` turns it into one of
the three concrete precisions for a device:

* ``auto``: on CUDA, ``fp16`` (the official StyleGAN2 mixed precision); on a CPU whose torch
  build reports bfloat16 support, ``bf16``; elsewhere ``fp32``.
* ``fp16`` (CUDA only): the generator runs its ``num_fp16_res`` highest-resolution blocks in
  half precision with ``conv_clamp``, as the official code does when ``force_fp32=False``;
  FAN and VGG run under fp16 autocast.
* ``bf16``: synthesis, FAN and VGG run under bfloat16 autocast (CPU or CUDA). On a CPU with AMX
  their convolutions get channels_last inputs (``torch_utils.misc.conv_layout``), the layout
  oneDNN's AMX kernels work in; on a CPU without native bf16 kernels FAN stays fp32.
* ``fp32``: everything in float32, and synthesis is called with ``force_fp32=True`` (the
  original forced fp32 in every synthesis call).

``bf16`` on a CPU without native bfloat16 kernels (no AVX-512 or AMX: ``cpu_supports_bf16`` is
False) still runs, but its convolutions fall back to a reference path many times slower than
fp32 (``benchmarks/conv_time.py`` measures it); ``announcement`` then adds a warning line.

Whatever the precision, the latent, Adam's state, the noise maps, the loss sums and the
schedule stay float32: only the forward passes of the frozen networks are reduced.
"""

from __future__ import annotations

import contextlib
from typing import ContextManager, Optional, Union

import torch

from dnnlib.util import UserError

CHOICES = ('auto', 'fp32', 'bf16', 'fp16')
CONCRETE = ('fp32', 'bf16', 'fp16')


def cpu_supports_bf16() -> bool:
    """True when this torch build runs bfloat16 kernels natively on this CPU (AVX-512 BF16 / AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve(requested: str, device: Union[str, torch.device]) -> str:
    """The concrete precision (``fp32``, ``bf16`` or ``fp16``) for ``requested`` on ``device``.

    Raises ``UserError`` when the device cannot run the requested precision.
    """
    device = torch.device(device)
    if requested not in CHOICES:
        raise UserError(f'--precision must be one of {", ".join(CHOICES)}, got {requested!r}')
    if requested == 'auto':
        if device.type == 'cuda':
            return 'fp16'
        if device.type == 'cpu' and cpu_supports_bf16():
            return 'bf16'
        return 'fp32'
    if requested == 'fp16' and device.type != 'cuda':
        raise UserError('--precision fp16 needs a CUDA device; on the CPU use bf16 or fp32')
    if requested == 'bf16' and device.type == 'cuda' and not torch.cuda.is_bf16_supported():
        raise UserError('--precision bf16: this GPU does not support bfloat16; use fp16 or fp32')
    return requested


def autocast(precision: str, device: Union[str, torch.device]) -> ContextManager:
    """The autocast context for the frozen networks' forward passes (a no-op for ``fp32``)."""
    if precision not in CONCRETE:
        raise ValueError(f'not a concrete precision: {precision!r} (resolve() it first)')
    device = torch.device(device)
    if precision == 'fp32':
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == 'bf16' else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def slow_bf16_warning(used: str, device: Union[str, torch.device]) -> Optional[str]:
    """The warning for ``bf16`` on a CPU without native bfloat16 kernels, else None."""
    if used != 'bf16' or torch.device(device).type != 'cpu' or cpu_supports_bf16():
        return None
    return ('this CPU has no native bfloat16 kernels (AVX-512 or AMX), so bf16 convolutions run on a '
            'slow reference path, far slower than fp32; --precision auto chooses fp32 here')


def announcement(used: str, requested: str, device: Union[str, torch.device]) -> str:
    """What a command says of its precision: ``Precision: bf16 (from --precision auto).``

    On a CPU where ``bf16`` is slow (``slow_bf16_warning``), a second line ``warning: ...`` follows.
    """
    text = f'Precision: {used}' + (f' (from --precision {requested}).' if requested == 'auto' else '.')
    warning = slow_bf16_warning(used, device)
    return text + (f'\nwarning: {warning}' if warning else '')


def synthesis_kwargs(precision: str) -> dict:
    """Keyword arguments for ``G.synthesis`` / ``D``: the networks' own fp16 layers only for ``fp16``.

    ``fp32`` forces float32 (as the original did in every call); ``bf16`` also keeps the
    networks' fp16 blocks off and lets autocast choose bfloat16 instead.
    """
    if precision not in CONCRETE:
        raise ValueError(f'not a concrete precision: {precision!r} (resolve() it first)')
    return dict(force_fp32=precision != 'fp16')
