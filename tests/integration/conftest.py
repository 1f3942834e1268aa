from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.integration.server import GatewayProcess

Start = Callable[..., GatewayProcess]


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """The gateway as `make serve` starts it: shipped config and models."""
    server = GatewayProcess(ROOT / "config" / "gateway.yaml", tmp_path_factory.mktemp("logs"))
    yield server
    server.stop()


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Start]:
    """Start gateways on given config files; all are stopped after the test."""
    started: list[GatewayProcess] = []

    def run(config: Path, **kwargs: object) -> GatewayProcess:
        server = GatewayProcess(config, tmp_path, **kwargs)  # type: ignore[arg-type]
        started.append(server)
        return server

    yield run
    for server in started:
        server.stop()
