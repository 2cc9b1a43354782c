"""stacks.disk_ids: the serial and model an NVMe namespace's nvme.<vendor>-<serial hex>-<model hex>-<nsid> wwid carries;
Talos's glob() as go-glob reads it."""

from __future__ import annotations

from pathlib import Path

import pytest

from stacks import load_stack_file
from stacks.disk_ids import (
    by_id_has_serial,
    by_id_has_wwid,
    by_path_one_disk,
    glob,
    nvme_links_comparable,
    nvme_serial_runs,
    nvme_wwid_parts,
    one_nvme_namespace,
    one_wwn,
    udev_spelling,
)
from tests.edit import edit, homelab_doc, write_stack

# Serial "S64ANS0T123456", model "Samsung SSD 980 1TB", namespace 1, as the kernel's wwid_show writes them.
WWID = "nvme.144d-533634414e533054313233343536-53616d73756e67205353442039383020315442-00000001"
LINK = f"/dev/disk/by-id/nvme-{WWID}"
MODEL_SERIAL = "/dev/disk/by-id/nvme-Samsung_SSD_980_1TB_S64ANS0T123456"


def test_nvme_wwid_parts_reads_serial_model_and_namespace() -> None:
    assert nvme_wwid_parts(WWID) == ("S64ANS0T123456", "Samsung SSD 980 1TB", 1)
    assert nvme_wwid_parts(WWID.upper().replace("NVME.", "nvme.")) == ("S64ANS0T123456", "Samsung SSD 980 1TB", 1)


def test_nvme_wwid_parts_cuts_padding_and_refuses_other_forms() -> None:
    # A serial padded with blanks (as the controller reports its 20 bytes) when written by hand rather than by the kernel.
    assert nvme_wwid_parts("nvme.144d-41422020-4d-00000002") == ("AB", "M", 2)
    assert nvme_wwid_parts("nvme.144d-ff-4d-00000001") is None  # not ASCII
    assert nvme_wwid_parts("eui.0025388b91b2c3d4") is None
    assert nvme_wwid_parts("nvme.144d-533-4d-00000001") is None  # an odd number of hex digits


def test_links_of_one_namespace() -> None:
    assert one_nvme_namespace(LINK, MODEL_SERIAL)
    assert one_nvme_namespace(MODEL_SERIAL + "_1", LINK)
    assert not one_nvme_namespace(MODEL_SERIAL + "_2", LINK)  # another namespace of the disk
    assert not one_nvme_namespace(LINK + "-part1", MODEL_SERIAL)
    assert not one_nvme_namespace("/dev/disk/by-id/nvme-Samsung_SSD_980_1TB_S64ANS0T999999", LINK)
    assert nvme_links_comparable(LINK, "/dev/disk/by-id/nvme-Samsung_SSD_980_1TB_S64ANS0T999999")
    assert not nvme_links_comparable("/dev/disk/by-id/nvme-eui.0025388b91b2c3d4", MODEL_SERIAL)


def test_selectors_match_the_other_link() -> None:
    assert by_id_has_serial(LINK, "S64ANS0T123456")
    assert by_id_has_serial(LINK, "S64ANS0T*")
    assert not by_id_has_serial(LINK, "S64ANS0T999999")
    assert by_id_has_wwid(MODEL_SERIAL, WWID)
    assert by_id_has_wwid(MODEL_SERIAL + "_1", WWID)
    assert not by_id_has_wwid(MODEL_SERIAL + "_2", WWID)


def test_a_model_selector_of_another_model_leaves_an_nvme_nvme_link_alone(tmp_path: Path) -> None:
    doc = edit(homelab_doc(), {"iluvatar:nodes[3].installDisk": {"model": "WD Blue*"}, "iluvatar:nodes[3].dataDisks": [LINK]})
    load_stack_file(write_stack(tmp_path, doc), require_secrets=True)


@pytest.mark.parametrize(
    ("pattern", "subject", "matches"),
    [
        # go-glob v1.0.0 glob.go:13-20: the empty pattern matches the empty subject alone; `*` alone, anything.
        ("", "", True),
        ("", "a", False),
        ("*", "", True),
        ("*", "/dev/sda", True),
        # No `*`: compared whole (glob.go:24-27), so `?` and `[...]` are the characters themselves.
        ("/dev/nvme0n1", "/dev/nvme0n1", True),
        ("/dev/nvme?n1", "/dev/nvme0n1", False),
        ("/dev/nvme?n1", "/dev/nvme?n1", True),
        ("/dev/nvme[!0]n1", "/dev/nvme1n1", False),
        ("/dev/sd[ab]", "/dev/sda", False),
        ("S64A\\*", "S64A\\X", True),  # a backslash escapes nothing: the `*` after it is still the wildcard
        # A first part must start the subject, a last part end it (glob.go:37-41,55).
        ("/dev/sd*", "/dev/sda", True),
        ("/dev/sd*", "x/dev/sda", False),
        ("*n1", "/dev/nvme0n1", True),
        ("*n1", "/dev/nvme0n2", False),
        # Middle parts found leftmost in what is left, in order (glob.go:43-51).
        ("a*b*c", "axxbyyc", True),
        ("a*b*c", "acb", False),
        ("a*a", "a", False),
        ("ab*ba", "aba", False),
        ("**", "x", True),
        ("S64ANS0T*", "S64ANS0T123456", True),
    ],
)
def test_glob_is_go_globs_at_each_boundary(pattern: str, subject: str, matches: bool) -> None:
    assert glob(pattern, subject) is matches


def test_an_install_selectors_serial_glob_is_read_as_go_glob() -> None:
    """`?` is no wildcard in Talos's glob: a serial written with one matches only a serial with a `?` in it."""
    assert not by_id_has_serial(MODEL_SERIAL, "S64ANS0T12345?")
    assert not by_id_has_serial(LINK, "S64ANS0T12345[0-9]")
    assert by_id_has_serial(MODEL_SERIAL, "S64ANS0T1*6")
    assert not by_id_has_wwid("/dev/disk/by-id/wwn-0x5002538e4099a1b2", "naa.5002538e4099a1b?")
    assert by_id_has_wwid("/dev/disk/by-id/wwn-0x5002538e4099a1b2", "naa.5002538e*")


def test_a_wwid_is_compared_with_a_link_case_and_all() -> None:
    # Talos's glob compares the wwid case and all, and the kernel writes it in lower case: an upper-case wwid selects
    # no disk, so it is not the disk of the link udev writes in lower case (nor of one written in upper case). A naa.
    # wwid all in upper case is a SCSI name string's, which the kernel copies verbatim: the NAA the links carry.
    link = "/dev/disk/by-id/wwn-0x5002538e4010a0b0"
    assert by_id_has_wwid(link, "naa.5002538e4010a0b0")
    assert by_id_has_wwid(link.upper().replace("/DEV/DISK/BY-ID/WWN-0X", "/dev/disk/by-id/wwn-0x"), "naa.5002538e4010a0b0")
    assert by_id_has_wwid(link, "naa.5002538E4010A0B0")
    assert not by_id_has_wwid(link, "naa.5002538E4010a0b0")
    assert not by_id_has_wwid("/dev/disk/by-id/nvme-eui.0025388b91b2c3d4", "eui.0025388B91B2C3D4")


def test_udev_spells_a_run_of_blanks_as_one_underscore_and_cuts_the_ends() -> None:
    # systemd src/shared/udev-util.c, udev_replace_whitespace; then udev_replace_chars.
    assert udev_spelling(" Samsung SSD  980\t1TB ") == "Samsung_SSD_980_1TB"
    assert udev_spelling("WDC/WD40 (x)") == "WDC_WD40__x_"


def test_an_nvme_serial_with_a_blank_is_any_run_of_the_links_last_words() -> None:
    link = "/dev/disk/by-id/nvme-Samsung_SSD_980_PRO_1TB_S5GXNF0R_123456"
    assert nvme_serial_runs("Samsung_SSD_980_S5GX_NF0R_1") == [
        "SSD_980_S5GX_NF0R_1",
        "980_S5GX_NF0R_1",
        "S5GX_NF0R_1",
        "NF0R_1",
        "1",
        "SSD_980_S5GX_NF0R",
        "980_S5GX_NF0R",
        "S5GX_NF0R",
        "NF0R",
    ]
    assert by_id_has_serial(link, "S5GXNF0R 123456")
    assert by_id_has_serial(link, "S5GXNF0R  123456")
    assert by_id_has_serial(link, "S5GXNF0R 1*")
    assert not by_id_has_serial(link, "S5GXNF0R 999999")


_P = "/dev/disk/by-path/"


@pytest.mark.parametrize(
    ("a", "b", "said"),
    [
        (_P + "pci-0000:00:17.0-ata-1", _P + "pci-0000:00:17.0-ata-1.0", "same"),  # the compat link and ID_PATH
        (_P + "pci-0000:00:17.0-ata-1", _P + "pci-0000:00:17.0-ata-1.1.0", "maybe"),  # behind a port multiplier
        (_P + "pci-0000:00:17.0-ata-1", _P + "pci-0000:00:17.0-ata-1.1", "maybe"),  # a PATA slave
        (_P + "pci-0000:00:17.0-ata-1.0", _P + "pci-0000:00:17.0-ata-1.1.0", None),
        (_P + "pci-0000:00:17.0-ata-1", _P + "pci-0000:00:17.0-ata-2.0", None),
        (_P + "pci-0000:00:17.0-ata-1", _P + "pci-0000:00:1f.2-ata-1.0", None),
        (_P + "pci-0000:00:14.0-usb-0:1:1.0-scsi-0:0:0:0", _P + "pci-0000:00:14.0-usbv3-0:1:1.0-scsi-0:0:0:0", "same"),
        (_P + "pci-0000:00:14.0-usb-0:1:1.0-scsi-0:0:0:0", _P + "pci-0000:00:14.0-usbv3-0:2:1.0-scsi-0:0:0:0", None),
        (_P + "pci-0000:00:04.0", _P + "virtio-pci-0000:00:04.0", "same"),
        (_P + "pci-0000:00:04.0", _P + "virtio-pci-0000:00:05.0", None),
        (_P + "pci-0000:00:17.0-ata-1.0-part1", _P + "pci-0000:00:17.0-ata-1", None),  # a partition: its disk is compared
        ("/dev/sda", _P + "pci-0000:00:17.0-ata-1", None),
    ],
)
def test_one_disks_by_path_links_are_read_back_to_one(a: str, b: str, said: str | None) -> None:
    assert by_path_one_disk(a, b) == said
    assert by_path_one_disk(b, a) == said


@pytest.mark.parametrize(
    ("link", "wwid", "said"),
    [
        ("/dev/disk/by-id/scsi-35000c500a1b2c3d4", "naa.5000c500a1b2c3d4", True),  # scsi_id's ID_SERIAL: 3 and the NAA
        ("/dev/disk/by-id/scsi-35000c500a1b2c3d4", "naa.5000c500a1b2c3d5", False),
        ("/dev/disk/by-id/scsi-360014051234567890abcdef012345678", "naa.60014051234567890abcdef012345678", True),
        ("/dev/disk/by-id/scsi-1ATA_CT500MX500SSD1_2313E6A1B2C3", "naa.5000c500a1b2c3d4", False),
        ("/dev/disk/by-id/nvme-uuid.6f9d1b2c-0000-4000-8000-000000000001", "uuid.6f9d1b2c-0000-4000-8000-000000000001", True),
    ],
)
def test_a_wwid_is_read_from_the_scsi_3_and_nvme_uuid_links(link: str, wwid: str, said: bool) -> None:
    assert by_id_has_wwid(link, wwid) is said


def test_one_naa_is_one_disk_by_its_wwn_and_scsi_3_links() -> None:
    assert one_wwn("/dev/disk/by-id/wwn-0x5000c500a1b2c3d4", "/dev/disk/by-id/scsi-35000c500a1b2c3d4")
    assert one_wwn("/dev/disk/by-id/scsi-35000c500a1b2c3d4", "/dev/disk/by-id/wwn-0x5000c500a1b2c3d4")
    assert not one_wwn("/dev/disk/by-id/wwn-0x5000c500a1b2c3d4", "/dev/disk/by-id/scsi-35000c500a1b2c3d5")
    assert not one_wwn("/dev/disk/by-id/wwn-0x5000c500a1b2c3d4", "/dev/disk/by-id/wwn-0x5000c500a1b2c3d4")
