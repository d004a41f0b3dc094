"""Draw docs/landmarks68.png: the 68 iBUG landmarks, numbered 0-67 (the row of the ``[68, 2]``
arrays and landmark files), on the frontal face layout of ``landmark_targets.mean_face``.

    python docs/make_landmark_figure.py [--out docs/landmarks68.png] [--size 900]

Drawn with PIL only. The mouth is drawn slightly open so the inner-lip numbers have room.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from landmark_loss import LANDMARK_GROUPS  # noqa: E402
from landmark_targets import mean_face  # noqa: E402

COLOURS = {
    'jaw': (90, 90, 90), 'left_eyebrow': (200, 110, 0), 'right_eyebrow': (200, 110, 0),
    'nose_bridge': (0, 120, 200), 'lower_nose': (0, 120, 200), 'left_eye': (0, 150, 60),
    'right_eye': (0, 150, 60), 'outer_lip': (200, 30, 60), 'inner_lip': (140, 40, 160),
}
CLOSED = {'left_eye', 'right_eye', 'outer_lip', 'inner_lip'}


def _font(px: int):
    for name in ('DejaVuSans.ttf', '/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf', 'Arial.ttf'):
        try:
            return ImageFont.truetype(name, px)
        except OSError:
            pass
    try:
        return ImageFont.load_default(size=px)   # Pillow >= 10.1
    except TypeError:
        return ImageFont.load_default()


def figure_points() -> np.ndarray:
    """The mean face in the unit square, mouth opened a little (lower lip down)."""
    pts = mean_face()
    pts[[55, 56, 57, 58, 59, 65, 66, 67], 1] += 0.035
    pts[[48, 54, 60, 64], 1] += 0.0175
    return pts


def label_directions(pts: np.ndarray) -> np.ndarray:
    """A unit direction per point in which its number is written."""
    dirs = np.zeros_like(pts)
    centre = np.array([0.5, 0.42])
    for name, (first, last) in LANDMARK_GROUPS.items():
        idx = np.arange(first, last + 1)
        if name == 'jaw':
            d = pts[idx] - centre
        elif name.endswith('eyebrow'):
            d = np.tile([0.0, -1.0], (len(idx), 1))
        elif name == 'nose_bridge':
            d = np.tile([1.0, -0.15], (len(idx), 1))
        elif name == 'lower_nose':
            d = np.tile([0.0, 1.0], (len(idx), 1))
        elif name == 'inner_lip':
            d = pts[idx].mean(axis=0) - pts[idx]       # inwards, into the open mouth
        else:                                          # eyes, outer lip: outwards from the group's centre
            d = pts[idx] - pts[idx].mean(axis=0)
        dirs[idx] = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-9)
    return dirs


def draw(size: int = 900) -> Image.Image:
    legend_h = int(size * 0.16)
    img = Image.new('RGB', (size, size + legend_h), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    unit = figure_points()
    lo, hi = unit.min(axis=0), unit.max(axis=0)
    scale = 0.86 / float((hi - lo).max())           # the face fills the square, with room for the numbers
    pts = ((unit - (lo + hi) / 2) * scale + 0.5) * size
    font = _font(max(8, size // 62))
    small = _font(max(8, size // 55))
    r = max(2, size // 260)
    line = max(1, size // 450)
    for name, (first, last) in LANDMARK_GROUPS.items():
        seq = [tuple(p) for p in pts[first:last + 1]]
        if name in CLOSED:
            seq.append(seq[0])
        draw.line(seq, fill=tuple(int(c * 0.4 + 255 * 0.6) for c in COLOURS[name]), width=line)
    dirs = label_directions(unit)
    offset = size / 48
    for i, ((x, y), (dx, dy)) in enumerate(zip(pts, dirs)):
        group = next(n for n, (a, b) in LANDMARK_GROUPS.items() if a <= i <= b)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=COLOURS[group])
        draw.text((x + dx * offset, y + dy * offset), str(i), fill=COLOURS[group], font=font, anchor='mm')
    # Legend: the groups and their index ranges.
    top = size - int(0.02 * size)
    draw.text((size * 0.04, top), '68 iBUG landmarks (FAN, dlib), numbered from 0 as rows of the [68, 2] '
              'arrays; image left = the face\'s right', fill=(0, 0, 0), font=small)
    columns = 3
    for k, (name, (first, last)) in enumerate(LANDMARK_GROUPS.items()):
        col, row = k % columns, k // columns
        x = size * (0.04 + 0.32 * col)
        y = top + legend_h * (0.28 + 0.22 * row)
        draw.rectangle([x, y - r * 2, x + r * 4, y + r * 2], fill=COLOURS[name])
        draw.text((x + r * 7, y), f'{name} {first}-{last}', fill=(0, 0, 0), font=small, anchor='lm')
    return img


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default=str(ROOT / 'docs' / 'landmarks68.png'))
    parser.add_argument('--size', type=int, default=900, help='width in pixels')
    args = parser.parse_args(argv)
    image = draw(args.size)
    import image_io
    image_io.save_png(args.out, np.asarray(image))
    print(args.out)


if __name__ == '__main__':
    main()
