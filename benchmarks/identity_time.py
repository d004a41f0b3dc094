"""Seconds per forward + backward of the identity term, and its peak memory, at several image sizes.

The term is ``1 - cos(E(crop(x)), E(crop(anchor)))`` with FaceNet (Inception-ResNet-v1, random
weights: nothing is downloaded) on a 160x160 crop, whatever the image size; only the crop
(``grid_sample`` from the full image, and its gradient) grows with the resolution. The
backward pass reaches the image, not FaceNet's weights, as in a projection.

    python benchmarks/identity_time.py                            # 256 and 1024, device at hand
    python benchmarks/identity_time.py --resolutions 256 --device cpu --repeats 3 --batch 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..'))


def _peak_mib(device) -> float:
    import torch
    if device.type == 'cuda':
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(resolution: int, device_name: str, repeats: int, batch: int) -> dict:
    """Time the term (forward + backward to the image) in this process."""
    import torch

    import identity

    device = torch.device(device_name)
    torch.manual_seed(0)
    net = identity.InceptionResnetV1().eval().requires_grad_(False).to(device)
    anchor = torch.rand([1, 3, resolution, resolution], device=device) * 2 - 1
    images = torch.rand([batch, 3, resolution, resolution], device=device) * 2 - 1
    loss = identity.IdentityLoss(net, anchor, identity.ffhq_box(resolution))
    baseline = _peak_mib(device)

    def fn():
        x = images.detach().clone().requires_grad_(True)
        loss(x).sum().backward()

    fn()                                       # warm-up (allocations, cuDNN autotuning)
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return dict(resolution=resolution, batch=batch, device=device_name, threads=torch.get_num_threads(),
                seconds=min(times), seconds_all=times, peak_mib=_peak_mib(device), baseline_mib=baseline)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--resolutions', type=int, nargs='+', default=[256, 1024])
    parser.add_argument('--device', default=None, help='cpu or cuda (default: cuda when present)')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--batch', type=int, default=1, help='images per forward')
    parser.add_argument('--child', type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.device is None:
        import torch
        args.device = 'cuda' if torch.cuda.is_available() else 'cpu'
    if args.child is not None:
        print(json.dumps(measure(args.child, args.device, args.repeats, args.batch)))
        return
    rows = []
    for resolution in args.resolutions:              # one process each, so each peak memory is its own
        out = subprocess.run([sys.executable, __file__, '--child', str(resolution), '--device', args.device,
                              '--repeats', str(args.repeats), '--batch', str(args.batch)],
                             check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    print(f'identity term f+b, FaceNet on 160x160 crops, batch {args.batch}, device {args.device}')
    print('| resolution | seconds (best of %d) | peak memory |' % args.repeats)
    print('| --- | --- | --- |')
    for r in rows:
        print(f"| {r['resolution']}x{r['resolution']} | {r['seconds']:.3f} s | {r['peak_mib']:.0f} MiB |")
    print(json.dumps(rows))


if __name__ == '__main__':
    main()
