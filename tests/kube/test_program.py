"""The program's Kubernetes objects on real control planes: admitted in the engine's order, unchanged
by a second `up`, and every workload's pods admitted and scheduled where the inventory means them.

For each stack (and a sample of random ones): the real program under Pulumi's mocks
(`iluvatar.simulate`), a Talos control plane for Arda and a k3s one for the Ainur with the
inventory's machines as kwok nodes, every object written as its writer writes it
(`tools.kube_program.Walker`: pulumi-kubernetes, Helm, a helm.v4 Chart, Argo CD's sync), then the
second `up`, then the pods. Any refusal names the cluster, the object, its writer and the API
server's words.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plans import gitops, netboot, storage
from stacks.load import StackFile, read_stack_file
from tests.edit import HOMELAB, RK1
from tests.kube.deploy import STATIC_SOURCE, Deployed, deployed, problems
from tests.strategies import raw_stacks

pytestmark = pytest.mark.kube


@pytest.fixture(scope="module", params=[HOMELAB, RK1], ids=["homelab", "rk1"])
def deployment(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    with deployed(read_stack_file(request.param), tmp_path_factory.mktemp(request.param.stem)) as result:
        yield result


def _names(lines: list[str]) -> list[str]:
    return sorted(lines)


def test_every_object_is_admitted_in_the_engines_order(deployment: Deployed) -> None:
    report = deployment.report
    assert report.refusals == [], "refused:\n" + "\n".join(report.refusals)
    # Only other providers' resources are skipped (Talos, commands, Cloudflare, TLS, random); no Kubernetes kind is.
    assert not [t for t in report.skipped if t.startswith("kubernetes:")]
    assert {w.cluster for w in report.written} == set(deployment.clusters)


def test_what_stood_in_and_what_was_removed_is_exactly_what_cannot_run_here(deployment: Deployed) -> None:
    report = deployment.report
    cilium = "arda: cilium's operator: 22 objects it creates at start-up, from its module at 1.18.4"
    webhooks = [
        "arda: MutatingWebhookConfiguration cert-manager-webhook (edge-certificates-cert-manager) admitted, then removed: no pod serves cert-manager/cert-manager-webhook here",
        "arda: ValidatingWebhookConfiguration cert-manager-webhook (edge-certificates-cert-manager) admitted, then removed: no pod serves cert-manager/cert-manager-webhook here",
        "arda: ValidatingWebhookConfiguration trust-manager (edge-certificates-trust-manager) admitted, then removed: no pod serves cert-manager/trust-manager here",
    ]
    rook = "arda: Application rook-ceph: its subchart ceph-csi-operator (no Go module serves it)"
    assert report.stand_ins == [cilium]
    assert report.removed == webhooks
    if deployment.stack.ainur is not None:  # homelab: Longhorn on the Pis' disks
        assert report.not_rendered == [
            rook,
            "ainur: Application longhorn (longhorn 1.10.1): Longhorn's chart is in no Go module the proxy serves (github.com/longhorn/longhorn@v1.10.1 answers 403)",
        ]
    else:
        assert report.not_rendered == [rook]


def test_a_second_up_changes_nothing(deployment: Deployed) -> None:
    changes = deployment.walker.reapply()
    assert deployment.report.refusals == [], "refused on the second up:\n" + "\n".join(deployment.report.refusals)
    assert changes == [], "changed by the second up:\n" + "\n".join(changes)


def test_every_workload_pod_is_admitted_and_scheduled(deployment: Deployed) -> None:
    found = problems(deployment)
    assert found == [], "\n".join(found)


def test_each_workload_runs_where_the_inventory_means_it(deployment: Deployed) -> None:
    stack = deployment.stack
    arda_nodes = deployment.nodes("arda")
    # Cilium's agent on every Arda machine, control planes included.
    assert deployment.workload("arda", "DaemonSet kube-system/cilium").nodes == arda_nodes
    workers = deployment.nodes("arda", iluvatar__role="istari")
    anywhere = arda_nodes if stack.arda.allow_scheduling_on_control_planes else workers
    for name in (
        "Deployment envoy-gateway-system/envoy-gateway",
        "Deployment cert-manager/cert-manager",
        f"StatefulSet {gitops.NAMESPACE}/argocd-application-controller",
        f"Deployment {storage.LOCAL_PATH_NAMESPACE}/local-path-provisioner",
        f"Deployment {storage.ROOK_NAMESPACE}/rook-ceph-operator",
        f"Deployment {storage.ROOK_NAMESPACE}/rook-ceph-tools",
    ):
        assert set(deployment.workload("arda", name).nodes) <= set(anywhere), name
    if stack.ainur is not None:
        pis = deployment.nodes("ainur")
        for name in ("DaemonSet netboot/netboot-cache", "DaemonSet kube-system/kube-vip-services"):
            assert deployment.workload("ainur", name).nodes == pis, name
        # The netboot pod on a maiar: a valar's death then leaves DHCP running.
        [node] = deployment.workload("ainur", "Deployment netboot/netboot").nodes
        assert node in deployment.nodes("ainur", iluvatar__role="maiar")
        # kube-vip's static pod on each valar, as each valar's kubelet registers it.
        static = [w for w in deployment.workloads("ainur") if w.source == STATIC_SOURCE]
        assert sorted(n for w in static for n in w.nodes) == [n.name for n in stack.by_role("valar")]
        # The Git mirror on a Pi, with its claim bound (a stand-in volume: no provisioner runs here).
        assert deployment.workload("ainur", "Deployment netboot/git-mirror").nodes[0] in pis


def test_homelab_workloads_land_exactly_here(deployment: Deployed) -> None:
    if deployment.stack.ainur is None:
        pytest.skip("the homelab's exact placement")  # rk1's is checked by the general rules above
    placements = {w.name: w.nodes for cluster in deployment.clusters for w in deployment.workloads(cluster)}
    on_control_planes = {name for name, nodes in placements.items() if set(nodes) & {"taniquetil", "tirion", "alqualonde"}}
    # Only what tolerates the control planes' taint runs on them: Cilium's agent and operator, Rook's toolbox Job pods' peers.
    assert sorted(on_control_planes) == ["DaemonSet kube-system/cilium", "Deployment kube-system/cilium-operator"]


def test_no_other_workload_of_ours_calls_the_api() -> None:
    """The netboot pod's lease scripts are the program's only in-cluster API client (tests/netns proves
    their Role); the Git mirror runs git, the retire Job runs ceph: neither reads a token or the API."""
    stack = read_stack_file(HOMELAB).parse()
    mirror = [c for d in netboot.git_mirror_manifests(stack) if d["kind"] == "Deployment" for c in d["spec"]["template"]["spec"]["containers"]]
    retire = storage.retire_job(stack.arda_nodes[0].model_copy(update={"retire": True}))
    scripts: list[Any] = [c.get("command") for c in mirror] + [c.get("command") for c in retire["spec"]["template"]["spec"]["containers"]]
    text = repr(scripts)
    assert scripts and not any(word in text for word in ("KUBERNETES_SERVICE", "serviceaccount", "kubectl", "/api/v1"))
    assert "KUBERNETES_SERVICE_HOST" in netboot.restore_leases_script() and "KUBERNETES_SERVICE_HOST" in netboot.save_leases_script()


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow], derandomize=True)
@given(raw=raw_stacks(), retire=st.booleans())
def test_random_stacks_are_admitted_and_scheduled(raw: dict[str, Any], retire: bool, tmp_path_factory: pytest.TempPathFactory) -> None:
    stack_file = StackFile(Path("Pulumi.random.yaml"), raw, frozenset())
    with deployed(stack_file, tmp_path_factory.mktemp("random")) as deployment:
        assert deployment.report.refusals == [], "\n".join(deployment.report.refusals)
        assert deployment.walker.reapply() == []
        assert problems(deployment) == []
        assert deployment.workload("arda", "DaemonSet kube-system/cilium").nodes == deployment.nodes("arda")
        if deployment.stack.ainur is not None:
            [node] = deployment.workload("ainur", "Deployment netboot/netboot").nodes
            maiar = deployment.nodes("ainur", iluvatar__role="maiar")
            assert node in (maiar or deployment.nodes("ainur"))
