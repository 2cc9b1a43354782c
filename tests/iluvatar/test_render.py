"""`python -m iluvatar render`: the rendered tree, reruns, secrets, real-tool checks and errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from iluvatar import cli, render, simulate
from iluvatar.render import render_files
from plans import monitoring, netboot
from stacks import load_stack_file, read_stack_file
from stacks.categories import DEFAULT_CATEGORIES
from stacks.outputs import SINCE
from tests.edit import HOMELAB, MINIMAL, RK1, ROOT, ciphertext, edit, homelab_doc, write_stack
from tests.iluvatar.test_render_edge import _edge_kubernetes
from tests.schemas import talos_errors
from tests.sims import simulated
from tests.stacks.test_secrets import HOMELAB_COMMANDS
from tests.tools import cloud_init_network_schema, cloud_init_schema, dnsmasq_test
from tools import schematic_id

CATEGORIES = DEFAULT_CATEGORIES  # the homelab stack's: the defaults, none of its own


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "iluvatar", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.fixture
def render_here(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Callable[..., subprocess.CompletedProcess[str]]:
    """`iluvatar render ARGS` in this process, from the checkout as `run` starts it: what `main` returns is the status
    `cli.run` exits with, and what it printed the process's output. For the tests of what a render plans and refuses;
    the command as a process (its start, exit and streams) is the `homelab` fixture's, and test_cli's."""
    monkeypatch.chdir(ROOT)

    def render_(*args: str) -> subprocess.CompletedProcess[str]:
        capsys.readouterr()
        code = cli.main(["render", *args])
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(["iluvatar", "render", *args], code, out, err)

    return render_


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def homelab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("render") / "homelab"
    result = run("render", "homelab", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        # #55: two more, the KMS's own list of admitted machines and Arda's policy keeping pods from the KMS. #53: one
        # more, dnsmasq.conf's own ConfigMap (named by its content). #54: seven more, Longhorn's NetworkPolicies; one more,
        # the metrics API adapter's CiliumNetworkPolicy; ten more, Argo CD's NetworkPolicies on both clusters. #56: eleven
        # more, the homelab's remote access (Headscale and its subnet router on the Ainur: their namespace, config,
        # Deployments, Service, claim, the router's account, role and binding, two NetworkPolicies). #57: five more,
        # Headscale's state backup (its restic Secret, CronJob, ServiceAccount, Role and RoleBinding); two more, its
        # restore drill on Arda (its CronJob and its copy of the restic Secret). #54 then two: the log store's admin
        # key's Secret, and the NetworkPolicy of Longhorn's support-bundle manager. #55 then three: the KMS key's age file
        # on Arda, the CronJob that uploads it and its restore drill's CronJob. Two more: Longhorn's encrypted class and the Secret it
        # opens volumes with. #54 then one: the NetworkPolicy admitting Prometheus alone to VolSync's tokenless metrics.
        f"rendered stack homelab to {out}: 309 files",
        "before `pulumi preview`, set the 5 secrets this stack needs (rendered as [secret]; `iluvatar validate` says why each):",
        *(f"  {command}" for command in HOMELAB_COMMANDS),
        "next:",
        f"  read {out}/plan.txt: every resource `pulumi up` would create, and what each waits for",
        f"  flash each Pi (eonwe, ilmare, manwe) with Ubuntu Server, then its {out}/ainur/<pi>.user-data and .network-config"
        " (docs/layers/ainur.md#flashing-the-pis)",
        "  then: `pulumi stack select --create homelab` (makes the stack the first time), the secrets above, `pulumi preview`, `pulumi up` (docs/bring-up.md)",
    ]
    # The README's Quickstart shows this output to a newcomer: its count goes stale unless held here.
    assert "\nrendered stack homelab to render/homelab: 309 files\n" in (ROOT / "README.md").read_text()
    return out


def test_one_file_per_node_and_per_object(homelab: Path) -> None:
    files = tree(homelab)
    assert sorted(f for f in files if f.startswith("talos/")) == [
        f"talos/{n}.patch.yaml" for n in sorted(["taniquetil", "tirion", "alqualonde", "gandalf", "saruman"])
    ]
    assert sorted(f for f in files if f.startswith("ainur/")) == [
        f"ainur/{n}.{kind}" for n in ("eonwe", "ilmare", "manwe") for kind in ("network-config", "user-data")
    ]
    assert len([f for f in files if f.startswith("netboot/ipxe/")]) == 6
    # The edge's own objects are pinned in tests/iluvatar/test_render_edge.py (the category namespaces are the edge's).
    edge = set(_edge_kubernetes("homelab"))
    assert sorted(f for f in files if f.startswith("kubernetes/") and f not in edge) == sorted(
        [
            "kubernetes/ainur/_cluster/ClusterRole-iluvatar-kube-vip.yaml",
            "kubernetes/ainur/_cluster/ClusterRoleBinding-iluvatar-kube-vip.yaml",
            "kubernetes/ainur/_cluster/Namespace-argocd.yaml",
            "kubernetes/ainur/_cluster/Namespace-netboot.yaml",
            "kubernetes/ainur/_cluster/Namespace-remote-access.yaml",
            # What the state backup's stamp may change (plans.remote_access.state_backup_admission).
            "kubernetes/ainur/_cluster/ValidatingAdmissionPolicy-iluvatar-backup-stamp.yaml",
            "kubernetes/ainur/_cluster/ValidatingAdmissionPolicyBinding-iluvatar-backup-stamp.yaml",
            *(
                f"kubernetes/ainur/remote-access/{kind}-{name}.yaml"
                for kind, name in [
                    ("ConfigMap", "headscale"),
                    ("CronJob", "state-backup"),
                    ("Deployment", "headscale"),
                    ("Deployment", "subnet-router"),
                    ("NetworkPolicy", "default-deny-ingress"),
                    ("NetworkPolicy", "headscale"),
                    ("PersistentVolumeClaim", "headscale-state"),
                    ("Role", "state-backup"),
                    ("Role", "subnet-router"),
                    ("RoleBinding", "state-backup"),
                    ("RoleBinding", "subnet-router"),
                    ("Secret", "headscale-restic"),
                    ("Service", "headscale"),
                    ("ServiceAccount", "state-backup"),
                    ("ServiceAccount", "subnet-router"),
                ]
            ),
            # Who may register a Node (plans.k3s.node_admission).
            "kubernetes/ainur/_cluster/ValidatingAdmissionPolicy-iluvatar-node-registration.yaml",
            "kubernetes/ainur/_cluster/ValidatingAdmissionPolicyBinding-iluvatar-node-registration.yaml",
            "kubernetes/ainur/kube-system/DaemonSet-kube-vip-services.yaml",
            "kubernetes/ainur/kube-system/ServiceAccount-kube-vip.yaml",
            # Each maia's own join token (plans.agent_token): the ids are the mock runtime's, the data [secret].
            "kubernetes/ainur/kube-system/Secret-bootstrap-token-64d1ca.yaml",
            "kubernetes/ainur/kube-system/Secret-bootstrap-token-68fe10.yaml",
            "kubernetes/ainur/netboot/ConfigMap-ipxe.yaml",
            "kubernetes/ainur/netboot/ConfigMap-netboot.yaml",
            # dnsmasq.conf's, named by its content (plans.netboot.base.dnsmasq_configmap).
            f"kubernetes/ainur/netboot/ConfigMap-{netboot.dnsmasq_configmap(netboot.dnsmasq_conf(load_stack_file(HOMELAB)))}.yaml",
            "kubernetes/ainur/netboot/DaemonSet-netboot-cache.yaml",
            "kubernetes/ainur/netboot/Deployment-git-mirror.yaml",
            "kubernetes/ainur/netboot/Deployment-netboot.yaml",
            # The namespace's default deny and the Git mirror's policy (plans.netpol).
            "kubernetes/ainur/netboot/NetworkPolicy-default-deny-ingress.yaml",
            "kubernetes/ainur/netboot/NetworkPolicy-git-mirror.yaml",
            # On Longhorn's encrypted class (plans.storage.encrypted_storage_class): the claim is named by its class.
            "kubernetes/ainur/netboot/PersistentVolumeClaim-git-mirror-longhorn-encrypted.yaml",
            "kubernetes/ainur/_cluster/StorageClass-longhorn-encrypted.yaml",
            "kubernetes/ainur/longhorn-system/Secret-longhorn-crypto.yaml",
            "kubernetes/ainur/netboot/Role-netboot-leases.yaml",
            "kubernetes/ainur/netboot/RoleBinding-netboot-leases.yaml",
            "kubernetes/ainur/netboot/Secret-talos-configs.yaml",
            "kubernetes/ainur/netboot/Service-git-mirror.yaml",
            "kubernetes/ainur/netboot/Service-netboot.yaml",
            "kubernetes/ainur/netboot/ServiceAccount-netboot.yaml",
            # The KMS Arda's disk encryption unlocks with (plans.kms): its key and certificate Secrets, the server's objects.
            "kubernetes/ainur/_cluster/Namespace-kms.yaml",
            *[
                f"kubernetes/ainur/kms/{name}.yaml"
                for name in (
                    "ConfigMap-kms-admitted",
                    "ConfigMap-kms-server",
                    "DaemonSet-kms",
                    "NetworkPolicy-kms",
                    "Secret-kms-key",
                    "Secret-kms-tls",
                    "Service-kms",
                    "ServiceAccount-kms",
                )
            ],
            # No pod reaches the Ainur's KMS: they masquerade as the machines it admits (plans.cilium.kms_egress_deny).
            "kubernetes/arda/_cluster/CiliumClusterwideNetworkPolicy-iluvatar-kms-no-pods.yaml",
            "kubernetes/arda/_cluster/CiliumL2AnnouncementPolicy-iluvatar-lan.yaml",
            "kubernetes/arda/_cluster/CiliumLoadBalancerIPPool-iluvatar-lan.yaml",
            # Each raw-port app's address in a pool of its own, for its Service alone (plans.cilium.app_pools).
            "kubernetes/arda/_cluster/CiliumLoadBalancerIPPool-iluvatar-lan-minecraft-lan.yaml",
            "kubernetes/arda/_cluster/CiliumLoadBalancerIPPool-iluvatar-lan-mosquitto-lan.yaml",
            "kubernetes/arda/kube-system/HelmRelease-cilium.yaml",
            # Arda's CoreDNS (plans.coredns): Talos's own objects, Talos's turned off.
            "kubernetes/arda/_cluster/ClusterRole-system:coredns.yaml",
            "kubernetes/arda/_cluster/ClusterRoleBinding-system:coredns.yaml",
            "kubernetes/arda/kube-system/ConfigMap-coredns.yaml",
            "kubernetes/arda/kube-system/Deployment-coredns.yaml",
            "kubernetes/arda/kube-system/NetworkPolicy-coredns.yaml",
            "kubernetes/arda/kube-system/Service-kube-dns.yaml",
            "kubernetes/arda/kube-system/ServiceAccount-coredns.yaml",
            # Storage: its charts as platform Applications, each after its privileged namespace.
            "kubernetes/ainur/_cluster/Namespace-longhorn-system.yaml",
            "kubernetes/ainur/argocd/Application-longhorn.yaml",
            *[f"kubernetes/ainur/_cluster/NodePatch-{n}.yaml" for n in ("manwe", "eonwe", "ilmare")],
            "kubernetes/arda/_cluster/Namespace-local-path-storage.yaml",
            "kubernetes/arda/_cluster/Namespace-rook-ceph.yaml",
            "kubernetes/arda/argocd/Application-local-path-provisioner.yaml",
            "kubernetes/arda/argocd/Application-rook-ceph-cluster.yaml",
            "kubernetes/arda/argocd/Application-rook-ceph.yaml",
            # GitOps: both Argo CDs (Helm releases), their projects and ApplicationSets.
            "kubernetes/ainur/argocd/AppProject-ainur.yaml",
            "kubernetes/ainur/argocd/AppProject-platform.yaml",
            "kubernetes/ainur/argocd/ApplicationSet-ainur.yaml",
            "kubernetes/ainur/argocd/HelmRelease-argocd.yaml",
            "kubernetes/ainur/argocd/Secret-argocd-redis.yaml",
            "kubernetes/arda/_cluster/Namespace-argocd.yaml",
            "kubernetes/arda/argocd/AppProject-arda.yaml",
            "kubernetes/arda/argocd/AppProject-platform.yaml",
            *[f"kubernetes/arda/argocd/ApplicationSet-{c}.yaml" for c in CATEGORIES],
            "kubernetes/arda/argocd/HelmRelease-argocd.yaml",
            "kubernetes/arda/argocd/Secret-argocd-redis.yaml",
            # Who reaches Argo CD's listeners on both clusters, the program's policies in place of its chart's
            # (plans.gitops.network_policies).
            *(
                f"kubernetes/{cluster}/argocd/NetworkPolicy-iluvatar-argocd-{name}.yaml"
                for cluster in ("arda", "ainur")
                for name in ("application-controller", "default-deny-ingress", "redis", "repo-server", "server")
            ),
            # Data safety (components.data): the Ainur's etcd snapshots to S3, Arda's talos-backup, ESO with one
            # store and reader per category that has app secrets, VolSync's restic Secret per backed-up volume, the
            # snapshot controller for Ceph.
            "kubernetes/ainur/kube-system/Secret-k3s-etcd-snapshot-s3.yaml",
            "kubernetes/arda/_cluster/Namespace-etcd-backup.yaml",
            "kubernetes/arda/etcd-backup/CronJob-talos-backup.yaml",
            "kubernetes/arda/etcd-backup/Secret-talos-backup-s3.yaml",
            "kubernetes/arda/etcd-backup/ServiceAccount-talos-backup.yaml",
            # The KMS key's age file and the CronJob that uploads it beside the etcd snapshots (plans.kms.backup_cronjob).
            "kubernetes/arda/etcd-backup/ConfigMap-kms-key-backup.yaml",
            "kubernetes/arda/etcd-backup/CronJob-kms-key-backup.yaml",
            "kubernetes/arda/_cluster/Namespace-external-secrets.yaml",
            "kubernetes/arda/external-secrets/HelmRelease-external-secrets.yaml",
            "kubernetes/arda/_cluster/Namespace-iluvatar-secrets.yaml",
            *[f"kubernetes/arda/iluvatar-secrets/Secret-{app}.yaml" for app in ("blog", "home-assistant", "jellyfin")],
            *[
                f"kubernetes/arda/{path}"
                for category in ("home-automation", "media", "selfhosted")
                for path in (
                    f"iluvatar-secrets/Role-category-{category}.yaml",
                    f"iluvatar-secrets/RoleBinding-category-{category}.yaml",
                    f"{category}/SecretStore-iluvatar.yaml",
                    f"{category}/ServiceAccount-iluvatar-secrets.yaml",
                )
            ],
            "kubernetes/arda/_cluster/Namespace-volsync-system.yaml",
            "kubernetes/arda/volsync-system/HelmRelease-volsync.yaml",
            # Prometheus alone reaches VolSync's metrics, which ask no token (plans.backup.network_policy).
            "kubernetes/arda/volsync-system/NetworkPolicy-volsync.yaml",
            "kubernetes/arda/home-automation/Secret-home-assistant-config-restic.yaml",
            "kubernetes/arda/media/Secret-jellyfin-config-restic.yaml",
            "kubernetes/arda/home-automation/Secret-mosquitto-data-restic.yaml",
            "kubernetes/arda/selfhosted/Secret-backups-minecraft-0-restic.yaml",
            "kubernetes/arda/argocd/Application-snapshot-controller.yaml",
            "kubernetes/arda/argocd/Application-snapshot-crds.yaml",
            # Monitoring (components.monitoring): kube-prometheus as a platform Application, the control plane's
            # metrics Services, the alerts, the receiver's and Grafana's Secrets, the Pis' node-exporter on the Ainur.
            "kubernetes/ainur/_cluster/Namespace-monitoring.yaml",
            "kubernetes/ainur/monitoring/DaemonSet-node-exporter.yaml",
            "kubernetes/arda/argocd/Application-kube-prometheus.yaml",
            "kubernetes/arda/kube-system/EndpointSlice-etcd.yaml",
            "kubernetes/arda/kube-system/Service-etcd.yaml",
            "kubernetes/arda/kube-system/Service-kube-controller-manager.yaml",
            "kubernetes/arda/kube-system/Service-kube-scheduler.yaml",
            # The Prometheus Operator's CRDs, right after Arda's API answers (its release's files).
            *[
                f"kubernetes/arda/_cluster/CustomResourceDefinition-{n[len('monitoring.coreos.com_') : -len('.yaml')]}.monitoring.coreos.com.yaml"
                for n in monitoring.CRD_FILES
            ],
            "kubernetes/arda/monitoring/PodMonitor-envoy-proxies.yaml",
            "kubernetes/arda/monitoring/Probe-headscale-certificate.yaml",
            "kubernetes/arda/monitoring/PrometheusRule-iluvatar-alerts.yaml",
            "kubernetes/arda/monitoring/ScrapeConfig-ainur-node-exporter.yaml",
            "kubernetes/arda/monitoring/Secret-alertmanager-iluvatar.yaml",
            "kubernetes/arda/monitoring/Secret-grafana-admin.yaml",
            "kubernetes/arda/monitoring/ServiceMonitor-envoy-gateway.yaml",
            # Logs (components.logs): the store, its admin key, its LAN Service and ServiceMonitor, the collector on both
            # clusters, vmalert; Grafana's dashboards (components.monitoring).
            "kubernetes/arda/monitoring/Secret-victoria-logs-auth.yaml",
            "kubernetes/arda/monitoring/StatefulSet-victoria-logs.yaml",
            "kubernetes/arda/monitoring/Service-victoria-logs.yaml",
            "kubernetes/arda/monitoring/Service-victoria-logs-lan.yaml",
            "kubernetes/arda/monitoring/ServiceMonitor-victoria-logs.yaml",
            # Who may reach the store and vmalert (plans.logs.store_network_policies, vmalert_network_policy).
            "kubernetes/arda/monitoring/NetworkPolicy-victoria-logs.yaml",
            # The API server's way to the metrics API adapter (plans.monitoring.adapter_api_server_policy).
            "kubernetes/arda/monitoring/CiliumNetworkPolicy-prometheus-adapter-api-server.yaml",
            "kubernetes/arda/monitoring/CiliumNetworkPolicy-victoria-logs-writers.yaml",
            "kubernetes/arda/monitoring/NetworkPolicy-vmalert-logs.yaml",
            "kubernetes/arda/monitoring/ConfigMap-log-collector.yaml",
            "kubernetes/arda/monitoring/DaemonSet-log-collector.yaml",
            "kubernetes/arda/monitoring/ConfigMap-vmalert-logs.yaml",
            "kubernetes/arda/monitoring/Deployment-vmalert-logs.yaml",
            # The pipeline's own metrics, for its alerts: the collectors on both clusters, vmalert.
            "kubernetes/arda/monitoring/PodMonitor-log-collector.yaml",
            "kubernetes/arda/monitoring/ScrapeConfig-ainur-log-collector.yaml",
            "kubernetes/arda/monitoring/Service-vmalert-logs.yaml",
            "kubernetes/arda/monitoring/ServiceMonitor-vmalert-logs.yaml",
            "kubernetes/ainur/monitoring/ConfigMap-log-collector.yaml",
            "kubernetes/ainur/monitoring/DaemonSet-log-collector.yaml",
            # Who reaches Longhorn's listeners, its API first (plans.storage.longhorn_network_policies).
            *(
                f"kubernetes/ainur/longhorn-system/NetworkPolicy-{name}.yaml"
                for name in (
                    "backing-image-data-source",
                    "backing-image-manager",
                    "instance-manager",
                    "longhorn-admission-webhook",
                    "longhorn-manager",
                    "longhorn-recovery-backend",
                    "longhorn-support-bundle-manager",
                    "longhorn-ui",
                )
            ),
            "kubernetes/arda/monitoring/ConfigMap-grafana-dashboard-iluvatar.yaml",
            # The restore drills (components.data, plans.drill): each volume's beside its restic Secret, each etcd's apart.
            # The drills' scratch class: ceph-block's, deleting a drill's copy with its claim.
            "kubernetes/arda/_cluster/StorageClass-drill-scratch-ceph-block.yaml",
            "kubernetes/arda/home-automation/CronJob-drill-home-assistant-config.yaml",
            "kubernetes/arda/media/CronJob-drill-jellyfin-config.yaml",
            "kubernetes/arda/home-automation/CronJob-drill-mosquitto-data.yaml",
            "kubernetes/arda/selfhosted/CronJob-drill-backups-minecraft-0.yaml",
            "kubernetes/arda/_cluster/Namespace-backup-drill.yaml",
            "kubernetes/arda/backup-drill/CronJob-drill-etcd-arda.yaml",
            "kubernetes/arda/backup-drill/CronJob-drill-etcd-ainur.yaml",
            "kubernetes/arda/backup-drill/CronJob-drill-kms-key.yaml",
            # Headscale's state restore drill and its copy of the state repository's Secret (plans.drill).
            "kubernetes/arda/backup-drill/CronJob-drill-headscale.yaml",
            "kubernetes/arda/backup-drill/Secret-drill-headscale-restic.yaml",
            "kubernetes/arda/backup-drill/PersistentVolumeClaim-drill-tools.yaml",
            "kubernetes/arda/backup-drill/Secret-drill-age-identity.yaml",
            "kubernetes/arda/backup-drill/Secret-drill-s3.yaml",
            "kubernetes/arda/monitoring/ServiceMonitor-etcd.yaml",
            # Sign-in (components.identity): Dex and the front door on the Ainur, each group's binding on both
            # clusters, both Argo CDs' OIDC Secrets, Arda's Argo CD's route, Headlamp's Application and Secrets.
            "kubernetes/ainur/_cluster/ClusterRole-iluvatar-dex.yaml",
            "kubernetes/ainur/_cluster/ClusterRoleBinding-iluvatar-dex.yaml",
            "kubernetes/ainur/_cluster/Namespace-identity.yaml",
            *[
                f"kubernetes/{cluster}/_cluster/ClusterRoleBinding-oidc-example-{group}.yaml"
                for cluster in ("ainur", "arda")
                for group in ("family-1932009a", "homelab-admins-160d2a38")
            ],
            "kubernetes/ainur/argocd/Secret-argocd-oidc.yaml",
            "kubernetes/ainur/argocd/Secret-argocd-server-tls.yaml",
            *[
                f"kubernetes/ainur/identity/{name}.yaml"
                for name in (
                    "ConfigMap-front-door",
                    "Deployment-dex",
                    "Deployment-front-door",
                    # Every listener's policy (plans.netpol): the namespace's default deny, Dex's, the front door's.
                    "NetworkPolicy-default-deny-ingress",
                    "NetworkPolicy-dex",
                    "NetworkPolicy-front-door",
                    "Role-dex",
                    "RoleBinding-dex",
                    "Secret-dex-config",
                    "Secret-dex-tls",
                    "Service-dex",
                    "Service-front-door",
                    "ServiceAccount-dex",
                )
            ],
            "kubernetes/arda/argocd/Application-headlamp.yaml",
            "kubernetes/arda/argocd/HTTPRoute-argocd-server.yaml",
            "kubernetes/arda/argocd/Secret-argocd-oidc.yaml",
            "kubernetes/arda/system/ConfigMap-iluvatar-ca.yaml",
            "kubernetes/arda/system/Secret-headlamp-oidc.yaml",
        ]
    )
    release = yaml.safe_load(files["kubernetes/arda/kube-system/HelmRelease-cilium.yaml"])
    assert (release["chart"], release["version"], release["repository"]) == ("cilium", "1.18.4", "https://helm.cilium.io")
    assert release["values"]["kubeProxyReplacement"] is True


def test_plan_is_a_tree_with_counts(homelab: Path) -> None:
    text = (homelab / "plan.txt").read_text()
    lines = render.plan_entries(text)
    assert lines[0] == "stack homelab"
    assert "  arda  (iluvatar:arda:TalosCluster)" in lines
    assert "    arda-tirion  (iluvatar:arda:TalosNode)" in lines
    # Every dependency the engine sees: depends_on (after), the inputs each came through, the provider.
    assert (
        "      arda-tirion-apply  (command:local:Command) [replace on changes: triggers[*]] [timeouts: create 50m, update 50m]"
        " [after: arda-config-schematic-generic-x86, arda-taniquetil-apply, netboot-daemonset-netboot-cache, netboot-deployment-netboot,"
        " netboot-service-netboot]"
        " [inputs: arda-config-secrets (stdin), edge-certificates-ca-cert (stdin)]"
        " [provider: arda-command]"
    ) in lines
    assert (
        "    arda-config-secrets  (talos:machine/secrets:Secrets) [protected] [ignore changes: talosVersion]"
        " [secret outputs: clientConfiguration, machineSecrets] [provider: arda-config-talos]"
    ) in lines
    assert "    arda-kubernetes  (pulumi:providers:kubernetes) [after: arda-gate-api] [inputs: arda-kubeconfig (kubeconfig)]" in lines
    outputs, counts = text.split("\n\noutputs\n", 1)[1].split("\n\nresources\n", 1)
    assert "  ardaKubeconfig: [secret]" in outputs.splitlines() and "  ainurKubeconfig: [secret]" in outputs.splitlines()
    # (plans.agent_token: the ca-hash step and each maia's token id, secret and Secret: 7 of them.)
    # (#54: the log store's and vmalert's policies, the Ainur's Node registration policy and its binding, the gate before
    # the CiliumNetworkPolicy: 6.)
    # (#55: the KMS, its component, random provider and key, its certificate's three, its eight objects: 14.)
    # (#54: each listener's NetworkPolicy, the Ainur's identity namespace 3, netboot 2, CoreDNS and cloudflared: 7.)
    # (#56's fixes: each raw-port app's own pool 2; the broker's claim and the Minecraft world's archives backed up, each
    # its restic Secret, password and drill: 6.)
    # (#57: each Pi's netboot gate after its k3s step, plans.netboot.roll.netboot_ready_script: 3.)
    # (#55: the KMS's list of admitted machines, Arda's policy keeping pods from the KMS: 2.)
    # (#53: dnsmasq.conf's own ConfigMap, named by its content, which only the netboot pod's template reads, and
    # netboot-router-off in dhcp mode, which reads the move from the running Deployment: 2.)
    # (#54: Longhorn's NetworkPolicies: 7. The metrics API adapter's CiliumNetworkPolicy and its gate: 2. Argo CD's
    # NetworkPolicies, 5 on each cluster: 10.)
    # (#56: the homelab's remote access, Headscale and its subnet router on the Ainur: the component, eleven objects, the
    # gate before Headscale's claim on Longhorn, and the steps that make its users and enrol the router: 15.)
    # (#57: Headscale's state backup, its Secret, random provider, password, CronJob, account, role and binding: 7. Then
    # the admission policy and its binding that hold the backup's stamp to its annotation: 2.)
    # (Headscale's restore drill on Arda, its CronJob and its copy of the restic Secret: 2.)
    # (#54: the log store's admin key, its random provider, password and Secret: 3. Longhorn's support-bundle manager's
    # NetworkPolicy: 1.)
    # (#55: the KMS key's age file on Arda, the CronJob that uploads it, its restore drill: 3.)
    # (#55: the step that rewrites the Ainur's Secrets under k3s's key once the valar run with it: 1. Longhorn's
    # encrypted class, its Secret, the random provider and protected passphrase: 4.)
    # (#54: the NetworkPolicy before VolSync's chart, admitting Prometheus alone to its tokenless metrics: 1.)
    # (#53: the roll of kube-vip-services, the Pi holding the service address last: 1.)
    # (#57: the blackbox probe of Headscale's certificate: 1.)
    # (#58: ainur-secrets-on, kept while the flag is on: 1.)
    # (#58: the step that takes back a NodePort a gateway's proxy Service still holds: 1.)
    assert counts.splitlines()[-1] == "  total: 422"
    # (#56: the raw-port apps' Ports component, its gate before their CiliumNetworkPolicies, and minecraft's and
    # mosquitto's Service and policy: 6.)
    # 20: the 13 bring-up steps and gates, the data layer's three gates (ESO's webhook, Talos's API access for talos-backup, the drill's tools
    # claim's class), the log store's storage gate
    # and monitoring's CRD gate, the gate before the log store's CiliumNetworkPolicy and the one before the raw-port apps'
    # (and Headscale's storage gate, 21). 16 remote: each Pi's join, k3s and
    # uninstall steps, the credentials, the valar's sign-in
    # config, each Pi's journal forwarder (plans.logs.journal_upload_script), the clearance before netboot-cache's
    # roll (plans.netboot.cache.clearance_script), the CA hash the maiar's tokens pin (plans.agent_token), and the DHCP
    # probe before dnsmasq serves (plans.netboot.dhcp_probe); and each Pi's netboot gate after its k3s step (3); and in
    # dhcp mode netboot-router-off before the netboot pod (#53). 21 local since the gate before the metrics API adapter's
    # CiliumNetworkPolicy (#54), 22 with Headscale's storage gate; and remote access's users and router steps on the
    # first valar: 23 remote (#56); and the rewrite of the Ainur's Secrets under k3s's key (plans.k3s.secrets_rewrite_script): 24 (#55); and kube-vip-services' roll
    # (plans.netboot.vip_roll): 25 (#53); and the step that turns a config k3s kept from a disable back on, kept while
    # the flag is on (plans.k3s.secrets_on_script): 26. 23 local with the step that takes back the gateways' NodePorts
    # (plans.gateways.node_port_release).
    assert {"  command:local:Command: 23", "  command:remote:Command: 26", "  iluvatar:logs:Logs: 1", "  iluvatar:edge:Ports: 1"} <= set(
        counts.splitlines()
    )
    assert "  random:index/randomString:RandomString: 2" in counts.splitlines()  # each maia's token id
    assert sum(int(line.rsplit(" ", 1)[1]) for line in counts.splitlines()[:-1]) == 422


def test_no_line_of_the_plan_is_longer_than_its_width(homelab: Path) -> None:
    """The homelab's longest line was 3,042 characters (the counts) and its longest resource 1,022 (a gate's `after`)."""
    text = (homelab / "plan.txt").read_text()
    assert max(len(line) for line in text.splitlines()) <= render.WIDTH == 160
    # Wrapped, not cut: the gate's whole `after` list is there, one dependency a line.
    gate = next(e for e in render.plan_entries(text) if e.startswith("    arda-monitoring-gate-crds  "))
    assert gate.count("arda-monitoring-crds-customresourcedefinition-") == 10
    assert "        [after: arda-monitoring-crds-customresourcedefinition-alertmanagerconfigs.monitoring.coreos.com," in text.splitlines()


def test_a_resource_line_wraps_at_its_flags_then_between_words() -> None:
    head = "  r  (t:m:T)"
    assert render.wrap_entry(head, ["protected", "after: a, b"], 2, width=40) == ["  r  (t:m:T) [protected] [after: a, b]"]
    assert render.wrap_entry(head, ["protected", "after: " + "x" * 30], 2, width=45) == [
        "  r  (t:m:T) [protected]",
        "      [after: " + "x" * 30 + "]",
    ]
    assert render.wrap_entry(head, ["after: aaaa, bbbb, cccc, dddd, eeee, ffff"], 2, width=30) == [
        "  r  (t:m:T)",
        "      [after: aaaa, bbbb,",
        "        cccc, dddd, eeee,",
        "        ffff]",
    ]
    # A word wider than a line is cut, so that no line is wider than the width.
    assert render.wrap_entry(head, ["aliases: " + "u" * 30], 2, width=24) == [
        "  r  (t:m:T)",
        "      [aliases:",
        "        uuuuuuuuuuuuuuuu",
        "        uuuuuuuuuuuuuu]",
    ]


# Rendering the homelab twice writes the same bytes: tests/test_program.py's
# test_render_is_byte_identical_across_processes_and_hash_seeds[homelab] renders it in two processes with different
# string hashing and compares every file (a third `iluvatar render homelab` here, 2.8 s of CPU, checked the same).


def test_rendered_artifacts_pass_the_real_tools(homelab: Path, tmp_path: Path) -> None:
    assert dnsmasq_test((homelab / "netboot/dnsmasq.conf").read_text(), tmp_path).returncode == 0
    for path in sorted((homelab / "ainur").glob("*.user-data")):
        result = cloud_init_schema(path.read_text(), tmp_path, path.name)
        assert result.returncode == 0, result.stdout + result.stderr
    networks = sorted((homelab / "ainur").glob("*.network-config"))
    assert len(networks) == 3
    for path in networks:
        result = cloud_init_network_schema(path.read_text(), tmp_path, path.name)
        assert result.returncode == 0, result.stdout + result.stderr
    for path in sorted((homelab / "talos").iterdir()):
        for doc in yaml.safe_load_all(path.read_text()):
            assert talos_errors(doc) == [], (path.name, doc)


def test_no_secret_in_clear_anywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    canaries = {"token": "CANARY-K3S-TOKEN-5f2a9c", "key": "CANARY-TALOS-CA-KEY-81bd"}
    monkeypatch.setitem(simulate.RESOURCE_STATE, "random:index/randomPassword:RandomPassword", lambda a: {"result": canaries["token"]})
    secrets_state = simulate.RESOURCE_STATE["talos:machine/secrets:Secrets"]
    monkeypatch.setitem(
        simulate.RESOURCE_STATE,
        "talos:machine/secrets:Secrets",
        lambda a: {**secrets_state(a), "clientConfiguration": {"caCertificate": "c", "clientCertificate": "c", "clientKey": canaries["key"]}},
    )
    doc = edit(homelab_doc(), {"iluvatar:ainurSshPrivateKey": {"secure": ciphertext("CANARY-CIPHERTEXT")}})
    sim = simulate.simulate(read_stack_file(write_stack(tmp_path, doc, stack="homelab")))
    joins = [r for r in sim.registrations if r.name.endswith("-join")]
    # The valar's joins carry the server token; each maia's its own (plans.agent_token), whose secret half must not leak either.
    valar = [r for r in joins if r.name == "ainur-manwe-join"]
    assert valar and all(canaries["token"] in r.inputs["stdin"].value for r in valar), "the canary must flow through the program"
    own = [re.search(r"K10[0-9a-f]{64}::[a-z0-9]{6}\.([a-z0-9]{16})", r.inputs["stdin"].value) for r in joins if r not in valar]
    assert len(own) == 2 and all(own), "each maia's own token must flow through the program"
    # Longhorn's passphrase, a random password too, reaches its Secret (plans.storage.crypto_secret), never a file.
    crypto = [r for r in sim.registrations if r.type == "kubernetes:core/v1:Secret" and r.name.endswith("longhorn-crypto")]
    assert len(crypto) == 1 and canaries["token"] in str(crypto[0].inputs["stringData"].value)
    files = render_files(sim)
    for rel, content in files.items():
        for canary in (*canaries.values(), ciphertext("CANARY-CIPHERTEXT"), *(m.group(1) for m in own if m)):
            assert canary not in content, f"{canary} in clear in {rel}"


def test_rk1_renders_talos_only(tmp_path: Path, render_here: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    out = tmp_path / "rk1"
    assert render_here("rk1", "--out", str(out)).returncode == 0
    files = tree(out)
    assert sorted(f for f in files if f.startswith("talos/")) == [f"talos/talos-{i}.patch.yaml" for i in range(1, 5)]
    assert not any(f.startswith(("ainur/", "netboot/", "kubernetes/ainur/")) for f in files)
    assert b"allowSchedulingOnControlPlanes: true" in files["talos/talos-1.patch.yaml"]
    # RK1 modules are flashed: each one's Image Factory disk image, with the board's overlay schematic.
    rows = files["flash/disk-images.csv"].decode().splitlines()
    assert rows[0] == "node,disk_image"
    assert [r.split(",")[0] for r in rows[1:]] == [f"talos-{i}" for i in range(1, 5)]
    assert all(r.split(",")[1].startswith("https://factory.talos.dev/image/") and r.endswith("/v1.14.1/metal-arm64.raw.xz") for r in rows[1:])


def test_rk1_render_flashes_the_image_image_factory_names() -> None:
    """Issue #38: the disk image the render tells an RK1 user to flash, before any `pulumi up`, is named by the ID
    Image Factory's own code gives the schematic the program hands the provider (tools/talos-check/schematic-id)."""
    sim = simulated(RK1)
    (named,) = schematic_id.name([sim.named()["arda-config-schematic-rk1"].inputs["schematic"]])
    assert named.id, named
    files = render_files(sim)
    image = f"https://factory.talos.dev/image/{named.id}/v1.14.1/metal-arm64.raw.xz"
    assert files["flash/disk-images.csv"].splitlines() == ["node,disk_image", *(f"talos-{i},{image}" for i in range(1, 5))]
    # The installer each machine installs with is the same schematic's.
    assert f"    image: factory.talos.dev/metal-installer/{named.id}:v1.14.1\n" in files["talos/talos-1.patch.yaml"]
    # What to POST to Image Factory before downloading (it serves images only for a schematic it was sent): the body the provider POSTs.
    assert sorted(f for f in files if f.startswith("flash/")) == ["flash/disk-images.csv", "flash/schematic-rk1.yaml"]
    assert files["flash/schematic-rk1.yaml"] == named.body


def test_unknown_stack(tmp_path: Path, render_here: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    # As a process (exit status 2 and this line from the installed command): test_cli's test_stack_argument_errors_are_one_line.
    result = render_here("prod", "--out", str(tmp_path / "x"))
    assert result.returncode == 2
    assert result.stderr == "error: no stack 'prod': Pulumi.prod.yaml does not exist (stacks here: homelab, rk1)\n"


def test_invalid_stack_reports_like_validate(
    tmp_path: Path, render_here: Callable[..., subprocess.CompletedProcess[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    # Both commands in this process (`cli.run` exits with what `main` returns): an invalid stack's exit status 1 and its
    # problems on stderr from the installed command are test_cli's test_invalid_stack_exits_1_with_every_problem.
    project = tmp_path / "project"
    project.mkdir()
    path = write_stack(project, edit(homelab_doc(), {"iluvatar:nodes[3].ip": "192.168.1.5"}), stack="broken")
    rendered = render_here("broken", "--project", str(project), "--out", str(tmp_path / "out"))
    validated_code = cli.main(["validate", str(path)])
    validated_out, validated_err = capsys.readouterr()
    assert (rendered.returncode, rendered.stdout, validated_code, validated_out) == (1, "", 1, "")
    assert rendered.stderr == validated_err
    assert "iluvatar:nodes[3].ip: 192.168.1.5 is outside network.lan 192.168.0.0/24" in rendered.stderr
    assert not (tmp_path / "out").exists()


def test_non_empty_output_needs_force(tmp_path: Path, render_here: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    refused = render_here("rk1", "--out", str(out))
    assert refused.returncode == 2
    assert refused.stderr == f"error: {out} exists and is not empty; pass --force to replace it\n"
    assert (out / "keep.txt").read_text() == "mine"
    forced = render_here("rk1", "--out", str(out), "--force")
    assert forced.returncode == 0
    assert not (out / "keep.txt").exists() and (out / "plan.txt").exists()


def test_unwritable_path_is_one_line(tmp_path: Path, render_here: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = render_here("rk1", "--out", str(blocker / "out"))
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: cannot write to {blocker}") and result.stderr.count("\n") == 1


def test_a_failed_write_leaves_nothing_half_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import iluvatar.render as render

    written: list[str] = []

    def failing(files: dict[str, str], out: Path) -> None:
        for i, (rel, content) in enumerate(files.items()):
            if i == 5:
                raise OSError(28, "No space left on device")
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            (out / rel).write_text(content)
            written.append(rel)

    monkeypatch.setattr(render, "write_tree", failing)
    out = tmp_path / "out"
    assert cli.main(["render", "rk1", "--out", str(out)]) == 2
    assert len(written) == 5
    assert capsys.readouterr().err == f"error: cannot write {out}: No space left on device\n"
    assert list(tmp_path.iterdir()) == [], "no output and no staging folder may remain"


def test_configs_csv_lists_every_served_path(homelab: Path) -> None:
    rows = (homelab / "netboot/configs.csv").read_text().splitlines()
    assert rows[0] == "mac,node,ip,ipxe_script,talos_config"
    assert "a8-b8-e0-20-00-02,tirion,192.168.0.22,/ipxe/a8-b8-e0-20-00-02.ipxe,/configs/a8-b8-e0-20-00-02.yaml" in rows
    assert len(rows) == 1 + len(netboot.netboot_nodes(__import__("stacks").load_stack_file(HOMELAB)))
    assert RK1.exists()


def test_numbers_render_as_written(homelab: Path, tmp_path: Path) -> None:
    """Integers stay integers (the wire format made them 7445.0); a user's fraction stays a fraction."""
    release = (homelab / "kubernetes/arda/kube-system/HelmRelease-cilium.yaml").read_text()
    assert "\n  k8sServicePort: 7445\n" in release
    assert "\n    qps: 20\n" in release and "\n    burst: 40\n" in release
    assert "\n  replicas: 1\n" in (homelab / "kubernetes/ainur/netboot/Deployment-netboot.yaml").read_text()
    assert "containerPort: 9418\n" in (homelab / "kubernetes/ainur/netboot/Deployment-git-mirror.yaml").read_text()
    everything = "".join(p.read_text() for p in sorted(homelab.rglob("*.yaml")))
    assert re.findall(r"^\s*[\w.-]+: -?\d+\.0$", everything, re.MULTILINE) == []
    doc = edit(homelab_doc(), {"iluvatar:arda.cilium": {"values": {"bpf": {"mapDynamicSizeRatio": 0.0025}, "operator": {"replicas": 1}}}})
    files = render_files(simulate.simulate(read_stack_file(write_stack(tmp_path, doc, stack="homelab"))))
    values = yaml.safe_load(files["kubernetes/arda/kube-system/HelmRelease-cilium.yaml"])["values"]
    assert (values["bpf"]["mapDynamicSizeRatio"], values["operator"]["replicas"]) == (0.0025, 1)
    assert (type(values["bpf"]["mapDynamicSizeRatio"]), type(values["operator"]["replicas"])) == (float, int)


def test_the_minimal_example_renders_and_its_artifacts_pass_the_real_tools(
    tmp_path: Path, render_here: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    """examples/Pulumi.minimal.yaml, the smallest useful homelab: one Pi serving the LAN, one machine netbooting from it."""
    out = tmp_path / "minimal"
    result = render_here(str(MINIMAL), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"rendered stack minimal to {out}: {len(tree(out))} files",
        "next:",
        f"  read {out}/plan.txt: every resource `pulumi up` would create, and what each waits for",
        f"  flash each Pi (pi) with Ubuntu Server, then its {out}/ainur/<pi>.user-data and .network-config (docs/layers/ainur.md#flashing-the-pis)",
        "  then: `pulumi stack select --create minimal` (makes the stack the first time), `pulumi preview`, `pulumi up` (docs/bring-up.md)",
    ]
    files = tree(out)
    assert sorted(f for f in files if f.startswith(("ainur/", "talos/", "netboot/ipxe/"))) == [
        "ainur/pi.network-config",
        "ainur/pi.user-data",
        "netboot/ipxe/a8-b8-e0-20-00-01.ipxe",
        "netboot/ipxe/boot.ipxe",
        "talos/node.patch.yaml",
    ]
    assert max(len(line) for line in files["plan.txt"].decode().splitlines()) <= render.WIDTH
    assert dnsmasq_test(files["netboot/dnsmasq.conf"].decode(), tmp_path).returncode == 0
    checked = cloud_init_schema(files["ainur/pi.user-data"].decode(), tmp_path, "pi.user-data")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert cloud_init_network_schema(files["ainur/pi.network-config"].decode(), tmp_path, "pi.network-config").returncode == 0


def test_outputs_json_is_what_pulumi_stack_output_json_prints(homelab: Path) -> None:
    outputs = json.loads((homelab / "outputs.json").read_text())
    assert outputs["ardaKubeconfig"] == "[secret]" and outputs["ainurKubeconfig"] == "[secret]"
    assert outputs["arda"]["order"] == ["taniquetil", "tirion", "alqualonde", "gandalf", "saruman"]
    assert not (homelab / "rollout.txt").exists()


def test_a_render_against_its_own_outputs_shows_no_change(
    homelab: Path, tmp_path: Path, render_here: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    result = render_here("homelab", "--out", str(tmp_path / "again"), "--previous", str(homelab / "outputs.json"), "--on", "2026-11-25")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "again" / "rollout.txt").read_text() == "Arda: no change on any machine\n"
    lines, out = result.stdout.splitlines(), tmp_path / "again"
    assert lines[lines.index("next:") - 1 :] == [
        "Arda: no change on any machine",
        "next:",
        f"  read {out}/rollout.txt (above) and {out}/plan.txt: what this change does to each machine",
        "  then: `pulumi preview`, and `pulumi up` (docs/day2.md#what-a-change-to-arda-does)",
    ]


def test_a_render_against_an_older_deployment_shows_the_rollout_in_order(
    homelab: Path, tmp_path: Path, render_here: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    previous = json.loads((homelab / "outputs.json").read_text())
    for node in previous["arda"]["nodes"].values():
        node["installer"] = node["installer"].replace(":v1.14.1", ":v1.13.9")
    previous["arda"]["talosVersion"] = "v1.13.9"
    (tmp_path / "old.json").write_text(json.dumps(previous))
    result = render_here("homelab", "--out", str(tmp_path / "day2"), "--previous", str(tmp_path / "old.json"), "--on", "2026-11-25")
    assert result.returncode == 0, result.stderr
    rollout = (tmp_path / "day2" / "rollout.txt").read_text().splitlines()
    # Talos 1.14 moves etcd to 3.7 (plans.rollout.describe_etcd): an etcd snapshot first, then the move, said (#57).
    assert rollout[0].startswith("Arda: first an etcd snapshot from the first control plane to .iluvatar/snapshots/arda-etcd-before-talos-v1.13.9-")
    assert rollout[1].startswith("Arda: etcd v3.6.12 -> v3.7.1 with Talos v1.14.1 (its default etcd, a new minor): after the etcd snapshot above")
    assert rollout[3:] == [
        f"  {i}. {n}: Talos v1.13.9 -> v1.14.1" for i, n in enumerate(["taniquetil", "tirion", "alqualonde", "gandalf", "saruman"], 1)
    ]


def test_a_chart_null_or_missing_in_the_recorded_charts_is_warned_of(homelab: Path, tmp_path: Path) -> None:
    """A chart the outputs' `charts` lack, or hold null for, is unknown: warned of by name, as a whole missing `charts`
    is, never read as nothing to check. Argo CD's is expected only from a deployment that exported gitopsRepoUrls."""
    previous = json.loads((homelab / "outputs.json").read_text())
    previous["arda"]["charts"] = {"cilium": None}
    (tmp_path / "old.json").write_text(json.dumps(previous))
    result = run("render", "homelab", "--out", str(tmp_path / "day2"), "--previous", str(tmp_path / "old.json"), "--on", "2026-11-25")
    assert result.returncode == 0, result.stderr
    unchecked = (
        "could not be checked against the release running: the last deployment's outputs record no arda.charts.{0} (every "
        "deployment of this Iluvatar records each chart it installs there: the outputs were edited or cut), and {1}'s chart is "
        "not rolled back{3}; check with `helm list -A` on Arda that its {1} release is not newer than {2} (if it is, write that "
        "release or a newer one){4}; the next `pulumi up` records it"
    )
    minor, older = ", nor upgraded across a minor", ", nor older than 1.17 (if it is, write its next minor's release first)"
    assert result.stderr.splitlines() == [
        "warning: iluvatar:arda.cilium.version: 1.18.4 " + unchecked.format("cilium", "Cilium", "1.18.4", minor, older),
        "warning: iluvatar:gitops.argocd.version: 10.8.0 " + unchecked.format("argocd", "Argo CD", "10.8.0", "", ""),
    ]
    # The last deployment ran no GitOps: Argo CD's chart goes in new, nothing to check.
    del previous["gitopsRepoUrls"]
    previous["arda"]["charts"] = {"cilium": "1.18.4"}
    (tmp_path / "old.json").write_text(json.dumps(previous))
    result = run("render", "homelab", "--out", str(tmp_path / "day2b"), "--previous", str(tmp_path / "old.json"), "--on", "2026-11-25")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_a_render_says_the_programs_warnings_as_validate_does(homelab: Path, tmp_path: Path) -> None:
    """The program's warnings (pulumi.log.warn, which the mocks hand to Python's logging) come out of a render as
    `validate` prints its own, `warning: ` first. Here the chart check outputs from before `arda.charts` cannot make."""
    previous = json.loads((homelab / "outputs.json").read_text())
    del previous["arda"]["charts"]
    (tmp_path / "old.json").write_text(json.dumps(previous))
    result = run("render", "homelab", "--out", str(tmp_path / "day2"), "--previous", str(tmp_path / "old.json"), "--on", "2026-11-25")
    assert result.returncode == 0, result.stderr
    unchecked = (
        "could not be checked against the release running: the last deployment's outputs record no arda.charts (an older "
        "Iluvatar wrote them), and {0}'s chart is not rolled back{2}; check with `helm list -A` on Arda that its {0} release is not "
        "newer than {1} (if it is, write that release or a newer one){3}; the next `pulumi up` records it"
    )
    minor, older = ", nor upgraded across a minor", ", nor older than 1.17 (if it is, write its next minor's release first)"
    assert result.stderr.splitlines() == [
        "warning: iluvatar:arda.cilium.version: 1.18.4 " + unchecked.format("Cilium", "1.18.4", minor, older),
        "warning: iluvatar:gitops.argocd.version: 10.8.0 " + unchecked.format("Argo CD", "10.8.0", "", ""),
    ]


@pytest.mark.parametrize("null", [False, True], ids=["missing", "null"])
def test_a_moved_pool_is_said_against_outputs_from_before_arda_recorded_it(
    homelab: Path, tmp_path: Path, render_here: Callable[..., subprocess.CompletedProcess[str]], null: bool
) -> None:
    """Outputs from before the `arda` output recorded the pool (and the cluster's name) still say them at the top level
    (`loadBalancerPool`, `gateways`, `vips`): the move is said, and the same name is no rename. A null `arda.pool` reads as
    a missing one, as the program reads every null part of its outputs back."""
    previous = json.loads((homelab / "outputs.json").read_text())
    del previous["arda"]["pool"], previous["arda"]["clusterName"]
    if null:
        previous["arda"]["pool"] = previous["arda"]["clusterName"] = None
    previous["loadBalancerPool"] = {"start": "192.168.0.200", "end": "192.168.0.219"}
    previous["gateways"] = {"envoy-external": "192.168.0.219", "envoy-internal": "192.168.0.218"}
    (tmp_path / "old.json").write_text(json.dumps(previous))
    result = render_here("homelab", "--out", str(tmp_path / "day2"), "--previous", str(tmp_path / "old.json"), "--on", "2026-11-25")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "day2" / "rollout.txt").read_text().splitlines() == [
        "Arda: no change on any machine",
        "Arda: network.loadBalancerPool moves 192.168.0.200-192.168.0.219 -> 192.168.0.220-192.168.0.239: envoy-external "
        "192.168.0.219 -> 192.168.0.239, envoy-internal 192.168.0.218 -> 192.168.0.238; Cilium gives the Services their new "
        "addresses in this `up`, and the internal zone's records and the remote-access routes to them follow; anything that holds "
        "an old address outside the stack (the router's port forwards to envoy-external, a device's cached DNS answer, a bookmark "
        "by address) reaches nothing until it is changed",
    ]


def test_a_version_change_no_machine_could_make_is_refused_offline_too(
    homelab: Path, tmp_path: Path, render_here: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    previous = json.loads((homelab / "outputs.json").read_text())
    previous["arda"]["kubernetesVersion"] = "v1.32.0"
    (tmp_path / "old.json").write_text(json.dumps(previous))
    result = render_here("homelab", "--out", str(tmp_path / "day2"), "--previous", str(tmp_path / "old.json"))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "stack homelab: 1 problem:",
        "  iluvatar:arda.kubernetesVersion: v1.35.1 skips a minor: Arda runs v1.32.0, and Kubernetes upgrades one minor at a time (v1.33 first)",
    ]
    assert not (tmp_path / "day2").exists()


@pytest.mark.parametrize(
    ("content", "message"), [("{", "not JSON (Expecting property name enclosed in double quotes at line 1)"), ("[]", "not the outputs of a stack")]
)
def test_a_previous_that_is_no_outputs_file_is_one_line(
    tmp_path: Path, content: str, message: str, render_here: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    (tmp_path / "bad.json").write_text(content)
    result = render_here("homelab", "--out", str(tmp_path / "x"), "--previous", str(tmp_path / "bad.json"))
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: --previous {tmp_path / 'bad.json'}: {message}")


def test_a_previous_in_utf16_or_with_a_byte_order_mark_is_read_as_written(homelab: Path, tmp_path: Path) -> None:
    """Windows PowerShell 5.1's `>` writes `pulumi stack output --json` in UTF-16 with a byte-order mark, and some editors
    save UTF-8 with one (which RFC 8259 section 8.1 lets a parser ignore): the same outputs, read as such, as is UTF-32,
    which json.loads reads too and the message names. Text in none of them is one line naming the file and the fix, not
    a traceback."""
    text = (homelab / "outputs.json").read_text()
    encodings = ("utf-16", "utf-16-be", "utf-32", "utf-32-le")
    for encoded in (*(text.encode(e) for e in encodings), b"\xef\xbb\xbf" + text.encode()):
        (tmp_path / "old.json").write_bytes(encoded)
        assert cli._previous_outputs(tmp_path / "old.json") == json.loads(text)
    (tmp_path / "old.json").write_bytes(text.replace('"lan"', '"l\u00e4n"').encode("latin-1"))
    with pytest.raises(cli.CommandError) as refused:
        cli._previous_outputs(tmp_path / "old.json")
    assert str(refused.value) == (
        f"--previous {tmp_path / 'old.json'}: not text in UTF-8, UTF-16 or UTF-32; write it with `pulumi stack output --json --show-secrets > old.json`"
    )


SHOW = "write the outputs with `pulumi stack output --json --show-secrets`"
WRITTEN = "give the outputs `pulumi stack output --json` writes"
PART = "a part of a deployment's outputs, not all of them: it lacks "
NEVER = "planned from them, what a missing output records reads as never deployed"
ALL = "write them all with `pulumi stack output --json --show-secrets > file`"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda o: o.update(arda="[secret]"),
            f'arda is "[secret]", as `pulumi stack output --json` writes a secret without --show-secrets, and the day-2 checks read it; {SHOW}',
        ),
        (
            lambda o: o.update(ainur="[secret]", dnsmasqConf="[secret]"),
            f'ainur and dnsmasqConf are "[secret]", as `pulumi stack output --json` writes a secret without --show-secrets, and the day-2 checks read them; {SHOW}',
        ),
        (
            lambda o: o["arda"].update(nodes="[secret]"),
            f'arda.nodes is "[secret]", as `pulumi stack output --json` writes a secret without --show-secrets, and the day-2 checks read it; {SHOW}',
        ),
        (lambda o: o.update(storage=5), f"storage is 5, not a mapping, as this program writes it; {WRITTEN}"),
        # An output encoded twice, and a long one of another type: the echo is cut to its head and its length.
        (
            lambda o: o.update(storage=json.dumps({"classes": {"ceph-block": "x" * 100}})),
            'storage is a string holding JSON ("{\\"classes\\": {\\"ceph-block\\": \\"xxxxxxxxxxxxxxxxxxxxxxxxxx... '
            f"(139 characters)): the output encoded twice, not a mapping, as this program writes it; decode it once, or {WRITTEN}",
        ),
        (
            lambda o: o.update(storage=["y" * 100]),
            f'storage is ["yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy... (104 characters), not a mapping, as this program writes it; {WRITTEN}',
        ),
        (
            lambda o: o["arda"].pop("nodes"),
            "arda.nodes is missing, but arda.talosVersion records Talos v1.14.1 running: the plan reads each machine's state from it, "
            f"and without it plans every machine as new; {WRITTEN}",
        ),
        # Emptied beside the release and the steps the deployment ran on them, or the Ainur's left out, as Arda's is.
        (
            lambda o: o["arda"].update(nodes={}),
            "arda.nodes is {}, but arda.talosVersion records Talos v1.14.1 running and arda.commands the steps it ran "
            "(alqualonde-apply, bootstrap, gandalf-apply, ...): the plan reads each machine's state from it, and without it "
            f"plans every machine as new; {WRITTEN}",
        ),
        (
            lambda o: o["ainur"].update(nodes={}),
            "ainur.nodes is {}, but ainur.k3sVersion records k3s v1.35.8+k3s1 running and ainur.commands the steps it ran "
            "(ca-hash, credentials, eonwe-join, ...): the plan reads each machine's state from it, and without it plans every "
            f"machine as new; {WRITTEN}",
        ),
        # Emptied with no steps beside it (outputs written before the steps were recorded, or `commands` emptied too): no
        # Iluvatar ever wrote `{}` there, each cluster's `nodes` holding at least its one control plane.
        (
            lambda o: [o["arda"].update(nodes={}), o["arda"].pop("commands")],
            "arda.nodes is {}, but arda.talosVersion records Talos v1.14.1 running: the plan reads each machine's state from it, "
            f"and without it plans every machine as new; {WRITTEN}",
        ),
        (
            lambda o: o["ainur"].update(nodes={}, commands={}),
            "ainur.nodes is {}, but ainur.k3sVersion records k3s v1.35.8+k3s1 running: the plan reads each machine's state from "
            f"it, and without it plans every machine as new; {WRITTEN}",
        ),
        (
            lambda o: o["ainur"].pop("nodes"),
            "ainur.nodes is missing, but ainur.k3sVersion records k3s v1.35.8+k3s1 running: the plan reads each machine's "
            f"state from it, and without it plans every machine as new; {WRITTEN}",
        ),
        (
            lambda o: [o.clear(), o.update(version=3, deployment={"manifest": {}, "resources": []})],
            "the state `pulumi stack export` writes (version, deployment), not the outputs of a stack; write those with `pulumi stack output --json`",
        ),
        (
            lambda o: [o.update(o.pop("ainur")), [o.pop(k) for k in list(o) if k not in ("k3sVersion", "order", "nodes", "commands")]],
            "not the outputs of a stack: its keys (commands, k3sVersion, nodes, order) are none of those every deployment writes "
            "(lan, vips, gateways, loadBalancerPool, arda, storage); write them with `pulumi stack output --json` (a part of them, "
            "such as the `ainur` output alone, is not enough; a stack never deployed is {})",
        ),
        (
            lambda o: [o.pop(k) for k in list(o) if k not in ("lan", "vips")],
            "the outputs of a first `pulumi up` whose program stopped with an error part-way: those it exported before gateways; "
            "it lacks gateways, loadBalancerPool, arda and storage, which every deployment writes, and ainur and dnsmasqConf, which "
            f"one with the Ainur writes (its vips.ainur says it had one); {NEVER}; mend what stopped it and run `pulumi up` again to "
            f"its end, then {ALL}",
        ),
        (
            lambda o: o.update(arda=None),
            f"{PART}arda, which every deployment writes, yet it holds ainurNetworkConfig, which no Iluvatar writes without arda, and "
            f"caCertificate, which a first `pulumi up` exports after arda: cut short or edited; {NEVER}; {ALL} (a stack never deployed is {{}})",
        ),
        (
            lambda o: [o.pop("ainur"), o["vips"].pop("ainur")],
            f"{PART}ainur, which one with the Ainur writes (its ainurKubeconfig says it had one), yet it holds kubeVipRolled, which no "
            "Iluvatar writes without ainur, and ardaTalosconfig, which a first `pulumi up` exports after ainur: cut short or edited; "
            f"{NEVER}; {ALL} (a stack never deployed is {{}})",
        ),
        (
            lambda o: [o.pop(k) for k in list(o) if SINCE[k] >= SINCE["arda"]],
            "the outputs of an Iluvatar from before arda was an output (2026-11-23 03:45 UTC): it lacks arda, which every deployment "
            f"writes, and ainur, which one with the Ainur writes (its vips.ainur says it had one); {NEVER}; "
            f"this Iluvatar cannot start from them, and no key says Arda and the Ainur already run (arda.subnetsRunning names only the subnets Arda runs), so do not run its `pulumi up`; first run `pulumi up` with the Iluvatar that deployed them, or the first one that writes arda (from 2026-11-23 03:45 UTC), after its `pulumi preview` plans no machine as new; then {ALL}",
        ),
    ],
    ids=[
        "arda-secret",
        "ainur-dnsmasq-secret",
        "arda-nodes-secret",
        "storage-number",
        "storage-encoded-twice",
        "storage-long-list",
        "arda-nodes-missing",
        "arda-nodes-emptied",
        "ainur-nodes-emptied",
        "arda-nodes-emptied-no-commands",
        "ainur-nodes-emptied-commands-emptied",
        "ainur-nodes-missing",
        "stack-export",
        "ainur-alone",
        "lan-and-vips-alone",
        "arda-null",
        "ainur-missing",
        "before-arda",
    ],
)
def test_previous_outputs_the_checks_cannot_read_are_refused_naming_the_key(
    homelab: Path,
    tmp_path: Path,
    edit: Callable[[dict[str, Any]], object],
    message: str,
    render_here: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    # Hidden by `pulumi stack output --json`, of another type, or not outputs at all: read as nothing deployed (or failing
    # in the plan), they would plan a running cluster from nothing.
    previous = json.loads((homelab / "outputs.json").read_text())
    edit(previous)
    (tmp_path / "old.json").write_text(json.dumps(previous))
    result = render_here("homelab", "--out", str(tmp_path / "day2"), "--previous", str(tmp_path / "old.json"), "--on", "2026-11-25")
    assert (result.returncode, result.stderr.splitlines()) == (2, [f"error: --previous {tmp_path / 'old.json'}: {message}"])
    assert not (tmp_path / "day2").exists()


def test_a_previous_stack_never_deployed_is_planned_from_nothing(
    homelab: Path, tmp_path: Path, render_here: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    # `{}`, what `pulumi stack output --json` prints for a stack with no state, lacks no output: every machine is new.
    (tmp_path / "none.json").write_text("{}")
    result = render_here("homelab", "--out", str(tmp_path / "day2"), "--previous", str(tmp_path / "none.json"), "--on", "2026-11-25")
    assert result.returncode == 0, result.stderr
    assert "taniquetil: new: installs from maintenance mode" in (tmp_path / "day2" / "rollout.txt").read_text()


@pytest.mark.parametrize(
    ("edit_arda", "message"),
    [
        (
            lambda a: a.pop("talosVersion"),
            "arda.talosVersion is missing, but arda.nodes records 5 machine(s): the plan starts from the Talos release Arda runs; "
            "add it as `talosctl version` shows it (e.g. v1.13.9), or give the outputs of a deployment that recorded it",
        ),
        (
            lambda a: a.update(talosVersion=None),
            "arda.talosVersion is null, but arda.nodes records 5 machine(s): the plan starts from the Talos release Arda runs; "
            "add it as `talosctl version` shows it (e.g. v1.13.9), or give the outputs of a deployment that recorded it",
        ),
        (
            lambda a: a["nodes"]["tirion"].pop("installer"),
            "arda.nodes.tirion.installer is missing: the plan compares each machine's installer image (factory.talos.dev/...:v1.14.1) "
            "with the one it installs now; give the outputs `pulumi stack output --json` writes",
        ),
        (
            lambda a: a.pop("kubernetesVersion"),
            "arda.kubernetesVersion is missing, but arda.nodes records 5 machine(s): the plan starts from the Kubernetes release "
            "Arda runs; add it as `kubectl version` shows it (e.g. v1.34.12), or give the outputs of a deployment that recorded it",
        ),
        (
            lambda a: a["nodes"]["tirion"].update(installer=a["nodes"]["tirion"]["installer"].rsplit(":", 1)[0] + ":v1.12.4"),
            "arda.nodes.tirion.installer is {installer}, at Talos v1.12.4, but arda.talosVersion is v1.14.1: a deployment records "
            "every machine at the cluster's release, and a plan from the wrong one could cross two minors in one roll; give the "
            "outputs `pulumi stack output --json` writes",
        ),
        (
            None,
            "ainur.k3sVersion is missing, but ainur.nodes records 3 machine(s): k3s's upgrade checks start from the release the "
            "Ainur run; add it as `k3s --version` shows it (e.g. v1.34.12+k3s1), or give the outputs of a deployment that recorded it",
        ),
    ],
    ids=[
        "talos-version-missing",
        "talos-version-null",
        "installer-missing",
        "kubernetes-version-missing",
        "installer-at-another-release",
        "k3s-version-missing",
    ],
)
def test_a_previous_deployment_that_recorded_no_talos_release_is_refused_not_planned_from_none(
    homelab: Path,
    tmp_path: Path,
    edit_arda: Callable[[dict[str, Any]], object] | None,
    message: str,
    render_here: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    # An older deployment's outputs with the machines but not what they run: the plan read `Talos None -> v1.14.1`.
    previous = json.loads((homelab / "outputs.json").read_text())
    if edit_arda is None:
        previous["ainur"].pop("k3sVersion")  # the Ainur's k3s release, read by k3s's upgrade checks
    else:
        edit_arda(previous["arda"])
    message = message.replace("{installer}", previous["arda"]["nodes"].get("tirion", {}).get("installer", ""))
    (tmp_path / "old.json").write_text(json.dumps(previous))
    result = render_here("homelab", "--out", str(tmp_path / "day2"), "--previous", str(tmp_path / "old.json"), "--on", "2026-11-25")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"error: --previous {tmp_path / 'old.json'}: {message}"]
    assert not (tmp_path / "day2").exists()


def test_netbooting_maiar_render_their_image_eeprom_lines_and_files(tmp_path: Path) -> None:
    """With eonwe a netbooting Pi 4 and ilmare a Pi 5: the image, what to set in each Pi's EEPROM, what each is served,
    and the NFS server, the only privileged container of the netboot namespace (issue #41)."""
    from plans.netboot import debs, nfs, pis

    boot = {"iluvatar:nodes[1].board": "rpi4", "iluvatar:nodes[1].boot": "netboot", "iluvatar:nodes[1].serial": "9ffefdef",
            "iluvatar:nodes[2].boot": "netboot", "iluvatar:nodes[2].serial": "1a2b3c4d"}  # fmt: skip
    stack_file = read_stack_file(write_stack(tmp_path, edit(homelab_doc(), boot), stack="homelab"))
    sim = simulate.simulate(stack_file)
    files = render_files(sim)
    from stacks import parse_stack

    # Each netbooting maia joins only once the NFS server of its root (and the rest of netboot) serves, after the Pis
    # with cards, one after the other in inventory order (after the first valar's steps, which end, with the flag, at
    # ainur-secrets-on: components.ainur).
    joins = {r.name: r for r in sim.registrations if r.name.endswith("-join")}
    assert [n for n in joins] == ["ainur-manwe-join", "ainur-eonwe-join", "ainur-ilmare-join"]
    by_urn = {r.urn: r.name for r in sim.registrations}
    eonwe_after = {by_urn.get(u, u) for u in joins["ainur-eonwe-join"].dependencies}
    assert {
        "netboot-deployment-pi-nfs",
        "netboot-deployment-netboot",
        "netboot-daemonset-netboot-cache",
        "ainur-manwe-join",
        "ainur-secrets-on",
    } <= eonwe_after
    assert {"ainur-manwe-k3s"} <= {by_urn.get(u, u) for u in sim.named()["ainur-secrets-on"].dependencies}
    # Each moved to the stack's image first (its boot pointer; drained and rebooted after a new one: plans.netboot.roll),
    # and the next Pi's steps only once it is uncordoned.
    steps = {r.name: {by_urn.get(u, u) for u in r.dependencies} for r in sim.registrations}
    assert {"ainur-eonwe-join", "ainur-eonwe-uncordon", "ainur-ilmare-reboot"} <= steps["ainur-ilmare-join"]
    assert {"ainur-eonwe-reboot"} <= eonwe_after and {"ainur-eonwe-k3s"} <= steps["ainur-eonwe-uncordon"]
    assert steps["ainur-eonwe-reboot"] >= {"ainur-eonwe-boot"} and steps["ainur-eonwe-boot"] >= {"ainur-eonwe-drain"}
    assert {"ainur-eonwe-uncordon", "netboot-deployment-pi-nfs"} <= steps["ainur-ilmare-drain"]

    stack = parse_stack(dict(stack_file.config))
    eonwe, ilmare = stack.nodes[1], stack.nodes[2]
    assert files["netboot/pis/image.txt"] == (
        "Ubuntu 24.04.3 for Raspberry Pi\n"
        "url: https://cdimage.ubuntu.com/releases/24.04.3/release/ubuntu-24.04.3-preinstalled-server-arm64+raspi.img.xz\n"
        "sha256: 9bb1799cee8965e6df0234c1c879dd35be1d87afe39b84951f278b6bd0433e56\n"
        "folder: /var/lib/iluvatar/netboot/pi-images/ubuntu-24.04.3-9bb1799cee89\n"
    )
    assert files["netboot/pis/eonwe/bootconf.txt"] == pis.eeprom_config(stack, eonwe)
    assert files["netboot/pis/ilmare/boot.cmdline.txt"] == pis.cmdline(stack, ilmare)
    assert files["netboot/pis/ilmare/boot.image"] == pis.image_id(stack)
    assert (
        files["netboot/pis/ilmare/root.var.lib.cloud.seed.nocloud.user-data"]
        == pis.seed_files(stack, ilmare)["/var/lib/cloud/seed/nocloud/user-data"]
    )
    assert files["netboot/pis/ganesha.conf"] == nfs.ganesha_conf(stack)
    # The pinned Debian packages' fetch scripts, beside the other shared scripts (review 41-1 M5).
    assert files["netboot/pis/pi-nfs-debs.sh"] == debs.fetch_script("pi-nfs", "NFS-Ganesha")
    assert "pool/main/c/curl/curl_7.88.1-10+deb12u15_arm64.deb" in files["netboot/pis/pi-image-debs.sh"]
    privileged = sorted(
        f"{path.rsplit('/', 1)[1]}:{c['name']}"
        for path, text in files.items()
        if path.startswith("kubernetes/ainur/netboot/")
        for doc in [yaml.safe_load(text)]
        if doc.get("kind") in ("Deployment", "DaemonSet")
        for c in [*doc["spec"]["template"]["spec"].get("initContainers", []), *doc["spec"]["template"]["spec"]["containers"]]
        if (c.get("securityContext") or {}).get("privileged")
    )
    assert privileged == ["Deployment-pi-nfs.yaml:nfs"]
    # A volume per Pi's roots, on the class whose replicas only the card Pi (manwe) holds (review 41-1 M1, M2); a new
    # homelab has no first version's volume (review 41-6 H1).
    claims = {
        name: (doc["spec"]["storageClassName"], doc["spec"]["resources"]["requests"]["storage"])
        for name in ("pi-root-eonwe", "pi-root-ilmare")
        for doc in [yaml.safe_load(files[f"kubernetes/ainur/netboot/PersistentVolumeClaim-{name}.yaml"])]
    }
    assert claims == {"pi-root-eonwe": ("pi-roots", "20Gi"), "pi-root-ilmare": ("pi-roots", "20Gi")}
    assert "kubernetes/ainur/netboot/PersistentVolumeClaim-pi-roots.yaml" not in files
    [roots_class] = [yaml.safe_load(text) for path, text in files.items() if path.endswith("StorageClass-pi-roots.yaml")]
    assert roots_class["parameters"] == {"numberOfReplicas": "1", "staleReplicaTimeout": "30", "nodeSelector": "pi-root", "fsType": "ext4"}


def test_another_deployments_outputs_are_refused_as_that(
    homelab: Path, tmp_path: Path, render_here: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    # Another LAN's outputs, none of whose machines this stack has: planned against them, each of their machines would
    # read as one removed from this inventory, to be put back with retire: true.
    previous = json.loads((homelab / "outputs.json").read_text())
    previous["lan"] = "172.16.40.0/24"
    previous["arda"]["nodes"] = {"fimbul": previous["arda"]["nodes"]["tirion"]}
    previous["ainur"]["nodes"] = {"finrod": previous["ainur"]["nodes"]["eonwe"]}
    (tmp_path / "other.json").write_text(json.dumps(previous))
    result = render_here("homelab", "--out", str(tmp_path / "x"), "--previous", str(tmp_path / "other.json"))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: --previous {tmp_path / 'other.json'}: these are the outputs of another deployment: its LAN is 172.16.40.0/24 and "
        "this stack's network.lan 192.168.0.0/24, and none of its machines (fimbul, finrod) is in this stack's inventory; give this "
        "stack's own outputs (`pulumi stack output --json --stack <this stack>`)"
    ]


def test_a_renumbered_lan_with_the_same_machines_is_this_deployment(homelab: Path) -> None:
    previous = json.loads((homelab / "outputs.json").read_text())
    previous["lan"] = "172.16.40.0/24"
    cli._of_this_deployment(Path("old.json"), previous, load_stack_file(HOMELAB))  # no refusal
