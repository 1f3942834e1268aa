"""The progress bar of long replays: drawn on a terminal, and nothing at all elsewhere (a CI
log or a pipe into jq stays clean)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
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


@pytest.mark.parametrize("bar", ["nan", "-1", "95", "1.5"])
def test_a_min_agreement_outside_0_to_1_is_refused(bar: str, tmp_path: Path) -> None:
    """Review finding 12: `nan` passed every replay and 95 failed every one, silently."""
    from gateway.__main__ import main

    assert main(["replay", str(tmp_path), "--model", "m", "--version", "1",
                 "--min-agreement", bar]) == 2
