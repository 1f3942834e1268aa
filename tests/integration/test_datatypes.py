"""Every V2 datatype that ONNX has, through the real server and a real ONNX graph (Identity per
type), in JSON and in binary, inputs and outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient

from tests.conftest import ECHO_TYPES, ConfigWriter, echo_values, write_echo_model
from tests.integration.conftest import Start
from tests.integration.server import GatewayProcess


@pytest.fixture
def echo_server(model_repo: Path, write_config: ConfigWriter, start: Start) -> GatewayProcess:
    write_echo_model(model_repo)
    return start(write_config(model_repo))


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_every_datatype_round_trips(echo_server: GatewayProcess, binary: bool) -> None:
    client = httpclient.InferenceServerClient(echo_server.url)
    meta = client.get_model_metadata("echo")
    assert [i["datatype"] for i in meta["inputs"]] == ECHO_TYPES
    inputs, outputs = [], []
    for datatype in ECHO_TYPES:
        tensor = httpclient.InferInput(f"in_{datatype}", [3, 2], datatype)
        tensor.set_data_from_numpy(echo_values(datatype), binary_data=binary)
        inputs.append(tensor)
        outputs.append(httpclient.InferRequestedOutput(f"out_{datatype}", binary_data=binary))
    result = client.infer("echo", inputs, outputs=outputs)
    for datatype in ECHO_TYPES:
        got = result.as_numpy(f"out_{datatype}")
        expected = echo_values(datatype)
        if datatype == "BYTES" and not binary:
            # JSON carries BYTES as strings; tritonclient hands them back as str.
            expected = np.vectorize(lambda b: b.decode())(expected).astype(object)
        assert got is not None and got.shape == (3, 2), datatype
        np.testing.assert_array_equal(got, expected, err_msg=datatype)
