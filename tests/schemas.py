"""The real upstream schemas that generated artifacts are checked against.

One setting finds them: ILUVATAR_SCHEMAS (default ../shared/schemas beside the repo). Outside
this workspace, fetch them from the pinned sources in the README's "Schemas" section.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

import jsonschema
from referencing import Registry, Resource

from tests.edit import ROOT

TALOS_SCHEMA_VERSION = "v1.12.4"


def schema_dir() -> Path:
    path = Path(os.environ.get("ILUVATAR_SCHEMAS", ROOT.parent / "shared" / "schemas"))
    if not (path / "talos").is_dir() or not (path / "crds").is_dir():
        raise FileNotFoundError(f"schemas not found at {path}: set ILUVATAR_SCHEMAS to a folder with talos/ and crds/ (see README, Schemas)")
    return path


@functools.cache
def _talos() -> jsonschema.protocols.Validator:
    schema = json.loads((schema_dir() / "talos" / TALOS_SCHEMA_VERSION / "config.schema.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, registry=Registry().with_resource(schema["$id"], Resource.from_contents(schema)))


def talos_errors(document: dict[str, Any]) -> list[str]:
    """Schema errors for one Talos config document (a v1alpha1 patch or a typed document)."""
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in _talos().iter_errors(document)]


@functools.cache
def _crd(api_version: str, kind: str) -> jsonschema.protocols.Validator:
    group, version = api_version.split("/")
    path = schema_dir() / "crds" / group / f"{kind.lower()}_{version}.json"
    schema = json.loads(path.read_text())
    return jsonschema.validators.validator_for(schema)(schema)


def crd_errors(manifest: dict[str, Any]) -> list[str]:
    """Schema errors for a custom resource, against its CRD's OpenAPI schema."""
    validator = _crd(manifest["apiVersion"], manifest["kind"])
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(manifest)]
