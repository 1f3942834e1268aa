"""Where the routing policy a rollout edits lives: a file, or a Kubernetes ConfigMap (SPEC 9).

Either store reads the policy's text with a token of the version read, and writes a new text
only if the policy is still at that version, so a person's edit in between wins:
- `FileStore`: the token is the text itself; the write is atomic (gateway.rollout.writer).
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

import json
import os
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from gateway.rollout.writer import replace_if_unchanged

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class PolicyStore(Protocol):
    def read(self) -> tuple[str, str]:
        """The policy's text, and a token of the version read."""

    def write(self, token: str, text: str) -> bool:
        """Store `text` if the policy is still at `token`; False when it changed meanwhile."""


@dataclass
class FileStore:
    path: Path

    def read(self) -> tuple[str, str]:
        text = self.path.read_text()
        return text, text

    def write(self, token: str, text: str) -> bool:
        return replace_if_unchanged(self.path, token, text)


@dataclass
class ConfigMapStore:
    namespace: str
    name: str
    key: str
    """The ConfigMap's data key holding the policy (the routing file's name)."""
    api: str
    token: str | None
    context: ssl.SSLContext | None

    @classmethod
    def in_cluster(cls, reference: str, key: str) -> ConfigMapStore:
        """From `NAMESPACE/NAME` and what the pod (or the environment) provides."""
        namespace, _, name = reference.partition("/")
        if not namespace or not name or "/" in name:
            raise ValueError(f"--configmap {reference!r}: expected NAMESPACE/NAME")
        api = os.environ.get("GATEWAY_KUBERNETES_API")
        context = None
        if api is None:
            host = os.environ.get("KUBERNETES_SERVICE_HOST")
            port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
            if not host:
                raise ValueError("--configmap needs to run in a pod (KUBERNETES_SERVICE_HOST is "
                                 "not set) or GATEWAY_KUBERNETES_API (e.g. kubectl proxy)")
            api = f"https://{host}:{port}"
            context = ssl.create_default_context(cafile=str(SERVICE_ACCOUNT / "ca.crt"))
        token_file = Path(os.environ.get("GATEWAY_KUBERNETES_TOKEN",
                                         str(SERVICE_ACCOUNT / "token")))
        token = token_file.read_text().strip() if token_file.exists() else None
        return cls(namespace, name, key, api.rstrip("/"), token, context)

    @property
    def _url(self) -> str:
        return f"{self.api}/api/v1/namespaces/{self.namespace}/configmaps/{self.name}"

    def _request(self, method: str, body: bytes | None = None,
                 content_type: str | None = None) -> dict[str, object]:
        request = urllib.request.Request(self._url, data=body, method=method)
        request.add_header("Accept", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        if content_type:
            request.add_header("Content-Type", content_type)
        with urllib.request.urlopen(request, timeout=10, context=self.context) as reply:
            return dict(json.load(reply))

    def read(self) -> tuple[str, str]:
        doc = self._request("GET")
        data = doc.get("data")
        if not isinstance(data, dict) or self.key not in data:
            raise OSError(f"configmap {self.namespace}/{self.name} has no key {self.key!r}")
        metadata = doc.get("metadata")
        version = metadata.get("resourceVersion") if isinstance(metadata, dict) else None
        return str(data[self.key]), str(version)

    def write(self, token: str, text: str) -> bool:
        patch = {"metadata": {"resourceVersion": token}, "data": {self.key: text}}
        try:
            self._request("PATCH", json.dumps(patch).encode(), "application/merge-patch+json")
        except urllib.error.HTTPError as exc:
            if exc.code == 409:  # changed since it was read: the person's edit wins
                return False
            raise
        return True
