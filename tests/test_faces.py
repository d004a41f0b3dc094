"""Faces: the FAN crop box rule, choosing among detected faces, and what --align does with them.

Stub detectors (plain functions returning boxes) stand in for S3FD, so the tests choose how many
faces a photo has; FAN gets the random weights of ``conftest.py``. Nothing is downloaded.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import face_align
import face_landmarks
import image_io
import landmark_loss as ll
from conftest import one_line_message, render
from dnnlib.util import UserError
from face_landmarks import Detection, FaceLandmarks

pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def fan(fan_weights):
    return ll.load_fan(fan_weights)


def smooth_image(h=300, w=400) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w].astype(np.float64)
    img = np.stack([127 + 100 * np.sin(xx / 23), 127 + 100 * np.cos(yy / 17), 127 + 80 * np.sin((xx + yy) / 31)], -1)
    return np.uint8(np.rint(img))


# ----------------------------------------------------------------------------
# The FAN crop box: face_alignment's rule from the detector's box.

def test_fan_box_numbers():
    box = Detection(100.0, 50.0, 200.0, 180.0).fan_box()   # w = 100, h = 130
    scale = (100 + 130) / 195
    assert box.size == pytest.approx(200 * scale)
    assert box.cx == pytest.approx(150.0)
    assert box.cy == pytest.approx(115.0 - 0.12 * 130)


@pytest.mark.parametrize('det', [Detection(120, 60, 240, 210), Detection(50.5, 40.2, 130.7, 150.1)])
def test_fan_box_crops_what_face_alignment_crops(det):
    """Our differentiable crop of the detector box shows what face_alignment's own crop shows."""
    from face_alignment.utils import crop
    img = smooth_image()
    centre = np.array([(det.x0 + det.x1) / 2, (det.y0 + det.y1) / 2 - 0.12 * det.height])
    theirs = crop(img, centre, (det.width + det.height) / 195).astype(np.float64)
    ours = ll.crop_faces(image_io.to_tensor(img), det.fan_box())[0].permute(1, 2, 0).numpy() * 255
    assert theirs.shape == ours.shape == (256, 256, 3)
    assert np.abs(theirs - ours)[8:-8, 8:-8].mean() < 3.5  # integer rounding of their crop corners
    # The rule matters: without the 12% shift, or framed by the box itself, the crops differ a lot.
    unshifted = ll.FaceBox(det.fan_box().cx, (det.y0 + det.y1) / 2, det.fan_box().size)
    tight = ll.FaceBox(det.fan_box().cx, det.fan_box().cy, max(det.width, det.height))
    for wrong in (unshifted, tight):
        other = ll.crop_faces(image_io.to_tensor(img), wrong)[0].permute(1, 2, 0).numpy() * 255
        assert np.abs(theirs - other)[8:-8, 8:-8].mean() > 10


def test_as_detections_filters_and_orders():
    rows = [(0, 0, 10, 10, 0.9), (5, 5, 45, 35, 0.8), (np.nan, 0, 3, 3, 1.0), (10, 10, 10, 20, 1.0),
            Detection(20, 20, 50, 50), (500, 500, 600, 600, 0.99)]
    found = face_landmarks.as_detections(rows, (100, 100))
    assert [(d.x0, d.y0, d.x1, d.y1) for d in found] == [(5, 5, 45, 35), (20, 20, 50, 50), (0, 0, 10, 10)]
    assert found[0].score == pytest.approx(0.8) and found[1].score == 1.0
    assert len(face_landmarks.as_detections(rows)) == 4  # no image size: the far box stays
    assert face_landmarks.as_detections(None) == []


# ----------------------------------------------------------------------------
# Choosing a face.

def three_faces(img):
    """A stub detector: three faces, not in size order (sides 40, 70, 20)."""
    return [(10, 10, 50, 50, 0.9), (100, 60, 170, 130, 0.95), (200, 20, 220, 40, 0.99)]


def test_find_face_largest_first_and_face_index(fan):
    img = smooth_image()
    faces = FaceLandmarks(fan, three_faces)
    choice = faces.find_face(img, source='photo.jpg')
    assert len(choice.detections) == 3 and choice.index == 0
    assert (choice.detection.x0, choice.detection.x1) == (100, 170)
    assert choice.box == choice.detection.fan_box()
    report = choice.as_dict()
    assert report['faces_found'] == 3 and report['face_index'] == 0
    assert report['detection'] == dict(x0=100, y0=60, x1=170, y1=130, score=pytest.approx(0.95))
    assert faces.find_face(img, 1).detection.x0 == 10
    assert faces.find_face(img, 2).detection.x0 == 200
    with pytest.raises(UserError) as excinfo:
        faces.find_face(img, 3, source='photo.jpg')
    msg = one_line_message(excinfo)
    assert '--face-index' in msg and '3 faces' in msg and 'photo.jpg' in msg


def test_no_face_is_an_error_naming_the_file(fan):
    faces = FaceLandmarks(fan, lambda img: [])
    with pytest.raises(UserError) as excinfo:
        faces.find_face(smooth_image(), source='holiday.jpg')
    assert one_line_message(excinfo) == 'no face found in holiday.jpg'
    with pytest.raises(UserError, match='no face found in holiday.jpg'):
        face_align.align_photo(faces, smooth_image(), 32, source='holiday.jpg')


def test_without_a_detector_the_search_starts_in_the_centre(fan):
    choice = FaceLandmarks(fan).find_face(smooth_image(100, 160))
    assert choice.index is None and choice.detections == []
    assert choice.box == ll.FaceBox(80.0, 50.0, 100.0)
    assert choice.as_dict()['faces_found'] is None


class CountingFan(torch.nn.Module):
    def __init__(self, fan):
        super().__init__()
        self.fan, self.calls = fan, 0

    def forward(self, x):
        self.calls += x.shape[0]
        return self.fan(x)


def test_landmarks_read_the_detector_box_once(fan):
    img = smooth_image()
    counting = CountingFan(fan)
    points, box = FaceLandmarks(counting, three_faces).landmarks(img)
    assert counting.calls == 1                                   # face_alignment reads a detection once
    assert box == Detection(100, 60, 170, 130).fan_box()
    assert points.shape == (68, 2) and np.isfinite(points).all()
    counting.calls = 0
    FaceLandmarks(counting).landmarks(img)                       # no detector: centre, refitted twice
    assert counting.calls == 3


def test_face_box_for_the_loss(fan, tiny_G):
    target = image_io.to_tensor(render(tiny_G, 2))
    counting = CountingFan(fan)
    with_detector = FaceLandmarks(counting, lambda img: [(4, 6, 28, 30, 0.9), (0, 0, 8, 8, 0.9)])
    assert with_detector.face_box(target) == Detection(4, 6, 28, 30).fan_box()
    assert counting.calls == 0                                   # the detector's box: no FAN pass
    fallback = FaceLandmarks(counting).face_box(target)
    assert counting.calls == 1 and isinstance(fallback, ll.FaceBox)
    # LandmarkLoss takes its box from the FaceLandmarks object.
    loss = with_detector.loss(target)
    assert loss.box == Detection(4, 6, 28, 30).fan_box()


# ----------------------------------------------------------------------------
# One loss, several targets (the joint video schedule).

def test_landmark_loss_with_one_target_per_frame(fan, tiny_G):
    targets = torch.cat([image_io.to_tensor(render(tiny_G, s)) for s in (2, 3, 4)])
    boxes = [ll.FaceBox(16.0, 15.0, 30.0), ll.FaceBox(17.0, 16.0, 28.0), ll.FaceBox(15.0, 17.0, 32.0)]
    loss = ll.LandmarkLoss(fan, targets, boxes=boxes)
    assert loss.num_targets == 3 and loss.boxes == boxes
    assert loss.target_heatmaps.shape == (3, 68, 64, 64) and loss.target_landmarks.shape == (3, 68, 2)
    singles = [ll.LandmarkLoss(fan, targets[i:i + 1], box=boxes[i]) for i in range(3)]
    for i in range(3):
        torch.testing.assert_close(loss.target_heatmaps[i], singles[i].target_heatmaps[0])
    images = torch.cat([image_io.to_tensor(render(tiny_G, s)) for s in (7, 8)])
    got = loss(images, torch.tensor([2, 0]))
    assert got.shape == (2,)
    torch.testing.assert_close(got, torch.cat([singles[2](images[:1]), singles[0](images[1:])]), rtol=1e-5, atol=1e-6)
    assert loss.error().shape == (2,) and loss.landmarks().shape == (2, 68, 2)
    # Each target against itself: zero.
    assert float(loss(targets).abs().max()) < 1e-4
    assert loss.measure(targets[1:2], 1)[0] == pytest.approx(0.0, abs=1e-6)
    # Targets given one at a time (a video read as a stream) give the same loss.
    streamed = ll.LandmarkLoss(fan, (targets[i:i + 1] for i in range(3)), boxes=boxes)
    torch.testing.assert_close(streamed.target_heatmaps, loss.target_heatmaps)
    with pytest.raises(ValueError):
        loss(images)  # two images, three targets, no index


# ----------------------------------------------------------------------------
# Aligning photos and videos.

def test_align_photo_reports_the_face_and_warns_when_small(fan):
    img = smooth_image()
    aligned = face_align.align_photo(FaceLandmarks(fan, three_faces), img, 320, source='group.jpg')
    assert aligned.image.shape == (320, 320, 3)
    assert aligned.face_size == 70
    assert aligned.warning is not None and 'group.jpg' in aligned.warning and 'blurry' in aligned.warning
    report = aligned.report()
    assert report['faces_found'] == 3 and report['face_index'] == 0 and report['face_size'] == 70
    # 70 px is under a quarter of 320 px, but not of 280 px.
    assert face_align.align_photo(FaceLandmarks(fan, three_faces), img, 280).warning is None
    # The older call form still works (a FAN module and a detector) and prints the warning.
    seen = []
    out = face_align.align_face(fan, img, 200, three_faces, face_index=1, warn=seen.append)
    assert out.shape == (200, 200, 3) and len(seen) == 1 and '40 px' in seen[0]


def test_video_alignment_streams_twice_and_detects_once(fan):
    frames = [smooth_image(80, 96) for _ in range(3)]
    opened, calls = [], []

    def source():
        opened.append(1)
        return iter(frames)

    def detector(img):
        calls.append(img.shape)
        return [(20, 10, 70, 66, 0.9), (0, 0, 12, 12, 0.8)]

    alignment = face_align.VideoAlignment(FaceLandmarks(fan, detector), source, 32, sigma=1.0, source='clip.mp4')
    assert len(calls) == 1 and len(opened) == 1
    out = list(alignment)
    assert len(opened) == 2 and len(out) == 3 and out[0].shape == (32, 32, 3)
    report = alignment.report()
    assert report['faces_found'] == 2 and report['detection']['x1'] == 70 and report['warning'] is None
    assert face_align.align_sequence(fan, frames, 32, detector=detector)[0].shape == (32, 32, 3)
    with pytest.raises(UserError, match='no face found in clip.mp4'):
        face_align.VideoAlignment(FaceLandmarks(fan, lambda img: []), frames, 32, source='clip.mp4')


def test_remembered_landmarks_are_read_once_per_image_and_equal_a_new_reading(fan):
    calls = []
    handle = fan.register_forward_hook(lambda *_: calls.append(1))
    try:
        img, other = smooth_image(64, 64), smooth_image(64, 64)[::-1].copy()
        box = ll.FaceBox.full(64)
        fresh = FaceLandmarks(fan).landmarks(img, box, refinements=2)[0]
        faces = FaceLandmarks(fan)
        faces.remember_landmarks(max_images=1)
        calls.clear()
        first, box1 = faces.landmarks(img, box, refinements=2)
        assert len(calls) == 3
        first[:] = 0  # the caller owns what it gets: the remembered points stay as they were
        again, box2 = faces.landmarks(img.copy(), box, refinements=2)
        assert len(calls) == 3 and box2 == box1
        np.testing.assert_array_equal(again, fresh)
        faces.landmarks(img, box, refinements=0)  # another reading of the same image is its own entry
        assert len(calls) == 4
        faces.landmarks(other, box, refinements=0)  # max_images=1: this one pushes the earlier ones out
        faces.landmarks(img, box, refinements=2)
        assert len(calls) == 8
        # Tensors are never remembered (they may be views that change).
        x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 127.5 - 1
        faces.landmarks(x, box, refinements=0)
        faces.landmarks(x, box, refinements=0)
        assert len(calls) == 10
    finally:
        handle.remove()
