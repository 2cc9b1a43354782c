"""Edit a stack file's document by config path (`iluvatar:nodes[3].ip`), for test fixtures."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
HOMELAB = ROOT / "Pulumi.homelab.yaml"
RK1 = ROOT / "Pulumi.rk1.yaml"

_STEP = re.compile(r"\.?([A-Za-z0-9_-]+)|\[(\d+)\]")


def _steps(path: str) -> tuple[str, list[str | int]]:
    """`iluvatar:nodes[3].ip` -> (`iluvatar:nodes`, [3, "ip"])."""
    key = re.match(r"[^.\[]+", path)
    assert key is not None, path
    rest = path[key.end() :]
    return key.group(0), [int(m.group(2)) if m.group(2) else m.group(1) for m in _STEP.finditer(rest)]


def edit(doc: dict[str, Any], set_: dict[str, Any] | None = None, delete: list[str] | None = None) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    config = out["config"]
    for path, value in (set_ or {}).items():
        key, steps = _steps(path)
        if not steps:
            config[key] = value
            continue
        target = config[key]
        for s in steps[:-1]:
            target = target[s]
        target[steps[-1]] = value
    for path in delete or []:
        key, steps = _steps(path)
        if not steps:
            del config[key]
            continue
        target = config[key]
        for s in steps[:-1]:
            target = target[s]
        del target[steps[-1]]
    return out


def homelab_doc() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(HOMELAB.read_text())
    return doc


def write_stack(tmp: Path, doc: dict[str, Any], stack: str = "test") -> Path:
    path = tmp / f"Pulumi.{stack}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path
