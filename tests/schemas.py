"""The real upstream schemas the program's artifacts are checked against, at the versions it pins.

Schemas and charts come from `tools.upstream`: the upstream projects' Go modules, fetched through
the Go module proxy and checked against `tools/upstream/modules.sum` (docs/proof/upstream.md). This module
only says which upstream version each artifact is checked at: the version the program itself
installs, read from the program (a stack's `talosVersion` for Talos configs; the Cilium chart
version, `arda.cilium.version`, for Cilium's chart and CRDs).
"""

from __future__ import annotations

import functools
import json
from typing import Any

import jsonschema
from referencing import Registry, Resource

from stacks import StackConfig, load_stack_file
from stacks.model import ArgoCd, Cilium
from tests.edit import HOMELAB, RK1
from tools import upstream

# The CRD source (tools.upstream.CRD_SOURCES) and program version of each API group the program creates.
_CRD_GROUPS = {"cilium.io": "cilium", "argoproj.io": "argo-cd"}


@functools.cache
def shipped_stacks() -> tuple[StackConfig, ...]:
    return (load_stack_file(HOMELAB), load_stack_file(RK1))


def program_versions() -> dict[str, set[str]]:
    """Every upstream version the program installs, by source: the shipped stacks' and the defaults."""
    return {
        "talos": {s.arda.talos_version for s in shipped_stacks()},
        "cilium": {s.arda.cilium.version for s in shipped_stacks()} | {str(Cilium.model_fields["version"].default)},
        "argo-cd": {s.gitops.argocd.version for s in shipped_stacks() if s.gitops} | {str(ArgoCd.model_fields["version"].default)},
    }


def _only(source: str) -> str:
    versions = program_versions()[source]
    if len(versions) != 1:
        raise ValueError(f"the program pins {source} at {sorted(versions)}: pass the version to check against")
    return next(iter(versions))


@functools.cache
def _talos(version: str) -> jsonschema.protocols.Validator:
    schema = json.loads(upstream.talos_schema(version).read_text())
    # Talos's schema generator describes an Endpoint (a log destination's `endpoint`) as an object with no properties;
    # Talos reads and writes it as a URL string (machinery v1.12.4 config/types/v1alpha1/v1alpha1_types.go:996-1025:
    # UnmarshalYAML parses a string with url.Parse, MarshalYAML writes the URL's string), which tools/talos-check, Talos's
    # own code, accepts. The schema is corrected to what the code reads, nothing else.
    if "v1alpha1.Endpoint" in schema.get("$defs", {}):
        schema["$defs"]["v1alpha1.Endpoint"] = {"type": "string", "description": schema["$defs"]["v1alpha1.Endpoint"].get("description", "")}
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, registry=Registry().with_resource(schema["$id"], Resource.from_contents(schema)))


def talos_errors(document: dict[str, Any], talos_version: str | None = None) -> list[str]:
    """Schema errors for one Talos config document, against the schema of that Talos version (default: the machinery the
    Talos provider generates every config with, v1.13.0). Not the shipped stacks' Talos 1.14: its config.schema.json
    leaves out every v1alpha1 field 1.14 deprecated (machine.install, machine.kubelet, cluster.network, ...), which the
    provider still generates and a 1.14 node's own code still accepts (tests/test_talos_check.py, machinery v1.14.1)."""
    from tools.talos_check import PROVIDER_VERSION

    validator = _talos(talos_version or PROVIDER_VERSION)
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(document)]


def crd_source(manifest: dict[str, Any]) -> str:
    group = str(manifest["apiVersion"]).rpartition("/")[0]
    if group not in _CRD_GROUPS:
        raise ValueError(f"no CRD source for API group {group!r}: add it to tests/schemas.py _CRD_GROUPS")
    return _CRD_GROUPS[group]


def crd_errors(manifest: dict[str, Any], version: str | None = None) -> list[str]:
    """Schema errors for a custom resource, against its CRD at the chart version the program installs."""
    source = crd_source(manifest)
    validator = upstream.crd_validator(manifest["apiVersion"], manifest["kind"], source=source, version=version or _only(source))
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(manifest)]


def prometheus_crds(stack: StackConfig) -> list[tuple[str, str]]:
    """With monitoring, the Prometheus Operator's CRDs at the version Pulumi installs on Arda before any chart
    (components.monitoring): what the charts' ServiceMonitors are checked against. Without it, none."""
    from plans import monitoring

    return [("prometheus-operator", monitoring.OPERATOR_VERSION)] if stack.monitoring is not None else []
