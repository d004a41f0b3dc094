"""Differentiable building blocks of StyleGAN2 and StyleGAN3, in plain PyTorch (no compiled plugins).

Every op works on CPU and on any CUDA build, in float32 or float16, and supports
double-precision autograd so it can be checked with ``torch.autograd.gradcheck``.
Import them as modules (``from torch_utils.ops import filtered_lrelu`` then
``filtered_lrelu.filtered_lrelu(...)``): ``bias_act``, ``upfirdn2d``, ``conv2d_resample``, ``fma``,
and ``filtered_lrelu`` (StyleGAN3's upsample / leaky ReLU / downsample).
"""
