"""A realistic mix of callers for a running gateway (`make locust`, headless and bounded):

- routed JSON requests with a sticky key (`x-user-id`), as an application sends them;
- pinned requests to version 1, as a team comparing versions sends them;
- binary-tensor requests of 32 rows, as a batch scorer using tritonclient sends them;
- now and then a malformed body and an unknown model, which must answer 400 and 404.

    locust -f loadtests/locustfile.py --headless --host http://127.0.0.1:8000 \
        --users 32 --spawn-rate 32 --run-time 30s

Any answer other than 200 (or the intended 400 and 404) is counted as a failure.
"""

from __future__ import annotations

import random

import numpy as np
import orjson
from locust import FastHttpUser, between, task

MODEL = "breast-cancer"
_RNG = np.random.default_rng(0)
_ROWS = _RNG.uniform(0, 30, (256, 30)).astype(np.float32)


def json_body(rows: np.ndarray) -> bytes:
    return orjson.dumps({"inputs": [{"name": "input", "shape": list(rows.shape),
                                     "datatype": "FP32", "data": rows.ravel().tolist()}]})


def binary_body(rows: np.ndarray) -> tuple[bytes, str]:
    header = orjson.dumps({"inputs": [{"name": "input", "shape": list(rows.shape),
                                       "datatype": "FP32",
                                       "parameters": {"binary_data_size": rows.nbytes}}],
                           "parameters": {"binary_data_output": True}})
    return header + rows.tobytes(), str(len(header))


class Application(FastHttpUser):
    """One caller: mostly routed single rows, some pinned, some binary batches."""

    wait_time = between(0.0, 0.01)

    def on_start(self) -> None:
        self.user_id = f"user-{random.randrange(10_000)}"

    def _row(self, count: int = 1) -> np.ndarray:
        start = random.randrange(len(_ROWS) - count)
        return _ROWS[start:start + count]

    @task(8)
    def routed(self) -> None:
        self.client.post(f"/v2/models/{MODEL}/infer", data=json_body(self._row()),
                         headers={"content-type": "application/json",
                                  "x-user-id": self.user_id}, name="routed JSON")

    @task(1)
    def pinned(self) -> None:
        self.client.post(f"/v2/models/{MODEL}/versions/1/infer", data=json_body(self._row()),
                         headers={"content-type": "application/json"}, name="pinned JSON")

    @task(1)
    def binary(self) -> None:
        body, header_length = binary_body(self._row(32))
        self.client.post(f"/v2/models/{MODEL}/infer", data=body,
                         headers={"content-type": "application/octet-stream",
                                  "inference-header-content-length": header_length},
                         name="binary 32 rows")

    @task(1)
    def malformed(self) -> None:
        """Bad input must get its 4xx and harm nothing: here, it is the expected answer."""
        with self.client.post(f"/v2/models/{MODEL}/infer", data=b'{"inputs": [{"name": ',
                              headers={"content-type": "application/json"},
                              name="malformed (400)", catch_response=True) as response:
            if response.status_code == 400 and b'"error"' in (response.content or b""):
                response.success()
            else:
                response.failure(f"expected 400 in the V2 error shape, got "
                                 f"{response.status_code}")
        with self.client.post("/v2/models/no-such-model/infer", data=json_body(self._row()),
                              headers={"content-type": "application/json"},
                              name="unknown model (404)", catch_response=True) as response:
            if response.status_code == 404:
                response.success()
            else:
                response.failure(f"expected 404, got {response.status_code}")
