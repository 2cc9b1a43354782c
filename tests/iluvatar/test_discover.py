"""`iluvatar discover` end to end: the leases from a real API server (the Ainur's flavour, with an admin's kubeconfig),
the machines from the Talos API stand-in in maintenance mode (tools/talos-api: the disks, links and SMBIOS a Talos
machine tells anyone, and the refusals of its maintenance API), asked by the upgrader's `discover` with machinery's
own client; the entries written into a copy of the homelab stack file, which then validates, is in the form Pulumi's
own marshaler writes (tools/stackfile), passes the Talos acceptance check, and whose install disk selector picks the
intended disk in machinery's own CEL evaluation, in both builds (v1.13.0, the provider's; v1.14.1, a node's).

The homelab's LAN is moved into a loopback block of its own, so the machines the test asks (and the inventory
machines whose Talos API `discover` knocks on for its "not seen" hint) are this machine's loopback addresses.
"""

from __future__ import annotations

import base64
import json
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stacks import disk_ids, load_stack_file, releases
from stacks.load import load_yaml
from tests.edit import HOMELAB
from tests.stacks.test_stack_form import SALT_LINE, changed
from tools import talos_api, talos_check
from tools.gotools import build
from tools.kube_cluster import Cluster

pytestmark = pytest.mark.kube

X86, ARM = "02:00:5e:00:0d:01", "02:00:5e:00:0d:02"
# Each disk as Talos 1.12 publishes it: "table": "gpt" an empty GPT; NTFS has no go-blockdevice prober, so the old HDD's
# partition is published with no filesystem name (review 2 HIGH 2).
SAMSUNG = {"id": "sda", "table": "gpt", "size": 250059350016, "model": "Samsung SSD 860 EVO 250GB", "serial": "S3Z9NB0K123456A", "transport": "sata",
           "wwid": "naa.5002538e40a1b2c3", "symlinks": ["/dev/disk/by-id/ata-Samsung_SSD_860_EVO_250GB_S3Z9NB0K123456A", "/dev/disk/by-id/wwn-0x5002538e40a1b2c3"]}  # fmt: skip
WD = {"id": "nvme0n1", "table": "gpt", "size": 1000204886016, "model": "WD Blue SN570 1TB", "serial": "22123A800123", "transport": "nvme",
      "symlinks": ["/dev/disk/by-id/nvme-WD_Blue_SN570_1TB_22123A800123", "/dev/disk/by-id/nvme-eui.e8238fa6bf530001001b448b4a1b2c3d"]}  # fmt: skip
OLD_HDD = {"id": "sdb", "size": 2000398934016, "model": "WDC WD20EZRZ-00Z5HB0", "serial": "WD-WCC4M1234567", "transport": "sata", "rotational": True,
           "symlinks": ["/dev/disk/by-id/ata-WDC_WD20EZRZ-00Z5HB0_WD-WCC4M1234567"], "partitions": [{"label": "Basic data partition", "filesystem": "ntfs", "size": 2000000000000}]}  # fmt: skip
STICK = {
    "id": "sdc",
    "size": 16008609792,
    "model": "Ultra Fit",
    "serial": "4C530001",
    "transport": "usb",
    "symlinks": ["/dev/disk/by-id/usb-SanDisk_Ultra_Fit_4C530001-0:0"],
}
# Its model carries a line of YAML (anyone on the LAN can answer as a machine): review 1 HIGH 2.
TWIN = {"table": "gpt", "size": 34359738368, "model": "QEMU HARDDISK\n    - {name: evil, role: valinor}", "transport": "virtio"}
LENOVO = {"manufacturer": "LENOVO", "productName": "ThinkCentre M720q", "serialNumber": "PC1ABCDE"}


def _block() -> str:
    """A loopback /24 of this test's own, whose pool addresses' Talos port is free."""
    for _ in range(50):
        block = f"127.{1 + secrets.randbelow(254)}.{secrets.randbelow(255)}"
        if all(talos_api._free(f"{block}.{i}") for i in (90, 91, 92)):
            return block
    raise AssertionError("no free loopback block")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, kube_k3s: Cluster) -> Iterator[dict[str, Any]]:
    """The stand-in's machines at three pool addresses, the leases that name them in the Ainur's API, the stack."""
    block = _block()
    root = tmp_path_factory.mktemp("discover")
    # The machines' LAN moves onto the loopback block (discover dials the pool's addresses, where the stand-ins listen);
    # the servers the house dials keep addresses a house has (a public resolver, the NAS routed from another subnet):
    # validation refuses a loopback resolver or backup target, which no Pi or Talos machine could reach.
    house = HOMELAB.read_text()
    for written, kept in (("    dns: [192.168.0.1]\n", "    dns: [9.9.9.9]\n"), ("s3+http://192.168.0.40:9000/", "s3+http://10.40.0.40:9000/")):
        assert house.count(written) == 1, written
        house = house.replace(written, kept)
    text = house.replace("192.168.0.", f"{block}.").replace("./stacks/stack.schema.json", str(HOMELAB.parent / "stacks/stack.schema.json"))
    text = text.replace(
        f"    kubernetesVersion: {releases.KUBERNETES}\n",
        f"    kubernetesVersion: {releases.KUBERNETES}\n    discovery: {{pool: {{start: {block}.90, end: {block}.99}}}}\n",
        1,
    )
    stack = root / "Pulumi.homelab.yaml"
    stack.write_text(text)
    # Two machines booted from older Talos media than the stack's (a USB stick, a stale PXE cache): discover reads any Talos
    # in maintenance mode, and Talos 1.12's maintenance service answers otherwise than 1.13's (no Version; the test below).
    nodes = [
        talos_api.node(f"discovery-amd64-{X86.replace(':', '-')}", f"{block}.90", "worker", "v1.12.4", maintenance=True, mac=X86,
                       hardware={"disks": [SAMSUNG, WD, OLD_HDD, STICK], "system": LENOVO, "linkSpeedMbps": 1000, "linkDriver": "e1000e"}),
        talos_api.node(f"discovery-arm64-{ARM.replace(':', '-')}", f"{block}.91", "worker", "v1.13.0", maintenance=True, mac=ARM, arch="arm64",
                       hardware={"disks": [{**TWIN, "id": "vda"}, {**TWIN, "id": "vdb"}]}),
        # A configured Talos at a lease's address: it asks for a client certificate, so it is not one to add.
        talos_api.node("gandalf", f"{block}.31", "worker", releases.TALOS, mac="28:d2:44:30:00:01"),
    ]  # fmt: skip
    now = int(time.time())
    leases = "".join(
        f"{expiry} {mac} {ip} {name} {cid}\n"
        for expiry, mac, ip, name, cid in [
            (now + 3600, X86, f"{block}.90", f"discovery-amd64-{X86.replace(':', '-')}", "01:" + X86),
            (now + 3600, ARM, f"{block}.91", f"discovery-arm64-{ARM.replace(':', '-')}", "01:" + ARM),
            (now + 3600, "02:00:5e:00:0d:77", f"{block}.150", "phone", "*"),  # a household device: never asked
            (0, "28:d2:44:30:00:01", f"{block}.31", "gandalf", "*"),
            (now - 86400, "28:d2:44:30:00:02", f"{block}.32", "saruman", "*"),
        ]
    )
    kube_k3s.client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "netboot"}})
    kube_k3s.client.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "dnsmasq-leases", "namespace": "netboot"},
            "binaryData": {"leases": base64.b64encode(leases.encode()).decode()},
        }
    )
    with talos_api.talos_api(talos_api.scenario(nodes), root / "talos-api") as api:
        yield {"block": block, "stack": stack, "text": text, "kubeconfig": kube_k3s.kubeconfig, "api": api}


def discover(lab: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "iluvatar", "discover", str(lab["stack"]), f"--kubeconfig={lab['kubeconfig']}", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_the_upgrader_asks_each_machine_as_talosctl_insecure_and_records_what_it_refused(lab: dict[str, Any]) -> None:
    from iluvatar import upgrader

    block = lab["block"]
    result = subprocess.run(
        [str(upgrader.build()), "discover", f"--kubeconfig={lab['kubeconfig']}", "--deadline=20s"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert [(lease["mac"], lease["ip"], lease["hostname"]) for lease in answer["leases"]][:3] == [
        (X86, f"{block}.90", f"discovery-amd64-{X86.replace(':', '-')}"),
        (ARM, f"{block}.91", f"discovery-arm64-{ARM.replace(':', '-')}"),
        ("02:00:5e:00:0d:77", f"{block}.150", "phone"),
    ]
    x86, arm = answer["machines"]
    # Talos 1.12 answers no Version in maintenance mode; 1.13 answers a reader.
    assert x86["refused"] == ["MachineService.Version: Unimplemented: API is not implemented in maintenance mode"]
    assert (x86["version"], x86["arch"], arm["refused"], arm["version"], arm["arch"]) == ("", "", [], "v1.13.0", "arm64")
    assert not x86.get("error"), x86["error"]
    assert [d["devPath"] for d in x86["disks"]] == ["/dev/nvme0n1", "/dev/sda", "/dev/sdb", "/dev/sdc"]
    sda = next(d for d in x86["disks"] if d["id"] == "sda")
    assert (sda["model"], sda["serial"], sda["transport"], sda["prettySize"], sda["symlinks"]) == (
        "Samsung SSD 860 EVO 250GB", "S3Z9NB0K123456A", "sata", "250 GB", SAMSUNG["symlinks"],
    )  # fmt: skip
    assert sorted((v["id"], v["partitionLabel"], v["name"]) for v in x86["volumes"] if v["parentDevPath"] == "/dev/sdb") == [
        ("sdb1", "Basic data partition", "")
    ]
    assert sda["wwid"] == "naa.5002538e40a1b2c3"  # what tells a SATA disk apart when Talos reports no serial
    (link,) = [link for link in x86["links"] if link["physical"]]
    assert (link["permanentAddr"], link["speedMbps"], link["driver"]) == (X86, 1000, "e1000e")
    assert (x86["system"]["manufacturer"], x86["system"]["productName"], x86["hostname"]) == (
        "LENOVO",
        "ThinkCentre M720q",
        f"discovery-amd64-{X86.replace(':', '-')}",
    )
    assert arm["system"]["manufacturer"] == "talos-api"  # the stand-in's SMBIOS when the script gives none
    # Only the discovery leases were asked: not the phone, not gandalf (a configured Talos).
    assert [m["address"] for m in answer["machines"]] == [f"{block}.90", f"{block}.91"]


def test_a_configured_machine_is_not_one_to_discover(lab: dict[str, Any]) -> None:
    """Asked as a machine in maintenance mode is (no client certificate), a configured Talos refuses the handshake."""
    from iluvatar import upgrader

    result = subprocess.run(
        [str(upgrader.build()), "discover", "--leases=false", f"--node=gandalf={lab['block']}.31", "--deadline=10s"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    (gandalf,) = json.loads(result.stdout)["machines"]
    assert gandalf.get("error") and gandalf["disks"] == [], gandalf
    # It asked for a client certificate (apid's mutual TLS): named as configured, so discover says how to reset it.
    assert gandalf["configured"] is True


def test_discover_prints_the_entries_and_writes_them_so_the_stack_validates_and_talos_installs_to_the_disk_meant(lab: dict[str, Any]) -> None:
    block, stack = lab["block"], lab["stack"]
    shown = discover(lab)
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout.splitlines()
    x86_entry = (
        f'- {{name: node-000d01, role: istari, arch: amd64, board: generic-x86, mac: "{X86}", ip: {block}.33, '
        "installDisk: {model: Samsung SSD 860 EVO 250GB, serial: S3Z9NB0K123456A, wwid: naa.5002538e40a1b2c3}, dataDisks: [/dev/disk/by-id/nvme-WD_Blue_SN570_1TB_22123A800123]}"
    )
    assert x86_entry in out
    assert (
        '#   not a data disk: sdb 2.0 TB SATA HDD "WDC WD20EZRZ-00Z5HB0" serial WD-WCC4M1234567 (holds Basic data partition): it holds Basic data partition, which storage '
        "would wipe; to give it to storage, add it to dataDisks" in out
    )
    assert '#   dataDisks: nvme0n1 1.0 TB NVMe "WD Blue SN570 1TB" serial 22123A800123 (empty gpt partition table)' in out
    assert [line for line in out if line.startswith("# not added:")] == [
        "# not added: its disks cannot be told apart by model, serial and WWID (vda, vdb: model QEMU HARDDISK\\x0a    - {name: evil, role: valinor}, serial none, wwid none), so no installDisk "
        "selector would survive a reboot; write installDisk by hand (a busPath selector names the slot)"
    ]
    assert (
        f"# discovered: {X86} at {block}.90 (discovery-amd64-{X86.replace(':', '-')}): LENOVO ThinkCentre M720q (serial PC1ABCDE), amd64, Talos in maintenance mode"
        in out
    )
    # The hint: inventory machines with neither a Talos API that answers nor a current lease.
    hints = [line for line in out if line.startswith("# not seen:")]
    assert [h.split(":")[1].split("(")[0].strip() for h in hints] == ["taniquetil", "tirion", "alqualonde", "saruman"]
    assert hints[3].startswith(f"# not seen: saruman (28:d2:44:30:00:02, {block}.32): no answer on {block}.32:50000, its lease ended ")
    assert hints[0] == (
        f"# not seen: taniquetil (a8:b8:e0:20:00:01, {block}.21): no answer on {block}.21:50000, no lease; "
        "if it is gone for good, retire it (docs/day2.md#retiring-a-disk-or-a-machine)"
    )
    assert not [h for h in hints if "gandalf" in h]  # it answers, and holds an infinite lease
    assert stack.read_text() == lab["text"], "without --write the file is untouched"

    written = discover(lab, "--write")
    assert written.returncode == 0, written.stderr
    assert f"wrote 1 machine to {stack} (1 as comments: see why above)" in written.stdout
    after = stack.read_text()
    before_lines, after_lines = lab["text"].splitlines(), after.splitlines()
    # Every line of the file as it was, in order; the new ones all after saruman, the last machine.
    at = next(i for i, line in enumerate(before_lines) if "name: saruman" in line) + 1
    assert after_lines[:at] == before_lines[:at]
    assert after_lines[len(after_lines) - (len(before_lines) - at) :] == before_lines[at:]
    added = after_lines[at : len(after_lines) - (len(before_lines) - at)]
    assert f"    {x86_entry}" in added
    assert all(line.startswith("    #") or line == f"    {x86_entry}" for line in added)

    # It validates, and is already in the form Pulumi's own marshaler writes (its first edit adds only the salt).
    config = load_stack_file(stack)
    new = next(n for n in config.nodes if n.mac == X86)
    assert (new.name, new.role, new.board, str(new.ip), new.data_disks) == (
        "node-000d01",
        "istari",
        "generic-x86",
        f"{block}.33",
        ("/dev/disk/by-id/nvme-WD_Blue_SN570_1TB_22123A800123",),
    )
    init = subprocess.run([str(build("stackfile")), "init", str(stack)], capture_output=True, text=True, timeout=60)
    assert init.returncode == 0, init.stderr
    assert changed(after, init.stdout) == [f"+{SALT_LINE.rstrip()}"]

    # The Talos acceptance check: its config generated and validated by both machineries, strict.
    (verdict,) = [v for v in talos_check.check_stack_files([stack]) if v.name.endswith("node-000d01")]
    assert verdict.ok, verdict.problems()
    # Its selector picks the SSD in machinery's own CEL evaluation, among the disks the machine itself listed.
    disks = [
        {"DevPath": f"/dev/{d['id']}", "Size": d["size"], "Model": d["model"], "Serial": d["serial"], "WWID": d.get("wwid", ""), "Transport": d["transport"], "Rotational": d.get("rotational", False), "Symlinks": d["symlinks"]}
        for d in (SAMSUNG, WD, OLD_HDD, STICK)
    ]  # fmt: skip
    assert talos_check.match_disks(verdict.config, disks) == {"v1.13.0": ["/dev/sda"], "v1.14.1": ["/dev/sda"]}

    # Run again: the machine is in the inventory now, so nothing is added twice.
    again = discover(lab, "--write")
    assert again.returncode == 0, again.stderr
    assert f"# already in the inventory, still in maintenance mode: node-000d01 ({X86}) at {block}.90 (pulumi up applies its config)" in again.stdout
    assert stack.read_text().count(X86) == after.count(X86)
    stack.write_text(lab["text"])


def test_write_refuses_a_stack_that_does_not_validate(lab: dict[str, Any], tmp_path: Path) -> None:
    broken = tmp_path / "Pulumi.homelab.yaml"
    broken.write_text(lab["text"].replace(f"ip: {lab['block']}.32,", f"ip: {lab['block']}.31,"))
    result = subprocess.run(
        [sys.executable, "-m", "iluvatar", "discover", str(broken), f"--kubeconfig={lab['kubeconfig']}", "--write"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {broken} does not validate, and --write adds machines only to a stack that does; fix it first")
    assert f"iluvatar:nodes[7].ip: {lab['block']}.31 is already nodes[6].ip (gandalf)" in result.stderr
    assert broken.read_text() == lab["text"].replace(f"ip: {lab['block']}.32,", f"ip: {lab['block']}.31,")


def test_without_the_leases_configmap_the_api_server_is_named(lab: dict[str, Any], kube_k3s: Cluster) -> None:
    kube_k3s.client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "elsewhere"}})
    from iluvatar import upgrader

    result = subprocess.run(
        [str(upgrader.build()), "discover", f"--kubeconfig={lab['kubeconfig']}", "--namespace=elsewhere"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    assert "has no ConfigMap elsewhere/dnsmasq-leases: no lease was saved yet (is it the Ainur's, and is the netboot pod running?)" in result.stderr


def test_a_loopback_block_is_private_to_the_test() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        assert s.getsockname()[0] == "127.0.0.1"
    assert disk_ids.glob("QEMU*", "QEMU HARDDISK")
    assert load_yaml("a: 1") == {"a": 1}


def test_the_discovery_window_is_opened_by_the_user_and_served_by_the_netboot_pod_until_its_time(
    lab: dict[str, Any], kube_k3s: Cluster, tmp_path: Path
) -> None:
    """Review 1 MEDIUM 4: discovery takes over an unknown machine only while the user holds the window open. `discover
    --arm` writes the ConfigMap with the user's kubeconfig; the pod's discovery-window loop, run by sh with the netboot
    ServiceAccount's token and the program's own Role, serves the file boot.ipxe asks for, and removes it at `until`."""
    from plans import netboot
    from tests.netns import kubeapi
    from tools.kube_cluster import field_manager, pulumi_create

    for obj in kubeapi.program_objects(lab["stack"]):
        if obj["kind"] != "Namespace":  # the lab made it
            pulumi_create(kube_k3s.client, obj, field_manager(f"netboot/{obj['kind']}"))
    sa = tmp_path / "serviceaccount"
    sa.mkdir()
    (sa / "ca.crt").write_bytes((kube_k3s.pki / "ca.crt").read_bytes())
    (sa / "token").write_text(kube_k3s.token(netboot.NAMESPACE, "netboot"))
    (tmp_path / "pod-tmp").mkdir()
    env = [
        f"KUBERNETES_SERVICE_HOST={kube_k3s.address}",
        f"KUBERNETES_SERVICE_PORT={kube_k3s.port}",
        f"SERVICEACCOUNT_DIR={sa}",
        f"TMPDIR={tmp_path / 'pod-tmp'}",
    ]
    web = tmp_path / "http"
    served = web / netboot.DISCOVERY_WINDOW_FILE

    def loop_once() -> subprocess.CompletedProcess[str]:
        return subprocess.run(["env", *env, "sh", "-c", netboot.window_script(str(web), once=True)], capture_output=True, text=True, timeout=60)

    # Never armed: no ConfigMap (404), no file: boot.ipxe's imgfetch fails and the machine boots its own disk.
    assert (loop_once().returncode, served.exists()) == (0, False)
    refused = discover(lab, "--arm", "13h")
    assert (refused.returncode, refused.stderr.strip()) == (2, "error: --arm 13h: give minutes or hours, from 1m to 12h (e.g. --arm 30m)")
    before = int(time.time())
    armed = discover(lab, "--arm", "30m")
    assert armed.returncode == 0, armed.stderr
    assert armed.stdout.startswith("discovery window open until ")
    cm = kube_k3s.client.get("v1", "ConfigMap", "discovery-window", "netboot")
    assert cm is not None and before + 1800 <= int(cm["data"]["until"]) <= int(time.time()) + 1800
    opened = loop_once()
    assert (opened.returncode, opened.stdout) == (0, f"discovery window open until {cm['data']['until']}\n")
    assert served.read_text().startswith("#!ipxe\n")
    # Closed by the user: the file goes at the loop's next read.
    assert discover(lab, "--disarm").returncode == 0
    assert kube_k3s.client.get("v1", "ConfigMap", "discovery-window", "netboot")["data"]["until"] == "0"  # type: ignore[index]
    assert (loop_once().stdout, served.exists()) == ("discovery window closed\n", False)
    # A window written by hand for a year is not opened (the loop's own bound).
    kube_k3s.client.checked(
        "PATCH",
        "/api/v1/namespaces/netboot/configmaps/discovery-window",
        {"data": {"until": str(int(time.time()) + 365 * 86400)}},
        content_type="application/merge-patch+json",
    )
    far = loop_once()
    assert served.exists() is False and "more than 43200 s away: not opened" in far.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--arm", "30m"], "iluvatar:arda.discovery is not set, so there is no discovery window to open"),
        (["--wipe", "sda"], "--wipe sda: give the MAC of a discovered machine (as its entry's comment says), e.g. --wipe 02:00:5e:00:0d:01"),
    ],
)
def test_a_window_without_discovery_and_a_wipe_that_is_no_mac_are_refused_before_anything_is_asked(args: list[str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "iluvatar", "discover", str(HOMELAB), "--address=127.0.0.1", *args], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_proxy_mode_with_no_machine_asked_says_where_the_address_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Review 1 LOW 14: in proxy mode the Ainur hold no leases, so a run that asked no one says to give --address."""
    import argparse

    from iluvatar import discover as command

    text = HOMELAB.read_text().replace("./stacks/stack.schema.json", str(HOMELAB.parent / "stacks/stack.schema.json"))
    text = text.replace(f"    kubernetesVersion: {releases.KUBERNETES}\n", f"    kubernetesVersion: {releases.KUBERNETES}\n    discovery: {{}}\n", 1)
    assert "    discovery: {}\n" in text  # the shipped stack's Kubernetes line was found
    assert "      mode: dhcp #" in text
    stack = tmp_path / "Pulumi.homelab.yaml"
    stack.write_text(text.replace("      mode: dhcp #", "      mode: proxy #", 1))
    monkeypatch.setattr(command, "ask", lambda *a, **k: command.Found([], []))
    monkeypatch.setattr(command, "not_seen", lambda *a, **k: [])
    args = argparse.Namespace(
        write=False,
        address=None,
        no_leases=False,
        role="istari",
        arch=None,
        deadline=1.0,
        kubeconfig=None,
        context=None,
        wipe=[],
        arm=None,
        disarm=False,
    )
    command.run(args, stack)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"# 0 machines waiting to be added to {stack}"
    assert out[1].startswith("# no machine was asked: in proxy DHCP mode the Ainur hand out no addresses, so they hold no leases; give --address IP")
