"""Build and install the ``frcnn`` package (lib/frcnn) with its native parts.

One ``get_extensions()`` builds:
  * Cython: ``frcnn.boxes.overlaps`` (the IoU matrix, upstream's ``cython_bbox``);
  * the torch extension ``frcnn._C`` from ``csrc/``: the C++ CPU kernels always, the CUDA
    kernels added when torch has CUDA and nvcc is found, or when FORCE_CUDA=1.

torch is deliberately *not* in install_requires: pip must never fetch its own torch (an
unpinned torch is a multi-GB CUDA download). Install torch first, then build with
``pip install --no-build-isolation -e .`` so the build sees that torch.
"""

import glob
import os

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _cuda_wanted(torch_mod, cuda_home) -> bool:
    if os.environ.get("FORCE_CUDA", "0") == "1":
        return True
    if os.environ.get("FORCE_CPU", "0") == "1":
        return False
    return bool(torch_mod.cuda.is_available() and cuda_home is not None)


def get_extensions():
    # -ffp-contract=off: no fused multiply-add, so the IoU arithmetic rounds identically on
    # every CPU (NMS: see csrc/nms/nms.h)
    extra_gcc = ["-O3", "-ffp-contract=off", "-Wno-cpp", "-Wno-unused-function"]
    exts = cythonize(
        [
            Extension(
                "frcnn.boxes.overlaps",
                ["lib/frcnn/boxes/overlaps.pyx"],
                include_dirs=[np.get_include()],
                extra_compile_args=extra_gcc,
            ),
        ],
        language_level=3,
    )

    cpu_sources = sorted(glob.glob(os.path.join("csrc", "*.cpp")) + glob.glob(os.path.join("csrc", "*", "*.cpp")))
    if not cpu_sources:
        return exts, {}

    import torch
    from torch.utils import cpp_extension

    cuda_sources = sorted(glob.glob(os.path.join("csrc", "*", "*.cu")))
    define_macros = []
    extra = {"cxx": ["-O3", "-fopenmp", "-ffp-contract=off"]}
    ext_cls = cpp_extension.CppExtension
    sources = list(cpu_sources)
    if cuda_sources and _cuda_wanted(torch, cpp_extension.CUDA_HOME):
        ext_cls = cpp_extension.CUDAExtension
        sources += cuda_sources
        define_macros.append(("WITH_CUDA", None))
        extra["nvcc"] = ["-O3", "--expt-relaxed-constexpr"]
    # the headers: a header edit rebuilds the extension (build_ext compares them with the .so too)
    headers = sorted(glob.glob(os.path.join("csrc", "*.h")) + glob.glob(os.path.join("csrc", "*", "*.h"))
                     + glob.glob(os.path.join("csrc", "*", "*.cuh")))
    exts.append(
        ext_cls(
            "frcnn._C",
            sources,
            depends=headers,
            include_dirs=[os.path.join(ROOT, "csrc")],
            define_macros=define_macros,
            extra_compile_args=extra,
            extra_link_args=["-fopenmp"],
        )
    )
    # ninja (when installed) compiles the sources in parallel (MAX_JOBS); without it
    # setuptools compiles them one after another
    use_ninja = cpp_extension.is_ninja_available()
    return exts, {"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=use_ninja)}


ext_modules, cmdclass = get_extensions()

setup(
    name="frcnn",
    version="0.1.0",
    description="Faster R-CNN (Ren, He, Girshick, Sun) reproduced on PyTorch, faithful to py-faster-rcnn",
    license="MIT",
    package_dir={"": "lib"},
    packages=find_packages("lib"),
    package_data={"frcnn": ["*.pyx", "*/*.pyx"]},
    python_requires=">=3.9",
    install_requires=["numpy", "easydict", "pyyaml"],
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    zip_safe=False,
)
