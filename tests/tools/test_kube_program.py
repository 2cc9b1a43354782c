"""The walker's own comparison (tools.kube_program.diff_paths): what counts as a change between two ups."""

from __future__ import annotations

from tools.kube_program import diff_paths


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
