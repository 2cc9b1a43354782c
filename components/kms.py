"""The Ainur's KMS (`iluvatar:kms:Kms`, with the Ainur): the key Talos's `kms` disk encryption seals each Arda
machine's volume passphrases with (plans.kms).

- **The key**: 32 random bytes, a protected Pulumi resource (`pulumi destroy` and a refactoring cannot lose it: a
  machine whose volumes it sealed would never unlock again), delivered as the Secret `kms/kms-key`, secret end to
  end. Its only copies in clear are Pulumi's state and that Secret; it is exported, secret, as `kmsKey`, to keep a
  copy outside the homelab beside `backupAgeKey`, and goes age-encrypted to the backup target (components.data,
  plans.kms.backup_cronjob; docs/layers/ainur.md, "The Ainur lost").
- **TLS**: a certificate of the local CA for the endpoint's address (and `kms.<domain>`), in the Secret `kms/kms-tls`.
- **The server**: the namespace, its account (no token, no rights), the sources, the DaemonSet, the Service on
  the service address and its NetworkPolicy (plans.kms.manifests).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components import kube
from components.local_ca import LocalCa
from plans import kms as plan
from plans import references
from stacks.model import StackConfig


@dataclass(frozen=True)
class KmsArgs:
    """The stack, the local CA (the server's certificate), and what the objects wait for (the Ainur's API)."""

    stack: StackConfig
    ca: LocalCa
    after: Sequence[pulumi.Resource] = ()
    # The key restored from its backup (iluvatar:kmsKeyRestore, plans.kms.restored_key): set, it is the key, and none
    # is generated.
    restore: pulumi.Output[str] | None = None


class Kms(pulumi.ComponentResource):
    """The KMS key (protected), its Secrets and the server's objects on the Ainur."""

    key: pulumi.Output[str]
    objects: dict[str, pulumi.CustomResource]
    # What an Arda machine whose volumes use the `kms` key waits for before its config applies: the server, its
    # address, its policy and its list of admitted machines (the Secrets come before the DaemonSet). The list reaches
    # the pods when the kubelet next refreshes the volume; until then the machine's seal is refused and Talos tries
    # again (its volume manager, every 30 s).
    serving: list[pulumi.Resource]

    def __init__(self, name: str, args: KmsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("iluvatar:kms:Kms", name, None, opts)
        stack = args.stack
        if args.restore is not None:
            # The state that held the generated key is gone: the key from its backup, kept as a secret of the stack's
            # config, encrypted by its secrets provider as the state's secrets are.
            self.key = pulumi.Output.secret(args.restore.apply(plan.restored_key))
        else:
            rnd = random.Provider(f"{name}-random", opts=pulumi.ResourceOptions(parent=self))
            key = random.RandomBytes(
                f"{name}-key",
                length=32,
                opts=pulumi.ResourceOptions(parent=self, provider=rnd, protect=True, additional_secret_outputs=["base64", "hex"]),
            )
            self.key = pulumi.Output.secret(key.base64)
        cert, tls_key = args.ca.issue(
            f"{name}-tls",
            plan.certificate_names(stack),
            self,
            plan.CERTIFICATE_VALIDITY_HOURS,
            plan.CERTIFICATE_EARLY_RENEWAL_HOURS,
            ip_addresses=plan.certificate_ips(stack),
        )
        manifests = plan.manifests(stack)
        in_cluster = pulumi.ResourceOptions(parent=self, depends_on=list(args.after))
        namespace = kube.create(name, manifests[0], in_cluster)
        in_namespace = pulumi.ResourceOptions.merge(in_cluster, pulumi.ResourceOptions(depends_on=[namespace]))
        made: dict[references.Ref, pulumi.Resource] = {references.identity(manifests[0]): namespace}
        for shape, value in (
            (plan.key_secret(""), self.key.apply(lambda k: plan.key_secret(k)["stringData"])),
            (plan.tls_secret("", ""), pulumi.Output.all(cert, tls_key).apply(lambda pair: plan.tls_secret(pair[0], pair[1])["stringData"])),
        ):
            secret = k8s.core.v1.Secret(
                kube.resource_name(name, shape),
                metadata=shape["metadata"],
                type=shape["type"],
                string_data=pulumi.Output.secret(value),
                opts=pulumi.ResourceOptions.merge(in_namespace, pulumi.ResourceOptions(additional_secret_outputs=["data", "stringData"])),
            )
            made[references.identity(shape)] = secret
        self.objects = kube.create_all(name, manifests[1:], in_namespace, existing=made)
        self.serving = [
            self.objects[kube.resource_name(name, m)]
            for m in manifests[1:]
            if m["kind"] in ("DaemonSet", "Service", "NetworkPolicy") or m["metadata"]["name"] == plan.ADMITTED_CONFIGMAP
        ]
        self.register_outputs({})
