"""The servers nothing on the LAN side reaches (stacks.reach.unreachable): the tailnet's range against the homelab's own networks."""

from __future__ import annotations

from ipaddress import IPv4Network

from stacks.reach import Clients, unreachable

RESOLVERS = Clients("the Pis", "so no name would resolve", "give the router's LAN address")


def test_an_address_of_the_tailnets_range_is_unreachable_from_the_lan() -> None:
    assert unreachable("100.72.0.1", RESOLVERS, local=[IPv4Network("192.168.0.0/24")]) == (
        "100.72.0.1 is inside 100.64.0.0/10, the addresses a tailnet gives its devices: traffic from the Pis to it goes "
        "through the LAN's gateway, which has no route into the tailnet, so no name would resolve; give the router's LAN address"
    )


def test_an_address_of_a_lan_numbered_inside_the_tailnets_range_is_the_lans() -> None:
    # The LAN's own numbering is the slip, said once at network.lan (stacks.remote_access), not at each of its servers.
    assert unreachable("100.72.0.1", RESOLVERS, local=[IPv4Network("100.72.0.0/24")]) is None
    assert unreachable("100.100.100.100", RESOLVERS, local=[IPv4Network("100.72.0.0/24")]) is not None


def test_an_ipv4_mapped_literal_is_its_ipv4_address() -> None:
    # A client dials ::ffff:a.b.c.d as a.b.c.d: loopback, link-local and the tailnet's range are each refused mapped.
    assert unreachable("[::ffff:127.0.0.1]", RESOLVERS) == (
        "[::ffff:127.0.0.1] is loopback: to the Pis it names each one's own host or pod, not a server of the LAN, so no name "
        "would resolve; give the router's LAN address"
    )
    assert (unreachable("::ffff:169.254.1.1", RESOLVERS) or "").startswith("::ffff:169.254.1.1 is link-local (169.254.0.0/16")
    assert (unreachable("::ffff:100.64.1.5", RESOLVERS) or "").startswith("::ffff:100.64.1.5 is inside 100.64.0.0/10")
    assert unreachable("::ffff:192.168.0.5", RESOLVERS) is None
