"""GitOps under the mock runtime: Argo CD after Cilium, one ApplicationSet per category, secrets kept
secret, platform Applications carrying the inventory's values, and the ownership rules in the graph."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from iluvatar import simulate as simulation
from iluvatar.render import render_files
from iluvatar.simulate import SecretValue, Simulation, simulate
from plans import gitops as plan
from plans import identity as identity_plan
from stacks import load_stack_file, read_stack_file
from stacks.categories import DEFAULT_CATEGORIES
from tests.edit import GOES_WITH_GITOPS, HOMELAB, RK1, ROOT, ciphertext, edit, homelab_doc, write_stack
from tests.sims import simulated

CHART = "kubernetes:helm.sh/v3:Release"
APPSET = "kubernetes:argoproj.io/v1alpha1:ApplicationSet"
PROJECT = "kubernetes:argoproj.io/v1alpha1:AppProject"
APPLICATION = "kubernetes:argoproj.io/v1alpha1:Application"


def _names(sim: Simulation, urns: Any) -> set[str]:
    by_urn = {r.urn: r.name for r in sim.registrations}
    return {by_urn[u] for u in urns}


# Argo CD's NetworkPolicies on each cluster (plans.gitops.network_policies).
ARGOCD_POLICIES = ("default-deny-ingress", "server", "redis", "repo-server", "application-controller")


def test_the_layer_and_its_parts(homelab: Simulation) -> None:
    regs = homelab.named()
    assert regs["gitops"].type == "iluvatar:gitops:GitOps"
    assert sorted((r.type, r.name) for r in homelab.children(regs["gitops"])) == [
        ("iluvatar:gitops:ArgoCd", "gitops-ainur"),
        ("iluvatar:gitops:ArgoCd", "gitops-arda"),
    ]
    arda = {r.name for r in homelab.children(regs["gitops-arda"])}
    assert arda == {
        "gitops-arda-kubernetes",
        "gitops-arda-random",
        "gitops-arda-namespace-argocd",
        "gitops-arda-redis-password",
        "gitops-arda-secret-argocd-redis",
        # Who reaches Argo CD's listeners (plans.gitops.network_policies), the program's in place of its chart's.
        *(f"gitops-arda-networkpolicy-iluvatar-argocd-{p}" for p in ARGOCD_POLICIES),
        "gitops-arda-release",
        "gitops-arda-appproject-arda",
        "gitops-arda-appproject-platform",
        # The category namespaces are the edge's (edge-namespace-<category>): this layer does not make them again.
        *(f"gitops-arda-applicationset-{c}" for c in DEFAULT_CATEGORIES),
    }
    ainur = {r.name for r in homelab.children(regs["gitops-ainur"])}
    assert ainur == {
        "gitops-ainur-kubernetes",
        "gitops-ainur-random",
        "gitops-ainur-redis-password",
        "gitops-ainur-secret-argocd-redis",
        *(f"gitops-ainur-networkpolicy-iluvatar-argocd-{p}" for p in ARGOCD_POLICIES),
        "gitops-ainur-release",
        "gitops-ainur-appproject-ainur",
        "gitops-ainur-appproject-platform",
        "gitops-ainur-applicationset-ainur",
    }


def test_argo_cd_is_a_helm_release_after_every_machine_is_ready(homelab: Simulation) -> None:
    regs = homelab.named()
    chart = regs["gitops-arda-release"]
    assert chart.type == CHART
    assert {k: chart.inputs[k] for k in ("chart", "version", "name", "namespace")} == {
        "chart": "argo-cd",
        "version": "10.8.0",
        "name": "argocd",
        "namespace": "argocd",
    }
    assert chart.inputs["repositoryOpts"] == {"repo": "https://argoproj.github.io/argo-helm"}
    # With the homelab's sign-in, the values also carry Dex's (plans.identity), which name the local CA.
    stack = load_stack_file(HOMELAB)
    assert chart.inputs["values"] == plan.helm_values(stack, "arda", identity_plan.argocd_values(stack, "arda", simulation.MOCK_CA_PEM))
    # After every Arda machine is Ready (the gate after Cilium), its namespace and its Redis password, and after
    # External Secrets Operator, its webhook gate and every category's store (components.data): no app syncs
    # before the store that feeds its Secret. With sign-in, its values also wait for the local CA's certificate
    # (Argo CD's oidc.config names it as rootCA).
    assert _names(homelab, chart.dependencies) == {
        "arda-gate-nodes",
        "gitops-arda-namespace-argocd",
        "gitops-arda-secret-argocd-redis",
        "edge-certificates-ca-cert",
        "data-secrets-release",
        "data-secrets-gate",
        "data-secrets-home-automation-secretstore-iluvatar",
        "data-secrets-media-secretstore-iluvatar",
        "data-secrets-selfhosted-secretstore-iluvatar",
        # Its listeners behind the program's policies before the chart runs a pod.
        *(f"gitops-arda-networkpolicy-iluvatar-argocd-{p}" for p in ARGOCD_POLICIES),
    }
    # A Release, through the GitOps layer's own provider for Arda: a cluster that is down fails no preview (tests/test_preview.py).
    assert chart.provider.startswith(regs["gitops-arda-kubernetes"].urn + "::")


def test_the_seed_on_the_ainur_goes_into_the_netboot_layers_namespace(homelab: Simulation) -> None:
    regs = homelab.named()
    chart = regs["gitops-ainur-release"]
    stack = load_stack_file(HOMELAB)
    assert chart.inputs["values"] == plan.helm_values(stack, "ainur", identity_plan.argocd_values(stack, "ainur", simulation.MOCK_CA_PEM))
    assert _names(homelab, chart.dependencies) == {
        "netboot-namespace-argocd",
        "netboot-namespace-netboot",
        "gitops-ainur-secret-argocd-redis",
        "edge-certificates-ca-cert",
        *(f"gitops-ainur-networkpolicy-iluvatar-argocd-{p}" for p in ARGOCD_POLICIES),
    }
    assert "gitops-ainur-namespace-argocd" not in regs


def test_both_providers_adopt_what_an_interrupted_run_left(homelab: Simulation) -> None:
    regs = homelab.named()
    for cluster in ("arda", "ainur"):
        provider = regs[f"gitops-{cluster}-kubernetes"]
        assert provider.inputs["upsertExistingObjects"] == "true"
        assert isinstance(provider.inputs["kubeconfig"], SecretValue)
    # Each cluster's own kubeconfig: Talos's for Arda, the Ainur's pointed at their VIP.
    assert regs["gitops-arda-kubernetes"].inputs["kubeconfig"] == regs["arda-kubernetes"].inputs["kubeconfig"]
    assert regs["gitops-ainur-kubernetes"].inputs["kubeconfig"] == regs["ainur-kubernetes"].inputs["kubeconfig"]
    assert "server: https://192.168.0.10:6443" in regs["gitops-ainur-kubernetes"].inputs["kubeconfig"].value


def test_one_application_set_per_category_in_use(tmp_path: Path) -> None:
    doc = edit(homelab_doc(), {"iluvatar:gitops.categories": ["games", "printing"]})
    sim = simulate(read_stack_file(write_stack(tmp_path, doc, stack="homelab")))
    categories = [*DEFAULT_CATEGORIES, "games", "printing"]
    arda = [r for r in sim.by_type(APPSET) if r.name.startswith("gitops-arda-")]
    assert sorted(r.inputs["metadata"]["name"] for r in arda) == sorted(categories)
    for r in arda:
        category = r.inputs["metadata"]["name"]
        generator = r.inputs["spec"]["generators"][0]["git"]
        assert generator["directories"] == [{"path": f"kubernetes/apps/{category}/*"}]
        assert r.inputs["spec"]["template"]["spec"]["destination"]["namespace"] == category
        assert _names(sim, r.dependencies) == {
            "gitops-arda-release",
            "gitops-arda-appproject-arda",
            "gitops-arda-appproject-platform",
            f"edge-namespace-{category}",
        }
    assert [r.inputs["metadata"]["name"] for r in sim.by_type(APPSET) if r.name.startswith("gitops-ainur-")] == ["ainur"]
    namespaces = sorted(r.inputs["metadata"]["name"] for r in sim.by_type("kubernetes:core/v1:Namespace") if r.name.startswith("gitops-arda-"))
    assert namespaces == ["argocd"]
    # The edge makes one namespace per category, the stack's own included.
    edge = sorted(r.inputs["metadata"]["name"] for r in sim.by_type("kubernetes:core/v1:Namespace") if r.name.startswith("edge-namespace-"))
    assert edge == sorted([*categories, "cert-manager", "envoy-gateway-system"])


def test_projects_and_application_sets_wait_for_the_release(homelab: Simulation) -> None:
    for project in homelab.by_type(PROJECT):
        cluster = project.name.split("-")[1]
        assert _names(homelab, project.dependencies) == {f"gitops-{cluster}-release"}


def _private(tmp_path: Path, doc: dict[str, Any], secret_key: str, canary: str, monkeypatch: pytest.MonkeyPatch, stack: str) -> Simulation:
    doc = edit(doc, {f"iluvatar:{secret_key}": {"secure": ciphertext("CANARY-CIPHERTEXT")}})
    sf = read_stack_file(write_stack(tmp_path, doc, stack=stack))
    original = simulation.pulumi_config

    def with_canary(sf: Any) -> tuple[dict[str, str], list[str]]:
        config, secret = original(sf)
        config[f"iluvatar:{secret_key}"] = canary
        return config, secret

    monkeypatch.setattr(simulation, "pulumi_config", with_canary)
    return simulate(sf)


def _everything(sim: Simulation) -> str:
    return json.dumps([[r.inputs for r in sim.registrations]], default=repr) + json.dumps(sim.outputs, default=repr)


def test_a_private_repository_read_directly_gets_a_secret_repository_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    canary = "CANARY-GITHUB-TOKEN-9c1e"
    doc = edit(yamlish(RK1), {"iluvatar:gitops.private": True})
    sim = _private(tmp_path, doc, "gitopsToken", canary, monkeypatch, "rk1")
    secret = sim.named()["gitops-arda-secret-gitops-repository"]
    assert secret.inputs["metadata"]["labels"]["argocd.argoproj.io/secret-type"] == "repository"
    data = secret.inputs["stringData"]
    assert isinstance(data, SecretValue)
    assert data.value == {"type": "git", "url": "https://github.com/example/turing-pi.git", "project": "arda", "username": "git", "password": canary}
    assert canary in json.dumps(data.value), "the canary must flow through the program"
    assert canary not in _everything_but_secrets(sim)
    for rel, content in render_files(sim).items():
        assert canary not in content and ciphertext("CANARY-CIPHERTEXT") not in content, rel
    # The chart waits for it: Argo CD starts with the credential in place.
    assert "gitops-arda-secret-gitops-repository" in _names(sim, sim.named()["gitops-arda-release"].dependencies)


def test_with_the_mirror_only_the_ainur_hold_the_credential(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    canary = "CANARY-DEPLOY-KEY-77a0"
    doc = edit(homelab_doc(), {"iluvatar:gitops.repoUrl": "git@github.com:example/homelab.git"})
    sim = _private(tmp_path, doc, "gitopsSshPrivateKey", canary, monkeypatch, "homelab")
    regs = sim.named()
    assert "gitops-arda-secret-gitops-repository" not in regs
    secret = regs["gitops-ainur-secret-git-mirror-credentials"]
    assert secret.inputs["metadata"] == {"name": "git-mirror-credentials", "namespace": "netboot", "labels": dict(plan.MANAGED_BY)}
    assert secret.provider.startswith(regs["gitops-ainur-kubernetes"].urn + "::")
    data = secret.inputs["stringData"]
    assert isinstance(data, SecretValue)
    assert data.value["ssh-privatekey"] == canary
    assert canary not in _everything_but_secrets(sim)
    for rel, content in render_files(sim).items():
        assert canary not in content, rel
    mirror = regs["git-mirror-deployment-git-mirror"].inputs["spec"]["template"]["spec"]
    assert {"name": "credentials", "secret": {"secretName": "git-mirror-credentials", "defaultMode": 256}} in mirror["volumes"]


def _everything_but_secrets(sim: Simulation) -> str:
    def strip(value: Any) -> Any:
        if isinstance(value, SecretValue):
            return "[secret]"
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items()}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return json.dumps([strip(r.inputs) for r in sim.registrations], default=repr) + json.dumps(strip(sim.outputs), default=repr)


def yamlish(path: Path) -> dict[str, Any]:
    import yaml

    doc: dict[str, Any] = yaml.safe_load(path.read_text())
    return doc


def test_the_initial_admin_secret_is_never_read_or_exported(homelab: Simulation) -> None:
    assert "argocd-initial-admin-secret" not in _everything(homelab)
    assert not [t for t, _ in homelab.invocations if "kubernetes" in t]
    assert sorted(homelab.outputs["gitopsRepoUrls"]) == ["ainur", "arda"]
    assert homelab.outputs["gitopsRepoUrls"] == {
        "arda": "git://192.168.0.15/repo.git",
        "ainur": "git://git-mirror.netboot.svc.cluster.local/repo.git",
    }


def test_redis_passwords_are_secret(homelab: Simulation) -> None:
    for cluster in ("arda", "ainur"):
        data = homelab.named()[f"gitops-{cluster}-secret-argocd-redis"].inputs["stringData"]
        assert isinstance(data, SecretValue)
        assert sorted(data.value) == ["auth"]


def test_rk1_has_arda_only() -> None:
    sim = simulated(RK1)
    assert not [r for r in sim.registrations if r.name.startswith("gitops-ainur")]
    assert sim.outputs["gitopsRepoUrls"] == {"arda": "https://github.com/example/turing-pi.git"}


def test_no_gitops_section_means_no_argo_cd(tmp_path: Path) -> None:
    # With GitOps, what goes with it (tests.edit.GOES_WITH_GITOPS): Monitoring, Headlamp, the apps' backups.
    doc = edit(
        homelab_doc(),
        {"iluvatar:ainur.gitMirror.url": "https://github.com/example/homelab.git"},
        delete=list(GOES_WITH_GITOPS),
    )
    sim = simulate(read_stack_file(write_stack(tmp_path, doc, stack="homelab")))
    assert not [r for r in sim.registrations if r.name.startswith("gitops")]
    assert "gitopsRepoUrls" not in sim.outputs


# --- platform Applications: what the storage layer does, through the real program


STORAGE = """
import runpy
import pulumi
from components.gitops import PlatformApplication, PlatformApplicationArgs
from plans.gitops import platform_application

program = runpy.run_path({main!r}, run_name="__main__")
stack = program["stack"]
nodes = [{{"name": n.name, "devices": [{{"name": d}} for d in n.data_disks]}} for n in stack.arda_nodes if n.data_disks]
values = {{"cephClusterSpec": {{"storage": {{"useAllNodes": False, "useAllDevices": False, "nodes": nodes}}}}}}
app = platform_application(
    "rook-ceph-cluster", chart="rook-ceph-cluster", repo_url="https://charts.rook.io/release", version="v1.20.4",
    values=values, namespace="rook-ceph",
)
PlatformApplication("storage-ceph", PlatformApplicationArgs(app, program["gitops"].arda))
"""


def _with_storage(tmp_path: Path, doc: dict[str, Any], name: str) -> Simulation:
    program = tmp_path / f"{name}.py"
    program.write_text(STORAGE.format(main=str(ROOT / "__main__.py")))
    folder = tmp_path / name
    folder.mkdir()
    return simulate(read_stack_file(write_stack(folder, doc, stack="homelab")), program=program)


def _state(sim: Simulation) -> dict[str, Any]:
    return {r.name: (r.type, r.inputs, _names(sim, r.dependencies)) for r in sim.registrations}


def test_a_platform_application_carries_the_inventorys_values(tmp_path: Path) -> None:
    sim = _with_storage(tmp_path, homelab_doc(), "before")
    regs = sim.named()
    app = regs["storage-ceph-application-rook-ceph-cluster"]
    assert app.type == APPLICATION
    assert regs["storage-ceph"].type == "iluvatar:gitops:PlatformApplication"
    assert app.provider.startswith(regs["gitops-arda-kubernetes"].urn + "::")
    assert _names(sim, app.dependencies) == {"gitops-arda-release", "gitops-arda-appproject-platform"}
    storage = app.inputs["spec"]["source"]["helm"]["valuesObject"]["cephClusterSpec"]["storage"]
    assert storage["nodes"] == [{"name": n, "devices": [{"name": "/dev/nvme0n1"}]} for n in ("taniquetil", "tirion", "alqualonde")]
    assert app.inputs["spec"]["project"] == "platform"


def test_a_nodes_disk_changes_that_applications_values_and_nothing_else(tmp_path: Path) -> None:
    before = _state(_with_storage(tmp_path, homelab_doc(), "before"))
    doc = edit(homelab_doc(), {"iluvatar:nodes[4].dataDisks": ["/dev/nvme0n1", "/dev/nvme1n1"]})
    after = _state(_with_storage(tmp_path, doc, "after"))
    assert set(before) == set(after)
    changed = sorted(name for name in before if before[name] != after[name])
    # The Application, and the config of the machine whose disk it is (its data-disks node annotation).
    # The real storage layer's own Application changes the same way (tests/components/test_storage.py).
    assert changed == [
        "arda-tirion-apply",
        "storage-arda-rook-ceph-cluster-application-rook-ceph-cluster",
        "storage-ceph-application-rook-ceph-cluster",
    ]
    nodes = after["storage-ceph-application-rook-ceph-cluster"][1]["spec"]["source"]["helm"]["valuesObject"]["cephClusterSpec"]["storage"]["nodes"]
    assert nodes[1] == {"name": "tirion", "devices": [{"name": "/dev/nvme0n1"}, {"name": "/dev/nvme1n1"}]}


EDGE_OWNS_NAMESPACES = """
import pulumi
import pulumi_command as command
import pulumi_kubernetes as k8s
from components.gitops import GitOps, GitOpsArgs
from components.steps import ClusterAccess
from plans import gitops as plan
from stacks.pulumi_source import load

stack = load().config
provider = k8s.Provider("edge-kubernetes", kubeconfig="a kubeconfig")
commands = command.Provider("arda-command")
anchor = command.local.Command("arda-bootstrap", create="true", opts=pulumi.ResourceOptions(provider=commands))
arda = ClusterAccess("arda", pulumi.Output.secret("a kubeconfig"), commands, anchor, "arda")
namespaces = {
    c: k8s.core.v1.Namespace(f"edge-namespace-{c}", metadata={"name": c}, opts=pulumi.ResourceOptions(provider=provider))
    for c in plan.categories(stack)
}
GitOps("gitops", GitOpsArgs(stack, arda=arda, arda_after=[], namespaces=namespaces))
"""


def test_category_namespaces_another_layer_owns_are_used_not_made_again(tmp_path: Path) -> None:
    program = tmp_path / "edge.py"
    program.write_text(EDGE_OWNS_NAMESPACES)
    sim = simulate(read_stack_file(RK1), program=program)
    made = sorted(r.inputs["metadata"]["name"] for r in sim.by_type("kubernetes:core/v1:Namespace") if r.name.startswith("gitops-"))
    assert made == ["argocd"]
    for appset in sim.by_type(APPSET):
        category = appset.inputs["metadata"]["name"]
        assert f"edge-namespace-{category}" in _names(sim, appset.dependencies)
