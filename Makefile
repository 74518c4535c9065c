# The README's two commands, on a fresh machine or an existing checkout:
#
#   make quickstart   make the environment if needed, then train and test the SMALL net on the toy set
#   make test         make the environment if needed, then run the test suite
#
# The environment is a virtual environment $(VENV) holding torch ($(TORCH), the CPU build where
# pip finds it), the packages below, and this package installed editable with its native parts
# built against that torch. Each step leaves a stamp file in $(VENV), so a second `make test`
# installs nothing; a changed setup.py or pyproject.toml reinstalls the package, a changed file
# under csrc/ or a .pyx rebuilds the native parts. `make env` makes the environment alone.
#
# Variables: PYTHON (the interpreter that makes the venv, default python3), VENV (.venv),
# TORCH (the torch requirement), TORCH_PIP_ARGS (extra pip arguments for torch, e.g. an index
# with the CPU build), ITERS (quick start iterations, default the script's 3000), PYTEST_ARGS.

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
TORCH_PIP_ARGS ?=
PYTEST_ARGS ?=
# what the package and its tests need besides torch (setuptools, wheel, cython and numpy build it;
# pytest and hypothesis run the tests); matplotlib is optional: it draws the loss and
# precision-recall curves
PACKAGES = setuptools wheel numpy cython pycocotools opencv-contrib-python easydict pyyaml pytest hypothesis matplotlib

PY := $(VENV)/bin/python
DEPS_STAMP := $(VENV)/.frcnn-deps
BUILD_STAMP := $(VENV)/.frcnn-build
NATIVE_SOURCES := $(shell find csrc lib -name '*.cpp' -o -name '*.cu' -o -name '*.h' -o -name '*.pyx' 2>/dev/null)

.PHONY: env quickstart test

env: $(BUILD_STAMP)

# the venv, torch and the packages (redone only when this Makefile changes)
$(DEPS_STAMP): Makefile
	@test -x $(PY) || { echo "Making the virtual environment $(VENV)"; $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install $(TORCH_PIP_ARGS) "$(TORCH)"
	$(PY) -m pip install $(PACKAGES)
	@touch $@

# this package, editable, its native parts built in place against the venv's torch
# (--no-build-isolation: pip must not fetch a torch of its own for the build); when only
# native sources changed since, just those are rebuilt ($? = the newer prerequisites)
$(BUILD_STAMP): $(DEPS_STAMP) setup.py pyproject.toml $(NATIVE_SOURCES)
	$(if $(filter-out $(NATIVE_SOURCES),$?),$(PY) -m pip install --no-build-isolation -e .,$(PY) setup.py -q build_ext --inplace)
	@touch $@

quickstart: env
	OMP_NUM_THREADS=1 PYTHON="$(abspath $(PY))" $(if $(ITERS),ITERS=$(ITERS)) \
	  ./experiments/scripts/faster_rcnn_end2end.sh cpu SMALL toy

test: env
	$(PY) -m pytest -q $(PYTEST_ARGS)
