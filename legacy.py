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
from torch.overrides import TorchFunctionMode

import dnnlib
import legacy_tf
import networks
from networks import stylegan3
from dnnlib.util import UserError
from torch_utils import misc


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
    for key in ('_init_args', '_init_kwargs'):
        state[key] = _materialize(state.get(key, () if key == '_init_args' else {}))
        if not legacy_tf.is_plain_data(state[key]):
            raise NetworkLoadError(f"persistent object {meta['class_name']!r} has constructor arguments that are "
                                   f"not plain data: refused")
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
        # (torch's own message goes on to suggest weights_only=False, which is what this refuses)
        raise NetworkLoadError(f'refused: a storage payload in the file is not plain tensor data '
                               f'({type(exc).__name__})') from None
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
    """``numpy.dtype(name, align, copy)`` as pickled, for plain numeric dtypes only.

    Not a numpy dtype: BUILD (``__setstate__``) may only set the byte order, never fields,
    names or flags, so no pickle can turn it into an object or structured dtype.
    """

    def __init__(self, name=None, align=False, copy=False):
        if not isinstance(name, str) or name not in _SIMPLE_DTYPES:
            raise NetworkLoadError(f'numpy dtype {name!r} refused')
        self.name = name
        self.byteorder = '<'

    def __setstate__(self, state):
        # numpy writes (3, byteorder, subarray, names, fields, elsize, alignment, flags).
        if not isinstance(state, tuple) or len(state) < 2 or state[1] not in ('<', '>', '|', '='):
            raise NetworkLoadError('malformed numpy dtype')
        if any(part is not None for part in state[2:5]):
            raise NetworkLoadError('structured numpy dtype refused')
        self.byteorder = state[1]

    def to_numpy(self) -> np.dtype:
        dtype = np.dtype(self.name)
        return dtype.newbyteorder(self.byteorder) if self.byteorder in '<>' else dtype


def _numpy_scalar(dtype, data=None):
    """``numpy.core.multiarray.scalar(dtype, bytes)``: a Python number."""
    if not isinstance(dtype, _DtypeSpec) or not isinstance(data, (bytes, bytearray)):
        raise NetworkLoadError('malformed numpy scalar')
    np_dtype = dtype.to_numpy()
    if len(data) != np_dtype.itemsize:
        raise NetworkLoadError('malformed numpy scalar')
    return np.frombuffer(bytes(data), dtype=np_dtype)[0].item()


class _NdarrayName:
    """What ``numpy.ndarray`` resolves to: a name for ``_reconstruct``, not callable."""

    def __repr__(self) -> str:
        return '<numpy.ndarray name>'


_NDARRAY = _NdarrayName()
_MAX_ARRAY_BYTES = 1 << 34


def _check_shape(shape) -> tuple:
    if not isinstance(shape, tuple) or not all(isinstance(n, int) and 0 <= n < 2 ** 40 for n in shape):
        raise NetworkLoadError('malformed numpy array')
    return shape


class _ArraySpec:
    """``numpy.core.multiarray._reconstruct(numpy.ndarray, (0,), b'b')`` then BUILD: a plain array.

    BUILD's state ``(version, shape, dtype, is_fortran, data)`` is checked here (a ``_DtypeSpec``
    and bytes, nothing else) and the array made from a copy of the bytes; ``_materialize``
    replaces the spec with that array once the pickle is read.
    """

    def __init__(self, subtype=None, shape=None, dtype_code=None):
        if subtype is not _NDARRAY:
            raise NetworkLoadError('numpy array of a subclass refused')
        if dtype_code not in (b'b', 'b'):
            raise NetworkLoadError('malformed numpy array')
        self.array: Optional[np.ndarray] = None

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) != 5 or state[0] != 1:
            raise NetworkLoadError('malformed numpy array')
        _, shape, dtype, is_fortran, data = state
        if not isinstance(dtype, _DtypeSpec):
            raise NetworkLoadError('numpy array without a plain numeric dtype refused')
        if not isinstance(data, (bytes, bytearray)) or not isinstance(is_fortran, bool):
            raise NetworkLoadError('malformed numpy array')
        self.array = _array_from_bytes(data, dtype, _check_shape(shape), 'F' if is_fortran else 'C')


def _array_from_bytes(data, dtype: '_DtypeSpec', shape: tuple, order: str) -> np.ndarray:
    np_dtype = dtype.to_numpy()
    if len(data) != int(np.prod(shape, dtype=np.int64)) * np_dtype.itemsize or len(data) > _MAX_ARRAY_BYTES:
        raise NetworkLoadError('malformed numpy array')
    return np.frombuffer(bytes(data), dtype=np_dtype).reshape(shape, order=order).copy()


def _numpy_frombuffer(buf, dtype, shape, order='C'):
    """``numpy.core.numeric._frombuffer`` (how protocol 5 writes arrays): a copy of ``buf`` as an array."""
    if not isinstance(buf, (bytes, bytearray)) or not isinstance(dtype, _DtypeSpec) or order not in ('C', 'F'):
        raise NetworkLoadError('malformed numpy array')
    return _array_from_bytes(buf, dtype, _check_shape(shape), order)


def _materialize(obj: Any) -> Any:
    """``obj`` with every ``_ArraySpec`` replaced by its array and no ``_DtypeSpec`` left (plain data)."""
    if isinstance(obj, _ArraySpec):
        if obj.array is None:
            raise NetworkLoadError('malformed numpy array')
        return obj.array
    if isinstance(obj, _DtypeSpec):
        return obj.to_numpy()
    if isinstance(obj, dict):
        for key, value in obj.items():
            obj[key] = _materialize(value)
        return obj
    if isinstance(obj, list):
        obj[:] = [_materialize(v) for v in obj]
        return obj
    if isinstance(obj, tuple):
        return tuple(_materialize(v) for v in obj)
    return obj


def _codecs_encode(text, encoding='utf-8', errors='strict') -> bytes:
    """``_codecs.encode(str, 'latin1')``, which protocol 2 uses for ``bytes``: only str -> bytes."""
    if not isinstance(text, str) or not isinstance(encoding, str) or errors != 'strict':
        raise NetworkLoadError(f'refused _codecs.encode of a {type(text).__name__}: protocol 2 only '
                               f'encodes strings to bytes')
    if encoding.lower().replace('-', '').replace('_', '') not in ('latin1', 'iso88591', 'utf8', 'ascii'):
        raise NetworkLoadError(f'refused _codecs.encode with encoding {encoding!r}')
    try:
        return text.encode(encoding)
    except UnicodeError:
        raise NetworkLoadError('malformed bytes in a protocol-2 pickle') from None


def _plain_bytes(data=b'') -> bytes:
    """``builtins.bytes()`` (empty bytes at protocol 2) or ``bytes(bytes)``."""
    if not isinstance(data, (bytes, bytearray)):
        raise NetworkLoadError(f'refused bytes() of a {type(data).__name__}')
    return bytes(data)


def _plain_bytearray(data=b'', encoding=None) -> bytearray:
    """``bytearray(bytes)``, or ``bytearray(str, 'latin-1')`` as protocol 2 writes it."""
    if isinstance(data, str) and encoding is not None:
        return bytearray(_codecs_encode(data, encoding))
    if not isinstance(data, (bytes, bytearray)) or encoding is not None:
        raise NetworkLoadError(f'refused bytearray() of a {type(data).__name__}')
    return bytearray(data)


def _plain_set(items=()) -> set:
    """``builtins.set(list)`` as protocols below 4 write sets (items are already plain data)."""
    if not isinstance(items, (list, tuple)):
        raise NetworkLoadError('malformed set')
    return set(items)


def _plain_frozenset(items=()) -> frozenset:
    if not isinstance(items, (list, tuple)):
        raise NetworkLoadError('malformed frozenset')
    return frozenset(items)


# Every global a network pickle may reference. Each one constructs plain data (the same kinds of
# globals torch's ``weights_only`` unpickler admits: _codecs.encode, set, frozenset, bytearray,
# OrderedDict, numpy scalar/dtype/array reconstruction), checked argument by argument.
_ALLOWED_GLOBALS = {
    ('torch_utils.persistence', '_reconstruct_persistent_obj'): _reconstruct_persistent_obj,
    ('torch.storage', '_load_from_bytes'): _load_storage,
    ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor_v2,
    ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
    ('collections', 'OrderedDict'): collections.OrderedDict,
    ('numpy.core.multiarray', 'scalar'): _numpy_scalar,
    ('numpy._core.multiarray', 'scalar'): _numpy_scalar,
    ('numpy.core.multiarray', '_reconstruct'): _ArraySpec,
    ('numpy._core.multiarray', '_reconstruct'): _ArraySpec,
    ('numpy.core.numeric', '_frombuffer'): _numpy_frombuffer,
    ('numpy._core.numeric', '_frombuffer'): _numpy_frombuffer,
    ('numpy', 'ndarray'): _NDARRAY,  # only ever accepted as _reconstruct's first argument
    ('numpy', 'dtype'): _DtypeSpec,
    ('builtins', 'set'): _plain_set,
    ('builtins', 'frozenset'): _plain_frozenset,
    ('builtins', 'bytes'): _plain_bytes,
    ('builtins', 'bytearray'): _plain_bytearray,
    ('_codecs', 'encode'): _codecs_encode,
    ('dnnlib.util', 'EasyDict'): dnnlib.EasyDict,  # a plain dict subclass: nothing to execute
    ('dnnlib', 'EasyDict'): dnnlib.EasyDict,
    # A TensorFlow-era network: its pickled state, checked; the TF build code is never executed.
    ('dnnlib.tflib.network', 'Network'): legacy_tf.TFNetworkState,
}
# Python 2 module names that protocol 0-2 pickles use (Python's own unpickler maps them too).
_PY2_MODULES = {'__builtin__': 'builtins', 'copy_reg': 'copyreg'}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        module = _PY2_MODULES.get(module, module)
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
    'SynthesisInput',  # StyleGAN3
}
# The stylegan3 repository's training.networks_stylegan3 classes. A pickle names a class but not
# its module (and Generator, SynthesisNetwork, MappingNetwork exist in both architectures), so the
# architecture is read from the stored state: a StyleGAN3 synthesis network has an ``input`` layer
# (Fourier features) where StyleGAN2 has blocks b4, b8, ...
_SG3_CLASSES = {
    'Generator': stylegan3.Generator,
    'SynthesisNetwork': stylegan3.SynthesisNetwork,
}


def _is_stylegan3(record: PersistentRecord) -> bool:
    synthesis = record.modules.get('synthesis') if record.class_name == 'Generator' else record
    return isinstance(synthesis, PersistentRecord) and 'input' in synthesis.modules


def record_family(record: PersistentRecord) -> str:
    """``'ada'`` (stylegan2-ada-pytorch) or ``'sg3-repo'`` (the stylegan3 repository) for a network record.

    StyleGAN2-ADA's training code always nests the synthesis arguments in ``synthesis_kwargs``; the
    stylegan3 repository passes them flat (``channel_base=...``), for its StyleGAN2 as for StyleGAN3.
    """
    if record.class_name == 'Generator' and 'synthesis_kwargs' not in record.init_kwargs:
        return 'sg3-repo'
    return 'ada'
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


class _AllocationBudget(TorchFunctionMode):
    """Refuse, before it is allocated, a tensor that would take what a network's constructor has
    asked the tensor factories for (``torch.randn``, ``torch.zeros``, ``new_empty``, ...) past
    ``limit`` elements.

    A file's arguments that declare far larger layers than the tensors it holds (its ``z_dim`` or
    layer widths edited) could otherwise make a file of a few hundred kilobytes allocate gigabytes,
    only to fail the strict load after. The constructor is counted as it runs, so the network is
    built once; building it first on the ``meta`` device would import ``torch._dynamo`` (1.3 s at
    every start), which arithmetic on meta tensors needs.
    """

    _NEW = frozenset([torch.Tensor.new_empty, torch.Tensor.new_zeros, torch.Tensor.new_ones, torch.Tensor.new_full])
    _FACTORIES = frozenset([torch.empty, torch.zeros, torch.ones, torch.full, torch.randn, torch.rand,
                            torch.randint]) | _NEW
    _LIKE = frozenset([torch.empty_like, torch.zeros_like, torch.ones_like, torch.full_like,
                       torch.randn_like, torch.rand_like])

    def __init__(self, limit: int, what: str):
        super().__init__()
        self.limit, self.what, self.used = limit, what, 0

    @staticmethod
    def _numel(func, args, kwargs) -> int:
        if func in _AllocationBudget._LIKE:
            return args[0].numel() if args and isinstance(args[0], torch.Tensor) else 0
        if func in _AllocationBudget._NEW:
            args = args[1:]  # skip self
        size = kwargs.get('size', None)
        if size is None:
            if func is torch.randint:  # randint(high, size) or randint(low, high, size)
                size = next((a for a in args if isinstance(a, (tuple, list, torch.Size))), ())
            elif args and isinstance(args[0], (tuple, list, torch.Size)):
                size = args[0]
            else:
                size = tuple(a for a in args if isinstance(a, int) and not isinstance(a, bool))
        count = 1
        for n in size:
            count *= max(int(n), 0)
        return count

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self._FACTORIES or func in self._LIKE:
            self.used += self._numel(func, args, kwargs)
            if self.used > self.limit:
                raise NetworkLoadError(f'{self.what}: refused while building it')
        return func(*args, **kwargs)


def build_module(record: PersistentRecord) -> torch.nn.Module:
    """Build our module for ``record`` and copy the record's tensors into it (strict)."""
    cls = (_SG3_CLASSES if _is_stylegan3(record) else _NETWORK_CLASSES).get(record.class_name)
    if cls is None:
        raise NetworkLoadError(f'unknown network class {record.class_name!r}: this loader knows '
                               f'{", ".join(sorted(_NETWORK_CLASSES))} (StyleGAN2-ADA)')
    tensors: Dict[str, torch.Tensor] = {}
    classes: Dict[str, str] = {}
    _flatten(record, '', tensors, classes)
    stored = sum(t.numel() for t in tensors.values())
    budget = _AllocationBudget(2 * stored + (1 << 20), f'{record.class_name} in the file declares '
                               f'far more weights than the {stored:,} it holds')
    try:
        with budget:
            module = cls(*copy.deepcopy(record.init_args), **copy.deepcopy(record.init_kwargs))
    except NetworkLoadError:
        raise
    except Exception as exc:  # any failure here means arguments that do not describe a network
        raise NetworkLoadError(f'cannot build {record.class_name} from the arguments in the file: '
                               f'{exc.__class__.__name__}: {exc}') from None

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
                               f'{misc.state_dict_mismatch(exc)}') from None
    return module.eval().requires_grad_(False)


def _convert(obj: Any) -> Any:
    if isinstance(obj, PersistentRecord):
        if obj.class_name in _INERT_CLASSES:
            return InertPlaceholder(obj)
        return build_module(obj)
    return obj


GENERATOR_CLASSES = (networks.Generator, stylegan3.Generator)
FAMILIES = ('ada', 'tf', 'sg3-repo')


class _PrefixedReader(io.RawIOBase):
    """``head`` followed by the rest of ``f``: a stream whose first bytes were read to peek at them."""

    def __init__(self, head: bytes, f: BinaryIO):
        self.head, self.f = head, f

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.head:
            n = min(len(buffer), len(self.head))
            buffer[:n], self.head = self.head[:n], self.head[n:]
            return n
        data = self.f.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


def _unmarked_protocol(head: bytes) -> int:
    """0 or 1 for a pickle without a ``PROTO`` opcode: 1 when its first opcodes include one that
    protocol 0 lacks (a protocol-1 pickle starts with binary opcodes such as ``EMPTY_DICT``)."""
    import pickletools
    newest = 0
    try:
        for opcode, _, _ in pickletools.genops(head):
            newest = max(newest, opcode.proto)
    except Exception:  # noqa: BLE001 - the head ends inside an opcode
        pass
    return min(newest, 1)


def _peek_protocol(f: BinaryIO):
    """The pickle protocol ``f`` declares (its ``PROTO`` opcode; 0-1 have none) and a stream to read from."""
    head = f.read(64)
    if len(head) >= 2 and head[0] == 0x80:
        protocol = head[1]
    else:
        protocol = _unmarked_protocol(head) if head else None
    return protocol, io.BufferedReader(_PrefixedReader(head, f), buffer_size=1 << 20)


def _from_tf(data: Any) -> Optional[dict]:
    """The networks of a TensorFlow-era pickle ``(G, D, Gs)`` (or a lone ``Gs``); None if it is not one."""
    TF = legacy_tf.TFNetworkState
    if isinstance(data, TF):
        data = (None, None, data)
    if not (isinstance(data, tuple) and len(data) == 3 and any(isinstance(n, TF) for n in data)):
        return None
    if not all(n is None or isinstance(n, TF) for n in data) or data[2] is None:
        raise NetworkLoadError('not a TensorFlow network pickle: expected a tuple (G, D, Gs) of networks')
    tf_G, tf_D, tf_Gs = data
    try:
        for net in data:
            if net is not None:
                net.finish(_materialize)
        return dict(G=legacy_tf.convert_generator(tf_G) if tf_G is not None else None,
                    D=legacy_tf.convert_discriminator(tf_D) if tf_D is not None else None,
                    G_ema=legacy_tf.convert_generator(tf_Gs),
                    augment_pipe=None, training_set_kwargs=None)
    except legacy_tf.TFConversionError as exc:
        raise NetworkLoadError(str(exc)) from None


def load_network_pkl(f: Union[BinaryIO, bytes]) -> dict:
    """Read a network pickle safely: stylegan2-ada-pytorch, the stylegan3 repository (StyleGAN2 and
    StyleGAN3), or TensorFlow-era StyleGAN2, written with any pickle protocol (0 to 5).

    Args:
        f: An open binary file (or the file's bytes).
    Returns:
        ``{'G', 'D', 'G_ema'}`` as our modules (eval mode, ``requires_grad=False``, CPU; a
        TensorFlow file's ``Gs`` is ``G_ema``), ``'training_set_kwargs'`` (dict or None),
        ``'augment_pipe'`` (an inert placeholder or None), ``'family'`` (``'ada'``, ``'tf'`` or
        ``'sg3-repo'``) and ``'protocol'`` (the pickle protocol). Missing networks are None.
    Raises:
        NetworkLoadError: the file is not a network pickle, references a global outside the
            allow-list, or holds a network this project does not implement.
    """
    if isinstance(f, (bytes, bytearray)):
        f = io.BytesIO(f)
    protocol, stream = _peek_protocol(f)
    magic = stream.peek(4)[:4]  # at least the 4 bytes _peek_protocol put back
    if magic.startswith(b'PK\x03\x04'):
        raise NetworkLoadError('a zip archive, not a network pickle (a PyTorch checkpoint saved with torch.save, '
                               'such as a rosinality .pt, is not a StyleGAN2-ADA / StyleGAN3 / TensorFlow pickle)')
    if magic.startswith(b'\x1f\x8b'):
        raise NetworkLoadError('gzip-compressed: decompress it first (gunzip), then pass the .pkl')
    try:
        data = _materialize(_RestrictedUnpickler(stream).load())
    except NetworkLoadError:
        raise
    except legacy_tf.TFConversionError as exc:
        raise NetworkLoadError(str(exc)) from None
    except Exception as exc:
        raise NetworkLoadError(f'not a network pickle ({type(exc).__name__}: {exc})') from None

    try:
        return _networks(data, protocol)
    except NetworkLoadError:
        raise
    except Exception as exc:  # malformed contents (a string for a weight, a number for a name)
        raise NetworkLoadError(f'malformed network pickle ({type(exc).__name__}: {exc})') from None


def _networks(data: Any, protocol: Optional[int]) -> dict:
    """``load_network_pkl``'s result from the unpickled ``data``."""
    result = _from_tf(data)
    if result is not None:
        result['family'] = 'tf'
    else:
        if not isinstance(data, dict) or not any(k in data for k in ('G', 'D', 'G_ema')):
            raise NetworkLoadError('not a network pickle: expected a dict with G, D and G_ema '
                                   '(or a TensorFlow tuple G, D, Gs)')
        records = [data.get(k) for k in ('G_ema', 'G')]
        generator = next((r for r in records if isinstance(r, PersistentRecord)), None)
        result = {key: None for key in ('G', 'D', 'G_ema', 'augment_pipe', 'training_set_kwargs')}
        for key, value in data.items():
            result[key] = _convert(value)
        result['family'] = record_family(generator) if generator is not None else 'ada'
    for key in ('G', 'G_ema'):
        if result[key] is not None and not isinstance(result[key], GENERATOR_CLASSES):
            raise NetworkLoadError(f'{key} is a {type(result[key]).__name__}, not a Generator')
    if result['D'] is not None and not isinstance(result['D'], networks.Discriminator):
        raise NetworkLoadError(f'D is a {type(result["D"]).__name__}, not a Discriminator')
    result['protocol'] = protocol
    return result


def load_generator(url_or_path: str, device: Union[str, torch.device] = 'cpu') -> torch.nn.Module:
    """Open (downloading and caching if needed) a network pickle and return ``G_ema`` on ``device``."""
    with dnnlib.util.open_url(url_or_path) as f:
        data = load_network_pkl(f)
    G = data['G_ema'] if data['G_ema'] is not None else data['G']
    if G is None:
        raise NetworkLoadError(f'{url_or_path} holds no generator')
    return G.to(device)


# ----------------------------------------------------------------------------
# What a file holds: ``python legacy.py --info FILE`` (or ``python -m legacy FILE``).

def _fp16_layers(module: torch.nn.Module) -> list:
    """Names of the layers (StyleGAN3) or blocks (StyleGAN2) flagged to run in fp16 on CUDA."""
    return [name for name, m in module.named_modules() if name and getattr(m, 'use_fp16', False)
            and not any(getattr(child, 'use_fp16', False) for child in m.children())]


def describe(data: dict) -> list:
    """One dict per network in a loaded pickle (``load_network_pkl``'s result): what ``--info`` prints."""
    rows = []
    for key in ('G', 'G_ema', 'D'):
        net = data.get(key)
        if net is None:
            continue
        row = dict(network=key, family=data.get('family'), protocol=data.get('protocol'),
                   architecture=getattr(net, 'architecture', 'stylegan2') if key != 'D' else 'discriminator',
                   resolution=int(net.img_resolution), channels=int(net.img_channels), c_dim=int(net.c_dim))
        if key != 'D':
            row.update(num_ws=int(net.num_ws), w_dim=int(net.w_dim), z_dim=int(net.z_dim))
            if isinstance(net, stylegan3.Generator):
                row['config'] = net.config
            else:  # StyleGAN2's output layout: skip (FFHQ's config F), orig or resnet
                blocks = [m for m in net.synthesis.modules() if hasattr(m, 'architecture')]
                if blocks:
                    row['synthesis'] = blocks[-1].architecture
        row['fp16_layers'] = _fp16_layers(net)
        row['has_D'] = data.get('D') is not None
        rows.append(row)
    return rows


def _info_line(row: dict) -> str:
    fields = [f'{row["network"]:<5}', f'family={row["family"]}', f'protocol={row["protocol"]}',
              f'architecture={row["architecture"]}' + (f'-{row["config"]}' if 'config' in row else '')]
    if 'synthesis' in row:
        fields.append(f'synthesis={row["synthesis"]}')
    fields += [f'resolution={row["resolution"]}', f'channels={row["channels"]}']
    if 'num_ws' in row:
        fields += [f'num_ws={row["num_ws"]}', f'w_dim={row["w_dim"]}']
    fields += [f'c_dim={row["c_dim"]}', f'fp16_layers={len(row["fp16_layers"])}', f'D={"yes" if row["has_D"] else "no"}']
    return ' '.join(fields)


def _main():
    import json as json_mod

    import click

    @click.command(context_settings=dict(help_option_names=['-h', '--help']))
    @click.argument('files', nargs=-1, required=True, metavar='FILE...')
    @click.option('--info', is_flag=True, default=True, help='Print what each file holds (the default action).')
    @click.option('--json', 'as_json', is_flag=True, help='One JSON object per network instead of text.')
    def main(files, info, as_json):
        """Show what a network pickle holds, without running anything from it: one line per network
        with its family (ada: stylegan2-ada-pytorch; tf: TensorFlow-era StyleGAN2, converted on load;
        sg3-repo: the stylegan3 repository), architecture, resolution, image channels, num_ws, w_dim,
        c_dim, the number of fp16 layers, the pickle protocol and whether D is present.

        \b
        Examples:
          python legacy.py --info ffhq.pkl
          python -m legacy https://nvlabs-fi-cdn.nvidia.com/stylegan2/networks/stylegan2-ffhq-config-f.pkl
        """
        failed = []
        for path in files:
            try:
                with dnnlib.util.open_url(path) as f:
                    data = load_network_pkl(f)
            except UserError as exc:  # say which file, and go on with the others
                text = str(exc)
                failed.append(text if path in text else f'{path}: {text}')
                click.echo(f'error: {" ".join(failed[-1].split())}', err=True)
                continue
            rows = describe(data)
            if as_json:
                for row in rows:
                    click.echo(json_mod.dumps(dict(file=path, **row)))
            else:
                click.echo(f'{path}:')
                for row in rows:
                    click.echo('  ' + _info_line(row))
        if failed:
            raise SystemExit(2)
    return main


main = _main()

if __name__ == '__main__':
    from cli_common import run
    run(main)
