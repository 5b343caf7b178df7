#!/usr/bin/env bash
# The five models trained on a HaGRID crop folder (../shared/hagrid_crops: 46,821 real crops, HaGRID's train
# split, no landmarks, no user_id) and scored on the official, subject-disjoint val/test splits of
# ../shared/hagrid_sample, framed the way the crops are (the hand's box only, no context).
#
#   bash tools/hagrid_crops_experiment.sh            # CPU plan (2 cores: ~1.5 h; ResNet-34 capped per epoch)
#   PLAN=gpu bash tools/hagrid_crops_experiment.sh   # the same steps with full epochs, for a GPU machine
#
# Every step resumes: annotate keeps a per-image cache, crop keeps whole crops, a trained model is not
# retrained (delete its checkpoint to redo it). Steps:
#   1. annotate the crop folder (--crops: the box is the whole crop; landmarks and handedness by MediaPipe
#      on a padded canvas), all of it as the train split (no user ids: no split inside it can be honest);
#   2. a dataset root whose train split is that and whose val/test splits are the sample's (links only);
#   3. crop it with --box-scale 1.0 --context box: a square around the box, filled outside the box, which
#      is exactly what a tight crop padded to a square is; the sample's hands get the same framing;
#   4. train mlp, gcn, cnn, resnet34, fusion (epochs picked on the sample's val split);
#   5. evaluate on the sample's test split, and against the models trained on the sample alone
#      (SAMPLE_MODELS, SAMPLE_CROPS: e.g. from `hand-gestures demo --data-dir ../shared/hagrid_sample`),
#      each scored on its own crops of the same hands, paired by hand (McNemar).
set -euo pipefail
CROPS=${CROPS:-../shared/hagrid_crops}
SAMPLE=${SAMPLE:-../shared/hagrid_sample}
WORK=${WORK:-runs/hagrid_crops}
PLAN=${PLAN:-cpu}
DEVICE=${DEVICE:-auto}
HG=${HG:-uv run hand-gestures}

mkdir -p "$WORK"
$HG annotate --images "$CROPS" --crops --split train --out "$WORK/annotated"

DS="$WORK/dataset"
mkdir -p "$DS/hagrid_annotations"
ln -sfn "$(realpath "$WORK/annotated/hagrid_annotations/train")" "$DS/hagrid_annotations/train"
for s in val test; do ln -sfn "$(realpath "$SAMPLE/hagrid_annotations/$s")" "$DS/hagrid_annotations/$s"; done
ln -sfn "$(realpath "$WORK/annotated/hagrid_dataset")" "$DS/hagrid_dataset_crops"
for d in "$SAMPLE"/hagrid_dataset*; do ln -sfn "$(realpath "$d")" "$DS/$(basename "$d")"; done

$HG crop --data-dir "$DS" --out "$WORK/crops" --box-scale 1.0 --context box

if [ "$PLAN" = gpu ]; then
  MLP=(--epochs 40 --patience 8); GCN=(--epochs 40 --patience 8); CNN=(--epochs 30)
  RESNET=(--epochs 12 --patience 4)
  FUSION=(--epochs 6)
else
  MLP=(--epochs 30 --patience 6); GCN=(--epochs 30 --patience 6); CNN=(--epochs 6 --patience 0)
  # ~25 images/s on 2 cores: 5 "epochs" of 250 batches of 32 (8,000 random crops each) is about 30 min
  RESNET=(--hparam weights=null --lr 1e-3 --scheduler onecycle --epochs 5 --patience 0 --max-train-batches 250)
  FUSION=(--hparam freeze_branches=true --hparam mode=logit --lr 1e-2 --epochs 2 --patience 0 --max-train-batches 100)
fi
train() {  # model, run name, extra flags...
  local model=$1 name=$2; shift 2
  if [ -f "$WORK/final_models/$name.pt" ]; then echo "$name: $WORK/final_models/$name.pt exists, kept"; return; fi
  $HG train --model "$model" --run-name "$name" --crops-dir "$WORK/crops" --out-dir "$WORK/final_models" \
    --graphs-dir "$WORK/graphs" --device "$DEVICE" "$@"
}
train mlp mlp_crops "${MLP[@]}"
train gcn gcn_crops "${GCN[@]}"
train cnn cnn_crops "${CNN[@]}"
train resnet34 resnet34_crops "${RESNET[@]}"
train fusion fusion_crops --init-from resnet34="$WORK/final_models/resnet34_crops.pt" \
  --init-from gcn="$WORK/final_models/gcn_crops.pt" "${FUSION[@]}"

$HG evaluate --models-dir "$WORK/final_models" --crops-dir "$WORK/crops" --graphs-dir "$WORK/graphs_eval"
if [ -n "${SAMPLE_MODELS:-}" ]; then
  $HG evaluate --models-dir "$SAMPLE_MODELS" --crops-dir "$SAMPLE_CROPS" \
    --also "$WORK/final_models" "$WORK/crops" --graphs-dir "$WORK/graphs_vs_sample"
fi
