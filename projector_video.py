"""Animate a face from a driving video by projecting every frame's landmarks (no training).

Frame ``i`` of ``N`` gets a W+ latent ``w_i``. ``dist`` is the latent distance
(``--latent_distance``: the original's Charbonnier sum ``sum(sqrt((a - b)^2 + 1e-6))`` by
default, or the L2 norm); ``HL`` the heat-map loss against driving frame ``i``.

``--schedule sequential`` (default): one frame after the other, each warm-started from the
previous one:

* identity mode: ``lpips_weight * LPIPS(look, x_i) + landmark_weight * HL_i + smoothness * dist(w_i, w_{i-1})``
  (+ ``fidelity * dist(w_i, w_0)`` when ``--fidelity_weight`` > 0);
* free mode: ``landmark_weight * HL_i + smoothness * dist(w_i, w_{i-1}) + fidelity * dist(w_i, w_avg)``.

``w_0`` starts at ``w_avg`` and runs ``--num-steps-first`` steps with the noise maps optimized;
every later frame starts at the previous latent, runs ``--num-steps`` steps and keeps frame 0's
noise maps.

``--schedule joint`` (the original's ``projector_video_parallel_v2.py``): stage 1 projects the
look alone (LPIPS only, noise maps optimized) for ``--num-steps-first`` steps; stage 2 starts
every frame from that latent ``w_look`` and optimizes all ``N`` latents together for
``--num-steps`` steps, with one set of noise maps shared by all frames (optimized, as in the
original):

    noise_reg + (1/N) * [ sum_i (lpips_weight_second * LPIPS(look, x_i) + landmark_weight * HL_i)
                          + smoothness * dist(w_{1..N-1}, w_{0..N-2}) + fidelity * dist(w, w_look) ]

(the ``1/N`` covers every term, as in the original code). Frames are evaluated in chunks of
``--batch-size`` with their gradients accumulated, one Adam step per pass, so memory stays
bounded whatever ``N`` is. In free mode there is no stage 1: the frames start at ``w_avg``,
which is also the fidelity anchor.

``--retarget`` (identity mode): ``HL_i`` aims not at FAN's heat maps of driving frame ``i`` but at
heat maps rendered from the used points ``look + A (d_i - d_0)`` (``d_i``: FAN's points on aligned
driving frame ``i``; ``A``: rotation and scale of the similarity fitted on the stable points from
``d_0`` to the look's points), for the points of ``--retarget-groups`` (default eyebrows, eyes,
outer and inner lip; the look's own points elsewhere): the look moves as the driver moves and keeps
its own face shape (``RetargetTargets``). ``report.json`` then gives each frame's
``landmark_error_to_used_target`` and ``jaw_shape_change`` (the projection's jaw against the look's,
over the outer-eye-corner distance) and their means; ``target_landmarks_used.json`` holds every
frame's used points.

Either way ``+ d_weight * softplus(-D(x_i))`` is added per frame when asked (``--d_loss`` /
``--d_weight``), and ``+ id_weight * (1 - cos(E(crop(x_i)), E(crop(anchor))))`` (``--id_weight``,
FaceNet embeddings ``E``, see ``identity.py``; ``1/N`` of it in the joint schedule). The anchor
(``--id_anchor``) is the look in identity mode; ``first_frame`` (free mode's default) is frame 0's
result: in the sequential schedule frame 0 has no identity term and every later frame is
compared with frame 0 as saved; in the joint schedule frame 0's image of the current step is the
anchor of every frame (detached: frame 0 leads, the others follow). The crop box is computed once,
from the landmarks FAN finds on the anchor (joint + ``first_frame``: on the image all frames start
from). With FaceNet loaded (the term, ``--id-weights``, or weights already cached), ``report.json``
gives each frame's ``identity_similarity`` (cosine) to the look, or in free mode to frame 0.

Subframes between neighbours are rendered from linearly interpolated latents. Every saved image is
rendered in float32, whatever ``--precision`` the optimization used (a frame optimized in bf16 /
fp16 is re-rendered from its latent), so the frames and the subframes between them agree.

``--follow-head`` (StyleGAN3, aligned driving frames): the alignment cuts each driving frame along
its own quad, so the aligned frames hold an upright face and the head's in-plane motion is gone
from them; it comes back through the synthesis input's ``transform``: frame ``i`` is rendered with
``G``'s own transform rotated and shifted by frame ``i``'s quad relative to frame 0's
(``head_motion``), the subframes with the interpolated motion. The optimization (both schedules)
sees the upright face, as its targets show it, so the latents carry the expression and the frames
in ``frames/`` are the upright projections; ``animation.mp4``, ``side_by_side.mp4`` and
``Animation.frames`` are the rendered, moving ones, ``latents.npz`` gains each key frame's
``transforms`` and ``report.json`` each frame's ``head`` (angle, tx, ty, scale). The flag is not
part of the resume fingerprint: a finished run is re-rendered with or without it.

Each finished frame is saved at once (``frames/frame_NNNNN.png`` and ``.npz``), so running the
same command again continues after the last finished frame (joint mode: after stage 1, or with
every frame done); the videos are assembled from what is on disk. ``latents.npz`` holds the
latents and the noise maps they were rendered with, keyed by buffer name: loading both and
synthesizing with ``noise_mode='const'`` reproduces the frames.

Python: ``animate(nets, driving, settings, look=...)`` returns the frames, latents and report;
``main`` is its command line.
"""

from __future__ import annotations

import cli_startup  # noqa: F401 - first: Ctrl-C during the imports below is a quiet exit

import contextlib
import hashlib
import json
import shutil
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Union

import click
import numpy as np
import torch

import head_motion
import identity
import image_io
import optimization
from image_io import file_identity  # noqa: F401 (one file-identity scheme: image_io)
import precision as precision_mod
import cli_common
from cli_common import (SEED, PhaseTimer, ProgressBar, check_outdir_writable, check_weights, detector_options, environment,
                        identity_options, network_options, pick_device, precision_option, prepare_outdir, run)
from dnnlib.util import UserError
from face_landmarks import FaceLandmarks
import landmark_targets
from landmark_loss import (DEFAULT_GROUP_WEIGHTS, DEFAULT_GROUP_WEIGHTS_TEXT, LANDMARK_GROUPS, FaceBox, LandmarkLoss,
                           draw_landmarks, landmark_error, parse_group_weights)
from landmark_targets import (DEFAULT_RETARGET_GROUPS, DEFAULT_RETARGET_GROUPS_TEXT, parse_retarget_groups,
                              retarget_groups_option)
from loaders import Networks, load_networks
from objectives import (DEFAULT_D_WEIGHT, DEFAULT_FIDELITY_WEIGHT, DEFAULT_LATENT_DISTANCE, DEFAULT_SMOOTHNESS_WEIGHT,
                        LATENT_DISTANCES, latent_distance, look_and_landmarks, neighbour_distance, realism_term)
from optimization import ProjectionSettings, project, synthesize, w_stats
from torch_utils import misc

FRAME_NAME = 'frame_{:05d}'
RETARGET_FILE = 'target_landmarks_used.json'
OUTPUT_FILES = ('animation.mp4', 'side_by_side.mp4', 'latents.npz', 'report.json')
SCHEDULES = ('sequential', 'joint')
ID_ANCHORS = ('look', 'first_frame')
# Default weights of the latent terms per distance: the Charbonnier sum is the original's form and
# takes its smoothness weight; the L2 norm (a much smaller number) takes the weights it had here before.
L2_DEFAULT_WEIGHT = 0.05


# ----------------------------------------------------------------------------
# Settings.

@dataclass
class AnimationSettings:
    """What an animation optimizes. ``None`` weights take their defaults (``resolved``)."""
    mode: str = 'identity'               # 'identity' (a look) or 'free' (landmarks only)
    schedule: str = 'sequential'         # 'sequential' or 'joint'
    num_steps_first: int = 300           # frame 0 (sequential) / the look alone (joint stage 1)
    num_steps: int = 50                  # every later frame (sequential) / all frames together (joint stage 2)
    lpips_weight: float = 1.0
    lpips_weight_second: Optional[float] = None  # joint stage 2's LPIPS weight [default: lpips_weight]
    landmark_weight: float = 0.1
    landmark_weights: tuple = DEFAULT_GROUP_WEIGHTS
    latent_distance: str = DEFAULT_LATENT_DISTANCE  # 'charbonnier' or 'l2'
    smoothness_weight: Optional[float] = None    # [0.005 charbonnier, 0.05 l2]
    fidelity_weight: Optional[float] = None      # [identity: 0; free: as smoothness]
    d_weight: float = 0.0
    batch_size: int = 4                  # joint: frames synthesized and evaluated at a time
    seed: int = 303
    id_weight: float = 0.0               # the identity term 1 - cos(E(crop(x_i)), E(crop(anchor))); 0: off
    id_anchor: Optional[str] = None      # 'look' or 'first_frame' [identity: look; free: first_frame]
    precision: str = 'fp32'              # resolved (precision.resolve): 'fp32', 'bf16' or 'fp16'
    retarget: bool = False               # identity mode: the look's landmarks + the driver's aligned change
    retarget_groups: tuple = DEFAULT_RETARGET_GROUPS  # the groups the driver's change moves (--retarget-groups)

    def resolved(self) -> 'AnimationSettings':
        """A copy with every default filled in (see ``default_latent_weights``)."""
        smoothness, fidelity = default_latent_weights(self.latent_distance, self.mode)
        return replace(self,
                       id_anchor=self.id_anchor or ('look' if self.mode == 'identity' else 'first_frame'),
                       lpips_weight_second=self.lpips_weight if self.lpips_weight_second is None
                       else self.lpips_weight_second,
                       smoothness_weight=smoothness if self.smoothness_weight is None else self.smoothness_weight,
                       fidelity_weight=fidelity if self.fidelity_weight is None else self.fidelity_weight,
                       landmark_weights=tuple(parse_group_weights(self.landmark_weights)),
                       retarget_groups=parse_retarget_groups(self.retarget_groups))

    def validate(self) -> None:
        if self.mode not in ('identity', 'free'):
            raise UserError(f"--mode must be 'identity' or 'free', got {self.mode!r}")
        if self.schedule not in SCHEDULES:
            raise UserError(f"--schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.latent_distance not in LATENT_DISTANCES:
            raise UserError(f"--latent_distance must be one of {', '.join(LATENT_DISTANCES)}, "
                            f"got {self.latent_distance!r}")
        if self.num_steps_first < 1 or self.num_steps < 1:
            raise UserError('--num-steps-first and --num-steps must be at least 1')
        if self.batch_size < 1:
            raise UserError(f'--batch-size must be at least 1, got {self.batch_size}')
        if self.id_anchor is not None and self.id_anchor not in ID_ANCHORS:
            raise UserError(f"--id_anchor must be one of {', '.join(ID_ANCHORS)}, got {self.id_anchor!r}")
        if self.mode == 'free' and self.id_anchor == 'look':
            raise UserError('--id_anchor look needs a look (identity mode); free mode anchors the identity '
                            'to the first frame (--id_anchor first_frame)')
        if self.retarget and self.mode != 'identity':
            raise UserError('--retarget moves the look\'s own landmarks as the driver\'s move, so it needs a look '
                            '(identity mode, --target_look); free mode has none')
        if self.precision not in precision_mod.CONCRETE:
            raise ValueError(f'precision must be one of {precision_mod.CONCRETE} (resolved), got {self.precision!r}')
        s = self.resolved()
        check_weights(**{name: getattr(s, name) for name in (
            'lpips_weight', 'lpips_weight_second', 'landmark_weight', 'smoothness_weight', 'fidelity_weight',
            'd_weight', 'id_weight')})

    def fingerprint(self) -> dict:
        """The settings a resumed run must share with the one that wrote the finished frames.

        Not the batch size and the precision (memory and speed); the identity settings only when
        the term is on, and the retarget settings only with ``--retarget``, so runs without them
        resume as before they existed.
        """
        s = self.resolved()
        skip = {'batch_size', 'precision'} | ({'id_weight', 'id_anchor'} if not s.id_weight else set()) | \
            ({'retarget', 'retarget_groups'} if not s.retarget else set())
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(s).items() if k not in skip}


def default_latent_weights(distance: str, mode: str):
    """``(smoothness, fidelity)`` defaults for a latent distance and a mode.

    Charbonnier (the original's form): smoothness 0.005 (the original's); fidelity 0 in identity
    mode (the original's), and in free mode (which the original does not have) as smoothness.
    L2: 0.05 for both where they are on.
    """
    smoothness = DEFAULT_SMOOTHNESS_WEIGHT if distance == 'charbonnier' else L2_DEFAULT_WEIGHT
    fidelity = DEFAULT_FIDELITY_WEIGHT if mode == 'identity' else smoothness
    return smoothness, fidelity


def realism_weight(d_loss: bool, d_weight: Optional[float]) -> float:
    """The realism term's weight from ``--d_loss`` and ``--d_weight`` (as ``projector.py``): 0 switches it off."""
    if d_weight is not None:
        check_weights(d_weight=d_weight)
        return float(d_weight)
    return DEFAULT_D_WEIGHT if d_loss else 0.0


# ----------------------------------------------------------------------------
# Objectives.

def frame_objective(look_distance, settings: AnimationSettings, landmarks, w_prev: Optional[torch.Tensor],
                    anchor: Optional[torch.Tensor], D=None, identity_term: Optional['IdentityTerm'] = None):
    """The objective of one frame in the sequential schedule (see the module docstring).

    ``look_distance``: LPIPS to the look (identity mode), e.g. ``nets.perceptual.distance_to(look)``;
    ``landmarks``: the frame's heat-map loss; ``w_prev``: the previous frame's latent (None for
    frame 0); ``anchor``: the fidelity anchor (free: ``w_avg``; identity: ``w_0``, None for frame 0);
    ``identity_term``: the frame's ``IdentityTerm`` (None: no identity term).
    """
    s = settings.resolved()
    dist = latent_distance(s.latent_distance)

    def extra(image: torch.Tensor, ws: torch.Tensor) -> Dict[str, torch.Tensor]:
        terms = {}
        if w_prev is not None and s.smoothness_weight:
            terms['smoothness'] = s.smoothness_weight * dist(ws, w_prev)
        if anchor is not None and s.fidelity_weight:
            terms['fidelity'] = s.fidelity_weight * dist(ws, anchor)
        if s.d_weight:
            terms['realism'] = s.d_weight * realism_term(D, image)
        if identity_term is not None and s.id_weight:
            terms['identity'] = s.id_weight * identity_term(image)
        return {name: value.reshape(-1) for name, value in terms.items()}

    lpips_weight = s.lpips_weight if s.mode == 'identity' else 0.0
    return look_and_landmarks(look_distance, landmarks, lpips_weight, s.landmark_weight, extra=extra)


def joint_objectives(look_distance, settings: AnimationSettings, landmarks, anchor: torch.Tensor, num_frames: int,
                     D=None, identity_term: Optional['IdentityTerm'] = None):
    """``(objective, latent_objective)`` of the joint schedule's stage 2 (see the module docstring).

    ``landmarks``: a ``LandmarkLoss`` with one target per frame; ``anchor``: the fidelity anchor
    ``[1, num_ws or 1, w_dim]`` (the stage-1 latent, or ``w_avg`` in free mode);
    ``identity_term``: an ``IdentityTerm`` called with the chunk's index (None: no identity term).
    """
    s = settings.resolved()
    nf = 1.0 / num_frames
    dist = latent_distance(s.latent_distance)

    def extra(image: torch.Tensor, ws: torch.Tensor, index: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        terms = {}
        if s.d_weight:
            terms['realism'] = nf * s.d_weight * realism_term(D, image)
        if identity_term is not None and s.id_weight:
            terms['identity'] = nf * s.id_weight * identity_term(image, index)
        return terms

    lpips_weight = s.lpips_weight_second if s.mode == 'identity' else 0.0
    objective = look_and_landmarks(look_distance, landmarks, nf * lpips_weight, nf * s.landmark_weight, extra=extra)

    def latent_objective(ws: torch.Tensor) -> Dict[str, torch.Tensor]:
        terms = {}
        if s.smoothness_weight and ws.shape[0] > 1:
            terms['smoothness'] = nf * s.smoothness_weight * neighbour_distance(ws, dist)
        if s.fidelity_weight:
            terms['fidelity'] = nf * s.fidelity_weight * dist(ws, anchor.expand(1, ws.shape[1], ws.shape[2]))
        return terms

    return objective, latent_objective


class IdentityTerm:
    """``1 - cos(E(crop(x)), E(crop(anchor)))`` per image ``[b]``: the animation's identity term.

    ``net``: FaceNet (``identity.load_facenet``); ``box``: the crop box, computed once
    (``identity.box_from_image`` of the anchor, or of the image all frames start from);
    ``anchor``: ``[1, 3, R, R]`` in ``[-1, 1]``, embedded once without gradients.
    ``follow``: a latent index (the joint schedule with ``--id_anchor first_frame``: 0). Whenever
    that latent is in the images scored, its current embedding, detached, becomes the anchor, so
    it leads and the others follow it (its own term is 0, without gradient). ``project`` scores
    the chunk holding latent 0 first in every step, so every frame meets the step's anchor.
    """

    def __init__(self, net: torch.nn.Module, box, anchor: torch.Tensor, follow: Optional[int] = None):
        self.net, self.box, self.follow = net, box, follow
        with torch.no_grad():
            self.anchor = identity.embed(net, anchor.detach(), box).float()

    def __call__(self, image: torch.Tensor, index: Optional[torch.Tensor] = None) -> torch.Tensor:
        emb = identity.embed(self.net, image, self.box).float()
        if self.follow is not None and index is not None:
            hits = (index.reshape(-1) == self.follow).nonzero().reshape(-1)
            if len(hits):
                self.anchor = emb[int(hits[0]):int(hits[0]) + 1].detach()
        return 1 - identity.cosine(emb, self.anchor)


def identity_box(fan: torch.nn.Module, image: torch.Tensor):
    """The FaceNet crop box of an image ``[1, 3, R, R]``: ``identity.box_from_image`` (FAN's landmarks)."""
    with torch.no_grad():
        return identity.box_from_image(fan, image.detach().float())


@torch.no_grad()
def identity_scores(net: torch.nn.Module, box, reference: torch.Tensor, images: Sequence[np.ndarray],
                    batch_size: int = 4) -> List[float]:
    """Cosine similarity of FaceNet embeddings of each ``uint8`` image to ``reference [1, 3, R, R]`` (float32)."""
    device = reference.device
    anchor = identity.embed(net, reference, box).float()
    out: List[float] = []
    for lo in range(0, len(images), batch_size):
        batch = torch.cat([image_io.to_tensor(img, device) for img in images[lo:lo + batch_size]])
        out += identity.cosine(identity.embed(net, batch, box).float(), anchor).cpu().tolist()
    return [float(v) for v in out]


class AnimationIdentity:
    """What an animation asks of FaceNet: the identity term's anchor and box, and the score.

    ``look``: the look as the generator sees it (aligned), ``[1, 3, R, R]``, or None (free mode).
    The score's reference is the look, or in free mode frame 0's saved result; its box is the
    look's, or frame 0's.
    """

    def __init__(self, net: torch.nn.Module, fan: torch.nn.Module, settings: AnimationSettings,
                 anim: 'AnimationRun', look: Optional[torch.Tensor]):
        self.net, self.fan, self.settings, self.anim, self.look = net, fan, settings.resolved(), anim, look
        self.look_box = identity_box(fan, look) if look is not None else None
        self._first: Optional[tuple] = None
        self.term_box = None                           # the box the term used (for the report)

    def first_frame(self) -> tuple:
        """``(image [1, 3, R, R], box)`` of frame 0 as saved (the same on a resumed run)."""
        if self._first is None:
            device = misc.module_device(self.net)
            image = image_io.to_tensor(image_io.load_image(self.anim.frame_png(0), 'frame 0'), device)
            self._first = image, identity_box(self.fan, image)
        return self._first

    def sequential_term(self, index: int) -> Optional[IdentityTerm]:
        """Frame ``index``'s term in the sequential schedule (None: off, or frame 0 anchoring itself)."""
        if not self.settings.id_weight:
            return None
        if self.settings.id_anchor == 'look':
            self.term_box = self.look_box
            return IdentityTerm(self.net, self.look_box, self.look)
        if index == 0:
            return None
        image, box = self.first_frame()
        self.term_box = box
        return IdentityTerm(self.net, box, image)

    def joint_term(self, start: torch.Tensor) -> Optional[IdentityTerm]:
        """The joint schedule's term; ``start``: the image all frames start from ``[1, 3, R, R]``."""
        if not self.settings.id_weight:
            return None
        if self.settings.id_anchor == 'look':
            self.term_box = self.look_box
            return IdentityTerm(self.net, self.look_box, self.look)
        self.term_box = identity_box(self.fan, start)
        return IdentityTerm(self.net, self.term_box, start, follow=0)

    def report(self, num_frames: int, batch_size: int = 4) -> dict:
        """``identity_similarity`` of report.json: every frame's cosine to the reference, min and mean."""
        if self.look is not None:
            reference, box, what = self.look, self.look_box, 'look'
        else:
            (reference, box), what = self.first_frame(), 'first_frame'
        frames = [image_io.load_image(self.anim.frame_png(i), 'frame') for i in range(num_frames)]
        sims = identity_scores(self.net, box, reference, frames, batch_size)
        return dict(reference=what, per_frame=sims, min=min(sims), mean=float(np.mean(sims)),
                    squared_distance_mean=float(np.mean([identity.similarity_to_squared_distance(v) for v in sims])),
                    box=asdict(box), term_box=asdict(self.term_box) if self.term_box is not None else None)


# ----------------------------------------------------------------------------
# The run's folder.

class AnimationRun:
    """One animation in ``outdir``: the finished frames on disk, and the frames still to do.

    Layout: ``driving/`` (aligned driving frames as used, and ``faces.json``: how the face was
    found), ``frames/`` (one PNG and one NPZ per finished frame: latent, losses, landmarks),
    ``state/`` (the noise maps by buffer name, the joint schedule's stage-1 latent, and the run's
    settings, which a resumed run must match).
    """

    def __init__(self, outdir: Path, fingerprint: dict):
        self.outdir = Path(outdir)
        self.fingerprint = fingerprint
        self.driving_dir = self.outdir / 'driving'
        self.frames_dir = self.outdir / 'frames'
        self.state_dir = self.outdir / 'state'

    def existing_fingerprint(self) -> Optional[dict]:
        path = self.state_dir / 'run.json'
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def has_work(self) -> bool:
        """Whether an earlier run here finished anything worth keeping: a frame or the joint
        schedule's first stage (a run that failed or was stopped before has nothing to lose)."""
        return self.num_finished() > 0 or (self.state_dir / 'stage1.npz').is_file()

    def check(self, resume: bool) -> bool:
        """Whether the finished work in ``outdir`` is reused (nothing is changed here)."""
        existing = self.existing_fingerprint()
        if existing is not None and resume and existing != self.fingerprint and not self.has_work():
            return False  # other settings, but nothing finished: start over
        if existing is not None and resume and existing != self.fingerprint:
            changed = sorted(k for k in set(existing) | set(self.fingerprint) if existing.get(k) != self.fingerprint.get(k))
            raise UserError(f'{self.outdir} holds an animation made with other settings ({", ".join(changed)}); '
                            f'pass --no-resume to start over, or choose another --outdir')
        return existing is not None and resume

    def start(self, resume: bool) -> int:
        """Prepare the folders; return the number of frames already finished (0 when starting over).

        Starting over (``resume=False``, or no earlier run here) removes the earlier run's
        folders and outputs first, so nothing of it is left whatever happens next.
        """
        if not self.check(resume):
            for folder in (self.driving_dir, self.frames_dir, self.state_dir):
                shutil.rmtree(folder, ignore_errors=True)
            for name in OUTPUT_FILES + (RETARGET_FILE,):
                with contextlib.suppress(FileNotFoundError):
                    (self.outdir / name).unlink()
        for folder in (self.driving_dir, self.frames_dir, self.state_dir):
            folder.mkdir(parents=True, exist_ok=True)
        image_io.save_json(self.state_dir / 'run.json', self.fingerprint)
        return self.num_finished()

    def num_finished(self) -> int:
        count = 0
        while (self.frames_dir / f'{FRAME_NAME.format(count)}.npz').is_file() and \
                (self.frames_dir / f'{FRAME_NAME.format(count)}.png').is_file():
            count += 1
        return count

    # --- frames ------------------------------------------------------------------------------
    def frame_png(self, index: int) -> Path:
        return self.frames_dir / f'{FRAME_NAME.format(index)}.png'

    def load_frame(self, index: int) -> dict:
        path = self.frames_dir / f'{FRAME_NAME.format(index)}.npz'
        try:
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        except Exception as exc:  # written atomically by save_frame: damaged from outside (a partial copy)
            raise UserError(f'{path}: a finished frame\'s file is damaged ({exc.__class__.__name__}); delete it '
                            f'(and the frames after it) to redo it, or rerun with --no-resume') from None

    def save_frame(self, index: int, image: np.ndarray, **arrays) -> None:
        # The NPZ is written last: a frame counts as finished only when both files exist.
        image_io.save_png(self.frame_png(index), image)
        image_io.save_npz(self.frames_dir / f'{FRAME_NAME.format(index)}.npz', **arrays)

    # --- driving frames -------------------------------------------------------------------
    def driving_png(self, index: int) -> Path:
        return self.driving_dir / f'{FRAME_NAME.format(index)}.png'

    def num_driving(self) -> Optional[int]:
        """The number of prepared driving frames, or None when their preparation did not finish."""
        info = self.driving_info()
        return None if info is None else int(info['num_frames'])

    def driving_info(self) -> Optional[dict]:
        path = self.driving_dir / 'faces.json'
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def driving_frame(self, index: int) -> np.ndarray:
        return image_io.load_image(self.driving_png(index), 'driving frame')

    # --- state ------------------------------------------------------------------------------
    def save_noise(self, noise: Dict[str, torch.Tensor]) -> None:
        image_io.save_npz(self.state_dir / 'noise.npz', **noise_arrays(noise))

    def has_noise(self) -> bool:
        return (self.state_dir / 'noise.npz').is_file()

    def load_noise(self, device) -> Dict[str, torch.Tensor]:
        with np.load(self.state_dir / 'noise.npz') as data:
            return {k: torch.from_numpy(data[k]).to(device) for k in data.files}

    def save_stage1(self, w: torch.Tensor, losses: dict) -> None:
        image_io.save_npz(self.state_dir / 'stage1.npz', w=w.detach().cpu().numpy().astype(np.float32),
                          loss_names=np.array(list(losses)), loss_values=np.array(list(losses.values())))

    def load_stage1(self, device) -> Optional[tuple]:
        path = self.state_dir / 'stage1.npz'
        if not path.is_file() or not self.has_noise():
            return None
        with np.load(path) as data:
            w = torch.from_numpy(data['w']).to(device)
            losses = {str(k): float(v) for k, v in zip(data['loss_names'], data['loss_values'])}
        return w, losses


def noise_arrays(noise: Dict[str, torch.Tensor]) -> Dict[str, np.ndarray]:
    """Noise maps ``{buffer name: [1, 1, r, r]}`` as float32 arrays (one set: the first if batched)."""
    return {name: value.detach()[:1].cpu().numpy().astype(np.float32) for name, value in noise.items()}


def interpolate_latents(latents: np.ndarray, subframes: int) -> np.ndarray:
    """``[T, num_ws, w_dim]`` -> ``[T + (T - 1) * subframes, num_ws, w_dim]``, linear between neighbours."""
    out = []
    for i in range(len(latents)):
        out.append(latents[i])
        if i + 1 < len(latents):
            for j in range(1, subframes + 1):
                t = j / (subframes + 1)
                out.append((1 - t) * latents[i] + t * latents[i + 1])
    return np.stack(out)


# ----------------------------------------------------------------------------
# Inputs.

def array_identity(arrays: Iterable[np.ndarray]) -> str:
    """A content digest of images given as arrays (the Python API's inputs)."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return 'sha256:' + h.hexdigest()


def _frame_source(driving) -> Callable[[], Iterable[np.ndarray]]:
    """A callable returning a fresh iterable of the driving frames (a ``DrivingInput`` streams them)."""
    if isinstance(driving, image_io.DrivingInput):
        return driving.frames
    if callable(driving):
        return driving
    frames = list(driving)
    return lambda: iter(frames)


def prepare_driving(anim: AnimationRun, frames: Callable[[], Iterable[np.ndarray]], resolution: int,
                    faces: Optional[FaceLandmarks], align: bool, smoothing: float, face_index: int,
                    source: str, alignment=None) -> dict:
    """Write the driving frames as the generator's inputs into ``driving/`` (one at a time).

    FFHQ-aligned (smoothed over time, ``alignment`` if already computed) or centre-cropped.
    Returns, and writes as ``driving/faces.json`` last, how the face was found, the count and
    (aligned) each frame's quad ``[T, 4, 2]`` in source pixels, the head's motion (``--follow-head``).
    """
    quads = None
    if align:
        from face_align import VideoAlignment
        alignment = alignment or VideoAlignment(faces, frames, resolution, smoothing, face_index, source,
                                                progress=True)
        aligned, info, quads = iter(alignment), alignment.report(), np.asarray(alignment.quads).tolist()
    else:
        aligned, info = (image_io.centre_crop_resize(f, resolution) for f in frames()), None
    count = 0
    for frame in aligned:
        image_io.save_png(anim.driving_png(count), frame)
        count += 1
    if count == 0:
        raise UserError(f'{source}: no frames')
    record = dict(num_frames=count, face=info)
    if quads is not None:  # [T, 4, 2] source pixels: where each aligned frame was cut (--follow-head)
        record['quads'] = quads
    image_io.save_json(anim.driving_dir / 'faces.json', record)
    return record


# ----------------------------------------------------------------------------
# --follow-head: the driving head's in-plane motion through StyleGAN3's input transform.

def check_follow_head(G, align: bool) -> None:
    """``UserError`` unless ``--follow-head`` can work: a StyleGAN3 generator, aligned driving frames."""
    if not optimization.has_input_transform(G):
        raise UserError('--follow-head needs a StyleGAN3 network (its synthesis input takes a rotation and '
                        'translation); this one is StyleGAN2')
    if not align:
        raise UserError('--follow-head measures the head\'s motion from the alignment of the driving frames: '
                        'it needs --align')


def follow_head_motion(record: dict, outdir: Path) -> head_motion.HeadMotion:
    """The head's motion of every driving frame relative to frame 0, from the quads in ``driving/faces.json``."""
    quads = record.get('quads')
    if quads is None:
        raise UserError(f'{outdir}: its driving frames were prepared without their alignment quads (an earlier '
                        f'version); pass --no-resume to use --follow-head')
    return head_motion.motion_from_quads(np.asarray(quads, dtype=np.float64))


def interpolate_motion(motion: head_motion.HeadMotion, subframes: int) -> head_motion.HeadMotion:
    """The motion of every output frame (key frames and ``subframes`` between neighbours), linear
    in angle, translation and scale, as ``interpolate_latents`` is in the latents."""
    params = np.stack([motion.angle, motion.tx, motion.ty, motion.scale], axis=1)  # [T, 4]
    angle, tx, ty, scale = interpolate_latents(params, subframes).T
    return head_motion.HeadMotion(angle=angle, tx=tx, ty=ty, scale=scale)


# ----------------------------------------------------------------------------
# --retarget: the look's landmarks, moved as the driver moves.

@dataclass
class RetargetTargets:
    """The landmark targets of ``--retarget``, one per driving frame, in generator pixels.

    ``used[i] = look + (driving[i] - driving[0]) @ (s R)^T`` on the points of ``groups``, the
    look's own points elsewhere (``landmark_targets.SequenceRetargeter``: ``s R`` the rotation and
    scale of the similarity fitted on the stable points from driving frame 0 to the look), so
    ``used[0]`` is the look's points. Every frame's heat-map target is rendered from its used
    points in one crop box, the look's (``landmark_targets.target_box``): the face stays where
    the look's is, and one box keeps FAN's crop still from frame to frame.
    """
    groups: tuple                 # the landmark groups the driver's change moves
    look: np.ndarray              # [68, 2]: FAN's points on the (aligned) look
    driving: np.ndarray           # [T, 68, 2]: FAN's points on each aligned driving frame (tracked)
    used: np.ndarray              # [T, 68, 2]: what each frame's heat-map loss aims at
    box: FaceBox                  # FAN's crop box for every frame (the look's)
    resolution: int

    @classmethod
    def compute(cls, faces: FaceLandmarks, look: np.ndarray, driving_frames: Iterable[np.ndarray], groups,
                resolution: int, look_source: str = 'the look image',
                driving_source: str = 'the driving video') -> 'RetargetTargets':
        """From the look ``uint8 [R, R, 3]`` and the aligned driving frames (``uint8 [R, R, 3]`` each).

        The look's points are ``faces.landmarks`` (the detector's face, as ``target_input``);
        the driving frames' are ``faces.track``: the face found in frame 0 and followed, so the
        crop keeps its framing and the changes are not crop jitter.
        """
        groups = parse_retarget_groups(groups)
        look_points = np.asarray(faces.landmarks(look, source=look_source)[0], dtype=np.float64)
        driving = [np.asarray(p, dtype=np.float64) for p, _ in faces.track(driving_frames, 0, driving_source)]
        if not driving:
            raise UserError(f'{driving_source}: no frames')
        used = landmark_targets.retarget_sequence(look_points, driving, groups)
        return cls(groups=groups, look=look_points, driving=np.stack(driving), used=used,
                   box=landmark_targets.target_box(look_points, resolution), resolution=int(resolution))

    def loss(self, faces: FaceLandmarks, group_weights: Sequence[float], index: Optional[int] = None) -> LandmarkLoss:
        """The heat-map loss against frame ``index``'s used points (None: every frame's, one target each)."""
        points = self.used if index is None else self.used[index]
        return LandmarkLoss.from_points(faces, points, self.resolution, group_weights, boxes=self.box,
                                        device=faces.device)

    def save(self, path: Path) -> None:
        image_io.save_npz(path, groups=np.array(self.groups), look=self.look, driving=self.driving, used=self.used,
                          box=np.array([self.box.cx, self.box.cy, self.box.size]),
                          resolution=np.int64(self.resolution))

    @classmethod
    def load(cls, path: Path) -> Optional['RetargetTargets']:
        """What ``save`` wrote, or None when it is not there."""
        if not Path(path).is_file():
            return None
        with np.load(path) as data:
            cx, cy, size = (float(v) for v in data['box'])
            return cls(groups=tuple(str(g) for g in data['groups']), look=data['look'], driving=data['driving'],
                       used=data['used'], box=FaceBox(cx, cy, size), resolution=int(data['resolution']))

    def write_json(self, path: Path) -> None:
        """``target_landmarks_used.json``: ``landmarks`` and ``look`` (the look's points, = frame 0's
        target), ``frame_00000`` ... (each frame's used target) and ``driving_00000`` ... (the
        driver's points); ``FILE.json#frame_00003`` is frame 3's target as ``--target_landmarks``."""
        sets = {FRAME_NAME.format(i): p for i, p in enumerate(self.used)}
        sets.update({f'driving_{i:05d}': p for i, p in enumerate(self.driving)})
        landmark_targets.write_landmark_sets(path, self.resolution, self.look, look=self.look, **sets)

    def frame_report(self, index: int, projection_points: np.ndarray) -> dict:
        """Frame ``index``'s entries: the error to its used target and the jaw's change from the look's."""
        p = torch.as_tensor(np.asarray(projection_points, dtype=np.float32))[None]
        t = torch.as_tensor(np.asarray(self.used[index], dtype=np.float32))[None]
        return dict(landmark_error_to_used_target=float(landmark_error(p, t)[0]),
                    jaw_shape_change=float(landmark_targets.jaw_shape_change(projection_points, self.look)))


# ----------------------------------------------------------------------------
# The animation.

@dataclass
class Animation:
    """What ``animate`` returns."""
    frames: np.ndarray                  # uint8 [T, R, R, 3]: the key frames (as in frames/)
    latents: np.ndarray                 # float32 [T, num_ws, w_dim]
    noise: Dict[str, np.ndarray]        # {buffer name: [1, 1, r, r]}: the noise maps every frame uses
    report: dict                        # as report.json
    outdir: Optional[Path] = None       # None when animate() worked in a temporary folder


def _say(message: str) -> None:
    click.echo(message, err=True)


def animate(nets: Networks, driving, settings: AnimationSettings = AnimationSettings(),
            look: Optional[np.ndarray] = None, outdir: Union[str, Path, None] = None, *,
            faces: Optional[FaceLandmarks] = None, align: bool = True, align_smoothing: float = 2.0,
            face_index: int = 0, fps: float = 30.0, subframes: int = 1, resume: bool = True,
            inputs: Optional[dict] = None, progress: bool = True, log: Callable[[str], None] = _say,
            announce: Optional[str] = None, follow_head: bool = False) -> Animation:
    """Animate a face: frame ``i`` takes its landmarks from driving frame ``i`` and (identity mode) its look from ``look``.

    Args:
        nets:      ``loaders.load_networks(...)``: G, FAN, and LPIPS for identity mode (D for the realism term;
                   FaceNet for the identity term, and with FaceNet the report's ``identity_similarity``).
        driving:   The driving frames: an ``image_io.DrivingInput`` (streamed), a sequence of
                   ``uint8 [H, W, 3]`` arrays, or a callable returning a fresh iterable of them.
        settings:  What to optimize (``AnimationSettings``).
        look:      ``uint8 [H, W, 3]``, the look photo (identity mode).
        outdir:    Where the frames, videos, ``latents.npz`` and ``report.json`` go; an earlier run
                   there with the same settings is continued (``resume``). None: a temporary folder.
        faces:     The face detector and FAN (default: ``FaceLandmarks(nets.fan)``, no detector).
        align:     FFHQ-align the look and the driving frames (the face found by ``faces``;
                   ``face_index`` picks another than the largest); else centre-crop them.
        fps:       Frame rate of the driving frames; the animation runs at ``fps * (subframes + 1)``.
        inputs:    Names and identities of the inputs for the report and the resume check
                   (the command line passes file digests); default: digests of the arrays.
        log:       Where warnings and resume notes go (default: stderr).
        announce:  A line said through ``log`` when the optimization starts (the command line's precision).
        follow_head: StyleGAN3 with ``align``: the output frames turn and move with the driving head
                   (each aligned frame's quad relative to frame 0's, ``head_motion``) through the synthesis
                   input's transform. The optimization sees the upright face, as the aligned targets show
                   it, so the latents (and ``frames/``) are those of a run without it; only the rendered
                   animation differs, and a finished run can be re-rendered with or without it.

    Returns an ``Animation``. Raises ``UserError`` for a face that is not found, a resume
    conflict, or bad settings.
    """
    settings.validate()
    s = settings.resolved()
    if s.mode == 'identity' and look is None:
        raise UserError('identity mode needs a look image (--target_look), or use --mode free')
    if s.mode == 'identity' and nets.perceptual is None:
        raise ValueError('identity mode needs LPIPS: load_networks(..., need_lpips=True)')
    if s.d_weight and nets.D is None:
        raise ValueError('the realism term needs D: load_networks(..., need_D=True)')
    if s.id_weight and nets.facenet is None:
        raise ValueError('the identity term needs FaceNet: load_networks(..., need_identity=True)')
    G = nets.G
    if follow_head:
        check_follow_head(G, align)
    device = misc.module_device(G)
    resolution = G.img_resolution
    faces = faces or FaceLandmarks(nets.fan)
    frames = _frame_source(driving)
    inputs = dict(inputs or {})
    if 'look' not in inputs:
        inputs['look'] = array_identity([look]) if look is not None else None
    if 'driving' not in inputs:
        inputs['driving'] = (file_identity(str(driving.path)) if isinstance(driving, image_io.DrivingInput)
                             else array_identity(frames()))
    look_source = inputs.pop('look_source', None) or 'the look image'
    driving_source = inputs.pop('driving_source', None) or 'the driving video'
    timer = PhaseTimer()

    with contextlib.ExitStack() as stack:
        if outdir is None:
            out = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix='animate-')))
        else:
            out = Path(outdir)
            out.mkdir(parents=True, exist_ok=True)
        fingerprint = dict(inputs, align=align, align_smoothing=align_smoothing if align else None,
                           face_index=face_index if align else None, resolution=resolution,
                           **settings.fingerprint())
        anim = AnimationRun(out, fingerprint)

        # Faces first: a photo without a face ends here, before anything is written.
        with timer('align'):
            look_img = look_face = None
            if look is not None:
                from face_align import frame_photo
                look_img, look_face, warning = frame_photo(faces, look, resolution, align, face_index, look_source)
                if warning:
                    log(f'warning: {warning}')
            reuse = anim.check(resume)
            alignment = None
            if not (reuse and anim.num_driving() is not None) and align:
                from face_align import VideoAlignment
                alignment = VideoAlignment(faces, frames, resolution, align_smoothing, face_index, driving_source,
                                           progress=progress)
                if alignment.warning:
                    log(f'warning: {alignment.warning}')

        finished = anim.start(resume)
        with timer('align'):
            record = anim.driving_info() if reuse else None
            if record is None:
                record = prepare_driving(anim, frames, resolution, faces, align, align_smoothing, face_index,
                                         driving_source, alignment)
        num_frames = record['num_frames']
        finished = min(finished, num_frames)
        if finished:
            log(f'Resuming after frame {finished - 1}: {finished} of {num_frames} frames are done '
                f'(--no-resume starts over).')
        motion = follow_head_motion(record, out) if follow_head else None
        retarget = None
        if s.retarget:
            with timer('retarget'):  # kept in state/, so a resumed run aims at the same points
                retarget = RetargetTargets.load(anim.state_dir / 'retarget.npz')
                if retarget is None or len(retarget.used) != num_frames:
                    retarget = RetargetTargets.compute(faces, look_img,
                                                       (anim.driving_frame(i) for i in range(num_frames)),
                                                       s.retarget_groups, resolution, look_source, driving_source)
                    retarget.save(anim.state_dir / 'retarget.npz')

        if announce:
            log(announce)
        look_distance = nets.perceptual.distance_to(image_io.to_tensor(look_img, device)) \
            if s.mode == 'identity' else None
        id_setup = None
        if nets.facenet is not None:
            with timer('identity'):
                id_setup = AnimationIdentity(nets.facenet, faces.fan, s, anim,
                                             image_io.to_tensor(look_img, device) if s.mode == 'identity' else None)
        with timer('optimize'):
            if s.schedule == 'sequential':
                run_sequential(nets, anim, s, faces, look_distance, num_frames, finished, progress,
                               id_setup=id_setup, retarget=retarget)
            else:
                run_joint(nets, anim, s, faces, look_distance, num_frames, finished, progress, log,
                          id_setup=id_setup, retarget=retarget)

        with timer('assemble'):
            frames_out, latents, noise, report_frames = assemble_outputs(G, anim, num_frames, look_img, fps, subframes,
                                                                         retarget, motion)
        id_report = None
        if id_setup is not None:
            with timer('identity'):
                id_report = id_setup.report(num_frames, s.batch_size)
            for row, value in zip(report_frames, id_report['per_frame']):
                row['identity_similarity'] = value
        report = dict(
            command='projector_video',
            settings=dict(**{k: v for k, v in asdict(s).items() if k != 'landmark_weights'},
                          landmark_weights=dict(zip(LANDMARK_GROUPS, s.landmark_weights)),
                          align=align, align_smoothing=align_smoothing, face_index=face_index, fps=fps,
                          subframes=subframes, follow_head=follow_head, device=str(device)),
            inputs=inputs,
            faces=dict(look=look_face, driving=record.get('face')),
            generator=dict(resolution=resolution, num_ws=G.num_ws, w_dim=G.w_dim),
            network=dict(nets.info),
            precision=s.precision,
            num_frames=num_frames,
            resumed_after=finished,
            output_fps=fps * (subframes + 1),
            frames=report_frames,
            timings=timer.as_dict(),
        )
        if id_report is not None:
            report['identity_similarity'] = id_report
        if motion is not None:
            report['follow_head'] = dict(
                applied=['rotation', 'translation'],
                note='angle: degrees, counterclockwise on screen; tx, ty: output-image widths / heights in frame '
                     '0\'s aligned axes; scale: measured, not applied',
                per_frame=motion.as_rows())
        report['landmark_error_to_used_target_mean'] = float(np.mean(
            [row['landmark_error_to_used_target'] for row in report_frames]))
        if retarget is not None:
            jaw = [row['jaw_shape_change'] for row in report_frames]
            report['jaw_shape_change_mean'] = float(np.mean(jaw))
            report['retarget'] = dict(groups=list(retarget.groups), used_targets=RETARGET_FILE,
                                      box=asdict(retarget.box), look_landmarks=retarget.look.round(3).tolist(),
                                      landmark_error_to_used_target_mean=report['landmark_error_to_used_target_mean'],
                                      jaw_shape_change_mean=report['jaw_shape_change_mean'],
                                      jaw_shape_change_max=float(np.max(jaw)))
        stage1 = anim.load_stage1('cpu') if s.schedule == 'joint' else None
        if stage1 is not None:
            report['stage1'] = dict(losses=stage1[1])
        joint_path = anim.state_dir / 'joint.json'
        if s.schedule == 'joint' and joint_path.is_file():
            report['joint'] = json.loads(joint_path.read_text())
        image_io.save_json(out / 'report.json', report)
        return Animation(frames=frames_out, latents=latents, noise=noise, report=report,
                         outdir=None if outdir is None else out)


def _bar(num_steps: int, landmarks: Optional[LandmarkLoss], desc: str, position: int, progress: bool):
    if not progress:
        return None
    return ProgressBar(num_steps, (lambda: float(landmarks.error().mean())) if landmarks is not None else None,
                       desc=desc, position=position, leave=False)


def run_sequential(nets: Networks, anim: AnimationRun, settings: AnimationSettings, faces: FaceLandmarks,
                   look_distance, num_frames: int, finished: int, progress: bool = True,
                   id_setup: Optional[AnimationIdentity] = None, retarget: Optional[RetargetTargets] = None) -> None:
    """Optimize frames ``finished .. num_frames - 1`` one after the other (each saved at once).

    ``retarget``: the ``--retarget`` targets (None: each driving frame's FAN heat maps).
    """
    from tqdm import tqdm
    w_avg, _ = w_stats(nets.G)
    frame_bar = tqdm(total=num_frames, initial=finished, desc='frames', unit='frame', position=0,
                     dynamic_ncols=True, disable=not progress)
    try:
        for index in range(finished, num_frames):
            optimize_frame(nets, anim, settings, faces, look_distance, index, w_avg, progress,
                           identity_term=id_setup.sequential_term(index) if id_setup is not None else None,
                           retarget=retarget)
            frame_bar.update(1)
    finally:
        frame_bar.close()


def optimize_frame(nets: Networks, anim: AnimationRun, settings: AnimationSettings, faces: FaceLandmarks,
                   look_distance, index: int, w_avg: torch.Tensor, progress: bool = True,
                   identity_term: Optional[IdentityTerm] = None, retarget: Optional[RetargetTargets] = None) -> None:
    """Project one driving frame (warm-started from the previous one) and save it at once.

    ``identity_term``: the frame's identity term (``AnimationIdentity.sequential_term``), or None.
    ``retarget``: the ``--retarget`` targets; the loss aims at frame ``index``'s used points.
    """
    s = settings.resolved()
    device = misc.module_device(nets.G)
    if retarget is not None:
        landmarks = retarget.loss(faces, s.landmark_weights, index)
    else:
        landmarks = faces.loss(image_io.to_tensor(anim.driving_frame(index), device), s.landmark_weights)
    first = index == 0
    w_prev = None if first else torch.from_numpy(anim.load_frame(index - 1)['w']).to(device)
    if s.mode == 'free':
        anchor = w_avg
    else:
        anchor = None if first else torch.from_numpy(anim.load_frame(0)['w']).to(device)
    objective = frame_objective(look_distance, s, landmarks, w_prev, anchor, nets.D, identity_term)
    proj_settings = ProjectionSettings(num_steps=s.num_steps_first if first else s.num_steps,
                                       latent='w+', optimize_noise=first, seed=s.seed + index,
                                       precision=s.precision)
    bar = _bar(proj_settings.num_steps, landmarks if s.landmark_weight else None, f'frame {index}', 1, progress)
    try:
        result = project(nets.G, objective, proj_settings, w_init=w_prev,
                         noise_init=None if first else anim.load_noise(device), callbacks=[bar] if bar else [])
    finally:
        if bar:
            bar.close()
    if first:
        anim.save_noise(result.noise)
    save_result_frame(anim, index, result.image[:1], result.ws[:1], result.losses[0],
                      result.seconds, landmarks, 0)


def save_result_frame(anim: AnimationRun, index: int, image: torch.Tensor, ws: torch.Tensor, losses: dict,
                      seconds: float, landmarks: LandmarkLoss, target_index: int) -> None:
    error, points = landmarks.measure(image, target_index)
    anim.save_frame(index, image_io.to_uint8(image[0]), w=ws.detach().cpu().numpy().astype(np.float32),
                    landmark_error=np.float32(error), landmarks=points.astype(np.float32),
                    target_landmarks=landmarks.target_landmarks[target_index].cpu().numpy().astype(np.float32),
                    loss_names=np.array(list(losses)), loss_values=np.array(list(losses.values()), dtype=np.float64),
                    seconds=np.float32(seconds))


def run_joint(nets: Networks, anim: AnimationRun, settings: AnimationSettings, faces: FaceLandmarks,
              look_distance, num_frames: int, finished: int, progress: bool = True,
              log: Callable[[str], None] = _say, id_setup: Optional[AnimationIdentity] = None,
              retarget: Optional[RetargetTargets] = None) -> None:
    """The joint schedule (see the module docstring): stage 1 (the look alone), then all frames together.

    ``retarget``: the ``--retarget`` targets (frame ``i`` aims at ``retarget.used[i]``), or None.
    """
    if finished >= num_frames:
        return
    s = settings.resolved()
    G = nets.G
    device = misc.module_device(G)
    w_avg, _ = w_stats(G)

    # Stage 1: the look alone (LPIPS only), kept in state/ so a resumed run skips it.
    if s.mode == 'identity':
        stage1 = anim.load_stage1(device)
        if stage1 is None:
            objective = look_and_landmarks(look_distance, None, s.lpips_weight, 0.0)
            stage_settings = ProjectionSettings(num_steps=s.num_steps_first, latent='w+', optimize_noise=True,
                                                seed=s.seed, precision=s.precision)
            bar = _bar(stage_settings.num_steps, None, 'look', 0, progress)
            try:
                result = project(G, objective, stage_settings, callbacks=[bar] if bar else [])
            finally:
                if bar:
                    bar.close()
            anim.save_noise(result.noise)
            anim.save_stage1(result.ws, result.losses[0])
            w_look, noise = result.ws.detach(), result.noise
        else:
            log('Resuming after stage 1 (the look alone).')
            w_look, noise = stage1[0], anim.load_noise(device)
        anchor, w_init = w_look, w_look
    else:
        anchor, w_init, noise = w_avg, None, None

    # Stage 2: every frame's latent together, one shared set of noise maps.
    if retarget is not None:
        landmarks = retarget.loss(faces, s.landmark_weights)
    else:
        targets = (image_io.to_tensor(anim.driving_frame(i), device) for i in range(num_frames))
        landmarks = LandmarkLoss(faces, targets, s.landmark_weights)
    id_term = None
    if id_setup is not None and s.id_weight:
        start = (w_init if w_init is not None else w_avg).expand(1, G.num_ws, G.w_dim)
        with torch.no_grad():
            id_term = id_setup.joint_term(synthesize(G, start, noise or None))
    objective, latent_objective = joint_objectives(look_distance, s, landmarks, anchor, num_frames, nets.D,
                                                   id_term)
    stage_settings = ProjectionSettings(num_steps=s.num_steps, latent='w+', optimize_noise=True, share_noise=True,
                                        seed=s.seed, precision=s.precision)
    bar = _bar(stage_settings.num_steps, None, f'{num_frames} frames', 0, progress)
    try:
        result = project(G, objective, stage_settings, w_init=w_init, noise_init=noise,
                         seeds=[s.seed + i for i in range(num_frames)], latent_objective=latent_objective,
                         chunk_size=s.batch_size, callbacks=[bar] if bar else [])
    finally:
        if bar:
            bar.close()
    anim.save_noise(result.noise)
    image_io.save_json(anim.state_dir / 'joint.json', dict(latent_losses=result.latent_losses,
                                                           seconds=result.seconds))
    per_frame = result.seconds / num_frames
    for i in range(num_frames):
        save_result_frame(anim, i, result.image[i:i + 1], result.ws[i:i + 1], result.losses[i],
                          per_frame,
                          landmarks, i)


def assemble_outputs(G, anim: AnimationRun, num_frames: int, look: Optional[np.ndarray], fps: float,
                     subframes: int, retarget: Optional[RetargetTargets] = None,
                     motion: Optional[head_motion.HeadMotion] = None):
    """animation.mp4, side_by_side.mp4 and latents.npz (and with ``retarget``
    target_landmarks_used.json) from the finished frames on disk.

    side_by_side.mp4: the look, the driving frame with its target drawn, the result; with
    ``retarget`` the look with the frame's used target drawn, the driving frame with FAN's points.
    ``motion`` (``--follow-head``): every output frame, key frames included, is rendered with its
    input transform (the key frames' and, interpolated, the subframes'); ``latents.npz`` gains
    ``transforms [T, 3, 3]``, the key frames' (``synthesize(G, w[i:i+1], transforms=transforms[i])``).

    Returns ``(frames [T, R, R, 3], latents [T, num_ws, w_dim], noise {name: [1, 1, r, r]}, report rows)``.
    """
    device = misc.module_device(G)
    records = [anim.load_frame(i) for i in range(num_frames)]
    latents = np.concatenate([r['w'] for r in records]).astype(np.float32)  # [T, num_ws, w_dim]
    noise = anim.load_noise(device)
    out = anim.outdir
    frames = []
    key_transforms = output_transforms = None
    if motion is not None:
        base = G.synthesis.input.transform
        key_transforms = motion.transforms(base=base)                                 # [T, 3, 3]
        output_transforms = interpolate_motion(motion, subframes).transforms(base=base)

    with image_io.VideoWriter(out / 'animation.mp4', fps=fps * (subframes + 1)) as video:
        keyframe = 0
        for k, w in enumerate(interpolate_latents(latents, subframes)):
            if k % (subframes + 1) == 0 and motion is None:  # a key frame: the image saved when it was finished
                frame = image_io.load_image(anim.frame_png(keyframe))
            else:
                with torch.no_grad():
                    img = synthesize(G, torch.from_numpy(w[None]).to(device), noise or None,
                                     transforms=None if motion is None else output_transforms[k])
                frame = image_io.to_uint8(img[0])
            if k % (subframes + 1) == 0:
                frames.append(frame)
                keyframe += 1
            video.append(frame)
        for _ in range(subframes):  # the last key frame is held for its whole interval, like the others:
            video.append(frame)     # the animation lasts as long as the driving clip

    with image_io.VideoWriter(out / 'side_by_side.mp4', fps=fps) as video:
        for i, record in enumerate(records):
            if retarget is not None:
                panels = [draw_landmarks(look, retarget.used[i], color=(255, 64, 64)),
                          draw_landmarks(anim.driving_frame(i), retarget.driving[i], color=(64, 160, 255))]
            else:
                panels = [] if look is None else [look]
                panels.append(draw_landmarks(anim.driving_frame(i), record['target_landmarks'], color=(255, 64, 64)))
            panels.append(frames[i])
            video.append(image_io.hstack(panels))

    noise_np = {name: value.cpu().numpy().astype(np.float32) for name, value in noise.items()}
    # The latents and the noise maps (by buffer name) every frame was rendered with.
    extra = {} if key_transforms is None else dict(transforms=key_transforms.astype(np.float32))
    image_io.save_npz(out / 'latents.npz', w=latents, **noise_np, **extra)
    rows = [dict(frame=i, landmark_error=float(r['landmark_error']), seconds=float(r['seconds']),
                 losses={str(k): float(v) for k, v in zip(r['loss_names'], r['loss_values'])})
            for i, r in enumerate(records)]
    for i, (row, record) in enumerate(zip(rows, records)):
        if motion is not None:
            row['head'] = {k: v for k, v in motion.as_rows()[i].items() if k != 'frame'}
        if retarget is not None:
            row.update(retarget.frame_report(i, record['landmarks']))
        else:  # the target is FAN's points on the driving frame (read from its heat maps)
            p, t = (torch.as_tensor(record[k], dtype=torch.float32)[None] for k in ('landmarks', 'target_landmarks'))
            row['landmark_error_to_used_target'] = float(landmark_error(p, t)[0])
    if retarget is not None:
        retarget.write_json(out / RETARGET_FILE)
    return np.stack(frames), latents, noise_np, rows


# ----------------------------------------------------------------------------
# Command line.

EXAMPLES = """
\b
Examples:
\b
  # The look of look.png, animated by the face in smile.mp4 (FFHQ 1024x1024):
  python projector_video.py --network=https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/ffhq.pkl \\
      --target_look=look.png --driving=smile.mp4 --outdir=anim --subframes=1
\b
  # The original's joint schedule: the look first, then all frames together, 8 at a time:
  python projector_video.py --network=ffhq.pkl --target_look=look.png --driving=smile.mp4 --outdir=anim \\
      --schedule=joint --batch-size=8
\b
  # The driver's expression on the look's own face (--retarget): the look's landmarks move as the
  # driver's move from its first frame; jaw and nose keep the look's shape:
  python projector_video.py --network=ffhq.pkl --target_look=look.png --driving=talk.mp4 --outdir=anim --retarget
\b
  # StyleGAN3: the output also turns and moves with the driving head (its in-plane rotation and shift):
  python projector_video.py --network=stylegan3-r-ffhq-1024x1024.pkl --target_look=look.png --driving=talk.mp4 \\
      --outdir=anim --follow-head
\b
  # Identity-free: smooth transitions between faces, driven by a folder of frames:
  python projector_video.py --network=ffhq.pkl --mode=free --target_landmarks_folder=frames/ --outdir=anim
\b
  # Running the same command again continues after the last finished frame.
"""


@click.command(epilog=EXAMPLES, context_settings=dict(help_option_names=['-h', '--help'], max_content_width=100))
@network_options
@click.option('--target_look', default=None, metavar='FILE', help='Look image (identity mode).')
@click.option('--target_landmarks_folder', default=None, metavar='DIR', help='Driving frames, natural sort order.')
@click.option('--driving', default=None, metavar='VIDEO',
              help='Driving video (mp4, mov, webm, mkv, animated GIF / WebP) instead of a folder.')
@click.option('--fps', type=click.FloatRange(min=0, min_open=True, max=1000), default=None,
              help='Frame rate of the driving frames [default: 30 for a folder; a video\'s own].')
@click.option('--outdir', required=True, metavar='DIR', help='Where to write the outputs.')
@click.option('--mode', type=click.Choice(['identity', 'free']), default='identity', show_default=True,
              help='identity: the look of --target_look in every frame; free: no look, the face follows from '
                   'the landmarks alone.')
@click.option('--schedule', type=click.Choice(SCHEDULES), default='sequential', show_default=True,
              help='sequential: frame by frame, warm-started; joint: the look first, then all frames together '
                   '(the original projector_video_parallel_v2.py).')
@click.option('--num-steps-first', 'num_steps_first', type=int, default=300, show_default=True,
              help='Steps for frame 0 (sequential) or the look alone (joint).')
@click.option('--num-steps', 'num_steps', type=int, default=50, show_default=True,
              help='Steps for every later frame (sequential) or all frames together (joint).')
@click.option('--batch-size', 'batch_size', type=int, default=4, show_default=True,
              help='Joint: frames synthesized and evaluated at a time (memory), gradients accumulated.')
@click.option('--lpips_weight', type=float, default=1.0, show_default=True,
              help='Weight of the LPIPS term to the look (identity mode).')
@click.option('--lpips_weight_second', type=float, default=None,
              help='Joint: LPIPS weight of stage 2 [default: --lpips_weight].')
@click.option('--landmark_weight', type=float, default=0.1, show_default=True,
              help='Weight of the heat-map term to each driving frame\'s landmarks.')
@click.option('--landmark_weights', default=DEFAULT_GROUP_WEIGHTS_TEXT, show_default=True,
              metavar='W1,..,W9', help='Nine group weights: ' + ', '.join(LANDMARK_GROUPS) + '.')
@click.option('--retarget', is_flag=True, default=False,
              help='Identity mode: each frame aims at the look\'s own landmarks plus the driver\'s aligned change '
                   'since driving frame 0, so the look keeps its face shape (writes target_landmarks_used.json).')
@click.option('--retarget-groups', 'retarget_groups', default=None, metavar='GROUPS',
              help='With --retarget: the groups the driver moves, comma-separated (' + ', '.join(LANDMARK_GROUPS) +
                   '; or eyebrows, eyes, nose, lips, mouth, all) [default: '
                   + DEFAULT_RETARGET_GROUPS_TEXT.replace(',', ', ') + '].')
@click.option('--latent_distance', type=click.Choice(LATENT_DISTANCES), default=DEFAULT_LATENT_DISTANCE,
              show_default=True, help='Smoothness / fidelity distance: sum(sqrt((a-b)^2+1e-6)) or ||a-b||.')
@click.option('--smoothness_weight', type=float, default=None,
              help='Distance between neighbouring latents [default: 0.005 charbonnier, 0.05 l2].')
@click.option('--fidelity_weight', type=float, default=None,
              help='Distance to w_avg (free) / the look\'s latent [default: identity 0; free as smoothness].')
@click.option('--d_loss', type=bool, default=False, show_default=True,
              help=f'Add the realism term softplus(-D(x)), weighted by --d_weight [{DEFAULT_D_WEIGHT:g} unless given].')
@click.option('--d_weight', type=float, default=None, metavar='FLOAT',
              help='Weight of the realism term; a value > 0 switches it on without --d_loss.')
@click.option('--subframes', type=click.IntRange(min=0), default=1, show_default=True,
              help='Interpolated frames between neighbours.')
@click.option('--align/--no-align', default=True, show_default=True,
              help='FFHQ-align the look and the driving frames.')
@click.option('--follow-head', 'follow_head', is_flag=True, default=False,
              help='StyleGAN3: the output turns and moves with the driving head (its in-plane rotation and '
                   'translation since frame 0, from the alignment) through the synthesis input\'s transform; '
                   'the latents carry the expression. Needs --align.')
@click.option('--align-smoothing', 'align_smoothing', type=click.FloatRange(min=0), default=2.0, show_default=True,
              help='Temporal smoothing of the alignment, in frames (0: none).')
@detector_options
@click.option('--face-index', 'face_index', type=click.IntRange(min=0), default=0, show_default=True,
              help='With --align: which face, by size (0: the largest), in the look and the first driving frame.')
@identity_options
@click.option('--id_anchor', type=click.Choice(ID_ANCHORS), default=None,
              help='Whose identity the term keeps: the look, or frame 0\'s result [default: look in identity '
                   'mode, first_frame in free mode].')
@precision_option
@click.option('--seed', type=SEED, default=303, show_default=True, help='Random seed (frame i uses seed + i).')
@click.option('--resume/--no-resume', default=True, show_default=True,
              help='Continue after the last finished frame in --outdir (--no-resume: start over).')
def main(network_pkl, fan_weights, vgg_weights, device, target_look, target_landmarks_folder, driving, fps, outdir,
         mode, schedule, num_steps_first, num_steps, batch_size, lpips_weight, lpips_weight_second, landmark_weight,
         landmark_weights, retarget, retarget_groups, latent_distance, smoothness_weight, fidelity_weight, d_loss,
         d_weight, subframes, align, follow_head, align_smoothing, detector, detector_weights, face_index, id_weight,
         id_weights, no_identity, id_anchor, precision, seed, resume):
    """Animate a face: every frame takes its facial landmarks from a driving sequence, and (identity
    mode) its look from --target_look.

    Writes animation.mp4, side_by_side.mp4, frames/, latents.npz and report.json into --outdir.
    """
    timer = PhaseTimer()
    cli_common.check_align_options(align, face_index, detector, detector_weights)
    settings = AnimationSettings(mode=mode, schedule=schedule, num_steps_first=num_steps_first, num_steps=num_steps,
                                 lpips_weight=lpips_weight, lpips_weight_second=lpips_weight_second,
                                 landmark_weight=landmark_weight, landmark_weights=parse_group_weights(landmark_weights),
                                 latent_distance=latent_distance, smoothness_weight=smoothness_weight,
                                 fidelity_weight=fidelity_weight, d_weight=realism_weight(d_loss, d_weight),
                                 batch_size=batch_size, seed=seed, id_weight=id_weight, id_anchor=id_anchor,
                                 retarget=retarget, retarget_groups=retarget_groups_option(retarget, retarget_groups))
    settings.validate()
    need_identity = identity.identity_requested(id_weight, id_weights, no_identity)
    if (target_landmarks_folder is None) == (driving is None):
        raise UserError('give the driving frames with exactly one of --target_landmarks_folder and --driving')
    if mode == 'identity' and target_look is None:
        raise UserError('identity mode needs --target_look (or use --mode free)')
    if mode == 'free' and target_look is not None:
        raise UserError('--mode free takes no --target_look (it has no look: the face comes from the landmarks '
                        'alone); drop --target_look, or use --mode identity')
    look, look_info = image_io.read_image(target_look, '--target_look') if mode == 'identity' else (None, None)
    if driving is not None:
        source = image_io.open_driving(driving, '--driving')
    else:
        source = image_io.open_driving(target_landmarks_folder, '--target_landmarks_folder')
    if source.warning:
        click.echo(f'warning: --driving {source.path}: {source.warning}', err=True)
    fps = fps if fps is not None else (source.fps or 30.0)
    check_outdir_writable(outdir)
    dev = pick_device(device)
    # Checked now; said when the work starts, after the last user error a run can meet (a resume
    # conflict, a look without a face), so that an error stays one line.
    used_precision = precision_mod.resolve(precision, dev)
    settings = replace(settings, precision=used_precision)
    precision_note = precision_mod.announcement(used_precision, precision, dev)

    with timer('load_networks'):
        nets = load_networks(network_pkl, dev, fan_weights=fan_weights, vgg_weights=vgg_weights,
                             need_D=settings.d_weight > 0, need_lpips=mode == 'identity',
                             need_identity=need_identity, id_weights=id_weights,
                             identity_optional=identity.score_only(id_weight, id_weights))
        faces = FaceLandmarks.load(fan=nets.fan, detector=detector if align else 'none',
                                   detector_weights=detector_weights, device=dev)
    if follow_head:  # before anything is written
        check_follow_head(nets.G, align)
    out = prepare_outdir(outdir)
    # What a resumed run must share with the run that wrote the finished frames (files by content).
    inputs = dict(network=file_identity(network_pkl), look=file_identity(target_look),
                  driving=file_identity(driving or target_landmarks_folder),
                  detector=detector if align else None,
                  detector_weights=file_identity(detector_weights) if align else None,
                  fan_weights=file_identity(fan_weights), vgg_weights=file_identity(vgg_weights),
                  look_source=str(target_look) if target_look else None,
                  driving_source=str(driving or target_landmarks_folder))
    if id_weight:  # the term's network shapes the frames (without the term, only the score uses it)
        inputs['id_weights'] = file_identity(id_weights) if id_weights else identity.FACENET_URL
    animation = animate(nets, source, settings, look=look, outdir=out, faces=faces, align=align,
                        align_smoothing=align_smoothing, face_index=face_index, fps=fps, subframes=subframes,
                        resume=resume, inputs=inputs, announce=precision_note, follow_head=follow_head)
    report = animation.report
    report['settings'].update(network=network_pkl, target_look=target_look,
                              target_landmarks_folder=target_landmarks_folder, driving=driving, outdir=str(outdir),
                              detector=detector, detector_weights=detector_weights, fan_weights=fan_weights,
                              vgg_weights=vgg_weights, d_loss=d_loss, id_weights=id_weights,
                              no_identity=no_identity, precision=precision,  # asked for, as in every report
                              precision_requested=precision)  # the name earlier reports used
    report['look_image'] = look_info.as_dict() if look_info is not None else None
    report['driving_input'] = source.info()
    report['timings'] = {**report['timings'], 'load_networks': timer.as_dict().get('load_networks', 0.0),
                         'total': timer.as_dict()['total']}
    report['environment'] = environment()
    image_io.save_json(out / 'report.json', report)
    n = report["num_frames"]
    click.echo(f'{n} frame{"s" if n != 1 else ""}; outputs in {out}', err=True)


if __name__ == '__main__':
    run(main)
