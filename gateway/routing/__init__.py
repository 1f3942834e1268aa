"""Routing: which model version answers a request (policy, decision, shadow, live reload)."""
