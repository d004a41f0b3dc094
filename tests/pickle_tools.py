"""Re-write a pickle with another protocol without importing what it references.

``repickle(data, protocol)`` reads ``data`` with an unpickler whose ``find_class`` returns a
*placeholder class* for every global (nothing is imported, nothing is called), so each object
in the file becomes a ``Placeholder`` that remembers how it was built (the global, its
arguments, its BUILD state, its dict and list items). It then writes the same object graph
again with ``protocol``: each placeholder pickles exactly as it was read (same global, same
arguments, same state), while plain data (dicts, lists, tuples, str, bytes, numbers, sets) is
written the way Python writes it at that protocol (sets through ``builtins.set`` below 4,
bytes through ``_codecs.encode`` at 2, ``__builtin__`` module names at 2, ...).

This stands in for "the same network saved by an older Python" in the protocol tests; it never
imports the reference code (``torch_utils.persistence`` and friends are only names here).
"""

import copyreg
import io
import pickle
from typing import Dict, Tuple

__all__ = ['repickle', 'globals_in', 'protocol_of', 'read_placeholders', 'write_placeholders', 'global_ref', 'call']


class Placeholder:
    """An object read from a pickle: how it was made, nothing else."""
    _pk_module = ''
    _pk_name = ''

    def __init__(self, *args):
        self._pk_args = args
        self._pk_newobj = False
        self._pk_state = None
        self._pk_items = []
        self._pk_list = []

    def __setstate__(self, state):
        self._pk_state = state

    def __setitem__(self, key, value):
        self._pk_items.append((key, value))

    def append(self, value):
        self._pk_list.append(value)

    def extend(self, values):
        self._pk_list.extend(values)

    def __reduce_ex__(self, protocol):
        cls = type(self)
        if self._pk_newobj:
            func, args = copyreg.__newobj__, (cls,) + tuple(self._pk_args)
        else:
            func, args = cls, tuple(self._pk_args)
        return (func, args, self._pk_state,
                iter(self._pk_list) if self._pk_list else None,
                iter(self._pk_items) if self._pk_items else None)


def _new_placeholder(cls, *args):
    obj = Placeholder.__new__(cls)
    Placeholder.__init__(obj, *args)
    obj._pk_newobj = True
    return obj


class _PlaceholderMeta(type):
    """Placeholder classes: calling one (REDUCE) records the arguments."""


class _ReadingUnpickler(pickle._Unpickler):  # the Python implementation, for NEWOBJ via __new__
    def __init__(self, file):
        super().__init__(file)
        self.classes: Dict[Tuple[str, str], type] = {}

    def find_class(self, module, name):
        key = (module, name)
        if key not in self.classes:
            cls = _PlaceholderMeta(name, (Placeholder,), {
                '_pk_module': module, '_pk_name': name, '__new__': _new_placeholder_wrapper})
            self.classes[key] = cls
        return self.classes[key]

    def persistent_load(self, pid):
        raise pickle.UnpicklingError('persistent ids are not supported')


def _new_placeholder_wrapper(cls, *args, **kwargs):
    """``cls.__new__``: plain allocation; NEWOBJ arguments are recorded by ``load_newobj`` below."""
    return object.__new__(cls)


def _load_newobj(self):
    args = self.stack.pop()
    cls = self.stack.pop()
    self.append(_new_placeholder(cls, *args))


def _load_reduce(self):
    args = self.stack.pop()
    func = self.stack[-1]
    if isinstance(func, type) and issubclass(func, Placeholder):
        obj = object.__new__(func)
        Placeholder.__init__(obj, *args)
    else:
        raise pickle.UnpicklingError(f'REDUCE on a non-placeholder {func!r}')
    self.stack[-1] = obj


_ReadingUnpickler.dispatch = dict(pickle._Unpickler.dispatch)
_ReadingUnpickler.dispatch[pickle.NEWOBJ[0]] = _load_newobj
_ReadingUnpickler.dispatch[pickle.REDUCE[0]] = _load_reduce


def _load_build(self):
    state = self.stack.pop()
    inst = self.stack[-1]
    if not isinstance(inst, Placeholder):
        raise pickle.UnpicklingError('BUILD on a non-placeholder')
    inst._pk_state = state


_ReadingUnpickler.dispatch[pickle.BUILD[0]] = _load_build


class _WritingPickler(pickle._Pickler):
    """Writes placeholder classes as the globals they stand for, without importing them."""

    def save_global(self, obj, name=None):
        if not (isinstance(obj, type) and issubclass(obj, Placeholder) and obj is not Placeholder):
            return super().save_global(obj, name)
        module, qualname = obj._pk_module, obj._pk_name
        if self.proto >= 4:
            self.save(module)
            self.save(qualname)
            self.write(pickle.STACK_GLOBAL)
        else:
            if self.proto < 3 and self.fix_imports:
                import _compat_pickle
                r_name = _compat_pickle.REVERSE_NAME_MAPPING
                r_import = _compat_pickle.REVERSE_IMPORT_MAPPING
                if (module, qualname) in r_name:
                    module, qualname = r_name[(module, qualname)]
                elif module in r_import:
                    module = r_import[module]
            self.write(pickle.GLOBAL + module.encode('utf-8') + b'\n' + qualname.encode('utf-8') + b'\n')
        self.memoize(obj)

    def save_type(self, obj):
        return self.save_global(obj)

    dispatch = dict(pickle._Pickler.dispatch)
    dispatch[type] = save_type
    dispatch[_PlaceholderMeta] = save_type


def read_placeholders(data: bytes):
    """The object graph of ``data`` with every global replaced by a placeholder class."""
    return _ReadingUnpickler(io.BytesIO(data)).load()


def repickle(data: bytes, protocol: int) -> bytes:
    """``data`` (a pickle) written again with ``protocol`` (2-5); nothing it names is imported."""
    obj = read_placeholders(data)
    buf = io.BytesIO()
    _WritingPickler(buf, protocol=protocol).dump(obj)
    return buf.getvalue()


def globals_in(data: bytes) -> set:
    """``module.name`` of every global a pickle references (GLOBAL and STACK_GLOBAL)."""
    import pickletools
    found, strings, memo = set(), [], {}
    for op, arg, _pos in pickletools.genops(data):
        if op.name in ('SHORT_BINUNICODE', 'BINUNICODE', 'UNICODE', 'BINUNICODE8'):
            strings.append(arg)
        elif op.name == 'MEMOIZE':
            memo[len(memo)] = strings[-1] if strings else None
        elif op.name in ('BINGET', 'LONG_BINGET', 'GET'):
            value = memo.get(arg)
            strings.append(value)
        elif op.name == 'GLOBAL':
            found.add(arg.replace(' ', '.'))
        elif op.name == 'STACK_GLOBAL':
            found.add(f'{strings[-2]}.{strings[-1]}')
    return found


def protocol_of(data: bytes) -> int:
    """The protocol a pickle declares (0 or 1 when it has no PROTO opcode)."""
    return data[1] if len(data) > 1 and data[0] == 0x80 else 0


def global_ref(module: str, name: str) -> type:
    """A placeholder for the global ``module.name``: pickled as a reference to it, called when
    instantiated (``global_ref('_codecs', 'encode')(123, 'latin1')`` pickles as that call)."""
    return _PlaceholderMeta(name, (Placeholder,), {'_pk_module': module, '_pk_name': name,
                                                   '__new__': _new_placeholder_wrapper})


def call(func: type, *args) -> Placeholder:
    """A placeholder object that pickles as ``func(*args)`` (REDUCE), ``func`` from ``global_ref``."""
    obj = object.__new__(func)
    Placeholder.__init__(obj, *args)
    return obj


def write_placeholders(obj, protocol: int) -> bytes:
    """Pickle an object graph of placeholders (from ``read_placeholders``, edited) and plain data."""
    buf = io.BytesIO()
    _WritingPickler(buf, protocol=protocol).dump(obj)
    return buf.getvalue()
