"""The netboot namespace's Kubernetes objects, assembled from the parts: the configs and scripts as
ConfigMaps, the lease RBAC, the cache DaemonSet, the netboot Deployment (replaced whenever what it
reads only at its start changes), its Service on the service address, kube-vip, and the Argo CD seed's namespace."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from ipaddress import IPv4Address
from typing import Any

from plans import netpol
from plans.netboot import pi_pods
from plans.netboot.base import DISCOVERY_WINDOW_CONFIGMAP, NAMESPACE, dnsmasq_configmap, service_ip
from plans.netboot.cache import fetch_ipxe_script
from plans.netboot.debs import fetch_script
from plans.netboot.dhcp_probe import MODE_ANNOTATION, SERVICE_IP_ANNOTATION
from plans.netboot.dnsmasq import dhcp_hosts_file, dnsmasq_conf, hosts_file
from plans.netboot.ipxe import boot_script, scripts
from plans.netboot.kube_vip import kube_vip_services
from plans.netboot.leases import LEASES_CONFIGMAP, restore_leases_script, save_leases_script
from plans.netboot.nginx import nginx_conf
from plans.netboot.pis import netboot_pis
from plans.netboot.pods import _labels, _meta, _single_pod, cache_pod, netboot_pod
from plans.netboot.records import DHCP_HOSTS_KEY, HOSTS_KEY, RUN_SCRIPT, records_script, run_script
from plans.netboot.records import SCRIPT as RECORDS_SCRIPT
from plans.netboot.window import window_script
from stacks.model import StackConfig

SEED_NAMESPACE = "argocd"


def config_digest(stack: StackConfig, config_macs: Sequence[str]) -> str:
    """Changes whenever what the netboot pod reads only at its start changes, so the pod is replaced: dnsmasq.conf
    (with the netbooted machines' tags by MAC; its own ConfigMap, named by its content, so the template names it
    anyway), the records loop and dnsmasq's container's command, nginx.conf and boot.ipxe (each a subPath mount, which
    the kubelet never updates), and the configs' items (one per netbooted worker). Not what the running pod reads anew in full, whose change leaves the pod, and the LAN's DHCP and DNS,
    running: the internal zone's names (a `hostsdir` file, its old names dropped before it is read again:
    src/inotify.c:303-313) and the inventory's DHCP hosts (a `dhcp-hostsfile`, its old hosts dropped before it is read
    again on the SIGHUP the records loop sends: src/option.c:5810-5826), both handed over by plans.netboot.records;
    each machine's iPXE script (the `ipxe` ConfigMap's volume, which the kubelet updates in place, and nginx reads a
    file at each request); the Talos version and the boards' schematics (the boot assets, which netboot-cache swaps on
    each Pi's disk, each board's folder in one rename, under the folder nginx serves). So a machine that boots from its
    disk added, renamed or given another MAC or address leaves the pod running; one that netboots replaces it (its
    tag and its config item)."""
    parts = [
        dnsmasq_conf(stack),
        records_script(),
        run_script(),
        nginx_conf(stack),
        boot_script(stack),
        *config_macs,
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


# The netboot pod's dnsmasq holds the TFTP folder through its hostPath bind mount, so a swap of the whole folder would
# leave a running dnsmasq serving a deleted, empty one. The cache's `ipxe` step renames each binary inside the folder
# (plans.netboot.cache.fetch_ipxe_script), which a running dnsmasq sees. Earlier versions of the program swapped the
# folder: this mark in the template starts the netboot pod once more on a homelab deployed by one of them, which heals a
# dnsmasq left on the deleted folder. A constant: later iPXE bumps leave the netboot pod (and the LAN's DHCP and DNS) alone.
TFTP_LAYOUT = {"iluvatar/tftp-layout": "binaries-renamed-in-place"}


# Where a netboot pod made from a template before dnsmasq.conf had its own ConfigMap reads it: the `netboot` ConfigMap's
# key, through --conf-file=/etc/iluvatar/dnsmasq.conf.
LEGACY_CONF_KEY = "dnsmasq.conf"


def legacy_conf(stack: StackConfig, deployed_mode: str | None) -> str:
    """dnsmasq.conf for a netboot pod of a template that reads it from the `netboot` ConfigMap (`LEGACY_CONF_KEY`), as a
    homelab deployed before the conf's own ConfigMap runs until its Deployment moves. The kubelet removes a key that
    left a ConfigMap from the running pod's volume (Kubernetes v1.35.1 pkg/volume/util/atomic_writer.go:161-166, :254),
    and dnsmasq exits (status 3) when its --conf-file is missing (dnsmasq 2.90 src/option.c:5585-5597): a restart of
    that pod before its Deployment moves would leave the household without DHCP and DNS. Its paths are that pod's too
    (the records, the leases, the TFTP root). Lending (`dhcp`) only where the stack and the last deployment
    (`deployed_mode`, from its outputs; None on a first bring-up) both say dhcp: an old pod started again in proxy mode
    lends nothing, whereas one started as an authoritative lender beside the router would refuse its clients."""
    assert stack.ainur is not None
    mode = "dhcp" if stack.ainur.netboot.mode == "dhcp" and deployed_mode != "proxy" else "proxy"
    if mode == stack.ainur.netboot.mode:
        return dnsmasq_conf(stack)
    netboot = stack.ainur.netboot.model_copy(update={"mode": mode})
    return dnsmasq_conf(stack.model_copy(update={"ainur": stack.ainur.model_copy(update={"netboot": netboot})}))


def manifests(
    stack: StackConfig,
    config_macs: list[str],
    extra_records: Sequence[tuple[str, IPv4Address]] = (),
    legacy_roots: bool = True,
    deployed_mode: str | None = None,
) -> list[dict[str, Any]]:
    """The netboot namespace's objects, Namespace first. `extra_records` join the internal DNS zone
    (see `dns_records`); `legacy_roots`: the first version's volume of the netbooted roots (pi_pods.keeps_legacy_claim);
    `deployed_mode`: the mode the last deployment's outputs say its dnsmasq ran (`legacy_conf`).

    The machine configs (a Secret) and the asset download script (from Image Factory URLs)
    are only known at deploy time; the component adds them.
    """
    assert stack.ainur is not None
    labels = _labels("netboot")
    cache_labels = _labels("netboot-cache")
    conf = dnsmasq_conf(stack)
    config_data = {
        # What the records loop hands dnsmasq without a restart (plans.netboot.records).
        HOSTS_KEY: hosts_file(stack, extra_records),
        DHCP_HOSTS_KEY: dhcp_hosts_file(stack),
        RECORDS_SCRIPT: records_script(),
        RUN_SCRIPT: run_script(),
        "nginx.conf": nginx_conf(stack),
        # The stack's mode: in proxy mode an infinite lease no reservation holds goes (plans.netboot.leases.STALE). A
        # move between modes replaces the pod (the conf is in its digest), whose restore then runs this script.
        "restore-leases.sh": restore_leases_script(proxy=stack.ainur.netboot.mode == "proxy"),
        "save-leases.sh": save_leases_script(address=str(stack.ainur.service_ip)),
        "fetch-ipxe.sh": fetch_ipxe_script(),
        # The pinned ipxe file, which fetch-ipxe.sh unpacks (plans.netboot.debs).
        "ipxe-debs.sh": fetch_script("netboot-ipxe", "iPXE"),
        # Read only by a pod of an older template (`legacy_conf`); this template reads its conf's own ConfigMap.
        LEGACY_CONF_KEY: legacy_conf(stack, deployed_mode),
    }
    if stack.discovery is not None:
        config_data["discovery-window.sh"] = window_script()
    # The netbooting maiar's steps, volumes and placement (plans.netboot.pi_pods); nothing without one.
    cache_spec, netboot_spec = cache_pod(), netboot_pod(config_macs, dnsmasq_configmap(conf), discovery=stack.discovery is not None)
    pi_pods.with_pis(stack, cache_spec, netboot_spec)
    # iPXE's pin or its scripts changed: each Pi's cache runs its `ipxe` step again, one Pi at a time, rather than at
    # its pod's next restart, whenever that is: otherwise a bump rolls nothing, and the Pis serve different builds.
    ipxe = hashlib.sha256(f"{config_data['fetch-ipxe.sh']}\n{config_data['ipxe-debs.sh']}".encode()).hexdigest()[:16]
    cache_template: dict[str, Any] = {"metadata": {"labels": cache_labels, "annotations": {"iluvatar/ipxe-digest": ipxe}}, "spec": cache_spec}
    if netboot_pis(stack):
        # The image or the scripts changed: each Pi's cache runs its steps again (not a Pi's seed: pi_pods.CACHE_KEYS).
        cache_template["metadata"]["annotations"]["iluvatar/pi-digest"] = pi_pods.cache_digest(stack)
    leases_rules = [
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [LEASES_CONFIGMAP], "verbs": ["get", "update"]},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]},
    ]
    if stack.discovery is not None:
        # The discovery window, which only the user's `iluvatar discover --arm` writes: the pod reads it.
        leases_rules.append({"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [DISCOVERY_WINDOW_CONFIGMAP], "verbs": ["get"]})
    return [
        # hostNetwork and NET_ADMIN (DHCP) need the privileged Pod Security level.
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE, "labels": {"pod-security.kubernetes.io/enforce": "privileged"}}},
        # Every pod of the namespace admits nothing a policy does not allow (the Git mirror's: plans.netboot.mirror). The
        # netboot pod and the NFS server are on the host network, where no pod policy applies (plans.netpol): dnsmasq,
        # nginx and Ganesha answer whatever reaches the Pi's and the service address (docs/security.md).
        netpol.default_deny(NAMESPACE, **_labels("netboot")),
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta("netboot", labels), "data": config_data},
        # dnsmasq.conf, which decides the mode (lender or proxy) and is read only at dnsmasq's start: in a ConfigMap of
        # its own, named by its content and named only by the netboot pod's template, so only the pod of that template
        # reads it, however often the old pod's dnsmasq restarts before the Deployment changes (the netboot ConfigMap's
        # volume follows the ConfigMap in the running pod). Another conf is another object, so another Pulumi
        # resource: the engine creates it before the Deployment that names it is updated, and deletes the old one,
        # no longer in the program, at the end of a successful `up`, after the Deployment moved. Immutable: the
        # kubelet need not watch it, and nothing changes it under the old pod.
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta(dnsmasq_configmap(conf), labels),
            "immutable": True,
            "data": {"dnsmasq.conf": conf},
        },
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta("ipxe", labels), "data": scripts(stack)},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta("netboot", labels)},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": _meta("netboot-leases", labels), "rules": leases_rules},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": _meta("netboot-leases", labels),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "netboot-leases"},
            "subjects": [{"kind": "ServiceAccount", "name": "netboot", "namespace": NAMESPACE}],
        },
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": _meta("netboot-cache", cache_labels),
            "spec": {"selector": {"matchLabels": cache_labels}, "template": cache_template},
        },
        _single_pod(
            "netboot",
            labels,
            netboot_spec,
            annotations={
                "iluvatar/config-digest": config_digest(stack, config_macs),
                **TFTP_LAYOUT,
                # What its dnsmasq runs with, which the steps around the pod read from the Ainur's API at run time to know
                # whether an `up` moves the LAN between modes (plans.netboot.dhcp_probe.deployed). Both are in the conf, so
                # neither changes the template when the conf does not.
                MODE_ANNOTATION: stack.ainur.netboot.mode,
                SERVICE_IP_ANNOTATION: str(service_ip(stack)),
            },
        ),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {**_meta("netboot", labels), "annotations": {"kube-vip.io/loadbalancerIPs": str(service_ip(stack))}},
            # kube-vip announces the address only from a Pi running the pod, and clients' own addresses reach nginx
            # (each worker's config is served to its address only); no NodePort (plans.netpol). Only HTTP: kube-proxy
            # would rewrite DNS, DHCP and TFTP packets to the Pi's own address, where dnsmasq does not listen; they
            # reach the service address directly.
            "spec": netpol.load_balancer(
                [{"name": "http", "port": 80, "targetPort": 80, "protocol": "TCP"}], externalTrafficPolicy="Local", selector=labels
            ),
        },
        *pi_pods.manifests(stack, legacy_roots),
        *kube_vip_services(stack),
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": SEED_NAMESPACE, "labels": _labels("argocd-seed")}},
    ]


def balances(service: dict[str, Any], workload: dict[str, Any]) -> bool:
    """Whether `service` is a LoadBalancer Service with the Local traffic policy in front of `workload`'s pods: one that
    gets its address (kube-vip's, plans.netboot.kube_vip) only once a pod of the workload is ready, so pulumi-kubernetes,
    which awaits its address (provider/pkg/await/service.go:299-308), holds it until then; nothing the workload waits
    for may wait for it."""
    spec = service.get("spec", {})
    if service.get("kind") != "Service" or spec.get("type") != "LoadBalancer" or spec.get("externalTrafficPolicy") != "Local":
        return False
    if (service["metadata"].get("annotations") or {}).get("pulumi.com/skipAwait") == "true":
        return False
    labels = workload.get("spec", {}).get("template", {}).get("metadata", {}).get("labels") or {}
    selector = spec.get("selector") or {}
    same = service["metadata"].get("namespace") == workload["metadata"].get("namespace")
    return bool(same and selector and selector.items() <= labels.items())
