"""Tests of ``examples/``: the Colab notebook runs end to end, ``batch.sh`` and
``landmark_weights.sh`` behave, the example faces are the output of their script, and the
README's first-run command names files that exist.

The notebook and ``batch.sh`` run the real commands (subprocesses) on the tiny generator
fixture with random FAN / VGG16 weight files and a few steps; nothing is downloaded.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli_helpers import FAKE_PROJECTOR

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / 'examples'
NOTEBOOK = EXAMPLES / 'colab.ipynb'
FACES = EXAMPLES / 'faces'
OUTPUTS = ('proj.png', 'projected_w.npz', 'report.json')
NOTEBOOK_PARAMETERS = ('network', 'look', 'landmarks', 'fan_weights', 'vgg_weights', 'num_steps', 'device', 'outdir')


def quiet_env(tmp_path: Path) -> dict:
    """The environment for the commands: one torch thread, a private download cache."""
    return dict(os.environ, OMP_NUM_THREADS='1', DNNLIB_CACHE_DIR=str(tmp_path / 'dnnlib-cache'),
                PYTHON=sys.executable)


def net_options(tiny_pkl, fan_weights, vgg_weights):
    return ['--network', tiny_pkl, '--device', 'cpu', '--fan-weights', fan_weights, '--vgg-weights', vgg_weights]


# ----------------------------------------------------------------------------
# examples/colab.ipynb

def read_notebook():
    import nbformat
    return nbformat.read(str(NOTEBOOK), as_version=4)


def parameters_index(nb) -> int:
    tagged = [i for i, cell in enumerate(nb.cells) if 'parameters' in cell.get('metadata', {}).get('tags', [])]
    assert len(tagged) == 1, f'expected one cell tagged "parameters", found {len(tagged)}'
    return tagged[0]


def test_notebook_is_valid_small_and_has_its_parameters():
    import nbformat
    nb = read_notebook()
    nbformat.validate(nb)
    assert nb.nbformat == 4
    assert NOTEBOOK.stat().st_size < 50_000
    for cell in nb.cells:
        if cell.cell_type == 'code':
            assert cell.outputs == [] and cell.execution_count is None, 'the notebook is stored without outputs'
    namespace = {}
    exec(nb.cells[parameters_index(nb)].source, namespace)   # plain assignments, papermill's convention
    missing = [name for name in NOTEBOOK_PARAMETERS if name not in namespace]
    assert not missing, f'parameters cell lacks {missing}'
    assert namespace['fan_weights'] is None and namespace['vgg_weights'] is None   # None: download
    for name in ('look', 'landmarks', 'driving'):
        assert (REPO / namespace[name]).exists(), f'{name} = {namespace[name]!r} does not exist'
    setup = '\n'.join(cell.source for cell in nb.cells[:parameters_index(nb)] if cell.cell_type == 'code')
    assert 'google.colab' in setup and 'requirements.txt' in setup and 'cuda' in setup


def test_notebook_runs_on_cpu(tiny_pkl, fan_weights, vgg_weights, tmp_path, monkeypatch):
    """The whole notebook, parameters overridden in a cell after the parameters cell."""
    import nbformat
    from nbclient import NotebookClient

    driving = tmp_path / 'driving'
    driving.mkdir()
    for name in ('frame_00.png', 'frame_03.png'):
        shutil.copy(FACES / 'driving' / name, driving / name)
    out = tmp_path / 'notebook out'
    overrides = dict(network=tiny_pkl, fan_weights=fan_weights, vgg_weights=vgg_weights, device='cpu',
                     outdir=str(out), driving=str(driving), upload=False, align_video=False,
                     num_steps=2, morph_steps=1, morph_frames=2, ppl_samples=1, anim_steps_first=2, anim_steps=1)
    nb = read_notebook()
    cell = nbformat.v4.new_code_cell('\n'.join(f'{k} = {v!r}' for k, v in overrides.items()))
    cell['id'] = 'test-overrides'
    nb.cells.insert(parameters_index(nb) + 1, cell)

    for key, value in quiet_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    client = NotebookClient(nb, timeout=600, kernel_name='python3',
                            resources={'metadata': {'path': str(EXAMPLES)}})
    client.execute()   # raises CellExecutionError, with the cell and its output, if a cell fails

    expected = ['proj.png', 'projected_w.npz', 'summary.png', 'proj.mp4', 'report.json',
                'morph/grid.png', 'morph/morph.mp4', 'morph/report.json',
                'animation/animation.mp4', 'animation/side_by_side.mp4', 'animation/report.json']
    missing = [name for name in expected if not (out / name).is_file()]
    assert not missing, f'not written: {missing}'
    outputs = [o for c in nb.cells if c.cell_type == 'code' for o in c.outputs]
    html = ' '.join(o.get('data', {}).get('text/html', '') for o in outputs if o.output_type == 'display_data')
    assert html.count('data:video/mp4;base64,') >= 3      # progress video, morph, animation shown inline
    assert any('image/png' in o.get('data', {}) for o in outputs)
    text = ' '.join(o.get('text', '') for o in outputs if o.output_type == 'stream')
    assert 'landmark error' in text


# ----------------------------------------------------------------------------
# examples/batch.sh

def run_batch(csv_path: Path, options, tmp_path: Path):
    return subprocess.run(['bash', str(EXAMPLES / 'batch.sh'), str(csv_path), *map(str, options)],
                          capture_output=True, text=True, env=quiet_env(tmp_path), timeout=600)


def test_batch_good_and_bad_rows(tiny_pkl, fan_weights, vgg_weights, tmp_path):
    """CRLF, quoted fields, spaces and commas in paths; a failing row does not stop the loop."""
    folder = tmp_path / 'my pairs'
    (folder / 'in put').mkdir(parents=True)
    shutil.copy(FACES / 'astronaut.png', folder / 'in put' / 'look one.png')
    shutil.copy(FACES / 'astronaut_laugh.png', folder / 'in put' / 'laugh.png')
    csv_path = folder / 'pairs.csv'
    with open(csv_path, 'w', newline='') as f:      # csv's default dialect: CRLF, quotes where needed
        writer = csv.writer(f)
        writer.writerow(['look', 'landmarks', 'outdir'])
        writer.writerow(['in put/look one.png', 'in put/laugh.png', 'out/good, row'])
        writer.writerow(['in put/missing.png', 'in put/laugh.png', 'out/bad row'])
    assert b'\r\n' in csv_path.read_bytes() and b'"out/good, row"' in csv_path.read_bytes()
    options = net_options(tiny_pkl, fan_weights, vgg_weights) + ['--num-steps', 2]

    result = run_batch(csv_path, options, tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    good = folder / 'out' / 'good, row'
    assert all((good / name).is_file() for name in OUTPUTS + ('summary.png',))
    assert not (folder / 'out' / 'bad row' / 'proj.png').exists()
    assert 'missing.png' in result.stderr
    assert '2 rows: 1 projected, 0 skipped (already complete), 1 failed (rows 2)' in result.stdout

    before = (good / 'proj.png').stat().st_mtime_ns
    again = run_batch(csv_path, options, tmp_path)
    assert again.returncode == 1
    assert 'row 1 (' in again.stdout and 'complete, skipped' in again.stdout
    assert '2 rows: 0 projected, 1 skipped (already complete), 1 failed (rows 2)' in again.stdout
    assert (good / 'proj.png').stat().st_mtime_ns == before


@pytest.mark.parametrize('content, needle', [
    ('look,outdir\r\na.png,out\r\n', 'no column landmarks'),
    ('', 'is empty'),
])
def test_batch_unreadable_csv(content, needle, tmp_path):
    csv_path = tmp_path / 'pairs.csv'
    csv_path.write_text(content)
    result = run_batch(csv_path, [], tmp_path)
    assert result.returncode == 2
    assert needle in result.stderr and result.stderr.startswith('error:')


def test_example_pairs_csv_names_existing_faces():
    with open(EXAMPLES / 'pairs.csv', newline='', encoding='utf-8-sig') as f:
        rows = list(csv.DictReader(f))
    assert rows
    for row in rows:
        assert (EXAMPLES / row['look']).is_file() and (EXAMPLES / row['landmarks']).is_file()
        assert row['outdir'].startswith('out/')          # examples/.gitignore keeps out/ out of git


# ----------------------------------------------------------------------------
# examples/landmark_weights.sh and gallery.py

def test_landmark_weights_gallery(tmp_path):
    log = tmp_path / 'calls.jsonl'
    fake = tmp_path / 'fake-python'
    fake.write_text(FAKE_PROJECTOR.format(python=sys.executable, repo=str(REPO), log=str(log)))
    fake.chmod(0o755)
    outdir = tmp_path / 'gallery out'
    env = dict(quiet_env(tmp_path), PYTHON=str(fake), OUTDIR=str(outdir))
    command = ['bash', str(EXAMPLES / 'landmark_weights.sh'), '--num-steps=3', '--network=mine.pkl']
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr

    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(calls) == 6
    for args in calls:
        assert args[0].startswith('--network=') and '--network=mine.pkl' in args and '--num-steps=3' in args
        assert f'--target_look={FACES / "astronaut.png"}' in args
        assert f'--target_landmarks={FACES / "astronaut_laugh.png"}' in args
    weights = [[a for a in args if a.startswith('--landmark_weight')] for args in calls]
    assert weights == [['--landmark_weight=0'], ['--landmark_weight=0.01'], ['--landmark_weight=0.05'],
                       ['--landmark_weight=0.1'],
                       ['--landmark_weight=0.05', '--landmark_weights=0.05,0.2,0.2,0.1,0.5,0.2,0.2,5,5'],
                       ['--landmark_weight=0.05', '--landmark_weights=1,1,1,1,1,1,1,1,1']]
    with Image.open(outdir / 'gallery.png') as img:
        width, height = img.size
    assert width >= 8 * 256 and height > 256            # look, landmarks and six runs in one row

    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert again.returncode == 0 and again.stdout.count('complete, skipped') == 6
    assert len(log.read_text().splitlines()) == 6


def test_gallery_marks_missing_runs(tmp_path):
    run = tmp_path / 'run'
    run.mkdir()
    for name, colour in [('proj.png', (255, 0, 0)), ('target_look.png', (0, 255, 0)),
                         ('target_landmarks.png', (0, 0, 255))]:
        Image.new('RGB', (40, 40), colour).save(run / name)
    (run / 'report.json').write_text(json.dumps(dict(landmark_error=0.125)))
    out = tmp_path / 'g.png'
    result = subprocess.run([sys.executable, str(EXAMPLES / 'gallery.py'), str(out), '--size', '64',
                             '--run', str(run), 'first', '--run', str(tmp_path / 'nothing'), 'second'],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert 'nothing' in result.stderr and 'missing' in result.stderr
    image = np.asarray(Image.open(out).convert('RGB'))
    assert image.shape[1] == 4 * 64 + 5 * 8
    tiles = [image[8 + 4, 8 + k * 72 + 4] for k in range(4)]       # a pixel near each tile's corner
    assert [tuple(t) for t in tiles[:3]] == [(0, 255, 0), (0, 0, 255), (255, 0, 0)]
    assert tuple(tiles[3]) == (128, 128, 128)
    # A failed first run: the look and landmark tiles come from the first run that has them.
    result = subprocess.run([sys.executable, str(EXAMPLES / 'gallery.py'), str(out), '--size', '64',
                             '--run', str(tmp_path / 'nothing'), 'failed', '--run', str(run), 'second'],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    image = np.asarray(Image.open(out).convert('RGB'))
    tiles = [image[8 + 4, 8 + k * 72 + 4] for k in range(4)]
    assert [tuple(t) for t in tiles] == [(0, 255, 0), (0, 0, 255), (128, 128, 128), (255, 0, 0)]


# ----------------------------------------------------------------------------
# examples/faces and the README

def test_faces_are_small_and_have_sources():
    files = sorted(p for p in FACES.rglob('*') if p.is_file())
    assert sum(p.stat().st_size for p in files) < 4 * 2**20
    sources = (FACES / 'SOURCES.md').read_text()
    for path in files:
        if path.suffix == '.png':
            name = path.relative_to(FACES).as_posix()
            assert name in sources or path.parent.name == 'driving', f'{name} not in SOURCES.md'
            with Image.open(path) as img:
                assert img.mode == 'RGB' and img.size == (256, 256)
    assert len(list((FACES / 'driving').glob('*.png'))) >= 4
    assert 'driving/frame_00.png' in sources and 'public domain' in sources and 'CC0' in sources


def test_faces_are_the_output_of_make_faces(tmp_path):
    pytest.importorskip('skimage', reason='examples/make_faces.py needs scikit-image')
    result = subprocess.run([sys.executable, str(EXAMPLES / 'make_faces.py'), '--outdir', str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    made = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob('*.png'))
    committed = sorted(p.relative_to(FACES).as_posix() for p in FACES.rglob('*.png'))
    assert made == committed
    for name in made:
        a = np.asarray(Image.open(tmp_path / name), dtype=np.int16)
        b = np.asarray(Image.open(FACES / name), dtype=np.int16)
        assert a.shape == b.shape and np.abs(a - b).max() <= 2, name   # allows other Pillow builds' rounding


def first_run_section() -> str:
    text = (REPO / 'README.md').read_text(encoding='utf-8')
    match = re.search(r'^## First run\n(.*?)(?=^## )', text, flags=re.M | re.S)
    assert match, 'README has no "## First run" section'
    assert text.index('## First run') < text.index('## Install')
    return match.group(1)


def test_readme_first_run_uses_the_example_faces():
    section = first_run_section()
    blocks = re.findall(r'```bash\n(.*?)```', section, flags=re.S)
    commands = [line for block in blocks for line in block.replace('\\\n', ' ').splitlines()]
    assert 'pip install -r requirements.txt' in commands
    assert 'python -m pytest -q' in commands
    projector = [c for c in commands if c.startswith('python projector.py')]
    assert len(projector) == 1
    args = dict(a.split('=', 1) for a in shlex.split(projector[0])[2:] if a.startswith('--') and '=' in a)
    assert args['--network'].startswith('https://')
    for option in ('--target_look', '--target_landmarks'):
        assert args[option].startswith('examples/faces/') and (REPO / args[option]).is_file(), args[option]
    assert f"`{args['--outdir']}/`" in section          # where to look at the results
    for link in re.findall(r'\]\((examples/[^)]+)\)', section) + ['examples/faces/SOURCES.md']:
        assert (REPO / link).is_file(), link
    assert 'examples/colab.ipynb' in section and 'examples/batch.sh' in section
    assert 'Offline use' in section
