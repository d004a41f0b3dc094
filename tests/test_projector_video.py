"""Tests of the animation command ``projector_video.py`` and its pieces.

The command runs in-process (``cli_common.run``) on the tiny 32x32 generator with random FAN and
VGG16 weight files (see ``conftest.py``), so nothing is downloaded. Every optimization step runs
FAN on a 256x256 crop, which is slow on a CPU, so the end-to-end runs are few and shared by
module-scoped fixtures; re-running a finished command with only ``--subframes`` changed resumes
with every frame done and just re-assembles the videos, which covers the frame-count cases
cheaply.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import face_landmarks
import image_io
import projector_video
from cli_helpers import assert_one_error_line, invoke, read_json, read_npz, video_info, with_option
from conftest import render
from loaders import with_noise_buffers
from optimization import noise_buffer_names

RESOLUTION, NUM_WS, W_DIM = 32, 8, 32
NUM_FRAMES = 4
# Deliberately named so that plain string sorting (f1, f10, f11, f2) differs from natural sorting.
FRAME_FILES = ['f1.png', 'f2.png', 'f10.png', 'f11.png']
FRAME_SEEDS = [21, 22, 23, 24]
VIDEO_FPS = 10
STEPS = ['--num-steps-first', 2, '--num-steps', 2]  # 2 steps: the second one has a non-zero learning rate


# ----------------------------------------------------------------------------
# Helpers.

def frame_pngs(outdir: Path):
    return sorted((outdir / 'frames').glob('frame_*.png'))


def read_report(outdir: Path) -> dict:
    return read_json(outdir / 'report.json')


class Recorder:
    """Wraps ``projector_video.optimize_frame`` (and ``project``), recording calls; can stop at a frame."""

    def __init__(self, monkeypatch, stop_at=None):
        self.indices = []    # frames optimized
        self.attempted = []  # frames started (including one stopped with KeyboardInterrupt)
        self.projects = []
        self.stop_at = stop_at
        real_optimize, real_project = projector_video.optimize_frame, projector_video.project

        def optimize_frame(nets, anim, settings, faces, look_distance, index, *args, **kwargs):
            self.attempted.append(index)
            if index == self.stop_at:
                raise KeyboardInterrupt
            self.indices.append(index)
            return real_optimize(nets, anim, settings, faces, look_distance, index, *args, **kwargs)

        def project(G, objective, settings, w_init=None, noise_init=None, **kwargs):
            self.projects.append(dict(optimize_noise=settings.optimize_noise, num_steps=settings.num_steps,
                                      share_noise=settings.share_noise, seeds=kwargs.get('seeds'),
                                      chunk_size=kwargs.get('chunk_size'),
                                      latent_objective=kwargs.get('latent_objective') is not None,
                                      w_init=None if w_init is None else w_init.detach().cpu().numpy().copy(),
                                      noise_init=None if noise_init is None else
                                      {k: n.detach().cpu().numpy().copy() for k, n in noise_init.items()}))
            return real_project(G, objective, settings, w_init=w_init, noise_init=noise_init, **kwargs)

        monkeypatch.setattr(projector_video, 'optimize_frame', optimize_frame)
        monkeypatch.setattr(projector_video, 'project', project)


# ----------------------------------------------------------------------------
# Inputs and shared runs.

@pytest.fixture(scope='module')
def inputs(tiny_G, tmp_path_factory):
    root = tmp_path_factory.mktemp('video_inputs')
    frames = [render(tiny_G, seed) for seed in FRAME_SEEDS]
    folder = root / 'driving_frames'
    folder.mkdir()
    for name, frame in zip(FRAME_FILES, frames):
        image_io.save_png(folder / name, frame)
    (folder / 'notes.txt').write_text('not an image; ignored')

    import imageio.v2 as imageio
    video = root / 'driving.mp4'
    writer = imageio.get_writer(str(video), fps=VIDEO_FPS, codec='libx264', quality=8, macro_block_size=1,
                                ffmpeg_log_level='error')
    for frame in frames:
        writer.append_data(frame)
    writer.close()

    look = root / 'look.png'
    image_io.save_png(look, render(tiny_G, 1))
    empty = root / 'empty'
    empty.mkdir()
    return dict(root=root, frames=frames, folder=folder, video=video, look=look, empty=empty)


@pytest.fixture(scope='module')
def net_args(tiny_pkl, fan_weights, vgg_weights):
    return ['--network', tiny_pkl, '--device', 'cpu', '--fan-weights', fan_weights, '--vgg-weights', vgg_weights]


@pytest.fixture(scope='module')
def identity_args(net_args, inputs):
    """Identity mode from the frame folder, no alignment; needs ``--outdir``."""
    return net_args + ['--target_look', inputs['look'], '--target_landmarks_folder', inputs['folder'],
                       '--no-align', '--subframes', 1] + STEPS


@pytest.fixture(scope='module')
def identity_run(identity_args, tmp_path_factory):
    """One uninterrupted identity-mode run (directory "A" of the resume test)."""
    outdir = tmp_path_factory.mktemp('identity') / 'anim'
    with pytest.MonkeyPatch.context() as mp:
        rec = Recorder(mp)
        code, _, err = invoke(projector_video.main, identity_args + ['--outdir', outdir])
    assert code == 0, err
    return dict(outdir=outdir, err=err, calls=rec.indices, projects=rec.projects, report=read_report(outdir),
                latents=read_npz(outdir / 'latents.npz')['w'],
                animation=video_info(outdir / 'animation.mp4'), side_by_side=video_info(outdir / 'side_by_side.mp4'))


# ----------------------------------------------------------------------------
# Identity mode from a folder.

def test_identity_run_outputs(identity_run, inputs):
    out = identity_run['outdir']
    assert identity_run['calls'] == [0, 1, 2, 3]
    assert 'Resuming' not in identity_run['err']

    pngs = frame_pngs(out)
    assert [p.name for p in pngs] == [f'frame_{i:05d}.png' for i in range(NUM_FRAMES)]
    for p in pngs:
        assert image_io.load_image(p).shape == (RESOLUTION, RESOLUTION, 3)

    latents = identity_run['latents']
    assert latents.shape == (NUM_FRAMES, NUM_WS, W_DIM) and latents.dtype == np.float32
    assert np.isfinite(latents).all()
    for i in range(NUM_FRAMES):
        np.testing.assert_array_equal(read_npz(out / 'frames' / f'frame_{i:05d}.npz')['w'][0], latents[i])
    # Frames are warm-started and optimized: neighbouring latents differ, but not wildly.
    assert all(not np.array_equal(latents[i], latents[i + 1]) for i in range(NUM_FRAMES - 1))

    # --subframes 1: 2T frames (one between neighbours, and the last frame held) at twice the folder's
    # default 30 fps: as long as the driving frames at 30 fps.
    n, fps, shape = identity_run['animation']
    assert n == NUM_FRAMES * 2
    assert fps == pytest.approx(60.0)
    assert shape == (RESOLUTION, RESOLUTION, 3)
    n, fps, shape = identity_run['side_by_side']
    assert n == NUM_FRAMES and fps == pytest.approx(30.0)
    assert shape == (RESOLUTION, 3 * RESOLUTION, 3)  # look | driving with landmarks | result


def test_identity_run_report(identity_run):
    report = identity_run['report']
    assert report['command'] == 'projector_video'
    assert report['num_frames'] == NUM_FRAMES and report['resumed_after'] == 0
    assert report['output_fps'] == pytest.approx(60.0)
    assert report['settings']['mode'] == 'identity' and report['settings']['subframes'] == 1
    assert report['generator'] == dict(resolution=RESOLUTION, num_ws=NUM_WS, w_dim=W_DIM)
    frames = report['frames']
    assert [f['frame'] for f in frames] == list(range(NUM_FRAMES))
    for i, f in enumerate(frames):
        assert np.isfinite(f['landmark_error']) and f['landmark_error'] >= 0
        losses = f['losses']
        assert {'lpips', 'landmark', 'total'} <= set(losses)
        assert 'fidelity' not in losses  # identity mode has no fidelity term
        assert ('smoothness' in losses) == (i > 0)  # frame 0 has no previous latent
        assert ('noise_reg' in losses) == (i == 0)  # only frame 0 optimizes the noise maps
        assert all(np.isfinite(v) for v in losses.values())
    timings = report['timings']
    assert {'load_networks', 'align', 'optimize', 'assemble', 'total'} <= set(timings)
    assert all(v >= 0 for v in timings.values())


def test_identity_run_schedule_and_noise(identity_run, tiny_G):
    projects = identity_run['projects']
    assert len(projects) == NUM_FRAMES
    first, later = projects[0], projects[1:]
    # Frame 0: from w_avg, --num-steps-first steps, noise maps optimized from a fresh start.
    assert first['w_init'] is None and first['noise_init'] is None and first['optimize_noise']
    assert first['num_steps'] == 2
    saved = read_npz(identity_run['outdir'] / 'state' / 'noise.npz')
    assert sorted(saved) == sorted(noise_buffer_names(tiny_G))  # keyed by the generator's buffer names
    latents = identity_run['latents']
    for i, call in enumerate(later, start=1):
        # Later frames: warm start at the previous latent, frame 0's noise maps kept fixed.
        assert not call['optimize_noise'] and call['num_steps'] == 2
        np.testing.assert_array_equal(call['w_init'].reshape(NUM_WS, W_DIM), latents[i - 1])
        assert sorted(call['noise_init']) == sorted(saved)
        for name, value in saved.items():
            np.testing.assert_array_equal(call['noise_init'][name], value)
    # The optimized maps are renormalized (zero mean, unit variance).
    for n in saved.values():
        assert abs(float(n.mean())) < 1e-4 and float(n.std()) == pytest.approx(1.0, abs=1e-3)


def test_latents_npz_reproduces_the_frames(identity_run, tiny_G):
    """latents.npz holds w and frame 0's noise maps by buffer name: with those in G's constant noise
    buffers, synthesis with noise_mode='const' gives the saved frames to within one grey level."""
    data = read_npz(identity_run['outdir'] / 'latents.npz')
    names = noise_buffer_names(tiny_G)
    assert sorted(k for k in data if k != 'w') == sorted(names)
    G = with_noise_buffers(tiny_G, {name: torch.from_numpy(data[name]) for name in names})
    for i, png in enumerate(frame_pngs(identity_run['outdir'])):
        with torch.no_grad():
            image = image_io.to_uint8(G.synthesis(torch.from_numpy(data['w'][i:i + 1]), noise_mode='const')[0])
        diff = np.abs(image.astype(np.int16) - image_io.load_image(png).astype(np.int16))
        assert diff.max() <= 1, f'frame {i}: {diff.max()} grey levels'
    # Without the saved noise the generator's own buffers give another picture: the maps matter.
    with torch.no_grad():
        plain = image_io.to_uint8(tiny_G.synthesis(torch.from_numpy(data['w'][:1]), noise_mode='const')[0])
    assert np.abs(plain.astype(np.int16) - image_io.load_image(frame_pngs(identity_run['outdir'])[0])).max() > 1


def test_driving_folder_uses_natural_sort_order(identity_run, inputs):
    driving = sorted((identity_run['outdir'] / 'driving').glob('frame_*.png'))
    assert len(driving) == NUM_FRAMES
    # --no-align with 32x32 frames: the driving frames are the files, unchanged, in natural order.
    for path, frame in zip(driving, inputs['frames']):
        np.testing.assert_array_equal(image_io.load_image(path), frame)


@pytest.mark.parametrize('subframes', [0, 3])
def test_subframes_reassemble_without_optimizing(identity_run, identity_args, subframes, monkeypatch):
    out = identity_run['outdir']
    rec = Recorder(monkeypatch)
    code, _, err = invoke(projector_video.main,
                          with_option(identity_args, '--subframes', subframes) + ['--outdir', out])
    assert code == 0, err
    assert rec.indices == []  # --subframes is not part of the run's settings: every frame is done
    assert 'resuming' in err.lower()
    n, fps, _ = video_info(out / 'animation.mp4')
    assert n == NUM_FRAMES * (subframes + 1)
    assert fps == pytest.approx(30.0 * (subframes + 1))
    n, fps, _ = video_info(out / 'side_by_side.mp4')
    assert n == NUM_FRAMES and fps == pytest.approx(30.0)
    assert len(frame_pngs(out)) == NUM_FRAMES
    np.testing.assert_array_equal(read_npz(out / 'latents.npz')['w'], identity_run['latents'])
    report = read_report(out)
    assert report['resumed_after'] == NUM_FRAMES and report['output_fps'] == pytest.approx(30.0 * (subframes + 1))
    assert len(report['frames']) == NUM_FRAMES


# ----------------------------------------------------------------------------
# Resume.

def test_interrupted_run_resumes_to_the_same_result(identity_run, identity_args, tmp_path, monkeypatch):
    out = tmp_path / 'anim'
    args = identity_args + ['--outdir', out]

    with monkeypatch.context() as mp:
        rec = Recorder(mp, stop_at=2)
        code, _, err = invoke(projector_video.main, args)
    assert code == 130, err
    assert 'Traceback' not in err and 'interrupted' in err
    assert rec.indices == [0, 1]
    assert [p.name for p in frame_pngs(out)] == ['frame_00000.png', 'frame_00001.png']
    assert sorted(p.name for p in (out / 'frames').glob('*.npz')) == ['frame_00000.npz', 'frame_00001.npz']
    assert not (out / 'animation.mp4').exists() and not (out / 'latents.npz').exists()
    assert not (out / 'report.json').exists()
    assert not [p for p in out.rglob('.*') if p.is_file() and not p.name.startswith('.write-test')]
    noise_bytes = (out / 'state' / 'noise.npz').read_bytes()

    with monkeypatch.context() as mp:
        rec = Recorder(mp)
        code, _, err = invoke(projector_video.main, args)
    assert code == 0, err
    assert rec.indices == [2, 3]
    assert 'resuming' in err.lower()
    assert (out / 'state' / 'noise.npz').read_bytes() == noise_bytes  # frame 0's noise maps are kept
    assert read_report(out)['resumed_after'] == 2

    # Same latents and images as the uninterrupted run.
    a = identity_run['outdir']
    np.testing.assert_allclose(read_npz(out / 'latents.npz')['w'], read_npz(a / 'latents.npz')['w'], rtol=0, atol=1e-6)
    assert len(frame_pngs(out)) == NUM_FRAMES
    for pa, pb in zip(frame_pngs(a), frame_pngs(out)):
        np.testing.assert_array_equal(image_io.load_image(pb), image_io.load_image(pa))
    na, nb = read_npz(a / 'state' / 'noise.npz'), read_npz(out / 'state' / 'noise.npz')
    for key in na:
        np.testing.assert_array_equal(na[key], nb[key])
    assert video_info(out / 'animation.mp4')[0] == NUM_FRAMES * 2


def test_a_damaged_frame_file_is_one_error_line_on_resume(identity_run, identity_args, tmp_path):
    """A frame's .npz cut short from outside (a partial copy): the resume names the file and the way out."""
    out = tmp_path / 'anim'
    shutil.copytree(identity_run['outdir'], out)
    damaged = out / 'frames' / 'frame_00001.npz'
    damaged.write_bytes(damaged.read_bytes()[:100])
    (out / 'report.json').unlink()
    code, _, err = invoke(projector_video.main, identity_args + ['--outdir', out])
    assert code == 2, err
    last = err.strip().splitlines()[-1]
    assert 'Traceback' not in err and last.startswith('error:')
    assert 'frame_00001.npz' in last and '--no-resume' in last


def test_changed_settings_refuse_to_resume_and_no_resume_starts_over(identity_run, identity_args, tmp_path,
                                                                     monkeypatch):
    out = tmp_path / 'anim'
    shutil.copytree(identity_run['outdir'], out)
    before = {p.name: p.read_bytes() for p in (out / 'frames').iterdir()}
    changed = with_option(identity_args, '--landmark_weight', 0.2) + ['--outdir', out]

    rec = Recorder(monkeypatch)
    code, _, err = invoke(projector_video.main, changed)
    assert code == 2
    assert_one_error_line(err, '--no-resume', str(out), 'landmark_weight')
    assert rec.indices == []
    assert {p.name: p.read_bytes() for p in (out / 'frames').iterdir()} == before  # nothing touched
    assert (out / 'state' / 'run.json').read_bytes() == (identity_run['outdir'] / 'state' / 'run.json').read_bytes()

    # --no-resume: the finished frames are discarded and the work starts again at frame 0. (The
    # run is stopped as frame 0 begins, so this costs no optimization; a full fresh run is
    # covered by the other tests.)
    rec.stop_at = 0
    assert all((out / name).is_file() for name in projector_video.OUTPUT_FILES)
    code, _, err = invoke(projector_video.main, changed + ['--no-resume'])
    assert code == 130, err
    assert rec.attempted == [0]
    assert 'resuming' not in err.lower()
    assert list((out / 'frames').iterdir()) == []
    # The old run's outputs went at the start, not only when new ones replace them at the end.
    assert not any((out / name).exists() for name in projector_video.OUTPUT_FILES)
    assert len(list((out / 'driving').glob('frame_*.png'))) == NUM_FRAMES  # re-made for the new run
    run_json = json.loads((out / 'state' / 'run.json').read_text())
    assert run_json['landmark_weight'] == pytest.approx(0.2)

    # The new settings are now the directory's, but nothing was finished under them (the run stopped
    # as frame 0 began): going back to the old ones starts over rather than refusing, since no work
    # would be lost (a failed first run would otherwise lock the folder to its settings).
    code, _, err = invoke(projector_video.main, identity_args + ['--outdir', out])
    assert code == 130, err
    assert rec.attempted == [0, 0]
    assert json.loads((out / 'state' / 'run.json').read_text())['landmark_weight'] != pytest.approx(0.2)


def test_negative_fps_is_a_user_error(identity_run, identity_args, tmp_path):
    out = tmp_path / 'anim'
    shutil.copytree(identity_run['outdir'], out)  # every frame done: only the videos would be made
    code, _, err = invoke(projector_video.main, identity_args + ['--fps', -5, '--outdir', out])
    assert code == 2
    assert_one_error_line(err, '--fps')


# ----------------------------------------------------------------------------
# A driving video, aligned.

def stub_detector(monkeypatch, boxes=((4.0, 5.0, 28.0, 30.0, 0.9),)):
    """S3FD replaced by a function that finds ``boxes`` in every image (calls are counted)."""
    calls = []

    def load(weights=None, device='cpu'):
        def detect(image):
            calls.append(image.shape)
            return [list(b) for b in boxes]
        return detect

    monkeypatch.setattr(face_landmarks, 'load_s3fd', load)
    return calls


def test_video_with_alignment(net_args, inputs, tmp_path, monkeypatch):
    out = tmp_path / 'anim'
    rec = Recorder(monkeypatch)
    detections = stub_detector(monkeypatch)
    args = net_args + ['--mode', 'free', '--driving', inputs['video'], '--align', '--subframes', 3,
                       '--num-steps-first', 1, '--num-steps', 1, '--outdir', out]
    code, _, err = invoke(projector_video.main, args)
    assert code == 0, err
    assert rec.indices == [0, 1, 2, 3]
    # The detector found the face in the first video frame, then in each aligned frame (its FAN box).
    assert len(detections) == 1 + NUM_FRAMES
    driving = sorted((out / 'driving').glob('frame_*.png'))
    assert len(driving) == NUM_FRAMES
    for p in driving:
        assert image_io.load_image(p).shape == (RESOLUTION, RESOLUTION, 3)
    # The video's own frame rate (10 fps), times subframes + 1.
    n, fps, _ = video_info(out / 'animation.mp4')
    assert n == NUM_FRAMES * 4 and fps == pytest.approx(4.0 * VIDEO_FPS)
    n, fps, shape = video_info(out / 'side_by_side.mp4')
    assert n == NUM_FRAMES and fps == pytest.approx(float(VIDEO_FPS))
    assert shape == (RESOLUTION, 2 * RESOLUTION, 3)  # driving with landmarks | result: no look panel
    assert read_npz(out / 'latents.npz')['w'].shape == (NUM_FRAMES, NUM_WS, W_DIM)
    assert len(frame_pngs(out)) == NUM_FRAMES
    report = read_report(out)
    assert report['settings']['fps'] == pytest.approx(VIDEO_FPS) and report['settings']['align'] is True
    assert report['output_fps'] == pytest.approx(4.0 * VIDEO_FPS)
    assert report['settings']['mode'] == 'free'
    assert report['faces']['driving']['faces_found'] == 1 and report['faces']['look'] is None
    assert report['driving_input']['kind'] == 'video'
    assert len(report['frames']) == NUM_FRAMES and 'timings' in report
    for i, f in enumerate(report['frames']):
        losses = f['losses']
        assert 'lpips' not in losses  # free mode has no look
        assert {'landmark', 'fidelity', 'total'} <= set(losses)
        assert ('smoothness' in losses) == (i > 0)
        assert np.isfinite(f['landmark_error'])

    # Free mode, the other subframe counts: the finished frames are reused, only the videos are made again.
    latents = read_npz(out / 'latents.npz')['w']
    for subframes in (0, 1):
        code, _, err = invoke(projector_video.main, with_option(args, '--subframes', subframes))
        assert code == 0, err
        assert rec.indices == [0, 1, 2, 3]  # nothing optimized again
        n, fps, _ = video_info(out / 'animation.mp4')
        assert n == NUM_FRAMES * (subframes + 1)
        assert fps == pytest.approx(VIDEO_FPS * (subframes + 1))
        np.testing.assert_array_equal(read_npz(out / 'latents.npz')['w'], latents)
    assert len(detections) == 1 + NUM_FRAMES  # no alignment on resume


def test_free_mode_does_not_load_vgg(net_args, inputs, tmp_path, monkeypatch):
    import perceptual
    loaded = []
    monkeypatch.setattr(perceptual.PerceptualLoss, '__init__',
                        lambda self, *a, **k: loaded.append(1) or (_ for _ in ()).throw(AssertionError('VGG')))
    args = with_option(net_args, '--vgg-weights', str(tmp_path / 'no-such-vgg.pth'))
    code, _, err = invoke(projector_video.main, args + [
        '--mode', 'free', '--target_landmarks_folder', inputs['folder'], '--no-align', '--subframes', 0,
        '--num-steps-first', 1, '--num-steps', 1, '--outdir', tmp_path / 'anim'])
    assert code == 0, err
    assert loaded == []


# ----------------------------------------------------------------------------
# Bad input: one line, exit status 2, before anything is loaded or written.

@pytest.mark.parametrize('case, needles', [
    ('neither', ['--target_landmarks_folder', '--driving']),
    ('both', ['--target_landmarks_folder', '--driving']),
    ('no_look', ['--target_look']),
    ('missing_look', ['--target_look', 'not found']),
    ('empty_folder', ['--target_landmarks_folder', 'no images']),
    ('missing_folder', ['--target_landmarks_folder']),
    ('missing_video', ['--driving', 'not found']),
    ('not_a_video', ['--driving']),
    ('zero_steps', ['--num-steps']),
    ('zero_steps_first', ['--num-steps-first']),
    ('negative_weight', ['smoothness_weight']),
    ('bad_group_weights', ['--landmark_weights']),
    ('negative_subframes', ['--subframes']),
    ('bad_schedule', ['--schedule']),
    ('bad_distance', ['--latent_distance']),
    ('zero_batch', ['--batch-size']),
    ('negative_fidelity', ['fidelity_weight']),
    ('negative_d_weight', ['d_weight']),
])
def test_bad_input(case, needles, net_args, inputs, tmp_path):
    out = tmp_path / 'anim'
    folder, video, look = inputs['folder'], inputs['video'], inputs['look']
    args = {
        'neither': ['--target_look', look],
        'both': ['--target_look', look, '--target_landmarks_folder', folder, '--driving', video],
        'no_look': ['--target_landmarks_folder', folder],
        'missing_look': ['--target_look', tmp_path / 'nope.png', '--target_landmarks_folder', folder],
        'empty_folder': ['--mode', 'free', '--target_landmarks_folder', inputs['empty']],
        'missing_folder': ['--mode', 'free', '--target_landmarks_folder', tmp_path / 'no_such_dir'],
        'missing_video': ['--mode', 'free', '--driving', tmp_path / 'missing.mp4'],
        'not_a_video': ['--mode', 'free', '--driving', look.parent / 'driving_frames' / 'notes.txt'],
        'zero_steps': ['--target_look', look, '--target_landmarks_folder', folder, '--num-steps', 0],
        'zero_steps_first': ['--mode', 'free', '--driving', video, '--num-steps-first', 0],
        'negative_weight': ['--mode', 'free', '--driving', video, '--smoothness_weight', -1],
        'bad_group_weights': ['--mode', 'free', '--driving', video, '--landmark_weights', '1,2,3'],
        'negative_subframes': ['--mode', 'free', '--driving', video, '--subframes', -1],
        'bad_schedule': ['--mode', 'free', '--driving', video, '--schedule', 'parallel'],
        'bad_distance': ['--mode', 'free', '--driving', video, '--latent_distance', 'l1'],
        'zero_batch': ['--mode', 'free', '--driving', video, '--schedule', 'joint', '--batch-size', 0],
        'negative_fidelity': ['--mode', 'free', '--driving', video, '--fidelity_weight', -0.1],
        'negative_d_weight': ['--mode', 'free', '--driving', video, '--d_weight', -1],
    }[case]
    code, _, err = invoke(projector_video.main, net_args + args + ['--outdir', out])
    assert code == 2
    assert_one_error_line(err, *needles)
    assert not out.exists()


# ----------------------------------------------------------------------------
# Objective terms and frame_objective.

class StubLook:
    num_targets = 1

    def __call__(self, image):
        return image.mean(dim=(1, 2, 3)) + 2.0  # [N]


class StubLandmarks:
    num_targets = 1

    def __call__(self, image):
        return image.abs().mean(dim=(1, 2, 3)) + 3.0  # [N]


class StubD(torch.nn.Module):
    c_dim = 0

    def forward(self, image, c):
        return image.mean(dim=(1, 2, 3))[:, None]


def _terms(settings, w_prev=None, anchor=None, D=None, seed=1):
    gen = torch.Generator().manual_seed(seed)
    image = torch.rand([1, 3, RESOLUTION, RESOLUTION], generator=gen) * 2 - 1
    ws = torch.randn([1, NUM_WS, W_DIM], generator=gen)
    objective = projector_video.frame_objective(StubLook(), settings, StubLandmarks(), w_prev, anchor, D)
    return {k: float(v.sum()) for k, v in objective(image, ws, torch.zeros(1, dtype=torch.long)).items()}


@pytest.mark.parametrize('mode', ['identity', 'free'])
@pytest.mark.parametrize('with_prev', [False, True])
def test_frame_objective_has_the_terms_of_its_mode(mode, with_prev):
    w_prev = torch.randn([1, NUM_WS, W_DIM]) if with_prev else None
    anchor = torch.randn([1, 1, W_DIM])
    settings = projector_video.AnimationSettings(mode=mode, fidelity_weight=0.2)
    expected = {'landmark'} | ({'lpips'} if mode == 'identity' else set()) | ({'smoothness'} if with_prev else set())
    expected |= {'fidelity'}  # to the anchor given (free: w_avg; identity: frame 0's latent)
    terms = _terms(settings, w_prev, anchor)
    assert set(terms) == expected
    assert all(np.isfinite(v) for v in terms.values())
    # Every weight scales its own term only.
    for name, option in [('landmark', 'landmark_weight'), ('smoothness', 'smoothness_weight'),
                         ('fidelity', 'fidelity_weight'), ('lpips', 'lpips_weight')]:
        if name not in terms:
            continue
        kwargs = dict(mode=mode, fidelity_weight=0.2)
        kwargs[option] = 2 * getattr(settings.resolved(), option)
        doubled = _terms(projector_video.AnimationSettings(**kwargs), w_prev, anchor)
        assert doubled[name] == pytest.approx(2 * terms[name], rel=1e-5)
        assert all(doubled[k] == pytest.approx(terms[k], rel=1e-6) for k in terms if k != name)


def test_frame_objective_latent_distance_and_defaults():
    w_prev, ws_anchor = torch.zeros([1, NUM_WS, W_DIM]), torch.zeros([1, 1, W_DIM])
    charb = projector_video.AnimationSettings(mode='free').resolved()
    l2 = projector_video.AnimationSettings(mode='free', latent_distance='l2').resolved()
    assert (charb.smoothness_weight, charb.fidelity_weight) == (0.005, 0.005)
    assert (l2.smoothness_weight, l2.fidelity_weight) == (0.05, 0.05)
    identity = projector_video.AnimationSettings().resolved()
    assert (identity.smoothness_weight, identity.fidelity_weight) == (0.005, 0.0)
    assert identity.lpips_weight_second == identity.lpips_weight
    # The Charbonnier sum of a latent against itself is sqrt(1e-6) per element; the L2 norm is 0.
    gen = torch.Generator().manual_seed(3)
    ws = torch.randn([1, NUM_WS, W_DIM], generator=gen)
    image = torch.zeros([1, 3, RESOLUTION, RESOLUTION])
    for settings, same in [(charb, 0.005 * NUM_WS * W_DIM * 1e-3), (l2, 0.0)]:
        objective = projector_video.frame_objective(None, settings, StubLandmarks(), ws, None)
        assert float(objective(image, ws, torch.zeros(1, dtype=torch.long))['smoothness']) == \
            pytest.approx(same, abs=1e-9)
    # Doubling the change doubles the L2 term but not the Charbonnier one (a smooth L1: also doubles,
    # once the change is much larger than the epsilon).
    for settings in (charb, l2):
        objective = projector_video.frame_objective(None, settings, StubLandmarks(), w_prev, ws_anchor)
        one = float(objective(image, ws, torch.zeros(1, dtype=torch.long))['smoothness'])
        two = float(objective(image, 2 * ws, torch.zeros(1, dtype=torch.long))['smoothness'])
        assert two == pytest.approx(2 * one, rel=1e-3)


def test_frame_objective_zero_weights_and_realism():
    settings = projector_video.AnimationSettings(mode='free', smoothness_weight=0.0, fidelity_weight=0.0, d_weight=0.5)
    terms = _terms(settings, torch.zeros([1, NUM_WS, W_DIM]), torch.zeros([1, 1, W_DIM]), D=StubD())
    assert set(terms) == {'landmark', 'realism'}
    assert terms['realism'] > 0


def test_frame_objective_on_real_networks(tiny_G, fan_weights, vgg_weights):
    """The real LPIPS and heat-map losses give finite terms with gradients to the image."""
    from landmark_loss import LandmarkLoss, load_fan
    from perceptual import PerceptualLoss
    fan = load_fan(fan_weights, 'cpu')
    look = PerceptualLoss(vgg_weights, 'cpu').distance_to(image_io.to_tensor(render(tiny_G, 6)))
    landmarks = LandmarkLoss(fan, image_io.to_tensor(render(tiny_G, 5)))
    ws = torch.randn([1, NUM_WS, W_DIM])
    image = image_io.to_tensor(render(tiny_G, 7)).requires_grad_(True)
    settings = projector_video.AnimationSettings(mode='identity')
    terms = projector_video.frame_objective(look, settings, landmarks, ws + 0.1, None)(
        image, ws, torch.zeros(1, dtype=torch.long))
    assert set(terms) == {'lpips', 'landmark', 'smoothness'}
    assert all(v.shape == (1,) and torch.isfinite(v).all() for v in terms.values())
    sum(v.sum() for v in terms.values()).backward()
    assert image.grad is not None and torch.isfinite(image.grad).all() and image.grad.abs().sum() > 0


# ----------------------------------------------------------------------------
# interpolate_latents.

@pytest.mark.parametrize('subframes', [0, 1, 3])
def test_interpolate_latents(subframes):
    rng = np.random.RandomState(subframes)
    latents = rng.randn(NUM_FRAMES, NUM_WS, W_DIM)
    out = projector_video.interpolate_latents(latents, subframes)
    assert out.shape == (NUM_FRAMES + (NUM_FRAMES - 1) * subframes, NUM_WS, W_DIM)
    step = subframes + 1
    # Key frames are the latents themselves.
    np.testing.assert_array_equal(out[::step], latents)
    # In between: evenly spaced points on the straight line.
    for i in range(NUM_FRAMES - 1):
        for j in range(1, subframes + 1):
            t = j / step
            np.testing.assert_allclose(out[i * step + j], (1 - t) * latents[i] + t * latents[i + 1], atol=1e-12)
    if subframes == 1:
        np.testing.assert_allclose(out[1], (latents[0] + latents[1]) / 2, atol=1e-12)
    if subframes == 3:
        np.testing.assert_allclose(out[2], (latents[0] + latents[1]) / 2, atol=1e-12)  # the midpoint
        np.testing.assert_allclose(out[5], 0.75 * latents[1] + 0.25 * latents[2], atol=1e-12)


def test_interpolate_latents_single_frame():
    latents = np.ones([1, NUM_WS, W_DIM])
    for subframes in (0, 1, 3):
        np.testing.assert_array_equal(projector_video.interpolate_latents(latents, subframes), latents)


def test_discriminator_realism_term_end_to_end(net_args, inputs, tmp_path):
    """--d_loss true loads D from the pickle and adds DEFAULT_D_WEIGHT * softplus(-D(x)) to every frame."""
    from objectives import DEFAULT_D_WEIGHT
    out = tmp_path / 'anim'
    code, _, err = invoke(projector_video.main, net_args + [
        '--mode', 'free', '--target_landmarks_folder', inputs['folder'], '--no-align', '--d_loss', 'true',
        '--subframes', 0, '--num-steps-first', 1, '--num-steps', 1, '--outdir', out])
    assert code == 0, err
    report = read_report(out)
    assert report['settings']['d_weight'] == pytest.approx(DEFAULT_D_WEIGHT)
    assert report['settings']['d_loss'] is True
    for frame in report['frames']:
        assert frame['losses']['realism'] > 0
