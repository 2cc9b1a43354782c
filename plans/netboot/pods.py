"""The pod specs: the netboot pod (dnsmasq and nginx on the host network, the lease scripts beside
them) and the netboot-cache pod on every Pi, with the Kubernetes metadata every netboot object shares."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from plans.netboot.base import DISCOVERY_WINDOW_DIR, DNSMASQ_ETC, HOST_CACHE, HTTP_ROOT, LEASES_DIR, NAMESPACE, RECORDS_DIR, TFTP_ROOT
from plans.netboot.records import RUN_SCRIPT, records_env
from plans.netboot.records import SCRIPT as RECORDS_SCRIPT
from stacks import pins

DNSMASQ_IMAGE = pins.IMAGES["dnsmasq"]
NGINX_IMAGE = pins.IMAGES["nginx"]
CURL_IMAGE = pins.IMAGES["curl"]
DEBIAN_IMAGE = pins.IMAGES["debian"]
KUBE_VIP_IMAGE = pins.IMAGES["kube-vip"]
# The netboot pod leaves an unreachable or not-ready Pi this long after the node is marked so
# (node-monitor-grace-period, plans.k3s), instead of Kubernetes' default 300 s.
EVICTION_SECONDS = 5


def eviction_tolerations() -> list[dict[str, Any]]:
    """A pod that leaves a Pi whose kubelet is silent or not ready after EVICTION_SECONDS, not Kubernetes' 300 s."""
    return [
        {"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": EVICTION_SECONDS}
        for key in ("node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready")
    ]


def _labels(app: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": app, "app.kubernetes.io/part-of": "iluvatar"}


def _meta(name: str, labels: dict[str, str], namespace: str | None = NAMESPACE) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": labels}
    if namespace is not None:
        meta["namespace"] = namespace
    return meta


def _single_pod(name: str, labels: dict[str, str], pod: dict[str, Any], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """A one-replica Deployment replaced, never rolled: two DHCP servers (or two writers of
    one mirror) must never run side by side, even during an update."""
    template_metadata: dict[str, Any] = {"labels": labels}
    if annotations:
        template_metadata["annotations"] = annotations
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(name, labels),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": labels},
            "template": {"metadata": template_metadata, "spec": pod},
        },
    }


def _nginx(mounts: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": "http",
        "image": NGINX_IMAGE,
        "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"}],
        # Ready once iPXE's first script is served (the same readiness gate as dnsmasq's).
        "readinessProbe": {"httpGet": {"path": "/boot.ipxe", "port": "http"}, "periodSeconds": 5},
        "volumeMounts": mounts,
    }


def _sh(name: str, image: str, script: str, mounts: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": name, "image": image, "command": ["sh", f"/etc/iluvatar/{script}"], "volumeMounts": mounts}


def netboot_pod(config_macs: Sequence[str], dnsmasq_configmap: str, discovery: bool = False) -> dict[str, Any]:
    """The netboot pod: dnsmasq and nginx on the host network, with the leases kept in the cluster; with `discovery`,
    the discovery window's loop, which serves nginx the file boot.ipxe asks for while it is open (plans.netboot.window).
    `dnsmasq_configmap`: the ConfigMap of this template's dnsmasq.conf (plans.netboot.base.dnsmasq_configmap)."""
    config_items = [{"key": f"{m}.yaml", "path": f"{m}.yaml"} for m in config_macs]
    etc = {"name": "config", "mountPath": "/etc/iluvatar"}
    # dnsmasq.conf, from a ConfigMap named by its content, which only this template names: the kubelet updates the
    # netboot ConfigMap's volume in the running pod (its atomic writer), so a conf read from there would be the next
    # deployment's as soon as its ConfigMap changed, before the router step, and any restart of this pod's dnsmasq (a
    # crash, a Pi's reboot, a pod rebuilt from this template elsewhere) would start the next mode beside the router.
    conf = {"name": "dnsmasq", "mountPath": DNSMASQ_ETC, "readOnly": True}
    leases = {"name": "leases", "mountPath": LEASES_DIR}
    window = {"name": "discovery-window", "mountPath": f"{HTTP_ROOT}/{DISCOVERY_WINDOW_DIR}"}
    # dnsmasq's hostsdir and DHCP hosts file, which the records loop keeps as the ConfigMap says (plans.netboot.records):
    # filled once before dnsmasq starts, then followed, so an app or a machine added never restarts dnsmasq.
    records = {"name": "records", "mountPath": RECORDS_DIR}
    pod: dict[str, Any] = {
        "serviceAccountName": "netboot",
        "hostNetwork": True,
        "dnsPolicy": "ClusterFirstWithHostNet",
        "terminationGracePeriodSeconds": 5,
        # Prefer a maiar: with one valar, the valar's death then leaves DHCP running, and a maiar's
        # death is rescheduled by the valar's control plane.
        "affinity": {
            "nodeAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 100, "preference": {"matchExpressions": [{"key": "iluvatar/role", "operator": "In", "values": ["maiar"]}]}}
                ]
            }
        },
        # Leave a dead Pi after EVICTION_SECONDS, not Kubernetes' default 300 s.
        "tolerations": eviction_tolerations(),
        "initContainers": [
            _sh("restore-leases", CURL_IMAGE, "restore-leases.sh", [etc, leases]),
            {**_sh("records-first", CURL_IMAGE, RECORDS_SCRIPT, [etc, records]), "env": records_env(once=True)},
        ],
        "containers": [
            {
                "name": "dnsmasq",
                "image": DNSMASQ_IMAGE,
                # dnsmasq, and beside it the records loop that signals it (SIGHUP) when the DHCP hosts change: in one
                # container, as one user, so the signal needs no capability nor a process namespace shared with the
                # pod's other containers (plans.netboot.records).
                "command": ["sh", f"/etc/iluvatar/{RUN_SCRIPT}"],
                # In the foreground, logging to the container's output (there is no syslog in a pod).
                "args": ["--keep-in-foreground", "--log-facility=-", f"--conf-file={DNSMASQ_ETC}/dnsmasq.conf"],
                "env": records_env(once=False),
                # DHCP and TFTP bind privileged ports and write the kernel's ARP table for replies.
                "securityContext": {"capabilities": {"add": ["NET_ADMIN", "NET_BIND_SERVICE", "NET_RAW"]}},
                "ports": [
                    {"name": "dns-udp", "containerPort": 53, "protocol": "UDP"},
                    {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                    {"name": "dhcp", "containerPort": 67, "protocol": "UDP"},
                    {"name": "tftp", "containerPort": 69, "protocol": "UDP"},
                ],
                # Ready once dnsmasq answers: the Deployment is then "available", which is what Arda's
                # installs wait for (pulumi-kubernetes awaits it) before any machine is told to netboot.
                # The kubelet dials the probe's host, else the Pod's IP, which for a host-network Pod is the
                # Pi's own address (Kubernetes v1.33 pkg/kubelet/prober/prober.go, runProbe), where dnsmasq
                # does not listen. Nor may it dial the service address: kube-vip v0.9.2 announces it only from
                # a Pi with a Ready endpoint (pkg/manager/watch_endpoints.go, getLocalEndpoints reads
                # Endpoints' ready Addresses), so that probe would wait on itself. dnsmasq also listens on
                # the Pi's loopback (plans.netboot.dnsmasq), which the kubelet shares: never the LAN.
                "readinessProbe": {"tcpSocket": {"host": "127.0.0.1", "port": "dns-tcp"}, "periodSeconds": 5},
                "volumeMounts": [etc, conf, {"name": "tftp", "mountPath": TFTP_ROOT, "readOnly": True}, leases, records],
            },
            _nginx(
                [
                    {"name": "config", "mountPath": "/etc/nginx/conf.d/default.conf", "subPath": "nginx.conf"},
                    {"name": "ipxe", "mountPath": f"{HTTP_ROOT}/boot.ipxe", "subPath": "boot.ipxe"},
                    {"name": "ipxe", "mountPath": f"{HTTP_ROOT}/ipxe"},
                    *([{"name": "configs", "mountPath": f"{HTTP_ROOT}/configs"}] if config_items else []),
                    {"name": "assets", "mountPath": f"{HTTP_ROOT}/assets", "readOnly": True},
                ]
            ),
            _sh("save-leases", CURL_IMAGE, "save-leases.sh", [etc, leases]),
        ],
        "volumes": [
            {"name": "config", "configMap": {"name": "netboot"}},
            {"name": "dnsmasq", "configMap": {"name": dnsmasq_configmap}},
            {"name": "ipxe", "configMap": {"name": "ipxe"}},
            # Each netbooting machine's config by its MAC, named one by one so nginx serves those keys alone. With none
            # (control planes only), no volume: a secret volume without `items` would serve every key of the Secret,
            # and `items: []` is not one, the API server storing an empty list as absent.
            *([{"name": "configs", "secret": {"secretName": "talos-configs", "items": config_items}}] if config_items else []),
            {"name": "tftp", "hostPath": {"path": f"{HOST_CACHE}/tftp", "type": "DirectoryOrCreate"}},
            {"name": "assets", "hostPath": {"path": f"{HOST_CACHE}/assets", "type": "DirectoryOrCreate"}},
            {"name": "leases", "emptyDir": {}},
            {"name": "records", "emptyDir": {}},
        ],
    }
    if discovery:
        http = next(c for c in pod["containers"] if c["name"] == "http")
        http["volumeMounts"].append({**window, "readOnly": True})
        pod["containers"].append(_sh("discovery-window", CURL_IMAGE, "discovery-window.sh", [etc, window]))
        pod["volumes"].append({"name": "discovery-window", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}})
    return pod


def cache_pod() -> dict[str, Any]:
    """The netboot-cache pod on every Pi: iPXE binaries and Talos assets on the host, and the
    netboot images pulled, so the netboot pod can start on any Pi with no internet."""
    cache = {"name": "cache", "mountPath": HOST_CACHE}
    etc = {"name": "config", "mountPath": "/etc/iluvatar"}
    return {
        # Every NoExecute taint, so a pod stays on a Pi the control plane cannot reach, but no NoSchedule one: a dead Pi
        # (tainted unreachable:NoSchedule by the node lifecycle controller) is then not one the DaemonSet must run on
        # (Kubernetes v1.33 node_lifecycle_controller.go:87-90 and doNoScheduleTaintingPass, 527; daemon_controller.go
        # NodeShouldRunDaemonPod, 1321-1326, and the status it counts, 1167-1172). That alone does not let a change of
        # the cache roll past a dead Pi: its old pod, deleted by the roll, stays Terminating and holds the roll's one
        # unavailable Pi for ever (daemon/update.go:82-84,119-126). The clearance step before the roll
        # removes it (plans.netboot.cache.clearance_script), so the roll and pulumi-kubernetes's wait end on the Pis that answer.
        "tolerations": [{"operator": "Exists", "effect": "NoExecute"}],
        "initContainers": [
            _sh("ipxe", DEBIAN_IMAGE, "fetch-ipxe.sh", [etc, cache]),
            # The curl image runs as an unprivileged user; the host folder is root's.
            {**_sh("assets", CURL_IMAGE, "fetch-assets.sh", [etc, cache]), "securityContext": {"runAsUser": 0}},
            {"name": "pull-dnsmasq", "image": DNSMASQ_IMAGE, "command": ["dnsmasq", "--version"]},
            {"name": "pull-nginx", "image": NGINX_IMAGE, "command": ["nginx", "-v"]},
            # kube-vip's image on every Pi before kube-vip-services' roll replaces the pod on the Pi holding the service
            # address (plans.netboot.vip_roll waits for this DaemonSet): that gap is then a start, not a pull. The image
            # is FROM scratch with /kube-vip alone; `version` prints and exits (kube-vip v0.9.2 cmd/kube-vip.go:161-169).
            {"name": "pull-kube-vip", "image": KUBE_VIP_IMAGE, "command": ["/kube-vip", "version"]},
        ],
        "containers": [
            {"name": "idle", "image": CURL_IMAGE, "command": ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 3600 & wait $!; done"]}
        ],
        "volumes": [
            {"name": "config", "configMap": {"name": "netboot"}},
            {"name": "cache", "hostPath": {"path": HOST_CACHE, "type": "DirectoryOrCreate"}},
        ],
    }
