"""Small tensor utilities shared by the networks and the projector."""

from __future__ import annotations

import functools
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


def state_dict_mismatch(exc: BaseException, limit: int = 300) -> str:
    """What ``load_state_dict`` found wrong, in one line: its first specific line (``Missing key(s)
    in state_dict: ...``, ``size mismatch for ...``) rather than its header, shortened to ``limit``."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    detail = lines[1] if len(lines) > 1 else (lines[0] if lines else exc.__class__.__name__)
    return detail if len(detail) <= limit else detail[:limit - 3] + '...'


def _check_finite(state: dict, source: str, what: str) -> None:
    from dnnlib.util import UserError
    for name, value in state.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise UserError(f'{source}: the {what} hold NaN or infinite values ({name}): a damaged file?')


def load_state_dict(path: Optional[str], url: str, option: str, what: str):
    """A state dict from a local file (``path``) or, when ``path`` is None, from ``url`` via torch's hub cache.

    Reads with ``weights_only=True``; unwraps a ``{'state_dict': ...}`` checkpoint. Returns
    ``(state_dict, source)``. Every failure is a ``UserError`` naming ``option`` (and, for the
    download, the URL), so offline users know which local file to pass; a damaged copy in the hub
    cache is named, with the advice to delete it. Weights with NaN or infinite values are refused.
    """
    import os
    from dnnlib.util import UserError, not_a_file
    if path is not None:
        if not os.path.isfile(path):
            raise UserError(f'{option}: {not_a_file(path)}')
        try:
            try:  # memory-mapped where the file format allows it (large checkpoints load lazily)
                state = torch.load(path, map_location='cpu', weights_only=True, mmap=True)
            except RuntimeError:
                state = torch.load(path, map_location='cpu', weights_only=True)
        except Exception as exc:
            raise UserError(f'{option}: {path} is not a PyTorch state dict ({exc.__class__.__name__})') from None
        source = path
    else:
        import urllib.parse
        cached = os.path.join(torch.hub.get_dir(), 'checkpoints', os.path.basename(urllib.parse.urlparse(url).path))
        was_cached = os.path.isfile(cached)
        try:
            state = torch.hub.load_state_dict_from_url(url, map_location='cpu', progress=True, weights_only=True)
        except Exception as exc:
            if was_cached:
                raise UserError(f'the cached {what} {cached} cannot be read ({exc.__class__.__name__}): a damaged '
                                f'copy? Delete it to download it again, or pass a good file with {option} PATH') from None
            raise UserError(f'could not get the {what} from {url} ({exc.__class__.__name__}); download that file '
                            f'elsewhere and pass it with {option} PATH') from None
        source = cached if os.path.isfile(cached) else url
    if isinstance(state, dict) and isinstance(state.get('state_dict'), dict):
        state = state['state_dict']
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f'{source}: not a {what} state dict')
    _check_finite(state, source, what)
    return state, source


def module_device(module: torch.nn.Module) -> torch.device:
    """The device of ``module``'s first parameter (or buffer); CPU for a module holding neither.

    The one device lookup of the project (instead of reaching into a particular layer such as
    ``G.mapping.fc0.weight``): the networks are moved as a whole, so any tensor tells.
    """
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device('cpu')


@functools.lru_cache(maxsize=None)
def cpu_has_amx() -> bool:
    """True when this CPU has AMX tiles (recent Intel Xeons), whose oneDNN bf16 kernels work in NHWC."""
    try:
        return bool(torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):
        return False


def conv_layout(x: torch.Tensor) -> torch.Tensor:
    """``x`` (``[N, C, H, W]``) in the memory layout this context's convolutions are fastest in.

    Inside CPU bfloat16 autocast on a CPU with AMX that is channels_last: oneDNN's AMX kernels work
    in NHWC and convert an NCHW input and its gradient at every call (``benchmarks/conv_time.py``
    measures both layouts). Elsewhere, and for tensors that are not 4-D, ``x`` is returned as it
    is. The values are the same either way; only the strides differ.
    """
    if (x.ndim == 4 and x.device.type == 'cpu' and torch.is_autocast_enabled('cpu')
            and torch.get_autocast_dtype('cpu') == torch.bfloat16 and cpu_has_amx()):
        return x.contiguous(memory_format=torch.channels_last)
    return x


class tf32_disabled:
    """Context manager: TF32 off for CUDA matmuls and cuDNN convolutions, restored on exit.

    As NVlabs' metrics measure perceptual path lengths: in true float32, since TF32's 10-bit
    mantissa is far coarser than the tiny steps (``epsilon = 1e-4``) the metric differentiates.
    Harmless on the CPU (the flags only affect CUDA).
    """

    def __enter__(self):
        self._saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        return self

    def __exit__(self, *exc):
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = self._saved
        return False
