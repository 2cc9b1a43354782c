"""The failover bound: how long the household can be without the Ainur's DNS (and, in `dhcp` mode, DHCP) when the Pi
running the netboot pod dies, summed from the timers Iluvatar sets and the upstream ones it leaves as they are.

docs/layers/ainur.md#failover states this sum, and the network-namespace lab (tests/netns/failover.py) runs the same
timers against the real dnsmasq and asserts the gap its household sees stays within it.
"""

from __future__ import annotations

from dataclasses import dataclass

from plans.k3s import KUBE_VIP_ELECTION, NODE_MONITOR_GRACE_PERIOD, NODE_STATUS_UPDATE_FREQUENCY
from plans.netboot.pods import EVICTION_SECONDS, netboot_pod

# kube-controller-manager's --node-monitor-period, which Iluvatar leaves at its default (5 s): how often the node
# lifecycle controller compares each node's last report with the grace period (monitorNodeHealth).
NODE_MONITOR_PERIOD_SECONDS = 5.0
# client-go's leader election retries every RetryPeriod stretched by up to this factor (v0.32.3, which kube-vip v0.9.2
# builds with: tools/leaderelection/leaderelection.go:72 JitterFactor, :258-273 wait.JitterUntil).
LEADER_ELECTION_JITTER = 1.2
# The replacement pod's start on a Pi with its images cached (netboot-cache pulls them on every Pi): the sandbox on the
# host network, restore-leases' one API read, records-first, then dnsmasq bound. An allowance, not a timer: the lab
# starts the real dnsmasq in well under it, a Pi's containerd is not run here.
POD_START_SECONDS = 5.0


def seconds(duration: str) -> float:
    """A Go duration of whole seconds as k3s's flags take it ("16s")."""
    if not duration.endswith("s") or not duration[:-1].isdigit():
        raise ValueError(f"not a duration in whole seconds: {duration!r}")
    return float(duration[:-1])


def readiness_period() -> float:
    """The dnsmasq container's readiness probe period: kube-vip announces the address only from a Pi with a Ready
    endpoint, so a probe that misses dnsmasq's first moments delays the takeover by one period."""
    [dnsmasq] = [c for c in netboot_pod([], "netboot-dnsmasq")["containers"] if c["name"] == "dnsmasq"]
    return float(dnsmasq["readinessProbe"]["periodSeconds"])


@dataclass(frozen=True)
class Step:
    what: str
    seconds: float
    set_by: str


def steps() -> list[Step]:
    """The failover's steps, each at its longest, in order."""
    lease = float(KUBE_VIP_ELECTION["vip_leaseduration"])
    retry = float(KUBE_VIP_ELECTION["vip_retryperiod"])
    return [
        # The controller times a node from its own check that saw the last report (tryUpdateNodeHealth sets
        # probeTimestamp = nc.now()), up to a period after the Pi's death, and marks it at the first check past the
        # grace period from there: whole periods, so a 16 s grace with a 5 s period is 20 s.
        Step(
            "the node marked unreachable: its last report seen at the controller's next check, then no report for the grace period",
            NODE_MONITOR_PERIOD_SECONDS + (seconds(NODE_MONITOR_GRACE_PERIOD) // NODE_MONITOR_PERIOD_SECONDS + 1) * NODE_MONITOR_PERIOD_SECONDS,
            "node-monitor-grace-period, node-monitor-period (default)",
        ),
        Step("the netboot pod's toleration of `unreachable` runs out; it is evicted and replaced", float(EVICTION_SECONDS), "tolerationSeconds"),
        Step("the replacement started on another Pi (images cached, leases read from the cluster)", POD_START_SECONDS, "allowance"),
        Step("its readiness probe sees dnsmasq", readiness_period(), "readinessProbe periodSeconds"),
        # kube-vip v0.9.2 joins the Service's election only from a Pi with a Ready endpoint (pkg/manager/
        # watch_endpoints.go:246-300), so the new Pi's candidate is a new one: client-go counts the dead holder's lease
        # from its own first look at it (leaderelection.go:449-457, isLeaseValid :506-508, setObservedRecord :512-517),
        # not from the holder's last renewal, and takes it at the first retry after a whole lease duration.
        Step(
            "kube-vip there takes the Service's lease and sends gratuitous ARP",
            lease + retry * (1 + LEADER_ELECTION_JITTER),
            "vip_leaseduration, vip_retryperiod",
        ),
    ]


def bound() -> float:
    """The longest the household is without the Ainur's DNS (and, in `dhcp` mode, DHCP) when the serving Pi dies."""
    return sum(s.seconds for s in steps())


def status_frequency() -> float:
    """How often a kubelet reports: a Pi's last report before its death is at most this old."""
    return seconds(NODE_STATUS_UPDATE_FREQUENCY)
