"""The homelab with remote access, in each flavour: what the remote access tests build on."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import yaml

from stacks import StackConfig, load_stack_file
from tests.edit import HOMELAB, edit, homelab_doc, secure, write_stack

ACCESS: list[dict[str, Any]] = [
    {"group": "example:homelab-admins", "members": ["alice@"], "reach": ["apps", "kubernetes"]},
    {"group": "example:family", "members": ["bob@"], "reach": ["apps"]},
]
HEADSCALE: dict[str, Any] = {"flavour": "headscale", "headscale": {"url": "https://vpn.example.com", "ip": "192.168.0.17"}, "access": ACCESS}
# The shipped homelab's own remote access (Headscale; the family reaches the Minecraft server, the admins the MQTT
# broker too).
SHIPPED: dict[str, Any] = yaml.load(HOMELAB.read_text(), Loader=yaml.CSafeLoader)["config"]["iluvatar:remoteAccess"]
TAILSCALE: dict[str, Any] = {
    "flavour": "tailscale",
    "tailscale": {"oauthClientId": "kQ2wZp7CNTRL", "replacePolicy": True},
    "access": [{**a, "members": [m.replace("@", "@example.org") for m in a["members"]]} for a in ACCESS],
}


def remote_doc(remote: dict[str, Any], **more: Any) -> dict[str, Any]:
    """The homelab's document with `iluvatar:remoteAccess` (and, for tailscale, the OAuth client's secret) set."""
    extra: dict[str, Any] = {"iluvatar:tailscaleOauthClientSecret": secure()} if remote["flavour"] == "tailscale" else {}
    return edit(homelab_doc(), {"iluvatar:remoteAccess": remote, **extra, **more})


def remote_stack(remote: dict[str, Any], **more: Any) -> StackConfig:
    return load_stack_file(write_stack(Path(tempfile.mkdtemp(prefix="iluvatar-remote-")), remote_doc(remote, **more)), require_secrets=True)
