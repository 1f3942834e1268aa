"""The inference pipeline in-process, with real onnxruntime sessions and no server: decisions by
pin, flag and split, serving, validation, drift and shadows."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import orjson
import pytest

from gateway.errors import BadRequest, NotFound
from gateway.inference import InferencePipeline
from gateway.lifecycle import Lifecycle
from gateway.observability.drift.service import DriftService
from gateway.observability.metrics import GatewayMetrics
from gateway.observability.shadow import ShadowRunner, ShadowVersion
from gateway.observability.tracing import NO_TRACE
from gateway.protocol.request import InferRequest, decode_request
from gateway.routing.decide import FLAG, PINNED, SPLIT
from gateway.routing.live import LivePolicy
from gateway.routing.policy import needed_versions, parse_policy
from gateway.runtime.registry import Registry
from gateway.runtime.repository import scan_repository
from gateway.settings import DriftSettings, Settings
from tests.conftest import MODEL, MODELS, sample_rows

POLICY = """
models:
  breast-cancer:
    traffic: [{version: 1, weight: 100}, {version: 2, weight: 0}]
    flags: [{name: beta, header: x-beta, values: ["1"], version: 2}]
    shadow: [{version: 3, percent: 100}]
"""


def infer_request(rows: np.ndarray) -> InferRequest:
    body = orjson.dumps({"inputs": [{"name": "input", "shape": list(rows.shape),
                                     "datatype": "FP32", "data": rows.tolist()}]})
    return decode_request(body, None, 1 << 20)


def direct(version: int, rows: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(MODELS / MODEL / str(version) / "model.onnx"))
    return np.asarray(session.run(["label"], {"input": rows})[0])


def test_decide_and_serve_in_process(tmp_path: Path) -> None:
    async def scenario() -> None:
        settings = Settings(model_repository=MODELS, drift=DriftSettings(report_interval_s=0.05))
        repository = scan_repository(MODELS)
        policy = parse_policy(POLICY, repository)
        registry = Registry(repository)
        lifecycle = Lifecycle(settings, registry)
        lifecycle.load(needed_versions(policy, repository))
        lifecycle.start_batchers()
        live = LivePolicy(tmp_path / "routing.yaml", MODELS, policy, lifecycle, GatewayMetrics())
        drift = DriftService(settings.drift)
        drift.sync({(d.entry.model, d.entry.version): (d.entry.reference_file, d.session.inputs)
                    for d in registry.all() if d.session is not None})
        mirrored: list[tuple[int, str]] = []

        def target(model: str, version: int) -> ShadowVersion:
            session = registry.versions_of(model)[version].session
            assert session is not None
            return ShadowVersion(session.run, "label", session.batchable)

        shadow = ShadowRunner(target, lambda m, v, result, n: mirrored.extend([(v, result)] * n))
        shadow.start()
        drift.start()
        pipeline = InferencePipeline(registry, settings, live, drift, shadow)
        rows = sample_rows(3)
        try:
            assert pipeline.input_names(MODEL) == frozenset({"input"})
            flagged = pipeline.decide(MODEL, None, {"x-beta": "1"}, {})
            assert (flagged.version, flagged.route, flagged.version_label) == (2, FLAG, "2")
            served = await pipeline.serve(flagged, infer_request(rows), NO_TRACE)
            np.testing.assert_array_equal(served.results["label"], direct(2, rows))
            split = pipeline.decide(MODEL, None, {}, {})
            assert (split.version, split.route) == (1, SPLIT)
            await pipeline.serve(split, infer_request(rows), NO_TRACE)
            pinned = pipeline.decide(MODEL, 3, {}, {})
            assert (pinned.version, pinned.route) == (3, PINNED)
            served = await pipeline.serve(pinned, infer_request(rows), NO_TRACE)
            np.testing.assert_array_equal(served.results["label"], direct(3, rows))
            # A pinned number the repository does not have: no metric series, a 404.
            missing = pipeline.decide(MODEL, 9, {}, {})
            assert missing.version_label == "_none"
            with pytest.raises(NotFound, match="has no version 9"):
                await pipeline.serve(missing, infer_request(rows), NO_TRACE)
            with pytest.raises(NotFound, match="unknown model"):
                pipeline.decide("nope", None, {}, {})
            # Validation refuses before the batcher; the version is held no longer.
            with pytest.raises(BadRequest, match="has shape"):
                await pipeline.serve(split, infer_request(rows[:, :5]), NO_TRACE)
            assert registry.inflight_by_model() == {MODEL: 0}
            # Shadows: the two routed requests were mirrored to version 3, the pinned one not.
            await _until(lambda: len(mirrored) == 2)
            assert [v for v, _ in mirrored] == [3, 3]
            # Drift saw every served row, by the version that served it.
            await _until(lambda: drift_rows(drift, 1) == 3 and drift_rows(drift, 2) == 3)
        finally:
            await shadow.stop()
            await drift.stop()
            await lifecycle.stop()

    asyncio.run(scenario())


def drift_rows(drift: DriftService, version: int) -> int:
    tracked = {(t.model, t.version): t for t in drift.tracked_reports()}[(MODEL, version)]
    return 0 if tracked.report is None else int(tracked.report["window_rows"])


async def _until(condition: object, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "not within the time allowed"
        await asyncio.sleep(0.02)

