"""Issue 10.2 and the loading side of 10.6 / 10.7: projectors do not share state through ``Networks``.

The loaded ``Networks`` is read-only; each projector holds its own look features and landmark
target, so two projectors on one ``Networks``, interleaved, give what each gives alone. Free
mode's loading (``need_lpips=False``) does not touch VGG. Tiny generator, random FAN / VGG.
"""

import dataclasses

import pytest
import torch

import loaders
import optimization as opt
import perceptual
from conftest import render
from projector import LandmarkProjector
from torch_utils import misc

pytestmark = pytest.mark.usefixtures('one_thread')

STEPS = 3


@pytest.fixture(scope='module')
def faces(tiny_G):
    return {seed: render(tiny_G, seed) for seed in (1, 2, 3, 4)}


def settings(seed):
    return opt.ProjectionSettings(num_steps=STEPS, seed=seed)


def test_networks_are_read_only(nets):
    with pytest.raises(dataclasses.FrozenInstanceError):
        nets.perceptual = None
    for net in (nets.G, nets.fan, nets.perceptual):
        assert not net.training
        assert not any(p.requires_grad for p in net.parameters())


def test_two_projectors_on_one_networks_interleaved(nets, faces):
    """B is built after A and run in the middle of A's run; both equal their runs alone."""
    a = LandmarkProjector(nets, faces[1], faces[2], landmark_weight=0.1)
    b = LandmarkProjector(nets, faces[3], faces[4], landmark_weight=0.2)
    assert getattr(nets.perceptual, '_target_feats', None) is None      # nothing stored in the network
    b_result = {}

    def run_b_inside_a(info):
        if info.step == 1:
            b_result['b'] = b.run(settings(8))

    a_inter = a.run(settings(7), callbacks=[run_b_inside_a])
    b_inter = b_result['b']

    a_alone = LandmarkProjector(nets, faces[1], faces[2], landmark_weight=0.1).run(settings(7))
    b_alone = LandmarkProjector(nets, faces[3], faces[4], landmark_weight=0.2).run(settings(8))
    for inter, alone in ((a_inter, a_alone), (b_inter, b_alone)):
        torch.testing.assert_close(inter.result.ws, alone.result.ws, atol=1e-6, rtol=1e-6)
        assert inter.lpips_to_look == pytest.approx(alone.lpips_to_look, rel=1e-5)
        assert inter.landmark_error == pytest.approx(alone.landmark_error, rel=1e-5)
    # And each measures against its own look: A's result is closer to A's look than B's is.
    assert a_inter.lpips_to_look != pytest.approx(b_inter.lpips_to_look)


def test_run_batch_equals_single_runs(nets, faces):
    """Many pairs in one batched loop (issue 9's --batch-size): each pair equals its single run."""
    pairs = [LandmarkProjector(nets, faces[1], faces[2], landmark_weight=0.1),
             LandmarkProjector(nets, faces[3], faces[4], landmark_weight=0.0, lpips_weight=2.0)]
    batch = LandmarkProjector.run_batch(pairs, settings(303), seeds=[7, 9], chunk_size=1)
    for pair, seed, got in zip(pairs, (7, 9), batch):
        alone = pair.run(settings(seed))
        torch.testing.assert_close(got.result.ws, alone.result.ws, atol=1e-5, rtol=1e-5)
        assert got.result.losses[0].keys() == alone.result.losses[0].keys()
        assert got.landmark_error == pytest.approx(alone.landmark_error, rel=1e-4, abs=1e-6)
        assert got.lpips_to_look == pytest.approx(alone.lpips_to_look, rel=1e-4)


def test_free_mode_loading_does_not_touch_vgg(tiny_pkl, monkeypatch):
    def no_vgg(*args, **kwargs):
        raise AssertionError('VGG was loaded')

    monkeypatch.setattr(perceptual, 'PerceptualLoss', no_vgg)
    nets = loaders.load_networks(tiny_pkl, torch.device('cpu'), need_fan=False, need_lpips=False)
    assert nets.perceptual is None and nets.fan is None and nets.G is not None


def test_module_device(tiny_G):
    assert misc.module_device(tiny_G) == torch.device('cpu')
    assert misc.module_device(tiny_G.synthesis) == torch.device('cpu')
    assert misc.module_device(torch.nn.Identity()) == torch.device('cpu')     # no tensors at all
    holder = torch.nn.Module()
    holder.register_buffer('x', torch.zeros(1, dtype=torch.float64))
    assert misc.module_device(holder) == torch.device('cpu')


def test_no_other_device_lookups_in_the_core():
    """One device lookup (misc.module_device): no copies of ``mapping.fc0.weight.device`` left."""
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    for name in ('optimization.py', 'objectives.py', 'perceptual.py', 'loaders.py', 'projector.py', 'morph.py',
                 'mixing.py', 'cli_common.py'):
        assert 'fc0.weight.device' not in (root / name).read_text(), name
