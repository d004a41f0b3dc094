"""Time G.synthesis forward and forward+backward with random FFHQ-architecture weights.

Random weights (nothing is downloaded). Architectures (``--arch``):

* ``sg2``: StyleGAN2, as NVIDIA's ffhq.pkl: z 512, w 512, 8 mapping layers, channel base 32768,
  channel max 512, 4 fp16 resolutions with conv_clamp 256, skip architecture.
* ``sg3-t``: StyleGAN3 config T, as the stylegan3 repository's ``train.py --cfg=stylegan3-t`` at
  the FFHQ batch of 32: z 512, w 512, 2 mapping layers, channel base 32768, channel max 512,
  ``magnitude_ema_beta = 0.5 ** (32 / 20000)``, 4 fp16 resolutions, conv_clamp 256.
* ``sg3-r``: StyleGAN3 config R (``--cfg=stylegan3-r``): config T with 1x1 convolutions
  (``conv_kernel=1``), radially symmetric filters, channel base 65536 and channel max 1024.

A resolution below 64 selects a tiny network of the same architecture (z 32, w 32, 2 mapping
layers, channel base 512, channel max 32; doubled for ``sg3-r``), the size of the test fixtures,
so that the benchmarks can be smoke-tested in seconds.

    python benchmarks/synthesis_time.py [--arch sg2|sg3-t|sg3-r] [--device cpu|cuda]
                                        [--resolution 1024] [--repeats 3] [--batch-size 1]
                                        [--precision fp32|bf16|fp16|auto]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from networks import Generator  # noqa: E402
from torch_utils.misc import pick_device  # noqa: E402

ARCHS = ('sg2', 'sg3-t', 'sg3-r')
TINY_BELOW = 64                       # resolutions below this get the tiny configuration
FFHQ_BATCH = 32                       # the batch the published FFHQ StyleGAN3 networks were trained with


def ffhq_kwargs(resolution: int = 1024) -> dict:
    """The constructor arguments of NVIDIA's ffhq.pkl generator at ``resolution``."""
    return dict(z_dim=512, c_dim=0, w_dim=512, img_resolution=resolution, img_channels=3,
                mapping_kwargs=dict(num_layers=8),
                synthesis_kwargs=dict(channel_base=32768, channel_max=512, num_fp16_res=4, conv_clamp=256,
                                      architecture='skip'))


def ffhq_generator(resolution: int = 1024) -> Generator:
    """StyleGAN2 with the architecture of NVIDIA's ffhq.pkl (random weights)."""
    return Generator(**ffhq_kwargs(resolution))


def sg3_generator(resolution: int = 1024, config: str = 'T', channel_base: int = 32768, channel_max: int = 512,
                  z_dim: int = 512, w_dim: int = 512):
    """StyleGAN3 config ``'T'`` or ``'R'`` (random weights), as the stylegan3 ``train.py`` builds it.

    For ``'R'`` the given channel base and max are doubled, as ``train.py`` does.
    """
    from networks import stylegan3
    kwargs = dict(channel_base=channel_base, channel_max=channel_max, num_fp16_res=4, conv_clamp=256,
                  magnitude_ema_beta=0.5 ** (FFHQ_BATCH / (20 * 1e3)))
    if config == 'R':
        kwargs.update(conv_kernel=1, use_radial_filters=True, channel_base=channel_base * 2,
                      channel_max=channel_max * 2)
    elif config != 'T':
        raise ValueError(f"config must be 'T' or 'R', got {config!r}")
    return stylegan3.Generator(z_dim=z_dim, c_dim=0, w_dim=w_dim, img_resolution=resolution, img_channels=3,
                               mapping_kwargs=dict(num_layers=2), **kwargs)


def make_generator(arch: str = 'sg2', resolution: int = 1024):
    """A random-weight generator of ``arch`` (``ARCHS``) at ``resolution``; tiny below ``TINY_BELOW``."""
    if arch not in ARCHS:
        raise ValueError(f'arch must be one of {ARCHS}, got {arch!r}')
    tiny = resolution < TINY_BELOW
    if arch == 'sg2':
        if not tiny:
            return ffhq_generator(resolution)
        return Generator(z_dim=32, c_dim=0, w_dim=32, img_resolution=resolution, img_channels=3,
                         mapping_kwargs=dict(num_layers=2),
                         synthesis_kwargs=dict(channel_base=512, channel_max=32, num_fp16_res=2, conv_clamp=256,
                                               architecture='skip'))
    config = 'T' if arch == 'sg3-t' else 'R'
    if tiny:
        return sg3_generator(resolution, config, channel_base=512, channel_max=32, z_dim=32, w_dim=32)
    return sg3_generator(resolution, config)


def random_noise(G, batch: int, device) -> list:
    """Random noise maps ``[batch, 1, r, r]`` for G's noise layers (none for StyleGAN3), with gradients."""
    return [torch.randn([batch, 1, layer.resolution, layer.resolution], device=device, requires_grad=True)
            for _, layer in G.synthesis.noise_layers()]


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def main() -> None:
    import precision as precision_mod

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--arch', choices=ARCHS, default='sg2')
    parser.add_argument('--device', default=None, help='cpu or cuda (default: cuda when present)')
    parser.add_argument('--resolution', type=int, default=1024)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--batch-size', type=int, default=1)
    parser.add_argument('--precision', choices=precision_mod.CHOICES, default='fp32')
    args = parser.parse_args()
    device = pick_device(args.device)
    prec = precision_mod.resolve(args.precision, device)

    torch.manual_seed(0)
    G = make_generator(args.arch, args.resolution).eval().requires_grad_(False).to(device)
    ws = G.mapping(torch.randn([args.batch_size, G.z_dim], device=device), None)
    noise = random_noise(G, args.batch_size, device)
    kwargs = precision_mod.synthesis_kwargs(prec)
    if noise:
        kwargs['noise'] = noise

    def forward_only():
        with torch.no_grad(), precision_mod.autocast(prec, device):
            G.synthesis(ws, **kwargs)

    def forward_backward():
        w = ws.detach().clone().requires_grad_(True)
        with precision_mod.autocast(prec, device):
            img = G.synthesis(w, **kwargs)
        img.float().square().mean().backward()

    results = {}
    for name, fn in [('forward', forward_only), ('forward+backward', forward_backward)]:
        fn()  # warm-up
        _sync(device)
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            fn()
            _sync(device)
            times.append(time.perf_counter() - start)
        results[name] = min(times)

    print(f'device: {device}, threads: {torch.get_num_threads()}, torch {torch.__version__}')
    print(f'{args.arch} G.synthesis {args.resolution}x{args.resolution}, num_ws {G.num_ws}, '
          f'batch {args.batch_size}, precision {prec}, best of {args.repeats}:')
    for name, seconds in results.items():
        print(f'  {name:<17} {seconds:7.3f} s')
    if device.type == 'cuda':
        print(f'  peak CUDA memory  {torch.cuda.max_memory_allocated(device) / 2**20:7.0f} MiB')
    else:
        print(f'  peak RSS          {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:7.0f} MiB')


if __name__ == '__main__':
    main()
