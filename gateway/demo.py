"""`gateway demo`: traffic whose truth is known, so a release can be watched on one machine.

A rollout only moves on evidence: routed requests for the error and latency gates, labels for the
accuracy gate. This command is both: it sends the held-out rows of a model (rows training never saw,
shipped with their true labels beside the model folders) as unpinned requests from many sticky
users, and posts each answer's true label back with the version and prediction the answer gave
(docs/endpoints.md), so live accuracy per version is measured on rows where the versions truly
differ (on all
569 rows of the breast-cancer data, which training saw, versions 1 and 2 are equally accurate).
"""

from __future__ import annotations

import http.client
import ipaddress
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import orjson
from prometheus_client.parser import text_string_to_metric_families

MAX_MINUTES = 60.0
MAX_RATE = 1000.0
UNREACHABLE_S = 10.0
"""Stop when the gateway cannot be reached for this long: nothing left to show."""
FEEDBACK_BATCH = 1000
"""Labels per feedback post, well under the gateway's default limit of 10,000 items."""


class DemoError(Exception):
    """A reason to stop, with a message that says what to do."""


@dataclass(frozen=True)
class HeldOut:
    """The rows of `<model>.held-out.json`: each row's JSON text, ready to splice into bodies."""

    model: str
    input_name: str
    datatype: str
    label_output: str
    rows: list[str]
    labels: list[int]
    features: int


def load_held_out(path: Path) -> HeldOut:
    try:
        document = orjson.loads(path.read_bytes())
        rows = [orjson.dumps(row).decode() for row in document["rows"]]
        labels = [int(label) for label in document["labels"]]
        held = HeldOut(document["model"], document["input"]["name"],
                       document["input"]["datatype"], document["label_output"], rows, labels,
                       len(document["rows"][0]))
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError, IndexError) as exc:
        raise DemoError(f"{path}: not a held-out rows file ({exc}); pass --rows FILE, or "
                        "rewrite it with `python models/held_out.py`") from exc
    if len(rows) != len(labels):
        raise DemoError(f"{path}: {len(rows)} rows but {len(labels)} labels")
    return held


def check_url(url: str, allow_remote: bool) -> tuple[str, int]:
    """Host and port of an http:// URL; anything but loopback needs --allow-remote, so a demo's
    load never lands on a shared gateway by a typo."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise DemoError(f"--url {url!r}: give http://HOST:PORT, e.g. http://127.0.0.1:8000")
    host = parts.hostname
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not allow_remote:
        raise DemoError(f"--url {url!r} is not this machine: the demo sends load and labels, "
                        "so it stays on loopback unless you add --allow-remote")
    return host, parts.port or 80


def request_body(held: HeldOut, picks: list[int], request_id: str) -> bytes:
    data = ",".join(held.rows[i] for i in picks)
    return (f'{{"id":"{request_id}","inputs":[{{"name":"{held.input_name}","shape":'
            f'[{len(picks)},{held.features}],"datatype":"{held.datatype}","data":[{data}]}}]}}'
            ).encode()


def feedback_items(held: HeldOut, picks: list[int], request_id: str,
                   answer: dict[str, Any]) -> list[dict[str, Any]]:
    """One item per row: the true label, and the version and prediction the answer gave."""
    version = str(answer["model_version"])
    output = next(o for o in answer["outputs"] if o["name"] == held.label_output)
    return [{"label": held.labels[i], "version": version, "prediction": prediction,
             "id": request_id} for i, prediction in zip(picks, output["data"], strict=True)]


@dataclass
class Tally:
    requests: Counter[str] = field(default_factory=Counter)
    """Answered requests by the version that served."""
    errors: Counter[str] = field(default_factory=Counter)
    """Failed requests by cause (a status code, or the gateway being unreachable)."""
    labels: Counter[str] = field(default_factory=Counter)
    """Labels the gateway accepted, by version."""
    correct: Counter[str] = field(default_factory=Counter)
    """Of those, rows whose prediction was the true label."""

    def line(self, elapsed_s: float, weights: str) -> str:
        versions = sorted(self.requests, key=lambda v: (len(v), v))
        served = ", ".join(f"v{v} {self.requests[v]:,}" for v in versions)
        labelled = ", ".join(
            f"v{v} {self.labels[v]:,} acc {self.correct[v] / self.labels[v]:.3f}"
            for v in versions if self.labels[v])
        errors = ", ".join(f"{cause} ×{n}" for cause, n in self.errors.most_common()) or "0"
        return (f"{int(elapsed_s) // 60}:{int(elapsed_s) % 60:02d}  requests "
                f"{sum(self.requests.values()):,} ({served or 'none yet'})  labels posted "
                f"{sum(self.labels.values()):,} ({labelled or 'none yet'})  weights "
                f"{weights}  errors {errors}")


class Client:
    """One keep-alive connection, opened again after a failure."""

    def __init__(self, host: str, port: int, timeout_s: float = 10.0) -> None:
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self._conn: http.client.HTTPConnection | None = None

    def call(self, method: str, path: str, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
        try:
            self._conn.request(method, path, body=body, headers={
                "content-type": "application/json", **(headers or {})})
            response = self._conn.getresponse()
            return response.status, response.read()
        except BaseException:
            # Ctrl-C too: a connection left between a request and its answer would fail the
            # next call (the labels and the report sent after Ctrl-C) as if unreachable.
            self._conn.close()
            self._conn = None
            raise


def route_weights(metrics_text: str, model: str) -> str:
    """`v1 95, v2 5` from /metrics: the weights the gateway applies, which the controller moves."""
    weights = {}
    for family in text_string_to_metric_families(metrics_text):
        if family.name == "gateway_route_weight":
            weights = {s.labels["version"]: s.value for s in family.samples
                       if s.labels.get("model") == model}
    return ", ".join(f"v{v} {w:g}" for v, w in sorted(weights.items(),
                                                       key=lambda i: (len(i[0]), i[0])))


@dataclass
class Options:
    url: str
    model: str
    rows_file: Path
    rate_per_s: float
    minutes: float
    rows_per_request: int
    users: int
    sticky_header: str
    every_s: float
    seed: int
    allow_remote: bool


def run_demo(options: Options, out: TextIO = sys.stdout) -> int:
    """Send, label and report until `minutes` are up; 1 when the gateway cannot be reached."""
    try:
        return _Demo(options, out).run()
    except DemoError as exc:
        print(f"gateway demo: {exc}", file=sys.stderr)
        return 1


class _Demo:
    def __init__(self, options: Options, out: TextIO) -> None:
        if not 0 < options.minutes <= MAX_MINUTES or not 0 < options.rate_per_s <= MAX_RATE:
            raise DemoError(f"--minutes must be in (0, {MAX_MINUTES:g}] and --rate in "
                            f"(0, {MAX_RATE:g}] requests per second")
        self.options, self.out = options, out
        self.client = Client(*check_url(options.url, options.allow_remote))
        self.held = load_held_out(options.rows_file)
        if not 1 <= options.rows_per_request <= len(self.held.rows):
            raise DemoError(f"--rows-per-request must be 1 to {len(self.held.rows)}")
        self.rng = random.Random(options.seed)
        self.tally = Tally()
        self.pending: list[dict[str, Any]] = []
        self.sent = 0
        self.unreachable_since: float | None = None
        self.weights: str | None = None

    def _call(self, method: str, path: str, body: bytes | None = None,
              headers: dict[str, str] | None = None) -> tuple[int, bytes] | None:
        """The answer, or None when the gateway cannot be reached (for too long: DemoError)."""
        try:
            answer = self.client.call(method, path, body, headers)
        except (OSError, http.client.HTTPException) as exc:
            now = time.monotonic()
            self.unreachable_since = self.unreachable_since or now
            if now - self.unreachable_since > UNREACHABLE_S:
                raise DemoError(f"lost the gateway at {self.options.url} ({exc}) for "
                                f"{UNREACHABLE_S:g} s; stopping") from exc
            self.tally.errors["unreachable"] += 1
            return None
        self.unreachable_since = None
        return answer

    def _start(self) -> None:
        model = self.options.model
        try:
            status, body = self.client.call("GET", f"/v2/models/{model}")
        except (OSError, http.client.HTTPException) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise DemoError(f"cannot reach a gateway at {self.options.url} ({reason}): start "
                            "one with `make serve` in another terminal, or pass --url") from exc
        if status != 200:
            raise DemoError(f"{self.options.url} does not serve model {model!r} ({status}: "
                            f"{body[:200].decode(errors='replace')}); pass --model")
        if self.held.model != model:
            raise DemoError(f"{self.options.rows_file} holds rows of {self.held.model!r}, not "
                            f"{model!r}; pass --rows FILE")

    def _send(self) -> None:
        self.sent += 1
        request_id = f"demo-{self.options.seed}-{self.sent}"
        picks = self.rng.sample(range(len(self.held.rows)), self.options.rows_per_request)
        user = f"user-{self.rng.randrange(self.options.users)}"
        answer = self._call("POST", f"/v2/models/{self.options.model}/infer",
                            request_body(self.held, picks, request_id),
                            {self.options.sticky_header: user})
        if answer is None:
            return
        status, body = answer
        if status != 200:
            self.tally.errors[str(status)] += 1
            return
        items = feedback_items(self.held, picks, request_id, orjson.loads(body))
        self.tally.requests[items[0]["version"]] += 1
        self.pending.extend(items)

    def _post_labels(self) -> None:
        while self.pending:
            batch = self.pending[:FEEDBACK_BATCH]
            try:
                answer = self._call("POST", f"/v2/models/{self.options.model}/feedback",
                                    orjson.dumps({"feedback": batch}))
            except KeyboardInterrupt:
                # Ctrl-C while the answer was awaited: the gateway may have taken this batch,
                # and labels sent twice would count twice in its accuracy. Let them go.
                del self.pending[:len(batch)]
                raise
            if answer is None:
                return  # kept for the next try
            status, body = answer
            if status != 200:
                raise DemoError(f"the gateway refused the labels ({status}: "
                                f"{body[:300].decode(errors='replace')})")
            del self.pending[:len(batch)]
            for item in batch:
                self.tally.labels[item["version"]] += 1
                self.tally.correct[item["version"]] += item["label"] == item["prediction"]

    def _report(self, elapsed_s: float) -> None:
        answer = self._call("GET", "/metrics")
        weights = (route_weights(answer[1].decode(), self.options.model)
                   if answer and answer[0] == 200 else "?")
        if weights != "?":
            if self.weights not in (None, weights):  # a rollout (or a person) moved them
                print(f"weights changed: {self.weights} -> {weights}", file=self.out)
            self.weights = weights
        print(self.tally.line(elapsed_s, weights), file=self.out, flush=True)

    def run(self) -> int:
        self._start()
        o = self.options
        print(f"gateway demo: {o.rate_per_s:g} requests/s of {o.rows_per_request} held-out "
              f"rows of {o.model} from {o.users:,} users ({o.sticky_header}), unpinned, for "
              f"{o.minutes:g} min, labels posted back each second; a line every "
              f"{o.every_s:g} s (Ctrl-C stops)", file=self.out, flush=True)
        start = time.monotonic()
        end, next_send = start + o.minutes * 60, start
        next_post, next_report = start + 1.0, start + o.every_s
        try:
            while (now := time.monotonic()) < end:
                if now < next_send:
                    time.sleep(min(next_send, end) - now)
                    continue
                self._send()
                # Paced, not bursty: after a stall the schedule restarts from now.
                next_send = max(next_send + 1 / o.rate_per_s, time.monotonic() - 1.0)
                if time.monotonic() >= next_post:
                    self._post_labels()
                    next_post = time.monotonic() + 1.0
                if time.monotonic() >= next_report:
                    self._report(time.monotonic() - start)
                    next_report += o.every_s
        except KeyboardInterrupt:
            self._post_labels()
            self._report(time.monotonic() - start)
            return 130
        self._post_labels()
        self._report(time.monotonic() - start)
        if not self.tally.requests:
            raise DemoError(f"no request was answered ({self.tally.line(0, '?')})")
        if self.pending:
            raise DemoError(f"{len(self.pending)} labels could not be posted: the gateway "
                            f"at {o.url} stopped answering")
        return 0


def add_arguments(parser: Any) -> None:
    """The `gateway demo` options (an argparse parser)."""
    parser.add_argument("--url", default="http://127.0.0.1:8000",
                        help="the gateway (default http://127.0.0.1:8000; loopback only "
                             "unless --allow-remote)")
    parser.add_argument("--model", default="breast-cancer", help="default breast-cancer")
    parser.add_argument("--config", help="gateway.yaml, for its model repository (default: "
                                         "$GATEWAY_CONFIG, else config/gateway.yaml)")
    parser.add_argument("--rows", metavar="FILE", type=Path,
                        help="held-out rows and labels (default: MODEL.held-out.json beside "
                             "the model folders of --config's model repository)")
    parser.add_argument("--rate", type=float, default=50.0,
                        help="requests per second (default 50)")
    parser.add_argument("--minutes", type=float, default=10.0,
                        help=f"stop after this long (default 10, at most {MAX_MINUTES:g})")
    parser.add_argument("--rows-per-request", type=int, default=8,
                        help="held-out rows in each request, drawn at random (default 8)")
    parser.add_argument("--users", type=int, default=10_000,
                        help="distinct user ids sent in the sticky header (default 10,000)")
    parser.add_argument("--sticky-header", default="x-user-id",
                        help="the routing policy's sticky_key (default x-user-id)")
    parser.add_argument("--every-s", type=float, default=5.0,
                        help="seconds between progress lines (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="rows and users drawn (default 0)")
    parser.add_argument("--allow-remote", action="store_true",
                        help="allow a --url that is not this machine")


def demo(args: Any) -> int:
    """The `gateway demo` command, from parsed arguments."""
    rows_file = args.rows
    if rows_file is None:
        from gateway.settings import load_settings

        repository = load_settings(Path(args.config) if args.config else None).model_repository
        rows_file = repository / f"{args.model}.held-out.json"
    return run_demo(Options(args.url, args.model, rows_file, args.rate, args.minutes,
                            args.rows_per_request, args.users, args.sticky_header, args.every_s,
                            args.seed, args.allow_remote))
