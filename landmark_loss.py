"""Facial-landmark heat maps and the heat-map loss (HL).

FAN (face_alignment's 2D network, 68 landmarks) turns a 256x256 RGB face crop in ``[0, 1]``
into heat maps ``[N, 68, 64, 64]``. The loss between an image ``x`` and a landmark target
``x_t`` is

    HL(x, x_t) = || Wg * (FAN(crop(x)) - FAN(crop(x_t))) ||_2

the square root of the sum of squares over all landmarks and heat-map pixels, with ``Wg`` the
per-landmark weight from nine landmark groups.

What FAN sees: FAN was trained on face crops whose scale follows a face box. The original
tool fed it the whole image; here FAN sees a 256x256 crop of the face region, taken with
``grid_sample`` (differentiable) using *one* box for the target and for every synthesized
image. The box comes from the target: FAN first runs on the whole target image, and the box
is then fitted to the landmarks it finds, the way face_alignment frames a detected face
(box side ``200/195 * (width + height)`` of the landmarks' extent, centre raised by 12% of
the height). Since projections are FFHQ-aligned faces of the same geometry, the target's box
frames them too, and the loss compares heat maps in one coordinate frame.

Coordinates are continuous pixel coordinates of the image: pixel ``i`` covers ``[i, i+1)``.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from dnnlib.util import UserError
from torch_utils import misc

FAN_URL = 'https://www.adrianbulat.com/downloads/python-fan/2DFAN4-11f355bf06.pth.tar'
CROP_SIZE = 256
HEATMAP_SIZE = 64
NUM_LANDMARKS = 68

# 68-point iBUG order, 0-based inclusive ranges.
LANDMARK_GROUPS = OrderedDict([
    ('jaw', (0, 16)),
    ('left_eyebrow', (17, 21)),
    ('right_eyebrow', (22, 26)),
    ('nose_bridge', (27, 30)),
    ('lower_nose', (31, 35)),
    ('left_eye', (36, 41)),
    ('right_eye', (42, 47)),
    ('outer_lip', (48, 59)),
    ('inner_lip', (60, 67)),
])
DEFAULT_GROUP_WEIGHTS = (0.05, 1, 1, 0.1, 1, 1, 1, 5, 5)
DEFAULT_GROUP_WEIGHTS_TEXT = ','.join(f'{w:g}' for w in DEFAULT_GROUP_WEIGHTS)  # as the CLI takes it
OUTER_EYE_CORNERS = (36, 45)
_CLOSED_GROUPS = {'left_eye', 'right_eye', 'outer_lip', 'inner_lip'}


# ----------------------------------------------------------------------------
# Landmark groups and weights.

def parse_group_weights(text: Union[str, Sequence[float]]) -> Tuple[float, ...]:
    """Nine comma-separated non-negative numbers, in the order of ``LANDMARK_GROUPS``."""
    if isinstance(text, str):
        parts = [p.strip() for p in text.split(',') if p.strip()]
        try:
            values = tuple(float(p) for p in parts)
        except ValueError:
            raise UserError(f'--landmark_weights: not a list of numbers: {text!r}') from None
    else:
        values = tuple(float(v) for v in text)
    if len(values) != len(LANDMARK_GROUPS):
        raise UserError(f'--landmark_weights: expected {len(LANDMARK_GROUPS)} comma-separated weights '
                        f'({", ".join(LANDMARK_GROUPS)}), got {len(values)}')
    if any(not np.isfinite(v) or v < 0 for v in values):
        raise UserError('--landmark_weights: weights must be finite and non-negative')
    if not any(values):
        raise UserError('--landmark_weights: all nine weights are zero; to switch the landmark term off, '
                        'pass --landmark_weight 0')
    return values


def landmark_weight_vector(group_weights: Sequence[float] = DEFAULT_GROUP_WEIGHTS) -> torch.Tensor:
    """Per-landmark weights ``[68]`` from nine group weights."""
    group_weights = parse_group_weights(group_weights)
    weights = torch.full([NUM_LANDMARKS], float('nan'))
    for (first, last), value in zip(LANDMARK_GROUPS.values(), group_weights):
        weights[first:last + 1] = value
    assert not torch.isnan(weights).any(), 'landmark groups must cover all 68 points'
    return weights


# ----------------------------------------------------------------------------
# FAN.

def _fan_state_dict(path: Optional[str]) -> dict:
    state, _ = misc.load_state_dict(path, FAN_URL, '--fan-weights', 'FAN landmark weights')
    return {k[len('module.'):] if k.startswith('module.') else k: v for k, v in state.items()}


def load_fan(weights: Optional[str] = None, device: Union[str, torch.device] = 'cpu') -> torch.nn.Module:
    """face_alignment's 2D FAN with weights from ``weights`` (a state dict file) or its official URL.

    The number of hourglass modules is read from the weights, so 1- to 4-module FANs load.
    Returns the network in eval mode with gradients disabled for its parameters.
    """
    from face_alignment.models import FAN
    state = _fan_state_dict(weights)
    hourglasses = {int(k.split('.')[0][1:]) for k in state if k.split('.')[0][:1] == 'm' and k.split('.')[0][1:].isdigit()}
    if not hourglasses:
        raise UserError(f'{weights or FAN_URL}: not a FAN state dict (no hourglass modules)')
    fan = FAN(max(hourglasses) + 1)
    try:
        fan.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise UserError(f'{weights or FAN_URL}: FAN weights do not fit: {str(exc).splitlines()[0]}') from None
    return fan.eval().requires_grad_(False).to(device)


# ----------------------------------------------------------------------------
# Face box and crop.

@dataclass(frozen=True)
class FaceBox:
    """A square face region: centre ``(cx, cy)`` and side ``size``, in image pixels."""
    cx: float
    cy: float
    size: float

    @staticmethod
    def full(resolution: int) -> 'FaceBox':
        """The whole image (how the original tool framed faces)."""
        return FaceBox(resolution / 2, resolution / 2, float(resolution))

    @staticmethod
    def from_landmarks(points: np.ndarray, image_width: int, image_height: Optional[int] = None) -> 'FaceBox':
        """The box face_alignment would use for a face with these ``[68, 2]`` landmarks.

        The side is clamped to ``[S/4, 2S]`` (``S`` the image's shorter side) and the centre to
        the image, so that even meaningless landmarks (an untrained FAN) give a usable box.
        """
        image_height = image_width if image_height is None else image_height
        short = min(image_width, image_height)
        points = np.asarray(points, dtype=np.float64).reshape(NUM_LANDMARKS, 2)
        (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
        width, height = x1 - x0, y1 - y0
        size = float(np.clip((width + height) * 200.0 / 195.0, short / 4, short * 2))
        cx = float(np.clip((x0 + x1) / 2, 0, image_width))
        cy = float(np.clip((y0 + y1) / 2 - 0.12 * height, 0, image_height))
        return FaceBox(cx, cy, size)


def crop_faces(images: torch.Tensor, box: FaceBox, out_size: int = CROP_SIZE) -> torch.Tensor:
    """Differentiable square crop: ``[N, 3, H, W]`` in ``[-1, 1]`` -> ``[N, 3, out, out]`` in ``[0, 1]``.

    Bilinear sampling; parts of the box outside the image are black. ``H`` and ``W`` may differ.
    """
    n, c, h, w = images.shape
    theta = torch.tensor([[box.size / w, 0, 2 * box.cx / w - 1],
                          [0, box.size / h, 2 * box.cy / h - 1]], dtype=images.dtype, device=images.device)
    grid = F.affine_grid(theta[None].expand(n, 2, 3), [n, c, out_size, out_size], align_corners=False)
    # Border padding keeps the image's own edge pixels inside it (zero padding would darken a
    # half-pixel ring); outside the image the crop is then set to black, as FAN's crops are.
    crops = F.grid_sample((images + 1) / 2, grid, mode='bilinear', padding_mode='border', align_corners=False)
    inside = (grid.abs() <= 1).all(dim=-1, keepdim=True).permute(0, 3, 1, 2)
    return crops * inside.to(crops.dtype)


# ----------------------------------------------------------------------------
# Heat maps, landmarks and the loss.

def fan_heatmaps(fan: torch.nn.Module, crops: torch.Tensor) -> torch.Tensor:
    """Heat maps ``[N, 68, 64, 64]`` (last hourglass) of 256x256 crops ``[N, 3, 256, 256]`` in ``[0, 1]``."""
    misc.assert_shape(crops, [None, 3, CROP_SIZE, CROP_SIZE])
    out = fan(crops)
    out = out[-1] if isinstance(out, (list, tuple)) else out
    misc.assert_shape(out, [crops.shape[0], NUM_LANDMARKS, HEATMAP_SIZE, HEATMAP_SIZE])
    return out


def heatmap_loss(heatmaps: torch.Tensor, target_heatmaps: torch.Tensor, point_weights: torch.Tensor) -> torch.Tensor:
    """``|| Wg * (H - H_t) ||_2`` per sample: ``[N, 68, h, w]``, ``[1 or N, 68, h, w]``, ``[68]`` -> ``[N]``."""
    diff = (heatmaps - target_heatmaps) * point_weights.reshape(1, -1, 1, 1)
    sq = diff.square().sum(dim=[1, 2, 3])
    # sqrt has an infinite gradient at 0: where the loss is exactly 0, return 0 with a zero gradient.
    positive = sq > 0
    return torch.where(positive, torch.where(positive, sq, torch.ones_like(sq)).sqrt(), torch.zeros_like(sq))


def landmarks_from_heatmaps(heatmaps: torch.Tensor, box: FaceBox) -> torch.Tensor:
    """Landmark positions ``[N, 68, 2]`` (x, y image pixels) from heat maps ``[N, 68, h, w]``.

    Arg-max, moved a quarter pixel towards the larger neighbour in x and y (sub-pixel
    refinement), taken at the pixel centre, then mapped from the heat-map grid through the box.
    """
    hm = heatmaps.detach().float()
    n, k, h, w = hm.shape
    flat = hm.reshape(n, k, h * w).argmax(dim=2)
    ys, xs = (flat // w), (flat % w)
    pts = torch.stack([xs, ys], dim=-1).float()
    inner = (xs > 0) & (xs < w - 1) & (ys > 0) & (ys < h - 1)
    xi, yi = xs.clamp(1, w - 2), ys.clamp(1, h - 2)
    gather = lambda yy, xx: hm.reshape(n, k, h * w).gather(2, (yy * w + xx)[..., None])[..., 0]  # noqa: E731
    dx = gather(yi, xi + 1) - gather(yi, xi - 1)
    dy = gather(yi + 1, xi) - gather(yi - 1, xi)
    pts = pts + 0.25 * torch.stack([dx.sign(), dy.sign()], dim=-1) * inner[..., None]
    pts = pts + 0.5
    scale = box.size / w
    return torch.stack([box.cx + (pts[..., 0] - w / 2) * scale, box.cy + (pts[..., 1] - h / 2) * scale], dim=-1)


def landmark_error(points: torch.Tensor, target_points: torch.Tensor) -> torch.Tensor:
    """Mean point distance divided by the target's outer-eye-corner distance: ``[N, 68, 2]`` -> ``[N]``."""
    a, b = OUTER_EYE_CORNERS
    eye_dist = (target_points[..., a, :] - target_points[..., b, :]).norm(dim=-1).clamp_min(1e-6)
    return (points - target_points).norm(dim=-1).mean(dim=-1) / eye_dist


def draw_landmarks(image: np.ndarray, points, color=(0, 255, 0)) -> np.ndarray:
    """Return a copy of ``uint8 [H, W, 3]`` with the 68 landmarks drawn as group outlines."""
    from PIL import Image, ImageDraw
    pts = np.asarray(points, dtype=np.float64).reshape(NUM_LANDMARKS, 2) - 0.5
    canvas = Image.fromarray(np.ascontiguousarray(image))
    draw = ImageDraw.Draw(canvas)
    width = max(1, image.shape[0] // 256)
    for name, (first, last) in LANDMARK_GROUPS.items():
        seq = [tuple(p) for p in pts[first:last + 1]]
        if name in _CLOSED_GROUPS:
            seq.append(seq[0])
        draw.line(seq, fill=tuple(color), width=width)
    radius = max(1, image.shape[0] // 200)
    for x, y in pts:
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=tuple(color))
    return np.asarray(canvas, dtype=np.uint8)


class LandmarkLoss(torch.nn.Module):
    """The heat-map loss against one landmark target image.

    ``target``: ``[1, 3, R, R]`` in ``[-1, 1]``. The face box and the target's heat maps are
    computed once, without gradients, from the clean target. ``forward(images [N, 3, R, R])``
    returns ``[N]`` and keeps the heat maps it computed in ``last_heatmaps`` (detached), so
    progress reports and video frames can read the landmarks without running FAN again.
    """

    def __init__(self, fan: torch.nn.Module, target: torch.Tensor,
                 group_weights: Sequence[float] = DEFAULT_GROUP_WEIGHTS, box: Optional[FaceBox] = None):
        super().__init__()
        misc.assert_shape(target, [1, 3, None, None])
        self.fan = fan
        self.resolution = int(target.shape[-1])
        self.register_buffer('point_weights', landmark_weight_vector(group_weights).to(target.device))
        with torch.no_grad():
            if box is None:
                first = fan_heatmaps(fan, crop_faces(target, FaceBox.full(self.resolution)))
                points = landmarks_from_heatmaps(first, FaceBox.full(self.resolution))[0].cpu().numpy()
                box = FaceBox.from_landmarks(points, self.resolution)
            self.box = box
            self.register_buffer('target_heatmaps', self.heatmaps(target).detach())
        self.target_landmarks = landmarks_from_heatmaps(self.target_heatmaps, box)  # [1, 68, 2]
        self.last_heatmaps: Optional[torch.Tensor] = None

    def heatmaps(self, images: torch.Tensor) -> torch.Tensor:
        return fan_heatmaps(self.fan, crop_faces(images, self.box))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        hm = self.heatmaps(images)
        self.last_heatmaps = hm.detach()
        return heatmap_loss(hm, self.target_heatmaps, self.point_weights)

    def landmarks(self, heatmaps: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Landmarks ``[N, 68, 2]`` of ``heatmaps`` (default: those of the last forward)."""
        hm = self.last_heatmaps if heatmaps is None else heatmaps
        if hm is None:
            raise RuntimeError('no heat maps yet: call forward() first')
        return landmarks_from_heatmaps(hm, self.box)

    @torch.no_grad()
    def measure(self, image: torch.Tensor) -> Tuple[float, np.ndarray]:
        """Normalized landmark error and landmarks ``[68, 2]`` of one image ``[1, 3, R, R]`` (FAN runs once)."""
        hm = self.heatmaps(image)
        return float(self.error(hm)[0]), self.landmarks(hm)[0].cpu().numpy()

    def error(self, heatmaps: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Normalized landmark error ``[N]`` of ``heatmaps`` (default: the last forward) to the target."""
        return landmark_error(self.landmarks(heatmaps), self.target_landmarks)
