"""Differentiable building blocks of StyleGAN2, in plain PyTorch (no compiled plugins).

Every op works on CPU and on any CUDA build, in float32 or float16, and supports
double-precision autograd so it can be checked with ``torch.autograd.gradcheck``.
"""
