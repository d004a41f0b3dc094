"""Many look/landmark pairs in one process: the ``--pairs`` CSV, row completion, the merged report.

A pairs file is a CSV (as spreadsheets and Python's ``csv`` module write them: a header row,
CRLF or LF line ends, quoted fields, an optional UTF-8 byte-order mark) with the columns
``look``, ``landmarks`` and ``outdir``. Paths are relative to the CSV's folder. More columns
may override per-row settings (for ``projector.py``: ``landmark_weight``, ``lpips_weight``,
``landmark_weights``, ``seed``, ...); an empty cell keeps the command line's value.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Union

from dnnlib.util import UserError

REQUIRED_COLUMNS = ('look', 'landmarks', 'outdir')
# What a finished single run leaves in its folder (report.json is written last).
COMPLETE_OUTPUTS = ('proj.png', 'projected_w.npz', 'report.json')
UNFINISHED = 'are unfinished'


@dataclass
class PairRow:
    """One row of a pairs file: its inputs, its output folder and its per-row settings."""
    index: int                      # 0-based among the data rows
    line: int                       # 1-based line of the row in the file (for messages)
    look: Path
    landmarks: Path
    outdir: Path
    overrides: Dict[str, object] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f'row {self.index + 1} (line {self.line})'


def read_pairs(path: str, overrides: Optional[Mapping[str, Callable[[str], object]]] = None) -> List[PairRow]:
    """Read and check a pairs file; every problem is a ``UserError`` naming the file (and line).

    ``overrides`` maps the optional column names the command accepts to a parser of a cell's
    text (e.g. ``float``); a column that is neither required nor listed is refused.
    """
    overrides = dict(overrides or {})
    csv_path = Path(path)
    if not csv_path.is_file():
        raise UserError(f'--pairs: {csv_path} is not a file' if csv_path.exists() else f'--pairs: file not found: {csv_path}')
    base = csv_path.resolve().parent
    try:
        with open(csv_path, newline='', encoding='utf-8-sig') as f:
            reader = csv.reader(f)
            records = [(reader.line_num, row) for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f'--pairs: cannot read {csv_path} as CSV ({exc.__class__.__name__}: {exc})') from None
    records = [(line, row) for line, row in records if any(cell.strip() for cell in row)]
    if not records:
        raise UserError(f'--pairs: {csv_path} is empty; it needs a header row {",".join(REQUIRED_COLUMNS)}')
    header = [cell.strip().lower() for cell in records[0][1]]
    while header and header[-1] == '':  # trailing empty columns, as spreadsheets export them
        header.pop()
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise UserError(f'--pairs: {csv_path} lacks the column(s) {", ".join(missing)} (its header is '
                        f'{",".join(header)}; required: {",".join(REQUIRED_COLUMNS)})')
    unknown = [c for c in header if c not in REQUIRED_COLUMNS and c not in overrides]
    if '' in header:
        raise UserError(f'--pairs: {csv_path} has a column without a name in its header: {",".join(header)}')
    if unknown:
        allowed = ', '.join(sorted(overrides)) or 'none'
        raise UserError(f'--pairs: {csv_path} has unknown column(s) {", ".join(unknown)} (optional columns: {allowed})')
    if len(set(header)) != len(header):
        raise UserError(f'--pairs: {csv_path} names a column twice in its header')

    rows: List[PairRow] = []
    seen_outdirs: Dict[Path, int] = {}
    for index, (line, cells) in enumerate(records[1:]):
        if any(cell.strip() for cell in cells[len(header):]):
            raise UserError(f'--pairs: {csv_path} line {line} has {len(cells)} fields; the header has {len(header)}')
        cells = cells[:len(header)]  # empty trailing cells are a spreadsheet's, not data
        values = dict(zip(header, [cell.strip() for cell in cells] + [''] * (len(header) - len(cells))))
        empty = [c for c in REQUIRED_COLUMNS if not values[c]]
        if empty:
            raise UserError(f'--pairs: {csv_path} line {line}: empty {", ".join(empty)}')
        parsed = {}
        for column, parse in overrides.items():
            text = values.get(column, '')
            if text == '':
                continue
            try:
                parsed[column] = parse(text)
            except (ValueError, UserError) as exc:
                raise UserError(f'--pairs: {csv_path} line {line}: bad {column} {text!r} ({exc})') from None
        row = PairRow(index=index, line=line, look=base / values['look'], landmarks=base / values['landmarks'],
                      outdir=base / values['outdir'], overrides=parsed)
        key = row.outdir.resolve()
        if key in seen_outdirs:
            raise UserError(f'--pairs: {csv_path} lines {seen_outdirs[key]} and {line} write to the same outdir '
                            f'{values["outdir"]}')
        seen_outdirs[key] = line
        rows.append(row)
    if not rows:
        raise UserError(f'--pairs: {csv_path} has a header but no rows')
    return rows


def is_complete(outdir: Path, outputs: Sequence[str] = COMPLETE_OUTPUTS) -> bool:
    """True when ``outdir`` holds every output of a finished run (all are written atomically)."""
    return all((Path(outdir) / name).is_file() for name in outputs)


def redo_reason(outdir: Path, expected: Union[None, Mapping[str, object], Callable[[], Mapping[str, object]]] = None,
                outputs: Sequence[str] = COMPLETE_OUTPUTS) -> Optional[str]:
    """Why a resumed run must redo the row writing to ``outdir`` (its outputs ``UNFINISHED``, or
    another phrase that completes "the outputs ..."); None when its outputs can stay.

    They stay when they are complete (``is_complete``) and, given ``expected`` (setting name ->
    value, or a function returning it), the ``settings`` of the folder's ``report.json`` hold those values: outputs of other
    inputs or settings (the CSV row was edited, the command line changed) are not this run's.
    ``precision_used`` is read from the report's ``precision`` (what ``auto`` resolved to), and
    ``<input>_content`` from its ``input_contents`` (an input's content digest; not compared for a
    report that has none, written before they were recorded).
    """
    if not is_complete(outdir, outputs):
        return UNFINISHED
    if callable(expected):  # computed only for complete outputs (it may read the inputs)
        expected = expected()
    if not expected:
        return None
    try:
        report = json.loads((Path(outdir) / 'report.json').read_text(encoding='utf-8'))
        contents = {f'{name}_content': value for name, value in (report.get('input_contents') or {}).items()}
        settings = dict(report['settings'], precision_used=report.get('precision'), **contents)
        # Reports from before input_contents existed are judged by the inputs' names alone.
        differ = [name for name, value in expected.items() if settings.get(name) != value
                  and not (name.endswith('_content') and 'input_contents' not in report)]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return 'have an unreadable report.json'
    return f'were made with another {", ".join(differ)}' if differ else None


def shard(rows: Sequence[PairRow], rank: int, world_size: int) -> List[PairRow]:
    """The rows rank ``rank`` of ``world_size`` does: every ``world_size``-th row from ``rank`` on.

    Each row belongs to exactly one rank; interleaving spreads long and short rows evenly.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f'bad rank {rank} of {world_size}')
    return list(rows[rank::world_size])


def batches(rows: Sequence[PairRow], batch_size: int) -> List[List[PairRow]]:
    """Consecutive groups of at most ``batch_size`` rows."""
    if batch_size < 1:
        raise ValueError('batch_size must be at least 1')
    return [list(rows[i:i + batch_size]) for i in range(0, len(rows), batch_size)]
