"""``projector_video.py --retarget`` (issue 11 §2): every frame aims at the look's own landmarks
plus the driver's aligned change since driving frame 0, in both schedules.

Tiny 32x32 generator with random FAN / VGG16 files (``conftest.py``). A random FAN finds no real
face, so where the geometry matters ``FaceLandmarks.landmarks`` is replaced by a table of chosen
points per image (``ChosenPoints``): the look's points, and driving points that are the look's
moved by a known similarity, with the mouth opened, the eyebrows raised or the jaw widened. The
heat-map loss still runs the random FAN on the synthesized images.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

import face_landmarks
import image_io
import landmark_targets
import projector_video
from cli_helpers import assert_one_error_line, invoke, read_json, read_npz
from conftest import render
from landmark_loss import LANDMARK_GROUPS
from projector_video import AnimationSettings, RetargetTargets

pytestmark = pytest.mark.usefixtures('one_thread')

R = 32
STEPS = ['--num-steps-first', 2, '--num-steps', 2]
SCALE, ANGLE, SHIFT = 1.2, 8.0, np.array([1.0, -0.5])   # driving frame 0: the look's points moved so
MOUTH = list(range(LANDMARK_GROUPS['outer_lip'][0], LANDMARK_GROUPS['inner_lip'][1] + 1))
BROWS = list(range(LANDMARK_GROUPS['left_eyebrow'][0], LANDMARK_GROUPS['right_eyebrow'][1] + 1))
JAW = list(range(LANDMARK_GROUPS['jaw'][0], LANDMARK_GROUPS['jaw'][1] + 1))


def _digest(image) -> str:
    return hashlib.sha256(np.ascontiguousarray(np.asarray(image, dtype=np.uint8)).tobytes()).hexdigest()


def _rotation(degrees: float) -> np.ndarray:
    a = np.radians(degrees)
    return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])


def _moved(points, scale=SCALE, angle=ANGLE, shift=SHIFT):
    centre = np.array([R / 2, R / 2])
    return (points - centre) @ _rotation(angle).T * scale + centre + shift


class ChosenPoints:
    """``FaceLandmarks.landmarks`` answering chosen points ``[68, 2]`` for registered images
    (by content); any other image goes to the real method (the random FAN)."""

    def __init__(self, monkeypatch):
        self.table = {}
        real = face_landmarks.FaceLandmarks.landmarks
        table = self.table

        def landmarks(faces, image, box=None, refinements=None, face_index=0, source='the image'):
            key = _digest(face_landmarks._to_uint8(image))  # the frame as FAN's caller gives it
            if key in table:
                return table[key].copy(), box
            return real(faces, image, box, refinements, face_index, source)

        monkeypatch.setattr(face_landmarks.FaceLandmarks, 'landmarks', landmarks)

    def add(self, image, points):
        self.table[_digest(image)] = np.asarray(points, dtype=np.float64)


@pytest.fixture(scope='module')
def scene(tiny_G, tmp_path_factory):
    """The look, three driving frames and their chosen points (in 32x32 generator pixels)."""
    root = tmp_path_factory.mktemp('retarget_inputs')
    look_img = render(tiny_G, 1)
    frames = [render(tiny_G, seed) for seed in (21, 22, 23)]
    look_points = landmark_targets.mean_face(0.6 * R, 0.6 * R) + 0.2 * R
    d0 = _moved(look_points)
    d1 = d0.copy()
    d1[MOUTH[6:12] + MOUTH[16:20]] += [0.0, 1.5]               # the lower lip drops: the mouth opens
    d2 = d0.copy()
    d2[BROWS] += [0.0, -1.0]                                    # the eyebrows rise ...
    d2[JAW] += (d2[JAW] - d2[JAW].mean(axis=0)) * 0.1           # ... and the driver's jaw is wider (not taken)
    look = root / 'look.png'
    image_io.save_png(look, look_img)
    folder = root / 'frames'
    folder.mkdir()
    for i, frame in enumerate(frames):
        image_io.save_png(folder / f'{i}.png', frame)
    same = root / 'same'
    same.mkdir()
    unregistered = render(tiny_G, 24)  # read by the real (random) FAN
    for i in range(2):
        image_io.save_png(same / f'{i}.png', unregistered)
    return dict(look=look, look_img=look_img, folder=folder, same=same, frames=frames,
                look_points=look_points, driving=[d0, d1, d2])


@pytest.fixture(scope='module')
def chosen(scene):
    with pytest.MonkeyPatch.context() as mp:
        points = ChosenPoints(mp)
        points.add(scene['look_img'], scene['look_points'])
        for frame, p in zip(scene['frames'], scene['driving']):
            points.add(frame, p)
        yield points


@pytest.fixture(scope='module')
def base(tiny_pkl, fan_weights, vgg_weights, scene):
    return ['--network', tiny_pkl, '--device', 'cpu', '--fan-weights', fan_weights, '--vgg-weights', vgg_weights,
            '--target_look', scene['look'], '--no-align', '--subframes', 0] + STEPS


def expected_used(scene) -> np.ndarray:
    """``[T, 68, 2]``: the look's points; the mouth and eyebrows moved by the driver's change from
    frame 0 with the driver's similarity undone (``/ SCALE``, rotated by ``-ANGLE``)."""
    look = scene['look_points']
    undo = _rotation(-ANGLE) / SCALE
    moved = [i for g in landmark_targets.DEFAULT_RETARGET_GROUPS
             for i in range(LANDMARK_GROUPS[g][0], LANDMARK_GROUPS[g][1] + 1)]
    out = []
    for d in scene['driving']:
        used = look.copy()
        used[moved] += (d - scene['driving'][0])[moved] @ undo.T
        out.append(used)
    return np.stack(out)


def _run(base, folder, outdir, *extra):
    code, _, err = invoke(projector_video.main, base + ['--target_landmarks_folder', folder, '--outdir', outdir,
                                                        '--retarget', *extra])
    assert code == 0, err
    return read_json(outdir / 'report.json')


@pytest.fixture(scope='module')
def sequential(chosen, base, scene, tmp_path_factory):
    out = tmp_path_factory.mktemp('retarget_seq') / 'anim'
    return out, _run(base, scene['folder'], out)


@pytest.fixture(scope='module')
def joint(chosen, base, scene, tmp_path_factory):
    out = tmp_path_factory.mktemp('retarget_joint') / 'anim'
    return out, _run(base, scene['folder'], out, '--schedule', 'joint', '--batch-size', 2)


# ----------------------------------------------------------------------------
# End to end, both schedules.

@pytest.mark.parametrize('which', ['sequential', 'joint'])
def test_used_targets_are_the_looks_points_plus_the_aligned_change(which, request, scene):
    out, report = request.getfixturevalue(which)
    expected = expected_used(scene)
    np.testing.assert_allclose(expected[0], scene['look_points'])
    # The driver's wider jaw stays out (jaw is not retargeted), the open mouth and raised brows come through.
    np.testing.assert_allclose(expected[2][JAW], scene['look_points'][JAW])
    assert np.abs(expected[1][MOUTH] - scene['look_points'][MOUTH]).max() > 1.0
    # target_landmarks_used.json: every frame's used points, each readable as --target_landmarks.
    path = out / projector_video.RETARGET_FILE
    for i in range(3):
        used = landmark_targets.read_landmark_file(f'{path}#frame_{i:05d}', resolution=R)
        np.testing.assert_allclose(used, expected[i], atol=2e-3)
        driving = landmark_targets.read_landmark_file(f'{path}#driving_{i:05d}', resolution=R)
        np.testing.assert_allclose(driving, scene['driving'][i], atol=2e-3)
    np.testing.assert_allclose(landmark_targets.read_landmark_file(str(path), resolution=R), scene['look_points'],
                               atol=2e-3)
    # The loss aimed at them: each frame's saved target is its used points.
    for i in range(3):
        saved = read_npz(out / 'frames' / f'frame_{i:05d}.npz')['target_landmarks']
        np.testing.assert_allclose(saved, expected[i], atol=1e-4)


@pytest.mark.parametrize('which', ['sequential', 'joint'])
def test_report_gains_the_retarget_entries(which, request, scene):
    out, report = request.getfixturevalue(which)
    assert report['settings']['schedule'] == which
    assert report['settings']['retarget'] is True
    assert report['settings']['retarget_groups'] == list(landmark_targets.DEFAULT_RETARGET_GROUPS)
    frames = report['frames']
    assert len(frames) == 3
    for i, row in enumerate(frames):
        assert np.isfinite(row['landmark_error_to_used_target']) and row['landmark_error_to_used_target'] >= 0
        assert np.isfinite(row['jaw_shape_change']) and row['jaw_shape_change'] >= 0
        # Measured from the frame's saved landmarks against the look's jaw.
        points = read_npz(out / 'frames' / f'frame_{i:05d}.npz')['landmarks']
        assert row['jaw_shape_change'] == pytest.approx(
            landmark_targets.jaw_shape_change(points, scene['look_points']), rel=1e-4, abs=1e-6)
        assert row['landmark_error_to_used_target'] == pytest.approx(row['landmark_error'], rel=1e-4, abs=1e-6)
    assert report['jaw_shape_change_mean'] == pytest.approx(np.mean([f['jaw_shape_change'] for f in frames]))
    assert report['landmark_error_to_used_target_mean'] == pytest.approx(
        np.mean([f['landmark_error_to_used_target'] for f in frames]))
    section = report['retarget']
    assert section['groups'] == list(landmark_targets.DEFAULT_RETARGET_GROUPS)
    assert section['used_targets'] == 'target_landmarks_used.json'
    np.testing.assert_allclose(section['look_landmarks'], scene['look_points'], atol=1e-3)
    # The resume fingerprint holds the retarget settings.
    run = read_json(out / 'state' / 'run.json')
    assert run['retarget'] is True and run['retarget_groups'] == section['groups']
    assert (out / 'side_by_side.mp4').is_file() and (out / 'animation.mp4').is_file()


def test_resume_with_other_groups_is_refused(sequential, chosen, base, scene):
    out, _ = sequential
    code, _, err = invoke(projector_video.main, base + ['--target_landmarks_folder', scene['folder'], '--outdir', out,
                                                        '--retarget', '--retarget-groups', 'mouth'])
    assert code == 2
    assert_one_error_line(err, 'retarget_groups', '--no-resume')


def test_frames_of_one_image_give_the_looks_points(base, scene, tmp_path):
    """The real (random) FAN reads the look and the driving frames: equal frames, no change."""
    out = tmp_path / 'anim'
    report = _run(base, scene['same'], out, '--num-steps-first', 1, '--num-steps', 1)
    retarget = RetargetTargets.load(out / 'state' / 'retarget.npz')
    np.testing.assert_array_equal(retarget.driving[0], retarget.driving[1])
    np.testing.assert_allclose(retarget.used, np.stack([retarget.look] * 2), atol=1e-9)
    np.testing.assert_allclose(report['retarget']['look_landmarks'], retarget.look, atol=1e-3)
    for i in range(2):
        saved = read_npz(out / 'frames' / f'frame_{i:05d}.npz')['target_landmarks']
        np.testing.assert_allclose(saved, retarget.look, atol=1e-4)


# ----------------------------------------------------------------------------
# Settings and errors.

def test_fingerprint_has_the_retarget_settings_only_with_retarget():
    assert not {'retarget', 'retarget_groups'} & set(AnimationSettings().fingerprint())
    fp = AnimationSettings(retarget=True, retarget_groups=('lips', 'eyes')).fingerprint()
    assert fp['retarget'] is True
    assert fp['retarget_groups'] == ['left_eye', 'right_eye', 'outer_lip', 'inner_lip']


@pytest.mark.parametrize('extra, needles', [
    (['--mode', 'free', '--retarget'], ['--retarget', 'identity mode']),
    (['--mode', 'free'], ['--mode free', '--target_look']),            # a look free mode would ignore
    (['--retarget-groups', 'mouth'], ['--retarget-groups', '--retarget']),
    (['--retarget', '--retarget-groups', 'ears'], ['--retarget-groups', 'ears']),
])
def test_bad_retarget_options_end_with_one_line(extra, needles, base, scene, tmp_path):
    out = tmp_path / 'anim'
    code, _, err = invoke(projector_video.main, base + ['--target_landmarks_folder', scene['folder'],
                                                        '--outdir', out] + extra)
    assert code == 2
    assert_one_error_line(err, *needles)
    assert not (out / 'report.json').exists()
