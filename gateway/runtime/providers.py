"""Choose onnxruntime execution providers from the `execution_provider` setting."""

from __future__ import annotations

import logging

from gateway.errors import ConfigError

logger = logging.getLogger("gateway.runtime")

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


def _cpu(available: list[str]) -> list[str]:
    return [CPU]


def _cuda(available: list[str]) -> list[str]:
    if CUDA not in available:
        raise ConfigError(
            "execution_provider is 'cuda' but this onnxruntime offers only "
            f"{', '.join(available)}; install the GPU extra (onnxruntime-gpu) on a machine with "
            "CUDA, or set execution_provider: auto")
    return [CUDA, CPU]


def _auto(available: list[str]) -> list[str]:
    if CUDA in available:
        return [CUDA, CPU]
    logger.info("execution_provider auto: onnxruntime offers no CUDA provider, using %s", CPU)
    return [CPU]


PROVIDER_CHOICES = {"cpu": _cpu, "cuda": _cuda, "auto": _auto}
"""Setting -> function from onnxruntime's available providers to the providers to ask for."""


def choose_providers(setting: str, available: list[str]) -> list[str]:
    """The providers to ask onnxruntime for, most preferred first; ConfigError if impossible."""
    return PROVIDER_CHOICES[setting](available)
