"""`upgrader bootstrap` against the scripted Talos API: etcd is bootstrapped once, never beside a cluster that exists.

Talos bootstraps any control plane whose own etcd data directory is empty, and BootstrapEtcd stops an etcd that
is still pulling its image or joining and starts a new one-member cluster (tools/talos-api/etcd.go follows the
source). The stand-in keeps each node's data directory and the cluster it holds, so a second cluster shows as a
second entry of `api.etcd_clusters()`. The step's create runs `bootstrap --node ...`, its update
`bootstrap --node ... --no-new-cluster` (plans.bringup.talos_bootstrap).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from tests.upgrader.run import Result, apply_args, secrets, upgrader, upgrader_watched
from tools.talos_api import VANILLA, TalosAPI, addresses, installer, node, scenario, talos_api

NEW = "v1.13.0"
CREATE: tuple[str, ...] = ()
UPDATE = ("--no-new-cluster",)
LOOK = "talosctl -n {ips} service etcd; talosctl -n {ips} ls /var/lib/etcd; talosctl -n {ips} etcd members"
# A reflashed control plane: maintenance mode, its old member still listed, and once configured, etcd Preparing
# while it pulls etcd's image (tens of seconds on a real machine) before it asks to join. The pull is held (a test
# control of the stand-in) until the test releases it: what a test does meanwhile meets the machine still pulling,
# whatever the load.
REFLASHED: dict[str, Any] = {"maintenance": True, "etcd": {"stale": True, "pullHeld": True}, "install": {"downMs": 300}}


def bootstrap(api: TalosAPI, form: tuple[str, ...], timeout: str = "30s") -> Result:
    return upgrader(["bootstrap", "--node", api.node_arg("valinor-1"), *form, "--timeout", timeout], secrets(api))


# Rounds of asking every control plane a test lets the bootstrap wait through before it stops it.
ROUNDS = 3


def bootstrap_stopped(api: TalosAPI, form: tuple[str, ...], at: Callable[[str], bool]) -> Result:
    """The bootstrap stopped as Pulumi stops a cancelled step (SIGTERM) once a progress line `at` takes was said and
    ROUNDS rounds of asking valinor-1 about its etcd were made since the run began (each round asks its services,
    MachineService/ServiceList, upgrader/internal/talos/bootstrap.go askEtcd): a test that means "this bootstrap keeps
    waiting and does not go ahead" stops it after it waited through several rounds, whatever the load, rather than
    betting a short --timeout on which round it is in when the bound falls (upgrader/internal/wait: every wait ends as a
    failure naming what it saw last). The line is said once (the bootstrap says a line only when it changes)."""
    start = len(api.calls())

    def rounds() -> int:
        return sum(1 for c in api.calls()[start:] if (c["node"], c["method"]) == ("valinor-1", "MachineService/ServiceList"))

    def stop_at(line: str) -> bool:
        if not (line.startswith("upgrader: valinor-1: ") and at(line)):
            return False
        wait_for(api, lambda api: rounds() >= ROUNDS, f"{ROUNDS} rounds of the bootstrap's survey")
        return True

    args = ["bootstrap", "--node", api.node_arg("valinor-1"), *form, "--timeout", "120s"]
    return upgrader_watched(args, secrets(api), stop_at, stop=signal.SIGTERM)


def bootstraps(api: TalosAPI) -> list[tuple[str, str]]:
    """(node, code) of every Bootstrap call any node answered, in order."""
    return [(c["node"], c["code"]) for c in api.calls() if c["method"] == "MachineService/Bootstrap"]


def control_planes(count: int, scripts: Mapping[str, dict[str, Any]] | None = None, bootstrapped: bool = True) -> dict[str, Any]:
    """valinor-1 .. valinor-<count>, each with its script (keys as in tools/talos-api/scenario.go's nodes)."""
    names = [f"valinor-{i + 1}" for i in range(count)]
    scripts = scripts or {}
    return scenario([node(n, ip, "controlplane", NEW, **scripts.get(n, {})) for n, ip in zip(names, addresses(count), strict=True)], bootstrapped)


def wait_for(api: TalosAPI, done: Any, what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not done(api):
        assert time.monotonic() < deadline, f"{what}: {api.state()} {api.etcd_clusters()}"
        time.sleep(0.05)


def configured(*names: str) -> Any:
    return lambda api: all((s := api.state()[n])["up"] and not s["maintenance"] for n in names)


def hand_over(api: TalosAPI, name: str, with_record: bool = True) -> None:
    """What the chain's apply step does for a reflashed control plane: its old member removed through another
    (with its record), its config handed over; then the machine installs and boots configured. On a running cluster
    the step then waits for the machine to join etcd and be healthy (which closes the window a bootstrap lands in
    after it): these tests stop it there, SIGKILL as pulumi-command kills a step, to play what a bootstrap meets while
    the machine still joins (a stopped run, then a bootstrap re-run by an update)."""
    config = api.config("controlplane", installer(VANILLA, NEW))
    last = {"node": name, "ip": api.ip(name), "etcdMember": api.state()[name]["etcdMemberId"]} if with_record else None
    result = upgrader_watched(
        apply_args(api, name, "controlplane", "30s"), secrets(api, config), lambda line: "config handed over" in line, record=last
    )
    assert "config handed over" in result.stderr, result.stderr


# --- A reflashed first valinor during a control-plane change ----------------------------------------------------


@pytest.mark.parametrize("form", [CREATE, UPDATE], ids=["create", "update"])
def test_a_reflashed_first_valinor_joining_late_never_gets_a_second_etcd(form: tuple[str, ...]) -> None:
    with talos_api(control_planes(3, {"valinor-1": REFLASHED})) as api:
        hand_over(api, "valinor-1")
        wait_for(api, configured("valinor-1"), "valinor-1 to boot configured")
        healthy = [{"members": ["valinor-2", "valinor-3"], "holders": ["valinor-2", "valinor-3"]}]
        assert api.etcd_clusters() == healthy
        # What Talos would do with a bootstrap now: valinor-1's data directory is empty, and it is accepted.
        result = bootstrap(api, form)
        assert result.code == 0, result.stderr
        assert (api.etcd_clusters(), bootstraps(api)) == (healthy, [])
        # Its own member list already reaches the cluster (through the control planes it discovered).
        assert result.lines == [
            f"upgrader: valinor-1: bootstrap: asking every control plane about etcd first (valinor-1, {api.ip('valinor-2')}, {api.ip('valinor-3')})",
            "upgrader: valinor-1: a cluster exists: valinor-1 answered etcd's member list (valinor-2, valinor-3): not bootstrapping",
        ]
        # Once its image is pulled it joins the one cluster.
        api.release_etcd_pull("valinor-1")
        everyone = [{"members": ["valinor-1", "valinor-2", "valinor-3"], "holders": ["valinor-1", "valinor-2", "valinor-3"]}]
        wait_for(api, lambda api: api.etcd_clusters() == everyone, "valinor-1 to join")


def test_a_config_taken_whose_reply_never_came_back_is_handed_over_not_retried_until_the_timeout() -> None:
    # valinor-1 takes the config and its connection drops before the reply goes out (as the install that follows
    # ends every connection). It answers only a client certificate from then on, so no insecure apply can pass again:
    # the upgrader asks who it is before a retry, and goes on once it answers this cluster's certificate.
    lost = {**REFLASHED, "install": {**REFLASHED["install"], "replyLost": True}}
    with talos_api(control_planes(3, {"valinor-1": lost})) as api:
        config = api.config("controlplane", installer(VANILLA, NEW))
        result = upgrader_watched(
            apply_args(api, "valinor-1", "controlplane", "30s"), secrets(api, config), lambda line: "config handed over" in line
        )
        applies = [(c["node"], c["code"]) for c in api.calls() if c["method"] == "MachineService/ApplyConfiguration"]
        assert (applies, result.lines[-2:]) == (
            [("valinor-1", "Canceled")],
            [
                "upgrader: valinor-1: the apply's reply did not come back, but it answers this cluster's client certificate now: it took the config",
                f"upgrader: valinor-1: was in maintenance mode: config handed over; etcd is bootstrapped ({api.ip('valinor-2')} runs it), so the step "
                f"waits until it has installed {NEW}, rebooted and is healthy",
            ],
        ), result.stderr


def test_a_control_plane_that_holds_etcd_without_a_leader_is_a_cluster_too() -> None:
    with talos_api(control_planes(3, {"valinor-1": REFLASHED})) as api:
        hand_over(api, "valinor-1")
        # valinor-3 goes down for good during the change: two members, one running, no leader; no member list answers.
        api.crash("valinor-3", result="never")
        wait_for(api, configured("valinor-1"), "valinor-1 to boot configured")
        result = bootstrap(api, CREATE)
        assert result.code == 0, result.stderr
        assert (api.etcd_clusters(), bootstraps(api)) == ([{"members": ["valinor-2", "valinor-3"], "holders": ["valinor-2", "valinor-3"]}], [])
        assert result.last == (
            f"upgrader: valinor-1: a cluster exists: {api.ip('valinor-2')} holds etcd data (/var/lib/etcd is not empty; etcd Running; "
            "its member list: Unavailable: etcdserver: no leader): not bootstrapping"
        )


@pytest.mark.parametrize("form", [CREATE, UPDATE], ids=["create", "update"])
def test_control_planes_that_do_not_answer_are_waited_for_and_named_never_taken_for_empty(form: tuple[str, ...]) -> None:
    with talos_api(control_planes(3, {"valinor-1": REFLASHED})) as api:
        hand_over(api, "valinor-1")
        api.crash("valinor-2", result="never")
        api.crash("valinor-3", result="never")
        wait_for(api, configured("valinor-1"), "valinor-1 to boot configured")
        ip2, ip3 = api.ip("valinor-2"), api.ip("valinor-3")
        result = bootstrap_stopped(api, form, lambda line: f"{ip2} does not answer" in line and f"{ip3} does not answer" in line)
        assert (api.etcd_clusters(), bootstraps(api)) == ([{"members": ["valinor-2", "valinor-3"], "holders": ["valinor-2", "valinor-3"]}], [])
        assert result.code == 1
        assert result.last.startswith(
            "upgrader: FAILED: valinor-1: bootstrap: stopped: SIGTERM; last seen: not bootstrapping while a control plane could hold etcd: "
            f"{ip2} does not answer (Unavailable: "
        )
        assert f"; {ip3} does not answer (Unavailable: " in result.last
        assert result.last.endswith(f"; look with: {LOOK.format(ips=f'{ip2},{ip3}')}")


# --- A fresh cluster, and one whose every control plane lost its disk -------------------------------------------


def test_a_fresh_cluster_is_bootstrapped_once_when_every_control_plane_answers() -> None:
    # valinor-2 has not had its config yet (maintenance mode: no etcd); valinor-3 is still installing (it does not
    # answer) until the test boots it; valinor-1's CRI is up 5 s after its boot (Talos: "bootstrap is not available yet").
    scripts: dict[str, dict[str, Any]] = {
        "valinor-1": {"bootstrapAllowedAfterMs": 5000},
        "valinor-2": {"maintenance": True},
        "valinor-3": {"bootDelayMs": 600_000},
    }
    with talos_api(control_planes(3, scripts, bootstrapped=False)) as api:
        ip3 = api.ip("valinor-3")
        early = bootstrap_stopped(api, CREATE, lambda line: f"{ip3} does not answer" in line)
        assert (early.code, bootstraps(api)) == (1, [])
        assert early.last.startswith(
            f"upgrader: FAILED: valinor-1: bootstrap: stopped: SIGTERM; last seen: not bootstrapping while a control plane could hold etcd: {ip3} does not answer ("
        )

        api.crash("valinor-3")  # it boots now, configured, and waits for etcd
        start = len(api.calls())
        result = bootstrap(api, CREATE)
        assert result.code == 0, result.stderr
        assert result.last == "upgrader: valinor-1: etcd bootstrapped"
        assert {code for _, code in bootstraps(api)[:-1]} <= {"FailedPrecondition"}
        assert bootstraps(api)[-1] == ("valinor-1", "OK")
        everyone = [{"members": ["valinor-1", "valinor-3"], "holders": ["valinor-1", "valinor-3"]}]
        assert api.etcd_clusters() == everyone
        # Every Bootstrap call came right after every other control plane was asked again.
        since = start
        for i, call in enumerate(api.calls()[start:], start):
            if call["method"] == "MachineService/Bootstrap":
                assert {c["node"] for c in api.calls()[since:i]} >= {"valinor-2", "valinor-3"}, (since, i)
                since = i + 1

        # Run again, as create or as update: a cluster exists.
        for form in (CREATE, UPDATE):
            again = bootstrap(api, form)
            assert again.code == 0, again.stderr
            assert (
                again.last == "upgrader: valinor-1: a cluster exists: valinor-1 answered etcd's member list (valinor-1, valinor-3): not bootstrapping"
            )
        assert bootstraps(api)[-1] == ("valinor-1", "OK")
        assert [code for _, code in bootstraps(api)].count("OK") == 1
        assert api.etcd_clusters() == everyone


def test_control_planes_whose_etcd_gave_up_waiting_hold_no_etcd_and_the_bootstrap_goes_ahead() -> None:
    """Talos's etcd asks to join (or waits for a bootstrap) for EtcdJoinTimeout, 30 minutes, then is Failed with no restart
    until BootTimeout reboots the machine, 70 minutes after its boot (tools/talos-api/etcd.go follows the source; scaled
    down here). A first bootstrap that comes after that (a valinor powered on late) meets Failed over empty data
    directories: no etcd data anywhere. Before, Failed counted as unknown, and the bootstrap waited until its bound, on
    every run, while the valinor cycled Preparing, Failed and a reboot out of phase with it."""
    spec = control_planes(3, bootstrapped=False)
    spec["etcd"]["joinTimeoutMs"] = 1000
    with talos_api(spec) as api:
        names = ["valinor-1", "valinor-2", "valinor-3"]
        wait_for(api, lambda api: all(api.state()[n]["etcdService"] == "Failed" for n in names), "every etcd to give up")
        ips = [api.ip(n) for n in names]
        gave_up = "gave up joining (etcd Failed, /var/lib/etcd empty: no etcd data; Talos asks again at its next boot)"

        update = bootstrap(api, UPDATE)
        assert update.code == 1
        assert update.last == (
            f"upgrader: FAILED: valinor-1: bootstrap: every control plane waits for a bootstrap ({'; '.join(f'{n} {gave_up}' for n in ['valinor-1', *ips[1:]])}), "
            "and --no-new-cluster starts no etcd: this cluster's etcd data is gone with their disks; restore it from a snapshot "
            f"(talosctl -n {ips[0]} bootstrap --recover-from=SNAPSHOT), see docs/day2.md#every-control-plane-reflashed; look with: {LOOK.format(ips=','.join(ips))}"
        )

        create = bootstrap(api, CREATE)
        assert create.code == 0, create.stderr
        assert create.last == "upgrader: valinor-1: etcd bootstrapped"
        assert (bootstraps(api), api.etcd_clusters()) == ([("valinor-1", "OK")], [{"members": ["valinor-1"], "holders": ["valinor-1"]}])
        # The others ask again at their next boot (BootTimeout's reboot, or a person's), and join it.
        api.crash("valinor-2", down_ms=100)
        api.crash("valinor-3", down_ms=100)
        wait_for(api, lambda api: api.etcd_clusters() == [{"members": names, "holders": names}], "the others to join")


@pytest.mark.parametrize("count", [1, 3], ids=["the-only-control-plane", "every-control-plane"])
def test_control_planes_that_all_lost_their_disks_are_bootstrapped_again_only_by_a_create(count: int) -> None:
    names = [f"valinor-{i + 1}" for i in range(count)]
    with talos_api(control_planes(count, dict.fromkeys(names, REFLASHED))) as api:
        for name in names:
            hand_over(api, name, with_record=False)
        wait_for(api, configured(*names), "every control plane to boot configured")
        ips = [api.ip(n) for n in names]
        waiting = "waits to join or for a bootstrap (etcd Preparing, /var/lib/etcd empty)"

        # The step's update: this stack bootstrapped etcd before; its data went with the disks.
        update = bootstrap(api, UPDATE)
        assert update.code == 1
        assert update.last == (
            f"upgrader: FAILED: valinor-1: bootstrap: every control plane waits for a bootstrap ({'; '.join(f'{n} {waiting}' for n in ['valinor-1', *ips[1:]])}), "
            "and --no-new-cluster starts no etcd: this cluster's etcd data is gone with their disks; restore it from a snapshot "
            f"(talosctl -n {ips[0]} bootstrap --recover-from=SNAPSHOT), see docs/day2.md#every-control-plane-reflashed; look with: {LOOK.format(ips=','.join(ips))}"
        )
        assert bootstraps(api) == []

        # A create (the step made anew) starts a new, empty cluster, once; the others join it when their image is in.
        create = bootstrap(api, CREATE)
        assert create.code == 0, create.stderr
        assert create.last == "upgrader: valinor-1: etcd bootstrapped"
        assert bootstraps(api) == [("valinor-1", "OK")]
        assert api.etcd_clusters() == [{"members": ["valinor-1"], "holders": ["valinor-1"]}]
        for name in names[1:]:
            api.release_etcd_pull(name)
        wait_for(api, lambda api: api.etcd_clusters() == [{"members": names, "holders": names}], "the others to join")


# --- One node -------------------------------------------------------------------------------------------------


def test_bootstrap_twice_succeeds_both_times() -> None:
    # Talos refuses the bootstrap until its CRI is up: here until the test has seen the upgrader told so (an hour
    # after the boot, then at once), however long the upgrader took to start.
    cp = node("valinor-1", addresses(1)[0], "controlplane", NEW, bootDelayMs=300, bootstrapAllowedAfterMs=3_600_000)
    not_yet = "upgrader: valinor-1: not ready for the bootstrap yet: FailedPrecondition: bootstrap is not available yet"
    with talos_api(scenario([cp], bootstrapped=False)) as api:

        def cri_up(line: str) -> bool:
            if line == not_yet:
                api.script("valinor-1", bootstrapAllowedAfterMs=0)
            return False

        first = upgrader_watched(["bootstrap", "--node", api.node_arg("valinor-1"), *CREATE, "--timeout", "30s"], secrets(api), cri_up)
        assert first.code == 0, first.stderr
        assert first.lines[0] == "upgrader: valinor-1: bootstrap: asking every control plane about etcd first (valinor-1)"
        assert first.lines[-1] == "upgrader: valinor-1: etcd bootstrapped"
        assert not_yet in first.lines

        second = bootstrap(api, CREATE)
        assert second.code == 0, second.stderr
        assert second.lines == [
            "upgrader: valinor-1: bootstrap: asking every control plane about etcd first (valinor-1)",
            "upgrader: valinor-1: a cluster exists: valinor-1 answered etcd's member list (valinor-1): not bootstrapping",
        ]
        codes = [code for _, code in bootstraps(api)]
        assert codes[-1] == "OK"
        assert set(codes[:-1]) == {"FailedPrecondition"}
        assert api.etcd() == {"bootstrapped": True, "members": ["valinor-1"]}


def test_bootstrap_of_a_worker_fails_at_once() -> None:
    with talos_api(scenario([node("istari-1", addresses(1)[0], "worker", NEW)], bootstrapped=False)) as api:
        result = upgrader(["bootstrap", "--node", api.node_arg("istari-1"), "--timeout", "60s"], secrets(api))
        ip = api.ip("istari-1")
        assert result.code == 1
        assert result.last == (
            "upgrader: FAILED: istari-1: bootstrap: Unimplemented: member list is only available on control plane nodes (is istari-1 a control plane?); "
            f"look with: {LOOK.format(ips=ip)}"
        )
        assert bootstraps(api) == []


# --- An apply meets a control plane still joining: the cluster exists ---------------------------------------------


def test_an_apply_never_takes_a_control_plane_still_joining_for_a_cluster_before_its_bootstrap() -> None:
    # valinor-3 is down for good: two members, one running, no leader, so no member list answers anywhere and the
    # reflashed valinor-1's join is refused: Talos keeps its etcd Preparing and retries (etcd.go, buildInitialCluster).
    # Preparing is also what etcd waits in before a bootstrap; taken for that, the step would skip every etcd check and
    # reboot a control plane of a cluster with no quorum to spare. Another control plane's etcd ran: the cluster exists.
    with talos_api(control_planes(3, {"valinor-1": {**REFLASHED, "applyNeedsReboot": True, "reboot": {"downMs": 200}}})) as api:
        api.crash("valinor-3", result="never")
        hand_over(api, "valinor-1", with_record=False)
        wait_for(api, configured("valinor-1"), "valinor-1 to boot configured")
        api.release_etcd_pull("valinor-1")
        refused = "error getting etcd member list: etcdserver: no leader"
        wait_for(api, lambda api: api.state()["valinor-1"]["etcdJoinError"] == refused, "valinor-1's join refused")
        before = len(api.calls())
        changed = api.config("controlplane", installer(VANILLA, NEW), patches=['{"machine": {"sysctls": {"vm.max_map_count": "262144"}}}'])
        result = upgrader(apply_args(api, "valinor-1", "controlplane", "5s", "--no-kubernetes"), secrets(api, changed))
        assert result.code == 1, result.stderr
        assert "etcd is not bootstrapped yet" not in result.stderr
        assert result.last.startswith("upgrader: FAILED: valinor-1: etcd: etcd is not healthy, so this control plane is left untouched: "), (
            result.last
        )
        touched = [
            c["method"]
            for c in api.calls()[before:]
            if c["node"] == "valinor-1" and c["method"] in ("MachineService/ApplyConfiguration", "MachineService/Reboot")
        ]
        assert touched == []
