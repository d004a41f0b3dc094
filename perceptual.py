"""LPIPS perceptual distance (VGG variant); targets' features are computed once and held by their user.

The network is LPIPS v0.1 with the VGG16 backbone, built here: the input scaling, VGG16's
convolutional features cut after ``relu1_2``, ``relu2_2``, ``relu3_3``, ``relu4_3`` and
``relu5_3``, each unit-normalized along channels, and one learned 1x1 weighting per layer whose
spatial mean is summed. The learned weightings are the file ``weights/v0.1/vgg.pth`` that ships
in the ``lpips`` package (read from its folder; the package itself is not imported, since its
import pulls in torchvision and a whole randomly initialized VGG16 with its 100M-parameter
classifier: about 6 s of every command's start). The VGG16 backbone comes from torchvision's
ImageNet weights, downloaded into torch's hub cache on first use, or from a local file
(``--vgg-weights PATH``: a torchvision VGG16 state dict; only the ``features.*`` entries are
read) for machines without internet. ``tests/test_perceptual.py`` checks the distances against
``lpips.LPIPS(net='vgg')`` itself.

Inputs are images ``[N, 3, H, W]`` in ``[-1, 1]``; images larger than 256x256 are first
reduced to 256x256 by area averaging (as the StyleGAN2 projector does).

The loaded ``PerceptualLoss`` holds no target: ``features(img)`` and ``compare(fa, fb)`` are pure,
and ``distance_to(looks)`` returns a ``LookDistance`` that holds its looks' features. Many
projectors (and objectives) can share one network without sharing state.
"""

from __future__ import annotations

from typing import List, Optional, Union

import torch
import torch.nn.functional as F

from dnnlib.util import UserError
from torch_utils import misc

VGG16_URL = 'https://download.pytorch.org/models/vgg16-397923af.pth'

# Index ranges of torchvision's vgg16().features held by lpips' five VGG slices, and the
# indices of the convolutions (the only entries with weights) among them.
_VGG_SLICES = [(0, 4), (4, 9), (9, 16), (16, 23), (23, 30)]
_VGG_CONVS = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
# VGG16 (configuration D) up to relu5_3: output channels of each 3x3 convolution, 'M' a 2x2 max-pool.
_VGG16_LAYERS = [64, 64, 'M', 128, 128, 'M', 256, 256, 256, 'M', 512, 512, 512, 'M', 512, 512, 512]
_LAYER_CHANNELS = [64, 128, 256, 512, 512]
# LPIPS v0.1's input scaling: (x - shift) / scale per RGB channel, for inputs in [-1, 1].
_SHIFT = [-.030, -.088, -.188]
_SCALE = [.458, .448, .450]
_NORM_EPS = 1e-10  # unit normalization: f / (||f||_channels + eps)


def _lpips_package_weights() -> str:
    """The path of the learned LPIPS-VGG weightings in the installed ``lpips`` package (not imported)."""
    import importlib.util
    import os
    spec = importlib.util.find_spec('lpips')
    if spec is None or not spec.submodule_search_locations:
        raise UserError('the lpips package is not installed (pip install -r requirements.txt): its learned '
                        'LPIPS weights are needed')
    path = os.path.join(list(spec.submodule_search_locations)[0], 'weights', 'v0.1', 'vgg.pth')
    if not os.path.isfile(path):
        raise UserError(f'the lpips package has no {path}: reinstall it (pip install --force-reinstall lpips)')
    return path


class _Scaling(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer('shift', torch.tensor(_SHIFT)[None, :, None, None])
        self.register_buffer('scale', torch.tensor(_SCALE)[None, :, None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.shift) / self.scale


class _VGG16Slices(torch.nn.Module):
    """VGG16's features in five slices (children named by their torchvision index); ``forward`` gives the
    five ReLU outputs ``[N, C_k, H / 2^k, W / 2^k]``, ``C = 64, 128, 256, 512, 512``."""

    def __init__(self):
        super().__init__()
        layers, channels = [], 3
        for item in _VGG16_LAYERS:
            if item == 'M':
                layers.append(torch.nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [torch.nn.Conv2d(channels, item, kernel_size=3, padding=1), torch.nn.ReLU(inplace=True)]
                channels = item
        for k, (start, stop) in enumerate(_VGG_SLICES):
            block = torch.nn.Sequential()
            for i in range(start, stop):
                block.add_module(str(i), layers[i])
            setattr(self, f'slice{k + 1}', block)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        outs = []
        for k in range(len(_VGG_SLICES)):
            x = getattr(self, f'slice{k + 1}')(x)
            outs.append(x)
        return outs


class _Weighting(torch.nn.Module):
    """One layer's learned channel weighting: a 1x1 convolution to one channel (key ``model.1.weight``,
    as in the package's file, where ``model.0`` is a dropout that does nothing in evaluation)."""

    def __init__(self, channels: int):
        super().__init__()
        self.model = torch.nn.Sequential(torch.nn.Identity(), torch.nn.Conv2d(channels, 1, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class _LPIPSVGG(torch.nn.Module):
    """The parts of LPIPS-VGG: ``scaling_layer``, ``net`` (the VGG16 slices) and ``lins`` (the weightings)."""

    def __init__(self):
        super().__init__()
        self.scaling_layer = _Scaling()
        self.net = _VGG16Slices()
        self.lins = torch.nn.ModuleList([_Weighting(c) for c in _LAYER_CHANNELS])


def _unit_normalize(f: torch.Tensor) -> torch.Tensor:
    return f / (f.square().sum(dim=1, keepdim=True).sqrt() + _NORM_EPS)


def _read_vgg_features(path: Optional[str]) -> dict:
    """Return the ``features.*`` tensors of a VGG16 state dict from ``path`` or the download cache."""
    state, source = misc.load_state_dict(path, VGG16_URL, '--vgg-weights', 'VGG16 weights for LPIPS')
    features = {k[len('features.'):]: v for k, v in state.items() if k.startswith('features.')}
    missing = [f'features.{i}.{p}' for i in _VGG_CONVS for p in ('weight', 'bias') if f'{i}.{p}' not in features]
    if missing:
        raise UserError(f'{source}: not a VGG16 state dict (missing {missing[0]} and {len(missing) - 1} more)')
    return features


class PerceptualLoss(torch.nn.Module):
    """LPIPS-VGG distances.

    ``distance(a, b)`` compares two batches; ``features(img)`` / ``compare(fa, fb)`` split that in
    two (for targets whose features are computed once); ``distance_to(looks)`` gives a
    ``LookDistance``. ``set_target`` / ``forward`` keep one target inside the network: the old
    form, kept for callers not moved yet (it makes a shared network stateful; prefer ``distance_to``).
    """

    def __init__(self, vgg_weights: Optional[str] = None, device: Union[str, torch.device] = 'cpu'):
        super().__init__()
        features = _read_vgg_features(vgg_weights)  # first: a bad file fails before any model is built
        learned = torch.load(_lpips_package_weights(), map_location='cpu', weights_only=True)
        model = _LPIPSVGG()
        for idx, lin in enumerate(model.lins):
            lin.load_state_dict({'model.1.weight': learned[f'lin{idx}.model.1.weight']}, strict=True)
        for idx, (start, stop) in enumerate(_VGG_SLICES):
            block = getattr(model.net, f'slice{idx + 1}')
            sub = {k: v for k, v in features.items() if start <= int(k.split('.')[0]) < stop}
            try:
                block.load_state_dict(sub, strict=True)
            except RuntimeError as exc:
                raise UserError(f'{vgg_weights or VGG16_URL}: VGG16 weights do not fit: '
                                f'{misc.state_dict_mismatch(exc)}') from None
        self.model = model.eval().requires_grad_(False).to(device)
        self._target_feats: Optional[List[torch.Tensor]] = None
        self.eval()

    @staticmethod
    def _prepare(img: torch.Tensor) -> torch.Tensor:
        if img.ndim != 4 or img.shape[1] != 3:
            raise ValueError(f'expected images [N, 3, H, W], got {list(img.shape)}')
        if img.shape[2] > 256 or img.shape[3] > 256:
            img = F.interpolate(img, size=(256, 256), mode='area')
        return img

    def features(self, img: torch.Tensor) -> List[torch.Tensor]:
        """Unit-normalized VGG features of ``img`` at the five LPIPS layers."""
        x = misc.conv_layout(self.model.scaling_layer(self._prepare(img)))
        return [_unit_normalize(f) for f in self.model.net(x)]

    def compare(self, feats_a: List[torch.Tensor], feats_b: List[torch.Tensor]) -> torch.Tensor:
        """LPIPS distances ``[N]`` from features of ``features``; ``feats_b`` may have batch 1 (broadcast)."""
        total = 0
        for lin, fa, fb in zip(self.model.lins, feats_a, feats_b):
            total = total + lin((fa - fb) ** 2).mean(dim=[2, 3])
        return total.reshape(-1)

    def distance_to(self, looks: torch.Tensor) -> 'LookDistance':
        """A ``LookDistance`` to ``looks [P, 3, H, W]`` in ``[-1, 1]`` (their features computed now, once)."""
        return LookDistance(self, looks)

    @torch.no_grad()
    def set_target(self, target: torch.Tensor) -> None:
        """Old form: keep ``target [1, 3, H, W]``'s features inside this network for ``forward``."""
        if target.shape[0] != 1:
            raise ValueError('the target must be a single image')
        self._target_feats = [f.detach() for f in self.features(target)]

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        if self._target_feats is None:
            raise RuntimeError('set_target() first')
        return self.compare(self.features(img), self._target_feats)

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """LPIPS distances ``[N]`` between two batches of images."""
        return self.compare(self.features(a), self.features(b))


class LookDistance:
    """LPIPS distance to fixed look images, holding their features (the network stays stateless).

    ``looks``: ``[P, 3, H, W]`` in ``[-1, 1]``. ``__call__(images [N, 3, H, W], index=None) -> [N]``:
    with one look every image is compared with it; with ``P`` looks, image ``j`` is compared with
    look ``index[j]`` (``index`` as ``optimization.project`` passes it; default ``0..N-1``).
    """

    def __init__(self, perceptual: PerceptualLoss, looks: torch.Tensor):
        if looks.ndim != 4 or looks.shape[1] != 3:
            raise ValueError(f'expected looks [P, 3, H, W], got {list(looks.shape)}')
        self.perceptual = perceptual
        with torch.no_grad():
            self.features = [f.detach() for f in perceptual.features(looks)]
        self.num_targets = int(looks.shape[0])

    def __call__(self, images: torch.Tensor, index: Optional[torch.Tensor] = None) -> torch.Tensor:
        feats = self.features
        if self.num_targets > 1:
            if index is None:
                if images.shape[0] != self.num_targets:
                    raise ValueError(f'{images.shape[0]} images for {self.num_targets} looks: pass the index')
                index = torch.arange(images.shape[0])
            index = index.to(feats[0].device)
            feats = [f[index] for f in feats]
        return self.perceptual.compare(self.perceptual.features(images), feats)
