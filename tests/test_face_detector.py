"""The S3FD face detector behind --align: loading, offline errors, and how its boxes are used.

The detector gets the random weights of the ``detector_weights`` fixture (nothing is downloaded);
what it "finds" with them is meaningless, so the tests that need faces use stub detectors.
"""

import numpy as np
import pytest

import face_landmarks
from conftest import one_line_message
from dnnlib.util import UserError
from face_landmarks import Detection, FaceLandmarks
from landmark_loss import FaceBox, load_fan

pytestmark = pytest.mark.usefixtures('one_thread')


def test_s3fd_returns_scored_boxes(detector_weights):
    detect = face_landmarks.load_s3fd(detector_weights)
    image = (np.random.RandomState(0).rand(120, 160, 3) * 255).astype(np.uint8)
    boxes = detect(image)
    for row in boxes:  # random weights may or may not "find" faces
        assert len(row) == 5 and np.isfinite(row).all()
    found = face_landmarks.as_detections(boxes, (160, 120))
    assert all(isinstance(d, Detection) for d in found)
    assert [d.area for d in found] == sorted((d.area for d in found), reverse=True)
    for d in found:  # kept: centres on the image
        assert 0 <= (d.x0 + d.x1) / 2 <= 160 and 0 <= (d.y0 + d.y1) / 2 <= 120


def test_detector_missing_and_wrong_files(tmp_path, fan_weights):
    with pytest.raises(UserError) as excinfo:
        face_landmarks.load_s3fd(str(tmp_path / 'missing.pth'))
    assert '--detector-weights' in one_line_message(excinfo)
    with pytest.raises(UserError) as excinfo:
        face_landmarks.load_s3fd(fan_weights)  # a state dict, but not S3FD's
    assert '--detector-weights' in one_line_message(excinfo)
    with pytest.raises(UserError) as excinfo:
        FaceLandmarks.load(fan_weights, detector='sfd', detector_weights=str(tmp_path / 'missing.pth'))
    assert '--detector-weights' in one_line_message(excinfo)


def test_face_landmarks_load(fan_weights, detector_weights):
    faces = FaceLandmarks.load(fan_weights, detector='none')
    assert faces.detector is None and faces.fan.stacks == 1
    faces = FaceLandmarks.load(fan_weights, detector='sfd', detector_weights=detector_weights)
    assert callable(faces.detector)
    shared = FaceLandmarks.load(fan=faces.fan, detector=None)
    assert shared.fan is faces.fan and shared.detector is None
    with pytest.raises(UserError):
        FaceLandmarks.load(fan_weights, detector='mtcnn')


def test_landmarks_start_from_the_detector_box(fan_weights):
    fan = load_fan(fan_weights)
    image = (np.random.RandomState(1).rand(100, 100, 3) * 255).astype(np.uint8)
    seen = []

    def detector(img):
        seen.append(img.shape)
        return [(20.0, 30.0, 70.0, 90.0, 0.9)]

    points, box = FaceLandmarks(fan, detector).landmarks(image)
    assert seen == [(100, 100, 3)]
    assert points.shape == (68, 2) and np.isfinite(points).all()
    # FAN read the detector's box, framed by face_alignment's rule, once.
    assert box == Detection(20, 30, 70, 90).fan_box()
    direct, _ = FaceLandmarks(fan).landmarks(image, Detection(20, 30, 70, 90).fan_box())
    np.testing.assert_allclose(points, direct)
    # Without a detector the search starts from the centred square.
    points_centre, _ = FaceLandmarks(fan).landmarks(image, refinements=0)
    centre, _ = FaceLandmarks(fan).landmarks(image, FaceBox(50.0, 50.0, 100.0), refinements=0)
    np.testing.assert_allclose(points_centre, centre)
