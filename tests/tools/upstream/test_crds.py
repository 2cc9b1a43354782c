"""CRD schemas: each served version's openAPIV3Schema as the JSON Schema the API server enforces."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tools import upstream


def _crd(schema: dict[str, Any], served: bool = True) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.io"},
        "spec": {
            "group": "example.io",
            "names": {"kind": "Widget", "plural": "widgets"},
            "scope": "Namespaced",
            "versions": [
                {"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": schema}},
                {"name": "v0", "served": served, "storage": False, "schema": {"openAPIV3Schema": schema}},
            ],
        },
    }


WIDGET = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "properties": {
                "size": {"x-kubernetes-int-or-string": True},
                "note": {"type": "string", "nullable": True},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "properties": {"known": {"type": "string"}}},
                "template": {"type": "object", "x-kubernetes-embedded-resource": True, "properties": {"spec": {"type": "object"}}},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        }
    },
}


def _errors(instance: dict[str, Any]) -> list[str]:
    schema = upstream.crd_json_schemas(_crd(WIDGET))[("example.io", "Widget", "v1")]
    validator = jsonschema.validators.validator_for(schema)(schema)
    return sorted(f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(instance))


def _widget(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "example.io/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": spec}


def test_every_served_version_becomes_a_schema() -> None:
    assert sorted(upstream.crd_json_schemas(_crd(WIDGET))) == [("example.io", "Widget", "v0"), ("example.io", "Widget", "v1")]
    assert sorted(upstream.crd_json_schemas(_crd(WIDGET, served=False))) == [("example.io", "Widget", "v1")]


def test_a_valid_object_passes() -> None:
    widget = _widget(size="50%", note=None, extra={"anything": 1}, template={"apiVersion": "v1", "kind": "Pod", "spec": {}}, labels={"a": "b"})
    assert _errors(widget) == []
    assert _errors(_widget(size=3)) == []


def test_objects_that_list_their_fields_are_closed() -> None:
    assert _errors({**_widget(), "spce": {}}) == ["<root>: Additional properties are not allowed ('spce' was unexpected)"]
    assert _errors(_widget(sise=3)) == ["spec: Additional properties are not allowed ('sise' was unexpected)"]


def test_the_structural_extensions_mean_what_the_api_server_means() -> None:
    assert _errors(_widget(size=[1])) == ["spec/size: [1] is not valid under any of the given schemas"]
    assert _errors(_widget(note=1)) == ["spec/note: 1 is not of type 'string', 'null'"]
    assert _errors(_widget(labels={"a": 1})) == ["spec/labels/a: 1 is not of type 'string'"]
    assert _errors(_widget(template={"spec": {}, "other": 1})) == ["spec/template: Additional properties are not allowed ('other' was unexpected)"]


def test_apiversion_and_kind_are_the_files() -> None:
    assert _errors({**_widget(), "apiVersion": "example.io/v2"}) == ["apiVersion: 'example.io/v2' is not one of ['example.io/v1']"]


def test_schemas_are_written_in_kubeconforms_layout(tmp_path: Path) -> None:
    written = upstream.write_crd_schemas([_crd(WIDGET)], tmp_path)
    assert sorted(str(p.relative_to(tmp_path)) for p in written) == ["example.io/widget_v0.json", "example.io/widget_v1.json"]
    assert upstream.kubeconform([_widget(size=3)], "v1.35.1", crd_dirs=[tmp_path]) == []
    assert upstream.kubeconform([{**_widget(sise=3), "spce": {}}], "v1.35.1", crd_dirs=[tmp_path]) == [
        "Widget w: /: additional properties 'spce' not allowed",
        "Widget w: /spec: additional properties 'sise' not allowed",
    ]


def test_each_source_yields_its_crds() -> None:
    counts = {
        ("cilium", "1.18.4"): 30,
        ("gateway-api", "v1.4.1"): 17,
        ("envoy-gateway", "v1.9.0"): 30,
        ("cert-manager", "v1.19.2"): 6,
        ("trust-manager", "v0.25.0"): 2,
        ("rook", "v1.20.4"): 21,
        ("argo-cd", "v3.5.2"): 3,
        ("external-secrets", "v1.3.2"): 23,
        ("volsync", "v0.16.0"): 2,
        ("external-snapshotter", "v8.7.0"): 12,
        # The Prometheus Operator's ten (ServiceMonitor, PodMonitor, PrometheusRule, ScrapeConfig, ...).
        ("prometheus-operator", "v0.93.0"): 10,
    }
    assert set(upstream.CRD_SOURCES) == {source for source, _ in counts}
    for (source, version), count in counts.items():
        assert len(list(upstream.crd_schema_dir(source, version).rglob("*.json"))) == count, source
    envoy = upstream.crd_schema_dir("envoy-gateway", "v1.9.0")
    assert (envoy / "gateway.networking.k8s.io/httproute_v1.json").is_file() and (envoy / "gateway.envoyproxy.io/envoyproxy_v1alpha1.json").is_file()


def test_crd_validator_checks_a_real_custom_resource() -> None:
    validator = upstream.crd_validator("cert-manager.io/v1", "ClusterIssuer", source="cert-manager", version="v1.19.2")
    issuer: dict[str, Any] = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "ClusterIssuer",
        "metadata": {"name": "local-ca"},
        "spec": {"ca": {"secretName": "local-ca"}},
    }
    assert list(validator.iter_errors(issuer)) == []
    issuer["spec"]["ca"] = {"secret": "local-ca"}
    assert sorted(e.message for e in validator.iter_errors(issuer)) == [
        "'secretName' is a required property",
        "Additional properties are not allowed ('secret' was unexpected)",
    ]


def test_an_unknown_kind_or_source_is_named() -> None:
    with pytest.raises(upstream.UpstreamError, match=r"^cilium 1\.18\.4 defines no CiliumWidget in cilium\.io/v2$"):
        upstream.crd_validator("cilium.io/v2", "CiliumWidget", source="cilium", version="1.18.4")
    with pytest.raises(upstream.UpstreamError, match=r"^no CRD source named 'calico' \(known: argo-cd, "):
        upstream.crd_schema_dir("calico", "v3.30.0")
