"""``python legacy.py --info FILE``: one line per network, for every family of pickle."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import legacy
from cli_helpers import invoke

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / 'data'

EXPECTED = {
    'tiny-skip': dict(family='ada', protocol=4, architecture='stylegan2', resolution=32, num_ws=8, c_dim=0, fp16=2),
    'cond-orig': dict(family='ada', protocol=4, architecture='stylegan2', resolution=16, num_ws=6, c_dim=5, fp16=0),
    'tf-tiny': dict(family='tf', protocol=3, architecture='stylegan2', resolution=32, num_ws=8, c_dim=0, fp16=0),
    'sg3repo-sg2-tiny': dict(family='sg3-repo', protocol=4, architecture='stylegan2', resolution=32, num_ws=8,
                             c_dim=0, fp16=2),
    'sg3-t-tiny': dict(family='sg3-repo', protocol=4, architecture='stylegan3', resolution=32, num_ws=16, c_dim=0,
                       fp16=0),
    'sg3-r-tiny': dict(family='sg3-repo', protocol=4, architecture='stylegan3', resolution=32, num_ws=16, c_dim=0,
                       fp16=0),
}


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_info_json_describes_each_network(name):
    code, out, err = invoke(legacy.main, ['--info', '--json', str(DATA / f'{name}.pkl')])
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r['network'] for r in rows] == ['G', 'G_ema', 'D']
    e = EXPECTED[name]
    g = rows[1]
    assert (g['family'], g['protocol'], g['architecture'], g['resolution'], g['num_ws'], g['c_dim']) == (
        e['family'], e['protocol'], e['architecture'], e['resolution'], e['num_ws'], e['c_dim'])
    assert len(g['fp16_layers']) == e['fp16'] and g['has_D'] and g['channels'] == 3
    if e['architecture'] == 'stylegan3':
        assert g['config'] == name.split('-')[1].upper() and 'synthesis' not in g
    else:  # StyleGAN2's output layout, from the fixture's name where it says it
        assert g['synthesis'] == {'tiny-skip': 'skip', 'cond-orig': 'orig'}.get(name, g['synthesis'])
        assert g['synthesis'] in ('skip', 'orig', 'resnet')


def test_info_text_lines():
    code, out, err = invoke(legacy.main, ['--info', str(DATA / 'tf-tiny.pkl'), str(DATA / 'sg3-r-tiny.pkl')])
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].endswith('tf-tiny.pkl:') and len(lines) == 8
    assert 'family=tf' in lines[2] and 'protocol=3' in lines[2] and 'num_ws=8' in lines[2] and 'D=yes' in lines[2]
    assert 'architecture=stylegan3-R' in lines[6]


def test_python_dash_m_legacy(tmp_path):
    proc = subprocess.run([sys.executable, '-m', 'legacy', str(DATA / 'tiny-skip.pkl')], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert 'family=ada' in proc.stdout
    bad = tmp_path / 'bad.pkl'
    bad.write_bytes(b'not a pickle')
    proc = subprocess.run([sys.executable, 'legacy.py', '--info', str(bad)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith('error:') and 'Traceback' not in proc.stderr
