"""Ainur and netboot under the mock runtime: graph, join order, secrets, and what is served."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import yaml

from iluvatar.simulate import PLACEHOLDER, SecretValue, Simulation, simulate
from plans import cloudinit
from stacks import load_stack_file, read_stack_file
from tests.edit import HOMELAB, RK1, edit, homelab_doc, write_stack
from tests.sims import simulated


def test_bootstrap_cluster_graph(homelab: Simulation) -> None:
    regs = homelab.named()
    ainur = regs["ainur"]
    assert ainur.type == "iluvatar:ainur:BootstrapCluster"
    assert sorted(r.name for r in homelab.children(ainur)) == [
        "ainur-command", "ainur-credentials", "ainur-eonwe", "ainur-gate-api", "ainur-ilmare", "ainur-k3s-token", "ainur-kubernetes",
        "ainur-manwe", "ainur-random",
    ]  # fmt: skip
    for pi in ("manwe", "eonwe", "ilmare"):
        assert regs[f"ainur-{pi}"].type == "iluvatar:ainur:Pi"
        # The cloud-init files are flashed before any `pulumi up` (iluvatar render): the Pi joins, then runs the stack's k3s.
        # A valar first installs its API server's authentication config (the homelab signs in with Dex, plans.apiserver).
        oidc = [f"ainur-{pi}-oidc"] if pi == "manwe" else []
        assert [r.name for r in homelab.children(regs[f"ainur-{pi}"])] == [*oidc, f"ainur-{pi}-join", f"ainur-{pi}-k3s"]


def test_first_valar_joins_first_and_serves_the_kubeconfig(homelab: Simulation) -> None:
    regs = homelab.named()
    first = regs["ainur-manwe-join"].urn
    assert first not in regs["ainur-manwe-join"].dependencies
    for other in ("eonwe", "ilmare"):
        assert first in regs[f"ainur-{other}-join"].dependencies
    assert first in regs["ainur-credentials"].dependencies
    connection = regs["ainur-credentials"].inputs["connection"]
    assert isinstance(connection, SecretValue)  # pulumi-command keeps the whole connection secret
    # SSH is retried while the Pi boots: 60 dials of up to 15 s each.
    assert connection.value == {"host": "192.168.0.11", "user": "ubuntu", "dialErrorLimit": 60, "perDialTimeout": 15, "port": 22}


def test_the_provider_waits_for_the_api_through_the_vip(homelab: Simulation) -> None:
    regs = homelab.named()
    gate = regs["ainur-gate-api"]
    assert gate.inputs["create"] == ".venv/bin/iluvatar upgrader wait-kube --api --timeout 10m"
    assert regs["ainur-credentials"].urn in gate.dependencies
    stdin = json.loads(gate.inputs["stdin"].value)
    kubeconfig = yaml.safe_load(stdin["kubeconfig"])
    assert kubeconfig["clusters"][0]["cluster"]["server"] == "https://192.168.0.10:6443"
    # A ServiceAccount token made on the first valar: it does not expire with k3s's admin certificate.
    assert kubeconfig["users"] == [{"name": "iluvatar-pulumi", "user": {"token": "[secret]"}}]
    credentials = regs["ainur-credentials"]
    assert credentials.inputs["logging"] == "stderr"  # the token, on stdout, is never printed
    assert sorted(credentials.additional_secret_outputs) == ["connection", "stdout"]
    provider = regs["ainur-kubernetes"]
    assert gate.urn in provider.dependencies
    assert gate.urn in provider.property_dependencies["kubeconfig"]


def test_join_token_travels_only_as_a_secret(homelab: Simulation) -> None:
    regs = homelab.named()
    for pi in ("manwe", "eonwe", "ilmare"):
        join = regs[f"ainur-{pi}-join"].inputs
        assert isinstance(join["stdin"], SecretValue)
        config = yaml.safe_load(join["stdin"].value)
        assert config["token"] == PLACEHOLDER  # the RandomPassword result
        assert PLACEHOLDER not in join["create"]
        assert join["logging"] == "none"
    assert "cluster-init" in yaml.safe_load(regs["ainur-manwe-join"].inputs["stdin"].value)
    assert yaml.safe_load(regs["ainur-eonwe-join"].inputs["stdin"].value)["server"] == "https://192.168.0.10:6443"


def test_kubeconfig_is_a_secret_pointed_at_the_vip(homelab: Simulation) -> None:
    kubeconfig = homelab.outputs["ainurKubeconfig"]
    assert isinstance(kubeconfig, SecretValue)
    assert yaml.safe_load(kubeconfig.value)["clusters"][0]["cluster"]["server"] == "https://192.168.0.10:6443"


def test_cloud_init_files_are_exported_in_clear_per_pi(homelab: Simulation) -> None:
    stack = load_stack_file(HOMELAB)
    for output, render in (("ainurUserData", cloudinit.user_data), ("ainurNetworkConfig", cloudinit.network_config)):
        exported = homelab.outputs[output]
        assert not isinstance(exported, SecretValue)
        assert exported == {node.name: render(stack, node) for node in stack.ainur_nodes}


def test_netboot_objects_and_the_served_configs(homelab: Simulation) -> None:
    regs = homelab.named()
    netboot = regs["netboot"]
    assert netboot.type == "iluvatar:ainur:Netboot"
    assert sorted(r.name for r in homelab.children(netboot)) == [
        "netboot-clusterrole-iluvatar-kube-vip", "netboot-clusterrolebinding-iluvatar-kube-vip", "netboot-configmap-ipxe",
        "netboot-configmap-netboot", "netboot-daemonset-kube-vip-services", "netboot-daemonset-netboot-cache",
        "netboot-deployment-netboot", "netboot-namespace-argocd", "netboot-namespace-netboot",
        "netboot-role-netboot-leases", "netboot-rolebinding-netboot-leases",
        "netboot-secret-talos-configs", "netboot-service-netboot", "netboot-serviceaccount-kube-vip",
        "netboot-serviceaccount-netboot",
    ]  # fmt: skip
    assert sorted(r.name for r in homelab.children(regs["git-mirror"])) == [
        "git-mirror-deployment-git-mirror", "git-mirror-gate-storage", "git-mirror-persistentvolumeclaim-git-mirror-longhorn", "git-mirror-service-git-mirror",
    ]  # fmt: skip
    string_data = regs["netboot-secret-talos-configs"].inputs["stringData"]
    assert isinstance(string_data, SecretValue)
    served = string_data.value
    # Workers only (gandalf, saruman): the valinor's configs carry the CA keys and never leave Pulumi.
    assert sorted(served) == ["28-d2-44-30-00-01.yaml", "28-d2-44-30-00-02.yaml"]
    assert "hostname: gandalf" in str(served["28-d2-44-30-00-01.yaml"])
    fetch = regs["netboot-configmap-netboot"].inputs["data"]["fetch-assets.sh"]
    assert "https://factory.talos.dev/image/" in fetch and "/v1.12.4/kernel-amd64" in fetch
    service = regs["git-mirror-service-git-mirror"].inputs
    assert service["metadata"]["annotations"] == {"kube-vip.io/loadbalancerIPs": "192.168.0.15"}


def test_netboot_waits_for_its_namespace_and_configs(homelab: Simulation) -> None:
    regs = homelab.named()
    deployment = regs["netboot-deployment-netboot"]
    assert regs["netboot-namespace-netboot"].urn in deployment.dependencies
    assert regs["netboot-secret-talos-configs"].urn in deployment.dependencies


def test_no_ainur_means_no_bootstrap_cluster_and_no_netboot() -> None:
    sim = simulated(RK1)
    assert not [r for r in sim.registrations if r.type.startswith("iluvatar:ainur:") or r.type == "command:remote:Command"]
    assert not [r for r in sim.registrations if r.type.startswith("random:") and not r.name.startswith(("gitops-arda", "monitoring-"))]
    assert not [r for r in sim.registrations if r.type == "command:local:Command" and not r.name.startswith(("arda-", "edge-"))]
    assert not [r for r in sim.registrations if r.name.startswith("gitops-ainur")]
    assert "ainurKubeconfig" not in sim.outputs


def test_generic_worker_mode_serves_a_worker_config_for_unknown_machines(tmp_path: Path) -> None:
    doc = edit(
        homelab_doc(),
        {"iluvatar:ainur.netboot": {"unknownMacs": "generic-worker", "genericWorker": {"board": "generic-arm64", "installDisk": "/dev/sda"}}},
    )
    sim = simulate(read_stack_file(write_stack(tmp_path, doc, stack="homelab")))
    regs = sim.named()
    assert "arda-config-schematic-generic-arm64" in regs, "the generic worker's board needs its own image"
    served = regs["netboot-secret-talos-configs"].inputs["stringData"]
    assert isinstance(served, SecretValue)
    assert "generic-worker.yaml" in served.value
    generic = [
        args
        for token, args in sim.invocations
        if token == "talos:machine/getConfiguration:getConfiguration" and "auto: stable" in "".join(args["configPatches"])
    ]
    assert len(generic) == 1
    assert generic[0]["machineType"] == "worker"
    assert "generic-worker.ipxe" in regs["netboot-configmap-ipxe"].inputs["data"]


def test_control_planes_configs_are_not_served(homelab: Simulation) -> None:
    regs = homelab.named()
    served = regs["netboot-secret-talos-configs"].inputs["stringData"].value
    for mac in ("a8-b8-e0-20-00-01", "a8-b8-e0-20-00-02", "a8-b8-e0-20-00-03"):
        assert f"{mac}.yaml" not in served
        script = regs["netboot-configmap-ipxe"].inputs["data"][f"{mac}.ipxe"]
        assert "talos.config" not in script
    items = regs["netboot-deployment-netboot"].inputs["spec"]["template"]["spec"]["volumes"][2]["secret"]["items"]
    assert items == [{"key": f"{m}.yaml", "path": f"{m}.yaml"} for m in ("28-d2-44-30-00-01", "28-d2-44-30-00-02")]


def test_the_cache_refills_when_boot_assets_change(homelab: Simulation) -> None:
    regs = homelab.named()
    template = regs["netboot-daemonset-netboot-cache"].inputs["spec"]["template"]
    fetch = regs["netboot-configmap-netboot"].inputs["data"]["fetch-assets.sh"]
    assert template["metadata"]["annotations"] == {"iluvatar/assets-digest": hashlib.sha256(fetch.encode()).hexdigest()[:16]}


def test_netboot_service_address_is_held_by_kube_vip(homelab: Simulation) -> None:
    regs = homelab.named()
    service = regs["netboot-service-netboot"].inputs
    assert service["metadata"]["annotations"] == {"kube-vip.io/loadbalancerIPs": "192.168.0.14"}
    assert service["spec"]["externalTrafficPolicy"] == "Local"


def test_no_netboot_worker_serves_no_config(tmp_path: Path) -> None:
    doc = edit(homelab_doc(), {"iluvatar:nodes[6].boot": "disk", "iluvatar:nodes[7].boot": "disk"})
    sim = simulate(read_stack_file(write_stack(tmp_path, doc, stack="homelab")))
    regs = sim.named()
    served = regs["netboot-secret-talos-configs"].inputs["stringData"]
    assert isinstance(served, SecretValue) and served.value == {}
    assert regs["netboot-deployment-netboot"].inputs["spec"]["template"]["spec"]["volumes"][2]["secret"] == {
        "secretName": "talos-configs",
        "items": [],
    }
    assert "talos.config" not in "".join(regs["netboot-configmap-ipxe"].inputs["data"].values())
