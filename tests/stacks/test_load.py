"""Reading stack files as Pulumi does, and the secret and unknown-key rules of loading."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import Field, ValidationError

from stacks import StackConfigError, StackFileError, load_stack_file, read_stack_file
from stacks.fields import Model
from stacks.load import SECTIONS, _translate, load_yaml, parse_stack
from stacks.secrets import Secure
from tests.edit import HOMELAB, edit, homelab_doc, write_stack


def test_yaml_reads_macs_and_words_as_strings_like_pulumi() -> None:
    # YAML 1.1 (PyYAML's default) reads 10:20:30:40:50:51 as a base-60 integer and `no` as false.
    doc = load_yaml("mac: 10:20:30:40:50:51\nanswer: no\nflag: true\nn: 3\n")
    assert doc == {"mac": "10:20:30:40:50:51", "answer": "no", "flag": True, "n": 3}


def test_unquoted_sexagesimal_looking_mac_still_validates(tmp_path: Path) -> None:
    path = write_stack(tmp_path, homelab_doc())
    text = path.read_text().replace("mac: a8:b8:e0:20:00:01", "mac: 10:20:30:40:50:51")
    assert "10:20:30:40:50:51" in text
    path.write_text(text)
    stack = load_stack_file(path)
    assert stack.nodes[3].mac == "10:20:30:40:50:51"


def test_duplicate_keys_are_an_error(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.dup.yaml"
    path.write_text("config:\n  iluvatar:arda: {}\n  iluvatar:arda: {}\n")
    with pytest.raises(StackFileError, match=r"line 3.*duplicate key iluvatar:arda"):
        read_stack_file(path)


@pytest.mark.parametrize(
    ("line", "said"),
    [
        (
            "      schedule: */30 * * * *",
            'schedule\'s value */30 * * * * starts with *, which YAML does not take at the start of an unquoted value (* names an alias, @ and ` are reserved): quote it, schedule: "*/30 * * * *"',
        ),
        (
            "      schedule: @daily  # nightly",
            'schedule\'s value @daily starts with @, which YAML does not take at the start of an unquoted value (* names an alias, @ and ` are reserved): quote it, schedule: "@daily"',
        ),
    ],
    ids=["alias-star", "reserved-at"],
)
def test_an_unquoted_schedule_is_named_with_the_quoting_it_needs(tmp_path: Path, line: str, said: str) -> None:
    """A cron schedule written unquoted: YAML reads `*` as an alias and refuses `@`; the error names the key and says how
    to quote it, and the quoted line is read."""
    bad = tmp_path / "Pulumi.bad.yaml"
    bad.write_text(f"config:\n  iluvatar:backup:\n    etcd:\n{line}\n")
    with pytest.raises(StackFileError) as raised:
        read_stack_file(bad)
    assert str(raised.value).endswith(f"; {said}"), str(raised.value)
    quoted = said.rsplit("quote it, ", 1)[1]
    bad.write_text(f"config:\n  iluvatar:backup:\n    etcd:\n      {quoted}\n")
    assert read_stack_file(bad).config["iluvatar:backup"]["etcd"]["schedule"] == quoted.split('"')[1]


def test_missing_file_and_non_yaml_are_file_errors(tmp_path: Path) -> None:
    with pytest.raises(StackFileError, match="no such stack file"):
        read_stack_file(tmp_path / "Pulumi.nope.yaml")
    bad = tmp_path / "Pulumi.bad.yaml"
    bad.write_text("config: [\n")
    with pytest.raises(StackFileError, match="not valid YAML at line 2"):
        read_stack_file(bad)
    listy = tmp_path / "Pulumi.list.yaml"
    listy.write_text("- a\n- b\n")
    with pytest.raises(StackFileError, match="not a Pulumi stack file"):
        read_stack_file(listy)


def test_secure_values_are_recognised_and_kept_opaque(tmp_path: Path) -> None:
    doc = edit(
        homelab_doc(),
        {
            "iluvatar:cloudflare": {"accountId": "0123456789abcdef0123456789abcdef"},
            "iluvatar:cloudflareApiToken": {"secure": "v1:bm9uY2Vub25jZW5v:Y2lwaGVydGV4dGNpcGhlcnRleHQ="},
        },
    )
    sf = read_stack_file(write_stack(tmp_path, doc))
    assert sf.secret_keys == {
        "iluvatar:cloudflareApiToken",
        "iluvatar:alertReceiverSecret",
        "iluvatar:identityConnectorSecret",
        "iluvatar:backupS3AccessKeyId",
        "iluvatar:backupS3SecretAccessKey",
        "iluvatar:appSecrets",
    }
    assert isinstance(sf.config["iluvatar:cloudflareApiToken"], Secure)
    assert repr(sf.config["iluvatar:cloudflareApiToken"]) == f"{sf.config['iluvatar:cloudflareApiToken']!r}" == "[secret]"
    stack = sf.parse()
    assert stack.cloudflare is not None and stack.cloudflare.account_id == "0123456789abcdef0123456789abcdef"


def test_encrypted_plain_config_is_rejected(tmp_path: Path) -> None:
    doc = edit(homelab_doc(), {"iluvatar:arda": {"secure": "v1:bm9uY2Vub25jZW5v:Y2lwaGVydGV4dGNpcGhlcnRleHQ="}})
    with pytest.raises(StackConfigError) as err:
        load_stack_file(write_stack(tmp_path, doc))
    assert [str(p) for p in err.value.problems] == [
        "iluvatar:arda: is encrypted, but it is plain configuration that every layer must read; set it without --secret",
        "iluvatar:arda: is required",
    ]


def test_other_namespaces_are_left_to_pulumi() -> None:
    stack = parse_stack({**{k: v for k, v in read_stack_file(HOMELAB).config.items()}, "kubernetes:context": "x"})
    assert stack.arda.cluster_name == "arda"


def test_section_of_wrong_shape_is_reported_not_raised() -> None:
    raw = dict(read_stack_file(HOMELAB).config)
    raw["iluvatar:nodes"] = {"manwe": {}}
    raw["iluvatar:network"] = "192.168.0.0/24"
    with pytest.raises(StackConfigError) as err:
        parse_stack(raw)
    assert [str(p) for p in err.value.problems] == [
        "iluvatar:network: 192.168.0.0/24 is not a mapping of keys to values",
        "iluvatar:nodes: {manwe: {}} is not a list of machines",
    ]


def test_empty_stack_lists_every_required_key(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.empty.yaml"
    path.write_text("config:\n  pulumi:disable-default-providers: ['*']\n")
    with pytest.raises(StackConfigError) as err:
        load_stack_file(path)
    assert err.value.paths() == ["iluvatar:network", "iluvatar:arda", "iluvatar:nodes"]


# Each top-level section written with nothing after its colon: what it must hold, or that its line goes.
BLANK = "null (the section left blank, or written null) is empty"
BLANK_SECTIONS = {
    "network": f"{BLANK}, and the section is required; write its keys indented under it (required: lan, gateway, dns, dhcpRange, loadBalancerPool, domain)",
    "ainur": f"{BLANK}; remove the line to leave it out, or write its keys indented under it (required: vip, serviceIp, k3sVersion, sshAuthorizedKeys)",
    "arda": f"{BLANK}, and the section is required; write its keys indented under it (required: clusterName, vip, talosVersion, kubernetesVersion)",
    "nodes": f"{BLANK}, and the section is required; write the machines indented under it, one `- name: ...` item each with name, role, arch, board, mac, ip, installDisk",
    "apps": f"{BLANK}; remove the line (or write []) for no apps, or write the apps indented under it, one `- name: ...` item each with name, category, host",
    "edge": f"{BLANK}; remove the line for its defaults, or write its keys indented under it (keys: publicIngress, publicDns, acmeEmail, addresses)",
    # The homelab's edge.publicDns and its apps' backups need these two: their line is not offered for removal.
    "cloudflare": f"{BLANK}, and edge.publicDns: cloudflare needs it; write its keys indented under it (required: accountId)",
    "gitops": f"{BLANK}; remove the line to leave it out, or write its keys indented under it (required: repoUrl)",
    "storage": f"{BLANK}; remove the line for its defaults, or write its keys indented under it (keys: arda, ainur, nfs)",
    "monitoring": f"{BLANK}; remove the line to leave it out, or write {{}} for it with its defaults, or write its keys indented under it (keys: prometheus, grafana, receiver, heartbeat)",
    "identity": f"{BLANK}; remove the line to leave it out, or write its keys indented under it (required: ip, connector, groups)",
    "backup": f"{BLANK}, and apps[0].backup needs it; write its keys indented under it (required: target)",
    "logs": f"{BLANK}; remove the line for its defaults, or write its keys indented under it (keys: enabled, retention, size, storageClass, claimChanged, dailyVolume, address)",
    "remoteAccess": f"{BLANK}; remove the line to leave it out, or write its keys indented under it (required: flavour, access)",
}


def test_every_section_has_its_blank_case() -> None:
    assert list(BLANK_SECTIONS) == list(SECTIONS)


@pytest.mark.parametrize("key", list(BLANK_SECTIONS))
def test_a_section_left_blank_is_one_problem_saying_what_to_write(key: str, tmp_path: Path) -> None:
    doc = edit(homelab_doc(), {f"iluvatar:{key}": None})
    with pytest.raises(StackConfigError) as err:
        load_stack_file(write_stack(tmp_path, doc), require_secrets=True)
    assert [str(p) for p in err.value.problems] == [f"iluvatar:{key}: {BLANK_SECTIONS[key]}"]


def test_the_fixes_a_blank_section_gives_validate(tmp_path: Path) -> None:
    # "remove the line" for an optional section, "[]" for the apps and "{}" for monitoring: each written back validates,
    # less what the homelab's other sections need of it (they are removed with it).
    doc = homelab_doc()
    for key in ("edge", "storage", "logs"):
        load_stack_file(write_stack(tmp_path, edit(doc, None, [f"iluvatar:{key}"] if key in doc["config"] else [])))
    load_stack_file(write_stack(tmp_path, edit(doc, {"iluvatar:monitoring": {}}, ["iluvatar:alertReceiverSecret"])))


def test_float_and_text_mistakes_are_in_plain_words() -> None:
    """No stack key is a float or a bare string today; the words are ready for the first that is."""

    class Sample(Model):
        ratio: float
        title: str
        sizes: list[int] = Field(default_factory=list, max_length=1)

    with pytest.raises(ValidationError) as err:
        Sample.model_validate({"ratio": "half", "title": 5, "sizes": [1, 2]})
    assert [str(p) for p in _translate(Sample, err.value, "iluvatar:sample")] == [
        "iluvatar:sample.ratio: half is not a number",
        "iluvatar:sample.title: 5 is not text; quote it",
        "iluvatar:sample.sizes: [1, 2] has more than 1 item(s)",
    ]


def test_no_fixture_speaks_pydantic() -> None:
    """Every expected problem line is in Iluvatar's words: none of pydantic's phrasing leaks through."""
    cases = yaml.safe_load((Path(__file__).parent.parent / "fixtures" / "invalid_stacks.yaml").read_text())
    lines = [line for case in cases for line in case["expect"]]
    assert len(lines) >= 79
    for leak in ("input should", "valid tuple", "valid dictionary", "instance of", "after validation", "unable to"):
        assert not [line for line in lines if leak in line.lower()], leak


@pytest.mark.parametrize("disabled", [["kubernetes"], ["*"], ["random", "kubernetes"]])
def test_default_providers_disabled_for_kubernetes_is_enough(disabled: list[str], tmp_path: Path) -> None:
    doc = edit(homelab_doc(), {"pulumi:disable-default-providers": disabled})
    assert load_stack_file(write_stack(tmp_path, doc)).arda.cluster_name == "arda"


def test_problems_are_in_config_order_with_indices_compared_as_numbers() -> None:
    raw = dict(read_stack_file(HOMELAB).config)
    nodes = [dict(n) for n in raw["iluvatar:nodes"]]
    for k in range(3):  # nodes[8] to nodes[10]: istari on free addresses (192.168.0.40 is the backup target's)
        nodes.append({**nodes[7], "name": f"worker-{k}", "mac": f"28:d2:44:30:01:0{k}", "ip": f"192.168.0.{50 + k}"})
    # One address in the load-balancer pool and one in the DHCP range: two in the range are said once, at the range.
    nodes[10]["ip"] = "192.168.0.225"
    nodes[2]["ip"] = "192.168.0.160"
    raw["iluvatar:nodes"] = nodes
    with pytest.raises(StackConfigError) as err:
        parse_stack(raw)
    assert err.value.paths() == ["iluvatar:nodes[2].ip", "iluvatar:nodes[10].ip"]


def test_file_errors_say_where_and_what_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "Pulumi.bad.yaml"
    bad.write_text("config:\n  iluvatar:arda: [\n")
    control = tmp_path / "Pulumi.bell.yaml"
    control.write_text('config:\n  iluvatar:arda: "\x07"\n')
    latin1 = tmp_path / "Pulumi.latin1.yaml"
    latin1.write_bytes(b"config:\n  iluvatar:arda: \xe4\n")
    utf16 = tmp_path / "Pulumi.utf16.yaml"
    utf16.write_bytes("config:\n  iluvatar:arda: {}\n".encode("utf-16"))
    tab = tmp_path / "Pulumi.tab.yaml"
    tab.write_text("config:\n\tiluvatar:arda: {}\n")
    expected = {
        bad: f"{bad}: not valid YAML at line 3, column 1: did not find expected node content",
        control: f"{control}: not valid YAML: unacceptable character #x0007: control characters are not allowed",
        latin1: f"{latin1}: cannot read it: not UTF-8 (invalid continuation byte at byte 25); save it as UTF-8, as `pulumi config set` writes it",
        utf16: f"{utf16}: cannot read it: UTF-16 (it starts with a byte-order mark); save it as UTF-8, as `pulumi config set` writes it",
        tab: f"{tab}: not valid YAML at line 2, column 1: found character that cannot start any token (a tab: YAML indents with spaces only; replace the tab with spaces)",
        tmp_path: f"{tmp_path}: cannot read it (IsADirectoryError: [Errno 21] Is a directory: '{tmp_path}')",
    }
    for path, message in expected.items():
        with pytest.raises(StackFileError) as err:
            read_stack_file(path)
        assert str(err.value) == message


def test_an_empty_stack_file_has_no_config(tmp_path: Path) -> None:
    empty = tmp_path / "Pulumi.empty.yaml"
    empty.write_text("")
    assert read_stack_file(empty).config == {}
    with pytest.raises(StackConfigError) as err:
        parse_stack({})
    assert err.value.report().splitlines()[0] == "stack config: 3 problems:"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        # yaml.v3 (Pulumi's reader) keeps an unquoted date as text when the target is untyped.
        ("2024-01-01", "2024-01-01"),
        ("2024-01-01T10:00:00Z", "2024-01-01T10:00:00Z"),
        # Go's strconv.ParseInt(s, 0, 64): a leading 0 is octal, prefixes 0x/0o/0b, underscores dropped.
        ("0777", 511),
        ("0x1F", 31),
        ("0o17", 15),
        ("0b101", 5),
        ("1_000", 1000),
        ("+12", 12),
        ("-7", -7),
        # Not an integer Go can parse, but yaml.v3's float syntax: a float, never a crash.
        ("000000000887", 887.0),
        ("08", 8.0),
        ("1e3", 1000.0),
        ("1.5", 1.5),
        ("-.inf", float("-inf")),
        # Neither: the text as written.
        ("192.168.0.1", "192.168.0.1"),
        ("10:20:30:40:50:51", "10:20:30:40:50:51"),
        ("1.34.1", "1.34.1"),
        ("v1.34.1", "v1.34.1"),
        ("no", "no"),
        ("true", True),
    ],
)
def test_plain_scalars_read_as_pulumis_yaml_v3_reads_them(text: str, value: object) -> None:
    assert load_yaml(f"key: {text}\n") == {"key": value}


def test_an_unquoted_all_digit_mac_is_a_clear_problem_not_a_traceback(tmp_path: Path) -> None:
    doc = HOMELAB.read_text().replace('mac: "28:d2:44:30:00:01"', "mac: 000000000887")
    path = tmp_path / "Pulumi.digits.yaml"
    path.write_text(doc)
    with pytest.raises(StackConfigError) as err:
        load_stack_file(path)
    assert [str(p) for p in err.value.problems] == ["iluvatar:nodes[6].mac: 887.0 is not a MAC address (write it as a quoted string)"]


def test_an_empty_string_is_shown_as_empty_quotes() -> None:
    with pytest.raises(StackConfigError) as err:
        parse_stack({"iluvatar:network": {"lan": ""}})
    assert 'iluvatar:network.lan: "" is not an IPv4 network in CIDR form (e.g. 192.168.0.0/24)' in [str(p) for p in err.value.problems]


def test_every_name_the_stacks_package_exports_is_its_home_modules_own() -> None:
    """`from stacks import X` is loaded on first use (stacks/__init__.py): each name is the object its module defines."""
    import importlib

    import stacks

    for name in stacks.__all__:
        assert getattr(stacks, name) is getattr(importlib.import_module(stacks._HOMES[name]), name), name
    assert sorted(stacks._HOMES) == sorted(stacks.__all__)
    with pytest.raises(AttributeError, match="module 'stacks' has no attribute 'nope'"):
        _ = stacks.nope


_NO_SERIAL = "is no Pi serial either: a Pi's serial is 8 hex digits alone, which its bootloader asks TFTP under"
_QUOTE_HEX = 'quote the serial\'s 8 hex digits, as `grep Serial /proc/cpuinfo` shows their last 8 (e.g. serial: "5e813307")'


@pytest.mark.parametrize(
    ("written", "message"),
    [
        (
            "0x05e81330",
            "99095344 is the number YAML reads from 0x05e81330 written unquoted (a leading 0x makes hex digits a number to YAML), "
            f'and 0x05e81330 {_NO_SERIAL}; write its 8 hex digits without the 0x, quoted: serial: "05e81330"',
        ),
        (
            "0x5E81330",
            "99095344 is the number YAML reads from 0x5E81330 written unquoted (a leading 0x makes hex digits a number to YAML), "
            f"and 0x5E81330 {_NO_SERIAL}; {_QUOTE_HEX}",
        ),
        (
            "0o1234567",
            "342391 is the number YAML reads from 0o1234567 written unquoted (a leading 0o makes digits an octal number to YAML), "
            f"and 0o1234567 {_NO_SERIAL}; {_QUOTE_HEX}",
        ),
    ],
)
def test_a_serial_with_a_base_prefix_is_told_the_text_as_written(tmp_path: Path, written: str, message: str) -> None:
    """yaml.v3 reads 0x and 0o digits unquoted as a number whose decimal is no text the user wrote: the loader keeps the
    text, the message quotes it, and the fix it gives validates."""
    doc = edit(homelab_doc(), {"iluvatar:nodes[1].boot": "netboot", "iluvatar:nodes[1].serial": "PLACEHOLDER"})
    path = write_stack(tmp_path, doc)
    path.write_text(path.read_text().replace("serial: PLACEHOLDER", f"serial: {written}"))
    with pytest.raises(StackConfigError) as err:
        load_stack_file(path)
    assert [str(p) for p in err.value.problems] == [f"iluvatar:nodes[1].serial: {message}"]
    if 'serial: "' in message.removesuffix('(e.g. serial: "5e813307")'):
        path.write_text(path.read_text().replace(f"serial: {written}", f'serial: "{message.rsplit(chr(34), 2)[1]}"'))
        assert load_stack_file(path).nodes[1].serial == "05e81330"


def test_a_base_prefixed_number_elsewhere_is_a_plain_int(tmp_path: Path) -> None:
    """Only a serial keeps the text of 0x/0o digits; a chart value's `0o644` goes on as a plain int, which YAML dumps."""
    path = tmp_path / "Pulumi.test.yaml"
    path.write_text("config:\n  iluvatar:x: {mode: 0o644, ports: [0x10], serial: 0x05e81330}\n")
    value = read_stack_file(path).config["iluvatar:x"]
    assert [type(v) for v in (value["mode"], value["ports"][0])] == [int, int]
    assert yaml.safe_dump({k: v for k, v in value.items() if k != "serial"}) == "mode: 420\nports:\n- 16\n"
    assert getattr(value["serial"], "text", None) == "0x05e81330"


def test_the_pi_image_server_is_read_only_where_a_pi_netboots(tmp_path: Path) -> None:
    # The card Pis download ainur.piImage.url only for the netbooting Pis (plans.netboot.pi_pods.with_pis): without one,
    # nothing reaches the server, and a url at loopback is not refused; with one, it is.
    image = {
        "url": "http://localhost:8000/ubuntu-24.04.3-preinstalled-server-arm64+raspi.img.xz",
        "sha256": "9bb1799cee8965e6df0234c1c879dd35be1d87afe39b84951f278b6bd0433e56",
    }
    assert load_stack_file(write_stack(tmp_path, edit(homelab_doc(), {"iluvatar:ainur.piImage": image}))).ainur is not None
    netboots = {"iluvatar:ainur.piImage": image, "iluvatar:nodes[2].boot": "netboot", "iluvatar:nodes[2].serial": "1a2b3c4d"}
    with pytest.raises(StackConfigError) as err:
        load_stack_file(write_stack(tmp_path, edit(homelab_doc(), netboots)))
    assert [p.path for p in err.value.problems] == ["iluvatar:ainur.piImage.url"]


def test_the_fix_for_an_image_server_named_in_the_zone_validates(tmp_path: Path) -> None:
    # The builder cannot resolve the internal zone (it asks network.dns through k3s's CoreDNS): the message names the
    # address the zone gives the name, and the url with that address in its place validates.
    name = "ubuntu-24.04.3-preinstalled-server-arm64+raspi.img.xz"
    sha256 = "9bb1799cee8965e6df0234c1c879dd35be1d87afe39b84951f278b6bd0433e56"
    netboots = {"iluvatar:nodes[2].boot": "netboot", "iluvatar:nodes[2].serial": "1a2b3c4d"}
    written = {**netboots, "iluvatar:ainur.piImage": {"url": f"http://manwe.iluvatar.home.arpa:8000/{name}", "sha256": sha256}}
    with pytest.raises(StackConfigError) as err:
        load_stack_file(write_stack(tmp_path, edit(homelab_doc(), written)))
    [problem] = err.value.problems
    assert problem.message.endswith("; write its address, 192.168.0.11")
    fixed = {**netboots, "iluvatar:ainur.piImage": {"url": f"http://192.168.0.11:8000/{name}", "sha256": sha256}}
    assert load_stack_file(write_stack(tmp_path, edit(homelab_doc(), fixed))).ainur is not None


def test_both_readings_a_leading_zero_image_server_is_given_validate(tmp_path: Path) -> None:
    # curl reads 192.168.0.050 as C's inet_aton does, the leading zero octal (192.168.0.40), and the writer may have
    # meant 50: the message names both, and the url with either in its place validates.
    name = "ubuntu-24.04.3-preinstalled-server-arm64+raspi.img.xz"
    sha256 = "9bb1799cee8965e6df0234c1c879dd35be1d87afe39b84951f278b6bd0433e56"
    netboots = {"iluvatar:nodes[2].boot": "netboot", "iluvatar:nodes[2].serial": "1a2b3c4d"}
    written = {**netboots, "iluvatar:ainur.piImage": {"url": f"http://192.168.0.050:8000/{name}", "sha256": sha256}}
    with pytest.raises(StackConfigError) as err:
        load_stack_file(write_stack(tmp_path, edit(homelab_doc(), written)))
    [problem] = err.value.problems
    assert problem.message.endswith(
        ": 192.168.0.050 has a part with a leading zero, which curl (the Pi image builder's) reads as octal, as C's inet_aton "
        "does: it dials 192.168.0.40, not 192.168.0.50; write 192.168.0.40, the server it would dial, or 192.168.0.50 if that is "
        "the server you meant"
    )
    for address in ("192.168.0.40", "192.168.0.50"):
        fixed = {**netboots, "iluvatar:ainur.piImage": {"url": f"http://{address}:8000/{name}", "sha256": sha256}}
        assert load_stack_file(write_stack(tmp_path, edit(homelab_doc(), fixed))).ainur is not None
