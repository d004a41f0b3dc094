#!/usr/bin/env bash
# The original project's examples gallery: one look, one landmark image, six settings of the
# landmark weights, the results side by side in one labelled PNG.
#
#   bash examples/landmark_weights.sh [projector.py options...]
#   bash examples/landmark_weights.sh --num-steps=500 --device=cuda
#
# Runs projector.py six times, then examples/gallery.py:
#   --landmark_weight 0, 0.01, 0.05, 0.1 (the default group weights), then at 0.05 the
#   mouth-focused group weights 0.05,0.2,0.2,0.1,0.5,0.2,0.2,5,5 (eyes hardly weighted, lips
#   strongly) and uniform group weights 1,1,1,1,1,1,1,1,1.
# Group order: jaw, left_eyebrow, right_eyebrow, nose_bridge, lower_nose, left_eye, right_eye,
# outer_lip, inner_lip. With the FFHQ network (the default) this is the picture to compare with
# the original's README: more landmark weight, more expression and less image quality.
#
# Settings from the environment (defaults in brackets):
#   LOOK       [examples/faces/astronaut.png]
#   LANDMARKS  [examples/faces/astronaut_laugh.png]
#   OUTDIR     [examples/out/landmark_weights]: one folder per run and gallery.png
#   NETWORK    [the FFHQ 1024x1024 URL]; a --network option overrides it
#   PYTHON     [python3]
# Options are passed to every run (after --network, before the per-run weights). A run whose
# folder already holds its outputs is skipped, so the same command continues an interrupted
# gallery. Exits 1 if a run failed (the gallery then shows it as missing).
set -uo pipefail

if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
    sed -n '2,26s/^# \{0,1\}//p' "$0"
    exit 0
fi
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-python3}"
LOOK="${LOOK:-$HERE/faces/astronaut.png}"
LANDMARKS="${LANDMARKS:-$HERE/faces/astronaut_laugh.png}"
OUTDIR="${OUTDIR:-$HERE/out/landmark_weights}"
NETWORK="${NETWORK:-https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/ffhq.pkl}"

# name | projector.py weight options | gallery label
RUNS=(
    "lw_0|--landmark_weight=0|landmark_weight 0"
    "lw_0.01|--landmark_weight=0.01|landmark_weight 0.01"
    "lw_0.05|--landmark_weight=0.05|landmark_weight 0.05"
    "lw_0.1|--landmark_weight=0.1|landmark_weight 0.1"
    "mouth|--landmark_weight=0.05 --landmark_weights=0.05,0.2,0.2,0.1,0.5,0.2,0.2,5,5|0.05, mouth: 0.05,0.2,0.2,0.1,0.5,0.2,0.2,5,5"
    "uniform|--landmark_weight=0.05 --landmark_weights=1,1,1,1,1,1,1,1,1|0.05, uniform: 1,1,1,1,1,1,1,1,1"
)

failed=0
gallery_args=()
for entry in "${RUNS[@]}"; do
    IFS='|' read -r name weights label <<< "$entry"
    out="$OUTDIR/$name"
    gallery_args+=(--run "$out" "$label")
    if [ -f "$out/proj.png" ] && [ -f "$out/projected_w.npz" ] && [ -f "$out/report.json" ]; then
        echo "landmark_weights: $name: complete, skipped"
        continue
    fi
    echo "landmark_weights: $name: $weights"
    # $weights is split on spaces on purpose: it holds one or two options without spaces.
    # shellcheck disable=SC2086
    if ! "$PYTHON" "$HERE/../projector.py" --network="$NETWORK" "$@" \
            --target_look="$LOOK" --target_landmarks="$LANDMARKS" --outdir="$out" $weights; then
        echo "landmark_weights: $name: FAILED" >&2
        failed=$((failed + 1))
    fi
done

"$PYTHON" "$HERE/gallery.py" "$OUTDIR/gallery.png" "${gallery_args[@]}" || exit 1
[ "$failed" -eq 0 ]
