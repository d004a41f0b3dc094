"""Head motion of a driving video as StyleGAN3 input transforms (``projector_video.py --follow-head``).

The driving frames are FFHQ-aligned (``face_align.VideoAlignment``): each frame's face is cut out
along its own *quad*, so the aligned frames hold an upright, centred face and the head's in-plane
motion is gone from them. This module measures that motion from the quads, relative to frame 0,
and turns it into the ``[3, 3]`` matrices that a StyleGAN3 synthesis input takes
(``networks.stylegan3.make_input_transform``), so the generated face turns and moves with the
driving head while its latent (projected against the upright aligned frames) carries only the
expression.

Coordinates and signs:

* Source frames: pixels, x right, y down. A quad's orientation ``theta`` is the direction of its
  top edge, ``atan2(dy, dx)`` in these coordinates: positive = turned **clockwise** on screen.
* Output image: the generator's image spans ``[-0.5, 0.5]`` in x and y, origin at the centre, x
  right, y down (the units of ``make_input_transform``'s ``tx`` / ``ty``: image widths / heights).
* ``HeadMotion.angle`` is in degrees, **counterclockwise on screen positive**, the convention of
  ``make_input_transform`` and the official ``gen_images.py --rotate``: a driving head tilted
  clockwise by ``a`` degrees relative to frame 0 gives ``angle = -a``, and the output turns
  clockwise by ``a`` degrees with it.
* ``HeadMotion.tx`` / ``ty``: the face centre's displacement from frame 0, in frame 0's aligned
  (quad) axes, in units of frame 0's quad side: ``+tx`` right, ``+ty`` down.

Derivation: output point ``u`` of aligned frame ``i`` is source pixel
``c_i + side_i * Rcw(theta_i) u`` (``Rcw(t) = [[cos t, -sin t], [sin t, cos t]]``, clockwise on
screen for ``t > 0``); in frame 0's crop it lies at
``(side_i / side_0) Rcw(theta_i - theta_0) u + Rcw(-theta_0) (c_i - c_0) / side_0``. The scale
ratio ``side_i / side_0`` is reported (``HeadMotion.scale``) but not applied: the networks' input
transform is a rotation and a translation, and alignment already normalizes the face size. Only
in-plane rotation (roll) and translation follow the head; yaw and pitch stay in the latent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List

import numpy as np

from networks.stylegan3 import make_input_transforms


def quad_pose(quads: np.ndarray):
    """Centre, orientation and size of FFHQ quads.

    Args:
        quads: ``[N, 4, 2]`` (or one ``[4, 2]``), corners top-left, bottom-left, bottom-right,
            top-right (``face_align.ffhq_quad``), source-frame pixels.
    Returns:
        ``(centre [N, 2] pixels, theta [N] degrees clockwise on screen, side [N] pixels)``:
        the mean of the corners, the direction of the mean of the top and bottom edges
        (``atan2`` in y-down coordinates), and the mean length of those edges.
    """
    q = np.asarray(quads, dtype=np.float64)
    if q.ndim == 2:
        q = q[None]
    if q.ndim != 3 or q.shape[1:] != (4, 2):
        raise ValueError(f'quads must be [N, 4, 2], got shape {list(np.shape(quads))}')
    centre = q.mean(axis=1)
    half_side = (q[:, 3] - q[:, 0] + q[:, 2] - q[:, 1]) / 4  # as face_align.quad_to_params
    theta = np.degrees(np.arctan2(half_side[:, 1], half_side[:, 0]))
    side = 2 * np.hypot(half_side[:, 0], half_side[:, 1])
    return centre, theta, side


def _wrap_degrees(a: np.ndarray) -> np.ndarray:
    """Angles in degrees wrapped to ``(-180, 180]``."""
    return 180.0 - np.mod(180.0 - np.asarray(a, dtype=np.float64), 360.0)


@dataclass
class HeadMotion:
    """Per-frame residual head motion relative to the reference frame (all ``[N]`` float64).

    ``angle``: degrees, counterclockwise on screen positive (``make_input_transform``'s
    convention; a head tilted clockwise by ``a`` gives ``-a``). ``tx``, ``ty``: output-image
    widths / heights, right / down, in the reference frame's aligned axes. ``scale``: face size
    relative to the reference frame (informative; not applied). The reference frame is
    ``(0, 0, 0, 1)``.
    """
    angle: np.ndarray
    tx: np.ndarray
    ty: np.ndarray
    scale: np.ndarray

    def __len__(self) -> int:
        return len(self.angle)

    def transforms(self, base=None, rotate: bool = True, translate: bool = True) -> np.ndarray:
        """``input_transforms(self, base, rotate, translate)``: ``[N, 3, 3]`` float64."""
        return input_transforms(self, base, rotate, translate)

    def as_rows(self) -> List[dict]:
        """One dict per frame, ``{frame, angle, tx, ty, scale}`` (plain floats), for a JSON report."""
        return [dict(frame=i, angle=float(a), tx=float(x), ty=float(y), scale=float(s))
                for i, (a, x, y, s) in enumerate(zip(self.angle, self.tx, self.ty, self.scale))]


def motion_from_quads(quads: np.ndarray, reference: int = 0) -> HeadMotion:
    """Each quad's rotation and translation relative to quad ``reference`` (default: the first frame).

    ``quads``: ``[N, 4, 2]`` source-frame pixels (``face_align.VideoAlignment.quads``). See the
    module docstring for the units and signs.
    """
    centre, theta, side = quad_pose(quads)
    if not -len(side) <= reference < len(side):
        raise ValueError(f'reference frame {reference} is not one of the {len(side)} frames')
    if np.any(side <= 0):
        raise ValueError('degenerate quad (zero size)')
    c0, t0, s0 = centre[reference], np.radians(theta[reference]), side[reference]
    d = centre - c0  # [N, 2] pixels
    # Rcw(-theta_0) d / side_0: the displacement in frame 0's quad axes.
    cos0, sin0 = np.cos(t0), np.sin(t0)
    tx = (cos0 * d[:, 0] + sin0 * d[:, 1]) / s0
    ty = (-sin0 * d[:, 0] + cos0 * d[:, 1]) / s0
    angle = _wrap_degrees(theta[reference] - theta) + 0.0  # (-180, 180]; + 0.0 turns -0.0 into 0.0
    return HeadMotion(angle=angle, tx=tx, ty=ty, scale=side / s0)


def motion_from_landmarks(points: np.ndarray, sigma: float = 0.0, reference: int = 0) -> HeadMotion:
    """``motion_from_quads`` of the FFHQ quads of ``[N, 68, 2]`` landmarks (pixels, iBUG order).

    ``sigma`` (frames) smooths the quads over time first (``face_align.smooth_quads``), as
    ``VideoAlignment`` does; 0 uses them as they are.
    """
    import face_align
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 3 or pts.shape[1:] != (68, 2):
        raise ValueError(f'landmarks must be [N, 68, 2], got shape {list(pts.shape)}')
    quads = np.stack([face_align.ffhq_quad(p) for p in pts])
    if sigma > 0:
        quads = face_align.smooth_quads(quads, sigma)
    return motion_from_quads(quads, reference)


def input_transforms(motion: HeadMotion, base=None, rotate: bool = True, translate: bool = True) -> np.ndarray:
    """The StyleGAN3 input transforms ``[N, 3, 3]`` (float64) that move the output with the head.

    Row ``i`` is ``base @ make_input_transform(angle_i, tx_i, ty_i)``: the image the network makes
    with its own ``transform`` buffer ``base`` (``[3, 3]`` tensor or array, e.g.
    ``G.synthesis.input.transform``; default the identity), rotated by ``angle_i`` and then
    translated by ``(tx_i, ty_i)``. The reference frame's row is ``base`` itself.
    ``rotate=False`` / ``translate=False`` leave out that part of the motion.
    """
    n = len(motion.angle)
    angle = motion.angle if rotate else np.zeros(n)
    tx = motion.tx if translate else np.zeros(n)
    ty = motion.ty if translate else np.zeros(n)
    m = make_input_transforms(angle, tx, ty)
    if base is None:
        return m
    if hasattr(base, 'detach'):
        base = base.detach().cpu().double().numpy()
    base = np.asarray(base, dtype=np.float64)
    if base.shape != (3, 3):
        raise ValueError(f'base must be a [3, 3] transform, got shape {list(base.shape)}')
    return base[None] @ m
