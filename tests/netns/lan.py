"""A home LAN in network namespaces, served by the real programs running the generated configs.

Namespaces, all private to this test run (traffic never leaves them):
- a switch: one bridge every other namespace and every QEMU tap plugs into;
- the router at network.gateway: a dnsmasq that sends IPv6 router adverts (as home routers do),
  answers DNS for the outside world (network.dns) and logs every query it gets; in `proxy` mode
  it is also the LAN's DHCP server, holding the inventory's reservations and filling siaddr with
  its own address, as dnsmasq-based routers (OpenWrt, Pi-hole) do;
- a Pi running the netboot pod: its own inventory address plus the Ainur's service address
  (what kube-vip would hold), the generated dnsmasq.conf and the generated nginx server block;
- clients: one namespace per MAC for busybox udhcpc, tftp, curl and dig.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any, TypeVar

import pytest

from plans import netboot
from plans.netboot import pi_pods
from plans.netboot import pis as pis_plan
from stacks import StackConfig
from tests.tools import require
from tools import debian

UDHCPC_SCRIPT = """#!/bin/sh
# udhcpc calls this with the lease in its environment; record it for the test.
[ "$1" = bound ] || exit 0
ip addr replace "$ip/$mask" dev "$interface"
{ echo "ip=$ip"; echo "hostname=$hostname"; echo "boot_file=$boot_file"; echo "siaddr=$siaddr"; echo "router=$router";
  echo "dns=$dns"; echo "serverid=$serverid"; } > "$LEASE_FILE"
"""
ARCH_OPTION = {"bios": "0x5d:0000", "uefi-x86_64": "0x5d:0007", "uefi-bc": "0x5d:0009", "uefi-arm64": "0x5d:000b"}
IPXE_USERCLASS = "0x4d:69505845"  # option 77, "iPXE"
PXE_VENDOR = "PXEClient:Arch:00000:UNDI:002001"
# What the router's DNS answers for the outside world, so forwarding shows.
OUTSIDE_NAME, OUTSIDE_IP = "example.org", "203.0.113.7"
REPO = Path(__file__).resolve().parents[2]
ROUTER_IPV6 = "fd00:1::1"
# Python code putting the DHCP probe's module (plans.netboot.dhcp_probe) in `dhcp_probe`, loaded from its file alone, as
# the step sends it (it imports nothing of the project: test_dhcp_fence.test_the_probe_module_runs_on_its_own). Imported
# as `plans.netboot.dhcp_probe` it brings the whole `plans.netboot` package and `stacks` with it: 0.9 s of a
# subprocess's CPU against 0.1 s, and seconds of wall on a loaded machine, for each DISCOVER a test sends.
DHCP_PROBE = (
    "import importlib.util, sys\n"
    f"spec = importlib.util.spec_from_file_location('dhcp_probe', {str(REPO / 'plans' / 'netboot' / 'dhcp_probe.py')!r})\n"
    "assert spec is not None and spec.loader is not None\n"
    "dhcp_probe = sys.modules['dhcp_probe'] = importlib.util.module_from_spec(spec)\n"
    "spec.loader.exec_module(dhcp_probe)\n"
)


def require_root() -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("the netns tests need root (network namespaces); CI runs as root", pytrace=False)
        pytest.skip("needs root for network namespaces", allow_module_level=True)


T = TypeVar("T")


class CalledOffError(Exception):
    """The lab's run was called off while it waited (`abandonable`): it unwinds through its teardowns now."""


_abandon = threading.local()


@contextmanager
def abandonable(called_off: threading.Event) -> Iterator[None]:
    """Every wait of this thread's lab (`wait_until`, `pause`) ends, raising CalledOffError, once `called_off` is set: a lab run
    on a thread of its own (tests/netns/test_household.py runs two at once) is not interrupted by Ctrl-C, which only
    the main thread sees (Python's signal handlers run in the main thread alone), and its pool's `with` would wait for
    it to run to its end, minutes of scenarios, before the run could end. Its namespaces and processes go with the
    teardowns its `finally`s already hold."""
    _abandon.event = called_off
    try:
        yield
    finally:
        del _abandon.event


def pause(seconds: float) -> None:
    """time.sleep, ended by `abandonable`."""
    called_off: threading.Event | None = getattr(_abandon, "event", None)
    if called_off is None:
        time.sleep(seconds)
    elif called_off.wait(seconds):
        raise CalledOffError("the lab's run was called off")


def wait_until(what: str, condition: Callable[[], T], seconds: float, detail: Callable[[], object] = lambda: "", interval: float = 0.1) -> T:
    """Poll `condition()` every `interval` s until it holds (truthy), and return what it gave. `seconds` guards against a
    hang, never decides a test's outcome: the event ends the wait, so the bound is set well past the event's worst case
    on a loaded machine. Past it, fail naming what was waited for and what `detail()` says of it."""
    deadline = time.monotonic() + seconds
    while not (got := condition()):
        assert time.monotonic() < deadline, f"waited {seconds:g} s for {what}: {detail()}"
        pause(interval)
    return got


def _wait_for_pid_file(proc: subprocess.Popen[Any], pid_file: Path, log: Path, what: str) -> None:
    """Until a server started as `proc` has written its pid in `pid_file` (a server here writes it once its sockets are
    bound), bounded at 20 s; a server that exits first, or the bound, fails with its log."""

    def written() -> bool:
        assert proc.poll() is None, log.read_text() if log.exists() else f"{what} exited"
        return pid_file.exists() and pid_file.read_text().strip().isdigit()

    wait_until(f"{what} to write its pid file", written, 20, lambda: log.read_text() if log.exists() else "", interval=0.05)


def sh(*args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=timeout)


def in_ns(ns: str, *args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return sh("ip", "netns", "exec", ns, *args, check=check, timeout=timeout)


def kubelet_probe(ns: str, spec: dict[str, Any], container: str, pod_ip: str) -> subprocess.CompletedProcess[str]:
    """The kubelet's readiness probe of `container`, run from `ns` (the Pi's: the kubelet of a host-network Pod
    shares it) as pkg/kubelet/prober does it (tools/kubelet_probe.py)."""
    args = [sys.executable, "-m", "tools.kubelet_probe", "--pod-ip", pod_ip, "--container", container]
    return subprocess.run(
        ["ip", "netns", "exec", ns, *args], input=json.dumps(spec), cwd=REPO, capture_output=True, text=True, timeout=30, check=False
    )


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def write_served_tree(root: Path, stack: StackConfig, window_open: bool = True) -> None:
    """What the netboot pod serves: the pinned iPXE binaries over TFTP; boot.ipxe, the scripts, the
    workers' configs and each board's kernel and initramfs over HTTP; with discovery, the discovery
    window's file while `window_open` (what the pod's discovery-window loop writes: plans.netboot.window).

    The kernel and initramfs are tiny stand-ins: what is under test is the chain up to the
    machine's own script and config, not Talos booting.
    """
    tftp, http = root / "tftp", root / "http"
    tftp.mkdir()
    (http / "ipxe").mkdir(parents=True)
    (http / "configs").mkdir()
    ipxe = debian.path("ipxe") / "usr/lib/ipxe"
    for name, (source, _) in netboot.IPXE_FILES.items():
        (tftp / name).write_bytes((ipxe / source).read_bytes())
    scripts = netboot.scripts(stack)
    (http / "boot.ipxe").write_text(scripts["boot.ipxe"])
    for name, text in scripts.items():
        (http / "ipxe" / name).write_text(text)
    for mac in netboot.config_macs(stack):
        # The real file is the Talos machine config (a Secret); who may fetch it is what is under test.
        (http / "configs" / f"{mac}.yaml").write_text(f"# machine config for {mac}\n")
    for board in netboot.asset_boards(stack):
        (http / "assets" / board).mkdir(parents=True)
        (http / "assets" / board / "vmlinuz").write_bytes(b"stand-in kernel for " + board.encode())
        (http / "assets" / board / "initramfs.xz").write_bytes(b"stand-in initramfs for " + board.encode())
    if stack.discovery is not None and window_open:
        (http / netboot.DISCOVERY_WINDOW_FILE).parent.mkdir()
        (http / netboot.DISCOVERY_WINDOW_FILE).write_text("#!ipxe\n# arda.discovery is armed (the test's window)\n")


def write_pi_tftp(root: Path, stack: StackConfig, images: Path, pointers: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The netbooting Pis' TFTP folders, made by one pass of the program's own script (plans.netboot.pis.tftp_script)
    from the images under `images` and each Pi's boot pointer, as netboot-cache's pi-tftp does it. `pointers`: the
    files of the pointers' volume (by default the stack's, plans.netboot.pi_pods.boot_projection)."""
    boots = root / "pi-boots"
    shutil.rmtree(boots, ignore_errors=True)
    # Laid out as the kubelet projects the pi-boot-<pi> ConfigMaps into the cache pod: a version folder behind ..data.
    version = boots / "..2025_01_01_00_00_00.000000001"
    for rel, text in (pi_pods.boot_projection(stack) if pointers is None else pointers).items():
        (version / rel).parent.mkdir(parents=True, exist_ok=True)
        (version / rel).write_text(text)
    version.mkdir(parents=True, exist_ok=True)
    (boots / "..data").symlink_to(version.name)
    script = root / "pi-tftp.sh"
    script.write_text(pis_plan.tftp_script())
    env = {**os.environ, "TFTP_ROOT": str(root / "tftp"), "IMAGES": str(images), "BOOTS": str(boots), "ONCE": "1"}
    return subprocess.run(["sh", str(script)], check=True, env=env, capture_output=True, text=True, timeout=60)


@dataclass
class Lan:
    """The LAN of one stack: switch, router, the Pi serving netboot, and clients made on demand."""

    stack: StackConfig
    root: Path
    prefix: str
    pi_ip: str
    clients: dict[str, str] = field(default_factory=dict)  # MAC -> namespace
    taps: list[str] = field(default_factory=list)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    dnsmasq_ns: dict[str, str] = field(default_factory=dict)  # each dnsmasq's key -> the namespace it serves from
    # The netboot dnsmasq run as its container's command does (plans.netboot.records.run_script): with the records loop
    # beside it, which follows the ConfigMap's volume and signals dnsmasq when the DHCP hosts change.
    records_loop: bool = False

    @property
    def switch(self) -> str:
        return f"{self.prefix}w"

    @property
    def router(self) -> str:
        return f"{self.prefix}r"

    @property
    def pi(self) -> str:
        return f"{self.prefix}p"

    @property
    def service_ip(self) -> str:
        return str(netboot.service_ip(self.stack))

    @property
    def gateway(self) -> str:
        return str(self.stack.network.gateway)

    def _plug(self, ns: str, name: str) -> None:
        sh("ip", "link", "add", name, "netns", self.switch, "type", "veth", "peer", "name", "eth0", "netns", ns)
        in_ns(self.switch, "ip", "link", "set", name, "master", "br0", "up")

    def build(self) -> None:
        prefix = self.stack.network.lan.prefixlen
        for ns in (self.switch, self.router, self.pi):
            sh("ip", "netns", "add", ns)
            in_ns(ns, "ip", "link", "set", "lo", "up")
        in_ns(self.switch, "ip", "link", "add", "br0", "type", "bridge")
        in_ns(self.switch, "ip", "link", "set", "br0", "up")
        self._plug(self.router, "vr")
        self._plug(self.pi, "vp")
        in_ns(self.router, "ip", "addr", "add", f"{self.gateway}/{prefix}", "dev", "eth0")
        in_ns(self.router, "ip", "addr", "add", f"{ROUTER_IPV6}/64", "dev", "eth0", "nodad")
        in_ns(self.router, "ip", "link", "set", "eth0", "up")
        in_ns(self.pi, "ip", "addr", "add", f"{self.pi_ip}/{prefix}", "dev", "eth0")
        in_ns(self.pi, "ip", "link", "set", "eth0", "up")
        self.hold_service_address()

    def hold_service_address(self) -> None:
        """What kube-vip does on the Pi that runs the netboot pod."""
        in_ns(self.pi, "ip", "addr", "replace", f"{self.service_ip}/32", "dev", "eth0")

    def release_service_address(self) -> None:
        in_ns(self.pi, "ip", "addr", "del", f"{self.service_ip}/32", "dev", "eth0")

    def client(self, mac: str) -> str:
        if mac not in self.clients:
            ns = f"{self.prefix}c{len(self.clients)}"
            sh("ip", "netns", "add", ns)
            self._plug(ns, f"{self.prefix}v{len(self.clients)}")
            in_ns(ns, "ip", "link", "set", "eth0", "address", mac)
            in_ns(ns, "ip", "link", "set", "lo", "up")
            in_ns(ns, "ip", "link", "set", "eth0", "up")
            self.clients[mac] = ns
        return self.clients[mac]

    def host(self, key: str, ip: str) -> str:
        """Another machine on the switch at `ip` (a second Pi that takes the service address over)."""
        ns = f"{self.prefix}{key}"
        if ns not in self.clients.values():
            sh("ip", "netns", "add", ns)
            self._plug(ns, f"{self.prefix}h{key}")
            in_ns(ns, "ip", "link", "set", "lo", "up")
            in_ns(ns, "ip", "addr", "add", f"{ip}/{self.stack.network.lan.prefixlen}", "dev", "eth0")
            in_ns(ns, "ip", "link", "set", "eth0", "up")
            self.clients[f"host-{key}"] = ns
        return ns

    def announce(self, ns: str, ip: str) -> None:
        """A gratuitous ARP for `ip` from `ns`'s eth0, as kube-vip sends when it takes an address over (ARP mode), so
        the LAN's neighbours send to the new holder at once: a reply whose target hardware address is the sender's own
        (kube-vip v0.9.2 pkg/vip/arp.go:70-115), which Linux takes as gratuitous even within a neighbour entry's 1 s
        locktime (tests.netns.election explains the one that is not)."""
        code = (
            "import socket,struct,sys\n"
            "ip=socket.inet_aton(sys.argv[1]); mac=open('/sys/class/net/eth0/address').read().strip()\n"
            "hw=bytes.fromhex(mac.replace(':',''))\n"
            "arp=struct.pack('!HHBBH6s4s6s4s',1,0x0800,6,4,2,hw,ip,hw,ip)\n"
            "s=socket.socket(socket.AF_PACKET,socket.SOCK_RAW); s.bind(('eth0',0)); s.send(b'\\xff'*6+hw+b'\\x08\\x06'+arp)\n"
        )
        in_ns(ns, sys.executable, "-c", code, ip)

    def tap(self) -> str:
        """A tap on the switch for a QEMU machine."""
        name = f"{self.prefix}t{len(self.taps)}"
        in_ns(self.switch, "ip", "tuntap", "add", name, "mode", "tap")
        in_ns(self.switch, "ip", "link", "set", name, "master", "br0", "up")
        self.taps.append(name)
        return name

    def pi_boot(
        self,
        mac: str,
        serial: str,
        model: int,
        *files: str,
        server: str | None = None,
        address: str | None = None,
        wait: float = 2,
        guid: str | None = None,
    ) -> dict[str, Any]:
        """Netboot as a Raspberry Pi's bootloader does (tests/netns/pi_bootloader.py): its DHCP answers, then a TFTP
        read of each file (from `server`, as its EEPROM's TFTP_IP says, or the answer's server). `address`: one the
        client already has (a machine reading TFTP that no DHCP answer booted). `guid`: option 97 in hex, as a machine
        that is no Pi sends it (a BIOS PC's PXE ROM: the same request otherwise)."""
        ns = self.client(mac)
        in_ns(ns, "ip", "addr", "flush", "dev", "eth0")
        if address is not None:
            in_ns(ns, "ip", "addr", "add", f"{address}/{self.stack.network.lan.prefixlen}", "dev", "eth0")
        extra = ["--server", server] if server else []
        extra += ["--wait", str(wait)] + (["--guid", guid] if guid else [])
        args = [sys.executable, "-m", "tests.netns.pi_bootloader", "--mac", mac, "--serial", serial, "--model", str(model), *extra, *files]
        result = subprocess.run(["ip", "netns", "exec", ns, *args], capture_output=True, text=True, timeout=60, cwd=REPO, check=False)
        assert result.returncode == 0, result.stderr
        found: dict[str, Any] = json.loads(result.stdout)
        return found

    def lease(
        self, mac: str, firmware: str | None = "bios", ipxe: bool = False, pxe: bool = False, tries: int = 6, hostname: str | None = None
    ) -> dict[str, str]:
        """Ask for a lease as PXE firmware (or iPXE) would; {} when no server answered. Without a firmware, as an OS's
        DHCP client asks (Talos's: a client identifier 01:<mac>, as udhcpc sends, and its name when it has one)."""
        ns = self.client(mac)
        lease_file = self.root / f"lease-{mac.replace(':', '')}-{firmware}-{int(ipxe)}"
        lease_file.unlink(missing_ok=True)
        options = (["-x", ARCH_OPTION[firmware]] if firmware else []) + (["-x", IPXE_USERCLASS] if ipxe else []) + (["-V", PXE_VENDOR] if pxe else [])
        options += ["-x", f"hostname:{hostname}"] if hostname else []
        cmd = ["env", f"LEASE_FILE={lease_file}", require("udhcpc"), "-i", "eth0", "-f", "-q", "-n", "-t", str(tries), "-T", "1", "-A", "1"]
        in_ns(ns, *cmd, "-s", str(self.root / "udhcpc.sh"), "-O", "hostname", "-O", "dns", *options, check=False, timeout=60)
        if not lease_file.exists():
            return {}
        return dict(line.split("=", 1) for line in lease_file.read_text().splitlines())

    # --- the router -------------------------------------------------------------------------

    def router_conf(self) -> str:
        net = self.stack.network
        lines = [
            "# The home router: IPv6 adverts, DNS for the outside world, and in proxy mode the LAN's DHCP.",
            "interface=eth0",
            "bind-interfaces",
            "no-resolv",
            "no-hosts",
            "log-queries",
            f"address=/{OUTSIDE_NAME}/{OUTSIDE_IP}",
            "enable-ra",
            "dhcp-range=fd00:1::,ra-only,64",
        ]
        assert self.stack.ainur is not None
        if self.stack.ainur.netboot.mode == "proxy":
            # The README's proxy-mode router settings: the reservations output, and the Ainur's
            # service address as the DNS server it hands out.
            lines += [
                "log-dhcp",
                f"dhcp-range={net.dhcp_range.start},{net.dhcp_range.end},{net.lan.netmask},12h",
                f"dhcp-option=option:dns-server,{self.service_ip}",
                *(f"dhcp-host={n.mac},{n.ip},{n.name}" for n in self.stack.nodes if n.vlan is None),
            ]
        return "\n".join(lines) + "\n"

    def start_router(self) -> None:
        conf = self.root / "router.conf"
        conf.write_text(self.router_conf())
        self._dnsmasq("router", self.router, conf, self.root / "router.leases")

    # --- the Pi: the netboot pod's dnsmasq and nginx --------------------------------------------

    def start_dnsmasq(
        self, stack: StackConfig | None = None, keep_leases: bool = True, extra_records: Sequence[tuple[str, IPv4Address]] = ()
    ) -> None:
        """Run the generated dnsmasq.conf; its lease file is the pod's leases volume. `extra_records`: the app hosts and
        sign-in names the program adds to the internal zone (__main__'s Netboot dns_records)."""
        self.stop("dnsmasq")
        conf = self.root / "dnsmasq.conf"
        (self.root / "leases").mkdir(exist_ok=True)
        lease_file = self.root / "leases" / "dnsmasq.leases"
        if not keep_leases:
            lease_file.unlink(missing_ok=True)
        conf.write_text(
            netboot.dnsmasq_conf(stack or self.stack, tftp_root=str(self.root / "tftp"), lease_file=str(lease_file), records_dir=str(self.records))
        )
        # A fresh container's records folder (an emptyDir), filled by the pod's records-first step before dnsmasq starts.
        shutil.rmtree(self.records, ignore_errors=True)
        self.project_records(stack, extra_records)
        self.records_pass()
        self._dnsmasq("dnsmasq", self.pi, conf, None, container=self.records_loop)

    @property
    def records(self) -> Path:
        """The netboot pod's records folder (plans.netboot.records), dnsmasq's hostsdir and DHCP hosts file's folder."""
        return self.root / "records"

    def project_records(self, stack: StackConfig | None = None, extra_records: Sequence[tuple[str, IPv4Address]] = ()) -> None:
        """STAND-IN for the kubelet's update of the netboot ConfigMap's volume, with the records of `stack`: a new version
        folder, ..data_tmp pointed at it and renamed over ..data, the old folder removed (Kubernetes v1.35.1
        pkg/volume/util/atomic_writer.go:190-233 and 259-261, Write steps 5-9 and 12), and a link per key made once
        (createUserVisibleFiles, :467-487)."""
        from plans.netboot import records

        stack = stack or self.stack
        volume = self.root / "netboot-configmap"
        volume.mkdir(exist_ok=True)
        data = {records.HOSTS_KEY: netboot.hosts_file(stack, extra_records), records.DHCP_HOSTS_KEY: netboot.dhcp_hosts_file(stack)}
        link = volume / "..data"
        old = os.readlink(link) if link.is_symlink() else None
        version = volume / f"..{time.strftime('%Y_%m_%d_%H_%M_%S', time.gmtime())}.{time.time_ns()}"
        version.mkdir()
        for key, text in data.items():
            (version / key).write_text(text)
            if not (volume / key).is_symlink():
                (volume / key).symlink_to(f"..data/{key}")
        (volume / "..data_tmp").symlink_to(version.name)
        os.replace(volume / "..data_tmp", link)
        if old is not None:
            shutil.rmtree(volume / old)

    def records_pass(self) -> None:
        """One pass of the pod's records loop, the program's own script (plans.netboot.records), from the ConfigMap's
        volume to dnsmasq's folders: the records-first step."""
        env = {**os.environ, "SRC": str(self.root / "netboot-configmap"), "DEST": str(self.records), "ONCE": "1"}
        done = subprocess.run(["sh", "-c", netboot.records_script()], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr

    def _dnsmasq(self, key: str, ns: str, conf: Path, leases: Path | None, container: bool = False) -> None:
        """The real dnsmasq; with `container`, under the netboot container's command, the program's own script, with the
        records loop (the ConfigMap's volume and the records folder as the pod's env gives them)."""
        log = self.root / f"{key}.log"
        # --log-debug: its log then says each socket it opens and closes as addresses come and go (bind-dynamic's
        # "listening on" / "stopped listening on", src/network.c create_bound_listeners, release_listener), which a
        # failed wait on its DNS shows (`dns_state`).
        args = [require("dnsmasq"), "--keep-in-foreground", f"--conf-file={conf}", "--user=root",
                f"--pid-file={self.root / f'{key}.pid'}", f"--log-facility={log}", "--log-debug"]  # fmt: skip
        if leases is not None:
            args.append(f"--dhcp-leasefile={leases}")
        if container:
            from plans.netboot import records

            etc = self.root / "netboot-etc"
            etc.mkdir(exist_ok=True)
            (etc / records.SCRIPT).write_text(records.records_script())
            (etc / records.RUN_SCRIPT).write_text(records.run_script(str(etc)))
            env = [f"SRC={self.root / 'netboot-configmap'}", f"DEST={self.records}"]
            args = [
                "env",
                f"PATH={Path(args[0]).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
                *env,
                "sh",
                str(etc / records.RUN_SCRIPT),
                *args[1:],
            ]
        # Like a container, each start gets a fresh /var/lib/misc (dnsmasq's default lease file):
        # only what the config puts on the leases volume survives a restart.
        wrapped = "mount -t tmpfs none /var/lib/misc && exec " + " ".join(shlex.quote(a) for a in args)
        if container:
            # The container's own lines (the records loop's, the listener watch's), kept apart: `watch_events` counts them.
            wrapped += f" 2>>{shlex.quote(str(self.root / f'{key}.stderr'))}"
        pid_file = self.root / f"{key}.pid"
        pid_file.unlink(missing_ok=True)  # a killed instance's, which would read as this one started
        self.dnsmasq_ns[key] = ns
        self.procs[key] = subprocess.Popen(["ip", "netns", "exec", ns, "unshare", "--mount", "--propagation", "private", "sh", "-c", wrapped])
        # Started means serving: dnsmasq 2.90 writes its pid file (src/dnsmasq.c:640-667) after it has bound its DHCP
        # and DNS sockets (dhcp_init at :314), and with --keep-in-foreground it still writes it. A fixed half second was
        # not always enough on a loaded machine: a client's request sent before the bind went unanswered.
        _wait_for_pid_file(self.procs[key], pid_file, log, f"dnsmasq {key}")

    def watch_events(self) -> int:
        """How many address events the listener watches of the dnsmasq containers started so far have made
        (plans.netboot.records): a lab's bound on the household's DNS counts the watch's two looks only where it acted."""
        logs = [self.root / f"{key}.stderr" for key in self.dnsmasq_ns]
        return sum(log.read_text().count("an address event to bind again") for log in logs if log.exists())

    def dns_state(self) -> str:
        """Each dnsmasq's side of a DNS wait that failed: whether it runs, its namespace's IPv4 addresses, the UDP sockets
        bound to port 53 there, the sockets its log says it opened and closed last, and its log's last lines."""
        out: list[str] = []
        for key, ns in self.dnsmasq_ns.items():
            proc = self.procs.get(key)
            alive = "running" if proc is not None and proc.poll() is None else "not running"
            addrs = in_ns(ns, "ip", "-4", "-br", "addr", check=False).stdout.strip()
            sockets = [line.split()[3] for line in in_ns(ns, "ss", "-Hlun", check=False).stdout.splitlines() if line.split()[3:4]]
            log = self.root / f"{key}.log"
            lines = log.read_text().splitlines() if log.exists() else []
            binds = [line for line in lines if "listening" in line][-6:]
            out += [f"{key} in {ns}, {alive}; addresses: {addrs}; UDP sockets: {sockets}; binds:", *binds, "last lines:", *lines[-8:]]
            container = self.root / f"{key}.stderr"
            if container.exists():
                out += ["its container's last lines:", *container.read_text().splitlines()[-6:]]
        return "\n".join(out)

    def start_nginx(self) -> None:
        """The real nginx running the generated server block over the served tree."""
        server = self.root / "nginx-server.conf"
        server.write_text(netboot.nginx_conf(self.stack, root=str(self.root / "http")))
        main = self.root / "nginx.conf"
        temp = self.root / "nginx-temp"
        temp.mkdir(exist_ok=True)
        temps = " ".join(f"{kind}_temp_path {temp}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        main.write_text(
            f"daemon off; user root; pid {self.root}/nginx.pid; error_log {self.root}/nginx-error.log;\n"
            "events {}\n"
            f"http {{ include /etc/nginx/mime.types; access_log {self.access_log}; {temps} include {server}; }}\n"
        )
        pid_file = self.root / "nginx.pid"
        pid_file.unlink(missing_ok=True)  # a stopped instance's, which would read as this one started
        self.procs["nginx"] = subprocess.Popen(["ip", "netns", "exec", self.pi, require("nginx"), "-c", str(main), "-p", str(self.root)])
        # Started means serving: nginx writes its pid file (src/core/nginx.c main, ngx_create_pidfile) after
        # ngx_init_cycle has bound and listened on every server's socket (ngx_cycle.c, ngx_open_listening_sockets), so a
        # client's connection from then on is queued on the socket, never refused.
        _wait_for_pid_file(self.procs["nginx"], pid_file, self.root / "nginx-error.log", "nginx")

    @property
    def access_log(self) -> Path:
        return self.root / "nginx-access.log"

    def requests(self) -> list[tuple[str, str, int]]:
        """nginx's access log as (client address, path, status)."""
        out = []
        for line in self.access_log.read_text().splitlines() if self.access_log.exists() else []:
            client = line.split(" ", 1)[0]
            request = line.split('"')[1].split(" ")
            status = int(line.split('"')[2].split()[0])
            out.append((client, request[1], status))
        return out

    def stop(self, key: str) -> None:
        stop(self.procs.pop(key, None))

    def teardown(self) -> None:
        for key in list(self.procs):
            self.stop(key)
        for ns in [*self.clients.values(), self.pi, self.router, self.switch]:
            end_all(ns)
            sh("ip", "netns", "delete", ns, check=False)


def end_all(ns: str, within: float = 20) -> None:
    """Every process still in the namespace killed, and gone, before it is deleted: what the lab started is stopped by
    its own handle, but a child of a stopped shell (a records loop's `sleep`, udhcpc's hook) is reparented to init,
    out of any handle, and would run on in a namespace with no name left. `ip netns pids` finds them by their
    namespace (/proc/<pid>/ns/net), whoever their parent. A plain sleep between looks, not `pause`: a teardown runs
    after a call-off too."""
    deadline = time.monotonic() + within
    while pids := sh("ip", "netns", "pids", ns, check=False).stdout.split():
        assert time.monotonic() < deadline, f"the processes of {ns} still running {within:g} s after SIGKILL: {pids}"
        sh("kill", "-9", *pids, check=False)
        time.sleep(0.05)


@contextmanager
def lan(
    stack: StackConfig, root: Path, prefix: str, pi_ip: str = "192.168.0.13", window_open: bool = True, records_loop: bool = False
) -> Iterator[Lan]:
    """A whole LAN for `stack`, torn down afterwards whatever happens; `records_loop`: see Lan.records_loop."""
    for tool in ("dnsmasq", "udhcpc", "tftp", "curl", "nginx", "dig"):
        require(tool)
    root.chmod(0o755)
    (root / "udhcpc.sh").write_text(UDHCPC_SCRIPT)
    (root / "udhcpc.sh").chmod(0o755)
    write_served_tree(root, stack, window_open)
    net = Lan(stack=stack, root=root, prefix=prefix, pi_ip=pi_ip, records_loop=records_loop)
    try:
        net.build()
        net.start_router()
        net.start_nginx()
        net.start_dnsmasq(keep_leases=False)
        yield net
    finally:
        net.teardown()


def in_range(stack: StackConfig, ip: str) -> bool:
    return stack.network.dhcp_range.start <= IPv4Address(ip) <= stack.network.dhcp_range.end
