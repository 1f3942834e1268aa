"""Where the routing policy a rollout edits lives: a file, or a Kubernetes ConfigMap
(docs/routing.md).

Either store reads the policy's text with a token of the version read, and writes a new text
only if the policy is still at that version, so a person's edit in between wins. A write returns
the token of what it stored, so a second decision of the same evaluation is written on the text
the controller itself just wrote, and checked against exactly that:
- `FileStore`: the token is the text itself (the file's bytes, decoded exactly: no newline
  translation, a byte order mark kept). The write is atomic and keeps the file as it was
  (`replace_if_unchanged`).
- `ConfigMapStore`: `--configmap NAMESPACE/NAME` reads the ConfigMap through the API and
  patches its data with the resourceVersion it read (a JSON merge patch carrying
  `metadata.resourceVersion`: the API server answers 409 Conflict when the ConfigMap changed
  since). It authenticates with the pod's service account token, and trusts the cluster's CA,
  both where Kubernetes mounts them. GATEWAY_KUBERNETES_API overrides the API's address (for
  `kubectl proxy`, or a test), GATEWAY_KUBERNETES_TOKEN the token file.
The gateway pods see the patched ConfigMap when the kubelet next syncs the mount (within a
minute by default) and apply it live, as they apply a person's `kubectl edit`.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import tempfile
import urllib.error
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from gateway.rollout.kubernetes import KubernetesApi, namespaced


class PolicyStore(Protocol):
    def read(self) -> tuple[str, str]:
        """The policy's text exactly as stored, and a token of the version read; OSError
        (FileNotFoundError included) when it cannot be read."""

    def write(self, token: str, text: str) -> str | None:
        """Store `text` if the policy is still at `token`: the new version's token, or None
        when the policy changed meanwhile (nothing was written)."""


@dataclass
class FileStore:
    path: Path

    def read(self) -> tuple[str, str]:
        data = self.path.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise OSError(f"{self.path}: the routing policy is not UTF-8 text (byte "
                          f"{exc.start}); save it as UTF-8") from None
        return text, text

    def write(self, token: str, text: str) -> str | None:
        return text if replace_if_unchanged(self.path, token, text) else None


def replace_if_unchanged(path: Path, expected: str, text: str) -> bool:
    """Write `text` over `path` atomically, but only while the file still reads `expected`
    (False: someone changed it since; nothing was written).

    What the file was stays: the bytes are written as given (no newline translation), the new
    file gets the old one's mode and owner before it replaces it, and a symlinked path (a chain
    of links too) keeps its links: the link's target is replaced, by a temporary file in the
    target's own folder renamed onto it. A file the controller could not give back its owner,
    or one with other hard links (a rename would leave them the old text), raises OSError.

    The file is compared with `expected` once more right before the rename. What remains is
    the moment between that comparison and the rename: a person's save landing exactly then
    is overwritten (editors take no lock a controller could honour); the next evaluation
    reads the controller's text and a person sees their edit gone, never a mixed file.
    """
    target = Path(os.path.realpath(path, strict=True))
    before = os.stat(target)
    if before.st_nlink > 1:
        raise OSError(f"{path}: has {before.st_nlink} hard links; replacing it would leave the "
                      "others with the old text; keep one link (a symlink is fine)")
    wanted = expected.encode("utf-8")
    if target.read_bytes() != wanted:
        return False
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".rollout~",
                                    dir=target.parent)
    temporary = Path(name)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(text.encode("utf-8"))
            out.flush()
            created = os.fstat(out.fileno())
            if (created.st_uid, created.st_gid) != (before.st_uid, before.st_gid):
                try:
                    os.fchown(out.fileno(), before.st_uid, before.st_gid)
                except PermissionError:
                    raise PermissionError(
                        f"{path}: cannot keep its owner {before.st_uid}:{before.st_gid} (the "
                        f"controller runs as {os.getuid()}); run it as the file's owner") \
                        from None
            os.fchmod(out.fileno(), stat.S_IMODE(before.st_mode))  # after chown, which clears
            os.fsync(out.fileno())                                 # set-id bits
        if target.read_bytes() != wanted:
            return False
        try:
            os.replace(temporary, target)
        except OSError as exc:
            if exc.errno not in (errno.EBUSY, errno.EXDEV):
                raise
            raise OSError(exc.errno, f"{path}: cannot be replaced atomically ({exc.strerror}): "
                          "it is a mount point of its own (a single-file bind mount or a "
                          "subPath); mount its folder instead") from None
    finally:
        temporary.unlink(missing_ok=True)
    return True


@dataclass
class ConfigMapStore:
    api: KubernetesApi
    namespace: str
    name: str
    key: str
    """The ConfigMap's data key holding the policy (the routing file's name)."""

    @classmethod
    def in_cluster(cls, reference: str, key: str) -> ConfigMapStore:
        """From `NAMESPACE/NAME` and what the pod (or the environment) provides."""
        namespace, name = namespaced(reference, "--configmap")
        return cls(KubernetesApi.in_cluster(), namespace, name, key)

    def _request(self, method: str, body: bytes | None = None,
                 content_type: str | None = None) -> dict[str, object]:
        try:
            return self.api.request(
                method, f"/api/v1/namespaces/{self.namespace}/configmaps/{self.name}", body,
                content_type)
        except (ValueError, TypeError) as exc:
            raise OSError(f"configmap {self.namespace}/{self.name}: the API answered "
                          f"{method} with no JSON object ({exc})") from None

    def read(self) -> tuple[str, str]:
        doc = self._request("GET")
        data = doc.get("data")
        if not isinstance(data, dict) or self.key not in data:
            raise OSError(f"configmap {self.namespace}/{self.name} has no key {self.key!r}")
        return str(data[self.key]), self._version(doc, "GET")

    def write(self, token: str, text: str) -> str | None:
        patch = {"metadata": {"resourceVersion": token}, "data": {self.key: text}}
        try:
            reply = self._request("PATCH", json.dumps(patch).encode(),
                                  "application/merge-patch+json")
        except urllib.error.HTTPError as exc:
            if exc.code == 409:  # changed since it was read: the person's edit wins
                return None
            raise
        return self._version(reply, "PATCH")

    def _version(self, doc: dict[str, object], method: str) -> str:
        metadata = doc.get("metadata")
        version = metadata.get("resourceVersion") if isinstance(metadata, dict) else None
        if not version:
            raise OSError(f"configmap {self.namespace}/{self.name}: the API's answer to {method} "
                          "has no metadata.resourceVersion; reading it again next check")
        return str(version)
