"""``morph.py --precision`` (issue 9 §1): the projections and the renders use the resolved precision,
report.json and the first lines say which, the path length stays float32, fp16 on a CPU is a
one-line error.

Tiny 32x32 generator and a random VGG16 file; a private ``DNNLIB_CACHE_DIR`` for the projection cache.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import morph
import precision as precision_mod
from cli_helpers import assert_nothing_written, assert_one_error_line, invoke, memoized_loader, read_json, read_npz

pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def env(tmp_path_factory):
    """A private projection cache, an empty hub folder (no FaceNet), ``morph.load_networks`` memoized."""
    hub = tmp_path_factory.mktemp('hub')
    cache = tmp_path_factory.mktemp('dnnlib-cache')
    loader = memoized_loader(morph.load_networks)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.hub, 'get_dir', lambda: str(hub))
        mp.setenv('DNNLIB_CACHE_DIR', str(cache))
        mp.setattr(morph, 'load_networks', loader)
        yield cache


def args_for(tiny_pkl, vgg_weights, a, b, outdir, precision, *extra):
    return ['--network', tiny_pkl, '--device', 'cpu', '--vgg-weights', vgg_weights, '--a', a, '--b', b,
            '--outdir', outdir, '--precision', precision, '--steps', 2, '--ppl-samples', 1, '--num-steps', 2, *extra]


def read_png(path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert('RGB'))


@pytest.fixture(scope='module')
def runs(env, tiny_pkl, vgg_weights, face_images, tmp_path_factory):
    """The same two images morphed in fp32, then in bf16."""
    base = tmp_path_factory.mktemp('morph-precision')
    out = {}
    for p in ('fp32', 'bf16'):
        code, _, err = invoke(morph.main, args_for(tiny_pkl, vgg_weights, *face_images, base / p, p))
        assert code == 0, err
        out[p] = dict(outdir=base / p, err=err, report=read_json(base / p / 'report.json'))
    return out


def test_report_and_first_lines_say_the_precision(runs):
    for used, run in runs.items():
        report = run['report']
        assert report['precision'] == used and report['settings']['precision'] == used
        assert report['ppl']['precision'] == 'fp32'
        lines = [line for line in run['err'].splitlines() if line.strip()]
        assert lines[0] == f'Precision: {used}.', lines[:3]
        slow = used == 'bf16' and not precision_mod.cpu_supports_bf16()
        assert lines[1].startswith('warning: this CPU has no native bfloat16') == slow, lines[:3]


def test_bf16_projection_is_not_served_from_the_fp32_cache(runs):
    for what in ('--a', '--b'):
        assert runs['bf16']['report']['inputs'][what]['cached'] is False


def test_blends_are_rendered_in_the_precision_used(runs, tiny_G):
    for used, run in runs.items():
        blend = read_npz(run['outdir'] / 'latents.npz')['blend'][0]
        np.testing.assert_array_equal(read_png(run['outdir'] / 'morph.png'), morph.synthesize(tiny_G, blend,
                                                                                              precision=used))


def test_bf16_render_is_close_to_fp32(tiny_G):
    w = tiny_G.mapping(torch.from_numpy(np.random.RandomState(5).randn(1, tiny_G.z_dim)).float(), None)[0].numpy()
    fp32 = morph.synthesize(tiny_G, w).astype(np.float64)
    bf16 = morph.synthesize(tiny_G, w, precision='bf16').astype(np.float64)
    assert np.abs(fp32 - bf16).mean() < 4.0                       # of 255: rounding, not another image


def test_auto_says_what_it_resolved_to(env, tiny_pkl, vgg_weights, face_images, tmp_path):
    code, _, err = invoke(morph.main, args_for(tiny_pkl, vgg_weights, *face_images, tmp_path / 'o', 'auto'))
    assert code == 0, err
    expected = 'bf16' if precision_mod.cpu_supports_bf16() else 'fp32'
    assert read_json(tmp_path / 'o' / 'report.json')['precision'] == expected
    assert f'Precision: {expected} (from --precision auto).' in err


def test_fp16_on_cpu_is_a_user_error(env, tiny_pkl, vgg_weights, face_images, tmp_path, monkeypatch):
    monkeypatch.setattr(morph, 'load_networks', lambda *a, **k: pytest.fail('networks loaded before the check'))
    outdir = tmp_path / 'o'
    code, _, err = invoke(morph.main, args_for(tiny_pkl, vgg_weights, *face_images, outdir, 'fp16'))
    assert code == 2
    assert_one_error_line(err, 'fp16')
    assert_nothing_written(outdir)
