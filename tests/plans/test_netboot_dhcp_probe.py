"""The DHCP probe's judge and frames (plans.netboot.dhcp_probe); the probe itself runs in tests/netns/test_dhcp_fence.py."""

from __future__ import annotations

import json
import socket
import struct
from pathlib import Path
from typing import Any

import pytest

from plans.netboot import dhcp_probe
from plans.netboot.dhcp_probe import Answer, discover_frame, judge, parse_answer, switch_note, wait_for_router

SVC = "192.168.0.14"
# The stack's service address after a move (ainur.serviceIp .14 -> .16): until the netboot objects change, the running
# dnsmasq still answers from .14.
MOVED = "192.168.0.16"
OURS = Answer(server=SVC, mac="d8:3a:dd:10:00:03", kind="offer", offered="192.168.0.11")
GATEWAY = "192.168.0.1"
ROUTER = Answer(server=GATEWAY, mac="00:11:22:33:44:55", kind="offer", offered="192.168.0.57")
# A DHCP server that is not the router: a mesh node in router mode, a NAS with DHCP on, an attacker.
STRANGER = Answer(server="192.168.0.240", mac="de:b8:00:00:00:01", kind="offer", offered="192.168.0.156")


def test_dhcp_mode_may_serve_beside_itself_alone() -> None:
    assert judge("dhcp", [SVC], []) is None
    assert judge("dhcp", [SVC], [OURS]) is None


def test_dhcp_mode_refuses_any_other_server_naming_it_and_the_fix() -> None:
    refusal = judge("dhcp", [SVC], [OURS, ROUTER])
    assert refusal is not None
    assert refusal.startswith("iluvatar: another DHCP server answers on the LAN: 192.168.0.1 (MAC 00:11:22:33:44:55) offered 192.168.0.57. ")
    assert (
        "Fix: turn that server's DHCP off (on a home router: its LAN or DHCP settings), or, if it is the household's router, set ainur.netboot.mode: proxy"
        in refusal
    )
    nak = Answer(server="192.168.0.1", mac="00:11:22:33:44:55", kind="nak", offered=socket.inet_ntoa(bytes(4)))
    assert (judge("dhcp", [SVC], [nak]) or "").startswith(
        "iluvatar: another DHCP server answers on the LAN: 192.168.0.1 (MAC 00:11:22:33:44:55) sent a NAK. "
    )


def test_the_routers_offers_check_the_pool_the_stack_says_it_lent() -> None:
    """In dhcp mode the router answering is refused; where its offers are heard, they also check routerPool: an offer
    outside it is a pool the household holds leases of that the stack does not name, and any offer belies `none`."""
    base = judge("dhcp", [SVC], [OURS, ROUTER], router=GATEWAY) or ""
    assert base.endswith("Nothing on the LAN was changed.")
    assert judge("dhcp", [SVC], [OURS, ROUTER], router=GATEWAY, pool="192.168.0.50-192.168.0.99") == base
    assert judge("dhcp", [SVC], [OURS, ROUTER], router=GATEWAY, pool="192.168.0.200-192.168.0.250") == base + (
        " The router offered 192.168.0.57, outside ainur.netboot.routerPool 192.168.0.200-192.168.0.250: it lends from another "
        "pool (or a second one, such as a guest range), whose leases the household holds too; copy its whole pool from its "
        "DHCP settings."
    )
    assert judge("dhcp", [SVC], [OURS, ROUTER], router=GATEWAY, pool="none") == base + (
        " The router offered 192.168.0.57: it lends, so ainur.netboot.routerPool: none is not so; name the pool from its DHCP settings."
    )
    # Another server's offers say nothing of the router's pool.
    assert judge("dhcp", [SVC], [STRANGER], router=GATEWAY, pool="none") == judge("dhcp", [SVC], [STRANGER], router=GATEWAY)


def test_proxy_mode_needs_the_routers_dhcp_server() -> None:
    assert judge("proxy", [SVC], [ROUTER], router=GATEWAY) is None
    assert judge("proxy", [SVC], [OURS, ROUTER], router=GATEWAY) is None
    for found in ([], [OURS]):
        refusal = judge("proxy", [SVC], found, router=GATEWAY)
        assert refusal is not None and refusal.startswith(
            "iluvatar: the router's DHCP server (192.168.0.1) did not answer on the LAN. With ainur.netboot.mode: proxy"
        )
    # The router's DHCP server elsewhere (ainur.netboot.routerAddress): its answers, and only those, are the router's.
    assert judge("proxy", [SVC], [STRANGER], router=STRANGER.server) is None
    assert (judge("proxy", [SVC], [ROUTER], router=STRANGER.server) or "").startswith(
        "iluvatar: a DHCP server other than the router's (192.168.0.240) answers on the LAN: 192.168.0.1 (MAC 00:11:22:33:44:55)"
    )
    with pytest.raises(ValueError, match="needs the router's DHCP server address"):
        judge("proxy", [SVC], [ROUTER])


def test_proxy_mode_refuses_any_server_but_the_router_naming_it() -> None:
    """Whatever else answers is not "the router": taken for it, it would become the household's DHCP server (its gateway,
    its DNS). Refused beside the router, without it, and on a move from dhcp."""
    want = (
        "iluvatar: a DHCP server other than the router's (192.168.0.1) answers on the LAN: 192.168.0.240 (MAC de:b8:00:00:00:01) "
        "offered 192.168.0.156. With ainur.netboot.mode: proxy the household takes its address, gateway and DNS server from "
        "whichever server answers first, and only the router's may. Fix: turn that server's DHCP off (a mesh node or travel "
        "router in router mode, a NAS or Pi-hole with DHCP on); if it is the router's own DHCP server, at an address other "
        "than network.gateway, say so with ainur.netboot.routerAddress. Nothing on the LAN was changed."
    )
    for found, before in (([ROUTER, STRANGER], None), ([STRANGER], None), ([OURS, STRANGER], "dhcp"), ([OURS, ROUTER, STRANGER], "dhcp")):
        assert judge("proxy", [SVC], found, before, GATEWAY) == want


def test_two_macs_answering_from_the_service_address_are_two_netboot_pods() -> None:
    other = Answer(server=SVC, mac="d8:3a:dd:10:00:02", kind="offer", offered="192.168.0.11")
    for mode in ("dhcp", "proxy"):
        refusal = judge(mode, [SVC], [OURS, other, ROUTER])
        assert refusal is not None
        assert refusal.startswith(
            f"iluvatar: two DHCP servers answer from the Ainur's service address {SVC}, from MACs d8:3a:dd:10:00:02 and d8:3a:dd:10:00:03: "
        )


def test_a_move_from_dhcp_to_proxy_passes_while_the_ainur_alone_lend() -> None:
    """The router's DHCP stays off until the Ainur stop lending (two servers would lend the same pool, the authoritative
    Ainur NAKing the router's clients): the probe before the switch passes with the Ainur alone, or nothing heard (the
    probe host's own dnsmasq is not heard on its packet socket), and says to leave the router off."""
    for found in ([], [OURS]):
        assert judge("proxy", [SVC], found, before="dhcp", router=GATEWAY) is None
        assert switch_note("proxy", [SVC], found, "dhcp") == (
            "iluvatar: only the Ainur lend on the LAN, as they must until the netboot pod restarts in proxy mode; leave the "
            "router's DHCP off until this `up` says to turn it on (the step after the netboot pod's restart). If the `up` "
            "fails or stops before saying so, once the netboot Deployment has begun to change, turn the router's DHCP on then."
        )
    # A router already on (the old runbook, or it came back): two servers lend one pool and the Ainur NAK the router's
    # clients until the pod restarts, or for good if the `up` stops first. Refused before anything changes.
    assert judge("proxy", [SVC], [OURS, ROUTER], before="dhcp", router=GATEWAY) == (
        "iluvatar: the router's DHCP (192.168.0.1 (MAC 00:11:22:33:44:55) offered 192.168.0.57) already answers while the "
        "Ainur still lend, authoritative: until the netboot pod restarts in proxy mode, two servers lend the same pool and "
        "the Ainur refuse every device that takes the router's offer. Fix: turn the router's DHCP server off now, and run "
        "`pulumi up` again; that `up` says when to turn it on (the step after the netboot pod's restart). Nothing on the LAN "
        "was changed."
    )
    # Two netboot pods are refused all the same.
    other = Answer(server=SVC, mac="d8:3a:dd:10:00:02", kind="offer", offered="192.168.0.11")
    assert (judge("proxy", [SVC], [OURS, other], before="dhcp", router=GATEWAY) or "").startswith("iluvatar: two DHCP servers answer")
    # Nothing to say outside a move (the move to dhcp has its own word: the next test).
    assert switch_note("proxy", [SVC], [ROUTER], None) is None and switch_note("dhcp", [SVC], [OURS], None) is None


def test_the_running_dnsmasq_at_the_last_deployments_service_address_is_the_ainurs_own() -> None:
    """ainur.serviceIp moved: the running dnsmasq answers from the old address until the netboot objects change. It is
    no foreign server (dhcp mode passes), and in proxy mode it is no router (no one would lend once it stops)."""
    old = Answer(server=SVC, mac="d8:3a:dd:10:00:03", kind="offer", offered="192.168.0.11")
    assert judge("dhcp", [MOVED, SVC], [old]) is None
    assert (judge("proxy", [MOVED, SVC], [old], router=GATEWAY) or "").startswith("iluvatar: the router's DHCP server (192.168.0.1) did not answer")
    # Two pods, one at each address, are two pods.
    new = Answer(server=MOVED, mac="d8:3a:dd:10:00:02", kind="offer", offered="192.168.0.11")
    assert (judge("dhcp", [MOVED, SVC], [old, new]) or "").startswith(
        f"iluvatar: two DHCP servers answer from the Ainur's service address {MOVED} or {SVC}, from MACs d8:3a:dd:10:00:02 and d8:3a:dd:10:00:03: "
    )
    # A real foreign server is still one, and the fix names proxy mode only for the household's router.
    refusal = judge("dhcp", [MOVED, SVC], [old, ROUTER]) or ""
    assert refusal.startswith("iluvatar: another DHCP server answers on the LAN: 192.168.0.1 (MAC 00:11:22:33:44:55) offered 192.168.0.57. ")
    assert "or, if it is the household's router, set ainur.netboot.mode: proxy" in refusal


def test_a_proxy_mode_probe_asks_again_while_the_router_alone_is_silent(capsys: pytest.CaptureFixture[str]) -> None:
    """A busy router may miss a round: the probe says so once and asks again until it answers. Every other refusal is
    final at once (a stranger, two pods, the router on during a move from dhcp, another server in dhcp mode)."""
    rounds = iter([[OURS], [], [OURS, ROUTER]])
    asked: list[int] = []

    def ask(_: str, __: float) -> list[Answer]:
        asked.append(1)
        return next(rounds)

    assert dhcp_probe.probe("eth0", "proxy", [SVC], GATEWAY, ask=ask) == ([OURS, ROUTER], None)
    assert len(asked) == 3
    assert capsys.readouterr().out.splitlines() == [
        "iluvatar: the router's DHCP server (192.168.0.1) has not answered on eth0 yet (a router pinging new clients answers "
        "late); asking again for up to 60 s"
    ]
    for mode, found, before in (("proxy", [STRANGER], None), ("proxy", [OURS, ROUTER], "dhcp"), ("dhcp", [ROUTER], None)):
        asked.clear()

        def once(_: str, __: float, f: list[Answer] = found) -> list[Answer]:
            asked.append(1)
            return f

        answers, refusal = dhcp_probe.probe("eth0", mode, [SVC], GATEWAY, before, ask=once)
        assert (answers, refusal is not None, len(asked)) == (found, True, 1)
    assert capsys.readouterr().out == ""
    # With no time to ask again (`retry` 0), the silent router is refused after one round, and nothing is said.
    assert (dhcp_probe.probe("eth0", "proxy", [SVC], GATEWAY, retry=0, ask=lambda *_: [OURS])[1] or "").startswith(
        "iluvatar: the router's DHCP server (192.168.0.1) did not answer"
    )
    assert capsys.readouterr().out == ""
    # The program's step asks with the default, which it need not spell (its script, so its state, unchanged).
    assert dhcp_probe.probe_script("proxy", [SVC], "192.168.0.0/24", GATEWAY, retry=0).splitlines()[2] == (
        "sudo python3 - --mode proxy --service-ip 192.168.0.14 --lan 192.168.0.0/24 --router 192.168.0.1 --retry-seconds 0 <<'ILUVATAR_PROBE'"
    )
    assert dhcp_probe.probe_script("proxy", [SVC], "192.168.0.0/24", GATEWAY).splitlines()[2] == (
        "sudo python3 - --mode proxy --service-ip 192.168.0.14 --lan 192.168.0.0/24 --router 192.168.0.1 <<'ILUVATAR_PROBE'"
    )


def test_a_dhcp_mode_probe_passes_only_on_a_whole_window_of_silence(capsys: pytest.CaptureFixture[str]) -> None:
    """#53 M3: in dhcp mode (no move from proxy) one silent round is no proof that the router's DHCP is off: a router
    pinging new clients misses rounds with it on. The probe asks again, saying so, and passes only once no other server
    has answered for PROXY_RETRY_SECONDS since the first round began, the silence `wait_off` needs; an answer in any
    round refuses at once, naming it."""
    clock = _Clock()
    asked = clock.round(iter([[OURS], *([[]] * 20)]))
    assert dhcp_probe.probe("eth0", "dhcp", [SVC], GATEWAY, ask=asked, clock=clock) == ([], None)
    # Ten rounds of 6 s: silent from the first round's start (t=0) to the end of the tenth (t=60).
    assert (clock.now, clock.rounds) == (60.0, 10)
    assert capsys.readouterr().out.splitlines() == [
        "iluvatar: no DHCP server but the Ainur's answered on eth0; asking again for 60 s before taking the LAN for one "
        "with no other DHCP server (a router pinging new clients can miss rounds with its DHCP on)",
        "iluvatar: no DHCP server but the Ainur's answered on eth0 in 10 rounds over 60 s",
    ]
    # The router, busy, silent for three rounds and then answering: refused at the fourth, naming it.
    clock = _Clock()
    asked = clock.round(iter([[], [OURS], [], [OURS, ROUTER], *([[]] * 20)]))
    answers, refusal = dhcp_probe.probe("eth0", "dhcp", [SVC], GATEWAY, ask=asked, clock=clock)
    assert (answers, clock.rounds) == ([OURS, ROUTER], 4)
    assert (refusal or "").startswith("iluvatar: another DHCP server answers on the LAN: 192.168.0.1 (MAC 00:11:22:33:44:55) offered 192.168.0.57. ")
    assert capsys.readouterr().out.splitlines() == [
        "iluvatar: no DHCP server but the Ainur's answered on eth0; asking again for 60 s before taking the LAN for one "
        "with no other DHCP server (a router pinging new clients can miss rounds with its DHCP on)"
    ]
    # A move from proxy asks once (the router lends until netboot-router-off, which needs the same silence); so does a
    # probe given no window (`retry` 0), and proxy mode with the router answering.
    for mode, before, retry, found in (("dhcp", "proxy", 60.0, [ROUTER]), ("dhcp", None, 0.0, []), ("proxy", None, 60.0, [ROUTER])):
        clock = _Clock()
        assert dhcp_probe.probe("eth0", mode, [SVC], GATEWAY, before, retry=retry, ask=clock.round(iter([found, *([[]] * 20)])), clock=clock) == (
            found,
            None,
        )
        assert clock.rounds == 1
    assert capsys.readouterr().out == ""


def test_a_bare_service_address_never_takes_the_router_for_the_ainur() -> None:
    """#53: the Ainur's service addresses are a list. Given bare, `in` is a substring test, and the router at
    192.168.0.1 counted as the Ainur at 192.168.0.14: dhcp mode passed beside it. Every entry point refuses it."""
    bare: Any = SVC
    for call in (
        lambda: judge("dhcp", bare, [ROUTER]),
        lambda: dhcp_probe.router_silent("proxy", bare, [ROUTER], None, GATEWAY),
        lambda: dhcp_probe.probe("eth0", "dhcp", bare, GATEWAY, retry=0, ask=lambda *_: [ROUTER]),
        lambda: dhcp_probe.wait_off("eth0", bare, 0.0, ask=lambda *_: [ROUTER]),
        lambda: wait_for_router("eth0", bare, GATEWAY, 0.0, ask=lambda *_: [ROUTER]),
    ):
        with pytest.raises(TypeError, match=r"not the one string '192\.168\.0\.14'"):
            call()
    # Nor is anything but an address one of theirs.
    with pytest.raises(ValueError, match=r"Expected 4 octets in '192\.168\.0'"):
        judge("dhcp", ["192.168.0"], [ROUTER])


def test_a_move_from_proxy_to_dhcp_keeps_the_router_on_until_the_step_before_the_pod(capsys: pytest.CaptureFixture[str]) -> None:
    """proxy -> dhcp: the probe before accepts the router lending (it must, until the Ainur are about to), refuses any
    other server, and checks the router's offers against routerPool; the step right before the pod asks the router off."""
    for found in ([], [ROUTER], [OURS, ROUTER]):
        assert judge("dhcp", [SVC], found, "proxy", GATEWAY, "192.168.0.50-192.168.0.99") is None
    assert switch_note("dhcp", [SVC], [ROUTER], "proxy") == (
        "iluvatar: the router lends until the Ainur take over; leave its DHCP on until this `up` says to turn it off (the "
        "step right before the netboot pod restarts in dhcp mode), so the household is never without a lender."
    )
    assert (judge("dhcp", [SVC], [ROUTER, STRANGER], "proxy", GATEWAY) or "").startswith(
        "iluvatar: another DHCP server answers on the LAN: 192.168.0.1 (MAC 00:11:22:33:44:55) offered 192.168.0.57; 192.168.0.240"
    )
    assert judge("dhcp", [SVC], [ROUTER], "proxy", GATEWAY, "192.168.0.200-192.168.0.250") == (
        "iluvatar: the router's DHCP (192.168.0.1 (MAC 00:11:22:33:44:55) offered 192.168.0.57) lends from a pool the stack "
        "does not name. The router offered 192.168.0.57, outside ainur.netboot.routerPool 192.168.0.200-192.168.0.250: it "
        "lends from another pool (or a second one, such as a guest range), whose leases the household holds too; copy its "
        "whole pool from its DHCP settings. Nothing on the LAN was changed."
    )
    # The step: "off now" before the first round, named answers, then passes once nothing but the Ainur has answered for
    # PROXY_RETRY_SECONDS in a row (a busy router can be silent for rounds with its DHCP on). Each round takes 6 s here.
    rounds = iter([[OURS, ROUTER], [], [ROUTER], [OURS], *([[]] * 20)])
    clock = _Clock()
    assert dhcp_probe.wait_off("eth0", [SVC], 900.0, ask=clock.round(rounds), clock=clock) == 0
    assert capsys.readouterr().out.splitlines() == [
        "iluvatar: the Ainur are ready to lend: turn the router's DHCP server off now. Waiting up to 15 min until no server "
        "but the Ainur's has answered on eth0 for 60 s in a row (a router pinging new clients can be silent a while with its "
        "DHCP on); the household keeps the router's leases meanwhile.",
        "iluvatar: still answering on eth0: 192.168.0.1 (MAC 00:11:22:33:44:55) offered 192.168.0.57; waiting for it to stop.",
        "iluvatar: no DHCP server but the Ainur's has answered on eth0 for 60 s: the netboot pod restarts in dhcp mode now",
    ]
    # Silent from the 4th round (t=18 s) to the end of the 13th (t=78 s).
    assert clock.now == 78.0
    # Past its bound with the router still on: it fails naming it, and the Ainur do not start lending.
    assert dhcp_probe.wait_off("eth0", [SVC], 0.0, ask=lambda *_: [ROUTER]) == 1
    assert capsys.readouterr().err.startswith(
        "iluvatar: a DHCP server other than the Ainur's still answers on the LAN after 0 min: 192.168.0.1 (MAC 00:11:22:33:44:55) offered 192.168.0.57."
    )


def test_a_busy_router_silent_at_first_is_told_off_and_never_taken_for_off(capsys: pytest.CaptureFixture[str]) -> None:
    """A router busy pinging new clients misses the first rounds, then answers: the user was told to turn it off before
    any round, and two silent rounds are no proof it is off; the step ends only after PROXY_RETRY_SECONDS of silence."""
    rounds = iter([[], [], [ROUTER], [ROUTER], *([[]] * 20)])
    clock = _Clock()
    asked = clock.round(rounds)
    assert dhcp_probe.wait_off("eth0", [SVC], 900.0, ask=asked, clock=clock) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("iluvatar: the Ainur are ready to lend: turn the router's DHCP server off now.")
    # Silent from the 5th round (t=24 s): 60 s later, at the end of the 14th.
    assert (clock.now, clock.rounds) == (84.0, 14)
    # Never silent for long enough within the bound: it fails, and says how long it heard nothing.
    clock = _Clock()
    flaky = iter([[], [ROUTER], *([[]] * 5)])
    assert dhcp_probe.wait_off("eth0", [SVC], 40.0, ask=clock.round(flaky), clock=clock) == 1
    assert "none heard for the last 30 s, short of the 60 s that show it off" in capsys.readouterr().err


class _Clock:
    """Monotonic seconds that move only as the rounds are asked: each round takes a probe's 6 s."""

    def __init__(self) -> None:
        self.now, self.rounds = 0.0, 0

    def __call__(self) -> float:
        return self.now

    def round(self, rounds: Any) -> Any:
        def ask(_: str, __: float) -> list[Answer]:
            self.now += (dhcp_probe.TRIES - 1) * dhcp_probe.GAP_SECONDS + dhcp_probe.LISTEN_SECONDS
            self.rounds += 1
            found: list[Answer] = next(rounds)
            return found

        return ask


def test_the_step_after_a_move_to_proxy_waits_for_the_router(capsys: pytest.CaptureFixture[str]) -> None:
    """It says "turn it on now" once, asks again until a server other than the Ainur answers, and passes on that answer."""
    rounds = iter([[], [], [ROUTER]])
    assert wait_for_router("eth0", [SVC], GATEWAY, 900.0, ask=lambda *_: next(rounds), moved=True) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "iluvatar: the Ainur no longer lend addresses (the netboot pod answers only the machines it boots): turn the router's "
        "DHCP server on now, with the settings of docs/layers/netboot.md#dhcp-modes. Waiting up to 15 min for it to answer on eth0.",
        "iluvatar: DHCP server 192.168.0.1 (MAC 00:11:22:33:44:55) answered a DHCPDISCOVER on eth0: offer 192.168.0.57",
    ]
    # On a pod restart with the router on: it passes on the first answer and says nothing else.
    assert wait_for_router("eth0", [SVC], GATEWAY, 900.0, ask=lambda *_: [OURS, ROUTER]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "iluvatar: DHCP server 192.168.0.1 (MAC 00:11:22:33:44:55) answered a DHCPDISCOVER on eth0: offer 192.168.0.57"
    ]
    # Issue 53: on a restart that is no move (the router's DHCP is on, busy pinging), a silent first round says only that
    # it has not answered yet, never "turn it on now".
    rounds = iter([[], [ROUTER]])
    assert wait_for_router("eth0", [SVC], GATEWAY, 900.0, ask=lambda *_: next(rounds)) == 0
    assert capsys.readouterr().out.splitlines() == [
        "iluvatar: the router's DHCP server (192.168.0.1) has not answered on eth0 yet (a router pinging new clients answers "
        "late); asking again for up to 15 min.",
        "iluvatar: DHCP server 192.168.0.1 (MAC 00:11:22:33:44:55) answered a DHCPDISCOVER on eth0: offer 192.168.0.57",
    ]
    # Past its bound with only the Ainur heard: it fails, saying what the LAN lacks and how to finish.
    assert wait_for_router("eth0", [SVC], GATEWAY, 0.0, ask=lambda *_: [OURS]) == 1
    assert capsys.readouterr().err.startswith(
        "iluvatar: the router's DHCP server (192.168.0.1) did not answer on the LAN within 0 min: nothing lends the household addresses now"
    )
    # Another server is never the router: the step fails at once, naming it, even beside the router's answer, and never
    # passes on it (the household would take its addresses from it, the router kept off).
    for found in ([STRANGER], [ROUTER, STRANGER]):
        assert wait_for_router("eth0", [SVC], GATEWAY, 900.0, ask=lambda *_, f=found: f) == 1
        got = capsys.readouterr()
        assert got.err.startswith(
            "iluvatar: a DHCP server other than the router's (192.168.0.1) answers on the LAN: 192.168.0.240 (MAC de:b8:00:00:00:01)"
        )
        assert got.err.endswith(dhcp_probe.WAIT_AGAIN + "\n")


def _offer(request: bytes, server: bytes, mac: bytes, xid: int, server_id: bool = True) -> bytes:
    """A server's answer to `request`, built field by field as RFC 2131 lays it out."""
    bootp = bytearray(request[14 + 20 + 8 :])
    bootp[0] = 2
    bootp[4:8] = struct.pack("!I", xid)
    bootp[16:20] = socket.inet_aton("192.168.0.57")
    options = bytes([53, 1, 2]) + (bytes([54, 4]) + socket.inet_aton("10.9.9.9") if server_id else b"") + bytes([255])
    bootp[240:] = options
    udp = struct.pack("!HHHH", 67, 68, 8 + len(bootp), 0) + bytes(bootp)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, server, b"\xff" * 4)
    return b"\xff" * 6 + mac + b"\x08\x00" + ip + udp


def test_a_discover_frame_is_what_rfc_2131_says() -> None:
    mac = bytes.fromhex("d83add100001")
    frame = discover_frame(mac, 0x01020304)
    assert frame[:14] == b"\xff" * 6 + mac + b"\x08\x00"
    ip = frame[14:34]
    assert (ip[9], ip[12:16], ip[16:20]) == (17, b"\0" * 4, b"\xff" * 4)
    assert sum(struct.unpack("!10H", ip)) % 0xFFFF == 0  # the header checksums to all ones
    assert struct.unpack("!HH", frame[34:38]) == (68, 67)
    bootp = frame[42:]
    assert (bootp[0], struct.unpack("!I", bootp[4:8])[0], struct.unpack("!H", bootp[10:12])[0], bootp[28:34]) == (1, 0x01020304, 0x8000, mac)
    assert bootp[236:243] == bytes.fromhex("63825363350101")
    assert len(bootp) == 300
    # Each retransmission says how long the client has been asking (RFC 2131 2, `secs`), as a real client's does.
    assert struct.unpack("!H", discover_frame(mac, 1, secs=7)[42 + 8 : 42 + 10])[0] == 7
    assert struct.unpack("!H", discover_frame(mac, 1, secs=10**6)[42 + 8 : 42 + 10])[0] == 0xFFFF


def test_an_answer_names_its_server_id_and_source_mac() -> None:
    request = discover_frame(bytes(6), 7)
    mac = bytes.fromhex("001122334455")
    got = parse_answer(_offer(request, socket.inet_aton("192.168.0.1"), mac, 7), 7)
    assert got == Answer(server="10.9.9.9", mac="00:11:22:33:44:55", kind="offer", offered="192.168.0.57")
    # No server identifier: the packet's source address.
    assert parse_answer(_offer(request, socket.inet_aton("192.168.0.1"), mac, 7, server_id=False), 7) == Answer(
        server="192.168.0.1", mac="00:11:22:33:44:55", kind="offer", offered="192.168.0.57"
    )
    # Another transaction's answer, and our own DISCOVER seen going out, are not answers.
    assert parse_answer(_offer(request, socket.inet_aton("192.168.0.1"), mac, 8), 7) is None
    assert parse_answer(request, 7) is None


def test_a_bare_address_is_refused_rather_than_spelt_out() -> None:
    with pytest.raises(TypeError, match=r"not the one string '192\.168\.0\.9'"):
        dhcp_probe.probe_script("dhcp", "192.168.0.9", "192.168.0.0/24", GATEWAY)


def _kubectl(tmp_path: Path, deployment: dict[str, Any] | None, fails: bool = False) -> str:
    """STAND-IN for `k3s kubectl -n netboot get deployment netboot --ignore-not-found -o json`: the object as JSON, nothing
    when there is none (kubectl's --ignore-not-found), or an error and status 1."""
    out = tmp_path / "deployment.json"
    out.write_text(json.dumps(deployment) if deployment is not None else "")
    tool = tmp_path / "kubectl"
    body = 'echo "The connection to the server was refused" >&2; exit 1' if fails else f"cat {out}"
    tool.write_text(f"#!/bin/sh\n{body}\n")
    tool.chmod(0o755)
    return str(tool)


def _running(mode: str, svc: str = SVC) -> dict[str, Any]:
    return {"spec": {"template": {"metadata": {"annotations": {"iluvatar/dhcp-mode": mode, "iluvatar/service-ip": svc}}}}}


def test_the_move_is_read_from_the_deployment_that_runs(tmp_path: Path) -> None:
    """Issue 53: the mode the LAN moves from is the running Deployment's, not the last outputs'."""
    assert dhcp_probe.deployed([_kubectl(tmp_path, _running("dhcp", MOVED))]) == ("dhcp", MOVED)
    assert dhcp_probe.deployed([_kubectl(tmp_path, None)]) is None
    assert dhcp_probe.deployed([_kubectl(tmp_path, {"spec": {"template": {"metadata": {}}}})]) == (None, None)
    with pytest.raises(RuntimeError, match="the netboot Deployment cannot be read from the Ainur's API"):
        dhcp_probe.deployed([_kubectl(tmp_path, None, fails=True)])
    moving = dhcp_probe.moving
    assert moving("proxy", ("dhcp", SVC), None) == ("dhcp", SVC)
    assert moving("proxy", ("proxy", SVC), None) == (None, SVC)
    # A Deployment made before the annotations: the outputs' mode and address.
    assert moving("proxy", (None, None), None, ("dhcp", MOVED)) == ("dhcp", MOVED)
    # The first bring-up in dhcp mode is a move from the router's lending, unless no other server ever lent (M2).
    assert moving("dhcp", None, "192.168.0.100-192.168.0.149") == ("proxy", None)
    assert moving("dhcp", None, "none") == (None, None)
    assert moving("proxy", None, None) == (None, None)


def test_a_retry_after_a_move_that_failed_before_the_deployment_still_sees_the_move(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 53: a dhcp->proxy `up` failed before the Deployment changed, and its outputs (proxy) were written anyway. The
    retry's probe reads the dhcp pod that still lends: with only the Ainur answering it passes, saying to leave the router
    off; with the router on it refuses (two lenders), where the outputs alone had it tell the user to turn the router on."""
    kubectl = _kubectl(tmp_path, _running("dhcp"))
    argv = ["--mode", "proxy", "--service-ip", SVC, "--router", GATEWAY, "--interface", "eth0", "--retry-seconds", "0"]
    monkeypatch.setattr(dhcp_probe, "collect", lambda *_, **__: [OURS])
    assert dhcp_probe.main([*argv, "--kubectl", kubectl, "--deployed-mode", "proxy"]) == 0
    assert "leave the router's DHCP off until this `up` says to turn it on" in capsys.readouterr().out
    # The outputs alone (what the steps read before): no move seen, and the Ainur's lending taken for a silent router.
    assert dhcp_probe.main(argv) == 1
    assert "Fix: turn the router's DHCP server on" in capsys.readouterr().err
    monkeypatch.setattr(dhcp_probe, "collect", lambda *_, **__: [OURS, ROUTER])
    assert dhcp_probe.main([*argv, "--kubectl", kubectl, "--deployed-mode", "proxy"]) == 1
    assert "already answers while the Ainur still lend" in capsys.readouterr().err
    # The step before the dhcp pod: a Deployment already lending passes at once; none yet (a first bring-up beside a
    # router that lent) waits for the router's DHCP to go off.
    off = ["--mode", "dhcp", "--service-ip", SVC, "--router", GATEWAY, "--interface", "eth0", "--wait-off-minutes", "0"]
    assert dhcp_probe.main([*off, "--kubectl", kubectl]) == 0
    assert "no router's DHCP to turn off" in capsys.readouterr().out
    (tmp_path / "first").mkdir()
    first = _kubectl(tmp_path / "first", None)
    assert dhcp_probe.main([*off, "--router-pool", "192.168.0.100-192.168.0.149", "--kubectl", first]) == 1
    assert "a DHCP server other than the Ainur's still answers on the LAN" in capsys.readouterr().err
    assert dhcp_probe.main([*off, "--router-pool", "none", "--kubectl", first]) == 0
    # The API unreadable: the step fails, saying so, and changes nothing.
    assert dhcp_probe.main([*argv, "--kubectl", _kubectl(tmp_path, None, fails=True)]) == 1
    assert "cannot be read from the Ainur's API" in capsys.readouterr().err


def test_the_step_after_a_move_to_proxy_holds_the_routers_offers_to_its_pool(capsys: pytest.CaptureFixture[str]) -> None:
    """On a move from dhcp the household keeps the Ainur's leases, which the router does not know: a router offering an
    address outside the pool the stack says it lends (apart from the Ainur's range, stacks.netboot_mode) fails the step,
    naming the offer and the pool; one offering inside it passes. On a restart that is no move, the pool is not asked."""
    inside = Answer(server=GATEWAY, mac="00:11:22:33:44:55", kind="offer", offered="192.168.0.210")
    assert wait_for_router("eth0", [SVC], GATEWAY, 900.0, ask=lambda *_: [ROUTER], moved=True, pool="192.168.0.200-192.168.0.250") == 1
    assert capsys.readouterr().err.startswith(
        "iluvatar: the router's DHCP server (192.168.0.1) offered 192.168.0.57, outside ainur.netboot.routerPool "
        "192.168.0.200-192.168.0.250: the household's devices keep the addresses the Ainur lent them until their leases end"
    )
    assert wait_for_router("eth0", [SVC], GATEWAY, 900.0, ask=lambda *_: [inside], moved=True, pool="192.168.0.200-192.168.0.250") == 0
    assert wait_for_router("eth0", [SVC], GATEWAY, 900.0, ask=lambda *_: [ROUTER], pool="192.168.0.200-192.168.0.250") == 0
    # The step's script carries the pool to the module it runs.
    assert "--router-pool 192.168.0.200-192.168.0.250 --wait-minutes 15" in dhcp_probe.wait_script(
        [SVC], "192.168.0.0/24", GATEWAY, before="dhcp", pool="192.168.0.200-192.168.0.250"
    )
