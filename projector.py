"""Project a face into StyleGAN2 with the look of one image and the landmarks of another.

    loss = lpips_weight * LPIPS(G(w), look) + landmark_weight * HL(G(w), landmarks) + 1e5 * noise_reg

Command line: ``python projector.py --help``. Python::

    nets = loaders.load_networks('ffhq.pkl', device)
    projection = LandmarkProjector(nets, look, target, landmark_weight=0.05).run(ProjectionSettings())
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import click
import numpy as np
import torch

import image_io
from cli_common import (ZERO_ONE, PhaseTimer, ProgressBar, check_outdir_writable, check_weights, detector_options,
                        environment, load_face_detector, network_options, pick_device, precision_option,
                        prepare_outdir, run)
import cli_common
from dnnlib.util import UserError
from landmark_loss import DEFAULT_GROUP_WEIGHTS, DEFAULT_GROUP_WEIGHTS_TEXT, LANDMARK_GROUPS, LandmarkLoss, draw_landmarks, parse_group_weights
from loaders import Networks, load_networks, projection_arrays
from objectives import DEFAULT_D_WEIGHT, look_and_landmarks, per_latent, realism_term
from optimization import ProjectionResult, ProjectionSettings, StepInfo, project
from torch_utils import misc


@dataclass
class LandmarkProjection:
    result: ProjectionResult
    lpips_to_look: float
    landmark_error: float
    projection_landmarks: np.ndarray  # [68, 2] image pixels


def prepare_image(image: np.ndarray, resolution: int) -> np.ndarray:
    """Centre-crop square and Lanczos-resize ``uint8 [H, W, 3]`` to the generator's resolution."""
    return image_io.centre_crop_resize(image, resolution)


class LandmarkProjector:
    """The look of one image and the landmarks of another, for one generator.

    ``look`` and ``target`` are ``uint8 [R, R, 3]`` at the generator's resolution (see
    ``prepare_image``). Construction computes everything that depends only on the targets
    (the face box, the target heat maps, the look's LPIPS features) and keeps it here: the
    shared ``nets`` are only read, so several projectors can use one ``Networks``. ``run``
    optimizes; ``run_batch`` optimizes several projectors' latents in one batched loop.
    ``d_weight > 0`` adds the realism term ``d_weight * softplus(-D(x))`` (needs ``nets.D``).
    """

    def __init__(self, nets: Networks, look: np.ndarray, target: np.ndarray, lpips_weight: float = 1.0,
                 landmark_weight: float = 0.1, group_weights: Sequence[float] = DEFAULT_GROUP_WEIGHTS,
                 d_weight: float = 0.0):
        device = misc.module_device(nets.G)
        self.nets = nets
        self.look = look
        self.target = target
        self.lpips_weight = lpips_weight
        self.landmark_weight = landmark_weight
        self.d_weight = d_weight
        if d_weight and nets.D is None:
            raise ValueError('d_weight > 0 needs the discriminator (load_networks(..., need_D=True))')
        self.look_tensor = image_io.to_tensor(look, device)
        self.landmarks = LandmarkLoss(nets.fan, image_io.to_tensor(target, device), group_weights)
        self.look_distance = nets.perceptual.distance_to(self.look_tensor)
        extra = None
        if d_weight:
            extra = lambda image, ws: {'realism': d_weight * realism_term(nets.D, image)}  # noqa: E731
        self.objective = look_and_landmarks(self.look_distance, self.landmarks, lpips_weight, landmark_weight,
                                            extra=extra)

    def step_landmarks(self, info: StepInfo, i: int = 0) -> np.ndarray:
        """Landmarks ``[68, 2]`` of a step's image (latent ``i``), reusing the heat maps the loss computed."""
        if self.landmark_weight == 0:  # the loss did not run FAN this step
            return self.landmarks.measure(info.image[i:i + 1])[1]
        return self.landmarks.landmarks()[0].cpu().numpy()

    def _finish(self, result: ProjectionResult) -> LandmarkProjection:
        with torch.no_grad():
            lpips_to_look = float(self.look_distance(result.image[:1])[0])
        error, points = self.landmarks.measure(result.image[:1])
        return LandmarkProjection(result=result, lpips_to_look=lpips_to_look, landmark_error=error,
                                  projection_landmarks=points)

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
        result = project(G, per_latent([p.objective for p in projectors]), settings, seeds=seeds,
                         chunk_size=chunk_size, callbacks=callbacks)
        return [p._finish(result.select(i)) for i, p in enumerate(projectors)]


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
  # Offline, with local weight files:
  python projector.py --network=ffhq.pkl --fan-weights=2DFAN4-11f355bf06.pth.tar \\
      --vgg-weights=vgg16-397923af.pth --target_look=look.png --target_landmarks=smile.png --outdir=out
\b
Landmark groups for --landmark_weights, in order: """ + ', '.join(LANDMARK_GROUPS) + '.'


@click.command(epilog=EXAMPLES, context_settings=dict(help_option_names=['-h', '--help'], max_content_width=100))
@network_options
@click.option('--target_look', 'target_look', default=None, metavar='FILE', help='Image whose look (identity, style) to take.')
@click.option('--target_landmarks', 'target_landmarks', default=None, metavar='FILE', help='Image whose facial landmarks (expression) to take.')
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
@click.option('--seed', type=int, default=303, show_default=True, help='Random seed.')
@click.option('--save_video', '--save-video', 'save_video', type=ZERO_ONE, default=0, show_default=True,
              help='1: also write proj.mp4 of the optimization (true/false are accepted too).')
@click.option('--d_loss', type=bool, default=False, show_default=True,
              help=f'Add the discriminator realism term softplus(-D(x)), weighted by --d_weight '
                   f'[{DEFAULT_D_WEIGHT:g} unless given].')
@click.option('--d_weight', type=float, default=None, metavar='FLOAT',
              help='Weight of the realism term; a value > 0 switches it on without --d_loss.')
@click.option('--latent', type=click.Choice(['w', 'w+']), default='w', show_default=True, help='Optimize one w for all layers, or one per layer.')
@click.option('--align/--no-align', default=False, show_default=True, help='FFHQ-align raw photos first (from their landmarks).')
@detector_options
@precision_option
def main(network_pkl, fan_weights, vgg_weights, device, target_look, target_landmarks, outdir, pairs_csv, batch_size,
         resume, num_steps, lpips_weight, landmark_weight, landmark_weights, seed, save_video, d_loss, d_weight, latent,
         align, detector, detector_weights, precision):
    """Project a face into a StyleGAN2 generator: the look of --target_look with the facial
    landmarks (expression) of --target_landmarks.

    Inputs are centre-cropped to a square and resized to the generator's resolution; pass
    --align for photos that are not FFHQ-aligned. Writes proj.png, projected_w.npz,
    target_look.png, target_landmarks.png (the inputs as used), summary.png, report.json and,
    with --save_video 1, proj.mp4 into --outdir. With --pairs CSV, does the same for every row
    of the CSV (networks loaded once; under torchrun the rows are shared out over the ranks).
    """
    timer = PhaseTimer()
    # Everything a user can get wrong is checked before any heavy work.
    if num_steps < 1:
        raise UserError(f'--num-steps must be at least 1, got {num_steps}')
    check_weights(lpips_weight=lpips_weight, landmark_weight=landmark_weight)
    d_weight = realism_weight(d_loss, d_weight)
    group_weights = parse_group_weights(landmark_weights)
    cli = dict(network=network_pkl, num_steps=num_steps, lpips_weight=lpips_weight, landmark_weight=landmark_weight,
               landmark_weights=landmark_weights, seed=seed, save_video=save_video, d_loss=d_loss, d_weight=d_weight,
               latent=latent, align=align, detector=detector, detector_weights=detector_weights,
               fan_weights=fan_weights, vgg_weights=vgg_weights, precision=precision)
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
    look_raw = image_io.load_image(target_look, '--target_look')
    target_raw = image_io.load_image(target_landmarks, '--target_landmarks')
    check_outdir_writable(outdir)
    dev = pick_device(device)
    used_precision = resolve_precision(precision, dev, announce=False)
    settings = ProjectionSettings(num_steps=num_steps, latent=latent, seed=seed, precision=used_precision)

    with timer('load_networks'):
        nets = load_networks(network_pkl, dev, fan_weights=fan_weights, vgg_weights=vgg_weights, need_D=d_weight > 0)
    announce_precision(used_precision, precision)  # after the loads, so that a bad file stays a one-line error
    with timer('prepare_targets'):
        resolution = nets.G.img_resolution
        if align:
            from face_align import align_face
            find_face = load_face_detector(detector, detector_weights, dev)
            look, target = (align_face(nets.fan, img, resolution, find_face) for img in (look_raw, target_raw))
        else:
            look, target = (prepare_image(img, resolution) for img in (look_raw, target_raw))
        projector = LandmarkProjector(nets, look, target, lpips_weight, landmark_weight, group_weights, d_weight)
        target_points = projector.landmarks.target_landmarks[0].cpu().numpy()
    out = prepare_outdir(outdir)

    bar = ProgressBar(num_steps, (lambda: float(projector.landmarks.error()[0])) if landmark_weight else None)
    callbacks: List[Callable[[StepInfo], None]] = [bar]
    writer = None
    try:
        if save_video:
            writer = image_io.VideoWriter(out / 'proj.mp4', fps=30)
            target_panel = draw_landmarks(target, target_points, color=(255, 64, 64))
            callbacks.append(FrameRecorder(writer, look, projector.step_landmarks, target_panel))
        with timer('optimize'):
            projection = projector.run(settings, callbacks)
        bar.close()
        with timer('write_outputs'):
            if writer is not None:
                writer.close()
                writer = None
            write_outputs(out, projection, look, target, target_points)
    finally:
        bar.close()
        if writer is not None:
            writer.discard()

    report = make_report(cli, str(target_look), str(target_landmarks), str(outdir), group_weights, dev,
                         used_precision, nets, settings, projector, projection, timer)
    image_io.save_json(out / 'report.json', report)
    click.echo(f'LPIPS to look {projection.lpips_to_look:.4f}, landmark error {projection.landmark_error:.4f}; '
               f'outputs in {out}', err=True)


def resolve_precision(requested: str, device, announce: bool = True) -> str:
    """``cli_common.resolve_precision``, optionally without saying it yet (``announce_precision``)."""
    if announce:
        return cli_common.resolve_precision(requested, device)
    import precision as precision_mod
    return precision_mod.resolve(requested, device)


def announce_precision(used: str, requested: str) -> None:
    how = f' (from --precision {requested})' if requested == 'auto' else ''
    click.echo(f'Precision: {used}{how}.', err=True)


def make_report(cli: dict, target_look: str, target_landmarks: str, outdir: str, group_weights, dev,
                used_precision: str, nets: Networks, settings: ProjectionSettings, projector: LandmarkProjector,
                projection: LandmarkProjection, timer: PhaseTimer) -> dict:
    """The content of ``report.json`` (the same for a single run and a ``--pairs`` row)."""
    c = cli
    return dict(
        command='projector',
        settings=dict(network=c['network'], target_look=target_look, target_landmarks=target_landmarks,
                      outdir=outdir, num_steps=settings.num_steps, lpips_weight=projector.lpips_weight,
                      landmark_weight=projector.landmark_weight,
                      landmark_weights=dict(zip(LANDMARK_GROUPS, group_weights)),
                      seed=settings.seed, save_video=c['save_video'], d_loss=c['d_loss'], d_weight=c['d_weight'],
                      latent=settings.latent, align=c['align'], detector=c['detector'],
                      detector_weights=c['detector_weights'], device=str(dev),
                      fan_weights=c['fan_weights'], vgg_weights=c['vgg_weights'], precision=c['precision']),
        precision=used_precision,
        network=dict(nets.info),
        optimizer=asdict(settings),
        generator=dict(resolution=nets.G.img_resolution, num_ws=nets.G.num_ws, w_dim=nets.G.w_dim),
        face_box=asdict(projector.landmarks.box),
        final_losses=projection.result.losses[0],
        lpips_to_look=projection.lpips_to_look,
        landmark_error=projection.landmark_error,
        loss_first_step=projection.result.history[0]['total'],
        losses_first_step=projection.result.history[0]['losses'][0],
        loss_last_step=projection.result.history[-1]['total'],
        seconds_per_step=projection.result.seconds / settings.num_steps,
        timings=timer.as_dict(),
        environment=environment(),
    )


def realism_weight(d_loss: bool, d_weight: Optional[float]) -> float:
    """The realism term's weight from ``--d_loss`` and ``--d_weight`` (0: no term, D is not loaded)."""
    if d_weight is not None:
        check_weights(d_weight=d_weight)
        return float(d_weight)
    return DEFAULT_D_WEIGHT if d_loss else 0.0


def write_outputs(out: Path, projection: LandmarkProjection, look: np.ndarray, target: np.ndarray,
                  target_points: np.ndarray) -> None:
    """proj.png, projected_w.npz, target_look.png, target_landmarks.png and summary.png (atomically)."""
    proj = image_io.to_uint8(projection.result.image[0])
    image_io.save_png(out / 'proj.png', proj)
    # The latent and the noise maps proj.png was rendered with (loaders.load_projection reads both).
    image_io.save_npz(out / 'projected_w.npz', **projection_arrays(projection.result.ws, projection.result.noise))
    image_io.save_png(out / 'target_look.png', look)
    image_io.save_png(out / 'target_landmarks.png', target)
    summary = image_io.hstack([look, draw_landmarks(target, target_points, color=(255, 64, 64)),
                               draw_landmarks(proj, projection.projection_landmarks)])
    image_io.save_png(out / 'summary.png', summary)


if __name__ == '__main__':
    run(main)
