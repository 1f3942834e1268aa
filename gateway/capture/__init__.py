"""Prediction capture (SPEC 10): every answered request and feedback batch as a JSON line."""
