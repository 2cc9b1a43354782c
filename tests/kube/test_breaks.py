"""One deliberate break of the program per kind of mistake the control plane catches, each failing
with the API server's (or the scheduler's) own words: order, Pod Security, a CRD's CEL rule,
scheduling, and a second `up` that changes something. Each writes only the slice of the program the
break is in (and what it depends on in the same cluster), onto fresh control planes.

RBAC has its break beside the netboot lease scripts (tests/netns/test_netboot_e2e.py).
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path
from typing import Any

import pytest

from iluvatar.simulate import Registration
from stacks.load import read_stack_file
from tests.edit import HOMELAB, edit, homelab_doc, write_stack
from tests.kube.deploy import deployed, problems
from tests.sims import simulated
from tools.kube_cluster import describe

pytestmark = pytest.mark.kube


def test_a_custom_resource_that_loses_its_crd_dependency_is_refused(tmp_path: Path) -> None:
    # The Cilium pool without its dependency on the gate that waits for Cilium's CRDs (which is after
    # the release): the engine may create it first.
    stack_file = read_stack_file(HOMELAB)
    sim = simulated(HOMELAB)
    pool = sim.named()["arda-cilium-lb-pool"]
    ordering = {sim.named()["arda-cilium-release"].urn, sim.named()["arda-cilium-gate-crds"].urn}
    assert ordering & set(pool.dependencies)
    broken = dataclasses.replace(
        pool,
        dependencies=tuple(d for d in pool.dependencies if d not in ordering),
        property_dependencies={k: tuple(d for d in v if d not in ordering) for k, v in pool.property_dependencies.items()},
    )
    sim.registrations[sim.registrations.index(pool)] = broken

    def cilium(r: Registration) -> bool:
        return r.name.startswith("arda-cilium")

    with deployed(stack_file, tmp_path, only=cilium, sim=sim) as deployment:
        # Arda's pool hangs on the Ainur that netboots Arda's machines: those objects are another API server's, left out.
        assert list(deployment.clusters) == ["arda"]
        assert deployment.report.skipped["ainur: kubernetes:apps/v1:Deployment"] == 1
        assert deployment.report.refusals == [
            "arda: CiliumLoadBalancerIPPool iluvatar-lan (pulumi, arda-cilium-lb-pool) refused: "
            'HTTP 404 NoMatch: no matches for kind "CiliumLoadBalancerIPPool" in version "cilium.io/v2"'
        ]


def test_rooks_namespace_without_the_privileged_level_refuses_the_retire_job(tmp_path: Path) -> None:
    # Retiring one of tirion's two disks: the Job reads the host's /dev, which only `privileged` allows.
    doc = edit(homelab_doc(), {"iluvatar:nodes[4].dataDisks": ["/dev/nvme0n1", "/dev/nvme1n1"], "iluvatar:nodes[4].retire": ["/dev/nvme1n1"]})
    stack_file = read_stack_file(write_stack(tmp_path, doc))

    def retire(r: Registration) -> bool:
        return "osd-retire" in r.name

    with deployed(stack_file, tmp_path, only=retire) as deployment:
        assert deployment.report.refusals == []
        assert problems(deployment) == []
        assert deployment.workload("arda", "Job rook-ceph/osd-retire-tirion").nodes == ["tirion"]

        # The break, on the same control plane (a second deployment of the slice cost 15 s of CPU): the
        # namespace as the program would write it without the Pod Security labels, then the Job again.
        arda = deployment.clusters["arda"]
        written = {describe(w.obj): w.obj for w in deployment.report.written if w.cluster == "arda"}
        namespace, job = written["Namespace rook-ceph"], written["Job rook-ceph/osd-retire-tirion"]
        levels = {k: None for k in namespace["metadata"]["labels"] if k.startswith("pod-security.kubernetes.io/")}
        assert levels  # what the break takes away
        arda.client.merge_patch(namespace, {"metadata": {"labels": levels}})
        # Gone before it is made again: a Job's pods are orphaned first.
        arda.client.delete(job)
        arda.wait_for("the first Job deleted", lambda: arda.client.get("batch/v1", "Job", "osd-retire-tirion", "rook-ceph") is None, timeout=30)
        arda.client.create(job)
        deployment.forget_workloads()
        assert deployment.report.refusals == []  # the Job is admitted; its pod is not
        [problem] = deployment.workload("arda", "Job rook-ceph/osd-retire-tirion").problems
        assert problem.startswith('0 of 1 pods created: Error creating: pods "osd-retire-tirion-')
        assert problem.endswith('is forbidden: violates PodSecurity "baseline:latest": hostPath volumes (volume "host-dev")')


def test_a_gateway_listener_that_breaks_a_cel_rule_is_refused(tmp_path: Path) -> None:
    def plain_http_with_tls(source: str, obj: dict[str, Any]) -> dict[str, Any]:
        if obj["kind"] == "Gateway" and obj["metadata"]["name"] == "envoy-internal":
            listener = next(item for item in obj["spec"]["listeners"] if "tls" in item)
            listener["protocol"] = "HTTP"
        return obj

    def gateways(r: Registration) -> bool:
        return r.name == "edge-gateways-gateway-networking-envoy-internal"

    with deployed(read_stack_file(HOMELAB), tmp_path, only=gateways, mutate=plain_http_with_tls, sim=simulated(HOMELAB)) as deployment:
        [refusal] = deployment.report.refusals
        assert refusal.startswith(
            "arda: Gateway networking/envoy-internal (pulumi, edge-gateways-gateway-networking-envoy-internal) refused: HTTP 422 Invalid: "
        )
        # (Kubernetes 1.35 names no value for a CEL rule over a list; 1.34 said `Invalid value: "array": `.)
        assert refusal.endswith("""spec.listeners: Invalid value: tls must not be specified for protocols ['HTTP', 'TCP', 'UDP']""")


def test_a_netboot_pod_pinned_to_a_label_no_pi_has_stays_pending(tmp_path: Path) -> None:
    def on_arda(source: str, obj: dict[str, Any]) -> dict[str, Any]:
        if source == "netboot-deployment-netboot":
            obj["spec"]["template"]["spec"]["nodeSelector"] = {"iluvatar/role": "valinor"}
        return obj

    def netboot(r: Registration) -> bool:
        return r.name.startswith("netboot-")

    with deployed(read_stack_file(HOMELAB), tmp_path, only=netboot, mutate=on_arda, sim=simulated(HOMELAB)) as deployment:
        assert deployment.report.refusals == []
        [problem] = deployment.workload("ainur", "Deployment netboot/netboot").problems
        assert problem.startswith("pod netboot-")
        assert problem.endswith(
            # (The Ainur's scheduler is 1.35's, which says what dynamic resource allocation found; 1.33's did not.)
            " Pending: 0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. "
            "no new claims to deallocate, preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
        )


def test_a_value_that_changes_between_ups_is_caught(tmp_path: Path) -> None:
    # A value computed anew on every run (a timestamp, a random suffix) in an annotation of the pod template.
    runs = itertools.count()

    def stamped(source: str, obj: dict[str, Any]) -> dict[str, Any]:
        if source == "netboot-deployment-netboot":
            obj["spec"]["template"]["metadata"]["annotations"]["iluvatar/rendered"] = str(next(runs))
        return obj

    def netboot(r: Registration) -> bool:
        return r.name == "netboot-deployment-netboot"

    with deployed(read_stack_file(HOMELAB), tmp_path, only=netboot, mutate=stamped, sim=simulated(HOMELAB)) as deployment:
        assert deployment.report.refusals == []
        assert deployment.walker.reapply() == [
            "ainur: Deployment netboot/netboot (pulumi, netboot-deployment-netboot) changed: spec.template.metadata.annotations.iluvatar/rendered"
        ]
