"""StyleGAN3 generator (alias-free GAN, configs T and R): our implementation, state-compatible
with the official ``training.networks_stylegan3`` pickles.

Class names, constructor arguments (flat: ``Generator(z_dim, c_dim, w_dim, img_resolution,
img_channels, mapping_kwargs={}, channel_base=..., conv_kernel=..., ...)``), parameter and buffer
names follow the official networks one to one (``synthesis.input.transform``,
``synthesis.L3_36_32.magnitude_ema``, ``synthesis.L5_52_32.up_filter``, ...), so a state dict
read from an official pickle loads into these classes with ``strict=True``.

Shapes: ``z`` is ``[N, z_dim]``, ``c`` is ``[N, c_dim]`` (``[N, 0]`` when unconditional),
``ws`` is ``[N, num_ws, w_dim]`` with ``num_ws = num_layers + 2`` (the input layer, the layers,
ToRGB), images are ``[N, img_channels, img_resolution, img_resolution]`` in about ``[-1, 1]``.

Unlike StyleGAN2 there are no noise inputs: ``noise_mode`` is accepted and ignored, and
``SynthesisNetwork.noise_layers()`` is empty. Config R is config T with ``conv_kernel=1`` and
``use_radial_filters=True``. Layers flagged ``use_fp16`` run in half precision only on CUDA
tensors and only without ``force_fp32``.

The input layer's ``transform`` buffer is an inverse transform of the output image (rotation and
translation of the Fourier features); ``make_input_transform`` and
``SynthesisInput.set_transform`` set it from an angle and a translation as the official
``gen_images.py --rotate --translate`` does. ``SynthesisNetwork.forward(ws, transforms=...)`` takes
one such matrix per latent (``[N, 3, 3]``, see ``make_input_transforms``) for a single call, in
place of the buffer and without writing it (a network shared between callers stays read-only).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch

from torch_utils import misc
from torch_utils.ops.filtered_lrelu import filtered_lrelu
from . import generator as sg2
from . import layers as sg2_layers

SizeLike = Union[int, Sequence[int]]


def _size2(size: SizeLike) -> Tuple[int, int]:
    """``(width, height)`` from an int or a ``[width, height]`` pair."""
    arr = np.broadcast_to(np.asarray(size), [2])
    return int(arr[0]), int(arr[1])


# ----------------------------------------------------------------------------
# The input transform (user-facing geometry).

def make_input_transform(angle: float = 0.0, tx: float = 0.0, ty: float = 0.0) -> np.ndarray:
    """The ``[3, 3]`` float64 matrix to copy into ``synthesis.input.transform``.

    The output image is rotated by ``angle`` degrees and translated by ``(tx, ty)``, with the
    conventions of the official ``gen_images.py --rotate=angle --translate=tx,ty``: this is the
    inverse of its ``make_transform((tx, ty), angle)``.

    Geometry, in image coordinates with the origin at the centre, x to the right, y down and the
    image spanning ``[-0.5, 0.5]``: content at point ``p`` appears at ``R p + (tx, ty)``, where
    ``R = [[cos a, sin a], [-sin a, cos a]]`` turns it counterclockwise on screen by ``angle``.
    So ``tx = 0.25`` moves the content a quarter of the image width to the right, ``ty > 0``
    moves it down, and ``angle = 90`` matches ``torch.rot90(img, 1, dims=(2, 3))`` (exactly so
    only for a rotation-equivariant config-R network; T follows translations).
    """
    a = math.radians(float(angle))
    c, s = math.cos(a), math.sin(a)
    tx, ty = float(tx), float(ty)
    # make_transform is [[c, s, tx], [-s, c, ty], [0, 0, 1]] = [R | t]; its inverse is [R^T | -R^T t].
    return np.array([[c, -s, -(c * tx - s * ty)],
                     [s, c, -(s * tx + c * ty)],
                     [0.0, 0.0, 1.0]], dtype=np.float64)


def make_input_transforms(angle, tx=0.0, ty=0.0) -> np.ndarray:
    """``make_input_transform`` for many frames: ``[N, 3, 3]`` float64 from ``[N]`` angles and translations.

    ``angle`` (degrees, counterclockwise on screen), ``tx``, ``ty`` (image widths / heights, right /
    down) are scalars or ``[N]`` arrays, broadcast to one length ``N`` (a scalar alone gives ``N = 1``).
    Row ``i`` equals ``make_input_transform(angle[i], tx[i], ty[i])``.
    """
    a, tx, ty = np.broadcast_arrays(*(np.atleast_1d(np.asarray(v, dtype=np.float64)) for v in (angle, tx, ty)))
    if a.ndim != 1:
        raise ValueError(f'angle, tx and ty must be scalars or [N] arrays, got shape {list(a.shape)}')
    r = np.radians(a)
    c, s = np.cos(r), np.sin(r)
    m = np.zeros([len(a), 3, 3], dtype=np.float64)
    m[:, 0, 0], m[:, 0, 1], m[:, 0, 2] = c, -s, -(c * tx - s * ty)
    m[:, 1, 0], m[:, 1, 1], m[:, 1, 2] = s, c, -(s * tx + c * ty)
    m[:, 2, 2] = 1.0
    return m


def input_transform_params(m) -> Tuple[float, float, float]:
    """``(angle, tx, ty)`` of a transform made by ``make_input_transform`` (its exact inverse).

    ``m`` is a ``[3, 3]`` array or tensor of a rotation and translation; the angle is in degrees
    in ``(-180, 180]``.
    """
    m = np.asarray(m.detach().cpu().double() if isinstance(m, torch.Tensor) else m, dtype=np.float64)
    if m.shape != (3, 3):
        raise ValueError(f'expected a [3, 3] transform, got shape {list(m.shape)}')
    c, s = m[0, 0], m[1, 0]
    angle = math.degrees(math.atan2(s, c))
    # -R^T t = m[:2, 2]  =>  t = -R m[:2, 2] with R = [[c, s], [-s, c]].
    u, v = m[0, 2], m[1, 2]
    tx = -(c * u + s * v)
    ty = -(-s * u + c * v)
    return float(angle), float(tx), float(ty)


# ----------------------------------------------------------------------------
# Layers shared with StyleGAN2 where they compute the same function.

class FullyConnectedLayer(sg2_layers.FullyConnectedLayer):
    """StyleGAN3's dense layer: StyleGAN2's function, with the StyleGAN3 constructor.

    ``weight_init`` scales the initial weights, ``bias_init`` may be a scalar or one value per
    output feature; ``trainable=False`` stores weight and bias as buffers. ``[N, in] -> [N, out]``.
    """

    def __init__(self, in_features: int, out_features: int, activation: str = 'linear', bias: bool = True,
                 lr_multiplier: float = 1.0, weight_init: float = 1.0, bias_init=0.0, trainable: bool = True):
        super().__init__(in_features, out_features, bias=bias, activation=activation, lr_multiplier=lr_multiplier)
        weight = torch.randn([out_features, in_features]) * (weight_init / lr_multiplier)
        bias_values = np.broadcast_to(np.asarray(bias_init, dtype=np.float32), [out_features])
        bias_tensor = torch.tensor(bias_values / lr_multiplier, dtype=torch.float32) if bias else None
        del self.weight
        del self.bias
        if trainable:
            self.weight = torch.nn.Parameter(weight)
            self.bias = torch.nn.Parameter(bias_tensor) if bias_tensor is not None else None
        else:
            self.register_buffer('weight', weight)
            self.register_buffer('bias', bias_tensor)


def _freeze(layer: torch.nn.Module) -> None:
    """Turn a dense layer's weight and bias into buffers (same state-dict names, not trained)."""
    for name in ('weight', 'bias'):
        value = getattr(layer, name)
        delattr(layer, name)
        layer.register_buffer(name, None if value is None else value.detach())


class MappingNetwork(sg2.MappingNetwork):
    """StyleGAN3's mapping network ``z, c -> ws [N, num_ws, w_dim]``.

    The same function as StyleGAN2's (normalized z, normalized label embedding of ``w_dim``
    features, ``num_layers`` lrelu layers of ``w_dim`` features, truncation towards ``w_avg``)
    with StyleGAN3's constructor and defaults; ``freeze_layers`` / ``freeze_embed`` store the
    first layers / the embedding as buffers.
    """

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_ws: int, num_layers: int = 2,
                 lr_multiplier: float = 0.01, w_avg_beta: float = 0.998, freeze_layers: int = 0,
                 freeze_embed: bool = False):
        super().__init__(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=num_ws, num_layers=num_layers,
                         embed_features=w_dim, layer_features=w_dim, activation='lrelu',
                         lr_multiplier=lr_multiplier, w_avg_beta=w_avg_beta)
        if 'w_avg' not in self._buffers:
            self.register_buffer('w_avg', torch.zeros([w_dim]))
        if freeze_embed and c_dim > 0:
            _freeze(self.embed)
        for idx in range(min(freeze_layers, num_layers)):
            _freeze(getattr(self, f'fc{idx}'))


# ----------------------------------------------------------------------------
# Synthesis.

def modulated_conv2d(x: torch.Tensor, w: torch.Tensor, s: torch.Tensor, demodulate: bool = True,
                     padding: Union[int, Sequence[int]] = 0,
                     input_gain: Optional[torch.Tensor] = None) -> torch.Tensor:
    """StyleGAN3's modulated convolution (one grouped convolution with per-sample kernels).

    Args:
        x: Input ``[N, I, H, W]``.
        w: Kernel ``[O, I, k, k]``.
        s: Styles ``[N, I]``.
        demodulate: Normalize each output channel of every sample's kernel to unit L2 norm (the
            kernel and the styles are pre-normalized by their RMS first, as in the reference).
        padding: Zero padding of the convolution (StyleGAN3 uses ``k - 1``: a "full" convolution).
        input_gain: Optional per-input-channel scale, ``[]``, ``[I]`` or ``[N, I]``.
    Returns:
        ``[N, O, H + 2 * padding - k + 1, W + ...]`` in the dtype of ``x``.
    """
    batch_size = int(x.shape[0])
    out_channels, in_channels, kh, kw = w.shape
    misc.assert_shape(x, [batch_size, in_channels, None, None])
    misc.assert_shape(s, [batch_size, in_channels])

    if demodulate:
        w = w * w.square().mean([1, 2, 3], keepdim=True).rsqrt()
        s = s * s.square().mean().rsqrt()
    wm = w.unsqueeze(0) * s.reshape(batch_size, 1, in_channels, 1, 1)  # [N, O, I, k, k]
    if demodulate:
        dcoefs = (wm.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()  # [N, O]
        wm = wm * dcoefs.reshape(batch_size, out_channels, 1, 1, 1)
    if input_gain is not None:
        input_gain = input_gain.expand(batch_size, in_channels)
        wm = wm * input_gain.reshape(batch_size, 1, in_channels, 1, 1)

    x = x.reshape(1, batch_size * in_channels, *x.shape[2:])
    wm = wm.reshape(batch_size * out_channels, in_channels, kh, kw)
    x = torch.nn.functional.conv2d(x, wm.to(x.dtype), padding=padding, groups=batch_size)
    return x.reshape(batch_size, out_channels, *x.shape[2:])


class SynthesisInput(torch.nn.Module):
    """Fourier features: ``w [N, w_dim] -> [N, channels, size_h, size_w]``.

    ``channels`` sinusoids of frequencies ``freqs`` (inside a disc of radius ``bandwidth``) and
    phases ``phases``, sampled on a grid of ``size`` pixels at ``sampling_rate``, rotated and
    translated per sample by the ``affine`` layer and by the fixed ``transform`` buffer, then
    mixed by ``weight``. Frequencies that the transform pushes towards Nyquist fade out.
    """

    def __init__(self, w_dim: int, channels: int, size: SizeLike, sampling_rate: float, bandwidth: float):
        super().__init__()
        self.w_dim = w_dim
        self.channels = channels
        self.size = np.asarray(_size2(size))  # [width, height]
        self.sampling_rate = sampling_rate
        self.bandwidth = bandwidth

        # Random frequencies, uniformly in the disc of radius ``bandwidth``; random phases.
        freqs = torch.randn([channels, 2])
        radii = freqs.square().sum(dim=1, keepdim=True).sqrt()
        freqs = freqs / (radii * radii.square().exp().pow(0.25)) * bandwidth
        phases = torch.rand([channels]) - 0.5

        self.weight = torch.nn.Parameter(torch.randn([channels, channels]))
        self.affine = FullyConnectedLayer(w_dim, 4, weight_init=0, bias_init=[1, 0, 0, 0])
        self.register_buffer('transform', torch.eye(3, 3))  # inverse transform of the output image
        self.register_buffer('freqs', freqs)                 # [channels, 2]
        self.register_buffer('phases', phases)               # [channels]

    def set_transform(self, angle: float = 0.0, tx: float = 0.0, ty: float = 0.0) -> None:
        """Rotate the output by ``angle`` degrees and translate it by ``(tx, ty)`` image sizes.

        Overwrites ``transform`` with ``make_input_transform(angle, tx, ty)`` (gen_images.py's
        ``--rotate`` / ``--translate`` conventions); ``set_transform()`` restores the identity.
        """
        m = torch.from_numpy(make_input_transform(angle, tx, ty))
        with torch.no_grad():
            self.transform.copy_(m.to(self.transform))

    def forward(self, w: torch.Tensor, transform: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Fourier features of ``w [N, w_dim]``; ``[N, channels, size_h, size_w]``.

        ``transform``: None uses the ``transform`` buffer; a ``[3, 3]`` (every sample) or
        ``[N, 3, 3]`` (one per sample) tensor replaces it for this call only (cast to float32 on
        ``w``'s device; the buffer is not written), so sample ``i`` with ``transform[i]`` equals
        sample ``i`` alone with the buffer set to ``transform[i]``.
        """
        misc.assert_shape(w, [None, self.w_dim])
        batch_size = w.shape[0]
        if transform is None:
            transforms = self.transform.unsqueeze(0)  # [1, 3, 3]
        else:
            transforms = self.check_transform(transform, batch_size).to(device=w.device, dtype=self.transform.dtype)
        freqs = self.freqs.unsqueeze(0)           # [1, C, 2]
        phases = self.phases.unsqueeze(0)         # [1, C]

        # Per-sample rotation (r_c, r_s) and translation (t_x, t_y), rotation normalized.
        t = self.affine(w)
        t = t / t[:, :2].norm(dim=1, keepdim=True)
        eye = torch.eye(3, device=w.device, dtype=w.dtype).unsqueeze(0)
        m_r = eye.repeat([batch_size, 1, 1])
        m_r[:, 0, 0] = t[:, 0]
        m_r[:, 0, 1] = -t[:, 1]
        m_r[:, 1, 0] = t[:, 1]
        m_r[:, 1, 1] = t[:, 0]
        m_t = eye.repeat([batch_size, 1, 1])
        m_t[:, 0, 2] = -t[:, 2]
        m_t[:, 1, 2] = -t[:, 3]
        transforms = m_r @ m_t @ transforms  # [N, 3, 3]

        phases = phases + (freqs @ transforms[:, :2, 2:]).squeeze(2)  # [N, C]
        freqs = freqs @ transforms[:, :2, :2]                           # [N, C, 2]
        amplitudes = (1 - (freqs.norm(dim=2) - self.bandwidth)
                      / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)  # [N, C]

        # Sample positions: pixel centres, the image core spanning [-0.5, 0.5].
        width, height = int(self.size[0]), int(self.size[1])
        theta = torch.eye(2, 3, device=w.device)
        theta[0, 0] = 0.5 * width / self.sampling_rate
        theta[1, 1] = 0.5 * height / self.sampling_rate
        grid = torch.nn.functional.affine_grid(theta.unsqueeze(0), [1, 1, height, width],
                                               align_corners=False)  # [1, H, W, 2]

        x = (grid.unsqueeze(3) @ freqs.permute(0, 2, 1).unsqueeze(1).unsqueeze(2)).squeeze(3)  # [N, H, W, C]
        x = x + phases.unsqueeze(1).unsqueeze(2)
        x = torch.sin(x * (2 * np.pi)) * amplitudes.unsqueeze(1).unsqueeze(2)
        x = x @ (self.weight / np.sqrt(self.channels)).t()
        x = x.permute(0, 3, 1, 2)  # [N, C, H, W]
        misc.assert_shape(x, [batch_size, self.channels, height, width])
        return x

    @staticmethod
    def check_transform(transform, batch_size: int) -> torch.Tensor:
        """``transform`` (tensor or array, ``[3, 3]`` or ``[batch_size, 3, 3]``) as a ``[1 or batch_size, 3, 3]`` tensor."""
        t = torch.as_tensor(transform)
        if t.ndim == 2:
            t = t.unsqueeze(0)
        if t.ndim != 3 or tuple(t.shape[1:]) != (3, 3) or t.shape[0] not in (1, batch_size):
            raise ValueError(f'input transforms must be [3, 3] or [{batch_size}, 3, 3], got {list(t.shape)}')
        if not t.is_floating_point():
            t = t.double()
        return t

    def extra_repr(self) -> str:
        return (f'w_dim={self.w_dim}, channels={self.channels}, size={list(self.size)}, '
                f'sampling_rate={self.sampling_rate:g}, bandwidth={self.bandwidth:g}')


def design_lowpass_filter(numtaps: int, cutoff: float, width: float, fs: float,
                          radial: bool = False) -> Optional[torch.Tensor]:
    """Kaiser-windowed low-pass FIR filter, or ``None`` (identity) for one tap.

    Separable: a 1D ``[numtaps]`` windowed-sinc filter (``scipy.signal.firwin``). Radial: a 2D
    ``[numtaps, numtaps]`` windowed jinc (a circularly symmetric low pass), normalized to sum 1.
    ``cutoff`` and the transition ``width`` are in the units of the sampling rate ``fs``.
    """
    if numtaps < 1:
        raise ValueError('numtaps must be >= 1')
    if numtaps == 1:
        return None
    import scipy.signal
    import scipy.special
    if not radial:
        return torch.as_tensor(scipy.signal.firwin(numtaps=numtaps, cutoff=cutoff, width=width, fs=fs),
                               dtype=torch.float32)
    pos = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    r = np.hypot(*np.meshgrid(pos, pos))
    f = scipy.special.j1(2 * cutoff * (np.pi * r)) / (np.pi * r)
    beta = scipy.signal.kaiser_beta(scipy.signal.kaiser_atten(numtaps, width / (fs / 2)))
    window = np.kaiser(numtaps, beta)
    f = f * np.outer(window, window)
    return torch.as_tensor(f / np.sum(f), dtype=torch.float32)


class SynthesisLayer(torch.nn.Module):
    """Modulated convolution and filtered leaky ReLU (or, for ToRGB, a modulated 1x1 conv).

    ``forward(x [N, in_channels, in_h, in_w], w [N, w_dim]) -> [N, out_channels, out_h, out_w]``.
    The activation runs at ``lrelu_upsampling`` times the higher of the input and output
    sampling rates: the conv output is upsampled with ``up_filter``, passed through the leaky
    ReLU, low-pass filtered with ``down_filter`` and decimated. ``magnitude_ema`` (the running
    mean square of the input) normalizes the input.
    """

    def __init__(self, w_dim: int, is_torgb: bool, is_critically_sampled: bool, use_fp16: bool,
                 in_channels: int, out_channels: int, in_size: SizeLike, out_size: SizeLike,
                 in_sampling_rate: float, out_sampling_rate: float, in_cutoff: float, out_cutoff: float,
                 in_half_width: float, out_half_width: float, conv_kernel: int = 3, filter_size: int = 6,
                 lrelu_upsampling: int = 2, use_radial_filters: bool = False, conv_clamp: Optional[float] = 256,
                 magnitude_ema_beta: float = 0.999):
        super().__init__()
        self.w_dim = w_dim
        self.is_torgb = is_torgb
        self.is_critically_sampled = is_critically_sampled
        self.use_fp16 = use_fp16
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.in_size = np.asarray(_size2(in_size))    # [width, height]
        self.out_size = np.asarray(_size2(out_size))  # [width, height]
        self.in_sampling_rate = in_sampling_rate
        self.out_sampling_rate = out_sampling_rate
        self.tmp_sampling_rate = max(in_sampling_rate, out_sampling_rate) * (1 if is_torgb else lrelu_upsampling)
        self.in_cutoff = in_cutoff
        self.out_cutoff = out_cutoff
        self.in_half_width = in_half_width
        self.out_half_width = out_half_width
        self.conv_kernel = 1 if is_torgb else conv_kernel
        self.conv_clamp = conv_clamp
        self.magnitude_ema_beta = magnitude_ema_beta

        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = torch.nn.Parameter(torch.randn([out_channels, in_channels, self.conv_kernel, self.conv_kernel]))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))
        self.register_buffer('magnitude_ema', torch.ones([]))

        # Upsampling to the activation's rate, and its anti-imaging filter.
        self.up_factor = int(np.rint(self.tmp_sampling_rate / in_sampling_rate))
        if in_sampling_rate * self.up_factor != self.tmp_sampling_rate:
            raise ValueError('the activation sampling rate must be an integer multiple of the input rate')
        self.up_taps = filter_size * self.up_factor if self.up_factor > 1 and not is_torgb else 1
        self.register_buffer('up_filter', design_lowpass_filter(
            numtaps=self.up_taps, cutoff=in_cutoff, width=in_half_width * 2, fs=self.tmp_sampling_rate))

        # Downsampling to the output rate, and its anti-aliasing filter (radial in config R,
        # except in the critically sampled layers).
        self.down_factor = int(np.rint(self.tmp_sampling_rate / out_sampling_rate))
        if out_sampling_rate * self.down_factor != self.tmp_sampling_rate:
            raise ValueError('the activation sampling rate must be an integer multiple of the output rate')
        self.down_taps = filter_size * self.down_factor if self.down_factor > 1 and not is_torgb else 1
        self.down_radial = use_radial_filters and not is_critically_sampled
        self.register_buffer('down_filter', design_lowpass_filter(
            numtaps=self.down_taps, cutoff=out_cutoff, width=out_half_width * 2, fs=self.tmp_sampling_rate,
            radial=self.down_radial))

        # Padding of the upsampled conv output so that the result has out_size samples, placed
        # symmetrically (sample centres at half-integer positions).
        pad_total = (self.out_size - 1) * self.down_factor + 1
        pad_total = pad_total - (self.in_size + self.conv_kernel - 1) * self.up_factor
        pad_total = pad_total + self.up_taps + self.down_taps - 2
        pad_lo = (pad_total + self.up_factor) // 2
        pad_hi = pad_total - pad_lo
        self.padding = [int(pad_lo[0]), int(pad_hi[0]), int(pad_lo[1]), int(pad_hi[1])]

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = 'random', force_fp32: bool = False,
                update_emas: bool = False) -> torch.Tensor:
        """``noise_mode`` is checked and ignored (no noise); ``update_emas`` updates ``magnitude_ema``."""
        if noise_mode not in ('random', 'const', 'none'):
            raise ValueError(f"noise_mode must be 'random', 'const' or 'none', got {noise_mode!r}")
        misc.assert_shape(x, [None, self.in_channels, int(self.in_size[1]), int(self.in_size[0])])
        misc.assert_shape(w, [x.shape[0], self.w_dim])

        if update_emas:
            with torch.no_grad():
                magnitude = x.detach().to(torch.float32).square().mean()
                self.magnitude_ema.copy_(magnitude.lerp(self.magnitude_ema, self.magnitude_ema_beta))
        input_gain = self.magnitude_ema.rsqrt()

        styles = self.affine(w)
        if self.is_torgb:
            styles = styles * (1 / np.sqrt(self.in_channels * self.conv_kernel ** 2))

        use_fp16 = self.use_fp16 and not force_fp32 and x.device.type == 'cuda'
        dtype = torch.float16 if use_fp16 else torch.float32
        x = modulated_conv2d(x.to(dtype), self.weight, styles, demodulate=not self.is_torgb,
                             padding=self.conv_kernel - 1, input_gain=input_gain)

        gain = 1 if self.is_torgb else np.sqrt(2)
        slope = 1 if self.is_torgb else 0.2
        x = filtered_lrelu(x, fu=self.up_filter, fd=self.down_filter, b=self.bias.to(x.dtype),
                           up=self.up_factor, down=self.down_factor, padding=self.padding,
                           gain=gain, slope=slope, clamp=self.conv_clamp)
        misc.assert_shape(x, [None, self.out_channels, int(self.out_size[1]), int(self.out_size[0])])
        return x

    def extra_repr(self) -> str:
        return (f'w_dim={self.w_dim}, is_torgb={self.is_torgb}, is_critically_sampled={self.is_critically_sampled}, '
                f'use_fp16={self.use_fp16}, in_sampling_rate={self.in_sampling_rate:g}, '
                f'out_sampling_rate={self.out_sampling_rate:g}, in_cutoff={self.in_cutoff:g}, '
                f'out_cutoff={self.out_cutoff:g}, in_size={list(self.in_size)}, out_size={list(self.out_size)}, '
                f'in_channels={self.in_channels}, out_channels={self.out_channels}')


class SynthesisNetwork(torch.nn.Module):
    """``ws [N, num_ws, w_dim] -> img [N, img_channels, R, R]`` (float32).

    ``input`` (Fourier features) followed by ``num_layers`` synthesis layers and ToRGB, named
    ``L{idx}_{out_size}_{out_channels}`` (``layer_names``). Cutoff frequencies grow
    geometrically from ``first_cutoff`` to ``img_resolution / 2`` (reached ``num_critical``
    layers before the end); every layer works at the smallest power-of-two sampling rate that
    holds its stopband, with ``margin_size`` extra pixels each side except in the last two.
    """

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, channel_base: int = 32768,
                 channel_max: int = 512, num_layers: int = 14, num_critical: int = 2, first_cutoff: float = 2,
                 first_stopband: float = 2 ** 2.1, last_stopband_rel: float = 2 ** 0.3, margin_size: int = 10,
                 output_scale: float = 0.25, num_fp16_res: int = 4, **layer_kwargs):
        super().__init__()
        self.w_dim = w_dim
        self.num_ws = num_layers + 2
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.num_layers = num_layers
        self.num_critical = num_critical
        self.margin_size = margin_size
        self.output_scale = output_scale
        self.num_fp16_res = num_fp16_res

        last_cutoff = img_resolution / 2
        last_stopband = last_cutoff * last_stopband_rel
        exponents = np.minimum(np.arange(num_layers + 1) / (num_layers - num_critical), 1)
        cutoffs = first_cutoff * (last_cutoff / first_cutoff) ** exponents
        stopbands = first_stopband * (last_stopband / first_stopband) ** exponents
        sampling_rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, img_resolution))))
        half_widths = np.maximum(stopbands, sampling_rates / 2) - cutoffs
        sizes = sampling_rates + margin_size * 2
        sizes[-2:] = img_resolution
        channels = np.rint(np.minimum((channel_base / 2) / cutoffs, channel_max))
        channels[-1] = img_channels

        self.input = SynthesisInput(w_dim=w_dim, channels=int(channels[0]), size=int(sizes[0]),
                                    sampling_rate=sampling_rates[0], bandwidth=cutoffs[0])
        self.layer_names = []
        for idx in range(num_layers + 1):
            prev = max(idx - 1, 0)
            layer = SynthesisLayer(
                w_dim=w_dim, is_torgb=(idx == num_layers), is_critically_sampled=(idx >= num_layers - num_critical),
                use_fp16=bool(sampling_rates[idx] * (2 ** num_fp16_res) > img_resolution),
                in_channels=int(channels[prev]), out_channels=int(channels[idx]),
                in_size=int(sizes[prev]), out_size=int(sizes[idx]),
                in_sampling_rate=int(sampling_rates[prev]), out_sampling_rate=int(sampling_rates[idx]),
                in_cutoff=cutoffs[prev], out_cutoff=cutoffs[idx],
                in_half_width=half_widths[prev], out_half_width=half_widths[idx], **layer_kwargs)
            name = f'L{idx}_{layer.out_size[0]}_{layer.out_channels}'
            setattr(self, name, layer)
            self.layer_names.append(name)

    @property
    def layers(self):
        """The synthesis layers in forward order (the last one is ToRGB)."""
        return [getattr(self, name) for name in self.layer_names]

    def noise_layers(self):
        """Always empty: StyleGAN3 has no noise inputs (API of the StyleGAN2 network)."""
        return []

    def forward(self, ws: torch.Tensor, noise: Optional[Sequence[torch.Tensor]] = None, noise_mode: str = 'const',
                force_fp32: bool = False, update_emas: bool = False, transforms: Optional[torch.Tensor] = None,
                **kwargs) -> torch.Tensor:
        """Synthesize ``[N, img_channels, R, R]`` float32 images from ``ws [N, num_ws, w_dim]``.

        ``noise`` must be None or empty (there are no noise inputs); ``noise_mode`` is checked and
        ignored; ``fused_modconv`` (a StyleGAN2 option) is accepted and ignored. ``transforms``
        (``[N, 3, 3]`` or ``[3, 3]``, see ``make_input_transforms``) replaces the input layer's
        ``transform`` buffer for this call, one matrix per latent; None uses the buffer.
        """
        if noise is not None and len(noise) != 0:
            raise ValueError(f'a StyleGAN3 synthesis network has no noise inputs, got {len(noise)} noise maps')
        kwargs.pop('fused_modconv', None)
        if kwargs:
            raise TypeError(f'unexpected synthesis arguments: {", ".join(sorted(kwargs))}')
        misc.assert_shape(ws, [None, self.num_ws, self.w_dim])
        ws = ws.to(torch.float32).unbind(dim=1)
        x = self.input(ws[0]) if transforms is None else self.input(ws[0], transform=transforms)
        for name, w in zip(self.layer_names, ws[1:]):
            x = getattr(self, name)(x, w, noise_mode=noise_mode, force_fp32=force_fp32, update_emas=update_emas)
        if self.output_scale != 1:
            x = x * self.output_scale
        misc.assert_shape(x, [None, self.img_channels, self.img_resolution, self.img_resolution])
        return x.to(torch.float32)

    def extra_repr(self) -> str:
        return (f'w_dim={self.w_dim}, num_ws={self.num_ws}, img_resolution={self.img_resolution}, '
                f'img_channels={self.img_channels}, num_layers={self.num_layers}, '
                f'num_critical={self.num_critical}, margin_size={self.margin_size}, num_fp16_res={self.num_fp16_res}')


class Generator(torch.nn.Module):
    """``G(z [N, z_dim], c [N, c_dim]) -> img [N, img_channels, R, R]`` in about ``[-1, 1]``.

    Constructor as the official one: ``mapping_kwargs`` go to ``MappingNetwork``, every other
    keyword (``channel_base``, ``conv_kernel``, ``use_radial_filters``, ``conv_clamp``, ...) to
    ``SynthesisNetwork`` and its layers.
    """

    architecture = 'stylegan3'

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, img_resolution: int, img_channels: int,
                 mapping_kwargs: Optional[dict] = None, **synthesis_kwargs):
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
                                          **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws,
                                      **(mapping_kwargs or {}))

    @property
    def config(self) -> str:
        """``'R'`` for the rotation-equivariant config (1x1 convolutions, radial filters), else ``'T'``."""
        layer = self.synthesis.layers[0]
        return 'R' if layer.conv_kernel == 1 and any(l.down_radial for l in self.synthesis.layers) else 'T'

    def forward(self, z: torch.Tensor, c: Optional[torch.Tensor], truncation_psi: float = 1,
                truncation_cutoff: Optional[int] = None, update_emas: bool = False, **synthesis_kwargs) -> torch.Tensor:
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                          update_emas=update_emas)
        return self.synthesis(ws, update_emas=update_emas, **synthesis_kwargs)
