"""The netbooting maiar's Kubernetes objects: the image builder and TFTP folders on every disk-booting Pi, the NFS
server next to the netboot pod, its volume, and the ConfigMap of each Pi's own files. Only with a netbooting maia.

Where each runs, and why:
- `netboot-cache` (the DaemonSet of plans.netboot.pods) gets two more steps on each Pi that boots from its card, the
  image builder (plans.netboot.pi_image) and NFS-Ganesha's Debian packages downloaded to the Pi, so the NFS server
  starts after a power cut with no internet, as dnsmasq does; and a container that keeps the Pis' TFTP folders as
  their boot pointers say (plans.netboot.pis.tftp_script), on every such Pi, so whichever runs the netboot pod serves
  them. The netboot pod's dnsmasq sees the images at the same path, since the TFTP folders link into them.
- `pi-boot-<pi>`, a ConfigMap per netbooting Pi: its boot pointer (plans.netboot.pis.boot_pointer), what it boots next.
  Not this module's objects to apply: the Ainur's chain moves each one to a new image right before that Pi's reboot
  (plans.netboot.roll, components.ainur).
- `pi-nfs`, one replica, replaced never rolled (two servers of one root must never run at once), on the Pi that runs
  the netboot pod (required pod affinity): the service address is there, and it is the roots' server address.
  Privileged: it loop-mounts the image and mounts an overlay per Pi (plans.netboot.nfs); nothing else of the netboot
  namespace is. Each Pi's roots are on a volume of its own, `pi-root-<pi>` (one Pi filling its
  volume fills no other's, and adding a Pi changes no other's volume), which follows the server to whichever Pi it
  moves to; with Longhorn, on the `pi-roots` StorageClass, whose replicas are only ever on Pis that boot from their
  cards (plans.storage.pi_root_pis). The single `pi-roots` volume of the first version is kept and
  mounted too: the roots it holds are served from it where they are (plans.netboot.nfs.serve_script links them).
- Neither the netboot pod nor these ever run on a netbooting Pi (k3s labels it iluvatar/boot=netboot, plans.k3s): a Pi
  cannot serve the root it boots from, and after a power cut only the Pis with cards come up by themselves.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

from plans import k3s, storage
from plans.netboot.base import HOST_CACHE, NAMESPACE, TFTP_ROOT, service_ip
from plans.netboot.debs import fetch_script, install_script
from plans.netboot.nfs import EXPORTS, export_ids, export_template, ganesha_conf, serve_script
from plans.netboot.pi_image import build_script, image_dir
from plans.netboot.pis import NFS_PORT, PI_IMAGES, boot_pointer, eeprom_config, netboot_pis, seed_files, tftp_script
from plans.netboot.pods import DEBIAN_IMAGE, _labels, _meta, _single_pod, eviction_tolerations
from stacks import day2, pins
from stacks.model import Node, StackConfig

# NFS-Ganesha as the tests run it: Debian 12's 4.3-2 with its VFS backend (tests/netns/test_pi_nfs.py), in Debian 12's
# image of the same date as DEBIAN_IMAGE's. Its packages, and the builder's, are pinned files (plans.netboot.debs).
GANESHA_VERSION = pins.APPS["nfs-ganesha"]
BOOKWORM_IMAGE = pins.IMAGES["debian-bookworm"]
GANESHA_DEBS = f"{HOST_CACHE}/pi-nfs-debs"
BUILDER_DEBS = f"{HOST_CACHE}/pi-image-debs"
# Each Pi's volume: its roots of the image it runs, the next, and its rollback root (plans.netboot.nfs), each the
# image's files it changed (k3s's containerd images above all, with snapshotter native: whole copies per layer).
ROOT_SIZE_GI = 20
# The first version's single volume of every Pi's roots (its size then was 20 GiB a Pi): kept, never resized nor
# deleted by Iluvatar, and mounted at LEGACY_ROOTS so that the roots on it stay served where they are.
LEGACY_CLAIM = "pi-roots"
LEGACY_ROOTS = "/legacy-roots"
# The netbooted roots' StorageClass with Longhorn: replicas only on Pis tagged PI_ROOT_TAG (plans.storage).
ROOTS_CLASS = "pi-roots"
# Not a netbooting Pi: k3s labels those iluvatar/boot=netboot (plans.k3s.config).
NOT_NETBOOTED = {"key": "iluvatar/boot", "operator": "NotIn", "values": ["netboot"]}
# Where the pods see the boot pointers (the pi-boot-<pi> ConfigMaps, projected), and the generated ganesha.conf.
BOOTS = "/etc/iluvatar-pi-boots"
GANESHA_CONF = "/run/iluvatar/ganesha.conf"
POINTER_KEYS = ("folder", "image", "cmdline.txt")


def root_claim(node: Node) -> str:
    """The claim of a Pi's roots, by its name: another Pi's coming or going never touches it."""
    return f"pi-root-{node.name}"


def roots_class(stack: StackConfig) -> str:
    """The roots' StorageClass: Longhorn's, limited to the card-booting Pis, when it runs; else k3s's local-path."""
    return ROOTS_CLASS if storage.longhorn_enabled(stack) else "local-path"


def roots_storage_class(stack: StackConfig) -> dict[str, Any]:
    """The `pi-roots` StorageClass: Longhorn volumes whose replicas only ever land on Pis that boot from their cards
    (the nodeSelector matches the tag plans.storage.longhorn_node_annotations gives them), one per such Pi up to three;
    kept when the claim goes (Retain), and grown in place. Parameters as Longhorn v1.10.1's CSI driver reads them
    (csi/util.go:getVolumeOptions: numberOfReplicas, staleReplicaTimeout, nodeSelector split at commas)."""
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": ROOTS_CLASS, "labels": _labels("pi-nfs")},
        "provisioner": "driver.longhorn.io",
        "parameters": {
            "numberOfReplicas": str(storage.pi_root_replicas(stack)),
            "staleReplicaTimeout": "30",
            "nodeSelector": storage.PI_ROOT_TAG,
            "fsType": "ext4",
        },
        "reclaimPolicy": "Retain",
        "allowVolumeExpansion": True,
        "volumeBindingMode": "Immediate",
    }


def boot_name(name: str) -> str:
    """The ConfigMap of a Pi's boot pointer."""
    return f"pi-boot-{name}"


def boot_configmap(stack: StackConfig, node: Node) -> dict[str, Any]:
    """The Pi's boot pointer as a ConfigMap (plans.netboot.pis.boot_pointer)."""
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(boot_name(node.name), _labels("pi-boot")), "data": boot_pointer(stack, node)}


def boot_projection(stack: StackConfig) -> dict[str, str]:
    """What the kubelet writes at BOOTS from the pointers as they are in `stack` (the tests lay them out with it)."""
    return {f"{n.name}/{key}": text for n in netboot_pis(stack) for key, text in boot_pointer(stack, n).items()}


def _boots_volume(stack: StackConfig) -> dict[str, Any]:
    # Optional: a Pi's pointer is made in the Ainur's chain (its first boot's), after these pods may have started.
    sources = [
        {"configMap": {"name": boot_name(n.name), "optional": True, "items": [{"key": k, "path": f"{n.name}/{k}"} for k in POINTER_KEYS]}}
        for n in netboot_pis(stack)
    ]
    return {"name": "pi-boots", "projected": {"sources": sources}}


def pi_config(stack: StackConfig) -> dict[str, str]:
    """The `pi-netboot` ConfigMap's data: the scripts, ganesha.conf, and each Pi's files under flat keys."""
    assert stack.ainur is not None
    image = stack.ainur.pi_image
    data = {
        "build-pi-image.sh": build_script(),
        "pi-tftp.sh": tftp_script(),
        "serve-pis.sh": serve_script(),
        "pi-nfs-debs.sh": fetch_script("pi-nfs", "NFS-Ganesha"),
        "pi-nfs-install.sh": install_script("pi-nfs", "NFS-Ganesha", "netboot-cache's pi-nfs-packages step"),
        "pi-image-debs.sh": fetch_script("pi-image", "the Pi image builder's tools"),
        "ganesha.conf": ganesha_conf(stack),
        # What `iluvatar render` lists for the user: the image, and the lines each Pi's EEPROM needs.
        "image.txt": f"Ubuntu {image.release} for Raspberry Pi\nurl: {image.url}\nsha256: {image.sha256}\nfolder: {image_dir(stack)}\n",
    }
    for node in netboot_pis(stack):
        data[f"{node.name}.bootconf.txt"] = eeprom_config(stack, node)
        data[f"{node.name}.export.conf"] = export_template(node)
        data[f"{node.name}.export-ids"] = " ".join(str(i) for i in export_ids(node)) + "\n"
        for path, text in seed_files(stack, node).items():
            data[f"{node.name}.root{path.replace('/', '.')}"] = text
    return data


def project(stack: StackConfig) -> dict[str, str]:
    """What the kubelet writes for the NFS container's volume of the Pis' files: each item's path and its text
    (the tests lay the Pis' files out with it, as the pods see them)."""
    data = pi_config(stack)
    return {item["path"]: data[item["key"]] for item in _items(stack)}


def _items(stack: StackConfig) -> list[dict[str, str]]:
    """ConfigMap items that lay each Pi's files out as serve_script reads them: `<pi>/files/<path>`, `<pi>/export.conf`
    and `<pi>/export-ids`."""
    out = []
    for node in netboot_pis(stack):
        out += [{"key": f"{node.name}.root{path.replace('/', '.')}", "path": f"{node.name}/files{path}"} for path in seed_files(stack, node)]
        out += [{"key": f"{node.name}.{k}", "path": f"{node.name}/{k}"} for k in ("export.conf", "export-ids")]
    return out


def cache_steps(stack: StackConfig) -> list[dict[str, Any]]:
    """The init containers the netboot-cache pod runs first on a disk-booting Pi when maiar netboot."""
    assert stack.ainur is not None
    image = stack.ainur.pi_image
    cache = {"name": "cache", "mountPath": HOST_CACHE}
    scripts = {"name": "pi-netboot", "mountPath": "/etc/iluvatar-pi"}
    boots = {"name": "pi-boots", "mountPath": BOOTS, "readOnly": True}
    return [
        {
            "name": "pi-image",
            # Debian 12, as the NFS server's: its tools are the pinned set of that release (stacks.pins.DEBS), installed
            # by the builder only when it has an image to build (TOOLS): a Pi whose image is built asks nothing of the
            # network.
            "image": BOOKWORM_IMAGE,
            "command": ["sh", "/etc/iluvatar-pi/build-pi-image.sh"],
            "env": [{"name": "URL", "value": image.url}, {"name": "SHA256", "value": image.sha256}, {"name": "OUT", "value": image_dir(stack)},
                    {"name": "PIS", "value": " ".join(n.name for n in netboot_pis(stack))}, {"name": "BOOTS", "value": BOOTS},
                    {"name": "DIR", "value": BUILDER_DEBS},
                    {"name": "TOOLS", "value": f"sh /etc/iluvatar-pi/pi-image-debs.sh && dpkg -i {BUILDER_DEBS}/*.deb >/dev/null"}],
            "volumeMounts": [scripts, cache, boots],
        },
        {
            "name": "pi-nfs-packages",
            "image": BOOKWORM_IMAGE,
            # The packages and every one they need that the image lacks, kept on the Pi for the NFS container.
            "command": ["sh", "/etc/iluvatar-pi/pi-nfs-debs.sh"],
            "env": [{"name": "DIR", "value": GANESHA_DEBS}],
            "volumeMounts": [scripts, cache],
        },
    ]  # fmt: skip


def tftp_container() -> dict[str, Any]:
    """netboot-cache's container that keeps the Pis' TFTP folders as their boot pointers say (plans.netboot.pis.tftp_script)."""
    return {
        "name": "pi-tftp",
        "image": DEBIAN_IMAGE,
        "command": ["sh", "/etc/iluvatar-pi/pi-tftp.sh"],
        "env": [{"name": "TFTP_ROOT", "value": f"{HOST_CACHE}/tftp"}, {"name": "IMAGES", "value": PI_IMAGES}, {"name": "BOOTS", "value": BOOTS}],
        "volumeMounts": [
            {"name": "pi-netboot", "mountPath": "/etc/iluvatar-pi"},
            {"name": "cache", "mountPath": HOST_CACHE},
            {"name": "pi-boots", "mountPath": BOOTS, "readOnly": True},
        ],
    }


def cache_volumes(stack: StackConfig) -> list[dict[str, Any]]:
    return [
        {"name": "pi-netboot", "configMap": {"name": "pi-netboot", "items": [{"key": k, "path": k} for k in CACHE_SCRIPTS]}},
        _boots_volume(stack),
    ]


def nfs_pod(stack: StackConfig, legacy: bool = True) -> dict[str, Any]:
    """The NFS server of the Pis' roots: privileged (loop and overlay mounts), on the netboot pod's Pi; with `legacy`,
    the first version's volume of the roots too (keeps_legacy_claim)."""
    etc = {"name": "config", "mountPath": "/etc/iluvatar"}
    return {
        "hostNetwork": True,
        "dnsPolicy": "ClusterFirstWithHostNet",
        "terminationGracePeriodSeconds": 5,
        "affinity": {
            "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [NOT_NETBOOTED]}]}},
            # The service address is on the Pi that runs the netboot pod (kube-vip, externalTrafficPolicy: Local).
            "podAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchLabels": _labels("netboot")}, "topologyKey": "kubernetes.io/hostname"}
                ]
            },
        },
        "tolerations": eviction_tolerations(),
        "containers": [
            {
                "name": "nfs",
                "image": BOOKWORM_IMAGE,
                # Ganesha's pinned files, checked and installed by apt in the order dpkg needs (one
                # `dpkg -i` of them refuses python3 on its Pre-Depends, and Ganesha stayed unconfigured).
                "command": ["sh", "-c", "sh /etc/iluvatar/pi-nfs-install.sh && exec sh /etc/iluvatar/serve-pis.sh"],
                "env": [
                    {"name": "DIR", "value": GANESHA_DEBS},
                    {"name": "ADDRESS", "value": str(service_ip(stack))},
                    {"name": "IMAGE", "value": image_dir(stack)},
                    {"name": "ROOTS", "value": "/roots"},
                    *([{"name": "LEGACY", "value": LEGACY_ROOTS}] if legacy else []),
                    {"name": "PIS", "value": "/etc/iluvatar-pis"},
                    {"name": "BOOTS", "value": BOOTS},
                    {"name": "EXPORTS", "value": EXPORTS},
                    {"name": "CORE", "value": "/etc/iluvatar/ganesha.conf"},
                    {"name": "CONF", "value": GANESHA_CONF},
                ],
                # Loop devices and overlay mounts need the host's devices and CAP_SYS_ADMIN; Ganesha reads by file
                # handle (open_by_handle_at: CAP_DAC_READ_SEARCH) as every owner of the roots' files.
                "securityContext": {"privileged": True},
                "ports": [{"name": "nfs", "containerPort": NFS_PORT, "protocol": "TCP"}],
                # Ganesha listens on the service address alone (ganesha.conf's Bind_addr), and the kubelet dials a
                # tcpSocket probe's host, or else the Pod's IP, which for a host-network Pod is the Pi's own address,
                # where nothing listens (Kubernetes v1.33 pkg/kubelet/prober/prober.go, runProbe): the probe names the
                # service address, where the Pis mount their roots. pi-nfs is no Service's endpoint, so its readiness
                # does not decide where kube-vip puts that address (the netboot pod's does).
                "readinessProbe": {"tcpSocket": {"host": str(service_ip(stack)), "port": NFS_PORT}, "periodSeconds": 5},
                "volumeMounts": [
                    etc,
                    {"name": "pis", "mountPath": "/etc/iluvatar-pis"},
                    {"name": "pi-boots", "mountPath": BOOTS, "readOnly": True},
                    {"name": "images", "mountPath": PI_IMAGES, "readOnly": True},
                    {"name": "cache", "mountPath": GANESHA_DEBS, "subPath": "pi-nfs-debs", "readOnly": True},
                    *({"name": f"root-{n.name}", "mountPath": f"/roots/{n.name}"} for n in netboot_pis(stack)),
                    *([{"name": "legacy-roots", "mountPath": LEGACY_ROOTS}] if legacy else []),
                ],
            }
        ],
        "volumes": [
            {
                "name": "config",
                "configMap": {"name": "pi-netboot", "items": [{"key": k, "path": k} for k in ("serve-pis.sh", "ganesha.conf", "pi-nfs-install.sh")]},
            },
            {"name": "pis", "configMap": {"name": "pi-netboot", "items": _items(stack)}},
            _boots_volume(stack),
            {"name": "images", "hostPath": {"path": PI_IMAGES, "type": "Directory"}},
            {"name": "cache", "hostPath": {"path": HOST_CACHE, "type": "Directory"}},
            *({"name": f"root-{n.name}", "persistentVolumeClaim": {"claimName": root_claim(n)}} for n in netboot_pis(stack)),
            *([{"name": "legacy-roots", "persistentVolumeClaim": {"claimName": LEGACY_CLAIM}}] if legacy else []),
        ],
    }


def _digest(data: dict[str, str]) -> str:
    import hashlib

    return hashlib.sha256("\n".join(f"{k}={v}" for k, v in sorted(data.items())).encode()).hexdigest()[:16]


# What each pod reads of the pi-netboot ConfigMap at its start, and so what restarts it when it changes (review 41-1
# H5). The cache's steps: the builder, pi-tftp and the image. The NFS server: its script, ganesha.conf and each Pi's
# exports; not the Pis' seeds (a user-data change, a k3s upgrade's among them, restarted it and stalled every root at
# once): the server writes a seed into a root at its next start, and cloud-init reads it only when a root is new.
CACHE_SCRIPTS = ("build-pi-image.sh", "pi-tftp.sh", "pi-image-debs.sh", "pi-nfs-debs.sh")
CACHE_KEYS = (*CACHE_SCRIPTS, "image.txt")


def cache_digest(stack: StackConfig) -> str:
    """The netboot-cache DaemonSet's pi-digest: a change runs its steps again on every Pi that boots from its card."""
    return _digest({k: v for k, v in pi_config(stack).items() if k in CACHE_KEYS})


def nfs_digest(stack: StackConfig) -> str:
    """pi-nfs's config digest: a change replaces the NFS server of every root."""
    # pi-nfs-debs.sh and pi-nfs-install.sh: a new Ganesha (its pinned files) is installed by the server's next start.
    keep = ("serve-pis.sh", "ganesha.conf", "pi-nfs-debs.sh", "pi-nfs-install.sh")
    return _digest({k: v for k, v in pi_config(stack).items() if k in keep or k.endswith((".export.conf", ".export-ids"))})


# How long `pulumi up` waits for netboot-cache to be ready when maiar netboot. Its pod is ready on a Pi
# only past the image builder, which on a new image downloads ~1.2 GB and writes ~7 GB at its peak to the Pi's SD card
# (the image unpacked, then its root cut out): an estimate of up to BUILD_MINUTES per Pi on a card (~20 MB/s written),
# not measured on a Pi. A new image's DaemonSet rolls one Pi at a time (a DaemonSet's default maxUnavailable 1), so the
# bound is pulumi-kubernetes' own 10 minutes (its await default) and BUILD_MINUTES per Pi that builds. With the image
# built, every start is a no-op (the builder's check of .complete) and the cache is ready in seconds, as before.
BUILD_MINUTES = 30
AWAIT_MINUTES = 10


def builds_image(stack: StackConfig) -> bool:
    """Whether netboot-cache builds the Pi image (on each card Pi): when a maia netboots."""
    return bool(netboot_pis(stack))


def card_pis(stack: StackConfig) -> list[Node]:
    """The Pis that boot from their card, where netboot-cache runs (and builds the image) when maiar netboot."""
    netbooting = {n.name for n in netboot_pis(stack)}
    return [n for n in stack.ainur_nodes if n.name not in netbooting]


def cache_wait_minutes(stack: StackConfig) -> int:
    """pulumi up's bound on netboot-cache's readiness: its default alone without a netbooting maia."""
    return AWAIT_MINUTES + (BUILD_MINUTES * len(card_pis(stack)) if builds_image(stack) else 0)


def cache_wait_message(stack: StackConfig) -> str:
    """What `pulumi preview` and `up` say of the wait on netboot-cache when maiar netboot: what it waits for, and how long."""
    names = ", ".join(n.name for n in card_pis(stack))
    return (
        f"netboot-cache is ready on a Pi only once the Pi image {image_dir(stack).rsplit('/', 1)[1]} is built there: a new image is "
        f"downloaded (~1.2 GB) and unpacked (~7 GB written to the SD card) on each Pi that boots from its card ({names}), one "
        f"Pi at a time, up to {BUILD_MINUTES} minutes each; pulumi up waits up to {cache_wait_minutes(stack)} minutes, and so do "
        "Arda's netbooting machines, which wait for netboot-cache. A built image takes seconds (nothing is downloaded)."
    )


def with_pis(stack: StackConfig, cache: dict[str, Any], netboot: dict[str, Any]) -> None:
    """Add the netbooting Pis' steps to the netboot-cache pod spec and keep both pods off netbooting Pis (in place)."""
    if not netboot_pis(stack):
        return
    cache["initContainers"] = [*cache["initContainers"], *cache_steps(stack)]
    cache["containers"] = [*cache["containers"], tftp_container()]
    cache["volumes"] = [*cache["volumes"], *cache_volumes(stack)]
    required = {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [NOT_NETBOOTED]}]}}
    cache["affinity"] = {"nodeAffinity": required}
    netboot["affinity"] = {**netboot["affinity"], "nodeAffinity": {**netboot["affinity"]["nodeAffinity"], **required}}
    # The Pis' TFTP folders link into the images (plans.netboot.pis.tftp_script): dnsmasq must see them where they point.
    dnsmasq = next(c for c in netboot["containers"] if c["name"] == "dnsmasq")
    dnsmasq["volumeMounts"] = [*dnsmasq["volumeMounts"], {"name": "pi-images", "mountPath": PI_IMAGES, "readOnly": True}]
    netboot["volumes"] = [*netboot["volumes"], {"name": "pi-images", "hostPath": {"path": PI_IMAGES, "type": "DirectoryOrCreate"}}]


def root_claim_manifest(stack: StackConfig, node: Node) -> dict[str, Any]:
    """A Pi's roots' volume, labelled with the Pi, of its own size: Longhorn's is a block device of that size, so a Pi
    that fills it fills no other's (local-path's is a folder on the card Pi's disk, which bounds nothing). Longhorn
    replicates it, so it follows the NFS server to another Pi; local-path keeps it on one (the NFS server, and so the
    netboot pod, cannot leave it: stacks.storage refuses that with two card Pis)."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _meta(root_claim(node), {**_labels("pi-nfs"), "iluvatar/pi": node.name}),
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": roots_class(stack),
            "resources": {"requests": {"storage": f"{ROOT_SIZE_GI}Gi"}},
        },
    }


def legacy_claim(stack: StackConfig) -> dict[str, Any]:
    """The first version's single volume of the roots: on a homelab deployed with it, its roots are served from it as
    they are (their file handles and export ids unchanged) until each Pi moves to a root on its own volume. A new homelab has none (keeps_legacy_claim); one deployed while
    this claim was an empty 1 GiB volume of the roots' class keeps that one. Its spec is the program's only at creation (components.netboot ignores changes to it: a
    claim's class cannot change, nor can it shrink), and Iluvatar never deletes it."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _meta(LEGACY_CLAIM, _labels("pi-nfs")),
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": roots_class(stack),
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }


def root_volume_spec(stack: StackConfig, legacy: bool = False) -> dict[str, Any]:
    """What each root's Longhorn Volume (the claim's PV, `volumes.longhorn.io/<spec.volumeName>`) is patched to, at every
    `up` (review 41-6 H1, H2): Longhorn reads a class's `numberOfReplicas` and `nodeSelector` only when the CSI driver
    creates the volume (longhorn-manager v1.10.1 csi/util.go:149-155, 248), so a volume made with one card Pi would keep
    one copy for good, and the first version's `pi-roots` volume (class `longhorn`) would keep no selector. Its volume
    controller follows a changed count (replenishReplicas, controller/volume_controller.go:2275; cleanupExtraHealthyReplicas,
    :1123), and the scheduler reads the selector at every replica it places (scheduler/replica_scheduler.go:397); the
    update validator checks the count and nothing of the selector (webhook/resources/volume/validator.go:224). A running
    replica already on an untagged Pi stays there (volume_controller.go:2815-2830 keeps it): `legacy_replicas_note`.

    The first version's volume (`legacy`) gets the selector alone: it was made with min(3, every
    Longhorn Pi) copies, often more than the card Pis' count, and Longhorn removes a healthy extra replica only by
    eviction, data locality or auto-balance (volume_controller.go:1121-1145; auto-balance is off by default), so a
    lowered count only leaves the volume reporting itself unscheduled while it keeps every copy."""
    if legacy:
        return {"nodeSelector": [storage.PI_ROOT_TAG]}
    return {"numberOfReplicas": storage.pi_root_replicas(stack), "nodeSelector": [storage.PI_ROOT_TAG]}


# The patches are not waited on (review 41-10 H1, which undid review 41-6 M4's first wait): Longhorn's condition Scheduled
# is True only while a volume's replicas number exactly its count (longhorn-manager v1.10.1
# controller/volume_controller.go:1810-1812), and an attached volume that holds more (a count lowered by the patch: a card
# Pi retired, the first version's volume) keeps them, so a wait on it failed every later `up`. A new volume is waited on
# instead, once, by placed_wait_script: not attached yet, so :1816-1835 applies.


# How long `up` waits, once, for Longhorn to place a new root volume's copies before pi-nfs moves onto it (review 41-6
# M4): Longhorn places a new volume's replicas within seconds when a tagged Pi has room, and retries a failed one every
# 30 s (longhorn-manager v1.10.1 controller/volume_controller.go:1800, enqueueVolumeAfter), so ten minutes is ample.
PLACED_SECONDS = 600
PLACED_TIMEOUT = f"{PLACED_SECONDS // 60}m"

# What the placement wait reads of a Longhorn Volume (stdin: its JSON; longhorn-manager v1.10.1
# k8s/pkg/apis/longhorn/v1beta2/volume.go:125, the condition type "Scheduled" in status.conditions): exit 0 once its
# Scheduled condition is True, which reconcileVolumeCondition sets when every replica of a volume not attached has a
# node, or, with degraded availability allowed (the default), when one has (controller/volume_controller.go:1810-1835);
# else print why (its reason and message, as :1850-1857 writes them) and exit 1.
SCHEDULED_SCRIPT = r"""
import json, sys
volume = json.load(sys.stdin)
conditions = {c.get("type"): c for c in (volume.get("status") or {}).get("conditions") or []}
got = conditions.get("Scheduled")
if got is not None and got.get("status") == "True":
    sys.exit(0)
if got is None:
    print("Longhorn has not reported its condition Scheduled yet")
else:
    print(f"its condition Scheduled is {got.get('status')} ({got.get('reason') or 'no reason'}: {got.get('message') or 'no message'})")
sys.exit(1)
"""

# The card Pis meant to hold the roots' copies whose Longhorn Node lacks the tag (stdin: the Longhorn Nodes' JSON; argv:
# the tag and those Pis; node.go:107, spec.tags), each with the command that tags it, keeping its other tags: Longhorn
# copies the default-node-tags annotation into a Node only while it has no tag at all (kubernetes_node_controller.go:336).
UNTAGGED_SCRIPT = r"""
import json, sys
tag, pis = sys.argv[1], sys.argv[2:]
nodes = {n["metadata"]["name"]: n for n in json.load(sys.stdin).get("items") or []}
out = []
for pi in pis:
    if pi not in nodes:
        out.append(f"{pi} has no Longhorn node yet (is longhorn-manager running on it?)")
        continue
    tags = (nodes[pi].get("spec") or {}).get("tags") or []
    if tag not in tags:
        patch = json.dumps({"spec": {"tags": [*tags, tag]}}, separators=(",", ":"))
        out.append(f"{pi} is not tagged {tag} (its tags: {tags or 'none'}); tag it with: sudo k3s kubectl -n longhorn-system patch nodes.longhorn.io {pi} --type merge -p '{patch}'")
print("; ".join(out) if out else f"every Pi meant to hold a copy ({', '.join(pis)}) is tagged {tag}: look for a full or unschedulable disk")
"""


# The netbooting Pis whose Longhorn Node still carries the tag (stdin: the Longhorn Nodes' JSON; argv: the tag and those
# Pis), each with the command that removes it and keeps the others: Longhorn adds tags from the
# annotation and never removes one (kubernetes_node_controller.go:335-352), so a card Pi turned netbooting keeps it, and
# new copies of a root could land on a maia's disk. Prints nothing when none does.
TAGGED_MAIAR_SCRIPT = r"""
import json, sys
tag, pis = sys.argv[1], sys.argv[2:]
nodes = {n["metadata"]["name"]: n for n in json.load(sys.stdin).get("items") or []}
for pi in pis:
    tags = ((nodes.get(pi) or {}).get("spec") or {}).get("tags") or []
    if tag in tags:
        patch = json.dumps({"spec": {"tags": [t for t in tags if t != tag]}}, separators=(",", ":"))
        print(f"iluvatar: WARNING: {pi} netboots and its Longhorn node is still tagged {tag}, so copies of the roots may land on its disk; remove the tag with: sudo k3s kubectl -n longhorn-system patch nodes.longhorn.io {pi} --type merge -p '{patch}' (docs/layers/ainur.md)")
"""


# The replicas of a new root volume on Pis that netboot, from `kubectl get replicas.longhorn.io -o json`
# (a replica's spec.volumeName and spec.nodeID: longhorn-manager v1.10.1 k8s/pkg/apis/longhorn/v1beta2/instancemanager.go
# InstanceSpec): argv[1] the volume, the rest the netbooting Pis. Prints "<replica> on <pi>" each, `; ` between.
ON_MAIAR_SCRIPT = r"""
import json, sys
volume, pis = sys.argv[1], set(sys.argv[2:])
found = []
for r in json.load(sys.stdin).get("items") or []:
    spec = r.get("spec") or {}
    if spec.get("volumeName") == volume and spec.get("nodeID") in pis:
        found.append(f"{r['metadata']['name']} on {spec['nodeID']}")
print("; ".join(sorted(found)))
"""


def placed_wait_script(stack: StackConfig, node: Node, timeout: int = PLACED_SECONDS) -> str:
    """On the first valar, once, when a netbooting Pi's roots' claim is new: wait until Longhorn reports
    its Volume's condition Scheduled True, before pi-nfs is replaced to mount it; the running pi-nfs keeps serving every
    maia meanwhile (its Recreate stops it only then). A claim the running pi-nfs already mounts is no new volume and is
    not waited on (a failover with a dead card Pi leaves a replica missing, Scheduled False, and `up` must not stall
    then); nor is the first version's volume (its Scheduled may stay False for good). On timeout it
    names the claim, its volume, Longhorn's reason, and each card Pi with a data disk whose Longhorn Node is not tagged
    `pi-root`, with the command that tags it."""
    claim = root_claim(node)
    kubectl = f"sudo {k3s.KUBECTL}"
    ns = storage.LONGHORN_NAMESPACE
    holders = " ".join(n.name for n in storage.pi_root_pis(stack))
    maiar = " ".join(n.name for n in netboot_pis(stack))
    look = f"sudo k3s kubectl -n {ns} get volumes.longhorn.io,replicas.longhorn.io,nodes.longhorn.io -o wide"
    what = f"Longhorn to place the copies of {claim}'s volume (its condition Scheduled True) on Pis tagged {storage.PI_ROOT_TAG}, before pi-nfs moves onto it"
    return f"""set -eu
# iluvatar: once, before pi-nfs moves onto {claim}: Longhorn has placed its volume's copies (plans.netboot.pi_pods).
volume=""
errors=$(mktemp)
placed() {{
  # kubectl's warnings kept apart from what is read (review 41-3 L4).
  mounted=$({kubectl} -n {NAMESPACE} get deployment pi-nfs --ignore-not-found -o jsonpath='{{.spec.template.spec.volumes[*].persistentVolumeClaim.claimName}}' 2>"$errors") || {{ why="pi-nfs cannot be read: $(cat "$errors")"; return 1; }}
  case " $mounted " in *" {claim} "*) said="{claim} is served by the running pi-nfs already: no new volume to wait for"; return 0 ;; esac
  volume=$({kubectl} -n {NAMESPACE} get pvc {claim} -o jsonpath='{{.spec.volumeName}}' 2>"$errors") || {{ why="{claim} cannot be read: $(cat "$errors")"; return 1; }}
  [ -n "$volume" ] || {{ why="{claim} is not bound to a volume yet"; return 1; }}
  got=$({kubectl} -n {ns} get volumes.longhorn.io "$volume" -o json 2>"$errors") || {{ why="Longhorn's volume $volume cannot be read: $(cat "$errors")"; return 1; }}
  why=$(printf '%s' "$got" | python3 -c {shlex.quote(SCHEDULED_SCRIPT)} 2>&1) || return 1
  said="Longhorn placed the copies of {claim}'s volume $volume"
}}
end=$(( $(date +%s) + {timeout} ))
until placed; do
  if [ "$(date +%s)" -ge "$end" ]; then
    nodes=$({kubectl} -n {ns} get nodes.longhorn.io -o json 2>"$errors") || nodes='{{"items": []}}'
    untagged=$(printf '%s' "$nodes" | python3 -c {shlex.quote(UNTAGGED_SCRIPT)} {storage.PI_ROOT_TAG} {holders} 2>&1) || untagged="the Longhorn nodes cannot be read"
    echo "iluvatar: $(hostname): waited {timeout} s for {what}: {claim}'s volume ${{volume:-(none yet)}}: $why; $untagged; pi-nfs still serves every maia from its old volumes; look with: {look}" >&2
    exit 1
  fi
  sleep {k3s.GATE_POLL_SECONDS}
done
# A new volume's copies were just placed: none of them may be on a Pi that netboots (review 41-14 H1). Longhorn never
# removes a tag (kubernetes_node_controller.go:335-352), so a card Pi turned netbooting keeps pi-root, and Longhorn puts a
# copy on the disk with the most room (replica_scheduler.go:659-680), often that Pi's: once it boots from the network its
# root would be served from a copy it holds itself, and after a power cut nothing could serve it. Refused before pi-nfs
# moves onto the volume, with what to do.
if [ -n "$volume" ]; then
  replicas=$({kubectl} -n {ns} get replicas.longhorn.io -o json 2>"$errors") || {{
    echo "iluvatar: $(hostname): Longhorn's replicas cannot be read, so whether a copy of {claim}'s volume $volume is on a Pi that netboots is unknown: $(cat "$errors"); pi-nfs still serves every maia from its old volumes; look with: {look}" >&2
    exit 1
  }}
  on_maiar=$(printf '%s' "$replicas" | python3 -c {shlex.quote(ON_MAIAR_SCRIPT)} "$volume" {maiar})
  if [ -n "$on_maiar" ]; then
    untag=$({kubectl} -n {ns} get nodes.longhorn.io -o json 2>"$errors" | python3 -c {shlex.quote(TAGGED_MAIAR_SCRIPT)} {storage.PI_ROOT_TAG} {maiar} 2>&1 || true)
    echo "iluvatar: $(hostname): {claim}'s volume $volume has a copy on a Pi that netboots ($on_maiar): its root is served from these volumes, so it must hold none of their copies. pi-nfs still serves every maia from its old volumes. Take the {storage.PI_ROOT_TAG} tag off that Pi, delete that replica so Longhorn places it on a card Pi (sudo k3s kubectl -n {ns} delete replicas.longhorn.io <replica>), then run pulumi up again. ${{untag:-}}" >&2
    exit 1
  fi
fi
echo "iluvatar: $said" >&2
# A netbooting Pi still tagged (review 41-6 L2): no copy of this volume is on it, but later copies could be.
if nodes=$({kubectl} -n {ns} get nodes.longhorn.io -o json 2>"$errors"); then
  printf '%s' "$nodes" | python3 -c {shlex.quote(TAGGED_MAIAR_SCRIPT)} {storage.PI_ROOT_TAG} {maiar} >&2 || true
fi
rm -f "$errors"
"""


def placed_wait_message(stack: StackConfig) -> str:
    """What `pulumi preview` and `up` say of the placement waits."""
    claims = ", ".join(root_claim(n) for n in netboot_pis(stack))
    return (
        f"each new root volume ({claims}) is waited on once, up to {PLACED_SECONDS // 60} minutes, until Longhorn has "
        f"placed its copies on Pis tagged {storage.PI_ROOT_TAG}, before pi-nfs moves onto it; a volume the running pi-nfs "
        "already serves is not waited on"
    )


def single_copy_warning(stack: StackConfig) -> str | None:
    """A warning when every netbooted root has one copy: one Pi may hold a root's replica, so its disk is
    each maia's only copy of its root (its k3s node password, its host keys, what it wrote). Not an error: a homelab
    with one card Pi can run so, knowingly."""
    if roots_class(stack) != ROOTS_CLASS or storage.pi_root_replicas(stack) != 1:
        return None
    holder = storage.pi_root_pis(stack)[0].name
    return (
        f"the netbooted roots ({', '.join(root_claim(n) for n in netboot_pis(stack))}) have one copy each, on {holder}'s "
        f"data disk: only {holder} boots from its card and has `dataDisks` (iluvatar:nodes[].dataDisks). If that disk "
        "fails, every netbooting Pi loses its root. Give a second Pi that boots from its card a data disk: the next `up` "
        "makes a second copy of every root."
    )


def legacy_replicas_note() -> str:
    """What `up` cannot do for the first version's volume: move its running replicas off the maiar."""
    return (
        f"the first version's `{LEGACY_CLAIM}` volume now places new replicas only on Pis tagged `{storage.PI_ROOT_TAG}`, "
        "but Longhorn keeps a running replica where it is. If one is on a netbooting Pi, a power cut of the whole lab can "
        "leave pi-nfs unable to start. Check with: kubectl -n longhorn-system get replicas.longhorn.io "
        f"-l longhornvolume=$(kubectl -n {NAMESPACE} get pvc {LEGACY_CLAIM} -o jsonpath='{{.spec.volumeName}}') "
        "-o custom-columns=NAME:.metadata.name,NODE:.spec.nodeID ; delete such a replica with kubectl -n longhorn-system "
        "delete replicas.longhorn.io <name>, one at a time, each once the volume is healthy again (docs/layers/ainur.md)."
    )


def keeps_legacy_claim(previous: Mapping[str, Any], dnsmasq_conf: Any = None) -> bool:
    """Whether the first version's `pi-roots` claim is the program's, from the last deployment's output
    `ainur` (plans.rollout.ainur_state) and its `dnsmasqConf`: what that deployment said (`legacyRoots`), or, from a
    version that did not say, whether it ran a netbooting Pi (stacks.day2.netbooted_before: a node with an `image`, or,
    from the first netboot version, 66ca479, whose nodes had none, a Pi its dnsmasq config tagged `rpiboot`), whose
    roots that claim holds. Where the outputs cannot tell, kept: a retained claim kept costs nothing,
    a dropped one loses every root. Never on a new homelab, so a new one carries no volume whose replicas could sit
    anywhere, and a Pi's root never depends on one."""
    if "legacyRoots" in previous:
        return bool(previous["legacyRoots"])
    before = day2.netbooted_before(previous, dnsmasq_conf)
    return before is None or bool(before)


def manifests(stack: StackConfig, legacy: bool = True) -> list[dict[str, Any]]:
    """The objects only a netbooting maia brings: its ConfigMap, the roots' volumes and the NFS server; with `legacy`,
    the first version's claim (keeps_legacy_claim)."""
    if not netboot_pis(stack):
        return []
    labels = _labels("pi-nfs")
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta("pi-netboot", _labels("netboot")), "data": pi_config(stack)},
        *([roots_storage_class(stack)] if roots_class(stack) == ROOTS_CLASS else []),
        *(root_claim_manifest(stack, n) for n in netboot_pis(stack)),
        *([legacy_claim(stack)] if legacy else []),
        # Replaced when what it reads at its start changes (nfs_digest) or its pod spec does (the stack's image).
        _single_pod("pi-nfs", labels, nfs_pod(stack, legacy), annotations={"iluvatar/config-digest": nfs_digest(stack)}),
    ]


__all__ = [
    "BOOKWORM_IMAGE",
    "BOOTS",
    "GANESHA_VERSION",
    "LEGACY_CLAIM",
    "LEGACY_ROOTS",
    "NAMESPACE",
    "NOT_NETBOOTED",
    "ROOTS_CLASS",
    "ROOT_SIZE_GI",
    "TFTP_ROOT",
    "boot_configmap",
    "boot_name",
    "boot_projection",
    "builds_image",
    "cache_digest",
    "cache_steps",
    "cache_volumes",
    "cache_wait_message",
    "cache_wait_minutes",
    "card_pis",
    "keeps_legacy_claim",
    "legacy_claim",
    "legacy_replicas_note",
    "manifests",
    "nfs_digest",
    "nfs_pod",
    "pi_config",
    "placed_wait_message",
    "placed_wait_script",
    "project",
    "root_claim",
    "root_claim_manifest",
    "root_volume_spec",
    "roots_class",
    "roots_storage_class",
    "single_copy_warning",
    "tftp_container",
    "with_pis",
]
