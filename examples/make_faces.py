"""Write the example faces in ``examples/faces/`` from photos that ship inside scikit-image.

    pip install scikit-image      # only this script needs it; the project does not
    python examples/make_faces.py [--outdir examples/faces]

Sources (both bundled with scikit-image, no download; licences in ``faces/SOURCES.md``):

- ``skimage.data.astronaut()``: Eileen Collins, NASA portrait, public domain (512x512 RGB).
- ``skimage.data.camera()``: the "cameraman" photo by Lav Varshney, CC0 (512x512 grey).

What it writes (``uint8`` RGB PNGs, ``SIZE`` x ``SIZE``, cropped and rotated the way FFHQ images
are aligned: an oriented square from the eye centres and mouth corners, so they can be passed
without ``--align``):

- ``astronaut.png``: the look image, as photographed (smiling, frontal).
- ``astronaut_laugh.png``: a second expression and pose made from the same photo: the jaw and
  lower lip moved down by a smooth warp (an open mouth) and the head rolled by a few degrees.
- ``cameraman.png``: another person in a three-quarter view, mouth closed.
- ``driving/frame_00.png`` ... ``frame_07.png``: a short driving sequence: the mouth opens and
  closes while the head rolls and the crop shifts and zooms slightly, frame to frame.

Everything after loading the two photos is PIL (plus numpy for the warp's displacement field),
and deterministic: running it again writes the same pixels. The eye and mouth positions below
were read off the photos by hand (pixel coordinates of the 512x512 originals).
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List, Tuple

import numpy as np
from PIL import Image

SIZE = 256            # side of every written image
DRIVING_FRAMES = 8
Point = Tuple[float, float]


@dataclass(frozen=True)
class FacePoints:
    """Hand-measured (x, y) pixel positions in a 512x512 original: eye centres, mouth corners,
    and the height of the line where the lips part (below the upper teeth)."""
    eye_left: Point
    eye_right: Point
    mouth_left: Point
    mouth_right: Point
    lip_gap_y: float

    @property
    def mouth(self) -> Point:
        return ((self.mouth_left[0] + self.mouth_right[0]) / 2, (self.mouth_left[1] + self.mouth_right[1]) / 2)


ASTRONAUT = FacePoints(eye_left=(204, 101), eye_right=(246, 103), mouth_left=(206, 141), mouth_right=(246, 140),
                       lip_gap_y=148)
# Three-quarter view: the far eye is hidden behind the nose bridge; its centre is estimated.
CAMERAMAN = FacePoints(eye_left=(234, 148), eye_right=(252, 146), mouth_left=(229, 181), mouth_right=(243, 178),
                       lip_gap_y=180)


def ffhq_quad(p: FacePoints) -> np.ndarray:
    """Corners ``float [4, 2]`` (top-left, bottom-left, bottom-right, top-right) of FFHQ's crop.

    The FFHQ rule: centre slightly below the eyes, towards the mouth; half-side the larger of
    twice the eye distance and 1.8 times the eye-to-mouth distance; rotated with the eye line.
    """
    eye_l, eye_r = np.array(p.eye_left, float), np.array(p.eye_right, float)
    eye_avg = (eye_l + eye_r) / 2
    eye_to_eye = eye_r - eye_l
    eye_to_mouth = np.array(p.mouth, float) - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def move_quad(quad: np.ndarray, angle_deg: float = 0.0, shift: Point = (0.0, 0.0), zoom: float = 1.0) -> np.ndarray:
    """``quad`` rotated by ``angle_deg`` about its centre, scaled by ``1 / zoom``, shifted by
    ``shift`` (fractions of its side). A positive angle rolls the face clockwise in the output."""
    centre = quad.mean(axis=0)
    side = np.hypot(*(quad[3] - quad[0]))
    a = math.radians(angle_deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return (quad - centre) @ rot.T / zoom + centre + np.array(shift) * side


def crop_quad(img: Image.Image, quad: np.ndarray, size: int = SIZE) -> Image.Image:
    """The square ``size`` x ``size`` image whose corners are ``quad`` in ``img`` (bicubic)."""
    return img.transform((size, size), Image.QUAD, data=tuple(quad.flatten()), resample=Image.BICUBIC)


def open_mouth(img: Image.Image, p: FacePoints, amount: float, cell: int = 2) -> Image.Image:
    """``img`` with the jaw and lower lip moved down by ``amount`` pixels (a smooth warp).

    Output point (x, y) takes its colour from (x, y - d(x, y)). Above the line where the lips
    part d is 0; over the next ``amount + GAP`` pixels it rises linearly to ``amount`` (so the
    few source rows at the lip line are spread over the opened gap, and the mapping never
    folds); it fades out sideways beyond the mouth corners and below the chin. The opened gap is
    shaded dark between the mouth corners so it reads as an open mouth. ``amount`` 0: a copy.
    """
    if amount <= 0:
        return img.copy()
    gap_rows = 3.0
    w, h = img.size
    mx, my = p.mouth
    half_width = (p.mouth_right[0] - p.mouth_left[0]) / 2
    eye_to_mouth = my - (p.eye_left[1] + p.eye_right[1]) / 2

    def displacement(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """How far down (pixels) the output point (x, y) takes its colour from."""
        local = amount * np.exp(-0.5 * ((xs - mx) / (1.4 * half_width)) ** 2)       # the jaw drop at x
        rise = np.clip((ys - p.lip_gap_y) / (local + gap_rows), 0, 1)              # slope < 1: no fold
        fade = np.clip(1 - (ys - (my + 1.3 * eye_to_mouth)) / eye_to_mouth, 0, 1)   # 0 under the chin
        return local * rise * fade

    # PIL's MESH maps each output cell from a source quadrilateral: sample the field at the corners.
    xs, ys = np.meshgrid(np.arange(0, w + 1, cell, dtype=float), np.arange(0, h + 1, cell, dtype=float))
    src_y = ys - displacement(xs, ys)
    mesh = []
    for j in range(ys.shape[0] - 1):
        for i in range(xs.shape[1] - 1):
            box = (int(xs[j, i]), int(ys[j, i]), int(xs[j, i + 1]), int(ys[j + 1, i]))
            quad = (xs[j, i], src_y[j, i], xs[j + 1, i], src_y[j + 1, i],
                    xs[j + 1, i + 1], src_y[j + 1, i + 1], xs[j, i + 1], src_y[j, i + 1])
            mesh.append((box, quad))
    warped = img.transform(img.size, Image.MESH, data=mesh, resample=Image.BICUBIC)

    # Shade the opened gap: output rows that sample the lip line, between the mouth corners.
    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    src = yy - displacement(xx, yy)
    in_gap = np.clip(1 - np.abs(src - (p.lip_gap_y + gap_rows / 2)) / (gap_rows / 2 + 0.5), 0, 1)
    spread = np.clip(displacement(xx, yy + 1) - displacement(xx, yy), 0, 1)    # how much a row is stretched
    inside = np.exp(-0.5 * ((xx - mx) / (0.7 * half_width)) ** 6)
    shade = np.clip(in_gap * np.sqrt(spread) * inside, 0, 0.9)[..., None]
    mouth_colour = np.array([60, 18, 22], float)
    out = np.asarray(warped, float) * (1 - shade) + mouth_colour * shade
    return Image.fromarray(np.round(out).astype(np.uint8))


def load_photos() -> Tuple[Image.Image, Image.Image]:
    """(astronaut, cameraman) as 512x512 RGB PIL images, from scikit-image's bundled data."""
    try:
        import skimage.data
    except ImportError:
        sys.exit('error: this script needs scikit-image (pip install scikit-image)')
    astronaut = Image.fromarray(skimage.data.astronaut()).convert('RGB')
    cameraman = Image.fromarray(skimage.data.camera()).convert('RGB')
    return astronaut, cameraman


def make_faces(astronaut: Image.Image, cameraman: Image.Image) -> List[Tuple[str, Image.Image]]:
    """(relative file name, image) of every example face."""
    quad = ffhq_quad(ASTRONAUT)
    faces = [
        ('astronaut.png', crop_quad(astronaut, quad)),
        ('astronaut_laugh.png', crop_quad(open_mouth(astronaut, ASTRONAUT, 14), move_quad(quad, angle_deg=-8))),
        ('cameraman.png', crop_quad(cameraman, ffhq_quad(CAMERAMAN))),
    ]
    for i in range(DRIVING_FRAMES):
        t = i / DRIVING_FRAMES                      # one cycle; the last frame leads back to the first
        opened = open_mouth(astronaut, ASTRONAUT, 12 * math.sin(math.pi * t))
        moved = move_quad(quad, angle_deg=5 * math.sin(2 * math.pi * t),
                          shift=(0.03 * math.sin(math.pi * t), -0.02 * math.sin(2 * math.pi * t)),
                          zoom=1 + 0.04 * math.sin(math.pi * t))
        faces.append((f'driving/frame_{i:02d}.png', crop_quad(opened, moved)))
    return faces


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--outdir', type=Path, default=Path(__file__).resolve().parent / 'faces',
                        help='where to write the faces (default: examples/faces next to this script)')
    args = parser.parse_args(argv)
    for name, image in make_faces(*load_photos()):
        path = args.outdir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, optimize=True)
        print(path)
    return 0


if __name__ == '__main__':
    sys.exit(main())
