"""The homelab's connectivity matrix for each cluster, computed by np-guard's netpol-analyzer (tools/netpol-check).

The analyzer reads what the program creates in each cluster and what Argo CD builds from kube-prometheus with the
stack's patches (tools.netpol_check says what it reads and what it cannot see), and evaluates every NetworkPolicy
as Kubernetes defines them. The matrices below are today's, every row of them: a path opened or closed by a change
shows up here as a diff to review. A row's sources are EVERY (every pod of the cluster but the destination, and
every outside address: 0.0.0.0/0, which the analyzer names 0.0.0.0-255.255.255.255), or the workloads listed.

Rows marked FINDING are paths the threat model (issue #54) must answer for; they are pinned as they are today so
that closing them is a visible change here, not a silent one.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import re
from typing import Any

import pytest

from stacks import load_stack_file, pins
from tests.edit import HOMELAB
from tests.sims import simulated
from tools import netpol_check
from tools.netpol_check import EVERY, OUTSIDE, Analysis, NetpolCheckError
from tools.upstream import modules

ALL = "All Connections"
PROMETHEUS = "monitoring/prometheus-k8s[StatefulSet]"
# The attacker of the threat model (docs/security.md, "A compromised app pod"): a pod of its own in a namespace of its
# own, labelled like nothing any policy names (ATTACKER_OBJECTS, added to each cluster's objects). A row that lists
# its sources and does not list it is a path the attacker does not have.
ATTACKER = "attacker/attacker[Deployment]"

# Argo CD's chart (10.8.0, rendered with the stack's values: tools.netpol_check.RENDERED_CHARTS) on both clusters.
ARGOCD_CONTROLLER = "argocd/argocd-application-controller[StatefulSet]"
ARGOCD_REPO_SERVER = "argocd/argocd-repo-server[Deployment]"
ARGOCD_SERVER = "argocd/argocd-server[Deployment]"
ARGOCD_REDIS = "argocd/argocd-redis[Deployment]"
ARGOCD_APPSET = "argocd/argocd-applicationset-controller[Deployment]"
ARGOCD_NOTIFICATIONS = "argocd/argocd-notifications-controller[Deployment]"

# Longhorn's pods on the Ainur, standing in for its chart's (tools.netpol_check.longhorn_stand_ins).
LONGHORN_MANAGER = "longhorn-system/longhorn-manager[DaemonSet]"
LONGHORN_UI = "longhorn-system/longhorn-ui[Deployment]"
LONGHORN_CSI_PLUGIN = "longhorn-system/longhorn-csi-plugin[DaemonSet]"
LONGHORN_DRIVER_DEPLOYER = "longhorn-system/longhorn-driver-deployer[Deployment]"
LONGHORN_INSTANCE_MANAGER = "longhorn-system/instance-manager[DaemonSet]"
LONGHORN_SHARE_MANAGER = "longhorn-system/share-manager[Deployment]"
LONGHORN_BUNDLE_MANAGER = "longhorn-system/support-bundle-manager[Deployment]"
LONGHORN_BUNDLE_AGENT = "longhorn-system/support-bundle-agent[DaemonSet]"

ARDA_WORKLOADS = frozenset(
    {
        ARGOCD_CONTROLLER,
        ARGOCD_APPSET,
        ARGOCD_NOTIFICATIONS,
        ARGOCD_REDIS,
        ARGOCD_REPO_SERVER,
        ARGOCD_SERVER,
        ATTACKER,
        "backup-drill/drill-etcd-ainur[CronJob]",
        "backup-drill/drill-etcd-arda[CronJob]",
        "backup-drill/drill-kms-key[CronJob]",
        "etcd-backup/kms-key-backup[CronJob]",
        "etcd-backup/talos-backup[CronJob]",
        "home-automation/drill-home-assistant-config[CronJob]",
        "home-automation/drill-mosquitto-data[CronJob]",
        "selfhosted/drill-backups-minecraft-0[CronJob]",
        "kube-system/coredns[Deployment]",
        "media/drill-jellyfin-config[CronJob]",
        "monitoring/alertmanager-main[StatefulSet]",
        "monitoring/blackbox-exporter[Deployment]",
        "monitoring/grafana[Deployment]",
        "monitoring/kube-state-metrics[Deployment]",
        "monitoring/log-collector[DaemonSet]",
        "monitoring/node-exporter[DaemonSet]",
        "monitoring/prometheus-adapter[Deployment]",
        PROMETHEUS,
        "monitoring/prometheus-operator[Deployment]",
        "monitoring/victoria-logs[StatefulSet]",
        "monitoring/vmalert-logs[Deployment]",
        "networking/cloudflared[Deployment]",
    }
)
AINUR_WORKLOADS = frozenset(
    {
        ARGOCD_CONTROLLER,
        ARGOCD_APPSET,
        ARGOCD_REDIS,
        ARGOCD_REPO_SERVER,
        ARGOCD_SERVER,
        ATTACKER,
        "identity/dex[Deployment]",
        "identity/front-door[Deployment]",
        "kms/kms[DaemonSet]",
        "kube-system/kube-vip-services[DaemonSet]",
        LONGHORN_MANAGER,
        LONGHORN_UI,
        LONGHORN_CSI_PLUGIN,
        LONGHORN_DRIVER_DEPLOYER,
        LONGHORN_INSTANCE_MANAGER,
        LONGHORN_SHARE_MANAGER,
        LONGHORN_BUNDLE_MANAGER,
        LONGHORN_BUNDLE_AGENT,
        "monitoring/log-collector[DaemonSet]",
        "monitoring/node-exporter[DaemonSet]",
        "netboot/git-mirror[Deployment]",
        "netboot/netboot-cache[DaemonSet]",
        "netboot/netboot[Deployment]",
    }
)


def _pods_but(workloads: frozenset[str], *left_out: str) -> frozenset[str]:
    """Every pod of the cluster (the attacker's included) but those left out: no outside address."""
    return workloads - set(left_out)


# Arda: kube-prometheus's own policies (with the stack's patches), the log store's, Argo CD's (the program's, a policy per
# listening component and a default deny for the rest of its namespace), CoreDNS's and cloudflared's.
ARDA: dict[str, dict[str, str | frozenset[str]]] = {
    # Egress: no policy of the cluster limits it (kube-prometheus's allow all egress): every pod reaches every address.
    OUTSIDE: {ALL: EVERY},
    # Argo CD's metrics from Prometheus alone, where it scrapes them (the controller's, the repo server's); the
    # notifications controller admits no one (plans.gitops.network_policies: the chart's policies admitted every pod).
    ARGOCD_CONTROLLER: {"TCP 8082": frozenset({PROMETHEUS})},
    # Redis (the cache, behind Pulumi's password) from the server, the repo server and the controller alone.
    ARGOCD_REDIS: {"TCP 6379": frozenset({ARGOCD_CONTROLLER, ARGOCD_REPO_SERVER, ARGOCD_SERVER})},
    # The repo server (it renders every Application's manifests) from Argo CD's own components alone; its metrics as above.
    ARGOCD_REPO_SERVER: {
        "TCP 8081": frozenset({ARGOCD_CONTROLLER, ARGOCD_APPSET, ARGOCD_NOTIFICATIONS, ARGOCD_SERVER}),
        "TCP 8084": frozenset({PROMETHEUS}),
    },
    # The server is for everyone (its gateway's route, the CLI) on its own port (8080); its metrics (8083) from
    # Prometheus alone, which the chart admitted from everyone with every other port. The analyzer groups Prometheus's
    # row apart. The ApplicationSet controller has no row: it admits nothing (the default deny; its chart renders no
    # policy of its own without metrics or a webhook, and nothing needs to reach it).
    ARGOCD_SERVER: {"TCP 8080,8083": frozenset({PROMETHEUS}), "TCP 8080": _pods_but(ARDA_WORKLOADS, ARGOCD_SERVER, PROMETHEUS) | {OUTSIDE}},
    ATTACKER: {ALL: EVERY},
    # The drills and the etcd backup listen on nothing; open because no policy selects them.
    "backup-drill/drill-etcd-ainur[CronJob]": {ALL: EVERY},
    "backup-drill/drill-etcd-arda[CronJob]": {ALL: EVERY},
    "backup-drill/drill-kms-key[CronJob]": {ALL: EVERY},
    "etcd-backup/kms-key-backup[CronJob]": {ALL: EVERY},
    "etcd-backup/talos-backup[CronJob]": {ALL: EVERY},
    "home-automation/drill-home-assistant-config[CronJob]": {ALL: EVERY},
    "home-automation/drill-mosquitto-data[CronJob]": {ALL: EVERY},
    "selfhosted/drill-backups-minecraft-0[CronJob]": {ALL: EVERY},
    "media/drill-jellyfin-config[CronJob]": {ALL: EVERY},
    # The cluster's DNS: 53 (UDP and TCP) from everyone, the host-network pods and the machines included; its metrics
    # (9153) from Prometheus alone (plans.coredns.network_policy). The analyzer groups Prometheus's row apart.
    "kube-system/coredns[Deployment]": {
        "TCP 53,9153,UDP 53": frozenset({PROMETHEUS}),
        "TCP 53,UDP 53": _pods_but(ARDA_WORKLOADS, "kube-system/coredns[Deployment]", PROMETHEUS) | {OUTSIDE},
    },
    # Alertmanager: Prometheus, and vmalert-logs by the stack's patch (plans.monitoring, the logs' alerts).
    "monitoring/alertmanager-main[StatefulSet]": {
        "TCP 8080,9093": frozenset({PROMETHEUS}),
        "TCP 9093": frozenset({"monitoring/vmalert-logs[Deployment]"}),
    },
    "monitoring/blackbox-exporter[Deployment]": {"TCP 9115,19115": frozenset({PROMETHEUS})},
    # FINDING: the stack's patch admits the whole `networking` namespace to Grafana for the gateways' proxies (Envoy
    # Gateway runs them in the Gateway's namespace), so cloudflared reaches Grafana's 3000 directly too, past the routes.
    "monitoring/grafana[Deployment]": {"TCP 3000": frozenset({PROMETHEUS, "networking/cloudflared[Deployment]"})},
    "monitoring/kube-state-metrics[Deployment]": {"TCP 8443,9443": frozenset({PROMETHEUS})},
    # FINDING (issue #54, finding 3): the log collector has no policy: every pod and 0.0.0.0/0 reach it on every port.
    # It runs on the host network, where no pod policy would apply anyway (its listeners answer on each node's address).
    "monitoring/log-collector[DaemonSet]": {ALL: EVERY},
    # Prometheus only, as the analyzer models it. But node-exporter runs on the host network (kube-prometheus), where the
    # cluster's network applies no pod policy: anything that reaches a node reaches :9100. The analyzer cannot see that.
    "monitoring/node-exporter[DaemonSet]": {"TCP 9100": frozenset({PROMETHEUS})},
    # The metrics API adapter: Prometheus' scrape (kube-prometheus' own policy, patched from admitting everything), and
    # the API server from a control plane's host (a CiliumNetworkPolicy's host and remote-node entities, the machines'
    # addresses here), on 6443 alone (plans.monitoring.adapter_api_server_policy). A host-network pod of Arda is such
    # traffic too (docs/security.md).
    "monitoring/prometheus-adapter[Deployment]": {"TCP 6443": frozenset({PROMETHEUS, "192.168.0.21-192.168.0.23", "192.168.0.31-192.168.0.32"})},
    "monitoring/prometheus-k8s[StatefulSet]": {
        "TCP 9090": frozenset({"monitoring/grafana[Deployment]", "monitoring/prometheus-adapter[Deployment]"})
    },
    "monitoring/prometheus-operator[Deployment]": {"TCP 8443": frozenset({PROMETHEUS})},
    # The log store: its readers (Grafana, Prometheus' scrape, vmalert-logs) on the store's 9428 alone; its writers, the
    # host-network collectors on Arda's machines and the Pis through the LAN Service (the CiliumNetworkPolicy's host and
    # remote-node entities and the Pis' addresses), on its inserter's 9429 alone, which takes inserts and answers no
    # query. A host-network pod on Arda or a Pi, or a device that takes a machine's or a Pi's address, can write; a pod of
    # the Ainur is dropped by its Pi before flannel masquerades it to the Pi's address (plans.logs.talos_firewall;
    # docs/security.md).
    "monitoring/victoria-logs[StatefulSet]": {
        "TCP 9428": frozenset({"monitoring/grafana[Deployment]", "monitoring/prometheus-k8s[StatefulSet]", "monitoring/vmalert-logs[Deployment]"}),
        "TCP 9429": frozenset({"192.168.0.11-192.168.0.13", "192.168.0.21-192.168.0.23", "192.168.0.31-192.168.0.32"}),
    },
    # The log alerts' evaluator: Prometheus' scrape of its metrics alone.
    "monitoring/vmalert-logs[Deployment]": {"TCP 8880": frozenset({PROMETHEUS})},
    # cloudflared has no row: it admits nothing (it only dials out; plans.cloudflare.cloudflared_network_policy).
}

# The Ainur (k3s' kube-router enforces the policies, plans.netpol): a default deny in each namespace the program owns
# (identity, netboot, remote-access, Argo CD's) and each listener's exact allows. No row: admits nothing.
AINUR: dict[str, dict[str, str | frozenset[str]]] = {
    OUTSIDE: {ALL: EVERY},
    # Argo CD's seed, as on Arda (no notifications on the Ainur), with no Prometheus: its metrics admit no one (the
    # controller has no row).
    ARGOCD_REDIS: {"TCP 6379": frozenset({ARGOCD_CONTROLLER, ARGOCD_REPO_SERVER, ARGOCD_SERVER})},
    ARGOCD_REPO_SERVER: {"TCP 8081": frozenset({ARGOCD_CONTROLLER, ARGOCD_APPSET, ARGOCD_SERVER})},
    # The front door passes its https to the server by name (plans.identity.front_door_conf), on its own port alone;
    # its metrics (8083) admit no one.
    ARGOCD_SERVER: {"TCP 8080": EVERY},
    ATTACKER: {ALL: EVERY},
    # Dex from the front door alone, on its https; its telemetry only the kubelet reaches (its own node).
    "identity/dex[Deployment]": {"TCP 5556": frozenset({"identity/front-door[Deployment]"})},
    # The front door is for everyone, on its two listeners only.
    "identity/front-door[Deployment]": {"TCP 8080,8443": EVERY},
    # The KMS (plans.kms): the Arda machines' addresses alone, on its port alone; no pod of the Ainur reaches it.
    "kms/kms[DaemonSet]": {"TCP 4050": frozenset({"192.168.0.21-192.168.0.23", "192.168.0.31-192.168.0.32"})},
    # Host network, where kube-router applies no policy (plans.netpol): open as the analyzer says, and in truth to
    # whatever reaches the Pi. The netboot pod (dnsmasq, nginx) likewise, though the analyzer, modelling it as a pod
    # under the netboot namespace's default deny, gives it no row.
    "kube-system/kube-vip-services[DaemonSet]": {ALL: EVERY},
    "monitoring/log-collector[DaemonSet]": {ALL: EVERY},
    "monitoring/node-exporter[DaemonSet]": {ALL: EVERY},
    # Longhorn (plans.storage.longhorn_network_policies): the managers' API, which deletes volumes and reads the backup
    # target's credentials, from the UI, the CSI plugin and the driver deployer alone (the managers among themselves
    # too, which the analyzer does not list); the admission webhook (9502) from anywhere, as the API server calls it
    # from a server's host; the recovery backend (9503) from the share managers alone. The engines and replicas (the
    # instance managers) from the managers. The UI admits no one (`kubectl port-forward` enters its pod). Open: the CSI
    # plugin and the driver deployer listen on nothing but the CSI plugin's health (9808); a share manager (only for a
    # ReadWriteMany volume, which the program makes none of) serves NFS to the nodes' hosts, which no pod selector names.
    LONGHORN_MANAGER: {
        ALL: frozenset({LONGHORN_UI, LONGHORN_CSI_PLUGIN, LONGHORN_DRIVER_DEPLOYER}),
        "TCP 9502": _pods_but(AINUR_WORKLOADS, LONGHORN_MANAGER, LONGHORN_UI, LONGHORN_CSI_PLUGIN, LONGHORN_DRIVER_DEPLOYER, LONGHORN_SHARE_MANAGER)
        | {OUTSIDE},
        "TCP 9502-9503": frozenset({LONGHORN_SHARE_MANAGER}),
    },
    LONGHORN_INSTANCE_MANAGER: {ALL: frozenset({LONGHORN_MANAGER})},
    LONGHORN_CSI_PLUGIN: {ALL: EVERY},
    LONGHORN_DRIVER_DEPLOYER: {ALL: EVERY},
    LONGHORN_SHARE_MANAGER: {ALL: EVERY},
    # A support bundle's manager (every Longhorn log and object of the namespace, while a bundle exists) from the
    # managers, which fetch its status and file, and its agents, which post their nodes' bundles, on its port alone.
    # The agents listen on nothing; open because no policy selects them.
    LONGHORN_BUNDLE_MANAGER: {"TCP 8080": frozenset({LONGHORN_MANAGER, LONGHORN_BUNDLE_AGENT})},
    LONGHORN_BUNDLE_AGENT: {ALL: EVERY},
    # The Git mirror: git:// from the Ainur's Argo CD (its repo server) and the LAN's clients it serves (Arda's Argo CD
    # among them): the LAN less the Pis (11-13) and the addresses kube-vip holds on them (10, 14, 15), which stand for
    # every pod of a Pi (tools.netpol_check.through_nodes). Not the attacker, nor any other pod of the Ainur, nor the
    # netboot cache beside it (which listens on nothing: no row).
    "netboot/git-mirror[Deployment]": {"TCP 9418": frozenset({"192.168.0.0-192.168.0.9", "192.168.0.16-192.168.0.255", ARGOCD_REPO_SERVER})},
}
MIRROR = "netboot/git-mirror[Deployment]"


ATTACKER_OBJECTS = (
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "attacker"}},
    {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "attacker", "namespace": "attacker"},
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": "attacker"}},
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": "attacker"}},
                "spec": {"containers": [{"name": "attacker", "image": "stand-in", "ports": [{"containerPort": 8000, "protocol": "TCP"}]}]},
            },
        },
    },
)


@functools.cache
def _objects(cluster: str) -> tuple[dict[str, Any], ...]:
    """The cluster's objects and the attacker's, once per test process (kube-prometheus's build and Argo CD's render
    are the costly part); nothing changes them."""
    return (*netpol_check.cluster_objects(simulated(HOMELAB), cluster, _addresses(cluster)), *ATTACKER_OBJECTS)


def _addresses(cluster: str) -> list[str]:
    """The cluster's machines' addresses: what a CiliumNetworkPolicy's `host` and `remote-node` entities stand for."""
    stack = load_stack_file(HOMELAB)
    return [str(n.ip) for n in (stack.arda_nodes if cluster == "arda" else stack.ainur_nodes)]


@functools.cache
def _analysis(cluster: str) -> Analysis:
    """One analyzer run per cluster per test process."""
    return netpol_check.analyze(_objects(cluster))


def _rows(found: dict[str, dict[str, str | frozenset[str]]]) -> list[tuple[str, str, str]]:
    return sorted((dst, conn, srcs if isinstance(srcs, str) else ", ".join(sorted(srcs))) for dst, row in found.items() for conn, srcs in row.items())


@pytest.mark.parametrize(("cluster", "expected"), [("arda", ARDA), ("ainur", AINUR)])
def test_the_matrix_is_the_one_written_here(cluster: str, expected: dict[str, dict[str, str | frozenset[str]]]) -> None:
    found = netpol_check.matrix(_analysis(cluster))
    extra = sorted(set(_rows(found)) - set(_rows(expected)))
    missing = sorted(set(_rows(expected)) - set(_rows(found)))
    assert (extra, missing) == ([], []), f"{cluster}: paths the analyzer found that the test does not list: {extra}; listed but not found: {missing}"


def test_the_analyzer_read_every_workload_and_said_what_it_lacked() -> None:
    assert set(_analysis("ainur").peers) == AINUR_WORKLOADS
    assert _analysis("ainur").warnings == ()
    assert set(_analysis("arda").peers) == ARDA_WORKLOADS
    assert _analysis("arda").warnings == ()


@pytest.mark.parametrize(("cluster", "workloads"), [("arda", ARDA_WORKLOADS), ("ainur", AINUR_WORKLOADS)])
def test_the_attacker_reaches_only_what_every_pod_or_every_address_may(cluster: str, workloads: frozenset[str]) -> None:
    """The attacker pod, in a namespace of its own, reaches a workload only where its row admits every pod: the open
    ones the matrices name (egress, the public front doors, DNS, host-network listeners, metrics), nothing else."""
    found = netpol_check.matrix(_analysis(cluster))
    reached = sorted(
        (dst, conn) for dst, row in found.items() for conn, srcs in row.items() if dst != ATTACKER and (srcs == EVERY or ATTACKER in srcs)
    )
    expected = {
        "arda": [
            (OUTSIDE, ALL),
            (ARGOCD_SERVER, "TCP 8080"),
            *((d, ALL) for d in sorted(workloads) if "drill" in d or "backup" in d),
            ("kube-system/coredns[Deployment]", "TCP 53,UDP 53"),
            ("monitoring/log-collector[DaemonSet]", ALL),
        ],
        "ainur": [
            (OUTSIDE, ALL),
            (ARGOCD_SERVER, "TCP 8080"),
            ("identity/front-door[Deployment]", "TCP 8080,8443"),
            ("kube-system/kube-vip-services[DaemonSet]", ALL),
            (LONGHORN_MANAGER, "TCP 9502"),
            (LONGHORN_CSI_PLUGIN, ALL),
            (LONGHORN_DRIVER_DEPLOYER, ALL),
            (LONGHORN_SHARE_MANAGER, ALL),
            (LONGHORN_BUNDLE_AGENT, ALL),
            ("monitoring/log-collector[DaemonSet]", ALL),
            ("monitoring/node-exporter[DaemonSet]", ALL),
        ],
    }[cluster]
    assert reached == sorted(expected)


def test_only_longhorns_own_components_reach_its_managers_api() -> None:
    """Longhorn's API (9500) deletes volumes and reads the backup target's credentials: no pod of the Ainur but
    Longhorn's UI, CSI plugin and driver deployer reaches it, nor any address; its UI, which proxies it, no one."""
    found = netpol_check.matrix(_analysis("ainur"))
    api = {srcs for conn, srcs in found[LONGHORN_MANAGER].items() if conn == ALL or "9500" in conn}
    assert api == {frozenset({LONGHORN_UI, LONGHORN_CSI_PLUGIN, LONGHORN_DRIVER_DEPLOYER})}
    assert LONGHORN_UI not in found
    assert found[LONGHORN_INSTANCE_MANAGER] == {ALL: frozenset({LONGHORN_MANAGER})}


def test_argo_cds_metrics_admit_prometheus_alone_where_it_scrapes_them() -> None:
    """Argo CD's metrics listeners (the controller's 8082, the server's 8083, the repo server's 8084, notifications'
    9001) from Arda's Prometheus alone, and from no one on the Ainur, which has none: not every pod, as the chart's own
    policies have it. The server's own port stays open to everyone."""
    arda, ainur = netpol_check.matrix(_analysis("arda")), netpol_check.matrix(_analysis("ainur"))
    assert arda[ARGOCD_SERVER] == {
        "TCP 8080,8083": frozenset({PROMETHEUS}),
        "TCP 8080": _pods_but(ARDA_WORKLOADS, ARGOCD_SERVER, PROMETHEUS) | {OUTSIDE},
    }
    assert ainur[ARGOCD_SERVER] == {"TCP 8080": EVERY}
    assert arda[ARGOCD_CONTROLLER] == {"TCP 8082": frozenset({PROMETHEUS})}
    assert arda[ARGOCD_REPO_SERVER]["TCP 8084"] == frozenset({PROMETHEUS})
    assert ARGOCD_NOTIFICATIONS not in arda and ARGOCD_CONTROLLER not in ainur
    assert not any("8084" in conn for conn in ainur[ARGOCD_REPO_SERVER])


# kube-router's network policy controller as k3s embeds it: k3s' go.mod replaces github.com/cloudnativelabs/kube-router/v2
# with its fork at this release on its 1.33 to 1.36 lines (the Go module proxy does not serve k3s' own module, so
# v1.35.8+k3s1's go.mod is not read here); pinned in tools/upstream/modules.sum.
KUBE_ROUTER = ("github.com/k3s-io/kube-router/v2", "v2.6.3-k3s1")
KUBE_ROUTER_OF_K3S = "v1.35.8+k3s1"
# The rule kube-router puts first in every pod's firewall chain (pkg/controllers/netpol/pod.go:230-232), before the
# chain's policies: whatever comes from an address of the pod's own node is accepted, on every port.
OWN_NODE_RULE = (
    '\t\tcomment := "\\"rule to permit the traffic traffic to pods when source is the pod\'s local node\\""\n'
    '\t\targs := []string{"-I", podFwChainName, "1", "-m", "comment", "--comment", comment,\n'
    '\t\t\t"-m", "addrtype", "--src-type", "LOCAL", "-d", ip, "-j", "ACCEPT", "\\n"}\n'
)
# The Ainur's host-network pods: each is its Pi's own address, so each passes every policy of every pod on its Pi.
AINUR_HOST_NETWORK = [
    "kube-system/kube-vip-services[DaemonSet]",
    "monitoring/log-collector[DaemonSet]",
    "monitoring/node-exporter[DaemonSet]",
    "netboot/netboot[Deployment]",
]


def test_a_host_network_pod_of_a_pi_passes_every_policy_of_the_pods_on_its_pi() -> None:
    """Open by design (docs/security.md): kube-router admits a pod's own node before any NetworkPolicy, so the kubelet's
    probes pass, and with them every host-network pod of that Pi, on every port: the matrix above, which reads the
    policies alone, leaves it out. Pinned here from kube-router's source and the Ainur's host-network pods, so that a
    k3s whose controller differs, or a new host-network pod, is seen."""
    assert pins.K3S == KUBE_ROUTER_OF_K3S, f"k3s {pins.K3S}: read its kube-router's pod firewall again and pin it here"
    source = modules.module_dir(*KUBE_ROUTER) / "pkg" / "controllers" / "netpol"
    pod = source.joinpath("pod.go").read_text()
    assert pod.splitlines(keepends=True)[229:232] == OWN_NODE_RULE.splitlines(keepends=True)
    # And no policy at all for a host-network pod itself (utils.go:40-42): its listeners answer whatever reaches its Pi.
    assert 'return !isFinished(pod) && pod.Status.PodIP != "" && !pod.Spec.HostNetwork\n' in source.joinpath("utils.go").read_text()
    host_network = sorted(
        f"{o['metadata']['namespace']}/{o['metadata']['name']}[{o['kind']}]"
        for o in _objects("ainur")
        if o["kind"] in ("Deployment", "DaemonSet", "StatefulSet") and o["spec"]["template"]["spec"].get("hostNetwork")
    )
    assert host_network == AINUR_HOST_NETWORK


def test_only_longhorns_managers_and_its_agents_reach_a_support_bundles_manager() -> None:
    """A support bundle (every Longhorn log and object of its namespace) from its manager's port alone, and only by
    Longhorn's managers and the bundle's agents: not the attacker, not every pod as with no policy."""
    found = netpol_check.matrix(_analysis("ainur"))
    assert found[LONGHORN_BUNDLE_MANAGER] == {"TCP 8080": frozenset({LONGHORN_MANAGER, LONGHORN_BUNDLE_AGENT})}


def test_no_pod_reaches_the_metrics_api_adapter_but_prometheus() -> None:
    """The metrics API adapter (an aggregated API of the API server) from Prometheus' scrape and the machines' own
    traffic (the control planes' API server) alone: not the attacker, not every pod as kube-prometheus has it."""
    found = netpol_check.matrix(_analysis("arda"))
    assert found["monitoring/prometheus-adapter[Deployment]"] == {
        "TCP 6443": frozenset({PROMETHEUS, "192.168.0.21-192.168.0.23", "192.168.0.31-192.168.0.32"})
    }


def test_a_pi_address_a_policy_admits_stands_for_every_pod_of_the_ainur() -> None:
    """A pod of the Ainur that dials a NodePort on another Pi, or a LAN host that forwards, arrives from its own Pi's
    address (flannel's masquerade, plans.netpol): a rule whose ipBlock holds a Pi admits every pod. The mirror's policy
    as it was, the whole LAN, is analysed so: the attacker reaches the mirror."""
    objects = [o for o in _objects("ainur") if not (o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "git-mirror")]
    [mirror] = [o for o in _objects("ainur") if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "git-mirror"]
    whole_lan = copy.deepcopy(mirror)
    [rule] = whole_lan["spec"]["ingress"]
    rule["from"] = [*(p for p in rule["from"] if "ipBlock" not in p and p != netpol_check.EVERY_POD), {"ipBlock": {"cidr": "192.168.0.0/24"}}]
    found = netpol_check.matrix(netpol_check.analyze([*objects, netpol_check.through_nodes(whole_lan, _addresses("ainur"))]))
    assert found[MIRROR] == {"TCP 9418": _pods_but(AINUR_WORKLOADS, MIRROR) | {"192.168.0.0-192.168.0.255"}}
    # The mirror's own policy holds no Pi: it reads as written.
    assert netpol_check.through_nodes(mirror, _addresses("ainur")) == mirror


def test_a_rule_holding_no_node_address_is_left_as_written() -> None:
    policy: dict[str, Any] = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "p", "namespace": "n"},
        "spec": {
            "podSelector": {},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"from": [{"ipBlock": {"cidr": "192.168.0.0/24", "except": ["192.168.0.8/29"]}}]},  # 8-15: the Pi excepted
                {"from": [{"ipBlock": {"cidr": "192.168.0.11/32"}}], "ports": [{"port": 1, "protocol": "TCP"}]},  # the Pi
                {"ports": [{"port": 2, "protocol": "TCP"}]},  # from anywhere: every pod already
            ],
        },
    }
    through = netpol_check.through_nodes(policy, ["192.168.0.11"])
    assert through["spec"]["ingress"] == [
        policy["spec"]["ingress"][0],
        {"from": [{"ipBlock": {"cidr": "192.168.0.11/32"}}, {"namespaceSelector": {}}], "ports": [{"port": 1, "protocol": "TCP"}]},
        policy["spec"]["ingress"][2],
    ]


def test_no_load_balancer_of_the_ainur_opens_a_node_port() -> None:
    """kube-vip announces the Ainur's LoadBalancer addresses; a NodePort would open each Service on every Pi's own
    address, where a pod of another Pi arrives as its Pi (plans.netpol). None allocates one."""
    services = [o for o in _objects("ainur") if o["kind"] == "Service" and o["spec"].get("type") == "LoadBalancer"]
    found = {f"{o['metadata']['namespace']}/{o['metadata']['name']}": o["spec"].get("allocateLoadBalancerNodePorts") for o in services}
    assert found == {"identity/front-door": False, "netboot/git-mirror": False, "netboot/netboot": False}


CLOUDFLARED = "networking/cloudflared[Deployment]"
SCRAPER = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
}


def _cloudflared_policy(**spec: Any) -> dict[str, Any]:
    """A policy the program does not have, on cloudflared (its metrics on 2000), which its own policy closes: policies
    add up, so this one's allows are the pod's."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "test-cloudflared", "namespace": "networking"},
        "spec": {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "cloudflared"}}, "policyTypes": ["Ingress"], **spec},
    }


def test_a_policy_the_program_would_add_shows_up_as_the_rows_it_changes() -> None:
    """The harness sees a policy change: cloudflared behind a policy admitting only Prometheus on 2000."""
    objects = _objects("arda")
    [tunnel] = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "cloudflared"]
    assert tunnel["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] == "cloudflared"
    rule = {"from": [SCRAPER], "ports": [{"port": 2000, "protocol": "TCP"}]}
    found = netpol_check.matrix(netpol_check.analyze([*objects, _cloudflared_policy(ingress=[rule])]))
    assert found[CLOUDFLARED] == {"TCP 2000": frozenset({PROMETHEUS})}
    assert {k: v for k, v in found.items() if k != CLOUDFLARED} == {
        k: v for k, v in netpol_check.matrix(_analysis("arda")).items() if k != CLOUDFLARED
    }


def test_a_policy_the_analyzer_cannot_evaluate_fails_the_check_naming_it() -> None:
    objects = _objects("arda")
    bad = _cloudflared_policy(ingress=[{"ports": [{"port": "metrics", "endPort": 2100, "protocol": "TCP"}]}])
    with pytest.raises(NetpolCheckError, match="test-cloudflared"):
        netpol_check.analyze([*objects, bad])


def _writers(**rule: Any) -> dict[str, Any]:
    return {
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumNetworkPolicy",
        "metadata": {"name": "test-cloudflared-scrapers", "namespace": "networking"},
        "spec": {
            "endpointSelector": {"matchLabels": {"app.kubernetes.io/name": "cloudflared"}},
            "ingress": [{**rule, "toPorts": [{"ports": [{"port": "2000", "protocol": "TCP"}]}]}],
        },
    }


def test_a_cilium_policy_counts_with_the_machines_addresses_for_the_host_entities() -> None:
    """A CiliumNetworkPolicy admitting host-network pods (`host`, `remote-node`) and one address, beside a
    NetworkPolicy admitting Prometheus: cloudflared then takes 2000 from those and no other."""
    pods = {"from": [SCRAPER], "ports": [{"port": 2000, "protocol": "TCP"}]}
    cilium = netpol_check.from_cilium(_writers(fromEntities=["host", "remote-node"], fromCIDR=["192.168.0.200/32"]), _addresses("arda"))
    found = netpol_check.matrix(netpol_check.analyze([*_objects("arda"), _cloudflared_policy(ingress=[pods]), cilium]))
    assert _addresses("arda") == ["192.168.0.21", "192.168.0.22", "192.168.0.23", "192.168.0.31", "192.168.0.32"]
    machines = {"192.168.0.21-192.168.0.23", "192.168.0.31-192.168.0.32"}  # adjacent addresses joined (matrix)
    assert found[CLOUDFLARED] == {"TCP 2000": frozenset({PROMETHEUS, "192.168.0.200-192.168.0.200", *machines})}
    # The ranges the policies name split 0.0.0.0/0 for the analyzer; joined again, the other rows read as before.
    assert found["monitoring/log-collector[DaemonSet]"] == {ALL: EVERY}
    assert found["kube-system/coredns[Deployment]"] == ARDA["kube-system/coredns[Deployment]"]


@pytest.mark.parametrize(
    ("rule", "refused"),
    [
        ({"fromEntities": ["world"]}, "the entities ['world'] are not translated"),
        (
            {"fromEndpoints": [{"matchLabels": {"k8s:io.cilium.k8s.policy.serviceaccount": "prometheus"}}]},
            "fromEndpoints selecting by ['k8s:io.cilium.k8s.policy.serviceaccount']",
        ),
        ({"fromEndpoints": [{"matchExpressions": [{"key": "a", "operator": "Exists"}]}]}, "fromEndpoints selecting by ['matchExpressions']"),
        ({"fromFQDNs": [{"matchName": "example.com"}]}, "['fromFQDNs'] is not translated"),
    ],
)
def test_a_cilium_rule_the_translation_cannot_keep_is_refused_naming_it(rule: dict[str, Any], refused: str) -> None:
    with pytest.raises(NetpolCheckError, match=f"^CiliumNetworkPolicy networking/test-cloudflared-scrapers: {re.escape(refused)}"):
        netpol_check.from_cilium(_writers(**rule), ["192.168.0.10"])


def test_a_clusterwide_cilium_policy_is_refused_rather_than_left_out_of_the_matrix() -> None:
    sim = simulated(HOMELAB)
    [i] = [
        i for i, r in enumerate(sim.registrations) if r.type == "kubernetes:apps/v1:StatefulSet" and r.inputs["metadata"]["name"] == "victoria-logs"
    ]
    policy = {"metadata": {"name": "victoria-logs"}}
    sim.registrations[i] = dataclasses.replace(sim.registrations[i], type="kubernetes:cilium.io/v2:CiliumClusterwideNetworkPolicy", inputs=policy)
    refused = "arda: netpol-analyzer evaluates Kubernetes' NetworkPolicies only, not CiliumClusterwideNetworkPolicy /victoria-logs: the matrix would leave them out"
    with pytest.raises(NetpolCheckError, match=f"^{re.escape(refused)}$"):
        netpol_check.cluster_objects(sim, "arda")


def test_a_clusterwide_policy_that_only_denies_egress_to_addresses_is_left_out_and_any_more_refused() -> None:
    """Arda's policy keeping pods from the Ainur's KMS only takes reach away: the matrix without it shows more, never less.
    The same policy allowing anything, isolating pods or denying towards pods is refused as before."""
    sim = simulated(HOMELAB)
    [deny] = [r for r in sim.registrations if r.type == "kubernetes:cilium.io/v2:CiliumClusterwideNetworkPolicy"]
    policy = {"metadata": deny.inputs["metadata"], "spec": deny.inputs["spec"]}
    assert netpol_check.only_denies_outside(policy)
    assert "CiliumClusterwideNetworkPolicy" not in {o["kind"] for o in netpol_check.cluster_objects(sim, "arda")}
    changes: list[dict[str, Any]] = [
        {"enableDefaultDeny": {"egress": True, "ingress": False}},
        {"ingress": [{"fromEntities": ["world"]}]},
        {"egressDeny": [{"toEndpoints": [{}]}]},
        {"egressDeny": []},
    ]
    for change in changes:
        assert not netpol_check.only_denies_outside({**policy, "spec": {**policy["spec"], **change}}), change
