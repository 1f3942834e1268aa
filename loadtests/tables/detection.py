"""Table 10: what the drift flag catches, on labelled scenarios (loadtests/drift_scenarios.py),
and how it holds in the regimes real models live in, counted in pages
(loadtests/drift_regimes.py)."""

from __future__ import annotations

import logging

import numpy as np

from loadtests.drift_regimes import (
    SHIPPED_RULE,
    alert_runs,
    point_mass,
    rare_categories,
    small_references,
)
from loadtests.drift_scenarios import SCENARIOS, class_mix, detection, profile, reference_rows
from loadtests.harness import Context, Table

NO_DRIFT_WINDOWS = 200
DRIFT_WINDOWS = 20
RULES = {"1% (default)": {"false_alarm_rate": 0.01}, "5%": {"false_alarm_rate": 0.05},
         "PSI >= 0.2 (before)": {"false_alarm_rate": 1.0, "psi_floor": 0.2}}
"""The flag at two false-alarm rates, and the old rule: every p-value passes at rate 1, so
only the PSI floor decides."""
ALERTS = {"for: 15m (before)": (15, False), "shipped, 30 min": SHIPPED_RULE,
          "shipped, 6 h (below 2.8 req/s)": (360, True)}


def run(ctx: Context) -> list[Table]:
    reference = profile(reference_rows(np.random.default_rng(123), 50_000))
    quiet = logging.getLogger("gateway.drift")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # the small references' load warnings, once per window here
    try:
        # The smoke run (`--rounds 1`, make test) simulates two hours, fewer references and
        # fewer drifted windows, so that the test suite keeps its budget; `make bench` runs the
        # full month.
        small = ctx.args.rounds <= 1
        return [_scenarios(reference, 5 if small else DRIFT_WINDOWS),
                _regimes(20 if small else 200), _pages(reference, 120 if small else 30 * 1440)]
    finally:
        quiet.setLevel(level)


def _scenarios(reference: dict[str, object], drift_windows: int = DRIFT_WINDOWS) -> Table:
    rows = []
    for name, scenario in SCENARIOS.items():
        windows = NO_DRIFT_WINDOWS if name.startswith("no drift") else drift_windows
        row = [name]
        for rule in RULES.values():
            row += [f"{detection(reference, scenario, size, windows, seed=size, **rule):.2f}"
                    for size in (1000, 5000)]
        rows.append(row)
    for malignant in (0.37, 0.6):
        row = [f"real data, {malignant:.0%} malignant (training 37%)"]
        for rule in RULES.values():
            row += [f"{class_mix(malignant, size, drift_windows, seed=size, **rule):.2f}"
                    for size in (1000, 5000)]
        rows.append(row)
    header = ["scenario (share of changed features flagged)"]
    for label in RULES:
        header += [f"{label} @1,000", "@5,000"]
    return Table(
        f"10. drift detection: a 50,000-row reference of 33 features (six distributions, three "
        f"categoricals); windows of 1,000 and 5,000 rows, {drift_windows} per scenario and "
        f"{NO_DRIFT_WINDOWS} without drift (its row: the share of windows with any feature "
        "flagged); the flag at false-alarm rates of 1% and 5% per window, and the PSI rule it "
        "replaced; then real breast-cancer rows resampled at the training class mix and at "
        "60% malignant (the share of the 30 features flagged)", header, rows)


def _regimes(references: int = 200) -> Table:
    rows = []
    for size in (50, 100, 1000):
        flagged, untested = rare_categories(size, NO_DRIFT_WINDOWS, seed=size)
        rows.append([f"20 uneven categories × 10 columns, {size}-row windows, no drift",
                     f"{flagged:.3f}", f"{untested:.0%} of columns not tested"])
    flagged, persistent = small_references(200, 5000, references=references, windows=10)
    rows.append(["200-row references (33 features), 5,000-row windows, no drift",
                 f"{flagged:.3f}", f"{persistent:.1%} of references flag half their windows"])
    for deciles in (False, True):
        built = "plain deciles (every edge 0)" if deciles else "build_profile"
        for zeros in (0.93, 0.85, 0.5):
            share = point_mass(zeros, 1000, 100, deciles, seed=int(zeros * 100))
            rows.append([f"93% zeros profiled by {built}, windows {zeros:.0%} zeros",
                         f"{share:.2f}", "no drift" if zeros == 0.93 else "drift"])
    return Table(
        "10b. drift flag by regime at the default 1%: the share of windows with any column "
        f"flagged ({NO_DRIFT_WINDOWS} windows; {references} references × 10 windows; point "
        "masses: "
        "100 windows of 1,000 rows against a 5,000-row reference)",
        ["regime", "windows flagged", "note"], rows)


def _pages(reference: dict[str, object], minutes: int = 30 * 1440) -> Table:
    rows = []
    span = f"{minutes // 1440} days" if minutes >= 1440 else f"{minutes // 60} hours"
    for rate in (1, 10, 100):
        fired = alert_runs(reference, rate * 60, minutes, ALERTS, seed=rate)
        rows.append([f"no drift, {rate} req/s, {span} (pages)"]
                    + [str(len(fired[name])) for name in ALERTS])
    for rate in (10, 100):
        for name in ("mean shift 0.25 sd", "a new category takes 2%"):
            fired = alert_runs(reference, rate * 60, 120, ALERTS, seed=rate,
                               scenario=SCENARIOS[name])
            rows.append([f"{name}, {rate} req/s (minutes to page)"]
                        + [str(fired[n][0] + 1) if fired[n] else "none in 2 h" for n in ALERTS])
    return Table(
        "10c. drift pages: the 50,000-row reference of table 10, a stream read once a minute as "
        f"Prometheus evaluates rules; false pages of GatewayFeatureDrift in {span} simulated, "
        "and minutes from the start of a drift to its page, for `for: 15m` (the rule before) "
        "and the shipped rule (the flag held while a full 5,000-row window of new rows came in)",
        ["stream", *ALERTS], rows)
