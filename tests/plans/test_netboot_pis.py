"""The netbooting maiar's plan (plans.netboot.pis and plans.netboot.nfs): each Pi's cmdline.txt, EEPROM lines, root
files and NFS export, pinned whole; what reads them (cloud-init, dnsmasq) checks them where it can run here."""

from __future__ import annotations

import base64
import gzip
import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from plans import cloudinit, k3s, netboot, nfs_guard
from plans.netboot import nfs, pis
from stacks import StackConfig, load_stack_file, parse_stack, read_stack_file
from tests.edit import HOMELAB
from tests.tools import cloud_init_network_schema, cloud_init_schema, dnsmasq_test
from tools import debian


def netbooting(mode: str = "dhcp", **extra: dict[str, object]) -> StackConfig:
    """The homelab with eonwe a netbooting Pi 4 and ilmare a netbooting Pi 5."""
    raw = dict(read_stack_file(HOMELAB).config)
    raw["iluvatar:ainur"] = {**raw["iluvatar:ainur"], "netboot": {"mode": mode}}
    boot = {"eonwe": ("rpi4", "9ffefdef"), "ilmare": ("rpi5", "1a2b3c4d")}
    raw["iluvatar:nodes"] = [
        {**n, "board": boot[n["name"]][0], "boot": "netboot", "serial": boot[n["name"]][1], **extra.get(n["name"], {})} if n["name"] in boot else n
        for n in raw["iluvatar:nodes"]
    ]
    return parse_stack(raw)


def node(stack: StackConfig, name: str):  # type: ignore[no-untyped-def]
    return next(n for n in stack.nodes if n.name == name)


def test_a_pi_4s_cmdline_txt_whole() -> None:
    stack = netbooting()
    assert pis.cmdline(stack, node(stack, "eonwe")) == (
        "console=serial0,115200 console=tty1 multipath=off dwc_otg.lpm_enable=0 root=/dev/nfs "
        "nfsroot=192.168.0.14:/pis/eonwe/ubuntu-24.04.3-9bb1799cee89,v3,tcp,port=2049,hard,timeo=600,retrans=10 "
        "ip=192.168.0.12::192.168.0.1:255.255.255.0:eonwe::off:192.168.0.1 BOOTIF=01-d8-3a-dd-10-00-02 rw panic=10 "
        + pis.network_config_arg(stack, node(stack, "eonwe"))
        + "\n"
    )


def test_the_network_config_on_the_command_line_is_the_pis_netplan_as_cloud_init_reads_it() -> None:
    """cloud-init's own reader (cloudinit.net.cmdline.read_kernel_cmdline_config, Debian 13's cloud-init 25.1.4) finds
    the Pi's network-config on its command line: its static address, with netplan's `critical` for the NFS root."""
    stack = netbooting()
    eonwe = node(stack, "eonwe")
    root = debian.path("cloud-init") / "usr/lib/python3/dist-packages"
    code = "import json,sys; from cloudinit.net import cmdline; print(json.dumps(cmdline.read_kernel_cmdline_config(sys.argv[1])))"
    env = {**os.environ, "PYTHONPATH": str(root)}
    read = subprocess.run(
        ["/usr/bin/python3", "-c", code, pis.cmdline(stack, eonwe)], capture_output=True, text=True, check=True, env=env, timeout=60
    )
    assert json.loads(read.stdout) == {
        "version": 2,
        "ethernets": {
            "lan": {
                "match": {"macaddress": "d8:3a:dd:10:00:02"},
                "dhcp4": False,
                "dhcp6": False,
                "addresses": ["192.168.0.12/24"],
                "routes": [{"to": "default", "via": "192.168.0.1"}],
                "nameservers": {"addresses": ["192.168.0.1"], "search": ["iluvatar.home.arpa"]},
                "critical": True,
            }
        },
    }
    # gzip's header carries no time: the same config gives the same cmdline.txt.
    blob = base64.b64decode(pis.network_config_arg(stack, eonwe).split("=", 1)[1])
    assert blob[4:8] == b"\0\0\0\0"
    assert yaml.safe_load(gzip.decompress(blob)) == json.loads(read.stdout)


def test_netbooting_pis_pass_cloud_init_schema(tmp_path: Path) -> None:
    stack = netbooting()
    for name in ("eonwe", "ilmare"):
        pi = node(stack, name)
        user = cloud_init_schema(cloudinit.user_data(stack, pi), tmp_path, f"{name}.user-data")
        assert user.returncode == 0 and "Valid cloud-config" in user.stdout, user.stdout + user.stderr
        net = cloud_init_network_schema(cloudinit.network_config(stack, pi), tmp_path, f"{name}.network-config")
        assert net.returncode == 0 and "Valid schema" in net.stdout, net.stdout + net.stderr


def test_a_netbooted_pi_holds_its_kernel_and_keeps_its_link() -> None:
    stack = netbooting()
    doc = cloudinit.user_data_document(stack, node(stack, "eonwe"))
    assert doc["runcmd"][0] == [
        "apt-mark",
        "hold",
        "linux-raspi",
        "linux-image-raspi",
        "linux-headers-raspi",
        "linux-modules-extra-raspi",
        "flash-kernel",
    ]
    assert cloudinit.network_config_document(stack, node(stack, "eonwe"))["network"]["ethernets"]["lan"]["critical"] is True
    # Its pods reach no port of its root's NFS server, from before k3s is installed (plans.nfs_guard; tested with the real
    # iptables in tests/netns/test_pi_nfs_guard.py).
    assert doc["runcmd"][1] == ["systemctl", "enable", "--now", "iluvatar-nfs-guard.service"]
    assert doc["write_files"] == [{"path": "/etc/systemd/system/iluvatar-nfs-guard.service", "permissions": "0644", "content": nfs_guard.unit(stack)}]
    # A Pi that boots from its card is as it was.
    disk = load_stack_file(HOMELAB)
    mine = cloudinit.user_data_document(disk, node(disk, "eonwe"))
    assert "write_files" not in mine
    # Review 41-2 M4: cloud-init keeps the host keys a new root carries from the old (cc_ssh deletes them by default).
    assert doc["ssh_deletekeys"] is False
    # Nor does cloud-init format its data disk for Longhorn: a netbooted maia's disk is no Longhorn disk (docs/security.md).
    assert not {"disk_setup", "fs_setup", "mounts"} & set(doc)
    longhorn = {k: mine[k] for k in ("disk_setup", "fs_setup", "mounts")}
    assert mine == {**{k: v for k, v in doc.items() if k not in ("write_files", "ssh_deletekeys")}, "runcmd": doc["runcmd"][2:], **longhorn}
    assert "critical" not in cloudinit.network_config(disk, node(disk, "eonwe"))


def test_a_netbooted_pis_k3s_keeps_no_overlay_layers_on_nfs_and_says_how_it_boots() -> None:
    stack = netbooting()
    config = yaml.safe_load(k3s.config(stack, node(stack, "eonwe"), "t"))
    assert (config["snapshotter"], config["node-label"]) == ("native", ["iluvatar/role=maiar", "iluvatar/boot=netboot"])
    # Registered tainted: no pod that does not tolerate it runs for its kubelet, whose credentials its NFS root exposes.
    assert config["node-taint"] == ["iluvatar/boot=netboot:NoExecute"]
    disk = yaml.safe_load(k3s.config(stack, node(stack, "manwe"), "t"))
    assert "snapshotter" not in disk and "node-taint" not in disk and disk["node-label"] == ["iluvatar/role=valar"]


def test_the_eeprom_lines_of_each_pi() -> None:
    stack = netbooting()
    assert pis.eeprom_config(stack, node(stack, "ilmare")) == (
        "# ilmare (rpi5, serial 1a2b3c4d): the bootloader settings that netboot it from the Ainur.\n"
        "# Set once with its card in: sudo rpi-eeprom-config --edit, paste these under [all], save, reboot, remove the card.\n"
        "[all]\nBOOT_ORDER=0xf21\nTFTP_PREFIX=0\nTFTP_IP=192.168.0.14\nTFTP_FILE_TIMEOUT=300000\n"
    )


def test_the_root_files_of_a_pi() -> None:
    stack = netbooting()
    files = pis.seed_files(stack, node(stack, "eonwe"))
    assert sorted(files) == [
        "/etc/fstab",
        "/var/lib/cloud/seed/nocloud/meta-data",
        "/var/lib/cloud/seed/nocloud/network-config",
        "/var/lib/cloud/seed/nocloud/user-data",
    ]
    assert files["/etc/fstab"] == (
        "# Written by Iluvatar: eonwe's root is NFS (192.168.0.14:/pis/eonwe/<image>), mounted by the initramfs; it has no card.\n"
    )
    meta = yaml.safe_load(files["/var/lib/cloud/seed/nocloud/meta-data"])
    assert meta["local-hostname"] == "eonwe" and meta["instance-id"].startswith("iluvatar-eonwe-")
    # A changed user-data is a new instance: cloud-init runs its once-per-instance modules again.
    # (Its user-data names no disk of its own any more: a new SSH key of the Ainur's changes it.)
    ainur = stack.ainur
    assert ainur is not None
    changed = stack.model_copy(update={"ainur": ainur.model_copy(update={"ssh_authorized_keys": ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAnother",)})})
    assert cloudinit.user_data(changed, node(changed, "eonwe")) != cloudinit.user_data(stack, node(stack, "eonwe"))
    assert (
        yaml.safe_load(pis.seed_files(changed, node(changed, "eonwe"))["/var/lib/cloud/seed/nocloud/meta-data"])["instance-id"] != meta["instance-id"]
    )


def test_a_cmdline_over_the_limit_names_the_pi(monkeypatch: pytest.MonkeyPatch) -> None:
    stack = netbooting()
    monkeypatch.setattr(pis, "CMDLINE_LIMIT", 100)
    with pytest.raises(ValueError, match=r"^eonwe's cmdline.txt is \d+ characters, over 100$"):
        pis.cmdline(stack, node(stack, "eonwe"))


def test_a_pis_boot_pointer_is_its_folder_the_image_and_its_cmdline() -> None:
    """What pi-boot-<pi> holds: the TFTP folder (its MAC, then its serial), the image, a cmdline.txt naming its root of it."""
    stack = netbooting()
    assert pis.image_id(stack) == "ubuntu-24.04.3-9bb1799cee89"
    assert pis.boot_pointer(stack, node(stack, "ilmare")) == {
        "folder": "d8-3a-dd-10-00-03/1a2b3c4d",
        "image": "ubuntu-24.04.3-9bb1799cee89",
        "cmdline.txt": pis.cmdline(stack, node(stack, "ilmare")),
    }
    assert "nfsroot=192.168.0.14:/pis/ilmare/ubuntu-24.04.3-9bb1799cee89," in pis.cmdline(stack, node(stack, "ilmare"))
    # Another image's root is another export.
    assert "nfsroot=192.168.0.14:/pis/ilmare/ubuntu-24.04.2-0123456789ab," in pis.cmdline(stack, node(stack, "ilmare"), "ubuntu-24.04.2-0123456789ab")


@pytest.mark.parametrize("mode", ["dhcp", "proxy"])
def test_dnsmasq_answers_the_pis_bootloaders_and_passes_its_own_check(tmp_path: Path, mode: str) -> None:
    stack = netbooting(mode)
    conf = netboot.served_conf(stack)
    lines = netboot.dhcp_hosts_file(stack).splitlines() + netboot.dnsmasq_conf(stack).splitlines()
    assert [line for line in lines if "rpiboot" in line and not line.startswith("#")] == [
        "dhcp-mac=set:rpiboot,d8:3a:dd:10:00:02",
        "dhcp-mac=set:rpiboot,d8:3a:dd:10:00:03",
        *(["dhcp-ignore=tag:!netboot,tag:!rpiboot"] if mode == "proxy" else []),
        'pxe-service=tag:rpiboot,x86PC,"Raspberry Pi Boot"',
        "dhcp-boot=tag:rpiboot,,,192.168.0.14",
    ]  # fmt: skip
    assert lines[-1] == "tftp-unique-root=mac"
    checked = dnsmasq_test(conf, tmp_path)
    assert checked.returncode == 0, checked.stderr


def test_no_netbooting_pi_leaves_dnsmasq_conf_as_it_was() -> None:
    conf = netboot.dnsmasq_conf(load_stack_file(HOMELAB))
    assert "rpiboot" not in conf and "tftp-unique-root" not in conf and "Raspberry Pi" not in conf


def test_ganesha_conf_whole() -> None:
    """The fixed part; the exports are the NFS container's to add, one per root it finds (serve_script)."""
    stack = netbooting()
    assert nfs.ganesha_conf(stack) == "\n".join(
        [
            "# NFS-Ganesha for the netbooting maiar, generated by Iluvatar from the stack inventory. Do not edit.",
            "# serve-pis.sh adds one EXPORT per root of each Pi (each Pi's export.conf) when it starts.",
            "NFS_CORE_PARAM {",
            "    Bind_addr = 192.168.0.14;",
            "    NFS_Port = 2049;",
            "    MNT_Port = 627;",
            "    Protocols = 3;",
            "    Enable_NLM = false;",
            "    Enable_RQUOTA = false;",
            "    Enable_UDP = false;",
            "    Mount_Path_Pseudo = true;",
            "}",
            "NFS_KRB5 { Active_krb5 = false; }",
            "EXPORT_DEFAULTS { Access_Type = None; }",
        ]
    ) + "\n"  # fmt: skip


def test_an_export_of_a_pis_root_whole() -> None:
    stack = netbooting()
    assert nfs.export_block(node(stack, "ilmare"), "ubuntu-24.04.3-9bb1799cee89", 1) == "\n".join(
        [
            "# ilmare (rpi5, serial 1a2b3c4d): its root of ubuntu-24.04.3-9bb1799cee89",
            "EXPORT {",
            f"    Export_Id = {2 + 4 * (0x1A2B3C4D % 16383) + 1};",
            "    Path = /srv/pis/ilmare/ubuntu-24.04.3-9bb1799cee89;",
            "    Pseudo = /pis/ilmare/ubuntu-24.04.3-9bb1799cee89;",
            "    Protocols = 3;",
            "    Transports = TCP;",
            "    Access_Type = None;",
            "    Squash = No_Root_Squash;",
            "    SecType = sys;",
            "    CLIENT { Clients = 192.168.0.13; Access_Type = RW; }",
            "    FSAL { Name = VFS; }",
            "}",
        ]
    ) + "\n"  # fmt: skip


def test_a_pis_export_ids_do_not_move_when_another_pi_comes_or_goes() -> None:
    stack = netbooting()
    alone = netbooting(eonwe={"boot": "disk", "serial": None})
    first = 2 + 4 * (0x1A2B3C4D % 16383)
    assert nfs.export_ids(node(stack, "ilmare")) == nfs.export_ids(node(alone, "ilmare")) == (first, first + 1, first + 2, first + 3)
    # The highest any serial gets stays in Ganesha's 16 bits, above its own 0 and 1.
    assert nfs.export_ids(node(netbooting(ilmare={"serial": f"{16382:08x}"}), "ilmare"))[-1] == 65533
    assert nfs.export_ids(node(netbooting(ilmare={"serial": f"{16383:08x}"}), "ilmare"))[0] == 2


def test_a_netbooted_maias_join_ends_on_its_node_reported_from_this_boot() -> None:
    """The join's last gate, before the mark of a restart owed goes (plans.netboot.roll.booted_gate): the Node's boot id
    (the kubelet's, in every status it posts) is the Pi's own, and Ready; a Pi that boots from its card has no such gate."""
    from plans.netboot import roll

    stack = netbooting()
    eonwe, manwe = node(stack, "eonwe"), node(stack, "manwe")
    gate = roll.booted_gate(eonwe)
    assert gate == (
        "boot=$(cat /proc/sys/kernel/random/boot_id)\n"
        "node_booted() {\n"
        f"  got=$(sudo {k3s.KUBECTL} --kubeconfig /var/lib/rancher/k3s/agent/kubelet.kubeconfig get node eonwe -o jsonpath="
        "'{.status.nodeInfo.bootID} {.status.conditions[?(@.type==\"Ready\")].status}' 2>/dev/null) || "
        '{ why="its Node cannot be read"; return 1; }\n'
        '  [ "${got%% *}" = "$boot" ] || { why="its Node\'s last report is from the kubelet of another boot (boot id ${got%% *}, this boot\'s $boot)"; return 1; }\n'
        '  [ "${got#* }" = True ] || { why="its Node is not Ready (${got#* })"; return 1; }\n'
        "}\n"
        f'wait_for {k3s.NODE_TIMEOUT_SECONDS} "its Node Ready, reported by the kubelet of this boot (its new root)" node_booted\n'
    )
    assert roll.join_script(stack, eonwe).endswith(gate + f"sudo rm -f {k3s.RESTART_OWED}\n")
    assert "node_booted" not in roll.join_script(stack, manwe)


def test_a_reboot_into_a_new_image_says_how_to_go_back() -> None:
    """Review 41-2 L1: a Pi whose new image never comes up fails only its join's SSH dial, 4.4 to 19.6 minutes later; the
    reboot step's log names the config key and the image the Pi ran (read on the Pi: its root's mark) to set back."""
    from plans.netboot import roll

    stack = netbooting()
    eonwe = node(stack, "eonwe")
    want = pis.image_id(stack)
    script = roll.reboot_script(stack, eonwe)
    assert script.startswith(f"set -eu\n{roll.RUN_MARK}\n")
    # Review 41-2 M1: after TFTP serves the new boot files, the root they name is exported to the Pi (its mount, with
    # cmdline.txt's options in the kernel's spelling), before the reboot is scheduled (tests/netns/test_pi_nfs.py runs it).
    served = script.index('wait_for 300 "the Ainur to serve eonwe the boot files')
    exported = script.index(roll.export_gate(stack, eonwe))
    assert served < exported < script.index("sudo systemd-run")
    assert roll.GATE_MOUNT_OPTIONS == "ro,nolock,vers=3,proto=tcp,port=2049,soft,timeo=50,retrans=2,mountport=627,mountproto=tcp"
    assert f"sudo timeout -s KILL 60 mount -i -t nfs -o {roll.GATE_MOUNT_OPTIONS},addr=192.168.0.14 192.168.0.14:/pis/eonwe/{want} " in script
    assert script.endswith(
        f'echo "iluvatar: eonwe reboots into {want} in 3 s" >&2\n'
        f'echo "iluvatar: if eonwe does not come back on {want} (its join then fails dialling it after 60 attempts, 4.4 to 19.6 minutes), '
        "move it back: set ainur.piImage back to the image it ran, $have (its release and sha256 as they were; remove the key if "
        'that was the default), and run pulumi up" >&2\n'
    )


def test_pi_tftp_ends_at_once_on_sigterm_rather_than_at_its_pods_grace(tmp_path: Path) -> None:
    """Review 41-12 L2: pi-tftp is its container's PID 1, which the kernel sends no signal it has no handler for, so
    each roll of the cache waited the pod's 30 s grace for the kill. Here its own process, between two passes."""
    for folder in ("tftp", "images", "boots"):
        (tmp_path / folder).mkdir()
    env = {"PATH": os.environ["PATH"], "TFTP_ROOT": str(tmp_path / "tftp"), "IMAGES": str(tmp_path / "images"), "BOOTS": str(tmp_path / "boots")}
    proc = subprocess.Popen(["sh", "-c", pis.tftp_script()], env=env, stderr=subprocess.PIPE, text=True)
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=1)  # it loops
        proc.terminate()
        assert proc.wait(timeout=5) == 0
    finally:
        proc.kill()
        proc.wait()


# STAND-IN for the kubelet's swap of a projected volume, run from inside the pass at the exact point given: the real
# program (readlink or cat) does its work, and then, the first time it is called on the volume, the kubelet's atomic
# writer puts the new version in place: ..data_tmp made to point at it, renamed over ..data, the old version folder
# removed whole (Kubernetes v1.35.1 pkg/volume/util/atomic_writer.go:213-233 and 259-261, Write steps 8, 9 and 12).
SWAP_HOOK = r"""#!/bin/sh
real=$(PATH=$REAL_PATH command -v "$(basename "$0")")
out=$("$real" "$@"); rc=$?
case "$*" in *"$BOOTS"*) if [ ! -e "$SWAPPED" ]; then
  : > "$SWAPPED"
  old=$(PATH=$REAL_PATH readlink "$BOOTS/..data")
  PATH=$REAL_PATH ln -s "$NEW_VERSION" "$BOOTS/..data_tmp"
  PATH=$REAL_PATH mv -T "$BOOTS/..data_tmp" "$BOOTS/..data"
  PATH=$REAL_PATH rm -rf "$BOOTS/$old"
fi ;; esac
printf '%s\n' "$out"
exit $rc
"""


def _projected(boots: Path, name: str, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (boots / name / rel).parent.mkdir(parents=True, exist_ok=True)
        (boots / name / rel).write_text(text)


@pytest.mark.parametrize(
    "at",
    [
        # Between the resolve of ..data and the first read under it: the pass found no Pi, and removed every Pi's folder.
        ("readlink",),
        # Right after the first read under the volume (whichever program reads it): the next `cat` failed under set -eu,
        # and the loop exited.
        ("cat", "cp"),
    ],
    ids=["after-resolve", "after-first-read"],
)
def test_pi_tftp_survives_a_projection_swap_in_the_middle_of_a_pass(tmp_path: Path, at: tuple[str, ...]) -> None:
    """The kubelet swaps the pointers' volume while a pass of pi-tftp reads it: the pass serves one version whole, ends
    well, and the next pass serves the new one. The swap is made by the program the pass calls at that point."""
    stack = netbooting()
    eonwe = node(stack, "eonwe")
    image = pis.image_id(stack)
    images, tftp, boots = tmp_path / "images", tmp_path / "tftp", tmp_path / "boots"
    (images / image / "boot").mkdir(parents=True)
    (images / image / "boot" / "start4.elf").write_text("firmware")
    (images / image / ".complete").write_text("")
    tftp.mkdir()
    old = {f"{n.name}/{k}": v for n in pis.netboot_pis(stack) for k, v in pis.boot_pointer(stack, n).items()}
    new = {**old, "eonwe/cmdline.txt": "the new cmdline\n"}
    _projected(boots, "..2026_11_26_00_00_00.1", old)
    (boots / "..data").symlink_to("..2026_11_26_00_00_00.1")
    env = {"PATH": os.environ["PATH"], "TFTP_ROOT": str(tftp), "IMAGES": str(images), "BOOTS": str(boots), "ONCE": "1"}
    first = subprocess.run(["sh", "-c", pis.tftp_script()], env=env, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    served = tftp / pis.tftp_dir(eonwe) / "cmdline.txt"
    assert served.read_text() == pis.cmdline(stack, eonwe)

    _projected(boots, "..2026_11_26_00_00_10.2", new)
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    for program in at:
        (hooks / program).write_text(SWAP_HOOK)
        (hooks / program).chmod(0o755)
    hooked = {**env, "PATH": f"{hooks}:{os.environ['PATH']}", "REAL_PATH": os.environ["PATH"], "NEW_VERSION": "..2026_11_26_00_00_10.2"}
    hooked["SWAPPED"] = str(tmp_path / "swapped")
    during = subprocess.run(["sh", "-c", pis.tftp_script()], env=hooked, capture_output=True, text=True, timeout=60)
    assert (tmp_path / "swapped").exists(), "the swap happened during the pass"
    assert os.readlink(boots / "..data") == "..2026_11_26_00_00_10.2" and not (boots / "..2026_11_26_00_00_00.1").exists()
    assert during.returncode == 0, during.stderr
    # One version whole: the new one when the swap came before the pass read anything, else the old one, still served.
    want = "the new cmdline\n" if at == ("readlink",) else pis.cmdline(stack, eonwe)
    assert served.read_text() == want
    assert (tftp / pis.tftp_dir(eonwe) / "start4.elf").read_text() == "firmware"
    after = subprocess.run(["sh", "-c", pis.tftp_script()], env=env, capture_output=True, text=True, timeout=60)
    assert after.returncode == 0, after.stderr
    assert served.read_text() == "the new cmdline\n"
