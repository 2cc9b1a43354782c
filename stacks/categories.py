"""App categories: how apps are grouped in the GitOps repository, and the namespace each group runs in.

One category is one folder of the GitOps repo (`<appsPath>/<category>/<app>`), one Argo CD
ApplicationSet and one Kubernetes namespace of the same name (the seed homelab's convention).
The defaults are the seed homelab's categories; a stack may add its own.
"""

from __future__ import annotations

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
