"""What a short run costs before and around its steps: ``projector.py`` with one step on the tiny
fixture, as separate processes, wall-clock and CPU seconds (imports, loading the networks,
reading the inputs, the step, writing the outputs). A loop of many short runs pays this each time.
Not a test.

Random weights throughout (nothing is downloaded): the fixture ``tests/data/tiny-skip.pkl``, a
1-hourglass FAN and VGG16 written by ``benchmarks/step_time.py``, faces the generator renders.

    python benchmarks/start_time.py                 # 5 runs, median
    python benchmarks/start_time.py --repeats 3 --json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def one_run(setup: dict, outdir: Path, threads: int) -> dict:
    """Wall-clock and CPU seconds (user + system) of one ``projector.py --num-steps 1`` process."""
    cmd = [sys.executable, str(ROOT / 'projector.py'), '--network', setup['pkl'], '--fan-weights', setup['fan'],
           '--vgg-weights', setup['vgg'], '--device', 'cpu', '--num-steps', '1', '--precision', 'fp32',
           '--target_look', str(setup['images'][0]), '--target_landmarks', str(setup['images'][1]),
           '--outdir', str(outdir)]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f'failed: {" ".join(cmd)}\n{proc.stderr[-2000:]}')
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return dict(wall_s=wall, cpu_s=cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--repeats', type=int, default=5, help='runs to take the median of (default 5)')
    parser.add_argument('--threads', type=int, default=1, help='OMP_NUM_THREADS of the runs (default 1)')
    parser.add_argument('--json', action='store_true', help='one JSON object instead of a line of text')
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error('--repeats must be at least 1')
    from benchmarks.pairs_throughput import prepare_inputs
    with tempfile.TemporaryDirectory() as folder:
        setup = prepare_inputs(Path(folder), 32, 1)
        runs = [one_run(setup, Path(folder) / f'out{i}', args.threads) for i in range(args.repeats)]
    result = dict(runs=len(runs), threads=args.threads,
                  wall_s=round(statistics.median(r['wall_s'] for r in runs), 3),
                  cpu_s=round(statistics.median(r['cpu_s'] for r in runs), 3))
    if args.json:
        print(json.dumps(result))
    else:
        print(f'projector.py, 1 step, tiny fixture, {result["threads"]} thread(s): median of {result["runs"]} runs '
              f'{result["wall_s"]:.2f} s wall, {result["cpu_s"]:.2f} s CPU')


if __name__ == '__main__':
    main()
