"""kube-vip for the Ainur's LoadBalancer addresses, so the service address follows the netboot pod."""

from __future__ import annotations

from typing import Any

from plans.k3s import API_PORT, kube_vip_container
from plans.netboot.failover import service_election
from plans.netboot.pods import _labels, _meta
from stacks.model import StackConfig


def kube_vip_services(stack: StackConfig) -> list[dict[str, Any]]:
    """kube-vip for LoadBalancer addresses on every Pi (the API VIP stays with the valar's static
    pod): per-Service election among the Pis running an endpoint, so the service address follows
    the netboot pod. Its election has timings of its own (plans.netboot.failover.service_election): the household's
    DNS is on this address, and it must ride out a k3s restart on the one valar, through whose API it is renewed."""
    assert stack.ainur is not None
    labels = _labels("kube-vip")
    env = {
        # kube-vip reaches the API with in-cluster config (kube-vip v0.9.2 pkg/manager/manager.go:139-140, no kubeconfig
        # mounted here), whose address is these two variables (client-go rest.InClusterConfig). Set in the container,
        # they replace the ones the kubelet injects for the `kubernetes` Service (Kubernetes v1.35.1
        # pkg/kubelet/kubelet_pods.go:965-977: a service variable the container sets itself is skipped). That Service's
        # ClusterIP is DNATed to one valar for the life of the connection, and client-go sends every request on one
        # HTTP/2 connection: a valar that dies without a FIN or RST would hold every renewal on that dead connection (each
        # up to the 10 s client timeout, pkg/k8s/client.go:17,65) until the HTTP/2 health check drops it ~45 s on, taking
        # the service address off a healthy Pi. The API VIP is held by a live valar within its own 5 s election, and a
        # request on the stale connection reaches that valar's kernel, which resets it: the next try dials a live API
        # server within the renew deadline (the VIP is in every valar's serving certificate: plans.k3s `tls-san`).
        "KUBERNETES_SERVICE_HOST": str(stack.ainur.vip),
        "KUBERNETES_SERVICE_PORT": str(API_PORT),
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
