"""`gateway demo` against a real gateway: held-out rows sent unpinned by sticky users, and their
true labels posted back with the version and prediction each answer gave."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson

from tests.conftest import MODEL, MODELS, ROOT, ConfigWriter
from tests.integration.conftest import Start
from tests.integration.server import GatewayProcess, free_port

HELD_OUT = MODELS / f"{MODEL}.held-out.json"


def held_out_split() -> tuple[np.ndarray, np.ndarray]:
    """The rows and labels models/train.py holds out, from its own constants."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    sys.path.insert(0, str(ROOT / "models"))
    try:
        import train
    finally:
        sys.path.remove(str(ROOT / "models"))
    data = load_breast_cancer()
    x, y = data.data.astype(np.float32), data.target.astype(np.int64)
    _, x_test, _, y_test = train_test_split(x, y, test_size=train.TEST_FRACTION,
                                            random_state=train.SPLIT_SEED, stratify=y)
    return x_test, y_test


def demo(*args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "demo", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout_s)


def test_the_shipped_rows_are_the_ones_training_held_out(tmp_path: Path) -> None:
    document = orjson.loads(HELD_OUT.read_bytes())
    rows, labels = held_out_split()
    assert len(labels) == 114
    assert np.array_equal(np.array(document["rows"], dtype=np.float32), rows)  # float32 exact
    assert document["labels"] == labels.tolist()
    # And the file is exactly what its script writes, so `python models/held_out.py` is a no-op.
    subprocess.run([sys.executable, str(ROOT / "models" / "held_out.py"), "--out",
                    str(tmp_path / "rows.json")], check=True, capture_output=True, timeout=120)
    assert (tmp_path / "rows.json").read_bytes() == HELD_OUT.read_bytes()


def test_the_repository_scan_does_not_take_the_rows_file_for_a_model(
        write_config: ConfigWriter) -> None:
    done = subprocess.run([sys.executable, "-m", "gateway", "check", "--config",
                           str(write_config())], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "held-out" not in done.stdout + done.stderr


def correct_rows(server: GatewayProcess, version: int) -> int:
    """How many held-out rows `version` gets right, asked pinned (which is no rollout evidence)."""
    rows, labels = held_out_split()
    body = orjson.dumps({"inputs": [{"name": "input", "shape": list(rows.shape),
                                     "datatype": "FP32", "data": rows.tolist()}]})
    answer = server.request("POST", f"/v2/models/{MODEL}/versions/{version}/infer", body).json()
    label = next(o for o in answer["outputs"] if o["name"] == "label")
    return int((np.array(label["data"]) == labels).sum())


def test_demo_traffic_is_routed_to_both_versions_and_labelled_truly(
        write_config: ConfigWriter, start: Start) -> None:
    config = write_config(routing={"models": {MODEL: {
        "traffic": [{"version": 1, "weight": 95}, {"version": 2, "weight": 5}],
        "sticky_key": "x-user-id"}}})
    server = start(config)
    # Each request carries all 114 rows in a random order, so each version's labelled rows and
    # correct rows are exact multiples of what it gets right on the held-out set.
    done = demo("--url", f"http://{server.url}", "--config", str(config),
                "--minutes", "0.2", "--rate", "50", "--rows-per-request", "114",
                "--every-s", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) >= 5 and "labels posted" in lines[-1]
    assert "weights v1 95, v2 5" in lines[-1]

    def sample(name: str, **labels: str) -> float:
        inner = ",".join(f'{k}="{v}"' for k, v in sorted({"model": MODEL, **labels}.items()))
        return server.metric(f"{name}{{{inner}}}")

    routed = {v: sample("gateway_requests_total", code="200", route="split", version=v)
              for v in ("1", "2")}
    assert routed["1"] > 0 and routed["2"] > 0, routed
    assert routed["1"] + routed["2"] >= 100  # half the 600 paced requests, on a loaded machine
    assert sample("gateway_requests_total", code="200", route="pinned", version="1") == 0
    for version in ("1", "2"):
        labelled = sample("gateway_feedback_rows_total", version=version)
        correct = sample("gateway_feedback_correct_rows_total", version=version)
        assert labelled == 114 * routed[version]
        assert correct == correct_rows(server, int(version)) * routed[version]
    assert sample("gateway_feedback_rows_total", version="none") == 0
    # Held-out accuracies that differ, as the README says: 112 and 107 of 114.
    assert correct_rows(server, 1) > correct_rows(server, 2)


def test_demo_says_how_to_start_a_gateway_when_there_is_none() -> None:
    done = demo("--url", f"http://127.0.0.1:{free_port()}", "--minutes", "0.1")
    assert done.returncode == 1
    assert "cannot reach a gateway" in done.stderr and "make serve" in done.stderr


def test_demo_stays_on_this_machine_unless_told() -> None:
    done = demo("--url", "http://192.0.2.1:8000", "--minutes", "0.1")
    assert done.returncode == 1 and "--allow-remote" in done.stderr
    bounded = demo("--minutes", "1000")
    assert bounded.returncode == 1 and "--minutes must be" in bounded.stderr


def test_demo_shows_the_weights_move_when_the_routing_changes(
        write_config: ConfigWriter, start: Start) -> None:
    config = write_config(routing={"models": {MODEL: {
        "traffic": [{"version": 1, "weight": 95}, {"version": 2, "weight": 5}],
        "sticky_key": "x-user-id"}}})
    server = start(config)
    running = subprocess.Popen(
        [sys.executable, "-m", "gateway", "demo", "--url", f"http://{server.url}", "--config",
         str(config), "--minutes", "0.2", "--rate", "20", "--every-s", "1"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert running.stdout is not None
    lines = [running.stdout.readline(), running.stdout.readline()]
    assert "weights v1 95, v2 5" in lines[-1], lines
    # What the rollout controller does on a rollback, done by hand: version 2 back to 0.
    (config.parent / "routing.yaml").write_text(orjson.dumps({"models": {MODEL: {
        "traffic": [{"version": 1, "weight": 100}, {"version": 2, "weight": 0}],
        "sticky_key": "x-user-id"}}}).decode())
    out, err = running.communicate(timeout=120)
    assert running.returncode == 0, out + err
    assert "weights changed: v1 95, v2 5 -> v1 100, v2 0" in out
    assert "weights v1 100, v2 0" in out.splitlines()[-1]
