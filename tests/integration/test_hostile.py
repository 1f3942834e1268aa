"""What the worst caller sends, against one real gateway (SPEC 3 and 6): size claims that lie,
strings where numbers belong, huge names and headers, uploads that stall or hang up, versions
that do not exist. Each gets a clear 4xx in the V2 shape, bounded memory, bounded metric series,
and the requests around it are answered."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import threading
import time
from pathlib import Path

import orjson
import pytest

from tests.conftest import MODEL, ConfigWriter, sample_rows
from tests.integration.conftest import Start
from tests.integration.server import GatewayProcess, Reply
from tests.integration.test_errors import assert_error, infer_body

INFER = f"/v2/models/{MODEL}/infer"
TOKEN = "hostile-test-token"


def rss_bytes(server: GatewayProcess) -> int:
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    line = next(x for x in status.splitlines() if x.startswith("VmHWM:"))  # peak RSS
    return int(line.split()[1]) * 1024


def metric_lines(server: GatewayProcess, prefix: str) -> list[str]:
    text = server.request("GET", "/metrics").body.decode()
    return [line for line in text.splitlines() if line.startswith(prefix)]


def raw(server: GatewayProcess, data: bytes, read_s: float = 10.0) -> bytes:
    """Send raw bytes and read until the server closes or `read_s` passes."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=read_s) as sock:
        with contextlib.suppress(OSError):  # the server may answer and close before it has
            sock.sendall(data)  # read it all
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except OSError:
            pass
    return b"".join(chunks)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> GatewayProcess:
    from tests.conftest import MODELS

    folder = tmp_path_factory.mktemp("hostile")
    shutil.copytree(MODELS, folder / "models", ignore=shutil.ignore_patterns("*.py"))
    (folder / "routing.yaml").write_text(
        "models: {breast-cancer: {traffic: [{version: 1, weight: 0}, {version: 2, weight: 100}]}}")
    config = folder / "gateway.yaml"
    config.write_text(json.dumps({"model_repository": "models", "routing": "routing.yaml",
                                  "execution_provider": "cpu",
                                  "limits": {"read_timeout_s": 1.0}}))
    server = GatewayProcess(config, folder)
    yield server
    server.stop()


def test_strings_among_numbers_cost_no_memory(hostile: GatewayProcess) -> None:
    """One long string among short ones: NumPy's fixed-width strings made 45 KB cost 370 MB."""
    before = rss_bytes(hostile)
    data: list[object] = ["x" * 30_000] + ["1"] * 4_999
    body = orjson.dumps({"inputs": [{"name": "input", "shape": [5000], "datatype": "FP32",
                                     "data": data}]})
    assert len(body) < 60_000
    for _ in range(3):
        assert_error(hostile.request("POST", INFER, body), 400, "FP32 data must be numbers")
    big = orjson.dumps({"inputs": [{"name": "input", "shape": [200_000], "datatype": "FP32",
                                    "data": ["y" * 6_000_000] + ["1"] * 199_999}]})
    assert_error(hostile.request("POST", INFER, big), 400, "must be numbers")  # was a 500
    text = orjson.dumps({"inputs": [{"name": "input", "shape": [5000], "datatype": "BYTES",
                                     "data": data}]})
    assert_error(hostile.request("POST", INFER, text), 400, "datatype BYTES")
    grown = rss_bytes(hostile) - before
    assert grown < 64 * 1024 * 1024, f"peak RSS grew {grown / 2**20:.0f} MiB"
    assert hostile.request("POST", INFER, infer_body(sample_rows(1))).status == 200


@pytest.mark.parametrize(("data", "message"), [
    ([1.5, "2"], "FP32 data must be numbers"),
    ([1.5, None], "FP32 data must be numbers"),
    ([1.5, {"a": 1}], "FP32 data must be numbers"),
    ([[1.5], 2.0], "ragged"),
    ([[1.5, 2.0], [3.0]], "ragged"),
])
def test_data_of_the_wrong_kind_is_a_400(hostile: GatewayProcess, data: list[object],
                                         message: str) -> None:
    body = orjson.dumps({"inputs": [{"name": "input", "shape": [2], "datatype": "FP32",
                                     "data": data}]})
    assert_error(hostile.request("POST", INFER, body), 400, message)


def test_many_inputs_are_refused_at_the_first_unknown_name(hostile: GatewayProcess) -> None:
    """120,000 tiny inputs: refused at the first name the model does not have, before the rest
    is decoded (a malformed second input is never looked at)."""
    inputs = [{"name": "nope0", "shape": [1], "datatype": "FP32", "data": [1.0]},
              {"name": "bad", "shape": [1], "datatype": "NOT-A-TYPE", "data": [1.0]}]
    inputs += [{"name": f"n{i}", "shape": [1], "datatype": "FP32", "data": [1]}
               for i in range(120_000)]
    reply = hostile.request("POST", INFER, orjson.dumps({"inputs": inputs}))
    assert_error(reply, 400, "unknown input 'nope0'; the model takes 'input'")


def test_echoed_names_are_cut_short(hostile: GatewayProcess) -> None:
    long_name = "n" * 1_000_000
    replies = [
        hostile.request("POST", INFER, orjson.dumps({"inputs": [
            {"name": long_name, "shape": [1, 30], "datatype": "FP32", "data": [0.0] * 30}]})),
        hostile.request("POST", INFER, infer_body(sample_rows(1),
                                                  outputs=[{"name": long_name}])),
        hostile.request("POST", f"/v2/models/{MODEL}/feedback", orjson.dumps(
            {"feedback": [{"label": 1, long_name: 1}]})),
        hostile.request("POST", f"/v2/models/{long_name[:5000]}/infer", b"{}"),
    ]
    for reply in replies:
        assert reply.status in (400, 404), reply.body[:200]
        assert len(reply.body) < 1000, len(reply.body)
        assert "nnnn" in reply.json()["error"]  # still says which


def test_a_version_that_does_not_exist_gets_no_metric_series(hostile: GatewayProcess) -> None:
    for version in ("9999999999", "123456789012345678", "4"):
        reply = hostile.request("POST", f"/v2/models/{MODEL}/versions/{version}/infer",
                                infer_body(sample_rows(1)))
        assert_error(reply, 404, "has no version")
    series = metric_lines(hostile, "gateway_requests_total{")
    assert not [s for s in series if "9999999999" in s or 'version="4"' in s], series
    assert any('version="_none"' in s and 'code="404"' in s for s in series), series
    # Refused before its body is read: the answer does not wait for 8 MB that never come.
    answer = raw(hostile, f"POST /v2/models/{MODEL}/versions/7/infer HTTP/1.1\r\nHost: x\r\n"
                          "Content-Length: 8000000\r\n\r\n".encode(), read_s=0.5)
    assert answer.startswith(b"HTTP/1.1 404 "), answer[:200]


def test_a_client_that_hangs_up_mid_body_is_a_499_not_a_500(hostile: GatewayProcess) -> None:
    body = infer_body(sample_rows(50))
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", hostile.port)) as sock:
            sock.sendall(f"POST {INFER} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                         f"\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body[:1000])
            time.sleep(0.1)
    deadline = time.monotonic() + 5
    sample = f'gateway_requests_total{{code="499",model="{MODEL}",route="split",version="_none"}}'
    while hostile.metric(sample) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert hostile.metric(sample) == 3
    assert not [s for s in metric_lines(hostile, "gateway_requests_total{")
                if 'code="500"' in s]
    assert "Traceback" not in hostile.log() and " ERROR " not in hostile.log()


def test_oversized_headers_are_refused_with_bounded_memory(hostile: GatewayProcess) -> None:
    before = rss_bytes(hostile)
    answer = raw(hostile, b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nx-big: "
                 + b"a" * (32 * 1024 * 1024) + b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert b"limits.max_header_bytes" in answer
    many = b"".join(b"x-h%d: %s\r\n" % (i, b"b" * 100) for i in range(2000))
    assert raw(hostile, b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n"
               ).startswith(b"HTTP/1.1 431 ")
    grown = rss_bytes(hostile) - before
    assert grown < 16 * 1024 * 1024, f"peak RSS grew {grown / 2**20:.0f} MiB"
    # A header of ordinary size (a long JWT) is fine.
    reply = hostile.request("GET", "/v2/health/live", headers={"Authorization": "x" * 8000})
    assert reply.status == 200


def test_a_stalled_upload_is_timed_out_and_others_are_served(hostile: GatewayProcess) -> None:
    body = infer_body(sample_rows(200))
    head = (f"POST {INFER} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    answers: list[bytes] = []
    started = time.monotonic()
    stalled = [threading.Thread(target=lambda: answers.append(raw(hostile, head + body[:5000])))
               for _ in range(5)]
    for thread in stalled:
        thread.start()
    for _ in range(10):  # served meanwhile
        assert hostile.request("POST", INFER, infer_body(sample_rows(1))).status == 200
    for thread in stalled:
        thread.join()
    took = time.monotonic() - started
    assert len(answers) == 5 and took < 5, took  # limits.read_timeout_s is 1 here
    for answer in answers:
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert b"limits.read_timeout_s" in answer
    # Stalled in the headers, too.
    assert raw(hostile, b"POST /v2 HTTP/1.1\r\nHost: x\r\nx-half: ").startswith(b"HTTP/1.1 408 ")
    sample = f'gateway_requests_total{{code="408",model="{MODEL}",route="split",version="_none"}}'
    deadline = time.monotonic() + 3
    while hostile.metric(sample) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert hostile.metric(sample) == 5


def test_a_request_that_is_not_http_gets_a_v2_400(hostile: GatewayProcess) -> None:
    # A control character in a header value: httptools refuses it before the app sees it.
    answer = raw(hostile, b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nx-request-id: a\x01b"
                          b"\r\n\r\n")
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert b"content-type: application/json" in head.lower()
    assert "not valid HTTP/1.1" in json.loads(payload)["error"]
    # A bad chunk in the middle of a body: the request is counted a 400, not a 499 or a 500.
    sample = f'gateway_requests_total{{code="400",model="{MODEL}",route="split",version="_none"}}'
    before = hostile.metric(sample)
    answer = raw(hostile, f"POST {INFER} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
                          "\r\n\r\n5\r\n{\"inp\r\nzz\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    deadline = time.monotonic() + 3
    while hostile.metric(sample) == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert hostile.metric(sample) == before + 1
    assert hostile.request("POST", INFER, infer_body(sample_rows(1))).status == 200


def test_connections_that_never_send_are_closed(hostile: GatewayProcess) -> None:
    silent = [socket.create_connection(("127.0.0.1", hostile.port)) for _ in range(200)]
    try:
        time.sleep(6.5)  # uvicorn's keep-alive timeout is 5 s
        for sock in silent:
            sock.settimeout(1)
            assert sock.recv(1) == b""  # closed by the server, no answer
    finally:
        for sock in silent:
            sock.close()
    assert hostile.request("POST", INFER, infer_body(sample_rows(1))).status == 200


def test_a_prediction_that_is_not_a_class_is_a_400(hostile: GatewayProcess) -> None:
    path = f"/v2/models/{MODEL}/feedback"
    before = hostile.metric(f'gateway_feedback_rows_total{{model="{MODEL}",version="2"}}')
    reply = hostile.request("POST", path, orjson.dumps(
        {"feedback": [{"label": 1, "version": 2, "prediction": 1},
                      {"label": 0.5, "version": 2, "prediction": 0.5}]}))
    assert_error(reply, 400, "feedback[1]: 'prediction' must be one of the classes [0, 1]")
    after = hostile.metric(f'gateway_feedback_rows_total{{model="{MODEL}",version="2"}}')
    assert after == before  # the batch is taken whole or not at all
    ok = hostile.request("POST", path, orjson.dumps(
        {"feedback": [{"label": 0.5, "version": 2, "prediction": 1}]}))  # an unseen label
    assert ok.status == 200 and ok.json() == {"accepted": 1}


def test_a_model_removed_while_its_body_arrives_is_a_404(
        model_repo: Path, write_config: ConfigWriter, start: Start) -> None:
    shutil.copytree(model_repo / MODEL, model_repo / "extra")
    server = start(write_config(model_repo), env={"GATEWAY_ADMIN_TOKEN": TOKEN})
    body = infer_body(sample_rows(10))
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(f"POST /v2/models/extra/infer HTTP/1.1\r\nHost: x\r\nContent-Length: "
                     f"{len(body)}\r\nx-request-id: removed-1\r\n\r\n".encode() + body[:100])
        time.sleep(0.2)
        shutil.rmtree(model_repo / "extra")
        reload = server.request("POST", "/admin/reload", headers={
            "Authorization": f"Bearer {TOKEN}"})
        assert reload.status == 200, reload.body
        sock.sendall(body[100:])
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 404 "), answer[:300]
    assert b"x-request-id: removed-1" in head
    assert "unknown model 'extra'" in json.loads(payload)["error"]


def test_an_unexpected_error_still_carries_the_request_id(
        write_config: ConfigWriter, tmp_path: Path) -> None:
    """The catch-all 500 handler sits outside every middleware in Starlette: it must add the
    request id itself. A route that fails is added to the real app, served over loopback."""
    import uvicorn
    from starlette.routing import Route

    from gateway.app import create_app
    from gateway.settings import load_settings
    from tests.integration.server import free_port

    app = create_app(load_settings(write_config(drift={"enabled": False})))

    async def broken(request: object) -> None:
        raise KeyError("a bug")

    app.router.routes.append(Route("/broken", broken))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/broken", headers={"x-request-id": "trace-me"})
        response = conn.getresponse()
        reply = Reply(response.status, {k.lower(): v for k, v in response.getheaders()},
                      response.read())
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert reply.status == 500
    assert reply.headers["x-request-id"] == "trace-me"
    assert set(reply.json()) == {"error"}

