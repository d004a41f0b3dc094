"""What every command line shares: error handling, device choice, output folders, timers.

Errors a user can cause (``dnnlib.util.UserError`` and click's usage errors) end the program
with one line on stderr and exit status 2, never a traceback; so does an output file that cannot
be written (``image_io.atomic_path``). Other refusals of the system (``OSError``) end with one
line and exit status 1. An output folder the failed command created and left empty is removed.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional

import click

from dnnlib.util import UserError


def run(command: click.Command, args=None) -> None:
    """Run a click command; turn user errors into ``error: <message>`` and exit status 2.

    Before anything is allocated, the process keeps freed large blocks for reuse
    (``cpu_memory.keep_freed_memory``): each step's activations are then not mapped and
    page-faulted in again.
    """
    import signal

    import cli_startup
    import cpu_memory
    if signal.getsignal(signal.SIGINT) is cli_startup.quiet_exit:  # (a script's own start) from here on,
        signal.signal(signal.SIGINT, signal.default_int_handler)    # Ctrl-C is KeyboardInterrupt again
    cpu_memory.keep_freed_memory()
    _created_outdirs.clear()
    try:
        command.main(args=args, standalone_mode=False)
    except click.exceptions.Abort:
        _fail(130, 'interrupted')
    except KeyboardInterrupt:
        _fail(130, 'interrupted; finished outputs are complete, unfinished ones were discarded')
    except click.ClickException as exc:
        _fail(2, exc.format_message())
    except UserError as exc:
        _fail(2, str(exc))
    except OSError as exc:  # the system refused (disk, permissions, a file gone): one line, not a traceback
        what = f'{exc.filename}: ' if exc.filename else ''
        _fail(1, f'{what}{exc.strerror or str(exc) or exc.__class__.__name__}')
    sys.exit(0)


def _fail(status: int, message: str) -> None:
    """End a failed command: its one ``error:`` line, the output folders it created and left empty
    removed (a late error, such as a look without a face, leaves nothing behind), ``status``."""
    for folder in reversed(_created_outdirs):
        with contextlib.suppress(OSError):
            folder.rmdir()  # only succeeds while empty
    _created_outdirs.clear()
    click.echo(f'error: {_one_line(message)}', err=True)
    sys.exit(status)


def _one_line(text: str) -> str:
    return ' '.join(str(text).split())


def check_weights(**weights: float) -> None:
    """Loss weights must be finite and non-negative: ``check_weights(lpips_weight=1.0, ...)``."""
    import math
    for name, value in weights.items():
        if not math.isfinite(value) or value < 0:
            raise UserError(f'--{name} must be a finite number >= 0, got {value}')


def pick_device(name: Optional[str]):
    """``cuda`` when present, else ``cpu``; an explicit request is checked."""
    import torch
    from torch_utils import misc
    if name is None:
        device = misc.pick_device(None)
        click.echo(f'Using device {device} (pass --device to choose).', err=True)
        return device
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f'--device: unknown device {name!r} (use cpu or cuda)') from None
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise UserError('--device: CUDA was requested but is not available on this machine; use --device cpu')
    return device


# Folders ``prepare_outdir`` created during the running command (outermost first): removed again if
# the command fails and leaves them empty.
_created_outdirs: List[Path] = []


def prepare_outdir(path: str) -> Path:
    """Create ``path`` (and parents) and check that files can be written there."""
    outdir = Path(path)
    missing = [p for p in (outdir, *outdir.parents) if not p.exists()]
    try:
        outdir.mkdir(parents=True, exist_ok=True)
        _created_outdirs.extend(reversed(missing))
        write_test(outdir)
    except OSError as exc:
        raise UserError(f'--outdir: cannot write to {outdir} ({exc.strerror or exc.__class__.__name__})') from None
    return outdir


def mark_unfinished(out: Path, marker: str = 'report.json') -> None:
    """Remove the folder's ``marker`` (written last by every command) before a run writes anything
    there: until the new one is written, the folder counts as unfinished, never as a mix of old and new."""
    (Path(out) / marker).unlink(missing_ok=True)


def remove_stale_outputs(out: Path, known: Iterable[str], written: Iterable[str]) -> List[str]:
    """Delete the files named in ``known`` that this run did not write (``written``) from ``out``.

    Left by an earlier run into the same folder (a video, a landmarks.json it was asked for),
    they would pass for this run's. Returns the names removed.
    """
    keep = set(written)
    removed = []
    for name in known:
        path = Path(out) / name
        if name not in keep and path.is_file():
            path.unlink()
            removed.append(name)
    return removed


def write_test(folder: Path) -> None:
    """Create and remove a file in ``folder``; ``OSError`` when that is refused."""
    with tempfile.NamedTemporaryFile(dir=folder, prefix='.write-test-'):
        pass


def check_outdir_writable(path: str) -> None:
    """Fail early, before any heavy work, if ``path`` could not be created or written."""
    p = Path(path).resolve()
    while not p.exists():
        p = p.parent
    if not p.is_dir():
        raise UserError(f'--outdir: {p} is not a folder')
    if not os.access(p, os.W_OK | os.X_OK):
        raise UserError(f'--outdir: cannot write to {p}')


def environment() -> dict:
    """Versions (and the C allocator's setting) a run report records."""
    import platform
    import torch

    import cpu_memory
    return dict(python=platform.python_version(), torch=torch.__version__, cpu_allocator=cpu_memory.status())


class PhaseTimer:
    """Accumulates wall-clock seconds per named phase: ``with timer('optimize'): ...``."""

    def __init__(self):
        self.seconds: Dict[str, float] = {}
        self._start = time.perf_counter()

    @contextlib.contextmanager
    def __call__(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def as_dict(self) -> Dict[str, float]:
        return {**{k: round(v, 3) for k, v in self.seconds.items()},
                'total': round(time.perf_counter() - self._start, 3)}


class ZeroOne(click.ParamType):
    """A 0|1 switch that also takes the words click's BOOL takes (true/false, yes/no, on/off)."""
    name = '0|1'

    def convert(self, value, param, ctx):
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, int) and value in (0, 1):
            return value
        text = str(value).strip().lower()
        if text in ('1', 'true', 't', 'yes', 'y', 'on'):
            return 1
        if text in ('0', 'false', 'f', 'no', 'n', 'off'):
            return 0
        self.fail(f'{value!r} is not 0 or 1 (or true / false)', param, ctx)


ZERO_ONE = ZeroOne()

# Seeds are what numpy's RandomState takes (as NVIDIA's projector seeds numpy and torch alike):
# a larger or negative --seed is a usage error, not a traceback after the networks loaded.
SEED_MAX = 2 ** 32 - 1
SEED = click.IntRange(0, SEED_MAX)


def parse_seed(text: str) -> int:
    """A seed from text (a ``--pairs`` cell): an integer from 0 to ``SEED_MAX``, else ``ValueError``."""
    value = int(text)
    if not 0 <= value <= SEED_MAX:
        raise ValueError(f'a seed is an integer from 0 to {SEED_MAX}')
    return value


def network_options(func: Callable) -> Callable:
    """``--network``, ``--fan-weights``, ``--vgg-weights``, ``--device``: shared by every command."""
    func = click.option('--device', default=None, metavar='DEVICE',
                        help='cpu or cuda [default: cuda when present, else cpu]')(func)
    func = click.option('--vgg-weights', 'vgg_weights', default=None, metavar='PATH',
                        help='Local torchvision VGG16 state dict for LPIPS (for offline use).')(func)
    func = click.option('--fan-weights', 'fan_weights', default=None, metavar='PATH',
                        help='Local FAN state dict (face_alignment 2DFAN) for offline use.')(func)
    func = click.option('--network', 'network_pkl', required=True, metavar='PKL|URL',
                        help='StyleGAN2-ADA network pickle: path or URL (downloaded once, then cached).')(func)
    return func


def precision_option(func: Callable) -> Callable:
    """``--precision auto|fp32|bf16|fp16`` (see ``precision.py``); resolve it with ``precision.resolve`` and say it with
    ``announce_precision``."""
    return click.option('--precision', type=click.Choice(['auto', 'fp32', 'bf16', 'fp16']), default='auto',
                        show_default=True,
                        help='Arithmetic of the frozen networks: auto = fp16 mixed precision on CUDA, bf16 on a '
                             'CPU with bfloat16 units, else fp32. Latents and Adam stay fp32.')(func)


def announce_precision(used: str, requested: str, device) -> None:
    """Say the precision of a run on stderr (``precision.announcement``: a warning line where bf16 is slow)."""
    import precision
    click.echo(precision.announcement(used, requested, device), err=True)


def identity_score_options(func: Callable) -> Callable:
    """``--id-weights`` and ``--no-identity``: the identity score (identity.py), for commands without the term."""
    func = click.option('--no-identity', 'no_identity', is_flag=True, default=False,
                        help='Skip the identity network and score entirely.')(func)
    func = click.option('--id-weights', 'id_weights', default=None, metavar='PATH',
                        help='Local FaceNet (VGGFace2) state dict for offline use; with it, or with the weights '
                             'already cached, the report gives identity_similarity.')(func)
    return func


def identity_options(func: Callable) -> Callable:
    """``--id_weight`` and the score options: the identity term and score (identity.py)."""
    func = identity_score_options(func)
    func = click.option('--id_weight', type=float, default=0.0, show_default=True,
                        help='Weight of the identity term 1 - cos(FaceNet(G(w)), FaceNet(anchor)); 0: off.')(func)
    return func


def detector_options(func: Callable) -> Callable:
    """``--detector`` and ``--detector-weights``: how faces are found when aligning (``--align``)."""
    func = click.option('--detector-weights', 'detector_weights', default=None, metavar='PATH',
                        help='Local S3FD face detector state dict for offline use (with --align).')(func)
    func = click.option('--detector', type=click.Choice(['sfd', 'none']), default='sfd', show_default=True,
                        help="Face detector for --align: face_alignment's S3FD, or none (start from the image "
                             "centre).")(func)
    return func


def given_on_command_line(name: str) -> bool:
    """Whether the running click command's parameter ``name`` was given (not left at its default)."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return False
    source = ctx.get_parameter_source(name)
    return source is not None and source not in (click.core.ParameterSource.DEFAULT,
                                                 click.core.ParameterSource.DEFAULT_MAP)


def check_align_options(align: bool, face_index: int, detector: str, detector_weights: Optional[str]) -> None:
    """``--face-index``, ``--detector`` and ``--detector-weights`` choose how faces are found for
    ``--align``; given without it they would do nothing, so that is a usage error (``--detector none``,
    which asks for no detector, agrees with no alignment)."""
    if align:
        return
    given = [name for name, used in (('--face-index', face_index != 0),
                                     ('--detector', detector != 'none' and given_on_command_line('detector')),
                                     ('--detector-weights', detector_weights is not None)) if used]
    if given:
        raise UserError(f'{", ".join(given)} only appl{"ies" if len(given) == 1 else "y"} with --align')


class ProgressBar:
    """Optimization callback: a tqdm bar over steps showing the loss terms (and a landmark error)."""

    def __init__(self, num_steps: int, landmark_error_fn: Optional[Callable[[], float]] = None,
                 desc: str = 'project', position: int = 0, leave: bool = True):
        from tqdm import tqdm
        self.bar = tqdm(total=num_steps, desc=desc, unit='step', dynamic_ncols=True, position=position, leave=leave)
        self.landmark_error_fn = landmark_error_fn

    def __call__(self, info) -> None:
        losses = info.losses
        if isinstance(losses, list):  # one dict per latent: one latent's terms, or the batch's mean total
            losses = losses[0] if len(losses) == 1 else {'mean_total': sum(d['total'] for d in losses) / len(losses)}
        post = {k: f'{v:.4g}' for k, v in {**losses, **getattr(info, 'latent_losses', {})}.items()}
        if self.landmark_error_fn is not None:
            post['lm_err'] = f'{self.landmark_error_fn():.3f}'
        self.bar.set_postfix(post, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()
