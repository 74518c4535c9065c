"""Shared test fixtures: GPU skipping, the optional real data sets, temporary roots."""

import os

import pytest
import torch

SHARED_DATA = os.environ.get(
    "FRCNN_SHARED_DATA",
    os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")),
)


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU and the CUDA build of frcnn._C")
    config.addinivalue_line("markers", "slow: takes more than a few seconds on a 2-core CPU")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def shared_data():
    """Path to ../shared/data (bccd, raccoon); the test skips where it is absent."""
    if not os.path.isdir(SHARED_DATA):
        pytest.skip(f"real data sets not present at {SHARED_DATA}")
    return SHARED_DATA
