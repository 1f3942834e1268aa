"""The group's ports, taken once by the supervisor.

HTTP: one listening socket, bound and listening in the supervisor and inherited by every worker
(its descriptor passed down), which accepts from it: the kernel hands each connection to one
worker. gRPC: grpc.aio binds its own sockets, so every worker binds the gRPC port with
SO_REUSEPORT and the kernel spreads connections across them.

SO_REUSEPORT lets any process of the same user that sets it too bind the same port and take a
share of its connections, so a reservation made with it alone proves nothing: a second group on
the same port, or any grpcio server there (grpcio sets SO_REUSEPORT by default), bound beside
the first and took connections meant for it. So the supervisor first proves the port free with a
plain bind (SO_REUSEADDR, as grpcio's own bind, so a closed connection's TIME_WAIT is no
obstacle; no SO_REUSEPORT), which fails on any socket bound or listening there, shared or not;
then binds its reservation with SO_REUSEPORT and no listen, which takes no connection but keeps
the port the group's while the workers start. What this cannot prevent: a process of the same
user that binds the port with SO_REUSEPORT after the group started (between the proof and the
reservation, or any time later) joins the group's port and takes a share of its connections;
the kernel allows it, and only a different user (SO_REUSEPORT requires the same effective uid)
or a port nobody else is given stays the group's alone.
"""

from __future__ import annotations

import errno
import socket

from gateway.errors import ConfigError


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def listen_http(host: str, port: int) -> socket.socket:
    """The HTTP socket, as uvicorn makes it (SO_REUSEADDR, its backlog), or ConfigError with
    uvicorn's words when the port is taken."""
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        reason = ("address already in use" if exc.errno == errno.EADDRINUSE
                  else exc.strerror or str(exc))
        raise ConfigError(f"[Errno {exc.errno}] error while attempting to bind on address "
                          f"({host!r}, {port}): {reason}") from exc
    sock.listen(2048)  # uvicorn's default backlog
    sock.set_inheritable(True)
    return sock


def _bind(host: str, port: int, option: int) -> socket.socket:
    """A socket bound on (host, port) with `option` set, or ConfigError with the single
    process's words when the port is taken."""
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, option, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if exc.errno != errno.EADDRINUSE:
            raise ConfigError(f"cannot listen for gRPC on {address}: "
                              f"{exc.strerror or exc}") from exc
        raise ConfigError(f"cannot listen for gRPC on {address}: the port is taken; pick "
                          "another with --grpc-port (0 turns gRPC off)") from exc
    return sock


def reserve_grpc(host: str, port: int) -> socket.socket:
    """The gRPC port proven free (a plain bind: nobody, sharing or not, has it) and then held
    (SO_REUSEPORT, not listening) for the workers to bind beside; or ConfigError with the single
    process's words when it is taken."""
    _bind(host, port, socket.SO_REUSEADDR).close()
    return _bind(host, port, socket.SO_REUSEPORT)
