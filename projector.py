"""Project a face into StyleGAN2 with the look of one image and the landmarks of another.

    loss = lpips_weight * LPIPS(G(w), look) + landmark_weight * HL(G(w), landmarks) + 1e5 * noise_reg
           [+ id_weight * (1 - cos(E(crop(G(w))), E(crop(look))))]   [+ d_weight * softplus(-D(G(w)))]

The landmark target is an image (FAN's heat maps of it, as in the original) or 68 coordinates
(``.json``/``.npy``/``.npz``/``.pts``, rendered as FAN-style heat maps); ``--retarget`` keeps the
look's jaw and nose and takes only the expression's groups from the target (``target_input``).

Command line: ``python projector.py --help``. Python::

    nets = loaders.load_networks('ffhq.pkl', device)
    projection = LandmarkProjector(nets, look, target, landmark_weight=0.05).run(ProjectionSettings())
"""

from __future__ import annotations

import cli_startup  # noqa: F401 - first: Ctrl-C during the imports below is a quiet exit

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Union

import click
import numpy as np
import torch

import image_io
import identity
import landmark_targets
import precision as precision_mod
from cli_common import (ZERO_ONE, PhaseTimer, ProgressBar, check_outdir_writable, check_weights, detector_options,
                        environment, identity_options, network_options, pick_device, precision_option,
                        prepare_outdir, run)
import cli_common
from dnnlib.util import UserError
from face_align import frame_photo
from face_landmarks import FaceLandmarks
from landmark_loss import (DEFAULT_GROUP_WEIGHTS, DEFAULT_GROUP_WEIGHTS_TEXT, LANDMARK_GROUPS, LandmarkLoss,
                           draw_landmarks, parse_group_weights)
from target_input import LandmarkTarget, framed_landmarks, load_target
from loaders import Networks, load_networks, projection_arrays
from objectives import DEFAULT_D_WEIGHT, look_and_landmarks, per_latent, realism_term
from optimization import ProjectionResult, ProjectionSettings, StepInfo, noise_buffer_names, project
from torch_utils import misc


@dataclass
class LandmarkProjection:
    result: ProjectionResult
    lpips_to_look: float
    landmark_error: float
    projection_landmarks: np.ndarray  # [68, 2] image pixels
    identity_similarity: Optional[float] = None  # cosine of FaceNet embeddings, look vs projection (FaceNet loaded)


def prepare_image(image: Union[np.ndarray, 'PIL.Image.Image'], resolution: int) -> np.ndarray:
    """Centre-crop square and Lanczos-resize ``uint8 [H, W, 3]`` (or a PIL image, taken as RGB) to
    the generator's resolution."""
    from PIL import Image
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert('RGB'))
    return image_io.centre_crop_resize(image_io.check_rgb_array(image, 'prepare_image'), resolution)


class LandmarkProjector:
    """The look of one image and the landmarks of another, for one generator.

    ``look`` is ``uint8 [R, R, 3]`` at the generator's resolution (see ``prepare_image``).
    ``target`` is the landmark target: an image ``uint8 [R, R, 3]`` (FAN's heat maps of it) or a
    ``target_input.LandmarkTarget`` (an image or coordinates, possibly retargeted); ``landmarks``
    may give the heat-map loss itself instead (a ``LandmarkLoss``). Construction computes
    everything that depends only on the targets (the face box, the target heat maps, the look's
    LPIPS features and FaceNet embedding) and keeps it here: the shared ``nets`` are only read, so
    several projectors can use one ``Networks``. ``run`` optimizes; ``run_batch`` optimizes several
    projectors' latents in one batched loop.

    ``d_weight > 0`` adds the realism term ``d_weight * softplus(-D(x))`` (needs ``nets.D``);
    ``id_weight > 0`` the identity term ``id_weight * (1 - cos(E(crop(x)), E(crop(look))))``
    (needs ``nets.facenet``). Whenever ``nets.facenet`` is loaded, the projection's
    ``identity_similarity`` (the cosine) is measured.
    """

    def __init__(self, nets: Networks, look: np.ndarray, target: Union[np.ndarray, LandmarkTarget, None] = None,
                 lpips_weight: float = 1.0, landmark_weight: float = 0.1,
                 group_weights: Sequence[float] = DEFAULT_GROUP_WEIGHTS, d_weight: float = 0.0,
                 id_weight: float = 0.0, faces: Optional[FaceLandmarks] = None,
                 landmarks: Optional[LandmarkLoss] = None):
        device = misc.module_device(nets.G)
        R = nets.G.img_resolution
        image_io.check_rgb_array(look, 'look', R)
        if isinstance(target, LandmarkTarget) and target.resolution != R:
            raise ValueError(f'the landmark target was read for {target.resolution}x{target.resolution}, the '
                             f'generator makes {R}x{R}: load_target(..., resolution={R})')
        if nets.fan is None or nets.perceptual is None:
            raise ValueError('LandmarkProjector needs FAN and LPIPS: load_networks(..., need_fan=True, need_lpips=True)')
        self.nets = nets
        self.look = look
        self.lpips_weight = lpips_weight
        self.landmark_weight = landmark_weight
        self.d_weight = d_weight
        self.id_weight = id_weight
        if d_weight and nets.D is None:
            raise ValueError('d_weight > 0 needs the discriminator (load_networks(..., need_D=True))')
        if id_weight and nets.facenet is None:
            raise ValueError('id_weight > 0 needs FaceNet (load_networks(..., need_identity=True))')
        faces = faces or FaceLandmarks(nets.fan)
        self.target_input = target if isinstance(target, LandmarkTarget) else None
        self.target = target.image if isinstance(target, LandmarkTarget) else target
        if landmarks is not None:
            self.landmarks = landmarks
        elif self.target_input is not None:
            self.landmarks = self.target_input.loss(faces, group_weights, device=device)
        elif target is not None:
            image_io.check_rgb_array(target, 'target', R)
            self.landmarks = LandmarkLoss(faces, image_io.to_tensor(target, device), group_weights)
        else:
            raise ValueError('give the landmark target: an image, a LandmarkTarget, or landmarks=LandmarkLoss')
        self.look_tensor = image_io.to_tensor(look, device)
        self.look_distance = nets.perceptual.distance_to(self.look_tensor)
        self.identity = None
        if nets.facenet is not None:
            look_points = (self.target_input.look_points if self.target_input is not None
                           and self.target_input.look_points is not None else framed_landmarks(faces, look))
            self.identity = identity.IdentityLoss(nets.facenet, self.look_tensor, identity.identity_box(look_points, R))
        self.objective = look_and_landmarks(self.look_distance, self.landmarks, lpips_weight, landmark_weight,
                                            extra=self._extra_terms if (d_weight or id_weight) else None)

    def _extra_terms(self, image: torch.Tensor, ws: torch.Tensor) -> Dict[str, torch.Tensor]:
        terms = {}
        if self.d_weight:
            terms['realism'] = self.d_weight * realism_term(self.nets.D, image)
        if self.id_weight:
            terms['identity'] = self.id_weight * self.identity(image)
        return terms

    @property
    def target_points(self) -> np.ndarray:
        """``[68, 2]``: the points the landmark error is measured against (the used target)."""
        return self.landmarks.target_landmarks[0].cpu().numpy()

    def target_panel(self) -> np.ndarray:
        """``uint8 [R, R, 3]``: the target (image, or a grey canvas for coordinates) with the used points drawn."""
        if self.target_input is not None:
            return self.target_input.panel()
        R = self.nets.G.img_resolution
        base = self.target if self.target is not None else np.full([R, R, 3], 96, dtype=np.uint8)
        return draw_landmarks(base, self.target_points, color=(255, 64, 64))

    def step_landmarks(self, info: StepInfo, i: int = 0) -> np.ndarray:
        """Landmarks ``[68, 2]`` of a step's image (latent ``i``), reusing the heat maps the loss computed."""
        if self.landmark_weight == 0:  # the loss did not run FAN this step
            return self.landmarks.measure(info.image[i:i + 1])[1]
        return self.landmarks.landmarks()[0].cpu().numpy()

    def _finish(self, result: ProjectionResult) -> LandmarkProjection:
        with torch.no_grad():
            lpips_to_look = float(self.look_distance(result.image[:1])[0])
            similarity = float(self.identity.similarity(result.image[:1].float())[0]) if self.identity else None
        error, points = self.landmarks.measure(result.image[:1])
        return LandmarkProjection(result=result, lpips_to_look=lpips_to_look, landmark_error=error,
                                  projection_landmarks=points, identity_similarity=similarity)

    def run(self, settings: ProjectionSettings = ProjectionSettings(),
            callbacks: Sequence[Callable[[StepInfo], None]] = (),
            w_init: Optional[torch.Tensor] = None) -> LandmarkProjection:
        result = project(self.nets.G, self.objective, settings, w_init=w_init, callbacks=callbacks)
        return self._finish(result)

    @staticmethod
    def run_batch(projectors: Sequence['LandmarkProjector'], settings: ProjectionSettings = ProjectionSettings(),
                  seeds: Optional[Sequence[int]] = None, chunk_size: Optional[int] = None,
                  callbacks: Sequence[Callable[[StepInfo], None]] = ()) -> List[LandmarkProjection]:
        """Optimize one latent per projector together (all on the same generator); ``seeds`` default to
        ``settings.seed`` each. Projection ``i`` equals ``projectors[i].run`` with seed ``seeds[i]``
        to float tolerance."""
        projectors = list(projectors)
        if not projectors:
            return []
        G = projectors[0].nets.G
        if any(p.nets.G is not G for p in projectors):
            raise ValueError('run_batch needs projectors on one generator')
        seeds = list(seeds) if seeds is not None else [settings.seed] * len(projectors)
        if len(seeds) != len(projectors):
            raise ValueError(f'run_batch: {len(seeds)} seeds for {len(projectors)} projectors')
        result = project(G, per_latent([p.objective for p in projectors]), settings, seeds=seeds,
                         chunk_size=chunk_size, callbacks=callbacks)
        return [p._finish(result.select(i)) for i, p in enumerate(projectors)]


# ----------------------------------------------------------------------------
# Inputs: the look and the landmark target as the projection uses them.

ALIGN_HEADROOM = 4  # with --align, photos are decoded with a shorter side of at least 4x the resolution


@dataclass
class PreparedInputs:
    """A look and a landmark target at the generator's resolution, and how they were read."""
    look: np.ndarray                  # uint8 [R, R, 3]
    target: LandmarkTarget
    report: dict                      # look_image / target_image (image_io.ImageInfo), look_face / target_face (--align)
    warnings: List[str]


def prepare_inputs(faces: FaceLandmarks, look_path: str, target_path: str, resolution: int, *, align: bool = False,
                   face_index: int = 0, frame: Optional[str] = None,
                   retarget_groups: Optional[Sequence[str]] = None) -> PreparedInputs:
    """Read ``--target_look`` and ``--target_landmarks`` the way every projection does.

    Images go through ``image_io.read_image`` (EXIF orientation applied, colour converted to
    sRGB, huge images reduced early); with ``align`` both photos are FFHQ-aligned
    (``face_align.frame_photo``). A landmark
    file's points are taken as pixels of the generator's frame (``frame``: ``--landmarks-frame``).
    Every problem with an input is a one-line ``UserError``.
    """
    report: dict = {}
    warnings: List[str] = []
    # Decoded no larger than needed: the crop's side, or (aligning) room for a face a quarter of the photo.
    min_side = resolution * (ALIGN_HEADROOM if align else 1)
    look_raw, info = image_io.read_image(look_path, '--target_look', min_side=min_side)
    report['look_image'] = info.as_dict()
    look, face, warning = frame_photo(faces, look_raw, resolution, align, face_index, str(look_path))
    del look_raw
    if face is not None:
        report['look_face'] = face
    warnings += [warning] if warning else []
    target_image = None
    if not landmark_targets.is_landmark_file(target_path):
        landmark_targets.refuse_points_as_text(target_path)
        raw, info = image_io.read_image(target_path, '--target_landmarks', min_side=min_side)
        report['target_image'] = info.as_dict()
        target_image, face, warning = frame_photo(faces, raw, resolution, align, face_index, str(target_path))
        if face is not None:
            report['target_face'] = face
        warnings += [warning] if warning else []
    elif align:
        _, size = landmark_targets.read_landmark_points(target_path)
        given = tuple(size or landmark_targets.parse_frame(frame) or (resolution, resolution))
        if given != (resolution, resolution):
            warnings.append(f'--align aligns photos, not points: the points of {target_path} ({given[0]}x{given[1]} '
                            f'frame) are scaled and centre-cropped to {resolution}x{resolution}, while the look is '
                            f'FFHQ-aligned; give points in the aligned frame (an earlier run\'s landmarks.json)')
    target = load_target(target_path, faces, look, resolution, frame, retarget_groups, image=target_image)
    return PreparedInputs(look, target, report, warnings)


class FrameRecorder:
    """Video callback: each step's image (already synthesized) and its landmarks become one frame.

    Frame layout: look | projection | projection with its landmarks | target with its landmarks.
    """

    def __init__(self, writer: image_io.VideoWriter, look: np.ndarray, landmarks_fn: Callable[[StepInfo], np.ndarray],
                 target_panel: np.ndarray):
        self.writer = writer
        self.look = look
        self.landmarks_fn = landmarks_fn
        self.target_panel = target_panel

    def __call__(self, info: StepInfo) -> None:
        proj = image_io.to_uint8(info.image[0])
        marked = draw_landmarks(proj, self.landmarks_fn(info))
        self.writer.append(image_io.hstack([self.look, proj, marked, self.target_panel]))


EXAMPLES = """
\b
Examples:
\b
  # The look of look.png with the expression of smile.png (FFHQ 1024x1024):
  python projector.py --network=https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/ffhq.pkl \\
      --target_look=look.png --target_landmarks=smile.png --outdir=out \\
      --landmark_weight=0.05 --num-steps=1000 --save_video=1
\b
  # Only the expression of smile.png, on the look's own face shape (jaw and nose kept):
  python projector.py --network=ffhq.pkl --target_look=look.png --target_landmarks=smile.png \\
      --retarget --outdir=out
\b
  # Edit the landmarks a run wrote (out/landmarks.json) and project again from the coordinates:
  python projector.py --network=ffhq.pkl --target_look=look.png --target_landmarks=out/landmarks.json \\
      --outdir=out2
\b
  # Phone photos, FFHQ-aligned first, keeping the person (identity term):
  python projector.py --network=ffhq.pkl --target_look=IMG_0001.HEIC --target_landmarks=IMG_0002.jpg \\
      --align --id_weight=1 --outdir=out
\b
  # Offline, with local weight files:
  python projector.py --network=ffhq.pkl --fan-weights=2DFAN4-11f355bf06.pth.tar \\
      --vgg-weights=vgg16-397923af.pth --target_look=look.png --target_landmarks=smile.png --outdir=out
\b
Landmark groups for --landmark_weights, in order: """ + ', '.join(LANDMARK_GROUPS) + '.'


@click.command(epilog=EXAMPLES, context_settings=dict(help_option_names=['-h', '--help'], max_content_width=100))
@network_options
@click.option('--target_look', 'target_look', default=None, metavar='FILE', help='Image whose look (identity, style) to take.')
@click.option('--target_landmarks', 'target_landmarks', default=None, metavar='FILE',
              help='Image whose facial landmarks (expression) to take, or a landmark file (.json, .npy, .npz, .pts: '
                   '68 [x, y] points in the iBUG order).')
@click.option('--landmarks-frame', 'landmarks_frame', default=None, metavar='W,H',
              help='The frame a landmark file\'s pixels refer to when the file names none [default: the '
                   'generator\'s resolution].')
@click.option('--retarget', is_flag=True, default=False,
              help='Keep the look\'s face shape: align the target\'s points to the look\'s and take only '
                   '--retarget-groups from them.')
@click.option('--retarget-groups', 'retarget_groups', default=None, metavar='GROUPS',
              help='With --retarget: the groups taken from the target (names as for --landmark_weights, or '
                   'eyebrows, eyes, nose, lips, mouth, all) [default: '
                   + landmark_targets.DEFAULT_RETARGET_GROUPS_TEXT.replace(',', ', ') + '].')
@click.option('--save_landmarks/--no-save_landmarks', 'save_landmarks', default=True, show_default=True,
              help='Write landmarks.json (look, target, used target and projection points; readable as '
                   '--target_landmarks).')
@click.option('--outdir', default=None, metavar='DIR', help='Where to write the outputs.')
@click.option('--pairs', 'pairs_csv', default=None, metavar='CSV',
              help='Many pairs: a CSV with columns look,landmarks,outdir (paths relative to the CSV; optional columns '
                   'lpips_weight, landmark_weight, landmark_weights, seed override the options). Replaces '
                   '--target_look/--target_landmarks/--outdir; pairs_report.json goes next to the CSV.')
@click.option('--batch-size', 'batch_size', type=int, default=1, show_default=True,
              help='With --pairs: optimize this many pairs in one batched step.')
@click.option('--resume/--no-resume', default=True, show_default=True,
              help='With --pairs: skip rows whose outputs are complete.')
@click.option('--num-steps', 'num_steps', type=int, default=1000, show_default=True, help='Optimization steps.')
@click.option('--lpips_weight', type=float, default=1.0, show_default=True, help='Weight of the LPIPS term (look).')
@click.option('--landmark_weight', type=float, default=0.1, show_default=True, help='Weight of the heat-map term (landmarks); 0.01-0.05 keeps quality.')
@click.option('--landmark_weights', default=DEFAULT_GROUP_WEIGHTS_TEXT, show_default=True, metavar='W1,..,W9', help='Nine group weights (order below).')
@click.option('--seed', type=cli_common.SEED, default=303, show_default=True, help='Random seed.')
@click.option('--save_video', '--save-video', 'save_video', type=ZERO_ONE, default=0, show_default=True,
              help='1: also write proj.mp4 of the optimization (true/false are accepted too).')
@click.option('--d_loss', type=bool, default=False, show_default=True,
              help=f'Add the discriminator realism term softplus(-D(x)), weighted by --d_weight '
                   f'[{DEFAULT_D_WEIGHT:g} unless given].')
@click.option('--d_weight', type=float, default=None, metavar='FLOAT',
              help='Weight of the realism term; a value > 0 switches it on without --d_loss.')
@identity_options
@click.option('--latent', type=click.Choice(['w', 'w+']), default='w', show_default=True, help='Optimize one w for all layers, or one per layer.')
@click.option('--align/--no-align', default=False, show_default=True, help='FFHQ-align raw photos first (from their landmarks).')
@click.option('--face-index', 'face_index', type=click.IntRange(min=0), default=0, show_default=True,
              help='With --align: which face, by size (0: the largest), in each photo.')
@detector_options
@precision_option
def main(network_pkl, fan_weights, vgg_weights, device, target_look, target_landmarks, landmarks_frame, retarget,
         retarget_groups, save_landmarks, outdir, pairs_csv, batch_size, resume, num_steps, lpips_weight,
         landmark_weight, landmark_weights, seed, save_video, d_loss, d_weight, id_weight, id_weights, no_identity,
         latent, align, face_index, detector, detector_weights, precision):
    """Project a face into a StyleGAN2 generator: the look of --target_look with the facial
    landmarks (expression) of --target_landmarks.

    Inputs are read upright (EXIF orientation) in sRGB, centre-cropped to a square and resized
    to the generator's resolution; pass --align for photos that are not FFHQ-aligned. Writes
    proj.png, projected_w.npz, target_look.png, target_landmarks.png (the inputs as used),
    summary.png, landmarks.json, report.json and, with --save_video 1, proj.mp4 into --outdir
    (with --retarget also target_landmarks_used.json). With --pairs CSV, does the same for every
    row of the CSV (networks loaded once; under torchrun the rows are shared out over the ranks).
    """
    timer = PhaseTimer()
    # Everything a user can get wrong is checked before any heavy work.
    if num_steps < 1:
        raise UserError(f'--num-steps must be at least 1, got {num_steps}')
    check_weights(lpips_weight=lpips_weight, landmark_weight=landmark_weight)
    d_weight = realism_weight(d_loss, d_weight)
    group_weights = parse_group_weights(landmark_weights)
    need_identity = identity.identity_requested(id_weight, id_weights, no_identity)
    groups = landmark_targets.retarget_groups_option(retarget, retarget_groups)  # checked even without --retarget
    groups = groups if retarget else None
    landmark_targets.parse_frame(landmarks_frame)
    cli_common.check_align_options(align, face_index, detector, detector_weights)
    cli = dict(network=network_pkl, num_steps=num_steps, lpips_weight=lpips_weight, landmark_weight=landmark_weight,
               landmark_weights=landmark_weights, seed=seed, save_video=save_video, d_loss=d_loss, d_weight=d_weight,
               id_weight=id_weight, id_weights=id_weights, no_identity=no_identity, need_identity=need_identity,
               retarget=retarget, retarget_groups=list(groups) if groups else None, landmarks_frame=landmarks_frame,
               save_landmarks=save_landmarks, latent=latent, align=align, face_index=face_index, detector=detector,
               detector_weights=detector_weights, fan_weights=fan_weights, vgg_weights=vgg_weights,
               precision=precision)
    if pairs_csv is not None:
        given = [n for n, v in (('--target_look', target_look), ('--target_landmarks', target_landmarks),
                                ('--outdir', outdir)) if v is not None]
        if given:
            raise UserError(f'--pairs replaces {", ".join(given)}: give the paths in the CSV')
        import pairs_runner
        return pairs_runner.projector_main(pairs_csv, batch_size, resume, device, cli, group_weights)
    missing = [n for n, v in (('--target_look', target_look), ('--target_landmarks', target_landmarks),
                              ('--outdir', outdir)) if v is None]
    if missing:
        raise UserError(f'missing {", ".join(missing)} (or give --pairs CSV)')
    if batch_size != 1 or not resume:
        raise UserError('--batch-size and --no-resume need --pairs')
    check_inputs(target_look, target_landmarks)
    if landmarks_frame is not None and not landmark_targets.is_landmark_file(target_landmarks):
        raise UserError('--landmarks-frame only applies when --target_landmarks is a landmark file')
    check_outdir_writable(outdir)
    dev = pick_device(device)
    used_precision = precision_mod.resolve(precision, dev)
    settings = ProjectionSettings(num_steps=num_steps, latent=latent, seed=seed, precision=used_precision)

    with timer('load_networks'):
        nets, faces = load_for_projection(cli, dev)
    with timer('prepare_targets'):
        inputs = prepare_inputs(faces, target_look, target_landmarks, nets.G.img_resolution, align=align,
                                face_index=face_index, frame=landmarks_frame, retarget_groups=groups)
        # Said once the inputs are read, so that a bad file (network or image) stays a one-line error.
        cli_common.announce_precision(used_precision, precision, dev)
        for warning in inputs.warnings:
            click.echo(f'warning: {warning}', err=True)
        projector = projector_for(nets, faces, inputs, cli, group_weights)
    out = prepare_outdir(outdir)

    bar = ProgressBar(num_steps, (lambda: float(projector.landmarks.error()[0])) if landmark_weight else None)
    callbacks: List[Callable[[StepInfo], None]] = [bar]
    writer = None
    try:
        if save_video:
            writer = image_io.VideoWriter(out / 'proj.mp4', fps=30)
            callbacks.append(FrameRecorder(writer, inputs.look, projector.step_landmarks, projector.target_panel()))
        with timer('optimize'):
            projection = projector.run(settings, callbacks)
        bar.close()
        with timer('write_outputs'):
            cli_common.mark_unfinished(out)  # old and new outputs never pass for one complete run
            written = []
            if writer is not None:
                writer.close()
                writer = None
                written.append('proj.mp4')
            written += write_outputs(out, projection, projector, save_landmarks)
    finally:
        bar.close()
        if writer is not None:
            writer.discard()

    report = make_report(cli, str(target_look), str(target_landmarks), str(outdir), group_weights, dev,
                         used_precision, nets, settings, projector, projection, timer, inputs)
    finish_outputs(out, written, report)
    similarity = ('' if projection.identity_similarity is None
                  else f', identity similarity {projection.identity_similarity:.3f}')
    click.echo(f'LPIPS to look {projection.lpips_to_look:.4f}, landmark error {projection.landmark_error:.4f}'
               f'{similarity}; outputs in {out}', err=True)


def check_inputs(look: str, target: str) -> None:
    """What can be checked of the inputs before the networks load: they exist, and a landmark file parses."""
    for what, path in (('--target_look', look), ('--target_landmarks', landmark_targets.split_set_name(target)[0])):
        if not Path(path).is_file():
            raise UserError(f'{what}: {path} does not exist' if not Path(path).exists()
                            else f'{what}: {path} is not a file')
    if landmark_targets.is_landmark_file(target):
        landmark_targets.read_landmark_points(target)


def load_for_projection(cli: dict, dev) -> tuple:
    """``(Networks, FaceLandmarks)`` for a projection: G (and D, FaceNet when asked), FAN, LPIPS, the detector."""
    nets = load_networks(cli['network'], dev, fan_weights=cli['fan_weights'], vgg_weights=cli['vgg_weights'],
                         need_D=cli['d_weight'] > 0, need_identity=cli['need_identity'], id_weights=cli['id_weights'],
                         identity_optional=identity.score_only(cli['id_weight'], cli['id_weights']))
    faces = FaceLandmarks.load(fan=nets.fan, detector=cli['detector'] if cli['align'] else 'none',
                               detector_weights=cli['detector_weights'], device=dev)
    return nets, faces


def projector_for(nets: Networks, faces: FaceLandmarks, inputs: PreparedInputs, cli: dict, group_weights,
                  overrides: Optional[dict] = None) -> LandmarkProjector:
    """The ``LandmarkProjector`` of a command line (and a ``--pairs`` row's ``overrides``)."""
    o = overrides or {}
    return LandmarkProjector(nets, inputs.look, inputs.target, o.get('lpips_weight', cli['lpips_weight']),
                             o.get('landmark_weight', cli['landmark_weight']), o.get('group_weights', group_weights),
                             cli['d_weight'], cli['id_weight'], faces=faces)




def make_report(cli: dict, target_look: str, target_landmarks: str, outdir: str, group_weights, dev,
                used_precision: str, nets: Networks, settings: ProjectionSettings, projector: LandmarkProjector,
                projection: LandmarkProjection, timer: PhaseTimer, inputs: Optional[PreparedInputs] = None) -> dict:
    """The content of ``report.json`` (the same for a single run and a ``--pairs`` row)."""
    c = cli
    report = dict(
        command='projector',
        settings=dict(network=c['network'], target_look=target_look, target_landmarks=target_landmarks,
                      outdir=outdir, num_steps=settings.num_steps, lpips_weight=projector.lpips_weight,
                      landmark_weight=projector.landmark_weight,
                      landmark_weights=dict(zip(LANDMARK_GROUPS, group_weights)),
                      seed=settings.seed, save_video=c['save_video'], d_loss=c['d_loss'], d_weight=c['d_weight'],
                      id_weight=c['id_weight'], id_weights=c['id_weights'], no_identity=c['no_identity'],
                      retarget=c['retarget'], retarget_groups=c['retarget_groups'],
                      landmarks_frame=c['landmarks_frame'], save_landmarks=c['save_landmarks'],
                      latent=settings.latent, align=c['align'], face_index=c['face_index'], detector=c['detector'],
                      detector_weights=c['detector_weights'], device=str(dev),
                      fan_weights=c['fan_weights'], vgg_weights=c['vgg_weights'], precision=c['precision']),
        precision=used_precision,
        # The inputs by content, whatever their names: a --pairs resume redoes a row whose image or
        # landmark file was edited in place (a #set name is left out: its file is what is read).
        input_contents=dict(target_look=image_io.file_identity(target_look),
                            target_landmarks=image_io.file_identity(
                                str(landmark_targets.split_set_name(target_landmarks)[0]))),
        network=dict(nets.info),
        # optimize_noise as it was: a generator without noise inputs (StyleGAN3) has none to optimize
        optimizer=dict(asdict(settings), optimize_noise=settings.optimize_noise and bool(noise_buffer_names(nets.G))),
        generator=dict(resolution=nets.G.img_resolution, num_ws=nets.G.num_ws, w_dim=nets.G.w_dim),
        face_box=asdict(projector.landmarks.box),
        final_losses=projection.result.losses[0],
        lpips_to_look=projection.lpips_to_look,
        landmark_error=projection.landmark_error,
    )
    if projector.target_input is not None:
        report.update(projector.target_input.report(projection.projection_landmarks))
    if projection.identity_similarity is not None:
        report['identity_similarity'] = projection.identity_similarity
        report['identity_squared_distance'] = float(identity.similarity_to_squared_distance(
            projection.identity_similarity))
    warnings = [] if inputs is None else list(inputs.warnings)
    if inputs is not None:
        report.update(inputs.report)
    slow = precision_mod.slow_bf16_warning(used_precision, dev)
    report['warnings'] = warnings + ([slow] if slow else [])  # what stderr said, kept with the results
    report.update(
        loss_first_step=projection.result.history[0]['total'],
        losses_first_step=projection.result.history[0]['losses'][0],
        loss_last_step=projection.result.history[-1]['total'],
        seconds_per_step=projection.result.seconds / settings.num_steps,
        timings=timer.as_dict(),
        environment=environment(),
    )
    return report


def realism_weight(d_loss: bool, d_weight: Optional[float]) -> float:
    """The realism term's weight from ``--d_loss`` and ``--d_weight`` (0: no term, D is not loaded)."""
    if d_weight is not None:
        check_weights(d_weight=d_weight)
        return float(d_weight)
    return DEFAULT_D_WEIGHT if d_loss else 0.0


# Every file a projection may write into its folder (report.json last); a rerun into the same
# folder removes those it does not write again (cli_common.remove_stale_outputs).
OUTPUT_NAMES = ('proj.png', 'projected_w.npz', 'target_look.png', 'target_landmarks.png', 'summary.png',
                'landmarks.json', 'target_landmarks_used.json', 'proj.mp4', 'report.json')


def write_outputs(out: Path, projection: LandmarkProjection, projector: LandmarkProjector,
                  save_landmarks: bool = True) -> List[str]:
    """proj.png, projected_w.npz, target_look.png, target_landmarks.png, summary.png, landmarks.json
    (``save_landmarks``) and, with ``--retarget``, target_landmarks_used.json, each written
    atomically. Returns the names written."""
    proj = image_io.to_uint8(projection.result.image[0])
    image_io.save_png(out / 'proj.png', proj)
    # The latent and the noise maps proj.png was rendered with (loaders.load_projection reads both).
    image_io.save_npz(out / 'projected_w.npz', **projection_arrays(projection.result.ws, projection.result.noise))
    look = projector.look
    image_io.save_png(out / 'target_look.png', look)
    target_panel = projector.target_panel()
    image_io.save_png(out / 'target_landmarks.png', projector.target if projector.target is not None else target_panel)
    marked = draw_landmarks(proj, projection.projection_landmarks)
    panels = [look, target_panel, marked]
    if projection.identity_similarity is not None:
        panels = [image_io.caption(p, t) for p, t in
                  zip(panels, ['look', 'target (used)', f'identity {projection.identity_similarity:.3f}'])]
    image_io.save_png(out / 'summary.png', image_io.hstack(panels))
    written = ['proj.png', 'projected_w.npz', 'target_look.png', 'target_landmarks.png', 'summary.png']
    if projector.target_input is not None:
        written += projector.target_input.save(out, projection.projection_landmarks, landmarks=save_landmarks)
    return written


def finish_outputs(out: Path, written: Sequence[str], report: dict) -> None:
    """Remove what an earlier run left in ``out`` and this one did not write, then write report.json
    (last: a folder with it is complete)."""
    cli_common.remove_stale_outputs(out, OUTPUT_NAMES, [*written, 'report.json'])
    image_io.save_json(out / 'report.json', report)


if __name__ == '__main__':
    run(main)
