"""The day-2 plan: what a `pulumi up` changes on each Arda machine, in the order it rolls them.

Every deployment exports what Arda runs (`state`: the versions, and per machine its address, its
installer image and a digest of its patches) as the stack output `arda`. The next run reads it
back (stacks.day2 refuses impossible version changes) and compares: `changes` lists, in the
rollout order (`plans.bringup.rollout_order`), each machine whose step will run and why. `pulumi
up` prints that list before it starts, and `iluvatar render STACK --previous OUTPUTS.json` writes
it to rollout.txt, so the day-2 plan can be read offline. A machine whose state is the same is not
listed: rendering a stack against its own outputs shows no change.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from plans import bringup
from stacks.model import StackConfig


def node_state(stack: StackConfig, installer: str, patches: str, name: str, generation: int = 0) -> dict[str, Any]:
    node = next(n for n in stack.arda_nodes if n.name == name)
    return {"mac": node.mac, "ip": str(node.ip), "role": node.role, "installer": installer, "patches": patches, "generation": generation}


def state(
    stack: StackConfig, installers: Mapping[str, str], patches: Mapping[str, str], generations: Mapping[str, int] | None = None
) -> dict[str, Any]:
    """What Arda runs after this deployment: the stack output `arda` (no secret in it)."""
    order = [n.name for n in bringup.rollout_order(stack)]
    counts = generations or {}
    return {
        "talosVersion": stack.arda.talos_version,
        "kubernetesVersion": stack.arda.kubernetes_version,
        "order": order,
        "nodes": {name: node_state(stack, installers[name], patches[name], name, counts.get(name, 0)) for name in order},
        # The charts' versions, so the next preview refuses one going backwards (stacks.day2).
        "charts": {"cilium": stack.arda.cilium.version, **({"argocd": stack.gitops.argocd.version} if stack.gitops is not None else {})},
    }


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


def _tag(image: str) -> str:
    return image.rsplit(":", 1)[-1]


def changes(previous: Mapping[str, Any] | None, current: Mapping[str, Any]) -> list[Change]:
    """The machines whose step runs, in rollout order, each with what changes on it."""
    before = dict((previous or {}).get("nodes") or {})
    by_mac = {str(v.get("mac")): n for n, v in before.items()}
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
            schematic = str(was.get("installer")).rsplit(":", 1)[0] != now["installer"].rsplit(":", 1)[0]
            what.append(f"Talos {old} -> {new}" if old != new else "Talos extensions (a new schematic)")
            if old != new and schematic:
                what.append("Talos extensions (a new schematic)")
        if previous and previous.get("kubernetesVersion") != current["kubernetesVersion"]:
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
        if what:
            out.append(Change(name, tuple(what)))
    return out


def describe(previous: Mapping[str, Any] | None, current: Mapping[str, Any]) -> str:
    """The plan as a person reads it: one numbered line per machine, or that nothing changes."""
    found = changes(previous, current)
    removed = sorted(set((previous or {}).get("nodes") or {}) - set(current["nodes"]))
    if not found and not removed:
        return "Arda: no change on any machine\n"
    lines: list[str] = []
    if found:
        lines.append(
            f"Arda: {len(found)} machine(s) change, one at a time in this order, each checked healthy before the next "
            "(an upgrade, or a change Talos must reboot for, drains and reboots its machine):"
        )
        lines += [f"  {i}. {c.node}: {'; '.join(c.what)}" for i, c in enumerate(found, 1)]
    if removed:
        lines.append(f"Arda: leaving the inventory: {', '.join(removed)}")
    return "\n".join(lines) + "\n"
