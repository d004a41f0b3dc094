"""Issue 10.1: outputs are reproducible from what is saved.

``projected_w.npz`` holds the latent and the optimized noise maps (keyed by buffer name), so
synthesizing from the file reproduces ``proj.png``; ``morph.py`` and ``loaders.load_projection``
apply those maps wherever a file is loaded. Tiny generator, random FAN / VGG weights.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import image_io
import loaders
import morph
import optimization as opt
import projector
from cli_helpers import assert_one_error_line, invoke, read_json, read_npz, run_command

pytestmark = pytest.mark.usefixtures('one_thread')


def read_png(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert('RGB')).astype(np.int16)


def projector_run(tiny_pkl, fan_weights, vgg_weights, look, landmarks, outdir, seed):
    args = ['--network', tiny_pkl, '--device', 'cpu', '--fan-weights', fan_weights, '--vgg-weights', vgg_weights,
            '--target_look', look, '--target_landmarks', landmarks, '--outdir', outdir, '--num-steps', 3,
            '--seed', seed]
    code, _, err = invoke(projector.main, args)
    assert code == 0, err
    return outdir


@pytest.fixture(scope='module')
def runs(tiny_pkl, fan_weights, vgg_weights, face_images, tmp_path_factory):
    root = tmp_path_factory.mktemp('reproducible')
    look, landmarks = face_images
    a = projector_run(tiny_pkl, fan_weights, vgg_weights, look, landmarks, root / 'a', 1)
    b = projector_run(tiny_pkl, fan_weights, vgg_weights, landmarks, look, root / 'b', 2)
    return root, a, b


def test_npz_holds_noise_maps_by_buffer_name(runs, tiny_G):
    _, a, _ = runs
    data = read_npz(a / 'projected_w.npz')
    names = opt.noise_buffer_names(tiny_G)
    assert set(data) == {'w', *names}
    assert 'b8.conv0.noise_const' in data
    assert data['w'].shape == (1, tiny_G.num_ws, tiny_G.w_dim) and data['w'].dtype == np.float32
    for name, (_, layer) in zip(names, tiny_G.synthesis.noise_layers()):
        assert data[name].shape == (1, 1, layer.resolution, layer.resolution) and data[name].dtype == np.float32


def test_synthesis_from_npz_reproduces_proj_png(runs, tiny_G):
    """Load the npz, put its noise into (a copy of) G, synthesize with noise_mode='const': proj.png."""
    _, a, _ = runs
    proj = read_png(a / 'proj.png')
    p = loaders.load_projection(str(a / 'projected_w.npz'), tiny_G)
    assert p.noise_saved
    with torch.no_grad():
        G2 = loaders.with_noise_buffers(tiny_G, p.noise)
        img = G2.synthesis(p.w, noise_mode='const', force_fp32=True)
        direct = opt.synthesize(tiny_G, p.w, p.noise)                 # the same maps passed directly
        own = tiny_G.synthesis(p.w, noise_mode='const', force_fp32=True)  # w alone: the network's own noise
    assert np.abs(image_io.to_uint8(img[0]).astype(np.int16) - proj).max() <= 1
    assert np.abs(image_io.to_uint8(direct[0]).astype(np.int16) - proj).max() <= 1
    # Without the saved maps the picture differs (what the issue measured): the maps matter here.
    assert np.abs(image_io.to_uint8(own[0]).astype(np.int16) - proj).max() > 8
    # with_noise_buffers leaves G itself alone.
    names = dict(tiny_G.synthesis.named_buffers())
    assert not torch.equal(names['b8.conv0.noise_const'], p.noise['b8.conv0.noise_const'][0, 0])


@pytest.mark.parametrize('degree, which', [(1, 'a'), (0, 'b')])
def test_morph_from_npz_starts_from_the_projection(runs, tiny_pkl, vgg_weights, degree, which, monkeypatch):
    root, a, b = runs
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(root / 'cache'))
    out = root / f'morph-{degree}'
    args = ['--network', tiny_pkl, '--device', 'cpu', '--vgg-weights', vgg_weights, '--a', a / 'projected_w.npz',
            '--b', b / 'projected_w.npz', '--method', 'linear', '--degree', degree, '--steps', 2,
            '--ppl-samples', 1, '--outdir', out, '--precision', 'fp32']  # fp32 renders: exact up to rounding
    assert run_command(morph.main, args) == 0
    proj = read_png({'a': a, 'b': b}[which] / 'proj.png')
    assert np.abs(read_png(out / 'morph.png') - proj).max() <= 1
    report = read_json(out / 'report.json')
    assert report['inputs']['--a']['noise_maps'] is True
    lat = read_npz(out / 'latents.npz')
    assert 'blend.b8.conv0.noise_const' in lat and 'a.b8.conv0.noise_const' in lat


def test_old_npz_without_noise_uses_the_generators_own(tiny_G, tmp_path):
    w = opt.w_stats(tiny_G)[0].expand(1, tiny_G.num_ws, tiny_G.w_dim).numpy()
    np.savez(tmp_path / 'old.npz', w=w)
    p = loaders.load_projection(str(tmp_path / 'old.npz'), tiny_G)
    assert not p.noise_saved
    for name, value in opt.const_noise(tiny_G).items():
        assert torch.equal(p.noise[name], value)


def test_noise_maps_of_another_network_are_refused(runs, tiny_G, tmp_path):
    _, a, _ = runs
    data = read_npz(a / 'projected_w.npz')
    data.pop('b8.conv0.noise_const')
    np.savez(tmp_path / 'partial.npz', **data)
    from dnnlib.util import UserError
    with pytest.raises(UserError, match='noise'):
        loaders.load_projection(str(tmp_path / 'partial.npz'), tiny_G)
    data = read_npz(a / 'projected_w.npz')
    data['b8.conv0.noise_const'] = np.zeros([1, 1, 4, 4], np.float32)
    np.savez(tmp_path / 'shape.npz', **data)
    with pytest.raises(UserError, match='b8.conv0.noise_const'):
        loaders.load_projection(str(tmp_path / 'shape.npz'), tiny_G)


def test_morph_reports_a_bad_noise_map(runs, tiny_pkl, vgg_weights, tmp_path, monkeypatch):
    _, a, b = runs
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(tmp_path / 'cache'))
    data = read_npz(a / 'projected_w.npz')
    data.pop('b4.conv1.noise_const')
    bad = tmp_path / 'bad.npz'
    np.savez(bad, **data)
    code, _, err = invoke(morph.main, ['--network', tiny_pkl, '--device', 'cpu', '--vgg-weights', vgg_weights,
                                       '--a', bad, '--b', b / 'projected_w.npz', '--outdir', tmp_path / 'out'])
    assert code == 2
    assert_one_error_line(err, '--a', 'bad.npz', 'noise')
