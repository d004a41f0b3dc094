"""FFHQ-style face alignment from 68 landmarks, for single photos and for video.

The alignment is a function of the 68 points only (``ffhq_quad``): the eye centres and the
mouth corners define an oriented square (a *quad*) around the face, which ``align_image``
cuts out and resamples to the generator's resolution the way the FFHQ data set was made
(shrink, crop, reflect-pad with blurred borders, quad transform, resize).

For video, the quads are smoothed over time (``smooth_quads``) so the crop does not jitter
with the landmark detector's noise: each quad parameter (centre and half-diagonal vector)
is replaced by a Gaussian-weighted local *linear* fit over neighbouring frames, which removes
frame-to-frame noise but follows steady motion without lag, up to the first and last frame.

Landmarks come from face_alignment (``detect_landmarks``): its S3FD face detector finds the
face box (the largest face), FAN reads the 68 points inside it, and the box is refitted to
the points. In a video the detector runs on the first frame and every later frame starts from
the previous frame's box (a face tracker, which also steadies the box). Without a detector
(``--detector none``, or when it finds no face) the search starts from the centred square of
the frame, which works when the face fills a fair part of it.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image

from landmark_loss import NUM_LANDMARKS, FaceBox, crop_faces, fan_heatmaps, landmarks_from_heatmaps


# ----------------------------------------------------------------------------
# Quads.

def ffhq_quad(points: np.ndarray) -> np.ndarray:
    """Oriented square ``[4, 2]`` (corners: top-left, bottom-left, bottom-right, top-right) for ``[68, 2]`` points."""
    pts = np.asarray(points, dtype=np.float64).reshape(NUM_LANDMARKS, 2)
    eye_left, eye_right = pts[36:42].mean(axis=0), pts[42:48].mean(axis=0)
    eye_avg = (eye_left + eye_right) / 2
    eye_to_eye = eye_right - eye_left
    mouth_avg = (pts[48] + pts[54]) / 2
    eye_to_mouth = mouth_avg - eye_avg

    # x: the square's horizontal half-side, tilted between the eye line and the face's vertical axis.
    x = eye_to_eye + np.array([eye_to_mouth[1], -eye_to_mouth[0]])
    norm = np.hypot(*x)
    x = x / norm if norm > 1e-8 else np.array([1.0, 0.0])
    x = x * max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8, 1e-3)
    y = np.array([-x[1], x[0]])
    c = eye_avg + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def quad_to_params(quad: np.ndarray) -> np.ndarray:
    """``[..., 4, 2]`` quads -> ``[..., 4]`` parameters (centre x, centre y, half-side vector x, y)."""
    quad = np.asarray(quad, dtype=np.float64)
    centre = quad.mean(axis=-2)
    x = (quad[..., 3, :] - quad[..., 0, :] + quad[..., 2, :] - quad[..., 1, :]) / 4
    return np.concatenate([centre, x], axis=-1)


def params_to_quad(params: np.ndarray) -> np.ndarray:
    """Inverse of ``quad_to_params``."""
    params = np.asarray(params, dtype=np.float64)
    c, x = params[..., :2], params[..., 2:]
    y = np.stack([-x[..., 1], x[..., 0]], axis=-1)
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y], axis=-2)


def smooth_track(values: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian-weighted local linear regression along axis 0 of ``[T, ...]``; ``sigma`` in frames.

    ``sigma <= 0`` returns the input. A straight-line track is returned unchanged.
    """
    values = np.asarray(values, dtype=np.float64)
    if sigma <= 0 or len(values) < 3:
        return values.copy()
    t = np.arange(len(values), dtype=np.float64)
    flat = values.reshape(len(values), -1)
    radius = int(np.ceil(3 * sigma))
    out = np.empty_like(flat)
    for i in range(len(values)):
        lo, hi = max(0, i - radius), min(len(values), i + radius + 1)
        dt = t[lo:hi] - t[i]
        w = np.exp(-0.5 * (dt / sigma) ** 2)
        # Weighted least squares for a + b * dt; the value at dt = 0 is a.
        s0, s1, s2 = w.sum(), (w * dt).sum(), (w * dt * dt).sum()
        y = flat[lo:hi]
        m0, m1 = (w[:, None] * y).sum(axis=0), ((w * dt)[:, None] * y).sum(axis=0)
        det = s0 * s2 - s1 * s1
        out[i] = (s2 * m0 - s1 * m1) / det if det > 1e-12 else m0 / s0
    return out.reshape(values.shape)


def smooth_quads(quads: np.ndarray, sigma: float) -> np.ndarray:
    """Smooth a ``[T, 4, 2]`` sequence of quads over time (see ``smooth_track``)."""
    return params_to_quad(smooth_track(quad_to_params(quads), sigma))


# ----------------------------------------------------------------------------
# Cutting out the face.

def align_image(image: np.ndarray, quad: np.ndarray, output_size: int, transform_size: int = 4096,
                enable_padding: bool = True) -> np.ndarray:
    """Resample the ``quad`` region of ``uint8 [H, W, 3]`` to ``uint8 [output_size, output_size, 3]``.

    FFHQ procedure: shrink the image when the quad is much larger than the output, crop to the
    quad's bounding box plus a border, reflect-pad where the quad leaves the image (blurring
    and fading the padding towards the image's median colour), then map the quad to a square.
    """
    from scipy.ndimage import gaussian_filter

    quad = np.asarray(quad, dtype=np.float64).copy()
    img = Image.fromarray(image)
    qsize = max(np.hypot(*(quad[3] - quad[0])), 1.0)

    # Shrink.
    shrink = int(np.floor(qsize / output_size * 0.5))
    if shrink > 1:
        size = (int(np.rint(img.size[0] / shrink)), int(np.rint(img.size[1] / shrink)))
        img = img.resize(size, Image.LANCZOS)
        quad /= shrink
        qsize /= shrink

    # Crop.
    border = max(int(np.rint(qsize * 0.1)), 3)
    lo, hi = np.floor(quad.min(axis=0)).astype(int), np.ceil(quad.max(axis=0)).astype(int)
    crop = (max(lo[0] - border, 0), max(lo[1] - border, 0),
            min(hi[0] + border, img.size[0]), min(hi[1] + border, img.size[1]))
    if crop[2] - crop[0] < img.size[0] or crop[3] - crop[1] < img.size[1]:
        if crop[2] > crop[0] and crop[3] > crop[1]:
            img = img.crop(crop)
            quad -= crop[0:2]

    # Pad.
    lo, hi = np.floor(quad.min(axis=0)).astype(int), np.ceil(quad.max(axis=0)).astype(int)
    pad = np.array([max(-lo[0] + border, 0), max(-lo[1] + border, 0),
                    max(hi[0] - img.size[0] + border, 0), max(hi[1] - img.size[1] + border, 0)])
    if enable_padding and pad.max() > border - 4:
        pad = np.maximum(pad, int(np.rint(qsize * 0.3)))
        arr = np.float32(np.asarray(img))
        arr = np.pad(arr, ((pad[1], pad[3]), (pad[0], pad[2]), (0, 0)), mode='reflect')
        h, w = arr.shape[:2]
        fx = _edge_ramp(w, pad[0], pad[2])[None, :]
        fy = _edge_ramp(h, pad[1], pad[3])[:, None]
        mask = np.maximum(1.0 - np.minimum(fx, 1.0), 1.0 - np.minimum(fy, 1.0))[:, :, None]
        blur = qsize * 0.02
        arr += (gaussian_filter(arr, [blur, blur, 0]) - arr) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
        arr += (np.median(arr, axis=(0, 1)) - arr) * np.clip(mask, 0.0, 1.0)
        img = Image.fromarray(np.uint8(np.clip(np.rint(arr), 0, 255)), 'RGB')
        quad += pad[:2]

    # Transform: PIL's QUAD data are the source corners for the output's top-left, bottom-left,
    # bottom-right and top-right corners, in the same continuous pixel coordinates as ours.
    img = img.transform((transform_size, transform_size), Image.QUAD, tuple(quad.flatten()), Image.BILINEAR)
    if output_size < transform_size:
        img = img.resize((output_size, output_size), Image.LANCZOS)
    return np.asarray(img, dtype=np.uint8)


def _edge_ramp(n: int, pad_lo: int, pad_hi: int) -> np.ndarray:
    """``[n]``: distance to the nearer padded edge in units of that edge's padding (inf without padding)."""
    i = np.arange(n, dtype=np.float32)
    lo = i / pad_lo if pad_lo else np.full(n, np.inf, np.float32)
    hi = (n - 1 - i) / pad_hi if pad_hi else np.full(n, np.inf, np.float32)
    return np.minimum(lo, hi)


# ----------------------------------------------------------------------------
# Face detection (face_alignment's S3FD).

S3FD_URL = 'https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth'
Detector = Callable[[np.ndarray], Optional[FaceBox]]


def load_detector(weights: Optional[str] = None, device: Union[str, torch.device] = 'cpu') -> Detector:
    """face_alignment's S3FD detector as ``detect(image uint8 [H, W, 3]) -> FaceBox or None``.

    Weights come from ``weights`` (a state dict file) or S3FD's official URL (torch hub cache).
    The box of the largest face is converted the way face_alignment frames faces for FAN:
    side ``200/195 * (width + height)``, centre raised by 12% of the height.
    """
    from face_alignment.detection.sfd.sfd_detector import SFDDetector
    from torch_utils import misc
    if weights is None:
        misc.load_state_dict(None, S3FD_URL, '--detector-weights', 'S3FD face detector weights')  # fills the cache
    else:
        misc.load_state_dict(weights, S3FD_URL, '--detector-weights', 'S3FD face detector weights')  # validates
    try:
        detector = SFDDetector(str(torch.device(device)), path_to_detector=weights)
    except RuntimeError as exc:
        from dnnlib.util import UserError
        raise UserError(f'--detector-weights: not S3FD weights ({str(exc).splitlines()[0]})') from None

    def detect(image: np.ndarray) -> Optional[FaceBox]:
        with torch.no_grad():
            boxes = detector.detect_from_image(np.array(image[:, :, :3], dtype=np.float32, copy=True))
        boxes = [b for b in boxes if np.all(np.isfinite(b[:4])) and b[2] > b[0] and b[3] > b[1]]
        if not boxes:
            return None
        x0, y0, x1, y1 = (float(v) for v in max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))[:4])
        h, w = image.shape[:2]
        return FaceBox(float(np.clip((x0 + x1) / 2, 0, w)), float(np.clip((y0 + y1) / 2 - 0.12 * (y1 - y0), 0, h)),
                       float(np.clip(((x1 - x0) + (y1 - y0)) * 200.0 / 195.0, min(h, w) / 4, 2 * min(h, w))))

    return detect


# ----------------------------------------------------------------------------
# Landmarks from FAN.

@torch.no_grad()
def detect_landmarks(fan: torch.nn.Module, image: np.ndarray, box: Optional[FaceBox] = None,
                     refinements: int = 2, detector: Optional[Detector] = None) -> tuple:
    """68 landmarks ``[68, 2]`` (image pixels) of the face in ``uint8 [H, W, 3]``, and the box used.

    FAN runs on ``box``; without one, on the ``detector``'s box, or on the centred square of
    the image when there is no detector or it finds no face. The box is then refitted to the
    landmarks ``refinements`` times.
    """
    device = next(fan.parameters()).device
    h, w = image.shape[:2]
    x = torch.from_numpy(np.array(image, copy=True)).to(device=device, dtype=torch.float32)
    x = x.permute(2, 0, 1)[None] / 127.5 - 1
    if box is None and detector is not None:
        box = detector(image)
    box = box or FaceBox(w / 2, h / 2, float(min(h, w)))
    points = None
    for _ in range(refinements + 1):
        hm = fan_heatmaps(fan, crop_faces(x, box))
        points = landmarks_from_heatmaps(hm, box)[0].cpu().numpy()
        box = FaceBox.from_landmarks(points, w, h)
    return points, box


def align_face(fan: torch.nn.Module, image: np.ndarray, output_size: int,
               detector: Optional[Detector] = None) -> np.ndarray:
    """Detect the landmarks of a photo and return its FFHQ-aligned crop ``[output_size, output_size, 3]``."""
    points, _ = detect_landmarks(fan, image, detector=detector)
    return align_image(image, ffhq_quad(points), output_size)


def align_sequence(fan: torch.nn.Module, frames: Sequence[np.ndarray], output_size: int, sigma: float = 2.0,
                   progress: bool = False, detector: Optional[Detector] = None) -> list:
    """Align every frame of a video with temporally smoothed quads (``sigma`` in frames; 0 = none).

    The detector (if any) finds the face in the first frame; later frames start from the
    previous frame's box.
    """
    from tqdm import tqdm
    quads, box = [], None
    for frame in tqdm(frames, desc='align', unit='frame', disable=not progress, leave=False):
        points, box = detect_landmarks(fan, frame, box, detector=detector)
        quads.append(ffhq_quad(points))
    quads = smooth_quads(np.stack(quads), sigma)
    return [align_image(frame, quad, output_size) for frame, quad in zip(frames, quads)]
