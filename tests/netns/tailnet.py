"""A tailnet around the home LAN (tests.netns.lan), in network namespaces, run by the real programs.

- **home**: the LAN of the stack (switch, home router, the Pi running the Ainur's generated dnsmasq.conf at the
  service address), its router now also on the "internet" with NAT and the port forward the docs prescribe (TCP 443
  and UDP 3478 to headscale.ip); on the Pi, what the Ainur run for remote access: Headscale on the rendered
  ConfigMap and the subnet router (containerboot, with the environment the program gives the pod); an "Arda"
  namespace holding envoy-internal's address (the internal app) and Arda's VIP (an API server stand-in: any answer).
- **away**: the "internet" (a bridge), a phone router on it with NAT, and the phone behind it, running tailscaled.

What stands in for Kubernetes, each as Kubernetes does it: a pod's volumes are bind mounts in a mount namespace of its
own (the ConfigMap's files at /etc/headscale, an emptyDir for the state and the socket); kube-vip holding a
LoadBalancer address is that address on the Pi; kube-proxy's Service port (443 to the pod's 8443) is a DNAT rule; the
pod's hostAliases are its /etc/hosts; `kubectl exec` into the pod is `nsenter` into its namespaces; the pod's own /tmp
(containerboot's socket) is a tmpfs. What the test changes, and why: Headscale's certificate is a file from the test's
CA, not Let's Encrypt's (no ACME here: the config's two TLS keys say so); the router keeps its state in a folder, not
the pod's Secret (TS_KUBE_SECRET needs an API server: TS_STATE_DIR instead); the programs trust the test's CA
(SSL_CERT_FILE), as a phone trusts Let's Encrypt's.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plans import edge as edge_plan
from plans import identity as identity_plan
from plans import remote_access as plan
from plans import yamltext
from stacks import StackConfig
from tests.netns.lan import Lan, in_ns, lan, sh, stop, wait_until
from tools import gotools

INTERNET = "198.51.100.0/24"
HOME_WAN, PHONE_WAN = "198.51.100.2", "198.51.100.3"
PHONE_LAN, PHONE_GATEWAY, PHONE = "10.77.0.0/24", "10.77.0.1", "10.77.0.2"


def wait_for(what: str, check: Callable[[], bool], seconds: float, why: Callable[[], str] = lambda: "") -> None:
    """lan.wait_until every 0.5 s: a check here runs a command in a namespace (a ping, a curl, `tailscale status`)."""
    wait_until(what, check, seconds, why, interval=0.5)


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def pki(root: Path, names: list[str]) -> Path:
    """A CA and a certificate from it for each name (`<name>.crt`, `<name>.key`)."""
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    openssl("req", "-x509", *ec, "-days", "1", "-keyout", str(root / "ca.key"), "-out", str(root / "ca.crt"), "-subj", "/CN=remote access test CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    for name in names:
        openssl("req", "-x509", *ec, "-days", "1", "-CA", str(root / "ca.crt"), "-CAkey", str(root / "ca.key"), "-keyout", str(root / f"{name}.key"),
                "-out", str(root / f"{name}.crt"), "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}")  # fmt: skip
    return root / "ca.crt"


@dataclass
class Tailnet:
    """The home LAN, the internet, the phone, and the processes running on them."""

    stack: StackConfig
    home: Lan
    root: Path
    prefix: str
    bin: Path
    ca: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    namespaces: list[str] = field(default_factory=list)

    @property
    def internet(self) -> str:
        return f"{self.prefix}i"

    @property
    def phone_router(self) -> str:
        return f"{self.prefix}x"

    @property
    def phone(self) -> str:
        return f"{self.prefix}f"

    @property
    def arda(self) -> str:
        return f"{self.prefix}a"

    @property
    def headscale_ip(self) -> str:
        remote = plan.settings(self.stack)
        assert remote.headscale is not None
        return str(remote.headscale.ip)

    # --- the networks ------------------------------------------------------------------------------------------

    def _ns(self, name: str) -> None:
        sh("ip", "netns", "add", name)
        in_ns(name, "ip", "link", "set", "lo", "up")
        self.namespaces.append(name)

    def _link(self, a: str, a_if: str, b: str, b_if: str) -> None:
        sh("ip", "link", "add", a_if, "netns", a, "type", "veth", "peer", "name", b_if, "netns", b)
        in_ns(a, "ip", "link", "set", a_if, "up")
        in_ns(b, "ip", "link", "set", b_if, "up")

    def _nft(self, ns: str, rules: str) -> None:
        path = self.root / f"{ns}.nft"
        path.write_text(rules)
        in_ns(ns, "nft", "-f", str(path))

    def build(self) -> None:
        home, lan_prefix = self.home, self.stack.network.lan.prefixlen
        # The internet: a bridge the home router and the phone's router plug into.
        self._ns(self.internet)
        in_ns(self.internet, "ip", "link", "add", "br0", "type", "bridge")
        in_ns(self.internet, "ip", "link", "set", "br0", "up")
        self._link(home.router, "wan0", self.internet, "vh")
        in_ns(self.internet, "ip", "link", "set", "vh", "master", "br0")
        in_ns(home.router, "ip", "addr", "add", f"{HOME_WAN}/24", "dev", "wan0")
        # The home router: NAT out, and the port forward of TCP 443 and UDP 3478 to Headscale's LAN address.
        in_ns(home.router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        self._nft(
            home.router,
            f"""table ip nat {{
  chain pre {{ type nat hook prerouting priority dstnat; iifname "wan0" tcp dport 443 dnat to {self.headscale_ip}:443;
              iifname "wan0" udp dport {plan.STUN_PORT} dnat to {self.headscale_ip}:{plan.STUN_PORT}; }}
  chain post {{ type nat hook postrouting priority srcnat; oifname "wan0" masquerade; }}
}}
""",
        )
        # The Pi: a default route through the home router; Headscale's LoadBalancer address (kube-vip), and the Service's
        # port 443 to the pod's (kube-proxy), for traffic from the LAN and from the Pi itself.
        in_ns(home.pi, "ip", "route", "add", "default", "via", str(self.stack.network.gateway))
        in_ns(home.pi, "ip", "addr", "add", f"{self.headscale_ip}/32", "dev", "eth0")
        self._nft(
            home.pi,
            f"""table ip kubeproxy {{
  chain pre {{ type nat hook prerouting priority dstnat; ip daddr {self.headscale_ip} tcp dport 443 dnat to {self.headscale_ip}:{plan.HEADSCALE_PORT}; }}
  chain out {{ type nat hook output priority -100; ip daddr {self.headscale_ip} tcp dport 443 dnat to {self.headscale_ip}:{plan.HEADSCALE_PORT}; }}
}}
""",
        )
        # Arda: envoy-internal's address and Arda's VIP, on the LAN.
        self._ns(self.arda)
        self._link(self.arda, "eth0", home.switch, f"{self.prefix}va")
        in_ns(home.switch, "ip", "link", "set", f"{self.prefix}va", "master", "br0")
        targets = plan.targets(self.stack)
        for name in ("envoy-internal", "arda-api"):
            in_ns(self.arda, "ip", "addr", "add", f"{targets[name]}/{lan_prefix}", "dev", "eth0")
        # The phone's router on the internet, NAT for the phone's network behind it.
        self._ns(self.phone_router)
        self._link(self.phone_router, "wan0", self.internet, "vx")
        in_ns(self.internet, "ip", "link", "set", "vx", "master", "br0")
        in_ns(self.phone_router, "ip", "addr", "add", f"{PHONE_WAN}/24", "dev", "wan0")
        in_ns(self.phone_router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        self._nft(self.phone_router, 'table ip nat {\n  chain post { type nat hook postrouting priority srcnat; oifname "wan0" masquerade; }\n}\n')
        self._ns(self.phone)
        self._link(self.phone, "eth0", self.phone_router, "lan0")
        in_ns(self.phone_router, "ip", "addr", "add", f"{PHONE_GATEWAY}/24", "dev", "lan0")
        in_ns(self.phone, "ip", "addr", "add", f"{PHONE}/24", "dev", "eth0")
        in_ns(self.phone, "ip", "route", "add", "default", "via", PHONE_GATEWAY)

    # --- processes ---------------------------------------------------------------------------------------------

    def start(self, key: str, ns: str, script: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """`script` (sh) in `ns`, in a mount namespace of its own; its output in <key>.log."""
        log = open(self.root / f"{key}.log", "wb")  # noqa: SIM115 - the process holds it
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, "unshare", "--mount", "--propagation", "private", "sh", "-ec", script],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={"PATH": f"{self.bin}:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", **(env or {})},
        )
        self.procs[key] = proc
        return proc

    def wait_started(self, key: str, program: str, seconds: float = 30) -> int:
        """The process `key` once it is `program`: `ip netns exec`, unshare and the script's last `exec` keep its pid, and
        its namespaces are then the pod's. Its pid."""
        pid = self.procs[key].pid

        def running() -> bool:
            cmdline = Path(f"/proc/{pid}/cmdline")
            return cmdline.exists() and Path(cmdline.read_bytes().split(b"\0")[0].decode()).name == program

        wait_for(f"{key} running {program}", running, seconds, lambda: self.log(key))
        return pid

    def log(self, key: str) -> str:
        path = self.root / f"{key}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else "(no log)"

    def exec_in(
        self, key: str, *args: str, timeout: float = 30, check: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """`args` in the namespaces of the process `key` started (what `kubectl exec` into a pod is)."""
        return subprocess.run(
            ["nsenter", f"--target={self.procs[key].pid}", "--mount", "--net", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
            env={"PATH": f"{self.bin}:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", **(env or {})},
        )

    def teardown(self) -> None:
        for key in list(self.procs):
            stop(self.procs.pop(key))
        for ns in reversed(self.namespaces):
            sh("ip", "netns", "delete", ns, check=False)


def binaries(root: Path) -> Path:
    """tailscaled (the CLI linked in: `tailscale` is the same binary by another name), containerboot and headscale,
    built from their pinned modules (tools.gotools), in one folder as the images have them on PATH."""
    folder = root / "bin"
    folder.mkdir()
    for name in ("tailscaled", "containerboot", "headscale"):
        os.symlink(gotools.build(name), folder / name)
    os.symlink(gotools.build("tailscaled"), folder / "tailscale")
    return folder


def headscale_files(stack: StackConfig, folder: Path, ca_dir: Path) -> dict[str, Any]:
    """The ConfigMap's files as the pod mounts them, but for the certificate: the test CA's, not Let's Encrypt's."""
    manifests = {(m["kind"], m["metadata"]["name"]): m for m in plan.headscale_manifests(stack)}
    data = manifests[("ConfigMap", plan.HEADSCALE)]["data"]
    doc: dict[str, Any] = next(iter(yamltext.load_all(data["config.yaml"])))
    host = plan.headscale_host(stack)
    doc["tls_letsencrypt_hostname"] = ""
    doc["tls_cert_path"] = f"{plan.CONFIG_DIR}/tls/{host}.crt"
    doc["tls_key_path"] = f"{plan.CONFIG_DIR}/tls/{host}.key"
    folder.mkdir()
    (folder / "config.yaml").write_text(yamltext.dump(doc))
    (folder / "policy.hujson").write_text(data["policy.hujson"])
    (folder / "tls").mkdir()
    for suffix in ("crt", "key"):
        shutil.copy(ca_dir / f"{host}.{suffix}", folder / "tls" / f"{host}.{suffix}")
    return doc


@contextmanager
def tailnet(stack: StackConfig, root: Path, prefix: str) -> Iterator[Tailnet]:
    """The whole lab for `stack` (flavour headscale), torn down afterwards whatever happens."""
    for tool in ("nft", "nsenter", "unshare", "openssl"):
        if shutil.which(tool) is None:
            raise FileNotFoundError(f"{tool} is not installed; scripts/prerequisites.sh installs it")
    bin_dir = binaries(root)
    ca_dir = root / "pki"
    ca_dir.mkdir()
    ca = pki(ca_dir, [plan.headscale_host(stack), *(a.host for a in stack.apps if a.audience == "internal")])
    (root / "home").mkdir()
    with lan(stack, root / "home", prefix) as home:
        net = Tailnet(stack, home, root, prefix, bin_dir, ca)
        try:
            net.build()
            # The internal zone as the Ainur's DNS serves it: the app hosts and the sign-in names (__main__'s Netboot).
            home.start_dnsmasq(keep_leases=False, extra_records=[*edge_plan.lan_records(stack), *identity_plan.lan_records(stack)])
            yield net
        finally:
            net.teardown()


def overlay(path: str, upper: Path) -> str:
    """Shell that lays a writable overlay of the process's own over `path` (this machine's stays as it is below)."""
    (upper / "up").mkdir(parents=True)
    (upper / "work").mkdir()
    return f"mount -t overlay iluvatar-ovl -o lowerdir={path},upperdir={shlex.quote(str(upper / 'up'))},workdir={shlex.quote(str(upper / 'work'))} {path}\n"


def headscale_script(root: Path, files: Path, state: Path) -> str:
    """The pod: its volumes mounted where the container has them (the ConfigMap's files, the state claim, the socket's
    emptyDir), on overlays of /etc and /var/lib and a /run of its own, then the container's args."""
    q = shlex.quote
    return (
        overlay("/etc", root / "headscale-etc")
        + overlay("/var/lib", root / "headscale-var-lib")
        + "mount -t tmpfs iluvatar-run /run\n"
        + f"mkdir -p {plan.CONFIG_DIR} {plan.STATE_DIR} {plan.SOCKET_DIR}\n"
        + f"mount --bind {q(str(files))} {plan.CONFIG_DIR}\n"
        + f"mount --bind {q(str(state))} {plan.STATE_DIR}\n"
        + f"exec headscale serve --config {plan.CONFIG_DIR}/config.yaml\n"
    )


ROUTER_STATE = "/var/lib/tailscale"
ROUTER_CA = "/etc/ssl/iluvatar-test-ca.crt"


def router_script(root: Path, bin_dir: Path, ca: Path, state: Path, hosts: list[tuple[str, list[str]]]) -> str:
    """The subnet router's pod: its image's programs in /usr/local/bin (build_docker.sh's --gopaths), /etc/hosts with
    its hostAliases (as the kubelet writes them), its state folder and the test CA, then a /tmp of its own (an image's,
    where containerboot puts tailscaled's socket), then the image's entrypoint."""
    q = shlex.quote
    lines = "".join(f"echo {q(ip + ' ' + ' '.join(names))} >> /etc/hosts\n" for ip, names in hosts)
    return (
        overlay("/etc", root / "router-etc")
        + overlay("/var/lib", root / "router-var-lib")
        + lines
        + f"cp {q(str(ca))} {ROUTER_CA}\n"
        + f"mkdir -p {ROUTER_STATE}\nmount --bind {q(str(state))} {ROUTER_STATE}\n"
        + f"mount --bind {q(str(bin_dir))} /usr/local/bin\n"
        + "mount -t tmpfs iluvatar-tmp /tmp\nexec containerboot\n"
    )


def phone_script(root: Path, state: Path, hosts: list[tuple[str, str]]) -> str:
    """The phone: its own /etc (tailscaled writes its resolv.conf there: accept-dns), public DNS for Headscale's name
    (its /etc/hosts), then tailscaled."""
    lines = "".join(f"echo {shlex.quote(ip + ' ' + name)} >> /etc/hosts\n" for ip, name in hosts)
    return (
        overlay("/etc", root / "phone-etc")
        + lines
        + f"exec tailscaled --state={shlex.quote(str(state / 'tailscaled.state'))} --statedir={shlex.quote(str(state))} "
        + f"--socket={shlex.quote(str(state / 'tailscaled.sock'))} --port=41641\n"
    )


def json_of(text: str) -> Any:
    return json.loads(text) if text.strip() else None
