"""The first `pulumi up` on bare metal, read from the engine's dependency graph (tests.bringup's rules).

Both stacks and random stacks must bring up in order; each rule fails when the gate it checks is
taken out of the program (the program's own source, edited in a scratch copy of the module).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from iluvatar.simulate import simulate
from plans import coredns as coredns_plan
from plans import talos as talos_plan
from stacks import load_stack_file, parse_stack, read_stack_file
from stacks.secrets import Secure
from tests.bringup import edited, violations
from tests.edit import HOMELAB, RK1, ROOT
from tests.sims import simulated
from tests.strategies import raw_stacks


@pytest.mark.parametrize("path", [HOMELAB, RK1], ids=["homelab", "rk1"])
def test_both_stacks_bring_up_in_order(path: Path) -> None:
    assert violations(simulated(path), load_stack_file(path)) == []


def test_the_homelab_with_its_remote_access_brings_up_in_order() -> None:
    """The shipped file itself, its remote access included (the shared run leaves it out, tests.edit.homelab_doc):
    Headscale's state claim on Longhorn waits for the class as the Git mirror's does."""
    assert violations(simulate(read_stack_file(HOMELAB)), load_stack_file(HOMELAB)) == []


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(raw=raw_stacks(identity=True))
def test_random_stacks_bring_up_in_order(raw: dict[str, object], tmp_path_factory: pytest.TempPathFactory) -> None:
    # JSON (valid YAML) quotes every string, so an all-digit MAC spelling stays a string.
    path = tmp_path_factory.mktemp("random") / "Pulumi.random.yaml"
    path.write_text(json.dumps({"config": {"pulumi:disable-default-providers": ["*"], **raw}}))
    # A `secure:` value (the sign-in connector's secret) as the stack file's reader hands it on.
    stack = parse_stack({k: Secure() if isinstance(v, dict) and "secure" in v else v for k, v in raw.items()})
    assert violations(simulate(read_stack_file(path)), stack) == []


# --- Each rule fails when its gate is taken out ---------------------------------------------------


def broken(module: str, *edits: tuple[str, str], stack: Path = HOMELAB) -> list[str]:
    with edited(module, *edits):
        return sorted(violations(simulate(read_stack_file(stack)), load_stack_file(stack)))


def test_without_the_arda_api_gate_both_arda_providers_are_configured_first() -> None:
    assert broken(
        "components.arda",
        (
            "opts=pulumi.ResourceOptions(parent=self, provider=config.provider, depends_on=[api]),",
            "opts=pulumi.ResourceOptions(parent=self, provider=config.provider),",
        ),
        (
            "self.kubeconfig, stack.arda.cluster_name, self, after=[api])",
            "self.kubeconfig, stack.arda.cluster_name, self, after=[])",
        ),
    ) == [
        "arda: the Kubernetes provider arda-kubernetes is configured before the readiness gate arda-gate-api",
        "arda: the Kubernetes provider gitops-arda-kubernetes is configured before the readiness gate arda-gate-api",
    ]


def test_without_the_ainur_api_gate_both_ainur_providers_are_configured_first() -> None:
    assert broken(
        "components.ainur",
        ("pulumi.Output.all(kubeconfig, self.ready.stdout).apply(lambda values: str(values[0]))", "kubeconfig"),
        (
            "self.kubeconfig, name, self, after=[self.ready], mutable_config_maps=True",
            "self.kubeconfig, name, self, after=[], mutable_config_maps=True",
        ),
    ) == [
        "ainur: the Kubernetes provider ainur-kubernetes is configured before the readiness gate ainur-gate-api",
        "ainur: the Kubernetes provider gitops-ainur-kubernetes is configured before the readiness gate ainur-gate-api",
    ]


def test_without_netboot_first_every_netbooting_machine_races_the_dhcp_server() -> None:
    found = broken(
        "components.arda",
        ("            if stack.boots_from_network(node) and not day2.installed(node, args.deployed, renamed.get(node.name)):\n"
         "                after += args.netboot_serving\n", ""),
    )  # fmt: skip
    assert found == [
        f"{node} boots from the network, but its apply arda-{node}-apply is not after netboot's {what}"
        for node in ("alqualonde", "gandalf", "saruman", "taniquetil", "tirion")
        for what in ("DaemonSet netboot-cache", "Deployment netboot", "Service netboot")
    ]


def test_without_the_cilium_gate_its_pool_and_policy_race_the_operator() -> None:
    assert broken(
        "components.cilium",
        (
            "after_crds = pulumi.ResourceOptions(parent=self, depends_on=[crds])",
            "after_crds = pulumi.ResourceOptions(parent=self, depends_on=[self.release])",
        ),
    ) == [
        "arda: arda-cilium-kms-deny (cilium.io/CiliumClusterwideNetworkPolicy) is not after any release whose chart ships its CRD, nor after a gate that waits for it",
        "arda: arda-cilium-l2-policy (cilium.io/CiliumL2AnnouncementPolicy) is not after any release whose chart ships its CRD, nor after a gate that waits for it",
        "arda: arda-cilium-lb-pool (cilium.io/CiliumLoadBalancerIPPool) is not after any release whose chart ships its CRD, nor after a gate that waits for it",
        "arda: arda-cilium-lb-pool-iluvatar-lan-minecraft-lan (cilium.io/CiliumLoadBalancerIPPool) is not after any release whose chart ships its CRD, nor after a gate that waits for it",
        "arda: arda-cilium-lb-pool-iluvatar-lan-mosquitto-lan (cilium.io/CiliumLoadBalancerIPPool) is not after any release whose chart ships its CRD, nor after a gate that waits for it",
    ]


def test_without_the_cert_manager_gate_its_resources_race_the_webhook() -> None:
    found = broken(
        "components.edge",
        (
            "after = pulumi.ResourceOptions(parent=self, depends_on=[cert_manager_webhook, *before_issuers])",
            "after = pulumi.ResourceOptions(parent=self, depends_on=[cert_manager, *before_issuers])",
        ),
        ("depends_on=[ns, cert_manager_webhook, *issuers]", "depends_on=[ns, cert_manager, *issuers]"),
    )
    assert found == [
        f"arda: {name} (cert-manager.io/{kind}) is admitted by the webhook of edge-certificates-cert-manager, but is not after a gate that waits for it to answer"
        for name, kind in (
            ("edge-certificates-certificate-networking-wildcard-external", "Certificate"),
            ("edge-certificates-certificate-networking-wildcard-internal", "Certificate"),
            ("edge-certificates-clusterissuer-iluvatar-ca", "ClusterIssuer"),
            ("edge-certificates-clusterissuer-letsencrypt", "ClusterIssuer"),
        )
    ]


def test_without_the_storage_gate_the_mirror_claims_longhorn_before_it_exists() -> None:
    assert broken("components.git_mirror", ("            after.append(args.access.gate(", "            (args.access.gate(")) == [
        "ainur: the claim git-mirror-persistentvolumeclaim-git-mirror-longhorn-encrypted uses StorageClass longhorn-encrypted, which nothing before it provides or waits for"
    ]


def test_without_the_nodes_gate_the_edge_starts_on_nodes_without_a_cni(tmp_path: Path) -> None:
    program = tmp_path / "__main__.py"
    source = (ROOT / "__main__.py").read_text()
    assert source.count(", after=[arda.ready]),") == 1
    program.write_text(source.replace(", after=[arda.ready]),", "),"))
    found = violations(simulate(read_stack_file(HOMELAB), program=program), load_stack_file(HOMELAB))
    assert "arda: edge-certificates-cert-manager (kubernetes:helm.sh/v3:Release) can start before every machine is Ready (arda-gate-nodes)" in found
    assert all(" can start before every machine is Ready " in m for m in found)


def test_without_reference_order_the_netboot_pods_race_their_account_and_config() -> None:
    found = broken(
        "components.kube", ("deps = [made[ref] for ref in references.references(manifest) if ref in made]", "deps: list[pulumi.Resource] = []")
    )
    # The homelab's netboot Deployment (dhcp mode) stays after them all the same: it waits on netboot-router-off, which
    # waits on every netboot object but the pod's own Service (#53: the router's DHCP goes off right before the pod, after
    # all else it needs).
    assert [m for m in found if m.startswith("ainur: netboot-deployment-netboot ")] == []
    assert (
        "ainur: git-mirror-deployment-git-mirror (Deployment netboot/git-mirror) is not after git-mirror-persistentvolumeclaim-git-mirror-longhorn-encrypted, the PersistentVolumeClaim it names"
        in found
    )
    # Dex (iluvatar:identity) too: its Deployment waits for its account and both Secrets, its bindings for their role and account.
    assert (
        "ainur: identity-ainur-deployment-dex (Deployment identity/dex) is not after identity-ainur-secret-dex-config, the Secret it names" in found
    )
    assert len([m for m in found if m.startswith("ainur: identity-")]) == 7
    # CoreDNS's Deployment and binding (plans.coredns) likewise.
    assert [m for m in found if m.startswith("arda: arda-coredns-")] == [
        "arda: arda-coredns-clusterrolebinding-system:coredns (ClusterRoleBinding /system:coredns) is not after arda-coredns-clusterrole-system:coredns, the ClusterRole it names",
        "arda: arda-coredns-clusterrolebinding-system:coredns (ClusterRoleBinding /system:coredns) is not after arda-coredns-serviceaccount-coredns, the ServiceAccount it names",
        "arda: arda-coredns-deployment-coredns (Deployment kube-system/coredns) is not after arda-coredns-configmap-coredns, the ConfigMap it names",
        "arda: arda-coredns-deployment-coredns (Deployment kube-system/coredns) is not after arda-coredns-serviceaccount-coredns, the ServiceAccount it names",
    ]
    # The rest: the other pods and bindings, with each category's secret reader (its binding after its role and account).
    assert sum(m.startswith("arda: data-secrets-") for m in found) == 6
    # The logs' collectors (on both clusters) and vmalert, each after the ConfigMap it mounts (components.logs).
    assert sorted(m.split(" (")[0] for m in found if m.split(": ", 1)[1].startswith("logs-")) == [
        "ainur: logs-ainur-daemonset-log-collector",
        "arda: logs-arda-daemonset-log-collector",
        "arda: logs-arda-deployment-vmalert-logs",
    ]
    # netboot-cache and the netboot pod are after their Namespace all the same: through the clearance step before them
    # (plans.netboot.cache.clearance_script).
    assert (
        "ainur: netboot-daemonset-netboot-cache (DaemonSet netboot/netboot-cache) is not after netboot-configmap-netboot, the ConfigMap it names"
        in found
    )
    # Every netboot object is after its Namespace all the same, its default deny (plans.netpol) included: they wait for
    # the DHCP probe, which waits for the Namespace (components.netboot).
    assert not [m for m in found if m.endswith("is not after netboot-namespace-netboot, the Namespace it names")]
    # The KMS's DaemonSet (plans.kms), after its account, its two ConfigMaps (its sources, its admitted machines) and both
    # Secrets by reference alone: 32 in all (#53: the netboot Deployment's 4 gone, ordered through netboot-router-off).
    assert [m.split(" is not after ")[1] for m in found if m.startswith("ainur: kms-daemonset-kms ")] == [
        "kms-configmap-kms-admitted, the ConfigMap it names",
        "kms-configmap-kms-server, the ConfigMap it names",
        "kms-secret-kms-key, the Secret it names",
        "kms-secret-kms-tls, the Secret it names",
        "kms-serviceaccount-kms, the ServiceAccount it names",
    ]
    # The homelab's remote access (#56): Headscale's Deployment after its ConfigMap and claim, the router's after its
    # account, the router's binding after its role and account, by reference alone; and its state's backup (#57): the
    # CronJob after its account, its binding after its role and account: 40 in all.
    assert sorted(m.split(" (")[0] for m in found if m.startswith("ainur: remote-access-")) == [
        "ainur: remote-access-ainur-cronjob-state-backup",
        "ainur: remote-access-ainur-deployment-headscale",
        "ainur: remote-access-ainur-deployment-headscale",
        "ainur: remote-access-ainur-deployment-subnet-router",
        "ainur: remote-access-ainur-rolebinding-state-backup",
        "ainur: remote-access-ainur-rolebinding-state-backup",
        "ainur: remote-access-ainur-rolebinding-subnet-router",
        "ainur: remote-access-ainur-rolebinding-subnet-router",
    ]
    assert len(found) == 40


def test_with_router_off_after_the_netboot_service_the_first_dhcp_bring_up_deadlocks() -> None:
    # The Service is awaited until kube-vip gives it an address, which needs the netboot pod ready; the pod waits for
    # netboot-router-off (#53).
    found = broken("components.netboot", ("depends_on=[made[r] for r in made if r not in own_balancers],", "depends_on=list(made.values()),"))
    assert found == [
        "ainur: netboot-deployment-netboot waits for netboot-service-netboot (netboot-router-off -> netboot-service-netboot), "
        "a LoadBalancer Service of its own pods, which is ready only once they are: a deadlock"
    ]


# --- Arda's cluster DNS has one owner (plans.coredns) -----------------------------------------------


def _simulated(stack: Path = HOMELAB) -> list[str]:
    return sorted(violations(simulate(read_stack_file(stack)), load_stack_file(stack)))


def test_with_talos_coredns_left_on_talos_and_the_program_both_own_kube_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    own = talos_plan._config_document

    def without_disabling(*args: Any, **kwargs: Any) -> dict[str, Any]:
        doc = own(*args, **kwargs)
        doc["cluster"].pop("coreDNS", None)
        return doc

    monkeypatch.setattr(talos_plan, "_config_document", without_disabling)
    assert _simulated() == [
        f"arda: {name} leaves Talos's CoreDNS on (cluster.coreDNS.disabled), so Talos and arda-coredns-service-kube-dns both own Service kube-system/kube-dns"
        for name in ("alqualonde", "taniquetil", "tirion")
    ]


def test_without_the_programs_coredns_nothing_serves_cluster_dns() -> None:
    assert broken("components.coredns", ("name, plan.manifests(args.stack), pulumi.ResourceOptions(", "name, [], pulumi.ResourceOptions(")) == [
        "arda: Talos's CoreDNS is off on alqualonde, taniquetil, tirion, and nothing in the program serves Service kube-system/kube-dns"
    ]


def test_a_kube_dns_at_another_address_than_talos_gives_the_kubelets_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(coredns_plan, "DNS_SERVICE_OFFSET", 11)
    assert _simulated(RK1) == [
        f"arda: arda-coredns-service-kube-dns is at 10.96.0.11, but Talos tells {name}'s kubelet the cluster DNS is 10.96.0.10"
        for name in ("talos-1", "talos-2", "talos-3")
    ]


def test_a_service_subnet_of_the_stacks_own_moves_kube_dns_with_the_kubelets(tmp_path: Path) -> None:
    raw = dict(read_stack_file(RK1).config)
    raw["iluvatar:arda"] = {**raw["iluvatar:arda"], "patches": [{"cluster": {"network": {"serviceSubnets": ["10.112.0.0/12"]}}}]}
    path = tmp_path / "Pulumi.subnet.yaml"
    path.write_text(json.dumps({"config": raw}))
    sim = simulate(read_stack_file(path))
    assert violations(sim, load_stack_file(path)) == []
    [service] = [r for r in sim.registrations if r.name == "arda-coredns-service-kube-dns"]
    assert service.inputs["spec"]["clusterIP"] == "10.112.0.10"
