#!/usr/bin/env bash
# Fast R-CNN from precomputed proposals, then test (upstream runs it on its default config).
# Usage:
#   ./experiments/scripts/fast_rcnn.sh GPU_ID NET DATASET [--set KEY VALUE ...]
# The VOC and COCO sets use selective-search proposals (data/selective_search_data and
# data/coco_proposals, as upstream); coco_paper is the paper's Fast R-CNN baseline (Table 11).
# Other sets use RPN proposal files made by tools/rpn_generate.py, given in the environment:
#   TRAIN_PROPOSALS=<train .npz> TEST_PROPOSALS=<test .npz> ./experiments/scripts/fast_rcnn.sh cpu SMALL toy
set -euo pipefail
cd "$(dirname "$0")/../.."
METHOD=fast_rcnn
source experiments/scripts/common.sh

# The whole body is one function, read by bash before it runs: editing this file while a
# run is under way cannot break that run.
main() {
parse_common_args "$@"
# iterations: pascal_voc 40000, coco 280000 (upstream)
resolve_dataset "$DATASET" 40000 280000 1000 10000
PROPOSAL_TRAIN_ARGS=()
PROPOSAL_TEST_ARGS=()
case "$DATASET" in
  pascal_voc|pascal_voc_0712|pascal_voc_2012|pascal_voc_07++12|coco_pascal_voc_0712|coco_pascal_voc_07++12) ;;
  coco|coco_paper|coco_paper_trainval) ;;
  *)
    [ -n "${TRAIN_PROPOSALS:-}" ] && [ -n "${TEST_PROPOSALS:-}" ] || \
      die "DATASET '$DATASET' has no selective-search proposals: set TRAIN_PROPOSALS and TEST_PROPOSALS (.npz from tools/rpn_generate.py)"
    PROPOSAL_TRAIN_ARGS=(--proposals "$TRAIN_PROPOSALS")
    PROPOSAL_TEST_ARGS=(--proposals "$TEST_PROPOSALS")
    ;;
esac
solver_dir
start_log "$METHOD"
pick_weights
cfg_args ""
final_model_file

train_solver "${PROPOSAL_TRAIN_ARGS[@]}"
test_final_model "$MODEL_DIR/test.prototxt" "${PROPOSAL_TEST_ARGS[@]}"
}

main "$@"
