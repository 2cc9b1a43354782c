#!/usr/bin/env bash
# System prerequisites for Iluvatar's tests, on Debian or Ubuntu: the real programs the generated
# artifacts are checked with, and a Go toolchain for the checkers under tools/. The test command
# (scripts/test, the README's second command, which CI runs) runs this first, so a newcomer's machine
# and CI's cannot drift apart. Safe to run again: it installs only what is missing, in a second or two
# when nothing is.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi

# dnsmasq (--test and the live DHCP/TFTP server), cloud-init (schema), busybox udhcpc, tftp-hpa,
# curl, iproute2 (network namespaces), graphviz (the diagram), openssl (a certificate for the
# netboot test's stand-in API). The netboot tests also run real PXE firmware (qemu-system-x86,
# ipxe-qemu: the e1000's iPXE ROM, ovmf: x86-64 UEFI; qemu-system-arm, qemu-efi-aarch64: arm64
# UEFI), the real web server (nginx) and DNS client (bind9-dnsutils: dig).
# openssh-server, openssh-client and sudo: the k3s steps' scripts run over real SSH, as the Pis' user with
# sudo, to a Debian sshd in a network namespace per Pi (tests/netns/test_k3s_steps.py).
# git: the GitOps check serves a repository as the Ainur's mirror does (clone --mirror, git daemon), and
# Argo CD's own Git client fetches and checks it out with the git CLI (tools/appset_check.py).
# libnginx-mod-stream: nginx's stream module, which the Ainur's front door passes Dex's TLS through (plans.identity).
# restic: VolSync's mover backs up and restores a volume with the repository and password our Secret
# carries (tests/test_data_safety.py); Debian 12 ships 0.14.0, whose repository format (v2) the mover's reads.
# jq: docs/bring-up.md's recovery of a stopped run reads the state with it, and tests/test_docs.py runs those lines.
# dash: Debian's /bin/sh, which pulumi-command runs every local step with; a step stopped as Pulumi stops one runs
# under it (tests/upgrader/test_cancel.py). Essential on Debian: named so a machine whose /bin/sh is another has it.
# busybox (its ash, Alpine's /bin/sh) and bash (Essential): the /bin/sh of other systems, which exec a lone command
# in their own place; the same stopped step runs under each too.
# nftables: the remote access test's home and phone routers (NAT, the port forward to Headscale; tests/netns/test_remote_access.py).
# nfs-ganesha, nfs-ganesha-vfs (its rpcbind comes along), libnfs-utils: the netbooting maiar's NFS roots, the real server and a
# userspace client (this kernel has no NFS client); mtools, dosfstools, cpio: the Pi image builder's test images (issue #41);
# iptables: a netbooted maia's guard of its NFS server against its own pods, run as the Pi runs it.
# strace: holds the real dnsmasq at a chosen system call of its start, so the netboot pod's records loop is tested
# against a dnsmasq that has not yet caught SIGHUP (tests/netns/test_dnsmasq_records.py).
packages=(dnsmasq-base cloud-init udhcpc tftp-hpa curl iproute2 graphviz openssl nfs-ganesha nfs-ganesha-vfs libnfs-utils mtools dosfstools cpio
  qemu-system-x86 ipxe-qemu ovmf qemu-system-arm qemu-efi-aarch64 nginx libnginx-mod-stream bind9-dnsutils git
  openssh-server openssh-client sudo restic jq dash busybox bash systemd-journal-remote iptables strace)
# systemd-journal-remote: journald's own forwarder (systemd-journal-upload) sends a Pi's journal to the log store, and
# systemd-journal-remote writes the journal file it reads (tests/netns/test_logs.py).
packages+=(nftables)
# distro-info-data: Ubuntu's releases and their end of support, which the Pi image's release is checked against
# (tests/stacks/test_model.py reads its ubuntu.csv against stacks.model.UBUNTU_SUPPORT).
packages+=(distro-info-data)
# cryptsetup-bin: Debian's cryptsetup makes and opens a LUKS2 volume with the passphrase the Ainur's KMS unsealed, as
# Talos does (tests/plans/test_kms_server.py).
packages+=(cryptsetup-bin)
# mosquitto, mosquitto-clients: Debian 12's MQTT broker runs the example broker's own mosquitto.conf behind the app's
# address, and mosquitto_pub/mosquitto_sub on a LAN laptop reach it by name (tests/netns/test_raw_ports.py, issue #56).
packages+=(mosquitto mosquitto-clients)
# Node.js runs yaml-language-server, the editors' own checker of the stack file schema (tools/yaml_ls.py); its npm installs
# Renovate's config validator and the Node 24 it asks for, from the npm registry (tools/renovate_check.py).
if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
  packages+=(nodejs npm)
fi
# Debian's own python3 needs python3-venv for `python3 -m venv`; another Python (pyenv, a
# distribution's python3.11+) already has it.
if ! python3 -c "import ensurepip, venv" 2>/dev/null; then
  packages+=(python3-venv)
fi

# Only what is missing: on a machine that has them all, no apt at all (the test command runs this every time).
missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  # The lock timeout: several installs may share one machine (and one dpkg lock).
  $sudo apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Go 1.21+ builds the checkers under tools/ (each pinned by its own go.mod). Without one, tools.gotools
# fetches a pinned Go release from the Go module proxy, checked against its checksum; do it now so
# the test run never stops on it.
go=$(python3 - <<'PY'
import sys
from tools.gotools import GoToolError, go_binary
try:
    print(go_binary())
except GoToolError as e:
    sys.exit(f"prerequisites: {e}")
PY
)

# Debian 13's cloud-init (network-config schema) and iPXE (the binaries the Ainur serve, arm64 too),
# pinned by SHA-256 and unpacked into the user's cache, never installed on the system.
python3 -m tools.debian fetch >/dev/null
echo "prerequisites: Debian packages installed, Debian 13's cloud-init and iPXE unpacked; Go: $("$go" version)"
