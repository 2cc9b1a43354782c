"""The failover bound and the service address's election (plans.netboot.failover): summed from the program's own timers,
and stated in the docs as such."""

from __future__ import annotations

from pathlib import Path

import pytest

from plans.netboot import failover

AINUR = Path(__file__).resolve().parent.parent.parent / "docs" / "layers" / "ainur.md"


def test_the_bound_is_the_sum_of_the_steps_each_at_its_longest() -> None:
    """16 s of grace seen in whole 5 s checks from the check after the death (25 s), the toleration (5 s), the pod's
    start (5 s), a readiness period (5 s), a new kube-vip candidate's whole service lease plus a jittered retry
    (22 + 2.2 s), and dnsmasq's lost bind made again at the listener watch's second look (2 + 2 s)."""
    assert [s.seconds for s in failover.steps()] == pytest.approx([25.0, 5.0, 5.0, 5.0, 24.2, 4.0])
    assert failover.bound() == pytest.approx(68.2)


def test_a_dead_controller_manager_leader_adds_its_election_and_a_fresh_grace_period() -> None:
    """A standby's jittered look (4.4 s), the 15 s lease, a jittered retry (4.4 s), then the new node lifecycle
    controller's whole periods past the grace period (20 s): 43.8 s where 25 s was, 87 s in all."""
    assert [s.seconds for s in failover.steps(controller_manager_died=True)] == pytest.approx([43.8, 5.0, 5.0, 5.0, 24.2, 4.0])
    assert failover.bound(controller_manager_died=True) == pytest.approx(87.0)


def test_the_service_election_rides_out_a_k3s_restart() -> None:
    """22/20/1 for the service address: an API outage of up to 19 s is ridden out; a longer one drops the address 20 to
    21 s in, and it is back within 2.2 s of the API's return, dnsmasq listening there within 4 s more (the listener
    watch's two looks). The lease outlasts a holder's giving up by a retry when the API refuses connections."""
    assert failover.service_election() == {"vip_leaseduration": "22", "vip_renewdeadline": "20", "vip_retryperiod": "1"}
    assert failover.api_outage_ridden() == 19.0
    assert failover.address_dropped_within() == (20.0, 21.0)
    assert failover.address_back_within() == pytest.approx(2.2)
    assert failover.listener_back_within() == 4.0
    assert failover.SERVICE_LEASE_SECONDS - max(failover.address_dropped_within()) == 1.0


def test_a_holder_cut_off_by_a_black_hole_lets_go_before_any_second_holder() -> None:
    """Requests that hang: a retry, the 20 s renew deadline, then a release bounded by the 10 s client timeout: up to 31
    s after the last renewal, past the 22 s lease. A second holder needs the old Pi evicted (16 s grace from a heartbeat
    up to 4.16 s before the silence, 5 s toleration) and then a whole lease: 38.84 s after the silence at the soonest."""
    assert failover.cut_off_holder_lets_go_within() == 31.0
    assert failover.cut_off_holder_lets_go_within() > failover.SERVICE_LEASE_SECONDS
    assert failover.second_holder_after() == pytest.approx(38.84)
    assert failover.second_holder_after() > failover.cut_off_holder_lets_go_within()


def test_the_kubelet_heartbeat_is_its_node_lease() -> None:
    """A 16 s Lease renewed every quarter of it, 4 s, with 4 % jitter: a silence of 20.84 s can get a Pi's pods evicted
    (the last renewal 4.16 s before it, the node marked 20 s after a check that saw it, then the 5 s toleration): the
    grace outlasts two missed renewals."""
    assert failover.NODE_LEASE_RENEW_SECONDS == 4.0
    assert failover.node_lease_renew() == pytest.approx(4.16)
    assert failover.earliest_eviction() == pytest.approx(20.84)


def test_a_duration_is_whole_seconds() -> None:
    assert failover.seconds("16s") == 16.0
    with pytest.raises(ValueError, match="not a duration in whole seconds: '1m'"):
        failover.seconds("1m")


def test_the_docs_state_the_programs_bound() -> None:
    text = AINUR.read_text()
    assert f"another takes over within **{failover.bound():g} s**" in text
    assert f"| + {failover.steps()[-1].seconds:g} s |" in text
    assert f"**{failover.bound(controller_manager_died=True):g} s**" in text
    assert f"up to **{failover.api_outage_ridden():g} s**" in text
    assert f"up to **{failover.cut_off_holder_lets_go_within():g} s** after its last renewal" in text
    assert f"at least **{failover.second_holder_after():g} s** after" in text
