#!/usr/bin/env bash
# Table 10 of the paper: one-stage vs. two-stage detection, VOC 2007 test mAP, ZF + Fast R-CNN
# trained on VOC 2007 trainval.
# Usage: experiments/scripts/paper/table10.sh GPU_ID [--smoke]   (see common.sh)
# The one-stage "proposals" are dense sliding windows (every anchor of 3 scales x 3 ratios on the
# conv5 grid of the image at s = 600, clipped; about 20000 per image: tools/dense_proposals.py);
# Fast R-CNN + ZF is trained on them and tested on all of them at one scale, or on a 5-scale image
# pyramid (each window pooled at the level whose scaled area is nearest 224², as Fast R-CNN): the
# same model, tested at SPPnet's / Fast R-CNN's scales 480, 576, 688, 864, 1200 (the paper lists none).
set -euo pipefail
cd "$(dirname "$0")/../../.."
TABLE=table10
source experiments/scripts/paper/common.sh
source experiments/scripts/paper/systems.sh

# dense07 SCALES: the one-stage Fast R-CNN + ZF, tested at 1 or 5 scales
dense07() {
  need_data voc_2007_trainval voc_2007_test || return 0
  dense_props voc_2007_trainval
  local train="$PROPS"
  dense_props voc_2007_test
  local test="$PROPS"
  frcn ZF dense_voc07 voc_2007_trainval voc "$train"
  if [ "$1" = 5 ]; then TEST_SETS=("${FIVE_SCALES[@]}"); fi
  run_test "${MODEL_KEY}_${1}scales_voc_2007_test" "$MODEL_TEST_DEF" "$MODEL" voc_2007_test --proposals "$test"
  TEST_SETS=()
}

main() {
paper_setup "$@"
require_imagenet ZF
run_jobs "unshared07 ZF" "dense07 1"
# Two-stage: RPN + ZF unshared, 300 proposals / Fast R-CNN + ZF, 1 scale (Table 2's unshared row)
row two_stage voc_row unshared07 ZF
# One-stage: dense, 3 scales, 3 aspect ratios, ~20000 windows / Fast R-CNN + ZF, 1 scale
row one_stage_1scale voc_row dense07 1
# One-stage: the same detector tested on a 5-scale image pyramid
row one_stage_5scales voc_row dense07 5
finish_table
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then main "$@"; fi
