"""The benchmark scripts run and print the fields the README's speed tables are read from."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_step_time_json_lines_name_the_cpu():
    cmd = [sys.executable, str(ROOT / 'benchmarks' / 'step_time.py'), '--resolutions', '32', '--parts', 'generator',
           '--precision', 'fp32', '--device', 'cpu', '--repeats', '1', '--in-process', '--json']
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith('{')]
    assert len(lines) == 1
    row = lines[0]
    assert (row['resolution'], row['part'], row['precision'], row['batch_size']) == (32, 'generator', 'fp32', 1)
    assert row['seconds'] > 0 and row['peak_mib'] > 0
    assert isinstance(row['cpu'], str) and row['cpu'] and isinstance(row['cpu_bf16'], bool)
    import cpu_memory
    assert row['allocator'] == ('keep' if cpu_memory.keep_freed_memory() else 'system')  # as the commands run


def test_step_time_refuses_the_system_allocator_in_process():
    cmd = [sys.executable, str(ROOT / 'benchmarks' / 'step_time.py'), '--resolutions', '32', '--parts', 'generator',
           '--allocator', 'keep,system', '--in-process']
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and '--allocator system needs a fresh process' in proc.stderr


def test_conv_time_says_whether_bf16_is_native():
    cmd = [sys.executable, str(ROOT / 'benchmarks' / 'conv_time.py'), '--channels', '4', '--size', '8', '--repeats', '1',
           '--backward']
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    first, fp32, bf16, bf16_nhwc = proc.stdout.splitlines()
    assert 'native bfloat16 kernels: ' in first and 'AMX: ' in first
    assert fp32.startswith('fp32: ') and bf16.startswith('bf16: ') and bf16_nhwc.startswith('bf16 channels_last: ')
    assert all(line.endswith('(forward + backward)') for line in (fp32, bf16, bf16_nhwc))


def test_modconv_time_prints_every_mode_against_fused():
    cmd = [sys.executable, str(ROOT / 'benchmarks' / 'modconv_time.py'), '--resolutions', '32', '--precision', 'fp32',
           '--repeats', '1', '--min-channels', '16,128']
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line.split() for line in proc.stdout.splitlines()[2:]]
    assert [r[2] for r in rows] == ['fused', 'unfused', 'for_backward@16', 'for_backward@128']
    assert all(r[:2] == ['32', 'fp32'] and float(r[3]) > 0 for r in rows)
    assert float(rows[0][4]) == 1.0


def test_precision_quality_compares_each_precision_with_the_first():
    cmd = [sys.executable, str(ROOT / 'benchmarks' / 'precision_quality.py'), '--resolution', '32', '--num-steps', '2',
           '--precision', 'fp32,bf16', '--json']
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith('{')]
    assert [(r['requested'], r['precision']) for r in rows] == [('fp32', 'fp32'), ('bf16', 'bf16')]
    assert rows[0]['lpips_to_look_rel_diff'] == 0 and rows[0]['landmark_error_rel_diff'] == 0
    for row in rows:
        assert row['resolution'] == 32 and row['num_steps'] == 2 and row['seconds'] > 0
        assert row['lpips_to_look'] >= 0 and row['landmark_error'] >= 0
        assert row['lpips_to_look_rel_diff'] >= 0 and row['landmark_error_rel_diff'] >= 0


def test_relative_difference():
    sys.path.insert(0, str(ROOT))
    from benchmarks.precision_quality import relative_difference
    assert relative_difference(1.05, 1.0) == pytest.approx(0.05)
    assert relative_difference(0.95, -1.0) == pytest.approx(1.95)
    assert relative_difference(0.0, 0.0) == 0.0
    assert relative_difference(1.0, 0.0) == float('inf')


def test_start_time_prints_wall_and_cpu_seconds():
    cmd = [sys.executable, str(ROOT / 'benchmarks' / 'start_time.py'), '--repeats', '1', '--json']
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    assert row['runs'] == 1 and row['threads'] == 1 and row['wall_s'] > 0 and row['cpu_s'] > 0
