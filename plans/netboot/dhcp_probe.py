"""The LAN's DHCP servers as a real DHCPDISCOVER finds them, and whether the Ainur's dnsmasq may serve beside them.

`pulumi up` runs this module on a valar, before the netboot objects are created or changed (components.netboot,
`probe_script`): in `dhcp` mode the Ainur's dnsmasq is `dhcp-authoritative` with `no-ping` (plans.netboot.dnsmasq), so
a second DHCP server on the LAN (the ISP router's, left on) would have two servers hand out the same addresses and
dnsmasq NAK the router's clients; the step then refuses, naming that server's address and MAC and the fix. In `proxy`
mode the router lends every address, so the step refuses when the router's DHCP server does not answer, except on a
move from `dhcp`: the Ainur still lend then, and the router's DHCP must stay off until they stop, or the two would lend
the same pool and the authoritative Ainur NAK every client that takes the router's offer (dnsmasq 2.90
src/rfc2131.c:1198-1238, "wrong server-ID"), so on that move the step refuses while the router answers. That move's
router step comes after: once the netboot pod runs in proxy mode, a second step (`wait_script`) says "turn the router's
DHCP on now" and waits, bounded, until the router answers.

The router is named, never guessed: an answer is the router's only if its server identifier (option 54, else the
packet's source address) is the router's address (network.gateway, or ainur.netboot.routerAddress where the router's
DHCP server is elsewhere). Any other server in proxy mode is refused, naming its address and MAC: a stray or hostile
server taken for the router would become the household's DHCP server (its gateway, its DNS) with the router kept off.

An answer whose server identifier is one of the Ainur's service addresses is the Ainur's own dnsmasq (it answers from
that address alone: plans.netboot.dnsmasq, `listen-address`): the stack's, and the last deployment's when the stack
moves it (until the netboot objects change, the running dnsmasq answers from the old one). Two MACs answering from
them are two netboot pods at once.

Standard library only, and runnable on its own (`python3 - --mode dhcp ...` on a Pi: Ubuntu's cloud-init needs
python3). It sends and receives whole frames on a packet socket (AF_PACKET, so root): no UDP port 68 to share with a
DHCP client of the host, and each answer's Ethernet source is the answering server's MAC. The DISCOVER asks with the
host's own MAC and the broadcast flag (RFC 2131 4.1: the server then broadcasts its answer), so no stranger's MAC
appears in any server's table, and a DISCOVER commits no lease (RFC 2131 4.3.1: an OFFER is only an offer).
"""

from __future__ import annotations

import argparse
import fcntl
import ipaddress
import json
import os
import select
import shlex
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# RFC 2131 and 2132: the BOOTP header, the magic cookie, the options read.
MAGIC = b"\x63\x82\x53\x63"
OPTION_MESSAGE_TYPE, OPTION_SERVER_ID, OPTION_PARAMETERS, OPTION_END = 53, 54, 55, 255
DISCOVER, OFFER, ACK, NAK = 1, 2, 5, 6
KINDS = {OFFER: "offer", ACK: "ack", NAK: "nak"}
SERVER_PORT, CLIENT_PORT = 67, 68
ETH_P_IP = 0x0800
SIOCGIFADDR = 0x8915
# Each DISCOVER is sent this many times, this far apart, and the answers are collected until LISTEN_SECONDS after the
# last: a server that pings before it offers (dnsmasq without no-ping waits up to 3 s on one address, rfc2131.c) or
# drops a first packet still shows, and the step is bounded by TRIES * GAP_SECONDS + LISTEN_SECONDS.
TRIES, GAP_SECONDS, LISTEN_SECONDS = 3, 1.0, 4.0
# How long the step after a move to proxy mode waits for the router's DHCP: long enough to find the router's settings page
# and turn it on; the household has the Ainur's leases (leaseTime, 12 h by default) meanwhile, so no device drops off.
ROUTER_WAIT_MINUTES = 15
# How long a proxy-mode probe asks again while only the router is silent: a dnsmasq-based router pings each new address
# for up to 3 s, reading no other DHCP packet meanwhile (dnsmasq 2.90 src/dnsmasq.c, icmp_ping), so with a burst of new
# clients its answer can miss one round; an `up` that re-runs the probe with nothing changed must not fail on it. The
# same window is the silence a dhcp-mode probe needs before it takes the LAN for one with no other DHCP server: a router
# that can miss rounds while on is not shown off by one silent round (`probe`, and `wait_off` on a move from proxy).
PROXY_RETRY_SECONDS = 60
# How the wait step's refusal of a foreign server ends: the netboot pod already answers only the machines it boots.
# The netboot Deployment's pod-template annotations saying the mode and the service address its dnsmasq runs with
# (plans.netboot.objects): what the steps read from the Ainur's API at run time to know whether this `up` moves the LAN
# between modes. Never the last `up`'s outputs: the engine writes those even when that `up` failed before the Deployment
# changed, and the retry would see no move while the old pod still ran the old mode.
MODE_ANNOTATION = "iluvatar/dhcp-mode"
SERVICE_IP_ANNOTATION = "iluvatar/service-ip"
# What the probe prints on a move from dhcp, and the step after the pod looks for in its output (`told_to_leave_off`).
LEAVE_OFF = (
    "iluvatar: only the Ainur lend on the LAN, as they must until the netboot pod restarts in proxy mode; leave the "
    "router's DHCP off until this `up` says to turn it on"
)
WAIT_AGAIN = " Then turn the router's DHCP server on, if it is off, and run `pulumi up` again (this step waits again)."


@dataclass(frozen=True, order=True)
class Answer:
    """One DHCP server's answer: its server identifier (option 54, else the packet's source address), the MAC it
    came from, what it was (offer, ack, nak) and the address it offered."""

    server: str
    mac: str
    kind: str
    offered: str


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def discover_frame(mac: bytes, xid: int, secs: int = 0) -> bytes:
    """A DHCPDISCOVER from `mac` as an Ethernet broadcast (0.0.0.0:68 to 255.255.255.255:67), broadcast flag set, `secs`
    seconds into its acquisition (RFC 2131 2: a server may answer only once a client has waited, e.g. ISC's min-secs)."""
    options = bytes([OPTION_MESSAGE_TYPE, 1, DISCOVER, OPTION_PARAMETERS, 4, 1, 3, 6, OPTION_SERVER_ID, OPTION_END])
    bootp = struct.pack(
        "!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, xid, min(secs, 0xFFFF), 0x8000, b"\0" * 4, b"\0" * 4, b"\0" * 4, b"\0" * 4, mac, b"", b""
    )
    payload = bootp + MAGIC + options
    payload += b"\0" * max(0, 300 - len(payload))  # the BOOTP minimum some servers insist on (RFC 1542 2.1)
    # UDP checksum 0: none, which IPv4 allows (RFC 768).
    udp = struct.pack("!HHHH", CLIENT_PORT, SERVER_PORT, 8 + len(payload), 0) + payload
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, socket.IPPROTO_UDP, 0, b"\0" * 4, b"\xff" * 4)
    header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
    return b"\xff" * 6 + mac + struct.pack("!H", ETH_P_IP) + header + udp


def _options(data: bytes) -> dict[int, bytes]:
    found: dict[int, bytes] = {}
    i = 0
    while i < len(data):
        code = data[i]
        if code == OPTION_END:
            break
        if code == 0:
            i += 1
            continue
        if i + 1 >= len(data):
            break
        length = data[i + 1]
        found.setdefault(code, data[i + 2 : i + 2 + length])
        i += 2 + length
    return found


def parse_answer(frame: bytes, xid: int) -> Answer | None:
    """The server's answer in `frame`, if it is a DHCP server's answer (UDP 67 to 68, BOOTREPLY) to our `xid`."""
    if len(frame) < 14 + 20 + 8 + 240 or struct.unpack("!H", frame[12:14])[0] != ETH_P_IP:
        return None
    ip = frame[14:]
    ihl = (ip[0] & 0x0F) * 4
    if ip[9] != socket.IPPROTO_UDP or len(ip) < ihl + 8 + 240:
        return None
    sport, dport = struct.unpack("!HH", ip[ihl : ihl + 4])
    bootp = ip[ihl + 8 :]
    if (sport, dport) != (SERVER_PORT, CLIENT_PORT) or bootp[0] != 2 or struct.unpack("!I", bootp[4:8])[0] != xid or bootp[236:240] != MAGIC:
        return None
    options = _options(bootp[240:])
    kind = KINDS.get(options.get(OPTION_MESSAGE_TYPE, b"\0")[0])
    if kind is None:
        return None
    server_id = options.get(OPTION_SERVER_ID)
    server = socket.inet_ntoa(server_id if server_id and len(server_id) == 4 else ip[12:16])
    mac = ":".join(f"{b:02x}" for b in frame[6:12])
    return Answer(server=server, mac=mac, kind=kind, offered=socket.inet_ntoa(bootp[16:20]))


def interface_on(lan: str) -> str:
    """The host's interface on `lan`: the first whose primary IPv4 address is in it. The step runs on whichever valar
    holds the Ainur's API address (components.netboot), so it names the LAN, never one Pi's own address."""
    network = ipaddress.ip_network(lan)
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for _, name in socket.if_nameindex():
            try:
                got = fcntl.ioctl(probe.fileno(), SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
            except OSError:
                continue
            if ipaddress.ip_address(socket.inet_ntoa(got[20:24])) in network:
                return name
    finally:
        probe.close()
    raise SystemExit(f"iluvatar: no interface of this host has an address in {lan}, so the LAN cannot be probed for DHCP servers from it")


def collect(interface: str, tries: int = TRIES, gap: float = GAP_SECONDS, listen: float = LISTEN_SECONDS, began: float | None = None) -> list[Answer]:
    """Every DHCP server's answer to a DHCPDISCOVER sent `tries` times from `interface`, one per server and MAC. Each
    says how long the asking has gone on (`secs`, from `began`, a monotonic time; else from the first), as a client's
    retransmissions do, so a server that answers only a client that has waited is heard too."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
    try:
        sock.bind((interface, 0))
        mac = sock.getsockname()[4][:6]
        xid = int.from_bytes(os.urandom(4), "big")
        found: set[Answer] = set()
        start = time.monotonic()
        sent = 0
        end = start + (tries - 1) * gap + listen
        while (now := time.monotonic()) < end:
            if sent < tries and now >= start + sent * gap:
                sock.send(discover_frame(mac, xid, int(now - (start if began is None else began))))
                sent += 1
                continue
            due = min(end, start + sent * gap) if sent < tries else end
            ready, _, _ = select.select([sock], [], [], max(0.0, due - now))
            if ready:
                answer = parse_answer(sock.recv(2048), xid)
                if answer is not None:
                    found.add(answer)
        # One line per server and MAC: its kind and offer of the first answer seen is enough to name it.
        first: dict[tuple[str, str], Answer] = {}
        for answer in sorted(found):
            first.setdefault((answer.server, answer.mac), answer)
        return list(first.values())
    finally:
        sock.close()


def _ours(ours: Sequence[str]) -> tuple[str, ...]:
    """The Ainur's service addresses, each checked to be one. One address given bare is a Sequence[str] too: `in` on it
    is a substring test, which would count the router at 192.168.0.1 as the Ainur at 192.168.0.14 and let dhcp mode
    pass beside it, and a script would spell it out a character per --service-ip. Either way it is refused."""
    if isinstance(ours, str):
        raise TypeError(f"the Ainur's service addresses are a list, not the one string {ours!r}")
    return tuple(str(ipaddress.IPv4Address(ip)) for ip in ours)


def _named(answers: Sequence[Answer]) -> str:
    return "; ".join(f"{a.server} (MAC {a.mac}) {'offered ' + a.offered if a.kind == 'offer' else 'sent a ' + a.kind.upper()}" for a in answers)


def _foreign(router: str, foreign: Sequence[Answer]) -> str:
    return (
        f"iluvatar: a DHCP server other than the router's ({router}) answers on the LAN: {_named(foreign)}. With "
        "ainur.netboot.mode: proxy the household takes its address, gateway and DNS server from whichever server answers "
        "first, and only the router's may. Fix: turn that server's DHCP off (a mesh node or travel router in router mode, "
        "a NAS or Pi-hole with DHCP on); if it is the router's own DHCP server, at an address other than network.gateway, "
        "say so with ainur.netboot.routerAddress. Nothing on the LAN was changed."
    )


def _pool_word(router: str | None, pool: str | None, answers: Sequence[Answer]) -> str:
    """What the router's own offers say of ainur.netboot.routerPool (`START-END` or `none`), where the probe sees them:
    a pool the router does not lend from is not the one the household holds leases of."""
    offered = sorted({a.offered for a in answers if a.server == router and a.kind == "offer"}, key=ipaddress.IPv4Address)
    if pool is None or not offered:
        return ""
    if pool == "none":
        return (
            f" The router offered {', '.join(offered)}: it lends, so ainur.netboot.routerPool: none is not so; name the pool from its DHCP settings."
        )
    start, _, end = pool.partition("-")
    outside = [ip for ip in offered if not ipaddress.IPv4Address(start) <= ipaddress.IPv4Address(ip) <= ipaddress.IPv4Address(end)]
    if not outside:
        return ""
    return (
        f" The router offered {', '.join(outside)}, outside ainur.netboot.routerPool {pool}: it lends from another pool (or a "
        "second one, such as a guest range), whose leases the household holds too; copy its whole pool from its DHCP settings."
    )


def _outside(pool: str | None, offers: Sequence[Answer]) -> list[str]:
    """The addresses offered outside `pool` (`START-END`; None or `none`: no pool to hold them to)."""
    if pool is None or pool == "none":
        return []
    start, _, end = pool.partition("-")
    low, high = ipaddress.IPv4Address(start), ipaddress.IPv4Address(end)
    return sorted({a.offered for a in offers if not low <= ipaddress.IPv4Address(a.offered) <= high}, key=ipaddress.IPv4Address)


def judge(
    mode: str, ours: Sequence[str], answers: list[Answer], before: str | None = None, router: str | None = None, pool: str | None = None
) -> str | None:
    """Why the Ainur's dnsmasq may not serve in `mode` beside what answered, or None when it may. `ours`: the Ainur's
    service addresses (the stack's, then the last deployment's where it moved); `before`: the last deployment's mode;
    `router`: the router's DHCP server address (needed in proxy mode: only its answers are the router's); `pool`: in
    dhcp mode, ainur.netboot.routerPool as `START-END` or `none`, checked against the router's offers."""
    ours = _ours(ours)
    own = sorted({a.mac for a in answers if a.server in ours})
    others = [a for a in answers if a.server not in ours]
    if len(own) > 1:
        held = " or ".join(ours)
        return (
            f"iluvatar: two DHCP servers answer from the Ainur's service address {held}, from MACs {' and '.join(own)}: "
            "two netboot pods serve at once (a Pi that lost the address but still holds it). Look with: "
            "sudo k3s kubectl -n netboot get pods -o wide, and `ip -4 addr` on each Pi; the Pi not running the netboot pod "
            f"must not hold {held}."
        )
    if mode == "dhcp" and before == "proxy" and router is not None and not [a for a in others if a.server != router]:
        # A move from proxy: the router still lends, as it must until the step right before the netboot pod restarts
        # asks it off (`wait_off`); what it offers checks the pool the stack says it lent.
        if word := _pool_word(router, pool, others):
            return f"iluvatar: the router's DHCP ({_named(others)}) lends from a pool the stack does not name.{word} Nothing on the LAN was changed."
        return None
    if mode == "dhcp" and others:
        return (
            f"iluvatar: another DHCP server answers on the LAN: {_named(others)}. With ainur.netboot.mode: dhcp the Ainur are the LAN's "
            "only DHCP server (authoritative, handing out network.dhcpRange without a ping first), and two servers would hand "
            "out the same addresses and refuse each other's clients. Fix: turn that server's DHCP off (on a home router: its "
            "LAN or DHCP settings), or, if it is the household's router, set ainur.netboot.mode: proxy in the stack to keep "
            "it lending and let the Ainur add only the boot answers. Nothing on the LAN was changed."
        ) + _pool_word(router, pool, others)
    if mode != "proxy":
        return None
    if router is None:
        raise ValueError("in proxy mode the probe needs the router's DHCP server address")
    if foreign := [a for a in others if a.server != router]:
        return _foreign(router, foreign)
    routers = [a for a in others if a.server == router]
    if before == "dhcp" and routers:
        return (
            f"iluvatar: the router's DHCP ({_named(routers)}) already answers while the Ainur still lend, authoritative: "
            "until the netboot pod restarts in proxy mode, two servers lend the same pool and the Ainur refuse every device "
            "that takes the router's offer. Fix: turn the router's DHCP server off now, and run `pulumi up` again; that `up` "
            "says when to turn it on (the step after the netboot pod's restart). Nothing on the LAN was changed."
        )
    if before != "dhcp" and not routers:
        return (
            f"iluvatar: the router's DHCP server ({router}) did not answer on the LAN. With ainur.netboot.mode: proxy the "
            "router lends every address and the Ainur add only the boot answers: with no router's DHCP, no machine on the LAN "
            "gets an address. Fix: turn the router's DHCP server on (if it answers from an address other than network.gateway, "
            "say so with ainur.netboot.routerAddress), or set ainur.netboot.mode: dhcp in the stack to make the Ainur the "
            "LAN's DHCP server. Nothing on the LAN was changed."
        )
    return None


def router_silent(mode: str, ours: Sequence[str], answers: Sequence[Answer], before: str | None, router: str | None) -> bool:
    """Whether `judge` refuses only because the router's DHCP server has not answered (proxy mode, no move from dhcp,
    no other server, one netboot pod at most): the one refusal that asking again may lift."""
    ours = _ours(ours)
    return (
        mode == "proxy"
        and before != "dhcp"
        and all(a.server in ours for a in answers)
        and len({a.mac for a in answers}) <= 1
        and not any(a.server == router for a in answers)
    )


def needs_silence(mode: str, before: str | None) -> bool:
    """Whether the probe passes only on silence from every server but the Ainur's: dhcp mode with no move from proxy,
    where the Ainur lend alone from the moment dnsmasq starts (on a move from proxy the router lends until `wait_off`,
    which needs the same silence, right before the pod)."""
    return mode == "dhcp" and before != "proxy"


def probe(
    interface: str,
    mode: str,
    ours: Sequence[str],
    router: str,
    before: str | None = None,
    pool: str | None = None,
    retry: float = PROXY_RETRY_SECONDS,
    ask: Callable[[str, float], list[Answer]] = lambda i, began: collect(i, began=began),
    clock: Callable[[], float] = time.monotonic,
) -> tuple[list[Answer], str | None]:
    """The answers of the last round and `judge`'s refusal (None: the Ainur may serve). In proxy mode a round with no
    answer from the router is asked again, saying so, until it answers or `retry` seconds have passed. In dhcp mode with
    no move from proxy (`needs_silence`) a round in which no other server answered is asked again, saying so, until
    `retry` seconds have passed since the first began, and the Ainur may serve only if every round was silent: the
    evidence `wait_off` needs of a router turned off, since a router busy pinging new clients misses rounds with its
    DHCP on (PROXY_RETRY_SECONDS). Any other refusal, and any other server's answer in any round, is final at once.
    `clock`: monotonic seconds."""
    ours = _ours(ours)
    began = clock()
    answers = ask(interface, began)
    if router_silent(mode, ours, answers, before, router) and retry > 0:
        print(
            f"iluvatar: the router's DHCP server ({router}) has not answered on {interface} yet (a router pinging new "
            f"clients answers late); asking again for up to {round(retry)} s",
            flush=True,
        )
        while router_silent(mode, ours, answers, before, router) and clock() < began + retry:
            answers = ask(interface, began)
    elif needs_silence(mode, before) and retry > 0 and judge(mode, ours, answers, before, router, pool) is None:
        print(
            f"iluvatar: no DHCP server but the Ainur's answered on {interface}; asking again for {round(retry)} s before "
            "taking the LAN for one with no other DHCP server (a router pinging new clients can miss rounds with its "
            "DHCP on)",
            flush=True,
        )
        rounds = 1
        while clock() < began + retry and judge(mode, ours, answers, before, router, pool) is None:
            answers = ask(interface, began)
            rounds += 1
        if judge(mode, ours, answers, before, router, pool) is None:
            print(f"iluvatar: no DHCP server but the Ainur's answered on {interface} in {rounds} rounds over {round(clock() - began)} s", flush=True)
    return answers, judge(mode, ours, answers, before, router, pool)


def switch_note(mode: str, ours: Sequence[str], answers: list[Answer], before: str | None) -> str | None:
    """On a move between modes, what the household should know before the Ainur's lending changes."""
    if mode == "dhcp" and before == "proxy":
        return (
            "iluvatar: the router lends until the Ainur take over; leave its DHCP on until this `up` says to turn it off (the "
            "step right before the netboot pod restarts in dhcp mode), so the household is never without a lender."
        )
    if mode != "proxy" or before != "dhcp":
        return None
    return (
        f"{LEAVE_OFF} (the step after the netboot pod's restart). If the `up` fails or stops before saying so, once the "
        "netboot Deployment has begun to change, turn the router's DHCP on then."
    )


def told_to_leave_off(probe_output: str | None) -> bool:
    """Whether the probe's output (`main`, `probe_script`) told the user to leave the router's DHCP off until the `up`
    says to turn it on: a move from dhcp, as the probe read it from the netboot Deployment that ran. The step after the
    pod (`wait_script`) then owes the user that word; it cannot read the move itself, since the Deployment has moved by
    the time it runs."""
    return LEAVE_OFF in (probe_output or "")


def wait_for_router(
    interface: str,
    ours: Sequence[str],
    router: str,
    seconds: float,
    ask: Callable[[str, float], list[Answer]] = lambda i, began: collect(i, began=began),
    moved: bool = False,
    pool: str | None = None,
) -> int:
    """Once the netboot pod runs in proxy mode: 0 as soon as the router's DHCP server (`router`) answers, with no other
    server beside it; until then, having told the user to turn the router's DHCP on (`moved`: a move from dhcp mode; on
    any other restart of the pod only that it has not answered yet, since its DHCP is on and a busy router answers late), ask again,
    and give up after `seconds` (1, naming what is missing). Any other server answering fails the step at once, named:
    it is not the router, and the household would take its addresses from it. Each round is one `collect`, bounded by
    its own listening time, its `secs` counted from the wait's start. `pool` (on a move: ainur.netboot.routerPool,
    `START-END`, which the stack keeps apart from the ranges the Ainur lent): a router offering outside it fails the
    step, named, since the household still holds the Ainur's leases, which the router does not know."""
    ours = _ours(ours)
    began = time.monotonic()
    end = began + seconds
    told = False
    while True:
        others = [a for a in ask(interface, began) if a.server not in ours]
        for a in others:
            print(f"iluvatar: DHCP server {a.server} (MAC {a.mac}) answered a DHCPDISCOVER on {interface}: {a.kind} {a.offered}")
        if foreign := [a for a in others if a.server != router]:
            print(_foreign(router, foreign).replace(" Nothing on the LAN was changed.", WAIT_AGAIN), file=sys.stderr)
            return 1
        if others and moved and (outside := _outside(pool, [a for a in others if a.kind == "offer"])):
            print(
                f"iluvatar: the router's DHCP server ({router}) offered {', '.join(outside)}, outside ainur.netboot.routerPool "
                f"{pool}: the household's devices keep the addresses the Ainur lent them until their leases end, and the router "
                "does not know those leases, so one that lends without first checking an address is free gives a device "
                "joining an address another holds. Fix: set the router's DHCP pool to "
                f"{pool} now (its LAN or DHCP settings), then run `pulumi up` again (this step asks again).",
                file=sys.stderr,
            )
            return 1
        if others:
            return 0
        if time.monotonic() >= end:
            print(
                f"iluvatar: the router's DHCP server ({router}) did not answer on the LAN within {round(seconds / 60)} min: "
                "nothing lends the household addresses now, and each device loses its own when its lease from the Ainur ends. "
                "Fix: turn the router's DHCP server on, then run `pulumi up` again (this step waits again); or set "
                "ainur.netboot.mode: dhcp to make the Ainur the LAN's DHCP server again.",
                file=sys.stderr,
            )
            return 1
        if not told and not moved:
            print(
                f"iluvatar: the router's DHCP server ({router}) has not answered on {interface} yet (a router pinging new clients "
                f"answers late); asking again for up to {round(seconds / 60)} min.",
                flush=True,
            )
            told = True
        if not told:
            print(
                "iluvatar: the Ainur no longer lend addresses (the netboot pod answers only the machines it boots): turn the "
                "router's DHCP server on now, with the settings of docs/layers/netboot.md#dhcp-modes. Waiting up to "
                f"{round(seconds / 60)} min for it to answer on {interface}.",
                flush=True,
            )
            told = True


def wait_off(
    interface: str,
    ours: Sequence[str],
    seconds: float,
    ask: Callable[[str, float], list[Answer]] = lambda i, began: collect(i, began=began),
    quiet: float = PROXY_RETRY_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Right before the netboot pod restarts in dhcp mode (a move from the router's lending): tell the user to turn the
    router's DHCP off now, before the first round (a router busy pinging new clients may be silent in the first rounds,
    and must be told all the same), then 0 once no DHCP server but the Ainur's has answered for `quiet` seconds in a row,
    counted from the start of the first silent round: a silent router is off only after as long a silence as the proxy
    probe gives a busy one before taking it for absent (PROXY_RETRY_SECONDS). Any answer starts the count again. Gives up
    after `seconds` (1, naming who still answers). The household keeps the router's leases meanwhile; only this window
    has no lender for new ones. `clock`: monotonic seconds."""
    ours = _ours(ours)
    began = clock()
    end = began + seconds
    print(
        f"iluvatar: the Ainur are ready to lend: turn the router's DHCP server off now. Waiting up to {round(seconds / 60)} min "
        f"until no server but the Ainur's has answered on {interface} for {round(quiet)} s in a row (a router pinging new "
        "clients can be silent a while with its DHCP on); the household keeps the router's leases meanwhile.",
        flush=True,
    )
    silent_since: float | None = None
    named: set[tuple[str, str]] = set()
    while True:
        start = clock()
        others = [a for a in ask(interface, began) if a.server not in ours]
        if others:
            silent_since = None
            if new := [a for a in others if (a.server, a.mac) not in named]:
                print(f"iluvatar: still answering on {interface}: {_named(new)}; waiting for it to stop.", flush=True)
                named.update((a.server, a.mac) for a in new)
        elif silent_since is None:
            silent_since = start
        now = clock()
        if silent_since is not None and now - silent_since >= quiet:
            print(
                f"iluvatar: no DHCP server but the Ainur's has answered on {interface} for {round(now - silent_since)} s: the "
                "netboot pod restarts in dhcp mode now"
            )
            return 0
        if now >= end:
            heard = (
                _named(others) or f"none heard for the last {round(now - (silent_since or now))} s, short of the {round(quiet)} s that show it off"
            )
            print(
                f"iluvatar: a DHCP server other than the Ainur's still answers on the LAN after {round(seconds / 60)} min: "
                f"{heard}. The Ainur do not start lending beside it (two servers would hand out "
                "the same addresses). Fix: turn the router's DHCP server off (its LAN or DHCP settings), and any other "
                "server's, then run `pulumi up` again (this step waits again); or keep ainur.netboot.mode: proxy.",
                file=sys.stderr,
            )
            return 1


def deployed(kubectl: Sequence[str]) -> tuple[str | None, str | None] | None:
    """The netboot Deployment as the Ainur's API has it now: (mode, service address) from its pod template's annotations
    (each None on a Deployment made before they were written), or None when there is no netboot Deployment (the first
    bring-up). `kubectl`: the command reaching the API (`k3s kubectl` on a valar). Raises RuntimeError when it fails:
    a step that cannot tell what runs must not guess."""
    # The program's own kubectl command (plans.k3s.KUBECTL), no shell.
    read = [*kubectl, "-n", "netboot", "get", "deployment", "netboot", "--ignore-not-found", "-o", "json"]
    done = subprocess.run(read, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)  # noqa: S603
    if done.returncode != 0:
        raise RuntimeError(
            f"iluvatar: the netboot Deployment cannot be read from the Ainur's API ({' '.join(kubectl)}: {done.stderr.strip()}), so "
            "whether this `up` moves the LAN between DHCP modes is unknown. Nothing on the LAN was changed; run `pulumi up` "
            "again once the Ainur's API answers (look with: sudo k3s kubectl -n netboot get deployment netboot)."
        )
    if not done.stdout.strip():
        return None
    annotations = json.loads(done.stdout).get("spec", {}).get("template", {}).get("metadata", {}).get("annotations") or {}
    return annotations.get(MODE_ANNOTATION), annotations.get(SERVICE_IP_ANNOTATION)


def moving(
    mode: str, running: tuple[str | None, str | None] | None, pool: str | None, fallback: tuple[str | None, str | None] = (None, None)
) -> tuple[str | None, str | None]:
    """(the mode this `up` moves from, or None; the running dnsmasq's service address, or None) from what runs
    (`deployed`). `fallback`: the last deployment's (mode, address) from its outputs, for a Deployment made before its
    template said them. No netboot Deployment yet and `mode` dhcp: a move from the router's lending, as from proxy, unless
    `pool` says no other server ever lent (`none`): the router's DHCP is turned off right before the pod, not before `up`."""
    if running is None:
        return ("proxy" if mode == "dhcp" and pool != "none" else None), None
    live_mode, live_ip = running
    if live_mode is None:
        live_mode, live_ip = fallback
    return (live_mode if live_mode is not None and live_mode != mode else None), live_ip


def _arguments(
    mode: str, ours: Sequence[str], lan: str, router: str, before: str | None, pool: str | None = None, retry: float = PROXY_RETRY_SECONDS
) -> str:
    return (
        f"--mode {mode} {' '.join(f'--service-ip {ip}' for ip in _ours(ours))} --lan {lan} --router {router}"
        + (f" --before {before}" if before else "")
        + (f" --router-pool {pool}" if pool else "")
        + (f" --retry-seconds {retry:g}" if retry != PROXY_RETRY_SECONDS else "")
    )


def _as_root(what: str, arguments: str) -> str:
    """This very module run as root with `arguments`, from its standard input (nothing is copied to the Pi)."""
    with open(__file__, encoding="utf-8") as f:
        source = f.read()
    return f"set -eu\n# iluvatar: {what} (plans.netboot.dhcp_probe).\nsudo python3 - {arguments} <<'ILUVATAR_PROBE'\n{source}ILUVATAR_PROBE\n"


def _live(kubectl: str | None, deployed_mode: str | None, deployed_ip: str | None) -> str:
    """The arguments reading the move from the running netboot Deployment (`deployed`), with the outputs' fallback."""
    if kubectl is None:
        return ""
    return (
        f" --kubectl {shlex.quote(kubectl)}"
        + (f" --deployed-mode {deployed_mode}" if deployed_mode else "")
        + (f" --deployed-service-ip {deployed_ip}" if deployed_ip else "")
    )


def probe_script(
    mode: str,
    ours: Sequence[str],
    lan: str,
    router: str,
    before: str | None = None,
    pool: str | None = None,
    retry: float = PROXY_RETRY_SECONDS,
    kubectl: str | None = None,
    deployed_mode: str | None = None,
    deployed_ip: str | None = None,
) -> str:
    """The step `pulumi up` runs over SSH on a valar (on `lan`) before the netboot objects change: this very module, as
    root, from its standard input (nothing is copied to the Pi), exiting non-zero with its refusal. `ours`: the Ainur's
    service addresses, the stack's first; `router`: the router's DHCP server address; `before`: the last deployment's
    mode; `pool`: ainur.netboot.routerPool in dhcp mode (`START-END` or `none`); `retry`: how long a proxy-mode probe
    asks again while the router is silent (`probe`). `kubectl`: the move is read from the netboot Deployment that runs
    (`deployed`, `moving`), not from `before`; `deployed_mode` and `deployed_ip`, the last outputs', serve a Deployment
    made before its template said them."""
    return _as_root(
        "the LAN's DHCP servers, asked with a real DHCPDISCOVER before the Ainur's dnsmasq serves",
        _arguments(mode, ours, lan, router, before, pool, retry) + _live(kubectl, deployed_mode, deployed_ip),
    )


def wait_script(
    ours: Sequence[str], lan: str, router: str, minutes: int = ROUTER_WAIT_MINUTES, before: str | None = None, pool: str | None = None
) -> str:
    """The step `pulumi up` runs on a valar once the netboot pod runs in proxy mode: the same module, waiting up to
    `minutes` for the router's DHCP server at `router` (`wait_for_router`); `before` dhcp: a move, so the user is told to
    turn the router's DHCP on, and its offers are held to `pool` (ainur.netboot.routerPool, `START-END`)."""
    return _as_root(
        "the router's DHCP, awaited once the Ainur answer only the machines they boot",
        f"{_arguments('proxy', ours, lan, router, before, pool)} --wait-minutes {minutes}",
    )


def off_script(
    ours: Sequence[str],
    lan: str,
    router: str,
    minutes: int = ROUTER_WAIT_MINUTES,
    kubectl: str | None = None,
    pool: str | None = None,
    deployed_mode: str | None = None,
    deployed_ip: str | None = None,
) -> str:
    """The step `pulumi up` runs on a valar right before the netboot pod restarts in dhcp mode on a move from proxy: the
    same module, telling the user to turn the router's DHCP off and waiting up to `minutes` until it is (`wait_off`).
    `kubectl`: whether it is a move is read from the netboot Deployment that runs (`moving`): none yet, or one in proxy
    mode, is one (unless `pool` is `none`); one already in dhcp mode passes at once."""
    return _as_root(
        "the router's DHCP, awaited off before the Ainur lend",
        f"{_arguments('dhcp', ours, lan, router, None, pool)} --wait-off-minutes {minutes}" + _live(kubectl, deployed_mode, deployed_ip),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Probe the LAN for DHCP servers before the Ainur's dnsmasq serves.")
    parser.add_argument("--mode", choices=("dhcp", "proxy"), required=True)
    parser.add_argument(
        "--service-ip",
        action="append",
        required=True,
        help="an Ainur service address (the stack's, the last deployment's): answers from it are the Ainur's own",
    )
    parser.add_argument("--router", required=True, help="the router's DHCP server address: in proxy mode only its answers are the router's")
    parser.add_argument("--before", choices=("dhcp", "proxy"), help="the mode the last deployment ran, when it differs")
    parser.add_argument(
        "--kubectl", help="read the move from the netboot Deployment that runs, through this command (`k3s kubectl` on a valar), not --before"
    )
    parser.add_argument(
        "--deployed-mode", choices=("dhcp", "proxy"), help="with --kubectl: the last outputs' mode, for a Deployment without its annotations"
    )
    parser.add_argument("--deployed-service-ip", help="with --kubectl: the last outputs' service address, likewise")
    parser.add_argument(
        "--router-pool", help="in dhcp mode, the pool the stack says the router lent; on a move to proxy, the one it lends (START-END or none)"
    )
    parser.add_argument(
        "--retry-seconds",
        type=float,
        default=PROXY_RETRY_SECONDS,
        help="how long to ask again: in proxy mode while the router is silent, in dhcp mode the silence needed to pass",
    )
    parser.add_argument("--wait-off-minutes", type=int, help="wait this long for no DHCP server but the Ainur's (before a move to dhcp)")
    parser.add_argument("--wait-minutes", type=int, help="wait this long for the router's DHCP server (after the pod runs in proxy mode)")
    place = parser.add_mutually_exclusive_group(required=True)
    place.add_argument("--lan", help="the LAN's CIDR: the probe goes out of this host's interface with an address in it")
    place.add_argument("--interface")
    args = parser.parse_args(argv)
    before, ours = args.before, list(args.service_ip)
    if args.kubectl is not None:
        try:
            running = deployed(shlex.split(args.kubectl))
        except RuntimeError as e:
            print(e, file=sys.stderr)
            return 1
        before, live_ip = moving(args.mode, running, args.router_pool, (args.deployed_mode, args.deployed_service_ip))
        ours += [live_ip] if live_ip is not None and live_ip not in ours else []
    interface = args.interface or interface_on(args.lan)
    if args.wait_off_minutes is not None:
        if args.kubectl is not None and before != "proxy":
            print("iluvatar: the netboot pod already lends, or nothing but the Ainur ever lent: no router's DHCP to turn off")
            return 0
        return wait_off(interface, ours, args.wait_off_minutes * 60.0)
    if args.wait_minutes is not None:
        return wait_for_router(interface, ours, args.router, args.wait_minutes * 60.0, moved=args.before == "dhcp", pool=args.router_pool)
    answers, refusal = probe(interface, args.mode, ours, args.router, before, args.router_pool, args.retry_seconds)
    for a in answers:
        print(f"iluvatar: DHCP server {a.server} (MAC {a.mac}) answered a DHCPDISCOVER on {interface}: {a.kind} {a.offered}")
    if not answers:
        print(f"iluvatar: no DHCP server answered a DHCPDISCOVER on {interface}")
    if refusal is not None:
        print(refusal, file=sys.stderr)
        return 1
    if note := switch_note(args.mode, ours, answers, before):
        print(note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
