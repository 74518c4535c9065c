"""frcnn.datasets.class_overlaps: gt_overlaps stored by row against dense NumPy on random and
adversarial matrices (ties, negative rows, implicit zeros as the maximum, crowd rows of -1)."""

import pickle

import numpy as np
import pytest

pytest.importorskip("hypothesis")  # a test requirement (README); a machine without it skips these

from hypothesis import given, settings
from hypothesis import strategies as st

from frcnn.datasets.class_overlaps import ClassOverlaps, as_class_overlaps

VALUES = [0.0, 0.0, 0.0, 1.0, -1.0, 0.5, 0.25, 0.7, -0.3]


@st.composite
def dense_matrices(draw, max_rows=12, max_cols=6, cols=None):
    rows = draw(st.integers(0, max_rows))
    cols = draw(st.integers(1, max_cols)) if cols is None else cols
    cells = draw(st.lists(st.sampled_from(VALUES) | st.floats(-1, 1, width=32), min_size=rows * cols,
                          max_size=rows * cols))
    return np.array(cells, np.float32).reshape(rows, cols)


def check_same(x: ClassOverlaps, dense: np.ndarray):
    assert isinstance(x, ClassOverlaps)
    assert x.shape == dense.shape and len(x) == dense.shape[0]
    out = x.toarray()
    assert out.dtype == np.float32 and np.array_equal(out, dense)
    if dense.shape[0]:
        m, a = x.max(axis=1), x.argmax(axis=1)
        assert m.dtype == dense.max(axis=1).dtype and np.array_equal(m, dense.max(axis=1))
        assert a.dtype == dense.argmax(axis=1).dtype and np.array_equal(a, dense.argmax(axis=1))


@settings(max_examples=300, deadline=None)
@given(dense_matrices())
def test_reductions_and_dense_view_match_numpy(dense):
    x = ClassOverlaps.from_dense(dense)
    check_same(x, dense)
    assert x.nnz == np.count_nonzero(dense)
    assert np.array_equal(np.asarray(x), dense) and np.asarray(x, dtype=np.float64).dtype == np.float64
    back = pickle.loads(pickle.dumps(x))
    assert back == x
    check_same(back, dense)


@settings(max_examples=200, deadline=None)
@given(dense_matrices(), st.data())
def test_row_selection_replacement_and_stacking_match_numpy(dense, data):
    x = ClassOverlaps.from_dense(dense)
    n = dense.shape[0]
    mask = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)), bool)
    check_same(x[mask], dense[mask])
    idx = np.array(data.draw(st.lists(st.integers(0, max(n - 1, 0)), max_size=8 if n else 0)), np.int64)
    check_same(x[idx], dense[idx])  # repeats and any order
    a, b = sorted(data.draw(st.tuples(st.integers(0, n), st.integers(0, n))))
    check_same(x[a:b], dense[a:b])
    for i in range(n):
        row = x[i]
        assert row.dtype == np.float32 and np.array_equal(row, dense[i])
    if n:
        assert np.array_equal(x[-1], dense[-1])
    value = data.draw(st.sampled_from([-1.0, 0.0, 0.4]))
    want = dense.copy()
    want[mask, :] = value
    check_same(x.with_rows(mask, value), want)
    check_same(x, dense)  # the original is unchanged
    other = data.draw(dense_matrices(max_rows=5, cols=dense.shape[1]))
    check_same(ClassOverlaps.vstack([x, other]), np.vstack([dense, other]))  # dense parts are taken too


def test_adversarial_rows():
    dense = np.array([
        [0, 0, 0, 0],  # all zero: 0, column 0
        [-1, -1, -1, -1],  # a COCO crowd row: -1, column 0
        [-1, -0.5, 0, -1],  # negatives with an implicit zero: 0 at column 2
        [0, -1, -1, -1],  # the implicit zero is column 0
        [-1, -1, -1, 0],  # the implicit zero is the last column
        [0.5, 0, 0.5, 0.5],  # ties: the first
        [0, 0, 0, 0.9],  # the one nonzero in the last column
        [-0.2, -0.1, -0.3, -0.1],  # all stored, all negative, tie: column 1
    ], np.float32)
    check_same(ClassOverlaps.from_dense(dense), dense)
    assert ClassOverlaps.from_dense(dense).max(axis=1).tolist() == [0, -1, 0, 0, 0, 0.5, np.float32(0.9), np.float32(-0.1)]


def test_builders_and_their_errors():
    x = ClassOverlaps.from_entries([2, 0, 2], [1, 3, 0], [0.5, 1.0, 0.25], (4, 5))
    want = np.zeros((4, 5), np.float32)
    want[2, 1], want[0, 3], want[2, 0] = 0.5, 1.0, 0.25
    check_same(x, want)
    assert x.row_counts().tolist() == [1, 0, 2, 0]
    rows, cols, vals = x.entries()
    assert rows.tolist() == [0, 2, 2] and cols.tolist() == [3, 0, 1] and vals.tolist() == [1.0, 0.25, 0.5]
    assert ClassOverlaps.from_entries([0, 1], [1, 2], 0.0, (2, 3)).nnz == 0  # zeros are not stored
    check_same(ClassOverlaps.zeros(3, 2), np.zeros((3, 2), np.float32))
    check_same(ClassOverlaps.zeros(0, 21), np.zeros((0, 21), np.float32))
    assert ClassOverlaps.zeros(0, 21).max(axis=1).shape == (0,)
    with pytest.raises(ValueError, match="given twice"):
        ClassOverlaps.from_entries([1, 1], [2, 2], [0.5, 0.6], (2, 3))
    with pytest.raises(ValueError, match="outside the 2 x 3"):
        ClassOverlaps.from_entries([0], [3], [1.0], (2, 3))
    with pytest.raises(ValueError, match="column counts differ"):
        ClassOverlaps.vstack([ClassOverlaps.zeros(1, 3), np.zeros((1, 4), np.float32)])
    with pytest.raises(ValueError, match="rise from 0"):
        ClassOverlaps(np.array([0, 2, 1]), np.array([0]), np.array([1.0]), 3)
    with pytest.raises(ValueError, match="outside"):
        ClassOverlaps(np.array([0, 1]), np.array([3]), np.array([1.0]), 3)
    with pytest.raises(ValueError, match="only axis=1"):
        x.max(axis=0)
    with pytest.raises(IndexError, match="row 4 out of range"):
        x[4]
    with pytest.raises(TypeError, match="index rows only"):
        x[:, 1]
    with pytest.raises(ValueError, match="always a new copy"):
        np.asarray(x, copy=False)


def test_immutable_and_dense_views_are_fresh():
    x = ClassOverlaps.from_dense(np.eye(3, dtype=np.float32))
    vals = x.entries()[2]
    with pytest.raises(ValueError):
        vals[0] = 0.5  # read-only: flipped entries share the object
    d = x.toarray()
    d[0, 0] = 7
    assert x.toarray()[0, 0] == 1
    assert as_class_overlaps(x) is x
    assert as_class_overlaps([[0, 1]]).toarray().tolist() == [[0, 1]]


def test_a_proposal_row_costs_a_few_bytes_not_k_floats():
    """2000 proposals of which each has at most one nonzero: 4 bytes per row (its end) + 8 per
    nonzero, whatever K; the dense array was 4 K bytes per row."""
    rng = np.random.RandomState(0)
    for k in (21, 81):
        rows = np.flatnonzero(rng.rand(2000) < 0.6)
        x = ClassOverlaps.from_entries(rows, rng.randint(1, k, len(rows)), rng.uniform(0.01, 1, len(rows)), (2000, k))
        assert x.nbytes == 4 * 2001 + 8 * len(rows)
        assert x.nbytes * (k / 3) < 2000 * k * 4  # >= 7x smaller for VOC, 27x for COCO
