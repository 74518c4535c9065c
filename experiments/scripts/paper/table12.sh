#!/usr/bin/env bash
# Table 12 of the paper: Faster R-CNN VGG16 mAP on VOC 2007 test (computed here) and VOC 2012 test
# (comp4 archives for the evaluation server: "server") with different training data; the models of
# Tables 3 and 4, and the COCO trainval model of Table 11 narrowed to VOC's classes (tools/coco_to_voc.py).
# Usage: experiments/scripts/paper/table12.sh GPU_ID [--smoke]   (see common.sh)
set -euo pipefail
cd "$(dirname "$0")/../../.."
TABLE=table12
source experiments/scripts/paper/common.sh
source experiments/scripts/paper/systems.sh

# pair VOC07_SYSTEM VOC12_SYSTEM: record a row's 2007-test mAP and 2012-test server archive ("-": none)
pair() {
  local args=()
  if [ "$1" != - ]; then
    $1
    args+=(--voc "$RESULT" --as voc07_test)
  fi
  if [ "$2" != - ]; then
    $2
    args+=(--server "$SERVER_FILE" --measures voc12_test)
  fi
  record "${args[@]}"
}

main() {
paper_setup "$@"
require_imagenet VGG16
run_jobs "shared07 VGG16" "shared12" "shared0712" "shared07pp12" "coco0712" "coco07pp12"
# VOC07: the shared VGG16 system on 07 trainval (2007 test); the 2012-test cell, as printed, is Table 4's model trained on 12
row voc07 pair "shared07 VGG16" shared12
# VOC07+12: trained on 07+12, 2007 test
row voc0712 pair shared0712 -
# VOC07++12: trained on 07++12, 2012 test
row voc07pp12 pair - shared07pp12
# COCO (no VOC): the COCO trainval model, its softmax narrowed to VOC's 20 classes + background, no VOC training
row coco_novoc pair "coco_novoc voc_2007_test" "coco_novoc voc_2012_test"
# COCO+VOC07+12: the COCO model as the init of the 4 steps on 07+12, 2007 test
row coco_voc0712 pair coco0712 -
# COCO+VOC07++12: the same on 07++12, 2012 test
row coco_voc07pp12 pair - coco07pp12
finish_table
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then main "$@"; fi
