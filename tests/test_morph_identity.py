"""The identity score of ``morph.py`` (``--id-weights``, ``--no-identity``; issue 15 §3).

Tiny 32x32 generator, a random VGG16 file and a random FaceNet state dict with the published
layout, its batch norms fitted to a few renders (``conftest.facenet_state``), so that different
faces get different embeddings. ``torch.hub``'s folder is an empty temporary one and
``DNNLIB_CACHE_DIR`` a private one: no cached weights are found, nothing is downloaded and the
projection cache never touches the home folder. Most runs blend two latent files (no projection).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import identity
import image_io
import morph
from cli_helpers import assert_nothing_written, assert_one_error_line, invoke, memoized_loader, read_json

pytestmark = pytest.mark.usefixtures('one_thread')

RES = 32
METHODS = ('linear', 'style', 'attribute')


@pytest.fixture(scope='module')
def env(tmp_path_factory):
    """An empty hub folder, a private projection cache, and ``morph.load_networks`` memoized.

    ``loads`` records every ``load_networks`` call's ``need_identity`` and ``id_weights``.
    """
    hub = tmp_path_factory.mktemp('hub')
    cache = tmp_path_factory.mktemp('dnnlib-cache')
    loads = []
    loader = memoized_loader(morph.load_networks, loads)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.hub, 'get_dir', lambda: str(hub))
        mp.setenv('DNNLIB_CACHE_DIR', str(cache))
        mp.setattr(morph, 'load_networks', loader)
        yield dict(hub=hub, loads=loads)


@pytest.fixture(scope='module')
def latents(tiny_G, tmp_path_factory):
    """Two latent files ``[1, num_ws, w_dim]``: the W latents of two random faces."""
    folder = tmp_path_factory.mktemp('latents')
    paths = []
    for name, seed in (('a', 31), ('b', 32)):
        z = torch.from_numpy(np.random.RandomState(seed).randn(1, tiny_G.z_dim)).float()
        with torch.no_grad():
            w = tiny_G.mapping(z, None).numpy().astype(np.float32)
        np.savez(folder / f'{name}.npz', w=w)
        paths.append(str(folder / f'{name}.npz'))
    return tuple(paths)


@pytest.fixture(scope='module')
def net(facenet_weights):
    return identity.load_facenet(facenet_weights)


def args_for(tiny_pkl, vgg_weights, a, b, outdir, *extra):
    return ['--network', tiny_pkl, '--device', 'cpu', '--vgg-weights', vgg_weights, '--a', a, '--b', b,
            '--outdir', outdir, '--precision', 'fp32', '--ppl-samples', 1, *extra]


def read_png(path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert('RGB'))


@pytest.fixture(scope='module')
def all_run(env, latents, tiny_pkl, vgg_weights, facenet_weights, tmp_path_factory):
    """``--method all`` with ``--id-weights``, sweep of 3 degrees."""
    outdir = tmp_path_factory.mktemp('morph-identity') / 'out'
    code, _, err = invoke(morph.main, args_for(tiny_pkl, vgg_weights, *latents, outdir, '--method', 'all',
                                               '--steps', 3, '--id-weights', facenet_weights))
    assert code == 0, err
    return dict(outdir=outdir, report=read_json(outdir / 'report.json'), err=err)


# ----------------------------------------------------------------------------
# The score.

def test_every_rendered_blend_has_similarities_to_a_and_b(all_run, env, facenet_weights):
    sim = all_run['report']['identity_similarity']
    assert (True, facenet_weights) in env['loads']
    assert sim['weights'] == facenet_weights
    assert sim['box'] == pytest.approx(vars(identity.ffhq_box(RES)))
    degrees = sorted(set(np.linspace(0, 1, 3).tolist()) | set(morph.GRID_DEGREES) | {0.7})
    for m in METHODS:
        rows = [r for r in sim['blends'] if r['method'] == m]
        expected = degrees if m == 'linear' else [t for t in degrees if t != 0.7]  # 0.7: morph.png, linear only
        assert [r['degree'] for r in rows] == pytest.approx(expected), m
        for r in rows:
            assert -1 - 1e-6 <= r['to_a'] <= 1 + 1e-6 and -1 - 1e-6 <= r['to_b'] <= 1 + 1e-6, r
    assert sim['blend']['method'] == 'linear' and sim['blend']['degree'] == pytest.approx(0.7)
    assert set(sim['equal_similarity_degree']) == set(METHODS)


def test_linear_ends_are_a_and_b(all_run):
    """Degree 1 renders --a, degree 0 renders --b: similarity 1 to each, and a_to_b across."""
    sim = all_run['report']['identity_similarity']
    linear = {r['degree']: r for r in sim['blends'] if r['method'] == 'linear'}
    assert linear[1.0]['to_a'] == pytest.approx(1.0, abs=1e-5)
    assert linear[0.0]['to_b'] == pytest.approx(1.0, abs=1e-5)
    assert linear[1.0]['to_b'] == pytest.approx(sim['a_to_b'], abs=1e-5)
    assert linear[0.0]['to_a'] == pytest.approx(sim['a_to_b'], abs=1e-5)
    assert sim['a_to_b'] < 0.999                                  # two faces, two embeddings
    crossing = sim['equal_similarity_degree']['linear']
    assert crossing is not None and 0 < crossing < 1              # B's person at 0, A's at 1: it changes between


def test_similarities_are_those_of_the_rendered_grid(all_run, net):
    """The scores are FaceNet cosines of the images written (grid.png's tiles), in the FFHQ box."""
    sim = all_run['report']['identity_similarity']
    grid = read_png(all_run['outdir'] / 'grid.png')
    tiles = {(m, t): grid[i * RES:(i + 1) * RES, j * RES:(j + 1) * RES]
             for i, m in enumerate(METHODS) for j, t in enumerate(morph.GRID_DEGREES)}
    box = identity.ffhq_box(RES)
    a = image_io.to_tensor(tiles[('linear', 1.0)])
    b = image_io.to_tensor(tiles[('linear', 0.0)])
    for r in sim['blends']:
        if (r['method'], r['degree']) in tiles:
            x = image_io.to_tensor(tiles[(r['method'], r['degree'])])
            assert r['to_a'] == pytest.approx(float(identity.identity_similarity(net, x, a, box)[0]), abs=1e-5)
            assert r['to_b'] == pytest.approx(float(identity.identity_similarity(net, x, b, box)[0]), abs=1e-5)


def test_image_inputs_report_their_projections_similarity(env, face_images, tiny_pkl, vgg_weights, facenet_weights,
                                                          tmp_path):
    outdir = tmp_path / 'out'
    code, _, err = invoke(morph.main, args_for(tiny_pkl, vgg_weights, *face_images, outdir, '--steps', 2,
                                               '--num-steps', 1, '--id-weights', facenet_weights))
    assert code == 0, err
    report = read_json(outdir / 'report.json')
    for what in ('--a', '--b'):
        assert -1 <= report['inputs'][what]['identity_similarity'] <= 1 + 1e-6
    assert len(report['identity_similarity']['blends']) == len({0.0, 0.25, 0.5, 0.75, 1.0, 0.7})


# ----------------------------------------------------------------------------
# When there is no score.

@pytest.fixture
def no_facenet(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError('FaceNet was loaded')
    monkeypatch.setattr(identity, 'load_facenet', refuse)


def test_no_identity_skips_network_and_score(env, latents, tiny_pkl, vgg_weights, facenet_weights, no_facenet,
                                             tmp_path):
    outdir = tmp_path / 'out'
    code, _, err = invoke(morph.main, args_for(tiny_pkl, vgg_weights, *latents, outdir, '--steps', 2,
                                               '--id-weights', facenet_weights, '--no-identity'))
    assert code == 0, err
    report = read_json(outdir / 'report.json')
    assert 'identity_similarity' not in report
    assert env['loads'][-1][0] is False
    assert report['settings']['no_identity'] is True


def test_no_weights_at_hand_no_score_and_no_download(env, latents, tiny_pkl, vgg_weights, no_facenet, offline_hub,
                                                     tmp_path):
    assert not identity.weights_available()                       # the hub folder is empty
    outdir = tmp_path / 'out'
    code, _, err = invoke(morph.main, args_for(tiny_pkl, vgg_weights, *latents, outdir, '--steps', 2))
    assert code == 0, err
    assert 'identity_similarity' not in read_json(outdir / 'report.json')
    assert offline_hub == []                                      # nothing was asked of the network
    assert env['loads'][-1][0] is False


@pytest.mark.parametrize('kind', ['garbage', 'other_layout'])
def test_wrong_weights_file_is_one_error_line(kind, env, latents, tiny_pkl, vgg_weights, tmp_path):
    path = tmp_path / f'{kind}.pt'
    if kind == 'garbage':
        path.write_bytes(b'not a state dict\n' * 8)
    else:
        torch.save({'conv.weight': torch.zeros(2, 2)}, path)
    outdir = tmp_path / 'out'
    code, _, err = invoke(morph.main, args_for(tiny_pkl, vgg_weights, *latents, outdir, '--id-weights', path))
    assert code == 2
    assert_one_error_line(err, '--id-weights', path.name)
    assert_nothing_written(outdir)


def test_identity_term_weight_is_not_a_morph_option(latents, tiny_pkl, vgg_weights, tmp_path):
    """Morph has no objective to add the term to: ``--id_weight`` is refused as an unknown option."""
    code, _, err = invoke(morph.main, args_for(tiny_pkl, vgg_weights, *latents, tmp_path / 'out',
                                               '--id_weight', 1))
    assert code == 2
    assert_one_error_line(err, '--id_weight')


# ----------------------------------------------------------------------------
# The crossing degree.

@pytest.mark.parametrize('to_a, to_b, expected', [
    ([0.2, 0.5, 0.9], [0.9, 0.5, 0.2], 0.5),          # equal at a sampled degree
    ([0.2, 0.4, 0.9], [0.9, 0.8, 0.2], 0.5 + 0.5 * 0.4 / 1.1),  # between samples: linear
    ([0.9, 0.9, 0.9], [0.1, 0.2, 0.3], None),         # never equal
])
def test_equal_similarity_degree(to_a, to_b, expected):
    got = morph.equal_similarity_degree([0.0, 0.5, 1.0], to_a, to_b)
    assert got == (None if expected is None else pytest.approx(expected))
