"""The capture folder: one open file per model, rotated, gzipped once closed, and kept under a
total size. Only the capture's threads touch it: the writer appends, the compressor gzips and
deletes.

- A file is closed past `max_file_bytes` or an hour after it was opened (even when idle), then
  gzipped to `<name>.gz` (written as `.gz.tmp` and renamed, so a file is whole or absent) and
  the plain file deleted. gzip runs at level 1 (4x the speed of level 6 for 17% larger files
  of capture lines) in a thread of the lowest CPU priority, so it yields to serving.
- Past `max_total_bytes` the files closed longest ago are deleted, oldest first; an open file is
  never deleted.
- Any OSError (a folder that cannot be made, a read-only or full disk) drops what was being
  written: the writer counts it, the folder logs it (the first time, then at most once a
  minute with how many writes failed meanwhile) and tries afresh on the next write. A folder
  deleted under an open file is noticed before the next write, and a new file is made.
- A plain `.jsonl` left by a gateway that died is gzipped at start-up once it is older than
  the longest a file stays open, so no live gateway sharing the folder is still writing it.
  One folder per gateway is the intended layout (a pod's own volume). The workers of one
  gateway (`server.workers`) share it: each worker's file names end in its own `-w<index>`
  before `.jsonl`, so two writers never share a file, and replay reads every file of the folder.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import os
import queue
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from gateway.capture.records import GZIP_SUFFIX, PREFIX, SUFFIX, file_name
from gateway.workers.group import current_group

logger = logging.getLogger("gateway.capture")

MAX_OPEN_S = 3600.0
"""A file is closed this long after it was opened, whether or not it is full."""
LOG_EVERY_S = 60.0


@dataclass
class _Open:
    path: Path
    file: BinaryIO
    opened_s: float
    size: int = 0


class CaptureFolder:
    def __init__(self, path: Path, max_file_bytes: int, max_total_bytes: int) -> None:
        self.path = path
        self.max_file_bytes = max_file_bytes
        self.max_total_bytes = max_total_bytes
        self._open: dict[str, _Open] = {}
        self._closed: queue.SimpleQueue[Path | None] = queue.SimpleQueue()
        self._compressor = threading.Thread(target=self._compress_closed, daemon=True,
                                            name="capture-gzip")
        self._failures = 0
        self._logged_s = -LOG_EVERY_S
        group = current_group()
        self._suffix = group.suffix if group is not None else ""
        """A worker's own part of its file names (`-w1`); none for a single process."""

    def _file_name(self, model: str, now_s: float) -> str:
        name = file_name(model, now_s)
        return name[:-len(SUFFIX)] + self._suffix + SUFFIX

    def start(self) -> None:
        """Make the folder (a failure is logged; writes try again), gzip what a dead gateway
        left, and start the compressor."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            logger.info("capture: writing to %s", self.path)
            stale = time.time() - MAX_OPEN_S - 60
            for leftover in sorted(self.path.glob(f"{PREFIX}*{SUFFIX}")):
                if leftover.stat().st_mtime < stale:
                    self._closed.put(leftover)
        except OSError as exc:
            self._failed(exc)
        self._compressor.start()

    def write(self, model: str, lines: list[bytes], now_s: float) -> bool:
        """Append `lines` to the model's file; False when they could not be."""
        current = self._open.get(model)
        try:
            if current is not None and not os.path.exists(current.path):
                self._drop(model)  # the folder (or the file) was deleted under us
                current = None
            if current is None:
                self.path.mkdir(parents=True, exist_ok=True)
                path = self.path / self._file_name(model, now_s)
                current = self._open[model] = _Open(
                    path, open(path, "ab"), time.monotonic())  # noqa: SIM115 - kept open
            for chunk in _chunks(lines):
                current.file.write(chunk)
            current.file.flush()
        except OSError as exc:
            self._failed(exc)
            self._drop(model)
            return False
        if self._failures:
            logger.warning("capture: writing to %s again (%d writes failed)", self.path,
                           self._failures)
            self._failures, self._logged_s = 0, -LOG_EVERY_S
        current.size += sum(map(len, lines))
        if current.size >= self.max_file_bytes:
            self._close(model)
        return True

    def tick(self) -> None:
        """Close the files open for an hour."""
        now = time.monotonic()
        for model in [m for m, o in self._open.items() if now - o.opened_s >= MAX_OPEN_S]:
            self._close(model)

    def stop(self) -> None:
        """Close every file, gzip them all, and end the compressor."""
        for model in list(self._open):
            self._close(model)
        self._closed.put(None)
        self._compressor.join()

    def _close(self, model: str) -> None:
        current = self._open.pop(model)
        try:
            current.file.close()
        except OSError as exc:
            self._failed(exc)
        self._closed.put(current.path)

    def _drop(self, model: str) -> None:
        current = self._open.pop(model, None)
        if current is not None:
            with contextlib.suppress(OSError):  # lost either way; the failed write said so
                current.file.close()

    def _failed(self, exc: OSError) -> None:
        self._failures += 1
        now = time.monotonic()
        if now - self._logged_s >= LOG_EVERY_S:
            logger.error("capture: cannot write to %s (%s); records are dropped and counted "
                         "until it can (%d failed writes)", self.path, exc, self._failures)
            self._logged_s = now

    def _compress_closed(self) -> None:
        # gzip can wait: at the lowest CPU priority it takes only what serving leaves (zlib
        # lets go of the GIL), and catches up when the load falls.
        with contextlib.suppress(AttributeError, OSError):  # not on every platform
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        while (path := self._closed.get()) is not None:
            self._compress(path)
            self._keep_under_total()

    def _compress(self, path: Path) -> None:
        if not path.exists():
            return  # deleted meanwhile, to stay under max_total_mb (or with its folder)
        target = path.with_name(path.name[:-len(SUFFIX)] + GZIP_SUFFIX)
        partial = target.with_name(target.name + ".tmp")
        try:
            with open(path, "rb") as source, gzip.open(partial, "wb", compresslevel=1) as out:
                shutil.copyfileobj(source, out, 1 << 20)
            os.replace(partial, target)
            path.unlink()
        except OSError as exc:
            logger.error("capture: cannot gzip %s (%s); it stays as it is", path, exc)
            partial.unlink(missing_ok=True)

    def _keep_under_total(self) -> None:
        try:
            entries = [(e.stat().st_mtime, e.stat().st_size, Path(e.path))
                       for e in os.scandir(self.path)
                       if e.name.startswith(PREFIX) and e.is_file()]
        except OSError:
            return  # the folder is gone: nothing to delete
        total = sum(size for _, size, _ in entries)
        writing = {o.path for o in list(self._open.values())}
        for _, size, path in sorted(entries):
            if total <= self.max_total_bytes:
                break
            if path in writing or path.name.endswith(".tmp"):
                continue
            try:
                path.unlink()
                total -= size
                logger.info("capture: deleted %s to stay under max_total_mb", path.name)
            except OSError as exc:
                logger.error("capture: cannot delete %s (%s)", path, exc)


CHUNK_BYTES = 1 << 20


def _chunks(lines: list[bytes]) -> list[bytes]:
    """Lines joined into writes of about `CHUNK_BYTES`: one system call (one release of the
    GIL) per chunk rather than per line, and no joined copy of a whole tick of big records."""
    chunks: list[bytes] = []
    start, size = 0, 0
    for i, line in enumerate(lines):
        size += len(line)
        if size >= CHUNK_BYTES:
            chunks.append(b"".join(lines[start:i + 1]))
            start, size = i + 1, 0
    if start < len(lines):
        chunks.append(b"".join(lines[start:]))
    return chunks
