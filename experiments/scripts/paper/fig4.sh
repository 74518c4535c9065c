#!/usr/bin/env bash
# Figure 4 of the paper: recall against IoU (0.5 to 1.0) on VOC 2007 test at 300, 1000 and 2000
# proposals per image, for SS, EB (where EB_DIR has its proposals), RPN ZF and RPN VGG; three
# panels, as output/paper/fig4/fig4.png (matplotlib, optional: without it recall.csv only) and
# recall.csv; results.md lists recall at IoU 0.5 and 0.7 and the mean over IoU 0.5:0.05:1 (the
# paper prints curves only, so its column is empty).
# Each method's N proposals are its top N by its own ranking: the RPNs' by score after NMS (the
# 2000-per-image proposals of the shared systems' RPNs, VOC 2007 trainval), selective search's in
# its own order, EB's in its file's order.
# Usage: experiments/scripts/paper/fig4.sh GPU_ID [--smoke]   (see common.sh)
set -euo pipefail
cd "$(dirname "$0")/../../.."
TABLE=fig4
source experiments/scripts/paper/common.sh
source experiments/scripts/paper/systems.sh

THRESHOLDS=(0.5 0.55 0.6 0.65 0.7 0.75 0.8 0.85 0.9 0.95 1.0)

# recall_csv METHOD_NAME EVAL_RECALL_ARGS...: CURVE=TABLE_DIR/recall_<name>.csv (skipped when written)
recall_csv() {
  CURVE="$TABLE_DIR/recall_$1.csv"
  [ -f "$CURVE" ] || "$PYTHON" tools/eval_recall.py --imdb voc_2007_test "${@:2}" --top_n 300 1000 2000 \
    --thresholds "${THRESHOLDS[@]}" --out "$CURVE" "${SMOKE_CFG[@]}" --set "${BASE_SETS[@]}"
}

# curve METHOD N: the recall of one method at N proposals
curve() {
  need_data voc_2007_test || return 0
  case "$1" in
    ss) ss_props voc_2007_test || return 0
        recall_csv ss --method selective_search ;;
    eb) eb_file voc_2007_test || return 0
        recall_csv eb --method rpn --rpn_file "$EB_FILE" ;;
    rpn_zf|rpn_vgg)
        local net=ZF; [ "$1" = rpn_vgg ] && net=VGG16
        need_data voc_2007_trainval || return 0
        altopt "$net" voc07 voc_2007_trainval voc 4
        rpn_props "${MODEL_KEY}_shared_rpn_voc_2007_test" "$MODEL" voc_2007_test
        recall_csv "$1" --method rpn --rpn_file "$PROPS" ;;
  esac
  record --recall "$CURVE" --top_n "$2"
}

main() {
paper_setup "$@"
require_imagenet ZF VGG16
run_jobs "shared07 ZF" "shared07 VGG16"
local m n
for m in ss eb rpn_zf rpn_vgg; do
  for n in 300 1000 2000; do
    # <method>, N proposals: recall of the top N per image at IoU 0.5 ... 1.0 on VOC 2007 test
    row "${m}_$n" curve "$m" "$n"
  done
done
local curves=()
[ -f "$TABLE_DIR/recall_ss.csv" ] && curves+=(--curve "SS=$TABLE_DIR/recall_ss.csv")
[ -f "$TABLE_DIR/recall_eb.csv" ] && curves+=(--curve "EB=$TABLE_DIR/recall_eb.csv")
[ -f "$TABLE_DIR/recall_rpn_zf.csv" ] && curves+=(--curve "RPN ZF=$TABLE_DIR/recall_rpn_zf.csv")
[ -f "$TABLE_DIR/recall_rpn_vgg.csv" ] && curves+=(--curve "RPN VGG=$TABLE_DIR/recall_rpn_vgg.csv")
local title=()
[ "$SMOKE" = 1 ] && title=(--title "SMOKE RUN (toy data, SMALL net, a few iterations): not the paper's curves")
"$PYTHON" tools/paper_fig4.py "${curves[@]}" --out_dir "$TABLE_DIR" "${title[@]}"
finish_table
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then main "$@"; fi
