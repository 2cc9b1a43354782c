"""kube-vip for the Ainur's LoadBalancer addresses, so the service address follows the netboot pod."""

from __future__ import annotations

from typing import Any

from plans.k3s import kube_vip_container
from plans.netboot.failover import service_election
from plans.netboot.pods import _labels, _meta


def kube_vip_services() -> list[dict[str, Any]]:
    """kube-vip for LoadBalancer addresses on every Pi (the API VIP stays with the valar's static
    pod): per-Service election among the Pis running an endpoint, so the service address follows
    the netboot pod. Its election has timings of its own (plans.netboot.failover.service_election): the household's
    DNS is on this address, and it must ride out a k3s restart on the one valar, through whose API it is renewed."""
    labels = _labels("kube-vip")
    env = {
        "vip_arp": "true",
        "cp_enable": "false",
        "svc_enable": "true",
        "svc_election": "true",
        **service_election(),
        "prometheus_server": "",  # the valar's static kube-vip already listens on :2112
    }
    rules = [
        {"apiGroups": [""], "resources": ["services/status"], "verbs": ["update"]},
        {"apiGroups": [""], "resources": ["services", "endpoints"], "verbs": ["list", "get", "watch", "update"]},
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["list", "get", "watch", "update", "patch"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["list", "get", "watch", "update", "create"]},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "get", "watch", "update"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
    ]
    pod = {
        "serviceAccountName": "kube-vip",
        "hostNetwork": True,
        "tolerations": [{"operator": "Exists"}],
        "containers": [kube_vip_container(env)],
    }
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta("kube-vip", labels, "kube-system")},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": _meta("iluvatar-kube-vip", labels, None), "rules": rules},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": _meta("iluvatar-kube-vip", labels, None),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "iluvatar-kube-vip"},
            "subjects": [{"kind": "ServiceAccount", "name": "kube-vip", "namespace": "kube-system"}],
        },
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            # OnDelete, and not awaited by Pulumi: a step replaces the pods one Pi at a time, the one holding the service
            # address last, and waits for each (plans.netboot.vip_roll); pulumi-kubernetes v4.32.0 would otherwise wait
            # for pods no controller replaces (provider/pkg/await/daemonset.go:58-68; skipAwait: await.go:1100-1101).
            "metadata": {**_meta("kube-vip-services", labels, "kube-system"), "annotations": {"pulumi.com/skipAwait": "true"}},
            "spec": {
                "selector": {"matchLabels": labels},
                "updateStrategy": {"type": "OnDelete"},
                "template": {"metadata": {"labels": labels}, "spec": pod},
            },
        },
    ]
