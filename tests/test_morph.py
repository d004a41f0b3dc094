"""End-to-end and bad-input tests of the ``morph.py`` command line.

All runs are in-process (``cli_common.run``) on the tiny 32x32 generator with a random VGG16
file, so nothing is downloaded. ``DNNLIB_CACHE_DIR`` points at a temporary folder, so the
projection cache never touches the home folder. The networks are loaded by the real
``loaders.load_networks`` once per set of arguments and then reused, to keep the module fast.
"""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

import mixing
import morph
from cli_helpers import (assert_nothing_written, assert_one_error_line, invoke, read_json, read_npz, read_video,
                         run_command)

RES, NUM_WS, W_DIM = 32, 8, 32
METHODS = ('linear', 'style', 'attribute')


# ----------------------------------------------------------------------------
# Fixtures and helpers.

@pytest.fixture(scope='module')
def env(tmp_path_factory):
    """A private projection cache, and ``morph.load_networks`` memoized by its arguments."""
    cache = tmp_path_factory.mktemp('dnnlib-cache')
    real_loader = morph.load_networks
    memo = {}
    calls = []

    def loader(network_pkl, device, **kwargs):
        key = (str(network_pkl), str(device), tuple(sorted((k, str(v)) for k, v in kwargs.items())))
        calls.append(key)
        if key not in memo:
            memo[key] = real_loader(network_pkl, device, **kwargs)
        return memo[key]

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv('DNNLIB_CACHE_DIR', str(cache))
        mp.setattr(morph, 'load_networks', loader)
        yield SimpleNamespace(cache=cache, loader_calls=calls)


@pytest.fixture(autouse=True)
def _use_env(env, monkeypatch):
    # Belt and braces: every test sees the private cache folder.
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(env.cache))


def base_args(tiny_pkl, vgg_weights, a, b, outdir):
    # fp32: several tests compare the renders bit for bit with morph.synthesize (fp32).
    return ['--network', tiny_pkl, '--device', 'cpu', '--vgg-weights', vgg_weights, '--a', a, '--b', b,
            '--outdir', outdir, '--precision', 'fp32']


def quick_args(tiny_pkl, vgg_weights, a, b, outdir):
    """Cheapest complete run: linear, two sweep frames, one PPL sample, one projection step."""
    return base_args(tiny_pkl, vgg_weights, a, b, outdir) + ['--method', 'linear', '--steps', 2,
                                                             '--ppl-samples', 1, '--num-steps', 1]


def read_png(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        img.load()
        assert img.mode == 'RGB'
        return np.asarray(img)


def mapped_latent(G, seed: int) -> np.ndarray:
    """``[1, num_ws, w_dim]`` W latent of ``z`` drawn with ``seed``, as projector.py writes it."""
    z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).float()
    with torch.no_grad():
        return G.mapping(z, None).numpy().astype(np.float32)


@pytest.fixture(scope='module')
def latent_files(tiny_G, tmp_path_factory):
    folder = tmp_path_factory.mktemp('latents')
    wa, wb = mapped_latent(tiny_G, 21), mapped_latent(tiny_G, 22)
    assert wa.shape == (1, NUM_WS, W_DIM)
    pa, pb = folder / 'a.npz', folder / 'b.npz'
    np.savez(pa, w=wa)
    np.savez(pb, w=wb)
    return SimpleNamespace(a=str(pa), b=str(pb), wa=wa, wb=wb, folder=folder)


@pytest.fixture(scope='module')
def full_run(env, tiny_pkl, vgg_weights, face_images, tmp_path_factory):
    """``--method all`` from two images; the first run, so both projections are computed."""
    outdir = tmp_path_factory.mktemp('morph-all') / 'out'
    args = base_args(tiny_pkl, vgg_weights, face_images[0], face_images[1], outdir) + [
        '--method', 'all', '--num-steps', 5, '--steps', 4, '--ppl-samples', 2]
    code = run_command(morph.main, args)
    return SimpleNamespace(code=code, outdir=outdir, args=args)


# ----------------------------------------------------------------------------
# End to end from two images.

def test_all_methods_outputs(full_run):
    assert full_run.code == 0
    out = full_run.outdir
    names = sorted(p.name for p in out.iterdir())
    assert names == ['grid.png', 'latents.npz', 'morph.mp4', 'morph.png', 'report.json'], names

    assert read_png(out / 'morph.png').shape == (RES, RES, 3)
    # Three rows (one per method) of five degrees.
    assert read_png(out / 'grid.png').shape == (3 * RES, 5 * RES, 3)

    frames = read_video(out / 'morph.mp4')
    assert len(frames) == 4
    for frame in frames:
        assert frame.shape[:2] == (RES, 3 * RES)  # three methods side by side

    lat = read_npz(out / 'latents.npz')
    expected = {'a': (1, NUM_WS, W_DIM), 'b': (1, NUM_WS, W_DIM), 'blend': (1, NUM_WS, W_DIM), 'degrees': (4,),
                **{f'sweep_{m}': (4, NUM_WS, W_DIM) for m in METHODS}}
    assert {k: v.shape for k, v in lat.items()} == expected
    for key, value in lat.items():
        assert np.isfinite(value).all(), key


def test_all_methods_latents_are_consistent(full_run, tiny_G):
    assert full_run.code == 0
    out = full_run.outdir
    lat = read_npz(out / 'latents.npz')
    wa, wb = lat['a'][0], lat['b'][0]
    assert not np.array_equal(wa, wb)
    np.testing.assert_allclose(lat['degrees'], np.linspace(0, 1, 4))
    # The chosen blend is the first method (linear) at the default degree 0.7.
    np.testing.assert_allclose(lat['blend'][0], 0.7 * wa + 0.3 * wb, rtol=1e-5, atol=1e-6)
    for m in METHODS:
        crossover = {'linear': None, 'style': NUM_WS // 2, 'attribute': W_DIM // 2}[m]
        for i, t in enumerate(lat['degrees']):
            np.testing.assert_allclose(lat[f'sweep_{m}'][i], mixing.mix(m, wa, wb, float(t), crossover),
                                       rtol=1e-5, atol=1e-6, err_msg=f'{m} t={t}')
    # Linear sweep ends: degree 0 gives --b, degree 1 gives --a.
    np.testing.assert_array_equal(lat['sweep_linear'][0], wb)
    np.testing.assert_array_equal(lat['sweep_linear'][-1], wa)
    # The images are renders of those latents.
    np.testing.assert_array_equal(read_png(out / 'morph.png'), morph.synthesize(tiny_G, lat['blend'][0]))
    grid = read_png(out / 'grid.png')
    np.testing.assert_array_equal(grid[:RES, 4 * RES:], morph.synthesize(tiny_G, wa))  # linear, degree 1
    np.testing.assert_array_equal(grid[:RES, :RES], morph.synthesize(tiny_G, wb))  # linear, degree 0


def test_all_methods_report(full_run, face_images):
    assert full_run.code == 0
    report = read_json(full_run.outdir / 'report.json')
    assert report['command'] == 'morph'
    values = report['ppl']['values']
    assert sorted(values) == sorted(METHODS)
    for m, v in values.items():
        assert isinstance(v, float) and math.isfinite(v) and v >= 0, (m, v)
    assert report['ppl']['samples'] == 2
    assert report['ppl']['epsilon'] == pytest.approx(1e-4)
    assert set(report['inputs']) == {'--a', '--b'}
    for what, path in zip(('--a', '--b'), face_images):
        source = report['inputs'][what]
        assert source['kind'] == 'image'
        assert source['cached'] is False
        assert source['path'] == path
        assert source['num_steps'] == 5
        assert source['image']['format'] == 'PNG' and source['image']['orientation'] == 1  # as read (image_io)
    assert report['generator'] == dict(resolution=RES, num_ws=NUM_WS, w_dim=W_DIM)
    assert report['crossover_used'] == {'style': NUM_WS // 2, 'attribute': W_DIM // 2}
    timings = report['timings']
    for phase in ('load_networks', 'project', 'render', 'ppl', 'total'):
        assert phase in timings and timings[phase] >= 0, phase
    assert report['settings']['method'] == 'all'
    assert report['settings']['degree'] == pytest.approx(0.7)


def test_projection_cache_reused(full_run, env, tmp_path, monkeypatch):
    """Same images, same projection settings (network, VGG, --num-steps, --seed): no projection.

    Only the cheap blending options differ from the first run, to keep the test fast; they are
    not part of the cache key.
    """
    assert full_run.code == 0
    cached_files = sorted((env.cache / 'projections').glob('*.npz'))
    assert len(cached_files) == 2, cached_files

    def no_projection(*args, **kwargs):
        raise AssertionError('morph.project was called although the projection is cached')

    monkeypatch.setattr(morph, 'project', no_projection)
    args = list(full_run.args)
    outdir = tmp_path / 'again'
    args[args.index('--outdir') + 1] = str(outdir)
    args[args.index('--method') + 1] = 'linear'
    args[args.index('--steps') + 1] = '2'
    args[args.index('--ppl-samples') + 1] = '1'
    assert run_command(morph.main, args) == 0

    first = read_json(full_run.outdir / 'report.json')
    second = read_json(outdir / 'report.json')
    for what in ('--a', '--b'):
        assert second['inputs'][what]['kind'] == 'image'
        assert second['inputs'][what]['cached'] is True
    assert second['timings']['project'] < first['timings']['project']
    # The same latents, hence the same chosen blend (linear at 0.7 in both runs).
    lat1, lat2 = read_npz(full_run.outdir / 'latents.npz'), read_npz(outdir / 'latents.npz')
    for key in ('a', 'b', 'blend'):
        np.testing.assert_array_equal(lat1[key], lat2[key])
    np.testing.assert_array_equal(read_png(full_run.outdir / 'morph.png'), read_png(outdir / 'morph.png'))
    assert sorted((env.cache / 'projections').glob('*.npz')) == cached_files


def test_projection_cache_depends_on_settings(full_run, env, tiny_pkl, vgg_weights, face_images, tmp_path):
    """Another number of projection steps is not served from the cache."""
    assert full_run.code == 0
    before = set((env.cache / 'projections').glob('*.npz'))
    outdir = tmp_path / 'other-steps'
    args = quick_args(tiny_pkl, vgg_weights, face_images[0], face_images[0], outdir)  # num-steps 1
    assert run_command(morph.main, args) == 0
    report = read_json(outdir / 'report.json')
    assert report['inputs']['--a']['cached'] is False
    # --b is the same image with the same settings: projected once by --a, then found in the cache.
    assert report['inputs']['--b']['cached'] is True
    assert len(set((env.cache / 'projections').glob('*.npz')) - before) == 1


# ----------------------------------------------------------------------------
# From two latent files.

@pytest.mark.parametrize('degree, which', [(1, 'a'), (0, 'b')])
def test_linear_degree_ends_reproduce_latents(degree, which, latent_files, tiny_pkl, vgg_weights, tiny_G, tmp_path,
                                               monkeypatch):
    monkeypatch.setattr(morph, 'project', lambda *a, **k: pytest.fail('latent inputs must not be projected'))
    outdir = tmp_path / 'out'
    args = base_args(tiny_pkl, vgg_weights, latent_files.a, latent_files.b, outdir) + [
        '--method', 'linear', '--degree', degree, '--steps', 2, '--ppl-samples', 1]
    assert run_command(morph.main, args) == 0
    w = {'a': latent_files.wa, 'b': latent_files.wb}[which][0]
    np.testing.assert_array_equal(read_png(outdir / 'morph.png'), morph.synthesize(tiny_G, w))
    lat = read_npz(outdir / 'latents.npz')
    np.testing.assert_array_equal(lat['a'], latent_files.wa)
    np.testing.assert_array_equal(lat['b'], latent_files.wb)
    np.testing.assert_array_equal(lat['blend'][0], w)
    assert set(k for k in lat if k.startswith('sweep_')) == {'sweep_linear'}
    assert read_png(outdir / 'grid.png').shape == (RES, 5 * RES, 3)
    frames = read_video(outdir / 'morph.mp4')
    assert len(frames) == 2 and frames[0].shape[:2] == (RES, RES)
    report = read_json(outdir / 'report.json')
    # These files hold no noise maps: the generator's own constant noise is used (noise_maps False).
    assert report['inputs']['--a'] == dict(kind='latent', path=latent_files.a, noise_maps=False)
    assert report['inputs']['--b'] == dict(kind='latent', path=latent_files.b, noise_maps=False)
    assert sorted(report['ppl']['values']) == ['linear']
    assert report['crossover_used'] == {}


def test_one_frame_of_an_animations_latents(latent_files, tiny_pkl, vgg_weights, tiny_G, tmp_path):
    """``latents.npz#K`` takes latent K of projector_video.py's [T, num_ws, w_dim] file, with the
    noise maps the file holds for all its frames."""
    from optimization import noise_buffer_names
    video = tmp_path / 'latents.npz'
    noise = {name: np.random.RandomState(i).randn(1, 1, layer.resolution, layer.resolution).astype(np.float32)
             for i, (name, (_, layer)) in enumerate(zip(noise_buffer_names(tiny_G), tiny_G.synthesis.noise_layers()))}
    np.savez(video, w=np.concatenate([latent_files.wb, latent_files.wa, latent_files.wb]), **noise)
    outdir = tmp_path / 'out'
    args = base_args(tiny_pkl, vgg_weights, f'{video}#1', latent_files.b, outdir) + [
        '--method', 'linear', '--degree', 1, '--steps', 2, '--ppl-samples', 1]
    code, _, err = invoke(morph.main, args)
    assert code == 0, err
    np.testing.assert_array_equal(read_npz(outdir / 'latents.npz')['a'], latent_files.wa)
    report = read_json(outdir / 'report.json')
    assert report['inputs']['--a'] == dict(kind='latent', path=f'{video}#1', noise_maps=True)


@pytest.mark.parametrize('suffix', ['#x', '#-1', '# 1'])
def test_a_latent_number_that_is_not_one_says_so(suffix, tmp_path):
    import loaders
    from dnnlib.util import UserError
    with pytest.raises(UserError, match=r'after # comes the number of a latent in the file, from 0'):
        loaders.split_latent_index(str(tmp_path / f'latents.npz{suffix}'))
    assert loaders.split_latent_index(str(tmp_path / 'latents.npz#2')) == (str(tmp_path / 'latents.npz'), 2)


def test_interrupted_rerun_leaves_no_old_report(latent_files, tiny_pkl, vgg_weights, tmp_path, monkeypatch):
    """A second run into the folder, interrupted after its images: the first run's report.json must not
    stay beside them as if it described them."""
    outdir = tmp_path / 'out'
    args = base_args(tiny_pkl, vgg_weights, latent_files.a, latent_files.b, outdir) + [
        '--method', 'linear', '--steps', 2, '--ppl-samples', 1]
    assert run_command(morph.main, args) == 0
    assert (outdir / 'report.json').is_file()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(morph.mixing, 'perceptual_path_length', interrupted)
    code, _, err = invoke(morph.main, base_args(tiny_pkl, vgg_weights, latent_files.b, latent_files.a, outdir)
                          + ['--method', 'linear', '--steps', 2, '--ppl-samples', 1])
    assert code == 130, err
    assert (outdir / 'morph.png').is_file() and not (outdir / 'report.json').exists()


def test_style_crossover_at_num_ws_is_linear(latent_files, tiny_pkl, vgg_weights, tiny_G, tmp_path):
    """--crossover num_ws (nothing swapped) is allowed for style mixing; and a latent stored as
    [num_ws, w_dim] (no batch axis) is read too."""
    squeezed = tmp_path / 'squeezed.npz'
    np.savez(squeezed, w=latent_files.wa[0])
    outdir = tmp_path / 'out'
    args = base_args(tiny_pkl, vgg_weights, squeezed, latent_files.b, outdir) + [
        '--method', 'style', '--crossover', NUM_WS, '--degree', 1, '--steps', 2, '--ppl-samples', 1]
    assert run_command(morph.main, args) == 0
    np.testing.assert_array_equal(read_png(outdir / 'morph.png'), morph.synthesize(tiny_G, latent_files.wa[0]))
    np.testing.assert_array_equal(read_npz(outdir / 'latents.npz')['a'], latent_files.wa)
    assert read_json(outdir / 'report.json')['crossover_used'] == {'style': NUM_WS}


# ----------------------------------------------------------------------------
# Bad input: exit status 2, one line on stderr, nothing written.

def bad_npz(folder: Path, kind: str) -> Path:
    path = folder / f'{kind}.npz'
    if kind == 'video':  # latents.npz of projector_video: [T, num_ws, w_dim]
        np.savez(path, w=np.zeros((3, NUM_WS, W_DIM), np.float32))
    elif kind == 'wdim':
        np.savez(path, w=np.zeros((1, NUM_WS, W_DIM // 2), np.float32))
    elif kind == 'numws':
        np.savez(path, w=np.zeros((1, NUM_WS + 1, W_DIM), np.float32))
    elif kind == 'nokey':
        np.savez(path, ws=np.zeros((1, NUM_WS, W_DIM), np.float32))
    elif kind == 'garbage':
        path.write_bytes(b'this is not a zip file\n' * 10)
    elif kind == 'nan':
        np.savez(path, w=np.full((1, NUM_WS, W_DIM), np.nan, np.float32))
    elif kind == 'index':  # latents.npz#5 of a 3-frame animation
        np.savez(tmp := folder / 'three.npz', w=np.zeros((3, NUM_WS, W_DIM), np.float32))
        return Path(f'{tmp}#5')
    return path


@pytest.mark.parametrize('kind, needles', [
    ('video', ['--b', '[3, 8, 32]']),
    ('wdim', ['--b', '8, 16]']),
    ('numws', ['--b', '9, 32]']),
    ('nokey', ['--b', '"w"']),
    ('garbage', ['--b', 'npz']),
    ('nan', ['--b', 'NaN']),
    ('index', ['--b', 'holds 3 latents', '0 to 2']),
])
def test_bad_latent_file(kind, needles, latent_files, tiny_pkl, vgg_weights, tmp_path):
    path = bad_npz(tmp_path, kind)
    outdir = tmp_path / 'out'
    code, _, err = invoke(morph.main, base_args(tiny_pkl, vgg_weights, latent_files.a, path, outdir) + ['--steps', 2])
    assert code == 2
    assert_one_error_line(err, str(path.name), *needles)
    assert_nothing_written(outdir)


def test_missing_files(latent_files, face_images, tiny_pkl, vgg_weights, tmp_path):
    outdir = tmp_path / 'out'
    for missing in (tmp_path / 'nope.png', tmp_path / 'nope.npz'):
        code, _, err = invoke(morph.main, base_args(tiny_pkl, vgg_weights, missing, face_images[1], outdir))
        assert code == 2
        assert_one_error_line(err, '--a', 'not found', missing.name)
        code, _, err = invoke(morph.main, base_args(tiny_pkl, vgg_weights, latent_files.a, missing, outdir))
        assert code == 2
        assert_one_error_line(err, '--b', 'not found', missing.name)
    assert_nothing_written(outdir)


def test_not_an_image(face_images, tiny_pkl, vgg_weights, tmp_path):
    outdir = tmp_path / 'out'
    for name, content in (('notes.txt', b'hello\n'), ('fake.png', b'\x89PNG but not really')):
        path = tmp_path / name
        path.write_bytes(content)
        code, _, err = invoke(morph.main, base_args(tiny_pkl, vgg_weights, path, face_images[1], outdir))
        assert code == 2
        assert_one_error_line(err, '--a', name)
    assert_nothing_written(outdir)


@pytest.mark.parametrize('method, crossover, needle', [
    ('style', NUM_WS + 1, 'crossover'),
    ('all', NUM_WS + 1, 'crossover'),  # fine for attribute mixing, not for style mixing
    ('attribute', W_DIM + 1, 'crossover'),
    ('style', -1, 'crossover'),
    ('linear', 2, 'applies to --method style or attribute'),  # would do nothing
])
def test_crossover_out_of_range(method, crossover, needle, latent_files, tiny_pkl, vgg_weights, tmp_path):
    outdir = tmp_path / 'out'
    args = base_args(tiny_pkl, vgg_weights, latent_files.a, latent_files.b, outdir) + [
        '--method', method, '--crossover', crossover]
    code, _, err = invoke(morph.main, args)
    assert code == 2
    assert_one_error_line(err, needle)
    assert_nothing_written(outdir)


@pytest.mark.parametrize('option, value', [
    ('--degree', 1.5), ('--degree', -0.1), ('--method', 'cubic'), ('--steps', 1), ('--num-steps', 0),
    ('--ppl-samples', 0),
])
def test_bad_options(option, value, latent_files, tiny_pkl, vgg_weights, tmp_path):
    outdir = tmp_path / 'out'
    args = base_args(tiny_pkl, vgg_weights, latent_files.a, latent_files.b, outdir) + [option, value]
    code, _, err = invoke(morph.main, args)
    assert code == 2
    assert_one_error_line(err, option)
    assert_nothing_written(outdir)


def test_missing_required_option(latent_files, tiny_pkl, vgg_weights, tmp_path):
    args = ['--network', tiny_pkl, '--device', 'cpu', '--vgg-weights', vgg_weights, '--a', latent_files.a,
            '--outdir', tmp_path / 'out']
    code, _, err = invoke(morph.main, args)
    assert code == 2
    assert_one_error_line(err, '--b')
