#!/usr/bin/env bash
# Landmark models with and without handedness as an input, on the HaGRID sample (its v2 files carry no
# handedness: annotate --hagrid re-runs the detector on the frames and adds it, nothing else).
#
#   bash tools/handedness_experiment.sh      # ~5 min on 2 CPU cores
#
# Why: *_inverted (stop, peace, two_up) is the back of the hand with the fingers still up. In 2-D landmarks a
# right hand's back looks like a left hand's palm, so without handedness stop and stop_inverted differ only
# by subtle cues, and the horizontal-flip augmentation makes them the same input. With handedness (negated by
# the flip) they differ. Trains mlp and gcn both ways with the CPU demo settings, then scores the four on the
# test split: results.md (accuracy, McNemar), orientation_pairs.csv (within-pair confusions) and
# orientation_mcnemar.csv (the paired test on the orientation pairs' hands) in $WORK/graphs.
set -euo pipefail
SAMPLE=${SAMPLE:-../shared/hagrid_sample}
WORK=${WORK:-runs/handedness}
DEVICE=${DEVICE:-auto}
HG=${HG:-uv run hand-gestures}

$HG annotate --hagrid "$SAMPLE" --out "$WORK/sample_handed"
$HG crop --data-dir "$WORK/sample_handed" --out "$WORK/crops"
train() {  # model, run name, extra flags...
  local model=$1 name=$2; shift 2
  if [ -f "$WORK/final_models/$name.pt" ]; then echo "$name: kept"; return; fi
  $HG train --model "$model" --run-name "$name" --crops-dir "$WORK/crops" --out-dir "$WORK/final_models" \
    --graphs-dir "$WORK/graphs_train" --device "$DEVICE" --epochs 150 --patience 30 "$@"
}
for m in mlp gcn; do
  train "$m" "$m" --seed 0
  train "$m" "${m}_handedness" --seed 0 --hparam handedness=true
done
$HG evaluate --models-dir "$WORK/final_models" --crops-dir "$WORK/crops" --graphs-dir "$WORK/graphs" \
  --caption "HaGRID sample test split; landmark models with and without handedness (annotate --hagrid)"
