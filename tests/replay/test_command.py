"""The progress bar of long replays: drawn on a terminal, and nothing at all elsewhere (a CI
log or a pipe into jq stays clean)."""

from __future__ import annotations

import io

from rich.console import Console

from gateway.replay.command import _progress


def test_a_terminal_gets_a_progress_bar_and_a_pipe_gets_nothing() -> None:
    screen = io.StringIO()
    with _progress(1000, Console(file=screen, force_terminal=True, width=80)) as advance:
        advance(400)
        advance(600)
    assert "replaying" in screen.getvalue()
    pipe = io.StringIO()
    with _progress(1000, Console(file=pipe, force_terminal=False)) as advance:
        advance(1000)
    assert pipe.getvalue() == ""
