"""Power-on on a LAN of network namespaces, with the exact commands the program renders.

- Wake-on-LAN: a Pi's namespace holding the Ainur's service address (as kube-vip gives it to the Pi
  running the netboot pod) and not the first valar's address (that Pi is down) runs the remote
  command `arda-power-gandalf` would run over SSH there (the program's `create`, through `sh -c` as
  sshd runs it, with this machine's python3); gandalf's namespace, its NIC at the inventory's MAC,
  captures every frame with a raw socket. Off, it has no address: the step finds nothing answering at
  its Talos API and sends the packet, a broadcast to the LAN's broadcast address, UDP port 9,
  carrying 6 x 0xff then the MAC 16 times. On (its address, Talos's API port listening), it gets none.
- The BMC: a stand-in Turing Pi 2 BMC (tests/bmc_standin.py) listens at the inventory's BMC address
  on port 443 in its own namespace; the operator's namespace runs the local command
  `arda-power-saruman` would run, from the project folder, password on stdin.

Traffic stays in the namespaces (a bridge in its own namespace joins them).
"""

from __future__ import annotations

import ctypes
import json
import os
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from iluvatar.simulate import SecretValue, Simulation, simulate
from plans import power as plan
from stacks import read_stack_file
from tests.bmc_standin import StandInBmc, serve
from tests.edit import ROOT, edit, homelab_doc, write_stack
from tests.netns.lan import in_ns, require_root, sh, stop

require_root()

GANDALF_MAC, MANWE_IP, BMC_IP, OPERATOR_IP = "28:d2:44:30:00:01", "192.168.0.11", "192.168.0.5", "192.168.0.50"
# The Ainur's service address (ainur.serviceIp) and gandalf's inventory address.
SERVICE_IP, GANDALF_IP = "192.168.0.14", "192.168.0.31"
PASSWORD = "turing-netns-4c1e"

# Every frame on the NIC, as a machine's NIC sees it while the machine is off: 'frame <hex>' a line.
CAPTURE = """
import select, socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
s.bind(("eth0", 0))
print("ready", flush=True)
until = time.monotonic() + float(sys.argv[1])
while time.monotonic() < until:
    if select.select([s], [], [], 0.2)[0]:
        print("frame", s.recv(65535).hex(), flush=True)
"""


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Simulation:
    doc = edit(
        homelab_doc(),
        {
            "iluvatar:nodes[6].power": {"wakeOnLan": {"link": "enp0s25"}},
            # A BMC powers a module in a Turing Pi 2 slot: saruman as an RK1.
            "iluvatar:nodes[7].arch": "arm64",
            "iluvatar:nodes[7].board": "rk1",
            "iluvatar:nodes[7].power": {"bmc": {"address": BMC_IP, "slot": 2}},
            "iluvatar:bmcPasswords": {BMC_IP: {"secure": "v1:bm9uY2Vub25jZW5v:Y2lwaGVydGV4dGNpcGhlcnRleHQ="}},
        },
    )
    path = write_stack(tmp_path_factory.mktemp("power"), doc, stack="homelab")
    return simulate(read_stack_file(path))


@pytest.fixture
def switch() -> Iterator[tuple[str, list[str]]]:
    """A bridge in its own namespace; plug() adds a namespace with one veth on it. All removed afterwards."""
    prefix = f"pw{os.getpid() % 10000}"
    made: list[str] = []
    bridge = f"{prefix}w"
    sh("ip", "netns", "add", bridge)
    made.append(bridge)
    in_ns(bridge, "ip", "link", "add", "br0", "type", "bridge")
    in_ns(bridge, "ip", "link", "set", "br0", "up")
    try:
        yield prefix, made
    finally:
        for ns in reversed(made):
            sh("ip", "netns", "del", ns, check=False)


def plug(prefix: str, made: list[str], name: str, mac: str | None = None, ip: str | None = None) -> str:
    ns = f"{prefix}{name}"
    sh("ip", "netns", "add", ns)
    made.append(ns)
    sh("ip", "link", "add", f"{ns}v", "netns", f"{prefix}w", "type", "veth", "peer", "name", "eth0", "netns", ns)
    in_ns(f"{prefix}w", "ip", "link", "set", f"{ns}v", "master", "br0", "up")
    if mac is not None:
        in_ns(ns, "ip", "link", "set", "eth0", "address", mac)
    in_ns(ns, "ip", "link", "set", "lo", "up")
    in_ns(ns, "ip", "link", "set", "eth0", "up")
    if ip is not None:
        in_ns(ns, "ip", "addr", "add", f"{ip}/24", "dev", "eth0")
    return ns


def captured(capture: subprocess.Popen[str], until: float) -> list[bytes]:
    """Every frame the capture saw, until `until` (monotonic) or three Wake-on-LAN frames (UDP to port 9)."""
    frames: list[bytes] = []
    assert capture.stdout is not None
    while time.monotonic() < until and len(wake(frames)) < plan.WOL_REPEAT:
        line = capture.stdout.readline()
        if not line:
            break
        if line.startswith("frame "):
            frames.append(bytes.fromhex(line.split()[1]))
    return frames


def wake(frames: list[bytes]) -> list[bytes]:
    """The Wake-on-LAN frames among them (IPv4, UDP to port 9)."""
    return [f for f in frames if f[12:14] == b"\x08\x00" and f[23] == 17 and struct.unpack("!H", f[36:38])[0] == plan.WOL_PORT]


def wake_frames(capture: subprocess.Popen[str], until: float) -> list[bytes]:
    """The Wake-on-LAN frames the capture saw, until `until` (monotonic) or three of them."""
    return wake(captured(capture, until))


def asks(frames: list[bytes], address: str) -> set[int]:
    """The connections asked of `address`'s Talos API (IPv4 TCP SYNs to port 50000), by source port: a retransmitted
    SYN is the same ask."""
    asked = set()
    for f in frames:
        if f[12:14] == b"\x08\x00" and f[23] == 6 and ".".join(map(str, f[30:34])) == address:
            tcp = 14 + (f[14] & 0x0F) * 4
            source, port = struct.unpack("!HH", f[tcp : tcp + 4])
            if port == 50000 and f[tcp + 13] & 0x12 == 0x02:  # SYN without ACK
                asked.add(source)
    return asked


def sender_of(sim: Simulation) -> tuple[str, str]:
    step = sim.named()["arda-power-gandalf"]
    assert step.type == "command:remote:Command"
    connection = step.inputs["connection"]
    connection = connection.value if isinstance(connection, SecretValue) else connection
    return str(connection["host"]), str(step.inputs["create"])


def test_the_rendered_wake_command_broadcasts_the_magic_packet_to_a_machine_that_is_off(sim: Simulation, switch: tuple[str, list[str]]) -> None:
    host, command = sender_of(sim)
    # Not the first valar: the Pi that holds the service address, whichever it is.
    assert host == SERVICE_IP != MANWE_IP
    prefix, made = switch
    pi = plug(prefix, made, "p", ip=SERVICE_IP)
    machine = plug(prefix, made, "m", mac=GANDALF_MAC)
    pi_mac = in_ns(pi, "cat", "/sys/class/net/eth0/address").stdout.strip()
    # The Pi still holds gandalf's MAC for its address (as it does for a while after gandalf went off): its asks reach
    # gandalf's NIC, where nothing answers, so only each ask's own bound ends it. Unbounded, a connect would wait out
    # TCP's SYN retries (about two minutes: Linux's tcp_syn_retries 6), and the run's 60 s timeout below raises.
    in_ns(pi, "ip", "neigh", "replace", GANDALF_IP, "lladdr", GANDALF_MAC, "dev", "eth0", "nud", "permanent")
    capture = subprocess.Popen(["ip", "netns", "exec", machine, "python3", "-c", CAPTURE, "40"], stdout=subprocess.PIPE, text=True)
    try:
        assert capture.stdout is not None
        assert capture.stdout.readline().strip() == "ready"
        # As sshd runs a command: the user's shell, `sh -c`, in the Pi's namespace. It asks first (nothing answers: off).
        sent = in_ns(pi, "sh", "-c", command, timeout=60)
        assert sent.stdout == (f"gandalf does not answer at {GANDALF_IP}:50000: magic packet for {GANDALF_MAC} sent to 192.168.0.255:9 (3 times)\n")
        seen = captured(capture, time.monotonic() + 20)
    finally:
        stop(capture)  # type: ignore[arg-type]
    # Asking is bounded: three asks, as gandalf's NIC saw them (ASK_TRIES, each ended by its own ASK_SECONDS).
    assert len(asks(seen, GANDALF_IP)) == plan.ASK_TRIES == 3
    assert plan.ASK_SECONDS == 2
    frames = wake(seen)
    assert len(frames) == plan.WOL_REPEAT == 3
    expected = b"\xff" * 6 + bytes.fromhex(GANDALF_MAC.replace(":", "")) * 16
    assert plan.magic_packet(GANDALF_MAC) == expected
    for frame in frames:
        ihl = (frame[14] & 0x0F) * 4
        udp = 14 + ihl
        assert frame[0:6] == b"\xff" * 6, "not an Ethernet broadcast"
        assert frame[6:12] == bytes.fromhex(pi_mac.replace(":", ""))
        assert (".".join(map(str, frame[26:30])), ".".join(map(str, frame[30:34]))) == (SERVICE_IP, "192.168.0.255")
        assert struct.unpack("!H", frame[udp + 2 : udp + 4])[0] == 9
        assert frame[udp + 8 :] == expected


# A machine that is on: Talos's API answers at its address (a listener on the port, as apid's).
LISTEN = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 50000))
s.listen(8)
print("listening", flush=True)
while True:
    s.accept()[0].close()
"""


def test_a_machine_that_answers_gets_no_packet(sim: Simulation, switch: tuple[str, list[str]]) -> None:
    _, command = sender_of(sim)
    prefix, made = switch
    pi = plug(prefix, made, "p", ip=SERVICE_IP)
    machine = plug(prefix, made, "m", mac=GANDALF_MAC, ip=GANDALF_IP)
    talos = subprocess.Popen(["ip", "netns", "exec", machine, "python3", "-c", LISTEN, GANDALF_IP], stdout=subprocess.PIPE, text=True)
    capture = subprocess.Popen(["ip", "netns", "exec", machine, "python3", "-c", CAPTURE, "15"], stdout=subprocess.PIPE, text=True)
    try:
        assert talos.stdout is not None and talos.stdout.readline().strip() == "listening"
        assert capture.stdout is not None and capture.stdout.readline().strip() == "ready"
        answered = in_ns(pi, "sh", "-c", command, timeout=60)
        assert answered.stdout == f"gandalf answers at {GANDALF_IP}:50000: it is on, no magic packet sent\n"
        frames = wake_frames(capture, time.monotonic() + 3)
    finally:
        stop(capture)  # type: ignore[arg-type]
        stop(talos)  # type: ignore[arg-type]
    assert frames == []


CLONE_NEWNET = 0x40000000


def _enter(ns: str) -> None:
    """setns(2) for the calling thread only: sockets it makes from now on live in `ns`."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    fd = os.open(f"/var/run/netns/{ns}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {ns}")
    finally:
        os.close(fd)


def test_the_rendered_bmc_command_powers_the_slot_on_at_the_inventorys_address(
    sim: Simulation, switch: tuple[str, list[str]], tmp_path: Path
) -> None:
    step = sim.named()["arda-power-saruman"]
    assert step.type == "command:local:Command"
    command = step.inputs["create"]
    assert f"--bmc https://{BMC_IP} " in command
    prefix, made = switch
    bmc_ns = plug(prefix, made, "b", ip=BMC_IP)
    operator = plug(prefix, made, "o", ip=OPERATOR_IP)
    state = StandInBmc(users={"root": PASSWORD})
    ready, done = threading.Event(), threading.Event()
    failed: list[BaseException] = []

    def run_bmc() -> None:
        try:
            _enter(bmc_ns)
            with serve(state, tmp_path, host=BMC_IP, port=443):
                ready.set()
                done.wait(120)
        except BaseException as e:  # reported by the test, below
            failed.append(e)
            ready.set()

    server = threading.Thread(target=run_bmc, daemon=True)
    server.start()
    assert ready.wait(60) and not failed, failed
    try:
        # As pulumi-command runs it: `sh -c` from the project folder, stdin the step's secret JSON.
        for _ in range(2):
            result = subprocess.run(
                ["ip", "netns", "exec", operator, "sh", "-c", command],
                input=json.dumps({"password": PASSWORD}),
                capture_output=True,
                text=True,
                timeout=120,
                cwd=ROOT,
            )
            assert result.returncode == 0, result.stderr
    finally:
        done.set()
        server.join(30)
    assert state.power == [False, True, False, False]
    first = plan.power_on_requests(2, already_on=False)
    assert [(m, p) for m, p, _ in state.requests] == [*first, *plan.power_on_requests(2, already_on=True)]
    assert result.stdout == f"saruman: the BMC at https://{BMC_IP} (slot 2) is on (it already was)\n"
