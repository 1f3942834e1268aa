"""`gateway replay CAPTURE_DIR --model M --version V [--against URL] [--json]
[--min-agreement X]`: exit 0, or 1 when agreement is below `--min-agreement` (a release gate in
CI), or 2 when the capture cannot be replayed as asked (the message says why)."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from gateway.replay.reader import CaptureError, capture_files
from gateway.replay.report import replay, table
from gateway.replay.targets import InProcess, Remote, Target
from gateway.runtime.repository import scan_repository
from gateway.settings import Settings

BELOW, CANNOT = 1, 2


def run_replay(folder: Path, model: str, version: int, settings: Settings, against: str | None,
               as_json: bool, min_agreement: float | None) -> int:
    try:
        files = capture_files(folder)
        repository = scan_repository(settings.model_repository)
        target: Target = (Remote(against, repository, model, version) if against
                          else InProcess(settings, repository, model, version))
        try:
            with _progress(sum(f.stat().st_size for f in files)) as advance:
                report = replay(files, model, version, target, advance)
        finally:
            target.close()
    except CaptureError as exc:
        print(f"gateway replay: {exc}", file=sys.stderr)
        return CANNOT
    passed = (min_agreement is None
              or (not math.isnan(report["agreement"]) and report["agreement"] >= min_agreement))
    report["min_agreement"] = min_agreement
    report["passed"] = passed
    if as_json:
        sys.stdout.buffer.write(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        print(table(report))
        if not passed:
            print(f"agreement {report['agreement']:.4%} is below --min-agreement "
                  f"{min_agreement:.4%}")
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
