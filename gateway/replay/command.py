"""`gateway replay CAPTURE_DIR --model M --version V [--against URL] [--json]
[--min-agreement X]`: exit 0, or 1 when agreement is below `--min-agreement` (a release gate in
CI: rows that failed or were redacted count against it, and a replay with no row replayed is
below any bar), or 2 when the capture cannot be replayed as asked (the message says why).

The capture is read as it stood at the start (gateway.replay.reader), so a replay `--against` a
gateway that captures into the same folder ends."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from gateway.replay.reader import CaptureError, capture_files
from gateway.replay.report import replay
from gateway.replay.targets import InProcess, Remote, Target
from gateway.replay.text import table, verdict
from gateway.runtime.repository import scan_repository
from gateway.settings import Settings

BELOW, CANNOT = 1, 2


def run_replay(folder: Path, model: str, version: int, settings: Settings, against: str | None,
               as_json: bool, min_agreement: float | None) -> int:
    if min_agreement is not None and not 0.0 <= min_agreement <= 1.0:  # NaN is neither
        print(f"gateway replay: --min-agreement {min_agreement}: expected a share from 0 to 1 "
              "(0.99 for 99%)", file=sys.stderr)
        return CANNOT
    try:
        files = capture_files(folder)
        repository = scan_repository(settings.model_repository)
        target: Target = (Remote(against, repository, model, version) if against
                          else InProcess(settings, repository, model, version))
        try:
            with _progress(sum(f.size for f in files)) as advance:
                report = replay(files, model, version, target, advance)
        finally:
            target.close()
    except CaptureError as exc:
        print(f"gateway replay: {exc}", file=sys.stderr)
        return CANNOT
    passed, reason = verdict(report, min_agreement)
    report["min_agreement"] = min_agreement
    report["passed"] = passed
    report["reason"] = reason
    if as_json:
        sys.stdout.buffer.write(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        print(table(report))
        if reason is not None:
            print(reason)
    return 0 if passed else BELOW


@contextmanager
def _progress(total_bytes: int,
              console: Console | None = None) -> Iterator[Callable[[int], None]]:
    """A progress bar over the capture's bytes on stderr, when stderr is a terminal."""
    console = console or Console(stderr=True)
    if not console.is_terminal:
        yield lambda n: None
        return
    with Progress(TextColumn("replaying"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task("replay", total=total_bytes)
        yield lambda n: bar.advance(task, n)
