"""Fixtures of the training tests: the dataset tests' tiny VOC-format folders (for the roidb tests)."""

from tests.datasets.conftest import data_cfg, tiny_voc, write_voc  # noqa: F401 (fixtures, by name)
