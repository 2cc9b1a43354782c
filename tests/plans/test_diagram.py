"""The diagram's Graphviz source, line by line, where the README's picture does not reach.

tests/iluvatar/test_diagram.py draws the homelab stack (its SVG is the README's) and reads the drawing
back through the CLI; here `dot` is called directly, so mutation testing sees which lines pin what:
a stack without the Ainur (the LAN resolver, one gateway), a machine on a VLAN, and every other box a stack
names (the Ainur's service address, mirror and front door; the backup target, the NFS server and the BMCs).
"""

from __future__ import annotations

from plans.diagram import dot
from plans.network import plan_network
from stacks import StackConfig, load_stack_file, parse_stack, read_stack_file
from tests.edit import HOMELAB, RK1, homelab_stack_file

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
    '      label="Arda (turing) · Talos v1.14.1\\nKubernetes v1.35.1 · Cilium";',
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


def rk1_with_devices(backup: str, region: str | None = None) -> list[str]:
    """rk1 with a BMC powering its four machines, NFS volumes on a NAS, and backups to `backup` (in `region`, if given)."""
    raw = dict(read_stack_file(RK1).config)
    raw["iluvatar:nodes"] = [{**n, "power": {"bmc": {"address": "10.10.0.6", "slot": i + 1}}} for i, n in enumerate(raw["iluvatar:nodes"])]
    raw["iluvatar:storage"] = {"nfs": {"server": "10.10.0.40", "share": "/volume1/kubernetes"}}
    raw["iluvatar:backup"] = {"target": backup, "etcd": {"arda": backup.startswith("s3")}, **({"region": region} if region else {})}
    stack = parse_stack(raw)
    return dot(stack, plan_network(stack)).splitlines()


def test_every_device_the_stack_names_is_a_box_on_the_lan_with_its_edges() -> None:
    lines = rk1_with_devices("nfs://10.10.0.40/volume1/backups")
    start = lines.index("    subgraph cluster_devices {")
    assert lines[start : start + 10] == [
        "    subgraph cluster_devices {",
        '      label="on the LAN";',
        '      style="rounded,dashed";',
        '      "backup" [label="backups · NFS\\n10.10.0.40/volume1/backups", shape="cylinder", fillcolor="#eceff1"];',
        '      "nfs" [label="NFS volumes\\n10.10.0.40:/volume1/kubernetes", shape="cylinder", fillcolor="#eceff1"];',
        '      "bmc-10.10.0.6" [label="BMC (Turing Pi 2)\\n10.10.0.6", shape="box", fillcolor="#eceff1"];',
        '      "backup" -> "nfs" [style=invis];',
        '      "nfs" -> "bmc-10.10.0.6" [style=invis];',
        "    }",
        # Below the gateways' column, not a column of its own.
        '    "resolver" -> "backup" [style=invis];',
    ]
    assert lines[-8:] == [
        '  router -> resolver [xlabel="DNS", style=dashed];',
        '  arda_vip -> backup [style=dashed, constraint=false, xlabel="backups"];',
        '  arda_vip -> nfs [style=dashed, constraint=false, xlabel="volumes"];',
        *(f'  "bmc-10.10.0.6" -> "talos-{i}" [style=dotted, constraint=false, xlabel="slot {i}"];' for i in range(1, 5)),
        "}",
    ]


def test_an_s3_target_off_the_lan_is_drawn_outside_it() -> None:
    # AWS's regional endpoint with its own region (backup.region), as a house's stack has it.
    lines = rk1_with_devices("s3://s3.eu-west-1.amazonaws.com/homelab-backups/rk1", region="eu-west-1")
    box = '"backup" [label="backups · S3\\ns3.eu-west-1.amazonaws.com/homelab-backups/rk1", shape="cylinder", fillcolor="#eceff1"];'
    assert f"  {box}" in lines and f"      {box}" not in lines
    start = lines.index("    subgraph cluster_devices {")
    assert lines[start + 3].startswith('      "nfs" [') and lines[start + 7] == '    "resolver" -> "nfs" [style=invis];'
    # An S3 endpoint at a LAN address is on the LAN (a name in the internal zone would be too, but every name the plan
    # resolves is a machine or a VIP of the clusters, which stacks.data refuses as a backup's server).
    stack = load_stack_file_with_secrets()
    box = '"backup" [label="backups · S3\\n192.168.0.40:9000/homelab", shape="cylinder", fillcolor="#eceff1"];'
    assert f"      {box}" in dot(stack, plan_network(stack)).splitlines()


def test_the_ainur_column_holds_their_service_address_mirror_and_front_door() -> None:
    stack = load_stack_file_with_secrets()
    lines = dot(stack, plan_network(stack)).splitlines()
    start = lines.index("    subgraph cluster_ainur {")
    assert lines[start + 3 : start + 7] == [
        '    "ainur_vip" [label="k3s API VIP\\n192.168.0.10", shape="box", fillcolor="#ffe082"];',
        '    "netboot" [label="DHCP · DNS · netboot\\n192.168.0.14", shape="box", fillcolor="#ffe082"];',
        '    "git_mirror" [label="Git mirror\\n192.168.0.15", shape="box", fillcolor="#ffe082"];',
        '    "front_door" [label="dex: sign-in (Dex)\\nca: the CA\'s page\\n192.168.0.16", shape="box", fillcolor="#ffe082"];',
    ]
    # The netboot arrow leaves the address that serves it, not the k3s API's.
    assert '  netboot -> "taniquetil" [style=dotted, constraint=false, xlabel="netboot"];' in lines


def load_stack_file_with_secrets() -> StackConfig:
    return homelab_stack_file().parse()
