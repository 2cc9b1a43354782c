"""`iluvatar init`: a new stack from flags or answers, derived from the LAN, in Pulumi's form, never one that does not
validate; each bad flag refused in one line naming it, the value as given and the fix."""

from __future__ import annotations

import io
import os
import pty
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from iluvatar import cli, init
from stacks import load_stack_file, netboot_mode, read_stack_file
from stacks.load import load_yaml
from tests.edit import MINIMAL, ROOT
from tests.stacks.test_stack_form import SALT_LINE, changed, pulumi_writes
from tools.gotools import build
from tools.yaml_ls import language_server

ILUVATAR = Path(sys.executable).parent / "iluvatar"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK0wmN/Cr3JXqmLW7u+g9pTh+wyqDHpSQEIQczXkVx9q you@laptop"
PI = "name=pi,mac=d8:3a:dd:10:00:01,role=valar,board=rpi5"
NODE = "name=node,mac=a8:b8:e0:20:00:01,role=valinor,board=generic-x86"
# The command examples/Pulumi.minimal.yaml is the output of (examples/README.md says it).
MINIMAL_FLAGS = [
    "--lan",
    "192.168.1.0/24",
    "--dhcp-mode",
    "dhcp",
    "--router-pool",
    "192.168.1.240-192.168.1.254",
    "--machine",
    PI,
    "--machine",
    NODE,
    "--ssh-key",
    KEY,
]


def iluvatar(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ILUVATAR), *args], cwd=cwd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


@pytest.fixture
def here(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Callable[..., subprocess.CompletedProcess[str]]:
    """`iluvatar ARGS` run from `cwd` in this process, as the installed command runs it with no terminal (`cli.run` exits
    with what `main` returns, after what it printed): for the tests of what a command writes and says, all but the
    command name init's next steps print (`cli._command_name` reads the process's argv[0]). The commands as processes
    (their start, exit status, streams and the name init prints) are test_init_prints_what_it_wrote_and_the_next_steps',
    test_the_secrets_a_stack_needs_come_before_validate's, test_the_stack_and_the_key_file_are_checked_too's and the
    newcomer's at a terminal."""
    monkeypatch.setattr(sys, "stdin", io.StringIO())  # as subprocess.DEVNULL: no terminal, init asks nothing

    def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        monkeypatch.chdir(cwd)
        capsys.readouterr()
        code = cli.main(list(args))
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(["iluvatar", *args], code, out, err)

    return run


def answers(**given: object) -> init.Answers:
    machines = tuple(init.parse_machine(m) for m in given.pop("machines", [PI, NODE]))  # type: ignore[attr-defined]
    return init.Answers(**{"stack": "lab", "lan": "192.168.1.0/24", "ssh_key": KEY, "machines": machines, **given})  # type: ignore[arg-type]


# --- The file ----------------------------------------------------------------------------------------------------


def test_the_minimal_example_is_what_init_writes(tmp_path: Path, here: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    out = tmp_path / "Pulumi.minimal.yaml"
    result = here("init", "minimal", "--out", str(out), *MINIMAL_FLAGS, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    written, example = out.read_text().splitlines(), MINIMAL.read_text().splitlines()
    # Only the header differs: it names the schema from where the file is (outside the checkout, the copy beside it).
    assert (written[0], example[0]) == ("# yaml-language-server: $schema=./stack.schema.json", init.schema_header(MINIMAL))
    assert (tmp_path / "stack.schema.json").read_bytes() == init.SCHEMA.read_bytes()
    assert written[1:] == example[1:]
    assert example[0] == "# yaml-language-server: $schema=../stacks/stack.schema.json"


def test_the_schema_reference_survives_the_move_into_your_own_repository(
    tmp_path: Path, here: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    """A stack file written outside the checkout names no path of this clone: it names the schema's copy written beside
    it, relatively, so moved with its folder (into the user's own Git repository, another machine) the real
    yaml-language-server still finds the schema and checks the file as the user types."""
    lab = tmp_path / "lab"
    lab.mkdir()
    result = here("init", "lab", "--out", str(lab / "Pulumi.lab.yaml"), *MINIMAL_FLAGS, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"wrote {lab / 'stack.schema.json'}: the editor schema the stack file names" in result.stdout
    assert str(ROOT) not in (lab / "Pulumi.lab.yaml").read_text()
    moved = tmp_path / "elsewhere" / "homelab"
    moved.parent.mkdir()
    lab.rename(moved)
    stack = moved / "Pulumi.lab.yaml"
    broken = stack.read_text().replace("role: valinor", "role: sauron")
    with language_server() as editor:
        shown = editor.diagnostics(stack, broken)
    # Flagged from the schema beside it: the header resolved from the file's new folder.
    assert [(d["message"], d["data"]["schemaUri"]) for d in shown] == [
        ('Value is not accepted. Valid values: "valar", "maiar", "valinor", "istari".', [(moved / "stack.schema.json").as_uri()])
    ]


def test_a_file_of_the_schemas_name_that_is_not_it_is_left_alone(tmp_path: Path, here: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    (tmp_path / "stack.schema.json").write_text('{"title": "mine"}\n')
    result = here("init", "lab", *MINIMAL_FLAGS, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "left stack.schema.json as it is (not this project's stack schema)" in result.stdout
    assert (tmp_path / "stack.schema.json").read_text() == '{"title": "mine"}\n'


def test_init_prints_what_it_wrote_and_the_next_steps(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.yaml").write_text("name: iluvatar\nruntime: python\n")
    result = iluvatar("init", "lab", *MINIMAL_FLAGS, cwd=tmp_path)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == (
        "wrote Pulumi.lab.yaml: 2 machines (Ainur 1 valar + 0 maiar; Arda 1 valinor + 0 istari) on 192.168.1.0/24\n"
        "wrote stack.schema.json: the editor schema the stack file names; keep the two together "
        "(`iluvatar schema --out stack.schema.json` refreshes it)\n"
        "next:\n"
        f"  {ILUVATAR} validate lab\n"
        f"  {ILUVATAR} render lab --out render/lab, then read render/lab/plan.txt\n"
        "  pulumi stack init lab\n"
        "  pulumi preview\n"
        "  on your router: leave its DHCP server on; `pulumi up` says when to turn it off (the step netboot-router-off, right "
        "before the Ainur start lending 192.168.1.100-192.168.1.199 and each machine its address), and waits for it\n"
    )
    validated = iluvatar("validate", "lab", cwd=tmp_path)
    assert validated.returncode == 0, validated.stderr
    # A second init of the same stack is refused: the file is the user's by now.
    again = iluvatar("init", "lab", *MINIMAL_FLAGS, cwd=tmp_path)
    assert (again.returncode, again.stderr) == (2, "error: Pulumi.lab.yaml exists; pass --force to replace it, or pick another stack name\n")
    assert iluvatar("init", "lab", "--force", *MINIMAL_FLAGS, "--domain", "home.example.org", cwd=tmp_path).returncode == 0
    assert "domain: home.example.org" in (tmp_path / "Pulumi.lab.yaml").read_text()


def test_with_no_mode_given_init_writes_proxy_and_says_why(tmp_path: Path, here: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    """`--yes` and no --dhcp-mode: the stack states proxy, the mode that never fights the router, and init says so, and
    what the router needs before `pulumi up`."""
    (tmp_path / "Pulumi.yaml").write_text("name: iluvatar\nruntime: python\n")
    flags = [f for f in MINIMAL_FLAGS if f not in ("--dhcp-mode", "dhcp", "--router-pool", "192.168.1.240-192.168.1.254")]
    result = here("init", "lab", "--yes", *flags, cwd=tmp_path)
    assert (result.returncode, result.stderr) == (0, "")
    lines = result.stdout.splitlines()
    assert lines[1] == (
        "DHCP mode: proxy, as no --dhcp-mode was given: it never fights your router, which keeps the LAN's DHCP "
        "(--dhcp-mode dhcp makes the Ainur the LAN's DHCP server, once the router's is off)"
    )
    assert lines[-1] == (
        "  before `pulumi up`, on your router: keep its DHCP on, its pool 192.168.1.100-192.168.1.199, and add each machine's "
        "MAC and IP as a static lease; and have it hand out 192.168.1.12 as the DNS server, or the internal zone's names "
        "(sign-in, the CA page, internal apps) do not resolve on the LAN (the Ainur answer PXE beside it: "
        "docs/layers/netboot.md#dhcp-modes)"
    )
    text = (tmp_path / "Pulumi.lab.yaml").read_text()
    assert "    netboot: {mode: proxy}\n" in text
    assert "  # the LAN's DHCP (give it each machine's MAC and IP as a static lease); dhcp: the Ainur serve it, router's off.\n" in text
    stack = load_stack_file(tmp_path / "Pulumi.lab.yaml")
    assert stack.ainur is not None and stack.ainur.netboot.mode == "proxy" and "mode" in stack.ainur.netboot.model_fields_set


def test_the_secrets_a_stack_needs_come_before_validate(tmp_path: Path) -> None:
    """validate refuses a stack whose secrets are unset: the next steps set them first, each by its command."""
    flags = ["--gitops", "https://github.com/you/lab.git", "--identity", "static=you@example.org", "--backup", "s3://s3.example.org/lab"]
    result = iluvatar("init", "lab", *MINIMAL_FLAGS, *flags, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[2:] == [
        "next:",
        f"  {ILUVATAR} render lab --out render/lab, then read render/lab/plan.txt",
        f"  cp Pulumi.lab.yaml stack.schema.json {ROOT}/ and run the pulumi commands there: pulumi reads a stack file beside Pulumi.yaml",
        "  pulumi stack init lab",
        "  pulumi config set --secret iluvatar:identityConnectorSecret \"$(htpasswd -nbBC 10 '' '<password>' | tr -d ':\\n')\"",
        "  pulumi config set --secret iluvatar:backupS3AccessKeyId <value>",
        "  pulumi config set --secret iluvatar:backupS3SecretAccessKey <value>",
        f"  {ILUVATAR} validate lab",
        "  pulumi preview",
        "  on your router: leave its DHCP server on; `pulumi up` says when to turn it off (the step netboot-router-off, right "
        "before the Ainur start lending 192.168.1.100-192.168.1.199 and each machine its address), and waits for it",
    ]


def test_a_static_admins_stack_renders_once_its_secret_is_set(tmp_path: Path, here: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    """Offline, the static admin's hash is ciphertext: render goes on, and the hash's form is judged at preview."""
    flags = ["--gitops", "https://github.com/you/lab.git", "--identity", "static=you@example.org"]
    assert here("init", "lab", *MINIMAL_FLAGS, *flags, cwd=tmp_path).returncode == 0
    stack_file = tmp_path / "Pulumi.lab.yaml"
    # What `pulumi config set --secret` writes: the stack's salt, and the value under config.
    stack_file.write_text(SALT_LINE + stack_file.read_text())
    with stack_file.open("a") as f:
        f.write("  iluvatar:identityConnectorSecret:\n    secure: v1:bm9uY2Vub25jZW5v:Y2lwaGVydGV4dGNpcGhlcnRleHQ=\n")
    result = here("render", "lab", "--out", str(tmp_path / "render"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "render" / "plan.txt").is_file()


def test_the_file_is_in_the_form_pulumi_writes(tmp_path: Path) -> None:
    """`pulumi stack init` appends only its salt; `config set` changes only its key (tools/stackfile: Pulumi's marshaler)."""
    tool = build("stackfile")
    out = tmp_path / "Pulumi.lab.yaml"
    every_layer = answers(
        gitops="https://github.com/you/lab.git",
        monitoring="ntfy=https://ntfy.sh/lab-alerts",
        identity="github=you,client-id=Iv1.0123456789abcdef",
        backup="nfs://192.168.1.40/volume1/backups",
        cloudflare="0123456789abcdef0123456789abcdef",
        external_domain="example.com",
        acme_email="you@example.com",
    )
    text, _ = init.build(every_layer, out)
    out.write_text(text)
    initialised = pulumi_writes(tool, "init", str(out))
    assert initialised == text + SALT_LINE
    out.write_text(initialised)
    assert changed(initialised, pulumi_writes(tool, "set", str(out), "iluvatar:nodes[1].ip", "192.168.1.30", "--path")) == [
        '-    - {name: node, role: valinor, arch: amd64, board: generic-x86, mac: "a8:b8:e0:20:00:01", ip: 192.168.1.15, installDisk: /dev/sda}',
        '+    - {name: node, role: valinor, arch: amd64, board: generic-x86, mac: "a8:b8:e0:20:00:01", ip: 192.168.1.30, installDisk: /dev/sda}',
    ]
    assert changed(initialised, pulumi_writes(tool, "secret", str(out), "iluvatar:identityConnectorSecret", "v1:AAAA:BBBB")) == [
        "+  iluvatar:identityConnectorSecret:",
        "+    secure: v1:AAAA:BBBB",
    ]


# --- What is derived ---------------------------------------------------------------------------------------------


def test_a_lan_is_laid_out_as_the_homelab_is() -> None:
    ip = IPv4Address
    # A /24 as the shipped homelab: DHCP .100-.199, load balancers .220-.239, static addresses from .10.
    assert init.layout(IPv4Network("10.20.0.0/24")) == ((ip("10.20.0.100"), ip("10.20.0.199")), (ip("10.20.0.220"), ip("10.20.0.239")), 9)
    # A larger LAN keeps that layout in its first 256 addresses; a smaller one gets the same shares of its own.
    assert init.layout(IPv4Network("10.0.0.0/16")) == ((ip("10.0.0.100"), ip("10.0.0.199")), (ip("10.0.0.220"), ip("10.0.0.239")), 9)
    assert init.layout(IPv4Network("10.0.0.0/25")) == ((ip("10.0.0.50"), ip("10.0.0.99")), (ip("10.0.0.109"), ip("10.0.0.119")), 1)
    assert init.layout(IPv4Network("10.0.0.0/27")) == ((ip("10.0.0.12"), ip("10.0.0.24")), (ip("10.0.0.26"), ip("10.0.0.29")), 1)
    with pytest.raises(ValueError, match="has 14 addresses, too few to lay out"):
        init.layout(IPv4Network("10.0.0.0/28"))


def test_addresses_are_handed_out_in_order_around_what_is_taken() -> None:
    cfg = init.config(
        answers(
            machines=[PI, NODE, "name=w,mac=a8:b8:e0:20:00:02,role=istari,board=generic-x86,ip=192.168.1.14"],
            gitops="https://github.com/you/lab.git",
            identity="static=you@example.org",
            dns="192.168.1.11,9.9.9.9",
        )
    )
    # .11 is a DNS server and .14 a machine's own: each VIP, the service address and each machine skips them.
    assert cfg["iluvatar:ainur"]["vip"] == "192.168.1.10"
    assert [n["ip"] for n in cfg["iluvatar:nodes"]] == ["192.168.1.12", "192.168.1.17", "192.168.1.14"]
    assert (cfg["iluvatar:ainur"]["serviceIp"], cfg["iluvatar:identity"]["ip"], cfg["iluvatar:arda"]["vip"]) == (
        "192.168.1.13",
        "192.168.1.15",
        "192.168.1.16",
    )
    # A worker: the control planes keep to their own work.
    assert "allowSchedulingOnControlPlanes" not in cfg["iluvatar:arda"]


def test_a_full_lan_says_so() -> None:
    small = answers(lan="10.0.0.0/27", dhcp_range="10.0.0.1-10.0.0.20", lb_pool="10.0.0.21-10.0.0.30", machines=[PI])
    with pytest.raises(init.FlagError) as e:
        init.config(small)
    assert e.value.lines == (
        "--lan: has no free static address left for the machines and VIPs; use a larger LAN, or smaller --dhcp-range and --lb-pool",
    )


@pytest.mark.parametrize(
    ("layers", "sections"),
    [
        ({}, []),
        ({"gitops": "https://github.com/you/lab.git"}, ["iluvatar:gitops"]),
        (
            {"gitops": "git@github.com:you/lab.git", "monitoring": "webhook=http://192.168.1.5:8080/alerts"},
            ["iluvatar:gitops", "iluvatar:monitoring"],
        ),
        (
            {"gitops": "https://github.com/you/lab.git", "monitoring": "email=you@example.org,from=lab@example.org,smarthost=smtp.example.org:587"},
            ["iluvatar:gitops", "iluvatar:monitoring"],
        ),
        (
            {"gitops": "https://github.com/you/lab.git", "identity": "github=you,client-id=Iv1.0123456789abcdef,team=admins"},
            ["iluvatar:gitops", "iluvatar:identity"],
        ),
        ({"gitops": "https://github.com/you/lab.git", "backup": "s3+http://192.168.1.40:9000/lab"}, ["iluvatar:gitops", "iluvatar:backup"]),
        (
            {"cloudflare": "0123456789abcdef0123456789abcdef", "external_domain": "example.com", "acme_email": "you@example.com"},
            ["iluvatar:edge", "iluvatar:cloudflare"],
        ),
    ],
    ids=["none", "gitops", "ssh-gitops-webhook", "email", "github", "s3-backup", "cloudflare"],
)
def test_each_layer_makes_a_stack_that_validates(tmp_path: Path, layers: dict[str, str], sections: list[str]) -> None:
    text, sf = init.build(answers(**layers), tmp_path / "Pulumi.lab.yaml")
    assert [
        k
        for k in sf.config
        if k not in ("pulumi:disable-default-providers", "iluvatar:network", "iluvatar:ainur", "iluvatar:arda", "iluvatar:storage", "iluvatar:nodes")
    ] == sections
    (tmp_path / "Pulumi.lab.yaml").write_text(text)
    assert load_stack_file(tmp_path / "Pulumi.lab.yaml").arda.cluster_name == "arda"


def test_a_stack_without_pis_has_no_ainur(tmp_path: Path) -> None:
    cfg = init.config(
        answers(
            machines=[NODE.replace("generic-x86", "rk1"), *(f"name=n{i},mac=02:00:00:00:00:0{i},role=valinor,board=rk1" for i in (2, 3))],
            ssh_key=None,
        )
    )
    assert "iluvatar:ainur" not in cfg and [n["ip"] for n in cfg["iluvatar:nodes"]] == ["192.168.1.11", "192.168.1.12", "192.168.1.13"]
    assert [n["installDisk"] for n in cfg["iluvatar:nodes"]] == ["/dev/mmcblk0"] * 3
    # No Ainur, no KMS, and an rk1 has no TPM: encryption is left off (stacks.encryption would refuse it).
    assert "encryption" not in cfg["iluvatar:arda"]
    assert "iluvatar:storage" not in cfg  # no Pis, no Longhorn claims to encrypt


def test_a_new_stack_with_pis_puts_the_ainurs_claims_on_longhorns_encrypted_class() -> None:
    """On by default for new stacks: a claim's class cannot change once it is made (docs/day2.md)."""
    assert init.config(answers())["iluvatar:storage"] == {"ainur": {"encrypted": True}}


def test_a_new_stack_with_one_valar_seals_the_ainurs_secrets_from_its_first_install() -> None:
    """k3s shares its secrets-encryption key only with servers that join a cluster created with it; on several valar it
    is refused (stacks.rules._counts), so init leaves it out there rather than write a stack that fails."""
    assert init.config(answers())["iluvatar:ainur"]["secretsEncryption"] is True
    three = [PI, *(PI.replace("pi,", f"pi{i},").replace(":01,", f":0{i},") for i in (2, 3))]
    assert "secretsEncryption" not in init.config(answers(machines=[*three, NODE]))["iluvatar:ainur"]


def test_a_new_stack_with_pis_encrypts_its_arda_volumes() -> None:
    """On by default for new stacks: Talos encrypts a volume only when it first formats it (stacks.day2)."""
    assert init.config(answers())["iluvatar:arda"]["encryption"] == {"enabled": True}


@settings(max_examples=300, deadline=None)
@example("A:")  # found by Hypothesis: a plain scalar ending in `:` is a mapping key to YAML
@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=30))
def test_every_value_reads_back_as_written(value: str) -> None:
    """A value in a flag (a name, a URL, a key's comment) is quoted wherever a YAML reader would read it otherwise."""
    assert load_yaml(f"k: {init.scalar(value)}\nf: {init.flow({'v': value})}\n") == {"k": value, "f": {"v": value}}


# --- Bad flags -----------------------------------------------------------------------------------------------------


def test_a_dhcp_mode_stack_from_init_passes_the_first_bring_ups_check(tmp_path: Path, here: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    """`--dhcp-mode dhcp` writes the router's pool it was given, so the preview of the Ainur's first deployment (no
    `dnsmasqConf` yet) finds what it asks (stacks.netboot_mode.check); `none` is written as such."""
    for pool, written in (("192.168.1.240-192.168.1.254", {"start": "192.168.1.240", "end": "192.168.1.254"}), ("none", "none")):
        out = tmp_path / f"{pool}.yaml"
        flags = [*MINIMAL_FLAGS[: MINIMAL_FLAGS.index("--router-pool") + 1], pool, *MINIMAL_FLAGS[MINIMAL_FLAGS.index("--router-pool") + 2 :]]
        result = here("init", "lab", "--out", str(out), *flags, cwd=tmp_path)
        assert (result.returncode, result.stderr) == (0, "")
        assert read_stack_file(out).config["iluvatar:ainur"]["netboot"] == {"mode": "dhcp", "routerPool": written}
        assert netboot_mode.check(load_stack_file(out), None) == []


@pytest.mark.parametrize(
    ("args", "lines"),
    [
        (["--machine", NODE], ["--lan: required: the LAN the machines are on, in CIDR form (e.g. --lan 192.168.0.0/24)"]),
        (["--lan", "10.20.0.0/33", "--machine", NODE], ["--lan 10.20.0.0/33: is not an IPv4 network in CIDR form (e.g. 192.168.0.0/24)"]),
        (["--lan", "10.20.0.1/24", "--machine", NODE], ["--lan 10.20.0.1/24: has host bits set; the network is 10.20.0.0/24"]),
        (
            ["--lan", "10.20.0.0/28", "--machine", NODE],
            ["--lan 10.20.0.0/28: has 14 addresses, too few to lay out; give --dhcp-range and --lb-pool, or use at least a /27"],
        ),
        (["--lan", "10.20.0.0/24"], ["--machine: required, once per machine: name=talos-1,mac=a8:b8:e0:20:00:01,role=valinor,board=generic-x86"]),
        (
            ["--lan", "10.20.0.0/24", "--machine", "name=node,mac=a8:b8:e0:20:00:01,role=valinor"],
            [
                "--machine name=node,mac=a8:b8:e0:20:00:01,role=valinor: board is missing; write it as name=talos-1,mac=a8:b8:e0:20:00:01,role=valinor,board=generic-x86"
            ],
        ),
        (
            ["--lan", "10.20.0.0/24", "--machine", NODE + ",disks=/dev/sdb"],
            [f"--machine {NODE},disks=/dev/sdb: disks is not a machine's key (known: name, mac, role, board, ip, disk, data)"],
        ),
        (
            ["--lan", "10.20.0.0/24", "--machine", NODE + ",ssd"],
            [f"--machine {NODE},ssd: 'ssd' is not key=value; write it as name=talos-1,mac=a8:b8:e0:20:00:01,role=valinor,board=generic-x86"],
        ),
        (["--lan", "10.20.0.0/24", "--machine", NODE + ",name=x"], [f"--machine {NODE},name=x: name is given twice"]),
        (
            ["--lan", "10.20.0.0/24", "--machine", NODE.replace("generic-x86", "nuc")],
            [f"--machine {NODE.replace('generic-x86', 'nuc')}: board=nuc is not a known board (known: generic-arm64, generic-x86, rk1, rpi4, rpi5)"],
        ),
        (
            ["--lan", "10.20.0.0/24", "--machine", NODE.replace("valinor", "worker")],
            [
                f"--machine {NODE.replace('valinor', 'worker')}: role=worker is not a role (valar, maiar: the Ainur's Pis; valinor, istari: Arda's control planes, workers)"
            ],
        ),
        # What only the whole stack shows is the model's message, said against the flag the value came from.
        (
            ["--lan", "10.20.0.0/24", "--machine", NODE.replace("a8:b8:e0:20:00:01", "a8:b8:e0:20:00")],
            [f"--machine {NODE.replace('a8:b8:e0:20:00:01', 'a8:b8:e0:20:00')}: a8:b8:e0:20:00 is not a MAC address (e.g. d8:3a:dd:12:34:56)"],
        ),
        (
            ["--lan", "10.20.0.0/24", "--machine", NODE + ",ip=10.20.1.5"],
            [
                f"--machine {NODE},ip=10.20.1.5: 10.20.1.5 is outside network.lan 10.20.0.0/24; write an address inside network.lan "
                "10.20.0.0/24, outside network.dhcpRange and network.loadBalancerPool, e.g. 10.20.0.2"
            ],
        ),
        (
            ["--lan", "10.20.0.0/24", "--machine", NODE, "--machine", NODE.replace("name=node", "name=node-2").replace(":01", ":02")],
            [
                "--machine: Arda has 2 valinor (control planes); etcd needs an odd number (1, 3 or 5) to keep quorum; add or remove a machine with role: valinor to make it 3 or 1"
            ],
        ),
        (
            [
                "--lan",
                "10.20.0.0/24",
                "--machine",
                NODE.replace("generic-x86", "rk1").replace("valinor", "valar"),
                "--machine",
                NODE.replace(":01", ":02").replace("name=node", "name=n2"),
                "--ssh-key",
                KEY,
            ],
            [
                f"--machine {NODE.replace('generic-x86', 'rk1').replace('valinor', 'valar')}: rk1 cannot run the Ainur (Ubuntu and k3s), "
                "which role valar needs (boards that can: generic-arm64, generic-x86, rpi4, rpi5)"
            ],
        ),
        (
            ["--lan", "10.20.0.0/24", "--machine", NODE, "--gateway", "10.20.1.1"],
            ["--gateway 10.20.1.1: 10.20.1.1 is outside network.lan 10.20.0.0/24; write the router's address, inside network.lan 10.20.0.0/24"],
        ),
        (
            ["--lan", "10.20.0.0/24", "--machine", NODE, "--dhcp-range", "10.20.0.100"],
            ["--dhcp-range 10.20.0.100: write it as START-END, e.g. 192.168.0.100-192.168.0.199"],
        ),
        (
            ["--lan", "10.20.0.0/24", "--machine", PI, "--machine", NODE],
            ["--ssh-key: required with the Ainur (a valar or maiar machine): the public key the Pis let in, e.g. --ssh-key ~/.ssh/id_ed25519.pub"],
        ),
        (
            ["--lan", "10.20.0.0/24", "--machine", NODE, "--monitoring", "ntfy=https://ntfy.sh/lab"],
            [
                "--monitoring ntfy=https://ntfy.sh/lab: needs --gitops <repository URL>: Prometheus, Alertmanager and Grafana are installed by Argo CD from it"
            ],
        ),
        (
            [
                "--lan",
                "10.20.0.0/24",
                "--machine",
                NODE,
                "--gitops",
                "https://github.com/you/lab.git",
                "--monitoring",
                "slack=https://hooks.slack.com/x",
            ],
            [
                "--monitoring slack=https://hooks.slack.com/x: slack is not a receiver (ntfy, webhook or email); write ntfy=https://ntfy.sh/<topic>, webhook=<url> or email=<to>,from=<from>,smarthost=<host:port>"
            ],
        ),
        (
            ["--lan", "10.20.0.0/24", "--machine", NODE, "--gitops", "https://github.com/you/lab.git", "--identity", "static=you@example.org"],
            ["--identity static=you@example.org: needs the Ainur: Dex runs on them; add a --machine with role=valar (a Raspberry Pi)"],
        ),
        (
            [
                "--lan",
                "10.20.0.0/24",
                "--machine",
                PI,
                "--machine",
                NODE,
                "--ssh-key",
                KEY,
                "--gitops",
                "https://github.com/you/lab.git",
                "--identity",
                "github=you",
            ],
            [
                "--identity github=you: client-id is missing: the GitHub OAuth app's client id; write github=<org>,client-id=<OAuth app client id>[,team=<team slug>] or static=<admin e-mail>"
            ],
        ),
        (
            ["--lan", "10.20.0.0/24", "--machine", NODE, "--gitops", "https://github.com/you/lab.git", "--backup", "ftp://nas/backups"],
            [
                "--backup ftp://nas/backups: ftp://nas/backups is neither an NFS export nor an S3 URL (e.g. nfs://192.168.0.40/volume1/backups or s3://s3.example.com/bucket/folder)"
            ],
        ),
        (
            ["--lan", "10.20.0.0/24", "--machine", NODE, "--gitops", "http://github.com/you/lab.git"],
            [
                "--gitops http://github.com/you/lab.git: http://github.com/you/lab.git uses http://; Argo CD is given only https:// or SSH "
                "repositories here (e.g. https://github.com/you/homelab.git or git@github.com:you/homelab.git)"
            ],
        ),
        (
            ["--lan", "10.20.0.0/24", "--machine", NODE, "--cloudflare", "0123456789abcdef0123456789abcdef"],
            [
                "--external-domain: required with --cloudflare: the public zone Cloudflare serves (e.g. example.com)",
                "--acme-email: required with --cloudflare: Let's Encrypt's account e-mail",
            ],
        ),
        (
            ["--lan", "10.20.0.0/24", "--machine", NODE, "--external-domain", "example.com"],
            ["--external-domain: only with --cloudflare <account id>, which serves the public zone"],
        ),
        (
            [
                "--lan",
                "10.20.0.0/24",
                "--machine",
                NODE,
                "--cloudflare",
                "0123",
                "--external-domain",
                "example.com",
                "--acme-email",
                "you@example.com",
            ],
            ["--cloudflare 0123: 0123 is not a well-formed Cloudflare account id (e.g. 32 lower-case hex digits)"],
        ),
        (
            ["--lan", "10.20.0.0/24", "--machine", PI, "--machine", NODE, "--ssh-key", KEY, "--dhcp-mode", "relay"],
            [
                "--dhcp-mode relay: is neither proxy nor dhcp: proxy: your router keeps lending the LAN's addresses; the Ainur answer "
                "only the machines they netboot (nothing to turn off); dhcp: the Ainur are the LAN's DHCP server; your router's "
                "DHCP must be off first, or the LAN has two that fight"
            ],
        ),
        (
            ["--lan", "10.20.0.0/24", "--machine", NODE, "--dhcp-mode", "dhcp"],
            ["--dhcp-mode dhcp: only with the Ainur (a machine with role=valar), which serve DHCP and netboot"],
        ),
        (
            ["--lan", "10.20.0.0/24", "--machine", PI, "--machine", NODE, "--ssh-key", KEY, "--dhcp-mode", "dhcp"],
            [f"--router-pool: required with --dhcp-mode dhcp: {init.ROUTER_POOL}"],
        ),
        (
            ["--lan", "10.20.0.0/24", "--machine", PI, "--machine", NODE, "--ssh-key", KEY, "--router-pool", "none"],
            ["--router-pool none: only with --dhcp-mode dhcp (in proxy mode the router keeps lending)"],
        ),
        (
            ["--lan", "10.20.0.0/24", "--machine", PI, "--machine", NODE, "--ssh-key", KEY, "--dhcp-mode", "dhcp", "--router-pool", "all"],
            ["--router-pool all: write it as START-END, e.g. 192.168.0.100-192.168.0.199"],
        ),
        (
            [
                "--lan",
                "10.20.0.0/24",
                "--machine",
                PI,
                "--machine",
                NODE,
                "--ssh-key",
                KEY,
                "--dhcp-mode",
                "dhcp",
                "--router-pool",
                "10.20.1.100-10.20.1.199",
            ],
            [
                "--router-pool 10.20.1.100-10.20.1.199: 10.20.1.100-10.20.1.199 is not in network.lan 10.20.0.0/24: the router lends "
                "addresses on the LAN the Ainur serve, so the pool it lent is in it. Copy start and end from the router's DHCP "
                "settings (both in 10.20.0.0/24), or say routerPool: none if no DHCP server but the Ainur ever lent on this LAN "
                "(docs/layers/netboot.md#changing-the-dhcp-mode)"
            ],
        ),
    ],
    ids=lambda v: "" if isinstance(v, list) and v and v[0].startswith("--") and len(v) > 2 else None,
)
def test_each_bad_flag_is_one_line_naming_it_and_the_fix(
    tmp_path: Path, args: list[str], lines: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # In this process, as `iluvatar init` runs it with no terminal (`cli.run` exits with what `main` returns): each line
    # is the command's own check. That a refused init is exit status 2 and one line on stderr from the installed
    # command, nothing written, is test_the_stack_and_the_key_file_are_checked_too's, in processes.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "stdin", io.StringIO())
    code = cli.main(["init", "lab", *args])
    out, err = capsys.readouterr()
    assert (code, out, err.splitlines()) == (2, "", [f"error: {line}" for line in lines])
    assert not (tmp_path / "Pulumi.lab.yaml").exists(), "nothing is written from flags that make no valid stack"


def test_the_stack_and_the_key_file_are_checked_too(tmp_path: Path) -> None:
    no_stack = iluvatar("init", *MINIMAL_FLAGS, cwd=tmp_path)
    assert (no_stack.returncode, no_stack.stderr) == (
        2,
        "error: init: which stack? give its name (e.g. iluvatar init mylab): the file is Pulumi.<name>.yaml\n",
    )
    bad_name = iluvatar("init", "org/lab", *MINIMAL_FLAGS, "--out", str(tmp_path / "x.yaml"), cwd=tmp_path)
    assert bad_name.stderr == "error: org/lab: is not a stack name Pulumi takes (letters, digits, '-', '_', '.'; no org or project/)\n"
    keys = tmp_path / "keys.pub"
    keys.write_text(f"{KEY}\n{KEY}\n")
    two = iluvatar("init", "lab", "--lan", "10.20.0.0/24", "--machine", PI, "--machine", NODE, "--ssh-key", str(keys), cwd=tmp_path)
    assert two.stderr == f"error: --ssh-key {keys}: holds 2 lines; give a public key file (id_ed25519.pub), one key a line\n"
    keys.write_text(f"{KEY}\n")
    one = iluvatar("init", "lab", "--lan", "10.20.0.0/24", "--machine", PI, "--machine", NODE, "--ssh-key", str(keys), cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    assert read_stack_file(tmp_path / "Pulumi.lab.yaml").config["iluvatar:ainur"]["sshAuthorizedKeys"] == [KEY]
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir()), "no temporary file is left behind"


# --- Asked at a terminal ---------------------------------------------------------------------------------------------


def test_what_the_flags_leave_out_is_asked_with_the_default_init_would_take() -> None:
    script = {
        "LAN, in CIDR form (e.g. 192.168.0.0/24)": "10.20.0.0/24",
        "machine 1: name": "pi",
        "machine 1: MAC": "d8:3a:dd:10:00:01",
        "machine 1: role (valar, maiar: a Pi of the Ainur; valinor: a control plane; istari: a worker)": "valar",
        "machine 2: name (Enter when done)": "node",
        "machine 2: MAC": "zz",  # a typo: said, and the machine asked again
        "machine 3: name (Enter when done)": "",
        "SSH public key the Pis let in (a key, or its .pub file)": KEY,
        "GitOps repository URL for Argo CD (- for none)": "https://github.com/you/lab.git",
        "sign-in: github=<org>,client-id=<id> or static=<admin e-mail> (- for none)": "static=you@example.org",
    }
    asked: list[tuple[str, str | None]] = []
    said: list[str] = []
    retry = iter(["node", "a8:b8:e0:20:00:01"])

    def ask(question: str, default: str | None) -> str:
        asked.append((question, default))
        if question in ("machine 2: name (Enter when done)", "machine 2: MAC") and sum(q == question for q, _ in asked) == 2:
            return next(retry)
        return script.get(question, default or "")

    got = init.ask_missing(init.Answers(stack="lab"), ask, said.append)
    assert asked == [
        ("LAN, in CIDR form (e.g. 192.168.0.0/24)", None),
        ("router (gateway)", "10.20.0.1"),
        ("DNS servers, comma-separated", "10.20.0.1"),
        ("the LAN's internal domain", "lab.home.arpa"),
        ("DHCP range (the router's or the Ainur's)", "10.20.0.100-10.20.0.199"),
        ("load-balancer pool", "10.20.0.220-10.20.0.239"),
        ("machine 1: name", None),
        ("machine 1: MAC", None),
        ("machine 1: role (valar, maiar: a Pi of the Ainur; valinor: a control plane; istari: a worker)", "valinor"),
        ("machine 1: board (generic-arm64, generic-x86, rk1, rpi4, rpi5)", "rpi5"),
        ("machine 1: IP (Enter: the next free one)", ""),
        ("machine 1: disk the OS installs on, wiped", "/dev/mmcblk0"),
        ("machine 2: name (Enter when done)", ""),
        ("machine 2: MAC", None),
        ("machine 2: role (valar, maiar: a Pi of the Ainur; valinor: a control plane; istari: a worker)", "valinor"),
        ("machine 2: board (generic-arm64, generic-x86, rk1, rpi4, rpi5)", "generic-x86"),
        ("machine 2: IP (Enter: the next free one)", ""),
        ("machine 2: disk the OS installs on, wiped", "/dev/sda"),
        ("machine 2: name (Enter when done)", ""),
        ("machine 2: MAC", None),
        ("machine 2: role (valar, maiar: a Pi of the Ainur; valinor: a control plane; istari: a worker)", "valinor"),
        ("machine 2: board (generic-arm64, generic-x86, rk1, rpi4, rpi5)", "generic-x86"),
        ("machine 2: IP (Enter: the next free one)", ""),
        ("machine 2: disk the OS installs on, wiped", "/dev/sda"),
        ("machine 3: name (Enter when done)", ""),
        ("SSH public key the Pis let in (a key, or its .pub file)", init._default_key()),
        ("DHCP mode (proxy or dhcp)", "proxy"),
        ("GitOps repository URL for Argo CD (- for none)", "-"),
        ("alerts to ntfy=<url>, webhook=<url> or email=<to>,from=<from>,smarthost=<host:port> (- for no monitoring)", "-"),
        ("sign-in: github=<org>,client-id=<id> or static=<admin e-mail> (- for none)", "-"),
        ("backups to nfs://<server>/<export> or s3://<host>/<bucket> (- for none)", "-"),
        ("Cloudflare account id, to publish apps through a tunnel (- for none)", "-"),
    ]
    assert said == [
        "--machine name=node,mac=zz,role=valinor,board=generic-x86,disk=/dev/sda: zz is not a MAC address (e.g. d8:3a:dd:12:34:56); asking for machine 2 again",
        # Before the mode is asked, both explained, one line each.
        "How the Ainur share the LAN's DHCP with your router:",
        "  proxy: your router keeps lending the LAN's addresses; the Ainur answer only the machines they netboot (nothing to turn off)",
        "  dhcp: the Ainur are the LAN's DHCP server; your router's DHCP must be off first, or the LAN has two that fight",
    ]
    assert got.dhcp_mode == "proxy"
    assert [m.given for m in got.machines] == [
        "name=pi,mac=d8:3a:dd:10:00:01,role=valar,board=rpi5,disk=/dev/mmcblk0",
        "name=node,mac=a8:b8:e0:20:00:01,role=valinor,board=generic-x86,disk=/dev/sda",
    ]
    assert (got.gitops, got.identity, got.monitoring, got.backup, got.cloudflare) == (
        "https://github.com/you/lab.git",
        "static=you@example.org",
        None,
        None,
        None,
    )


def test_a_wrong_answer_is_said_and_asked_again_and_the_session_goes_on() -> None:
    """At a terminal one mistyped answer costs that answer: each is checked as the flag would be, said against what was
    typed (not a flag the user never gave), and its question asked again; nothing answered before is lost."""
    script = {
        "LAN, in CIDR form (e.g. 192.168.0.0/24)": ["10.20.0.1/24", "10.20.0.0/24"],
        "router (gateway)": ["10.20.0.300", ""],
        "DHCP range (the router's or the Ainur's)": ["10.20.0.200-10.20.0.100", ""],
        "machine 1: name": ["pi"],
        "machine 1: MAC": ["d8:3a:dd:10:00:01"],
        "machine 1: role (valar, maiar: a Pi of the Ainur; valinor: a control plane; istari: a worker)": ["valar"],
        "machine 2: name (Enter when done)": ["node", ""],
        "machine 2: MAC": ["a8:b8:e0:20:00:01"],
        "SSH public key the Pis let in (a key, or its .pub file)": ["~/no-such-key.pub", KEY],
        "DHCP mode (proxy or dhcp)": ["relay", "dhcp"],
        "router's DHCP pool (START-END, or none)": ["10.20.0.254-10.20.0.240", "10.20.0.240-10.20.0.254"],
        "GitOps repository URL for Argo CD (- for none)": ["https://github.com/you/lab.git"],
        "alerts to ntfy=<url>, webhook=<url> or email=<to>,from=<from>,smarthost=<host:port> (- for no monitoring)": [
            "https://ntfy.sh/lab-alerts",
            "ntfy=https://ntfy.sh/lab-alerts",
        ],
        "sign-in: github=<org>,client-id=<id> or static=<admin e-mail> (- for none)": ["admin@example.org", "static=admin@example.org"],
        "backups to nfs://<server>/<export> or s3://<host>/<bucket> (- for none)": ["10.20.0.5:/volume1/backups", "nfs://10.20.0.5/volume1/backups"],
    }
    said: list[str] = []

    def ask(question: str, default: str | None) -> str:
        left = script.get(question)
        return (left.pop(0) if left else "") or default or ""  # Enter takes the default, as at the terminal

    got = init.ask_missing(init.Answers(stack="lab"), ask, said.append)
    assert said == [
        "  10.20.0.1/24: has host bits set; the network is 10.20.0.0/24; asked again",
        "  10.20.0.300 is not an IPv4 address (e.g. 192.168.0.1); asked again",
        "  10.20.0.200-10.20.0.100: write it as START-END, two IPv4 addresses, the first the lower; asked again",
        "  ~/no-such-key.pub: is neither an OpenSSH public key (ssh-ed25519 AAAA...) nor a .pub file that exists; asked again",
        "How the Ainur share the LAN's DHCP with your router:",
        "  proxy: your router keeps lending the LAN's addresses; the Ainur answer only the machines they netboot (nothing to turn off)",
        "  dhcp: the Ainur are the LAN's DHCP server; your router's DHCP must be off first, or the LAN has two that fight",
        "  relay: is neither proxy nor dhcp; asked again",
        f"The router's pool: {init.ROUTER_POOL}.",
        "  10.20.0.254-10.20.0.240: write it as START-END, two IPv4 addresses, the first the lower; asked again",
        "  https://ntfy.sh/lab-alerts: write it as ntfy=https://ntfy.sh/<topic>, webhook=<url> or email=<to>,from=<from>,smarthost=<host:port>; asked again",
        "  admin@example.org: write it as github=<org>,client-id=<OAuth app client id>[,team=<team slug>] or static=<admin e-mail>; asked again",
        "  10.20.0.5:/volume1/backups is mount's form (server:/export); Iluvatar reads a URL: write nfs://10.20.0.5/volume1/backups; asked again",
    ]
    assert (got.lan, got.gateway, got.dhcp_range, got.ssh_key, got.dhcp_mode) == ("10.20.0.0/24", "10.20.0.1", "10.20.0.100-10.20.0.199", KEY, "dhcp")
    assert got.router_pool == "10.20.0.240-10.20.0.254"
    assert (got.monitoring, got.identity, got.backup) == (
        "ntfy=https://ntfy.sh/lab-alerts",
        "static=admin@example.org",
        "nfs://10.20.0.5/volume1/backups",
    )
    init.build(got, Path("Pulumi.lab.yaml"))  # and the whole session makes a stack that validates


def _terminal(args: list[str], cwd: Path, answers: list[str], timeout: float = 60) -> tuple[int, str]:
    """Run the command at a real terminal (a pty), typing each answer when the next question ends in ': '."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the command, with the pty as its terminal
        os.chdir(cwd)
        os.execv(str(ILUVATAR), [str(ILUVATAR), *args])  # noqa: S606 - the console script under test
    out, pending, deadline = b"", list(answers), time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
            if out.rstrip(b" ").endswith(b":") and pending and out.endswith(b": "):
                os.write(fd, pending.pop(0).encode() + b"\n")
    done, status = os.waitpid(pid, os.WNOHANG)
    if done == 0:  # still asking, with nothing left to type: the test has seen what it needs
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace").replace("\r\n", "\n")


def test_a_newcomer_at_a_terminal_answers_and_gets_a_stack_that_validates(tmp_path: Path) -> None:
    """The README's path: init at a terminal (the flags left out asked), then validate and render it."""
    typed = [
        "mylab",
        "10.20.0.0/24",
        "",
        "",
        "",
        "",
        "",
        "pi-1",
        "d8:3a:dd:10:00:01",
        "valar",
        "",
        "",
        "",
        "node-1",
        "a8:b8:e0:20:00:01",
        "",
        "",
        "",
        "",
        "",
        KEY,
        "",  # the DHCP mode: Enter takes proxy
    ]
    typed += ["-", "-", "-"]  # no GitOps (so no monitoring, sign-in or backup asked), no backups, no Cloudflare
    code, shown = _terminal(["init"], tmp_path, typed)
    assert code == 0, shown
    assert "wrote Pulumi.mylab.yaml: 2 machines (Ainur 1 valar + 0 maiar; Arda 1 valinor + 0 istari) on 10.20.0.0/24" in shown
    assert "router (gateway) [10.20.0.1]: " in shown and "machine 1: board (generic-arm64, generic-x86, rk1, rpi4, rpi5) [rpi5]: " in shown
    assert "DHCP mode (proxy or dhcp) [proxy]: " in shown and "netboot: {mode: proxy}" in (tmp_path / "Pulumi.mylab.yaml").read_text()
    validated = iluvatar("validate", "mylab", cwd=tmp_path)
    assert validated.returncode == 0, validated.stderr
    rendered = iluvatar("render", "mylab", "--out", "render/mylab", cwd=tmp_path)
    assert rendered.returncode == 0, rendered.stderr
    assert (tmp_path / "render/mylab/ainur/pi-1.user-data").is_file() and (tmp_path / "render/mylab/talos/node-1.patch.yaml").is_file()
    # No wall-clock bound on the session: the program has none, and one here measured the loaded machine. Each command
    # is held by its own 60 s timeout (`_terminal`'s, `iluvatar`'s) only so a hang fails; the machine's share of the
    # README's five minutes is measured on a quiet machine in docs/getting-started.md's table.


def test_flags_that_name_the_lan_and_the_machines_ask_only_what_the_stack_needs() -> None:
    """Getting started's session, typed at a terminal, is the same session: no question it does not show."""
    asked: list[str] = []

    def ask(question: str, default: str | None) -> str:
        asked.append(question)
        return KEY

    given = answers(ssh_key=None)
    assert init.ask_missing(given, ask, print).ssh_key == KEY and asked == ["SSH public key the Pis let in (a key, or its .pub file)"]
    assert init.ask_missing(answers(), ask, print) == answers() and len(asked) == 1


def test_the_flags_of_getting_started_typed_at_a_terminal_ask_nothing(tmp_path: Path) -> None:
    code, shown = _terminal(["init", "lab", *MINIMAL_FLAGS], tmp_path, [], timeout=20)
    assert (code, shown.splitlines()[0]) == (
        0,
        "wrote Pulumi.lab.yaml: 2 machines (Ainur 1 valar + 0 maiar; Arda 1 valinor + 0 istari) on 192.168.1.0/24",
    )
