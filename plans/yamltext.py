"""YAML text for generated artifacts: libyaml's C emitter and parser, with anchors never used.

Rendering a thousand machines writes and reads tens of thousands of YAML documents; the pure
Python implementation spent most of `render`'s time there.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml

_BaseDumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Dumper(_BaseDumper):  # type: ignore[misc]
    def ignore_aliases(self, data: Any) -> bool:
        return True  # a reader of a patch or manifest should never meet &anchors


def dump(doc: Any, sort_keys: bool = False) -> str:
    return str(yaml.dump(doc, Dumper=_Dumper, sort_keys=sort_keys, default_flow_style=False, width=4096, allow_unicode=True))


def dump_all(docs: list[Any], sort_keys: bool = False) -> str:
    return str(yaml.dump_all(docs, Dumper=_Dumper, sort_keys=sort_keys, default_flow_style=False, width=4096, allow_unicode=True))


def load_all(text: str) -> Iterator[Any]:
    return iter(yaml.load_all(text, Loader=_BaseLoader))


# YAML as Go's yaml (sigs.k8s.io/yaml, what Kubernetes and its tools read manifests with) reads it where PyYAML's
# YAML 1.1 does not: a bare `=` (the `value` tag, in the Prometheus Operator's CRD enums) is the string "=".
_GoLoader: Any = type("_GoLoader", (_BaseLoader,), {})
_GoLoader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))


def load_all_manifests(text: str) -> list[Any]:
    """An upstream manifest file's documents, as Kubernetes' tools read them (empty documents dropped)."""
    return [doc for doc in yaml.load_all(text, Loader=_GoLoader) if doc is not None]
