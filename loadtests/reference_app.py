"""The reference the gateway is measured against: the smallest reasonable V2 server in Python.

Starlette on uvicorn (uvloop, httptools), orjson, session.run through Starlette's threadpool; it
reads JSON or binary FP32 inputs and answers JSON. No validation, routing, batching or metrics:
what is left is the floor a Python serving stack stands on.

With `--inline`, session.run is called on the event loop itself, with no hand-off to a thread:
for a cheap model the fastest this stack can answer at all, "the limit" that `make bench`
reports every gateway row against (it would stall every other request behind a slow model, so
no server that must stay responsive can be built this way).

    python loadtests/reference_app.py --model models/breast-cancer/2/model.onnx --port 8100
"""

from __future__ import annotations

import argparse

import numpy as np
import onnxruntime as ort
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def build_app(model_path: str, inline: bool = False) -> Starlette:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
    output_names = [o.name for o in session.get_outputs()]

    async def infer(request: Request) -> Response:
        body = await request.body()
        header_length = request.headers.get("inference-header-content-length")
        doc = orjson.loads(body[:int(header_length)] if header_length else body)
        tensor = doc["inputs"][0]
        if header_length:
            data = np.frombuffer(body, np.float32, offset=int(header_length))
        else:
            data = np.asarray(tensor["data"], dtype=np.float32)
        feeds = {tensor["name"]: data.reshape(tensor["shape"])}
        if inline:
            results = session.run(None, feeds)
        else:
            results = await run_in_threadpool(session.run, None, feeds)
        outputs = [{"name": name, "datatype": "FP32", "shape": list(r.shape),
                    "data": r.ravel()} for name, r in zip(output_names, results, strict=True)]
        return Response(orjson.dumps({"model_name": request.path_params["model"],
                                      "outputs": outputs}, option=orjson.OPT_SERIALIZE_NUMPY),
                        media_type="application/json")

    return Starlette(routes=[Route("/v2/models/{model}/infer", infer, methods=["POST"])])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--inline", action="store_true",
                        help="call session.run on the event loop: the limit of this stack")
    args = parser.parse_args()
    uvicorn.run(build_app(args.model, args.inline), host="127.0.0.1", port=args.port, loop="uvloop",
                http="httptools", access_log=False, log_level="warning")


if __name__ == "__main__":
    main()
