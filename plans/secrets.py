"""App secrets plan: External Secrets Operator on Arda, a store Pulumi seeds, an ExternalSecret per app in Git.

Where a secret lives, end to end:

1. **The stack.** A secret the user sets is in `iluvatar:appSecrets`, encrypted by Pulumi
   (`pulumi config set --secret --path 'iluvatar:appSecrets.<app>.<name>'`); one Pulumi generates is a
   protected random password in Pulumi's state, encrypted the same way.
2. **The store.** Pulumi writes each app's values into one Secret `<app>` of the namespace
   `iluvatar-secrets`, which only the operator reads: no Git app may deploy there (the `arda` project's
   destinations are the category namespaces), and each category's ServiceAccount may `get` exactly its
   own apps' Secrets there (a Role with resourceNames).
3. **The app.** Each category namespace has a SecretStore `iluvatar` (ESO's Kubernetes provider, that
   ServiceAccount's token); the app's folder in Git holds an ExternalSecret (`iluvatar scaffold` writes
   it) that names the store and the app, never a value; ESO writes the Secret `<app>-secrets` into the
   app's namespace.

So no value is in Git, in a rendered file, in an Argo CD Application or its manifest cache (Argo CD
renders the ExternalSecret, which holds none), or in a ConfigMap. Argo CD's own credentials stay
written by Pulumi directly (components.gitops): ESO is installed before Argo CD, never by it.

Plain functions returning manifests as dicts; no Pulumi here.
"""

from __future__ import annotations

from typing import Any

from plans import gitops
from stacks import pins
from stacks.model import App, StackConfig

CHART = "external-secrets"
VERSION = pins.CHARTS["external-secrets"]
REPOSITORY = "https://charts.external-secrets.io"
# The chart's default image tag is its appVersion, and the tag's Chart.yaml names the release before
# (v1.3.1): the image is set, so what runs is the release installed.
IMAGE_TAG = f"v{VERSION}"
NAMESPACE = "external-secrets"
STORE_NAMESPACE = "iluvatar-secrets"
STORE = "iluvatar"  # the SecretStore in each category namespace
READER = "iluvatar-secrets"  # the ServiceAccount in each category namespace the store authenticates as
API = "external-secrets.io/v1"
REFRESH = "1h"
STORE_LABEL = "iluvatar.dev/app"


def enabled(stack: StackConfig) -> bool:
    """ESO runs when any app declares a secret."""
    return any(app.secrets for app in stack.apps)


def apps_with_secrets(stack: StackConfig) -> list[App]:
    return [app for app in stack.apps if app.secrets]


def categories(stack: StackConfig) -> list[str]:
    return list(dict.fromkeys(app.category for app in apps_with_secrets(stack)))


def target_secret(app: App) -> str:
    """The Secret ESO writes into the app's namespace."""
    return f"{app.name}-secrets"


def helm_values() -> dict[str, Any]:
    """The external-secrets chart's values: its CRDs, the released image, no v1alpha1/v1beta1 serving, no bitwarden."""
    image = {"tag": IMAGE_TAG}
    return {
        "installCRDs": True,
        # The chart's release recipe (tools.upstream.charts) writes the CRDs as these two render them.
        "crds": {"conversion": {"enabled": False}, "unsafeServeV1Beta1": False},
        "image": dict(image),
        "webhook": {"image": dict(image)},
        "certController": {"image": dict(image)},
        # Its subchart; its condition is this key (the chart refuses to render without it declared).
        "bitwarden-sdk-server": {"enabled": False},
        # Only namespaced SecretStores are used; ClusterSecretStores would let any namespace read the store.
        "processClusterStore": False,
        "processClusterExternalSecret": False,
        "processPushSecret": False,
        "processClusterPushSecret": False,
    }


def namespace(name: str, restricted: bool = True) -> dict[str, Any]:
    labels = {**gitops.MANAGED_BY}
    if restricted:
        labels |= {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn", "audit")}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels, "annotations": dict(gitops.PULUMI_OWNED)}}


def namespaces() -> list[dict[str, Any]]:
    """ESO's own namespace and the store's (nothing runs in the store's: restricted)."""
    return [namespace(NAMESPACE), namespace(STORE_NAMESPACE)]


def store_secret_shape(app: App) -> dict[str, Any]:
    """The store's Secret for one app, without its values (components add them as a Pulumi secret)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": app.name, "namespace": STORE_NAMESPACE, "labels": {**gitops.MANAGED_BY, STORE_LABEL: app.name}},
        "type": "Opaque",
    }


def sources(stack: StackConfig, app: App) -> dict[str, tuple[str, str]]:
    """Where each of the app's secrets comes from: name -> (owning app, `generate` or `user`)."""
    by_name = {a.name: {s.name: s for s in a.secrets} for a in stack.apps}
    out: dict[str, tuple[str, str]] = {}
    for secret in app.secrets:
        owner = secret.from_app or app.name
        origin = by_name[owner][secret.name]
        out[secret.name] = (owner, "generate" if origin.generate is not None else "user")
    return out


def reader_objects(stack: StackConfig, category: str) -> list[dict[str, Any]]:
    """A category's reader: its ServiceAccount, a Role in the store's namespace that gets only its apps' Secrets, the binding."""
    names = sorted(app.name for app in apps_with_secrets(stack) if app.category == category)
    role = f"category-{category}"
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": READER, "namespace": category, "labels": dict(gitops.MANAGED_BY)},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": role, "namespace": STORE_NAMESPACE, "labels": dict(gitops.MANAGED_BY)},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": names, "verbs": ["get"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": role, "namespace": STORE_NAMESPACE, "labels": dict(gitops.MANAGED_BY)},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": READER, "namespace": category}],
        },
    ]


def secret_store(category: str) -> dict[str, Any]:
    """The category's SecretStore: ESO's Kubernetes provider over the store namespace, as the category's reader."""
    return {
        "apiVersion": API,
        "kind": "SecretStore",
        "metadata": {"name": STORE, "namespace": category, "labels": dict(gitops.MANAGED_BY), "annotations": dict(gitops.PULUMI_OWNED)},
        "spec": {
            "provider": {
                "kubernetes": {
                    "remoteNamespace": STORE_NAMESPACE,
                    "server": {"caProvider": {"type": "ConfigMap", "name": "kube-root-ca.crt", "key": "ca.crt"}},
                    "auth": {"serviceAccount": {"name": READER}},
                }
            }
        },
    }


def external_secret(app: App) -> dict[str, Any]:
    """What `iluvatar scaffold` writes into the app's folder: every entry of its store Secret, as `<app>-secrets`."""
    return {
        "apiVersion": API,
        "kind": "ExternalSecret",
        "metadata": {"name": app.name},
        "spec": {
            "refreshInterval": REFRESH,
            "secretStoreRef": {"kind": "SecretStore", "name": STORE},
            "target": {"name": target_secret(app), "creationPolicy": "Owner"},
            "dataFrom": [{"extract": {"key": app.name}}],
        },
    }
