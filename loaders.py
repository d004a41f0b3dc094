"""Load what a run reads: the frozen networks (G and D from a pickle, FAN, LPIPS) and saved projections.

``Networks`` is read-only once loaded (a frozen dataclass of eval-mode networks without gradients);
whatever depends on a target (a look's LPIPS features, a landmark target's heat maps) is held by
the projector or objective that uses it, never by the networks, so several projectors can share
one ``Networks``.

A projection file (``projected_w.npz``) holds the latent under ``w`` (``[1, num_ws, w_dim]``) and
the optimized noise maps, one array ``[1, 1, r, r]`` per noise buffer keyed by the buffer's name in
``G.synthesis`` (``b4.conv1.noise_const``, ``b8.conv0.noise_const``, ...). ``load_projection``
reads both, so that ``G.synthesis(w, noise=...)`` reproduces ``proj.png``; files without noise
maps (older ones, or another tool's) get the generator's own constant noise.
"""

from __future__ import annotations

import copy
import os
import sys
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import numpy as np
import torch

import legacy
import dnnlib
from dnnlib.util import UserError


@dataclass(frozen=True)
class Networks:
    G: torch.nn.Module                      # networks.Generator (G_ema), eval, frozen
    D: Optional[torch.nn.Module] = None     # networks.Discriminator, when asked for
    fan: Optional[torch.nn.Module] = None   # face_alignment FAN, when asked for
    perceptual: Optional[torch.nn.Module] = None  # perceptual.PerceptualLoss (stateless use), when asked for
    facenet: Optional[torch.nn.Module] = None     # identity.InceptionResnetV1, when the identity term or score is asked for
    info: Dict[str, object] = field(default_factory=dict)  # what the pickle was: network_info() (report.json 'network')


def network_info(G, data: Optional[dict] = None) -> Dict[str, object]:
    """What a report records about a loaded generator: family (``ada``, ``tf`` or ``sg3-repo``, as
    ``legacy.load_network_pkl`` says), architecture (``stylegan2`` / ``stylegan3``), pickle protocol,
    resolution, ``num_ws``, ``w_dim``, ``c_dim`` (and StyleGAN3's ``config``, T or R)."""
    data = data or {}
    info = dict(family=data.get('family', 'ada'), architecture=getattr(G, 'architecture', 'stylegan2'),
                pickle_protocol=data.get('protocol'), resolution=int(G.img_resolution), num_ws=int(G.num_ws),
                w_dim=int(G.w_dim), c_dim=int(G.c_dim))
    if getattr(G, 'config', None):  # StyleGAN3: 'T' or 'R', as legacy.py --info says
        info['config'] = G.config
    return info


def _frozen(module: torch.nn.Module, device) -> torch.nn.Module:
    return module.eval().requires_grad_(False).to(device)


def load_networks(network_pkl: str, device: torch.device, fan_weights: Optional[str] = None,
                  vgg_weights: Optional[str] = None, need_D: bool = False, need_fan: bool = True,
                  need_lpips: bool = True, need_identity: bool = False, id_weights: Optional[str] = None,
                  identity_optional: bool = False) -> Networks:
    """Load what a run needs (``need_lpips=False``: VGG is not read at all; ``need_identity``:
    FaceNet from ``id_weights`` or the hub cache); every missing or unreadable file raises ``UserError``,
    except FaceNet's with ``identity_optional`` (it was wanted for the identity score only, found
    in the cache): a warning on stderr, and the run goes on without the score."""
    try:
        opened = dnnlib.util.open_url(network_pkl)
    except UserError as exc:
        text = str(exc)
        raise UserError(text if text.startswith('--network') else f'--network: {text}') from None
    with opened as f:
        try:
            data = legacy.load_network_pkl(f)
        except legacy.NetworkLoadError as exc:
            where = ''
            if dnnlib.util.is_url(network_pkl) and not network_pkl.lower().startswith('file:'):
                where = (f' (read from the cached download {dnnlib.util.cached_path(network_pkl)}: delete it to '
                         f'download the file again)')
            raise legacy.NetworkLoadError(f'--network {network_pkl}: {exc}{where}') from None
    G = data['G_ema'] if data['G_ema'] is not None else data['G']
    if G is None:
        raise legacy.NetworkLoadError(f'{network_pkl} holds no generator')
    if G.img_channels != 3:
        raise legacy.NetworkLoadError(f'{network_pkl}: the generator makes {G.img_channels}-channel images; '
                                      f'faces need RGB')
    if G.c_dim:
        print(f'warning: {network_pkl} is a conditional network ({G.c_dim} classes): it is used with no class '
              f'(an all-zero label), for the mean of W and the realism term too', file=sys.stderr)
    D = None
    if need_D:
        D = data['D']
        if D is None:
            raise legacy.NetworkLoadError(f'{network_pkl} holds no discriminator (needed for --d_weight)')
        D = _frozen(D, device)
    fan = perceptual = None
    if need_fan:
        from landmark_loss import load_fan
        fan = _frozen(load_fan(fan_weights, device), device)
    if need_lpips:
        from perceptual import PerceptualLoss
        perceptual = _frozen(PerceptualLoss(vgg_weights, device), device)
    facenet = None
    if need_identity:
        from identity import load_facenet
        try:
            facenet = _frozen(load_facenet(id_weights, device), device)
        except UserError as exc:
            if not identity_optional:
                raise
            print(f'warning: no identity score: {exc}', file=sys.stderr)
    return Networks(G=_frozen(G, device), D=D, fan=fan, perceptual=perceptual, facenet=facenet,
                    info=network_info(G, data))


# ----------------------------------------------------------------------------
# Saved projections.

@dataclass
class Projection:
    """A saved latent and its noise maps, on the generator's device."""
    w: torch.Tensor                    # [1, num_ws, w_dim]
    noise: Dict[str, torch.Tensor]     # {buffer name: [1, 1, r, r]}; {} for a generator without noise
    noise_saved: bool                  # False: the file had no noise maps (the generator's own are used)


def projection_arrays(ws: torch.Tensor, noise: Dict[str, torch.Tensor]) -> Dict[str, np.ndarray]:
    """What ``projected_w.npz`` holds for one latent: ``w`` and one float32 array per noise buffer."""
    arrays = {'w': ws.detach().cpu().numpy().astype(np.float32)}
    for name, value in noise.items():
        arrays[name] = value.detach().cpu().numpy().astype(np.float32).reshape(1, 1, *value.shape[-2:])
    return arrays


def split_latent_index(path: str) -> Tuple[str, Optional[int]]:
    """``'latents.npz#12'`` -> ``('latents.npz', 12)``: one latent of a file holding several (an
    animation's ``latents.npz``). A path that exists as given is never split."""
    text = str(path)
    base, sep, index = text.rpartition('#')
    if sep and base.lower().endswith('.npz') and not os.path.exists(text):
        if not index.isdigit():
            raise UserError(f'{text}: after # comes the number of a latent in the file, from 0 (got {index!r})')
        return base, int(index)
    return text, None


def load_projection(path: str, G, what: str = 'projection') -> Projection:
    """Read ``w`` and the noise maps of a ``projected_w.npz`` for ``G``; ``UserError`` when it does not fit.

    ``w`` may be stored as ``[1, num_ws, w_dim]`` or ``[num_ws, w_dim]``; ``FILE.npz#K`` takes latent
    ``K`` (from 0) of a file holding ``[T, num_ws, w_dim]`` (``projector_video.py``'s latents.npz,
    whose noise maps all its frames share). Noise maps must be all of ``G``'s noise buffers (or none:
    then ``G``'s own constant noise is returned). Values must be finite.
    """
    from optimization import const_noise, noise_buffer_names
    from torch_utils import misc
    path, index = split_latent_index(path)
    try:
        with np.load(path) as data:
            arrays = {k: np.asarray(data[k]) for k in data.files}
    except Exception as exc:
        raise UserError(f'{what}: {path} is not a readable .npz file ({exc.__class__.__name__})') from None
    if 'w' not in arrays:
        raise UserError(f'{what}: {path} has no latent under the key "w"')
    w = arrays['w'].astype(np.float32)
    stored_shape = list(w.shape)
    if index is not None:
        if w.ndim != 3 or not 0 <= index < w.shape[0]:
            count = w.shape[0] if w.ndim == 3 else 1
            raise UserError(f'{what}: {path}#{index}: the file holds {count} latent{"s" if count != 1 else ""} '
                            f'({stored_shape}); #K takes one of them, K from 0 to {count - 1}')
        w = w[index]
    if w.ndim == 3 and w.shape[0] == 1:
        w = w[0]
    if w.shape != (G.num_ws, G.w_dim):
        several = (f'; for one of them add #K (K from 0 to {w.shape[0] - 1}) to the path'
                   if w.ndim == 3 and w.shape[1:] == (G.num_ws, G.w_dim) else '')
        raise UserError(f'{what}: {path} holds latents of shape {stored_shape}; this network needs '
                        f'[1, {G.num_ws}, {G.w_dim}] (one latent){several}')
    if not np.isfinite(w).all():
        raise UserError(f'{what}: {path}: the latent holds NaN or infinite values (a diverged run?)')
    device = misc.module_device(G.synthesis)
    names = noise_buffer_names(G)
    stored = [k for k in arrays if k.endswith('.noise_const')]
    if not stored:
        return Projection(w=torch.from_numpy(w[None]).to(device), noise=const_noise(G), noise_saved=False)
    if sorted(stored) != sorted(names):
        raise UserError(f'{what}: {path} holds noise maps for another network ({len(stored)} maps, '
                        f'this one has {len(names)} noise buffers)')
    noise = {}
    for name, (_, layer) in zip(names, G.synthesis.noise_layers()):
        value = arrays[name].astype(np.float32)
        if value.size != layer.resolution ** 2:
            raise UserError(f'{what}: {path}: noise map {name} has shape {list(value.shape)}, this network needs '
                            f'[1, 1, {layer.resolution}, {layer.resolution}]')
        if not np.isfinite(value).all():
            raise UserError(f'{what}: {path}: noise map {name} holds NaN or infinite values')
        noise[name] = torch.from_numpy(value.reshape(1, 1, layer.resolution, layer.resolution)).to(device)
    return Projection(w=torch.from_numpy(w[None]).to(device), noise=noise, noise_saved=True)


def with_noise_buffers(G, noise: Dict[str, torch.Tensor]):
    """A deep copy of ``G`` whose constant noise buffers are ``noise`` (``G`` itself is not changed).

    ``with_noise_buffers(G, p.noise).synthesis(p.w, noise_mode='const')`` renders a projection
    the way the original projector's deep copy of G held its optimized noise.
    """
    G2 = copy.deepcopy(G)
    buffers = dict(G2.synthesis.named_buffers())
    with torch.no_grad():
        for name, value in noise.items():
            if name not in buffers:
                raise ValueError(f'the generator has no noise buffer {name!r}')
            buffers[name].copy_(value.reshape(buffers[name].shape))
    return G2
