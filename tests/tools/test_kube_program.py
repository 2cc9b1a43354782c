"""The walker's own comparison (tools.kube_program.diff_paths): what counts as a change between two ups."""

from __future__ import annotations

from tools.kube_program import _controllers_own, diff_paths


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
