#!/usr/bin/env bash
# Expression without the face shape: the same look and landmark image projected three ways.
#
#   bash examples/retarget.sh [projector.py options...]
#   bash examples/retarget.sh --num-steps=500 --device=cuda
#   bash examples/retarget.sh --retarget-groups=lips        (given to run 2 only)
#
#   1. plain:      --target_landmarks=the landmark image (its whole face shape comes through);
#   2. retarget:   the same with --retarget (eyebrows, eyes and lips from the landmark image,
#                  aligned to the look; the look keeps its jaw and nose);
#   3. open_mouth: run 2's used target (landmarks.json), edited by examples/edit_landmarks.py
#                  (lower lip down by 0.3 eye-corner distances, brows up by 0.1), projected again
#                  from the coordinates alone: no second photo involved.
# Then examples/gallery.py puts the three side by side in OUTDIR/gallery.png.
#
# Settings from the environment (defaults in brackets):
#   LOOK       [examples/faces/astronaut.png]
#   LANDMARKS  [examples/faces/astronaut_laugh.png]
#   OUTDIR     [examples/out/retarget]
#   NETWORK    [the FFHQ 1024x1024 URL]; a --network option overrides it
#   PYTHON     [python3]
# A run whose folder already holds its outputs is skipped. Exits 1 if a run failed.
set -uo pipefail

if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
    sed -n '2,22s/^# \{0,1\}//p' "$0"
    exit 0
fi
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-python3}"
LOOK="${LOOK:-$HERE/faces/astronaut.png}"
LANDMARKS="${LANDMARKS:-$HERE/faces/astronaut_laugh.png}"
OUTDIR="${OUTDIR:-$HERE/out/retarget}"
NETWORK="${NETWORK:-https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/ffhq.pkl}"

failed=0
project() {  # name, then the run's own options
    local name="$1"; shift
    local out="$OUTDIR/$name"
    if [ -f "$out/proj.png" ] && [ -f "$out/projected_w.npz" ] && [ -f "$out/report.json" ]; then
        echo "retarget: $name: complete, skipped"
        return 0
    fi
    echo "retarget: $name"
    if ! "$PYTHON" "$HERE/../projector.py" --network="$NETWORK" "${OPTIONS[@]}" \
            --target_look="$LOOK" --outdir="$out" "$@"; then
        echo "retarget: $name: FAILED" >&2
        failed=$((failed + 1))
        return 1
    fi
}

# --retarget-groups goes to the --retarget run only (the other two would refuse it).
OPTIONS=()
GROUPS_OPTION=()
while [ $# -gt 0 ]; do
    case "$1" in
        --retarget-groups=*) GROUPS_OPTION=("$1") ;;
        --retarget-groups) GROUPS_OPTION=("$1" "${2:-}"); shift ;;
        *) OPTIONS+=("$1") ;;
    esac
    shift
done
project plain --target_landmarks="$LANDMARKS"
if project retarget --target_landmarks="$LANDMARKS" --retarget "${GROUPS_OPTION[@]}"; then
    mkdir -p "$OUTDIR"
    # The retargeted points the run aimed at (written with --retarget, also without landmarks.json).
    if "$PYTHON" "$HERE/edit_landmarks.py" "$OUTDIR/retarget/target_landmarks_used.json" \
            "$OUTDIR/open_mouth.json" --open-mouth=0.3 --raise-brows=0.1; then
        project open_mouth --target_landmarks="$OUTDIR/open_mouth.json"
    else
        echo "retarget: open_mouth: the edit FAILED, not projected" >&2
        failed=$((failed + 1))
    fi
fi

"$PYTHON" "$HERE/gallery.py" "$OUTDIR/gallery.png" --run "$OUTDIR/plain" "landmark image" \
    --run "$OUTDIR/retarget" "retargeted" --run "$OUTDIR/open_mouth" "edited: mouth open" || exit 1
[ "$failed" -eq 0 ]
