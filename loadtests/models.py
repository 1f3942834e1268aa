"""Synthetic models for the benchmarks (and the tests' slow model), built here with
onnx.helper, and onnxruntime's own time per call: the floor the gateway is measured against."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from gateway.batching.execution import time_call


def onnxruntime_call_us(model: bytes | str, rows: np.ndarray, intra_op: int) -> float:
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    return time_call(lambda: session.run(None, {"input": rows}), repeats=300) * 1e6


def deep_mlp(hidden: int = 16, layers: int = 1000, seed: int = 0) -> bytes:
    """A deep, narrow MLP: per-operator overhead dominates, so 32 rows cost little more than 1."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    initializers, nodes, previous, width = [], [], "input", 30
    for i in range(layers):
        weights = (rng.standard_normal((width, hidden)) / np.sqrt(width)).astype(np.float32)
        initializers.append(numpy_helper.from_array(weights, f"w{i}"))
        nodes += [helper.make_node("MatMul", [previous, f"w{i}"], [f"m{i}"]),
                  helper.make_node("Tanh", [f"m{i}"], [f"t{i}"])]
        previous, width = f"t{i}", hidden
    head = (rng.standard_normal((width, 2)) / np.sqrt(width)).astype(np.float32)
    initializers.append(numpy_helper.from_array(head, "head"))
    nodes += [helper.make_node("MatMul", [previous, "head"], ["logits"]),
              helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1)]
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 30])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 2])],
        initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())
