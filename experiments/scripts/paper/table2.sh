#!/usr/bin/env bash
# Table 2 of the paper: VOC 2007 test mAP of Fast R-CNN + ZF trained on VOC 2007 trainval, with the
# train-time and test-time proposals varied (and the RPN ablations of its lower half).
# Usage: experiments/scripts/paper/table2.sh GPU_ID [--smoke]   (see common.sh)
# Needs VOC 2007, ZF and VGG16 ImageNet weights, selective search (opencv-contrib-python), and for
# the EB row EdgeBoxes proposal files in EB_DIR.
set -euo pipefail
cd "$(dirname "$0")/../../.."
TABLE=table2
source experiments/scripts/paper/common.sh
source experiments/scripts/paper/systems.sh

# eb07: Fast R-CNN + ZF trained and tested on EdgeBoxes (EB_DIR/<imdb>.npz, the first 2000 of each image)
eb07() {
  need_data voc_2007_trainval voc_2007_test || return 0
  eb_file voc_2007_trainval || return 0
  local train="$EB_FILE"
  eb_file voc_2007_test || return 0
  frcn ZF eb_voc07 voc_2007_trainval voc "$train" TRAIN.PROPOSAL_TOP_N 2000 TEST.PROPOSAL_TOP_N 2000
  run_test "${MODEL_KEY}_voc_2007_test" "$MODEL_TEST_DEF" "$MODEL" voc_2007_test --proposals "$EB_FILE"
}

# ss_rpn NET VARIANT N: the SS-trained Fast R-CNN + ZF (one detector, fixed) tested on the first N
# proposals of the stage-1 RPN of NET (trained alone from ImageNet: no shared features) on VOC 2007
# test. VARIANT: plain (NMS 0.7, 2000 per image by score), nonms (the top 6000 by score, no NMS),
# nocls<N> (N boxes drawn at random from the decoded boxes: no scores, no NMS), noreg (the anchors
# themselves, no regression, scored, NMS, 2000).
ss_rpn() {
  local net="$1" variant="$2" top="$3" gen=()
  case "$variant" in
    plain) ;;
    nonms) gen=(--set TEST.RPN_ABLATION no_nms TEST.RPN_POST_NMS_TOP_N 6000) ;;
    nocls*) gen=(--set TEST.RPN_ABLATION no_cls TEST.RPN_POST_NMS_TOP_N "${variant#nocls}") ;;
    noreg) gen=(--set TEST.RPN_ABLATION no_reg) ;;
    *) die "ss_rpn: unknown variant $variant" ;;
  esac
  need_data voc_2007_trainval voc_2007_test || return 0
  ss_props voc_2007_trainval || return 0
  altopt "$net" voc07 voc_2007_trainval voc 1
  rpn_props "${MODEL_KEY}_rpn1_${variant}_voc_2007_test" "$MODEL" voc_2007_test "${gen[@]}"
  local props="$PROPS"
  frcn ZF ss_voc07 voc_2007_trainval voc -
  TEST_SETS=(TEST.PROPOSAL_TOP_N "$top")
  run_test "${MODEL_KEY}_on_$(basename "$props" .npz)_top$top" "$MODEL_TEST_DEF" "$MODEL" voc_2007_test \
    --proposals "$props"
  TEST_SETS=()
}

main() {
paper_setup "$@"
require_imagenet ZF VGG16
ss_props voc_2007_trainval voc_2007_test || true
run_jobs "shared07 ZF" "ss07 ZF" "altopt VGG16 voc07 voc_2007_trainval voc 1"
# SS 2000 / SS 2000: Fast R-CNN + ZF trained on 07 trainval's selective search boxes (fast mode, 2000), tested on 07 test's
row ss_ss voc_row ss07 ZF
# EB 2000 / EB 2000: the same on EdgeBoxes (its default setting tuned for IoU 0.7), 2000 boxes
row eb_eb voc_row eb07
# RPN+ZF shared 2000 / 300: the 4-step alternating training (2000 RPN proposals train Fast R-CNN), 300 at test time
row rpn_shared voc_row shared07 ZF
# RPN+ZF unshared 2000 / 300: the same training stopped after step 2 (separate RPN and detector), 300 at test time
row rpn_unshared voc_row unshared07 ZF
# SS 2000 / RPN+ZF 100: the SS-trained detector on the first 100 proposals of the ZF RPN trained alone
row ss_rpn_100 voc_row ss_rpn ZF plain 100
# SS 2000 / RPN+ZF 300
row ss_rpn_300 voc_row ss_rpn ZF plain 300
# SS 2000 / RPN+ZF 1000
row ss_rpn_1000 voc_row ss_rpn ZF plain 1000
# SS 2000 / RPN+ZF (no NMS) 6000: the top 6000 by score, without NMS
row ss_rpn_nonms_6000 voc_row ss_rpn ZF nonms 6000
# SS 2000 / RPN+ZF (no cls) 100: the cls layer removed: 100 proposals sampled at random from the unscored regions
row ss_rpn_nocls_100 voc_row ss_rpn ZF nocls100 100
# SS 2000 / RPN+ZF (no cls) 300
row ss_rpn_nocls_300 voc_row ss_rpn ZF nocls300 300
# SS 2000 / RPN+ZF (no cls) 1000
row ss_rpn_nocls_1000 voc_row ss_rpn ZF nocls1000 1000
# SS 2000 / RPN+ZF (no reg) 300: the reg layer removed: the proposals are the anchor boxes (scored, NMS), first 300
row ss_rpn_noreg_300 voc_row ss_rpn ZF noreg 300
# SS 2000 / RPN+ZF (no reg) 1000
row ss_rpn_noreg_1000 voc_row ss_rpn ZF noreg 1000
# SS 2000 / RPN+VGG 300: the RPN trained alone with VGG-16 (stage 1), its first 300 proposals, the SS-trained ZF detector
row ss_rpnvgg_300 voc_row ss_rpn VGG16 plain 300
finish_table
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then main "$@"; fi
