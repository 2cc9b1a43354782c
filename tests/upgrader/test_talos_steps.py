"""The upgrader's Talos steps against the scripted Talos API stand-in (tools/talos-api).

The upgrader is the real program with the real machinery client; the stand-in speaks machinery's
real gRPC services with Talos's own answers, and the test scripts what each node is and what a
reboot or an upgrade does to it. Commands run one after the other, as Pulumi's chained command
resources run them, and stop at the first failure, as `pulumi up` does. Kubernetes is left out
here (`--no-kubernetes`); tests/upgrader/test_disrupt.py drains through a real API server.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from plans import rollout
from tests.upgrader.run import Result, apply_args, mutations, record, secrets, started, until, upgrader
from tools.talos_api import API_PORT, STORAGE, VANILLA, TalosAPI, addresses, installer, link, mac, node, scenario, talos_api

OLD, NEW, NEWER = "v1.12.4", "v1.13.0", "v1.13.1"
CALL_TIMEOUT_MS = 15_000  # the bound on one API call (upgrader/internal/wait: CallTimeout)
ROLE = {"valinor": "controlplane", "istari": "worker"}


def role(name: str) -> str:
    return ROLE[name.split("-")[0]]


def arda(versions: dict[str, str], **scripts: dict[str, Any]) -> dict[str, Any]:
    """A bootstrapped Arda on fresh loopback addresses: each node at its version, with its script."""
    ips = addresses(len(versions))
    return scenario([node(name, ip, role(name), version, **scripts.get(name, {})) for (name, version), ip in zip(versions.items(), ips, strict=True)])


def apply(api: TalosAPI, name: str, config: str, timeout: str = "60s", *extra: str) -> Result:
    return upgrader(apply_args(api, name, role(name), timeout, *extra), secrets(api, config))


def versions(api: TalosAPI) -> dict[str, str]:
    return {name: state["version"] for name, state in sorted(api.state().items())}


LEGACY_UPGRADE = [
    "MachineService/ApplyConfiguration dry-run",
    "MachineService/ApplyConfiguration NO_REBOOT",
    "MachineService/ImagePull",
    "MachineService/Upgrade",
]
LIFECYCLE_UPGRADE = [
    "MachineService/ApplyConfiguration dry-run",
    "MachineService/ApplyConfiguration NO_REBOOT",
    "ImageService/Pull",
    "LifecycleService/Upgrade",
    "MachineService/Reboot",
]


def test_a_rolling_upgrade_goes_one_node_at_a_time_control_planes_first(tmp_path: Path) -> None:
    order = ["valinor-1", "valinor-2", "valinor-3", "istari-1", "istari-2"]
    reboot = {"upgrade": {"downMs": 300}}
    with talos_api(arda(dict.fromkeys(order, OLD), **dict.fromkeys(order, reboot))) as api:
        configs = {r: api.config(r, installer(VANILLA, NEW)) for r in ("controlplane", "worker")}
        snapshot = tmp_path / "etcd" / "before-valinor-1.snapshot"
        after_each = []
        for name in order:
            extra = ["--etcd-snapshot", str(snapshot)] if name == "valinor-1" else []
            result = apply(api, name, configs[role(name)], "60s", *extra)
            assert result.code == 0, result.stderr
            # Each apply returns only once its node runs the new version, up and ready: the next may start.
            state = api.state()[name]
            after_each.append((name, state["version"], state["up"], state["ready"]))

        assert after_each == [(name, NEW, True, True) for name in order]
        assert versions(api) == dict.fromkeys(sorted(order), NEW)
        # One node at a time, in the chain's order; the snapshot before anything changed.
        expected = []
        for name in order:
            steps = list(LEGACY_UPGRADE)
            if name == "valinor-1":
                steps.insert(0, "MachineService/EtcdSnapshot")
            expected += [(name, step) for step in steps]
        assert mutations(api) == expected
        assert snapshot.read_text() == "talos-api etcd snapshot of arda from valinor-1\n" * 3
        assert oct(snapshot.stat().st_mode & 0o777) == "0o600"


def test_a_node_that_never_comes_back_stops_the_run_and_leaves_the_rest_untouched() -> None:
    order = ["valinor-1", "valinor-2", "valinor-3", "istari-1", "istari-2"]
    scripts: dict[str, dict[str, Any]] = {name: {"upgrade": {"downMs": 200}} for name in order}
    scripts["valinor-2"] = {"upgrade": {"result": "never"}}
    with talos_api(arda(dict.fromkeys(order, OLD), **scripts)) as api:
        configs = {r: api.config(r, installer(VANILLA, NEW)) for r in ("controlplane", "worker")}
        results = {}
        for name in order:
            results[name] = apply(api, name, configs[role(name)], "10s")
            if results[name].code != 0:
                break

        assert [(name, r.code) for name, r in results.items()] == [("valinor-1", 0), ("valinor-2", 1)]
        failed = results["valinor-2"].last
        assert failed.startswith("upgrader: FAILED: valinor-2: reboot: timed out; last seen: the node did not come back (down for ")
        assert failed.endswith(f"; look with: talosctl -n {api.ip('valinor-2')} dmesg; the machine's console")
        assert versions(api) == {"istari-1": OLD, "istari-2": OLD, "valinor-1": NEW, "valinor-2": OLD, "valinor-3": OLD}
        assert [n for n, _ in mutations(api)] == ["valinor-1"] * 4 + ["valinor-2"] * 4

        # Re-running the next step refuses: etcd lost a member, so no other control plane goes down.
        again = apply(api, "valinor-3", configs["controlplane"], "10s")
        assert again.code == 1
        assert again.last == (
            "upgrader: FAILED: valinor-3: etcd: etcd is not healthy, so this control plane is left untouched: "
            f"member valinor-2 ({api.ip('valinor-2')}) does not answer its status: Unavailable: "
            + again.last.split("does not answer its status: Unavailable: ", 1)[1].split("; look with:")[0]
            + f"; look with: talosctl -n {api.ip('valinor-3')} etcd members; talosctl -n {api.ip('valinor-3')} etcd status; "
            f"talosctl -n {api.ip('valinor-3')} etcd alarm list"
        )
        assert mutations(api, "valinor-3") == []


@pytest.mark.parametrize(
    ("script", "etcd", "detail"),
    [
        (
            {"valinor-2": {"etcd": {"errors": ["etcdserver: mvcc: database space exceeded"]}}},
            {},
            "member valinor-2 reports errors: etcdserver: mvcc: database space exceeded",
        ),
        ({}, {"alarms": [{"node": "valinor-3", "alarm": "NOSPACE"}]}, "alarms raised: NOSPACE on member {valinor-3}"),
        ({"valinor-3": {"etcd": {"notStarted": True}}}, {}, "member {valinor-3} is not started"),
        ({"valinor-2": {"etcd": {"learner": True}}}, {}, "member valinor-2 is a learner (still joining)"),
    ],
    ids=["member-errors", "alarm", "member-not-started", "learner"],
)
def test_an_unhealthy_etcd_refuses_to_start(script: dict[str, Any], etcd: dict[str, Any], detail: str) -> None:
    spec = arda({"valinor-1": OLD, "valinor-2": OLD, "valinor-3": OLD}, **script)
    spec["etcd"].update(etcd)
    with talos_api(spec) as api:
        result = apply(api, "valinor-1", api.config("controlplane", installer(VANILLA, NEW)))
        ids = {name: f"{_member_id(api, name)}" for name in ("valinor-2", "valinor-3")}
        assert result.code == 1
        ip = api.ip("valinor-1")
        assert result.last == (
            f"upgrader: FAILED: valinor-1: etcd: etcd is not healthy, so this control plane is left untouched: {detail.format(**ids)}; "
            f"look with: talosctl -n {ip} etcd members; talosctl -n {ip} etcd status; talosctl -n {ip} etcd alarm list"
        )
        # Nothing was changed anywhere: not even the config (its new installer image) was applied.
        assert mutations(api) == []
        assert versions(api) == {"valinor-1": OLD, "valinor-2": OLD, "valinor-3": OLD}


def _member_id(api: TalosAPI, name: str) -> str:
    """The stand-in's member ID for a node, as the upgrader prints it (etcd's %016x)."""
    import hashlib

    return hashlib.sha256(f"etcd member {name}".encode()).hexdigest()[:16]


def test_two_etcd_members_refuse_a_reboot_that_would_lose_quorum() -> None:
    with talos_api(arda({"valinor-1": OLD, "valinor-2": OLD})) as api:
        result = apply(api, "valinor-1", api.config("controlplane", installer(VANILLA, NEW)))
        assert result.code == 1
        assert result.last.startswith(
            "upgrader: FAILED: valinor-1: etcd: etcd has 2 members: taking one down loses quorum (add a third control plane, or remove one); look with: "
        )
        # Refused before anything changed (the dry run only asks), not even the config's new installer image.
        assert mutations(api) == [("valinor-1", "MachineService/ApplyConfiguration dry-run")]


@pytest.mark.parametrize(
    ("target", "detail"),
    [
        (installer(VANILLA, NEW), "runs Talos v1.12.4 after the upgrade, not v1.13.0 (the new image did not boot)"),
        (installer(STORAGE, OLD), f"runs schematic {VANILLA} after the upgrade, not {STORAGE}"),
    ],
    ids=["version", "schematic"],
)
def test_a_node_reporting_the_old_version_after_the_reboot_fails(target: str, detail: str) -> None:
    with talos_api(arda({"istari-1": OLD}, **{"istari-1": {"upgrade": {"downMs": 100, "result": "old-version"}}})) as api:
        result = apply(api, "istari-1", api.config("worker", target))
        ip = api.ip("istari-1")
        assert result.code == 1
        assert result.last == f"upgrader: FAILED: istari-1: version: {detail}; look with: talosctl -n {ip} version; talosctl -n {ip} get extensions"
        assert "upgrader: istari-1: back up (new boot ID) after" in result.stderr


def test_talos_1_12_gets_the_legacy_upgrade_and_1_13_the_lifecycle_service() -> None:
    with talos_api(arda({"istari-1": OLD, "istari-2": NEW})) as api:
        assert apply(api, "istari-1", api.config("worker", installer(VANILLA, NEW))).code == 0
        assert apply(api, "istari-2", api.config("worker", installer(VANILLA, NEWER))).code == 0

        assert mutations(api) == [("istari-1", m) for m in LEGACY_UPGRADE] + [("istari-2", m) for m in LIFECYCLE_UPGRADE]
        upgrade_calls = {
            (c["node"], c["method"]): c["args"]
            for c in api.calls()
            if c["method"] in {"MachineService/ImagePull", "MachineService/Upgrade", "ImageService/Pull", "LifecycleService/Upgrade"}
        }
        assert upgrade_calls == {
            ("istari-1", "MachineService/ImagePull"): {"image": installer(VANILLA, NEW), "namespace": "NS_SYSTEM"},
            ("istari-1", "MachineService/Upgrade"): {"image": installer(VANILLA, NEW), "stage": False, "force": False, "rebootMode": "DEFAULT"},
            ("istari-2", "ImageService/Pull"): {"image": installer(VANILLA, NEWER), "containerd": "CRI/NS_SYSTEM"},
            ("istari-2", "LifecycleService/Upgrade"): {"image": installer(VANILLA, NEWER), "containerd": "CRI/NS_SYSTEM"},
        }
        assert versions(api) == {"istari-1": NEW, "istari-2": NEWER}


def test_an_installer_that_fails_leaves_the_node_running_what_it_ran() -> None:
    with talos_api(arda({"istari-1": NEW}, **{"istari-1": {"upgrade": {"exitCode": 1}}})) as api:
        result = apply(api, "istari-1", api.config("worker", installer(VANILLA, NEWER)))
        assert result.code == 1
        assert result.last == (
            f"upgrader: FAILED: istari-1: upgrade: the installer exited with 1; nothing is staged, the node keeps running {NEWER}; "
            f"look with: talosctl -n {api.ip('istari-1')} upgrade --image {installer(VANILLA, NEWER)}"
        )
        assert [m for _, m in mutations(api)] == LIFECYCLE_UPGRADE[:-1]
        assert versions(api) == {"istari-1": NEW}


def test_a_node_back_in_maintenance_mode_fails_at_once() -> None:
    with talos_api(arda({"istari-1": NEW}, **{"istari-1": {"upgrade": {"downMs": 100, "result": "maintenance"}}})) as api:
        result = apply(api, "istari-1", api.config("worker", installer(VANILLA, NEWER)), "60s")
        assert result.code == 1
        assert result.last == (
            "upgrader: FAILED: istari-1: reboot: the node came back in maintenance mode (no config: its disk was wiped or the install failed); "
            f"look with: talosctl -n {api.ip('istari-1')} get machinestatus --insecure"
        )
        # At once, as this line shows: a wait that went on would end at the 60 s --timeout as "timed out; last seen: ..."
        # (wait.Poll's stillFailing). No wall-clock bound on the run: that measured the loaded machine, not the step.


def test_an_interrupted_upgrade_is_finished_by_the_next_run() -> None:
    # The first run is killed (a cancelled `pulumi up`) while it waits for the node back from its upgrade's reboot: the
    # node stays down until the test powers it again, so the kill lands in that wait however long the run takes to get
    # there. (A run that times out in that wait is test_a_node_that_never_comes_back_stops_the_run_and_leaves_the_rest_untouched.)
    with talos_api(arda({"istari-1": NEW}, **{"istari-1": {"upgrade": {"result": "never"}}})) as api:
        config = api.config("worker", installer(VANILLA, NEWER))
        first = started(apply_args(api, "istari-1", "worker", "60s"), secrets(api, config))
        try:
            until("the upgrade's reboot", lambda: ("istari-1", "MachineService/Reboot") in mutations(api), 60)
            until("the node down", lambda: not api.state()["istari-1"]["up"], 30)
        finally:
            first.kill()
            first.communicate(timeout=30)
        # Powered again: it boots the Talos its upgrade staged.
        api.crash("istari-1")
        until("the node up", lambda: api.state()["istari-1"]["up"], 30)

        second = apply(api, "istari-1", config, "30s")
        assert second.code == 0, second.stderr
        assert "upgrader: istari-1: config unchanged and Talos as configured: checking health only" in second.lines
        assert [m for _, m in mutations(api)] == LIFECYCLE_UPGRADE


def test_a_call_the_node_never_answers_is_given_up_at_its_bound_and_asked_again() -> None:
    """istari-1's API accepts Version and never answers it (tools/talos-api/hang.go: apid holds a call machined does not
    answer until the caller gives up). Once it answers again, the apply goes on: the hung call was given up after
    wait.CallTimeout (15 s) and asked again. Unbounded, the hung call held the whole --timeout and the apply failed."""
    with talos_api(arda({"istari-1": NEW}, **{"istari-1": {"hang": ["MachineService/Version"]}})) as api:
        process = started(apply_args(api, "istari-1", "worker", "60s"), secrets(api, api.node_config("istari-1")))
        try:
            deadline = time.monotonic() + 30
            while not any(c["method"] == "MachineService/Version" for c in api.calls("istari-1")):
                assert time.monotonic() < deadline, api.calls()
                time.sleep(0.05)
            api.script("istari-1", hang=[])
            _, stderr = process.communicate(timeout=120)
        finally:
            process.kill()
        assert process.returncode == 0, stderr
        assert stderr.splitlines()[-1] == "upgrader: istari-1: healthy"
        hung, answered = [c for c in api.calls("istari-1") if c["method"] == "MachineService/Version"][:2]
        # The hung call ended when the caller gave up (its RST_STREAM, or its grpc-timeout on the server: either code),
        # at its bound (wait.CallTimeout) and not before; the next poll's call was answered.
        assert (hung["code"] in {"Canceled", "DeadlineExceeded"}, answered["code"]) == (True, "OK"), (hung, answered)
        assert answered["ms"] - hung["ms"] >= CALL_TIMEOUT_MS, (hung, answered)


@pytest.mark.parametrize("version", [OLD, NEW])
def test_apply_hands_a_maintenance_mode_node_its_config_and_does_not_wait_for_the_install(version: str) -> None:
    # A fresh bring-up: the control plane is in maintenance mode too, and etcd is not bootstrapped.
    ips = addresses(2)
    spec = scenario(
        [
            node("valinor-1", ips[0], "controlplane", version, maintenance=True),
            # Its install ends only when the test powers it on (result "never", then api.crash below), so the apply
            # returning at all shows it did not wait for the install: had it waited, its own 60 s --timeout fails it.
            node("istari-1", ips[1], "worker", version, maintenance=True, install={"result": "never"}),
        ],
        bootstrapped=False,
    )
    with talos_api(spec) as api:
        result = apply(api, "istari-1", api.config("worker", installer(VANILLA, NEW)))
        assert result.code == 0, result.stderr
        assert result.lines[-1] == (
            f"upgrader: istari-1: was in maintenance mode: config handed over; Talos installs {NEW} and reboots on its own "
            f"(etcd is not bootstrapped: {ips[0]} is in maintenance mode (no config: no etcd); a fresh bring-up does not wait)"
        )
        assert [(c["method"], c["args"]) for c in api.calls() if c["method"] in {"MachineService/ApplyConfiguration"}] == [
            ("MachineService/ApplyConfiguration", {"mode": "AUTO", "dryRun": False, "installImage": installer(VANILLA, NEW), "installs": NEW})
        ]
        # apply returned while the node installs: a fresh bring-up is not serialized node by node. The install, started
        # (the node down and out of maintenance mode), ends when the node is powered on: it boots what it installed.
        until("the install started", lambda: not (s := api.state()["istari-1"])["up"] and not s["maintenance"], 30)
        api.crash("istari-1")
        until("the node up from its install", lambda: api.state()["istari-1"]["up"], 30)
        s = api.state()["istari-1"]
        assert (s["maintenance"], s["version"], s["installImage"]) == (False, NEW, installer(VANILLA, NEW))


def _patch(sysctl: str) -> str:
    return json.dumps({"machine": {"sysctls": {"vm.max_map_count": sysctl}}})


def test_apply_stages_and_reboots_a_change_that_needs_a_reboot() -> None:
    with talos_api(arda({"istari-1": NEW}, **{"istari-1": {"applyNeedsReboot": True, "reboot": {"downMs": 200}}})) as api:
        before = api.state()["istari-1"]["bootId"]
        config = api.config("worker", installer(VANILLA, NEW), patches=[_patch("262144")])
        result = apply(api, "istari-1", config)
        assert result.code == 0, result.stderr
        assert mutations(api) == [
            ("istari-1", "MachineService/ApplyConfiguration dry-run"),
            ("istari-1", "MachineService/ApplyConfiguration STAGED"),
            ("istari-1", "MachineService/Reboot"),
        ]
        after = api.state()["istari-1"]
        assert after["bootId"] != before
        assert after["staged"] is False
        assert "upgrader: istari-1: config changed: Talos needs a reboot to apply it" in result.lines


AUTHN = "/var/etc/kubernetes/authentication.yaml"  # plans.apiserver: where the API server's AuthenticationConfiguration goes


def _sign_in(audience: str) -> str:
    issuer = {"url": "https://dex.example", "audiences": [audience]}
    authn = json.dumps({"apiVersion": "apiserver.config.k8s.io/v1", "kind": "AuthenticationConfiguration", "jwt": [{"issuer": issuer}]})
    return json.dumps({"machine": {"files": [{"content": authn, "permissions": 0o644, "path": AUTHN, "op": "create"}]}})


def test_a_sign_in_change_on_talos_1_14_is_staged_and_rebooted_so_the_file_is_on_disk_after_the_step() -> None:
    """Talos 1.14 takes any change live (AUTO is NO_REBOOT) but writes .machine.files only at boot (tools/talos-api
    files.go, v1alpha1_sequencer.go:246 at v1.14.0-rc.1): the upgrader decides with Talos 1.13's CanApplyImmediate list
    (upgrader/internal/apply/immediate.go), stages the change and reboots, and the step ends with the new file on disk.
    The upgrader before it applied the change live, and the node kept the old file until some later reboot."""
    version = "v1.14.1"
    with talos_api(arda({"valinor-1": version}, **{"valinor-1": {"reboot": {"downMs": 200}}})) as api:
        for audience in ("kubernetes", "headlamp"):  # sign-in added, then a client added to it
            before = api.state()["valinor-1"]["bootId"]
            config = api.config("controlplane", installer(VANILLA, version), patches=[_sign_in(audience)])
            result = apply(api, "valinor-1", config)
            assert result.code == 0, result.stderr
            assert mutations(api)[-3:] == [
                ("valinor-1", "MachineService/ApplyConfiguration dry-run"),
                ("valinor-1", "MachineService/ApplyConfiguration STAGED"),
                ("valinor-1", "MachineService/Reboot"),
            ]
            assert (
                f"upgrader: valinor-1: config changed: Talos {version} would take it live, but it changes what acts only at boot, "
                ".machine.files (Talos 1.13's CanApplyImmediate: a reboot): staged, with a reboot"
            ) in result.lines
            after = api.state()["valinor-1"]
            assert after["bootId"] != before
            assert json.loads(after["files"][AUTHN])["jwt"][0]["issuer"]["audiences"] == [audience]
            # The step itself read the file back after the boot (MachineService.Read), before the node counted as healthy.
            assert f"upgrader: valinor-1: {AUTHN} on disk as the config writes it" in result.lines
        # A change on Talos 1.14's list still applies live, and leaves the file as the boot wrote it.
        live = api.config("controlplane", installer(VANILLA, version), patches=[_sign_in("headlamp"), _patch("262144")])
        before = api.state()["valinor-1"]["bootId"]
        assert apply(api, "valinor-1", live).code == 0
        assert mutations(api)[-2:] == [
            ("valinor-1", "MachineService/ApplyConfiguration dry-run"),
            ("valinor-1", "MachineService/ApplyConfiguration NO_REBOOT"),
        ]
        assert api.state()["valinor-1"]["bootId"] == before


CRI_PART = "/etc/cri/conf.d/20-customization.part"  # Talos's legacy CRI customization file
OTHER_FILE = "/var/etc/other.conf"


def _sign_in_and_cri(audience: str, cri: str) -> str:
    files = json.loads(_sign_in(audience))["machine"]["files"]
    files.append(
        {"content": f"[plugins]\n  device_ownership_from_security_context = {cri}\n", "permissions": 0o644, "path": CRI_PART, "op": "create"}
    )
    files.append({"content": "unchanged\n", "permissions": 0o644, "path": OTHER_FILE, "op": "create"})
    return json.dumps({"machine": {"files": files}})


def test_on_talos_1_14_the_cri_customization_applies_live_and_only_the_changed_files_are_read_back() -> None:
    """Talos 1.14 never writes the legacy CRI customization file (v1alpha1_sequencer_tasks.go:565-568 at v1.14.0-rc.1)
    and applies it live (hack/release.toml notes.cri-customization): a change to it alone takes no reboot, and a
    sign-in change beside it is rebooted for and read back without asking for the CRI file, which is not on disk.
    The upgrader before it rebooted for the CRI change and then failed the step on the missing file."""
    version = "v1.14.1"
    with talos_api(arda({"istari-1": version}, **{"istari-1": {"reboot": {"downMs": 200}}})) as api:
        first = api.config("worker", installer(VANILLA, version), patches=[_sign_in_and_cri("kubernetes", "false")])
        assert apply(api, "istari-1", first).code == 0  # staged and rebooted: the sign-in file is new
        assert CRI_PART not in api.state()["istari-1"]["files"]

        before = api.state()["istari-1"]["bootId"]
        cri = apply(api, "istari-1", api.config("worker", installer(VANILLA, version), patches=[_sign_in_and_cri("kubernetes", "true")]))
        assert cri.code == 0, cri.stderr
        assert mutations(api)[-2:] == [
            ("istari-1", "MachineService/ApplyConfiguration dry-run"),
            ("istari-1", "MachineService/ApplyConfiguration NO_REBOOT"),
        ]
        assert api.state()["istari-1"]["bootId"] == before

        earlier = len(api.calls("istari-1"))
        sign_in = apply(api, "istari-1", api.config("worker", installer(VANILLA, version), patches=[_sign_in_and_cri("headlamp", "true")]))
        assert sign_in.code == 0, sign_in.stderr
        assert mutations(api)[-2:] == [("istari-1", "MachineService/ApplyConfiguration STAGED"), ("istari-1", "MachineService/Reboot")]
        assert api.state()["istari-1"]["bootId"] != before
        assert f"upgrader: istari-1: {AUTHN} on disk as the config writes it" in sign_in.lines
        read = [c["args"].get("path") for c in api.calls("istari-1")[earlier:] if c["method"] == "MachineService/Read"]
        assert CRI_PART not in read
        assert AUTHN in read
        assert OTHER_FILE not in read  # unchanged by this step: its boot wrote nothing new there
        assert api.state()["istari-1"]["files"][OTHER_FILE] == "unchanged\n"


@pytest.mark.parametrize(
    ("interrupted", "rewritten"),
    [(True, False), (True, True), (False, True)],
    ids=["killed-after-the-reboot", "killed-after-the-reboot-file-wrong", "check-failed"],
)
def test_the_next_run_reads_the_machine_files_back_after_a_run_killed_after_its_reboot_or_whose_check_failed(
    interrupted: bool, rewritten: bool
) -> None:
    """A run killed between its reboot and its read-back, or one whose read-back failed, leaves the config active; the
    next run finds it the same and checks health only, and reads every machine file back there too (files.go): a
    right file is read and said so, a wrong one fails the step again, on every run until it is right. The upgrader
    before it passed that next run without reading anything, so a wrong file was never seen again."""
    version = "v1.14.1"
    # An interrupted run's node stays down from its reboot until the test powers it again: the run is killed while it
    # waits for the node, however long the kill takes to land, never after its read-back.
    script: dict[str, Any] = {"reboot": {"result": "never"} if interrupted else {"downMs": 200}}
    if rewritten:
        script["rewrittenAfterBoot"] = {AUTHN: "rewritten by a host process"}
    with talos_api(arda({"istari-1": version}, **{"istari-1": script})) as api:
        config = api.config("worker", installer(VANILLA, version), patches=[_sign_in("kubernetes")])
        before = api.state()["istari-1"]["bootId"]
        if interrupted:
            process = started(apply_args(api, "istari-1", "worker", "60s"), secrets(api, config))
            try:
                until("the reboot", lambda: ("istari-1", "MachineService/Reboot") in mutations(api), 60)
            finally:
                process.kill()
                process.communicate(timeout=30)
            # Powered again once down from the reboot (the stand-in goes down just after it answered the Reboot).
            until("the node down", lambda: not api.state()["istari-1"]["up"], 30)
            api.crash("istari-1")
            until("the new boot", lambda: api.state()["istari-1"]["bootId"] != before, 30)
        else:
            first = apply(api, "istari-1", config)
            assert first.code != 0
            assert f"{AUTHN} is not what the config writes there after the boot (its create did not take effect)" in first.stderr
        assert api.state()["istari-1"]["bootId"] != before
        for _ in range(2 if rewritten else 1):
            changed = len(mutations(api))
            again = apply(api, "istari-1", config)
            assert "upgrader: istari-1: config unchanged and Talos as configured: checking health only" in again.lines
            assert len(mutations(api)) == changed  # nothing applied or rebooted: the read-back alone
            if rewritten:
                assert again.code != 0
                assert (
                    f"{AUTHN} is not what the config writes there after the boot (its create did not take effect); only a boot writes it: "
                    f"once the cause is fixed, reboot the node (talosctl -n {api.ip('istari-1')} reboot) and run pulumi up again"
                ) in again.stderr
            else:
                assert again.code == 0, again.stderr
                assert f"upgrader: istari-1: {AUTHN} on disk as the config writes it" in again.lines


def test_apply_takes_a_change_without_a_reboot_at_once_and_an_unchanged_config_not_at_all() -> None:
    with talos_api(arda({"istari-1": NEW})) as api:
        before = api.state()["istari-1"]["bootId"]
        changed = apply(api, "istari-1", api.config("worker", installer(VANILLA, NEW), patches=[_patch("262144")]))
        assert changed.code == 0, changed.stderr
        assert mutations(api) == [
            ("istari-1", "MachineService/ApplyConfiguration dry-run"),
            ("istari-1", "MachineService/ApplyConfiguration NO_REBOOT"),
        ]

        unchanged = apply(api, "istari-1", api.config("worker", installer(VANILLA, NEW), patches=[_patch("262144")]))
        assert unchanged.code == 0, unchanged.stderr
        assert len(mutations(api)) == 2
        assert unchanged.lines[-2:] == [
            "upgrader: istari-1: config unchanged and Talos as configured: checking health only",
            "upgrader: istari-1: healthy",
        ]
        assert api.state()["istari-1"]["bootId"] == before


@pytest.mark.parametrize("version", [OLD, NEW])
def test_a_kubernetes_version_change_pulls_the_new_images_first_then_applies_without_a_reboot(version: str) -> None:
    with talos_api(arda({"valinor-1": version})) as api:
        config = api.config("controlplane", installer(VANILLA, version), kubernetes_version="1.35.2")
        result = apply(api, "valinor-1", config)
        assert result.code == 0, result.stderr
        pulled = [
            (c["args"]["image"], c["args"].get("containerd") or f"CRI/{c['args']['namespace']}")
            for c in api.calls()
            if c["method"] in {"ImageService/Pull", "MachineService/ImagePull"}
        ]
        assert pulled == [
            ("ghcr.io/siderolabs/kubelet:v1.35.2", "CRI/NS_SYSTEM"),
            ("registry.k8s.io/kube-apiserver:v1.35.2", "CRI/NS_CRI"),
            ("registry.k8s.io/kube-controller-manager:v1.35.2", "CRI/NS_CRI"),
            ("registry.k8s.io/kube-scheduler:v1.35.2", "CRI/NS_CRI"),
        ]
        pull = "ImageService/Pull" if version == NEW else "MachineService/ImagePull"
        assert [m for _, m in mutations(api)] == [
            "MachineService/ApplyConfiguration dry-run",
            pull,
            pull,
            pull,
            pull,
            "MachineService/ApplyConfiguration NO_REBOOT",
        ]


def test_a_reboot_needing_change_and_an_upgrade_take_one_reboot() -> None:
    with talos_api(arda({"istari-1": NEW}, **{"istari-1": {"applyNeedsReboot": True, "upgrade": {"downMs": 100}}})) as api:
        config = api.config("worker", installer(VANILLA, NEWER), patches=[_patch("262144")])
        result = apply(api, "istari-1", config)
        assert result.code == 0, result.stderr
        assert [m for _, m in mutations(api)] == [
            "MachineService/ApplyConfiguration dry-run",
            "ImageService/Pull",
            "MachineService/ApplyConfiguration STAGED",
            "LifecycleService/Upgrade",
            "MachineService/Reboot",
        ]
        assert versions(api) == {"istari-1": NEWER}


def test_probe_classifies_each_node() -> None:
    ips = addresses(5)
    nodes = [
        node("valinor-1", ips[0], "controlplane", NEW),
        node("istari-1", ips[1], "worker", OLD, maintenance=True),
        node("istari-2", ips[2], "worker", NEW, maintenance=True),
    ]
    with talos_api(scenario(nodes)) as api:
        args = ["probe", "--deadline", "3s"]
        for name in ("valinor-1", "istari-1", "istari-2"):
            args += ["--node", api.node_arg(name)]
        args += ["--node", f"istari-3={ips[3]}"]  # nothing listens there
        result = upgrader(args, secrets(api))
        assert result.code == 0, result.stderr
        assert json.loads(result.stdout) == {
            "nodes": {"valinor-1": "running", "istari-1": "maintenance", "istari-2": "maintenance", "istari-3": "unreachable"}
        }
        # The program reads exactly this at preview (plans.rollout.probed; components/arda.py counts "maintenance"):
        # the upgrader's own output, not a hand-written copy of its shape.
        assert rollout.probed(result.stdout) == {
            "valinor-1": "running",
            "istari-1": "maintenance",
            "istari-2": "maintenance",
            "istari-3": "unreachable",
        }
        # Every node asked at once and each once: the refusal ends istari-3's asking there and then, not at the deadline.
        refused = f'Unavailable: connection error: desc = "transport: Error while dialing: dial tcp {ips[3]}:{API_PORT}: connect: connection refused"'
        assert f"upgrader: istari-3: unreachable: {refused} (asked once, before the 3s deadline)" in result.lines, result.stderr

        # A node whose port takes the connection and never answers (a hung apid): the probe's deadline ends its asking, and
        # the probe says so; the other nodes are not asked here, so the short deadline is all the wait.
        with socket.create_server((ips[4], API_PORT), backlog=4) as silent:
            assert silent.getsockname() == (ips[4], API_PORT)
            hung = upgrader(["probe", "--deadline", "200ms", "--node", f"istari-4={ips[4]}"], secrets(api))
        assert hung.code == 0, hung.stderr
        assert json.loads(hung.stdout) == {"nodes": {"istari-4": "unreachable"}}
        assert hung.lines == ["upgrader: istari-4: unreachable: no answer within the 200ms deadline"]


def test_reset_graceful_leaves_etcd_and_comes_back_in_maintenance_mode() -> None:
    spec = arda({"valinor-1": NEW, "valinor-2": NEW, "valinor-3": NEW}, **{"valinor-3": {"reset": {"downMs": 200}}})
    with talos_api(spec) as api:
        result = upgrader(["reset", "--node", api.node_arg("valinor-3"), "--mode", "graceful", "--timeout", "30s"], secrets(api))
        assert result.code == 0, result.stderr
        assert [(c["method"], c["args"]) for c in api.calls("valinor-3") if c["method"] == "MachineService/Reset"] == [
            ("MachineService/Reset", {"graceful": True, "reboot": True, "wipe": ["STATE", "EPHEMERAL"]})
        ]
        assert api.etcd()["members"] == ["valinor-1", "valinor-2"]
        assert api.state()["valinor-3"]["maintenance"] is True

        again = upgrader(["reset", "--node", api.node_arg("valinor-3"), "--mode", "graceful", "--timeout", "30s"], secrets(api))
        assert again.code == 0
        assert again.last == "upgrader: valinor-3: already in maintenance mode: nothing to reset"


def test_reset_refuses_to_gracefully_reset_the_last_control_plane() -> None:
    with talos_api(arda({"valinor-1": NEW})) as api:
        result = upgrader(["reset", "--node", api.node_arg("valinor-1"), "--mode", "graceful", "--timeout", "30s"], secrets(api))
        assert result.code == 1
        assert result.last.startswith(
            "upgrader: FAILED: valinor-1: etcd: it is etcd's last member, which cannot leave: reset it with --mode last; look with: "
        )
        assert mutations(api) == []

        last = upgrader(["reset", "--node", api.node_arg("valinor-1"), "--mode", "last", "--timeout", "30s"], secrets(api))
        assert last.code == 0, last.stderr
        assert [c["args"]["graceful"] for c in api.calls() if c["method"] == "MachineService/Reset"] == [False]


def test_remove_member_removes_a_gone_control_plane_once() -> None:
    with talos_api(arda({"valinor-1": NEW, "valinor-2": NEW, "valinor-3": NEW})) as api:
        api.crash("valinor-3", result="never")
        args = [
            "remove-member",
            "--name",
            "valinor-3",
            "--control-plane",
            api.node_arg("valinor-1"),
            "--control-plane",
            api.node_arg("valinor-2"),
            "--timeout",
            "30s",
        ]
        first = upgrader(args, secrets(api))
        assert first.code == 0, first.stderr
        assert first.last == "upgrader: valinor-3: removed from etcd"
        assert api.etcd()["members"] == ["valinor-1", "valinor-2"]
        second = upgrader(args, secrets(api))
        assert second.code == 0
        assert second.last == "upgrader: valinor-3: not an etcd member: nothing to remove"
        assert [c["args"]["memberId"] for c in api.calls() if c["method"] == "MachineService/EtcdRemoveMemberByID"] == [_member_id(api, "valinor-3")]


def test_the_first_control_planes_apply_takes_the_snapshot_even_when_its_node_needs_nothing(tmp_path: Path) -> None:
    with talos_api(arda({"valinor-1": NEW, "valinor-2": NEW, "valinor-3": NEW})) as api:
        snapshot = tmp_path / "before.snapshot"
        result = apply(api, "valinor-1", api.node_config("valinor-1"), "60s", "--etcd-snapshot", str(snapshot))
        assert result.code == 0, result.stderr
        assert mutations(api) == [("valinor-1", "MachineService/EtcdSnapshot")]
        assert snapshot.read_text() == "talos-api etcd snapshot of arda from valinor-1\n" * 3


def test_etcd_snapshot_writes_the_file_whole(tmp_path: Path) -> None:
    with talos_api(arda({"valinor-1": NEW})) as api:
        out = tmp_path / "snap" / "arda.db"
        result = upgrader(["etcd-snapshot", "--node", api.node_arg("valinor-1"), "--out", str(out), "--timeout", "30s"], secrets(api))
        assert result.code == 0, result.stderr
        assert out.read_text() == "talos-api etcd snapshot of arda from valinor-1\n" * 3
        assert sorted(p.name for p in out.parent.iterdir()) == ["arda.db"]


def test_etcd_snapshot_keep_writes_the_file_once_and_keeps_an_earlier_attempts(tmp_path: Path) -> None:
    """The before-path snapshot (plans.bringup.etcd_snapshot, --keep): a later attempt of the step (a resume whose
    command changed, a path given up and tried again) finds the first attempt's file and keeps it, contacting nothing,
    so the file named "before" is never replaced by a state from partway. Without --keep (the rollout's own snapshot)
    the file is replaced. Review 2 N3: before --keep every attempt overwrote it."""
    with talos_api(arda({"valinor-1": NEW})) as api:
        out = tmp_path / "snap" / "arda-before.db"
        args = ["etcd-snapshot", "--node", api.node_arg("valinor-1"), "--out", str(out), "--keep", "--timeout", "30s"]
        first = upgrader(args, secrets(api))
        assert first.code == 0, first.stderr
        assert out.read_text() == "talos-api etcd snapshot of arda from valinor-1\n" * 3
        out.write_text("the state before the path\n")  # what the first attempt saved, told apart from a new one
        taken = len([c for c in api.calls() if c["method"] == "MachineService/EtcdSnapshot"])
        again = upgrader(args, secrets(api))
        assert again.code == 0, again.stderr
        assert (
            again.lines[-1] == f"upgrader: valinor-1: etcd snapshot kept: {out} is an earlier attempt's, from before anything changed (written once)"
        )
        assert out.read_text() == "the state before the path\n"
        assert len([c for c in api.calls() if c["method"] == "MachineService/EtcdSnapshot"]) == taken
        assert sorted(p.name for p in out.parent.iterdir()) == ["arda-before.db"]
        replaced = upgrader([a for a in args if a != "--keep"], secrets(api))
        assert replaced.code == 0, replaced.stderr
        assert out.read_text() == "talos-api etcd snapshot of arda from valinor-1\n" * 3


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["apply", "--node", "a=127.0.0.1", "--role", "worker"], {}, "upgrader: apply: --timeout is required (a duration such as 15m)"),
        (["apply", "--node", "a", "--timeout", "1m"], {}, 'upgrader: apply: invalid value "a" for flag -node: "a" is not NAME=IP'),
        (["bootstrap", "--node", "a=127.0.0.1", "--timeout", "1m", "extra"], {}, 'upgrader: bootstrap: unexpected argument "extra"'),
        (
            ["bootstrap", "--node", "a=127.0.0.1", "--timeout", "1m"],
            {"talos_config": "x"},
            'upgrader: bootstrap: stdin is not the secrets JSON object: json: unknown field "talos_config"',
        ),
        (["bootstrap", "--node", "a=127.0.0.1", "--timeout", "1m"], {}, 'upgrader: bootstrap: stdin: "talosconfig" is required'),
        (
            ["wait-kube", "--api", "--admits", "--timeout", "1m"],
            {},
            "upgrader: wait-kube: give exactly one of --api, --nodes, --admits, --storage-class",
        ),
        (
            ["health", "--control-plane", "a=127.0.0.1", "--endpoint", "http://x:6443", "--stage", "api", "--timeout", "1m"],
            {},
            "upgrader: health: --endpoint must be https://HOST:PORT",
        ),
        (["frobnicate"], {}, 'upgrader: unknown command "frobnicate"'),
    ],
    ids=["no-timeout", "bad-node", "stray-argument", "unknown-stdin-key", "no-talosconfig", "two-gates", "http-endpoint", "unknown-command"],
)
def test_bad_arguments_exit_2_before_anything_is_contacted(args: list[str], stdin: dict[str, Any], message: str) -> None:
    result = upgrader(args, stdin)
    assert result.code == 2
    assert result.lines[0] == message
    assert result.stdout == ""


def test_apply_refuses_a_config_for_the_other_role() -> None:
    with talos_api(arda({"istari-1": NEW})) as api:
        result = upgrader(apply_args(api, "istari-1", "controlplane"), secrets(api, api.config("worker", installer(VANILLA, NEW))))
        assert result.code == 2
        assert result.last == "upgrader: apply: --role controlplane, but the machine config is for a worker"
        assert api.calls() == []


def test_nothing_secret_reaches_the_output() -> None:
    with talos_api(arda({"istari-1": NEW}, **{"istari-1": {"applyNeedsReboot": True}})) as api:
        config = api.config("worker", installer(VANILLA, NEWER), patches=[_patch("262144")])
        result = apply(api, "istari-1", config)
        assert result.code == 0, result.stderr
        talosconfig = api.talosconfig_text()
        secret_values = [line.split(":", 1)[1].strip() for line in talosconfig.splitlines() if line.strip().startswith(("crt:", "key:", "ca:"))]
        secret_values += [line.split(":", 1)[1].strip() for line in config.splitlines() if line.strip().startswith(("token:", "secret:", "key:"))]
        assert len(secret_values) > 5
        for value in secret_values:
            assert value not in result.stderr + result.stdout


# What apply records, and what the next update or delete of its Pulumi step does with it: pulumi-command
# hands both the stdout of the resource's last run (PULUMI_COMMAND_STDOUT), with no input changed.


def test_apply_records_where_it_reached_the_node_which_machine_it_is_and_its_etcd_member() -> None:
    with talos_api(arda({"valinor-1": NEW, "valinor-2": NEW, "valinor-3": NEW, "istari-1": NEW})) as api:
        for name in ("valinor-2", "istari-1"):
            result = apply(api, name, api.node_config(name))
            assert result.code == 0, result.stderr
            expected = {"node": name, "ip": api.ip(name), "machine": mac(name)}
            if name == "valinor-2":
                expected["etcdMember"] = _member_id(api, name)
            # One line, and nothing else on stdout: progress stays on stderr.
            assert result.stdout == json.dumps(expected, separators=(",", ":")) + "\n"
            assert record(result) == expected
            assert api.state()[name]["etcdMemberId"] == expected.get("etcdMember", "")


@pytest.mark.parametrize(
    ("identity", "machine"),
    [
        ({"mac": "D8:3A:DD:10:00:01"}, "d8:3a:dd:10:00:01"),
        ({"mac": "none", "uuid": "4C4C4544-0042-3510-8057-B4C04F4A4E32"}, "4c4c4544-0042-3510-8057-b4c04f4a4e32"),
        ({"mac": "none", "uuid": "03000200-0400-0500-0006-000700080009"}, None),
        ({"mac": "none", "uuid": "none"}, None),
    ],
    ids=["permanent-mac", "smbios-uuid", "placeholder-uuid", "neither"],
)
def test_the_machine_is_its_links_permanent_mac_else_a_real_smbios_uuid(identity: dict[str, str], machine: str | None) -> None:
    with talos_api(arda({"istari-1": NEW}, **{"istari-1": identity})) as api:
        result = apply(api, "istari-1", api.node_config("istari-1"))
        assert result.code == 0, result.stderr
        expected = {"node": "istari-1", "ip": api.ip("istari-1")}
        if machine is not None:
            expected["machine"] = machine
        assert record(result) == expected


@pytest.mark.parametrize(
    ("name", "reboot"),
    [("istari-1", False), ("istari-1", True), ("valinor-1", False)],
    ids=["applied-live", "staged-and-rebooted", "control-plane"],
)
def test_an_address_change_is_applied_at_the_old_address_and_the_node_found_at_the_new_one(name: str, reboot: bool) -> None:
    old, new = addresses(2)
    with talos_api(scenario([node(name, old, role(name), NEW, applyNeedsReboot=reboot, reboot={"downMs": 300})])) as api:
        before = api.state()[name]["bootId"]
        config = api.config(role(name), installer(VANILLA, NEW), patches=link(mac(name), new))
        last = {"node": name, "ip": old, "machine": mac(name)}
        args = ["apply", "--node", f"{name}={new}", "--role", role(name), "--timeout", "60s", "--no-kubernetes"]
        result = upgrader(args, secrets(api, config), record=last)
        assert result.code == 0, result.stderr
        expected = {"node": name, "ip": new, "machine": mac(name)}
        if role(name) == "controlplane":
            # Its etcd member follows it (Talos's AdvertisedPeerController), healthy at the new address.
            expected["etcdMember"] = _member_id(api, name)
        assert record(result) == expected
        moved = f"does not answer at {new}, but at {old}, where it was last reached (running): the new config goes there, and moves it"
        assert f"upgrader: {name}: {moved}" in result.lines
        assert f"upgrader: {name}: answers at {new}, where the new config put it" in result.lines
        # The change went to the old address; from there on the node was asked at its new one.
        changed = [(c["method"], c["at"]) for c in api.calls() if c["method"] in {"MachineService/ApplyConfiguration", "MachineService/Reboot"}]
        mode = ["MachineService/ApplyConfiguration STAGED", "MachineService/Reboot"] if reboot else ["MachineService/ApplyConfiguration NO_REBOOT"]
        assert [m for _, m in mutations(api)] == ["MachineService/ApplyConfiguration dry-run", *mode]
        assert {at for _, at in changed} == {f"{old}:{API_PORT}"}
        health = [c for c in api.calls() if c["method"] == "State/Get" and c["args"]["type"] == "MachineStatuses.runtime.talos.dev"]
        assert health[-1]["at"] == f"{new}:{API_PORT}"
        state = api.state()[name]
        assert state["address"] == f"{new}:{API_PORT}"
        assert (state["bootId"] != before) is reboot

        # The next update reads this run's record: the node is where it should be, nothing to do.
        again = upgrader(args, secrets(api, config), record=record(result))
        assert again.code == 0, again.stderr
        assert f"upgrader: {name}: config unchanged and Talos as configured: checking health only" in again.lines
        assert len(mutations(api)) == 1 + len(mode)


def test_a_reflashed_control_planes_stale_member_is_removed_before_it_gets_its_config_back() -> None:
    reflashed: dict[str, Any] = {"maintenance": True, "etcd": {"stale": True}, "install": {"downMs": 300}}
    with talos_api(arda({"valinor-1": NEW, "valinor-2": NEW, "valinor-3": NEW}, **{"valinor-3": reflashed})) as api:
        stale = _member_id(api, "valinor-3")
        assert (api.etcd()["members"], api.state()["valinor-3"]["etcdMemberId"]) == (["valinor-1", "valinor-2", "valinor-3"], stale)
        config = api.config("controlplane", installer(VANILLA, NEW))
        last = {"node": "valinor-3", "ip": api.ip("valinor-3"), "machine": mac("valinor-3"), "etcdMember": stale}
        result = upgrader(apply_args(api, "valinor-3", "controlplane"), secrets(api, config), record=last)
        assert result.code == 0, result.stderr

        # The stale member went through another control plane first; only then the config.
        assert mutations(api) == [("valinor-1", "MachineService/EtcdRemoveMemberByID"), ("valinor-3", "MachineService/ApplyConfiguration AUTO")]
        assert [c["args"]["memberId"] for c in api.calls() if c["method"] == "MachineService/EtcdRemoveMemberByID"] == [stale]
        # etcd is bootstrapped: the step returns only once the machine installed, rebooted, joined etcd afresh and is healthy,
        # so the next machine's step does not start before it.
        joined = api.state()["valinor-3"]["etcdMemberId"]
        assert (api.state()["valinor-3"]["maintenance"], joined != stale) == (False, True)
        steps = [line.removeprefix("upgrader: valinor-3: ") for line in result.lines]
        assert [s for s in steps[steps.index("answers: maintenance") :] if not s.startswith("waiting: ")] == [
            "answers: maintenance",
            "the config names no MAC (no LinkAliasConfig selects its NIC by mac(link.permanent_addr)): which machine takes it cannot be checked",
            f"in maintenance mode, but it was etcd member {stale} when last reached: reflashed or replaced, so that member and its old Node go before the hand-over",
            f"etcd member {stale} removed through {api.ip('valinor-1')}",
            "--no-kubernetes: its old Node object is left",
            f"was in maintenance mode: config handed over; etcd is bootstrapped ({api.ip('valinor-1')} runs it), "
            f"so the step waits until it has installed {NEW}, rebooted and is healthy",
            f"back: it answers at {api.ip('valinor-3')} with the cluster's client certificate",
            "running and ready",
            f"runs Talos {NEW}, schematic {VANILLA}, as configured",
            "healthy",
        ]
        assert record(result) == {"node": "valinor-3", "ip": api.ip("valinor-3"), "machine": mac("valinor-3"), "etcdMember": joined}
        assert api.etcd()["members"] == ["valinor-1", "valinor-2", "valinor-3"]

        # The next update finds it as configured.
        again = upgrader(apply_args(api, "valinor-3", "controlplane"), secrets(api, config), record=record(result))
        assert again.code == 0, again.stderr
        assert "upgrader: valinor-3: config unchanged and Talos as configured: checking health only" in again.lines
        assert record(again) == record(result)
        assert len(mutations(api)) == 2


NAMED = "d8:3a:dd:10:00:01"


@pytest.mark.parametrize("version", [OLD, NEW])
@pytest.mark.parametrize("answers", ["d8:3a:dd:10:00:99", "none", NAMED], ids=["another-mac", "no-permanent-mac", "the-named-mac"])
def test_a_machine_in_maintenance_mode_with_another_mac_is_refused_and_gets_nothing(version: str, answers: str) -> None:
    # Maintenance mode answers anyone and takes any config (Talos checks no LinkAliasConfig selector against its
    # links): the config names the machine's MAC, which the machine tells an insecure client (LinkStatus).
    with talos_api(arda({"istari-1": version}, **{"istari-1": {"maintenance": True, "mac": answers, "install": {"downMs": 200}}})) as api:
        ip = api.ip("istari-1")
        config = api.config("worker", installer(VANILLA, NEW), patches=link(NAMED))
        result = apply(api, "istari-1", config)
        applied = [c for c in api.calls() if c["method"] == "MachineService/ApplyConfiguration"]
        # The MACs came from the machine's links, which maintenance mode lets a client without a certificate list.
        listed = {(c["args"]["type"], c["code"]) for c in api.calls("istari-1") if c["method"] == "State/List"}
        assert ("LinkStatuses.net.talos.dev", "OK") in listed
        if answers == NAMED:
            assert result.code == 0, result.stderr
            assert f"upgrader: istari-1: in maintenance mode: a link's permanent MAC is {NAMED}, the one the config names" in result.lines
            assert [c["args"]["mode"] for c in applied] == ["AUTO"]
            return
        seen = (
            f"is not the one the config is for: its links' permanent MACs are {answers}, the config names {NAMED}; "
            "nothing was handed over (the config holds the cluster's keys)"
            if answers != "none"
            else f"reports no permanent MAC on any link, and the config names {NAMED}: which machine it is cannot be told, "
            "so nothing was handed over (the config holds the cluster's keys; its network would not come up there either)"
        )
        assert result.code == 1
        assert result.last == (
            f"upgrader: FAILED: istari-1: machine: the machine in maintenance mode at {ip} {seen}; "
            f"look with: talosctl -n {ip} get links --insecure; the DHCP leases for {ip}; the MAC the inventory gives istari-1"
        )
        # Nothing reached the machine: no ApplyConfiguration at all, not even a dry run, and it is still in maintenance mode.
        assert (applied, mutations(api), result.stdout) == ([], [], "")
        assert api.state()["istari-1"]["maintenance"] is True


@pytest.mark.parametrize("inventory_moved", [False, True], ids=["same-inventory", "machine-replaced-in-the-inventory"])
def test_another_machine_at_the_address_is_refused_unless_the_inventory_names_it(inventory_moved: bool) -> None:
    last_seen, other = "d8:3a:dd:10:00:01", "d8:3a:dd:10:00:99"
    with talos_api(arda({"istari-1": NEW}, **{"istari-1": {"mac": other}})) as api:
        ip = api.ip("istari-1")
        config = api.config("worker", installer(VANILLA, NEW), patches=link(other if inventory_moved else last_seen))
        result = upgrader(apply_args(api, "istari-1", "worker"), secrets(api, config), record={"node": "istari-1", "ip": ip, "machine": last_seen})
        if not inventory_moved:
            assert result.code == 1
            assert result.last == (
                f"upgrader: FAILED: istari-1: machine: another machine answers at {ip}: it is {other}, but istari-1 was {last_seen} when last reached, "
                f"and the config still names {last_seen}: another machine took the address, so nothing was changed; "
                f"look with: talosctl -n {ip} get links; talosctl -n {ip} get hostname; the DHCP leases for {ip}"
            )
            assert (mutations(api), result.stdout) == ([], "")
            return
        assert result.code == 0, result.stderr
        assert (
            f"upgrader: istari-1: another machine answers than when last reached ({other}, was {last_seen}): the inventory names {other} now, a replaced machine"
            in result.lines
        )
        assert record(result)["machine"] == other


def _reset(api: TalosAPI, name: str, dead_after: str = "10s", last: dict[str, Any] | None = None, ip: str | None = None) -> Result:
    """`reset --mode auto`, as a Pulumi delete runs it (the machine config on stdin too), Talos steps only."""
    args = ["reset", "--node", f"{name}={ip or api.ip(name)}", "--mode", "auto", "--timeout", "30s", "--dead-after", dead_after, "--no-kubernetes"]
    return upgrader(args, secrets(api, api.node_config(name)), record=last)


def _resets(api: TalosAPI) -> list[tuple[str, bool]]:
    return [(c["node"], c["args"]["graceful"]) for c in api.calls() if c["method"] == "MachineService/Reset"]


def test_a_destroy_resets_workers_and_control_planes_gracefully_and_the_last_member_without_leaving() -> None:
    order = ["istari-1", "valinor-3", "valinor-2", "valinor-1"]  # pulumi destroy: the chain in reverse
    with talos_api(arda(dict.fromkeys(reversed(order), NEW), **{name: {"reset": {"downMs": 200}} for name in order})) as api:
        ips = {name: api.ip(name) for name in order}
        results = {name: _reset(api, name, last={"node": name, "ip": ips[name], "machine": mac(name)}) for name in order}
        for name, result in results.items():
            assert result.code == 0, (name, result.stderr)
            assert result.stdout == ""
        assert _resets(api) == [("istari-1", True), ("valinor-3", True), ("valinor-2", True), ("valinor-1", False)]
        assert [m for _, m in mutations(api)] == ["MachineService/Reset"] * 4
        assert all(s["maintenance"] for s in api.state().values())

        def said(name: str) -> list[str]:
            return [line.removeprefix(f"upgrader: {name}: ") for line in results[name].lines]

        assert "a worker: graceful reset (Talos cordons and drains it first)" in said("istari-1")
        assert "etcd has 3 members (valinor-1, valinor-2, valinor-3): graceful reset (it leaves etcd; Talos cordons and drains it first)" in said(
            "valinor-3"
        )
        assert "etcd has 2 members (valinor-1, valinor-2): graceful reset (it leaves etcd; Talos cordons and drains it first)" in said("valinor-2")
        assert said("valinor-1")[-3:] == [
            "reset (last): waiting for it to come back in maintenance mode",
            "in maintenance mode",
            f"no other control plane answers ({ips['valinor-2']} maintenance, {ips['valinor-3']} maintenance): "
            "the whole cluster is being destroyed; its etcd member and Node object go with it",
        ]
        assert said("valinor-2")[-1] == "--no-kubernetes: its Node object is left"

        # A delete run again (its first run's state was not saved, say) finds nothing left to do and changes nothing.
        again = _reset(api, "valinor-2", last={"node": "valinor-2", "ip": ips["valinor-2"], "machine": mac("valinor-2")})
        assert again.code == 0, again.stderr
        assert f"upgrader: valinor-2: already in maintenance mode at {ips['valinor-2']}: nothing to reset" in again.lines
        assert len(mutations(api)) == 4


def test_reset_auto_on_a_middle_control_plane_is_graceful_and_a_second_run_changes_nothing() -> None:
    with talos_api(arda({"valinor-1": NEW, "valinor-2": NEW, "valinor-3": NEW}, **{"valinor-2": {"reset": {"downMs": 200}}})) as api:
        last = {"node": "valinor-2", "ip": api.ip("valinor-2"), "machine": mac("valinor-2"), "etcdMember": _member_id(api, "valinor-2")}
        first = _reset(api, "valinor-2", last=last)
        assert first.code == 0, first.stderr
        assert mutations(api) == [("valinor-2", "MachineService/Reset")]
        assert _resets(api) == [("valinor-2", True)]
        assert api.etcd()["members"] == ["valinor-1", "valinor-3"]

        second = _reset(api, "valinor-2", last=last)
        assert second.code == 0, second.stderr
        assert [line.removeprefix("upgrader: valinor-2: ") for line in second.lines][-3:] == [
            f"already in maintenance mode at {api.ip('valinor-2')}: nothing to reset",
            f"not an etcd member (checked through {api.ip('valinor-1')}): nothing to remove",
            "--no-kubernetes: its Node object is left",
        ]
        assert mutations(api) == [("valinor-2", "MachineService/Reset")]


def test_a_dead_machines_member_is_removed_through_another_control_plane_and_nothing_is_reset() -> None:
    spare = addresses(1)[0]
    with talos_api(arda({"valinor-1": NEW, "valinor-2": NEW, "valinor-3": NEW})) as api:
        member = _member_id(api, "valinor-2")
        api.crash("valinor-2", result="never")
        # Its last apply reached it at another address than the inventory's now: both are tried.
        last = {"node": "valinor-2", "ip": api.ip("valinor-2"), "machine": mac("valinor-2"), "etcdMember": member}
        result = _reset(api, "valinor-2", "2s", last=last, ip=spare)
        assert result.code == 0, result.stderr
        assert [line.removeprefix("upgrader: valinor-2: ") for line in result.lines][-5:] == [
            f"waiting up to 2s for it to answer at {spare}, {api.ip('valinor-2')}",
            f"did not answer within 2s at {spare} nor at {api.ip('valinor-2')}, where it was last reached: treated as dead, since it is being removed",
            f"etcd member {member} removed through {api.ip('valinor-1')}",
            "--no-kubernetes: its Node object is left",
            "removed from the cluster without a reset: nothing on the machine was wiped "
            "(if it comes back it still holds its Talos config and data: wipe it before reusing it)",
        ]
        assert mutations(api) == [("valinor-1", "MachineService/EtcdRemoveMemberByID")]
        assert [c["args"]["memberId"] for c in api.calls() if c["method"] == "MachineService/EtcdRemoveMemberByID"] == [member]
        assert api.etcd()["members"] == ["valinor-1", "valinor-3"]
        # Held to its 2 s by the lines above that name it (waiting up to 2s, did not answer within 2s); a wait that never
        # gave up makes `upgrader`'s 300 s timeout raise. Not by the run's wall-clock time: that measured the loaded machine.

        # Run again: still dead, no longer a member: nothing changes.
        again = _reset(api, "valinor-2", "1s", last=last)
        assert again.code == 0, again.stderr
        assert f"upgrader: valinor-2: not an etcd member (checked through {api.ip('valinor-1')}): nothing to remove" in again.lines
        assert len(mutations(api)) == 1


def test_reset_never_wipes_another_machine_that_took_the_address() -> None:
    # valinor-3 died; istari-9 has its address now. Deleting valinor-3 must not wipe istari-9.
    with talos_api(arda({"valinor-1": NEW, "valinor-2": NEW, "valinor-3": NEW, "istari-9": NEW})) as api:
        member = _member_id(api, "valinor-3")
        api.crash("valinor-3", result="never")
        taken = api.ip("istari-9")
        last = {"node": "valinor-3", "ip": taken, "machine": mac("valinor-3"), "etcdMember": member}
        result = _reset(api, "valinor-3", "2s", last=last, ip=taken)
        assert result.code == 0, result.stderr
        steps = [line.removeprefix("upgrader: valinor-3: ") for line in result.lines]
        assert steps[steps.index("the last apply recorded: " + f"last reached at {taken}, machine {mac('valinor-3')}, etcd member {member}") + 1 :][
            :3
        ] == [
            f"another machine ({mac('istari-9')}, node istari-9) answers at {taken}, not this node's ({mac('valinor-3')}): it is left alone",
            f"waiting up to 2s for it to answer at {taken}",
            f"did not answer within 2s at {taken}: treated as dead, since it is being removed",
        ]
        # valinor-3's member goes; istari-9 is untouched.
        assert mutations(api) == [("valinor-1", "MachineService/EtcdRemoveMemberByID")]
        assert [c["args"]["memberId"] for c in api.calls() if c["method"] == "MachineService/EtcdRemoveMemberByID"] == [member]
        assert not api.state()["istari-9"]["maintenance"]


def test_reset_leaves_alone_a_machine_the_inventory_renamed() -> None:
    # The inventory renamed valinor-3 to valinor-4: Pulumi ran the new step's apply (the machine is valinor-4 now),
    # then deletes the old step. Same machine, same address: only its name tells it is another node's now.
    with talos_api(arda({"valinor-1": NEW, "valinor-2": NEW, "valinor-3": NEW})) as api:
        renamed = api.config(
            "controlplane",
            installer(VANILLA, NEW),
            patches=[json.dumps({"apiVersion": "v1alpha1", "kind": "HostnameConfig", "auto": "off", "hostname": "valinor-4"})],
        )
        assert apply(api, "valinor-3", renamed).code == 0
        last = {"node": "valinor-3", "ip": api.ip("valinor-3"), "machine": mac("valinor-3"), "etcdMember": _member_id(api, "valinor-3")}
        result = _reset(api, "valinor-3", "2s", last=last)
        assert result.code == 0, result.stderr
        assert f"upgrader: valinor-3: the machine at {api.ip('valinor-3')} answers as valinor-4 now: that node is left alone" in result.lines
        assert result.lines[-2:] == [
            "upgrader: valinor-3: valinor-3 is valinor-4 now, so nothing is reset and its etcd member is left to it; only the Node object valinor-3 goes",
            "upgrader: valinor-3: --no-kubernetes: its Node object is left",
        ]
        assert [m for _, m in mutations(api)] == ["MachineService/ApplyConfiguration dry-run", "MachineService/ApplyConfiguration NO_REBOOT"]
        assert api.etcd()["members"] == ["valinor-1", "valinor-2", "valinor-3"]


def test_reset_auto_refuses_a_dead_after_that_is_not_well_under_the_timeout() -> None:
    result = upgrader(["reset", "--node", "a=127.0.0.1", "--mode", "auto", "--timeout", "1m", "--dead-after", "2m"], {})
    assert (result.code, result.last) == (2, "upgrader: reset: --dead-after must be positive and shorter than --timeout")


KERNEL_ARG = "console=ttyS0,115200"


def test_a_kernel_argument_reaches_the_machine_through_its_boards_schematic(tmp_path: Path) -> None:
    """arda.kernelArgs goes into the board's schematic: a new ID, so the machine's installer changes, and the upgrader
    upgrades it to that installer, which boots with the argument (Image Factory builds the schematic's arguments into
    it). The same argument in machine.install.extraKernelArgs, which validation now refuses, is applied without a
    reboot and never reaches the kernel (tools/talos-api/cmdline.go follows Talos and Image Factory there)."""
    from iluvatar.simulate import simulate
    from plans import talos
    from stacks import read_stack_file, releases
    from tests.edit import edit, homelab_doc, write_stack

    doc = edit(homelab_doc(), {"iluvatar:arda.kernelArgs": {"generic-x86": [KERNEL_ARG]}})
    sim = simulate(read_stack_file(write_stack(tmp_path, doc, stack="homelab")))
    image = sim.outputs["ardaInstallerImages"]["generic-x86"]
    schematic = talos.schematic_id("generic-x86", [KERNEL_ARG])
    assert image == installer(schematic, releases.TALOS)
    assert schematic != STORAGE  # the board's schematic without the argument, which the machines run
    factory = {schematic: {"extraKernelArgs": [KERNEL_ARG]}, STORAGE: {}}
    upgrade = {"upgrade": {"downMs": 100}}
    spec = scenario([node("istari-1", ip, "worker", releases.TALOS, STORAGE, **upgrade) for ip in addresses(1)], factory=factory)
    with talos_api(spec) as api:
        before = api.state()["istari-1"]["cmdline"]
        assert KERNEL_ARG not in before.split()
        # The old way: the argument in machine.install, the installer unchanged. Talos applies it without a reboot.
        patch = json.dumps({"machine": {"install": {"extraKernelArgs": [KERNEL_ARG]}}})
        ignored = apply(api, "istari-1", api.config("worker", installer(STORAGE, releases.TALOS), patches=[patch]))
        assert ignored.code == 0, ignored.stderr
        assert mutations(api) == [
            ("istari-1", "MachineService/ApplyConfiguration dry-run"),
            ("istari-1", "MachineService/ApplyConfiguration NO_REBOOT"),
        ]
        assert api.state()["istari-1"]["cmdline"] == before
        # The program's way: the config names the new schematic's installer, and the machine upgrades to it.
        result = apply(api, "istari-1", api.config("worker", image))
        assert result.code == 0, result.stderr
        state = api.state()["istari-1"]
        assert (state["version"], state["schematic"]) == (releases.TALOS, schematic)
        assert state["cmdline"] == f"{before} {KERNEL_ARG}"
        assert [m for _, m in mutations(api)][2:] == LIFECYCLE_UPGRADE


# --- What a machine says after its hand-over, and an etcd that gave up joining -------------------------------------


def test_an_etcd_that_gave_up_waiting_for_the_bootstrap_is_no_bootstrapped_cluster() -> None:
    """A valinor whose etcd waited for a bootstrap longer than Talos's EtcdJoinTimeout is Failed (no restart until its
    next boot), over an empty data directory: it holds no etcd data, as the bootstrap counts it (talos.AskEtcdOf). Before,
    any state but Preparing was "bootstrapped": its own apply ran the etcd checks of a running cluster and waited for a
    ready machine, and a machine handed its config beside it waited for its install as on a running cluster. A control
    plane before the bootstrap is "booting" (its Boot sequence waits for etcd), which its health accepts."""
    ips = addresses(2)
    spec = scenario(
        [node("valinor-1", ips[0], "controlplane", NEW), node("istari-1", ips[1], "worker", NEW, maintenance=True, install={"downMs": 3000})],
        bootstrapped=False,
    )
    spec["etcd"]["joinTimeoutMs"] = 1000
    with talos_api(spec) as api:
        deadline = time.monotonic() + 20
        while api.state()["valinor-1"]["etcdService"] != "Failed":
            assert time.monotonic() < deadline, api.state()["valinor-1"]
            time.sleep(0.05)
        assert api.state()["valinor-1"]["stage"] == "booting"

        own = apply(api, "valinor-1", api.node_config("valinor-1"), "20s")
        assert own.code == 0, own.stderr
        assert own.lines[-3:] == [
            "upgrader: valinor-1: etcd is not bootstrapped yet: Talos steps only (no etcd, drain or Kubernetes checks until the bootstrap)",
            "upgrader: valinor-1: config unchanged and Talos as configured: checking health only",
            "upgrader: valinor-1: healthy",
        ]

        handed = apply(api, "istari-1", api.config("worker", installer(VANILLA, NEW)), "20s")
        assert handed.code == 0, handed.stderr
        assert handed.last == (
            f"upgrader: istari-1: was in maintenance mode: config handed over; Talos installs {NEW} and reboots on its own (etcd is not bootstrapped: "
            f"{ips[0]} gave up joining (etcd Failed, /var/lib/etcd empty: no etcd data; Talos asks again at its next boot); a fresh bring-up does not wait)"
        )
        assert (s := api.state()["istari-1"])["maintenance"] or not s["up"], s  # still installing: the step did not wait for it
        assert mutations(api) == [("istari-1", "MachineService/ApplyConfiguration AUTO")]


def test_a_machine_that_booted_the_talos_its_disk_held_is_upgraded_after_its_hand_over() -> None:
    """A machine reset to maintenance mode from its own disk keeps META, so Talos skips the install and boots the Talos
    the disk holds (here: the stand-in's install result "old-version"). Back with the cluster's certificate, it is a
    running machine: the step upgrades it. Before, the step failed "the new image did not boot", and left the upgrade
    to the next run."""
    reset_from_disk: dict[str, Any] = {"maintenance": True, "install": {"downMs": 300, "result": "old-version"}, "upgrade": {"downMs": 300}}
    with talos_api(arda({"valinor-1": NEW, "istari-1": OLD}, **{"istari-1": reset_from_disk})) as api:
        result = apply(api, "istari-1", api.config("worker", installer(VANILLA, NEW)))
        assert result.code == 0, result.stderr
        steps = [line.removeprefix("upgrader: istari-1: ") for line in result.lines]
        back = steps.index(f"back: it answers at {api.ip('istari-1')} with the cluster's client certificate")
        assert steps[back + 1 : back + 4] == [
            "running and ready",
            f"it booted the Talos its disk held, {OLD} (schematic {VANILLA}), not {NEW} (schematic {VANILLA}): "
            "Talos skipped the install (a disk that was installed before), so it is upgraded as a running machine",
            f"runs Talos {OLD} (schematic {VANILLA}); the config installs {NEW} (schematic {VANILLA})",
        ]
        assert steps[-2:] == [f"runs Talos {NEW}, schematic {VANILLA}, as configured", "healthy"]
        assert mutations(api) == [
            ("istari-1", "MachineService/ApplyConfiguration AUTO"),
            ("istari-1", "MachineService/ImagePull"),
            ("istari-1", "MachineService/Upgrade"),
        ]
        assert versions(api) == {"istari-1": NEW, "valinor-1": NEW}


def test_a_machine_whose_address_goes_on_a_vlan_is_still_the_one_handed_its_config() -> None:
    """A user patch puts the node's address on a VLAN (or a bond): after the install the address's link has no permanent
    MAC, and the machine's identity falls back to its SMBIOS UUID. The machine is still told by its links' permanent
    MACs, as the maintenance-mode check tells it. Before, the step reported "another machine answers" for the right one."""
    with talos_api(arda({"valinor-1": NEW, "istari-1": NEW}, **{"istari-1": {"maintenance": True, "mac": NAMED, "install": {"downMs": 300}}})) as api:
        ip = api.ip("istari-1")
        vlan = {
            "apiVersion": "v1alpha1",
            "kind": "VLANConfig",
            "name": "lan0.10",
            "vlanID": 10,
            "parent": "lan0",
            "up": True,
            "addresses": [{"address": f"{ip}/32"}],
        }
        config = api.config("worker", installer(VANILLA, NEW), patches=[*link(NAMED), json.dumps(vlan)])
        result = apply(api, "istari-1", config)
        assert result.code == 0, result.stderr
        assert result.last == "upgrader: istari-1: healthy"
        assert f"upgrader: istari-1: in maintenance mode: a link's permanent MAC is {NAMED}, the one the config names" in result.lines
        # It is recorded as the machine it was handed its config as, and the next run finds it the same machine,
        # though MachineIdentity alone now tells it by its SMBIOS UUID.
        assert record(result) == {"node": "istari-1", "ip": ip, "machine": NAMED}
        again = upgrader(apply_args(api, "istari-1", "worker"), secrets(api, config), record=record(result))
        assert again.code == 0, again.stderr
        assert again.lines[-2:] == [
            "upgrader: istari-1: config unchanged and Talos as configured: checking health only",
            "upgrader: istari-1: healthy",
        ]
        assert mutations(api) == [("istari-1", "MachineService/ApplyConfiguration AUTO")]


def test_a_valinor_off_for_good_during_a_bring_up_can_be_taken_out_of_the_inventory() -> None:
    """A valinor that never comes back holds the first bootstrap back (it could hold etcd): the way out is to take it out
    of the inventory. Its step's delete finds it dead, and no etcd anywhere: no member to remove. Before, removing its
    member through a valinor that waits for the bootstrap failed (no member list answers), and so did the delete."""
    spec = scenario([node(f"valinor-{i + 1}", ip, "controlplane", NEW) for i, ip in enumerate(addresses(2))], bootstrapped=False)
    with talos_api(spec) as api:
        api.crash("valinor-2", result="never")
        result = _reset(api, "valinor-2", "2s", last={"node": "valinor-2", "ip": api.ip("valinor-2"), "machine": mac("valinor-2")})
        assert result.code == 0, result.stderr
        assert [line.removeprefix("upgrader: valinor-2: ") for line in result.lines][-3:] == [
            "etcd is not bootstrapped (no other control plane holds etcd data): no member to remove",
            "--no-kubernetes: its Node object is left",
            "removed from the cluster without a reset: nothing on the machine was wiped "
            "(if it comes back it still holds its Talos config and data: wipe it before reusing it)",
        ]
        assert mutations(api) == []
