"""Landmark targets given as coordinates: landmark files, heat maps rendered from points, and
retargeting (the target's expression on the look's face).

**Points.** 68 facial landmarks in the iBUG 300-W order that FAN and dlib share
(``landmark_loss.LANDMARK_GROUPS``; the numbered picture is ``docs/landmarks68.png``), as a
float array ``[68, 2]`` of ``(x, y)`` pixel coordinates. Coordinates are continuous: pixel ``i``
covers ``[i, i + 1)``, so the centre of the top-left pixel is ``(0.5, 0.5)`` -- the convention
of ``landmark_loss`` and of the ``landmarks.json`` files the tools write.

**Landmark files** (``read_landmark_file`` / ``write_landmark_file``; ``is_landmark_file`` tells
them from images by suffix):

* ``.json``: a list of 68 ``[x, y]``, or ``{"size": [W, H], "landmarks": [[x, y], ...]}``
  (other keys are ignored);
* ``.npy``: an array ``[68, 2]``; ``.npz``: key ``landmarks`` ``[68, 2]``, optional key ``size``;
* ``.pts``: the iBUG text format (``version: 1``, ``n_points: 68``, the points between ``{``
  and ``}``). iBUG coordinates are 1-based (the top-left pixel's centre is ``(1, 1)``), so 0.5 is
  subtracted on reading and added on writing.

``write_landmark_sets`` writes several sets of one frame into one JSON file (``"landmarks"`` plus
named sets such as ``"look"``, ``"projection"``); ``FILE.json#look`` reads the set ``look``.

The coordinates are pixels of a *frame*: the file's ``size``, else ``--landmarks-frame W,H``,
else the generator's resolution. They are mapped to the generator's ``R x R`` pixels the way
``image_io.centre_crop_resize`` maps an image of that frame: centre-crop to the square of side
``min(W, H)`` (offsets ``(W - side) // 2``, ``(H - side) // 2``), then scale by ``R / side``. So a
landmark file of a 640x480 photo lines up with that photo given as an image target.

**Rendered heat maps** (``render_heatmaps``): FAN's training targets are face_alignment's
``draw_gaussian(heatmap, point, sigma=2)``: a window of ``6 * sigma + 1 = 13`` heat-map pixels
holding torch's ``image.gaussian(13)`` kernel -- standard deviation ``0.25 * 13 = 3.25`` heat-map
pixels, peak 1 (not normalized to unit sum), cut off 6 pixels from the centre, values capped at
1 -- on FAN's 64x64 grid of the 256x256 face crop. face_alignment rounds the centre to a whole
heat-map pixel (its 1-based ``transform`` / ``draw_gaussian`` offsets put the peak on the pixel
holding the point); here the same kernel is centred at the point's continuous position, so the
peak pixel is the same, and a render read back with ``landmarks_from_heatmaps`` (arg-max plus the
quarter-pixel step, in this same pixel-centre convention) returns the point to within 0.25
heat-map pixel per axis (``0.25 * sqrt(2) * box.size / 64`` image pixels). Within 6 pixels of
the grid's left or top edge draw_gaussian's window offsets are wrong and its peak lands 1-2
pixels off; that is not copied. The grid is that of the face crop ``box`` through which FAN sees
the synthesized image, so the target and FAN's output are compared pixel for pixel.

**Retargeting** (``retarget``, ``SequenceRetargeter``): a similarity transform (rotation, uniform
scale, shift; no reflection; Umeyama's least squares) fitted on stable points -- the outer eye
corners 36 and 45, the nose bridge 27-30, the nose base 31-35 -- maps the target's points onto the
look's; the used target takes the named groups (default: eyebrows, eyes, outer and inner lip)
from the aligned target and the look's own points elsewhere (jaw, nose), so the look's face shape
is kept. For a driving sequence, each frame's used target is the look's points plus the aligned
change of that driving frame from driving frame 0.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence, Tuple, Union

import numpy as np
import torch

import image_io
from dnnlib.util import UserError
from landmark_loss import HEATMAP_SIZE, LANDMARK_GROUPS, NUM_LANDMARKS, OUTER_EYE_CORNERS, FaceBox
from torch_utils import misc

PathLike = Union[str, os.PathLike]
Frame = Tuple[int, int]

LANDMARK_SUFFIXES = ('.json', '.npy', '.npz', '.pts')

# A point more than this fraction of the frame's width / height outside the frame is an error
# (a face may reach a little past the edge; a point far outside means the wrong frame or units).
FAR_OUTSIDE = 0.5
# Points spanning less than this fraction of the frame's shorter side: a face too small to use,
# most often coordinates normalized to [0, 1] instead of pixels.
MIN_EXTENT = 0.02

# face_alignment's draw_gaussian(..., sigma=2): 13-pixel window, torch image.gaussian kernel.
GAUSSIAN_WINDOW = 13                      # 6 * sigma + 1
GAUSSIAN_STD = 0.25 * GAUSSIAN_WINDOW     # 3.25 heat-map pixels
GAUSSIAN_REACH = GAUSSIAN_WINDOW // 2     # 6 pixels from the centre pixel

STABLE_POINTS = (36, 45, 27, 28, 29, 30, 31, 32, 33, 34, 35)  # outer eye corners, nose bridge, nose base
DEFAULT_RETARGET_GROUPS = ('left_eyebrow', 'right_eyebrow', 'left_eye', 'right_eye', 'outer_lip', 'inner_lip')
DEFAULT_RETARGET_GROUPS_TEXT = ','.join(DEFAULT_RETARGET_GROUPS)
GROUP_ALIASES = {
    'eyebrows': ('left_eyebrow', 'right_eyebrow'),
    'eyes': ('left_eye', 'right_eye'),
    'nose': ('nose_bridge', 'lower_nose'),
    'lips': ('outer_lip', 'inner_lip'),
    'mouth': ('outer_lip', 'inner_lip'),
    'all': tuple(LANDMARK_GROUPS),
}
JAW = LANDMARK_GROUPS['jaw']


# ----------------------------------------------------------------------------
# Frames.

def parse_frame(text: Union[str, Sequence[float], None], what: str = '--landmarks-frame') -> Optional[Frame]:
    """``'W,H'`` (or ``'WxH'``, or a pair) -> ``(W, H)`` positive integers; None stays None."""
    if text is None:
        return None
    if isinstance(text, str):
        parts = [p.strip() for p in text.replace('x', ',').replace('X', ',').split(',')]
    else:
        parts = list(text)
    try:
        values = [float(p) for p in parts]
    except (TypeError, ValueError):
        values = []
    if len(values) != 2 or not all(math.isfinite(v) and v >= 1 and v == int(v) for v in values):
        raise UserError(f'{what}: expected the frame size as W,H in whole pixels (e.g. 1024,1024), got {text!r}')
    return int(values[0]), int(values[1])


def to_generator_frame(points: np.ndarray, frame: Frame, resolution: int) -> np.ndarray:
    """Points ``[..., 2]`` in pixels of a ``W x H`` frame -> pixels of the generator's ``R x R`` image.

    Centre-crop to the square of side ``min(W, H)`` and scale to ``R``, as
    ``image_io.centre_crop_resize`` does to an image of that frame.
    """
    w, h = frame
    side = min(w, h)
    offset = np.array([(w - side) // 2, (h - side) // 2], dtype=np.float64)
    return (np.asarray(points, dtype=np.float64) - offset) * (resolution / side)


# ----------------------------------------------------------------------------
# Reading and writing landmark files.

def split_set_name(path: PathLike) -> Tuple[Path, Optional[str]]:
    """``'landmarks.json#look'`` -> ``(Path('landmarks.json'), 'look')``: a named point set of a
    file ``write_landmark_sets`` wrote. A path that exists as given is never split."""
    text = os.fspath(path)
    base, sep, name = text.rpartition('#')
    if sep and name and not Path(text).exists():
        suffix = Path(base).suffix.lower()
        if suffix in ('.json', '.npz'):
            return Path(base), name
        if suffix in LANDMARK_SUFFIXES:
            raise UserError(f'{text}: a {suffix} file holds one set of points; #{name} names a set of a .json '
                            f'or .npz file only')
    return Path(text), None


def refuse_points_as_text(path: PathLike, what: str = '--target_landmarks') -> None:
    """A ``.csv``, ``.tsv`` or ``.txt`` target is points written by hand or by another tool, not an
    image: say which landmark files are read, rather than that the file is not an image."""
    suffix = Path(str(path)).suffix.lower()
    if suffix in ('.csv', '.tsv', '.txt'):
        raise UserError(f'{what}: {path}: {suffix} files are not read; give points as '
                        f'{", ".join(LANDMARK_SUFFIXES)} (README: "Landmark targets as coordinates")')


def is_landmark_file(path: PathLike) -> bool:
    """Whether ``path`` names a landmark file (by its suffix, after any ``#set``) rather than an image."""
    return split_set_name(path)[0].suffix.lower() in LANDMARK_SUFFIXES


def _fail(path, message: str):
    raise UserError(f'{path}: {message}')


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _points_from_list(path, value) -> np.ndarray:
    if not isinstance(value, list):
        _fail(path, f'"landmarks" must be a list of {NUM_LANDMARKS} [x, y] pairs')
    for i, p in enumerate(value):
        if not isinstance(p, list) or len(p) != 2:
            _fail(path, f'point {i} is {json.dumps(p)[:40]}, expected [x, y] (a pair of numbers)')
        if not all(_is_number(v) for v in p):
            _fail(path, f'point {i} is {json.dumps(p)[:40]}: coordinates must be numbers')
    if len(value) != NUM_LANDMARKS:
        _fail(path, f'expected {NUM_LANDMARKS} points (the iBUG 68-point layout), got {len(value)}')
    return np.array(value, dtype=np.float64)


def _size_from(path, value) -> Frame:
    try:
        if isinstance(value, (list, tuple)) and all(_is_number(v) for v in value):
            return parse_frame(value, 'size')
        if isinstance(value, np.ndarray) and value.dtype.kind in 'iuf':
            return parse_frame(value.reshape(-1).tolist(), 'size')
        raise UserError('size')
    except UserError:
        _fail(path, f'"size" must be [W, H] in whole pixels, got {value!r:.40}')


def _no_set(path, name: str, names) -> None:
    _fail(path, f'no point set "{name}" (sets: {", ".join(names) or "none"})')


def _read_json(path: Path, key: str = 'landmarks') -> Tuple[np.ndarray, Optional[Frame]]:
    try:
        data = json.loads(path.read_text(encoding='utf-8-sig'))
    except UnicodeDecodeError:
        _fail(path, 'not a JSON text file')
    except json.JSONDecodeError as exc:
        _fail(path, f'not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})')
    if isinstance(data, list) and key == 'landmarks':
        return _points_from_list(path, data), None
    if isinstance(data, dict):
        if key not in data:
            if key != 'landmarks':
                _no_set(path, key, [k for k in data if k != 'size'])
            _fail(path, 'a JSON object needs a "landmarks" key (a list of 68 [x, y]) and optionally "size": [W, H]')
        size = None if data.get('size') is None else _size_from(path, data['size'])
        return _points_from_list(path, data[key]), size
    if key != 'landmarks':
        _no_set(path, key, [])
    _fail(path, 'expected a list of 68 [x, y] or {"size": [W, H], "landmarks": [...]}')


def _array_points(path, array, what: str) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype.kind not in 'iuf':
        _fail(path, f'{what} must hold numbers, got dtype {array.dtype}')
    if array.ndim != 2 or array.shape[1] != 2:
        _fail(path, f'{what} must have shape [{NUM_LANDMARKS}, 2], got {list(array.shape)}')
    if array.shape[0] != NUM_LANDMARKS:
        _fail(path, f'expected {NUM_LANDMARKS} points (the iBUG 68-point layout), got {array.shape[0]}')
    return array.astype(np.float64)


def _read_numpy(path: Path, key: str = 'landmarks') -> Tuple[np.ndarray, Optional[Frame]]:
    try:
        loaded = np.load(path, allow_pickle=False)
    except ValueError:  # pickled objects (refused), or not a NumPy file at all
        _fail(path, f'not a plain numeric NumPy {path.suffix} file')
    except Exception as exc:  # OSError, EOFError, zipfile.BadZipFile, ...
        _fail(path, f'not a NumPy {path.suffix} file ({type(exc).__name__})')
    if isinstance(loaded, np.ndarray):
        if key != 'landmarks':
            _no_set(path, key, [])
        return _array_points(path, loaded, 'the array'), None
    with loaded:
        if key not in loaded.files:
            if key != 'landmarks':
                _no_set(path, key, [k for k in loaded.files if k != 'size'])
            _fail(path, f'no "landmarks" array (keys: {", ".join(loaded.files) or "none"})')
        try:
            points = _array_points(path, loaded[key], f'"{key}"')
            size = _size_from(path, loaded['size']) if 'size' in loaded.files else None
        except ValueError:
            _fail(path, f'"{key}" must be a plain numeric array')
    return points, size


def _read_pts(path: Path) -> Tuple[np.ndarray, Optional[Frame]]:
    try:
        lines = [line.strip() for line in path.read_text(encoding='utf-8').splitlines()]
    except UnicodeDecodeError:
        _fail(path, 'not an iBUG .pts text file')
    lines = [line for line in lines if line]
    try:
        start, end = lines.index('{'), lines.index('}')
    except ValueError:
        _fail(path, 'not an iBUG .pts file (expected "n_points: 68" and the points between "{" and "}")')
    header = {}
    for line in lines[:start]:
        key, _, value = line.partition(':')
        header[key.strip().lower()] = value.strip()
    rows = lines[start + 1:end]
    if 'n_points' in header and header['n_points'] != str(len(rows)):
        _fail(path, f'n_points is {header["n_points"]} but {len(rows)} points are listed')
    values = []
    for i, row in enumerate(rows):
        parts = row.split()
        try:
            xy = [float(v) for v in parts]
        except ValueError:
            xy = []
        if len(xy) != 2:
            _fail(path, f'point {i} is {row[:40]!r}, expected two numbers "x y"')
        values.append(xy)
    if len(values) != NUM_LANDMARKS:
        _fail(path, f'expected {NUM_LANDMARKS} points (the iBUG 68-point layout), got {len(values)}')
    return np.array(values, dtype=np.float64) - 0.5, None  # iBUG is 1-based


def read_landmark_points(path: PathLike) -> Tuple[np.ndarray, Optional[Frame]]:
    """The points ``[68, 2]`` of a landmark file as stored (0-based pixel convention) and the
    frame ``(W, H)`` the file names (None if it names none). No range checks.

    ``FILE.json#NAME`` (or ``.npz``) reads the point set ``NAME`` of a file with several
    (``write_landmark_sets``) instead of ``landmarks``.
    """
    path, name = split_set_name(path)
    if not path.is_file():
        raise UserError(f'{path}: no such landmark file')
    suffix = path.suffix.lower()
    try:
        if suffix == '.json':
            return _read_json(path, name or 'landmarks')
        if suffix in ('.npy', '.npz'):
            return _read_numpy(path, name or 'landmarks')
        if suffix == '.pts':
            return _read_pts(path)
    except PermissionError:
        _fail(path, 'cannot be read (permission denied)')
    raise UserError(f'{path}: not a landmark file (expected {", ".join(LANDMARK_SUFFIXES)})')


def check_points(points: np.ndarray, frame: Frame, source: str, margin: float = FAR_OUTSIDE) -> None:
    """``UserError`` unless the ``[68, 2]`` points are finite, spread out, and not far outside ``W x H``."""
    w, h = frame
    bad = np.flatnonzero(~np.isfinite(points).all(axis=1))
    if bad.size:
        _fail(source, f'point {bad[0]} is {points[bad[0]].tolist()}: coordinates must be finite numbers')
    lo, hi = np.array([-margin * w, -margin * h]), np.array([(1 + margin) * w, (1 + margin) * h])
    far = np.flatnonzero(((points < lo) | (points > hi)).any(axis=1))
    if far.size:
        x, y = points[far[0]]
        _fail(source, f'point {far[0]} at ({x:g}, {y:g}) is far outside the {w}x{h} frame (coordinates are pixels '
                      f'of that frame; give it as "size" in the file or with --landmarks-frame W,H)')
    extent = float((points.max(axis=0) - points.min(axis=0)).max())
    if extent < MIN_EXTENT * min(w, h):
        _fail(source, f'the points span only {extent:g} pixels of the {w}x{h} frame (coordinates must be pixels, '
                      f'not normalized to [0, 1])')
    a, b = OUTER_EYE_CORNERS
    if np.allclose(points[a], points[b]):
        _fail(source, f'the outer eye corners {a} and {b} coincide (points must follow the iBUG 68-point layout)')


def read_landmark_file(path: PathLike, frame: Union[None, str, Frame] = None, *, resolution: int) -> np.ndarray:
    """Landmarks ``[68, 2]`` (float64) of a landmark file, in pixels of the generator's ``R x R`` image.

    ``frame``: ``(W, H)`` or ``'W,H'`` (``--landmarks-frame``), used when the file names no
    frame; default ``(R, R)``. A file whose ``size`` differs from a given ``frame`` is an error.
    Every problem (missing file, wrong format or count, NaN, non-numbers, points far outside the
    frame or outside the centre square the generator sees) is a one-line ``UserError``.
    """
    frame = parse_frame(frame)
    points, size = read_landmark_points(path)
    if size is not None and frame is not None and tuple(size) != tuple(frame):
        _fail(path, f'the file gives the frame {size[0]}x{size[1]} but --landmarks-frame is {frame[0]},{frame[1]}')
    frame = size or frame or (resolution, resolution)
    check_points(points, frame, str(path))
    if frame[0] != frame[1]:
        side = min(frame)
        try:
            check_points(to_generator_frame(points, frame, resolution), (resolution, resolution), str(path))
        except UserError as exc:
            raise UserError(f'{exc} [the {frame[0]}x{frame[1]} frame is centre-cropped to {side}x{side}, '
                            'as image targets are]') from None
    return to_generator_frame(points, frame, resolution)


def _points_array(points) -> np.ndarray:
    pts = np.asarray(points.detach().cpu() if isinstance(points, torch.Tensor) else points, dtype=np.float64)
    pts = pts.reshape(NUM_LANDMARKS, 2)
    if not np.isfinite(pts).all():
        raise ValueError('landmarks must be finite')
    return pts


def _frame_size(size: Union[int, Frame]) -> Frame:
    w, h = (size, size) if np.isscalar(size) else size
    return int(w), int(h)


def _json_points(pts: np.ndarray) -> list:
    return [[round(float(x), 3), round(float(y), 3)] for x, y in pts]


def write_landmark_sets(path: PathLike, size: Union[int, Frame], landmarks, **sets) -> None:
    """One JSON file with several point sets of one frame, atomically:
    ``{"size": [W, H], "landmarks": [...], "look": [...], ...}``.

    ``read_landmark_file(path)`` reads ``landmarks``; ``read_landmark_file(path + '#look')``
    the set ``look``. Sets that are None are left out.
    """
    if Path(path).suffix.lower() != '.json':
        raise ValueError(f'{path}: point sets are written as .json')
    data = {'size': list(_frame_size(size)), 'landmarks': _json_points(_points_array(landmarks))}
    for name, points in sets.items():
        if name in data:
            raise ValueError(f'{name!r} is not a point set name')
        if points is not None:
            data[name] = _json_points(_points_array(points))
    image_io.save_json(path, data)


def write_landmark_file(path: PathLike, points, size: Union[int, Frame]) -> None:
    """Write ``[68, 2]`` points (pixels of a ``size`` = ``R`` or ``(W, H)`` frame), atomically.

    By suffix: ``.json`` ``{"size": [W, H], "landmarks": [[x, y], ...]}`` (3 decimals; the format
    ``read_landmark_file`` reads back), ``.npz`` (``landmarks``, ``size``), ``.npy`` (points
    only), ``.pts`` (iBUG, 1-based).
    """
    pts = _points_array(points)
    w, h = _frame_size(size)
    suffix = Path(path).suffix.lower()
    if suffix == '.json':
        image_io.save_json(path, {'size': [w, h], 'landmarks': _json_points(pts)})
    elif suffix == '.npz':
        image_io.save_npz(path, landmarks=pts, size=np.array([w, h], dtype=np.int64))
    elif suffix == '.npy':
        with image_io.atomic_path(path) as tmp:
            with open(tmp, 'wb') as f:
                np.save(f, pts)
    elif suffix == '.pts':
        with image_io.atomic_path(path) as tmp:
            with open(tmp, 'w', encoding='utf-8') as f:
                f.write(f'version: 1\nn_points: {NUM_LANDMARKS}\n{{\n')
                f.writelines(f'{x + 0.5:.3f} {y + 0.5:.3f}\n' for x, y in pts)
                f.write('}\n')
    else:
        raise ValueError(f'{path}: landmark files end in {", ".join(LANDMARK_SUFFIXES)}')


# ----------------------------------------------------------------------------
# Heat maps rendered from points.

def _as_points_tensor(points) -> torch.Tensor:
    pts = points.detach() if isinstance(points, torch.Tensor) else torch.as_tensor(np.asarray(points, dtype=np.float64))
    pts = pts.to(torch.float64)
    return pts[None] if pts.ndim == 2 else pts


def render_heatmaps(points, box: Union[FaceBox, Sequence[FaceBox]], size: int = HEATMAP_SIZE,
                    device: Union[str, torch.device, None] = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """FAN-style target heat maps of landmarks seen through a face crop.

    ``points``: ``[68, 2]`` or ``[N, 68, 2]`` image pixels (array or tensor); ``box``: the face
    box of FAN's crop (one, or one per sample). Returns ``[N, 68, size, size]`` (``N = 1`` for
    ``[68, 2]``) in ``[0, 1]``: per landmark face_alignment's 13x13 Gaussian (std 3.25 heat-map
    pixels, peak 1) centred at the point's continuous heat-map position
    ``(x - cx) * size / box.size + size / 2`` (pixel ``j`` centred at ``j + 0.5``); pixels more
    than 6.5 from the centre in x or y are 0. Points outside the grid draw what falls inside.
    """
    pts = _as_points_tensor(points)
    misc.assert_shape(pts, [None, NUM_LANDMARKS, 2])
    n = pts.shape[0]
    boxes = [box] * n if isinstance(box, FaceBox) else list(box)
    if len(boxes) != n:
        raise ValueError(f'render_heatmaps: {n} point sets but {len(boxes)} boxes')
    centre = torch.tensor([[b.cx, b.cy] for b in boxes], dtype=torch.float64)[:, None, :]     # [N, 1, 2]
    scale = torch.tensor([size / b.size for b in boxes], dtype=torch.float64)[:, None, None]  # [N, 1, 1]
    uv = (pts.cpu() - centre) * scale + size / 2                                                # [N, 68, 2]
    grid = torch.arange(size, dtype=torch.float64) + 0.5
    d = grid[None, None, None, :] - uv[..., None]                                               # [N, 68, 2, size]
    g = torch.exp(-0.5 * (d / GAUSSIAN_STD) ** 2) * (d.abs() <= GAUSSIAN_REACH + 0.5)
    heatmaps = (g[:, :, 1, :, None] * g[:, :, 0, None, :]).clamp(max=1)                         # rows y, columns x
    return heatmaps.to(device=device if device is not None else pts.device, dtype=dtype)


def target_box(points, width: int, height: Optional[int] = None) -> FaceBox:
    """The face box for a coordinate target: face_alignment's box for these landmarks
    (``FaceBox.from_landmarks``), the crop in which FAN sees the synthesized image."""
    pts = points.detach().cpu().numpy() if isinstance(points, torch.Tensor) else np.asarray(points)
    return FaceBox.from_landmarks(pts.reshape(NUM_LANDMARKS, 2), width, height)


@dataclass
class CoordinateTarget:
    """A landmark target without an image: points ``[68, 2]`` (generator pixels), the face box
    FAN's crop is taken from, and the target heat maps ``[1, 68, 64, 64]`` rendered in that box."""
    points: np.ndarray
    box: FaceBox
    heatmaps: torch.Tensor

    @classmethod
    def from_points(cls, points, resolution: int, box: Optional[FaceBox] = None,
                    device: Union[str, torch.device] = 'cpu') -> 'CoordinateTarget':
        pts = np.asarray(points.detach().cpu() if isinstance(points, torch.Tensor) else points,
                         dtype=np.float64).reshape(NUM_LANDMARKS, 2)
        box = box if box is not None else target_box(pts, resolution)
        return cls(pts, box, render_heatmaps(pts, box, device=device))


# ----------------------------------------------------------------------------
# Similarity transforms and retargeting.

def _np_points(points) -> np.ndarray:
    if isinstance(points, torch.Tensor):
        points = points.detach().cpu().numpy()
    return np.asarray(points, dtype=np.float64)


def similarity_transform(src, dst) -> Tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity ``dst ~ scale * R @ src + t`` (Umeyama 1991; rotation, no reflection).

    ``src``, ``dst``: ``[K, 2]``, ``K >= 2`` not all equal. Returns ``(scale, R [2, 2], t [2])``.
    """
    src, dst = _np_points(src).reshape(-1, 2), _np_points(dst).reshape(-1, 2)
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    xs, xd = src - mu_s, dst - mu_d
    var_s = float((xs ** 2).sum() / len(src))
    if not var_s > 1e-12:
        raise UserError('cannot align landmarks: the stable points (eye corners, nose) of the target coincide')
    u, s, vt = np.linalg.svd(xd.T @ xs / len(src))
    d = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rot = u @ d @ vt
    scale = float(np.trace(np.diag(s) @ d) / var_s)
    return scale, rot, mu_d - scale * rot @ mu_s


def apply_similarity(points, transform: Tuple[float, np.ndarray, np.ndarray]) -> np.ndarray:
    """``scale * R @ p + t`` for every row of ``points [..., 2]``."""
    scale, rot, t = transform
    return scale * _np_points(points) @ rot.T + t


def align_points(target_points, look_points, stable: Sequence[int] = STABLE_POINTS) -> np.ndarray:
    """The target's ``[68, 2]`` points moved onto the look's by the similarity fitted on ``stable``."""
    target = _np_points(target_points).reshape(NUM_LANDMARKS, 2)
    look = _np_points(look_points).reshape(NUM_LANDMARKS, 2)
    stable = list(stable)
    return apply_similarity(target, similarity_transform(target[stable], look[stable]))


def parse_retarget_groups(text: Union[str, Sequence[str]], what: str = '--retarget-groups') -> Tuple[str, ...]:
    """Group names (``landmark_loss.LANDMARK_GROUPS`` or the aliases eyebrows, eyes, nose, lips /
    mouth, all), comma-separated or a sequence -> the group names, in ``LANDMARK_GROUPS`` order."""
    names = [p.strip().lower() for p in (text.split(',') if isinstance(text, str) else text) if p.strip()]
    if not names:
        raise UserError(f'{what}: name at least one landmark group')
    chosen = set()
    for name in names:
        if name in LANDMARK_GROUPS:
            chosen.add(name)
        elif name in GROUP_ALIASES:
            chosen.update(GROUP_ALIASES[name])
        else:
            raise UserError(f'{what}: unknown landmark group {name!r} (groups: {", ".join(LANDMARK_GROUPS)}; '
                            f'or {", ".join(GROUP_ALIASES)})')
    return tuple(g for g in LANDMARK_GROUPS if g in chosen)


def retarget_groups_option(retarget: bool, text: Optional[str]) -> Tuple[str, ...]:
    """``--retarget-groups`` as the commands take it: the groups (``DEFAULT_RETARGET_GROUPS`` when
    not given); giving it without ``--retarget`` is a ``UserError``."""
    if text is not None and not retarget:
        raise UserError('--retarget-groups only applies with --retarget')
    return parse_retarget_groups(DEFAULT_RETARGET_GROUPS_TEXT if text is None else text)


def group_indices(groups: Union[str, Sequence[str]]) -> np.ndarray:
    """The point indices (ascending) of the named landmark groups."""
    idx = [i for g in parse_retarget_groups(groups) for i in range(LANDMARK_GROUPS[g][0], LANDMARK_GROUPS[g][1] + 1)]
    return np.array(sorted(idx), dtype=np.int64)


def retarget(look_points, target_points, groups: Union[str, Sequence[str]] = DEFAULT_RETARGET_GROUPS,
             stable: Sequence[int] = STABLE_POINTS) -> np.ndarray:
    """The used target ``[68, 2]``: the look's points, with the named ``groups`` replaced by the
    target's points aligned to the look (similarity fitted on ``stable``, target -> look)."""
    look = _np_points(look_points).reshape(NUM_LANDMARKS, 2)
    aligned = align_points(target_points, look, stable)
    used = look.copy()
    idx = group_indices(groups)
    used[idx] = aligned[idx]
    return used


class SequenceRetargeter:
    """Per-frame used targets for a driving sequence, one frame at a time (streams).

    ``retargeter(driving_points [68, 2]) -> [68, 2]``: the look's points plus the change of that
    driving frame from driving frame 0 (``first_driving_points``), rotated and scaled into the
    look's frame by the similarity fitted on ``stable`` from driving frame 0 to the look. The
    change moves the points of ``groups`` (default: all 68, so head motion and the jaw's opening
    come through too); the look's geometry (face shape, eye spacing) stays.
    """

    def __init__(self, look_points, first_driving_points, groups: Union[None, str, Sequence[str]] = None,
                 stable: Sequence[int] = STABLE_POINTS):
        self.look = _np_points(look_points).reshape(NUM_LANDMARKS, 2)
        self.first = _np_points(first_driving_points).reshape(NUM_LANDMARKS, 2)
        stable = list(stable)
        scale, rot, _ = similarity_transform(self.first[stable], self.look[stable])
        self.linear = scale * rot
        self.indices = np.arange(NUM_LANDMARKS) if groups is None else group_indices(groups)

    def __call__(self, driving_points) -> np.ndarray:
        change = (_np_points(driving_points).reshape(NUM_LANDMARKS, 2) - self.first) @ self.linear.T
        used = self.look.copy()
        used[self.indices] += change[self.indices]
        return used


def retarget_sequence(look_points, driving_points_list: Iterable, groups: Union[None, str, Sequence[str]] = None,
                      stable: Sequence[int] = STABLE_POINTS) -> np.ndarray:
    """Used targets ``[T, 68, 2]`` for driving frames ``[68, 2]`` each (see ``SequenceRetargeter``)."""
    frames = [_np_points(p).reshape(NUM_LANDMARKS, 2) for p in driving_points_list]
    if not frames:
        return np.zeros([0, NUM_LANDMARKS, 2])
    retargeter = SequenceRetargeter(look_points, frames[0], groups, stable)
    return np.stack([retargeter(p) for p in frames])


def jaw_shape_change(proj_points, look_points):
    """Mean distance of the jaw points (0-16) of ``proj_points`` from those of ``look_points``,
    over the look's outer-eye-corner distance: ``[68, 2]`` -> float, ``[N, 68, 2]`` -> ``[N]``."""
    proj, look = _np_points(proj_points), _np_points(look_points)
    a, b = OUTER_EYE_CORNERS
    first, last = JAW
    eye = np.maximum(np.linalg.norm(look[..., a, :] - look[..., b, :], axis=-1), 1e-6)
    value = np.linalg.norm(proj[..., first:last + 1, :] - look[..., first:last + 1, :], axis=-1).mean(axis=-1) / eye
    return float(value) if np.ndim(value) == 0 else value


# ----------------------------------------------------------------------------
# A mean face layout (for the numbered picture and for tests).

def _mirror(points: dict, pairs) -> None:
    for left, right in pairs:
        x, y = points[left]
        points[right] = (1.0 - x, y)


def mean_face(width: float = 1.0, height: Optional[float] = None) -> np.ndarray:
    """A frontal, symmetric face ``[68, 2]`` in the iBUG order, filling a ``width x height`` frame
    (default the unit square): the layout of ``docs/landmarks68.png``. Hand-placed proportions
    (eyes at 41% of the height, mouth at 72%, chin at 92%), not a statistical mean."""
    height = width if height is None else height
    p = {}
    for k in range(9):                                   # jaw 0-8: from the ear (image left) down to the chin
        t = k * math.pi / 16
        c, s = math.cos(t), math.sin(t)
        p[k] = (0.5 - 0.40 * c ** 0.8, 0.40 + 0.52 * s ** 1.3)
    for k, x in enumerate(np.linspace(0.17, 0.43, 5)):   # eyebrow 17-21, outer to inner
        p[17 + k] = (float(x), 0.305 - 0.045 * math.sin(math.pi * (0.15 + 0.7 * k / 4)))
    for k, y in enumerate(np.linspace(0.40, 0.575, 4)):  # nose bridge 27-30, down to the tip
        p[27 + k] = (0.5, float(y))
    p.update({31: (0.435, 0.610), 32: (0.467, 0.622), 33: (0.5, 0.628)})
    p.update({36: (0.215, 0.415), 37: (0.260, 0.390), 38: (0.320, 0.390), 39: (0.365, 0.420),
              40: (0.318, 0.435), 41: (0.262, 0.435)})
    p.update({48: (0.375, 0.715), 49: (0.410, 0.693), 50: (0.455, 0.682), 51: (0.5, 0.688),
              57: (0.5, 0.775), 58: (0.450, 0.770), 59: (0.410, 0.752)})
    p.update({60: (0.392, 0.716), 61: (0.450, 0.707), 62: (0.5, 0.710), 66: (0.5, 0.733), 67: (0.450, 0.730)})
    _mirror(p, [(k, 16 - k) for k in range(8)])
    _mirror(p, [(17 + k, 26 - k) for k in range(5)])
    _mirror(p, [(31, 35), (32, 34)])
    _mirror(p, [(39, 42), (38, 43), (37, 44), (36, 45), (41, 46), (40, 47)])
    _mirror(p, [(48, 54), (49, 53), (50, 52), (59, 55), (58, 56)])
    _mirror(p, [(60, 64), (61, 63), (67, 65)])
    assert sorted(p) == list(range(NUM_LANDMARKS))
    return np.array([p[i] for i in range(NUM_LANDMARKS)], dtype=np.float64) * np.array([width, height])
