"""The local root CA, made before any cluster: every layer that trusts it needs it first.

`LocalCa` (`iluvatar:edge:LocalCa`) is the CA the edge's cert-manager issues the internal zone's
certificates from, and since the Ainur's Dex (components.identity) serves a certificate of it, the
CA both API servers trust Dex through: its certificate goes into Talos's machine configs and the
Pis' k3s files, which exist before the edge does. It is generated once and kept in Pulumi's state
(protected): a rebuilt cluster gets it back, and every device that trusts it keeps trusting it.

Its three resources were the edge's Certificates' own until the CA had to come first; their aliases
(the old parent) keep them the same resources in a stack deployed before, never new ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_tls as tls

from plans import certificates as certs_plan
from stacks.model import StackConfig

# Where the CA's resources lived before (components.edge: Edge "edge", its Certificates "edge-certificates").
FORMER_PARENT = ("edge-certificates", "iluvatar:edge:Certificates")
FORMER_GRANDPARENT = ("edge", "iluvatar:edge:Edge")


@dataclass(frozen=True)
class LocalCaArgs:
    stack: StackConfig


class LocalCa(pulumi.ComponentResource):
    """The local root CA: its key (secret, protected) and self-signed certificate (public, protected)."""

    provider: tls.Provider
    key: tls.PrivateKey
    cert: tls.SelfSignedCert
    certificate: pulumi.Output[str]
    key_pem: pulumi.Output[str]
    # Each certificate issued, by name: its PEM and how long before its end pulumi-tls renews it, which the program
    # exports (`localCertificates`) for `iluvatar doctor` to tell when a `pulumi up` must run.
    issued: dict[str, tuple[pulumi.Output[str], int]]

    def __init__(self, name: str, args: LocalCaArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("iluvatar:edge:LocalCa", name, None, opts)
        former = pulumi.create_urn(FORMER_PARENT[0], FORMER_PARENT[1], parent=pulumi.create_urn(*FORMER_GRANDPARENT))
        moved = [pulumi.Alias(parent=former)]
        self.provider = tls.Provider("edge-certificates-tls", opts=pulumi.ResourceOptions(parent=self, aliases=moved))
        self.key = tls.PrivateKey(
            "edge-certificates-ca-key",
            algorithm="RSA",
            rsa_bits=4096,
            opts=pulumi.ResourceOptions(
                parent=self,
                provider=self.provider,
                protect=True,
                aliases=moved,
                additional_secret_outputs=["privateKeyPem", "privateKeyOpenssh"],
            ),
        )
        self.cert = tls.SelfSignedCert(
            "edge-certificates-ca-cert",
            private_key_pem=self.key.private_key_pem,
            subject=tls.SelfSignedCertSubjectArgs(**certs_plan.ca_subject(args.stack)),
            is_ca_certificate=True,
            validity_period_hours=certs_plan.CA_VALIDITY_HOURS,
            allowed_uses=["cert_signing", "crl_signing", "digital_signature"],
            opts=pulumi.ResourceOptions(parent=self, provider=self.provider, protect=True, aliases=moved),
        )
        # The certificate is public: it is what users install on their devices.
        self.certificate = pulumi.Output.unsecret(self.cert.cert_pem)
        self.key_pem = pulumi.Output.secret(self.key.private_key_pem)
        self.issued = {}
        self.register_outputs({"certificate": self.certificate})

    def issue(
        self,
        name: str,
        dns_names: Sequence[str],
        parent: pulumi.Resource,
        validity_hours: int,
        early_renewal_hours: int,
        ip_addresses: Sequence[str] = (),
    ) -> tuple[pulumi.Output[str], pulumi.Output[str]]:
        """A server certificate of this CA for `dns_names` (and `ip_addresses`, for a client that dials an address, as
        Talos dials its KMS): (certificate PEM, private key PEM, secret).

        pulumi-tls renews it at the first `pulumi up` within `early_renewal_hours` of its end.
        """
        # None when not given: the certificates issued before addresses could be named keep their inputs as they were.
        addresses = list(ip_addresses) or None
        key = tls.PrivateKey(
            f"{name}-key",
            algorithm="ECDSA",
            ecdsa_curve="P256",
            opts=pulumi.ResourceOptions(parent=parent, provider=self.provider, additional_secret_outputs=["privateKeyPem", "privateKeyOpenssh"]),
        )
        request = tls.CertRequest(
            f"{name}-request",
            private_key_pem=key.private_key_pem,
            subject=tls.CertRequestSubjectArgs(common_name=dns_names[0], organization="Iluvatar"),
            dns_names=list(dns_names),
            ip_addresses=addresses,
            opts=pulumi.ResourceOptions(parent=parent, provider=self.provider),
        )
        cert = tls.LocallySignedCert(
            f"{name}-cert",
            cert_request_pem=request.cert_request_pem,
            ca_private_key_pem=self.key.private_key_pem,
            ca_cert_pem=self.cert.cert_pem,
            validity_period_hours=validity_hours,
            early_renewal_hours=early_renewal_hours,
            allowed_uses=["digital_signature", "key_encipherment", "server_auth"],
            opts=pulumi.ResourceOptions(parent=parent, provider=self.provider),
        )
        pem = pulumi.Output.unsecret(cert.cert_pem)
        self.issued[name] = (pem, early_renewal_hours)
        return pem, pulumi.Output.secret(key.private_key_pem)
