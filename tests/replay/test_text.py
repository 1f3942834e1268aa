"""`--min-agreement`'s verdict and the report's words: rows that failed or were redacted are not
agreeing rows, no row replayed fails any bar, and a redacted capture says so plainly."""

from __future__ import annotations

import math
from typing import Any

from gateway.replay.text import table, verdict


def report(rows: int, agreeing: int, failed: int = 0, redacted: int = 0) -> dict[str, Any]:
    captured = rows + failed + redacted
    return {
        "model": "m", "version": 3, "target": "in-process", "files": 1, "missing_files": 0,
        "lines": captured, "corrupt_lines": 0, "feedback_rows": 0,
        "redacted_requests": redacted, "redacted_rows": redacted,
        "redacted_inputs": {"input": redacted} if redacted else {},
        "failed_requests": failed, "failed_rows": failed,
        "failures": [f"{failed} x 503 overloaded"] if failed else [],
        "rows": rows, "agreeing_rows": agreeing,
        "agreement": agreeing / captured if captured else math.nan,
        "served_versions": [{
            "version": 2, "requests": rows, "rows": rows, "failed_rows": failed,
            "redacted_rows": redacted, "agreement": agreeing / captured if captured else math.nan,
            "disagreeing_rows": rows - agreeing, "labelled_rows": 0, "measure": None,
            "served": None, "replayed": None,
            "latency_ms": {"p50": 0.1, "p99": 0.2} if rows else {"p50": math.nan,
                                                                  "p99": math.nan}}],
    }


def test_without_a_bar_every_replay_passes() -> None:
    assert verdict(report(0, 0, redacted=5), None) == (True, None)


def test_failed_rows_count_against_agreement_and_the_reason_says_how_many() -> None:
    passed, reason = verdict(report(154, 154, failed=1385), 0.95)
    assert not passed and reason is not None
    assert "is below --min-agreement 95.0000%" in reason
    assert "of 1539 captured rows, 0 were redacted and 1385 failed" in reason
    assert verdict(report(100, 99), 0.95) == (True, None)


def test_no_row_replayed_fails_any_bar() -> None:
    passed, reason = verdict(report(0, 0, redacted=569), 0.0)
    assert not passed and reason is not None
    assert reason.startswith("no row was replayed (of 569 captured rows, 569 were redacted")


def test_a_redacted_capture_says_it_cannot_be_replayed_and_which_inputs() -> None:
    text = table(report(0, 0, redacted=4))
    assert "agreement 0.0000% of 4 captured rows (4 not replayed)" in text
    assert ("4 requests (4 rows) cannot be replayed: their inputs were redacted when captured "
            "('input'; capture.redact in gateway.yaml)") in text
