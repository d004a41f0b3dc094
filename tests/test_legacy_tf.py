"""TensorFlow-era StyleGAN2 pickles: converted without TensorFlow and without running the file.

Parity with the reference converter is in test_fixtures.py (``tf-tiny``); this module checks what
the conversion returns, what it refuses and with which message, and that crafted TF-style pickles
run nothing. Crafted files are made by editing the fixture's object graph with ``pickle_tools``
(nothing it names is imported).
"""

from pathlib import Path

import pytest
import torch

import legacy
import networks
from pickle_tools import call, global_ref, read_placeholders, write_placeholders

DATA = Path(__file__).parent / 'data'
TF_PKL = DATA / 'tf-tiny.pkl'


@pytest.fixture(scope='module')
def tf_graph():
    return read_placeholders(TF_PKL.read_bytes())


def _edited(graph, edit, protocol=3) -> bytes:
    graph = read_placeholders(TF_PKL.read_bytes())  # a fresh copy to edit
    edit(graph)
    return write_placeholders(graph, protocol)


def _state(net):
    return net._pk_state


def test_tf_pickle_gives_all_three_networks():
    data = legacy.load_network_pkl(TF_PKL.read_bytes())
    assert data['family'] == 'tf' and data['protocol'] == 3
    assert type(data['G']) is networks.Generator and type(data['G_ema']) is networks.Generator
    assert type(data['D']) is networks.Discriminator
    assert data['training_set_kwargs'] is None and data['augment_pipe'] is None
    assert not data['G_ema'].training and not any(p.requires_grad for p in data['G_ema'].parameters())
    # G and Gs hold different weights in the file.
    assert not torch.equal(data['G'].mapping.fc0.weight, data['G_ema'].mapping.fc0.weight)
    assert data['G_ema'].synthesis.b32.architecture == 'skip'


def test_tf_lone_gs_loads(tf_graph):
    data = legacy.load_network_pkl(write_placeholders(tf_graph[2], 3))
    assert data['G'] is None and data['D'] is None and type(data['G_ema']) is networks.Generator


def test_build_code_is_never_executed(tf_graph, tmp_path):
    marker = tmp_path / 'ran.txt'
    code = f"open({str(marker)!r}, 'w').write('executed')\nimport os; os.system('touch {marker}')\n"

    def edit(g):
        for net in g:
            _state(net)['build_module_src'] = code
            for comp in _state(net)['components'].values():
                _state(comp)['build_module_src'] = code
    data = legacy.load_network_pkl(_edited(tf_graph, edit))
    assert type(data['G_ema']) is networks.Generator
    assert not marker.exists()


def test_state_with_a_callable_refused(tf_graph):
    def edit(g):
        _state(g[2])['static_kwargs']['nonlinearity'] = global_ref('collections', 'OrderedDict')
    with pytest.raises(legacy.NetworkLoadError, match='not plain data'):
        legacy.load_network_pkl(_edited(tf_graph, edit))


def test_state_with_extra_entries_refused(tf_graph):
    def edit(g):
        _state(g[0])['__reduce__'] = 'x'
    with pytest.raises(legacy.NetworkLoadError, match='unexpected entries'):
        legacy.load_network_pkl(_edited(tf_graph, edit))


def test_other_globals_in_a_tf_pickle_refused(tf_graph, tmp_path):
    marker = tmp_path / 'ran.txt'

    def edit(g):
        _state(g[2])['name'] = call(global_ref('os', 'system'), f'touch {marker}')
    with pytest.raises(legacy.NetworkLoadError, match=r'refused to load os\.system'):
        legacy.load_network_pkl(_edited(tf_graph, edit))
    assert not marker.exists()


@pytest.mark.parametrize('func,message', [
    ('G_synthesis_stylegan_revised', 'config B-D'),
    ('G_synthesis_stylegan', 'StyleGAN1'),
    ('my_synthesis', "'my_synthesis'"),
])
def test_unsupported_synthesis_refused_by_name(tf_graph, func, message):
    def edit(g):
        for net in g[0::2]:
            _state(_state(net)['components']['synthesis'])['build_func_name'] = func
    with pytest.raises(legacy.NetworkLoadError, match=message):
        legacy.load_network_pkl(_edited(tf_graph, edit))


def test_label_concat_refused(tf_graph):
    def edit(g):
        for net in g[0::2]:
            mapping = _state(net)['components']['mapping']
            first = _state(mapping)['variables'][0]
            _state(mapping)['variables'].append(('LabelConcat/weight', first[1]))
    with pytest.raises(legacy.NetworkLoadError, match='LabelConcat'):
        legacy.load_network_pkl(_edited(tf_graph, edit))


def test_unknown_static_kwarg_refused(tf_graph):
    def edit(g):
        _state(g[2])['static_kwargs']['fancy_new_option'] = 3
    with pytest.raises(legacy.NetworkLoadError, match='fancy_new_option'):
        legacy.load_network_pkl(_edited(tf_graph, edit))


def test_old_state_version_refused(tf_graph):
    def edit(g):
        _state(g[2])['version'] = 3
    with pytest.raises(legacy.NetworkLoadError, match='version 3'):
        legacy.load_network_pkl(_edited(tf_graph, edit))


def test_missing_variable_named(tf_graph):
    def edit(g):
        synthesis = _state(_state(g[2])['components']['synthesis'])
        synthesis['variables'] = [v for v in synthesis['variables'] if v[0] != '8x8/Conv1/weight']
    with pytest.raises(legacy.NetworkLoadError, match='8x8/Conv1/weight'):
        legacy.load_network_pkl(_edited(tf_graph, edit))


def test_orig_architecture_from_lod_names(tf_graph):
    # TF 'orig' networks name their output layers ToRGB_lod<k>; the converter maps them to 'orig'.
    def edit(g):
        for net in g[0::2]:
            synthesis = _state(_state(net)['components']['synthesis'])
            variables = []
            for name, value in synthesis['variables']:
                if '/ToRGB/' in name:
                    res = int(name.split('x')[0])
                    if res != 32:
                        continue
                    name = 'ToRGB_lod0/' + name.split('/ToRGB/')[1]
                variables.append((name, value))
            synthesis['variables'] = variables
            _state(net)['static_kwargs']['architecture'] = 'orig'
    data = legacy.load_network_pkl(_edited(tf_graph, edit))
    G = data['G_ema']
    assert G.synthesis.b32.architecture == 'orig'
    assert G.synthesis(torch.zeros([1, G.num_ws, G.w_dim]), noise_mode='const').shape == (1, 3, 32, 32)


@pytest.mark.parametrize('payload', [123, ['a'], b'bytes'])
def test_protocol2_codecs_encode_of_non_string_refused(payload):
    data = write_placeholders({'G': None, 'training_set_kwargs': call(global_ref('_codecs', 'encode'), payload, 'latin1')}, 2)
    with pytest.raises(legacy.NetworkLoadError, match='_codecs.encode'):
        legacy.load_network_pkl(data)


@pytest.mark.parametrize('encoding', ['base64', 'rot13', 'zlib'])
def test_codecs_encode_with_other_codecs_refused(encoding):
    data = write_placeholders({'G': None, 'training_set_kwargs': call(global_ref('_codecs', 'encode'), 'abc', encoding)}, 2)
    with pytest.raises(legacy.NetworkLoadError, match='encoding'):
        legacy.load_network_pkl(data)


def test_crafted_tf_pickle_exits_2_from_a_command(tf_graph, tmp_path):
    from cli_helpers import invoke

    def edit(g):
        _state(g[2])['static_kwargs']['nonlinearity'] = global_ref('builtins', 'eval')
    path = tmp_path / 'crafted.pkl'
    path.write_bytes(_edited(tf_graph, edit))
    code, out, err = invoke(legacy.main, ['--info', str(path)])
    assert code == 2
    assert err.startswith('error:') and 'builtins.eval' in err and len(err.strip().splitlines()) == 1
    assert 'Traceback' not in out + err
