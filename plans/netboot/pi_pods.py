"""The netbooting maiar's Kubernetes objects: the image builder and TFTP folders on every disk-booting Pi, the NFS
server next to the netboot pod, its volume, and the ConfigMap of each Pi's own files. Only with a netbooting maia.

Where each runs, and why:
- `netboot-cache` (the DaemonSet of plans.netboot.pods) gets three more steps on each Pi that boots from its card: the
  image builder (plans.netboot.pi_image), the Pis' TFTP folders (plans.netboot.pis.tftp_script), and NFS-Ganesha's
  Debian packages downloaded to the Pi, so the NFS server starts after a power cut with no internet, as dnsmasq does.
- `pi-nfs`, one replica, replaced never rolled (two servers of one root must never run at once), on the Pi that runs
  the netboot pod (required pod affinity): the service address is there, and it is the roots' server address.
  Privileged: it loop-mounts the image and mounts an overlay per Pi (plans.netboot.nfs); nothing else of the netboot
  namespace is. Its volume `pi-roots` holds each Pi's own layer and follows it to whichever Pi it moves to.
- Neither the netboot pod nor these ever run on a netbooting Pi (k3s labels it iluvatar/boot=netboot, plans.k3s): a Pi
  cannot serve the root it boots from, and after a power cut only the Pis with cards come up by themselves.
"""

from __future__ import annotations

from typing import Any

from plans import storage
from plans.netboot.base import HOST_CACHE, NAMESPACE, TFTP_ROOT
from plans.netboot.nfs import EXPORTS, ganesha_conf, serve_script
from plans.netboot.pi_image import BUILDER_PACKAGES, build_script, image_dir
from plans.netboot.pis import NFS_PORT, PI_IMAGES, boot_files, eeprom_config, netboot_pis, seed_files, tftp_dir, tftp_script
from plans.netboot.pods import DEBIAN_IMAGE, EVICTION_SECONDS, _labels, _meta, _single_pod
from stacks.model import StackConfig

# NFS-Ganesha as the tests run it: Debian 12's 4.3-2 with its VFS backend (tests/netns/test_pi_nfs.py), in Debian 12's
# image of the same date as DEBIAN_IMAGE's.
GANESHA_VERSION = "4.3-2"
BOOKWORM_IMAGE = "docker.io/library/debian:bookworm-20250908-slim"
GANESHA_DEBS = f"{HOST_CACHE}/pi-nfs-debs"
ROOTS_SIZE_PER_PI_GI = 20
# Not a netbooting Pi: k3s labels those iluvatar/boot=netboot (plans.k3s.config).
NOT_NETBOOTED = {"key": "iluvatar/boot", "operator": "NotIn", "values": ["netboot"]}


def pi_config(stack: StackConfig) -> dict[str, str]:
    """The `pi-netboot` ConfigMap's data: the scripts, ganesha.conf, and each Pi's files under flat keys."""
    assert stack.ainur is not None
    image = stack.ainur.pi_image
    data = {
        "build-pi-image.sh": build_script(),
        "pi-tftp.sh": tftp_script(),
        "serve-pis.sh": serve_script(),
        "ganesha.conf": ganesha_conf(stack),
        # What `iluvatar render` lists for the user: the image, and the lines each Pi's EEPROM needs.
        "image.txt": f"Ubuntu {image.release} for Raspberry Pi\nurl: {image.url}\nsha256: {image.sha256}\nfolder: {image_dir(stack)}\n",
    }
    for node in netboot_pis(stack):
        data[f"{node.name}.bootconf.txt"] = eeprom_config(stack, node)
        for name, text in boot_files(stack, node).items():
            data[f"{node.name}.boot.{name}"] = text
        for path, text in seed_files(stack, node).items():
            data[f"{node.name}.root{path.replace('/', '.')}"] = text
    return data


def project(stack: StackConfig, kind: str) -> dict[str, str]:
    """What the kubelet writes for a volume of the ConfigMap with `kind`'s items: each item's path and its text
    (the tests lay the Pis' files out with it, as the pods see them)."""
    data = pi_config(stack)
    return {item["path"]: data[item["key"]] for item in _items(stack, kind)}


def _items(stack: StackConfig, kind: str) -> list[dict[str, str]]:
    """ConfigMap items that lay the Pis' files out as the scripts read them: `<mac>/<serial>/<file>` for TFTP,
    `<name>/files/<path>` for the roots."""
    out = []
    for node in netboot_pis(stack):
        if kind == "boot":
            out += [{"key": f"{node.name}.boot.{name}", "path": f"{tftp_dir(node)}/{name}"} for name in boot_files(stack, node)]
        else:
            out += [{"key": f"{node.name}.root{path.replace('/', '.')}", "path": f"{node.name}/files{path}"} for path in seed_files(stack, node)]
    return out


def cache_steps(stack: StackConfig) -> list[dict[str, Any]]:
    """The init containers the netboot-cache pod runs first on a disk-booting Pi when maiar netboot."""
    assert stack.ainur is not None
    image = stack.ainur.pi_image
    cache = {"name": "cache", "mountPath": HOST_CACHE}
    scripts = {"name": "pi-netboot", "mountPath": "/etc/iluvatar-pi"}
    apt = "apt-get update -qq && apt-get install -y -qq --no-install-recommends"
    return [
        {
            "name": "pi-image",
            "image": DEBIAN_IMAGE,
            "command": ["sh", "-c", f"{apt} {' '.join(BUILDER_PACKAGES)} >/dev/null && exec sh /etc/iluvatar-pi/build-pi-image.sh"],
            "env": [{"name": "URL", "value": image.url}, {"name": "SHA256", "value": image.sha256}, {"name": "OUT", "value": image_dir(stack)}],
            "volumeMounts": [scripts, cache],
        },
        {
            "name": "pi-tftp",
            "image": DEBIAN_IMAGE,
            "command": ["sh", "/etc/iluvatar-pi/pi-tftp.sh"],
            "env": [{"name": "TFTP_ROOT", "value": f"{HOST_CACHE}/tftp"}, {"name": "IMAGE", "value": image_dir(stack)}, {"name": "PIS", "value": "/etc/iluvatar-pi-boot"}],
            "volumeMounts": [scripts, cache, {"name": "pi-boot", "mountPath": "/etc/iluvatar-pi-boot"}],
        },
        {
            "name": "pi-nfs-packages",
            "image": BOOKWORM_IMAGE,
            # The packages and every one they need that the image lacks, kept on the Pi for the NFS container.
            "command": ["sh", "-c", f"mkdir -p {GANESHA_DEBS}/partial && apt-get update -qq && apt-get install -y -qq --download-only -o Dir::Cache::archives={GANESHA_DEBS} "
                        f"nfs-ganesha={GANESHA_VERSION} nfs-ganesha-vfs={GANESHA_VERSION}"],
            "volumeMounts": [cache],
        },
    ]  # fmt: skip


def cache_volumes(stack: StackConfig) -> list[dict[str, Any]]:
    return [
        {"name": "pi-netboot", "configMap": {"name": "pi-netboot", "items": [{"key": k, "path": k} for k in ("build-pi-image.sh", "pi-tftp.sh")]}},
        {"name": "pi-boot", "configMap": {"name": "pi-netboot", "items": _items(stack, "boot")}},
    ]


def nfs_pod(stack: StackConfig) -> dict[str, Any]:
    """The NFS server of the Pis' roots: privileged (loop and overlay mounts), on the netboot pod's Pi."""
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
        "tolerations": [
            {"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": EVICTION_SECONDS}
            for key in ("node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready")
        ],
        "containers": [
            {
                "name": "nfs",
                "image": BOOKWORM_IMAGE,
                "command": ["sh", "-c", f"dpkg -i {GANESHA_DEBS}/*.deb >/dev/null && exec sh /etc/iluvatar/serve-pis.sh"],
                "env": [
                    {"name": "IMAGE", "value": image_dir(stack)},
                    {"name": "ROOTS", "value": "/roots"},
                    {"name": "PIS", "value": "/etc/iluvatar-pis"},
                    {"name": "EXPORTS", "value": EXPORTS},
                    {"name": "CONF", "value": "/etc/iluvatar/ganesha.conf"},
                ],
                # Loop devices and overlay mounts need the host's devices and CAP_SYS_ADMIN; Ganesha reads by file
                # handle (open_by_handle_at: CAP_DAC_READ_SEARCH) as every owner of the roots' files.
                "securityContext": {"privileged": True},
                "ports": [{"name": "nfs", "containerPort": NFS_PORT, "protocol": "TCP"}],
                "readinessProbe": {"tcpSocket": {"port": NFS_PORT}, "periodSeconds": 5},
                "volumeMounts": [
                    etc,
                    {"name": "pis", "mountPath": "/etc/iluvatar-pis"},
                    {"name": "images", "mountPath": PI_IMAGES, "readOnly": True},
                    {"name": "cache", "mountPath": GANESHA_DEBS, "subPath": "pi-nfs-debs", "readOnly": True},
                    {"name": "roots", "mountPath": "/roots"},
                ],
            }
        ],
        "volumes": [
            {"name": "config", "configMap": {"name": "pi-netboot", "items": [{"key": k, "path": k} for k in ("serve-pis.sh", "ganesha.conf")]}},
            {"name": "pis", "configMap": {"name": "pi-netboot", "items": _items(stack, "root")}},
            {"name": "images", "hostPath": {"path": PI_IMAGES, "type": "Directory"}},
            {"name": "cache", "hostPath": {"path": HOST_CACHE, "type": "Directory"}},
            {"name": "roots", "persistentVolumeClaim": {"claimName": "pi-roots"}},
        ],
    }


def _digest(data: dict[str, str]) -> str:
    import hashlib

    return hashlib.sha256("\n".join(f"{k}={v}" for k, v in sorted(data.items())).encode()).hexdigest()[:16]


def with_pis(stack: StackConfig, cache: dict[str, Any], netboot: dict[str, Any]) -> None:
    """Add the netbooting Pis' steps to the netboot-cache pod spec and keep both pods off netbooting Pis (in place)."""
    if not netboot_pis(stack):
        return
    cache["initContainers"] = [*cache["initContainers"], *cache_steps(stack)]
    cache["volumes"] = [*cache["volumes"], *cache_volumes(stack)]
    required = {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [NOT_NETBOOTED]}]}}
    cache["affinity"] = {"nodeAffinity": required}
    netboot["affinity"] = {**netboot["affinity"], "nodeAffinity": {**netboot["affinity"]["nodeAffinity"], **required}}


def manifests(stack: StackConfig) -> list[dict[str, Any]]:
    """The objects only a netbooting maia brings: its ConfigMap, the roots' volume and the NFS server."""
    if not netboot_pis(stack):
        return []
    labels = _labels("pi-nfs")
    size = ROOTS_SIZE_PER_PI_GI * len(netboot_pis(stack))
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta("pi-netboot", _labels("netboot")), "data": pi_config(stack)},
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": _meta("pi-roots", labels),
            # Longhorn when it runs on the Ainur (replicated: the roots follow the NFS server to another Pi), else k3s's
            # local-path (on one Pi: the NFS server, and so the netboot pod, cannot leave it). As the Git mirror's.
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": storage.git_mirror_class(stack),
                "resources": {"requests": {"storage": f"{size}Gi"}},
            },
        },
        # Replaced whenever what it serves changes (its config, a Pi's seed, the image).
        _single_pod("pi-nfs", labels, nfs_pod(stack), annotations={"iluvatar/config-digest": _digest(pi_config(stack))}),
    ]


__all__ = [
    "BOOKWORM_IMAGE",
    "GANESHA_VERSION",
    "NAMESPACE",
    "NOT_NETBOOTED",
    "TFTP_ROOT",
    "cache_steps",
    "cache_volumes",
    "manifests",
    "nfs_pod",
    "pi_config",
    "project",
    "with_pis",
]
