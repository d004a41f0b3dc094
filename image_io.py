"""Reading images, converting between arrays and tensors, and writing outputs atomically.

Conventions: an *image array* is ``uint8 [H, W, 3]`` RGB; an *image tensor* is float
``[N, 3, H, W]`` in ``[-1, 1]`` (the generator's range). Every writer here writes to a
temporary name in the destination folder and renames it when complete, so an interrupted
run never leaves a half-written file under a final name.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator, Optional, Union

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from dnnlib.util import UserError

PathLike = Union[str, os.PathLike]
_UMASK = os.umask(0)
os.umask(_UMASK)


# ----------------------------------------------------------------------------
# Reading.

def load_image(path: PathLike, what: str = 'image') -> np.ndarray:
    """Read any PIL-readable image as ``uint8 [H, W, 3]`` RGB.

    Grayscale, palette, RGBA/LA (alpha composited onto white) and 16-bit or float images are
    converted. Raises ``UserError`` naming ``what`` for a missing or unreadable file.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f'{what}: file not found: {path}')
    try:
        with Image.open(path) as img:
            img.load()
            return _to_rgb8(img)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise UserError(f'{what}: not a readable image: {path} ({exc.__class__.__name__})') from None


def _to_rgb8(img: Image.Image) -> np.ndarray:
    if img.mode in ('I', 'I;16', 'I;16B', 'I;16L', 'I;16N', 'F'):
        arr = np.asarray(img, dtype=np.float64)
        if img.mode.startswith('I;16'):
            top = 65535.0                       # 16-bit: the full range, however dark the image
        elif img.mode == 'I':
            top = 65535.0 if arr.max() > 255 else 255.0  # PIL opens some 16-bit PNGs as 32-bit 'I'
        else:
            top = 1.0 if arr.max() <= 1 else 255.0
        arr = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(arr[:, :, None], 3, axis=2)
    if img.mode == 'P':
        img = img.convert('RGBA')
    if img.mode in ('RGBA', 'LA', 'PA', 'RGBa', 'La'):
        background = Image.new('RGBA', img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img.convert('RGBA'))
    arr = np.asarray(img.convert('RGB'), dtype=np.uint8)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.size == 0:
        raise ValueError('unsupported image layout')
    return arr


def centre_crop_resize(image: np.ndarray, resolution: int) -> np.ndarray:
    """Centre-crop ``uint8 [H, W, 3]`` to a square and Lanczos-resize it to ``resolution``."""
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = Image.fromarray(image[top:top + side, left:left + side])
    if side != resolution:
        square = square.resize((resolution, resolution), Image.LANCZOS)
    return np.asarray(square, dtype=np.uint8)


# ----------------------------------------------------------------------------
# Conversions.

def to_tensor(image: np.ndarray, device: Union[str, torch.device] = 'cpu') -> torch.Tensor:
    """``uint8 [H, W, 3]`` -> float32 ``[1, 3, H, W]`` in ``[-1, 1]``."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f'expected uint8 [H, W, 3], got {image.dtype} {list(image.shape)}')
    x = torch.from_numpy(np.array(image, copy=True)).to(device=device, dtype=torch.float32)
    return (x.permute(2, 0, 1)[None] / 127.5) - 1


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Float ``[N, 3, H, W]`` (or ``[3, H, W]``) in ``[-1, 1]`` -> ``uint8 [N, H, W, 3]`` (or ``[H, W, 3]``)."""
    single = images.ndim == 3
    x = images[None] if single else images
    x = (x.detach().float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    arr = x.permute(0, 2, 3, 1).cpu().numpy()
    return arr[0] if single else arr


def hstack(images) -> np.ndarray:
    """Place ``uint8 [H, W, 3]`` images side by side (heights must match)."""
    return np.concatenate(list(images), axis=1)


# ----------------------------------------------------------------------------
# Atomic writing.

@contextlib.contextmanager
def atomic_path(final_path: PathLike) -> Iterator[str]:
    """Yield a temporary path beside ``final_path``; rename it into place when the block succeeds.

    The temporary name keeps the file's suffix (writers choose the format from it) and starts
    with a dot; it is removed if the block raises.
    """
    final_path = Path(final_path)
    fd, tmp = tempfile.mkstemp(dir=final_path.parent, prefix=f'.{final_path.stem}-', suffix=final_path.suffix)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, final_path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def save_png(path: PathLike, image: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format='PNG')


def save_npz(path: PathLike, **arrays: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, 'wb') as f:
            np.savez(f, **arrays)


def save_json(path: PathLike, obj) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, 'w', encoding='utf-8') as f:
            json.dump(obj, f, indent=2, sort_keys=False)
            f.write('\n')


class VideoWriter:
    """H.264 MP4 writer (imageio-ffmpeg) that appears under its final name only on ``close()``.

    Frames are ``uint8 [H, W, 3]``; odd sizes are padded by one pixel (yuv420p needs even sizes).
    Use as a context manager: an exception discards the partial file.
    """

    def __init__(self, path: PathLike, fps: float = 30, quality: Optional[float] = 8):
        import imageio.v2 as imageio  # imported here: only video outputs need ffmpeg
        self.path = Path(path)
        self._ctx = atomic_path(self.path)
        self._tmp = self._ctx.__enter__()
        self.num_frames = 0
        try:
            self._writer = imageio.get_writer(self._tmp, format='FFMPEG', mode='I', fps=fps, codec='libx264',
                                              quality=quality, pixelformat='yuv420p', macro_block_size=1,
                                              ffmpeg_log_level='error')
        except Exception:
            self._ctx.__exit__(*__import__('sys').exc_info())
            raise

    def append(self, frame: np.ndarray) -> None:
        h, w = frame.shape[:2]
        if h % 2 or w % 2:
            frame = np.pad(frame, [(0, h % 2), (0, w % 2), (0, 0)], mode='edge')
        self._writer.append_data(np.ascontiguousarray(frame))
        self.num_frames += 1

    def close(self) -> None:
        self._writer.close()
        self._ctx.__exit__(None, None, None)

    def discard(self) -> None:
        with contextlib.suppress(Exception):
            self._writer.close()
        with contextlib.suppress(BaseException):
            self._ctx.__exit__(RuntimeError, RuntimeError('discarded'), None)

    def __enter__(self) -> 'VideoWriter':
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()


# ----------------------------------------------------------------------------
# Driving sequences.

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.webp', '.tif', '.tiff')


def natural_key(name: str):
    """Sort key that orders ``frame2`` before ``frame10``."""
    import re
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r'(\d+)', name)]


def read_frame_folder(folder: PathLike, what: str = '--target_landmarks_folder') -> list:
    """All images of ``folder`` in natural sort order, as ``uint8 [H, W, 3]`` arrays."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f'{what}: not a folder: {folder}')
    files = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith('.')),
                   key=lambda p: natural_key(p.name))
    if not files:
        raise UserError(f'{what}: no images ({", ".join(IMAGE_SUFFIXES)}) in {folder}')
    return [load_image(p, what) for p in files]


def read_video(path: PathLike, what: str = '--driving') -> tuple:
    """Frames (``uint8 [H, W, 3]`` list) and frame rate of a video file."""
    import imageio.v2 as imageio
    path = Path(path)
    if not path.is_file():
        raise UserError(f'{what}: file not found: {path}')
    try:
        reader = imageio.get_reader(str(path), format='FFMPEG')
        fps = float(reader.get_meta_data().get('fps') or 30.0)
        frames = [np.asarray(frame[:, :, :3], dtype=np.uint8) for frame in reader]
        reader.close()
    except Exception as exc:
        raise UserError(f'{what}: not a readable video: {path} ({exc.__class__.__name__})') from None
    if not frames:
        raise UserError(f'{what}: the video has no frames: {path}')
    return frames, fps
