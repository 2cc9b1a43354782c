"""One DHCP server on the LAN at a time, against the real dnsmasq (tests.netns.lan).

- The probe `pulumi up` runs on the first valar before the netboot objects change (plans.netboot.dhcp_probe), run as the
  step runs it (its script, the module on python3's standard input), beside an ISP router (a second real dnsmasq
  lending addresses from the router's namespace, so with the router's MAC), beside the Ainur's own dnsmasq, and with
  no DHCP server at all.
- The fence: two Pis each run the generated dnsmasq.conf (the old netboot pod's dnsmasq keeps running through a k3s
  restart; its replacement starts on the other Pi), and the service address moves between them as kube-vip moves it.
  A household client's real DHCPDISCOVER, one per transaction id, counts the servers answering it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from plans import netboot
from plans.netboot import dhcp_probe
from plans.netboot.dhcp_probe import Answer
from stacks import load_stack_file, read_stack_file
from stacks.load import parse_stack
from tests.edit import HOMELAB
from tests.netns.lan import DHCP_PROBE, Lan, in_ns, lan, require_root

require_root()

SVC = "192.168.0.14"
PI, OTHER_PI, VALAR = "192.168.0.13", "192.168.0.12", "192.168.0.11"
ROUTER = "192.168.0.1"
STRANGER = "192.168.0.240"
# The ISP router's own pool, apart from the Ainur's network.dhcpRange (192.168.0.100-199).
ISP_POOL = ("192.168.0.200", "192.168.0.220")


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lan]:
    """The homelab's LAN (dhcp mode): the router lends nothing, the Pi at .13 holds the service address and serves."""
    with lan(load_stack_file(HOMELAB), tmp_path_factory.mktemp("fence"), f"ilv{os.getpid() % 10000}f") as network:
        yield network


def mac_of(ns: str) -> str:
    return in_ns(ns, "cat", "/sys/class/net/eth0/address").stdout.strip()


def answers(net: Lan, tries: int = 1, listen: float = 2.0) -> list[Answer]:
    """The servers answering one DHCPDISCOVER (one transaction id) of a household client, as the probe collects them."""
    code = DHCP_PROBE + f"import json\nprint(json.dumps([a.__dict__ for a in dhcp_probe.collect('eth0', tries={tries}, gap=1.0, listen={listen})]))\n"
    ns = net.client("02:00:5e:00:fe:01")
    got = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    return sorted(Answer(**a) for a in json.loads(got.stdout))


def start_isp(net: Lan) -> None:
    """The ISP router's DHCP server, left on: a second dnsmasq in the router's namespace (no DNS: the router's first
    dnsmasq answers that), lending its own pool, as a home router does."""
    conf = net.root / "isp.conf"
    conf.write_text(
        "\n".join(["port=0", "interface=eth0", "bind-interfaces", "log-dhcp", f"dhcp-range={ISP_POOL[0]},{ISP_POOL[1]},255.255.255.0,12h", ""])
    )
    net._dnsmasq("isp", net.router, conf, net.root / "isp.leases")


def run_step(
    net: Lan, ns: str, mode: str, ours: tuple[str, ...] = (SVC,), before: str | None = None, pool: str | None = None, retry: float = 0
) -> subprocess.CompletedProcess[str]:
    """The probe step as `pulumi up` runs it over SSH on a valar: its whole script, in the valar's namespace, naming the
    stack's LAN (the valar holding the Ainur's API address may be any of them). A proxy-mode probe asks once here (the
    program's asks again for a minute while the router is silent: test_a_proxy_mode_probe_waits_for_a_late_router)."""
    script = dhcp_probe.probe_script(mode, ours, str(net.stack.network.lan), str(net.stack.network.gateway), before, pool, retry)
    return subprocess.run(["ip", "netns", "exec", ns, "sh", "-c", script], capture_output=True, text=True, timeout=60, check=False)


def valar(net: Lan) -> str:
    """The first valar (manwe), with its inventory MAC: what the step's DISCOVER asks with."""
    ns = net.host("v", VALAR)
    in_ns(ns, "ip", "link", "set", "eth0", "address", net.stack.nodes[0].mac)
    return ns


# --- The probe ---------------------------------------------------------------------------------


def test_the_probe_runs_from_whichever_valar_holds_the_ainurs_api_address(net: Lan) -> None:
    """The step dials the valar holding the Ainur's API address, which moves between valar: the probe finds its way onto
    the LAN from the stack's LAN alone, on a valar that is not the first (another address, its own MAC)."""
    ns = net.host("v2", "192.168.0.15")
    in_ns(ns, "ip", "link", "set", "eth0", "address", "02:00:5e:00:fe:15")
    step = run_step(net, ns, "dhcp")
    assert step.returncode == 0, step.stderr
    # Its MAC is in no reservation: the Ainur offer it an address of network.dhcpRange (192.168.0.100-199).
    [line] = step.stdout.splitlines()
    said, offered = line.rsplit(" ", 1)
    assert said == f"iluvatar: DHCP server {SVC} (MAC {mac_of(net.pi)}) answered a DHCPDISCOVER on eth0: offer"
    assert 100 <= int(offered.removeprefix("192.168.0.")) <= 199, line


def test_the_probe_passes_when_only_the_ainur_answer(net: Lan) -> None:
    """dhcp mode, a live homelab: the Ainur's own dnsmasq answers from the service address (its server identifier),
    which is not another server."""
    got = answers(net)
    assert [(a.server, a.mac, a.kind) for a in got] == [(SVC, mac_of(net.pi), "offer")]
    step = run_step(net, valar(net), "dhcp")
    assert step.returncode == 0, step.stderr
    assert step.stdout.splitlines() == [f"iluvatar: DHCP server {SVC} (MAC {mac_of(net.pi)}) answered a DHCPDISCOVER on eth0: offer 192.168.0.11"]
    # A switch to proxy mode now, with the router's DHCP still off: the Ainur's answers would end and no one's begin.
    switch = run_step(net, valar(net), "proxy")
    assert switch.returncode == 1 and switch.stderr.startswith(f"iluvatar: the router's DHCP server ({ROUTER}) did not answer on the LAN."), (
        switch.stderr
    )


def test_the_probe_refuses_dhcp_mode_beside_an_isp_routers_dhcp(net: Lan) -> None:
    start_isp(net)
    try:
        step = run_step(net, valar(net), "dhcp")
        # The valar's own MAC asks: the router offers it an address of its pool.
        assert step.returncode == 1, step.stdout + step.stderr
        offered = next(line for line in step.stdout.splitlines() if line.startswith(f"iluvatar: DHCP server {ROUTER} "))
        assert offered.startswith(f"iluvatar: DHCP server {ROUTER} (MAC {mac_of(net.router)}) answered a DHCPDISCOVER on eth0: offer 192.168.0.2")
        refusal = step.stderr.strip()
        assert refusal.startswith(f"iluvatar: another DHCP server answers on the LAN: {ROUTER} (MAC {mac_of(net.router)}) offered 192.168.0.2"), (
            refusal
        )
        assert "turn that server's DHCP off" in refusal and "ainur.netboot.mode: proxy" in refusal
        # The router's offer checks the pool the stack says it lent: its own pool passes, another is named.
        assert run_step(net, valar(net), "dhcp", pool=f"{ISP_POOL[0]}-{ISP_POOL[1]}").stderr.strip().endswith("Nothing on the LAN was changed.")
        wrong = run_step(net, valar(net), "dhcp", pool="192.168.0.100-192.168.0.199").stderr.strip()
        assert (
            wrong.endswith(
                ", outside ainur.netboot.routerPool 192.168.0.100-192.168.0.199: it lends from another pool (or a second one, such "
                "as a guest range), whose leases the household holds too; copy its whole pool from its DHCP settings."
            )
            and " The router offered 192.168.0.2" in wrong
        ), wrong
        # proxy mode beside the same router: what that mode needs.
        assert run_step(net, valar(net), "proxy").returncode == 0
    finally:
        net.stop("isp")


def test_the_probe_refuses_proxy_mode_when_no_dhcp_server_answers(net: Lan) -> None:
    net.release_service_address()
    try:
        assert answers(net) == []
        step = run_step(net, valar(net), "proxy")
        assert step.returncode == 1
        assert step.stdout.strip() == "iluvatar: no DHCP server answered a DHCPDISCOVER on eth0"
        assert step.stderr.strip().startswith(
            f"iluvatar: the router's DHCP server ({ROUTER}) did not answer on the LAN. With ainur.netboot.mode: proxy"
        )
        # dhcp mode on an empty LAN: the Ainur will be its only server.
        assert run_step(net, valar(net), "dhcp").returncode == 0
    finally:
        net.hold_service_address()


def test_a_move_from_dhcp_to_proxy_turns_the_router_on_only_once_the_ainur_stop_lending(net: Lan) -> None:
    """dhcp -> proxy in the order that never has two servers lending: the probe before passes with the Ainur alone (the
    router's DHCP still off); the netboot pod restarts in proxy mode (the Ainur's dnsmasq with the proxy config); then
    the step after says "turn it on now", and passes on the router's first answer."""
    before = run_step(net, valar(net), "proxy", before="dhcp")
    assert before.returncode == 0, before.stderr
    assert before.stdout.splitlines() == [
        f"iluvatar: DHCP server {SVC} (MAC {mac_of(net.pi)}) answered a DHCPDISCOVER on eth0: offer 192.168.0.11",
        "iluvatar: only the Ainur lend on the LAN, as they must until the netboot pod restarts in proxy mode; leave the "
        "router's DHCP off until this `up` says to turn it on (the step after the netboot pod's restart). If the `up` "
        "fails or stops before saying so, once the netboot Deployment has begun to change, turn the router's DHCP on then.",
    ]
    raw = dict(read_stack_file(HOMELAB).config)
    raw["iluvatar:ainur"] = {**raw["iluvatar:ainur"], "netboot": {"mode": "proxy"}}
    net.start_dnsmasq(parse_stack(raw))
    script = dhcp_probe.wait_script([SVC], str(net.stack.network.lan), ROUTER, before="dhcp")
    step = subprocess.Popen(["ip", "netns", "exec", valar(net), "sh", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert step.stdout is not None
        # Its word to the user comes once a round heard no one but the Ainur (the proxy-mode Ainur answer no valar).
        assert step.stdout.readline().startswith(
            "iluvatar: the Ainur no longer lend addresses (the netboot pod answers only the machines it boots): turn the router's DHCP server on now"
        )
        start_isp(net)
        out, err = step.communicate(timeout=60)
        assert step.returncode == 0, err
        assert out.startswith(f"iluvatar: DHCP server {ROUTER} (MAC {mac_of(net.router)}) answered a DHCPDISCOVER on eth0: offer 192.168.0.2"), out
    finally:
        if step.poll() is None:
            step.kill()
            step.wait()
        net.stop("isp")
        net.start_dnsmasq()


def start_stranger(net: Lan) -> str:
    """A DHCP server that is not the router, at 192.168.0.240 (a mesh node left in router mode, a NAS with DHCP on, or an
    attacker), lending part of the LAN without a ping: its namespace."""
    ns = net.host("x", STRANGER)
    conf = net.root / "stranger.conf"
    conf.write_text(
        "\n".join(
            [
                "port=0",
                "interface=eth0",
                "bind-interfaces",
                "log-dhcp",
                "dhcp-authoritative",
                "no-ping",
                "dhcp-range=192.168.0.150,192.168.0.160,255.255.255.0,12h",
                "",
            ]
        )
    )
    net._dnsmasq("stranger", ns, conf, net.root / "stranger.leases")
    return ns


def test_proxy_mode_takes_only_the_router_for_the_router(net: Lan) -> None:
    """Beside the router's DHCP, a second server: in proxy mode the household would take its address, gateway and DNS
    from whichever answers first. The probe refuses it, naming its address and MAC, whether the router answers or not,
    and on a move from dhcp too; the wait step after a move refuses it rather than pass on it."""
    ns = start_stranger(net)
    start_isp(net)
    # It offers an address of its range .150-.160, whichever its hash of the asking MAC picks.
    stranger = f"{STRANGER} (MAC {mac_of(ns)}) offered 192.168.0.1"
    try:
        step = run_step(net, valar(net), "proxy")
        assert step.returncode == 1
        assert step.stderr.startswith(f"iluvatar: a DHCP server other than the router's ({ROUTER}) answers on the LAN: {stranger}"), step.stderr
        assert "say so with ainur.netboot.routerAddress. Nothing on the LAN was changed." in step.stderr
        net.stop("isp")
        for before in (None, "dhcp"):
            step = run_step(net, valar(net), "proxy", before=before)
            assert step.returncode == 1 and step.stderr.startswith(
                f"iluvatar: a DHCP server other than the router's ({ROUTER}) answers on the LAN: {stranger}"
            )
        wait = subprocess.run(
            ["ip", "netns", "exec", valar(net), "sh", "-c", dhcp_probe.wait_script([SVC], str(net.stack.network.lan), ROUTER)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert wait.returncode == 1, wait.stdout
        [line] = wait.stdout.splitlines()
        assert line.startswith(f"iluvatar: DHCP server {STRANGER} (MAC {mac_of(ns)}) answered a DHCPDISCOVER on eth0: offer 192.168.0.1"), line
        assert wait.stderr.startswith(f"iluvatar: a DHCP server other than the router's ({ROUTER}) answers on the LAN: {stranger}")
        assert wait.stderr.strip().endswith(dhcp_probe.WAIT_AGAIN.strip())
    finally:
        net.stop("isp")
        net.stop("stranger")


def test_a_proxy_mode_probe_waits_for_a_late_router(net: Lan) -> None:
    """A router busy pinging new clients may miss the probe's first round: the step, as the program runs it, says it
    asks again, and passes once the router answers (an `up` re-running the probe with nothing changed never fails on a
    busy router). The router starts here only once the step has said so: the wait is on its word, not on a clock."""
    script = dhcp_probe.probe_script("proxy", [SVC], str(net.stack.network.lan), ROUTER)
    step = subprocess.Popen(["ip", "netns", "exec", valar(net), "sh", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert step.stdout is not None
        assert step.stdout.readline() == (
            f"iluvatar: the router's DHCP server ({ROUTER}) has not answered on eth0 yet (a router pinging new clients "
            "answers late); asking again for up to 60 s\n"
        )
        start_isp(net)
        out, err = step.communicate(timeout=90)
        assert step.returncode == 0, err
        assert f"iluvatar: DHCP server {ROUTER} (MAC {mac_of(net.router)}) answered a DHCPDISCOVER on eth0: offer 192.168.0.2" in out, out
    finally:
        if step.poll() is None:
            step.kill()
            step.wait()
        net.stop("isp")


def test_a_move_from_proxy_to_dhcp_asks_the_router_off_right_before_the_pod(net: Lan) -> None:
    """proxy -> dhcp with the router lending, as the household needs until the Ainur are about to: the probe before
    passes on the router's answer, and the step right before the pod says "turn it off now" and passes once the router
    is silent. (The lab's Ainur dnsmasq runs dhcp mode all along; its answers are the Ainur's own.)"""
    start_isp(net)
    try:
        probe = run_step(net, valar(net), "dhcp", before="proxy", pool=f"{ISP_POOL[0]}-{ISP_POOL[1]}")
        assert probe.returncode == 0, probe.stderr
        assert probe.stdout.splitlines()[-1].startswith("iluvatar: the router lends until the Ainur take over; leave its DHCP on"), probe.stdout
        script = dhcp_probe.off_script([SVC], str(net.stack.network.lan), ROUTER)
        step = subprocess.Popen(["ip", "netns", "exec", valar(net), "sh", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert step.stdout is not None
            # Told before the first round, then the router named as it answers.
            assert step.stdout.readline().startswith("iluvatar: the Ainur are ready to lend: turn the router's DHCP server off now.")
            assert step.stdout.readline().startswith(f"iluvatar: still answering on eth0: {ROUTER} (MAC {mac_of(net.router)}) offered 192.168.0.2")
            net.stop("isp")
            # Off only after PROXY_RETRY_SECONDS (60 s) of silence, as long as a busy router may be silent with its DHCP on.
            out, err = step.communicate(timeout=150)
            assert step.returncode == 0, err
            last = out.splitlines()[-1]
            assert last.startswith("iluvatar: no DHCP server but the Ainur's has answered on eth0 for 6"), last
            assert last.endswith(" s: the netboot pod restarts in dhcp mode now"), last
        finally:
            if step.poll() is None:
                step.kill()
                step.wait()
    finally:
        net.stop("isp")


def test_a_move_from_dhcp_to_proxy_is_refused_while_the_router_lends(net: Lan) -> None:
    """The router's DHCP on before the Ainur stop lending: two servers lend one pool and the authoritative Ainur NAK the
    router's clients until the pod restarts, or for good if the `up` stops first. Refused, nothing changed, with the fix:
    off now, on when the `up` says."""
    start_isp(net)
    try:
        step = run_step(net, valar(net), "proxy", before="dhcp")
        assert step.returncode == 1, step.stdout
        assert step.stderr.startswith(f"iluvatar: the router's DHCP ({ROUTER} (MAC {mac_of(net.router)}) offered 192.168.0.2"), step.stderr
        assert "Fix: turn the router's DHCP server off now, and run `pulumi up` again" in step.stderr
    finally:
        net.stop("isp")


def test_a_moved_service_address_leaves_the_running_dnsmasq_the_ainurs_own(net: Lan) -> None:
    """ainur.serviceIp moves .14 -> .17 in dhcp mode: the running dnsmasq answers from .14 until the netboot objects change.
    Counted as the Ainur's (the step names the stack's address, then the last deployment's), it is no foreign server, and
    in proxy mode no router; counted as another server, the first version refused the move and offered proxy mode, which
    it then passed on the Ainur's own answer and left the LAN with no DHCP server."""
    moved = ("192.168.0.17", SVC)
    dhcp = run_step(net, valar(net), "dhcp", moved)
    assert dhcp.returncode == 0, dhcp.stderr
    proxy = run_step(net, valar(net), "proxy", moved)
    assert proxy.returncode == 1 and proxy.stderr.startswith(f"iluvatar: the router's DHCP server ({ROUTER}) did not answer on the LAN."), (
        proxy.stderr
    )
    # Knowing the new address alone, the step takes the running dnsmasq for a stranger: never for the router, which it
    # knows by its address.
    alone = run_step(net, valar(net), "proxy", moved[:1])
    assert alone.returncode == 1 and alone.stderr.startswith(
        f"iluvatar: a DHCP server other than the router's ({ROUTER}) answers on the LAN: {SVC} (MAC {mac_of(net.pi)}) offered 192.168.0.11."
    ), alone.stderr


# --- The fence: two Pis, the service address moved -------------------------------------------


@pytest.fixture
def second_pi(net: Lan) -> Iterator[str]:
    """Another Pi running the same generated dnsmasq.conf, not holding the service address: the replacement netboot
    pod, started while the first Pi's dnsmasq still runs (a k3s restart keeps containers)."""
    ns = net.host("p2", OTHER_PI)
    root = net.root / "p2"
    (root / "leases").mkdir(parents=True, exist_ok=True)
    conf = root / "dnsmasq.conf"
    conf.write_text(netboot.dnsmasq_conf(net.stack, tftp_root=str(net.root / "tftp"), lease_file=str(root / "leases" / "dnsmasq.leases")))
    net._dnsmasq("dnsmasq-p2", ns, conf, None)
    try:
        yield ns
    finally:
        net.stop("dnsmasq-p2")
        in_ns(ns, "ip", "addr", "del", f"{SVC}/32", "dev", "eth0", check=False)
        net.hold_service_address()


def move(net: Lan, to: str) -> None:
    """kube-vip's hand-over: the old leader's OnStoppedLeading deletes the address, the new one's OnStartedLeading adds
    it and announces it (gratuitous ARP)."""
    in_ns(to, "ip", "addr", "replace", f"{SVC}/32", "dev", "eth0")
    net.announce(to, SVC)


def test_exactly_the_pi_holding_the_service_address_answers_dhcp(net: Lan, second_pi: str) -> None:
    first, second = mac_of(net.pi), mac_of(second_pi)
    assert [a.mac for a in answers(net)] == [first]
    for _ in range(3):
        # Released, and asked at once: the Pi that lost the address answers no DISCOVER after (dnsmasq checks the
        # arrival interface's addresses on each packet: src/dhcp.c, dhcp_packet and check_listen_addrs).
        net.release_service_address()
        assert answers(net) == []
        move(net, second_pi)
        got = answers(net)
        assert [(a.server, a.mac) for a in got] == [(SVC, second)]
        in_ns(second_pi, "ip", "addr", "del", f"{SVC}/32", "dev", "eth0")
        assert answers(net) == []
        move(net, net.pi)
        assert [(a.server, a.mac) for a in answers(net)] == [(SVC, first)]


def test_two_pis_holding_the_address_is_what_two_answers_look_like(net: Lan, second_pi: str) -> None:
    """The deliberate break, what the fence stands on: were the address on both Pis (a kube-vip that died without
    deleting it), both dnsmasqs would answer the same DISCOVER; the probe names that case."""
    move(net, second_pi)
    got = answers(net)
    assert sorted(a.mac for a in got) == sorted([mac_of(net.pi), mac_of(second_pi)])
    refusal = dhcp_probe.judge("dhcp", [SVC], got)
    assert refusal is not None and refusal.startswith(f"iluvatar: two DHCP servers answer from the Ainur's service address {SVC}, from MACs ")


def test_a_dnsmasq_listening_on_its_interface_would_answer_without_the_address(net: Lan, second_pi: str) -> None:
    """The other deliberate break: dnsmasq told `interface=eth0` rather than the service address answers DHCP on the
    interface whatever its addresses, so the Pi that lost the address would keep answering: the fence is the
    listen-address (plans.netboot.dnsmasq)."""
    conf = net.root / "p2" / "dnsmasq.conf"
    text = conf.read_text()
    assert f"listen-address={SVC}\n" in text
    conf.write_text(text.replace(f"listen-address={SVC}\n", "interface=eth0\n"))
    net.stop("dnsmasq-p2")
    net._dnsmasq("dnsmasq-p2", second_pi, conf, None)
    got = answers(net)
    assert sorted(a.mac for a in got) == sorted([mac_of(net.pi), mac_of(second_pi)])
    # It answers with its own address as the server: no longer the Ainur's.
    assert sorted(a.server for a in got) == sorted([SVC, OTHER_PI])


def test_the_probe_module_runs_on_its_own() -> None:
    """What the step sends the valar is the module alone: it imports nothing of the project."""
    source = Path(dhcp_probe.__file__).read_text()
    imports = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
    assert imports == [
        "from __future__ import annotations",
        "import argparse",
        "import fcntl",
        "import ipaddress",
        "import json",
        "import os",
        "import select",
        "import shlex",
        "import socket",
        "import struct",
        "import subprocess",
        "import sys",
        "import time",
        "from collections.abc import Callable, Sequence",
        "from dataclasses import dataclass",
    ]


def test_a_retry_after_a_move_to_proxy_that_failed_early_reads_the_pod_that_runs(net: Lan, tmp_path: Path) -> None:
    """Issue 53: a dhcp->proxy `up` failed before the netboot Deployment changed, and the engine wrote its outputs (proxy)
    anyway. The old dhcp-mode dnsmasq still lends (the lab's, real). Read from the outputs alone, the retry's probe took it
    for a silent router and told the user to turn the router's DHCP on: two lenders. Reading the running Deployment (a
    kubectl stand-in answering its template's annotations), it sees the move: it passes with the Ainur alone lending,
    and refuses while the router's DHCP answers too."""
    running = {"spec": {"template": {"metadata": {"annotations": {"iluvatar/dhcp-mode": "dhcp", "iluvatar/service-ip": SVC}}}}}
    kubectl = tmp_path / "kubectl"
    kubectl.write_text(f"#!/bin/sh\necho '{json.dumps(running)}'\n")
    kubectl.chmod(0o755)
    lan, router = str(net.stack.network.lan), str(net.stack.network.gateway)

    def step() -> subprocess.CompletedProcess[str]:
        script = dhcp_probe.probe_script("proxy", (SVC,), lan, router, None, None, 0, kubectl=str(kubectl), deployed_mode="proxy", deployed_ip=SVC)
        return subprocess.run(["ip", "netns", "exec", valar(net), "sh", "-c", script], capture_output=True, text=True, timeout=60, check=False)

    blind = run_step(net, valar(net), "proxy")
    assert blind.returncode == 1 and "Fix: turn the router's DHCP server on" in blind.stderr, blind.stderr
    seen = step()
    assert seen.returncode == 0, seen.stderr
    assert "leave the router's DHCP off until this `up` says to turn it on" in seen.stdout
    start_isp(net)
    try:
        again = step()
        assert again.returncode == 1, again.stdout
        assert "already answers while the Ainur still lend" in again.stderr
    finally:
        net.stop("isp")
