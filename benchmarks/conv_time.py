"""One 3x3 convolution forward in fp32 and in bf16 on the CPU: does this CPU have fast bfloat16 kernels?

Where ``precision.cpu_supports_bf16()`` is False (no AVX-512 or AMX), bf16 convolutions take PyTorch's
reference path and are many times slower than fp32; ``--precision auto`` then chooses fp32.

    python benchmarks/conv_time.py                       # 256 channels at 64x64
    python benchmarks/conv_time.py --channels 128 --size 256 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))


def conv_seconds(channels: int, size: int, dtype, repeats: int) -> float:
    """Best of ``repeats`` seconds for ``conv2d([1, C, size, size], [C, C, 3, 3], padding=1)`` in ``dtype``."""
    import torch
    import torch.nn.functional as F
    x = torch.randn(1, channels, size, size, dtype=dtype)
    w = torch.randn(channels, channels, 3, 3, dtype=dtype)
    F.conv2d(x, w, padding=1)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        F.conv2d(x, w, padding=1)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--channels', type=int, default=256)
    parser.add_argument('--size', type=int, default=64)
    parser.add_argument('--repeats', type=int, default=2)
    args = parser.parse_args()

    import torch

    import precision
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads, native bfloat16 kernels: '
          f'{precision.cpu_supports_bf16()}')
    for name, dtype in [('fp32', torch.float32), ('bf16', torch.bfloat16)]:
        seconds = conv_seconds(args.channels, args.size, dtype, args.repeats)
        print(f'{name}: {seconds * 1000:.1f} ms for a {args.channels}-channel 3x3 convolution at '
              f'{args.size}x{args.size}', flush=True)


if __name__ == '__main__':
    main()
