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

import dataclasses
import functools
import re
from typing import Any

import pytest

from stacks import load_stack_file
from tests.edit import HOMELAB
from tests.sims import simulated
from tools import netpol_check
from tools.netpol_check import EVERY, OUTSIDE, Analysis, NetpolCheckError

ALL = "All Connections"
PROMETHEUS = "monitoring/prometheus-k8s[StatefulSet]"

# Arda: kube-prometheus's own policies (with the stack's two patches) are the only NetworkPolicies; nothing else the
# program runs there has one, so each of those is open to every pod and, as the analyzer models it, to 0.0.0.0/0.
ARDA: dict[str, dict[str, str | frozenset[str]]] = {
    # Egress: no policy of the cluster limits it (kube-prometheus's allow all egress): every pod reaches every address.
    OUTSIDE: {ALL: EVERY},
    # The drills and the etcd backup listen on nothing; open because no policy selects them.
    "backup-drill/drill-etcd-ainur[CronJob]": {ALL: EVERY},
    "backup-drill/drill-etcd-arda[CronJob]": {ALL: EVERY},
    "etcd-backup/talos-backup[CronJob]": {ALL: EVERY},
    "home-automation/drill-home-assistant-config[CronJob]": {ALL: EVERY},
    "media/drill-jellyfin-config[CronJob]": {ALL: EVERY},
    # FINDING: the cluster's DNS is open on every port, not only 53/UDP+TCP (and 9153 metrics to Prometheus).
    "kube-system/coredns[Deployment]": {ALL: EVERY},
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
    # FINDING: kube-prometheus's own policy admits everything to the metrics API adapter (the API server must reach it).
    "monitoring/prometheus-adapter[Deployment]": {ALL: EVERY},
    "monitoring/prometheus-k8s[StatefulSet]": {
        "TCP 9090": frozenset({"monitoring/grafana[Deployment]", "monitoring/prometheus-adapter[Deployment]"})
    },
    "monitoring/prometheus-operator[Deployment]": {"TCP 8443": frozenset({PROMETHEUS})},
    # The log store: its readers (Grafana, Prometheus' scrape, vmalert-logs) and its writers, the host-network collectors
    # on Arda's machines and the Pis through the LAN Service (the CiliumNetworkPolicy's host and remote-node entities and
    # the Pis' addresses), on 9428 alone. Still no authentication: a host-network pod on Arda, or a device that takes a
    # machine's or a Pi's address, can write (docs/security.md).
    "monitoring/victoria-logs[StatefulSet]": {
        "TCP 9428": frozenset(
            {
                "192.168.0.11-192.168.0.13",
                "192.168.0.21-192.168.0.23",
                "192.168.0.31-192.168.0.32",
                "monitoring/grafana[Deployment]",
                "monitoring/prometheus-k8s[StatefulSet]",
                "monitoring/vmalert-logs[Deployment]",
            }
        )
    },
    # The log alerts' evaluator: Prometheus' scrape of its metrics alone.
    "monitoring/vmalert-logs[Deployment]": {"TCP 8880": frozenset({PROMETHEUS})},
    # FINDING: the tunnel's connector has no policy (its metrics listener is open to every pod).
    "networking/cloudflared[Deployment]": {ALL: EVERY},
}

# FINDING: the Ainur have no NetworkPolicy but the KMS's: every pod and 0.0.0.0/0 reach every other workload on every
# port, Dex and the front door, the netboot server, its cache and the Git mirror (the Pis' NFS roots' neighbours) included.
AINUR_WORKLOADS = (
    "identity/dex[Deployment]",
    "identity/front-door[Deployment]",
    "kube-system/kube-vip-services[DaemonSet]",
    "monitoring/log-collector[DaemonSet]",
    "monitoring/node-exporter[DaemonSet]",
    "netboot/git-mirror[Deployment]",
    "netboot/netboot-cache[DaemonSet]",
    "netboot/netboot[Deployment]",
)
AINUR: dict[str, dict[str, str | frozenset[str]]] = {dst: {ALL: EVERY} for dst in (OUTSIDE, *AINUR_WORKLOADS)}
# The KMS (plans.kms): the Arda machines' addresses alone, on its port alone; no pod of the Ainur reaches it.
AINUR["kms/kms[DaemonSet]"] = {"TCP 4050": frozenset({"192.168.0.21-192.168.0.23", "192.168.0.31-192.168.0.32"})}


@functools.cache
def _objects(cluster: str) -> tuple[dict[str, Any], ...]:
    """The cluster's objects, once per test process (kube-prometheus's build is the costly part); nothing changes them."""
    return tuple(netpol_check.cluster_objects(simulated(HOMELAB), cluster, _addresses(cluster)))


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
    assert sorted(_analysis("ainur").peers) == sorted([*AINUR_WORKLOADS, "kms/kms[DaemonSet]"])
    assert _analysis("ainur").warnings == ()
    assert set(_analysis("arda").peers) == set(ARDA) - {OUTSIDE}
    assert _analysis("arda").warnings == ()


CLOUDFLARED = "networking/cloudflared[Deployment]"
SCRAPER = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
}


def _cloudflared_policy(**spec: Any) -> dict[str, Any]:
    """A policy the program does not have, on a workload no policy selects today (cloudflared: its metrics on 2000)."""
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
    assert found["kube-system/coredns[Deployment]"] == {ALL: EVERY}


@pytest.mark.parametrize(
    ("rule", "refused"),
    [
        ({"fromEntities": ["world"]}, "the entities ['world'] are not translated"),
        (
            {"fromEndpoints": [{"matchLabels": {"k8s:io.kubernetes.pod.namespace": "networking"}}]},
            "fromEndpoints selecting by ['k8s:io.kubernetes.pod.namespace']",
        ),
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
