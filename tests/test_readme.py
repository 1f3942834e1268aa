"""The README's offline drift example runs as printed (README stays true)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer

from tests.conftest import ROOT


def test_the_offline_drift_replay_example_runs(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    example = next(block for block in re.findall(r"```python\n(.*?)```", readme, re.DOTALL)
                   if "DriftMonitor" in block)
    shutil.copytree(ROOT / "models", tmp_path / "models")
    data = load_breast_cancer().data
    data[:, 0] *= 1.6
    np.savetxt(tmp_path / "live.csv", data, delimiter=",", header=",".join(["f"] * 30))
    result = subprocess.run([sys.executable, "-c", example], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 30
    assert lines[0].startswith("mean radius") and lines[0].endswith("True")
