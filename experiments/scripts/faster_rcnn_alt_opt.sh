#!/usr/bin/env bash
# Faster R-CNN, 4-step alternating optimisation, then test.
# Usage:
#   ./experiments/scripts/faster_rcnn_alt_opt.sh GPU_ID NET DATASET [--set KEY VALUE ...]
# Example:
#   ./experiments/scripts/faster_rcnn_alt_opt.sh 0 VGG16 pascal_voc --set EXP_DIR foobar RNG_SEED 42
#   ./experiments/scripts/faster_rcnn_alt_opt.sh cpu SMALL toy
# The iterations of the four steps are upstream's 80000,40000,80000,40000 on the VOC sets and
# the paper's 320000 each on COCO; ALT_ITERS=a,b,c,d (environment) overrides them. Joined sets
# (pascal_voc_0712, pascal_voc_07++12, coco_paper_trainval) run each proposal pass over the
# joined set. Rerunning the same command skips finished
# steps and resumes an unfinished one.
set -euo pipefail
cd "$(dirname "$0")/../.."
METHOD=faster_rcnn_alt_opt
source experiments/scripts/common.sh

# The whole body is one function, read by bash before it runs: editing this file while a
# run is under way cannot break that run.
main() {
parse_common_args "$@"
resolve_dataset "$DATASET" 0 0 0 0
case "$DATASET" in
  pascal_voc|pascal_voc_0712|pascal_voc_2012|pascal_voc_07++12|coco_pascal_voc_0712|coco_pascal_voc_07++12)
    ALT_ITERS="${ALT_ITERS:-80000,40000,80000,40000}" ;;
  coco|coco_paper|coco_paper_trainval)  # the paper's COCO schedule (Sec. 4.2): every step 240k + 80k iterations
    ALT_ITERS="${ALT_ITERS:-$COCO_PAPER_ITERS,$COCO_PAPER_ITERS,$COCO_PAPER_ITERS,$COCO_PAPER_ITERS}" ;;
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
