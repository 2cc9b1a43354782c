"""Remote access's objects on real control planes, each flavour: the program's slice (components.remote_access) run
under Pulumi's mocks and written as its writers write it, the Tailscale operator's chart by real Helm from its module
at v1.102.3 with the program's values (its CRDs first, as Helm installs them), the Connector through the CRD that chart
installs (its CEL rules included), Headscale and its router on the Ainur; then a second `up`, then the pods.

The breaks: a Connector the operator's CRD refuses (a hostname with two replicas), and the router's namespace at the
restricted Pod Security level, which refuses its privileged container.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from iluvatar.simulate import Registration
from plans import remote_access as plan
from stacks import read_stack_file
from tests.edit import write_stack
from tests.kube.deploy import Deployed, deployed, problems
from tests.remote_stacks import HEADSCALE, TAILSCALE, remote_doc
from tools.kube_cluster import ApiError, describe

pytestmark = pytest.mark.kube


def remote(r: Registration) -> bool:
    return r.name.startswith("remote-access")


def _deploy(flavour: dict[str, Any], root: Path) -> Iterator[Deployed]:
    with deployed(read_stack_file(write_stack(root, remote_doc(flavour))), root, only=remote) as result:
        yield result


@pytest.fixture(scope="module")
def tailscale(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    yield from _deploy(TAILSCALE, tmp_path_factory.mktemp("tailscale"))


@pytest.fixture(scope="module")
def headscale(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    yield from _deploy(HEADSCALE, tmp_path_factory.mktemp("headscale"))


def _written(deployment: Deployed, cluster: str) -> dict[str, dict[str, Any]]:
    return {describe(w.obj): w.obj for w in deployment.report.written if w.cluster == cluster}


@pytest.mark.parametrize("flavour", ["tailscale", "headscale"])
def test_every_object_is_admitted_and_a_second_up_changes_nothing(flavour: str, request: pytest.FixtureRequest) -> None:
    deployment: Deployed = request.getfixturevalue(flavour)
    report = deployment.report
    assert report.refusals == [], "refused:\n" + "\n".join(report.refusals)
    unknown = [f"{w.cluster}: {describe(w.obj)}: {m}" for w in report.written if w.writer == "pulumi" for m in w.warnings if "unknown field" in m]
    assert unknown == [], "\n".join(unknown)
    assert deployment.walker.reapply() == []
    assert report.refusals == []


def test_the_tailscale_flavour_runs_the_operator_and_the_connector_on_arda(tailscale: Deployed) -> None:
    deployment = tailscale
    assert list(deployment.clusters) == ["arda"]
    written = _written(deployment, "arda")
    # The chart's CRDs (as its release inserts them), then its objects with the program's values.
    crds = sorted(n for n in written if n.startswith("CustomResourceDefinition ") and n.endswith(".tailscale.com"))
    assert crds == sorted(f"CustomResourceDefinition {n}" for n in (
        "connectors.tailscale.com", "dnsconfigs.tailscale.com", "peerrelays.tailscale.com", "proxyclasses.tailscale.com",
        "proxygrouppolicies.tailscale.com", "proxygroups.tailscale.com", "recorders.tailscale.com", "tailnets.tailscale.com",
    ))  # fmt: skip
    operator = written["Deployment tailscale/operator"]
    env = {e["name"]: e.get("value") for e in operator["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert operator["spec"]["template"]["spec"]["containers"][0]["image"] == "tailscale/k8s-operator:v1.102.3"
    assert (env["PROXY_IMAGE"], env["PROXY_TAGS"], env["APISERVER_PROXY"], env["OPERATOR_INITIAL_TAGS"]) == (
        "tailscale/tailscale:v1.102.3",
        "tag:iluvatar-router",
        "false",
        "tag:k8s-operator",
    )
    # The OAuth client is Pulumi's Secret, mounted where the operator reads it; the chart renders none of its own.
    assert written["Secret tailscale/operator-oauth"]["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "pulumi"
    assert {"name": "oauth", "secret": {"secretName": "operator-oauth"}} in operator["spec"]["template"]["spec"]["volumes"]
    # Its client's id (Pulumi's OauthClient, the mocks' id) on the pod, as the chart writes operatorConfig.podAnnotations: a new
    # client is a new pod, which reads the new Secret (the operator reads it once, tsclient.go:39-53).
    assert operator["spec"]["template"]["metadata"]["annotations"]["iluvatar.dev/oauth-client"] == "remote-access-operator-client-id"
    live = deployment.clusters["arda"].client.get("tailscale.com/v1alpha1", "Connector", "homelab")
    assert live is not None and live["spec"]["subnetRouter"]["advertiseRoutes"] == [str(r) for r in plan.routes(deployment.stack)]
    assert problems(deployment) == []


def test_a_connector_the_operators_crd_refuses(tailscale: Deployed) -> None:
    # One name for two routers: the CRD's own CEL rule (x-kubernetes-validations), enforced by the real API server.
    broken = {**plan.connector(tailscale.stack), "metadata": {"name": "broken"}}
    broken["spec"] = {**broken["spec"], "hostname": "one-name"}
    with pytest.raises(ApiError) as err:
        tailscale.clusters["arda"].client.create(broken)
    assert "The hostname field cannot be specified when replicas is greater than 1." in err.value.message


def test_the_headscale_flavour_runs_headscale_and_its_router_on_the_ainur(headscale: Deployed) -> None:
    deployment = headscale
    # Headscale and its router on the Ainur; its state's restore drill on Arda, beside the other drills (plans.drill).
    assert list(deployment.clusters) == ["arda", "ainur"]
    assert {n.split(" ", 1)[1] for n in _written(deployment, "arda") if n.startswith("CronJob ")} == {"backup-drill/drill-headscale"}
    written = _written(deployment, "ainur")
    assert {
        "Namespace remote-access",
        "ConfigMap remote-access/headscale",
        "PersistentVolumeClaim remote-access/headscale-state",
        "Deployment remote-access/headscale",
        "Service remote-access/headscale",
        "ServiceAccount remote-access/subnet-router",
        "Role remote-access/subnet-router",
        "RoleBinding remote-access/subnet-router",
        "Deployment remote-access/subnet-router",
    } <= set(written)
    # Both pods admitted (the router's privileged container by its namespace's level) and placed on the Pis.
    assert problems(deployment) == []
    router = deployment.workload("ainur", "Deployment remote-access/subnet-router")
    assert set(router.nodes) <= {n.name for n in deployment.stack.ainur_nodes} and router.nodes


def test_the_routers_privileged_container_is_refused_at_the_restricted_level(headscale: Deployed) -> None:
    deployment = headscale
    client = deployment.clusters["ainur"].client
    namespace = "remote-access-restricted"
    client.create(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}
    )
    router = next(m for m in plan.router_manifests(deployment.stack) if m["kind"] == "Deployment")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "router", "namespace": namespace}, "spec": router["spec"]["template"]["spec"]}
    pod["spec"] = {**pod["spec"], "serviceAccountName": "default"}
    deployment.clusters["ainur"].wait_for_service_account(namespace)
    with pytest.raises(ApiError) as err:
        client.create(pod)
    assert (
        'violates PodSecurity "restricted:latest": privileged (container "tailscale" must not set securityContext.privileged=true)'
        in err.value.message
    )
