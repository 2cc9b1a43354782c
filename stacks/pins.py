"""This project's own pins, in one place: the releases Iluvatar installs and is tested with (issue #42, item 5).

Every Python place that names one of these reads it from here (stacks.releases, the stack model's chart defaults,
plans.certificates, plans.gateways, plans.storage, stacks.chart_values, tools.talos_check), so a bump is one edit here.
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
}

# Each chart's Go module in tools/upstream/modules.sum, where its chart is one (argo-cd's is not: argo-helm at a commit).
CHART_MODULES: dict[str, str] = {
    "cilium": "github.com/cilium/cilium",
    "cert-manager": "github.com/cert-manager/cert-manager",
    "trust-manager": "github.com/cert-manager/trust-manager",
    "gateway-helm": "github.com/envoyproxy/gateway",
    "rook-ceph": "github.com/rook/rook",
    "local-path-provisioner": "github.com/rancher/local-path-provisioner",
}


def go_version(version: str) -> str:
    """A chart version as its Go module tags it (`1.18.4` is `v1.18.4`)."""
    return version if version.startswith("v") else f"v{version}"
