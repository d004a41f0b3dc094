"""Resolving --precision and the contexts that apply it."""

import pytest
import torch

import precision
from dnnlib.util import UserError


def test_auto_on_cpu_follows_bf16_support(monkeypatch):
    monkeypatch.setattr(precision, 'cpu_supports_bf16', lambda: True)
    assert precision.resolve('auto', 'cpu') == 'bf16'
    monkeypatch.setattr(precision, 'cpu_supports_bf16', lambda: False)
    assert precision.resolve('auto', 'cpu') == 'fp32'


def test_auto_on_cuda_is_fp16():
    assert precision.resolve('auto', 'cuda') == 'fp16'  # resolving needs no GPU


def test_explicit_choices():
    assert precision.resolve('fp32', 'cpu') == 'fp32'
    assert precision.resolve('bf16', 'cpu') == 'bf16'
    with pytest.raises(UserError, match='CUDA'):
        precision.resolve('fp16', 'cpu')
    with pytest.raises(UserError, match='precision'):
        precision.resolve('int8', 'cpu')


def test_synthesis_flags():
    assert precision.synthesis_kwargs('fp32') == dict(force_fp32=True)
    assert precision.synthesis_kwargs('bf16') == dict(force_fp32=True)
    assert precision.synthesis_kwargs('fp16') == dict(force_fp32=False)
    with pytest.raises(ValueError):
        precision.synthesis_kwargs('auto')


def test_autocast_contexts():
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with precision.autocast('fp32', 'cpu'):
        assert (a @ b).dtype == torch.float32
    with precision.autocast('bf16', 'cpu'):
        assert (a @ b).dtype == torch.bfloat16


def test_announcement_warns_of_bf16_on_a_cpu_without_bf16_kernels(monkeypatch):
    monkeypatch.setattr(precision, 'cpu_supports_bf16', lambda: False)
    text = precision.announcement('bf16', 'bf16', 'cpu')
    first, second = text.split('\n')
    assert first == 'Precision: bf16.'
    assert second.startswith('warning: ') and 'slow' in second and 'fp32' in second
    assert precision.announcement('fp32', 'auto', 'cpu') == 'Precision: fp32 (from --precision auto).'
    assert precision.slow_bf16_warning('bf16', 'cuda') is None
    monkeypatch.setattr(precision, 'cpu_supports_bf16', lambda: True)
    assert precision.announcement('bf16', 'auto', 'cpu') == 'Precision: bf16 (from --precision auto).'
