"""Raw-port apps on the LAN: a client resolves each app's host through the real dnsmasq the Ainur run (with the
records the program adds, `plans.edge.lan_records`) and reaches every port of the app's Service, TCP and UDP, at that
address, in the network-namespace lab (tests.netns.lan).

What cannot run here is Cilium: its L2 announcement of the Service's address and its eBPF forwarding to the pod. A
namespace holding the app's address (`Lan.host`, which answers ARP for it as Cilium's announcing node does) stands in
for both, with a server on each port's `targetPort` of the rendered Service (`plans.ports.service`), protocol as
rendered, and nftables doing what Cilium v1.18.4's load balancer does for a packet from outside (`raw_ports.LB_RULES`): drop a
source outside the Service's `loadBalancerSourceRanges` (bpf/lib/nodeport.h:2610, nodeport_svc_lb4), then translate
the Service's port to the backend's (lb4_local's DNAT, bpf/lib/lb.h). The client connects to `port`: one app here has
a `targetPort` apart from it, so a translation the Service gets wrong fails the test.

The MQTT broker is also served by the real program: Debian 12's mosquitto (2.0.11; the example's image is 2.0.22) runs
the example's own `mosquitto.conf` (examples/apps/mosquitto, its volumes where the Deployment mounts them) as the pod's
user, and Debian's mosquitto_sub and mosquitto_pub on a LAN laptop reach it by the app's name, resolved by the C
library through the real dnsmasq: the publisher over the broker's TLS port (the name checked against the certificate
the example's Certificate asks for), the subscriber on the plain port.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from plans import edge, ports
from stacks import StackConfig, load_stack_file
from stacks.model import App
from tests.edit import HOMELAB
from tests.netns.lan import Lan, in_ns, lan, require_root
from tests.netns.raw_ports import CLIENT_CODE, SERVER, lb_rules
from tests.tools import require

require_root()

SVC = "192.168.0.14"  # the Ainur's service address, where dnsmasq answers
CLIENT = "192.168.0.150"  # a laptop on the LAN


def _apps(stack: StackConfig) -> list[App]:
    """The homelab's raw-port apps, Minecraft's Java port served by its container on another port (25566)."""
    apps = ports.apps(stack)
    minecraft = next(a for a in apps if a.name == "minecraft")
    moved = tuple(p.model_copy(update={"target_port": 25566}) if p.port == 25565 else p for p in minecraft.ports)
    return [a.model_copy(update={"ports": moved}) if a is minecraft else a for a in apps]


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lan]:
    stack = load_stack_file(HOMELAB)
    with lan(stack, tmp_path_factory.mktemp("ports"), f"ilv{os.getpid() % 10000}p") as network:
        network.start_dnsmasq(extra_records=edge.lan_records(stack))
        yield network


@pytest.fixture(scope="module")
def address(net: Lan) -> Callable[[App], str]:
    """The namespace holding an app's address, with Cilium's rules for its rendered Service (made once per app)."""
    made: dict[str, str] = {}

    def make(app: App) -> str:
        if app.name not in made:
            service = ports.service(net.stack, app)
            ns = net.host(app.name[:4], service["metadata"]["annotations"][ports.LBIPAM_ANNOTATION])
            subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=lb_rules(service), text=True, check=True, timeout=30)
            made[app.name] = ns
        return made[app.name]

    return make


def test_a_lan_client_reaches_each_raw_port_by_the_apps_name(net: Lan, address: Callable[[App], str]) -> None:
    client = net.host("cl", CLIENT)
    servers: list[subprocess.Popen[str]] = []
    try:
        for app in _apps(net.stack):
            service = ports.service(net.stack, app)
            ns = address(app)
            # The pod listens on its container's ports, as the app declares them (not as the Service renders them).
            listening = {p.port_name: p.target_port if p.target_port is not None else p.port for p in app.ports}
            served = [f"{listening[p['name']]}/{p['protocol']}" for p in service["spec"]["ports"]]
            server = subprocess.Popen(
                ["ip", "netns", "exec", ns, sys.executable, "-c", SERVER, *served], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
            )
            servers.append(server)
            assert server.stdout is not None and server.stdout.readline().strip() == "ready"
            # The laptop asks the house's DNS for the app's host, then talks to every port at the address it got.
            found = in_ns(client, require("dig"), f"@{SVC}", "+short", "+time=2", "+tries=2", app.host).stdout.strip()
            assert found == str(app.address), app.host
            for p in service["spec"]["ports"]:
                answer = in_ns(client, sys.executable, "-c", CLIENT_CODE, found, str(p["port"]), p["protocol"]).stdout.strip()
                assert answer == f"{listening[p['name']]}/{p['protocol'].lower()}:hello", (app.name, p)
    finally:
        for server in servers:
            server.kill()
            server.wait()


EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "apps" / "mosquitto" / "deployment.yaml"
# The eclipse-mosquitto image's command (docker/2.0/Dockerfile: CMD ["/usr/sbin/mosquitto", "-c", ...]).
BROKER = ["/usr/sbin/mosquitto", "-c", "/mosquitto/config/mosquitto.conf"]
USER, PASSWORD = "kitchen", "lab-only-password"  # the test's own passwords file, thrown away with it


def _tls(folder: Path, host: str) -> None:
    """What cert-manager puts in the Secret mosquitto-tls for the example's Certificate (tls.crt, tls.key for its
    dnsNames), signed by a CA of the test's own (ca.crt, which the LAN's client trusts as it trusts iluvatar-ca)."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def openssl(*args: str, extension: str = "") -> None:
        subprocess.run([require("openssl"), *args], input=extension, cwd=folder, check=True, capture_output=True, text=True, timeout=30)

    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=lab CA", "-days", "2")
    openssl("req", *ec, "-keyout", "tls.key", "-out", "tls.csr", "-subj", f"/CN={host}")
    sign = ["-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2", "-extfile", "/dev/stdin"]
    openssl("x509", "-req", "-in", "tls.csr", "-out", "tls.crt", *sign, extension=f"subjectAltName=DNS:{host}")


def _mosquitto_pod(root: Path, host: str) -> tuple[list[str], int, int]:
    """The example's pod on this machine: each volume's files in a folder of `root`, the ConfigMap's mosquitto.conf
    with each mount path moved to its folder (nothing else of it changed), and the pod's user. Returns the command."""
    objects = list(yaml.safe_load_all(EXAMPLE.read_text()))
    config = next(o for o in objects if o["kind"] == "ConfigMap")["data"]["mosquitto.conf"]
    pod = next(o for o in objects if o["kind"] == "Deployment")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    command = list(BROKER)
    for mount in container["volumeMounts"]:
        folder = root / mount["name"]
        folder.mkdir()
        config = config.replace(mount["mountPath"].rstrip("/") + "/", f"{folder}/")
        command = [c.replace(mount["mountPath"].rstrip("/") + "/", f"{folder}/") for c in command]
    (root / "config" / "mosquitto.conf").write_text(config)
    _tls(root / "tls", host)
    subprocess.run([require("mosquitto_passwd"), "-c", "-b", root / "passwords" / "passwords", USER, PASSWORD], check=True, timeout=30)
    uid, gid = pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]
    for path in [root, *root.rglob("*")]:
        os.chown(path, uid, gid)
    return command, uid, gid


def test_a_lan_client_publishes_to_the_mqtt_broker_by_name_and_a_subscriber_receives_it(
    net: Lan, address: Callable[[App], str], tmp_path: Path
) -> None:
    app = next(a for a in ports.apps(net.stack) if a.name == "mosquitto")
    ns = address(app)
    client = net.host("cl", CLIENT)
    # The broker's user reaches its files only from a folder it can walk to (pytest's own are root's alone).
    root = Path(tempfile.mkdtemp(prefix="ilv-mqtt-"))
    command, uid, gid = _mosquitto_pod(root, app.host)
    # The laptop's resolver is the house's DNS: its C library asks dnsmasq for the name mosquitto_pub is given.
    (tmp_path / "resolv.conf").write_text(f"nameserver {SVC}\n")
    laptop = [
        "ip",
        "netns",
        "exec",
        client,
        "unshare",
        "-m",
        "sh",
        "-c",
        'mount --bind "$0" /etc/resolv.conf && exec "$@"',
        str(tmp_path / "resolv.conf"),
    ]
    login = ["-h", app.host, "-u", USER, "-P", PASSWORD, "-t", "home/kitchen/light"]
    setpriv = [require("setpriv"), f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]
    broker = subprocess.Popen(["ip", "netns", "exec", ns, *setpriv, *command], stderr=subprocess.PIPE, text=True)
    subscriber: subprocess.Popen[str] | None = None
    try:
        assert broker.stderr is not None
        started = []
        for line in broker.stderr:  # mosquitto logs each listener it opens, then `running`
            started.append(line.strip())
            if line.rstrip().endswith(" running"):
                break
        assert [line.split(": ", 1)[1] for line in started if "listen socket on port" in line] == [
            "Opening ipv4 listen socket on port 1883.",
            "Opening ipv6 listen socket on port 1883.",
            "Opening ipv4 listen socket on port 8883.",
            "Opening ipv6 listen socket on port 8883.",
        ], started
        # Line-buffered: mosquitto_sub's stdio holds its debug lines in a block on a pipe, the SUBACK among them.
        sub = [require("stdbuf"), "-oL", require("mosquitto_sub"), "-d", "-v", "-C", "1", "-W", "30", "-p", "1883", *login]
        subscriber = subprocess.Popen([*laptop, *sub], stdout=subprocess.PIPE, text=True)
        assert subscriber.stdout is not None
        for line in subscriber.stdout:  # the broker has the subscription once it answers it
            if line.startswith("Subscribed (mid: 1)"):
                break
        else:
            pytest.fail(f"mosquitto_sub ended without subscribing: {subscriber.wait()}")
        cafile = root / "tls" / "ca.crt"
        published = subprocess.run(
            [*laptop, require("mosquitto_pub"), "-p", "8883", "--cafile", str(cafile), "-q", "1", "-m", "on", *login],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert published.returncode == 0, published.stderr
        rest, _ = subscriber.communicate(timeout=30)
        # The subscription is QoS 0, so the broker hands the message on at QoS 0; -C 1 ends the client after it.
        assert (subscriber.returncode, rest.splitlines()) == (
            0,
            [
                "Client (null) received PUBLISH (d0, q0, r0, m0, 'home/kitchen/light', ... (2 bytes))",
                "home/kitchen/light on",
                "Client (null) sending DISCONNECT",
            ],
        ), rest
    finally:
        for proc in (subscriber, broker):
            if proc is not None:
                proc.kill()
                proc.wait()
        subprocess.run(["rm", "-rf", "--", str(root)], check=True, timeout=30)
