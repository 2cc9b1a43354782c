"""How Pulumi reaches the Ainur's API for years: a ServiceAccount token that does not expire, made on the cluster itself.

k3s writes an admin kubeconfig whose client certificate lasts a year and is renewed only when k3s
restarts within 90 days of its end; a copy read once into Pulumi's state would stop working after
a year, and every `pulumi up` with it. Instead the join of the first valar is followed by a step
that, on that Pi, with k3s's own admin access, makes a ServiceAccount bound to cluster-admin and
a token Secret for it (Kubernetes fills in the token and the cluster's CA), and prints both as
JSON; the program builds the kubeconfig from them (`kubeconfig`). The step is safe to run again (it
applies the same objects and prints the same token), and the token is revoked by deleting its
Secret (docs/bring-up.md#credentials).

Arda's kubeconfig is Talos's: the Talos provider renews it 30 days before its certificate ends.
Both clusters' Kubernetes providers carry a `clusterIdentifier`, so a renewed kubeconfig updates
the provider and never replaces it (which would replace every object it manages).
"""

from __future__ import annotations

import base64
import json
from typing import Any

import yaml

from plans.k3s import KUBECTL

NAME = "iluvatar-pulumi"
NAMESPACE = "kube-system"
TOKEN_SECRET = f"{NAME}-token"
LABELS = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/part-of": "iluvatar"}
# How long the step waits for the token controller to fill the Secret in.
TOKEN_WAIT_SECONDS = 120


def manifests() -> list[dict[str, Any]]:
    """The ServiceAccount, its cluster-admin binding, and the token Secret Kubernetes fills in."""
    meta = {"name": NAME, "namespace": NAMESPACE, "labels": LABELS}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": NAME, "labels": LABELS},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}],
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/service-account-token",
            "metadata": {**meta, "name": TOKEN_SECRET, "annotations": {"kubernetes.io/service-account.name": NAME}},
        },
    ]


def k3s_script(kubectl: str = f"sudo {KUBECTL}", wait_seconds: int = TOKEN_WAIT_SECONDS) -> str:
    """Run over SSH on a k3s server: apply the manifests, wait for the token, print {"ca", "token"} (base64) as JSON.

    Only JSON reaches stdout (the step keeps it secret and never logs it); k3s's own messages go to stderr.
    """
    objects = yaml.safe_dump_all(manifests(), sort_keys=False)
    secret = f"-n {NAMESPACE} get secret {TOKEN_SECRET}"
    return f"""set -eu
{kubectl} apply -f - >&2 <<'MANIFESTS'
{objects}MANIFESTS
deadline=$(( $(date +%s) + {wait_seconds} ))
until token=$({kubectl} {secret} -o 'jsonpath={{.data.token}}' 2>/dev/null) && [ -n "$token" ]; do
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "iluvatar: the token of {NAMESPACE}/{TOKEN_SECRET} was not filled in within {wait_seconds} s; look with: sudo k3s kubectl {secret} -o yaml" >&2
    exit 1
  fi
  sleep 2
done
ca=$({kubectl} {secret} -o 'jsonpath={{.data.ca\\.crt}}')
printf '{{"ca": "%s", "token": "%s"}}\\n' "$ca" "$token"
"""


def kubeconfig(printed: str, server: str, cluster: str) -> str:
    """The kubeconfig Pulumi uses, from what the step printed (base64 CA and token, as the Secret holds them)."""
    try:
        found = json.loads(printed)
        ca, token = str(found["ca"]), str(found["token"])
    except (ValueError, KeyError, TypeError):
        raise ValueError(
            f"the {cluster} credentials step printed no token; run `pulumi up` again, or look with the command its error names"
        ) from None
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {"server": server, "certificate-authority-data": ca}}],
        "users": [{"name": NAME, "user": {"token": base64.b64decode(token).decode()}}],
        "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": NAME}}],
        "current-context": cluster,
    }
    return yaml.safe_dump(doc, sort_keys=False)
