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


def probe(tmp: Path, mount: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """The reboot step's export gate (roll.export_gate, bound 1 s, each probe command 2 s) on eonwe, with `mount` as the
    Pi's mount: `sudo` runs the command as given (cloud-init's NOPASSWD rule), `timeout` is coreutils' own."""
    stack = netbooting()
    bin_ = tmp / "probe-bin"
    bin_.mkdir(exist_ok=True)
    for name, text in (("sudo", '#!/bin/sh\nexec "$@"\n'), ("mount", mount), ("umount", "#!/bin/sh\nexit 0\n")):
        (bin_ / name).write_text(text)
        (bin_ / name).chmod(0o755)
    script = "set -eu\n" + roll.export_gate(stack, node(stack, "eonwe"), timeout=1, probe=2)
    started = time.monotonic()
    got = subprocess.run(
        ["bash", "-c", script], env={**os.environ, "PATH": f"{bin_}:{os.environ['PATH']}"}, capture_output=True, text=True, timeout=60, check=False
    )
    return got, time.monotonic() - started


def test_the_export_gates_probe_mount_is_bounded_and_says_what_the_kernel_said(tmp_path: Path) -> None:
    """Review 41-3 M1: the probe mounts `soft` with a short timeo/retrans, not the root's `hard` (a server that stops
    answering fails a read), and each command runs under `timeout -s KILL`, so a mount or a read that never returns
    cannot outlast the gate's bound (the bound is checked between probes only). The kernel's message is in the reason,
    with the cause that matches it, and the place to look is pi-nfs's log, not k3s's journal."""
    stack = netbooting()
    want = roll.image_id(stack)
    export = f"192.168.0.14:/pis/eonwe/{want}"
    assert roll.GATE_MOUNT_OPTIONS == "ro,nolock,vers=3,proto=tcp,port=2049,soft,timeo=50,retrans=2,mountport=627,mountproto=tcp"
    # A mount that never returns (a server that takes the TCP connection and never answers): killed at 2 s, the gate ends.
    hung, seconds = probe(tmp_path, "#!/bin/sh\nexec sleep 600\n")
    assert hung.returncode == 1 and seconds < 15, (seconds, hung.stderr)
    assert f"still: the mount of {export} failed (status 137): no answer within 2 s. " in hung.stderr
    assert hung.stderr.rstrip().endswith("look with (on a valar): sudo k3s kubectl -n netboot logs deployment/pi-nfs")
    assert "journalctl" not in hung.stderr
    # A refusal: the kernel's words, and pi-nfs named as the cause.
    refused, _ = probe(tmp_path, f'#!/bin/sh\necho "mount.nfs: access denied by server while mounting {export}" >&2\nexit 32\n')
    assert refused.returncode == 1
    assert (
        f"still: the mount of {export} failed (status 32): mount.nfs: access denied by server while mounting {export}. Refused "
        f"('access denied', 'No such file'): pi-nfs has no root of {want} for eonwe yet (it makes one once the image is built on the Pi "
        "that serves them; built there and still refused, restart pi-nfs from a valar: sudo k3s kubectl -n netboot rollout restart "
        "deployment pi-nfs). No answer or 'Connection refused': nothing serves NFS at 192.168.0.14 (pi-nfs's pod, kube-vip). Anything "
        "else: the mount itself failed on eonwe; look with"
    ) in refused.stderr
    # Mounted, then the read of the mark never returns (a FIFO stands for a server gone silent): killed, the gate ends.
    stuck, seconds = probe(tmp_path, '#!/bin/sh\nmkdir -p "$7/etc/iluvatar" && mkfifo "$7/etc/iluvatar/pi-image"\n')
    assert stuck.returncode == 1 and seconds < 15, (seconds, stuck.stderr)
    assert f"still: NFS at 192.168.0.14 exports it /pis/eonwe/{want} as a root of a root with no image mark" in stuck.stderr
    # The kernel's options in the probe, the timeout around each command.
    script = roll.export_gate(stack, node(stack, "eonwe"))
    assert f"sudo timeout -s KILL 60 mount -i -t nfs -o {roll.GATE_MOUNT_OPTIONS},addr=192.168.0.14 {export} " in script
