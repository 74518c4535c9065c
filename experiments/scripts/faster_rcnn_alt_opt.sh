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
# STOP_AFTER=n (environment, default 4; the tool's --stop_after) stops after step n, for the
# paper's ablations (Table 2):
#   STOP_AFTER=2  the "unshared" system: the stage-1 RPN's proposals on the test set (the
#                 config's TEST.RPN_* counts, as the shared test net uses), tested with the
#                 stage-1 Fast R-CNN (models/<set>/<NET>/fast_rcnn/test.prototxt)
#   STOP_AFTER=1  the stage-1 RPN alone ("RPN trained alone"): its proposals on the test set
#                 (upstream's generation counts, 2000 per image), for a detector trained on
#                 other proposals (tools/test_net.py --proposals FILE --set TEST.PROPOSAL_TOP_N N)
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
  # toy (SMALL from scratch, CPU): step 2 trains the shared convs and the detector from
  # scratch, so it gets the end2end quick start's 3000 updates (of 2 images each); steps 1 and 3
  # train only an RPN (800 and 1000 reach 0.98 / 0.99 recall at 0.5 IoU with 300 proposals on
  # toy_test), step 4 only the detector's fc layers (frozen convs). The toy solvers drop the lr at
  # 3/4 of these counts. About 1.5x the end2end quick start's CPU time (docs/benchmarks.md).
  toy) ALT_ITERS="${ALT_ITERS:-800,3000,1000,800}" ;;
  *) ALT_ITERS="${ALT_ITERS:-4000,2000,4000,2000}" ;;    # small VOC-format sets
esac
STOP_AFTER="${STOP_AFTER:-4}"
[[ "$STOP_AFTER" =~ ^[1-4]$ ]] || die "STOP_AFTER must be 1, 2, 3 or 4, got '$STOP_AFTER'"
start_log "$METHOD"
pick_weights
cfg_args "experiments/cfgs/${METHOD}.yml"

final_model_file

time "${RUN_RANKS[@]}" tools/train_faster_rcnn_alt_opt.py --gpu "$GPU_ARG" \
  --net_name "$NET" \
  --models_dir "models/${PT_DIR}/${NET}/${METHOD}" \
  "${WEIGHTS_ARGS[@]}" \
  --imdb "$TRAIN_IMDB" \
  --iters "$ALT_ITERS" \
  --stop_after "$STOP_AFTER" \
  --final_model_file "$FINAL_FILE" \
  "${CFG_ARGS[@]}" \
  "${EXTRA_ARGS[@]}"

case "$STOP_AFTER" in
  4) test_final_model "models/${PT_DIR}/${NET}/${METHOD}/faster_rcnn_test.prototxt" ;;
  2) test_unshared ;;
  1) rpn_alone_proposals ;;
  *) echo "Stopped after step $STOP_AFTER: nothing to test" ;;
esac
}

# stage1_proposals MODEL OUT [ARGS...]: the stage-1 RPN's proposals on $TEST_IMDB
stage1_proposals() {
  local model="$1" out="$2"; shift 2
  time "$PYTHON" tools/rpn_generate.py --gpu "$GPU_ARG" \
    --def "models/${PT_DIR}/${NET}/${METHOD}/rpn_test.prototxt" \
    --net "$model" \
    --imdb "$TEST_IMDB" \
    --out "$out" \
    "$@" \
    "${CFG_ARGS[@]}" \
    "${EXTRA_ARGS[@]}"
}

# test_unshared: STOP_AFTER=2. $FINAL_FILE names the stage-1 Fast R-CNN; the stage-1 RPN lies
# beside it. Its proposals (the TEST.RPN_* counts of the run's config) feed the Fast R-CNN test net.
test_unshared() {
  local frcn rpn props def="models/${PT_DIR}/${NET}/fast_rcnn/test.prototxt"
  frcn=$(cat "$FINAL_FILE")
  rpn="$(dirname "$frcn")/${NET}_rpn_stage1_final.caffemodel"
  props="$(dirname "$frcn")/${NET}_unshared_${TEST_IMDB}_proposals.npz"
  [ -f "$def" ] || def="models/pascal_voc/${NET}/fast_rcnn/test.prototxt"
  stage1_proposals "$rpn" "$props" --test_counts
  test_final_model "$def" --proposals "$props"
}

# rpn_alone_proposals: STOP_AFTER=1. The stage-1 RPN's proposals on the test set (2000 per image).
rpn_alone_proposals() {
  local rpn props
  rpn=$(cat "$FINAL_FILE")
  props="$(dirname "$rpn")/${NET}_rpn_stage1_final_${TEST_IMDB}_proposals.npz"
  echo "Stage-1 RPN (trained alone): $rpn"
  stage1_proposals "$rpn" "$props"
  echo "Test a detector trained on other proposals with them, e.g.:"
  echo "  tools/test_net.py --def <fast_rcnn test.prototxt> --net <detector> --imdb $TEST_IMDB --proposals $props --set TEST.PROPOSAL_TOP_N 300"
}

main "$@"
