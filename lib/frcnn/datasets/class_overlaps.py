"""A roidb entry's ``gt_overlaps``: the (R, K) overlap of each row with each class, stored by row.

Upstream kept ``gt_overlaps`` as a ``scipy.sparse.csr_matrix`` because nearly all of it is
zero: a gt row has one nonzero (1 in its class's column), a proposal row at most one (its IoU
with the best gt, in that gt's class's column), a COCO crowd row -1 in every column. Held
dense, 2000 proposals per image cost 2000 x K x 4 bytes: 0.17 MB per VOC image, 0.65 MB per
COCO image, about 54 GB for a COCO train roidb. :class:`ClassOverlaps` is that compressed row
layout without scipy: per row the nonzero columns (ascending) and their values, so a typical
row costs 4 bytes (its end offset) plus 8 per nonzero.

What consumers use is computed from the stored entries, with dense NumPy's results exactly
(``max`` / ``argmax`` over axis 1, first column on ties, implicit zeros included); a dense
array is made only on request: ``toarray()`` (upstream's call) or ``np.asarray(...)``, each
time, not kept. Row selection (``x[rows]``, ``x[mask]``, ``x[a:b]``) gives a ClassOverlaps, an
integer index one dense (K,) row. Objects are never changed in place (flipped entries share
them): :meth:`ClassOverlaps.with_rows` returns a copy with rows replaced.

Every function here also takes a dense (R, K) array (:func:`as_class_overlaps`), so roidb
entries written by hand (tests, scripts) keep working.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

_COL = np.int32
_PTR = np.int32
_VAL = np.float32


def _segments(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The concatenated index ranges ``starts[i] .. starts[i] + counts[i] - 1``."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    ends = np.cumsum(counts)
    offsets = np.repeat(np.asarray(starts, dtype=np.int64) - (ends - counts), counts)
    return offsets + np.arange(total, dtype=np.int64)


class ClassOverlaps:
    """(R, K) float32 overlaps stored as per-row nonzero columns and values (module docstring)."""

    __slots__ = ("_cols", "_indptr", "_num_classes", "_vals")

    def __init__(self, indptr: np.ndarray, cols: np.ndarray, vals: np.ndarray, num_classes: int) -> None:
        """Row ``r`` holds ``cols[indptr[r]:indptr[r + 1]]`` (strictly ascending, in
        ``[0, num_classes)``) with ``vals`` there (nonzero); every other column is 0. The
        arrays are kept (made read-only), not copied, when they already have the store's dtypes;
        the builders below make the layout from entries."""
        indptr = np.ascontiguousarray(indptr, dtype=_PTR)
        cols = np.ascontiguousarray(cols, dtype=_COL)
        vals = np.ascontiguousarray(vals, dtype=_VAL)
        k = int(num_classes)
        if k < 0 or indptr.ndim != 1 or len(indptr) < 1 or indptr[0] != 0 or cols.shape != vals.shape:
            raise ValueError(
                f"ClassOverlaps: bad layout (indptr {indptr.shape} starting {indptr[:1].tolist()}, cols "
                f"{cols.shape}, vals {vals.shape}, {k} classes)"
            )
        if indptr[-1] != len(cols) or np.any(np.diff(indptr) < 0):
            raise ValueError(f"ClassOverlaps: indptr must rise from 0 to {len(cols)}, ends at {indptr[-1]}")
        if len(cols) and (cols.min() < 0 or cols.max() >= k):
            raise ValueError(f"ClassOverlaps: a column lies outside [0, {k})")
        for a in (indptr, cols, vals):
            a.flags.writeable = False
        self._indptr, self._cols, self._vals, self._num_classes = indptr, cols, vals, k

    # ---------------------------------------------------------------- building
    @classmethod
    def from_entries(
        cls, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, shape: tuple[int, int]
    ) -> ClassOverlaps:
        """The (R, K) = ``shape`` matrix with ``vals`` at (``rows``, ``cols``) and 0 elsewhere
        (values that are 0 in float32 are left out; a (row, column) given twice is an error)."""
        num_rows, k = int(shape[0]), int(shape[1])
        rows = np.asarray(rows, dtype=np.int64).ravel()
        cols = np.asarray(cols, dtype=np.int64).ravel()
        vals = np.broadcast_to(np.asarray(vals, dtype=_VAL), rows.shape).ravel()
        if cols.shape != rows.shape:
            raise ValueError(f"ClassOverlaps.from_entries: {len(rows)} rows but {len(cols)} columns")
        if len(rows) and (rows.min() < 0 or rows.max() >= num_rows or cols.min() < 0 or cols.max() >= k):
            raise ValueError(f"ClassOverlaps.from_entries: an entry lies outside the {num_rows} x {k} matrix")
        keep = vals != 0
        rows, cols, vals = rows[keep], cols[keep], vals[keep]
        order = np.lexsort((cols, rows))
        rows, cols, vals = rows[order], cols[order], vals[order]
        if len(rows) > 1 and np.any((rows[1:] == rows[:-1]) & (cols[1:] == cols[:-1])):
            raise ValueError("ClassOverlaps.from_entries: a (row, column) is given twice")
        indptr = np.zeros(num_rows + 1, dtype=_PTR)
        np.cumsum(np.bincount(rows, minlength=num_rows), out=indptr[1:])
        return cls(indptr, cols, vals, k)

    @classmethod
    def from_dense(cls, dense: Any) -> ClassOverlaps:
        """The nonzeros of a dense (R, K) array."""
        a = np.asarray(dense, dtype=_VAL)
        if a.ndim != 2:
            raise ValueError(f"ClassOverlaps.from_dense: expected an (R, K) array, got shape {a.shape}")
        rows, cols = np.nonzero(a)
        return cls.from_entries(rows, cols, a[rows, cols], a.shape)

    @classmethod
    def zeros(cls, num_rows: int, num_classes: int) -> ClassOverlaps:
        """An all-zero (R, K) matrix (e.g. proposals of an image without gt)."""
        return cls(np.zeros(int(num_rows) + 1, _PTR), np.zeros(0, _COL), np.zeros(0, _VAL), num_classes)

    @classmethod
    def vstack(cls, parts: Sequence[Any]) -> ClassOverlaps:
        """The rows of ``parts`` (ClassOverlaps or dense arrays, same K) one after the other."""
        if not parts:
            raise ValueError("ClassOverlaps.vstack: nothing to stack")
        mats = [as_class_overlaps(p) for p in parts]
        k = mats[0].shape[1]
        if any(m.shape[1] != k for m in mats):
            raise ValueError(f"ClassOverlaps.vstack: column counts differ ({[m.shape[1] for m in mats]})")
        ptrs, start = [np.zeros(1, _PTR)], 0
        for m in mats:
            ptrs.append(m._indptr[1:] + start)
            start += len(m._cols)
        return cls(
            np.concatenate(ptrs),
            np.concatenate([m._cols for m in mats]),
            np.concatenate([m._vals for m in mats]),
            k,
        )

    # ---------------------------------------------------------------- what it holds
    @property
    def shape(self) -> tuple[int, int]:
        return len(self._indptr) - 1, self._num_classes

    ndim = 2
    dtype = np.dtype(_VAL)

    def __len__(self) -> int:
        return len(self._indptr) - 1

    @property
    def nnz(self) -> int:
        """The number of stored (nonzero) values."""
        return len(self._cols)

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays."""
        return self._indptr.nbytes + self._cols.nbytes + self._vals.nbytes

    def row_counts(self) -> np.ndarray:
        """(R,) how many nonzeros each row has."""
        return np.diff(self._indptr)

    def entries(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rows, cols, vals) of the nonzeros, row-major (read-only views of the store)."""
        return np.repeat(np.arange(len(self), dtype=np.int64), self.row_counts()), self._cols, self._vals

    def toarray(self) -> np.ndarray:
        """A new dense (R, K) float32 array (upstream's ``csr_matrix.toarray()``)."""
        out = np.zeros(self.shape, dtype=_VAL)
        rows, cols, vals = self.entries()
        out[rows, cols] = vals
        return out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        if copy is False:
            raise ValueError("ClassOverlaps: a dense array is always a new copy (np.asarray(x, copy=False) cannot be)")
        a = self.toarray()
        return a if dtype is None else a.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"ClassOverlaps(shape={self.shape}, nnz={self.nnz})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ClassOverlaps):
            return NotImplemented
        return (
            self.shape == other.shape
            and np.array_equal(self._indptr, other._indptr)
            and np.array_equal(self._cols, other._cols)
            and np.array_equal(self._vals, other._vals)
        )

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> tuple:
        return (type(self), (self._indptr, self._cols, self._vals, self._num_classes))

    # ---------------------------------------------------------------- reductions
    def _check_axis(self, axis: Any, what: str) -> None:
        if axis not in (1, -1):
            raise ValueError(f"ClassOverlaps.{what}: only axis=1 (over the classes of each row), got axis={axis}")

    def max(self, axis: int = 1) -> np.ndarray:
        """(R,) float32 largest value of each row, the implicit zeros included."""
        self._check_axis(axis, "max")
        num_rows, k = self.shape
        if k == 0 and num_rows:
            raise ValueError("ClassOverlaps.max: zero-size rows (no classes) have no maximum")
        counts = self.row_counts()
        stored = np.full(num_rows, -np.inf, dtype=_VAL)
        nonempty = counts > 0
        if self.nnz:
            stored[nonempty] = np.maximum.reduceat(self._vals, self._indptr[:-1][nonempty])
        return np.where(counts < k, np.maximum(stored, _VAL(0)), stored).astype(_VAL)

    def argmax(self, axis: int = 1) -> np.ndarray:
        """(R,) int64 column of each row's largest value, the first one on ties (as NumPy)."""
        self._check_axis(axis, "argmax")
        num_rows, _ = self.shape
        best = self.max(axis=1)
        out = np.zeros(num_rows, dtype=np.int64)
        if not self.nnz:
            return out  # every row all zeros: column 0
        rows, cols, vals = self.entries()
        # rows whose maximum is stored: the first stored column holding it (columns ascend)
        hit = np.flatnonzero(vals == best[rows])
        hit_rows, first = np.unique(rows[hit], return_index=True)
        out[hit_rows] = cols[hit[first]]
        # rows whose maximum is an implicit 0: the first column not stored
        pos = np.arange(len(cols), dtype=np.int64) - self._indptr[rows]
        gap = np.flatnonzero(cols != pos)
        missing = self.row_counts().astype(np.int64)
        gap_rows, first = np.unique(rows[gap], return_index=True)
        missing[gap_rows] = pos[gap[first]]
        zero_max = best == 0
        out[zero_max] = missing[zero_max]
        return out

    # ---------------------------------------------------------------- rows
    def __getitem__(self, index: Any) -> Any:
        """``x[i]``: dense row i; ``x[slice]``, ``x[int array]``, ``x[bool mask]``: those rows."""
        if isinstance(index, (int, np.integer)):
            n = len(self)
            i = int(index) + (n if index < 0 else 0)
            if not 0 <= i < n:
                raise IndexError(f"ClassOverlaps: row {int(index)} out of range for {n} rows")
            row = np.zeros(self._num_classes, dtype=_VAL)
            s, e = self._indptr[i], self._indptr[i + 1]
            row[self._cols[s:e]] = self._vals[s:e]
            return row
        if isinstance(index, tuple):
            raise TypeError("ClassOverlaps: index rows only (x[rows]); use toarray() for columns")
        rows = np.arange(len(self))[index]
        counts = self.row_counts()[rows]
        take = _segments(self._indptr[rows], counts)
        indptr = np.zeros(len(rows) + 1, dtype=_PTR)
        np.cumsum(counts, out=indptr[1:])
        return ClassOverlaps(indptr, self._cols[take], self._vals[take], self._num_classes)

    def with_rows(self, rows: Any, value: float) -> ClassOverlaps:
        """A copy whose ``rows`` (indices or mask) hold ``value`` in every column (upstream's
        ``overlaps[rows, :] = value``, e.g. -1 for proposals inside a COCO crowd region)."""
        num_rows, k = self.shape
        chosen = np.zeros(num_rows, dtype=bool)
        chosen[np.arange(num_rows)[rows]] = True
        fill = _VAL(value)
        old = self.row_counts()
        new = np.where(chosen, k if fill != 0 else 0, old)
        indptr = np.zeros(num_rows + 1, dtype=_PTR)
        np.cumsum(new, out=indptr[1:])
        cols = np.empty(int(indptr[-1]), dtype=_COL)
        vals = np.empty(int(indptr[-1]), dtype=_VAL)
        kept = np.flatnonzero(~chosen)
        dst = _segments(indptr[kept], old[kept])
        src = _segments(self._indptr[kept], old[kept])
        cols[dst], vals[dst] = self._cols[src], self._vals[src]
        if fill != 0:
            filled = np.flatnonzero(chosen)
            dst = _segments(indptr[filled], np.full(len(filled), k))
            cols[dst] = np.tile(np.arange(k, dtype=_COL), len(filled))
            vals[dst] = fill
        return ClassOverlaps(indptr, cols, vals, k)


def as_class_overlaps(value: Any) -> ClassOverlaps:
    """``value`` itself if a :class:`ClassOverlaps`, else the nonzeros of a dense (R, K) array."""
    return value if isinstance(value, ClassOverlaps) else ClassOverlaps.from_dense(value)
