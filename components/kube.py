"""Kubernetes objects from plain manifests: each becomes its typed pulumi-kubernetes resource.

The plans render manifests as dicts (so tests validate them with kubernetes-validate); this
maps each to the SDK class for its kind, so previews show real typed diffs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from plans import references

KINDS: dict[tuple[str, str], type[pulumi.CustomResource]] = {
    ("v1", "Namespace"): k8s.core.v1.Namespace,
    ("v1", "ConfigMap"): k8s.core.v1.ConfigMap,
    ("v1", "Secret"): k8s.core.v1.Secret,
    ("v1", "Service"): k8s.core.v1.Service,
    ("v1", "PersistentVolume"): k8s.core.v1.PersistentVolume,
    ("v1", "PersistentVolumeClaim"): k8s.core.v1.PersistentVolumeClaim,
    ("v1", "ServiceAccount"): k8s.core.v1.ServiceAccount,
    ("apps/v1", "Deployment"): k8s.apps.v1.Deployment,
    ("apps/v1", "DaemonSet"): k8s.apps.v1.DaemonSet,
    ("apps/v1", "StatefulSet"): k8s.apps.v1.StatefulSet,
    ("batch/v1", "Job"): k8s.batch.v1.Job,
    ("batch/v1", "CronJob"): k8s.batch.v1.CronJob,
    ("storage.k8s.io/v1", "StorageClass"): k8s.storage.v1.StorageClass,
    ("rbac.authorization.k8s.io/v1", "Role"): k8s.rbac.v1.Role,
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): k8s.rbac.v1.RoleBinding,
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): k8s.rbac.v1.ClusterRole,
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): k8s.rbac.v1.ClusterRoleBinding,
    ("discovery.k8s.io/v1", "EndpointSlice"): k8s.discovery.v1.EndpointSlice,
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): k8s.apiextensions.v1.CustomResourceDefinition,
    ("networking.k8s.io/v1", "NetworkPolicy"): k8s.networking.v1.NetworkPolicy,
    ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy"): k8s.admissionregistration.v1.ValidatingAdmissionPolicy,
    ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicyBinding"): k8s.admissionregistration.v1.ValidatingAdmissionPolicyBinding,
}


def cluster_provider(
    name: str,
    kubeconfig: pulumi.Input[str],
    cluster: str,
    parent: pulumi.Resource,
    after: Sequence[pulumi.Resource] = (),
    mutable_config_maps: bool = False,
) -> k8s.Provider:
    """A Kubernetes provider for one cluster of the homelab, as every layer needs it.

    `clusterIdentifier` is the cluster's name: a renewed kubeconfig (Talos renews Arda's 30 days
    before its certificate ends) then updates the provider instead of replacing it, and with it
    every object it manages (pulumi-kubernetes replaces a provider whose kubeconfig is unknown at
    preview unless the identifier says the cluster is the same). It adopts an object already in
    the cluster (`upsertExistingObjects`): an interrupted `pulumi up` created it and the state never
    knew, and the next run applies over it with server-side apply instead of failing.

    `mutable_config_maps`: a change of a ConfigMap's data updates it in place (`enableConfigMapMutable`) rather than
    replacing it. A replacement of a named ConfigMap deletes it first and creates it again once the delete is done
    (pulumi-kubernetes 4.32.0 provider/pkg/provider/diff.go:32-33, provider.go:1645-1658), and in between the kubelet
    cannot set up a volume of it: a pod started then (a failover's replacement, a DaemonSet's pod on a rebooted node)
    waits, and a running one is left with the files of before (kubernetes v1.35.1 pkg/volume/configmap/configmap.go:
    189-195, a missing ConfigMap that is not optional); an `up` stopped between the two leaves no ConfigMap at all.
    Updated in place, the kubelet swaps the running pod's files whole, by one rename of the volume's `..data` link
    (pkg/volume/util/atomic_writer.go:213-233). An `immutable` ConfigMap is still replaced (diff.go:32).
    """
    return k8s.Provider(
        name,
        kubeconfig=kubeconfig,
        cluster_identifier=cluster,
        upsert_existing_objects=True,
        enable_config_map_mutable=True if mutable_config_maps else None,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=list(after)),
    )


def resource_name(prefix: str, manifest: dict[str, Any]) -> str:
    return f"{prefix}-{manifest['kind'].lower()}-{manifest['metadata']['name']}"


def create(prefix: str, manifest: dict[str, Any], opts: pulumi.ResourceOptions) -> pulumi.CustomResource:
    cls = KINDS[(manifest["apiVersion"], manifest["kind"])]
    # Top-level fields become the SDK's keyword arguments, which are snake_case (roleRef -> role_ref).
    fields = {re.sub(r"(?<!^)(?=[A-Z])", "_", k).lower(): v for k, v in manifest.items() if k not in ("apiVersion", "kind")}
    return cls(resource_name(prefix, manifest), **fields, opts=opts)


def create_all(
    prefix: str,
    manifests: Sequence[dict[str, Any]],
    opts: pulumi.ResourceOptions,
    existing: Mapping[references.Ref, pulumi.Resource] | None = None,
) -> dict[str, pulumi.CustomResource]:
    """Each manifest as its resource, after the objects it names (`plans.references`).

    `existing` holds objects created elsewhere that these may name (a Secret built from outputs).
    Every object also waits for `opts.depends_on`. A manifest may name an object that is not in the
    program (the cluster's own `kube-root-ca.crt`, a chart's account): nothing to wait for then.
    """
    made: dict[references.Ref, pulumi.Resource] = dict(existing or {})
    out: dict[str, pulumi.CustomResource] = {}
    # Named objects first, then what names them: a workload listed before its account still waits for it.
    ordered = sorted(manifests, key=lambda m: references.pod_spec(m) is not None or m["kind"].endswith("Binding"))
    for manifest in ordered:
        deps = [made[ref] for ref in references.references(manifest) if ref in made]
        resource = create(prefix, manifest, pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=deps)))
        made[references.identity(manifest)] = resource
        out[resource_name(prefix, manifest)] = resource
    return out
