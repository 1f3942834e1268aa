"""Open Inference Protocol (V2) encode and decode: pure functions over bytes and NumPy arrays."""
