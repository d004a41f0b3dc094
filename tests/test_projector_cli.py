"""End-to-end and bad-input tests of the ``projector.py`` command line.

Every run uses the tiny 32x32 generator fixture and random FAN / VGG16 weight files, so nothing
is downloaded. Most runs call the click command in-process (``cli_common.run``) to avoid
re-importing torch; two tests start a real ``python projector.py`` process.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import projector
from cli_helpers import assert_nothing_written, assert_one_error_line, invoke, read_json, read_video, with_option

REPO = Path(__file__).resolve().parent.parent
GROUPS = 9
RESOLUTION, NUM_WS, W_DIM = 32, 8, 32

# On a small machine shared with other work, torch's default of one thread per core makes the
# runs here many times slower (threads wait on each other); one thread keeps them fast.
pytestmark = pytest.mark.usefixtures('one_thread')


# ----------------------------------------------------------------------------
# Helpers.

def base_args(tiny_pkl, fan_weights, vgg_weights, look, landmarks, outdir, steps=2):
    return ['--network', tiny_pkl, '--device', 'cpu', '--fan-weights', fan_weights, '--vgg-weights', vgg_weights,
            '--target_look', look, '--target_landmarks', landmarks, '--outdir', outdir, '--num-steps', steps]


def hidden_files(folder: Path):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith('.'))


def load_w(outdir: Path) -> np.ndarray:
    with np.load(outdir / 'projected_w.npz') as data:
        return data['w']


def png_info(path: Path):
    with Image.open(path) as img:
        img.load()
        return img.mode, img.size  # size is (width, height)


def free_port() -> int:
    """A local TCP port on which nothing listens (bound then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def subprocess_env(tmp_path: Path) -> dict:
    return dict(os.environ, DNNLIB_CACHE_DIR=str(tmp_path / 'dnnlib-cache'), OMP_NUM_THREADS='1')


@pytest.fixture
def args(tiny_pkl, fan_weights, vgg_weights, face_images, tmp_path):
    """Arguments of a valid 2-step run writing to ``tmp_path / 'out'``."""
    look, landmarks = face_images
    return base_args(tiny_pkl, fan_weights, vgg_weights, look, landmarks, tmp_path / 'out')


# ----------------------------------------------------------------------------
# 1. End-to-end: one 20-step run with video, checked by several tests.

E2E_STEPS = 20


@pytest.fixture(scope='module')
def e2e(tiny_pkl, fan_weights, vgg_weights, face_images, tmp_path_factory):
    look, landmarks = face_images
    outdir = tmp_path_factory.mktemp('e2e') / 'out'
    argv = base_args(tiny_pkl, fan_weights, vgg_weights, look, landmarks, outdir, steps=E2E_STEPS)
    argv += ['--save_video', '1']
    argv = [str(a) for a in argv]
    code, _, err = invoke(projector.main, argv)
    return dict(code=code, err=err, outdir=outdir, argv=argv)


def test_e2e_exit_status(e2e):
    assert e2e['code'] == 0, e2e['err']
    assert 'Traceback' not in e2e['err']


def test_e2e_images(e2e):
    out = e2e['outdir']
    for name in ('proj.png', 'target_look.png', 'target_landmarks.png'):
        assert png_info(out / name) == ('RGB', (RESOLUTION, RESOLUTION)), name
    mode, (width, height) = png_info(out / 'summary.png')
    assert mode == 'RGB'
    assert (height, width) == (RESOLUTION, 3 * RESOLUTION)


def test_e2e_latent_is_w(e2e):
    w = load_w(e2e['outdir'])
    assert w.shape == (1, NUM_WS, W_DIM)
    assert w.dtype == np.float32
    assert np.isfinite(w).all()
    for layer in range(1, NUM_WS):  # --latent w (default): one vector broadcast to every layer
        np.testing.assert_array_equal(w[0, layer], w[0, 0])


def test_e2e_video(e2e):
    frames = read_video(e2e['outdir'] / 'proj.mp4')
    assert len(frames) == E2E_STEPS
    for frame in frames:
        assert frame.shape == (RESOLUTION, 4 * RESOLUTION, 3)  # look | proj | proj+landmarks | target


def test_e2e_report(e2e):
    report = read_json(e2e['outdir'] / 'report.json')
    for key in ('command', 'settings', 'optimizer', 'generator', 'face_box', 'final_losses', 'lpips_to_look',
                'landmark_error', 'loss_first_step', 'loss_last_step', 'losses_first_step', 'seconds_per_step', 'timings',
                'environment'):
        assert key in report, key
    assert report['command'] == 'projector'

    settings = report['settings']
    for flag in ('network', 'target_look', 'target_landmarks', 'outdir', 'num_steps', 'lpips_weight',
                 'landmark_weight', 'landmark_weights', 'seed', 'save_video', 'latent', 'device',
                 'fan_weights', 'vgg_weights'):
        assert flag in settings, flag
    argv = e2e['argv']
    assert settings['network'] == argv[argv.index('--network') + 1]
    assert settings['target_look'] == argv[argv.index('--target_look') + 1]
    assert settings['target_landmarks'] == argv[argv.index('--target_landmarks') + 1]
    assert settings['outdir'] == argv[argv.index('--outdir') + 1]
    assert settings['fan_weights'] == argv[argv.index('--fan-weights') + 1]
    assert settings['vgg_weights'] == argv[argv.index('--vgg-weights') + 1]
    assert settings['num_steps'] == E2E_STEPS
    assert settings['save_video'] == 1
    assert settings['latent'] == 'w'
    assert settings['seed'] == 303
    assert settings['device'] == 'cpu'
    assert settings['lpips_weight'] == 1.0
    assert settings['landmark_weight'] == 0.1
    assert len(settings['landmark_weights']) == GROUPS

    assert report['optimizer']['num_steps'] == E2E_STEPS
    assert report['generator'] == dict(resolution=RESOLUTION, num_ws=NUM_WS, w_dim=W_DIM)
    assert set(report['face_box']) >= {'cx', 'cy', 'size'}
    assert set(report['final_losses']) >= {'lpips', 'landmark', 'noise_reg', 'total'}
    for value in report['final_losses'].values():
        assert np.isfinite(value)
    assert set(report['timings']) >= {'load_networks', 'prepare_targets', 'optimize', 'write_outputs', 'total'}
    assert all(v >= 0 for v in report['timings'].values())
    assert report['seconds_per_step'] > 0
    assert np.isfinite(report['lpips_to_look']) and report['lpips_to_look'] >= 0
    assert np.isfinite(report['landmark_error']) and report['landmark_error'] >= 0
    assert set(report['environment']) >= {'python', 'torch', 'cpu_allocator'}
    import cpu_memory  # the command kept freed memory from its start (where glibc allows)
    assert report['environment']['cpu_allocator'] == (cpu_memory.KEPT if cpu_memory.keep_freed_memory()
                                                      else cpu_memory.SYSTEM)


def test_e2e_look_and_landmark_terms_fell(e2e):
    """The LPIPS and heat-map terms themselves fell (the total is dominated by the noise term)."""
    report = read_json(e2e['outdir'] / 'report.json')
    first, final = report['losses_first_step'], report['final_losses']
    assert set(first) == set(final)
    assert final['lpips'] < 0.9 * first['lpips'], (first, final)
    assert final['landmark'] < 0.9 * first['landmark'], (first, final)


def test_e2e_no_temp_files(e2e):
    out = e2e['outdir']
    assert hidden_files(out) == []
    assert sorted(p.name for p in out.iterdir()) == sorted([
        'proj.png', 'proj.mp4', 'projected_w.npz', 'target_look.png', 'target_landmarks.png', 'summary.png',
        'landmarks.json', 'report.json'])


# ----------------------------------------------------------------------------
# 2. W+ latents.

def test_w_plus_run(args, tmp_path):
    argv = with_option(with_option(args, '--num-steps', 5), '--latent', 'w+')
    code, _, err = invoke(projector.main, argv)
    assert code == 0, err
    out = tmp_path / 'out'
    w = load_w(out)
    assert w.shape == (1, NUM_WS, W_DIM) and w.dtype == np.float32
    assert any(not np.array_equal(w[0, layer], w[0, 0]) for layer in range(1, NUM_WS))
    assert not (out / 'proj.mp4').exists()
    assert hidden_files(out) == []
    assert read_json(out / 'report.json')['settings']['latent'] == 'w+'


def test_rerun_into_the_same_folder_replaces_every_output(args, tmp_path, face_images):
    """A second run into a folder keeps none of the first run's files that it does not write again
    (its video, its landmarks.json): they would pass for the second run's."""
    out = tmp_path / 'out'
    code, _, err = invoke(projector.main, with_option(args, '--save_video', 1))
    assert code == 0, err
    assert {'proj.mp4', 'landmarks.json'} <= {p.name for p in out.iterdir()}
    look, landmarks = face_images
    second = with_option(with_option(args, '--target_look', landmarks), '--target_landmarks', look)
    code, _, err = invoke(projector.main, second + ['--no-save_landmarks'])
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == sorted([
        'proj.png', 'projected_w.npz', 'target_look.png', 'target_landmarks.png', 'summary.png', 'report.json'])
    assert read_json(out / 'report.json')['settings']['target_look'] == str(landmarks)


# ----------------------------------------------------------------------------
# 3. Seeds.

def test_seed_reproducible_and_different(args, tmp_path):
    results = {}
    for name, seed in [('a', 5), ('b', 5), ('c', 6)]:
        argv = with_option(with_option(with_option(args, '--num-steps', 3), '--seed', seed),
                           '--outdir', tmp_path / name)
        code, _, err = invoke(projector.main, argv)
        assert code == 0, err
        results[name] = load_w(tmp_path / name)
    np.testing.assert_array_equal(results['a'], results['b'])
    assert not np.array_equal(results['a'], results['c'])


# ----------------------------------------------------------------------------
# 4. Image inputs of other sizes and formats.

def _rgb(face_path: str, size) -> np.ndarray:
    with Image.open(face_path) as img:
        return np.asarray(img.convert('RGB').resize(size, Image.BICUBIC))


def _write_variant(kind: str, face_path: str, folder: Path) -> Path:
    path = folder / f'{kind}.png'
    if kind == 'rgb_50x40':
        Image.fromarray(_rgb(face_path, (50, 40))).save(path)  # width 50, height 40
    elif kind == 'rgb_64x64':
        Image.fromarray(_rgb(face_path, (64, 64))).save(path)
    elif kind == 'gray':
        Image.fromarray(_rgb(face_path, (32, 32))).convert('L').save(path)
    elif kind == 'rgba':
        rgb = _rgb(face_path, (36, 36))
        alpha = np.full(rgb.shape[:2] + (1,), 200, dtype=np.uint8)
        alpha[:4] = 0
        Image.fromarray(np.concatenate([rgb, alpha], axis=2), mode='RGBA').save(path)
    elif kind == 'gray16':
        gray = np.asarray(Image.fromarray(_rgb(face_path, (40, 40))).convert('L'), dtype=np.uint16) * 257
        Image.fromarray(gray).save(path)
    else:
        raise AssertionError(kind)
    return path


@pytest.mark.parametrize('look_kind,target_kind', [
    ('rgb_50x40', 'rgb_64x64'),
    ('gray', 'rgba'),
    ('gray16', 'rgb_50x40'),
])
def test_image_formats_and_sizes(look_kind, target_kind, args, face_images, tmp_path):
    look = _write_variant(look_kind, face_images[0], tmp_path)
    target = _write_variant(target_kind, face_images[1], tmp_path)
    if look_kind == 'gray16':
        with Image.open(look) as img:
            assert img.mode.startswith('I'), img.mode  # really a 16-bit file
    argv = with_option(with_option(args, '--target_look', look), '--target_landmarks', target)
    code, _, err = invoke(projector.main, argv)
    assert code == 0, err
    out = tmp_path / 'out'
    for name in ('proj.png', 'target_look.png', 'target_landmarks.png'):
        assert png_info(out / name) == ('RGB', (RESOLUTION, RESOLUTION)), name
    assert hidden_files(out) == []
    if look_kind == 'gray16':
        # The 16-bit look is scaled to 8 bits, not clipped to white or black.
        with Image.open(out / 'target_look.png') as img:
            used = np.asarray(img.convert('RGB'), dtype=np.float64)
        with Image.open(look) as img:
            original = np.asarray(img, dtype=np.float64) / 257.0
        assert abs(used.mean() - original.mean()) < 8
        assert used.std() > 5


# ----------------------------------------------------------------------------
# 5. Bad input: one line, exit status 2, no traceback, nothing written.

def _text_file(path: Path) -> Path:
    path.write_text('this is not an image or a network\n')
    return path


def _bad_cases():
    """Bad-input cases: ``fn(valid_args, input_folder, {'look': path}) -> (argv, words the error must name)``."""
    cases = []

    def case(fn=None, *, bug=None):
        """Register a case; ``bug`` marks a known defect (strict xfail: fixing it makes the mark fail)."""
        def register(fn):
            marks = [pytest.mark.xfail(strict=True, reason=bug)] if bug else []
            cases.append(pytest.param(fn, id=fn.__name__, marks=marks))
            return fn
        return register(fn) if fn is not None else register

    @case
    def missing_look(a, tmp, ctx):
        p = tmp / 'nope-look.png'
        return with_option(a, '--target_look', p), ['--target_look', str(p)]

    @case
    def missing_landmarks(a, tmp, ctx):
        p = tmp / 'nope-landmarks.png'
        return with_option(a, '--target_landmarks', p), ['--target_landmarks', str(p)]

    @case
    def text_file_named_png(a, tmp, ctx):
        p = _text_file(tmp / 'fake.png')
        return with_option(a, '--target_look', p), ['--target_look', 'not a readable image']

    @case
    def truncated_png(a, tmp, ctx):
        p = tmp / 'truncated.png'
        p.write_bytes(Path(ctx['look']).read_bytes()[:120])
        return with_option(a, '--target_landmarks', p), ['--target_landmarks', str(p)]

    @case
    def folder_as_look(a, tmp, ctx):
        return with_option(a, '--target_look', tmp), ['--target_look', str(tmp)]

    @case
    def eight_group_weights(a, tmp, ctx):
        return with_option(a, '--landmark_weights', '1,1,1,1,1,1,1,1'), ['--landmark_weights', 'got 8']

    @case
    def non_numeric_group_weights(a, tmp, ctx):
        return with_option(a, '--landmark_weights', '1,1,1,x,1,1,1,1,1'), ['--landmark_weights']

    @case
    def negative_group_weight(a, tmp, ctx):
        return with_option(a, '--landmark_weights', '1,1,1,-1,1,1,1,1,1'), ['--landmark_weights']

    @case
    def all_zero_group_weights(a, tmp, ctx):
        return with_option(a, '--landmark_weights', '0,0,0,0,0,0,0,0,0'), ['--landmark_weights']

    @case
    def negative_lpips_weight(a, tmp, ctx):
        return with_option(a, '--lpips_weight', -1), ['--lpips_weight']

    @case
    def inf_lpips_weight(a, tmp, ctx):
        return with_option(a, '--lpips_weight', 'inf'), ['--lpips_weight']

    @case
    def nan_landmark_weight(a, tmp, ctx):
        return with_option(a, '--landmark_weight', 'nan'), ['--landmark_weight']

    @case
    def non_integer_steps(a, tmp, ctx):
        return with_option(a, '--num-steps', 'many'), ['--num-steps']

    @case
    def negative_steps(a, tmp, ctx):
        return with_option(a, '--num-steps', -5), ['--num-steps']

    @case
    def zero_steps(a, tmp, ctx):
        return with_option(a, '--num-steps', 0), ['--num-steps']

    @case
    def png_as_network(a, tmp, ctx):
        return with_option(a, '--network', ctx['look']), ['network pickle']

    @case
    def text_as_network(a, tmp, ctx):
        return with_option(a, '--network', _text_file(tmp / 'net.pkl')), ['network pickle']

    @case
    def state_dict_as_network(a, tmp, ctx):
        return with_option(a, '--network', a[a.index('--fan-weights') + 1]), ['network pickle']

    @case
    def missing_network(a, tmp, ctx):
        p = tmp / 'nope.pkl'
        return with_option(a, '--network', p), [str(p)]

    @case
    def unreachable_url(a, tmp, ctx):
        url = f'http://127.0.0.1:{free_port()}/ffhq.pkl'
        return with_option(a, '--network', url), [url]

    @case
    def missing_fan_weights(a, tmp, ctx):
        p = tmp / 'nope-fan.pth'
        return with_option(a, '--fan-weights', p), ['--fan-weights', str(p)]

    @case
    def missing_vgg_weights(a, tmp, ctx):
        p = tmp / 'nope-vgg.pth'
        return with_option(a, '--vgg-weights', p), ['--vgg-weights', str(p)]

    @case
    def vgg_file_as_fan_weights(a, tmp, ctx):
        vgg = a[a.index('--vgg-weights') + 1]
        return with_option(a, '--fan-weights', vgg), [vgg, 'FAN']

    @case
    def fan_file_as_vgg_weights(a, tmp, ctx):
        fan = a[a.index('--fan-weights') + 1]
        return with_option(a, '--vgg-weights', fan), [fan, 'VGG16']

    @case
    def image_as_fan_weights(a, tmp, ctx):
        return with_option(a, '--fan-weights', ctx['look']), ['--fan-weights', ctx['look']]

    @case
    def outdir_under_a_file(a, tmp, ctx):
        _text_file(tmp / 'afile')
        return with_option(a, '--outdir', tmp / 'afile' / 'out'), ['--outdir']

    @case
    def unknown_latent(a, tmp, ctx):
        return with_option(a, '--latent', 'z'), ['--latent']

    @case
    def save_video_two(a, tmp, ctx):
        return with_option(a, '--save_video', 2), ['--save_video']

    @case
    def unknown_device(a, tmp, ctx):
        return with_option(a, '--device', 'abacus'), ['--device', 'abacus']

    @case
    def cuda_unavailable(a, tmp, ctx):
        if torch.cuda.is_available():
            pytest.skip('CUDA is available here')
        return with_option(a, '--device', 'cuda'), ['--device', 'cuda']

    return cases


@pytest.mark.parametrize('make_case', _bad_cases())
def test_bad_input(make_case, args, face_images, tmp_path, monkeypatch):
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(tmp_path / 'dnnlib-cache'))  # no cached download can answer
    inputs = tmp_path / 'inputs'
    inputs.mkdir()
    argv, needles = make_case(args, inputs, dict(look=face_images[0]))
    outdir = Path(argv[argv.index('--outdir') + 1])
    code, out, err = invoke(projector.main, argv)
    assert code == 2, (out, err)
    assert_one_error_line(err, *needles)
    assert 'Traceback' not in out
    assert_nothing_written(outdir)


def test_bad_input_in_a_real_process(tiny_pkl, fan_weights, vgg_weights, face_images, tmp_path):
    outdir = tmp_path / 'out'
    argv = base_args(tiny_pkl, fan_weights, vgg_weights, face_images[0], face_images[1], outdir)
    argv = with_option(argv, '--landmark_weights', '1,2,3')
    env = subprocess_env(tmp_path)
    proc = subprocess.run([sys.executable, 'projector.py', *map(str, argv)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert_one_error_line(proc.stderr, '--landmark_weights', 'got 3')
    assert_nothing_written(outdir)


def test_a_run_does_not_import_torch_dynamo(tiny_pkl, fan_weights, vgg_weights, face_images, tmp_path):
    """Importing torch._dynamo costs every command about 1.5 s of CPU at its start; building
    torch.optim.Adam or computing on meta tensors imports it, so neither may happen in a run."""
    argv = base_args(tiny_pkl, fan_weights, vgg_weights, face_images[0], face_images[1], tmp_path / 'out', steps=1)
    code = ('import runpy, sys; sys.argv = ["projector.py"] + sys.argv[1:]; sys.path.insert(0, ".")\n'
            'try:\n    runpy.run_path("projector.py", run_name="__main__")\n'
            'finally:\n    print("dynamo imported:", "torch._dynamo" in sys.modules, file=sys.stderr)')
    proc = subprocess.run([sys.executable, '-c', code, *map(str, argv)], cwd=REPO, env=subprocess_env(tmp_path),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'dynamo imported: False' in proc.stderr


@pytest.mark.parametrize('script', ['projector.py', 'projector_video.py', 'morph.py'])
def test_ctrl_c_while_importing_is_a_quiet_exit(script, tmp_path):
    """A user who notices a wrong option stops the run at once, while torch is still being imported."""
    import signal
    import time
    proc = subprocess.Popen([sys.executable, script, '--help'], cwd=REPO, env=subprocess_env(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)  # past the interpreter's start, well inside the imports (torch alone takes seconds)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip() == 'error: interrupted' and out == ''


def _example_commands(help_text: str):
    """The ``python projector.py ...`` commands of the help text, continuation lines joined, split."""
    import shlex
    commands, current = [], None
    for line in help_text.splitlines():
        stripped = line.strip()
        if current is None and stripped.startswith('python projector.py'):
            current = ''
        if current is not None:
            current += ' ' + stripped.rstrip('\\')
            if not stripped.endswith('\\'):
                commands.append(shlex.split(current))
                current = None
    return commands


def test_help_in_a_real_process(tmp_path):
    proc = subprocess.run([sys.executable, 'projector.py', '--help'], cwd=REPO, env=subprocess_env(tmp_path),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    commands = _example_commands(text)
    url = 'https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/ffhq.pkl'
    full = [c for c in commands if any(url in arg for arg in c)]
    assert full, f'no example uses {url}:\n{text}'
    assert any('--target_look' in ' '.join(c) and '--target_landmarks' in ' '.join(c) for c in full), full
    for command in commands:
        # Every example must be accepted by the real option parser (names and value types).
        assert command[:2] == ['python', 'projector.py'], command
        ctx = projector.main.make_context('projector.py', command[2:])
        assert ctx.params['target_look'] and ctx.params['target_landmarks']
    for option in ('--network', '--outdir', '--num-steps', '--landmark_weights', '--save_video', '--device',
                   '--fan-weights', '--vgg-weights', '--latent', '--seed'):
        assert option in text, option


# ----------------------------------------------------------------------------
# 6. An interrupted run leaves nothing half-written.

def test_an_output_that_cannot_be_written_is_one_error_line(args, tmp_path):
    """A folder in the way of summary.png (as a full disk would): one line naming the file, exit status 2,
    no report.json (the folder is unfinished), no temporary file."""
    out = tmp_path / 'out'
    (out / 'summary.png').mkdir(parents=True)
    code, _, err = invoke(projector.main, args)
    assert code == 2, err
    assert 'Traceback' not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith('error: cannot write') and 'summary.png' in last, last
    assert not (out / 'report.json').exists()
    assert hidden_files(out) == []


def test_a_refusal_of_the_system_is_one_error_line(monkeypatch):
    import click

    @click.command()
    def command():
        raise PermissionError(13, 'Permission denied', '/some/where')

    code, _, err = invoke(command, [])
    assert code == 1
    assert err.strip() == 'error: /some/where: Permission denied'


def test_interrupt_leaves_nothing_half_written(args, tmp_path, monkeypatch):
    original_call = projector.ProgressBar.__call__
    calls = []

    out = tmp_path / 'out'
    seen_partial_video = []

    def interrupting_call(self, info):
        calls.append(info.step)
        if len(calls) == 3:
            # The video is being written under a hidden temporary name: the interrupt must remove it.
            seen_partial_video.extend(p.name for p in out.glob('.proj-*.mp4'))
            raise KeyboardInterrupt
        return original_call(self, info)

    monkeypatch.setattr(projector.ProgressBar, '__call__', interrupting_call)
    argv = with_option(with_option(args, '--num-steps', 10), '--save_video', 1)
    code, _, err = invoke(projector.main, argv)
    assert code == 130, err
    assert len(calls) == 3
    assert seen_partial_video, 'the test meant to interrupt a run while its video was being written'
    assert 'Traceback' not in err
    assert err.strip().splitlines()[-1].startswith('error: interrupted')
    # The run was interrupted while optimizing: no output was finished, so none may exist, and the
    # partial video and any temporary files must be gone.
    names = sorted(p.name for p in out.iterdir()) if out.exists() else []
    assert 'proj.mp4' not in names
    assert 'proj.png' not in names
    assert [n for n in names if n.startswith('.')] == []
    assert names == []
    assert not out.exists()  # the folder the run created, left empty, is removed too
