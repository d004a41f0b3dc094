"""Finding faces and reading their 68 landmarks: one object for the face detector, FAN, its heat
maps and the measurements taken from them.

``FaceLandmarks`` holds face_alignment's 2D FAN and, optionally, its S3FD face detector:

* ``detect(image)``: every face the detector finds, as ``Detection`` corner boxes, largest first;
* ``find_face(image, face_index, source)``: the face to use (``FaceChoice``): the largest by
  default, another with ``face_index``; no face is a ``UserError`` "no face found in SOURCE";
* ``face_box(image)``: the box FAN's crop is taken from (``FaceBox``, see *The FAN crop box*);
* ``heatmaps(images, box)``: FAN's heat maps ``[N, 68, 64, 64]`` of a differentiable crop;
* ``landmarks(image)``: 68 points ``[68, 2]`` in image pixels, and the box they were read in;
* ``loss(targets, group_weights)``: the heat-map loss against target images (``LandmarkLoss``).

The FAN crop box (face_alignment's rule, ``api.py`` of face_alignment 1.x): from a detector
box with corners ``(x0, y0)``, ``(x1, y1)``, FAN sees the square of side ``200 * scale`` with
``scale = ((x1 - x0) + (y1 - y0)) / 195`` (195: the detector's *reference scale*), centred at
``((x0 + x1) / 2, (y0 + y1) / 2 - 0.12 * (y1 - y0))`` (raised by 12% of the box height), resized
to 256x256. ``Detection.fan_box`` applies exactly this rule. Without a detector (``--detector
none``) or for a frame of a tracked video, the box is fitted to landmarks instead
(``FaceBox.from_landmarks``), which only approximates it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from dnnlib.util import UserError
from landmark_loss import (DEFAULT_GROUP_WEIGHTS, FAN_URL, NUM_LANDMARKS, FaceBox, LandmarkLoss, crop_faces,
                           fan_heatmaps, landmarks_from_heatmaps, load_fan)
from torch_utils import misc

S3FD_URL = 'https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth'
REFERENCE_SCALE = 195.0   # face_alignment's S3FD reference scale
CROP_SCALE_FACTOR = 200.0  # side of FAN's crop, in units of ``scale``
CENTER_Y_OFFSET = 0.12     # the crop centre is raised by this fraction of the box height

__all__ = ['S3FD_URL', 'Detection', 'FaceChoice', 'FaceLandmarks', 'load_s3fd', 'FAN_URL']


# ----------------------------------------------------------------------------
# Detections.

@dataclass(frozen=True)
class Detection:
    """A face the detector found: corners ``(x0, y0)``, ``(x1, y1)`` in image pixels and a score."""
    x0: float
    y0: float
    x1: float
    y1: float
    score: float = 1.0

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    @property
    def area(self) -> float:
        return self.width * self.height

    @property
    def side(self) -> float:
        """The longer side in pixels: the face's size."""
        return max(self.width, self.height)

    def fan_box(self) -> FaceBox:
        """The square FAN sees for this face, by face_alignment's rule (see the module docstring)."""
        scale = (self.width + self.height) / REFERENCE_SCALE
        return FaceBox((self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2 - CENTER_Y_OFFSET * self.height,
                       CROP_SCALE_FACTOR * scale)

    def as_dict(self) -> dict:
        return dict(x0=self.x0, y0=self.y0, x1=self.x1, y1=self.y1, score=self.score)


def as_detections(boxes, image_size: Optional[Tuple[int, int]] = None) -> List[Detection]:
    """Valid ``Detection`` s from a detector's output, largest first.

    ``boxes``: ``Detection`` s or rows ``(x0, y0, x1, y1[, score])`` (S3FD's ``[K, 5]``); rows
    that are not finite or have no area are dropped, and so (given ``image_size``, ``(width,
    height)``) are boxes whose centre is outside the image. Equal areas keep the detector's order.
    """
    out = []
    for b in boxes if boxes is not None else ():
        if not isinstance(b, Detection):
            values = [float(v) for v in np.asarray(b, dtype=np.float64).reshape(-1)]
            if len(values) < 4:
                raise ValueError(f'a detection needs 4 or 5 numbers, got {len(values)}')
            b = Detection(*values[:4], score=values[4] if len(values) > 4 else 1.0)
        if not (np.all(np.isfinite([b.x0, b.y0, b.x1, b.y1])) and b.width > 0 and b.height > 0):
            continue
        if image_size is not None and not (0 <= (b.x0 + b.x1) / 2 <= image_size[0]
                                           and 0 <= (b.y0 + b.y1) / 2 <= image_size[1]):
            continue
        out.append(b)
    return sorted(out, key=lambda d: -d.area)


Detector = Callable[[np.ndarray], Sequence]  # uint8 [H, W, 3] -> boxes (see ``as_detections``)


def load_s3fd(weights: Optional[str] = None, device: Union[str, torch.device] = 'cpu') -> Detector:
    """face_alignment's S3FD as ``detect(image uint8 [H, W, 3] RGB) -> [K, 5]`` boxes with scores.

    Weights come from ``weights`` (a state dict file) or S3FD's official URL (torch hub cache);
    a missing or wrong file is a ``UserError`` naming ``--detector-weights``.
    """
    from face_alignment.detection.sfd.sfd_detector import SFDDetector
    misc.load_state_dict(weights, S3FD_URL, '--detector-weights', 'S3FD face detector weights')  # validates / caches
    try:
        detector = SFDDetector(str(torch.device(device)), path_to_detector=weights)
    except RuntimeError as exc:
        raise UserError(f'--detector-weights {weights or S3FD_URL}: not S3FD weights '
                        f'({misc.state_dict_mismatch(exc)})') from None

    def detect(image: np.ndarray):
        with torch.no_grad():
            return detector.detect_from_image(np.array(image[:, :, :3], dtype=np.float32, copy=True))

    return detect


# ----------------------------------------------------------------------------
# The face chosen in a photo.

@dataclass
class FaceChoice:
    """Which face of a photo is used: every detection (largest first), the index taken, its box."""
    detections: List[Detection]
    index: Optional[int]             # into ``detections``; None without a detector
    box: FaceBox                     # where FAN looks first

    @property
    def detection(self) -> Optional[Detection]:
        return None if self.index is None else self.detections[self.index]

    def as_dict(self) -> dict:
        """For run reports: how many faces were found and which one (and box) was taken."""
        d = self.detection
        return dict(faces_found=None if self.index is None else len(self.detections), face_index=self.index,
                    detection=None if d is None else d.as_dict(),
                    fan_box=dict(cx=self.box.cx, cy=self.box.cy, size=self.box.size))


# ----------------------------------------------------------------------------
# The object.

def _to_tensor(image, device) -> torch.Tensor:
    """``uint8 [H, W, 3]`` or a ``[1, 3, H, W]`` tensor in ``[-1, 1]`` -> ``[1, 3, H, W]`` on ``device``."""
    if isinstance(image, torch.Tensor):
        misc.assert_shape(image, [1, 3, None, None])
        return image.to(device=device, dtype=torch.float32)
    x = torch.from_numpy(np.array(image[:, :, :3], dtype=np.uint8, copy=True)).to(device=device, dtype=torch.float32)
    return x.permute(2, 0, 1)[None] / 127.5 - 1


def _to_uint8(image) -> np.ndarray:
    if isinstance(image, torch.Tensor):
        misc.assert_shape(image, [1, 3, None, None])
        x = (image[0].detach().float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)
        return x.permute(1, 2, 0).cpu().numpy()
    return np.asarray(image)[:, :, :3]


class FaceLandmarks:
    """FAN (68 landmarks) and an optional face detector; see the module docstring.

    ``fan``: face_alignment's FAN (``landmark_loss.load_fan``), frozen. ``detector``: a callable
    ``uint8 [H, W, 3] -> boxes`` (``load_s3fd``, or a stub in tests), or None.
    """

    def __init__(self, fan: torch.nn.Module, detector: Optional[Detector] = None):
        self.fan = fan
        self.detector = detector
        self._memo: Optional['collections.OrderedDict'] = None
        self._memo_size = 0

    def remember_landmarks(self, max_images: int = 4096) -> None:
        """Keep ``landmarks`` results of ``uint8`` images read in a given box, keyed by the image's
        content, so that an image met again (a look shared by many rows of ``--pairs``, or a row's
        landmark target that is the next row's look) is not read by FAN again. The points are the
        same as a new reading's; at most ``max_images`` entries are kept (least recently used go)."""
        import collections
        self._memo = collections.OrderedDict()
        self._memo_size = int(max_images)

    def _memo_key(self, image, box: Optional[FaceBox], refinements: Optional[int]):
        if self._memo is None or box is None or not isinstance(image, np.ndarray) or image.dtype != np.uint8:
            return None
        import hashlib
        digest = hashlib.blake2b(np.ascontiguousarray(image).tobytes(), digest_size=16).hexdigest()
        autocast = torch.is_autocast_enabled(self.device.type) and str(torch.get_autocast_dtype(self.device.type))
        return digest, image.shape, box, refinements or 0, autocast

    @classmethod
    def load(cls, fan_weights: Optional[str] = None, detector: Optional[str] = 'sfd',
             detector_weights: Optional[str] = None, device: Union[str, torch.device] = 'cpu',
             fan: Optional[torch.nn.Module] = None) -> 'FaceLandmarks':
        """FAN from ``fan_weights`` (or its URL; or an already loaded ``fan``) and the detector
        named on the command line: ``'sfd'`` (S3FD from ``detector_weights`` or its URL) or
        ``'none'`` / None (no detector)."""
        fan = fan if fan is not None else load_fan(fan_weights, device)
        if detector not in (None, 'none', 'sfd'):
            raise UserError(f"--detector must be 'sfd' or 'none', got {detector!r}")
        return cls(fan, load_s3fd(detector_weights, device) if detector == 'sfd' else None)

    @property
    def device(self) -> torch.device:
        return misc.module_device(self.fan)

    # --- finding faces ---------------------------------------------------------------------
    def detect(self, image) -> List[Detection]:
        """Every face the detector finds in ``uint8 [H, W, 3]`` (or ``[1, 3, H, W]``), largest first."""
        if self.detector is None:
            return []
        pixels = _to_uint8(image)
        return as_detections(self.detector(pixels), (pixels.shape[1], pixels.shape[0]))

    def find_face(self, image, face_index: int = 0, source: str = 'the image') -> FaceChoice:
        """The face to use: the ``face_index``-th largest (0: the largest).

        Without a detector the search starts from the image's centred square. With one, no face
        is a ``UserError`` "no face found in SOURCE", and a ``face_index`` beyond the faces found
        is one too.
        """
        if face_index < 0:
            raise UserError(f'--face-index must be >= 0, got {face_index}')
        if self.detector is None:
            h, w = _to_uint8(image).shape[:2]
            return FaceChoice([], None, FaceBox(w / 2, h / 2, float(min(h, w))))
        found = self.detect(image)
        if not found:
            raise UserError(f'no face found in {source}')
        if face_index >= len(found):
            raise UserError(f'--face-index {face_index}: only {len(found)} face{"s" if len(found) > 1 else ""} '
                            f'found in {source} (indices 0 to {len(found) - 1}, largest first)')
        return FaceChoice(found, face_index, found[face_index].fan_box())

    def face_box(self, image) -> FaceBox:
        """The box FAN's crop of ``image`` is taken from, for the heat-map loss.

        With a detector that finds a face: face_alignment's rule on the largest detection.
        Otherwise FAN runs once on the whole image and the box is fitted to the landmarks it
        finds (``FaceBox.from_landmarks``).
        """
        if self.detector is not None:
            found = self.detect(image)
            if found:
                return found[0].fan_box()
        x = _to_tensor(image, self.device)
        full = FaceBox.full(int(x.shape[-1])) if x.shape[-1] == x.shape[-2] else \
            FaceBox(x.shape[-1] / 2, x.shape[-2] / 2, float(max(x.shape[-2:])))
        with torch.no_grad():
            points = landmarks_from_heatmaps(self.heatmaps(x, full), full)[0].cpu().numpy()
        return FaceBox.from_landmarks(points, int(x.shape[-1]), int(x.shape[-2]))

    # --- FAN ---------------------------------------------------------------------------------
    def heatmaps(self, images: torch.Tensor, box: Union[FaceBox, Sequence[FaceBox]]) -> torch.Tensor:
        """Heat maps ``[N, 68, 64, 64]`` of ``images [N, 3, H, W]`` in ``[-1, 1]`` cropped at ``box`` (differentiable)."""
        return fan_heatmaps(self.fan, crop_faces(images, box))

    @torch.no_grad()
    def landmarks(self, image, box: Optional[FaceBox] = None, refinements: Optional[int] = None,
                  face_index: int = 0, source: str = 'the image') -> Tuple[np.ndarray, FaceBox]:
        """68 landmarks ``[68, 2]`` (image pixels) of a face in ``image``, and the box they were read in.

        ``box`` given: FAN reads that box. Otherwise the detector's box (``find_face``; no face
        is an error) is read once, as face_alignment does; without a detector the search starts
        from the centred square and the box is refitted to the landmarks ``refinements`` times
        (default 2).
        """
        key = self._memo_key(image, box, refinements)
        if key is not None and key in self._memo:
            self._memo.move_to_end(key)
            points, found = self._memo[key]
            return points.copy(), found
        x = _to_tensor(image, self.device)
        if box is None:
            choice = self.find_face(image, face_index, source)
            box = choice.box
            if refinements is None:
                refinements = 0 if choice.detection is not None else 2
        refinements = refinements or 0
        h, w = int(x.shape[-2]), int(x.shape[-1])
        points = landmarks_from_heatmaps(self.heatmaps(x, box), box)[0].cpu().numpy()
        for _ in range(refinements):
            box = FaceBox.from_landmarks(points, w, h)
            points = landmarks_from_heatmaps(self.heatmaps(x, box), box)[0].cpu().numpy()
        if key is not None:
            self._memo[key] = (points.copy(), box)
            if len(self._memo) > self._memo_size:
                self._memo.popitem(last=False)
        return points, box

    def track(self, frames: Iterable, face_index: int = 0, source: str = 'the video',
              choice_out: Optional[list] = None) -> Iterator[Tuple[np.ndarray, FaceBox]]:
        """Landmarks ``[68, 2]`` and box of every frame of a video (a face tracker).

        The face is found in the first frame (``find_face``); every later frame is read in the
        box that follows the previous frame's landmarks: ``FaceBox.from_landmarks`` of them,
        rescaled and shifted the way the first frame's box relates to its own landmarks, so the
        crop keeps the first frame's framing. ``choice_out`` (a list) receives the first frame's
        ``FaceChoice``.
        """
        relation = None
        points = None
        for frame in frames:
            h, w = _to_uint8(frame).shape[:2]
            if points is None:
                choice = self.find_face(frame, face_index, source)
                if choice_out is not None:
                    choice_out.append(choice)
                points, box = self.landmarks(frame, choice.box,
                                             refinements=0 if choice.detection is not None else 2)
                fitted = FaceBox.from_landmarks(points, w, h)
                relation = (box.size / fitted.size, (box.cx - fitted.cx) / fitted.size,
                            (box.cy - fitted.cy) / fitted.size)
            else:
                fitted = FaceBox.from_landmarks(points, w, h)
                k, dx, dy = relation
                box = FaceBox(fitted.cx + dx * fitted.size, fitted.cy + dy * fitted.size, fitted.size * k)
                points, box = self.landmarks(frame, box, refinements=0)
            yield points, box

    # --- the loss ----------------------------------------------------------------------------
    def loss(self, targets: torch.Tensor, group_weights: Sequence[float] = DEFAULT_GROUP_WEIGHTS,
             boxes: Union[None, FaceBox, Sequence[FaceBox]] = None) -> LandmarkLoss:
        """The heat-map loss against ``targets [T, 3, H, W]`` in ``[-1, 1]`` (one box per target, ``face_box``)."""
        return LandmarkLoss(self, targets, group_weights, boxes)


def point_extent(points: np.ndarray) -> float:
    """The longer side of the landmarks' bounding box (a face size when there is no detection)."""
    pts = np.asarray(points, dtype=np.float64).reshape(NUM_LANDMARKS, 2)
    return float((pts.max(axis=0) - pts.min(axis=0)).max())
