#!/usr/bin/env bash
# Faster R-CNN, approximate joint ("end2end") training, then test.
# Usage:
#   ./experiments/scripts/faster_rcnn_end2end.sh GPU_ID NET DATASET [--set KEY VALUE ...]
# Example:
#   ./experiments/scripts/faster_rcnn_end2end.sh 0 VGG_CNN_M_1024 pascal_voc \
#     --set EXP_DIR foobar RNG_SEED 42 TRAIN.SCALES "[400,500,600,700]"
#   ./experiments/scripts/faster_rcnn_end2end.sh cpu SMALL toy
# Rerunning the same command after an interruption resumes training from its last snapshot.
set -euo pipefail
cd "$(dirname "$0")/../.."
METHOD=faster_rcnn_end2end
source experiments/scripts/common.sh

# The whole body is one function, read by bash before it runs: editing this file while a
# run is under way cannot break that run.
main() {
parse_common_args "$@"
# iterations: pascal_voc 70000, coco 490000 (upstream); toy 3000 (the CPU quick start, with
# models/toy/SMALL's step at 2400); bccd 5000 (models/bccd/SMALL's step at 3750); other sets 10000
OTHER_ITERS=10000
if [ "$DATASET" = bccd ]; then OTHER_ITERS=5000; fi
resolve_dataset "$DATASET" 70000 490000 3000 "$OTHER_ITERS"
solver_dir
start_log "$METHOD"
pick_weights
cfg_args "experiments/cfgs/${METHOD}.yml"
derive_defaults
final_model_file

train_solver
test_final_model "$MODEL_DIR/test.prototxt"
}

main "$@"
