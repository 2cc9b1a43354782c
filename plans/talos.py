"""Talos plan: each Arda node's machine-config patch and Image Factory schematic, from the inventory.

Talos 1.12 configures networking with separate documents, so a node's patch is several YAML
documents: the v1alpha1 Config (install disk or disk selector and image, KubePrism, CNI none,
no kube-proxy, on control planes no CoreDNS of Talos's, labels) plus HostnameConfig, a LinkAliasConfig that finds the NIC by the
inventory's MAC, its LinkConfig (static address and default route, through network.gateway
or its VLAN's gateway), ResolverConfig and, on control planes, the Layer-2 VIP. Interface
names differ between machines; the MAC is what we know.

The provider merges these patches into the config it generates (tools/talos-check does the
same with Talos's own code and validates the result as a node would).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from plans import apiserver, backup, imagefactory, local_volumes, logs, power, volume_encryption, yamltext
from stacks.boards import BOARDS, Board
from stacks.model import DiskSelector, Node, StackConfig
from stacks.talos_ports import KUBEPRISM_PORT

LINK = "lan0"
API_PORT = 6443
LABEL_PREFIX = "iluvatar"
# Block storage for Rook-Ceph and Longhorn: iSCSI and the util-linux tools they shell out to.
STORAGE_EXTENSIONS = ("siderolabs/iscsi-tools", "siderolabs/util-linux-tools")

MachineType = Literal["controlplane", "worker"]


def machine_type(node: Node) -> MachineType:
    return "controlplane" if node.role == "valinor" else "worker"


def cluster_endpoint(stack: StackConfig) -> str:
    return f"https://{stack.arda.vip}:{API_PORT}"


def kubernetes_version(stack: StackConfig) -> str:
    """The Talos SDK takes the bare version (it adds the `v` to image tags itself)."""
    return stack.arda.kubernetes_version.removeprefix("v")


def config_path(mac: str) -> str:
    """Where a node's machine config is served on the Ainur HTTP server.

    Hyphenated because that is what iPXE's `${net0/mac:hexhyp}` expands to at boot.
    """
    return f"/configs/{mac.replace(':', '-')}.yaml"


def schematic(board: Board, kernel_args: Sequence[str] = ()) -> dict[str, Any]:
    """The Image Factory schematic for a board: its kernel arguments, the storage extensions, and the SBC overlay if any.

    Kernel arguments belong here, not in `machine.install.extraKernelArgs` (deprecated, and read only when an installer
    runs: Talos v1.12.4 v1alpha1_types.go:775-778, v1alpha1_sequencer_tasks.go:1543): the factory builds them into the
    schematic's installer (image-factory v1.0.3 internal/profile/profile.go:459-462, for a Talos with the unified
    installer) and its disk images (profile.go:474-485), and a new schematic is a new ID, so the machines upgrade to
    it one at a time. Its bare kernel and initramfs carry none (profile.go:457): the Ainur's iPXE scripts add them.
    """
    customization: dict[str, Any] = {}
    if kernel_args:
        customization["extraKernelArgs"] = list(kernel_args)
    customization["systemExtensions"] = {"officialExtensions": list(STORAGE_EXTENSIONS)}
    doc: dict[str, Any] = {"customization": customization}
    if board.talos_overlay is not None:
        doc["overlay"] = {"image": board.talos_overlay.image, "name": board.talos_overlay.name}
    return doc


def kernel_args(stack: StackConfig, board: str | Board) -> tuple[str, ...]:
    """The board's kernel arguments (`arda.kernelArgs`), in the order written."""
    return stack.arda.kernel_args.get(board if isinstance(board, str) else board.name, ())


def schematic_yaml(board: Board, kernel_args: Sequence[str] = ()) -> str:
    """The schematic as the program hands it to the Talos provider's `talos_image_factory_schematic`."""
    return yamltext.dump(schematic(board, kernel_args))


def schematic_id(board: str | Board, kernel_args: Sequence[str] = ()) -> str:
    """The ID Image Factory gives the board's schematic: what its disk and installer images are named by.

    Not a hash of schematic_yaml: the provider decodes that text and POSTs Go's canonical YAML of it, and
    the factory hashes its own canonical YAML again (plans.imagefactory). `pulumi up` takes the ID from the
    factory's answer (the Schematic resource's id); `iluvatar render` and the docs name images before any
    `pulumi up`, so they compute it here, and the tests hold this equal to Image Factory's own code.
    """
    return imagefactory.schematic_id(schematic_yaml(BOARDS[board] if isinstance(board, str) else board, kernel_args))


# --- Installer images, per Talos version ------------------------------------------------------------------------------
#
# A machine installs and upgrades from its board's schematic's installer on Image Factory. Which path the factory serves
# it at depends on the Talos version: `<platform>-installer/<schematic>` from Talos 1.10, when Talos's installer became
# one image for every platform, `installer/<schematic>` before (image-factory internal/frontend/http/ui.go:699-705 and
# registry.go:76-99 at 26b95ca, both deciding with machinery's imager/quirks SupportsUnifiedInstaller, quirks.go:219-229
# at v1.14.1: 1.10.0 on). Talos 1.14 no longer publishes ghcr.io/siderolabs/installer at all and takes the factory's
# installer as its own default (talos v1.14.0-rc.1 hack/release.toml, notes.defaultInstaller; pkg/images/images.go:78-85,
# commits 96a8ecd1e and cf6065238, siderolabs/talos#13138), so the factory's path is the only one for every release a
# stack may run. The Talos provider (terraform-provider-talos v0.11.0 pkg/talos/talos_image_factory_urls_data_source.go:
# 286, 306) writes `<platform>-installer` whatever the version: the same image for 1.10 and later, which every minor of
# stacks.releases is. SBCs take the metal installer too (:306), their overlay being in the schematic.
FACTORY = "factory.talos.dev"
UNIFIED_INSTALLER = (1, 10, 0)


def installer_image(board: str | Board, version: str, kernel_args: Sequence[str] = (), secureboot: bool = False) -> str:
    """The installer a machine of `board` installs Talos `version` from, as Image Factory names it for that version;
    `secureboot`: the signed UKI installer a `tpm` key needs (plans.volume_encryption), `<path>-secureboot` (the
    provider's installer_secureboot, talos_image_factory_urls_data_source.go:306 at v0.11.0)."""
    sid = schematic_id(board, kernel_args)
    major, minor, patch = (int(x) for x in version.removeprefix("v").split("-", 1)[0].split(".")[:3])
    path = "metal-installer" if (major, minor, patch) >= UNIFIED_INSTALLER else "installer"
    return f"{FACTORY}/{path}{'-secureboot' if secureboot else ''}/{sid}:v{version.removeprefix('v')}"


def secureboot(stack: StackConfig, board: str | Board) -> bool:
    """Whether machines of `board` install the Secure Boot UKI installer: where their volumes are sealed to the TPM."""
    return volume_encryption.encrypts_state(stack, board if isinstance(board, str) else board.name)


# The machinery the Talos provider generates every config with (terraform-provider-talos v0.11.0's go.mod, under
# pulumiverse-talos 0.8.1, the newest on PyPI). It knows no UnattendedInstallConfig (added in machinery 1.14:
# config/types/runtime/unattended_install.go), so its generated configs carry the install settings in the v1alpha1
# document's `machine.install`, for every Talos version, 1.14's included: a 1.14 node still reads them there ("still used
# for older version contracts", release.toml notes.unattended_install; v1alpha1_validation.go:107-125 at v1.14.1
# validates them). Machinery 1.14 generating for a 1.14 contract emits an UnattendedInstallConfig instead
# (config/generate/init.go:241-250, worker.go:47-60 at v1.14.1), beside which a `machine.install` patch is refused
# (UnattendedInstallConfigV1Alpha1.V1Alpha1ConflictValidate): tests/test_talos_check.py holds both, so a provider on
# machinery 1.14 is a change this constant and install_section must make together.
PROVIDER_MACHINERY = (1, 13, 0)


def schematic_boards(stack: StackConfig) -> list[Board]:
    """One schematic per board that Arda uses (the generic worker's included), in name order."""
    names = {n.board for n in stack.arda_nodes}
    if stack.generic_worker is not None:
        names.add(stack.generic_worker.board)
    names.update(stack.discovery_boards.values())  # what an unknown machine boots to be discovered (plans.netboot)
    return [BOARDS[name] for name in sorted(names)]


def node_labels(node: Node) -> dict[str, str]:
    labels = {f"{LABEL_PREFIX}/role": node.role, f"{LABEL_PREFIX}/board": node.board}
    if node.data_disks:
        labels[f"{LABEL_PREFIX}/storage"] = "true"
    return labels


def install_section(install_disk: str | DiskSelector, installer_image: str) -> dict[str, Any]:
    """`machine.install`: a /dev path as `disk`, a selector as `diskSelector`.

    The generated config keeps the provider's default `disk: /dev/sda` beside a selector; Talos's
    installer uses the selector whenever one is set, so the default is never what installs.
    """
    where: dict[str, Any] = {"diskSelector": install_disk.talos()} if isinstance(install_disk, DiskSelector) else {"disk": install_disk}
    return {**where, "image": installer_image, "wipe": False}


def _config_document(
    stack: StackConfig, install_disk: str | DiskSelector, installer_image: str, labels: dict[str, str], control_plane: bool, name: str | None
) -> dict[str, Any]:
    """The v1alpha1 part every Arda machine shares: install, KubePrism, no CNI, no kube-proxy."""
    machine: dict[str, Any] = {
        "install": install_section(install_disk, installer_image),
        "features": {"kubePrism": {"enabled": True, "port": KUBEPRISM_PORT}},
        "nodeLabels": labels,
    }
    # talos-backup's Talos API access on the control planes, when Arda's etcd is backed up (plans.backup).
    machine["features"] |= backup.talos_features(stack, control_plane)
    # With logs, the services' logs off the machine, tagged with its name (plans.logs); the kernel's: KmsgLogConfig below.
    if destinations := logs.talos_logging(stack, name):
        machine["logging"] = destinations
    cluster: dict[str, Any] = {"network": {"cni": {"name": "none"}}, "proxy": {"disabled": True}}
    if control_plane:
        cluster["allowSchedulingOnControlPlanes"] = stack.arda.allow_scheduling_on_control_planes
        # Iluvatar runs CoreDNS itself (plans.coredns); Talos's bootstrap manifests would own the same objects.
        cluster["coreDNS"] = {"disabled": True}
    return {"machine": machine, "cluster": cluster}


def _resolver(stack: StackConfig) -> dict[str, Any]:
    return {"apiVersion": "v1alpha1", "kind": "ResolverConfig", "nameservers": [{"address": str(d)} for d in stack.network.dns]}


def _volumes(stack: StackConfig, board: str, ca_certificate: str) -> list[dict[str, Any]]:
    """Local volumes' documents (plans.local_volumes) and encryption's (plans.volume_encryption), one per volume."""
    local = local_volumes.talos_documents(stack, volume_encryption.spec(stack, board))
    ephemeral = any(d["kind"] == "VolumeConfig" and d["name"] == volume_encryption.EPHEMERAL for d in local)
    return local + volume_encryption.documents(stack, board, ca_certificate, ephemeral_written=ephemeral)


def node_documents(stack: StackConfig, node: Node, installer_image: str, ca_certificate: str = apiserver.CA_PLACEHOLDER) -> list[dict[str, Any]]:
    """The patch documents for one node, in the order Talos documents them."""
    net = stack.network
    vlan = next((v for v in net.vlans if v.name == node.vlan), None)
    subnet, gateway = (net.lan, net.gateway) if vlan is None else (vlan.cidr, vlan.gateway)
    control_plane = machine_type(node) == "controlplane"
    config = _config_document(stack, node.install_disk, installer_image, node_labels(node), control_plane, node.name)
    # With a VIP on the link, the kubelet must not pick the VIP as the node's address.
    config["machine"]["kubelet"] = {"nodeIP": {"validSubnets": [str(subnet)]}}
    if mounts := local_volumes.kubelet_mounts(stack):
        # Local volumes live on a user volume under /var/mnt, which hostPath claims reach through the kubelet.
        config["machine"]["kubelet"]["extraMounts"] = mounts
    if node.data_disks:
        # Ceph/Longhorn discover these; Talos itself leaves them untouched.
        config["machine"]["nodeAnnotations"] = {f"{LABEL_PREFIX}/data-disks": ",".join(node.data_disks)}
    link: dict[str, Any] = {
        "apiVersion": "v1alpha1",
        "kind": "LinkConfig",
        "name": LINK,
        "up": True,
        "addresses": [{"address": f"{node.ip}/{subnet.prefixlen}"}],
    }
    if gateway is not None:
        # Validation requires a gateway for every VLAN a Talos machine sits on (stacks.rules).
        link["routes"] = [{"gateway": str(gateway)}]
    docs: list[dict[str, Any]] = [
        config,
        # The v1.12 contract generates `auto: stable`; Talos refuses `auto` beside `hostname`
        # unless auto is off, and this merge cannot delete a key, so it turns auto off.
        {"apiVersion": "v1alpha1", "kind": "HostnameConfig", "auto": "off", "hostname": node.name},
        {"apiVersion": "v1alpha1", "kind": "LinkAliasConfig", "name": LINK, "selector": {"match": f'mac(link.permanent_addr) == "{node.mac}"'}},
        link,
        _resolver(stack),
    ]
    if control_plane:
        docs.append({"apiVersion": "v1alpha1", "kind": "Layer2VIPConfig", "name": str(stack.arda.vip), "link": LINK})
    if (wake := power.ethernet_config(node)) is not None:
        # Wake-on-LAN stays armed on the NIC only when the machine config says so (plans.power).
        docs.append(wake)
    # Local volumes: a user volume on the system disk (plans.local_volumes); data disks are never named. Both they and
    # STATE/EPHEMERAL encrypted when the stack says so (plans.volume_encryption).
    docs += _volumes(stack, node.board, ca_certificate)
    # The kernel's messages off the machine (plans.logs).
    docs += logs.kmsg_document(stack)
    return docs


def generic_worker_documents(
    stack: StackConfig, board: str, install_disk: str | DiskSelector, installer_image: str, ca_certificate: str = apiserver.CA_PLACEHOLDER
) -> list[dict[str, Any]]:
    """A worker for machines not in the inventory: DHCP address, a stable generated hostname, its volumes encrypted
    as its board's (plans.volume_encryption)."""
    labels = {f"{LABEL_PREFIX}/role": "istari", f"{LABEL_PREFIX}/board": board, f"{LABEL_PREFIX}/generic": "true"}
    return [
        _config_document(stack, install_disk, installer_image, labels, control_plane=False, name=None),
        {"apiVersion": "v1alpha1", "kind": "HostnameConfig", "auto": "stable"},
        _resolver(stack),
        *logs.kmsg_document(stack),
        *volume_encryption.documents(stack, board, ca_certificate, ephemeral_written=False),
    ]


def dump(documents: list[dict[str, Any]]) -> str:
    """Multi-document YAML, stable across runs (key order as built, no anchors)."""
    return yamltext.dump_all(documents)


def node_patches(stack: StackConfig, node: Node, installer_image: str, ca_certificate: str = apiserver.CA_PLACEHOLDER) -> list[str]:
    """Every patch for the node, in apply order: Iluvatar's, its control plane's for monitoring and sign-in
    (plans.apiserver; `ca_certificate` is the local CA the API server trusts Dex through), the cluster's,
    then the node's own."""
    control_plane = apiserver.talos_documents(stack, node, ca_certificate)
    return [
        dump(node_documents(stack, node, installer_image, ca_certificate)),
        *([dump(control_plane)] if control_plane else []),
        *(dump([p]) for p in stack.arda.patches),
        *(dump([p]) for p in node.talos_patches),
    ]
