"""Drift regimes beyond the scenarios (README "Drift monitor"): pages over simulated days
rather than flags per window, rare categories on small windows, small references, point masses.
Seeded NumPy through `DriftMonitor`; used by the tests and `make bench` table 10."""

from __future__ import annotations

from typing import Any

import numpy as np

from loadtests.drift_scenarios import BINS, Scenario, profile, reference_rows

SHIPPED_RULE = (30, True)
"""The shipped GatewayFeatureDrift at 2.8 req/s and more: (minutes held, with a full window of
new rows in them); below that rate its 6-hour clause: (360, True)."""


def alert_runs(reference: dict[str, Any], rows_per_minute: int, minutes: int,
               rules: dict[str, tuple[int, bool]], seed: int = 0,
               scenario: Scenario | None = None, window_rows: int = 5000,
               **rule: float) -> dict[str, list[int]]:
    """The minutes at which `for:`-style alerts on `gateway_drift_drifted` would fire: a
    simulated stream of `rows_per_minute` rows, drawn without drift (or from `scenario` from
    minute 0), folded into one monitor and its report read once a minute, as Prometheus
    evaluates the rules. A feature's alert fires when its flag has been up at `minutes held`
    + 1 consecutive evaluations over a window of at least 500 rows, once per episode; with
    `full window`, only when those minutes also brought a full window of new rows (the shipped
    rule, config/prometheus/rules.yml). `rules`: name -> (minutes held, full window)."""
    from gateway.observability.drift.monitor import DriftMonitor
    from gateway.observability.drift.stats import DriftRule

    rng = np.random.default_rng(seed)
    drift_rule = DriftRule(**rule)
    monitor = DriftMonitor(reference, window_rows=window_rows)
    held = np.zeros(len(reference["features"]), dtype=np.int64)
    live = {name: (held_minutes, not full or rows_per_minute * held_minutes >= window_rows)
            for name, (held_minutes, full) in rules.items()}
    fired: dict[str, list[int]] = {name: [] for name in rules}
    # A minute of more rows than the window leaves only its last `window_rows` in it: drawing
    # just those is the same window, at a fraction of the cost.
    drawn = min(rows_per_minute, window_rows)
    for minute in range(minutes):
        rows = (scenario(rng, drawn)[0] if scenario is not None
                else reference_rows(rng, drawn))
        monitor.ingest(rows)
        report = monitor.report(drift_rule)
        up = np.array([f["drifted"] for f in report["features"]]) & (
            report["window_rows"] >= 500)
        held = np.where(up, held + 1, 0)
        for name, (held_minutes, can_fire) in live.items():
            if can_fire and np.any(held == held_minutes + 1):
                fired[name].append(minute)
    return fired


def alert_run(reference: dict[str, Any], rows_per_minute: int, minutes: int,
              for_minutes: int = 15, full_window: bool = False, **options: Any) -> list[int]:
    """`alert_runs` for one rule."""
    return alert_runs(reference, rows_per_minute, minutes, {"rule": (for_minutes, full_window)},
                      **options)["rule"]


def _categorical_profile(rng: np.random.Generator, rows: int, columns: int,
                         shares: np.ndarray) -> dict[str, Any]:
    from gateway.observability.drift.profile import categorical_profile

    data = rng.choice(len(shares), size=(rows, columns), p=shares)
    return {"rows": rows, "features": [categorical_profile(f"c{j}", data[:, j],
                                                           list(range(len(shares))))
                                       for j in range(columns)]}


RARE_SHARES = 0.7 ** np.arange(20) / (0.7 ** np.arange(20)).sum()
"""Twenty uneven categories, 30% down to 0.03%."""


def rare_categories(rows: int, windows: int, seed: int = 0) -> tuple[float, float]:
    """Ten columns of twenty uneven categories, windows of `rows` rows without drift: the
    share of windows with any column flagged, and the share of columns not tested."""
    from gateway.observability.drift.monitor import DriftMonitor

    rng = np.random.default_rng(seed)
    reference = _categorical_profile(rng, 50_000, 10, RARE_SHARES)
    flagged = untested = 0
    for _ in range(windows):
        monitor = DriftMonitor(reference, window_rows=rows)
        monitor.ingest(rng.choice(20, size=(rows, 10), p=RARE_SHARES).astype(np.float64))
        report = monitor.report()["features"]
        flagged += any(f["drifted"] for f in report)
        untested += sum(not f.get("tested", True) for f in report)
    return flagged / windows, untested / (10 * windows)


def small_references(reference_rows_count: int, rows: int, references: int, windows: int,
                     seed: int = 0) -> tuple[float, float]:
    """References of `reference_rows_count` rows (33 features), each against `windows` windows
    of `rows` rows without drift: the share of windows with any feature flagged, and the
    share of references flagged in at least half of their windows (a page that never stops)."""
    from gateway.observability.drift.monitor import DriftMonitor

    rng = np.random.default_rng(seed)
    flagged = persistent = 0
    for _ in range(references):
        reference = profile(reference_rows(rng, reference_rows_count))
        hits = 0
        for _ in range(windows):
            monitor = DriftMonitor(reference, window_rows=rows)
            monitor.ingest(reference_rows(rng, rows))
            hits += any(f["drifted"] for f in monitor.report()["features"])
        flagged += hits
        persistent += hits * 2 >= windows
    return flagged / (references * windows), persistent / references


def point_mass(zeros: float, rows: int, windows: int, deciles: bool,
               seed: int = 0) -> float:
    """A column 93% zeros (the rest exponential), profiled from 5,000 rows by `build_profile`
    or (`deciles`) by plain NumPy deciles, every edge 0; the share of windows of `rows` rows,
    `zeros` of them zero, that flag it."""
    from gateway.observability.drift.monitor import DriftMonitor
    from gateway.observability.drift.profile import numeric_profile

    rng = np.random.default_rng(seed)

    def column(n: int, share: float) -> np.ndarray:
        return np.where(rng.random(n) < share, 0.0, rng.exponential(1.0, n))

    values = column(5000, 0.93)
    if deciles:
        edges = np.quantile(values, np.linspace(0, 1, BINS + 1)[1:-1])
        counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=BINS)
        feature = {"name": "z", "kind": "numeric", "edges": [float(e) for e in edges],
                   "counts": [int(c) for c in counts], "nan": 0}
    else:
        feature = numeric_profile("z", values)
    reference = {"rows": 5000, "features": [feature]}
    flagged = 0
    for _ in range(windows):
        monitor = DriftMonitor(reference, window_rows=rows)
        monitor.ingest(column(rows, zeros)[:, None])
        flagged += monitor.report()["features"][0]["drifted"]
    return flagged / windows
