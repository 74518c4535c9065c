# Shared by the experiment scripts (sourced, not run, from the repository root): the
# interpreter, argument checks, dataset names, weights, logging, and the train and test steps.
# Each script sets `set -euo pipefail`, changes to the root and sets METHOD before sourcing it.
#
# Datasets (train / test; the paper's names for the training data in brackets):
#   pascal_voc            voc_2007_trainval / voc_2007_test                              ["07"]
#   pascal_voc_0712       voc_2007_trainval+voc_2012_trainval / voc_2007_test            ["07+12"]
#   pascal_voc_2012       voc_2012_trainval / voc_2012_test (scored by the VOC server)   ["12"]
#   pascal_voc_07++12     voc_2007_trainval+voc_2007_test+voc_2012_trainval / voc_2012_test  ["07++12"]
#   coco_pascal_voc_0712, coco_pascal_voc_07++12   as the two above, starting from a COCO model
#                         narrowed to the VOC classes (tools/coco_to_voc.py), given as WEIGHTS=<file>,
#                         with the COCO nets' 12 anchors (models/coco)    ["COCO+07+12", "COCO+07++12"]
#   coco                  coco_2014_train / coco_2014_minival (upstream's settings; models/coco)
#   coco_paper            coco_2014_train / coco_2014_val with experiments/cfgs/coco_paper.yml
#                         (the paper's COCO settings, Table 11)         ["COCO train", "COCO val"]
#   coco_paper_trainval   coco_2014_train+coco_2014_val / coco_2015_test-dev (results json for the
#                         COCO server), also coco_paper.yml             ["COCO trainval"]
#   toy                   toy_trainval / toy_test, made first by tools/make_toy_dataset.py if missing
#   <name>                a VOC-format set under data/<name>: <name>_trainval (or <name>_train) / <name>_test
# A set whose name has a config experiments/cfgs/<name>.yml gets it after the method's config.
# A VOC-format set without its own models/<name>/ folder gets settings derived from its data
# (derive_defaults: anchors, learning-rate step, snapshot interval; faster_rcnn_end2end.sh).
# GPU_ID: a GPU number, cpu, a GPU list (0,1,2,3: torchrun, one data-parallel rank per GPU) or
# cpu:N (N ranks on the CPU); see set_launcher.
# Environment: ITERS=<n> overrides the number of training iterations; FROM_SCRATCH=1 trains the
# paper's nets without their ImageNet weights; WEIGHTS=<file.caffemodel> starts from that model
# instead of the ImageNet weights; LOG_DIR=<dir> moves the logs (experiments/logs);
# PYTHON=<interpreter>; FRCNN_DEBUG=1 shows the tools' tracebacks for user errors too.

export PYTHONUNBUFFERED=1
PYTHON="${PYTHON:-python}"

usage() {
  cat >&2 <<USAGE
Usage: $0 GPU_ID NET DATASET [--set KEY VALUE ...]
  GPU_ID   a GPU number (0, 1, ...) or cpu; several GPUs as a list (0,1,2,3: one torchrun rank
           each, data parallel), or cpu:N (N gloo ranks on the CPU)
  NET      ZF, VGG_CNN_M_1024, VGG16, or SMALL (a small net for CPU runs)
  DATASET  pascal_voc, pascal_voc_0712, pascal_voc_2012, pascal_voc_07++12, coco_pascal_voc_0712,
           coco_pascal_voc_07++12, coco, coco_paper, coco_paper_trainval, toy, or a VOC-format set
           under data/ (e.g. bccd)
Example:
  $0 0 VGG16 pascal_voc --set EXP_DIR foobar RNG_SEED 42
  $0 cpu SMALL toy
  $0 0,1,2,3 VGG16 coco_paper
Environment: ITERS, FROM_SCRATCH=1, WEIGHTS, LOG_DIR, PYTHON, TORCHRUN_ARGS (see experiments/README.md)
USAGE
  exit 1
}

die() { echo "$0: $*" >&2; exit 1; }

# parse_common_args "$@": sets GPU_ID, NET, NET_LC, DATASET and EXTRA_ARGS (the rest, for the tools)
parse_common_args() {
  [ "$#" -ge 3 ] || usage
  GPU_ID="$1"
  NET="$2"
  DATASET="$3"
  EXTRA_ARGS=("${@:4}")
  if ! [[ "$GPU_ID" =~ ^([0-9]+(,[0-9]+)*|cpu|cpu:[1-9][0-9]*)$ ]]; then
    die "GPU_ID must be a GPU number or 'cpu', a list of GPUs (0,1,2,3) or cpu:N (N CPU processes), got '$GPU_ID'"
  fi
  set_launcher
  case "$NET" in
    ZF|VGG_CNN_M_1024|VGG16|SMALL) ;;
    *) die "NET must be ZF, VGG_CNN_M_1024, VGG16 or SMALL, got '$NET'" ;;
  esac
  NET_LC=$(echo "$NET" | tr '[:upper:]' '[:lower:]')
  if [ -n "${WEIGHTS:-}" ] && [ ! -f "$WEIGHTS" ]; then
    die "WEIGHTS=$WEIGHTS: no such file"
  fi
}

# set_launcher: from GPU_ID, GPU_ARG (the tools' --gpu) and RUN_RANKS (the interpreter, or torchrun
# for several ranks, for the tools that run on ranks: train_net.py, test_net.py, the alt-opt
# driver; the others run as one process on the first GPU). A GPU list becomes
# CUDA_VISIBLE_DEVICES, one rank per GPU (rank LOCAL_RANK on the LOCAL_RANK-th listed GPU);
# cpu:N runs N gloo ranks on the CPU (torchrun gives each OMP_NUM_THREADS=1 unless it is set).
# TORCHRUN_ARGS (default --standalone: one machine, a free port) replaces torchrun's rendezvous
# arguments, e.g. "--nnodes 2 --node_rank 0 --rdzv_backend c10d --rdzv_endpoint host0:29400".
set_launcher() {
  local n=1
  GPU_ARG="$GPU_ID"
  case "$GPU_ID" in
    cpu:*) n="${GPU_ID#cpu:}"; GPU_ARG=cpu ;;
    *,*)
      local gpus
      IFS=, read -r -a gpus <<< "$GPU_ID"
      n="${#gpus[@]}"
      if [ "$(printf '%s\n' "${gpus[@]}" | sort -u | wc -l)" -ne "$n" ]; then
        die "GPU_ID '$GPU_ID' names a GPU twice (one rank per GPU)"
      fi
      export CUDA_VISIBLE_DEVICES="$GPU_ID"
      GPU_ARG=0 ;;
  esac
  RANKS="$n"
  RUN_RANKS=("$PYTHON")
  if [ "$n" -gt 1 ]; then
    # shellcheck disable=SC2206  # (TORCHRUN_ARGS is split into words on purpose)
    RUN_RANKS=("$PYTHON" -m torch.distributed.run ${TORCHRUN_ARGS:---standalone} --nproc_per_node "$n")
  fi
}

# the paper's COCO schedule (experiments/cfgs/coco_paper.yml): 240k iterations, then 80k at lr / 10
COCO_PAPER_ITERS=320000
VOC_0712="voc_2007_trainval+voc_2012_trainval"
VOC_07PP12="voc_2007_trainval+voc_2007_test+voc_2012_trainval"

# resolve_dataset DATASET: sets TRAIN_IMDB, TEST_IMDB, PT_DIR (models/<PT_DIR>/<NET>), DATA_CFG,
# and ITERS from the per-method defaults given as arguments 2.. (pascal_voc coco toy other).
resolve_dataset() {
  local it_voc="$2" it_coco="$3" it_toy="$4" it_other="$5" coco_init=0
  PT_DIR="pascal_voc"
  DATA_CFG=""
  DERIVE=0
  case "$1" in
    pascal_voc)
      TRAIN_IMDB="voc_2007_trainval"; TEST_IMDB="voc_2007_test"; ITERS_DEFAULT="$it_voc" ;;
    pascal_voc_0712)
      TRAIN_IMDB="$VOC_0712"; TEST_IMDB="voc_2007_test"; ITERS_DEFAULT="$it_voc" ;;
    pascal_voc_2012)
      TRAIN_IMDB="voc_2012_trainval"; TEST_IMDB="voc_2012_test"; ITERS_DEFAULT="$it_voc" ;;
    pascal_voc_07++12)
      TRAIN_IMDB="$VOC_07PP12"; TEST_IMDB="voc_2012_test"; ITERS_DEFAULT="$it_voc" ;;
    coco_pascal_voc_0712)
      TRAIN_IMDB="$VOC_0712"; TEST_IMDB="voc_2007_test"; PT_DIR="coco"; ITERS_DEFAULT="$it_voc"; coco_init=1 ;;
    coco_pascal_voc_07++12)
      TRAIN_IMDB="$VOC_07PP12"; TEST_IMDB="voc_2012_test"; PT_DIR="coco"; ITERS_DEFAULT="$it_voc"; coco_init=1 ;;
    coco)
      TRAIN_IMDB="coco_2014_train"; TEST_IMDB="coco_2014_minival"; PT_DIR="coco"; ITERS_DEFAULT="$it_coco" ;;
    coco_paper)
      TRAIN_IMDB="coco_2014_train"; TEST_IMDB="coco_2014_val"; PT_DIR="coco"; ITERS_DEFAULT="$COCO_PAPER_ITERS" ;;
    coco_paper_trainval)
      TRAIN_IMDB="coco_2014_train+coco_2014_val"; TEST_IMDB="coco_2015_test-dev"; PT_DIR="coco"
      ITERS_DEFAULT="$COCO_PAPER_ITERS"; DATA_CFG="experiments/cfgs/coco_paper.yml" ;;
    toy)
      if [ ! -f "data/toy/ImageSets/Main/test.txt" ]; then
        echo "Making the toy dataset (data/toy)"
        "$PYTHON" tools/make_toy_dataset.py
      fi
      TRAIN_IMDB="toy_trainval"; TEST_IMDB="toy_test"; ITERS_DEFAULT="$it_toy" ;;
    *)
      [[ "$1" =~ ^[A-Za-z0-9_.-]+$ ]] || die "DATASET '$1' is not a plain name"
      [ -d "data/$1" ] || die "unknown DATASET '$1': not one of the names in experiments/README.md (pascal_voc, pascal_voc_0712, coco, toy, ...), nor a folder data/$1"
      local sets="data/$1/ImageSets/Main"
      if [ -f "$sets/trainval.txt" ]; then TRAIN_IMDB="${1}_trainval"
      elif [ -f "$sets/train.txt" ]; then TRAIN_IMDB="${1}_train"
      else die "data/$1 has neither ImageSets/Main/trainval.txt nor train.txt"; fi
      [ -f "$sets/test.txt" ] || die "data/$1 has no ImageSets/Main/test.txt"
      TEST_IMDB="${1}_test"; ITERS_DEFAULT="$it_other"
      # no models/<name>/ of its own (as models/bccd): derive its settings from the data
      if [ ! -d "models/$1" ]; then DERIVE=1; fi ;;
  esac
  # a set with its own models (e.g. models/toy/SMALL/<method>: its classes and anchors) uses them;
  # otherwise the PASCAL VOC nets, adapted to the set's classes by the tools
  if [ -d "models/$1/$NET/$METHOD" ]; then
    PT_DIR="$1"
  fi
  if [ -f "experiments/cfgs/$1.yml" ]; then
    DATA_CFG="experiments/cfgs/$1.yml"
  fi
  if [ "$coco_init" = 1 ] && [ -z "${WEIGHTS:-}" ]; then
    die "DATASET '$1' starts from a COCO-trained model narrowed to the VOC classes: make it with tools/coco_to_voc.py COCO.caffemodel VOC21.caffemodel and give it as WEIGHTS=VOC21.caffemodel"
  fi
  ITERS="${ITERS:-$ITERS_DEFAULT}"
}

# on_exit CMD: run CMD (a string, eval'd) when the script exits, after the ones added before.
# Last of all the log's tee (tee_log) is given its end of input and waited for (up to 5 s), so
# that the script's own stdout (a file, a terminal) has every line when the script has exited:
# without it the tee could still be writing the last lines, or all of a short run's, after exit.
EXIT_CMDS=()
on_exit() {
  EXIT_CMDS+=("$1")
  trap run_exit_cmds EXIT
}
run_exit_cmds() {
  local rc=$? cmd i
  for cmd in "${EXIT_CMDS[@]}"; do eval "$cmd" || true; done
  if [ -n "${TEE_PID:-}" ]; then
    exec >&- 2>&-
    for i in $(seq 50); do kill -0 "$TEE_PID" 2>/dev/null || break; sleep 0.1; done
  fi
  exit "$rc"
}

# tee_log FILE: from here on, everything the script writes goes to its stdout and into FILE
tee_log() {
  exec > >(tee -a "$1") 2>&1
  TEE_PID=$!
  trap run_exit_cmds EXIT
}

# start_log NAME: tee everything from here on into $LOG_DIR/NAME_<NET>_<args>.txt.<date>
start_log() {
  local slug dir="${LOG_DIR:-experiments/logs}"
  slug=$(printf '%s' "${EXTRA_ARGS[*]:-}" | tr ' /' '__')
  mkdir -p "$dir"
  LOG="$dir/${1}_${NET}_${slug}.txt.$(date +'%Y-%m-%d_%H-%M-%S')"
  tee_log "$LOG"
  echo "Logging output to $LOG"
}

# pick_weights: WEIGHTS_ARGS for the training tool. $WEIGHTS when set (e.g. a COCO model for
# coco_pascal_voc_*); else the ImageNet weights
# data/imagenet_models/<NET>.v2.caffemodel (upstream's file names) when present; else
# --from_scratch for SMALL (it has none) or when FROM_SCRATCH=1; else nothing, and the tool
# refuses the paper's nets (ZF, VGG16, VGG_CNN_M_1024), saying where their weights go.
pick_weights() {
  WEIGHTS_ARGS=()
  local w="data/imagenet_models/${NET}.v2.caffemodel"
  if [ -n "${WEIGHTS:-}" ]; then  # (parse_common_args checked that it exists)
    WEIGHTS_ARGS=(--weights "$WEIGHTS")
    echo "Initialising from $WEIGHTS (WEIGHTS)"
  elif [ -f "$w" ]; then
    WEIGHTS_ARGS=(--weights "$w")
    echo "Initialising from ImageNet weights $w"
  elif [ "$NET" = SMALL ] || [ "${FROM_SCRATCH:-0}" = 1 ]; then
    WEIGHTS_ARGS=(--from_scratch)
    echo "No $w: training from scratch (random initialisation)"
  fi
}

cfg_args() {  # the method's cfg, then the dataset's
  CFG_ARGS=()
  if [ -n "${1:-}" ]; then CFG_ARGS+=(--cfg "$1"); fi
  if [ -n "$DATA_CFG" ]; then CFG_ARGS+=(--cfg "$DATA_CFG"); fi
}

# derive_defaults: when resolve_dataset set DERIVE=1, print the training set's summary and the
# settings derived from it for $ITERS iterations of $MODEL_DIR/solver.prototxt, each with its
# reason (tools/dataset_defaults.py), and add the file holding them to CFG_ARGS. The tools read
# --cfg files before --set, so the user's --set overrides any of them (and the tool reports the
# keys the user set as theirs).
derive_defaults() {
  [ "${DERIVE:-0}" = 1 ] || return 0
  local path_file
  path_file=$(mktemp "${TMPDIR:-/tmp}/frcnn_defaults.XXXXXX")
  "$PYTHON" tools/dataset_defaults.py \
    --imdb "$TRAIN_IMDB" \
    --iters "$ITERS" \
    --solver "$MODEL_DIR/solver.prototxt" \
    --path_file "$path_file" \
    "${CFG_ARGS[@]}" \
    "${EXTRA_ARGS[@]}" || { local rc=$?; rm -f "$path_file"; return "$rc"; }
  CFG_ARGS+=(--cfg "$(cat "$path_file")")
  rm -f "$path_file"
}

# final_model_file: FINAL_FILE, a temporary file (removed on exit) into which the training tool
# writes its final model's path for test_final_model (no grepping of logs).
final_model_file() {
  FINAL_FILE=$(mktemp "${TMPDIR:-/tmp}/frcnn_final_model.XXXXXX")
  on_exit 'rm -f "$FINAL_FILE"'
}

# solver_dir: MODEL_DIR=models/<PT_DIR>/<NET>/<METHOD>, which must hold a solver.prototxt
solver_dir() {
  MODEL_DIR="models/${PT_DIR}/${NET}/${METHOD}"
  [ -f "$MODEL_DIR/solver.prototxt" ] || die "no $MODEL_DIR/solver.prototxt"
}

# train_solver [ARGS...]: tools/train_net.py on $MODEL_DIR/solver.prototxt for $ITERS iterations
# of $TRAIN_IMDB with the run's weights, configs and extra arguments (ARGS go before them, e.g.
# --proposals FILE); the final model's path goes into $FINAL_FILE.
train_solver() {
  time "${RUN_RANKS[@]}" tools/train_net.py --gpu "$GPU_ARG" \
    --solver "$MODEL_DIR/solver.prototxt" \
    "${WEIGHTS_ARGS[@]}" \
    --imdb "$TRAIN_IMDB" \
    --iters "$ITERS" \
    --final_model_file "$FINAL_FILE" \
    "$@" \
    "${CFG_ARGS[@]}" \
    "${EXTRA_ARGS[@]}"
}

# test_final_model TEST_PROTOTXT [ARGS...]: read the path the training tool wrote into
# $FINAL_FILE, print it as upstream's "Final model:" line, and test it on $TEST_IMDB with the
# run's configs and extra arguments (ARGS go before them, e.g. --proposals FILE).
test_final_model() {
  local def="$1"; shift
  NET_FINAL=$(cat "$FINAL_FILE")
  echo "Final model: $NET_FINAL"
  time "${RUN_RANKS[@]}" tools/test_net.py --gpu "$GPU_ARG" \
    --def "$def" \
    --net "$NET_FINAL" \
    --imdb "$TEST_IMDB" \
    "$@" \
    "${CFG_ARGS[@]}" \
    "${EXTRA_ARGS[@]}"
}
