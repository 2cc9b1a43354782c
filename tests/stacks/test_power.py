"""Power-on config as `pulumi preview` reads it (stacks.pulumi_source) and as a stack file holds it (stacks.load).

The broken stacks with their exact messages are fixtures (tests/fixtures/invalid_stacks.yaml,
"Power-on"); these show the same rules at preview, where the engine hands the program the
passwords decrypted as one JSON object and says only that the key is secret.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from stacks import load_stack_file, power, read_stack_file
from stacks.errors import StackConfigError
from stacks.pulumi_source import load
from stacks.secrets import Secure
from tests.edit import edit, homelab_doc, homelab_stack_file, write_stack

PASSWORD = "turing-CANARY-51d0"
INVALID: list[dict[str, Any]] = yaml.load((Path(__file__).parent.parent / "fixtures" / "invalid_stacks.yaml").read_text(), Loader=yaml.CSafeLoader)


class Mocks(pulumi.runtime.Mocks):
    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, []


@pytest.fixture(autouse=True)
def mocks() -> None:
    pulumi.runtime.set_mocks(Mocks(), project="iluvatar", stack="test", preview=True)


def config(powers: dict[int, dict[str, Any]], **extra: str) -> tuple[dict[str, str], list[str]]:
    """The homelab's config as the engine hands it over (secrets decrypted), with machines' `power` set."""
    sf = homelab_stack_file()
    # A value encrypted whole comes as itself; one with secure leaves (appSecrets) as JSON with each leaf decrypted.
    cfg = {
        k: "homelab-token" if isinstance(v, Secure) else json.dumps(v, default=lambda _: "homelab-token")
        for k, v in sf.config.items()
        if k.startswith("iluvatar:")
    }
    nodes = json.loads(cfg["iluvatar:nodes"])
    for i, p in powers.items():
        nodes[i]["power"] = p
        if "bmc" in p:
            # A machine a BMC powers sits in a Turing Pi 2 slot: a compute module, not the x86 PC the homelab has there.
            nodes[i].update(arch="arm64", board="rk1")
    cfg["iluvatar:nodes"] = json.dumps(nodes)
    cfg.update(extra)
    return cfg, sorted(sf.secret_keys)


def refused(cfg: dict[str, str], secret_keys: list[str]) -> list[str]:
    pulumi.runtime.set_all_config(cfg, secret_keys)
    with pytest.raises(pulumi.RunError) as err:
        load()
    return [line.strip() for line in str(err.value).splitlines()[1:]]


BMC = {"bmc": {"address": "192.168.0.5", "slot": 1}}


def test_a_bmc_without_its_password_is_refused_at_preview() -> None:
    cfg, keys = config({6: BMC})
    assert refused(cfg, keys) == [
        "iluvatar:bmcPasswords: is required: nodes[6].power.bmc (gandalf) logs in to the BMC at 192.168.0.5; "
        "run `pulumi config set --secret --path 'iluvatar:bmcPasswords[\"192.168.0.5\"]' <password>`"
    ]


def test_a_bmc_without_its_address_is_refused_at_preview() -> None:
    cfg, keys = config({6: {"bmc": {"slot": 1}}})
    assert refused(cfg, keys) == ["iluvatar:nodes[6].power.bmc.address: is required: an IPv4 address, e.g. 192.168.0.10"]


def test_a_password_for_another_bmc_is_refused_at_preview_without_a_password_in_the_message() -> None:
    cfg, keys = config({6: BMC}, **{"iluvatar:bmcPasswords": json.dumps({"192.168.0.6": PASSWORD})})
    lines = refused(cfg, [*keys, "iluvatar:bmcPasswords"])
    assert lines == [
        'iluvatar:bmcPasswords["192.168.0.5"]: is required: nodes[6].power.bmc (gandalf) logs in to the BMC at 192.168.0.5; '
        "run `pulumi config set --secret --path 'iluvatar:bmcPasswords[\"192.168.0.5\"]' <password>`",
        'iluvatar:bmcPasswords["192.168.0.6"]: is set, but no machine\'s power.bmc.address is 192.168.0.6; remove it',
    ]
    assert PASSWORD not in "\n".join(lines)


def test_passwords_that_are_not_a_secret_are_refused_at_preview_entry_by_entry() -> None:
    cfg, keys = config({6: BMC}, **{"iluvatar:bmcPasswords": json.dumps({"192.168.0.5": PASSWORD})})
    lines = refused(cfg, keys)
    assert lines == [
        'iluvatar:bmcPasswords["192.168.0.5"]: is in plain text; remove it and run '
        "`pulumi config set --secret --path 'iluvatar:bmcPasswords[\"192.168.0.5\"]' <password>`"
    ]
    assert PASSWORD not in "\n".join(lines)


def test_one_secret_instead_of_one_per_bmc_is_refused_at_preview() -> None:
    cfg, keys = config({6: BMC}, **{"iluvatar:bmcPasswords": PASSWORD})
    lines = refused(cfg, [*keys, "iluvatar:bmcPasswords"])
    assert lines == [
        "iluvatar:bmcPasswords: is one secret, but it holds one password per BMC address: remove it and run "
        "`pulumi config set --secret --path 'iluvatar:bmcPasswords[\"192.168.0.5\"]' <password>`"
    ]


def test_wake_on_lan_on_a_vlan_is_refused_at_preview() -> None:
    cfg, keys = config({7: {"wakeOnLan": {"link": "enp0s25"}}})
    nodes = json.loads(cfg["iluvatar:nodes"])
    nodes[7].update(vlan="iot", ip="192.168.20.32")
    cfg["iluvatar:nodes"] = json.dumps(nodes)
    assert refused(cfg, keys) == [
        "iluvatar:nodes[7].power.wakeOnLan: saruman is on VLAN iot, and the Ainur, which send the magic packet, are on network.lan only: "
        "a broadcast does not cross the router. Move saruman to network.lan, use bmc, or power it on by hand"
    ]


def test_the_passwords_reach_the_program_as_one_secret_output() -> None:
    cfg, keys = config(
        {6: BMC, 7: {"bmc": {"address": "192.168.0.5", "slot": 2}}}, **{"iluvatar:bmcPasswords": json.dumps({"192.168.0.5": PASSWORD})}
    )
    pulumi.runtime.set_all_config(cfg, [*keys, "iluvatar:bmcPasswords"])
    loaded = load()
    assert loaded.secrets.bmc_passwords is not None
    seen: list[Any] = []

    @pulumi.runtime.test
    def check() -> pulumi.Output[None]:
        assert loaded.secrets.bmc_passwords is not None
        secret = loaded.secrets.bmc_passwords.is_secret()
        return pulumi.Output.all(loaded.secrets.bmc_passwords, secret).apply(lambda v: seen.append(v))

    check()
    assert seen == [[{"192.168.0.5": PASSWORD}, True]]


def test_without_a_bmc_no_password_is_read() -> None:
    cfg, keys = config({6: {"wakeOnLan": {"link": "enp0s25"}}})
    pulumi.runtime.set_all_config(cfg, keys)
    assert load().secrets.bmc_passwords is None


def test_a_stack_file_with_secret_entries_holds_the_key_as_a_secret_and_each_entry_opaque(tmp_path: Path) -> None:
    """As Pulumi reads `config set --secret --path`: any `secure:` leaf makes the key secret; the addresses stay readable."""
    doc = edit(
        homelab_doc(),
        {
            "iluvatar:bmcPasswords": {
                "192.168.0.5": {"secure": "v1:bm9uY2Vub25jZW5v:Y2lwaGVydGV4dGNpcGhlcnRleHQ="},
                "192.168.0.6": {"secure": "v1:bm9uY2Vub25jZW5v:Y2lwaGVydGV4dGNpcGhlcnRleHQy"},
            }
        },
    )
    sf = read_stack_file(write_stack(tmp_path, doc))
    assert "iluvatar:bmcPasswords" in sf.secret_keys
    value = sf.config["iluvatar:bmcPasswords"]
    assert sorted(value) == ["192.168.0.5", "192.168.0.6"]
    assert all(isinstance(v, Secure) for v in value.values())


@pytest.mark.parametrize(
    ("kernel_args", "off"),
    [
        ((), False),
        (("net.ifnames=0",), True),
        (("net.ifnames=OFF",), True),
        (("net.ifnames=No",), True),
        (("net.ifnames=False",), True),
        (("net.ifnames=0", "net.ifnames=1"), False),
        (("net.ifnames=1", "net.ifnames=0"), True),
        (("net.ifnames=0", "-net.ifnames"), False),
        (("net.ifnames",), False),
        (("console=ttyS0", "net.ifnames=n"), True),
    ],
)
def test_predictable_names_are_off_as_udev_reads_the_command_line(kernel_args: tuple[str, ...], off: bool) -> None:
    """udev's parse_boolean, in any case; its last net.ifnames wins; Image Factory's -net.ifnames drops the earlier ones."""
    assert power.predictable_names_off(kernel_args) is off


def test_the_fix_offered_for_an_x86_pc_on_a_bmc_slot_validates(tmp_path: Path) -> None:
    """invalid_stacks.yaml's bmc-slot-for-an-x86-pc offers wakeOnLan: {link: enp1s0} for saruman: as written, it loads."""
    path = write_stack(tmp_path, edit(homelab_doc(), {"iluvatar:nodes[7].power": {"wakeOnLan": {"link": "enp1s0"}}}))
    stack = load_stack_file(path, require_secrets=True)
    assert next(n for n in stack.nodes if n.name == "saruman").power is not None


@pytest.mark.parametrize(
    ("fixture", "fixes"),
    [
        ("two-rk1s-woken-by-lan-beside-one-on-the-bmc", {6: 1, 7: 3}),
        ("rk1s-woken-by-lan-with-the-password-of-their-bmc", {6: 1, 7: 2}),
        ("rpi4-woken-by-lan-beside-an-rk1-woken-by-lan-and-one-on-the-bmc", {6: 3, 7: 2}),
    ],
)
def test_the_slots_offered_to_machines_moved_off_wake_on_lan_validate_together(tmp_path: Path, fixture: str, fixes: dict[int, int]) -> None:
    """invalid_stacks.yaml's fixtures offer each machine Wake-on-LAN cannot wake its own free slot of the stack's BMC (or
    of the one bmcPasswords names): applied together, as written in the messages, the stack loads."""
    case = next(c for c in INVALID if c["name"] == fixture)
    for i, slot in fixes.items():
        (said,) = [p for p in case["expect"] if p.startswith(f"iluvatar:nodes[{i}].power.wakeOnLan: ")]
        assert f"bmc: {{address: 192.168.0.5, slot: {slot}}} (the slot it sits in)" in said
    powered = {f"iluvatar:nodes[{i}].power": {"bmc": {"address": "192.168.0.5", "slot": slot}} for i, slot in fixes.items()}
    stack = load_stack_file(write_stack(tmp_path, edit(homelab_doc(), {**case["set"], **powered})), require_secrets=True)
    assert [str(n.power.bmc.address) if n.power is not None and n.power.bmc is not None else None for n in stack.nodes[5:]] == [
        "192.168.0.5" if case["set"].get("iluvatar:nodes[5].power") else None,
        "192.168.0.5",
        "192.168.0.5",
    ]


def test_the_bmc_moved_off_a_servers_address_as_the_message_says_validates(tmp_path: Path) -> None:
    """invalid_stacks.yaml's nfs-server-at-the-bmc-of-two-machines offers, as its second way out, the BMC's other address
    in both machines' keys and its password moved to that address: applied so, with the NFS server left at 192.168.0.5,
    the stack loads, and half of it (one machine, or the password left behind) does not."""
    case = next(c for c in INVALID if c["name"] == "nfs-server-at-the-bmc-of-two-machines")
    (said,) = case["expect"]
    assert "write it in nodes[6].power.bmc.address and nodes[7].power.bmc.address, and move the BMC's password to it" in said
    moved = {
        **case["set"],
        "iluvatar:nodes[6].power": {"bmc": {"address": "192.168.0.6", "slot": 1}},
        "iluvatar:nodes[7].power": {"bmc": {"address": "192.168.0.6", "slot": 2}},
        "iluvatar:bmcPasswords": {"192.168.0.6": case["set"]["iluvatar:bmcPasswords"]["192.168.0.5"]},
    }
    stack = load_stack_file(write_stack(tmp_path, edit(homelab_doc(), moved)), require_secrets=True)
    assert stack.storage.nfs is not None and stack.storage.nfs.server == "192.168.0.5"
    one_machine = {**moved, "iluvatar:nodes[7].power": case["set"]["iluvatar:nodes[7].power"]}
    with pytest.raises(StackConfigError) as refused:
        load_stack_file(write_stack(tmp_path, edit(homelab_doc(), one_machine)), require_secrets=True)
    assert [p.path for p in refused.value.problems] == ["iluvatar:storage.nfs.server", 'iluvatar:bmcPasswords["192.168.0.5"]']
