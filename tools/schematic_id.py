"""Schematic IDs from the real code: the Talos provider's decode, image-factory's client, Image Factory's ID.

tools/talos-check/schematic-id (a second program of the talos-check module) takes a batch of schematic
texts as the program hands them to the provider and answers, for each, the body the client POSTed and
the ID the factory's own `Schematic.ID` gives it, or which step refused it. plans.imagefactory computes the
same in Python for the render; the tests hold the two equal.

    python -m tools.schematic_id FILE...     # each file one schematic text: its ID, or why none
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tools import gotools

TOOL = "schematic-id"
# image-factory v1.1.0 (the provider's and the stand-in factory's) is not served by the Go module proxy;
# v1.0.3's pkg/schematic and pkg/client are the same files, built with v1.1.0's yaml and machinery.
MODULES = {
    "github.com/siderolabs/image-factory": "v1.0.3",
    "go.yaml.in/yaml/v4": "v4.0.0-rc.4",
    "github.com/siderolabs/talos/pkg/machinery": "v1.13.0",
}


class SchematicCheckError(Exception):
    """The checker could not run (build failed, bad answer): not a verdict on a schematic."""


@dataclass(frozen=True)
class Named:
    """What became of one schematic text: the body POSTed and the ID answered, or the refusing step's error."""

    body: str
    id: str
    stage: str = ""  # "provider", "client" or "factory" when refused
    error: str = ""


def name(texts: Sequence[str]) -> list[Named]:
    """Each text through the provider's decode, image-factory's client and the factory's Unmarshal and ID."""
    if not texts:
        return []
    binary = gotools.build(TOOL)
    result = subprocess.run([str(binary)], input=json.dumps({"schematics": list(texts)}), capture_output=True, text=True, timeout=600)  # noqa: S603
    if result.returncode != 0:
        raise SchematicCheckError(f"{TOOL} failed ({result.returncode}): {result.stderr.strip()}")
    answer = json.loads(result.stdout)
    if answer["modules"] != MODULES:
        raise SchematicCheckError(f"{TOOL} is built with {answer['modules']}, not {MODULES}")
    if len(answer["results"]) != len(texts):
        raise SchematicCheckError(f"{TOOL} answered for {len(answer['results'])} of {len(texts)} schematics")
    return [Named(r.get("body", ""), r.get("id", ""), r.get("stage", ""), r.get("error", "")) for r in answer["results"]]


def main(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 2
    named = name([Path(p).read_text() for p in argv])
    for path, n in zip(argv, named, strict=True):
        print(f"{path}: {n.id}" if n.id else f"{path}: refused by the {n.stage}: {n.error}")
    return 0 if all(n.id for n in named) else 1


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (SchematicCheckError, gotools.GoToolError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
