"""Fused against unfused modulated convolutions in a projection's backward pass.

Times ``G.synthesis`` forward + backward to ``ws`` (what every projection step does) with random
FFHQ-architecture StyleGAN2 weights (``benchmarks/synthesis_time.py``), for each
``fused_modconv`` mode:

* ``fused``: every block fused (StyleGAN2-ADA's rule in eval mode for batch 1);
* ``unfused``: every block unfused;
* ``for_backward@C``: blocks at least ``C`` channels wide unfused, narrower ones fused (the mode
  the projections use, with ``C = networks.generator.UNFUSED_MIN_CHANNELS``; ``--min-channels``
  tries other cuts).

The modes are timed in interleaved rounds (round k measures every mode once), and the best of
``--repeats`` rounds is printed, so that a machine whose speed drifts treats them alike.

    python benchmarks/modconv_time.py                                  # 256 and 1024, fp32 and auto
    python benchmarks/modconv_time.py --resolutions 256 --precision bf16 --min-channels 64,128,256
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
import precision as precision_mod  # noqa: E402
from benchmarks.synthesis_time import _sync, make_generator  # noqa: E402
from networks import generator as generator_mod  # noqa: E402


def modes(min_channels) -> list:
    """``[(label, fused_modconv value, UNFUSED_MIN_CHANNELS)]`` for the timed modes."""
    out = [('fused', True, None), ('unfused', False, None)]
    out += [(f'for_backward@{c}', 'for_backward', c) for c in min_channels]
    return out


def time_modes(resolution: int, precision: str, device: torch.device, repeats: int, min_channels) -> dict:
    """Best seconds per forward + backward for each mode: ``{label: seconds}``."""
    torch.manual_seed(0)
    G = make_generator('sg2', resolution).eval().requires_grad_(False).to(device)
    ws = torch.randn([1, G.num_ws, G.w_dim], device=device, requires_grad=True)
    kwargs = precision_mod.synthesis_kwargs(precision)
    default_cut = generator_mod.UNFUSED_MIN_CHANNELS

    def once(fused, cut) -> float:
        generator_mod.UNFUSED_MIN_CHANNELS = default_cut if cut is None else cut
        _sync(device)
        start = time.perf_counter()
        with precision_mod.autocast(precision, device):
            img = G.synthesis(ws, noise_mode='const', fused_modconv=fused, **kwargs)
        img.float().square().sum().backward()
        _sync(device)
        ws.grad = None
        return time.perf_counter() - start

    table = modes(min_channels)
    try:
        for _, fused, cut in table:   # warm-up: one call per mode
            once(fused, cut)
        best = {label: float('inf') for label, _, _ in table}
        for _ in range(repeats):
            for label, fused, cut in table:
                best[label] = min(best[label], once(fused, cut))
    finally:
        generator_mod.UNFUSED_MIN_CHANNELS = default_cut
    return best


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--resolutions', default='256,1024', help='comma-separated (default 256,1024)')
    parser.add_argument('--precision', default='fp32,auto', help='comma-separated (default fp32,auto)')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--min-channels', default=str(generator_mod.UNFUSED_MIN_CHANNELS),
                        help='comma-separated cuts for for_backward (default: the one projections use)')
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    cuts = [int(c) for c in args.min_channels.split(',')]
    print(f'device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}, '
          f'native cpu bf16: {precision_mod.cpu_supports_bf16()}')
    print(f'{"resolution":>10} {"precision":>9} {"mode":>18} {"s / f+b":>8} {"x fused":>8}')
    for resolution in (int(r) for r in args.resolutions.split(',')):
        for requested in args.precision.split(','):
            used = precision_mod.resolve(requested, device)
            best = time_modes(resolution, used, device, args.repeats, cuts)
            for label, seconds in best.items():
                print(f'{resolution:>10} {used:>9} {label:>18} {seconds:>8.3f} {seconds / best["fused"]:>8.2f}',
                      flush=True)


if __name__ == '__main__':
    main()
