"""Certificates plan: cert-manager and trust-manager, the local root CA's issuer, the wildcard certificates.

The local root CA is generated once by Pulumi (components.edge) and kept in Pulumi's state, so a
rebuilt cluster gets the same CA back and the devices that trust it keep trusting it. cert-manager
issues from it through the `iluvatar-ca` ClusterIssuer; trust-manager hands it (with the public
roots) to every namespace. Each gateway serves wildcard certificates: `*.<network.domain>` from the
local CA, and `*.<network.externalDomain>` from Let's Encrypt by DNS-01 through Cloudflare when
Cloudflare serves the public zone (else from the local CA too).
"""

from __future__ import annotations

from typing import Any

from plans import metrics
from plans.edge import CERT_MANAGER_NAMESPACE, GATEWAY_NAMESPACE, MANAGED_BY
from stacks import pins
from stacks.model import StackConfig

REPOSITORY = "https://charts.jetstack.io"
CERT_MANAGER_CHART = "cert-manager"
CERT_MANAGER_VERSION = pins.CHARTS["cert-manager"]
TRUST_MANAGER_CHART = "trust-manager"
TRUST_MANAGER_VERSION = pins.CHARTS["trust-manager"]
API = "cert-manager.io/v1"

CA_ISSUER = "iluvatar-ca"
# The CA's certificate and key, in cert-manager's namespace (where a ClusterIssuer reads its secret).
CA_SECRET = "iluvatar-ca"  # noqa: S105 - a Kubernetes object name, not a secret
CA_VALIDITY_HOURS = 10 * 365 * 24
ACME_ISSUER = "letsencrypt"
ACME_SERVER = "https://acme-v02.api.letsencrypt.org/directory"
ACME_ACCOUNT_SECRET = "letsencrypt-account"  # noqa: S105 - a Kubernetes object name, not a secret
CLOUDFLARE_TOKEN_SECRET = "cloudflare-api-token"  # noqa: S105 - a Kubernetes object name, not a secret
CLOUDFLARE_TOKEN_KEY = "api-token"  # noqa: S105 - a Kubernetes object name, not a secret
TRUST_BUNDLE = "iluvatar-trust"
TRUST_BUNDLE_KEY = "ca-certificates.crt"
# Public resolvers for cert-manager's DNS-01 self-check: on the LAN, split DNS answers app hosts
# from the Ainur (or the LAN resolver), which knows nothing of the _acme-challenge records.
DNS01_NAMESERVERS = "1.1.1.1:53,9.9.9.9:53"


def cert_manager_values(stack: StackConfig) -> dict[str, Any]:
    # keep: the CRDs (and so every Certificate and issuer) survive an uninstall of the release.
    values: dict[str, Any] = {"crds": {"enabled": True, "keep": True}}
    if stack.public_dns == "cloudflare":
        values |= {"dns01RecursiveNameservers": DNS01_NAMESERVERS, "dns01RecursiveNameserversOnly": True}
    # With monitoring, its certificates' expiry and readiness for Prometheus (plans.metrics).
    return values | metrics.cert_manager(stack)


def trust_manager_values(stack: StackConfig) -> dict[str, Any]:
    # trust-manager reads Bundle sources in its trust namespace: the CA secret lives there.
    return {"app": {"trust": {"namespace": CERT_MANAGER_NAMESPACE}}}


def ca_subject(stack: StackConfig) -> dict[str, str]:
    return {"common_name": f"Iluvatar {stack.arda.cluster_name} root CA", "organization": "Iluvatar"}


def ca_issuer() -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "ClusterIssuer",
        "metadata": {"name": CA_ISSUER, "labels": dict(MANAGED_BY)},
        "spec": {"ca": {"secretName": CA_SECRET}},
    }


def acme_issuer(stack: StackConfig) -> dict[str, Any]:
    """Let's Encrypt, answering DNS-01 challenges in the Cloudflare zone with the API token."""
    assert stack.network.external_domain is not None
    assert stack.edge.acme_email is not None
    return {
        "apiVersion": API,
        "kind": "ClusterIssuer",
        "metadata": {"name": ACME_ISSUER, "labels": dict(MANAGED_BY)},
        "spec": {
            "acme": {
                "server": ACME_SERVER,
                "email": stack.edge.acme_email,
                "privateKeySecretRef": {"name": ACME_ACCOUNT_SECRET},
                "solvers": [
                    {
                        "selector": {"dnsZones": [stack.network.external_domain]},
                        "dns01": {"cloudflare": {"apiTokenSecretRef": {"name": CLOUDFLARE_TOKEN_SECRET, "key": CLOUDFLARE_TOKEN_KEY}}},
                    }
                ],
            }
        },
    }


def issuers(stack: StackConfig) -> list[dict[str, Any]]:
    return [ca_issuer(), *([acme_issuer(stack)] if stack.public_dns == "cloudflare" else [])]


def trust_bundle() -> dict[str, Any]:
    """The public roots plus the local CA, as one ConfigMap key in every namespace."""
    return {
        "apiVersion": "trust.cert-manager.io/v1alpha1",
        "kind": "Bundle",
        "metadata": {"name": TRUST_BUNDLE, "labels": dict(MANAGED_BY)},
        "spec": {
            "sources": [{"useDefaultCAs": True}, {"secret": {"name": CA_SECRET, "key": "tls.crt"}}],
            "target": {"configMap": {"key": TRUST_BUNDLE_KEY}},
        },
    }


def _wildcard(name: str, zone: str, issuer: str) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "Certificate",
        "metadata": {"name": name, "namespace": GATEWAY_NAMESPACE, "labels": dict(MANAGED_BY)},
        "spec": {
            "secretName": f"{name}-tls",
            # The wildcard covers the names one label below the zone; the apex is named too.
            "dnsNames": [f"*.{zone}", zone],
            "issuerRef": {"group": "cert-manager.io", "kind": "ClusterIssuer", "name": issuer},
            "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
        },
    }


def certificates(stack: StackConfig) -> list[dict[str, Any]]:
    """One wildcard certificate per zone: `wildcard-internal` always, `wildcard-external` with a public zone."""
    out = [_wildcard("wildcard-internal", stack.network.domain, CA_ISSUER)]
    if stack.network.external_domain is not None:
        issuer = ACME_ISSUER if stack.public_dns == "cloudflare" else CA_ISSUER
        out.append(_wildcard("wildcard-external", stack.network.external_domain, issuer))
    return out


def gateway_secrets(stack: StackConfig, gateway: str) -> list[str]:
    """The certificate secrets a gateway's https listener serves (Envoy picks one by SNI):
    envoy-external the public zone's; envoy-internal the internal zone's, and the public zone's
    for internal apps under it."""
    external = ["wildcard-external-tls"] if stack.network.external_domain is not None else []
    return external if gateway == "envoy-external" else ["wildcard-internal-tls", *external]
