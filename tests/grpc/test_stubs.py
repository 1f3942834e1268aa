"""The shipped gRPC messages: `gateway/grpc/v2_pb2.py` is what the pinned grpcio-tools makes of
`v2.proto` (regenerated here and compared), and every message has the fields of Triton's own
(the copy tritonclient ships) with the same numbers and types, so they are the same on the wire."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf.descriptor import Descriptor
from tritonclient.grpc import service_pb2

from gateway.grpc import v2_pb2
from tests.conftest import ROOT


def test_the_shipped_stubs_are_generated_from_the_proto(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I.",
                           f"--python_out={tmp_path}", f"--pyi_out={tmp_path}",
                           "gateway/grpc/v2.proto"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    for name in ("v2_pb2.py", "v2_pb2.pyi"):
        assert (tmp_path / "gateway" / "grpc" / name).read_text() == \
            (ROOT / "gateway" / "grpc" / name).read_text(), f"regenerate {name} (README, gRPC)"


def fields(descriptor: Descriptor) -> dict[str, tuple[int, int, bool, str]]:
    """Name -> number, type, repeated, and the message type's name without its package."""
    package = descriptor.file.package + "."
    return {f.name: (f.number, f.type, f.is_repeated,
                     f.message_type.full_name.removeprefix(package) if f.message_type else "")
            for f in descriptor.fields}


@pytest.mark.parametrize("name", sorted(v2_pb2.DESCRIPTOR.message_types_by_name))
def test_each_message_is_tritons_on_the_wire(name: str) -> None:
    ours = v2_pb2.DESCRIPTOR.message_types_by_name[name]
    theirs = service_pb2.DESCRIPTOR.message_types_by_name[name]
    pending = [(ours, theirs)]
    while pending:
        a, b = pending.pop()
        assert fields(a) == fields(b), a.full_name
        pending += [(a.nested_types_by_name[n], b.nested_types_by_name[n])
                    for n in a.nested_types_by_name]
