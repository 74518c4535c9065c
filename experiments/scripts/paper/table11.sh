#!/usr/bin/env bash
# Table 11 of the paper: MS COCO detection (mAP@.5, mAP@[.5,.95], percent), VGG-16, on COCO val
# (computed here with COCOeval) and COCO test-dev (a results json for the COCO evaluation server,
# which scores it: "server").
# Usage: experiments/scripts/paper/table11.sh GPU_ID [--smoke]   (see common.sh)
# Needs MS COCO 2014 (train, val) and 2015 test-dev under data/coco, upstream's COCO selective
# search boxes (data/coco_proposals/selective_search) for the Fast R-CNN rows, VGG16 ImageNet weights.
# The paper's COCO settings (experiments/cfgs/coco_paper.yml): 12 anchors (4 scales x 3 ratios),
# Fast R-CNN negatives in [0, 0.5), lr 0.003 for 240k iterations then 0.0003 for 80k per step, its
# 8-GPU minibatch as iter_size 8 on one device.
set -euo pipefail
cd "$(dirname "$0")/../../.."
TABLE=table11
source experiments/scripts/paper/common.sh
source experiments/scripts/paper/systems.sh

# coco_row SYSTEM VAL: record a COCO system's val numbers (VAL 1) and its test-dev server file
coco_row() {
  "$1"
  [ -z "$SKIP" ] || return 0
  if [ "$2" = 1 ]; then
    record --coco "$VAL_RESULT" --prefix val_ --server "$SERVER_FILE" --measures testdev_ap50 testdev_ap
  else
    record --server "$SERVER_FILE" --measures testdev_ap50 testdev_ap
  fi
}

main() {
paper_setup "$@"
require_imagenet VGG16
run_jobs "coco_fast_ref2" "coco_fast_impl" "coco_faster_train" "coco_faster_trainval"
# Fast R-CNN [2], SS 2000, COCO train: [2]'s settings (upstream's: negatives in [0.1, 0.5), lr 0.001, 280k), test-dev only
row fast_rcnn_ref2 coco_row coco_fast_ref2 0
# Fast R-CNN [impl. in this paper], SS 2000, COCO train: the paper's COCO settings; val and test-dev
row fast_rcnn_impl coco_row coco_fast_impl 1
# Faster R-CNN, RPN 300, COCO train: the 4-step training with the paper's COCO settings; val and test-dev
row faster_train coco_row coco_faster_train 1
# Faster R-CNN, RPN 300, COCO trainval (train + val): test-dev
row faster_trainval coco_row coco_faster_trainval 0
finish_table
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then main "$@"; fi
