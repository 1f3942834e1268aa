"""Drift monitor: reference profiles, sliding windows of histograms, PSI / JS / KS, and the
calibrated `drifted` flag (README "Drift monitor"; the rule is `DriftRule`).

Usable without a server:

    from gateway.observability.drift import DriftMonitor
    monitor = DriftMonitor.from_reference_file("models/breast-cancer/1/reference.json")
    monitor.ingest(features, {"probabilities": probabilities, "label": labels})
    print(monitor.report())
"""

from gateway.observability.drift.monitor import DriftMonitor
from gateway.observability.drift.stats import DriftRule

__all__ = ["DriftMonitor", "DriftRule"]
