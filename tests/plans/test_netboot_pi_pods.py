"""The netbooted roots' placement wait (plans.netboot.pi_pods.placed_wait_script, review 41-6 M4), run by sh with a
stand-in `sudo k3s kubectl` that answers what the API server holds: pi-nfs's Deployment, the claim, and Longhorn's
Volume and Nodes as longhorn-manager v1.10.1 writes them (status.conditions, spec.tags). tests/kube/test_pi_roots.py
runs the same script against the real API server."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from plans.netboot import pi_pods
from tests.plans.test_netboot_pis import netbooting, node

KUBECTL = """#!/bin/sh
# STAND-IN for `sudo k3s kubectl`: pi-nfs's claims, the claim's volume name, the Volume and the Longhorn Nodes from $FAKE;
# a warning on stderr with each, as an API server's deprecation warning comes (it must not reach what is read). Each
# call is recorded in $FAKE/calls, so a test counts the wait's polls.
echo "$*" >>"$FAKE/calls"
case "$*" in
  *"get deployment pi-nfs"*) echo "Warning: a warning" >&2; cat "$FAKE/mounted" ;;
  *"get pvc pi-root-ilmare"*) echo "Warning: a warning" >&2; cat "$FAKE/volume-name" ;;
  *"get volumes.longhorn.io pvc-1"*) echo "Warning: a warning" >&2; cat "$FAKE/volume.json" ;;
  *"get nodes.longhorn.io -o json"*) echo "Warning: a warning" >&2; cat "$FAKE/nodes.json" ;;
  *"get replicas.longhorn.io -o json"*) echo "Warning: a warning" >&2; cat "$FAKE/replicas.json" ;;
  *) echo "stand-in kubectl: '$*'" >&2; exit 2 ;;
esac
"""


def scheduled(status: str, reason: str = "", message: str = "") -> dict[str, Any]:
    """A volumes.longhorn.io with its Scheduled condition as reconcileVolumeCondition sets it (v1beta2: a list)."""
    return {"metadata": {"name": "pvc-1"}, "status": {"conditions": [{"type": "Scheduled", "status": status, "reason": reason, "message": message}]}}


def longhorn_node(name: str, tags: list[str] | None) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"tags": tags}}


def wait(
    tmp: Path,
    volume: dict[str, Any] | None,
    nodes: list[dict[str, Any]],
    mounted: str = "pi-boots pi-root-eonwe",
    volume_name: str = "pvc-1",
    replicas: tuple[tuple[str, str], ...] = (("pvc-1", "manwe"),),
) -> tuple[subprocess.CompletedProcess[str], int]:
    """The wait for ilmare's claim, and how many times it read the Volume (its polls); `replicas`: (volume, node) of each
    of Longhorn's replicas."""
    stack = netbooting()
    fake = tmp / "fake"
    (fake / "bin").mkdir(parents=True, exist_ok=True)
    (fake / "bin" / "sudo").write_text('#!/bin/sh\nshift\nexec kubectl "$@"\n')  # `sudo k3s kubectl ...`
    (fake / "bin" / "kubectl").write_text(KUBECTL)
    for name in ("sudo", "kubectl"):
        (fake / "bin" / name).chmod(0o755)
    (fake / "calls").write_text("")
    (fake / "mounted").write_text(mounted)
    (fake / "volume-name").write_text(volume_name)
    (fake / "volume.json").write_text(json.dumps(volume or {}))
    (fake / "nodes.json").write_text(json.dumps({"items": nodes}))
    items = [{"metadata": {"name": f"{v}-r-{i}"}, "spec": {"volumeName": v, "nodeID": n}} for i, (v, n) in enumerate(replicas)]
    (fake / "replicas.json").write_text(json.dumps({"items": items}))
    script = pi_pods.placed_wait_script(stack, node(stack, "ilmare"), timeout=0)
    env = {**os.environ, "PATH": f"{fake / 'bin'}:{os.environ['PATH']}", "FAKE": str(fake)}
    # 60 s only stops a wait that never gives up (its bound here is 0 s): it raises, and the test fails.
    got = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=60, check=False)
    return got, sum(1 for call in (fake / "calls").read_text().splitlines() if " get volumes.longhorn.io pvc-1 " in f" {call} ")


LOOK = "; look with: sudo k3s kubectl -n longhorn-system get volumes.longhorn.io,replicas.longhorn.io,nodes.longhorn.io -o wide\n"
WAITED = (
    "waited 0 s for Longhorn to place the copies of pi-root-ilmare's volume (its condition Scheduled True) on Pis tagged "
    "pi-root, before pi-nfs moves onto it: pi-root-ilmare's volume "
)


def test_a_new_root_volume_is_waited_on_until_longhorn_reports_it_scheduled(tmp_path: Path) -> None:
    """Review 41-6 M4: pi-nfs moves onto a new root volume only once Longhorn has placed its copies, so the running
    server keeps serving every maia when they cannot be placed."""
    got, _ = wait(tmp_path, scheduled("True"), [longhorn_node("manwe", ["pi-root"])])
    assert (got.returncode, got.stderr) == (0, "iluvatar: Longhorn placed the copies of pi-root-ilmare's volume pvc-1\n"), got.stderr


def test_a_netbooting_pi_still_tagged_pi_root_is_named_with_the_command_that_untags_it(tmp_path: Path) -> None:
    """Review 41-6 L2: Longhorn never removes a tag, so a card Pi turned netbooting (its claim new, so its wait runs)
    keeps pi-root and copies of the roots may land on its disk: said once placed, with the patch that keeps its other
    tags; the wait still passes (the copies are placed)."""
    nodes = [longhorn_node("manwe", ["pi-root"]), longhorn_node("eonwe", ["ssd", "pi-root"]), longhorn_node("ilmare", None)]
    got, _ = wait(tmp_path, scheduled("True"), nodes)
    assert (got.returncode, got.stderr) == (
        0,
        "iluvatar: Longhorn placed the copies of pi-root-ilmare's volume pvc-1\n"
        "iluvatar: WARNING: eonwe netboots and its Longhorn node is still tagged pi-root, so copies of the roots may land on "
        "its disk; remove the tag with: sudo k3s kubectl -n longhorn-system patch nodes.longhorn.io eonwe --type merge -p "
        """'{"spec":{"tags":["ssd"]}}' (docs/layers/ainur.md)\n""",
    ), got.stderr


def test_a_volume_that_cannot_be_placed_fails_the_wait_naming_the_untagged_card_pi_and_the_command_that_tags_it(tmp_path: Path) -> None:
    """On timeout: the claim, its volume, Longhorn's reason and message, and manwe (the card Pi with a data disk) whose
    Longhorn Node lacks the tag, with the exact patch that keeps its other tag; pi-nfs was not touched."""
    unplaced = scheduled("False", "ReplicaSchedulingFailure", "precheck new replica failed: no matching node")
    got, polls = wait(tmp_path, unplaced, [longhorn_node("manwe", ["ssd"]), longhorn_node("eonwe", None)])
    # Its 0 s bound: one read of the Volume, then it gives up, saying it waited 0 s (below).
    assert (got.returncode, polls) == (1, 1), got.stderr
    assert got.stderr.endswith(
        "iluvatar: "
        + os.uname().nodename
        + ": "
        + WAITED
        + "pvc-1: its condition Scheduled is False (ReplicaSchedulingFailure: precheck new replica failed: no matching node); "
        "manwe is not tagged pi-root (its tags: ['ssd']); tag it with: sudo k3s kubectl -n longhorn-system patch "
        """nodes.longhorn.io manwe --type merge -p '{"spec":{"tags":["ssd","pi-root"]}}'; pi-nfs still serves every maia from """
        "its old volumes" + LOOK
    ), got.stderr
    # No Longhorn Node for the card Pi yet; then every holder tagged, so the cause is elsewhere (a full disk).
    got, _ = wait(tmp_path, scheduled("False", "ReplicaSchedulingFailure"), [])
    assert "manwe has no Longhorn node yet (is longhorn-manager running on it?)" in got.stderr, got.stderr
    got, _ = wait(tmp_path, {"metadata": {"name": "pvc-1"}, "status": {}}, [longhorn_node("manwe", ["pi-root"])])
    assert (
        "pvc-1: Longhorn has not reported its condition Scheduled yet; every Pi meant to hold a copy (manwe) is tagged pi-root: "
        "look for a full or unschedulable disk; " in got.stderr
    ), got.stderr
    # A claim not bound yet.
    got, _ = wait(tmp_path, None, [longhorn_node("manwe", ["pi-root"])], volume_name="")
    assert WAITED + "(none yet): pi-root-ilmare is not bound to a volume yet; " in got.stderr, got.stderr


def test_a_volume_the_running_pi_nfs_serves_already_is_not_waited_on(tmp_path: Path) -> None:
    """Review 41-10 H1 and the brief: an existing volume (a failover with a dead card Pi can leave it Scheduled False) never
    stalls `up`: the running pi-nfs mounts the claim, so it is no new volume."""
    got, _ = wait(tmp_path, scheduled("False", "ReplicaSchedulingFailure"), [], mounted="pi-boots pi-root-eonwe pi-root-ilmare")
    assert (got.returncode, got.stderr) == (0, "iluvatar: pi-root-ilmare is served by the running pi-nfs already: no new volume to wait for\n")
    # A claim whose name only starts like this one's is another claim.
    got, _ = wait(tmp_path, scheduled("False"), [], mounted="pi-root-ilmare2")
    assert got.returncode == 1, got.stderr


def test_the_placement_waits_text() -> None:
    """The script's fixed parts, exactly: the k3s kubectl it reads with, the bound, the claim and the message."""
    stack = netbooting()
    script = pi_pods.placed_wait_script(stack, node(stack, "ilmare"))
    assert script.startswith(
        "set -eu\n# iluvatar: once, before pi-nfs moves onto pi-root-ilmare: Longhorn has placed its volume's copies (plans.netboot.pi_pods).\n"
    )
    assert (
        "  mounted=$(sudo k3s kubectl --request-timeout=10s -n netboot get deployment pi-nfs --ignore-not-found -o "
        "jsonpath='{.spec.template.spec.volumes[*].persistentVolumeClaim.claimName}' 2>\"$errors\")"
    ) in script
    assert "end=$(( $(date +%s) + 600 ))\n" in script and "  sleep 2\n" in script
    assert " pi-root manwe 2>&1) || untagged=" in script
    assert pi_pods.placed_wait_message(stack) == (
        "each new root volume (pi-root-eonwe, pi-root-ilmare) is waited on once, up to 10 minutes, until Longhorn has placed "
        "its copies on Pis tagged pi-root, before pi-nfs moves onto it; a volume the running pi-nfs already serves is not waited on"
    )


def test_a_copy_of_a_new_root_volume_on_a_pi_that_netboots_fails_the_wait_before_pi_nfs_moves(tmp_path: Path) -> None:
    """Review 41-14 H1: eonwe, turned netbooting, keeps its pi-root tag (Longhorn never removes one) and Longhorn put a
    copy of ilmare's new volume on its disk: refused before pi-nfs moves, naming the replica and what to do, with the
    patch that takes the tag off. Copies of other volumes there are not this wait's."""
    nodes = [longhorn_node("manwe", ["pi-root"]), longhorn_node("eonwe", ["pi-root"])]
    replicas = (("pvc-1", "manwe"), ("pvc-1", "eonwe"), ("pvc-9", "ilmare"))
    got, _ = wait(tmp_path, scheduled("True"), nodes, replicas=replicas)
    assert got.returncode == 1
    assert got.stderr == (
        f"iluvatar: {os.uname().nodename}: pi-root-ilmare's volume pvc-1 has a copy on a Pi that netboots (pvc-1-r-1 on eonwe): its root "
        "is served from these volumes, so it must hold none of their copies. pi-nfs still serves every maia from its old volumes. "
        "Take the pi-root tag off that Pi, delete that replica so Longhorn places it on a card Pi (sudo k3s kubectl -n "
        "longhorn-system delete replicas.longhorn.io <replica>), then run pulumi up again. iluvatar: WARNING: eonwe netboots and "
        "its Longhorn node is still tagged pi-root, so copies of the roots may land on its disk; remove the tag with: sudo k3s "
        """kubectl -n longhorn-system patch nodes.longhorn.io eonwe --type merge -p '{"spec":{"tags":[]}}' (docs/layers/ainur.md)\n"""
    )
    assert "Longhorn placed the copies" not in got.stderr
    # Only ilmare's volume on a card Pi, another volume's copy on a maia: placed.
    fine, _ = wait(tmp_path / "fine", scheduled("True"), [longhorn_node("manwe", ["pi-root"])], replicas=(("pvc-1", "manwe"), ("pvc-9", "eonwe")))
    assert (fine.returncode, fine.stderr) == (0, "iluvatar: Longhorn placed the copies of pi-root-ilmare's volume pvc-1\n"), fine.stderr
