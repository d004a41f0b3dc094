"""Reading images of every common mode, conversions, and the atomic writers."""

import hashlib
import json
import os
import stat

import numpy as np
import pytest
import torch
from PIL import Image

import image_io
from cli_helpers import read_video
from dnnlib.util import UserError


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _save(tmp_path, name, img):
    path = tmp_path / name
    img.save(path)
    return path


def _check_rgb8(arr, shape):
    assert isinstance(arr, np.ndarray)
    assert arr.dtype == np.uint8 and arr.shape == shape


# ----------------------------------------------------------------------------
# load_image.

def test_load_rgb(tmp_path):
    rgb = np.random.RandomState(0).randint(0, 256, size=(10, 14, 3)).astype(np.uint8)
    arr = image_io.load_image(_save(tmp_path, 'rgb.png', Image.fromarray(rgb)))
    _check_rgb8(arr, (10, 14, 3))
    assert np.array_equal(arr, rgb)


def test_load_grayscale(tmp_path):
    gray = np.random.RandomState(1).randint(0, 256, size=(9, 7)).astype(np.uint8)
    arr = image_io.load_image(_save(tmp_path, 'gray.png', Image.fromarray(gray, mode='L')))
    _check_rgb8(arr, (9, 7, 3))
    for c in range(3):
        assert np.array_equal(arr[:, :, c], gray)


def test_load_rgba_composited_on_white(tmp_path):
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[0, 0] = (10, 20, 30, 255)     # opaque
    rgba[0, 1] = (10, 20, 30, 0)       # transparent -> white
    rgba[0, 2] = (0, 0, 0, 128)        # half-transparent black -> mid grey
    rgba[1:] = (200, 100, 50, 255)
    arr = image_io.load_image(_save(tmp_path, 'rgba.png', Image.fromarray(rgba, mode='RGBA')))
    _check_rgb8(arr, (4, 4, 3))
    assert tuple(arr[0, 0]) == (10, 20, 30)
    assert tuple(arr[0, 1]) == (255, 255, 255)
    assert all(abs(int(v) - 127) <= 1 for v in arr[0, 2])
    assert (arr[1:] == (200, 100, 50)).all()


def test_load_la(tmp_path):
    la = np.zeros((3, 3, 2), dtype=np.uint8)
    la[..., 0] = 40
    la[..., 1] = 255
    la[1, 1, 1] = 0                    # transparent -> white
    arr = image_io.load_image(_save(tmp_path, 'la.png', Image.fromarray(la, mode='LA')))
    _check_rgb8(arr, (3, 3, 3))
    assert tuple(arr[0, 0]) == (40, 40, 40)
    assert tuple(arr[1, 1]) == (255, 255, 255)


def test_load_palette(tmp_path):
    img = Image.new('P', (5, 6))
    palette = [0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 9)
    img.putpalette(palette)
    idx = np.zeros((6, 5), dtype=np.uint8)
    idx[2:, :] = 1
    idx[:, 4] = 2
    img.putdata(idx.flatten().tolist())
    path = _save(tmp_path, 'pal.png', img)
    assert Image.open(path).mode == 'P'
    arr = image_io.load_image(path)
    _check_rgb8(arr, (6, 5, 3))
    assert tuple(arr[0, 0]) == (0, 0, 0)
    assert tuple(arr[3, 1]) == (255, 0, 0)
    assert tuple(arr[3, 4]) == (0, 0, 255)


def test_load_palette_with_transparency(tmp_path):
    img = Image.new('P', (2, 1))
    img.putpalette([10, 20, 30, 40, 50, 60] + [0] * (256 * 3 - 6))
    img.putdata([0, 1])
    img.info['transparency'] = 1
    path = tmp_path / 'palt.png'
    img.save(path, transparency=1)
    arr = image_io.load_image(path)
    assert tuple(arr[0, 0]) == (10, 20, 30)
    assert tuple(arr[0, 1]) == (255, 255, 255)


def test_load_16bit_grayscale(tmp_path):
    values = np.array([[0, 257, 32896], [65535, 1000, 40000]], dtype=np.uint16)
    img = Image.fromarray(values)
    assert img.mode == 'I;16'
    path = _save(tmp_path, 'gray16.png', img)
    arr = image_io.load_image(path)
    _check_rgb8(arr, (2, 3, 3))
    expected = np.round(values.astype(np.float64) / 65535 * 255).astype(np.uint8)
    for c in range(3):
        assert np.abs(arr[:, :, c].astype(int) - expected).max() <= 1
    assert arr[0, 0, 0] == 0 and arr[1, 0, 0] == 255 and arr[0, 1, 0] == 1


def test_load_dark_16bit_grayscale(tmp_path):
    values = np.array([[0, 200], [100, 255]], dtype=np.uint16)     # very dark 16-bit pixels
    arr = image_io.load_image(_save(tmp_path, 'dark16.png', Image.fromarray(values)))
    assert arr.max() <= 1


def test_load_missing_file(tmp_path):
    missing = tmp_path / 'missing.png'
    with pytest.raises(UserError) as excinfo:
        image_io.load_image(missing, what='--target_look')
    msg = str(excinfo.value)
    assert '--target_look' in msg and str(missing) in msg and '\n' not in msg
    with pytest.raises(UserError, match=r'--target_look: .* is a folder, not an image file'):
        image_io.load_image(tmp_path, what='--target_look')


def test_load_not_an_image(tmp_path):
    fake = tmp_path / 'fake.png'
    fake.write_text('this is text, not a PNG\n')
    with pytest.raises(UserError) as excinfo:
        image_io.load_image(fake, what='--target_landmarks')
    msg = str(excinfo.value)
    assert '--target_landmarks' in msg and str(fake) in msg and '\n' not in msg

    truncated = tmp_path / 'truncated.png'
    Image.fromarray(np.zeros((64, 64, 3), np.uint8) + 7).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:60])
    with pytest.raises(UserError, match='--target_look'):
        image_io.load_image(truncated, what='--target_look')


# ----------------------------------------------------------------------------
# centre_crop_resize.

def test_centre_crop_wide():
    img = np.zeros((40, 100, 3), dtype=np.uint8)
    img[:, 30:70] = 255                                  # the centre square
    out = image_io.centre_crop_resize(img, 40)
    _check_rgb8(out, (40, 40, 3))
    assert (out == 255).all()
    out = image_io.centre_crop_resize(img, 16)
    _check_rgb8(out, (16, 16, 3))
    assert out.min() >= 250


def test_centre_crop_tall_keeps_orientation():
    img = np.zeros((90, 30, 3), dtype=np.uint8)
    img[30:45] = (255, 0, 0)                             # top half of the centre square: red
    img[45:60] = (0, 0, 255)                             # bottom half: blue
    out = image_io.centre_crop_resize(img, 64)
    _check_rgb8(out, (64, 64, 3))
    assert (out[:28, :, 0] > 200).all() and (out[:28, :, 2] < 50).all()
    assert (out[36:, :, 2] > 200).all() and (out[36:, :, 0] < 50).all()


def test_centre_crop_square_same_size_is_identity():
    img = np.random.RandomState(2).randint(0, 256, size=(32, 32, 3)).astype(np.uint8)
    assert np.array_equal(image_io.centre_crop_resize(img, 32), img)
    big = image_io.centre_crop_resize(img, 64)
    _check_rgb8(big, (64, 64, 3))


# ----------------------------------------------------------------------------
# Conversions.

def test_to_tensor_and_back():
    img = np.random.RandomState(3).randint(0, 256, size=(5, 7, 3)).astype(np.uint8)
    img[0, 0] = (0, 128, 255)
    x = image_io.to_tensor(img)
    assert x.shape == (1, 3, 5, 7) and x.dtype == torch.float32
    assert float(x.min()) >= -1 and float(x.max()) <= 1
    assert float(x[0, 0, 0, 0]) == -1.0 and float(x[0, 2, 0, 0]) == 1.0
    assert float(x[0, 1, 0, 0]) == pytest.approx(128 / 127.5 - 1, abs=1e-6)
    back = image_io.to_uint8(x)
    assert back.shape == (1, 5, 7, 3) and back.dtype == np.uint8
    assert np.array_equal(back[0], img)
    assert np.array_equal(image_io.to_uint8(x[0]), img)
    # The tensor does not share memory with the array.
    x[0, 0, 0, 0] = 0.5
    assert img[0, 0, 0] == 0


def test_to_uint8_clamps_and_rounds():
    x = torch.tensor([-2.0, -1.0, 0.0, 1.0, 3.0]).reshape(1, 1, 1, 5).expand(1, 3, 1, 5)
    out = image_io.to_uint8(x)
    assert out.shape == (1, 1, 5, 3)
    assert list(out[0, 0, :, 0]) == [0, 0, 128, 255, 255]
    x = torch.rand([2, 3, 4, 4], requires_grad=True) * 2 - 1
    assert image_io.to_uint8(x).shape == (2, 4, 4, 3)


def test_to_tensor_rejects_bad_input():
    with pytest.raises(ValueError):
        image_io.to_tensor(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError):
        image_io.to_tensor(np.zeros((4, 4, 3), np.float32))


def test_hstack():
    a, b = np.zeros((4, 3, 3), np.uint8), np.ones((4, 5, 3), np.uint8)
    out = image_io.hstack([a, b])
    assert out.shape == (4, 8, 3) and (out[:, 3:] == 1).all()


# ----------------------------------------------------------------------------
# Atomic writers.

def _check_mode(path):
    mode = stat.S_IMODE(os.stat(path).st_mode)
    assert mode == 0o666 & ~_umask()
    assert mode != 0o600 or _umask() == 0o066


def test_save_png_npz_json(tmp_path):
    img = np.random.RandomState(4).randint(0, 256, size=(6, 8, 3)).astype(np.uint8)
    image_io.save_png(tmp_path / 'a.png', img)
    image_io.save_npz(tmp_path / 'w.npz', w=np.arange(6, dtype=np.float32).reshape(1, 2, 3))
    image_io.save_json(tmp_path / 'meta.json', {'b': 1, 'a': [1.5, 'x']})
    assert sorted(os.listdir(tmp_path)) == ['a.png', 'meta.json', 'w.npz']     # no temporary files left
    for name in ['a.png', 'meta.json', 'w.npz']:
        _check_mode(tmp_path / name)
    assert np.array_equal(np.asarray(Image.open(tmp_path / 'a.png')), img)
    with np.load(tmp_path / 'w.npz') as data:
        assert list(data.keys()) == ['w'] and data['w'].shape == (1, 2, 3)
    text = (tmp_path / 'meta.json').read_text()
    assert json.loads(text) == {'b': 1, 'a': [1.5, 'x']} and text.endswith('\n')


def test_save_overwrites(tmp_path):
    path = tmp_path / 'x.json'
    image_io.save_json(path, 1)
    image_io.save_json(path, 2)
    assert json.loads(path.read_text()) == 2
    assert os.listdir(tmp_path) == ['x.json']


def test_atomic_path_exception_leaves_nothing(tmp_path):
    with pytest.raises(KeyError):
        with image_io.atomic_path(tmp_path / 'out.png') as tmp:
            assert os.path.dirname(tmp) == str(tmp_path)
            assert tmp.endswith('.png') and os.path.basename(tmp).startswith('.')
            with open(tmp, 'wb') as f:
                f.write(b'partial')
            raise KeyError('boom')
    assert os.listdir(tmp_path) == []

    # A failing writer leaves neither the final file nor a temporary one; an old file stays.
    image_io.save_json(tmp_path / 'keep.json', {'old': True})
    with pytest.raises(TypeError):
        image_io.save_json(tmp_path / 'keep.json', {'bad': object()})
    assert os.listdir(tmp_path) == ['keep.json']
    assert json.loads((tmp_path / 'keep.json').read_text()) == {'old': True}


def test_atomic_path_success(tmp_path):
    with image_io.atomic_path(tmp_path / 'data.bin') as tmp:
        assert not (tmp_path / 'data.bin').exists()
        with open(tmp, 'wb') as f:
            f.write(b'abc')
    assert os.listdir(tmp_path) == ['data.bin']
    assert (tmp_path / 'data.bin').read_bytes() == b'abc'
    _check_mode(tmp_path / 'data.bin')


# ----------------------------------------------------------------------------
# VideoWriter.

def _frames(n, h, w):
    frames = []
    for i in range(n):
        f = np.zeros((h, w, 3), np.uint8)
        f[:, : (i * 3) % w + 1] = 200
        frames.append(f)
    return frames


def test_video_writer(tmp_path):
    path = tmp_path / 'proj.mp4'
    with image_io.VideoWriter(path, fps=30) as video:
        for f in _frames(7, 32, 48):
            video.append(f)
        assert not path.exists()
        assert video.num_frames == 7
    assert os.listdir(tmp_path) == ['proj.mp4']
    _check_mode(path)
    frames = read_video(path)
    assert len(frames) == 7
    assert frames[0].shape == (32, 48, 3)
    # Content survives (lossy): bright on the left of the last frame, dark on the right.
    assert frames[-1][:, :10].mean() > 150 and frames[-1][:, 30:].mean() < 50


def test_video_writer_odd_size_padded(tmp_path):
    path = tmp_path / 'odd.mp4'
    video = image_io.VideoWriter(path)
    for f in _frames(3, 33, 35):
        video.append(f)
    video.close()
    frames = read_video(path)
    assert len(frames) == 3
    assert frames[0].shape == (34, 36, 3)
    assert os.listdir(tmp_path) == ['odd.mp4']


def test_video_writer_discard_and_exception(tmp_path):
    video = image_io.VideoWriter(tmp_path / 'a.mp4')
    for f in _frames(2, 16, 16):
        video.append(f)
    video.discard()
    assert os.listdir(tmp_path) == []

    with pytest.raises(RuntimeError, match='stop'):
        with image_io.VideoWriter(tmp_path / 'b.mp4') as video:
            for f in _frames(2, 16, 16):
                video.append(f)
            raise RuntimeError('stop')
    assert os.listdir(tmp_path) == []


def test_file_identity_is_the_content_and_follows_an_edit(tmp_path):
    """Digests are kept per file version (a --pairs run names one look in many rows); an edit in
    place, even to the same size, is a new version."""
    import os
    a, b = tmp_path / 'a.png', tmp_path / 'b.png'
    a.write_bytes(b'one')
    b.write_bytes(b'one')
    assert image_io.file_identity(str(a)) == image_io.file_identity(str(b)) == 'sha256:' + hashlib.sha256(b'one').hexdigest()
    before = a.stat().st_mtime_ns
    a.write_bytes(b'two')
    os.utime(a, ns=(before + 10**9, before + 10**9))
    assert image_io.file_identity(str(a)) == 'sha256:' + hashlib.sha256(b'two').hexdigest()
