"""`python -m iluvatar diagram`: Graphviz draws every machine, VIP, gateway and the public path."""

from __future__ import annotations

import html
import subprocess
import sys
from pathlib import Path

from plans.diagram import dot
from plans.network import plan_network
from stacks import load_stack_file
from tests.edit import HOMELAB, ROOT


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "iluvatar", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_svg_shows_every_machine_vip_and_gateway(tmp_path: Path) -> None:
    out = tmp_path / "homelab.svg"
    result = run("diagram", "homelab", "--out", str(out))
    assert result.returncode == 0, result.stderr
    svg = html.unescape(out.read_text())  # Graphviz escapes "-" as &#45; in SVG text
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    stack = load_stack_file(HOMELAB)
    for node in stack.nodes:
        for text in (node.name, str(node.ip), f"{node.role} · {node.arch} · {node.board}"):
            assert text in svg, text
    for text in ("192.168.0.10", "192.168.0.20", "envoy-external", "192.168.0.239", "envoy-internal", "192.168.0.238",
                 "Cloudflare DNS + Tunnel", "*.example.com", "VLAN 20 iot", "192.168.20.0/24", "LAN 192.168.0.0/24"):  # fmt: skip
        assert text in svg, text


def test_png_is_a_png(tmp_path: Path) -> None:
    out = tmp_path / "homelab.png"
    assert run("diagram", "homelab", "--out", str(out)).returncode == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_readme_picture_is_current() -> None:
    """docs/homelab.svg is what the README shows; regenerate it when the stack or drawing changes."""
    drawn = subprocess.run(
        ["dot", "-Tsvg"], input=dot(load_stack_file(HOMELAB), plan_network(load_stack_file(HOMELAB))).encode(), capture_output=True, check=True
    )
    assert (ROOT / "docs" / "homelab.svg").read_bytes() == drawn.stdout


def test_errors(tmp_path: Path) -> None:
    bad_suffix = run("diagram", "homelab", "--out", str(tmp_path / "x.jpg"))
    assert (bad_suffix.returncode, bad_suffix.stderr) == (2, f"error: {tmp_path / 'x.jpg'}: the picture must end in .svg or .png\n")
    existing = tmp_path / "x.svg"
    existing.write_text("mine")
    refused = run("diagram", "homelab", "--out", str(existing))
    assert (refused.returncode, refused.stderr) == (2, f"error: {existing} exists; pass --force to replace it\n")
    assert existing.read_text() == "mine"
    assert run("diagram", "nope", "--out", str(tmp_path / "y.svg")).returncode == 2
