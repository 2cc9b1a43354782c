"""A config that would move the networks a running Arda was made with (upgrader/internal/apply/subnets.go): refused
before anything changes, from what the cluster runs (the default/kubernetes Service's address, the Node's podCIDRs),
whatever the deployment's outputs recorded.

The Talos side is the scripted stand-in (tools/talos-api); Kubernetes is the real API server with Talos's default
ranges (tools/kube_cluster.py, `TALOS`), its controller-manager giving each kwok Node its pod range as it gives a
kubelet's (`--allocate-node-cidrs`).
"""

from __future__ import annotations

import json
import socket

import pytest

from tests.upgrader.kube import NEW, kwok_node, run, unique
from tests.upgrader.run import mutations, upgrader
from tools.kube_cluster import Cluster
from tools.talos_api import VANILLA, addresses, installer, node, scenario, talos_api

pytestmark = pytest.mark.kube


def test_a_config_that_moves_the_service_and_pod_networks_is_refused_before_the_dry_run(kube_talos: Cluster) -> None:
    name = unique("istari")
    kube_talos.create_nodes([kwok_node(name)])
    # The range allocator gives the Node its range once it sees it (range_allocator.go: from the cluster CIDR).
    [pods] = kube_talos.wait_for(f"{name}'s podCIDRs", lambda: ((kube_talos.client.get("v1", "Node", name) or {}).get("spec") or {}).get("podCIDRs"))
    service = kube_talos.client.get("v1", "Service", "kubernetes", "default")
    assert service is not None
    assert service["spec"]["clusterIP"] == "10.96.0.1"

    spec = scenario([node(name, addresses(1)[0], "worker", NEW)])
    with talos_api(spec) as api:
        moved = json.dumps({"cluster": {"network": {"serviceSubnets": ["10.97.0.0/16"], "podSubnets": ["10.200.0.0/16"]}}})
        config = api.config("worker", installer(VANILLA, NEW), patches=[moved])
        args = ["apply", "--node", api.node_arg(name), "--role", "worker", "--timeout", "60s"]
        result = run(api, kube_talos, args, machineConfig=config)
        assert result.code == 1, result.stderr
        assert result.last == (
            f"upgrader: FAILED: {name}: cluster-network: the cluster runs its Services from the range that holds 10.96.0.1 "
            "(the default/kubernetes Service's address), but the config's cluster.network.serviceSubnets are [10.97.0.0/16]; "
            f"Node {name} runs its pods from {pods} (its spec.podCIDRs), but the config's cluster.network.podSubnets are [10.200.0.0/16]: "
            "a running cluster keeps the networks it was made with (its Services and Nodes keep their addresses in them), and Iluvatar does not "
            "renumber a running cluster; put the patch back in iluvatar:arda.patches with what runs, "
            "[{cluster: {network: {serviceSubnets: [10.96.0.0/12], podSubnets: [10.244.0.0/16]}}}], and run pulumi up again; "
            f"nothing was changed; look with: kubectl get service kubernetes -n default; kubectl get node {name} -o jsonpath='{{.spec.podCIDRs}}'"
        )
        assert mutations(api) == []


def test_with_the_api_unreachable_a_moved_config_is_refused_from_the_active_config(kube_talos: Cluster) -> None:
    """The API server down (a closed port here: connection refused on every read, as when a bad patch keeps it from
    starting): the node's active config stands for what runs, and a config whose subnets differ from it is refused.
    The case where they are equal goes on to steps that need the API, so it is the Go test's
    (TestCheckNetworksWhenTheAPICannotBeRead)."""
    name = unique("istari")
    [ip] = addresses(1)
    spec = scenario([node(name, ip, "worker", NEW)])
    # Bound and never listening: every connect is refused, and no other process can take the port meanwhile.
    with socket.socket() as closed, talos_api(spec) as api:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        kubeconfig = kube_talos.kubeconfig.read_text().replace(kube_talos.server, f"https://127.0.0.1:{port}")
        assert f"127.0.0.1:{port}" in kubeconfig

        moved = json.dumps({"cluster": {"network": {"serviceSubnets": ["10.97.0.0/16"]}}})
        config = api.config("worker", installer(VANILLA, NEW), patches=[moved])
        args = ["apply", "--node", api.node_arg(name), "--role", "worker", "--timeout", "60s"]
        result = upgrader(args, {"talosconfig": api.talosconfig_text(), "kubeconfig": kubeconfig, "machineConfig": config})
        assert result.code == 1, result.stderr
        assert result.last == (
            f"upgrader: FAILED: {name}: cluster-network: cannot read the Service network and the Node's pod ranges the cluster runs "
            f'(Get "https://127.0.0.1:{port}/api/v1/namespaces/default/services/kubernetes?timeout=15s": dial tcp 127.0.0.1:{port}: '
            "connect: connection refused), so the node's active config stands for them: the config's cluster.network.serviceSubnets are "
            "[10.97.0.0/16], the active config's are [10.96.0.0/12]; a running cluster keeps the networks it was made with, and Iluvatar does not "
            "renumber a running cluster; put the active config's back in iluvatar:arda.patches, "
            "[{cluster: {network: {serviceSubnets: [10.96.0.0/12]}}}], and run pulumi up again; nothing was changed; "
            f"look with: kubectl get service kubernetes -n default; kubectl get node {name}; talosctl get machineconfig -o yaml --nodes {ip}"
        )
        assert mutations(api) == []
