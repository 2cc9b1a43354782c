"""The shipped stack files are already in the form Pulumi writes them, so Pulumi's first edit changes
only what it means to change.

`pulumi stack init` (or `stack select --create`) and every `pulumi config set` load the stack file and
save it again through Pulumi's YAML marshaler, which re-encodes the whole file with yaml.v3 (two-space
indent, single spaces, no alignment) while keeping its key order, comments and flow style. The checker
is tools/stackfile: Pulumi's own encoding and config packages (sdk v3.272.0) running those commands.
"""

from __future__ import annotations

import difflib
import subprocess
from pathlib import Path

import pytest

from tests.edit import HOMELAB, MINIMAL, RK1, ROOT
from tools.gotools import build

SALT_LINE = "encryptionsalt: v1:c2FsdHNhbHQ=:v1:bm9uY2Vub25jZW5v:Y2lwaGVydGV4dGNpcGhlcnRleHRjaXBoZXJ0ZXh0\n"
STACKS = [HOMELAB, RK1, MINIMAL]


@pytest.fixture(scope="module")
def stackfile() -> Path:
    return build("stackfile")


def pulumi_writes(tool: Path, *args: str) -> str:
    result = subprocess.run([str(tool), *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def changed(before: str, after: str) -> list[str]:
    """The lines a diff shows, without its headers."""
    return [line for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0) if line[:3] not in ("---", "+++", "@@ ")]


@pytest.mark.parametrize("path", STACKS, ids=lambda p: p.name)
def test_stack_init_only_appends_the_salt(stackfile: Path, path: Path) -> None:
    text = path.read_text()
    assert pulumi_writes(stackfile, "init", str(path)) == text + SALT_LINE
    schema = "./stacks/stack.schema.json" if path.parent == ROOT else "../stacks/stack.schema.json"
    assert text.startswith(f"# yaml-language-server: $schema={schema}\n"), "Pulumi keeps the editor header"


@pytest.mark.parametrize(
    ("path", "args", "diff"),
    [
        (HOMELAB, ["iluvatar:arda.talosVersion", "v1.14.2", "--path"], ["-    talosVersion: v1.14.1", "+    talosVersion: v1.14.2"]),
        (
            HOMELAB,
            ["iluvatar:ainur.netboot.mode", "proxy", "--path"],
            [
                "-      mode: dhcp # the Ainur are the LAN's DHCP server; `proxy` leaves DHCP to the router",
                "+      mode: proxy # the Ainur are the LAN's DHCP server; `proxy` leaves DHCP to the router",
            ],
        ),
        (
            HOMELAB,
            ["iluvatar:nodes[1].ip", "192.168.0.14", "--path"],
            [
                '-    - {name: eonwe, role: maiar, arch: arm64, board: rpi5, mac: "d8:3a:dd:10:00:02", ip: 192.168.0.12, installDisk: /dev/mmcblk0, dataDisks: [/dev/nvme0n1]}',
                '+    - {name: eonwe, role: maiar, arch: arm64, board: rpi5, mac: "d8:3a:dd:10:00:02", ip: 192.168.0.14, installDisk: /dev/mmcblk0, dataDisks: [/dev/nvme0n1]}',
            ],
        ),
        (RK1, ["iluvatar:network.dns[2]", "1.1.1.1", "--path"], ["-    dns: [10.10.0.1, 9.9.9.9]", "+    dns: [10.10.0.1, 9.9.9.9, 1.1.1.1]"]),
        (RK1, ["kubernetes:context", "turing"], ["+  kubernetes:context: turing"]),
    ],
    ids=["talos-version", "dhcp-mode-with-its-comment", "a-node-in-flow-style", "append-to-a-list", "a-new-key"],
)
def test_config_set_changes_only_its_key(stackfile: Path, tmp_path: Path, path: Path, args: list[str], diff: list[str]) -> None:
    initialised = tmp_path / path.name
    initialised.write_text(pulumi_writes(stackfile, "init", str(path)))
    after = pulumi_writes(stackfile, "set", str(initialised), *args)
    assert changed(initialised.read_text(), after) == diff


def test_a_secret_lands_as_ciphertext_under_its_key(stackfile: Path, tmp_path: Path) -> None:
    initialised = tmp_path / HOMELAB.name
    initialised.write_text(pulumi_writes(stackfile, "init", str(HOMELAB)))
    after = pulumi_writes(stackfile, "secret", str(initialised), "iluvatar:ainurSshPrivateKey", "v1:AAAA:BBBB")
    assert changed(initialised.read_text(), after) == ["+  iluvatar:ainurSshPrivateKey:", "+    secure: v1:AAAA:BBBB"]


def test_the_check_sees_a_hand_aligned_file(stackfile: Path, tmp_path: Path) -> None:
    """What the stacks looked like before: alignment spaces, which Pulumi's first edit would have removed."""
    aligned = tmp_path / "Pulumi.aligned.yaml"
    text = RK1.read_text().replace("role: istari, arch", "role: istari,  arch").replace("    dns: [", "    dns:   [")
    aligned.write_text(text)
    assert changed(text, pulumi_writes(stackfile, "init", str(aligned))) == [
        "-    dns:   [10.10.0.1, 9.9.9.9]",
        "+    dns: [10.10.0.1, 9.9.9.9]",
        '-    - {name: talos-4, role: istari,  arch: arm64, board: rk1, mac: "02:7a:1c:00:00:04", ip: 10.10.0.14, installDisk: /dev/mmcblk0, dataDisks: [/dev/nvme0n1]}',
        '+    - {name: talos-4, role: istari, arch: arm64, board: rk1, mac: "02:7a:1c:00:00:04", ip: 10.10.0.14, installDisk: /dev/mmcblk0, dataDisks: [/dev/nvme0n1]}',
        "+" + SALT_LINE.rstrip("\n"),
    ]
