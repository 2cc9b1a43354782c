"""stacks.disk_ids: the serial and model an NVMe namespace's nvme.<vendor>-<serial hex>-<model hex>-<nsid> wwid carries."""

from __future__ import annotations

from pathlib import Path

from stacks import load_stack_file
from stacks.disk_ids import by_id_has_serial, by_id_has_wwid, nvme_links_comparable, nvme_wwid_parts, one_nvme_namespace
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
