"""Arda under the mock runtime: the resource graph, bring-up order, secrets and day-2 changes."""

from __future__ import annotations

import copy
import itertools
import json
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.arda import patches_digest
from iluvatar import simulate as simulate_module
from iluvatar.simulate import SecretValue, Simulation, _talos_urls, simulate
from plans import monitoring as monitoring_plan
from plans import netboot as netboot_plan
from plans import storage as storage_plan
from plans import talos as plan
from stacks import load_stack_file, read_stack_file
from tests import talos_provider
from tests.edit import HOMELAB, RK1, edit, homelab_doc, write_stack
from tests.plans.test_imagefactory import BOARD_IDS
from tests.sims import simulated

COMMAND = "command:local:Command"
PAUSE = "StatefulSet/argocd/argocd-application-controller"
SNAPSHOT = ".iluvatar/snapshots/arda-etcd-before-rollout.db"
NODES = ("taniquetil", "tirion", "alqualonde", "gandalf", "saruman")
# The aggregates that list machines: the DHCP config, the iPXE scripts, the served configs, and
# the netboot pod's digest annotation that restarts it when any of them change.
# The netboot pod's template carries its config's digest, so the clearance before its replacement runs again too, and so
# does the DHCP probe before anything dnsmasq reads changes (plans.netboot.dhcp_probe).
# The homelab's dnsmasq.conf's ConfigMap, named by its content (plans.netboot.base.dnsmasq_configmap).
CONF = netboot_plan.dnsmasq_configmap(netboot_plan.dnsmasq_conf(load_stack_file(HOMELAB)))
NETBOOT_AGGREGATES = [
    "netboot-clearance",
    "netboot-dhcp-probe",
    "netboot-configmap-ipxe",
    "netboot-configmap-netboot",
    "netboot-deployment-netboot",
    # The step before the netboot pod in dhcp mode, run again with its template (plans.netboot.dhcp_probe).
    "netboot-router-off",
    "netboot-secret-talos-configs",
]
# The gates that wait for every machine list them all.
CLUSTER_GATES = ["arda-gate-api", "arda-gate-nodes"]
# Grafana's dashboards: one file per machine's logs in one ConfigMap (plans.logs).
# vmalert's rules (a silence alert per machine) and its Deployment (their digest) too.
# The KMS admits each Arda machine's address, in its policy and its own list (plans.kms).
KMS_AGGREGATES = ["kms-configmap-kms-admitted", "kms-networkpolicy-kms"]
LOGS_AGGREGATES = [
    "monitoring-arda-configmap-grafana-dashboard-iluvatar",
    "logs-arda-configmap-vmalert-logs",
    "logs-arda-deployment-vmalert-logs",
    # The Pis' collectors name a Talos machine's kernel lines by its address: their config holds the address table.
    "logs-ainur-configmap-log-collector",
    "logs-ainur-daemonset-log-collector",
    # Each Pi's step loads the nftables set of Arda's addresses that may send Talos's lines (plans.logs.talos_firewall).
    *(f"logs-ainur-{pi}-journal-upload" for pi in ("manwe", "eonwe", "ilmare")),
]
MONITORING_CRDS = ("alertmanagerconfigs", "alertmanagers", "podmonitors", "probes", "prometheusagents", "prometheuses",
                   "prometheusrules", "scrapeconfigs", "servicemonitors", "thanosrulers")  # fmt: skip
CRD = "kubernetes:apiextensions.k8s.io/v1:CustomResourceDefinition"


def test_graph_and_parents(homelab: Simulation) -> None:
    regs = homelab.named()
    config, cluster = regs["arda-config"], regs["arda"]
    assert (config.type, cluster.type) == ("iluvatar:arda:TalosConfig", "iluvatar:arda:TalosCluster")
    assert sorted(r.name for r in homelab.children(config)) == ["arda-config-schematic-generic-x86", "arda-config-secrets", "arda-config-talos"]
    assert sorted(r.name for r in homelab.children(cluster)) == sorted(
        ["arda-command", "arda-bootstrap", "arda-gate-api", "arda-kubeconfig", "arda-kubernetes", "arda-cilium", "arda-coredns", "arda-gate-nodes"]
        # With monitoring: the Prometheus Operator's CRDs, one resource each, and the gate on their kinds, before Cilium.
        + [f"arda-monitoring-crds-customresourcedefinition-{kind}.monitoring.coreos.com" for kind in MONITORING_CRDS]
        + ["arda-monitoring-gate-crds"]
        + [f"arda-{n}" for n in NODES]
    )
    for node in NODES:
        component = regs[f"arda-{node}"]
        assert component.type == "iluvatar:arda:TalosNode"
        assert [(r.name, r.type) for r in homelab.children(component)] == [(f"arda-{node}-apply", COMMAND)]
    assert sorted(r.name for r in homelab.children(regs["arda-cilium"])) == [
        "arda-cilium-gate-crds",
        # No pod reaches the Ainur's KMS (plans.cilium.kms_egress_deny).
        "arda-cilium-kms-deny",
        "arda-cilium-l2-policy",
        "arda-cilium-lb-pool",
        "arda-cilium-lb-pool-iluvatar-lan-minecraft-lan",
        "arda-cilium-lb-pool-iluvatar-lan-mosquitto-lan",
        "arda-cilium-release",
    ]
    assert regs["arda-coredns"].type == "iluvatar:arda:CoreDNS"
    assert sorted(r.name for r in homelab.children(regs["arda-coredns"])) == COREDNS


# Arda's CoreDNS (plans.coredns), Talos's own objects.
COREDNS = [
    "arda-coredns-clusterrole-system:coredns",
    "arda-coredns-clusterrolebinding-system:coredns",
    "arda-coredns-configmap-coredns",
    "arda-coredns-deployment-coredns",
    "arda-coredns-networkpolicy-coredns",
    "arda-coredns-service-kube-dns",
    "arda-coredns-serviceaccount-coredns",
]


def test_the_monitoring_crds_are_plain_objects_deleted_with_arda(homelab: Simulation) -> None:
    """The Prometheus Operator's CRDs: one CustomResourceDefinition each, exactly the release's files (nothing the
    provider expands, so nothing asks Arda at preview), deleted with the cluster, each the resource the ConfigGroup
    that installed them before made (its alias), and every one before the gate on their kinds."""
    regs = homelab.named()
    # Registered as their options resolve: in name order here, as CRD_FILES is.
    crds = sorted(homelab.by_type(CRD), key=lambda r: r.name)
    assert [r.inputs for r in crds] == monitoring_plan.crds()
    assert [r.inputs["metadata"]["name"] for r in crds] == [f"{kind}.monitoring.coreos.com" for kind in MONITORING_CRDS]
    cluster = regs["arda"]
    group = "urn:pulumi:homelab::iluvatar::pulumi:pulumi:Stack$iluvatar:arda:TalosCluster$kubernetes:yaml/v2:ConfigGroup::arda-monitoring-crds"
    for reg in crds:
        crd = reg.inputs["metadata"]["name"]
        assert reg.name == f"arda-monitoring-crds-customresourcedefinition-{crd}"
        assert reg.parent == cluster.urn
        assert reg.provider.startswith(regs["arda-kubernetes"].urn + "::")
        assert reg.deleted_with == regs["arda-bootstrap"].urn
        # The SDK's own alias (the kind's former apiVersion) after the program's.
        assert reg.aliases == (f"name=arda-monitoring-crds:{crd} parentUrn={group}", f"type={CRD.replace('/v1:', '/v1beta1:')}")
        assert reg.options() == {"deletedWith": regs["arda-bootstrap"].urn}
    assert {r.urn for r in crds} <= set(regs["arda-monitoring-gate-crds"].dependencies)


def test_every_resource_uses_its_explicit_provider(homelab: Simulation) -> None:
    """Default providers are disabled; each resource must name the provider of its own cluster."""
    regs = homelab.named()
    providers = {
        "talos": "arda-config-talos",
        "command:ainur": "ainur-command",
        # Each maia's own join token's Secret (plans.agent_token), through the Ainur's provider.
        "kubernetes:ainur": "ainur-kubernetes",
        "command:arda": "arda-command",
        # The edge's and the mirror's gates run on the cluster they wait for.
        "command:edge": "arda-command",
        "command:git-mirror": "ainur-command",
        "random": "ainur-random",
        "kubernetes:arda": "arda-kubernetes",
        "kubernetes:netboot": "ainur-kubernetes",
        "kubernetes:git-mirror": "ainur-kubernetes",
        # GitOps talks to each cluster through a provider of its own (components.gitops).
        "kubernetes:gitops-arda": "gitops-arda-kubernetes",
        "kubernetes:gitops-ainur": "gitops-ainur-kubernetes",
        "random:gitops-arda": "gitops-arda-random",
        "random:gitops-ainur": "gitops-ainur-random",
        # The edge: Arda's provider for its Kubernetes objects; its own for the CA (tls), Cloudflare and the tunnel secret.
        "kubernetes:edge": "arda-kubernetes",
        "tls:edge": "edge-certificates-tls",
        "cloudflare:edge": "edge-cloudflare-provider",
        "random:edge": "edge-cloudflare-random",
        # Storage installs through each cluster's GitOps provider.
        "kubernetes:storage-arda": "gitops-arda-kubernetes",
        "kubernetes:storage-ainur": "gitops-ainur-kubernetes",
        # Monitoring: Arda's objects through GitOps's provider (its Application's), the Pis' node-exporter through the Ainur's.
        "kubernetes:monitoring-arda": "gitops-arda-kubernetes",
        "kubernetes:monitoring-ainur": "ainur-kubernetes",
        "random:monitoring-grafana": "monitoring-random",
        # The gate before the metrics API adapter's CiliumNetworkPolicy runs on the cluster it waits for.
        "command:monitoring-gate": "arda-command",
        # Logs: the store, collector and vmalert through Arda's provider, the Pis' collector through the Ainur's, and the
        # step that points each Pi's journal at the store over the Ainur's SSH.
        "kubernetes:logs-arda": "arda-kubernetes",
        "kubernetes:logs-ainur": "ainur-kubernetes",
        "command:logs-ainur": "ainur-command",
        # The log store's storage-class gate runs on the cluster it waits for.
        "command:logs-gate": "arda-command",
        # Sign-in: each cluster's provider, and each Argo CD's own for its client secret and certificate; the local CA's certificates.
        "kubernetes:identity-arda": "arda-kubernetes",
        "kubernetes:identity-ainur": "ainur-kubernetes",
        "kubernetes:identity-arda-argocd": "gitops-arda-kubernetes",
        "kubernetes:identity-ainur-argocd": "gitops-ainur-kubernetes",
        "random:identity-client": "identity-random",
        "tls:identity-dex": "edge-certificates-tls",
        "tls:identity-argocd": "edge-certificates-tls",
        # Data safety: Arda's provider, the Ainur's for k3s's S3 credentials, its own for the generated keys.
        "kubernetes:data": "arda-kubernetes",
        "kubernetes:data-ainur": "ainur-kubernetes",
        "random:data": "data-random",
        "command:data": "arda-command",
        "command:netboot": "ainur-command",  # the clearance and kube-vip's roll, through the Ainur's command provider
        # The KMS: its objects on the Ainur, its key from a random provider of its own, its certificate from the local CA's.
        "kubernetes:kms": "ainur-kubernetes",
        "random:kms": "kms-random",
        "tls:kms": "edge-certificates-tls",
        # The log store's admin key, from a random provider of its own.
        "random:logs-store": "logs-random",
        # Longhorn's passphrase on the Ainur, from the storage layer's random provider of its own.
        "random:storage-ainur": "storage-ainur-random",
    }
    checked = 0
    for r in homelab.registrations:
        if not r.custom or r.type.startswith("pulumi:providers:"):
            continue
        package = r.type.split(":")[0]
        # GitOps and storage name each resource after its cluster (gitops-arda-..., storage-ainur-...).
        prefix = (
            "-".join(r.name.split("-")[:2])
            if r.name.startswith(("gitops-", "storage-", "git-mirror-", "monitoring-", "identity-", "data-ainur-", "logs-"))
            else r.name.split("-")[0]
        )
        # Sign-in's Argo CD objects (client secrets, the Ainur's Argo CD's certificate, Headlamp's Application): each Argo CD's provider.
        if r.name.startswith("identity-") and ("-argocd" in r.name or "-application-" in r.name) and package == "kubernetes":
            prefix += "-argocd"
        key = (
            f"{package}:{prefix}"
            if package in ("kubernetes", "command")
            or r.name.startswith(("gitops-", "edge-", "monitoring-", "identity-", "data-", "kms-", "logs-", "storage-"))
            else package
        )
        assert r.provider.startswith(regs[providers[key]].urn + "::"), (r.name, r.provider)
        checked += 1
    # Arda 21 (secrets, schematic, 5 applies, bootstrap, 2 gates, kubeconfig, Cilium's release, gate, pool and policy, CoreDNS's 6 objects),
    # the Ainur 12 (token, 3 joins, 3 k3s steps, 3 uninstalls, the credentials, the gate), netboot 15, the mirror 4 (claim, Deployment, Service,
    # its storage gate); GitOps 21 on the two clusters (the category namespaces are the edge's); the edge 39 (its two
    # webhook gates included); storage 12 (3 namespaces, 6 Applications, 3 Pi labels); the Ainur's credentials and 3 k3s steps;
    # data safety 34 (ESO, its store Secrets, readers, stores and gate; VolSync, the restic Secrets, talos-backup, 5 generated keys)
    # With the homelab's monitoring and sign-in (components.monitoring, components.identity, the CRDs and their gate): 62 more.
    # Logs 13 (the store's StatefulSet, Service, LAN Service and ServiceMonitor; each cluster's collector ConfigMap and
    # DaemonSet; vmalert's ConfigMap and Deployment; 3 Pis' journal forwarders), Grafana's dashboards 1, the drills 5
    # (4 CronJobs, their namespace) and their 2 Secrets (S3 keys, age identity); the drills' scratch StorageClass (Retain's
    # copy with Delete) and the log store's storage-class gate. The log pipeline's own metrics 4 (the collectors' PodMonitor,
    # the Pis' collectors' ScrapeConfig, vmalert's Service and ServiceMonitor). Netboot's clearance before its cache's roll 1,
    # and its DHCP probe before anything the LAN's DHCP reads changes 1 (plans.netboot.dhcp_probe).
    # Each maia's own join token (its id, its secret, its Secret: 2 maiar) and the Ainur's ca-hash step: 7 more.
    # Who may reach the log store (its readers' NetworkPolicy, its writers' CiliumNetworkPolicy and the gate before it),
    # vmalert's policy, and the Ainur's policy of who may register a Node with its binding: 6 more.
    # The KMS 12 (its key, its certificate's 3, its 8 objects on the Ainur); the raw-port apps 5 (minecraft's and
    # mosquitto's Service and policy, the gate before the policies).
    # Every listener's NetworkPolicy (plans.netpol): the Ainur's identity namespace 3 (its default deny, Dex's, the front
    # door's), netboot's default deny and the Git mirror's, CoreDNS's and cloudflared's on Arda: 7 more.
    # Each raw-port app's own address pool (2) and the broker's and the Minecraft world's backups (their restic
    # Secret, password and drill: 6): 8 more.
    # The KMS's own list of the machines it answers, and Arda's policy keeping every pod from the KMS: 2 more.
    # Each Pi's netboot gate after its k3s step (the house's DHCP and DNS back before the next Pi): 3 more.
    # dnsmasq.conf's own ConfigMap, and in dhcp mode netboot-router-off before the netboot pod (#53): 2 more.
    # Longhorn's NetworkPolicies on the Ainur (plans.storage.longhorn_network_policies): 7 more.
    # The metrics API adapter's CiliumNetworkPolicy for the API server, and the gate before it (#54): 2 more.
    # Argo CD's NetworkPolicies, the program's in place of its chart's (plans.gitops.network_policies), 5 on each cluster.
    # The log store's admin key (its password and Secret) and Longhorn's support-bundle manager's policy (#54): 3 more.
    # The KMS key's age file on Arda, the CronJob that uploads it and its restore drill (plans.kms, plans.drill): 3 more.
    # Headscale's restore drill on Arda and, on the Ainur, Longhorn's encrypted class with its Secret and passphrase
    # (storage-ainur-*, now named by their cluster like storage's others): 4 more in all (#57, #55).
    # VolSync's NetworkPolicy, admitting Prometheus alone to its tokenless metrics (plans.backup.network_policy): 1 more.
    # kube-vip-services' roll, the Pi holding the service address last (plans.netboot.vip_roll, #53): 1 more.
    # ainur-secrets-on, in the program whenever the stack asks for secrets encryption (plans.k3s.secrets_on_script), and
    # ainur-secrets-epoch, its trigger, which follows the flag (components.ainur): 2 more.
    # The step releasing the NodePorts an older gateway Service holds (plans.gateways.node_port_release), on Arda's
    # command provider: 1 more.
    assert checked == 337


def test_bring_up_order(homelab: Simulation) -> None:
    regs = homelab.named()

    def deps(name: str) -> set[str]:
        urns = {r.urn: r.name for r in homelab.registrations}
        return {urns[u] for u in regs[name].dependencies if u in urns}

    netboot = {"netboot-daemonset-netboot-cache", "netboot-deployment-netboot", "netboot-service-netboot"}
    # One machine after another, control planes first, each after the Ainur's netboot serves.
    chain = [f"arda-{n}-apply" for n in NODES]
    # The local CA's certificate too, on every machine: the control planes' API servers trust Dex through it
    # (plans.apiserver), and every machine's volumes unlock through the Ainur's KMS, whose certificate it signs
    # (plans.volume_encryption's TrustedRootsConfig).
    config = {"arda-config-schematic-generic-x86", "arda-config-secrets"}
    ca = {"edge-certificates-ca-cert"}
    assert deps(chain[0]) == netboot | config | ca
    for earlier, later in itertools.pairwise(chain):
        assert deps(later) == netboot | {earlier} | config | ca
    assert deps("arda-bootstrap") == {"arda-taniquetil-apply", "arda-config-secrets"}
    assert deps("arda-gate-api") == {"arda-bootstrap", "arda-config-secrets", *chain}
    assert deps("arda-kubeconfig") == {"arda-gate-api", "arda-config-secrets"}
    assert deps("arda-kubernetes") == {"arda-gate-api", "arda-kubeconfig"}
    assert deps("arda-cilium-gate-crds") == {"arda-cilium-release", "arda-kubeconfig"}
    app_pools = ("arda-cilium-lb-pool-iluvatar-lan-minecraft-lan", "arda-cilium-lb-pool-iluvatar-lan-mosquitto-lan")
    for cr in ("arda-cilium-lb-pool", "arda-cilium-l2-policy", "arda-cilium-kms-deny", *app_pools):
        assert deps(cr) == {"arda-cilium-gate-crds"}
    # CoreDNS once the CNI runs (Cilium's gate), each object after what it names; the nodes gate waits for all of it.
    assert deps("arda-coredns-serviceaccount-coredns") == {"arda-cilium-gate-crds"}
    assert deps("arda-coredns-deployment-coredns") == {
        "arda-cilium-gate-crds",
        "arda-coredns-serviceaccount-coredns",
        "arda-coredns-configmap-coredns",
    }
    assert deps("arda-gate-nodes") == {
        "arda-cilium-release",
        "arda-cilium-lb-pool",
        "arda-cilium-l2-policy",
        *app_pools,
        "arda-cilium-kms-deny",
        *COREDNS,
        "arda-kubeconfig",
        "arda-config-secrets",
        *chain,
    }


def test_each_step_runs_the_upgrader_with_its_bound_and_its_secrets_on_stdin(homelab: Simulation) -> None:
    regs = homelab.named()
    steps = {r.name: r for r in homelab.by_type(COMMAND) if r.name.startswith("arda-")}
    up = ".venv/bin/iluvatar upgrader"
    cluster = (
        "--control-plane taniquetil=192.168.0.21 --control-plane tirion=192.168.0.22 --control-plane alqualonde=192.168.0.23 "
        "--worker gandalf=192.168.0.31 --worker saruman=192.168.0.32 --endpoint https://192.168.0.20:6443"
    )
    assert {name: r.inputs["create"] for name, r in steps.items()} == {
        # The first control plane saves an etcd snapshot before a rollout; Argo CD's controller pauses while a machine is drained.
        **{f"arda-{n}-apply": f"{up} apply --node {n}=192.168.0.{ip} --role {role}{extra} --pause {PAUSE} --timeout 45m" for n, ip, role, extra in (
            ("taniquetil", 21, "controlplane", f" --etcd-snapshot {SNAPSHOT}"), ("tirion", 22, "controlplane", ""),
            ("alqualonde", 23, "controlplane", ""), ("gandalf", 31, "worker", ""), ("saruman", 32, "worker", ""),
        )},
        "arda-bootstrap": f"{up} bootstrap --node taniquetil=192.168.0.21 --timeout 30m",
        "arda-gate-api": f"{up} health {cluster} --stage api --timeout 30m",
        "arda-gate-nodes": f"{up} health {cluster} --stage nodes --timeout 20m",
        "arda-cilium-gate-crds": f"{up} wait-kube --admits --timeout 10m",
        "arda-monitoring-gate-crds": f"{up} wait-kube --admits --timeout 10m",
    }  # fmt: skip
    # The bootstrap's update never starts a new etcd: this stack bootstrapped one before (plans.bringup.talos_bootstrap).
    assert steps["arda-bootstrap"].inputs["update"] == f"{up} bootstrap --node taniquetil=192.168.0.21 --no-new-cluster --timeout 30m"
    for r in steps.values():
        # Every other `update` is `create`: a change re-runs the step as an update; the engine's bound a little over the upgrader's.
        assert r is steps["arda-bootstrap"] or r.inputs["update"] == r.inputs["create"]
        bound = int(r.inputs["create"].rsplit("--timeout ", 1)[1].removesuffix("m"))
        assert r.custom_timeouts == {"create": f"{bound + 5}m", "update": f"{bound + 5}m"}
        assert r.secret_inputs == ("stdin",)
    tirion = json.loads(regs["arda-tirion-apply"].inputs["stdin"].value)
    # A Ceph host (its data disk runs an OSD) has its reboot wrapped in noout; a worker without one does not.
    assert sorted(tirion) == ["hooks", "machineConfig", "talosconfig"]
    assert tirion["hooks"] == storage_plan.noout_jobs()
    assert sorted(json.loads(regs["arda-gandalf-apply"].inputs["stdin"].value)) == ["machineConfig", "talosconfig"]
    assert "hostname: tirion" in tirion["machineConfig"]
    assert tirion["talosconfig"] == "# talosconfig for arda\n"
    assert regs["arda-tirion-apply"].inputs["environment"] == {
        "ILUVATAR_INSTALLER": f"factory.talos.dev/metal-installer/{_schematic_id('generic-x86')}:v1.14.1",
        "ILUVATAR_KUBERNETES_VERSION": "v1.35.1",
        "ILUVATAR_PATCHES": patches_digest(load_stack_file(HOMELAB), load_stack_file(HOMELAB).nodes[4]),
        "ILUVATAR_TALOS_VERSION": "v1.14.1",
        "ILUVATAR_GENERATION": "0",
    }
    gate = json.loads(regs["arda-cilium-gate-crds"].inputs["stdin"].value)
    assert [m["kind"] for m in gate["manifests"]] == ["CiliumLoadBalancerIPPool", "CiliumL2AnnouncementPolicy", "CiliumClusterwideNetworkPolicy"]
    assert gate["manifests"][2] == regs["arda-cilium-kms-deny"].inputs | {"apiVersion": "cilium.io/v2", "kind": "CiliumClusterwideNetworkPolicy"}
    assert gate["manifests"][0] == regs["arda-cilium-lb-pool"].inputs | {"apiVersion": "cilium.io/v2", "kind": "CiliumLoadBalancerIPPool"}


def test_machine_secrets_are_protected_and_survive_upgrades(homelab: Simulation) -> None:
    secrets = homelab.named()["arda-config-secrets"]
    assert secrets.protect
    assert secrets.inputs["talosVersion"] == "v1.14.1"
    protected = [r.name for r in homelab.registrations if r.protect]
    # The other irreplaceable state is the edge's local root CA (tests/components/test_edge.py).
    # Every generated key the backups and the apps' secrets depend on (components.data), protected the same way
    # (registered as their outputs resolve: compared as a set).
    assert sorted(protected) == sorted(
        [
            "arda-config-secrets",
            "data-secrets-jellyfin-api_key",
            "data-secrets-blog-database_password",
            "data-backup-jellyfin-jellyfin-config-restic-password",
            "data-backup-minecraft-backups-minecraft-0-restic-password",
            "data-backup-mosquitto-mosquitto-data-restic-password",
            "data-backup-age-identity",
            "data-backup-home-assistant-home-assistant-config-restic-password",
            "edge-certificates-ca-key",
            "edge-certificates-ca-cert",
            # The KMS's key: what every volume it sealed opens with (plans.kms).
            "kms-key",
            # The passphrase every encrypted Longhorn volume on the Ainur opens with (plans.storage.crypto_secret).
            "storage-ainur-longhorn-crypto",
        ]
    )


def test_the_config_keeps_the_version_contract_the_cluster_was_installed_with(tmp_path: Path) -> None:
    """A new talosVersion upgrades the machines (their installer image); the configs stay shaped for the install's Talos."""
    # Installed at Talos v1.13.0 (the secrets' version), the stack now at the shipped v1.14.1.
    sim = simulate(read_stack_file(write_stack(tmp_path, homelab_doc(), stack="homelab")), prior={"arda-config-secrets": {"talosVersion": "v1.13.0"}})
    assert {a["talosVersion"] for a in _config_invokes(sim).values()} == {"v1.13.0"}
    installer = sim.outputs["ardaInstallerImages"]["generic-x86"]
    assert installer.endswith(":v1.14.1")
    assert f"image: {installer}" in json.loads(sim.named()["arda-tirion-apply"].inputs["stdin"].value)["machineConfig"]


GET_CONFIGURATION = "talos:machine/getConfiguration:getConfiguration"
GET_URLS = "talos:imageFactory/getUrls:getUrls"


def _schematic_id(board: str) -> str:
    # Image Factory's ID of the board's schematic (image-factory v1.1.0 pkg/schematic Schematic.ID), as the mock answers it.
    return BOARD_IDS[board]


def _config_invokes(sim: Simulation) -> dict[str, dict[str, Any]]:
    """Each getConfiguration invoke's arguments, by the hostname its patches set."""
    out = {}
    for token, args in sim.invocations:
        if token == GET_CONFIGURATION:
            docs = [d for p in args["configPatches"] for d in yaml.safe_load_all(p)]
            name = next((d["hostname"] for d in docs if d.get("kind") == "HostnameConfig" and "hostname" in d), "generic-worker")
            out[name] = args
    return out


def test_cluster_credentials_are_secret_outputs(homelab: Simulation) -> None:
    assert isinstance(homelab.outputs["ardaKubeconfig"], SecretValue)
    assert isinstance(homelab.outputs["ardaTalosconfig"], SecretValue)


def test_machine_config_invokes_get_what_the_provider_expects(homelab: Simulation) -> None:
    """Kubernetes without the `v`, the endpoint with the API port, and each machine's own type."""
    invokes = _config_invokes(homelab)
    assert {n: a["machineType"] for n, a in invokes.items()} == {
        "taniquetil": "controlplane",
        "tirion": "controlplane",
        "alqualonde": "controlplane",
        "gandalf": "worker",
        "saruman": "worker",
    }
    for args in invokes.values():
        assert args["clusterName"] == "arda"
        assert args["clusterEndpoint"] == "https://192.168.0.20:6443"
        assert args["kubernetesVersion"] == "1.35.1"
        assert args["talosVersion"] == "v1.14.1"
        assert (args["docs"], args["examples"]) == (False, False)
        assert args["machineSecrets"] == MOCK_STATE["machineSecrets"]


# What the mock provider answers for talos.machine.Secrets.
MOCK_STATE = simulate_module.RESOURCE_STATE["talos:machine/secrets:Secrets"]({})


def _distinct_secrets(_: dict[str, Any]) -> dict[str, Any]:
    """The Secrets' outputs with a distinct value in every leaf, so each one is followed to where it is handed back."""

    def numbered(value: Any, path: str) -> Any:
        return {k: numbered(v, f"{path}.{k}") for k, v in value.items()} if isinstance(value, dict) else f"<{path}>"

    state = copy.deepcopy(MOCK_STATE)
    state["machineSecrets"]["secrets"]["aescbcEncryptionSecret"] = "x"  # optional: set here, so it is followed too
    found: dict[str, Any] = numbered(state, "")
    return found


def test_the_talos_provider_gets_its_outputs_back_under_its_own_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Secrets' outputs handed back to the Talos provider arrive exactly as it produced them: its names (camelCase),
    every field (the optional aescbcEncryptionSecret too), each value where it came from. As output objects they went
    out under their Python names (`bootstrap_token`), which the provider does not read (shared engine facts)."""
    monkeypatch.setitem(simulate_module.RESOURCE_STATE, "talos:machine/secrets:Secrets", _distinct_secrets)
    sim = simulate(read_stack_file(RK1))
    state = _distinct_secrets({})
    configs = [a for t, a in sim.invocations if t == GET_CONFIGURATION]
    clients = [a for t, a in sim.invocations if t == "talos:client/getConfiguration:getConfiguration"]
    assert len(configs) == 4
    assert all(a["machineSecrets"] == state["machineSecrets"] for a in configs)
    assert state["machineSecrets"]["secrets"] == {
        "bootstrapToken": "<.machineSecrets.secrets.bootstrapToken>",
        "secretboxEncryptionSecret": "<.machineSecrets.secrets.secretboxEncryptionSecret>",
        "aescbcEncryptionSecret": "<.machineSecrets.secrets.aescbcEncryptionSecret>",
    }
    assert [a["clientConfiguration"] for a in clients] == [state["clientConfiguration"]] * 2
    kubeconfig = sim.one("talos:cluster/kubeconfig:Kubeconfig", "arda-kubeconfig")
    assert kubeconfig.inputs["clientConfiguration"] == SecretValue(state["clientConfiguration"])
    # Secret to the engine whatever the provider marks: the client key is in it.
    assert kubeconfig.secret_inputs == ("clientConfiguration",)
    assert kubeconfig.additional_secret_outputs == ("kubeconfigRaw",)


def test_the_kubeconfig_is_asked_of_whichever_control_plane_holds_the_vip(homelab: Simulation) -> None:
    """Issue 57 (6): the renewal asked the first control plane alone (`node=first.ip`), so within 720 h of the client
    certificate's end every `up` failed while that machine was down. Asked through the VIP, which Talos moves to a live
    control plane; on a deployed homelab the change is an update in place that keeps the kubeconfig and dials nothing
    until the renewal is due (tests/talos_provider.py, the provider's plan)."""
    kubeconfig = homelab.one("talos:cluster/kubeconfig:Kubeconfig", "arda-kubeconfig")
    assert kubeconfig.inputs["node"] == "192.168.0.20"
    assert "endpoint" not in kubeconfig.inputs
    deployed = {"node": "192.168.0.21", "endpoint": "192.168.0.21", "clientConfiguration": kubeconfig.inputs["clientConfiguration"]}
    inputs = dict(kubeconfig.inputs)
    assert talos_provider.kubeconfig_plan(deployed, inputs, renewal_due=False) == talos_provider.KubeconfigPlan(False, "192.168.0.20", None)
    assert talos_provider.kubeconfig_plan(deployed, inputs, renewal_due=True).dials == "192.168.0.20"


def test_image_urls_are_the_providers(homelab: Simulation) -> None:
    sid = _schematic_id("generic-x86")
    assert homelab.outputs["ardaInstallerImages"] == {"generic-x86": f"factory.talos.dev/metal-installer/{sid}:v1.14.1"}
    assert homelab.outputs["ardaPxeUrls"] == {"generic-x86": f"https://pxe.factory.talos.dev/pxe/{sid}/v1.14.1/metal-amd64"}
    assert homelab.outputs["ardaDiskImages"] == {}
    urls = [a for t, a in homelab.invocations if t == GET_URLS]
    assert [(a["architecture"], a["platform"], a.get("sbc"), a["talosVersion"]) for a in urls] == [("amd64", "metal", None, "v1.14.1")]


def test_factory_urls_match_terraform_provider_talos() -> None:
    """The offline answer has the shape talos_image_factory_urls (provider v0.11.0) returns."""
    metal = _talos_urls({"schematicId": "abc", "talosVersion": "1.14.1", "architecture": "arm64", "platform": "metal"})["urls"]
    image = "https://factory.talos.dev/image/abc/v1.14.1"
    assert metal == {
        "installer": "factory.talos.dev/metal-installer/abc:v1.14.1",
        "installerSecureboot": "factory.talos.dev/metal-installer-secureboot/abc:v1.14.1",
        "iso": f"{image}/metal-arm64.iso",
        "isoSecureboot": f"{image}/metal-arm64-secureboot.iso",
        "diskImage": f"{image}/metal-arm64.raw.zst",
        "diskImageSecureboot": f"{image}/metal-arm64-secureboot.raw.zst",
        "pxe": "https://pxe.factory.talos.dev/pxe/abc/v1.14.1/metal-arm64",
        "kernel": f"{image}/kernel-arm64",
        "kernelCommandLine": f"{image}/cmdline-metal-arm64",
        "initramfs": f"{image}/initramfs-arm64.xz",
        "uki": f"{image}/metal-arm64-secureboot-uki.efi",
    }
    sbc = _talos_urls({"schematicId": "abc", "talosVersion": "v1.14.1", "architecture": "arm64", "sbc": "turingrk1"})["urls"]
    assert {k: v for k, v in sbc.items() if v} == {
        "installer": "factory.talos.dev/metal-installer/abc:v1.14.1",
        "diskImage": f"{image}/metal-arm64.raw.xz",
    }
    assert set(sbc) == set(metal)


def test_cilium_release_and_pool(homelab: Simulation) -> None:
    regs = homelab.named()
    release = regs["arda-cilium-release"].inputs
    assert (release["chart"], release["version"], release["namespace"]) == ("cilium", "1.18.4", "kube-system")
    assert release["repositoryOpts"] == {"repo": "https://helm.cilium.io"}
    # But the raw-port apps' own addresses, each a pool for its own Service (plans.cilium.app_pools).
    assert regs["arda-cilium-lb-pool"].inputs["spec"] == {"blocks": [{"start": "192.168.0.222", "stop": "192.168.0.239"}]}


def test_a_pi5_worker_gets_the_rpi5_overlay_and_is_flashed(tmp_path: Path) -> None:
    doc = edit(homelab_doc(), {"iluvatar:nodes[7].board": "rpi5", "iluvatar:nodes[7].arch": "arm64", "iluvatar:nodes[7].installDisk": "/dev/nvme0n1"})
    sim = simulate(read_stack_file(write_stack(tmp_path, doc, stack="homelab")))
    schematic = sim.named()["arda-config-schematic-rpi5"].inputs["schematic"]
    assert "image: siderolabs/sbc-raspberrypi" in schematic
    assert "name: rpi_5" in schematic
    urls = [a for t, a in sim.invocations if t == GET_URLS]
    assert ("arm64", None, "rpi_5") in [(a["architecture"], a.get("platform"), a.get("sbc")) for a in urls]
    sid = _schematic_id("rpi5")
    assert sim.outputs["ardaDiskImages"]["saruman"] == f"https://factory.talos.dev/image/{sid}/v1.14.1/metal-arm64.raw.xz"
    # A Pi cannot chainload iPXE: saruman is flashed, so no netboot script or config names it.
    scripts = sim.named()["netboot-configmap-ipxe"].inputs["data"]
    assert not any("saruman" in text for text in scripts.values())


def test_rk1_uses_the_rk1_overlay_schematic_and_is_flashed() -> None:
    sim = simulated(RK1)
    schematic = sim.named()["arda-config-schematic-rk1"]
    assert "name: turingrk1" in schematic.inputs["schematic"]
    sid = _schematic_id("rk1")
    urls = [a for t, a in sim.invocations if t == GET_URLS]
    assert [(a["architecture"], a.get("platform"), a["sbc"]) for a in urls] == [("arm64", None, "turingrk1")]
    assert sim.outputs["ardaInstallerImages"] == {"rk1": f"factory.talos.dev/metal-installer/{sid}:v1.14.1"}
    image = f"https://factory.talos.dev/image/{sid}/v1.14.1/metal-arm64.raw.xz"
    assert sim.outputs["ardaDiskImages"] == {f"talos-{i}": image for i in range(1, 5)}
    # The factory has no PXE assets for an SBC: nothing netboot-shaped is exported for it.
    assert sim.outputs["ardaPxeUrls"] == {}


def test_a_vlan_machine_routes_through_its_vlans_gateway(tmp_path: Path) -> None:
    doc = edit(homelab_doc(), {"iluvatar:nodes[7].vlan": "iot", "iluvatar:nodes[7].ip": "192.168.20.32"})
    sim = simulate(read_stack_file(write_stack(tmp_path, doc, stack="homelab")))
    docs = [d for p in _config_invokes(sim)["saruman"]["configPatches"] for d in yaml.safe_load_all(p)]
    link = next(d for d in docs if d.get("kind") == "LinkConfig")
    assert link["addresses"] == [{"address": "192.168.20.32/24"}]
    assert link["routes"] == [{"gateway": "192.168.20.1"}]
    assert docs[0]["machine"]["kubelet"]["nodeIP"]["validSubnets"] == ["192.168.20.0/24"]


def _inputs_by_urn(sim: Simulation) -> dict[str, dict[str, Any]]:
    return {r.urn: r.inputs for r in sim.registrations}


def test_adding_a_node_changes_only_that_nodes_resources(tmp_path: Path, homelab: Simulation) -> None:
    doc = homelab_doc()
    doc["config"]["iluvatar:nodes"].append(
        {
            "name": "radagast",
            "role": "istari",
            "arch": "amd64",
            "board": "generic-x86",
            "mac": "28:d2:44:30:00:03",
            "ip": "192.168.0.33",
            "installDisk": "/dev/sda",
        }
    )
    grown = simulate(read_stack_file(write_stack(tmp_path, doc, stack="homelab")))
    before, after = _inputs_by_urn(homelab), _inputs_by_urn(grown)
    added = sorted(u.rsplit("::", 1)[-1] for u in set(after) - set(before))
    # And the ConfigMap of the dnsmasq.conf that tags it for netboot (its dhcp-mac line), named by its content: the old
    # one goes at the end of the `up`, after the netboot Deployment moved (plans.netboot.objects).
    conf = grown.named()["netboot-deployment-netboot"].inputs["spec"]["template"]["spec"]["volumes"][1]["configMap"]["name"]
    assert conf.startswith("netboot-dnsmasq-") and conf != CONF
    assert added == ["arda-radagast", "arda-radagast-apply", f"netboot-configmap-{conf}"]
    assert set(before) - set(after) == {u for u in before if u.endswith(f"::netboot-configmap-{CONF}")}
    changed = sorted(u.rsplit("::", 1)[-1] for u in set(before) & set(after) if before[u] != after[u])
    # No other machine's step changes: only the aggregates, and the gates that list every machine.
    assert changed == sorted([*NETBOOT_AGGREGATES, *CLUSTER_GATES, *LOGS_AGGREGATES, *KMS_AGGREGATES]), "only the aggregates may change"
    # The aggregates that list machines do change: the DHCP reservations and the talosconfig's nodes.
    assert len(grown.outputs["reservations"]) == len(homelab.outputs["reservations"]) + 1


def test_removing_a_node_removes_only_its_own(tmp_path: Path, homelab: Simulation) -> None:
    doc = edit(homelab_doc(), delete=["iluvatar:nodes[7]"])
    shrunk = simulate(read_stack_file(write_stack(tmp_path, doc, stack="homelab")))
    before, after = _inputs_by_urn(homelab), _inputs_by_urn(shrunk)
    assert sorted(u.rsplit("::", 1)[-1] for u in set(before) - set(after)) == ["arda-saruman", "arda-saruman-apply", f"netboot-configmap-{CONF}"]
    assert sorted(u.rsplit("::", 1)[-1] for u in set(before) & set(after) if after[u] != before[u]) == sorted(
        [*NETBOOT_AGGREGATES, *CLUSTER_GATES, *LOGS_AGGREGATES, *KMS_AGGREGATES]
    )


def test_talos_upgrade_is_a_planned_change_of_each_machines_step(tmp_path: Path, homelab: Simulation) -> None:
    # From the minor's previous patch to the pin (a patch past the newest this Iluvatar knows is refused: stacks.rules).
    doc = edit(homelab_doc(), {"iluvatar:arda.talosVersion": "v1.14.0"})
    older = simulate(read_stack_file(write_stack(tmp_path, doc, stack="homelab")))
    before, after = _inputs_by_urn(older), _inputs_by_urn(homelab)
    upgraded = homelab
    assert set(before) == set(after)
    changed = sorted(u.rsplit("::", 1)[-1] for u in before if before[u] != after[u])
    # Secrets' talosVersion changes too, but ignore_changes keeps the engine from touching it.
    assert changed == sorted(
        [
            *(f"arda-{n}-apply" for n in NODES),
            "arda-config-secrets",
            # Not the netboot pod (the LAN's DHCP and DNS): it reads the new iPXE scripts and assets as they change; and
            # so not the DHCP probe, which runs when dnsmasq starts anew.
            *(a for a in NETBOOT_AGGREGATES if a not in ("netboot-deployment-netboot", "netboot-dhcp-probe", "netboot-router-off")),
            "netboot-daemonset-netboot-cache",  # every Pi's cache of the Talos kernel and initramfs
        ]
    )
    environment = after[upgraded.named()["arda-tirion-apply"].urn]["environment"]
    assert (environment["ILUVATAR_TALOS_VERSION"], environment["ILUVATAR_INSTALLER"].rsplit(":", 1)[1]) == ("v1.14.1", "v1.14.1")


def test_a_changed_schematic_is_replaced_so_its_new_id_reaches_the_images() -> None:
    """The engine keeps a resource's ID through an update (pulumi v3.259.0 step.go:963), so a schematic whose text
    changes (new extensions) is replaced: its Create POSTs it and takes Image Factory's new ID."""
    schematic = simulated(RK1).named()["arda-config-schematic-rk1"]
    assert schematic.options() == {"replaceOnChanges": ["schematic"]}


def test_an_image_factory_id_other_than_the_renders_is_a_warning(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The images are named by plans.talos's ID, known at preview, so the render, the preview and the up name the same
    ones. Should Image Factory answer another ID at `pulumi up`, the up says so, with both."""
    caplog.set_level(logging.WARNING)
    simulate(read_stack_file(RK1))
    assert not [r for r in caplog.records if "Image Factory named" in r.getMessage()]
    other = "0" * 64
    monkeypatch.setitem(simulate_module.RESOURCE_STATE, "talos:imageFactory/schematic:Schematic", lambda a: {"id": other})
    # A preview shows a schematic about to change with its former ID: nothing to say yet.
    simulate(read_stack_file(RK1), preview=True)
    assert not [r for r in caplog.records if "Image Factory named" in r.getMessage()]
    sim = simulate(read_stack_file(RK1))
    assert sim.outputs["ardaDiskImages"]["talos-1"] == f"https://factory.talos.dev/image/{plan.schematic_id('rk1')}/v1.14.1/metal-arm64.raw.xz"
    assert [r.getMessage() for r in caplog.records if "Image Factory named" in r.getMessage()] == [
        f"arda: Image Factory named the rk1 schematic {other}, but the program named its images by {plan.schematic_id('rk1')} "
        "(plans.imagefactory follows Image Factory v1.1.0): the factory may not serve those installer and disk images; "
        "report it, with both IDs"
    ]


def test_a_machines_step_waits_for_its_boards_schematic_and_the_images_are_known_at_preview() -> None:
    """The factory serves a schematic's images only once it was sent the schematic; the preview names them already."""
    preview = simulate(read_stack_file(RK1), preview=True)
    for node in ("talos-1", "talos-4"):
        apply = preview.one("command:local:Command", f"arda-{node}-apply")
        assert preview.one("talos:imageFactory/schematic:Schematic", "arda-config-schematic-rk1").urn in apply.dependencies
        assert apply.inputs["environment"]["ILUVATAR_INSTALLER"] == f"factory.talos.dev/metal-installer/{plan.schematic_id('rk1')}:v1.14.1"
