"""Arda under the mock runtime: the resource graph, bring-up order, secrets and day-2 changes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from iluvatar.simulate import SecretValue, Simulation, simulate
from stacks import read_stack_file
from tests.edit import RK1, edit, homelab_doc, write_stack

APPLY = "talos:machine/configurationApply:ConfigurationApply"
# The aggregates that list machines: the DHCP config, the iPXE scripts, the served configs, and
# the netboot pod's digest annotation that restarts it when any of them change.
NETBOOT_AGGREGATES = ["netboot-configmap-dnsmasq", "netboot-configmap-ipxe", "netboot-deployment-netboot", "netboot-secret-talos-configs"]


def test_graph_and_parents(homelab: Simulation) -> None:
    regs = homelab.named()
    cluster = regs["arda"]
    assert cluster.type == "iluvatar:arda:TalosCluster"
    assert sorted(r.name for r in homelab.children(cluster)) == sorted(
        ["arda-talos", "arda-secrets", "arda-schematic-generic-x86", "arda-bootstrap", "arda-kubeconfig", "arda-kubernetes", "arda-cilium"]
        + [f"arda-{n}" for n in ("taniquetil", "tirion", "alqualonde", "gandalf", "saruman")]
    )
    for node in ("taniquetil", "tirion", "alqualonde", "gandalf", "saruman"):
        component = regs[f"arda-{node}"]
        assert component.type == "iluvatar:arda:TalosNode"
        assert [r.name for r in homelab.children(component)] == [f"arda-{node}-apply"]
    assert sorted(r.name for r in homelab.children(regs["arda-cilium"])) == ["arda-cilium-l2-policy", "arda-cilium-lb-pool", "arda-cilium-release"]


def test_every_resource_uses_its_explicit_provider(homelab: Simulation) -> None:
    """Default providers are disabled; each resource must name the provider of its own cluster."""
    regs = homelab.named()
    providers = {
        "talos": "arda-talos",
        "command": "ainur-command",
        "random": "ainur-random",
        "kubernetes:arda": "arda-kubernetes",
        "kubernetes:netboot": "ainur-kubernetes",
    }
    checked = 0
    for r in homelab.registrations:
        if not r.custom or r.type.startswith("pulumi:providers:"):
            continue
        package = r.type.split(":")[0]
        key = f"kubernetes:{r.name.split('-')[0]}" if package == "kubernetes" else package
        assert r.provider.startswith(regs[providers[key]].urn + "::"), (r.name, r.provider)
        checked += 1
    assert checked == 29


def test_bring_up_order(homelab: Simulation) -> None:
    regs = homelab.named()
    applies = {r.urn for r in homelab.by_type(APPLY)}
    bootstrap_deps = set(regs["arda-bootstrap"].dependencies)
    assert bootstrap_deps & applies == {regs["arda-taniquetil-apply"].urn}
    assert regs["arda-bootstrap"].inputs["node"] == "192.168.0.21"
    assert regs["arda-bootstrap"].urn in regs["arda-kubeconfig"].dependencies
    for cr in ("arda-cilium-lb-pool", "arda-cilium-l2-policy"):
        assert regs["arda-cilium-release"].urn in regs[cr].dependencies


def test_machine_secrets_are_protected_and_survive_upgrades(homelab: Simulation) -> None:
    secrets = homelab.named()["arda-secrets"]
    assert secrets.protect
    assert secrets.inputs["talosVersion"] == "v1.12.4"
    protected = [r.name for r in homelab.registrations if r.protect]
    assert protected == ["arda-secrets"]


def test_applies_carry_a_secret_machine_config_per_node(homelab: Simulation) -> None:
    applies = {r.name: r for r in homelab.by_type(APPLY)}
    assert set(applies) == {f"arda-{n}-apply" for n in ("taniquetil", "tirion", "alqualonde", "gandalf", "saruman")}
    tirion = applies["arda-tirion-apply"].inputs
    assert tirion["node"] == "192.168.0.22"
    assert isinstance(tirion["machineConfigurationInput"], SecretValue)
    assert "hostname: tirion" in tirion["machineConfigurationInput"].value
    assert tirion["onDestroy"] == {"graceful": True, "reboot": True, "reset": True}


def test_cluster_credentials_are_secret_outputs(homelab: Simulation) -> None:
    assert isinstance(homelab.outputs["ardaKubeconfig"], SecretValue)
    assert isinstance(homelab.outputs["ardaTalosconfig"], SecretValue)
    assert homelab.outputs["ardaInstallerImages"]["generic-x86"].startswith("factory.talos.dev/metal-installer/")
    assert homelab.outputs["ardaPxeUrls"]["generic-x86"].startswith("https://pxe.factory.talos.dev/pxe/")
    assert homelab.outputs["ardaPxeUrls"]["generic-x86"].endswith("/v1.12.4/metal-amd64")


def test_cilium_release_and_pool(homelab: Simulation) -> None:
    regs = homelab.named()
    release = regs["arda-cilium-release"].inputs
    assert (release["chart"], release["version"], release["namespace"]) == ("cilium", "1.18.4", "kube-system")
    assert release["repositoryOpts"] == {"repo": "https://helm.cilium.io"}
    assert regs["arda-cilium-lb-pool"].inputs["spec"] == {"blocks": [{"start": "192.168.0.220", "stop": "192.168.0.239"}]}


def test_rk1_uses_the_rk1_overlay_schematic() -> None:
    sim = simulate(read_stack_file(RK1))
    schematic = sim.named()["arda-schematic-rk1"]
    assert "name: turingrk1" in schematic.inputs["schematic"]
    assert sim.outputs["ardaInstallerImages"]["rk1"].startswith("factory.talos.dev/installer/")


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
    assert added == ["arda-radagast", "arda-radagast-apply"]
    assert set(before) <= set(after)
    changed = sorted(u.rsplit("::", 1)[-1] for u in before if before[u] != after[u])
    assert changed == NETBOOT_AGGREGATES, "only the aggregates may change"
    # The aggregates that list machines do change: the DHCP reservations and the talosconfig's nodes.
    assert len(grown.outputs["reservations"]) == len(homelab.outputs["reservations"]) + 1


def test_removing_a_node_removes_only_its_own(tmp_path: Path, homelab: Simulation) -> None:
    doc = edit(homelab_doc(), delete=["iluvatar:nodes[7]"])
    shrunk = simulate(read_stack_file(write_stack(tmp_path, doc, stack="homelab")))
    before, after = _inputs_by_urn(homelab), _inputs_by_urn(shrunk)
    assert sorted(u.rsplit("::", 1)[-1] for u in set(before) - set(after)) == ["arda-saruman", "arda-saruman-apply"]
    assert sorted(u.rsplit("::", 1)[-1] for u in after if after[u] != before[u]) == NETBOOT_AGGREGATES


def test_talos_upgrade_is_a_planned_change_of_the_configs_only(tmp_path: Path, homelab: Simulation) -> None:
    doc = edit(homelab_doc(), {"iluvatar:arda.talosVersion": "v1.12.5"})
    upgraded = simulate(read_stack_file(write_stack(tmp_path, doc, stack="homelab")))
    before, after = _inputs_by_urn(homelab), _inputs_by_urn(upgraded)
    assert set(before) == set(after)
    changed = sorted(u.rsplit("::", 1)[-1] for u in before if before[u] != after[u])
    # Secrets' talosVersion changes too, but ignore_changes keeps the engine from touching it.
    assert changed == sorted(
        [
            "arda-alqualonde-apply",
            "arda-gandalf-apply",
            "arda-saruman-apply",
            "arda-secrets",
            "arda-taniquetil-apply",
            "arda-tirion-apply",
            *NETBOOT_AGGREGATES,
        ]
    )
    assert "v1.12.5" in after[upgraded.named()["arda-tirion-apply"].urn]["machineConfigurationInput"].value
