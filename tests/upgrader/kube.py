"""What the tests of the upgrader's Kubernetes side share: node names, kwok Nodes, workloads, the hooks the program
hands a Ceph host, the owed after hooks, the control plane's mirror pods and the stand-in's kubelets.

The Talos side is the scripted stand-in (tools/talos-api) again; Kubernetes is real (tools/kube_cluster.py:
kube-apiserver 1.35.1 with kwok nodes): cordon, drain (evictions and PodDisruptionBudgets), hook Jobs, paused
workloads, Node readiness, the control plane's static pods, server-side dry runs, CSI objects, version skew and the
deprecated-API metric are the API server's own answers. A node is the same name in both: the stand-in's Talos node and
a kwok Node.

The tests are a file per concern, each with its own control plane (`kube_talos` is module-scoped), so that no file
holds one worker for minutes under `--dist loadfile` (docs/proof/performance.md, CI time, ninth pass):
test_disrupt.py (a reboot's drain, hooks, paused workloads and cordon, and what a dead run left), test_static_pods.py
(the API server's restarts after a change), test_kubeupgrade.py (kubernetes-upgrade), test_kube_gates.py (health,
wait-kube, kubernetes-preflight), test_node_objects.py (a Node object across reflash, reboot and delete),
test_first_up.py (every machine's step of a first `pulumi up`, in one order the graph allows) and test_before_cni.py (the rules
about a cluster with no CNI yet).
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import re
import signal
from collections.abc import Callable
from typing import Any

import yaml

from plans import storage
from tests.upgrader.run import Result, binary, upgrader, upgrader_watched
from tools.kube_cluster import Cluster
from tools.talos_api import TalosAPI, mac, scenario

NEW = "v1.13.0"
KUBELET = "v1.35.1"  # the stand-in's configs name Kubernetes 1.35.1, as the control plane runs (tools.talos_api.scenario)
_ids = itertools.count()


def unique(prefix: str) -> str:
    """A node name no other test in the shared cluster uses."""
    return f"{prefix}-{os.getpid() % 10000}-{next(_ids)}"


def kwok_node(name: str, control_plane: bool = False) -> dict[str, Any]:
    labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}
    if control_plane:
        labels["node-role.kubernetes.io/control-plane"] = ""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "status": {"nodeInfo": {"kubeletVersion": KUBELET, "operatingSystem": "linux", "architecture": "amd64", "osImage": f"Talos ({NEW})"}},
    }


def deployment(namespace: str, name: str, replicas: int, on: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"nodeSelector": {"kubernetes.io/hostname": on}, "containers": [{"name": name, "image": "registry.k8s.io/pause:3.10"}]},
            },
        },
    }


def program_hooks(namespace: str) -> dict[str, list[dict[str, Any]]]:
    """The hooks the program hands a Ceph host's apply (plans.storage.noout_jobs), in the test's namespace: its shape, not
    one written here, so the two sides cannot drift. kwok runs no container: a Job's pod succeeds once it is scheduled."""
    hooks = copy.deepcopy(storage.noout_jobs())
    for jobs in hooks.values():
        for job in jobs:
            job["metadata"]["namespace"] = namespace
    return hooks


def pods(cluster: Cluster, namespace: str, app: str) -> list[dict[str, Any]]:
    return cluster.client.list("v1", "Pod", namespace, labelSelector=f"app={app}")


def running(cluster: Cluster, namespace: str, app: str, count: int) -> None:
    cluster.wait_for(
        f"{count} running pods of {app}",
        lambda: (
            len(
                [
                    p
                    for p in pods(cluster, namespace, app)
                    if p.get("status", {}).get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
                ]
            )
            == count
        ),
    )


# The API server's words for an eviction `budget` does not allow, which the upgrader says once per pod
# (k8s.io/kubernetes v1.35.1 pkg/registry/core/pod/storage/eviction.go:443-444).
HELD = "The disruption budget guarded needs 1 healthy pods and has 1 currently"


def budget(cluster: Cluster, namespace: str) -> None:
    """A PodDisruptionBudget that allows no eviction of the `guarded` Deployment's one running pod, once the disruption
    controller counted it: until then the API server refuses an eviction in other words ("still being processed by the
    server", eviction.go:418-419, or the pod not yet counted healthy), and a drain is held all the same."""
    spec = {"minAvailable": 1, "selector": {"matchLabels": {"app": "guarded"}}}
    cluster.client.create(
        {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "guarded", "namespace": namespace}, "spec": spec}
    )

    def counted() -> bool:
        found = cluster.client.get("policy/v1", "PodDisruptionBudget", "guarded", namespace)
        if found is None:
            return False
        status = found.get("status") or {}
        return bool(status.get("observedGeneration", 0) >= found["metadata"]["generation"] and status.get("currentHealthy") == 1)

    cluster.wait_for("the budget counting the guarded pod", counted)


# The API server's request counter (k8s.io/apiserver v0.35.1 pkg/endpoints/metrics/metrics.go:78-86,
# apiserver_request_total, labelled by verb, resource, subresource and code, among others), a line per series.
_REQUESTS = re.compile(r"^apiserver_request_total\{([^}]*)\} (\d+)$", re.MULTILINE)
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def api_requests(cluster: Cluster, **labels: str) -> int:
    """How many requests the API server answered since it started, of the series whose labels include `labels`: a test
    waits on what the upgrader asked of it (a drain's retry, a wait's second look) rather than on the clock."""
    status, text = cluster.client.request("GET", "/metrics")
    assert status == 200, text
    return sum(int(n) for series, n in _REQUESTS.findall(text) if labels.items() <= dict(_LABEL.findall(series)).items())


def audit_mark(cluster: Cluster) -> int:
    """Where the API server's audit log ends now (a cluster started with `audit`): `upgrader_requests` counts from there."""
    return cluster.audit_log.stat().st_size if cluster.audit_log.exists() else 0


def upgrader_requests(cluster: Cluster, since: int, verb: str, resource: str, namespace: str, name: str) -> int:
    """How many requests of the upgrader's own the API server answered since the audit log's `since`, on one object: its
    audit log (a cluster started with `audit`; Metadata level, tools/kube_cluster.py AUDIT_POLICY) names each request's
    client by its user agent, which client-go makes from the program's file name (k8s.io/client-go rest/config.go,
    DefaultUserAgent: "<os.Args[0]'s base>/<version> ..."), where apiserver_request_total counts every client's, a leftover
    run's or a controller's too. An event is written once the request is answered (stage ResponseComplete)."""
    agent = f"{binary().name}/"
    with cluster.audit_log.open("rb") as log:
        log.seek(since)
        lines = log.read().split(b"\n")[:-1]  # the last line only once it is whole
    count = 0
    for line in lines:
        event = json.loads(line)
        ref = event.get("objectRef") or {}
        if (
            event["stage"] == "ResponseComplete"
            and event["verb"] == verb
            and event.get("userAgent", "").startswith(agent)
            and (ref.get("resource"), ref.get("namespace"), ref.get("name")) == (resource, namespace, name)
        ):
            count += 1
    return count


def evictions_refused(cluster: Cluster) -> int:
    """The evictions the API server refused with 429 (a PodDisruptionBudget's answer): each try of a drain held by
    `budget`, the first and kubectl's retries 5 s apart, counts one."""
    return api_requests(cluster, code="429", resource="pods", subresource="eviction")


# What a control plane pod Talos rendered once since its boot carries: every resource it is rendered from at version 1, so
# the API server's config files (four resources' versions strung together) at 1111 (tools/talos-api/controlplane.go).
FIRST_RENDER = {
    "kube-apiserver": {"talos.dev/config-version": "1", "talos.dev/config-file-version": "1111", "talos.dev/secrets-version": "1"},
    "kube-controller-manager": {"talos.dev/config-version": "1", "talos.dev/secrets-version": "1"},
    "kube-scheduler": {"talos.dev/config-version": "1", "talos.dev/secrets-version": "1"},
}
# How long a restarted control plane pod must run untouched before the steps count it (the upgrader's default is 30 s).
STABLE = ["--pods-stable", "1s"]


def _pod_ready(pod: dict[str, Any] | None) -> bool:
    conditions = (pod or {}).get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def control_plane_images(config: str) -> dict[str, str]:
    cluster = next(yaml.safe_load_all(config))["cluster"]
    return {
        "kube-apiserver": cluster["apiServer"]["image"],
        "kube-controller-manager": cluster["controllerManager"]["image"],
        "kube-scheduler": cluster["scheduler"]["image"],
    }


def run(api: TalosAPI, cluster: Cluster, args: list[str], **stdin: Any) -> Result:
    return upgrader(args, {"talosconfig": api.talosconfig_text(), "kubeconfig": cluster.kubeconfig.read_text(), **stdin})


def api_server_restarted(cluster: Cluster, name: str, times: int) -> None:
    """Until the kubelet says the node's API server restarted `times` times."""
    cluster.wait_for(
        f"kube-apiserver-{name} restarted {times} times",
        lambda: mirror_pods(cluster, name)["kube-apiserver"].get("status", {}).get("containerStatuses", [{}])[0].get("restartCount", 0) >= times,
    )


def stopped_waiting(
    api: TalosAPI, cluster: Cluster, args: list[str], node: str, check: str, then: Callable[[], None] | None = None, **stdin: Any
) -> Result:
    """The upgrader run until it says it waits on `check` for `node` (its first "waiting: <check>: " line), `then` done
    (what else the test waits for first), and stopped there as Pulumi stops a cancelled step (SIGTERM): every wait ends as
    a failure naming what it saw last (upgrader/internal/wait: "stopped: SIGTERM; last seen: ..."). A test that means
    "this wait does not pass" stops it where it means, however long the steps before it took; a short --timeout bets on
    which wait the run is in when it ends, and under load the bet is lost."""
    waiting = f"upgrader: {node}: waiting: {check}: "

    def at(line: str) -> bool:
        if not line.startswith(waiting):
            return False
        if then is not None:
            then()
        return True

    secrets = {"talosconfig": api.talosconfig_text(), "kubeconfig": cluster.kubeconfig.read_text(), **stdin}
    return upgrader_watched(args, secrets, at, stop=signal.SIGTERM)


def _sysctl() -> str:
    return json.dumps({"machine": {"sysctls": {"vm.max_map_count": "262144"}}})


# Where the after hooks a node's disruption still owes are kept (upgrader/internal/kube/hookmark.go): a ConfigMap,
# a key per node, which outlives the Node object.
OWED = "kube-system/iluvatar-after-hooks"


def _owed(cluster: Cluster, name: str) -> str | None:
    """What the node is owed, as the upgrader keeps it (None: nothing)."""
    found = cluster.client.get("v1", "ConfigMap", "iluvatar-after-hooks", "kube-system")
    data: dict[str, str] = (found or {}).get("data") or {}
    return data.get(name)


def _owe(cluster: Cluster, name: str, refs: str) -> None:
    """Write what a node is owed, as a run that died after its before hooks left it."""
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "iluvatar-after-hooks", "namespace": "kube-system"}}
    if cluster.client.get("v1", "ConfigMap", "iluvatar-after-hooks", "kube-system") is None:
        cluster.client.create({**cm, "data": {name: refs}})
    else:
        cluster.client.merge_patch(cm, {"data": {name: refs}})


def _job_states(cluster: Cluster, namespace: str) -> dict[str, str]:
    """Each hook Job in the namespace, and its last true condition ("" while it runs)."""
    jobs = cluster.client.list("batch/v1", "Job", namespace)
    return {
        j["metadata"]["name"]: ([c["type"] for c in (j.get("status") or {}).get("conditions") or [] if c["status"] == "True"] or [""])[-1]
        for j in jobs
    }


# A control plane's components, as their mirror pods' k8s-app label names them (how the stand-in's kubelet replaces
# them: test_static_pods.py).
APPS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
CONFIG_VERSION = "talos.dev/config-version"


def mirror_pods(cluster: Cluster, node_name: str) -> dict[str, dict[str, Any]]:
    """The control plane's mirror pods on a node now, by component (one on its way out does not count)."""
    found = cluster.client.list("v1", "Pod", "kube-system", fieldSelector=f"spec.nodeName={node_name}")
    return {
        p["metadata"]["labels"]["k8s-app"]: p
        for p in found
        if (p["metadata"].get("labels") or {}).get("k8s-app") in APPS and not p["metadata"].get("deletionTimestamp")
    }


def config_versions(cluster: Cluster, node_name: str) -> dict[str, str]:
    """Each mirror pod's talos.dev/config-version, for those that are Ready."""
    return {app: p["metadata"]["annotations"].get(CONFIG_VERSION, "") for app, p in mirror_pods(cluster, node_name).items() if _pod_ready(p)}


def kubelet_scenario(cluster: Cluster, nodes: list[dict[str, Any]], poll_ms: int) -> dict[str, Any]:
    """Nodes whose kubelets sign in to the test control plane and poll Talos's static pods every `poll_ms`."""
    return scenario(nodes, endpoint=cluster.server, kubernetes_ca=cluster.ca, kubelet_poll_ms=poll_ms)


def first_pods(cluster: Cluster, names: list[str]) -> None:
    """The Nodes the kubelets registered, Ready (kwok), and the mirror pods each made when it started, Ready, of the config
    Talos rendered at boot (version 1)."""
    cluster.wait_for_nodes(names)
    cluster.wait_for("the kubelets' first mirror pods", lambda: all(config_versions(cluster, n) == dict.fromkeys(APPS, "1") for n in names))


CRASH_LOOP = re.compile(
    r"upgrader: FAILED: (?P<node>\S+): control-plane-pods: stopped: SIGTERM; last seen: kube-apiserver-(?P=node) "
    r"(is not Ready \(CrashLoopBackOff, restarted (once|\d+ times)\)"
    r"|has run \d+(\.\d)?m?s since it last started \(restarted (once|\d+ times)\): it counts once it has run 2s untouched); "
    r"look with: kubectl -n kube-system get pods -o wide --field-selector spec.nodeName=(?P=node)"
    # Or, when the stop comes while it asks the node's own API server (between two of its crashes) rather than its pods:
    # the same API server, seen from its /readyz.
    r"|upgrader: FAILED: (?P<at>\S+): api-server: stopped: SIGTERM; last seen: kube-apiserver on (?P=at) \((?P<ip>[\d.]+):6443\): /readyz: "
    r"the server is currently unable to handle the request; look with: kubectl --server https://(?P=ip):6443 get --raw '/readyz\?verbose'"
)


# What `kubernetes-upgrade` rolls to (test_kubeupgrade.py), and `kubernetes-preflight` checks the way to (test_kube_gates.py).
TO = "v1.36.0"  # the next minor after what the control plane runs


def _last(api: TalosAPI, name: str) -> dict[str, Any]:
    return {"node": name, "ip": api.ip(name), "machine": mac(name)}


def _kubelet_reports(api: TalosAPI, cluster: Cluster, name: str, control_plane: bool = False) -> dict[str, Any]:
    """What the kubelet of the machine's current boot reports: its Node, with the boot ID the machine booted (kwok plays the rest)."""
    reported = kwok_node(name, control_plane)
    reported["status"]["nodeInfo"]["bootID"] = api.state()[name]["bootId"]
    return reported
