"""Landmark targets as coordinates: landmark files, heat maps rendered from points, retargeting.

No network and no FAN weights: heat maps are rendered from points and read back with the
project's own arg-max (``landmark_loss.landmarks_from_heatmaps``); a stub stands in for FAN.
"""

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import landmark_loss as ll
import landmark_targets as lt
from conftest import one_line_message
from dnnlib.util import UserError

R = 256
MOUTH = np.arange(48, 68)


def face(resolution=R, margin=0.2):
    """The mean face filling the middle of an ``R x R`` image."""
    return lt.mean_face(resolution) * (1 - 2 * margin) + resolution * margin


def similarity(points, angle_deg, scale, shift):
    a = math.radians(angle_deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return scale * np.asarray(points) @ rot.T + np.asarray(shift, dtype=np.float64)


def open_mouth(points, amount):
    """Lower lip and lower inner lip moved down by ``amount`` pixels (the mouth opens)."""
    out = np.array(points, dtype=np.float64)
    out[[55, 56, 57, 58, 59, 65, 66, 67], 1] += amount
    out[[54, 48, 60, 64], 1] += amount / 2
    return out


# ----------------------------------------------------------------------------
# Rendered heat maps.

@pytest.mark.parametrize('box', [None, ll.FaceBox(100.0, 140.0, 180.0), ll.FaceBox(128.0, 128.0, 256.0)])
def test_render_read_back_subpixel(box):
    rng = np.random.RandomState(3)
    pts = face()
    sets = [pts] if box is None else []            # the face inside its own box
    box = box or lt.target_box(pts, R)
    # Random points anywhere in the heat-map grid except its outer ring (no quarter-pixel step there).
    lo = np.array([box.cx, box.cy]) - box.size / 2 + 1.5 * box.size / 64
    random_pts = lo + rng.rand(68, 2) * (box.size - 3 * box.size / 64)
    bound = 0.25 * math.sqrt(2) * box.size / ll.HEATMAP_SIZE   # a quarter heat-map pixel per axis
    for points in sets + [random_pts]:
        hm = lt.render_heatmaps(points, box)
        assert hm.shape == (1, 68, 64, 64) and float(hm.min()) >= 0 and float(hm.max()) <= 1
        back = ll.landmarks_from_heatmaps(hm, box)[0].numpy()
        err = np.linalg.norm(back - points, axis=1)
        assert err.max() <= bound + 1e-9, (err.max(), bound)
        assert np.abs(back - points).max() <= 0.25 * box.size / 64 + 1e-9


def test_render_at_pixel_centres_reads_back_exactly():
    box = ll.FaceBox(128.0, 128.0, 256.0)        # 4 image pixels per heat-map pixel
    cells = np.random.RandomState(0).randint(2, 62, size=(68, 2))
    pts = (cells + 0.5) * 4.0
    back = ll.landmarks_from_heatmaps(lt.render_heatmaps(pts, box), box)[0].numpy()
    np.testing.assert_allclose(back, pts, atol=1e-9)


@pytest.mark.parametrize('cell', [(30, 20), (6, 6), (60, 61), (63, 63)])
def test_render_matches_face_alignment_draw_gaussian(cell):
    """At a heat-map pixel's centre the render is face_alignment's own training target.

    (Not within 6 pixels of the left or top edge: there draw_gaussian's window offsets are wrong
    and its peak lands 1-2 pixels too far right / down -- a point in pixel 0-4 peaks at 2-6 --
    which the render does not copy.)
    """
    from face_alignment.utils import draw_gaussian
    jx, jy = cell
    box = ll.FaceBox(32.0, 32.0, 64.0)            # heat-map pixels = image pixels
    pts = np.tile([[jx + 0.5, jy + 0.5]], (68, 1))
    ours = lt.render_heatmaps(pts, box)[0, 0].numpy()
    # draw_gaussian takes 1-based coordinates and puts the peak on 0-based pixel floor(q) - 1.
    theirs = draw_gaussian(np.zeros((64, 64), dtype=np.float32), [jx + 1, jy + 1], 2)
    np.testing.assert_allclose(ours, theirs, atol=1e-6)
    assert ours[jy, jx] == pytest.approx(1.0)
    assert (ours > 0).sum() == (theirs > 0).sum()


def test_render_shapes_boxes_and_tensors():
    pts = face()
    box = lt.target_box(pts, R)
    batch = np.stack([pts, pts + 3])
    boxes = [box, ll.FaceBox(box.cx + 3, box.cy + 3, box.size)]
    hm = lt.render_heatmaps(torch.from_numpy(batch).float(), boxes)
    assert hm.shape == (2, 68, 64, 64) and hm.dtype == torch.float32
    torch.testing.assert_close(hm[0], hm[1])   # the same face in a box moved with it
    assert lt.render_heatmaps(batch, box, size=32).shape == (2, 68, 32, 32)
    with pytest.raises(ValueError):
        lt.render_heatmaps(batch, [box])
    # A point far outside the grid draws nothing; the others are unaffected.
    far = pts.copy()
    far[0] = [-500, -500]
    hm_far = lt.render_heatmaps(far, box)
    assert float(hm_far[0, 0].abs().max()) == 0
    torch.testing.assert_close(hm_far[0, 1:], lt.render_heatmaps(pts, box)[0, 1:])


def test_coordinate_target_from_points():
    pts = face()
    target = lt.CoordinateTarget.from_points(pts, R)
    assert target.box == ll.FaceBox.from_landmarks(pts, R)
    assert target.heatmaps.shape == (1, 68, 64, 64)
    torch.testing.assert_close(target.heatmaps, lt.render_heatmaps(pts, target.box))
    own = ll.FaceBox(120.0, 120.0, 200.0)
    assert lt.CoordinateTarget.from_points(pts, R, box=own).box == own


def test_same_points_give_zero_heatmap_loss_and_shifts_raise_it():
    pts = face()
    box = lt.target_box(pts, R)
    weights = ll.landmark_weight_vector()
    target = lt.render_heatmaps(pts, box)
    assert float(ll.heatmap_loss(lt.render_heatmaps(pts, box), target, weights)[0]) == 0
    px = box.size / 64
    losses = [float(ll.heatmap_loss(lt.render_heatmaps(pts + [s * px, 0], box), target, weights)[0])
              for s in (0.25, 0.5, 1, 2, 4)]
    assert all(b > a > 0 for a, b in zip(losses, losses[1:]))


class StubFAN(torch.nn.Module):
    """A 'FAN' that sees the face at fixed points: its heat maps are the render of ``points`` in ``box``."""

    def __init__(self, points, box):
        super().__init__()
        self.register_buffer('hm', lt.render_heatmaps(points, box))

    def forward(self, crops):
        return self.hm.expand(crops.shape[0], -1, -1, -1)


def test_target_of_the_looks_detected_landmarks_starts_near_zero():
    """Landmarks detected on the look, given back as coordinates, give a near-zero heat-map loss."""
    true = face() + np.random.RandomState(5).randn(68, 2)
    box = lt.target_box(true, R)
    fan = StubFAN(true, box)
    look = torch.zeros(1, 3, R, R)
    look_hm = ll.fan_heatmaps(fan, ll.crop_faces(look, box))
    detected = ll.landmarks_from_heatmaps(look_hm, box)[0].numpy()    # what the tools measure
    weights = ll.landmark_weight_vector()
    start = float(ll.heatmap_loss(look_hm, lt.render_heatmaps(detected, box), weights)[0])
    other = float(ll.heatmap_loss(look_hm, lt.render_heatmaps(detected + [0, box.size / 64], box), weights)[0])
    assert start < 0.3 * other
    assert float(ll.landmark_error(torch.from_numpy(detected)[None], torch.from_numpy(true)[None])[0]) < 0.01


# ----------------------------------------------------------------------------
# Retargeting.

def test_similarity_transform_recovers_rotation_scale_shift_without_reflection():
    src = face()
    dst = similarity(src, 17, 1.3, [12, -7])
    scale, rot, t = lt.similarity_transform(src, dst)
    assert scale == pytest.approx(1.3)
    assert math.degrees(math.atan2(rot[1, 0], rot[0, 0])) == pytest.approx(17)
    np.testing.assert_allclose(lt.apply_similarity(src, (scale, rot, t)), dst, atol=1e-9)
    mirrored = src * [-1, 1]
    _, rot, _ = lt.similarity_transform(mirrored, src)
    assert np.linalg.det(rot) == pytest.approx(1.0)
    with pytest.raises(UserError):
        lt.similarity_transform(np.ones((5, 2)), src[:5])


@pytest.mark.parametrize('groups', [lt.DEFAULT_RETARGET_GROUPS, 'all', 'eyes,mouth'])
def test_retarget_of_the_look_moved_gives_the_look(groups):
    look = face()
    target = similarity(look, -23, 0.6, [40, 25])
    np.testing.assert_allclose(lt.retarget(look, target, groups), look, atol=1e-9)


def test_opened_mouth_moves_only_mouth_points():
    look = face()
    other_face = look.copy()
    other_face[0:17, 0] = (other_face[0:17, 0] - 128) * 1.25 + 128       # a wider jaw: must not come through
    target = similarity(open_mouth(other_face, 20), 11, 1.7, [-30, 12])
    used = lt.retarget(look, target, groups='lips')
    moved = np.flatnonzero(np.linalg.norm(used - look, axis=1) > 1e-6)
    assert set(moved) <= set(MOUTH) and len(moved) > 0
    np.testing.assert_allclose(used[MOUTH], open_mouth(look, 20)[MOUTH], atol=1e-6)
    np.testing.assert_array_equal(used[:48], look[:48])
    # The default groups also take the eyes and eyebrows, here the same as the look's; never the jaw.
    np.testing.assert_allclose(lt.retarget(look, target), used, atol=1e-6)


def test_parse_retarget_groups():
    assert lt.parse_retarget_groups(lt.DEFAULT_RETARGET_GROUPS_TEXT) == lt.DEFAULT_RETARGET_GROUPS
    assert lt.parse_retarget_groups('mouth, eyebrows') == ('left_eyebrow', 'right_eyebrow', 'outer_lip', 'inner_lip')
    assert lt.parse_retarget_groups('all') == tuple(ll.LANDMARK_GROUPS)
    np.testing.assert_array_equal(lt.group_indices('lips'), MOUTH)
    for bad in ('', 'teeth', 'eyes,,ears'):
        with pytest.raises(UserError) as excinfo:
            lt.parse_retarget_groups(bad)
        assert one_line_message(excinfo).startswith('--retarget-groups')


def test_retarget_sequence_follows_the_driver_with_the_looks_geometry():
    look = face()
    driver_face = face() * 0.8 + 10
    driver_face[0:17, 0] = (driver_face[0:17, 0] - 112) * 1.2 + 112        # a wider jaw: must not come through
    driver_face[48:68, 0] = (driver_face[48:68, 0] - 112) * 1.15 + 112     # a wider mouth: nor this
    to_driver = lambda p: similarity(p, 8, 0.9, [15, -5])  # noqa: E731
    look_frames = [look, open_mouth(look, 6), open_mouth(look, 12)]
    # The driver does what the look's frames do, in its own geometry and pose.
    driving = [to_driver(driver_face + (f - look) * 0.8) for f in look_frames]
    used = lt.retarget_sequence(look, driving)
    assert used.shape == (3, 68, 2)
    np.testing.assert_allclose(used[0], look, atol=1e-9)
    np.testing.assert_allclose(used, np.stack(look_frames), atol=1e-6)
    # Streaming gives the same; restricted groups move only those points.
    stream = lt.SequenceRetargeter(look, driving[0])
    np.testing.assert_allclose(stream(driving[2]), used[2])
    eyes_only = lt.retarget_sequence(look, driving, groups='eyes')
    np.testing.assert_allclose(eyes_only, np.stack([look] * 3), atol=1e-9)
    assert lt.retarget_sequence(look, []).shape == (0, 68, 2)


def test_jaw_shape_change():
    look = face()
    assert lt.jaw_shape_change(look, look) == 0
    eye = np.linalg.norm(look[36] - look[45])
    wider = look.copy()
    wider[0:17, 0] += 5.0
    assert lt.jaw_shape_change(wider, look) == pytest.approx(5.0 / eye)
    moved_mouth = open_mouth(look, 10)
    assert lt.jaw_shape_change(moved_mouth, look) == 0
    batch = lt.jaw_shape_change(np.stack([look, wider]), np.stack([look, look]))
    np.testing.assert_allclose(batch, [0, 5.0 / eye])


# ----------------------------------------------------------------------------
# Landmark files.

def test_is_landmark_file():
    for name in ('a.json', 'b.NPY', 'c.npz', 'd.pts'):
        assert lt.is_landmark_file(name)
    for name in ('a.png', 'b.jpg', 'c.mp4', 'json'):
        assert not lt.is_landmark_file(name)


@pytest.mark.parametrize('suffix', ['.json', '.npy', '.npz', '.pts'])
def test_file_round_trip(tmp_path, suffix):
    pts = face() + np.random.RandomState(1).rand(68, 2)
    path = tmp_path / f'landmarks{suffix}'
    lt.write_landmark_file(path, pts, R)
    np.testing.assert_allclose(lt.read_landmark_file(path, resolution=R), pts, atol=1e-3)
    stored, size = lt.read_landmark_points(path)
    np.testing.assert_allclose(stored, pts, atol=1e-3)
    assert size == ((R, R) if suffix in ('.json', '.npz') else None)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith('.')]   # atomic: no temporary left


def test_json_format_as_documented(tmp_path):
    pts = face(1024)
    path = tmp_path / 'l.json'
    lt.write_landmark_file(path, torch.from_numpy(pts), (1024, 1024))
    data = json.loads(path.read_text())
    assert list(data) == ['size', 'landmarks'] and data['size'] == [1024, 1024]
    assert len(data['landmarks']) == 68 and all(len(p) == 2 for p in data['landmarks'])
    # A bare list of 68 [x, y] in the generator's pixels.
    bare = tmp_path / 'bare.json'
    bare.write_text(json.dumps(pts.tolist()))
    np.testing.assert_allclose(lt.read_landmark_file(bare, resolution=1024), pts)


def test_point_sets_in_one_file(tmp_path):
    look, target, proj = face(), open_mouth(face(), 8), face() + 1
    path = tmp_path / 'landmarks.json'
    lt.write_landmark_sets(path, R, target, look=look, target=target, projection=proj, retargeted=None)
    data = json.loads(path.read_text())
    assert list(data) == ['size', 'landmarks', 'look', 'target', 'projection']
    np.testing.assert_allclose(lt.read_landmark_file(path, resolution=R), target, atol=1e-3)
    np.testing.assert_allclose(lt.read_landmark_file(f'{path}#look', resolution=R), look, atol=1e-3)
    np.testing.assert_allclose(lt.read_landmark_file(f'{path}#projection', resolution=2 * R), 2 * proj, atol=1e-2)
    assert lt.is_landmark_file(f'{path}#look') and not lt.is_landmark_file('photo.png#look')
    with pytest.raises(UserError) as excinfo:
        lt.read_landmark_file(f'{path}#mouth', resolution=R)
    assert 'no point set "mouth" (sets: landmarks, look, target, projection)' in one_line_message(excinfo)
    npz = tmp_path / 'one.npz'
    lt.write_landmark_file(npz, look, R)
    with pytest.raises(UserError) as excinfo:
        lt.read_landmark_file(f'{npz}#look', resolution=R)
    assert 'no point set "look" (sets: landmarks)' in one_line_message(excinfo)
    # A file whose name really has a '#' is read as it is.
    odd = tmp_path / 'smile#2.json'
    lt.write_landmark_file(odd, look, R)
    np.testing.assert_allclose(lt.read_landmark_file(odd, resolution=R), look, atol=1e-3)


def test_pts_is_one_based(tmp_path):
    pts = face()
    path = tmp_path / 'l.pts'
    path.write_text('version: 1\nn_points:  68\n{\n' + ''.join(f'{x} {y}\n' for x, y in pts) + '}\n')
    np.testing.assert_allclose(lt.read_landmark_file(path, resolution=R), pts - 0.5)


def test_frames_scale_to_the_generator(tmp_path):
    pts = face(1024)
    path = tmp_path / 'big.json'
    lt.write_landmark_file(path, pts, 1024)
    np.testing.assert_allclose(lt.read_landmark_file(path, resolution=R), pts / 4, atol=1e-3)
    npy = tmp_path / 'big.npy'
    np.save(npy, pts)
    np.testing.assert_allclose(lt.read_landmark_file(npy, '1024,1024', resolution=R), pts / 4)
    np.testing.assert_allclose(lt.read_landmark_file(npy, (1024, 1024), resolution=R), pts / 4)
    np.testing.assert_allclose(lt.read_landmark_file(npy, resolution=1024), pts)    # default: generator's frame
    # A 640x480 frame is centre-cropped to 480x480 (offset 80 in x), as image_io.centre_crop_resize does.
    wide = face(480) + [80, 0]
    path = tmp_path / 'wide.json'
    lt.write_landmark_file(path, wide, (640, 480))
    np.testing.assert_allclose(lt.read_landmark_file(path, resolution=R), (wide - [80, 0]) * R / 480, atol=1e-3)
    np.testing.assert_allclose(lt.to_generator_frame(wide, (640, 480), R), (wide - [80, 0]) * R / 480)
    tall = face(480) + [0, 80]
    np.testing.assert_allclose(lt.to_generator_frame(tall, (480, 640), 480), face(480))


def test_parse_frame():
    assert lt.parse_frame('640,480') == (640, 480)
    assert lt.parse_frame('640x480') == (640, 480)
    assert lt.parse_frame(None) is None
    for bad in ('640', '640,0', 'a,b', '640.5,480', '1,2,3'):
        with pytest.raises(UserError) as excinfo:
            lt.parse_frame(bad)
        assert one_line_message(excinfo).startswith('--landmarks-frame')


def _json(obj):
    return lambda path: path.write_text(json.dumps(obj) if not isinstance(obj, str) else obj)


def _pts_lines(rows, n=None):
    n = len(rows) if n is None else n
    return f'version: 1\nn_points: {n}\n{{\n' + ''.join(f'{r}\n' for r in rows) + '}\n'


GOOD = face().tolist()
MALFORMED = {
    'count.json': (_json(GOOD[:67]), 'expected 68 points'),
    'nan.json': (_json('[' + ', '.join('[NaN, 1]' if i == 3 else json.dumps(p) for i, p in enumerate(GOOD)) + ']'),
                 'point 3'),
    'string.json': (_json(GOOD[:5] + [['12', '30']] + GOOD[6:]), 'must be numbers'),
    'triple.json': (_json([p + [0] for p in GOOD]), 'expected [x, y]'),
    'far.json': (_json(GOOD[:10] + [[5000, 100]] + GOOD[11:]), 'far outside the 256x256 frame'),
    'normalized.json': (_json((face(1) * 0.5 + 0.25).tolist()), 'normalized'),
    'syntax.json': (_json('[[1, 2], '), 'not valid JSON'),
    'nokey.json': (_json({'size': [256, 256], 'points': GOOD}), '"landmarks"'),
    'badsize.json': (_json({'size': [256], 'landmarks': GOOD}), '"size"'),
    'number.json': (_json(42), 'expected a list'),
    'coincide.json': (_json([GOOD[0]] * 68), 'span only'),
    'count.npy': (lambda p: np.save(p, face()[:60]), 'expected 68 points'),
    'shape.npy': (lambda p: np.save(p, face().reshape(-1)), 'shape [68, 2]'),
    'object.npy': (lambda p: np.save(p, np.array([None] * 68, dtype=object), allow_pickle=True), 'NumPy'),
    'text.npy': (lambda p: np.save(p, np.array([['a', 'b']] * 68)), 'numbers'),
    'garbage.npy': (lambda p: p.write_bytes(b'not numpy at all'), 'NumPy'),
    'nan.npz': (lambda p: np.savez(p, landmarks=np.full((68, 2), np.nan)), 'finite'),
    'nokey.npz': (lambda p: np.savez(p, points=face()), 'no "landmarks"'),
    'count.pts': (lambda p: p.write_text(_pts_lines([f'{x} {y}' for x, y in GOOD[:67]])), 'expected 68 points'),
    'header.pts': (lambda p: p.write_text(_pts_lines([f'{x} {y}' for x, y in GOOD], n=70)), 'n_points is 70'),
    'word.pts': (lambda p: p.write_text(_pts_lines([f'{x} {y}' for x, y in GOOD[:67]] + ['1 abc'])), 'point 67'),
    'nobrace.pts': (lambda p: p.write_text('n_points: 68\n1 2\n'), 'iBUG'),
    'binary.pts': (lambda p: p.write_bytes(b'\xff\xfe\x00\x81'), 'iBUG'),
}


@pytest.mark.parametrize('name', sorted(MALFORMED))
def test_malformed_files_are_one_line_user_errors(tmp_path, name):
    make, expected = MALFORMED[name]
    path = tmp_path / name
    make(path)
    with pytest.raises(UserError) as excinfo:
        lt.read_landmark_file(path, resolution=R)
    msg = one_line_message(excinfo)
    assert msg.startswith(str(path)) and expected in msg, msg


def test_frame_errors(tmp_path):
    missing = tmp_path / 'missing.json'
    with pytest.raises(UserError) as excinfo:
        lt.read_landmark_file(missing, resolution=R)
    assert 'no such landmark file' in one_line_message(excinfo)
    path = tmp_path / 'sized.json'
    lt.write_landmark_file(path, face(512), 512)
    with pytest.raises(UserError) as excinfo:
        lt.read_landmark_file(path, '640,480', resolution=R)
    assert '512x512' in one_line_message(excinfo) and '--landmarks-frame' in one_line_message(excinfo)
    assert lt.read_landmark_file(path, '512,512', resolution=R).shape == (68, 2)
    # A face at the left edge of a wide frame lies outside the centre square the generator sees.
    side = tmp_path / 'side.json'
    lt.write_landmark_file(side, face(300, margin=0.0), (1200, 300))
    with pytest.raises(UserError) as excinfo:
        lt.read_landmark_file(side, resolution=R)
    assert 'centre-cropped to 300x300' in one_line_message(excinfo)


# ----------------------------------------------------------------------------
# The mean face and its picture.

def test_mean_face_layout():
    pts = lt.mean_face()
    assert pts.shape == (68, 2) and (pts > 0).all() and (pts < 1).all()
    mirrored = pts.copy()
    mirrored[:, 0] = 1 - mirrored[:, 0]
    pairs = [(k, 16 - k) for k in range(17)] + [(17 + k, 26 - k) for k in range(10)]
    for a, b in pairs:
        np.testing.assert_allclose(mirrored[a], pts[b], atol=1e-12)
    assert pts[36, 0] < pts[39, 0] < pts[42, 0] < pts[45, 0]          # eye corners left to right
    assert pts[19, 1] < pts[37, 1] < pts[30, 1] < pts[51, 1] < pts[57, 1] < pts[8, 1]   # brow, eye, nose, lips, chin
    np.testing.assert_allclose(lt.mean_face(200, 100), pts * [200, 100])


def test_landmark_figure_script(tmp_path):
    out = tmp_path / 'landmarks68.png'
    script = Path(__file__).resolve().parents[1] / 'docs' / 'make_landmark_figure.py'
    spec = importlib.util.spec_from_file_location('make_landmark_figure', script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(['--out', str(out), '--size', '400'])
    from PIL import Image
    with Image.open(out) as img:
        assert img.size[0] == 400 and img.mode == 'RGB'


def test_a_json_file_saved_with_a_byte_order_mark_reads(tmp_path):
    """Windows Notepad writes UTF-8 with a BOM."""
    points = lt.mean_face(64, 64)
    path = tmp_path / 'notepad.json'
    path.write_bytes(b'\xef\xbb\xbf' + json.dumps(dict(size=[64, 64], landmarks=points.tolist())).encode())
    read, frame = lt.read_landmark_points(path)
    np.testing.assert_allclose(read, points)
    assert tuple(frame) == (64, 64)


@pytest.mark.parametrize('name', ['points.csv', 'points.TXT', 'points.tsv'])
def test_points_as_text_say_which_files_are_read(tmp_path, name):
    with pytest.raises(UserError) as excinfo:
        lt.refuse_points_as_text(tmp_path / name)
    message = one_line_message(excinfo)
    assert message.startswith('--target_landmarks: ') and '.json, .npy, .npz, .pts' in message
    lt.refuse_points_as_text(tmp_path / 'face.png')  # images pass
