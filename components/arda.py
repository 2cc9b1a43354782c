"""Arda: the Talos workload cluster, in two components.

`TalosConfig` (`iluvatar:arda:TalosConfig`) is what every machine is handed: the cluster's machine
secrets (protected), an Image Factory schematic per board, and each machine's config, generated
locally by the Talos provider from `plans.talos` patches. It creates nothing on any machine, so the
Ainur can serve the netbooting workers' configs before Arda exists.

`TalosCluster` (`iluvatar:arda:TalosCluster`) is the sequence that brings Arda up and rolls every
later change through it, each wait an explicit step (`plans.bringup`):

  apply each machine, one after another (control planes, then workers), each after the Ainur's
  netboot serves when it boots from the network → bootstrap etcd on the first valinor → gate: etcd,
  the API servers and the VIP → the kubeconfig and the Kubernetes provider → Cilium → gate: Cilium's
  CRDs admit its pool and policy → the pool and policy, and CoreDNS (`plans.coredns`, Talos's own
  turned off) → gate: every machine Ready (`ready`).

The apply steps are the upgrader's (`upgrader apply`): a machine in maintenance mode is handed its
config and installs on its own (a fresh cluster installs in parallel); a running machine gets the
change without a reboot when Talos can apply it so, and otherwise is drained, staged, rebooted and
checked before the next machine starts; a new Talos version upgrades it the same way.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_command as command
import pulumi_kubernetes as k8s
import pulumiverse_talos as talos

from components import kube, monitoring, steps
from components.cilium import Cilium, CiliumArgs
from components.coredns import CoreDNS, CoreDNSArgs
from components.steps import ClusterAccess
from plans import bringup, netboot, rollout
from plans import logs as logs_plan
from plans import storage as storage_plan
from plans import talos as plan
from stacks import day2, encryption, releases
from stacks.day2 import DeployedArda, former_names
from stacks.logs_model import Logs
from stacks.model import Node, StackConfig
from stacks.storage import osd_hosts


@dataclass(frozen=True)
class TalosConfigArgs:
    """Arda's machines: the validated stack (the arda section and the valinor/istari nodes), and the local CA
    the control planes' API servers trust Dex through (with iluvatar:identity, plans.apiserver)."""

    stack: StackConfig
    ca_certificate: pulumi.Output[str] | None = None


# The Talos provider's outputs handed back to it. `talos.machine.Secrets`' outputs are output objects; passed where
# the SDK declares an `...Args` input type, the Python SDK serialises them under their Python names (`bootstrap_token`,
# `client_certificate`), which the bridged provider does not read: a real `pulumi up` failed with "Must set a
# configuration value" on every one (shared engine facts, 2026-11-25). So each is rebuilt as the input type the SDK
# declares, which serialises under the provider's own names; secret whatever the engine marks (the keys and tokens).


def _certificate(cert: talos.machine.outputs.CertificateResult) -> talos.machine.CertificateArgs:
    return talos.machine.CertificateArgs(cert=cert.cert, key=cert.key)


def machine_secrets_args(secrets: talos.machine.outputs.MachineSecretsResult) -> talos.machine.MachineSecretsArgs:
    """The secrets bundle as `talos.machine.get_configuration` takes it (`MachineSecretsArgs`), every field carried over."""
    certs = secrets.certs
    return talos.machine.MachineSecretsArgs(
        certs=talos.machine.CertificatesArgs(
            etcd=_certificate(certs.etcd),
            k8s=_certificate(certs.k8s),
            k8s_aggregator=_certificate(certs.k8s_aggregator),
            k8s_serviceaccount=talos.machine.KeyArgs(key=certs.k8s_serviceaccount.key),
            os=_certificate(certs.os),
        ),
        cluster=talos.machine.ClusterArgs(id=secrets.cluster.id, secret=secrets.cluster.secret),
        secrets=talos.machine.KubernetesSecretsArgs(
            bootstrap_token=secrets.secrets.bootstrap_token,
            secretbox_encryption_secret=secrets.secrets.secretbox_encryption_secret,
            aescbc_encryption_secret=secrets.secrets.aescbc_encryption_secret,
        ),
        trustdinfo=talos.machine.TrustdInfoArgs(token=secrets.trustdinfo.token),
    )


def client_args(config: talos.machine.outputs.ClientConfiguration) -> talos.client.GetConfigurationClientConfigurationArgs:
    """The client credentials as `talos.client.get_configuration` takes them."""
    return talos.client.GetConfigurationClientConfigurationArgs(
        ca_certificate=config.ca_certificate, client_certificate=config.client_certificate, client_key=config.client_key
    )


def kubeconfig_client_args(config: talos.machine.outputs.ClientConfiguration) -> talos.cluster.KubeconfigClientConfigurationArgs:
    """The client credentials as `talos.cluster.Kubeconfig` takes them."""
    return talos.cluster.KubeconfigClientConfigurationArgs(
        ca_certificate=config.ca_certificate, client_certificate=config.client_certificate, client_key=config.client_key
    )


def machine_configuration(
    stack: StackConfig,
    machine_type: str,
    secrets: talos.machine.Secrets,
    patches: pulumi.Input[list[str]],
    provider: talos.Provider,
    parent: pulumi.Resource,
    kubernetes_version: str | None = None,
) -> pulumi.Output[str]:
    """A machine config generated by the Talos provider, secret: it embeds the CA keys and join tokens.

    Its version contract is the Talos version the secrets were made for, which `ignore_changes`
    keeps at the version the cluster was installed with: a new `talosVersion` upgrades the machines
    (the installer image), and never re-shapes the config of a running cluster. `kubernetes_version`:
    a path's Kubernetes step on the way (stacks.releases.talos_path), whose images it names; else the stack's.
    """
    config = talos.machine.get_configuration_output(
        cluster_name=stack.arda.cluster_name,
        cluster_endpoint=plan.cluster_endpoint(stack),
        machine_type=machine_type,
        machine_secrets=pulumi.Output.secret(secrets.machine_secrets.apply(machine_secrets_args)),
        config_patches=patches,
        talos_version=secrets.talos_version,
        kubernetes_version=kubernetes_version.removeprefix("v") if kubernetes_version else plan.kubernetes_version(stack),
        docs=False,
        examples=False,
        opts=pulumi.InvokeOutputOptions(parent=parent, provider=provider),
    )
    return pulumi.Output.secret(config.machine_configuration)


def warn_schematic_drift(board: str, computed: str, answered: str, resource: pulumi.Resource) -> None:
    """A warning when Image Factory names a board's schematic otherwise than plans.talos computed it.

    Not in a preview: a schematic about to change still has its former ID there."""
    if answered != computed and not pulumi.runtime.is_dry_run():
        pulumi.log.warn(
            f"arda: Image Factory named the {board} schematic {answered}, but the program named its images by {computed} "
            "(plans.imagefactory follows Image Factory v1.1.0): the factory may not serve those installer and disk "
            "images; report it, with both IDs",
            resource=resource,
        )


class TalosConfig(pulumi.ComponentResource):
    """What each Arda machine is handed: secrets, schematics, images, and every machine's config."""

    provider: talos.Provider
    secrets: talos.machine.Secrets
    # Each board's schematic as sent to Image Factory: a machine's step waits for its board's.
    schematics: dict[str, talos.imagefactory.Schematic]
    installer_images: dict[str, pulumi.Output[str]]
    disk_images: dict[str, pulumi.Output[str]]
    pxe_urls: dict[str, pulumi.Output[str]]
    boot_assets: dict[str, pulumi.Output[tuple[str, str]]]
    patches: dict[str, pulumi.Output[list[str]]]
    machine_configs: dict[str, pulumi.Output[str]]
    netboot_configs: dict[str, pulumi.Output[str]]
    talosconfig: pulumi.Output[str]
    # The same credentials with the control planes as endpoints and no nodes: what the steps get on stdin
    # (they reach each machine at its own address, and the cluster through the control planes), so
    # adding a worker changes no other machine's step.
    credentials: pulumi.Output[str]

    def __init__(self, name: str, args: TalosConfigArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        if not args.stack.by_role("valinor"):
            # Validation refuses this (etcd quorum); a stack that got here without it gets a plain error, not an IndexError.
            raise pulumi.RunError(
                "iluvatar:nodes: Arda has 0 valinor (control planes); Talos needs one to bootstrap etcd (add a node with role: valinor)"
            )
        super().__init__("iluvatar:arda:TalosConfig", name, None, opts)
        stack = args.stack
        arda = stack.arda
        self.provider = provider = talos.Provider(f"{name}-talos", opts=pulumi.ResourceOptions(parent=self))
        self.secrets = talos.machine.Secrets(
            f"{name}-secrets",
            talos_version=arda.talos_version,
            opts=pulumi.ResourceOptions(
                parent=self,
                provider=provider,
                # Losing these means rebuilding the cluster: every node trusts this CA.
                protect=True,
                additional_secret_outputs=["machineSecrets", "clientConfiguration"],
                # Upgrading Talos must never regenerate the CA, and the configs keep the install's version contract.
                ignore_changes=["talosVersion"],
            ),
        )

        self.installer_images, self.pxe_urls, self.boot_assets, self.schematics = {}, {}, {}, {}
        board_disk_images: dict[str, pulumi.Output[str]] = {}
        for board in plan.schematic_boards(stack):
            # The board's kernel arguments are part of its schematic (plans.talos.schematic): a change is a new installer.
            kernel_args = plan.kernel_args(stack, board)
            schematic_id = plan.schematic_id(board, kernel_args)
            schematic = talos.imagefactory.Schematic(
                f"{name}-schematic-{board.name}",
                schematic=plan.schematic_yaml(board, kernel_args),
                # A changed schematic has another ID, which the provider's Update returns but the engine drops (an
                # update keeps the resource's ID: pulumi v3.259.0 pkg/resource/deploy/step.go:963, UpdateStep.Apply), so
                # the images would stay the old schematic's. A replacement is a Create: POST /schematics, its new ID.
                opts=pulumi.ResourceOptions(parent=self, provider=provider, replace_on_changes=["schematic"]),
            )
            self.schematics[board.name] = schematic
            # The images are named by the ID plans.talos computes as Image Factory does (plans.imagefactory), known at
            # preview: a changed schematic shows as the machines' new installer there, and the render, the preview and
            # the up name the same images. Image Factory's own answer is checked against it at `pulumi up`; the
            # machines' steps wait for the Schematic (the factory serves an image only once it was sent the schematic).
            schematic.id.apply(functools.partial(warn_schematic_drift, board.name, schematic_id, resource=self))
            urls = talos.imagefactory.get_urls_output(
                architecture=board.arch,
                platform=None if board.talos_overlay else "metal",
                sbc=board.talos_overlay.name if board.talos_overlay else None,
                schematic_id=schematic_id,
                talos_version=arda.talos_version,
                opts=pulumi.InvokeOutputOptions(parent=self, provider=provider),
            )
            # A board whose volumes are sealed to its TPM boots the signed UKI, which carries the key Talos's TPM policy
            # needs (plans.volume_encryption): its machines install from the Secure Boot installer.
            self.installer_images[board.name] = urls.urls.installer_secureboot if plan.secureboot(stack, board) else urls.urls.installer
            if board.talos_overlay is not None:
                # SBCs are flashed: the factory serves them a disk image, and no PXE assets at all.
                board_disk_images[board.name] = urls.urls.disk_image
            else:
                # Image Factory's own iPXE script: boots Talos without the Ainur (config then applied in maintenance mode).
                self.pxe_urls[board.name] = urls.urls.pxe
                self.boot_assets[board.name] = pulumi.Output.all(urls.urls.kernel, urls.urls.initramfs).apply(lambda u: (u[0], u[1]))

        # What to flash on each SBC machine (they boot from their own storage, never the network).
        self.disk_images = {n.name: board_disk_images[n.board] for n in stack.arda_nodes if n.board in board_disk_images}

        def patches(node: Node) -> pulumi.Output[list[str]]:
            # The local CA: a control plane's API server trusts Dex through it; a machine whose volumes unlock through the
            # Ainur's KMS trusts the KMS's certificate through it (plans.volume_encryption).
            needs_ca = (stack.identity is not None and node.role == "valinor") or encryption.node_key(stack, node.board) == "kms"
            if args.ca_certificate is not None and needs_ca:
                with_ca = pulumi.Output.all(self.installer_images[node.board], args.ca_certificate)
                return with_ca.apply(lambda values: plan.node_patches(stack, node, values[0], values[1]))
            return self.installer_images[node.board].apply(lambda image: plan.node_patches(stack, node, image))

        self.patches = {node.name: patches(node) for node in stack.arda_nodes}
        self.machine_configs = {
            node.name: machine_configuration(stack, plan.machine_type(node), self.secrets, self.patches[node.name], provider, self)
            for node in stack.arda_nodes
        }
        # What the Ainur serve at /configs/<mac>.yaml: netboot workers and the generic worker. Control
        # planes' configs hold the CA keys: they boot into maintenance mode and get theirs applied.
        self.netboot_configs = {netboot.mac_name(n.mac): self.machine_configs[n.name] for n in netboot.config_nodes(stack)}
        generic = stack.generic_worker
        if generic is not None:
            if args.ca_certificate is not None and encryption.node_key(stack, generic.board) == "kms":
                worker_patches = pulumi.Output.all(self.installer_images[generic.board], args.ca_certificate).apply(
                    lambda v: [plan.dump(plan.generic_worker_documents(stack, generic.board, generic.install_disk, v[0], v[1]))]
                )
            else:
                worker_patches = self.installer_images[generic.board].apply(
                    lambda image: [plan.dump(plan.generic_worker_documents(stack, generic.board, generic.install_disk, image))]
                )
            self.netboot_configs[netboot.GENERIC_WORKER] = machine_configuration(stack, "worker", self.secrets, worker_patches, provider, self)

        client_configuration: pulumi.Output[talos.client.GetConfigurationClientConfigurationArgs] = pulumi.Output.secret(
            self.secrets.client_configuration.apply(client_args)
        )
        client = talos.client.get_configuration_output(
            cluster_name=arda.cluster_name,
            client_configuration=client_configuration,
            endpoints=[str(n.ip) for n in stack.by_role("valinor")],
            nodes=[str(n.ip) for n in stack.arda_nodes],
            opts=pulumi.InvokeOutputOptions(parent=self, provider=provider),
        )
        self.talosconfig = pulumi.Output.secret(client.talos_config)
        credentials = talos.client.get_configuration_output(
            cluster_name=arda.cluster_name,
            client_configuration=client_configuration,
            endpoints=[str(n.ip) for n in stack.by_role("valinor")],
            opts=pulumi.InvokeOutputOptions(parent=self, provider=provider),
        )
        self.credentials = pulumi.Output.secret(credentials.talos_config)
        self._stack = stack
        self.register_outputs(
            {"installerImages": self.installer_images, "diskImages": self.disk_images, "pxeUrls": self.pxe_urls, "talosconfig": self.talosconfig}
        )

    def configs_at(self, kubernetes_version: str, nodes: Sequence[Node]) -> dict[str, pulumi.Output[str]]:
        """Each machine's config as the provider generates it at a path's Kubernetes step on the way: the images a
        Kubernetes upgrade to that version puts in the running configs (its only use: no machine is handed it)."""
        return {
            node.name: machine_configuration(
                self._stack, plan.machine_type(node), self.secrets, self.patches[node.name], self.provider, self, kubernetes_version
            )
            for node in nodes
        }


@dataclass(frozen=True)
class TalosClusterArgs:
    """Arda's bring-up: the stack, its machines' configs, and what the installs wait for.

    `netboot_serving`: the Ainur's netboot objects that must be serving before a machine that boots
    from the network can be reached (its DHCP/PXE server, boot assets and HTTP). `power_on`: by
    machine name, the step that powers it on, when the inventory says how.
    """

    stack: StackConfig
    config: TalosConfig
    netboot_serving: Sequence[pulumi.Resource] = ()
    power_on: Mapping[str, pulumi.Resource] = field(default_factory=dict)
    # What the last deployment ran (its `arda` output); empty on a first deployment.
    deployed: DeployedArda = field(default_factory=DeployedArda)


@dataclass(frozen=True)
class TalosNodeArgs:
    """One Arda machine: its inventory entry, its config, and what its apply waits for."""

    node: Node
    stack: StackConfig
    config: TalosConfig
    commands: command.Provider
    after: Sequence[pulumi.Resource]
    # The name the last deployment knew this machine by, when it was renamed since.
    former: str | None = None
    # How many times it was found in maintenance mode and handed its config again (plans.bringup.probe_command).
    generation: pulumi.Input[str] = "0"


def ceph_hosts(stack: StackConfig) -> set[str]:
    """The machines Ceph keeps data on, when Ceph runs."""
    return {h.name for h in osd_hosts(stack.nodes)} if storage_plan.ceph_enabled(stack) else set()


def patches_digest(stack: StackConfig, node: Node) -> str:
    """A short digest of a machine's patches but its installer image (a version change shows as itself): shown in
    `pulumi preview` and the day-2 plan when they change, since the config itself is secret."""
    return hashlib.sha256("\n---\n".join(plan.node_patches(stack, node, "(the installer image)")).encode()).hexdigest()[:16]


def state_digests(stack: StackConfig, node: Node) -> tuple[str, str]:
    """The machine's patches as the day-2 plan tells them apart: a digest of all but the log delivery, and one of the
    log delivery (machine.logging, KmsgLogConfig), which Talos applies without a reboot (plans.logs.APPLY_WITHOUT_REBOOT).
    Without logs the second is empty, and the first is what a deployment before logs recorded."""
    quiet = stack.model_copy(update={"logs": Logs(enabled=False)})
    delivery = [logs_plan.talos_logging(stack, node.name), *logs_plan.kmsg_document(stack)] if logs_plan.enabled(stack) else []
    logging = hashlib.sha256(json.dumps(delivery, sort_keys=True).encode()).hexdigest()[:16] if delivery else ""
    return patches_digest(quiet, node), logging


def about(stack: StackConfig, config: TalosConfig, node: Node) -> dict[str, pulumi.Input[str]]:
    """What a machine's apply step is about, shown in `pulumi preview` when it changes: the versions, the
    installer image, the patches' digest."""
    return {
        "TALOS_VERSION": stack.arda.talos_version,
        "KUBERNETES_VERSION": stack.arda.kubernetes_version,
        "INSTALLER": config.installer_images[node.board],
        "PATCHES": patches_digest(stack, node),
    }


class TalosNode(pulumi.ComponentResource):
    """One Arda machine: the step that applies its config and rolls every change through it."""

    apply: command.local.Command

    def __init__(self, name: str, args: TalosNodeArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("iluvatar:arda:TalosNode", name, None, opts)
        node, stack, config = args.node, args.stack, args.config
        self.apply = steps.run(
            f"{name}-apply",
            bringup.talos_apply(stack, node),
            args.commands,
            self,
            stdin=steps.secret_stdin(
                {
                    "talosconfig": config.credentials,
                    "machineConfig": config.machine_configs[node.name],
                    # A Ceph host's reboot is wrapped in noout (and a wait for the data to be whole again).
                    **({"hooks": storage_plan.noout_jobs()} if node.name in ceph_hosts(stack) else {}),
                }
            ),
            after=args.after,
            aliases=[f"{name.removesuffix(node.name)}{args.former}-apply"] if args.former else (),
            delete=bringup.talos_reset(node),
            about={**about(stack, config, node), "GENERATION": args.generation},
        )
        self.register_outputs({})


def today() -> datetime.datetime:
    """The moment this run happens: the Talos provider renews the client certificate against its own clock (time.Now in
    ModifyPlan), so the plan does too. iluvatar.simulate sets it, so a simulated run is the same on any day."""
    return datetime.datetime.now(datetime.UTC)


# What the day-2 plan says when a preview could not probe the machines (TalosCluster._unprobed).
UNPROBED = (
    "the machines are not probed for maintenance mode at this preview (their talosconfig is renewed in this run); every "
    "machine's step runs anyway, and one it finds in maintenance mode is handed its config and installs"
)


# Python frames for what runs around the roll's chain of dependencies, and for each link of it (see TalosCluster).
CHAIN_FRAMES = 1_000
FRAMES_PER_MACHINE = 2


class TalosCluster(pulumi.ComponentResource):
    """Arda: the Talos cluster (valinor control planes, istari workers) brought up and rolled in order, with Cilium."""

    nodes: dict[str, TalosNode]
    kubeconfig: pulumi.Output[str]
    kubernetes_provider: k8s.Provider
    access: ClusterAccess
    cilium: Cilium
    # The Prometheus Operator's CRDs' gate, with iluvatar:monitoring (components.monitoring.crds).
    monitoring_crds: pulumi.Resource | None
    coredns: CoreDNS
    ready: command.local.Command
    # What Arda runs after this deployment (plans.rollout.state): exported as `arda`, read back next time.
    state: pulumi.Output[dict[str, Any]]

    def __init__(self, name: str, args: TalosClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("iluvatar:arda:TalosCluster", name, None, opts)
        stack, config = args.stack, args.config
        self._config = config
        commands = command.Provider(f"{name}-command", opts=pulumi.ResourceOptions(parent=self))
        talosconfig = steps.secret_stdin({"talosconfig": config.credentials})

        # One machine after another: on a running cluster each change is rolled and checked on one
        # machine before the next starts (a machine in maintenance mode only takes its config, so a
        # fresh cluster still installs in parallel).
        self.nodes = {}
        previous: list[pulumi.Resource] = []
        # So the machines form one chain of dependencies, and Pulumi's SDK checks each new dependency for a cycle
        # by walking every dependency below it, one nested generator per link (pulumi.runtime.resource_cycle_breaker):
        # about 990 machines passed Python's default limit of 1,000 frames and the program died at registration.
        sys.setrecursionlimit(max(sys.getrecursionlimit(), CHAIN_FRAMES + FRAMES_PER_MACHINE * len(stack.nodes)))
        # A machine renamed in the inventory (same MAC) keeps its resources: its step is updated, never
        # deleted (which would reset the machine now answering at its address) and created anew.
        renamed = former_names(stack, args.deployed.nodes)
        generations = self._generations(stack, args.deployed, commands)
        deployed_kubernetes = args.deployed.kubernetes_version
        # A path across Talos minors (stacks.day2.path_of), its last step being the machines' own steps below.
        path = day2.path_of(stack, args.deployed)
        kubernetes_upgrade = deployed_kubernetes not in (None, stack.arda.kubernetes_version)
        # A roll that moves etcd's minor (Talos 1.14 runs etcd 3.7: stacks.releases.ETCD) gets it too, though it is the
        # machines' own steps: the first control plane's snapshot (ETCD_SNAPSHOT) is replaced by every later run's, while
        # this one, named by the versions that ran and written once, keeps the last state etcd 3.6 wrote.
        if path[:-1] or kubernetes_upgrade or releases.path_etcd_moves(args.deployed.talos_version, path):
            previous = self._snapshot_first(name, args, commands, renamed, previous)
        if kubernetes_upgrade and not releases.kubernetes_steps(path):
            # A Kubernetes upgrade: before any machine's apply, which then finds the Kubernetes part of its new config done.
            previous = self._kubernetes_upgrade(name, args, commands, renamed, None, previous)
        # Before the machines' own steps, which install the stack's Talos, every machine the last deployment installed
        # is rolled to each intermediate minor's newest release, one machine after another, each behind its own step's
        # checks; where the next minor needs a newer Kubernetes than runs, Kubernetes moves first, one minor at a time,
        # as any Kubernetes upgrade does (the stack's own version for its minor). Steps that exist for this run only (the
        # next run, with nothing to roll, deletes them, which runs nothing); a run stopped on the way registers the same
        # steps again, and Pulumi runs only those that did not finish (a roll finds its machine there already, a
        # Kubernetes upgrade only checks a component already at its version).
        for hop in path[:-1]:
            if hop.kubernetes is not None:
                previous = self._kubernetes_upgrade(name, args, commands, renamed, hop.kubernetes, previous)
                continue
            assert hop.talos is not None
            version = hop.talos
            for node in bringup.rollout_order(stack):
                if not day2.installed(node, args.deployed, renamed.get(node.name)):
                    continue  # new to the inventory: it installs the stack's Talos from maintenance mode
                roll = steps.run(
                    f"{name}-{node.name}-talos-{version}",
                    bringup.talos_roll(stack, node, version),
                    commands,
                    self,
                    stdin=steps.secret_stdin(
                        {
                            "talosconfig": config.credentials,
                            "machineConfig": config.machine_configs[node.name],
                            **({"hooks": storage_plan.noout_jobs()} if node.name in ceph_hosts(stack) else {}),
                        }
                    ),
                    after=[*previous, config.schematics[node.board]],
                )
                previous = [roll]
        for node in bringup.rollout_order(stack):
            after = [*previous, config.schematics[node.board], *([args.power_on[node.name]] if node.name in args.power_on else [])]
            # Netboot only for a machine that will boot it: one the last deployment installed boots from its disk, and a
            # Talos upgrade changes netboot objects (the cache's assets, the served configs) that need the Ainur's API and
            # every Pi's cache: its roll must not wait on them (docs/day2.md, "Upgrading Talos").
            if stack.boots_from_network(node) and not day2.installed(node, args.deployed, renamed.get(node.name)):
                after += args.netboot_serving
            self.nodes[node.name] = TalosNode(
                f"{name}-{node.name}",
                TalosNodeArgs(
                    node=node,
                    stack=stack,
                    config=config,
                    commands=commands,
                    after=after,
                    former=renamed.get(node.name),
                    generation=generations[node.name].apply(str),
                ),
                opts=pulumi.ResourceOptions(
                    parent=self, aliases=[pulumi.Alias(name=f"{name}-{renamed[node.name]}")] if node.name in renamed else None
                ),
            )
            previous = [self.nodes[node.name].apply]
        applies = [n.apply for n in self.nodes.values()]

        first = bringup.control_planes(stack)[0]
        bootstrap = steps.run(
            f"{name}-bootstrap", bringup.talos_bootstrap(stack), commands, self, stdin=talosconfig, after=[self.nodes[first.name].apply]
        )
        api = steps.run(f"{name}-gate-api", bringup.arda_api_gate(stack), commands, self, stdin=talosconfig, after=[bootstrap, *applies])

        client: pulumi.Output[talos.cluster.KubeconfigClientConfigurationArgs] = pulumi.Output.secret(
            config.secrets.client_configuration.apply(kubeconfig_client_args)
        )
        # Asked of the control plane that holds the VIP, not of the first: the provider renews the kubeconfig within
        # 720 h of its client certificate's end, on every `up` until it has (terraform-provider-talos v0.8.1
        # talos_cluster_kubeconfig_resource.go:441-447, 647-677), and one named machine down then failed each of them.
        # That does not carry a renewal past a control plane that is down: the talosconfig's client certificate, issued
        # minutes apart for the same year, is renewed within a month of its end, and its renewal re-runs every Arda step
        # before this one (plans.rollout, TALOSCONFIG_STEPS), which fail while a control plane is down (docs/bring-up.md).
        # The provider dials `endpoint` (planned as `node` when unset, ModifyPlan :351-356) and has apid there forward to
        # `node` (util.go talosClientOp: client.WithNode); apid on the VIP's holder reaches the VIP, itself. Talos moves
        # the VIP by an etcd election, so it answers wherever the Kubernetes API can, which is all the kubeconfig is
        # for; apid's certificate names every address its node holds (Talos network/node_address.go, accumulative
        # addresses; secrets/api_cert_sans.go), the VIP among them. No attribute of the resource has a RequiresReplace
        # plan modifier (Schema :77-160): on a deployed homelab the new `node` is an in-place update, which keeps the
        # stored kubeconfig (UseStateForUnknown, :116-122) and dials nothing unless the renewal is due (Update :585, 647).
        kubeconfig = talos.cluster.Kubeconfig(
            f"{name}-kubeconfig",
            node=str(stack.arda.vip),
            client_configuration=client,
            opts=pulumi.ResourceOptions(parent=self, provider=config.provider, depends_on=[api]),
        )
        self.kubeconfig = pulumi.Output.secret(kubeconfig.kubeconfig_raw)
        # Configured only once the API answers: pulumi-kubernetes checks its cluster once per run, when
        # it is configured, and refuses every create of the run if the cluster did not answer then.
        self.kubernetes_provider = kube.cluster_provider(f"{name}-kubernetes", self.kubeconfig, stack.arda.cluster_name, self, after=[api])
        # Arda's objects go with its etcd: the bootstrap step is deleted only when the cluster is.
        self.access = ClusterAccess(name, self.kubeconfig, commands, anchor=bootstrap, identifier=stack.arda.cluster_name)
        # With monitoring, the Prometheus Operator's CRDs come first, so Cilium's chart (and every later one) can turn its monitors on.
        self.monitoring_crds = (
            monitoring.crds(f"{name}-monitoring", self.access, self.kubernetes_provider, self) if stack.monitoring is not None else None
        )
        self.cilium = Cilium(
            f"{name}-cilium",
            CiliumArgs(stack=stack, access=self.access, after=[self.monitoring_crds] if self.monitoring_crds is not None else []),
            opts=pulumi.ResourceOptions(parent=self, providers={"kubernetes": self.kubernetes_provider}, transformations=[self.access.in_cluster]),
        )
        # The cluster's DNS, which Talos no longer deploys (plans.coredns): once the CNI runs.
        self.coredns = CoreDNS(
            f"{name}-coredns",
            CoreDNSArgs(stack=stack, after=[self.cilium.gate]),
            opts=pulumi.ResourceOptions(parent=self, providers={"kubernetes": self.kubernetes_provider}, transformations=[self.access.in_cluster]),
        )
        # Nothing that schedules pods starts before every machine is Ready (which needs the CNI), nor
        # before the cluster answers names (CoreDNS available), nor before the load-balancer pool
        # exists (the gateways' Services take their addresses from it), nor before the policy that keeps
        # every pod from the Ainur's KMS (a pod started earlier could unseal as its machine).
        self.ready = steps.run(
            f"{name}-gate-nodes",
            bringup.arda_nodes_gate(stack),
            commands,
            self,
            stdin=steps.secret_stdin({"talosconfig": config.credentials, "kubeconfig": self.kubeconfig}),
            after=[
                self.cilium.release,
                self.cilium.pool,
                self.cilium.l2_policy,
                *self.cilium.app_pools,
                *([self.cilium.kms_deny] if self.cilium.kms_deny is not None else []),
                *self.coredns.objects.values(),
                *applies,
            ],
        )
        installers = pulumi.Output.all(**{n.name: config.installer_images[n.board] for n in stack.arda_nodes})
        split = {n.name: state_digests(stack, n) for n in stack.arda_nodes}
        digests = {name: d[0] for name, d in split.items()}
        logging = {name: d[1] for name, d in split.items()}
        counts = pulumi.Output.all(**generations)
        # The talosconfig's client certificate's end, for the next run to foresee the provider's renewal (plans.rollout):
        # not secret, though the certificate's output is. Unknown at a preview that renews it, so the plan below goes without.
        expires = pulumi.Output.unsecret(config.secrets.client_configuration).apply(lambda c: rollout.certificate_expiry(c.client_certificate))
        self.state = pulumi.Output.all(installers, counts, expires).apply(
            lambda v: rollout.state(stack, v[0], digests, v[1], v[2], logging, args.deployed.output)
        )
        if args.deployed.deployed:
            # The day-2 plan, before anything runs: every step that runs, in what order, and why.
            deployed, day = args.deployed.output, today()
            probe = None if not self._unprobed(args.deployed, day) else UNPROBED
            planned = pulumi.Output.all(installers, counts).apply(lambda v: rollout.state(stack, v[0], digests, v[1], None, logging, deployed))
            planned.apply(lambda now: pulumi.log.info(rollout.plan(deployed, now, day, probe, routes=stack.remote_access is not None), resource=self))
        self.register_outputs({"kubeconfig": self.kubeconfig, "state": self.state})

    def _snapshot_first(
        self, name: str, args: TalosClusterArgs, commands: command.Provider, renamed: Mapping[str, str], after: Sequence[pulumi.Resource]
    ) -> list[pulumi.Resource]:
        """An etcd snapshot before the chain's first step when steps come before the machines' own (a path's rolls, a
        Kubernetes upgrade), whose own snapshot (the first control plane's --etcd-snapshot) would come after them (review
        M2). It exists for this run only; once done it is not run again while registered (its command's and stdin's changes
        ignored: a machine taken out of the stack, a renewed talosconfig), and it writes its file once (--keep), so the file
        keeps the state from before the first step of the first attempt (review 2 N3)."""
        stack, deployed = args.stack, args.deployed
        first = next(
            ((then, ip) for node, then, ip in bringup.running_machines(stack, deployed, renamed) if plan.machine_type(node) == "controlplane"), None
        )
        if first is None:
            return list(after)
        step = bringup.etcd_snapshot(
            *first, deployed.talos_version or stack.arda.talos_version, deployed.kubernetes_version or stack.arda.kubernetes_version
        )
        stdin = steps.secret_stdin({"talosconfig": args.config.credentials})
        return [steps.run(f"{name}-etcd-snapshot", step, commands, self, stdin=stdin, after=after, ignore_changes=["create", "update", "stdin"])]

    def _kubernetes_upgrade(
        self,
        name: str,
        args: TalosClusterArgs,
        commands: command.Provider,
        renamed: Mapping[str, str],
        version: str | None,
        after: Sequence[pulumi.Resource],
    ) -> list[pulumi.Resource]:
        """A Kubernetes upgrade to `version` (the stack's when None): checked against the running cluster first (version
        skew, removed APIs still asked for), then rolled component by component across the machines the last deployment
        installed. Steps that exist for one run (the next run deletes them, which runs nothing). The stack's version is
        named `<cluster>-kubernetes-preflight` and `-upgrade`, a path's step on the way `-kubernetes-<version>-...`,
        with configs the provider generates at that version (TalosConfig.configs_at)."""
        stack, config = args.stack, args.config
        on_the_way = version not in (None, stack.arda.kubernetes_version)
        prefix = f"{name}-kubernetes-{version}" if on_the_way else f"{name}-kubernetes"
        check = bringup.kubernetes_preflight(stack, version)
        running = bringup.running_machines(stack, args.deployed, renamed)
        if not running:
            return [
                steps.run(f"{prefix}-preflight", check, commands, self, stdin=steps.secret_stdin({"talosconfig": config.credentials}), after=after)
            ]
        new = config.configs_at(str(version), [node for node, _, _ in running]) if on_the_way else config.machine_configs
        step = bringup.kubernetes_upgrade(stack, [(then, ip, plan.machine_type(node) == "controlplane") for node, then, ip in running], version)
        configs = pulumi.Output.all(**{then: new[node.name] for node, then, _ in running})
        # The check and the upgrade on the same inputs (review H2 c): one stdin, and each run again when either command
        # changes, so a change that runs the upgrade again runs its check first. A step on the way exists only while a
        # path runs; a run stopped after it registers it again, with configs that change with any patch and a
        # talosconfig the provider renews: once done it must not run again on that (review H2 b; a real engine updated
        # the steps on `~environment,stdin`, shared/engine-facts.md), so its stdin's changes are ignored. Its command
        # names the version.
        stdin = steps.secret_stdin({"talosconfig": config.credentials, "machineConfigs": configs})
        triggers, ignore = [check.command, step.command], ["stdin"] if on_the_way else []
        preflight = steps.run(f"{prefix}-preflight", check, commands, self, stdin=stdin, after=after, triggers=triggers, ignore_changes=ignore)
        return [steps.run(f"{prefix}-upgrade", step, commands, self, stdin=stdin, after=[preflight], triggers=triggers, ignore_changes=ignore)]

    @staticmethod
    def _unprobed(deployed: DeployedArda, day: datetime.datetime) -> bool:
        """Whether this preview cannot ask the machines: the provider renews the client certificate in this run, so the
        talosconfig the probe needs is unknown until `up` (plans.rollout.renewal)."""
        return pulumi.runtime.is_dry_run() and rollout.renewal(deployed.output, day) is not None

    def _generations(self, stack: StackConfig, deployed: DeployedArda, commands: command.Provider) -> dict[str, pulumi.Output[int]]:
        """Each machine's generation: the last deployment's, one more for a machine found in maintenance mode now.

        Asked on a deployed cluster at `pulumi preview` as at `pulumi up`, so the preview shows the re-apply `up` will
        run. The probe never fails, asks every machine at once and gives each at most its deadline (3 s), so a cluster
        that is down blocks no preview: a machine it cannot reach keeps its generation. Not at a preview that renews the
        client certificate, whose talosconfig is unknown until `up` (every machine's step runs then anyway).
        """
        before = {n.name: int(deployed.nodes.get(n.name, {}).get("generation", 0)) for n in stack.arda_nodes}
        if not deployed.deployed or self._unprobed(deployed, today()):
            return {name: pulumi.Output.from_input(count) for name, count in before.items()}
        config = self._config
        printed = command.local.run_output(
            command=bringup.probe_command(stack),
            stdin=steps.secret_stdin({"talosconfig": config.credentials}),
            logging=command.local.Logging.STDERR,
            opts=pulumi.InvokeOutputOptions(parent=self, provider=commands),
        ).stdout
        # What it prints holds no secret (the machines' states), though its stdin does: keep the steps' versions readable in a preview.
        found = pulumi.Output.unsecret(printed).apply(rollout.probed)

        def bumped(name: str, count: int) -> pulumi.Output[int]:
            return found.apply(lambda states: count + (states.get(name) == "maintenance"))

        return {name: bumped(name, count) for name, count in before.items()}
