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


def known_categories(extra: Iterable[str] = ()) -> tuple[str, ...]:
    """The categories a stack may use: the defaults, then the stack's own (`extra`), each once.

    The one list both the app registry's rule and the GitOps layer read, so an app's category
    and the ApplicationSets (and namespaces) always agree.
    """
    return tuple(dict.fromkeys([*DEFAULT_CATEGORIES, *extra]))
