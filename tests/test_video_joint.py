"""The joint video schedule (``projector_video.py --schedule joint``, the original's
``projector_video_parallel_v2.py``) and the ``animate`` API.

Tiny 32x32 generator, random FAN / VGG16 weight files (``conftest.py``): nothing is downloaded.
Every step runs FAN on each frame's 256x256 crop, so the runs are few, short, and shared.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import image_io
import projector_video
from cli_helpers import invoke, read_json, read_npz, video_info
from conftest import render
from loaders import load_networks, with_noise_buffers
from optimization import noise_buffer_names

pytestmark = pytest.mark.usefixtures('one_thread')

RESOLUTION, NUM_WS, W_DIM = 32, 8, 32
SEEDS = [21, 22, 23]


class ProjectCalls:
    """Records ``projector_video.project`` calls; ``stop_at=k`` interrupts the k-th call (0-based)."""

    def __init__(self, monkeypatch, stop_at=None):
        self.calls = []
        real = projector_video.project

        def project(G, objective, settings, w_init=None, noise_init=None, **kwargs):
            if len(self.calls) == stop_at:
                self.calls.append(None)
                raise KeyboardInterrupt
            self.calls.append(dict(settings=settings, kwargs=kwargs,
                                   w_init=None if w_init is None else w_init.detach().clone(),
                                   noise_init=None if noise_init is None else
                                   {k: v.detach().clone() for k, v in noise_init.items()}))
            return real(G, objective, settings, w_init=w_init, noise_init=noise_init, **kwargs)

        monkeypatch.setattr(projector_video, 'project', project)


@pytest.fixture(scope='module')
def frames(tiny_G):
    return [render(tiny_G, s) for s in SEEDS]


@pytest.fixture(scope='module')
def joint_args(tiny_G, frames, tiny_pkl, fan_weights, vgg_weights, tmp_path_factory):
    root = tmp_path_factory.mktemp('joint_inputs')
    folder = root / 'frames'
    folder.mkdir()
    for i, frame in enumerate(frames):
        image_io.save_png(folder / f'{i}.png', frame)
    look = root / 'look.png'
    image_io.save_png(look, render(tiny_G, 1))
    return ['--network', tiny_pkl, '--device', 'cpu', '--fan-weights', fan_weights, '--vgg-weights', vgg_weights,
            '--target_look', look, '--target_landmarks_folder', folder, '--no-align', '--schedule', 'joint',
            '--num-steps-first', 2, '--num-steps', 2, '--batch-size', 2, '--subframes', 1]


@pytest.fixture(scope='module')
def joint_run(joint_args, tmp_path_factory):
    outdir = tmp_path_factory.mktemp('joint') / 'anim'
    with pytest.MonkeyPatch.context() as mp:
        rec = ProjectCalls(mp)
        code, _, err = invoke(projector_video.main, joint_args + ['--outdir', outdir])
    assert code == 0, err
    return dict(outdir=outdir, calls=rec.calls, report=read_json(outdir / 'report.json'))


def test_joint_runs_stage_1_then_all_frames_together(joint_run):
    stage1, stage2 = joint_run['calls']
    # Stage 1: the look alone, from w_avg, noise maps optimized, --num-steps-first steps.
    assert stage1['settings'].num_steps == 2 and stage1['settings'].optimize_noise
    assert stage1['w_init'] is None and stage1['noise_init'] is None
    assert stage1['kwargs'].get('latent_objective') is None and stage1['kwargs'].get('seeds') is None
    # Stage 2: the three frames' latents together, in chunks of --batch-size, one shared noise set
    # starting from stage 1's, frames starting from stage 1's latent.
    s2 = stage2['settings']
    assert s2.num_steps == 2 and s2.optimize_noise and s2.share_noise and s2.latent == 'w+'
    assert stage2['kwargs']['seeds'] == [303, 304, 305] and stage2['kwargs']['chunk_size'] == 2
    assert stage2['kwargs']['latent_objective'] is not None
    state = read_npz(joint_run['outdir'] / 'state' / 'stage1.npz')
    np.testing.assert_array_equal(stage2['w_init'].numpy(), state['w'])
    assert sorted(stage2['noise_init']) == sorted(read_npz(joint_run['outdir'] / 'state' / 'noise.npz'))


def test_joint_outputs_and_report(joint_run):
    out, report = joint_run['outdir'], joint_run['report']
    latents = read_npz(out / 'latents.npz')['w']
    assert latents.shape == (3, NUM_WS, W_DIM) and np.isfinite(latents).all()   # one latent per frame
    assert sorted(p.name for p in (out / 'frames').glob('*.png')) == [f'frame_{i:05d}.png' for i in range(3)]
    for i in range(3):
        np.testing.assert_array_equal(read_npz(out / 'frames' / f'frame_{i:05d}.npz')['w'][0], latents[i])
    assert video_info(out / 'animation.mp4')[0] == 3 * 2                          # --subframes 1
    assert video_info(out / 'side_by_side.mp4')[0] == 3
    assert report['settings']['schedule'] == 'joint' and report['num_frames'] == 3
    assert set(report['stage1']['losses']) == {'lpips', 'noise_reg', 'total'}      # LPIPS only
    assert {'smoothness', 'noise_reg'} <= set(report['joint']['latent_losses'])
    for frame in report['frames']:
        assert {'lpips', 'landmark', 'total'} <= set(frame['losses'])
        assert np.isfinite(frame['landmark_error'])


def test_joint_latents_npz_reproduces_the_frames(joint_run, tiny_G):
    data = read_npz(joint_run['outdir'] / 'latents.npz')
    G = with_noise_buffers(tiny_G, {n: torch.from_numpy(data[n]) for n in noise_buffer_names(tiny_G)})
    for i in range(3):
        with torch.no_grad():
            image = image_io.to_uint8(G.synthesis(torch.from_numpy(data['w'][i:i + 1]), noise_mode='const')[0])
        saved = image_io.load_image(joint_run['outdir'] / 'frames' / f'frame_{i:05d}.png')
        assert np.abs(image.astype(np.int16) - saved.astype(np.int16)).max() <= 1


def test_joint_resume(joint_run, joint_args, tmp_path, monkeypatch):
    # Every frame done: nothing is optimized again.
    rec = ProjectCalls(monkeypatch)
    code, _, err = invoke(projector_video.main, joint_args + ['--outdir', joint_run['outdir']])
    assert code == 0, err
    assert rec.calls == [] and 'resuming' in err.lower()
    # Interrupted in stage 2: the next run starts at stage 2 from the saved look latent.
    out = tmp_path / 'anim'
    with monkeypatch.context() as mp:
        rec = ProjectCalls(mp, stop_at=1)
        code, _, err = invoke(projector_video.main, joint_args + ['--outdir', out])
    assert code == 130 and len(rec.calls) == 2
    assert (out / 'state' / 'stage1.npz').is_file() and not list((out / 'frames').glob('*.png'))
    with monkeypatch.context() as mp:
        rec = ProjectCalls(mp)
        code, _, err = invoke(projector_video.main, joint_args + ['--outdir', out])
    assert code == 0, err
    assert len(rec.calls) == 1 and rec.calls[0]['settings'].share_noise and 'stage 1' in err
    np.testing.assert_allclose(read_npz(out / 'latents.npz')['w'], read_npz(joint_run['outdir'] / 'latents.npz')['w'],
                               rtol=0, atol=1e-5)


# ----------------------------------------------------------------------------
# The animate API; smoothness.

@pytest.fixture(scope='module')
def free_nets(tiny_pkl, fan_weights):
    return load_networks(tiny_pkl, torch.device('cpu'), fan_weights=fan_weights, need_lpips=False)


def test_smoothness_brings_neighbouring_latents_closer(free_nets, frames):
    """Joint, 3 frames, through ``animate``: one latent per frame; the smoothness term makes
    neighbouring latents closer than without it (6 steps: the learning rate ramps down at the end)."""
    spread = {}
    for weight in (0.0, 2.0):
        settings = projector_video.AnimationSettings(mode='free', schedule='joint', num_steps=6,
                                                     smoothness_weight=weight, fidelity_weight=0.0, batch_size=2)
        animation = projector_video.animate(free_nets, frames, settings, align=False, subframes=0, progress=False)
        assert animation.latents.shape == (3, NUM_WS, W_DIM)
        assert animation.frames.shape == (3, RESOLUTION, RESOLUTION, 3) and animation.frames.dtype == np.uint8
        assert sorted(animation.noise) == sorted(noise_buffer_names(free_nets.G))
        assert animation.outdir is None and animation.report['num_frames'] == 3
        assert ('smoothness' in animation.report['joint']['latent_losses']) == (weight > 0)
        spread[weight] = np.abs(np.diff(animation.latents, axis=0)).sum(axis=(1, 2))
    assert (spread[2.0] < spread[0.0]).all(), spread
    assert spread[2.0].sum() < 0.7 * spread[0.0].sum(), spread
