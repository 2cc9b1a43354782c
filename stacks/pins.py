"""This project's own pins, in one place: the releases Iluvatar installs and is tested with (issue #42, item 5).

Every Python place that names one of these reads it from here (stacks.releases, the stack model's chart defaults,
plans.certificates, plans.gateways, plans.storage, plans.secrets, plans.backup, plans.monitoring, plans.identity,
plans.gitops, plans.resolver, plans.renovate, plans.k3s, plans.netboot, plans.remote_access, stacks.chart_values,
tools.talos_check), so a bump
is one edit here.
The files a Python import cannot reach (the Go modules' go.mod, tools/upstream/modules.sum, the shipped stacks, the
kept chart schemas) are read by tests/stacks/test_pins.py, which names each one that still says another version: a
bump here fails until they follow, and never passes half-done.

`iluvatar versions STACK` prints, for each part, what the stack runs beside what is pinned here.
"""

from __future__ import annotations

# Talos: what `iluvatar init` writes and the shipped stacks run; the Talos check's node build (tools/talos-check,
# node.go.mod) is this release's machinery.
TALOS = "v1.14.1"
# Talos machinery the provider (siderolabs/terraform-provider-talos v0.11.0) is built on, and with it the upgrader and
# the stand-ins (upgrader/go.mod, tools/talos-api, tools/talos-check): the client side, not what the machines run.
TALOS_CLIENT_MACHINERY = "v1.13.0"
# Kubernetes on Arda: the shipped stacks', and the tests' control plane (tools/kube-control-plane: k8s.io/kubernetes).
KUBERNETES = "v1.35.1"
# The Ainur's k3s: the shipped stacks'; its Kubernetes minor is the tests' control plane's.
K3S = "v1.35.8+k3s1"

# Helm charts Iluvatar installs, by chart, at the version it installs (and validates against, tools/upstream).
CHARTS: dict[str, str] = {
    "cilium": "1.18.4",  # arda.cilium.version's default
    "argo-cd": "10.8.0",  # gitops.argocd.version's default
    "cert-manager": "v1.19.2",
    "trust-manager": "v0.25.0",
    "gateway-helm": "v1.9.0",  # Envoy Gateway: the chart, and the release whose CRDs and translator the tests use
    "rook-ceph": "v1.20.4",  # and rook-ceph-cluster, and Rook's own image
    "local-path-provisioner": "v0.0.30",
    "external-secrets": "1.3.2",  # and its image, v1.3.2 (plans.secrets)
    "longhorn": "1.10.1",
    "csi-driver-nfs": "4.12.1",
    "volsync": "0.16.0",
    "headlamp": "v0.44.0",
}

# Manifests Argo CD takes from a Git tag (no chart), by repository.
MANIFESTS: dict[str, str] = {
    "external-snapshotter": "v8.7.0",  # the CSI snapshot controller and its CRDs (plans.backup)
    "kube-prometheus": "v0.18.0",  # plans.monitoring
    "prometheus-operator": "v0.93.0",  # its CRDs (plans/crds) and operator
}

# Programs whose release Iluvatar names itself (an image tag it sets, a package it installs).
APPS: dict[str, str] = {
    "argocd": "v3.5.2",  # what argo-cd chart 10.8.0 ships (quay.io/argoproj/argocd)
    "dex": "v2.45.1",  # ghcr.io/dexidp/dex
    "coredns": "v1.13.1",  # the LAN resolver's (registry.k8s.io/coredns/coredns)
    "renovate": "44.121.2",  # the npm package whose validator checks the scaffold's renovate.json
    "age": "v1.3.1",  # the restore drill builds age's command from its module (plans.drill)
    "victoria-logs": "v1.52.1",  # the log store (plans.logs)
    "otel-collector": "0.165.0",  # the log collector, opentelemetry-collector-contrib
    "vmalert": "v1.151.0",  # the log alerts' evaluator
    "victoriametrics-logs-datasource": "0.30.1",  # Grafana's logs plugin
    "tailscale": "1.102.3",  # the operator's chart and images, the subnet router (plans.remote_access; tools/tailscale)
    "headscale": "0.27.1",  # ghcr.io/juanfont/headscale (plans.remote_access)
    "ipxe": "1.21.1+git20250501.dad20602+dfsg-1",  # Debian's ipxe package the netboot serves (plans.netboot.cache)
}

# Images Iluvatar runs at a tag it pins itself (never a chart's default, never latest).
IMAGES: dict[str, str] = {
    "busybox": "docker.io/library/busybox:1.37.0",  # local-path-provisioner's helper
    "talos-backup": "ghcr.io/siderolabs/talos-backup:v0.1.0-beta.3",
    "node-exporter": "quay.io/prometheus/node-exporter:v1.11.1",
    "kube-vip": "ghcr.io/kube-vip/kube-vip:v0.9.2",
    "dnsmasq": "quay.io/poseidon/dnsmasq:v0.5.0-51-gc8a9de4",
    "nginx": "docker.io/library/nginx:1.28.0-alpine",
    "curl": "docker.io/curlimages/curl:8.11.1",
    "debian": "docker.io/library/debian:trixie-20250908-slim",
    "debian-bookworm": "docker.io/library/debian:bookworm-20250908-slim",  # the Pis' NFS server pod
    # The restore drill's (plans.drill).
    "restic": "docker.io/restic/restic:0.18.1",
    "curl-drill": "docker.io/curlimages/curl:8.17.0",
    "golang": "docker.io/library/golang:1.26.8-alpine",
    "etcd": "registry.k8s.io/etcd:3.6.5-0",
}

# Each chart's Go module in tools/upstream/modules.sum, where its chart is one (argo-cd's is not: argo-helm at a commit).
CHART_MODULES: dict[str, str] = {
    "cilium": "github.com/cilium/cilium",
    "cert-manager": "github.com/cert-manager/cert-manager",
    "trust-manager": "github.com/cert-manager/trust-manager",
    "gateway-helm": "github.com/envoyproxy/gateway",
    "rook-ceph": "github.com/rook/rook",
    "local-path-provisioner": "github.com/rancher/local-path-provisioner",
    "external-secrets": "github.com/external-secrets/external-secrets",
    "volsync": "github.com/backube/volsync",
    "headlamp": "github.com/kubernetes-sigs/headlamp",
}
# Each Git manifest source's Go module in tools/upstream/modules.sum.
MANIFEST_MODULES: dict[str, str] = {
    "external-snapshotter": "github.com/kubernetes-csi/external-snapshotter/v8",
    "kube-prometheus": "github.com/prometheus-operator/kube-prometheus",
    "prometheus-operator": "github.com/prometheus-operator/prometheus-operator",
}


def go_version(version: str) -> str:
    """A chart version as its Go module tags it (`1.18.4` is `v1.18.4`)."""
    return version if version.startswith("v") else f"v{version}"
