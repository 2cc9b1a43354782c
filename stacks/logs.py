"""Log rules (`iluvatar:logs`): the store needs monitoring, a StorageClass Arda has, a volume its retention fits in,
and (with the Ainur) a LAN address of the load-balancer pool for the Pis to send to. Each names its config path.

The store keeps every machine's lines for `retention`, and drops the oldest days before its volume is full
(`RETENTION_SHARE` of it); a retention longer than the volume holds at the stack's log rate would silently keep less,
so it is refused with the estimate (`estimate`), or with `dailyVolume` once the user has measured theirs.
The model is `stacks.logs_model.Logs`; what it becomes is `plans.logs`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address
from types import MappingProxyType

from stacks.edge import edge_addresses
from stacks.errors import Problem
from stacks.logs_model import Logs
from stacks.model import Edge, Network, Node, Storage
from stacks.storage import _arda_classes

LOGS = "iluvatar:logs"
# The share of the store's volume its logs may fill before the oldest days go (the rest: its indexes being merged).
RETENTION_SHARE = 0.8
# What the store keeps a day, compressed, per machine by role and per app: a conservative guess for a quiet homelab
# (a Talos control plane's etcd, API server and kubelet at their default verbosity, a few hundred MiB a day raw,
# compress about tenfold in VictoriaLogs; a Pi's journal with k3s in it likewise). Machines that netboot as generic
# workers are not in the inventory and are not counted. The logs dashboard shows the real figure: set
# `logs.dailyVolume` to it.
DAILY_MIB = {"valinor": 64, "istari": 32, "valar": 32, "maiar": 32}
APP_DAILY_MIB = 16
ROLE_WORDS = {"valinor": "control plane", "istari": "worker", "valar": "Pi", "maiar": "Pi"}
# Where the default LAN address sits: the pool's fourth from the top (the edge's three are above it, stacks.edge).
ADDRESS_OFFSET = 3
_HOURS = {"h": 1, "d": 24, "w": 24 * 7, "y": 24 * 365}


@dataclass(frozen=True)
class Estimate:
    """The stack's log rate: MiB a day the store keeps, and how it was counted (for the message)."""

    mib_per_day: int
    how: str


def estimate(nodes: Sequence[Node], apps: int) -> Estimate:
    """The inventory's log rate by `DAILY_MIB` and `APP_DAILY_MIB`."""
    counts: dict[str, int] = {}
    total = 0
    for node in nodes:
        total += DAILY_MIB[node.role]
        counts[ROLE_WORDS[node.role]] = counts.get(ROLE_WORDS[node.role], 0) + 1
    total += apps * APP_DAILY_MIB
    rate = {ROLE_WORDS[r]: m for r, m in DAILY_MIB.items()}
    parts = [f"{n} {word}{'s' if n > 1 else ''} × {rate[word]}Mi" for word, n in counts.items()]
    if apps:
        parts.append(f"{apps} app{'s' if apps > 1 else ''} × {APP_DAILY_MIB}Mi")
    return Estimate(total, "the estimate: " + " + ".join(parts))


def retention_days(retention: str) -> float:
    return int(retention[:-1]) * _HOURS[retention[-1]] / 24


def daily_mib(logs: Logs, nodes: Sequence[Node], apps: int) -> Estimate:
    """What the store keeps a day: `dailyVolume` when set, else the estimate."""
    if logs.daily_volume is not None:
        value = int(logs.daily_volume[:-2]) * (1024 if logs.daily_volume.endswith("Gi") else 1)
        return Estimate(value, f"logs.dailyVolume {logs.daily_volume}")
    return estimate(nodes, apps)


def enabled(logs: Logs | None, monitoring_set: bool) -> bool:
    """Logs run with monitoring, unless `logs.enabled` is false."""
    return monitoring_set and (logs is None or logs.enabled)


def address(logs: Logs, network: Network) -> IPv4Address:
    """The store's LAN address for the Pis: `logs.address`, else the pool's fourth from the top."""
    return logs.address if logs.address is not None else network.load_balancer_pool.end - ADDRESS_OFFSET


def check(
    logs: Logs | None,
    logs_set: bool,
    monitoring_set: bool,
    ainur_set: bool,
    network: Network | None,
    edge: Edge | None,
    storage: Storage | None,
    nodes: Sequence[Node],
    nodes_complete: bool,
    apps: int,
    held: Mapping[IPv4Address, str] = MappingProxyType({}),
) -> list[Problem]:
    """Every log rule; `logs` is None when the section is absent or broken (`logs_set`). Without the section, logs
    run with monitoring at their defaults, which the rules check as well. `held`: the stack's address table (stacks.
    addresses: the machines, the VIPs, the raw-port apps' addresses, ...) with their owners, which an address a message
    offers avoids."""
    if logs is None and logs_set:
        return []  # broken: its own problems are reported
    logs = logs or Logs()
    if not logs.enabled or (not monitoring_set and not logs_set):
        return []
    if not monitoring_set:
        return [
            Problem(
                LOGS,
                "needs iluvatar:monitoring: the logs are read in its Grafana and their alerts go through its Alertmanager; "
                "set iluvatar:monitoring, or logs.enabled: false",
            )
        ]
    out: list[Problem] = []
    if storage is not None and nodes_complete:
        out += _storage(logs, storage, nodes)
    if nodes_complete:
        out += _fits(logs, nodes, apps)
    if network is not None and edge is not None:
        out += _address(logs, ainur_set, network, edge, held)
    return out


def _storage(logs: Logs, storage: Storage, nodes: Sequence[Node]) -> Iterator[Problem]:
    classes = _arda_classes(storage, nodes)
    path = f"{LOGS}.storageClass"
    if logs.storage_class is not None and logs.storage_class not in classes:
        yield Problem(path, f"{logs.storage_class} is not a StorageClass this stack's Arda has (it has: {', '.join(classes) or 'none'})")
    elif logs.storage_class is None and not classes:
        yield Problem(path, "is required: Arda has no StorageClass (no data disks, no local volumes, no NFS) for the log store's volume")


def _gib(mib: float) -> str:
    return f"{mib / 1024:.1f}Gi"


def _fits(logs: Logs, nodes: Sequence[Node], apps: int) -> Iterator[Problem]:
    rate = daily_mib(logs, nodes, apps)
    days = retention_days(logs.retention)
    need = rate.mib_per_day * days
    size_gib = int(logs.size.removesuffix("Gi"))
    keep = size_gib * 1024 * RETENTION_SHARE
    if need <= keep:
        return
    size = math.ceil(need / RETENTION_SHARE / 1024)
    fit = math.floor(keep / rate.mib_per_day)
    shorter = f"shorten logs.retention to {fit}d, " if fit >= 1 else ""
    yield Problem(
        f"{LOGS}.retention",
        f"{logs.retention} of logs at {rate.mib_per_day}Mi a day ({rate.how}) is {_gib(need)}, more than the {_gib(keep)} "
        f"a {logs.size} volume keeps ({int(RETENTION_SHARE * 100)} %); raise logs.size to {size}Gi, {shorter}"
        "or set logs.dailyVolume to what the store measures",
    )


def _address(logs: Logs, ainur_set: bool, network: Network, edge: Edge, held: Mapping[IPv4Address, str]) -> Iterator[Problem]:
    path = f"{LOGS}.address"
    if not ainur_set:
        if logs.address is not None:
            yield Problem(path, f"{logs.address} is set, but the stack has no Ainur: only the Pis send to it; remove it")
        return
    pool = network.load_balancer_pool
    if pool.size() < 2:
        return  # too small for the gateways: stacks.rules says so
    ip = address(logs, network)
    taken: Mapping[IPv4Address, str] = {a: f"the edge's {name}" for name, a in edge_addresses(pool, edge).items()}
    if logs.address is None and ip not in pool:
        yield Problem(
            path,
            f"is required: network.loadBalancerPool {pool} has no fourth address for the log store (the edge takes the top three); "
            "widen the pool, or name an address of it",
        )
    elif ip not in pool:
        # The address offered is one the rules take: the default when nothing holds it (an app's address there is refused
        # as the log store's), else the pool's highest that neither the edge nor the address table holds.
        default = pool.end - ADDRESS_OFFSET
        free = next((a for a in reversed(list(pool.addresses())) if a not in taken and a not in held), None)
        if default in pool and default not in held:
            fix = (
                f"remove logs.address to take the pool's fourth address from the top, {default}, or write another of the pool the "
                "edge and the apps do not hold"
            )
        elif free is not None and default in pool:
            fix = f"write {free}, the pool's highest address nothing holds (its fourth from the top, {default}, the default, is {held[default]})"
        elif free is not None:
            fix = f"write {free}, the pool's highest address nothing holds"
        else:
            fix = "widen the pool, then write an address of it"
        yield Problem(path, f"{ip} is outside network.loadBalancerPool {pool}: Cilium gives the store's Service an address of the pool; {fix}")
    elif ip in taken:
        yield Problem(path, f"{ip} is {taken[ip]} address; the log store needs an address of its own")
    elif logs.address is not None and held.get(ip, "").startswith("apps["):
        # An app's address written at logs.address: said here, at the key that moved onto the app's (stacks.apps leaves
        # the app alone then), with an address of the pool nothing holds, and the app's way out after it.
        default = pool.end - ADDRESS_OFFSET
        if default not in held and default not in taken:
            fix = f"remove logs.address to take the pool's fourth address from the top, {default}"
        elif (free := next((a for a in reversed(list(pool.addresses())) if a not in taken and a not in held), None)) is not None:
            fix = f"write {free}, the pool's highest address nothing holds"
        else:
            fix = "widen the pool, then write an address of it"
        yield Problem(
            path,
            f"{ip} is {held[ip]}, an app's own address; the log store needs an address of its own: {fix}, or give the app another address",
        )
