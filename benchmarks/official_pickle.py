"""Write a network of ours as an official-format network pickle, for benchmarks.

The safe loader (``legacy.py``) reads only what NVIDIA's code writes: ``torch_utils.persistence``
records (``class_name``, ``state`` with ``_init_args``, ``_init_kwargs``, ``_parameters``,
``_buffers``, ``_modules``) holding plain tensors, and it refuses a pickle of this project's own
classes. Benchmarks that start ``projector.py`` on a random generator therefore pickle it the
official way, with the top-level constructor arguments they built it from:

    save_official_pkl(path, G, init_kwargs)       # {'G_ema': record of G}

No code is stored (``module_src`` is empty); the loader never runs it anyway.
"""

from __future__ import annotations

import contextlib
import pickle
import sys
import types
from typing import Optional

import torch

PERSISTENCE_MODULE = 'torch_utils.persistence'
RECONSTRUCT = '_reconstruct_persistent_obj'


def _reconstruct(meta):  # only its name is written; unpickling goes to legacy's safe replacement
    raise RuntimeError('not meant to be called')


_reconstruct.__module__, _reconstruct.__qualname__, _reconstruct.__name__ = PERSISTENCE_MODULE, RECONSTRUCT, RECONSTRUCT


@contextlib.contextmanager
def _persistence_module():
    """Let pickle find ``torch_utils.persistence._reconstruct_persistent_obj`` by name while writing."""
    fake = types.ModuleType(PERSISTENCE_MODULE)
    setattr(fake, RECONSTRUCT, _reconstruct)
    saved = sys.modules.get(PERSISTENCE_MODULE)
    sys.modules[PERSISTENCE_MODULE] = fake
    try:
        yield
    finally:
        if saved is None:
            sys.modules.pop(PERSISTENCE_MODULE, None)
        else:
            sys.modules[PERSISTENCE_MODULE] = saved


class _OfficialPickler(pickle.Pickler):
    def __init__(self, file, top: torch.nn.Module, init_kwargs: dict, protocol: int):
        super().__init__(file, protocol=protocol)
        self.top, self.init_kwargs = top, init_kwargs

    def reducer_override(self, obj):
        if not isinstance(obj, torch.nn.Module):
            return NotImplemented
        buffers = {k: (None if v is None else v.detach().clone()) for k, v in obj._buffers.items()
                   if k not in obj._non_persistent_buffers_set}
        state = dict(_init_args=(), _init_kwargs=dict(self.init_kwargs) if obj is self.top else {},
                     _parameters={k: (None if v is None else v.detach().clone()) for k, v in obj._parameters.items()},
                     _buffers=buffers, _modules=dict(obj._modules), training=False)
        meta = dict(type='class', version=6, module_src='', class_name=type(obj).__name__, state=state)
        return _reconstruct, (meta,)


def save_official_pkl(path, G: torch.nn.Module, init_kwargs: dict, D: Optional[torch.nn.Module] = None,
                      protocol: int = 4) -> None:
    """Pickle ``{'G': G, 'G_ema': G, 'D': D}`` as official persistence records (G built from ``init_kwargs``)."""
    with _persistence_module(), open(path, 'wb') as f:
        _OfficialPickler(f, G, init_kwargs, protocol).dump(dict(G=None, D=D, G_ema=G))
