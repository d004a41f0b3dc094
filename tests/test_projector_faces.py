"""projector.py --align on real photos: no face, several faces, --face-index, small faces, --pairs rows (issue 14).

A stub detector (a plain function returning boxes) stands in for S3FD: it finds no face in a flat
grey photo and three faces (sides 80, 60, 6 px) in any other, so each path is chosen by the input.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

import face_landmarks
import projector
from cli_helpers import assert_nothing_written, assert_one_error_line, invoke, read_json

pytestmark = pytest.mark.usefixtures('one_thread', 'shared_projector_networks')
R = 32
BOXES = [(10, 10, 70, 70, 0.9), (30, 20, 110, 100, 0.95), (120, 120, 126, 126, 0.99)]  # sides 60, 80, 6


def stub_detector(image: np.ndarray):
    return [] if image.std() < 1 else list(BOXES)


@pytest.fixture(autouse=True)
def stub_s3fd(monkeypatch):
    asked = []

    def load(weights=None, device='cpu'):
        asked.append(weights)
        return stub_detector
    monkeypatch.setattr(face_landmarks, 'load_s3fd', load)
    return asked


@pytest.fixture(scope='module')
def photos(face_images, tmp_path_factory):
    """128x128 'photos' (the tiny faces enlarged) and a flat grey one without a face."""
    folder = tmp_path_factory.mktemp('photos')
    out = {}
    for name, path in zip(('look', 'target'), face_images):
        with Image.open(path) as img:
            img.convert('RGB').resize((128, 128), Image.LANCZOS).save(folder / f'{name}.jpg', quality=95)
        out[name] = str(folder / f'{name}.jpg')
    Image.new('RGB', (128, 128), (128, 128, 128)).save(folder / 'wall.png')
    out['wall'] = str(folder / 'wall.png')
    return out


def args(tiny_pkl, fan_weights, vgg_weights, look, target, outdir, *extra):
    return [str(a) for a in ['--network', tiny_pkl, '--device', 'cpu', '--fan-weights', fan_weights,
                             '--vgg-weights', vgg_weights, '--target_look', look, '--target_landmarks', target,
                             '--outdir', outdir, '--num-steps', 1, '--precision', 'fp32', '--align', *extra]]


def test_no_face_is_one_error_line(tiny_pkl, fan_weights, vgg_weights, photos, tmp_path):
    out = tmp_path / 'out'
    code, _, err = invoke(projector.main, args(tiny_pkl, fan_weights, vgg_weights, photos['wall'], photos['target'],
                                               out))
    assert code == 2, err
    assert_one_error_line(err, f'no face found in {photos["wall"]}')
    assert_nothing_written(out)


def test_several_faces_the_largest_is_taken_and_reported(tiny_pkl, fan_weights, vgg_weights, photos, tmp_path,
                                                        stub_s3fd):
    out = tmp_path / 'out'
    code, _, err = invoke(projector.main, args(tiny_pkl, fan_weights, vgg_weights, photos['look'], photos['target'],
                                               out))
    assert code == 0, err
    assert stub_s3fd == [None]                                    # the detector is loaded once per run
    report = read_json(out / 'report.json')
    for key in ('look_face', 'target_face'):
        face = report[key]
        assert face['faces_found'] == 3 and face['face_index'] == 0
        assert face['detection']['x0'] == 30 and face['detection']['x1'] == 110
        assert face['face_size'] == 80 and face['warning'] is None
    assert report['settings']['align'] is True and report['settings']['face_index'] == 0
    assert report['look_image']['orientation'] == 1 and report['look_image']['format'] == 'JPEG'
    with Image.open(out / 'target_look.png') as img:
        assert img.size == (R, R)


def test_face_index_picks_another_face(tiny_pkl, fan_weights, vgg_weights, photos, tmp_path):
    out = tmp_path / 'out'
    code, _, err = invoke(projector.main, args(tiny_pkl, fan_weights, vgg_weights, photos['look'], photos['target'],
                                               out, '--face-index', 1))
    assert code == 0, err
    face = read_json(out / 'report.json')['look_face']
    assert face['face_index'] == 1 and face['detection']['x0'] == 10 and face['face_size'] == 60


def test_face_index_beyond_the_faces_found(tiny_pkl, fan_weights, vgg_weights, photos, tmp_path):
    out = tmp_path / 'out'
    code, _, err = invoke(projector.main, args(tiny_pkl, fan_weights, vgg_weights, photos['look'], photos['target'],
                                               out, '--face-index', 3))
    assert code == 2, err
    assert_one_error_line(err, '--face-index 3', '3 faces')
    assert_nothing_written(out)


def test_small_face_warns_that_the_result_will_be_blurry(tiny_pkl, fan_weights, vgg_weights, photos, tmp_path):
    """The third face is 6 px: under a quarter of the 32 px generator."""
    out = tmp_path / 'out'
    code, _, err = invoke(projector.main, args(tiny_pkl, fan_weights, vgg_weights, photos['look'], photos['target'],
                                               out, '--face-index', 2))
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith('warning:')]
    assert len(warnings) == 2 and all('blurry' in w for w in warnings)
    report = read_json(out / 'report.json')
    assert len(report['warnings']) == 2 and report['look_face']['face_size'] == 6


def test_pairs_row_without_a_face_fails_alone(tiny_pkl, fan_weights, vgg_weights, photos, tmp_path):
    folder = tmp_path / 'batch'
    folder.mkdir()
    rows = [dict(look=photos['look'], landmarks=photos['target'], outdir='a'),
            dict(look=photos['wall'], landmarks=photos['target'], outdir='b'),
            dict(look=photos['target'], landmarks=photos['look'], outdir='c')]
    with open(folder / 'pairs.csv', 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=['look', 'landmarks', 'outdir'])
        writer.writeheader()
        writer.writerows(rows)
    argv = [str(a) for a in ['--network', tiny_pkl, '--device', 'cpu', '--fan-weights', fan_weights,
                             '--vgg-weights', vgg_weights, '--pairs', folder / 'pairs.csv', '--num-steps', 1,
                             '--precision', 'fp32', '--align']]
    code, _, err = invoke(projector.main, argv)
    assert code == 1, err
    report = read_json(folder / 'pairs_report.json')
    assert [r['status'] for r in report['rows']] == ['ok', 'failed', 'ok']
    assert 'no face found' in report['rows'][1]['error']
    assert (folder / 'a' / 'report.json').is_file() and (folder / 'c' / 'report.json').is_file()
    assert read_json(folder / 'a' / 'report.json')['look_face']['faces_found'] == 3
    assert not (folder / 'b' / 'report.json').exists()
