"""The day-2 plan (plans.rollout): what changes on which Arda machine, in the order they are rolled."""

from __future__ import annotations

import base64
import copy
import datetime
import hashlib
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from iluvatar import golang
from iluvatar.simulate import MOCK_CLIENT_CERTIFICATE
from plans import k3s, rollout
from plans.netboot import vip_roll
from stacks import load_stack_file
from tests import talos_provider
from tests.edit import HOMELAB, edit, homelab_doc, write_stack

IMAGE = "factory.talos.dev/metal-installer/abc"


def current() -> dict[str, Any]:
    stack = load_stack_file(HOMELAB)
    names = [n.name for n in stack.arda_nodes]
    return rollout.state(stack, dict.fromkeys(names, f"{IMAGE}:v1.12.4"), dict.fromkeys(names, "d1"))


def test_the_log_stores_record_outlives_logs_off_until_its_claim_is_said_changed(tmp_path: Path) -> None:
    """The store's claim outlives its StatefulSet (no persistentVolumeClaimRetentionPolicy, Retain classes), so logs
    turned off carry the record forward, not running, for the preview that turns them on again (stacks.day2); only
    the `up` that turns them on again replaces it, `logs.claimChanged` or not (the flag drops nothing while logs are off)."""
    record = {"size": "20Gi", "storageClass": "ceph-block", "running": True, "forwarders": ["manwe", "eonwe", "ilmare"]}
    off = load_stack_file(write_stack(tmp_path, edit(homelab_doc(), {"iluvatar:logs": {"enabled": False}}), stack="homelab"))
    assert rollout.logs_store(off, {"logsStore": record}) == {**record, "running": False}  # the Pis kept for a retry
    assert rollout.logs_store(off, {"logsStore": {**record, "running": False}})["running"] is False  # type: ignore[index]
    assert rollout.logs_store(off, {}) is None  # logs never ran: no claim
    assert rollout.logs_store(off, None) is None
    (tmp_path / "changed").mkdir()
    changed = edit(homelab_doc(), {"iluvatar:logs": {"enabled": False, "claimChanged": True}})
    assert rollout.logs_store(load_stack_file(write_stack(tmp_path / "changed", changed, stack="homelab")), {"logsStore": record}) == {
        **record,
        "running": False,
    }
    # On again: the stack's own, running, whatever the record said.
    assert rollout.logs_store(load_stack_file(HOMELAB), {"logsStore": {"size": "40Gi", "storageClass": "nfs", "running": False}}) == record
    # The `up` that turns logs off names the Pis whose forwarder it turns off over SSH, and its bound; no other does.
    carried = rollout.logs_store(off, {"logsStore": record})
    assert rollout.logs_off({"logsStore": record}, {"logsStore": carried}) == (
        "Logs: turned off: each Pi's journal forwarder and Talos's log firewall are turned off over SSH, on manwe, eonwe, ilmare; "
        "a Pi that does not answer 4 dials of 15 s fails this `up`: bring it up first, or see docs/day2.md#the-log-stores-size-or-class\n"
    )
    assert rollout.logs_off({"logsStore": record}, {}) != ""  # off, and the claim said changed
    settled = rollout.logs_store(off, {"logsStore": carried})
    assert settled == {"size": "20Gi", "storageClass": "ceph-block", "running": False}  # the Pis go in the `up` after
    assert rollout.logs_off({"logsStore": settled}, {"logsStore": settled}) == ""  # off already
    assert rollout.logs_off({"logsStore": record}, {"logsStore": record}) == ""  # still on
    assert rollout.logs_off(None, {"logsStore": carried}) == ""


def test_the_retry_of_a_failed_logs_off_up_still_names_the_pis(tmp_path: Path) -> None:
    """Engine v3.259 writes a failed update's outputs (step_executor.go:226-231, 262-268), registered before the deletes
    of what left the program run (deployment_executor.go:328-336): a logs-off `up` that fails on a Pi's journal step
    still records logs off. The record keeps the Pis for the next `up`, whose preview names them as possibly left
    (review 4 L1); the one after that has no way to know, and says nothing."""
    record = {"size": "20Gi", "storageClass": "ceph-block", "running": True, "forwarders": ["manwe", "eonwe", "ilmare"]}
    off = load_stack_file(write_stack(tmp_path, edit(homelab_doc(), {"iluvatar:logs": {"enabled": False}}), stack="homelab"))
    failed = rollout.logs_store(off, {"logsStore": record})  # what the failed `up` recorded
    retry = rollout.logs_store(off, {"logsStore": failed})
    assert rollout.logs_off({"logsStore": failed}, {"logsStore": retry}) == (
        "Logs: off since the last `up`; if it failed, this one still turns the journal forwarder and Talos's log firewall off "
        "over SSH on the Pis whose step is left (of manwe, eonwe, ilmare; `pulumi stack --show-urns | grep journal-upload` lists them); "
        "a Pi that does not answer 4 dials of 15 s fails this `up`: bring it up first, or see docs/day2.md#the-log-stores-size-or-class\n"
    )
    assert rollout.logs_off({"logsStore": retry}, {"logsStore": rollout.logs_store(off, {"logsStore": retry})}) == ""
    # Logs back on in the retry: the Pis' steps are the program's again, nothing to name.
    assert rollout.logs_off({"logsStore": failed}, {"logsStore": record}) == ""


def test_the_state_lists_every_machine_in_rollout_order() -> None:
    state = current()
    assert state["order"] == ["taniquetil", "tirion", "alqualonde", "gandalf", "saruman"]
    assert (state["talosVersion"], state["kubernetesVersion"]) == ("v1.14.1", "v1.35.1")
    assert state["charts"] == {"cilium": "1.18.4", "argocd": "10.8.0"}  # read back by stacks.day2: no chart goes backwards
    assert state["clusterName"] == "arda"  # read back by stacks.day2: the cluster is not renamed
    # Read back by stacks.day2: the log store's claim does not change under a running store.
    assert state["logsStore"] == {"size": "20Gi", "storageClass": "ceph-block", "running": True, "forwarders": ["manwe", "eonwe", "ilmare"]}
    assert state["nodes"]["gandalf"] == {
        # The key its volumes were sealed with (the homelab encrypts them): stacks.day2 refuses changing it in place.
        "encryption": "kms",
        "mac": "28:d2:44:30:00:01",
        "ip": "192.168.0.31",
        "role": "istari",
        "installer": f"{IMAGE}:v1.12.4",
        "patches": "d1",
        "generation": 0,
    }


def test_against_itself_nothing_changes() -> None:
    assert rollout.changes(current(), current()) == []
    assert rollout.describe(current(), current()) == "Arda: no change on any machine\n"


def test_a_talos_upgrade_lists_every_machine_control_planes_first() -> None:
    before, after = current(), current()
    for node in after["nodes"].values():
        node["installer"] = f"{IMAGE}:v1.13.0"
    after["talosVersion"] = "v1.13.0"
    assert [(c.node, c.what, c.disruptive) for c in rollout.changes(before, after)] == [
        (n, ("Talos v1.12.4 -> v1.13.0",), True) for n in ("taniquetil", "tirion", "alqualonde", "gandalf", "saruman")
    ]


def test_the_previews_snapshot_name_falls_back_to_the_stacks_kubernetes_as_the_step_does() -> None:
    """Review 2 N10: an output without kubernetesVersion (recorded before it was kept) named the file
    `...-kubernetes-None.db` at preview, while components.arda's step falls back to the stack's version, and showed a
    "Kubernetes None -> ..." upgrade that components.arda does not run (kubernetes_upgrade needs a recorded version)."""
    before, after = current(), current()
    before["talosVersion"] = "v1.12.4"
    del before["kubernetesVersion"]
    for node in after["nodes"].values():
        node["installer"] = f"{IMAGE}:v1.14.1"
    plan = rollout.describe(before, after)
    assert plan.splitlines()[0] == (
        "Arda: first an etcd snapshot from the first control plane to "
        f".iluvatar/snapshots/arda-etcd-before-talos-v1.12.4-kubernetes-{after['kubernetesVersion']}.db, before any step changes the cluster"
    )
    # Nor a Kubernetes upgrade from "None": components.arda runs none without a recorded version.
    assert "None" not in plan
    assert "Kubernetes" not in plan


# Talos 1.14 runs etcd 3.7 where 1.13 ran 3.6 (stacks.releases.ETCD, DefaultEtcdVersion): the roll to it moves etcd's
# minor, and the plan says so, with the snapshot before it and the one-member-at-a-time order (#57).
ETCD_MOVE = (
    "Arda: etcd v3.6.12 -> v3.7.1 with Talos v1.14.1 (its default etcd, a new minor): after the etcd snapshot above, one control "
    "plane at a time (the first one's step also saves .iluvatar/snapshots/arda-etcd-before-rollout.db before it changes), every etcd "
    "member healthy before the next goes down; the members run v3.6.12 and v3.7.1 side by side meanwhile, the cluster at v3.6 until "
    "the last has rolled"
)


def test_the_roll_that_moves_etcds_minor_says_so_with_its_snapshot_first() -> None:
    before, after = current(), current()
    before["talosVersion"] = "v1.13.9"
    for node in before["nodes"].values():
        node["installer"] = f"{IMAGE}:v1.13.9"
    for node in after["nodes"].values():
        node["installer"] = f"{IMAGE}:v1.14.1"
    machines = ["taniquetil", "tirion", "alqualonde", "gandalf", "saruman"]
    # One minor from its newest patch: no path, the machines' own steps move etcd, the first control plane's snapshot first.
    assert rollout.describe(before, after).splitlines() == [
        # components.arda's first step for such a run (_snapshot_first), kept: the last state etcd 3.6 wrote.
        "Arda: first an etcd snapshot from the first control plane to .iluvatar/snapshots/arda-etcd-before-talos-v1.13.9-kubernetes-v1.35.1.db, "
        "before any step changes the cluster",
        ETCD_MOVE,
        "Arda: 5 machine(s) change, one at a time in this order, each checked healthy before the next (an upgrade, or a change Talos must "
        "reboot for, drains and reboots its machine):",
        *(f"  {i}. {m}: Talos v1.13.9 -> v1.14.1" for i, m in enumerate(machines, 1)),
    ]
    # From an older 1.13 patch (etcd v3.6.9, which etcd's guide says may not roll to 3.7: 3.6.11 or later first), the path
    # goes through v1.13.9 first, and etcd moves from that roll's v3.6.12.
    before["talosVersion"] = "v1.13.0"
    assert ETCD_MOVE in rollout.describe(before, after).splitlines()
    # Within 3.6 (Talos 1.12 to 1.13: v3.6.7 -> v3.6.12): a patch of etcd, no such line.
    before["talosVersion"] = "v1.12.4"
    for node in after["nodes"].values():
        node["installer"] = f"{IMAGE}:v1.13.9"
    after["talosVersion"] = "v1.13.9"
    assert rollout.describe_etcd(before, after) == []
    assert "etcd v" not in rollout.describe(before, after)


def test_a_talos_two_minors_ahead_reads_as_a_path_of_rolls_machine_by_machine() -> None:
    before, after = current(), current()
    before["talosVersion"] = "v1.12.4"
    for node in after["nodes"].values():
        node["installer"] = f"{IMAGE}:v1.14.1"
    # A machine new in this run installs from maintenance mode: no roll for it.
    after["order"].append("lorien")
    after["nodes"]["lorien"] = {**after["nodes"]["saruman"], "mac": "02:00:00:00:00:42", "ip": "192.168.0.99"}
    assert rollout.path_rolls(before, after) == ["v1.12.11", "v1.13.9"]
    machines = ["taniquetil", "tirion", "alqualonde", "gandalf", "saruman"]
    assert rollout.describe(before, after).splitlines() == [
        # Before the path's first step, when the snapshot is taken (review M2), named by what ran.
        "Arda: first an etcd snapshot from the first control plane to .iluvatar/snapshots/arda-etcd-before-talos-v1.12.4-kubernetes-v1.35.1.db, "
        "before any step changes the cluster",
        "Arda: Talos v1.12.4 -> v1.14.1 is a path of 3 rolls, one minor at a time from each minor's newest patch (Talos migrates a machine "
        "between adjacent minors' latest patches only), every machine rolled and checked healthy before the next, each roll done on every "
        "machine before the next begins:",
        "  roll 1 of 3: Talos v1.12.11 (the newest patch of the minor that runs, where Talos's path starts), 5 machine(s):",
        *(f"    {i}. {m}: Talos -> v1.12.11" for i, m in enumerate(machines, 1)),
        "  roll 2 of 3: Talos v1.13.9 (its minor's newest release), 5 machine(s):",
        *(f"    {i}. {m}: Talos -> v1.13.9" for i, m in enumerate(machines, 1)),
        "  roll 3 of 3: Talos v1.14.1, with each machine's own step below",
        ETCD_MOVE,
        "Arda: 6 machine(s) change, one at a time in this order, each checked healthy before the next (an upgrade, or a change Talos must "
        "reboot for, drains and reboots its machine):",
        *(f"  {i}. {m}: Talos v1.13.9 (after the path's rolls) -> v1.14.1" for i, m in enumerate(machines, 1)),
        "  6. lorien: new: installs from maintenance mode",
    ]
    # One minor ahead from the minor's newest patch: no rolls before the machines' own steps; from an older patch, that patch first.
    before["talosVersion"] = "v1.13.9"
    assert rollout.path_rolls(before, after) == []
    before["talosVersion"] = "v1.13.0"
    assert rollout.path_rolls(before, after) == ["v1.13.9"]
    # A Kubernetes the stack asks for past where the path's Kubernetes steps end (refused at preview): no path.
    before["talosVersion"], before["kubernetesVersion"] = "v1.12.4", "v1.30.1"
    assert rollout.path_hops(before, after) == []


def test_a_path_that_needs_kubernetes_on_the_way_lists_each_upgrade_before_the_roll_that_needs_it() -> None:
    before, after = current(), current()
    before["talosVersion"], before["kubernetesVersion"] = "v1.12.11", "v1.30.1"  # the newest 1.12 patch: no roll within it
    after["kubernetesVersion"] = "v1.32.4"
    for node in after["nodes"].values():
        node["installer"] = f"{IMAGE}:v1.14.1"
    assert [str(h) for h in rollout.path_hops(before, after)] == ["Kubernetes v1.31.14", "Talos v1.13.9", "Kubernetes v1.32.4", "Talos v1.14.1"]
    assert (rollout.path_rolls(before, after), rollout.path_kubernetes(before, after)) == (["v1.13.9"], ["v1.31.14", "v1.32.4"])
    machines = ["taniquetil", "tirion", "alqualonde", "gandalf", "saruman"]
    upgrade = (
        "after its preflight, component by component over 5 machine(s): the API servers, controller-managers and schedulers one "
        "control plane at a time, then every kubelet, each running before the next changes"
    )
    assert rollout.describe(before, after).splitlines() == [
        "Arda: first an etcd snapshot from the first control plane to .iluvatar/snapshots/arda-etcd-before-talos-v1.12.11-kubernetes-v1.30.1.db, "
        "before any step changes the cluster",
        "Arda: Talos v1.12.11 -> v1.14.1 is a path of 2 rolls, one minor at a time from each minor's newest patch (Talos migrates a machine "
        "between adjacent minors' latest patches only), every machine rolled and checked healthy before the next, each roll done on every "
        "machine before the next begins; Kubernetes v1.30.1 -> v1.32.4 on the way, one minor at a time, each before the roll of the Talos minor that needs it:",
        f"  Kubernetes v1.31.14 first (Talos v1.13 runs Kubernetes 1.31 and later), {upgrade}",
        "  roll 1 of 2: Talos v1.13.9 (its minor's newest release), 5 machine(s):",
        *(f"    {i}. {m}: Talos -> v1.13.9" for i, m in enumerate(machines, 1)),
        f"  Kubernetes v1.32.4 first (Talos v1.14 runs Kubernetes 1.32 and later), {upgrade}",
        "  roll 2 of 2: Talos v1.14.1, with each machine's own step below",
        ETCD_MOVE,
        "Arda: 5 machine(s) change, one at a time in this order, each checked healthy before the next (an upgrade, or a change Talos must "
        "reboot for, drains and reboots its machine):",
        # The Kubernetes part of each machine's config is done by the path's steps: its own step is the Talos upgrade.
        *(f"  {i}. {m}: Talos v1.13.9 (after the path's rolls) -> v1.14.1" for i, m in enumerate(machines, 1)),
    ]
    # One Talos minor that needs Kubernetes first: a path of one roll, the Kubernetes step before it.
    after["talosVersion"], after["kubernetesVersion"] = "v1.13.9", "v1.31.2"
    assert [str(h) for h in rollout.path_hops(before, after)] == ["Kubernetes v1.31.2", "Talos v1.13.9"]
    assert rollout.describe_path(before, after)[:2] == [
        "Arda: Talos v1.12.11 -> v1.13.9 is a path of 1 roll, one minor at a time from each minor's newest patch (Talos migrates a machine "
        "between adjacent minors' latest patches only), every machine rolled and checked healthy before the next, each roll done on every "
        "machine before the next begins; Kubernetes v1.30.1 -> v1.31.2 on the way, one minor at a time, each before the roll of the Talos minor that needs it:",
        f"  Kubernetes v1.31.2 first (Talos v1.13 runs Kubernetes 1.31 and later), {upgrade}",
    ]


def test_a_half_done_upgrade_lists_only_the_machines_still_behind() -> None:
    before, after = current(), current()
    for node in after["nodes"].values():
        node["installer"] = f"{IMAGE}:v1.13.0"
    before["nodes"]["taniquetil"]["installer"] = f"{IMAGE}:v1.13.0"
    assert [c.node for c in rollout.changes(before, after)] == ["tirion", "alqualonde", "gandalf", "saruman"]


def test_kubernetes_config_address_schematic_new_and_removed_machines() -> None:
    before, after = current(), current()
    after["kubernetesVersion"] = "v1.36.0"
    assert {c.what for c in rollout.changes(before, after)} == {("Kubernetes v1.35.1 -> v1.36.0",)}
    after = current()
    after["nodes"]["saruman"]["patches"] = "d2"
    after["nodes"]["tirion"]["ip"] = "192.168.0.42"
    after["nodes"]["gandalf"]["installer"] = "factory.talos.dev/metal-installer/def:v1.12.4"
    assert [(c.node, c.what, c.disruptive) for c in rollout.changes(before, after)] == [
        ("tirion", ("address 192.168.0.22 -> 192.168.0.42",), False),
        ("gandalf", ("Talos schematic (extensions, kernel arguments): an upgrade to its new installer",), True),
        ("saruman", ("machine config (a reboot only if Talos needs one for it)",), False),
    ]
    shrunk, grown = copy.deepcopy(before), copy.deepcopy(before)
    del shrunk["nodes"]["saruman"]
    shrunk["order"].remove("saruman")
    assert rollout.describe(before, shrunk) == "Arda: leaving the inventory: saruman\n"
    assert [c.what for c in rollout.changes(shrunk, grown)] == [("new: installs from maintenance mode",)]


def test_the_plan_reads_as_numbered_lines() -> None:
    before, after = current(), current()
    for node in after["nodes"].values():
        node["installer"] = f"{IMAGE}:v1.12.5"
    assert rollout.describe(before, after).splitlines() == [
        "Arda: 5 machine(s) change, one at a time in this order, each checked healthy before the next (an upgrade, or a change Talos must reboot for, drains and reboots its machine):",
        "  1. taniquetil: Talos v1.12.4 -> v1.12.5",
        "  2. tirion: Talos v1.12.4 -> v1.12.5",
        "  3. alqualonde: Talos v1.12.4 -> v1.12.5",
        "  4. gandalf: Talos v1.12.4 -> v1.12.5",
        "  5. saruman: Talos v1.12.4 -> v1.12.5",
    ]


def test_the_client_certificates_end_is_read_as_the_talos_provider_reads_it() -> None:
    """The expiry each `up` exports is the NotAfter the provider's ModifyPlan decodes (tests/talos_provider.py, its port,
    through OpenSSL), and the renewal the plan foresees is the provider's own rule, to the second."""
    expires = rollout.certificate_expiry(MOCK_CLIENT_CERTIFICATE)
    not_after = talos_provider.client_certificate_not_after(MOCK_CLIENT_CERTIFICATE, "client certificate", "failed to parse PEM block")
    assert expires == not_after.strftime("%Y-%m-%dT%H:%M:%SZ") == "2027-11-25T12:07:33Z"
    # A month before, to the second: Go's AddDate(0, 1, 0), and January 31 + 1 month = March 3 (2, in a leap year).
    for now in (
        datetime.datetime(2027, 10, 25, 12, 7, 33, tzinfo=datetime.UTC),
        datetime.datetime(2027, 10, 25, 12, 7, 34, tzinfo=datetime.UTC),
        datetime.datetime(2027, 10, 24, tzinfo=datetime.UTC),
        datetime.datetime(2027, 11, 30, tzinfo=datetime.UTC),
    ):
        assert rollout.renewal_due(str(expires), now) == talos_provider.talos_client_needs_renewal(MOCK_CLIENT_CERTIFICATE, now)
    assert [rollout.renewal_due(str(expires), datetime.datetime(2027, 10, 25, 12, 7, s, tzinfo=datetime.UTC)) for s in (33, 34)] == [False, True]
    assert rollout.add_month(datetime.datetime(2027, 1, 31, tzinfo=datetime.UTC)) == datetime.datetime(2027, 3, 3, tzinfo=datetime.UTC)
    assert rollout.add_month(datetime.datetime(2028, 1, 31, tzinfo=datetime.UTC)) == datetime.datetime(2028, 3, 2, tzinfo=datetime.UTC)
    # Offline the certificate is a placeholder, or not one at all: no expiry, so nothing is foreseen.
    assert [rollout.certificate_expiry(t) for t in ("[secret]", "", base64.b64encode(b"not a certificate").decode())] == [None, None, None]


# The provider's rule as Go computes it (talos_machine_secrets_resource.go:373, time.Now at :41): the time given stands for
# time.Now(), which is in time.Local (`.Local()`); the month is added there. Run by the project's Go, with the case's TZ.
GO_RULE = """package main

import (
	"fmt"
	"os"
	"time"
)

func main() {
	now, _ := time.Parse(time.RFC3339, os.Args[1])
	notAfter, _ := time.Parse(time.RFC3339, os.Args[2])
	fmt.Println(notAfter.Before(now.Local().AddDate(0, 1, 0)))
}
"""


def go_rule(tmp_path: Path, tz: str | None, now: datetime.datetime, expires: str) -> bool:
    (tmp_path / "rule.go").write_text(GO_RULE)
    env = {k: v for k, v in {**os.environ, **golang.go_env()}.items() if k != "TZ"}
    if tz is not None:
        env["TZ"] = tz
    result = subprocess.run(
        [golang.go_binary(), "run", "rule.go", now.strftime("%Y-%m-%dT%H:%M:%SZ"), expires],
        cwd=tmp_path,
        env={**env, "GO111MODULE": "off"},
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return {"true": True, "false": False}[result.stdout.strip()]


@pytest.mark.parametrize(
    ("tz", "now", "expires", "due"),
    [
        # 23:30 UTC on January 31 is February 1 in Paris: a month later is March 1 there (February 28, 23:30 UTC), where
        # UTC's calendar gives March 3 (31 + 1 month, normalised): a certificate ending on March 2 is not due yet.
        ("Europe/Paris", datetime.datetime(2027, 1, 31, 23, 30, tzinfo=datetime.UTC), "2027-03-02T00:00:00Z", False),
        (None, datetime.datetime(2027, 1, 31, 23, 30, tzinfo=datetime.UTC), "2027-03-02T00:00:00Z", True),  # /etc/localtime: UTC here
        ("", datetime.datetime(2027, 1, 31, 23, 30, tzinfo=datetime.UTC), "2027-03-02T00:00:00Z", True),  # TZ empty: UTC
        # Across the spring change: noon in Paris on March 10 (UTC+1) plus a month is noon on April 10 (UTC+2), 10:00 UTC.
        ("Europe/Paris", datetime.datetime(2027, 3, 10, 11, tzinfo=datetime.UTC), "2027-04-10T10:30:00Z", False),
        ("UTC", datetime.datetime(2027, 3, 10, 11, tzinfo=datetime.UTC), "2027-04-10T10:30:00Z", True),
        # 07:00 UTC on February 1 is January 31 in Los Angeles: a month later is March 3 there (March 4, 07:00 UTC), where UTC's
        # calendar gives March 1: due there, not in UTC.
        ("America/Los_Angeles", datetime.datetime(2027, 2, 1, 7, tzinfo=datetime.UTC), "2027-03-02T00:00:00Z", True),
        ("UTC", datetime.datetime(2027, 2, 1, 7, tzinfo=datetime.UTC), "2027-03-02T00:00:00Z", False),
    ],
)
def test_the_renewal_is_foreseen_on_the_providers_local_calendar(
    tmp_path: Path, tz: str | None, now: datetime.datetime, expires: str, due: bool
) -> None:
    """The provider adds the month to time.Now() in its local zone (Go's time.Local: $TZ, else /etc/localtime), whose
    calendar moves the threshold by days at a month's end and by an hour across a change of the clocks; the plan does
    the same, and Go itself agrees."""
    zone = rollout.local_zone({} if tz is None else {"TZ": tz})
    assert rollout.renewal_due(expires, now, zone) is due
    assert go_rule(tmp_path, tz, now, expires) is due


def test_the_local_zone_is_gos() -> None:
    """initLocal's cases (Go 1.26 src/time/zoneinfo_unix.go:28-68)."""
    assert str(rollout.local_zone({"TZ": ""})) == "UTC"
    assert str(rollout.local_zone({"TZ": "UTC"})) == "UTC"
    assert str(rollout.local_zone({"TZ": "Nowhere/Atlantis"})) == "UTC"  # a zone it cannot load
    assert str(rollout.local_zone({"TZ": ":Europe/Paris"})) == "Europe/Paris"
    assert str(rollout.local_zone({"TZ": "/usr/share/zoneinfo/Europe/Paris"})) == "/usr/share/zoneinfo/Europe/Paris"
    assert str(rollout.local_zone({})) == "Local"  # /etc/localtime


def test_the_talosconfig_changes_for_a_control_planes_address_or_the_renewal() -> None:
    before, after = current(), current()
    assert rollout.talosconfig_changes(before, after) == []
    # An output from before `endpoints` was exported: the control planes' addresses stand in, as a set: the engine gives
    # the `nodes` map back in no particular order (a protobuf Struct), here the reverse of the rollout order.
    del before["endpoints"]
    before["nodes"] = dict(reversed(list(before["nodes"].items())))
    assert rollout.talosconfig_changes(before, after) == []
    after["endpoints"] = ["192.168.0.21", "192.168.0.22"]
    assert rollout.talosconfig_changes(before, after) == [
        "its endpoints, the control planes' addresses, change from 192.168.0.21, 192.168.0.22, 192.168.0.23 to 192.168.0.21, 192.168.0.22"
    ]
    before, after = {**current(), "clientCertificateExpires": "2027-11-25T12:07:33Z"}, current()
    assert rollout.talosconfig_changes(before, after, datetime.datetime(2027, 10, 1, tzinfo=datetime.UTC)) == []
    assert rollout.talosconfig_changes(before, after, datetime.datetime(2027, 11, 1, tzinfo=datetime.UTC)) == [
        "the Talos client certificate expires on 2027-11-25, within a month of 2027-11-01: the Talos provider renews it in this run"
    ]
    # Without the day of the run, nothing can be foreseen.
    assert rollout.talosconfig_changes(before, after) == []


def test_a_kubernetes_upgrade_reads_as_its_component_by_component_step_before_the_machines() -> None:
    before, after = current(), current()
    after["kubernetesVersion"] = "v1.36.0"
    lines = rollout.describe(before, after).splitlines()
    assert lines.pop(0) == (
        "Arda: first an etcd snapshot from the first control plane to .iluvatar/snapshots/arda-etcd-before-talos-v1.14.1-kubernetes-v1.35.1.db, "
        "before any step changes the cluster"
    )
    assert lines[0] == (
        "Arda: Kubernetes v1.35.1 -> v1.36.0 first, component by component: kube-apiserver, then kube-controller-manager, then "
        "kube-scheduler, one control plane at a time, then every kubelet (control planes, then workers), each running before the next changes: "
        "every control plane pod its change restarts (the scheduler's restarts that machine's API server too) up 30 s and the machine's API "
        "server ready"
    )
    assert lines[2:] == [
        f"  {i}. {n}: Kubernetes v1.35.1 -> v1.36.0" for i, n in enumerate(["taniquetil", "tirion", "alqualonde", "gandalf", "saruman"], 1)
    ]


# A netbooted maia is no Longhorn Pi (docs/security.md): its roll waits on no replica; its uncordon taints it.
TAINTED = "tainted iluvatar/boot=netboot:NoExecute and uncordoned"


def test_a_new_pi_image_reads_as_the_roll_of_each_netbooted_maia_and_of_nothing_else() -> None:
    """`pulumi preview`'s Ainur plan for a new `ainur.piImage` (plans.netboot.roll): each netbooting maia, one after the
    other, drained, its boot moved, rebooted, its join and k3s step run on the new root, uncordoned; the valar that boots
    from its card has no step to run."""
    from plans.netboot.pis import image_id
    from tests.plans.test_netboot_pis import netbooting

    before = netbooting()
    assert before.ainur is not None
    image = before.ainur.pi_image.model_copy(update={"release": "24.04.4", "sha256": "4" * 64})
    after = before.model_copy(update={"ainur": before.ainur.model_copy(update={"pi_image": image})})
    order = [n for n in before.ainur_nodes]
    old, new = image_id(before), image_id(after)
    assert old != new
    changes = rollout.ainur_changes(rollout.ainur_state(before, order), rollout.ainur_state(after, order))
    assert [c.node for c in changes] == ["eonwe", "ilmare"]
    for change in changes:
        assert change.what == (
            f"Ubuntu image {old} -> {new}: drained, its boot moved to the new image (pi-boot-{change.node}), rebooted, its join "
            f"waits for its Node Ready as reported by the kubelet of its new boot, its k3s step brings the new root's k3s to the stack's version, {TAINTED}",
        )


def test_a_rerun_of_a_netbooted_maias_drain_reads_as_its_gates_and_uncordon_too() -> None:
    """Review 41-2 H1: a drain or reboot step whose command changed, with no new image, runs the Pi's join, k3s step and
    uncordon after it (their triggers): the preview's Ainur plan says so, once, without listing them as changed steps."""
    from tests.plans.test_netboot_pis import netbooting

    stack = netbooting()
    order = list(stack.ainur_nodes)
    before, after = rollout.ainur_state(stack, order), rollout.ainur_state(stack, order)
    before["commands"] = {**before["commands"], "eonwe-drain": "(an older drain)", "eonwe-join": "(an older join)"}
    changes = rollout.ainur_changes(before, after)
    assert [(c.node, c.what) for c in changes] == [
        (
            "eonwe",
            (
                f"its drain step: {rollout.CHANGED_STEP} (drains it again)",
                "then, as after every run of its drain or reboot step, its join checks its Node Ready as reported by the kubelet of this "
                "boot, its k3s step checks its version, and its uncordon taints it and uncordons it if a drain of Iluvatar's left it cordoned",
            ),
        )
    ]


def test_a_new_cmdline_for_the_netbooted_maiar_reads_as_their_roll_one_pi_at_a_time() -> None:
    """Review 41-2 M2: a change of what each netbooted maia's cmdline.txt carries with its image unchanged (here
    `network.dns`, in its ip= and network-config=) rolls each, one after the other, as a new image does: every step of
    its roll carries its pointer's digest (plans.netboot.pis.pointer_digest); the valar on its card has no step to run."""
    import ipaddress

    from plans.netboot import roll
    from plans.netboot.pis import pointer_digest
    from tests.plans.test_netboot_pis import netbooting, node

    before = netbooting()
    dns = tuple(ipaddress.ip_address(d) for d in ("192.168.0.2", "192.168.0.1"))
    after = before.model_copy(update={"network": before.network.model_copy(update={"dns": dns})})
    for name in ("eonwe", "ilmare"):
        was, now = node(before, name), node(after, name)
        assert pointer_digest(before, was) != pointer_digest(after, now)
        for step in (roll.drain_script, roll.reboot_script, roll.join_script, roll.uncordon_script):
            assert step(before, was) != step(after, now), step.__name__
            assert f"boot pointer {pointer_digest(after, now)}" in step(after, now) or step is roll.reboot_script
    order = list(before.ainur_nodes)
    changes = rollout.ainur_changes(rollout.ainur_state(before, order), rollout.ainur_state(after, order))
    assert [(c.node, c.what) for c in changes] == [
        (
            name,
            (
                f"its boot pointer (pi-boot-{name}) changes, not its image (its cmdline.txt: the network or the NFS "
                "options): drained, its pointer moved, rebooted with it, its join waits for its Node Ready as reported by the kubelet of its "
                f"new boot, its k3s step checks its version, {TAINTED}",
            ),
        )
        for name in ("eonwe", "ilmare")
    ]


def test_a_netbooted_maia_deployed_before_its_host_key_was_pinned_reads_as_its_steps_run_again_pinned() -> None:
    """Review 41-2 M4: the first `up` after the pin reads each netbooted maia's host key and changes the connection of its
    reboot step, join and k3s step (pulumi-command runs a step again when an input changes): the preview says so, once."""
    from tests.plans.test_netboot_pis import netbooting

    stack = netbooting()
    order = list(stack.ainur_nodes)
    before, after = rollout.ainur_state(stack, order), rollout.ainur_state(stack, order)
    before["commands"] = {k: v for k, v in before["commands"].items() if not k.endswith("-host-key")}
    changes = rollout.ainur_changes(before, after)
    assert [(c.node, c.what) for c in changes] == [
        (
            name,
            (
                "its SSH host key is read once (its host-key step) and pinned in the connection of its steps on it: its reboot step (no "
                "reboot if it runs its pointer's image and booted its cmdline.txt; else, gated, it reboots into them), join and k3s step "
                "run again over the pinned connection",
            ),
        )
        for name in ("eonwe", "ilmare")
    ]
    assert rollout.ainur_changes(after, after) == []


def test_a_raised_host_key_read_reads_as_the_key_read_again_and_its_steps_run_again() -> None:
    """Issue 57 (7): `hostKeyRead` raised on a Pi rebuilt with a new key gives its host-key step a new name; the preview's
    Ainur plan says what runs (the new read, then its steps pinned to the key), for that Pi alone, once."""
    from tests.plans.test_netboot_pis import netbooting

    stack = netbooting()
    order = list(stack.ainur_nodes)
    rebuilt = stack.model_copy(update={"nodes": tuple(n.model_copy(update={"host_key_read": 1}) if n.name == "ilmare" else n for n in stack.nodes)})
    before, after = rollout.ainur_state(stack, order), rollout.ainur_state(rebuilt, list(rebuilt.ainur_nodes))
    assert "ilmare-host-key-1" in after["commands"] and "ilmare-host-key" not in after["commands"]
    assert [(c.node, c.what) for c in rollout.ainur_changes(before, after)] == [
        (
            "ilmare",
            (
                "its SSH host key is read again (hostKeyRead: a new host-key step, the old one leaves the state) and pinned in the "
                "connection of its steps on it: its reboot step (no reboot if it runs its pointer's image and booted its cmdline.txt), "
                "join and k3s step run again over the new key",
            ),
        )
    ]
    assert rollout.ainur_changes(after, after) == []


def test_the_plan_names_kube_vips_roll_when_its_template_changes() -> None:
    """The preview says when netboot-kube-vip-roll replaces pods (a change of kube-vip-services' template: its settings,
    kube-vip's pin) and what the household sees; after a deployment that did not record the template, that the step
    runs; nothing when the template is the recorded one, nor at a first bring-up."""
    stack = load_stack_file(HOMELAB)
    order = list(stack.ainur_nodes)
    after = rollout.ainur_state(stack, order)
    assert after["kubeVip"] == vip_roll.template_digest(stack)
    changed = {**after, "kubeVip": "0123456789abcdef"}
    assert rollout.describe_ainur(changed, after) == f"Ainur: {vip_roll.PLAN_LINE}\n"
    assert "the Pi holding the service address last" in vip_roll.PLAN_LINE
    older = {k: v for k, v in after.items() if k != "kubeVip"}
    assert rollout.describe_ainur(older, after) == f"Ainur: {vip_roll.UNRECORDED_LINE}\n"
    assert rollout.describe_ainur(after, rollout.ainur_state(stack, order)) == ""
    assert rollout.describe_ainur(None, after) == ""


def test_a_deployment_whose_maiar_joined_with_the_server_token_reads_as_each_maia_rejoining_with_its_own() -> None:
    """The first `up` after plans.agent_token: each maia (not the valar) re-joins with its own token, one at a time, and
    the plan says why (its config digest leaves the token out, so without it the join's run would go unexplained); the
    next `up` has nothing to say."""
    stack = load_stack_file(HOMELAB)
    order = list(stack.ainur_nodes)
    before, after = rollout.ainur_state(stack, order), rollout.ainur_state(stack, order)
    assert {n: after["nodes"][n]["joinToken"] for n in after["nodes"]} == {"manwe": "server", "eonwe": "agent", "ilmare": "agent"}
    for node in before["nodes"].values():
        del node["joinToken"]  # what a deployment before it recorded: its maiar joined with the server token
    assert [(c.node, c.what) for c in rollout.ainur_changes(before, after)] == [("eonwe", (rollout.REJOIN_OWN,)), ("ilmare", (rollout.REJOIN_OWN,))]
    assert rollout.describe_ainur(before, after) == (
        "Ainur: 2 Pi(s) change, one at a time in this order, each back and healthy before the next:\n"
        f"  1. eonwe: {rollout.REJOIN_OWN}\n  2. ilmare: {rollout.REJOIN_OWN}\n"
    )
    assert "k3s-agent" in rollout.REJOIN_OWN and "bootstrap-token" in rollout.REJOIN_OWN
    assert rollout.ainur_changes(after, rollout.ainur_state(stack, order)) == []


def test_a_new_kubelet_drop_in_reads_as_every_pis_join_restarting_k3s() -> None:
    """The join installs the kubelet's drop-in beside the config and restarts k3s when it changed: a change of the drop-in
    alone reads as every Pi's restart, not as a join that restarts nothing. After a deployment that did not record the
    drop-in, a rewritten join says it may restart (once: the run records it), and an unchanged one says nothing."""
    stack = load_stack_file(HOMELAB)
    order = list(stack.ainur_nodes)
    after = rollout.ainur_state(stack, order)
    assert {n["kubelet"] for n in after["nodes"].values()} == {hashlib.sha256(k3s.kubelet_dropin().encode()).hexdigest()[:16]}
    before = rollout.ainur_state(stack, order)
    for name, node in before["nodes"].items():
        node["kubelet"] = "0123456789abcdef"
        before["commands"][f"{name}-join"] = "(a join with another drop-in)"
    assert [(c.node, c.what) for c in rollout.ainur_changes(before, after)] == [(n, (rollout.KUBELET_CHANGES,)) for n in ("manwe", "eonwe", "ilmare")]
    assert rollout.describe_ainur(before, after).splitlines()[0] == (
        "Ainur: 3 Pi(s) change, one at a time in this order, each back and healthy before the next:"
    )
    for node in before["nodes"].values():
        del node["kubelet"]  # what a deployment before the digest recorded
    assert [(c.node, c.what) for c in rollout.ainur_changes(before, after)] == [
        (n, (rollout.KUBELET_UNRECORDED,)) for n in ("manwe", "eonwe", "ilmare")
    ]
    unchanged = rollout.ainur_state(stack, order)
    for node in unchanged["nodes"].values():
        del node["kubelet"]
    assert rollout.ainur_changes(unchanged, after) == []
    assert rollout.ainur_changes(after, rollout.ainur_state(stack, order)) == []


def test_a_moved_load_balancer_pool_is_said_with_what_moves(tmp_path: Path) -> None:
    """No machine changes when the pool moves, but the gateways and the log store take new addresses, and what holds an
    old one outside the stack (the router's port forwards) reaches nothing: the plan says it, and only then."""
    before = current()
    assert before["pool"] == {
        "range": "192.168.0.220-192.168.0.239",
        "services": {"envoy-external": "192.168.0.239", "envoy-internal": "192.168.0.238", "the log store": "192.168.0.236"},
    }
    doc = edit(homelab_doc(), {"iluvatar:network.loadBalancerPool": {"start": "192.168.0.200", "end": "192.168.0.219"}})
    moved_apps = {"192.168.0.220": "192.168.0.200", "192.168.0.221": "192.168.0.201"}  # the raw-port apps, into the new pool
    for app in doc["config"]["iluvatar:apps"]:
        if "address" in app:
            app["address"] = moved_apps[str(app["address"])]
    stack = load_stack_file(write_stack(tmp_path, doc))
    names = [n.name for n in stack.arda_nodes]
    after = rollout.state(stack, dict.fromkeys(names, f"{IMAGE}:v1.12.4"), dict.fromkeys(names, "d1"))
    assert rollout.pool_moves(before, after, routes=True) == (
        "Arda: network.loadBalancerPool moves 192.168.0.220-192.168.0.239 -> 192.168.0.200-192.168.0.219: envoy-external "
        "192.168.0.239 -> 192.168.0.219, envoy-internal 192.168.0.238 -> 192.168.0.218, the log store 192.168.0.236 -> 192.168.0.216; "
        "Cilium gives the Services their new addresses in this `up`, and the internal zone's records and the remote-access routes to "
        "them follow; anything that holds an old address outside the stack (the router's port forwards to envoy-external, a device's "
        "cached DNS answer, a bookmark by address) reaches nothing until it is changed\n"
    )
    assert rollout.pool_moves(before, before) == ""
    assert rollout.pool_moves({k: v for k, v in before.items() if k != "pool"}, after) == ""  # an output without the record
    assert rollout.plan(before, after).endswith(rollout.pool_moves(before, after))


def test_the_plan_names_every_chart_version_it_changes() -> None:
    """A chart's version change runs no machine's step, but `up` upgrades the chart: the plan names each, from -> to."""
    after = current()
    assert after["charts"] == {"cilium": "1.18.4", "argocd": "10.8.0"}
    before = {**after, "charts": {"cilium": "1.17.9", "argocd": "7.0.0"}}
    assert rollout.plan(before, after) == (
        "Arda: no change on any machine\n"
        "Arda: Cilium's chart 1.17.9 -> 1.18.4 (arda.cilium.version): upgraded in this `up`\n"
        "Arda: Argo CD's chart 7.0.0 -> 10.8.0 (gitops.argocd.version): upgraded in this `up`\n"
    )
    assert rollout.chart_moves(after, after) == ""
    # GitOps new in this run (no Argo CD recorded), or an output without the record: no `from` to say.
    assert rollout.chart_moves({**after, "charts": {"cilium": "1.18.4"}}, after) == ""
    assert rollout.chart_moves({k: v for k, v in after.items() if k != "charts"}, after) == ""
