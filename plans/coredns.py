"""Arda's cluster DNS: CoreDNS as Iluvatar's own objects, with Talos's bootstrap CoreDNS turned off.

Talos deploys CoreDNS as a bootstrap manifest, which it only ever creates: a later Talos or
Kubernetes version never moves it. Iluvatar turns it off (`cluster.coreDNS.disabled` on the
control planes, plans.talos) and writes the same objects itself, so every `pulumi up` keeps them
as this module says and a version change rolls them with the rest.

The objects are the ones Talos's bootstrap manifests create (its `k8stemplates/coredns.go`): the
names (`coredns`, Service `kube-dns`), the `k8s-app: kube-dns` labels Talos's own health check
looks for, the selector, the Corefile and the Service's address, the one every kubelet is told
to use as its cluster DNS. A running cluster's objects are therefore adopted as they are
(the Kubernetes provider upserts), never replaced: a Service's address and a Deployment's
selector cannot change in place.

The image is the one Talos itself would deploy (its machinery's `constants.DefaultCoreDNSVersion`
at the nodes' Talos version), so taking CoreDNS over changes nothing but its owner. Pure logic:
components.arda creates these manifests.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from plans import netpol
from stacks.model import StackConfig

NAMESPACE = "kube-system"
NAME = "coredns"
SERVICE = "kube-dns"
# What Talos's health check (pkg/cluster/check: "coredns to report ready") and every
# kube-dns client select CoreDNS by.
LABELS = {"k8s-app": "kube-dns"}
IMAGE = "registry.k8s.io/coredns/coredns"  # constants.CoreDNSImage
# constants.DefaultCoreDNSVersion in pkg/machinery at each Talos minor the stacks may run
# (stacks.rules.TALOS_KUBERNETES); tests/plans/test_coredns.py reads them from the pinned modules.
# Talos picks CoreDNS by its own version, for every Kubernetes version it supports.
TALOS_COREDNS = {
    (1, 12): "v1.13.2",  # machinery v1.12.4, constants.go:432
    (1, 13): "v1.14.2",  # machinery v1.13.0, constants.go:394
    (1, 14): "v1.14.7",  # machinery v1.14.1, constants.go:409
}
# Talos's defaults when the config sets no cluster.network (constants.DefaultIPv4ServiceNet, DefaultDNSDomain).
DEFAULT_SERVICE_SUBNETS = ("10.96.0.0/12",)
DEFAULT_DNS_DOMAIN = "cluster.local"
# Talos gives the kubelets, and its CoreDNS Service, the tenth address of the service network
# (ClusterConfig.DNSServiceIPs: NthIPInCIDRSet(serviceCIDRs, 10)).
DNS_SERVICE_OFFSET = 10


def talos_minor(stack: StackConfig) -> tuple[int, int]:
    major, minor = stack.arda.talos_version.removeprefix("v").split(".")[:2]
    return int(major), int(minor)


def version(stack: StackConfig) -> str:
    """The CoreDNS release Talos would deploy at the stack's Talos version."""
    minor = talos_minor(stack)
    if minor not in TALOS_COREDNS:
        known = ", ".join(f"v{a}.{b}" for a, b in sorted(TALOS_COREDNS))
        raise ValueError(f"iluvatar:arda.talosVersion: {stack.arda.talos_version}: no CoreDNS version is known for it (known: {known})")
    return TALOS_COREDNS[minor]


def image(stack: StackConfig) -> str:
    return f"{IMAGE}:{version(stack)}"


def cluster_network(stack: StackConfig) -> dict[str, Any]:
    """`cluster.network` as the shared patches leave it (a later patch's keys win), Iluvatar's own setting none of these."""
    found: dict[str, Any] = {}
    for patch in stack.arda.patches:
        cluster = patch.get("cluster") if "kind" not in patch else None
        network = cluster.get("network") if isinstance(cluster, dict) else None
        if isinstance(network, dict):
            found.update(network)
    return found


def service_subnets(stack: StackConfig) -> tuple[str, ...]:
    return tuple(str(s) for s in cluster_network(stack).get("serviceSubnets") or DEFAULT_SERVICE_SUBNETS)


def dns_domain(stack: StackConfig) -> str:
    return str(cluster_network(stack).get("dnsDomain") or DEFAULT_DNS_DOMAIN)


def dns_service_ips(stack: StackConfig) -> list[str]:
    """The cluster DNS address per family, IPv4 first, as Talos derives it: the tenth of the family's first service subnet."""
    firsts: dict[int, ipaddress.IPv4Network | ipaddress.IPv6Network] = {}
    for subnet in service_subnets(stack):
        network = ipaddress.ip_network(subnet, strict=False)
        firsts.setdefault(network.version, network)
    return [str(firsts[v].network_address + DNS_SERVICE_OFFSET) for v in (4, 6) if v in firsts]


def corefile(domain: str) -> str:
    """Talos's Corefile (k8stemplates.CoreDNSConfigMap), for the cluster's DNS domain."""
    return f"""\
.:53 {{
    errors
    health {{
        lameduck 5s
    }}
    ready
    log . {{
        class error
    }}
    prometheus :9153
    kubernetes {domain} in-addr.arpa ip6.arpa {{
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }}
    forward . /etc/resolv.conf {{
       max_concurrent 1000
    }}
    cache 30 {{
       disable success {domain}
       disable denial {domain}
    }}
    loop
    reload
    loadbalance
}}
"""


def _service(stack: StackConfig) -> dict[str, Any]:
    ips = dns_service_ips(stack)
    families = ["IPv4" if ipaddress.ip_address(ip).version == 4 else "IPv6" for ip in ips]
    ports = [("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"), ("metrics", 9153, "TCP")]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": SERVICE,
            "namespace": NAMESPACE,
            "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9153"},
            "labels": {**LABELS, "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS"},
        },
        "spec": {
            "selector": dict(LABELS),
            "clusterIP": ips[0],
            "clusterIPs": ips,
            "ipFamilies": families,
            "ipFamilyPolicy": "RequireDualStack" if len(ips) > 1 else "SingleStack",
            "ports": [{"name": n, "port": p, "protocol": proto, "targetPort": p} for n, p, proto in ports],
        },
    }


def _deployment(stack: StackConfig) -> dict[str, Any]:
    container = {
        "name": NAME,
        "image": image(stack),
        "imagePullPolicy": "IfNotPresent",
        "resources": {"limits": {"memory": "170Mi"}, "requests": {"cpu": "100m", "memory": "70Mi"}},
        "env": [{"name": "GOMEMLIMIT", "value": "161MiB"}],
        "args": ["-conf", "/etc/coredns/Corefile"],
        "volumeMounts": [{"name": "config-volume", "mountPath": "/etc/coredns", "readOnly": True}],
        "ports": [
            {"name": "dns", "containerPort": 53, "protocol": "UDP"},
            {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
            {"name": "metrics", "containerPort": 9153, "protocol": "TCP"},
        ],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
        },
        "livenessProbe": {
            "httpGet": {"path": "/health", "port": 8080, "scheme": "HTTP"},
            "initialDelaySeconds": 60,
            "timeoutSeconds": 5,
            "successThreshold": 1,
            "failureThreshold": 5,
        },
        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181, "scheme": "HTTP"}},
    }
    anti_affinity = {
        "weight": 100,
        "podAffinityTerm": {
            "labelSelector": {"matchExpressions": [{"key": "k8s-app", "operator": "In", "values": ["kube-dns"]}]},
            "topologyKey": "kubernetes.io/hostname",
        },
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": {**LABELS, "kubernetes.io/name": "CoreDNS"}},
        "spec": {
            "replicas": 2,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "selector": {"matchLabels": dict(LABELS)},
            "template": {
                "metadata": {"labels": dict(LABELS)},
                "spec": {
                    "nodeSelector": {"kubernetes.io/os": "linux"},
                    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [anti_affinity]}},
                    "serviceAccountName": NAME,
                    "priorityClassName": "system-cluster-critical",
                    # Like Talos's: on the control planes too, so the cluster resolves names before any worker joins.
                    "tolerations": [
                        {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"},
                        {"key": "node.cloudprovider.kubernetes.io/uninitialized", "operator": "Exists", "effect": "NoSchedule"},
                    ],
                    "containers": [container],
                    # CoreDNS asks the node's resolvers (network.dns) for names outside the cluster.
                    "dnsPolicy": "Default",
                    "volumes": [{"name": "config-volume", "configMap": {"name": NAME, "items": [{"key": "Corefile", "path": "Corefile"}]}}],
                },
            },
        },
    }


def manifests(stack: StackConfig) -> list[dict[str, Any]]:
    """CoreDNS's objects, as Talos's bootstrap manifests have them, at the image Talos would deploy."""
    role = "system:coredns"
    rbac = {"kubernetes.io/bootstrapping": "rbac-defaults"}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": NAME, "namespace": NAMESPACE}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": role, "labels": dict(rbac)},
            "rules": [
                {"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"], "verbs": ["list", "watch"]},
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": role, "labels": dict(rbac), "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}],
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": NAME, "namespace": NAMESPACE},
            "data": {"Corefile": corefile(dns_domain(stack))},
        },
        _deployment(stack),
        _service(stack),
        network_policy(stack),
    ]


def network_policy(stack: StackConfig) -> dict[str, Any]:
    """The cluster's DNS admits DNS from everyone (every pod, the host-network ones by the machines' addresses) and its
    metrics from Prometheus alone (kube-prometheus's ServiceMonitor for CoreDNS scrapes `metrics`, 9153); its health
    and readiness listeners (8080, 8181) only the kubelet reaches, from the pod's own machine (plans.netpol)."""
    selector = {"k8s-app": "kube-dns"}
    dns = netpol.allow(NAME, NAMESPACE, selector, [netpol.port(53, "UDP"), netpol.port(53)], None)
    if stack.monitoring is not None:
        dns["spec"]["ingress"].append({"from": [netpol.pods("prometheus", "monitoring")], "ports": [netpol.port(9153)]})
    return dns


def talos_runs_coredns(documents: list[dict[str, Any]]) -> bool:
    """Whether a control plane's patch documents, merged in order, leave Talos's own CoreDNS on (its default)."""
    disabled = False
    for doc in documents:
        if not isinstance(doc, dict) or "kind" in doc:
            continue
        cluster = doc.get("cluster")
        core_dns = cluster.get("coreDNS") if isinstance(cluster, dict) else None
        if isinstance(core_dns, dict) and "disabled" in core_dns:
            disabled = core_dns["disabled"] is True
    return not disabled
