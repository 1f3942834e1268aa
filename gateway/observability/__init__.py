"""Observability: metrics (and, in later work, tracing and drift), fed by events from above."""
