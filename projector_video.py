"""Animate a face from a driving video by projecting every frame's landmarks (no training).

For driving frame ``i`` a W+ latent ``w_i`` minimizes

* identity mode: ``l1 * LPIPS(look, x_i) + l2 * HL(x_i, frame_i) + l3 * ||w_i - w_{i-1}||``
* free mode:     ``l2 * HL(x_i, frame_i) + l3 * ||w_i - w_{i-1}|| + l4 * ||w_i - w_avg||``

(+ ``d_weight * softplus(-D(x_i))`` when asked). ``w_0`` starts at ``w_avg`` and runs
``--num-steps-first`` steps with the noise maps optimized; every later frame starts at the
previous latent, runs ``--num-steps`` steps and keeps frame 0's noise maps. Subframes between
neighbours are rendered from linearly interpolated latents.

Each finished frame is saved at once (``frames/frame_NNNNN.png`` and ``.npz``), so running the
same command again continues after the last finished frame; the videos are assembled from
what is on disk.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import click
import numpy as np
import torch

import image_io
from cli_common import (PhaseTimer, ProgressBar, check_outdir_writable, check_weights, detector_options, environment,
                        load_face_detector, network_options, pick_device, prepare_outdir, run)
from dnnlib.util import UserError
from landmark_loss import DEFAULT_GROUP_WEIGHTS, DEFAULT_GROUP_WEIGHTS_TEXT, LANDMARK_GROUPS, LandmarkLoss, draw_landmarks, parse_group_weights
from loaders import Networks, load_networks
from objectives import fidelity_term, look_and_landmarks, realism_term, smoothness_term
from optimization import ProjectionSettings, project, w_stats

FRAME_NAME = 'frame_{:05d}'


@dataclass
class AnimationSettings:
    mode: str = 'identity'               # 'identity' or 'free'
    num_steps_first: int = 300
    num_steps: int = 50
    lpips_weight: float = 1.0
    landmark_weight: float = 0.1
    landmark_weights: tuple = DEFAULT_GROUP_WEIGHTS
    smoothness_weight: float = 0.05
    fidelity_weight: float = 0.05
    d_weight: float = 0.0
    seed: int = 303

    def validate(self) -> None:
        if self.mode not in ('identity', 'free'):
            raise UserError(f"--mode must be 'identity' or 'free', got {self.mode!r}")
        if self.num_steps_first < 1 or self.num_steps < 1:
            raise UserError('--num-steps-first and --num-steps must be at least 1')
        check_weights(**{name: getattr(self, name) for name in ('lpips_weight', 'landmark_weight',
                                                                 'smoothness_weight', 'fidelity_weight', 'd_weight')})


def frame_objective(nets: Networks, settings: AnimationSettings, landmarks: LandmarkLoss,
                    w_prev: Optional[torch.Tensor], w_avg: torch.Tensor):
    """The objective of one frame (see the module docstring)."""
    s = settings

    def extra(image: torch.Tensor, ws: torch.Tensor) -> Dict[str, torch.Tensor]:
        terms = {}
        if w_prev is not None and s.smoothness_weight:
            terms['smoothness'] = s.smoothness_weight * smoothness_term(ws, w_prev)
        if s.mode == 'free' and s.fidelity_weight:
            terms['fidelity'] = s.fidelity_weight * fidelity_term(ws, w_avg)
        if s.d_weight:
            terms['realism'] = s.d_weight * realism_term(nets.D, image)
        return terms

    lpips_weight = s.lpips_weight if s.mode == 'identity' else 0.0
    return look_and_landmarks(nets.perceptual, landmarks, lpips_weight, s.landmark_weight, extra=extra)


class AnimationRun:
    """One animation in ``outdir``: the finished frames on disk, and the frames still to do.

    Layout: ``driving/`` (aligned driving frames as used), ``frames/`` (one PNG and one NPZ per
    finished frame: latent, losses, landmarks), ``state/`` (frame 0's noise maps and the run's
    settings, which a resumed run must match).
    """

    def __init__(self, outdir: Path, fingerprint: dict):
        self.outdir = outdir
        self.fingerprint = fingerprint
        self.driving_dir = outdir / 'driving'
        self.frames_dir = outdir / 'frames'
        self.state_dir = outdir / 'state'

    # --- state on disk -------------------------------------------------------------------
    def existing_fingerprint(self) -> Optional[dict]:
        path = self.state_dir / 'run.json'
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def start(self, resume: bool) -> int:
        """Prepare the folders; return the number of frames already finished (0 when starting over)."""
        existing = self.existing_fingerprint()
        if existing is not None and resume and existing != self.fingerprint:
            changed = sorted(k for k in set(existing) | set(self.fingerprint) if existing.get(k) != self.fingerprint.get(k))
            raise UserError(f'{self.outdir} holds an animation made with other settings ({", ".join(changed)}); '
                            f'pass --no-resume to start over, or choose another --outdir')
        if existing is None or not resume:
            for folder in (self.driving_dir, self.frames_dir, self.state_dir):
                shutil.rmtree(folder, ignore_errors=True)
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

    def load_frame(self, index: int) -> dict:
        with np.load(self.frames_dir / f'{FRAME_NAME.format(index)}.npz') as data:
            return {k: data[k] for k in data.files}

    def save_frame(self, index: int, image: np.ndarray, **arrays) -> None:
        # The NPZ is written last: a frame counts as finished only when both files exist.
        image_io.save_png(self.frames_dir / f'{FRAME_NAME.format(index)}.png', image)
        image_io.save_npz(self.frames_dir / f'{FRAME_NAME.format(index)}.npz', **arrays)

    def save_noise(self, noise: Sequence[torch.Tensor]) -> None:
        image_io.save_npz(self.state_dir / 'noise.npz', **{f'n{i}': n.cpu().numpy() for i, n in enumerate(noise)})

    def load_noise(self, device) -> List[torch.Tensor]:
        with np.load(self.state_dir / 'noise.npz') as data:
            return [torch.from_numpy(data[f'n{i}']).to(device) for i in range(len(data.files))]

    def driving_frames(self) -> List[np.ndarray]:
        files = sorted(self.driving_dir.glob('frame_*.png'))
        return [image_io.load_image(p) for p in files]


def prepare_driving(nets: Networks, frames: List[np.ndarray], resolution: int, align: bool,
                    smoothing: float, detector=None) -> List[np.ndarray]:
    """Driving frames as the generator's inputs: FFHQ-aligned (smoothed over time) or centre-cropped."""
    if align:
        from face_align import align_sequence
        return align_sequence(nets.fan, frames, resolution, sigma=smoothing, progress=True, detector=detector)
    return [image_io.centre_crop_resize(f, resolution) for f in frames]


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


def _file_digest(path: Optional[str]) -> Optional[str]:
    if path is None:
        return None
    p = Path(path)
    if p.is_dir():  # a frame folder: the images read from it, in order
        h = hashlib.sha256()
        for f in sorted(p.iterdir(), key=lambda q: image_io.natural_key(q.name)):
            if f.is_file() and f.suffix.lower() in image_io.IMAGE_SUFFIXES and not f.name.startswith('.'):
                h.update(f.name.encode())
                h.update(hashlib.sha256(f.read_bytes()).digest())
        return h.hexdigest()
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _network_identity(network_pkl: str) -> str:
    """A URL as given; a local path made absolute (the same file, however it is named)."""
    import dnnlib
    return network_pkl if dnnlib.util.is_url(network_pkl, allow_file_urls=True) else str(Path(network_pkl).resolve())


EXAMPLES = """
\b
Examples:
\b
  # The look of look.png, animated by the face in smile.mp4 (FFHQ 1024x1024):
  python projector_video.py --network=https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/ffhq.pkl \\
      --target_look=look.png --driving=smile.mp4 --outdir=anim --subframes=1
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
@click.option('--driving', default=None, metavar='VIDEO', help='Driving video file (instead of a folder).')
@click.option('--fps', type=click.FloatRange(min=0, min_open=True, max=1000), default=None,
              help='Frame rate of the driving frames [default: 30 for a folder; a video\'s own].')
@click.option('--outdir', required=True, metavar='DIR', help='Where to write the outputs.')
@click.option('--mode', type=click.Choice(['identity', 'free']), default='identity', show_default=True)
@click.option('--num-steps-first', 'num_steps_first', type=int, default=300, show_default=True, help='Steps for frame 0.')
@click.option('--num-steps', 'num_steps', type=int, default=50, show_default=True, help='Steps for every later frame.')
@click.option('--lpips_weight', type=float, default=1.0, show_default=True)
@click.option('--landmark_weight', type=float, default=0.1, show_default=True)
@click.option('--landmark_weights', default=DEFAULT_GROUP_WEIGHTS_TEXT, show_default=True,
              metavar='W1,..,W9', help='Nine group weights: ' + ', '.join(LANDMARK_GROUPS) + '.')
@click.option('--smoothness_weight', type=float, default=0.05, show_default=True, help='||w_i - w_{i-1}||')
@click.option('--fidelity_weight', type=float, default=0.05, show_default=True, help='||w_i - w_avg|| (free mode)')
@click.option('--d_weight', type=float, default=0.0, show_default=True, help='Discriminator realism term.')
@click.option('--subframes', type=click.IntRange(min=0), default=1, show_default=True,
              help='Interpolated frames between neighbours.')
@click.option('--align/--no-align', default=True, show_default=True, help='FFHQ-align the driving frames.')
@click.option('--align-smoothing', 'align_smoothing', type=click.FloatRange(min=0), default=2.0, show_default=True,
              help='Temporal smoothing of the alignment, in frames (0: none).')
@detector_options
@click.option('--seed', type=int, default=303, show_default=True)
@click.option('--resume/--no-resume', default=True, show_default=True,
              help='Continue after the last finished frame in --outdir.')
def main(network_pkl, fan_weights, vgg_weights, device, target_look, target_landmarks_folder, driving, fps, outdir,
         mode, num_steps_first, num_steps, lpips_weight, landmark_weight, landmark_weights, smoothness_weight,
         fidelity_weight, d_weight, subframes, align, align_smoothing, detector, detector_weights, seed, resume):
    """Animate a face: every frame takes its facial landmarks from a driving sequence, and (identity
    mode) its look from --target_look.

    Writes animation.mp4, side_by_side.mp4, frames/, latents.npz and report.json into --outdir.
    """
    timer = PhaseTimer()
    settings = AnimationSettings(mode=mode, num_steps_first=num_steps_first, num_steps=num_steps,
                                 lpips_weight=lpips_weight, landmark_weight=landmark_weight,
                                 landmark_weights=parse_group_weights(landmark_weights),
                                 smoothness_weight=smoothness_weight, fidelity_weight=fidelity_weight,
                                 d_weight=d_weight, seed=seed)
    settings.validate()
    if (target_landmarks_folder is None) == (driving is None):
        raise UserError('give the driving frames with exactly one of --target_landmarks_folder and --driving')
    if mode == 'identity' and target_look is None:
        raise UserError('identity mode needs --target_look (or use --mode free)')
    look_raw = image_io.load_image(target_look, '--target_look') if mode == 'identity' else None
    if driving is not None:
        raw_frames, video_fps = image_io.read_video(driving)
        fps = fps if fps is not None else video_fps
    else:
        raw_frames = image_io.read_frame_folder(target_landmarks_folder)
        fps = fps if fps is not None else 30.0
    check_outdir_writable(outdir)
    dev = pick_device(device)

    with timer('load_networks'):
        nets = load_networks(network_pkl, dev, fan_weights=fan_weights, vgg_weights=vgg_weights,
                             need_D=d_weight > 0, need_lpips=True)
    G = nets.G
    resolution = G.img_resolution
    out = prepare_outdir(outdir)
    # What a resumed run must share with the run that wrote the finished frames.
    fingerprint = dict(network=_network_identity(network_pkl),
                       look=_file_digest(target_look) if look_raw is not None else None,
                       driving=_file_digest(driving or target_landmarks_folder), align=align,
                       align_smoothing=align_smoothing, detector=detector if align else None,
                       detector_weights=_file_digest(detector_weights) if align else None,
                       fan_weights=_file_digest(fan_weights),
                       vgg_weights=_file_digest(vgg_weights),
                       **{k: list(v) if isinstance(v, tuple) else v for k, v in asdict(settings).items()})
    anim = AnimationRun(out, fingerprint)
    finished = anim.start(resume)
    if finished:
        click.echo(f'Resuming after frame {finished - 1}: {finished} of {len(raw_frames)} frames are done '
                   f'(--no-resume starts over).', err=True)

    with timer('align'):
        driving_frames = anim.driving_frames() if finished else []
        if len(driving_frames) != len(raw_frames):
            find_face = load_face_detector(detector, detector_weights, dev) if align else None
            driving_frames = prepare_driving(nets, raw_frames, resolution, align, align_smoothing, find_face)
            for i, frame in enumerate(driving_frames):
                image_io.save_png(anim.driving_dir / f'{FRAME_NAME.format(i)}.png', frame)

    look = image_io.centre_crop_resize(look_raw, resolution) if look_raw is not None else None
    if look is not None:
        nets.perceptual.set_target(image_io.to_tensor(look, dev))
    w_avg, _ = w_stats(G)

    from tqdm import tqdm
    frame_bar = tqdm(total=len(driving_frames), initial=finished, desc='frames', unit='frame', position=0,
                     dynamic_ncols=True)
    try:
        with timer('optimize'):
            for index in range(finished, len(driving_frames)):
                optimize_frame(nets, anim, settings, index, driving_frames[index], look, w_avg, dev)
                frame_bar.update(1)
    finally:
        frame_bar.close()

    with timer('assemble'):
        report_frames = assemble_outputs(nets, anim, driving_frames, look, fps, subframes)
    report = dict(
        command='projector_video',
        settings=dict(network=network_pkl, target_look=target_look, target_landmarks_folder=target_landmarks_folder,
                      driving=driving, fps=fps, outdir=str(outdir), subframes=subframes, align=align,
                      detector=detector, detector_weights=detector_weights,
                      align_smoothing=align_smoothing, device=str(dev), fan_weights=fan_weights,
                      vgg_weights=vgg_weights, **{k: v for k, v in asdict(settings).items() if k != 'landmark_weights'},
                      landmark_weights=dict(zip(LANDMARK_GROUPS, settings.landmark_weights))),
        generator=dict(resolution=resolution, num_ws=G.num_ws, w_dim=G.w_dim),
        num_frames=len(driving_frames),
        resumed_after=finished,
        output_fps=fps * (subframes + 1),
        frames=report_frames,
        timings=timer.as_dict(),
        environment=environment(),
    )
    image_io.save_json(out / 'report.json', report)
    click.echo(f'{len(driving_frames)} frames; outputs in {out}', err=True)


def optimize_frame(nets: Networks, anim: AnimationRun, settings: AnimationSettings, index: int,
                   driving: np.ndarray, look: Optional[np.ndarray], w_avg: torch.Tensor, device) -> None:
    """Project one driving frame (warm-started from the previous one) and save it at once."""
    landmarks = LandmarkLoss(nets.fan, image_io.to_tensor(driving, device), settings.landmark_weights)
    first = index == 0
    w_prev = None if first else torch.from_numpy(anim.load_frame(index - 1)['w']).to(device)
    objective = frame_objective(nets, settings, landmarks, w_prev, w_avg)
    proj_settings = ProjectionSettings(num_steps=settings.num_steps_first if first else settings.num_steps,
                                       latent='w+', optimize_noise=first, seed=settings.seed + index)
    bar = ProgressBar(proj_settings.num_steps, lambda: float(landmarks.error()[0]) if settings.landmark_weight else 0.0,
                      desc=f'frame {index}', position=1, leave=False)
    try:
        result = project(nets.G, objective, proj_settings, w_init=w_prev,
                         noise_init=None if first else anim.load_noise(device), callbacks=[bar])
    finally:
        bar.close()
    if first:
        anim.save_noise(result.noise)
    error, points = landmarks.measure(result.image)
    anim.save_frame(index, image_io.to_uint8(result.image[0]), w=result.ws.cpu().numpy().astype(np.float32),
                    landmark_error=np.float32(error), landmarks=points.astype(np.float32),
                    target_landmarks=landmarks.target_landmarks[0].cpu().numpy().astype(np.float32),
                    loss_names=np.array(list(result.losses)), loss_values=np.array(list(result.losses.values())),
                    seconds=np.float32(result.seconds))


def assemble_outputs(nets: Networks, anim: AnimationRun, driving_frames: List[np.ndarray],
                     look: Optional[np.ndarray], fps: float, subframes: int) -> list:
    """animation.mp4, side_by_side.mp4 and latents.npz from the finished frames on disk."""
    G = nets.G
    device = G.mapping.fc0.weight.device
    records = [anim.load_frame(i) for i in range(len(driving_frames))]
    latents = np.concatenate([r['w'] for r in records])  # [T, num_ws, w_dim]
    noise = anim.load_noise(device)
    out = anim.outdir

    with image_io.VideoWriter(out / 'animation.mp4', fps=fps * (subframes + 1)) as video:
        keyframe = 0
        for k, w in enumerate(interpolate_latents(latents, subframes)):
            if k % (subframes + 1) == 0:  # a key frame: the image saved when it was finished
                video.append(image_io.load_image(anim.frames_dir / f'{FRAME_NAME.format(keyframe)}.png'))
                keyframe += 1
            else:
                with torch.no_grad():
                    img = G.synthesis(torch.from_numpy(w[None]).to(device), noise=noise)
                video.append(image_io.to_uint8(img[0]))

    with image_io.VideoWriter(out / 'side_by_side.mp4', fps=fps) as video:
        for i, (record, frame) in enumerate(zip(records, driving_frames)):
            panels = [] if look is None else [look]
            panels.append(draw_landmarks(frame, record['target_landmarks'], color=(255, 64, 64)))
            panels.append(image_io.load_image(anim.frames_dir / f'{FRAME_NAME.format(i)}.png'))
            video.append(image_io.hstack(panels))

    image_io.save_npz(out / 'latents.npz', w=latents.astype(np.float32))
    return [dict(frame=i, landmark_error=float(r['landmark_error']), seconds=float(r['seconds']),
                 losses={str(k): float(v) for k, v in zip(r['loss_names'], r['loss_values'])})
            for i, r in enumerate(records)]


if __name__ == '__main__':
    run(main)
