"""Diagram: the homelab's topology as a Graphviz graph, drawn from the inventory and the plan.

It draws only what the stack has, and every box it names: the LAN and each VLAN as boxes, every machine inside the
network it sits on (a machine on a VLAN inside its VLAN), the Ainur and Arda clusters with their VIPs, the Ainur's
service address (DHCP, TFTP, HTTP, DNS), their Git mirror and the sign-in front door (Dex and the CA page), the Envoy
gateways the network plan reserves, the public path (Cloudflare, its tunnel and envoy-external) only when the stack
turns Cloudflare on, and the other devices the stack names on the LAN: the backup target and the NFS server (a NAS,
or an S3 endpoint, outside the LAN when it is not on it) and each BMC with the machines it powers. Each cluster is
one column, machines one under the other, so the picture stays narrow enough that its text is readable where the
project's front page shows it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address
from itertools import pairwise

from plans.network import NetworkPlan
from stacks.data import target_of
from stacks.edge import edge_addresses
from stacks.identity import hosts as identity_hosts
from stacks.model import Node, StackConfig

ROLE_COLOURS = {"valar": "#f4d35e", "maiar": "#faf0ca", "valinor": "#95d5b2", "istari": "#d8f3dc"}
PUBLIC_GATEWAY = "envoy-external"
PRIVATE_GATEWAY = "envoy-internal"


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _box(ident: str, *label: str, indent: int = 2, **attrs: str) -> str:
    extra = "".join(f", {k}={_q(v)}" for k, v in attrs.items())
    return " " * indent + f"{_q(ident)} [label={_q(chr(10).join(label))}{extra}];"


def _machine(node: Node, indent: int) -> str:
    return _box(node.name, node.name, f"{node.role} · {node.arch} · {node.board}", str(node.ip), indent=indent, fillcolor=ROLE_COLOURS[node.role])


def _column(ident: str, label: str, style: str, top: list[str], nodes: Sequence[Node], indent: int) -> list[str]:
    """A cluster drawn as one column: its `top` lines, then each machine under the one before."""
    pad = " " * indent
    lines = [f"{pad}subgraph {ident} {{", f"{pad}  label={_q(label)};", f"{pad}  {style}", *top]
    lines += [_machine(n, indent + 2) for n in nodes]
    # Invisible edges stack the column; without them Graphviz lays every machine side by side.
    anchors = [line.split('"')[1] for line in top] + [n.name for n in nodes]
    lines += [f"{pad}  {_q(a)} -> {_q(b)} [style=invis];" for a, b in pairwise(anchors)]
    lines.append(f"{pad}}}")
    return lines


def dot(stack: StackConfig, plan: NetworkPlan) -> str:
    net, arda = stack.network, stack.arda
    on_lan = [n for n in stack.nodes if n.vlan is None]
    # The public path exists with the Cloudflare tunnel (plans.edge.gateway_names).
    cloudflare = stack.public_ingress == "cloudflare-tunnel"
    lines = [
        "digraph iluvatar {",
        "  graph [rankdir=TB, newrank=true, forcelabels=true, fontname=Helvetica, fontsize=12, compound=true, nodesep=0.25, ranksep=0.35, pad=0.1];",
        '  node [shape=box, style="rounded,filled", fontname=Helvetica, fontsize=11, fillcolor=white, margin="0.12,0.05"];',
        "  edge [fontname=Helvetica, fontsize=11];",
        _box("internet", "Internet", shape="ellipse"),
        _box("router", "router", str(net.gateway), shape="box", style="filled", fillcolor="#eeeeee"),
    ]
    if cloudflare:
        lines.append(_box("cloudflare", "Cloudflare", f"*.{net.external_domain}", shape="cylinder", fillcolor="#fde2c4"))
    if cloudflare:
        lines.append('  { rank=same; "internet"; "cloudflare"; }')
    # VLANs first, so they sit left of the LAN: each holds its own machines.
    for vlan in plan.vlans:
        ident = f"vlan-{vlan['name']}"
        cluster = f"cluster_vlan_{vlan['name']}"
        anchor = _box(ident, str(vlan["cidr"]), indent=4, shape="plaintext", style="")
        members = [n for n in stack.nodes if n.vlan == vlan["name"]]
        lines += _column(cluster, f"VLAN {vlan['id']} {vlan['name']}", 'style="rounded"; color="#555555";', [anchor], members, 2)
        lines.append(f"  router -> {_q(ident)} [lhead={cluster}, dir=none, style=dashed];")
    lines += [
        "  subgraph cluster_lan {",
        f"    label={_q(f'Eä · LAN {net.lan} · {net.domain}')};",
        '    style="rounded"; color="#555555";',
        _box("pools", f"DHCP {net.dhcp_range}", f"load balancers {net.load_balancer_pool}", indent=4, shape="note"),
    ]
    if stack.ainur is not None:
        lines += _column(
            "cluster_ainur",
            f"Ainur · k3s {stack.ainur.k3s_version}",
            'style="rounded,filled"; fillcolor="#fff8e1";',
            _ainur_top(stack),
            [n for n in stack.ainur_nodes if n in on_lan],
            4,
        )
    vip = _box("arda_vip", "Kubernetes API VIP", str(arda.vip), indent=4, shape="box", fillcolor="#a5d6a7")
    label = f"Arda ({arda.cluster_name}) · Talos {arda.talos_version}\nKubernetes {arda.kubernetes_version} · Cilium"
    lines += _column("cluster_arda", label, 'style="rounded,filled"; fillcolor="#e8f5e9";', [vip], [n for n in stack.arda_nodes if n in on_lan], 4)
    # The public gateway is drawn only with the public path that reaches it; the plan reserves its address either way.
    shown = {gw: ip for gw, ip in plan.gateways.items() if gw != PUBLIC_GATEWAY or cloudflare}
    if shown:
        gateways = [_box(gw, gw, ip, indent=6, shape="hexagon", fillcolor="#bbdefb") for gw, ip in sorted(shown.items(), reverse=True)]
        title = "Envoy gateways" if len(shown) > 1 else "Envoy gateway"
        if stack.has_lan_resolver:
            # Without the Ainur, the LAN's split DNS is a resolver on Arda that the router forwards to.
            resolver = edge_addresses(net.load_balancer_pool, stack.edge)["resolver"]
            gateways.append(_box("resolver", "LAN resolver", str(resolver), indent=6, shape="hexagon", fillcolor="#e1bee7"))
        lines += _column("cluster_gateways", f"{title}\n(Cilium L2 address)", 'style="rounded,dashed";', gateways, [], 4)
    named = devices(stack)
    lan_devices = [d.box for d in named if d.on_lan]
    if lan_devices:
        lines += _column("cluster_devices", "on the LAN", 'style="rounded,dashed";', lan_devices, [], 4)
        if shown:
            # Under the gateways, not beside them: one more column would shrink every label where the picture is shown.
            last = gateways[-1].split('"')[1]
            lines.append(f"    {_q(last)} -> {_q(lan_devices[0].split(chr(34))[1])} [style=invis];")
    lines.append("  }")
    lines += [f"  {d.box.strip()}" for d in named if not d.on_lan]
    lines += ["  internet -> router [dir=none];", "  router -> arda_vip [lhead=cluster_arda, dir=none];"]
    if PRIVATE_GATEWAY in shown:
        lines.append(f'  router -> {_q(PRIVATE_GATEWAY)} [xlabel="LAN / VPN"];')
    if stack.has_lan_resolver and shown:
        lines.append('  router -> resolver [xlabel="DNS", style=dashed];')
    if cloudflare:
        lines.append('  internet -> cloudflare [xlabel="HTTPS"];')
        if PUBLIC_GATEWAY in shown:
            lines.append(f'  cloudflare -> {_q(PUBLIC_GATEWAY)} [xlabel="tunnel"];')
    if stack.ainur is not None:
        lines.append("  router -> ainur_vip [lhead=cluster_ainur, dir=none];")
        netbooted = [n for n in stack.arda_nodes if stack.boots_from_network(n)]
        if netbooted:
            lines.append(f'  netboot -> {_q(netbooted[0].name)} [style=dotted, constraint=false, xlabel="netboot"];')
    for device in named:
        lines += device.edges
    lines.append("}")
    return "\n".join(lines) + "\n"


def _ainur_top(stack: StackConfig) -> list[str]:
    """The Ainur column's addresses above the Pis: the API VIP, the LAN's services, the Git mirror, the front door."""
    assert stack.ainur is not None
    a, domain = stack.ainur, stack.network.domain
    top = [
        _box("ainur_vip", "k3s API VIP", str(a.vip), indent=4, shape="box", fillcolor="#ffe082"),
        _box("netboot", "DHCP · DNS · netboot", str(a.service_ip), indent=4, shape="box", fillcolor="#ffe082"),
    ]
    if a.git_mirror is not None:
        top.append(_box("git_mirror", "Git mirror", str(a.git_mirror.ip), indent=4, shape="box", fillcolor="#ffe082"))
    if stack.identity is not None:
        # Dex and the CA page by their names (dex.<domain>, ca.<domain> unless identity.hosts says), at the front door.
        names = identity_hosts(stack.identity, domain)
        door = (f"{names['dex'].split('.')[0]}: sign-in (Dex)", f"{names['ca'].split('.')[0]}: the CA's page", str(stack.identity.ip))
        top.append(_box("front_door", *door, indent=4, shape="box", fillcolor="#ffe082"))
    return top


def _in_lan(stack: StackConfig, host: str) -> bool:
    try:
        return IPv4Address(host) in stack.network.lan
    except ValueError:
        # A name: a machine's or the internal zone's (the plan resolves it, stacks.data) is on the LAN; any other is not.
        domain = stack.network.domain
        return "." not in host or host == domain or host.endswith(f".{domain}")


@dataclass(frozen=True)
class Device:
    """A device the stack names besides its machines: its box, whether it sits on the LAN, and its edges."""

    box: str
    on_lan: bool
    edges: tuple[str, ...]


def devices(stack: StackConfig) -> list[Device]:
    """The backup target (a NAS, or an S3 endpoint outside the LAN), the NFS server Arda's volumes are on, each BMC."""
    out: list[Device] = []
    if stack.backup is not None:
        target = target_of(stack.backup)
        what = "NFS" if target.kind == "nfs" else "S3"
        where = f"{target.host}/{target.path.strip('/')}" + (f"/{target.prefix}" if target.prefix else "")
        box = _box("backup", f"backups · {what}", where, indent=6, shape="cylinder", fillcolor="#eceff1")
        out.append(
            Device(box, _in_lan(stack, target.host.split(":")[0]), ('  arda_vip -> backup [style=dashed, constraint=false, xlabel="backups"];',))
        )
    if stack.storage.nfs is not None and stack.gitops is not None:
        nfs = stack.storage.nfs
        box = _box("nfs", "NFS volumes", f"{nfs.server}:{nfs.share}", indent=6, shape="cylinder", fillcolor="#eceff1")
        out.append(Device(box, _in_lan(stack, nfs.server), ('  arda_vip -> nfs [style=dashed, constraint=false, xlabel="volumes"];',)))
    bmcs: dict[str, list[tuple[Node, int]]] = {}
    for node in stack.nodes:
        if node.power is not None and node.power.bmc is not None:
            bmcs.setdefault(str(node.power.bmc.address), []).append((node, node.power.bmc.slot))
    for address, powered in bmcs.items():
        ident = f"bmc-{address}"
        box = _box(ident, "BMC (Turing Pi 2)", address, indent=6, shape="box", fillcolor="#eceff1")
        edges = tuple(f'  {_q(ident)} -> {_q(n.name)} [style=dotted, constraint=false, xlabel="slot {slot}"];' for n, slot in powered)
        out.append(Device(box, True, edges))
    return out
