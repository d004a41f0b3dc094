"""``torchrun --standalone --nproc_per_node=2 projector.py --pairs`` on the CPU (gloo): the rows are
shared out, each done exactly once, rank 0 writes the merged report, and the results equal the
one-process run's (issue 9 §3)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import read_json, read_npz

ROOT = Path(__file__).resolve().parents[1]
STEPS = 3


def _write_csv(folder: Path, look: str, landmarks: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = [(look, landmarks, 'r0'), (landmarks, look, 'r1'), (look, look, 'r2'), (landmarks, landmarks, 'r3')]
    csv = folder / 'pairs.csv'
    csv.write_text('look,landmarks,outdir\n' + ''.join(f'{a},{b},out/{o}\n' for a, b, o in rows))
    return csv


def _run(launcher, csv, tiny_pkl, fan_weights, vgg_weights):
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=str(ROOT))
    for name in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT'):
        env.pop(name, None)
    args = launcher + [str(ROOT / 'projector.py'), '--pairs', str(csv), '--network', tiny_pkl, '--device', 'cpu',
                       '--fan-weights', fan_weights, '--vgg-weights', vgg_weights, '--num-steps', str(STEPS),
                       '--precision', 'fp32']
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope='module')
def runs(tiny_pkl, fan_weights, vgg_weights, face_images, tmp_path_factory):
    look, landmarks = face_images
    base = tmp_path_factory.mktemp('torchrun')
    two = _write_csv(base / 'two', look, landmarks)
    one = _write_csv(base / 'one', look, landmarks)
    torchrun = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2']
    p2 = _run(torchrun, two, tiny_pkl, fan_weights, vgg_weights)
    p1 = _run([sys.executable], one, tiny_pkl, fan_weights, vgg_weights)
    return (two.parent, p2), (one.parent, p1)


def test_every_row_done_once_by_one_rank(runs):
    (folder, proc), _ = runs
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = read_json(folder / 'pairs_report.json')
    assert report['world_size'] == 2
    rows = report['rows']
    assert [r['index'] for r in rows] == [0, 1, 2, 3]
    assert all(r['status'] == 'ok' for r in rows)
    assert [r['rank'] for r in rows] == [0, 1, 0, 1]


def test_results_equal_the_one_process_run(runs):
    (two, p2), (one, p1) = runs
    assert p2.returncode == 0 and p1.returncode == 0, (p2.stderr[-2000:], p1.stderr[-2000:])
    assert read_json(one / 'pairs_report.json')['world_size'] == 1
    for name in ('r0', 'r1', 'r2', 'r3'):
        got, want = read_npz(two / 'out' / name / 'projected_w.npz'), read_npz(one / 'out' / name / 'projected_w.npz')
        for key in want:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-6)
        assert read_json(two / 'out' / name / 'report.json')['landmark_error'] == pytest.approx(
            read_json(one / 'out' / name / 'report.json')['landmark_error'], rel=1e-4, abs=1e-6)


def test_a_row_failing_on_rank_1_lets_rank_0_finish(tiny_pkl, fan_weights, vgg_weights, face_images, tmp_path):
    """Rank 1's failed row: every rank waits for the merged report and rank 0 gives exit status 1.
    Rank 0 is never stopped by torchrun (exit code -15) before it has written the report; a rank
    still tearing down when rank 0 exits may be, harmlessly, since its rows are done."""
    look, landmarks = face_images
    csv = tmp_path / 'pairs.csv'
    csv.write_text(f'look,landmarks,outdir\n{look},{landmarks},out/ok\n{look},missing.png,out/bad\n')
    torchrun = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2']
    proc = _run(torchrun, csv, tiny_pkl, fan_weights, vgg_weights)
    assert proc.returncode == 1, proc.stderr[-3000:]
    report = read_json(tmp_path / 'pairs_report.json')
    assert [(r['status'], r['rank']) for r in report['rows']] == [('ok', 0), ('failed', 1)]
    assert '1 done, 0 skipped (complete), 1 failed' in proc.stderr
    assert 'exitcode  : -15' not in proc.stderr and 'exitcode  : 1 (pid' in proc.stderr, proc.stderr[-3000:]


# ----------------------------------------------------------------------------
# distributed.setup on its own (no process group is started: each case stops before).

@pytest.fixture
def as_rank(monkeypatch):
    def rank(local_rank: int):
        monkeypatch.setenv('WORLD_SIZE', '2')
        monkeypatch.setenv('RANK', str(local_rank))
        monkeypatch.setenv('LOCAL_RANK', str(local_rank))
    return rank


def test_one_gpu_named_under_torchrun_is_one_error_line(as_rank):
    import distributed
    from dnnlib.util import UserError
    as_rank(1)
    with pytest.raises(UserError, match=r'--device cuda:1: under torchrun each process uses its own GPU'):
        distributed.setup('cuda:1')


def test_more_processes_than_gpus_is_one_error_line(as_rank, monkeypatch):
    import torch

    import distributed
    from dnnlib.util import UserError
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 1)
    as_rank(1)
    with pytest.raises(UserError, match=r'LOCAL_RANK 1 but the machine has 1 GPU\(s\)'):
        distributed.setup('cuda')


def test_a_finished_rank_waits_for_the_others_for_days(as_rank, monkeypatch):
    """The ranks meet only at the merge, after all their rows; the wait must outlast any rank's work."""
    import datetime

    import torch.distributed as dist

    import distributed
    seen = {}

    def init_process_group(backend, timeout):
        seen.update(backend=backend, timeout=timeout)
        raise RuntimeError('stop here')

    monkeypatch.setattr(dist, 'is_initialized', lambda: False)
    monkeypatch.setattr(dist, 'init_process_group', init_process_group)
    as_rank(0)
    with pytest.raises(RuntimeError, match='stop here'):
        distributed.setup('cpu')
    assert seen['backend'] == 'gloo' and seen['timeout'] >= datetime.timedelta(days=7)


def test_a_bad_device_under_torchrun_is_the_one_process_error(tiny_pkl, fan_weights, vgg_weights, face_images,
                                                              tmp_path):
    csv = _write_csv(tmp_path / 'bad-device', *face_images)
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=str(ROOT), WORLD_SIZE='2', RANK='1', LOCAL_RANK='1')
    args = [sys.executable, str(ROOT / 'projector.py'), '--pairs', str(csv), '--network', tiny_pkl, '--device', 'foo',
            '--fan-weights', fan_weights, '--vgg-weights', vgg_weights]
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: --device: unknown device 'foo' (use cpu or cuda)"]
