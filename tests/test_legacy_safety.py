"""Safety and compatibility tests for ``legacy.py`` (loading official network pickles).

The loader must never execute code from a network pickle: not through a global it imports,
not through ``module_src``, not through a storage payload. Hostile pickles are crafted here
with payloads that would leave a marker file behind if anything in them ever ran; every test
checks that the marker does not exist.

Official-format pickles reference ``torch_utils.persistence._reconstruct_persistent_obj``.
This project has no such module, so to *write* such pickles a stand-in module is placed in
``sys.modules`` only for the duration of ``pickle.dumps`` (see ``_fake_persistence_module``).
"""

import contextlib
import io
import os
import pickle
import pickletools
import subprocess
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # project root, when run from elsewhere

import dnnlib  # noqa: E402
import legacy  # noqa: E402
import networks  # noqa: E402
from dnnlib.util import UserError  # noqa: E402

DATA = Path(__file__).resolve().parent / 'data'
TINY_SKIP = DATA / 'tiny-skip.pkl'
COND_ORIG = DATA / 'cond-orig.pkl'
PERSISTENCE = 'torch_utils.persistence'
_MISSING = object()


# ----------------------------------------------------------------------------
# Writing official-format pickles.

def _reconstruct_persistent_obj(meta):  # pragma: no cover - only its name matters
    raise AssertionError('the test stand-in for the reference reconstructor must never be called')


_reconstruct_persistent_obj.__module__ = PERSISTENCE
_reconstruct_persistent_obj.__name__ = '_reconstruct_persistent_obj'
_reconstruct_persistent_obj.__qualname__ = '_reconstruct_persistent_obj'


class Persistent:
    """Pickles as ``torch_utils.persistence._reconstruct_persistent_obj(meta)``, like the reference."""

    def __init__(self, meta):
        self.meta = meta

    def __reduce__(self):
        return (_reconstruct_persistent_obj, (self.meta,))


class Reduce:
    """Pickles as ``func(*args)`` for any global ``func``."""

    def __init__(self, func, *args):
        self.func = func
        self.args = args

    def __reduce__(self):
        return (self.func, self.args)


@contextlib.contextmanager
def _fake_persistence_module():
    """Temporarily register a ``torch_utils.persistence`` module so pickle can name the function."""
    import torch_utils
    saved_module = sys.modules.get(PERSISTENCE, _MISSING)
    saved_attr = torch_utils.__dict__.get('persistence', _MISSING)
    module = types.ModuleType(PERSISTENCE)
    module._reconstruct_persistent_obj = _reconstruct_persistent_obj
    sys.modules[PERSISTENCE] = module
    try:
        yield
    finally:
        if saved_module is _MISSING:
            sys.modules.pop(PERSISTENCE, None)
        else:
            sys.modules[PERSISTENCE] = saved_module
        if saved_attr is _MISSING:
            torch_utils.__dict__.pop('persistence', None)
        else:
            torch_utils.persistence = saved_attr


def dumps(obj) -> bytes:
    with _fake_persistence_module():
        return pickle.dumps(obj, protocol=4)


def globals_in(data: bytes):
    """``module.name`` of every global a pickle references (protocol 2+ STACK_GLOBAL or GLOBAL)."""
    names = []
    strings = []
    for op, arg, _ in pickletools.genops(data):
        if op.name in ('SHORT_BINUNICODE', 'BINUNICODE', 'UNICODE'):
            strings.append(arg)
        elif op.name == 'STACK_GLOBAL':
            names.append(f'{strings[-2]}.{strings[-1]}')
        elif op.name == 'GLOBAL':
            names.append(arg.replace(' ', '.'))
    return names


def module_state(init_kwargs, parameters=None, buffers=None, modules=None):
    """The ``state`` of a pickled ``torch.nn.Module`` as the reference persistence writes it."""
    return {
        'training': False,
        '_parameters': dict(parameters or {}),
        '_buffers': dict(buffers or {}),
        '_non_persistent_buffers_set': set(),
        '_modules': dict(modules or {}),
        '_init_args': (),
        '_init_kwargs': dict(init_kwargs),
    }


def persistent_meta(class_name, state, module_src='# nothing\n'):
    return {'type': 'class', 'version': 6, 'module_src': module_src, 'class_name': class_name, 'state': state}


SMALL_G_KWARGS = dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=8, img_channels=3,
                      mapping_kwargs=dict(num_layers=1),
                      synthesis_kwargs=dict(channel_base=32, channel_max=4, architecture='skip'))


class _MetaUnpickler(pickle.Unpickler):
    """Reads a trusted fixture, keeping persistent objects as editable ``Persistent(meta)`` wrappers.

    Everything else resolves through the loader's own (safe) allow-list.
    """

    def find_class(self, module, name):
        if (module, name) == (PERSISTENCE, '_reconstruct_persistent_obj'):
            return Persistent
        return legacy._ALLOWED_GLOBALS[(module, name)]


def read_fixture_metas(path):
    with open(path, 'rb') as f:
        return _MetaUnpickler(f).load()


def load(data):
    return legacy.load_network_pkl(io.BytesIO(data))


def state_dicts_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture
def marker(tmp_path):
    """A path that a payload would create if it ever ran; checked to be absent after each test."""
    path = tmp_path / 'pwned'
    yield path
    assert not path.exists(), 'a payload from the pickle was executed'


@pytest.fixture(autouse=True)
def _no_fake_module_left_behind():
    import torch_utils
    yield
    assert PERSISTENCE not in sys.modules
    assert 'persistence' not in torch_utils.__dict__


@pytest.fixture(scope='module')
def tiny_skip():
    with open(TINY_SKIP, 'rb') as f:
        return legacy.load_network_pkl(f)


@pytest.fixture(scope='module')
def cond_orig():
    with open(COND_ORIG, 'rb') as f:
        return legacy.load_network_pkl(f)


# ----------------------------------------------------------------------------
# The test helpers themselves.

def test_helper_writes_reference_global_and_restores_sys_modules():
    import torch_utils
    data = dumps({'G': Persistent(persistent_meta('Generator', module_state({})))})
    assert f'{PERSISTENCE}._reconstruct_persistent_obj' in globals_in(data)
    assert PERSISTENCE not in sys.modules
    assert not hasattr(torch_utils, 'persistence')
    # The fixtures use the very same global.
    assert f'{PERSISTENCE}._reconstruct_persistent_obj' in globals_in(TINY_SKIP.read_bytes())


def test_helper_restores_sys_modules_after_failed_dump():
    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError('boom')

    with pytest.raises(RuntimeError, match='boom'):
        dumps({'G': Persistent({'x': Unpicklable()})})
    assert PERSISTENCE not in sys.modules


# ----------------------------------------------------------------------------
# Globals outside the allow-list.

def test_os_system_refused(marker):
    data = dumps({'G': Reduce(os.system, f'touch {marker}')})
    recorded = [name for name in globals_in(data) if name.endswith('.system')]
    assert recorded, 'the pickle should reference os.system'
    with pytest.raises(legacy.NetworkLoadError) as info:
        load(data)
    assert recorded[0] in str(info.value)
    assert not marker.exists()


def test_os_system_refused_when_written_as_os(marker):
    # Protocol-0 GLOBAL opcode naming ``os system`` directly, as a hand-written exploit would.
    cmd = f'touch {marker}'.encode()
    data = b'(dp0\nVG\ncos\nsystem\n(V' + cmd + b'\ntRs.'
    assert 'os.system' in globals_in(data)
    with pytest.raises(legacy.NetworkLoadError, match=r'os\.system'):
        load(data)
    assert not marker.exists()


def test_payload_at_top_level_refused(marker):
    with pytest.raises(legacy.NetworkLoadError, match='system'):
        load(pickle.dumps(Reduce(os.system, f'touch {marker}')))
    assert not marker.exists()


@pytest.mark.parametrize('func', [eval, exec], ids=['eval', 'exec'])
def test_builtins_eval_exec_refused(func, marker):
    code = f"open({str(marker)!r}, 'w').close()"
    data = dumps({'G': Reduce(func, code)})
    assert f'builtins.{func.__name__}' in globals_in(data)
    with pytest.raises(legacy.NetworkLoadError, match=rf'builtins\.{func.__name__}'):
        load(data)
    assert not marker.exists()


def test_subprocess_popen_refused(marker):
    data = dumps({'G': Reduce(subprocess.Popen, ['touch', str(marker)])})
    with pytest.raises(legacy.NetworkLoadError, match=r'subprocess\.Popen'):
        load(data)
    assert not marker.exists()


@pytest.mark.parametrize('target', [
    ('builtins', 'getattr'), ('builtins', '__import__'), ('torch', 'load'), ('numpy', 'load'),
    ('pickle', 'loads'), ('torch.storage', 'TypedStorage'), ('legacy', 'load_network_pkl'),
])
def test_other_globals_refused(target):
    module, name = target
    data = b'(dp0\nVG\nc' + f'{module}\n{name}\n'.encode() + b's.'
    with pytest.raises(legacy.NetworkLoadError, match=f'{module}.{name}'.replace('.', r'\.')):
        load(data)


@pytest.mark.parametrize('protocol', [2, 3, 4, 5])
def test_numpy_arrays_decoded_as_plain_arrays(protocol):
    # StyleGAN3 and TF pickles hold arrays (numpy's ``_reconstruct`` + BUILD, or ``_frombuffer`` at 5).
    values = {'a': np.arange(6, dtype=np.float32).reshape(2, 3), 'b': np.asfortranarray(np.eye(3)),
              'c': np.array([1, 2], dtype='>i4')}
    data = pickle.dumps({'G': None, 'training_set_kwargs': values}, protocol=protocol)
    result = load(data)['training_set_kwargs']
    for key, value in values.items():
        assert type(result[key]) is np.ndarray and result[key].dtype == value.dtype
        np.testing.assert_array_equal(result[key], value)


@pytest.mark.parametrize('array', [np.array([1, 'x'], dtype=object), np.zeros(2, dtype=[('a', 'f4'), ('b', 'i4')]),
                                   np.array(['ab'])], ids=['object', 'structured', 'unicode'])
@pytest.mark.parametrize('protocol', [2, 4, 5])
def test_numpy_arrays_of_other_dtypes_refused(array, protocol):
    data = pickle.dumps({'G': None, 'training_set_kwargs': {'a': array}}, protocol=protocol)
    with pytest.raises(legacy.NetworkLoadError, match='dtype|refused'):
        load(data)


def test_numpy_array_subclass_refused():
    data = pickle.dumps({'G': None, 'x': np.ma.masked_array([1.0, 2.0])}, protocol=4)
    with pytest.raises(legacy.NetworkLoadError, match='refused'):
        load(data)


def test_numpy_object_dtype_refused():
    data = pickle.dumps({'G': None, 'x': np.dtype(object)}, protocol=4)
    with pytest.raises(legacy.NetworkLoadError, match='dtype'):
        load(data)


def test_persistent_id_refused():
    class WithPid(pickle.Pickler):
        def persistent_id(self, obj):
            return 'some-id' if obj == 'external' else None

    buf = io.BytesIO()
    WithPid(buf, protocol=4).dump({'G': 'external'})
    with pytest.raises(legacy.NetworkLoadError, match='persistent id'):
        load(buf.getvalue())


# ----------------------------------------------------------------------------
# module_src is never executed.

def _module_src_payload(path) -> str:
    return f"open({str(path)!r}, 'w').close()\n"


def test_module_src_payload_is_live(tmp_path):
    # Guard for the tests below: the payload does create its file when executed.
    probe = tmp_path / 'probe'
    exec(compile(_module_src_payload(probe), '<module_src>', 'exec'), {})
    assert probe.exists()


def test_module_src_not_executed_minimal_generator(marker):
    meta = persistent_meta('Generator', module_state(SMALL_G_KWARGS), module_src=_module_src_payload(marker))
    data = dumps({'G': Persistent(meta), 'G_ema': Persistent(meta), 'D': None})
    with pytest.raises(legacy.NetworkLoadError, match='Generator'):  # no tensors: missing keys
        load(data)
    assert not marker.exists()


@pytest.mark.parametrize('fixture_name', ['tiny-skip', 'sg3-r-tiny', 'sg3-t-tiny', 'sg3repo-sg2-tiny'])
def test_module_src_not_executed_real_fixture(marker, fixture_name):
    path = TINY_SKIP.parent / f'{fixture_name}.pkl'
    metas = read_fixture_metas(path)
    payload = _module_src_payload(marker)

    def poison(obj):
        if isinstance(obj, Persistent):
            obj.meta['module_src'] = payload
            # StyleGAN3 layers hold numpy arrays among their attributes: write them back as arrays.
            obj.meta['state'] = legacy._materialize(obj.meta['state'])
            for sub in obj.meta['state'].get('_modules', {}).values():
                poison(sub)

    for key in ('G', 'D', 'G_ema', 'augment_pipe'):
        poison(metas[key])
    poisoned = dumps(metas)
    assert payload.encode() in poisoned  # pickle memoizes the string: written once, referenced everywhere

    data = load(poisoned)
    assert not marker.exists()
    with open(path, 'rb') as f:
        original = legacy.load_network_pkl(f)
    for key in ('G', 'D', 'G_ema'):
        assert type(data[key]) is type(original[key])
        assert state_dicts_equal(data[key], original[key])
    assert isinstance(data['augment_pipe'], legacy.InertPlaceholder) or fixture_name == 'sg3-r-tiny'  # None there


# ----------------------------------------------------------------------------
# Network classes.

def test_unknown_top_level_class_named():
    meta = persistent_meta('SynthesisInput', module_state({'w_dim': 8, 'channels': 4, 'size': 8,
                                                           'sampling_rate': 8, 'bandwidth': 2}))
    with pytest.raises(legacy.NetworkLoadError, match='SynthesisInput'):
        load(dumps({'G': Persistent(meta)}))


def test_unknown_submodule_class_named():
    sub = Persistent(persistent_meta('SynthesisInput', module_state({})))
    meta = persistent_meta('Generator', module_state(SMALL_G_KWARGS, modules={'synthesis': sub}))
    with pytest.raises(legacy.NetworkLoadError, match='SynthesisInput'):
        load(dumps({'G': Persistent(meta)}))


def test_wrong_class_at_key_refused():
    metas = read_fixture_metas(COND_ORIG)
    metas['G_ema'] = metas['D']
    with pytest.raises(legacy.NetworkLoadError, match='G_ema'):
        load(dumps(metas))


def test_bad_constructor_arguments_refused():
    meta = persistent_meta('Generator', module_state({**SMALL_G_KWARGS, 'no_such_argument': 1}))
    with pytest.raises(legacy.NetworkLoadError, match='Generator'):
        load(dumps({'G': Persistent(meta)}))


def test_unsupported_persistent_type_refused():
    meta = persistent_meta('Generator', module_state(SMALL_G_KWARGS))
    meta['type'] = 'module'
    with pytest.raises(legacy.NetworkLoadError, match='module'):
        load(dumps({'G': Persistent(meta)}))


def test_malformed_meta_refused():
    with pytest.raises(legacy.NetworkLoadError):
        load(dumps({'G': Persistent(['not', 'a', 'dict'])}))
    with pytest.raises(legacy.NetworkLoadError):
        load(dumps({'G': Persistent({'class_name': 'Generator', 'state': 'nope'})}))


def test_non_tensor_parameter_refused():
    metas = read_fixture_metas(COND_ORIG)
    mapping = metas['G'].meta['state']['_modules']['mapping']
    fc0 = mapping.meta['state']['_modules']['fc0']
    fc0.meta['state']['_parameters']['weight'] = [[0.0]]
    with pytest.raises(legacy.NetworkLoadError, match='not a tensor'):
        load(dumps(metas))


@pytest.mark.parametrize('bad', [dict(w_dim=0), dict(img_channels=-1), dict(synthesis_kwargs=dict(channel_max=0))],
                         ids=['w_dim0', 'negative_channels', 'channel_max0'])
def test_absurd_constructor_arguments_give_network_load_error(bad):
    meta = persistent_meta('Generator', module_state({**SMALL_G_KWARGS, **bad}))
    with pytest.raises(legacy.NetworkLoadError):
        load(dumps({'G': Persistent(meta)}))


def test_submodule_we_do_not_have_gives_network_load_error():
    metas = read_fixture_metas(COND_ORIG)
    extra = Persistent(persistent_meta('Conv2dLayer', module_state({})))
    metas['G'].meta['state']['_modules']['extra'] = extra
    with pytest.raises(legacy.NetworkLoadError, match='extra'):
        load(dumps(metas))


# ----------------------------------------------------------------------------
# Storage payloads.

def _with_storage_payload(payload: bytes) -> bytes:
    """A network-shaped pickle whose only storage comes from ``payload``."""
    storage = Reduce(torch.storage._load_from_bytes, payload)
    return dumps({'G': Reduce(torch._utils._rebuild_tensor_v2, storage, 0, (1,), (1,), False,
                              __import__('collections').OrderedDict())})


def _legacy_torch_save_with_main_pickle(main: bytes) -> bytes:
    """Bytes in ``torch.save``'s legacy (non-zip) layout whose main object pickle is ``main``."""
    from torch.serialization import MAGIC_NUMBER, PROTOCOL_VERSION
    sys_info = dict(protocol_version=PROTOCOL_VERSION, little_endian=sys.byteorder == 'little',
                    type_sizes=dict(short=2, int=4, long=4))
    return (pickle.dumps(MAGIC_NUMBER, protocol=2) + pickle.dumps(PROTOCOL_VERSION, protocol=2)
            + pickle.dumps(sys_info, protocol=2) + main + pickle.dumps([], protocol=2))


def _valid_storage_bytes(values) -> bytes:
    # A TypedStorage in the legacy layout, as the reference's ``TypedStorage.__reduce__`` writes it.
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', UserWarning)  # TypedStorage is deprecated, but it is what the reference wrote
        storage = torch.TypedStorage(list(values), dtype=torch.float32)
        torch.save(storage, buf, _use_new_zipfile_serialization=False)
    return buf.getvalue()


def test_valid_storage_payload_loads():
    # Guard: the crafted container is fine when the payload is a real storage.
    storage = legacy._load_storage(_valid_storage_bytes([1.5, 2.5]))
    assert isinstance(storage, (torch.UntypedStorage, torch.TypedStorage))
    with pytest.raises(legacy.NetworkLoadError, match='not a Generator'):
        load(_with_storage_payload(_valid_storage_bytes([1.5])))


def test_storage_payload_plain_pickle_of_dict():
    with pytest.raises(legacy.NetworkLoadError, match='storage'):
        load(_with_storage_payload(pickle.dumps({'a': 1}, protocol=2)))


def test_storage_payload_torch_save_of_dict():
    buf = io.BytesIO()
    torch.save({'a': torch.zeros(2)}, buf)
    with pytest.raises(legacy.NetworkLoadError, match='not a storage'):
        load(_with_storage_payload(buf.getvalue()))


def test_storage_payload_tensor_is_not_a_storage():
    buf = io.BytesIO()
    torch.save(torch.zeros(2), buf, _use_new_zipfile_serialization=False)
    with pytest.raises(legacy.NetworkLoadError, match='not a storage'):
        load(_with_storage_payload(buf.getvalue()))


def test_storage_payload_os_system_plain_pickle(marker):
    payload = pickle.dumps(Reduce(os.system, f'touch {marker}'), protocol=2)
    with pytest.raises(legacy.NetworkLoadError, match='storage payload'):
        load(_with_storage_payload(payload))
    assert not marker.exists()


def test_storage_payload_os_system_in_torch_save_layout(marker):
    # The malicious pickle sits where torch.load expects the storage, past the header checks,
    # so it is the weights-only unpickler that has to refuse it.
    payload = _legacy_torch_save_with_main_pickle(pickle.dumps(Reduce(os.system, f'touch {marker}'), protocol=2))
    with pytest.raises(legacy.NetworkLoadError, match='storage payload'):
        load(_with_storage_payload(payload))
    assert not marker.exists()


def test_storage_payload_eval_in_zip_layout(marker, tmp_path):
    # A zip-format torch.save whose data.pkl calls builtins.eval.
    buf = io.BytesIO()
    torch.save(Reduce(eval, f"open({str(marker)!r}, 'w').close()"), buf, pickle_module=pickle)
    with pytest.raises(legacy.NetworkLoadError, match='storage payload'):
        load(_with_storage_payload(buf.getvalue()))
    assert not marker.exists()


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_storage_payload_garbage(seed):
    garbage = np.random.default_rng(seed).integers(0, 256, size=257, dtype=np.uint8).tobytes()
    with pytest.raises(legacy.NetworkLoadError, match='storage payload'):
        load(_with_storage_payload(garbage))


def test_storage_payload_not_bytes():
    with pytest.raises(legacy.NetworkLoadError, match='not bytes'):
        load(_with_storage_payload('a string'))


# ----------------------------------------------------------------------------
# Files that are not network pickles.

PNG_BYTES = (b'\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00'
             b'\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7\x35\x81\x84'
             b'\x00\x00\x00\x00IEND\xaeB`\x82')


@pytest.mark.parametrize('content', [
    PNG_BYTES,
    b'',
    b'hello, this is a text file\n',
    b'{"G": "json"}\n',
    b'\x80\x04\x95',  # truncated pickle
    b'PK\x03\x04' + bytes(40),  # a zip header (torch.save's new format is not a network pickle)
], ids=['png', 'empty', 'text', 'json', 'truncated', 'zip'])
def test_not_a_pickle(tmp_path, content):
    path = tmp_path / 'network.pkl'
    path.write_bytes(content)
    with open(path, 'rb') as f, pytest.raises(legacy.NetworkLoadError):
        legacy.load_network_pkl(f)
    with pytest.raises(legacy.NetworkLoadError):
        legacy.load_network_pkl(content)  # bytes are accepted too


@pytest.mark.parametrize('obj', [[1, 2, 3], {'a': 1}, 'G', None, 42], ids=['list', 'dict', 'str', 'none', 'int'])
def test_pickle_of_non_network(obj):
    with pytest.raises(legacy.NetworkLoadError, match='not a network pickle'):
        load(pickle.dumps(obj))


def test_network_load_error_is_user_error():
    assert issubclass(legacy.NetworkLoadError, UserError)


# ----------------------------------------------------------------------------
# The real fixtures.

def _check_fixture(data, augment):
    assert set(data) == {'G', 'D', 'G_ema', 'augment_pipe', 'training_set_kwargs', 'family', 'protocol'}
    assert data['family'] == 'ada' and data['protocol'] == 4
    assert type(data['G']) is networks.Generator
    assert type(data['G_ema']) is networks.Generator
    assert type(data['D']) is networks.Discriminator
    for key in ('G', 'D', 'G_ema'):
        net = data[key]
        assert not net.training
        assert all(not m.training for m in net.modules())
        assert not any(p.requires_grad for p in net.parameters())
        assert all(t.device.type == 'cpu' for t in net.state_dict().values())
    assert isinstance(data['training_set_kwargs'], dict)
    if augment:
        pipe = data['augment_pipe']
        assert isinstance(pipe, legacy.InertPlaceholder)
        assert pipe.class_name == 'AugmentPipe'
        assert not isinstance(pipe, torch.nn.Module)
        assert not callable(pipe)
        assert 'AugmentPipe' in repr(pipe)
    else:
        assert data['augment_pipe'] is None


def test_tiny_skip_loads(tiny_skip):
    _check_fixture(tiny_skip, augment=True)
    G = tiny_skip['G_ema']
    assert G.num_ws == 8 and G.img_resolution == 32 and G.z_dim == 32 and G.c_dim == 0
    assert tiny_skip['training_set_kwargs']['resolution'] == 32
    assert tiny_skip['augment_pipe'].init_kwargs['xflip'] == 1
    assert tiny_skip['D'].b4.mbstd.group_size == 4


def test_cond_orig_loads(cond_orig):
    _check_fixture(cond_orig, augment=False)
    G = cond_orig['G_ema']
    assert G.num_ws == 6 and G.img_resolution == 16 and G.c_dim == 5
    assert cond_orig['D'].b4.mbstd.group_size == 2


@pytest.mark.parametrize('name', ['tiny-skip', 'cond-orig'])
def test_fixture_reproduces_reference_output(name):
    # One quick functional check (the full comparison lives with the fixture tests).
    with open(DATA / f'{name}.pkl', 'rb') as f:
        G = legacy.load_network_pkl(f)['G_ema']
    expected = np.load(DATA / f'{name}-expected.npz')
    with torch.no_grad():
        ws = G.mapping(torch.from_numpy(expected['z']), torch.from_numpy(expected['c']))
        img = G.synthesis(ws, noise_mode='const', force_fp32=True)
    np.testing.assert_allclose(ws.numpy(), expected['ws'], atol=1e-4)
    np.testing.assert_allclose(img.numpy(), expected['img_const'], atol=1e-3)


# ----------------------------------------------------------------------------
# numpy 1 pickles name numpy.core.multiarray (numpy 2 writes numpy._core.multiarray).

NEW_NUMPY = b'\x8c\x16numpy._core.multiarray'
OLD_NUMPY = b'\x8c\x15numpy.core.multiarray'


def _as_numpy1_pickle(data: bytes) -> bytes:
    """Rename ``numpy._core.multiarray`` to ``numpy.core.multiarray``, fixing the frame lengths."""
    ops = list(pickletools.genops(data))
    frames = [(pos, length) for op, length, pos in ops if op.name == 'FRAME']
    hits = [pos for op, arg, pos in ops if op.name == 'SHORT_BINUNICODE' and arg == 'numpy._core.multiarray']
    buf = bytearray(data)
    for hit in sorted(hits, reverse=True):  # from the end, so earlier positions stay valid
        assert bytes(buf[hit:hit + len(NEW_NUMPY)]) == NEW_NUMPY
        for fpos, length in frames:
            if fpos + 9 <= hit < fpos + 9 + length:
                current = int.from_bytes(buf[fpos + 1:fpos + 9], 'little')
                buf[fpos + 1:fpos + 9] = (current - 1).to_bytes(8, 'little')
        buf[hit:hit + len(NEW_NUMPY)] = OLD_NUMPY
    return bytes(buf), len(hits)


def test_numpy1_module_name_fixture_loads_identically(tiny_skip):
    original = TINY_SKIP.read_bytes()
    renamed, count = _as_numpy1_pickle(original)
    assert count >= 1
    assert 'numpy.core.multiarray.scalar' in globals_in(renamed)
    assert 'numpy._core.multiarray.scalar' not in globals_in(renamed)
    data = load(renamed)
    _check_fixture(data, augment=True)
    for key in ('G', 'D', 'G_ema'):
        assert state_dicts_equal(data[key], tiny_skip[key])
    assert data['training_set_kwargs'] == tiny_skip['training_set_kwargs']
    assert data['augment_pipe'].init_kwargs == tiny_skip['augment_pipe'].init_kwargs


@pytest.mark.parametrize('numpy1', [False, True], ids=['numpy2', 'numpy1'])
def test_numpy_scalars_decoded(numpy1):
    values = {'f8': np.float64(0.1), 'f4': np.float32(0.25), 'f2': np.float16(-2.0), 'i8': np.int64(-7),
              'u1': np.uint8(200), 'b1': np.bool_(True)}
    data = pickle.dumps({'G': None, 'training_set_kwargs': values}, protocol=4)
    if numpy1:
        data, count = _as_numpy1_pickle(data)
        assert count == 1
    result = load(data)['training_set_kwargs']
    assert result == {'f8': 0.1, 'f4': 0.25, 'f2': -2.0, 'i8': -7, 'u1': 200, 'b1': True}


@pytest.mark.parametrize('protocol', [2, 4])
def test_easydict_accepted(protocol):
    data = pickle.dumps({'G': None, 'training_set_kwargs': dnnlib.EasyDict(path='x.zip', resolution=8)},
                        protocol=protocol)
    assert 'dnnlib.util.EasyDict' in globals_in(data)
    kwargs = load(data)['training_set_kwargs']
    assert kwargs == {'path': 'x.zip', 'resolution': 8}


def test_easydict_init_kwargs_load():
    # The reference train.py builds G_kwargs with EasyDict mapping_kwargs/synthesis_kwargs, and the
    # persistence wrapper deep-copies them into ``_init_kwargs``: real training snapshots hold EasyDicts.
    metas = read_fixture_metas(COND_ORIG)
    for key in ('G', 'G_ema'):
        kwargs = metas[key].meta['state']['_init_kwargs']
        kwargs['mapping_kwargs'] = dnnlib.EasyDict(kwargs['mapping_kwargs'])
        kwargs['synthesis_kwargs'] = dnnlib.EasyDict(kwargs['synthesis_kwargs'])
    data = load(dumps(metas))
    with open(COND_ORIG, 'rb') as f:
        original = legacy.load_network_pkl(f)
    assert state_dicts_equal(data['G_ema'], original['G_ema'])


# ----------------------------------------------------------------------------
# load_generator.

def test_load_generator_returns_g_ema(tiny_skip):
    G = legacy.load_generator(str(TINY_SKIP), 'cpu')
    assert type(G) is networks.Generator
    assert not G.training
    assert state_dicts_equal(G, tiny_skip['G_ema'])
    assert not state_dicts_equal(G, tiny_skip['G'])  # G and G_ema differ in the fixture


def test_load_generator_missing_file(tmp_path):
    with pytest.raises(UserError):
        legacy.load_generator(str(tmp_path / 'missing.pkl'), 'cpu')


def test_load_generator_hostile_file(tmp_path, marker):
    path = tmp_path / 'evil.pkl'
    path.write_bytes(dumps({'G_ema': Reduce(os.system, f'touch {marker}')}))
    with pytest.raises(legacy.NetworkLoadError):
        legacy.load_generator(str(path), 'cpu')
    assert not marker.exists()


def test_load_generator_without_generator(tmp_path):
    path = tmp_path / 'd-only.pkl'
    metas = read_fixture_metas(COND_ORIG)
    path.write_bytes(dumps({'D': metas['D']}))
    with pytest.raises(legacy.NetworkLoadError, match='no generator'):
        legacy.load_generator(str(path), 'cpu')
