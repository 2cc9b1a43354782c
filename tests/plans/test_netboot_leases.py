"""restore-leases' drop of stale reservation leases (plans.netboot.leases.drop_stale_script), run by busybox's sh and awk
as in the curl image; the real dnsmasq's side is tests/netns/test_dnsmasq_records.py."""

from __future__ import annotations

import subprocess
from pathlib import Path

from plans.netboot import drop_stale_script, manifests
from stacks import load_stack_file
from tests.edit import HOMELAB
from tests.plans.test_netboot import variant
from tests.tools import require

HOSTS = "# The inventory's machines\n28:d2:44:30:00:01,192.168.0.31,gandalf,infinite\n28:D2:44:30:00:02,192.168.0.32,saruman,infinite\n"


def _run(tmp_path: Path, leases: str, hosts: str | None = HOSTS, proxy: bool = False) -> tuple[str, str]:
    lease_file, hosts_file = tmp_path / "dnsmasq.leases", tmp_path / "dnsmasq-dhcp-hosts"
    lease_file.write_text(leases)
    hosts_file.unlink(missing_ok=True)
    if hosts is not None:
        hosts_file.write_text(hosts)
    done = subprocess.run(
        [require("busybox"), "sh", "-euc", drop_stale_script(str(lease_file), str(hosts_file), proxy)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return lease_file.read_text(), done.stdout


def test_only_an_infinite_lease_of_an_address_reserved_for_another_mac_is_dropped(tmp_path: Path) -> None:
    leases = (
        "0 28:d2:44:30:00:01 192.168.0.31 gandalf *\n"  # the reserved MAC's own: kept
        "0 02:00:5e:00:0e:99 192.168.0.32 gone *\n"  # infinite, reserved for another MAC (any case): dropped
        "1795000000 02:00:5e:00:ab:01 192.168.0.32 phone 01:02:00:5e:00:ab:01\n"  # finite: runs out by itself, kept
        "1795000000 02:00:5e:00:ab:02 192.168.0.150 laptop *\n"  # the range's: kept
        "0 02:00:5e:00:0e:98 192.168.0.40 old *\n"  # infinite, no longer reserved at all: nothing else wants it, kept
    )
    kept, said = _run(tmp_path, leases)
    assert kept == leases.replace("0 02:00:5e:00:0e:99 192.168.0.32 gone *\n", "")
    assert said.splitlines() == [
        "dropped the leases of reserved addresses held by a MAC no longer reserved at them:",
        "0 02:00:5e:00:0e:99 192.168.0.32 gone *",
    ]


def test_nothing_is_dropped_or_said_without_a_stale_lease_or_a_hosts_file(tmp_path: Path) -> None:
    leases = "0 28:d2:44:30:00:01 192.168.0.31 gandalf *\n"
    assert _run(tmp_path, leases) == (leases, "")
    assert _run(tmp_path, "0 02:00:5e:00:0e:99 192.168.0.32 gone *\n", hosts=None) == ("0 02:00:5e:00:0e:99 192.168.0.32 gone *\n", "")
    assert _run(tmp_path, "") == ("", "")


def test_in_proxy_mode_an_infinite_lease_no_reservation_holds_is_dropped(tmp_path: Path) -> None:
    """#53: after a move from dhcp, the Ainur's proxy-mode dnsmasq still loads the lease file and answers DNS for every
    lease's name and address, the reverse name too (the real dnsmasq 2.90 did: `oldbox` -> its address from an infinite
    lease in a proxy-mode run); an infinite one never runs out. The router lends every address then: an infinite lease
    of a machine removed, or given another address, would have the Ainur name an address the router owns for ever."""
    leases = (
        "0 28:d2:44:30:00:01 192.168.0.31 gandalf *\n"  # its MAC's reservation: kept
        "0 28:d2:44:30:00:02 192.168.0.41 saruman *\n"  # saruman's MAC, reserved now at .32: dropped
        "0 02:00:5e:00:0e:99 192.168.0.32 gone *\n"  # reserved for another MAC: dropped
        "0 02:00:5e:00:0e:98 192.168.0.40 old *\n"  # no longer reserved at all: dropped
        "1795000000 02:00:5e:00:ab:02 192.168.0.150 laptop *\n"  # finite: runs out by itself, kept
    )
    kept, said = _run(tmp_path, leases, proxy=True)
    assert kept == "0 28:d2:44:30:00:01 192.168.0.31 gandalf *\n1795000000 02:00:5e:00:ab:02 192.168.0.150 laptop *\n"
    assert said.splitlines() == [
        "dropped the infinite leases no reservation holds (proxy mode: the router lends every address):",
        "0 28:d2:44:30:00:02 192.168.0.41 saruman *",
        "0 02:00:5e:00:0e:99 192.168.0.32 gone *",
        "0 02:00:5e:00:0e:98 192.168.0.40 old *",
    ]


def test_the_pods_restore_drops_them_in_the_stacks_mode() -> None:
    """The netboot ConfigMap's restore-leases.sh is the stack's mode's: a move between modes replaces the pod, whose
    restore then runs it."""
    for stack, proxy in ((load_stack_file(HOMELAB), False), (variant(mode="proxy"), True)):
        [config] = [m for m in manifests(stack, []) if m["kind"] == "ConfigMap" and m["metadata"]["name"] == "netboot"]
        assert ("proxy == 1))' /etc/iluvatar/dnsmasq-dhcp-hosts" in config["data"]["restore-leases.sh"]) is True
        assert ("-v proxy=1 " in config["data"]["restore-leases.sh"]) is proxy
