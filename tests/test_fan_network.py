"""Our FAN computes what face_alignment's FAN computes, from the same state dicts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import fan_network
import landmark_loss

ROOT = Path(__file__).resolve().parents[1]


def _randomized(module: torch.nn.Module, seed: int) -> dict:
    """A state dict with random weights and batch-norm statistics (a fresh network's are 0 and 1)."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, value in module.state_dict().items():
        if name.endswith('num_batches_tracked'):
            state[name] = value
        elif name.endswith('running_var'):
            state[name] = torch.rand(value.shape, generator=gen) + 0.5
        else:
            state[name] = torch.randn(value.shape, generator=gen) * 0.1
    return state


@pytest.mark.parametrize('stacks', [1, 2])
def test_same_outputs_and_input_gradients_as_face_alignment(stacks, one_thread):
    from face_alignment.models import FAN as TheirFAN
    theirs = TheirFAN(stacks).eval().requires_grad_(False)
    ours = fan_network.FAN(stacks).eval().requires_grad_(False)
    assert sorted(ours.state_dict()) == sorted(theirs.state_dict())
    for name, value in theirs.state_dict().items():
        assert ours.state_dict()[name].shape == value.shape, name
    state = _randomized(theirs, stacks)
    theirs.load_state_dict(state, strict=True)
    ours.load_state_dict(state, strict=True)

    x = torch.rand([2, 3, 64, 64], generator=torch.Generator().manual_seed(7))
    x_theirs, x_ours = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    out_theirs, out_ours = theirs(x_theirs), ours(x_ours)
    assert len(out_ours) == len(out_theirs) == stacks
    for a, b in zip(out_ours, out_theirs):
        assert a.shape == (2, landmark_loss.NUM_LANDMARKS, 16, 16)
        assert torch.equal(a, b)
    weight = torch.randn(out_ours[-1].shape, generator=torch.Generator().manual_seed(8))
    (out_theirs[-1] * weight).sum().backward()
    (out_ours[-1] * weight).sum().backward()
    assert torch.equal(x_ours.grad, x_theirs.grad)


def test_load_fan_builds_ours_with_the_stacks_the_weights_have(fan_weights):
    fan = landmark_loss.load_fan(fan_weights)
    assert isinstance(fan, fan_network.FAN) and not fan.training
    assert not any(p.requires_grad for p in fan.parameters())


def test_fan_needs_a_stack():
    with pytest.raises(ValueError, match='at least one hourglass'):
        fan_network.FAN(0)


def test_loading_fan_does_not_import_face_alignment(fan_weights):
    """face_alignment brings scikit-image and OpenCV: about 0.8 s of a command's start."""
    code = (f'import sys, landmark_loss; landmark_loss.load_fan({str(fan_weights)!r}); '
            'print("face_alignment" in sys.modules, "skimage" in sys.modules, "cv2" in sys.modules)')
    proc = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ['False', 'False', 'False']
