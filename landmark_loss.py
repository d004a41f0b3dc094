"""Facial-landmark heat maps and the heat-map loss (HL).

FAN (face_alignment's 2D network, 68 landmarks) turns a 256x256 RGB face crop in ``[0, 1]``
into heat maps ``[N, 68, 64, 64]``. The loss between an image ``x`` and a landmark target
``x_t`` is

    HL(x, x_t) = || Wg * (FAN(crop(x)) - FAN(crop(x_t))) ||_2

the square root of the sum of squares over all landmarks and heat-map pixels, with ``Wg`` the
per-landmark weight from nine landmark groups.

What FAN sees: FAN was trained on face crops framed by a detected face box. Here FAN sees a
256x256 crop of the face region (``crop_faces``, differentiable), taken with *one* box for a
target and for every synthesized image compared with it. The box follows face_alignment's rule
from the face detector's box (side ``200 * (w + h) / 195``, centre raised by ``0.12 * h``; see
``face_landmarks``); without a detector it is fitted to the landmarks FAN finds on the target
(``FaceBox.from_landmarks``). When the crop reduces (a 1024x1024 face read at 256x256 is a 4x
reduction), the image is first reduced with an antialiased (triangle-filter) resize, so every
pixel of the face contributes to the crop and gets a gradient, and the heat maps do not alias;
the original tool area-downsampled the whole image to 256x256 for the same reason.

Coordinates are continuous pixel coordinates of the image: pixel ``i`` covers ``[i, i+1)``.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

import precision as precision_mod
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
    """face_alignment's 2D FAN (``fan_network.FAN``) with weights from ``weights`` (a state dict
    file) or its official URL.

    The number of hourglass modules is read from the weights, so 1- to 4-module FANs load.
    Returns the network in eval mode with gradients disabled for its parameters.
    """
    from fan_network import FAN
    state = _fan_state_dict(weights)
    hourglasses = {int(k.split('.')[0][1:]) for k in state if k.split('.')[0][:1] == 'm' and k.split('.')[0][1:].isdigit()}
    if not hourglasses:
        raise UserError(f'{weights or FAN_URL}: not a FAN state dict (no hourglass modules)')
    fan = FAN(max(hourglasses) + 1)
    try:
        fan.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise UserError(f'{weights or FAN_URL}: FAN weights do not fit: {misc.state_dict_mismatch(exc)}') from None
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
        """A FAN box fitted to ``[68, 2]`` landmarks: face_alignment's rule applied to their extent.

        The fallback when no detector box is at hand (``--detector none``, a tracked video
        frame): the landmarks' extent is smaller than a detector's box, so this box is tighter
        than the one face_alignment would take (``face_landmarks.Detection.fan_box``). The side
        is clamped to ``[S/4, 2S]`` (``S`` the image's shorter side) and the centre to
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


BoxArg = Union[FaceBox, Sequence[FaceBox]]


def _box_list(box: BoxArg, n: int) -> List[FaceBox]:
    boxes = [box] * n if isinstance(box, FaceBox) else list(box)
    if len(boxes) != n:
        raise ValueError(f'{len(boxes)} boxes for {n} images')
    return boxes


def crop_faces(images: torch.Tensor, box: BoxArg, out_size: int = CROP_SIZE) -> torch.Tensor:
    """Differentiable square crop: ``[N, 3, H, W]`` in ``[-1, 1]`` -> ``[N, 3, out, out]`` in ``[0, 1]``.

    ``box``: one ``FaceBox`` for all images, or one per image. Bilinear sampling; when the box
    is larger than ``out_size`` pixels (the crop reduces), the image is first reduced by the
    same factor with an antialiased resize (``F.interpolate(..., antialias=True)``: a triangle
    filter as wide as the reduction), so that the sampling runs at about one pixel per pixel.
    Parts of the box outside the image are black. ``H`` and ``W`` may differ.
    """
    misc.assert_shape(images, [None, None, None, None])
    boxes = _box_list(box, images.shape[0])
    if all(b == boxes[0] for b in boxes[1:]):
        return _crop(images, boxes[0], out_size)
    return torch.cat([_crop(images[i:i + 1], b, out_size) for i, b in enumerate(boxes)])


def _crop(images: torch.Tensor, box: FaceBox, out_size: int) -> torch.Tensor:
    n, c, h, w = images.shape
    x = (images + 1) / 2
    reduction = box.size / out_size  # image pixels per crop pixel
    if reduction > 1 + 1e-6:
        # The reduced image covers the same extent, so the crop's normalized grid below is unchanged.
        size = (max(1, int(round(h / reduction))), max(1, int(round(w / reduction))))
        x = F.interpolate(x, size=size, mode='bilinear', antialias=True, align_corners=False)
    theta = torch.tensor([[box.size / w, 0, 2 * box.cx / w - 1],
                          [0, box.size / h, 2 * box.cy / h - 1]], dtype=x.dtype, device=x.device)
    grid = F.affine_grid(theta[None].expand(n, 2, 3), [n, c, out_size, out_size], align_corners=False)
    # Border padding keeps the image's own edge pixels inside it (zero padding would darken a
    # half-pixel ring); outside the image the crop is then set to black, as FAN's crops are.
    crops = F.grid_sample(x, grid, mode='bilinear', padding_mode='border', align_corners=False)
    inside = (grid.abs() <= 1).all(dim=-1, keepdim=True).permute(0, 3, 1, 2)
    return crops * inside.to(crops.dtype)


# ----------------------------------------------------------------------------
# Heat maps, landmarks and the loss.

def fan_heatmaps(fan: torch.nn.Module, crops: torch.Tensor) -> torch.Tensor:
    """Heat maps ``[N, 68, 64, 64]`` (last hourglass) of 256x256 crops ``[N, 3, 256, 256]`` in ``[0, 1]``."""
    misc.assert_shape(crops, [None, 3, CROP_SIZE, CROP_SIZE])
    if crops.device.type == 'cpu' and torch.is_autocast_enabled('cpu') and not precision_mod.cpu_supports_bf16():
        # Without native bfloat16 kernels (an AVX2-only CPU) FAN's bf16 convolutions take the
        # reference path: one forward+backward of a 1-hourglass FAN at 256x256 took over 3 minutes
        # against 0.33 s in fp32. There it runs in fp32 while the rest keeps what was asked for.
        # With native kernels bf16 FAN is faster (4 hourglasses: 0.50 s against 0.77 s, AVX-512).
        with torch.autocast('cpu', enabled=False):
            out = fan(crops.float())
    else:
        out = fan(misc.conv_layout(crops))
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


def landmarks_from_heatmaps(heatmaps: torch.Tensor, box: BoxArg) -> torch.Tensor:
    """Landmark positions ``[N, 68, 2]`` (x, y image pixels) from heat maps ``[N, 68, h, w]``.

    Arg-max, moved a quarter pixel towards the larger neighbour in x and y (sub-pixel
    refinement), taken at the pixel centre, then mapped from the heat-map grid through the box
    (one for all, or one per sample).
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
    boxes = _box_list(box, n)
    cx, cy, size = (torch.tensor([[getattr(b, a)] for b in boxes], dtype=pts.dtype, device=pts.device)
                    for a in ('cx', 'cy', 'size'))
    scale = size / w
    return torch.stack([cx + (pts[..., 0] - w / 2) * scale, cy + (pts[..., 1] - h / 2) * scale], dim=-1)


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
    """The heat-map loss against ``T`` landmark target images (one, or one per video frame).

    ``faces``: a ``face_landmarks.FaceLandmarks`` (FAN and detector), or a bare FAN module.
    ``targets``: ``[T, 3, H, W]`` in ``[-1, 1]``, or an iterable of ``[k, 3, H, W]`` pieces (only
    their heat maps are kept). ``boxes``: the FAN crop box of each target
    (one for all, or one per target; default: ``FaceLandmarks.face_box`` of each target). The
    boxes and the targets' heat maps are computed once, without gradients, from the clean
    targets; a synthesized image compared with target ``t`` is cropped with target ``t``'s box.

    ``forward(images [b, 3, H, W], index=None) -> [b]``: ``index`` (``[b]`` ints) says which
    target each image is compared with; without it, all images use target 0 when ``T == 1``,
    and image ``i`` uses target ``i`` when ``b == T``. The heat maps it computed are kept in
    ``last_heatmaps`` (detached, with ``last_index``), so progress reports and video frames can
    read the landmarks without running FAN again.
    """

    def __init__(self, faces, targets: Union[torch.Tensor, Iterable[torch.Tensor]],
                 group_weights: Sequence[float] = DEFAULT_GROUP_WEIGHTS,
                 boxes: Union[None, FaceBox, Sequence[FaceBox]] = None, box: Optional[FaceBox] = None,
                 chunk_size: int = 8):
        super().__init__()
        from face_landmarks import FaceLandmarks
        self.faces = faces if isinstance(faces, FaceLandmarks) else FaceLandmarks(faces)
        self.fan = self.faces.fan
        boxes = box if boxes is None else boxes
        # ``targets``: a tensor, or an iterable of ``[k, 3, H, W]`` tensors (e.g. video frames read
        # one at a time), so that only heat maps, not all target images, are held.
        pieces = ([targets[t:t + chunk_size] for t in range(0, targets.shape[0], chunk_size)]
                  if isinstance(targets, torch.Tensor) else targets)
        given = None if boxes is None else ([boxes] if isinstance(boxes, FaceBox) else list(boxes))
        found: List[FaceBox] = []
        maps, first = [], None
        with torch.no_grad():
            for piece in pieces:
                misc.assert_shape(piece, [None, 3, None, None])
                first = piece if first is None else first
                k = piece.shape[0]
                if given is None:
                    piece_boxes = [self.faces.face_box(piece[j:j + 1]) for j in range(k)]
                elif len(given) == 1:
                    piece_boxes = given * k
                else:
                    piece_boxes = given[len(found):len(found) + k]
                    if len(piece_boxes) != k:
                        raise ValueError(f'{len(given)} boxes for more targets')
                found += piece_boxes
                maps.append(self.faces.heatmaps(piece, piece_boxes).detach())
        if first is None:
            raise ValueError('no landmark targets')
        self.num_targets = len(found)
        if given is not None and len(given) not in (1, self.num_targets):
            raise ValueError(f'{len(given)} boxes for {self.num_targets} targets')
        self.boxes: List[FaceBox] = found
        self.resolution = int(first.shape[-1])
        self.register_buffer('point_weights', landmark_weight_vector(group_weights).to(first.device))
        self.register_buffer('target_heatmaps', torch.cat(maps))
        self.target_landmarks = landmarks_from_heatmaps(self.target_heatmaps, self.boxes)  # [T, 68, 2]
        self.last_heatmaps: Optional[torch.Tensor] = None
        self.last_index: Optional[torch.Tensor] = None

    @classmethod
    def from_points(cls, faces, points, resolution: int, group_weights: Sequence[float] = DEFAULT_GROUP_WEIGHTS,
                    boxes: Union[None, FaceBox, Sequence[FaceBox]] = None,
                    device: Union[str, torch.device, None] = None) -> 'LandmarkLoss':
        """The loss against landmark coordinates instead of target images (no photo involved).

        ``points``: ``[68, 2]`` or ``[T, 68, 2]`` pixels of the generator's ``resolution``.
        ``boxes``: FAN's crop box per target (default: face_alignment's box for the points,
        ``landmark_targets.target_box``). The target heat maps are FAN-style Gaussians rendered
        from the points (``landmark_targets.render_heatmaps``); the landmark error is measured
        against the points themselves.
        """
        from face_landmarks import FaceLandmarks
        from landmark_targets import render_heatmaps, target_box
        pts = torch.as_tensor(np.asarray(points.detach().cpu() if isinstance(points, torch.Tensor) else points,
                                         dtype=np.float32))
        pts = pts[None] if pts.ndim == 2 else pts
        misc.assert_shape(pts, [None, 68, 2])
        T = pts.shape[0]
        if boxes is None:
            box_list = [target_box(p.numpy(), resolution) for p in pts]
        else:
            box_list = [boxes] * T if isinstance(boxes, FaceBox) else list(boxes)
            if len(box_list) == 1:
                box_list = box_list * T
            if len(box_list) != T:
                raise ValueError(f'{len(box_list)} boxes for {T} targets')
        self = cls.__new__(cls)
        torch.nn.Module.__init__(self)
        self.faces = faces if isinstance(faces, FaceLandmarks) else FaceLandmarks(faces)
        self.fan = self.faces.fan
        device = torch.device(device) if device is not None else self.faces.device
        self.num_targets = T
        self.boxes = box_list
        self.resolution = int(resolution)
        self.register_buffer('point_weights', landmark_weight_vector(group_weights).to(device))
        self.register_buffer('target_heatmaps', render_heatmaps(pts, box_list, device=device))
        self.target_landmarks = pts.to(device)
        self.last_heatmaps = None
        self.last_index = None
        return self

    @property
    def box(self) -> FaceBox:
        """The first target's box (the only one for a single target)."""
        return self.boxes[0]

    def _index(self, n: int, index) -> torch.Tensor:
        if index is None:
            if self.num_targets == 1:
                return torch.zeros(n, dtype=torch.long)
            if n != self.num_targets:
                raise ValueError(f'{n} images for {self.num_targets} targets: pass index')
            return torch.arange(n)
        index = torch.as_tensor(index, dtype=torch.long).reshape(-1).cpu()
        if len(index) != n:
            raise ValueError(f'index has {len(index)} entries for {n} images')
        return index

    def heatmaps(self, images: torch.Tensor, index=None) -> torch.Tensor:
        idx = self._index(images.shape[0], index)
        return self.faces.heatmaps(images, [self.boxes[i] for i in idx.tolist()])

    def forward(self, images: torch.Tensor, index=None) -> torch.Tensor:
        idx = self._index(images.shape[0], index)
        hm = self.faces.heatmaps(images, [self.boxes[i] for i in idx.tolist()])
        self.last_heatmaps, self.last_index = hm.detach(), idx
        return heatmap_loss(hm, self.target_heatmaps[idx.to(self.target_heatmaps.device)], self.point_weights)

    def landmarks(self, heatmaps: Optional[torch.Tensor] = None, index=None) -> torch.Tensor:
        """Landmarks ``[N, 68, 2]`` of ``heatmaps`` (default: those of the last forward)."""
        if heatmaps is None:
            if self.last_heatmaps is None:
                raise RuntimeError('no heat maps yet: call forward() first')
            heatmaps, index = self.last_heatmaps, self.last_index
        idx = self._index(heatmaps.shape[0], index)
        return landmarks_from_heatmaps(heatmaps, [self.boxes[i] for i in idx.tolist()])

    @torch.no_grad()
    def measure(self, image: torch.Tensor, index: int = 0) -> Tuple[float, np.ndarray]:
        """Normalized landmark error and landmarks ``[68, 2]`` of one image ``[1, 3, H, W]`` against target ``index``."""
        hm = self.heatmaps(image, [index])
        return float(self.error(hm, [index])[0]), self.landmarks(hm, [index])[0].cpu().numpy()

    def error(self, heatmaps: Optional[torch.Tensor] = None, index=None) -> torch.Tensor:
        """Normalized landmark error ``[N]`` of ``heatmaps`` (default: the last forward) to their targets."""
        if heatmaps is None:
            if self.last_heatmaps is None:
                raise RuntimeError('no heat maps yet: call forward() first')
            heatmaps, index = self.last_heatmaps, self.last_index
        idx = self._index(heatmaps.shape[0], index)
        points = self.landmarks(heatmaps, idx)
        return landmark_error(points, self.target_landmarks[idx.to(self.target_landmarks.device)].to(points.device))
