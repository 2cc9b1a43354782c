"""A cluster that is down blocks nothing else: no resource or invoke of ours asks a cluster anything at preview.

`pulumi preview` of a change to one cluster must work while the other is down (the day a Pi dies is
the day you need Pulumi most). The kinds below are those that ask a cluster or a machine for
something while the engine plans, each with where that happens in the provider's source; every
other kind the program registers previews against a cluster that does not answer (`../shared`'s
engine facts: a real engine saw a `helm.v3.Release` and plain objects preview fine against an
unreachable cluster, while a `helm.v4.Chart` and a `yaml/v2:ConfigGroup` failed the whole preview).

The Kubernetes ones are read from the installed SDK, not listed by hand:

- every component the SDK has its provider construct (`remote=True`): pulumi-kubernetes refuses to construct
  any of them when its cluster did not answer when it was configured (v4.32.0 provider/pkg/provider/
  provider_construct.go lines 71-72; its components, lines 32-36), and while its kubeconfig is unknown at
  preview a component's children drop out of the plan and show as deletes (engine facts, the ConfigGroup);
- every invoke the SDK's own code sends (its client-side v1 components'), each classified below from the
  provider's source: a new one in a new SDK fails the test until someone reads what it does.
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
from tools.provider_inputs import remote_components, sdk_invokes

KUBERNETES = "kubernetes"
CONSTRUCTED = "is constructed by its provider, which refuses while its cluster does not answer (pulumi-kubernetes provider_construct.go)"
# What the provider does with each invoke the Kubernetes SDK's own code sends, at v4.32.0 (provider/pkg/...):
# the reason it asks the cluster at preview, or None where it does not.
SDK_INVOKES: dict[str, str | None] = {
    # helm.v3.Chart / helm.v2.Chart (helm/v3/helm.py): provider.go line 1091 renders with the cluster's client set:
    # invoke_helm_template.go lines 268-269 and 340-370 ask the server's version and API groups, then line 1097
    # decodes with the release's namespace, asking discovery for every kind it does not know (clients.go line 225).
    "kubernetes:helm:template": "asks its cluster for the server version and API groups (pulumi-kubernetes invoke_helm_template.go)",
    # yaml.ConfigFile / ConfigGroup v1 (yaml/yaml.py) send only `text`: invoke_decode_yaml.go lines 48-49 ask the
    # cluster only with a defaultNamespace.
    "kubernetes:yaml:decode": None,
    # kustomize.Directory v1: invoke_kustomize.go line 89 decodes with no namespace (line 50 fetches a Git folder, no cluster).
    "kubernetes:kustomize:directory": None,
}

# Resource types and invoke tokens that ask their cluster or machine at preview, and where.
ASKS_AT_PREVIEW = {
    **dict.fromkeys(remote_components(KUBERNETES), CONSTRUCTED),
    **{token: why for token, why in SDK_INVOKES.items() if why is not None},
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


def test_the_kubernetes_sdks_remote_components_are_the_providers() -> None:
    """What the SDK constructs remotely is exactly what the provider constructs (provider_construct.go lines 32-36)."""
    assert remote_components(KUBERNETES) == (
        "kubernetes:helm.sh/v4:Chart",
        "kubernetes:kustomize/v2:Directory",
        "kubernetes:yaml/v2:ConfigFile",
        "kubernetes:yaml/v2:ConfigGroup",
    )


def test_every_invoke_of_the_kubernetes_sdk_is_classified() -> None:
    assert sorted(sdk_invokes(KUBERNETES)) == sorted(SDK_INVOKES)
    assert sdk_invokes(KUBERNETES)["kubernetes:helm:template"] == ("helm/v3/helm.py",)


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
            "opts=pulumi.ResourceOptions(parent=self, provider=self.provider, depends_on=[*first, *secrets, *policies]),",
            "opts=pulumi.ResourceOptions(parent=self, providers={'kubernetes': self.provider}, depends_on=[*first, *secrets, *policies]),",
        ),
    ):
        found = askers(simulate(read_stack_file(HOMELAB)))
    assert found == [f"gitops-{cluster}-release (kubernetes:helm.sh/v4:Chart) {CONSTRUCTED}, on {cluster}" for cluster in ("ainur", "arda")]


# The Prometheus Operator's CRDs as they were installed (issue #38): a ConfigGroup of the release's files.
CONFIG_GROUP = (
    """    made = [
        kube.create(
            group,
            crd,
            access.with_cluster(
                pulumi.ResourceOptions(
                    parent=parent, provider=provider, aliases=[pulumi.Alias(name=f"{group}:{crd['metadata']['name']}", parent=former)]
                )
            ),
        )
        for crd in plan.crds()
    ]""",
    """    made = [
        k8s.yaml.v2.ConfigGroup(
            group,
            files=[f"https://raw.githubusercontent.com/prometheus-operator/prometheus-operator/v0.93.0/example/prometheus-operator-crd/{f}" for f in plan.CRD_FILES],
            opts=pulumi.ResourceOptions(parent=parent, providers={"kubernetes": provider}, deleted_with=access.anchor),
        )
    ]""",
)


def test_the_monitoring_crds_as_a_config_group_would_block_every_preview() -> None:
    with edited("components.monitoring", CONFIG_GROUP):
        found = askers(simulate(read_stack_file(RK1)))
    assert found == [f"arda-monitoring-crds (kubernetes:yaml/v2:ConfigGroup) {CONSTRUCTED}, on arda"]


def test_a_client_side_helm_chart_would_ask_its_cluster_at_preview() -> None:
    """A helm.v3.Chart (the SDK's own component) asks the provider to render it, which asks the cluster."""
    release = (
        "self.release = k8s.helm.v3.Release(",
        "self.release = k8s.helm.v3.Chart(f'{name}-chart', k8s.helm.v3.ChartOpts(chart='argo-cd', fetch_opts=k8s.helm.v3.FetchOpts(repo=plan.REPOSITORY)),"
        " opts=pulumi.ResourceOptions(parent=self, provider=self.provider))\n        self.release = k8s.helm.v3.Release(",
    )
    with edited("components.gitops", release):
        found = [line for line in askers(simulate(read_stack_file(RK1))) if "helm:template" in line]
    assert found == [
        "invoke kubernetes:helm:template asks its cluster for the server version and API groups (pulumi-kubernetes invoke_helm_template.go) ()"
    ]
