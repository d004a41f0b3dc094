"""Morph between two faces: project both (perceptual loss, W+), then blend their latents.

Methods (see ``mixing.py``): linear, style mixing at a layer, attribute mixing at a channel.
The report gives each method's perceptual path length (PPL) along the sweep of the degree.
Projections are cached under ``$DNNLIB_CACHE_DIR/projections`` (or ``~/.cache/dnnlib``), so the
same image with the same settings is projected once.

Noise maps: an image is fitted with the generator's own constant noise; a ``projected_w.npz``
brings the noise maps its ``proj.png`` was rendered with (``loaders.load_projection``). Each
render uses the two inputs' maps blended along with the latents (``mixing.mix_noise``), so the
ends of a linear sweep reproduce the inputs' images.

Precision (``--precision``, see ``precision.py``): the projections of image inputs and the
renders of the blends (morph.png, grid.png, morph.mp4) use the resolved precision; the
perceptual path length always runs in float32 with TF32 off (its ``epsilon = 1e-4`` steps are
below bfloat16's resolution), and so do the identity scores.

Identity score (``identity.py``): when FaceNet weights are at hand without a download
(``--id-weights FILE``, or the official file already in torch's hub cache) and ``--no-identity``
is not given, report.json's ``identity_similarity`` gives, for every blend rendered (each method
at each degree of the sweep and the grid, and the chosen blend), the cosine similarity of its
FaceNet embedding to that of A's render (``--a`` at linear degree 1) and of B's render (degree
0), and per method the degree where the two are equal: where the face changes person. Morph
runs no FAN, so the crop box is the fixed one of FFHQ-aligned faces (``identity.ffhq_box``).
"""

from __future__ import annotations

import cli_startup  # noqa: F401 - first: Ctrl-C during the imports below is a quiet exit

import hashlib
from dataclasses import asdict
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import click
import numpy as np
import torch

import dnnlib
import identity
import image_io
import mixing
import precision as precision_mod
from cli_common import (SEED, PhaseTimer, ProgressBar, announce_precision, check_outdir_writable, environment,
                        identity_score_options, mark_unfinished, network_options, pick_device, precision_option,
                        prepare_outdir, run)
from dnnlib.util import UserError
from loaders import Networks, load_networks, load_projection, split_latent_index
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
                  what: str, use_cache: bool = True, precision: str = 'fp32') -> tuple:
    """W+ latent ``[num_ws, w_dim]`` reproducing ``image`` (perceptual loss alone), and whether it
    came from the on-disk cache (keyed by the image, the settings and ``precision``).

    The noise maps stay at the generator's constant ones (``noise_mode='const'``), the maps
    every blend is rendered with, so that degree 0 and 1 reproduce the fitted images.
    ``precision``: a resolved precision (``precision.resolve``) for the optimization.
    """
    key = hashlib.sha256(image.tobytes() + repr((image.shape, num_steps, seed, cache_key_extra,
                                                 precision)).encode()).hexdigest()
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
                                                               optimize_noise=False, precision=precision),
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


def synthesize(G, w: np.ndarray, noise: Optional[Dict[str, torch.Tensor]] = None,
               precision: str = 'fp32') -> np.ndarray:
    """``uint8 [R, R, 3]`` image of a latent ``[num_ws, w_dim]`` with ``noise`` maps (default: G's
    constant noise), synthesized in ``precision`` (resolved: ``fp32``, ``bf16`` or ``fp16``)."""
    device = misc.module_device(G)
    with torch.no_grad(), precision_mod.autocast(precision, device):
        img = render(G, torch.from_numpy(np.asarray(w, dtype=np.float32)[None]).to(device), noise, precision)
    return image_io.to_uint8(img[0])


# ----------------------------------------------------------------------------
# The identity score of the blends.

@torch.no_grad()
def face_embedding(net: torch.nn.Module, box, image: np.ndarray) -> torch.Tensor:
    """FaceNet's unit embedding ``[512]`` (float32) of the face in ``uint8 [R, R, 3]``, cropped at ``box``."""
    device = misc.module_device(net)
    return identity.embed(net, image_io.to_tensor(image, device).float(), box)[0].float()


def equal_similarity_degree(degrees: Sequence[float], to_a: Sequence[float],
                            to_b: Sequence[float]) -> Optional[float]:
    """The first degree where a blend is as similar to A as to B (linear between sampled degrees).

    ``degrees`` ascending in ``[0, 1]``; ``to_a``, ``to_b`` the cosines there. None when
    ``to_a - to_b`` never changes sign (e.g. A and B are one person to FaceNet).
    """
    diff = np.asarray(to_a, dtype=np.float64) - np.asarray(to_b, dtype=np.float64)
    for i, d in enumerate(diff):
        if d == 0:
            return float(degrees[i])
        if i and np.sign(d) != np.sign(diff[i - 1]):
            t0, t1 = degrees[i - 1], degrees[i]
            return float(t0 + (t1 - t0) * diff[i - 1] / (diff[i - 1] - d))
    return None


class BlendIdentity:
    """FaceNet similarities of rendered blends to the renders of A and B (report.json's ``identity_similarity``).

    ``image_a``, ``image_b``: ``uint8 [R, R, 3]`` renders of ``--a`` and ``--b`` (linear degree 1
    and 0); ``box``: the crop box for every image (``identity.ffhq_box``). ``add`` scores one
    rendered blend (once per method and degree); ``report`` gives them all.
    """

    def __init__(self, net: torch.nn.Module, box, image_a: np.ndarray, image_b: np.ndarray, weights: str):
        self.net, self.box, self.weights = net, box, weights
        self.a = face_embedding(net, box, image_a)
        self.b = face_embedding(net, box, image_b)
        self.scores: Dict[Tuple[str, float], Tuple[float, float]] = {}

    def similarity_to_image(self, image: np.ndarray, which: str) -> float:
        """Cosine of ``image``'s face to A's (``which='a'``) or B's render."""
        ref = self.a if which == 'a' else self.b
        return float(identity.cosine(face_embedding(self.net, self.box, image)[None], ref[None])[0])

    def add(self, method: str, degree: float, image: np.ndarray) -> None:
        """Score the blend of ``method`` at ``degree``, rendered as ``image`` (``uint8 [R, R, 3]``)."""
        key = (method, float(degree))
        if key not in self.scores:
            emb = face_embedding(self.net, self.box, image)[None]
            to_a, to_b = identity.cosine(emb.expand(2, -1), torch.stack([self.a, self.b])).tolist()
            self.scores[key] = (float(to_a), float(to_b))

    def report(self, chosen: Tuple[str, float]) -> dict:
        """``identity_similarity``: every blend's ``to_a`` / ``to_b``, the chosen blend (``(method, degree)``,
        morph.png) and, per method, ``equal_similarity_degree``."""
        blends = [dict(method=m, degree=t, to_a=a, to_b=b) for (m, t), (a, b) in sorted(self.scores.items())]
        equal = {}
        for m in dict.fromkeys(m for m, _ in sorted(self.scores)):
            rows = [r for r in blends if r['method'] == m]
            equal[m] = equal_similarity_degree([r['degree'] for r in rows], [r['to_a'] for r in rows],
                                               [r['to_b'] for r in rows])
        to_a, to_b = self.scores[(chosen[0], float(chosen[1]))]
        return dict(reference='renders of --a (linear degree 1) and --b (degree 0)', weights=self.weights,
                    box=asdict(self.box), a_to_b=float(identity.cosine(self.a[None], self.b[None])[0]),
                    blend=dict(method=chosen[0], degree=float(chosen[1]), to_a=to_a, to_b=to_b),
                    equal_similarity_degree=equal, blends=blends)


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
@click.option('--seed', type=SEED, default=303, show_default=True)
@click.option('--outdir', required=True, metavar='DIR', help='Where to write the outputs.')
@identity_score_options
@precision_option
def main(network_pkl, fan_weights, vgg_weights, device, input_a, input_b, method, degree, crossover, steps, num_steps,
         ppl_samples, seed, outdir, id_weights, no_identity, precision):
    """Morph between two faces with linear, style or attribute mixing of their W+ latents.

    Writes morph.png, grid.png, morph.mp4, latents.npz and report.json into --outdir. With FaceNet
    weights at hand (--id-weights, or already cached), report.json gives each blend's identity
    similarity to --a and --b.
    """
    if method == 'linear' and crossover is not None:  # an option that would do nothing is refused
        raise UserError('--crossover applies to --method style or attribute (or all), not linear')
    timer = PhaseTimer()
    inputs = {}
    image_infos = {}  # how each image input was read (orientation, colour): for the report
    for what, path in (('--a', input_a), ('--b', input_b)):
        try:
            file, _ = split_latent_index(path)  # FILE.npz#K: one latent of an animation's latents.npz
        except UserError as exc:
            raise UserError(f'{what}: {exc}') from None
        if file.lower().endswith('.npz'):
            if not Path(file).is_file():
                raise UserError(f'{what}: file not found: {file}')
            inputs[what] = (path, None)
        else:
            image, info = image_io.read_image(path, what)
            inputs[what], image_infos[what] = (path, image), info.as_dict()
    check_outdir_writable(outdir)
    dev = pick_device(device)
    used_precision = precision_mod.resolve(precision, dev)  # fp16 on a CPU ends here, before any loading
    need_identity = identity.identity_requested(0.0, id_weights, no_identity)  # never a download
    methods = list(mixing.METHODS) if method == 'all' else [method]

    with timer('load_networks'):
        nets = load_networks(network_pkl, dev, vgg_weights=vgg_weights, need_fan=False, need_lpips=True,
                             need_identity=need_identity, id_weights=id_weights,
                             identity_optional=identity.score_only(0.0, id_weights))
    G = nets.G
    for m in methods:
        limit = G.num_ws if m == 'style' else G.w_dim
        if m in ('style', 'attribute') and crossover is not None and crossover > limit:
            raise UserError(f'--crossover {crossover} is past the last {"layer" if m == "style" else "channel"} '
                            f'({limit}) for {m} mixing')

    latents: Dict[str, np.ndarray] = {}
    noises: Dict[str, Dict[str, torch.Tensor]] = {}
    sources = {}
    prepared_images: Dict[str, np.ndarray] = {}
    with timer('project'):
        for what, (path, image) in inputs.items():  # latent files first: their errors come before any work
            if image is None:
                latents[what], noises[what], noise_saved = read_latent_file(path, G, what)
                sources[what] = dict(kind='latent', path=str(path), noise_maps=noise_saved)
        announce_precision(used_precision, precision, dev)
        weights_key = None  # the networks a projection depends on, by content (hashed once, when needed)
        for what, (path, image) in inputs.items():
            if image is not None:
                noises[what] = const_noise(G)  # an image is fitted with the generator's own noise
                prepared = prepared_images[what] = image_io.centre_crop_resize(image, G.img_resolution)
                if weights_key is None:
                    weights_key = f'{image_io.file_identity(network_pkl)}|{image_io.file_identity(vgg_weights)}'
                latents[what], cached = project_image(nets, prepared, num_steps, seed, weights_key, what,
                                                      precision=used_precision)
                sources[what] = dict(kind='image', path=str(path), cached=cached, num_steps=num_steps,
                                     image=image_infos[what])
    wp, wc = latents['--a'], latents['--b']
    np_, nc = noises['--a'], noises['--b']
    own_noise = any(s.get('noise_maps') for s in sources.values())
    out = prepare_outdir(outdir)

    def blend(m: str, t: float) -> np.ndarray:
        return mixing.mix(m, wp.copy(), wc.copy(), t, crossover)

    def blend_noise(m: str, t: float) -> Dict[str, torch.Tensor]:
        return mixing.mix_noise(m, np_, nc, t, crossover, G.num_ws)

    scores = None
    if nets.facenet is not None:
        with timer('identity'):
            scores = BlendIdentity(nets.facenet, identity.ffhq_box(G.img_resolution),
                                   synthesize(G, wp, np_, used_precision), synthesize(G, wc, nc, used_precision),
                                   weights=id_weights or identity.cached_weights_path())
            for what, which in (('--a', 'a'), ('--b', 'b')):
                if what in prepared_images:  # how well the projection kept the photo's person
                    sources[what]['identity_similarity'] = scores.similarity_to_image(prepared_images[what], which)

    def frame(m: str, t: float) -> np.ndarray:
        image = synthesize(G, blend(m, t), blend_noise(m, t), used_precision)
        if scores is not None:
            with timer('identity'):
                scores.add(m, t, image)
        return image

    # The last run's report.json goes before the first new file: until this run's report is written
    # (last, after the path lengths), the folder is unfinished, never old report beside new images.
    mark_unfinished(out)
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
                      device=str(dev), vgg_weights=vgg_weights, id_weights=id_weights, no_identity=no_identity,
                      precision=precision),
        precision=used_precision,
        inputs=sources,
        network=dict(nets.info),
        generator=dict(resolution=G.img_resolution, num_ws=G.num_ws, w_dim=G.w_dim),
        crossover_used={m: (crossover if crossover is not None else (G.num_ws // 2 if m == 'style' else G.w_dim // 2))
                        for m in methods if m != 'linear'},
        ppl=dict(epsilon=1e-4, samples=ppl_samples, distance='lpips-vgg', precision='fp32', values=ppl),
        timings=timer.as_dict(),
        environment=environment(),
    )
    if scores is not None:
        report['identity_similarity'] = scores.report((methods[0], degree))
    image_io.save_json(out / 'report.json', report)
    click.echo('PPL: ' + ', '.join(f'{m} {v:.4g}' for m, v in ppl.items()) + f'; outputs in {out}', err=True)


if __name__ == '__main__':
    run(main)
