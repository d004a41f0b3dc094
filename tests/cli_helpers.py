"""Helpers shared by the command-line tests (``projector.py``, ``projector_video.py``, ``morph.py``);
``read_video`` also serves the ``image_io.VideoWriter`` tests.

Plain functions, imported as ``from cli_helpers import ...``: pytest puts this folder (the one
holding ``conftest.py``) on ``sys.path``.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Optional

import numpy as np
import pytest

import cli_common


# ----------------------------------------------------------------------------
# Running a command in-process.

def run_command(command, args) -> int:
    """Run the click ``command`` in-process through ``cli_common.run``; return its exit status."""
    with pytest.raises(SystemExit) as exc_info:
        cli_common.run(command, [str(a) for a in args])
    return exc_info.value.code


def invoke(command, args):
    """``run_command`` with stdout and stderr captured: return (exit status, stdout, stderr).

    Captured by redirection rather than ``capsys``, so module-scoped fixtures can use it too.
    """
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run_command(command, args)
    return code, out.getvalue(), err.getvalue()


def with_option(args, name, value=None):
    """``args`` with option ``name`` set to ``value`` (replaced if present, else appended); a flag if value is None."""
    args = list(args)
    if value is None:
        return args + [name] if name not in args else args
    if name in args:
        args[args.index(name) + 1] = value
    else:
        args += [name, value]
    return args


# ----------------------------------------------------------------------------
# Checking what a run did.

def assert_one_error_line(err: str, *needles: str):
    """``err`` is one ``error: ...`` line, no traceback, naming every needle (case-insensitive)."""
    assert 'Traceback' not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f'expected one line on stderr, got {lines!r}'
    assert lines[0].startswith('error:'), lines[0]
    for needle in needles:
        assert needle.lower() in lines[0].lower(), f'{needle!r} not in {lines[0]!r}'


def assert_nothing_written(outdir: Path):
    """``outdir`` does not exist, or is an empty folder."""
    if outdir.exists():
        assert outdir.is_dir()
        leftovers = sorted(p.name for p in outdir.rglob('*'))
        assert leftovers == [], f'files left in the output folder: {leftovers}'


# ----------------------------------------------------------------------------
# Reading outputs.

def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding='utf-8'))


def read_npz(path: Path) -> dict:
    """Every array of an ``.npz`` file, read into memory."""
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def read_video_and_fps(path: Path):
    """(frames, fps) of an MP4: the frames as ``uint8 [H, W, 3]`` arrays."""
    import imageio.v2 as imageio
    reader = imageio.get_reader(str(path), format='FFMPEG')
    try:
        fps = float(reader.get_meta_data()['fps'])
        frames = [np.asarray(f) for f in reader]
    finally:
        reader.close()
    return frames, fps


def read_video(path: Path) -> list:
    """The frames of an MP4 as ``uint8 [H, W, 3]`` arrays."""
    return read_video_and_fps(path)[0]


def video_info(path: Path):
    """(number of frames, fps, frame shape) of an MP4."""
    frames, fps = read_video_and_fps(path)
    return len(frames), fps, frames[0].shape


def memoized_loader(real_loader, calls: Optional[list] = None):
    """A stand-in for ``load_networks`` that loads each distinct request once per test module
    (the networks are read-only) and, given ``calls``, records ``(need_identity, id_weights)``
    of every call."""
    memo = {}

    def loader(network_pkl, device, **kwargs):
        if calls is not None:
            calls.append((kwargs.get('need_identity'), kwargs.get('id_weights')))
        key = (str(network_pkl), str(device), tuple(sorted((k, str(v)) for k, v in kwargs.items())))
        if key not in memo:
            memo[key] = real_loader(network_pkl, device, **kwargs)
        return memo[key]
    return loader


# A stand-in for python in the examples' tests: fakes projector.py (logs its arguments, writes
# proj.png, the input PNGs, an empty projected_w.npz, report.json and landmarks.json), runs the rest.
FAKE_PROJECTOR = '''#!{python}
"""Fakes projector.py (logs its arguments; writes proj.png, report.json, landmarks.json and with --retarget
target_landmarks_used.json); runs the rest."""
import json, os, sys
from PIL import Image
sys.path.insert(0, {repo!r})
if len(sys.argv) > 1 and sys.argv[1].endswith('projector.py'):
    args = sys.argv[2:]
    with open({log!r}, 'a') as f:
        f.write(json.dumps(args) + '\\n')
    out = [a.split('=', 1)[1] for a in args if a.startswith('--outdir=')][-1]
    os.makedirs(out, exist_ok=True)
    for name in ('proj.png', 'target_look.png', 'target_landmarks.png'):
        Image.new('RGB', (16, 16), (200, 100, 50)).save(os.path.join(out, name))
    open(os.path.join(out, 'projected_w.npz'), 'wb').close()
    import landmark_targets
    points = landmark_targets.mean_face(600, 600) + 212
    landmark_targets.write_landmark_sets(os.path.join(out, 'landmarks.json'), 1024, points, look=points)
    if '--retarget' in args:  # as projector.py: the used target on its own
        landmark_targets.write_landmark_file(os.path.join(out, 'target_landmarks_used.json'), points, 1024)
    json.dump(dict(landmark_error=0.25, lpips_to_look=0.5), open(os.path.join(out, 'report.json'), 'w'))
else:
    os.execv({python!r}, [{python!r}] + sys.argv[1:])
'''
