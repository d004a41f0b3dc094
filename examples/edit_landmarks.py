"""Edit a landmark file the way a user would by hand: open the mouth, raise the eyebrows.

    python examples/edit_landmarks.py IN.json OUT.json --open-mouth 0.3 --raise-brows 0.1

``IN`` is a landmark file that names its frame (``size``): ``landmarks.json`` or
``target_landmarks_used.json`` of a run, ``FILE.json#look``, an ``.npz`` with ``size`` (``.npy`` and
``.pts`` files name none, so they are refused); ``OUT`` is a ``{"size": [W, H], "landmarks": [...]}``
JSON file for ``--target_landmarks`` (its name must end in ``.json``). Amounts are fractions of the outer-eye-corner distance (points 36 and 45):
``--open-mouth`` moves the lower lip (outer 55-59, inner 65-67) and the chin (jaw 6-10, half as
far) down; ``--raise-brows`` moves both eyebrows (17-26) up.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

import click  # noqa: E402
import numpy as np  # noqa: E402

import landmark_targets  # noqa: E402
from cli_common import run  # noqa: E402
from dnnlib.util import UserError  # noqa: E402

LOWER_LIP = [55, 56, 57, 58, 59, 65, 66, 67]
CHIN = [6, 7, 8, 9, 10]
BROWS = list(range(17, 27))


def edit(points: np.ndarray, open_mouth: float = 0.0, raise_brows: float = 0.0) -> np.ndarray:
    """``[68, 2]`` pixels -> edited copy; amounts in outer-eye-corner distances (image y points down)."""
    pts = np.array(points, dtype=np.float64).reshape(68, 2)
    eye = float(np.linalg.norm(pts[45] - pts[36]))
    pts[LOWER_LIP, 1] += open_mouth * eye
    pts[CHIN, 1] += 0.5 * open_mouth * eye
    pts[BROWS, 1] -= raise_brows * eye
    return pts


@click.command()
@click.argument('source')
@click.argument('target')
@click.option('--open-mouth', 'open_mouth', type=float, default=0.0, show_default=True,
              help='Lower lip down by this many eye-corner distances (chin half as far).')
@click.option('--raise-brows', 'raise_brows', type=float, default=0.0, show_default=True,
              help='Eyebrows up by this many eye-corner distances.')
def main(source, target, open_mouth, raise_brows):
    """Write TARGET: the landmarks of SOURCE with the mouth opened and/or the eyebrows raised."""
    if not target.lower().endswith('.json'):  # .npy and .pts would lose the frame the points are in
        raise UserError(f'TARGET must be a .json file (it keeps the frame, "size"), got {target}')
    for name, value in (('--open-mouth', open_mouth), ('--raise-brows', raise_brows)):
        if not np.isfinite(value):
            raise UserError(f'{name} must be a finite number, got {value}')
    points, frame = landmark_targets.read_landmark_points(source)
    size = frame if frame is not None else None
    if size is None:
        raise click.UsageError(f'{source} names no frame ("size"); write it from a landmarks.json')
    landmark_targets.write_landmark_file(target, edit(points, open_mouth, raise_brows), size)
    click.echo(f'wrote {target}', err=True)


if __name__ == '__main__':
    run(main)
