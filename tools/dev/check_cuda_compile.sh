#!/usr/bin/env bash
# Compile-only check of every csrc/*/*.cu with nvcc against the installed torch's headers,
# so that a CUDA syntax or type error fails CI on a machine without a GPU (and with the CPU
# build of torch). Nothing is linked or run.
#
# usage: tools/dev/check_cuda_compile.sh [PYTHON]     (PYTHON defaults to $PYTHON, then python3)
# env:   NVCC (default: nvcc on PATH), CUDA_ARCH (default 90: sm_90, the H100/H200)
#
# The CPU torch wheel lacks c10/cuda/impl/cuda_cmake_macros.h; a one-line shim for it is made
# in a temporary folder. The .cu files may include only <ATen/ATen.h> and c10/cuda/* headers
# (ATen/cuda/CUDAContext.h pulls cuBLAS/cuSPARSE headers that are not installed here).
#
# ptxas's resource report is printed per kernel (registers, spills, shared memory): a kernel
# that spills registers or needs a stack frame is flagged (a speed problem, not a failure), and
# one whose registers times its __launch_bounds__ threads exceed the SM's 65,536 would fail to
# launch (ptxas holds the bound, so this shows as spills).
set -euo pipefail

PY="${1:-${PYTHON:-python3}}"
NVCC="${NVCC:-nvcc}"
ARCH="${CUDA_ARCH:-90}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

if ! command -v "$NVCC" >/dev/null 2>&1; then
  echo "check_cuda_compile: FAILED: nvcc not found (set NVCC or put nvcc on PATH)" >&2
  exit 1
fi

TORCH_INC="$("$PY" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "include"))')"
PY_INC="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$TMP/shim/c10/cuda/impl"
if [ ! -f "$TORCH_INC/c10/cuda/impl/cuda_cmake_macros.h" ]; then
  echo '#pragma once' > "$TMP/shim/c10/cuda/impl/cuda_cmake_macros.h"
fi

mapfile -t SOURCES < <(cd "$ROOT" && ls csrc/*/*.cu 2>/dev/null | sort)
if [ "${#SOURCES[@]}" -eq 0 ]; then
  echo "check_cuda_compile: FAILED: no csrc/*/*.cu files found under $ROOT" >&2
  exit 1
fi

resources() {  # one line per kernel from ptxas -v: registers, stack, spills, shared memory
  local demangle=cat
  command -v c++filt >/dev/null 2>&1 && demangle=c++filt
  grep -e '^ptxas info' -e 'bytes stack frame, ' "$1" | sed 's/^ptxas info *: //; s/^ *//' | "$demangle" | awk '
    /^Compiling entry function/ {
      name = $0; sub(/^Compiling entry function .void /, "", name); sub(/^Compiling entry function ./, "", name)
      sub(/\(.*/, "", name); sub(/^frcnn::/, "", name); next }
    /bytes stack frame/ { stack = $1; spill = $5; next }
    /^Used [0-9]+ registers/ {
      smem = 0
      if (match($0, /[0-9]+ bytes smem/)) smem = substr($0, RSTART, RLENGTH - 11)
      flag = (spill > 0 || stack > 0) ? "  <- spills or a stack frame: slower than it should be" : ""
      printf "    %-52s %3d registers, %4d B stack, %4d B spill stores, %5d B static smem%s\n", name, $2, stack, spill, smem, flag
    }'
}

echo "check_cuda_compile: $("$NVCC" --version | tail -n 1)"
echo "check_cuda_compile: torch headers $TORCH_INC, arch sm_$ARCH"
failed=0
for src in "${SOURCES[@]}"; do
  start=$(date +%s)
  if "$NVCC" -c "$ROOT/$src" -o "$TMP/$(basename "$src").o" \
      -std=c++20 --expt-relaxed-constexpr -O3 -DWITH_CUDA \
      -gencode="arch=compute_${ARCH},code=sm_${ARCH}" \
      -Xcompiler -fPIC -Xptxas -v \
      -I"$ROOT/csrc" -I"$TMP/shim" -I"$TORCH_INC" -I"$TORCH_INC/torch/csrc/api/include" \
      -I"$PY_INC" >"$TMP/log" 2>&1; then
    echo "check_cuda_compile: OK     $src ($(( $(date +%s) - start )) s)"
    grep -v -e '^ptxas info' -e 'bytes stack frame, ' "$TMP/log" | sed 's/^/    /' || true  # warnings
    resources "$TMP/log"
  else
    echo "check_cuda_compile: FAILED $src" >&2
    cat "$TMP/log" >&2
    failed=1
  fi
done
if [ "$failed" -ne 0 ]; then
  echo "check_cuda_compile: FAILED (see the errors above)" >&2
  exit 1
fi
echo "check_cuda_compile: all ${#SOURCES[@]} CUDA sources compiled"
