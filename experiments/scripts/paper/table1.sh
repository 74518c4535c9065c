#!/usr/bin/env bash
# Table 1 of the paper: the learned average proposal size (w x h) of each of the 9 anchors of the
# ZF RPN, s = 600.
# Usage: experiments/scripts/paper/table1.sh GPU_ID [--smoke]   (see common.sh)
# The paper does not say over which model, images or proposals it averaged; here: the shared ZF
# system of Table 2 (4-step training on VOC 2007 trainval), its RPN's test-time proposals (top
# 6000, NMS 0.7, top 300) on VOC 2007 test, each counted for the anchor it was decoded from, in
# input pixels at s = 600 (tools/anchor_stats.py --mode proposals).
set -euo pipefail
cd "$(dirname "$0")/../../.."
TABLE=table1
source experiments/scripts/paper/common.sh
source experiments/scripts/paper/systems.sh

anchor_sizes() {
  need_data voc_2007_trainval voc_2007_test || return 0
  altopt ZF voc07 voc_2007_trainval voc 4
  local out="$RUNS/${MODEL_KEY}_anchor_stats/anchor_stats_proposals"
  if [ ! -f "$out.json" ]; then
    mkdir -p "$(dirname "$out")"
    "$PYTHON" tools/anchor_stats.py --gpu "$JOB_GPU" --def "$MODEL_PROTO/rpn_test.prototxt" --net "$MODEL" \
      --imdb voc_2007_test --mode proposals --out_prefix "$out" "${MODEL_CFGS[@]}" \
      --set "${BASE_SETS[@]}" "${MODEL_SETS[@]}"
  fi
  record --anchor_stats "$out.json"   # all nine anchors' rows at once
}

main() {
paper_setup "$@"
require_imagenet ZF
# 128², 2:1 ... 512², 1:2: the nine anchors (3 scales x 3 ratios) of the shared RPN+ZF, VOC 2007 trainval
row s128_r2_1 anchor_sizes
finish_table
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then main "$@"; fi
