"""What each account of a cluster may do cluster-wide, asked of the real API server's authorizers.

Every question is a SubjectAccessReview (authorization.k8s.io/v1) to the test control plane's kube-apiserver, which
answers with its own chain (`--authorization-mode=Node,RBAC`, tools.kube_cluster): the RBAC authorizer for a
ServiceAccount, the Node authorizer and then RBAC for a node's identity (`system:node:<name>` in `system:nodes`).
"""

from __future__ import annotations

from dataclasses import dataclass

from tools.kube_cluster import KubeClient

SAR_PATH = "/apis/authorization.k8s.io/v1/subjectaccessreviews"


@dataclass(frozen=True)
class Power:
    """An action on a resource in every namespace (a ClusterRole's reach: namespace "" in the review)."""

    verb: str
    resource: str
    group: str = ""
    subresource: str = ""


# The cluster-wide powers that make an account worth stealing: any of them reaches every Secret, directly or by a pod
# or token of another account.
POWERS: dict[str, Power] = {
    "list secrets": Power("list", "secrets"),
    "get secrets": Power("get", "secrets"),
    "create pods": Power("create", "pods"),
    "create tokens": Power("create", "serviceaccounts", subresource="token"),
    "bind cluster roles": Power("bind", "clusterroles", group="rbac.authorization.k8s.io"),
    "escalate cluster roles": Power("escalate", "clusterroles", group="rbac.authorization.k8s.io"),
}


def allowed(client: KubeClient, user: str, groups: list[str], power: Power, *, namespace: str = "", name: str = "") -> bool:
    """The API server's answer to `user` (in `groups`) doing `power` (in `namespace`, on `name`; "" for all)."""
    attributes = {"verb": power.verb, "resource": power.resource, "group": power.group, "namespace": namespace, "name": name}
    if power.subresource:
        attributes["subresource"] = power.subresource
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {"user": user, "groups": groups, "resourceAttributes": attributes},
    }
    answer = client.checked("POST", SAR_PATH, review, what=f"SubjectAccessReview of {user} {power.verb} {power.resource}")
    return bool(answer["status"].get("allowed"))


def service_account_user(namespace: str, name: str) -> tuple[str, list[str]]:
    """The user and groups a ServiceAccount's token authenticates as (k8s.io/apiserver serviceaccount/util.go)."""
    return f"system:serviceaccount:{namespace}:{name}", ["system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"]


def service_accounts(client: KubeClient) -> list[str]:
    """Every ServiceAccount of the cluster, `namespace/name`."""
    return sorted(f"{sa['metadata']['namespace']}/{sa['metadata']['name']}" for sa in client.list("v1", "ServiceAccount"))


def pod_accounts(client: KubeClient) -> dict[str, list[str]]:
    """Each Node -> the ServiceAccounts of the pods bound to it, as the Node authorizer's graph links them: a pod's
    `spec.serviceAccountName` when set (kubernetes v1.35.1 plugin/pkg/auth/authorizer/node/graph.go:384; a static pod's
    mirror has none, the ServiceAccount admission plugin leaving mirror pods alone)."""
    found: dict[str, set[str]] = {n["metadata"]["name"]: set() for n in client.list("v1", "Node")}
    for pod in client.list("v1", "Pod"):
        node, account = pod["spec"].get("nodeName"), pod["spec"].get("serviceAccountName")
        if node and account:
            found.setdefault(node, set()).add(f"{pod['metadata']['namespace']}/{account}")
    return {node: sorted(accounts) for node, accounts in sorted(found.items())}


def account_powers(client: KubeClient) -> dict[str, list[str]]:
    """Each ServiceAccount holding any of POWERS cluster-wide -> the powers it holds (the others left out)."""
    found: dict[str, list[str]] = {}
    for account in service_accounts(client):
        namespace, name = account.split("/")
        user, groups = service_account_user(namespace, name)
        held = [label for label, power in POWERS.items() if allowed(client, user, groups, power)]
        if held:
            found[account] = held
    return found


def node_tokens(client: KubeClient) -> dict[str, list[str]]:
    """Each Node -> the ServiceAccounts whose tokens its kubelet's identity may request (the Node authorizer allows a
    node the accounts of the pods bound to it: kubernetes v1.35.1 plugin/pkg/auth/authorizer/node/node_authorizer.go:261-282,
    authorizeCreateToken)."""
    accounts = service_accounts(client)
    token = POWERS["create tokens"]
    found: dict[str, list[str]] = {}
    for node in sorted(n["metadata"]["name"] for n in client.list("v1", "Node")):
        user, groups = f"system:node:{node}", ["system:nodes", "system:authenticated"]
        found[node] = [a for a in accounts if allowed(client, user, groups, token, namespace=a.split("/")[0], name=a.split("/")[1])]
    return found
