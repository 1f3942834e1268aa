"""A short run of `make soak`: locust against a gateway with a canary, a shadow and drift on,
under routing edits, with zero unexpected answers and no edit lost."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_a_short_soak_passes() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "loadtests.soak", "--minutes", "0.15", "--users", "8",
         "--edit-every", "1"], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr[-4000:]
    out = result.stdout
    assert "unexpected answers 0" in out and ", 0 rejected" in out
    edits = int(out.split(" routing edits")[0].rsplit(", ", 1)[1])
    assert edits >= 5
    assert f"({edits} applied" in out
