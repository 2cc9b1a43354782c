"""`iluvatar diagram`: Graphviz draws what the stack has, where it is, readably; facts read back from the SVG."""

from __future__ import annotations

import dataclasses
import html
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from plans.diagram import dot
from plans.network import plan_network
from stacks import load_stack_file
from tests.edit import HOMELAB, RK1, ROOT, edit, homelab_doc, secure, write_stack

SVG = "{http://www.w3.org/2000/svg}"
# GitHub shows a README in a column about 830 px wide and scales a wider picture down to fit.
README_WIDTH_PX = 830
# The smallest text a reader should have to read there, in CSS pixels.
READABLE_PX = 11.0


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "iluvatar", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def draw(path: Path, tmp_path: Path) -> str:
    out = tmp_path / f"{path.stem}.svg"
    result = run("diagram", str(path), "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out.read_text()


def boxes(svg: str) -> dict[str, tuple[float, float, float, float]]:
    """Each cluster's and node's drawn outline, by its Graphviz name: (left, top, right, bottom)."""
    found: dict[str, tuple[float, float, float, float]] = {}
    for group in ET.fromstring(svg).iter(f"{SVG}g"):  # noqa: S314 - Graphviz output we just made
        if group.get("class") not in ("cluster", "node"):
            continue
        title = group.find(f"{SVG}title")
        shape = next((e for e in group if e.tag in (f"{SVG}path", f"{SVG}polygon", f"{SVG}ellipse")), None)
        if title is None or title.text is None or shape is None:
            continue
        if shape.tag == f"{SVG}ellipse":
            cx, cy, rx, ry = (float(shape.get(a, "0")) for a in ("cx", "cy", "rx", "ry"))
            found[html.unescape(title.text)] = (cx - rx, cy - ry, cx + rx, cy + ry)
            continue
        points = [(float(x), float(y)) for x, y in re.findall(r"(-?[\d.]+),(-?[\d.]+)", shape.get("d") or shape.get("points") or "")]
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        found[html.unescape(title.text)] = (min(xs), min(ys), max(xs), max(ys))
    return found


def inside(inner: tuple[float, float, float, float], outer: tuple[float, float, float, float]) -> bool:
    return outer[0] <= inner[0] and outer[1] <= inner[1] and inner[2] <= outer[2] and inner[3] <= outer[3]


def texts(svg: str) -> str:
    return html.unescape(svg)  # Graphviz escapes "-" as &#45; in SVG text


def smallest_text_px(svg: str) -> float:
    """The smallest text as shown in the README column: font size in pt, scaled to CSS px and to the column."""
    root = ET.fromstring(svg)  # noqa: S314 - Graphviz output we just made
    width_px = float(root.get("width", "0").removesuffix("pt")) * 4 / 3
    scale = min(1.0, README_WIDTH_PX / width_px)
    sizes = [float(t.get("font-size", "0")) for t in root.iter(f"{SVG}text")]
    return min(sizes) * 4 / 3 * scale


def test_homelab_shows_every_machine_vip_and_its_gateway(tmp_path: Path) -> None:
    svg = texts(draw(HOMELAB, tmp_path))
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    for node in load_stack_file(HOMELAB).nodes:
        for text in (node.name, str(node.ip), f"{node.role} · {node.arch} · {node.board}"):
            assert text in svg, text
    for text in ("k3s API VIP", "192.168.0.10", "Kubernetes API VIP", "192.168.0.20", "envoy-internal", "192.168.0.238",
                 "VLAN 20 iot", "192.168.20.0/24", "LAN 192.168.0.0/24", "netboot"):  # fmt: skip
        assert text in svg, text
    # The homelab stack turns the Cloudflare tunnel on: the public path is drawn; the Ainur serve DNS, no LAN resolver.
    for text in ("Cloudflare", "*.example.com", "tunnel", "envoy-external", "192.168.0.239"):
        assert text in svg, text
    assert "LAN resolver" not in svg


def test_homelab_draws_every_box_its_stack_names_where_it_is(tmp_path: Path) -> None:
    """The Ainur's service address, their Git mirror and the sign-in front door in the Ainur's column; the NAS's S3,
    which backups go to, on the LAN (and a BMC, in a stack that names one)."""
    svg = draw(HOMELAB, tmp_path)
    drawn, shown = boxes(svg), texts(svg)
    for text in ("DHCP · DNS · netboot", "192.168.0.14", "Git mirror", "192.168.0.15", "dex: sign-in (Dex)", "ca: the CA's page", "192.168.0.16"):
        assert text in shown, text
    for name in ("netboot", "git_mirror", "front_door"):
        assert inside(drawn[name], drawn["cluster_ainur"]), name
    assert "backups · S3" in shown and "192.168.0.40:9000/homelab" in shown
    assert inside(drawn["backup"], drawn["cluster_devices"]) and inside(drawn["backup"], drawn["cluster_lan"])
    assert "arda_vip->backup" in shown and "netboot->taniquetil" in shown
    doc = edit(
        homelab_doc(),
        {
            # A BMC powers a module in a Turing Pi 2 slot: saruman as an RK1.
            "iluvatar:nodes[7].arch": "arm64",
            "iluvatar:nodes[7].board": "rk1",
            "iluvatar:nodes[7].power": {"bmc": {"address": "192.168.0.5", "slot": 2}},
            "iluvatar:bmcPasswords": {"192.168.0.5": secure()},
        },
    )
    with_bmc = draw(write_stack(tmp_path, doc, stack="bmc"), tmp_path)
    assert inside(boxes(with_bmc)["bmc-192.168.0.5"], boxes(with_bmc)["cluster_lan"])
    assert "BMC (Turing Pi 2)" in texts(with_bmc) and "bmc-192.168.0.5->saruman" in texts(with_bmc) and "slot 2" in texts(with_bmc)


def test_a_stack_without_cloudflare_draws_no_public_path(tmp_path: Path) -> None:
    """rk1: no Cloudflare, no tunnel, no external gateway, no placeholder domain; its own machines and addresses,
    and the LAN resolver the router forwards to (no Ainur)."""
    svg = draw(RK1, tmp_path)
    shown = texts(svg)
    for text in ("Cloudflare", "tunnel", "HTTPS", "external domain", "envoy-external", "Ainur", "netboot"):
        assert text not in shown, text
    for text in (
        "talos-1",
        "talos-4",
        "10.10.0.14",
        "istari · arm64 · rk1",
        "envoy-internal",
        "10.10.0.218",
        "LAN 10.10.0.0/24",
        "LAN resolver",
        "10.10.0.217",
    ):
        assert text in shown, text
    drawn = boxes(svg)
    assert {"cloudflare", "envoy-external", "cluster_ainur"}.isdisjoint(drawn)
    assert inside(drawn["resolver"], drawn["cluster_gateways"]) and "router->resolver" in shown
    for name in ("talos-1", "talos-2", "talos-3", "talos-4", "arda_vip"):
        assert inside(drawn[name], drawn["cluster_arda"]) and inside(drawn[name], drawn["cluster_lan"]), name


def test_cloudflare_and_vlan_machines_are_drawn_where_they_are(tmp_path: Path) -> None:
    """With Cloudflare on, its box and tunnel lead to envoy-external; a machine on a VLAN sits inside its VLAN, not the LAN."""
    doc = edit(
        homelab_doc(),
        {
            "iluvatar:nodes[7].vlan": "iot",
            "iluvatar:nodes[7].ip": "192.168.20.32",
            "iluvatar:cloudflare": {"accountId": "0123456789abcdef0123456789abcdef"},
            "iluvatar:cloudflareApiToken": {"secure": "v1:bm9uY2Vub25jZW5v:Y2lwaGVydGV4dGNpcGhlcnRleHQ="},
        },
    )
    svg = draw(write_stack(tmp_path, doc, stack="edge"), tmp_path)
    drawn, shown = boxes(svg), texts(svg)
    assert "Cloudflare" in shown and "*.example.com" in shown
    assert "cloudflare->envoy-external" in shown and "internet->cloudflare" in shown  # the edges' titles
    assert inside(drawn["envoy-external"], drawn["cluster_gateways"])
    assert inside(drawn["saruman"], drawn["cluster_vlan_iot"])
    assert not inside(drawn["saruman"], drawn["cluster_lan"]) and not inside(drawn["saruman"], drawn["cluster_arda"])
    assert "192.168.20.32" in shown
    for name in ("manwe", "eonwe", "ilmare", "taniquetil", "tirion", "alqualonde", "gandalf"):
        assert inside(drawn[name], drawn["cluster_lan"]) and not inside(drawn[name], drawn["cluster_vlan_iot"]), name


def test_gateways_are_drawn_only_when_the_plan_has_them() -> None:
    stack = load_stack_file(RK1)
    plan = plan_network(stack)
    assert "envoy-internal" in dot(stack, plan)
    without = dot(stack, dataclasses.replace(plan, gateways={}))
    assert "envoy" not in without and "cluster_gateways" not in without and "hexagon" not in without


@pytest.mark.parametrize("path", [HOMELAB, RK1], ids=lambda p: p.stem)
def test_text_is_readable_at_the_readme_width(path: Path, tmp_path: Path) -> None:
    assert smallest_text_px(draw(path, tmp_path)) >= READABLE_PX


def test_the_readability_check_sees_a_wide_picture() -> None:
    """The old drawing (every machine in one row, 1575 pt wide) scaled its 9 pt labels to about 5 px."""
    wide = (
        '<svg xmlns="http://www.w3.org/2000/svg" width="1575pt" height="566pt"><text font-size="9.00">x</text><text font-size="10.00">y</text></svg>'
    )
    assert round(smallest_text_px(wide), 1) == 4.7


def test_png_is_a_png(tmp_path: Path) -> None:
    out = tmp_path / "homelab.png"
    assert run("diagram", "homelab", "--out", str(out)).returncode == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_readme_picture_is_current() -> None:
    """docs/homelab.svg is what the README shows; regenerate it when the stack or drawing changes."""
    stack = load_stack_file(HOMELAB)
    drawn = subprocess.run(["dot", "-Tsvg"], input=dot(stack, plan_network(stack)).encode(), capture_output=True, check=True)
    assert (ROOT / "docs" / "homelab.svg").read_bytes() == drawn.stdout, (
        "redraw it: .venv/bin/iluvatar diagram homelab --out docs/homelab.svg --force"
    )


def test_errors(tmp_path: Path) -> None:
    bad_suffix = run("diagram", "homelab", "--out", str(tmp_path / "x.jpg"))
    assert (bad_suffix.returncode, bad_suffix.stderr) == (2, f"error: {tmp_path / 'x.jpg'}: the picture must end in .svg or .png\n")
    existing = tmp_path / "x.svg"
    existing.write_text("mine")
    refused = run("diagram", "homelab", "--out", str(existing))
    assert (refused.returncode, refused.stderr) == (2, f"error: {existing} exists; pass --force to replace it\n")
    assert existing.read_text() == "mine"
    assert run("diagram", "nope", "--out", str(tmp_path / "y.svg")).returncode == 2
