"""kubeconform: strict, offline, with Kubernetes' core schemas per minor and every object checked."""

from __future__ import annotations

import importlib.metadata
import json
import re
from typing import Any

import pytest

from tools import upstream


def _deployment(**container: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "apps"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx:1.29", **container}]}},
        },
    }


def test_a_valid_object_passes() -> None:
    assert upstream.kubeconform([_deployment(), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps"}}], "v1.35.1") == []


def test_every_problem_is_named_in_object_order() -> None:
    broken = _deployment(portz=[])
    broken["spec"]["replicas"] = "3"
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": {"ports": [{"port": "http"}]}}
    assert upstream.kubeconform([broken, service], "v1.35.1") == [
        "Deployment web: /spec/replicas: got string, want null or integer",
        "Deployment web: /spec/template/spec/containers/0: additional properties 'portz' not allowed",
        "Service web: /spec/ports/0/port: got string, want integer",
    ]


def test_a_kind_without_a_schema_is_a_problem_never_skipped() -> None:
    widget = {"apiVersion": "example.io/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert upstream.kubeconform([widget], "v1.35.1") == ["Widget w: could not find schema for Widget"]


def test_the_schemas_are_the_kubernetes_minors() -> None:
    # ValidatingAdmissionPolicy went GA in 1.30: Kubernetes 1.29 has no admissionregistration/v1 schema for it.
    policy = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy", "metadata": {"name": "p"}, "spec": {}}
    assert upstream.kubeconform([policy], "v1.30.0") == []
    assert upstream.kubeconform([policy], "v1.29.4") == ["ValidatingAdmissionPolicy p: could not find schema for ValidatingAdmissionPolicy"]


def test_core_schemas_are_standalone() -> None:
    folder = upstream.core_schema_dir("v1.35.1")
    schema = json.loads((folder / "deployment-apps-v1.json").read_text())
    assert "$id" not in schema and "/api/_definitions.json" not in json.dumps(schema)
    assert "io.k8s.api.apps.v1.DeploymentSpec" in schema["$defs"]
    assert not (folder / "_definitions.json").exists()


def test_an_unbundled_minor_is_named() -> None:
    installed = re.escape(importlib.metadata.version("kubernetes-validate"))
    with pytest.raises(
        upstream.UpstreamError, match=rf"^kubernetes-validate {installed} has no schemas for Kubernetes 1\.20 \(it has v1\.\d+\.0, .*v1\.34\.0, .*\)$"
    ):
        upstream.core_schema_dir("v1.20.4")
    with pytest.raises(upstream.UpstreamError, match=r"^'latest' is not a Kubernetes version$"):
        upstream.core_schema_dir("latest")
