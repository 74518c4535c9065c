#!/usr/bin/env bash
# Table 8 of the paper: VOC 2007 test mAP of Faster R-CNN VGG16 (4-step training on VOC 2007
# trainval, 300 test proposals) with different anchors per position; only the anchors change
# (ANCHOR_SCALES in units of the stride 16: 8, 16, 32 = 128², 256², 512²; ANCHOR_RATIOS h/w).
# Usage: experiments/scripts/paper/table8.sh GPU_ID [--smoke]   (see common.sh)
set -euo pipefail
cd "$(dirname "$0")/../../.."
TABLE=table8
source experiments/scripts/paper/common.sh
source experiments/scripts/paper/systems.sh

# anchors NAME SCALES RATIOS: the shared VGG16 system trained and tested with these anchors
anchors() {
  need_data voc_2007_trainval voc_2007_test || return 0
  altopt VGG16 "voc07_anchors_$1" voc_2007_trainval voc 4 ANCHOR_SCALES "$2" ANCHOR_RATIOS "$3"
  run_test "${MODEL_KEY}_shared_voc_2007_test" "$MODEL_TEST_DEF" "$MODEL" voc_2007_test
}

main() {
paper_setup "$@"
require_imagenet VGG16
run_jobs "anchors s128_r1 [8] [1]" "anchors s256_r1 [16] [1]" "anchors s128_r3 [8] [0.5,1,2]" \
  "anchors s256_r3 [16] [0.5,1,2]" "anchors s3_r1 [8,16,32] [1]" "shared07 VGG16"
# 1 scale, 1 ratio: 128², 1:1 (one anchor per position)
row s128_r1 voc_row anchors s128_r1 "[8]" "[1]"
# 1 scale, 1 ratio: 256², 1:1
row s256_r1 voc_row anchors s256_r1 "[16]" "[1]"
# 1 scale, 3 ratios: 128², {2:1, 1:1, 1:2}
row s128_r3 voc_row anchors s128_r3 "[8]" "[0.5,1,2]"
# 1 scale, 3 ratios: 256², {2:1, 1:1, 1:2}
row s256_r3 voc_row anchors s256_r3 "[16]" "[0.5,1,2]"
# 3 scales, 1 ratio: {128², 256², 512²}, 1:1
row s3_r1 voc_row anchors s3_r1 "[8,16,32]" "[1]"
# 3 scales, 3 ratios: the default (Table 3's RPN+VGG shared 07 model)
row s3_r3 voc_row shared07 VGG16
finish_table
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then main "$@"; fi
