#!/usr/bin/env bash
# Table 4 of the paper: VOC 2012 test mAP, Fast R-CNN + VGG-16, trained on 12, 07++12 or COCO+07++12.
# VOC 2012 test has no public annotations: each test writes its detections as comp4 results
# (results/VOC2012/Main/comp4_det_test_<class>.txt in a .tar.gz) for the PASCAL VOC evaluation
# server (http://host.robots.ox.ac.uk:8080/), which scores them; the "ours" column says "server"
# and the archive's path is in the notes. No AP is computed locally.
# Usage: experiments/scripts/paper/table4.sh GPU_ID [--smoke]   (see common.sh)
# Needs VOC 2007 and 2012 (with the 2012 test images), VGG16 ImageNet weights, selective search,
# and MS COCO 2014 for the COCO row. Table 7 lists the same runs per class (table7.sh).
set -euo pipefail
cd "$(dirname "$0")/../../.."
TABLE=table4
source experiments/scripts/paper/common.sh
source experiments/scripts/paper/systems.sh

table4_rows() {
require_imagenet VGG16
ss_props voc_2007_trainval voc_2007_test voc_2012_trainval voc_2012_test || true
run_jobs "ss12" "ss07pp12" "shared12" "shared07pp12" "coco07pp12"
# SS, 2000, 12: Fast R-CNN + VGG16 on VOC 2012 trainval's selective search boxes, tested on VOC 2012 test's (server)
row ss_12 server_row ss12
# SS, 2000, 07++12: the same trained on VOC 2007 trainval+test + VOC 2012 trainval
row ss_07pp12 server_row ss07pp12
# RPN+VGG shared, 300, 12: the 4-step alternating training on VOC 2012 trainval, 300 test proposals (server)
row rpn_12 server_row shared12
# RPN+VGG shared, 300, 07++12
row rpn_07pp12 server_row shared07pp12
# RPN+VGG shared, 300, COCO+07++12: the COCO trainval model (narrowed to VOC's classes) initialises the 4 steps on 07++12
row rpn_coco07pp12 server_row coco07pp12
}

main() {
paper_setup "$@"
table4_rows
finish_table
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then main "$@"; fi
