"""One worker of a group: today's app (create_app and uvicorn) on the supervisor's HTTP socket.

Started by the supervisor as `python -m gateway.workers.worker` (a fresh interpreter: nothing
of onnxruntime or grpc is inherited through a fork), with the group's variables set
(gateway.workers.group) and the HTTP socket's descriptor passed down. It never reads
gateway.yaml: it serves the settings the supervisor loaded at the group's start (the group
folder's `settings.pickle`), so a worker restarted after an edit on disk runs the group's config,
not a second one. Besides serving, it publishes its window state for its peers every half
second, once it has started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
import warnings
from typing import Any

from gateway.errors import ConfigError
from gateway.workers.accept import ConnectionCounts, WorkerLoop
from gateway.workers.folder import read_settings
from gateway.workers.group import STARTED_PREFIX, Group, current_group

logger = logging.getLogger("gateway.workers")

_PR_SET_PDEATHSIG = 1


def _end_with_supervisor(group: Group) -> None:
    """Ask Linux for SIGTERM when the supervisor dies (even by SIGKILL): a worker never
    outlives its group, and drains as on any SIGTERM."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != group.supervisor_pid:  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


async def _publish_once_started(server: Any, group: Group) -> None:
    while not server.started:  # noqa: ASYNC110 - uvicorn sets a flag, it offers no event
        await asyncio.sleep(0.05)
    (group.folder / f"{STARTED_PREFIX}{group.worker}").touch()
    await group.run()


async def _serve(server: Any, sock: socket.socket, group: Group) -> None:
    loop = asyncio.get_running_loop()
    if isinstance(loop, WorkerLoop):
        loop.counts = ConnectionCounts(group.folder, group.worker)
    publisher = asyncio.create_task(_publish_once_started(server, group), name="group-state")
    try:
        await server.serve(sockets=[sock])
    finally:
        publisher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await publisher


def run_worker(host: str, grpc_port: int, fd: int) -> int:
    import uvicorn

    from gateway.app import create_app
    from gateway.http.server import bounded_protocol

    group = current_group()
    if group is None:
        raise ConfigError("gateway.workers.worker runs only as a worker of `gateway serve` "
                          "with server.workers above 1")
    _end_with_supervisor(group)
    settings = read_settings(group.folder)
    app = create_app(settings, grpc_host=host, grpc_port=grpc_port)
    uv_config = uvicorn.Config(
        app, loop="uvloop", http=bounded_protocol(settings.limits), log_level="info",
        access_log=False,  # ours: gateway.http.middleware
        proxy_headers=False,  # applied inside the app, past the inference lane
        timeout_graceful_shutdown=settings.server.shutdown_grace_s)  # type: ignore[arg-type]
    server = uvicorn.Server(uv_config)
    sock = socket.socket(fileno=fd)
    with asyncio.Runner(loop_factory=WorkerLoop) as runner:  # uvloop, as `loop="uvloop"`
        runner.run(_serve(server, sock, group))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gateway.workers.worker", description=__doc__)
    parser.add_argument("--host", required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--fd", type=int, required=True, help="the inherited HTTP socket")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("watchfiles.main").setLevel(logging.WARNING)
    # Gauges are served from this worker's own registry, where clear() and remove() do what
    # they say; only the multiprocess files keep removed series, and the scrape reads no gauge
    # from them (gateway.observability.metrics.GroupRegistry).
    warnings.filterwarnings("ignore", message=r"(Clearing|Removal of) labels has not been",
                            category=UserWarning)
    try:
        return run_worker(args.host, args.grpc_port, args.fd)
    except ConfigError as exc:
        print(f"gateway serve: {exc}", file=sys.stderr)  # as one process says it
        return 1


if __name__ == "__main__":
    sys.exit(main())
