"""target_input: --target_landmarks as an image or a coordinate file, and --retarget (issue 11)."""

import json

import numpy as np
import pytest
import torch

import image_io
import landmark_targets
from face_landmarks import FaceLandmarks
from landmark_loss import LandmarkLoss, load_fan
from target_input import load_target

pytestmark = pytest.mark.usefixtures('one_thread')
R = 32


class _PlausibleFaces(FaceLandmarks):
    """A random-weight FAN finds no real face: its 'detected' points are a plausible mean face,
    so retargeting and file round trips work on sensible geometry; the heat-map loss still runs FAN."""

    def landmarks(self, image, box=None, refinements=None, face_index=0, source='the image'):
        h, w = np.asarray(image).shape[:2]
        return landmark_targets.mean_face(w * 0.6, h * 0.6) + np.array([w * 0.2, h * 0.2]), None


@pytest.fixture(scope='module')
def faces(fan_weights):
    return _PlausibleFaces(load_fan(fan_weights, 'cpu').eval().requires_grad_(False))


@pytest.fixture(scope='module')
def look(face_images):
    return image_io.centre_crop_resize(image_io.load_image(face_images[0]), R)


def _similar(points, angle=10.0, scale=1.1, shift=(1.5, -1.0)):
    a = np.radians(angle)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    centre = points.mean(axis=0)
    return (points - centre) @ rot.T * scale + centre + np.array(shift)


def test_image_target_is_fan_heatmaps_of_the_image(faces, look, face_images):
    target = load_target(face_images[1], faces, look, R)
    assert target.kind == 'image' and target.image.shape == (R, R, 3)
    loss = target.loss(faces)
    reference = LandmarkLoss(faces, image_io.to_tensor(target.image, 'cpu'))
    assert torch.allclose(loss.target_heatmaps, reference.target_heatmaps)
    np.testing.assert_allclose(target.used, target.points)


def test_image_target_points_are_the_losses_target(fan_weights, look, face_images):
    """landmarks.json, summary.png and landmark_error_to_used_target show the points the heat-map loss
    aims at: FAN read in the loss's own box, so both landmark errors of a report agree."""
    from landmark_loss import landmark_error
    plain = FaceLandmarks(load_fan(fan_weights, 'cpu').eval().requires_grad_(False))
    target = load_target(face_images[1], plain, look, R)
    loss = target.loss(plain)
    assert loss.box == target.box == plain.face_box(image_io.to_tensor(target.image, 'cpu'))
    np.testing.assert_array_equal(target.used, loss.target_landmarks[0].numpy())
    projection = target.used + np.linspace(-1.0, 1.0, 136).reshape(68, 2)
    measured = float(landmark_error(torch.as_tensor(projection, dtype=torch.float32)[None], loss.target_landmarks)[0])
    assert target.report(projection)['landmark_error_to_used_target'] == pytest.approx(measured, rel=1e-6)


def test_json_target_is_rendered_from_the_points(faces, look, tmp_path):
    points = faces.landmarks(look)[0]
    path = tmp_path / 'look.json'
    landmark_targets.write_landmark_file(path, points, R)
    target = load_target(str(path), faces, look, R)
    assert target.kind == 'points' and target.image is None
    np.testing.assert_allclose(target.used, points, atol=1e-3)
    loss = target.loss(faces)
    # The error is measured against the given points; the rendered maps peak at them.
    np.testing.assert_allclose(loss.target_landmarks[0].cpu().numpy(), points, atol=1e-3)
    error, read = loss.measure(image_io.to_tensor(look, 'cpu'))
    assert np.isfinite(error) and read.shape == (68, 2)
    assert target.panel().shape == (R, R, 3)


def test_retarget_undoes_a_similarity_of_the_looks_points(faces, look, tmp_path):
    points = faces.landmarks(look)[0]
    path = tmp_path / 'moved.json'
    landmark_targets.write_landmark_file(path, _similar(points), R)
    target = load_target(str(path), faces, look, R, retarget_groups='eyebrows,eyes,outer_lip,inner_lip')
    np.testing.assert_allclose(target.used, points, atol=0.02)
    report = target.report(points)
    assert report['jaw_shape_change'] == pytest.approx(0.0, abs=1e-9)
    assert report['landmark_error_to_used_target'] < 0.01


def test_saved_landmarks_round_trip(faces, look, face_images, tmp_path):
    target = load_target(face_images[1], faces, look, R, retarget_groups='lips')
    proj = target.used + 0.25
    target.save(tmp_path, proj)
    data = json.loads((tmp_path / 'landmarks.json').read_text())
    assert set(data) >= {'size', 'landmarks', 'look', 'target', 'projection'}
    back = landmark_targets.read_landmark_file(str(tmp_path / 'landmarks.json') + '#projection', resolution=R)
    np.testing.assert_allclose(back, proj, atol=1e-3)
    used = landmark_targets.read_landmark_file(str(tmp_path / 'target_landmarks_used.json'), resolution=R)
    np.testing.assert_allclose(used, target.used, atol=1e-3)
