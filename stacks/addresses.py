"""The stack's fixed LAN addresses, one table: every layer that holds an address registers it here, with its owner.

A pool or range the stack lends from (the discovery pool today) is checked against the whole table, so a layer added
later is covered by registering its address here rather than by each pool's rule remembering it. The owner is written
as the messages name it: `nodes[3].ip (taniquetil)`, `remoteAccess.headscale.ip (Headscale's port forward target)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address

from stacks.apps import address_owner
from stacks.data import parse_target, target_address
from stacks.data_model import Backup
from stacks.model import App, Identity, Node
from stacks.remote_model import RemoteAccess


def table(
    nodes: Sequence[tuple[int, Node]],
    vips: Sequence[tuple[str, IPv4Address]],
    identity: Identity | None,
    remote: RemoteAccess | None,
    backup: Backup | None,
    pool: Sequence[tuple[IPv4Address, str]] = (),
    apps: Sequence[tuple[int, App]] = (),
) -> dict[IPv4Address, str]:
    """Every fixed address the stack knows, first owner kept: the machines, the VIPs (`iluvatar:`-less paths), the front
    door, Headscale, the backup target's server when written as an address (the NAS), the pool addresses the stack's
    own Services take (`pool`: the gateways, the LAN resolver, the log store) and, last, each app's own address."""
    held: dict[IPv4Address, str] = {n.ip: f"nodes[{i}].ip ({n.name})" for i, n in nodes}
    for path, ip in vips:
        held.setdefault(ip, path.removeprefix("iluvatar:"))
    if identity is not None:
        held.setdefault(identity.ip, "identity.ip (the Ainur's front door)")
    if remote is not None and remote.flavour == "headscale" and remote.headscale is not None:
        held.setdefault(remote.headscale.ip, "remoteAccess.headscale.ip (Headscale's port forward target)")
    if backup is not None:
        found = parse_target(backup.target)
        server = target_address(found) if not isinstance(found, str) else None
        if server is not None:
            held.setdefault(server, f"backup.target's server (the NAS, {backup.target})")
    for ip, owner in pool:
        held.setdefault(ip, owner)
    for i, app in apps:
        if app.ports and app.address is not None:
            held.setdefault(app.address, address_owner(i, app))
    return held
