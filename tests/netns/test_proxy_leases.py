"""The real dnsmasq in proxy mode, on leases a move from dhcp carried over: it still answers DNS for an infinite lease's
name and address, and the program's restore-leases drops the one no reservation holds (plans.netboot.leases.STALE)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from plans import netboot
from plans.netboot import records
from tests.netns.lan import Lan, in_ns, lan, require_root
from tests.plans.test_netboot import variant
from tests.tools import require

require_root()

SVC = "192.168.0.14"


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lan]:
    with lan(variant(mode="proxy"), tmp_path_factory.mktemp("proxy-leases"), f"ilv{os.getpid() % 10000}l") as network:
        yield network


def test_a_stale_infinite_lease_names_no_address_the_router_owns_after_the_restore(net: Lan) -> None:
    """#53: a machine removed from the inventory (or given another address) while its infinite lease from dhcp mode
    stayed in the lease file the cluster keeps. The proxy-mode dnsmasq, which lends nothing, loads it and answers its
    name and the reverse name for its address, which the router lends now; after the pod's restore, neither."""
    leases = net.root / "leases" / "dnsmasq.leases"
    stale = "0 02:00:5e:00:0e:98 192.168.0.47 oldbox *\n"
    kept = "0 28:d2:44:30:00:01 192.168.0.31 gandalf *\n"

    def ask(*query: str) -> str:
        return in_ns(net.pi, require("dig"), f"@{SVC}", "+short", *query).stdout.strip()

    net.stop("dnsmasq")
    leases.parent.mkdir(exist_ok=True)
    leases.write_text(kept + stale)
    net.start_dnsmasq(keep_leases=True)
    assert (ask("oldbox.iluvatar.home.arpa"), ask("-x", "192.168.0.47")) == ("192.168.0.47", "oldbox.iluvatar.home.arpa.")
    # The pod restarted: restore-leases' filter in the stack's mode, on the lease file the cluster kept, then dnsmasq.
    net.stop("dnsmasq")
    leases.write_text(kept + stale)
    hosts = net.root / "netboot-configmap" / records.DHCP_HOSTS_KEY
    script = netboot.drop_stale_script(str(leases), str(hosts), proxy=True)
    done = subprocess.run([require("busybox"), "sh", "-euc", script], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert leases.read_text() == kept
    net.start_dnsmasq(keep_leases=True)
    assert (ask("oldbox.iluvatar.home.arpa"), ask("-x", "192.168.0.47")) == ("", "")
    assert ask("gandalf.iluvatar.home.arpa") == "192.168.0.31"
