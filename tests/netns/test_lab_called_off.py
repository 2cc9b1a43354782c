"""A household lab called off while it runs (tests.netns.lan.abandonable): what a Ctrl-C of the household tests does to
the lab each of their threads runs. The lab ends at its next wait, and leaves no network namespace and no process. And
a Pi lab's steps run as the engine runs them (tests.netns.pis.run_like_the_engine) are hung up at once."""

from __future__ import annotations

import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import cast

import pytest

from stacks import parse_stack, read_stack_file
from tests.edit import HOMELAB
from tests.netns.household import run_all
from tests.netns.lan import CalledOffError, abandonable, in_ns, lan, require_root, sh, wait_until
from tests.netns.pis import Pis
from tests.upgrader.run import descendants, running
from tools.kube_cluster import Cluster

require_root()

VALAR = "192.168.0.11"


def _namespaces(prefix: str) -> list[str]:
    return [line.split()[0] for line in sh("ip", "netns", "list").stdout.splitlines() if line.startswith(prefix)]


def _ours() -> set[int]:
    """The live processes under this one (the lab's dnsmasq, nginx, udhcpc, the household's loops, `ip netns exec`)."""
    return {pid for pid in descendants(os.getpid())[1:] if running(pid)}


def test_a_household_lab_called_off_ends_at_its_next_wait_and_leaves_nothing(tmp_path: Path) -> None:
    raw = dict(read_stack_file(HOMELAB).config)
    ainur = raw["iluvatar:ainur"]
    raw["iluvatar:ainur"] = {**ainur, "netboot": {**ainur["netboot"], "mode": "proxy"}}
    prefix = f"ilv{os.getpid() % 10000}x"
    before = _ours()
    called_off = threading.Event()

    def household() -> None:
        # As tests/netns/test_household.py's own runs start: the netboot dnsmasq left to the bring-up.
        with abandonable(called_off), lan(parse_stack(raw), tmp_path, prefix) as net:
            net.stop("dnsmasq")
            valar = net.host("v", VALAR)
            in_ns(valar, "ip", "link", "set", "eth0", "address", net.stack.nodes[0].mac)
            run_all(net, raw, 2, valar)

    with ThreadPoolExecutor(1) as pool:
        lab = pool.submit(household)
        # The household runs: its first client was lent an address (its renewal loop's hook wrote the event).
        wait_until("the household's first lease", lambda: lab.done() or (tmp_path / "events-0").exists(), 120)
        assert not lab.done(), lab.exception()
        assert _namespaces(prefix) != [] and _ours() - before
        called_off.set()
        with pytest.raises(CalledOffError) as ended:
            lab.result()
        assert str(ended.value) == "the lab's run was called off"
    assert _namespaces(prefix) == []
    assert _ours() - before == set()


def test_a_pi_labs_steps_still_running_are_hung_up(tmp_path: Path) -> None:
    """What run_like_the_engine does on a Ctrl-C or a failure while steps run: their SSH sessions end at once."""
    lab = Pis(parse_stack(dict(read_stack_file(HOMELAB).config)), tmp_path, "x", cast(Cluster, None), tmp_path / "key")
    with ThreadPoolExecutor(1) as pool:
        step = pool.submit(lab.session, ["sleep", "600"], "", 900)
        wait_until("the step's session", lambda: step.done() or bool(lab.sessions), 30)
        lab.hang_up()
        assert step.result().returncode == -signal.SIGKILL
    assert lab.sessions == set()
