"""Load one model version into an onnxruntime session: verify its checksum, read its signature
from the ONNX graph; and warm it up before it takes traffic (README "Model repository").
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from gateway.runtime.repository import VersionEntry
from gateway.tensors import BY_ORT_TYPE, DATATYPES, TensorSpec

logger = logging.getLogger("gateway.runtime")


class LoadError(Exception):
    """A version cannot be served; the message says why (shown in metadata, ready and the log)."""


@dataclass(frozen=True)
class ModelSession:
    model: str
    version: int
    session: ort.InferenceSession
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    provider: str
    """The execution provider that runs the graph, e.g. CPUExecutionProvider."""

    @property
    def batchable(self) -> bool:
        """True when every input and output has a dynamic first (batch) dimension."""
        return all(spec.shape and spec.shape[0] < 0 for spec in (*self.inputs, *self.outputs))

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the graph on `feeds`; all outputs, by name."""
        results = self.session.run(None, feeds)
        return {spec.name: result for spec, result in zip(self.outputs, results, strict=True)}


def _spec(node: ort.NodeArg) -> TensorSpec:
    datatype = BY_ORT_TYPE.get(node.type)
    if datatype is None:
        raise LoadError(f"{node.name!r} has type {node.type}, which the V2 protocol cannot carry")
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in node.shape)
    return TensorSpec(node.name, datatype.name, shape)


def warmup_feeds(inputs: tuple[TensorSpec, ...]) -> dict[str, np.ndarray]:
    """One row of zeros (empty strings) per input, dynamic dimensions set to 1."""
    feeds = {}
    for spec in inputs:
        shape = tuple(1 if d < 0 else d for d in spec.shape)
        dtype = DATATYPES[spec.datatype].dtype
        feeds[spec.name] = (np.full(shape, "", dtype=object) if dtype.kind == "O"
                            else np.zeros(shape, dtype=dtype))
    return feeds


def warm_up(session: ModelSession,
            sample: dict[str, np.ndarray] | None) -> dict[str, np.ndarray] | None:
    """Answer one request before taking traffic; the feeds that worked, for timing, or None.

    With the version's own sample (`sample.json`), a failure fails the version: the sample is
    what its publisher says it answers. Without one, a request is made from the signature, and
    its failure is only a warning: zeros or empty strings are not valid input for every model
    (a graph that parses numbers out of strings rejects ""), and real requests may still work.
    """
    if sample is not None:
        try:
            session.run(sample)
        except Exception as exc:
            raise LoadError(f"warm-up with sample.json failed: {exc}") from exc
        return sample
    feeds = warmup_feeds(session.inputs)
    try:
        session.run(feeds)
    except Exception as exc:
        logger.warning("model '%s' version %d: warm-up with a request made from its signature "
                       "failed (%s); it serves anyway. Ship a sample.json beside model.onnx "
                       "to warm it up with real input", session.model, session.version,
                       str(exc).splitlines()[0][:300])
        return None
    return feeds


def load_session(entry: VersionEntry, providers: list[str], intra_op_threads: int,
                 inter_op_threads: int) -> ModelSession:
    """Verify and load `entry`; raises LoadError with the reason when it cannot be served."""
    if entry.problem:
        raise LoadError(entry.problem)
    try:
        model_bytes = entry.model_file.read_bytes()
    except OSError as exc:
        raise LoadError(f"cannot read model.onnx: {exc.strerror}") from exc
    # Hash the very bytes that are loaded: no window between check and use.
    actual = hashlib.sha256(model_bytes).hexdigest()
    if actual != entry.sha256:
        raise LoadError(f"model.onnx has sha256 {actual[:16]}…, the manifest says "
                        f"{entry.sha256[:16]}…: the file was changed after release; restore it "
                        "or publish it as a new version")
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = inter_op_threads
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(model_bytes, options, providers=providers)
    except Exception as exc:  # onnxruntime raises several unrelated types for a bad graph
        raise LoadError(f"onnxruntime cannot load model.onnx: {exc}") from exc
    inputs = tuple(_spec(node) for node in session.get_inputs())
    outputs = tuple(_spec(node) for node in session.get_outputs())
    loaded = ModelSession(entry.model, entry.version, session, inputs, outputs,
                          session.get_providers()[0])
    if loaded.provider != providers[0]:
        # onnxruntime falls back silently when, e.g., the CUDA libraries cannot be loaded.
        logger.warning("%s version %d asked for %s but runs on %s", entry.model, entry.version,
                       providers[0], loaded.provider)
    logger.info("loaded %s version %d on %s (sha256 %s…)", entry.model, entry.version,
                loaded.provider, actual[:12])
    return loaded
