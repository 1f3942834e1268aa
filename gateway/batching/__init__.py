"""Dynamic batching: a bounded queue per model version, merged onnxruntime calls."""
