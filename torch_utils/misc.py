"""Small tensor utilities shared by the networks and the projector."""

from __future__ import annotations

from typing import Optional, Sequence

import torch


def assert_shape(tensor: torch.Tensor, ref_shape: Sequence[Optional[int]]) -> None:
    """Raise AssertionError unless ``tensor.shape`` matches ``ref_shape``.

    ``None`` in ``ref_shape`` matches any size along that dimension.
    """
    if tensor.ndim != len(ref_shape):
        raise AssertionError(f"wrong number of dimensions: got {tensor.ndim}, expected {len(ref_shape)}"
                             f" (shape {list(tensor.shape)} vs {list(ref_shape)})")
    for idx, (size, ref) in enumerate(zip(tensor.shape, ref_shape)):
        if ref is not None and int(size) != int(ref):
            raise AssertionError(f"wrong size for dimension {idx}: got {int(size)}, expected {int(ref)}"
                                 f" (shape {list(tensor.shape)} vs {list(ref_shape)})")


def pick_device(requested: Optional[str] = None) -> torch.device:
    """Return ``requested`` as a device, or CUDA when available and CPU otherwise."""
    if requested:
        return torch.device(requested)
    return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
