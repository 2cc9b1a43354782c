"""Remote access end to end, flavour headscale, with the real programs in network namespaces (tests.netns.tailnet).

Headscale v0.27.1 (built from its module) serves the rendered config and policy on the Pi; the program's enrolment
script asks its CLI for the router's key; containerboot (Tailscale v1.102.3) runs the subnet router with the
environment the program gives the pod; a phone on another network, behind its own NAT, runs tailscaled with a key of
its user's. Then, as the phone: an internal name resolves through the split DNS (the Ainur's own dnsmasq config
answers it, over the tunnel), the internal app answers over the tunnel with its certificate for that name; an address
the router advertises but the policy does not grant the phone's group (Arda's API) answers on the LAN and not to the
phone, nor does a LAN address nobody advertises; signed in as a member of the admins' group instead, the phone reaches
that API; and with the route withdrawn, nothing answers.

The lab runs the shipped homelab's own remote access (Pulumi.homelab.yaml: the family reaches the Minecraft server, the
admins the MQTT broker too). The raw-port apps stand at their addresses as in tests/netns/test_raw_ports.py (a namespace
holding the address, nftables for the Service's source ranges as Cilium checks them): the family's phone resolves
the Minecraft server's name through the split DNS and reaches its Java port over TCP and its Bedrock port over UDP,
not the broker; an admin's reaches the broker by its name, the real mosquitto (Debian's), with the real mosquitto_sub.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from plans import ports as ports_plan
from plans import remote_access as plan
from stacks import StackConfig
from tests.netns.lan import in_ns, require_root
from tests.netns.raw_ports import CLIENT_CODE, SERVER, lb_rules
from tests.netns.tailnet import (
    HOME_WAN,
    ROUTER_CA,
    ROUTER_STATE,
    Tailnet,
    headscale_files,
    headscale_script,
    json_of,
    phone_script,
    router_script,
    tailnet,
    wait_for,
)
from tests.remote_stacks import SHIPPED, remote_stack
from tests.tools import require

require_root()

APP = "grafana.iluvatar.home.arpa"
GREETING = "grafana, over the tunnel"
# containerboot's tailscaled socket, in the router pod's own /tmp.
ROUTER_SOCKET = "--socket=/tmp/tailscaled.sock"
# The app (envoy-internal's address, its certificate for the app's name) and Arda's API server (any answer will do).
SERVERS = r"""
import http.server, socket, ssl, sys, threading
app, api, cert, key, log = sys.argv[1:6]
class App(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with open(log, "a") as f:
            f.write(self.client_address[0] + "\n")
        body = b"GREETING"
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
server = http.server.ThreadingHTTPServer((app, 443), App)
tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); tls.load_cert_chain(cert, key)
server.socket = tls.wrap_socket(server.socket, server_side=True)
api_socket = socket.create_server((api, 6443))
def answer():
    while True:
        conn, _ = api_socket.accept(); conn.sendall(b"kube-apiserver stand-in\n"); conn.close()
threading.Thread(target=answer, daemon=True).start()
server.serve_forever()
""".replace("GREETING", GREETING)


@dataclass
class Lab:
    net: Tailnet
    stack: StackConfig
    phone_state: Path
    app_log: Path
    # Headscale's CLI as the program's steps reach it (`kubectl exec` into its pod is `nsenter` here).
    cli: str

    def hs(self, *args: str) -> Any:
        """Headscale's CLI in its pod, as `kubectl exec` runs it; its JSON answer."""
        return json_of(self.net.exec_in("headscale", "headscale", *args, "--output", "json").stdout)

    def phone(self, *args: str, timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.net.exec_in("phone", *args, timeout=timeout, check=check)

    def tailscale(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.phone("tailscale", f"--socket={self.phone_state / 'tailscaled.sock'}", *args)

    def phone_routes(self) -> str:
        # tailscaled's routes on Linux: its own table (52).
        return in_ns(self.net.phone, "ip", "route", "show", "table", "52", check=False).stdout

    def curl(self, *args: str, seconds: int = 4) -> subprocess.CompletedProcess[str]:
        return self.phone(
            "curl", "-sS", "--connect-timeout", str(seconds), "--max-time", str(seconds + 2), "--cacert", str(self.net.ca), *args, check=False
        )


def _router_env(stack: StackConfig, key: str) -> dict[str, str]:
    """The pod's environment as the kubelet gives it (valueFrom resolved), but the state Secret (an API server's) as a folder."""
    env: dict[str, str] = {}
    for var in plan.router_env(stack):
        if "value" in var:
            env[var["name"]] = var["value"]
        elif var["name"] == "TS_AUTHKEY":
            env["TS_AUTHKEY"] = key
        else:
            env[var["name"]] = {"POD_NAME": "subnet-router-7d9f", "POD_UID": "0a1b2c3d-0000-4000-8000-000000000001"}[var["name"]]
    del env["TS_KUBE_SECRET"]
    return {**env, "TS_STATE_DIR": ROUTER_STATE, "SSL_CERT_FILE": ROUTER_CA}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    stack = remote_stack({**SHIPPED, "headscale": {**SHIPPED["headscale"], "derp": "embedded"}})
    root = tmp_path_factory.mktemp("remote")
    root.chmod(0o755)
    with tailnet(stack, root, f"ilv{os.getpid() % 10000}t") as net:
        ca_env = {"SSL_CERT_FILE": str(net.ca)}
        # The app and Arda's API on the LAN.
        app_log = root / "app-clients.log"
        cert = net.root / "pki" / APP
        net.procs["servers"] = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                net.arda,
                sys.executable,
                "-c",
                SERVERS,
                "192.168.0.238",
                "192.168.0.20",
                f"{cert}.crt",
                f"{cert}.key",
                str(app_log),
            ]
        )
        # Headscale on the Pi, on the rendered ConfigMap.
        files = root / "headscale-files"
        headscale_files(stack, files, net.root / "pki")
        state = root / "headscale-state"
        state.mkdir()
        net.start("headscale", net.home.pi, headscale_script(root, files, state), env=ca_env)
        # The enrolment, as the program runs it on the first valar (`kubectl exec` into the pod is `nsenter` here).
        target = net.wait_started("headscale", "headscale")
        exec_prefix = f"nsenter --target={target} --mount --net headscale"
        made = subprocess.run(
            ["sh", "-c", plan.users_script(stack, exec_prefix, wait_seconds=60)],
            capture_output=True,
            text=True,
            timeout=120,
            env={"PATH": f"{net.bin}:/usr/sbin:/usr/bin:/sbin:/bin"},
            check=False,
        )
        assert (made.returncode, made.stdout) == (0, ""), f"making the users failed: {made.stderr}\nheadscale:\n{net.log('headscale')}"
        enrolled = subprocess.run(
            ["sh", "-c", plan.enroll_script(exec_prefix, wait_seconds=60)],
            capture_output=True,
            text=True,
            timeout=120,
            env={"PATH": f"{net.bin}:/usr/sbin:/usr/bin:/sbin:/bin"},
            check=False,
        )
        assert enrolled.returncode == 0, f"enrolment failed: {enrolled.stderr}\nheadscale:\n{net.log('headscale')}"
        key = enrolled.stdout.strip()
        assert key and "\n" not in key, f"the enrolment printed more than a key: {enrolled.stdout!r}"
        # The subnet router: containerboot with the pod's environment, Headscale's name as its hostAliases say.
        router_state = root / "router-state"
        router_state.mkdir()
        host = plan.headscale_host(stack)
        net.start(
            "router", net.home.pi, router_script(root, net.bin, net.ca, router_state, [(net.headscale_ip, [host])]), env=_router_env(stack, key)
        )
        net.wait_started("router", "containerboot")
        # The phone, away: tailscaled, then `tailscale up` with a key of bob's (a member of example:family).
        phone_state = root / "phone-state"
        phone_state.mkdir()
        net.start("phone", net.phone, phone_script(root, phone_state, [(HOME_WAN, host)]), env=ca_env)
        net.wait_started("phone", "tailscaled")
        lab = Lab(net, stack, phone_state, app_log, exec_prefix)
        wait_for("the phone's tailscaled socket", lambda: (phone_state / "tailscaled.sock").exists(), 30, lambda: net.log("phone"))
        _join(lab, "bob")
        yield lab


def _join(lab: Lab, user: str) -> None:
    """The phone joins as `user` (a Headscale user the enrolment made), as the docs' laptop command does."""
    users = lab.hs("users", "list", "--name", user)
    key = lab.hs("preauthkeys", "create", "--user", str(users[0]["id"]), "--expiration", "1h")["key"]
    up = lab.phone(
        "tailscale",
        f"--socket={lab.phone_state / 'tailscaled.sock'}",
        "up",
        f"--login-server={plan.headscale_url(lab.stack)}",
        f"--auth-key={key}",
        "--accept-routes",
        "--hostname=phone",
        timeout=90,
        check=False,
    )
    assert up.returncode == 0, f"tailscale up as {user}: {up.stderr}\nphone:\n{lab.net.log('phone')}\nheadscale:\n{lab.net.log('headscale')}"


def _covers(block: str, ip: str) -> bool:
    """Whether a filter rule's address (`*`, an address, a CIDR or a range `a-b`, tailcfg/tailcfg.go:1716-1750) holds ip."""
    if block == "*":
        return True
    if "-" in block:
        first, last, at = (ipaddress.ip_address(a) for a in (*block.split("-"), ip))
        return first.version == at.version and int(first) <= int(at) <= int(last)
    return ipaddress.ip_address(ip) in ipaddress.ip_network(block, strict=False)


def _router_admits_the_phone(lab: Lab, dst: str, port: int) -> bool:
    """Whether the subnet router now takes the phone's packets to dst:port.

    A route on the phone says only that the phone's map is new. The router gets its own map from Headscale on its
    own time; until it holds the phone's current node key among its peers, WireGuard drops the phone's handshake (and
    retries only after 5 s, longer than a connect timeout), and until its packet filter names one of the phone's
    addresses, the router drops what gets through. Both are in the router's map (`tailscale debug netmap`, the
    LocalAPI's current-netmap: ipn/localapi/debug.go:251)."""
    me = json_of(lab.tailscale("status", "--json").stdout)["Self"]
    phone_ips = [a.split("/")[0] for a in me.get("TailscaleIPs") or []]
    netmap = json_of(lab.net.exec_in("router", "tailscale", ROUTER_SOCKET, "debug", "netmap", check=False).stdout) or {}
    if me["PublicKey"] not in {peer.get("Key") for peer in netmap.get("Peers") or []}:
        return False
    return any(
        any(_covers(src, ip) for src in rule.get("SrcIPs") or [] for ip in phone_ips)
        and any(_covers(d["IP"], dst) and d["Ports"]["First"] <= port <= d["Ports"]["Last"] for d in rule.get("DstPorts") or [])
        for rule in netmap.get("PacketFilterRules") or []
    )


def _tunnel_to(lab: Lab, dst: str) -> bool:
    """Whether the phone's packets to dst now go through a WireGuard session with the router that routes it.

    A TCP connection's first packet waits for more than the maps: the phone's engine puts the router's current key,
    with dst among its allowed addresses, in its WireGuard config, and then needs a completed handshake with the
    router (over DERP or a direct path). A handshake initiation that is lost or comes before the router took the
    phone's key is sent again only after WireGuard's 5 s rekey timeout (device/constants.go:19, device/timers.go:99-101
    of the wireguard-go v1.102.3 builds with), longer than a connect timeout. A TSMP ping to dst needs exactly that:
    the phone's engine sends it to the peer that routes dst (wgengine/userspace.go:1254-1277 at v1.102.3, peerForIP)
    through WireGuard, and the router's engine answers it before its packet filter and its OS
    (net/tstun/wrap.go:1102-1106). One ping's --timeout bounds one attempt; the wait is for the pong."""
    ping = lab.phone(
        "tailscale", f"--socket={lab.phone_state / 'tailscaled.sock'}", "ping", "--tsmp", "-c", "1", "--timeout", "10s", dst, check=False
    )
    return ping.stdout.startswith(f"pong from {plan.ROUTER_HOSTNAME}")


def _approved(lab: Lab) -> list[str]:
    nodes = lab.hs("nodes", "list") or []
    router = [n for n in nodes if n.get("given_name", n.get("name")) == plan.ROUTER_HOSTNAME or n.get("name") == plan.ROUTER_HOSTNAME]
    return sorted(router[0].get("approved_routes") or []) if router else []


def test_headscale_approves_exactly_the_advertised_routes_by_the_policy(lab: Lab) -> None:
    want = sorted(str(r) for r in plan.routes(lab.stack))
    wait_for(
        "the router's routes approved", lambda: _approved(lab) == want, 90, lambda: f"{lab.hs('nodes', 'list')}\nrouter:\n{lab.net.log('router')}"
    )


# kubectl as the router's step calls it, for what the lab has no API server for: the router's state Secret names the node
# in $W/device (containerboot writes device_id there once logged in; this lab's router keeps its state in a folder),
# and its rollout is done (the router runs). Anything else (a key written, a restart) is not expected here.
_LAB_KUBECTL = """#!/bin/sh
W=$(dirname "$0")
shift 2
case "$1 $2" in
  "get secret") printf %s "$(cat "$W/device")" | base64 -w0;;
  "rollout status") exit 0;;
  "get secrets") echo "secret/$3";;
  *) echo "unexpected: kubectl $*" >&2; exit 1;;
esac
"""


def _router_step(lab: Lab, w: Path) -> subprocess.CompletedProcess[str]:
    script = plan.router_script(lab.stack, lab.cli, str(w / "kubectl"), wait_seconds=5)
    env = {"PATH": f"{lab.net.bin}:/usr/sbin:/usr/bin:/sbin:/bin"}
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=120, env=env, check=False)


def test_the_router_step_reads_the_real_headscales_routes_approved_as_advertised(lab: Lab, tmp_path: Path) -> None:
    # The step's check, with Headscale v0.27.1's own CLI and JSON (nodes list) and the real router's routes: the router
    # enrolled, nothing minted, its advertised routes the stack's and each approved by the policy's autoApprovers.
    want = sorted(str(r) for r in plan.routes(lab.stack))
    wait_for("the router's routes approved", lambda: _approved(lab) == want, 90, lambda: str(lab.hs("nodes", "list")))
    node = next(n for n in lab.hs("nodes", "list") if n.get("name") == plan.ROUTER_HOSTNAME)
    (tmp_path / "kubectl").write_text(_LAB_KUBECTL)
    (tmp_path / "kubectl").chmod(0o755)
    (tmp_path / "device").write_text(str(node["id"]))
    keys = len(lab.hs("preauthkeys", "list", "--user", str(node["user"]["id"])) or [])
    done = _router_step(lab, tmp_path)
    routes = " ".join(str(r) for r in plan.routes(lab.stack))
    assert (done.returncode, done.stdout) == (0, f"subnet router: node {node['id']}, its routes advertised and approved: {routes}\n"), done.stderr
    assert len(lab.hs("preauthkeys", "list", "--user", str(node["user"]["id"])) or []) == keys
    assert "deleting" not in done.stderr and "unexpected" not in done.stderr
    # What the step's clean-up reads of the real listing (`nodes list --user iluvatar-router`): the router's line carries
    # its hostname before its user and the tag its key gave it (forced_tags, hscontrol/state/state.go:1067), as the
    # clean-up matches them. Online and the current node, it stays (nothing printed); with those two exclusions taken
    # away, the same filter picks it, so an earlier, offline router node would be deleted, and a phone of that user not.
    state = plan.router_state_secret(lab.stack)
    lines = plan._node_lines(state)
    unfiltered = [line.replace("| grep -vF '\"online\":true' ", "").replace('grep -vx "$node"', "cat") for line in lines]
    assert unfiltered != lines

    def read(node_lines: list[str]) -> subprocess.CompletedProcess[str]:
        script = "\n".join([f'hs() {{ {lab.cli} "$@"; }}', f'kc() {{ {tmp_path / "kubectl"} -n x "$@"; }}', *node_lines, "find_node", "stale_nodes"])
        env = {"PATH": f"{lab.net.bin}:/usr/sbin:/usr/bin:/sbin:/bin"}
        return subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=60, env=env, check=False)

    assert (read(lines).returncode, read(lines).stdout) == (0, ""), read(lines).stderr
    seen = read(unfiltered)
    assert (seen.returncode, seen.stdout) == (0, f"{node['id']}\n"), seen.stderr
    # A router node that lost its name (Headscale names a node only when it makes it) takes it back, with the real
    # CLI's `nodes rename` (cmd/headscale/cli/nodes.go:343-385).
    lab.hs("nodes", "rename", "--identifier", str(node["id"]), "iluvatar-router-x1")
    renamed = _router_step(lab, tmp_path)
    assert renamed.returncode == 0 and "keeps its name" not in renamed.stderr, renamed.stderr
    assert next(n for n in lab.hs("nodes", "list") if n["id"] == node["id"])["given_name"] == plan.ROUTER_HOSTNAME
    # One route approved no more (a day-2 change the policy left out): the step fails, naming it and the fix.
    first, rest = want[0], want[1:]
    lab.hs("nodes", "approve-routes", "--identifier", str(node["id"]), "--routes", ",".join(rest))
    try:
        refused = _router_step(lab, tmp_path)
        assert refused.returncode == 1, refused.stdout
        assert f"iluvatar: Headscale has not approved the route(s) {first} the subnet router (node {node['id']}) advertises" in refused.stderr
        assert f"nodes approve-routes --identifier {node['id']}" in refused.stderr
    finally:
        lab.hs("nodes", "approve-routes", "--identifier", str(node["id"]), "--routes", ",".join(want))


def test_the_routers_readiness_probe_answers_once_it_is_on_the_tailnet(lab: Lab) -> None:
    # The probe the Deployment declares, run as the kubelet runs an httpGet probe (a GET of the pod's address, here the
    # Pi's loopback: containerboot binds TS_LOCAL_ADDR_PORT on every address), against the real containerboot.
    router = next(m for m in plan.router_manifests(lab.stack) if m["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]
    probe = router["readinessProbe"]["httpGet"]
    port = next(p["containerPort"] for p in router["ports"] if p["name"] == probe["port"])
    url = f"http://127.0.0.1:{port}{probe['path']}"

    def code() -> str:
        return in_ns(lab.net.home.pi, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "3", url, check=False).stdout

    wait_for(f"the router's {url} to answer 200", lambda: code() == "200", 30, lambda: lab.net.log("router"))


def test_the_phone_resolves_an_internal_name_through_the_split_dns(lab: Lab) -> None:
    wait_for("the routes on the phone", lambda: "192.168.0.14" in lab.phone_routes(), 90, lambda: lab.net.log("phone"))
    # tailscaled on the phone points its resolver at the tailnet's (accept-dns), which sends the internal zone to the Ainur.
    assert "nameserver 100.100.100.100" in lab.phone("cat", "/etc/resolv.conf").stdout
    answer = lab.phone("dig", "+short", "+time=3", "+tries=3", APP, check=False)
    assert answer.stdout.strip() == "192.168.0.238", answer


def test_the_phone_fetches_the_internal_app_over_the_tunnel_with_its_certificate(lab: Lab) -> None:
    wait_for("the routes on the phone", lambda: "192.168.0.238" in lab.phone_routes(), 90, lambda: lab.net.log("phone"))
    wait_for(
        "the router taking the phone's packets to the app",
        lambda: _router_admits_the_phone(lab, "192.168.0.238", 443),
        60,
        lambda: lab.net.log("router"),
    )
    got = lab.curl(f"https://{APP}/")
    assert got.returncode == 0 and got.stdout == GREETING, got
    # It came through the subnet router on the Pi (which masquerades the tailnet's traffic as its own LAN address).
    assert lab.app_log.read_text().split()[-1] == lab.net.home.pi_ip


def test_an_advertised_address_the_policy_does_not_grant_answers_on_the_lan_only(lab: Lab) -> None:
    arda_api = "192.168.0.20"
    # The router advertises its routes once it is logged in, on its own time, and Headscale approves them then (the
    # policy's autoApprovers): a test that runs first, right after the phone joined, may be there before that.
    wait_for(
        "Headscale approving the router's route to the API", lambda: f"{arda_api}/32" in _approved(lab), 60, lambda: str(lab.hs("nodes", "list"))
    )
    # On the LAN it answers (from the Pi); bob's group reaches the apps only, so Headscale does not even hand the phone
    # that route (hscontrol/policy/policy.go:38-52, ReduceRoutes, from mapper/builder.go:257), and nothing answers.
    assert "stand-in" in in_ns(lab.net.home.pi, "curl", "-s", "--max-time", "5", f"telnet://{arda_api}:6443", check=False).stdout
    wait_for("the app's route on the phone", lambda: "192.168.0.238" in lab.phone_routes(), 90, lambda: lab.net.log("phone"))
    assert arda_api not in lab.phone_routes()
    # Nor does the router's packet filter take bob's packets to it, were the phone to route them there by hand.
    wait_for(
        "the router taking bob's packets to the app", lambda: _router_admits_the_phone(lab, "192.168.0.238", 443), 60, lambda: lab.net.log("router")
    )
    assert not _router_admits_the_phone(lab, arda_api, 6443)
    refused = lab.curl(f"telnet://{arda_api}:6443", seconds=4)
    assert refused.returncode in (7, 28) and "stand-in" not in refused.stdout, refused


def test_a_lan_address_nobody_advertises_is_not_reached(lab: Lab) -> None:
    pi = lab.net.home.pi_ip  # the Pi's own address: nginx answers there on the LAN
    assert pi not in lab.phone_routes()
    assert lab.curl(f"http://{pi}/boot.ipxe", seconds=3).returncode in (7, 28)


def _announced(lab: Lab) -> list[str]:
    nodes = lab.hs("nodes", "list-routes") or []
    return sorted(r for n in nodes if n.get("name") == plan.ROUTER_HOSTNAME for r in n.get("available_routes") or [])


def test_with_the_route_withdrawn_nothing_answers(lab: Lab) -> None:
    sock = ROUTER_SOCKET
    routes = [str(r) for r in plan.routes(lab.stack)]
    app = ("--resolve", f"{APP}:443:192.168.0.238", f"https://{APP}/")
    wait_for("the app over the tunnel", lambda: lab.curl(*app).stdout == GREETING, 90, lambda: lab.net.log("phone"))
    # The router stops advertising (what containerboot's `tailscale set` does with TS_ROUTES empty, tailscaled.go:166-190).
    lab.net.exec_in("router", "tailscale", sock, "set", "--advertise-routes=")
    try:
        wait_for("Headscale seeing the router advertise nothing", lambda: _announced(lab) == [], 60, lambda: str(lab.hs("nodes", "list-routes")))
        # The router forwards only what it advertises: the app, and the resolver with it, answer nothing.
        wait_for("the app's silence", lambda: lab.curl(*app, seconds=3).returncode in (7, 28), 60, lambda: lab.phone_routes())
        assert lab.phone("dig", "+short", "+time=2", "+tries=1", APP, check=False).stdout.strip() != "192.168.0.238"
    finally:
        lab.net.exec_in("router", "tailscale", sock, "set", f"--advertise-routes={','.join(routes)}")
        wait_for("the routes advertised again", lambda: _announced(lab) == sorted(routes), 60)
        wait_for("the app over the tunnel again", lambda: lab.curl(*app).stdout == GREETING, 90, lambda: lab.net.log("phone"))


def test_an_admin_reaches_the_api_servers_over_the_tunnel(lab: Lab) -> None:
    # The other side of the test above: alice's group has `kubernetes`, so the same phone signed in as alice gets Arda's
    # API route from Headscale and the API server's port answers over the tunnel (the `signIn` kubeconfig's server).
    arda_api = "192.168.0.20"
    lab.tailscale("logout")
    try:
        _join(lab, "alice")
        wait_for("Arda's API route on alice's phone", lambda: arda_api in lab.phone_routes(), 90, lambda: lab.net.log("phone"))
        wait_for(
            "the router taking alice's packets to the API", lambda: _router_admits_the_phone(lab, arda_api, 6443), 60, lambda: lab.net.log("router")
        )
        wait_for("a WireGuard session from the phone to the router", lambda: _tunnel_to(lab, arda_api), 90, lambda: lab.net.log("phone"))
        # The connect timeout guards against a hang only: the session is up and the router admits the phone.
        got = lab.curl(f"telnet://{arda_api}:6443", seconds=20)
        assert "kube-apiserver stand-in" in got.stdout, got
    finally:
        # Back to bob, whom the other tests expect (they run in any order).
        lab.tailscale("logout")
        _join(lab, "bob")
        wait_for("the app's route on bob's phone", lambda: "192.168.0.238" in lab.phone_routes(), 90, lambda: lab.net.log("phone"))
        wait_for("Arda's API route gone from bob's phone", lambda: arda_api not in lab.phone_routes(), 90, lambda: lab.phone_routes())
        wait_for(
            "the router taking bob's packets to the app",
            lambda: _router_admits_the_phone(lab, "192.168.0.238", 443),
            60,
            lambda: lab.net.log("router"),
        )


MINECRAFT = "minecraft.iluvatar.home.arpa"
MQTT = "mqtt.iluvatar.home.arpa"
TOPIC, MESSAGE = "house/hello", "the broker, over the tunnel"


@pytest.fixture(scope="module")
def raw_apps(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The homelab's raw-port apps at their addresses: Minecraft's echo servers on its ports, the real mosquitto for the
    broker (holding a retained message), each behind its rendered Service's source ranges. Their addresses by name."""
    root = tmp_path_factory.mktemp("raw-apps")
    procs: list[subprocess.Popen[str]] = []
    addresses: dict[str, str] = {}
    try:
        for app in ports_plan.apps(lab.stack):
            service = ports_plan.service(lab.stack, app)
            address = str(app.address)
            ns = lab.net.home.host(app.name[:4], address)
            subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=lb_rules(service), text=True, check=True, timeout=30)
            addresses[app.name] = address
            if app.name == "mosquitto":
                conf = root / "mosquitto.conf"
                conf.write_text("listener 1883\nallow_anonymous true\npersistence false\nlog_dest stderr\nuser root\n")
                broker = subprocess.Popen(["ip", "netns", "exec", ns, require("mosquitto"), "-c", str(conf)], stderr=subprocess.PIPE, text=True)
                procs.append(broker)
                assert broker.stderr is not None
                for line in broker.stderr:  # mosquitto logs each listener it opens, then `running`
                    if line.rstrip().endswith(" running"):
                        break
                in_ns(ns, require("mosquitto_pub"), "-h", address, "-t", TOPIC, "-m", MESSAGE, "-r")
            else:
                served = [f"{p['targetPort']}/{p['protocol']}" for p in service["spec"]["ports"]]
                server = subprocess.Popen(
                    ["ip", "netns", "exec", ns, sys.executable, "-c", SERVER, *served], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
                )
                procs.append(server)
                assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        yield addresses
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def test_the_family_reaches_the_minecraft_server_by_name_and_not_the_broker(lab: Lab, raw_apps: dict[str, str]) -> None:
    # bob's group (example:family) has `ports: [minecraft]`: Headscale hands the phone that address's route and the
    # router's filter takes its packets there, 25565 over TCP and 19132 over UDP.
    minecraft, broker = raw_apps["minecraft"], raw_apps["mosquitto"]
    wait_for("the Minecraft server's route on bob's phone", lambda: minecraft in lab.phone_routes(), 90, lambda: lab.net.log("phone"))
    assert lab.phone("dig", "+short", "+time=3", "+tries=3", MINECRAFT, check=False).stdout.strip() == minecraft
    wait_for(
        "the router taking bob's packets to the Minecraft server",
        lambda: _router_admits_the_phone(lab, minecraft, 25565) and _router_admits_the_phone(lab, minecraft, 19132),
        60,
        lambda: lab.net.log("router"),
    )
    for port, proto in ((25565, "TCP"), (19132, "UDP")):
        got = lab.phone(sys.executable, "-c", CLIENT_CODE, MINECRAFT, str(port), proto, check=False)
        assert got.stdout.strip() == f"{port}/{proto.lower()}:hello", got
    # The broker's name is in the zone too, but the family is not granted it: no route on the phone, no rule at the router.
    assert lab.phone("dig", "+short", "+time=3", "+tries=3", MQTT, check=False).stdout.strip() == broker
    assert broker not in lab.phone_routes()
    assert not _router_admits_the_phone(lab, broker, 1883)


def test_an_admin_reaches_the_mqtt_broker_by_name_over_the_tunnel(lab: Lab, raw_apps: dict[str, str]) -> None:
    # alice's group (example:homelab-admins) has `ports: [minecraft, mosquitto]`: the real mosquitto_sub on her phone
    # reaches the real broker by its name and gets the retained message.
    broker = raw_apps["mosquitto"]
    lab.tailscale("logout")
    try:
        _join(lab, "alice")
        wait_for("the broker's route on alice's phone", lambda: broker in lab.phone_routes(), 90, lambda: lab.net.log("phone"))
        wait_for(
            "the router taking alice's packets to the broker", lambda: _router_admits_the_phone(lab, broker, 1883), 60, lambda: lab.net.log("router")
        )
        wait_for("a WireGuard session from the phone to the router", lambda: _tunnel_to(lab, broker), 90, lambda: lab.net.log("phone"))
        got = lab.phone(require("mosquitto_sub"), "-h", MQTT, "-p", "1883", "-t", TOPIC, "-C", "1", "-W", "10", check=False)
        assert (got.returncode, got.stdout.strip()) == (0, MESSAGE), got
    finally:
        lab.tailscale("logout")
        _join(lab, "bob")
        wait_for("the app's route on bob's phone", lambda: "192.168.0.238" in lab.phone_routes(), 90, lambda: lab.net.log("phone"))
        wait_for("the broker's route gone from bob's phone", lambda: broker not in lab.phone_routes(), 90, lambda: lab.phone_routes())
        wait_for(
            "the router taking bob's packets to the app",
            lambda: _router_admits_the_phone(lab, "192.168.0.238", 443),
            60,
            lambda: lab.net.log("router"),
        )
