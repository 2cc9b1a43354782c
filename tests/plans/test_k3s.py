"""k3s on the Ainur: each Pi's whole config.yaml, the kube-vip static pod and the kubeconfig rewrite, pinned.

These are what decide whether the Pis form one cluster (the first server initialises etcd, every other
Pi joins through the VIP), how fast a dead Pi is noticed (the netboot takeover), and who holds the API VIP.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from plans import credentials as credentials_plan
from plans import k3s, rollout
from plans.netboot import roll
from stacks import StackConfig, load_stack_file, parse_stack, read_stack_file
from tests.edit import HOMELAB
from tests.netns import pis
from tests.sims import simulated
from tools import gotools

VIP = "192.168.0.10"


def three_servers() -> StackConfig:
    """The homelab with all three Pis as valar: a three-member etcd."""
    raw = dict(read_stack_file(HOMELAB).config)
    raw["iluvatar:nodes"] = [{**n, "role": "valar"} if n["role"] == "maiar" else n for n in raw["iluvatar:nodes"]]
    # k3s's secrets encryption is refused on several valar (stacks.rules._counts): its HA procedure is not built.
    raw["iluvatar:ainur"] = {**raw["iluvatar:ainur"], "secretsEncryption": False}
    return parse_stack(raw)


def test_the_first_server_initialises_etcd() -> None:
    stack = load_stack_file(HOMELAB)
    assert yaml.safe_load(k3s.config(stack, stack.nodes[0], "T0K3N")) == {
        "cluster-init": True,
        # The homelab's Pis run Longhorn as the default class, so k3s's own local-path default is off too.
        "disable": ["servicelb", "traefik", "local-storage"],
        # The homelab signs in with Dex (iluvatar:identity): the API server reads its authentication config.
        "kube-apiserver-arg": ["authentication-config=/etc/rancher/k3s/iluvatar-authentication-config.yaml"],
        # The Ainur's etcd snapshots (plans.backup): the homelab's schedule and count, uploaded to its S3 target
        # with the credentials of kube-system/k3s-etcd-snapshot-s3 (k3s's server flags, as config keys).
        "etcd-s3": True,
        "etcd-s3-config-secret": "k3s-etcd-snapshot-s3",
        "etcd-snapshot-compress": True,
        "etcd-snapshot-retention": 28,
        # CRON_TZ=UTC: robfig/cron reads a schedule without a zone in the Pi's own, which Iluvatar does not pin.
        "etcd-snapshot-schedule-cron": "CRON_TZ=UTC 0 */6 * * *",
        "kube-controller-manager-arg": ["node-monitor-grace-period=16s"],
        "kubelet-arg": ["node-status-update-frequency=4s"],
        "node-ip": "192.168.0.11",
        "node-label": ["iluvatar/role=valar"],
        # Every Secret sealed in the datastore and its snapshots (the KMS's key among them), by k3s's own key.
        "secrets-encryption": True,
        "tls-san": [VIP, "ainur.iluvatar.home.arpa"],
        "token": "T0K3N",
        "write-kubeconfig-mode": "0600",
    }


def test_an_agent_joins_through_the_vip() -> None:
    stack = load_stack_file(HOMELAB)
    assert yaml.safe_load(k3s.config(stack, stack.nodes[2], "T0K3N")) == {
        "kubelet-arg": ["node-status-update-frequency=4s"],
        "node-ip": "192.168.0.13",
        "node-label": ["iluvatar/role=maiar"],
        "server": f"https://{VIP}:6443",
        "token": "T0K3N",
    }


def test_every_later_server_joins_the_first_through_the_vip() -> None:
    stack = three_servers()
    first, *later = stack.by_role("valar")
    assert [n.name for n in later] == ["eonwe", "ilmare"]
    assert k3s.is_first_server(stack, first) and not any(k3s.is_first_server(stack, n) for n in later)
    assert not k3s.is_first_server(load_stack_file(HOMELAB), load_stack_file(HOMELAB).nodes[1])  # a maiar never is
    for node in later:
        doc = yaml.safe_load(k3s.config(stack, node, "T0K3N"))
        # A second `cluster-init` would start a second etcd: a split cluster.
        assert "cluster-init" not in doc
        assert (doc["server"], doc["node-label"], doc["disable"]) == (
            f"https://{VIP}:6443",
            ["iluvatar/role=valar"],
            ["servicelb", "traefik", "local-storage"],
        )
        assert doc["tls-san"] == [VIP, "ainur.iluvatar.home.arpa"]


def test_secrets_encryption_is_on_the_valar_only_and_only_when_written_so() -> None:
    """k3s reads `secrets-encryption` as a server flag (its agents hold no datastore). Absent means off: an Ainur deployed
    before it is not rolled onto it by an upgrade of Iluvatar; the shipped stack writes it on."""
    homelab = load_stack_file(HOMELAB)
    assert [yaml.safe_load(k3s.config(homelab, n, "T")).get("secrets-encryption") for n in homelab.by_role("valar")] == [True]
    assert "secrets-encryption" not in yaml.safe_load(k3s.config(homelab, homelab.by_role("maiar")[0], "T"))
    for written in ({"secretsEncryption": False}, {}):
        raw = dict(read_stack_file(HOMELAB).config)
        raw["iluvatar:ainur"] = {**{k: v for k, v in raw["iluvatar:ainur"].items() if k != "secretsEncryption"}, **written}
        off = parse_stack(raw)
        assert [yaml.safe_load(k3s.config(off, n, "T")).get("secrets-encryption") for n in off.by_role("valar")] == [None], written


# k3s's status: its three lines, then its table of the config's keys, the active one marked, each named "AES-CBC <name>"
# (pkg/cli/secretsencrypt/secrets_encrypt.go Status; encryptionStatus's typName).
ONE_KEY = "\nActive  Key Type  Name\n------  --------  ----\n *      AES-CBC   AES-CBC aescbckey\n"
K3S_STATUS = {
    "start": "Encryption Status: Enabled\nCurrent Rotation Stage: start\nServer Encryption Hashes: All hashes match\n" + ONE_KEY,
    "finished": "Encryption Status: Enabled\nCurrent Rotation Stage: reencrypt_finished\nServer Encryption Hashes: All hashes match\n" + ONE_KEY,
    # Its three lines alone: a key table the script cannot read.
    "finished-bare": "Encryption Status: Enabled\nCurrent Rotation Stage: reencrypt_finished\nServer Encryption Hashes: All hashes match\n",
    "mismatch": "Encryption Status: Enabled\nCurrent Rotation Stage: start\nServer Encryption Hashes: hash does not match between manwe and eonwe\n"
    + ONE_KEY,
}


def on_the_valar(script: str, tmp_path: Path, config: Path) -> str:
    """A script for the first valar with its paths under tmp_path: the digest of k3s's encryption config read from
    `config` (the advice it prints keeps the real path), and /var/lib/rancher/iluvatar, where the switch's record lives,
    as tmp_path/iluvatar."""
    read = f"digest() {{ sudo sha256sum {k3s.SECRETS_ENCRYPTION_CONFIG} |"
    assert read in script
    return script.replace(read, read.replace(k3s.SECRETS_ENCRYPTION_CONFIG, str(config))).replace(
        "/var/lib/rancher/iluvatar", str(tmp_path / "iluvatar")
    )


def run_rewrite(tmp_path: Path, answers: list[str], rotate_to: str | None) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """The rewrite script against a stand-in `k3s` whose `secrets-encrypt status` gives `answers` in turn (the last one
    from then on), and whose `rotate-keys` moves it to `rotate_to` (k3s's encryptionRotateKeys ends at reencrypt_finished)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in K3S_STATUS.items():
        (tmp_path / f"status-{name}").write_text(text)
    state, log = tmp_path / "state", tmp_path / "log"
    state.write_text("".join(f"{a}\n" for a in answers))
    # k3s's refusal when the Node's hash is not its config's (pkg/server/handlers/secrets-encrypt.go
    # verifyEncryptionHashAnnotation, via the CLI: its error and a failed exit).
    refusal = 'echo "rotate-keys: invalid hash: start-0123 found on node manwe" >&2; exit 1'
    (bin_dir / "sudo").write_text('#!/bin/sh\nexec "$@"\n')
    (bin_dir / "k3s").write_text(
        f"""#!/bin/sh
echo "$*" >> {log}
case "$2" in
  status)
    name=$(head -n1 {state})
    if [ "$(wc -l < {state})" -gt 1 ]; then sed -i 1d {state}; fi
    cat {tmp_path}/status-"$name" ;;
  rotate-keys) {refusal if rotate_to == "invalid-hash" else f"echo {rotate_to} > {state}" if rotate_to else ":"} ;;
esac
"""
    )
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    (tmp_path / "encryption-config.json").write_text(K3S_ENCRYPTION_CONFIG["enabled"])
    script = on_the_valar(k3s.secrets_rewrite_script(timeout=3, poll=0), tmp_path, tmp_path / "encryption-config.json")
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env={"PATH": f"{bin_dir}:/usr/bin:/bin"}, timeout=60)
    return done, log.read_text().splitlines() if log.exists() else []


def test_the_secrets_are_rewritten_once_every_server_has_the_key(tmp_path: Path) -> None:
    done, calls = run_rewrite(tmp_path, ["mismatch", "start"], "finished")
    assert done.returncode == 0, done.stderr
    # It waited for the hashes to match, then asked for the rewrite once, then read the stage it ends at.
    assert calls == ["secrets-encrypt status", "secrets-encrypt status", "secrets-encrypt rotate-keys", "secrets-encrypt status"]
    # Then it names the copies in clear left behind: the snapshots taken before, and how to remove them.
    assert done.stderr.splitlines()[-2:] == [
        f"iluvatar: {socket.gethostname()}: every Secret of the Ainur is sealed under k3s's key",
        f"iluvatar: {socket.gethostname()}: {k3s.SNAPSHOTS_BEFORE}",
    ]
    assert "sudo k3s etcd-snapshot delete <name>" in k3s.SNAPSHOTS_BEFORE
    # And the snapshots k3s itself takes until its next start, which copy etcd's freed pages, with the way out: a restart
    # (its defragment) past one compaction, a fresh snapshot, the older ones deleted.
    assert "and every one k3s takes (on its own schedule too) until k3s next starts" in k3s.SNAPSHOTS_BEFORE
    assert (
        "after 5 minutes (the apiserver's compaction), run 'sudo systemctl restart k3s' here, wait for the node Ready, take "
        "'sudo k3s etcd-snapshot save', and delete every snapshot older than that one"
    ) in k3s.SNAPSHOTS_BEFORE


def test_secrets_already_rewritten_are_left_as_they_are(tmp_path: Path) -> None:
    done, calls = run_rewrite(tmp_path, ["finished"], None)
    assert (done.returncode, calls) == (0, ["secrets-encrypt status"])


def test_a_finished_rewrite_whose_key_table_cannot_be_read_is_not_rotated_again(tmp_path: Path) -> None:
    """Only two keys or more mean a rewrite cut short: a status whose table lists none counted is no reason to rotate."""
    done, calls = run_rewrite(tmp_path, ["finished-bare"], None)
    assert (done.returncode, calls) == (0, ["secrets-encrypt status"])


def test_servers_that_never_agree_on_the_key_stop_the_step_naming_what_k3s_says(tmp_path: Path) -> None:
    done, calls = run_rewrite(tmp_path, ["mismatch"], None)
    assert done.returncode == 1
    assert "rotate-keys" not in " ".join(calls)
    assert "k3s's secrets encryption is not on with the same key on every valar within 3 s" in done.stderr
    assert "hash does not match between manwe and eonwe" in done.stderr


class LabValar:
    """The Pi lab's stand-in k3s (tests/netns/pis.py STANDIN_K3S, its model of `secrets-encrypt`) with its folders in
    tmp_path, so the rewrite script runs against the same model as in the lab, run after run on one state."""

    def __init__(self, tmp_path: Path) -> None:
        self.state = tmp_path / "standin"
        self.state.mkdir()
        config = tmp_path / "config.yaml"
        config.write_text("secrets-encryption: true\n")
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        self.cred = tmp_path / "cred"
        standin = "S=/var/lib/rancher/standin C=/var/lib/rancher/k3s/server/cred"
        assert standin in pis.STANDIN_K3S
        text = pis.STANDIN_K3S.replace(standin, f"S={self.state} C={self.cred}").replace("/etc/rancher/k3s/config.yaml", str(config))
        # Run here, not on a Pi of the lab: nothing it runs may write in this machine's own k3s folders (a lab made
        # /var/lib/rancher and found it no longer empty when it ended).
        assert [line for line in text.splitlines() if "/var/lib/rancher" in line and not line.lstrip().startswith("#")] == []
        # The stand-in asks for root as k3s does; the unit tests may run as anyone.
        (self.bin / "k3s").write_text(text.replace('[ "$(id -u)" = 0 ]', "true"))
        (self.bin / "sudo").write_text('#!/bin/sh\nexec "$@"\n')
        for f in self.bin.iterdir():
            f.chmod(0o755)

    def status(self) -> str:
        return subprocess.run(["k3s", "secrets-encrypt", "status"], capture_output=True, text=True, env={"PATH": f"{self.bin}:/usr/bin:/bin"}).stdout

    def rewrite(self) -> subprocess.CompletedProcess[str]:
        # k3s's encryption config is the stand-in's list of keys: its digest changes with every rotation, as the file's.
        script = on_the_valar(k3s.secrets_rewrite_script(timeout=2, poll=0), self.state.parent, self.state / "secrets-keys")
        return subprocess.run(["bash", "-c", script], capture_output=True, text=True, env={"PATH": f"{self.bin}:/usr/bin:/bin"}, timeout=60)

    def asked(self) -> list[str]:
        log = self.state / "log"
        return [line.split(" ", 1)[1] for line in log.read_text().splitlines()] if log.exists() else []

    def keys(self) -> list[str]:
        return (self.state / "secrets-keys").read_text().split()


def test_the_lab_s_status_says_what_k3s_s_cli_says(tmp_path: Path) -> None:
    """No config file: the CLI's one line. A config: Enabled whatever the flag (encryptionStatus reads the file, which
    the lab keeps aescbc-first), its key named "AES-CBC <name>" and marked active."""
    valar = LabValar(tmp_path)
    config = tmp_path / "config.yaml"
    config.write_text("token: T\n")
    assert valar.status() == "Encryption Status: Disabled, no configuration file found\n"
    config.write_text("secrets-encryption: true\n")
    table = "\nActive  Key Type  Name\n------  --------  ----\n *      AES-CBC   AES-CBC aescbckey\n"
    assert valar.status() == "Encryption Status: Enabled\nCurrent Rotation Stage: start\nServer Encryption Hashes: All hashes match\n" + table
    config.write_text("token: T\n")
    assert valar.status().splitlines()[0] == "Encryption Status: Enabled"


def test_a_rewrite_cut_short_by_a_restart_resumes_at_the_next_run(tmp_path: Path) -> None:
    """k3s restarted mid-rewrite keeps the config with the new key first and the old behind it, and puts back the stage
    of its hash file, whose hash is no longer the config's: rotate-keys is refused from then on. The next run sees the
    two keys and finishes the rewrite with `reencrypt --force`, which drops the old key."""
    valar = LabValar(tmp_path)
    (valar.state / "secrets-restart").touch()
    cut = valar.rewrite()
    assert cut.returncode == 1
    assert "the Secrets were not rewritten within 2 s" in cut.stderr
    assert "Current Rotation Stage: start" in cut.stderr
    old, new = "aescbckey", valar.keys()[0]
    assert valar.keys() == [new, old] and new.startswith("aescbckey-")
    resumed = valar.rewrite()
    assert resumed.returncode == 0, resumed.stderr
    assert valar.asked() == ["secrets-encrypt rotate-keys", "secrets-encrypt reencrypt --force"]
    assert "resuming the rewrite of the Ainur's Secrets cut short" in resumed.stderr
    assert valar.keys() == [new]
    assert (valar.state / "secrets-stage").read_text() == "reencrypt_finished\n"
    # And from there a run only says so.
    again = valar.rewrite()
    assert (again.returncode, valar.asked()[2:]) == (0, [])
    assert again.stderr.splitlines() == [f"iluvatar: {socket.gethostname()}: the Ainur's Secrets are already rewritten under k3s's key"]


def test_the_lab_s_k3s_restarted_before_it_saved_the_stage_stops_the_next_run_with_the_repair(tmp_path: Path) -> None:
    """The lab's stand-in k3s restarted between the one-key config and the saved stage: the next run finds one key at
    the stage start, k3s refuses rotate-keys for an invalid hash, and the step stops at once with the repair, asking
    no `reencrypt` (which would drop the only key)."""
    valar = LabValar(tmp_path)
    (valar.state / "secrets-restart-before-save").touch()
    cut = valar.rewrite()
    assert cut.returncode == 1
    new = valar.keys()[0]
    assert valar.keys() == [new] and new.startswith("aescbckey-")
    again = valar.rewrite()
    assert again.returncode == 1
    assert again.stderr.splitlines()[-1] == f"iluvatar: {socket.gethostname()}: {k3s.SECRETS_SAVED_LOST}"
    assert valar.asked() == ["secrets-encrypt rotate-keys", "secrets-encrypt rotate-keys"]
    assert valar.keys() == [new]


def test_a_rewrite_that_ended_but_lost_its_saved_stage_stops_at_once_with_the_repair(tmp_path: Path) -> None:
    """Cut short after k3s wrote the one-key config and before it saved `reencrypt_finished`: one key, the stage start,
    rotate-keys refused for an invalid hash at every run. The step stops at once (no wait for a stage that never comes,
    no claim that a later run resumes) with the repair, which writes the hash file as k3s does."""
    done, calls = run_rewrite(tmp_path, ["start"], "invalid-hash")
    assert done.returncode == 1
    assert calls == ["secrets-encrypt status", "secrets-encrypt rotate-keys"]
    assert done.stderr.splitlines()[-1] == f"iluvatar: {socket.gethostname()}: {k3s.SECRETS_SAVED_LOST}"
    assert "the next pulumi up resumes" not in done.stderr
    # The repair, run as written (its paths moved under the test's folder, sudo and systemctl stood in): the hash file
    # holds the stage, a dash and the hex SHA-256 of the config file's bytes (GenEncryptionConfigHash), no newline,
    # mode 0600 (WriteEncryptionHashAnnotation's os.WriteFile(..., 0600)).
    cred = tmp_path / "cred"
    cred.mkdir()
    config = cred / "encryption-config.json"
    config.write_text('{"kind":"EncryptionConfiguration","resources":[{"resources":["secrets"]}]}')
    repair = k3s.SECRETS_SAVED_LOST.split("run pulumi up again: ", 1)[1].replace("/var/lib/rancher/k3s/server/cred", str(cred))
    (tmp_path / "bin" / "systemctl").write_text("#!/bin/sh\n")
    (tmp_path / "bin" / "systemctl").chmod(0o755)
    fixed = subprocess.run(["sh", "-c", repair], capture_output=True, text=True, env={"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin"}, timeout=60)
    assert fixed.returncode == 0, fixed.stderr
    state = cred / "encryption-state.json"
    assert state.read_text() == "reencrypt_finished-" + hashlib.sha256(config.read_bytes()).hexdigest()
    assert state.stat().st_mode & 0o777 == 0o600


def test_a_fresh_rewrite_asks_rotate_keys_once_and_ends_with_one_key(tmp_path: Path) -> None:
    valar = LabValar(tmp_path)
    done = valar.rewrite()
    assert done.returncode == 0, done.stderr
    assert valar.asked() == ["secrets-encrypt rotate-keys"]
    assert len(valar.keys()) == 1 and valar.keys()[0].startswith("aescbckey-")


def test_a_rewrite_left_active_stops_the_step_with_the_way_to_resume(tmp_path: Path) -> None:
    """A stage left at reencrypt_active (a rewrite that failed with k3s still up) never moves: no rotate-keys (k3s refuses
    it from that stage), and the step says how to put back the saved stage; after that restart the next run rewrites."""
    valar = LabValar(tmp_path)
    (valar.state / "secrets-keys").write_text("aescbckey\n")
    (valar.state / "secrets-saved").write_text("start\naescbckey\n")
    (valar.state / "secrets-stage").write_text("reencrypt_active\n")
    stuck = valar.rewrite()
    assert stuck.returncode == 1
    assert valar.asked() == []
    assert "a rewrite of the Secrets k3s started did not end within 2 s" in stuck.stderr
    assert "'sudo systemctl restart k3s' puts back the stage k3s last saved" in stuck.stderr
    (valar.state / "secrets-stage").unlink()  # k3s restarted: the annotation back from its hash file
    done = valar.rewrite()
    assert done.returncode == 0, done.stderr
    assert valar.asked() == ["secrets-encrypt rotate-keys"]


def test_the_config_is_written_keys_sorted() -> None:
    """Sorted keys: the same stack gives the same file, so Pulumi sees no change to push over SSH."""
    stack = load_stack_file(HOMELAB)
    text = k3s.config(stack, stack.nodes[2], "T0K3N")
    assert text.splitlines()[0] == "kubelet-arg:"
    assert text.splitlines()[-1] == "token: T0K3N"


# --- The join script, run by bash with stand-ins for what a Pi has (cloud-init, sudo, systemctl, k3s, curl) ---

# A `date` that reads no time (`-d`, `--date`), as the scripts must not ask it to: the uutils date of Ubuntu 25.10 refuses
# the API server's RFC 3339 times, and a Pi runs whatever Ubuntu its card was flashed with. Printing the clock (`+%s`)
# is left to the real one. The stand-ins below that make a time use /usr/bin/date themselves.
DATE = """for arg in "$@"; do
  case "$arg" in -d|-d*|--date|--date=*) echo "date: invalid date '$*' (stand-in: the scripts read no time with date)" >&2; exit 1 ;; esac
done
exec /usr/bin/date "$@"
"""

# The old kubelet's last status post, made as k3s stops (a kubelet posts on a change, or every nodeStatusReportFrequency:
# kubelet_node_status.go tryUpdateNodeStatus), into the file $LAST_POST: it stamps the post before it sends it
# (nodestatus/setters.go:483-489), here in the second after the one the stop began in, as a stop that crosses a second
# boundary does. A script that read `since` before the stop takes it for a report after the restart.
LAST_POST = """[ -z "${LAST_POST:-}" ] || {
  began=$(/usr/bin/date +%s)
  while [ "$(/usr/bin/date +%s)" = "$began" ]; do sleep 0.05; done
  /usr/bin/date -u +%Y-%m-%dT%H:%M:%SZ > "$LAST_POST"
}"""

STAND_INS = {
    # Stand-ins, not the programs: each does what the script relies on, and logs its call.
    "date": DATE,
    "cloud-init": 'echo "cloud-init $*" >> "$LOG"; exit "${CLOUD_INIT_STATUS:-0}"',
    "sudo": 'exec "$@"',
    "test": 'exec /usr/bin/test "$@"',
    # `is-active` answers from a file; `start|restart` never returns while $NEVER_READY exists (Type=notify, TimeoutStartSec=0);
    # `stop|restart` ends the old kubelet, whose last post ($LAST_POST) is made as it stops (LAST_POST above).
    "systemctl": """echo "systemctl $*" >> "$LOG"
case "$1" in
  is-active) [ -e "$ACTIVE" ] ;;
  stop) [ -z "${STOP_FAILS:-}" ] || exit 1 ;;&
  stop|restart) @LAST_POST@ ;;&
  start|restart) while [ -e "$NEVER_READY" ]; do sleep 0.2; done ;;
esac""".replace("@LAST_POST@", LAST_POST),
    # `k3s kubectl --request-timeout=10s get node` says Ready with a heartbeat 5 s from now (a kubelet that reported since), while $READY exists;
    # with $LAST_POST, the last heartbeat of the old kubelet, and none of the new one (a k3s that never came back).
    "k3s": """echo "k3s $*" >> "$LOG"; [ -e "$READY" ] || exit 1
case "$*" in *"get node"*) if [ -n "${LAST_POST:-}" ]; then echo "True $(cat "$LAST_POST")"; else echo "True ${HEARTBEAT:-$(/usr/bin/date -u -d '+5 seconds' +%Y-%m-%dT%H:%M:%SZ)}"; fi ;;
  # The API VIP's kube-vip container, as in the upgrade's stand-in (UPGRADE_STAND_INS): $KUBE_VIP holds its id.
  "crictl ps"*) [ ! -e "${KUBE_VIP:-/nonexistent}" ] || cat "$KUBE_VIP" ;;
  "crictl stop"*) echo "${@: -1}-restarted" > "$KUBE_VIP" ;;
esac""",
    # etcd's member list and /health from files ($ETCD, $HEALTH), as the gate asks with k3s's client certificate.
    "curl": """case "$*" in
  *cacerts*) echo "curl $*" >> "$LOG"; [ "${CACERTS:-yes}" = yes ] ;;
  *member/list*) echo "etcd member list" >> "$LOG"; cat "$ETCD" ;;
  *:2379/health*) echo "etcd health ${@: -1}" >> "$LOG"; grep -q "${@: -1}" "$HEALTHY" && echo '{"health":"true","reason":""}' ;;
  *) echo "curl $*" >> "$LOG"; [ -e "$READY" ] ;;
esac""",
}
# Three members, all started: the first valar's and two more.
MEMBERS = {
    "members": [
        {"ID": str(i), "name": f"{name}-0a1b2c", "peerURLs": [f"https://{ip}:2380"], "clientURLs": [f"https://{ip}:2379"]}
        for i, (name, ip) in enumerate((("manwe", "192.168.0.11"), ("eonwe", "192.168.0.12"), ("ilmare", "192.168.0.13")))
    ]
}


# The bound on `systemctl start` the tests make fire, given only with a stand-in that never starts ($NEVER_READY): the
# `timeout` then fires whatever the machine's load, and the step fails naming it. Every other run gets the product's
# own RESTART_TIMEOUT_SECONDS, the bound a Pi's join and upgrade run with: a start that passes is then never raced
# against a clock, as a start of the stand-ins (a few bash processes) took over 2 s on a machine at load 10.
RESTART_BOUND = 2


def _join(
    tmp_path: Path,
    node_index: int,
    config: str,
    rejoin: str | None = None,
    members: dict[str, Any] | None = None,
    swaps: dict[str, str] | None = None,
    restart_timeout: int = k3s.RESTART_TIMEOUT_SECONDS,
    **env: str,
) -> tuple[subprocess.CompletedProcess[str], list[str], Path]:
    """The join with the k3s config `config` on stdin. `restart_timeout` is the product's own bound by default (RESTART_BOUND)."""
    stack = load_stack_file(HOMELAB)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, body in STAND_INS.items():
        (bin_dir / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_dir / name).chmod(0o755)
    log, target = tmp_path / "log", tmp_path / "etc" / "config.yaml"
    log.unlink(missing_ok=True)
    (tmp_path / "members.json").write_text(json.dumps(MEMBERS if members is None else members))
    healthy = tmp_path / "healthy"
    if not healthy.exists():
        healthy.write_text("".join(f"{m['clientURLs'][0]}/health\n" for m in MEMBERS["members"]))
    script = k3s.join_script(
        stack.nodes[node_index],
        config_path=str(target),
        ready_timeout=3,
        rejoin=rejoin,
        datastore=str(tmp_path / "datastore"),
        restart_timeout=restart_timeout,
        node_timeout=3,
        etcd_timeout=3,
        owed=str(tmp_path / "owed"),
        kubelet=str(tmp_path / "kubelet.conf.d" / "50-iluvatar.conf"),
    )
    for was, now in (swaps or {}).items():
        script = script.replace(was, now)
    environment = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "LOG": str(log),
        "READY": str(tmp_path / "ready"),
        "ACTIVE": str(tmp_path / "active"),
        "NEVER_READY": str(tmp_path / "never-ready"),
        "ETCD": str(tmp_path / "members.json"),
        "HEALTHY": str(healthy),
        "KUBE_VIP": str(tmp_path / "kube-vip"),
        **env,
    }
    result = subprocess.run(["bash", "-c", script], input=config, capture_output=True, text=True, env=environment, timeout=60)
    return result, log.read_text().splitlines() if log.exists() else [], target


NODE_READY = 'k3s kubectl --request-timeout=10s get node {} -o jsonpath={{.status.conditions[?(@.type=="Ready")].status}} {{.status.conditions[?(@.type=="Ready")].lastHeartbeatTime}}'
ETCD_GATE = ["etcd member list", *(f"etcd health https://192.168.0.1{i}:2379/health" for i in (1, 2, 3))]


def test_join_waits_for_cloud_init_then_installs_the_config_and_starts_k3s(tmp_path: Path) -> None:
    (tmp_path / "ready").touch()
    result, calls, target = _join(tmp_path, 0, "token: T0K3N\n")
    assert result.returncode == 0, result.stderr
    assert calls == [
        "cloud-init status --wait",
        "systemctl enable k3s",
        "systemctl is-active --quiet k3s",
        # A new config: restarted (stopped, then started), since `enable --now` would leave a running k3s as it was.
        "systemctl stop k3s",
        "systemctl start k3s",
        "k3s kubectl --request-timeout=10s get --raw /readyz",
        # Started: its Node Ready with a heartbeat from after the start, then etcd healthy with every member.
        NODE_READY.format("manwe"),
        *ETCD_GATE,
        # Its API VIP kube-vip asked for (none runs yet: nothing to restart).
        KUBE_VIP_PS,
    ]
    assert target.read_text() == "token: T0K3N\n"
    assert oct(target.stat().st_mode & 0o777) == "0o600"  # the config holds the join token
    # The kubelet's drop-in beside k3s's own defaults: a 16 s node Lease, renewed every 4 s.
    dropin = tmp_path / "kubelet.conf.d" / "50-iluvatar.conf"
    assert yaml.safe_load(dropin.read_text()) == {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "nodeLeaseDurationSeconds": 16,
    }


def test_join_again_with_the_same_config_leaves_k3s_running(tmp_path: Path) -> None:
    (tmp_path / "ready").touch()
    assert _join(tmp_path, 0, "token: T0K3N\n")[0].returncode == 0
    (tmp_path / "active").touch()
    result, calls, _ = _join(tmp_path, 0, "token: T0K3N\n")
    assert result.returncode == 0
    # Running and unchanged: `start` is a no-op, and no Node wait (nothing restarted); etcd checked all the same.
    assert calls[1:] == [
        "systemctl enable k3s",
        "systemctl is-active --quiet k3s",
        "systemctl start k3s",
        "k3s kubectl --request-timeout=10s get --raw /readyz",
        *ETCD_GATE,
    ]
    # A changed config restarts it, once etcd is healthy with every member.
    calls = _join(tmp_path, 0, "token: OTHER\n")[1]
    assert calls[3:9] == [*ETCD_GATE, "systemctl stop k3s", "systemctl start k3s"]
    # So does a changed kubelet drop-in with the config as it was (the kubelet reads it only as it starts), and the
    # program's is put back.
    dropin = tmp_path / "kubelet.conf.d" / "50-iluvatar.conf"
    dropin.write_text("kind: KubeletConfiguration\n")
    calls = _join(tmp_path, 0, "token: OTHER\n")[1]
    assert calls[3:9] == [*ETCD_GATE, "systemctl stop k3s", "systemctl start k3s"]
    assert dropin.read_text() == k3s.kubelet_dropin()


def test_a_joins_restart_takes_no_heartbeat_of_the_old_k3s_for_the_new_ones(tmp_path: Path) -> None:
    """A changed config restarts k3s; the old kubelet posts its status as k3s stops, in a second after the one the stop
    began in (LAST_POST), and the new k3s never reports. The join reads its clock between the stop and the start, so
    it fails naming the wait; with the clock read before one `systemctl restart`, that post passed for the new k3s."""
    (tmp_path / "ready").touch()
    (tmp_path / "active").touch()
    last = tmp_path / "last-post"
    result, calls, _ = _join(tmp_path, 0, "token: T0K3N\n", LAST_POST=str(last))
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"iluvatar: {socket.gethostname()}: waited 3 s for its Node Ready again after k3s's restart; still: its Node has not reported "
        f"since the restart (last at {last.read_text().strip()}); look with: sudo journalctl -u k3s"
    )
    assert calls[calls.index("systemctl stop k3s") :][:2] == ["systemctl stop k3s", "systemctl start k3s"]
    assert (tmp_path / "owed").exists()


def test_a_restart_whose_stop_fails_asks_systemd_to_start_k3s_again_before_it_fails(tmp_path: Path) -> None:
    """A changed config restarts k3s, and `systemctl stop` fails (STOP_FAILS): the step fails naming it, but only after
    asking systemd to start k3s without waiting, as `systemctl restart` would have gone on to; without that the Pi (a
    valar: the Ainur's API, the household's DHCP and DNS) was left with k3s stopped until the next `up`."""
    (tmp_path / "ready").touch()
    (tmp_path / "active").touch()
    result, calls, _ = _join(tmp_path, 0, "token: OTHER\n", STOP_FAILS="1")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"iluvatar: {socket.gethostname()}: systemctl stop k3s failed (status 1), k3s's start asked of systemd again; look with: "
        "sudo journalctl -u k3s"
    )
    assert calls[calls.index("systemctl stop k3s") :] == ["systemctl stop k3s", "systemctl start --no-block k3s"]


def test_a_valars_join_that_restarts_k3s_restarts_its_api_vip_kube_vip_and_one_that_does_not_leaves_it(tmp_path: Path) -> None:
    """A changed config restarts k3s, which renews any certificate within its window as it starts, and then the k3s step
    finds nothing to renew: the join restarts the valar's API VIP kube-vip itself, so it reads the admin kubeconfig k3s
    just wrote. Before, the kube-vip kept the certificate it started with. An unchanged config restarts neither."""
    (tmp_path / "ready").touch()
    (tmp_path / "active").touch()
    assert _join(tmp_path, 0, "token: T0K3N\n")[0].returncode == 0
    (tmp_path / "kube-vip").write_text("kv1\n")
    result, calls, _ = _join(tmp_path, 0, "token: OTHER\n")
    assert result.returncode == 0, result.stderr
    assert calls[calls.index("systemctl stop k3s") :] == [
        "systemctl stop k3s",
        "systemctl start k3s",
        "k3s kubectl --request-timeout=10s get --raw /readyz",
        NODE_READY.format("manwe"),
        *ETCD_GATE,
        *KUBE_VIP_RESTART,
    ]
    assert (tmp_path / "kube-vip").read_text() == "kv1-restarted\n"
    result, calls, _ = _join(tmp_path, 0, "token: OTHER\n")
    assert result.returncode == 0 and not [c for c in calls if "crictl" in c]


def test_a_join_whose_restart_was_not_seen_through_restarts_again_on_the_next_run(tmp_path: Path) -> None:
    """A changed config restarted k3s and the Pi never came back: the join failed, its config installed. The next run
    finds the config unchanged and k3s running, but the restart still owed: it restarts and waits again, and passes only
    then (without the mark it passed at once, and the chain restarted the next Pi beside a broken one)."""
    result, _, _ = _join(tmp_path, 0, "token: T0K3N\n")
    assert result.returncode == 1
    assert result.stderr.strip().endswith("did not serve within 3 s; look with: sudo journalctl -u k3s")
    assert (tmp_path / "owed").exists()
    (tmp_path / "ready").touch()
    (tmp_path / "active").touch()
    result, calls, _ = _join(tmp_path, 0, "token: T0K3N\n")
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == (
        f"iluvatar: {socket.gethostname()}: an earlier run's restart of k3s was not seen through (its Node Ready, etcd healthy): restarting it again"
    )
    assert calls[1:] == [
        "systemctl enable k3s",
        "systemctl is-active --quiet k3s",
        *ETCD_GATE,
        "systemctl stop k3s",
        "systemctl start k3s",
        "k3s kubectl --request-timeout=10s get --raw /readyz",
        NODE_READY.format("manwe"),
        *ETCD_GATE,
        KUBE_VIP_PS,
    ]
    assert not (tmp_path / "owed").exists()
    # Seen through: the run after changes nothing.
    assert "systemctl stop k3s" not in _join(tmp_path, 0, "token: T0K3N\n")[1]


def test_a_running_valar_does_not_restart_while_an_etcd_member_is_unhealthy(tmp_path: Path) -> None:
    """A member down already (ilmare) and this one restarting would leave etcd without quorum: the join waits for it,
    within its bound, names the member, and neither installs the config nor restarts k3s."""
    (tmp_path / "ready").touch()
    (tmp_path / "active").touch()
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "config.yaml").write_text("token: T0K3N\n")
    (tmp_path / "healthy").write_text("https://192.168.0.11:2379/health\nhttps://192.168.0.12:2379/health\n")
    result, calls, target = _join(tmp_path, 0, "token: OTHER\n")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"iluvatar: {socket.gethostname()}: waited 3 s for etcd healthy with every member before k3s restarts; "
        "still: etcd member ilmare-0a1b2c (https://192.168.0.13:2379) is not healthy; look with: sudo journalctl -u k3s"
    )
    assert not [c for c in calls if c.startswith(("systemctl stop", "systemctl restart"))]
    assert target.read_text() == "token: T0K3N\n"


def test_a_learner_or_a_member_not_started_is_not_healthy(tmp_path: Path) -> None:
    (tmp_path / "ready").touch()
    learner = {"members": [*MEMBERS["members"][:2], {**MEMBERS["members"][2], "isLearner": True}]}
    result, _, _ = _join(tmp_path, 0, "token: T0K3N\n", members=learner)
    assert result.returncode == 1
    assert "still: etcd member ilmare-0a1b2c is still a learner;" in result.stderr
    unstarted = {"members": [*MEMBERS["members"][:2], {"ID": "7", "peerURLs": ["https://192.168.0.13:2380"]}]}
    result, _, _ = _join(tmp_path, 0, "token: T0K3N\n", members=unstarted)
    assert "still: etcd member 7 (https://192.168.0.13:2380) has not started;" in result.stderr


def test_a_k3s_that_never_tells_systemd_it_is_ready_fails_the_join_within_its_bound(tmp_path: Path) -> None:
    """`systemctl start` (a restart's, after its stop) of a Type=notify unit with TimeoutStartSec=0 waits for ever: the script bounds it itself."""
    (tmp_path / "ready").touch()
    (tmp_path / "never-ready").touch()
    result, calls, _ = _join(tmp_path, 1, "server: https://192.168.0.10:6443\n", restart_timeout=RESTART_BOUND)
    assert result.returncode == 1
    assert calls[-1] == "systemctl start k3s-agent"
    assert result.stderr.strip() == (
        f"iluvatar: {socket.gethostname()}: systemd did not see k3s-agent start within {RESTART_BOUND} s of its restart "
        "(its unit has no bound of its own: TimeoutStartSec=0); look with: sudo journalctl -u k3s-agent"
    )


def test_a_node_that_does_not_report_after_the_restart_fails_the_join_naming_why(tmp_path: Path) -> None:
    """A Node Ready from before the restart is not the restarted Pi: its heartbeat must be from after it."""
    (tmp_path / "ready").touch()
    stale = 'case "$*" in *"get node"*) echo "True 2020-01-01T00:00:00Z" ;; esac'
    result, _, _ = _join(tmp_path, 1, "server: https://192.168.0.10:6443\n")
    assert result.returncode == 0, result.stderr
    bin_dir = tmp_path / "bin"
    (bin_dir / "k3s").write_text(f'#!/bin/bash\necho "k3s $*" >> "$LOG"\n{stale}\n')
    (bin_dir / "curl").write_text("#!/bin/bash\nexit 0\n")
    script = k3s.join_script(
        load_stack_file(HOMELAB).nodes[1],
        config_path=str(tmp_path / "other.yaml"),
        ready_timeout=3,
        node_timeout=2,
        owed=str(tmp_path / "owed"),
        kubelet=str(tmp_path / "kubelet.conf.d" / "50-iluvatar.conf"),
    )
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "LOG": str(tmp_path / "log"), "ACTIVE": str(tmp_path / "active"), "NEVER_READY": str(tmp_path / "x")}
    result = subprocess.run(["bash", "-c", script], input="x\n", capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"iluvatar: {socket.gethostname()}: waited 2 s for its Node Ready again after k3s's restart; still: its Node has not "
        "reported since the restart (last at 2020-01-01T00:00:00Z); look with: sudo journalctl -u k3s-agent"
    )


FIRST = "cluster-init: true\nnode-ip: 192.168.0.11\ntoken: T0K3N\n"
SERVER_URL = "https://192.168.0.10:6443"


def test_the_first_valar_starts_the_cluster_when_nothing_answers_at_the_vip(tmp_path: Path) -> None:
    # A first bring-up: kube-vip holds the VIP only once this Pi's k3s runs, so /cacerts does not answer.
    (tmp_path / "ready").touch()
    result, calls, target = _join(tmp_path, 0, FIRST, rejoin=SERVER_URL, CACERTS="no")
    assert result.returncode == 0, result.stderr
    assert calls[:2] == ["cloud-init status --wait", f"curl -sfk --max-time 5 {SERVER_URL}/cacerts"]
    assert target.read_text() == FIRST


def test_a_rebuilt_first_valar_joins_the_running_cluster_instead_of_starting_another(tmp_path: Path) -> None:
    (tmp_path / "ready").touch()
    result, _, target = _join(tmp_path, 0, FIRST, rejoin=SERVER_URL)
    assert result.returncode == 0, result.stderr
    assert target.read_text() == f"server: {SERVER_URL}\nnode-ip: 192.168.0.11\ntoken: T0K3N\n"
    assert f"has no datastore and a cluster answers at {SERVER_URL}: joining it, not starting another" in result.stderr
    # Joined that way, it stays so: the next run (its datastore now there) changes nothing and restarts nothing.
    (tmp_path / "datastore").mkdir()
    (tmp_path / "active").touch()
    result, calls, target = _join(tmp_path, 0, FIRST, rejoin=SERVER_URL)
    assert result.returncode == 0, result.stderr
    assert target.read_text().startswith(f"server: {SERVER_URL}\n")
    assert "systemctl start k3s" in calls and "systemctl stop k3s" not in calls


def test_a_first_valar_with_its_datastore_keeps_cluster_init(tmp_path: Path) -> None:
    (tmp_path / "ready").touch()
    (tmp_path / "datastore").mkdir()
    result, calls, target = _join(tmp_path, 0, FIRST, rejoin=SERVER_URL)
    assert result.returncode == 0, result.stderr
    assert target.read_text() == FIRST
    assert not any(c.startswith("curl") for c in calls)


def test_the_program_guards_only_the_first_valar() -> None:
    stack = load_stack_file(HOMELAB)
    joins = {r.name: str(r.inputs["create"]) for r in simulated(HOMELAB).registrations if r.name.endswith("-join")}
    guarded = sorted(name for name, script in joins.items() if f"{k3s.server_url(stack)}/cacerts" in script)
    assert guarded == [f"ainur-{stack.by_role('valar')[0].name}-join"]
    assert len(joins) == len(stack.ainur_nodes) > 1


def test_an_agent_waits_for_its_kubelet_and_its_node_and_asks_no_etcd(tmp_path: Path) -> None:
    (tmp_path / "ready").touch()
    result, calls, _ = _join(tmp_path, 1, "server: https://192.168.0.10:6443\n")
    assert result.returncode == 0
    assert calls[1:] == [
        "systemctl enable k3s-agent",
        "systemctl is-active --quiet k3s-agent",
        "systemctl stop k3s-agent",
        "systemctl start k3s-agent",
        "curl -sf --max-time 10 http://127.0.0.1:10248/healthz",
        # With its kubelet's own credentials (a kubelet may read its own Node); an agent has no etcd to ask.
        NODE_READY.format("eonwe").replace("--request-timeout=10s get", f"--request-timeout=10s --kubeconfig {k3s.AGENT_KUBECONFIG} get"),
    ]


def test_cloud_init_degraded_is_done_and_failed_is_not(tmp_path: Path) -> None:
    (tmp_path / "ready").touch()
    assert _join(tmp_path, 0, "x\n", CLOUD_INIT_STATUS="2")[0].returncode == 0
    result, calls, target = _join(tmp_path, 0, "y\n", CLOUD_INIT_STATUS="1")
    assert result.returncode == 1
    assert calls == ["cloud-init status --wait"]  # nothing installed, nothing started
    assert target.read_text() == "x\n"
    assert result.stderr.strip() == (
        f"iluvatar: cloud-init on {socket.gethostname()} did not finish within 1800 s (status 1); look with: sudo cloud-init status --long"
    )


def test_a_k3s_that_never_serves_fails_after_the_bound_saying_where_to_look(tmp_path: Path) -> None:
    result, calls, _ = _join(tmp_path, 0, "token: T0K3N\n")
    assert result.returncode == 1
    assert calls.count("k3s kubectl --request-timeout=10s get --raw /readyz") >= 2
    assert result.stderr.strip() == f"iluvatar: k3s on {socket.gethostname()} did not serve within 3 s; look with: sudo journalctl -u k3s"


def test_kube_vip_static_pod() -> None:
    """ARP leader election for the API VIP only (Services are the kube-vip-services DaemonSet's)."""
    assert k3s.kube_vip_manifest(load_stack_file(HOMELAB)) == {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "kube-vip", "namespace": "kube-system"},
        "spec": {
            "hostNetwork": True,
            "containers": [
                {
                    "name": "kube-vip",
                    "image": "ghcr.io/kube-vip/kube-vip:v0.9.2",
                    "args": ["manager"],
                    "env": [
                        {"name": "vip_arp", "value": "true"},
                        {"name": "port", "value": "6443"},
                        {"name": "cp_enable", "value": "true"},
                        {"name": "svc_enable", "value": "false"},
                        {"name": "vip_leaderelection", "value": "true"},
                        {"name": "vip_leaseduration", "value": "5"},
                        {"name": "vip_renewdeadline", "value": "3"},
                        {"name": "vip_retryperiod", "value": "1"},
                        {"name": "address", "value": VIP},
                    ],
                    "securityContext": {"capabilities": {"add": ["NET_ADMIN", "NET_RAW"]}},
                    "volumeMounts": [{"name": "kubeconfig", "mountPath": "/etc/kubernetes/admin.conf"}],
                }
            ],
            "hostAliases": [{"ip": "127.0.0.1", "hostnames": ["kubernetes"]}],
            "volumes": [{"name": "kubeconfig", "hostPath": {"path": "/etc/rancher/k3s/k3s.yaml"}}],
        },
    }


def test_every_cluster_of_the_kubeconfig_points_at_the_vip_and_the_rest_is_kept() -> None:
    stack = load_stack_file(HOMELAB)
    given = (
        "apiVersion: v1\n"
        "clusters:\n"
        "- cluster: {certificate-authority-data: Q0E=, server: 'https://127.0.0.1:6443'}\n  name: default\n"
        "- cluster: {server: 'https://127.0.0.1:6443'}\n  name: other\n"
        "current-context: default\n"
    )
    assert k3s.rewrite_kubeconfig(given, stack) == (
        "apiVersion: v1\n"
        "clusters:\n"
        "- cluster:\n    certificate-authority-data: Q0E=\n    server: https://192.168.0.10:6443\n  name: default\n"
        "- cluster:\n    server: https://192.168.0.10:6443\n  name: other\n"
        "current-context: default\n"
    )


@pytest.mark.parametrize("empty", ["", "# nothing\n", "clusters: []\n", "[]\n", "just text\n"])
def test_no_kubeconfig_is_one_clear_error(empty: str) -> None:
    with pytest.raises(
        ValueError, match=r"^the first valar returned no kubeconfig from /etc/rancher/k3s/k3s.yaml; is k3s running on https://192.168.0.10:6443\?$"
    ):
        k3s.rewrite_kubeconfig(empty, load_stack_file(HOMELAB))


# --- The k3s upgrade, run by bash with stand-ins (k3s itself cannot run here) ----------------------

UPGRADE_STAND_INS = {
    "date": DATE,
    # A stand-in k3s: its version is a file; `etcd-snapshot` and `kubectl` log and answer from files.
    # The binary's version ($VERSION) and the running k3s's ($RUNNING: what its kubelet reports on the Node) apart, as
    # k3s's install.sh makes them between setup_binary's `mv -f` and systemd_start's restart.
    "k3s": """echo "k3s $*" >> "$LOG"
case "$1" in
  --version) echo "k3s version $(cat "$VERSION") (stand-in)" ;;
  etcd-snapshot) [ -z "${SNAPSHOT_HANGS:-}" ] || exec sleep 600 ;;  # a snapshot that never ends, with $SNAPSHOT_HANGS
  # The container runtime of the API VIP's kube-vip static pod: `ps` prints the running container's id (the file
  # $KUBE_VIP, none without it); `stop` stops it and, as the kubelet does for a container of a running pod that is not
  # running (kuberuntime_manager.go computePodActions), starts a new one, unless $KUBE_VIP_STAYS_DOWN is set.
  crictl) case "$2" in
      ps) [ ! -e "${KUBE_VIP:-/nonexistent}" ] || cat "$KUBE_VIP" ;;
      stop) if [ -n "${KUBE_VIP_STAYS_DOWN:-}" ]; then rm -f "$KUBE_VIP"; else echo "${@: -1}-restarted" > "$KUBE_VIP"; fi ;;
    esac ;;
  kubectl) [ -e "$READY" ] || exit 1
    # With $UNREADABLE the API refuses the Node's read; with $STALE its kubelet last reported before any restart; with
    # $LAST_POST its old kubelet last reported as k3s stopped, and the new one never (STAND_INS); with
    # $NOT_REGISTERED the Node is not there (--ignore-not-found: nothing printed, success).
    [ -z "${UNREADABLE:-}" ] || exit 1
    # With $ENDED (a file): k3s's certificates have ended, so neither the API server's serving certificate nor the
    # admin's or the kubelet's client certificate verifies, until a restart regenerates them (deps.go createClientCertKey).
    [ ! -e "${ENDED:-/nonexistent}" ] || exit 1
    case "$*" in
      *lastHeartbeatTime*) if [ -n "${STALE:-}" ]; then echo "True 2020-01-01T00:00:00Z"; elif [ -n "${LAST_POST:-}" ]; then echo "True $(cat "$LAST_POST")"; else echo "True ${HEARTBEAT:-$(/usr/bin/date -u -d '+5 seconds' +%Y-%m-%dT%H:%M:%SZ)}"; fi ;;
      *"kubeletVersion} {"*) echo "$(cat "$RUNNING") True" ;;
      *kubeletVersion*) [ -n "${NOT_REGISTERED:-}" ] || cat "$RUNNING" ;;
    esac ;;
esac""",
    "sudo": 'exec env "$@"',
    "test": 'exec /usr/bin/test "$@"',
    # `is-active` answers from a file; `stop` ends k3s (its old kubelet's last post with $LAST_POST: STAND_INS); `start` of
    # a k3s not running starts the binary's version, unless $NEVER_READY exists (then it never returns), and is a no-op
    # for one that runs, as systemd's; `restart` is both.
    "systemctl": """echo "systemctl $*" >> "$LOG"
case "$1" in
  is-active) [ -e "$ACTIVE" ] ;;
  stop|restart) rm -f "$ACTIVE"; @LAST_POST@ ;;&
  start|restart) [ ! -e "$ACTIVE" ] || exit 0
    while [ -e "$NEVER_READY" ]; do sleep 0.2; done; cp "$VERSION" "$RUNNING"; touch "$ACTIVE"
    # k3s renewing, as it starts, a certificate within its window (pkg/daemons/control/deps/deps.go createClientCertKey):
    # with $RENEWED, the certificate it issues in place of $RENEWS.
    # k3s decides by the Pi's own clock (IsCertExpired(cert, CertificateRenewDays): time.Now()), as openssl's -checkend here.
    [ -z "${RENEWED:-}" ] || openssl x509 -checkend 10368000 -noout -in "$RENEWS" >/dev/null || cp "$RENEWED" "$RENEWS"
    # An ended certificate regenerated too (deps.go: `expired` is IsCertExpired within the window, a past end included).
    rm -f "${ENDED:-/nonexistent}" ;;
esac""".replace("@LAST_POST@", LAST_POST),
    # A stand-in for curl against get.k3s.io: the "installer" it writes (to -o's file, as curl does) records its
    # environment and sets the version; with $FETCH_FAILS it writes nothing and exits with that code, as curl does when
    # its --max-time runs out (28); the installer sleeps for ever with $INSTALL_HANGS. etcd's member list and /health
    # as in the join's tests (STAND_INS).
    "curl": """case "$*" in
  *member/list*) echo "etcd member list" >> "$LOG"; [ ! -e "${ENDED:-/nonexistent}" ] || exit 35; cat "$ETCD"; exit ;;
  *:2379/health*) echo "etcd health ${@: -1}" >> "$LOG"; grep -q "${@: -1}" "$HEALTHY" && echo '{"health":"true","reason":""}'; exit ;;
esac
out= args=()
while [ $# -gt 0 ]; do
  if [ "$1" = -o ]; then out=$2; args+=(-o FILE); shift 2; else args+=("$1"); shift; fi
done
echo "curl ${args[*]}" >> "$LOG"
[ -n "${FETCH_FAILS:-}" ] && exit "$FETCH_FAILS"
script='[ -n "${INSTALL_HANGS:-}" ] && { echo "installer started" >> "$LOG"; sleep 600; }
echo "install $INSTALL_K3S_VERSION $INSTALL_K3S_EXEC ${K3S_URL:-}" >> "$LOG"; echo "$INSTALL_K3S_VERSION" > "$VERSION"; cp "$VERSION" "$RUNNING"'
if [ -n "$out" ]; then printf '%s\\n' "$script" > "$out"; else printf '%s\\n' "$script"; fi""",
}
FETCH = "curl -sfL --connect-timeout 10 --max-time 120 -o FILE https://get.k3s.io"


def _upgrade(
    tmp_path: Path,
    node_index: int,
    have: str,
    snapshot: bool,
    ready: bool = True,
    install_timeout: int = k3s.INSTALL_SECONDS,
    running: str | None = None,
    active: bool = True,
    snapshot_timeout: int = k3s.SNAPSHOT_SECONDS,
    renewing: str | None = None,
    restart_timeout: int = k3s.RESTART_TIMEOUT_SECONDS,
    **more_env: str,
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """The upgrade with k3s's binary at `have`, running `running` (the same by default), active or not. `restart_timeout`
    is the product's own bound by default (RESTART_BOUND)."""
    stack = load_stack_file(HOMELAB)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, body in UPGRADE_STAND_INS.items():
        (bin_dir / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_dir / name).chmod(0o755)
    log, version = tmp_path / "log", tmp_path / "version"
    log.unlink(missing_ok=True)
    version.write_text(have)
    (tmp_path / "running").write_text(have if running is None else running)
    (tmp_path / "active").unlink(missing_ok=True)
    if active:
        (tmp_path / "active").touch()
    if ready:
        (tmp_path / "ready").touch()
    (tmp_path / "members.json").write_text(json.dumps(MEMBERS))
    (tmp_path / "healthy").write_text("".join(f"{m['clientURLs'][0]}/health\n" for m in MEMBERS["members"]))
    (tmp_path / "kube-vip").write_text("kv1\n")  # the API VIP's kube-vip container, running
    script = k3s.upgrade_script(
        stack,
        stack.nodes[node_index],
        snapshot=snapshot,
        timeout=3,
        etcd_timeout=3,
        install_timeout=install_timeout,
        restart_timeout=restart_timeout,
        owed=str(tmp_path / "owed"),
        snapshot_timeout=snapshot_timeout,
        # k3s's certificates in the test's folders (tls/, tls/etcd, agent/, as on a Pi), and the metric file there too.
        tls_dirs=(str(tmp_path / "tls"), str(tmp_path / "tls" / "etcd"), str(tmp_path / "agent")),
        metrics_dir=str(tmp_path / "metrics"),
        renewing=renewing,
        kube_vip_timeout=3,
    )
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "LOG": str(log),
        "VERSION": str(version),
        "RUNNING": str(tmp_path / "running"),
        "ACTIVE": str(tmp_path / "active"),
        "NEVER_READY": str(tmp_path / "never-ready"),
        "READY": str(tmp_path / "ready"),
        "ETCD": str(tmp_path / "members.json"),
        "HEALTHY": str(tmp_path / "healthy"),
        "KUBE_VIP": str(tmp_path / "kube-vip"),
        **more_env,
    }
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=60)
    return result, log.read_text().splitlines() if log.exists() else []


KUBE_VIP_PS = "k3s crictl ps --state running --label io.kubernetes.pod.namespace=kube-system --label io.kubernetes.pod.name=kube-vip-manwe --label io.kubernetes.container.name=kube-vip -q"
# A valar's kube-vip after its k3s restarted: the running container, its graceful stop, the kubelet's new one.
KUBE_VIP_RESTART = [KUBE_VIP_PS, "k3s crictl stop --timeout 10 kv1", KUBE_VIP_PS]
NODE_VERSION = "k3s kubectl --request-timeout=10s get node manwe --ignore-not-found -o jsonpath={.status.nodeInfo.kubeletVersion}"
NODE_AT = (
    'k3s kubectl --request-timeout=10s get node manwe -o jsonpath={.status.nodeInfo.kubeletVersion} {.status.conditions[?(@.type=="Ready")].status}'
)


def test_a_pi_already_at_the_version_and_running_it_is_not_restarted_but_still_gated(tmp_path: Path) -> None:
    """k3s running the version its binary has, its Node Ready at it: nothing restarts, and the gates pass at once."""
    result, calls = _upgrade(tmp_path, 0, "v1.35.8+k3s1", snapshot=True)
    assert result.returncode == 0, result.stderr
    assert calls == ["k3s --version", "systemctl is-active --quiet k3s", NODE_VERSION, NODE_AT, *ETCD_GATE]
    assert result.stderr.strip() == "iluvatar: k3s v1.35.8+k3s1 already runs on manwe"


@pytest.mark.parametrize(
    ("running", "active", "why"),
    [
        # install.sh moved the new binary into place (setup_binary) and was stopped before its restart (systemd_start).
        ("v1.34.9+k3s1", True, "its Node's kubelet runs v1.34.9+k3s1, not the installed v1.35.8+k3s1"),
        # Its restart failed, or was cut (`timeout` around the installer), and k3s is not running.
        ("v1.35.8+k3s1", False, "k3s is not running"),
    ],
)
def test_a_binary_at_the_version_that_does_not_run_is_restarted_then_gated(tmp_path: Path, running: str, active: bool, why: str) -> None:
    """The binary on disk is not the running k3s: a run stopped after the installer replaced it is finished by the next
    one, which restarts k3s (bounded) and waits for its Node at the version and for etcd, rather than passing at once."""
    result, calls = _upgrade(tmp_path, 0, "v1.35.8+k3s1", snapshot=True, running=running, active=active)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[0] == f"iluvatar: manwe: k3s v1.35.8+k3s1 is installed, but {why}: restarting k3s"
    # A running member restarts only with every member healthy; one not running cannot cost quorum.
    before = ETCD_GATE if active else []
    asked = [NODE_VERSION] if active else []
    # At the version already, its Node was Ready at it before the restart: a report from after the restart is waited for.
    assert calls == [
        "k3s --version",
        "systemctl is-active --quiet k3s",
        *asked,
        *before,
        "systemctl stop k3s",
        "systemctl start k3s",
        NODE_AT,
        NODE_READY.format("manwe"),
        *ETCD_GATE,
        # Its API VIP kube-vip restarted, so it reads the admin kubeconfig k3s wrote as it started.
        *KUBE_VIP_RESTART,
    ]
    assert not (tmp_path / "owed").exists()


def test_a_restart_owed_is_made_again_and_its_mark_goes_only_once_the_gates_pass(tmp_path: Path) -> None:
    """A first run that restarted k3s and saw its Node never Ready: the mark stays, and the next run restarts and waits
    again (its Node may be Ready at the version by then, from a restart that came back late: that is no proof)."""
    result, _ = _upgrade(tmp_path, 0, "v1.34.9+k3s1", snapshot=False, ready=False)
    assert result.returncode == 1
    assert (tmp_path / "owed").exists()
    result, calls = _upgrade(tmp_path, 0, "v1.35.8+k3s1", snapshot=False)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[0] == (
        "iluvatar: manwe: k3s v1.35.8+k3s1 is installed, but an earlier run's restart was not seen through (its Node Ready, etcd healthy): "
        "restarting k3s"
    )
    assert calls == [
        "k3s --version",
        "systemctl is-active --quiet k3s",
        *ETCD_GATE,
        "systemctl stop k3s",
        "systemctl start k3s",
        NODE_AT,
        NODE_READY.format("manwe"),
        *ETCD_GATE,
        # Its API VIP kube-vip restarted, so it reads the admin kubeconfig k3s wrote as it started.
        *KUBE_VIP_RESTART,
    ]
    assert not (tmp_path / "owed").exists()


def test_a_restart_that_never_finishes_on_a_retry_fails_within_its_bound_and_stays_owed(tmp_path: Path) -> None:
    (tmp_path / "never-ready").touch()
    result, calls = _upgrade(tmp_path, 1, "v1.35.8+k3s1", snapshot=False, active=False, restart_timeout=RESTART_BOUND)
    assert result.returncode == 1
    assert calls[-1] == "systemctl start k3s-agent"
    assert result.stderr.splitlines()[-1] == (
        f"iluvatar: {socket.gethostname()}: systemd did not see k3s-agent start within {RESTART_BOUND} s of its restart "
        "(its unit has no bound of its own: TimeoutStartSec=0); look with: sudo journalctl -u k3s-agent"
    )
    assert (tmp_path / "owed").exists()


def test_the_first_valar_snapshots_etcd_then_upgrades_and_waits_for_its_node(tmp_path: Path) -> None:
    result, calls = _upgrade(tmp_path, 0, "v1.34.9+k3s1", snapshot=True)
    assert result.returncode == 0, result.stderr
    assert calls == [
        "k3s --version",
        # A valar restarts a member of etcd: only with every member healthy, before and after.
        *ETCD_GATE,
        "k3s etcd-snapshot save --name iluvatar-before-v1.35.8-k3s1",
        FETCH,
        "install v1.35.8+k3s1 server ",
        'k3s kubectl --request-timeout=10s get node manwe -o jsonpath={.status.nodeInfo.kubeletVersion} {.status.conditions[?(@.type=="Ready")].status}',
        NODE_READY.format("manwe"),
        *ETCD_GATE,
        # Its API VIP kube-vip restarted, so it reads the admin kubeconfig k3s wrote as it started.
        *KUBE_VIP_RESTART,
    ]
    assert (tmp_path / "version").read_text().strip() == "v1.35.8+k3s1"


def test_an_agent_upgrades_as_an_agent_and_asks_with_its_kubelets_credentials(tmp_path: Path) -> None:
    result, calls = _upgrade(tmp_path, 1, "v1.34.9+k3s1", snapshot=False)
    assert result.returncode == 0, result.stderr
    assert calls[1:] == [
        FETCH,
        "install v1.35.8+k3s1 agent https://192.168.0.10:6443",
        'k3s kubectl --request-timeout=10s --kubeconfig /var/lib/rancher/k3s/agent/kubelet.kubeconfig get node eonwe -o jsonpath={.status.nodeInfo.kubeletVersion} {.status.conditions[?(@.type=="Ready")].status}',
        NODE_READY.format("eonwe").replace("get node", "--kubeconfig /var/lib/rancher/k3s/agent/kubelet.kubeconfig get node"),
    ]


def test_an_install_waits_for_a_report_from_after_it_not_a_node_ready_at_the_version_before(tmp_path: Path) -> None:
    """A Node object outlives its k3s: it may say Ready at the version the step installs before that k3s runs (a Pi
    reflashed with an older k3s, a downgrade whose report never came). The install waits for a heartbeat from after it."""
    result, calls = _upgrade(tmp_path, 1, "v1.34.9+k3s1", snapshot=False, STALE="1")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"iluvatar: {socket.gethostname()}: waited 3 s for its Node Ready again after k3s's restart; still: its Node has not reported "
        "since the restart (last at 2020-01-01T00:00:00Z); look with: sudo journalctl -u k3s-agent"
    )
    assert "install v1.35.8+k3s1 agent https://192.168.0.10:6443" in calls
    assert (tmp_path / "owed").exists()


def test_an_installer_not_fetched_in_time_installs_nothing_and_says_so(tmp_path: Path) -> None:
    """`curl | sh` ran an empty script, which succeeds, when curl failed: the fetch is its own step."""
    result, calls = _upgrade(tmp_path, 1, "v1.34.9+k3s1", snapshot=False, FETCH_FAILS="28")
    assert result.returncode == 1
    assert calls[1:] == [FETCH]
    assert result.stderr.splitlines()[-1] == (
        "iluvatar: eonwe: k3s's installer was not fetched from https://get.k3s.io within 120 s (curl's exit status 28; 28: the time ran out), "
        "so nothing was installed; look with: curl -sSfL -o /dev/null https://get.k3s.io"
    )
    assert (tmp_path / "version").read_text() == "v1.34.9+k3s1"


def test_an_installer_that_does_not_finish_is_stopped_at_its_bound_and_says_so(tmp_path: Path) -> None:
    """Here a 1 s bound (the program's is INSTALL_SECONDS); `timeout` stops the installer and what it started."""
    # Bounded by the script's `timeout 1`, whose status 124 the line below names; an installer left to run would hold the
    # script through its 600 s sleep, and `_upgrade`'s 60 s timeout raises. Not by the run's wall-clock time.
    result, calls = _upgrade(tmp_path, 1, "v1.34.9+k3s1", snapshot=False, install_timeout=1, INSTALL_HANGS="1")
    assert result.returncode == 1
    assert calls[1:] == [FETCH, "installer started"]
    assert result.stderr.splitlines()[-1] == (
        "iluvatar: eonwe: k3s's installer did not finish within 1 s (it downloads k3s, then restarts k3s-agent, whose unit has no start "
        "timeout): stopped; look with: sudo journalctl -u k3s-agent"
    )


def test_the_program_bounds_the_fetch_and_the_install() -> None:
    stack = load_stack_file(HOMELAB)
    script = k3s.upgrade_script(stack, stack.nodes[1], snapshot=False)
    assert 'curl -sfL --connect-timeout 10 --max-time 120 -o "$installer" https://get.k3s.io || status=$?' in script.splitlines()
    install = (
        'sudo INSTALL_K3S_VERSION=v1.35.8+k3s1 INSTALL_K3S_EXEC=agent K3S_URL=https://192.168.0.10:6443 timeout 1200 sh "$installer" >&2 || status=$?'
    )
    assert install in script.splitlines()
    assert "| sh" not in script


def test_a_pi_that_does_not_come_back_ready_fails_saying_where_to_look(tmp_path: Path) -> None:
    result, _ = _upgrade(tmp_path, 1, "v1.34.9+k3s1", snapshot=False, ready=False)
    assert result.returncode == 1
    assert (
        result.stderr.splitlines()[-1]
        == "iluvatar: eonwe was not Ready at v1.35.8+k3s1 within 3 s of its k3s upgrade; look with: sudo journalctl -u k3s-agent"
    )


def test_a_snapshot_that_never_ends_fails_the_upgrade_within_its_bound_before_anything_changes(tmp_path: Path) -> None:
    """k3s's etcd-snapshot has no bound of its own, and pulumi-command never cancels a remote command once it runs."""
    result, calls = _upgrade(tmp_path, 0, "v1.34.9+k3s1", snapshot=True, snapshot_timeout=1, SNAPSHOT_HANGS="1")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"iluvatar: {socket.gethostname()}: the etcd snapshot before the upgrade failed or did not finish within 1 s (status 124); "
        "look with: sudo journalctl -u k3s"
    )
    assert calls[-1] == "k3s etcd-snapshot save --name iluvatar-before-v1.35.8-k3s1"
    assert (tmp_path / "version").read_text() == "v1.34.9+k3s1"  # nothing installed


def _every_script(stack_path: Path = HOMELAB) -> dict[str, str]:
    """Every script the program runs on a Pi over SSH, by what it is."""
    stack = load_stack_file(stack_path)
    scripts = {"uninstall": k3s.UNINSTALL_SCRIPT, "credentials": credentials_plan.k3s_script()}
    for node in stack.ainur_nodes:
        scripts[f"{node.name} join"] = k3s.join_script(node)
        scripts[f"{node.name} upgrade"] = k3s.upgrade_script(stack, node, snapshot=node.role == "valar")
    return scripts


def test_every_call_a_pi_script_makes_to_an_api_kubelet_or_etcd_is_bounded_on_its_own() -> None:
    """A gate's `wait_for` checks its deadline only between calls: one call that hangs (a server that accepts and never
    answers) would hold the step for ever. Every kubectl carries a request timeout, every curl a --max-time, and k3s's
    snapshot and uninstall run under `timeout`."""
    seen = {"kubectl": 0, "curl": 0, "snapshot": 0}
    for what, script in _every_script().items():
        # Each command of the script: split where a command starts (a line, a pipe, `;`, `&&`, `||`, `$(`).
        for call in (c.strip() for c in re.split(r"\$\(|[|;&\n]", script)):
            if re.match(r"(sudo )?k3s kubectl\b", call):
                seen["kubectl"] += 1
                assert call.startswith(f"{'sudo ' if call.startswith('sudo') else ''}k3s kubectl --request-timeout=10s "), (what, call)
            if re.match(r"(sudo )?curl ", call):
                seen["curl"] += 1
                assert re.search(r" --max-time \d+ ", call), (what, call)
            if "etcd-snapshot save" in call:
                seen["snapshot"] += 1
                assert call.startswith(f"sudo timeout {k3s.SNAPSHOT_SECONDS} k3s etcd-snapshot save "), (what, call)
    assert f'sudo timeout {k3s.UNINSTALL_SECONDS} "$script"' in k3s.UNINSTALL_SCRIPT
    # Every kind of call is there to check (the homelab's 5 Pis: joins, upgrades, the first valar's snapshot).
    assert seen == {"kubectl": 18, "curl": 15, "snapshot": 1}


def test_a_restart_at_the_version_already_waits_for_a_report_from_after_it(tmp_path: Path) -> None:
    """A restart owed on a maia whose Node was Ready at the version before it: Ready at the version stays until the
    node lifecycle controller notices the silence, so the step waits for a heartbeat from after the restart and keeps
    the mark until it comes (unfixed, the old Ready passed at once and the next Pi restarted beside this one)."""
    (tmp_path / "owed").touch()
    result, calls = _upgrade(tmp_path, 1, "v1.35.8+k3s1", snapshot=False, STALE="1")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"iluvatar: {socket.gethostname()}: waited 3 s for its Node Ready again after k3s's restart; still: its Node has not reported "
        "since the restart (last at 2020-01-01T00:00:00Z); look with: sudo journalctl -u k3s-agent"
    )
    assert "systemctl stop k3s-agent" in calls
    assert (tmp_path / "owed").exists()


def test_a_heartbeat_the_old_k3s_posts_as_it_stops_is_not_taken_for_the_new_ones(tmp_path: Path) -> None:
    """The old kubelet's last status post, made while k3s stops, in a second after the one the stop began in
    (LAST_POST); the new k3s never reports. The restart reads the clock only once the old k3s has stopped, so that post
    is no report from after it: the step fails and keeps the mark. With the clock read before a single `systemctl
    restart`, the post was later than it and the step passed on a k3s that never came back."""
    (tmp_path / "owed").touch()
    last = tmp_path / "last-post"
    result, calls = _upgrade(tmp_path, 1, "v1.35.8+k3s1", snapshot=False, LAST_POST=str(last))
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"iluvatar: {socket.gethostname()}: waited 3 s for its Node Ready again after k3s's restart; still: its Node has not reported "
        f"since the restart (last at {last.read_text().strip()}); look with: sudo journalctl -u k3s-agent"
    )
    assert calls[calls.index("systemctl stop k3s-agent") :][:2] == ["systemctl stop k3s-agent", "systemctl start k3s-agent"]
    assert (tmp_path / "owed").exists()


def test_the_restart_gate_reads_the_heartbeat_with_python3_not_date(tmp_path: Path) -> None:
    """Issue 57 (4): the gate read the Node's heartbeat with `date -d`, which the uutils date of Ubuntu 25.10 refuses;
    read as 0, every restart gate waited out its bound and failed, and the restart owed restarted the Pi on every later
    `up`. Read by python3 (plans.k3s.EPOCH_SCRIPT), the restart is seen through with a `date` that reads no time."""
    (tmp_path / "owed").touch()
    result, calls = _upgrade(tmp_path, 1, "v1.35.8+k3s1", snapshot=False)
    assert result.returncode == 0, result.stderr
    assert "systemctl stop k3s-agent" in calls
    assert not (tmp_path / "owed").exists()


@pytest.mark.parametrize(
    ("heartbeat", "why"),
    [
        ("yesterday", "Invalid isoformat string: 'yesterday'"),
        ("2026-11-26T10:00:00", "no time zone"),
    ],
)
def test_a_heartbeat_time_that_cannot_be_read_fails_the_gate_at_once_naming_it(tmp_path: Path, heartbeat: str, why: str) -> None:
    """Issue 57 (4): a time python3 cannot read stops the step naming what it read, rather than waiting out the bound as
    a Pi that has not reported (or passing); the restart stays owed."""
    (tmp_path / "owed").touch()
    result, _ = _upgrade(tmp_path, 1, "v1.35.8+k3s1", snapshot=False, HEARTBEAT=heartbeat)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"iluvatar: {socket.gethostname()}: its Node's last report time cannot be read: {heartbeat!r} is not an RFC 3339 time "
        f"({why}); look with: sudo k3s kubectl --request-timeout=10s --kubeconfig /var/lib/rancher/k3s/agent/kubelet.kubeconfig "
        "get node eonwe -o yaml"
    )
    assert "waited" not in result.stderr
    assert (tmp_path / "owed").exists()


def test_a_node_that_cannot_be_read_leaves_a_running_k3s_alone_and_fails(tmp_path: Path) -> None:
    """Whether the running k3s is at the version is unknown when its Node cannot be read (an API server that does not
    answer within the request timeout, an agent cut off from the servers): the step fails naming it, and restarts
    nothing (unfixed, an empty answer read as another version and restarted a healthy Pi on every run)."""
    result, calls = _upgrade(tmp_path, 1, "v1.35.8+k3s1", snapshot=False, UNREADABLE="1")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "iluvatar: eonwe: its Node cannot be read, so whether the running k3s is v1.35.8+k3s1 is not known and it is left as it is; "
        "look with: sudo k3s kubectl --request-timeout=10s --kubeconfig /var/lib/rancher/k3s/agent/kubelet.kubeconfig get node eonwe"
    )
    assert not [c for c in calls if c.startswith(("systemctl stop", "systemctl restart"))]
    assert not (tmp_path / "owed").exists()


def test_a_node_not_registered_restarts_k3s_which_registers_it(tmp_path: Path) -> None:
    """A Node deleted under a running kubelet is registered again only when the kubelet starts (it registers once): the
    step restarts k3s and waits for its Node (a read that fails is no such answer: the test above)."""
    result, calls = _upgrade(tmp_path, 0, "v1.35.8+k3s1", snapshot=False, NOT_REGISTERED="1")
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[0] == (
        "iluvatar: manwe: k3s v1.35.8+k3s1 is installed, but its Node is not registered (a kubelet registers it only as it starts): restarting k3s"
    )
    assert "systemctl stop k3s" in calls


@pytest.mark.kube
def test_a_node_registers_only_as_a_pi_of_the_inventory_and_a_netbooted_maia_only_tainted(kube_fresh: Any) -> None:
    """The real API server of the test control plane (k3s' flavour: NodeRestriction, Node,RBAC) with the policy the
    program applies: a node identity (a client certificate of system:node:<name>, as k3s' agent gets one) creates its
    own Node only under a Pi's name, and a netbooted maia's only with its taint; an admin is not bound by it. Every
    create is a dry run: what is admitted is not stored."""
    from tests.plans.test_netboot_pis import netbooting
    from tools.kube_cluster import K3S, KubeClient, _leaf

    stack = netbooting()
    cluster = kube_fresh(K3S, components=("etcd", "kube-apiserver"))
    for manifest in k3s.node_admission(stack):
        cluster.client.create(manifest)
    taint = {"key": "iluvatar/boot", "value": "netboot", "effect": "NoExecute"}

    def create(name: str, taints: tuple[dict[str, str], ...] = ()) -> tuple[int, str]:
        pki = cluster.pki
        if not (pki / f"node-{name}.crt").exists():
            _leaf(pki, f"node-{name}", f"/O=system:nodes/CN=system:node:{name}", "clientAuth")
        client = KubeClient(cluster.server, pki / "ca.crt", pki / f"node-{name}.crt", pki / f"node-{name}.key")
        node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "spec": {"taints": list(taints)}}
        status, answer = client.request("POST", "/api/v1/nodes", node, query={"dryRun": "All"})
        client.close()
        return status, answer.get("message", "") if isinstance(answer, dict) else str(answer)

    # The admission plugin loads a new policy from its informer, and no API says when: the wait is for the refusal itself,
    # bounded, each probe a dry run.
    deadline = time.monotonic() + 60
    while (got := create("intruder"))[0] != 403:
        assert time.monotonic() < deadline, f"the API server still admits a Node of a name outside the inventory after 60 s: {got}"
        time.sleep(0.2)
    assert got == (
        403,
        "nodes \"intruder\" is forbidden: ValidatingAdmissionPolicy 'iluvatar-node-registration' with binding "
        "'iluvatar-node-registration' denied request: node intruder is not a Pi of the inventory (eonwe, ilmare, manwe): a join "
        "token does not make a new Pi; add it to iluvatar:nodes",
    )
    assert create("eonwe") == (
        403,
        "nodes \"eonwe\" is forbidden: ValidatingAdmissionPolicy 'iluvatar-node-registration' with binding "
        "'iluvatar-node-registration' denied request: node eonwe netboots and must register with its taint "
        "iluvatar/boot=netboot:NoExecute (its k3s config node-taint)",
    )
    assert create("eonwe", ({**taint, "effect": "NoSchedule"},))[0] == 403
    assert create("eonwe", (taint,))[0] == 201
    assert create("manwe")[0] == 201
    # An admin (kwok, k3s' own server) is not a node identity: not matched.
    status, _ = cluster.client.request(
        "POST", "/api/v1/nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "intruder"}}, query={"dryRun": "All"}
    )
    assert status == 201


# --- k3s's certificates: renewed by a restart within k3s's window --------------------------------------------


_NEW_KEY = ("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
_SIGN = ("openssl", "ca", "-batch", "-config", "ca.cnf", "-in", "leaf.csr", "-out", "leaf.crt", "-notext")


def _issue(tmp_path: Path, path: Path, end: datetime.datetime, cn: str = "kube-apiserver") -> Path:
    """A certificate ending at `end` (whole seconds, UTC) as k3s writes one (the leaf, then its CA), by the real openssl:
    `openssl ca -enddate`, as `openssl x509 -days` takes only days from now."""
    work = tmp_path / "ca"
    work.mkdir(exist_ok=True)
    ca_key, ca_crt = work / "ca.key", work / "ca.crt"
    if not ca_crt.exists():
        subprocess.run(
            [*_NEW_KEY, "-x509", "-keyout", ca_key, "-out", ca_crt, "-subj", "/CN=k3s-server-ca", "-days", "3650"],
            check=True,
            capture_output=True,
        )
        (work / "ca.cnf").write_text(
            "[ca]\ndefault_ca=d\n[d]\ndatabase=index.txt\nnew_certs_dir=.\nserial=serial\ndefault_md=sha256\npolicy=p\nunique_subject=no\n[p]\ncommonName=supplied\n"
        )
    (work / "index.txt").write_text("")
    (work / "serial").write_text(f"{len(list(work.glob('*.pem'))) + 1:02X}\n")
    subprocess.run(
        [*_NEW_KEY, "-keyout", work / "leaf.key", "-out", work / "leaf.csr", "-subj", f"/CN={cn}"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [*_SIGN, "-cert", ca_crt, "-keyfile", ca_key, "-startdate", "20260101000000Z", "-enddate", end.strftime("%Y%m%d%H%M%SZ")],
        check=True,
        capture_output=True,
        cwd=work,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((work / "leaf.crt").read_bytes() + ca_crt.read_bytes())
    return path


def _in_days(days: int) -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0) + datetime.timedelta(days=days)


def _at(when: datetime.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_the_window_is_k3s_s_own_at_the_pinned_version() -> None:
    """k3s renews a certificate as it starts when it ends within 120 days (pkg/daemons/config/types.go
    CertificateRenewDays, 120 since v1.33.1+k3s1): the pinned k3s is past that."""
    assert k3s.CERTIFICATE_RENEW_DAYS == 120
    from stacks import pins, versions

    assert versions.k3s_release(pins.K3S) >= (1, 33, 1)


def test_a_certificate_within_k3s_s_window_restarts_k3s_which_renews_it_and_the_step_says_the_new_end(tmp_path: Path) -> None:
    """k3s at the version and running, its Node at it, but its client certificate ends in 100 days: k3s renews it only
    as it starts, so the step restarts it (gated as any restart) and ends its stdout with the renewed end. On today's
    main the step left it running, and the certificate expired a year after the Pi's last restart."""
    soon, later, renewed_end = _in_days(100), _in_days(200), _in_days(465)
    cert = _issue(tmp_path, tmp_path / "tls" / "client-admin.crt", soon, cn="system:admin")
    _issue(tmp_path, tmp_path / "agent" / "serving-kubelet.crt", later)
    # A CA ending sooner is no reason: k3s never renews its CAs (ten years). It is in the metric, labelled a CA (its own
    # alert, AinurCACertificateExpiring): before, no CA was, and nothing said when one ends.
    ca_end = _in_days(10)
    ca = _issue(tmp_path, tmp_path / "tls" / "server-ca.crt", ca_end)
    renewed = _issue(tmp_path, tmp_path / "renewed.crt", renewed_end, cn="system:admin")
    result, calls = _upgrade(tmp_path, 0, "v1.35.8+k3s1", snapshot=True, RENEWED=str(renewed), RENEWS=str(cert))
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[0] == (
        f"iluvatar: manwe: k3s v1.35.8+k3s1 is installed, but its certificate {cert} ends at {_at(soon)}, within 120 days, "
        "and k3s renews its certificates only as it starts: restarting k3s"
    )
    assert calls == [
        "k3s --version",
        "systemctl is-active --quiet k3s",
        NODE_VERSION,
        *ETCD_GATE,
        "systemctl stop k3s",
        "systemctl start k3s",
        NODE_AT,
        NODE_READY.format("manwe"),
        *ETCD_GATE,
        # Its API VIP kube-vip restarted, so it reads the admin kubeconfig k3s wrote as it started.
        *KUBE_VIP_RESTART,
    ]
    # The earliest after the restart: the kubelet's serving certificate, in 200 days.
    assert result.stdout.splitlines()[-1] == f"k3s-certificates-end={_at(later)}"
    metric = "iluvatar_k3s_certificate_end_seconds"
    assert (tmp_path / "metrics" / "k3s-certificates.prom").read_text() == (
        f"# HELP {metric} When a k3s certificate ends (NotAfter), seconds since the epoch.\n"
        f"# TYPE {metric} gauge\n"
        f'{metric}{{certificate="{cert}"}} {int(renewed_end.timestamp())}\n'
        f'{metric}{{certificate="{tmp_path / "agent" / "serving-kubelet.crt"}"}} {int(later.timestamp())}\n'
        f'{metric}{{certificate="{ca}",ca="true"}} {int(ca_end.timestamp())}\n'
    )
    # As Prometheus's own linter reads the exposition node-exporter's textfile collector serves.
    lint = subprocess.run(
        [str(gotools.build("promtool")), "check", "metrics"],
        input=(tmp_path / "metrics" / "k3s-certificates.prom").read_text(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (lint.returncode, lint.stdout, lint.stderr) == (0, "", "")


@pytest.mark.parametrize(("before", "after"), [(0o700, 0o755), (0o750, 0o750), (0o755, 0o755)])
def test_the_certificate_writer_gives_a_0700_textfile_parent_0755(tmp_path: Path, before: int, after: int) -> None:
    """node-exporter reads the textfile directory as uid 65534: the k3s step's writer, run on every `up`, gives back
    0755 to a parent an older secrets switch left 0700, and leaves any other mode as it is."""
    _issue(tmp_path, tmp_path / "tls" / "client-admin.crt", _in_days(300), cn="system:admin")
    iluvatar = tmp_path / "iluvatar"
    (iluvatar / "metrics").mkdir(parents=True)
    iluvatar.chmod(before)
    metrics = iluvatar / "metrics" / "k3s-certificates.prom"
    done = subprocess.run(
        ["python3", "-c", k3s.CERTIFICATES_SCRIPT, "--metrics", str(metrics), str(tmp_path / "tls")], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert (stat.S_IMODE(iluvatar.stat().st_mode), metrics.exists()) == (after, True)


def test_the_controller_manager_and_scheduler_certificates_are_in_the_metric_but_not_the_renewal(tmp_path: Path) -> None:
    """kube-controller-manager's and kube-scheduler's serving certificates (k3s v1.33.1 and later, folders of their own):
    counted in the metric, so AinurCertificateExpiring fires 30 days before their end, but not in the earliest end the
    renewal is keyed on. Before, they were in neither, and could end between two renewals with no alert."""
    leaf = _issue(tmp_path, tmp_path / "tls" / "client-admin.crt", _in_days(300), cn="system:admin")
    scheduler_end = _in_days(20)
    scheduler = _issue(tmp_path, tmp_path / "tls" / "kube-scheduler" / "kube-scheduler.crt", scheduler_end, cn="kube-scheduler")
    metrics = tmp_path / "metrics" / "k3s-certificates.prom"
    done = subprocess.run(
        [
            "python3",
            "-c",
            k3s.CERTIFICATES_SCRIPT,
            "--metrics",
            str(metrics),
            str(tmp_path / "tls"),
            "--also",
            str(tmp_path / "tls" / "kube-scheduler"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[2] == str(leaf)  # the earliest the renewal reads: not the scheduler's
    assert f'iluvatar_k3s_certificate_end_seconds{{certificate="{scheduler}"}} {int(scheduler_end.timestamp())}' in metrics.read_text().splitlines()
    assert k3s.K3S_METRIC_ONLY_DIRS == (
        "/var/lib/rancher/k3s/server/tls/kube-controller-manager",
        "/var/lib/rancher/k3s/server/tls/kube-scheduler",
    )
    assert (
        " --also /var/lib/rancher/k3s/server/tls/kube-controller-manager /var/lib/rancher/k3s/server/tls/kube-scheduler"
        in k3s.certificates_functions()
    )


def test_certificates_outside_the_window_leave_k3s_running_and_the_step_says_their_end(tmp_path: Path) -> None:
    """121 days left: k3s would not renew it on a restart, so nothing restarts; the step still says when it ends."""
    end = _in_days(121)
    _issue(tmp_path, tmp_path / "tls" / "etcd" / "client.crt", end, cn="etcd-client")
    result, calls = _upgrade(tmp_path, 0, "v1.35.8+k3s1", snapshot=True)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "iluvatar: k3s v1.35.8+k3s1 already runs on manwe"
    assert not [c for c in calls if c.startswith(("systemctl stop", "systemctl restart"))]
    assert result.stdout == f"k3s-certificates-end={_at(end)}\n"


def test_a_certificate_that_cannot_be_read_fails_the_step_and_restarts_nothing(tmp_path: Path) -> None:
    (tmp_path / "agent").mkdir()
    (tmp_path / "agent" / "client-kubelet.crt").write_text("not a certificate\n")
    result, calls = _upgrade(tmp_path, 1, "v1.35.8+k3s1", snapshot=False)
    assert result.returncode == 1
    assert result.stderr.splitlines()[0].startswith(f"{tmp_path / 'agent' / 'client-kubelet.crt'} cannot be read as a certificate: ")
    assert result.stderr.splitlines()[-1] == (
        "iluvatar: eonwe: its k3s certificates cannot be read, so whether k3s must restart to renew them is not known and it is left as it is"
    )
    assert not [c for c in calls if c.startswith(("systemctl stop", "systemctl restart"))]


@pytest.mark.parametrize(("index", "svc"), [(0, "k3s"), (1, "k3s-agent")])
def test_an_ended_certificate_restarts_k3s_without_asking_its_api_or_etcd_first(tmp_path: Path, index: int, svc: str) -> None:
    """Every leaf ended two days ago (the window missed, the alert unseen): the API server, the kubelet's kubeconfig and
    etcd's client certificate all fail (the stand-in's $ENDED), so the Node's version cannot be read and etcd's gate
    cannot pass. The step restarts k3s at once, which regenerates them as it starts (deps.go createClientCertKey,
    `expired`), then runs the gates after it. Before, it stopped at "its Node cannot be read" and never restarted."""
    ended, renewed_end = _in_days(-2), _in_days(365)
    cert = _issue(tmp_path, tmp_path / "tls" / "client-admin.crt", ended, cn="system:admin")
    renewed = _issue(tmp_path, tmp_path / "renewed.crt", renewed_end, cn="system:admin")
    (tmp_path / "ended").touch()
    result, calls = _upgrade(
        tmp_path, index, "v1.35.8+k3s1", snapshot=index == 0, RENEWED=str(renewed), RENEWS=str(cert), ENDED=str(tmp_path / "ended")
    )
    assert result.returncode == 0, result.stderr
    name = "manwe" if index == 0 else "eonwe"
    assert result.stderr.splitlines()[0] == (
        f"iluvatar: {name}: k3s v1.35.8+k3s1 is installed, but its certificate {cert} ended at {_at(ended)} (or ends within 3600 s), "
        f"so neither its Node nor etcd can be asked through it, and k3s renews it only as it starts: restarting {svc}"
    )
    # Nothing asked before the restart; the gates after it.
    assert calls[:4] == ["k3s --version", f"systemctl is-active --quiet {svc}", f"systemctl stop {svc}", f"systemctl start {svc}"]
    if index == 0:
        assert calls[4:] == [NODE_AT, NODE_READY.format("manwe"), *ETCD_GATE, *KUBE_VIP_RESTART]
    assert result.stdout.splitlines()[-1] == f"k3s-certificates-end={_at(renewed_end)}"


def test_a_valars_certificate_restart_restarts_its_api_vip_kube_vip_which_read_the_old_admin_certificate(tmp_path: Path) -> None:
    """The API VIP's kube-vip holds the admin certificate k3s.yaml had when it started, and k3s's restart leaves its
    container running: a follower kept the old certificate after k3s renewed it, and once that one ended it could never
    take the VIP. After k3s restarts on a valar (its gates passed), the step stops that container and waits for the
    kubelet's new one, which reads the renewed file. Before, the step ended at etcd's gate and the old container ran on."""
    soon, renewed_end = _in_days(100), _in_days(465)
    cert = _issue(tmp_path, tmp_path / "tls" / "client-admin.crt", soon, cn="system:admin")
    renewed = _issue(tmp_path, tmp_path / "renewed.crt", renewed_end, cn="system:admin")
    result, calls = _upgrade(tmp_path, 0, "v1.35.8+k3s1", snapshot=True, RENEWED=str(renewed), RENEWS=str(cert))
    assert result.returncode == 0, result.stderr
    assert calls[calls.index("systemctl stop k3s") :] == [
        "systemctl stop k3s",
        "systemctl start k3s",
        NODE_AT,
        NODE_READY.format("manwe"),
        *ETCD_GATE,
        *KUBE_VIP_RESTART,
    ]
    assert result.stderr.splitlines()[-1] == (
        "iluvatar: manwe: restarting its API VIP kube-vip (kv1), which read k3s's admin kubeconfig only as it started"
    )
    assert (tmp_path / "kube-vip").read_text() == "kv1-restarted\n"


def test_a_kube_vip_the_kubelet_does_not_start_again_fails_the_step_within_its_bound_and_stays_owed(tmp_path: Path) -> None:
    """A stopped kube-vip that no new container replaces: the step fails, naming it, after its bound, and the restart
    stays owed, so the next run restarts k3s and its kube-vip again. A Pi whose k3s did not restart asks nothing of it."""
    result, calls = _upgrade(tmp_path, 0, "v1.35.8+k3s1", snapshot=True, active=False, KUBE_VIP_STAYS_DOWN="1")
    assert result.returncode == 1
    stop = calls.index("k3s crictl stop --timeout 10 kv1")
    assert calls[stop - 1] == KUBE_VIP_PS and set(calls[stop + 1 :]) == {KUBE_VIP_PS}  # asked again until its bound
    assert result.stderr.splitlines()[-1] == (
        f"iluvatar: {socket.gethostname()}: waited 3 s for its API VIP kube-vip started again by the kubelet; still: no "
        "kube-vip container runs but the one stopped (kv1); look with: sudo journalctl -u k3s"
    )
    assert (tmp_path / "owed").exists()
    (tmp_path / "owed").unlink()
    result, calls = _upgrade(tmp_path, 0, "v1.35.8+k3s1", snapshot=True)
    assert result.returncode == 0, result.stderr
    assert not [c for c in calls if "crictl" in c]


def test_a_restart_that_does_not_move_the_end_fails_the_step_so_the_next_up_tries_again(tmp_path: Path) -> None:
    """A restart for the certificates after which the earliest end is still within the window (k3s did not renew it: a
    Pi's clock behind, a certificate k3s does not own) fails the step naming the certificate and the Pi's clock; before,
    it succeeded, and the trigger, recorded, never ran the step again for that end."""
    soon = _in_days(100)
    cert = _issue(tmp_path, tmp_path / "tls" / "client-admin.crt", soon, cn="system:admin")
    result, calls = _upgrade(tmp_path, 0, "v1.35.8+k3s1", snapshot=True, renewing=_at(soon))
    assert result.returncode == 1
    assert "systemctl stop k3s" in calls
    last = result.stderr.splitlines()[-1]
    assert last.startswith(f"iluvatar: manwe: k3s restarted to renew its certificates, but {cert} still ends at {_at(soon)} (this Pi's clock says ")
    assert last.endswith(f"; the run renews those ending by {_at(soon)}); look with: sudo k3s certificate check --output table")
    assert k3s.CERTIFICATES_LINE not in result.stdout


def test_a_pi_whose_clock_is_behind_is_not_restarted_for_nothing_and_the_chain_goes_on(tmp_path: Path) -> None:
    """The operator's clock put the recorded end within the trigger's window, the Pi's clock (two days behind: no RTC,
    NTP not yet synced) outside k3s's 120 days. k3s renews by the Pi's own clock (deps.go IsCertExpired: time.Now()), so
    a restart renews nothing: before, the step restarted k3s (on a valar, the Ainur's API down) and failed on the end
    that did not move, holding every Pi after it, at every `up` for as long as the clock was behind. Now: no restart,
    success, a warning naming the Pi and its clock, and the clock line the next run reads back to try again."""
    end = _in_days(121)
    cert = _issue(tmp_path, tmp_path / "tls" / "client-admin.crt", end, cn="system:admin")
    renewed = _issue(tmp_path, tmp_path / "renewed.crt", _in_days(465), cn="system:admin")
    result, calls = _upgrade(tmp_path, 0, "v1.35.8+k3s1", snapshot=True, renewing=_at(end), RENEWED=str(renewed), RENEWS=str(cert))
    assert result.returncode == 0, result.stderr
    assert not [c for c in calls if c.startswith(("systemctl stop", "systemctl restart"))]
    [warning] = [line for line in result.stderr.splitlines() if line.startswith("iluvatar: warning: manwe: its clock says ")]
    assert f", by which {cert} (ending {_at(end)}) is not within k3s's 120 days, and k3s renews by its own clock: " in warning
    assert warning.endswith(
        f"this run renews those ending by {_at(end)}, from 119 days before by the operator's clock, so the Pi's clock is "
        "behind: set it (look with: timedatectl status) and run pulumi up again"
    )
    clock, line = result.stdout.splitlines()
    assert clock.startswith(k3s.CLOCK_LINE) and line == f"k3s-certificates-end={_at(end)}"
    assert rollout.certificates_clock(result.stdout) == clock.removeprefix(k3s.CLOCK_LINE)


def test_a_pi_whose_clock_was_behind_gets_a_new_trigger_until_its_step_finds_it_set() -> None:
    """The clock its step found is recorded: the next run's trigger names it, so the step runs again (a trigger that
    stayed the same ran nothing more, and the certificates ended); the end it renews is read from it all the same."""
    end = "2027-03-01T00:00:00Z"
    now = datetime.datetime(2026, 11, 20, tzinfo=datetime.UTC)
    plain = {"certificates": {"manwe": {"end": end, "trigger": f"renew the k3s certificates ending {end}", "clock": None}}}
    behind = {"certificates": {"manwe": {"end": end, "trigger": f"renew the k3s certificates ending {end}", "clock": "2026-11-17T10:00:00Z"}}}
    assert rollout.certificate_trigger(plain, "manwe", now) == f"renew the k3s certificates ending {end}"
    again = rollout.certificate_trigger(behind, "manwe", now)
    assert again == f"renew the k3s certificates ending {end} (its clock said 2026-11-17T10:00:00Z at the last run)"
    assert rollout.renewing_end(again) == end
    assert rollout.clock_warning(plain, "manwe") is None
    assert rollout.clock_warning(behind, "manwe") == (
        f"ainur: manwe: at the last run its clock said 2026-11-17T10:00:00Z, by which its k3s certificates (ending {end}) were "
        "not within k3s's 120 days; k3s renews them by the Pi's own clock, so its step restarted nothing; set its clock (look "
        "with: timedatectl status): this run's k3s step tries again"
    )


def test_the_pis_node_exporter_reads_the_metric_file_the_k3s_step_writes() -> None:
    """The certificates' ends reach Arda's Prometheus (the alert AinurCertificateExpiring) through node-exporter's
    textfile collector on each Pi, which reads the Pi's root mounted at /host/root."""
    from plans import monitoring

    daemonset = next(m for m in monitoring.ainur_node_exporter() if m["kind"] == "DaemonSet")
    args = daemonset["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--collector.textfile.directory=/host/root/var/lib/rancher/iluvatar/metrics" in args
    assert k3s.certificates_functions().count("--metrics /var/lib/rancher/iluvatar/metrics/k3s-certificates.prom ") == 1


def test_the_day2_lifetime_table_names_what_the_code_counts_and_alerts() -> None:
    """docs/day2.md's table of the Ainur's certificates: the folders the metric counts are the code's (K3S_TLS_DIRS),
    every alert it names is one the homelab raises, and the certificates the code does not count say so."""
    from plans import monitoring
    from stacks import load_stack_file

    text = (Path(__file__).resolve().parents[2] / "docs" / "day2.md").read_text()
    table = text.split("What lasts how long on the Ainur, and what renews it:", 1)[1].lstrip("\n").split("\n\n", 1)[0]
    rows = table.strip().splitlines()[2:]
    counted = [r for r in rows if "not counted" not in r]
    assert [r.split("|")[1].strip() for r in counted] == [
        "k3s leaf certificates (component clients, API server, etcd)",
        "kubelet and kube-proxy certificates",
        "kube-controller-manager and kube-scheduler serving certificates",
        "k3s CAs (`*-ca.crt`)",
    ]
    cells = {f for r in counted for f in r.split("|")[2].replace(",", " ").split() if f.startswith("`")}
    folders = {f"`{d.removeprefix('/var/lib/rancher/k3s/')}/*.crt`" for d in (*k3s.K3S_TLS_DIRS, *k3s.K3S_METRIC_ONLY_DIRS)}
    cas = {f"`{d.removeprefix('/var/lib/rancher/k3s/')}/*-ca.crt`" for d in k3s.K3S_TLS_DIRS}
    assert cells == folders | cas
    alerts = {a.name for a in monitoring.alerts(load_stack_file(HOMELAB))}
    named = set(re.findall(r"`(Ainur\w+)`", table))
    assert named == {"AinurCertificateExpiring", "AinurCACertificateExpiring", "AinurCertificateUnknown"} and named <= alerts
    assert len(rows) - len(counted) == 2  # dynamiclistener's, kube-vip's copy of the admin certificate


def test_a_valar_of_several_whose_certificates_ended_names_the_by_hand_runbook_before_it_restarts() -> None:
    """Several valar whose certificates all ended: one valar's restart cannot reach etcd's quorum (its peers' peer
    certificates ended too) and waits out its bound; the step now says, before that restart, which runbook restarts them
    all at once. Before, it failed naming journalctl only. One valar (the homelab) needs no such line."""
    line = (
        'if [ "$expired" = 1 ]; then echo "iluvatar: eonwe: its certificates ended: if every valar\'s did too, restarting them '
        "one at a time cannot bring back etcd's quorum: restart k3s on every valar at once, by hand "
        '(docs/day2.md#the-ainurs-k3s-certificates, Ended certificates, by hand)" >&2; fi\n'
    )
    stack = three_servers()
    script = k3s.upgrade_script(stack, next(n for n in stack.nodes if n.name == "eonwe"), snapshot=False)
    restart = script.split('restarting k3s" >&2\n', 1)[1]
    assert restart.lstrip().startswith(line.strip()), restart[:400]
    homelab = load_stack_file(HOMELAB)
    assert "every valar at once" not in k3s.upgrade_script(homelab, homelab.nodes[0], snapshot=True)


def _watch(tmp_path: Path, outage: k3s.Outage, failures: int) -> tuple[int, list[str]]:
    """The outage watcher run by sh on a stand-in valar: `sudo` runs what it is given, and `k3s kubectl ... /readyz`
    fails `failures` times after the watcher starts (k3s restarting), then answers, but only when asked at
    `outage.server` (kube-vip-services' address; k3s's local API answers throughout). The watcher's clock is the test's:
    `date +%s` reads a count that each `sleep 1` adds one to (and sleeps a hundredth), so what it measures is its polls'
    count, whatever the machine's load. Returns the seconds it measured and what it said."""
    bin_ = tmp_path / "bin"
    bin_.mkdir(parents=True)
    fails, clock = tmp_path / "fails", tmp_path / "clock"
    clock.write_text("1000\n")
    (bin_ / "sudo").write_text('#!/bin/sh\nexec "$@"\n')
    (bin_ / "k3s").write_text(
        '#!/bin/sh\ncase " $* " in *" --server ' + outage.server + ' get --raw /readyz "*) ;; *) exit 0 ;; esac\n'
        f'n=$(cat {fails} 2>/dev/null || echo 0)\nif [ "$n" -gt 0 ]; then echo $((n - 1)) > {fails}; exit 1; fi\nexit 0\n'
    )
    (bin_ / "date").write_text(f'#!/bin/sh\n[ "$*" = +%s ] && exec cat {clock}\nexec /bin/date "$@"\n')
    (bin_ / "sleep").write_text(f'#!/bin/sh\n[ "$*" = 1 ] || exec /bin/sleep "$@"\necho $(($(cat {clock}) + 1)) > {clock}\nexec /bin/sleep 0.01\n')
    for name in ("sudo", "k3s", "date", "sleep"):
        (bin_ / name).chmod(0o755)
    [valar] = [n for n in load_stack_file(HOMELAB).ainur_nodes if n.role == "valar"]
    script = (
        "set -eu\n"
        + k3s.outage_functions(valar, outage, 120)
        + f"api_watch_start\necho {failures} > {fails}\n"
        # The step reports once it has seen k3s serve again; here, once the watcher has seen the API answer again (its
        # file's second field).
        + 'until [ -n "$(cut -s -d" " -f2 "$api_watch/watch" 2>/dev/null)" ]; do sleep 0.1; done\napi_watch_report\n'
    )
    done = subprocess.run(["sh", "-c", script], env={"PATH": f"{bin_}:/usr/bin:/bin"}, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    said = done.stderr.splitlines()
    found = re.fullmatch(
        rf"iluvatar: {valar.name}: the Ainur's API \(its one valar, at {re.escape(outage.server)}, where kube-vip-services reaches it\) "
        r"did not answer for about (\d+) s while k3s restarted",
        said[0],
    )
    assert found, said
    return int(found.group(1)), said[1:]


def test_the_one_valars_restart_says_how_long_the_api_was_down_and_warns_past_what_the_service_address_rides_out(tmp_path: Path) -> None:
    """Three polls a second apart unanswered: the watcher measures 3 s, from its first unanswered poll to its first
    answered one. Past what the election rides out (here 1 s, to keep the test short: the program's is 19 s), a warning
    with the household's loss; within it, none."""
    down, rest = _watch(tmp_path / "past", k3s.Outage(ridden=1, dropped=1, back=2.2, server=k3s.KUBERNETES_SERVICE_URL), 3)
    assert down == 3
    assert rest == [
        "iluvatar: warning: manwe: that is longer than the 1 s the service address's election rides out: kube-vip let the "
        "address go 1 s in, so the household was without DNS (and DHCP in dhcp mode) for about 2 to 5 s; "
        "look with: sudo journalctl -u k3s (how long k3s took to serve)"
    ]
    assert _watch(tmp_path / "within", k3s.Outage(ridden=19, dropped=20, back=2.2, server=k3s.KUBERNETES_SERVICE_URL), 3) == (3, [])


def test_only_the_one_valars_join_and_k3s_step_measure_the_apis_outage() -> None:
    """With one valar (the homelab) its join and k3s step watch the API through the restart of a running k3s, with the
    service election's figures; with several, no step does (the API stays up on the others), nor does a maia's."""
    stack = load_stack_file(HOMELAB)
    [valar] = stack.by_role("valar")
    # Polled where every Pi's kube-vip-services reaches the API with one valar: the `kubernetes` ClusterIP.
    assert roll.outage(stack, valar) == k3s.Outage(ridden=19, dropped=20, back=2.2, server="https://10.43.0.1:443")
    assert k3s.services_api(stack) is None and k3s.services_api(three_servers()) == "https://192.168.0.10:6443"
    assert "--server https://10.43.0.1:443 get --raw /readyz" in roll.join_script(stack, valar)
    join, upgrade = roll.join_script(stack, valar), roll.k3s_script(stack, valar)
    # Started before the stop, which takes the API down.
    assert 'if [ "$changed" = 1 ] && [ "$active" = 1 ]; then api_watch_start; fi\nif [ "$changed" = 1 ]; then verb=restart;' in join
    assert 'done\n[ -z "$api_watch" ] || api_watch_report\n' in join
    assert upgrade.count("if sudo systemctl is-active --quiet k3s; then api_watch_start; fi\n") == 2  # the restart, the install
    assert '[ -z "$api_watch" ] || api_watch_report\n' in upgrade
    assert "election rides out" in join and "election rides out" in upgrade
    for node in stack.by_role("maiar"):
        assert "api_watch" not in roll.join_script(stack, node) + roll.k3s_script(stack, node)
    three = three_servers()
    for node in three.by_role("valar"):
        assert roll.outage(three, node) is None
        assert "api_watch" not in roll.join_script(three, node) + roll.k3s_script(three, node)


def test_the_outage_watcher_stops_with_its_step_and_leaves_no_file(tmp_path: Path) -> None:
    """A step that fails between the watcher's start and its report (k3s not serving within its bound): the watcher
    sees the step's shell gone, stops polling and removes its file, though its own bound (here 600 s) is far off. Each
    poll carries a 2 s request timeout, the last on kubectl's line (the one that counts)."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    calls = tmp_path / "calls"
    (bin_ / "sudo").write_text('#!/bin/sh\nexec "$@"\n')
    # The API down: every poll fails, and says how it was called.
    (bin_ / "k3s").write_text(f'#!/bin/sh\necho "$*" >> {calls}\nexit 1\n')
    for name in ("sudo", "k3s"):
        (bin_ / name).chmod(0o755)
    [valar] = [n for n in load_stack_file(HOMELAB).ainur_nodes if n.role == "valar"]
    script = (
        "set -eu\n"
        + k3s.outage_functions(valar, k3s.Outage(ridden=19, dropped=20, back=2.2, server=k3s.KUBERNETES_SERVICE_URL), 600)
        + 'api_watch_start\necho "$api_watcher $api_watch"\n'
        # The step goes on only once the watcher has polled (its first unanswered poll noted), then fails. The record's
        # folder is the step user's alone.
        + 'until [ -s "$api_watch/watch" ]; do sleep 0.1; done\nstat -c %a "$api_watch"\nexit 1\n'
    )
    done = subprocess.run(["sh", "-c", script], env={"PATH": f"{bin_}:/usr/bin:/bin"}, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1, done.stderr
    pid, watch, mode = done.stdout.split()
    assert mode == "700"

    def ended() -> bool:
        status = Path(f"/proc/{pid}/status")
        try:
            return "\nState:\tZ" in status.read_text()
        except FileNotFoundError:
            return True

    deadline = time.monotonic() + 10
    try:
        while not ended():
            assert time.monotonic() < deadline, "the watcher still polls 10 s after its step ended"
            time.sleep(0.1)
    finally:
        if not ended():
            os.kill(int(pid), signal.SIGKILL)
    assert not Path(watch).exists()
    assert calls.read_text().splitlines()[0] == "kubectl --request-timeout=10s --request-timeout=2s --server https://10.43.0.1:443 get --raw /readyz"


def test_a_report_made_while_the_watcher_writes_reads_what_it_wrote(tmp_path: Path) -> None:
    """The report asks the watcher to stop and waits for it, so a record the watcher was writing is read whole: here its
    first unanswered poll, whose rename is under way when the report begins (a `mv` that takes a second). A report
    that stopped the watcher by a signal there read no record, and said the API had answered every poll."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    moving = tmp_path / "moving"
    (bin_ / "sudo").write_text('#!/bin/sh\nexec "$@"\n')
    # The API down for good: every poll fails.
    (bin_ / "k3s").write_text("#!/bin/sh\nexit 1\n")
    (bin_ / "mv").write_text(f'#!/bin/sh\ntouch {moving}\n/bin/sleep 1\nexec /bin/mv "$@"\n')
    for name in ("sudo", "k3s", "mv"):
        (bin_ / name).chmod(0o755)
    [valar] = [n for n in load_stack_file(HOMELAB).ainur_nodes if n.role == "valar"]
    script = (
        "set -eu\n"
        + k3s.outage_functions(valar, k3s.Outage(ridden=19, dropped=20, back=2.2, server=k3s.KUBERNETES_SERVICE_URL), 600)
        + f"api_watch_start\nfolder=$api_watch\nuntil [ -e {moving} ]; do /bin/sleep 0.05; done\napi_watch_report\n"
        + 'test -n "$folder" && test ! -e "$folder" && echo "folder gone"\n'
    )
    done = subprocess.run(["sh", "-c", script], env={"PATH": f"{bin_}:/usr/bin:/bin"}, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(
        r"iluvatar: manwe: the Ainur's API stopped answering at \d\d:\d\d:\d\d and its watcher did not see it back, so how long it "
        r"was down is not known\n",
        done.stderr,
    ), done.stderr
    assert done.stdout == "folder gone\n"


# k3s's status as its CLI prints it (pkg/cli/secretsencrypt/secrets_encrypt.go Status, index 025949a): the three lines,
# then a table whose Name column is encryptionStatus's "AES-CBC <name>". With the config identity first the key is an
# inactive row only (encryptionStatus: an identity provider ends `active`); with no config, the one line.
OFF_ACTIVE_ROW = " *      AES-CBC   AES-CBC aescbckey\n"
OFF_INACTIVE_ROW = "        AES-CBC   AES-CBC aescbckey\n"
# The config k3s writes (WriteEncryptionConfig: json.Marshal of the EncryptionConfiguration, aescbc then identity to
# enable, identity then aescbc to disable), the key's secret left out.
K3S_ENCRYPTION_CONFIG = {
    "enabled": '{"kind":"EncryptionConfiguration","apiVersion":"apiserver.config.k8s.io/v1","resources":[{"resources":["secrets"],"providers":[{"aescbc":{"keys":[{"name":"aescbckey","secret":"K"}]}},{"identity":{}}]}]}',
    "disabled": '{"kind":"EncryptionConfiguration","apiVersion":"apiserver.config.k8s.io/v1","resources":[{"resources":["secrets"],"providers":[{"identity":{}},{"aescbc":{"keys":[{"name":"aescbckey","secret":"K"}]}}]}]}',
    # After rotate-keys: the new key alone (AppendNewEncryptionKey's name, reencryptAndRemoveKey's drop of the old).
    "rotated": '{"kind":"EncryptionConfiguration","apiVersion":"apiserver.config.k8s.io/v1","resources":[{"resources":["secrets"],"providers":[{"aescbc":{"keys":[{"name":"aescbckey-2026-11-27T13:00:00Z","secret":"R"}]}},{"identity":{}}]}]}',
}


class SwitchValar:
    """The first valar for the on and off steps: a stand-in `k3s` whose config file (`config`: enabled, disabled or none)
    and rotation stage are k3s's, the config its API server loaded apart from the file, and a stand-in `systemctl`.
    What k3s does (pkg/server/handlers/secrets-encrypt.go, index 0b6425a):
    - `enable`/`disable` (encryptionEnable) write the config file and nothing the API server loaded, then rewrite inline
      with skip (the stage goes back to the saved one). With `giveup` the CLI fails as its 10 s client timeout ends it
      (pkg/clientaccess/token.go defaultClientTimeout; k3s-io/k3s#11384) while the server wrote the file all the same.
    - `reencrypt` marks the stage reencrypt_active before it answers and rewrites every Secret under the config the API
      server loaded (`rewritten`); the stand-in's next status reads the stage active once, then the saved one (the
      goroutine's reencryptAndRemoveKey with skip, BootstrapEncryptionHashAnnotation).
    - `status` reads the file (encryptionStatus: GetEncryptionProviders), whatever the API server loaded; on a server
      without the flag (no file `flag`) k3s never sets the file's path (deps.go: `if config.EncryptSecrets {
      runtime.EncryptionConfig = ... }`), so the read of "" fails and the CLI says no configuration file found, whatever
      file is kept.
    - `systemctl restart k3s` loads the file.
    - `rotate-keys` (encryptionRotateKeys) writes a config with a new key, waits for the API server to load it
      (WaitForEncryptionConfigReload), rewrites every Secret under it and ends at reencrypt_finished with that key alone.
    A file `fail-restart` or `fail-reencrypt` fails that call once, as a step cut short there."""

    def __init__(self, tmp_path: Path, config: str, servers: int = 1) -> None:
        self.dir = tmp_path
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        self.config = tmp_path / "encryption-config.json"
        # /var/lib/rancher/iluvatar as the k3s step leaves it: made by `mkdir -p` under root's umask, with node-exporter's
        # textfile directory in it.
        self.iluvatar = tmp_path / "iluvatar"
        (self.iluvatar / "metrics").mkdir(parents=True)
        for folder in (self.iluvatar, self.iluvatar / "metrics"):
            folder.chmod(0o755)
        self.mark = self.iluvatar / "secrets" / "switched"
        self.log = tmp_path / "log"
        (tmp_path / "stage").write_text("reencrypt_finished\n")
        (tmp_path / "flag").touch()
        (tmp_path / "servers").write_text("".join(f"node/valar{i}\n" for i in range(servers)))
        if config != "none":
            self.config.write_text(K3S_ENCRYPTION_CONFIG[config])
            (tmp_path / "loaded").write_text(K3S_ENCRYPTION_CONFIG[config])
        for name, text in {"active": OFF_ACTIVE_ROW, "inactive": OFF_INACTIVE_ROW}.items():
            (tmp_path / f"row-{name}").write_text(text)
        for name, text in K3S_ENCRYPTION_CONFIG.items():
            (tmp_path / f"config-{name}").write_text(text)
        d, conf = tmp_path, self.config
        (self.bin / "sudo").write_text('#!/bin/sh\nexec "$@"\n')
        (self.bin / "systemctl").write_text(
            f"""#!/bin/sh
echo "systemctl $*" >> {d}/log
case "$1" in
  restart) if [ -e {d}/fail-restart ]; then rm {d}/fail-restart; exit 1; fi; cp {conf} {d}/loaded ;;
esac
"""
        )
        (self.bin / "k3s").write_text(
            f"""#!/bin/sh
echo "$*" >> {d}/log
case "$1" in
  kubectl) cat {d}/servers; exit 0 ;;
esac
switch() {{
  cp {d}/config-$1 {conf}
  if [ -e {d}/giveup ]; then echo "Error: see server log for details: context deadline exceeded (Client.Timeout exceeded while awaiting headers)" >&2; exit 1; fi
  echo "secrets-encryption $1"
}}
case "$2" in
  status)
    if [ ! -e {d}/flag ] || [ ! -e {conf} ]; then echo "Encryption Status: Disabled, no configuration file found"; exit 0; fi
    stage=$(cat {d}/stage)
    if [ -e {d}/active ]; then rm {d}/active; stage=reencrypt_active; fi
    if grep -q '"providers":\\[{{"aescbc"' {conf}; then word=Enabled; row=active; else word=Disabled; row=inactive; fi
    printf 'Encryption Status: %s\\nCurrent Rotation Stage: %s\\nServer Encryption Hashes: All hashes match\\n\\nActive  Key Type  Name\\n------  --------  ----\\n' "$word" "$stage"
    cat {d}/row-$row ;;
  enable) switch enabled ;;
  disable) switch disabled ;;
  reencrypt)
    if [ -e {d}/fail-reencrypt ]; then rm {d}/fail-reencrypt; echo "Error: see server log for details" >&2; exit 1; fi
    touch {d}/active; cp {d}/loaded {d}/rewritten; echo "reencryption started" ;;
  rotate-keys)
    cp {d}/config-rotated {conf}; cp {conf} {d}/loaded; cp {conf} {d}/rewritten; echo reencrypt_finished > {d}/stage
    echo " *      AES-CBC   AES-CBC aescbckey-2026-11-27T13:00:00Z" > {d}/row-active ;;
esac
"""
        )
        for f in self.bin.iterdir():
            f.chmod(0o755)

    def rewritten(self) -> str:
        """The config every Secret was last rewritten under (enabled: sealed, disabled: in clear), or none."""
        done = self.dir / "rewritten"
        return "none" if not done.exists() else next(k for k, v in K3S_ENCRYPTION_CONFIG.items() if v == done.read_text())

    def run(self, on: bool) -> subprocess.CompletedProcess[str]:
        return self.run_script((k3s.secrets_on_script if on else k3s.secrets_off_script)(timeout=3, poll=0))

    def rewrite(self) -> subprocess.CompletedProcess[str]:
        """The rewrite step: with the stage `start`, a rotate-keys (rotate-keys waits for the API server's reload, so the
        stand-in's API server loads the rotated config as k3s's does)."""
        return self.run_script(k3s.secrets_rewrite_script(timeout=3, poll=0))

    def run_script(self, script: str) -> subprocess.CompletedProcess[str]:
        script = script.replace(k3s.SECRETS_ENCRYPTION_CONFIG, str(self.config)).replace("/var/lib/rancher/iluvatar", str(self.iluvatar))
        script = script.replace(k3s.SECRETS_ENCRYPTION_CONFIG.rsplit("/", 1)[0], str(self.dir))
        env = {"PATH": f"{self.bin}:/usr/bin:/bin"}
        return subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=60)

    def calls(self) -> list[str]:
        calls = self.log.read_text().splitlines() if self.log.exists() else []
        self.log.unlink(missing_ok=True)
        return [c.removeprefix("secrets-encrypt ") for c in calls]

    def state(self) -> str:
        return "none" if not self.config.exists() else next(k for k, v in K3S_ENCRYPTION_CONFIG.items() if v == self.config.read_text())

    def record(self, text: str) -> None:
        """The step's record as an earlier run left it."""
        self.mark.parent.mkdir(mode=0o700, exist_ok=True)
        self.mark.write_text(text)

    def recorded(self) -> str:
        return self.mark.read_text() if self.mark.exists() else ""


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


LIST_SERVERS = f"kubectl --request-timeout=10s get nodes -l {k3s.K3S_SERVERS} -o name"


def test_the_off_step_disables_restarts_and_rewrites_in_clear_before_any_roll(tmp_path: Path) -> None:
    valar = SwitchValar(tmp_path, "enabled")
    done = valar.run(on=False)
    assert done.returncode == 0, done.stderr
    assert valar.calls() == [
        "status",
        LIST_SERVERS,
        "disable",
        "status",
        "systemctl restart k3s",
        "status",
        "reencrypt --force --skip",
        "status",
        "status",
    ]
    assert (valar.state(), valar.rewritten()) == ("disabled", "disabled")
    assert valar.recorded() == f"clear {digest(valar.config)}\n"
    assert done.stderr.splitlines()[-1] == (
        f"iluvatar: {socket.gethostname()}: every Secret of the Ainur is stored in clear; the valar may run without secrets-encryption"
    )
    # Run again (a retry of an `up` that failed later): the record names the config k3s runs, nothing is asked.
    again = valar.run(on=False)
    assert (again.returncode, valar.calls()) == (0, ["status"])
    assert "rewritten in clear by an earlier run" in again.stderr


def test_the_off_step_after_a_disable_by_hand_restarts_k3s_and_rewrites_in_clear(tmp_path: Path) -> None:
    """Disabled by hand (or by a run cut short after its disable): status says Disabled, but the API server may still
    run the aescbc-first config (disable's own rewrite went through it), so the step restarts k3s and rewrites."""
    valar = SwitchValar(tmp_path, "disabled")
    (tmp_path / "loaded").write_text(K3S_ENCRYPTION_CONFIG["enabled"])  # the API server still seals
    done = valar.run(on=False)
    assert done.returncode == 0, done.stderr
    assert valar.calls() == [
        "status",
        LIST_SERVERS,
        "status",
        "systemctl restart k3s",
        "status",
        "reencrypt --force --skip",
        "status",
        "status",
    ]
    assert valar.rewritten() == "disabled"


def test_the_off_step_has_nothing_to_do_where_k3s_never_sealed(tmp_path: Path) -> None:
    valar = SwitchValar(tmp_path, "none")
    done = valar.run(on=False)
    assert (done.returncode, valar.calls()) == (0, ["status"])
    assert "k3s never sealed the Ainur's Secrets (no encryption config)" in done.stderr


def test_the_off_step_has_nothing_to_do_where_no_k3s_server_runs_yet(tmp_path: Path) -> None:
    """A first valar rebuilt (a new card, k3s not installed yet): no status to wait 600 s for, nothing was sealed there."""
    valar = SwitchValar(tmp_path, "none")
    (valar.bin / "k3s").unlink()
    done = valar.run(on=False)
    assert (done.returncode, valar.calls()) == (0, [])
    assert done.stderr.splitlines() == [f"iluvatar: {socket.gethostname()}: no k3s server here yet: nothing to decrypt"]


def test_the_switch_refuses_several_servers_before_any_disable(tmp_path: Path) -> None:
    """On several servers k3s's disable reloads only the one it runs on, and "All hashes match" cannot show the others'
    reload (neither the verb nor a restart changes the Nodes' annotations): the step refuses before it changes anything."""
    valar = SwitchValar(tmp_path, "enabled", servers=3)
    done = valar.run(on=False)
    assert done.returncode == 1
    assert valar.calls() == ["status", LIST_SERVERS]
    assert valar.state() == "enabled"
    assert "k3s runs 3 servers: its disable reloads only the server it runs on" in done.stderr
    assert (
        "with iluvatar:ainur.secretsEncryption true, take the Ainur to one valar first (docs/day2.md#a-dead-pi-removed-for-good), then set it false"
        in done.stderr
    )
    assert "no valar was rolled without secrets-encryption" in done.stderr


def test_the_on_step_turns_back_on_a_config_k3s_kept_from_a_disable(tmp_path: Path) -> None:
    """k3s keeps the identity-first config a disable left (deps.go genEncryptionConfigAndState keeps any config it
    finds), so the valar rolled with the flag say Disabled: the step re-enables, restarts and seals what was written in
    clear, then says what the off period left in clear: its etcd snapshots."""
    valar = SwitchValar(tmp_path, "disabled")
    done = valar.run(on=True)
    assert done.returncode == 0, done.stderr
    assert valar.calls() == [
        "status",
        LIST_SERVERS,
        "enable",
        "status",
        "systemctl restart k3s",
        "status",
        "reencrypt --force --skip",
        "status",
        "status",
    ]
    assert (valar.state(), valar.rewritten()) == ("enabled", "enabled")
    assert valar.recorded() == f"sealed {digest(valar.config)}\n"
    assert done.stderr.splitlines()[-2:] == [
        f"iluvatar: {socket.gethostname()}: every Secret of the Ainur is sealed again under k3s's kept key",
        f"iluvatar: {socket.gethostname()}: {k3s.SNAPSHOTS_WHILE_OFF}",
    ]
    assert k3s.SNAPSHOTS_WHILE_OFF.startswith("every etcd snapshot taken since k3s's secrets encryption was turned off holds every Secret in clear")
    assert "'sudo k3s etcd-snapshot save', and delete every snapshot older than that one" in k3s.SNAPSHOTS_WHILE_OFF


def test_the_on_step_goes_on_when_k3s_s_cli_gives_up_on_enable(tmp_path: Path) -> None:
    """k3s's CLI ends `enable` after its 10 s while the server has written the file and goes on rewriting: the step reads
    the file's state back, restarts k3s onto it and seals every Secret itself."""
    valar = SwitchValar(tmp_path, "disabled")
    (tmp_path / "giveup").touch()
    done = valar.run(on=True)
    assert done.returncode == 0, done.stderr
    assert "k3s secrets-encrypt enable returned 1; reading k3s's config back" in done.stderr
    assert valar.calls()[2:7] == ["enable", "status", "systemctl restart k3s", "status", "reencrypt --force --skip"]
    assert (valar.rewritten(), valar.recorded()) == ("enabled", f"sealed {digest(valar.config)}\n")


@pytest.mark.parametrize("cut", ["after-enable", "fail-restart", "fail-reencrypt"])
def test_an_on_step_cut_short_after_enable_seals_at_the_next_run(tmp_path: Path, cut: str) -> None:
    """Status says Enabled from the moment `enable` wrote the file, whatever the API server runs and whether anything was
    rewritten since: a run that ended after `enable` (the step cut right after it, at the restart or at the rewrite)
    leaves no record, and the next run restarts k3s onto the file and rewrites every Secret under it."""
    valar = SwitchValar(tmp_path, "disabled")
    if cut == "after-enable":
        # What `enable` leaves when the step ends with it: its mark written before it, the file written, the API server
        # on the one before, the Secrets rewritten inline through it.
        valar.record("switching to sealed from clear\n")
        valar.config.write_text(K3S_ENCRYPTION_CONFIG["enabled"])
        (tmp_path / "rewritten").write_text(K3S_ENCRYPTION_CONFIG["disabled"])
    else:
        (tmp_path / cut).touch()
        first = valar.run(on=True)
        assert first.returncode == 1
        assert valar.calls()[2] == "enable"
    # The mark says the run began over an off period (status Disabled), so the next run still gives the snapshots' advice.
    assert (valar.state(), valar.recorded()) == ("enabled", "switching to sealed from clear\n")
    again = valar.run(on=True)
    assert again.returncode == 0, again.stderr
    calls = valar.calls()
    assert "enable" not in calls
    assert calls[-5:] == ["systemctl restart k3s", "status", "reencrypt --force --skip", "status", "status"]
    assert (valar.rewritten(), valar.recorded()) == ("enabled", f"sealed {digest(valar.config)}\n")
    assert again.stderr.splitlines()[-1] == f"iluvatar: {socket.gethostname()}: {k3s.SNAPSHOTS_WHILE_OFF}"


@pytest.mark.parametrize(
    ("config", "record", "off"),
    [
        ("disabled", "", True),
        ("enabled", "clear 0123\n", True),
        ("enabled", "switching to clear\n", True),
        ("enabled", "switching to sealed\n", False),
        ("enabled", "sealed 0123\n", False),
        ("enabled", "", False),
    ],
)
def test_the_snapshots_advice_follows_only_an_off_period_the_valar_shows(tmp_path: Path, config: str, record: str, off: bool) -> None:
    """The on step tells the operator to delete every etcd snapshot older than now only after an off period: status
    Disabled (it runs enable), or a record of the off step begun or done. A restart over Secrets sealed all along (an
    Ainur an older Iluvatar deployed with the flag, a record voided by a rotation) says that no snapshot needs deleting."""
    valar = SwitchValar(tmp_path, config)
    if record:
        valar.record(record)
    done = valar.run(on=True)
    assert done.returncode == 0, done.stderr
    assert "systemctl restart k3s" in valar.calls()
    said = k3s.SNAPSHOTS_WHILE_OFF if off else k3s.SEALED_ALL_ALONG
    assert done.stderr.splitlines()[-1] == f"iluvatar: {socket.gethostname()}: {said}"
    assert k3s.SNAPSHOTS_WHILE_OFF not in done.stderr or off


def test_the_on_step_seals_a_config_that_says_enabled_with_no_record_of_it(tmp_path: Path) -> None:
    """Enabled with no record (a config k3s made as the flag came, or an enable whose step ended before its rewrite: the
    same line): k3s restarted onto it and every Secret rewritten, both harmless where they were not needed. Then a
    run only says so."""
    valar = SwitchValar(tmp_path, "enabled")
    done = valar.run(on=True)
    assert done.returncode == 0, done.stderr
    assert valar.calls() == ["status", LIST_SERVERS, "status", "systemctl restart k3s", "status", "reencrypt --force --skip", "status", "status"]
    assert valar.rewritten() == "enabled"
    again = valar.run(on=True)
    assert (again.returncode, valar.calls()) == (0, ["status"])
    assert "sealed again by an earlier run" in again.stderr


def test_the_on_step_does_not_restart_k3s_over_the_config_k3s_made_itself(tmp_path: Path) -> None:
    """A fresh Ainur given the flag (the step is in every `up` with it): k3s wrote its config itself before it started
    its API server on it (deps.go genEncryptionConfigAndState: one key named aescbckey, the stage start), and no switch
    ran here (no record, not even a switch's mark). The step restarts nothing, rewrites every Secret under that config
    (what a first-time flag found in clear) and records it; nothing was ever written in clear while off, so it says
    nothing of snapshots from an off period."""
    valar = SwitchValar(tmp_path, "enabled")
    (tmp_path / "stage").write_text("start\n")
    done = valar.run(on=True)
    assert done.returncode == 0, done.stderr
    assert valar.calls() == ["status", LIST_SERVERS, "status", "status", "reencrypt --force --skip", "status", "status"]
    assert (valar.rewritten(), valar.recorded()) == ("enabled", f"sealed {digest(valar.config)}\n")
    assert [line for line in done.stderr.splitlines() if line.startswith("iluvatar:")] == [
        f"iluvatar: {socket.gethostname()}: k3s made this config itself as it started with secrets-encryption and no switch ran "
        "here since (one key, aescbckey, at the stage start): its API server runs it, no restart",
        f"iluvatar: {socket.gethostname()}: sealing every Secret written in clear meanwhile (k3s secrets-encrypt reencrypt --force --skip)",
        f"iluvatar: {socket.gethostname()}: every Secret of the Ainur is sealed again under k3s's kept key",
    ]


@pytest.mark.parametrize("sign", ["mark", "rotated", "stage"])
def test_the_on_step_restarts_k3s_over_any_config_k3s_did_not_make_as_it_started(tmp_path: Path, sign: str) -> None:
    """Status Enabled with no record is k3s's own config only with every sign of it: an on step cut short after its
    `enable` left its mark (the enable can write the very bytes k3s made, and the stage stays start); a rotation names
    its key aescbckey-<time>; a stage other than start. Each of these restarts k3s onto the file."""
    valar = SwitchValar(tmp_path, "enabled")
    (tmp_path / "stage").write_text("start\n" if sign != "stage" else "reencrypt_finished\n")
    (tmp_path / "loaded").write_text(K3S_ENCRYPTION_CONFIG["disabled"])  # what the API server may still run
    if sign == "mark":
        valar.record("switching to sealed\n")
    if sign == "rotated":
        (tmp_path / "row-active").write_text(" *      AES-CBC   AES-CBC aescbckey-2026-11-27T13:00:00Z\n")
    done = valar.run(on=True)
    assert done.returncode == 0, done.stderr
    assert valar.calls() == ["status", LIST_SERVERS, "status", "systemctl restart k3s", "status", "reencrypt --force --skip", "status", "status"]
    assert (valar.rewritten(), valar.recorded()) == ("enabled", f"sealed {digest(valar.config)}\n")


def test_a_switch_marks_the_valar_before_its_verb(tmp_path: Path) -> None:
    """The mark goes before k3s's enable or disable, so no run of a switch ever leaves no record behind it."""
    for on, record in ((True, "sealed"), (False, "clear")):
        script = k3s.secrets_on_script() if on else k3s.secrets_off_script()
        mark = script.index(f'echo "switching to {record}$from" | sudo tee {k3s.SECRETS_SWITCHED}')
        assert mark < script.index(f"k3s secrets-encrypt {'enable' if on else 'disable'} >&2")
        assert mark < script.index("systemctl restart k3s")


def modes(valar: SwitchValar) -> dict[str, int]:
    return {str(p.relative_to(valar.iluvatar)): stat.S_IMODE(p.stat().st_mode) for p in (valar.iluvatar, *sorted(valar.iluvatar.rglob("*")))}


@pytest.mark.parametrize("on", [True, False])
def test_the_record_has_a_directory_of_its_own_and_the_textfile_directory_stays_readable(tmp_path: Path, on: bool) -> None:
    """node-exporter reads METRICS_DIR, inside the record's parent, as uid 65534 (plans.monitoring): the switch keeps
    its record in a 0700 directory of its own and leaves the parent as `mkdir -p` made it, so that "others" may still
    traverse it and read the textfile directory."""
    valar = SwitchValar(tmp_path, "disabled" if on else "enabled")
    done = valar.run(on=on)
    assert done.returncode == 0, done.stderr
    assert modes(valar) == {".": 0o755, "metrics": 0o755, "secrets": 0o700, "secrets/switched": modes(valar)["secrets/switched"]}
    assert valar.recorded() == f"{'sealed' if on else 'clear'} {digest(valar.config)}\n"


def test_a_record_where_an_older_step_kept_it_is_moved_and_the_parent_given_back_its_mode(tmp_path: Path) -> None:
    """An older step kept the record beside the textfile directory and set their parent to 0700: the next switch moves
    the record into its own directory and gives the parent back 0755, so node-exporter reads the certificates' ends
    again; the record moved still counts (here: the Secrets already in clear, nothing run)."""
    valar = SwitchValar(tmp_path, "disabled")
    (valar.iluvatar / "secrets-switched").write_text(f"clear {digest(valar.config)}\n")
    valar.iluvatar.chmod(0o700)
    done = valar.run(on=False)
    assert done.returncode == 0, done.stderr
    assert valar.calls() == ["status"]
    assert valar.recorded() == f"clear {digest(valar.config)}\n"
    assert {k: v for k, v in modes(valar).items() if k != "secrets/switched"} == {".": 0o755, "metrics": 0o755, "secrets": 0o700}


@pytest.mark.parametrize("moved", [True, False])
@pytest.mark.parametrize("on", [True, False])
def test_every_switch_gives_a_0700_parent_back_its_0755(tmp_path: Path, on: bool, moved: bool) -> None:
    """The parent left 0700 with no old record beside it (a run cut after the record's move, or an Ainur an older off
    step switched): the next switch gives it 0755 all the same, so node-exporter reads the textfile directory."""
    valar = SwitchValar(tmp_path, "disabled" if on else "enabled")
    if moved:
        valar.record(f"clear {digest(valar.config)}\n")
    valar.iluvatar.chmod(0o700)
    done = valar.run(on=on)
    assert done.returncode == 0, done.stderr
    assert {k: v for k, v in modes(valar).items() if k != "secrets/switched"} == {".": 0o755, "metrics": 0o755, "secrets": 0o700}


def test_the_on_step_run_again_after_the_rewrite_step_finds_its_record_and_restarts_nothing(tmp_path: Path) -> None:
    """A fresh Ainur: the on step seals under the config k3s made, the rewrite step rotates the key (a new config), and
    the on step runs again (its command changed in a new release, a new SSH key, the flag given back): the rewrite step's
    record names the rotated config, so the second run stops after one status, with no restart of the only valar and
    no snapshot advice."""
    valar = SwitchValar(tmp_path, "enabled")
    (tmp_path / "stage").write_text("start\n")
    first = valar.run(on=True)
    assert first.returncode == 0, first.stderr
    assert "systemctl restart k3s" not in valar.calls()
    rotated = valar.rewrite()
    assert rotated.returncode == 0, rotated.stderr
    assert valar.calls() == ["status", "rotate-keys", "status"]
    assert (valar.state(), valar.recorded()) == ("rotated", f"sealed {digest(valar.config)}\n")
    again = valar.run(on=True)
    assert again.returncode == 0, again.stderr
    assert valar.calls() == ["status"]
    assert again.stderr.splitlines() == [
        f"iluvatar: {socket.gethostname()}: every Secret of the Ainur was sealed again by an earlier run, under the config k3s runs"
    ]
    # And the rewrite step run again over it only says so, its record unchanged.
    said = valar.rewrite()
    assert (said.returncode, valar.calls(), valar.recorded()) == (0, ["status"], f"sealed {digest(valar.config)}\n")


def test_the_rewrite_step_leaves_a_record_it_did_not_see_sealed_as_it_is(tmp_path: Path) -> None:
    """Rewritten already (one key, reencrypt_finished) over a record that says the off step began or finished: nothing
    says the API server runs the config the file holds, so the rewrite step writes no `sealed`."""
    for record in ("switching to clear\n", "clear 0123\n"):
        folder = tmp_path / record.split()[0]
        folder.mkdir()
        valar = SwitchValar(folder, "enabled")
        valar.record(record)
        done = valar.rewrite()
        assert (done.returncode, valar.calls(), valar.recorded()) == (0, ["status"], record)


def test_the_on_step_leaves_no_config_to_the_rewrite(tmp_path: Path) -> None:
    valar = SwitchValar(tmp_path, "none")
    done = valar.run(on=True)
    assert (done.returncode, valar.calls()) == (0, ["status"])


@pytest.mark.parametrize(("kept", "record"), [("enabled", ""), ("disabled", ""), ("disabled", "other"), ("disabled", "clear"), ("none", "")])
def test_the_off_step_on_a_server_without_the_flag_takes_no_configuration_file_for_nothing_sealed(tmp_path: Path, kept: str, record: str) -> None:
    """k3s without the flag says "no configuration file found" whatever file it kept: only where no file is kept is
    nothing sealed. Over a kept file, the record of a rewrite in clear under it ends the step; without one the step
    fails, naming the way back, and changes nothing."""
    valar = SwitchValar(tmp_path, kept)
    (tmp_path / "flag").unlink()
    if record:
        valar.record(f"clear {digest(valar.config) if record == 'clear' else '0123'}\n")
    before = valar.recorded()
    done = valar.run(on=False)
    assert valar.calls() == ["status"]
    assert valar.recorded() == before
    last = done.stderr.splitlines()[-1]
    if kept == "none":
        assert (done.returncode, last) == (
            0,
            f"iluvatar: {socket.gethostname()}: k3s never sealed the Ainur's Secrets (no encryption config): nothing to decrypt",
        )
    elif record == "clear":
        assert done.returncode == 0
        assert last.endswith("every Secret of the Ainur was rewritten in clear by an earlier run, under the config k3s runs")
    else:
        assert done.returncode == 1
        assert last.startswith(
            f"iluvatar: {socket.gethostname()}: k3s runs here without secrets-encryption (its status reads no configuration file) over the encryption config it kept"
        )
        assert "Set iluvatar:ainur.secretsEncryption true and run pulumi up" in last


def test_the_on_step_on_a_server_without_the_flag_over_a_kept_config_fails(tmp_path: Path) -> None:
    """After the valar's roll with the flag k3s says "no configuration file found" only where it did not restart with it:
    nothing is sealed, and the step fails rather than leave the rewrite to wait."""
    valar = SwitchValar(tmp_path, "disabled")
    (tmp_path / "flag").unlink()
    done = valar.run(on=True)
    assert (done.returncode, valar.calls()) == (1, ["status"])
    assert "k3s runs here without secrets-encryption (its status reads no configuration file) over the encryption config it kept" in done.stderr


def test_the_on_step_on_a_server_without_the_flag_over_a_clear_record_fails(tmp_path: Path) -> None:
    """The off step's record of a rewrite in clear ends only the off direction: k3s without the flag after a roll with
    it (a join that restarted k3s and then failed) seals nothing, so the on step fails rather than say sealed."""
    valar = SwitchValar(tmp_path, "disabled")
    (tmp_path / "flag").unlink()
    valar.record(f"clear {digest(valar.config)}\n")
    done = valar.run(on=True)
    assert (done.returncode, valar.calls()) == (1, ["status"])
    assert "k3s runs here without secrets-encryption (its status reads no configuration file) over the encryption config it kept" in done.stderr
    assert "sealed again" not in done.stderr


def test_a_reencrypt_refused_is_no_rewrite(tmp_path: Path) -> None:
    """The CLI failed and the stage never read reencrypt_active: nothing says a rewrite ran, so no record is written."""
    valar = SwitchValar(tmp_path, "disabled")
    (tmp_path / "fail-reencrypt").touch()
    done = valar.run(on=False)
    assert done.returncode == 1
    assert "k3s did not start the rewrite (reencrypt failed and its stage never read reencrypt_active)" in done.stderr
    assert valar.recorded() == "switching to clear\n"


# --- A valar's join reads k3s's encryption config before it drops or gives the flag (secrets_guard) ---


def guard_join(tmp_path: Path, installed: str, new: str, kept: str, record: str) -> tuple[subprocess.CompletedProcess[str], list[str], Path]:
    """The first valar's join with `installed` as the config k3s runs, `new` as the one sent, k3s's encryption config
    `kept` (enabled, disabled or none) and the off step's record (`clear`: of that config, `other`: of another one)."""
    (tmp_path / "ready").touch()
    (tmp_path / "active").touch()
    target = tmp_path / "etc" / "config.yaml"
    target.parent.mkdir(exist_ok=True)
    target.write_text(installed)
    encryption, switched = tmp_path / "encryption-config.json", tmp_path / "secrets-switched"
    if kept != "none":
        encryption.write_text(K3S_ENCRYPTION_CONFIG[kept])
    if record:
        # `clear-before`: the record where an older step kept it (k3s.SECRETS_SWITCHED_BEFORE).
        named = encryption if record.startswith("clear") else tmp_path / "members.json"
        written = tmp_path / "before" if record == "clear-before" else switched
        written.write_text(f"clear {hashlib.sha256(named.read_bytes()).hexdigest() if named.exists() else ''}\n")
    swaps = {
        k3s.SECRETS_ENCRYPTION_CONFIG: str(encryption),
        k3s.SECRETS_SWITCHED: str(switched),
        k3s.SECRETS_SWITCHED_BEFORE: str(tmp_path / "before"),
    }
    return _join(tmp_path, 0, new, swaps=swaps)


WITH_FLAG, WITHOUT_FLAG = "secrets-encryption: true\ntoken: T0K3N\n", "token: T0K3N\n"


@pytest.mark.parametrize("record", ["", "other"])
def test_a_join_that_drops_the_flag_over_secrets_not_proven_clear_stops_before_any_change(tmp_path: Path, record: str) -> None:
    """A retry of an off-`up` whose ainur-secrets-off failed plans no off step (the output of the failed `up` says off):
    the join finds k3s running the flag over a config that may seal, with no record of a rewrite in clear under it (or
    one under another config), and stops before it installs anything or restarts k3s."""
    (tmp_path / "members.json").write_text("{}")
    result, calls, target = guard_join(tmp_path, WITH_FLAG, WITHOUT_FLAG, "disabled", record)
    assert result.returncode == 1
    assert "this join drops secrets-encryption, and nothing here says every Secret k3s sealed was rewritten in clear" in result.stderr
    assert (
        "set iluvatar:ainur.secretsEncryption true and run pulumi up (ainur-secrets-on seals every Secret again), then set it false" in result.stderr
    )
    assert calls == ["cloud-init status --wait"]
    assert target.read_text() == WITH_FLAG


@pytest.mark.parametrize(
    ("installed", "new", "kept", "record"),
    [
        (WITH_FLAG, WITHOUT_FLAG, "disabled", "clear"),  # the off step finished here, under this config
        (WITH_FLAG, WITHOUT_FLAG, "disabled", "clear-before"),  # and recorded it where an older step kept the record
        (WITH_FLAG, WITHOUT_FLAG, "none", ""),  # k3s never made a config: nothing sealed
        (WITHOUT_FLAG, WITHOUT_FLAG, "disabled", ""),  # the flag already dropped: nothing changes here
        (WITH_FLAG, WITH_FLAG, "enabled", ""),  # the flag kept
        (WITHOUT_FLAG, WITH_FLAG, "disabled", ""),  # given back: ainur-secrets-on turns the kept config on after the roll
        (WITHOUT_FLAG, WITH_FLAG, "none", ""),  # given where k3s makes its config as it starts
    ],
)
def test_a_join_the_switch_allows_goes_on(tmp_path: Path, installed: str, new: str, kept: str, record: str) -> None:
    result, _, target = guard_join(tmp_path, installed, new, kept, record)
    assert result.returncode == 0, result.stderr
    assert target.read_text() == new


def test_only_a_valar_s_join_reads_k3s_s_encryption_config() -> None:
    stack = load_stack_file(HOMELAB)
    assert k3s.secrets_guard() in roll.join_script(stack, stack.by_role("valar")[0])
    assert k3s.secrets_guard() not in roll.join_script(stack, stack.by_role("maiar")[0])


def test_the_threat_model_says_what_the_secrets_switch_steps_run() -> None:
    """docs/security.md's steps for turning k3s's secrets encryption off and back on name each k3s command the two
    steps run, and the wait after `reencrypt --force --skip` as the steps wait: until the stage is no longer
    reencrypt_active (k3s puts back the stage it saved, so reencrypt_finished is no sign of the rewrite's end)."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text()
    section = " ".join(text.split("## The Ainur's Secrets at rest", 1)[1].split("\n## ", 1)[0].split())
    for step, script in (("ainur-secrets-off", k3s.secrets_off_script()), ("ainur-secrets-on", k3s.secrets_on_script())):
        assert f"`{step}`" in section
        verbs = re.findall(r"k3s secrets-encrypt (status|disable|enable|reencrypt --force --skip)", script)
        assert verbs and all(f"k3s secrets-encrypt {verb}`" in section for verb in verbs), verbs
        assert f'[ "$(stage "$now")" != {k3s.SECRETS_ACTIVE} ]' in script
    assert "waits until the stage is no longer `reencrypt_active`" in section
