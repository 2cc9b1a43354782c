"""Diagram: the homelab's topology as a Graphviz graph, drawn from the inventory and the plan.

It draws only what the stack has: the LAN and each VLAN as boxes, every machine inside the network it
sits on (a machine on a VLAN inside its VLAN), the Ainur and Arda clusters with their VIPs, the Envoy
gateways the network plan reserves, and the public path (Cloudflare, its tunnel and envoy-external)
only when the stack turns Cloudflare on. Each cluster is one column, machines one under the other, so the picture stays narrow
enough that its text is readable where the README shows it.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

from plans.network import NetworkPlan
from stacks.edge import edge_addresses
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
        vip = _box("ainur_vip", "k3s API VIP", str(stack.ainur.vip), indent=4, shape="box", fillcolor="#ffe082")
        ainur = [n for n in stack.ainur_nodes if n in on_lan]
        lines += _column("cluster_ainur", f"Ainur · k3s {stack.ainur.k3s_version}", 'style="rounded,filled"; fillcolor="#fff8e1";', [vip], ainur, 4)
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
    lines.append("  }")
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
            lines.append(f'  ainur_vip -> {_q(netbooted[0].name)} [style=dotted, constraint=false, xlabel="netboot"];')
    lines.append("}")
    return "\n".join(lines) + "\n"
