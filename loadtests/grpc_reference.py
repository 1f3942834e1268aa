"""The gRPC reference of `make bench` table 13: the smallest reasonable V2 gRPC server in Python.

grpc.aio on uvloop, the gateway's own generated messages, session.run called on the event loop
(no hand-off: the fastest a Python gRPC server can call onnxruntime for a cheap model). It reads
FP32 inputs typed or raw and answers every output raw. No validation, routing, batching, metrics
or metadata: what is left is the floor a Python gRPC stack stands on. With `--noop` ModelInfer
answers a fixed message without decoding or running anything: the transport's own cost.

    python -m loadtests.grpc_reference --model models/breast-cancer/2/model.onnx --port 8101
"""

from __future__ import annotations

import argparse
import asyncio

import grpc
import numpy as np
import onnxruntime as ort
import uvloop

from gateway.grpc import v2_pb2 as pb

SERVICE = "inference.GRPCInferenceService"


def handler(model_path: str, noop: bool) -> grpc.GenericRpcHandler:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
    output_names = [o.name for o in session.get_outputs()]
    fixed = pb.ModelInferResponse(model_name="noop")

    async def infer(message: pb.ModelInferRequest,
                    context: grpc.aio.ServicerContext) -> pb.ModelInferResponse:
        if noop:
            return fixed
        tensor = message.inputs[0]
        if message.raw_input_contents:
            data = np.frombuffer(message.raw_input_contents[0], np.float32)
        else:
            data = np.array(tensor.contents.fp32_contents, np.float32)
        results = session.run(None, {tensor.name: data.reshape(tuple(tensor.shape))})
        response = pb.ModelInferResponse(model_name=message.model_name, model_version="1")
        for name, result in zip(output_names, results, strict=True):
            response.outputs.add(name=name, datatype="FP32" if result.dtype == np.float32
                                 else "INT64", shape=result.shape)
            response.raw_output_contents.append(result.tobytes())
        return response

    method = grpc.unary_unary_rpc_method_handler(
        infer, request_deserializer=pb.ModelInferRequest.FromString,
        response_serializer=pb.ModelInferResponse.SerializeToString)
    return grpc.method_handlers_generic_handler(SERVICE, {"ModelInfer": method})


async def serve(model_path: str, port: int, noop: bool) -> None:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers([handler(model_path, noop)])
    if not server.add_insecure_port(f"127.0.0.1:{port}"):
        raise OSError(f"port {port} is taken")
    await server.start()
    print(f"serving gRPC on 127.0.0.1:{port}", flush=True)
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, default=8101)
    parser.add_argument("--noop", action="store_true",
                        help="answer a fixed message: the transport's own cost")
    args = parser.parse_args()
    uvloop.install()
    asyncio.run(serve(args.model, args.port, args.noop))


if __name__ == "__main__":
    main()
