"""The locust mix runs headless against a real gateway and every request succeeds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, shipped_config
from tests.integration.server import GatewayProcess


def test_locust_mix_runs_without_failures(tmp_path: Path) -> None:
    server = GatewayProcess(shipped_config(tmp_path), tmp_path)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "locust", "-f", "loadtests/locustfile.py", "--headless",
             "--host", f"http://{server.url}", "--users", "8", "--spawn-rate", "8",
             "--run-time", "3s", "--only-summary", "--exit-code-on-error", "1",
             "--csv", str(tmp_path / "locust")],
            cwd=ROOT, capture_output=True, text=True, timeout=120)
    finally:
        server.stop()
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    stats = (tmp_path / "locust_stats.csv").read_text()
    for name in ("routed JSON", "pinned JSON", "binary 32 rows"):
        assert name in stats
    aggregated = stats.strip().splitlines()[-1].split(",")
    assert int(aggregated[2]) > 0 and int(aggregated[3]) == 0  # requests, failures
