"""Seconds per optimization step and peak memory, split into generator, FAN and LPIPS.

Random weights throughout (nothing is downloaded): the generator has the FFHQ architecture
(z 512, w 512, 8 mapping layers, channel base 32768, channel max 512) at the chosen
resolutions, FAN has 4 hourglass modules like the published 2DFAN-4, LPIPS uses VGG16.
Each part runs in its own process so that its peak memory is its own.

    python benchmarks/step_time.py                     # 256 and 1024, device at hand
    python benchmarks/step_time.py --resolutions 256 --device cpu --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..'))

PARTS = ['generator', 'fan', 'lpips', 'step']


def _peak_mib(device) -> float:
    import torch
    if device.type == 'cuda':
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(part: str, resolution: int, device_name: str, repeats: int) -> dict:
    """Time one part (forward + backward) in this process; returns seconds and peak memory."""
    import torch
    import torchvision
    from face_alignment.models import FAN

    from benchmarks.synthesis_time import ffhq_generator
    from landmark_loss import LandmarkLoss
    from optimization import ProjectionSettings, project, w_stats
    from perceptual import PerceptualLoss
    from objectives import look_and_landmarks

    device = torch.device(device_name)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix='bench-') as tmp:  # random weight files, removed afterwards
        vgg_path, fan_path = os.path.join(tmp, 'vgg.pth'), os.path.join(tmp, 'fan.pth')
        torch.save(torchvision.models.vgg16().state_dict(), vgg_path)
        torch.save(FAN(4).state_dict(), fan_path)
        from landmark_loss import load_fan
        fan = load_fan(fan_path, device) if part in ('fan', 'step') else None
        perceptual = PerceptualLoss(vgg_path, device) if part in ('lpips', 'step') else None

    G = ffhq_generator(resolution).eval().requires_grad_(False).to(device)
    image = (torch.rand([1, 3, resolution, resolution], device=device) * 2 - 1)
    if part == 'step':
        w_stats(G)  # computed once per network; not part of a step
    baseline = _peak_mib(device)

    if part == 'generator':
        ws = G.mapping(torch.randn([1, G.z_dim], device=device), None)
        noise = [torch.randn([1, 1, l.resolution, l.resolution], device=device, requires_grad=True)
                 for _, l in G.synthesis.noise_layers()]

        def fn():
            w = ws.detach().clone().requires_grad_(True)
            G.synthesis(w, noise=noise).square().mean().backward()
    elif part == 'fan':
        loss = LandmarkLoss(fan, image)

        def fn():
            x = image.detach().clone().requires_grad_(True)
            loss(x).sum().backward()
    elif part == 'lpips':
        perceptual.set_target(image)

        def fn():
            x = (image.flip(3)).detach().clone().requires_grad_(True)
            perceptual(x).sum().backward()
    else:
        # A whole optimization step (synthesis, both losses, backward, Adam, noise renormalization):
        # the time between consecutive step callbacks of one run, best of ``repeats``.
        perceptual.set_target(image)
        objective = look_and_landmarks(perceptual, LandmarkLoss(fan, image), 1.0, 0.1)
        stamps = []
        project(G, objective, ProjectionSettings(num_steps=repeats + 1),
                callbacks=[lambda info: stamps.append(time.perf_counter())])
        seconds = min(b - a for a, b in zip(stamps, stamps[1:]))
        return dict(part=part, resolution=resolution, seconds=seconds, peak_mib=_peak_mib(device),
                    peak_over_setup_mib=_peak_mib(device) - baseline)

    fn()  # warm-up
    times = []
    for _ in range(repeats):
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return dict(part=part, resolution=resolution, seconds=min(times), peak_mib=_peak_mib(device),
                peak_over_setup_mib=_peak_mib(device) - baseline)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--resolutions', default='256,1024')
    parser.add_argument('--device', default=None, help='cpu or cuda (default: cuda when present)')
    parser.add_argument('--repeats', type=int, default=2)
    parser.add_argument('--part', choices=PARTS, help=argparse.SUPPRESS)
    parser.add_argument('--resolution', type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.device is None:
        import torch
        args.device = 'cuda' if torch.cuda.is_available() else 'cpu'

    if args.part:  # child process
        print(json.dumps(measure(args.part, args.resolution, args.device, args.repeats)))
        return

    import torch
    print(f'device {args.device}, {torch.get_num_threads()} threads, torch {torch.__version__}')
    print(f'{"resolution":>10} {"part":>10} {"s / step":>9} {"peak MiB":>9} {"(+ over setup)":>15}')
    for resolution in [int(r) for r in args.resolutions.split(',')]:
        for part in PARTS:
            cmd = [sys.executable, os.path.abspath(__file__), '--part', part, '--resolution', str(resolution),
                   '--device', args.device, '--repeats', str(args.repeats)]
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=os.path.join(HERE, '..'),
                                  env={**os.environ, 'PYTHONPATH': os.path.join(HERE, '..')})
            if proc.returncode != 0:
                print(f'{resolution:>10} {part:>10} failed: {proc.stderr.strip().splitlines()[-1:]}')
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            label = 'full step' if part == 'step' else part + ' f+b'
            print(f'{resolution:>10} {label:>10} {r["seconds"]:9.3f} {r["peak_mib"]:9.0f} '
                  f'{r["peak_over_setup_mib"]:15.0f}', flush=True)


if __name__ == '__main__':
    main()
