"""The install a newcomer runs is the install CI runs: one prerequisites script, one uv version, one lock."""

from __future__ import annotations

import re
import tomllib

from tests.edit import ROOT

README = (ROOT / "README.md").read_text()
CI = (ROOT / ".ci" / "run").read_text()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
LOCK = tomllib.loads((ROOT / "uv.lock").read_text())


def quickstart_commands() -> list[str]:
    """The Quickstart's shell blocks, one command a line."""
    section = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return [line for block in re.findall(r"```sh\n(.*?)```", section, re.DOTALL) for line in block.splitlines() if line.strip()]


def test_ci_runs_the_readme_commands() -> None:
    install, tests = quickstart_commands()
    # `export` sets CI's environment (CI=1: a skip fails there), not a command a newcomer runs.
    ci = [line for line in CI.splitlines() if line.strip() and not line.startswith("#") and not line.startswith(("set ", "cd ", "export "))]
    # CI installs exactly as the README does, only quieter, and does not render.
    quiet = ci[0].replace(" --quiet --disable-pip-version-check", "").replace(" --quiet", "")
    assert install.startswith(quiet + " && .venv/bin/iluvatar render homelab ")
    # The test command installs what the tests need itself (the prerequisites script), then runs them.
    assert ci[1:] == [tests] == ["bash scripts/test"]
    script = (ROOT / "scripts" / "test").read_text()
    assert "\nbash scripts/prerequisites.sh\n" in script
    # Bytecode cached outside the repository, for every process of the run.
    assert '\nexport PYTHONPYCACHEPREFIX="${ILUVATAR_CACHE:-$HOME/.cache/iluvatar}/pycache"\nunset PYTHONDONTWRITEBYTECODE\n' in script
    # On several workers, a file's tests together (tests/test_workers.py), and whatever the caller adds.
    assert '\nworkers="${ILUVATAR_TEST_WORKERS:-$(($(nproc) + 2))}"\n' in script
    assert '\n.venv/bin/python -m pytest -n "$workers" --dist loadfile --no-loadscope-reorder "$@" || status=$?\n' in script


def test_uv_is_pinned_once_everywhere() -> None:
    version = PYPROJECT["tool"]["uv"]["required-version"].removeprefix("==")
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    assert f"uv=={version}" in PYPROJECT["dependency-groups"]["dev"]
    assert PYPROJECT["build-system"]["requires"] == [f"uv_build=={version}"]
    assert [p["version"] for p in LOCK["package"] if p["name"] == "uv"] == [version]
    assert f"pip install uv=={version} " in quickstart_commands()[0]
    assert f"pip install --quiet --disable-pip-version-check uv=={version} " in CI


def test_every_direct_dependency_is_pinned_exactly() -> None:
    direct = [*PYPROJECT["project"]["dependencies"], *PYPROJECT["dependency-groups"]["dev"]]
    assert direct and all(re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][0-9A-Za-z.+-]*", d) for d in direct), direct
    locked = {p["name"]: p.get("version") for p in LOCK["package"]}
    for requirement in direct:
        name, version = requirement.split("==")
        assert locked[re.sub(r"[-_.]+", "-", name).lower()] == version, requirement
