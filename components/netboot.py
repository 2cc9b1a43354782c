"""Netboot on the Ainur: dnsmasq (DHCP/PXE, TFTP, DNS), the HTTP server for iPXE scripts, boot assets
and workers' Talos configs, the cache of them on every Pi, kube-vip for the service address, and the
Argo CD seed's namespace. (The GitOps repo mirror is `components.git_mirror`: its volume waits for
Longhorn, which arrives much later.)

All objects go through the Ainur Kubernetes provider passed in `providers`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address

import pulumi
import pulumi_kubernetes as k8s

from components import kube
from plans import netboot as plan
from plans import references
from stacks.model import StackConfig

SERVING = (("daemonset", "netboot-cache"), ("deployment", "netboot"), ("service", "netboot"))


@dataclass(frozen=True)
class NetbootArgs:
    """What the Ainur serve: per-MAC Talos configs (secret), each board's kernel and initramfs URLs,
    and extra (name, address) records for the internal DNS zone (the edge layer's app hosts).

    `schematics`: each board's Image Factory schematic as sent to the factory. The configs and asset URLs name the
    schematic ID the program computes (known at preview), which carries no dependency on the resource that sends it;
    Image Factory serves a schematic's images only once it was sent, so the served objects wait for it (a cache
    fetching a kernel the factory does not know yet gets a 404, which `curl --retry` does not retry).
    """

    stack: StackConfig
    configs: dict[str, pulumi.Output[str]]
    boot_assets: dict[str, pulumi.Output[tuple[str, str]]]
    dns_records: Sequence[tuple[str, IPv4Address]] = ()
    schematics: Sequence[pulumi.Resource] = ()


class Netboot(pulumi.ComponentResource):
    """Netboot: the objects in the Ainur's `netboot` namespace that let Arda machines boot unattended."""

    objects: dict[str, pulumi.CustomResource]
    # What must be serving before a machine can boot from the network: every Pi's cache of the boot
    # assets (the DaemonSet), dnsmasq and nginx (the Deployment, ready when both answer) and the
    # service address kube-vip announces (the Service, ready once it has its address). pulumi-kubernetes
    # awaits all three, so a resource that depends on them starts only when the LAN can netboot.
    serving: list[pulumi.CustomResource]
    pi_serving: list[pulumi.CustomResource]
    dnsmasq_conf: str
    scripts: dict[str, str]

    def __init__(self, name: str, args: NetbootArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("iluvatar:ainur:Netboot", name, None, opts)
        stack = args.stack
        self.dnsmasq_conf = plan.dnsmasq_conf(stack, extra_records=args.dns_records)
        self.scripts = plan.scripts(stack)
        manifests = plan.manifests(stack, list(args.configs), args.dns_records)
        namespace = manifests[0]
        self.objects = {}
        ns = kube.create(name, namespace, pulumi.ResourceOptions(parent=self))
        self.objects[kube.resource_name(name, namespace)] = ns
        in_ns = pulumi.ResourceOptions(parent=self, depends_on=[ns, *args.schematics])
        fetch = pulumi.Output.all(*args.boot_assets.values()).apply(
            lambda urls: plan.fetch_assets_script(dict(zip(args.boot_assets, urls, strict=True)))
        )
        configs = k8s.core.v1.Secret(
            f"{name}-secret-talos-configs",
            metadata={"name": "talos-configs", "namespace": plan.NAMESPACE},
            type="Opaque",
            # No netboot worker (only control planes, or none): an empty Secret, never an Output of a list.
            string_data=pulumi.Output.all(**{f"{mac}.yaml": config for mac, config in args.configs.items()}) if args.configs else {},
            opts=in_ns,
        )
        self.objects[f"{name}-secret-talos-configs"] = configs

        def with_fetch_script(static: dict[str, str]) -> pulumi.Output[dict[str, str]]:
            return fetch.apply(lambda script: {**static, "fetch-assets.sh": script})

        rest = []
        for manifest in manifests[1:]:
            if manifest["kind"] == "ConfigMap" and manifest["metadata"]["name"] == "netboot":
                manifest = {**manifest, "data": with_fetch_script(dict(manifest["data"]))}
            if manifest["kind"] == "DaemonSet" and manifest["metadata"]["name"] == "netboot-cache":
                # Refill every Pi's cache when the boot assets change (a Talos upgrade, a new board).
                template = manifest["spec"]["template"]
                digest = fetch.apply(lambda script: hashlib.sha256(script.encode()).hexdigest()[:16])
                template = {**template, "metadata": {**template["metadata"], "annotations": {"iluvatar/assets-digest": digest}}}
                manifest = {**manifest, "spec": {**manifest["spec"], "template": template}}
            rest.append(manifest)
        # Each workload after the account, ConfigMaps and Secrets it names (plans.references).
        existing = {references.identity(namespace): ns, ("Secret", plan.NAMESPACE, "talos-configs"): configs}
        self.objects.update(kube.create_all(name, rest, pulumi.ResourceOptions(parent=self, depends_on=list(args.schematics)), existing))
        self.serving = [self.objects[f"{name}-{kind}-{obj}"] for kind, obj in SERVING]
        # What must be serving before a netbooting maia can boot: the same, and the NFS server of its root (whose pod
        # starts only once the cache built the image and the roots' volume is bound).
        self.pi_serving = [*self.serving, *(o for key, o in self.objects.items() if key == f"{name}-deployment-pi-nfs")]
        self.register_outputs({"dnsmasqConf": self.dnsmasq_conf, "scripts": self.scripts})
