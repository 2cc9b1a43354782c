"""iluvatar.golang asks a `go` command its version once per process, and again whenever the answer could differ."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from iluvatar import golang


def fake_go(path: Path, version: str, log: Path) -> Path:
    """A `go` that answers `go env GOVERSION` with `version` and writes a line to `log` each time it is asked."""
    path.write_text(f'#!/bin/sh\n[ "$*" = "env GOVERSION" ] || exit 2\necho asked >> {log}\necho {version}\n')
    path.chmod(0o755)
    return path


def asked(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_the_same_go_is_asked_once_and_a_changed_one_again(tmp_path: Path) -> None:
    log = tmp_path / "log"
    go = fake_go(tmp_path / "go", "go1.26.8", log)
    assert [golang._version(str(go)) for _ in range(3)] == [(1, 26)] * 3
    assert asked(log) == 1
    # Another Go put at the same path (a new file: its size and modification time differ) is asked again.
    fake_go(tmp_path / "go", "go1.27.10", log)
    os.utime(go, ns=(1, 1))
    assert golang._version(str(go)) == (1, 27)
    assert asked(log) == 2


def test_what_picks_the_toolchain_is_asked_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "log"
    go = str(fake_go(tmp_path / "go", "go1.26.8", log))
    assert golang._version(go) == (1, 26)
    # GOTOOLCHAIN and the folder's go.mod choose which toolchain `go` runs (GOTOOLCHAIN=auto switches to a newer one).
    monkeypatch.setenv("GOTOOLCHAIN", "go1.26.8+auto")
    assert golang._version(go) == (1, 26)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert golang._version(go) == (1, 26)
    assert asked(log) == 3
    assert golang._version(go) == (1, 26)
    assert asked(log) == 3


def test_no_such_go_and_a_removed_folder_are_not_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert golang._version(str(tmp_path / "no-go")) is None
    log = tmp_path / "log"
    go = fake_go(tmp_path / "go", "go1.26.8", log)
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    assert [golang._version(str(go)) for _ in range(2)] == [(1, 26)] * 2
    assert asked(log) == 2
