"""Every command on a StyleGAN3 network (issue 17 §2): projection, a 3-frame animation and a morph on
the ``sg3-r-tiny`` fixture end to end. StyleGAN3 has no noise inputs: nothing is optimized,
regularized or saved for noise, and the saved latent alone reproduces the image."""

from pathlib import Path

import numpy as np
import pytest
import torch

import image_io
import legacy
import morph
import projector
import projector_video
from cli_helpers import invoke, read_json
from networks import stylegan3

DATA = Path(__file__).parent / 'data'
SG3_PKL = str(DATA / 'sg3-r-tiny.pkl')

pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def sg3_G():
    G = legacy.load_generator(SG3_PKL)
    assert isinstance(G, stylegan3.Generator)
    return G


@pytest.fixture(scope='module')
def projected(fan_weights, vgg_weights, face_images, tmp_path_factory):
    look, landmarks = face_images
    out = tmp_path_factory.mktemp('sg3') / 'proj'
    code, _, err = invoke(projector.main, ['--network', SG3_PKL, '--device', 'cpu', '--fan-weights', fan_weights,
                                           '--vgg-weights', vgg_weights, '--target_look', look,
                                           '--target_landmarks', landmarks, '--outdir', out, '--num-steps', 3])
    assert code == 0, err
    return out


def test_projection_outputs_and_report(projected):
    report = read_json(projected / 'report.json')
    for name in ('proj.png', 'projected_w.npz', 'summary.png'):
        assert (projected / name).is_file()
    assert np.isfinite(report['lpips_to_look']) and np.isfinite(report['landmark_error'])
    assert report['network']['architecture'] == 'stylegan3'
    assert report['network']['family'] == 'sg3-repo'
    assert report['network']['config'] in ('T', 'R')
    assert report['optimizer']['optimize_noise'] is False  # StyleGAN3 has no noise inputs to optimize


def test_saved_latent_reproduces_the_projection(projected, sg3_G):
    arrays = np.load(projected / 'projected_w.npz')
    assert [k for k in arrays.files if k != 'w'] == []  # no noise maps for StyleGAN3
    w = torch.from_numpy(arrays['w'])
    with torch.no_grad():
        img = sg3_G.synthesis(w, noise_mode='const', force_fp32=True)
    rendered = image_io.to_uint8(img[0]).astype(int)
    saved = image_io.read_image(str(projected / 'proj.png'), 'proj')[0].astype(int)
    assert np.abs(rendered - saved).max() <= 1


def test_animation_three_frames(fan_weights, vgg_weights, sg3_G, tiny_G, tmp_path):
    from conftest import render
    folder = tmp_path / 'frames'
    folder.mkdir()
    for i, seed in enumerate((3, 4, 5)):
        image_io.save_png(folder / f'{i:03d}.png', render(tiny_G, seed))
    look = tmp_path / 'look.png'
    image_io.save_png(look, render(tiny_G, 1))
    out = tmp_path / 'anim'
    code, _, err = invoke(projector_video.main, [
        '--network', SG3_PKL, '--device', 'cpu', '--fan-weights', fan_weights, '--vgg-weights', vgg_weights,
        '--target_look', look, '--target_landmarks_folder', folder, '--no-align', '--subframes', 1,
        '--num-steps-first', 2, '--num-steps', 2, '--outdir', out])
    assert code == 0, err
    latents = np.load(out / 'latents.npz')
    assert latents.files == ['w'] and latents['w'].shape[0] == 3  # no noise maps for StyleGAN3
    assert (out / 'animation.mp4').is_file()


def test_morph_between_two_projections(projected, vgg_weights, face_images, tmp_path):
    out = tmp_path / 'morph'
    code, _, err = invoke(morph.main, ['--network', SG3_PKL, '--device', 'cpu', '--vgg-weights', vgg_weights,
                                       '--a', projected / 'projected_w.npz', '--b', face_images[1],
                                       '--outdir', out, '--method', 'linear', '--steps', 2, '--ppl-samples', 1,
                                       '--num-steps', 1])
    assert code == 0, err
    network = read_json(out / 'report.json')['network']
    assert network['architecture'] == 'stylegan3' and network['family'] == 'sg3-repo'
