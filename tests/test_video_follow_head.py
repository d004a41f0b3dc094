"""``projector_video.py --follow-head`` (issue 17 §2): on a StyleGAN3 network the output frames turn
and move with the driving head through the synthesis input's transform.

The driving sequence is one frame turned by known angles (and once shifted); a random FAN finds
no real face, so ``FaceLandmarks.landmarks`` answers each source frame with chosen points, turned
and shifted as the frame is (``test_video_retarget.ChosenPoints``). The alignment then cuts every
frame along its quad, and the head's motion must come back as those angles. ``sg3-r-tiny``
(32x32, config R) from ``tests/data``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import face_align
import image_io
import landmark_targets
import legacy
import projector_video
from cli_helpers import assert_one_error_line, invoke, read_json, read_npz
from conftest import render
from face_landmarks import FaceLandmarks
from landmark_loss import load_fan
from loaders import load_networks
from networks.stylegan3 import input_transform_params
from optimization import synthesize
from test_video_retarget import ChosenPoints

pytestmark = pytest.mark.usefixtures('one_thread')

SG3_PKL = str(Path(__file__).parent / 'data' / 'sg3-r-tiny.pkl')
SIZE = 64                                # source frames, pixels
ANGLES = [0.0, 10.0, -15.0, 0.0]         # counterclockwise on screen, as PIL's Image.rotate
SHIFT = 3                                # the last frame: frame 0 moved right by this many pixels
STEPS = ['--num-steps-first', 1, '--num-steps', 1]


def _turn(points, degrees):
    """Points ``[68, 2]`` turned counterclockwise on screen about the frame's centre (as ``Image.rotate``)."""
    a = np.radians(degrees)
    c = np.array([SIZE / 2, SIZE / 2])
    d = points - c
    return c + np.stack([d[:, 0] * np.cos(a) + d[:, 1] * np.sin(a), -d[:, 0] * np.sin(a) + d[:, 1] * np.cos(a)], 1)


@pytest.fixture(scope='module')
def scene(tiny_G, tmp_path_factory):
    root = tmp_path_factory.mktemp('follow_head')
    face = np.asarray(Image.fromarray(render(tiny_G, 5)).resize((SIZE, SIZE), Image.BICUBIC))
    points = landmark_targets.mean_face(0.5 * SIZE, 0.5 * SIZE) + 0.25 * SIZE
    frames, chosen = [], []
    for i, angle in enumerate(ANGLES):
        frame = np.asarray(Image.fromarray(face).rotate(angle, resample=Image.BICUBIC))
        p = _turn(points, angle)
        if i == len(ANGLES) - 1:
            frame, p = np.roll(frame, SHIFT, axis=1), p + [SHIFT, 0]
        frames.append(np.ascontiguousarray(frame))
        chosen.append(p)
    folder = root / 'frames'
    folder.mkdir()
    for i, frame in enumerate(frames):
        image_io.save_png(folder / f'{i}.png', frame)
    look_img = face
    look = root / 'look.png'
    image_io.save_png(look, look_img)
    return dict(folder=folder, frames=frames, points=chosen, look=look, look_img=look_img, look_points=points)


@pytest.fixture(scope='module')
def chosen(scene):
    with pytest.MonkeyPatch.context() as mp:
        table = ChosenPoints(mp)
        for frame, p in zip(scene['frames'], scene['points']):
            table.add(frame, p)
        table.add(scene['look_img'], scene['look_points'])
        yield table


@pytest.fixture(scope='module')
def sg3_G():
    return legacy.load_generator(SG3_PKL)


def _relative_params(G, transforms):
    """``(angle, tx, ty)`` of each ``[3, 3]`` relative to the network's own transform."""
    base = G.synthesis.input.transform.detach().double().cpu().numpy()
    return np.array([input_transform_params(np.linalg.inv(base) @ t) for t in np.asarray(transforms, np.float64)])


def _expected_tx(points0) -> float:
    quad = face_align.ffhq_quad(points0)
    return SHIFT / np.linalg.norm(quad[3] - quad[0])


@pytest.fixture(scope='module')
def api_run(chosen, scene, sg3_G, fan_weights):
    """Free mode, sequential, through ``animate``: the returned frames are the rendered ones."""
    nets = load_networks(SG3_PKL, torch.device('cpu'), fan_weights=fan_weights, need_lpips=False)
    faces = FaceLandmarks(load_fan(fan_weights, 'cpu').eval().requires_grad_(False))
    settings = projector_video.AnimationSettings(mode='free', num_steps_first=1, num_steps=1)
    return projector_video.animate(nets, scene['frames'], settings, faces=faces, align=True, align_smoothing=0.0,
                                   subframes=1, progress=False, follow_head=True)


def test_input_transforms_have_the_driving_angles(api_run, sg3_G, scene):
    report = api_run.report
    rows = report['follow_head']['per_frame']
    assert [r['frame'] for r in rows] == list(range(len(ANGLES)))
    np.testing.assert_allclose([r['angle'] for r in rows], ANGLES, atol=0.05)
    np.testing.assert_allclose([r['scale'] for r in rows], 1.0, atol=1e-3)
    assert rows[-1]['tx'] == pytest.approx(_expected_tx(scene['points'][0]), abs=2e-3)
    assert rows[-1]['ty'] == pytest.approx(0.0, abs=2e-3)
    assert [f['head'] for f in report['frames']] == [{k: r[k] for k in ('angle', 'tx', 'ty', 'scale')} for r in rows]
    assert report['settings']['follow_head'] is True
    # The matrices the frames are rendered with: the network's own transform, moved by those angles.
    transforms = api_run_transforms(api_run, sg3_G)
    params = _relative_params(sg3_G, transforms)
    np.testing.assert_allclose(params[:, 0], ANGLES, atol=0.05)
    np.testing.assert_allclose(transforms[0], sg3_G.synthesis.input.transform.double().numpy(), atol=1e-6)


def api_run_transforms(animation, G):
    """``[T, 3, 3]``: the transforms of the report's per-frame motion on ``G``'s own transform."""
    from head_motion import HeadMotion, input_transforms
    rows = animation.report['follow_head']['per_frame']
    motion = HeadMotion(*(np.array([r[k] for r in rows]) for k in ('angle', 'tx', 'ty', 'scale')))
    return input_transforms(motion, base=G.synthesis.input.transform)


def test_output_frames_are_rendered_with_their_transforms(api_run, sg3_G):
    transforms = api_run_transforms(api_run, sg3_G)
    for i in range(len(ANGLES)):
        with torch.no_grad():
            img = synthesize(sg3_G, torch.from_numpy(api_run.latents[i:i + 1]), None, transforms=transforms[i])
        diff = np.abs(image_io.to_uint8(img[0]).astype(int) - api_run.frames[i].astype(int)).max()
        assert diff <= 1, (i, diff)
    # Turned frames differ from the upright render of the same latent; frame 0 is the upright one.
    with torch.no_grad():
        upright = image_io.to_uint8(synthesize(sg3_G, torch.from_numpy(api_run.latents[1:2]))[0])
        first = image_io.to_uint8(synthesize(sg3_G, torch.from_numpy(api_run.latents[:1]))[0])
    assert np.abs(upright.astype(int) - api_run.frames[1].astype(int)).max() > 10
    assert np.abs(first.astype(int) - api_run.frames[0].astype(int)).max() <= 1


def test_joint_schedule_and_cli_outputs(chosen, scene, sg3_G, fan_weights, vgg_weights, tmp_path):
    """Identity mode, joint schedule, with --retarget, from the command line; then re-rendered without
    the flag (it is no resume setting: the optimization does not depend on it)."""
    out = tmp_path / 'anim'
    args = ['--network', SG3_PKL, '--device', 'cpu', '--fan-weights', fan_weights, '--vgg-weights', vgg_weights,
            '--target_look', scene['look'], '--target_landmarks_folder', scene['folder'], '--detector', 'none',
            '--align-smoothing', 0, '--subframes', 0, '--schedule', 'joint', '--retarget', '--outdir', out] + STEPS
    code, _, err = invoke(projector_video.main, args + ['--follow-head'])
    assert code == 0, err
    report = read_json(out / 'report.json')
    assert report['settings']['schedule'] == 'joint' and report['settings']['follow_head'] is True
    assert report['settings']['retarget'] is True and np.isfinite(report['jaw_shape_change_mean'])
    np.testing.assert_allclose([r['angle'] for r in report['follow_head']['per_frame']], ANGLES, atol=0.05)
    latents = read_npz(out / 'latents.npz')
    assert sorted(latents) == ['transforms', 'w'] and latents['transforms'].shape == (len(ANGLES), 3, 3)
    np.testing.assert_allclose(_relative_params(sg3_G, latents['transforms'])[:, 0], ANGLES, atol=0.05)
    assert 'quads' in read_json(out / 'driving' / 'faces.json')
    code, _, err = invoke(projector_video.main, args)
    assert code == 0, err
    again = read_json(out / 'report.json')
    assert again['resumed_after'] == len(ANGLES) and 'follow_head' not in again
    assert sorted(read_npz(out / 'latents.npz')) == ['w']
    np.testing.assert_array_equal(read_npz(out / 'latents.npz')['w'], latents['w'])


def test_interpolated_motion():
    from head_motion import HeadMotion
    motion = HeadMotion(angle=np.array([0.0, 10.0]), tx=np.array([0.0, 0.2]), ty=np.zeros(2), scale=np.ones(2))
    mid = projector_video.interpolate_motion(motion, 1)
    np.testing.assert_allclose(mid.angle, [0, 5, 10])
    np.testing.assert_allclose(mid.tx, [0, 0.1, 0.2])


@pytest.mark.parametrize('network, extra, needles', [
    ('tiny', [], ['--follow-head', 'StyleGAN3']),
    ('sg3', ['--no-align'], ['--follow-head', '--align']),
])
def test_follow_head_refused(network, extra, needles, tiny_pkl, fan_weights, scene, tmp_path):
    out = tmp_path / 'anim'
    code, _, err = invoke(projector_video.main, [
        '--network', tiny_pkl if network == 'tiny' else SG3_PKL, '--device', 'cpu', '--fan-weights', fan_weights,
        '--mode', 'free', '--target_landmarks_folder', scene['folder'], '--detector', 'none', '--outdir', out,
        '--follow-head'] + extra + STEPS)
    assert code == 2
    assert_one_error_line(err, *needles)
    assert not out.exists()
