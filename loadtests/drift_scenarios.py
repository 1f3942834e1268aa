"""Labelled drift scenarios, seeded NumPy: what the drift monitor should flag and what not.

A reference of 50,000 rows and 33 features (five each of normal, lognormal, gamma, uniform,
bimodal and Poisson columns, and three categoricals) is profiled as models/train.py profiles
training data. Each scenario draws a live window from it with some columns changed (a mean
shift, a variance or shape change, categories moved or new, values gone missing) and says which
columns changed; `detection` runs windows of a size through a DriftMonitor and reports the share
of changed columns flagged `drifted`, and for the no-drift scenario the share of windows with
any column flagged (the false-alarm rate per window). Used by the tests and `make bench`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

KINDS = ("normal", "lognormal", "gamma", "uniform", "bimodal", "poisson")
PER_KIND = 5
CATEGORIES = (0.0, 1.0, 2.0)
CATEGORY_SHARES = (0.5, 0.3, 0.2)
NUMERIC = len(KINDS) * PER_KIND
COLUMNS = NUMERIC + 3
BINS = 10


def draw(rng: np.random.Generator, rows: int, kind: str) -> np.ndarray:
    """Rows of one numeric kind, as the reference has them."""
    if kind == "normal":
        return rng.normal(0.0, 1.0, rows)
    if kind == "lognormal":
        return rng.lognormal(0.0, 0.5, rows)
    if kind == "gamma":
        return rng.gamma(2.0, 1.0, rows)
    if kind == "uniform":
        return rng.uniform(0.0, 1.0, rows)
    if kind == "bimodal":
        return np.where(rng.random(rows) < 0.5, rng.normal(-2, 1, rows), rng.normal(2, 1, rows))
    return rng.poisson(4.0, rows).astype(np.float64)


def reference_rows(rng: np.random.Generator, rows: int) -> np.ndarray:
    numeric = [draw(rng, rows, kind) for kind in KINDS for _ in range(PER_KIND)]
    categorical = [rng.choice(CATEGORIES, rows, p=CATEGORY_SHARES) for _ in range(3)]
    return np.column_stack(numeric + categorical)


def names() -> list[str]:
    return [f"{kind}{i}" for kind in KINDS for i in range(PER_KIND)] + ["c0", "c1", "c2"]


def profile(data: np.ndarray) -> dict[str, Any]:
    """A reference.json for `data`, as the library builds one (deciles, point masses apart)."""
    from gateway.observability.drift.profile import build_profile

    return build_profile(data, names(), {f"c{j}": list(CATEGORIES) for j in range(3)})


def decile_profile(data: np.ndarray) -> dict[str, Any]:
    """A reference.json for `data` with plain decile edges (NumPy's, repeated where a value
    fills several deciles), as profiles were written before `build_profile`."""
    features: list[dict[str, Any]] = []
    for j in range(data.shape[1]):
        values = data[:, j]
        if j >= NUMERIC:
            features.append({"name": f"c{j - NUMERIC}", "kind": "categorical",
                             "categories": list(CATEGORIES),
                             "counts": [int((values == c).sum()) for c in CATEGORIES]})
            continue
        finite = values[~np.isnan(values)]
        edges = np.quantile(finite, np.linspace(0, 1, BINS + 1)[1:-1])
        counts = np.bincount(np.searchsorted(edges, finite, side="right"), minlength=BINS)
        features.append({"name": f"{KINDS[j // PER_KIND]}{j % PER_KIND}", "kind": "numeric",
                         "edges": [float(e) for e in edges], "counts": [int(c) for c in counts],
                         "nan": int(np.isnan(values).sum())})
    return {"rows": len(data), "features": features}


Scenario = Callable[[np.random.Generator, int], tuple[np.ndarray, list[int]]]
"""(rng, rows) -> (a live window, the columns that changed)."""


def _numeric_change(change: Callable[[np.ndarray, str, np.random.Generator], np.ndarray],
                    kinds: tuple[str, ...] = KINDS) -> Scenario:
    def scenario(rng: np.random.Generator, rows: int) -> tuple[np.ndarray, list[int]]:
        window = reference_rows(rng, rows)
        changed = [j for j in range(NUMERIC) if KINDS[j // PER_KIND] in kinds]
        for j in changed:
            window[:, j] = change(window[:, j], KINDS[j // PER_KIND], rng)
        return window, changed
    return scenario


_SD = {"normal": 1.0, "lognormal": float(np.sqrt((np.e ** 0.25 - 1) * np.e ** 0.25)),
       "gamma": float(np.sqrt(2.0)), "uniform": float(np.sqrt(1 / 12)),
       "bimodal": float(np.sqrt(5)), "poisson": 2.0}
_MEAN = {"normal": 0.0, "lognormal": float(np.e ** 0.125), "gamma": 2.0, "uniform": 0.5,
         "bimodal": 0.0, "poisson": 4.0}


def _shift(sds: float) -> Scenario:
    """Every numeric column's mean moved by `sds` of its standard deviations (a count column
    is drawn again with the larger mean: counts stay whole numbers)."""
    def change(x: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
        if kind == "poisson":
            return rng.poisson(_MEAN[kind] + sds * _SD[kind], len(x)).astype(np.float64)
        return x + sds * _SD[kind]
    return _numeric_change(change)


def _scale(factor: float) -> Scenario:
    return _numeric_change(lambda x, kind, rng: _MEAN[kind] + (x - _MEAN[kind]) * factor)


def _shape(rng_values: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """Same mean and variance, another shape: two modes at ±0.9 sd, or a Student t (3 df)."""
    rows = len(rng_values)
    if rng.random() < 0.5:
        z = np.where(rng.random(rows) < 0.5, -0.9, 0.9) + rng.normal(0, np.sqrt(1 - 0.81), rows)
    else:
        z = rng.standard_t(3, rows) / np.sqrt(3.0)
    return _MEAN["normal"] + z * _SD["normal"]


def _categories_moved(rng: np.random.Generator, rows: int) -> tuple[np.ndarray, list[int]]:
    window = reference_rows(rng, rows)
    moved = (0.45, 0.35, 0.2)  # 5 percentage points from the first category to the second
    for j in range(NUMERIC, COLUMNS):
        window[:, j] = rng.choice(CATEGORIES, rows, p=moved)
    return window, list(range(NUMERIC, COLUMNS))


def _new_category(share: float) -> Scenario:
    def scenario(rng: np.random.Generator, rows: int) -> tuple[np.ndarray, list[int]]:
        window = reference_rows(rng, rows)
        for j in range(NUMERIC, COLUMNS):
            window[rng.random(rows) < share, j] = 9.0  # never seen in training
        return window, list(range(NUMERIC, COLUMNS))
    return scenario


def _missing(share: float) -> Scenario:
    def scenario(rng: np.random.Generator, rows: int) -> tuple[np.ndarray, list[int]]:
        window = reference_rows(rng, rows)
        changed = list(range(0, NUMERIC, PER_KIND))  # the first column of each kind
        for j in changed:
            window[rng.random(rows) < share, j] = np.nan
        return window, changed
    return scenario


def _none(rng: np.random.Generator, rows: int) -> tuple[np.ndarray, list[int]]:
    return reference_rows(rng, rows), []


SCENARIOS: dict[str, Scenario] = {
    "no drift (false alarms per window)": _none,
    "mean shift 0.1 sd": _shift(0.1),
    "mean shift 0.25 sd": _shift(0.25),
    "variance x1.5, mean kept": _scale(float(np.sqrt(1.5))),
    "same mean and variance, other shape": _numeric_change(_shape, ("normal",)),
    "5 points moved between categories": _categories_moved,
    "a new category takes 2%": _new_category(0.02),
    "a feature turns 10% NaN": _missing(0.10),
}


def detection(reference: dict[str, Any], scenario: Scenario, rows: int, windows: int,
              seed: int = 0, **rule: float) -> float:
    """The share of changed columns flagged over `windows` windows of `rows` rows; with no
    changed column, the share of windows in which any column was flagged."""
    from gateway.observability.drift.monitor import DriftMonitor
    from gateway.observability.drift.stats import DriftRule

    rng = np.random.default_rng(seed)
    drift_rule = DriftRule(**rule)
    hits = total = 0
    for _ in range(windows):
        window, changed = scenario(rng, rows)
        monitor = DriftMonitor(reference, window_rows=rows)
        monitor.ingest(window)
        flagged = [f["drifted"] for f in monitor.report(drift_rule)["features"]]
        if changed:
            hits += sum(flagged[j] for j in changed)
            total += len(changed)
        else:
            hits += any(flagged)
            total += 1
    return hits / total


def class_mix(malignant: float, rows: int, windows: int, seed: int = 0,
              **rule: float) -> float:
    """Real data: windows drawn from the breast-cancer rows with `malignant` of them malignant
    (training had 37%), against the shipped version 1's reference; the share of its 30 features
    flagged (a class-mix shift moves nearly every feature, more or less)."""
    from sklearn.datasets import load_breast_cancer

    from gateway.observability.drift.monitor import DriftMonitor
    from gateway.observability.drift.stats import DriftRule
    from loadtests.harness import MODEL, ROOT

    data = load_breast_cancer()
    sick, well = data.data[data.target == 0], data.data[data.target == 1]
    rng = np.random.default_rng(seed)
    drift_rule = DriftRule(**rule)
    flagged = total = 0
    for _ in range(windows):
        n_sick = rng.binomial(rows, malignant)
        window = np.concatenate([sick[rng.integers(0, len(sick), n_sick)],
                                 well[rng.integers(0, len(well), rows - n_sick)]])
        monitor = DriftMonitor.from_reference_file(
            ROOT / "models" / MODEL / "1" / "reference.json", window_rows=rows)
        monitor.ingest(window)
        report = monitor.report(drift_rule)["features"]
        flagged += sum(f["drifted"] for f in report)
        total += len(report)
    return flagged / total
