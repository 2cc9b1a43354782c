"""The log store's component under the mock runtime: what its workloads wait for."""

from __future__ import annotations

from iluvatar.simulate import Simulation


def _after(sim: Simulation, name: str) -> set[str]:
    return {r.name for r in sim.registrations if r.urn in sim.named()[name].dependencies}


def test_the_stores_pod_starts_behind_its_policies(homelab: Simulation) -> None:
    """The store's StatefulSet waits for who may reach it (plans.logs.store_network_policies) and vmalert's policy, so on
    the first `up` no pod of Arda meets an open store; vmalert waits for the store."""
    policies = {
        "logs-arda-networkpolicy-victoria-logs",
        "logs-arda-ciliumnetworkpolicy-monitoring-victoria-logs-writers",
        "logs-arda-networkpolicy-vmalert-logs",
    }
    assert _after(homelab, "logs-arda-statefulset-victoria-logs") == {
        "arda-gate-nodes",
        "edge-namespace-monitoring",
        "logs-gate-storage",
        "logs-arda-secret-victoria-logs-auth",
        *policies,
    }
    assert "logs-arda-statefulset-victoria-logs" in _after(homelab, "logs-arda-deployment-vmalert-logs")
    # The CiliumNetworkPolicy itself after the gate that sees Cilium's CRD admitted.
    assert "logs-gate-cilium" in _after(homelab, "logs-arda-ciliumnetworkpolicy-monitoring-victoria-logs-writers")
