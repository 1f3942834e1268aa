"""Benchmarks, load and soak tests of the gateway (`make bench`, `make locust`, `make soak`)."""
