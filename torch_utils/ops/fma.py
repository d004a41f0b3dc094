"""Fused multiply-add."""

import torch


def fma(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Return ``a * b + c`` with broadcasting; gradients are reduced to each input's shape."""
    return torch.addcmul(c, a, b)
