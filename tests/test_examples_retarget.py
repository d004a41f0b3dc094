"""examples/retarget.sh and examples/edit_landmarks.py: the --retarget and edit-the-coordinates workflow.

projector.py is faked (a stand-in python that logs its arguments and writes its outputs, as in
test_examples.py), so the script's logic is tested in seconds; edit_landmarks.py and gallery.py run
for real.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import landmark_targets
from cli_helpers import FAKE_PROJECTOR

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / 'examples'
sys.path.insert(0, str(EXAMPLES))
import edit_landmarks  # noqa: E402

def test_edit_opens_the_mouth_and_raises_the_brows():
    points = landmark_targets.mean_face(100, 100)
    eye = np.linalg.norm(points[45] - points[36])
    edited = edit_landmarks.edit(points, open_mouth=0.3, raise_brows=0.1)
    moved = np.flatnonzero(np.abs(edited - points).max(axis=1) > 0)
    assert set(moved) == set(edit_landmarks.LOWER_LIP + edit_landmarks.CHIN + edit_landmarks.BROWS)
    np.testing.assert_allclose(edited[edit_landmarks.LOWER_LIP, 1] - points[edit_landmarks.LOWER_LIP, 1], 0.3 * eye)
    np.testing.assert_allclose(edited[edit_landmarks.BROWS, 1] - points[edit_landmarks.BROWS, 1], -0.1 * eye)
    np.testing.assert_allclose(edited[:, 0], points[:, 0])


@pytest.mark.parametrize('target, extra, needle', [('out.npy', [], 'must be a .json file'),
                                                   ('out.json', ['--open-mouth', 'nan'], '--open-mouth must be a finite')])
def test_edit_refuses_what_would_lose_the_frame_or_the_points(tmp_path, target, extra, needle):
    source = tmp_path / 'in.json'
    landmark_targets.write_landmark_file(source, landmark_targets.mean_face(100, 100), (100, 100))
    proc = subprocess.run([sys.executable, str(EXAMPLES / 'edit_landmarks.py'), str(source), str(tmp_path / target),
                           *extra], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.startswith('error: ') and needle in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / target).exists()


def test_retarget_example(tmp_path):
    log = tmp_path / 'calls.jsonl'
    fake = tmp_path / 'fake-python'
    fake.write_text(FAKE_PROJECTOR.format(python=sys.executable, repo=str(REPO), log=str(log)))
    fake.chmod(0o755)
    outdir = tmp_path / 'out'
    env = dict(PATH='/usr/bin:/bin', HOME=str(tmp_path), PYTHON=str(fake), OUTDIR=str(outdir))
    command = ['bash', str(EXAMPLES / 'retarget.sh'), '--num-steps=3', '--retarget-groups', 'lips',
               '--network=mine.pkl']
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(calls) == 3
    assert all('--network=mine.pkl' in args and '--num-steps=3' in args for args in calls)
    laugh = f'--target_landmarks={EXAMPLES / "faces" / "astronaut_laugh.png"}'
    assert laugh in calls[0] and '--retarget' not in calls[0]
    assert laugh in calls[1] and '--retarget' in calls[1]
    # --retarget-groups reaches the --retarget run only (the others refuse it).
    assert [i for i, args in enumerate(calls) if '--retarget-groups' in args] == [1]
    assert calls[1][calls[1].index('--retarget-groups') + 1] == 'lips'
    assert f'--target_landmarks={outdir / "open_mouth.json"}' in calls[2]
    # The edited file: run 2's used target with the mouth opened, readable as a target.
    edited = landmark_targets.read_landmark_file(outdir / 'open_mouth.json', resolution=1024)
    used = landmark_targets.read_landmark_file(outdir / 'retarget' / 'landmarks.json', resolution=1024)
    assert (edited[edit_landmarks.LOWER_LIP, 1] > used[edit_landmarks.LOWER_LIP, 1]).all()
    with Image.open(outdir / 'gallery.png') as img:
        assert img.size[0] > 4 * 16
