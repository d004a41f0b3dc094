"""What ``--target_landmarks`` gives a projection: a landmark target read from an image or from a
coordinate file, and optionally retargeted onto the look's face (``--retarget``).

* An **image** target is what the original tool used: FAN's heat maps of the (centre-cropped)
  photo are the target of the heat-map loss.
* A **landmark file** (``.json``, ``.npy``, ``.npz``, ``.pts``; see ``landmark_targets``) gives
  68 points; the target heat maps are rendered from them (``LandmarkLoss.from_points``), so no
  photo is involved.
* ``--retarget``: the target's points (read from the file, or FAN's on the image) are aligned to
  the look's with a similarity transform on stable points, and only the named groups (default:
  eyebrows, eyes, lips) are taken from them; the look keeps its jaw and nose. The loss then aims
  at these *used* points, rendered as heat maps.

All points are ``[68, 2]`` float pixels of the generator's ``R x R`` image (pixel centres at
``i + 0.5``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

import image_io
import landmark_targets
from face_landmarks import FaceLandmarks
from landmark_loss import DEFAULT_GROUP_WEIGHTS, FaceBox, LandmarkLoss, draw_landmarks, landmark_error
from torch_utils import misc

__all__ = ['LandmarkTarget', 'load_target', 'is_landmark_file']

is_landmark_file = landmark_targets.is_landmark_file


@dataclass
class LandmarkTarget:
    """A projection's landmark target, at the generator's resolution."""
    source: str                               # the path given
    kind: str                                 # 'image' or 'points'
    image: Optional[np.ndarray]               # uint8 [R, R, 3] for image targets, else None
    points: np.ndarray                        # [68, 2]: the target's own points (the file's, or FAN's on the image)
    used: np.ndarray                          # [68, 2]: what the loss aims at (== points unless retargeted)
    look_points: Optional[np.ndarray] = None  # [68, 2]: FAN's points on the look
    retarget_groups: Optional[Tuple[str, ...]] = None
    box: Optional[FaceBox] = None             # image targets: the box FAN read ``points`` in (the loss's box)

    @property
    def resolution(self) -> int:
        return int(self.image.shape[0]) if self.image is not None else self._resolution

    def loss(self, faces: FaceLandmarks, group_weights: Sequence[float] = DEFAULT_GROUP_WEIGHTS,
             device=None) -> LandmarkLoss:
        """The heat-map loss for this target: FAN's heat maps of the image, or maps rendered from the used points."""
        if self.kind == 'image' and self.retarget_groups is None:
            return LandmarkLoss(faces, image_io.to_tensor(self.image, device or faces.device), group_weights,
                                box=self.box)
        return LandmarkLoss.from_points(faces, self.used, self.resolution, group_weights, device=device)

    def panel(self) -> np.ndarray:
        """``uint8 [R, R, 3]``: the target image (or a grey canvas for a file) with the used points drawn."""
        R = self.resolution
        base = self.image if self.image is not None else np.full([R, R, 3], 96, dtype=np.uint8)
        return draw_landmarks(base, self.used, color=(255, 64, 64))

    def error_to_used(self, projection_points: np.ndarray) -> float:
        """Normalized landmark error of the projection's points to the used target (outer-eye-corner distance)."""
        p = torch.as_tensor(np.asarray(projection_points, dtype=np.float32))[None]
        t = torch.as_tensor(np.asarray(self.used, dtype=np.float32))[None]
        return float(landmark_error(p, t)[0])

    def report(self, projection_points: np.ndarray) -> dict:
        """The target's entries of ``report.json``."""
        out = dict(target_kind=self.kind, landmark_error_to_used_target=self.error_to_used(projection_points))
        if self.retarget_groups is not None:
            out['retarget_groups'] = list(self.retarget_groups)
            out['jaw_shape_change'] = float(landmark_targets.jaw_shape_change(projection_points, self.look_points))
        return out

    def save(self, outdir, projection_points: np.ndarray, landmarks: bool = True) -> List[str]:
        """``landmarks.json`` (look, target, projection; ``landmarks`` is the used target; not with
        ``landmarks=False``) and, with ``--retarget``, ``target_landmarks_used.json``, always: the
        target a retargeted run aimed at. Both readable as ``--target_landmarks``. Returns the
        names written."""
        from pathlib import Path
        out = Path(outdir)
        written = []
        if landmarks:
            landmark_targets.write_landmark_sets(out / 'landmarks.json', self.resolution, self.used,
                                                 look=self.look_points, target=self.points,
                                                 projection=projection_points)
            written.append('landmarks.json')
        if self.retarget_groups is not None:
            landmark_targets.write_landmark_file(out / 'target_landmarks_used.json', self.used, self.resolution)
            written.append('target_landmarks_used.json')
        return written


def framed_landmarks(faces: FaceLandmarks, image: np.ndarray, source: str = 'the image') -> np.ndarray:
    """FAN's ``[68, 2]`` points on an image already framed at ``R x R`` (centre-cropped or FFHQ-aligned):
    read from the whole square and refitted twice, without running a face detector again."""
    return faces.landmarks(image, FaceBox.full(int(image.shape[0])), refinements=2, source=source)[0]


def load_target(path: str, faces: FaceLandmarks, look: np.ndarray, resolution: int,
                frame: Optional[str] = None, retarget_groups: Optional[Sequence[str]] = None,
                what: str = '--target_landmarks', image: Optional[np.ndarray] = None) -> LandmarkTarget:
    """Read ``--target_landmarks`` (image or landmark file) for a look ``uint8 [R, R, 3]``.

    ``frame``: ``--landmarks-frame W,H`` for files that name no frame. ``retarget_groups``: the
    groups to take from the target (``--retarget``); None keeps the target as it is. ``image``:
    the target image already prepared at ``R x R`` (e.g. FFHQ-aligned); default: read ``path``
    and centre-crop it. Problems with the file are one-line ``UserError``s.
    """
    image_io.check_rgb_array(look, 'look', resolution)
    look_points = framed_landmarks(faces, look, '--target_look')
    box = None
    if landmark_targets.is_landmark_file(path):
        points = landmark_targets.read_landmark_file(path, frame, resolution=resolution)
        image, kind = None, 'points'
    else:
        if image is None:
            image = image_io.centre_crop_resize(image_io.load_image(path, what), resolution)
        misc.assert_shape(image, [resolution, resolution, 3])
        if retarget_groups is None:
            # The target's points are read exactly as the heat-map loss reads its target: in the box
            # of ``FaceLandmarks.face_box`` (which ``loss`` then reuses). So landmarks.json, summary.png
            # and landmark_error_to_used_target show the points the loss aims at, and that error
            # equals landmark_error.
            box = faces.face_box(image_io.to_tensor(image, faces.device))
            points = faces.landmarks(image, box, source=path)[0]
        else:  # retargeted: read as the look's points are, so that the two are aligned like with like
            points = framed_landmarks(faces, image, path)
        kind = 'image'
    used = np.asarray(points, dtype=np.float64)
    groups = None
    if retarget_groups is not None:
        groups = landmark_targets.parse_retarget_groups(retarget_groups)
        used = landmark_targets.retarget(look_points, points, groups)
    target = LandmarkTarget(source=str(path), kind=kind, image=image, points=np.asarray(points, dtype=np.float64),
                            used=used, look_points=look_points, retarget_groups=groups, box=box)
    target._resolution = int(resolution)
    return target
