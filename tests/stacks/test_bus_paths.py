"""stacks.bus_paths: a data disk's name read back to the bus paths Talos could read for it, and a busPath glob judged
against them as go-glob reads it."""

from __future__ import annotations

import pytest

from stacks.bus_paths import by_path_pattern, can_match, kernel_name_pattern

_P = "/dev/disk/by-path/"


@pytest.mark.parametrize(
    ("link", "bus_path", "matched"),
    [
        ("pci-0000:00:04.0", "/pci0000:00/0000:00:04.0/virtio1", True),  # virtio-blk
        ("virtio-pci-0000:00:04.0", "/pci0000:00/0000:00:04.0/virtio1", True),  # its legacy link
        ("pci-0000:00:04.0", "/pci0000:00/0000:00:05.0/virtio1", False),
        ("pci-0000:00:05.0-scsi-0:0:0:0", "/pci0000:00/0000:00:05.0/virtio1/host2/target2:0:0/2:0:0:0", True),  # host rebased
        ("pci-0000:00:05.0-scsi-0:0:1:0", "/pci0000:00/0000:00:05.0/virtio1/host2/target2:0:0/2:0:0:0", False),
        ("pci-0000:00:14.0-usb-0:1:1.0-scsi-0:0:0:0", "/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:0", True),
        ("pci-0000:00:14.0-usbv3-0:1:1.0-scsi-0:0:0:0", "/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:0", True),
        ("pci-0000:00:14.0-usb-0:2:1.0-scsi-0:0:0:0", "/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:0", False),
        ("pci-0000:00:14.0-usb-0:1.2:1.0-scsi-0:0:0:0", "/pci0000:00/0000:00:14.0/usb2/2-1/2-1.2/2-1.2:1.0/host6/target6:0:0/6:0:0:0", True),
        ("platform-a40000000.pcie-pci-0004:41:00.0-nvme-1", "/platform/a40000000.pcie/pci0004:40/0004:40:00.0/0004:41:00.0/nvme", True),
        ("platform-fe2e0000.mmc", "/platform/fe2e0000.mmc/mmc_host/mmc0/mmc0:0001", True),
        ("platform-fe2e0000.mmc", "/platform/fe2e0000.mmc/mmc_host/mmc0/*", True),
        ("pci-0000:00:17.0-ata-2.0", "/pci0000:00/0000:00:17.0/ata*", True),
        ("pci-0000:00:17.0-ata-2.0", "/pci0000:00/0000:00:17.0/ata1/*", False),  # print_id is never below port_no
        ("pci-0000:00:17.0-ata-2.0", "/pci0000:00/0000:00:17.0/ata3/*", True),
        ("pci-0000:02:00.0-nvme-1", "/pci0000:00/0000:00:1d.0/*", True),  # the root port above the controller
        ("pci-0000:02:00.0-nvme-1", "/pci0000:00/0000:00:1d.0/*/ata*", False),
        ("pci-0000:02:00.0-nvme-1", "*/nvme", True),
        ("pci-0000:00:17.0-ata-1.0", "*/nvme", False),
        ("pci-0000:00:17.0-ata-1.0", "/pci0000:00/0000:00:1F.2/*", False),  # sysfs writes hex in lower case
    ],
)
def test_a_by_path_link_is_read_back_to_its_bus_paths(link: str, bus_path: str, matched: bool) -> None:
    pattern = by_path_pattern(_P + link)
    assert pattern is not None
    assert can_match(bus_path, pattern) is matched


def test_a_link_whose_way_is_not_read_has_no_bus_path() -> None:
    assert by_path_pattern(_P + "pci-0000:01:00.0-sas-phy0-lun-0") is None
    assert by_path_pattern(_P + "acpi-VMBUS:00-vmbus-f8b3781a1e824818a1c363d806ec15bb-lun-0") is None


@pytest.mark.parametrize(
    ("disk", "bus_path", "matched"),
    [
        ("/dev/nvme0n1", "*/nvme", True),
        ("/dev/sda", "*/nvme", False),
        ("/dev/sda", "/pci0000:00/0000:00:17.0/*", True),
        ("/dev/vda", "*/virtio*", True),
        ("/dev/disk/by-id/nvme-Samsung_SSD_980_1TB_S64ANS0T123456", "*/nvme", True),
    ],
)
def test_a_kernel_name_is_read_back_to_its_bus(disk: str, bus_path: str, matched: bool) -> None:
    pattern = kernel_name_pattern(disk)
    assert pattern is not None
    assert can_match(bus_path, pattern) is matched
