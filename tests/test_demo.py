"""`gateway demo`'s client against a real HTTP server (tests/integration/test_demo.py runs the
demo against a gateway)."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import orjson
import pytest

from gateway.demo import Client, Options, _Demo
from tests.conftest import MODEL, MODELS


class _Slow(BaseHTTPRequestHandler):
    """Answers /slow after half a second, anything else at once."""

    protocol_version = "HTTP/1.1"

    labels: ClassVar[list[dict[str, object]]] = []  # the feedback items received

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.path.endswith("/feedback"):
            self.labels.extend(orjson.loads(body)["feedback"])
        if self.path == "/slow" or self.path.endswith("/feedback"):
            time.sleep(0.5)
        body = self.path.encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def test_a_call_after_ctrl_c_mid_answer_is_answered_not_unreachable(
        server: ThreadingHTTPServer) -> None:
    """Ctrl-C while an answer is awaited left the keep-alive connection between request and
    answer; the labels and report the demo sends after Ctrl-C then failed as 'unreachable'
    (a fresh clone's CI run of the README's `make demo` showed `errors unreachable ×1`)."""
    client = Client("127.0.0.1", server.server_address[1])
    assert client.call("POST", "/warm", b"{}") == (200, b"/warm")
    previous = signal.signal(signal.SIGALRM, _interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        with pytest.raises(KeyboardInterrupt):
            client.call("POST", "/slow", b"{}")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert client.call("POST", "/after", b"{}") == (200, b"/after")


def test_labels_whose_answer_ctrl_c_cut_off_are_not_sent_again(
        server: ThreadingHTTPServer) -> None:
    """After Ctrl-C the demo posts the labels still waiting; a batch whose answer Ctrl-C cut
    off may have been taken, and was sent again (counted twice in the gateway's accuracy)."""
    port = server.server_address[1]
    demo = _Demo(Options(f"http://127.0.0.1:{port}", MODEL, MODELS / f"{MODEL}.held-out.json",
                         50.0, 1.0, 8, 10, "x-user-id", 5.0, 1, False), out=None)  # type: ignore
    demo.pending = [{"label": 1, "version": "1", "prediction": 1, "id": f"r{i}"}
                    for i in range(40)]
    _Slow.labels = []
    previous = signal.signal(signal.SIGALRM, _interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        with pytest.raises(KeyboardInterrupt):
            demo._post_labels()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    demo._post_labels()  # what the demo does after Ctrl-C
    time.sleep(0.1)
    assert [item["id"] for item in _Slow.labels] == [f"r{i}" for i in range(40)]  # once
