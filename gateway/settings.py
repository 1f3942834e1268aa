"""Settings of a gateway, loaded from `config/gateway.yaml` into frozen dataclasses.

Relative paths in the file are resolved against the folder of the file. Unknown keys are errors
(a typo must not silently fall back to a default). Every field documents its unit and default.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import yaml

from gateway.batching.execution import EXECUTIONS
from gateway.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("config/gateway.yaml")
EXECUTION_PROVIDERS = ("cpu", "cuda", "auto")


@dataclass(frozen=True)
class ServerSettings:
    host: str = "0.0.0.0"
    """Address to listen on."""
    port: int = 8000
    """TCP port to listen on."""
    grpc_port: int = 8001
    """TCP port of the gRPC API (inference.GRPCInferenceService), as Triton's; 0 turns it off."""
    shutdown_grace_s: float = 30.0
    """On SIGTERM, how long in-flight and queued requests may take to finish before exit."""
    access_log: bool = False
    """Log one line per request, with its request id and trace id (costs throughput)."""
    workers: int = 1
    """Worker processes behind the same ports (README "Workers"); `auto` in the file: the cores
    this process may use. 1 is one process, as without the key."""


@dataclass(frozen=True)
class OrtThreadSettings:
    intra_op: int = 1
    """onnxruntime threads inside one operator; 0 lets onnxruntime pick (one per core)."""
    inter_op: int = 1
    """onnxruntime threads across independent operators; 0 lets onnxruntime pick."""


@dataclass(frozen=True)
class BatchingSettings:
    max_batch_size: int = 32
    """Rows merged into one onnxruntime call; 1 turns batching off."""
    max_queue_delay_us: int = 500
    """How long the first queued request waits for company, in microseconds."""
    max_queue_size: int = 256
    """Requests waiting per model version; beyond it the gateway answers 503 with Retry-After."""
    default_timeout_us: int = 0
    """Queue timeout for requests without a V2 `timeout` parameter, in microseconds; 0: none."""
    execution: str = "auto"
    """Where batches run: inline (on the event loop), thread (one per version), or auto (inline
    when a full batch measured at warm-up takes at most 200 µs, else thread)."""


INHERIT = -1.0
"""A per-model drift setting left out: the model takes `drift.<setting>` (a file cannot say -1)."""


@dataclass(frozen=True)
class DriftModelSettings:
    psi_threshold: float = INHERIT
    """This model's effect-size floor (default: drift.psi_threshold)."""
    false_alarm_rate: float = INHERIT
    """This model's false-alarm rate per window (default: drift.false_alarm_rate)."""


@dataclass(frozen=True)
class DriftSettings:
    enabled: bool = True
    """Monitor served rows for drift (README "Drift monitor")."""
    window_rows: int = 5000
    """Sliding window per model version, in rows."""
    false_alarm_rate: float = 0.01
    """Chance that a window with no drift has any column flagged `drifted`, per version and
    per kind (its features; its outputs); per model: `drift.models.<model>.false_alarm_rate`."""
    psi_threshold: float = 0.0
    """Effect-size floor: with a value above 0, a column the test flags is `drifted` only when
    its PSI also reaches it (large windows make tiny changes statistically sure). 0: off."""
    models: dict[str, DriftModelSettings] = field(default_factory=dict)
    """Per-model overrides."""
    max_buffer_rows: int = 50_000
    """Rows waiting to be folded in, per version; beyond it rows are dropped and counted."""
    report_interval_s: float = 1.0
    """How often the drift gauges are recomputed, in seconds."""


@dataclass(frozen=True)
class TracingSettings:
    service_name: str = "gateway"
    """`service.name` of exported spans; exporters come from the standard OTEL_* variables."""


@dataclass(frozen=True)
class CaptureSettings:
    enabled: bool = False
    """Keep every answered request (and feedback batch) as a JSON line (README "Prediction capture
    and replay"); off by
    default because the rows may be personal data."""
    path: Path = Path("../capture")
    """The folder capture files go to; relative to the config file."""
    sample_percent: float = 100.0
    """Share of answered requests kept, in percent; a kept request is kept whole."""
    max_file_mb: float = 64.0
    """A file is closed and gzipped past this size, in MiB (or after an hour)."""
    max_total_mb: float = 1024.0
    """The oldest files are deleted while the folder holds more than this, in MiB."""
    redact: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Model -> input names whose values are never written (name, datatype, shape stay)."""


@dataclass(frozen=True)
class LimitSettings:
    max_body_bytes: int = 8 * 1024 * 1024
    """Largest request body accepted, in bytes; larger bodies get 413."""
    max_tensor_elements: int = 4 * 1024 * 1024
    """Largest element count of one input tensor, checked before anything is allocated."""
    max_batch_rows: int = 8192
    """Largest first dimension of one request's inputs."""
    max_feedback_items: int = 10_000
    """Most labels in one feedback request (docs/endpoints.md); more answer 400."""
    max_header_bytes: int = 64 * 1024
    """Largest request line and headers, in bytes; larger ones get 431 and the connection is
    closed (uvicorn with httptools sets no bound of its own)."""
    read_timeout_s: float = 60.0
    """Longest a request may take to arrive whole once it has begun arriving, in seconds
    (headers and body: 8 MiB at 2 Mbit/s takes 34 s); past it the answer is 408 and the
    connection is closed, so a stalled upload cannot hold its memory for long."""


@dataclass(frozen=True)
class Settings:
    model_repository: Path = Path("models")
    """The model repository (README "Model repository")."""
    routing: Path = Path("routing.yaml")
    """The live routing policy file (docs/routing.md)."""
    execution_provider: str = "auto"
    """cpu | cuda | auto (CUDA when onnxruntime offers it, else CPU)."""
    ort_threads: OrtThreadSettings = field(default_factory=OrtThreadSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    batching: BatchingSettings = field(default_factory=BatchingSettings)
    drift: DriftSettings = field(default_factory=DriftSettings)
    tracing: TracingSettings = field(default_factory=TracingSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    capture: CaptureSettings = field(default_factory=CaptureSettings)
    source: Path | None = None
    """The file these settings came from (not a key of the file)."""


T = TypeVar("T")


def _build(cls: type[T], raw: Any, where: str) -> T:
    """Build dataclass `cls` from a mapping, type-checking each scalar against its default."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(raw).__name__}")
    known = {f.name: f for f in fields(cls) if f.name != "source"}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(map(str, unknown))}; "
                          f"known keys: {', '.join(known)}")
    defaults = cls()
    values: dict[str, Any] = {}
    for name, value in raw.items():
        key = f"{where}.{name}" if where else name
        default = getattr(defaults, name)
        if is_dataclass(default):
            values[name] = _build(type(default), value, key)
        elif name == "models" and cls is DriftSettings:
            if not isinstance(value, dict):
                raise ConfigError(f"{key}: expected a mapping of model name to settings")
            values[name] = {str(m): _build(DriftModelSettings, v, f"{key}.{m}")
                            for m, v in value.items()}
        elif name == "redact" and cls is CaptureSettings:
            values[name] = _redact(value, key)
        elif name == "workers" and cls is ServerSettings:
            values[name] = parse_workers(value, key)
        else:
            values[name] = _scalar(value, default, key)
    return cls(**values)


MAX_WORKERS = 512
"""Each worker is a process of about 90 MiB: a typo of 100000 would start until memory ran out."""


def parse_workers(value: Any, key: str) -> int:
    """`server.workers` (or `--workers`): a count of at least 1, or `auto` for the cores this
    process may use (its CPU affinity, which a container's cpuset narrows)."""
    if value == "auto":
        return len(os.sched_getaffinity(0))
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_WORKERS:
        raise ConfigError(f"{key}: expected a number of worker processes (1 to {MAX_WORKERS}) "
                          f"or 'auto', got {value!r}")
    return value


def _redact(value: Any, key: str) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, dict) or not all(
            isinstance(names, list) and all(isinstance(n, str) for n in names)
            for names in value.values()):
        raise ConfigError(f"{key}: expected a mapping of model name to a list of input names, "
                          "e.g. {breast-cancer: [input]}")
    return {str(model): tuple(names) for model, names in value.items()}


def _scalar(value: Any, default: Any, key: str) -> Any:
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{key}: expected a non-negative integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigError(f"{key}: expected a non-negative number, got {value!r}")
        return float(value)
    if isinstance(default, Path):
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{key}: expected a path, got {value!r}")
        return Path(value)
    if not isinstance(value, str):
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    return value


def _validate(settings: Settings) -> None:
    if settings.execution_provider not in EXECUTION_PROVIDERS:
        raise ConfigError(f"execution_provider: {settings.execution_provider!r} is not one of "
                          f"{', '.join(EXECUTION_PROVIDERS)}")
    b = settings.batching
    if b.execution not in EXECUTIONS:
        raise ConfigError(f"batching.execution: {b.execution!r} is not one of "
                          f"{', '.join(EXECUTIONS)}")
    for name in ("max_batch_size", "max_queue_size"):
        if getattr(b, name) < 1:
            raise ConfigError(f"batching.{name}: must be at least 1")
    if not 1 <= settings.server.port <= 65535:
        raise ConfigError(f"server.port: {settings.server.port} is not a TCP port")
    if not 0 <= settings.server.grpc_port <= 65535:
        raise ConfigError(f"server.grpc_port: {settings.server.grpc_port} is not a TCP port "
                          "(0 turns gRPC off)")
    if settings.drift.window_rows < 1:
        raise ConfigError("drift.window_rows: must be at least 1")
    rates = [("drift.false_alarm_rate", settings.drift.false_alarm_rate)]
    rates += [(f"drift.models.{m}.false_alarm_rate", s.false_alarm_rate)
              for m, s in settings.drift.models.items() if s.false_alarm_rate != INHERIT]
    for key, rate in rates:
        if not 0 < rate < 1:
            raise ConfigError(f"{key}: {rate} is not a probability between 0 and 1 (e.g. 0.01: "
                              "one window in a hundred without drift flags a column)")
    c = settings.capture
    if not 0 <= c.sample_percent <= 100 or c.max_file_mb <= 0 or c.max_total_mb <= 0:
        raise ConfigError("capture: sample_percent must be 0 to 100, max_file_mb and "
                          "max_total_mb more than 0")
    if settings.limits.read_timeout_s <= 0:
        raise ConfigError("limits.read_timeout_s: must be more than 0 seconds")


def absolute(path: Path) -> Path:
    """`path` made absolute and `..` folded by name, never through symlinks.

    A Kubernetes ConfigMap mounts `routing.yaml -> ..data/routing.yaml` and `..data ->
    ..<timestamp>`; at each update the kubelet makes a new timestamped folder, renames `..data`
    onto it and deletes the old one. Resolving the links at start-up would pin the gateway to a
    folder about to vanish, so paths are kept as given (docs/routing.md), as kubectl and most tools
    do.
    """
    return Path(os.path.abspath(path))


def parse_settings(raw: Any, base_dir: Path, source: Path | None = None) -> Settings:
    """Settings from the parsed YAML mapping `raw`; relative paths are taken from `base_dir`."""
    settings = _build(Settings, raw, "")
    settings = Settings(**{
        **{f.name: getattr(settings, f.name) for f in fields(Settings)},
        "model_repository": absolute(base_dir / settings.model_repository),
        "routing": absolute(base_dir / settings.routing),
        "capture": replace(settings.capture, path=absolute(base_dir / settings.capture.path)),
        "source": source,
    })
    _validate(settings)
    return settings


def load_settings(path: Path | None = None) -> Settings:
    """Settings from `path`, else from env GATEWAY_CONFIG, else from `config/gateway.yaml`."""
    if path is None:
        path = Path(os.environ.get("GATEWAY_CONFIG") or DEFAULT_CONFIG_PATH)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the gateway config ({exc.strerror}); "
                          "pass --config or set GATEWAY_CONFIG") from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    try:
        return parse_settings(raw, absolute(path).parent, source=path)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
