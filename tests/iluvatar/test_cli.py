"""The `iluvatar` command as a user runs it: the console script from any folder, each command taking
a stack name or a stack file path, exit codes and messages, no traceback."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from stacks import read_stack_file
from tests.edit import HOMELAB, RK1, ROOT, edit, homelab_doc, write_stack
from tests.stacks.test_secrets import HOMELAB_COMMANDS

# The console script pyproject.toml declares, as `uv sync` installs it beside this Python.
ILUVATAR = Path(sys.executable).parent / "iluvatar"
HOMELAB_SUMMARY = "8 nodes (Ainur 1 valar + 2 maiar; Arda 3 valinor + 2 istari) on 192.168.0.0/24"
RK1_SUMMARY = "4 nodes (no Ainur; Arda 3 valinor + 1 istari) on 10.10.0.0/24"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "iluvatar", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)


def files_in(folder: Path) -> int:
    """How many files a render wrote (the count its last line must report)."""
    return sum(1 for p in folder.rglob("*") if p.is_file())


def iluvatar(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The installed `iluvatar` command, run from `cwd`."""
    return subprocess.run([str(ILUVATAR), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_both_stacks_are_valid_once_their_secrets_are_set(tmp_path: Path) -> None:
    result = run("validate", RK1.name)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{RK1.name}: valid: {RK1_SUMMARY}"
    # The homelab ships without its secrets (no user could open another's ciphertext): validate names each to set.
    shipped = run("validate", HOMELAB.name)
    assert (shipped.returncode, shipped.stdout) == (1, "")
    assert shipped.stderr.splitlines() == [f"{HOMELAB.name}: 5 problems:", *(f"  {s}" for s in read_stack_file(HOMELAB).unset_secrets())]
    assert [line.split("run `", 1)[1].rstrip("`") for line in shipped.stderr.splitlines()[1:]] == HOMELAB_COMMANDS
    set_ = write_stack(tmp_path, homelab_doc(), stack="homelab")
    result = run("validate", str(set_))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{set_}: valid: {HOMELAB_SUMMARY}"


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


def test_console_script_is_installed() -> None:
    result = subprocess.run([str(ILUVATAR), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: iluvatar [-h] COMMAND ...")
    for command in ("validate", "render", "diagram", "schema"):
        assert command in result.stdout


def test_a_stack_name_works_from_any_folder(tmp_path: Path) -> None:
    """Outside any Pulumi project, a stack name means a stack of this checkout; paths stay relative to the folder."""
    assert not any((folder / "Pulumi.yaml").exists() for folder in (tmp_path, *tmp_path.parents))
    validated = iluvatar("validate", "rk1", cwd=tmp_path)
    assert (validated.returncode, validated.stdout) == (0, f"{RK1}: valid: {RK1_SUMMARY}\n"), validated.stderr
    rendered = iluvatar("render", "rk1", "--out", "out", cwd=tmp_path)
    assert (rendered.returncode, rendered.stdout) == (0, f"rendered stack rk1 to out: {files_in(tmp_path / 'out')} files\n"), rendered.stderr
    assert (tmp_path / "out" / "talos" / "talos-1.patch.yaml").is_file()
    drawn = iluvatar("diagram", "rk1", "--out", "rk1.svg", cwd=tmp_path)
    assert (drawn.returncode, drawn.stdout) == (0, "drew stack rk1 to rk1.svg\n"), drawn.stderr
    assert (tmp_path / "rk1.svg").read_text().lstrip().startswith("<?xml")


def test_every_command_takes_a_stack_file_path(tmp_path: Path) -> None:
    copy = tmp_path / "Pulumi.lab.yaml"
    shutil.copy(RK1, copy)
    validated = iluvatar("validate", "Pulumi.lab.yaml", cwd=tmp_path)
    assert (validated.returncode, validated.stdout) == (0, f"Pulumi.lab.yaml: valid: {RK1_SUMMARY}\n")
    absolute = iluvatar("validate", str(copy), cwd=ROOT)
    assert (absolute.returncode, absolute.stdout) == (0, f"{copy}: valid: {RK1_SUMMARY}\n")
    rendered = iluvatar("render", "./Pulumi.lab.yaml", "--out", "out", cwd=tmp_path)
    assert (rendered.returncode, rendered.stdout) == (0, f"rendered stack lab to out: {files_in(tmp_path / 'out')} files\n"), rendered.stderr
    drawn = iluvatar("diagram", "Pulumi.lab.yaml", "--out", "lab.svg", cwd=tmp_path)
    assert drawn.returncode == 0, drawn.stderr


def test_stack_names_resolve_in_the_nearest_project_folder(tmp_path: Path) -> None:
    """Inside a Pulumi project (a folder holding Pulumi.yaml, or one below it), names are its stacks, as for `pulumi`."""
    project = tmp_path / "my-homelab"
    (project / "docs").mkdir(parents=True)
    (project / "Pulumi.yaml").write_text("name: iluvatar\nruntime: python\n")
    shutil.copy(RK1, project / "Pulumi.garage.yaml")
    found = iluvatar("validate", "garage", cwd=project / "docs")
    assert (found.returncode, found.stdout) == (0, f"{project / 'Pulumi.garage.yaml'}: valid: {RK1_SUMMARY}\n"), found.stderr
    here = iluvatar("validate", "garage", cwd=project)
    assert here.stdout == f"Pulumi.garage.yaml: valid: {RK1_SUMMARY}\n"
    missing = iluvatar("validate", "homelab", cwd=project)
    assert (missing.returncode, missing.stderr) == (2, "error: no stack 'homelab': Pulumi.homelab.yaml does not exist (stacks here: garage)\n")
    explicit = iluvatar("validate", "rk1", "--project", str(ROOT), cwd=project)
    assert (explicit.returncode, explicit.stdout) == (0, f"{RK1}: valid: {RK1_SUMMARY}\n")


@pytest.mark.parametrize("command", [["validate"], ["render", "--out", "out"], ["diagram", "--out", "x.svg"]], ids=lambda c: c[0])
def test_stack_argument_errors_are_one_line(command: list[str], tmp_path: Path) -> None:
    unknown = iluvatar(*command[:1], "prod", *command[1:], cwd=ROOT)
    assert (unknown.returncode, unknown.stderr) == (2, "error: no stack 'prod': Pulumi.prod.yaml does not exist (stacks here: homelab, rk1)\n")
    none = iluvatar(*command, cwd=ROOT)
    assert none.returncode == 2
    assert none.stderr == f"error: {command[0]}: which stack? give a stack name (e.g. homelab) or a Pulumi.<stack>.yaml path\n"
    twice = iluvatar(*command[:1], "rk1", "--stack", "homelab", *command[1:], cwd=ROOT)
    assert (twice.returncode, twice.stderr) == (2, "error: give the stack once: 'rk1' or --stack 'homelab'\n")
    no_project = iluvatar(*command[:1], "rk1", "--project", str(tmp_path / "gone"), *command[1:], cwd=ROOT)
    assert (no_project.returncode, no_project.stderr) == (2, f"error: --project {tmp_path / 'gone'}: no such folder\n")
    assert not (ROOT / "out").exists() and not (ROOT / "x.svg").exists()


def test_the_older_stack_option_still_works(tmp_path: Path) -> None:
    result = iluvatar("render", "--stack", "rk1", "--out", str(tmp_path / "out"), cwd=ROOT)
    assert (result.returncode, result.stdout) == (0, f"rendered stack rk1 to {tmp_path / 'out'}: {files_in(tmp_path / 'out')} files\n")


@pytest.mark.parametrize("buffered", [True, False], ids=["buffered", "PYTHONUNBUFFERED"])
def test_output_is_whole_in_a_file_and_a_reader_that_leaves_ends_the_command_quietly(tmp_path: Path, buffered: bool) -> None:
    """The command exits without the interpreter's teardown (iluvatar.cli.run): what it printed is flushed first,
    and a reader that has gone (`| head`) ends it by SIGPIPE, as it ends other Unix tools, not with a traceback."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"} | ({} if buffered else {"PYTHONUNBUFFERED": "1"})
    out = tmp_path / "out.txt"
    with out.open("w") as sink:
        done = subprocess.run([str(ILUVATAR), "validate", "rk1"], cwd=ROOT, stdout=sink, env=env, timeout=60, check=False)
    assert done.returncode == 0
    assert out.read_text() == f"{RK1.name}: valid: {RK1_SUMMARY}\n"
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the command writes a byte
    try:
        gone = subprocess.run([str(ILUVATAR), "validate", "rk1"], cwd=ROOT, stdout=write, stderr=subprocess.PIPE, env=env, timeout=60, check=False)
    finally:
        os.close(write)
    assert (gone.returncode, gone.stderr) == (-signal.SIGPIPE, b"")
