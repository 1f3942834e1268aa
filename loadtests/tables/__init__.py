"""The tables of `make bench`, one module each (tables 2 and 3 share one run)."""
