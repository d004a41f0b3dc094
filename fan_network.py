"""FAN, the 2D face-alignment network (Bulat & Tzimiropoulos, 2017), as a module of our own.

It computes what ``face_alignment.models.FAN`` computes and takes the same state dicts (the
parameter names are the published checkpoints'), so ``landmark_loss.load_fan`` no longer imports
the ``face_alignment`` package, which brings scikit-image and OpenCV with it: about 0.8 s of every
command's start on the project's 2-core CPU. ``face_alignment`` is still what reads faces with
``--align`` (its S3FD detector) and what ``tests/test_fan_network.py`` compares this module with.

Shapes: ``[N, 3, 256, 256]`` in ``[0, 1]`` -> a list of one ``[N, 68, 64, 64]`` heat-map tensor per
hourglass stack (the last is the refined one).

Every block is pre-activation: batch norm and ReLU come before each convolution.
"""

from __future__ import annotations

from typing import List

import torch
import torch.nn.functional as F
from torch import nn

NUM_POINTS = 68
WIDTH = 256           # channels through the hourglasses
HOURGLASS_DEPTH = 4   # 64x64 down to 4x4


def _bn_relu(bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    return F.relu(bn(x), inplace=True)


class Block(nn.Module):
    """Pre-activation residual block: three 3x3 convolutions of ``out/2``, ``out/4`` and ``out/4``
    channels in a chain, their outputs concatenated (``out`` channels) and added to the input, which
    a batch norm, ReLU and 1x1 convolution bring to ``out`` channels when the widths differ."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        widths = [in_channels, out_channels // 2, out_channels // 4, out_channels // 4]
        for i in range(3):
            self.add_module(f'bn{i + 1}', nn.BatchNorm2d(widths[i]))
            self.add_module(f'conv{i + 1}', nn.Conv2d(widths[i], widths[i + 1], 3, padding=1, bias=False))
        self.downsample = None
        if in_channels != out_channels:  # indices 0 and 2 are the checkpoints' names
            self.downsample = nn.Sequential(nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True),
                                            nn.Conv2d(in_channels, out_channels, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.conv1(_bn_relu(self.bn1, x))
        b = self.conv2(_bn_relu(self.bn2, a))
        c = self.conv3(_bn_relu(self.bn3, b))
        out = torch.cat([a, b, c], dim=1)
        out += x if self.downsample is None else self.downsample(x)
        return out


class Hourglass(nn.Module):
    """Recursive encoder-decoder on ``[N, WIDTH, H, W]``: at each of ``depth`` levels one branch keeps
    the resolution (``b1_<level>``), the other halves it (average pooling, ``b2_<level>``), goes one
    level down (at the bottom, ``b2_plus_1``), is refined (``b3_<level>``) and doubled again
    (nearest neighbour), and the two branches are summed."""

    def __init__(self, depth: int = HOURGLASS_DEPTH, width: int = WIDTH):
        super().__init__()
        self.depth = depth
        for level in range(depth, 0, -1):
            names = ['b1', 'b2', 'b3'] + (['b2_plus'] if level == 1 else [])
            for name in names:
                self.add_module(f'{name}_{level}', Block(width, width))

    def _level(self, level: int, x: torch.Tensor) -> torch.Tensor:
        keep = self._modules[f'b1_{level}'](x)
        low = self._modules[f'b2_{level}'](F.avg_pool2d(x, 2, stride=2))
        low = self._level(level - 1, low) if level > 1 else self._modules['b2_plus_1'](low)
        low = self._modules[f'b3_{level}'](low)
        return keep + F.interpolate(low, scale_factor=2, mode='nearest')

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._level(self.depth, x)


class FAN(nn.Module):
    """``stacks`` hourglasses in a row, each predicting heat maps that the next one refines.

    Stem: 7x7 convolution with stride 2 (``conv1``, ``bn1``), a block to 128 channels, 2x2 average
    pooling, blocks to 128 and 256 channels (64x64 from a 256x256 input). Stack ``i``: hourglass
    ``m<i>``, block ``top_m_<i>``, 1x1 convolution ``conv_last<i>`` with ``bn_end<i>`` and ReLU, and
    the 1x1 heat-map head ``l<i>``; all but the last stack feed their features (``bl<i>``) and heat
    maps (``al<i>``) back into the next stack's input.
    """

    def __init__(self, stacks: int = 4):
        super().__init__()
        if stacks < 1:
            raise ValueError(f'FAN needs at least one hourglass stack, got {stacks}')
        self.stacks = stacks
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = Block(64, 128)
        self.conv3 = Block(128, 128)
        self.conv4 = Block(128, WIDTH)
        for i in range(stacks):
            self.add_module(f'm{i}', Hourglass())
            self.add_module(f'top_m_{i}', Block(WIDTH, WIDTH))
            self.add_module(f'conv_last{i}', nn.Conv2d(WIDTH, WIDTH, 1))
            self.add_module(f'bn_end{i}', nn.BatchNorm2d(WIDTH))
            self.add_module(f'l{i}', nn.Conv2d(WIDTH, NUM_POINTS, 1))
            if i < stacks - 1:
                self.add_module(f'bl{i}', nn.Conv2d(WIDTH, WIDTH, 1))
                self.add_module(f'al{i}', nn.Conv2d(NUM_POINTS, WIDTH, 1))

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        x = _bn_relu(self.bn1, self.conv1(x))
        x = F.avg_pool2d(self.conv2(x), 2, stride=2)
        x = self.conv4(self.conv3(x))
        heatmaps = []
        for i in range(self.stacks):
            features = self._modules[f'top_m_{i}'](self._modules[f'm{i}'](x))
            features = _bn_relu(self._modules[f'bn_end{i}'], self._modules[f'conv_last{i}'](features))
            heatmaps.append(self._modules[f'l{i}'](features))
            if i < self.stacks - 1:
                x = x + self._modules[f'bl{i}'](features) + self._modules[f'al{i}'](heatmaps[-1])
        return heatmaps
