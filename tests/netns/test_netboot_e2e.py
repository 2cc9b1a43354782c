"""Netboot end to end: the real dnsmasq serves the generated config to real DHCP, TFTP and HTTP clients.

A server namespace holds a bridge with the first valar's address, dnsmasq running the config
generated for the homelab stack, and an HTTP server over the layout the Ainur serve. Each
client is its own namespace with a MAC from the inventory (or an unknown one), asking with
busybox udhcpc as PXE firmware or iPXE would. Traffic never leaves these namespaces.
"""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from plans import netboot
from stacks import StackConfig, load_stack_file, parse_stack, read_stack_file
from tests.edit import HOMELAB
from tests.tools import require

if os.geteuid() != 0:
    if os.environ.get("CI"):
        pytest.fail("the netboot end-to-end test needs root (network namespaces); CI runs as root", pytrace=False)
    pytest.skip("needs root for network namespaces", allow_module_level=True)

PREFIX = f"ilv{os.getpid() % 100000}"
SERVER_NS = f"{PREFIX}s"
# ilmare: the netboot pod may run on any Pi (dnsmasq never offers the address it runs on).
SERVER_IP = "192.168.0.13"
UDHCPC_SCRIPT = """#!/bin/sh
# udhcpc calls this with the lease in its environment; record it for the test.
[ "$1" = bound ] || exit 0
ip addr replace "$ip/$mask" dev "$interface"
{ echo "ip=$ip"; echo "hostname=$hostname"; echo "boot_file=$boot_file"; echo "siaddr=$siaddr"; echo "router=$router"; } > "$LEASE_FILE"
"""
ARCH_OPTION = {"bios": "0x5d:0000", "uefi-x86_64": "0x5d:0007", "uefi-arm64": "0x5d:000b"}
IPXE_USERCLASS = "0x4d:69505845"  # option 77, "iPXE"


def sh(*args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=timeout)


def in_ns(ns: str, *args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return sh("ip", "netns", "exec", ns, *args, check=check, timeout=timeout)


@dataclass
class Lan:
    stack: StackConfig
    root: Path
    clients: dict[str, str]  # MAC -> namespace
    dnsmasq: subprocess.Popen[bytes] | None = None
    http: subprocess.Popen[bytes] | None = None

    def client(self, mac: str) -> str:
        if mac not in self.clients:
            ns = f"{PREFIX}c{len(self.clients)}"
            veth = f"{PREFIX}v{len(self.clients)}"
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "add", veth, "netns", SERVER_NS, "type", "veth", "peer", "name", "eth0", "netns", ns)
            in_ns(SERVER_NS, "ip", "link", "set", veth, "master", "br0", "up")
            in_ns(ns, "ip", "link", "set", "eth0", "address", mac)
            in_ns(ns, "ip", "link", "set", "lo", "up")
            in_ns(ns, "ip", "link", "set", "eth0", "up")
            self.clients[mac] = ns
        return self.clients[mac]

    def lease(self, mac: str, firmware: str = "bios", ipxe: bool = False) -> dict[str, str]:
        """Ask for a lease as PXE firmware (or iPXE) would; {} when no server answered."""
        ns = self.client(mac)
        lease_file = self.root / f"lease-{mac.replace(':', '')}-{firmware}-{int(ipxe)}"
        lease_file.unlink(missing_ok=True)
        options = ["-x", ARCH_OPTION[firmware]] + (["-x", IPXE_USERCLASS] if ipxe else [])
        cmd = ["env", f"LEASE_FILE={lease_file}", require("udhcpc"), "-i", "eth0", "-f", "-q", "-n", "-t", "6", "-T", "1", "-A", "1"]
        in_ns(ns, *cmd, "-s", str(self.root / "udhcpc.sh"), "-O", "hostname", *options, check=False, timeout=60)
        if not lease_file.exists():
            return {}
        return dict(line.split("=", 1) for line in lease_file.read_text().splitlines())

    def start_dnsmasq(self, stack: StackConfig) -> None:
        self.stop_dnsmasq()
        conf = self.root / "dnsmasq.conf"
        conf.write_text(netboot.dnsmasq_conf(stack, tftp_root=str(self.root / "tftp")))
        leases = self.root / "dnsmasq.leases"
        leases.unlink(missing_ok=True)
        self.dnsmasq = subprocess.Popen(
            ["ip", "netns", "exec", SERVER_NS, require("dnsmasq"), "--keep-in-foreground", f"--conf-file={conf}",
             f"--dhcp-leasefile={leases}", f"--pid-file={self.root / 'dnsmasq.pid'}", "--user=root",
             f"--log-facility={self.root / 'dnsmasq.log'}"],
        )  # fmt: skip
        time.sleep(0.5)
        assert self.dnsmasq.poll() is None, (self.root / "dnsmasq.log").read_text()

    def stop_dnsmasq(self) -> None:
        if self.dnsmasq is not None:
            self.dnsmasq.send_signal(signal.SIGTERM)
            self.dnsmasq.wait(timeout=10)
            self.dnsmasq = None


def _write_served_tree(root: Path, stack: StackConfig) -> None:
    """The layout the Ainur serve: TFTP root with iPXE and boot.ipxe; HTTP with scripts and configs."""
    tftp, http = root / "tftp", root / "http"
    (tftp).mkdir()
    (http / "ipxe").mkdir(parents=True)
    (http / "configs").mkdir()
    scripts = netboot.scripts(stack)
    (tftp / "boot.ipxe").write_text(scripts["boot.ipxe"])
    undionly = Path("/usr/lib/ipxe/undionly.kpxe")
    assert undionly.exists(), "Debian's ipxe package provides undionly.kpxe; .ci/run installs it"
    shutil.copy(undionly, tftp / "undionly.kpxe")
    for name, text in scripts.items():
        (http / "ipxe" / name).write_text(text)
    for mac in netboot.config_macs(stack):
        # The real file is the Talos machine config (a Secret); its path is what is under test.
        (http / "configs" / f"{mac}.yaml").write_text(f"# machine config for {mac}\n")


@pytest.fixture(scope="module")
def lan(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lan]:
    for tool in ("dnsmasq", "udhcpc", "tftp", "curl"):
        require(tool)
    root = tmp_path_factory.mktemp("netboot")
    root.chmod(0o755)
    stack = load_stack_file(HOMELAB)
    (root / "udhcpc.sh").write_text(UDHCPC_SCRIPT)
    (root / "udhcpc.sh").chmod(0o755)
    _write_served_tree(root, stack)
    sh("ip", "netns", "add", SERVER_NS)
    lan = Lan(stack=stack, root=root, clients={})
    try:
        in_ns(SERVER_NS, "ip", "link", "add", "br0", "type", "bridge")
        in_ns(SERVER_NS, "ip", "addr", "add", f"{SERVER_IP}/24", "dev", "br0")
        in_ns(SERVER_NS, "ip", "link", "set", "br0", "up")
        in_ns(SERVER_NS, "ip", "link", "set", "lo", "up")
        lan.http = subprocess.Popen(
            ["ip", "netns", "exec", SERVER_NS, sys.executable, "-m", "http.server", "80", "--bind", SERVER_IP, "--directory", str(root / "http")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        lan.start_dnsmasq(stack)
        yield lan
    finally:
        lan.stop_dnsmasq()
        if lan.http is not None:
            lan.http.terminate()
            lan.http.wait(timeout=10)
        for ns in [*lan.clients.values(), SERVER_NS]:
            sh("ip", "netns", "delete", ns, check=False)


def test_every_arda_machine_gets_its_reserved_address_name_and_boot_file(lan: Lan) -> None:
    for node in lan.stack.arda_nodes:
        lease = lan.lease(node.mac)
        assert lease == {"ip": str(node.ip), "hostname": node.name, "boot_file": "undionly.kpxe", "siaddr": SERVER_IP, "router": "192.168.0.1"}, (
            node.name
        )


@pytest.mark.parametrize(("firmware", "binary"), [("uefi-x86_64", "ipxe.efi"), ("uefi-arm64", "ipxe-arm64.efi")])
def test_uefi_firmware_gets_its_ipxe_binary(lan: Lan, firmware: str, binary: str) -> None:
    tirion = next(n for n in lan.stack.nodes if n.name == "tirion")
    lease = lan.lease(tirion.mac, firmware=firmware)
    assert (lease["ip"], lease["boot_file"]) == ("192.168.0.22", binary)


def test_ipxe_gets_the_boot_script(lan: Lan) -> None:
    tirion = next(n for n in lan.stack.nodes if n.name == "tirion")
    assert lan.lease(tirion.mac, ipxe=True)["boot_file"] == "boot.ipxe"


def test_a_pi_is_reserved_but_never_netbooted(lan: Lan) -> None:
    manwe = lan.stack.nodes[0]
    lease = lan.lease(manwe.mac)
    assert (lease["ip"], lease["hostname"], lease["boot_file"]) == ("192.168.0.11", "manwe", "")


def test_unknown_mac_gets_an_ordinary_lease_and_no_boot_file(lan: Lan) -> None:
    lease = lan.lease("02:00:5e:00:00:01")
    assert IPv4Address("192.168.0.100") <= IPv4Address(lease["ip"]) <= IPv4Address("192.168.0.199")
    assert lease["boot_file"] == ""


def test_tftp_serves_the_ipxe_binary_and_boot_script(lan: Lan) -> None:
    ns = lan.client(lan.stack.arda_nodes[0].mac)
    for name in ("undionly.kpxe", "boot.ipxe"):
        target = lan.root / f"fetched-{name}"
        in_ns(ns, require("tftp"), "-m", "binary", SERVER_IP, "-c", "get", name, str(target))
        assert target.read_bytes() == (lan.root / "tftp" / name).read_bytes()


def test_http_serves_each_machines_script_and_config_path(lan: Lan) -> None:
    ns = lan.client(lan.stack.arda_nodes[0].mac)
    for node in lan.stack.arda_nodes:
        mac = netboot.mac_name(node.mac)
        script = in_ns(ns, "curl", "-fsS", f"http://{SERVER_IP}/ipxe/{mac}.ipxe").stdout
        assert f"talos.config=http://${{next-server}}/configs/{mac}.yaml" in script
        assert in_ns(ns, "curl", "-fsS", f"http://{SERVER_IP}/configs/{mac}.yaml").stdout == f"# machine config for {mac}\n"
    missing = in_ns(ns, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"http://{SERVER_IP}/ipxe/02-00-5e-00-00-01.ipxe", check=False)
    assert missing.stdout == "404"


def test_generic_worker_mode_boots_unknown_machines(lan: Lan) -> None:
    raw = dict(read_stack_file(HOMELAB).config)
    raw["iluvatar:ainur"] = {
        **raw["iluvatar:ainur"],
        "netboot": {"mode": "dhcp", "unknownMacs": "generic-worker", "genericWorker": {"board": "generic-x86", "installDisk": "/dev/sda"}},
    }
    try:
        lan.start_dnsmasq(parse_stack(raw))
        lease = lan.lease("02:00:5e:00:00:02")
        assert lease["boot_file"] == "undionly.kpxe"
        assert IPv4Address("192.168.0.100") <= IPv4Address(lease["ip"]) <= IPv4Address("192.168.0.199")
    finally:
        lan.start_dnsmasq(lan.stack)


def test_boot_storm(lan: Lan) -> None:
    """Power back after an outage: every Arda machine and 30 strangers ask at once."""
    known = {n.mac: n for n in lan.stack.arda_nodes}
    strangers = [f"02:00:5e:00:01:{i:02x}" for i in range(30)]
    macs = [*known, *strangers]
    for mac in macs:
        lan.client(mac)  # namespaces first, so the storm is only DHCP
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(macs)) as pool:
        leases = dict(zip(macs, pool.map(lan.lease, macs), strict=True))
    missing = [m for m in macs if not leases[m]]
    assert missing == [], f"no lease for {missing}; dnsmasq log tail: {(lan.root / 'dnsmasq.log').read_text()[-3000:]}"
    for mac, node in known.items():
        assert (leases[mac]["ip"], leases[mac]["hostname"], leases[mac]["boot_file"]) == (str(node.ip), node.name, "undionly.kpxe")
    reserved = {str(n.ip) for n in lan.stack.nodes}
    stranger_ips = [leases[m].get("ip") for m in strangers]
    assert None not in stranger_ips, "a stranger got no lease"
    assert len(set(stranger_ips)) == 30, "two strangers share an address"
    for mac in strangers:
        assert leases[mac]["ip"] not in reserved
        assert IPv4Address("192.168.0.100") <= IPv4Address(leases[mac]["ip"]) <= IPv4Address("192.168.0.199")
        assert leases[mac]["boot_file"] == ""
