"""Certificates plan: exact issuers and certificates, checked by cert-manager's and trust-manager's own charts and CRDs."""

from __future__ import annotations

import functools
from typing import Any

import pytest

from plans import certificates as plan
from stacks import StackConfig, load_stack_file, parse_stack, read_stack_file
from tests.edit import HOMELAB, RK1
from tests.schemas import prometheus_crds
from tools import upstream

CERT_MANAGER = ("cert-manager", plan.CERT_MANAGER_VERSION)
TRUST_MANAGER = ("trust-manager", plan.TRUST_MANAGER_VERSION)


@functools.cache
def _stack(path: Any) -> StackConfig:
    return load_stack_file(path)


def _local_ca_only() -> StackConfig:
    """The homelab with its public zone but no Cloudflare: every certificate from the local CA."""
    sf = read_stack_file(HOMELAB)
    raw = dict(sf.config)
    raw["iluvatar:edge"] = {"publicIngress": "none", "publicDns": "none"}
    raw["iluvatar:apps"] = [a for a in raw["iluvatar:apps"] if a.get("audience") != "external"]
    return parse_stack(raw, sf.secret_keys)


def _errors(manifest: dict[str, Any]) -> list[str]:
    source = TRUST_MANAGER if manifest["apiVersion"].startswith("trust.") else CERT_MANAGER
    validator = upstream.crd_validator(manifest["apiVersion"], manifest["kind"], source=source[0], version=source[1])
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(manifest)]


def _objects(stack: StackConfig) -> list[dict[str, Any]]:
    return [*plan.issuers(stack), plan.trust_bundle(), *plan.certificates(stack)]


def test_wildcards_per_zone_and_their_issuers() -> None:
    assert plan.certificates(_stack(HOMELAB)) == [
        {
            "apiVersion": "cert-manager.io/v1",
            "kind": "Certificate",
            "metadata": {
                "name": "wildcard-internal",
                "namespace": "networking",
                "labels": {"app.kubernetes.io/managed-by": "pulumi", "app.kubernetes.io/part-of": "iluvatar"},
            },
            "spec": {
                "secretName": "wildcard-internal-tls",
                "dnsNames": ["*.iluvatar.home.arpa", "iluvatar.home.arpa"],
                "issuerRef": {"group": "cert-manager.io", "kind": "ClusterIssuer", "name": "iluvatar-ca"},
                "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
            },
        },
        {
            "apiVersion": "cert-manager.io/v1",
            "kind": "Certificate",
            "metadata": {
                "name": "wildcard-external",
                "namespace": "networking",
                "labels": {"app.kubernetes.io/managed-by": "pulumi", "app.kubernetes.io/part-of": "iluvatar"},
            },
            "spec": {
                "secretName": "wildcard-external-tls",
                "dnsNames": ["*.example.com", "example.com"],
                "issuerRef": {"group": "cert-manager.io", "kind": "ClusterIssuer", "name": "letsencrypt"},
                "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
            },
        },
    ]
    assert [c["spec"]["issuerRef"]["name"] for c in plan.certificates(_local_ca_only())] == ["iluvatar-ca", "iluvatar-ca"]
    assert [c["metadata"]["name"] for c in plan.certificates(_stack(RK1))] == ["wildcard-internal"]


def test_lets_encrypt_answers_dns01_in_the_cloudflare_zone_only() -> None:
    assert plan.issuers(_stack(HOMELAB))[1]["spec"] == {
        "acme": {
            "server": "https://acme-v02.api.letsencrypt.org/directory",
            "email": "admin@example.com",
            "privateKeySecretRef": {"name": "letsencrypt-account"},
            "solvers": [
                {
                    "selector": {"dnsZones": ["example.com"]},
                    "dns01": {"cloudflare": {"apiTokenSecretRef": {"name": "cloudflare-api-token", "key": "api-token"}}},
                }
            ],
        }
    }
    assert [i["metadata"]["name"] for i in plan.issuers(_local_ca_only())] == ["iluvatar-ca"]
    assert plan.issuers(_stack(RK1)) == [plan.ca_issuer()]
    assert plan.ca_issuer()["spec"] == {"ca": {"secretName": "iluvatar-ca"}}


def test_the_trust_bundle_hands_the_local_ca_and_the_public_roots_to_every_namespace() -> None:
    assert plan.trust_bundle()["spec"] == {
        "sources": [{"useDefaultCAs": True}, {"secret": {"name": "iluvatar-ca", "key": "tls.crt"}}],
        "target": {"configMap": {"key": "ca-certificates.crt"}},
    }


def test_gateways_serve_their_zones_certificates() -> None:
    homelab = _stack(HOMELAB)
    assert plan.gateway_secrets(homelab, "envoy-external") == ["wildcard-external-tls"]
    assert plan.gateway_secrets(homelab, "envoy-internal") == ["wildcard-internal-tls", "wildcard-external-tls"]
    assert plan.gateway_secrets(_stack(RK1), "envoy-internal") == ["wildcard-internal-tls"]


@pytest.mark.parametrize("stack", [_stack(HOMELAB), _stack(RK1), _local_ca_only()], ids=["homelab", "rk1", "local-ca-only"])
def test_every_object_validates_against_its_crd_at_the_charts_version(stack: StackConfig) -> None:
    for manifest in _objects(stack):
        assert _errors(manifest) == [], manifest
    assert upstream.kubeconform(_objects(stack), stack.arda.kubernetes_version, crds=[CERT_MANAGER, TRUST_MANAGER, *prometheus_crds(stack)]) == []


def test_the_crd_check_can_fail() -> None:
    bad = plan.certificates(_stack(HOMELAB))[0]
    bad["spec"]["privateKey"]["algorithm"] = "DSA"
    bad["spec"]["dnsName"] = bad["spec"].pop("dnsNames")
    assert _errors(bad) == [
        "spec: Additional properties are not allowed ('dnsName' was unexpected)",
        "spec/privateKey/algorithm: 'DSA' is not one of ['RSA', 'ECDSA', 'Ed25519']",
    ]


def _render(chart: str, version: str, values: dict[str, Any], stack: StackConfig) -> list[dict[str, Any]]:
    return upstream.helm_template(
        upstream.chart(chart, version), values, release=chart, namespace="cert-manager", kube_version=stack.arda.kubernetes_version
    )


@pytest.mark.parametrize("path", [HOMELAB, RK1], ids=["homelab", "rk1"])
def test_cert_manager_renders_with_the_programs_values_and_its_schema(path: Any) -> None:
    stack = _stack(path)
    values = plan.cert_manager_values(stack)
    chart = upstream.chart(plan.CERT_MANAGER_CHART, plan.CERT_MANAGER_VERSION)
    assert upstream.values_errors(chart, values) == []
    objects = _render(plan.CERT_MANAGER_CHART, plan.CERT_MANAGER_VERSION, values, stack)
    crds = [o for o in objects if o["kind"] == "CustomResourceDefinition"]
    assert sorted(c["metadata"]["name"] for c in crds) == [
        "certificaterequests.cert-manager.io",
        "certificates.cert-manager.io",
        "challenges.acme.cert-manager.io",
        "clusterissuers.cert-manager.io",
        "issuers.cert-manager.io",
        "orders.acme.cert-manager.io",
    ]
    # crds.keep: Helm leaves the CRDs (and every certificate) in place when the release goes.
    assert all(c["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep" for c in crds)
    [controller] = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "cert-manager"]
    args = controller["spec"]["template"]["spec"]["containers"][0]["args"]
    if stack.public_dns == "cloudflare":
        assert "--dns01-recursive-nameservers=1.1.1.1:53,9.9.9.9:53" in args
        assert "--dns01-recursive-nameservers-only=true" in args
    else:
        assert not [a for a in args if a.startswith("--dns01")]
    assert upstream.kubeconform(objects, stack.arda.kubernetes_version, crds=[CERT_MANAGER, *prometheus_crds(stack)]) == []


def test_trust_manager_renders_with_the_programs_values_and_its_schema() -> None:
    stack = _stack(HOMELAB)
    values = plan.trust_manager_values(stack)
    assert upstream.values_errors(upstream.chart(plan.TRUST_MANAGER_CHART, plan.TRUST_MANAGER_VERSION), values) == []
    objects = _render(plan.TRUST_MANAGER_CHART, plan.TRUST_MANAGER_VERSION, values, stack)
    [deployment] = [o for o in objects if o["kind"] == "Deployment"]
    assert "--trust-namespace=cert-manager" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert upstream.kubeconform(objects, stack.arda.kubernetes_version, crds=[TRUST_MANAGER, CERT_MANAGER, *prometheus_crds(stack)]) == []


def test_the_closed_values_check_catches_a_misspelt_key() -> None:
    chart = upstream.chart(plan.CERT_MANAGER_CHART, plan.CERT_MANAGER_VERSION)
    values = {**plan.cert_manager_values(_stack(HOMELAB)), "dns01RecursiveNameserverOnly": True}
    assert upstream.values_errors(chart, values) == ["<root>: Additional properties are not allowed ('dns01RecursiveNameserverOnly' was unexpected)"]


def test_the_local_ca_is_named_for_its_cluster() -> None:
    assert plan.ca_subject(_stack(HOMELAB)) == {"common_name": "Iluvatar arda root CA", "organization": "Iluvatar"}
    assert plan.ca_subject(_stack(RK1)) == {"common_name": "Iluvatar turing root CA", "organization": "Iluvatar"}


def test_the_charts_values_exactly() -> None:
    """The real charts render these (above); here the values themselves, so a dropped key cannot pass as a default."""
    keep = {"crds": {"enabled": True, "keep": True}}
    assert plan.cert_manager_values(_stack(HOMELAB)) == {
        **keep,
        "dns01RecursiveNameservers": "1.1.1.1:53,9.9.9.9:53",
        "dns01RecursiveNameserversOnly": True,
        # Scraped by the homelab's Prometheus (iluvatar:monitoring), through a ServiceMonitor.
        "prometheus": {"enabled": True, "servicemonitor": {"enabled": True}},
    }
    assert plan.cert_manager_values(_stack(RK1)) == {**keep, "prometheus": {"enabled": True, "servicemonitor": {"enabled": True}}}
    assert plan.trust_manager_values(_stack(RK1)) == {"app": {"trust": {"namespace": "cert-manager"}}}


def test_the_issuers_and_the_bundle_are_named_and_labelled() -> None:
    managed = {"app.kubernetes.io/managed-by": "pulumi", "app.kubernetes.io/part-of": "iluvatar"}
    assert [(i["apiVersion"], i["kind"], i["metadata"]) for i in plan.issuers(_stack(HOMELAB))] == [
        ("cert-manager.io/v1", "ClusterIssuer", {"name": "iluvatar-ca", "labels": managed}),
        ("cert-manager.io/v1", "ClusterIssuer", {"name": "letsencrypt", "labels": managed}),
    ]
    assert (plan.trust_bundle()["kind"], plan.trust_bundle()["metadata"]) == ("Bundle", {"name": "iluvatar-trust", "labels": managed})
