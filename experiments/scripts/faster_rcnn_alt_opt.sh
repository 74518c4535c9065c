#!/usr/bin/env bash
# Faster R-CNN, 4-step alternating optimisation, then test.
# Usage:
#   ./experiments/scripts/faster_rcnn_alt_opt.sh GPU_ID NET DATASET [--set KEY VALUE ...]
# Example:
#   ./experiments/scripts/faster_rcnn_alt_opt.sh 0 VGG16 pascal_voc --set EXP_DIR foobar RNG_SEED 42
#   ./experiments/scripts/faster_rcnn_alt_opt.sh cpu SMALL toy
# The iterations of the four steps are upstream's 80000,40000,80000,40000 on pascal_voc;
# ALT_ITERS=a,b,c,d (environment) overrides them. Rerunning the same command skips finished
# steps and resumes an unfinished one.
set -euo pipefail
cd "$(dirname "$0")/../.."
METHOD=faster_rcnn_alt_opt
source experiments/scripts/common.sh

# The whole body is one function, read by bash before it runs: editing this file while a
# run is under way cannot break that run.
main() {
parse_common_args "$@"
case "$DATASET" in
  coco) die "alt-opt on coco is not implemented (as upstream: no COCO alt-opt models)" ;;
  pascal_voc_0712) die "alt-opt trains on one imdb; use pascal_voc (VOC 2007) or faster_rcnn_end2end.sh" ;;
esac
resolve_dataset "$DATASET" 0 0 0 0
case "$DATASET" in
  pascal_voc) ALT_ITERS="${ALT_ITERS:-80000,40000,80000,40000}" ;;
  toy) ALT_ITERS="${ALT_ITERS:-400,400,400,400}" ;;      # see experiments/cfgs/toy.yml
  *) ALT_ITERS="${ALT_ITERS:-4000,2000,4000,2000}" ;;    # small VOC-format sets
esac
start_log "$METHOD"
pick_weights
cfg_args "experiments/cfgs/${METHOD}.yml"

final_model_file

time "$PYTHON" tools/train_faster_rcnn_alt_opt.py --gpu "$GPU_ID" \
  --net_name "$NET" \
  --models_dir "models/${PT_DIR}/${NET}/${METHOD}" \
  "${WEIGHTS_ARGS[@]}" \
  --imdb "$TRAIN_IMDB" \
  --iters "$ALT_ITERS" \
  --final_model_file "$FINAL_FILE" \
  "${CFG_ARGS[@]}" \
  "${EXTRA_ARGS[@]}"

test_final_model "models/${PT_DIR}/${NET}/${METHOD}/faster_rcnn_test.prototxt"
}

main "$@"
