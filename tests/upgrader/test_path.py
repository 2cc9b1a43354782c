"""A path across Talos minors: what the program registers for a 1.12 -> 1.14 bump, run by the upgrader against the
Talos API stand-in (tools/talos-api), to the end and again after a kill on the way.

The program (components.arda, stacks.day2.path_of) registers one roll step per installed machine for the running minor's
newest patch, then for each intermediate minor (`<machine>-talos-v1.12.11`, `-talos-v1.13.9`: `upgrader apply
--installer ...`), chained in the rollout order before the machines' own steps, which install the stack's Talos. Here those steps' arguments are the program's own, with each machine's
address the stand-in's; they run one after the other as Pulumi's chained Commands run them. A step killed on the way is
run again by the next `pulumi up` (its create never finished); the steps that finished are not (their inputs are
unchanged). Kubernetes is left out (`--no-kubernetes`): tests/upgrader/test_disrupt.py drains through a real API
server, with the same code.
"""

from __future__ import annotations

import itertools
import json
import shlex
from typing import Any

import pytest
import yaml

from iluvatar.simulate import Registration, simulate
from stacks import read_stack_file, releases
from tests.edit import HOMELAB, edit, homelab_doc, homelab_stack_file, write_stack
from tests.sims import outputs_of, simulated
from tests.upgrader.run import Result, mutations, secrets, until, upgrader, upgrader_watched
from tools import talos_check
from tools.talos_api import VANILLA, TalosAPI, addresses, installer, node, scenario, talos_api

OLD, HOP, NEW = "v1.12.4", "v1.13.9", releases.TALOS
# Talos's documented path starts at the running minor's newest patch (review M1): v1.12.4 -> v1.12.11 -> v1.13.9 -> v1.14.1.
START_PATCH = releases.BY_MINOR[(1, 12)].newest
ROLLS = [START_PATCH, HOP]
COMMAND = "command:local:Command"


def _bumped() -> list[Registration]:
    """The Arda steps of the homelab's run on outputs recording Talos v1.12.4: a bump of two minors."""
    previous = outputs_of(simulated(HOMELAB))
    arda = previous["arda"]
    nodes = {name: {**n, "installer": n["installer"].rsplit(":", 1)[0] + f":{OLD}"} for name, n in arda["nodes"].items()}
    previous = {**previous, "arda": {**arda, "talosVersion": OLD, "nodes": nodes}}
    sim = simulate(homelab_stack_file(), previous=previous)
    return [r for r in sim.by_type(COMMAND) if r.name.startswith("arda-") and ("-talos-" in r.name or r.name.endswith("-apply"))]


@pytest.fixture(scope="module")
def bumped() -> list[Registration]:
    return _bumped()


def test_the_program_rolls_every_machine_to_the_next_minor_before_their_own_steps(bumped: list[Registration]) -> None:
    order = outputs_of(simulated(HOMELAB))["arda"]["order"]
    assert [r.name for r in bumped] == [f"arda-{m}-talos-{v}" for v in ROLLS for m in order] + [f"arda-{m}-apply" for m in order]
    # Each step waits for the one before it: one machine at a time, the roll done everywhere before the last minor.
    by_urn = {r.urn: r.name for r in bumped}
    for before, after in itertools.pairwise(bumped):
        assert before.urn in after.dependencies, (before.name, after.name, [by_urn.get(u) for u in after.dependencies])
    roll = shlex.split(bumped[0].inputs["create"])
    image = roll[roll.index("--installer") + 1]
    assert image.startswith("factory.talos.dev/metal-installer/") and image.endswith(f":{START_PATCH}")
    roll = shlex.split(bumped[len(order)].inputs["create"])
    assert roll[roll.index("--installer") + 1].endswith(f":{HOP}")
    assert "--installer" not in bumped[2 * len(order)].inputs["create"]


def _cluster(names: list[str]) -> dict[str, Any]:
    ips = addresses(len(names))
    role = {"valinor": "controlplane", "istari": "worker"}
    return scenario([node(n, ip, role[n.split("-")[0]], OLD, upgrade={"downMs": 1500}) for n, ip in zip(names, ips, strict=True)])


def _versions(api: TalosAPI) -> dict[str, str]:
    return {name: s["version"] for name, s in sorted(api.state().items())}


def _chain(order: list[str], api: TalosAPI) -> list[tuple[str, list[str], str]]:
    """The path's steps for the stand-in's machines, as the program chains them: (name, arguments, machine config)."""
    configs = {r: api.config(r, installer(VANILLA, NEW)) for r in ("controlplane", "worker")}
    role = {"valinor": "controlplane", "istari": "worker"}
    steps = []
    for version in ROLLS:
        for m in order:
            steps.append(
                (
                    f"{m}-talos-{version}",
                    ["apply", "--node", api.node_arg(m), "--role", role[m.split("-")[0]], "--installer", installer(VANILLA, version)],
                    configs[role[m.split("-")[0]]],
                )
            )
    for m in order:
        steps.append((f"{m}-apply", ["apply", "--node", api.node_arg(m), "--role", role[m.split("-")[0]]], configs[role[m.split("-")[0]]]))
    return steps


def _run(step: tuple[str, list[str], str], api: TalosAPI) -> Result:
    _, args, config = step
    return upgrader([*args, "--timeout", "90s", "--no-kubernetes"], secrets(api, config))


ORDER = ["valinor-1", "istari-1", "istari-2"]


def test_the_programs_roll_step_is_the_upgraders_hop(bumped: list[Registration]) -> None:
    """The arguments the program gives a roll are what _chain runs: apply, the machine, its role, --installer."""
    words = shlex.split(bumped[0].inputs["create"])
    after = words[words.index("apply") :]
    assert after[:1] == ["apply"] and after[1] == "--node" and after[3] == "--role" and after[5] == "--installer"


def test_a_two_minor_bump_runs_to_the_end_one_minor_and_one_machine_at_a_time() -> None:
    with talos_api(_cluster(ORDER)) as api:
        for step in _chain(ORDER, api):
            result = _run(step, api)
            assert result.code == 0, (step[0], result.stderr)
            if "-talos-" in step[0]:
                machine, version = step[0].split("-talos-")
                assert _versions(api)[machine] == version
        assert _versions(api) == dict.fromkeys(sorted(ORDER), NEW)
        # Every machine at 1.12.11, then at 1.13.9, before any at 1.14.1: the legacy Upgrade on 1.12, the LifecycleService on 1.13.
        upgrades = [(n, m) for n, m in mutations(api) if m in ("MachineService/Upgrade", "LifecycleService/Upgrade")]
        assert upgrades == [(m, "MachineService/Upgrade") for m in ORDER] * 2 + [(m, "LifecycleService/Upgrade") for m in ORDER]
        # A roll changes no config: the rolls' calls are the upgrade alone (1.12's legacy API: pull, then upgrade).
        first = [m for n, m in mutations(api) if n == "valinor-1"]
        assert first[:2] == ["MachineService/ImagePull", "MachineService/Upgrade"]


def test_a_path_stopped_on_the_way_resumes_where_it_stopped() -> None:
    with talos_api(_cluster(ORDER)) as api:
        chain = _chain(ORDER, api)
        assert _run(chain[0], api).code == 0
        # The second roll is killed while its machine is down for the upgrade (SIGKILL: a power cut of the runner), once
        # the roll saw it go down. The stand-in answers the Upgrade before it goes down (tools/talos-api/node.go, disrupt:
        # 50 ms later, more on a loaded machine): a next run started in between reached the node and lost it at its next
        # call ("version: ... connection refused"), which is not the run during the reboot that this test means. The
        # machine stays down until the test brings it back ("never"; the upgrade is staged all the same, disrupt's
        # `prepare`): a roll starved between two polls of its boot ID still sees it down, where a down of a fixed 1.5 s
        # could pass unseen and the roll finish.
        _, args, config = chain[1]
        api.script("istari-1", upgrade={"result": "never"})
        killed = upgrader_watched(
            [*args, "--timeout", "90s", "--no-kubernetes"], secrets(api, config), lambda line: line == "upgrader: istari-1: down"
        )
        assert killed.lines[-1] == "upgrader: istari-1: down"
        assert mutations(api, "istari-1")[-1] == ("istari-1", "MachineService/Upgrade")
        assert not api.state()["istari-1"]["up"]
        assert _versions(api)["valinor-1"] == START_PATCH
        # The machine comes back, booting the upgrade it staged (the control API's power cycle, tools/talos-api/node.go
        # powerCycle: result "up" installs the pending version); its later rolls go down and up as the others do.
        api.script("istari-1", upgrade={"result": "up"})
        api.crash("istari-1", down_ms=0)
        until("istari-1 back up", lambda: bool(api.state()["istari-1"]["up"]), 60)
        assert _versions(api)["istari-1"] == START_PATCH
        # The next `pulumi up`: the killed step runs again, then the rest; valinor-1's finished roll does not.
        for step in chain[1:]:
            result = _run(step, api)
            assert result.code == 0, (step[0], result.stderr)
        assert _versions(api) == dict.fromkeys(sorted(ORDER), NEW)
        assert [m for n, m in mutations(api) if n == "valinor-1" and m.endswith("Upgrade")] == [
            "MachineService/Upgrade",
            "MachineService/Upgrade",
            "LifecycleService/Upgrade",
        ]
        # Run again whole (an output that recorded the old version, say): every roll finds its machine past it.
        again = _run(chain[0], api)
        assert again.code == 0
        assert (
            f"upgrader: valinor-1: a roll of the path to Talos {START_PATCH}: it runs {NEW} already, which this roll leaves as it is" in again.lines
        )


def test_a_machine_two_minors_behind_its_own_step_is_refused_and_left_as_it_is() -> None:
    """A machine that runs 1.12 when its own step would install 1.14 (the path not recorded): the step refuses, and
    says how to take the minor between; nothing changes on the machine."""
    with talos_api(_cluster(["istari-1"])) as api:
        result = _run(_chain(["istari-1"], api)[-1], api)
        assert result.code == 1
        assert result.last.startswith(
            f"upgrader: FAILED: istari-1: path: the node runs Talos {OLD}, and Talos {NEW} is 2 minors ahead: Talos upgrades one minor at a "
            "time, so it goes to the newest v1.13 first"
        )
        assert mutations(api) == []
        assert _versions(api) == {"istari-1": OLD}


# --- A path that needs Kubernetes on the way ------------------------------------------------------------------------
#
# Talos 1.13 runs Kubernetes 1.31 and later, 1.14 runs 1.32 and later (stacks.releases, machinery v1.14.1's compatibility
# packages): a cluster on Talos 1.12 and Kubernetes 1.30 goes to 1.14 with Kubernetes moved on the way, in the same run:
# Kubernetes v1.31.14 (1.31's newest), every machine to Talos v1.13.9, Kubernetes at the stack's v1.32.4, then every
# machine's own step installs v1.14.1. Installed at Talos v1.12.4 (the secrets' version contract, kept by ignore_changes).

KUBE_START, KUBE_ON_THE_WAY, KUBE_STACK = "v1.30.5", "v1.31.14", "v1.32.4"


def _kubernetes_path(tmp_path: Any, gone: str | None = None, **edits: Any) -> Any:
    """The path from Talos 1.12 and Kubernetes 1.30 (`gone`: a machine the last deployment's record lacks)."""
    previous = outputs_of(simulated(HOMELAB))
    arda = previous["arda"]
    nodes = {name: {**n, "installer": n["installer"].rsplit(":", 1)[0] + f":{OLD}"} for name, n in arda["nodes"].items() if name != gone}
    previous = {**previous, "arda": {**arda, "talosVersion": OLD, "kubernetesVersion": KUBE_START, "nodes": nodes}}
    doc = edit(homelab_doc(), {"iluvatar:arda.kubernetesVersion": KUBE_STACK, **edits})
    tmp_path.mkdir(parents=True, exist_ok=True)
    stack = read_stack_file(write_stack(tmp_path, doc, stack="homelab"))
    return simulate(stack, previous=previous, prior={"arda-config-secrets": {"talosVersion": OLD}})


def test_a_path_that_needs_kubernetes_moves_it_before_the_roll_that_needs_it_in_the_same_chain(tmp_path: Any) -> None:
    sim = _kubernetes_path(tmp_path)
    order = outputs_of(simulated(HOMELAB))["arda"]["order"]
    chain = [
        r
        for r in sim.by_type(COMMAND)
        if r.name.startswith("arda-") and ("-talos-" in r.name or "-kubernetes" in r.name or r.name.endswith(("-apply", "-etcd-snapshot")))
    ]
    assert [r.name for r in chain] == [
        "arda-etcd-snapshot",  # before the path's first step (review M2)
        *(f"arda-{m}-talos-{START_PATCH}" for m in order),
        f"arda-kubernetes-{KUBE_ON_THE_WAY}-preflight",
        f"arda-kubernetes-{KUBE_ON_THE_WAY}-upgrade",
        *(f"arda-{m}-talos-{HOP}" for m in order),
        "arda-kubernetes-preflight",
        "arda-kubernetes-upgrade",
        *(f"arda-{m}-apply" for m in order),
    ]
    # One chain: each step waits for the one before it (Pulumi runs them in this order, and a run stopped on the way
    # registers the same steps again: only those that did not finish run).
    for before, after in itertools.pairwise(chain):
        assert before.urn in after.dependencies, (before.name, after.name)
    commands = {r.name: shlex.split(r.inputs["create"]) for r in chain}
    # From the first control plane where it answers, to a file named by what ran: the machines' own steps' snapshot
    # (arda-etcd-before-rollout.db, the first control plane's --etcd-snapshot) comes after the path and never overwrites it.
    snapshot = commands["arda-etcd-snapshot"]
    assert snapshot[snapshot.index("etcd-snapshot") :] == [
        "etcd-snapshot",
        "--node",
        "taniquetil=192.168.0.21",
        "--out",
        f".iluvatar/snapshots/arda-etcd-before-talos-{OLD}-kubernetes-{KUBE_START}.db",
        "--keep",
        "--timeout",
        "10m",
    ]
    # Done once: neither a renewed talosconfig nor a changed command runs it again while registered (review 2 N3).
    assert sim.named()["arda-etcd-snapshot"].ignore_changes == ("create", "update", "stdin")
    machines = [a for m in order for a in ("--control-plane" if m in ("taniquetil", "tirion", "alqualonde") else "--worker", f"{m}=")]
    for name, to, way in ((f"arda-kubernetes-{KUBE_ON_THE_WAY}", KUBE_ON_THE_WAY, ["--on-the-way"]), ("arda-kubernetes", KUBE_STACK, [])):
        # The step on the way, run again once the cluster is past it, is done rather than refused as a downgrade (H2).
        assert commands[f"{name}-preflight"][-5 - len(way) :] == ["kubernetes-preflight", "--to", to, *way, "--timeout", "5m"]
        upgrade = commands[f"{name}-upgrade"]
        assert upgrade[upgrade.index("kubernetes-upgrade") : upgrade.index("kubernetes-upgrade") + 3] == ["kubernetes-upgrade", "--to", to]
        assert [w.split("=")[0] + "=" if "=" in w else w for w in upgrade[upgrade.index("--to") + 2 : -2]] == machines
    # The step on the way hands the upgrader configs the provider generates at that version, with the install's contract.
    at = [a for t, a in sim.invocations if t == talos_check.INVOKE and a["kubernetesVersion"] == KUBE_ON_THE_WAY.removeprefix("v")]
    assert sorted(talos_check.machine_name(a) for a in at) == sorted(order)
    assert {a["talosVersion"] for a in at} == {OLD}
    given = json.loads(sim.named()[f"arda-kubernetes-{KUBE_ON_THE_WAY}-upgrade"].inputs["stdin"].value)
    assert sorted(given) == ["machineConfigs", "talosconfig"] and sorted(given["machineConfigs"]) == sorted(order)
    assert sim.named()[f"arda-kubernetes-{KUBE_ON_THE_WAY}-preflight"].inputs["stdin"].value == json.dumps(given, sort_keys=True)


# What the engine diffs on a command.local.Command to decide whether a finished step runs again: a real engine updated
# the steps on `~environment,stdin` (shared/engine-facts.md), pulumi-command v1.2.1 updates or replaces on `triggers`
# ("The resource will be updated (or replaced) if any of these values change", its local.Command docs), and an input
# named in `ignore_changes` keeps its state value (iluvatar.simulate, Mocks.new_resource).
DIFFED = ("create", "update", "delete", "stdin", "environment", "triggers")


def _input(reg: Registration, key: str) -> Any:
    value = reg.inputs.get(key)
    return getattr(value, "value", value)  # a secret's plaintext


def _runs_again(finished: Registration, resumed: Registration) -> bool:
    return any(_input(finished, k) != _input(resumed, k) for k in DIFFED if k not in resumed.ignore_changes)


def test_a_kubernetes_step_on_the_way_does_not_run_again_when_its_stdin_changes_before_the_resume(tmp_path: Any) -> None:
    """Review H2 (b, c): the run stopped after the step on the way, and the user changed a patch before the resume. The
    step's stdin changed (the configs at v1.31.14 render the patches); run again, `kubernetes-upgrade --to v1.31.14`
    would face a cluster already at the stack's minor. Both steps of the pair ignore their stdin's changes; the stack's
    own pair runs again, the check with the upgrade (one stdin, the same triggers)."""
    stopped = _kubernetes_path(tmp_path / "stopped").named()
    patch: dict[str, Any] = {"iluvatar:arda.patches": [{"machine": {"sysctls": {"vm.max_map_count": "262144"}}}]}
    resumed = _kubernetes_path(tmp_path / "resumed", **patch).named()
    way, own = f"arda-kubernetes-{KUBE_ON_THE_WAY}", "arda-kubernetes"
    for step in ("preflight", "upgrade"):
        assert _input(stopped[f"{way}-{step}"], "stdin") != _input(resumed[f"{way}-{step}"], "stdin"), step  # the change reaches it
        assert not _runs_again(stopped[f"{way}-{step}"], resumed[f"{way}-{step}"]), step
        assert resumed[f"{way}-{step}"].ignore_changes == ("stdin",)
        assert resumed[f"{own}-{step}"].ignore_changes == ()
        assert _runs_again(stopped[f"{own}-{step}"], resumed[f"{own}-{step}"]), step
    for prefix in (way, own):
        check, upgrade = resumed[f"{prefix}-preflight"], resumed[f"{prefix}-upgrade"]
        assert _input(check, "stdin") == _input(upgrade, "stdin")
        assert _input(check, "triggers") == _input(upgrade, "triggers") == [_input(check, "create"), _input(upgrade, "create")]
    # Either command changing runs both steps of the pair: each names both commands in its triggers (above).


def test_the_before_path_snapshot_does_not_run_again_when_its_command_changes_before_the_resume(tmp_path: Any) -> None:
    """Review 2 N3: the run stopped after the snapshot, and its command changed before the resume (here another first
    control plane answers for it; an Iluvatar update changing a flag is the same). Run again, it would replace the only
    copy of the state before the path, under the same name, with a state from partway. It ignores its command's and its
    stdin's changes, and a later attempt of it (the step created again) keeps the file (--keep, test_talos_steps)."""
    stopped = _kubernetes_path(tmp_path / "stopped").named()["arda-etcd-snapshot"]
    resumed = _kubernetes_path(tmp_path / "resumed", gone="taniquetil").named()["arda-etcd-snapshot"]
    assert _input(stopped, "create") != _input(resumed, "create")  # the change reaches it
    assert "--keep" in shlex.split(_input(resumed, "create"))
    assert not _runs_again(stopped, resumed)


def test_the_configs_on_the_way_name_that_versions_images_as_talos_generates_them(tmp_path: Any) -> None:
    """The provider's machinery (v1.13.0, tools/talos-check) generates the step-on-the-way configs from the program's own
    invocations: every Kubernetes image at v1.31.14, which is what the upgrader's kubernetes-upgrade --to v1.31.14 takes
    (it refuses a config whose images are at another version: upgrader/internal/kubeupgrade, newTarget)."""
    sim = _kubernetes_path(tmp_path)
    batch = [m for m in talos_check.machines(sim.invocations) if m.arguments["kubernetesVersion"] == KUBE_ON_THE_WAY.removeprefix("v")]
    verdicts = talos_check.check(batch)
    assert [v.provider for v in verdicts] == [()] * len(batch)
    for verdict in verdicts:
        (config,) = [d for d in yaml.safe_load_all(verdict.config) if isinstance(d, dict) and "machine" in d]
        assert config["machine"]["kubelet"]["image"] == f"ghcr.io/siderolabs/kubelet:{KUBE_ON_THE_WAY}", verdict.name
        if config["machine"]["type"] == "controlplane":
            images = {k: config["cluster"][k]["image"] for k in ("apiServer", "controllerManager", "scheduler")}
            assert images == {
                "apiServer": f"registry.k8s.io/kube-apiserver:{KUBE_ON_THE_WAY}",
                "controllerManager": f"registry.k8s.io/kube-controller-manager:{KUBE_ON_THE_WAY}",
                "scheduler": f"registry.k8s.io/kube-scheduler:{KUBE_ON_THE_WAY}",
            }, verdict.name


# --- etcd's minor with Talos 1.14 (#57) -------------------------------------------------------------------------------
#
# Talos runs its own DefaultEtcdVersion (stacks.releases.ETCD: v3.6.12 at v1.13.9, 3.7.1 at v1.14.1), so the machines'
# own steps of a 1.13 -> 1.14 move take Arda's etcd to 3.7, control planes first, one at a time. The stand-in's members
# report the etcd of the Talos each runs (tools/talos-api/etcd.go, etcdVersion), so the mixed period is seen.

CONTROL_PLANES = ["valinor-1", "valinor-2", "valinor-3"]


def _etcd(api: TalosAPI) -> dict[str, str]:
    return {name: s["etcdVersion"] for name, s in sorted(api.state().items())}


def test_the_roll_to_talos_114_moves_etcd_to_37_after_a_snapshot_one_member_at_a_time_healthy_between(tmp_path: Any) -> None:
    ips = addresses(len(CONTROL_PLANES))
    spec = scenario([node(n, ip, "controlplane", HOP, upgrade={"downMs": 500}) for n, ip in zip(CONTROL_PLANES, ips, strict=True)])
    with talos_api(spec) as api:
        assert _etcd(api) == dict.fromkeys(CONTROL_PLANES, "3.6.12")
        config = api.config("controlplane", installer(VANILLA, NEW))
        snapshot = tmp_path / "arda-etcd-before-rollout.db"
        for i, m in enumerate(CONTROL_PLANES):
            # The program's own steps (plans.bringup.talos_apply): the first control plane's carries --etcd-snapshot.
            args = ["apply", "--node", api.node_arg(m), "--role", "controlplane", *(["--etcd-snapshot", str(snapshot)] if i == 0 else [])]
            before = len(api.calls())
            result = _run((m, args, config), api)
            assert result.code == 0, (m, result.stderr)
            moved = {n: "3.7.1" if j <= i else "3.6.12" for j, n in enumerate(CONTROL_PLANES)}
            members = ", ".join(f"{n} {v}" for n, v in moved.items())
            was = ", ".join(f"{n} {'3.7.1' if j < i else '3.6.12'}" for j, n in enumerate(CONTROL_PLANES))
            steps = [line.removeprefix(f"upgrader: {m}: ") for line in result.lines]
            # Every member healthy before this one goes down, each on the etcd it runs; this one's moves with its upgrade,
            # and the check after it sees every member healthy, this one on 3.7.1, the next still on 3.6.12.
            preflight = f"etcd healthy: 3 members ({was}), quorum kept without this one"
            after = f"its etcd moved from 3.6.12 to 3.7.1; members: {members}"
            assert steps.index(preflight) < steps.index(after)
            assert steps[-1] == "healthy"
            assert _etcd(api) == moved
            calls = [c["method"] for c in api.calls()[before:] if c["node"] == m]
            if i == 0:
                # The snapshot first: saved before the first member is touched, every member still on 3.6.
                assert snapshot.stat().st_size > 0
                assert calls.index("MachineService/EtcdSnapshot") < calls.index("LifecycleService/Upgrade")
                assert steps.index(f"etcd snapshot saved to {snapshot}") < steps.index(preflight)
        # The next step saw the one before it finished (its own step ends healthy): one upgrade at a time, in order.
        assert [n for n, method in mutations(api) if method == "LifecycleService/Upgrade"] == CONTROL_PLANES


def test_an_etcd_image_the_config_names_stays_through_the_roll_to_talos_114() -> None:
    """Talos runs `cluster.etcd.image` when the config sets one (EtcdConfig.Image): the stand-in too, so its member keeps
    v3.6.12 on Talos 1.14, and the step says no move (Iluvatar sets none: etcd follows Talos, as above)."""
    [ip] = addresses(1)
    with talos_api(scenario([node("valinor-1", ip, "controlplane", HOP, upgrade={"downMs": 300})])) as api:
        pinned = json.dumps({"cluster": {"etcd": {"image": "registry.k8s.io/etcd:v3.6.12"}}})
        config = api.config("controlplane", installer(VANILLA, NEW), patches=[pinned])
        result = _run(("valinor-1", ["apply", "--node", api.node_arg("valinor-1"), "--role", "controlplane"], config), api)
        assert result.code == 0, result.stderr
        assert (_versions(api), _etcd(api)) == ({"valinor-1": NEW}, {"valinor-1": "3.6.12"})
        assert not [line for line in result.lines if "its etcd moved" in line]
