"""Where replayed requests go: the version in-process, or pinned on a running gateway.

- `InProcess` loads the version from the model repository with serving's own code (the sha256
  check, the execution provider, the thread settings, the signature check of every request) and
  merges requests into onnxruntime calls of up to `batching.max_batch_size` rows as serving's
  batcher does (a request is never split; a version whose graph has no batch dimension gets
  one call per request). A request's latency is the call it rode in: the inference time
  serving would spend on it with full batches.
- `Remote` sends each captured request, as captured, to
  `POST <url>/v2/models/<model>/versions/<version>/infer` over one kept-alive connection, its
  inputs and outputs in the V2 binary tensor extension as tritonclient sends them (any Open
  Inference Protocol server takes it: Triton, KServe, this gateway; see gateway.replay.wire);
  its latency is the round trip. A request the server refuses counts as failed, with the
  reason.

Both answer the outputs as arrays, the way replay compares them.
"""

from __future__ import annotations

import http.client
import time
from typing import Protocol
from urllib.parse import quote, urlsplit

import numpy as np
import onnxruntime as ort
import orjson

from gateway.errors import BadRequest
from gateway.protocol.request import InferRequest
from gateway.protocol.validate import check_request
from gateway.replay.reader import (
    Captured,
    CaptureError,
    Redacted,
    decode_tensors,
)
from gateway.replay.wire import binary_request, read_outputs
from gateway.runtime.providers import choose_providers
from gateway.runtime.repository import Repository, label_output_of
from gateway.runtime.session import LoadError, load_session
from gateway.settings import Settings
from gateway.tensors import Tensors


class ReplayFailed(Exception):
    """One request could not be replayed; the message says why."""


Outcome = tuple[Tensors, float] | Exception
"""A replayed request's outputs and seconds taken; or why it was not replayed: ReplayFailed,
Redacted, or ValueError (a record that is not what capture writes)."""


class Target(Protocol):
    name: str
    label: str | None
    """The output holding the predicted label, if the version has one."""

    def run(self, requests: list[Captured]) -> list[Outcome]:
        """Send each request, one call each, in order."""
        ...

    def run_merged(self, requests: list[Captured], inputs: Tensors,
                   rows: list[int]) -> tuple[Tensors, np.ndarray] | None:
        """The outputs of all `requests` (their `inputs` concatenated, `rows` each), merged
        into calls as serving's batcher merges them, and each request's seconds (its call's);
        None when they are not to be merged (then `run` takes them one by one)."""
        ...

    def close(self) -> None: ...


def find_version(repository: Repository, model: str, version: int) -> None:
    """CaptureError unless the repository has this version of the model."""
    if model not in repository:
        raise CaptureError(f"model {model!r} is not in the model repository (it has "
                           f"{', '.join(sorted(repository)) or 'no models'})")
    if version not in repository[model]:
        raise CaptureError(f"model {model!r} has no version {version} in the repository (it "
                           f"has {', '.join(map(str, sorted(repository[model])))})")


class InProcess:
    def __init__(self, settings: Settings, repository: Repository, model: str,
                 version: int) -> None:
        find_version(repository, model, version)
        entry = repository[model][version]
        providers = choose_providers(settings.execution_provider, ort.get_available_providers())
        try:
            self.session = load_session(entry, providers, settings.ort_threads.intra_op,
                                        settings.ort_threads.inter_op)
        except LoadError as exc:
            raise CaptureError(f"model {model!r} version {version} cannot be loaded: "
                               f"{exc}") from None
        self.name = f"in-process ({self.session.provider})"
        self.label = label_output_of(entry.manifest, [o.name for o in self.session.outputs])
        self._max_rows = settings.limits.max_batch_rows
        self._merge_rows = settings.batching.max_batch_size

    def run(self, requests: list[Captured]) -> list[Outcome]:
        return [self._run_one(request) for request in requests]

    def run_merged(self, requests: list[Captured], inputs: Tensors,
                   rows: list[int]) -> tuple[Tensors, np.ndarray] | None:
        session = self.session
        if not session.batchable or max(rows) > self._max_rows:
            return None
        first = {name: array[:rows[0]] for name, array in inputs.items()}
        if self._refusal(first, {t["name"]: t["datatype"] for t in requests[0]["inputs"]}):
            return None  # one by one, so each is refused with its reason
        seconds = np.empty(len(rows))
        parts: list[Tensors] = []
        clock = time.perf_counter
        start_request, start_row = 0, 0
        while start_request < len(rows):
            end_request, end_row = start_request + 1, start_row + rows[start_request]
            while (end_request < len(rows)
                   and end_row + rows[end_request] - start_row <= self._merge_rows):
                end_row += rows[end_request]
                end_request += 1
            feeds = {name: array[start_row:end_row] for name, array in inputs.items()}
            began = clock()
            try:
                parts.append(session.run(feeds))
            except Exception:  # onnxruntime raises several unrelated types: one by one
                return None
            seconds[start_request:end_request] = clock() - began
            start_request, start_row = end_request, end_row
        merged = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
        return merged, seconds

    def _run_one(self, request: Captured) -> Outcome:
        try:
            inputs, datatypes = decode_tensors(request["inputs"])
        except (Redacted, ValueError) as exc:
            return exc
        why = self._refusal(inputs, datatypes)
        if why is not None:
            return ReplayFailed(why)
        start = time.perf_counter()
        try:
            outputs = self.session.run(inputs)
        except Exception as exc:  # onnxruntime raises several unrelated types
            return ReplayFailed(f"onnxruntime: {str(exc).splitlines()[0][:200]}")
        return outputs, time.perf_counter() - start

    def _refusal(self, inputs: Tensors, datatypes: dict[str, str]) -> str | None:
        """Why serving would refuse these inputs (its own check), or None."""
        try:
            check_request(InferRequest(None, {}, inputs, datatypes, None, False),
                          self.session.inputs, self.session.outputs, self._max_rows)
        except BadRequest as exc:
            return exc.message
        return None

    def close(self) -> None:
        pass


class Remote:
    def __init__(self, url: str, repository: Repository, model: str, version: int,
                 timeout_s: float = 60.0) -> None:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise CaptureError(f"--against {url!r}: expected http://host:port")
        self.name = url
        self._conn_args = (parts.hostname, parts.port, timeout_s)
        self._https = parts.scheme == "https"
        self._conn = self._connect()
        base = f"{parts.path.rstrip('/')}/v2/models/{quote(model, safe='')}/versions/{version}"
        self._path = f"{base}/infer"
        status, _, data = self._call("GET", base, None)
        if status != 200:
            raise CaptureError(f"{url} does not serve model {model!r} version {version}: "
                               f"{status} {_error_of(data)}")
        try:
            doc = orjson.loads(data)
            names = [str(o.get("name")) for o in doc.get("outputs", []) if isinstance(o, dict)]
        except (orjson.JSONDecodeError, AttributeError):
            raise CaptureError(f"{url}: the metadata of {model!r} version {version} is not "
                               "V2 model metadata") from None
        manifest = {}
        if model in repository and version in repository[model]:
            manifest = repository[model][version].manifest
        self.label = label_output_of(manifest, names)

    def _connect(self) -> http.client.HTTPConnection:
        host, port, timeout = self._conn_args
        kind = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        return kind(host, port, timeout=timeout)

    def _call(self, method: str, path: str, body: bytes | None,
              headers: dict[str, str] | None = None) -> tuple[int, str | None, bytes]:
        """Status, Inference-Header-Content-Length and body of one exchange."""
        for attempt in (1, 2):  # a kept-alive connection the server closed: once more, anew
            try:
                self._conn.request(method, path, body=body, headers=headers or {})
                response = self._conn.getresponse()
                return (response.status, response.getheader("Inference-Header-Content-Length"),
                        response.read())
            except (http.client.HTTPException, OSError) as exc:
                self._conn.close()
                self._conn = self._connect()
                if attempt == 2:
                    raise CaptureError(f"{self.name}: {exc}") from None
        raise AssertionError("unreachable")

    def run(self, requests: list[Captured]) -> list[Outcome]:
        return [self._run_one(request) for request in requests]

    def run_merged(self, requests: list[Captured], inputs: Tensors,
                   rows: list[int]) -> tuple[Tensors, np.ndarray] | None:
        return None  # each request on its own, as a client would send it

    def _run_one(self, request: Captured) -> Outcome:
        try:
            inputs, datatypes = decode_tensors(request["inputs"])
        except Redacted as redacted:
            return redacted
        except ValueError as exc:
            return ReplayFailed(f"the captured inputs cannot be read: {exc}")
        body, header_length = binary_request(request.get("request_id") or "", inputs, datatypes)
        start = time.perf_counter()
        status, answer_length, data = self._call(
            "POST", self._path, body, {"Content-Type": "application/octet-stream",
                                       "Inference-Header-Content-Length": str(header_length)})
        elapsed = time.perf_counter() - start
        if status != 200:
            return ReplayFailed(f"{status} {_error_of(data)}"[:300])
        try:
            return read_outputs(data, answer_length), elapsed
        except ValueError as exc:
            return ReplayFailed(f"the answer's outputs cannot be read: {exc}")

    def close(self) -> None:
        self._conn.close()


def _error_of(data: bytes) -> str:
    try:
        doc = orjson.loads(data)
        return str(doc.get("error", "")) if isinstance(doc, dict) else ""
    except orjson.JSONDecodeError:
        return data[:200].decode(errors="replace")
