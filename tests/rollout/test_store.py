"""Where the rollout's policy lives: real files, written byte by byte, keep what they were
(line endings, a byte order mark, a final newline or its absence, mode, owner, symlinks) and a
person's edit always wins; a ConfigMap is patched only at the version read."""

from __future__ import annotations

import json
import os
import stat
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.rollout.kubernetes import KubernetesApi
from gateway.rollout.store import ConfigMapStore, FileStore, replace_if_unchanged
from gateway.rollout.writer import EditError, with_decision

STATUS = {"state": "progressing", "canary": 2, "step": 1, "since": "2026-12-03T10:00:00Z",
          "reason": "promoted"}
STATUS_LINE = (b'rollout_status: {state: "progressing", canary: 2, step: 1, '
               b'since: "2026-12-03T10:00:00Z", reason: "promoted"}')

CRLF_BOM_NO_FINAL_NEWLINE = (
    b"\xef\xbb\xbf# routing, saved by a Windows editor\r\n"
    b"models:\r\n"
    b"  breast-cancer:\r\n"
    b"    traffic:\r\n"
    b"      - {version: 1, weight: 100}\r\n"
    b"      - {version: 2, weight: 0}\r\n"
    b"    rollout: {baseline: 1, canary: 2, steps: [5, 25, 50, 100]}")


def decide(store: FileStore, weights: dict[int, int] | None = None) -> tuple[str, str]:
    """One decision as the controller makes it: read, edit; (token, new text)."""
    text, token = store.read()
    return token, with_decision(text, "breast-cancer", weights or {1: 95, 2: 5}, STATUS)


def test_crlf_a_byte_order_mark_no_final_newline_mode_and_owner_stay(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_bytes(CRLF_BOM_NO_FINAL_NEWLINE)
    os.chmod(path, 0o640)
    owner = (4321, 4322) if os.geteuid() == 0 else (os.getuid(), os.getgid())
    os.chown(path, *owner)
    store = FileStore(path)
    token, new = decide(store)
    assert store.write(token, new) == new
    assert path.read_bytes() == (
        CRLF_BOM_NO_FINAL_NEWLINE.replace(b"weight: 100}", b"weight: 95}")
        .replace(b"weight: 0}", b"weight: 5}") + b"\r\n    " + STATUS_LINE)
    after = os.stat(path)
    assert stat.S_IMODE(after.st_mode) == 0o640
    assert (after.st_uid, after.st_gid) == owner
    assert sorted(p.name for p in tmp_path.iterdir()) == ["routing.yaml"]


def test_a_document_end_marker_and_closing_comments_stay_after_the_entry(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_bytes(b"---\nmodels:\n  breast-cancer:\n    traffic:\n"
                     b"      - version: 1\n        weight: 100\n"
                     b"      - version: 2\n        weight: 0   # the canary\n"
                     b"    rollout: {baseline: 1, canary: 2, steps: [5, 100]}\n"
                     b"# closing comment\n...\n")
    store = FileStore(path)
    assert store.write(*decide(store)) is not None
    assert path.read_bytes() == (
        b"---\nmodels:\n  breast-cancer:\n    traffic:\n"
        b"      - version: 1\n        weight: 95\n"
        b"      - version: 2\n        weight: 5   # the canary\n"
        b"    rollout: {baseline: 1, canary: 2, steps: [5, 100]}\n"
        b"    " + STATUS_LINE + b"\n# closing comment\n...\n")


def test_a_symlinked_path_stays_a_link_and_its_target_is_replaced(tmp_path: Path) -> None:
    # conf/routing.yaml -> ../data/live.yaml -> releases/routing-7.yaml (a chain of two links)
    for folder in ("conf", "data/releases"):
        (tmp_path / folder).mkdir(parents=True)
    target = tmp_path / "data" / "releases" / "routing-7.yaml"
    target.write_bytes(CRLF_BOM_NO_FINAL_NEWLINE)
    os.chmod(target, 0o640)
    neighbour = tmp_path / "data" / "releases" / "routing-6.yaml"
    neighbour.write_bytes(b"models: {}\n")
    (tmp_path / "data" / "live.yaml").symlink_to("releases/routing-7.yaml")
    link = tmp_path / "conf" / "routing.yaml"
    link.symlink_to("../data/live.yaml")
    store = FileStore(link)
    token, new = decide(store)
    assert store.write(token, new) == new
    assert link.is_symlink() and os.readlink(link) == "../data/live.yaml"
    assert os.readlink(tmp_path / "data" / "live.yaml") == "releases/routing-7.yaml"
    assert target.read_bytes() == new.encode() and not target.is_symlink()
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640
    assert neighbour.read_bytes() == b"models: {}\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["routing-6.yaml",
                                                               "routing-7.yaml"]
    assert sorted(p.name for p in link.parent.iterdir()) == ["routing.yaml"]


def test_a_persons_edit_between_read_and_write_wins(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_bytes(CRLF_BOM_NO_FINAL_NEWLINE)
    store = FileStore(path)
    token, new = decide(store)
    by_hand = CRLF_BOM_NO_FINAL_NEWLINE.replace(b"weight: 100}", b"weight: 50}").replace(
        b"weight: 0}", b"weight: 50}")
    path.write_bytes(by_hand)
    assert store.write(token, new) is None
    assert path.read_bytes() == by_hand
    assert sorted(p.name for p in tmp_path.iterdir()) == ["routing.yaml"]


def test_a_second_decision_is_checked_against_the_bytes_the_first_wrote(tmp_path: Path) -> None:
    """Issue 25 item 10: two models decided in one evaluation; the second is written on the
    text the controller itself wrote, and a person's edit after the first write still wins."""
    path = tmp_path / "routing.yaml"
    two = (CRLF_BOM_NO_FINAL_NEWLINE
           + b"\r\n  other-model:\r\n    traffic: [{version: 1, weight: 100}]\r\n")
    path.write_bytes(two)
    store = FileStore(path)
    text, token = store.read()
    first = with_decision(text, "breast-cancer", {1: 95, 2: 5}, STATUS)
    token = store.write(token, first)
    assert token == first
    second = with_decision(first, "other-model", {1: 100}, STATUS)
    assert store.write(token, second) == second
    assert path.read_bytes() == second.encode()
    third = with_decision(second, "breast-cancer", {1: 75, 2: 25}, STATUS)
    path.write_bytes(second.replace("weight: 95}", "weight: 90}").replace(
        "weight: 5}", "weight: 10}").encode())  # a person, after the controller's write
    assert store.write(second, third) is None
    assert b"weight: 90}" in path.read_bytes()


def test_duplicate_keys_and_anchors_in_a_real_file(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_bytes(b"models:\n  breast-cancer:\n    traffic: [{version: 1, weight: 1}]\n"
                     b"    traffic:\n      - {version: 1, weight: &base 100}\n"
                     b"      - {version: 2, weight: 0, weight: 0}\n")
    store = FileStore(path)
    assert store.write(*decide(store)) is not None
    assert path.read_bytes() == (
        b"models:\n  breast-cancer:\n    traffic: [{version: 1, weight: 1}]\n"
        b"    traffic:\n      - {version: 1, weight: &base 95}\n"
        b"      - {version: 2, weight: 0, weight: 5}\n    " + STATUS_LINE + b"\n")
    aliased = b"models:\n  a: {traffic: [{version: 1, weight: &w 100}]}\n" \
              b"  breast-cancer:\n    traffic:\n      - {version: 1, weight: *w}\n" \
              b"      - {version: 2, weight: 0}\n"
    path.write_bytes(aliased)
    with pytest.raises(EditError, match=r"models\.breast-cancer \(line 3\): the weight of "
                                        r"version 1 on line 2 is an alias"):
        decide(store)
    assert path.read_bytes() == aliased


def test_what_cannot_be_read_or_replaced_is_an_os_error(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    with pytest.raises(FileNotFoundError):
        FileStore(path).read()
    path.write_bytes(b"models:\n  m: {traffic: [{version: 1, weight: 100}]}  # caf\xe9\n")
    with pytest.raises(OSError, match="not UTF-8 text"):
        FileStore(path).read()
    path.write_bytes(b"models: {}\n")
    text, token = FileStore(path).read()
    path.rename(tmp_path / "moved-away.yaml")  # an editor's save, caught half way
    with pytest.raises(FileNotFoundError):
        FileStore(path).write(token, text)
    assert not path.exists()
    (tmp_path / "moved-away.yaml").rename(path)
    os.link(path, tmp_path / "hard-link.yaml")
    with pytest.raises(OSError, match="2 hard links"):
        replace_if_unchanged(path, text, "models: {a: 1}\n")
    assert path.read_bytes() == b"models: {}\n"


class _ApiServer(ThreadingHTTPServer):
    """The Kubernetes API's ConfigMap endpoints, enough for GET and a merge PATCH carrying a
    resourceVersion (409 when it is stale)."""

    data: dict[str, str]
    version: int
    patches: list[dict[str, Any]]


class _Api(BaseHTTPRequestHandler):
    server: _ApiServer

    def _reply(self, code: int, doc: dict[str, Any]) -> None:
        body = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _configmap(self) -> dict[str, Any]:
        return {"metadata": {"name": "routing", "resourceVersion": str(self.server.version)},
                "data": dict(self.server.data)}

    def do_GET(self) -> None:
        self._reply(200, self._configmap())

    def do_PATCH(self) -> None:
        patch = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.patches.append(patch)
        if patch["metadata"]["resourceVersion"] != str(self.server.version):
            self._reply(409, {"kind": "Status", "reason": "Conflict"})
            return
        self.server.data.update(patch["data"])
        self.server.version += 1
        self._reply(200, self._configmap())

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def api() -> Iterator[_ApiServer]:
    server = _ApiServer(("127.0.0.1", 0), _Api)
    server.data = {"routing.yaml": CRLF_BOM_NO_FINAL_NEWLINE.decode()}
    server.version, server.patches = 41, []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_configmap_is_patched_at_the_version_read_and_returns_the_new_one(
        api: _ApiServer) -> None:
    store = ConfigMapStore(KubernetesApi(f"http://127.0.0.1:{api.server_address[1]}", "token",
                                         None), "serving", "routing", "routing.yaml")
    text, token = store.read()
    assert (text, token) == (CRLF_BOM_NO_FINAL_NEWLINE.decode(), "41")
    new = with_decision(text, "breast-cancer", {1: 95, 2: 5}, STATUS)
    assert store.write(token, new) == "42"
    assert api.data["routing.yaml"] == new and "\r\n" in new
    second = with_decision(new, "breast-cancer", {1: 75, 2: 25}, STATUS)
    api.data["routing.yaml"] = "models: {}\n"
    api.version += 1  # a person's kubectl edit
    assert store.write("42", second) is None
    assert api.data["routing.yaml"] == "models: {}\n"
    assert [p["metadata"]["resourceVersion"] for p in api.patches] == ["41", "42"]
    assert yaml.safe_load(new)["models"]["breast-cancer"]["rollout_status"] == STATUS
