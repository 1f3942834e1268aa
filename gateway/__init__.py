"""The gateway: an async ONNX model-serving gateway with rollout control and drift monitoring."""

__version__ = "0.1.0"
