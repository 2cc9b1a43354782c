"""Kubernetes objects from plain manifests: each becomes its typed pulumi-kubernetes resource.

The plans render manifests as dicts (so tests validate them with kubernetes-validate); this
maps each to the SDK class for its kind, so previews show real typed diffs.
"""

from __future__ import annotations

import re
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

KINDS: dict[tuple[str, str], type[pulumi.CustomResource]] = {
    ("v1", "Namespace"): k8s.core.v1.Namespace,
    ("v1", "ConfigMap"): k8s.core.v1.ConfigMap,
    ("v1", "Secret"): k8s.core.v1.Secret,
    ("v1", "Service"): k8s.core.v1.Service,
    ("v1", "PersistentVolumeClaim"): k8s.core.v1.PersistentVolumeClaim,
    ("v1", "ServiceAccount"): k8s.core.v1.ServiceAccount,
    ("apps/v1", "Deployment"): k8s.apps.v1.Deployment,
    ("apps/v1", "DaemonSet"): k8s.apps.v1.DaemonSet,
    ("batch/v1", "Job"): k8s.batch.v1.Job,
    ("storage.k8s.io/v1", "StorageClass"): k8s.storage.v1.StorageClass,
    ("rbac.authorization.k8s.io/v1", "Role"): k8s.rbac.v1.Role,
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): k8s.rbac.v1.RoleBinding,
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): k8s.rbac.v1.ClusterRole,
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): k8s.rbac.v1.ClusterRoleBinding,
}


def resource_name(prefix: str, manifest: dict[str, Any]) -> str:
    return f"{prefix}-{manifest['kind'].lower()}-{manifest['metadata']['name']}"


def create(prefix: str, manifest: dict[str, Any], opts: pulumi.ResourceOptions) -> pulumi.CustomResource:
    cls = KINDS[(manifest["apiVersion"], manifest["kind"])]
    # Top-level fields become the SDK's keyword arguments, which are snake_case (roleRef -> role_ref).
    fields = {re.sub(r"(?<!^)(?=[A-Z])", "_", k).lower(): v for k, v in manifest.items() if k not in ("apiVersion", "kind")}
    return cls(resource_name(prefix, manifest), **fields, opts=opts)
