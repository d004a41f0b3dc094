"""``projector.py --pairs``: many look/landmark pairs in one process (and over torchrun ranks).

The loop: read the rows (``pairs.read_pairs``), keep this rank's share (``pairs.shard``), skip
rows whose outputs are complete (unless ``resume=False``), group the rest in batches of
``batch_size`` (``pairs.batches``), optimize each batch with ``LandmarkProjector.run_batch`` and
write every row's outputs into its own folder exactly as a single run does (each file written
to a temporary name and renamed; ``report.json`` last, so a folder without it is unfinished).
A row that fails (unreadable image, no face, folder not writable) is recorded and skipped; the
others go on. Rank 0 writes ``pairs_report.json`` next to the CSV, merged over all ranks.
"""

from __future__ import annotations

import time
import traceback
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence

import distributed
import image_io
import pairs
from dnnlib.util import UserError

REPORT_NAME = 'pairs_report.json'
# What pairs_report.json gives of each finished row, from the row's report.json.
ROW_METRICS = ('final_losses', 'lpips_to_look', 'landmark_error', 'identity_similarity', 'landmark_error_to_used_target')


def row_metrics(report: Mapping) -> Dict:
    return {k: report[k] for k in ROW_METRICS if k in report}


def _kept_metrics(outdir: Path) -> Dict:
    """The metrics of a row kept from an earlier run (its report.json), so that a resumed run's
    pairs_report.json still has every finished row's numbers."""
    import json
    try:
        return row_metrics(json.loads((Path(outdir) / 'report.json').read_text(encoding='utf-8')))
    except (OSError, ValueError, TypeError):
        return {}


def report_path(csv_path: str) -> Path:
    """Where the merged report goes: ``pairs_report.json`` in the CSV's folder."""
    return Path(csv_path).resolve().parent / REPORT_NAME


def check_report_writable(csv_path: str) -> None:
    """Fail before any work if ``pairs_report.json`` could not be written next to the CSV (a read-only
    dataset folder, a folder of that name): otherwise the run would end, after every row, without it."""
    from cli_common import write_test
    path = report_path(csv_path)
    if path.exists() and not path.is_file():
        raise UserError(f'--pairs: {path} is in the way of the merged report (not a file)')
    try:
        write_test(path.parent)
    except OSError as exc:
        raise UserError(f'--pairs: cannot write {REPORT_NAME} into the CSV\'s folder {path.parent} '
                        f'({exc.strerror or exc.__class__.__name__}); copy the CSV to a folder you can write') from None


class PairsInterrupted(KeyboardInterrupt):
    """Ctrl-C during ``run_pairs``: carries the records of the rows finished (or skipped) so far."""

    def __init__(self, records: List[Dict]):
        super().__init__()
        self.records = records


def say(message: str) -> None:
    """A line on stderr that a progress bar on the terminal does not run into (``tqdm.write``)."""
    import sys

    from tqdm import tqdm
    tqdm.write(message, file=sys.stderr)


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, UserError):
        return ' '.join(str(exc).split())
    return f'{exc.__class__.__name__}: {" ".join(str(exc).split())}'


def run_pairs(rows: List[pairs.PairRow], prepare: Callable, optimize: Callable, write: Callable, *,
              batch_size: int = 1, resume: bool = True, ctx: Optional[distributed.Context] = None,
              progress: bool = True, expected: Optional[Callable[[pairs.PairRow], Mapping]] = None,
              outputs: Sequence[str] = pairs.COMPLETE_OUTPUTS) -> List[Dict]:
    """Run this rank's rows; return one record per row of the rank (``status`` ok/failed/skipped).

    ``prepare(row) -> job`` loads and checks a row's inputs (raising on a bad row);
    ``optimize(jobs) -> [projection]`` runs a batch; ``write(job, projection) -> record`` writes
    the row's outputs and returns its losses etc. Each call's failure only fails its row(s).
    With ``resume``, a row whose folder holds complete outputs (every name in ``outputs``) is
    skipped, unless ``expected(row)`` (setting name -> value) disagrees with their ``report.json``
    (``pairs.redo_reason``).
    """
    ctx = ctx or distributed.Context()
    mine = pairs.shard(rows, ctx.rank, ctx.world_size)
    records: List[Dict] = []
    todo = []
    for row in mine:
        reason = pairs.redo_reason(row.outdir, (lambda r=row: expected(r)) if expected else None,
                                   outputs) if resume else None
        if resume and reason is None:
            records.append(_record(row, 'skipped', ctx, note='outputs complete (rerun with --no-resume to redo)',
                                   **_kept_metrics(row.outdir)))
            continue
        if resume and reason != pairs.UNFINISHED:
            say(f'{row.name}: the outputs in {row.outdir} {reason}: redoing it')
        todo.append(row)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(mine), desc=f'pairs (rank {ctx.rank})' if ctx.distributed else 'pairs', unit='pair',
                   dynamic_ncols=True, position=0)
        bar.update(len(mine) - len(todo))
    try:
        _run_batches(todo, prepare, optimize, write, batch_size, ctx, records, bar)
    except KeyboardInterrupt:
        raise PairsInterrupted(sorted(records, key=lambda r: r['index'])) from None
    finally:
        if bar is not None:
            bar.close()
    return sorted(records, key=lambda r: r['index'])


def _run_batches(todo, prepare, optimize, write, batch_size, ctx, records, bar) -> None:
    """``run_pairs``'s loop over the rows to do; appends one record per row to ``records``."""
    for group in pairs.batches(todo, batch_size):
        jobs = []
        for row in group:
            start = time.perf_counter()
            try:
                jobs.append((row, prepare(row), time.perf_counter() - start))
            except Exception as exc:  # noqa: BLE001 - a bad row fails alone
                records.append(_failed(row, exc, ctx, time.perf_counter() - start))
                if bar is not None:
                    bar.update(1)
        if not jobs:
            continue
        start = time.perf_counter()
        try:
            projections = optimize([job for _, job, _ in jobs])
        except Exception as exc:  # noqa: BLE001
            for row, _, prep in jobs:
                records.append(_failed(row, exc, ctx, prep))
            if bar is not None:
                bar.update(len(jobs))
            continue
        shared = (time.perf_counter() - start) / len(jobs)
        for (row, job, prep), projection in zip(jobs, projections):
            start = time.perf_counter()
            try:
                info = write(job, projection)
                records.append(_record(row, 'ok', ctx, seconds=round(prep + shared + time.perf_counter() - start, 3),
                                       **info))
            except Exception as exc:  # noqa: BLE001
                records.append(_failed(row, exc, ctx, prep + shared + time.perf_counter() - start))
            if bar is not None:
                bar.update(1)


def _record(row: pairs.PairRow, status: str, ctx: distributed.Context, **extra) -> Dict:
    return dict(index=row.index, line=row.line, look=str(row.look), landmarks=str(row.landmarks),
                outdir=str(row.outdir), status=status, rank=ctx.rank, **extra)


def _failed(row, exc, ctx, seconds) -> Dict:
    message = _error_text(exc)
    say(f'{row.name} failed: {message}')
    if not isinstance(exc, UserError):
        say(''.join(traceback.format_exception_only(type(exc), exc)).strip())
    return _record(row, 'failed', ctx, error=message, seconds=round(seconds, 3))


def merge_and_report(ctx: distributed.Context, records: List[Dict], csv_path: str, settings: Dict) -> Optional[Dict]:
    """Gather every rank's records; rank 0 writes the merged report and returns it (others: None).

    Every rank returns only once the report is written: a rank that ended first would make torchrun
    stop the others (rank 0 among them) with SIGTERM.
    """
    gathered = distributed.gather(ctx, records)
    report = None
    try:
        if gathered is not None:
            merged = sorted((r for part in gathered for r in part), key=lambda r: r['index'])
            statuses = ('ok', 'skipped', 'failed') + (('interrupted',) if any(r['status'] == 'interrupted'
                                                                               for r in merged) else ())
            counts = {s: sum(r['status'] == s for r in merged) for s in statuses}
            report = dict(command='projector --pairs', pairs=str(Path(csv_path).resolve()), world_size=ctx.world_size,
                          counts=counts, settings=settings, rows=merged)
            image_io.save_json(report_path(csv_path), report)
    finally:
        distributed.barrier(ctx)
    return report


# ----------------------------------------------------------------------------
# projector.py --pairs

def _seed(text: str) -> int:
    from cli_common import parse_seed
    return parse_seed(text)


OVERRIDES = dict(lpips_weight=float, landmark_weight=float, landmark_weights=str, seed=_seed)


def projector_main(csv_path: str, batch_size: int, resume: bool, device: Optional[str], cli: Dict,
                   group_weights) -> None:
    """``projector.py --pairs``: exit status 1 when any row failed (0 otherwise)."""
    import click

    import cli_common
    import landmark_targets
    import precision as precision_mod
    import projector
    from cli_common import PhaseTimer, check_weights, pick_device, prepare_outdir
    from landmark_loss import LANDMARK_GROUPS, parse_group_weights
    from optimization import ProjectionSettings

    if batch_size < 1:
        raise UserError(f'--batch-size must be at least 1, got {batch_size}')
    if cli['save_video']:
        raise UserError('--save_video is not available with --pairs (run the pair alone to get its video)')
    rows = pairs.read_pairs(csv_path, OVERRIDES)
    if cli['landmarks_frame'] is not None and not any(landmark_targets.is_landmark_file(str(r.landmarks))
                                                      for r in rows):
        raise UserError('--landmarks-frame only applies to landmark files, and no row of --pairs names one')
    for row in rows:  # per-row settings are checked before any heavy work
        try:
            o = row.overrides
            check_weights(**{k: o[k] for k in ('lpips_weight', 'landmark_weight') if k in o})
            if 'landmark_weights' in o:
                o['group_weights'] = parse_group_weights(o['landmark_weights'])
        except UserError as exc:
            raise UserError(f'--pairs: {row.name}: {exc}') from None
    check_report_writable(csv_path)
    if device is not None:
        pick_device(device)  # a bad --device is one error line under torchrun as in one process
    ctx, dist_device = distributed.setup(device)
    try:
        dev = dist_device if dist_device is not None else pick_device(device)
        used_precision = precision_mod.resolve(cli['precision'], dev)
        if ctx.distributed:
            click.echo(f'Rank {ctx.rank} of {ctx.world_size} ({ctx.backend}) on {dev}: '
                       f'{len(pairs.shard(rows, ctx.rank, ctx.world_size))} of {len(rows)} rows.', err=True)
        load_timer = PhaseTimer()
        with load_timer('load_networks'):
            nets, faces = projector.load_for_projection(cli, dev)
        faces.remember_landmarks()  # rows often share images: one look, many expressions
        if ctx.is_main:  # the last run's merged report would describe rows this run redoes; kept until work starts
            report_path(csv_path).unlink(missing_ok=True)
        cli_common.announce_precision(used_precision, cli['precision'], dev)
        resolution = nets.G.img_resolution

        def settings_for(row):
            return ProjectionSettings(num_steps=cli['num_steps'], latent=cli['latent'],
                                      seed=row.overrides.get('seed', cli['seed']), precision=used_precision)

        def prepare(row):
            timer = PhaseTimer()
            timer.seconds['load_networks'] = load_timer.seconds['load_networks']
            with timer('prepare_targets'):
                inputs = projector.prepare_inputs(faces, str(row.look), str(row.landmarks), resolution,
                                                  align=cli['align'], face_index=cli['face_index'],
                                                  frame=cli['landmarks_frame'], retarget_groups=cli['retarget_groups'])
                for warning in inputs.warnings:
                    say(f'warning: {row.name}: {warning}')
                proj = projector.projector_for(nets, faces, inputs, cli, group_weights, row.overrides)
            out = prepare_outdir(str(row.outdir))
            # A redone row's old report goes first: until the new one is written, the folder is unfinished.
            cli_common.mark_unfinished(out)
            return dict(row=row, inputs=inputs, projector=proj, out=out, timer=timer, settings=settings_for(row),
                        group_weights=row.overrides.get('group_weights', group_weights))

        def optimize(jobs):
            settings = jobs[0]['settings']
            start = PhaseTimer()
            with start('optimize'):
                if len(jobs) == 1:
                    results = [jobs[0]['projector'].run(settings)]
                else:
                    results = projector.LandmarkProjector.run_batch([j['projector'] for j in jobs], settings,
                                                                    seeds=[j['settings'].seed for j in jobs])
            for j in jobs:
                j['timer'].seconds['optimize'] = start.seconds['optimize']
            return results

        def write(job, projection):
            timer = job['timer']
            with timer('write_outputs'):
                written = projector.write_outputs(job['out'], projection, job['projector'], cli['save_landmarks'])
            row = job['row']
            report = projector.make_report(cli, str(row.look), str(row.landmarks), str(row.outdir),
                                           job['group_weights'], dev, used_precision, nets, job['settings'],
                                           job['projector'], projection, timer, job['inputs'])
            report['pairs'] = dict(csv=str(Path(csv_path).resolve()), row=row.index + 1, line=row.line,
                                   batch_size=batch_size)
            projector.finish_outputs(job['out'], written, report)
            return row_metrics(report)

        def expected(row):
            """The settings a row's complete outputs must have been made with for a resumed run to keep them."""
            o = row.overrides
            return dict(network=cli['network'], target_look=str(row.look), target_landmarks=str(row.landmarks),
                        num_steps=cli['num_steps'], seed=o.get('seed', cli['seed']),
                        lpips_weight=o.get('lpips_weight', cli['lpips_weight']),
                        landmark_weight=o.get('landmark_weight', cli['landmark_weight']),
                        landmark_weights=dict(zip(LANDMARK_GROUPS, o.get('group_weights', group_weights))),
                        latent=cli['latent'], retarget=cli['retarget'], retarget_groups=cli['retarget_groups'],
                        landmarks_frame=cli['landmarks_frame'], align=cli['align'], face_index=cli['face_index'],
                        detector=cli['detector'], detector_weights=cli['detector_weights'],
                        d_weight=cli['d_weight'], id_weight=cli['id_weight'], id_weights=cli['id_weights'],
                        fan_weights=cli['fan_weights'], vgg_weights=cli['vgg_weights'], precision_used=used_precision,
                        target_look_content=image_io.file_identity(str(row.look)),
                        target_landmarks_content=image_io.file_identity(
                            str(landmark_targets.split_set_name(row.landmarks)[0])))

        # A complete row has the files this run would write (landmarks.json unless --no-save_landmarks).
        outputs = (*pairs.COMPLETE_OUTPUTS, *(['landmarks.json'] if cli['save_landmarks'] else []),
                   *(['target_landmarks_used.json'] if cli['retarget'] else []))
        run_settings = dict(cli, batch_size=batch_size, resume=resume, precision_used=used_precision, device=str(dev))
        try:
            records = run_pairs(rows, prepare, optimize, write, batch_size=batch_size, resume=resume, ctx=ctx,
                                expected=expected, outputs=outputs)
        except PairsInterrupted as stop:
            if not ctx.distributed:  # (under torchrun Ctrl-C stops every rank: no merge)
                done = {r['index'] for r in stop.records}
                rest = [_record(row, 'interrupted', ctx) for row in rows if row.index not in done]
                merge_and_report(ctx, stop.records + rest, csv_path, run_settings)
                say(f'{report_path(csv_path)} lists the rows finished before the interrupt')
            raise
        merged = merge_and_report(ctx, records, csv_path, run_settings)
    finally:
        distributed.teardown(ctx)
    # The exit status is the merged result's, given by rank 0 (under torchrun the other ranks end with 0
    # once the report is written: a failing rank would make torchrun stop rank 0 before it ends).
    if merged is not None:
        c = merged['counts']
        click.echo(f'{c["ok"]} done, {c["skipped"]} skipped (complete), {c["failed"]} failed; '
                   f'report in {report_path(csv_path)}', err=True)
        if c['failed']:
            raise SystemExit(1)
