"""projector.py with coordinate targets, --retarget, landmarks.json and the identity term (issues 11, 15).

Tiny 32x32 generator, random FAN / VGG16 / FaceNet weights; nothing is downloaded.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import landmark_targets
import projector
from cli_helpers import assert_nothing_written, assert_one_error_line, invoke, read_json

pytestmark = pytest.mark.usefixtures('one_thread', 'shared_projector_networks')
R = 32


def base(tiny_pkl, fan_weights, vgg_weights, look, target, outdir, steps=2, *extra):
    return [str(a) for a in ['--network', tiny_pkl, '--device', 'cpu', '--fan-weights', fan_weights,
                             '--vgg-weights', vgg_weights, '--target_look', look, '--target_landmarks', target,
                             '--outdir', outdir, '--num-steps', steps, '--precision', 'fp32', *extra]]


def mean_face_file(path, size=R, scale=0.6):
    """A landmark JSON file: a plausible face filling the middle of a ``size`` frame."""
    points = landmark_targets.mean_face(size * scale, size * scale) + size * (1 - scale) / 2
    landmark_targets.write_landmark_file(path, points, size)
    return points


# ----------------------------------------------------------------------------
# Coordinates as the target.

@pytest.fixture(scope='module')
def json_runs(tiny_pkl, fan_weights, vgg_weights, face_images, tmp_path_factory):
    """The same seed, 12 steps, towards a .json target: without the heat-map term and with it."""
    folder = tmp_path_factory.mktemp('json_target')
    target = folder / 'target.json'
    points = mean_face_file(target)
    runs = {}
    for weight in (0.0, 1.0):
        out = folder / f'out_{weight:g}'
        argv = base(tiny_pkl, fan_weights, vgg_weights, face_images[0], target, out, 12,
                    '--landmark_weight', weight, '--lpips_weight', 0.1)
        code, _, err = invoke(projector.main, argv)
        assert code == 0, err
        runs[weight] = dict(out=out, report=read_json(out / 'report.json'))
    return dict(points=points, target=target, runs=runs)


def test_align_with_points_of_another_frame_warns(tiny_pkl, fan_weights, vgg_weights, face_images, tmp_path):
    """--align aligns the look photo; a landmark file's points are only scaled and centre-cropped,
    so points framed for another picture no longer line up: said, and kept in report.json."""
    photo_frame, own_frame = tmp_path / 'photo.json', tmp_path / 'aligned.json'
    mean_face_file(photo_frame, size=64)
    mean_face_file(own_frame)
    for target, warned in ((photo_frame, True), (own_frame, False)):
        out = tmp_path / target.stem
        code, _, err = invoke(projector.main, base(tiny_pkl, fan_weights, vgg_weights, face_images[0], target, out, 1,
                                                   '--align', '--detector', 'none'))
        assert code == 0, err
        said = [line for line in err.splitlines() if '--align aligns photos, not points' in line]
        assert len(said) == int(warned), err
        assert any('64x64 frame' in w for w in read_json(out / 'report.json')['warnings']) == warned


def test_json_target_lowers_the_landmark_error(json_runs):
    off, on = json_runs['runs'][0.0]['report'], json_runs['runs'][1.0]['report']
    assert on['target_kind'] == 'points'
    assert on['landmark_error_to_used_target'] < off['landmark_error_to_used_target']
    assert on['landmark_error'] == pytest.approx(on['landmark_error_to_used_target'], rel=1e-4)


def test_landmarks_json_is_written_and_reads_back(json_runs):
    out = json_runs['runs'][1.0]['out']
    data = json.loads((out / 'landmarks.json').read_text())
    assert data['size'] == [R, R]
    assert {'landmarks', 'look', 'target', 'projection'} <= set(data)
    # 'landmarks' is the used target: the given points themselves (no --retarget).
    np.testing.assert_allclose(np.array(data['landmarks']), json_runs['points'], atol=1e-3)
    back = landmark_targets.read_landmark_file(out / 'landmarks.json', resolution=R)
    assert back.shape == (68, 2)
    assert not (out / 'target_landmarks_used.json').exists()
    # A coordinate target has no image: target_landmarks.png is its points on a grey canvas.
    with Image.open(out / 'target_landmarks.png') as img:
        assert img.size == (R, R)


def test_landmarks_json_feeds_back(json_runs, tiny_pkl, fan_weights, vgg_weights, face_images, tmp_path):
    """What one run wrote is a valid --target_landmarks for the next (the edit-and-reproject workflow)."""
    written = json_runs['runs'][1.0]['out'] / 'landmarks.json'
    out = tmp_path / 'again'
    code, _, err = invoke(projector.main, base(tiny_pkl, fan_weights, vgg_weights, face_images[0], written, out,
                                               1, '--no-save_landmarks'))
    assert code == 0, err
    assert not (out / 'landmarks.json').exists()
    assert read_json(out / 'report.json')['target_kind'] == 'points'
    # One named set of the file: FILE.json#NAME.
    out = tmp_path / 'set'
    code, _, err = invoke(projector.main, base(tiny_pkl, fan_weights, vgg_weights, face_images[0],
                                               f'{written}#target', out, 1))
    assert code == 0, err
    used = np.array(json.loads((out / 'landmarks.json').read_text())['landmarks'])
    np.testing.assert_allclose(used, json_runs['points'], atol=1e-3)


def test_landmarks_frame_scales_the_points(tiny_pkl, fan_weights, vgg_weights, face_images, tmp_path):
    """A .npy file names no frame: --landmarks-frame 64,64 halves its points on the 32 px generator."""
    points = landmark_targets.mean_face(38, 38) + 13
    np.save(tmp_path / 'target.npy', points)
    out = tmp_path / 'out'
    code, _, err = invoke(projector.main, base(tiny_pkl, fan_weights, vgg_weights, face_images[0],
                                               tmp_path / 'target.npy', out, 1, '--landmarks-frame', '64,64'))
    assert code == 0, err
    used = np.array(json.loads((out / 'landmarks.json').read_text())['landmarks'])
    np.testing.assert_allclose(used, points / 2, atol=1e-3)


def _bad_files():
    good = landmark_targets.mean_face(20, 20) + 6

    def write(tmp, name, text):
        path = tmp / name
        path.write_text(text)
        return path

    return {
        'wrong_count': lambda tmp: write(tmp, 't.json', json.dumps(good[:60].tolist())),
        'nan': lambda tmp: write(tmp, 't.json', json.dumps([[float('nan'), 1.0]] + good[1:].tolist())
                                 .replace('NaN', 'NaN')),
        'non_numeric': lambda tmp: write(tmp, 't.json', json.dumps([['a', 'b']] + good[1:].tolist())),
        'far_outside': lambda tmp: write(tmp, 't.json', json.dumps({'size': [R, R],
                                                                    'landmarks': (good * 40).tolist()})),
        'not_json': lambda tmp: write(tmp, 't.json', '{"landmarks": [1, 2'),
    }


@pytest.mark.parametrize('case', sorted(_bad_files()))
def test_malformed_landmark_file(case, tiny_pkl, fan_weights, vgg_weights, face_images, tmp_path):
    path = _bad_files()[case](tmp_path)
    out = tmp_path / 'out'
    code, _, err = invoke(projector.main, base(tiny_pkl, fan_weights, vgg_weights, face_images[0], path, out))
    assert code == 2, err
    assert_one_error_line(err, str(path))
    assert_nothing_written(out)


@pytest.mark.parametrize('extra, needle', [(['--landmarks-frame', '64'], '--landmarks-frame'),
                                           (['--retarget', '--retarget-groups', 'ears'], '--retarget-groups'),
                                           (['--retarget-groups', 'eyes'], '--retarget'),
                                           # options that would do nothing here are refused, not ignored
                                           (['--landmarks-frame', '64,64'], 'landmark file'),
                                           (['--face-index', '1'], '--align'),
                                           (['--detector', 'sfd'], '--align'),
                                           (['--detector-weights', 's3fd.pth', '--face-index', '1'],
                                            '--face-index, --detector-weights only apply with --align'),
                                           (['--seed', '-1'], '--seed'),
                                           (['--seed', str(2 ** 32)], '--seed')])
def test_bad_target_options(extra, needle, tiny_pkl, fan_weights, vgg_weights, face_images, tmp_path):
    out = tmp_path / 'out'
    code, _, err = invoke(projector.main, base(tiny_pkl, fan_weights, vgg_weights, *face_images, out, 1, *extra))
    assert code == 2, err
    assert_one_error_line(err, needle)
    assert_nothing_written(out)


# ----------------------------------------------------------------------------
# --retarget.

def test_retarget_writes_the_used_target(tiny_pkl, fan_weights, vgg_weights, face_images, tmp_path):
    out = tmp_path / 'out'
    code, _, err = invoke(projector.main, base(tiny_pkl, fan_weights, vgg_weights, *face_images, out, 2,
                                               '--retarget', '--retarget-groups', 'lips'))
    assert code == 0, err
    report = read_json(out / 'report.json')
    assert report['target_kind'] == 'image'
    assert report['retarget_groups'] == ['outer_lip', 'inner_lip']
    assert report['settings']['retarget'] is True
    assert np.isfinite(report['jaw_shape_change']) and report['jaw_shape_change'] >= 0
    # (A random FAN's points may lie far outside the frame, so the file is read without the range check.)
    used, frame = landmark_targets.read_landmark_points(out / 'target_landmarks_used.json')
    assert tuple(frame) == (R, R)
    sets = json.loads((out / 'landmarks.json').read_text())
    np.testing.assert_allclose(np.array(sets['landmarks']), used, atol=1e-3)
    # Outside the lips, the used target is the look's own points.
    lips = landmark_targets.group_indices(['outer_lip', 'inner_lip'])
    rest = np.setdiff1d(np.arange(68), lips)
    np.testing.assert_allclose(used[rest], np.array(sets['look'])[rest], atol=1e-3)


def test_retarget_writes_the_used_target_also_without_landmarks_json(tiny_pkl, fan_weights, vgg_weights, face_images,
                                                                    tmp_path):
    """--no-save_landmarks leaves out landmarks.json only: target_landmarks_used.json is what a
    retargeted run aimed at (examples/retarget.sh reads it)."""
    out = tmp_path / 'out'
    code, _, err = invoke(projector.main, base(tiny_pkl, fan_weights, vgg_weights, *face_images, out, 1,
                                               '--retarget', '--no-save_landmarks'))
    assert code == 0, err
    assert (out / 'target_landmarks_used.json').is_file() and not (out / 'landmarks.json').exists()


# ----------------------------------------------------------------------------
# The identity term and score (issue 15).

@pytest.fixture(scope='module')
def identity_runs(tiny_pkl, fan_weights, vgg_weights, facenet_weights, face_images, tmp_path_factory):
    folder = tmp_path_factory.mktemp('identity')
    runs = {}
    for weight in (0, 10):
        out = folder / f'out_{weight}'
        argv = base(tiny_pkl, fan_weights, vgg_weights, *face_images, out, 8, '--id_weight', weight,
                    '--id-weights', facenet_weights)
        code, _, err = invoke(projector.main, argv)
        assert code == 0, err
        runs[weight] = dict(out=out, err=err, report=read_json(out / 'report.json'))
    return runs


def test_identity_term_raises_the_similarity(identity_runs):
    without, with_term = identity_runs[0]['report'], identity_runs[10]['report']
    assert 'identity' not in without['final_losses'] and 'identity' in with_term['final_losses']
    assert -1 <= without['identity_similarity'] <= 1
    assert with_term['identity_similarity'] > without['identity_similarity']
    assert with_term['settings']['id_weight'] == 10
    assert 'identity similarity' in identity_runs[10]['err']


def test_summary_shows_the_similarity(identity_runs):
    """With a score, summary.png has a caption strip under its three panels."""
    with Image.open(identity_runs[10]['out'] / 'summary.png') as img:
        width, height = img.size
    assert width == 3 * R and height > R


def test_no_identity_means_no_score(tiny_pkl, fan_weights, vgg_weights, facenet_weights, face_images, tmp_path):
    out = tmp_path / 'out'
    code, _, err = invoke(projector.main, base(tiny_pkl, fan_weights, vgg_weights, *face_images, out, 1,
                                               '--id-weights', facenet_weights, '--no-identity'))
    assert code == 0, err
    report = read_json(out / 'report.json')
    assert 'identity_similarity' not in report
    with Image.open(out / 'summary.png') as img:
        assert img.size == (3 * R, R)


def test_a_damaged_cached_facenet_costs_the_score_not_the_run(tiny_pkl, fan_weights, vgg_weights, face_images,
                                                               tmp_path, monkeypatch):
    """FaceNet found in the hub cache is loaded for the score alone; a damaged copy (a download cut
    short by hand) warns and the run goes on. With the identity term it is needed, so it fails."""
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path / 'hub'))
    cached = tmp_path / 'hub' / 'checkpoints' / '20180402-114759-vggface2.pt'
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b'not a checkpoint')
    out = tmp_path / 'out'
    code, _, err = invoke(projector.main, base(tiny_pkl, fan_weights, vgg_weights, *face_images, out, 1))
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith('warning: no identity score: ')]
    assert len(warnings) == 1 and str(cached) in warnings[0], err
    assert 'identity_similarity' not in read_json(out / 'report.json')
    code, _, err = invoke(projector.main, base(tiny_pkl, fan_weights, vgg_weights, *face_images, tmp_path / 'out2',
                                               1, '--id_weight', 1))
    assert code == 2, err
    assert_one_error_line(err, str(cached))


def test_wrong_identity_weights(tiny_pkl, fan_weights, vgg_weights, face_images, tmp_path):
    out = tmp_path / 'out'
    code, _, err = invoke(projector.main, base(tiny_pkl, fan_weights, vgg_weights, *face_images, out, 1,
                                               '--id_weight', 1, '--id-weights', fan_weights))
    assert code == 2, err
    assert_one_error_line(err, '--id-weights')
    assert_nothing_written(out)


def test_missing_network_and_a_set_name_on_a_one_set_file(tiny_pkl, fan_weights, vgg_weights, face_images, tmp_path):
    out = tmp_path / 'out'
    argv = base(tmp_path / 'nope.pkl', fan_weights, vgg_weights, *face_images, out)
    code, _, err = invoke(projector.main, argv)
    assert code == 2
    assert_one_error_line(err, '--network', 'file not found', 'nope.pkl')
    points = tmp_path / 'points.npy'
    np.save(points, landmark_targets.mean_face(20, 20))
    code, _, err = invoke(projector.main, base(tiny_pkl, fan_weights, vgg_weights, face_images[0],
                                               f'{points}#look', out))
    assert code == 2
    assert_one_error_line(err, 'points.npy#look', 'one set of points')
    assert_nothing_written(out)
