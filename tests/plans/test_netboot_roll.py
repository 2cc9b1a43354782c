"""The netbooted maiar's roll (plans.netboot.roll): its steps' scripts, run by bash with stand-ins for what they call."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

from plans.netboot import pis, roll
from stacks.storage import longhorn_pis
from tests.plans.test_netboot_pis import netbooting, node


def test_a_netbooted_maias_roll_waits_on_no_storage() -> None:
    """A netbooted maia is no Longhorn Pi (its dataDisks are no Longhorn disk: docs/security.md), so its drain takes no
    replica and its uncordon, tainting it, ends the roll of that Pi."""
    stack = netbooting()
    eonwe = node(stack, "eonwe")
    assert eonwe.data_disks and eonwe not in longhorn_pis(stack.nodes)
    script = roll.uncordon_script(stack, eonwe)
    assert "longhorn" not in script.lower()
    assert script.endswith('  echo "iluvatar: eonwe was not cordoned by its move: left as it is" >&2\nfi\n')


def probe(tmp: Path, mount: str) -> subprocess.CompletedProcess[str]:
    """The reboot step's export gate (roll.export_gate, bound 0 s: one probe, each command 1 s) on eonwe, with `mount` as the
    Pi's mount: `sudo` runs the command as given (cloud-init's NOPASSWD rule), `timeout` is coreutils' own. A gate whose
    command is never killed (a mount or read that never returns) holds the script past the run's 60 s timeout, which
    raises: the hang guard, never the assertion; the bound itself is read from the gate's own lines."""
    stack = netbooting()
    bin_ = tmp / "probe-bin"
    bin_.mkdir(exist_ok=True)
    for name, text in (("sudo", '#!/bin/sh\nexec "$@"\n'), ("mount", mount), ("umount", "#!/bin/sh\nexit 0\n")):
        (bin_ / name).write_text(text)
        (bin_ / name).chmod(0o755)
    script = "set -eu\n" + roll.export_gate(stack, node(stack, "eonwe"), timeout=0, probe=1)
    return subprocess.run(
        ["bash", "-c", script], env={**os.environ, "PATH": f"{bin_}:{os.environ['PATH']}"}, capture_output=True, text=True, timeout=60, check=False
    )


def test_the_export_gates_probe_mount_is_bounded_and_says_what_the_kernel_said(tmp_path: Path) -> None:
    """Review 41-3 M1: the probe mounts `soft` with a short timeo/retrans, not the root's `hard` (a server that stops
    answering fails a read), and each command runs under `timeout -s KILL`, so a mount or a read that never returns
    cannot outlast the gate's bound (the bound is checked between probes only). The kernel's message is in the reason,
    with the cause that matches it, and the place to look is pi-nfs's log, not k3s's journal."""
    stack = netbooting()
    want = pis.image_id(stack)
    export = f"192.168.0.14:/pis/eonwe/{want}"
    assert roll.GATE_MOUNT_OPTIONS == "ro,nolock,vers=3,proto=tcp,port=2049,soft,timeo=50,retrans=2,mountport=627,mountproto=tcp"
    # A mount that never returns (a server that takes the TCP connection and never answers): killed at 1 s, the gate ends.
    hung = probe(tmp_path, "#!/bin/sh\nexec sleep 600\n")
    assert hung.returncode == 1, hung.stderr
    assert f"still: the mount of {export} failed (status 137): no answer within 1 s. " in hung.stderr
    assert hung.stderr.rstrip().endswith("look with (on a valar): sudo k3s kubectl -n netboot logs deployment/pi-nfs")
    assert "journalctl" not in hung.stderr
    # A refusal: the kernel's words, and pi-nfs named as the cause.
    refused = probe(tmp_path, f'#!/bin/sh\necho "mount.nfs: access denied by server while mounting {export}" >&2\nexit 32\n')
    assert refused.returncode == 1
    assert (
        f"still: the mount of {export} failed (status 32): mount.nfs: access denied by server while mounting {export}. Refused "
        f"('access denied', 'No such file'): pi-nfs has no root of {want} for eonwe yet (it makes one once the image is built on the Pi "
        "that serves them; built there and still refused, restart pi-nfs from a valar: sudo k3s kubectl -n netboot rollout restart "
        "deployment pi-nfs). No answer or 'Connection refused': nothing serves NFS at 192.168.0.14 (pi-nfs's pod, kube-vip). Anything "
        "else: the mount itself failed on eonwe; look with"
    ) in refused.stderr
    # Mounted, then the read of the mark never returns (a FIFO stands for a server gone silent): killed, the gate ends.
    stuck = probe(tmp_path, '#!/bin/sh\nmkdir -p "$7/etc/iluvatar" && mkfifo "$7/etc/iluvatar/pi-image"\n')
    assert stuck.returncode == 1, stuck.stderr
    assert f"still: NFS at 192.168.0.14 exports it /pis/eonwe/{want} as a root of a root with no image mark" in stuck.stderr
    # The kernel's options in the probe, the timeout around each command.
    script = roll.export_gate(stack, node(stack, "eonwe"))
    assert f"sudo timeout -s KILL 60 mount -i -t nfs -o {roll.GATE_MOUNT_OPTIONS},addr=192.168.0.14 {export} " in script


# --- The join and k3s steps as the program registers them (found by scripts/mutation.py plans.netboot.roll) --------------


def test_the_first_valars_join_rejoins_through_the_server_url_and_a_netbooted_maias_checks_its_image_and_its_boot() -> None:
    """The first valar's join carries the server URL it rejoins through after a reflash (k3s.join_script's `rejoin`);
    a netbooted maia's starts with the image check and ends with the gate on this boot's Node."""
    from plans import k3s

    stack = netbooting()
    manwe, eonwe = node(stack, "manwe"), node(stack, "eonwe")
    # manwe, the one valar, measures the API's outage through its restart (roll.outage).
    assert roll.join_script(stack, manwe) == k3s.join_script(manwe, rejoin=k3s.server_url(stack), outage=roll.outage(stack, manwe))
    assert roll.join_script(stack, manwe) != k3s.join_script(manwe, outage=roll.outage(stack, manwe))
    assert roll.join_script(stack, eonwe) == k3s.join_script(eonwe, check=roll.join_check(stack, eonwe), gate=roll.booted_gate(eonwe))
    check = roll.join_check(stack, eonwe)
    want = pis.image_id(stack)
    assert check.splitlines()[0] == f"# iluvatar: a netbooted root of {want}, boot pointer {pis.pointer_digest(stack, eonwe)} (plans.netboot.roll)."
    assert f'if [ "$have" != {want} ]; then' in check.splitlines()
    assert "its bootloader reads TFTP from 192.168.0.14" in check


def test_the_boot_gate_reads_the_node_with_the_agents_kubeconfig_on_a_maia_and_k3s_own_on_a_valar() -> None:
    from plans import k3s

    stack = netbooting()
    fields = "'{.status.nodeInfo.bootID} {.status.conditions[?(@.type==\"Ready\")].status}'"
    maia = [line for line in roll.booted_gate(node(stack, "eonwe")).splitlines() if "get node" in line]
    valar = [line for line in roll.booted_gate(node(stack, "manwe")).splitlines() if "get node" in line]
    assert maia == [
        f'  got=$(sudo {k3s.KUBECTL} --kubeconfig {k3s.AGENT_KUBECONFIG} get node eonwe -o jsonpath={fields} 2>/dev/null) || {{ why="its Node cannot be read"; return 1; }}'
    ]
    assert valar == [f'  got=$(sudo {k3s.KUBECTL} get node manwe -o jsonpath={fields} 2>/dev/null) || {{ why="its Node cannot be read"; return 1; }}']
    assert roll.booted_gate(node(stack, "eonwe"), node_timeout=7).splitlines()[-1] == (
        'wait_for 7 "its Node Ready, reported by the kubelet of this boot (its new root)" node_booted'
    )


def test_a_netbooted_maias_k3s_step_names_its_image_and_the_first_valars_takes_the_snapshot() -> None:
    """A netbooted maia's k3s step carries its root's image (a new root runs it again); only the first server's takes
    the etcd snapshot before an upgrade."""
    from plans import k3s

    stack = netbooting()
    manwe, eonwe = node(stack, "manwe"), node(stack, "eonwe")
    head = f"# iluvatar: a netbooted root of {pis.image_id(stack)} (plans.netboot.roll).\n"
    assert roll.k3s_script(stack, eonwe) == k3s.upgrade_script(stack, eonwe, snapshot=False, head=head)
    outage = roll.outage(stack, manwe)
    assert roll.k3s_script(stack, manwe) == k3s.upgrade_script(stack, manwe, snapshot=True, head="", outage=outage)
    assert roll.k3s_script(stack, manwe) != k3s.upgrade_script(stack, manwe, snapshot=False, head="", outage=outage)
    assert head in roll.k3s_script(stack, eonwe) and "netbooted root" not in roll.k3s_script(stack, manwe)


# The drain (roll.drain_script), run by bash on "the first valar" with stand-ins: `sudo` runs what it is given, `k3s
# kubectl` answers from $FAKE and writes each call to $FAKE/calls, `timeout` is coreutils' own. The stand-in is the
# API server's answer only; what the script asks and in which order is what these pin.
DRAIN_KUBECTL = """#!/bin/sh
# STAND-IN for `k3s kubectl`: the Node as $FAKE/node says (absent: "", unreadable: exit 1), each call recorded.
shift  # `kubectl`
echo "$*" >> "$FAKE/calls"
case "$*" in
  *"get node eonwe --ignore-not-found -o name")
    [ -f "$FAKE/unreadable" ] && { echo "The connection to the server was refused" >&2; exit 1; }
    [ -f "$FAKE/node" ] && echo node/eonwe; exit 0 ;;
  *"get node eonwe -o jsonpath="*)
    [ -f "$FAKE/unreadable" ] && { echo "The connection to the server was refused" >&2; exit 1; }
    cat "$FAKE/node" ;;
  *"annotate node eonwe iluvatar.dev/cordoned=true --overwrite") echo annotated ;;
  "drain eonwe "*) echo "evicting pod default/web" >&2; exit "$(cat "$FAKE/drain-status" 2>/dev/null || echo 0)" ;;
  *"taint node eonwe iluvatar/boot=netboot:NoExecute --overwrite") echo "node/eonwe modified" ;;
  *"uncordon eonwe") echo "node/eonwe uncordoned" ;;
  *"annotate node eonwe iluvatar.dev/cordoned-") echo annotated ;;
  *) echo "stand-in kubectl: '$*'" >&2; exit 2 ;;
esac
"""


def drain(
    tmp: Path, node_state: str | None, drain_status: int = 0, unreadable: bool = False, step: str = "drain"
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """roll.drain_script for eonwe (bound 5 s), or its uncordon_script (`step`; eonwe with no data disk, so no storage
    gate), with its Node's `.spec.unschedulable` and cordon mark as `node_state` (None: no Node); what it printed, and
    each kubectl call it made."""
    stack = netbooting() if step == "drain" else netbooting(eonwe={"dataDisks": []})
    fake = tmp / "drain"
    (fake / "bin").mkdir(parents=True, exist_ok=True)
    for name, text in (("sudo", '#!/bin/sh\nexec "$@"\n'), ("k3s", DRAIN_KUBECTL)):
        (fake / "bin" / name).write_text(text)
        (fake / "bin" / name).chmod(0o755)
    if node_state is not None:
        (fake / "node").write_text(node_state)
    if unreadable:
        (fake / "unreadable").touch()
    (fake / "drain-status").write_text(str(drain_status))
    eonwe = node(stack, "eonwe")
    script = roll.drain_script(stack, eonwe, timeout=5) if step == "drain" else roll.uncordon_script(stack, eonwe)
    env = {**os.environ, "PATH": f"{fake / 'bin'}:{os.environ['PATH']}", "FAKE": str(fake)}
    got = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60, check=False)
    calls = (fake / "calls").read_text().splitlines() if (fake / "calls").exists() else []
    return got, calls


READ = "--request-timeout=10s get node eonwe --ignore-not-found -o name"
STATE = "--request-timeout=10s get node eonwe -o jsonpath={.spec.unschedulable} {.metadata.annotations.iluvatar\\.dev/cordoned}"
MARK = "--request-timeout=10s annotate node eonwe iluvatar.dev/cordoned=true --overwrite"
DRAIN = "drain eonwe --ignore-daemonsets --delete-emptydir-data --force --grace-period=-1 --timeout=5s"


def test_the_drain_marks_the_node_before_it_cordons_and_drains_it_within_its_bound(tmp_path: Path) -> None:
    """The mark first (a step cut before the drain leaves a Node its uncordon step uncordons), then kubectl drain with
    the pods' own grace periods and its own --timeout, the whole under `timeout` 30 s longer; a new run mark each run."""
    stack = netbooting()
    got, calls = drain(tmp_path, " ")
    assert got.returncode == 0, got.stderr
    assert calls == [READ, STATE, MARK, DRAIN]
    assert got.stdout.startswith("iluvatar: run ") and len(got.stdout.splitlines()[0]) == len("iluvatar: run ") + 36
    assert got.stderr == "evicting pod default/web\n"
    script = roll.drain_script(stack, node(stack, "eonwe"))
    assert f"sudo timeout 630 k3s kubectl {DRAIN[:-2]}600s >&2" in script
    assert script.startswith(f"set -eu\n# iluvatar: eonwe moves to {pis.image_id(stack)}, boot pointer ")
    again, _ = drain(tmp_path / "again", " ")
    assert again.stdout.splitlines()[0] != got.stdout.splitlines()[0]


def test_a_node_cordoned_by_someone_else_is_drained_and_not_marked_so_it_stays_cordoned(tmp_path: Path) -> None:
    got, calls = drain(tmp_path, "true ")
    assert got.returncode == 0, got.stderr
    assert calls == [READ, STATE, DRAIN]
    assert got.stderr.startswith("iluvatar: eonwe was cordoned by someone else: drained, and left cordoned after its move\n")
    # Already marked by an earlier cut run: marked again (idempotent), drained.
    marked, calls = drain(tmp_path / "marked", "true true")
    assert marked.returncode == 0 and calls == [READ, STATE, MARK, DRAIN]


def test_a_pi_with_no_node_yet_is_not_drained(tmp_path: Path) -> None:
    got, calls = drain(tmp_path, None)
    assert (got.returncode, calls) == (0, [READ])
    assert got.stderr == "iluvatar: eonwe has no Node yet (it has not joined): nothing to drain\n"


def test_a_node_that_cannot_be_read_stops_the_roll_with_where_to_look(tmp_path: Path) -> None:
    got, calls = drain(tmp_path, " ", unreadable=True)
    assert (got.returncode, calls) == (1, [READ])
    assert got.stderr.endswith("iluvatar: eonwe's Node cannot be read, so it is not drained; look with: sudo k3s kubectl get node eonwe\n")


def test_a_drain_that_fails_stops_the_roll_naming_its_status_and_the_pods_left(tmp_path: Path) -> None:
    got, calls = drain(tmp_path, " ", drain_status=1)
    assert (got.returncode, calls) == (1, [READ, STATE, MARK, DRAIN])
    assert got.stderr.endswith(
        "iluvatar: eonwe was not drained within 5 s (kubectl drain's status 1; a PodDisruptionBudget that allows no eviction "
        "keeps it so); look with: sudo k3s kubectl get pods -A --field-selector spec.nodeName=eonwe\n"
    )
    # kubectl drain outliving its own --timeout is stopped by `timeout` (status 124), and reported the same way.
    stuck, _ = drain(tmp_path / "stuck", " ", drain_status=124)
    assert stuck.returncode == 1 and "(kubectl drain's status 124;" in stuck.stderr


def test_the_uncordon_uncordons_only_what_the_drain_cordoned_and_then_removes_the_mark(tmp_path: Path) -> None:
    """The mark after the uncordon: a step cut in between is run again and uncordons again. A Node cordoned by
    someone else (no mark) stays cordoned."""
    got, calls = drain(tmp_path, "true true", step="uncordon")
    assert got.returncode == 0, got.stderr
    # Tainted first, whether the roll cordoned it or not (plans.k3s.NETBOOT_TAINT): a maia registered before the taint gets it.
    taint = "--request-timeout=10s taint node eonwe iluvatar/boot=netboot:NoExecute --overwrite"
    assert calls == [STATE, taint, "--request-timeout=10s uncordon eonwe", "--request-timeout=10s annotate node eonwe iluvatar.dev/cordoned-"]
    assert got.stderr == "node/eonwe modified\nnode/eonwe uncordoned\niluvatar: eonwe uncordoned\n"
    theirs, calls = drain(tmp_path / "theirs", "true ", step="uncordon")
    assert (theirs.returncode, calls) == (0, [STATE, taint])
    assert theirs.stderr == "node/eonwe modified\niluvatar: eonwe was not cordoned by its move: left as it is\n"
    unreadable, calls = drain(tmp_path / "unreadable", "true true", unreadable=True, step="uncordon")
    assert (unreadable.returncode, calls) == (1, [STATE])
    assert unreadable.stderr.endswith("iluvatar: eonwe's Node cannot be read, so it is not uncordoned; look with: sudo k3s kubectl get node eonwe\n")


def test_the_reboot_step_compares_what_tftp_serves_with_the_pis_cmdline_txt_at_the_service_address() -> None:
    """What the reboot step waits for before the reboot: TFTP at the service address serving the Pi, under its serial,
    the cmdline.txt the plan renders, compared without its trailing newline (the shell's `$(...)` drops it)."""
    stack = netbooting()
    eonwe = node(stack, "eonwe")
    script = roll.reboot_script(stack, eonwe)
    line = pis.cmdline(stack, eonwe)
    assert line.endswith("\n") and "\n" not in line[:-1]
    assert f"\nexpected={shlex.quote(line[:-1])}\n" in script
    assert (
        '  got=$(curl -sf --max-time 10 tftp://192.168.0.14/9ffefdef/cmdline.txt) || { why="TFTP at 192.168.0.14 does not serve it 9ffefdef/cmdline.txt"; return 1; }'
        in script
    )
    assert '  [ "$got" = "$expected" ] || ' in script


def test_the_reboot_step_passes_its_bound_and_the_expected_words_on() -> None:
    """The reboot step's cmdline check gets the words one per space (each compared whole), its export gate the step's
    own NFS bound."""
    stack = netbooting()
    eonwe = node(stack, "eonwe")
    script = roll.reboot_script(stack, eonwe, nfs_timeout=7)
    words = pis.cmdline_checked_words(stack, eonwe)
    assert f"\nexpected_words={shlex.quote(' '.join(words))}\n" in script and len(words) > 3
    assert roll.export_gate(stack, eonwe, 7) in script and roll.export_gate(stack, eonwe) not in script


# A stand-in for kubectl as the netboot gate calls it: `get deployment/netboot --ignore-not-found -o name` prints
# `deployment.apps/netboot` when it exists, nothing when not, and fails when the API does not answer; `rollout status
# --timeout` returns 0 once the rollout is complete and 1 on its timeout ("timed out waiting for the condition":
# kubectl's pkg/cmd/rollout/rollout_status.go, RolloutStatusOptions.Run, watchtools.UntilWithSync). $STATE: none,
# down, ready or stuck. Each call is logged.
_KUBECTL = """#!/bin/bash
echo "kubectl $*" >> "$LOG"
case "$STATE:$*" in
  down:*) echo "The connection to the server was refused" >&2; exit 1 ;;
  none:*get*) exit 0 ;;
  *:*get*) echo deployment.apps/netboot ;;
  ready:*rollout*) echo 'deployment "netboot" successfully rolled out' ;;
  stuck:*rollout*) echo "error: timed out waiting for the condition" >&2; exit 1 ;;
esac
"""


def _gate(tmp_path: Path, state: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    kubectl = tmp_path / "kubectl"
    kubectl.write_text(_KUBECTL)
    kubectl.chmod(0o755)
    log = tmp_path / "log"
    log.unlink(missing_ok=True)
    script = roll.netboot_ready_script(node(netbooting(), "eonwe"), wait_seconds=7, kubectl=str(kubectl))
    done = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "LOG": str(log), "STATE": state}, timeout=30
    )
    return done, log.read_text().splitlines() if log.exists() else []


def test_after_a_pis_k3s_step_the_chain_waits_for_the_netboot_pod_bounded_and_named(tmp_path: Path) -> None:
    """The household's DHCP and DNS (the netboot pod) available again before the next Pi restarts; a cluster without
    it yet (the first bring-up) has nothing to wait for; a pod not back within the bound, or an API that does not
    answer, fails the step naming what it waited for. Before, the next Pi restarted as soon as this one's Node was Ready."""
    done, calls = _gate(tmp_path, "ready")
    assert (done.returncode, done.stderr) == (0, "iluvatar: the netboot pod (the LAN's DHCP and DNS) is available after eonwe's k3s step\n")
    assert calls == [
        "kubectl -n netboot get deployment/netboot --ignore-not-found -o name",
        "kubectl -n netboot rollout status deployment/netboot --timeout=7s",
    ]
    done, calls = _gate(tmp_path, "none")
    assert (done.returncode, done.stderr) == (
        0,
        "iluvatar: no netboot Deployment yet (it comes after the Pis): nothing to wait for after eonwe's k3s step\n",
    )
    assert len(calls) == 1
    done, _ = _gate(tmp_path, "stuck")
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (
        "iluvatar: waited 7 s after eonwe's k3s step for the netboot pod (the LAN's DHCP and DNS) to be available; "
        "look with: sudo k3s kubectl -n netboot get pods -o wide"
    )
    done, _ = _gate(tmp_path, "down")
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1].startswith("iluvatar: after eonwe's k3s step the Ainur's API does not answer")
    from plans.netboot import objects

    # The Deployment the program makes (plans.netboot.objects), in the namespace the gate asks.
    made = {(o["metadata"]["namespace"], o["metadata"]["name"]) for o in objects.manifests(netbooting(), []) if o["kind"] == "Deployment"}
    assert ("netboot", roll.NETBOOT_DEPLOYMENT) in made
