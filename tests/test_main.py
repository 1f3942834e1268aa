"""`gateway check` and `gateway serve` as a user runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import MODEL, ROOT, ConfigWriter, shipped_config
from tests.integration.server import GatewayProcess


def gateway(*args: str, env: dict[str, str] | None = None,
            cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=120, env={**os.environ, **(env or {})})


def test_check_passes_on_the_shipped_config(tmp_path: Path) -> None:
    """`gateway check` with no arguments, in a folder laid out as a clone ships it (the config
    as committed: never the working tree's, which the README tells users to edit)."""
    folder = shipped_config(tmp_path).parent.parent
    result = gateway("check", cwd=folder)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "breast-cancer/1" in result.stdout and "breast-cancer/2" not in result.stdout


def test_check_prints_one_line_per_broken_version(model_repo: Path,
                                                  write_config: ConfigWriter) -> None:
    for version in ("1", "2"):
        path = model_repo / MODEL / version / "model.onnx"
        path.write_bytes(path.read_bytes()[:-1])
    result = gateway("check", "--config", str(write_config(model_repo)))
    assert result.returncode == 1
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2
    assert all("sha256" in line for line in lines)


def test_check_rejects_an_invalid_policy(write_config: ConfigWriter) -> None:
    config = write_config(routing={"models": {MODEL: {"traffic": [{"version": 1, "weight": 60},
                                                                  {"version": 2, "weight": 30}]}}})
    result = gateway("check", "--config", str(config))
    assert result.returncode == 1
    assert "weights sum to 90; they must sum to 100" in result.stderr


def test_check_rejects_unknown_settings_keys(write_config: ConfigWriter) -> None:
    result = gateway("check", "--config", str(write_config(batching={"max_batch": 8})))
    assert result.returncode == 1
    assert "batching: unknown key(s) max_batch" in result.stderr


def test_cuda_without_a_cuda_provider_is_a_clear_startup_error(
        write_config: ConfigWriter) -> None:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        return  # a GPU machine: cuda is a valid choice there
    config = write_config(execution_provider="cuda")
    for command in ("check", "serve"):
        result = gateway(command, "--config", str(config))
        assert result.returncode == 1
        assert "offers only" in result.stderr and "execution_provider: auto" in result.stderr


def test_serve_reads_gateway_config_from_the_environment(
        tmp_path: Path, write_config: ConfigWriter) -> None:
    config = write_config(routing={"models": {MODEL: {"traffic": [{"version": 1,
                                                                   "weight": 100}]}}})
    server = GatewayProcess(None, tmp_path, env={"GATEWAY_CONFIG": str(config)})
    try:
        meta = server.request("GET", f"/v2/models/{MODEL}").json()
        assert meta["versions"] == ["1"]  # the variable's policy, not the shipped one
        assert "loaded breast-cancer version 1 on CPUExecutionProvider" in server.log()
    finally:
        # uvicorn re-raises SIGTERM after its graceful shutdown, so the exit status is -15.
        assert server.stop() in (0, -15)
    assert "Application shutdown complete" in server.log()
