"""A cluster that is down blocks nothing else: no resource or invoke of ours asks a cluster anything at preview.

`pulumi preview` of a change to one cluster must work while the other is down (the day a Pi dies is
the day you need Pulumi most). The kinds below are those that ask a cluster or a machine for
something while the engine plans, each with where that happens in the provider's source; every
other kind the program registers previews against a cluster that does not answer (`../shared`'s
engine facts: a real engine saw a `helm.v3.Release` and plain objects preview fine against an
unreachable cluster, while a `helm.v4.Chart` failed the whole preview).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from iluvatar.render import cluster_of
from iluvatar.simulate import Simulation, simulate
from stacks import read_stack_file
from tests.bringup import edited
from tests.edit import HOMELAB, RK1
from tests.sims import simulated

# Resource types and invoke tokens that ask their cluster or machine at preview, and where.
ASKS_AT_PREVIEW = {
    # helm/v4/chart.go, setKubeVersionAndAPIVersions: the server version and API groups, at construction.
    "kubernetes:helm.sh/v4:Chart": "asks its cluster for the server version while it is constructed (pulumi-kubernetes helm/v4/chart.go)",
    # talos_cluster_health_data_source.go: runs Talos's health checks against the nodes.
    "talos:cluster/getHealth:getHealth": "runs the health checks against the nodes (terraform-provider-talos talos_cluster_health_data_source.go)",
    # talos_machine_disks_data_source.go: lists a node's disks over the Talos API.
    "talos:machine/getDisks:getDisks": "lists a node's disks over the Talos API (terraform-provider-talos talos_machine_disks_data_source.go)",
    # talos_cluster_kubeconfig_data_source.go: reads the kubeconfig over the Talos API.
    "talos:cluster/getKubeconfig:getKubeconfig": "reads the kubeconfig over the Talos API (terraform-provider-talos talos_cluster_kubeconfig_data_source.go)",
    # pulumi-command's invokes run their command whenever the program runs, previews included.
    "command:local:run": "runs a command at preview (pulumi-command local/run.go)",
    "command:remote:run": "runs a command on a machine at preview (pulumi-command remote)",
}
# ModifyPlan of talos_machine_configuration_apply dry-runs the config against the node when the mode asks it to.
APPLY = "talos:machine/configurationApply:ConfigurationApply"


def askers(sim: Simulation) -> list[str]:
    """Every registration and invoke of the run that would ask a cluster at preview, named with its cluster."""
    found = [f"{reg.name} ({reg.type}) {ASKS_AT_PREVIEW[reg.type]}, on {cluster_of(reg)}" for reg in sim.registrations if reg.type in ASKS_AT_PREVIEW]
    found += [
        f"{reg.name} ({reg.type}) dry-runs its config against {reg.inputs.get('node')} at preview (applyMode staged_if_needing_reboot)"
        for reg in sim.registrations
        if reg.type == APPLY and reg.inputs.get("applyMode") == "staged_if_needing_reboot"
    ]
    found += [
        f"invoke {token} {ASKS_AT_PREVIEW[token]} ({args.get('node') or args.get('endpoint') or ''})"
        for token, args in sim.invocations
        if token in ASKS_AT_PREVIEW
    ]
    return found


@pytest.mark.parametrize("path", [HOMELAB, RK1], ids=["homelab", "rk1"])
def test_nothing_asks_a_cluster_at_preview(path: Path) -> None:
    assert askers(simulated(path)) == []


def test_argo_cd_as_a_v4_chart_would_block_every_preview() -> None:
    """The check fails on the Argo CD install as it was (a helm.v4.Chart), naming it and its cluster."""
    with edited(
        "components.gitops",
        ("self.release = k8s.helm.v3.Release(", "self.release = k8s.helm.v4.Chart("),
        (
            "repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=plan.REPOSITORY),",
            "repository_opts=k8s.helm.v4.RepositoryOptsArgs(repo=plan.REPOSITORY),",
        ),
        (
            "opts=pulumi.ResourceOptions(parent=self, provider=self.provider, depends_on=[*first, *secrets]),",
            "opts=pulumi.ResourceOptions(parent=self, providers={'kubernetes': self.provider}, depends_on=[*first, *secrets]),",
        ),
    ):
        found = askers(simulate(read_stack_file(HOMELAB)))
    assert found == [
        f"gitops-{cluster}-release (kubernetes:helm.sh/v4:Chart) asks its cluster for the server version while it is constructed (pulumi-kubernetes helm/v4/chart.go), on {cluster}"
        for cluster in ("ainur", "arda")
    ]
