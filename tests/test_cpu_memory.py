"""cpu_memory.keep_freed_memory: large freed blocks are reused instead of being mapped and faulted in again."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GLIBC = sys.platform.startswith('linux') and platform.libc_ver()[0] == 'glibc'

# A step's pattern in small: a stack of large activations (each over glibc's 32 MiB mmap ceiling),
# freed again, round after round. Prints the page faults per round once the heap has settled.
WORKLOAD = r'''
import json, resource, sys
sys.path.insert(0, sys.argv[2])
import cpu_memory
kept = cpu_memory.keep_freed_memory() if sys.argv[1] == 'keep' else False
import torch
torch.set_num_threads(1)
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def one_round():
    x = torch.ones(9 * 2 ** 20)                     # 36 MiB
    acts = [x * (i + 1) for i in range(4)]
    return float(sum(a[-1] for a in acts))
for _ in range(6):
    one_round()
start = faults()
for _ in range(5):
    one_round()
print(json.dumps(dict(kept=kept, status=cpu_memory.status(), faults_per_round=(faults() - start) / 5)))
'''


def _huge_pages_always() -> bool:
    try:
        return '[always]' in Path('/sys/kernel/mm/transparent_hugepage/enabled').read_text()
    except OSError:
        return False


def _workload(mode: str, **env) -> dict:
    proc = subprocess.run([sys.executable, '-c', WORKLOAD, mode, str(ROOT)], capture_output=True, text=True,
                          timeout=120, env={'OMP_NUM_THREADS': '1', 'PATH': '', **env})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not GLIBC, reason='glibc only: elsewhere keep_freed_memory does nothing')
def test_freed_large_blocks_are_reused_without_page_faults():
    pages_per_round = 5 * 9 * 2 ** 20 * 4 / 4096    # five 36 MiB tensors
    system = _workload('system')
    kept = _workload('keep')
    assert (system['kept'], system['status']) == (False, 'system default')
    assert (kept['kept'], kept['status']) == (True, 'freed memory kept')
    # glibc's default maps every block anew: each round faults all its pages in again (in 2 MiB
    # pieces where the kernel backs every mapping with transparent huge pages: then far fewer).
    if not _huge_pages_always():
        assert system['faults_per_round'] > 0.9 * pages_per_round
    # Kept: the rounds reuse the heap the first rounds grew.
    assert kept['faults_per_round'] < 0.05 * pages_per_round


def test_environment_variable_keeps_the_system_default():
    opted_out = _workload('keep', LANDMARK_PROJECTION_ALLOCATOR='system')
    assert (opted_out['kept'], opted_out['status']) == (False, 'system default')


@pytest.mark.parametrize('value, expected, warned', [
    (None, 'keep', False), ('', 'keep', False), ('keep', 'keep', False), (' System ', 'system', False),
    ('sytem', 'keep', True), ('0', 'keep', True),
])
def test_environment_variable_values(monkeypatch, capsys, value, expected, warned):
    import cpu_memory
    if value is None:
        monkeypatch.delenv(cpu_memory.ENV, raising=False)
    else:
        monkeypatch.setenv(cpu_memory.ENV, value)
    assert cpu_memory._setting() == expected
    err = capsys.readouterr().err
    if warned:
        assert err == f"warning: {cpu_memory.ENV}={value!r} is neither keep nor system: freed memory is kept\n"
    else:
        assert err == ''


def test_keep_freed_memory_is_idempotent_and_reported():
    import cpu_memory
    first = cpu_memory.keep_freed_memory()  # conftest already called it for this process
    assert cpu_memory.keep_freed_memory() is first
    assert first is (GLIBC and os.environ.get(cpu_memory.ENV, 'keep') != 'system')
    assert cpu_memory.status() == (cpu_memory.KEPT if first else cpu_memory.SYSTEM)


def test_commands_keep_freed_memory_from_the_start(monkeypatch):
    import click

    import cli_common
    import cpu_memory
    calls = []
    monkeypatch.setattr(cpu_memory, 'keep_freed_memory', lambda: calls.append('keep') or True)

    @click.command()
    def command():
        calls.append('command')

    with pytest.raises(SystemExit) as exit_info:
        cli_common.run(command, [])
    assert exit_info.value.code == 0
    assert calls == ['keep', 'command']
