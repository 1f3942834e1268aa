"""Table 1: onnxruntime called directly, the floor every served call stands on."""

from __future__ import annotations

from loadtests.harness import (
    MODEL,
    Context,
    Table,
)


def run(ctx: Context) -> list[Table]:
    rows = [[str(n), f"{ctx.floor(n, 1):.1f}", f"{ctx.floor(n, 2):.1f}"] for n in (1, 32)]
    return [Table(f"1. onnxruntime called directly, {MODEL} version 2 (median µs per call)",
                  ["rows", "intra_op=1", "intra_op=2"], rows)]
