import numpy as np
import pytest

from frcnn.datasets import ds_utils


def test_unique_boxes_keeps_first_occurrence_in_order():
    boxes = np.array([[0, 0, 10, 10], [5, 5, 9, 9], [0, 0, 10, 10], [5.2, 5, 9, 9], [1, 1, 2, 2]])
    # rows 0 and 2 identical; row 3 rounds to row 1
    assert ds_utils.unique_boxes(boxes).tolist() == [0, 1, 4]
    assert ds_utils.unique_boxes(boxes, scale=10.0).tolist() == [0, 1, 3, 4]
    assert ds_utils.unique_boxes(np.zeros((0, 4))).tolist() == []


def test_xywh_round_trip_uses_plus_one():
    xyxy = np.array([[10, 20, 19, 39]])
    xywh = ds_utils.xyxy_to_xywh(xyxy)
    assert xywh.tolist() == [[10, 20, 10, 20]]
    assert ds_utils.xywh_to_xyxy(xywh).tolist() == xyxy.tolist()


def test_filter_small_boxes_is_asymmetric_without_plus_one():
    boxes = np.array([[0, 0, 2, 3], [0, 0, 2, 2], [0, 0, 1, 3], [0, 0, 5, 5]])
    # width x2-x1 >= 2 and height y2-y1 > 2
    assert ds_utils.filter_small_boxes(boxes, 2).tolist() == [0, 3]


def test_validate_boxes_names_the_problem():
    ds_utils.validate_boxes(np.array([[0, 0, 9, 9]]), width=10, height=10)
    with pytest.raises(ValueError, match="x2 >= image width 10"):
        ds_utils.validate_boxes(np.array([[0, 0, 10, 9]]), width=10, height=10, where="img.jpg")
    with pytest.raises(ValueError, match="img.jpg: box 1 .* x2 < x1"):
        ds_utils.validate_boxes(np.array([[0, 0, 1, 1], [5, 0, 4, 3]]), where="img.jpg")
    with pytest.raises(ValueError, match="y1 < 0"):
        ds_utils.validate_boxes(np.array([[0, -1, 1, 1]]))
