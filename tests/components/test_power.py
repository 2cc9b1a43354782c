"""Power-on under the mock runtime: each powered machine's apply after its power step, what each step runs, its secrets.

Two stacks: the homelab with gandalf woken by Wake-on-LAN and saruman on a BMC (with the Ainur's
netboot), and the rk1 Turing Pi 2 with its four RK1 on the board's BMC, talos-4 flashed (no Ainur).
Steps are found by what they run (the MAC in the sender's command, `--machine` in the BMC's), apply
steps by the upgrader's arguments, never by resource names.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iluvatar.graph import Graph, provider_urn
from iluvatar.render import plan_entries, render_files
from iluvatar.simulate import Registration, SecretValue, Simulation, simulate
from plans import power as plan
from stacks import StackConfig, load_stack_file, read_stack_file, releases
from stacks.load import StackFile
from tests.bringup import upgrader_args, violations
from tests.edit import HOMELAB, RK1, ROOT, SALT, edit, homelab_doc, write_stack
from tests.sims import outputs_of, simulated
from tests.strategies import raw_stacks

LOCAL, REMOTE = "command:local:Command", "command:remote:Command"
CANARY = "CANARY-BMC-PASSWORD-9e41"
SECURE = {"secure": "v1:bm9uY2Vub25jZW5v:Y2lwaGVydGV4dGNpcGhlcnRleHQ="}


# The shipped stacks' Talos and Kubernetes minors (v1.14, v1.35): what a power step must not name.
TALOS_MINOR, KUBERNETES_MINOR = (v.rsplit(".", 1)[0] for v in (releases.TALOS, releases.KUBERNETES))


def homelab_variant(tmp: Path, more: dict[str, Any] | None = None) -> Path:
    doc = edit(
        homelab_doc(),
        {
            "iluvatar:nodes[6].power": {"wakeOnLan": {"link": "enp0s25"}},
            # A BMC powers a module in a Turing Pi 2 slot: saruman as an RK1.
            "iluvatar:nodes[7].arch": "arm64",
            "iluvatar:nodes[7].board": "rk1",
            "iluvatar:nodes[7].power": {"bmc": {"address": "192.168.0.5", "slot": 2}},
            "iluvatar:bmcPasswords": {"192.168.0.5": SECURE},
            **(more or {}),
        },
    )
    return write_stack(tmp, doc, stack="homelab")


def rk1_variant(tmp: Path) -> Path:
    doc: dict[str, Any] = yaml.safe_load(RK1.read_text())
    for i, node in enumerate(doc["config"]["iluvatar:nodes"]):
        node["power"] = {"bmc": {"address": "10.10.0.6", "slot": i + 1, **({"flash": True} if i == 3 else {})}}
    doc["config"]["iluvatar:bmcPasswords"] = {"10.10.0.6": SECURE}
    return write_stack(tmp, doc, stack="rk1")


@pytest.fixture(scope="module")
def stacks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[StackConfig, Simulation]]:
    out = {}
    for name, make in (("homelab", homelab_variant), ("rk1", rk1_variant)):
        path = make(tmp_path_factory.mktemp(name))
        out[name] = (load_stack_file(path), simulate(read_stack_file(path)))
    return out


def power_step(sim: Simulation, stack: StackConfig, name: str) -> Registration:
    node = next(n for n in stack.nodes if n.name == name)
    found = [
        r
        for r in sim.registrations
        if (r.type == LOCAL and f"--machine {name} " in str(r.inputs.get("create"))) or (r.type == REMOTE and node.mac in str(r.inputs.get("create")))
    ]
    assert len(found) == 1, [r.name for r in found]
    return found[0]


def apply_step(sim: Simulation, stack: StackConfig, name: str) -> Registration:
    node = next(n for n in stack.nodes if n.name == name)
    found = [r for r in sim.registrations if upgrader_args(r)[:1] == ["apply"] and f"{node.name}={node.ip}" in upgrader_args(r)]
    assert len(found) == 1
    return found[0]


@pytest.mark.parametrize("which", ["homelab", "rk1"])
def test_each_powered_machines_apply_comes_after_its_power_step(stacks: dict[str, tuple[StackConfig, Simulation]], which: str) -> None:
    stack, sim = stacks[which]
    graph = Graph.of(sim)
    powered = [n for n in stack.arda_nodes if n.power is not None]
    assert [n.name for n in powered] == (["gandalf", "saruman"] if which == "homelab" else ["talos-1", "talos-2", "talos-3", "talos-4"])
    for node in powered:
        step, apply = power_step(sim, stack, node.name), apply_step(sim, stack, node.name)
        assert graph.after(apply, step), f"{apply.name} is not after {step.name}"
        # Directly: the apply's own depends_on names the step, not only some chain through another machine.
        assert step.urn in apply.dependencies
        assert not graph.after(step, apply)


def _ranges(value: Any) -> Iterator[tuple[IPv4Address, IPv4Address]]:
    """Every address range of a raw config (a mapping with start and end: the DHCP range, the load-balancer pool...)."""
    if isinstance(value, dict):
        if {"start", "end"} <= value.keys():
            yield IPv4Address(value["start"]), IPv4Address(value["end"])
        for item in value.values():
            yield from _ranges(item)
    elif isinstance(value, list):
        for item in value:
            yield from _ranges(item)


def free_lan_addresses(raw: dict[str, Any]) -> list[str]:
    """The LAN's host addresses that no key of a raw config writes and no range of it lends, from the top down: where a
    BMC may be (stacks.addresses refuses one off the LAN and its VLANs, or at another device's address)."""
    written = set(re.findall(r"\d+\.\d+\.\d+\.\d+", json.dumps(raw)))
    ranges = list(_ranges(raw))
    hosts = reversed(list(IPv4Network(raw["iluvatar:network"]["lan"]).hosts()))
    return [str(ip) for ip in hosts if str(ip) not in written and not any(start <= ip <= end for start, end in ranges)]


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(raw=raw_stacks(), data=st.data())
def test_random_stacks_power_each_machine_before_its_apply(
    raw: dict[str, Any], data: st.DataObject, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Random stacks, random machines powered (WoL where the Ainur share its LAN, else a BMC slot): the order holds, and so do
    the bring-up invariants (tests.bringup)."""
    with_ainur = "iluvatar:ainur" in raw
    bmcs: list[str] = []
    free = free_lan_addresses(raw)
    for node in raw["iluvatar:nodes"]:
        if node["role"] not in ("valinor", "istari") or not data.draw(st.booleans()):
            continue
        # An RK1 takes no Wake-on-LAN (its Turing Pi 2 slot's power is cut whole by the board's BMC), nor a Pi 4 (its
        # hardware cannot wake on LAN): both go on a BMC slot.
        if with_ainur and "vlan" not in node and node["board"] not in ("rk1", "rpi4") and data.draw(st.booleans()):
            node["power"] = {"wakeOnLan": {"link": data.draw(st.sampled_from(["enp1s0", "eno1", "end0"]))}}
        elif node["board"] != "generic-x86":  # no Turing Pi 2 slot holds an x86 PC
            address = free[len(bmcs) // 4]  # a BMC of its own every four slots, on the LAN at an address nothing else has
            node["power"] = {"bmc": {"address": address, "slot": 1 + len(bmcs) % 4}}
            bmcs.append(address)
    if bmcs:
        raw["iluvatar:bmcPasswords"] = {a: {"secure": "v1:bm9uY2Vub25jZW5v:Y2lwaGVydGV4dGNpcGhlcnRleHQ="} for a in sorted(set(bmcs))}
    path = tmp_path_factory.mktemp("random") / "Pulumi.random.yaml"
    path.write_text(json.dumps({"config": {"pulumi:disable-default-providers": ["*"], **raw}, "encryptionsalt": SALT}))
    stack = load_stack_file(path)
    sim = simulate(read_stack_file(path))
    graph = Graph.of(sim)
    for node in stack.arda_nodes:
        if node.power is not None:
            assert graph.after(apply_step(sim, stack, node.name), power_step(sim, stack, node.name)), node.name
    assert violations(sim, stack) == []


def test_without_the_power_step_in_the_apply_the_graph_says_so(tmp_path: Path) -> None:
    """The invariant above fails when TalosCluster does not wait for power_on (the gate it checks)."""
    from tests.bringup import edited

    path = homelab_variant(tmp_path)
    stack = load_stack_file(path)
    with edited("components.arda", ("*([args.power_on[node.name]] if node.name in args.power_on else [])", "")):
        sim = simulate(read_stack_file(path))
    step, apply = power_step(sim, stack, "gandalf"), apply_step(sim, stack, "gandalf")
    assert not Graph.of(sim).after(apply, step)


def test_power_steps_wait_for_netboot_and_the_magic_packet_goes_out_from_the_pi_serving_it(
    stacks: dict[str, tuple[StackConfig, Simulation]],
) -> None:
    """On a first deployment each step waits for netboot to serve; the magic packet goes out over SSH to the Ainur's service
    address (whichever Pi runs the netboot pod holds it), never to one Pi in particular, and after no Pi's join."""
    stack, sim = stacks["homelab"]
    graph = Graph.of(sim)
    wake, bmc = power_step(sim, stack, "gandalf"), power_step(sim, stack, "saruman")
    netboot = [r for r in sim.registrations if r.type == "kubernetes:apps/v1:Deployment" and r.inputs["metadata"]["name"] == "netboot"]
    assert len(netboot) == 1
    for step in (wake, bmc):
        assert graph.after(step, netboot[0]), f"{step.name} can power a machine on before its DHCP/PXE server serves"
    # Directly after netboot's serving objects only (which come after the Ainur's API, so after the first valar's join).
    assert sorted(named_of(sim, u) for u in wake.dependencies) == [
        "netboot-daemonset-netboot-cache", "netboot-deployment-netboot", "netboot-service-netboot"
    ]  # fmt: skip
    connection = wake.inputs["connection"]
    connection = connection.value if isinstance(connection, SecretValue) else connection
    assert stack.ainur is not None
    assert (connection["host"], connection["user"]) == (str(stack.ainur.service_ip), "ubuntu") == ("192.168.0.14", "ubuntu")


def test_the_steps_are_one_component_and_machines_without_power_have_none(stacks: dict[str, tuple[StackConfig, Simulation]]) -> None:
    _, sim = stacks["homelab"]
    component = sim.one("iluvatar:arda:Power", "arda-power")
    assert sorted((r.name, r.type) for r in sim.children(component)) == [
        ("arda-power-command", "pulumi:providers:command"),
        ("arda-power-gandalf", REMOTE),
        ("arda-power-saruman", LOCAL),
    ]
    plain = simulated(HOMELAB)
    assert plain.by_type("iluvatar:arda:Power") == []


def test_a_step_is_about_its_machine_not_its_versions(stacks: dict[str, tuple[StackConfig, Simulation]]) -> None:
    """What a power step runs names the machine (MAC, address, slot), never the versions or patches: it runs again when the
    machine is replaced or moves, not on every change of Arda."""
    stack, sim = stacks["homelab"]
    bmc, wake = power_step(sim, stack, "saruman"), power_step(sim, stack, "gandalf")
    assert bmc.inputs["environment"] == {"ILUVATAR_MAC": "28:d2:44:30:00:02"}
    gandalf = next(n for n in stack.nodes if n.name == "gandalf")
    assert wake.inputs["create"] == plan.wake_command(stack, gandalf)
    assert "update" not in wake.inputs  # an update runs `create` again (pulumi-command, remote/commandController.go:75-80)
    assert wake.inputs["create"].startswith("python3 -c ")
    assert wake.inputs["create"].endswith(" gandalf 28:d2:44:30:00:01 192.168.0.255 192.168.0.31:50000")
    for step in (bmc, wake):
        assert not [v for v in json.dumps(step.inputs, default=repr).split('"') if v.startswith((TALOS_MINOR, KUBERNETES_MINOR))], step.name


def named_of(sim: Simulation, urn: str) -> str:
    return next(r.name for r in sim.registrations if r.urn == urn)


def plain(value: Any) -> Any:
    """A value with its secrets' values in clear, to compare two runs' inputs as the engine diffs them."""
    if isinstance(value, SecretValue):
        return plain(value.value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def runs(before: Simulation, after: Simulation) -> set[str]:
    """The resources the engine runs a step for going from `before` to `after`: new ones, and those whose inputs changed."""
    old = before.named()
    return {r.urn for r in after.registrations if r.name not in old or plain(old[r.name].inputs) != plain(r.inputs)}


def on_the_ainur(reg: Registration, sim: Simulation) -> bool:
    """A step that needs a Pi (a command over SSH) or the Ainur's API (an object through its Kubernetes provider)."""
    ainur = {r.urn for r in sim.registrations if r.type == "pulumi:providers:kubernetes" and r.name == "ainur-kubernetes"}
    return reg.type == REMOTE or provider_urn(reg.provider) in ainur


@pytest.mark.parametrize(
    ("start", "change"),
    [
        # Deployed at Talos v1.13.9 (the 1.13 release a path goes through), then the shipped stacks' v1.14.1: one minor's roll.
        ({"iluvatar:arda.talosVersion": "v1.13.9"}, {"iluvatar:arda.talosVersion": releases.TALOS}),
        ({}, {"iluvatar:nodes[6].talosPatches": [{"machine": {"sysctls": {"vm.nr_hugepages": "64"}}}]}),
    ],
    ids=["talos-upgrade", "patch"],
)
def test_a_roll_of_machines_already_on_waits_on_no_pi(
    tmp_path: Path, start: dict[str, Any], change: dict[str, Any], stacks: dict[str, tuple[StackConfig, Simulation]]
) -> None:
    """A Talos upgrade or a patch on a deployed homelab, gandalf woken by Wake-on-LAN, saruman on a BMC: the engine runs
    no step on a Pi or the Ainur's API before any machine's apply, so with the first valar down (or the Ainur's API) the
    roll goes on. The Ainur's objects a Talos upgrade changes (the served configs, the cache's assets) still run, beside
    the roll, for the machines that boot from the network later; the power steps do not run at all."""
    path = homelab_variant(tmp_path, start)
    # The module's run of the same variant when the deployment starts from it (main's shared simulation), else its own.
    before = stacks["homelab"][1] if not start else simulate(read_stack_file(path))
    previous = outputs_of(before)
    doc = edit(yaml.safe_load(path.read_text()), change)
    (tmp_path / "after").mkdir()
    after = simulate(read_stack_file(write_stack(tmp_path / "after", doc, stack="homelab")), previous=previous)
    graph, ran, stack = Graph.of(after), runs(before, after), load_stack_file(path)
    applies = [apply_step(after, stack, n.name) for n in stack.arda_nodes]
    assert {a.urn for a in applies if a.urn in ran} == ({a.urn for a in applies} if "iluvatar:arda.talosVersion" in change else {applies[-2].urn})
    for apply in applies:
        waits = sorted(
            after.named()[graph.registrations[u].name].name for u in graph.ancestors(apply.urn) & ran if on_the_ainur(graph.registrations[u], after)
        )
        assert waits == [], f"{apply.name} waits on {waits}"
    assert not {power_step(after, stack, n).urn for n in ("gandalf", "saruman")} & ran
    if "iluvatar:arda.talosVersion" in change:
        assert {"netboot-configmap-netboot", "netboot-daemonset-netboot-cache"} <= {graph.registrations[u].name for u in ran}


def test_the_bmc_steps_commands_and_bounds(stacks: dict[str, tuple[StackConfig, Simulation]]) -> None:
    stack, sim = stacks["rk1"]
    images = sim.outputs["ardaDiskImages"]
    for i in range(1, 4):
        step = power_step(sim, stack, f"talos-{i}")
        command = f".venv/bin/iluvatar power bmc --machine talos-{i} --bmc https://10.10.0.6 --slot {i} --user root --timeout 5m"
        assert (step.inputs["create"], step.inputs["update"]) == (command, command)
        assert step.custom_timeouts == {"create": "10m", "update": "10m"}
        # No Ainur, so no netboot to wait for, and nothing of Arda's versions in it: it waits for nothing.
        assert step.dependencies == ()
    flash = power_step(sim, stack, "talos-4")
    # Flashing on the first run only; every later run powers on.
    assert flash.inputs["create"] == (
        ".venv/bin/iluvatar power bmc --machine talos-4 --bmc https://10.10.0.6 --slot 4 --user root "
        f"--flash {images['talos-4']} --talos 10.10.0.14:50000 --probe 300s --timeout 45m"
    )
    assert images["talos-4"].endswith("/v1.14.1/metal-arm64.raw.xz")
    assert flash.inputs["update"] == ".venv/bin/iluvatar power bmc --machine talos-4 --bmc https://10.10.0.6 --slot 4 --user root --timeout 5m"
    assert flash.custom_timeouts == {"create": "50m", "update": "10m"}


def test_the_bmc_password_reaches_its_step_only_as_a_secret_and_never_in_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The engine hands the program the decrypted passwords; they go to stdin, secret, and nowhere else."""
    path = rk1_variant(tmp_path)
    sf = read_stack_file(path)
    assert "iluvatar:bmcPasswords" in sf.secret_keys
    decrypted = StackFile(sf.path, {**sf.config, "iluvatar:bmcPasswords": {"10.10.0.6": CANARY}}, sf.secret_keys)
    sim = simulate(decrypted)
    stack = load_stack_file(path)
    for i in range(1, 5):
        step = power_step(sim, stack, f"talos-{i}")
        assert step.secret_inputs == ("stdin",)
        assert isinstance(step.inputs["stdin"], SecretValue)
        assert json.loads(step.inputs["stdin"].value) == {"password": CANARY}, "the canary must flow through the program"
        for key, value in step.inputs.items():
            if key != "stdin":
                assert CANARY not in json.dumps(value, default=repr), key
    files = render_files(sim)
    for rel, content in files.items():
        assert CANARY not in content, f"the BMC password in clear in {rel}"
    assert CANARY not in json.dumps(sim.outputs, default=repr)
    assert CANARY not in json.dumps([c for c in sim.component_outputs.values()], default=repr)
    out = capsys.readouterr()
    assert CANARY not in out.out + out.err


def test_render_with_power_is_offline_and_byte_identical(tmp_path: Path) -> None:
    path = rk1_variant(tmp_path)
    trees = []
    for name in ("one", "two"):
        out = tmp_path / name
        result = subprocess.run(
            [str(ROOT / ".venv/bin/iluvatar"), "render", str(path), "--out", str(out)], capture_output=True, text=True, timeout=600, cwd=tmp_path
        )
        assert result.returncode == 0, result.stderr
        trees.append({str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()})
    assert trees[0] == trees[1]
    plan_txt = trees[0]["plan.txt"].decode()
    lines = plan_entries(plan_txt)
    assert "  arda-power  (iluvatar:arda:Power)" in lines
    # Flashing may take its 45 minutes on the first run; a later run only powers on.
    step = next(line for line in lines if line.startswith("    arda-power-talos-4  (command:local:Command)"))
    # It flashes the board's disk image, which the factory serves once it was sent the schematic: after it, by name.
    assert "[timeouts: create 50m, update 10m] [after: arda-config-schematic-rk1] [provider: arda-power-command]" in step
    assert "[after: arda-config-schematic-rk1, arda-power-talos-2, arda-talos-1-apply]" in next(
        line for line in lines if line.strip().startswith("arda-talos-2-apply")
    )


def test_the_power_step_is_a_step_of_plans_power() -> None:
    assert plan.POWER_CLI == (".venv/bin/iluvatar", "power")
