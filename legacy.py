"""Load official StyleGAN2-ADA network pickles without running any code from the file.

An official pickle is a dict ``{'G', 'D', 'G_ema', 'augment_pipe', 'training_set_kwargs'}``
whose networks are stored through ``torch_utils.persistence._reconstruct_persistent_obj(meta)``:
``meta`` names the class (``class_name``), carries the source of the module that defined it
(``module_src``) and the object's ``__dict__`` (``state``). The reference loader executes
``module_src``; this one never does. Instead:

* a restricted unpickler admits only the handful of globals such files need (tensor and
  storage rebuilders, ``OrderedDict``, numpy scalars and dtypes) and refuses everything else;
* storages are read with ``torch.load(..., weights_only=True)``;
* every persistent object becomes a ``PersistentRecord`` (class name, constructor arguments,
  tensors, submodules); each network is then built as *our* class from ``class_name`` and
  ``_init_kwargs`` and receives the record's tensors through ``load_state_dict(strict=True)``.

Usage::

    with dnnlib.util.open_url(url_or_path) as f:
        data = legacy.load_network_pkl(f)
    G = data['G_ema']                        # networks.Generator, eval mode, no gradients

or simply ``G = legacy.load_generator(url_or_path, device)``.
"""

from __future__ import annotations

import collections
import copy
import io
import pickle
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Dict, Optional, Union

import numpy as np
import torch

import dnnlib
import networks
from dnnlib.util import UserError


class NetworkLoadError(UserError):
    """The file is not a network pickle we can read safely."""


# ----------------------------------------------------------------------------
# Restricted unpickling.

@dataclass
class PersistentRecord:
    """What an official persistent object holds, as plain data (nothing executed)."""
    class_name: str
    version: int
    init_args: tuple
    init_kwargs: dict
    parameters: Dict[str, Optional[torch.Tensor]] = field(default_factory=dict)
    buffers: Dict[str, Optional[torch.Tensor]] = field(default_factory=dict)
    modules: Dict[str, Any] = field(default_factory=dict)


class InertPlaceholder:
    """Stands in for objects we never use (``AugmentPipe``): holds its record, does nothing."""

    def __init__(self, record: PersistentRecord):
        self.class_name = record.class_name
        self.init_kwargs = record.init_kwargs

    def __repr__(self) -> str:
        return f'<inert placeholder for {self.class_name}>'


def _reconstruct_persistent_obj(meta: Any) -> PersistentRecord:
    if not isinstance(meta, dict) or not {'class_name', 'state'} <= set(meta):
        raise NetworkLoadError('persistent object without class_name and state')
    if meta.get('type', 'class') != 'class':
        raise NetworkLoadError(f"unsupported persistent object type {meta.get('type')!r}")
    state = meta['state']
    if not isinstance(state, dict):
        raise NetworkLoadError(f"persistent object {meta['class_name']!r} has no state dict")
    # meta['module_src'] is deliberately ignored: it is source text we never execute.
    return PersistentRecord(
        class_name=str(meta['class_name']),
        version=int(meta.get('version', 0)),
        init_args=tuple(state.get('_init_args', ())),
        init_kwargs=dict(state.get('_init_kwargs', {})),
        parameters=dict(state.get('_parameters', {})),
        buffers=dict(state.get('_buffers', {})),
        modules=dict(state.get('_modules', {})),
    )


def _load_storage(data: bytes):
    """``torch.storage._load_from_bytes`` replacement that cannot run code."""
    if not isinstance(data, (bytes, bytearray)):
        raise NetworkLoadError('storage payload is not bytes')
    try:
        storage = torch.load(io.BytesIO(data), weights_only=True, map_location='cpu')
    except Exception as exc:  # the weights-only unpickler refuses anything but tensor data
        raise NetworkLoadError(f'storage payload is not tensor data ({type(exc).__name__}: '
                               f'{str(exc).splitlines()[0] if str(exc) else ""})') from None
    if not isinstance(storage, (torch.UntypedStorage, torch.TypedStorage)):
        raise NetworkLoadError(f'storage payload holds a {type(storage).__name__}, not a storage')
    return storage


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    if not isinstance(storage, (torch.UntypedStorage, torch.TypedStorage)):
        raise NetworkLoadError('tensor rebuilt from something that is not a storage')
    if backward_hooks:
        raise NetworkLoadError('tensor with backward hooks refused')
    return torch._utils._rebuild_tensor_v2(storage, int(storage_offset), tuple(size), tuple(stride),
                                           bool(requires_grad), collections.OrderedDict())


def _rebuild_parameter(data, requires_grad, backward_hooks):
    if not isinstance(data, torch.Tensor):
        raise NetworkLoadError('parameter rebuilt from something that is not a tensor')
    if backward_hooks:
        raise NetworkLoadError('parameter with backward hooks refused')
    return torch.nn.Parameter(data, requires_grad=bool(requires_grad))


_SIMPLE_DTYPES = {'b1', 'i1', 'u1', 'i2', 'u2', 'i4', 'u4', 'i8', 'u8', 'f2', 'f4', 'f8'}


class _DtypeSpec:
    """``numpy.dtype(name, align, copy)`` as pickled; the byte order arrives through BUILD."""

    def __init__(self, name, align=False, copy=False):
        if name not in _SIMPLE_DTYPES:
            raise NetworkLoadError(f'numpy dtype {name!r} refused')
        self.name = name
        self.byteorder = '<'

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) > 1 and state[1] in ('<', '>', '|', '='):
            self.byteorder = state[1]

    def to_numpy(self) -> np.dtype:
        dtype = np.dtype(self.name)
        return dtype.newbyteorder(self.byteorder) if self.byteorder in '<>' else dtype


def _numpy_scalar(dtype, data=None):
    if not isinstance(dtype, _DtypeSpec) or not isinstance(data, (bytes, bytearray)):
        raise NetworkLoadError('malformed numpy scalar')
    np_dtype = dtype.to_numpy()
    if len(data) != np_dtype.itemsize:
        raise NetworkLoadError('malformed numpy scalar')
    return np.frombuffer(bytes(data), dtype=np_dtype)[0].item()


_ALLOWED_GLOBALS = {
    ('torch_utils.persistence', '_reconstruct_persistent_obj'): _reconstruct_persistent_obj,
    ('torch.storage', '_load_from_bytes'): _load_storage,
    ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor_v2,
    ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
    ('collections', 'OrderedDict'): collections.OrderedDict,
    ('numpy.core.multiarray', 'scalar'): _numpy_scalar,
    ('numpy._core.multiarray', 'scalar'): _numpy_scalar,
    ('numpy', 'dtype'): _DtypeSpec,
    ('dnnlib.util', 'EasyDict'): dnnlib.EasyDict,  # a plain dict subclass: nothing to execute
    ('dnnlib', 'EasyDict'): dnnlib.EasyDict,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise NetworkLoadError(f'refused to load {module}.{name}: a network pickle has no reason to '
                                   f'reference it') from None

    def persistent_load(self, pid):
        raise NetworkLoadError('refused a persistent id: not an official network pickle')


# ----------------------------------------------------------------------------
# Rebuilding our modules from records.

_NETWORK_CLASSES = {
    'Generator': networks.Generator,
    'Discriminator': networks.Discriminator,
    'MappingNetwork': networks.MappingNetwork,
    'SynthesisNetwork': networks.SynthesisNetwork,
}
_KNOWN_SUBMODULE_CLASSES = {
    'SynthesisBlock', 'SynthesisLayer', 'ToRGBLayer', 'FullyConnectedLayer', 'Conv2dLayer',
    'DiscriminatorBlock', 'DiscriminatorEpilogue', 'MinibatchStdLayer', 'MappingNetwork', 'SynthesisNetwork',
}
_INERT_CLASSES = {'AugmentPipe'}


def _flatten(record: PersistentRecord, prefix: str, tensors: Dict[str, torch.Tensor],
             classes: Dict[str, str]) -> None:
    classes[prefix.rstrip('.')] = record.class_name
    for group in (record.parameters, record.buffers):
        for name, value in group.items():
            if value is None:
                continue
            if not isinstance(value, torch.Tensor):
                raise NetworkLoadError(f'{prefix}{name} of {record.class_name} is not a tensor')
            tensors[prefix + name] = value
    for name, sub in record.modules.items():
        if sub is None:
            continue
        if not isinstance(sub, PersistentRecord):
            raise NetworkLoadError(f'submodule {prefix}{name} is not a persistent network object')
        _flatten(sub, f'{prefix}{name}.', tensors, classes)


def build_module(record: PersistentRecord) -> torch.nn.Module:
    """Build our module for ``record`` and copy the record's tensors into it (strict)."""
    cls = _NETWORK_CLASSES.get(record.class_name)
    if cls is None:
        raise NetworkLoadError(f'unknown network class {record.class_name!r}: this loader knows '
                               f'{", ".join(sorted(_NETWORK_CLASSES))} (StyleGAN2-ADA)')
    try:
        module = cls(*copy.deepcopy(record.init_args), **copy.deepcopy(record.init_kwargs))
    except Exception as exc:  # any failure here means arguments that do not describe a network
        raise NetworkLoadError(f'cannot build {record.class_name} from the arguments in the file: '
                               f'{exc.__class__.__name__}: {exc}') from None

    tensors: Dict[str, torch.Tensor] = {}
    classes: Dict[str, str] = {}
    _flatten(record, '', tensors, classes)
    for path, class_name in classes.items():
        if path and class_name not in _KNOWN_SUBMODULE_CLASSES:
            raise NetworkLoadError(f'unknown network class {class_name!r} at {path}')
        try:
            ours = module.get_submodule(path) if path else module
        except AttributeError:
            raise NetworkLoadError(f'{record.class_name} in the file has a submodule {path!r} that ours does not') from None
        if type(ours).__name__ != class_name:
            raise NetworkLoadError(f'{path or "the network"} is a {class_name} in the file but a '
                                   f'{type(ours).__name__} here')
    try:
        module.load_state_dict({k: v.detach() for k, v in tensors.items()}, strict=True)
    except RuntimeError as exc:
        raise NetworkLoadError(f'{record.class_name} in the file does not match ours: '
                               f'{str(exc).splitlines()[0]}') from None
    return module.eval().requires_grad_(False)


def _convert(obj: Any) -> Any:
    if isinstance(obj, PersistentRecord):
        if obj.class_name in _INERT_CLASSES:
            return InertPlaceholder(obj)
        return build_module(obj)
    return obj


def load_network_pkl(f: Union[BinaryIO, bytes]) -> dict:
    """Read an official StyleGAN2-ADA network pickle safely.

    Args:
        f: An open binary file (or the file's bytes).
    Returns:
        ``{'G', 'D', 'G_ema'}`` as our modules (eval mode, ``requires_grad=False``, CPU),
        ``'training_set_kwargs'`` (dict or None) and ``'augment_pipe'`` (an inert
        placeholder or None). Missing networks are None.
    Raises:
        NetworkLoadError: the file is not a network pickle, references a global outside the
            allow-list, or holds a network class this project does not implement.
    """
    if isinstance(f, (bytes, bytearray)):
        f = io.BytesIO(f)
    try:
        data = _RestrictedUnpickler(f).load()
    except NetworkLoadError:
        raise
    except Exception as exc:
        raise NetworkLoadError(f'not a network pickle ({type(exc).__name__}: {exc})') from None
    if not isinstance(data, dict) or not any(k in data for k in ('G', 'D', 'G_ema')):
        raise NetworkLoadError('not a network pickle: expected a dict with G, D and G_ema')
    result = {key: None for key in ('G', 'D', 'G_ema', 'augment_pipe', 'training_set_kwargs')}
    for key, value in data.items():
        result[key] = _convert(value)
    for key in ('G', 'G_ema'):
        if result[key] is not None and not isinstance(result[key], networks.Generator):
            raise NetworkLoadError(f'{key} is a {type(result[key]).__name__}, not a Generator')
    return result


def load_generator(url_or_path: str, device: Union[str, torch.device] = 'cpu') -> networks.Generator:
    """Open (downloading and caching if needed) a network pickle and return ``G_ema`` on ``device``."""
    with dnnlib.util.open_url(url_or_path) as f:
        data = load_network_pkl(f)
    G = data['G_ema'] if data['G_ema'] is not None else data['G']
    if G is None:
        raise NetworkLoadError(f'{url_or_path} holds no generator')
    return G.to(device)
