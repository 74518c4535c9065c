#!/usr/bin/env bash
# Table 5 of the paper: test time per image (ms) of the trained systems, split as conv / proposal /
# region-wise (NMS, RoI pooling, fc, softmax) / total, s = 600, VOC 2007 test images.
# Usage: experiments/scripts/paper/table5.sh GPU_ID [--smoke] [--precision fp32|tf32|bf16]
# The medians over the first 100 VOC 2007 test images after 10 warm-up images
# (tools/paper_timing.py): CUDA events on the GPU GPU_ID names (the first of a list), the wall
# clock on the CPU. The SS row's proposal time is selective search on the CPU, as in the paper:
# the per-image time tools/selective_search.py recorded (one OpenCV thread), its conv and
# region-wise the VGG16 Fast R-CNN of Table 3 on those ~2000 boxes. The paper's numbers are a K40's.
# --precision (default fp32: TF32 off, Caffe's float32): tf32 or bf16 (autocast) on a GPU; a
# precision other than fp32 writes output/paper/table5_<precision>/ (the report shows fp32's).
set -euo pipefail
cd "$(dirname "$0")/../../.."
TABLE=table5
PAPER_OPTS=1  # --precision
source experiments/scripts/paper/common.sh
source experiments/scripts/paper/systems.sh

# timing SYSTEM: tools/paper_timing.py on the current model, into TABLE_DIR/timing_<row>.json
timing() {
  local out="$TABLE_DIR/timing_$ROW_KEY.json"
  "$PYTHON" tools/paper_timing.py --gpu "$GPU" --system "$1" --def "$2" --net "$MODEL" --imdb voc_2007_test \
    "${TIMING_NUM[@]}" --precision "$PRECISION" --out "$out" "${@:3}" "${MODEL_CFGS[@]}" \
    --set "${BASE_SETS[@]}" "${MODEL_SETS[@]}"
  record --json "$out" --note "$PRECISION; $(python_json "$out" device clock)"
}

# python_json FILE KEY...: the named fields of a JSON object, joined by ", "
python_json() {
  "$PYTHON" -c 'import json, sys; d = json.load(open(sys.argv[1])); print(", ".join(str(d[k]) for k in sys.argv[2:]))' "$@"
}

# VGG, SS + Fast R-CNN: selective search on the CPU + the VGG16 Fast R-CNN (Table 3, SS 07) on its boxes
timing_ss() {
  ss07 VGG16
  [ -z "$SKIP" ] || return 0
  ss_props voc_2007_test || return 0
  timing ss "$MODEL_TEST_DEF" --ss_file "$SS_FILE"
}

# NET, RPN + Fast R-CNN: the shared system of NET (4 steps, VOC 2007 trainval), 300 proposals
timing_rpn() {
  need_data voc_2007_trainval voc_2007_test || return 0
  altopt "$1" voc07 voc_2007_trainval voc 4
  timing rpn "$MODEL_TEST_DEF"
}

main() {
paper_setup "$@"
PRECISION=fp32
set -- "${EXTRA_OPTS[@]}"
while [ "$#" -gt 0 ]; do
  case "$1" in
    --precision) PRECISION="${2:-}"; shift 2 || die "--precision needs a value" ;;
    *) die "unknown option '$1' (table5.sh GPU_ID [--smoke] [--precision fp32|tf32|bf16])" ;;
  esac
done
case "$PRECISION" in fp32) ;; tf32|bf16) TABLE_DIR="$ROOT/table5_$PRECISION"; mkdir -p "$TABLE_DIR" ;;
  *) die "--precision must be fp32, tf32 or bf16, got '$PRECISION'" ;; esac
require_imagenet ZF VGG16
# VGG, SS + Fast R-CNN: SS (CPU, ~2000 boxes) + Fast R-CNN VGG16 on them, 100 images
row vgg_ss timing_ss
# VGG, RPN + Fast R-CNN: the shared VGG16 system, 300 proposals
row vgg_rpn timing_rpn VGG16
# ZF, RPN + Fast R-CNN: the shared ZF system, 300 proposals
row zf_rpn timing_rpn ZF
finish_table
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then main "$@"; fi
