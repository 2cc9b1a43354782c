"""The failover bound: how long the household can be without the Ainur's DNS (and, in `dhcp` mode, DHCP) when the Pi
running the netboot pod dies, summed from the timers Iluvatar sets and the upstream ones it leaves as they are; and the
service address's own leader election, which decides how long an outage of the Ainur's API it rides out.

docs/layers/ainur.md#failover states these figures, and the network-namespace lab runs the same timers against the real
dnsmasq (tests/netns/failover.py, tests/netns/election.py) and asserts what its household sees stays within them.
"""

from __future__ import annotations

from dataclasses import dataclass

from plans.k3s import NODE_LEASE_DURATION_SECONDS, NODE_MONITOR_GRACE_PERIOD
from plans.netboot import records
from plans.netboot.pods import EVICTION_SECONDS, netboot_pod

# kube-controller-manager's --node-monitor-period, which Iluvatar leaves at its default (5 s): how often the node
# lifecycle controller compares each node's last report with the grace period (monitorNodeHealth).
NODE_MONITOR_PERIOD_SECONDS = 5.0
# client-go's leader election retries every RetryPeriod stretched by up to this factor (v0.32.3, which kube-vip v0.9.2
# builds with: tools/leaderelection/leaderelection.go:72 JitterFactor, :258-273 wait.JitterUntil).
LEADER_ELECTION_JITTER = 1.2
# The service address's leader election (the kube-vip-services DaemonSet's, plans.netboot.kube_vip), apart from the API
# VIP's 5/3/1 (plans.k3s.KUBE_VIP_ELECTION: each kube-vip reads its own vip_leaseduration, vip_renewdeadline and
# vip_retryperiod, kube-vip v0.9.2 pkg/kubevip/config_environment.go:69-93, and the per-Service election runs with them,
# pkg/manager/servicesLeader.go:83-95). Its holder renews through the Ainur's API server, which with one valar is down
# for every k3s restart there; client-go gives up leading once a renewal round has failed for RenewDeadline
# (leaderelection.go:278-297: each round polls every RetryPeriod until RenewDeadline), and kube-vip then deletes the
# address (servicesLeader.go:104-113). A renew deadline of 20 s rides out a k3s restart. The lease stays 2 s longer, so
# with an API that refuses connections a candidate watching the lease takes it only after its holder let it go; with
# one that black-holes them, the holder may keep the address longer (`cut_off_holder_lets_go_within`), and what keeps a
# second holder away is that a candidate exists only on a Pi with a ready netboot pod, after an eviction.
SERVICE_LEASE_SECONDS = 22
SERVICE_RENEW_DEADLINE_SECONDS = 20
SERVICE_RETRY_SECONDS = 1
# kube-vip's client bounds every request to the API (kube-vip v0.9.2 pkg/k8s/client.go:17 defaultTimeout, :65).
KUBE_VIP_CLIENT_TIMEOUT_SECONDS = 10.0
# kube-controller-manager's own leader election, which k3s leaves at the upstream defaults (k3s passes only
# leader-elect=false, and only with --disable-leader-elect: pkg/daemons/control/server.go, controllerManager;
# component-base v0.35.1 config/v1alpha1/defaults.go:37-44): a 15 s lease retried every 2 s.
CONTROLLER_MANAGER_LEASE_SECONDS = 15.0
CONTROLLER_MANAGER_RETRY_SECONDS = 2.0
# The kubelet's heartbeat: its node Lease, renewed every quarter of the Lease's duration (Kubernetes v1.35.1
# pkg/kubelet/kubelet.go:235-236 nodeLeaseRenewIntervalFraction, :1077), which the program's kubelet drop-in sets to 16 s
# instead of the default 40 s (plans.k3s.NODE_LEASE_DURATION_SECONDS, KUBELET_DROPIN; pkg/kubelet/apis/config/v1beta1/
# defaults.go:150-151), so every
# 4 s, with up to 4 % jitter (component-helpers v0.35.1 apimachinery/lease/controller.go:148). Its Node status is no
# heartbeat here: k3s's --node-status-update-frequency=4s changes how often the kubelet computes it, and the kubelet posts
# it only when it changed or every node-status-report-frequency, which stays 5 min (the flag is parsed after the config's
# defaults, cmd/kubelet/app/server.go:145, :215-231, defaults.go:137-145; pkg/kubelet/kubelet_node_status.go:536).
NODE_LEASE_RENEW_FRACTION = 0.25
NODE_LEASE_RENEW_SECONDS = NODE_LEASE_DURATION_SECONDS * NODE_LEASE_RENEW_FRACTION
NODE_LEASE_JITTER = 0.04
# The replacement pod's start on a Pi with its images cached (netboot-cache pulls them on every Pi): the sandbox on the
# host network, restore-leases' one API read, records-first, then dnsmasq bound. An allowance, not a timer: the lab
# starts the real dnsmasq in well under it, a Pi's containerd is not run here.
POD_START_SECONDS = 5.0


def seconds(duration: str) -> float:
    """A Go duration of whole seconds as k3s's flags take it ("16s")."""
    if not duration.endswith("s") or not duration[:-1].isdigit():
        raise ValueError(f"not a duration in whole seconds: {duration!r}")
    return float(duration[:-1])


def service_election() -> dict[str, str]:
    """The kube-vip-services DaemonSet's election settings, as its environment takes them (whole seconds)."""
    return {
        "vip_leaseduration": str(SERVICE_LEASE_SECONDS),
        "vip_renewdeadline": str(SERVICE_RENEW_DEADLINE_SECONDS),
        "vip_retryperiod": str(SERVICE_RETRY_SECONDS),
    }


def longest_retry(retry: float) -> float:
    """client-go's wait between two tries of a candidate: RetryPeriod stretched by up to JitterFactor."""
    return retry * (1 + LEADER_ELECTION_JITTER)


def api_outage_ridden() -> float:
    """The longest outage of the Ainur's API server the service address always rides out. The holder's renewal round
    that first fails began at most a RetryPeriod before the outage (a round begins RetryPeriod after the last
    success, leaderelection.go:282-297, wait.Until) and tries every RetryPeriod until RenewDeadline: an API back at
    least a RetryPeriod before that deadline is met by one of its tries."""
    return float(SERVICE_RENEW_DEADLINE_SECONDS - SERVICE_RETRY_SECONDS)


def address_dropped_within() -> tuple[float, float]:
    """When, counted from the start of an outage longer than `api_outage_ridden`, kube-vip deletes the service address:
    RenewDeadline after the failing round began, which is between the outage's start and a RetryPeriod after it."""
    return float(SERVICE_RENEW_DEADLINE_SECONDS), float(SERVICE_RENEW_DEADLINE_SECONDS + SERVICE_RETRY_SECONDS)


def cut_off_holder_lets_go_within() -> float:
    """The longest a holder cut off from the API keeps the address after its last renewal, when its requests hang rather
    than fail: its next round begins a RetryPeriod later and gives up at RenewDeadline, then ReleaseOnCancel's release
    runs before OnStoppedLeading (client-go leaderelection.go:211-213, :301-304) with one more request, bounded by the
    lesser of RenewDeadline and the client timeout (:308-327), and only then does kube-vip delete the address: a retry,
    then RenewDeadline + min(RenewDeadline, client timeout). Longer than the lease a watching candidate waits: no
    candidate watches, since a Pi's kube-vip is one only with a ready netboot pod on its Pi, which takes an eviction
    (`second_holder_after`)."""
    return SERVICE_RETRY_SECONDS + SERVICE_RENEW_DEADLINE_SECONDS + min(SERVICE_RENEW_DEADLINE_SECONDS, KUBE_VIP_CLIENT_TIMEOUT_SECONDS)


def second_holder_after() -> float:
    """The soonest another Pi can take the address after the holder's Pi went silent (cut off, or dead): its kubelet's
    last heartbeat up to a jittered renew interval before, the node marked no sooner than a grace period after the
    controller saw that heartbeat, the toleration, then the new Pi's candidate waits a whole lease from its own first look
    (the replacement's start and readiness not counted). Later than `cut_off_holder_lets_go_within` after the same
    silence: the eviction, not the lease's margin, keeps a second holder away."""
    return seconds(NODE_MONITOR_GRACE_PERIOD) - node_lease_renew() + EVICTION_SECONDS + SERVICE_LEASE_SECONDS


def address_back_within() -> float:
    """How soon after the API server answers again the dropped address is back: kube-vip starts the Service's election
    again at once (pkg/manager/watch_endpoints.go:288-306, its loop around StartServicesLeaderElection), as a candidate
    that finds the lease still naming itself and so takes it at its first try without waiting the lease out
    (leaderelection.go:449-469: IsLeader is true of the record it just read); tries are a jittered RetryPeriod apart
    (:258-273)."""
    return longest_retry(SERVICE_RETRY_SECONDS)


def listener_back_within() -> float:
    """How long after its Pi gains the service address dnsmasq may still not listen there: the kernel tells dnsmasq of
    the address before it adds the address's local route, so dnsmasq's bind can fail, in silence, for good
    (plans.netboot.records); the listener watch then sees the address held with no socket at two looks in a row and
    makes an address event, at which dnsmasq binds (milliseconds, not counted, as each look's own: awk and grep over
    /proc). Every arrival of the address pays it at
    worst: a failover's, and the return after an API outage the election did not ride out."""
    return 2 * records.POLL_SECONDS


def node_lease_renew() -> float:
    """The longest between two renewals of a kubelet's node Lease: a Pi's last heartbeat before its death is at most
    this old."""
    return NODE_LEASE_RENEW_SECONDS * (1 + NODE_LEASE_JITTER)


def marked(grace: float) -> float:
    """From the node lifecycle controller's check that last saw a heartbeat to the check that marks the node: checks
    come every node-monitor-period, and the first past the grace period marks it, so whole periods."""
    return (grace // NODE_MONITOR_PERIOD_SECONDS + 1) * NODE_MONITOR_PERIOD_SECONDS


def earliest_eviction() -> float:
    """The shortest silence of a Pi's kubelet (a k3s restart there) that can get its pods evicted: its last Lease renewal
    a whole jittered interval before the silence, seen by a check at that very moment, the node marked whole periods
    later, then the netboot pod's toleration."""
    return marked(seconds(NODE_MONITOR_GRACE_PERIOD)) - node_lease_renew() + EVICTION_SECONDS


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


def steps(controller_manager_died: bool = False) -> list[Step]:
    """The failover's steps, each at its longest, in order; with `controller_manager_died`, the dead Pi was a valar
    that also led kube-controller-manager (several valar: with one, its death takes the API with it and nothing fails
    over)."""
    grace = seconds(NODE_MONITOR_GRACE_PERIOD)
    if controller_manager_died:
        # A standby takes the controller-manager's lease once it has seen it unrenewed for a whole lease: it saw the
        # last renewal at its next jittered try after the death, counts the lease from there and takes it at the first
        # try past it (leaderelection.go:258-273, :449-457, :506-517). Its node lifecycle controller starts with no
        # history: a node it has not seen is timed from its first check (node_lifecycle_controller.go:886-889,
        # probeTimestamp = nc.now(), checks every period from the start, :507-511), and marked whole periods later.
        # The new leader's informer sync before that first check is not counted (a handful of objects on the Ainur).
        cm_retry = longest_retry(CONTROLLER_MANAGER_RETRY_SECONDS)
        first = Step(
            "a standby kube-controller-manager takes the dead one's lease, its node lifecycle controller first sees the node, then marks it after the grace period",
            cm_retry + CONTROLLER_MANAGER_LEASE_SECONDS + cm_retry + marked(grace),
            "controller-manager leader election (default), node-monitor-grace-period, node-monitor-period (default)",
        )
    else:
        # The controller times a node from its own check that saw the last heartbeat (tryUpdateNodeHealth sets
        # probeTimestamp = nc.now(), node_lifecycle_controller.go:935), up to a period after the Pi's death (a Lease
        # renewed just before it), and marks it at the first check past the grace period from there: whole periods,
        # so a 16 s grace with a 5 s period is 20 s.
        first = Step(
            "the node marked unreachable: its last heartbeat seen at the controller's next check, then none for the grace period",
            NODE_MONITOR_PERIOD_SECONDS + marked(grace),
            "node-monitor-grace-period, node-monitor-period (default)",
        )
    return [
        first,
        Step("the netboot pod's toleration of `unreachable` runs out; it is evicted and replaced", float(EVICTION_SECONDS), "tolerationSeconds"),
        Step("the replacement started on another Pi (images cached, leases read from the cluster)", POD_START_SECONDS, "allowance"),
        Step("its readiness probe sees dnsmasq", readiness_period(), "readinessProbe periodSeconds"),
        # kube-vip v0.9.2 joins the Service's election only from a Pi with a Ready endpoint (pkg/manager/
        # watch_endpoints.go:246-300), so the new Pi's candidate is a new one: client-go counts the dead holder's lease
        # from its own first look at it (leaderelection.go:449-457, isLeaseValid :506-508, setObservedRecord :512-517),
        # not from the holder's last renewal, and takes it at the first retry after a whole lease duration.
        Step(
            "kube-vip there takes the Service's lease and sends gratuitous ARP",
            SERVICE_LEASE_SECONDS + longest_retry(SERVICE_RETRY_SECONDS),
            "the service election's lease duration and retry period",
        ),
        Step(
            "dnsmasq listens on the address: at once, or, when its bind came before the kernel's local route, at the listener watch's second look",
            listener_back_within(),
            "the listener watch's poll (2 s), twice",
        ),
    ]


def bound(controller_manager_died: bool = False) -> float:
    """The longest the household is without the Ainur's DNS (and, in `dhcp` mode, DHCP) when the serving Pi dies."""
    return sum(s.seconds for s in steps(controller_manager_died))
