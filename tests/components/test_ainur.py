"""Ainur and netboot under the mock runtime: graph, join order, secrets, and what is served."""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml

from iluvatar.simulate import PLACEHOLDER, SecretValue, Simulation, simulate
from plans import cloudinit
from stacks import load_stack_file, read_stack_file
from tests.edit import HOMELAB, RK1, edit, homelab_doc, write_stack


def test_bootstrap_cluster_graph(homelab: Simulation) -> None:
    regs = homelab.named()
    ainur = regs["ainur"]
    assert ainur.type == "iluvatar:ainur:BootstrapCluster"
    assert sorted(r.name for r in homelab.children(ainur)) == [
        "ainur-command", "ainur-eonwe", "ainur-ilmare", "ainur-k3s-token", "ainur-kubeconfig", "ainur-kubernetes", "ainur-manwe", "ainur-random",
    ]  # fmt: skip
    for pi in ("manwe", "eonwe", "ilmare"):
        assert regs[f"ainur-{pi}"].type == "iluvatar:ainur:Pi"
        assert sorted(r.name for r in homelab.children(regs[f"ainur-{pi}"])) == [
            f"ainur-{pi}-join",
            f"ainur-{pi}-network-config",
            f"ainur-{pi}-user-data",
        ]


def test_first_valar_joins_first_and_serves_the_kubeconfig(homelab: Simulation) -> None:
    regs = homelab.named()
    first = regs["ainur-manwe-join"].urn
    assert first not in regs["ainur-manwe-join"].dependencies
    for other in ("eonwe", "ilmare"):
        assert first in regs[f"ainur-{other}-join"].dependencies
    assert first in regs["ainur-kubeconfig"].dependencies
    connection = regs["ainur-kubeconfig"].inputs["connection"]
    assert isinstance(connection, SecretValue)  # pulumi-command keeps the whole connection secret
    assert (connection.value["host"], connection.value["user"]) == ("192.168.0.11", "ubuntu")


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


def test_user_data_is_written_per_pi_and_exported_in_clear(homelab: Simulation) -> None:
    regs = homelab.named()
    stack = load_stack_file(HOMELAB)
    exported = homelab.outputs["ainurUserData"]
    assert not isinstance(exported, SecretValue)
    for node in stack.ainur_nodes:
        write = regs[f"ainur-{node.name}-user-data"].inputs
        assert write["create"] == f"mkdir -p out/homelab/ainur && cat > out/homelab/ainur/{node.name}.user-data"
        assert write["stdin"] == exported[node.name] == cloudinit.user_data(stack, node)
        network = regs[f"ainur-{node.name}-network-config"].inputs
        assert network["create"] == f"mkdir -p out/homelab/ainur && cat > out/homelab/ainur/{node.name}.network-config"
        assert network["delete"] == f"rm -f out/homelab/ainur/{node.name}.network-config"
        assert network["stdin"] == cloudinit.network_config(stack, node)


def test_netboot_objects_and_the_served_configs(homelab: Simulation) -> None:
    regs = homelab.named()
    netboot = regs["netboot"]
    assert netboot.type == "iluvatar:ainur:Netboot"
    assert sorted(r.name for r in homelab.children(netboot)) == [
        "netboot-clusterrole-iluvatar-kube-vip", "netboot-clusterrolebinding-iluvatar-kube-vip", "netboot-configmap-ipxe",
        "netboot-configmap-netboot", "netboot-daemonset-kube-vip-services", "netboot-daemonset-netboot-cache",
        "netboot-deployment-git-mirror", "netboot-deployment-netboot", "netboot-namespace-argocd", "netboot-namespace-netboot",
        "netboot-persistentvolumeclaim-git-mirror-longhorn", "netboot-role-netboot-leases", "netboot-rolebinding-netboot-leases",
        "netboot-secret-talos-configs", "netboot-service-git-mirror", "netboot-service-netboot", "netboot-serviceaccount-kube-vip",
        "netboot-serviceaccount-netboot",
    ]  # fmt: skip
    string_data = regs["netboot-secret-talos-configs"].inputs["stringData"]
    assert isinstance(string_data, SecretValue)
    served = string_data.value
    # Workers only (gandalf, saruman): the valinor's configs carry the CA keys and never leave Pulumi.
    assert sorted(served) == ["28-d2-44-30-00-01.yaml", "28-d2-44-30-00-02.yaml"]
    assert "hostname: gandalf" in str(served["28-d2-44-30-00-01.yaml"])
    fetch = regs["netboot-configmap-netboot"].inputs["data"]["fetch-assets.sh"]
    assert "https://factory.talos.dev/image/" in fetch and "/v1.12.4/kernel-amd64" in fetch
    service = regs["netboot-service-git-mirror"].inputs
    assert service["metadata"]["annotations"] == {"kube-vip.io/loadbalancerIPs": "192.168.0.15"}


def test_netboot_waits_for_its_namespace_and_configs(homelab: Simulation) -> None:
    regs = homelab.named()
    deployment = regs["netboot-deployment-netboot"]
    assert regs["netboot-namespace-netboot"].urn in deployment.dependencies
    assert regs["netboot-secret-talos-configs"].urn in deployment.dependencies


def test_no_ainur_means_no_bootstrap_cluster_and_no_netboot() -> None:
    sim = simulate(read_stack_file(RK1))
    assert not [
        r for r in sim.registrations if r.type.startswith(("iluvatar:ainur:", "command:", "random:")) and not r.name.startswith("gitops-arda")
    ]
    assert not [r for r in sim.registrations if r.name.startswith("gitops-ainur")]
    assert "ainurKubeconfig" not in sim.outputs


def test_generic_worker_mode_serves_a_worker_config_for_unknown_machines(tmp_path: Path) -> None:
    doc = edit(
        homelab_doc(),
        {"iluvatar:ainur.netboot": {"unknownMacs": "generic-worker", "genericWorker": {"board": "generic-arm64", "installDisk": "/dev/sda"}}},
    )
    sim = simulate(read_stack_file(write_stack(tmp_path, doc, stack="homelab")))
    regs = sim.named()
    assert "arda-schematic-generic-arm64" in regs, "the generic worker's board needs its own image"
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
