# Shared by the paper's table scripts (experiments/scripts/paper/<table>.sh), sourced from the
# repository root after `set -euo pipefail` and TABLE=<table key of experiments/paper/paper_numbers.yml>.
#
# Usage of every table script: <table>.sh GPU_ID [--smoke]
#   GPU_ID  a GPU number, a comma-separated list of them (the table's independent trainings run
#           side by side, one queue per GPU; testing runs on the first), or cpu
#   --smoke the same code path for every row on toy data laid out as the paper's datasets
#           (tools/paper_smoke_data.py), with the SMALL net and a few iterations; writes
#           output/paper_smoke/ instead of output/paper/ and labels every number SMOKE
#
# What this file provides:
# - the paper's protocol as functions: `altopt` (4-step alternating training, or its first 1 or 2
#   steps), `frcn` (Fast R-CNN on external proposals), `run_test`, `rpn_props`, `ss_props`,
#   `dense_props`, each skipping what is already on disk, so a rerun resumes where it stopped (a
#   half-finished training resumes from its last snapshot: the tools do that themselves);
# - `row KEY FUNCTION`: runs one table row unless output/paper/<table>/rows/KEY.json records it; the
#   function measures and calls `record ...`, or sets SKIP="reason" when it cannot run here (no
#   EdgeBoxes proposals, no opencv-contrib for selective search); `finish_table` renders
#   results.md / results.json (tools/paper_table.py) and updates REPORT.md (tools/paper_report.py).
#
# Where things go (ROOT = output/paper, or output/paper_smoke with --smoke; PAPER_OUT=<dir> moves it):
#   ROOT/models/<NET>_<what>/   every trained model (EXP_DIR of its training), shared between tables
#   ROOT/runs/<test>/           every test's output (detections, per-class AP, server files)
#   ROOT/<table>/               rows/, results.md, results.json;  ROOT/logs/ the logs
#
# Environment: PAPER_OUT (the root), PAPER_DATA (the data folder of a full run, default data/: its
# VOCdevkit2007, VOCdevkit2012, coco, coco_proposals, selective_search_data, imagenet_models), FROM_SCRATCH=1 (the paper's nets without ImageNet weights: far
# from the paper's numbers), SS_WORKERS (processes for selective search; default the CPU count),
# EB_DIR (a folder of EdgeBoxes proposal files <imdb>.npz, in score order: the EB rows; the project
# has no EdgeBoxes of its own), PYTHON, FRCNN_DEBUG=1.

source experiments/scripts/common.sh  # PYTHON, die, COCO_PAPER_ITERS, VOC_0712, VOC_07PP12

paper_usage() {
  cat >&2 <<USAGE
Usage: $0 GPU_ID [--smoke]
  GPU_ID   a GPU number (0), a list (0,1,2,3: independent trainings run side by side), or cpu
  --smoke  every row on the toy smoke data with the SMALL net and a few iterations (minutes on a CPU)
Writes output/paper/${TABLE}/results.md and results.json (smoke: output/paper_smoke/${TABLE}/).
USAGE
  exit 1
}

# paper_setup "$@": parse GPU_ID [--smoke] (a script that takes options of its own sets PAPER_OPTS=1
# and finds them in EXTRA_OPTS), set the mode, the folders, the iterations, and start the log.
paper_setup() {
  [ "$#" -ge 1 ] || paper_usage
  GPU_ARG="$1"; shift
  [[ "$GPU_ARG" =~ ^([0-9]+(,[0-9]+)*|cpu)$ ]] || die "GPU_ID must be a GPU number, a list (0,1) or 'cpu', got '$GPU_ARG'"
  IFS=, read -r -a GPUS <<< "$GPU_ARG"
  GPU="${GPUS[0]}"
  JOB_GPU="$GPU"
  SMOKE=0
  EXTRA_OPTS=()
  while [ "$#" -gt 0 ]; do
    case "$1" in
      --smoke) SMOKE=1 ;;
      *) EXTRA_OPTS+=("$1") ;;
    esac
    shift
  done
  if [ "${#EXTRA_OPTS[@]}" -gt 0 ] && [ "${PAPER_OPTS:-0}" != 1 ]; then
    die "unknown option '${EXTRA_OPTS[0]}' (usage: $0 GPU_ID [--smoke])"
  fi
  if [ "$SMOKE" = 1 ]; then
    MODE=smoke; ROOT="${PAPER_OUT:-output/paper_smoke}"
  else
    MODE=full; ROOT="${PAPER_OUT:-output/paper}"
  fi
  mkdir -p "$ROOT"
  ROOT=$(cd "$ROOT" && pwd)
  MODELS="$ROOT/models"; RUNS="$ROOT/runs"; TABLE_DIR="$ROOT/$TABLE"
  mkdir -p "$MODELS" "$RUNS/props" "$TABLE_DIR" "$ROOT/logs"
  LOG="$ROOT/logs/${TABLE}_$(date +'%Y-%m-%d_%H-%M-%S').txt"
  tee_log "$LOG"
  echo "== $TABLE ($MODE run) on ${GPU_ARG}; log $LOG"
  BASE_SETS=()
  if [ "$SMOKE" = 1 ]; then
    DATA="$ROOT/data"
    "$PYTHON" tools/paper_smoke_data.py --out "$DATA"
    BASE_SETS=(DATA_DIR "$DATA")
    SMOKE_CFG=(--cfg experiments/paper/smoke.yml)
    # a few iterations per step (4: enough to run every step's code; COCO's iter_size 8 made 2)
    ALT_VOC=4,4,4,4; ALT_COCO=2,2,2,2; FRCN_VOC=4; FRCN_COCO=2; FRCN_COCO_REF2=2
    # the COCO nets' 12 anchors on the SMALL VOC nets (models/coco has no SMALL), and 2 minibatches
    # per update instead of coco_paper.yml's 8 (the iter_size path runs, at a quarter of the cost)
    COCO_SMOKE_ANCHORS=(ANCHOR_SCALES "[4,8,16,32]"); COCO_SMOKE_ITER=(TRAIN.SOLVER_ITER_SIZE 2)
    # Table 10's pyramid, scaled from s = 600 to the smoke scale (192): 480 ... 1200 -> 154 ... 384
    FIVE_SCALES=(TEST.SCALES "[154,184,220,276,384]" TEST.MAX_SIZE 640)
    TIMING_NUM=(--num 4 --warmup 1 --allow_few)
  else
    DATA="${PAPER_DATA:-data}"
    [ -z "${PAPER_DATA:-}" ] || BASE_SETS=(DATA_DIR "$(cd "$DATA" && pwd)")
    SMOKE_CFG=()
    # the paper's schedules: VOC alt-opt steps as upstream (RPN 60k + 20k at lr / 10, Fast R-CNN
    # 30k + 10k); COCO 240k + 80k for every step (Sec. 4.2); Fast R-CNN alone as upstream's
    # fast_rcnn.sh (VOC 40k) or the paper's COCO schedule; [2]'s COCO baseline as upstream (280k)
    ALT_VOC=80000,40000,80000,40000
    ALT_COCO="$COCO_PAPER_ITERS,$COCO_PAPER_ITERS,$COCO_PAPER_ITERS,$COCO_PAPER_ITERS"
    FRCN_VOC=40000; FRCN_COCO="$COCO_PAPER_ITERS"; FRCN_COCO_REF2=280000
    COCO_SMOKE_ANCHORS=(); COCO_SMOKE_ITER=()
    # Table 10's 5-scale pyramid: SPPnet's / Fast R-CNN's scales (the paper lists none)
    FIVE_SCALES=(TEST.SCALES "[480,576,688,864,1200]" TEST.MAX_SIZE 2000)
    TIMING_NUM=(--num 100 --warmup 10)
  fi
  export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
}

# net_of NET: the net a row trains: NET itself, or SMALL in smoke mode (ZF and VGG16 rows then
# share their models: the same code path, trained once)
net_of() { if [ "$SMOKE" = 1 ]; then echo SMALL; else echo "$1"; fi; }

# ------------------------------------------------------------------------------------- rows

# record ARGS...: tools/paper_table.py record for the current row (ROW_KEY) of this table
record() {
  "$PYTHON" tools/paper_table.py record --dir "$TABLE_DIR" --table "$TABLE" --mode "$MODE" --row "$ROW_KEY" "$@"
}

# row KEY FUNCTION [ARGS...]: run FUNCTION for row KEY unless the row is recorded
row() {
  ROW_KEY="$1"; shift
  if "$PYTHON" tools/paper_table.py has --dir "$TABLE_DIR" --table "$TABLE" --mode "$MODE" --row "$ROW_KEY"; then
    echo "-- $TABLE $ROW_KEY: recorded, skipped (delete $TABLE_DIR/rows/$ROW_KEY.json to rerun it)"
    return 0
  fi
  echo "-- $TABLE $ROW_KEY"
  SKIP=""
  "$@"
  if [ -n "$SKIP" ]; then
    "$PYTHON" tools/paper_table.py skip --dir "$TABLE_DIR" --table "$TABLE" --mode "$MODE" --row "$ROW_KEY" \
      --reason "$SKIP"
  fi
}

# voc_row SYSTEM [ARGS...]: run a system (systems.sh) and record its VOC test (mAP and per-class AP)
voc_row() {
  "$@"
  [ -n "$SKIP" ] || record --voc "$RESULT"
}

# server_row SYSTEM [ARGS...]: run a system tested on VOC 2012 test and record its server archive
server_row() {
  "$@"
  [ -n "$SKIP" ] || record --server "$SERVER_FILE"
}

finish_table() {
  "$PYTHON" tools/paper_table.py render --dir "$TABLE_DIR" --table "$TABLE" --mode "$MODE"
  "$PYTHON" tools/paper_report.py --root "$ROOT"
  echo "== $TABLE done: $TABLE_DIR/results.md"
}

# run_jobs "SYSTEM [ARGS]"...: the table's independent systems (trained and tested), before its
# rows are recorded. One device: nothing here (the rows run them in order). A GPU list: one queue
# per GPU (the jobs dealt out in turn), the queues side by side, each on its GPU, output in
# ROOT/logs/<table>_gpu<g>.txt; fails when any job fails. Jobs must not share a training that is
# not yet done (two queues would train it at once: the run lock stops the second); smoke runs,
# whose ZF and VGG16 rows share their SMALL models, always take the one-device path.
run_jobs() {
  if [ "${#GPUS[@]}" -le 1 ] || [ "$SMOKE" = 1 ]; then
    return 0
  fi
  local k n="${#GPUS[@]}" pids=() fns=("$@") failed=0 i
  for ((k = 0; k < n; k++)); do
    (
      JOB_GPU="${GPUS[$k]}"
      for ((i = k; i < ${#fns[@]}; i += n)); do SKIP=""; ${fns[$i]}; done
    ) > "$ROOT/logs/${TABLE}_gpu${GPUS[$k]}.txt" 2>&1 &
    pids+=($!)
    echo "trainings on GPU ${GPUS[$k]}: log $ROOT/logs/${TABLE}_gpu${GPUS[$k]}.txt"
  done
  for k in "${!pids[@]}"; do
    wait "${pids[$k]}" || { echo "trainings on GPU ${GPUS[$k]} failed: see $ROOT/logs/${TABLE}_gpu${GPUS[$k]}.txt"; failed=1; }
  done
  [ "$failed" = 0 ] || die "a training job failed"
}

# ------------------------------------------------------------------------------------- weights

# init_args NET [WEIGHTS]: INIT for a training tool: WEIGHTS when given; else the ImageNet model
# <data>/imagenet_models/<NET>.v2.caffemodel; else --from_scratch for SMALL or FROM_SCRATCH=1; else
# nothing (the tool then stops, saying where the paper's nets' weights go)
init_args() {
  local net="$1" w="${2:-}" imagenet="$DATA/imagenet_models/${1}.v2.caffemodel"
  INIT=()
  if [ -n "$w" ]; then INIT=(--weights "$w")
  elif [ -f "$imagenet" ]; then INIT=(--weights "$imagenet")
  elif [ "$net" = SMALL ] || [ "${FROM_SCRATCH:-0}" = 1 ]; then INIT=(--from_scratch)
  fi
}

# require_imagenet NET...: stop at once (not after hours) when a paper net has no ImageNet weights
require_imagenet() {
  [ "$SMOKE" = 1 ] || [ "${FROM_SCRATCH:-0}" = 1 ] && return 0
  local n
  for n in "$@"; do
    [ -f "$DATA/imagenet_models/$n.v2.caffemodel" ] || die "$n starts from its ImageNet weights, $DATA/imagenet_models/$n.v2.caffemodel (py-faster-rcnn's data/scripts/fetch_imagenet_models.sh; for VGG16 also tools/import_torchvision_vgg16.py); FROM_SCRATCH=1 trains without them"
  done
}

# ------------------------------------------------------------------------------------- trainings

# models_src KIND NET METHOD: the stock prototxt folder of a training; KIND voc (models/pascal_voc)
# or coco (models/coco: 81 or, narrowed, 21 classes, 12 anchors; in smoke mode the SMALL VOC nets
# with ANCHOR_SCALES [4,8,16,32], the COCO nets' anchors, from COCO_SMOKE_ANCHORS)
models_src() {
  local kind="$1" net="$2" method="$3"
  if [ "$kind" = coco ] && [ "$net" != SMALL ]; then echo "models/coco/$net/$method"
  else echo "models/pascal_voc/$net/$method"; fi
}

# altopt NET NAME IMDB KIND STOP [KEY VALUE ...]: the 4-step alternating training of NET on IMDB
# (stopped after step STOP: 1 = the stage-1 RPN alone, 2 = the unshared stage-1 RPN + Fast R-CNN,
# 4 = all), in ROOT/models/<net>_<NAME>, with the extra config pairs given. KIND: voc (ImageNet
# init, VOC schedule), coco_paper (the paper's COCO settings, experiments/cfgs/coco_paper.yml, COCO
# schedule) or coco_voc (the COCO nets narrowed to VOC, initialised from $COCO_VOC21, VOC schedule).
# Rerunning after a full run with STOP 1 or 2 reuses its steps (the same folder). Sets MODEL_KEY
# (<net>_<NAME>: test keys start with it, so that tables share the tests of a model), MODEL (the
# final model of that step: the Fast R-CNN for STOP 2, the RPN for STOP 1), RPN1 (the stage-1 RPN),
# MODEL_DIR, MODEL_PROTO (the prototxts used: the adapted copies of the training when made),
# MODEL_TEST_DEF (the test net), MODEL_CFGS and MODEL_SETS (the config of its tests).
altopt() {
  local net; net=$(net_of "$1"); local name="$2" imdb="$3" kind="$4" stop="$5"; shift 5
  MODEL_KEY="${net}_${name}"
  local exp="$MODELS/$MODEL_KEY" iters="$ALT_VOC" pt=voc weights=""
  MODEL_CFGS=(--cfg experiments/cfgs/faster_rcnn_alt_opt.yml)
  MODEL_SETS=("$@")
  case "$kind" in
    voc) ;;
    coco_paper) pt=coco; iters="$ALT_COCO"; MODEL_CFGS+=(--cfg experiments/cfgs/coco_paper.yml)
      MODEL_SETS+=("${COCO_SMOKE_ANCHORS[@]}" "${COCO_SMOKE_ITER[@]}") ;;
    coco_voc) pt=coco; weights="$COCO_VOC21"; MODEL_SETS+=("${COCO_SMOKE_ANCHORS[@]}") ;;
    *) die "altopt: unknown kind '$kind'" ;;
  esac
  MODEL_CFGS+=("${SMOKE_CFG[@]}")
  local src; src=$(models_src "$pt" "$net" faster_rcnn_alt_opt)
  local marker="$exp/final_stop${stop}.txt"
  if [ -f "$marker" ] && [ -f "$(cat "$marker")" ]; then
    echo "trained: $(cat "$marker")"
  else
    init_args "$net" "$weights"
    "$PYTHON" tools/train_faster_rcnn_alt_opt.py --gpu "$JOB_GPU" --net_name "$net" --models_dir "$src" \
      "${INIT[@]}" --imdb "$imdb" --iters "$iters" --stop_after "$stop" --final_model_file "$marker" \
      "${MODEL_CFGS[@]}" --set "${BASE_SETS[@]}" EXP_DIR "$exp" "${MODEL_SETS[@]}"
  fi
  MODEL=$(cat "$marker")
  MODEL_DIR=$(dirname "$MODEL")
  RPN1="$MODEL_DIR/${net}_rpn_stage1_final.caffemodel"
  MODEL_PROTO="$exp/$imdb/models/$net/faster_rcnn_alt_opt"
  [ -f "$MODEL_PROTO/rpn_test.prototxt" ] || MODEL_PROTO="$src"
  MODEL_TEST_DEF="$src/faster_rcnn_test.prototxt"
  MODEL_FRCN_DEF="$(models_src "$pt" "$net" fast_rcnn)/test.prototxt"
}

# frcn NET NAME IMDB KIND [PROPOSALS|-] [KEY VALUE ...]: Fast R-CNN alone (models/.../fast_rcnn) on
# IMDB's selective search boxes (PROPOSALS -, the proposal method of the config) or on a proposal
# file, ImageNet init, in ROOT/models/<net>_<NAME>. KIND: voc (upstream's Fast R-CNN settings, 40k
# iterations), coco_paper (coco_paper.yml: the paper's Fast R-CNN on COCO) or coco_ref2 ([2]'s:
# upstream's defaults, 280k). Sets MODEL_KEY, MODEL, MODEL_TEST_DEF, MODEL_CFGS, MODEL_SETS.
frcn() {
  local net; net=$(net_of "$1"); local name="$2" imdb="$3" kind="$4" props="${5:--}"; shift 5 || shift $#
  MODEL_KEY="${net}_${name}"
  local exp="$MODELS/$MODEL_KEY" iters="$FRCN_VOC" pt=voc prop_args=()
  MODEL_CFGS=()
  MODEL_SETS=("$@")
  case "$kind" in
    voc) ;;
    coco_paper) pt=coco; iters="$FRCN_COCO"; MODEL_CFGS=(--cfg experiments/cfgs/coco_paper.yml)
      MODEL_SETS+=("${COCO_SMOKE_ITER[@]}") ;;
    coco_ref2) pt=coco; iters="$FRCN_COCO_REF2" ;;
    *) die "frcn: unknown kind '$kind'" ;;
  esac
  MODEL_CFGS+=("${SMOKE_CFG[@]}")
  [ "$props" = - ] || prop_args=(--proposals "$props")
  local src; src=$(models_src "$pt" "$net" fast_rcnn)
  local marker="$exp/final.txt"
  if [ -f "$marker" ] && [ -f "$(cat "$marker")" ]; then
    echo "trained: $(cat "$marker")"
  else
    init_args "$net"
    "$PYTHON" tools/train_net.py --gpu "$JOB_GPU" --solver "$src/solver.prototxt" "${INIT[@]}" --imdb "$imdb" \
      --iters "$iters" "${prop_args[@]}" --final_model_file "$marker" \
      "${MODEL_CFGS[@]}" --set "${BASE_SETS[@]}" EXP_DIR "$exp" "${MODEL_SETS[@]}"
  fi
  MODEL=$(cat "$marker")
  MODEL_TEST_DEF="$src/test.prototxt"
}

# coco_voc21: the COCO trainval Faster R-CNN (Table 11's last row) narrowed to the 20 VOC classes
# and background by tools/coco_to_voc.py: COCO_VOC21, the init of the COCO+VOC rows (Tables 3, 4,
# 6, 7, 12) and the "COCO (no VOC)" model of Table 12
coco_voc21() {
  altopt VGG16 coco_trainval "coco_2014_train+coco_2014_val" coco_paper 4
  COCO_VOC21="$MODEL_DIR/$(basename "$MODEL" .caffemodel)_voc21.caffemodel"
  [ -f "$COCO_VOC21" ] || "$PYTHON" tools/coco_to_voc.py "$MODEL" "$COCO_VOC21"
}

# ------------------------------------------------------------------------------------- tests

# run_test KEY DEF MODEL IMDB [TOOL ARGS...]: tools/test_net.py (on the job's GPU) with the current MODEL_CFGS and
# MODEL_SETS (plus TEST_SETS), output in ROOT/runs/KEY; skipped when done. Sets RESULT (the output
# folder: per-class AP files, detection_results.json, server files).
run_test() {
  local key="$1" def="$2" model="$3" imdb="$4"; shift 4
  local exp="$RUNS/$key"
  RESULT="$exp/$imdb/$(basename "$model" .caffemodel)"
  if [ -f "$exp/done" ]; then echo "tested: $RESULT"; return 0; fi
  "$PYTHON" tools/test_net.py --gpu "$JOB_GPU" --def "$def" --net "$model" --imdb "$imdb" "$@" \
    "${MODEL_CFGS[@]}" --set "${BASE_SETS[@]}" EXP_DIR "$exp" "${MODEL_SETS[@]}" "${TEST_SETS[@]}"
  touch "$exp/done"
}
TEST_SETS=()

# rpn_props KEY MODEL IMDB [TOOL ARGS...] [--set KEY VALUE ...]: an RPN's proposals on IMDB, with
# MODEL_PROTO/rpn_test.prototxt of the current model (run altopt first), into PROPS (skipped when
# the file exists). Without --set or --test_counts: upstream's generation counts, 2000 per image.
rpn_props() {
  local key="$1" model="$2" imdb="$3"; shift 3
  PROPS="$RUNS/props/$key.npz"
  [ -f "$PROPS" ] && { echo "proposals: $PROPS"; return 0; }
  local args=() sets=()
  while [ "$#" -gt 0 ] && [ "$1" != --set ]; do args+=("$1"); shift; done
  [ "$#" -gt 0 ] && { shift; sets=("$@"); }
  "$PYTHON" tools/rpn_generate.py --gpu "$JOB_GPU" --def "$MODEL_PROTO/rpn_test.prototxt" --net "$model" \
    --imdb "$imdb" --out "$PROPS" "${args[@]}" "${MODEL_CFGS[@]}" \
    --set "${BASE_SETS[@]}" EXP_DIR "$RUNS/props" "${MODEL_SETS[@]}" "${sets[@]}"
}

# have_ss: whether selective search can run here (cv2.ximgproc of opencv-contrib-python)
have_ss() {
  "$PYTHON" -c "from frcnn.datasets.selective_search import have_ximgproc; raise SystemExit(not have_ximgproc())"
}

# ss_props IMDB...: selective search ("fast" mode, 2000 boxes) of each set (tools/selective_search.py,
# skipped when computed; upstream's .mat files win where present); SS_FILE: the file of the last.
# Without opencv-contrib: SKIP is set and it returns 1 (callers write `ss_props ... || return 0`;
# set -e does not hold there, so every failure inside is a die).
ss_props() {
  local imdb
  for imdb in "$@"; do
    need_data "$imdb" || return 1
    SS_FILE=$("$PYTHON" - "$imdb" "$DATA" <<'PY'
import os, sys
from frcnn.config import get_default_config
from frcnn.datasets.factory import get_imdb
cfg = get_default_config(); cfg.DATA_DIR = os.path.abspath(sys.argv[2])
imdb = get_imdb(sys.argv[1], cfg)
base = os.path.join(cfg.DATA_DIR, "selective_search_data", imdb.name)
print(next((base + e for e in (".mat", ".npz") if os.path.exists(base + e)), None) or imdb.selective_search_file())
PY
) || die "ss_props: cannot find the selective search file of $imdb"
    [ -f "$SS_FILE" ] && continue
    if ! have_ss; then
      SKIP="needs selective search: opencv-contrib-python (cv2.ximgproc), or upstream's selective_search_data"
      return 1
    fi
    "$PYTHON" tools/selective_search.py --imdb "$imdb" --workers "${SS_WORKERS:-$(nproc)}" --set "${BASE_SETS[@]}" \
      || die "ss_props: selective search of $imdb failed"
    [ -f "$SS_FILE" ] || die "ss_props: tools/selective_search.py did not write $SS_FILE"
  done
}

# need_data IMDB...: whether the sets are on disk (a VOC split's image set file, a COCO split's
# annotation json; a joined a+b set: each part); else SKIP names the first one missing and it
# returns 1 (callers: `need_data ... || return 0`), so a table runs the rows its data allow
need_data() {
  local name part path year split parts
  for name in "$@"; do
    IFS=+ read -r -a parts <<< "$name"
    for part in "${parts[@]}"; do
      case "$part" in
        voc_*) IFS=_ read -r _ year split <<< "$part"
               path="$DATA/VOCdevkit$year/VOC$year/ImageSets/Main/$split.txt" ;;
        coco_*) IFS=_ read -r _ year split <<< "$part"
                if [[ "$split" == *test* ]]; then path="$DATA/coco/annotations/image_info_$split$year.json"
                else path="$DATA/coco/annotations/instances_$split$year.json"; fi ;;
        *) continue ;;
      esac
      if [ ! -f "$path" ]; then
        SKIP="needs $part: no $path"
        return 1
      fi
    done
  done
}

# eb_file IMDB: EB_FILE=$EB_DIR/<imdb>.npz, EdgeBoxes proposals (ranked) given by the user; else SKIP
eb_file() {
  EB_FILE="${EB_DIR:-}/$1.npz"
  if [ -z "${EB_DIR:-}" ] || [ ! -f "$EB_FILE" ]; then
    SKIP="needs EdgeBoxes proposals: EB_DIR/<imdb>.npz for $1 (the project has no EdgeBoxes of its own)"
    return 1
  fi
}

# dense_props IMDB: dense sliding windows (3 scales x 3 ratios on the conv5 grid) of a set: PROPS
dense_props() {
  PROPS="$RUNS/props/dense_$1.npz"
  [ -f "$PROPS" ] || "$PYTHON" tools/dense_proposals.py --imdb "$1" --out "$PROPS" "${SMOKE_CFG[@]}" \
    --set "${BASE_SETS[@]}"
}
