"""One 3x3 convolution in fp32 and in bf16 on the CPU: does this CPU have fast bfloat16 kernels, and
in which memory layout?

Where ``precision.cpu_supports_bf16()`` is False (no AVX-512 or AMX), bf16 convolutions take PyTorch's
reference path and are many times slower than fp32; ``--precision auto`` then chooses fp32. The
``bf16 channels_last`` line is the layout ``torch_utils.misc.conv_layout`` gives convolutions under
CPU bf16 autocast where the CPU has AMX (its oneDNN kernels work in NHWC).

    python benchmarks/conv_time.py                       # 256 channels at 64x64, forward
    python benchmarks/conv_time.py --channels 128 --size 256 --repeats 3 --backward
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))


def conv_seconds(channels: int, size: int, dtype, repeats: int, channels_last: bool = False,
                 backward: bool = False) -> float:
    """Best of ``repeats`` seconds for ``conv2d([1, C, size, size], [C, C, 3, 3], padding=1)`` in ``dtype``
    (with ``backward``: forward and the backward pass to the input)."""
    import torch
    import torch.nn.functional as F
    x = torch.randn(1, channels, size, size, dtype=dtype)
    w = torch.randn(channels, channels, 3, 3, dtype=dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)

    def run():
        inp = x.detach().requires_grad_(backward)
        y = F.conv2d(inp, w, padding=1)
        if backward:
            y.backward(torch.ones_like(y))

    run()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--channels', type=int, default=256)
    parser.add_argument('--size', type=int, default=64)
    parser.add_argument('--repeats', type=int, default=2)
    parser.add_argument('--backward', action='store_true', help='Time forward + backward to the input.')
    args = parser.parse_args()

    import torch

    import precision
    from torch_utils import misc
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads, native bfloat16 kernels: '
          f'{precision.cpu_supports_bf16()}, AMX: {misc.cpu_has_amx()}')
    what = 'forward + backward' if args.backward else 'forward'
    for name, dtype, channels_last in [('fp32', torch.float32, False), ('bf16', torch.bfloat16, False),
                                       ('bf16 channels_last', torch.bfloat16, True)]:
        seconds = conv_seconds(args.channels, args.size, dtype, args.repeats, channels_last, args.backward)
        print(f'{name}: {seconds * 1000:.1f} ms for a {args.channels}-channel 3x3 convolution at '
              f'{args.size}x{args.size} ({what})', flush=True)


if __name__ == '__main__':
    main()
