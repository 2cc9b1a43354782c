"""The storage facts and the removal rule: which hosts hold OSDs, which class is default, what may leave."""

from __future__ import annotations

from pathlib import Path

import pytest

from stacks import StackConfig, StackConfigError, load_stack_file
from stacks import storage as facts
from tests.edit import GOES_WITH_GITOPS, HOMELAB, RK1, edit, homelab_doc, write_stack

OSDS = {"taniquetil": ("/dev/nvme0n1",), "tirion": ("/dev/nvme0n1",), "alqualonde": ("/dev/nvme0n1",)}


def _stack(tmp_path: Path, set_: dict[str, object] | None = None, delete: list[str] | None = None) -> StackConfig:
    return load_stack_file(write_stack(tmp_path, edit(homelab_doc(), set_, delete)))


def test_osd_hosts_are_the_arda_machines_with_data_disks() -> None:
    assert facts.osd_hosts(load_stack_file(HOMELAB).nodes) == [
        facts.OsdHost(n, ("/dev/nvme0n1",), ()) for n in ("taniquetil", "tirion", "alqualonde")
    ]
    assert [h.name for h in facts.osd_hosts(load_stack_file(RK1).nodes)] == ["talos-1", "talos-2", "talos-3", "talos-4"]


def test_default_classes() -> None:
    stack = load_stack_file(HOMELAB)
    assert (facts.default_class(stack, "arda"), facts.default_class(stack, "ainur")) == ("ceph-block", "longhorn")
    assert facts.arda_classes(stack) == ["ceph-block", "ceph-filesystem", "local-path"]
    assert facts.ainur_classes(stack) == ["longhorn"]
    assert facts.default_class(load_stack_file(RK1), "ainur") is None


def test_two_osd_hosts_get_the_replication_error(tmp_path: Path) -> None:
    with pytest.raises(StackConfigError) as err:
        _stack(tmp_path, delete=["iluvatar:nodes[5].dataDisks"])
    assert [p.path for p in err.value.problems] == ["iluvatar:storage.arda.ceph.replicas"]
    assert "set iluvatar:storage.arda.ceph.replicas: 2 (2 copies: data survives one lost host)" in str(err.value.problems[0])


def test_without_gitops_ceph_is_not_installed_so_its_rules_do_not_apply(tmp_path: Path) -> None:
    doc = edit(
        homelab_doc(),
        {"iluvatar:ainur.gitMirror.url": "https://github.com/example/homelab.git"},
        # With GitOps, what goes with it (tests.edit.GOES_WITH_GITOPS).
        [*GOES_WITH_GITOPS, "iluvatar:nodes[5].dataDisks"],
    )
    assert load_stack_file(write_stack(tmp_path, doc)).storage.arda.ceph.replicas is None


def test_a_retired_disk_may_leave_and_an_unretired_one_may_not(tmp_path: Path) -> None:
    stack = _stack(tmp_path, delete=["iluvatar:nodes[4].dataDisks"], set_={"iluvatar:storage.arda.ceph.replicas": 2})
    refused = facts.check_removals(stack, facts.Deployed(OSDS, {}))
    assert [p.path for p in refused] == ["iluvatar:nodes[4].dataDisks"]
    assert "set retire: [/dev/nvme0n1] on tirion" in str(refused[0]) and "docs/day2.md#retiring-a-disk-or-a-machine" in str(refused[0])
    assert facts.check_removals(stack, facts.Deployed(OSDS, {"tirion": ("/dev/nvme0n1",)})) == []


def test_a_retired_machine_may_leave(tmp_path: Path) -> None:
    stack = _stack(tmp_path, set_={"iluvatar:storage.arda.ceph.replicas": 2}, delete=["iluvatar:nodes[5].dataDisks"])
    assert [p.path for p in facts.check_removals(stack, facts.Deployed(OSDS, {}))] == ["iluvatar:nodes[5].dataDisks"]
    assert facts.check_removals(stack, facts.Deployed(OSDS, {"alqualonde": ("/dev/nvme0n1",)})) == []


def test_a_first_deployment_has_nothing_to_refuse() -> None:
    assert facts.check_removals(load_stack_file(HOMELAB), facts.Deployed.from_output(None)) == []
    assert facts.Deployed.from_output({}) == facts.Deployed({}, {})


def test_the_output_reads_back_as_it_was_written() -> None:
    output = {"cephOsds": {"tirion": ["/dev/nvme0n1", "/dev/nvme1n1"]}, "cephRetiring": {"tirion": ["/dev/nvme1n1"]}, "classes": {}}
    assert facts.Deployed.from_output(output) == facts.Deployed({"tirion": ("/dev/nvme0n1", "/dev/nvme1n1")}, {"tirion": ("/dev/nvme1n1",)})
    with pytest.raises(TypeError, match=r"cephOsds = \['x'\], not a mapping of node to disks"):
        facts.Deployed.from_output({"cephOsds": ["x"]})


def test_netbooted_roots_need_longhorn_on_two_card_pis_once_the_netboot_pod_can_move(tmp_path: Path) -> None:
    """Review 41-1 H8: without GitOps there is no Longhorn, so the roots' volume is local-path, pinned to one Pi."""
    netboot = {"iluvatar:nodes[2].boot": "netboot", "iluvatar:nodes[2].serial": "1a2b3c4d"}
    doc = edit(homelab_doc(), {"iluvatar:ainur.gitMirror.url": "https://github.com/example/homelab.git", **netboot}, list(GOES_WITH_GITOPS))
    with pytest.raises(StackConfigError) as err:
        load_stack_file(write_stack(tmp_path, doc))
    assert [str(p) for p in err.value.problems] == [
        "iluvatar:nodes[2].boot: netboot: ilmare's root lives on one volume that must follow the netboot pod between the 2 Pis booting "
        "from their cards (manwe, eonwe), and only Longhorn replicates it; Longhorn is installed only with iluvatar:gitops, which this "
        "stack has not: set iluvatar:gitops, or set boot: disk"
    ]
    # One Pi boots from its card: the netboot pod cannot move, and its local volume is where it runs.
    one = edit(homelab_doc(), {"iluvatar:ainur.gitMirror.url": "https://github.com/example/homelab.git", **netboot, "iluvatar:nodes[1].boot": "netboot",
                               "iluvatar:nodes[1].serial": "9ffefdef"}, list(GOES_WITH_GITOPS))  # fmt: skip
    assert [n.name for n in load_stack_file(write_stack(tmp_path, one)).nodes if n.boot == "netboot"] == ["eonwe", "ilmare"]
    # With GitOps and Longhorn on both card Pis (the homelab's), it stands.
    assert load_stack_file(write_stack(tmp_path, edit(homelab_doc(), netboot))).nodes[2].boot == "netboot"


def test_a_serial_glob_may_match_a_disk_of_each_machine(tmp_path: Path) -> None:
    # `S649*` is a model's serial prefix, as Talos's selector globs it: each machine's own disk may match; only a serial
    # with no glob names one disk, in one machine.
    glob = {"serial": "S649*"}
    stack = _stack(tmp_path, {"iluvatar:nodes[3].installDisk": glob, "iluvatar:nodes[4].installDisk": glob})
    assert [str(n.install_disk) for n in stack.nodes[3:5]] == ["{serial: S649*}", "{serial: S649*}"]


@pytest.mark.parametrize(
    "options",
    [
        # vers=4 after 4.1 sets only the major version and keeps minorversion=1 (fs/nfs/fs_context.c, nfs_parse_version_string).
        ["nfsvers=4.1", "vers=4"],
        # pos and positive are one constant of nfs_param_enums_lookupcache.
        ["lookupcache=pos", "lookupcache=positive"],
        # intr and nointr are fs_param_deprecated: the kernel sets nothing.
        ["hard", "intr", "nointr"],
        # fsc=<tag> sets FSCACHE as fsc does, and the tag.
        ["fsc", "fsc=tag"],
    ],
)
def test_nfs_mount_options_that_agree_are_accepted(options: list[str], tmp_path: Path) -> None:
    doc = edit(homelab_doc(), {"iluvatar:storage.nfs": {"server": "192.168.0.40", "share": "/volume1/kubernetes", "mountOptions": options}})
    load_stack_file(write_stack(tmp_path, doc), require_secrets=True)


@pytest.mark.parametrize(
    ("value", "number"),
    [("8", 8), ("+8", 8), ("0x8", 8), ("0X10", 16), ("010", 8), ("0", 0), ("0x", None), ("08", None), ("-8", None), ("", None), ("4294967296", None)],
)
def test_nconnect_is_read_as_the_kernel_reads_a_u32(value: str, number: int | None) -> None:
    # fs_param_is_u32 parses with kstrtouint(..., 0): a leading +, 0x hex and 0 octal are the same number.
    assert facts._kernel_uint(value) == number


@pytest.mark.parametrize("option", ["nconnect=0x8", "nconnect=+8", "nconnect=0x10", "nconnect=1", "nconnect=020"])
def test_nconnect_in_range_in_every_form_the_kernel_reads_passes(option: str) -> None:
    assert list(facts._mount_values([option])) == []
