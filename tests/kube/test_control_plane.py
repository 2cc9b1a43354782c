"""The control plane itself: it refuses what a real one refuses, schedules as a real one does, and starts and stops cleanly.

Each refusal is the API server's own, in its own words: Pod Security (Talos's defaults and a
namespace's label), a CRD's CEL rule, a kind with no CRD yet; a pod no inventory node fits stays
Pending with the scheduler's event; a second server-side apply of the same object is a no-op.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from iluvatar.simulate import Simulation
from plans import agent_token, edge, gitops
from stacks import load_stack_file
from tests.edit import HOMELAB
from tests.test_drill import _nfs_drill_container
from tools import gotools, kube_inventory, kube_program, upstream
from tools.kube_cluster import (
    K3S,
    NO_CNI,
    TALOS,
    ApiError,
    Cluster,
    ControlPlaneError,
    ProviderOptions,
    field_manager,
    pulumi_create,
    pulumi_update,
)
from tools.kube_program import Walker, Written, generic_version

# What a Walker is given here: no registration of the program. The tests below call its writes and its version lookups,
# which read only the clusters and the stack (tools/kube_program.py, Walker: nothing but __post_init__'s providers reads
# the simulation); the homelab's run under the mocks was 6 s of this file's CPU, for nothing these tests read.
NO_REGISTRATIONS = Simulation(stack="homelab")

pytestmark = pytest.mark.kube

NamespaceMaker = Callable[[Cluster, "dict[str, str] | None"], str]
RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted"}


def _pod(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    """A pod that meets the `restricted` level unless `spec` says otherwise."""
    container = {
        "name": "main",
        "image": "registry.example/app:1",
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}, "containers": [container], **spec},
    }


def _refusal(cluster: Cluster, obj: dict[str, Any]) -> ApiError:
    with pytest.raises(ApiError) as e:
        cluster.client.create(obj)
    return e.value


# --- Admission -------------------------------------------------------------------------------------------


def test_every_component_collects_garbage_at_the_tests_gogc(kube_talos: Cluster) -> None:
    # setpriv (and the API server's unshare and sh) exec the component: the environment is the component's own.
    environments = {p.name: Path(f"/proc/{p.popen.pid}/environ").read_bytes().split(b"\0") for p in kube_talos.processes}
    assert sorted(environments) == ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"]
    assert {name: [v for v in env if v.startswith(b"GOGC=")] for name, env in environments.items()} == {name: [b"GOGC=300"] for name in environments}


def test_all_but_kwok_run_on_one_processor_and_the_api_server_queues_nothing(kube_talos: Cluster) -> None:
    # The tests' settings for CPU (tools/kube_cluster.py, docs/proof/performance.md, CI time, sixth pass).
    environments = {p.name: Path(f"/proc/{p.popen.pid}/environ").read_bytes().split(b"\0") for p in kube_talos.processes}
    # kwok, every kubelet's stand-in, keeps the test process's (none on CI: Go's default, the cores).
    ours = [f"GOMAXPROCS={os.environ['GOMAXPROCS']}".encode()] if "GOMAXPROCS" in os.environ else []
    expected = {name: [b"GOMAXPROCS=1"] if name != "kwok" else ours for name in environments}
    assert {name: [v for v in env if v.startswith(b"GOMAXPROCS=")] for name, env in environments.items()} == expected
    # Priority and fairness off: its filter names the FlowSchema and priority level of every request it admits
    # (k8s.io/apiserver v0.35.1 pkg/server/filters/priority-and-fairness.go:373-374); the max-in-flight filter names none.
    pki = kube_talos.pki
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    connection = http.client.HTTPSConnection(kube_talos.address, kube_talos.port, context=context, timeout=30)
    try:
        connection.request("GET", "/api/v1/namespaces/default")
        response = connection.getresponse()
        response.read()
    finally:
        connection.close()
    assert response.status == 200
    assert [h for h in response.headers if h.lower().startswith("x-kubernetes-pf-")] == []
    # The flowcontrol API and its bootstrap objects are still served, as on a real cluster.
    assert kube_talos.client.get("flowcontrol.apiserver.k8s.io/v1", "FlowSchema", "exempt") is not None


def test_a_restricted_namespace_refuses_a_pod_on_the_host_network(kube_talos: Cluster, kube_namespace: NamespaceMaker) -> None:
    namespace = kube_namespace(kube_talos, RESTRICTED)
    kube_talos.wait_for_service_account(namespace)
    kube_talos.client.create(_pod("fits", namespace))  # the same pod off the host network is admitted
    error = _refusal(kube_talos, _pod("host-network", namespace, hostNetwork=True))
    assert (error.status, error.reason) == (403, "Forbidden")
    assert error.message == 'pods "host-network" is forbidden: violates PodSecurity "restricted:latest": host namespaces (hostNetwork=true)'


def test_talos_enforces_baseline_where_a_namespace_says_nothing(kube_talos: Cluster, kube_namespace: NamespaceMaker) -> None:
    # Talos's PodSecurity defaults (enforce baseline) apply to an unlabelled namespace, and warn at restricted.
    namespace = kube_namespace(kube_talos, None)
    kube_talos.wait_for_service_account(namespace)
    error = _refusal(kube_talos, _pod("host-network", namespace, hostNetwork=True))
    assert error.message == 'pods "host-network" is forbidden: violates PodSecurity "baseline:latest": host namespaces (hostNetwork=true)'
    kube_talos.client.create(_pod("root", namespace, securityContext={}))
    assert kube_talos.client.warnings == [
        'would violate PodSecurity "restricted:latest": runAsNonRoot != true (pod or container "main" must set securityContext.runAsNonRoot=true),'
        ' seccompProfile (pod or container "main" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")'
    ]
    # kube-system is exempt, as Talos configures it: its static pods and CNI run there.
    kube_talos.client.create(_pod(f"host-network-{namespace}", "kube-system", hostNetwork=True))


# An app on a machine's own network (Home Assistant, `apps[].hostNetwork`): the category namespace as
# `plans.edge.namespaces` renders it for the homelab (privileged, because the app says so) admits the example's pod as
# written; the level a category takes when no app asks for more (baseline) refuses it, which is why `iluvatar validate`
# requires `podSecurity: privileged` with `hostNetwork`.
HOME_ASSISTANT = Path(__file__).resolve().parents[2] / "examples" / "apps" / "home-assistant" / "deployment.yaml"


def _home_assistant(namespace: str) -> list[dict[str, Any]]:
    """The example's objects, in the test's own namespace (the category's name is the shared cluster's to keep)."""
    objects = list(yaml.safe_load_all(HOME_ASSISTANT.read_text()))
    for o in objects:
        o["metadata"]["namespace"] = namespace
    return objects


def _template_pod(deployment: dict[str, Any], name: str) -> dict[str, Any]:
    """The pod the Deployment's controller would create (the test control plane runs no controller manager)."""
    template = deployment["spec"]["template"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {**template["metadata"], "name": name, "namespace": deployment["metadata"]["namespace"]},
        "spec": template["spec"],
    }


def test_the_rendered_namespace_admits_the_home_assistant_example_and_baseline_refuses_it(
    kube_talos: Cluster, kube_namespace: NamespaceMaker
) -> None:
    stack = load_stack_file(HOMELAB)
    rendered = edge.namespaces(stack)["home-automation"]["metadata"]["labels"]
    assert rendered["pod-security.kubernetes.io/enforce"] == "privileged"
    namespace = kube_namespace(kube_talos, rendered)
    kube_talos.wait_for_service_account(namespace)
    deployment, service = _home_assistant(namespace)
    kube_talos.client.create(service)
    kube_talos.client.create(deployment)
    kube_talos.client.create(_template_pod(deployment, "home-assistant"))
    # Admitted, and said at the level the namespace warns at (restricted), so the operator sees what it gives up.
    assert kube_talos.client.warnings == [
        'would violate PodSecurity "restricted:latest": host namespaces (hostNetwork=true), hostPort (container "home-assistant" uses hostPorts'
        ' 1900, 21063, 5353, 8123), unrestricted capabilities (container "home-assistant" must set securityContext.capabilities.drop=["ALL"]),'
        ' runAsNonRoot != true (pod or container "home-assistant" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container'
        ' "home-assistant" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")'
    ]

    baseline = kube_namespace(kube_talos, gitops.category_namespace("home-automation", "baseline")["metadata"]["labels"])
    kube_talos.wait_for_service_account(baseline)
    with pytest.raises(ApiError) as refused:
        kube_talos.client.create(_template_pod(_home_assistant(baseline)[0], "home-assistant"))
    # The API server gave each container port its hostPort (a host-network pod's are the same: k8s v1.35.1
    # pkg/apis/core/v1/defaults.go:206-208), so baseline's hostPort check refuses it too.
    assert refused.value.message == (
        'pods "home-assistant" is forbidden: violates PodSecurity "baseline:latest": host namespaces (hostNetwork=true), hostPort (container'
        ' "home-assistant" uses hostPorts 1900, 21063, 5353, 8123)'
    )


def test_baseline_admits_the_nfs_targets_drill_as_root_with_volsyncs_three_capabilities(kube_talos: Cluster, kube_namespace: NamespaceMaker) -> None:
    # The drill of a volume backed up to an NFS target restores as root with CHOWN, DAC_OVERRIDE and FOWNER
    # (plans/drill.py); an app namespace enforces `baseline` (plans/gitops.py), which must admit its pod as rendered.
    namespace = kube_namespace(kube_talos, None)
    kube_talos.wait_for_service_account(namespace)
    drill = {k: v for k, v in _nfs_drill_container("home-assistant").items() if k in ("name", "image", "command", "securityContext")}
    assert drill["securityContext"]["capabilities"]["add"] == ["CHOWN", "DAC_OVERRIDE", "FOWNER"]
    kube_talos.client.create(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "drill", "namespace": namespace}, "spec": {"containers": [drill]}}
    )
    # One capability past baseline's list and the same pod is refused: the admission above is baseline's own check.
    more = {
        **drill,
        "securityContext": {**drill["securityContext"], "capabilities": {"drop": ["ALL"], "add": ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SYS_ADMIN"]}},
    }
    error = _refusal(
        kube_talos, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "drill-more", "namespace": namespace}, "spec": {"containers": [more]}}
    )
    assert (
        error.message
        == 'pods "drill-more" is forbidden: violates PodSecurity "baseline:latest": non-default capabilities (container "drill" must not include "SYS_ADMIN" in securityContext.capabilities.add)'
    )


def test_k3s_enforces_nothing_where_a_namespace_says_nothing(kube_k3s: Cluster, kube_namespace: NamespaceMaker) -> None:
    namespace = kube_namespace(kube_k3s, None)
    kube_k3s.wait_for_service_account(namespace)
    kube_k3s.client.create(_pod("host-network", namespace, hostNetwork=True))
    assert kube_k3s.client.warnings == []
    error = _refusal(kube_k3s, _pod("host-network-restricted", kube_namespace(kube_k3s, RESTRICTED), hostNetwork=True))
    assert error.message.startswith('pods "host-network-restricted" is forbidden: violates PodSecurity "restricted:latest"')


def _gateway_crds() -> list[dict[str, Any]]:
    # The Gateway API CRDs the program checks its gateways against (tools/upstream/modules.sum).
    return upstream.crds("gateway-api", "v1.4.1")


def _with_crds(cluster: Cluster, crds: list[dict[str, Any]]) -> None:
    for crd in crds:
        if cluster.client.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", crd["metadata"]["name"]) is None:
            cluster.client.create(crd)
    for crd in crds:
        cluster.wait_for(
            f"CRD {crd['metadata']['name']} Established",
            lambda name=crd["metadata"]["name"]: any(
                c["type"] == "Established" and c["status"] == "True"
                # A CRD just created may report `conditions: null` until the API server's controller fills it in.
                for c in ((cluster.client.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", name) or {}).get("status") or {}).get(
                    "conditions"
                )
                or []
            ),
        )
    # Established is not yet served: discovery lists the kinds a moment later (a create in between says NoMatch).
    for crd in crds:
        for version in crd["spec"]["versions"]:
            api_version, kind = f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"]
            cluster.wait_for(f"{kind} {api_version} served", lambda a=api_version, k=kind: _served(cluster, a, k))
    cluster.client.forget()


def _served(cluster: Cluster, api_version: str, kind: str) -> bool:
    cluster.client.forget(api_version)
    try:
        cluster.client.resource(api_version, kind)
    except ApiError:
        return False
    return True


def test_a_gateway_that_breaks_a_cel_rule_is_refused(kube_talos: Cluster, kube_namespace: NamespaceMaker) -> None:
    crds = _gateway_crds()
    _with_crds(kube_talos, crds)
    namespace = kube_namespace(kube_talos, None)
    listener = {"name": "web", "port": 80, "protocol": "HTTP"}
    gateway = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "lan", "namespace": namespace},
        "spec": {"gatewayClassName": "envoy", "listeners": [listener]},
    }
    kube_talos.client.create(gateway)
    # TLS on a plain-HTTP listener: valid by the schema, refused by the CRD's CEL rule.
    broken = {**gateway, "metadata": {"name": "broken", "namespace": namespace}}
    broken["spec"] = {"gatewayClassName": "envoy", "listeners": [{**listener, "tls": {"mode": "Terminate", "certificateRefs": [{"name": "cert"}]}}]}
    error = _refusal(kube_talos, broken)
    rule = "tls must not be specified for protocols ['HTTP', 'TCP', 'UDP']"
    assert (error.status, error.reason) == (422, "Invalid")
    # (Kubernetes 1.35's message names no value for a CEL rule over a list; 1.34's said `Invalid value: "array": `.)
    assert error.message == f'Gateway.gateway.networking.k8s.io "broken" is invalid: spec.listeners: Invalid value: {rule}'
    # The rule is one of the CRD's CEL validations (x-kubernetes-validations), which no schema check evaluates.
    crd = next(c for c in crds if c["spec"]["names"]["kind"] == "Gateway")
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    listeners = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["listeners"]
    assert rule in [r["message"] for r in listeners["x-kubernetes-validations"]]


def test_a_custom_resource_before_its_crd_fails(kube_talos: Cluster, kube_namespace: NamespaceMaker) -> None:
    namespace = kube_namespace(kube_talos, None)
    widget = {"apiVersion": "iluvatar.test/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": namespace}, "spec": {"size": 3}}
    with pytest.raises(ApiError) as e:
        pulumi_create(kube_talos.client, widget, field_manager("widget"))
    assert (e.value.status, e.value.reason, e.value.message) == (404, "NoMatch", 'no matches for kind "Widget" in version "iluvatar.test/v1"')
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.iluvatar.test"},
        "spec": {
            "group": "iluvatar.test",
            "scope": "Namespaced",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "listKind": "WidgetList"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object", "properties": {"size": {"type": "integer"}}}}}
                    },
                }
            ],
        },
    }
    _with_crds(kube_talos, [crd])
    assert pulumi_create(kube_talos.client, widget, field_manager("widget"))["spec"] == {"size": 3}


def _unserved_hook(name: str, namespace: str) -> dict[str, Any]:
    """A webhook no pod serves (its Service does not exist) on the ConfigMaps of one namespace, failing closed as charts' do."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": f"{name}.iluvatar.test",
                "clientConfig": {"service": {"namespace": namespace, "name": "nobody", "port": 443}},
                "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["configmaps"]}],
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "failurePolicy": "Fail",
                "timeoutSeconds": 1,
            }
        ],
    }


def test_a_write_outwaits_a_removed_webhook_the_api_server_still_calls(
    kube_talos: Cluster, kube_namespace: NamespaceMaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The walk removes each webhook right after it is admitted, since no pod serves one here. The API server's admission
    reads webhook configurations through an informer, so it can call a removed one once more: a CI run had trust-manager's
    refuse the Bundle written just after its chart. The walk writes again until admission has seen the removal (here it is
    sent only once a write was refused by the removed webhook); a refusal by a webhook it did not remove comes back at once."""
    removed_ns, kept_ns = kube_namespace(kube_talos, None), kube_namespace(kube_talos, None)
    client = kube_talos.client
    removed, kept = _unserved_hook(removed_ns, removed_ns), _unserved_hook(kept_ns, kept_ns)

    def config_map(name: str, namespace: str) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace}, "data": {"k": "v"}}

    def calls_its_webhook(namespace: str) -> bool:
        try:
            client.delete(client.create(config_map("probe", namespace)))  # admission has not seen the webhook yet
        except ApiError as e:
            return f'failed calling webhook "{namespace}.iluvatar.test"' in e.message
        return False

    live = {namespace: client.create(hook) for namespace, hook in ((removed_ns, removed), (kept_ns, kept))}
    # What the walk's writes met, in order, with the moment the removal was sent: "refused", "removal sent", "admitted".
    events: list[str] = []
    pending: list[dict[str, Any]] = []
    delete, create = client.delete, pulumi_create  # the function the walk calls (tools.kube_program imports it)
    try:
        kube_talos.wait_for("admission calling both webhooks", lambda: calls_its_webhook(removed_ns) and calls_its_webhook(kept_ns), timeout=30)
        walker = Walker(NO_REGISTRATIONS, load_stack_file(HOMELAB), {"arda": kube_talos})

        def deleted_late(obj: dict[str, Any]) -> None:  # as an informer slow to hear of it: held until a write was refused
            pending.append(obj)

        def recorded(*args: Any, **kwargs: Any) -> dict[str, Any]:
            try:
                written = create(*args, **kwargs)
            except ApiError:
                events.append("refused")
                if pending:  # the removal reaches admission only once the walk's write met the removed webhook
                    delete(pending.pop())
                    events.append("removal sent")
                raise
            events.append("admitted")
            return written

        monkeypatch.setattr(client, "delete", deleted_late)
        monkeypatch.setattr(kube_program, "pulumi_create", recorded)
        walker._record(Written("arda", "test", "chart", live[removed_ns], "helm", ProviderOptions()), None)
        _, error = walker._attempt("arda", "test", "pulumi", config_map("after", removed_ns), field_manager("test"), ProviderOptions())
        assert error is None
        # Refused until the removal was sent (and, admission's informer being slow, maybe after), then admitted.
        assert events[:2] == ["refused", "removal sent"] and events[-1] == "admitted", events
        assert set(events[2:-1]) <= {"refused"}, events
        assert client.get("v1", "ConfigMap", "after", removed_ns) is not None
        assert walker.report.removed == [
            f"arda: ValidatingWebhookConfiguration {removed_ns} (test) admitted, then removed: no pod serves {removed_ns}/nobody here"
        ]

        # A webhook the walk did not remove: its refusal is returned at the first write, not written again.
        events.clear()
        _, error = walker._attempt("arda", "test", "pulumi", config_map("refused", kept_ns), field_manager("test"), ProviderOptions())
        assert error is not None and f'failed calling webhook "{kept_ns}.iluvatar.test"' in error.message
        assert events == ["refused"]
    finally:
        monkeypatch.undo()
        for obj in pending:  # a removal never sent: the webhook is not left behind
            client.delete(obj)
        client.delete(live[kept_ns])


def test_a_second_server_side_apply_changes_nothing(kube_talos: Cluster, kube_namespace: NamespaceMaker) -> None:
    namespace = kube_namespace(kube_talos, None)
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": namespace}, "data": {"a": "1"}}
    manager = field_manager("urn:test::c")
    created = pulumi_create(kube_talos.client, config, manager)
    # The provider creates with the client-side manager; its first update takes those fields over.
    assert [(e["manager"], e["operation"]) for e in created["metadata"]["managedFields"]] == [("pulumi-kubernetes", "Update")]
    before, after = pulumi_update(kube_talos.client, config, manager)
    assert before["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert [(e["manager"], e["operation"]) for e in after["metadata"]["managedFields"]] == [(manager, "Apply")]
    assert after["data"] == created["data"]
    # The same object applied again: no write at all.
    again = kube_talos.client.apply(config, field_manager=manager)
    assert again["metadata"]["resourceVersion"] == after["metadata"]["resourceVersion"]
    # A changed value is a change, and another manager's apply of a field it does not own conflicts.
    changed = kube_talos.client.apply({**config, "data": {"a": "2"}}, field_manager=manager)
    assert changed["metadata"]["resourceVersion"] != after["metadata"]["resourceVersion"]
    with pytest.raises(ApiError) as e:
        kube_talos.client.apply({**config, "data": {"a": "3"}}, field_manager="argocd-controller")
    assert (e.value.status, e.value.reason) == (409, "Conflict")
    assert e.value.message == f'Apply failed with 1 conflict: conflict with "{manager}": .data.a'


def test_a_field_the_api_server_does_not_know_is_dropped_with_a_warning(kube_talos: Cluster, kube_namespace: NamespaceMaker) -> None:
    # Why the program tests check the warnings: the provider's create keeps the object and drops the typo.
    namespace = kube_namespace(kube_talos, None)
    typo = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "typo", "namespace": namespace}, "dta": {"a": "1"}}
    created = pulumi_create(kube_talos.client, typo, field_manager("urn:test::typo"))
    assert "dta" not in created and "data" not in created
    assert kube_talos.client.warnings == ['unknown field "dta"']


# --- The version it reports --------------------------------------------------------------------------------


# Both clusters run the one build (the Ainur's k3s v1.35.8+k3s1 is its minor).
@pytest.mark.parametrize(("fixture", "version", "minor"), [("kube_talos", "v1.35.1", "35"), ("kube_k3s", "v1.35.1", "35")])
def test_the_api_server_reports_the_kubernetes_version_it_is_built_from(
    fixture: str, version: str, minor: str, request: pytest.FixtureRequest
) -> None:
    cluster: Cluster = request.getfixturevalue(fixture)
    assert gotools.kubernetes_version(cluster.flavor.tool) == version  # its go.mod's k8s.io/kubernetes
    answer = cluster.client.checked("GET", "/version")
    # What hack/lib/version.sh stamps into a release build; buildDate stays the in-tree one (SOURCE_DATE_EPOCH=0).
    assert {k: answer[k] for k in ("gitVersion", "major", "minor", "gitCommit", "gitTreeState", "buildDate")} == {
        "gitVersion": version,
        "major": "1",
        "minor": minor,
        "gitCommit": "$Format:%H$",
        "gitTreeState": "",
        "buildDate": "1970-01-01T00:00:00Z",
    }
    assert cluster.client.server_version() == version
    # Every component is the same build: the controller-manager and the scheduler say so too.
    for component in ("kube-controller-manager", "kube-scheduler"):
        printed = subprocess.run([str(gotools.build(cluster.flavor.tool)), component, "--version"], capture_output=True, text=True, timeout=60)
        assert printed.stdout.strip() == f"Kubernetes {version}", printed.stderr


@pytest.mark.parametrize("fixture", ["kube_talos", "kube_k3s"])
def test_helm_installs_a_chart_whose_kube_version_constraint_the_server_meets(
    fixture: str, request: pytest.FixtureRequest, kube_namespace: NamespaceMaker, tmp_path: Path
) -> None:
    """Real Helm, as pulumi-kubernetes runs it, checks a chart's `kubeVersion` against the version discovery reports: a
    kube-apiserver built without the release's version flags reports v0.0.0-master+$Format:%H$ and every such chart is refused."""
    cluster: Cluster = request.getfixturevalue(fixture)
    namespace = kube_namespace(cluster, None)
    chart = tmp_path / "needs-1.25"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text('apiVersion: v2\nname: needs-1-25\nversion: 0.1.0\nkubeVersion: ">=1.25.0-0"\n')
    (chart / "templates" / "configmap.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: seen\ndata:\n  version: {{ .Capabilities.KubeVersion.Version | quote }}\n"
    )
    env = {**os.environ, **{f"HELM_{kind}_HOME": str(tmp_path / kind.lower()) for kind in ("CACHE", "CONFIG", "DATA")}}
    command = [str(gotools.build("helm")), "install", "needs", str(chart), "--namespace", namespace, "--kubeconfig", str(cluster.kubeconfig)]
    installed = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert installed.returncode == 0, installed.stderr
    seen = cluster.client.get("v1", "ConfigMap", "seen", namespace)
    assert seen is not None and seen["data"] == {"version": cluster.flavor.kubernetes_version}


def test_the_walk_renders_charts_at_the_version_the_server_reports(kube_talos: Cluster, kube_k3s: Cluster) -> None:
    walker = Walker(NO_REGISTRATIONS, load_stack_file(HOMELAB), {"arda": kube_talos, "ainur": kube_k3s})
    # pulumi-kubernetes hands Helm the server's gitVersion; Argo CD its numbers alone (parseKubeVersion), so the
    # Ainur's charts see 1.35.1, the build's, where the stack says v1.35.8+k3s1.
    assert [walker.kube_version(c) for c in ("arda", "ainur")] == ["v1.35.1", "v1.35.1"]
    assert [walker.argocd_kube_version(c) for c in ("arda", "ainur")] == ["1.35.1", "1.35.1"]
    assert [generic_version(v) for v in ("v1.35.8+k3s1", "v1.36.0-rc.1", "v0.0.0-master+$Format:%H$")] == ["1.35.8", "1.36.0", "0.0.0"]
    with pytest.raises(ValueError, match="could not parse kubernetes version 'master'"):
        generic_version("master")


# --- Nodes and scheduling -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def arda(kube_talos: Cluster) -> Cluster:
    """This file's Talos-flavor control plane with exactly the homelab's Arda machines as nodes (kwok plays their kubelets).

    `kube_talos` lives for this file alone, so no other file's nodes join it, and the scheduler's answers
    below count the five.
    """
    kube_talos.create_nodes(kube_inventory.nodes(load_stack_file(HOMELAB), "arda"))
    return kube_talos


def test_inventory_nodes_register_and_turn_ready(arda: Cluster) -> None:
    live = {n["metadata"]["name"]: n for n in arda.client.list("v1", "Node")}
    tirion = live["tirion"]
    assert tirion["metadata"]["labels"]["iluvatar/role"] == "valinor"
    assert tirion["spec"]["taints"] == [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]
    assert tirion["status"]["nodeInfo"]["architecture"] == "amd64"
    assert {a["type"]: a["address"] for a in tirion["status"]["addresses"]} == {"InternalIP": "192.168.0.22", "Hostname": "tirion"}
    assert {c["type"]: c["status"] for c in tirion["status"]["conditions"]}["Ready"] == "True"
    # The controller-manager gave each node a pod range from the cluster's, as Talos's does.
    assert tirion["spec"]["podCIDR"].startswith("10.244.")


def test_a_pod_no_node_fits_stays_pending_and_the_scheduler_says_why(arda: Cluster, kube_namespace: NamespaceMaker) -> None:
    namespace = kube_namespace(arda, None)
    arda.wait_for_service_account(namespace)
    arda.client.create(_pod("balrog", namespace, nodeSelector={"iluvatar/role": "balrog"}))
    arda.client.create(_pod("anywhere", namespace))
    pods = {p["metadata"]["name"]: p for p in arda.wait_for_pods_settled(namespace)}
    assert pods["anywhere"]["spec"]["nodeName"] in ("gandalf", "saruman")  # a worker: the control planes are tainted
    assert "nodeName" not in pods["balrog"]["spec"]
    assert arda.pending_reason(pods["balrog"]) == (
        "0/5 nodes are available: 2 node(s) didn't match Pod's node affinity/selector, "
        # (Kubernetes 1.35's scheduler no longer names the taint; 1.34's said `untolerated taint {node-role...: }`.)
        "3 node(s) had untolerated taint(s). "
        "no new claims to deallocate, preemption: 0/5 nodes are available: 5 Preemption is not helpful for scheduling."
    )
    # kwok plays the kubelet: the scheduled pod runs, as far as the API can tell.
    arda.wait_for(
        "pod anywhere Running", lambda: (arda.client.get("v1", "Pod", "anywhere", namespace) or {}).get("status", {}).get("phase") == "Running"
    )


def test_a_node_cordons_drains_and_comes_back_as_an_upgrade_needs(arda: Cluster, kube_namespace: NamespaceMaker) -> None:
    # What the Talos upgrader's tests will do with these nodes: cordon, evict, uncordon, Ready again.
    namespace = kube_namespace(arda, None)
    arda.wait_for_service_account(namespace)
    client = arda.client
    client.create(_pod("on-saruman", namespace, nodeSelector={"kubernetes.io/hostname": "saruman"}))
    arda.wait_for(
        "pod on saruman Running", lambda: (client.get("v1", "Pod", "on-saruman", namespace) or {}).get("status", {}).get("phase") == "Running"
    )
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "saruman"}}
    try:
        client.merge_patch(node, {"spec": {"unschedulable": True}})
        eviction = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "on-saruman", "namespace": namespace}}
        client.checked("POST", f"/api/v1/namespaces/{namespace}/pods/on-saruman/eviction", eviction)
        # kwok plays the kubelet's part of a deletion: the pod goes.
        arda.wait_for("the evicted pod gone", lambda: client.get("v1", "Pod", "on-saruman", namespace) is None)

        # The node lifecycle controller taints a cordoned node on its own time, not with the patch: wait for it.
        def taints() -> list[str]:
            return [t["key"] for t in (client.get("v1", "Node", "saruman") or {})["spec"].get("taints", [])]

        arda.wait_for("the cordoned node's taint", taints, timeout=30)
        assert taints() == ["node.kubernetes.io/unschedulable"]
    finally:
        client.merge_patch(node, {"spec": {"unschedulable": False}})
    arda.wait_for_nodes(["saruman"])


def _kwok_refused(cluster: Cluster, node: str, offset: int) -> dict[str, Any] | None:
    """kwok's first failed write to the Node since `offset` (bytes into its log)."""
    with (cluster.root / "kwok.log").open("rb") as log:
        log.seek(offset)
        for line in log.read().decode(errors="replace").splitlines():
            entry = json.loads(line) if line.startswith("{") else {}
            if entry.get("node") == node and entry.get("msg") == "failed to apply stage":
                found: dict[str, Any] = entry
                return found
    return None


def test_kwok_can_write_nothing_to_a_node_left_to_the_test(kube_k3s: Cluster) -> None:
    """A Node labelled NO_CNI is the test's (a kubelet of its own, or none): kwok leaves it alone only as it hears of it,
    and a heartbeat it queued for the Node before still plays on it. The API server refuses kwok that write, and every
    other write to such a Node, by its own identity; the test's writes and kwok's to any other Node pass. On the file's
    k3s plane, as every plane with kwok holds the policy (tools.kube_cluster.NO_CNI_POLICY): its two Nodes, named for
    this test alone, are deleted after it."""
    cluster = kube_k3s
    client = cluster.client
    kwok = cluster.kwok_client()
    message = "is labelled iluvatar.test/no-cni: kwok writes none of it, the test writes its status as its kubelet would"
    refused = (
        "nodes \"{0}\" is forbidden: ValidatingAdmissionPolicy 'iluvatar-test-no-cni-left-to-the-test' with binding "
        "'iluvatar-test-no-cni-left-to-the-test' denied request: Node {0} " + message
    )
    heartbeat = {
        "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "lastHeartbeatTime": "2030-01-01T00:00:00Z"}]}
    }
    try:
        # The race itself, played by kwok: a Node it made Ready (so its heartbeat is queued, 20-25 s on), then labelled.
        cluster.create_nodes([{"apiVersion": "v1", "kind": "Node", "metadata": {"name": "ulmo", "labels": {"kubernetes.io/hostname": "ulmo"}}}])
        offset = (cluster.root / "kwok.log").stat().st_size
        labelled = client.merge_patch({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "ulmo"}}, {"metadata": {"labels": {NO_CNI: ""}}})

        def written_or_refused() -> dict[str, Any] | None:
            """kwok's queued heartbeat, refused (its log), or written (the Node's status changed since it was labelled)."""
            status = (client.get("v1", "Node", "ulmo") or {}).get("status")
            return {"written": status} if status != labelled["status"] else _kwok_refused(cluster, "ulmo", offset)

        said = cluster.wait_for("kwok's queued heartbeat of ulmo", written_or_refused, timeout=60)
        assert (said.get("msg"), said.get("stage"), said.get("err")) == (
            "failed to apply stage",
            "node-heartbeat",
            "failed to patch resource for step failed to patch node ulmo: " + refused.format("ulmo"),
        ), said
        # kwok's own writes by hand: the status (as its heartbeat sends it) and the Node itself, each refused, nothing written.
        for path in ("/api/v1/nodes/ulmo/status", "/api/v1/nodes/ulmo"):
            status, answer = kwok.request("PATCH", path, heartbeat, content_type="application/merge-patch+json")
            assert (status, answer["message"]) == (403, refused.format("ulmo")), path
        assert (client.get("v1", "Node", "ulmo") or {})["status"] == labelled["status"]
        node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "osse", "labels": {NO_CNI: ""}}}
        status, answer = kwok.request("POST", "/api/v1/nodes", node)
        assert (status, answer["message"]) == (403, refused.format("osse"))
        # The test writes such a Node's status, as its kubelet (here as admin); kwok writes any other Node's.
        assert client.merge_patch(labelled, heartbeat, subresource="status")["status"]["conditions"][0]["lastHeartbeatTime"] == "2030-01-01T00:00:00Z"
        client.create({**node, "metadata": {"name": "osse"}})
        status, answer = kwok.request("PATCH", "/api/v1/nodes/osse/status", heartbeat, content_type="application/merge-patch+json")
        assert status == 200, answer
    finally:
        kwok.close()
        for name in ("ulmo", "osse"):
            client.delete({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})


# --- Starting and stopping ------------------------------------------------------------------------------


def test_a_component_that_fails_to_start_is_named_with_its_log(tmp_path: Path) -> None:
    broken = dataclasses.replace(TALOS, apiserver_args=(*TALOS.apiserver_args, "--no-such-flag"))
    cluster = Cluster(broken, tmp_path, components=("etcd", "kube-apiserver"))
    with pytest.raises(ControlPlaneError) as e:
        cluster.start()
    message = str(e.value)
    assert message.startswith("kube-apiserver exited with status 1 before answering /readyz.\n--- ")
    assert "Error: unknown flag: --no-such-flag" in message
    assert cluster.processes == []  # etcd, which had started, was stopped


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().split()[2] if Path(f"/proc/{pid}/stat").exists() else "X"
    return state not in ("Z", "X")


def test_stopping_leaves_no_process(kube_fresh: Callable[..., Cluster]) -> None:
    cluster = kube_fresh(K3S, components=("etcd", "kube-apiserver"))
    pids = [p.popen.pid for p in cluster.processes]
    assert [p.name for p in cluster.processes] == ["etcd", "kube-apiserver"] and all(map(_alive, pids))
    cluster.stop()
    assert not any(map(_alive, pids))


def test_a_killed_test_process_takes_its_control_plane_with_it(tmp_path: Path) -> None:
    # What Ctrl-C twice or a CI timeout does: the process that started the components dies at once.
    script = (
        "import sys; from pathlib import Path; from tools.kube_cluster import Cluster, TALOS\n"
        "c = Cluster(TALOS, Path(sys.argv[1]), components=('etcd', 'kube-apiserver')).start()\n"
        "print(*[p.popen.pid for p in c.processes], flush=True)\n"
        "import time; time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2])
    assert parent.stdout is not None
    pids = [int(p) for p in parent.stdout.readline().split()]
    assert len(pids) == 2 and all(map(_alive, pids))
    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=10)
    deadline = time.monotonic() + 10
    while any(map(_alive, pids)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(map(_alive, pids)), "a component outlived the process that started it"


# --- A maia's own join token (plans.agent_token) on the Ainur's real API server --------------------------------------


def _whoami(cluster: Cluster, token: str) -> tuple[int, Any]:
    """A SelfSubjectReview with `token` as the bearer, as k3s's supervisor authenticates an agent's request with the API
    server's own authenticator (k3s pkg/daemons/control/server.go:444; pkg/clientaccess/token.go get: Bearer)."""
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    return cluster.client_for_token(token).request("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", review)


def _until(check: Callable[[], bool], what: str, seconds: float = 30) -> None:
    """The bootstrap authenticator reads Secrets through an informer: a new or deleted one is seen within moments."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        time.sleep(0.2)


def test_a_maias_bootstrap_token_secret_authenticates_it_as_a_bootstrapper_until_deleted(kube_k3s: Cluster) -> None:
    """The program's Secret, applied as pulumi-kubernetes does, authenticates `<id>.<secret>` as system:bootstrap:<id> in
    system:bootstrappers: one of the groups k3s's agent routes take (pkg/server/handlers/router.go:36), so no extra group
    is needed. A wrong secret and an id without a Secret are refused; deleting the Secret revokes the token."""
    node = load_stack_file(HOMELAB).ainur_nodes[1]
    manifest = agent_token.secret_manifest(node, "k3sag1", "0123456789abcdef")
    kube_k3s.client.apply(manifest, field_manager="pulumi-kubernetes", force=True)
    status: list[tuple[int, Any]] = []

    def authenticated() -> bool:
        status.append(_whoami(kube_k3s, "k3sag1.0123456789abcdef"))
        return status[-1][0] == 201

    _until(authenticated, "the token authenticated")
    user = status[-1][1]["status"]["userInfo"]
    assert (user["username"], sorted(user["groups"])) == ("system:bootstrap:k3sag1", ["system:authenticated", "system:bootstrappers"])
    assert _whoami(kube_k3s, "k3sag1.0123456789abcdeX")[0] == 401  # a wrong secret
    assert _whoami(kube_k3s, "k3sag2.0123456789abcdef")[0] == 401  # an id with no Secret
    kube_k3s.client.delete(manifest)
    _until(lambda: _whoami(kube_k3s, "k3sag1.0123456789abcdef")[0] == 401, "the deleted Secret's token refused")
