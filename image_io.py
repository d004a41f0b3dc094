"""Reading images and driving sequences, converting between arrays and tensors, and writing
outputs atomically.

Every image and video the commands read comes through here: ``read_image`` / ``load_image`` for
stills (upright by EXIF orientation, sRGB from ICC profiles, downscaled early to what the caller
needs, bad files as one-line ``UserError``), ``open_driving`` for driving sequences (a folder of
stills, a video, an animated GIF or WebP, read as a stream).

Conventions: an *image array* is ``uint8 [H, W, 3]`` RGB; an *image tensor* is float
``[N, 3, H, W]`` in ``[-1, 1]`` (the generator's range). Every writer here writes to a
temporary name in the destination folder and renames it when complete, so an interrupted
run never leaves a half-written file under a final name.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import struct
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple, Union

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from dnnlib.util import UserError, not_a_file

PathLike = Union[str, os.PathLike]
_UMASK = os.umask(0)
os.umask(_UMASK)


# ----------------------------------------------------------------------------
# Reading still images.
#
# Every image the tool reads goes through ``read_image``: decoded once (JPEGs at a reduced DCT
# scale when the caller needs less than the full size), turned upright by its EXIF orientation,
# converted to sRGB from an embedded ICC profile, flattened onto white, and downscaled with one
# Lanczos resize to no less than the caller's ``min_side``.

_ORIENTATION_TAG = 0x0112
_ORIENTATIONS = {  # EXIF orientation value -> (PIL transposition taking the stored pixels upright, words)
    1: (None, 'none'),
    2: (Image.FLIP_LEFT_RIGHT, 'mirrored left-right'),
    3: (Image.ROTATE_180, 'rotated 180 degrees'),
    4: (Image.FLIP_TOP_BOTTOM, 'mirrored top-bottom'),
    5: (Image.TRANSPOSE, 'rotated 90 degrees clockwise, then mirrored left-right'),
    6: (Image.ROTATE_270, 'rotated 90 degrees clockwise'),
    7: (Image.TRANSVERSE, 'rotated 90 degrees anticlockwise, then mirrored left-right'),
    8: (Image.ROTATE_90, 'rotated 90 degrees anticlockwise'),
}
_HEIF_BRANDS = {b'heic', b'heix', b'hevc', b'hevx', b'heim', b'heis', b'hevm', b'hevs', b'mif1', b'msf1', b'mif2'}
_AVIF_BRANDS = {b'avif', b'avis'}
_RESIZE_GAP = 3.0  # Image.resize(reducing_gap=...): a box reduction first, to >= 3x the target size
_DRAFT_GAP = 2     # JPEGs are decoded at a reduced scale to >= 2x the target size


@dataclass(frozen=True)
class ImageInfo:
    """What ``read_image`` did to one file (JSON-ready through ``as_dict``, for reports).

    Sizes are ``(width, height)``. ``orientation`` is the EXIF orientation value (1-8) that was
    honoured: 1 means the pixels were stored upright. ``colour`` says how the pixels reached sRGB.
    """
    path: str
    format: Optional[str]              # PIL's name of the file format: 'JPEG', 'PNG', 'HEIF', 'AVIF', ...
    mode: str                          # the pixel layout stored in the file: 'RGB', 'CMYK', 'I;16', 'P', ...
    original_size: Tuple[int, int]     # as stored in the file, before orientation
    decoded_size: Tuple[int, int]      # as decoded: smaller than original_size for a JPEG read at a reduced scale
    size: Tuple[int, int]              # of the returned array (upright; downscaled if min_side asked for it)
    orientation: int = 1
    orientation_applied: str = 'none'
    icc_profile: Optional[str] = None  # description of the embedded ICC profile, None when there is none
    colour: str = 'sRGB (untagged)'

    def as_dict(self) -> dict:
        d = asdict(self)
        for key in ('original_size', 'decoded_size', 'size'):
            d[key] = list(d[key])
        return d


def load_image(path: PathLike, what: str = 'image', min_side: Optional[int] = None) -> np.ndarray:
    """``read_image`` without the ``ImageInfo``: ``uint8 [H, W, 3]`` RGB, upright, sRGB."""
    return read_image(path, what, min_side)[0]


def read_image(path: PathLike, what: str = 'image', min_side: Optional[int] = None) -> Tuple[np.ndarray, ImageInfo]:
    """Read one still image as ``uint8 [H, W, 3]`` sRGB, upright, with what was done to it.

    - EXIF orientation (all eight values) is applied, so the array is the picture as a viewer shows it.
    - An embedded ICC profile (Display P3, Adobe RGB, a CMYK press profile, ...) is converted to
      sRGB; untagged pixels are taken as sRGB.
    - Grayscale, palette, CMYK, 16-bit and float images become 8-bit RGB (16-bit: the full range
      scaled to 0-255); alpha (RGBA, LA, palette transparency) is composited onto white.
    - ``min_side``: the caller needs no more than this many pixels on the shorter side. Larger
      images are decoded at a reduced scale where the format allows (JPEG: 1/2, 1/4 or 1/8,
      keeping at least twice ``min_side``) and resized with one Lanczos filter so that the
      shorter side is exactly ``min_side``; every step after the decoder works on the reduced
      image, and nothing is converted to float. Smaller images are returned at their own size
      (never enlarged here).
    - HEIC/HEIF (and AVIF where Pillow itself cannot read it) are read through ``pillow-heif``
      when it is installed.

    Raises ``UserError`` (one line naming ``what`` and the file) for a missing, empty, zero-sized,
    truncated or unreadable file, a decompression bomb (more pixels than
    ``PIL.Image.MAX_IMAGE_PIXELS``), or a HEIC file without ``pillow-heif``.
    """
    path = Path(path)
    if min_side is not None and int(min_side) < 1:
        raise ValueError(f'min_side must be at least 1, got {min_side}')
    with _open_image(path, what) as img:
        fmt, stored_mode, opened_size = img.format, img.mode, tuple(img.size)
        orientation = _orientation(img)
        if min_side is not None and fmt == 'JPEG':
            # libjpeg's DCT scaling (1/2, 1/4, 1/8) to >= twice the size needed, so the Lanczos
            # resize after it still does the anti-aliasing (as PIL's thumbnail does).
            img.draft(None, _scaled_size(img.size, _DRAFT_GAP * min_side))
        _load(img, path, what)
        decoded_size = tuple(img.size)
        to_apply = _orientation_left(img, orientation)
        by_decoder = orientation != 1 and to_apply == 1
        # A decoder that turns the pixels upright itself (pillow-heif; Pillow's TIFF reader) reports the upright size.
        original_size = _upright_size(opened_size, orientation) if by_decoder else opened_size
        arr, colour, icc_name = _finish(img, to_apply, img.info.get('icc_profile'), min_side)
    applied = _ORIENTATIONS[orientation][1] + (' (by the decoder)' if by_decoder and orientation != 1 else '')
    info = ImageInfo(path=str(path), format=fmt, mode=stored_mode, original_size=original_size,
                     decoded_size=decoded_size, size=(arr.shape[1], arr.shape[0]), orientation=orientation,
                     orientation_applied=applied, icc_profile=icc_name, colour=colour)
    return arr, info


def _scaled_size(size: Tuple[int, int], min_side: int) -> Tuple[int, int]:
    """``(width, height)`` scaled so that the shorter side is ``min_side`` (never enlarged)."""
    w, h = size
    short = min(w, h)
    if short <= min_side:
        return w, h
    scale = min_side / short
    return (min_side, max(1, round(h * scale))) if w <= h else (max(1, round(w * scale)), min_side)


@contextlib.contextmanager
def _open_image(path: Path, what: str) -> Iterator[Image.Image]:
    """``Image.open`` with every failure turned into a one-line ``UserError``; the file is closed after."""
    if not path.is_file():
        raise UserError(f'{what}: {not_a_file(path, "an image file")}')
    try:
        nbytes = path.stat().st_size
    except OSError as exc:
        raise UserError(f'{what}: cannot read {path} ({exc.strerror or exc.__class__.__name__})') from None
    if nbytes == 0:
        raise UserError(f'{what}: empty file (0 bytes): {path}')
    _prepare_opener(path, what)
    try:
        with _pil_warnings():
            img = Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UserError(_bomb_message(what, path, exc)) from None
    except UnidentifiedImageError:
        header = _header_size(path)
        if header is not None and 0 in header:
            raise UserError(f'{what}: the image has no pixels '
                            f'({header[0]}x{header[1]} in its header): {path}') from None
        raise UserError(f'{what}: not a readable image: {path} (unknown or damaged format)') from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise UserError(f'{what}: not a readable image: {path} ({_one_line(exc)})') from None
    try:
        if 0 in img.size:
            raise UserError(f'{what}: the image has no pixels ({img.size[0]}x{img.size[1]}): {path}')
        yield img
    finally:
        img.close()


def _load(img: Image.Image, path: Path, what: str) -> None:
    """Decode the pixels; a truncated or damaged file raises ``UserError``."""
    try:
        with _pil_warnings():
            img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UserError(_bomb_message(what, path, exc)) from None
    except (OSError, ValueError, SyntaxError, EOFError, struct.error) as exc:
        raise UserError(f'{what}: truncated or damaged image file: {path} ({_one_line(exc)})') from None


def _finish(img: Image.Image, orientation: Optional[int], icc: Optional[bytes],
            min_side: Optional[int]) -> Tuple[np.ndarray, str, Optional[str]]:
    """Decoded PIL image -> (``uint8 [H, W, 3]`` sRGB array, colour words, ICC description).

    The order keeps memory low: the pixels are first made resizable (8-bit, palette expanded),
    downscaled to ``min_side``, and only then turned upright, flattened and colour-converted, so
    no step after the decoder works on a full-size copy. (The transposition and the resize commute.)
    """
    img = _resizable(img)
    if min_side is not None:
        size = _scaled_size(img.size, min_side)
        if size != img.size:
            img = img.resize(size, Image.LANCZOS, reducing_gap=_RESIZE_GAP)
    if orientation is not None and orientation != 1:
        img = img.transpose(_ORIENTATIONS[orientation][0])
    img = _flatten_alpha(img)
    img, colour, icc_name = _to_srgb(img, icc)
    arr = np.asarray(img.convert('RGB') if img.mode != 'RGB' else img, dtype=np.uint8)
    return arr, colour, icc_name


def _resizable(img: Image.Image) -> Image.Image:
    """An image in a mode that Lanczos resizing and ICC conversion handle: 8-bit L/LA/RGB/RGBA/CMYK."""
    mode = img.mode
    if mode in ('I', 'I;16', 'I;16B', 'I;16L', 'I;16N', 'F'):
        arr = np.asarray(img)
        if mode.startswith('I;16'):
            top = 65535.0                        # 16-bit: the full range, however dark the image
        elif mode == 'I':
            top = 65535.0 if arr.max() > 255 else 255.0  # PIL opens some 16-bit PNGs as 32-bit 'I'
        else:
            top = 1.0 if arr.max() <= 1 else 255.0
        scaled = arr.astype(np.float32)
        scaled *= np.float32(255.0 / top)
        scaled += np.float32(0.5)
        return Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8), mode='L')
    if mode in ('P', 'PA'):
        return img.convert('RGBA')
    if mode == '1':
        return img.convert('L')
    if mode in ('L', 'LA', 'RGB', 'RGBA', 'CMYK', 'La', 'RGBa'):
        return img
    return img.convert('RGB')                    # YCbCr, LAB, HSV, RGBX, ...


def _flatten_alpha(img: Image.Image) -> Image.Image:
    """Composite an image with alpha onto white; others unchanged."""
    if img.mode not in ('RGBA', 'LA', 'La', 'RGBa'):
        return img
    gray = img.mode in ('LA', 'La')
    rgba = img.convert('RGBA')
    flat = Image.alpha_composite(Image.new('RGBA', rgba.size, (255, 255, 255, 255)), rgba)
    return flat.convert('L' if gray else 'RGB')


# ICC profiles: the transforms are cached (a folder of driving frames from one camera shares one).
_SRGB_PROFILE = None
_TRANSFORMS: dict = {}


def _to_srgb(img: Image.Image, icc: Optional[bytes]) -> Tuple[Image.Image, str, Optional[str]]:
    """Convert ``img`` (L, RGB or CMYK) from its embedded ICC profile to sRGB.

    Returns (image, colour words, profile description). A profile that cannot be read or does
    not fit the pixels is ignored (the pixels are then taken as sRGB), never an error.
    """
    global _SRGB_PROFILE
    if not icc:
        if img.mode == 'CMYK':
            return img.convert('RGB'), 'CMYK (untagged) converted to RGB', None
        return img, 'sRGB (untagged)', None
    from PIL import ImageCms
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        name = (ImageCms.getProfileDescription(profile) or '').strip() or 'unnamed profile'
        space = profile.profile.xcolor_space.strip()
    except Exception:  # a broken profile must not stop a run: PyCMSError, OSError, ...
        fallback = img.convert('RGB') if img.mode == 'CMYK' else img
        return fallback, 'unreadable ICC profile ignored (taken as sRGB)', 'unreadable'
    expected = {'L': 'GRAY', 'RGB': 'RGB', 'CMYK': 'CMYK'}.get(img.mode)
    if space != expected:
        fallback = img.convert('RGB') if img.mode == 'CMYK' else img
        return fallback, f'ICC profile for {space} ignored on {img.mode} pixels (taken as sRGB)', name
    if img.mode == 'RGB' and 'srgb' in name.lower():
        return img, 'sRGB (tagged)', name
    try:
        if _SRGB_PROFILE is None:
            _SRGB_PROFILE = ImageCms.ImageCmsProfile(ImageCms.createProfile('sRGB'))
        key = (hashlib.sha256(icc).digest(), img.mode)
        transform = _TRANSFORMS.get(key)
        if transform is None:
            transform = ImageCms.buildTransform(profile, _SRGB_PROFILE, img.mode, 'RGB',
                                                renderingIntent=ImageCms.Intent.PERCEPTUAL
                                                if hasattr(ImageCms, 'Intent') else 0)
            if len(_TRANSFORMS) > 16:
                _TRANSFORMS.clear()
            _TRANSFORMS[key] = transform
        converted = ImageCms.applyTransform(img, transform)
    except Exception:
        fallback = img.convert('RGB') if img.mode == 'CMYK' else img
        return fallback, f'ICC profile {name!r} could not be applied (taken as sRGB)', name
    return converted, f'converted from {name} to sRGB', name


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation (1-8) of an opened image; a missing, damaged or out-of-range tag counts as 1.

    pillow-heif keeps a HEIF file's value in ``info['original_orientation']`` (it applies it itself).
    """
    original = img.info.get('original_orientation')
    if isinstance(original, int) and original in _ORIENTATIONS:
        return original
    value = _exif_orientation(img)
    return value if value in _ORIENTATIONS else 1


def _exif_orientation(img: Image.Image) -> Optional[int]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')      # PIL warns about damaged EXIF blocks, common from web tools
            value = img.getexif().get(_ORIENTATION_TAG)
        return None if value is None else int(value)
    except Exception:
        return None


def _orientation_left(img: Image.Image, orientation: int) -> int:
    """The orientation still to apply after decoding: 1 when the decoder has already applied it.

    Decoders that turn the pixels upright (pillow-heif, Pillow's TIFF reader since 11) remove the tag.
    """
    if orientation == 1:
        return 1
    return orientation if _exif_orientation(img) == orientation else 1


def _prepare_opener(path: Path, what: str) -> None:
    """Register pillow-heif's opener when the file is HEIC/HEIF (or AVIF that Pillow cannot read).

    Done lazily, so pillow-heif is imported only when such a file is read. Without it: an error
    that says how to install it.
    """
    try:
        with open(path, 'rb') as f:
            head = f.read(64)
    except OSError as exc:
        raise UserError(f'{what}: cannot read {path} ({exc.strerror or exc.__class__.__name__})') from None
    if len(head) < 12 or head[4:8] != b'ftyp':
        return
    brands = {head[8:12]} | {head[i:i + 4] for i in range(16, min(len(head), int.from_bytes(head[:4], 'big')) - 3, 4)}
    if not brands & (_AVIF_BRANDS | _HEIF_BRANDS):
        return                                   # an MP4/MOV container, say: PIL will refuse it
    Image.init()                                 # every built-in plugin registered (Pillow's own AVIF)
    if brands & _AVIF_BRANDS:
        if 'AVIF' in Image.ID or _register_heif():
            return
        raise UserError(f'{what}: {path} is an AVIF image; reading it needs a Pillow with AVIF support '
                        f'(pip install -U pillow) or pillow-heif (pip install pillow-heif)')
    if brands & _HEIF_BRANDS:
        if 'HEIF' in Image.ID or _register_heif():
            return
        raise UserError(f'{what}: {path} is a HEIC/HEIF image; reading it needs pillow-heif: pip install pillow-heif')


def _register_heif() -> bool:
    """Import pillow-heif and register its Pillow opener; False when it is not installed."""
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


def _header_size(path: Path) -> Optional[Tuple[int, int]]:
    """(width, height) read from a PNG, GIF or BMP header, for a clearer message when PIL refuses the file."""
    try:
        with open(path, 'rb') as f:
            head = f.read(32)
    except OSError:
        return None
    if head[:8] == b'\x89PNG\r\n\x1a\n' and head[12:16] == b'IHDR' and len(head) >= 24:
        return struct.unpack('>II', head[16:24])
    if head[:6] in (b'GIF87a', b'GIF89a') and len(head) >= 10:
        return struct.unpack('<HH', head[6:10])
    if head[:2] == b'BM' and len(head) >= 26:
        w, h = struct.unpack('<ii', head[18:26])
        return abs(w), abs(h)
    return None


@contextlib.contextmanager
def _pil_warnings() -> Iterator[None]:
    """PIL's decompression-bomb warning raised as an error; its damaged-EXIF warnings silenced
    (the orientation then counts as 1; a web tool's broken EXIF block is no reason to stop)."""
    with warnings.catch_warnings():
        warnings.simplefilter('error', Image.DecompressionBombWarning)
        warnings.filterwarnings('ignore', message=r'.*[Cc]orrupt EXIF', category=UserWarning)
        yield


def _bomb_message(what: str, path: Path, exc: BaseException) -> str:
    import re
    limit = Image.MAX_IMAGE_PIXELS
    found = re.search(r'\((\d+) pixels\)', str(exc))
    size = f'{int(found.group(1)) / 1e6:.0f} megapixels' if found else 'too many pixels'
    lim = f'{limit / 1e6:.0f} megapixels' if limit else 'the limit'
    return (f'{what}: image too large: {size}, more than {lim} (a guard against decompression bombs; '
            f'downscale it first): {path}')


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else exc.__class__.__name__


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

def check_rgb_array(image, what: str = 'image', resolution: Optional[int] = None) -> np.ndarray:
    """``image`` if it is a numpy ``uint8 [H, W, 3]`` array (``[R, R, 3]`` given ``resolution``), else a
    ``ValueError`` that says what it is and how to get such an array (the API's images)."""
    hint = 'read files with image_io.load_image, and frame them with projector.prepare_image'
    if not isinstance(image, np.ndarray):
        kind = f'{type(image).__module__}.{type(image).__name__}'
        raise ValueError(f'{what}: expected a numpy uint8 array [H, W, 3], got a {kind} ({hint}; '
                         f'a PIL image: projector.prepare_image takes it)')
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f'{what}: expected a numpy uint8 array [H, W, 3], got {image.dtype} {list(image.shape)} '
                         f'({hint})')
    if resolution is not None and image.shape[:2] != (resolution, resolution):
        raise ValueError(f'{what}: expected {resolution}x{resolution} (the generator\'s resolution), got '
                         f'{image.shape[1]}x{image.shape[0]} (projector.prepare_image(image, {resolution}))')
    return image


def to_tensor(image: np.ndarray, device: Union[str, torch.device] = 'cpu') -> torch.Tensor:
    """``uint8 [H, W, 3]`` -> float32 ``[1, 3, H, W]`` in ``[-1, 1]``."""
    check_rgb_array(image)
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


def caption(image: np.ndarray, text: str) -> np.ndarray:
    """``uint8 [H, W, 3]`` -> ``uint8 [H + h, W, 3]``: the image with ``text`` on a black strip below it.

    The strip's height ``h`` (and the font size) scales with the width, so the text is readable on
    a 64 px test image and on a 1024 px one alike.
    """
    from PIL import ImageDraw, ImageFont
    h, w = image.shape[:2]
    size = max(8, w // 14)
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        font = ImageFont.load_default()
    strip = Image.new('RGB', (w, size + size // 2 + 2), (0, 0, 0))
    ImageDraw.Draw(strip).text((max(1, w // 40), size // 4), text, fill=(255, 255, 255), font=font)
    return np.concatenate([np.asarray(image, dtype=np.uint8), np.asarray(strip, dtype=np.uint8)], axis=0)


# ----------------------------------------------------------------------------
# Atomic writing.

@contextlib.contextmanager
def atomic_path(final_path: PathLike) -> Iterator[str]:
    """Yield a temporary path beside ``final_path``; rename it into place when the block succeeds.

    The temporary name keeps the file's suffix (writers choose the format from it) and starts
    with a dot; it is removed if the block raises. A failed write (a full disk, a folder in the
    way, no permission) is a one-line ``UserError`` naming ``final_path``.
    """
    final_path = Path(final_path)
    try:
        fd, tmp = tempfile.mkstemp(dir=final_path.parent, prefix=f'.{final_path.stem}-', suffix=final_path.suffix)
    except OSError as exc:
        raise UserError(f'cannot write {final_path} ({exc.strerror or exc.__class__.__name__})') from None
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, final_path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if isinstance(exc, OSError):
            raise UserError(f'cannot write {final_path} ({exc.strerror or _one_line(exc)})') from None
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
# Driving sequences: a folder of stills, a video file, or an animated GIF / WebP.

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.webp', '.tif', '.tiff', '.gif', '.heic', '.heif', '.avif')
VIDEO_SUFFIXES = ('.mp4', '.mov', '.m4v', '.webm', '.mkv', '.avi', '.mpg', '.mpeg', '.m1v', '.m2v', '.ts', '.mts',
                  '.m2ts', '.3gp', '.flv', '.wmv', '.ogv')
_MIN_FRAME_MS = 20  # GIF/WebP frame delays below this play at 100 ms in browsers; so here too


def natural_key(name: str):
    """Sort key that orders ``frame2`` before ``frame10``."""
    import re
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r'(\d+)', name)]


def list_frame_files(folder: PathLike, what: str = '--target_landmarks_folder') -> List[Path]:
    """The image files of ``folder`` (``IMAGE_SUFFIXES``, not hidden) in natural sort order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f'{what}: not a folder: {folder}')
    files = sorted((p for p in folder.iterdir()
                    if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith('.')),
                   key=lambda p: natural_key(p.name))
    if not files:
        raise UserError(f'{what}: no images ({", ".join(IMAGE_SUFFIXES)}) in {folder}')
    return files


def content_digest(path: PathLike) -> str:
    """sha256 hex digest of a file's bytes, or of a frame folder (for resume fingerprints).

    A folder: for each image file in natural order, its name then the sha256 of its bytes. Read
    in chunks, so a large video is never held in memory.
    """
    path = Path(path)
    if path.is_dir():
        h = hashlib.sha256()
        for f in list_frame_files(path, str(path)):
            h.update(f.name.encode())
            h.update(_file_sha256(f))
        return h.hexdigest()
    return _file_sha256(path).hex()


def file_identity(path: Optional[str]) -> Optional[str]:
    """How a resumed run recognizes an input: a URL as given; a local file or frame folder by its
    content (``content_digest``, read in chunks), whatever it is named."""
    if path is None:
        return None
    import dnnlib.util
    if dnnlib.util.is_url(str(path), allow_file_urls=False):
        return str(path)
    if str(path).startswith('file://'):
        path = str(path)[len('file://'):]
    p = Path(path)
    if not p.exists():
        return str(path)
    return 'sha256:' + content_digest(p)


# sha256 digests by (path, modification time, size): a --pairs run names the same look in many rows.
_DIGESTS: Dict[tuple, bytes] = {}


def _file_sha256(path: Path) -> bytes:
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(path, 'rb') as f:
            for chunk in iter(lambda: f.read(1 << 20), b''):
                h.update(chunk)
        _DIGESTS[key] = h.digest()
    return _DIGESTS[key]


@dataclass
class DrivingInput:
    """A driving sequence opened by ``open_driving``; its frames are read as a stream.

    ``frames()`` (or iterating the object) yields ``uint8 [H, W, 3]`` RGB frames, upright, one at
    a time; each call starts again from the first frame. ``fps`` is the file's own frame rate
    (``None`` for a folder of stills, which carries no timing); ``num_frames`` is the count
    known before reading (the container's count for a video; ``None`` when unknown).
    ``rotation`` is the clockwise rotation in degrees applied to a video's frames from its
    display metadata (phone clips); ``variable_timing`` says that an animation's frame delays
    differ, or that a video's frames are not evenly spaced (a phone's variable frame rate): ``fps``
    is then their average, and every stored frame is read once (none repeated to fill a constant rate).
    """
    path: Path
    kind: str                                  # 'folder', 'video' or 'animation'
    fps: Optional[float]
    num_frames: Optional[int]
    size: Optional[Tuple[int, int]] = None     # (width, height) of the frames, when known before reading
    rotation: int = 0
    variable_timing: bool = False
    warning: Optional[str] = None              # e.g. fewer frames than the header's duration promises
    what: str = '--driving'
    min_side: Optional[int] = None
    _files: List[Path] = field(default_factory=list, repr=False)

    def frames(self) -> Iterator[np.ndarray]:
        if self.kind == 'folder':
            return (load_image(p, self.what, self.min_side) for p in self._files)
        if self.kind == 'animation':
            return _animation_frames(self.path, self.what, self.min_side)
        return _video_frames(self)

    __iter__ = frames

    def digest(self) -> str:
        """sha256 of the file's bytes, or of the folder's names and bytes (``content_digest``)."""
        return content_digest(self.path)

    def info(self) -> dict:
        """JSON-ready description, for reports."""
        out = dict(path=str(self.path), kind=self.kind, fps=self.fps, num_frames=self.num_frames,
                   size=list(self.size) if self.size else None, rotation=self.rotation,
                   variable_timing=self.variable_timing)
        if self.warning:
            out['warning'] = self.warning
        return out


def open_driving(path: PathLike, what: str = '--driving', min_side: Optional[int] = None) -> DrivingInput:
    """Open a folder of stills (natural order), a video (mp4/mov/webm/mkv, ...), or an animated GIF/WebP.

    Only what the count and timing need is read here (a video's stream description and packet
    count; an animation's frames, decoded once for their delays and not kept), so a bad input
    fails early with a ``UserError`` naming ``what``. ``min_side`` as in
    ``read_image``: frames whose shorter side is larger are downscaled to it (one Lanczos resize).
    """
    path = Path(path)
    if path.is_dir():
        files = list_frame_files(path, what)
        return DrivingInput(path=path, kind='folder', fps=None, num_frames=len(files), what=what,
                            min_side=min_side, _files=files)
    if not path.is_file():
        raise UserError(f'{what}: file not found: {path}')
    if path.stat().st_size == 0:
        raise UserError(f'{what}: empty file (0 bytes): {path}')
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        animation = _open_animation(path, what, min_side)
        if animation is not None:
            return animation
    return _open_video(path, what, min_side)


def read_frame_folder(folder: PathLike, what: str = '--target_landmarks_folder') -> list:
    """All images of ``folder`` in natural sort order, as ``uint8 [H, W, 3]`` arrays (upright, sRGB)."""
    return [load_image(p, what) for p in list_frame_files(folder, what)]


def read_video(path: PathLike, what: str = '--driving') -> tuple:
    """Frames (``uint8 [H, W, 3]`` list) and frame rate of a video file or an animated GIF/WebP.

    Holds every frame in memory: ``open_driving`` streams them.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f'{what}: file not found: {path}')
    driving = open_driving(path, what)
    frames = list(driving.frames())
    if not frames:
        raise UserError(f'{what}: the video has no frames: {path}')
    return frames, driving.fps


# Animated GIF / WebP (and APNG) through PIL.

def _open_animation(path: Path, what: str, min_side: Optional[int]) -> Optional[DrivingInput]:
    """A ``DrivingInput`` for an animated image; ``None`` when PIL does not know the file (a video?)."""
    try:
        with _pil_warnings():
            img = Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UserError(_bomb_message(what, path, exc)) from None
    except Exception:
        return None
    with img:
        n = getattr(img, 'n_frames', 1)
        if not getattr(img, 'is_animated', False) or n < 2:
            raise UserError(f'{what}: {path} is a single still image, not a video, an animation or a folder of frames')
        delays = []
        try:
            for i in range(n):
                img.seek(i)
                img.load()                       # WebP sets a frame's duration when it is decoded
                delays.append(_frame_delay_ms(img.info.get('duration')))
        except (OSError, ValueError, EOFError, SyntaxError) as exc:
            raise UserError(f'{what}: truncated or damaged animation: {path} ({_one_line(exc)})') from None
        size = _upright_size(img.size, _orientation_left(img, _orientation(img)))
        size = _scaled_size(size, min_side) if min_side else size
    fps = 1000.0 / (sum(delays) / len(delays))
    return DrivingInput(path=path, kind='animation', fps=fps, num_frames=n, size=size,
                        variable_timing=len(set(delays)) > 1, what=what, min_side=min_side)


def _frame_delay_ms(duration) -> float:
    try:
        ms = float(duration)
    except (TypeError, ValueError):
        return 100.0
    return 100.0 if not math.isfinite(ms) or ms < _MIN_FRAME_MS else ms


def _upright_size(size: Tuple[int, int], orientation: int) -> Tuple[int, int]:
    return (size[1], size[0]) if orientation in (5, 6, 7, 8) else tuple(size)


def _animation_frames(path: Path, what: str, min_side: Optional[int]) -> Iterator[np.ndarray]:
    with _open_image(path, what) as img:
        orientation = _orientation(img)
        for i in range(getattr(img, 'n_frames', 1)):
            try:
                img.seek(i)
            except (OSError, ValueError, EOFError, SyntaxError) as exc:
                raise UserError(f'{what}: truncated or damaged animation: {path} ({_one_line(exc)})') from None
            _load(img, path, what)
            frame = img.copy()   # the decoded frame (GIF: already composed with the frames before it)
            yield _finish(frame, _orientation_left(img, orientation), img.info.get('icc_profile'), min_side)[0]


# Video files through imageio-ffmpeg.

def _ffmpeg_input(path: Path) -> str:
    """``path`` as ffmpeg must be given it: absolute, since ffmpeg reads ``take:1.mp4`` as the
    protocol ``take`` (and ``Path`` drops a ``./`` written before it)."""
    return os.path.abspath(str(path))


def _ffmpeg_header(path: Path) -> str:
    """What ``ffmpeg -i FILE`` says about the file (its stream descriptions), as text."""
    import subprocess
    import imageio_ffmpeg
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), '-hide_banner', '-nostdin', '-i', _ffmpeg_input(path)]
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
    return proc.stderr.decode('utf-8', errors='replace')


# What ffmpeg says when a file ends early or is damaged where it decodes (not its benign notes).
_DAMAGE = ('partial file', 'invalid data found', 'decoding error', 'truncat', 'corrupt')


def _scan_video(path: Path) -> Tuple[Optional[int], Optional[float], Optional[str]]:
    """Decode the first video stream to nowhere: the frames that decode, the seconds they span (to
    the end of the last frame: the video's own length, whatever an audio stream's), and the first
    damage ffmpeg reports on the way (a file cut short), or None for each that it does not say."""
    import re
    import subprocess
    import imageio_ffmpeg
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), '-hide_banner', '-nostdin', '-i', _ffmpeg_input(path),
           '-map', '0:v:0', '-vf', 'null', '-f', 'null', '-']
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    text = proc.stderr.decode('utf-8', errors='replace')
    frames = seconds = problem = None
    for line in text.replace('\r', '\n').splitlines():
        progress = re.search(r'frame=\s*(\d+).*?time=\s*(\d+):(\d+):(\d+(?:\.\d+)?)', line)
        if progress:
            frames = int(progress.group(1))
            seconds = int(progress.group(2)) * 3600 + int(progress.group(3)) * 60 + float(progress.group(4))
        elif problem is None and any(word in line.lower() for word in _DAMAGE):
            problem = line.split('] ')[-1].strip()
    return frames or None, seconds or None, problem


def _parse_video_header(text: str) -> Optional[dict]:
    """fps, stored (width, height) and clockwise display rotation of the first video stream, or None."""
    import re
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if re.match(r'\s*Stream #\S+.*: Video: ', line)), None)
    if start is None:
        return None
    line = lines[start]
    size = re.search(r'[ ,](\d+)x(\d+)[ ,\[]', line + ' ')
    fps = re.search(r'([\d.]+)(k?) fps', line) or re.search(r'([\d.]+)(k?) tbr', line)
    tbr = re.search(r'([\d.]+)(k?) tbr', line)
    # The stream's own block: its metadata and side data, up to the next stream.
    block = [line]
    for other in lines[start + 1:]:
        if re.match(r'\s*Stream #', other):
            break
        block.append(other)
    block_text = '\n'.join(block)
    rotation = 0.0
    matrix = re.search(r'rotation of (-?[\d.]+) degrees', block_text, re.IGNORECASE)
    legacy = re.search(r'^\s*rotate\s*:\s*(-?[\d.]+)', block_text, re.MULTILINE)
    if matrix:
        rotation = -float(matrix.group(1))   # the display matrix angle is anticlockwise
    elif legacy:
        rotation = float(legacy.group(1))    # the old 'rotate' tag is clockwise
    def rate(match) -> Optional[float]:
        value = float(match.group(1)) * (1000 if match.group(2) else 1) if match else None
        return value if value and math.isfinite(value) and value > 0 else None

    return dict(size=(int(size.group(1)), int(size.group(2))) if size else None, fps=rate(fps),
                variable_timing=_variable_rate(rate(fps), rate(tbr)),
                rotation=int(round(rotation / 90.0)) * 90 % 360)


def _variable_rate(average: Optional[float], base: Optional[float]) -> bool:
    """Whether a stream's average frame rate (ffmpeg's ``fps``) shows frames that are not evenly
    spaced on its base rate (``tbr``): a phone's or a screen recorder's variable frame rate. A base
    rate that is a whole multiple of the average (interlaced material) is not."""
    if not average or not base:
        return False
    ratio = base / average
    return abs(ratio - round(ratio)) > 0.005 * ratio or round(ratio) == 0


def _container_seconds(text: str) -> Optional[float]:
    """The ``Duration: HH:MM:SS.ss`` ffmpeg reads from a file's header (None when it gives none)."""
    import re
    match = re.search(r'Duration: (\d+):(\d+):(\d+(?:\.\d+)?)', text)
    if not match:
        return None
    seconds = int(match.group(1)) * 3600 + int(match.group(2)) * 60 + float(match.group(3))
    return seconds if seconds > 0 else None


def _missing_frames_warning(num_frames: Optional[int], fps: Optional[float], seconds: Optional[float],
                            problem: Optional[str] = None) -> Optional[str]:
    """A note when ffmpeg reports damage while decoding (``problem``) and fewer frames decode than
    the header's duration promises: a file cut short (an interrupted copy or download) still plays
    its first part, so this is said, not refused. Without damage, a shorter video stream is not
    one (an audio stream that runs longer sets the file's duration)."""
    if not num_frames or not problem:
        return None
    promised = seconds * fps if fps and seconds else None
    if promised is not None and num_frames >= 0.9 * promised - 1:
        return None
    said = (f'though the header promises about {promised:.0f} ({seconds:.2f} s at {fps:g} fps)'
            if promised is not None else f'then ffmpeg reports: {problem}')
    return f'only {num_frames} frames can be read, {said}: a truncated or damaged file? The animation uses the {num_frames}'


def _average_rate(num_frames: Optional[int], seconds: Optional[float], header_fps: Optional[float],
                  header_variable: bool) -> Tuple[Optional[float], bool]:
    """The frame rate and whether the timing is variable: the header's, unless the frames that
    decode span another length than that rate gives them (a Matroska/WebM header states a
    nominal rate, not the average of a variable one): then their average."""
    if num_frames and seconds and num_frames > 1:
        average = num_frames / seconds
        if not header_fps or abs(average / header_fps - 1) > 0.02:
            return average, True
    return header_fps, header_variable


def _open_video(path: Path, what: str, min_side: Optional[int]) -> DrivingInput:
    try:
        text = _ffmpeg_header(path)
        header = _parse_video_header(text)
    except Exception as exc:  # ffmpeg missing or failing
        raise UserError(f'{what}: not a readable video: {path} ({exc.__class__.__name__})') from None
    if header is None:
        raise UserError(f'{what}: not a readable video or animation: {path}')
    size = header['size']
    if size is not None and header['rotation'] in (90, 270):
        size = (size[1], size[0])                # ffmpeg turns the frames upright (autorotate)
    if size is not None and min_side:
        size = _scaled_size(size, min_side)
    try:
        num_frames, seconds, problem = _scan_video(path)
    except Exception:  # noqa: BLE001 - the count is a nicety; reading the frames says what is wrong
        num_frames = seconds = problem = None
    fps, variable = _average_rate(num_frames, seconds, header['fps'], header['variable_timing'])
    return DrivingInput(path=path, kind='video', fps=fps or 30.0, num_frames=num_frames, size=size,
                        rotation=header['rotation'], variable_timing=variable,
                        warning=_missing_frames_warning(num_frames, header['fps'], _container_seconds(text), problem),
                        what=what, min_side=min_side)


def _passthrough_params() -> List[str]:
    """ffmpeg output options that pass every decoded frame through once: without them ffmpeg fills a
    variable-frame-rate stream up to a constant rate with repeated frames (and drops others)."""
    import imageio_ffmpeg
    try:
        major = int(str(imageio_ffmpeg.get_ffmpeg_version()).lstrip('n').split('.')[0])
    except (ValueError, IndexError, RuntimeError, OSError):
        major = 5
    return ['-fps_mode', 'passthrough'] if major >= 5 else ['-vsync', 'passthrough']


@contextlib.contextmanager
def _quiet_imageio_ffmpeg() -> Iterator[None]:
    """imageio-ffmpeg logs a warning when frames come out rotated (a size differing from the stream's)."""
    import logging
    logger = logging.getLogger('imageio_ffmpeg')
    before = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(before)


def _video_frames(driving: DrivingInput) -> Iterator[np.ndarray]:
    import imageio_ffmpeg
    path, what = driving.path, driving.what
    output_params = _passthrough_params()
    if driving.min_side and driving.size is not None:
        output_params += ['-vf', f'scale={driving.size[0]}:{driving.size[1]}:flags=lanczos']
    try:
        reader = imageio_ffmpeg.read_frames(_ffmpeg_input(path), pix_fmt='rgb24', output_params=output_params)
        with _quiet_imageio_ffmpeg():
            meta = next(reader)
    except Exception as exc:
        raise UserError(f'{what}: not a readable video: {path} ({_one_line(exc)})') from None
    w, h = meta['size']
    count = 0
    try:
        while True:
            try:
                data = next(reader)
            except StopIteration:
                break
            except Exception as exc:
                raise UserError(f'{what}: damaged video: {path} ({_one_line(exc)})') from None
            frame = np.frombuffer(data, dtype=np.uint8)
            if frame.size != w * h * 3:
                break
            count += 1
            yield frame.reshape(h, w, 3).copy()
    finally:
        reader.close()
    if count == 0:
        raise UserError(f'{what}: the video has no frames: {path}')
