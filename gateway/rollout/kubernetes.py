"""The Kubernetes API as the controller uses it from its pod: authenticated with the pod's service
account, trusting the cluster's CA, both where Kubernetes mounts them. GATEWAY_KUBERNETES_API
overrides the API's address (for `kubectl proxy`, or a test), GATEWAY_KUBERNETES_TOKEN the
token file.

`--kubernetes-service NAMESPACE/NAME` finds the gateway's replicas through the Service's
EndpointSlices at every check and reads each ready pod's /metrics directly: no Prometheus is
needed, and a replaced pod (a new address) is a new replica, whose gains start when it is first
seen (gateway.rollout.evidence).
"""

from __future__ import annotations

import json
import os
import ssl
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def namespaced(reference: str, flag: str) -> tuple[str, str]:
    """`NAMESPACE/NAME` split; ValueError naming the flag when it is not of that form."""
    namespace, _, name = reference.partition("/")
    if not namespace or not name or "/" in name:
        raise ValueError(f"{flag} {reference!r}: expected NAMESPACE/NAME")
    return namespace, name


@dataclass(frozen=True)
class KubernetesApi:
    address: str
    token: str | None
    context: ssl.SSLContext | None

    @classmethod
    def in_cluster(cls) -> KubernetesApi:
        """What the pod (or the environment) provides; ValueError outside a pod."""
        address = os.environ.get("GATEWAY_KUBERNETES_API")
        context = None
        if address is None:
            host = os.environ.get("KUBERNETES_SERVICE_HOST")
            port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
            if not host:
                raise ValueError("the Kubernetes API is out of reach: run in a pod "
                                 "(KUBERNETES_SERVICE_HOST is not set) or set "
                                 "GATEWAY_KUBERNETES_API (e.g. to a kubectl proxy)")
            address = f"https://{host}:{port}"
            context = ssl.create_default_context(cafile=str(SERVICE_ACCOUNT / "ca.crt"))
        token_file = Path(os.environ.get("GATEWAY_KUBERNETES_TOKEN",
                                         str(SERVICE_ACCOUNT / "token")))
        token = token_file.read_text().strip() if token_file.exists() else None
        return cls(address.rstrip("/"), token, context)

    def request(self, method: str, path: str, body: bytes | None = None,
                content_type: str | None = None, timeout_s: float = 10.0) -> dict[str, Any]:
        """One call; urllib.error.HTTPError (an OSError) on an error status."""
        request = urllib.request.Request(f"{self.address}{path}", data=body, method=method)
        request.add_header("Accept", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        if content_type:
            request.add_header("Content-Type", content_type)
        with urllib.request.urlopen(request, timeout=timeout_s, context=self.context) as reply:
            return dict(json.load(reply))


def replica_metrics_urls(api: KubernetesApi, namespace: str, service: str,
                         port_name: str = "http", path: str = "/metrics") -> list[str]:
    """The /metrics URL of every ready endpoint of the Service, from its EndpointSlices."""
    selector = urllib.parse.urlencode({"labelSelector": f"kubernetes.io/service-name={service}"})
    found = api.request("GET", f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/"
                               f"endpointslices?{selector}")
    by_pod: dict[str, str] = {}
    # IPv4 slices first: a dual-stack Service lists each pod in one slice per family, and a pod
    # read twice would count its evidence twice.
    items = sorted(found.get("items", []), key=lambda i: i.get("addressType") == "IPv6")
    for item in items:
        port = next((p.get("port") for p in item.get("ports") or []
                     if p.get("name") == port_name), None)
        if port is None:
            continue
        six = item.get("addressType") == "IPv6"
        for endpoint in item.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready") is False:
                continue  # starting, or on its way out: not serving, so no evidence
            addresses = endpoint.get("addresses") or []
            if not addresses:
                continue
            reference = endpoint.get("targetRef") or {}
            host = f"[{addresses[0]}]" if six else addresses[0]
            pod = str(reference.get("uid") or reference.get("name") or f"{host}:{port}")
            by_pod.setdefault(pod, f"http://{host}:{port}{path}")
    return sorted(set(by_pod.values()))
