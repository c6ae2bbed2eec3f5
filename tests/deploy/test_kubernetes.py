"""``deploy/kubernetes/``: every manifest valid offline, and consistent with the worker.

Core kinds against the Kubernetes OpenAPI schemas bundled in ``kubernetes-validate``
(strict: unknown fields fail); the KEDA ``ScaledObject`` and the ``ServiceMonitor``
against their CRDs' ``openAPIV3Schema`` (vendored in ``crds/``), made strict the same way.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from webhook_stream.core.settings import Settings
from webhook_stream.core.topics import DELIVERIES

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "deploy" / "kubernetes"
CRDS = Path(__file__).resolve().parent / "crds"
K8S_VERSION = "1.33.0"
CORE_KINDS = {"Deployment", "Service", "PodDisruptionBudget", "Secret"}


def manifests() -> dict[str, dict[str, Any]]:
    """Kind -> the one document of that kind in the base."""
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    docs: dict[str, dict[str, Any]] = {}
    for name in kustomization["resources"]:
        for doc in yaml.safe_load_all((BASE / name).read_text()):
            assert doc["kind"] not in docs, f"two {doc['kind']} in the base"
            docs[doc["kind"]] = doc
    return docs


def strict(schema: Any) -> Any:
    """``schema`` with ``additionalProperties: false`` wherever properties are listed and
    the API server would prune unknown ones: a misspelt field fails here."""
    if isinstance(schema, dict):
        schema = {k: strict(v) for k, v in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


def crd_schema(file: str, version: str) -> dict[str, Any]:
    crd = yaml.safe_load((CRDS / file).read_text())
    (found,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    schema = strict(copy.deepcopy(found["schema"]["openAPIV3Schema"]))
    schema["properties"]["metadata"] = {"type": "object"}
    return schema


def container(docs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    (worker,) = docs["Deployment"]["spec"]["template"]["spec"]["containers"]
    return worker


def env_of(docs: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container(docs)["env"]}


def test_kustomization_lists_every_manifest_and_the_kinds_asked_for() -> None:
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    files = {p.name for p in BASE.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files
    assert set(manifests()) == CORE_KINDS | {"ServiceMonitor", "ScaledObject"}


@pytest.mark.parametrize("kind", sorted(CORE_KINDS))
def test_core_kinds_are_valid(kind: str) -> None:
    doc = manifests()[kind]
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_validation_would_catch_a_mistake() -> None:
    """The checks above can fail: a misspelt field is refused by both validators."""
    doc = copy.deepcopy(manifests()["Deployment"])
    doc["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    scaled = copy.deepcopy(manifests()["ScaledObject"])
    scaled["spec"]["maxReplicas"] = 3
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(scaled, crd_schema("keda.sh_scaledobjects.yaml", "v1alpha1"))


def test_scaledobject_is_valid_against_the_keda_crd() -> None:
    doc = manifests()["ScaledObject"]
    assert doc["apiVersion"] == "keda.sh/v1alpha1"
    jsonschema.validate(doc, crd_schema("keda.sh_scaledobjects.yaml", "v1alpha1"))


def test_servicemonitor_is_valid_against_its_crd() -> None:
    doc = manifests()["ServiceMonitor"]
    assert doc["apiVersion"] == "monitoring.coreos.com/v1"
    jsonschema.validate(doc, crd_schema("monitoring.coreos.com_servicemonitors.yaml", "v1"))


def test_scaling_follows_the_delivery_groups_lag_up_to_the_partitions() -> None:
    docs = manifests()
    spec = docs["ScaledObject"]["spec"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": docs["Deployment"]["metadata"]["name"],
    }
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "kafka"
    meta = trigger["metadata"]
    assert meta["consumerGroup"] == f"{Settings().app_id}-deliver"
    assert meta["topic"] == DELIVERIES
    assert meta["bootstrapServers"] == env_of(docs)["WEBHOOK_STREAM_BROKER"].split("://", 1)[1]
    assert spec["maxReplicaCount"] == int(env_of(docs)["WEBHOOK_STREAM_PARTITIONS"])
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    # KEDA owns the replica count.
    assert "replicas" not in docs["Deployment"]["spec"]


def test_probes_services_and_selectors_fit_together() -> None:
    docs = manifests()
    worker = container(docs)
    pod_labels = docs["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert docs["Deployment"]["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert docs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= (
        pod_labels.items()
    )
    assert docs["Service"]["spec"]["selector"].items() <= pod_labels.items()
    port_names = {p["name"]: p["containerPort"] for p in worker["ports"]}
    assert port_names["http"] == Settings().web_port
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert worker[probe]["httpGet"] == {"path": "/health", "port": "http"}, probe
    (svc_port,) = docs["Service"]["spec"]["ports"]
    assert svc_port["targetPort"] in port_names
    monitor = docs["ServiceMonitor"]["spec"]
    assert (
        monitor["selector"]["matchLabels"].items() <= docs["Service"]["metadata"]["labels"].items()
    )
    assert [e["port"] for e in monitor["endpoints"]] == [svc_port["name"]]
    assert monitor["endpoints"][0]["path"] == "/metrics"
    # The drain on SIGTERM fits in the grace period.
    grace = docs["Deployment"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > Settings().shutdown_timeout


def test_settings_named_exist_and_secrets_come_from_the_secret() -> None:
    docs = manifests()
    fields = set(Settings.__dataclass_fields__)
    secret_keys = set(docs["Secret"]["stringData"])
    for name in set(env_of(docs)) | secret_keys:
        if name.startswith("WEBHOOK_STREAM_"):
            assert name.removeprefix("WEBHOOK_STREAM_").lower() in fields, name
    assert {"WEBHOOK_STREAM_API_TOKEN", "WEBHOOK_STREAM_SECRET_KEY"} <= secret_keys
    # No secret in the Deployment itself: the Secret is read whole with envFrom.
    assert not secret_keys & set(env_of(docs))
    assert container(docs)["envFrom"] == [
        {"secretRef": {"name": docs["Secret"]["metadata"]["name"]}}
    ]
    assert all(value == "" for value in docs["Secret"]["stringData"].values())
