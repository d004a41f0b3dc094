"""Does reduced precision cost quality? One ``projector.py`` run per precision with the same seed,
inputs and step count; prints each run's final LPIPS to the look and landmark error (from its
``report.json``) and their relative difference from the fp32 run (issue 9 §1: within 5%). Not a test.

Random weights (nothing is downloaded), set up as ``benchmarks/pairs_throughput.py`` does: at
``--resolution 256`` a random FFHQ-architecture generator with the 4-hourglass FAN; at 32 the
test fixture ``tests/data/tiny-skip.pkl``. The look and landmark images are rendered by the
generator from two seeds.

    python benchmarks/precision_quality.py                                  # 256x256, fp32 vs auto, 100 steps
    python benchmarks/precision_quality.py --precision fp32,bf16 --num-steps 300 --json
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

KEYS = ('lpips_to_look', 'landmark_error')


def relative_difference(value: float, reference: float) -> float:
    """``|value - reference| / |reference|`` (0 when both are 0)."""
    if reference == 0:
        return 0.0 if value == 0 else float('inf')
    return abs(value - reference) / abs(reference)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--resolution', type=int, default=256)
    parser.add_argument('--num-steps', type=int, default=100)
    parser.add_argument('--precision', default='fp32,auto',
                        help='Comma-separated; the first is the reference the others are compared with.')
    parser.add_argument('--seed', type=int, default=7)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--json', action='store_true', help='One JSON object per precision.')
    args = parser.parse_args()
    precisions = [p.strip() for p in args.precision.split(',') if p.strip()]

    from benchmarks.pairs_throughput import prepare_inputs

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        setup = prepare_inputs(folder, args.resolution, 1)
        look, landmarks = setup['images'][:2]
        rows = []
        for name in precisions:
            outdir = folder / f'out-{name}'
            cmd = [sys.executable, str(ROOT / 'projector.py'), '--network', setup['pkl'],
                   '--fan-weights', setup['fan'], '--vgg-weights', setup['vgg'], '--device', args.device,
                   '--target_look', str(look), '--target_landmarks', str(landmarks), '--outdir', str(outdir),
                   '--num-steps', str(args.num_steps), '--seed', str(args.seed), '--precision', name]
            start = time.perf_counter()
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
            seconds = time.perf_counter() - start
            if proc.returncode != 0:
                raise SystemExit(f'failed: {" ".join(cmd)}\n{proc.stderr[-2000:]}')
            report = json.loads((outdir / 'report.json').read_text())
            rows.append(dict(requested=name, precision=report['precision'], resolution=args.resolution,
                             num_steps=args.num_steps, seed=args.seed, device=args.device,
                             seconds=round(seconds, 1), **{k: report[k] for k in KEYS}))
        reference = rows[0]
        for row in rows:
            for key in KEYS:
                row[f'{key}_rel_diff'] = round(relative_difference(row[key], reference[key]), 4)
            if args.json:
                print(json.dumps(row))
            else:
                print(f'{row["requested"]:>5s} ({row["precision"]}): LPIPS to look {row["lpips_to_look"]:.4f} '
                      f'({100 * row["lpips_to_look_rel_diff"]:.1f}%), landmark error {row["landmark_error"]:.4f} '
                      f'({100 * row["landmark_error_rel_diff"]:.1f}%), {row["seconds"]:.0f} s '
                      f'[{args.resolution}x{args.resolution}, {args.num_steps} steps, seed {args.seed}, '
                      f'against {reference["requested"]}]')


if __name__ == '__main__':
    main()
