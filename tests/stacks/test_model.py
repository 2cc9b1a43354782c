"""The config models: parsing, normalisation and the checks each field makes alone."""

from __future__ import annotations

import csv
from datetime import date
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
from pydantic import ValidationError

from stacks import load_stack_file, model
from stacks.fields import normalise_mac
from stacks.model import (
    UBUNTU_CODENAMES,
    UBUNTU_POINTS,
    UBUNTU_SUPPORT,
    AddressRange,
    Arda,
    Connector,
    DiskSelector,
    Edge,
    EmailReceiver,
    Network,
    Node,
    PiImage,
    supported_release,
)
from tests.edit import HOMELAB, RK1

NODE = {
    "name": "tirion",
    "role": "valinor",
    "arch": "amd64",
    "board": "generic-x86",
    "mac": "a8:b8:e0:20:00:02",
    "ip": "192.168.0.22",
    "installDisk": "/dev/sda",
}


@pytest.mark.parametrize(
    "spelling",
    [
        "A8:B8:E0:20:00:02",
        "a8-b8-e0-20-00-02",
        "A8-B8-E0-20-00-02",
        "a8b8.e020.0002",
        "A8B8E0200002",
        " a8:b8:e0:20:00:02 ",
    ],
)
def test_mac_spellings_normalise_to_lower_colon_form(spelling: str) -> None:
    assert normalise_mac(spelling) == "a8:b8:e0:20:00:02"


@pytest.mark.parametrize(
    "bad",
    [
        "a8:b8:e0:20:00",
        "a8:b8:e0:20:00:02:03",
        "a8:b8-e0:20:00:02",
        "g8:b8:e0:20:00:02",
        "a8b8e020000",
        "00:00:00:00:00:00",
        "ff:ff:ff:ff:ff:ff",
        0xA8B8E0200002,
    ],
)
def test_bad_macs_are_rejected(bad: object) -> None:
    with pytest.raises(ValueError, match="MAC address"):
        normalise_mac(bad)


def test_node_parses_camel_case_and_normalises_mac() -> None:
    node = Node.model_validate({**NODE, "mac": "A8-B8-E0-20-00-02"})
    assert node.mac == "a8:b8:e0:20:00:02"
    assert node.ip == IPv4Address("192.168.0.22")
    assert node.install_disk == "/dev/sda"
    assert node.cluster == "arda"


def test_models_are_frozen() -> None:
    node = Node.model_validate(NODE)
    with pytest.raises(ValidationError):
        node.name = "other"  # type: ignore[misc]


def test_snake_case_keys_are_not_accepted_in_a_stack() -> None:
    with pytest.raises(ValidationError) as err:
        Node.model_validate({**{k: v for k, v in NODE.items() if k != "installDisk"}, "install_disk": "/dev/sda"})
    kinds = {e["type"] for e in err.value.errors()}
    assert kinds == {"missing", "extra_forbidden"}


@pytest.mark.parametrize("name", ["a", "node-1", "x" * 63])
def test_rfc1123_names_accepted(name: str) -> None:
    assert Node.model_validate({**NODE, "name": name}).name == name


@pytest.mark.parametrize("name", ["", "-a", "a-", "A", "a_b", "a.b", "x" * 64])
def test_non_rfc1123_names_rejected(name: str) -> None:
    with pytest.raises(ValidationError):
        Node.model_validate({**NODE, "name": name})


def test_address_range_membership_and_overlap() -> None:
    r = AddressRange.model_validate({"start": "10.0.0.10", "end": "10.0.0.20"})
    assert IPv4Address("10.0.0.10") in r and IPv4Address("10.0.0.20") in r
    assert IPv4Address("10.0.0.21") not in r
    assert r.size() == 11
    assert r.overlaps(AddressRange.model_validate({"start": "10.0.0.20", "end": "10.0.0.30"}))
    assert not r.overlaps(AddressRange.model_validate({"start": "10.0.0.21", "end": "10.0.0.30"}))


def test_network_requires_a_dns_server() -> None:
    with pytest.raises(ValidationError):
        Network.model_validate(
            {
                "lan": "10.0.0.0/24",
                "gateway": "10.0.0.1",
                "dns": [],
                "dhcpRange": {"start": "10.0.0.100", "end": "10.0.0.150"},
                "loadBalancerPool": {"start": "10.0.0.200", "end": "10.0.0.210"},
                "domain": "home.arpa",
            }
        )


@pytest.mark.parametrize(("version", "ok"), [("v1.12.4", True), ("1.12.4", False), ("v1.12", False), ("v1.12.4-beta.0", False)])
def test_talos_version_is_well_formed(version: str, ok: bool) -> None:
    arda = {"clusterName": "arda", "vip": "10.0.0.5", "talosVersion": version, "kubernetesVersion": "v1.34.1"}
    if ok:
        assert Arda.model_validate(arda).talos_version == version
    else:
        with pytest.raises(ValidationError):
            Arda.model_validate(arda)


def test_homelab_stack_matches_the_seed_hardware() -> None:
    stack = load_stack_file(HOMELAB)
    assert stack.network.lan == IPv4Network("192.168.0.0/24")
    assert (str(stack.network.load_balancer_pool.start), str(stack.network.load_balancer_pool.end)) == ("192.168.0.220", "192.168.0.239")
    assert [n.role for n in stack.ainur_nodes] == ["valar", "maiar", "maiar"]
    assert all(n.board == "rpi5" and n.arch == "arm64" for n in stack.ainur_nodes)
    valinor = stack.by_role("valinor")
    assert len(valinor) == 3 and all(n.arch == "amd64" and n.data_disks == ("/dev/nvme0n1",) for n in valinor)
    assert len(stack.by_role("istari")) == 2


def test_rk1_stack_has_no_ainur_and_schedules_on_control_planes() -> None:
    stack = load_stack_file(RK1)
    assert stack.ainur is None and stack.ainur_nodes == ()
    assert stack.arda.allow_scheduling_on_control_planes
    assert [n.role for n in stack.nodes] == ["valinor"] * 3 + ["istari"]
    assert {n.board for n in stack.nodes} == {"rk1"}


@pytest.mark.parametrize(
    ("edits", "netboots"),
    [
        ({}, True),  # generic-x86 with the Ainur: netboot by default
        ({"boot": "disk"}, False),
        ({"board": "rk1", "arch": "arm64"}, False),  # cannot chainload iPXE
        ({"board": "rk1", "arch": "arm64", "boot": "netboot"}, True),  # what the user says wins (validation judges it)
        ({"vlan": "iot", "ip": "192.168.20.22"}, False),  # the Ainur answer PXE on the LAN only
        ({"role": "valar"}, False),  # the Ainur are flashed, not netbooted
    ],
)
def test_which_machines_boot_from_the_network(edits: dict[str, str], netboots: bool) -> None:
    stack = load_stack_file(HOMELAB)
    node = Node.model_validate({**NODE, **edits})
    assert stack.boots_from_network(node) is netboots
    rk1 = load_stack_file(RK1)  # no Ainur: nothing netboots unless it says so
    assert rk1.boots_from_network(node) is (edits.get("boot") == "netboot")


def test_disk_selector_speaks_talos_camel_case() -> None:
    selector = DiskSelector.model_validate({"busPath": "/pci0000:00/0000:00:17.0/*", "type": "nvme", "size": ">= 256GB"})
    assert selector.talos() == {"size": ">= 256GB", "type": "nvme", "busPath": "/pci0000:00/0000:00:17.0/*"}
    assert str(selector) == "{size: >= 256GB, type: nvme, busPath: /pci0000:00/0000:00:17.0/*}"


def _network(domain: str) -> dict[str, object]:
    return {
        "lan": "10.0.0.0/24",
        "gateway": "10.0.0.1",
        "dns": ["10.0.0.1"],
        "dhcpRange": {"start": "10.0.0.100", "end": "10.0.0.150"},
        "loadBalancerPool": {"start": "10.0.0.200", "end": "10.0.0.210"},
        "domain": domain,
    }


def test_domain_names_drop_a_trailing_dot_and_stop_at_253_characters() -> None:
    assert Network.model_validate(_network(" iluvatar.home.arpa. ")).domain == "iluvatar.home.arpa"
    longest = ".".join(["a" * 63] * 3 + ["b" * 61])  # 253 characters, the most DNS allows
    assert len(longest) == 253 and Network.model_validate(_network(longest)).domain == longest
    for bad in (longest + "b", "home..arpa"):
        with pytest.raises(ValidationError, match="is not a DNS domain name"):
            Network.model_validate(_network(bad))
    # A name in upper case is one (DNS ignores case), but the names rendered from it are lower case only: said so.
    with pytest.raises(ValidationError, match=r"home\.arpaX has upper-case letters: .*; write home\.arpax"):
        Network.model_validate(_network("home.arpaX"))


@pytest.mark.parametrize(
    ("written", "read"),
    [("Admin@Example.COM", "Admin@example.com"), ("alerts@Mail.Example.org", "alerts@mail.example.org"), ("you@example.org", "you@example.org")],
)
def test_an_e_mail_domain_in_capitals_is_taken_in_lower_case(written: str, read: str) -> None:
    # DNS reads a domain in any case; the part before @ is its server's to compare, so it stays as written.
    assert Edge.model_validate({"acmeEmail": written}).acme_email == read
    assert EmailReceiver.model_validate({"to": written, "from": written}).sender == read
    assert Connector.model_validate({"type": "static", "email": written}).email == read


def test_ubuntu_support_is_distro_info_datas() -> None:
    # The table the Pi image's release is refused by, against the file Debian's and Ubuntu's own tools read it from
    # (distro-info-data's ubuntu.csv: an LTS's server support is its eol-server column, another release's its eol).
    rows = list(csv.DictReader(Path("/usr/share/distro-info/ubuntu.csv").read_text().splitlines()))
    ends = {r["version"].split()[0]: date.fromisoformat(r.get("eol-server") or r["eol"]) for r in rows}
    assert {release: ends[release] for release in UBUNTU_SUPPORT} == UBUNTU_SUPPORT


def test_ubuntu_codenames_are_distro_info_datas() -> None:
    # A codename folder is checked as the series it names, so each codename must be its series' in the same file.
    rows = list(csv.DictReader(Path("/usr/share/distro-info/ubuntu.csv").read_text().splitlines()))
    series = {r["series"]: r["version"].split()[0] for r in rows}
    assert {name: series[name] for name in UBUNTU_CODENAMES} == UBUNTU_CODENAMES


def test_a_codename_folder_of_the_newest_point_release_is_taken() -> None:
    url = "https://cdimage.ubuntu.com/releases/noble/release/ubuntu-24.04.5-preinstalled-server-arm64+raspi.img.xz"
    assert PiImage.model_validate({"release": "24.04.5", "url": url, "sha256": "1" * 63 + "2"}).url == url


@pytest.mark.parametrize(
    "fixed",
    [
        # The url's message: release 24.04.3's file in its folder, with that file's sha256.
        {"release": "24.04.3", "url": "https://cdimage.ubuntu.com/releases/24.04.3/release/ubuntu-24.04.3-preinstalled-server-arm64+raspi.img.xz"},
        # The release's other way out: release 24.04.2, its file in its own folder, the sha256 as written.
        {"release": "24.04.2", "url": "https://cdimage.ubuntu.com/releases/24.04.2/release/ubuntu-24.04.2-preinstalled-server-arm64+raspi.img.xz"},
    ],
)
def test_each_way_out_of_a_file_of_another_release_in_the_folder_written_validates(fixed: dict[str, str]) -> None:
    default = PiImage.model_fields["sha256"].default
    written = {
        "url": "https://cdimage.ubuntu.com/releases/24.04.3/release/ubuntu-24.04.2-preinstalled-server-arm64+raspi.img.xz",
        "sha256": "4" * 63 + "5",
    }
    with pytest.raises(ValidationError):
        PiImage.model_validate(written)
    sha256 = default if fixed["release"] == "24.04.3" else written["sha256"]
    assert PiImage.model_validate({**fixed, "sha256": sha256}).release == fixed["release"]


@pytest.mark.parametrize(
    ("today", "instead"), [(date(2026, 11, 27), "24.04 LTS (supported to 2029-05-31)"), (date(2025, 6, 1), "25.04 (supported to 2026-01-15)")]
)
def test_the_fix_names_the_newest_release_still_supported(today: date, instead: str) -> None:
    assert supported_release(today) == instead


def test_a_release_is_held_to_the_day_its_table_was_read_not_to_the_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    # A stack that validates keeps validating: read against a table read before 25.04's end, 25.04 is taken, whatever
    # today's date; read on the table's own day, it is refused.
    image = {
        "release": "25.04",
        "url": "https://cdimage.ubuntu.com/releases/25.04/release/ubuntu-25.04-preinstalled-server-arm64+raspi.img.xz",
        "sha256": "5bb1799cee8965e6df0234c1c879dd35be1d87afe39b84951f278b6bd0433e56",
    }
    with pytest.raises(ValueError, match=r"Ubuntu 25\.04's standard support ended on 2026-01-15"):
        PiImage.model_validate(image)
    monkeypatch.setattr(model, "UBUNTU_SUPPORT_READ", date(2025, 6, 1))
    assert PiImage.model_validate(image).release == "25.04"


def test_every_series_the_support_table_knows_has_its_newest_point_release() -> None:
    assert set(UBUNTU_POINTS) == set(UBUNTU_SUPPORT)


@pytest.mark.parametrize("release", ["24.04", "24.04.1", "24.04.5"])
def test_a_published_point_release_is_taken(release: str) -> None:
    url = f"https://cdimage.ubuntu.com/releases/{release}/release/ubuntu-{release}-preinstalled-server-arm64+raspi.img.xz"
    assert PiImage.model_validate({"release": release, "url": url, "sha256": "4" * 63 + "5"}).release == release


def test_a_point_release_past_the_newest_published_is_refused_and_its_fix_validates() -> None:
    url = "https://cdimage.ubuntu.com/releases/{0}/release/ubuntu-{0}-preinstalled-server-arm64+raspi.img.xz"
    with pytest.raises(ValueError, match=r"24\.04\.6 is no published point release of Ubuntu 24\.04: the newest this Iluvatar knows is 24\.04\.5,"):
        PiImage.model_validate({"release": "24.04.6", "url": url.format("24.04.6"), "sha256": "4" * 63 + "5"})
    assert PiImage.model_validate({"release": "24.04.5", "url": url.format("24.04.5"), "sha256": "4" * 63 + "5"}).release == "24.04.5"


def test_the_default_image_at_a_mirror_is_the_same_file() -> None:
    """A mirror keeps cdimage's file names: the default image's name at another host, with the default's sha256, is that
    file, which the builder checks by its sha256; another file name with it is another file, refused."""
    default = PiImage()
    mirror = "http://ftp.halifax.rwth-aachen.de/ubuntu-releases/24.04.3/ubuntu-24.04.3-preinstalled-server-arm64+raspi.img.xz"
    assert PiImage.model_validate({"url": mirror, "sha256": default.sha256}).url == mirror
    other = mirror.replace("24.04.3", "24.04.2")
    with pytest.raises(ValueError, match=r"the SHA-256 of the default image .* another file"):
        PiImage.model_validate({"release": "24.04.2", "url": other, "sha256": default.sha256})


def test_a_url_whose_folder_names_another_release_is_refused_and_its_fix_validates() -> None:
    """cdimage keeps an image in its own release's folder: the folder is compared with the file name's release (and so
    with `release`), and the url the message gives is taken."""
    default = PiImage()
    url = default.url.replace("/24.04.3/", "/24.04.2/")
    with pytest.raises(ValidationError) as err:
        PiImage.model_validate({"url": url, "sha256": default.sha256})
    assert [(e["loc"], e["msg"]) for e in err.value.errors()] == [
        (
            ("url",),
            f"Value error, {url}: its folder 24.04.2/ names Ubuntu 24.04.2, but its file name Ubuntu 24.04.3, the release "
            "written: cdimage.ubuntu.com keeps each image in its own release's folder (releases/<release>/release/), so there "
            "is no ubuntu-24.04.3-preinstalled-server-arm64+raspi.img.xz under 24.04.2/ and the Pi image builder's download "
            f"would fail (404) on the card Pis at `pulumi up`; write url: {default.url}",
        )
    ]
    assert PiImage.model_validate({"url": default.url, "sha256": default.sha256}).url == default.url


def test_a_series_folder_holds_only_its_newest_point_release() -> None:
    # releases/24.04/release/ is the series' folder on cdimage, and holds only the newest point release UBUNTU_POINTS
    # knows (24.04.5): another point release under it is a 404, and the url to write is its own folder's.
    default = PiImage()
    url = default.url.replace("/24.04.3/", "/24.04/")
    with pytest.raises(ValidationError) as err:
        PiImage.model_validate({"url": url, "sha256": default.sha256})
    assert [(e["loc"], e["msg"]) for e in err.value.errors()] == [
        (
            ("url",),
            f"Value error, {url}: its folder 24.04/ names Ubuntu 24.04, but its file name Ubuntu 24.04.3, the release written: "
            "cdimage.ubuntu.com keeps each image in its own release's folder (releases/<release>/release/; releases/24.04/release/ "
            "holds only 24.04's newest point release, 24.04.5), so there is no ubuntu-24.04.3-preinstalled-server-arm64+raspi.img.xz "
            f"under 24.04/ and the Pi image builder's download would fail (404) on the card Pis at `pulumi up`; write url: {default.url}",
        )
    ]
    newest = url.replace("24.04.3", "24.04.5")
    assert PiImage.model_validate({"release": "24.04.5", "url": newest, "sha256": "4" * 63 + "5"}).url == newest


def test_folder_file_and_release_all_apart_fix_toward_the_release_written_and_the_fix_validates() -> None:
    # The file name is compared with release, the folder with the file name: the url the folder's message gives agrees
    # with the release written (its folder and file), and with it, and the sha256 it names, the image validates.
    url = "https://cdimage.ubuntu.com/releases/{0}/release/ubuntu-{1}-preinstalled-server-arm64+raspi.img.xz"
    sha256 = "4" * 63 + "5"
    with pytest.raises(ValidationError) as err:
        PiImage.model_validate({"release": "24.04.3", "url": url.format("24.04.1", "24.04.2"), "sha256": sha256})
    errors = err.value.errors()
    assert [(e["loc"], str(e["msg"]).split(" (")[0]) for e in errors] == [
        ((), "Value error, release is 24.04.3, but url names Ubuntu 24.04.2"),
        (
            ("url",),
            f"Value error, {url.format('24.04.1', '24.04.2')}: its folder 24.04.1/ names Ubuntu 24.04.1, but its file name Ubuntu 24.04.2: cdimage.ubuntu.com keeps each image in its own release's folder",
        ),
    ]
    default = PiImage()
    assert str(errors[1]["msg"]).endswith(
        f"; write url: {default.url} (release 24.04.3's file, the release written), and sha256: {default.sha256}, that file's"
    )
    assert PiImage.model_validate({"release": "24.04.3", "url": default.url, "sha256": default.sha256}).url == default.url


@pytest.mark.parametrize(
    ("folder", "file"),
    [("24.04.3", "24.04.9"), ("24.04.3", "24.04.2")],
    ids=["a file of no published release", "an older file"],
)
def test_a_folder_of_the_release_written_names_the_file_as_the_slip_and_the_fix_validates(folder: str, file: str) -> None:
    # The folder and release agree (24.04.3): the file name is what to change, never the folder to a release refused
    # (24.04.9) or away from the release written twice (24.04.2); the url and sha256 the message names validate.
    url = f"https://cdimage.ubuntu.com/releases/{folder}/release/ubuntu-{file}-preinstalled-server-arm64+raspi.img.xz"
    with pytest.raises(ValidationError) as err:
        PiImage.model_validate({"release": "24.04.3", "url": url, "sha256": "4" * 63 + "5"})
    [said] = [str(e["msg"]) for e in err.value.errors() if e["loc"] == ("url",)]
    fix = said.rsplit("; write url: ", 1)[1]
    fixed_url, fixed_sha = fix.split(" (release 24.04.3's file, the release written), and sha256: ")
    assert PiImage.model_validate({"release": "24.04.3", "url": fixed_url, "sha256": fixed_sha.removesuffix(", that file's")}).url == fixed_url


@pytest.mark.parametrize(
    "wwid",
    [
        "naa.5002538e4010a0b0",
        "eui.0025388b91b2c3d4",
        "naa.5002538e*",
        "t10.ATA     Samsung SSD 870 EVO 1TB   S6PUNX0T123456",
        "naa.5002538E4010A0B0",  # a SCSI name string, copied verbatim: SPC writes its hex in upper case
    ],
)
def test_a_wwid_in_the_kernels_spelling_is_taken(wwid: str) -> None:
    # A t10. wwid carries the disk's vendor and model text as it reports it, upper case and all.
    assert DiskSelector(wwid=wwid).wwid == wwid


@pytest.mark.parametrize(
    "wwid",
    [
        "0x5002538e4010a0b0",
        "0X5002538E4010A0B0",
        "NAA.5002538e4010a0b0",
        "eui.0025388B91B2C3D4",
        "5002538e4010a0b0",
        "naa.5002538E4010a0b0",  # mixed case: neither the kernel's nor a name string's
        "35002538e4010a0b0",  # multipath's and scsi_id's
        "scsi-35002538e4010a0b0",
        "naa.0x5002538e4010a0b0",
        "eui.0x0025388b91b2c3d4",
        "WWN-0x5002538e4010a0b0",
        "wwn-0X5002538e4010a0b0",
        "nvme-EUI.0025388b91b2c3d4",
    ],
)
def test_a_wwid_in_another_spelling_is_refused(wwid: str) -> None:
    with pytest.raises(ValueError, match="selects no disk"):
        DiskSelector(wwid=wwid)
