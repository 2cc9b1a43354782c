"""Power-on plan: how Pulumi powers an Arda machine on when it needs it, as pure data.

Two ways, per machine (`power` in the inventory, checked by stacks.power):

- **Wake-on-LAN.** A magic packet (6 bytes 0xff, then the machine's MAC 16 times) in a UDP
  broadcast to port 9 of the machine's network, sent from a Pi of the Ainur: they share the
  machine's L2 segment, which the operator's laptop may not (Wi-Fi, VPN), and a router does not
  forward a broadcast. The Pis run Ubuntu, so the sender is a few lines of python3 run over SSH
  (`wake_command`), no package to install. It goes to the Ainur's service address (`sender_address`),
  which kube-vip moves to whichever Pi serves netboot, so any Pi that answers sends it, not one Pi
  in particular. It asks first: a machine whose Talos API answers is on (running, or in maintenance
  mode) and gets no packet. Talos keeps the NIC armed for the next wake only when its machine
  config says so: `ethernet_config` is the EthernetConfig document that does.
- **A Turing Pi 2 BMC** (bmcd, firmware 2.x), over its HTTPS API from the operator's machine, by
  `iluvatar power bmc` (iluvatar.power): log in (POST /api/bmc/authenticate, a bearer token), read
  the slots' power, switch the machine's slot on unless it is on, read it back. With `flash`, the
  slot is first written with the Image Factory disk image, by the BMC itself from its URL, when
  Pulumi first adds the machine and Talos does not answer there (the requests are below).

Every step is safe to run twice: the Wake-on-LAN step sends nothing to a machine that answers, and
the BMC step switches on only a slot that is off and flashes only a machine where Talos does not
answer. A step runs when its machine first comes into the inventory and when the machine itself
changes (another MAC: a replaced machine; another address), never because versions or patches
changed: on a running cluster the machines are on, and a step that ran then would only add a wait on
a Pi (or a BMC) to a roll that does not need one. A reflashed machine is in maintenance mode, on.
`pulumi up --replace` of a machine's power step powers it on again (a machine switched off by hand).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from plans.timeouts import engine_timeout

if TYPE_CHECKING:
    # For the annotations alone: `iluvatar power bmc`, which `pulumi up` runs, needs no model (pydantic, ~0.25 s).
    from stacks.model import Bmc, Node, StackConfig

# Pulumi runs local commands in the project folder (plans.bringup.UPGRADER has the same root).
POWER_CLI = (".venv/bin/iluvatar", "power")

# The magic packet's UDP port: 9 (discard), what `wakeonlan` and `etherwake -b` send to.
WOL_PORT = 9
# UDP may drop one: the packet goes out three times, 100 ms apart (a machine already woken ignores the rest).
WOL_REPEAT = 3
# What Talos arms on the NIC: wake on a magic packet only (not on any unicast or ARP, which would wake it at random).
WOL_MODES = ("magic",)

# The engine's bound on the sender's step: SSH dials for up to plans.k3s's SSH_DIAL_ATTEMPTS x SSH_DIAL_SECONDS (a Pi
# still booting: 150 s), then asking and sending take seconds.
WAKE_TIMEOUT = "10m"
# Talos's API (apid, and the maintenance service before install): a machine that answers here has Talos on its disk.
TALOS_API_PORT = 50000
# How the Wake-on-LAN step asks a machine whether it is on: a TCP connection to its Talos API, each try bounded,
# a few tries a second apart (a machine on answers within a second; one that does not is woken).
ASK_SECONDS = 2
ASK_TRIES = 3
# A slot switched on answers on the BMC at once; the bound covers a BMC that is still booting or busy.
BMC_TIMEOUT = "5m"
# Flashing: Talos gets PROBE_SECONDS to answer after power-on (an RK1 boots Talos in about a minute);
# then the BMC downloads the image (about 100 MB, xz), writes it (about 1.3 GB to eMMC) and reads it
# back for its CRC: minutes on a home connection, bounded at FLASH_TIMEOUT in all.
FLASH_TIMEOUT = "45m"
PROBE_SECONDS = 300

BMC_API = "/api/bmc"
AUTHENTICATE = f"{BMC_API}/authenticate"


def magic_packet(mac: str) -> bytes:
    """The Wake-on-LAN payload: 6 bytes 0xff, then the MAC's 6 bytes 16 times (102 bytes)."""
    return b"\xff" * 6 + bytes.fromhex(mac.replace(":", "")) * 16


def broadcast(stack: StackConfig, node: Node) -> IPv4Address:
    """Where the packet goes: the broadcast address of the machine's network (the LAN: stacks.power refuses a VLAN)."""
    return stack.network.lan.broadcast_address


def sender_address(stack: StackConfig) -> IPv4Address:
    """Where the Wake-on-LAN step reaches a Pi over SSH: the Ainur's service address, which kube-vip gives the Pi that
    runs the netboot pod (any Pi, and one on the machine's LAN: it serves its DHCP), moving it when that Pi dies. Not
    the first valar: with it down, every machine's step would wait on it (SSH's 60 dials) and fail."""
    assert stack.ainur is not None
    return stack.ainur.service_ip


# Run by the Pi's python3 (Ubuntu's); argv: name, MAC, broadcast address, the machine's Talos API (ip:port).
# It asks the machine first, each ask bounded, and sends only to one that does not answer; it prints what it did. Its
# text is the command's: a change of it re-runs every machine's wake step at the next `up` (pulumi-command runs
# `create` again when it changes), which would power on a machine switched off by hand.
WAKE_SCRIPT = f"""import socket, sys, time
name, mac, address, talos = sys.argv[1:5]
host, port = talos.rsplit(":", 1)
for attempt in range({ASK_TRIES}):
    try:
        with socket.create_connection((host, int(port)), timeout={ASK_SECONDS}):
            print(f"{{name}} answers at {{talos}}: it is on, no magic packet sent")
            sys.exit(0)
    except OSError:
        time.sleep(1)
packet = b"\\xff" * 6 + bytes.fromhex(mac.replace(":", "")) * 16
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    for _ in range({WOL_REPEAT}):
        s.sendto(packet, (address, {WOL_PORT}))
        time.sleep(0.1)
print(f"{{name}} does not answer at {{talos}}: magic packet for {{mac}} sent to {{address}}:{WOL_PORT} ({WOL_REPEAT} times)")
"""


def wake_command(stack: StackConfig, node: Node) -> str:
    """The shell command the sender Pi runs: what it depends on is the machine itself (its name, MAC, network and
    address), so it runs again when the machine is replaced or moves, never when versions or patches change."""
    talos = f"{node.ip}:{TALOS_API_PORT}"
    return " ".join(["python3", "-c", shlex.quote(WAKE_SCRIPT), node.name, node.mac, str(broadcast(stack, node)), talos])


def ethernet_config(node: Node) -> dict[str, object] | None:
    """The Talos document that keeps the NIC's Wake-on-LAN armed (machinery v1.12.4 EthernetConfigV1Alpha1).

    Talos applies it with `ethtool -s <name> wol g` through netlink (its EthernetSpecController),
    by the kernel's interface name: the `lan0` alias of LinkAliasConfig is an ifalias, which that
    lookup does not see, so the inventory names the link (`power.wakeOnLan.link`).
    """
    if node.power is None or node.power.wake_on_lan is None:
        return None
    return {"apiVersion": "v1alpha1", "kind": "EthernetConfig", "name": node.power.wake_on_lan.link, "wakeOnLan": list(WOL_MODES)}


# --- The Turing Pi 2 BMC ----------------------------------------------------------------------


def bmc_url(bmc: Bmc) -> str:
    """bmcd serves its API over HTTPS only (port 443; port 80 redirects), with a self-signed certificate."""
    return f"https://{bmc.address}"


def power_query() -> str:
    """Every slot's power: `{"response": [{"result": [{"node1": "1", "node2": "0", ...}]}]}`."""
    return f"{BMC_API}?" + urlencode({"opt": "get", "type": "power"})


def power_on_query(slot: int) -> str:
    """Switch one slot on (`node1`..`node4`, 1-based): `{"response": [{"result": "ok"}]}`."""
    return f"{BMC_API}?" + urlencode({"opt": "set", "type": "power", f"node{slot}": "1"})


def flash_query(slot: int, image_url: str) -> str:
    """Flash one slot from a URL the BMC downloads itself (it unpacks `.xz`): `{"handle": <id>}`.

    The flash API numbers slots from 0 (`node=0` is slot 1), unlike the power API.
    """
    return f"{BMC_API}?" + urlencode({"opt": "set", "type": "flash", "node": str(slot - 1), "file": image_url})


def flash_status_query() -> str:
    """The transfer's state: `"Ready"`, `{"Transferring": {...}}`, `{"Done": [...]}` or `{"Error": "..."}`."""
    return f"{BMC_API}?" + urlencode({"opt": "get", "type": "flash"})


def power_on_requests(slot: int, already_on: bool) -> list[tuple[str, str]]:
    """The requests `iluvatar power bmc` sends to power a slot on, in order (a wait may repeat the last)."""
    login = [("POST", AUTHENTICATE), ("GET", power_query())]
    return login if already_on else [*login, ("GET", power_on_query(slot)), ("GET", power_query())]


def flash_requests(slot: int, image_url: str) -> list[tuple[str, str]]:
    """What flashing adds, after the login and once Talos has not answered: start, then poll to the end."""
    return [("GET", flash_query(slot, image_url)), ("GET", flash_status_query())]


@dataclass(frozen=True)
class PowerStep:
    """One `iluvatar power` command: its arguments, its bound, what it waits for."""

    args: tuple[str, ...]
    timeout: str
    waits_for: str

    @property
    def command(self) -> str:
        return shlex.join([*POWER_CLI, *self.args, "--timeout", self.timeout])

    @property
    def engine_timeout(self) -> str:
        return engine_timeout(self.timeout)


def bmc_step(node: Node, flash_image: str | None = None) -> PowerStep:
    """Power the machine's slot on (stdin: the BMC's password); with `flash_image`, flash it first when Talos does not answer."""
    assert node.power is not None
    assert node.power.bmc is not None
    bmc = node.power.bmc
    args = ["bmc", "--machine", node.name, "--bmc", bmc_url(bmc), "--slot", str(bmc.slot), "--user", bmc.username]
    if flash_image is None:
        return PowerStep(tuple(args), BMC_TIMEOUT, f"slot {bmc.slot} of the BMC at {bmc.address} to be on ({node.name})")
    args += ["--flash", flash_image, "--talos", f"{node.ip}:{TALOS_API_PORT}", "--probe", f"{PROBE_SECONDS}s"]
    return PowerStep(
        tuple(args),
        FLASH_TIMEOUT,
        f"{node.name} to answer at {node.ip}:{TALOS_API_PORT}, else slot {bmc.slot} of the BMC at {bmc.address} flashed with its disk image, then on",
    )
