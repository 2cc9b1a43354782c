"""The `iluvatar` command as a user runs it: the console script from any folder, each command taking
a stack name or a stack file path, exit codes and messages, no traceback."""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from iluvatar import cli
from stacks import errors, load, read_stack_file, releases, rules
from tests.edit import HOMELAB, HOMELAB_SECRETS, MINIMAL, RK1, ROOT, edit, homelab_doc, write_stack
from tests.stacks.test_secrets import HOMELAB_COMMANDS

# The console script pyproject.toml declares, as `uv sync` installs it beside this Python.
ILUVATAR = Path(sys.executable).parent / "iluvatar"
# What `validate` says of each shipped stack after its first line (`<path>: valid`): a line per section it has.
HOMELAB_SUMMARY = """\
  network: LAN 192.168.0.0/24 (iluvatar.home.arpa), gateway 192.168.0.1, DNS 192.168.0.1; DHCP 192.168.0.100-192.168.0.199; load balancers 192.168.0.220-192.168.0.239; 1 VLAN: iot 192.168.20.0/24 (id 20); public zone example.com
  nodes: 8 (Ainur 1 valar + 2 maiar; Arda 3 valinor + 2 istari)
  Ainur: k3s v1.35.8+k3s1, API VIP 192.168.0.10, DHCP/TFTP/HTTP/DNS at 192.168.0.14 (netboot dhcp, leases of 12h; routerPool none: no other DHCP server's lease held), Git mirror at 192.168.0.15; Secrets encrypted at rest
  Arda: arda, Talos v1.14.1, Kubernetes v1.35.1, API VIP 192.168.0.20; volumes encrypted with LUKS2 (unlocked through the Ainur's KMS); Cilium 1.18.4 with Hubble
  apps: 7 (home-assistant, jellyfin, blog, grafana, headlamp, minecraft, mosquitto); 1 external; raw ports: minecraft at 192.168.0.220 (25565/tcp, 19132/udp); mosquitto at 192.168.0.221 (1883/tcp, 8883/tcp); on a machine's own network: home-assistant on gandalf (8123/tcp, 5353/udp, 1900/udp, 21063/tcp); pods admitted: mosquitto from namespace home-automation (1883/tcp, 8883/tcp)
  app secrets: home-assistant WEATHER_API_KEY (set by you); jellyfin API_KEY (generated, 32 characters); blog DATABASE_PASSWORD (generated, 32 characters)
  edge: public ingress cloudflare-tunnel, public DNS cloudflare (account 0123456789abcdef0123456789abcdef); envoy-internal 192.168.0.238, envoy-external 192.168.0.239
  GitOps: https://github.com/example/homelab.git at main, apps under kubernetes/apps/; Argo CD chart 10.8.0
  storage: Arda ceph-block (default), ceph-filesystem, local-path, Ceph keeping 3 copies; Ainur longhorn (default), the Ainur's own claims on longhorn-encrypted
  monitoring: Prometheus keeps 30d on 50Gi; alerts by ntfy to https://ntfy.sh/iluvatar-example-alerts
  logs: VictoriaLogs on Arda keeps 14d on 20Gi (ceph-block); the Pis send to 192.168.0.236
  identity: sign-in through github of orgs example (Dex at 192.168.0.16), 2 groups bound to cluster roles
  backup: to S3 s3+http://192.168.0.40:9000/homelab (region us-east-1); etcd snapshots of Arda and the Ainur (0 */6 * * *; k3s keeps the newest 28); 4 app volumes (home-assistant's at 0 3 * * *, minecraft's at 45 3 * * *, mosquitto's at 15 3 * * *, keeping the newest of each of the last 7 days, 4 weeks and 6 months; jellyfin's at 30 3 * * *, keeping the newest of each of the last 7 days, 4 weeks and 3 months); restore drill (30 4 * * 0) of volumes, Arda's etcd, the Ainur's etcd, the KMS key, alert when none passed in 8d
"""
RK1_SUMMARY = """\
  network: LAN 10.10.0.0/24 (turing.home.arpa), gateway 10.10.0.1, DNS 10.10.0.1, 9.9.9.9; DHCP 10.10.0.100-10.10.0.199; load balancers 10.10.0.200-10.10.0.219
  nodes: 4 (no Ainur; Arda 3 valinor + 1 istari)
  Arda: turing, Talos v1.14.1, Kubernetes v1.35.1, API VIP 10.10.0.10; the control planes run workloads too; Cilium 1.18.4 with Hubble
  apps: 2 (grafana, home-assistant); 0 external
  edge: public ingress none, public DNS none; envoy-internal 10.10.0.218, LAN resolver 10.10.0.217
  GitOps: https://github.com/example/turing-pi.git at main, apps under apps/; Argo CD chart 10.8.0
  storage: Arda ceph-block (default), local-path, Ceph keeping 3 copies
  monitoring: Prometheus keeps 15d on 20Gi; alerts by webhook to http://10.10.0.5:8080/alerts
  logs: VictoriaLogs on Arda keeps 14d on 20Gi (ceph-block)
"""


def rendered(stack: str, out: str, files: int, sbc: str | None = None, pis: str | None = None) -> str:
    """What `render` prints for a stack with no secret to set: the count, then the next steps."""
    lines = [
        f"rendered stack {stack} to {out}: {files} files",
        "next:",
        f"  read {out}/plan.txt: every resource `pulumi up` would create, and what each waits for",
    ]
    if pis is not None:
        lines.append(
            f"  flash each Pi ({pis}) with Ubuntu Server, then its {out}/ainur/<pi>.user-data and .network-config (docs/layers/ainur.md#flashing-the-pis)"
        )
    if sbc is not None:
        lines.append(
            f"  flash each SBC with its Talos disk image in {out}/flash/disk-images.csv, after sending its schematic "
            f"({out}/flash/schematic-{sbc}.yaml) to Image Factory (docs/bring-up.md#1-render)"
        )
    lines.append(f"  then: `pulumi stack select --create {stack}` (makes the stack the first time), `pulumi preview`, `pulumi up` (docs/bring-up.md)")
    return "\n".join(lines) + "\n"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "iluvatar", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)


def files_in(folder: Path) -> int:
    """How many files a render wrote (the count its last line must report)."""
    return sum(1 for p in folder.rglob("*") if p.is_file())


def iluvatar(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The installed `iluvatar` command, run from `cwd`."""
    return subprocess.run([str(ILUVATAR), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


Here = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def here(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Here:
    """`iluvatar ARGS` run from `cwd` in this process: `cli.run`, the console script and `python -m iluvatar`, is `main()`
    then an exit with what it returned, after flushing what it printed. The stack lookup reads the working folder
    (`Path.cwd()`), as in a process. Each command and each exit status stays a process at least once in this file (the
    command's start, exit and streams are themselves a check); the other cases of the same lookup run here."""

    def run_here(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        monkeypatch.chdir(cwd)
        capsys.readouterr()
        code = cli.main(list(args))
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(["iluvatar", *args], code, out, err)

    return run_here


def test_both_stacks_are_valid_once_their_secrets_are_set(tmp_path: Path, here: Here) -> None:
    result = run("validate", RK1.name)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{RK1.name}: valid\n{RK1_SUMMARY}"
    # The homelab ships without its secrets (no user could open another's ciphertext): validate names each to set.
    shipped = here("validate", HOMELAB.name, cwd=ROOT)
    assert (shipped.returncode, shipped.stdout) == (1, "")
    assert shipped.stderr.splitlines() == [f"{HOMELAB.name}: 5 problems:", *(f"  {s}" for s in read_stack_file(HOMELAB).unset_secrets())]
    assert [line.split("run `", 1)[1].rstrip("`") for line in shipped.stderr.splitlines()[1:]] == HOMELAB_COMMANDS
    set_ = write_stack(tmp_path, homelab_doc(), stack="homelab")
    result = here("validate", str(set_), cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{set_}: valid\n{HOMELAB_SUMMARY}"


def test_validate_prints_a_warning_and_still_passes(tmp_path: Path) -> None:
    # stacks.warn: both day fields restricted run on either (tests/fixtures/warned_stacks.yaml pins every warning).
    path = write_stack(tmp_path, edit(homelab_doc(), {"iluvatar:apps[0].backup.schedule": "0 2 1-7 * 6"}), stack="homelab")
    result = run("validate", str(path))
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines()[0] == f"{path}: valid"
    assert [line for line in result.stdout.splitlines() if not line.startswith("  ")][1:] == [
        "warning: iluvatar:apps[0].backup.schedule: 0 2 1-7 * 6 runs on days 1-7 of the month and on every Saturday, not only "
        "where they meet: cron runs it on a day either field matches (248 days in 2026 and 2027); for one of them, write * in "
        "the other field"
    ]


def test_validate_prints_one_warning_for_one_device_that_three_keys_name(tmp_path: Path, here: Here) -> None:
    # The NAS at an address the router lends, serving the backups, the NFS class and the DNS: one device, one lease, one
    # warning naming the three keys (tests/fixtures/warned_stacks.yaml pins its text), not three.
    nas = {
        "iluvatar:ainur.netboot.mode": "proxy",
        "iluvatar:network.dns": ["192.168.0.150"],
        "iluvatar:storage.nfs": {"server": "192.168.0.150", "share": "/volume1/kubernetes"},
        "iluvatar:backup.target": "s3+http://192.168.0.150:9000/homelab",
    }
    result = here("validate", str(write_stack(tmp_path, edit(homelab_doc(), nas), stack="homelab")), cwd=ROOT)
    assert (result.returncode, result.stderr) == (0, "")
    warned = [line for line in result.stdout.splitlines() if line.startswith("warning: ")]
    assert [w.split(": ", 2)[1] for w in warned] == ["iluvatar:backup.target"]
    assert "and storage.nfs.server and network.dns[0] name the same device" in warned[0]


_EITHER_DAY = (
    "warning: iluvatar:apps[0].backup.schedule: 0 2 1-7 * 6 runs on days 1-7 of the month and on every Saturday, not only "
    "where they meet: cron runs it on a day either field matches (248 days in 2026 and 2027); for one of them, write * in "
    "the other field"
)


def test_validate_prints_the_warnings_when_only_secrets_are_missing(tmp_path: Path) -> None:
    # A new user's first run: no secret set yet. The stack is otherwise whole, so its warnings are said after the
    # problems, and validate still fails until the secrets are set.
    doc = edit(homelab_doc(), {"iluvatar:apps[0].backup.schedule": "0 2 1-7 * 6"})
    for key in HOMELAB_SECRETS:
        del doc["config"][key]
    path = write_stack(tmp_path, doc, stack="homelab")
    result = run("validate", str(path))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"{path}: 5 problems:", *(f"  {s}" for s in read_stack_file(path).unset_secrets())]
    assert result.stdout.splitlines() == [_EITHER_DAY]
    # Beside another problem the stack is not whole: its warnings wait until it is.
    doc = edit(doc, {"iluvatar:nodes[5].mac": "xx"})
    path = write_stack(tmp_path, doc, stack="homelab")
    result = run("validate", str(path))
    assert (result.returncode, result.stdout) == (1, "")
    assert "iluvatar:nodes[5].mac: " in result.stderr


def test_the_minimal_example_is_valid_as_it_ships() -> None:
    """It needs no secret: one Pi and one machine, no layer that takes a credential."""
    result = run("validate", str(MINIMAL.relative_to(ROOT)))
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == (
        "examples/Pulumi.minimal.yaml: valid\n"
        "  network: LAN 192.168.1.0/24 (lab.home.arpa), gateway 192.168.1.1, DNS 192.168.1.1; DHCP 192.168.1.100-192.168.1.199; load balancers 192.168.1.220-192.168.1.239\n"
        "  nodes: 2 (Ainur 1 valar + 0 maiar; Arda 1 valinor + 0 istari)\n"
        "  Ainur: k3s v1.35.8+k3s1, API VIP 192.168.1.10, DHCP/TFTP/HTTP/DNS at 192.168.1.12 (netboot dhcp, leases of 12h; the router's "
        "pool 192.168.1.240-192.168.1.254 kept apart); Secrets encrypted at rest\n"
        "  Arda: arda, Talos v1.14.1, Kubernetes v1.35.1, API VIP 192.168.1.13; the control planes run workloads too; volumes encrypted "
        "with LUKS2 (unlocked through the Ainur's KMS); Cilium 1.18.4 with Hubble\n"
    )


def test_invalid_stack_exits_1_with_every_problem(tmp_path: Path) -> None:
    doc = edit(homelab_doc(), {"iluvatar:nodes[3].ip": "192.168.1.5", "iluvatar:nodes[5].mac": "xx"})
    path = write_stack(tmp_path, doc, stack="bad")
    result = run("validate", str(path))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{path}: 2 problems:",
        "  iluvatar:nodes[3].ip: 192.168.1.5 is outside network.lan 192.168.0.0/24; write an address inside network.lan "
        "192.168.0.0/24, outside network.dhcpRange and network.loadBalancerPool, e.g. 192.168.0.2",
        "  iluvatar:nodes[5].mac: xx is not a MAC address (e.g. d8:3a:dd:12:34:56)",
    ]
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_missing_or_non_yaml_file_exits_2(tmp_path: Path, here: Here) -> None:
    missing = run("validate", str(tmp_path / "Pulumi.none.yaml"))
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"error: {tmp_path / 'Pulumi.none.yaml'}: no such stack file"
    bad = tmp_path / "Pulumi.bad.yaml"
    bad.write_text("config: {iluvatar:nodes: [\n")
    result = here("validate", str(bad), cwd=ROOT)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {bad}: not valid YAML at line")
    assert "Traceback" not in result.stderr


def test_bad_arguments_exit_2() -> None:
    assert run().returncode == 2
    assert run("validate").returncode == 2
    assert run("frobnicate").returncode == 2


# What a stack's loader brings (~0.3 s of CPU a process): the commands that read no stack must not pay it.
STACK_LOADING = ("pydantic", "jsonschema", "stacks.model", "stacks.load", "stacks.chart_values")


def test_the_commands_that_read_no_stack_load_neither_the_model_nor_the_loader() -> None:
    """`--help`, a usage error and `iluvatar power bmc` (run by `pulumi up` for each BMC machine) start without them.

    A fresh interpreter: this one has long loaded everything. The CLI module itself, and `iluvatar power` with its plan
    (plans.power reads the model for its annotations only), are what those commands import.
    """
    probe = f"import sys, iluvatar.cli, iluvatar.power; print(sorted(m for m in {STACK_LOADING!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout == "[]\n"
    # The class the CLI's error handler catches (from stacks.errors) is the one the loader raises.
    assert errors.StackFileError is load.StackFileError


def helped_commands(text: str) -> list[str]:
    """The commands `iluvatar --help` lists, in its order (the `COMMAND` block: one indented name a command)."""
    block = text.split("\n  COMMAND\n", 1)[1].split("\n\n", 1)[0]
    return [line.split()[0] for line in block.splitlines() if re.match(r"^    \S", line)]


def documented_commands(text: str) -> list[str]:
    """The commands docs/cli.md's table lists: a row a command, `iluvatar NAME ...` in its first cell."""
    return re.findall(r"^\| `iluvatar ([a-z]+)\b", text, re.MULTILINE)


def test_console_script_is_installed_and_its_help_lists_the_commands_the_cli_page_does() -> None:
    result = subprocess.run([str(ILUVATAR), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: iluvatar [-h] [--version] COMMAND ...")
    listed = helped_commands(result.stdout)
    assert listed == [
        "init",
        "validate",
        "render",
        "diagram",
        "scaffold",
        "versions",
        "upgrader",
        "schema",
        "reference",
        "power",
        "discover",
        "recover",
        "doctor",
    ]
    assert sorted(documented_commands((ROOT / "docs" / "cli.md").read_text())) == sorted(listed)
    # The lookup of a stack name is said where every command's help ends.
    assert "looked up in the current folder first, then in the project" in result.stdout


def test_the_command_lists_are_read_as_written() -> None:
    assert helped_commands("usage\n\npositional arguments:\n  COMMAND\n    a     x\n          more\n    bb    y\n\noptions:") == ["a", "bb"]
    assert documented_commands("| command | what |\n|---|---|\n| `iluvatar a STACK` | x |\n| `iluvatar bb` | y |\n`iluvatar c`") == ["a", "bb"]


def test_version_names_the_package_and_the_releases_from_the_tables() -> None:
    result = run("--version")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines() == [
        f"iluvatar {importlib.metadata.version('iluvatar')}",
        "new stacks start from Talos v1.14.1, Kubernetes v1.35.1, k3s v1.35.8+k3s1",
        "validation takes Talos 1.12 (Kubernetes 1.30 to 1.35), 1.13 (Kubernetes 1.31 to 1.36), 1.14 (Kubernetes 1.32 to 1.37) (docs/reference/stack.md#versions)",
    ]


def test_the_version_follows_the_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(rules.TALOS_KUBERNETES, (1, 15), (33, 38))
    monkeypatch.setattr(releases, "TALOS", "v1.15.0")
    assert cli.version().splitlines()[1:] == [
        "new stacks start from Talos v1.15.0, Kubernetes v1.35.1, k3s v1.35.8+k3s1",
        "validation takes Talos 1.12 (Kubernetes 1.30 to 1.35), 1.13 (Kubernetes 1.31 to 1.36), 1.14 (Kubernetes 1.32 to 1.37), 1.15 (Kubernetes 1.33 to 1.38)"
        " (docs/reference/stack.md#versions)",
    ]


def test_a_stack_name_works_from_any_folder(tmp_path: Path) -> None:
    """Outside any Pulumi project, a stack name means a stack of this checkout; paths stay relative to the folder."""
    assert not any((folder / "Pulumi.yaml").exists() for folder in (tmp_path, *tmp_path.parents))
    validated = iluvatar("validate", "rk1", cwd=tmp_path)
    assert (validated.returncode, validated.stdout) == (0, f"{RK1}: valid\n{RK1_SUMMARY}"), validated.stderr
    result = iluvatar("render", "rk1", "--out", "out", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, rendered("rk1", "out", files_in(tmp_path / "out"), sbc="rk1")), result.stderr
    assert (tmp_path / "out" / "talos" / "talos-1.patch.yaml").is_file()
    drawn = iluvatar("diagram", "rk1", "--out", "rk1.svg", cwd=tmp_path)
    assert (drawn.returncode, drawn.stdout) == (0, "drew stack rk1 to rk1.svg\n"), drawn.stderr
    assert (tmp_path / "rk1.svg").read_text().lstrip().startswith("<?xml")


def test_every_command_takes_a_stack_file_path(tmp_path: Path, here: Here) -> None:
    copy = tmp_path / "Pulumi.lab.yaml"
    shutil.copy(RK1, copy)
    validated = here("validate", "Pulumi.lab.yaml", cwd=tmp_path)
    assert (validated.returncode, validated.stdout) == (0, f"Pulumi.lab.yaml: valid\n{RK1_SUMMARY}")
    absolute = here("validate", str(copy), cwd=ROOT)
    assert (absolute.returncode, absolute.stdout) == (0, f"{copy}: valid\n{RK1_SUMMARY}")
    result = iluvatar("render", "./Pulumi.lab.yaml", "--out", "out", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, rendered("lab", "out", files_in(tmp_path / "out"), sbc="rk1")), result.stderr
    drawn = iluvatar("diagram", "Pulumi.lab.yaml", "--out", "lab.svg", cwd=tmp_path)
    assert drawn.returncode == 0, drawn.stderr


def test_stack_names_resolve_in_the_nearest_project_folder(tmp_path: Path, here: Here) -> None:
    """Inside a Pulumi project (a folder holding Pulumi.yaml, or one below it), names are its stacks, as for `pulumi`."""
    project = tmp_path / "my-homelab"
    (project / "docs").mkdir(parents=True)
    (project / "Pulumi.yaml").write_text("name: iluvatar\nruntime: python\n")
    shutil.copy(RK1, project / "Pulumi.garage.yaml")
    found = iluvatar("validate", "garage", cwd=project / "docs")
    assert (found.returncode, found.stdout) == (0, f"{project / 'Pulumi.garage.yaml'}: valid\n{RK1_SUMMARY}"), found.stderr
    found_here = here("validate", "garage", cwd=project)
    assert found_here.stdout == f"Pulumi.garage.yaml: valid\n{RK1_SUMMARY}"
    missing = here("validate", "homelab", cwd=project)
    assert (missing.returncode, missing.stderr) == (2, "error: no stack 'homelab': Pulumi.homelab.yaml does not exist (stacks here: garage)\n")
    typo = here("validate", "garge", cwd=project)
    assert (typo.returncode, typo.stderr) == (
        2,
        "error: no stack 'garge': Pulumi.garge.yaml does not exist (stacks here: garage); did you mean garage?\n",
    )
    (project / "Pulumi.garage.yaml").unlink()
    none = iluvatar("validate", "garage", cwd=project)  # a process: the message names the installed command
    assert (none.returncode, none.stderr) == (
        2,
        f"error: no stack 'garage': Pulumi.garage.yaml does not exist (stacks here: none); write it with `{ILUVATAR} init garage`\n",
    )
    shutil.copy(RK1, project / "Pulumi.garage.yaml")
    explicit = here("validate", "rk1", "--project", str(ROOT), cwd=project)
    assert (explicit.returncode, explicit.stdout) == (0, f"{RK1}: valid\n{RK1_SUMMARY}")


def test_a_stack_name_is_looked_up_in_the_current_folder_first(tmp_path: Path, here: Here) -> None:
    """`init mylab` writes Pulumi.mylab.yaml here, with no Pulumi.yaml: `validate mylab` finds it, not the checkout's."""
    assert not any((folder / "Pulumi.yaml").exists() for folder in (tmp_path, *tmp_path.parents))
    shutil.copy(RK1, tmp_path / "Pulumi.mylab.yaml")
    found = iluvatar("validate", "mylab", cwd=tmp_path)
    assert (found.returncode, found.stdout) == (0, f"Pulumi.mylab.yaml: valid\n{RK1_SUMMARY}"), found.stderr
    # Here first: a stack of this folder named as one of the checkout's is this folder's.
    (tmp_path / "Pulumi.homelab.yaml").write_text(RK1.read_text())
    mine = here("validate", "homelab", cwd=tmp_path)
    assert (mine.returncode, mine.stdout) == (0, f"Pulumi.homelab.yaml: valid\n{RK1_SUMMARY}"), mine.stderr
    # Inside a project, here and then the project folder; neither has it: both are named, with what each has.
    project = tmp_path / "project"
    (project / "sub").mkdir(parents=True)
    (project / "Pulumi.yaml").write_text("name: iluvatar\nruntime: python\n")
    shutil.copy(RK1, project / "Pulumi.garage.yaml")
    shutil.copy(RK1, project / "sub" / "Pulumi.here.yaml")
    assert here("validate", "here", cwd=project / "sub").stdout == f"Pulumi.here.yaml: valid\n{RK1_SUMMARY}"
    missing = here("validate", "nope", cwd=project / "sub")
    assert (missing.returncode, missing.stderr) == (
        2,
        f"error: no stack 'nope': Pulumi.nope.yaml is neither here nor in {project} (stacks here: here; in {project}: garage)\n",
    )


@pytest.mark.parametrize("command", [["validate"], ["render", "--out", "out"], ["diagram", "--out", "x.svg"]], ids=lambda c: c[0])
def test_stack_argument_errors_are_one_line(command: list[str], tmp_path: Path, here: Here) -> None:
    unknown = iluvatar(*command[:1], "prod", *command[1:], cwd=ROOT)  # each command's refusal as a process once
    assert (unknown.returncode, unknown.stderr) == (2, "error: no stack 'prod': Pulumi.prod.yaml does not exist (stacks here: homelab, rk1)\n")
    none = here(*command, cwd=ROOT)
    assert none.returncode == 2
    assert none.stderr == f"error: {command[0]}: which stack? give a stack name (e.g. homelab) or a Pulumi.<stack>.yaml path\n"
    twice = here(*command[:1], "rk1", "--stack", "homelab", *command[1:], cwd=ROOT)
    assert (twice.returncode, twice.stderr) == (2, "error: give the stack once: 'rk1' or --stack 'homelab'\n")
    no_project = here(*command[:1], "rk1", "--project", str(tmp_path / "gone"), *command[1:], cwd=ROOT)
    assert (no_project.returncode, no_project.stderr) == (2, f"error: --project {tmp_path / 'gone'}: no such folder\n")
    assert not (ROOT / "out").exists() and not (ROOT / "x.svg").exists()


def test_the_older_stack_option_still_works(tmp_path: Path, here: Here) -> None:
    # `--stack` given to the installed command is test_stack_argument_errors_are_one_line's; a render of rk1 as a process
    # the two tests above.
    result = here("render", "--stack", "rk1", "--out", str(tmp_path / "out"), cwd=ROOT)
    assert (result.returncode, result.stdout) == (0, rendered("rk1", str(tmp_path / "out"), files_in(tmp_path / "out"), sbc="rk1"))


@pytest.mark.parametrize("buffered", [True, False], ids=["buffered", "PYTHONUNBUFFERED"])
def test_output_is_whole_in_a_file_and_a_reader_that_leaves_ends_the_command_quietly(tmp_path: Path, buffered: bool) -> None:
    """The command exits without the interpreter's teardown (iluvatar.cli.run): what it printed is flushed first,
    and a reader that has gone (`| head`) ends it by SIGPIPE, as it ends other Unix tools, not with a traceback."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"} | ({} if buffered else {"PYTHONUNBUFFERED": "1"})
    out = tmp_path / "out.txt"
    with out.open("w") as sink:
        done = subprocess.run([str(ILUVATAR), "validate", "rk1"], cwd=ROOT, stdout=sink, env=env, timeout=60, check=False)
    assert done.returncode == 0
    assert out.read_text() == f"{RK1.name}: valid\n{RK1_SUMMARY}"
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the command writes a byte
    try:
        gone = subprocess.run([str(ILUVATAR), "validate", "rk1"], cwd=ROOT, stdout=write, stderr=subprocess.PIPE, env=env, timeout=60, check=False)
    finally:
        os.close(write)
    assert (gone.returncode, gone.stderr) == (-signal.SIGPIPE, b"")


def test_the_next_steps_flash_the_pis_with_cards_and_set_the_netbooting_ones_to_boot_from_the_network() -> None:
    # A Pi that netboots (its bootloader file netboot/pis/<pi>/bootconf.txt) has no card to flash, though its seed is
    # rendered beside the others'.
    files = {
        "ainur/ash.user-data": "",
        "ainur/elm.user-data": "",
        "ainur/oak.user-data": "",
        "netboot/pis/elm/bootconf.txt": "",
        "netboot/pis/elm/boot.cmdline.txt": "",
    }
    out = Path("render/base")
    assert cli.next_steps("base", out, files, change=False, secrets=False) == [
        "read render/base/plan.txt: every resource `pulumi up` would create, and what each waits for",
        "flash each Pi (ash, oak) with Ubuntu Server, then its render/base/ainur/<pi>.user-data and .network-config "
        "(docs/layers/ainur.md#flashing-the-pis)",
        "set each Pi with no card (elm) to boot from the network, once, with its render/base/netboot/pis/<pi>/bootconf.txt "
        "(docs/layers/ainur.md#from-a-pi-with-no-card-to-a-maia-in-the-cluster)",
        "then: `pulumi stack select --create base` (makes the stack the first time), `pulumi preview`, `pulumi up` (docs/bring-up.md)",
    ]
