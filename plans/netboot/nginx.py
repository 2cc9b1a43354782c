"""nginx.conf: the HTTP server for iPXE scripts, Talos assets and the workers' machine configs."""

from __future__ import annotations

import ipaddress

from plans.netboot.base import DISCOVERY_WINDOW_FILE, GENERIC_WORKER, HTTP_ROOT, config_nodes, mac_name
from stacks.model import StackConfig


def _cidrs(stack: StackConfig) -> list[str]:
    r = stack.network.dhcp_range
    return [str(n) for n in ipaddress.summarize_address_range(r.start, r.end)]


def nginx_conf(stack: StackConfig, root: str = HTTP_ROOT) -> str:
    """The HTTP server: scripts and assets to anyone; each worker's config only to its own address.

    A worker's config carries the cluster's join token, so it is served only to the address the
    inventory reserves for that machine (403 to any other); a control plane's is never here (404).
    """
    by_mac = {mac_name(n.mac): n for n in config_nodes(stack)}
    lines = [
        "server {",
        "  listen 80;",
        f"  root {root};",
        "  autoindex off;",
        "  location = /boot.ipxe { default_type text/plain; }",
        "  location /ipxe/ { default_type text/plain; }",
        "  location /assets/ { }",
    ]
    if stack.discovery is not None:
        # The discovery window: present while `iluvatar discover --arm` holds it open (plans.netboot.window).
        lines.append(f"  location = /{DISCOVERY_WINDOW_FILE} {{ default_type text/plain; }}")
    for name, node in sorted(by_mac.items()):
        lines.append(f"  location = /configs/{name}.yaml {{ default_type application/yaml; allow {node.ip}; deny all; }}  # {node.name}")
    if stack.generic_worker is not None:
        allow = " ".join(f"allow {c};" for c in _cidrs(stack))
        lines.append(f"  location = /configs/{GENERIC_WORKER}.yaml {{ default_type application/yaml; {allow} deny all; }}  # network.dhcpRange")
    lines += ["  location /configs/ { return 404; }", "}"]
    return "\n".join(lines) + "\n"
