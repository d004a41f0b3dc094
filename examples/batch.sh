#!/usr/bin/env bash
# Project many look/landmark pairs, one `python projector.py` call per row of a CSV file.
#
#   bash examples/batch.sh PAIRS.csv [projector.py options...]
#   bash examples/batch.sh examples/pairs.csv \
#       --network=https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/ffhq.pkl --num-steps=500
#
# The faster way: `python projector.py --pairs PAIRS.csv [options...]` reads a CSV of the same
# three columns and loads the networks once for all rows (this script starts a new process, and
# loads the networks again, for every row). They differ in the rest: --pairs refuses columns it
# does not know and applies its optional columns (seed, lpips_weight, landmark_weight,
# landmark_weights) per row, which this script ignores; and --pairs redoes a complete row whose
# report.json names other inputs or settings, while this script only checks that the files exist.
# This script is the plain shell loop, kept for users whose own scripts work that way and as a
# template for per-row changes.
#
# PAIRS.csv: a header row with the columns look,landmarks,outdir (other columns are ignored),
# then one row per projection. Paths are relative to the CSV file's folder (absolute paths and
# ~ work too). Written by a spreadsheet or by Python's csv module: CRLF line ends, quoted
# fields, commas and spaces in paths and a UTF-8 byte order mark are all read correctly.
#
# Every option after PAIRS.csv goes to every projector.py call (--network is required there).
# A row whose outdir already holds proj.png, projected_w.npz and report.json is skipped, so
# running the same command again after an interruption continues where it stopped. A row that
# fails is reported and the loop goes on; the script exits 1 at the end if any row failed
# (2 if the CSV itself cannot be read). Python: $PYTHON, else python3.
set -uo pipefail

if [ $# -lt 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
    sed -n '2,22s/^# \{0,1\}//p' "$0"
    [ $# -lt 1 ] && exit 2 || exit 0
fi
CSV="$1"
shift
PYTHON="${PYTHON:-python3}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROJECTOR="$HERE/../projector.py"

# Parse the CSV with Python's csv module; print look, landmarks, outdir of each row as
# NUL-terminated absolute paths (an empty field stays empty and fails that row below).
read_rows() {
    "$PYTHON" - "$CSV" <<'EOF'
import csv, os, sys

path = sys.argv[1]
try:
    with open(path, newline='', encoding='utf-8-sig') as f:
        rows = list(csv.reader(f))
except (OSError, UnicodeDecodeError, csv.Error) as exc:
    sys.exit(f'error: cannot read the pairs file {path}: {exc}')
rows = [r for r in rows if any(cell.strip() for cell in r)]
if not rows:
    sys.exit(f'error: the pairs file {path} is empty (expected a header row look,landmarks,outdir)')
header = [cell.strip().lower() for cell in rows[0]]
missing = [name for name in ('look', 'landmarks', 'outdir') if name not in header]
if missing:
    sys.exit(f'error: the pairs file {path} has no column {", ".join(missing)} '
             f'(its header row is {",".join(rows[0])}; expected look,landmarks,outdir)')
base = os.path.dirname(os.path.abspath(path))
out = sys.stdout.buffer
for row in rows[1:]:
    for name in ('look', 'landmarks', 'outdir'):
        i = header.index(name)
        value = row[i].strip() if i < len(row) else ''
        if value:
            value = os.path.join(base, os.path.expanduser(value))
        out.write(value.encode('utf-8') + b'\0')
EOF
}

ROWS_FILE="$(mktemp)"
trap 'rm -f "$ROWS_FILE"' EXIT
read_rows > "$ROWS_FILE" || exit 2

complete() {  # the outputs that mark a finished row
    [ -f "$1/proj.png" ] && [ -f "$1/projected_w.npz" ] && [ -f "$1/report.json" ]
}

total=0; done_=0; skipped=0; failed=0; failed_rows=()
while IFS= read -r -d '' look && IFS= read -r -d '' landmarks && IFS= read -r -d '' outdir; do
    total=$((total + 1))
    row="row $total ($outdir)"
    if [ -z "$look" ] || [ -z "$landmarks" ] || [ -z "$outdir" ]; then
        echo "batch: $row: empty look, landmarks or outdir field" >&2
        failed=$((failed + 1)); failed_rows+=("$total"); continue
    fi
    if complete "$outdir"; then
        echo "batch: $row: complete, skipped"
        skipped=$((skipped + 1)); continue
    fi
    echo "batch: $row: $look + $landmarks"
    if "$PYTHON" "$PROJECTOR" "$@" --target_look="$look" --target_landmarks="$landmarks" --outdir="$outdir" \
            && complete "$outdir"; then
        done_=$((done_ + 1))
    else
        echo "batch: $row: FAILED" >&2
        failed=$((failed + 1)); failed_rows+=("$total")
    fi
done < "$ROWS_FILE"

echo "batch: $total rows: $done_ projected, $skipped skipped (already complete), $failed failed${failed_rows:+ (rows ${failed_rows[*]})}"
[ "$failed" -eq 0 ]
