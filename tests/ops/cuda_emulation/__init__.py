"""The project's CUDA kernels run on the CPU under a host emulation of CUDA's execution model.

``csrc/nms/nms_kernels.cuh`` and ``csrc/roi_pool/roi_pool_kernels.cuh`` hold the device code of
the CUDA ops, apart from their host wrappers. ``runner.cpp`` includes them unchanged after
``cuda_emulation.h`` (blocks run one at a time, their threads as fibers in a shuffled order,
barriers and warp shuffles checked, buffers between guard pages and filled with garbage where
the wrapper leaves them uninitialised) and replays each wrapper's launch sequence, so that the
kernels' logic is tested against the CPU ops on any machine with a C++ compiler, before (and
beside) any run on a GPU. What the emulation does not model is listed in cuda_emulation.h.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
SOURCES = [
    HERE / "cuda_emulation.h",
    HERE / "runner.cpp",
    ROOT / "csrc" / "nms" / "nms_kernels.cuh",
    ROOT / "csrc" / "roi_pool" / "roi_pool_kernels.cuh",
    ROOT / "csrc" / "roi_pool" / "roi_pool_bins.h",
    ROOT / "csrc" / "sgd" / "sgd_kernels.cuh",
]
# -ffp-contract=off: no fused multiply-add, as the kernels' __d*_rn and nvcc's defaults for
# the rest would give; UBSan makes a signed overflow, a bad shift or a float -> int conversion
# out of range (NaN included) in the kernels an error.
FLAGS = ["-std=c++17", "-O1", "-g", "-ffp-contract=off", "-fsanitize=undefined,float-cast-overflow",
         "-fno-sanitize-recover=all", "-Wall"]


class EmulationError(RuntimeError):
    """The runner reported violations, failed, or was killed (a fault: an out-of-bounds access)."""


def compiler() -> str | None:
    return shutil.which(os.environ.get("CXX", "g++"))


def build(out_dir: Path) -> Path:
    """Compiles the runner into out_dir (once per content of the sources and flags)."""
    cxx = compiler()
    if cxx is None:
        raise FileNotFoundError("no C++ compiler (g++, or $CXX) to build the CUDA emulation runner")
    digest = hashlib.sha256(" ".join([cxx] + FLAGS).encode())
    for src in SOURCES:
        digest.update(src.read_bytes())
    exe = Path(out_dir) / f"cuda_emulation_runner_{digest.hexdigest()[:16]}"
    if exe.exists():
        return exe
    tmp = exe.with_name(exe.name + f".tmp{os.getpid()}")
    cmd = [cxx, *FLAGS, f"-I{ROOT / 'csrc'}", f"-I{HERE}", str(HERE / "runner.cpp"), "-o", str(tmp)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise EmulationError(f"building the CUDA emulation runner failed:\n{' '.join(cmd)}\n{proc.stderr}")
    os.replace(tmp, exe)
    return exe


class Runner:
    """Runs one op of runner.cpp: writes the parameters and inputs, reads the outputs back."""

    def __init__(self, exe: Path):
        self.exe = Path(exe)

    def run(self, op: str, params: dict, inputs: dict[str, np.ndarray],
            outputs: dict[str, np.dtype], timeout: float = 600) -> dict[str, np.ndarray]:
        with tempfile.TemporaryDirectory(prefix="cuda_emu_") as d:
            with open(os.path.join(d, "params.txt"), "w") as f:
                f.writelines(f"{k} {v}\n" for k, v in params.items())
            for name, arr in inputs.items():
                np.ascontiguousarray(arr).tofile(os.path.join(d, f"{name}.bin"))
            proc = subprocess.run([str(self.exe), op, d], capture_output=True, text=True, check=False,
                                  timeout=timeout)
            if proc.returncode < 0:
                sig = signal.Signals(-proc.returncode).name
                raise EmulationError(f"{op}: the emulated kernels were killed by {sig} "
                                     f"(an access outside a buffer faults on its guard page)\n{proc.stderr}")
            if proc.returncode != 0:
                raise EmulationError(f"{op}: exit status {proc.returncode}\n{proc.stderr}")
            return {name: np.fromfile(os.path.join(d, f"{name}.bin"), dtype=dtype)
                    for name, dtype in outputs.items()}
