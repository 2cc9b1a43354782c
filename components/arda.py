"""Arda: the Talos workload cluster, from machine secrets to a Kubernetes provider with Cilium.

Bring-up order, as the resource graph encodes it: machine secrets (protected), an Image
Factory schematic per board, each node's machine config (generated locally by the Talos
provider from `plans.talos` patches), ConfigurationApply per node, Bootstrap once on the
first valinor, then the kubeconfig, the Kubernetes provider and Cilium.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
import pulumiverse_talos as talos
import yaml

from components.cilium import Cilium, CiliumArgs
from plans import netboot
from plans import talos as plan
from stacks.model import Node, StackConfig


@dataclass(frozen=True)
class TalosClusterArgs:
    """Arda's input: the validated stack (the arda section and the valinor/istari nodes)."""

    stack: StackConfig


@dataclass(frozen=True)
class TalosNodeArgs:
    """One Arda machine: its inventory entry and what the cluster hands it."""

    node: Node
    patches: pulumi.Input[list[str]]
    secrets: talos.machine.Secrets
    stack: StackConfig
    provider: talos.Provider


class TalosNode(pulumi.ComponentResource):
    """One Arda machine: its generated machine config and the apply that pushes it."""

    machine_configuration: pulumi.Output[str]
    apply: talos.machine.ConfigurationApply

    def __init__(self, name: str, args: TalosNodeArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("iluvatar:arda:TalosNode", name, None, opts)
        node, stack, provider = args.node, args.stack, args.provider
        config = talos.machine.get_configuration_output(
            cluster_name=stack.arda.cluster_name,
            cluster_endpoint=plan.cluster_endpoint(stack),
            machine_type=plan.machine_type(node),
            machine_secrets=args.secrets.machine_secrets,  # type: ignore[arg-type]
            config_patches=args.patches,
            talos_version=stack.arda.talos_version,
            kubernetes_version=plan.kubernetes_version(stack),
            docs=False,
            examples=False,
            opts=pulumi.InvokeOutputOptions(parent=self, provider=provider),
        )
        # The machine config embeds the cluster CA keys and join tokens.
        self.machine_configuration = pulumi.Output.secret(config.machine_configuration)
        self.apply = talos.machine.ConfigurationApply(
            f"{name}-apply",
            client_configuration=args.secrets.client_configuration,  # type: ignore[arg-type]
            machine_configuration_input=self.machine_configuration,
            node=str(node.ip),
            apply_mode="auto",
            # Removing a machine from the inventory resets it gracefully: it leaves etcd and the
            # cluster cleanly instead of lingering as a dead member.
            on_destroy=talos.machine.ConfigurationApplyOnDestroyArgs(graceful=True, reboot=True, reset=True),
            opts=pulumi.ResourceOptions(parent=self, provider=provider),
        )
        self.register_outputs({"machineConfiguration": self.machine_configuration})


class TalosCluster(pulumi.ComponentResource):
    """Arda: the Talos cluster (valinor control planes, istari workers) with Cilium."""

    secrets: talos.machine.Secrets
    nodes: dict[str, TalosNode]
    installer_images: dict[str, pulumi.Output[str]]
    pxe_urls: dict[str, pulumi.Output[str]]
    boot_assets: dict[str, pulumi.Output[tuple[str, str]]]
    machine_configs: dict[str, pulumi.Output[str]]
    netboot_configs: dict[str, pulumi.Output[str]]
    talosconfig: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]
    kubernetes_provider: k8s.Provider
    cilium: Cilium

    def __init__(self, name: str, args: TalosClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("iluvatar:arda:TalosCluster", name, None, opts)
        stack = args.stack
        arda = stack.arda
        provider = talos.Provider(f"{name}-talos", opts=pulumi.ResourceOptions(parent=self))
        self.secrets = talos.machine.Secrets(
            f"{name}-secrets",
            talos_version=arda.talos_version,
            opts=pulumi.ResourceOptions(
                parent=self,
                provider=provider,
                # Losing these means rebuilding the cluster: every node trusts this CA.
                protect=True,
                additional_secret_outputs=["machineSecrets", "clientConfiguration"],
                # Upgrading Talos must never regenerate the CA: talosVersion only shapes new secrets.
                ignore_changes=["talosVersion"],
            ),
        )

        self.installer_images, self.pxe_urls, self.boot_assets = {}, {}, {}
        for board in plan.schematic_boards(stack):
            schematic = talos.imagefactory.Schematic(
                f"{name}-schematic-{board.name}",
                schematic=yaml.safe_dump(plan.schematic(board), sort_keys=False),
                opts=pulumi.ResourceOptions(parent=self, provider=provider),
            )
            urls = talos.imagefactory.get_urls_output(
                architecture=board.arch,
                platform=None if board.talos_overlay else "metal",
                sbc=board.talos_overlay.name if board.talos_overlay else None,
                schematic_id=schematic.id,
                talos_version=arda.talos_version,
                opts=pulumi.InvokeOutputOptions(parent=self, provider=provider),
            )
            self.installer_images[board.name] = urls.urls.installer
            # Image Factory's own iPXE script: boots Talos without the Ainur (config then applied in maintenance mode).
            self.pxe_urls[board.name] = urls.urls.pxe
            self.boot_assets[board.name] = pulumi.Output.all(urls.urls.kernel, urls.urls.initramfs).apply(lambda u: (u[0], u[1]))

        def patches(node: Node) -> pulumi.Output[list[str]]:
            return self.installer_images[node.board].apply(lambda image: plan.node_patches(stack, node, image))

        self.nodes = {}
        for node in stack.arda_nodes:
            self.nodes[node.name] = TalosNode(
                f"{name}-{node.name}",
                TalosNodeArgs(
                    node=node,
                    patches=patches(node),
                    secrets=self.secrets,
                    stack=stack,
                    provider=provider,
                ),
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.machine_configs = {n: tn.machine_configuration for n, tn in self.nodes.items()}
        # What the Ainur serve at /configs/<mac>.yaml: netboot machines, and the generic worker.
        self.netboot_configs = {netboot.mac_name(n.mac): self.machine_configs[n.name] for n in netboot.netboot_nodes(stack)}
        generic = stack.ainur.netboot.generic_worker if stack.ainur and stack.ainur.netboot.unknown_macs == netboot.GENERIC_WORKER else None
        if generic is not None:
            image = self.installer_images[generic.board]
            config = talos.machine.get_configuration_output(
                cluster_name=arda.cluster_name,
                cluster_endpoint=plan.cluster_endpoint(stack),
                machine_type="worker",
                machine_secrets=self.secrets.machine_secrets,  # type: ignore[arg-type]
                config_patches=image.apply(lambda i: [plan.dump(plan.generic_worker_documents(stack, generic.board, generic.install_disk, i))]),
                talos_version=arda.talos_version,
                kubernetes_version=plan.kubernetes_version(stack),
                docs=False,
                examples=False,
                opts=pulumi.InvokeOutputOptions(parent=self, provider=provider),
            )
            self.netboot_configs[netboot.GENERIC_WORKER] = pulumi.Output.secret(config.machine_configuration)

        # The first valinor listed bootstraps etcd; keep it first in the stack file.
        first = stack.by_role("valinor")[0]
        bootstrap = talos.machine.Bootstrap(
            f"{name}-bootstrap",
            node=str(first.ip),
            client_configuration=self.secrets.client_configuration,  # type: ignore[arg-type]
            opts=pulumi.ResourceOptions(parent=self, provider=provider, depends_on=[self.nodes[first.name].apply]),
        )
        kubeconfig = talos.cluster.Kubeconfig(
            f"{name}-kubeconfig",
            node=str(first.ip),
            client_configuration=self.secrets.client_configuration,  # type: ignore[arg-type]
            opts=pulumi.ResourceOptions(parent=self, provider=provider, depends_on=[bootstrap]),
        )
        self.kubeconfig = pulumi.Output.secret(kubeconfig.kubeconfig_raw)
        client = talos.client.get_configuration_output(
            cluster_name=arda.cluster_name,
            client_configuration=self.secrets.client_configuration,  # type: ignore[arg-type]
            endpoints=[str(n.ip) for n in stack.by_role("valinor")],
            nodes=[str(n.ip) for n in stack.arda_nodes],
            opts=pulumi.InvokeOutputOptions(parent=self, provider=provider),
        )
        self.talosconfig = pulumi.Output.secret(client.talos_config)

        self.kubernetes_provider = k8s.Provider(
            f"{name}-kubernetes",
            kubeconfig=self.kubeconfig,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.cilium = Cilium(
            f"{name}-cilium",
            CiliumArgs(stack=stack),
            opts=pulumi.ResourceOptions(parent=self, providers={"kubernetes": self.kubernetes_provider}),
        )
        self.register_outputs(
            {
                "installerImages": self.installer_images,
                "pxeUrls": self.pxe_urls,
                "talosconfig": self.talosconfig,
                "kubeconfig": self.kubeconfig,
            }
        )
