from __future__ import annotations

import pytest

from gateway.errors import ConfigError
from gateway.runtime.providers import CPU, CUDA, choose_providers


def test_cpu_is_always_cpu() -> None:
    assert choose_providers("cpu", [CUDA, CPU]) == [CPU]


def test_auto_prefers_cuda_and_falls_back_to_cpu(caplog: pytest.LogCaptureFixture) -> None:
    assert choose_providers("auto", [CUDA, CPU]) == [CUDA, CPU]
    with caplog.at_level("INFO"):
        assert choose_providers("auto", [CPU]) == [CPU]
    assert "no CUDA provider" in caplog.text


def test_cuda_without_cuda_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="offers only CPUExecutionProvider.*onnxruntime-gpu"):
        choose_providers("cuda", [CPU])
    assert choose_providers("cuda", [CUDA, CPU]) == [CUDA, CPU]
