from __future__ import annotations

import asyncio

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest

from gateway.observability.drift.service import DriftService
from gateway.settings import DriftSettings
from gateway.tensors import TensorSpec
from tests.conftest import MODEL, MODELS, sample_rows

INPUTS = (TensorSpec("input", "FP32", (-1, 30)),)
REFERENCE = MODELS / MODEL / "1" / "reference.json"


def test_observed_rows_are_folded_off_the_request_path_and_reported() -> None:
    async def main() -> dict[str, object] | None:
        service = DriftService(DriftSettings(report_interval_s=0.05))
        service.track(MODEL, 1, REFERENCE, INPUTS)
        service.start()
        rows = sample_rows(40)
        service.observe(MODEL, 1, {"input": rows}, {"label": np.zeros(40, np.int64)})
        assert service.tracked_reports()[0].buffered_rows == 40  # only queued so far
        report = await service.report(MODEL, 1)  # drains first: no waiting for the consumer
        assert service.tracked_reports()[0].buffered_rows == 0
        await service.stop()
        return report

    report = asyncio.run(main())
    assert report is not None and report["window_rows"] == 40 and report["dropped_rows"] == 0


def test_a_full_buffer_drops_and_counts() -> None:
    service = DriftService(DriftSettings(max_buffer_rows=50))
    service.track(MODEL, 1, REFERENCE, INPUTS)
    for _ in range(3):
        service.observe(MODEL, 1, {"input": sample_rows(20)}, {})
    tracked = service.tracked_reports()[0]
    assert tracked.buffered_rows == 40 and tracked.dropped_rows == 20


def test_disabled_or_unusable_profiles_are_not_tracked(tmp_path: object) -> None:
    off = DriftService(DriftSettings(enabled=False))
    off.track(MODEL, 1, REFERENCE, INPUTS)
    assert not off.tracked(MODEL, 1)
    service = DriftService(DriftSettings())
    service.track(MODEL, 1, REFERENCE, (TensorSpec("input", "FP32", (-1, 29)),))
    service.track(MODEL, 2, MODELS / MODEL / "2" / "missing.json", INPUTS)
    assert not service.tracked(MODEL, 1) and not service.tracked(MODEL, 2)


def test_a_failing_fold_is_logged_and_the_service_keeps_going() -> None:
    async def main() -> int:
        service = DriftService(DriftSettings(report_interval_s=0.05))
        registry = CollectorRegistry()
        registry.register(service.collector())
        service.track(MODEL, 1, REFERENCE, INPUTS)
        service.start()
        bad = np.full((5, 30), "text", dtype=object)  # not numbers: folding it raises
        service.observe(MODEL, 1, {"input": bad}, {})
        await service.report(MODEL, 1)  # folds the bad gathering, which fails
        service.observe(MODEL, 1, {"input": sample_rows(7)}, {})
        report = await service.report(MODEL, 1)
        text = generate_latest(registry).decode()
        await service.stop()
        assert report is not None
        assert f'gateway_drift_failed_folds_total{{model="{MODEL}",version="1"}} 1.0' in text
        return int(report["window_rows"])  # type: ignore[call-overload]

    assert asyncio.run(main()) == 7
