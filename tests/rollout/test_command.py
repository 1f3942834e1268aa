"""`gateway rollout`'s wiring: what it reads replicas with."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from gateway.rollout.command import fetch_metrics


def test_a_replica_that_trickles_its_answer_does_not_hold_the_controller() -> None:
    """Review finding 10: urllib's timeout is per read, so one byte every few seconds held the
    controller (and its SIGTERM) forever. The whole answer now has a deadline."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def trickle() -> None:
        conn, _ = server.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
        while not stop.is_set():
            try:
                conn.sendall(b"#")
            except OSError:
                break
            stop.wait(0.2)
        conn.close()

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    started = time.monotonic()
    try:
        with pytest.raises(OSError, match="not read whole within 1 s"):
            fetch_metrics([f"http://127.0.0.1:{server.getsockname()[1]}/metrics"], timeout_s=1)
        assert time.monotonic() - started < 10
    finally:
        stop.set()
        server.close()
