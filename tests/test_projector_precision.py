"""``projector.py --precision``: the report records the precision used and the network, and a bf16
run ends as well as the fp32 run with the same seed (issue 9 §1's quality bound, on the tiny fixture)."""

from __future__ import annotations

import pytest

import projector
from cli_helpers import invoke, read_json

pytestmark = pytest.mark.usefixtures('one_thread')

STEPS = 6


def _run(tiny_pkl, fan_weights, vgg_weights, face_images, outdir, precision):
    look, landmarks = face_images
    args = ['--network', tiny_pkl, '--device', 'cpu', '--fan-weights', fan_weights, '--vgg-weights', vgg_weights,
            '--target_look', look, '--target_landmarks', landmarks, '--outdir', outdir, '--num-steps', STEPS,
            '--precision', precision, '--seed', 7]
    code, _, err = invoke(projector.main, args)
    assert code == 0, err
    return read_json(outdir / 'report.json'), err


@pytest.fixture(scope='module')
def runs(tiny_pkl, fan_weights, vgg_weights, face_images, tmp_path_factory):
    base = tmp_path_factory.mktemp('precision')
    return {p: _run(tiny_pkl, fan_weights, vgg_weights, face_images, base / p, p) for p in ('fp32', 'bf16')}


def test_report_records_precision_and_network(runs):
    for used, (report, err) in runs.items():
        assert report['precision'] == used
        assert report['optimizer']['precision'] == used
        assert report['settings']['precision'] == used
        assert f'Precision: {used}' in err
        assert report['network']['architecture'] == 'stylegan2'
        assert report['network']['family'] in ('ada', 'tf', 'sg3-repo')
        assert report['network']['resolution'] == 32


def test_bf16_warns_only_where_this_cpu_has_no_native_bfloat16(runs):
    import precision as precision_mod
    warned = 'warning: this CPU has no native bfloat16 kernels' in runs['bf16'][1]
    assert warned == (not precision_mod.cpu_supports_bf16())
    assert 'bfloat16' not in runs['fp32'][1]
    # report.json keeps the warning with the results it concerns.
    in_report = any('no native bfloat16 kernels' in w for w in runs['bf16'][0]['warnings'])
    assert in_report == warned
    assert not any('bfloat16' in w for w in runs['fp32'][0]['warnings'])


@pytest.mark.parametrize('key', ['lpips_to_look', 'landmark_error'])
def test_bf16_within_five_percent_of_fp32(runs, key):
    fp32, bf16 = runs['fp32'][0][key], runs['bf16'][0][key]
    assert abs(bf16 - fp32) <= 0.05 * abs(fp32), (key, fp32, bf16)


def test_auto_says_what_it_resolved_to(tiny_pkl, fan_weights, vgg_weights, face_images, tmp_path):
    import precision as precision_mod
    report, err = _run(tiny_pkl, fan_weights, vgg_weights, face_images, tmp_path / 'auto', 'auto')
    expected = 'bf16' if precision_mod.cpu_supports_bf16() else 'fp32'
    assert report['precision'] == expected
    assert f'Precision: {expected} (from --precision auto)' in err


def test_fp16_on_cpu_is_a_user_error(tiny_pkl, fan_weights, vgg_weights, face_images, tmp_path):
    look, landmarks = face_images
    code, _, err = invoke(projector.main, ['--network', tiny_pkl, '--device', 'cpu', '--fan-weights', fan_weights,
                                           '--vgg-weights', vgg_weights, '--target_look', look, '--target_landmarks',
                                           landmarks, '--outdir', tmp_path / 'o', '--precision', 'fp16'])
    assert code == 2 and 'error:' in err and 'fp16' in err
    assert not (tmp_path / 'o').exists()
