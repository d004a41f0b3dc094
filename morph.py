"""Morph between two faces: project both (perceptual loss, W+), then blend their latents.

Methods (see ``mixing.py``): linear, style mixing at a layer, attribute mixing at a channel.
The report gives each method's perceptual path length (PPL) along the sweep of the degree.
Projections are cached under ``$DNNLIB_CACHE_DIR/projections`` (or ``~/.cache/dnnlib``), so the
same image with the same settings is projected once.

Noise maps: an image is fitted with the generator's own constant noise; a ``projected_w.npz``
brings the noise maps its ``proj.png`` was rendered with (``loaders.load_projection``). Each
render uses the two inputs' maps blended along with the latents (``mixing.mix_noise``), so the
ends of a linear sweep reproduce the inputs' images. Rendering and the path length run in
float32 (``force_fp32``; the path length also with TF32 off).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Dict, Optional, Tuple

import click
import numpy as np
import torch

import dnnlib
import image_io
import mixing
from cli_common import (PhaseTimer, ProgressBar, check_outdir_writable, environment, network_options, pick_device,
                        prepare_outdir, run)
from dnnlib.util import UserError
from loaders import Networks, load_networks, load_projection
from objectives import look_and_landmarks
from optimization import ProjectionSettings, const_noise, project, synthesize as render
from torch_utils import misc

GRID_DEGREES = (0.0, 0.25, 0.5, 0.75, 1.0)


def read_latent_file(path: str, G, what: str) -> Tuple[np.ndarray, Dict[str, torch.Tensor], bool]:
    """The latent ``[num_ws, w_dim]`` stored under ``w`` in a projector ``.npz``, its noise maps
    ``{buffer name: [1, 1, r, r]}`` (the generator's own when the file has none) and whether the
    file held them."""
    projection = load_projection(path, G, what)
    return projection.w[0].cpu().numpy(), projection.noise, projection.noise_saved


def project_image(nets: Networks, image: np.ndarray, num_steps: int, seed: int, cache_key_extra: str,
                  what: str, use_cache: bool = True) -> tuple:
    """W+ latent ``[num_ws, w_dim]`` reproducing ``image`` (perceptual loss alone); cached on disk.

    The noise maps stay at the generator's constant ones (``noise_mode='const'``), the maps
    every blend is rendered with, so that degree 0 and 1 reproduce the fitted images.
    """
    key = hashlib.sha256(image.tobytes() + repr((image.shape, num_steps, seed, cache_key_extra)).encode()).hexdigest()
    cache_file = Path(dnnlib.util.make_cache_dir_path('projections')) / f'{key[:32]}.npz'
    if use_cache and cache_file.is_file():
        try:
            with np.load(cache_file) as data:
                return data['w'], True
        except Exception:
            pass  # a damaged cache entry is recomputed
    device = misc.module_device(nets.G)
    look = nets.perceptual.distance_to(image_io.to_tensor(image, device))
    objective = look_and_landmarks(look, None, lpips_weight=1.0, landmark_weight=0.0)
    bar = ProgressBar(num_steps, desc=f'project {what}')
    try:
        result = project(nets.G, objective, ProjectionSettings(num_steps=num_steps, latent='w+', seed=seed,
                                                               optimize_noise=False),
                         noise_init=const_noise(nets.G), callbacks=[bar])
    finally:
        bar.close()
    w = result.ws[0].cpu().numpy().astype(np.float32)
    if use_cache:
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            image_io.save_npz(cache_file, w=w)
        except OSError:
            pass  # the cache is an optimization only
    return w, False


def _identity(path_or_url: Optional[str]) -> str:
    """What identifies a weights file for the projection cache: a URL, or a path with its size and time."""
    if path_or_url is None or dnnlib.util.is_url(path_or_url):
        return str(path_or_url)
    try:
        st = Path(path_or_url).stat()
        return f'{Path(path_or_url).resolve()}:{st.st_size}:{st.st_mtime_ns}'
    except OSError:
        return str(path_or_url)


def synthesize(G, w: np.ndarray, noise: Optional[Dict[str, torch.Tensor]] = None) -> np.ndarray:
    """``uint8 [R, R, 3]`` image of a latent ``[num_ws, w_dim]`` with ``noise`` maps (default: G's constant noise)."""
    device = misc.module_device(G)
    with torch.no_grad():
        img = render(G, torch.from_numpy(np.asarray(w, dtype=np.float32)[None]).to(device), noise)
    return image_io.to_uint8(img[0])


EXAMPLES = """
\b
Examples:
\b
  # Project two photos and blend them (FFHQ 1024x1024), all three methods:
  python morph.py --network=https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/ffhq.pkl \\
      --a=me.png --b=celebrity.png --method=all --outdir=morph
\b
  # Blend two latents written by projector.py, style mixing from layer 8:
  python morph.py --network=ffhq.pkl --a=run1/projected_w.npz --b=run2/projected_w.npz \\
      --method=style --crossover=8 --degree=0.7 --outdir=morph
"""


@click.command(epilog=EXAMPLES, context_settings=dict(help_option_names=['-h', '--help'], max_content_width=100))
@network_options
@click.option('--a', 'input_a', required=True, metavar='IMG|NPZ', help='First face (Wp): an image or a latent .npz.')
@click.option('--b', 'input_b', required=True, metavar='IMG|NPZ', help='Second face (Wc): an image or a latent .npz.')
@click.option('--method', type=click.Choice(['linear', 'style', 'attribute', 'all']), default='linear',
              show_default=True)
@click.option('--degree', type=click.FloatRange(0, 1), default=0.7, show_default=True,
              help='l in [0, 1]: 1 gives --a (linear), 0 gives --b.')
@click.option('--crossover', type=click.IntRange(min=0), default=None,
              help='Layer (style) or channel (attribute) where mixing flips [default: the middle].')
@click.option('--steps', type=click.IntRange(min=2), default=30, show_default=True, help='Frames of the sweep.')
@click.option('--num-steps', 'num_steps', type=click.IntRange(min=1), default=1000, show_default=True,
              help='Projection steps per image.')
@click.option('--ppl-samples', 'ppl_samples', type=click.IntRange(min=1), default=32, show_default=True,
              help='Samples of the perceptual path length.')
@click.option('--seed', type=int, default=303, show_default=True)
@click.option('--outdir', required=True, metavar='DIR', help='Where to write the outputs.')
def main(network_pkl, fan_weights, vgg_weights, device, input_a, input_b, method, degree, crossover, steps, num_steps,
         ppl_samples, seed, outdir):
    """Morph between two faces with linear, style or attribute mixing of their W+ latents.

    Writes morph.png, grid.png, morph.mp4, latents.npz and report.json into --outdir.
    """
    timer = PhaseTimer()
    inputs = {}
    for what, path in (('--a', input_a), ('--b', input_b)):
        if str(path).lower().endswith('.npz'):
            if not Path(path).is_file():
                raise UserError(f'{what}: file not found: {path}')
            inputs[what] = (path, None)
        else:
            inputs[what] = (path, image_io.load_image(path, what))
    check_outdir_writable(outdir)
    dev = pick_device(device)
    methods = list(mixing.METHODS) if method == 'all' else [method]

    with timer('load_networks'):
        nets = load_networks(network_pkl, dev, vgg_weights=vgg_weights, need_fan=False, need_lpips=True)
    G = nets.G
    for m in methods:
        limit = G.num_ws if m == 'style' else G.w_dim
        if m in ('style', 'attribute') and crossover is not None and crossover > limit:
            raise UserError(f'--crossover {crossover} is past the last {"layer" if m == "style" else "channel"} '
                            f'({limit}) for {m} mixing')

    latents: Dict[str, np.ndarray] = {}
    noises: Dict[str, Dict[str, torch.Tensor]] = {}
    sources = {}
    with timer('project'):
        for what, (path, image) in inputs.items():
            noises[what] = const_noise(G)  # an image is fitted with the generator's own noise
            if image is None:
                latents[what], noises[what], noise_saved = read_latent_file(path, G, what)
                sources[what] = dict(kind='latent', path=str(path), noise_maps=noise_saved)
            else:
                prepared = image_io.centre_crop_resize(image, G.img_resolution)
                latents[what], cached = project_image(nets, prepared, num_steps, seed,
                                                      f'{_identity(network_pkl)}|{_identity(vgg_weights)}', what)
                sources[what] = dict(kind='image', path=str(path), cached=cached, num_steps=num_steps)
    wp, wc = latents['--a'], latents['--b']
    np_, nc = noises['--a'], noises['--b']
    own_noise = any(s.get('noise_maps') for s in sources.values())
    out = prepare_outdir(outdir)

    def blend(m: str, t: float) -> np.ndarray:
        return mixing.mix(m, wp.copy(), wc.copy(), t, crossover)

    def blend_noise(m: str, t: float) -> Dict[str, torch.Tensor]:
        return mixing.mix_noise(m, np_, nc, t, crossover, G.num_ws)

    def frame(m: str, t: float) -> np.ndarray:
        return synthesize(G, blend(m, t), blend_noise(m, t))

    with timer('render'):
        chosen = blend(methods[0], degree)
        image_io.save_png(out / 'morph.png', frame(methods[0], degree))
        rows = [image_io.hstack([frame(m, t) for t in GRID_DEGREES]) for m in methods]
        image_io.save_png(out / 'grid.png', np.concatenate(rows, axis=0))
        sweep = np.linspace(0.0, 1.0, steps)
        with image_io.VideoWriter(out / 'morph.mp4', fps=min(30, steps)) as video:
            for t in sweep:
                video.append(image_io.hstack([frame(m, t) for m in methods]))
        noise_arrays = {}
        if own_noise:  # the noise maps the images were rendered with, when an input brought its own
            for key, maps in (('a', np_), ('b', nc), ('blend', blend_noise(methods[0], degree))):
                noise_arrays.update({f'{key}.{name}': v.cpu().numpy().astype(np.float32) for name, v in maps.items()})
        image_io.save_npz(out / 'latents.npz', a=wp[None], b=wc[None], blend=chosen[None], degrees=sweep,
                          **{f'sweep_{m}': np.stack([blend(m, t) for t in sweep]) for m in methods}, **noise_arrays)

    with timer('ppl'):
        ppl = {m: mixing.perceptual_path_length(G, nets.perceptual.distance, lambda t, m=m: blend(m, t),
                                                num_samples=ppl_samples, epsilon=1e-4, seed=seed,
                                                noise=(lambda t, m=m: blend_noise(m, t)) if own_noise else None)
               for m in methods}

    report = dict(
        command='morph',
        settings=dict(network=network_pkl, a=input_a, b=input_b, method=method, degree=degree, crossover=crossover,
                      steps=steps, num_steps=num_steps, ppl_samples=ppl_samples, seed=seed, outdir=str(outdir),
                      device=str(dev), vgg_weights=vgg_weights),
        inputs=sources,
        network=dict(nets.info),
        generator=dict(resolution=G.img_resolution, num_ws=G.num_ws, w_dim=G.w_dim),
        crossover_used={m: (crossover if crossover is not None else (G.num_ws // 2 if m == 'style' else G.w_dim // 2))
                        for m in methods if m != 'linear'},
        ppl=dict(epsilon=1e-4, samples=ppl_samples, distance='lpips-vgg', values=ppl),
        timings=timer.as_dict(),
        environment=environment(),
    )
    image_io.save_json(out / 'report.json', report)
    click.echo('PPL: ' + ', '.join(f'{m} {v:.4g}' for m, v in ppl.items()) + f'; outputs in {out}', err=True)


if __name__ == '__main__':
    run(main)
