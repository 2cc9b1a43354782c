"""The scaffold's Renovate configuration (plans.renovate), checked against Renovate's own option schema.

Renovate's validator, `renovate-config-validator`, is the `renovate` npm package's: at RENOVATE_VERSION it needs Node
^24.11 (its package.json `engines`; this machine has Node 20) and a dependency tree whose install failed here on a
download from outside the registry after 32 minutes (docs/proof/performance.md, issue #42), so it does not run in the
tests. What does: `renovate-schema.json`, the JSON schema Renovate generates from its own option definitions
(dist/config/options/index.js) and ships in the same package, taken from the package's tarball alone (`npm pack`, 3 MB,
no dependencies) and checked with jsonschema; and every key the configuration writes is one of Renovate's options.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from iluvatar.golang import cache_dir
from plans import renovate
from stacks import load_stack_file
from tests.edit import HOMELAB, RK1


def _schema() -> dict[str, Any]:
    folder = cache_dir() / "npm" / f"renovate-{renovate.RENOVATE_VERSION}"
    schema = folder / "renovate-schema.json"
    if not schema.exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("npm is needed to fetch Renovate's schema (the npm registry's `renovate` package)")
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run([npm, "pack", f"renovate@{renovate.RENOVATE_VERSION}", "--silent"], cwd=folder, check=True, timeout=600)
        with tarfile.open(folder / f"renovate-{renovate.RENOVATE_VERSION}.tgz") as archive:
            member = archive.extractfile("package/renovate-schema.json")
            assert member is not None
            schema.with_suffix(".part").write_bytes(member.read())
        schema.with_suffix(".part").rename(schema)
    result: dict[str, Any] = json.loads(schema.read_text())
    return result


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return _schema()


# Keys Renovate's validator skips (dist/config/validation.js:44-52, `ignoredNodes`): `$schema` is for editors.
IGNORED = {"$schema"}


def _object_options(schema: dict[str, Any], name: str) -> set[str]:
    """The options an object option takes (a manager's managerFilePatterns, a package rule's matchManagers, ...), as the
    schema defines its items."""
    return set(schema["definitions"][name]["items"]["allOf"][0]["properties"])


def _problems(schema: dict[str, Any], config: dict[str, Any]) -> list[str]:
    options = set(schema["properties"]) | IGNORED
    unknown = [k for k in config if k not in options]
    rules = _object_options(schema, "packageRules") | options  # its match* options, then any option it sets
    unknown += [f"packageRules.{k}" for rule in config.get("packageRules", []) for k in rule if k not in rules]
    unknown += [f"{m}.{k}" for m in ("kubernetes", "argocd") for k in config.get(m, {}) if k not in _object_options(schema, m)]
    errors = [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(config)]
    return unknown + errors


@pytest.mark.parametrize("path", [HOMELAB, RK1], ids=lambda p: p.name)
def test_the_configuration_is_renovates(schema: dict[str, Any], path: Path) -> None:
    config = renovate.config(load_stack_file(path))
    assert _problems(schema, config) == []


def test_a_misspelt_option_or_a_wrong_type_is_caught(schema: dict[str, Any]) -> None:
    config = renovate.config(load_stack_file(HOMELAB))
    assert _problems(schema, {**config, "dependencyDashbord": True}) == ["dependencyDashbord"]
    assert _problems(schema, {**config, "dependencyDashboard": "yes"}) == ["'yes' is not of type 'boolean'"]
    # Renovate 41 renamed fileMatch: an older spelling is no option of this Renovate.
    assert _problems(schema, {**config, "kubernetes": {"fileMatch": ["x"]}}) == ["kubernetes.fileMatch"]


def test_the_managers_read_the_stacks_own_folders() -> None:
    config = renovate.config(load_stack_file(HOMELAB))
    assert config["kubernetes"]["managerFilePatterns"] == ["/^kubernetes/apps/.+\\.ya?ml$/", "/^ainur/.+\\.ya?ml$/"]
    assert config["baseBranchPatterns"] == ["main"]
    assert renovate.text(load_stack_file(HOMELAB)) == json.dumps(config, indent=2) + "\n"
