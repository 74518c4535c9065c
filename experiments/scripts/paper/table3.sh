#!/usr/bin/env bash
# Table 3 of the paper: VOC 2007 test mAP, Fast R-CNN + VGG-16, trained on 07, 07+12 or COCO+07+12.
# Usage: experiments/scripts/paper/table3.sh GPU_ID [--smoke]   (see common.sh)
# Needs VOC 2007 and 2012, VGG16 ImageNet weights, selective search (opencv-contrib-python), and for
# the COCO+07+12 row MS COCO 2014 (it trains the COCO trainval model of Table 11 first).
# Table 6 prints the per-class APs of the same six runs (table6.sh; no second training).
set -euo pipefail
cd "$(dirname "$0")/../../.."
TABLE=table3
source experiments/scripts/paper/common.sh
source experiments/scripts/paper/systems.sh

table3_rows() {
require_imagenet VGG16
ss_props voc_2007_trainval voc_2012_trainval voc_2007_test || true
run_jobs "ss07 VGG16" "ss0712" "shared07 VGG16" "shared0712" "coco0712"
# SS, 2000, 07: Fast R-CNN + VGG16 on 07 trainval's selective search boxes (2000, fast mode), tested on 07 test's
row ss_07 voc_row ss07 VGG16
# SS, 2000, 07+12: the same trained on VOC 2007 trainval + VOC 2012 trainval
row ss_0712 voc_row ss0712
# RPN+VGG unshared, 300, 07: the 4-step training stopped after step 2, 2000 proposals to train, 300 at test time
row rpn_unshared_07 voc_row unshared07 VGG16
# RPN+VGG shared, 300, 07: the 4-step alternating training on 07 trainval, 300 test proposals
row rpn_shared_07 voc_row shared07 VGG16
# RPN+VGG shared, 300, 07+12: the same on 07+12
row rpn_shared_0712 voc_row shared0712
# RPN+VGG shared, 300, COCO+07+12: the COCO trainval model (Table 11, narrowed to VOC's classes) initialises the 4 steps on 07+12
row rpn_shared_coco0712 voc_row coco0712
}

main() {
paper_setup "$@"
table3_rows
finish_table
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then main "$@"; fi
