"""tools/dev/gpu_check.sh fits one device command: its step limits add up to under 8 minutes,
the GPU build is forced, setup.py rebuilds after a header edit, and the CUDA tests collect on
a Python without the optional test requirements."""

import os
import re
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCRIPT = os.path.join(ROOT, "tools", "dev", "gpu_check.sh")


def _text():
    with open(SCRIPT, encoding="utf-8") as f:
        return f.read()


def test_step_limits_add_up_to_less_than_eight_minutes():
    text = _text()
    setup_part = text[: text.index("# --- tests")]
    limits = {}
    for name, limit in re.findall(r"\bstep (\w+) (\d+) ", text):
        limits[name] = max(limits.get(name, 0), int(limit))
    # the build's limit: 130 s with ninja, longer without (a serial compile), set in BUILD_LIMIT
    build_limits = [int(v) for v in re.findall(r"\bBUILD_LIMIT=(\d+)", text)]
    assert 'step build "$BUILD_LIMIT"' in text and len(build_limits) == 2, build_limits
    limits["build"] = min(build_limits)
    assert set(limits) == {"environment", "wheels", "build", "cuda_tests", "bench_ops", "bench_detector"}
    budget = int(re.search(r'BUDGET="\$\{GPU_CHECK_BUDGET_S:-(\d+)\}"', text).group(1))
    assert sum(limits.values()) <= budget < 480, (limits, budget)
    # without ninja the longer build still leaves the CUDA tests their whole limit
    before_tests = limits["environment"] + limits["wheels"] + max(build_limits) + limits["cuda_tests"]
    assert before_tests <= budget, (build_limits, budget)
    assert "build_ext --inplace --force" in setup_part and "FORCE_CUDA=1" in setup_part
    assert "-m cuda" in text and "--no-index --find-links" in text


def test_script_parses():
    assert subprocess.run(["bash", "-n", SCRIPT], check=False).returncode == 0


def test_setup_py_lists_the_headers_as_dependencies():
    with open(os.path.join(ROOT, "setup.py"), encoding="utf-8") as f:
        setup = f.read()
    assert "depends=headers" in setup and 'glob.glob(os.path.join("csrc", "*", "*.h"))' in setup


#: what the lent GPU machine's Python lacks (seen there, or not known to be there) and gpu_check.sh
#: does not install: a test module must skip without them, not break the collection of the CUDA tests
NOT_ON_THE_DEVICE = ("hypothesis", "matplotlib", "pycocotools", "torchvision")

_COLLECT_WITHOUT = """
import sys

import pytest

blocked = set(sys.argv[1].split(","))


class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
        return None


sys.meta_path.insert(0, Block())
for name in list(sys.modules):
    if name.split(".")[0] in blocked:
        del sys.modules[name]
# hypothesis's pytest plugin (an entry point) is not there either
sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", "-p", "no:hypothesispytest", "--collect-only", "-m", "cuda",
                      sys.argv[2]]))
"""


def test_the_cuda_tests_collect_without_the_optional_test_requirements():
    # gpu_check.sh runs `pytest -m cuda tests`, which imports every test module first: one
    # import error there (hypothesis, on the device's Python) stopped all the CUDA tests
    r = subprocess.run(
        [sys.executable, "-c", _COLLECT_WITHOUT, ",".join(NOT_ON_THE_DEVICE), os.path.join(ROOT, "tests")],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    assert "error" not in out.splitlines()[-1].lower(), out[-2000:]
    collected = re.search(r"(\d+)(?:/\d+)? tests? collected", out)
    assert collected and int(collected.group(1)) >= 20, out[-2000:]
    assert "--continue-on-collection-errors" in _text()
