"""What the Talos provider does on every run with the certificates it keeps, ported from its source.

The engine runs the Talos provider's plugin 0.8.1, which bridges terraform-provider-talos v0.8.1
(commit c204c7f765e24ee08b6c75a96efa7779a27b0812). The plugin cannot run here (no registry ships it:
../shared/engine-facts.md), so the two checks it makes of a stored certificate are ported line for line:

- `talos_cluster_kubeconfig` keeps the kubeconfig a control plane hands out, and its client
  certificate in `kubernetes_client_configuration` (Create); every plan decodes that certificate
  and renews the kubeconfig when it ends within `certificate_renewal_duration` (ModifyPlan);
- `talos_machine_secrets` keeps the talosconfig's client certificate in `client_configuration`
  and renews it when it ends within a month (ModifyPlan).

A renewal makes the kubeconfig unknown at preview, so everything on that provider drops out of the
preview (engine-facts: "While its provider's kubeconfig is unknown at preview ...").
"""

from __future__ import annotations

import base64
import binascii
import datetime
import re
import ssl
import subprocess
from dataclasses import dataclass
from typing import Any

import yaml

# talos_cluster_kubeconfig_resource.go:150-155: certificate_renewal_duration, default "720h".
KUBECONFIG_RENEWAL = datetime.timedelta(hours=720)


class ProviderError(Exception):
    """A diagnostic the provider reports (its summary and detail), which fails the whole run."""

    def __init__(self, summary: str, detail: str) -> None:
        self.summary, self.detail = summary, detail
        super().__init__(f"{summary}: {detail}")


@dataclass(frozen=True)
class KubernetesClientConfiguration:
    """`kubernetes_client_configuration` as the resource stores it: each PEM base64-encoded (util.go:395, bytesToBase64)."""

    host: str
    ca_certificate: str
    client_certificate: str
    client_key: str


def _data(entry: dict[str, Any], key: str) -> bytes:
    # clientcmd.Load decodes a `-data` field as JSON []byte (base64); an absent one is nil, a path field is not read.
    value = entry.get(key)
    return base64.b64decode(value, validate=True) if value else b""


def _named(config: dict[str, Any], key: str, field: str) -> dict[str, dict[str, Any]]:
    # clientcmd.Load turns a v1 kubeconfig's named lists into api.Config's maps, by name.
    return {str(e["name"]): e.get(field) or {} for e in config.get(key) or []}


def bytes_to_base64(data: bytes) -> str:
    """util.go:395-397, bytesToBase64."""
    return base64.b64encode(data).decode()


def stored_configuration(kubeconfig_raw: str) -> KubernetesClientConfiguration:
    """Create (talos_cluster_kubeconfig_resource.go:237-252): clientcmd.Load, then the current context's cluster and user."""
    config = yaml.safe_load(kubeconfig_raw)
    contexts, clusters, users = _named(config, "contexts", "context"), _named(config, "clusters", "cluster"), _named(config, "users", "user")
    current = contexts.get(config.get("current-context", ""))
    if current is None:  # the provider dereferences the missing context: a panic, here an error
        raise ProviderError("failed to parse kubeconfig", f"no context {config.get('current-context')!r}")
    cluster, user = clusters.get(current.get("cluster", ""), {}), users.get(current.get("user", ""), {})
    return KubernetesClientConfiguration(
        host=str(cluster.get("server", "")),
        ca_certificate=bytes_to_base64(_data(cluster, "certificate-authority-data")),
        client_certificate=bytes_to_base64(_data(user, "client-certificate-data")),
        client_key=bytes_to_base64(_data(user, "client-key-data")),
    )


# Go's pem.Decode, for the blocks a certificate comes in (no headers): the first BEGIN line, its END line, base64 between.
_PEM = re.compile(rb"-----BEGIN ([^\n-]*)-----\r?\n(.*?)-----END \1-----", re.S)


def pem_decode(data: bytes) -> tuple[str, bytes] | None:
    """The first PEM block's type and bytes, or None where Go's pem.Decode returns a nil block."""
    found = _PEM.search(data)
    if found is None:
        return None
    try:
        return found.group(1).decode(), base64.b64decode(re.sub(rb"\s", b"", found.group(2)), validate=True)
    except binascii.Error:
        return None


def not_after(der: bytes, what: str = "kubernetes client certificate") -> datetime.datetime:
    """x509.ParseCertificate's NotAfter (OpenSSL parses the DER; a certificate it cannot read is the provider's parse error)."""
    result = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-enddate"], input=der, capture_output=True, timeout=60)
    if result.returncode != 0:
        raise ProviderError(f"failed to parse {what}", result.stderr.decode().strip())
    text = result.stdout.decode().strip().removeprefix("notAfter=")
    return datetime.datetime.fromtimestamp(ssl.cert_time_to_seconds(text), datetime.UTC)


def client_certificate_not_after(
    client_certificate: str, what: str = "kubernetes client certificate", no_block: str = "failed to decode PEM block"
) -> datetime.datetime:
    """ModifyPlan's decode of the stored certificate (talos_cluster_kubeconfig_resource.go:385-406): base64ToBytes
    (util.go:399-401), pem.Decode, x509.ParseCertificate, with the diagnostics it reports."""
    try:
        raw = base64.b64decode(client_certificate, validate=True)
    except binascii.Error as e:
        raise ProviderError(f"failed to decode {what}", str(e)) from None
    block = pem_decode(raw)
    if block is None:
        raise ProviderError(f"failed to decode {what}", no_block)
    return not_after(block[1], what)


def kubeconfig_needs_renewal(client_certificate: str, now: datetime.datetime, renewal: datetime.timedelta = KUBECONFIG_RENEWAL) -> bool:
    """talos_cluster_kubeconfig_resource.go:433-441: renew when NotAfter is before now + certificate_renewal_duration."""
    return client_certificate_not_after(client_certificate) < now + renewal


def add_month(now: datetime.datetime) -> datetime.datetime:
    """Go's time.AddDate(0, 1, 0): the same day of the next month, normalised (January 31 + 1 month = March 3, or 2)."""
    year, month = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
    return now.replace(year=year, month=month, day=1) + datetime.timedelta(days=now.day - 1)


def talos_client_needs_renewal(client_certificate: str, now: datetime.datetime, local: datetime.tzinfo = datetime.UTC) -> bool:
    """talos_machine_secrets_resource.go:346-373: the talosconfig's client certificate, decoded the same way, renewed
    when NotAfter is before time.Now().AddDate(0, 1, 0) (:41), with its own words for a certificate it cannot decode.
    time.Now() is in the provider's local zone (`local`: Go's time.Local), on whose calendar the month is added."""
    not_after = client_certificate_not_after(client_certificate, "client certificate", "failed to parse PEM block")
    return not_after < add_month(now.astimezone(local))


# talos_cluster_kubeconfig_resource.go (v0.8.1) Schema, :77-160: no attribute carries a RequiresReplace plan modifier,
# so a changed `node`, `endpoint` or `client_configuration` is an update in place, never a replacement.
KUBECONFIG_REPLACES_ON: frozenset[str] = frozenset()


@dataclass(frozen=True)
class KubeconfigPlan:
    """What the engine does with `talos_cluster_kubeconfig` on a run: replace it or not, the `endpoint` it plans, and
    the address a renewal dials (None when the certificate is not due: Update asks no machine, and the stored
    kubeconfig stays, UseStateForUnknown :116-122)."""

    replaces: bool
    endpoint: str
    dials: str | None


def kubeconfig_plan(state: dict[str, Any], inputs: dict[str, Any], renewal_due: bool) -> KubeconfigPlan:
    """ModifyPlan (:298-454) and Update (:565-728) for the program's `inputs` over a stored `state`: `endpoint` planned
    as `node` when the program leaves it unset (:351-356); Update stores the plan (:585) and only when the certificate
    is due (:647) runs talosClientOp (:677, util.go talosClientOp: client.WithEndpoints(endpoint), WithNode(node)),
    whose apid at `endpoint` forwards to `node`."""
    replaces = any(inputs.get(key) != state.get(key) for key in KUBECONFIG_REPLACES_ON)
    endpoint = str(inputs.get("endpoint") or inputs["node"])
    return KubeconfigPlan(replaces, endpoint, endpoint if renewal_due else None)
