"""Pairs per minute: 8 pairs as 8 separate ``projector.py`` processes, as one ``--pairs`` process,
and as one ``--pairs --batch-size 4`` process (issue 9 §4). Not a test.

Random weights throughout (nothing is downloaded): at ``--resolution 32`` the test fixture
``tests/data/tiny-skip.pkl`` with a 1-hourglass FAN; at 64 and above a random FFHQ-architecture
generator pickled to a temporary file with the 4-hourglass FAN (``benchmarks/step_time.py``'s
weight files). Look and landmark images are rendered by the generator. Each mode's wall-clock
time includes process start and network loading, which is what ``--pairs`` saves.

    python benchmarks/pairs_throughput.py                           # tiny fixture, 8 pairs, 20 steps
    python benchmarks/pairs_throughput.py --resolution 256 --num-steps 10 --json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def prepare_inputs(folder: Path, resolution: int, num_pairs: int) -> dict:
    """Write a random-weight network pickle and ``num_pairs + 1`` face images it renders into ``folder``.

    Returns ``dict(pkl, fan, vgg, images)``: the generator pickle (official format; the tiny fixture
    below ``TINY_BELOW``), the FAN and VGG weight files, and the image paths (PNG, ``resolution``
    square). Shared with ``benchmarks/precision_quality.py``.
    """
    import numpy as np
    import torch

    import image_io
    from benchmarks.step_time import fan_hourglasses, make_weight_files
    from benchmarks.synthesis_time import TINY_BELOW, make_generator

    weights = make_weight_files(str(folder), [resolution])
    if resolution < TINY_BELOW:
        pkl = ROOT / 'tests' / 'data' / 'tiny-skip.pkl'
        import legacy
        G = legacy.load_generator(str(pkl), 'cpu')
    else:
        from benchmarks.official_pickle import save_official_pkl
        from benchmarks.synthesis_time import ffhq_kwargs
        torch.manual_seed(0)
        G = make_generator('sg2', resolution).eval().requires_grad_(False)
        pkl = folder / f'random-sg2-{resolution}.pkl'
        save_official_pkl(pkl, G, ffhq_kwargs(resolution))  # the safe loader reads official pickles only
    images = []
    for i in range(num_pairs + 1):
        z = torch.from_numpy(np.random.RandomState(i).randn(1, G.z_dim)).float()
        with torch.no_grad():
            img = image_io.to_uint8(G(z, None, noise_mode='const')[0])
        path = folder / f'face{i}.png'
        image_io.save_png(path, img)
        images.append(path)
    return dict(pkl=str(pkl), fan=weights[f'fan{fan_hourglasses(resolution)}'], vgg=weights['vgg'], images=images)


def _common(setup: dict, args) -> list:
    return ['--network', setup['pkl'], '--fan-weights', setup['fan'], '--vgg-weights', setup['vgg'],
            '--device', args.device, '--num-steps', str(args.num_steps), '--precision', args.precision]


def _timed(cmds) -> float:
    start = time.perf_counter()
    for cmd in cmds:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f'failed: {" ".join(cmd)}\n{proc.stderr[-2000:]}')
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--resolution', type=int, default=32)
    parser.add_argument('--num-pairs', type=int, default=8)
    parser.add_argument('--num-steps', type=int, default=20)
    parser.add_argument('--batch-size', type=int, default=4)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--precision', default='auto', help='As projector.py (default: auto, its default).')
    parser.add_argument('--json', action='store_true', help='One JSON object per mode.')
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        setup = prepare_inputs(folder, args.resolution, args.num_pairs)
        imgs = setup['images']
        pairs = [(imgs[i], imgs[i + 1]) for i in range(args.num_pairs)]
        py = [sys.executable, str(ROOT / 'projector.py')]
        modes = {}
        separate = [py + _common(setup, args) + ['--target_look', str(a), '--target_landmarks', str(b),
                                                 '--outdir', str(folder / 'sep' / f'p{i}')]
                    for i, (a, b) in enumerate(pairs)]
        modes['separate processes'] = _timed(separate)
        for name, bs in (('one --pairs process', 1), (f'--pairs --batch-size {args.batch_size}', args.batch_size)):
            sub = folder / f'pairs-bs{bs}'
            sub.mkdir()
            (sub / 'pairs.csv').write_text('look,landmarks,outdir\n' + ''.join(
                f'{a},{b},out/p{i}\n' for i, (a, b) in enumerate(pairs)))
            modes[name] = _timed([py + _common(setup, args) + ['--pairs', str(sub / 'pairs.csv'),
                                                               '--batch-size', str(bs)]])
        for name, seconds in modes.items():
            row = dict(mode=name, resolution=args.resolution, pairs=args.num_pairs, num_steps=args.num_steps,
                       device=args.device, precision=args.precision, seconds=round(seconds, 2),
                       pairs_per_minute=round(60 * args.num_pairs / seconds, 2))
            if args.json:
                print(json.dumps(row))
            else:
                print(f'{name:28s} {seconds:8.1f} s  {row["pairs_per_minute"]:7.2f} pairs/min '
                      f'({args.num_pairs} pairs, {args.num_steps} steps, {args.resolution}x{args.resolution}, '
                      f'{args.device}, {args.precision})')


if __name__ == '__main__':
    main()
