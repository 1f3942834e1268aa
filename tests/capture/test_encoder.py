"""Big records encoded by a real child process: the same bytes as encoding here; small records
never leave; a child that dies, or fails a run, costs nothing but being encoded here again."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway.capture.columns import alike_lines
from gateway.capture.encoder import ChildEncoder, values_in

DATATYPES = {"input": "FP32"}


def group(rows: int, count: int = 6) -> list[Any]:
    rng = np.random.default_rng(rows)
    return [(1796310000.0 + i / 7, f"r{i}", None if i % 2 else "abc",
             {"input": rng.normal(size=(rows, 30)).astype(np.float32)},
             {"label": rng.integers(0, 2, size=rows), "probabilities":
              rng.random((rows, 2)).astype(np.float32)}) for i in range(count)]


def child_pids(encoder: ChildEncoder) -> list[int]:
    pool = encoder._pool
    return [] if pool is None else [p.pid for p in pool._processes.values()]  # type: ignore


def test_big_records_come_back_byte_for_byte_and_small_ones_stay() -> None:
    encoder = ChildEncoder(min_run=4)
    # A child inherits an ignored SIGINT (as under `cmd &`): handled here, it would not.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        small = group(1)
        assert values_in(small[0]) < encoder.min_values
        assert encoder.lines("m", 2, "split", DATATYPES, small) is None
        assert encoder.lines("m", 2, "split", DATATYPES, group(32, count=3)) is None  # short
        text = group(32)
        text = [(*item[:3], {"input": np.array([["x"] * 30] * 32)}, item[4]) for item in text]
        assert values_in(text[0]) == 0
        assert encoder.lines("m", 2, "split", DATATYPES, text) is None
        assert encoder._pool is None  # no child for records cheaper to encode here
        big = group(32)
        assert values_in(big[0]) >= encoder.min_values
        lines = encoder.lines("m", 2, "split", DATATYPES, big)
        assert lines == alike_lines("m", 2, "split", DATATYPES, big)
        assert lines is not None and len(lines) == len(big)
        (pid,) = child_pids(encoder)
        assert pid != os.getpid()
        os.kill(pid, signal.SIGINT)  # Ctrl-C reaches a terminal's whole group: ignored,
        os.kill(pid, signal.SIGTERM)  # and so does systemd's stop: the gateway ends it
        time.sleep(0.3)  # (a child they ended would be gone by now)
        assert encoder.lines("m", 2, "split", DATATYPES, big) == lines
        assert child_pids(encoder) == [pid]
    finally:
        encoder.stop()
        signal.signal(signal.SIGINT, previous)
    assert encoder._pool is None


def test_a_killed_child_costs_one_run_encoded_here_and_is_started_again(
        caplog: pytest.LogCaptureFixture) -> None:
    encoder = ChildEncoder(min_run=4, retry_s=0.0)
    big = group(32)
    try:
        assert encoder.lines("m", 2, "split", DATATYPES, big) is not None
        (pid,) = child_pids(encoder)
        os.kill(pid, signal.SIGKILL)
        with caplog.at_level(logging.WARNING, "gateway.capture"):
            assert encoder.lines("m", 2, "split", DATATYPES, big) is None  # here, this once
        assert "the encoding process failed (BrokenProcessPool" in caplog.text
        assert encoder.lines("m", 2, "split", DATATYPES, big) == alike_lines(
            "m", 2, "split", DATATYPES, big)
        assert child_pids(encoder) not in ([], [pid])  # a new child
    finally:
        encoder.stop()


def test_runs_the_child_cannot_encode_are_left_to_this_process(
        caplog: pytest.LogCaptureFixture) -> None:
    encoder = ChildEncoder(min_run=4, retry_s=3600.0)
    try:
        text = group(32)
        text[1] = (*text[1][:3], {"input": np.array([["x"] * 30] * 32)}, text[1][4])
        assert encoder.lines("m", 2, "split", DATATYPES, text) is None  # not alike: text
        assert encoder.lines("m", 2, "split", DATATYPES, group(32)) is not None  # no failure
        broken = group(32)
        broken[1] = (*broken[1][:4], {**broken[1][4], "label": "not an array"})
        with caplog.at_level(logging.WARNING, "gateway.capture"):
            assert encoder.lines("m", 2, "split", DATATYPES, broken) is None
        assert "the encoding process failed (AttributeError" in caplog.text
        assert encoder._pool is None
        assert encoder.lines("m", 2, "split", DATATYPES, group(32)) is None  # for retry_s
        assert encoder._pool is None
    finally:
        encoder.stop()


def test_a_stopped_child_is_killed_when_the_gateway_stops_it() -> None:
    """SIGSTOP'd, the child answered nothing and stop() waited for it for ever (a gateway that
    never finished its SIGTERM); now it is killed: its work is done or given up by then."""
    encoder = ChildEncoder(min_run=4)
    assert encoder.lines("m", 2, "split", DATATYPES, group(32)) is not None
    (pid,) = child_pids(encoder)
    os.kill(pid, signal.SIGSTOP)
    stopper = threading.Thread(target=encoder.stop, daemon=True)
    stopper.start()
    stopper.join(timeout=20)
    assert not stopper.is_alive(), "stop() waited for a stopped child"
    assert not Path(f"/proc/{pid}").exists() or \
        Path(f"/proc/{pid}/stat").read_text().split()[2] in "ZX"
