"""Time G_ema.synthesis forward and forward+backward at the FFHQ 1024x1024 architecture.

Random weights (nothing is downloaded): z 512, w 512, 8 mapping layers, channel base 32768,
channel max 512, skip architecture, as in NVIDIA's ffhq.pkl.

    python benchmarks/synthesis_time.py [--device cpu|cuda] [--resolution 1024] [--repeats 3]
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


def ffhq_generator(resolution: int = 1024) -> Generator:
    return Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=resolution, img_channels=3,
                     mapping_kwargs=dict(num_layers=8),
                     synthesis_kwargs=dict(channel_base=32768, channel_max=512, num_fp16_res=4, conv_clamp=256,
                                           architecture='skip'))


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--device', default=None, help='cpu or cuda (default: cuda when present)')
    parser.add_argument('--resolution', type=int, default=1024)
    parser.add_argument('--repeats', type=int, default=3)
    args = parser.parse_args()
    device = pick_device(args.device)

    torch.manual_seed(0)
    G = ffhq_generator(args.resolution).eval().requires_grad_(False).to(device)
    ws = G.mapping(torch.randn([1, G.z_dim], device=device), None)
    noise = [torch.randn([1, 1, layer.resolution, layer.resolution], device=device, requires_grad=True)
             for _, layer in G.synthesis.noise_layers()]

    def forward_only():
        with torch.no_grad():
            G.synthesis(ws, noise=noise)

    def forward_backward():
        w = ws.detach().clone().requires_grad_(True)
        img = G.synthesis(w, noise=noise)
        img.square().mean().backward()

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
    print(f'G.synthesis {args.resolution}x{args.resolution}, num_ws {G.num_ws}, batch 1, '
          f'best of {args.repeats}:')
    for name, seconds in results.items():
        print(f'  {name:<17} {seconds:7.3f} s')
    if device.type == 'cuda':
        print(f'  peak CUDA memory  {torch.cuda.max_memory_allocated(device) / 2**20:7.0f} MiB')
    else:
        print(f'  peak RSS          {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:7.0f} MiB')


if __name__ == '__main__':
    main()
