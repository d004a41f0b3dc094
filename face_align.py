"""FFHQ-style face alignment from 68 landmarks, for single photos and for video.

The alignment is a function of the 68 points only (``ffhq_quad``): the eye centres and the
mouth corners define an oriented square (a *quad*) around the face, which ``align_image``
cuts out and resamples to the generator's resolution the way the FFHQ data set was made
(shrink, crop, reflect-pad with blurred borders, quad transform, resize).

For video, the quads are smoothed over time (``smooth_quads``) so the crop does not jitter
with the landmark detector's noise: each quad parameter (centre and half-diagonal vector)
is replaced by a Gaussian-weighted local *linear* fit over neighbouring frames, which removes
frame-to-frame noise but follows steady motion without lag, up to the first and last frame.

Faces are found and read by ``face_landmarks.FaceLandmarks``: the detector (S3FD) finds the
faces, the largest is taken (``face_index`` picks another, ordered by size), and FAN reads its
68 points in face_alignment's crop box. No face is an error ("no face found in FILE"); a face
smaller than a quarter of the output size gives a warning that the result will be blurry. In a
video the face is found in the first frame and followed through the others. Without a detector
(``--detector none``) the search starts from the centred square of the frame, which works when
the face fills a fair part of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import numpy as np
from PIL import Image

import image_io
from face_landmarks import FaceChoice, FaceLandmarks, point_extent
from landmark_loss import NUM_LANDMARKS


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
# Aligning photos and videos (faces found and read by ``face_landmarks.FaceLandmarks``).

BLURRY_FRACTION = 0.25  # a face smaller than this fraction of the output size gets a warning


def blurry_warning(face_size: float, output_size: int, source: str) -> Optional[str]:
    """The warning for a face of ``face_size`` pixels enlarged to ``output_size``, or None."""
    if face_size >= BLURRY_FRACTION * output_size:
        return None
    return (f'the face in {source} is only {face_size:.0f} px, under a quarter of the generator\'s resolution '
            f'({output_size} px): the result will be blurry')


def _face_size(choice: FaceChoice, points: np.ndarray) -> float:
    """A face's size in pixels: the detection's longer side, or (no detector) the landmarks' extent."""
    return choice.detection.side if choice.detection is not None else point_extent(points)


@dataclass
class AlignedFace:
    """An FFHQ-aligned photo and how its face was found."""
    image: np.ndarray             # uint8 [output_size, output_size, 3]
    points: np.ndarray            # [68, 2] landmarks in the source photo
    choice: FaceChoice            # the faces found and the one taken
    face_size: float              # pixels, in the source photo
    warning: Optional[str] = None

    def report(self) -> dict:
        return dict(**self.choice.as_dict(), face_size=self.face_size, warning=self.warning)


def _faces(faces, detector=None) -> FaceLandmarks:
    """A ``FaceLandmarks``; a bare FAN module (the older call form) is wrapped with ``detector``."""
    return faces if isinstance(faces, FaceLandmarks) else FaceLandmarks(faces, detector)


def align_photo(faces: FaceLandmarks, image: np.ndarray, output_size: int, face_index: int = 0,
                source: str = 'the image') -> AlignedFace:
    """Find the face of ``uint8 [H, W, 3]`` and return its FFHQ-aligned crop and how it was found.

    With a detector: the ``face_index``-th largest face (0: the largest); no face is a
    ``UserError`` "no face found in SOURCE". A face under a quarter of ``output_size`` gives a
    ``warning`` (the crop is enlarged more than 4x).
    """
    faces = _faces(faces)
    choice = faces.find_face(image, face_index, source)
    points, _ = faces.landmarks(image, choice.box, refinements=0 if choice.detection is not None else 2)
    size = _face_size(choice, points)
    return AlignedFace(align_image(image, ffhq_quad(points), output_size), points, choice, size,
                       blurry_warning(size, output_size, source))


def frame_photo(faces: FaceLandmarks, image: np.ndarray, output_size: int, align: bool, face_index: int = 0,
                source: str = 'the image') -> Tuple[np.ndarray, Optional[dict], Optional[str]]:
    """A photo framed the way the commands frame a look: ``(uint8 [S, S, 3], face report or None, warning or None)``.

    ``align``: ``align_photo`` (the ``face_index``-th largest face; no face is a ``UserError``);
    otherwise a centre crop, Lanczos-resized to ``output_size``.
    """
    if not align:
        return image_io.centre_crop_resize(image, output_size), None, None
    aligned = align_photo(faces, image, output_size, face_index, source)
    return aligned.image, aligned.report(), aligned.warning


def align_face(faces, image: np.ndarray, output_size: int, detector=None, face_index: int = 0,
               source: str = 'the image', warn: Optional[Callable[[str], None]] = None) -> np.ndarray:
    """``align_photo(...).image``; its warning (if any) goes to ``warn`` (default: a ``warning:`` line on stderr).

    ``faces``: a ``FaceLandmarks``, or (older form) a FAN module with ``detector``.
    """
    aligned = align_photo(_faces(faces, detector), image, output_size, face_index, source)
    if aligned.warning:
        (warn or _warn_stderr)(aligned.warning)
    return aligned.image


def _warn_stderr(message: str) -> None:
    import sys
    print(f'warning: {message}', file=sys.stderr)


class VideoAlignment:
    """FFHQ alignment of a video with temporally smoothed quads (``sigma`` in frames; 0 = none).

    Construction reads every frame once (``frames``: a sequence, or a callable returning a
    fresh iterable of ``uint8 [H, W, 3]`` frames, so a video can be streamed twice instead of
    held in memory): the face is found in the first frame (``FaceLandmarks.track``), followed
    through the others, and the quads are smoothed. Iterating then yields the aligned frames.
    """

    def __init__(self, faces: FaceLandmarks, frames, output_size: int, sigma: float = 2.0,
                 face_index: int = 0, source: str = 'the video', progress: bool = False):
        from tqdm import tqdm
        self.frames = frames
        self.output_size = output_size
        choices: list = []
        quads, first_points = [], None
        tracked = faces.track(self._open(), face_index, source, choice_out=choices)
        for points, _ in tqdm(tracked, desc='align', unit='frame', disable=not progress, leave=False):
            first_points = points if first_points is None else first_points
            quads.append(ffhq_quad(points))
        if not quads:
            raise ValueError('no frames to align')
        self.choice: FaceChoice = choices[0]
        self.quads = smooth_quads(np.stack(quads), sigma)
        self.face_size = _face_size(self.choice, first_points)
        self.warning = blurry_warning(self.face_size, output_size, source)

    def _open(self):
        return self.frames() if callable(self.frames) else iter(self.frames)

    def __len__(self) -> int:
        return len(self.quads)

    def __iter__(self):
        for frame, quad in zip(self._open(), self.quads):
            yield align_image(frame, quad, self.output_size)

    def report(self) -> dict:
        return dict(**self.choice.as_dict(), face_size=self.face_size, warning=self.warning)


def align_sequence(faces, frames, output_size: int, sigma: float = 2.0, progress: bool = False,
                   detector=None, face_index: int = 0, source: str = 'the video') -> list:
    """Every frame of a video, FFHQ-aligned with temporally smoothed quads (``VideoAlignment``), as a list."""
    return list(VideoAlignment(_faces(faces, detector), frames, output_size, sigma, face_index, source, progress))
