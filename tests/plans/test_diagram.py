"""The diagram's Graphviz source, line by line, where the README's picture does not reach.

tests/iluvatar/test_diagram.py draws the homelab stack (its SVG is the README's) and reads the drawing
back through the CLI; here `dot` is called directly, so mutation testing sees which lines pin what:
a stack without the Ainur (the LAN resolver, one gateway) and a machine on a VLAN.
"""

from __future__ import annotations

from plans.diagram import dot
from plans.network import plan_network
from stacks import load_stack_file, parse_stack, read_stack_file
from tests.edit import HOMELAB, RK1

RK1_DOT = [
    "digraph iluvatar {",
    "  graph [rankdir=TB, newrank=true, forcelabels=true, fontname=Helvetica, fontsize=12, compound=true, nodesep=0.25, ranksep=0.35, pad=0.1];",
    '  node [shape=box, style="rounded,filled", fontname=Helvetica, fontsize=11, fillcolor=white, margin="0.12,0.05"];',
    "  edge [fontname=Helvetica, fontsize=11];",
    '  "internet" [label="Internet", shape="ellipse"];',
    '  "router" [label="router\\n10.10.0.1", shape="box", style="filled", fillcolor="#eeeeee"];',
    "  subgraph cluster_lan {",
    '    label="Eä · LAN 10.10.0.0/24 · turing.home.arpa";',
    '    style="rounded"; color="#555555";',
    '    "pools" [label="DHCP 10.10.0.100-10.10.0.199\\nload balancers 10.10.0.200-10.10.0.219", shape="note"];',
    "    subgraph cluster_arda {",
    '      label="Arda (turing) · Talos v1.12.4\\nKubernetes v1.34.1 · Cilium";',
    '      style="rounded,filled"; fillcolor="#e8f5e9";',
    '    "arda_vip" [label="Kubernetes API VIP\\n10.10.0.10", shape="box", fillcolor="#a5d6a7"];',
    '      "talos-1" [label="talos-1\\nvalinor · arm64 · rk1\\n10.10.0.11", fillcolor="#95d5b2"];',
    '      "talos-2" [label="talos-2\\nvalinor · arm64 · rk1\\n10.10.0.12", fillcolor="#95d5b2"];',
    '      "talos-3" [label="talos-3\\nvalinor · arm64 · rk1\\n10.10.0.13", fillcolor="#95d5b2"];',
    '      "talos-4" [label="talos-4\\nistari · arm64 · rk1\\n10.10.0.14", fillcolor="#d8f3dc"];',
    '      "arda_vip" -> "talos-1" [style=invis];',
    '      "talos-1" -> "talos-2" [style=invis];',
    '      "talos-2" -> "talos-3" [style=invis];',
    '      "talos-3" -> "talos-4" [style=invis];',
    "    }",
    "    subgraph cluster_gateways {",
    '      label="Envoy gateway\\n(Cilium L2 address)";',
    '      style="rounded,dashed";',
    '      "envoy-internal" [label="envoy-internal\\n10.10.0.218", shape="hexagon", fillcolor="#bbdefb"];',
    '      "resolver" [label="LAN resolver\\n10.10.0.217", shape="hexagon", fillcolor="#e1bee7"];',
    '      "envoy-internal" -> "resolver" [style=invis];',
    "    }",
    "  }",
    "  internet -> router [dir=none];",
    "  router -> arda_vip [lhead=cluster_arda, dir=none];",
    '  router -> "envoy-internal" [xlabel="LAN / VPN"];',
    '  router -> resolver [xlabel="DNS", style=dashed];',
    "}",
]


def test_a_stack_without_the_ainur_draws_its_lan_resolver_and_one_gateway() -> None:
    stack = load_stack_file(RK1)
    assert dot(stack, plan_network(stack)).splitlines() == RK1_DOT
    assert dot(stack, plan_network(stack)).endswith("}\n")


def test_a_vlan_machine_is_drawn_in_its_vlan_only() -> None:
    raw = dict(read_stack_file(HOMELAB).config)
    nodes = list(raw["iluvatar:nodes"])
    nodes[7] = {**nodes[7], "vlan": "iot", "ip": "192.168.20.32"}
    raw["iluvatar:nodes"] = nodes
    stack = parse_stack(raw)
    lines = dot(stack, plan_network(stack)).splitlines()
    start = lines.index("  subgraph cluster_vlan_iot {")
    assert lines[start : start + 8] == [
        "  subgraph cluster_vlan_iot {",
        '    label="VLAN 20 iot";',
        '    style="rounded"; color="#555555";',
        '    "vlan-iot" [label="192.168.20.0/24", shape="plaintext", style=""];',
        '    "saruman" [label="saruman\\nistari · amd64 · generic-x86\\n192.168.20.32", fillcolor="#d8f3dc"];',
        '    "vlan-iot" -> "saruman" [style=invis];',
        "  }",
        '  router -> "vlan-iot" [lhead=cluster_vlan_iot, dir=none, style=dashed];',
    ]
    assert [line for line in lines if "saruman" in line] == lines[start + 4 : start + 6]
