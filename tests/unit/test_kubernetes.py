"""The Kubernetes manifests of ``deploy/kubernetes/``: valid for a pinned Kubernetes version
with unknown fields refused, and true to the code: probe paths the app routes, variables that
are settings, ports that are the settings' defaults, a grace period above the drain bound and a
``preStop`` that is a real command."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from api.app import create_app
from api.cli import _parser
from api.live.drain import STOP_AFTER_DRAIN_SECONDS
from config.settings import ENV_PREFIX, Settings

KUBERNETES_VERSION = "1.31.0"
MANIFESTS = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"


def documents() -> dict[str, dict[str, Any]]:
    """Every resource, by ``Kind/name`` (the kustomization aside)."""
    found = {}
    for path in sorted(MANIFESTS.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            found[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return found


def one(kind: str) -> dict[str, Any]:
    matching = [doc for key, doc in documents().items() if key.startswith(f"{kind}/")]
    assert len(matching) == 1, kind
    return matching[0]


def container() -> dict[str, Any]:
    containers = one("StatefulSet")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: dict[str, Any] = containers[0]
    return result


def config() -> dict[str, str]:
    data: dict[str, str] = one("ConfigMap")["data"]
    return data


@pytest.mark.parametrize("key", sorted(documents()))
def test_each_manifest_is_valid_with_unknown_fields_refused(key: str) -> None:
    kubernetes_validate.validate(documents()[key], KUBERNETES_VERSION, strict=True)


def test_the_validation_refuses_unknown_fields() -> None:
    statefulset = copy.deepcopy(one("StatefulSet"))
    statefulset["spec"]["template"]["spec"]["containers"][0]["prestop"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(statefulset, KUBERNETES_VERSION, strict=True)


def test_the_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text(encoding="utf-8"))
    files = {p.name for p in MANIFESTS.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(files)


def test_probes_ask_paths_the_app_serves() -> None:
    routes = {
        route.resource.canonical
        for route in create_app(Settings()).router.routes()
        if route.method == "GET" and route.resource is not None
    }
    probes = container()
    assert probes["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert probes["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert probes[probe]["httpGet"]["path"] in routes, probe
        assert probes[probe]["httpGet"]["port"] == "http"


def test_every_variable_is_a_setting() -> None:
    settings = {ENV_PREFIX + f.name.upper() for f in dataclasses.fields(Settings)}
    names = set(config()) | {e["name"] for e in container()["env"]}
    ours = {name for name in names if name.startswith(ENV_PREFIX)}
    assert ours - settings == set()
    # POD_NAME makes LIVERELAY_INTERNAL_URL; the S3 credentials are read the AWS way (README).
    assert names - ours == {"POD_NAME", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    readme = (MANIFESTS.parents[1] / "README.md").read_text(encoding="utf-8")
    assert "| `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` |" in readme
    assert Settings.from_env(config())  # and the values parse


def test_the_secret_is_referenced_and_only_placeholders() -> None:
    secret = one("Secret")
    assert all("REPLACE-ME" in value for value in secret["stringData"].values())
    refs = [e["valueFrom"].get("secretKeyRef") for e in container()["env"] if "valueFrom" in e]
    refs = [ref for ref in refs if ref is not None]
    assert {(r["name"], r["key"]) for r in refs} == {
        (secret["metadata"]["name"], key) for key in secret["stringData"]
    }


def test_ports_are_the_settings_defaults_and_the_services_use_them() -> None:
    defaults, settings = Settings(), Settings.from_env(config())
    ports = {p["name"]: p["containerPort"] for p in container()["ports"]}
    assert ports == {
        "http": defaults.http_port,
        "rtmp": defaults.rtmp_port,
        "metrics": defaults.metrics_port,
    }
    assert (settings.http_port, settings.rtmp_port, settings.metrics_port) == (
        ports["http"],
        ports["rtmp"],
        ports["metrics"],
    )
    assert settings.metrics_host == "0.0.0.0"  # Prometheus scrapes the pod's address
    rtmp = documents()["Service/liverelay-rtmp"]
    assert rtmp["spec"]["type"] == "LoadBalancer"
    assert rtmp["spec"]["ports"] == [
        {"name": "rtmp", "protocol": "TCP", "port": 1935, "targetPort": "rtmp"}
    ]
    for key, service in documents().items():
        if key.startswith("Service/"):
            assert {p["targetPort"] for p in service["spec"]["ports"]} <= set(ports), key
            assert "metrics" not in {p["targetPort"] for p in service["spec"]["ports"]}


def test_the_grace_period_outlasts_the_drain_and_pre_stop_drains() -> None:
    pod = one("StatefulSet")["spec"]["template"]["spec"]
    drain_seconds = Settings.from_env(config()).drain_seconds
    assert pod["terminationGracePeriodSeconds"] > drain_seconds + STOP_AFTER_DRAIN_SECONDS
    command = container()["lifecycle"]["preStop"]["exec"]["command"]
    assert command == ["liverelay", "drain"]
    assert _parser().parse_args(command[1:]).command.__name__ == "drain"


def test_the_pod_runs_as_non_root_with_its_data_on_its_own_volume() -> None:
    statefulset = one("StatefulSet")
    pod = statefulset["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert container()["securityContext"]["allowPrivilegeEscalation"] is False
    data_dir = Settings.from_env(config()).data_dir
    mounts = {m["name"]: m["mountPath"] for m in container()["volumeMounts"]}
    assert mounts["data"] == str(data_dir)
    assert [t["metadata"]["name"] for t in statefulset["spec"]["volumeClaimTemplates"]] == ["data"]


def test_the_disruption_budget_and_services_select_the_pods() -> None:
    labels = one("StatefulSet")["spec"]["template"]["metadata"]["labels"]
    budget = one("PodDisruptionBudget")["spec"]
    assert budget["maxUnavailable"] == 1
    assert budget["selector"]["matchLabels"].items() <= labels.items()
    for key, doc in documents().items():
        if key.startswith("Service/"):
            assert doc["spec"]["selector"].items() <= labels.items(), key
