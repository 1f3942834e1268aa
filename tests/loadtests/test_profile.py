"""Smoke run of `make profile`: two gateways sampled by py-spy, tables of where the time went."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


def test_profile_prints_both_configurations_and_what_the_features_add(tmp_path: Path) -> None:
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (apt-get install wrk; .ci/run installs it)")
    bin_dir = str(Path(sys.executable).parent)
    result = subprocess.run(
        [sys.executable, "-m", "loadtests.profile", "--duration", "2", "--top", "60",
         "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=240,
        env={**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")})
    if result.returncode != 0 and "Permission denied" in result.stderr + result.stdout:
        pytest.skip("py-spy may not read other processes here (ptrace is not permitted)")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "one version at 100%: own time" in result.stdout
    assert "+ 10% shadow: total time" in result.stdout
    assert "what every feature adds" in result.stdout
    assert "Endpoints.infer (endpoints.py)" in result.stdout
    assert sorted(p.name for p in tmp_path.glob("profile-*.txt")) == ["profile-0.txt",
                                                                      "profile-1.txt"]
