"""Replay a prediction capture on a model version (README "Prediction capture and replay"):
`gateway replay`."""
