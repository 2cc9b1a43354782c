"""The walker's own comparison (tools.kube_program.diff_paths): what counts as a change between two ups."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from iluvatar.simulate import Simulation
from plans import gitops, monitoring
from stacks import load_stack_file
from tests.edit import HOMELAB
from tools import gotools, kube_program
from tools.kube_cluster import Cluster, ProviderOptions, field_manager, pulumi_create
from tools.kube_program import _controllers_own, diff_paths, unkept_empty_lists
from tools.upstream import kustomize


def test_bookkeeping_and_the_deployment_controllers_revision_are_not_changes() -> None:
    before = {"metadata": {"name": "netboot", "resourceVersion": "1"}, "spec": {"replicas": 1}}
    after = {
        "metadata": {"name": "netboot", "resourceVersion": "7", "annotations": {"deployment.kubernetes.io/revision": "1"}},
        "spec": {"replicas": 1},
        "status": {"readyReplicas": 1},
    }
    assert diff_paths(before, after) == []


def test_an_annotation_of_ours_is_a_change_even_where_there_were_none() -> None:
    before = {"metadata": {"name": "netboot"}}
    after = {"metadata": {"name": "netboot", "annotations": {"iluvatar/rendered": "2", "deployment.kubernetes.io/revision": "2"}}}
    assert diff_paths(before, after) == ["metadata.annotations.iluvatar/rendered"]
    assert diff_paths({"spec": {"replicas": 1}}, {"spec": {"replicas": 2}}) == ["spec.replicas"]


def test_the_pv_controllers_claim_annotation_is_not_the_updates_doing_unless_the_object_sets_it() -> None:
    """The PV controller names the provisioner on an unbound claim on its own schedule, so it may land between the read
    before an update and the update; an annotation the applied object sets itself is the update's, and counts."""
    path = "metadata.annotations.volume.kubernetes.io/storage-provisioner"
    claim = {"kind": "PersistentVolumeClaim", "metadata": {"name": "drill-tools"}}
    assert _controllers_own(path, claim)
    assert _controllers_own("metadata.annotations.volume.beta.kubernetes.io/storage-provisioner", claim)
    assert not _controllers_own(path, {"metadata": {"annotations": {"volume.kubernetes.io/storage-provisioner": "x"}}})
    assert not _controllers_own("metadata.labels.app", claim)


def test_an_empty_list_the_server_drops_is_a_change_on_every_apply() -> None:
    """A NetworkPolicy applied with `ingress: []` is stored without it: every apply of it is a change to the API server,
    which the second apply's resourceVersion shows only when it falls in a later second; the walk says so every time."""
    sent: dict[str, Any] = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "iluvatar-argocd-application-controller", "namespace": "argocd", "annotations": {}},
        "spec": {"podSelector": {"matchLabels": {"app": "c"}}, "policyTypes": ["Ingress"], "ingress": []},
    }
    stored = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "iluvatar-argocd-application-controller", "namespace": "argocd", "resourceVersion": "9"},
        "spec": {"podSelector": {"matchLabels": {"app": "c"}}, "policyTypes": ["Ingress"]},
    }
    assert unkept_empty_lists(sent, stored) == ["spec.ingress"]
    # Within a list's items too (a rule whose `from` is empty, stored without it), and not where the server keeps it.
    assert unkept_empty_lists({"spec": {"ingress": [{"from": [], "ports": [{"port": 80}]}]}}, {"spec": {"ingress": [{"ports": [{"port": 80}]}]}}) == [
        "spec.ingress.0.from"
    ]
    assert unkept_empty_lists({"data": {"items": []}}, {"data": {"items": []}}) == []
    # Without the empty list: nothing, whatever the server adds (defaults, bookkeeping).
    kept = {**sent, "spec": {k: v for k, v in sent["spec"].items() if k != "ingress"}}
    assert unkept_empty_lists(kept, stored) == []


@pytest.mark.kube
def test_the_second_up_says_an_empty_ingress_list_changes_the_policy_every_time(
    kube_k3s: Cluster, kube_namespace: Callable[[Cluster, dict[str, str] | None], str]
) -> None:
    """The walk's second pass on the Ainur's API server: a policy with `ingress: []` is a change on every run, whether
    or not its two applies straddle a second; the same policy without the list is none."""
    namespace = kube_namespace(kube_k3s, None)
    walker = kube_program.Walker(Simulation("homelab"), load_stack_file(HOMELAB), {"ainur": kube_k3s})
    found = []
    cases: list[tuple[str, dict[str, Any]]] = [("empty", {"ingress": []}), ("none", {})]
    for name, extra in cases:
        obj: dict[str, Any] = {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"podSelector": {"matchLabels": {"app": name}}, "policyTypes": ["Ingress"], **extra},
        }
        manager = field_manager(name)
        live = pulumi_create(kube_k3s.client, obj, manager)
        written = kube_program.Written("ainur", name, "pulumi", obj, manager, ProviderOptions(), live)
        _, change, error = walker._again(written, {})
        assert error is None
        found.append(change)
    assert found == [
        f"ainur: NetworkPolicy {namespace}/empty (pulumi, empty): every apply changes it: the API server does not keep its empty spec.ingress",
        "",
    ]


def test_an_applications_kustomize_build_is_kustomizes_own_and_runs_once_per_inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The walker's build of kube-prometheus (the monitoring Application, as Argo CD builds it) is the pinned kustomize's,
    object for object, and is kept by its inputs: the same inputs read it back without running kustomize, another
    Kubernetes version builds it again."""
    source = monitoring.application(load_stack_file(HOMELAB))["spec"]["source"]
    where = (source["repoURL"], source["targetRevision"], source["path"], source["kustomize"])
    built = kustomize.build(*where, build_options=gitops.KUSTOMIZE_BUILD_OPTIONS, kube_version="1.35.1")
    monkeypatch.setattr(gotools, "cache_dir", lambda: tmp_path)
    assert kube_program.kustomize_render(*where, gitops.KUSTOMIZE_BUILD_OPTIONS, "1.35.1") == built
    runs: list[Any] = []

    def counted(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        runs.append((args, kwargs))
        return []

    monkeypatch.setattr(kustomize, "build", counted)
    assert kube_program.kustomize_render(*where, gitops.KUSTOMIZE_BUILD_OPTIONS, "1.35.1") == built
    assert runs == []
    assert kube_program.kustomize_render(*where, gitops.KUSTOMIZE_BUILD_OPTIONS, "1.34.0") == []
    assert runs == [(where, {"build_options": gitops.KUSTOMIZE_BUILD_OPTIONS, "kube_version": "1.34.0"})]


def _pod(name: str, node: str = "", labels: dict[str, str] | None = None, follows: dict[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"nodeName": node} if node else {}
    if follows is not None:
        spec["affinity"] = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [follows]}}
    return {"metadata": {"name": name, "namespace": "netboot", "labels": labels or {}}, "spec": spec}


def test_a_pod_pending_on_its_pod_affinity_is_waited_for_only_once_the_pods_it_follows_are_placed() -> None:
    # The scheduler tries such a pod again when an assigned pod is added (kube-scheduler's InterPodAffinity events):
    # while the netboot pod it follows is unplaced, its Unschedulable is a verdict; once placed, a retry is owed.
    term = {"labelSelector": {"matchLabels": {"app": "netboot"}}, "topologyKey": "kubernetes.io/hostname"}
    nfs = _pod("pi-nfs", follows=term)
    assert kube_program._affinity_followed(nfs, [nfs, _pod("netboot-x", labels={"app": "netboot"})]) is False
    assert kube_program._affinity_followed(nfs, [nfs, _pod("netboot-x", "manwe", {"app": "netboot"})]) is True
    assert kube_program._affinity_followed(nfs, [nfs, _pod("cache-x", "manwe", {"app": "cache"})]) is False
    other_ns = _pod("netboot-y", "manwe", {"app": "netboot"}) | {
        "metadata": {"name": "netboot-y", "namespace": "kube-system", "labels": {"app": "netboot"}}
    }
    assert kube_program._affinity_followed(nfs, [nfs, other_ns]) is False
    assert kube_program._affinity_followed(_pod("plain"), [_pod("netboot-x", "manwe", {"app": "netboot"})]) is False


@pytest.mark.parametrize(
    ("expression", "labels", "selected"),
    [
        ({"key": "a", "operator": "In", "values": ["1"]}, {"a": "1"}, True),
        ({"key": "a", "operator": "In", "values": ["1"]}, {"a": "2"}, False),
        ({"key": "a", "operator": "NotIn", "values": ["1"]}, {"a": "1"}, False),
        ({"key": "a", "operator": "NotIn", "values": ["1"]}, {}, True),
        ({"key": "a", "operator": "Exists"}, {}, False),
        ({"key": "a", "operator": "DoesNotExist"}, {"a": "1"}, False),
        ({"key": "a", "operator": "DoesNotExist"}, {}, True),
    ],
)
def test_a_label_selectors_expressions_select_as_the_api_reads_them(expression: dict[str, Any], labels: dict[str, str], selected: bool) -> None:
    assert kube_program._label_selected({"matchExpressions": [expression]}, labels) is selected
