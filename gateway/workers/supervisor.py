"""The supervisor: `gateway serve` with `server.workers` above 1.

It takes the ports (gateway.workers.sockets), makes the group folder (gateway.workers.folder:
a temporary folder, removed at exit, and by the next supervisor when this one is killed) that
holds prometheus-client's multiprocess files, the workers' published state and the settings it
loaded, and keeps N workers running (gateway.workers.worker, each a fresh interpreter, every one
started from those settings: gateway.yaml is read once, by the supervisor). It loads no model
and serves nothing itself.

- A worker that exits is logged (its index, pid, exit code or signal) and started again, in
  the same index; its published window state is removed (its window is gone), its counters stay
  in the multiprocess files. A worker that keeps dying soon after its start is started again
  after a delay that doubles, up to `MAX_BACKOFF_S`.
- A worker that exits before it ever served, at the group's start, fails the group (a start-up
  error fails every worker alike: a routing file that does not parse, say): the others are
  stopped and the group exits with the worker's exit code, as one process would (3 after a
  signal).
- SIGTERM or SIGINT is passed to every worker as SIGTERM; each drains as a single process does
  within `server.shutdown_grace_s`; what is left `KILL_MARGIN_S` after that is killed, and the
  supervisor exits 0.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from gateway.errors import ConfigError
from gateway.settings import Settings
from gateway.workers.folder import make_group_folder, write_settings
from gateway.workers.group import (
    GROUP_VARIABLE,
    SIZE_VARIABLE,
    STARTED_PREFIX,
    SUPERVISOR_VARIABLE,
    WORKER_VARIABLE,
    make_connection_counts,
    mark_not_accepting,
    state_file,
)
from gateway.workers.sockets import listen_http, reserve_grpc

logger = logging.getLogger("gateway.workers")

QUICK_EXIT_S = 10.0
"""A worker that exits sooner than this after its start counts toward the back-off."""
FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0
KILL_MARGIN_S = 2.0
"""After the grace, what a worker may take to close (its lifespan's last steps) before a kill."""
POLL_S = 0.05
STARTUP_FAILURE = 3
"""A busy port's exit code, as a single process's (uvicorn's)."""


@dataclass
class _Worker:
    index: int
    process: subprocess.Popen[bytes] | None = None
    started_s: float = 0.0
    quick_exits: int = 0
    restart_at_s: float | None = None
    starts: int = 0


def describe_exit(code: int) -> str:
    """`exit code 3` or `signal SIGKILL`, from a Popen return code."""
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


class Supervisor:
    def __init__(self, settings: Settings, host: str, port: int, grpc_port: int,
                 count: int) -> None:
        self.settings = settings
        self.host = host
        self.port = port
        self.grpc_port = grpc_port
        self.count = count
        self.grace_s = settings.server.shutdown_grace_s
        self.folder = Path()
        self._http: socket.socket | None = None
        self._stop_requested = False
        self._workers = [_Worker(i) for i in range(count)]

    def run(self) -> int:
        try:
            self._http = listen_http(self.host, self.port)
            reserved = reserve_grpc(self.host, self.grpc_port) if self.grpc_port else None
        except ConfigError as exc:
            if self._http is not None:
                self._http.close()
            logging.getLogger("uvicorn.error").error("%s", exc)
            return STARTUP_FAILURE
        self.folder, lock = make_group_folder()
        write_settings(self.folder, self.settings)
        make_connection_counts(self.folder, self.count)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        logger.info("serving on http://%s:%d with %d workers (group folder %s)", self.host,
                    self.port, self.count, self.folder)
        cores = len(os.sched_getaffinity(0))
        if self.count > cores:
            logger.warning("%d workers share the %d core%s this process may use: more workers "
                           "than cores add memory (about 90 MiB each), not requests per second",
                           self.count, cores, "" if cores == 1 else "s")
        try:
            code = self._supervise()
        finally:
            self._close_ports(reserved)
            shutil.rmtree(self.folder, ignore_errors=True)
            lock.close()
        return code

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if not self._stop_requested:
            logger.info("%s: stopping %d workers (each drains within %g s)",
                        signal.Signals(signum).name, self.count, self.grace_s)
        self._stop_requested = True

    def _supervise(self) -> int:
        for worker in self._workers:
            self._start(worker)
        while not self._stop_requested:
            for worker in self._workers:
                failed = self._check(worker)
                if failed is not None:  # the worker's own code, as one process's would be
                    self._stop_all()
                    return failed if failed > 0 else STARTUP_FAILURE
            time.sleep(POLL_S)
        self._stop_all()
        return 0

    def _check(self, worker: _Worker) -> int | None:
        """Start again a worker that exited (after its back-off); its exit code, when the
        worker never served at the group's start (the group fails), else None."""
        now = time.monotonic()
        if worker.process is None:
            if worker.restart_at_s is not None and now >= worker.restart_at_s:
                self._start(worker)
            return None
        code = worker.process.poll()
        if code is None:
            return None
        started = (self.folder / f"{STARTED_PREFIX}{worker.index}").exists()
        how = describe_exit(code)
        pid = worker.process.pid
        worker.process = None
        self._forget(worker, pid)
        if not started and worker.starts == 1:
            logger.error("worker %d exited before it served (%s): stopping the group",
                         worker.index, how)
            return code
        ran_s = now - worker.started_s
        worker.quick_exits = worker.quick_exits + 1 if ran_s < QUICK_EXIT_S else 0
        delay_s = (min(FIRST_BACKOFF_S * 2 ** (worker.quick_exits - 1), MAX_BACKOFF_S)
                   if worker.quick_exits else 0.0)
        logger.error("worker %d (pid %d) exited with %s after %.1f s; starting it again in "
                     "%.1f s", worker.index, pid, how, ran_s, delay_s)
        worker.restart_at_s = now + delay_s
        return None

    def _forget(self, worker: _Worker, pid: int) -> None:
        """A dead worker's window state and start mark go; its counters' files stay."""
        from prometheus_client import multiprocess

        for path in (state_file(self.folder, worker.index),
                     self.folder / f"{STARTED_PREFIX}{worker.index}"):
            path.unlink(missing_ok=True)
        multiprocess.mark_process_dead(pid, str(self.folder))  # type: ignore[no-untyped-call]
        mark_not_accepting(self.folder, worker.index)

    def _start(self, worker: _Worker) -> None:
        assert self._http is not None
        fd = self._http.fileno()
        env = {**os.environ, GROUP_VARIABLE: str(self.folder), WORKER_VARIABLE: str(worker.index),
               SUPERVISOR_VARIABLE: str(os.getpid()), SIZE_VARIABLE: str(self.count),
               "PROMETHEUS_MULTIPROC_DIR": str(self.folder)}
        command = [sys.executable, "-m", "gateway.workers.worker", "--host", self.host,
                   "--grpc-port", str(self.grpc_port), "--fd", str(fd)]
        # Its own session: a terminal's Ctrl-C reaches the supervisor only, which passes one
        # SIGTERM on (a second SIGINT would make uvicorn skip the drain).
        worker.process = subprocess.Popen(command, env=env, pass_fds=(fd,),
                                          start_new_session=True)
        worker.started_s = time.monotonic()
        worker.starts += 1
        worker.restart_at_s = None
        logger.info("worker %d started (pid %d)", worker.index, worker.process.pid)

    def _stop_all(self) -> None:
        """SIGTERM to every worker, then a kill for those still there after the grace."""
        running = [w.process for w in self._workers if w.process is not None]
        for process in running:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        if self._http is not None:  # no new connection waits for a worker that is leaving
            self._http.close()
            self._http = None
        deadline = time.monotonic() + self.grace_s + KILL_MARGIN_S
        for process in running:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.error("worker pid %d still running %g s after SIGTERM: killed",
                             process.pid, self.grace_s + KILL_MARGIN_S)
                process.kill()
                process.wait()

    def _close_ports(self, reserved: socket.socket | None) -> None:
        for sock in (self._http, reserved):
            if sock is not None:
                sock.close()


def run_group(settings: Settings, host: str, port: int, grpc_port: int, count: int) -> int:
    """Serve with `count` workers, every one on `settings` (gateway.yaml as loaded once)."""
    return Supervisor(settings, host, port, grpc_port, count).run()
