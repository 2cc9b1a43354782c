"""CRD schemas from upstream Go modules: each served version's openAPIV3Schema as JSON Schema.

Written in kubeconform's layout (`<group>/<kind>_<version>.json`) and keyed by the version of
the chart that installs the CRDs, so a custom resource is checked against what its cluster runs.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tools.upstream.modules import LOADER, UpstreamError, derived, go_version, module_dir, pinned_sum


@dataclass(frozen=True)
class CrdSource:
    """The CRD manifests a project ships in its Go module, versioned like the chart that installs them."""

    name: str
    module: str
    patterns: tuple[str, ...]

    def module_version(self, version: str) -> str:
        return go_version(version)


CRD_SOURCES: dict[str, CrdSource] = {
    s.name: s
    for s in (
        # Cilium's operator creates its CRDs from these files, compiled in at the chart's version.
        CrdSource("cilium", "github.com/cilium/cilium", ("pkg/k8s/apis/cilium.io/client/crds/*/*.yaml",)),
        CrdSource("gateway-api", "sigs.k8s.io/gateway-api", ("config/crd/experimental/*.yaml",)),
        # Envoy Gateway's chart installs these: its own CRDs and the Gateway API release it bundles.
        CrdSource(
            "envoy-gateway",
            "github.com/envoyproxy/gateway",
            ("charts/gateway-helm/charts/crds/crds/*.yaml", "charts/gateway-helm/charts/crds/crds/generated/*.yaml"),
        ),
        CrdSource("cert-manager", "github.com/cert-manager/cert-manager", ("deploy/crds/*.yaml",)),
        CrdSource("trust-manager", "github.com/cert-manager/trust-manager", ("deploy/crds/*.yaml",)),
        CrdSource("rook", "github.com/rook/rook", ("deploy/examples/crds.yaml",)),
        CrdSource("argo-cd", "github.com/argoproj/argo-cd/v3", ("manifests/crds/*-crd.yaml",)),
        # What Pulumi installs on Arda with monitoring (plans.monitoring.CRD_FILES, the same files at the release tag).
        CrdSource("prometheus-operator", "github.com/prometheus-operator/prometheus-operator", ("example/prometheus-operator-crd/*.yaml",)),
        # External Secrets Operator's CRDs (its chart's templates/crds are made from this bundle at release).
        CrdSource("external-secrets", "github.com/external-secrets/external-secrets", ("deploy/crds/bundle.yaml",)),
        CrdSource("volsync", "github.com/backube/volsync", ("config/crd/bases/*.yaml",)),
        # The CSI snapshot CRDs (VolumeSnapshot, VolumeSnapshotClass, ...), which the snapshot controller serves.
        CrdSource("external-snapshotter", "github.com/kubernetes-csi/external-snapshotter/client/v8", ("config/crd/*.yaml",)),
    )
}


def crds(source: str, version: str) -> list[dict[str, Any]]:
    """The CustomResourceDefinitions `source` ships at `version`."""
    if source not in CRD_SOURCES:
        raise UpstreamError(f"no CRD source named {source!r} (known: {', '.join(sorted(CRD_SOURCES))})")
    spec = CRD_SOURCES[source]
    root = module_dir(spec.module, spec.module_version(version))
    files = sorted({p for pattern in spec.patterns for p in root.glob(pattern)})
    found = [
        doc
        for path in files
        for doc in yaml.load_all(path.read_text(), Loader=LOADER)
        if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition"
    ]
    if not found:
        raise UpstreamError(f"{spec.module}@{spec.module_version(version)} has no CRDs at {', '.join(spec.patterns)}")
    return found


def _structural_to_json_schema(node: Any) -> Any:
    """A CRD's structural OpenAPI v3 schema as the JSON Schema the API server effectively enforces.

    Objects that list their properties are closed (the API server drops or, with strict field
    validation, rejects unknown fields) unless they preserve unknown fields; `nullable` admits
    null; int-or-string admits both; embedded resources admit apiVersion, kind and metadata.
    """
    if isinstance(node, list):
        return [_structural_to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _structural_to_json_schema(value) for key, value in node.items()}
    if out.get("x-kubernetes-int-or-string") and "anyOf" not in out:
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.get("x-kubernetes-embedded-resource") and "properties" in out:
        out["properties"] = {"apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"}, **out["properties"]}
    if "properties" in out and "additionalProperties" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    if out.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def crd_json_schemas(crd: Mapping[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(group, kind, version) -> JSON Schema, for every served version of a CRD."""
    spec = crd["spec"]
    out = {}
    for version in spec["versions"]:
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        if schema is None or not version.get("served", True):
            continue
        converted = _structural_to_json_schema(copy.deepcopy(schema))
        # apiVersion and kind are fixed by the file the schema sits in; say so, as kubeconform's layout assumes.
        converted.setdefault("properties", {})
        # Every object has metadata, whether or not the CRD's schema spells it out.
        converted["properties"].setdefault("metadata", {"type": "object"})
        converted["properties"]["apiVersion"] = {"type": "string", "enum": [f"{spec['group']}/{version['name']}"]}
        converted["properties"]["kind"] = {"type": "string", "enum": [spec["names"]["kind"]]}
        out[(spec["group"], spec["names"]["kind"], version["name"])] = converted
    return out


def write_crd_schemas(crd_objects: Iterable[Mapping[str, Any]], target: Path) -> list[Path]:
    """Write CRD schemas in kubeconform's layout: `<group>/<kind>_<version>.json` (kind lower-cased)."""
    written = []
    for crd in crd_objects:
        for (group, kind, version), schema in crd_json_schemas(crd).items():
            path = target / group / f"{kind.lower()}_{version}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(schema, indent=1, sort_keys=True))
            written.append(path)
    return written


def crd_schema_dir(source: str, version: str) -> Path:
    """A folder of `source`'s CRD schemas at `version`, in kubeconform's layout."""
    if source not in CRD_SOURCES:
        raise UpstreamError(f"no CRD source named {source!r} (known: {', '.join(sorted(CRD_SOURCES))})")
    spec = CRD_SOURCES[source]

    def make(staging: Path) -> None:
        write_crd_schemas(crds(source, version), staging)

    return derived("crds", f"{source}-{version}", [pinned_sum(spec.module, spec.module_version(version))], make)


def crd_schema_dir_of(objects: Iterable[Mapping[str, Any]]) -> Path:
    """A schema folder for the CRDs among `objects` (e.g. the ones a chart renders with --include-crds)."""
    found = [o for o in objects if o.get("kind") == "CustomResourceDefinition"]
    if not found:
        raise UpstreamError("no CustomResourceDefinition among the objects")
    digest = hashlib.sha256(json.dumps(found, sort_keys=True).encode()).hexdigest()

    def make(staging: Path) -> None:
        write_crd_schemas(found, staging)

    return derived("crds", "rendered", [digest], make)


@functools.cache
def _crd_validator(path: Path) -> jsonschema.protocols.Validator:
    schema = json.loads(path.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def crd_validator(api_version: str, kind: str, *, source: str, version: str) -> jsonschema.protocols.Validator:
    """A validator for one custom resource kind, from `source`'s CRDs at `version`."""
    group, _, served = api_version.rpartition("/")
    path = crd_schema_dir(source, version) / group / f"{kind.lower()}_{served}.json"
    if not path.exists():
        raise UpstreamError(f"{source} {version} defines no {kind} in {api_version}")
    return _crd_validator(path)
