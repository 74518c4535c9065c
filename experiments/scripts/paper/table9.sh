#!/usr/bin/env bash
# Table 9 of the paper: VOC 2007 test mAP of Faster R-CNN VGG16 (4-step training on VOC 2007
# trainval, 300 test proposals) for lambda = 0.1, 1, 10, 100 in the RPN loss (Eq. 1); only lambda
# changes. The paper's lambda weighs the box term normalised by ~2400 anchor locations; the nets
# here normalise it by the 256 sampled anchors, so lambda = 10 x TRAIN.RPN_LOSS_BBOX_WEIGHT
# (0.01, 0.1, 1 = the prototxt's default, 10; see lib/frcnn/config.py).
# Usage: experiments/scripts/paper/table9.sh GPU_ID [--smoke]   (see common.sh)
set -euo pipefail
cd "$(dirname "$0")/../../.."
TABLE=table9
source experiments/scripts/paper/common.sh
source experiments/scripts/paper/systems.sh

# lambda_run NAME WEIGHT: the shared VGG16 system trained and tested with this RPN box-loss weight
lambda_run() {
  need_data voc_2007_trainval voc_2007_test || return 0
  altopt VGG16 "voc07_lambda$1" voc_2007_trainval voc 4 TRAIN.RPN_LOSS_BBOX_WEIGHT "$2"
  run_test "${MODEL_KEY}_shared_voc_2007_test" "$MODEL_TEST_DEF" "$MODEL" voc_2007_test
}

main() {
paper_setup "$@"
require_imagenet VGG16
run_jobs "lambda_run 0.1 0.01" "lambda_run 1 0.1" "lambda_run 100 10" "shared07 VGG16"
# lambda = 0.1 (TRAIN.RPN_LOSS_BBOX_WEIGHT 0.01)
row lambda_0.1 voc_row lambda_run 0.1 0.01
# lambda = 1 (weight 0.1)
row lambda_1 voc_row lambda_run 1 0.1
# lambda = 10, the default (weight 1): Table 3's RPN+VGG shared 07 model
row lambda_10 voc_row shared07 VGG16
# lambda = 100 (weight 10)
row lambda_100 voc_row lambda_run 100 10
finish_table
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then main "$@"; fi
