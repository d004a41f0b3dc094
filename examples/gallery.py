"""Put the results of several ``projector.py`` runs side by side in one labelled PNG.

    python examples/gallery.py OUT.png --run DIR LABEL [--run DIR LABEL ...] [--size 256]

One row of tiles: the look and the landmark target (``target_look.png`` and
``target_landmarks.png`` of the first run, or of ``--inputs DIR``), then ``proj.png`` of each
run, with its label and, from its ``report.json``, the landmark error and the LPIPS distance
to the look. A run without ``proj.png`` (failed or not run yet) shows as a grey tile marked
"missing". ``examples/landmark_weights.sh`` calls this for the landmark-weight gallery.
Needs only PIL.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from PIL import Image, ImageDraw, ImageFont

MARGIN = 8
LINE = 18       # pixels per label line
LABEL_LINES = 4


def font(size: int = 14) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)   # Pillow >= 10.1: a scalable font
    except TypeError:
        return ImageFont.load_default()


def read_report(folder: Path) -> dict:
    try:
        return json.loads((folder / 'report.json').read_text(encoding='utf-8'))
    except (OSError, ValueError):
        return {}


def report_lines(report: dict) -> List[str]:
    """The figures of a run worth printing under its tile (those its report has)."""
    lines = []
    if isinstance(report.get('landmark_error'), (int, float)):
        lines.append(f'landmark error {report["landmark_error"]:.3f}')
    if isinstance(report.get('lpips_to_look'), (int, float)):
        lines.append(f'LPIPS to look {report["lpips_to_look"]:.3f}')
    return lines


def tile(path: Optional[Path], size: int) -> Image.Image:
    """The image at ``path`` as an RGB ``size`` x ``size`` tile, or a grey "missing" tile."""
    if path is not None and path.is_file():
        with Image.open(path) as img:
            return img.convert('RGB').resize((size, size), Image.LANCZOS)
    img = Image.new('RGB', (size, size), (128, 128, 128))
    ImageDraw.Draw(img).text((MARGIN, size // 2 - LINE // 2), 'missing', fill=(255, 255, 255), font=font())
    return img


def compose(tiles: Sequence[Tuple[Image.Image, Sequence[str]]], size: int) -> Image.Image:
    """One row of ``(image, label lines)`` tiles on white, the lines under each image."""
    width = len(tiles) * size + (len(tiles) + 1) * MARGIN
    height = 2 * MARGIN + size + LABEL_LINES * LINE + MARGIN
    sheet = Image.new('RGB', (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    text_font = font()
    for k, (img, lines) in enumerate(tiles):
        x = MARGIN + k * (size + MARGIN)
        sheet.paste(img, (x, MARGIN))
        for j, line in enumerate(list(lines)[:LABEL_LINES]):
            draw.text((x, 2 * MARGIN + size + j * LINE), line, fill=(0, 0, 0), font=text_font)
    return sheet


def wrap(label: str, size: int) -> List[str]:
    """``label`` split at its newlines, and at commas where a line is wider than ``size``."""
    text_font = font()
    lines = []
    for part in label.split('\n'):
        while text_font.getlength(part) > size and ',' in part:
            cut = part.rfind(',', 0, len(part) - 1)
            while cut > 0 and text_font.getlength(part[:cut + 1]) > size:
                cut = part.rfind(',', 0, cut)
            if cut <= 0:
                break
            lines.append(part[:cut + 1])
            part = part[cut + 1:]
        lines.append(part)
    return lines


def gallery(runs: Sequence[Tuple[Path, str]], size: int = 256, inputs: Optional[Path] = None) -> Image.Image:
    """The gallery image of ``runs`` (folder, label): inputs first, then one tile per run.

    ``inputs``: the folder with target_look.png and target_landmarks.png (default: the first run
    that has them, so that a failed first run does not grey them out)."""
    if inputs is None:
        inputs = next((folder for folder, _ in runs if (folder / 'target_look.png').is_file()
                       and (folder / 'target_landmarks.png').is_file()), runs[0][0])
    tiles = [(tile(inputs / 'target_look.png', size), ['look']),
             (tile(inputs / 'target_landmarks.png', size), ['landmarks'])]
    for folder, label in runs:
        tiles.append((tile(folder / 'proj.png', size), wrap(label, size) + report_lines(read_report(folder))))
    return compose(tiles, size)


def save_png(image: Image.Image, path: Path) -> None:
    """Write ``image`` to ``path`` under a temporary name, renamed when complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.' + path.name + '.', suffix='.tmp', dir=path.parent)
    os.close(fd)
    try:
        image.save(tmp, format='PNG')
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('output', type=Path, help='the PNG to write')
    parser.add_argument('--run', nargs=2, action='append', metavar=('DIR', 'LABEL'), required=True,
                        help='an output folder of projector.py and its label (repeat, in order)')
    parser.add_argument('--inputs', type=Path, help='folder with target_look.png and target_landmarks.png '
                                                    '[default: the first --run that has them]')
    parser.add_argument('--size', type=int, default=256, help='side of each tile in pixels [default: 256]')
    args = parser.parse_args(argv)
    if args.size < 32:
        parser.error('--size must be at least 32')
    runs = [(Path(folder), label) for folder, label in args.run]
    if args.inputs is not None and not (args.inputs / 'target_look.png').is_file():
        print(f'gallery: no target_look.png in {args.inputs}: shown as missing', file=sys.stderr)
    for folder, _ in runs:
        if not (folder / 'proj.png').is_file():
            print(f'gallery: no proj.png in {folder}: shown as missing', file=sys.stderr)
    save_png(gallery(runs, args.size, args.inputs), args.output)
    print(args.output)
    return 0


if __name__ == '__main__':
    sys.exit(main())
