"""Choose onnxruntime execution providers from the `execution_provider` setting."""

from __future__ import annotations

import logging

from gateway.errors import ConfigError

logger = logging.getLogger("gateway.runtime")

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


def _cpu(available: list[str]) -> list[str]:
    return [CPU]


def _with_cuda_libraries() -> list[str]:
    # onnxruntime-gpu[cuda,cudnn] ships CUDA and cuDNN as pip packages; preload_dlls finds them.
    import onnxruntime

    preload = getattr(onnxruntime, "preload_dlls", None)
    if preload is not None:
        try:
            preload()
        except Exception as exc:  # the system's own CUDA libraries may still be found
            logger.warning("could not preload CUDA libraries from pip packages: %s", exc)
    return [CUDA, CPU]


def _cuda(available: list[str]) -> list[str]:
    if CUDA not in available:
        raise ConfigError(
            "execution_provider is 'cuda' but this onnxruntime offers only "
            f"{', '.join(available)}; install the GPU extra (onnxruntime-gpu) on a machine with "
            "CUDA, or set execution_provider: auto")
    return _with_cuda_libraries()


def _auto(available: list[str]) -> list[str]:
    if CUDA in available:
        return _with_cuda_libraries()
    logger.info("execution_provider auto: onnxruntime offers no CUDA provider, using %s", CPU)
    return [CPU]


PROVIDER_CHOICES = {"cpu": _cpu, "cuda": _cuda, "auto": _auto}
"""Setting -> function from onnxruntime's available providers to the providers to ask for."""


def choose_providers(setting: str, available: list[str]) -> list[str]:
    """The providers to ask onnxruntime for, most preferred first; ConfigError if impossible."""
    return PROVIDER_CHOICES[setting](available)
