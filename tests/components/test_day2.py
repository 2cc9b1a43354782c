"""Day-2 changes under the mock runtime (issue 28): a renamed, re-addressed or removed machine, and what
`pulumi destroy` would do, read from two simulated runs (before and after) and their graphs."""

from __future__ import annotations

import datetime
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from iluvatar import simulate as simulate_module
from iluvatar.graph import Graph
from iluvatar.render import rollout_text
from iluvatar.simulate import Registration, Simulation, simulate
from plans import netboot as netboot_plan
from plans import rollout
from plans.netboot import dhcp_probe, vip_roll
from stacks import load_stack_file, read_stack_file
from tests.edit import HOMELAB, edit, homelab_doc, homelab_stack_file, write_stack
from tests.sims import homelab_next, logged_run, outputs_of, simulated


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
    # Home Assistant runs on gandalf's own network, named by the machine's name: renamed with it.
    doc = edit(
        homelab_doc(),
        {"iluvatar:nodes[6].name": "mithrandir", "iluvatar:nodes[1].name": "fionwe", "iluvatar:apps[0].hostNetwork.node": "mithrandir"},
    )
    after = _again(tmp_path, doc, homelab)
    gone = deleted(homelab, after)
    # Nothing with a destroy-time command goes (the Talos reset, the k3s uninstall): both moved by alias.
    assert [r.name for r in gone if r.type.startswith("command:") and r.inputs.get("delete")] == []
    regs = after.named()
    assert regs["arda-mithrandir-apply"].aliases == ("name=arda-gandalf-apply",)
    assert regs["ainur-fionwe-join"].aliases == ("name=ainur-eonwe-join",)
    # What does go: the renamed Pi's label patch (the Node object is the new name's now). Its journal forwarder's step
    # moves by alias: deleted, its delete would run after the new name's create on the same Pi and undo it.
    assert sorted(r.name for r in gone) == ["storage-ainur-node-eonwe"]
    assert regs["logs-ainur-fionwe-journal-upload"].aliases == ("name=logs-ainur-eonwe-journal-upload",)


def test_a_removed_machine_is_reset_by_its_steps_delete(tmp_path: Path, homelab: Simulation) -> None:
    after = _again(tmp_path, edit(homelab_doc(), delete=["iluvatar:nodes[7]"]), homelab)
    gone = {r.name: r for r in deleted(homelab, after)}
    # And the ConfigMap of the dnsmasq.conf that tagged it (its dhcp-mac line), at the end of the `up`, after the netboot
    # Deployment moved to the new conf's (plans.netboot.objects).
    conf = netboot_plan.dnsmasq_configmap(netboot_plan.dnsmasq_conf(load_stack_file(HOMELAB)))
    assert sorted(gone) == ["arda-saruman", "arda-saruman-apply", f"netboot-configmap-{conf}"]
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
    # The probe runs on a deployed cluster, with the Talos credentials on stdin, at `pulumi up` and at
    # `pulumi preview` alike (what the preview shows: test_a_preview_lists_every_machine_step_that_will_run_and_why).
    probe = (
        ".venv/bin/iluvatar upgrader probe --node taniquetil=192.168.0.21 --node tirion=192.168.0.22 --node alqualonde=192.168.0.23"
        " --node gandalf=192.168.0.31 --node saruman=192.168.0.32 --deadline 3s"
    )
    probes = [a for t, a in reflashed.invocations if t == "command:local:run"]
    assert [p["command"] for p in probes] == [probe]
    assert not [t for t, _ in homelab.invocations if t == "command:local:run"]
    preview, _ = logged_run(homelab_doc(), "homelab", previous, preview=True)
    assert [a["command"] for t, a in preview.invocations if t == "command:local:run"] == [probe]


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
        "data-drill-gate-storage",
        "data-secrets-gate",
        "edge-certificates-gate-cert-manager",
        "edge-certificates-gate-trust-manager",
        "edge-gateways-release-node-ports",
        "edge-ports-gate-cilium",
        "gitops-arda-kubernetes",
        "logs-gate-cilium",
        "logs-gate-storage",
        "monitoring-gate-cilium",
    ]
    # And the run after it (still day 340) changes nothing at all.
    again = simulate(homelab_stack_file(), previous=outputs_of(day340))
    assert sorted(n for n, r in again.named().items() if r.inputs != after[n].inputs) == []


def test_a_kubernetes_upgrade_is_checked_against_the_cluster_before_the_first_machine(homelab: Simulation) -> None:
    after = homelab_next(kubernetes="v1.34.5")  # one minor below the shipped v1.35.1
    preflight = after.named()["arda-kubernetes-preflight"]
    assert preflight.inputs["create"] == ".venv/bin/iluvatar upgrader kubernetes-preflight --to v1.35.1 --timeout 5m"
    stdin = preflight.inputs["stdin"]
    assert type(stdin).__name__ == "SecretValue"  # the talosconfig is a secret
    assert sorted(json.loads(stdin.value)) == ["machineConfigs", "talosconfig"]  # the upgrade's own (review H2 c)
    assert stdin.value == after.named()["arda-kubernetes-upgrade"].inputs["stdin"].value
    graph = Graph.of(after)
    first = after.named()["arda-taniquetil-apply"]
    assert graph.after(first, preflight)
    # No Kubernetes change, no check: a run against its own outputs has no such step.
    assert "arda-kubernetes-preflight" not in homelab.named()
    assert "arda-kubernetes-preflight" not in homelab_next().named()


# --- The day-2 plan a preview logs (plans.rollout.plan): every step `up` runs, in order, and why ----------------------

ARDA_STEPS = ["taniquetil", "tirion", "alqualonde", "gandalf", "saruman"]


def _plan(caplog: pytest.LogCaptureFixture, sim: Simulation, previous: dict[str, object], said: list[str] | None = None) -> list[str]:
    """The day-2 plan the run logged (what caplog holds, or `said`: what tests.sims.logged_run kept of a shared run), as
    lines; the same text rollout.txt holds for the same change."""
    messages = [r.getMessage() for r in caplog.records] if said is None else said
    logged = [m for m in messages if m.startswith(("Arda:", "Ainur:", "Netboot:"))]
    caplog.clear()
    # rollout.txt is what `up` would do (a render simulates an up, which probes whatever the talosconfig): the same. Its
    # text alone, as render_files writes it (tests/iluvatar/test_render.py reads rollout.txt from `iluvatar render`):
    # rendering every file of the homelab for it took 0.5 s of CPU a call.
    lines = "".join(logged).splitlines(keepends=True)
    assert "".join(line for line in lines if not line.startswith("Arda: the machines are not probed")) == rollout_text(sim, previous)
    return "".join(logged).splitlines()


def test_a_preview_says_what_a_move_between_dhcp_modes_does_to_the_household(
    tmp_path: Path, homelab: Simulation, caplog: pytest.LogCaptureFixture
) -> None:
    """The homelab runs dhcp (its last deployment's dnsmasqConf says so). A move to proxy, stated, is the user's: the plan
    says the router's DHCP stays off until `up` says to turn it on, once the Ainur stop lending (the probe before accepts
    the Ainur alone; the step after the netboot pod waits for the router). Back to dhcp, with the router's DHCP said to be
    off and the pool it lent named, the plan says the reverse."""
    caplog.set_level(logging.INFO)
    previous = outputs_of(homelab)
    (tmp_path / "proxy").mkdir()
    (tmp_path / "back").mkdir()
    # The pool the router will lend, apart from the range the Ainur lent (stacks.netboot_mode).
    doc = edit(
        homelab_doc(),
        {"iluvatar:ainur.netboot.mode": "proxy", "iluvatar:ainur.netboot.routerPool": {"start": "192.168.0.200", "end": "192.168.0.250"}},
    )
    proxy = simulate(read_stack_file(write_stack(tmp_path / "proxy", doc, stack="homelab")), previous=previous, preview=True)
    assert _plan(caplog, proxy, previous) == [
        "Netboot: the DHCP mode moves from dhcp to proxy. Leave the router's DHCP server off until `pulumi up` says to turn "
        "it on: the Ainur lend until their netboot pod restarts, and two servers lending at once would hand out the same "
        "addresses and the Ainur refuse the router's leases. Then netboot-router-dhcp says \"turn the router's DHCP server "
        'on now" and waits up to 15 min for it: its pool the one the stack names (ainur.netboot.routerPool), apart from '
        "network.dhcpRange until the Ainur's leases end (leaseTime: the household's devices keep their addresses until then, "
        "and a router that does not ping first could lend one again; the step fails on an offer outside it), the "
        "`reservations` output as its static leases, and ainur.serviceIp as the DNS server it hands out "
        "if the household should keep resolving the internal zone. If this `up` fails or stops once "
        "netboot-deployment-netboot has begun to change and before that word, turn the router's DHCP on then all the same: "
        "the Ainur's pod may already answer only the machines it boots.",
        "Arda: no change on any machine",
    ]
    regs = proxy.named()
    # The probe before the switch knows it is one (it passes with the Ainur alone lending); the step after it waits on
    # the netboot pod's Deployment, ready, and only then for the router.
    assert (
        " --mode proxy --service-ip 192.168.0.14 --lan 192.168.0.0/24 --router 192.168.0.1 --kubectl 'k3s kubectl --request-timeout=10s'"
        " --deployed-mode dhcp --deployed-service-ip 192.168.0.14 <<'ILUVATAR_PROBE'" in regs["netboot-dhcp-probe"].inputs["create"]
    )
    wait = regs["netboot-router-dhcp"]
    assert (
        " --mode proxy --service-ip 192.168.0.14 --lan 192.168.0.0/24 --router 192.168.0.1 --before dhcp --router-pool 192.168.0.200-192.168.0.250"
        " --wait-minutes 15 <<'ILUVATAR_PROBE'" in wait.inputs["create"]
    )
    assert regs["netboot-deployment-netboot"].urn in wait.dependencies
    assert wait.inputs["triggers"] == regs["netboot-dhcp-probe"].inputs["triggers"]
    # dhcp mode has no router to wait for.
    assert "netboot-router-dhcp" not in homelab.named()
    ran_proxy = outputs_of(proxy)
    doc = edit(
        homelab_doc(),
        {"iluvatar:ainur.netboot.routerDhcpOff": True, "iluvatar:ainur.netboot.routerPool": {"start": "192.168.0.240", "end": "192.168.0.250"}},
    )
    back = simulate(read_stack_file(write_stack(tmp_path / "back", doc, stack="homelab")), previous=ran_proxy, preview=True)
    assert _plan(caplog, back, ran_proxy) == [
        "Netboot: the DHCP mode moves from proxy to dhcp: once the netboot pod restarts, the Ainur are the LAN's DHCP server "
        "(network.dhcpRange, the inventory's reservations, ainur.serviceIp as DNS server). The household's devices keep the "
        "router's addresses until they renew, then take the Ainur's, which may differ. Leave the router's DHCP server on "
        'until `pulumi up` says to turn it off: right before the netboot pod restarts, netboot-router-off says "turn the '
        "router's DHCP server off now\" and waits up to 15 min until no server but the Ainur's answers (the stack says you "
        "will: ainur.netboot.routerDhcpOff). network.dhcpRange stays apart from the pool it lent (ainur.netboot.routerPool), "
        "whose addresses the household holds until their leases end.",
        "Arda: no change on any machine",
    ]
    assert (
        " --mode dhcp --service-ip 192.168.0.14 --lan 192.168.0.0/24 --router 192.168.0.1 --router-pool 192.168.0.240-192.168.0.250"
        " --kubectl 'k3s kubectl --request-timeout=10s' --deployed-mode proxy --deployed-service-ip 192.168.0.14 <<'ILUVATAR_PROBE'"
        in back.named()["netboot-dhcp-probe"].inputs["create"]
    )
    # The router goes off right before the Deployment changes, after everything else it waits on (the ConfigMap the new
    # dnsmasq reads, the clearance, the probe), not before `up`: the LAN is without a lender only for the pod's restart.
    regs = back.named()
    off = regs["netboot-router-off"]
    assert (
        " --mode dhcp --service-ip 192.168.0.14 --lan 192.168.0.0/24 --router 192.168.0.1 --router-pool 192.168.0.240-192.168.0.250"
        " --wait-off-minutes 15 --kubectl 'k3s kubectl --request-timeout=10s' --deployed-mode proxy --deployed-service-ip 192.168.0.14 <<'ILUVATAR_PROBE'"
        in off.inputs["create"]
    )
    assert off.urn in regs["netboot-deployment-netboot"].dependencies
    # kube-vip running on every Ready Pi first (Pulumi does not await its OnDelete DaemonSet, which it follows): the
    # household's time without a lender does not include a first image pull; 3 min more for that wait.
    assert off.inputs["create"].startswith(vip_roll.running_script() + "set -eu\n")
    assert regs["netboot-daemonset-kube-vip-services"].urn in off.dependencies
    assert off.custom_timeouts == {"create": "23m"}
    assert {regs[n].urn for n in ("netboot-configmap-netboot", "netboot-clearance", "netboot-dhcp-probe")} <= set(off.dependencies)
    assert off.inputs["triggers"] == regs["netboot-dhcp-probe"].inputs["triggers"]
    # Nothing to turn off on a move to proxy. In dhcp mode the step is always there, and reads what runs (issue 53: the
    # outputs of a failed `up` would hide a move): on a dhcp homelab's `up` it passes at once.
    assert "netboot-router-off" not in proxy.named()
    assert "--router-pool none --wait-off-minutes 15" in homelab.named()["netboot-router-off"].inputs["create"]


def test_a_retried_move_to_proxy_still_says_turn_the_router_on(tmp_path: Path, homelab: Simulation, monkeypatch: pytest.MonkeyPatch) -> None:
    """dhcp -> proxy, retried after an `up` that failed before the Deployment changed: the engine wrote the proxy outputs,
    so the outputs show no move, but the probe reads the dhcp pod still running and tells the user to leave the router's
    DHCP off until the `up` says to turn it on. The step after the pod must then say it, and hold the router's offers
    to the pool the stack names, apart from the Ainur's leases (#53)."""
    pool = {"start": "192.168.0.200", "end": "192.168.0.250"}
    doc = edit(homelab_doc(), {"iluvatar:ainur.netboot.mode": "proxy", "iluvatar:ainur.netboot.routerPool": pool})
    (tmp_path / "failed").mkdir()
    (tmp_path / "retry").mkdir()
    failed = outputs_of(simulate(read_stack_file(write_stack(tmp_path / "failed", doc, stack="homelab")), previous=outputs_of(homelab)))
    mocked = simulate_module.RESOURCE_STATE["command:remote:Command"]
    told = dhcp_probe.switch_note("proxy", ["192.168.0.14"], [], "dhcp")
    assert told is not None

    def probe_tells(args: dict[str, Any]) -> dict[str, Any]:
        # The probe's output as the real step prints it on this retry (dhcp_probe.main: the live dhcp pod, a move).
        probe = "--mode proxy" in str(args.get("create")) and "--kubectl" in str(args.get("create"))
        return {**mocked(args), "stdout": told + "\n"} if probe else dict(mocked(args))

    monkeypatch.setitem(simulate_module.RESOURCE_STATE, "command:remote:Command", probe_tells)
    retry = simulate(read_stack_file(write_stack(tmp_path / "retry", doc, stack="homelab")), previous=failed)
    assert " --before " not in retry.named()["netboot-dhcp-probe"].inputs["create"].split("<<'ILUVATAR_PROBE'")[0]
    assert (
        " --mode proxy --service-ip 192.168.0.14 --lan 192.168.0.0/24 --router 192.168.0.1 --before dhcp --router-pool 192.168.0.200-192.168.0.250 --wait-minutes 15 <<'ILUVATAR_PROBE'"
        in retry.named()["netboot-router-dhcp"].inputs["create"]
    )
    # With the probe silent on it (a restart that is no move), the step says only that the router has not answered yet.
    monkeypatch.setitem(simulate_module.RESOURCE_STATE, "command:remote:Command", mocked)
    steady = simulate(read_stack_file(write_stack(tmp_path / "retry", doc, stack="homelab")), previous=failed)
    assert (
        " --mode proxy --service-ip 192.168.0.14 --lan 192.168.0.0/24 --router 192.168.0.1 --wait-minutes 15 <<'ILUVATAR_PROBE'"
        in steady.named()["netboot-router-dhcp"].inputs["create"]
    )


def test_a_moved_service_address_is_the_ainurs_own_to_the_probe(tmp_path: Path, homelab: Simulation) -> None:
    """ainur.serviceIp moved in dhcp mode: until the netboot objects change, the running dnsmasq answers from the last
    deployment's address, which the probe counts as the Ainur's (after the stack's own). The router's DHCP server is
    named to it too: network.gateway, or ainur.netboot.routerAddress where the router's DHCP answers from elsewhere."""
    moved = _again(
        tmp_path, edit(homelab_doc(), {"iluvatar:ainur.serviceIp": "192.168.0.17", "iluvatar:ainur.netboot.routerAddress": "192.168.0.2"}), homelab
    )
    create = moved.named()["netboot-dhcp-probe"].inputs["create"]
    assert (
        " --mode dhcp --service-ip 192.168.0.17 --service-ip 192.168.0.14 --lan 192.168.0.0/24 --router 192.168.0.2 --router-pool none"
        " --kubectl 'k3s kubectl --request-timeout=10s' --deployed-mode dhcp --deployed-service-ip 192.168.0.14 <<'ILUVATAR_PROBE'" in create
    )


def test_a_preview_lists_every_machine_step_that_will_run_and_why(tmp_path: Path, homelab: Simulation, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    previous = outputs_of(homelab)
    arda = previous["arda"]
    assert isinstance(arda, dict)
    # The last `up` exported the talosconfig's endpoints and its client certificate's end, for this run to foresee.
    assert (arda["endpoints"], arda["clientCertificateExpires"]) == (["192.168.0.21", "192.168.0.22", "192.168.0.23"], "2027-11-25T12:07:33Z")

    # Nothing changed: the preview says so, and asks the machines (nothing found).
    # The maintenance-mode test's preview of the same run (tests.sims.logged_run: once a process, with what it logged).
    same, said = logged_run(homelab_doc(), "homelab", previous, preview=True)
    assert _plan(caplog, same, previous, said) == ["Arda: no change on any machine"]

    # A machine reflashed since: the probe finds it at preview, and the plan names the one step that runs.
    reflashed = simulate(homelab_stack_file(), previous=previous, preview=True, answers=_probe_says({"gandalf": "maintenance"}))  # type: ignore[arg-type]
    assert _plan(caplog, reflashed, previous)[1:] == ["  1. gandalf: found in maintenance mode (reset or reflashed): configured again"]

    # A control plane's new address: every step's talosconfig (its endpoints) changes, so every Arda step runs, in order.
    moved = simulate(
        read_stack_file(write_stack(tmp_path, edit(homelab_doc(), {"iluvatar:nodes[4].ip": "192.168.0.24"}), stack="homelab")),
        previous=previous,
        preview=True,
    )
    assert _plan(caplog, moved, previous) == [
        "Arda: the talosconfig every step reads on stdin changes (its endpoints, the control planes' addresses, change from "
        "192.168.0.21, 192.168.0.22, 192.168.0.23 to 192.168.0.21, 192.168.0.24, 192.168.0.23), so all 8 Arda steps run, one at a "
        "time in this order (a machine as configured only checks its health; an upgrade, or a change Talos must reboot for, "
        "drains and reboots its machine):",
        "  1. taniquetil: as configured: checks its health",
        "  2. tirion: address 192.168.0.22 -> 192.168.0.24; machine config",
        "  3. alqualonde: as configured: checks its health",
        "  4. gandalf: as configured: checks its health",
        "  5. saruman: as configured: checks its health",
        "  6. bootstrap (on taniquetil, once its step is done): etcd is bootstrapped already: it only checks that",
        "  7. gate-api: waits for etcd, the API servers and the VIP again",
        "  8. gate-nodes: waits for every machine Ready again",
    ]

    # Within a month of the client certificate's end, the Talos provider renews it: the same, for that reason. The
    # talosconfig is unknown at that preview, so the machines are not probed then (and the plan says so).
    renewing = simulate(homelab_stack_file(), previous=previous, preview=True, now=datetime.datetime(2027, 10, 26, tzinfo=datetime.UTC))
    plan = _plan(caplog, renewing, previous)
    # The k3s certificates the same Pis made on the same day a year ago fall due too (since 119 days before their end):
    # each Pi's k3s step runs first (test_a_run_within_k3s_s_window_runs_each_pi_s_k3s_step_once_to_renew_its_certificates).
    assert [line.split(":")[0] for line in plan[:4]] == ["Ainur", "  1. manwe", "  2. eonwe", "  3. ilmare"]
    plan = plan[4:]
    assert plan[0] == (
        "Arda: the talosconfig every step reads on stdin changes (the Talos client certificate expires on 2027-11-25, within a "
        "month of 2027-10-26: the Talos provider renews it in this run), so all 8 Arda steps run, one at a time in this order "
        "(a machine as configured only checks its health; an upgrade, or a change Talos must reboot for, drains and reboots its machine):"
    )
    assert [line.split(":")[0].strip() for line in plan[1:9]] == [
        f"{i}. {n}" for i, n in enumerate([*ARDA_STEPS, "bootstrap (on taniquetil, once its step is done)", "gate-api", "gate-nodes"], 1)
    ]
    assert plan[9:] == [
        "Arda: the machines are not probed for maintenance mode at this preview (their talosconfig is renewed in this run); every "
        "machine's step runs anyway, and one it finds in maintenance mode is handed its config and installs"
    ]
    assert not [t for t, _ in renewing.invocations if t == "command:local:run"]
    # The day before that window (Go's AddDate(0, 1, 0) from October 25 is November 25, not before the end): nothing on
    # Arda (the Ainur's k3s steps, due since July, as above).
    assert _plan(
        caplog, simulate(homelab_stack_file(), previous=previous, preview=True, now=datetime.datetime(2027, 10, 25, tzinfo=datetime.UTC)), previous
    )[4:] == ["Arda: no change on any machine"]

    # A k3s version bump: every Pi's k3s step, the first valar first, then the other valar, then the maiar.
    ainur = previous["ainur"]
    assert isinstance(ainur, dict)
    older = {**previous, "ainur": {**ainur, "k3sVersion": "v1.34.9+k3s1"}}
    bumped = simulate(homelab_stack_file(), previous=older, preview=True)
    assert _plan(caplog, bumped, older) == [
        "Ainur: 3 Pi(s) change, one at a time in this order, each back and healthy before the next:",
        *(
            f"  {i}. {pi}: k3s v1.34.9+k3s1 -> v1.35.8+k3s1: its k3s step upgrades it, then waits for its Node Ready (and etcd on a valar)"
            for i, pi in enumerate(["manwe", "eonwe", "ilmare"], 1)
        ),
        "Arda: no change on any machine",
    ]
    # A setting every Pi's config carries (the Ainur's VIP: the valar's tls-san, the others' server URL): every Pi's join
    # re-runs and restarts k3s, in the same order. The maiar's k3s step runs again too: the server URL is in its command
    # (k3s's installer's K3S_URL), and it checks its Node.
    moved_vip = edit(homelab_doc(), {"iluvatar:ainur.vip": "192.168.0.9"})
    shared = simulate(read_stack_file(write_stack(tmp_path, moved_vip, stack="homelab")), previous=previous, preview=True)
    join = "its k3s config changes: its join writes it and restarts k3s, then waits for its Node Ready (and etcd on a valar)"
    again = f"its k3s step: {rollout.CHANGED_STEP} (with k3s at its version and running it, it restarts nothing, and checks its Node and etcd)"
    assert _plan(caplog, shared, previous)[:4] == [
        "Ainur: 3 Pi(s) change (a setting every Pi's config carries), one at a time in this order, each back and healthy before the next:",
        f"  1. manwe: {join}",
        f"  2. eonwe: {join}; {again}",
        f"  3. ilmare: {join}; {again}",
    ]


def test_a_kubernetes_upgrade_rolls_component_by_component_after_the_preflight_and_before_the_first_machine(homelab: Simulation) -> None:
    after = homelab_next(kubernetes="v1.34.5")  # one minor below the shipped v1.35.1
    named = after.named()
    upgrade = named["arda-kubernetes-upgrade"]
    # Every machine the last deployment installed, control planes then workers, where they answer now (`talosctl upgrade-k8s`'s order).
    assert upgrade.inputs["create"] == (
        ".venv/bin/iluvatar upgrader kubernetes-upgrade --to v1.35.1 --control-plane taniquetil=192.168.0.21 --control-plane tirion=192.168.0.22 "
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
    # The etcd snapshot comes before the preflight, the chain's first step (review M2), named by what ran.
    # Written once (--keep): a later attempt keeps the first attempt's file (review 2 N3).
    snapshot = named["arda-etcd-snapshot"]
    assert snapshot.inputs["create"] == (
        ".venv/bin/iluvatar upgrader etcd-snapshot --node taniquetil=192.168.0.21 "
        "--out .iluvatar/snapshots/arda-etcd-before-talos-v1.14.1-kubernetes-v1.34.5.db --keep --timeout 10m"
    )
    assert graph.after(named["arda-kubernetes-preflight"], snapshot)
    assert "arda-etcd-snapshot" not in homelab_next().named()
    # No Kubernetes change, no upgrade step.
    assert "arda-kubernetes-upgrade" not in homelab_next().named()


def _talos_ran(version: str) -> Simulation:
    """The homelab's next run on outputs recording every machine at Talos `version` (the stack asks for v1.14.1)."""
    previous = outputs_of(simulated(HOMELAB))
    arda = previous["arda"]
    nodes = {name: {**n, "installer": n["installer"].rsplit(":", 1)[0] + f":{version}"} for name, n in arda["nodes"].items()}
    return simulate(homelab_stack_file(), previous={**previous, "arda": {**arda, "talosVersion": version, "nodes": nodes}})


def test_the_roll_that_moves_etcds_minor_snapshots_etcd_first_into_a_file_it_keeps() -> None:
    """Talos v1.13.9 -> v1.14.1 moves etcd from 3.6.12 to 3.7.1 (#57) in the machines' own steps: the run's first step is
    the etcd snapshot a path or a Kubernetes upgrade takes, named by what ran and written once (the first control
    plane's own snapshot, .iluvatar/snapshots/arda-etcd-before-rollout.db, is replaced by every later run's)."""
    sim = _talos_ran("v1.13.9")
    named = sim.named()
    snapshot = named["arda-etcd-snapshot"]
    assert snapshot.inputs["create"] == (
        ".venv/bin/iluvatar upgrader etcd-snapshot --node taniquetil=192.168.0.21 "
        "--out .iluvatar/snapshots/arda-etcd-before-talos-v1.13.9-kubernetes-v1.35.1.db --keep --timeout 10m"
    )
    assert Graph.of(sim).after(named["arda-taniquetil-apply"], snapshot)
    # Within etcd 3.7 (a 1.14 patch), none: the first control plane's own snapshot is enough.
    assert "arda-etcd-snapshot" not in _talos_ran("v1.14.0").named()


def _arda_ainur(previous: dict[str, object]) -> tuple[dict[str, Any], dict[str, Any]]:
    arda, ainur = previous["arda"], previous["ainur"]
    assert isinstance(arda, dict) and isinstance(ainur, dict)
    return arda, ainur


def test_each_steps_commands_are_exported_as_the_program_registers_them(homelab: Simulation) -> None:
    """The digest the next run compares is of the commands the engine is given (create, update, delete), step by step:
    every Arda and Ainur Command the program registers (but the Kubernetes preflight and upgrade, which exist for one
    run), and nothing else."""
    arda, ainur = _arda_ainur(outputs_of(homelab))
    unlisted: list[str] = []
    for prefix, exported in (("arda-", arda["commands"]), ("ainur-", ainur["commands"])):
        registered = {
            r.name.removeprefix(prefix): rollout.command_digest(r.inputs.get("create"), r.inputs.get("update"), r.inputs.get("delete"))
            for r in homelab.registrations
            if r.type in ("command:local:Command", "command:remote:Command") and r.name.startswith(prefix)
        }
        assert exported == {k: v for k, v in registered.items() if k in exported}, prefix
        unlisted += sorted(f"{prefix}{k}" for k in set(registered) - set(exported))
    assert sorted(arda["commands"]) == sorted([*(f"{n}-apply" for n in ARDA_STEPS), "bootstrap", "gate-api", "gate-nodes"])
    # Not listed: the gates that wait for a component's CRDs before its objects (a wait of seconds, run again with them).
    assert unlisted == ["arda-cilium-gate-crds", "arda-monitoring-gate-crds"]


def test_a_preview_names_the_steps_whose_commands_iluvatar_changed(tmp_path: Path, homelab: Simulation, caplog: pytest.LogCaptureFixture) -> None:
    """A new version of Iluvatar that writes some steps' commands differently: the engine re-runs those steps at the next
    `up` whatever the stack says, and the plan says which, and why."""
    caplog.set_level(logging.INFO)
    previous = outputs_of(homelab)
    arda, ainur = _arda_ainur(previous)
    older = {
        **previous,
        "arda": {**arda, "commands": {**arda["commands"], "gandalf-apply": "0", "bootstrap": "0", "gate-nodes": "0"}},
        "ainur": {**ainur, "commands": {**ainur["commands"], "eonwe-join": "0", "manwe-k3s": "0", "credentials": "0"}},
    }
    again = simulate(homelab_stack_file(), previous=older, preview=True)
    assert _plan(caplog, again, older) == [
        "Ainur: 2 Pi(s) change, one at a time in this order, each back and healthy before the next:",
        f"  1. manwe: its k3s step: {rollout.CHANGED_STEP} (with k3s at its version and running it, it restarts nothing, and checks its "
        "Node and etcd)",
        f"  2. eonwe: its join step: {rollout.CHANGED_STEP} (with its config unchanged it restarts nothing, and checks its Node and etcd)",
        f"Ainur: credentials: {rollout.CHANGED_STEP}",
        "Arda: 1 machine(s) change, one at a time in this order, each checked healthy before the next (an upgrade, or a change "
        "Talos must reboot for, drains and reboots its machine):",
        f"  1. gandalf: {rollout.CHANGED_STEP} (as configured, it only checks its health)",
        f"Arda: bootstrap, gate-nodes: {rollout.CHANGED_STEP}, after the machines' steps (etcd is bootstrapped already: it only "
        "checks that; waits for every machine Ready again)",
    ]

    # A last deployment by an Iluvatar that recorded neither the commands nor the Pis' configs: the plan says what it
    # cannot know, rather than nothing.
    bare = {
        **previous,
        "arda": {k: v for k, v in arda.items() if k != "commands"},
        "ainur": {
            **{k: v for k, v in ainur.items() if k != "commands"},
            "nodes": {n: {k: v for k, v in pi.items() if k != "config"} for n, pi in ainur["nodes"].items()},
        },
    }
    unknown = simulate(homelab_stack_file(), previous=bare, preview=True)
    assert _plan(caplog, unknown, bare) == [
        "Ainur: 3 Pi(s) change, one at a time in this order, each back and healthy before the next:",
        *(
            f"  {i}. {pi}: its k3s config: unknown: the last deployment did not record it (its join writes it and restarts k3s only if it changed)"
            for i, pi in enumerate(["manwe", "eonwe", "ilmare"], 1)
        ),
        f"Ainur: {rollout.UNRECORDED}",
        f"Arda: {rollout.UNRECORDED}",
    ]


def _k3s_triggers(sim: Simulation) -> dict[str, object]:
    return {
        name.removeprefix("ainur-").removesuffix("-k3s"): reg.inputs.get("triggers") for name, reg in sim.named().items() if name.endswith("-k3s")
    }


def test_a_run_within_k3s_s_window_runs_each_pi_s_k3s_step_once_to_renew_its_certificates(
    homelab: Simulation, caplog: pytest.LogCaptureFixture
) -> None:
    """k3s renews its certificates only as it starts, within 120 days of their end. Each `up` records the end each Pi's
    k3s step read, and a run within 119 days of it gives every Pi's k3s step a trigger naming it: the step runs (one Pi
    at a time, in the Pis' chain) and restarts k3s. The trigger is recorded, so the next run leaves the steps alone. On
    today's main nothing recorded the end and nothing ran the step: the Ainur stopped a year after its Pis' last restart."""
    caplog.set_level(logging.INFO)
    previous = outputs_of(homelab)
    end = simulate_module.MOCK_K3S_CERTIFICATES_END
    assert end == "2027-11-25T12:00:00Z"
    pis = ["manwe", "eonwe", "ilmare"]
    assert previous["ainur"]["certificates"] == {pi: {"end": end, "trigger": None, "clock": None} for pi in pis}

    # 120 days before the end: outside the program's 119 (a day short of k3s's 120, for the Pis' clocks): nothing runs.
    early = simulate(homelab_stack_file(), previous=previous, preview=True, now=datetime.datetime(2027, 7, 28, 12, 0, tzinfo=datetime.UTC))
    assert _k3s_triggers(early) == dict.fromkeys(pis)
    assert _plan(caplog, early, previous) == ["Arda: no change on any machine"]

    # 118 days before: every Pi's k3s step runs, in the Pis' order, each gated.
    due = simulate(homelab_stack_file(), previous=previous, preview=True, now=datetime.datetime(2027, 7, 30, 12, 0, tzinfo=datetime.UTC))
    trigger = f"renew the k3s certificates ending {end}"
    assert _k3s_triggers(due) == {pi: [trigger] for pi in pis}
    said = "its k3s certificates end at 2027-11-25T12:00:00Z, within 119 days: its k3s step runs and restarts k3s, which renews them only as it starts (within 120 days of their end), then waits for its Node Ready"
    gated = ", and the netboot pod (the LAN's DHCP and DNS) available before the next Pi"
    assert _plan(caplog, due, previous) == [
        "Ainur: 3 Pi(s) change, one at a time in this order, each back and healthy before the next:",
        f"  1. manwe: {said} and etcd healthy{gated}",
        f"  2. eonwe: {said}{gated}",
        f"  3. ilmare: {said}{gated}",
        "Arda: no change on any machine",
    ]

    # That run, done: its trigger recorded, with the end the steps read after it. The next run, on the same day, keeps it.
    ran = homelab_next(now=datetime.datetime(2027, 7, 30, 12, 0, tzinfo=datetime.UTC))
    after = outputs_of(ran)
    caplog.clear()
    assert after["ainur"]["certificates"] == {pi: {"end": end, "trigger": trigger, "clock": None} for pi in pis}
    again = simulate(homelab_stack_file(), previous=after, preview=True, now=datetime.datetime(2027, 7, 31, 12, 0, tzinfo=datetime.UTC))
    assert _k3s_triggers(again) == {pi: [trigger] for pi in pis}
    assert _plan(caplog, again, after) == ["Arda: no change on any machine"]

    # A year on, the renewed end recorded (2028-11-24) falls due in its turn: a new trigger, the steps run again.
    renewed = {**after, "ainur": {**after["ainur"], "certificates": {pi: {"end": "2028-11-24T12:00:00Z", "trigger": trigger} for pi in pis}}}
    next_year = simulate(homelab_stack_file(), previous=renewed, preview=True, now=datetime.datetime(2028, 7, 30, 12, 0, tzinfo=datetime.UTC))
    assert _k3s_triggers(next_year) == {pi: ["renew the k3s certificates ending 2028-11-24T12:00:00Z"] for pi in pis}


def test_a_pi_that_does_not_answer_keeps_its_trigger_and_the_others_are_renewed(homelab: Simulation, caplog: pytest.LogCaptureFixture) -> None:
    """Eonwë is down (a dead card, parts on order) when the Ainur's certificates fall due. Its step would dial it for
    the SSH bound (minutes), fail, and every later Pi's step waits on it in the chain, run after run. It does not answer
    within ANSWER_SECONDS, so its step keeps its last trigger (not replaced, not dialled), a warning names it, and manwë
    and ilmarë are renewed; the next run it answers renews it. Before, every Pi's step took the new trigger."""
    caplog.set_level(logging.INFO)
    previous = outputs_of(homelab)
    end = simulate_module.MOCK_K3S_CERTIFICATES_END
    day = datetime.datetime(2027, 7, 30, 12, 0, tzinfo=datetime.UTC)
    trigger = f"renew the k3s certificates ending {end}"
    down = simulate(homelab_stack_file(), previous=previous, preview=True, now=day, silent={"192.168.0.12"})
    assert _k3s_triggers(down) == {"manwe": [trigger], "eonwe": None, "ilmare": [trigger]}
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "ainur: eonwe" in r.getMessage()]
    assert warned == [
        f"ainur: eonwe: its k3s certificates end at {end}, within 119 days, but it did not answer on 192.168.0.12:22 within 3 s, "
        "so this run does not renew them, and leaves its k3s step as it is (a k3s upgrade of it included) (the other Pis are "
        "renewed); bring it back and run `pulumi up` again, or remove it for "
        "good (docs/day2.md#a-dead-pi-removed-for-good)"
    ]
    said = "its k3s certificates end at 2027-11-25T12:00:00Z, within 119 days: its k3s step runs and restarts k3s"
    plan = _plan(caplog, down, previous)
    assert [line.split(":")[0] for line in plan] == ["Ainur", "  1. manwe", "  2. ilmare", "Arda"]
    assert plan[1].startswith(f"  1. manwe: {said}") and plan[2].startswith(f"  2. ilmare: {said}")
    # Recorded as it ran: eonwë's trigger still none, so the run after it answers gives its step the new one.
    ran = outputs_of(simulate(homelab_stack_file(), previous=previous, now=day, silent={"192.168.0.12"}))
    assert ran["ainur"]["certificates"]["eonwe"] == {"end": end, "trigger": None, "clock": None}
    back = simulate(homelab_stack_file(), previous=ran, preview=True, now=day + datetime.timedelta(days=3))
    assert _k3s_triggers(back) == {"manwe": [trigger], "eonwe": [trigger], "ilmare": [trigger]}


def test_the_probe_of_a_pi_is_a_bounded_tcp_connection_to_its_ssh_port() -> None:
    """components.ainur.answers: a listener answers; a closed port does not (refused at once), each within its bound."""
    import socket

    from components import ainur

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert ainur.answers("127.0.0.1", port, 1.0)
    assert not ainur.answers("127.0.0.1", port, 1.0)
    assert (ainur.SSH_PORT, ainur.ANSWER_SECONDS) == (22, 3.0)


def test_a_run_within_a_month_of_a_recorded_end_warns_with_or_without_monitoring(homelab: Simulation, caplog: pytest.LogCaptureFixture) -> None:
    """The alert needs the monitoring layer (`init` makes it optional); the program knows every Pi's recorded end, so
    every preview and `up` within 30 days of it, or past it, says so for each Pi. Before, a stack without monitoring
    heard nothing as the end neared."""
    previous = outputs_of(homelab)
    end = simulate_module.MOCK_K3S_CERTIFICATES_END

    def warned(day: datetime.datetime) -> list[str]:
        caplog.clear()
        caplog.set_level(logging.INFO)
        simulate(homelab_stack_file(), previous=previous, preview=True, now=day)
        return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.getMessage().startswith("ainur: ")]

    assert warned(datetime.datetime(2027, 10, 26, 12, 0, tzinfo=datetime.UTC)) == []
    tail = (
        "(at 2027-11-25T12:00:00Z, as its k3s step last read them); this `pulumi up` runs its k3s step, which restarts k3s to "
        "renew them; if it fails or the Pi does not answer, restart k3s on it by hand (docs/day2.md#the-ainurs-k3s-certificates)"
    )
    assert end == "2027-11-25T12:00:00Z"
    assert warned(datetime.datetime(2027, 11, 10, tzinfo=datetime.UTC)) == [
        f"ainur: {pi}: its k3s certificates end within 30 days {tail}" for pi in ("manwe", "eonwe", "ilmare")
    ]
    assert warned(datetime.datetime(2027, 11, 26, tzinfo=datetime.UTC)) == [
        f"ainur: {pi}: its k3s certificates ended {tail}" for pi in ("manwe", "eonwe", "ilmare")
    ]


def test_a_k3s_upgrade_runs_each_pi_s_netboot_gate_though_its_k3s_step_prints_the_same_end(homelab: Simulation, tmp_path: Path) -> None:
    """A k3sVersion change restarts every Pi, and the step prints the same certificates' end as before (k3s keeps leaves
    outside their renewal window; a maia's earliest is a copy of its valar's). The gate was triggered by that stdout, so
    the engine did not run it after an upgrade: the next Pi restarted with the netboot pod (the LAN's DHCP and DNS) still
    coming back. Its triggers are now the k3s step's inputs: a new k3s version is a new gate trigger on every Pi, and a
    run that changes nothing changes none."""
    older = simulate(read_stack_file(write_stack(tmp_path, edit(homelab_doc(), {"iluvatar:ainur.k3sVersion": "v1.34.9+k3s1"}), stack="homelab")))
    upgraded = simulate(homelab_stack_file(), previous=outputs_of(older))
    again = homelab_next()
    for pi in ("manwe", "eonwe", "ilmare"):
        step, gate = f"ainur-{pi}-k3s", f"ainur-{pi}-netboot-ready"
        # The same end, as the step said it (its stdout): what the gate was triggered by.
        assert outputs_of(upgraded)["ainur"]["certificates"][pi]["end"] == outputs_of(older)["ainur"]["certificates"][pi]["end"]
        assert upgraded.named()[step].inputs["create"] != older.named()[step].inputs["create"]
        assert upgraded.named()[gate].inputs["triggers"] != older.named()[gate].inputs["triggers"], pi
        assert again.named()[gate].inputs["triggers"] == homelab.named()[gate].inputs["triggers"], pi


def _replaced(sim: Simulation, prior: dict[str, dict[str, Any]], name: str) -> bool:
    """Whether the engine would run step `name` again: its triggers or its script differ from the state's once the
    inputs it ignores changes to are given the state's values (pulumi-command: a new trigger replaces, a new script
    updates, and an update runs `create`)."""
    reg = sim.named()[name]
    inputs = {k: prior[name][k] if k in reg.ignore_changes else reg.inputs.get(k) for k in ("triggers", "create")}
    return inputs != {k: prior[name].get(k) for k in ("triggers", "create")}


def test_a_silent_pi_keeps_the_trigger_its_state_has_when_the_last_up_failed_after_its_step(homelab: Simulation) -> None:
    """A renewal `up` ran manwë's k3s step (its state: the new trigger, its script) and then failed: the outputs still
    hold the trigger before it (none). At the next `up` manwë does not answer within 3 s. Its trigger went back to the
    outputs' (none), a change: the engine replaced the step, which dialled the silent Pi for minutes and held every later
    Pi's step in the chain. Held, its step and its gate keep the state's inputs: nothing runs on it."""
    previous = outputs_of(homelab)
    day = datetime.datetime(2027, 7, 30, 12, 0, tzinfo=datetime.UTC)
    ran = homelab_next(now=day)
    steps = ("ainur-manwe-k3s", "ainur-manwe-netboot-ready")
    # The state after the failed `up`: manwë's step and gate as that run made them; the outputs as before it.
    prior = {name: dict(ran.named()[name].inputs) for name in steps}
    assert prior["ainur-manwe-k3s"]["triggers"] == [f"renew the k3s certificates ending {simulate_module.MOCK_K3S_CERTIFICATES_END}"]
    silent = simulate(homelab_stack_file(), previous=previous, now=day + datetime.timedelta(days=1), silent={"192.168.0.11"}, prior=prior)
    assert [_replaced(silent, prior, name) for name in steps] == [False, False]
    assert silent.named()["ainur-manwe-k3s"].ignore_changes == ("triggers", "create")
    # What the program asks is the outputs' trigger (none); the engine keeps the state's. A Pi that answers is not held.
    assert silent.named()["ainur-manwe-k3s"].inputs.get("triggers") is None
    assert ran.named()["ainur-manwe-k3s"].ignore_changes == ()


def test_the_maiar_wait_for_a_silent_valar_s_renewal(homelab: Simulation, caplog: pytest.LogCaptureFixture) -> None:
    """A maia's client-kube-proxy.crt and client-k3s-controller.crt are copies of its valar's files, fetched as its k3s
    agent starts. With manwë silent when the certificates fall due, eonwë's restart fetched manwë's old copies and its
    step failed on the end that did not move, at every `up` until manwë answered. Now the maiar are held with manwë, a
    warning says why, and nothing runs; once manwë answers, all three are renewed in order."""
    caplog.set_level(logging.INFO)
    previous = outputs_of(homelab)
    end = simulate_module.MOCK_K3S_CERTIFICATES_END
    day = datetime.datetime(2027, 7, 30, 12, 0, tzinfo=datetime.UTC)
    down = simulate(homelab_stack_file(), previous=previous, preview=True, now=day, silent={"192.168.0.11"})
    assert _k3s_triggers(down) == dict.fromkeys(("manwe", "eonwe", "ilmare"))
    assert {name: reg.ignore_changes for name, reg in down.named().items() if name.endswith("-k3s")} == dict.fromkeys(
        ("ainur-manwe-k3s", "ainur-eonwe-k3s", "ainur-ilmare-k3s"), ("triggers", "create")
    )
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "within 119 days, but" in r.getMessage()]
    assert warned == [
        f"ainur: manwe: its k3s certificates end at {end}, within 119 days, but it did not answer on 192.168.0.11:22 within 3 s, "
        "so this run does not renew them, and leaves its k3s step as it is (a k3s upgrade of it included) (the other valar "
        "are renewed, the maiar after it); bring it back and run `pulumi up` "
        "again, or remove it for good (docs/day2.md#a-dead-pi-removed-for-good)",
        *(
            f"ainur: {pi}: its k3s certificates end at {end}, within 119 days, but manwe (valar) is not renewed in this run, and a "
            "maia's kube-proxy and k3s-controller certificates are copies of a valar's, fetched as its k3s starts: this run does "
            "not renew them either, and leaves its k3s step as it is (a k3s upgrade of it included); they are renewed after the valar's, at the first `pulumi up` it answers"
            for pi in ("eonwe", "ilmare")
        ),
    ]
    assert _plan(caplog, down, previous) == ["Arda: no change on any machine"]
    back = simulate(homelab_stack_file(), previous=previous, preview=True, now=day + datetime.timedelta(days=3))
    assert _k3s_triggers(back) == {pi: [f"renew the k3s certificates ending {end}"] for pi in ("manwe", "eonwe", "ilmare")}


def test_a_pi_whose_step_found_its_clock_behind_runs_it_again_and_says_why(homelab: Simulation, caplog: pytest.LogCaptureFixture) -> None:
    """Eonwë's step found its clock behind (plans.k3s.CLOCK_LINE) and restarted nothing: the output recorded that clock.
    The next run warns naming it and gives eonwë's step a new trigger, so it runs again (the same trigger ran nothing, and
    the certificates ended); the others keep theirs."""
    caplog.set_level(logging.INFO)
    previous = outputs_of(homelab)
    end = simulate_module.MOCK_K3S_CERTIFICATES_END
    trigger = f"renew the k3s certificates ending {end}"
    certificates = {pi: {"end": end, "trigger": trigger, "clock": None} for pi in ("manwe", "eonwe", "ilmare")}
    certificates["eonwe"]["clock"] = "2027-07-28T09:00:00Z"
    ran = {**previous, "ainur": {**previous["ainur"], "certificates": certificates}}
    again = simulate(homelab_stack_file(), previous=ran, preview=True, now=datetime.datetime(2027, 7, 31, 12, 0, tzinfo=datetime.UTC))
    assert _k3s_triggers(again) == {
        "manwe": [trigger],
        "eonwe": [f"{trigger} (its clock said 2027-07-28T09:00:00Z at the last run)"],
        "ilmare": [trigger],
    }
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "its clock said" in r.getMessage()]
    assert warned == [
        f"ainur: eonwe: at the last run its clock said 2027-07-28T09:00:00Z, by which its k3s certificates (ending {end}) were "
        "not within k3s's 120 days; k3s renews them by the Pi's own clock, so its step restarted nothing; set its clock (look "
        "with: timedatectl status): this run's k3s step tries again"
    ]


def test_a_roll_of_kube_vip_that_failed_is_named_again_by_the_next_plan(homelab: Simulation) -> None:
    """The `ainur` output records the program's template whatever happened to the roll; the step's own record
    (`kubeVipRolled`) is "" after a roll that failed, so the next preview names the roll again, though the template
    did not change since; a roll that finished leaves nothing to say."""
    previous = outputs_of(homelab)
    assert previous["kubeVipRolled"] == previous["ainur"]["kubeVip"] == vip_roll.template_digest(load_stack_file(HOMELAB))
    assert "kube-vip" not in rollout_text(homelab, previous)
    failed = {**previous, "kubeVipRolled": ""}
    assert f"Ainur: {vip_roll.UNRECORDED_LINE}\n" in rollout_text(homelab, failed)
