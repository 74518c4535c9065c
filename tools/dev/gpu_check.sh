#!/usr/bin/env bash
# Build frcnn's CUDA kernels, run the CUDA tests and the op benchmark on a GPU machine.
#
# usage: tools/dev/gpu_check.sh            (from anywhere; works in the repository root)
# env:   PYTHON   (default python3: must already have torch with CUDA, Cython, numpy, pytest)
#        WHEELS   folder of wheels for missing packages (easydict, pycocotools, ...), installed
#                 with `pip install --no-index` (the machine needs no network)
#        CUDA_HOME  the CUDA toolkit (found from nvcc when unset)
#        LOG_DIR  where the logs go (default output/gpu_check)
# Target: under 6 minutes on one H100/H200 with 16 cores. Prints a summary table at the end
# and exits non-zero when the build or any test failed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
LOG_DIR="${LOG_DIR:-output/gpu_check}"
mkdir -p "$LOG_DIR"
T0=$(date +%s)
SUMMARY=()
STATUS=0

note() { echo "gpu_check: $*"; }
step() {  # step NAME TIMEOUT_S CMD...: run, log through tee, record status and seconds
  # (an exit code listed in $ALLOW_RC also counts as success)
  local name="$1" limit="$2"; shift 2
  local start rc
  start=$(date +%s)
  note "== $name: $*"
  set +e
  timeout "$limit" "$@" 2>&1 | tee "$LOG_DIR/$name.log"
  rc=${PIPESTATUS[0]}
  set -e
  case " 0 ${ALLOW_RC:-} " in *" $rc "*) rc=0 ;; esac
  SUMMARY+=("$(printf '| %-22s | %-6s | %5s s |' "$name" "$([ "$rc" -eq 0 ] && echo ok || echo "FAIL:$rc")" "$(( $(date +%s) - start ))")")
  [ "$rc" -eq 0 ] || STATUS=1
  return "$rc"
}

# --- environment ---------------------------------------------------------------------------
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
"$PY" - <<'PYEOF'
import torch
print(f"gpu_check: torch {torch.__version__}, CUDA {torch.version.cuda}, available {torch.cuda.is_available()}")
assert torch.cuda.is_available(), "gpu_check: torch sees no CUDA device"
print(f"gpu_check: device {torch.cuda.get_device_name(0)}")
PYEOF

if [ -n "${WHEELS:-}" ]; then
  for pkg in easydict pycocotools; do
    if ! "$PY" -c "import $pkg" 2>/dev/null; then
      "$PY" -m pip install --no-index --find-links "$WHEELS" "$pkg" || note "could not install $pkg from $WHEELS"
    fi
  done
fi

if [ -z "${CUDA_HOME:-}" ]; then  # the toolkit folder holding lib64/libcudart (nvcc may be a wrapper)
  NVCC_BIN="$(command -v nvcc || true)"
  for cand in "$(dirname "$(dirname "$(readlink -f "${NVCC_BIN:-/nonexistent}")")")" \
              "$(sed -n 's|^exec \(.*\)/bin/nvcc.*|\1|p' "${NVCC_BIN:-/dev/null}" 2>/dev/null | head -n 1)" \
              /usr/local/cuda /usr/local/cuda-*; do
    if [ -n "$cand" ] && [ -x "$cand/bin/nvcc" ] && ls "$cand"/lib64/libcudart.so* "$cand"/targets/*/lib/libcudart.so* >/dev/null 2>&1; then
      export CUDA_HOME="$cand"
      break
    fi
  done
fi
note "CUDA_HOME=${CUDA_HOME:-<not found>}"

# --- build ---------------------------------------------------------------------------------
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" MAX_JOBS="${MAX_JOBS:-16}" FORCE_CUDA=1
if ! step build 300 "$PY" setup.py build_ext --inplace; then
  note "build failed; see $LOG_DIR/build.log"
  printf '%s\n' "${SUMMARY[@]}"
  exit 1
fi
export PYTHONPATH="$ROOT/lib${PYTHONPATH:+:$PYTHONPATH}"
"$PY" -c "import frcnn.ops as o; assert o.with_cuda(), 'frcnn._C was built without CUDA'; print('gpu_check: frcnn._C has CUDA kernels')"

# --- tests ---------------------------------------------------------------------------------
step op_tests 180 "$PY" -m pytest -q -p no:cacheprovider tests/ops tests/boxes || true
if "$PY" -c "import easydict, pycocotools" 2>/dev/null; then
  # pytest exits 5 when no test is selected
  ALLOW_RC=5 step other_cuda_tests 120 "$PY" -m pytest -q -p no:cacheprovider -m cuda tests \
    --ignore=tests/ops --ignore=tests/boxes || true
else
  note "easydict/pycocotools missing (set WHEELS): the other folders' CUDA tests were not run"
  SUMMARY+=("$(printf '| %-22s | %-6s | %5s s |' other_cuda_tests skip 0)")
fi

# --- benchmark -----------------------------------------------------------------------------
step bench 120 "$PY" tools/dev/bench_ops.py --device cuda || true

echo
note "summary (logs in $LOG_DIR, $(( $(date +%s) - T0 )) s in all)"
printf '| %-22s | %-6s | %7s |\n' step status time
printf '%s\n' "${SUMMARY[@]}"
echo
grep -E '^(device|\|)' "$LOG_DIR/bench.log" || true
exit "$STATUS"
