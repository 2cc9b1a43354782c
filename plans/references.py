"""What a Kubernetes manifest names that must exist before it works: its pods' service account,
the ConfigMaps, Secrets and claims they mount or read, a binding's role and subjects.

A Deployment created before its ServiceAccount is admitted, but its ReplicaSet cannot create a pod
until the account exists (the controller retries with a growing back-off), and a pod whose
ConfigMap is missing sits in ContainerCreating. The components order each object after the ones
it names here, so a first `pulumi up` writes them in an order the API server and kubelet accept
at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

Ref = tuple[str, str, str]
"""(kind, namespace, name); a cluster-scoped object's namespace is ""."""

WORKLOADS = frozenset({"Pod", "Deployment", "DaemonSet", "StatefulSet", "ReplicaSet", "Job", "CronJob"})
CLUSTER_SCOPED = frozenset({"Namespace", "ClusterRole", "ClusterRoleBinding", "StorageClass", "PersistentVolume"})


def identity(manifest: dict[str, Any]) -> Ref:
    kind = str(manifest["kind"])
    namespace = "" if kind in CLUSTER_SCOPED else str(manifest["metadata"].get("namespace", "default"))
    return kind, namespace, str(manifest["metadata"]["name"])


def pod_spec(manifest: dict[str, Any]) -> dict[str, Any] | None:
    """The pod template of a workload (a CronJob's is two templates deep)."""
    kind = manifest.get("kind")
    if kind not in WORKLOADS:
        return None
    spec: dict[str, Any] = manifest.get("spec", {})
    if kind == "Pod":
        return spec
    if kind == "CronJob":
        spec = spec.get("jobTemplate", {}).get("spec", {})
    template: dict[str, Any] = spec.get("template", {})
    inner: dict[str, Any] = template.get("spec", {})
    return inner


def _pod_references(pod: dict[str, Any], namespace: str) -> Iterator[Ref]:
    account = pod.get("serviceAccountName")
    if account and account != "default":
        yield "ServiceAccount", namespace, account
    for volume in pod.get("volumes", []):
        if "configMap" in volume and not volume["configMap"].get("optional"):
            yield "ConfigMap", namespace, volume["configMap"]["name"]
        if "secret" in volume and not volume["secret"].get("optional"):
            yield "Secret", namespace, volume["secret"]["secretName"]
        if "persistentVolumeClaim" in volume:
            yield "PersistentVolumeClaim", namespace, volume["persistentVolumeClaim"]["claimName"]
        for source in volume.get("projected", {}).get("sources", []):
            for kind, key in (("configMap", "ConfigMap"), ("secret", "Secret")):
                if kind in source and not source[kind].get("optional"):
                    yield key, namespace, source[kind]["name"]
    for container in [*pod.get("initContainers", []), *pod.get("containers", [])]:
        for source in container.get("envFrom", []):
            for kind, key in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                if kind in source and not source[kind].get("optional"):
                    yield key, namespace, source[kind]["name"]
        for env in container.get("env", []):
            value_from = env.get("valueFrom", {})
            for kind, key in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
                if kind in value_from and not value_from[kind].get("optional"):
                    yield key, namespace, value_from[kind]["name"]
    for secret in pod.get("imagePullSecrets", []):
        yield "Secret", namespace, secret["name"]


def references(manifest: dict[str, Any]) -> list[Ref]:
    """Every object `manifest` names that must exist for it to work, sorted, without duplicates.

    Fields whose value is not known yet (a Pulumi output in a rendered manifest) are skipped by the
    caller's choice of what to pass: this reads plain data only.
    """
    kind, namespace, _ = identity(manifest)
    found: set[Ref] = set()
    if kind not in CLUSTER_SCOPED:
        found.add(("Namespace", "", namespace))
    pod = pod_spec(manifest)
    if pod is not None:
        found.update(_pod_references(pod, namespace))
    if kind in ("RoleBinding", "ClusterRoleBinding"):
        role = manifest["roleRef"]
        found.add((role["kind"], "" if role["kind"] == "ClusterRole" else namespace, role["name"]))
        for subject in manifest.get("subjects", []):
            if subject.get("kind") == "ServiceAccount":
                found.add(("ServiceAccount", subject.get("namespace", namespace), subject["name"]))
    return sorted(found)
