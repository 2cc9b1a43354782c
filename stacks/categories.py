"""App categories: how apps are grouped in the GitOps repository, and the namespace each group runs in.

One category is one folder of the GitOps repo (`<appsPath>/<category>/<app>`), one Argo CD
ApplicationSet and one Kubernetes namespace of the same name (the seed homelab's convention).
The defaults are the seed homelab's categories; a stack may add its own.
"""

from __future__ import annotations

from collections.abc import Iterable

DEFAULT_CATEGORIES: tuple[str, ...] = (
    "ai",
    "banking",
    "home-automation",
    "media",
    "monitoring",
    "networking",
    "security",
    "selfhosted",
    "system",
)


# The namespaces of Arda that are not a category's: Kubernetes' own, and those Iluvatar's layers run their controllers in
# (Argo CD, the edge's cert-manager and Envoy Gateway, Cilium and CoreDNS in kube-system, External Secrets and its store,
# VolSync, the etcd backup and the drills, monitoring and the logs, the gateways' `networking`, Rook-Ceph, local-path,
# the NFS CSI driver, the Tailscale operator). tests/stacks/test_apps.py keeps it in step with what the homelab, rk1
# and a Tailscale stack render on Arda.
ARDA_NAMESPACES: tuple[str, ...] = (
    "default",
    "kube-system",
    "kube-public",
    "kube-node-lease",
    "argocd",
    "cert-manager",
    "envoy-gateway-system",
    "external-secrets",
    "iluvatar-secrets",
    "volsync-system",
    "etcd-backup",
    "backup-drill",
    "monitoring",
    "networking",
    "rook-ceph",
    "local-path-storage",
    "csi-nfs",
    "tailscale",
)


def known_categories(extra: Iterable[str] = ()) -> tuple[str, ...]:
    """The categories a stack may use: the defaults, then the stack's own (`extra`), each once.

    The one list both the app registry's rule and the GitOps layer read, so an app's category
    and the ApplicationSets (and namespaces) always agree.
    """
    return tuple(dict.fromkeys([*DEFAULT_CATEGORIES, *extra]))
