"""Graceful shutdown against the real server: on SIGTERM the gateway stops accepting, answers
every request it already accepted (those queued for a batch included), exports their spans, and
exits; with more work than the grace period allows, it still exits within the grace period."""

from __future__ import annotations

import http.client
import signal
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import ConfigWriter, add_model, binary_body, slow_model
from tests.integration.conftest import OtlpCollector, Start
from tests.integration.server import GatewayProcess

ROWS = 8000


def slow_gateway(model_repo: Path, write_config: ConfigWriter, start: Start, grace_s: float,
                 env: dict[str, str] | None = None) -> GatewayProcess:
    add_model(model_repo, "slow", 1, slow_model(layers=400))
    config = write_config(model_repo, routing={"models": {}},
                          server={"shutdown_grace_s": grace_s},
                          batching={"max_queue_size": 64, "execution": "thread"},
                          drift={"enabled": False})
    return start(config, env=env)


def send_all(server: GatewayProcess, n: int) -> tuple[list[object], list[threading.Thread]]:
    """n concurrent requests on their own connections; each result is a status or an error."""
    body, headers = binary_body(ROWS)
    results: list[object] = [None] * n

    def one(i: int) -> None:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
            conn.request("POST", "/v2/models/slow/infer", body, headers)
            response = conn.getresponse()
            response.read()
            results[i] = response.status
        except OSError as exc:
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    return results, threads


def wait_for_inflight(server: GatewayProcess, n: int) -> None:
    deadline = time.monotonic() + 60  # a minute: a loaded machine sends megabytes slowly
    while time.monotonic() < deadline:
        metrics = server.request("GET", "/metrics").body.decode()
        line = next((x for x in metrics.splitlines()
                     if x.startswith('gateway_inflight_requests{model="slow"}')), "")
        if line and float(line.rsplit(" ", 1)[1]) >= n:
            return
        time.sleep(0.02)
    pytest.fail("the requests never were in flight together")


def stops_accepting_within_s(server: GatewayProcess, limit_s: float) -> None:
    """Uvicorn closes its listening socket at its next tick (0.1 s) after SIGTERM, later on a
    loaded machine: poll until a new request fails rather than trying once after a sleep."""
    deadline = time.monotonic() + limit_s
    while True:
        try:
            server.request("GET", "/v2/health/live", timeout_s=2)
        except OSError:
            return
        assert time.monotonic() < deadline, f"still accepting {limit_s} s after SIGTERM"
        time.sleep(0.05)


def test_sigterm_answers_every_accepted_request_and_flushes_their_spans(
        model_repo: Path, write_config: ConfigWriter, start: Start,
        collector: OtlpCollector) -> None:
    server = slow_gateway(model_repo, write_config, start, grace_s=60, env={
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.server_address[1]}",
        "OTEL_BSP_SCHEDULE_DELAY": "600000"})  # spans leave only when the shutdown flushes
    results, threads = send_all(server, 6)
    wait_for_inflight(server, 6)  # one running, five queued for the next batches
    sigterm_at = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    stops_accepting_within_s(server, 10)
    for thread in threads:
        thread.join()
    assert results == [200] * 6
    server.process.wait(timeout=60)
    took = time.monotonic() - sigterm_at
    log = server.log()
    assert "Waiting for connections to close" in log or "Shutting down" in log
    assert "Application shutdown complete" in log
    spans = [span for _, span in collector.spans if span.name.startswith("POST")]
    assert len(spans) == 6, f"{len(spans)} request spans exported at shutdown ({took:.1f} s)"


PAST_GRACE_REQUESTS = 60
"""Requests in flight at SIGTERM in the grace-period test: 15 s of work on an idle two-core
machine (a quarter of a second each, one at a time), 30 times the shortest grace tested."""


@pytest.mark.parametrize("grace_s", [1, 0.5])  # 0.5 once became int 0: "wait forever"
def test_past_the_grace_period_the_gateway_exits_anyway(
        model_repo: Path, write_config: ConfigWriter, start: Start, grace_s: float) -> None:
    # What this measures holds however loaded the machine is: every accepted request gets an
    # HTTP answer (200 if its inference ended within the grace, else uvicorn's 500 at the
    # cut-off), and some are cut off, which a gateway that ignored the grace (0.5 read as 0,
    # "wait forever") would not do: it would answer all of them. How many end within the
    # grace depends on the machine's load (on two busy cores, none did within 0.5 s), so no
    # count of 200s is asserted; SIGTERM with a long grace answering them all is the test
    # above. The exit bound leaves 10 s for the inference running at the cut-off (0.25 s
    # here, 1 s on two busy cores) and teardown, less than the work left.
    server = slow_gateway(model_repo, write_config, start, grace_s=grace_s)
    results, threads = send_all(server, PAST_GRACE_REQUESTS)
    wait_for_inflight(server, PAST_GRACE_REQUESTS)  # all accepted: each one is owed an answer
    sigterm_at = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    server.process.wait(timeout=60)
    took = time.monotonic() - sigterm_at
    for thread in threads:
        thread.join()
    answered = results.count(200)
    assert answered + results.count(500) == len(results), results
    assert answered < len(results), "the gateway answered every request: the grace was ignored"
    assert took < grace_s + 10, f"exited {took:.1f} s after SIGTERM, grace {grace_s} s, " \
        f"{answered} of {len(results)} answered"
    assert "timeout graceful shutdown exceeded" in server.log()
