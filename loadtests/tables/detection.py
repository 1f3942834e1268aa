"""Table 10: what the drift flag catches, on labelled scenarios (loadtests/drift_scenarios.py)."""

from __future__ import annotations

import numpy as np

from loadtests.drift_scenarios import SCENARIOS, class_mix, detection, profile, reference_rows
from loadtests.harness import Context, Table

NO_DRIFT_WINDOWS = 200
DRIFT_WINDOWS = 20
RULES = {"1% (default)": {"false_alarm_rate": 0.01}, "5%": {"false_alarm_rate": 0.05},
         "PSI >= 0.2 (before)": {"false_alarm_rate": 1.0, "psi_floor": 0.2}}
"""The flag at two false-alarm rates, and the old rule: every p-value passes at rate 1, so
only the PSI floor decides."""


def run(ctx: Context) -> list[Table]:
    reference = profile(reference_rows(np.random.default_rng(123), 50_000))
    rows = []
    for name, scenario in SCENARIOS.items():
        windows = NO_DRIFT_WINDOWS if name.startswith("no drift") else DRIFT_WINDOWS
        row = [name]
        for rule in RULES.values():
            row += [f"{detection(reference, scenario, size, windows, seed=size, **rule):.2f}"
                    for size in (1000, 5000)]
        rows.append(row)
    for malignant in (0.37, 0.6):
        row = [f"real data, {malignant:.0%} malignant (training 37%)"]
        for rule in RULES.values():
            row += [f"{class_mix(malignant, size, DRIFT_WINDOWS, seed=size, **rule):.2f}"
                    for size in (1000, 5000)]
        rows.append(row)
    header = ["scenario (share of changed features flagged)"]
    for label in RULES:
        header += [f"{label} @1,000", "@5,000"]
    return [Table(
        f"10. drift detection: a 50,000-row reference of 33 features (six distributions, three "
        f"categoricals); windows of 1,000 and 5,000 rows, {DRIFT_WINDOWS} per scenario and "
        f"{NO_DRIFT_WINDOWS} without drift (its row: the share of windows with any feature "
        "flagged); the flag at false-alarm rates of 1% and 5% per window, and the PSI rule it "
        "replaced; then real breast-cancer rows resampled at the training class mix and at "
        "60% malignant (the share of the 30 features flagged)", header, rows)]
