"""The Ainur's Pis as network namespaces running Debian's real sshd, for the program's k3s steps over SSH.

What is real:
- sshd (Debian's openssh-server) in one network namespace per Pi, listening on the Pi's inventory
  address, with a throwaway host key; the Pi's user (the stack's `sshUser`), its authorized key and its
  sudo rule are the ones the Pi's cloud-init user-data gives it;
- the SSH client (OpenSSH's `ssh`) in an operator's namespace on the same LAN, with the private key the
  test gives the stack (`ainurSshPrivateKey`), running each step's `create` as pulumi-command does: one
  command string, run by the user's login shell (`bash -c`), its `stdin` fed to it;
- sudo, bash, coreutils, curl (every address but the k3s installer's), and kubectl (k8s.io/kubectl
  v0.35.1, the kubectl `k3s kubectl` embeds at that minor: Kubernetes 1.35.1's cmd/kubectl, built alone in
  tools/kube-control-plane's module, tools.gotools' `kubectl`);
- the Kubernetes API server the Pis' kubectl and kubelets talk to: the Ainur's (Kubernetes 1.35 with
  k3s's flags, tools.kube_cluster, with its controller-manager, which fills in ServiceAccount tokens, and
  kwok, which marks Nodes Ready), on a veth into the LAN; an agent's kubelet credentials are a client
  certificate of `system:node:<name>` (the Node authorizer and NodeRestriction check it).

What stands in (STAND-IN in each script's first lines), because k3s and systemd cannot run here:
- `k3s` (its `--version`, `etcd-snapshot`, and `kubectl`, which runs the real kubectl with k3s's
  default kubeconfig), `systemctl` (k3s's units only), `cloud-init` (`status --wait`: done), and
  the installer `curl ... https://get.k3s.io` fetches (a Pi with an `installer-hangs` file: its
  download never ends); each records what it did, with the time;
- k3s's service starting (`STANDIN_SERVICE`): after `KUBELET_DELAY` seconds, as a restarted kubelet
  does, it registers the Pi's Node or reports it at the installed version (Ready False: kwok makes it
  Ready), then answers the kubelet's /healthz; until then the Node says what it said before (a Node
  stays Ready at its old version until the node lifecycle controller notices, 16 s on the Ainur). A report the
  API server does not take is made again, and a Node whose boot or version another write changed since is
  patched back every 10 s, as the kubelet does.
  A Pi with a `broken` file never comes back; one with `hold-kubelet-<name>` in the lab's shared folder reports only
  once the file is gone (answering /healthz meanwhile). `k3s kubectl` records each call once answered (Pi.kubectl_calls).
- systemd's handling of k3s's unit (`STANDIN_SYSTEMCTL`), as k3s's install.sh writes it: `Type=notify`,
  so `systemctl start|restart` returns only once k3s says READY=1, and `TimeoutStartSec=0`, so never
  otherwise; a server says it once etcd has quorum (k3s pkg/cli/server/server.go), an agent at once. A
  Pi with a `never-ready` file never says it.
- the Ainur's etcd (`STANDIN_ETCD`, one folder every Pi shares): a valar's k3s is a member from its
  first start, up while it runs (down `ETCD_START` seconds of each restart), with quorum while more than
  half of the members are up; its client port answers the member list (every member started once, by
  name and client URL, quorum or not: etcd's MemberList) and /health (`{"health":"true","reason":""}`
  with quorum, else 503), for a caller holding k3s's etcd client certificate.

Guesses, not read in a source: how long a server's etcd takes to start (`ETCD_START`), that a member joins
as a voter at once (k3s joins it as a learner and promotes it once it has caught up, which a real gate
would wait through), that a stopped member is down at once, and that an agent is ready at once.

Each Pi has its own mount namespace, so the stand-ins and the files the scripts write land in the
Pi's own folders (bound on /usr/local/bin, /etc/rancher, /var/lib/rancher, /home), never on this
machine's. Its /etc is an overlay: this machine's /etc read-only below, the Pi's own upper folder
(`etc`: its passwd, group, shadow, hosts, sudoers.d and cloud-init's folder) above. A file is a file
of its own there, as on a Pi's disk: `sed -i` renames a new /etc/hosts over the old one (which a
file bound over /etc/hosts refuses, EBUSY), and whatever a script writes lands in the upper folder,
never in this machine's /etc.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from iluvatar.graph import Graph
from iluvatar.simulate import MOCK_CA_HASH, Registration, SecretValue
from plans import cloudinit
from plans.netboot import pis as pis_plan
from plans.netboot import roll
from stacks.model import Node, StackConfig
from tests.netns.lan import in_ns, sh, stop, wait_until
from tests.tools import require
from tools.kube_cluster import Cluster, _leaf, kubeconfig

UID = 4242  # the Pi user's uid inside each Pi's mount namespace (its own /etc/passwd)
KUBELET_DELAY = 1.5  # seconds a (stand-in) kubelet takes to report after k3s starts
ETCD_START = 1.0  # seconds a (stand-in) server's etcd member takes to start, down meanwhile
HEALTHZ_PORT = 10248
# What OpenSSH's client says when no session could be opened (pulumi-command dials again then).
DIAL_FAILED = re.compile(r"ssh: connect to host .*: (Connection refused|Connection timed out|No route to host)|Connection closed by .* port 22")
OPERATOR_IP = "192.168.0.250"
# A session the test gives up on: past the longest bound of any step's own waits (a netbooted maia's drain, kubectl's
# --timeout and its margin), so a step that waits too long fails with its own message, never this test's timeout (a
# 240 s limit here cut the reboot step's 300 s wait for TFTP, and hid what it waited for).
HUNG_SECONDS = roll.DRAIN_SECONDS + 30 + 60
ETCD_LAB = "etcd-lab"  # the lab's etcd folder, beside the Pis' own (Pis.etcd)
# cloud-init's template of /etc/hosts as Debian's cloud-init (22.4) ships it, on the Pis flashed with it.
HOSTS_TEMPLATE_TEXT = (
    "## template:jinja\n{#\nThis file (/etc/cloud/templates/hosts.debian.tmpl) is only utilized\n"
    "if enabled in cloud-config.  Specifically, in order to enable it\nyou need to add the following to config:\n"
    "   manage_etc_hosts: True\n-#}\n# Your system has configured 'manage_etc_hosts' as True.\n"
    "# As a result, if you wish for changes to this file to persist\n# then you will need to either\n"
    "# a.) make changes to the master file in /etc/cloud/templates/hosts.debian.tmpl\n"
    "# b.) change or remove the value of 'manage_etc_hosts' in\n#     /etc/cloud/cloud.cfg or cloud-config from user-data\n"
    "#\n{# The value '{{hostname}}' will be replaced with the local-hostname -#}\n127.0.1.1 {{fqdn}} {{hostname}}\n"
    "127.0.0.1 localhost\n\n# The following lines are desirable for IPv6 capable hosts\n"
    "::1 localhost ip6-localhost ip6-loopback\nff02::1 ip6-allnodes\nff02::2 ip6-allrouters\n\n"
)

STANDIN_K3S = """#!/bin/bash
# STAND-IN for k3s (k3s cannot run here). `k3s kubectl` runs the real kubectl (k8s.io/kubectl v0.35.1), with
# k3s's default kubeconfig as k3s does; `--version` says the version the stand-in installer wrote.
set -eu
# The stand-in's own state, and k3s's folder of its encryption config (k3s's server/cred).
S=/var/lib/rancher/standin C=/var/lib/rancher/k3s/server/cred
case "${1:-}" in
  --version) echo "k3s version $(cat $S/version) (stand-in)"; echo "go version go1.24 (stand-in)" ;;
  kubectl)
    shift
    case " $* " in *" --kubeconfig "*) ;; *) export KUBECONFIG="${KUBECONFIG:-/etc/rancher/k3s/k3s.yaml}" ;; esac
    # kubectl's discovery cache: on a Pi, root's ~/.kube/cache; here root's home is this machine's, so the Pi's folder.
    export KUBECACHEDIR=$S/kube-cache
    # Each call recorded once it has been answered (when, kubectl's exit status, the arguments): a test waits on a
    # script's query having been answered (Pi.kubectl_calls).
    status=0
    __KUBECTL__ "$@" || status=$?
    echo "$(date +%s.%N) $status $*" >> $S/kubectl.log
    exit $status ;;
  etcd-snapshot)
    shift
    [ "$(id -u)" = 0 ] || { echo "stand-in k3s: etcd-snapshot needs root" >&2; exit 1; }
    echo "$(date +%s.%N) etcd-snapshot $*" >> $S/log ;;
  secrets-encrypt)
    # k3s's `secrets-encrypt` as plans.k3s.secrets_rewrite_script drives it on one server (several valar are refused),
    # from k3s's sources as the search index holds them (the pinned tag's tree could not be fetched):
    # - status: pkg/cli/secretsencrypt/secrets_encrypt.go Status (index a0a9179): Encryption Status, Current Rotation
    #   Stage (the Node's annotation), Server Encryption Hashes, then a table of the config's keys, the active one
    #   marked `*`. $S/secrets-keys is the config's keys, the one that seals first; $S/secrets-stage the annotation's
    #   stage; $S/secrets-saved the hash file (stage and keys) a restart puts back on the Node
    #   (BootstrapEncryptionHashAnnotation).
    # - rotate-keys: pkg/server/handlers/secrets-encrypt.go encryptionRotateKeys (index 0b6425a): refused unless the
    #   stage is start or reencrypt_finished ("incorrect stage") and the annotation's hash is the config's ("invalid
    #   hash"); marks reencrypt_active without the file, writes a new key first and the old one behind it
    #   (addAndRotateKeys), then rewrites, drops the old key and saves reencrypt_finished with the file
    #   (reencryptAndRemoveKey). A test that puts $S/secrets-restart makes k3s restart mid-rewrite: the new config
    #   stays, the annotation comes back from the file, and the CLI's request fails. $S/secrets-restart-before-save
    #   makes it restart later, after the one-key config is written and before the stage is saved (reencryptAndRemoveKey
    #   writes the file last, after a Node PATCH): one key, and the file's stage and keys of before.
    # - reencrypt --force: encryptionReencrypt skips the stage check and runs reencryptAndRemoveKey (every Secret under
    #   the first key, the last key dropped); with one key it would drop that one, which the stand-in refuses.
    # - the config file: k3s's steps read its SHA-256 (plans.k3s SECRETS_ENCRYPTION_CONFIG); the stand-in's file is the
    #   keys' list, written again with every change of the keys, so its digest changes exactly when k3s's would.
    # - reencrypt --force --skip: "Skip removing old key" (the CLI's flag): every Secret rewritten, the keys kept, and the
    #   stage back to the saved one (reencryptAndRemoveKey with skip returns before cluster.Save).
    [ "$(id -u)" = 0 ] || { echo "stand-in k3s: secrets-encrypt needs root" >&2; exit 1; }
    conf() { mkdir -p $C && cp $S/secrets-keys $C/encryption-config.json; }
    if grep -q '^secrets-encryption: true' /etc/rancher/k3s/config.yaml 2>/dev/null; then
      # k3s generates its key when the config file is missing (deps.go genEncryptionConfigAndState).
      [ -s $S/secrets-keys ] || { echo aescbckey > $S/secrets-keys; printf 'start\naescbckey\n' > $S/secrets-saved; conf; }
    fi
    # Status reads the config file, not the flag (encryptionStatus: GetEncryptionProviders): the lab's config always
    # seals first (it models no disable), so a file says Enabled with the flag or without; no file, the CLI's one line.
    if [ "${2:-}" = status ] && [ ! -s $S/secrets-keys ]; then echo "Encryption Status: Disabled, no configuration file found"; exit 0; fi
    enabled=Enabled
    [ -s $S/secrets-saved ] || printf 'start\n' > $S/secrets-saved
    [ -s $S/secrets-stage ] || head -n1 $S/secrets-saved > $S/secrets-stage
    stage=$(cat $S/secrets-stage)
    case "${2:-}" in
      status)
        printf 'Encryption Status: %s\nCurrent Rotation Stage: %s\nServer Encryption Hashes: All hashes match\n\n' "$enabled" "$stage"
        printf 'Active  Key Type  Name\n------  --------  ----\n'
        active=' *'
        while read -r key; do printf '%-6s  AES-CBC   AES-CBC %s\n' "$active" "$key"; active=''; done < <(cat $S/secrets-keys 2>/dev/null) ;;
      rotate-keys)
        echo "$(date +%s.%N) secrets-encrypt rotate-keys" >> $S/log
        case "$stage" in start|reencrypt_finished) ;; *) echo "stand-in k3s: incorrect stage: $stage found on node $(hostname)" >&2; exit 1 ;; esac
        if [ "$(tail -n +2 $S/secrets-saved)" != "$(cat $S/secrets-keys)" ]; then
          echo "stand-in k3s: invalid hash found on node $(hostname)" >&2; exit 1
        fi
        echo reencrypt_active > $S/secrets-stage
        { echo "aescbckey-$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)"; cat $S/secrets-keys; } > $S/secrets-keys.new
        mv $S/secrets-keys.new $S/secrets-keys; conf
        if [ -e $S/secrets-restart ]; then
          rm $S/secrets-restart
          head -n1 $S/secrets-saved > $S/secrets-stage
          echo "stand-in k3s: the server went away mid-rewrite" >&2; exit 1
        fi
        head -n1 $S/secrets-keys > $S/secrets-keys.new && mv $S/secrets-keys.new $S/secrets-keys; conf
        if [ -e $S/secrets-restart-before-save ]; then
          rm $S/secrets-restart-before-save
          head -n1 $S/secrets-saved > $S/secrets-stage
          echo "stand-in k3s: the server went away mid-rewrite" >&2; exit 1
        fi
        echo reencrypt_finished > $S/secrets-stage
        { echo reencrypt_finished; cat $S/secrets-keys; } > $S/secrets-saved ;;
      reencrypt)
        echo "$(date +%s.%N) secrets-encrypt reencrypt ${3:-}" >> $S/log
        [ "${3:-}" = --force ] || [ "$stage" = rotate ] || { echo "stand-in k3s: incorrect stage: $stage found on node $(hostname)" >&2; exit 1; }
        if [ "${4:-}" = --skip ]; then head -n1 $S/secrets-saved > $S/secrets-stage; exit 0; fi
        [ "$(wc -l < $S/secrets-keys)" -gt 1 ] || { echo "stand-in k3s: reencrypt with one key would drop it" >&2; exit 2; }
        sed '$d' $S/secrets-keys > $S/secrets-keys.new && mv $S/secrets-keys.new $S/secrets-keys; conf
        echo reencrypt_finished > $S/secrets-stage
        { echo reencrypt_finished; cat $S/secrets-keys; } > $S/secrets-saved ;;
      *) echo "stand-in k3s: 'secrets-encrypt ${2:-}' is not stood in" >&2; exit 2 ;;
    esac ;;
  crictl)
    # The container runtime's list (the API VIP kube-vip's restart asks it): the lab's stand-in kubelet runs no
    # containers, so no kube-vip runs to restart.
    shift
    case "${1:-}" in ps) ;; *) echo "stand-in k3s: crictl '$*' is not stood in" >&2; exit 2 ;; esac ;;
  *) echo "stand-in k3s: '$*' is not stood in" >&2; exit 2 ;;
esac
"""

STANDIN_SYSTEMCTL = """#!/bin/bash
# STAND-IN for systemd's systemctl (no systemd here): k3s's units only, as k3s's install.sh writes them
# (create_systemd_service_file: Type=notify, TimeoutStartSec=0). `start` and `restart` return once the
# service tells systemd it is ready (READY=1, Type=notify), with no bound (TimeoutStartSec=0): here, once the
# stand-in service script returns (STANDIN_SERVICE). `restart` stops the running service first. `is-active`
# answers for a service that has told it is ready (a notify service is "activating" until then).
set -eu
S=/var/lib/rancher/standin
verb=$1
shift
unit=""
for arg in "$@"; do case $arg in -*) ;; *) unit=$arg ;; esac; done
[ "$(id -u)" = 0 ] || { echo "stand-in systemctl: $verb needs root" >&2; exit 1; }
echo "$(date +%s.%N) systemctl $verb $unit" >> $S/log
case "$unit" in ssh.service|ssh.socket) ;; *) [ -f $S/version ] || { echo "Failed to $verb $unit.service: Unit $unit.service not found." >&2; exit 5; } ;; esac
# A netbooted maia's reboot step stops sshd's listener (plans.netboot.roll): asked of the lab (NetbootLab), which kills it.
case "$verb $unit" in
  # systemctl waits for its stop job (no --no-block): it returns once the listener is closed (the lab removes the file).
  "stop ssh.service"|"stop ssh.socket")
    touch $S/sshd-stop
    for _ in $(seq 100); do [ -e $S/sshd-stop ] || exit 0; sleep 0.1; done
    echo "Job for $unit timed out." >&2; exit 1 ;;
esac
case $verb in
  enable) touch $S/enabled ;;  # started at boot (NetbootLab's reboots)
  daemon-reload) ;;
  start|restart)
    if [ "$verb" = restart ]; then $S/stop; fi
    if [ ! -f $S/running ] && [ ! -f $S/activating ]; then
      touch $S/activating
      # The service is systemd's, not this command's: killing systemctl (a `timeout`) leaves it starting.
      setsid $S/service </dev/null >>$S/service.log 2>&1 &
      echo $! > $S/service.pid
    fi
    # Type=notify: the job ends when the service says READY=1; TimeoutStartSec=0: nothing else ends it.
    until [ -f $S/running ]; do sleep 0.1; done ;;
  stop) $S/stop ;;
  is-active) [ -f $S/running ] ;;
  *) echo "stand-in systemctl: '$verb' is not stood in" >&2; exit 2 ;;
esac
"""

# k3s stopping: its kubelet gone and, on a server, its etcd member down (the lab's etcd, STANDIN_ETCD).
STANDIN_STOP = """#!/bin/sh
# STAND-IN for k3s's service stopping (k3s cannot run here).
S=/var/lib/rancher/standin E=/var/lib/rancher/etcd-lab
if [ -f $S/service.pid ]; then kill "$(cat $S/service.pid)" 2>/dev/null || true; rm -f $S/service.pid; fi
rm -f $S/running $S/activating
if [ -f $S/kubelet.pid ]; then kill "$(cat $S/kubelet.pid)" 2>/dev/null || true; rm -f $S/kubelet.pid; fi
if [ -f $S/agent.pid ]; then kill "$(cat $S/agent.pid)" 2>/dev/null || true; rm -f $S/agent.pid; fi
name=$(cat $S/name)
if [ -e "$E/up/$name" ]; then rm -f "$E/up/$name"; echo "$(date +%s.%N) down $name" >> $E/log; fi
"""

# A reboot systemd runs on its own (systemd-run --on-active=N systemctl reboot): the lab (NetbootLab) reboots the Pi
# N seconds later, whatever becomes of the session that asked. A Pi with a `cut-after-reboot` file then holds the session
# for ever, as a step cut between its reboot's scheduling and its end leaves it.
STANDIN_SYSTEMD_RUN = """#!/bin/bash
# STAND-IN for systemd-run (no systemd here): `--on-active=N ... systemctl reboot` only.
set -eu
S=/var/lib/rancher/standin
[ "$(id -u)" = 0 ] || { echo "stand-in systemd-run: needs root" >&2; exit 1; }
delay=""
for arg in "$@"; do case $arg in --on-active=*) delay=${arg#--on-active=} ;; esac; done
case " $* " in *" systemctl reboot "*) ;; *) echo "stand-in systemd-run: '$*' is not stood in" >&2; exit 2 ;; esac
echo "$(date +%s.%N) systemd-run reboot in $delay s" >> $S/log
echo "$(( $(date +%s) + ${delay:-0} ))" > $S/reboot
while [ -e $S/cut-after-reboot ]; do sleep 1; done
"""

# The reboot step's look at the Pi's new root over NFS (plans.netboot.roll.export_gate: `mount -i -t nfs ... <svc>:<export>
# <dir>`, then its image mark read, then umount). No NFS client runs here (tests/netns/test_pi_nfs.py runs the gate
# against the real Ganesha with libnfs); the lab's NFS server is the one _reboot stands in for: it serves a root of any
# image built on the netboot Pi (its .complete under the lab's images, named in $S/nfs-images), as pi-nfs does once
# it has started with that image built.
STANDIN_MOUNT = """#!/bin/bash
# STAND-IN for the kernel's NFS mount (mount -i -t nfs -o OPTIONS SERVER:/pis/<pi>/<image> DIR); any other mount is
# the real one's (the lab's own binds).
[ "${1:-} ${2:-} ${3:-}" = "-i -t nfs" ] || exec /usr/bin/mount "$@"
set -eu
S=/var/lib/rancher/standin
[ "$(id -u)" = 0 ] || { echo "stand-in mount: needs root" >&2; exit 1; }
source=$6 dir=$7
image=${source##*/}
images=$(cat $S/nfs-images 2>/dev/null) || { echo "mount.nfs: access denied by server while mounting $source" >&2; exit 32; }
[ -f "$images/$image/.complete" ] || { echo "mount.nfs: access denied by server while mounting $source" >&2; exit 32; }
mkdir -p "$dir/etc/iluvatar"
echo "$image" > "$dir/etc/iluvatar/pi-image"
touch "$dir/.standin-nfs"
"""

STANDIN_UMOUNT = """#!/bin/bash
# STAND-IN for umount of what STANDIN_MOUNT mounted; any other is the real one's.
[ -e "${1:-}/.standin-nfs" ] || exec /usr/bin/umount "$@"
rm -rf "$1/etc" "$1/.standin-nfs"
"""

STANDIN_CLOUD_INIT = """#!/bin/bash
# STAND-IN for cloud-init: the Pi was flashed and cloud-init has finished (it installed k3s, not started).
echo "$(date +%s.%N) cloud-init $*" >> /var/lib/rancher/standin/log 2>/dev/null || true
echo "status: done"
"""

STANDIN_CURL = """#!/bin/bash
# STAND-IN for k3s's installer and for etcd's client port only: `curl ... https://get.k3s.io` gives the stand-in
# installer (into -o's file, as curl writes it there), a request to port 2379 goes to the lab's etcd (STANDIN_ETCD);
# any other address goes to the real curl.
out= prev=
for arg in "$@"; do
  [ "$prev" = -o ] && out=$arg
  prev=$arg
done
for arg in "$@"; do
  case $arg in
    https://get.k3s.io|https://get.k3s.io/) if [ -n "$out" ]; then cat /var/lib/rancher/standin/install.sh > "$out"; else cat /var/lib/rancher/standin/install.sh; fi; exit 0 ;;
    https://*:2379/*) exec python3 /var/lib/rancher/standin/etcd.py "$@" ;;
  esac
done
exec /usr/bin/curl "$@"
"""

# The Ainur's etcd, as the gates ask it (plans.k3s.gate_functions), over the lab's shared folder
# /var/lib/rancher/etcd-lab (the same on every Pi): `members/<name>` (the member's address) once its k3s first
# started as a server, `up/<name>` while it runs, and `log` (when each went up or down).
STANDIN_ETCD = """# STAND-IN for etcd's client port (curl -sf ... https://<ip>:2379/<path>), as etcd v3 serves it.
import json, os, sys, zlib
S, E = "/var/lib/rancher/standin", "/var/lib/rancher/etcd-lab"
args = sys.argv[1:]
url = next(a for a in args if a.startswith("https://") and ":2379/" in a)
host, path = url.removeprefix("https://").split(":2379", 1)
# curl needs the client certificate it is given (k3s's, under server/tls/etcd): without it, curl's 58.
cert = args[args.index("--cert") + 1] if "--cert" in args else None
if cert is None or not os.path.exists(cert):
    sys.exit(58)
members = {m: open(f"{E}/members/{m}").read().strip() for m in sorted(os.listdir(f"{E}/members"))} if os.path.isdir(f"{E}/members") else {}
up = set(os.listdir(f"{E}/up")) if os.path.isdir(f"{E}/up") else set()
me = open(f"{S}/name").read().strip() if host == "127.0.0.1" else next((m for m, ip in members.items() if ip == host), None)
if me is None or me not in up:
    sys.exit(7)  # nothing listens: curl's "couldn't connect"
if path == "/v3/cluster/member/list":
    # ClusterServer.MemberList (server v3rpc/member.go:90-97 at v3.6.5): not linearizable by default, so the local
    # member answers from its own copy of the membership, quorum or not; a member that started once keeps its
    # name and client URL in it (etcdserverpb.Member, api rpc.pb.go:3060-3070).
    listed = [{"ID": str(zlib.crc32(m.encode())), "name": m, "peerURLs": [f"https://{ip}:2380"], "clientURLs": [f"https://{ip}:2379"]}
              for m, ip in members.items()]
    print(json.dumps({"header": {"member_id": str(zlib.crc32(me.encode()))}, "members": listed}))
elif path == "/health":
    # HandleHealth (server etcdhttp/health.go:60-69, 76-105 at v3.6.5): no leader or no quorum read is 503, which
    # `curl -f` turns into its exit code 22 with nothing printed; healthy is 200 {"health":"true","reason":""}.
    if 2 * len(up & set(members)) <= len(members):
        sys.exit(22)
    print(json.dumps({"health": "true", "reason": ""}, separators=(",", ":")))
else:
    sys.exit(22)
"""

STANDIN_INSTALLER = """#!/bin/sh
# STAND-IN for https://get.k3s.io (k3s's install.sh): "installs" k3s at INSTALL_K3S_VERSION and restarts it, as the
# installer does (download_and_verify, then service_enable_and_start's systemd_start: `systemctl restart`).
# With an `installer-hangs` file its download never ends (install.sh's download() runs `curl -o $1 -sfL $2`, with
# no time limit): a child that waits for ever, as that curl would.
set -eu
S=/var/lib/rancher/standin
[ "$(id -u)" = 0 ] || { echo "stand-in installer: needs root" >&2; exit 1; }
if [ -e $S/installer-hangs ]; then
  echo "$(date +%s.%N) installer downloading" >> $S/log
  sleep 3600
fi
# Run again at the version it installed: install.sh's binary and unit hashes are unchanged (installed_hash_matches skips
# the download; service_enable_and_start compares PRE_ and POST_INSTALL_HASHES): "No change detected so skipping
# service start", whatever runs.
if [ "$(cat $S/version 2>/dev/null)" = "$INSTALL_K3S_VERSION" ]; then
  echo "$(date +%s.%N) install ${INSTALL_K3S_VERSION}: no change detected, no restart" >> $S/log
  exit 0
fi
echo "$(date +%s.%N) install ${INSTALL_K3S_VERSION} ${INSTALL_K3S_EXEC} ${K3S_URL:-}" >> $S/log
# setup_binary's `mv -f` of the new binary, then systemd_start's restart: a run stopped in between leaves the binary
# at the new version and the old k3s running.
echo "$INSTALL_K3S_VERSION" > $S/version
case $INSTALL_K3S_EXEC in agent*) unit=k3s-agent ;; *) unit=k3s ;; esac
printf '#!/bin/sh\\n# STAND-IN for k3s uninstall\\necho "$(date +%%s.%%N) uninstall" >> %s/log\\n/usr/local/bin/systemctl stop %s\\nrm -f %s/version "$0"\\n' \\
  $S $unit $S > /usr/local/bin/$unit-uninstall.sh
chmod 755 /usr/local/bin/$unit-uninstall.sh
exec /usr/local/bin/systemctl restart $unit
"""

# k3s's service starting: its kubeconfig written; on a server, its etcd member up and then ready only once etcd
# has quorum; then its kubelet (the stand-in below) in the background.
STANDIN_SERVICE = """#!/bin/sh
# STAND-IN for k3s's service starting (k3s cannot run here). It marks `running` when k3s would tell systemd READY=1:
# a server once its API server and etcd are up (k3s pkg/cli/server/server.go, the goroutine after
# server.StartServer waits for APIServerReady then ETCDReady), which needs etcd's quorum; an agent once its
# networking starts (pkg/agent/run.go, after APIServerReadyChan), here at once (the lab's API server always answers).
set -eu
S=/var/lib/rancher/standin E=/var/lib/rancher/etcd-lab
name=$(cat $S/name) role=$(cat $S/role)
if [ -f $S/kubelet.pid ]; then kill "$(cat $S/kubelet.pid)" 2>/dev/null || true; rm -f $S/kubelet.pid; fi
if [ -f $S/k3s.yaml ]; then install -D -m 0600 $S/k3s.yaml /etc/rancher/k3s/k3s.yaml; fi
echo "$(date +%s.%N) started $(cat $S/version)" >> $S/log
if [ "$role" = valar ]; then
  # k3s's cluster CA (deps.go genServerCerts: server/tls/server-ca.crt, made once; here the lab API server's CA, the CA a
  # k3s server's supervisor and API server serve with) and its server token file, which k3s writes at every start:
  # K10<hashCA(server-ca.crt)>::server:<token> (pkg/server/server.go printTokens :360-364, handlers.WriteToken;
  # Runtime.ServerToken is "server:" + the config's token, pkg/daemons/control/deps/deps.go:228). The supervisor's
  # view for the agents (the lab's shared folder): what /cacerts serves (pkg/server/handlers/router.go, the unauthed
  # route: Runtime.ServerCA) and the basic-auth password of its passwd file (the server token's password).
  mkdir -p /var/lib/rancher/k3s/server/tls
  [ -e /var/lib/rancher/k3s/server/tls/server-ca.crt ] || cp __CA__ /var/lib/rancher/k3s/server/tls/server-ca.crt
  # The config's token, a YAML scalar (single-quoted where YAML needs it: the test's placeholder).
  password=$(sed -n "s/^token: //p" /etc/rancher/k3s/config.yaml | sed "s/^'\\(.*\\)'$/\\1/; s/''/'/g")
  printf 'K10%s::server:%s\n' "$(sha256sum /var/lib/rancher/k3s/server/tls/server-ca.crt | cut -d' ' -f1)" "$password" > /var/lib/rancher/k3s/server/token
  chmod 0600 /var/lib/rancher/k3s/server/token
  cp /var/lib/rancher/k3s/server/tls/server-ca.crt $E/cacerts
  printf '%s\n' "$password" > $E/passwd
  # k3s's etcd client certificates (its deps.go writes them under server/tls/etcd at the first start). The certificates
  # are real ones (the lab CA's: the stand-in etcd checks none), as the k3s step reads the end of every k3s certificate.
  mkdir -p /var/lib/rancher/k3s/server/tls/etcd
  for f in server-ca.crt client.crt; do [ -e /var/lib/rancher/k3s/server/tls/etcd/$f ] || cp __CA__ /var/lib/rancher/k3s/server/tls/etcd/$f; done
  [ -e /var/lib/rancher/k3s/server/tls/etcd/client.key ] || echo stand-in > /var/lib/rancher/k3s/server/tls/etcd/client.key
  sleep __ETCD_START__  # a server's etcd takes a while to start: a guess, not k3s's figure
  mkdir -p $E/members $E/up
  echo "$(cat $S/ip)" > $E/members/$name
  touch $E/up/$name
  echo "$(date +%s.%N) up $name" >> $E/log
  until [ $(( 2 * $(ls $E/up | wc -l) )) -gt "$(ls $E/members | wc -l)" ]; do sleep 0.1; done
fi
while [ -f $S/never-ready ]; do sleep 0.2; done  # a k3s that never tells systemd it is ready
# An agent gets its configuration from the supervisor with its token before its networking starts (and READY=1): a
# token that does not pass keeps it retrying, never ready (STANDIN_AGENT_JOIN).
if [ "$role" != valar ]; then
  python3 $S/agent_join.py &
  echo $! > $S/agent.pid
  wait $!
  rm -f $S/agent.pid
fi
setsid python3 $S/kubelet.py "$(cat $S/version)" </dev/null >>$S/kubelet.log 2>&1 &
echo $! > $S/kubelet.pid
rm -f $S/activating $S/service.pid
touch $S/running
"""

# k3s's agent at its start, before it tells systemd it is ready: its config from the supervisor, with its token.
STANDIN_AGENT_JOIN = """# STAND-IN for a k3s agent's start, before it tells systemd it is ready (pkg/agent/run.go). Each step follows k3s at
# release-1.35 (2b1b737); a step that fails is retried for ever, logged as k3s logs it, and k3s never says READY=1:
# 1. createProxyAndValidateToken (run.go:322-360): ParseAndValidateToken WithUser("node") and the client certificate,
#    every 2 s ("Failed to validate connection to cluster at <server>: <err>"), then the token rewritten in full form;
# 2. config.Get (pkg/agent/config/config.go:56-75, get :439-452): the supervisor's /v1-k3s/config with those credentials,
#    every 5 s with jitter 1.0 ("Waiting to retrieve agent configuration; server is not ready: <err>").
import hashlib, json, os, random, re, ssl, time, urllib.error, urllib.request
S, E = "/var/lib/rancher/standin", "/var/lib/rancher/etcd-lab"
SERVER, AGENT = __SERVER__, "/var/lib/rancher/k3s/agent"
# The agent's own client certificate, sent as well when it exists (WithClientCertificate, token.go:90-99: "not an error
# if the files do not exist"); k3s's agent gets it from the supervisor once joined (ClientKubeletCert).
CERT, KEY = AGENT + "/client-kubelet.crt", AGENT + "/client-kubelet.key"
NODE_CERT, NODE_KEY = __NODE_CERT__, __NODE_KEY__
BOOTSTRAP = re.compile(r"^([a-z0-9]{6})\\.([a-z0-9]{16})$")  # kubeadm.NewBootstrapTokenString
ROLES = {"k3s:agent", "system:nodes", "system:bootstrappers"}  # pkg/server/handlers/router.go:36, HasRole


class Refused(Exception):
    pass


def config():
    text = open("/etc/rancher/k3s/config.yaml").read()
    found = re.search(r"^token: (.*)$", text, re.M)
    value = found.group(1).strip() if found else ""
    if len(value) > 1 and value[0] == value[-1] == "'":  # a single-quoted YAML scalar
        value = value[1:-1].replace("''", "'")
    # The URL its errors name: the config's server (the lab's API server answers for it).
    named = re.search(r"^server: (.*)$", text, re.M)
    return value, (named.group(1).strip() if named else SERVER)


def validate(token, url):
    # parseToken, token.go:212-262: a bare token gets "K10::" (bootstrap) or "K10:::" (password); the hash is 64 hex
    # or empty. WithUser("node") (run.go:342): a password token's user is always "node".
    if not token:
        raise Refused("token must not be empty")
    if not token.startswith("K10"):
        token = ("K10::" if BOOTSTRAP.match(token) else "K10:::") + token
    ca_hash, _, creds = token[3:].partition("::")
    if ca_hash and len(ca_hash) != 64:
        raise Refused("invalid token CA hash length")
    if BOOTSTRAP.match(creds):
        bearer, basic = creds, None
    else:
        _, sep, password = creds.partition(":")
        if not sep or not password:
            raise Refused("invalid token format")
        bearer, basic = None, ("node", password)
    # getCACerts, :412-440: /cacerts fetched without trust; validateCAHash, :391-409, hashCA, :165-196 (one PEM
    # certificate: sha256 of the file's bytes).
    if not os.path.exists(E + "/cacerts"):
        raise Refused("failed to get CA certs: the server at " + url + " does not answer")
    cacerts = open(E + "/cacerts", "rb").read()
    served = hashlib.sha256(cacerts).hexdigest()
    if ca_hash and ca_hash != served:
        raise Refused(f"token CA hash does not match the Cluster CA certificate hash: {ca_hash} != {served}")
    return cacerts, bearer, basic


def authenticate(cacerts, bearer, basic, url):
    unauthorized = f"failed to retrieve configuration from server: {url}/v1-k3s/config: "
    if basic is not None:
        # The supervisor's basic auth: its passwd file (the node user's password: the agent token, or the server
        # token's password when there is none, as here).
        if os.path.exists(E + "/refuse-server-token"):
            raise Refused("the lab refuses a server token on an agent (a test's rule, not k3s's: k3s would accept it)")
        if basic[1] != open(E + "/passwd").read().strip():
            raise Refused(unauthorized + "401 Unauthorized")
        return
    # The bearer token, authenticated by the API server's own authenticator as k3s's supervisor does (pkg/daemons/
    # control/server.go:444, authenticator.Combine; k3s runs it with --enable-bootstrap-token-auth, :215): here the lab's
    # real API server, asked who the request is, over TLS trusted through the bundle fetched (GetHTTPClient).
    context = ssl.create_default_context(cadata=cacerts.decode())
    if os.path.exists(CERT) and os.path.exists(KEY):
        context.load_cert_chain(CERT, KEY)
    review = json.dumps({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}).encode()
    request = urllib.request.Request(SERVER + "/apis/authentication.k8s.io/v1/selfsubjectreviews", data=review, method="POST",
                                     headers={"Content-Type": "application/json", "Authorization": "Bearer " + bearer})
    try:
        answer = json.loads(urllib.request.urlopen(request, context=context, timeout=10).read())
    except urllib.error.HTTPError as e:
        raise Refused(f"{unauthorized}{e.code} {e.reason}") from None
    if not set(answer["status"]["userInfo"].get("groups") or ()) & ROLES:
        raise Refused(unauthorized + "403 Forbidden")


def refused(level, message, seconds):
    print(f'level={level} msg="{message}"', flush=True)  # logrus's text format, as the journal shows it
    with open(S + "/agent-refused", "a") as out:
        out.write(f"{time.time():.9f} {message}\\n")
    time.sleep(seconds)


while True:
    token, url = config()
    try:
        checked = validate(token, url)
        break
    except (Refused, OSError) as e:
        refused("error", f"Failed to validate connection to cluster at {url}: {e}", 2)
while True:
    try:
        authenticate(*checked, url)
        break
    except (Refused, OSError) as e:
        refused("info", f"Waiting to retrieve agent configuration; server is not ready: {e}", 5 + random.random() * 5)
# Joined: the supervisor hands out the kubelet's client certificate (ClientKubeletCert), kept under the agent's folder.
os.makedirs(AGENT, exist_ok=True)
for source, target in ((NODE_CERT, CERT), (NODE_KEY, KEY)):
    with open(source, "rb") as f, open(target, "wb") as out:
        out.write(f.read())
"""

STANDIN_KUBELET = """# STAND-IN for the Pi's kubelet after k3s (re)starts: it reports after a delay, then answers /healthz.
# It speaks to the real API server as a kubelet does, with the Node's own certificate (system:node:<name>).
import http.server, json, os, ssl, sys, threading, time, urllib.error, urllib.request
S = "/var/lib/rancher/standin"
NAME, ROLE, DELAY, SERVER = __NAME__, __ROLE__, __DELAY__, __SERVER__
context = ssl.create_default_context(cafile=__CA__)
context.load_cert_chain(__CERT__, __KEY__)


def call(method, path, body=None, kind="application/json"):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(SERVER + path, data=data, method=method, headers={"Content-Type": kind})
    return urllib.request.urlopen(request, context=context).read()


class Healthz(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


version = sys.argv[1]
time.sleep(DELAY)
# `hold-kubelet-<name>` in the lab's shared folder: no report while it exists (a test that needs a Node still at its old
# version when a step ends, or a step seen waiting for the report, whatever the machine's load). Held, it answers /healthz
# meanwhile, as a kubelet's health server answers whether or not the kubelet has reported (kubernetes cmd/kubelet/app/
# server.go, run(): it listens once RunKubelet returns, and the kubelet registers and reports its Node from a goroutine,
# pkg/kubelet/kubelet.go Run -> syncNodeStatus): the join's wait for k3s to serve (plans.k3s.ready_check) passes, and
# the steps after it run to the wait for the report.
hold = "/var/lib/rancher/etcd-lab/hold-kubelet-" + NAME
serving = None
if os.path.exists(hold):
    serving = threading.Thread(target=http.server.HTTPServer(("127.0.0.1", __PORT__), Healthz).serve_forever, daemon=True)
    serving.start()
while os.path.exists(hold):
    time.sleep(0.1)
# The boot it runs in, as the kubelet reports it in every status (pkg/kubelet/nodestatus/setters.go MachineInfo:
# node.Status.NodeInfo.BootID = info.BootID, cadvisor's read of /proc/sys/kernel/random/boot_id); kwok keeps nodeInfo.
info = {"kubeletVersion": version, "bootID": open("/proc/sys/kernel/random/boot_id").read().strip()}
while os.path.exists(S + "/broken"):  # a k3s that never comes back
    time.sleep(1)
ready = [{"type": "Ready", "status": "False", "reason": "KubeletNotReady", "message": "stand-in kubelet starting"}]


def report():
    try:
        call("GET", "/api/v1/nodes/" + NAME)
    except urllib.error.HTTPError as e:
        if e.code != 404:
            raise
        # Registered with k3s' node-taint, as k3s passes it to the kubelet (pkg/daemons/agent/agent_linux.go: cfg.NodeTaints
        # -> --register-with-taints): what the Ainur's Node registration policy requires of a netbooted maia.
        taints, config = [], "/etc/rancher/k3s/config.yaml"
        if os.path.exists(config):
            listed = False
            for line in open(config).read().splitlines():
                if line.startswith("node-taint:"):
                    listed = True
                elif listed and line.startswith("- "):
                    key_value, effect = line[2:].strip("'").rsplit(":", 1)
                    key, value = key_value.split("=", 1)
                    taints.append({"key": key, "value": value, "effect": effect})
                else:
                    listed = False
        node = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": NAME, "labels": {"iluvatar/role": ROLE, "kubernetes.io/hostname": NAME}},
                "spec": {"taints": taints}, "status": {"nodeInfo": info, "conditions": ready}}
        call("POST", "/api/v1/nodes", node)
    else:  # Ready False at the new version: kwok makes it Ready, as the control plane sees a kubelet come back
        call("PATCH", "/api/v1/nodes/" + NAME + "/status", {"status": {"nodeInfo": info, "conditions": ready}},
             "application/merge-patch+json")


# A report the API server did not take (an error, a refused connection, on a loaded machine) is made again, as the
# kubelet registers and reports until it is taken (pkg/kubelet/kubelet_node_status.go registerWithAPIServer: a backoff
# from 100 ms doubling to 7 s; updateNodeStatus: again at the next period). The log's line is written once the report is
# answered, with the time from before it was sent: whatever saw the report (a step's gate) saw it after that time,
# however late the line is written.
backoff = 0.1
while True:
    sent = time.time()
    try:
        report()
        break
    except (OSError, ValueError) as e:  # urllib.error.URLError and HTTPError are OSErrors
        print(f"stand-in kubelet: report not taken ({e}), again in {backoff} s", flush=True)
        time.sleep(backoff)
        backoff = min(2 * backoff, 7)
with open(S + "/log", "a") as log:
    log.write(f"{sent:.9f} kubelet-reported {version}\\n")
if serving is None:
    serving = threading.Thread(target=http.server.HTTPServer(("127.0.0.1", __PORT__), Healthz).serve_forever, daemon=True)
    serving.start()

# Its report kept: the kubelet reads its Node every nodeStatusUpdateFrequency (10 s, the KubeletConfiguration default,
# pkg/kubelet/apis/config/v1beta1/defaults.go) and patches the status it computes when it differs from the Node's
# (kubelet_node_status.go tryUpdateNodeStatus: nodeStatusHasChanged, then PatchNodeStatus, a two-way merge of the two).
# So a status written over its report from before it (kwok playing a stage job it rendered from the Node as an earlier
# event showed it: sigs.k8s.io/kwok v0.8.0 pkg/kwok/controllers/node_controller.go playStage patches from the job's copy,
# and a job retried after a failed patch is queued again with that copy, replacing a newer one, addStageJob; or the last
# post of the kubelet of the boot before landing late) does not last: the Node says this kubelet's boot and version
# again within a period. Only the fields this stand-in reports (nodeInfo): kwok writes the conditions. A broken Pi's
# kubelet posts nothing.
while True:
    time.sleep(10)
    if os.path.exists(S + "/broken"):
        continue
    try:
        have = (json.loads(call("GET", "/api/v1/nodes/" + NAME)).get("status") or {}).get("nodeInfo") or {}
        if all(have.get(k) == v for k, v in info.items()):
            continue
        sent = time.time()
        call("PATCH", "/api/v1/nodes/" + NAME + "/status", {"status": {"nodeInfo": info}}, "application/merge-patch+json")
    except (OSError, ValueError) as e:
        print(f"stand-in kubelet: status not kept ({e}), again in 10 s", flush=True)
        continue
    with open(S + "/log", "a") as log:
        log.write(f"{sent:.9f} kubelet-kept {version} (the Node said boot {have.get('bootID')}, {have.get('kubeletVersion')})\\n")
"""


@dataclass
class Step:
    """One remote command as the engine ran it: when, and what it said."""

    name: str
    start: float
    end: float
    returncode: int
    stdout: str
    stderr: str


@dataclass
class Pi:
    node: Node
    ns: str
    root: Path
    proc: subprocess.Popen[bytes] | None = None
    # A netbooted maia: the image its root is of (its root is then `<pis>/<name>@<image>`, but for its first).
    image: str | None = None
    # ... and the cmdline.txt it booted with (its kernel's /proc/cmdline: firmware_cmdline of it).
    cmdline: str | None = None
    # The API VIP, on the first valar: kube-vip's static pod adds it to the valar's interface, where its sshd answers too.
    vip: str | None = None

    @property
    def state(self) -> Path:
        return self.root / "var-lib-rancher" / "standin"

    def log(self) -> list[tuple[float, str]]:
        """What the stand-ins did on this Pi: (time, what), in order."""
        path = self.state / "log"
        lines = path.read_text().splitlines() if path.exists() else []
        return [(float(t), what) for t, what in (line.split(" ", 1) for line in lines)]

    def kubectl_calls(self) -> list[tuple[float, int, str]]:
        """Each `k3s kubectl` call on this Pi once answered: (when, its exit status, its arguments), in order."""
        path = self.state / "kubectl.log"
        lines = path.read_text().splitlines() if path.exists() else []
        return [(float(t), int(status), args) for t, status, args in (line.split(" ", 2) for line in lines)]

    def version(self) -> str:
        return (self.state / "version").read_text().strip()

    @property
    def etc(self) -> Path:
        """The upper folder of the Pi's /etc overlay: what the Pi has of its own in /etc."""
        return self.root / "etc"

    def path(self, path: str) -> Path:
        """`path` as the Pi sees it, through its sshd's root (in the Pi's mount namespace: the overlay, the binds)."""
        assert self.proc is not None
        return Path(f"/proc/{self.proc.pid}/root") / path.lstrip("/")


@dataclass
class Pis:
    """Every Pi of a stack on one LAN, the operator's namespace, and the API server the Pis reach."""

    stack: StackConfig
    root: Path
    prefix: str
    cluster: Cluster
    key: Path
    pis: dict[str, Pi] = field(default_factory=dict)
    made: list[str] = field(default_factory=list)
    kubectl: Path | None = None
    # The image of each netbooted maia's first root.
    first_images: dict[str, str] = field(default_factory=dict)
    # Each Pi's boots: (when its sshd answered, the image of its root), in order.
    boots: dict[str, list[tuple[float, str | None]]] = field(default_factory=dict)
    # The netboot Pi's built images, once netboot_service runs: what STANDIN_MOUNT finds exported (each root's $S/nfs-images).
    nfs_images: Path | None = None
    # What each host-key step printed (by its urn), as Pulumi's state keeps it for the connections that pin it.
    host_keys: dict[str, str] = field(default_factory=dict)
    # What the Ainur's ca-hash step printed (by its urn), as Pulumi's state keeps it for the maiar's configs.
    ca_hashes: dict[str, str] = field(default_factory=dict)
    # The SSH sessions of the steps running now (`ssh`), which `hang_up` ends.
    sessions: set[subprocess.Popen[str]] = field(default_factory=set)
    # Set by `hang_up` until the next run_like_the_engine: a session not yet started does not start, a step in its redial
    # pause ends it at once.
    hung_up: threading.Event = field(default_factory=threading.Event)
    # `hang_up` and a session's start, one at a time: a session is either seen by the hang-up or sees it.
    _dialing: threading.Lock = field(default_factory=threading.Lock)

    @property
    def operator(self) -> str:
        return f"{self.prefix}o"

    @property
    def switch(self) -> str:
        return f"{self.prefix}w"

    def host(self, key: str, *addresses: str) -> str:
        """Another namespace on the Pis' LAN (the Pi that serves netboot, in NetbootLab)."""
        ns = f"{self.prefix}{key}"
        sh("ip", "netns", "add", ns)
        self.made.append(ns)
        _plug(self.switch, ns, None, *addresses)
        return ns

    def boot(self, name: str, image: str | None, cmdline: str | None = None) -> None:
        """(Re)start the Pi on its root of `image`, as its bootloader and initramfs would after a reboot: every process
        of its namespace killed (a reboot), its root made if it has none (as the NFS server makes a root of a new image:
        as flashed and cloud-init run, with its SSH host key kept, plans.netboot.nfs.KEPT_ON_NEW_IMAGE), then its sshd
        started on it."""
        pi = self.pis[name]
        kill_all(pi.ns)
        stop(pi.proc)
        # Its first root (as the lab made it) is the image it first booted; any other image's is beside it.
        root = self.root / name if image == self.first_images.get(name) else self.root / f"{name}@{image}"
        if not root.exists():
            fresh = Pi(pi.node, pi.ns, root, image=image, cmdline=cmdline)
            assert self.kubectl is not None
            _pi_files(self.stack, fresh, self.cluster, self.kubectl, self.cluster.server, False)
            for key in ("host_key", "host_key.pub"):
                (root / key).write_bytes((pi.root / key).read_bytes())
                (root / key).chmod((pi.root / key).stat().st_mode)
        pi.root, pi.image = root, image
        if self.nfs_images is not None:
            (pi.state / "nfs-images").write_text(f"{self.nfs_images}\n")
        # What TFTP served it (a reboot), or its pointer's as the lab's stack makes it (its first boot).
        pi.cmdline = cmdline if cmdline is not None or image is None else pis_plan.cmdline(self.stack, pi.node, image)
        _mark_image(pi)
        # Nothing of the last boot runs; systemd starts what was enabled (k3s's unit, once its join enabled it).
        for name_ in ("running", "activating", "service.pid", "kubelet.pid", "reboot", "sshd-stop"):
            (pi.state / name_).unlink(missing_ok=True)
        pi.proc = _start_sshd(pi)
        _wait_sshd(self, pi)
        if (pi.state / "enabled").exists():
            (pi.state / "activating").touch()
            nsenter = ["nsenter", "-t", str(pi.proc.pid), "-m", "-n", "-u", "setsid", "/var/lib/rancher/standin/service"]
            subprocess.Popen(nsenter, stdin=subprocess.DEVNULL, stdout=(pi.state / "service.log").open("ab"), stderr=subprocess.STDOUT)
        self.boots.setdefault(name, []).append((time.time(), image))

    def etcd_log(self) -> list[tuple[float, str, str]]:
        """When each etcd member (a valar's k3s) went `up` or `down`, in order (STANDIN_ETCD)."""
        path = self.root / ETCD_LAB / "log"
        lines = path.read_text().splitlines() if path.exists() else []
        return sorted((float(t), what, name) for t, what, name in (line.split(" ") for line in lines))

    def etcd_members(self) -> set[str]:
        folder = self.root / ETCD_LAB / "members"
        return {p.name for p in folder.iterdir()} if folder.exists() else set()

    def by_ip(self, ip: str) -> Pi:
        return next(p for p in self.pis.values() if str(p.node.ip) == ip)

    def ssh(self, connection: Mapping[str, Any], script: str, stdin: str | None, timeout: float = HUNG_SECONDS) -> subprocess.CompletedProcess[str]:
        """The command as pulumi-command runs it: one SSH session to the connection's host, port and user,
        the command string run by the user's shell, `stdin` piped in. `timeout` only stops a hung test: a step
        waits up to its own bound (minutes), and on a machine busy with the rest of the suite an upgrade's
        wait for its Node took over a minute."""
        host, user, port = str(connection["host"]), str(connection["user"]), int(connection.get("port", 22))
        known = self.root / "known_hosts"
        if isinstance(connection.get("hostKey"), str):
            # pulumi-command 1.2.1 with a hostKey accepts that key alone (ssh.FixedHostKey: provider/pkg/provider/
            # remote/connection.go:87-94): OpenSSH's strict check against a known_hosts of that one line.
            known = self.root / f"known_hosts-{host}-pinned"
            known.write_text(f"{host} {connection['hostKey'].strip()}\n")
        args = [require("ssh"), "-i", str(self.key), "-p", str(port), "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={known}"]
        args += ["-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=10", f"{user}@{host}", script]
        return self.redial(["ip", "netns", "exec", self.operator, *args], stdin or "", timeout, int(connection.get("dialErrorLimit", 1)))

    def redial(self, args: list[str], stdin: str, timeout: float, limit: int) -> subprocess.CompletedProcess[str]:
        """The session `args`, dialled again while the host does not answer, as pulumi-command dials up to the
        connection's dialErrorLimit (here 1 s apart, not its backoff): a Pi rebooting. The lab's own sshd answers at once
        otherwise. A hang-up ends the pause at once, and the next dial is not made (`session`)."""
        for _ in range(limit):
            done = self.session(args, stdin, timeout)
            if done.returncode != 255 or not DIAL_FAILED.search(done.stderr):
                return done
            self.hung_up.wait(1)
        return done

    def session(self, args: list[str], stdin: str, timeout: float) -> subprocess.CompletedProcess[str]:
        """subprocess.run(args, input=stdin, timeout=timeout), kept in `sessions` while it runs. After a hang-up, a
        session is not started: it ends as one killed at its start would (-SIGKILL, nothing written)."""
        with self._dialing:
            if self.hung_up.is_set():
                return subprocess.CompletedProcess(args, -signal.SIGKILL, "", "")
            process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            self.sessions.add(process)
        with process:
            try:
                out, err = process.communicate(stdin, timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                raise
            finally:
                self.sessions.discard(process)
        return subprocess.CompletedProcess(args, process.returncode, out, err)

    def hang_up(self) -> None:
        """End the SSH sessions of the steps still running (`ip netns exec` execs ssh: the client itself is killed), as
        the engine's steps end when `pulumi up` is stopped, and every session after (`hung_up`): a step between two
        dials, or submitted and not yet dialling, ends at its next dial rather than making it. Their threads'
        `communicate` returns at once; what a session left running on a Pi goes with the lab's teardown (kill_all of
        each Pi's namespace)."""
        with self._dialing:
            self.hung_up.set()
            for process in list(self.sessions):
                process.kill()


def _plug(switch: str, ns: str, mac: str | None, *addresses: str) -> None:
    """Plug namespace `ns` into the LAN's switch as eth0 (with `mac`: the Pi's inventory MAC, which dnsmasq's
    tftp-unique-root=mac reads), with `addresses`."""
    sh("ip", "link", "add", f"{ns}v", "netns", switch, "type", "veth", "peer", "name", "eth0", "netns", ns)
    in_ns(switch, "ip", "link", "set", f"{ns}v", "master", "br0", "up")
    in_ns(ns, "ip", "link", "set", "lo", "up")
    if mac is not None:
        in_ns(ns, "ip", "link", "set", "eth0", "address", mac)
    for address in addresses:
        in_ns(ns, "ip", "addr", "add", address, "dev", "eth0")
    in_ns(ns, "ip", "link", "set", "eth0", "up")


def kill_all(ns: str) -> None:
    """Every process of the namespace, killed at once: a Pi that reboots (or loses power)."""

    def gone() -> bool:
        pids = [p for p in sh("ip", "netns", "pids", ns, check=False).stdout.split() if p]
        if pids:
            sh("kill", "-9", *pids, check=False)
        return not pids

    wait_until(f"the processes of {ns} to die", gone, 20, lambda: sh("ip", "netns", "pids", ns, check=False).stdout.split())


def firmware_cmdline(text: str) -> str:
    """STAND-IN for what the Pi's firmware passes the kernel of a cmdline.txt (/proc/cmdline): words of its own first,
    and `console=serial0` rewritten to the UART config.txt selects (raspberrypi/documentation, config_txt/boot.adoc,
    enable_uart: "serial0"; the exact words it adds vary with the board and firmware, these are a Pi 4's)."""
    words = ["coherent_pool=1M", "8250.nr_uarts=1", "snd_bcm2835.enable_headphones=0", "bcm2708_fb.fbwidth=0"]
    words += [w.replace("console=serial0", "console=ttyS0") for w in text.split()]
    return " ".join(words) + "\n"


def _mark_image(pi: Pi) -> None:
    """The image a netbooted maia's root is of, where the NFS server writes it (plans.netboot.nfs.IMAGE_MARK)."""
    if pi.image is not None:
        mark = pi.etc / "iluvatar" / "pi-image"
        mark.parent.mkdir(parents=True, exist_ok=True)
        mark.write_text(pi.image + "\n")


def _wait_sshd(lab: Pis, pi: Pi) -> None:
    """Until the Pi's sshd has bound its listening sockets: OpenSSH writes its PidFile only after that (sshd.c, main:
    "Write out the pid file after the sigterm handler is setup and the listen sockets are bound"), and _start_sshd
    removed any earlier one. An sshd that exits first fails at once with its log; the bound only stops a hang (how
    long the start takes on a loaded machine decides nothing). Then one dial from the operator, which must answer."""
    assert pi.proc is not None
    proc, pid_file, log = pi.proc, pi.root / "sshd.pid", pi.root / "sshd.log"

    def bound() -> bool:
        assert proc.poll() is None, log.read_text()
        return pid_file.exists() and pid_file.read_text().strip() == str(proc.pid)

    wait_until(f"{pi.node.name}'s sshd to bind its sockets", bound, HUNG_SECONDS, log.read_text, interval=0.05)
    dial = in_ns(lab.operator, "bash", "-c", f"exec 3<>/dev/tcp/{pi.node.ip}/22", check=False)
    assert dial.returncode == 0, (dial.stderr, log.read_text())
    # Pi.path reads through this process's root: it is sshd itself, in the Pi's mount namespace.
    assert Path(f"/proc/{proc.pid}/comm").read_text() == "sshd\n"


def _opaque(path: Path) -> Path:
    """A folder of an overlay's upper layer that hides the lower one's (this machine's) of the same name."""
    path.mkdir(parents=True, exist_ok=True)
    os.setxattr(path, "trusted.overlay.opaque", b"y")
    return path


def _pi_files(stack: StackConfig, pi: Pi, cluster: Cluster, kubectl: Path, service_url: str, hosts_template: bool) -> None:
    """The Pi as it is once flashed and cloud-init has run: its user, key and sudo rule from its user-data,
    k3s installed (the stand-in) at the stack's version, not started; cloud-init's template of /etc/hosts
    where `hosts_template`."""
    assert stack.ainur is not None
    data = yaml.safe_load(cloudinit.user_data(stack, pi.node))
    user = next(u for u in data["users"] if isinstance(u, dict))
    name = user["name"]
    root = pi.root
    etc = pi.etc
    etc.mkdir(parents=True)
    (etc / "passwd").write_text(Path("/etc/passwd").read_text() + f"{name}:x:{UID}:{UID}:{name}:/home/{name}:/bin/bash\n")
    (etc / "group").write_text(Path("/etc/group").read_text() + f"{name}:x:{UID}:\n")
    (etc / "shadow").write_text(Path("/etc/shadow").read_text() + f"{name}:*:19000:0:99999:7:::\n")
    (etc / "shadow").chmod(0o640)
    (etc / "hosts").write_text(f"127.0.0.1 localhost\n127.0.1.1 {pi.node.name}\n")
    # The Pi's own, not this machine's with the Pi's added: opaque in the overlay.
    sudoers = _opaque(etc / "sudoers.d")
    # What cloud-init writes for the user's `sudo:` (cc_users_groups: /etc/sudoers.d/90-cloud-init-users).
    (sudoers / "90-cloud-init-users").write_text(f"{name} {user['sudo']}\n")
    (sudoers / "90-cloud-init-users").chmod(0o440)
    ssh = root / "home" / name / ".ssh"
    ssh.mkdir(parents=True)
    (ssh / "authorized_keys").write_text("".join(f"{k}\n" for k in user["ssh_authorized_keys"]))
    for path in (ssh.parent, ssh, ssh / "authorized_keys"):
        os.chown(path, UID, UID)
    ssh.chmod(0o700)
    (root / "etc-rancher").mkdir()
    (etc / "rancher").mkdir()  # where etc-rancher is bound: this machine's /etc has no /etc/rancher of its own to lend
    # cloud-init's folder: this machine's cloud-init's files are not the Pi's; its hosts template only where flashed with it.
    cloud = _opaque(etc / "cloud")
    if hosts_template:
        (cloud / "templates").mkdir()
        (cloud / "templates" / "hosts.debian.tmpl").write_text(HOSTS_TEMPLATE_TEXT)
    bin_ = root / "bin"
    bin_.mkdir()
    standins = {
        "k3s": STANDIN_K3S,
        "systemctl": STANDIN_SYSTEMCTL,
        "cloud-init": STANDIN_CLOUD_INIT,
        "curl": STANDIN_CURL,
        "systemd-run": STANDIN_SYSTEMD_RUN,
        "mount": STANDIN_MOUNT,
        "umount": STANDIN_UMOUNT,
    }
    for script, text in standins.items():
        (bin_ / script).write_text(text.replace("__KUBECTL__", str(kubectl)))
        (bin_ / script).chmod(0o755)
    state = pi.state
    state.mkdir(parents=True)
    state.chmod(0o755)
    state.parent.chmod(0o755)
    (state / "log").write_text("")
    (state / "log").chmod(0o666)  # cloud-init's stand-in runs as the Pi's user
    (state / "kubectl.log").write_text("")
    (state / "kubectl.log").chmod(0o666)
    (state / "install.sh").write_text(STANDIN_INSTALLER)
    (state / "service").write_text(
        STANDIN_SERVICE.replace("__ETCD_START__", repr(ETCD_START)).replace("__CA__", shlex.quote(str(cluster.pki / "ca.crt")))
    )
    (state / "service").chmod(0o755)
    (state / "stop").write_text(STANDIN_STOP)
    (state / "stop").chmod(0o755)
    (state / "etcd.py").write_text(STANDIN_ETCD)
    for key, value in (("name", pi.node.name), ("role", pi.node.role), ("ip", str(pi.node.ip))):
        (state / key).write_text(value + "\n")
    (root / "var-lib-rancher" / "etcd-lab").mkdir()  # where the lab's etcd folder is bound (_start_sshd)
    role = pi.node.role
    kubelet = STANDIN_KUBELET.replace("__NAME__", repr(pi.node.name)).replace("__ROLE__", repr(role)).replace("__DELAY__", repr(KUBELET_DELAY))
    # k3s's admin kubeconfig (a server writes it at start; here it points at the test's API server), and the
    # kubelet's credentials: a client certificate of system:node:<name>, as k3s's agent gets one.
    pki = cluster.pki
    _leaf(pki, f"node-{pi.node.name}", f"/O=system:nodes/CN=system:node:{pi.node.name}", "clientAuth")
    kubelet = kubelet.replace("__KUBECTL__", str(kubectl)).replace("__PORT__", str(HEALTHZ_PORT)).replace("__SERVER__", repr(service_url))
    kubelet = kubelet.replace("__CA__", repr(str(pki / "ca.crt"))).replace("__CERT__", repr(str(pki / f"node-{pi.node.name}.crt")))
    (state / "kubelet.py").write_text(kubelet.replace("__KEY__", repr(str(pki / f"node-{pi.node.name}.key"))))
    join = STANDIN_AGENT_JOIN.replace("__SERVER__", repr(service_url)).replace("__NODE_CERT__", repr(str(pki / f"node-{pi.node.name}.crt")))
    (state / "agent_join.py").write_text(join.replace("__NODE_KEY__", repr(str(pki / f"node-{pi.node.name}.key"))))
    node_cfg = kubeconfig(service_url, pki / "ca.crt", pki / f"node-{pi.node.name}.crt", pki / f"node-{pi.node.name}.key")
    (state / "kubelet.kubeconfig").write_text(yaml.safe_dump(node_cfg))
    agent = root / "var-lib-rancher" / "k3s" / "agent"
    agent.mkdir(parents=True)
    (agent / "kubelet.kubeconfig").write_text(yaml.safe_dump(node_cfg))
    if role == "valar":
        (state / "k3s.yaml").write_text(yaml.safe_dump(kubeconfig(service_url, pki / "ca.crt", pki / "admin.crt", pki / "admin.key")))
    # cloud-init's install line ran (INSTALL_K3S_SKIP_START): the stand-in installed at the stack's version.
    (state / "version").write_text(stack.ainur.k3s_version + "\n")
    unit = "k3s" if role == "valar" else "k3s-agent"
    (bin_ / f"{unit}-uninstall.sh").write_text(
        f"#!/bin/sh\n# STAND-IN for k3s's uninstall script (it removes itself, as k3s's does)\nS=/var/lib/rancher/standin\n"
        f'echo "$(date +%s.%N) uninstall" >> $S/log\n/usr/local/bin/systemctl stop {unit}\nrm -f $S/version "$0"\n'
    )
    (bin_ / f"{unit}-uninstall.sh").chmod(0o755)


def _start_sshd(pi: Pi) -> subprocess.Popen[bytes]:
    root = pi.root
    if not (root / "host_key").exists():
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"throwaway host key of {pi.node.name}", "-f", str(root / "host_key"))
    # Where the Pi's sshd keeps its public key, as the host-key step reads it (plans.netboot.roll.HOST_KEY).
    (pi.etc / "ssh").mkdir(parents=True, exist_ok=True)
    (pi.etc / "ssh" / "ssh_host_ed25519_key.pub").write_text((root / "host_key.pub").read_text())
    listen = "".join(f"ListenAddress {address}\n" for address in (pi.node.ip, *([pi.vip] if pi.vip else [])))
    (root / "sshd_config").write_text(
        f"Port 22\n{listen}HostKey {root / 'host_key'}\nPidFile {root / 'sshd.pid'}\n"
        "UsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin no\n"
    )
    # /etc first (its upper folder holds /etc/rancher, the mount point bound next), then the Pi's folders.
    shutil.rmtree(root / "etc-work", ignore_errors=True)
    (root / "etc-work").mkdir()
    overlay = f"lowerdir=/etc,upperdir={pi.etc},workdir={root / 'etc-work'}"
    binds = {"bin": "/usr/local/bin", "etc-rancher": "/etc/rancher", "var-lib-rancher": "/var/lib/rancher", "home": "/home"}
    setup = "; ".join(
        [f"mount -t overlay iluvatar-pi-etc -o {shlex.quote(overlay)} /etc"]
        + [f"mount --bind {shlex.quote(str(root / src))} {dst}" for src, dst in binds.items()]
        # The Ainur's etcd, one folder for every Pi (STANDIN_ETCD), over the Pi's own /var/lib/rancher.
        + [f"mount --bind {shlex.quote(str(root.parent / ETCD_LAB))} /var/lib/rancher/etcd-lab"]
    )
    if pi.image is not None:
        # The kernel's boot id, as a netbooted maia's kubelet reports it and its join reads it (plans.netboot.roll.
        # booted_gate): a new one at each start (a boot), over the host's in the Pi's mount namespace (a namespace has
        # no boot of its own).
        (root / "boot-id").write_text(f"{uuid.uuid4()}\n")
        setup += f"; mount --bind {shlex.quote(str(root / 'boot-id'))} /proc/sys/kernel/random/boot_id"
        # Its kernel's command line, as the reboot step reads it (plans.netboot.roll.reboot_script), over the host's.
        (root / "cmdline").write_text(firmware_cmdline(pi.cmdline or ""))
        setup += f"; mount --bind {shlex.quote(str(root / 'cmdline'))} /proc/cmdline"
    # The last start's pid file, left by an sshd killed with its Pi, would pass _wait_sshd before this one has bound.
    (root / "sshd.pid").unlink(missing_ok=True)
    script = f"set -e; hostname {pi.node.name}; {setup}; exec {require('sshd')} -D -e -f {root / 'sshd_config'}"
    log = (root / "sshd.log").open("wb")
    return subprocess.Popen(
        ["ip", "netns", "exec", pi.ns, "unshare", "--mount", "--uts", "--propagation", "private", "sh", "-c", script],
        stdout=log,
        stderr=subprocess.STDOUT,
    )


@contextmanager
def pis(
    stack: StackConfig,
    root: Path,
    cluster_for: Any,
    kubectl: Path,
    key: Path,
    hosts_templates: Collection[str] = (),
    images: Mapping[str, str] | None = None,
) -> Iterator[Pis]:
    """The stack's Pis up on a LAN of namespaces, sshd answering on each, the API server on a veth into the LAN.

    `cluster_for(address)` starts the API server listening at `address` (the host's end of that veth);
    the Pis named in `hosts_templates` have cloud-init's template of /etc/hosts, the others none; the netbooted
    maiar named in `images` have a root of that image (its mark: plans.netboot.nfs.IMAGE_MARK)."""
    images = images or {}
    require("sudo")  # the Pi user's sudo, as cloud-init sets it up
    prefix = f"k3{os.getpid() % 10000}"
    block = os.getpid() % 150 + 100
    here = f"169.254.{block}.1"
    made: list[str] = []
    pis_: dict[str, Pi] = {}
    cluster: Cluster | None = None
    veth = f"{prefix}k"
    try:
        switch = f"{prefix}w"
        for ns in (switch, f"{prefix}o"):
            sh("ip", "netns", "add", ns)
            made.append(ns)
        in_ns(switch, "ip", "link", "add", "br0", "type", "bridge")
        in_ns(switch, "ip", "link", "set", "br0", "up")

        def plug(ns: str, *addresses: str, mac: str | None = None) -> None:
            _plug(switch, ns, mac, *addresses)

        lan = stack.network.lan.prefixlen
        plug(f"{prefix}o", f"{OPERATOR_IP}/{lan}")
        sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "kube", "netns", switch)
        in_ns(switch, "ip", "link", "set", "kube", "master", "br0", "up")
        sh("ip", "addr", "add", f"{here}/24", "dev", veth)
        sh("ip", "link", "set", veth, "up")
        cluster = cluster_for(here)
        assert cluster is not None
        # Each Pi binds its own folder on /var/lib/rancher, which must exist here for that. Made if missing and left,
        # empty: another worker's lab may have Pis bound on it now, and an rmdir here would succeed and take their
        # mounts away (a mount point in another mount namespace is removable, its mounts detached: Linux fs/namespace.c
        # __detach_mounts, since 3.18).
        Path("/var/lib/rancher").mkdir(exist_ok=True)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        known: list[str] = []
        (root / ETCD_LAB).mkdir(mode=0o755, parents=True)
        for i, node in enumerate(stack.ainur_nodes):
            ns = f"{prefix}{i}"
            sh("ip", "netns", "add", ns)
            made.append(ns)
            # The first valar holds the API VIP too, as kube-vip's static pod puts it on the valar's interface
            # (plans.cloudinit): the steps that reach "whichever valar holds the VIP" reach it there.
            assert stack.ainur is not None
            vip = [f"{stack.ainur.vip}/{lan}"] if i == 0 and node.role == "valar" else []
            plug(ns, f"{node.ip}/{lan}", *vip, f"169.254.{block}.{10 + i}/24", mac=node.mac)
            image = images.get(node.name)
            pi = Pi(
                node,
                ns,
                root / node.name,
                image=image,
                cmdline=pis_plan.cmdline(stack, node, image) if image else None,
                vip=vip[0].split("/")[0] if vip else None,
            )
            _pi_files(stack, pi, cluster, kubectl, cluster.server, node.name in hosts_templates)
            _mark_image(pi)
            pi.proc = _start_sshd(pi)
            known += [f"{address} {(pi.root / 'host_key.pub').read_text().strip()}" for address in (str(node.ip), *(v.split("/")[0] for v in vip))]
            pis_[node.name] = pi
        (root / "known_hosts").write_text("\n".join(known) + "\n")
        lab = Pis(stack, root, prefix, cluster, key, pis_, made, kubectl, dict(images))
        for pi in pis_.values():  # sshd answers
            _wait_sshd(lab, pi)
        yield lab
    finally:
        for pi in pis_.values():
            kill_all(pi.ns)
            for name in ("kubelet.pid", "service.pid"):
                pid = pi.state / name
                if pid.exists():
                    sh("kill", pid.read_text().strip(), check=False)
            stop(pi.proc)
        if cluster is not None:
            cluster.stop()
        sh("ip", "link", "del", veth, check=False)
        for ns in reversed(made):
            sh("ip", "netns", "del", ns, check=False)


def secret(value: Any) -> Any:
    return value.value if isinstance(value, SecretValue) else value


def connection_of(lab: Pis, reg: Registration) -> dict[str, Any]:
    """A step's connection as the engine resolves it: a pinned host key is the host-key step's stdout, from this run or
    Pulumi's state of an earlier one (Pis.host_keys)."""
    connection = {**secret(reg.inputs["connection"]), "privateKey": "(the test's key)"}
    if "hostKey" in connection:
        pins = [lab.host_keys[u] for u in reg.property_dependencies.get("connection", ()) if u in lab.host_keys]
        assert len(pins) == 1, f"{reg.name}: its connection pins a host key no host-key step printed"
        connection["hostKey"] = pins[0]
    return connection


def stdin_of(lab: Pis, reg: Registration) -> str | None:
    """A step's stdin as the engine resolves it: a maia's config carries the CA hash the ca-hash step printed (this run's,
    or Pulumi's state of an earlier one: Pis.ca_hashes), where the mock runtime had MOCK_CA_HASH."""
    stdin = secret(reg.inputs.get("stdin"))
    if isinstance(stdin, str) and MOCK_CA_HASH in stdin:
        printed = [lab.ca_hashes[u] for u in reg.property_dependencies.get("stdin", ()) if u in lab.ca_hashes]
        assert len(printed) == 1, f"{reg.name}: its stdin carries a CA hash no ca-hash step printed"
        stdin = stdin.replace(MOCK_CA_HASH, printed[0])
    return stdin if isinstance(stdin, str) or stdin is None else str(stdin)


def run_like_the_engine(
    lab: Pis,
    graph: Graph,
    steps: list[Registration],
    scripts: Mapping[str, str] | None = None,
    decide: Callable[[Registration, Mapping[str, Step]], bool] | None = None,
) -> dict[str, Step]:
    """Run `steps` (remote commands, and ConfigMaps, applied to the lab's API server) as the engine would: each as soon
    as every step it depends on (in the graph, directly or not) has finished, in parallel otherwise; a step whose
    dependency failed is not run. `scripts` replaces a step's command (a deliberate break). `decide`, asked once the
    steps a step depends on have finished (with what they printed), says whether the engine runs it (its diff against
    its own stored state: test_pi_roll.Engine); a step it does not run counts as finished and is not returned. A
    ConfigMap's `stdout` is the resourceVersion the API server gave it (the output a step's `triggers` read)."""
    names = {s.urn: s for s in steps}
    needs = {s.urn: {u for u in graph.ancestors(s.urn) if u in names} for s in steps}
    done: dict[str, Step] = {}
    unchanged: set[str] = set()
    lock = threading.Lock()

    def run(reg: Registration) -> Step:
        if reg.type == "kubernetes:core/v1:ConfigMap":
            # pulumi-kubernetes's server-side apply of the object (a netbooted maia's boot pointer).
            start = time.time()
            obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": secret(reg.inputs["metadata"]), "data": secret(reg.inputs["data"])}
            applied = lab.cluster.client.apply(obj, field_manager="pulumi-kubernetes", force=True)
            return Step(reg.name, start, time.time(), 0, str(applied["metadata"]["resourceVersion"]), "")
        if reg.type == "kubernetes:core/v1:Secret":
            # A maia's bootstrap-token Secret (plans.agent_token), applied as pulumi-kubernetes does.
            start = time.time()
            obj = {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": secret(reg.inputs["type"]),
                "metadata": secret(reg.inputs["metadata"]),
                "stringData": secret(reg.inputs["stringData"]),
            }
            applied = lab.cluster.client.apply(obj, field_manager="pulumi-kubernetes", force=True)
            return Step(reg.name, start, time.time(), 0, str(applied["metadata"]["resourceVersion"]), "")
        connection = connection_of(lab, reg)
        script = (scripts or {}).get(reg.name, reg.inputs["create"])
        start = time.time()
        result = lab.ssh(connection, script, stdin_of(lab, reg))
        if reg.name.endswith("-host-key") and result.returncode == 0:
            lab.host_keys[reg.urn] = result.stdout
        if reg.name.endswith("-ca-hash") and result.returncode == 0:
            lab.ca_hashes[reg.urn] = result.stdout.strip()
        return Step(reg.name, start, time.time(), result.returncode, result.stdout, result.stderr)

    lab.hung_up.clear()  # a run's hang-up ends that run's steps, not the next run's on the same lab
    with ThreadPoolExecutor(max_workers=len(steps) or 1) as pool:
        # A Ctrl-C (KeyboardInterrupt: this thread alone sees it) or a failure here ends the steps still running: else the
        # pool's `with` waited for each to its end (a roll's drain, minutes) before the run could end.
        try:
            running: dict[Future[Step], str] = {}
            waiting = set(names)
            while waiting or running:
                settled = True
                while settled:  # a step found unchanged lets the steps after it go at once
                    settled = False
                    for urn in sorted(waiting):
                        if needs[urn] <= set(done) and all(done[u].returncode == 0 for u in needs[urn]):
                            waiting.discard(urn)
                            if decide is not None and not decide(names[urn], {done[u].name: done[u] for u in done}):
                                now = time.time()
                                done[urn] = Step(names[urn].name, now, now, 0, "", "")
                                unchanged.add(urn)
                                settled = True
                                continue
                            running[pool.submit(run, names[urn])] = urn
                        elif any(u in done and done[u].returncode != 0 for u in needs[urn]):
                            waiting.discard(urn)
                if not running:
                    break
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    with lock:
                        done[running.pop(future)] = future.result()
        except BaseException:
            lab.hang_up()
            raise
    return {step.name: step for urn, step in done.items() if urn not in unchanged}


@dataclass
class NetbootService:
    """The Ainur's netboot service as a netbooted maia meets it (`netboot_service`)."""

    ns: str
    tftp: Path
    boots: Path
    images: Path
    # (when, Pi, image) of each reboot the lab did, in order.
    reboots: list[tuple[float, str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _project(lab: Pis, boots: Path) -> None:
    """STAND-IN for the kubelet's update of the pi-boot ConfigMaps' projected volume: the ConfigMaps as the real API
    server has them, written in a version folder and put in place by one rename of ..data, as the kubelet's atomic
    writer does (k8s.io/kubernetes pkg/volume/util/atomic_writer.go). The kubelet does it within its sync period (a
    minute on k3s); here within a second."""
    from plans.netboot import pi_pods

    data = {
        f"{cm['metadata']['name'].removeprefix('pi-boot-')}/{key}": text
        for cm in lab.cluster.client.list("v1", "ConfigMap", "netboot")
        if cm["metadata"]["name"].startswith("pi-boot-")
        for key, text in (cm.get("data") or {}).items()
        if key in pi_pods.POINTER_KEYS
    }
    link = boots / "..data"
    current = boots / os.readlink(link) if link.is_symlink() else None
    if current is not None and {str(p.relative_to(current)): p.read_text() for p in current.rglob("*") if p.is_file()} == data:
        return
    version = boots / f"..{time.time_ns()}"
    for rel, text in data.items():
        (version / rel).parent.mkdir(parents=True, exist_ok=True)
        (version / rel).write_text(text)
    version.mkdir(parents=True, exist_ok=True)
    (boots / "..data_tmp").unlink(missing_ok=True)
    (boots / "..data_tmp").symlink_to(version.name)
    os.replace(boots / "..data_tmp", link)
    if current is not None:
        shutil.rmtree(current)


def _reboot(lab: Pis, service: NetbootService, pi: Pi, svc: str) -> None:
    """STAND-IN for a Pi's reboot, its bootloader, kernel and initramfs: every process of its namespace killed; then its
    cmdline.txt read over TFTP from the service address as its bootloader reads it (TFTP_IP; the real dnsmasq, under
    its serial), again every second while it is not served (its BOOT_ORDER starts over); then the root its nfsroot
    names booted (Pis.boot: the NFS server is not run here, tests/netns/test_pi_nfs.py runs it with these roots)."""
    kill_all(pi.ns)
    stop(pi.proc)
    assert pi.node.serial is not None

    def served() -> tuple[str, str] | None:
        got = in_ns(pi.ns, "curl", "-sf", "--max-time", "5", f"tftp://{svc}/{pi.node.serial}/cmdline.txt", check=False)
        found = re.search(rf"nfsroot={re.escape(svc)}:/pis/{pi.node.name}/([^,]+),", got.stdout)
        return (found.group(1), got.stdout) if found else None

    booted = wait_until(f"{pi.node.name}'s bootloader to get its cmdline.txt over TFTP", served, 120, interval=1)
    assert booted is not None  # what wait_until returns holds
    image, cmdline = booted
    service.reboots.append((time.time(), pi.node.name, image))
    lab.boot(pi.node.name, image, cmdline)


def reboot_now(lab: Pis, service: NetbootService, name: str) -> None:
    """A Pi that reboots by itself (a power cut): it boots what the netboot service serves it now."""
    _reboot(lab, service, lab.pis[name], str(lab.stack.ainur.service_ip) if lab.stack.ainur else "")


@contextmanager
def netboot_service(lab: Pis, images: Path) -> Iterator[NetbootService]:
    """What a netbooted maia boots from, with the real programs where they run here: dnsmasq (2.90) serving TFTP on the
    service address with the program's own TFTP lines (plans.netboot.dnsmasq_conf), from a TFTP root the program's
    pi-tftp script (plans.netboot.pis.tftp_script, looping as netboot-cache runs it) keeps from `images` and the boot
    pointers; the pointers as the kubelet projects them from the real API server (STAND-IN, `_project`); and each
    netbooted maia's reboot (STAND-IN, `_reboot`) when it asks for one (systemd-run), and its sshd's listener stopped
    when it asks for that (systemctl stop ssh.socket ssh.service), its sessions going on."""
    from plans import netboot as plan

    assert lab.stack.ainur is not None
    svc = str(lab.stack.ainur.service_ip)
    root = lab.root / "netboot"
    tftp, boots = root / "tftp", root / "boots"
    tftp.mkdir(parents=True)
    boots.mkdir()
    ns = lab.host("s", f"{svc}/{lab.stack.network.lan.prefixlen}")
    lines = [line for line in plan.dnsmasq_conf(lab.stack, tftp_root=str(tftp)).splitlines() if line.startswith(("enable-tftp", "tftp-"))]
    conf = root / "dnsmasq.conf"
    conf.write_text("\n".join(["port=0", "bind-interfaces", f"listen-address={svc}", *lines]) + "\n")
    dnsmasq = subprocess.Popen(
        # --user=root as tests/netns/lan.py runs it: dnsmasq drops to `nobody` by default, who cannot enter pytest's
        # 0700 temporary folders ("TFTP directory ... inaccessible: Permission denied", and it exits).
        [
            "ip", "netns", "exec", ns, require("dnsmasq"), "--keep-in-foreground", f"--conf-file={conf}", "--user=root",
            "--log-facility=-", f"--pid-file={root}/dnsmasq.pid",
        ],
        stdout=(root / "dnsmasq.log").open("wb"),
        stderr=subprocess.STDOUT,
    )  # fmt: skip

    # Up and listening on TFTP's port before any Pi asks, or the lab fails now saying why (not a step's bound later).
    def listening() -> bool:
        assert dnsmasq.poll() is None, f"dnsmasq exited: {(root / 'dnsmasq.log').read_text()}"
        return ":69 " in in_ns(ns, "ss", "-Hlun", "sport", "= :69", check=False).stdout

    wait_until("dnsmasq to serve TFTP", listening, 10, lambda: (root / "dnsmasq.log").read_text())
    script = root / "pi-tftp.sh"
    script.write_text(pis_plan.tftp_script())
    service = NetbootService(ns, tftp, boots, images)
    lab.nfs_images = images
    for pi in lab.pis.values():
        (pi.state / "nfs-images").write_text(f"{images}\n")
    _project(lab, boots)
    loop = subprocess.Popen(
        ["sh", str(script)],
        env={**os.environ, "TFTP_ROOT": str(tftp), "IMAGES": str(images), "BOOTS": str(boots)},
        stdout=(root / "pi-tftp.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            try:
                _project(lab, boots)
                for pi in lab.pis.values():
                    if pi.image is None:
                        continue
                    if (pi.state / "sshd-stop").exists():
                        stop(pi.proc)  # the listener only: its sessions are processes of their own
                        (pi.state / "sshd-stop").unlink()  # then systemctl's stop returns
                    due = pi.state / "reboot"
                    if due.exists() and time.time() >= int(due.read_text()):
                        due.unlink()
                        _reboot(lab, service, pi, svc)
            except Exception as e:
                service.errors.append(repr(e))
            done.wait(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield service
    finally:
        done.set()
        watcher.join(30)
        for proc in (loop, dnsmasq):
            proc.terminate()
            proc.wait(timeout=10)
