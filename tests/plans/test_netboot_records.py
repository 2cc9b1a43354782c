"""The records loop (plans.netboot.records): one version of the netboot ConfigMap's records into dnsmasq's folders,
each by one rename, through a swap of the volume in the middle of a pass."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from plans import netboot
from plans.netboot import records
from stacks import load_stack_file
from tests.edit import HOMELAB
from tests.plans.test_netboot_pis import SWAP_HOOK


def _version(volume: Path, name: str, hosts: str, dhcp: str) -> None:
    (volume / name).mkdir(parents=True)
    (volume / name / records.HOSTS_KEY).write_text(hosts)
    (volume / name / records.DHCP_HOSTS_KEY).write_text(dhcp)


def _run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", "-c", netboot.records_script()], env=env, capture_output=True, text=True, timeout=60)


def test_a_pass_puts_each_file_in_place_by_one_rename_and_only_when_it_changed(tmp_path: Path) -> None:
    stack = load_stack_file(HOMELAB)
    volume, dest = tmp_path / "volume", tmp_path / "records"
    _version(volume, "..v1", netboot.hosts_file(stack), netboot.dhcp_hosts_file(stack))
    (volume / "..data").symlink_to("..v1")
    env = {"PATH": os.environ["PATH"], "SRC": str(volume), "DEST": str(dest), "ONCE": "1"}
    first = _run(env)
    assert first.returncode == 0, first.stderr
    assert (dest / "hosts" / "iluvatar").read_text() == netboot.hosts_file(stack)
    assert (dest / "dhcp-hosts" / "iluvatar").read_text() == netboot.dhcp_hosts_file(stack)
    assert sorted(p.name for p in (dest / "hosts").iterdir()) == ["iluvatar"]
    assert first.stderr == "iluvatar: dnsmasq reads its hosts anew (14 lines)\niluvatar: dnsmasq reads its dhcp-hosts anew (8 lines)\n"
    inode = (dest / "hosts" / "iluvatar").stat().st_ino
    again = _run(env)
    assert (again.returncode, again.stderr) == (0, "")
    assert (dest / "hosts" / "iluvatar").stat().st_ino == inode, "an unchanged file is left alone: dnsmasq reads nothing"


def test_the_first_pass_fails_when_the_records_cannot_be_read(tmp_path: Path) -> None:
    """The init step: dnsmasq must not start without its records (it would serve no inventory until the loop's pass)."""
    (tmp_path / "volume").mkdir()
    done = _run({"PATH": os.environ["PATH"], "SRC": str(tmp_path / "volume"), "DEST": str(tmp_path / "records"), "ONCE": "1"})
    assert (done.returncode, done.stderr) == (1, f"iluvatar: the records under {tmp_path / 'volume'} cannot be read; dnsmasq keeps the ones it has\n")


@pytest.mark.parametrize("at", [("readlink",), ("cp",)], ids=["after-resolve", "after-first-read"])
def test_a_swap_of_the_volume_in_the_middle_of_a_pass_hands_dnsmasq_one_version(tmp_path: Path, at: tuple[str, ...]) -> None:
    volume, dest = tmp_path / "volume", tmp_path / "records"
    _version(volume, "..v1", "192.168.0.40 music.iluvatar.home.arpa\n", "02:00:5e:00:0e:33,set:known\n")
    _version(volume, "..v2", "192.168.0.41 films.iluvatar.home.arpa\n", "02:00:5e:00:0e:34,set:known\n")
    (volume / "..data").symlink_to("..v1")
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    for program in at:
        (hooks / program).write_text(SWAP_HOOK)
        (hooks / program).chmod(0o755)
    env = {"PATH": f"{hooks}:{os.environ['PATH']}", "REAL_PATH": os.environ["PATH"], "SRC": str(volume), "DEST": str(dest), "ONCE": "1"}
    env |= {"BOOTS": str(volume), "NEW_VERSION": "..v2", "SWAPPED": str(tmp_path / "swapped")}
    done = _run(env)
    assert (tmp_path / "swapped").exists() and not (volume / "..v1").exists()
    assert done.returncode == 0, done.stderr
    # One version whole: the new one when the swap came before anything was read, else the old one (the next pass's).
    want = ("films", "34") if at == ("readlink",) else ("music", "33")
    assert want[0] in (dest / "hosts" / "iluvatar").read_text() and want[1] in (dest / "dhcp-hosts" / "iluvatar").read_text()
