"""`iluvatar versions STACK`: what the stack runs, the newest each part supports, and the path there.

Read from the same tables the rules check a stack with (stacks.releases: Talos's own compatibility packages; stacks.pins:
the charts Iluvatar installs), so what
it prints is what `pulumi preview` would accept. With `--previous OUTPUTS.json` (the last deployment's outputs), the
path starts from what Arda runs, as `pulumi up` would take it; without, from what the stack names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stacks import day2, pins, releases
from stacks import outputs as exports
from stacks.day2 import k3s_release
from stacks.model import StackConfig


def _path(talos: str, kubernetes: str, to_talos: str, to_kubernetes: str) -> list[str]:
    """Each `pulumi up` of the way: Talos's rolls in one (with Kubernetes moved on the way where a minor needs it:
    stacks.day2), then Kubernetes a minor a run. The rolls are stacks.releases.talos_path's, as `pulumi up` and
    `render --previous` take them (stacks.day2.path_of, plans.rollout.path_hops): a patch back within the minor that
    runs among them, one roll, which machinery allows below MaximumHostDowngradeVersion."""
    runs: list[str] = []
    try:
        hops = releases.talos_path(talos, kubernetes, to_talos, to_kubernetes) if to_talos != talos else []
    except releases.PathError as e:
        return [f"none: {e}"]
    rolls = [str(h.talos) for h in hops if h.talos is not None]
    if rolls == [to_talos] and releases.release(to_talos) < releases.release(talos):
        runs.append(
            f"arda.talosVersion {to_talos}: a roll back of every machine, one machine at a time ({talos} -> {to_talos}, a patch "
            f"back within {releases.show(releases.minor_of(talos))}, which Talos installs as it does an upgrade: each machine drained, "
            f"installed and rebooted, and checked healthy before the next); it undoes {releases.undone(talos, to_talos)} on every "
            f"machine: unless it is meant, write {talos} back"
        )
    elif steps := releases.kubernetes_steps(hops):
        kubernetes = steps[-1]
        runs.append(
            f"arda.talosVersion {rolls[-1]} with arda.kubernetesVersion {kubernetes}: {len(rolls)} roll(s) of every machine "
            f"({', '.join(rolls)}), Kubernetes moved before the rolls that need it ({', '.join(steps)})"
        )
    elif rolls:
        runs.append(f"arda.talosVersion {rolls[-1]}: {len(rolls)} roll(s) of every machine ({', '.join(rolls)})")
    have, want = releases.minor_of(kubernetes), releases.minor_of(to_kubernetes)
    for minor in range(have[1] + 1, want[1] + 1):
        runs.append(f"arda.kubernetesVersion v1.{minor}.x" if minor < want[1] else f"arda.kubernetesVersion {to_kubernetes}")
    if have == want and releases.release(kubernetes) < releases.release(to_kubernetes):
        runs.append(f"arda.kubernetesVersion {to_kubernetes}")
    return runs


def _k3s_path(k3s: str, to_k3s: str) -> list[str]:
    """The Ainur's runs from k3s `k3s` to `to_k3s`, as stacks.day2.k3s_path gives them: the path `render --previous`
    and `pulumi up` name the first run of when they refuse a change that is no single run (stacks.day2._k3s)."""
    return [f"ainur.k3sVersion {release}{f' ({why})' if why else ''}" for release, why in day2.k3s_path(k3s, to_k3s)]


def report(name: str, stack: StackConfig, previous: Mapping[str, Any] | None = None) -> list[str]:
    """The lines `iluvatar versions` prints."""
    arda = stack.arda
    row = releases.BY_MINOR[releases.minor_of(arda.talos_version)]
    newest = releases.TALOS_MINORS[-1]
    low, high = row.kubernetes
    lines = [
        f"{name}: versions (stacks.releases; docs/day2.md)",
        f"  Talos       {arda.talos_version:<14} newest this Iluvatar knows: {newest.newest} (a stack may run {releases.target_span()})",
        f"  Kubernetes  {arda.kubernetes_version:<14} Talos {releases.show(row.minor)} runs 1.{low} to 1.{high}; "
        f"the release Iluvatar is tested with: {releases.KUBERNETES}",
    ]
    if stack.ainur is not None:
        mark = "" if k3s_release(stack.ainur.k3s_version) >= k3s_release(releases.K3S) else " (older)"
        lines.append(f"  k3s         {stack.ainur.k3s_version:<14} the release Iluvatar is tested with: {releases.K3S}{mark}")
    # The charts a stack may pin itself (stacks.pins: what Iluvatar installs by default and checks its values against).
    charts = [("Cilium", arda.cilium.version, pins.CHARTS["cilium"])]
    if stack.gitops is not None:
        charts.append(("Argo CD", stack.gitops.argocd.version, pins.CHARTS["argo-cd"]))
    for part, chart, pinned in charts:
        note = "" if chart == pinned else " (the stack pins another: its values are checked against that chart's schema)"
        lines.append(f"  {part:<11} {chart:<14} the chart Iluvatar installs and is tested with: {pinned}{note}")
    arda_out = (previous or {}).get(exports.ARDA) if isinstance(previous, Mapping) else None
    ainur_out = (previous or {}).get(exports.AINUR) if isinstance(previous, Mapping) else None
    running_k3s = ainur_out.get("k3sVersion") if isinstance(ainur_out, Mapping) else None
    if isinstance(arda_out, Mapping) and arda_out.get("talosVersion"):
        running_talos = str(arda_out["talosVersion"])
        running_kube = str(arda_out.get("kubernetesVersion") or arda.kubernetes_version)
        k3s = f", k3s {running_k3s} on the Ainur" if isinstance(running_k3s, str) else ""
        lines.append(f"  runs now    Talos {running_talos}, Kubernetes {running_kube}{k3s} (the last deployment's outputs)")
        # What `pulumi up` (and `render --previous`) refuses against what runs, in its own words: no path leads there.
        if refused := day2.no_way(stack, day2.DeployedArda.from_output(arda_out), ainur_out):
            lines.append("  path to this stack's versions: none, `pulumi up` refuses them (as `iluvatar render --previous` does):")
            return lines + [f"    {problem}" for problem in refused]
        runs = _path(running_talos, running_kube, arda.talos_version, arda.kubernetes_version)
        if stack.ainur is not None and isinstance(running_k3s, str):
            runs += _k3s_path(running_k3s, stack.ainur.k3s_version)
        lines.append("  path to this stack's versions, one `pulumi up` each:" if runs else "  path to this stack's versions: none, it runs them")
    else:
        runs = _path(arda.talos_version, arda.kubernetes_version, newest.newest, releases.KUBERNETES)
        lines.append("  path to the newest, one `pulumi up` each:" if runs else "  path to the newest: none, the stack names it")
    lines += [f"    {i}. {run}" for i, run in enumerate(runs, 1)]
    return lines
