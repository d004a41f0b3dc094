"""Real photos and clips: orientation, size, formats, colour, bad files, driving sequences.

Every input is a small file generated here (PIL, numpy, the bundled ffmpeg), so the module runs
in seconds and downloads nothing.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, features

import image_io
import projector
from cli_helpers import assert_nothing_written, assert_one_error_line, invoke, with_option
from dnnlib.util import UserError

pytestmark = pytest.mark.usefixtures('one_thread')

RED, BLUE, GREY = (230, 30, 30), (30, 30, 230), (128, 128, 128)


# ----------------------------------------------------------------------------
# Helpers.

def _upright(h=24, w=40, marker=8) -> np.ndarray:
    """Grey ``uint8 [h, w, 3]``: a red square in the top-left corner, a blue one in the top-right."""
    img = np.full((h, w, 3), GREY, np.uint8)
    img[:marker, :marker] = RED
    img[:marker, -marker:] = BLUE
    return img


def _stored_for(upright: np.ndarray, orientation: int) -> np.ndarray:
    """The pixels a camera stores for ``upright`` with EXIF ``orientation``.

    From the tag's definition (where the stored 0th row and 0th column lie in the picture):
    1 top/left, 2 top/right, 3 bottom/right, 4 bottom/left, 5 left/top, 6 right/top,
    7 right/bottom, 8 left/bottom.
    """
    u = upright
    return {
        1: u,
        2: u[:, ::-1],
        3: u[::-1, ::-1],
        4: u[::-1, :],
        5: u.transpose(1, 0, 2),
        6: u[:, ::-1].transpose(1, 0, 2),
        7: u[::-1, ::-1].transpose(1, 0, 2),
        8: u[::-1, :].transpose(1, 0, 2),
    }[orientation]


def _save_with_orientation(path: Path, pixels: np.ndarray, orientation: int, **kwargs) -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(np.ascontiguousarray(pixels)).save(path, exif=exif.tobytes(), **kwargs)
    return path


def _assert_markers(arr: np.ndarray, h=24, w=40, m=8, tol=40):
    """Red top-left, blue top-right, grey below: the picture is upright and not mirrored."""
    assert arr.shape == (h, w, 3), arr.shape
    corners = dict(top_left=arr[1:m - 1, 1:m - 1], top_right=arr[1:m - 1, -m + 1:-1],
                   bottom_left=arr[-m + 1:-1, 1:m - 1], bottom_right=arr[-m + 1:-1, -m + 1:-1])
    mean = {k: v.reshape(-1, 3).mean(0) for k, v in corners.items()}
    for name, want in [('top_left', RED), ('top_right', BLUE), ('bottom_left', GREY), ('bottom_right', GREY)]:
        assert np.abs(mean[name] - want).max() < tol, (name, mean[name])


def _png_bytes(size=(8, 8), colour=(10, 20, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new('RGB', size, colour).save(buf, 'PNG')
    return buf.getvalue()


def _png_with_header_size(width: int, height: int) -> bytes:
    """A small valid PNG whose IHDR claims ``width x height`` (CRC fixed): what a bomb looks like."""
    data = bytearray(_png_bytes())
    data[16:24] = struct.pack('>II', width, height)
    data[29:33] = struct.pack('>I', zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def _ffmpeg() -> str:
    import imageio_ffmpeg
    return imageio_ffmpeg.get_ffmpeg_exe()


def _write_clip(path: Path, frames, fps=10):
    with image_io.VideoWriter(path, fps=fps) as video:
        for f in frames:
            video.append(f)
    return path


def _clip_frames(n=3, h=24, w=40):
    frames = []
    for i in range(n):
        f = _upright(h, w)
        f[h // 2 - 2:h // 2 + 2, : 8 * (i + 1)] = (250, 250, 250)   # a white bar that grows per frame
        frames.append(f)
    return frames


# ----------------------------------------------------------------------------
# Orientation.

@pytest.mark.parametrize('orientation', range(1, 9))
def test_exif_orientation_jpeg(orientation, tmp_path):
    path = _save_with_orientation(tmp_path / f'o{orientation}.jpg', _stored_for(_upright(), orientation),
                                  orientation, quality=95)
    arr, info = image_io.read_image(path, '--target_look')
    _assert_markers(arr)
    assert info.orientation == orientation
    assert (info.orientation_applied == 'none') == (orientation == 1)
    assert info.original_size == ((40, 24) if orientation < 5 else (24, 40))
    assert info.size == (40, 24)
    assert json.loads(json.dumps(info.as_dict()))['orientation'] == orientation    # ready for report.json
    assert np.array_equal(image_io.load_image(path), arr)


@pytest.mark.parametrize('suffix,kwargs', [('.png', {}), ('.webp', dict(lossless=True)), ('.tif', {})])
def test_exif_orientation_other_formats(suffix, kwargs, tmp_path):
    path = _save_with_orientation(tmp_path / f'o6{suffix}', _stored_for(_upright(), 6), 6, **kwargs)
    arr, info = image_io.read_image(path)
    _assert_markers(arr, tol=2)
    assert info.orientation == 6 and 'clockwise' in info.orientation_applied


def test_orientation_with_downscale(tmp_path):
    big = np.asarray(Image.fromarray(_upright()).resize((400, 240), Image.NEAREST))
    path = _save_with_orientation(tmp_path / 'o8.jpg', _stored_for(big, 8), 8, quality=95)
    arr, info = image_io.read_image(path, min_side=24)
    _assert_markers(arr)
    assert info.orientation == 8 and info.original_size == (240, 400)
    assert info.decoded_size == (60, 100)             # decoded at 1/4 scale: still >= 2 x 24


def test_damaged_exif_is_ignored(tmp_path):
    path = tmp_path / 'bad-exif.jpg'
    Image.fromarray(_upright()).save(path, exif=b'Exif\x00\x00MM\x00*garbage', quality=95)
    arr, info = image_io.read_image(path)
    _assert_markers(arr)
    assert info.orientation == 1


# ----------------------------------------------------------------------------
# Size: downscaling early, bombs, empty, zero-sized and truncated files.

def test_min_side_downscales_once_with_lanczos(tmp_path):
    rng = np.random.RandomState(0)
    small = rng.randint(0, 256, size=(30, 45, 3)).astype(np.uint8)
    smooth = np.asarray(Image.fromarray(small).resize((450, 300), Image.BICUBIC))
    for suffix in ('.png', '.jpg'):
        path = tmp_path / f'big{suffix}'
        Image.fromarray(smooth).save(path, **({'quality': 95} if suffix == '.jpg' else {}))
        arr, info = image_io.read_image(path, min_side=60)
        assert arr.shape == (60, 90, 3) and info.size == (90, 60)
        reference = np.asarray(Image.fromarray(image_io.load_image(path)).resize((90, 60), Image.LANCZOS))
        assert np.abs(arr.astype(int) - reference).mean() < 4
        if suffix == '.jpg':
            assert info.decoded_size == (225, 150)    # decoded at half scale: still >= 2 x 60
        else:
            assert info.decoded_size == (450, 300)
    # Never enlarged; an image already small enough is returned as stored.
    path = tmp_path / 'big.png'
    assert image_io.load_image(path, min_side=1000).shape == (300, 450, 3)
    assert image_io.load_image(path, min_side=300).shape == (300, 450, 3)


def test_decompression_bomb(tmp_path):
    path = tmp_path / 'bomb.png'
    path.write_bytes(_png_with_header_size(30000, 30000))    # 900 megapixels claimed by a ~70-byte file
    with pytest.raises(UserError) as excinfo:
        image_io.read_image(path, '--target_look')
    msg = str(excinfo.value)
    assert '--target_look' in msg and str(path) in msg and 'too large' in msg and '\n' not in msg
    # Above PIL's warning threshold (not yet its error threshold): an error here too.
    path = tmp_path / 'big-claim.png'
    path.write_bytes(_png_with_header_size(10000, 10000))    # 100 megapixels
    with pytest.raises(UserError, match='too large'):
        image_io.load_image(path)


@pytest.mark.parametrize('suffix', ['.png', '.jpg'])
def test_zero_byte_file(suffix, tmp_path):
    path = tmp_path / f'empty{suffix}'
    path.write_bytes(b'')
    with pytest.raises(UserError) as excinfo:
        image_io.load_image(path, '--target_look')
    msg = str(excinfo.value)
    assert '--target_look' in msg and str(path) in msg and 'empty' in msg and '\n' not in msg


def test_zero_sized_image(tmp_path):
    path = tmp_path / 'zero.png'
    path.write_bytes(_png_with_header_size(0, 8))
    with pytest.raises(UserError) as excinfo:
        image_io.load_image(path, '--target_look')
    msg = str(excinfo.value)
    assert 'no pixels' in msg and '0x8' in msg and str(path) in msg and '\n' not in msg


@pytest.mark.parametrize('suffix,kwargs', [('.png', {}), ('.jpg', dict(quality=90)),
                                           ('.jpg', dict(quality=90, progressive=True))])
@pytest.mark.parametrize('fraction', [0.1, 0.5, 0.9])
def test_truncated_file(suffix, kwargs, fraction, tmp_path):
    rng = np.random.RandomState(1)
    full = tmp_path / f'full{suffix}'
    Image.fromarray(rng.randint(0, 256, size=(64, 64, 3)).astype(np.uint8)).save(full, **kwargs)
    data = full.read_bytes()
    path = tmp_path / f'cut{suffix}'
    path.write_bytes(data[:int(len(data) * fraction)])
    for min_side in (None, 16):
        with pytest.raises(UserError) as excinfo:
            image_io.load_image(path, '--target_landmarks', min_side=min_side)
        msg = str(excinfo.value)
        assert '--target_landmarks' in msg and str(path) in msg and '\n' not in msg


# ----------------------------------------------------------------------------
# Formats.

def test_cmyk_jpeg(tmp_path):
    path = tmp_path / 'cmyk.jpg'
    Image.new('CMYK', (16, 12), (0, 255, 255, 0)).save(path, quality=100)    # pure red in ink
    arr, info = image_io.read_image(path)
    assert info.mode == 'CMYK' and arr.shape == (12, 16, 3)
    assert np.abs(arr.reshape(-1, 3).mean(0) - (255, 0, 0)).max() < 6


def test_progressive_jpeg_matches_baseline(tmp_path):
    rgb = np.asarray(Image.fromarray(_upright()).resize((160, 96), Image.BICUBIC))
    Image.fromarray(rgb).save(tmp_path / 'base.jpg', quality=95)
    Image.fromarray(rgb).save(tmp_path / 'prog.jpg', quality=95, progressive=True)
    with Image.open(tmp_path / 'prog.jpg') as img:
        assert img.info.get('progressive') or img.info.get('progression')
    base, prog = image_io.load_image(tmp_path / 'base.jpg'), image_io.load_image(tmp_path / 'prog.jpg')
    assert np.abs(base.astype(int) - prog).mean() < 2
    assert image_io.load_image(tmp_path / 'prog.jpg', min_side=48).shape == (48, 80, 3)


@pytest.mark.parametrize('name,kwargs,tol', [
    ('gray.jpg', dict(quality=95), 3), ('rgb.webp', dict(lossless=True), 0), ('rgb.bmp', {}, 0),
    ('rgb.tif', {}, 0), ('rgb16.png', {}, 1), ('pal.gif', {}, 0), ('rgba.webp', dict(lossless=True), 0),
])
def test_formats(name, kwargs, tol, tmp_path):
    rgb = _upright()
    img = Image.fromarray(rgb)
    expected = rgb
    if name.startswith('gray'):
        img = img.convert('L')
        expected = np.repeat(np.asarray(img)[:, :, None], 3, axis=2)
    elif name.startswith('rgb16'):
        gray = np.asarray(img.convert('L'), dtype=np.uint16) * 257
        img = Image.fromarray(gray)
        expected = np.repeat((gray // 257).astype(np.uint8)[:, :, None], 3, axis=2)
    elif name.startswith('pal'):
        img = img.quantize(colors=4)
    elif name.startswith('rgba'):
        rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=2)
        rgba[-2:, -2:, 3] = 0                              # transparent -> white
        img = Image.fromarray(rgba, mode='RGBA')
        expected = rgb.copy()
        expected[-2:, -2:] = 255
    path = tmp_path / name
    img.save(path, **kwargs)
    arr = image_io.load_image(path)
    assert arr.dtype == np.uint8 and arr.shape == expected.shape
    diff = np.abs(arr.astype(int) - expected)
    assert (diff.mean() < tol) if name.endswith('.jpg') else (diff.max() <= tol), (name, diff.max())


def test_heic(tmp_path):
    pillow_heif = pytest.importorskip('pillow_heif', reason='pillow-heif is not installed (pip install pillow-heif)')
    path = tmp_path / 'phone.heic'
    exif = Image.Exif()
    exif[0x0112] = 6
    big = np.asarray(Image.fromarray(_stored_for(_upright(), 6)).resize((48, 80), Image.NEAREST))
    pillow_heif.from_pillow(Image.fromarray(big)).save(path, quality=95, exif=exif.tobytes())
    arr, info = image_io.read_image(path)
    assert info.format == 'HEIF' and info.orientation == 6
    _assert_markers(np.asarray(Image.fromarray(arr).resize((40, 24), Image.BILINEAR)), tol=45)


def test_heic_without_pillow_heif(tmp_path, monkeypatch):
    path = tmp_path / 'phone.heic'
    path.write_bytes(b'\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic' + b'\x00' * 64)
    Image.init()
    monkeypatch.setattr(Image, 'ID', [name for name in Image.ID if name != 'HEIF'])
    monkeypatch.setitem(sys.modules, 'pillow_heif', None)          # import pillow_heif -> ImportError
    with pytest.raises(UserError) as excinfo:
        image_io.load_image(path, '--target_look')
    msg = str(excinfo.value)
    assert 'pip install pillow-heif' in msg and str(path) in msg and '--target_look' in msg


@pytest.mark.skipif(not features.check('avif'), reason="this Pillow has no AVIF codec")
def test_avif(tmp_path):
    path = tmp_path / 'photo.avif'
    Image.fromarray(_upright()).save(path, quality=95)
    arr, info = image_io.read_image(path)
    assert info.format == 'AVIF'
    _assert_markers(arr, tol=45)


# ----------------------------------------------------------------------------
# Colour: ICC profiles.

_BRADFORD = np.array([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]])
_D50 = np.array([0.9642, 1.0, 0.8249])
_D65_XY = (0.3127, 0.3290)
_PRIMARIES = {  # chromaticities (x, y) of R, G, B
    'sRGB': [(0.64, 0.33), (0.30, 0.60), (0.15, 0.06)],
    'Display P3': [(0.680, 0.320), (0.265, 0.690), (0.150, 0.060)],
    'Adobe RGB (1998)': [(0.64, 0.33), (0.21, 0.71), (0.15, 0.06)],
}
_ADOBE_GAMMA = 563 / 256


def _xyz(xy):
    x, y = xy
    return np.array([x / y, 1.0, (1 - x - y) / y])


def _rgb_to_xyz(primaries, white_xy=_D65_XY) -> np.ndarray:
    """3x3 matrix from linear RGB to XYZ (white -> Y = 1)."""
    m = np.stack([_xyz(p) for p in primaries], axis=1)
    return m * np.linalg.solve(m, _xyz(white_xy))[None, :]


def _srgb_decode(v):
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def _srgb_encode(v):
    v = np.clip(v, 0, 1)
    return np.where(v <= 0.0031308, v * 12.92, 1.055 * v ** (1 / 2.4) - 0.055)


def _icc_profile(name: str) -> bytes:
    """A version-2 matrix/TRC display profile for ``name`` (primaries above, D65 white), per the ICC spec."""
    def s15(v):
        return struct.pack('>i', int(round(v * 65536)))

    def xyz_tag(v):
        return b'XYZ \0\0\0\0' + b''.join(s15(c) for c in v)

    m = _rgb_to_xyz(_PRIMARIES[name])
    d65 = m @ np.ones(3)
    cone = _BRADFORD
    adapt = np.linalg.inv(cone) @ np.diag((cone @ _D50) / (cone @ d65)) @ cone
    m50 = adapt @ m
    if name.startswith('Adobe'):
        trc = b'curv\0\0\0\0' + struct.pack('>IH', 1, int(round(_ADOBE_GAMMA * 256))) + b'\0\0'
    else:
        table = np.round(_srgb_decode(np.linspace(0, 1, 1024)) * 65535).astype('>u2')
        trc = b'curv\0\0\0\0' + struct.pack('>I', len(table)) + table.tobytes()
    text = name.encode('ascii') + b'\0'
    desc = b'desc\0\0\0\0' + struct.pack('>I', len(text)) + text + struct.pack('>IIHB', 0, 0, 0, 0) + b'\0' * 67
    tags = [(b'desc', desc), (b'cprt', b'text\0\0\0\0no copyright, test data\0'), (b'wtpt', xyz_tag(_D50)),
            (b'rXYZ', xyz_tag(m50[:, 0])), (b'gXYZ', xyz_tag(m50[:, 1])), (b'bXYZ', xyz_tag(m50[:, 2])),
            (b'rTRC', trc), (b'gTRC', trc), (b'bTRC', trc)]
    offset = 128 + 4 + 12 * len(tags)
    table_bytes, data, placed = b'', b'', {}
    for sig, body in tags:
        if body not in placed:                       # the three TRC tags share one curve
            while (offset + len(data)) % 4:
                data += b'\0'
            placed[body] = offset + len(data)
            data += body
        table_bytes += sig + struct.pack('>II', placed[body], len(body))
    size = offset + len(data)
    header = (struct.pack('>I', size) + b'\0\0\0\0' + struct.pack('>I', 0x02100000) + b'mntrRGB XYZ '
              + b'\0' * 12 + b'acsp' + b'\0' * 24 + struct.pack('>I', 0) + b''.join(s15(c) for c in _D50)
              + b'\0' * 48)
    assert len(header) == 128
    return header + struct.pack('>I', len(tags)) + table_bytes + data


def _expected_srgb(rgb, name) -> np.ndarray:
    v = np.asarray(rgb, dtype=np.float64) / 255
    linear = v ** _ADOBE_GAMMA if name.startswith('Adobe') else _srgb_decode(v)
    to_srgb = np.linalg.inv(_rgb_to_xyz(_PRIMARIES['sRGB'])) @ _rgb_to_xyz(_PRIMARIES[name])
    return _srgb_encode(to_srgb @ linear) * 255


@pytest.mark.parametrize('name,colour', [('Display P3', (200, 120, 90)), ('Display P3', (60, 170, 110)),
                                         ('Adobe RGB (1998)', (120, 160, 90))])
def test_icc_profile_converted_to_srgb(name, colour, tmp_path):
    expected = _expected_srgb(colour, name)
    assert np.abs(expected - colour).max() > 8          # the conversion visibly changes this colour
    path = tmp_path / 'tagged.jpg'
    Image.new('RGB', (16, 16), colour).save(path, quality=100, subsampling=0, icc_profile=_icc_profile(name))
    arr, info = image_io.read_image(path)
    assert info.icc_profile == name and 'sRGB' in info.colour and name in info.colour
    got = arr.reshape(-1, 3).mean(0)
    assert np.abs(got - expected).max() < 3, (got, expected)


def test_srgb_tagged_and_broken_profiles_keep_pixels(tmp_path):
    from PIL import ImageCms
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile('sRGB')).tobytes()
    colour = (200, 120, 90)
    for name, icc in [('srgb.png', srgb), ('broken.png', b'not an ICC profile at all')]:
        path = tmp_path / name
        Image.new('RGB', (4, 4), colour).save(path, icc_profile=icc)
        arr, info = image_io.read_image(path)
        assert (arr == colour).all(), name
        assert info.colour.startswith('sRGB') or 'ignored' in info.colour


# ----------------------------------------------------------------------------
# Driving input.

def test_driving_folder_natural_order_and_digest(tmp_path):
    folder = tmp_path / 'frames'
    folder.mkdir()
    for i in (10, 2, 1):
        Image.new('RGB', (8, 6), (i * 20, 0, 0)).save(folder / f'frame{i}.png')
    (folder / 'notes.txt').write_text('not a frame')
    (folder / '.hidden.png').write_bytes(_png_bytes())
    driving = image_io.open_driving(folder, '--target_landmarks_folder')
    assert driving.kind == 'folder' and driving.fps is None and driving.num_frames == 3
    frames = list(driving)
    assert [int(f[0, 0, 0]) for f in frames] == [20, 40, 200]
    h = hashlib.sha256()
    for name in ('frame1.png', 'frame2.png', 'frame10.png'):
        h.update(name.encode())
        h.update(hashlib.sha256((folder / name).read_bytes()).digest())
    assert driving.digest() == h.hexdigest()
    assert [f[0, 0, 0] for f in image_io.read_frame_folder(folder)] == [20, 40, 200]


def test_driving_mp4_streams_frames(tmp_path):
    path = _write_clip(tmp_path / 'clip.mp4', _clip_frames(5), fps=12)
    driving = image_io.open_driving(path)
    assert driving.kind == 'video' and driving.fps == pytest.approx(12) and driving.num_frames == 5
    assert driving.size == (40, 24) and driving.rotation == 0
    assert json.loads(json.dumps(driving.info()))['num_frames'] == 5
    stream = driving.frames()
    assert not isinstance(stream, list)
    first = next(stream)
    assert first.shape == (24, 40, 3) and first.dtype == np.uint8 and first.flags.writeable
    stream.close()                                      # stopping early ends ffmpeg
    frames = list(driving)
    assert len(frames) == 5
    for f in frames:
        _assert_markers(f, tol=50)
    assert driving.digest() == hashlib.sha256(path.read_bytes()).hexdigest()
    frames2, fps = image_io.read_video(path)
    assert len(frames2) == 5 and fps == pytest.approx(12)
    small = list(image_io.open_driving(path, min_side=12))
    assert small[0].shape == (12, 20, 3)


@pytest.mark.parametrize('suffix,codec', [('.mov', ['-c', 'copy']), ('.mkv', ['-c', 'copy']),
                                          ('.webm', ['-c:v', 'libvpx-vp9', '-deadline', 'realtime', '-b:v', '0',
                                                     '-crf', '20'])])
def test_driving_other_containers(suffix, codec, tmp_path):
    src = _write_clip(tmp_path / 'clip.mp4', _clip_frames(3), fps=10)
    path = tmp_path / f'clip{suffix}'
    proc = subprocess.run([_ffmpeg(), '-y', '-loglevel', 'error', '-i', str(src)] + codec + [str(path)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f'the bundled ffmpeg cannot write {suffix}: {proc.stderr.strip()[-200:]}')
    driving = image_io.open_driving(path)
    frames = list(driving)
    assert len(frames) == 3 and driving.fps == pytest.approx(10)
    _assert_markers(frames[0], tol=50)


@pytest.mark.parametrize('ccw_degrees,rotation', [(-90, 90), (90, 270), (180, 180)])
def test_driving_phone_clip_comes_out_upright(ccw_degrees, rotation, tmp_path):
    """A clip stored sideways with display-rotation metadata, as phones record portrait video."""
    upright = _clip_frames(3, h=40, w=24)               # a portrait picture, 24 wide and 40 tall
    k = {90: 1, 270: 3, 180: 2}[rotation]             # np.rot90 turns anticlockwise
    stored = [np.ascontiguousarray(np.rot90(f, k)) for f in upright]   # what the sensor recorded
    plain = _write_clip(tmp_path / 'plain.mp4', stored, fps=10)
    path = tmp_path / 'phone.mp4'
    ways = [['-display_rotation', str(ccw_degrees), '-i', str(plain), '-c', 'copy'],          # ffmpeg >= 6.1
            ['-i', str(plain), '-c', 'copy', '-metadata:s:v:0', f'rotate={rotation}']]         # older ffmpeg
    for way in ways:
        proc = subprocess.run([_ffmpeg(), '-y', '-loglevel', 'error'] + way + [str(path)], capture_output=True)
        header = image_io._parse_video_header(image_io._ffmpeg_header(path)) if proc.returncode == 0 else None
        if header is not None and header['rotation'] == rotation:
            break
    else:
        pytest.skip('the bundled ffmpeg cannot write rotation metadata')
    driving = image_io.open_driving(path)
    assert driving.rotation == rotation and driving.size == (24, 40)
    frames = list(driving)
    assert len(frames) == 3
    for f in frames:
        _assert_markers(f, h=40, w=24, tol=50)


def test_video_header_parsing_old_and_new_ffmpeg():
    new = ('  Stream #0:0[0x1](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p(progressive), 1920x1080, '
           '15 kb/s, 29.97 fps, 29.97 tbr, 10240 tbn (default)\n    Side data:\n'
           '      displaymatrix: rotation of -90.00 degrees\n  Stream #0:1: Audio: aac\n')
    old = ('    Stream #0:0(und): Video: h264 (avc1 / 0x31637661), yuv420p, 1280x720, 8000 kb/s, 30 fps, 30 tbr\n'
           '    Metadata:\n      rotate          : 270\n')
    assert image_io._parse_video_header(new) == dict(size=(1920, 1080), fps=29.97, rotation=90,
                                                     variable_timing=False)
    assert image_io._parse_video_header(old) == dict(size=(1280, 720), fps=30.0, rotation=270,
                                                     variable_timing=False)
    assert image_io._parse_video_header('  Stream #0:0: Audio: mp3\n') is None
    phone = '  Stream #0:0: Video: h264 (High), yuv420p, 1080x1920, 29.83 fps, 30 tbr, 90k tbn\n'
    assert image_io._parse_video_header(phone)['variable_timing'] is True


def test_driving_video_cut_short_is_read_with_a_warning(tmp_path):
    """A clip whose second half is missing (an interrupted copy): its first part is used, and the
    header's promise of more frames is said."""
    whole = tmp_path / 'whole.mp4'
    noise = "nullsrc=s=64x48:r=30,geq=lum='random(1)*255':cb=128:cr=128"  # every frame costs about as much
    proc = subprocess.run([_ffmpeg(), '-y', '-loglevel', 'error', '-f', 'lavfi', '-i', noise,
                           '-t', '1', '-c:v', 'libx264', '-pix_fmt', 'yuv420p', '-movflags', '+faststart',
                           str(whole)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f'the bundled ffmpeg cannot write the clip: {proc.stderr.strip()[-200:]}')
    assert image_io.open_driving(whole).warning is None
    cut = tmp_path / 'cut.mp4'
    data = whole.read_bytes()
    cut.write_bytes(data[:len(data) // 2])
    driving = image_io.open_driving(cut)
    frames = list(driving)
    assert 0 < len(frames) < 27
    assert 'truncated' in driving.warning and 'about 30' in driving.warning
    assert driving.info()['warning'] == driving.warning
    assert image_io._missing_frames_warning(29, 30.0, 1.0) is None      # a frame short of the header: normal


def test_audio_longer_than_the_video_is_not_damage(tmp_path):
    """A phone clip's audio often runs past its video, and the file's duration is the longer one."""
    path = tmp_path / 'longaudio.mp4'
    proc = subprocess.run([_ffmpeg(), '-y', '-loglevel', 'error', '-f', 'lavfi', '-i', 'testsrc=size=64x48:rate=10',
                           '-f', 'lavfi', '-i', 'sine=duration=1.5', '-t:v', '0.6', '-c:v', 'libx264',
                           '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-shortest', str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        proc = subprocess.run([_ffmpeg(), '-y', '-loglevel', 'error', '-f', 'lavfi', '-i', 'testsrc=size=64x48:rate=10',
                               '-f', 'lavfi', '-i', 'sine=duration=1.5', '-frames:v', '6', '-c:v', 'libx264',
                               '-pix_fmt', 'yuv420p', '-c:a', 'aac', str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f'the bundled ffmpeg cannot write the clip: {proc.stderr.strip()[-200:]}')
    driving = image_io.open_driving(path)
    assert driving.num_frames == 6 and len(list(driving)) == 6
    assert driving.warning is None and driving.fps == pytest.approx(10)


def test_a_webm_header_rate_is_nominal_the_frames_give_the_average(tmp_path):
    """Matroska/WebM headers state a nominal rate: 6 frames stored over 1.3 s (a pause in the
    middle, as a webcam recording has) are 4.6 fps on average, not the header's 10."""
    path = tmp_path / 'pause.webm'
    pts = "setpts='if(lt(N\\,3)\\,N*100\\,700+N*100)'"
    proc = subprocess.run([_ffmpeg(), '-y', '-loglevel', 'error', '-f', 'lavfi', '-i', 'testsrc=size=64x48:rate=10',
                           '-frames:v', '6', '-vf', f'settb=1/1000,{pts}', '-fps_mode', 'vfr', '-c:v', 'libvpx',
                           str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f'the bundled ffmpeg cannot write the clip: {proc.stderr.strip()[-200:]}')
    driving = image_io.open_driving(path)
    assert driving.num_frames == 6 and len(list(driving)) == 6
    assert driving.variable_timing is True and driving.fps == pytest.approx(6 / 1.3, rel=0.02)
    assert driving.warning is None


def test_an_mpeg1_elementary_stream_is_a_video_not_a_still(tmp_path):
    """PIL's MPEG plugin takes such a file for one picture."""
    path = tmp_path / 'clip.m1v'
    proc = subprocess.run([_ffmpeg(), '-y', '-loglevel', 'error', '-f', 'lavfi', '-i', 'testsrc=size=64x48:rate=25',
                           '-frames:v', '4', '-c:v', 'mpeg1video', '-f', 'mpeg1video', str(path)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f'the bundled ffmpeg cannot write the clip: {proc.stderr.strip()[-200:]}')
    driving = image_io.open_driving(path)
    assert driving.kind == 'video' and len(list(driving)) == 4


def test_a_relative_video_name_with_a_colon_reads(tmp_path, monkeypatch):
    """ffmpeg takes ``take:1.mp4`` for the protocol ``take``."""
    _write_clip(tmp_path / 'take:1.mp4', _clip_frames(2))
    monkeypatch.chdir(tmp_path)
    driving = image_io.open_driving('take:1.mp4')
    assert driving.num_frames == 2 and len(list(driving)) == 2


@pytest.mark.parametrize('average, base, variable', [(30, 30, False), (29.97, 29.97, False), (25, 50, False),
                                                     (27.3, 30, True), (2.19, 25, True), (None, 30, False)])
def test_variable_frame_rate_rule(average, base, variable):
    assert image_io._variable_rate(average, base) is variable


def test_driving_variable_frame_rate_video_reads_each_frame_once(tmp_path):
    """A phone-like clip with every tenth frame dropped (27 frames in 1 s, stored with their own
    timestamps): ffmpeg would fill it up to 30 fps with repeats; every stored frame comes once."""
    path = tmp_path / 'vfr.mp4'
    proc = subprocess.run([_ffmpeg(), '-y', '-loglevel', 'error', '-f', 'lavfi', '-i', 'testsrc=size=64x48:rate=30',
                           '-t', '1', '-vf', "select='not(eq(mod(n\\,10)\\,9))'", '-fps_mode', 'vfr',
                           '-c:v', 'libx264', '-pix_fmt', 'yuv420p', str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f'the bundled ffmpeg cannot write a variable-rate clip: {proc.stderr.strip()[-200:]}')
    driving = image_io.open_driving(path)
    frames = list(driving)
    assert driving.num_frames == 27 and len(frames) == 27
    assert driving.variable_timing is True and driving.fps == pytest.approx(27, rel=0.05)
    assert image_io.open_driving(_write_clip(tmp_path / 'cfr.mp4', _clip_frames(3), fps=10)).variable_timing is False


@pytest.mark.parametrize('suffix,kwargs', [('.gif', {}), ('.webp', dict(lossless=True))])
def test_driving_animation(suffix, kwargs, tmp_path):
    colours = [RED, BLUE]
    images = [Image.new('RGB', (20, 16), c) for c in colours]
    path = tmp_path / f'anim{suffix}'
    images[0].save(path, save_all=True, append_images=images[1:], duration=[200, 200], loop=0, **kwargs)
    driving = image_io.open_driving(path)
    assert driving.kind == 'animation' and driving.num_frames == 2 and not driving.variable_timing
    assert driving.fps == pytest.approx(5.0)
    frames = list(driving)
    assert len(frames) == 2 and frames[0].shape == (16, 20, 3)
    for frame, colour in zip(frames, colours):
        assert np.abs(frame.reshape(-1, 3).mean(0) - colour).max() < 4
    frames2, fps = image_io.read_video(path)           # the thin wrapper takes animations too
    assert len(frames2) == 2 and fps == pytest.approx(5.0)
    assert driving.digest() == hashlib.sha256(path.read_bytes()).hexdigest()


def test_driving_animation_variable_timing_and_still(tmp_path):
    images = [Image.new('RGB', (8, 8), c) for c in (RED, BLUE, GREY)]
    path = tmp_path / 'var.gif'
    images[0].save(path, save_all=True, append_images=images[1:], duration=[100, 300, 200], loop=0)
    driving = image_io.open_driving(path)
    assert driving.variable_timing and driving.fps == pytest.approx(5.0) and driving.num_frames == 3
    still = tmp_path / 'still.gif'
    images[0].save(still)
    with pytest.raises(UserError) as excinfo:
        image_io.open_driving(still)
    assert 'still image' in str(excinfo.value) and str(still) in str(excinfo.value)


@pytest.mark.parametrize('make', ['missing', 'empty', 'text'])
def test_driving_bad_files(make, tmp_path):
    path = tmp_path / 'driving.mp4'
    if make == 'empty':
        path.write_bytes(b'')
    elif make == 'text':
        path.write_text('this is not a video\n')
    with pytest.raises(UserError) as excinfo:
        image_io.open_driving(path, '--driving')
    msg = str(excinfo.value)
    assert '--driving' in msg and str(path) in msg and '\n' not in msg


# ----------------------------------------------------------------------------
# Through the command line.

@pytest.fixture
def cli_args(tiny_pkl, fan_weights, vgg_weights, face_images, tmp_path):
    look, landmarks = face_images
    return ['--network', tiny_pkl, '--device', 'cpu', '--fan-weights', fan_weights, '--vgg-weights', vgg_weights,
            '--target_look', look, '--target_landmarks', landmarks, '--outdir', tmp_path / 'out', '--num-steps', 1]


@pytest.mark.parametrize('case', ['bomb', 'truncated_jpeg', 'empty_png'])
def test_projector_bad_photo_exits_2(case, cli_args, face_images, tmp_path):
    inputs = tmp_path / 'inputs'
    inputs.mkdir()
    if case == 'bomb':
        path, option = inputs / 'bomb.png', '--target_look'
        path.write_bytes(_png_with_header_size(30000, 30000))
    elif case == 'truncated_jpeg':
        path, option = inputs / 'cut.jpg', '--target_landmarks'
        full = inputs / 'full.jpg'
        Image.open(face_images[1]).convert('RGB').save(full, quality=90)
        path.write_bytes(full.read_bytes()[: len(full.read_bytes()) // 2])
    else:
        path, option = inputs / 'empty.png', '--target_look'
        path.write_bytes(b'')
    code, out, err = invoke(projector.main, with_option(cli_args, option, path))
    assert code == 2, (out, err)
    assert_one_error_line(err, option, str(path))
    assert 'Traceback' not in out
    assert_nothing_written(tmp_path / 'out')


def test_projector_uses_the_photo_upright(cli_args, face_images, tmp_path):
    upright = image_io.load_image(face_images[0])
    path = _save_with_orientation(tmp_path / 'sideways.png', _stored_for(upright, 6), 6)
    code, _, err = invoke(projector.main, with_option(cli_args, '--target_look', path))
    assert code == 0, err
    used = image_io.load_image(tmp_path / 'out' / 'target_look.png')
    np.testing.assert_array_equal(used, upright)      # the look as shown, not as stored
