"""The S3FD face detector behind --align: loading, offline errors, and how its box is used."""

import numpy as np
import pytest

import face_align
import projector
from cli_helpers import assert_nothing_written, assert_one_error_line, invoke
from conftest import one_line_message
from dnnlib.util import UserError
from landmark_loss import FaceBox, load_fan


def test_detector_returns_a_box_inside_the_image(detector_weights):
    detect = face_align.load_detector(detector_weights)
    image = (np.random.RandomState(0).rand(120, 160, 3) * 255).astype(np.uint8)
    box = detect(image)
    if box is not None:  # random weights may or may not "find" a face
        assert 0 <= box.cx <= 160 and 0 <= box.cy <= 120
        assert 120 / 4 <= box.size <= 2 * 120


def test_detector_missing_and_wrong_files(tmp_path, fan_weights):
    with pytest.raises(UserError) as excinfo:
        face_align.load_detector(str(tmp_path / 'missing.pth'))
    assert '--detector-weights' in one_line_message(excinfo)
    with pytest.raises(UserError) as excinfo:
        face_align.load_detector(fan_weights)  # a state dict, but not S3FD's
    assert '--detector-weights' in one_line_message(excinfo)


def test_detect_landmarks_starts_from_the_detector_box(fan_weights):
    fan = load_fan(fan_weights)
    image = (np.random.RandomState(1).rand(100, 100, 3) * 255).astype(np.uint8)
    seen = []

    def detector(img):
        seen.append(img.shape)
        return FaceBox(40.0, 45.0, 60.0)

    points, box = face_align.detect_landmarks(fan, image, detector=detector, refinements=0)
    assert seen == [(100, 100, 3)]
    assert points.shape == (68, 2) and np.isfinite(points).all()
    # Without a detector (or when it finds nothing) the search starts from the centred square.
    points_none, _ = face_align.detect_landmarks(fan, image, detector=lambda img: None, refinements=0)
    points_centre, _ = face_align.detect_landmarks(fan, image, refinements=0)
    np.testing.assert_allclose(points_none, points_centre)


def test_detector_used_only_on_the_first_video_frame(fan_weights):
    fan = load_fan(fan_weights)
    frames = [(np.random.RandomState(i).rand(64, 64, 3) * 255).astype(np.uint8) for i in range(3)]
    calls = []
    out = face_align.align_sequence(fan, frames, 32, sigma=1.0,
                                    detector=lambda img: calls.append(1) or FaceBox(32.0, 32.0, 48.0))
    assert len(calls) == 1 and len(out) == 3 and out[0].shape == (32, 32, 3)


def test_projector_align_with_detector_options(tiny_pkl, fan_weights, vgg_weights, detector_weights, face_images,
                                               tmp_path):
    look, target = face_images
    base = ['--network', tiny_pkl, '--device', 'cpu', '--fan-weights', fan_weights, '--vgg-weights', vgg_weights,
            '--target_look', look, '--target_landmarks', target, '--num-steps', 1, '--align']
    code, _, err = invoke(projector.main, base + ['--detector-weights', detector_weights, '--outdir', tmp_path / 'a'])
    assert code == 0, err
    code, _, err = invoke(projector.main, base + ['--detector', 'none', '--outdir', tmp_path / 'b'])
    assert code == 0, err
    code, _, err = invoke(projector.main, base + ['--detector-weights', tmp_path / 'missing.pth',
                                                  '--outdir', tmp_path / 'c'])
    assert code == 2
    assert_one_error_line(err, '--detector-weights')
    assert_nothing_written(tmp_path / 'c')
