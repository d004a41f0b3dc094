"""The Python API's inputs: images as the API takes them, and a clear ValueError (not an assertion
deep inside) for what it does not take."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import optimization as opt
from conftest import render
from face_landmarks import FaceLandmarks
from projector import LandmarkProjector, prepare_image
from target_input import load_target

pytestmark = pytest.mark.usefixtures('one_thread')
R = 32


@pytest.fixture(scope='module')
def face(tiny_G):
    return render(tiny_G, 1)


def test_prepare_image_takes_arrays_and_pil_images(face):
    big = np.asarray(Image.fromarray(face).resize((80, 64)))
    assert prepare_image(big, R).shape == (R, R, 3)
    from_pil = prepare_image(Image.fromarray(big).convert('RGBA'), R)
    np.testing.assert_array_equal(from_pil, prepare_image(big, R))


@pytest.mark.parametrize('bad, needle', [
    (np.zeros([40, 40, 3], np.float32), 'float32 [40, 40, 3]'),
    (np.zeros([3, 40, 40], np.uint8), 'uint8 [3, 40, 40]'),
    (np.zeros([40, 40], np.uint8), 'uint8 [40, 40]'),
    (torch.zeros([40, 40, 3], dtype=torch.uint8), 'got a torch.Tensor'),
])
def test_prepare_image_says_what_it_got(bad, needle):
    with pytest.raises(ValueError) as info:
        prepare_image(bad, R)
    assert needle in str(info.value) and 'image_io.load_image' in str(info.value)


def test_projector_refuses_a_look_or_target_of_another_size(nets, face):
    with pytest.raises(ValueError, match=r'look: expected 32x32 .* got 16x16'):
        LandmarkProjector(nets, face[:16, :16], face)
    with pytest.raises(ValueError, match=r'target: expected 32x32'):
        LandmarkProjector(nets, face, face[:16, :16])


def test_a_target_read_for_another_resolution_is_refused(nets, face, tmp_path):
    import landmark_targets
    path = tmp_path / 'points.json'
    landmark_targets.write_landmark_file(path, landmark_targets.mean_face(64, 64), (64, 64))
    faces = FaceLandmarks(nets.fan)
    with pytest.raises(ValueError, match=r'look: expected 64x64'):
        load_target(str(path), faces, face, 64)
    target = load_target(str(path), faces, prepare_image(face, 64), 64)
    with pytest.raises(ValueError, match=r'read for 64x64, the generator makes 32x32'):
        LandmarkProjector(nets, face, target)


def test_run_batch_needs_one_seed_per_projector(nets, face, tiny_G):
    projectors = [LandmarkProjector(nets, face, render(tiny_G, 2)) for _ in range(2)]
    with pytest.raises(ValueError, match='1 seeds for 2 projectors'):
        LandmarkProjector.run_batch(projectors, opt.ProjectionSettings(num_steps=1), seeds=[1])
