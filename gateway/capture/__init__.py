"""Prediction capture (README "Prediction capture and replay"): every answered request and feedback
batch as a JSON line."""
