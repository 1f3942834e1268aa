"""The supervisor's parts that need no worker: ports taken once with the single process's words
for a busy port, how an exit is told in the log, `server.workers` and `--workers`."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.settings import parse_settings
from gateway.workers.group import make_connection_counts, mark_not_accepting
from gateway.workers.sockets import listen_http, reserve_grpc
from gateway.workers.supervisor import describe_exit
from tests.integration.server import free_port


def test_a_busy_http_port_fails_with_uvicorns_words() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match="address already in use"):
            listen_http("127.0.0.1", port)


def test_a_grpc_port_anyone_has_is_busy_though_the_group_binds_it_shared() -> None:
    """Whoever holds the port, sharing (SO_REUSEPORT) or not, makes it busy: before, a
    second group or a grpcio server bound beside the group and took its connections."""
    with socket.socket() as taken:  # another server, not sharing: no SO_REUSEPORT
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(ConfigError, match="the port is taken; pick another with "
                                              "--grpc-port"):
            reserve_grpc("127.0.0.1", taken.getsockname()[1])
    for host in ("127.0.0.1", "0.0.0.0"):  # the any-address bind must see it too
        with socket.socket() as shared:  # a grpcio server, or a group's worker: SO_REUSEPORT
            shared.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            shared.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            shared.bind(("127.0.0.1", 0))
            shared.listen()
            with pytest.raises(ConfigError, match="the port is taken"):
                reserve_grpc(host, shared.getsockname()[1])
    port = free_port()
    reserved = reserve_grpc("127.0.0.1", port)
    with pytest.raises(ConfigError, match="the port is taken"):  # a second group, starting
        reserve_grpc("127.0.0.1", port)
    with socket.socket() as worker:  # a worker binds beside the reservation, as grpc does
        worker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        worker.bind(("127.0.0.1", port))
    reserved.close()


def test_an_exit_is_told_by_its_code_or_its_signal() -> None:
    assert describe_exit(3) == "exit code 3"
    assert describe_exit(-signal.SIGKILL) == "signal SIGKILL"


def test_workers_is_a_count_or_auto(tmp_path: Path) -> None:
    assert parse_settings({}, tmp_path).server.workers == 1
    assert parse_settings({"server": {"workers": 4}}, tmp_path).server.workers == 4
    auto = parse_settings({"server": {"workers": "auto"}}, tmp_path).server.workers
    assert auto == len(os.sched_getaffinity(0))
    for wrong in (0, "many", -2, True, 513, 100_000):
        with pytest.raises(ConfigError, match="server.workers: expected a number of worker"):
            parse_settings({"server": {"workers": wrong}}, tmp_path)


def test_the_worker_with_the_fewest_connections_takes_the_next(tmp_path: Path) -> None:
    from gateway.workers.accept import ConnectionCounts

    make_connection_counts(tmp_path, 2)
    first, second = ConnectionCounts(tmp_path, 0), ConnectionCounts(tmp_path, 1)
    first.accepting(True)
    assert first.my_turn()  # its peer is still starting: it holds nothing back
    second.accepting(True)
    assert first.my_turn() and second.my_turn()
    first.change(+1)
    assert not first.my_turn() and second.my_turn()
    second.change(+1)
    assert first.my_turn() and second.my_turn()
    second.change(-1)
    assert not first.my_turn()
    mark_not_accepting(tmp_path, 1)  # the supervisor, when the second dies
    assert first.my_turn()
    again = ConnectionCounts(tmp_path, 1)  # restarted: not accepting until it serves
    assert first.my_turn()
    again.accepting(True)
    assert not first.my_turn() and again.my_turn()
