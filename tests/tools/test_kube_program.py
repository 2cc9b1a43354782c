"""The walker's own comparison (tools.kube_program.diff_paths): what counts as a change between two ups."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from plans import gitops, monitoring
from stacks import load_stack_file
from tests.edit import HOMELAB
from tools import gotools, kube_program
from tools.kube_program import _controllers_own, diff_paths
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
