"""The identity term and score of ``projector_video.py`` (``--id_weight``, ``--id_anchor``, ``--no-identity``)
and its ``--precision``.

Tiny 32x32 generator, random FAN / VGG16 files (``conftest.py``) and a random FaceNet state dict
with the published layout, its batch norms fitted to a few renders (as in ``test_identity.py``)
so that different faces get different embeddings. ``torch.hub``'s folder is an empty temporary
one, so no cached weights are found and nothing is downloaded.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import identity
import image_io
import precision
import projector_video
from cli_helpers import assert_one_error_line, invoke, read_json
from conftest import render
from projector_video import AnimationSettings, IdentityTerm, frame_objective, joint_objectives

pytestmark = pytest.mark.usefixtures('one_thread')

SEEDS = [21, 22, 23]
STEPS = ['--num-steps-first', 2, '--num-steps', 2]


@pytest.fixture(scope='module')
def empty_hub(tmp_path_factory):
    """``torch.hub.get_dir()`` is an empty folder for the whole module: no cached FaceNet."""
    hub = tmp_path_factory.mktemp('hub')
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.hub, 'get_dir', lambda: str(hub))
        yield hub


@pytest.fixture(scope='module')
def facenet_file(facenet_weights):
    return facenet_weights


@pytest.fixture(scope='module')
def net(facenet_file):
    return identity.load_facenet(facenet_file)


@pytest.fixture(scope='module')
def args(tiny_G, tiny_pkl, fan_weights, vgg_weights, tmp_path_factory, empty_hub):
    root = tmp_path_factory.mktemp('video_identity_inputs')
    folder = root / 'frames'
    folder.mkdir()
    for i, seed in enumerate(SEEDS):
        image_io.save_png(folder / f'{i}.png', render(tiny_G, seed))
    look = root / 'look.png'
    image_io.save_png(look, render(tiny_G, 1))
    return dict(base=['--network', tiny_pkl, '--device', 'cpu', '--fan-weights', fan_weights,
                      '--vgg-weights', vgg_weights, '--target_landmarks_folder', folder, '--no-align',
                      '--subframes', 0] + STEPS, look=look)


class LoadCalls:
    """Records ``identity.load_facenet`` calls (the real loader still runs)."""

    def __init__(self, monkeypatch):
        self.calls = []
        real = identity.load_facenet

        def load(weights=None, device='cpu'):
            self.calls.append(weights)
            return real(weights, device)

        monkeypatch.setattr(identity, 'load_facenet', load)


@pytest.fixture(scope='module')
def free_run(args, facenet_file, tmp_path_factory):
    """Free mode, sequential, with the identity term anchored to frame 0 (the default there)."""
    outdir = tmp_path_factory.mktemp('free_identity') / 'anim'
    with pytest.MonkeyPatch.context() as mp:
        loads = LoadCalls(mp)
        code, _, err = invoke(projector_video.main, args['base'] + [
            '--mode', 'free', '--id_weight', 1, '--id-weights', facenet_file, '--precision', 'fp32',
            '--outdir', outdir])
    assert code == 0, err
    return dict(outdir=outdir, err=err, loads=loads.calls, report=read_json(outdir / 'report.json'))


# ----------------------------------------------------------------------------
# Free mode, end to end.

def test_free_mode_reports_every_frames_similarity_to_frame_0(free_run, net, facenet_file):
    report = free_run['report']
    assert free_run['loads'] == [facenet_file]
    sim = report['identity_similarity']
    assert sim['reference'] == 'first_frame'
    per_frame = sim['per_frame']
    assert len(per_frame) == len(SEEDS) == report['num_frames']
    assert per_frame[0] == pytest.approx(1.0, abs=1e-5)           # frame 0 against itself
    assert all(-1 <= v <= 1 + 1e-6 for v in per_frame)
    assert sim['min'] == pytest.approx(min(per_frame)) and sim['mean'] == pytest.approx(np.mean(per_frame))
    assert [f['identity_similarity'] for f in report['frames']] == per_frame
    # The score is the cosine of the saved frames' embeddings, in the box of frame 0.
    out = free_run['outdir']
    frames = torch.cat([image_io.to_tensor(image_io.load_image(out / 'frames' / f'frame_{i:05d}.png'))
                        for i in range(len(SEEDS))])
    box = identity.FaceBox(**sim['box'])
    expected = identity.identity_similarity(net, frames, frames[:1], box).tolist()
    np.testing.assert_allclose(per_frame, expected, atol=1e-5)
    # The term: frame 0 anchors itself (no term); every later frame has one.
    losses = [f['losses'] for f in report['frames']]
    assert 'identity' not in losses[0]
    assert all(0 <= loss['identity'] <= 2 for loss in losses[1:])
    assert report['settings']['id_weight'] == 1 and report['settings']['id_anchor'] == 'first_frame'


def test_precision_and_network_recorded(free_run):
    report = free_run['report']
    assert report['precision'] == 'fp32' and report['settings']['precision'] == 'fp32'
    assert report['settings']['precision_requested'] == 'fp32'
    assert 'Precision: fp32' in free_run['err']
    assert report['network']['architecture'] == 'stylegan2' and report['network']['resolution'] == 32
    assert report['network']['family'] == 'ada'


def test_resume_keeps_the_anchor(free_run, args, facenet_file):
    """Running the finished command again re-scores against the same frame 0; another --id_weight is refused."""
    out = free_run['outdir']
    code, _, err = invoke(projector_video.main, args['base'] + [
        '--mode', 'free', '--id_weight', 1, '--id-weights', facenet_file, '--precision', 'fp32', '--outdir', out])
    assert code == 0, err
    again = read_json(out / 'report.json')
    assert again['resumed_after'] == len(SEEDS)
    np.testing.assert_allclose(again['identity_similarity']['per_frame'],
                               free_run['report']['identity_similarity']['per_frame'], atol=1e-6)
    code, _, err = invoke(projector_video.main, args['base'] + [
        '--mode', 'free', '--id_weight', 2, '--id-weights', facenet_file, '--outdir', out])
    assert code == 2
    assert_one_error_line(err, 'id_weight', '--no-resume')


# ----------------------------------------------------------------------------
# The term in the objectives: gradient, per latent, joint chunks.

def _free_settings(**kw):
    return AnimationSettings(mode='free', landmark_weight=0.0, smoothness_weight=0.0, fidelity_weight=0.0,
                             id_weight=1.0, **kw)


def test_sequential_term_gradient_reaches_w(tiny_G, net):
    G = tiny_G
    box = identity.ffhq_box(G.img_resolution)
    term = IdentityTerm(net, box, image_io.to_tensor(render(G, 1)))
    objective = frame_objective(None, _free_settings(), None, None, None, identity_term=term)
    z = torch.from_numpy(np.random.RandomState(5).randn(1, G.z_dim)).float()
    with torch.no_grad():
        ws = G.mapping(z, None)
    ws.requires_grad_(True)
    terms = objective(G.synthesis(ws, noise_mode='const'), ws)
    assert set(terms) == {'identity'} and 0 < float(terms['identity'].detach()) <= 2
    terms['identity'].sum().backward()
    assert ws.grad is not None and torch.isfinite(ws.grad).all() and float(ws.grad.abs().sum()) > 0
    assert not any(p.grad is not None for p in net.parameters())


def test_joint_term_follows_frame_0_across_chunks(tiny_G, net):
    """Per latent, 1/N weighted; frame 0 leads (its term is 0 without gradient), frame 2 in a later chunk
    is compared with frame 0's image of the same step; the gradient reaches the other latents' w."""
    G = tiny_G
    num_frames = 3
    z = torch.from_numpy(np.random.RandomState(7).randn(num_frames, G.z_dim)).float()
    with torch.no_grad():
        ws_all = G.mapping(z, None)
        start = G.synthesis(ws_all[:1] * 0 + ws_all.mean(0, keepdim=True), noise_mode='const')
    box = identity.ffhq_box(G.img_resolution)
    term = IdentityTerm(net, box, start, follow=0)
    w_avg = ws_all.mean(0, keepdim=True)[:, :1]
    objective, _ = joint_objectives(None, _free_settings(), None, w_avg, num_frames, identity_term=term)
    ws = ws_all.clone().requires_grad_(True)
    first = objective(G.synthesis(ws[:2], noise_mode='const'), ws[:2], torch.arange(0, 2))
    second = objective(G.synthesis(ws[2:], noise_mode='const'), ws[2:], torch.arange(2, 3))
    assert first['identity'].shape == (2,) and second['identity'].shape == (1,)
    assert float(first['identity'][0].detach()) == pytest.approx(0, abs=1e-6)
    with torch.no_grad():
        images = G.synthesis(ws_all, noise_mode='const')
        expected = 1 - identity.identity_similarity(net, images, images[:1], box)
    np.testing.assert_allclose(first['identity'].detach().numpy(), expected[:2].numpy() / num_frames, atol=1e-5)
    np.testing.assert_allclose(second['identity'].detach().numpy(), expected[2:].numpy() / num_frames, atol=1e-5)
    (first['identity'].sum() + second['identity'].sum()).backward()
    grad = ws.grad.abs().sum(dim=[1, 2])
    # Frame 0's own term has no gradient (0 up to rounding); the followers' terms do.
    assert (grad[1:] > 0).all() and float(grad[0]) < 1e-3 * float(grad[1:].min())


def test_look_needs_identity_mode_and_facenet(tiny_G, net):
    with pytest.raises(projector_video.UserError):
        AnimationSettings(mode='free', id_anchor='look').validate()
    with pytest.raises(projector_video.UserError):
        AnimationSettings(id_weight=-1.0).validate()
    assert AnimationSettings().resolved().id_anchor == 'look'
    assert AnimationSettings(mode='free').resolved().id_anchor == 'first_frame'
    # Without the term the resume fingerprint is what it was before the term existed.
    assert not {'id_weight', 'id_anchor', 'precision'} & set(AnimationSettings().fingerprint())
    assert {'id_weight', 'id_anchor'} <= set(AnimationSettings(id_weight=0.5).fingerprint())


# ----------------------------------------------------------------------------
# Identity mode, joint schedule; loading nothing unless asked; user errors.

def test_identity_mode_joint_scores_against_the_look(args, facenet_file, tmp_path):
    outdir = tmp_path / 'anim'
    code, _, err = invoke(projector_video.main, args['base'] + [
        '--target_look', args['look'], '--schedule', 'joint', '--batch-size', 2, '--id_weight', 1,
        '--id-weights', facenet_file, '--outdir', outdir])
    assert code == 0, err
    report = read_json(outdir / 'report.json')
    sim = report['identity_similarity']
    assert sim['reference'] == 'look' and len(sim['per_frame']) == len(SEEDS)
    assert all(-1 <= v <= 1 + 1e-6 for v in sim['per_frame'])
    # The term is in every frame's losses, chunks of 2 and 1 alike.
    assert all(0 <= f['losses']['identity'] <= 2 / len(SEEDS) for f in report['frames'])
    # --precision auto (the default): fp32 on a CPU without bfloat16 units, bf16 on one with them.
    assert report['precision'] == precision.resolve('auto', 'cpu') and report['settings']['precision_requested'] == 'auto'
    assert report['settings']['precision'] == 'auto'  # what was asked for, as in projector's and morph's reports


def test_no_identity_loads_nothing(args, facenet_file, tmp_path, empty_hub, monkeypatch):
    # Weights at hand (given, and "cached"): --no-identity still loads nothing and scores nothing.
    cached = empty_hub / 'checkpoints' / '20180402-114759-vggface2.pt'
    cached.parent.mkdir(exist_ok=True)
    cached.write_bytes(b'')
    loads = LoadCalls(monkeypatch)
    try:
        outdir = tmp_path / 'anim'
        code, _, err = invoke(projector_video.main, args['base'] + [
            '--mode', 'free', '--num-steps-first', 1, '--num-steps', 1, '--id-weights', facenet_file,
            '--no-identity', '--outdir', outdir])
    finally:
        cached.unlink()
    assert code == 0, err
    assert loads.calls == []
    report = read_json(outdir / 'report.json')
    assert 'identity_similarity' not in report
    assert all('identity_similarity' not in f and 'identity' not in f['losses'] for f in report['frames'])


def test_without_weights_at_hand_nothing_is_loaded(args, tmp_path, monkeypatch):
    """No --id_weight, no --id-weights, nothing cached: FaceNet is not asked for (the run stops there)."""
    asked = []

    def load_networks(*a, **kwargs):
        asked.append(kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(projector_video, 'load_networks', load_networks)
    code, _, _ = invoke(projector_video.main, args['base'] + ['--mode', 'free', '--outdir', tmp_path / 'anim'])
    assert code == 130
    assert [k['need_identity'] for k in asked] == [False]
    # With weights given, the score asks for them (and for nothing without --id_weight to shape frames).
    code, _, _ = invoke(projector_video.main, args['base'] + ['--mode', 'free', '--id-weights', 'facenet.pt',
                                                             '--outdir', tmp_path / 'anim'])
    assert code == 130 and asked[1]['need_identity'] and asked[1]['id_weights'] == 'facenet.pt'


@pytest.mark.parametrize('extra, needles', [
    (['--no-identity', '--id_weight', 1], ['--no-identity', '--id_weight']),
    (['--mode', 'free', '--id_anchor', 'look'], ['--id_anchor']),
    (['--precision', 'fp16', '--mode', 'free'], ['fp16', 'CUDA']),
    (['--precision', 'fp64', '--mode', 'free'], ['--precision']),
])
def test_user_errors(args, tmp_path, extra, needles):
    look = [] if '--mode' in extra else ['--target_look', args['look']]
    code, _, err = invoke(projector_video.main, args['base'] + look + extra + ['--outdir', tmp_path / 'anim'])
    assert code == 2
    assert_one_error_line(err, *needles)
