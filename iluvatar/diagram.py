"""Draw the homelab with Graphviz's `dot`, the real renderer (Debian package graphviz)."""

from __future__ import annotations

import shutil
import subprocess

from plans.diagram import dot
from plans.network import plan_network
from stacks.model import StackConfig

FORMATS = ("svg", "png")


class DiagramError(Exception):
    """Graphviz is missing or failed."""


def render_diagram(stack: StackConfig, fmt: str) -> bytes:
    exe = shutil.which("dot")
    if exe is None:
        raise DiagramError("Graphviz's dot is not installed (apt-get install graphviz)")
    result = subprocess.run([exe, f"-T{fmt}"], input=dot(stack, plan_network(stack)).encode(), capture_output=True, timeout=60)  # noqa: S603
    if result.returncode != 0:
        raise DiagramError(f"dot failed: {result.stderr.decode(errors='replace').strip()}")
    return result.stdout
