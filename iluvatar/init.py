"""`iluvatar init`: a new stack file from a few answers, the LAN, the machines and the layers to turn on.

Pure but for reading a public key file: `Answers` (what the user said, as flags or at the prompts) becomes the
stack config (`config`), with every value the user left out derived from the LAN through the IP plan (plans.ipam):
the gateway, the DHCP range and the load-balancer pool, then each VIP, the Ainur's service address and each
machine's address, one after the other from the first free static address. The file is written in the form Pulumi's
marshaler writes (two-space indent, flow mappings for the machines, the editor schema's header line first), so
`pulumi stack init` appends only its salt and each `pulumi config set` changes only its key (tests/iluvatar/test_init.py
runs Pulumi's own marshaler, tools/stackfile, on it). Nothing is written that does not parse back as the same config
and validate as an inventory: a problem is said against the flag the user gave (`FlagError`), one line each.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from plans.ipam import free_static, hosts
from stacks import releases
from stacks.boards import AINUR_ROLES, ARDA_ROLES, BOARDS
from stacks.data import parse_target
from stacks.errors import Problem, StackConfigError
from stacks.fields import IPv4, Label, Mac
from stacks.load import StackFile, check_stack_settings, load_yaml
from stacks.secrets import SecretsManager

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "stacks" / "stack.schema.json"
DOMAIN = "lab.home.arpa"
CLUSTER = "arda"
# A stack name as Pulumi takes one (pkg/workspace: letters, digits, '-', '_' and '.', up to 100 characters).
_STACK = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
# Where each board installs by default: a Pi's SD card, an RK1's eMMC, a PC's first SATA disk (as the shipped stacks).
INSTALL_DISK = {"rpi4": "/dev/mmcblk0", "rpi5": "/dev/mmcblk0", "rk1": "/dev/mmcblk0", "generic-x86": "/dev/sda", "generic-arm64": "/dev/sda"}
MACHINE_KEYS = ("name", "mac", "role", "board", "ip", "disk", "data")
MACHINE_EXAMPLE = "name=talos-1,mac=a8:b8:e0:20:00:01,role=valinor,board=generic-x86"
# In a /24 or larger LAN, the homelab's layout of its first 256 addresses (DHCP .100-.199, load balancers .220-.239)
# and static addresses from .10 on; a smaller LAN gets the same shares of its own size.
LAYOUT = (99, 198, 219, 238)
FIRST_STATIC = 9
SMALLEST = 30  # a /27: a few machines, a DHCP range and a load-balancer pool still fit


class FlagError(Exception):
    """What the user gave cannot make a stack: one line per problem, each naming the flag and the value as given."""

    def __init__(self, lines: Sequence[str]) -> None:
        self.lines = tuple(lines)
        super().__init__("\n".join(self.lines))


@dataclass(frozen=True)
class Machine:
    """One `--machine` (or one machine asked for): `given` is the flag's value as the user wrote it."""

    given: str
    name: str
    mac: str
    role: str
    board: str
    ip: str | None = None
    disk: str | None = None
    data: tuple[str, ...] = ()


@dataclass(frozen=True)
class Answers:
    """Everything `init` is told; None: not given (a default is derived, or the layer stays off)."""

    stack: str
    lan: str | None = None
    gateway: str | None = None
    dns: str | None = None
    domain: str | None = None
    dhcp_range: str | None = None
    lb_pool: str | None = None
    machines: tuple[Machine, ...] = ()
    ssh_key: str | None = None
    gitops: str | None = None
    monitoring: str | None = None
    identity: str | None = None
    backup: str | None = None
    cloudflare: str | None = None
    external_domain: str | None = None
    acme_email: str | None = None
    # The Ainur's DHCP mode (ainur.netboot.mode): None, not given, writes DEFAULT_MODE and says why (cli._init).
    dhcp_mode: str | None = None
    # With dhcp mode, the pool the router lent (`START-END`) or `none` (ainur.netboot.routerPool; stacks.netboot_mode).
    router_pool: str | None = None


FLAGS = {
    "lan": "--lan",
    "gateway": "--gateway",
    "dns": "--dns",
    "domain": "--domain",
    "dhcp_range": "--dhcp-range",
    "lb_pool": "--lb-pool",
    "ssh_key": "--ssh-key",
    "gitops": "--gitops",
    "monitoring": "--monitoring",
    "identity": "--identity",
    "backup": "--backup",
    "cloudflare": "--cloudflare",
    "external_domain": "--external-domain",
    "acme_email": "--acme-email",
    "dhcp_mode": "--dhcp-mode",
    "router_pool": "--router-pool",
}

# The DHCP modes, one line each, as `init` explains them before asking (and its --help lists them).
DHCP_MODES = {
    "proxy": "your router keeps lending the LAN's addresses; the Ainur answer only the machines they netboot (nothing to turn off)",
    "dhcp": "the Ainur are the LAN's DHCP server; your router's DHCP must be off first, or the LAN has two that fight",
}
# What a stack gets when no mode is given: the one that never fights a router, whatever the LAN has.
DEFAULT_MODE = "proxy"
# What --router-pool is, as the error that asks for it and the question say it.
ROUTER_POOL = (
    "the pool your router's DHCP lent (its LAN or DHCP settings), as START-END: the household holds its addresses until "
    "their leases end, and the Ainur lend network.dhcpRange apart from it; or none if no DHCP server ever lent on this "
    "LAN, or the router's has been off for longer than its lease time"
)


def flag(answers: Answers, name: str) -> str:
    """`--lan 10.20.0.0/24`: the flag and its value as given (a value derived, not given, names the flag alone)."""
    value = getattr(answers, name)
    return f"{FLAGS[name]} {value}" if value is not None else FLAGS[name]


# --- Reading the flags ------------------------------------------------------------------------------------


def parse_machine(text: str) -> Machine:
    """`name=...,mac=...,role=...,board=...[,ip=...][,disk=...][,data=/dev/a+/dev/b]`, or a FlagError naming it."""
    where = f"--machine {text}"
    values: dict[str, str] = {}
    for part in text.split(","):
        key, eq, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not key:
            raise FlagError([f"{where}: {part!r} is not key=value; write it as {MACHINE_EXAMPLE}"])
        if key not in MACHINE_KEYS:
            raise FlagError([f"{where}: {key} is not a machine's key (known: {', '.join(MACHINE_KEYS)})"])
        if key in values:
            raise FlagError([f"{where}: {key} is given twice"])
        values[key] = value
    missing = [k for k in ("name", "mac", "role", "board") if not values.get(k)]
    if missing:
        raise FlagError([f"{where}: {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing; write it as {MACHINE_EXAMPLE}"])
    if values["board"] not in BOARDS:
        raise FlagError([f"{where}: board={values['board']} is not a known board (known: {', '.join(sorted(BOARDS))})"])
    roles = sorted(AINUR_ROLES | ARDA_ROLES, key=("valar", "maiar", "valinor", "istari").index)
    if values["role"] not in roles:
        raise FlagError(
            [f"{where}: role={values['role']} is not a role (valar, maiar: the Ainur's Pis; valinor, istari: Arda's control planes, workers)"]
        )
    # What one value shows alone is said now, in the model's words (at a terminal, the machine is asked again).
    for key, kind in (("name", Label), ("mac", Mac), ("ip", IPv4)):
        if values.get(key):
            try:
                TypeAdapter(kind).validate_python(values[key])
            except ValidationError as e:
                raise FlagError([f"{where}: {str(e.errors()[0]['msg']).removeprefix('Value error, ')}"]) from None
    data = tuple(d for d in values.get("data", "").split("+") if d)
    return Machine(text, values["name"], values["mac"], values["role"], values["board"], values.get("ip") or None, values.get("disk") or None, data)


def _range(text: str, name: str) -> dict[str, str]:
    start, dash, end = text.partition("-")
    if not dash or not start.strip() or not end.strip():
        raise FlagError([f"{FLAGS[name]} {text}: write it as START-END, e.g. 192.168.0.100-192.168.0.199"])
    return {"start": start.strip(), "end": end.strip()}


def _options(text: str, name: str, example: str) -> tuple[str, str, dict[str, str]]:
    """`kind=value[,key=value...]` (the layer flags' form): (kind, value, the other keys)."""
    parts = [p.strip() for p in text.split(",")]
    kind, eq, value = parts[0].partition("=")
    rest: dict[str, str] = {}
    for part in parts[1:]:
        k, e, v = part.partition("=")
        if not e or not k:
            raise FlagError([f"{FLAGS[name]} {text}: {part!r} is not key=value; write it as {example}"])
        rest[k.strip()] = v.strip()
    if not eq or not value.strip():
        raise FlagError([f"{FLAGS[name]} {text}: write it as {example}"])
    return kind.strip(), value.strip(), rest


def _unknown(text: str, name: str, rest: Mapping[str, str], known: Sequence[str]) -> None:
    extra = [k for k in rest if k not in known]
    if extra:
        raise FlagError([f"{FLAGS[name]} {text}: {', '.join(extra)} is not one of its keys (known: {', '.join(known) or 'none'})"])


def read_ssh_key(text: str) -> str:
    """An OpenSSH public key as given, or read from the file it names (`~/.ssh/id_ed25519.pub`)."""
    path = Path(os.path.expanduser(text))
    if not text.startswith(("ssh-", "ecdsa-", "sk-")) and path.is_file():
        try:
            lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as e:
            raise FlagError([f"--ssh-key {text}: cannot read it ({e.__class__.__name__})"]) from None
        if len(lines) != 1:
            raise FlagError([f"--ssh-key {text}: holds {len(lines)} lines; give a public key file (id_ed25519.pub), one key a line"])
        return lines[0]
    return text.strip()


# --- The IP plan -------------------------------------------------------------------------------------------


def _network(answers: Answers) -> IPv4Network:
    if answers.lan is None:
        raise FlagError(["--lan: required: the LAN the machines are on, in CIDR form (e.g. --lan 192.168.0.0/24)"])
    try:
        net = IPv4Network(answers.lan.strip(), strict=True)
    except ValueError:
        try:
            loose = IPv4Network(answers.lan.strip(), strict=False)
        except ValueError:
            raise FlagError([f"--lan {answers.lan}: is not an IPv4 network in CIDR form (e.g. 192.168.0.0/24)"]) from None
        raise FlagError([f"--lan {answers.lan}: has host bits set; the network is {loose}"]) from None
    return net


def layout(net: IPv4Network) -> tuple[tuple[IPv4Address, IPv4Address], tuple[IPv4Address, IPv4Address], int]:
    """The DHCP range, the load-balancer pool and how many addresses to leave free at the LAN's start, derived from it."""
    first, last = hosts(net)
    size = int(last) - int(first) + 1
    if size < SMALLEST:
        raise ValueError(f"has {size} addresses, too few to lay out; give --dhcp-range and --lb-pool, or use at least a /27")
    offsets = LAYOUT if size >= 254 else tuple(k * size // 254 for k in LAYOUT)
    start, end, pool_start, pool_end = (first + k for k in offsets)
    return (start, end), (pool_start, pool_end), FIRST_STATIC if size >= 254 else 1


def network(answers: Answers) -> tuple[dict[str, Any], IPv4Network, int]:
    """`iluvatar:network`, with what was not given derived from the LAN, and where static addresses start."""
    net = _network(answers)
    first, _ = hosts(net)
    dhcp: dict[str, str] | None = _range(answers.dhcp_range, "dhcp_range") if answers.dhcp_range else None
    pool: dict[str, str] | None = _range(answers.lb_pool, "lb_pool") if answers.lb_pool else None
    skip = FIRST_STATIC
    if dhcp is None or pool is None:
        try:
            (d0, d1), (p0, p1), skip = layout(net)
        except ValueError as e:
            raise FlagError([f"--lan {answers.lan}: {e}"]) from None
        dhcp = dhcp or {"start": str(d0), "end": str(d1)}
        pool = pool or {"start": str(p0), "end": str(p1)}
    gateway = answers.gateway.strip() if answers.gateway else str(first)
    dns = [d.strip() for d in answers.dns.split(",") if d.strip()] if answers.dns else [gateway]
    return (
        {
            "lan": str(net),
            "gateway": gateway,
            "dns": dns,
            "dhcpRange": dhcp,
            "loadBalancerPool": pool,
            "domain": (answers.domain or DOMAIN).strip(),
        },
        net,
        skip,
    )


def _address(text: str) -> IPv4Address | None:
    try:
        return IPv4Address(text.strip())
    except ValueError:
        return None


def _pool(value: Mapping[str, str]) -> tuple[IPv4Address, IPv4Address] | None:
    start, end = _address(value["start"]), _address(value["end"])
    return (start, end) if start is not None and end is not None and start <= end else None


class _Addresses:
    """The next free static address of the LAN each time one is asked for: never a given one, a pool's, or one handed out."""

    def __init__(self, net: IPv4Network, taken: Sequence[IPv4Address], pools: Sequence[tuple[IPv4Address, IPv4Address]], skip: int) -> None:
        first, _ = hosts(net)
        self._free = (ip for ip in free_static(net, taken, pools) if int(ip) - int(first) >= skip)
        self._wrap = (ip for ip in free_static(net, taken, pools) if int(ip) - int(first) < skip)

    def next(self) -> str:
        for source in (self._free, self._wrap):
            for ip in source:
                return str(ip)
        raise FlagError(["--lan: has no free static address left for the machines and VIPs; use a larger LAN, or smaller --dhcp-range and --lb-pool"])


# --- The layers ----------------------------------------------------------------------------------------------


def monitoring(answers: Answers) -> dict[str, Any]:
    text = answers.monitoring or ""
    example = "ntfy=https://ntfy.sh/<topic>, webhook=<url> or email=<to>,from=<from>,smarthost=<host:port>"
    kind, value, rest = _options(text, "monitoring", example)
    if kind in ("ntfy", "webhook"):
        _unknown(text, "monitoring", rest, ())
        return {"receiver": {kind: {"url": value}}}
    if kind == "email":
        _unknown(text, "monitoring", rest, ("from", "smarthost", "username"))
        return {"receiver": {"email": {"to": value, **rest}}}
    raise FlagError([f"--monitoring {text}: {kind} is not a receiver (ntfy, webhook or email); write {example}"])


def identity(answers: Answers, front_door: str) -> dict[str, Any]:
    text = answers.identity or ""
    example = "github=<org>,client-id=<OAuth app client id>[,team=<team slug>] or static=<admin e-mail>"
    kind, value, rest = _options(text, "identity", example)
    if kind == "github":
        _unknown(text, "identity", rest, ("client-id", "team"))
        if not rest.get("client-id"):
            raise FlagError([f"--identity {text}: client-id is missing: the GitHub OAuth app's client id; write {example}"])
        team = rest.get("team") or "homelab-admins"
        connector = {"type": "github", "clientId": rest["client-id"], "orgs": [value]}
        group = f"{value}:{team}"
    elif kind == "static":
        _unknown(text, "identity", rest, ())
        connector = {"type": "static", "email": value, "groups": ["admins"]}
        group = "admins"
    else:
        raise FlagError([f"--identity {text}: {kind} is not a connector init writes (github or static); write {example}"])
    return {"ip": front_door, "connector": connector, "groups": [{"group": group, "clusterRole": "cluster-admin"}]}


def backup(answers: Answers) -> dict[str, Any]:
    text = (answers.backup or "").strip()
    target = parse_target(text)
    if isinstance(target, str):
        raise FlagError([f"--backup {answers.backup}: {target}"])
    # Arda's etcd snapshots follow the target (talos-backup uploads only to S3: off with NFS, stacks.data.arda_etcd_backup).
    return {"target": text}


def _before(answers: Answers) -> list[str]:
    """What needs another layer, said against the flags (the model would say it against config keys)."""
    out = []
    ainur = any(m.role in AINUR_ROLES for m in answers.machines)
    for name, what in (("monitoring", "Prometheus, Alertmanager and Grafana"), ("identity", "Dex's clients"), ("backup", "VolSync")):
        if getattr(answers, name) is not None and answers.gitops is None:
            out.append(f"{flag(answers, name)}: needs --gitops <repository URL>: {what} are installed by Argo CD from it")
    if answers.identity is not None and not ainur:
        out.append(f"{flag(answers, 'identity')}: needs the Ainur: Dex runs on them; add a --machine with role=valar (a Raspberry Pi)")
    if ainur and answers.ssh_key is None:
        out.append(
            "--ssh-key: required with the Ainur (a valar or maiar machine): the public key the Pis let in, e.g. --ssh-key ~/.ssh/id_ed25519.pub"
        )
    if answers.cloudflare is not None:
        for name in ("external_domain", "acme_email"):
            if getattr(answers, name) is None:
                what = "the public zone Cloudflare serves (e.g. example.com)" if name == "external_domain" else "Let's Encrypt's account e-mail"
                out.append(f"{FLAGS[name]}: required with --cloudflare: {what}")
    elif answers.external_domain is not None or answers.acme_email is not None:
        given = FLAGS["external_domain"] if answers.external_domain is not None else FLAGS["acme_email"]
        out.append(f"{given}: only with --cloudflare <account id>, which serves the public zone")
    if not answers.machines:
        out.append(f"--machine: required, once per machine: {MACHINE_EXAMPLE}")
    if answers.dhcp_mode is not None and answers.dhcp_mode not in DHCP_MODES:
        out.append(f"{flag(answers, 'dhcp_mode')}: is neither proxy nor dhcp: {'; '.join(f'{k}: {v}' for k, v in DHCP_MODES.items())}")
    elif answers.dhcp_mode is not None and not ainur:
        out.append(f"{flag(answers, 'dhcp_mode')}: only with the Ainur (a machine with role=valar), which serve DHCP and netboot")
    elif answers.dhcp_mode == "dhcp" and answers.router_pool is None:
        out.append(f"--router-pool: required with --dhcp-mode dhcp: {ROUTER_POOL}")
    if answers.router_pool is not None and answers.dhcp_mode != "dhcp":
        out.append(f"{flag(answers, 'router_pool')}: only with --dhcp-mode dhcp (in proxy mode the router keeps lending)")
    elif answers.router_pool is not None and answers.router_pool.strip() != "none" and _pool(_range(answers.router_pool, "router_pool")) is None:
        out.append(f"{flag(answers, 'router_pool')}: write it as START-END, two IPv4 addresses, the first the lower, or none")
    return out


def config(answers: Answers) -> dict[str, Any]:
    """The stack config `init` writes: full keys (`iluvatar:network`) in the stack reference's order, minimal values."""
    if not _STACK.match(answers.stack):
        raise FlagError([f"{answers.stack}: is not a stack name Pulumi takes (letters, digits, '-', '_', '.'; no org or project/)"])
    early = _before(answers)
    if early:
        raise FlagError(early)
    net, lan, skip = network(answers)
    given = [ip for m in answers.machines if m.ip and (ip := _address(m.ip)) is not None]
    given += [ip for text in [net["gateway"], *net["dns"]] if (ip := _address(text)) is not None]
    if answers.backup and not isinstance(target := parse_target(answers.backup.strip()), str):
        host = _address(target.host.split(":")[0])
        given += [host] if host is not None else []
    pools = [p for p in (_pool(net["dhcpRange"]), _pool(net["loadBalancerPool"])) if p is not None]
    free = _Addresses(lan, given, pools, skip)
    out: dict[str, Any] = {"pulumi:disable-default-providers": ["*"], "iluvatar:network": net}
    pis = [m for m in answers.machines if m.role in AINUR_ROLES]
    arda_machines = [m for m in answers.machines if m.role in ARDA_ROLES]
    ips: dict[int, str] = {}
    if pis:
        vip = free.next()
        for m in pis:
            ips[id(m)] = m.ip or free.next()
        out["iluvatar:ainur"] = {
            "vip": vip,
            "serviceIp": free.next(),
            "k3sVersion": releases.K3S,
            "sshAuthorizedKeys": [read_ssh_key(answers.ssh_key or "")],
            # Always written: the stack says the mode its LAN runs, whatever a later default is (stacks.netboot_mode).
            "netboot": {"mode": answers.dhcp_mode or DEFAULT_MODE},
        }
        if sum(m.role == "valar" for m in pis) == 1:
            # k3s's secrets encryption from the Ainur's first install, when every server starts with its key. On several
            # valar it is refused (stacks.rules._counts), so such a stack is written without it.
            out["iluvatar:ainur"]["secretsEncryption"] = True
        if answers.router_pool is not None:
            lent = answers.router_pool.strip()
            out["iluvatar:ainur"]["netboot"]["routerPool"] = "none" if lent == "none" else _range(lent, "router_pool")
    front_door = free.next() if answers.identity is not None else ""
    arda_vip = free.next()
    for m in arda_machines:
        ips[id(m)] = m.ip or free.next()
    arda: dict[str, Any] = {"clusterName": CLUSTER, "vip": arda_vip, "talosVersion": releases.TALOS, "kubernetesVersion": releases.KUBERNETES}
    if not any(m.role == "istari" for m in arda_machines):
        arda["allowSchedulingOnControlPlanes"] = True  # no worker: the control planes run the workloads
    # Volumes encrypted at rest from the first install (stacks.encryption): Talos encrypts a volume only when it is empty,
    # so turning it on later is a roll. Keys come from the Ainur's KMS where a board has no TPM: without Pis, only a
    # homelab whose every board seals to its TPM can have it.
    if pis or (arda_machines and all(BOARDS[m.board].tpm for m in arda_machines)):
        arda["encryption"] = {"enabled": True}
    out["iluvatar:arda"] = arda
    if pis:
        # The Ainur's claims on Longhorn's encrypted class from the first install: a claim's class cannot change later.
        out["iluvatar:storage"] = {"ainur": {"encrypted": True}}
    out["iluvatar:nodes"] = [_node(m, ips[id(m)]) for m in [*pis, *arda_machines]]
    if answers.gitops is not None:
        out["iluvatar:gitops"] = {"repoUrl": answers.gitops.strip()}
    if answers.cloudflare is not None:
        out["iluvatar:network"]["externalDomain"] = (answers.external_domain or "").strip()
        out["iluvatar:edge"] = {"acmeEmail": (answers.acme_email or "").strip()}
        out["iluvatar:cloudflare"] = {"accountId": answers.cloudflare.strip()}
    if answers.monitoring is not None:
        out["iluvatar:monitoring"] = monitoring(answers)
    if answers.identity is not None:
        out["iluvatar:identity"] = identity(answers, front_door)
    if answers.backup is not None:
        out["iluvatar:backup"] = backup(answers)
    return out


def _node(m: Machine, ip: str) -> dict[str, Any]:
    node: dict[str, Any] = {"name": m.name, "role": m.role, "arch": BOARDS[m.board].arch, "board": m.board, "mac": m.mac, "ip": ip}
    node["installDisk"] = m.disk or INSTALL_DISK[m.board]
    if m.data:
        node["dataDisks"] = list(m.data)
    return node


# --- The file, as Pulumi's marshaler writes it ---------------------------------------------------------------

_PLAIN = re.compile(r"^[A-Za-z_./+-][A-Za-z0-9_./@+:=-]*$")  # '@' and '`' cannot start a plain scalar
# Plain scalars a YAML reader takes as something else: YAML 1.1's booleans and null (a plain scalar starting with a
# digit or a sign may be a number, so it is never plain, but for an IPv4 address, which yaml.v3 and stacks.load read as text).
_SPECIAL = re.compile(r"^(y|n|yes|no|on|off|true|false|null|~|[-+.].*)$", re.IGNORECASE)
_IPV4 = re.compile(r"^\d{1,3}(\.\d{1,3}){3}(/\d{1,2})?$")  # an address or a network in CIDR form
WIDE = 100  # a mapping or list wider than this is written in block style


def scalar(value: object, in_flow: bool = False) -> str:
    """A value as a plain scalar where every YAML reader reads it back the same, else double-quoted (JSON's escapes,
    which YAML's double-quoted style shares). In a flow mapping or list a `:` is quoted too (as the shipped stacks do)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    text = str(value)
    # A `:` at the end is a mapping's key indicator to every reader ("k: A:" does not load): quoted too.
    if _IPV4.match(text) or (_PLAIN.match(text) and not _SPECIAL.match(text) and not text.endswith(":") and not (in_flow and ":" in text)):
        return text
    return json.dumps(text, ensure_ascii=False)


def flow(value: object) -> str:
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(flow(v) for v in value) + "]"
    return scalar(value, in_flow=True)


def _block(key: str, value: object, indent: int) -> Iterator[str]:
    pad = " " * indent
    if isinstance(value, Mapping):
        if indent >= 4 and len(flow(value)) <= WIDE:
            yield f"{pad}{key}: {flow(value)}"
            return
        yield f"{pad}{key}:"
        for k, v in value.items():
            yield from _block(str(k), v, indent + 2)
    elif isinstance(value, list):
        words = all(not isinstance(v, Mapping | list) and " " not in str(v) for v in value)
        if indent >= 4 and words and len(flow(value)) <= WIDE:
            yield f"{pad}{key}: {flow(value)}"
            return
        yield f"{pad}{key}:"
        for v in value:
            yield f"{pad}  - {flow(v)}"
    else:
        yield f"{pad}{key}: {scalar(value)}"


# The schema's copy `init` writes beside a stack file outside the checkout, which the file's header names.
SCHEMA_BESIDE = "stack.schema.json"


def schema_header(out: Path) -> str:
    """The editor schema's header line, by a relative path that still resolves once the file moves: inside a clone of
    this project (this one, or the user's fork), that clone's schema (as the shipped stacks name it); anywhere else the
    copy written beside the file (`schema_beside`), so the two move together into the user's own repository.
    yaml-language-server resolves a relative `$schema` against the stack file's own folder (its yamlSchemaService
    resolveSchemaRef; tests/iluvatar/test_init.py opens a moved file in the pinned server)."""
    clone = _clone_schema(out)
    if clone is None:
        return f"# yaml-language-server: $schema=./{SCHEMA_BESIDE}"
    rel = os.path.relpath(clone, out.resolve().parent)
    return f"# yaml-language-server: $schema={rel if rel.startswith('..') else './' + rel}"


def schema_beside(out: Path) -> Path | None:
    """Where the schema's copy goes for a stack file written outside a clone of this project; None inside one."""
    return None if _clone_schema(out) is not None else out.with_name(SCHEMA_BESIDE)


def _clone_schema(out: Path) -> Path | None:
    """The schema of the clone the stack file is written in (the nearest folder up with stacks/stack.schema.json)."""
    folder = out.resolve().parent
    for d in (folder, *folder.parents):
        if (d / SCHEMA.relative_to(ROOT)).is_file():
            return d / SCHEMA.relative_to(ROOT)
    return None


COMMENTS = {
    "iluvatar:network": ["# Eä: the LAN. DHCP hands out dhcpRange; Cilium gives Services addresses from loadBalancerPool."],
    "iluvatar:nodes": [
        "# Each machine once: its MAC and IP feed DHCP, DNS, netboot and Talos. Check each installDisk against the",
        "# machine's disks (Talos installs there, wiping it); dataDisks: [/dev/nvme0n1] gives one to storage.",
    ],
}


# The Ainur's comment says what their mode asks of the router (docs/layers/netboot.md#dhcp-modes).
AINUR_COMMENT = {
    "proxy": [
        "# The Ainur: the Pis' k3s cluster, serving DNS and netboot at serviceIp. netboot.mode proxy: the router keeps",
        "# the LAN's DHCP (give it each machine's MAC and IP as a static lease); dhcp: the Ainur serve it, router's off.",
    ],
    "dhcp": [
        "# The Ainur: the Pis' k3s cluster, serving DHCP, DNS and netboot at serviceIp. netboot.mode dhcp: they are the",
        "# LAN's DHCP server, so the router's DHCP must be off; proxy leaves DHCP to the router.",
    ],
}


def text(answers: Answers, cfg: Mapping[str, Any], out: Path) -> str:
    lines = [
        schema_header(out),
        f"# The stack {answers.stack}, written by `iluvatar init`. Every key: docs/reference/stack.md.",
        "config:",
    ]
    for key, value in cfg.items():
        lines += ["  " + c for c in COMMENTS.get(key, [])]
        if key == "iluvatar:ainur":
            lines += ["  " + c for c in AINUR_COMMENT[value["netboot"]["mode"]]]
        if key == "pulumi:disable-default-providers":
            lines.append("  # Never fall back to an ambient kubeconfig or cloud login: every resource names its provider.")
        lines += _block(key, value, 2)
    return "\n".join(lines) + "\n"


# --- Checked before it is written ----------------------------------------------------------------------------

# The flag each config key comes from, longest first (the key a problem names, or the one above it).
_FROM: tuple[tuple[str, str], ...] = (
    ("iluvatar:network.lan", "lan"),
    ("iluvatar:network.gateway", "gateway"),
    ("iluvatar:network.dns", "dns"),
    ("iluvatar:network.domain", "domain"),
    ("iluvatar:network.dhcpRange", "dhcp_range"),
    ("iluvatar:network.loadBalancerPool", "lb_pool"),
    ("iluvatar:network.externalDomain", "external_domain"),
    ("iluvatar:ainur.sshAuthorizedKeys", "ssh_key"),
    ("iluvatar:ainur.netboot.routerPool", "router_pool"),
    ("iluvatar:ainur.netboot", "dhcp_mode"),
    ("iluvatar:gitops", "gitops"),
    ("iluvatar:monitoring", "monitoring"),
    ("iluvatar:identity", "identity"),
    ("iluvatar:backup", "backup"),
    ("iluvatar:edge.acmeEmail", "acme_email"),
    ("iluvatar:cloudflare", "cloudflare"),
)
_NODE = re.compile(r"^iluvatar:nodes\[(\d+)\]")


def said_against_flags(problem: Problem, answers: Answers, machines: Sequence[Machine]) -> str:
    """A problem the model found in the stack, said against the flag whose value it is about."""
    node = _NODE.match(problem.path)
    if node is not None:
        return f"--machine {machines[int(node.group(1))].given}: {problem.message}"
    if problem.path == "iluvatar:nodes":
        return f"--machine: {problem.message}"
    for prefix, name in _FROM:
        if problem.path == prefix or problem.path.startswith((prefix + ".", prefix + "[")):
            return f"{flag(answers, name)}: {problem.message}"
    return f"{problem.path} (derived from the flags): {problem.message}"


def build(answers: Answers, out: Path) -> tuple[str, StackFile]:
    """The stack file's text, checked: it reads back as the config it was made from, and validates as an inventory."""
    cfg = config(answers)
    written = text(answers, cfg, out)
    doc = load_yaml(written)
    # What Pulumi (yaml.v3) reads back must be exactly what was meant: a quoting slip would change a value.
    assert doc == {"config": cfg}, "init wrote a value that reads back as another"
    sf = StackFile(out, dict(doc["config"]), frozenset(), SecretsManager())
    machines = [*(m for m in answers.machines if m.role in AINUR_ROLES), *(m for m in answers.machines if m.role in ARDA_ROLES)]
    problems = list(check_stack_settings(sf))
    try:
        sf.parse()
    except StackConfigError as e:
        problems += e.problems
    if problems:
        raise FlagError([said_against_flags(p, answers, machines) for p in problems])
    return written, sf


# --- Asking ------------------------------------------------------------------------------------------------

Ask = Callable[[str, str | None], str]


def _default_key() -> str | None:
    for name in ("id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub"):
        path = Path.home() / ".ssh" / name
        if path.is_file():
            return str(path)
    return None


def _unflagged(error: FlagError, answer: str) -> str:
    """A FlagError said against the answer at a terminal: `--monitoring X: why` becomes `X: why`."""
    whys = [line.split(": ", 1)[1] if line.startswith("--") and ": " in line else line for line in error.lines]
    return "; ".join(why if why.startswith(answer) else f"{answer}: {why}" for why in whys)


def _asking(ask: Ask, say: Callable[[str], None], check: Callable[[str], object]) -> Ask:
    """`ask`, each answer checked as it is given (`check` raises FlagError) and the question asked again until it passes:
    one mistyped answer costs that answer, not the whole session."""

    def asked(question: str, default: str | None) -> str:
        while True:
            answer = ask(question, default)
            try:
                check(answer)
            except FlagError as e:
                say(f"  {_unflagged(e, answer)}; asked again")
                continue
            return answer

    return asked


def _check_address(name: str) -> Callable[[str], object]:
    def check(text: str) -> object:
        bad = [part for part in text.split(",") if _address(part) is None]
        if bad:
            raise FlagError([f"{FLAGS[name]} {text}: {bad[0].strip() or '(nothing)'} is not an IPv4 address (e.g. 192.168.0.1)"])
        return text

    return check


def _check_range(name: str) -> Callable[[str], object]:
    def check(text: str) -> object:
        pool = _range(text, name)
        if _pool(pool) is None:
            raise FlagError([f"{FLAGS[name]} {text}: write it as START-END, two IPv4 addresses, the first the lower"])
        return pool

    return check


def _check_key(text: str) -> object:
    key = read_ssh_key(text)
    if not key.startswith(("ssh-", "ecdsa-", "sk-")):
        raise FlagError([f"--ssh-key {text}: is neither an OpenSSH public key (ssh-ed25519 AAAA...) nor a .pub file that exists"])
    return key


def _check_mode(text: str) -> object:
    if text not in DHCP_MODES:
        raise FlagError([f"--dhcp-mode {text}: is neither proxy nor dhcp"])
    return text


def _check_router_pool(text: str) -> object:
    if text.strip() == "none":
        return text
    return _check_range("router_pool")(text)


def _ask_router_pool(a: Answers, ask: Ask, say: Callable[[str], None]) -> Answers:
    """In dhcp mode, the pool the router lent (no default: only the user knows it, and a guess is a duplicate address)."""
    if a.dhcp_mode != "dhcp" or a.router_pool is not None:
        return a
    say(f"The router's pool: {ROUTER_POOL}.")
    return replace(a, router_pool=_asking(ask, say, _check_router_pool)("router's DHCP pool (START-END, or none)", None))


def _check_layer(name: str, stack: str) -> Callable[[str], object]:
    """The layer flag's own reading (monitoring, identity, backup), `-` or nothing leaving the layer off."""

    def check(text: str) -> object:
        if text in ("-", ""):
            return None
        given: dict[str, Any] = {name: text}
        answers = replace(Answers(stack), **given)
        return {"monitoring": monitoring, "backup": backup}[name](answers) if name != "identity" else identity(answers, "")

    return check


def ask_missing(answers: Answers, ask: Ask, say: Callable[[str], None]) -> Answers:
    """Ask for what the flags left out, each with the default init would take (Enter takes it; `-` leaves a layer off).

    The answers take the flags' own forms (a machine as `--machine` takes it, a receiver as `--monitoring`), so what
    is asked and what is given are checked the same way. Flags that name the LAN and the machines say the user wants
    no questions: then only what a stack cannot do without (the Pis' SSH key) is asked, and every default is taken.
    """
    a = answers
    if a.lan is not None and a.machines:
        if any(m.role in AINUR_ROLES for m in a.machines) and a.ssh_key is None:
            a = replace(a, ssh_key=ask("SSH public key the Pis let in (a key, or its .pub file)", _default_key()))
        return _ask_router_pool(a, ask, say)
    if a.lan is None:
        lan = _asking(ask, say, lambda text: _network(Answers(a.stack, lan=text)))
        a = replace(a, lan=lan("LAN, in CIDR form (e.g. 192.168.0.0/24)", None))
    try:
        net, _, _ = network(replace(a, gateway=None, dns=None, dhcp_range=None, lb_pool=None))
    except FlagError:
        net = None
    if net is not None:
        if a.gateway is None:
            a = replace(a, gateway=_asking(ask, say, _check_address("gateway"))("router (gateway)", net["gateway"]))
        if a.dns is None:
            a = replace(a, dns=_asking(ask, say, _check_address("dns"))("DNS servers, comma-separated", a.gateway or net["gateway"]))
        if a.domain is None:
            a = replace(a, domain=ask("the LAN's internal domain", DOMAIN))
        if a.dhcp_range is None:
            dhcp = _asking(ask, say, _check_range("dhcp_range"))
            a = replace(a, dhcp_range=dhcp("DHCP range (the router's or the Ainur's)", f"{net['dhcpRange']['start']}-{net['dhcpRange']['end']}"))
        if a.lb_pool is None:
            pool = _asking(ask, say, _check_range("lb_pool"))
            a = replace(a, lb_pool=pool("load-balancer pool", f"{net['loadBalancerPool']['start']}-{net['loadBalancerPool']['end']}"))
    if not a.machines:
        machines: list[Machine] = []
        while True:
            n = len(machines) + 1
            name = ask(f"machine {n}: name (Enter when done)" if machines else f"machine {n}: name", None if not machines else "")
            if not name:
                break
            mac = ask(f"machine {n}: MAC", None)
            role = ask(f"machine {n}: role (valar, maiar: a Pi of the Ainur; valinor: a control plane; istari: a worker)", "valinor")
            board = ask(f"machine {n}: board ({', '.join(sorted(BOARDS))})", "rpi5" if role in AINUR_ROLES else "generic-x86")
            ip = ask(f"machine {n}: IP (Enter: the next free one)", "")
            disk = ask(f"machine {n}: disk the OS installs on, wiped", INSTALL_DISK.get(board, "/dev/sda"))
            fields = (("name", name), ("mac", mac), ("role", role), ("board", board), ("ip", ip), ("disk", disk))
            given = ",".join(f"{k}={v}" for k, v in fields if v)
            try:
                machines.append(parse_machine(given))
            except FlagError as e:
                say(f"{e}; asking for machine {n} again")
        a = replace(a, machines=tuple(machines))
    if any(m.role in AINUR_ROLES for m in a.machines) and a.ssh_key is None:
        a = replace(a, ssh_key=_asking(ask, say, _check_key)("SSH public key the Pis let in (a key, or its .pub file)", _default_key()))
    if any(m.role in AINUR_ROLES for m in a.machines) and a.dhcp_mode is None:
        say("How the Ainur share the LAN's DHCP with your router:")
        for mode, what in DHCP_MODES.items():
            say(f"  {mode}: {what}")
        a = replace(a, dhcp_mode=_asking(ask, say, _check_mode)("DHCP mode (proxy or dhcp)", DEFAULT_MODE))
    a = _ask_router_pool(a, ask, say)
    optional = (
        ("gitops", "GitOps repository URL for Argo CD (- for none)"),
        ("monitoring", "alerts to ntfy=<url>, webhook=<url> or email=<to>,from=<from>,smarthost=<host:port> (- for no monitoring)"),
        ("identity", "sign-in: github=<org>,client-id=<id> or static=<admin e-mail> (- for none)"),
        ("backup", "backups to nfs://<server>/<export> or s3://<host>/<bucket> (- for none)"),
        ("cloudflare", "Cloudflare account id, to publish apps through a tunnel (- for none)"),
    )
    for name, question in optional:
        if getattr(a, name) is None:
            if name in ("monitoring", "identity", "backup") and a.gitops is None:
                continue  # each needs GitOps (init says so when given as a flag)
            if name == "identity" and not any(m.role in AINUR_ROLES for m in a.machines):
                continue
            checked = _asking(ask, say, _check_layer(name, a.stack)) if name in ("monitoring", "identity", "backup") else ask
            value = checked(question, "-")
            answer: dict[str, Any] = {name: None if value in ("-", "") else value}
            a = replace(a, **answer)
    if a.cloudflare is not None:
        if a.external_domain is None:
            a = replace(a, external_domain=ask("the public zone Cloudflare serves (e.g. example.com)", None))
        if a.acme_email is None:
            a = replace(a, acme_email=ask("e-mail for Let's Encrypt", None))
    return a
