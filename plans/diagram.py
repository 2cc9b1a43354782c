"""Diagram: the homelab's topology as a Graphviz graph, drawn from the inventory and the plan.

The LAN and its VLANs, the Ainur and Arda clusters with each machine (name, role, arch, IP),
the VIPs, the two Envoy gateways, and the public path through Cloudflare.
"""

from __future__ import annotations

from plans.network import NetworkPlan
from stacks.model import Node, StackConfig

ROLE_COLOURS = {"valar": "#f4d35e", "maiar": "#faf0ca", "valinor": "#95d5b2", "istari": "#d8f3dc"}


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _box(ident: str, *label: str, indent: int = 2, **attrs: str) -> str:
    extra = "".join(f", {k}={_q(v)}" for k, v in attrs.items())
    return " " * indent + f"{_q(ident)} [label={_q(chr(10).join(label))}{extra}];"


def _machine(node: Node) -> str:
    return _box(node.name, node.name, f"{node.role} · {node.arch} · {node.board}", str(node.ip), indent=4, fillcolor=ROLE_COLOURS[node.role])


def _cluster(ident: str, label: str, fill: str) -> list[str]:
    return [f"    subgraph {ident} {{", f"    label={_q(label)};", f'    style="rounded,filled"; fillcolor="{fill}";']


def dot(stack: StackConfig, plan: NetworkPlan) -> str:
    net, arda = stack.network, stack.arda
    lines = [
        "digraph iluvatar {",
        "  graph [rankdir=TB, fontname=Helvetica, fontsize=12, compound=true, nodesep=0.3, ranksep=0.6];",
        '  node [shape=box, style="rounded,filled", fontname=Helvetica, fontsize=10, fillcolor=white];',
        "  edge [fontname=Helvetica, fontsize=9];",
        _box("internet", "Internet", shape="ellipse"),
        _box("cloudflare", "Cloudflare DNS + Tunnel", f"*.{net.external_domain or '(no external domain)'}", shape="cylinder", fillcolor="#fde2c4"),
        _box("router", "router / gateway", str(net.gateway), shape="diamond"),
        "  subgraph cluster_lan {",
        f"    label={_q(f'Eä · LAN {net.lan} · {net.domain}')};",
        '    style="rounded"; color="#555555";',
        _box("pools", f"DHCP {net.dhcp_range}", f"load balancers {net.load_balancer_pool}", indent=4, shape="note"),
    ]
    if stack.ainur is not None:
        lines += _cluster("cluster_ainur", f"Ainur · k3s {stack.ainur.k3s_version}", "#fff8e1")
        lines.append(_box("ainur_vip", "API VIP", str(stack.ainur.vip), indent=4, shape="circle", fillcolor="#ffe082"))
        lines += [_machine(n) for n in stack.ainur_nodes]
        lines.append("    }")
    lines += _cluster(
        "cluster_arda", f"Arda ({arda.cluster_name}) · Talos {arda.talos_version} · Kubernetes {arda.kubernetes_version} · Cilium", "#e8f5e9"
    )
    lines.append(_box("arda_vip", "API VIP", str(arda.vip), indent=4, shape="circle", fillcolor="#a5d6a7"))
    lines += [_machine(n) for n in stack.arda_nodes]
    lines += ["    subgraph cluster_gateways {", '    label="Envoy gateways (Cilium L2 load balancers)"; style="rounded,dashed";']
    lines += [_box(gw, gw, ip, indent=4, shape="hexagon", fillcolor="#bbdefb") for gw, ip in plan.gateways.items()]
    lines += ["    }", "    }", "  }"]
    for vlan in plan.vlans:
        ident = f"vlan-{vlan['name']}"
        lines.append(_box(ident, f"VLAN {vlan['id']} {vlan['name']}", str(vlan["cidr"]), shape="folder"))
        lines.append(f"  router -> {_q(ident)} [dir=none, style=dashed];")
    lines += [
        '  internet -> cloudflare [label="HTTPS"];',
        '  cloudflare -> "envoy-external" [label="tunnel"];',
        '  router -> "envoy-internal" [label="LAN / VPN"];',
        "  internet -> router [dir=none];",
        "  router -> arda_vip [lhead=cluster_arda, dir=none];",
    ]
    if stack.ainur is not None:
        lines.append("  router -> ainur_vip [lhead=cluster_ainur, dir=none];")
        netbooted = [n for n in stack.arda_nodes if stack.boots_from_network(n)]
        if netbooted:
            lines.append(f'  ainur_vip -> {_q(netbooted[0].name)} [ltail=cluster_ainur, lhead=cluster_arda, style=dotted, label="PXE / netboot"];')
    lines.append("}")
    return "\n".join(lines) + "\n"
