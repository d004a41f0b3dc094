"""Every network pickle loads whichever pickle protocol (2 to 5) and numpy (1 or 2) wrote it.

Each shared fixture is re-written with other protocols by ``pickle_tools.repickle``, which copies
the object graph without importing anything it names (it stands in for "the same network saved
by an older Python"): the loaded networks must be identical to those of the original file.
"""

from pathlib import Path

import pytest
import torch

import legacy
from pickle_tools import globals_in, protocol_of, repickle

DATA = Path(__file__).parent / 'data'
FIXTURES = ['tiny-skip', 'cond-orig', 'sg3repo-sg2-tiny', 'sg3-t-tiny', 'sg3-r-tiny', 'tf-tiny']


@pytest.fixture(scope='module')
def originals():
    out = {}
    for name in FIXTURES:
        data = (DATA / f'{name}.pkl').read_bytes()
        out[name] = (data, legacy.load_network_pkl(data))
    return out


def _same_networks(a: dict, b: dict) -> None:
    for key in ('G', 'D', 'G_ema'):
        if a[key] is None:
            assert b[key] is None
            continue
        assert type(a[key]) is type(b[key])
        sa, sb = a[key].state_dict(), b[key].state_dict()
        assert sa.keys() == sb.keys()
        for name in sa:
            assert torch.equal(sa[name], sb[name]), (key, name)
    assert a['training_set_kwargs'] == b['training_set_kwargs']
    assert a['family'] == b['family']


@pytest.mark.parametrize('protocol', [2, 3, 4, 5])
@pytest.mark.parametrize('name', FIXTURES)
def test_fixture_rewritten_with_protocol_loads_identically(originals, name, protocol):
    data, original = originals[name]
    rewritten = repickle(data, protocol)
    assert protocol_of(rewritten) == protocol
    loaded = legacy.load_network_pkl(rewritten)
    assert loaded['protocol'] == protocol
    _same_networks(original, loaded)


@pytest.mark.parametrize('protocol', [0, 1])
def test_protocols_without_a_proto_opcode_are_told_apart(originals, protocol):
    data, original = originals['tiny-skip']
    loaded = legacy.load_network_pkl(repickle(data, protocol))
    assert loaded['protocol'] == protocol
    _same_networks(original, loaded)


def test_low_protocols_use_the_globals_python_writes_for_plain_data(originals):
    # What made protocol 2 and 3 files fail before: sets via builtins.set, bytes via _codecs.encode,
    # and __builtin__ module names at protocol 2.
    data, _ = originals['tiny-skip']
    p3 = globals_in(repickle(data, 3))
    p2 = globals_in(repickle(data, 2))
    assert 'builtins.set' in p3
    assert '__builtin__.set' in p2 and '_codecs.encode' in p2


def test_numpy1_and_numpy2_array_module_names(originals):
    # numpy 2 writes numpy._core.multiarray._reconstruct, numpy 1 numpy.core.multiarray._reconstruct.
    data, original = originals['sg3-t-tiny']
    assert 'numpy._core.multiarray._reconstruct' in globals_in(data)
    # Module names are length-prefixed at protocol 4; rename them in the protocol-2 text form.
    p2 = repickle(data, 2)
    assert b'numpy._core.multiarray\n' in p2
    numpy1 = p2.replace(b'numpy._core.multiarray\n', b'numpy.core.multiarray\n')
    assert 'numpy.core.multiarray._reconstruct' in globals_in(numpy1)
    _same_networks(original, legacy.load_network_pkl(numpy1))
