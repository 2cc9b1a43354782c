"""The step after the gateways (plans.gateways.node_port_release: the upgrader's `release-node-ports`) on the real API
server (tools/kube_cluster.py: kube-apiserver 1.35.1 with Talos's flags), which allocates and releases NodePorts itself.

Envoy Gateway is the one stand-in: its apply of a gateway's proxy Service, as v1.9.0 makes it (`envoy_gateway_apply`).
What the API server does with that apply, with the step's patch and with the next apply is its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from plans import gateways
from plans.edge import GATEWAY_NAMESPACE, gateway_names
from stacks import load_stack_file
from stacks.edge import edge_addresses
from tests.edit import HOMELAB
from tests.upgrader.run import Result, upgrader, upgrader_watched
from tools.kube_cluster import TALOS, Cluster

pytestmark = pytest.mark.kube

STACK = load_stack_file(HOMELAB)
STEP = gateways.node_port_release(STACK)
# The homelab's gateways, as the step names them.
GATEWAYS = gateway_names(STACK)
ENVOY_GATEWAY = "envoy-gateway"  # Envoy Gateway's field manager (v1.9.0 internal/infrastructure/kubernetes/infra_client.go:29)
# The EnvoyProxy's envoyService before Arda's Services stopped allocating NodePorts: a LoadBalancer and nothing more.
BEFORE: dict[str, Any] = {"type": "LoadBalancer"}
NOW: dict[str, Any] = gateways.envoy_proxy()["spec"]["provider"]["kubernetes"]["envoyService"]
APPS = "apps"  # a namespace an app's manifests deploy into, not the program's
ELSEWHERE = "elsewhere"  # the namespace of another Gateway of the same name as one of the homelab's
NAMESPACES = (GATEWAY_NAMESPACE, APPS, ELSEWHERE)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The API server alone (with its etcd): NodePorts are its own to allocate and release, no controller takes part."""
    started = Cluster(TALOS, tmp_path_factory.mktemp("kube-node-ports"), components=("etcd", "kube-apiserver"), ready_for_pods=False)
    started.start()
    try:
        for namespace in NAMESPACES:
            started.client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        yield started
    finally:
        started.stop()


@pytest.fixture
def api(cluster: Cluster) -> Iterator[Cluster]:
    """The cluster, left with no Service in its namespaces by each test."""
    yield cluster
    for namespace in NAMESPACES:
        for service in cluster.client.list("v1", "Service", namespace):
            cluster.client.delete(service)


def envoy_gateway_labels(gateway: str, owner: str = GATEWAY_NAMESPACE) -> dict[str, str]:
    """The labels Envoy Gateway v1.9.0 puts on the proxy Service of Gateway `owner`/`gateway`: the app labels
    (infrastructure/kubernetes/proxy/resource.go:47-53), the Gateway's name label (resource_provider.go:186-188) and the
    owning labels (gatewayapi/translator.go:639, helpers.go:272-277)."""
    return {
        "app.kubernetes.io/name": "envoy",
        "app.kubernetes.io/component": "proxy",
        "app.kubernetes.io/managed-by": "envoy-gateway",
        "gateway.networking.k8s.io/gateway-name": gateway,
        "gateway.envoyproxy.io/owning-gateway-name": gateway,
        "gateway.envoyproxy.io/owning-gateway-namespace": owner,
    }


def envoy_gateway_service(
    gateway: str, envoy_service: dict[str, Any], owner: str = GATEWAY_NAMESPACE, name: str | None = None, namespace: str | None = None
) -> dict[str, Any]:
    """STAND-IN for Envoy Gateway v1.9.0's proxy Service of Gateway `owner`/`gateway` in GatewayNamespace mode, as it
    applies it (internal/infrastructure/kubernetes/proxy/resource_provider.go:193-300): named as the Gateway, in its
    namespace (resource_provider.go:118-124; translator.go:650), unless `name` and `namespace` say otherwise (a Service
    anyone else made with the same labels); its labels (`envoy_gateway_labels`); the Gateway's infrastructure annotations; spec from the EnvoyProxy's envoyService (resource/resource.go:23-49:
    sessionAffinity None, externalTrafficPolicy Local when unset, allocateLoadBalancerNodePorts only when set) and one
    port per listener, `<protocol>-<port>` to the port plus 10000 (gatewayapi/helpers.go:539-541, listener.go:1403-1425),
    with no nodePort (resource_provider.go:203-208). The owner reference to the Gateway is left out: this API server has
    no Gateway API, and an owner reference plays no part in a Service's ports."""
    labels = envoy_gateway_labels(gateway, owner)
    address = str(edge_addresses(STACK.network.load_balancer_pool, STACK.edge)[gateway])
    spec: dict[str, Any] = {"type": envoy_service["type"], "sessionAffinity": "None"}
    if "allocateLoadBalancerNodePorts" in envoy_service:
        spec["allocateLoadBalancerNodePorts"] = envoy_service["allocateLoadBalancerNodePorts"]
    spec["externalTrafficPolicy"] = envoy_service.get("externalTrafficPolicy", "Local")
    spec["ports"] = [{"name": f"{p}-{n}", "protocol": "TCP", "port": n, "targetPort": n + 10000} for p, n in (("http", 80), ("https", 443))]
    spec["selector"] = labels
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name or gateway,
            "namespace": namespace or owner,
            "labels": labels,
            "annotations": {gateways.LBIPAM_ANNOTATION: address},
        },
        "spec": spec,
    }


def envoy_gateway_apply(cluster: Cluster, gateway: str, envoy_service: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Envoy Gateway's apply: server-side, its own manager, ForceOwnership (infra_client.go:28-31)."""
    return cluster.client.apply(envoy_gateway_service(gateway, envoy_service, **kwargs), field_manager=ENVOY_GATEWAY, force=True)


def node_ports(service: dict[str, Any]) -> list[int]:
    return [p["nodePort"] for p in service["spec"]["ports"] if p.get("nodePort")]


def step_args() -> list[str]:
    """The program's step, its bound shortened: every wait below ends on an event, and a broken step then fails in a minute."""
    return [*STEP.args, "--timeout", "60s"]


def run_step(cluster: Cluster) -> Result:
    return upgrader(step_args(), {"kubeconfig": cluster.kubeconfig.read_text()})


def server(cluster: Cluster) -> str:
    return cluster.server.removeprefix("https://")


def done(cluster: Cluster) -> str:
    return f"upgrader: {server(cluster)}: no NodePort on the proxy Service of {', '.join(f'{GATEWAY_NAMESPACE}/{g}' for g in GATEWAYS)}"


def released(cluster: Cluster, gateway: str, held: list[int]) -> str:
    ports = ", ".join(str(p) for p in sorted(held))
    return f"upgrader: {server(cluster)}: Service {GATEWAY_NAMESPACE}/{gateway} (gateway {GATEWAY_NAMESPACE}/{gateway}): NodePorts {ports} released"


def test_the_step_is_the_homelabs_gateways_by_envoy_gateways_labels() -> None:
    assert STEP.command == (
        ".venv/bin/iluvatar upgrader release-node-ports --gateways networking/envoy-external,networking/envoy-internal --timeout 10m"
    )
    assert STEP.waits_for == "the proxy Services of networking/envoy-external, networking/envoy-internal to hold no NodePort"


def test_an_up_takes_away_the_node_ports_an_older_gateway_service_holds(api: Cluster) -> None:
    """An Arda made before: each gateway's Service, applied as Envoy Gateway did then, holds a NodePort on each port.
    Envoy Gateway's apply of the EnvoyProxy as it is now keeps them (it owns no nodePort); the step takes them away,
    leaves no field manager of its own, and Envoy Gateway's next apply brings none back."""
    made = {g: envoy_gateway_apply(api, g, BEFORE) for g in GATEWAYS}
    older = {g: node_ports(s) for g, s in made.items()}
    assert [len(p) for p in older.values()] == [2, 2]
    assert all(s["spec"]["healthCheckNodePort"] for s in made.values())
    now = {g: envoy_gateway_apply(api, g, NOW) for g in GATEWAYS}
    assert {g: node_ports(s) for g, s in now.items()} == older  # the flag alone: still there
    assert [s["spec"]["allocateLoadBalancerNodePorts"] for s in now.values()] == [False, False]

    result = run_step(api)
    assert result.code == 0, result.stderr
    assert result.lines == [*(released(api, g, older[g]) for g in GATEWAYS), done(api)]
    for gateway in GATEWAYS:
        service = api.client.get("v1", "Service", gateway, GATEWAY_NAMESPACE)
        assert service is not None
        # Exactly the ports Envoy Gateway writes, and Envoy Gateway the Service's only manager.
        assert service["spec"]["ports"] == [
            {"name": "http-80", "protocol": "TCP", "port": 80, "targetPort": 10080},
            {"name": "https-443", "protocol": "TCP", "port": 443, "targetPort": 10443},
        ]
        assert [m["manager"] for m in service["metadata"]["managedFields"]] == [ENVOY_GATEWAY]
        # Nor the health check's NodePort the older Service's externalTrafficPolicy Local had: the API server dropped it
        # with Envoy Gateway's apply of Cluster.
        assert "healthCheckNodePort" not in service["spec"]
        # Envoy Gateway's next reconcile: no NodePort again, nothing else changed.
        again = envoy_gateway_apply(api, gateway, NOW)
        assert again["spec"] == service["spec"]

    # Idempotent: the next `up`'s step (its inputs changed) writes nothing.
    versions = {g: api.client.get("v1", "Service", g, GATEWAY_NAMESPACE)["metadata"]["resourceVersion"] for g in GATEWAYS}  # type: ignore[index]
    rerun = run_step(api)
    assert (rerun.code, rerun.lines) == (0, [done(api)])
    assert {g: api.client.get("v1", "Service", g, GATEWAY_NAMESPACE)["metadata"]["resourceVersion"] for g in GATEWAYS} == versions  # type: ignore[index]


def test_on_a_new_arda_the_step_waits_for_envoy_gateways_services_and_changes_nothing(api: Cluster) -> None:
    """A first `up`: the step runs before Envoy Gateway has made the Services; it waits for them, and finds no NodePort."""
    applied: dict[str, dict[str, Any]] = {}

    def on_line(line: str) -> bool:
        if line.endswith("has no proxy Service yet (Envoy Gateway makes it once it accepts the Gateway)") and not applied:
            # The step looks at the gateways in order: the first one's Service made last, so a look in between sees
            # what it saw before and says nothing new.
            applied.update({g: envoy_gateway_apply(api, g, NOW) for g in reversed(GATEWAYS)})
        return False

    result = upgrader_watched(step_args(), {"kubeconfig": api.kubeconfig.read_text()}, on_line)
    assert result.code == 0, result.stderr
    assert result.lines == [
        f"upgrader: {server(api)}: waiting: gateway {GATEWAY_NAMESPACE}/{GATEWAYS[0]} has no proxy Service yet (Envoy Gateway makes it once it accepts the Gateway)",
        done(api),
    ]
    for gateway, service in applied.items():
        assert node_ports(service) == []
        found = api.client.get("v1", "Service", gateway, GATEWAY_NAMESPACE)
        assert found is not None and found["metadata"]["resourceVersion"] == service["metadata"]["resourceVersion"]


def test_the_step_waits_for_envoy_gateway_to_stop_allocating_before_it_removes_a_node_port(api: Cluster) -> None:
    """Until Envoy Gateway applied the EnvoyProxy's `allocateLoadBalancerNodePorts: false`, a NodePort removed is given
    back by the API server; so the step waits for it, then removes them."""
    older = {g: envoy_gateway_apply(api, g, BEFORE) for g in GATEWAYS}
    # What a removal does before then: the API server gives the very NodePort back.
    first = older[GATEWAYS[0]]
    back = api.client.json_patch(first, [{"op": "remove", "path": "/spec/ports/0/nodePort"}])
    assert node_ports(back) == node_ports(first)

    said: list[str] = []

    def on_line(line: str) -> bool:
        if "still allocates NodePorts" in line and not said:
            said.append(line)
            for g in reversed(GATEWAYS):  # the first one last, as above
                envoy_gateway_apply(api, g, NOW)
        return False

    result = upgrader_watched(step_args(), {"kubeconfig": api.kubeconfig.read_text()}, on_line)
    assert result.code == 0, result.stderr
    assert said == [
        f"upgrader: {server(api)}: waiting: Service {GATEWAY_NAMESPACE}/{GATEWAYS[0]} of gateway {GATEWAY_NAMESPACE}/{GATEWAYS[0]} still allocates "
        "NodePorts (type LoadBalancer, allocateLoadBalancerNodePorts true): Envoy Gateway has not applied the EnvoyProxy's envoyService to it yet"
    ]
    assert result.lines[1:] == [*(released(api, g, node_ports(older[g])) for g in GATEWAYS), done(api)]
    assert [node_ports(api.client.get("v1", "Service", g, GATEWAY_NAMESPACE) or {}) for g in GATEWAYS] == [[], []]


def test_a_step_killed_midway_is_finished_by_the_next_up(api: Cluster) -> None:
    """Killed between the gateways (SIGKILL, as a power cut of the machine running `pulumi up`), the first one's Service
    released and the second one's still waited for: Pulumi records no step, so the next `up` runs it again, and it
    releases the rest."""
    first, second = GATEWAYS
    held = {g: node_ports(envoy_gateway_apply(api, g, BEFORE)) for g in GATEWAYS}
    envoy_gateway_apply(api, first, NOW)
    killed = upgrader_watched(step_args(), {"kubeconfig": api.kubeconfig.read_text()}, lambda line: "still allocates" in line)
    assert killed.code == -9
    assert killed.lines[0] == released(api, first, held[first])
    assert f"Service {GATEWAY_NAMESPACE}/{second} of gateway {GATEWAY_NAMESPACE}/{second} still allocates" in killed.lines[1]
    assert node_ports(api.client.get("v1", "Service", second, GATEWAY_NAMESPACE) or {}) == held[second]
    envoy_gateway_apply(api, second, NOW)
    result = run_step(api)
    assert (result.code, result.lines) == (0, [released(api, second, held[second]), done(api)])
    assert [node_ports(api.client.get("v1", "Service", g, GATEWAY_NAMESPACE) or {}) for g in GATEWAYS] == [[], []]


def holding_node_ports(cluster: Cluster, service: dict[str, Any]) -> dict[str, Any]:
    """`service`, a LoadBalancer, made with NodePorts and then told to allocate no more, as the gateways' older Services
    were: what the step would release, were it the step's to release."""
    made = cluster.client.create(service | {"spec": service["spec"] | {"allocateLoadBalancerNodePorts": True}})
    return cluster.client.json_patch(made, [{"op": "replace", "path": "/spec/allocateLoadBalancerNodePorts", "value": False}])


def test_a_service_labelled_as_a_gateways_outside_its_namespace_is_neither_waited_for_nor_touched(api: Cluster) -> None:
    """Labels are free text: whoever deploys into an app namespace can make a Service with a gateway's labels. Envoy
    Gateway finds a Gateway's Service in the Gateway's own namespace only (v1.9.0 internal/provider/kubernetes/
    predicates.go:752-757,800-803), and so does the step: a ClusterIP there (which it would wait on for ever, failing
    every `up` and leaving the gateways' NodePorts open) and a LoadBalancer holding NodePorts (which it would patch) keep
    what they are, as does the Service of another namespace's Gateway of the same name; in the gateways' namespace, a
    Service with the owning labels that Envoy Gateway does not mark as its own (managed-by, infra_resource.go:773-775)
    is not a gateway's either. The gateways' own Services lose their NodePorts."""
    external = GATEWAYS[0]
    innocent = api.client.create(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "innocent", "namespace": APPS, "labels": envoy_gateway_labels(external)},
            "spec": {
                "type": "ClusterIP",
                "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080}],
                "selector": {"app": "innocent"},
            },
        }
    )
    lookalike = holding_node_ports(api, envoy_gateway_service(external, NOW, name="lookalike", namespace=APPS))
    elsewhere = holding_node_ports(api, envoy_gateway_service(external, NOW, owner=ELSEWHERE))
    unmarked_labels = {k: v for k, v in envoy_gateway_labels(external).items() if k != "app.kubernetes.io/managed-by"}
    unmarked = api.client.create(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": f"{external}-copy", "namespace": GATEWAY_NAMESPACE, "labels": unmarked_labels},
            "spec": {
                "type": "ClusterIP",
                "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 10080}],
                "selector": unmarked_labels,
            },
        }
    )
    others = [innocent, lookalike, elsewhere, unmarked]
    assert [len(node_ports(s)) for s in others] == [0, 2, 2, 0]
    held = {g: node_ports(envoy_gateway_apply(api, g, BEFORE)) for g in GATEWAYS}
    for g in GATEWAYS:
        envoy_gateway_apply(api, g, NOW)

    result = run_step(api)
    assert result.code == 0, result.stderr
    # Released at once: no line waits on a Service that is not a gateway's.
    assert result.lines == [*(released(api, g, held[g]) for g in GATEWAYS), done(api)]
    assert [node_ports(api.client.get("v1", "Service", g, GATEWAY_NAMESPACE) or {}) for g in GATEWAYS] == [[], []]
    for other in others:
        found = api.client.get("v1", "Service", other["metadata"]["name"], other["metadata"]["namespace"])
        assert found is not None
        assert (found["metadata"]["resourceVersion"], node_ports(found)) == (other["metadata"]["resourceVersion"], node_ports(other))
