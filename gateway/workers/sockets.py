"""The group's ports, taken once by the supervisor.

HTTP: one listening socket, bound and listening in the supervisor and inherited by every worker
(its descriptor passed down), which accepts from it: the kernel hands each connection to one
worker. gRPC: grpc.aio binds its own sockets, so every worker binds the gRPC port with
SO_REUSEPORT and the kernel spreads connections across them; the supervisor binds it first with
SO_REUSEPORT and no listen, which takes no connection but keeps the port the group's, and tells a
busy port at start, as a single process does.
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


def reserve_grpc(host: str, port: int) -> socket.socket:
    """The gRPC port held (SO_REUSEPORT, not listening) for the workers to bind beside, or
    ConfigError with the single process's words when it is taken."""
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        raise ConfigError(f"cannot listen for gRPC on {address}: the port is taken; pick "
                          "another with --grpc-port (0 turns gRPC off)") from exc
    return sock
