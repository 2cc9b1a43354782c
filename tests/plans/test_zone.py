"""plans.zone: the internal zone as the LAN resolves it, the one table a server written by name is checked through."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from plans import network, zone
from stacks import load_stack_file
from tests.edit import HOMELAB, RK1


def test_without_the_ainur_the_zone_is_the_lan_resolvers() -> None:
    """No Ainur: Arda's LAN resolver answers the machines, the VIP, the gateway that exists and the app hosts."""
    assert {k: str(v) for k, v in zone.records(load_stack_file(RK1)).items()} == {
        "envoy-internal.turing.home.arpa": "10.10.0.218",
        "grafana.turing.home.arpa": "10.10.0.218",
        "home.turing.home.arpa": "10.10.0.218",
        "talos-1.turing.home.arpa": "10.10.0.11",
        "talos-2.turing.home.arpa": "10.10.0.12",
        "talos-3.turing.home.arpa": "10.10.0.13",
        "talos-4.turing.home.arpa": "10.10.0.14",
        "turing.turing.home.arpa": "10.10.0.10",
    }


def test_with_the_ainur_the_zone_holds_their_names_and_identitys() -> None:
    """The Ainur's dnsmasq answers their own names (the VIP, the service address, the Git mirror) and what identity and
    the edge add (Dex, the CA page, each Argo CD, the app hosts, in the public zone too)."""
    records = {k: str(v) for k, v in zone.records(load_stack_file(HOMELAB)).items()}
    assert len(records) == 25
    assert {
        k: records[k]
        for k in (
            "ainur.iluvatar.home.arpa",
            "netboot.iluvatar.home.arpa",
            "git.iluvatar.home.arpa",
            "dex.iluvatar.home.arpa",
            "argocd-ainur.iluvatar.home.arpa",
            "argocd.iluvatar.home.arpa",
            "www.example.com",
            "minecraft.iluvatar.home.arpa",
        )
    } == {
        "ainur.iluvatar.home.arpa": "192.168.0.10",
        "netboot.iluvatar.home.arpa": "192.168.0.14",
        "git.iluvatar.home.arpa": "192.168.0.15",
        "dex.iluvatar.home.arpa": "192.168.0.16",
        "argocd-ainur.iluvatar.home.arpa": "192.168.0.16",
        "argocd.iluvatar.home.arpa": "192.168.0.238",
        "www.example.com": "192.168.0.239",
        "minecraft.iluvatar.home.arpa": "192.168.0.220",
    }


@pytest.mark.parametrize("path", [HOMELAB, RK1], ids=["with-the-ainur", "without-the-ainur"])
def test_the_zone_walks_no_address_of_the_lan(path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stack's rules compute the zone for every stack checked: counting the LAN's free addresses (the network plan's
    figure, one address at a time) would take minutes on a /8, so the zone is built without it."""
    stack = load_stack_file(path)  # type: ignore[arg-type]
    expected = zone.records(stack)

    def walked(*_: object) -> list[IPv4Address]:
        raise AssertionError("the zone walked the LAN's free addresses")

    monkeypatch.setattr(network, "free_static", walked)
    assert zone.records(stack) == expected
