"""Metrics the platform charts expose once monitoring is on: each chart's own ServiceMonitors, by its values.

With `iluvatar:monitoring`, the Prometheus Operator's CRDs are on Arda before the first chart
(`plans.monitoring.CRD_FILES`, right after Arda's API answers), so every chart Iluvatar installs can
turn its own ServiceMonitors on: Cilium (agent and operator), cert-manager, Rook (the Ceph manager's
metrics, behind `ceph_health_status`) and Argo CD (the application controller's `argocd_app_info`).
Envoy Gateway's chart has none: its monitors are Pulumi's (`plans.monitoring`).

A leaf module (it imports no other plan), so each chart's plan can merge its part. Without
monitoring every function returns {} and the charts are as they were.
"""

from __future__ import annotations

from typing import Any

from stacks.model import StackConfig


def enabled(stack: StackConfig) -> bool:
    return stack.monitoring is not None


def cilium(stack: StackConfig) -> dict[str, Any]:
    """Cilium's agent and operator metrics, each with its ServiceMonitor.

    `trustCRDsExist` (the agent's; the operator's monitor has no such check): the chart otherwise
    refuses to render unless Helm already sees the monitoring.coreos.com/v1 API; the CRDs are there
    before the release (a gate waits for them), so the check is Iluvatar's, not Helm's.
    """
    if not enabled(stack):
        return {}
    return {
        "prometheus": {"enabled": True, "serviceMonitor": {"enabled": True, "trustCRDsExist": True}},
        "operator": {"prometheus": {"enabled": True, "serviceMonitor": {"enabled": True}}},
    }


def cert_manager(stack: StackConfig) -> dict[str, Any]:
    """cert-manager's controller metrics (certificate expiry and readiness), with a ServiceMonitor."""
    if not enabled(stack):
        return {}
    return {"prometheus": {"enabled": True, "servicemonitor": {"enabled": True}}}


def rook_operator(stack: StackConfig) -> dict[str, Any]:
    """The Rook operator may create the Ceph manager's ServiceMonitor (its RBAC for monitoring.coreos.com)."""
    if not enabled(stack):
        return {}
    return {"monitoring": {"enabled": True}}


def rook_cluster(stack: StackConfig) -> dict[str, Any]:
    """The CephCluster with monitoring on: the manager's prometheus module and its ServiceMonitor."""
    if not enabled(stack):
        return {}
    return {"monitoring": {"enabled": True, "createPrometheusRules": False}}


def argocd(stack: StackConfig, cluster: str) -> dict[str, Any]:
    """Arda's Argo CD: metrics of the application controller, the server and the repo server, with their
    ServiceMonitors (the Ainur have no Prometheus)."""
    if not enabled(stack) or cluster != "arda":
        return {}
    metrics = {"metrics": {"enabled": True, "serviceMonitor": {"enabled": True}}}
    return {"controller": dict(metrics), "server": dict(metrics), "repoServer": dict(metrics)}
