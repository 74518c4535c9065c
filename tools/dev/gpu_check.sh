#!/usr/bin/env bash
# The GPU check, as ONE command of under 8 minutes: build frcnn's CUDA kernels, run every test
# marked `cuda`, the op benchmark and the detector benchmark (fp32 / TF32 / bf16), then print
# one short table (step | status | time), the benchmark tables, the GPU name and the date.
#
# usage: tools/dev/gpu_check.sh            (from anywhere; it works in the repository root)
# env:   PYTHON     interpreter with torch (CUDA build), Cython, numpy, opencv, pytest (default python3);
#                   torchvision is optional (the benchmarks' comparison rows)
#        WHEELS     a folder of wheels for what that interpreter lacks: easydict and pyyaml
#                   (required), cython (required to build), pycocotools (optional: the COCO tests
#                   skip without it) and ninja (optional: a parallel build; without it the compile
#                   is serial and gets a longer limit, taken from the benchmarks), installed with
#                   `pip install --no-index --find-links "$WHEELS"` (no network needed). Make it on
#                   a machine with one: `pip download easydict pyyaml cython pycocotools ninja -d wheels/`
#        CUDA_HOME  the CUDA toolkit (found from nvcc when unset)
#        LOG_DIR    where the logs go (default $OUT/gpu_check when $OUT is set, as on a lent
#                   device machine, whose $OUT comes back; else output/gpu_check)
#        MAX_JOBS   parallel compile jobs (default 16); TORCH_CUDA_ARCH_LIST (default 9.0, H100/H200)
#        GPU_CHECK_DRY_RUN=1   the same steps on the CPU (a build without --force or CUDA, the CUDA
#                   tests collected and skipped, both benchmarks tiny on the CPU): checks this
#                   script's plumbing on a machine without a GPU
#        GPU_CHECK_BUDGET_S    the whole run's limit in seconds (default 470); every step's own limit
#                   is cut to what is left of it, so the command ends in time even when steps are slow
#
# Step limits (seconds): environment 20, wheels 30, build 130 (230 without ninja: serial), CUDA
# tests 150 (with the NCCL group-of-one train and test runs), op benchmark 30, detector benchmark
# 110: 470 in all, under 8 minutes. Exits non-zero when a step failed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
if [ -n "${OUT:-}" ]; then LOG_DIR="${LOG_DIR:-$OUT/gpu_check}"; else LOG_DIR="${LOG_DIR:-output/gpu_check}"; fi
DRY="${GPU_CHECK_DRY_RUN:-0}"
BUDGET="${GPU_CHECK_BUDGET_S:-470}"
mkdir -p "$LOG_DIR"
T0=$(date +%s)
SUMMARY=()
STATUS=0

note() { echo "gpu_check: $*"; }
row() { SUMMARY+=("$(printf '| %-16s | %-8s | %5s s |' "$1" "$2" "$3")"); }

step() {  # step NAME LIMIT_S CMD...: run under timeout (cut to the budget left), log through tee
  # (an exit code listed in $ALLOW_RC also counts as success)
  local name="$1" limit="$2"; shift 2
  local start rc left
  start=$(date +%s)
  left=$(( BUDGET - (start - T0) ))
  if [ "$left" -le 5 ]; then
    note "== $name: skipped, the ${BUDGET} s budget is spent"
    row "$name" "skip" 0
    STATUS=1
    return 1
  fi
  [ "$limit" -le "$left" ] || limit="$left"
  note "== $name (limit ${limit} s): $*"
  set +e
  timeout --kill-after=5 "$limit" "$@" 2>&1 | tee "$LOG_DIR/$name.log"
  rc=${PIPESTATUS[0]}
  set -e
  case " 0 ${ALLOW_RC:-} " in *" $rc "*) rc=0 ;; esac
  local status=ok
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then status="TIMEOUT"; elif [ "$rc" -ne 0 ]; then status="FAIL:$rc"; fi
  row "$name" "$status" "$(( $(date +%s) - start ))"
  [ "$rc" -eq 0 ] || STATUS=1
  return "$rc"
}

summary() {
  echo
  note "summary ($(( $(date +%s) - T0 )) s in all; logs in $LOG_DIR)"
  {
    echo "GPU: ${GPU_NAME:-unknown}; date: $(date -u '+%Y-%m-%d %H:%M UTC'); dry run: $DRY"
    printf '| %-16s | %-8s | %7s |\n' step status time
    printf '%s\n' "${SUMMARY[@]}"
    for log in bench_ops bench_detector; do
      if [ -f "$LOG_DIR/$log.log" ]; then
        echo
        grep -E '^(device|SGD update|\|)' "$LOG_DIR/$log.log" || true
      fi
    done
  } | tee "$LOG_DIR/summary.md"
}
trap summary EXIT

# --- environment ---------------------------------------------------------------------------
for f in "$LOG_DIR"/*.log; do [ -e "$f" ] && rm -f "$f"; done
if [ "$DRY" = "1" ]; then
  GPU_NAME="none (dry run on the CPU)"
  DEVICE=cpu
  step environment 20 "$PY" -c "import torch; print(f'gpu_check: torch {torch.__version__} (dry run: CPU)')" || true
else
  GPU_NAME="$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -n 1 || echo unknown)"
  DEVICE=cuda
  if ! step environment 20 "$PY" -c "
import torch
print(f'gpu_check: torch {torch.__version__}, CUDA {torch.version.cuda}, available {torch.cuda.is_available()}')
assert torch.cuda.is_available(), 'gpu_check: torch sees no CUDA device'
print(f'gpu_check: device {torch.cuda.get_device_name(0)}')"; then
    exit 1
  fi
  # torch's build refuses an nvcc whose CUDA major version differs from torch's
  NVCC_VERSION="$(nvcc --version 2>/dev/null | sed -n 's/.*release \([0-9][0-9]*\)\..*/\1/p' | head -n 1 || true)"
  TORCH_CUDA="$("$PY" -c 'import torch; print((torch.version.cuda or "").split(".")[0])' || true)"
  note "nvcc CUDA ${NVCC_VERSION:-<no nvcc on PATH>}, torch CUDA $TORCH_CUDA"
  if [ -n "$NVCC_VERSION" ] && [ "$NVCC_VERSION" != "$TORCH_CUDA" ]; then
    note "nvcc's CUDA major version differs from torch's: set CUDA_HOME to a matching toolkit"
  fi
fi

missing=()
for pkg in easydict yaml Cython pycocotools; do
  if ! "$PY" -c "import $pkg" 2>/dev/null; then
    case "$pkg" in yaml) missing+=(pyyaml) ;; Cython) missing+=(cython) ;; *) missing+=("$pkg") ;; esac
  fi
done
# ninja compiles the sources in parallel (MAX_JOBS); without it the build takes minutes longer
command -v ninja >/dev/null 2>&1 || missing+=(ninja)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ -n "${WHEELS:-}" ]; then
    # one package at a time: an optional one missing from the folder must not stop the others
    # an externally managed system Python (PEP 668) refuses a plain install: then --user, then
    # --break-system-packages (nothing of the system's is replaced: these are missing packages)
    step wheels 30 bash -c 'py="$1" wheels="$2"; shift 2; for p in "$@"; do
      "$py" -m pip install -q --no-index --find-links "$wheels" "$p" 2>/dev/null ||
        "$py" -m pip install -q --user --no-index --find-links "$wheels" "$p" 2>/dev/null ||
        "$py" -m pip install -q --break-system-packages --no-index --find-links "$wheels" "$p" ||
        echo "gpu_check: could not install $p from $wheels"
    done' _ "$PY" "$WHEELS" "${missing[@]}" || true
  else
    note "not installed: ${missing[*]} (set WHEELS to a folder of wheels)"
    row wheels "skip" 0
  fi
fi
# where pip put the ninja script (the interpreter's scripts folder, or ~/.local/bin for --user)
# is not always on PATH; torch's build looks for ninja there
for dir in "$("$PY" -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null)" \
           "$("$PY" -c 'import site; print(site.getuserbase())' 2>/dev/null)/bin"; do
  if [ -n "$dir" ] && [ -x "$dir/ninja" ]; then export PATH="$dir:$PATH"; fi
done
for pkg in easydict yaml Cython; do
  if ! "$PY" -c "import $pkg" 2>/dev/null; then
    note "$pkg is required (easydict: frcnn.config; yaml: the Python layers; Cython: the build): install it or set WHEELS"
    exit 1
  fi
done
BUILD_LIMIT=130
if ! command -v ninja >/dev/null 2>&1; then
  BUILD_LIMIT=230
  note "ninja not found: the build compiles one file at a time (limit ${BUILD_LIMIT} s, taken from the benchmarks)"
fi

if [ -z "${CUDA_HOME:-}" ] && [ "$DRY" != "1" ]; then  # the toolkit folder holding libcudart (nvcc may be a wrapper)
  NVCC_BIN="$(command -v nvcc || true)"
  for cand in "$(dirname "$(dirname "$(readlink -f "${NVCC_BIN:-/nonexistent}")")")" \
              "$(sed -n 's|^exec \(.*\)/bin/nvcc.*|\1|p' "${NVCC_BIN:-/dev/null}" 2>/dev/null | head -n 1)" \
              /usr/local/cuda /usr/local/cuda-*; do
    if [ -n "$cand" ] && [ -x "$cand/bin/nvcc" ] &&
       { ls "$cand"/lib64/libcudart.so* || ls "$cand"/targets/*/lib/libcudart.so*; } >/dev/null 2>&1; then
      export CUDA_HOME="$cand"
      break
    fi
  done
  note "CUDA_HOME=${CUDA_HOME:-<not found>}"
fi

# --- build ---------------------------------------------------------------------------------
export MAX_JOBS="${MAX_JOBS:-16}"
if [ "$DRY" = "1" ]; then
  # the dry run keeps what is built (setup.py's depends rebuild it after a source or header edit)
  BUILD=("$PY" setup.py build_ext --inplace)
else
  # --force: a CPU-only _C*.so newer than the sources must not make it skip the CUDA build
  export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" FORCE_CUDA=1
  BUILD=("$PY" setup.py build_ext --inplace --force)
fi
if ! step build "$BUILD_LIMIT" "${BUILD[@]}"; then
  note "build failed; see $LOG_DIR/build.log"
  exit 1
fi
export PYTHONPATH="$ROOT/lib${PYTHONPATH:+:$PYTHONPATH}"
if [ "$DRY" != "1" ]; then
  "$PY" -c "import frcnn.ops as o; assert o.with_cuda(), 'frcnn._C was built without CUDA'; print('gpu_check: frcnn._C has CUDA kernels')" || {
    row cuda_build FAIL 0
    exit 1
  }
fi

# --- tests: every test marked cuda (pytest exits 5 when none is selected) -----------------------
# --continue-on-collection-errors: a module that cannot be imported there (a test requirement
# missing from the device's Python) fails the step but must not keep the CUDA tests from running
ALLOW_RC=5 step cuda_tests 150 "$PY" -m pytest -q -p no:cacheprovider -m cuda -rs --continue-on-collection-errors tests || true

# --- benchmarks ------------------------------------------------------------------------------
if [ "$DRY" = "1" ]; then
  step bench_ops 30 "$PY" tools/dev/bench_ops.py --device cpu --quick --repeats 1 --warmup 0 || true
  step bench_detector 110 "$PY" tools/bench_detector.py --device cpu --quick --nets ZF --modes fp32 \
    --json "$LOG_DIR/bench_detector.json" || true
else
  step bench_ops 30 "$PY" tools/dev/bench_ops.py --device cuda || true
  step bench_detector 110 "$PY" tools/bench_detector.py --device cuda --nets ZF,VGG16 --modes fp32,tf32,bf16 \
    --size 600x1000 --repeats 10 --warmup 3 --json "$LOG_DIR/bench_detector.json" || true
fi

exit "$STATUS"
