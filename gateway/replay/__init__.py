"""Replay a prediction capture on a model version (SPEC 10): `gateway replay`."""
