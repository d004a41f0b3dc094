"""LPIPS perceptual distance (VGG variant); targets' features are computed once and held by their user.

Uses the ``lpips`` package: its learned linear layers ship with the package; the VGG16
backbone comes from torchvision's ImageNet weights, downloaded into torch's hub cache on
first use, or from a local file (``--vgg-weights PATH``: a torchvision VGG16 state dict; only
the ``features.*`` entries are read) for machines without internet.

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
        import lpips  # noqa: imported lazily, it is slow to import
        import warnings
        features = _read_vgg_features(vgg_weights)  # first: a bad file fails before any model is built
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            # Random backbone first (no download); then the real VGG16 features are copied in.
            model = lpips.LPIPS(net='vgg', pretrained=True, pnet_rand=True, verbose=False)
        for idx, (start, stop) in enumerate(_VGG_SLICES):
            block = getattr(model.net, f'slice{idx + 1}')
            sub = {k: v for k, v in features.items() if start <= int(k.split('.')[0]) < stop}
            try:
                block.load_state_dict(sub, strict=True)
            except RuntimeError as exc:
                raise UserError(f'VGG16 weights do not fit: {str(exc).splitlines()[0]}') from None
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
        import lpips
        x = self.model.scaling_layer(self._prepare(img))
        return [lpips.normalize_tensor(f) for f in self.model.net(x)]

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
