"""The scaffold's Renovate configuration (plans.renovate), checked by Renovate's own config validator.

`renovate-config-validator`, the `renovate` npm package's (RENOVATE_VERSION, tools/renovate: pinned with the Node 24.11.1
it asks for, both from the npm registry; tools.renovate_check), validates it as a repository's renovate.json, `--strict`.
Also, cheaper and with the schema's own words: `renovate-schema.json`, the JSON schema Renovate generates from its option
definitions (dist/config/options/index.js) and ships in the same package, taken from the package's tarball alone
(`npm pack`, 3 MB, no dependencies) and checked with jsonschema; and every key the configuration writes is one of
Renovate's options.
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
from tools import renovate_check


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


@pytest.mark.parametrize("path", [HOMELAB, RK1], ids=lambda p: p.name)
def test_renovates_validator_accepts_the_configuration(path: Path) -> None:
    package = json.loads((renovate_check.PACKAGE_DIR / "package.json").read_text())
    assert package["dependencies"]["renovate"] == renovate.RENOVATE_VERSION  # the validator is the release the plan names
    checked = renovate_check.validate(renovate.text(load_stack_file(path)))
    assert (checked.code, checked.output.splitlines()) == (
        0,
        [" INFO: Validating renovate.json", " INFO: Config validated successfully against 1 file(s)"],
    )


def test_renovates_validator_refuses_a_misspelt_option_a_wrong_type_and_an_older_name() -> None:
    config = renovate.config(load_stack_file(HOMELAB))
    misspelt = renovate_check.validate(json.dumps({**config, "dependencyDashbord": True}))
    assert misspelt.code == 1
    assert '"message": "Invalid configuration option: dependencyDashbord"' in misspelt.output
    typed = renovate_check.validate(json.dumps({**config, "dependencyDashboard": "yes"}))
    assert typed.code == 1
    assert '"message": "Configuration option `dependencyDashboard` should be boolean. Found: \\"yes\\" (string)"' in typed.output
    # fileMatch, managerFilePatterns' name before Renovate 41: Renovate migrates it, and --strict refuses a config that needs it.
    older = renovate_check.validate(json.dumps({**config, "kubernetes": {"fileMatch": ["^kubernetes/apps/.+\\.ya?ml$"]}}))
    assert older.code == 1
    assert " WARN: Config migration necessary" in older.output.splitlines()


@pytest.mark.parametrize(
    ("revision", "patterns"),
    [
        # Argo CD's default: before, ["HEAD"], which Renovate 44.121.2 skips as no branch (review M4 of issue #42).
        (None, ["$default"]),
        ("HEAD", ["$default"]),
        ("main", ["main"]),
        ("0123456789abcdef0123456789abcdef01234567", None),  # a commit: no branch, so Renovate's default branch
    ],
)
def test_renovate_opens_pull_requests_against_a_branch_that_exists(tmp_path: Path, revision: str | None, patterns: list[str] | None) -> None:
    from tests.edit import edit, homelab_doc, write_stack

    doc = edit(homelab_doc(), {"iluvatar:gitops.revision": revision} if revision is not None else {})
    if revision is None:
        doc["config"]["iluvatar:gitops"].pop("revision", None)
    config = renovate.config(load_stack_file(write_stack(tmp_path, doc, stack="homelab")))
    assert config.get("baseBranchPatterns") == patterns
    if revision is None:  # Renovate's own validator takes the keyword
        checked = renovate_check.validate(renovate.text(load_stack_file(write_stack(tmp_path, doc, stack="homelab"))))
        assert checked.code == 0, checked.output
