"""kubeconform, strict and offline, with Kubernetes' core schemas and the pinned CRD schemas."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import re
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tools import gotools
from tools.upstream.crds import crd_schema_dir
from tools.upstream.modules import UpstreamError, derived


def _minor(kube_version: str) -> str:
    found = re.fullmatch(r"v?(\d+)\.(\d+)(\.\d+)?", kube_version)
    if found is None:
        raise UpstreamError(f"{kube_version!r} is not a Kubernetes version")
    return f"{found.group(1)}.{found.group(2)}"


def core_schema_dir(kube_version: str) -> Path:
    """Kubernetes' own schemas for the version's minor, from the pinned kubernetes-validate package.

    The package bundles them per minor with `$ref`s into one shared, 4 MB definitions file under
    an https `$id`, which kubeconform would fetch; the copy makes each kind's file standalone
    (the definitions it reaches, under its own `$defs`), as kubeconform's own schema sets are.
    """
    spec = importlib.util.find_spec("kubernetes_validate")
    if spec is None or not spec.submodule_search_locations:
        raise UpstreamError("the kubernetes-validate package is not installed (requirements-dev.txt)")
    bundled = Path(next(iter(spec.submodule_search_locations))) / "kubernetes-json-schema" / f"v{_minor(kube_version)}.0-local-strict"
    if not bundled.is_dir():
        known = sorted(p.name.split("-")[0] for p in bundled.parent.glob("v*-local-strict"))
        raise UpstreamError(
            f"kubernetes-validate {importlib.metadata.version('kubernetes-validate')} has no schemas for Kubernetes {_minor(kube_version)} (it has {', '.join(known)})"
        )

    shared = "/api/_definitions.json#/$defs/"

    def local(node: Any, reached: set[str]) -> Any:
        """The node with shared refs made local, collecting the definitions they name."""
        if isinstance(node, list):
            return [local(item, reached) for item in node]
        if not isinstance(node, dict):
            return node
        out = {key: local(value, reached) for key, value in node.items()}
        ref = out.get("$ref")
        if isinstance(ref, str) and ref.startswith((shared, "#/$defs/")):
            name = ref.rsplit("/", 1)[1]
            reached.add(name)
            out["$ref"] = f"#/$defs/{name}"
        return out

    def make(staging: Path) -> None:
        definitions = json.loads((bundled / "_definitions.json").read_text())["$defs"]
        for path in bundled.glob("*.json"):
            if path.name in ("_definitions.json", "all.json"):
                continue
            schema = json.loads(path.read_text())
            schema.pop("$id", None)
            reached: set[str] = set()
            schema = local(schema, reached)
            defs: dict[str, Any] = {}
            while pending := reached - defs.keys():
                for name in sorted(pending):
                    defs[name] = local(definitions[name], reached)
            if defs:
                schema["$defs"] = defs
            (staging / path.name).write_text(json.dumps(schema))

    return derived("kubernetes", f"v{_minor(kube_version)}-strict", [importlib.metadata.version("kubernetes-validate")], make)


def kubeconform(
    objects: Iterable[Mapping[str, Any]],
    kube_version: str,
    crds: Sequence[tuple[str, str]] = (),
    crd_dirs: Sequence[Path] = (),
) -> list[str]:
    """Real kubeconform, strict and offline, on every object: one message per problem, none if all valid.

    Core kinds are checked against the Kubernetes minor's schemas, custom resources against
    the CRDs of each (source, version) in `crds` (and any folder in `crd_dirs`). An object
    with no schema is a problem, never skipped.
    """
    binary = gotools.build("kubeconform")
    locations = [str(core_schema_dir(kube_version) / "{{ .ResourceKind }}{{ .KindSuffix }}.json")]
    for folder in [*(crd_schema_dir(source, version) for source, version in crds), *crd_dirs]:
        locations.append(str(folder / "{{ .Group }}" / "{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json"))
    stream = "".join("---\n" + json.dumps(obj) + "\n" for obj in objects)
    # One worker: problems come back in the order of the objects, so the same input reads the same.
    command = [str(binary), "-strict", "-n", "1", "-output", "json", "-kubernetes-version", f"{_minor(kube_version)}.0"]
    command += [arg for location in locations for arg in ("-schema-location", location)]
    result = subprocess.run([*command, "-"], input=stream, capture_output=True, text=True, timeout=600)  # noqa: S603
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        raise UpstreamError(f"kubeconform failed: {result.stderr.strip() or result.stdout.strip()}") from None
    problems = []
    for res in report.get("resources") or []:
        what = f"{res.get('kind')} {res.get('name')}"
        message = str(res.get("msg") or "")
        # The message holds every leaf error ("- at '/spec/...': ..."); validationErrors only the
        # top-level ones, which for a nested problem say no more than "/spec: validation failed".
        found = [(path, text.strip()) for path, text in re.findall(r" - at '([^']*)': (.*?)(?= +- at '|$)", message)]
        # An entry with entries below it ("/spec: validation failed") only says where they are.
        leaves = [
            (path, text)
            for path, text in found
            if text != "validation failed" or not any(other.startswith(path.rstrip("/") + "/") for other, _ in found)
        ]
        if leaves:
            problems += sorted(f"{what}: {path or '/'}: {text}" for path, text in leaves)
        elif res.get("status") != "statusValid":
            problems.append(f"{what}: {message}")
    if result.returncode != 0 and not problems:
        raise UpstreamError(f"kubeconform failed: {result.stderr.strip()}")
    return problems
