"""Model runtime: the repository on disk, manifests, and onnxruntime sessions."""
