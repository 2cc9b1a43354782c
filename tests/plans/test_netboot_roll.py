"""The netbooted maiar's roll (plans.netboot.roll): the storage gate after a Longhorn Pi's uncordon, run by bash with a
stand-in kubectl that answers what the API server holds (Longhorn's objects as longhorn-manager v1.10.1 writes them)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from plans.netboot import roll
from tests.plans.test_netboot_pis import netbooting, node

KUBECTL = """#!/bin/sh
# STAND-IN for `sudo k3s kubectl`: the CRD, the Longhorn node and the volumes from $FAKE.
case "$*" in
  *"get crd nodes.longhorn.io"*) cat "$FAKE/crd" ;;
  *"get nodes.longhorn.io"*) cat "$FAKE/node.json" ;;
  *"get volumes.longhorn.io"*) cat "$FAKE/volumes.json" ;;
  *) echo "stand-in kubectl: '$*'" >&2; exit 2 ;;
esac
"""


def disk(ready: str = "True", schedulable: str = "True") -> dict[str, Any]:
    return {"conditions": [{"type": "Ready", "status": ready, "reason": "" if ready == "True" else "DiskNotReady"},
                           {"type": "Schedulable", "status": schedulable, "reason": ""}]}  # fmt: skip


def volume(name: str, robustness: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "status": {"state": "attached", "robustness": robustness}}


def gate(tmp: Path, crd: str, node_json: dict[str, Any], volumes: list[dict[str, Any]]) -> tuple[subprocess.CompletedProcess[str], float]:
    stack = netbooting()
    fake = tmp / "fake"
    (fake / "bin").mkdir(parents=True, exist_ok=True)
    (fake / "bin" / "sudo").write_text('#!/bin/sh\nshift\nexec kubectl "$@"\n')  # `sudo k3s kubectl ...`
    (fake / "bin" / "kubectl").write_text(KUBECTL)
    for name in ("sudo", "kubectl"):
        (fake / "bin" / name).chmod(0o755)
    (fake / "crd").write_text(crd)
    (fake / "node.json").write_text(json.dumps(node_json))
    (fake / "volumes.json").write_text(json.dumps({"items": volumes}))
    script = "set -eu\n" + roll.storage_gate(stack, node(stack, "eonwe"), timeout=0)
    env = {**os.environ, "PATH": f"{fake / 'bin'}:{os.environ['PATH']}", "FAKE": str(fake)}
    started = time.monotonic()
    got = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60, check=False)
    return got, time.monotonic() - started


CRD = "customresourcedefinition.apiextensions.k8s.io/nodes.longhorn.io\n"
WAITED = (
    "waited 0 s for eonwe's Longhorn disks Ready and Schedulable and no Longhorn volume degraded (its replicas rebuilt), before the next Pi; still: "
)


def test_a_longhorn_pis_uncordon_ends_on_its_disks_ready_and_no_volume_degraded(tmp_path: Path) -> None:
    """Review 41-2 M3: the next Pi is drained only once this one's replicas are back: its Longhorn disks Ready and
    Schedulable (the NVMe mounted on the new root) and no volume degraded; each failing state fails within the bound,
    saying which disk or volume."""
    healthy = {"status": {"diskStatus": {"nvme": disk()}}}
    got, _ = gate(tmp_path, CRD, healthy, [volume("pi-roots", "healthy"), volume("idle", "unknown")])
    assert got.returncode == 0, got.stderr
    assert got.stderr == "iluvatar: eonwe's Longhorn disks are Ready and Schedulable and no Longhorn volume is degraded\n"
    got, took = gate(tmp_path, CRD, healthy, [volume("pi-roots", "degraded"), volume("git", "degraded"), volume("ok", "healthy")])
    assert got.returncode == 1 and took < 30, got.stderr
    assert WAITED + "Longhorn volume(s) git, pi-roots degraded (replicas rebuilding)" in got.stderr
    got, _ = gate(tmp_path, CRD, {"status": {"diskStatus": {"nvme": disk(ready="False")}}}, [])
    assert got.returncode == 1 and WAITED + "its Longhorn disk nvme is not Ready (DiskNotReady)" in got.stderr
    got, _ = gate(tmp_path, CRD, {"status": {"diskStatus": {"nvme": disk(schedulable="False")}}}, [])
    assert got.returncode == 1 and WAITED + "its Longhorn disk nvme is not Schedulable (False)" in got.stderr
    got, _ = gate(tmp_path, CRD, {"status": {"diskStatus": {}}}, [])
    assert got.returncode == 1 and WAITED + "its Longhorn node has no disk" in got.stderr


def test_before_longhorn_is_installed_the_storage_gate_waits_for_nothing(tmp_path: Path) -> None:
    got, _ = gate(tmp_path, "", {}, [])
    assert (got.returncode, got.stderr) == (0, "iluvatar: Longhorn is not installed yet: no storage to wait for\n")


def test_the_uncordon_step_runs_the_storage_gate_after_the_uncordon_and_only_for_a_longhorn_pi() -> None:
    stack = netbooting()
    eonwe = node(stack, "eonwe")
    script = roll.uncordon_script(stack, eonwe)
    gate_text = roll.storage_gate(stack, eonwe)
    assert gate_text and script.endswith("fi\n" + gate_text)
    assert script.index("uncordon eonwe") < script.index(gate_text)
    no_disk = netbooting(eonwe={"dataDisks": []})
    assert roll.storage_gate(no_disk, node(no_disk, "eonwe")) == ""
