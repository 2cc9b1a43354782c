"""Day-2 changes under the mock runtime (issue 28): a renamed, re-addressed or removed machine, and what
`pulumi destroy` would do, read from two simulated runs (before and after) and their graphs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from iluvatar import simulate as simulate_module
from iluvatar.graph import Graph
from iluvatar.render import redact
from iluvatar.simulate import Registration, Simulation, simulate
from stacks import read_stack_file
from tests.edit import edit, homelab_doc, homelab_stack_file, write_stack


def outputs_of(sim: Simulation) -> dict[str, object]:
    """The outputs the next run reads back, as the engine keeps them (secrets redacted: no rule reads them)."""
    result = json.loads(json.dumps(redact(sim.outputs)))
    assert isinstance(result, dict)
    return result


def identities(reg: Registration) -> set[str]:
    """A registration's URN and the URNs its aliases name (a name alias keeps the parent and type)."""
    prefix = reg.urn.rsplit("::", 1)[0]
    return {reg.urn, *(f"{prefix}::{a.removeprefix('name=')}" for a in reg.aliases if a.startswith("name="))}


def deleted(before: Simulation, after: Simulation) -> list[Registration]:
    """What the engine would delete going from `before` to `after`: resources no registration or alias claims."""
    claimed = {urn for reg in after.registrations for urn in identities(reg)}
    return [r for r in before.registrations if r.urn not in claimed]


def _again(tmp_path: Path, doc: dict[str, object], before: Simulation) -> Simulation:
    return simulate(read_stack_file(write_stack(tmp_path, doc, stack="homelab")), previous=outputs_of(before))


def test_renaming_a_machine_resets_nothing_and_uninstalls_nothing(tmp_path: Path, homelab: Simulation) -> None:
    doc = edit(homelab_doc(), {"iluvatar:nodes[6].name": "mithrandir", "iluvatar:nodes[1].name": "fionwe"})
    after = _again(tmp_path, doc, homelab)
    gone = deleted(homelab, after)
    # Nothing with a destroy-time command goes (the Talos reset, the k3s uninstall): both moved by alias.
    assert [r.name for r in gone if r.type.startswith("command:") and r.inputs.get("delete")] == []
    regs = after.named()
    assert regs["arda-mithrandir-apply"].aliases == ("name=arda-gandalf-apply",)
    assert regs["ainur-fionwe-join"].aliases == ("name=ainur-eonwe-join",)
    # What does go: the renamed Pi's label patch (the Node object is the new name's now).
    assert sorted(r.name for r in gone) == ["storage-ainur-node-eonwe"]


def test_a_removed_machine_is_reset_by_its_steps_delete(tmp_path: Path, homelab: Simulation) -> None:
    after = _again(tmp_path, edit(homelab_doc(), delete=["iluvatar:nodes[7]"]), homelab)
    gone = {r.name: r for r in deleted(homelab, after)}
    assert sorted(gone) == ["arda-saruman", "arda-saruman-apply"]
    assert gone["arda-saruman-apply"].inputs["delete"] == ".venv/bin/iluvatar upgrader reset --node saruman=192.168.0.32 --mode auto --timeout 20m"


def test_an_address_change_updates_the_machines_step(tmp_path: Path, homelab: Simulation) -> None:
    after = _again(tmp_path, edit(homelab_doc(), {"iluvatar:nodes[7].ip": "192.168.0.42"}), homelab)
    assert deleted(homelab, after) == []
    step = after.named()["arda-saruman-apply"]
    assert step.inputs["create"] == (
        ".venv/bin/iluvatar upgrader apply --node saruman=192.168.0.42 --role worker --pause StatefulSet/argocd/argocd-application-controller --timeout 45m"
    )
    assert step.inputs["create"] != homelab.named()["arda-saruman-apply"].inputs["create"]


def test_destroy_goes_in_the_safe_order(homelab: Simulation) -> None:
    """In-cluster objects go with their cluster; machines are reset workers first, the first control plane last; each Pi's k3s is uninstalled."""
    graph = Graph.of(homelab)
    regs = homelab.named()
    anchors = {"arda": regs["arda-bootstrap"].urn, "ainur": regs["ainur-k3s-token"].urn}
    for reg in homelab.registrations:
        if reg.type.startswith("kubernetes:") and reg.custom and not reg.type.startswith("pulumi:providers:"):
            assert reg.deleted_with in anchors.values(), reg.name
    # The engine deletes dependents first: the reverse of a creation order.
    order = [r.name for r in reversed(graph.order())]
    resets = [n for n in order if n.endswith("-apply") and regs[n].inputs.get("delete")]
    assert resets == ["arda-saruman-apply", "arda-gandalf-apply", "arda-alqualonde-apply", "arda-tirion-apply", "arda-taniquetil-apply"]
    # Each Pi's k3s is uninstalled by its own resource, before its join is forgotten; the joins delete nothing (a rebuilt
    # Pi's join is replaced, docs/day2.md), and the order between Pis does not matter (k3s's uninstall needs no cluster).
    pis = ("manwe", "eonwe", "ilmare")
    assert {n for n in order if regs[n].inputs.get("delete")} & {f"ainur-{pi}-{kind}" for pi in pis for kind in ("join", "k3s", "oidc")} == set()
    for pi in pis:
        uninstall = regs[f"ainur-{pi}-uninstall"]
        assert uninstall.inputs["delete"].startswith("set -eu\nfor script in /usr/local/bin/k3s-uninstall.sh /usr/local/bin/k3s-agent-uninstall.sh")
        assert order.index(f"ainur-{pi}-uninstall") < order.index(f"ainur-{pi}-join")


def _probe_says(states: dict[str, str]) -> dict[str, object]:
    return {"command:local:run": lambda args: {**args, "stdout": json.dumps({"nodes": states}), "stderr": ""}}


def test_a_machine_found_in_maintenance_mode_is_configured_again(tmp_path: Path, homelab: Simulation) -> None:
    previous = outputs_of(homelab)
    reflashed = simulate(homelab_stack_file(), previous=previous, answers=_probe_says({"gandalf": "maintenance", "tirion": "unreachable"}))  # type: ignore[arg-type]
    before, after = homelab.named(), reflashed.named()
    changed = sorted(n for n, r in after.items() if r.type == "command:local:Command" and r.inputs != before[n].inputs)
    # Only gandalf's step re-runs (its generation rose); an unreachable machine keeps its own.
    assert changed == ["arda-gandalf-apply"]
    assert after["arda-gandalf-apply"].inputs["environment"]["ILUVATAR_GENERATION"] == "1"
    assert reflashed.outputs["arda"]["nodes"]["gandalf"]["generation"] == 1
    # The next run keeps it, whatever the probe says then: nothing re-runs again.
    again = simulate(homelab_stack_file(), previous=outputs_of(reflashed))
    assert again.named()["arda-gandalf-apply"].inputs == after["arda-gandalf-apply"].inputs
    # The probe runs only at `pulumi up` on a deployed cluster, with the Talos credentials on stdin (a secret).
    probes = [a for t, a in reflashed.invocations if t == "command:local:run"]
    assert [p["command"] for p in probes] == [
        ".venv/bin/iluvatar upgrader probe --node taniquetil=192.168.0.21 --node tirion=192.168.0.22 --node alqualonde=192.168.0.23"
        " --node gandalf=192.168.0.31 --node saruman=192.168.0.32 --deadline 3s"
    ]
    assert not [t for t, _ in homelab.invocations if t == "command:local:run"]
    preview = simulate(homelab_stack_file(), previous=previous, preview=True)
    assert not [t for t, _ in preview.invocations if t == "command:local:run"]


def test_day_340_renewed_credentials_replace_no_provider_and_touch_no_object(monkeypatch: pytest.MonkeyPatch, homelab: Simulation) -> None:
    """30 days before their end, the Talos provider renews Arda's kubeconfig and the Talos client certificate
    (talos_cluster_kubeconfig's and talos_machine_secrets' ModifyPlan): the renewed run, as the engine sees it."""
    renewed = dict(simulate_module.RESOURCE_STATE)
    renewed["talos:cluster/kubeconfig:Kubeconfig"] = lambda a: {"kubeconfigRaw": "(renewed on day 340)", "kubernetesClientConfiguration": {}}
    monkeypatch.setattr(simulate_module, "RESOURCE_STATE", renewed)
    day340 = simulate(homelab_stack_file(), previous=outputs_of(homelab))
    before, after = homelab.named(), day340.named()
    # Every Kubernetes provider names its cluster (clusterIdentifier): pulumi-kubernetes then updates it for a new
    # kubeconfig and never replaces it (provider.go DiffConfig), so nothing it manages is replaced either.
    for name, reg in after.items():
        if reg.type == "pulumi:providers:kubernetes":
            assert reg.inputs["clusterIdentifier"] == before[name].inputs["clusterIdentifier"] == ("arda" if "arda" in name else "ainur"), name
    changed = sorted(n for n, r in after.items() if r.inputs != before[n].inputs)
    # What does change: the Arda providers' kubeconfig, and the gates that read it (they re-run, and pass).
    assert changed == [
        "arda-cilium-gate-crds",
        "arda-gate-nodes",
        "arda-kubernetes",
        "arda-monitoring-gate-crds",
        "data-backup-gate-talos-api-access",
        "data-secrets-gate",
        "edge-certificates-gate-cert-manager",
        "edge-certificates-gate-trust-manager",
        "gitops-arda-kubernetes",
    ]
    # And the run after it (still day 340) changes nothing at all.
    again = simulate(homelab_stack_file(), previous=outputs_of(day340))
    assert sorted(n for n, r in again.named().items() if r.inputs != after[n].inputs) == []


def test_a_kubernetes_upgrade_is_checked_against_the_cluster_before_the_first_machine(homelab: Simulation) -> None:
    previous = outputs_of(homelab)
    arda = previous["arda"]
    assert isinstance(arda, dict)
    previous["arda"] = {**arda, "kubernetesVersion": "v1.33.5"}
    after = simulate(homelab_stack_file(), previous=previous)
    preflight = after.named()["arda-kubernetes-preflight"]
    assert preflight.inputs["create"] == ".venv/bin/iluvatar upgrader kubernetes-preflight --to v1.34.1 --timeout 5m"
    stdin = preflight.inputs["stdin"]
    assert type(stdin).__name__ == "SecretValue"  # the talosconfig is a secret
    assert sorted(json.loads(stdin.value)) == ["talosconfig"]
    graph = Graph.of(after)
    first = after.named()["arda-taniquetil-apply"]
    assert graph.after(first, preflight)
    # No Kubernetes change, no check: a run against its own outputs has no such step.
    assert "arda-kubernetes-preflight" not in homelab.named()
    assert "arda-kubernetes-preflight" not in simulate(homelab_stack_file(), previous=outputs_of(homelab)).named()


def test_a_kubernetes_upgrade_rolls_component_by_component_after_the_preflight_and_before_the_first_machine(homelab: Simulation) -> None:
    previous = outputs_of(homelab)
    arda = previous["arda"]
    assert isinstance(arda, dict)
    previous["arda"] = {**arda, "kubernetesVersion": "v1.33.5"}
    after = simulate(homelab_stack_file(), previous=previous)
    named = after.named()
    upgrade = named["arda-kubernetes-upgrade"]
    # Every machine the last deployment installed, control planes then workers, where they answer now (`talosctl upgrade-k8s`'s order).
    assert upgrade.inputs["create"] == (
        ".venv/bin/iluvatar upgrader kubernetes-upgrade --to v1.34.1 --control-plane taniquetil=192.168.0.21 --control-plane tirion=192.168.0.22 "
        "--control-plane alqualonde=192.168.0.23 --worker gandalf=192.168.0.31 --worker saruman=192.168.0.32 --timeout 75m"
    )
    stdin = upgrade.inputs["stdin"]
    assert type(stdin).__name__ == "SecretValue"  # the talosconfig and the machine configs are secrets
    given = json.loads(stdin.value)
    assert sorted(given) == ["machineConfigs", "talosconfig"]
    assert sorted(given["machineConfigs"]) == ["alqualonde", "gandalf", "saruman", "taniquetil", "tirion"]
    graph = Graph.of(after)
    assert graph.after(upgrade, named["arda-kubernetes-preflight"])
    assert graph.after(named["arda-taniquetil-apply"], upgrade)
    # No Kubernetes change, no upgrade step.
    assert "arda-kubernetes-upgrade" not in simulate(homelab_stack_file(), previous=outputs_of(homelab)).named()
