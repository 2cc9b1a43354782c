"""tools/npm: the one install path of the npm packages the tests run (renovate's validator, yaml-language-server).

A stand-in `npm` (a shell script) plays `npm ci`: what the install does around it is what is pinned here: the folder
named by the lock's hash, the staging folder renamed only once whole, a failure named with npm's stderr and nothing
left behind, and no second install once one is there.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tools import npm


def _package(tmp_path: Path) -> Path:
    package = tmp_path / "tools" / "thing"
    package.mkdir(parents=True)
    (package / "package.json").write_text('{"name": "thing"}\n')
    (package / "package-lock.json").write_text('{"lockfileVersion": 3}\n')
    return package


def _fake_npm(tmp_path: Path, script: str) -> str:
    path = tmp_path / "npm"
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_an_install_lands_whole_in_the_folder_named_by_the_lock_and_is_not_run_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ILUVATAR_CACHE", str(tmp_path / "cache"))
    package = _package(tmp_path)
    runs = tmp_path / "runs"
    fake = _fake_npm(tmp_path, f'echo "$@" >> {runs}; test -f package-lock.json && mkdir -p node_modules/thing && touch node_modules/thing/bin')
    root = npm.install_root(package)
    assert root.parent == tmp_path / "cache" / "node"
    assert root.name.startswith("thing-") and len(root.name) == len("thing-") + 16
    entry = root / "node_modules" / "thing" / "bin"
    npm.npm_ci(fake, package, entry.exists, timeout=30)
    assert entry.exists()
    npm.npm_ci(fake, package, entry.exists, timeout=30)
    assert runs.read_text().splitlines() == [f"ci --no-audit --no-fund --ignore-scripts --cache {tmp_path / 'cache' / 'npm'}"]
    assert [p.name for p in root.parent.iterdir() if p.name.startswith(".staging-")] == []
    # A new lock installs beside the old.
    (package / "package-lock.json").write_text('{"lockfileVersion": 3, "packages": {}}\n')
    assert npm.install_root(package) != root


def test_a_failed_install_names_the_package_and_npms_words_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ILUVATAR_CACHE", str(tmp_path / "cache"))
    package = _package(tmp_path)
    fake = _fake_npm(tmp_path, "mkdir node_modules; echo 'npm ERR! integrity checksum failed' >&2; exit 1")
    root = npm.install_root(package)
    with pytest.raises(npm.NpmCiError) as failed:
        npm.npm_ci(fake, package, lambda: root.exists(), timeout=30)
    assert str(failed.value) == "npm ci in tools/thing failed:\nnpm ERR! integrity checksum failed"
    assert not root.exists()
    assert [p.name for p in root.parent.iterdir()] == [".install.lock"]
