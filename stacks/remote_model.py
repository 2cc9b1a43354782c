"""The model of `iluvatar:remoteAccess`: the homelab from a phone or a laptop anywhere, over a tailnet, no port open.

Two flavours, one inventory: `tailscale` (Tailscale's control server; the operator on Arda runs the subnet router,
Pulumi writes the tailnet's policy and split DNS through pulumi-tailscale) and `headscale` (a self-hosted control
server on the Ainur, with the same routes, split DNS and policy). Who reaches what is said once, by the identity
layer's groups (`access`); the rules relating it to the rest of the stack are `stacks.remote_access`'s.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field

from stacks.fields import PUBLIC_URL, Cidr, DnsName, IPv4, Model, _pattern

# An OAuth client's id as Tailscale's admin console shows it (letters and digits, e.g. kQ2wZp7CNTRL).
_CLIENT_ID = re.compile(r"^[A-Za-z0-9]{6,64}$")
# A tailnet as the API names it: "-" (the OAuth client's own), an organisation's domain, or an account's login.
_TAILNET = re.compile(r"^(-|[A-Za-z0-9][A-Za-z0-9._@-]{0,252})$")
# Headscale's public URL: https and a host (no path: clients join paths such as /ts2021, /key to it; no user: the host
# is read from the URL as written, stacks.fields._public_url_fix), the host a lower-case DNS-1123 name, as the subnet
# router's host alias must be.
_PUBLIC_URL = re.compile(r"^https://([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(:\d{1,5})?/?$")
# A tailnet login: whatever the identity provider calls the user, with an @ (an e-mail, `alice@github`, or
# Headscale's `alice@` for a user made without an identity provider: hscontrol/policy/v2/types.go:117-125 at v0.27.1).
_LOGIN = re.compile(r"^[^\s@,\"]*@[^\s,\"]*$")

Flavour = Literal["tailscale", "headscale"]
# What a group may reach: the apps (envoy-internal, the internal zone's resolver, the sign-in front door), both
# clusters' API servers (with what kubectl's sign-in needs), the extra routes the stack advertises, or the raw
# TCP/UDP ports of the apps that have them (each app's address, only its ports).
Reach = Literal["apps", "kubernetes", "routes", "ports"]


class TailscaleSettings(Model):
    """The Tailscale tailnet: the OAuth client Pulumi's provider uses (it writes the policy and split DNS, and makes the
    operator's own, narrower client). Its secret is the Pulumi secret `iluvatar:tailscaleOauthClientSecret`."""

    oauth_client_id: Annotated[str, _pattern(_CLIENT_ID, "kQ2wZp7CNTRL", "Tailscale OAuth client id")]
    tailnet: Annotated[str, _pattern(_TAILNET, "example.com", "tailnet name")] = "-"
    # The first `up` replaces the tailnet's whole policy file (terraform-provider-tailscale v0.29.2 resource_acl.go,
    # Create with overwrite_existing_content): the stack must say it knows, or preview refuses.
    replace_policy: bool = False


class HeadscaleSettings(Model):
    """Headscale on the Ainur: where phones reach it (its public URL, port-forwarded to `ip`) and its DNS."""

    url: Annotated[str, _pattern(_PUBLIC_URL, "https://vpn.example.com", PUBLIC_URL)]
    # Its LAN address (a kube-vip address on the Ainur): the router's port forward of TCP 443 (and UDP 3478) goes here.
    ip: IPv4
    # The devices' own names (MagicDNS): `<device>.<baseDomain>`. None: `tailnet.<network.domain>`.
    base_domain: DnsName | None = None
    # The relays when two devices cannot meet directly: Tailscale's public DERP servers, or Headscale's own
    # (which needs UDP 3478 forwarded too).
    derp: Literal["tailscale", "embedded"] = "tailscale"


class RemoteGrant(Model):
    """One group of the identity layer, its members as the tailnet knows them, and what they may reach remotely."""

    group: str = Field(min_length=1)
    members: tuple[Annotated[str, _pattern(_LOGIN, "alice@example.org", "tailnet login (with an @)")], ...] = Field(min_length=1)
    reach: tuple[Reach, ...] = Field(min_length=1)
    # With reach: ports, the apps with ports this group reaches, by name: each is its own grant (the broker that drives
    # the house is not given with the game server), and each port only over its own protocol.
    ports: tuple[str, ...] = ()


class RemoteAccess(Model):
    """`iluvatar:remoteAccess`: a subnet router advertising envoy-internal and the VIPs, split DNS for the internal
    zone, and the tailnet's policy, on Tailscale or a self-hosted Headscale."""

    flavour: Flavour
    tailscale: TailscaleSettings | None = None
    headscale: HeadscaleSettings | None = None
    # More to advertise than envoy-internal and the VIPs (inside network.lan or a VLAN, outside network.loadBalancerPool:
    # a NAS, a VLAN of cameras).
    routes: tuple[Cidr, ...] = ()
    access: tuple[RemoteGrant, ...] = Field(min_length=1)
