"""HTTP edge: Starlette endpoints and plain ASGI middleware."""
