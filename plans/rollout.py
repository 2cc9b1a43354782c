"""The day-2 plan: what a `pulumi up` changes on each Arda machine, in the order it rolls them.

Every deployment exports what Arda runs (`state`: the versions, and per machine its address, its
installer image and a digest of its patches) as the stack output `arda`. The next run reads it
back (stacks.day2 refuses impossible version changes) and compares: `changes` lists, in the
rollout order (`plans.bringup.rollout_order`), each machine whose step will run and why. `pulumi
up` prints that list before it starts, and `iluvatar render STACK --previous OUTPUTS.json` writes
it to rollout.txt, so the day-2 plan can be read offline. A machine whose state is the same is not
listed: rendering a stack against its own outputs shows no change.

`plan` is the whole of it: besides each machine's change, every Arda step when the talosconfig they all read
changes (a control plane's address; the client certificate the Talos provider renews, foreseen from the
expiry the last `up` exported), the Ainur's Pis whose join or k3s step runs (the output `ainur`,
`ainur_state`), and the steps whose commands changed (a digest of each exported as `commands`), each line
saying why.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import json
import os
import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from plans import agent_token, apiserver, bringup, k3s, logs, storage
from plans import credentials as credentials_plan
from plans.netboot import dhcp_probe, pi_pods, roll, vip_roll
from plans.netboot.pis import image_id, netboot_pis, pointer_digest
from stacks import day2, encryption, releases
from stacks import logs as logs_rules
from stacks.edge import edge_addresses, resolver_needed
from stacks.model import Node, StackConfig
from stacks.storage import longhorn_pis


def node_state(stack: StackConfig, installer: str, patches: str, name: str, generation: int = 0, logging: str = "") -> dict[str, Any]:
    """A machine as the next run reads it back; `logging`, a digest of its log delivery (components.arda.state_digests),
    only when it has one, so a deployment without logs reads as before."""
    node = next(n for n in stack.arda_nodes if n.name == name)
    out = {"mac": node.mac, "ip": str(node.ip), "role": node.role, "installer": installer, "patches": patches, "generation": generation}
    # The key its volumes were sealed with, so the next preview refuses turning encryption on for it in place (stacks.day2).
    key = encryption.node_key(stack, node.board)
    return out | ({"logging": logging} if logging else {}) | ({"encryption": key} if key else {})


def endpoints(stack: StackConfig) -> list[str]:
    """The talosconfig's endpoints: the control planes' addresses (components.arda.TalosConfig.credentials)."""
    return [str(n.ip) for n in bringup.control_planes(stack)]


# --- Iluvatar's own steps: a digest of each step's commands ---------------------------------------------------------
#
# pulumi-command diffs a Command's `create`, `update` and `delete` like any input: a new Iluvatar whose program writes a
# step's command differently (a new gate in a join's script, a new flag of the upgrader) re-runs that step at the next
# `up`, whatever the stack says. Each deployment exports a digest of every step's commands (`commands` in the `arda`
# and `ainur` outputs), and the next run's plan names the steps whose commands changed.

CHANGED_STEP = "Iluvatar's step changed (its command: a new version of Iluvatar, or a setting the command is made from): it runs again"
UNRECORDED = (
    "the last deployment did not record its steps' commands (an older Iluvatar): a step whose command this version of "
    "Iluvatar writes differently runs again, which this plan cannot name"
)


def command_digest(*commands: str | None) -> str:
    """A short digest of a step's commands, in the order create, update, delete (None: none)."""
    return hashlib.sha256(json.dumps(list(commands)).encode()).hexdigest()[:16]


def step_digest(step: bringup.Step, delete: bringup.Step | None = None) -> str:
    """A local step's commands (components.steps.run): create, update and delete."""
    return command_digest(step.command, step.update_command, delete.command if delete is not None else None)


def arda_commands(stack: StackConfig) -> dict[str, str]:
    """Each Arda step's digest, by its resource's name under the cluster (`<machine>-apply`, `bootstrap`, ...), as
    components.arda makes them. The Kubernetes preflight and upgrade exist for one run only: not listed."""
    out = {f"{n.name}-apply": step_digest(bringup.talos_apply(stack, n), bringup.talos_reset(n)) for n in bringup.rollout_order(stack)}
    out["bootstrap"] = step_digest(bringup.talos_bootstrap(stack))
    out["gate-api"] = step_digest(bringup.arda_api_gate(stack))
    out["gate-nodes"] = step_digest(bringup.arda_nodes_gate(stack))
    return out


def ainur_commands(stack: StackConfig) -> dict[str, str]:
    """Each of the Ainur's steps' digest, by its resource's name under the Ainur, as components.ainur makes them."""
    assert stack.ainur is not None
    out: dict[str, str] = {}
    for node in stack.ainur_nodes:
        if stack.identity is not None and node.role == "valar":
            out[f"{node.name}-oidc"] = command_digest(apiserver.k3s_authentication_script(stack), None, None)
        out[f"{node.name}-join"] = command_digest(roll.join_script(stack, node), None, None)
        if node.boot == "netboot":
            out[f"{node.name}-{roll.host_key_step(node)}"] = command_digest(roll.HOST_KEY_SCRIPT, None, None)
            out[f"{node.name}-drain"] = command_digest(roll.drain_script(stack, node), None, None)
            out[f"{node.name}-reboot"] = command_digest(roll.reboot_script(stack, node), None, None)
            out[f"{node.name}-uncordon"] = command_digest(roll.uncordon_script(stack, node), None, None)
        out[f"{node.name}-k3s"] = command_digest(roll.k3s_script(stack, node), None, None)
        out[f"{node.name}-netboot-ready"] = command_digest(roll.netboot_ready_script(node), None, None)
        out[f"{node.name}-uninstall"] = command_digest(None, None, k3s.UNINSTALL_SCRIPT)
    if stack.ainur.secrets_encryption:
        out[k3s.SECRETS_ON_STEP] = command_digest(k3s.secrets_on_script(), None, None)
        out["secrets-rewrite"] = command_digest(k3s.secrets_rewrite_script(), None, None)
    out["credentials"] = command_digest(credentials_plan.k3s_script(), None, None)
    out["ca-hash"] = command_digest(agent_token.ca_hash_script(), None, None)
    out["gate-api"] = step_digest(bringup.kube_api_gate("ainur", k3s.server_url(stack)))
    return out


def changed_commands(previous: Mapping[str, Any] | None, current: Mapping[str, Any]) -> set[str] | None:
    """The steps (as `commands` names them) whose commands changed since the last deployment, of those it had; None
    when it recorded none."""
    was = (previous or {}).get("commands")
    if not isinstance(was, Mapping):
        return None
    return {step for step, digest in (current.get("commands") or {}).items() if step in was and was[step] != digest}


def state(
    stack: StackConfig,
    installers: Mapping[str, str],
    patches: Mapping[str, str],
    generations: Mapping[str, int] | None = None,
    client_certificate_expires: str | None = None,
    logging: Mapping[str, str] | None = None,
    previous: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What Arda runs after this deployment: the stack output `arda` (no secret in it). `endpoints` and the
    client certificate's expiry are what every step's talosconfig is made of, so the next run can tell that
    every step re-runs, and why (`talosconfig_changes`)."""
    order = [n.name for n in bringup.rollout_order(stack)]
    counts = generations or {}
    out: dict[str, Any] = {
        "talosVersion": stack.arda.talos_version,
        "kubernetesVersion": stack.arda.kubernetes_version,
        "order": order,
        "nodes": {
            name: node_state(stack, installers[name], patches[name], name, counts.get(name, 0), (logging or {}).get(name, "")) for name in order
        },
        "endpoints": endpoints(stack),
        "commands": arda_commands(stack),
        # The charts' versions, so the next preview refuses one going backwards (stacks.day2).
        "charts": day2.chart_versions(stack),
        # Arda's pod and Service subnets, fixed when the cluster is made: stacks.day2 refuses their change.
        "clusterNetwork": day2.arda_subnets(stack),
        # The cluster's name, fixed once made: stacks.day2 refuses a rename (the provider's clusterIdentifier).
        "clusterName": stack.arda.cluster_name,
        # The load-balancer pool and the addresses the stack's own Services take in it: a move is said (pool_moves).
        "pool": pool_state(stack),
    }
    if (store := logs_store(stack, previous)) is not None:
        out["logsStore"] = store
    if client_certificate_expires is not None:
        out["clientCertificateExpires"] = client_certificate_expires
    return out


def logs_store(stack: StackConfig, previous: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The log store's claim (data-victoria-logs-0) as the next preview must know it (stacks.day2). While logs run: the
    size and class its StatefulSet's volumeClaimTemplates made it with, `running`. While logs are off: the last record,
    carried forward, not running, since the claim outlives its StatefulSet (the store sets no
    persistentVolumeClaimRetentionPolicy, and every class here is Retain) and a store turned on again mounts it as it
    is. Whatever `logs.claimChanged` says: the flag acts only in the `up` that turns logs back on, which records the
    stack's own (stacks.day2 refuses it while logs stay off).

    The Pis (`forwarders`) stay in the record of the `up` that turns logs off and go in the next one's: engine v3.259
    writes the outputs of a failed update too (pkg/resource/deploy/step_executor.go:226-231, 262-268;
    deployment_executor.go:353-361), and the program registers them before the deletes of what left it run
    (performPostSteps, deployment_executor.go:328-336). So a logs-off `up` that fails on a Pi's journal step still
    records logs off, and the retry's preview must still name the Pis (`logs_off`). Nothing in the outputs can say the
    steps are gone: a second failure leaves the third preview without them (docs/day2.md says how to list them)."""
    if logs.enabled(stack):
        # The Pis whose journal step runs, for the plan of the `up` that turns logs off (`logs_off`).
        pis = {"forwarders": [n.name for n in stack.ainur_nodes]} if logs.lan_address(stack) is not None else {}
        return {"size": logs.settings(stack).size, "storageClass": logs.storage_class(stack), "running": True, **pis}
    was = (previous or {}).get("logsStore")
    if not isinstance(was, Mapping):
        return None
    keep = was.get("running") is not False  # the `up` that turns logs off: the next one may be its retry
    return {**{k: v for k, v in was.items() if k != "forwarders" or keep}, "running": False}


def pool_state(stack: StackConfig) -> dict[str, Any]:
    """network.loadBalancerPool and the addresses Cilium gives the stack's own Services from it: the gateways (stacks.edge:
    the pool's top, or edge.addresses), the LAN resolver (without the Ainur), the log store's LAN address (with them)."""
    pool = stack.network.load_balancer_pool
    found = edge_addresses(pool, stack.edge)
    services = {"envoy-external": str(found["envoy-external"]), "envoy-internal": str(found["envoy-internal"])}
    if resolver_needed(stack.ainur is not None, bool(stack.apps)):
        services["the LAN resolver"] = str(found["resolver"])
    if (address := logs.lan_address(stack)) is not None and logs_rules.enabled(stack.logs, stack.monitoring is not None):
        services["the log store"] = str(address)
    return {"range": f"{pool.start}-{pool.end}", "services": services}


def pool_moves(previous: Mapping[str, Any] | None, current: Mapping[str, Any], routes: bool = False) -> str:
    """The plan's line for a moved load-balancer pool. No machine changes: Cilium gives the Services their new addresses
    in the `up`, and the records, the Pis' log forwarders and the remote-access routes (`routes`) follow from the stack;
    but what holds an old address outside it (a router's port forward, a cached answer, a bookmark) reaches nothing."""
    was, now = (previous or {}).get("pool"), current.get("pool")
    if not isinstance(was, Mapping) or not isinstance(now, Mapping) or was.get("range") == now.get("range"):
        return ""
    services = was.get("services")
    before: Mapping[str, Any] = services if isinstance(services, Mapping) else {}
    moved = [f"{name} {before[name]} -> {ip}" for name, ip in now["services"].items() if name in before and before[name] != ip]
    follow = "the internal zone's records" + (" and the remote-access routes to them" if routes else "")
    return (
        f"Arda: network.loadBalancerPool moves {was.get('range')} -> {now['range']}: "
        + (f"{', '.join(moved)}; " if moved else "")
        + f"Cilium gives the Services their new addresses in this `up`, and {follow} follow; anything that holds an old "
        "address outside the stack (the router's port forwards to envoy-external, a device's cached DNS answer, a bookmark by "
        "address) reaches nothing until it is changed\n"
    )


def chart_moves(previous: Mapping[str, Any] | None, current: Mapping[str, Any]) -> str:
    """The plan's lines for the charts whose version changes (the `charts` the `arda` output records: Cilium's, Argo
    CD's): no machine's step runs for them, but `up` upgrades each, so the plan says it beside the machines'. A chart the
    last deployment did not record (an older Iluvatar's outputs, or GitOps new in this run) has no `from` to say."""
    was, now = (previous or {}).get("charts"), current.get("charts")
    if not isinstance(was, Mapping) or not isinstance(now, Mapping):
        return ""
    lines = ""
    for chart, version in now.items():
        before = was.get(chart)
        if chart not in day2.CHARTS or not isinstance(before, str) or before == version:
            continue
        key, name = day2.CHARTS[chart]
        lines += f"Arda: {name}'s chart {before} -> {version} ({key.removeprefix('iluvatar:')}): upgraded in this `up`\n"
    return lines


def logs_off(previous: Mapping[str, Any] | None, current: Mapping[str, Any]) -> str:
    """The plan's line for the `up` that turns logs off: every Pi's journal step's delete runs over SSH, and a Pi that
    is off fails the `up` after its bound (plans.logs.JOURNAL_DIAL_ATTEMPTS), so the preview names them first; and
    for the `up` after it, which retries those deletes if it failed (`logs_store` keeps the Pis for it)."""
    was, now = (previous or {}).get("logsStore"), current.get("logsStore")
    if not isinstance(was, Mapping) or (isinstance(now, Mapping) and now.get("running") is True):
        return ""
    pis = [str(p) for p in was.get("forwarders") or []]
    if not pis:
        return ""
    bound = f"a Pi that does not answer {logs.JOURNAL_DIAL_ATTEMPTS + 1} dials of {logs.JOURNAL_DIAL_SECONDS} s fails this `up`"
    if was.get("running") is False:
        # The `up` after the one that turned logs off: if that one failed, its Pis' journal steps are still to delete.
        return (
            f"Logs: off since the last `up`; if it failed, this one still turns the journal forwarder and Talos's log "
            f"firewall off over SSH on the Pis whose step is left (of {', '.join(pis)}; `pulumi stack --show-urns | grep "
            f"journal-upload` lists them); {bound}: bring it up first, or see docs/day2.md#the-log-stores-size-or-class\n"
        )
    return (
        f"Logs: turned off: each Pi's journal forwarder and Talos's log firewall are turned off over SSH, on {', '.join(pis)}; "
        f"{bound}: bring it up first, or see docs/day2.md#the-log-stores-size-or-class\n"
    )


def probed(printed: str) -> dict[str, str]:
    """What `upgrader probe` printed, as each machine's state; anything unreadable is no news (it never fails a run)."""
    try:
        found = json.loads(printed)["nodes"]
    except (ValueError, KeyError, TypeError):
        return {}
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}


@dataclass(frozen=True)
class Change:
    """One machine's step that will run, and why."""

    node: str
    what: tuple[str, ...]

    @property
    def disruptive(self) -> bool:
        """Whether the machine is drained and rebooted for certain (an upgrade); a config change may need it too."""
        return any(w.startswith("Talos ") for w in self.what)


# The log delivery alone changed (plans.logs): Talos applies it without a reboot, so the machine's step only applies it.
LOG_DELIVERY = logs.APPLY_WITHOUT_REBOOT

# A new installer of the same version: its board's schematic changed (extensions, or arda.kernelArgs: plans.talos).
SCHEMATIC = "Talos schematic (extensions, kernel arguments): an upgrade to its new installer"


def _tag(image: str) -> str:
    return image.rsplit(":", 1)[-1]


def _older(tag: str, than: str) -> bool:
    """Whether installer tag `tag` is an older Talos release than `than` (False for a tag that is no release)."""
    try:
        return releases.release(tag) < releases.release(than)
    except ValueError:
        return False


def path_hops(previous: Mapping[str, Any] | None, current: Mapping[str, Any]) -> list[releases.Hop]:
    """The steps of a path across Talos minors (stacks.releases.talos_path, as components.arda registers them): the
    Talos rolls and the Kubernetes upgrades between them, the last being the machines' own steps. Empty when Talos does
    not move, or when the path is refused (stacks.day2 says why at preview)."""
    was, now = str((previous or {}).get("talosVersion") or ""), str(current.get("talosVersion") or "")
    if not was or not now or was == now:
        return []
    kube = str((previous or {}).get("kubernetesVersion") or current.get("kubernetesVersion") or "")
    wanted = str(current.get("kubernetesVersion") or kube)
    try:
        hops = releases.talos_path(was, kube, now, wanted)
    except (releases.PathError, ValueError):
        return []
    steps = releases.kubernetes_steps(hops)
    return [] if steps and steps[-1] != wanted else hops


def path_rolls(previous: Mapping[str, Any] | None, current: Mapping[str, Any]) -> list[str]:
    """The Talos releases a path across minors rolls every installed machine to before its own step; empty when Talos
    moves within a minor or one minor, or not at all."""
    return [str(h.talos) for h in path_hops(previous, current)[:-1] if h.talos is not None]


def path_kubernetes(previous: Mapping[str, Any] | None, current: Mapping[str, Any]) -> list[str]:
    """The Kubernetes releases a path moves Arda to on the way, in order (the last is the stack's)."""
    return releases.kubernetes_steps(path_hops(previous, current))


def installed_machines(previous: Mapping[str, Any] | None, current: Mapping[str, Any]) -> list[str]:
    """The machines of this run that the last deployment had (by name, or by MAC under another): those a path rolls."""
    before = dict((previous or {}).get("nodes") or {})
    macs = {str(v.get("mac")) for v in before.values()}
    return [n for n in current["order"] if n in before or str(current["nodes"][n].get("mac")) in macs]


def describe_path(previous: Mapping[str, Any] | None, current: Mapping[str, Any]) -> list[str]:
    """The path's steps as `pulumi preview` logs them and rollout.txt holds them: every machine of each roll, and each
    Kubernetes upgrade where it comes, in order."""
    hops = path_hops(previous, current)
    rolls = [h for h in hops if h.talos is not None]
    if len(rolls) < 2 and not releases.kubernetes_steps(hops):
        return []
    machines = installed_machines(previous, current)
    total = len(rolls)
    moved = releases.kubernetes_steps(hops)
    kubernetes = (
        f"; Kubernetes {(previous or {}).get('kubernetesVersion')} -> {moved[-1]} on the way, one minor at a time, each before the roll "
        "of the Talos minor that needs it"
        if moved
        else ""
    )
    lines = [
        f"Arda: Talos {(previous or {}).get('talosVersion')} -> {current['talosVersion']} is a path of {total} roll{'s' if total > 1 else ''}, one minor at a "
        f"time from each minor's newest patch (Talos migrates a machine between adjacent minors' latest patches only), every machine rolled and checked healthy before the next, "
        f"each roll done on every machine before the next begins{kubernetes}:"
    ]
    i = 0
    for at, hop in enumerate(hops):
        if hop.kubernetes is not None:
            nxt = next(h.talos for h in hops[at:] if h.talos is not None)
            low = releases.BY_MINOR[releases.minor_of(str(nxt))].kubernetes[0]
            lines.append(
                f"  Kubernetes {hop.kubernetes} first (Talos {releases.show(releases.minor_of(str(nxt)))} runs Kubernetes 1.{low} and "
                f"later), after its preflight, component by component over {len(machines)} machine(s): the API servers, controller-"
                "managers and schedulers one control plane at a time, then every kubelet, each running before the next changes"
            )
            continue
        i += 1
        if i == total:
            lines.append(f"  roll {total} of {total}: Talos {current['talosVersion']}, with each machine's own step below")
            break
        start = releases.minor_of(str((previous or {}).get("talosVersion"))) == releases.minor_of(str(hop.talos))
        why = "the newest patch of the minor that runs, where Talos's path starts" if start else "its minor's newest release"
        lines.append(f"  roll {i} of {total}: Talos {hop.talos} ({why}), {len(machines)} machine(s):")
        lines += [f"    {j}. {name}: Talos -> {hop.talos}" for j, name in enumerate(machines, 1)]
    return lines


def describe_etcd(previous: Mapping[str, Any] | None, current: Mapping[str, Any]) -> list[str]:
    """The rolls that move Arda's etcd to its next minor (stacks.releases.path_etcd_moves: Talos runs its own default
    etcd), and how: after the run's first etcd snapshot (describe's first line, components.arda's _snapshot_first, kept),
    one control plane at a time (rollout order: control planes first), every member healthy before the next goes down."""
    hops = path_hops(previous, current)
    last = next((str(h.talos) for h in reversed(hops) if h.talos is not None), None)
    lines: list[str] = []
    for move in releases.path_etcd_moves((previous or {}).get("talosVersion"), hops):
        # The machines' own steps: the first control plane's saves one more just before it changes (plans.bringup.talos_apply).
        own = f" (the first one's step also saves {bringup.ETCD_SNAPSHOT} before it changes)" if move.talos == last else ""
        lines.append(
            f"Arda: etcd v{move.old} -> v{move.new} with Talos {move.talos} (its default etcd, a new minor): after the etcd snapshot "
            f"above, one control plane at a time{own}, every etcd member healthy before the next goes down; the members run "
            f"v{move.old} and v{move.new} side by side meanwhile, the cluster at v{'.'.join(move.old.split('.')[:2])} until the "
            "last has rolled"
        )
    return lines


# How a Kubernetes upgrade goes (plans.bringup.kubernetes_upgrade), as the plan says it.
KUBERNETES_ORDER = (
    "kube-apiserver, then kube-controller-manager, then kube-scheduler, one control plane at a time, then every kubelet "
    "(control planes, then workers), each running before the next changes: every control plane pod its change restarts (the "
    "scheduler's restarts that machine's API server too) up 30 s and the machine's API server ready"
)


def changes(previous: Mapping[str, Any] | None, current: Mapping[str, Any]) -> list[Change]:
    """The machines whose step runs, in rollout order, each with what changes on it."""
    before = dict((previous or {}).get("nodes") or {})
    rolled = path_rolls(previous, current)
    by_mac = {str(v.get("mac")): n for n, v in before.items()}
    rewritten = changed_commands(previous, current) or set()
    out: list[Change] = []
    for name in current["order"]:
        now = current["nodes"][name]
        was = before.get(name)
        what: list[str] = []
        if was is None and now["mac"] in by_mac:
            # The same machine under a new name: its resources move to the name (aliases), nothing is reset.
            was = before[by_mac[now["mac"]]]
            what.append(f"renamed from {by_mac[now['mac']]}")
        if was is None:
            out.append(Change(name, ("new: installs from maintenance mode",)))
            continue
        if was.get("installer") != now["installer"]:
            old, new = _tag(str(was.get("installer"))), _tag(now["installer"])
            if rolled and old != new:
                old = f"{rolled[-1]} (after the path's rolls)"
            schematic = str(was.get("installer")).rsplit(":", 1)[0] != now["installer"].rsplit(":", 1)[0]
            # A patch back within the minor that runs (stacks.releases.talos_path allows it): said, as `versions` says it.
            back = not rolled and old != new and _older(new, old)
            rolled_back = f" (a roll back: it undoes {releases.undone(old, new)})" if back else ""
            what.append(f"Talos {old} -> {new}{rolled_back}" if old != new else SCHEMATIC)
            if old != new and schematic:
                what.append(SCHEMATIC)
        # components.arda upgrades from a recorded version only (its kubernetes_upgrade): none recorded, none shown.
        if previous and previous.get("kubernetesVersion") not in (None, current["kubernetesVersion"]) and not path_kubernetes(previous, current):
            # (A path's Kubernetes steps move it before any machine's own step: describe_path lists them.)
            what.append(f"Kubernetes {previous.get('kubernetesVersion')} -> {current['kubernetesVersion']}")
        if was.get("ip") != now["ip"]:
            what.append(f"address {was.get('ip')} -> {now['ip']}")
        if was.get("mac") != now["mac"]:
            what.append(f"replaced: a new machine ({now['mac']}) takes the place of {was.get('mac')}")
        if int(now.get("generation", 0)) > int(was.get("generation", 0)):
            what.append("found in maintenance mode (reset or reflashed): configured again")
        if was.get("patches") != now["patches"] and not what:
            what.append("machine config (a reboot only if Talos needs one for it)")
        elif was.get("patches") != now["patches"]:
            what.append("machine config")
        if was.get("logging", "") != now.get("logging", ""):
            what.append(LOG_DELIVERY if now.get("logging") else f"{LOG_DELIVERY} (turned off)")
        if f"{name}-apply" in rewritten and not what:
            # Only when nothing above runs it already (an address is in its command, for one).
            what.append(f"{CHANGED_STEP} (as configured, it only checks its health)")
        if what:
            out.append(Change(name, tuple(what)))
    return out


def describe(previous: Mapping[str, Any] | None, current: Mapping[str, Any]) -> str:
    """The plan as a person reads it: one numbered line per machine, or that nothing changes."""
    found = changes(previous, current)
    removed = sorted(set((previous or {}).get("nodes") or {}) - set(current["nodes"]))
    own = own_steps(previous, current)
    if not found and not removed and not own and not path_hops(previous, current):
        return "Arda: no change on any machine\n"
    lines: list[str] = []
    moved = previous is not None and previous.get("kubernetesVersion") not in (None, current["kubernetesVersion"])
    hops = path_hops(previous, current)
    if previous and (hops[:-1] or moved or releases.path_etcd_moves(previous.get("talosVersion"), hops)):
        # components.arda's first step of such a chain (plans.bringup.etcd_snapshot), before anything changes.
        out = bringup.ETCD_SNAPSHOT_BEFORE.format(
            # As components.arda names it: the recorded version, else the stack's (an output from before it was kept).
            talos=previous.get("talosVersion") or current.get("talosVersion"),
            kubernetes=previous.get("kubernetesVersion") or current["kubernetesVersion"],
        )
        lines.append(f"Arda: first an etcd snapshot from the first control plane to {out}, before any step changes the cluster")
    lines += describe_path(previous, current)
    lines += describe_etcd(previous, current)
    if previous and moved and not path_kubernetes(previous, current):
        # The kubernetes-upgrade step (plans.bringup.kubernetes_upgrade), after the preflight and before any machine's step.
        lines.append(
            f"Arda: Kubernetes {previous.get('kubernetesVersion')} -> {current['kubernetesVersion']} first, component by component: {KUBERNETES_ORDER}"
        )
    if found:
        lines.append(
            f"Arda: {len(found)} machine(s) change, one at a time in this order, each checked healthy before the next "
            "(an upgrade, or a change Talos must reboot for, drains and reboots its machine):"
        )
        lines += [f"  {i}. {c.node}: {'; '.join(c.what)}" for i, c in enumerate(found, 1)]
    if removed:
        lines.append(f"Arda: leaving the inventory: {', '.join(removed)}")
    return "\n".join(lines + own) + "\n"


def own_steps(previous: Mapping[str, Any] | None, current: Mapping[str, Any]) -> list[str]:
    """Arda's steps besides the machines' whose commands changed (they run again, after the machines'), or that the
    last deployment recorded none."""
    if not previous:
        return []
    rewritten = changed_commands(previous, current)
    if rewritten is None:
        return [f"Arda: {UNRECORDED}"]
    names = [step for step, _ in TALOSCONFIG_STEPS if step in rewritten]
    if not names:
        return []
    return [f"Arda: {', '.join(names)}: {CHANGED_STEP}, after the machines' steps ({'; '.join(dict(TALOSCONFIG_STEPS)[n] for n in names)})"]


# --- The talosconfig every Arda step reads on stdin ------------------------------------------------------------
#
# Every Arda step (each machine's apply, the bootstrap, the gates) gets the same talosconfig on stdin, a secret: the
# client certificate the Talos provider keeps, and the control planes as endpoints. When it changes, pulumi-command
# sees a new stdin on every one of them and re-runs them all (a step whose machine is as configured only checks its
# health: upgrader/README.md, `apply`). Two things change it: a control plane's address (the endpoints), and the
# provider's renewal of the client certificate. terraform-provider-talos v0.11.0 renews it when it ends within a
# month: ModifyPlan marks client_configuration's ca_certificate, client_certificate and client_key unknown when
# NotAfter is before now.AddDate(0, 1, 0) (pkg/talos/talos_machine_secrets_resource.go:372-378), and Update issues a
# new one valid for a year from then (:453-500; pkg/talos/util.go:183, machinery's
# TalosAPIDefaultCertificateValidityDuration, 365 days at v1.13.0 constants.go:1224). A preview cannot read the new
# certificate (unknown), nor even the old one, so each `up` exports the certificate's NotAfter in the `arda` output and
# the next run decides with the provider's own rule, against the day it runs.

# Arda's steps besides the machines' that read the talosconfig, in the order they run after them (components.arda).
TALOSCONFIG_STEPS = (
    ("bootstrap", "etcd is bootstrapped already: it only checks that"),
    ("gate-api", "waits for etcd, the API servers and the VIP again"),
    ("gate-nodes", "waits for every machine Ready again"),
)


def _der(data: bytes, at: int) -> tuple[int, int, int]:
    """The DER element at `at`: its tag, where its content starts and where it ends (X.690 8.1)."""
    tag, length, at = data[at], data[at + 1], at + 2
    if length & 0x80:
        size = length & 0x7F
        length, at = int.from_bytes(data[at : at + size], "big"), at + size
    return tag, at, at + length


def _asn1_time(tag: int, text: str) -> datetime.datetime:
    """UTCTime (YYMMDDHHMMSSZ, years 1950-2049) or GeneralizedTime (YYYYMMDDHHMMSSZ), as RFC 5280 4.1.2.5 has them."""
    if tag == 0x17:
        year = int(text[:2])
        text = f"{year + (1900 if year >= 50 else 2000)}{text[2:]}"
    return datetime.datetime.strptime(text, "%Y%m%d%H%M%SZ").replace(tzinfo=datetime.UTC)


def certificate_expiry(client_certificate: str) -> str | None:
    """NotAfter of the client certificate as the Talos provider stores it (base64 of a PEM certificate: util.go
    bytesToBase64), as `2027-11-25T12:07:33Z`; None when it is not such a certificate (offline, a placeholder)."""
    try:
        pem = base64.b64decode(client_certificate, validate=True).decode("ascii")
        body = pem.split("-----BEGIN CERTIFICATE-----", 1)[1].split("-----END CERTIFICATE-----", 1)[0]
        der = base64.b64decode("".join(body.split()))
        _, start, _ = _der(der, 0)  # Certificate
        _, at, _ = _der(der, start)  # tbsCertificate
        if der[at] == 0xA0:  # [0] version
            at = _der(der, at)[2]
        for _ in range(3):  # serialNumber, signature, issuer
            at = _der(der, at)[2]
        _, at, _ = _der(der, at)  # validity
        at = _der(der, at)[2]  # notBefore
        tag, start, end = _der(der, at)  # notAfter
        return _asn1_time(tag, der[start:end].decode("ascii")).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (ValueError, IndexError, UnicodeDecodeError, binascii.Error):
        return None


def add_month(now: datetime.datetime) -> datetime.datetime:
    """Go's time.AddDate(0, 1, 0): the same day of the next month, normalised (January 31 + 1 month = March 3, or 2), on
    the wall clock of `now`'s zone (Go's Date in its Location: the offset is the one in force on the day it lands on)."""
    year, month = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
    return now.replace(year=year, month=month, day=1) + datetime.timedelta(days=now.day - 1)


def local_zone(environ: Mapping[str, str] | None = None) -> datetime.tzinfo:
    """Go's time.Local, as the Talos provider's process has it (it inherits the environment `pulumi` runs in, as this
    program does): Go 1.26 src/time/zoneinfo_unix.go:28-68, initLocal. No $TZ: /etc/localtime; $TZ empty: UTC; $TZ
    `name` or `:name`: the file at that absolute path, or that zone of the system's database; one that cannot be read,
    or `UTC`: UTC."""
    env = os.environ if environ is None else environ
    tz = env.get("TZ")
    try:
        if tz is None:
            with open("/etc/localtime", "rb") as f:
                return zoneinfo.ZoneInfo.from_file(f, key="Local")
        name = tz.removeprefix(":")
        if name.startswith("/"):
            with open(name, "rb") as f:
                return zoneinfo.ZoneInfo.from_file(f, key=name)
        if name and name != "UTC":
            return zoneinfo.ZoneInfo(name)
    except (OSError, ValueError, zoneinfo.ZoneInfoNotFoundError):
        pass
    return datetime.UTC


def renewal_due(expires: str, now: datetime.datetime, zone: datetime.tzinfo | None = None) -> bool:
    """Whether the Talos provider renews the client certificate at a run on `now` (talos_machine_secrets_resource.go:373:
    NotAfter.Before(time.Now().AddDate(0, 1, 0)), :41 time.Now, in the provider's local zone: `zone`, local_zone()
    when not given). The month is added on that zone's calendar, so the threshold's instant depends on it: 23:30 UTC on
    January 30 is January 31 in Paris, whose month later is March 3 (March 2 in UTC)."""
    local = now.astimezone(local_zone() if zone is None else zone)
    return datetime.datetime.strptime(expires, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC) < add_month(local)


def renewal(previous: Mapping[str, Any] | None, now: datetime.datetime | None) -> str | None:
    """Why the talosconfig changes for the certificate, when the provider renews it in a run on `now`."""
    expires = str((previous or {}).get("clientCertificateExpires") or "")
    if not expires or now is None or not renewal_due(expires, now):
        return None
    return f"the Talos client certificate expires on {expires[:10]}, within a month of {now:%Y-%m-%d}: the Talos provider renews it in this run"


def talosconfig_changes(previous: Mapping[str, Any] | None, current: Mapping[str, Any], now: datetime.datetime | None = None) -> list[str]:
    """Why every Arda step's talosconfig (its stdin) changes in this run; empty when it does not."""
    if not previous:
        return []
    why: list[str] = []
    was = previous.get("endpoints")
    endpoints_now = list(current.get("endpoints") or [])
    if was is None:
        # An output from before `endpoints` was exported: the control planes' addresses then, from the `nodes` map,
        # whose order the engine does not keep (a stack output is a protobuf Struct, whose map has none): compared as a set.
        nodes = previous.get("nodes") or {}
        addresses = sorted(str(v.get("ip")) for v in nodes.values() if v.get("role") == "valinor")
        if set(addresses) != set(endpoints_now):
            why.append(f"its endpoints, the control planes' addresses, change from {', '.join(addresses)} to {', '.join(endpoints_now)}")
    elif list(was) != endpoints_now:
        why.append(f"its endpoints, the control planes' addresses, change from {', '.join(was)} to {', '.join(endpoints_now)}")
    if (renewed := renewal(previous, now)) is not None:
        why.append(renewed)
    return why


# --- The Ainur: each Pi's join (its k3s config) and k3s step (its version), one Pi at a time --------------------


def k3s_config_digest(stack: StackConfig, node: Node) -> str:
    """A digest of a Pi's k3s config without its token (secret, and the same every run): what its join's stdin is
    made of, so the next run can tell whose join re-runs (and restarts k3s), as patches_digest does for Arda."""
    return hashlib.sha256(k3s.config(stack, node, "(the join token)").encode()).hexdigest()[:16]


def kubelet_dropin_digest() -> str:
    """A digest of the kubelet's drop-in (plans.k3s.kubelet_dropin): the join installs it beside the config and restarts
    k3s when it changed, as for the config, so the next run can tell that its join restarts k3s on every Pi."""
    return hashlib.sha256(k3s.kubelet_dropin().encode()).hexdigest()[:16]


# A deployment that did not record the drop-in's digest: the join's command holds the drop-in, so an unchanged join
# installs the same one (nothing to say), and a changed join may bring a new one (this is said, once: the run records it).
KUBELET_UNRECORDED = (
    "its kubelet drop-in: unknown: the last deployment did not record it (its join installs it, and restarts k3s if the Pi's "
    "differs or is missing, as on a Pi deployed before Iluvatar wrote one, then waits for its Node Ready (and etcd on a valar))"
)
KUBELET_CHANGES = (
    "its kubelet drop-in changes (the kubelet reads it only as it starts): its join installs it and restarts k3s, then waits for "
    "its Node Ready (and etcd on a valar)"
)


def join_token(node: Node) -> str:
    """Which token a Pi's config carries: `server` (a valar), `agent` (a maia's own, plans.agent_token). A deployment
    that did not record it had every maia on the server token."""
    return "server" if node.role == "valar" else "agent"


# Why a maia deployed on the server token has its join run again (its config digest leaves the token out).
REJOIN_OWN = (
    "it re-joins with a token of its own (a bootstrap token, kube-system/bootstrap-token-<id>, pinned to the cluster CA's hash) "
    "instead of the cluster's server token, which then leaves its root: its Secret is made, its join writes the new config and "
    "restarts k3s-agent, then waits for its Node Ready"
)


def ainur_state(stack: StackConfig, order: Sequence[Node]) -> dict[str, Any]:
    """What the Ainur run after this deployment: the stack output `ainur` (no secret in it), `order` the Pis' roll."""
    assert stack.ainur is not None
    return {
        "k3sVersion": stack.ainur.k3s_version,
        # The address the netbooted maiar's roots and EEPROMs name: stacks.day2 refuses its move while they netboot.
        "serviceIp": str(stack.ainur.service_ip),
        # Whether k3s seals the Secrets: stacks.day2 refuses turning it off over sealed Secrets the API server could not read.
        "secretsEncryption": stack.ainur.secrets_encryption,
        "order": [n.name for n in order],
        "nodes": {
            n.name: {
                "mac": n.mac,
                "ip": str(n.ip),
                "role": n.role,
                "config": k3s_config_digest(stack, n),
                "kubelet": kubelet_dropin_digest(),
                "joinToken": join_token(n),
            }
            # A netbooting maia: the image it boots (plans.netboot.roll moves it to a new one).
            | ({"image": image_id(stack), "pointer": pointer_digest(stack, n)} if n.boot == "netboot" else {})
            for n in stack.ainur_nodes
        },
        "commands": ainur_commands(stack),
        # kube-vip-services' pod template: the day-2 plan names its roll step when it changes (plans.netboot.vip_roll).
        "kubeVip": vip_roll.template_digest(stack),
        # The netbooted roots' StorageClass and the Pis whose data disks make it Longhorn's: stacks.day2 refuses a change
        # of the class while maiar netboot (review 41-6 M3: a claim's class cannot change, and the claims are protected).
        **({"rootsClass": pi_pods.roots_class(stack), "longhornPis": [n.name for n in longhorn_pis(stack.nodes)]} if netboot_pis(stack) else {}),
        # The class of Headscale's state claim (protected): stacks.day2 refuses its change where the state has no backup.
        **(
            {"headscaleClass": storage.git_mirror_class(stack)}
            if stack.remote_access is not None and stack.remote_access.flavour == "headscale"
            else {}
        ),
    }


# --- The Ainur's k3s certificates, renewed by a run of each Pi's k3s step --------------------------------------
#
# k3s renews its certificates only as it starts, within plans.k3s.CERTIFICATE_RENEW_DAYS of their end, and its k3s step
# restarts it then (plans.k3s.upgrade_script); but pulumi-command runs a step only when its inputs change. So the step
# ends its stdout with the earliest end of its Pi's certificates (plans.k3s.CERTIFICATES_LINE), each `up` exports it in
# the `ainur` output (`certificates`), and a run on a day within the window of the recorded end gives the step a
# trigger naming that end: the step runs again (a trigger's change replaces it; it has no delete), restarts k3s, gated,
# one Pi at a time in the Pis' chain, and records the renewed end. The trigger is kept in the output and stays the
# same until the next end falls due, so later runs leave the step alone. A day short of k3s's window: the Pi, judging
# by its own clock, then finds the certificate within it even with a clock a day apart from the operator's.
CERTIFICATE_TRIGGER_DAYS = k3s.CERTIFICATE_RENEW_DAYS - 1


def certificates_end(stdout: str | None) -> str | None:
    """The earliest end of a Pi's k3s certificates, as its k3s step's stdout ends with it (`2027-11-25T12:07:33Z`);
    None when it says none (k3s made none yet) or the step printed no such line (a step of an earlier version)."""
    for line in reversed((stdout or "").splitlines()):
        if line.startswith(k3s.CERTIFICATES_LINE):
            end = line.removeprefix(k3s.CERTIFICATES_LINE).strip()
            try:
                datetime.datetime.strptime(end, "%Y-%m-%dT%H:%M:%SZ")
            except ValueError:
                return None
            return end
    return None


def recorded_certificates(previous: Mapping[str, Any] | None, name: str) -> Mapping[str, Any]:
    """What the last deployment recorded of Pi `name`'s k3s certificates; a value printed hidden ("[secret]", by
    `pulumi stack output --json` of an older deployment's) counts as unrecorded."""
    entry = ((previous or {}).get("certificates") or {}).get(name)
    return {k: v for k, v in entry.items() if v != "[secret]"} if isinstance(entry, Mapping) else {}


def certificate_trigger(previous: Mapping[str, Any] | None, name: str, now: datetime.datetime | None) -> str | None:
    """The trigger of Pi `name`'s k3s step: a new one naming the recorded end when a run on `now` is within
    CERTIFICATE_TRIGGER_DAYS of it, else the one the last deployment recorded (None: none yet)."""
    entry = recorded_certificates(previous, name)
    end, trigger, clock = entry.get("end"), entry.get("trigger"), entry.get("clock")
    if isinstance(end, str) and now is not None:
        ends = datetime.datetime.strptime(end, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
        if ends < now + datetime.timedelta(days=CERTIFICATE_TRIGGER_DAYS):
            # Its step last found the Pi's clock behind (plans.k3s.CLOCK_LINE) and restarted nothing: a trigger naming
            # that clock, new at each run that follows one such, so the step runs again until the clock is set.
            again = f" (its clock said {clock} at the last run)" if isinstance(clock, str) else ""
            return f"{TRIGGER_PREFIX}{end}{again}"
    return trigger if isinstance(trigger, str) else None


TRIGGER_PREFIX = "renew the k3s certificates ending "


def clock_warning(previous: Mapping[str, Any] | None, name: str) -> str | None:
    """What a run says of Pi `name` when its k3s step last found its clock behind (certificates_clock)."""
    entry = recorded_certificates(previous, name)
    clock = entry.get("clock")
    if not isinstance(clock, str):
        return None
    return (
        f"ainur: {name}: at the last run its clock said {clock}, by which its k3s certificates (ending {entry.get('end')}) "
        f"were not within k3s's {k3s.CERTIFICATE_RENEW_DAYS} days; k3s renews them by the Pi's own clock, so its step "
        "restarted nothing; set its clock (look with: timedatectl status): this run's k3s step tries again"
    )


def certificate_warning(previous: Mapping[str, Any] | None, name: str, now: datetime.datetime) -> str | None:
    """What a run on `now` says of Pi `name`'s k3s certificates when their recorded end is within
    plans.k3s.CERTIFICATE_WARNING_DAYS or past: the warning a stack without the monitoring layer (no alert) gets too."""
    end = recorded_certificates(previous, name).get("end")
    if not isinstance(end, str):
        return None
    ends = datetime.datetime.strptime(end, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    if ends >= now + datetime.timedelta(days=k3s.CERTIFICATE_WARNING_DAYS):
        return None
    when = "ended" if ends <= now else f"end within {k3s.CERTIFICATE_WARNING_DAYS} days"
    return (
        f"ainur: {name}: its k3s certificates {when} (at {end}, as its k3s step last read them); this `pulumi up` runs its k3s "
        "step, which restarts k3s to renew them; if it fails or the Pi does not answer, restart k3s on it by hand "
        "(docs/day2.md#the-ainurs-k3s-certificates)"
    )


def renewing_end(trigger: str | None) -> str | None:
    """The end a k3s step's trigger renews (its script restarts k3s for a certificate ending by it, whatever the Pi's
    clock says, and fails unless the end moved past it: plans.k3s.upgrade_script); None for no trigger."""
    if not trigger or not trigger.startswith(TRIGGER_PREFIX):
        return None
    return certificates_end(k3s.CERTIFICATES_LINE + trigger.removeprefix(TRIGGER_PREFIX).split(" ", 1)[0])


def certificates_clock(stdout: str | None) -> str | None:
    """The Pi's clock its k3s step found behind (plans.k3s.CLOCK_LINE: it restarted nothing for the certificates); None
    when it printed no such line."""
    for line in reversed((stdout or "").splitlines()):
        if line.startswith(k3s.CLOCK_LINE):
            return line.removeprefix(k3s.CLOCK_LINE).strip() or None
    return None


def ainur_changes(previous: Mapping[str, Any] | None, current: Mapping[str, Any] | None) -> list[Change]:
    """The Pis whose join or k3s step runs, in the order they roll (components.ainur), each with why."""
    if not previous or not current or not previous.get("k3sVersion"):
        return []
    before = dict(previous.get("nodes") or {})
    old, new = previous.get("k3sVersion"), current["k3sVersion"]
    rewritten = changed_commands(previous, current) or set()
    out: list[Change] = []
    for name in current.get("order") or list(current["nodes"]):
        now, was = current["nodes"][name], before.get(name)
        if was is None:
            out.append(Change(name, ("new: joins k3s",)))
            continue
        what: list[str] = []
        retoken = now.get("joinToken") == "agent" and was.get("joinToken", "server") != "agent"
        if retoken:
            what.append(REJOIN_OWN)
        if was.get("config") is None:
            what.append("its k3s config: unknown: the last deployment did not record it (its join writes it and restarts k3s only if it changed)")
        elif was.get("config") != now.get("config"):
            what.append("its k3s config changes: its join writes it and restarts k3s, then waits for its Node Ready (and etcd on a valar)")
        if was.get("kubelet") is None:
            if f"{name}-join" in rewritten:
                what.append(KUBELET_UNRECORDED)
        elif was.get("kubelet") != now.get("kubelet"):
            what.append(KUBELET_CHANGES)
        if now.get("image") and was.get("image") and now["image"] != was["image"]:
            what.append(
                f"Ubuntu image {was['image']} -> {now['image']}: drained, its boot moved to the new image (pi-boot-{name}), "
                "rebooted, its join waits for its Node Ready as reported by the kubelet of its new boot, its k3s step brings the new root's k3s to "
                f"the stack's version, tainted {k3s.NETBOOT_TAINT} and uncordoned"
            )
        elif now.get("image") and was.get("pointer") and now.get("pointer") != was["pointer"]:
            # Review 41-2 M2: its cmdline.txt changed (the network, the NFS options), not its image. (The service address
            # cannot move under netbooted maiar: stacks.day2 refuses it, review 41-3 M3.)
            what.append(
                f"its boot pointer (pi-boot-{name}) changes, not its image (its cmdline.txt: the network or the NFS options)"
                ": drained, its pointer moved, rebooted with it, its join waits for its Node Ready as reported by the kubelet of its "
                f"new boot, its k3s step checks its version, tainted {k3s.NETBOOT_TAINT} and uncordoned"
            )
        elif now.get("image") and not was.get("image"):
            what.append(f"netboots {now['image']}: its boot pointer (pi-boot-{name}) is made, then its join as a new Pi's")
        # Its roll runs: a new image or another boot pointer (each step Iluvatar's change alone runs again is listed below).
        moved = bool(now.get("image")) and (
            now.get("image") != was.get("image") or (was.get("pointer") is not None and now.get("pointer") != was.get("pointer"))
        )
        was_commands = previous.get("commands")
        was_reads = (
            [k for k in was_commands or () if k == f"{name}-host-key" or k.startswith(f"{name}-host-key-")]
            if isinstance(was_commands, Mapping)
            else []
        )
        now_reads = [k for k in current.get("commands") or () if k == f"{name}-host-key" or k.startswith(f"{name}-host-key-")]
        if now.get("image") and was_reads and now_reads and was_reads != now_reads:
            # `hostKeyRead` raised (a Pi rebuilt with a new key): its host-key step is a new one (plans.netboot.roll.host_key_step).
            what.append(
                "its SSH host key is read again (hostKeyRead: a new host-key step, the old one leaves the state) and pinned in the "
                "connection of its steps on it: its reboot step (no reboot if it runs its pointer's image and booted its cmdline.txt), "
                "join and k3s step run again over the new key"
            )
        if now.get("image") and isinstance(was_commands, Mapping) and was_commands and not was_reads:
            # Review 41-2 M4: a netbooted maia deployed before its host key was pinned: the connection of its steps on it changes.
            what.append(
                "its SSH host key is read once (its host-key step) and pinned in the connection of its steps on it: its reboot step (no "
                "reboot if it runs its pointer's image and booted its cmdline.txt; else, gated, it reboots into them), join and k3s step "
                "run again over the pinned connection"
            )
        # A run of its drain or its reboot step runs its join, k3s step and uncordon after it (their triggers carry the
        # reboot step's run mark: components.ainur, plans.netboot.roll.RUN_MARK).
        follows = not moved and bool({f"{name}-drain", f"{name}-reboot"} & rewritten)
        if old != new:
            what.append(f"k3s {old} -> {new}: its k3s step upgrades it, then waits for its Node Ready (and etcd on a valar)")
        renew = recorded_certificates(current, name).get("trigger")
        if renew and renew != recorded_certificates(previous, name).get("trigger"):
            end = str(recorded_certificates(previous, name).get("end"))
            what.append(
                f"its k3s certificates end at {end}, within {CERTIFICATE_TRIGGER_DAYS} days: its k3s step runs and restarts k3s, "
                f"which renews them only as it starts (within {k3s.CERTIFICATE_RENEW_DAYS} days of their end), then waits for its Node Ready"
                + (" and etcd healthy" if now.get("role") == "valar" else "")
                + ", and the netboot pod (the LAN's DHCP and DNS) available before the next Pi"
            )
        for step, does, explained in (
            ("oidc", "its API server's sign-in file and Dex's name, written again", False),
            (
                "join",
                "with its config unchanged it restarts nothing, and checks its Node and etcd",
                was.get("config") != now.get("config") or was.get("kubelet") != now.get("kubelet") or moved or follows or retoken,
            ),
            ("drain", "drains it again", moved),
            ("reboot", "no reboot if it runs its image, booted with its pointer's cmdline.txt; else it reboots into them", moved),
            (
                "uncordon",
                f"taints it {k3s.NETBOOT_TAINT}, so every pod that does not tolerate it leaves it, and uncordons it if a drain of Iluvatar's left it cordoned",
                moved or follows,
            ),
            ("k3s", "with k3s at its version and running it, it restarts nothing, and checks its Node and etcd", old != new or moved or follows),
        ):
            if f"{name}-{step}" in rewritten and not explained:
                what.append(f"its {step} step: {CHANGED_STEP} ({does})")
        if follows:
            what.append(
                "then, as after every run of its drain or reboot step, its join checks its Node Ready as reported by the kubelet of this boot, "
                "its k3s step checks its version, and its uncordon taints it and uncordons it if a drain of Iluvatar's left it cordoned"
            )
        if what:
            out.append(Change(name, tuple(what)))
    return out


def describe_ainur(previous: Mapping[str, Any] | None, current: Mapping[str, Any] | None) -> str:
    """The Ainur's part of the day-2 plan: every Pi step that runs, in order, and why; empty when none does."""
    found = ainur_changes(previous, current)
    rewritten = changed_commands(previous, current) if previous and current and previous.get("k3sVersion") else set()
    tail = [f"Ainur: {UNRECORDED}"] if rewritten is None else []
    tail += [f"Ainur: {step}: {CHANGED_STEP}" for step in ("credentials", "gate-api", "ca-hash") if step in (rewritten or set())]
    if current is not None and "kubeVip" in current:
        deployed = bool(previous and previous.get("k3sVersion"))
        tail += [f"Ainur: {line}" for line in vip_roll.plan_lines((previous or {}).get("kubeVip"), current["kubeVip"], deployed)]
    if not found:
        return "\n".join(tail) + "\n" if tail else ""
    shared = ""
    if current is not None and len([c for c in found if any("k3s config changes" in w for w in c.what)]) == len(current["nodes"]) > 1:
        shared = " (a setting every Pi's config carries)"
    lines = [f"Ainur: {len(found)} Pi(s) change{shared}, one at a time in this order, each back and healthy before the next:"]
    lines += [f"  {i}. {c.node}: {'; '.join(c.what)}" for i, c in enumerate(found, 1)]
    return "\n".join(lines + tail) + "\n"


def describe_mode(before: str | None, now: str | None) -> str:
    """The day-2 plan's lines for a move between DHCP modes (`before`: the last deployment's, stacks.netboot_mode.deployed_mode;
    `now`: the stack's): what the household sees, and what the router needs, and when. Empty when the mode stays."""
    if before is None or now is None or before == now:
        return ""
    if now == "dhcp":
        return (
            "Netboot: the DHCP mode moves from proxy to dhcp: once the netboot pod restarts, the Ainur are the LAN's DHCP "
            "server (network.dhcpRange, the inventory's reservations, ainur.serviceIp as DNS server). The household's "
            "devices keep the router's addresses until they renew, then take the Ainur's, which may differ. Leave the "
            "router's DHCP server on until `pulumi up` says to turn it off: right before the netboot pod restarts, "
            'netboot-router-off says "turn the router\'s DHCP server off now" and waits up to '
            f"{dhcp_probe.ROUTER_WAIT_MINUTES} min until no server but the Ainur's answers (the stack says you will: "
            "ainur.netboot.routerDhcpOff). network.dhcpRange stays apart from the pool it lent (ainur.netboot.routerPool), "
            "whose addresses the household holds until their leases end.\n"
        )
    return (
        "Netboot: the DHCP mode moves from dhcp to proxy. Leave the router's DHCP server off until `pulumi up` says to "
        "turn it on: the Ainur lend until their netboot pod restarts, and two servers lending at once would hand out "
        "the same addresses and the Ainur refuse the router's leases. Then netboot-router-dhcp says \"turn the router's "
        f'DHCP server on now" and waits up to {dhcp_probe.ROUTER_WAIT_MINUTES} min for it: its pool the one the stack '
        "names (ainur.netboot.routerPool), apart from network.dhcpRange until the Ainur's leases end (leaseTime: the "
        "household's devices keep their addresses until then, and a router that does not ping first could lend one "
        "again; the step fails on an offer outside it), the `reservations` output as its static "
        "leases, and ainur.serviceIp as the DNS server it hands out if the household should keep resolving the internal "
        "zone. If this `up` fails or stops once netboot-deployment-netboot has begun to change and before that word, turn "
        "the router's DHCP on then all the same: the Ainur's pod may already answer only the machines it boots.\n"
    )


def plan(
    previous: Mapping[str, Any] | None,
    current: Mapping[str, Any],
    now: datetime.datetime | None = None,
    probe: str | None = None,
    ainur: tuple[Mapping[str, Any] | None, Mapping[str, Any] | None] = (None, None),
    routes: bool = False,
) -> str:
    """The whole day-2 plan, as `pulumi preview` logs it and rollout.txt holds it: every step `up` runs, in order,
    and why. `now` is the day of the run (the client certificate's renewal); `probe` says what the maintenance-mode
    probe did, when it did not run; `routes`, that remote access routes to the pool's Services."""
    why = talosconfig_changes(previous, current, now)
    found = {c.node: c for c in changes(previous, current)}
    lines: list[str] = []
    if why and previous:
        lines += describe_path(previous, current)
        steps = len(current["order"]) + len(TALOSCONFIG_STEPS)
        lines.append(
            f"Arda: the talosconfig every step reads on stdin changes ({'; and '.join(why)}), so all {steps} Arda steps run, "
            "one at a time in this order (a machine as configured only checks its health; an upgrade, or a change Talos "
            "must reboot for, drains and reboots its machine):"
        )
        for i, name in enumerate(current["order"], 1):
            what = found[name].what if name in found else ("as configured: checks its health",)
            lines.append(f"  {i}. {name}: {'; '.join(what)}")
        first = current["order"][0] if current["order"] else ""
        for i, (step, does) in enumerate(TALOSCONFIG_STEPS, len(current["order"]) + 1):
            # The bootstrap waits only for the first control plane's step (components.arda), the gates for every one.
            lines.append(f"  {i}. {step}{f' (on {first}, once its step is done)' if step == 'bootstrap' else ''}: {does}")
        removed = sorted(set((previous or {}).get("nodes") or {}) - set(current["nodes"]))
        if removed:
            lines.append(f"Arda: leaving the inventory: {', '.join(removed)}")
        if changed_commands(previous, current) is None:
            lines.append(f"Arda: {UNRECORDED}")
        text = "\n".join(lines) + "\n"
    else:
        text = describe(previous, current)
    if probe:
        text += f"Arda: {probe}\n"
    text += logs_off(previous, current)
    text += pool_moves(previous, current, routes)
    text += chart_moves(previous, current)
    # The Ainur's part first, as the program logs it (their component comes first); the two chains do not wait for each other.
    return describe_ainur(*ainur) + text
