"""The NetworkPolicy helpers: what a policy that admits no one sends to the API server."""

from __future__ import annotations

from plans import netpol


def test_a_policy_admitting_no_one_has_no_ingress_list() -> None:
    # An empty `ingress` list is not stored, so each server-side apply of one would stamp its manager's time anew.
    closed = netpol.allow("ui", "storage", {"app": "ui"}, [])
    assert closed["spec"] == {"podSelector": {"matchLabels": {"app": "ui"}}, "policyTypes": ["Ingress"]}
    assert netpol.allow("c", "gateway", {"app": "c"}, [], [])["spec"] == {"podSelector": {"matchLabels": {"app": "c"}}, "policyTypes": ["Ingress"]}
    assert netpol.ingress([]) == {}


def test_a_policy_with_a_rule_keeps_it() -> None:
    opened = netpol.allow("dns", "kube-system", {"k8s-app": "dns"}, [netpol.port(53, "UDP")], None)
    assert opened["spec"]["ingress"] == [{"ports": [{"port": 53, "protocol": "UDP"}]}]
    assert netpol.ingress([{"ports": [{"port": 1}]}]) == {"ingress": [{"ports": [{"port": 1}]}]}
