"""`python -m iluvatar validate`, run as a user would: exit codes and messages, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.edit import HOMELAB, RK1, ROOT, edit, homelab_doc, write_stack


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "iluvatar", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_both_stacks_are_valid() -> None:
    for path, summary in (
        (HOMELAB, "8 nodes (Ainur 1 valar + 2 maiar; Arda 3 valinor + 2 istari) on 192.168.0.0/24"),
        (RK1, "4 nodes (no Ainur; Arda 3 valinor + 1 istari) on 10.10.0.0/24"),
    ):
        result = run("validate", path.name)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"{path.name}: valid: {summary}"


def test_invalid_stack_exits_1_with_every_problem(tmp_path: Path) -> None:
    doc = edit(homelab_doc(), {"iluvatar:nodes[3].ip": "192.168.1.5", "iluvatar:nodes[5].mac": "xx"})
    path = write_stack(tmp_path, doc, stack="bad")
    result = run("validate", str(path))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{path}: 2 problems:",
        "  iluvatar:nodes[3].ip: 192.168.1.5 is outside network.lan 192.168.0.0/24",
        "  iluvatar:nodes[5].mac: xx is not a MAC address (e.g. d8:3a:dd:12:34:56)",
    ]
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_missing_or_non_yaml_file_exits_2(tmp_path: Path) -> None:
    missing = run("validate", str(tmp_path / "Pulumi.none.yaml"))
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"error: {tmp_path / 'Pulumi.none.yaml'}: no such stack file"
    bad = tmp_path / "Pulumi.bad.yaml"
    bad.write_text("config: {iluvatar:nodes: [\n")
    result = run("validate", str(bad))
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {bad}: not valid YAML at line")
    assert "Traceback" not in result.stderr


def test_bad_arguments_exit_2() -> None:
    assert run().returncode == 2
    assert run("validate").returncode == 2
    assert run("frobnicate").returncode == 2
