"""The lab's kube-vip election (tests.netns.election) where a race decides: a SIGTERM in the middle of a renewal.

Against an API server that keeps one Lease and its resourceVersion, as the real one does (an update naming an older
resourceVersion is refused, 409 Conflict), so the order of events is set by the test, not by the load.
"""

from __future__ import annotations

import copy
import json
import time
from typing import Any

from tests.netns import election


class OneLease:
    """The API server's side of one Lease: create, get, and an update that must name the current resourceVersion. With
    `cut_after_apply`, the next update is applied and then the SIGTERM lands before its answer is read."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0
        self.cut_after_apply = False

    def _store(self, body: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        self.lease = {**body, "metadata": {**body["metadata"], "resourceVersion": str(self.version)}}
        return copy.deepcopy(self.lease)

    def request(self, method: str, path: str, body: Any, deadline: float) -> tuple[int, Any]:
        if method == "GET":
            return (404, None) if self.lease is None else (200, copy.deepcopy(self.lease))
        if method == "POST":
            return 201, self._store(body)
        assert method == "PUT", method
        if body["metadata"]["resourceVersion"] != str(self.version):
            return 409, {"reason": "Conflict"}
        answer = self._store(body)
        if self.cut_after_apply:
            self.cut_after_apply = False
            raise election.TerminatedError()
        return 200, answer


def elector(api: OneLease, identity: str, said: list[str]) -> election.LeaderElector:
    lock = election.LeaseLock(api, "kube-system", "kubevip-dnsmasq", identity)  # type: ignore[arg-type]  # LeaseLock calls only request()
    return election.LeaderElector(lock, 22.0, 20.0, 1.0, lambda event, **_: said.append(event))


def test_a_sigterm_after_the_api_applied_a_renewal_fails_the_release_and_the_same_node_takes_the_lease_at_once() -> None:
    """client-go v0.32.3 keeps a Lease update's answer only on success (tools/leaderelection/resourcelock/leaselock.go:
    69-81): a renewal applied by the API server and cancelled before its answer leaves the lock at the old
    resourceVersion, so the release's update is a conflict ("release failed"). The new kube-vip on the same node has
    the same identity (kube-vip v0.9.2 servicesLeader.go: the node's name), and the Lease still names it, so its first
    try takes it (leaderelection.go:449-458 refuses only another holder's valid lease): no wait for the lease."""
    api, said = OneLease(), list[str]()
    old = elector(api, "pi-1", said)
    assert old.try_acquire_or_renew(time.monotonic() + 5)
    api.cut_after_apply = True
    try:
        old.try_acquire_or_renew(time.monotonic() + 5)
        raise AssertionError("the renewal was not cut")
    except election.TerminatedError:
        pass
    assert old.lock.lease is not None and (old.lock.lease["metadata"]["resourceVersion"], api.version) == ("1", 2)
    assert old.release() is False
    assert api.lease is not None and api.lease["spec"]["holderIdentity"] == "pi-1"

    new = elector(api, "pi-1", said)
    assert new.try_acquire_or_renew(time.monotonic() + 5)
    assert said == []  # no "held", no "try failed": taken at the first try
    assert api.lease["spec"]["holderIdentity"] == "pi-1"

    # Another Pi finds the same Lease held and valid, and waits.
    other = elector(api, "pi-2", said)
    assert not other.try_acquire_or_renew(time.monotonic() + 5)
    assert said == ["held"]


def test_a_sigterm_between_renewals_releases_the_lease() -> None:
    api, said = OneLease(), list[str]()
    old = elector(api, "pi-1", said)
    assert old.try_acquire_or_renew(time.monotonic() + 5)
    assert old.try_acquire_or_renew(time.monotonic() + 5)
    assert old.release() is True
    assert api.lease is not None and json.loads(json.dumps(api.lease["spec"]))["holderIdentity"] == ""
