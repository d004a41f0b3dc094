"""Peak memory of reading a photo as a look: 48- and 24-megapixel JPEGs against a 1-megapixel one.

Each read runs in a fresh child process. After its imports (torch among them) the child resets
the kernel's peak-RSS counter (Linux: ``/proc/self/clear_refs``), notes its resident set size
(the baseline), reads the photo down to the generator's resolution (centre crop, ``--size`` x
``--size``) and reports the peak resident set size (``VmHWM``). Elsewhere the peak is
``ru_maxrss``, which also counts the imports. Three ways of reading:

- ``min_side``: ``image_io.load_image(path, min_side=size)`` then ``centre_crop_resize``
  (what a command that only needs the generator's resolution does);
- ``full``: ``image_io.load_image(path)`` (full size, upright, sRGB) then ``centre_crop_resize``;
- ``before``: the loader before orientation/colour/size handling (decode, ``convert('RGB')``,
  ``np.asarray``) then ``centre_crop_resize``.

The photos are generated (a smooth random picture with fine grain, JPEG quality 92), nothing is
downloaded.

    python benchmarks/image_memory.py [--size 1024] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PHOTOS = {'48 MP': (8000, 6000), '24 MP': (6000, 4000), '1 MP': (1224, 816)}
MODES = ('min_side', 'full', 'before')


def _status_mib(field: str):
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``) in MiB; None where there is none."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith(field + ':'):
                    return int(line.split()[1]) / 2**10
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset the peak-RSS counter to the current RSS (Linux 4.0+); False where that is not possible."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def _peak_mib() -> float:
    hwm = _status_mib('VmHWM')
    if hwm is not None:
        return hwm
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == 'darwin' else peak / 2**10   # bytes on macOS, KiB on Linux


def make_photo(path: Path, size) -> None:
    """A photo-like JPEG: a smooth random picture, upscaled, with per-pixel grain."""
    import numpy as np
    from PIL import Image
    w, h = size
    rng = np.random.RandomState(0)
    coarse = rng.randint(0, 256, size=(h // 64 + 2, w // 64 + 2, 3)).astype(np.uint8)
    img = Image.fromarray(coarse).resize((w, h), Image.BICUBIC)
    grain = rng.randint(-12, 13, size=(h, w, 1)).astype(np.int16)
    arr = np.clip(np.asarray(img, dtype=np.int16) + grain, 0, 255).astype(np.uint8)
    Image.fromarray(arr).save(path, quality=92)


def child(path: str, mode: str, size: int) -> None:
    sys.path.insert(0, str(REPO))
    import numpy as np
    from PIL import Image
    import image_io
    reset = _reset_peak()
    baseline = _status_mib('VmRSS') if reset else _peak_mib()
    t0 = time.perf_counter()
    if mode == 'min_side':
        image = image_io.load_image(path, min_side=size)
    elif mode == 'full':
        image = image_io.load_image(path)
    else:
        with Image.open(path) as img:
            img.load()
            image = np.asarray(img.convert('RGB'), dtype=np.uint8)
    look = image_io.centre_crop_resize(image, size)
    seconds = time.perf_counter() - t0
    assert look.shape == (size, size, 3)
    print(json.dumps(dict(baseline_mib=baseline, peak_mib=_peak_mib(), seconds=seconds, reset=reset)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--size', type=int, default=1024, help='the generator resolution the look is read for')
    parser.add_argument('--keep', default=None, metavar='DIR', help='write the photos here (default: a temp folder)')
    parser.add_argument('--child', nargs=2, metavar=('PATH', 'MODE'), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.size)
        return

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, OMP_NUM_THREADS='1')
        print(f'Peak RSS of reading a JPEG look down to {args.size}x{args.size} (fresh process each; MiB)')
        print(f'{"photo":>7} {"file":>8} {"mode":>9} {"baseline":>9} {"peak":>7} {"peak-baseline":>14} {"seconds":>8}')
        for name, size in PHOTOS.items():
            path = folder / f'photo_{size[0]}x{size[1]}.jpg'
            make_photo(path, size)
            for mode in MODES:
                out = subprocess.run([sys.executable, __file__, '--size', str(args.size), '--child', str(path), mode],
                                     capture_output=True, text=True, env=env, check=True).stdout
                r = json.loads(out.strip().splitlines()[-1])
                print(f'{name:>7} {path.stat().st_size / 2**20:>6.1f}MB {mode:>9} {r["baseline_mib"]:>9.0f} '
                      f'{r["peak_mib"]:>7.0f} {r["peak_mib"] - r["baseline_mib"]:>14.0f} {r["seconds"]:>8.2f}')


if __name__ == '__main__':
    main()
