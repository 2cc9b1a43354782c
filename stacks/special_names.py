"""Special-use domain names (RFC 6761 and the IANA registry it founded) as the homelab's zones.

A zone the stack takes (network.domain, network.externalDomain, remoteAccess.headscale.baseDomain) under a suffix the
clients' own resolvers answer, or refuse, without asking any DNS server is refused with the zone to write: no record the
homelab serves there is ever looked up. The names of a zone (apps' hosts, identity's, machines') must be under a zone
of the homelab (stacks.apps, stacks.identity), so the zone is the one key said; a name outside every zone is refused by
those rules already, whatever its suffix.

Accepted: RFC 8375's `home.arpa`, the zone for home networks; and `.test` and `.example` (RFC 6761 sections 6.2 and
6.5), which resolvers, caching servers and applications "SHOULD NOT" treat as special, so the LAN's own DNS server
answers them as any private zone. A public zone under them, or under any private suffix, is refused where it must be
public (stacks.edge._private_zone, the Cloudflare zone).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pydantic.alias_generators import to_camel

from stacks.apps import under
from stacks.errors import Problem
from stacks.model import App, Identity, Network
from stacks.remote_model import RemoteAccess

# The suffix, and why no record under it is looked up.
SPECIAL: tuple[tuple[str, str], ...] = (
    # RFC 6761 section 6.3; systemd-resolved synthesizes 127.0.0.1 and ::1 for every name under it
    # (systemd-resolved.service(8), "Synthetic Records"), and browsers map it to loopback without asking DNS.
    ("localhost", "which resolvers and browsers answer with the asking machine's own loopback address (RFC 6761), never asking the LAN's DNS server"),
    # RFC 6762 section 3: "Any DNS query for a name ending with ".local." MUST be sent to the mDNS IPv4 link-local
    # multicast address"; macOS, iOS and nss-mdns (`mdns4_minimal [NOTFOUND=return]`) do so.
    ("local", "which phones and laptops resolve by multicast DNS only (RFC 6762), never by asking the LAN's DNS server"),
    # RFC 6761 section 6.4: name resolution APIs and libraries "SHOULD always return immediate negative responses".
    ("invalid", "which resolvers answer as a name that does not exist (RFC 6761), never asking the LAN's DNS server"),
    # RFC 7686 section 2: resolvers not speaking Tor "MUST" answer NXDOMAIN, applications "SHOULD" fail.
    ("onion", "Tor's, which resolvers answer as a name that does not exist (RFC 7686), never asking the LAN's DNS server"),
)


def special_use(name: str) -> tuple[str, str] | None:
    """The special-use suffix `name` is under (or is), and why no DNS server is asked for it; None for any other name."""
    lower = name.lower().rstrip(".")
    return next(((suffix, why) for suffix, why in SPECIAL if lower == suffix or lower.endswith(f".{suffix}")), None)


def home_arpa(name: str, suffix: str) -> str:
    """`name` with its special-use suffix replaced by RFC 8375's home.arpa (`lab` when nothing is left)."""
    return f"{name.lower().rstrip('.').removesuffix(suffix).rstrip('.') or 'lab'}.home.arpa"


def _moved(zone: str, names: Iterable[tuple[str, str]]) -> str:
    """What the fix of `zone` moves with it: the keys `names` (config path, name) holds under it, or ""."""
    held = [f"{path.removeprefix('iluvatar:')} {name}" for path, name in names if under(name, zone)]
    if not held:
        return ""
    more = f" and {len(held) - 2} more" if len(held) > 2 else ""
    return f", and move the names under it with it ({', '.join(held[:2])}{more})"


def check(network: Network | None, names: Iterable[tuple[str, str]]) -> list[Problem]:
    """network.domain and network.externalDomain under a special-use suffix. `names`: every other key holding a DNS name
    (config path, name), said as moved with the zone they are under."""
    if network is None:
        return []
    names = list(names)
    out: list[Problem] = []
    if (found := special_use(network.domain)) is not None:
        suffix, why = found
        out.append(
            Problem(
                "iluvatar:network.domain",
                f"{network.domain} is under .{suffix}, {why}; write {home_arpa(network.domain, suffix)} (RFC 8375, for home "
                f"networks){_moved(network.domain, names)}",
            )
        )
    external = network.external_domain
    if external is not None and (found := special_use(external)) is not None:
        suffix, why = found
        why = why.replace("the LAN's DNS server", "any DNS server")
        out.append(
            Problem(
                "iluvatar:network.externalDomain",
                f"{external} is under .{suffix}, {why}, so no one reaches the public zone; write a domain you registered "
                f"(e.g. example.com){_moved(external, names)}",
            )
        )
    return out


def named_keys(apps: Sequence[tuple[int, App]], identity: object, remote: object) -> list[tuple[str, str]]:
    """Every key written with a DNS name of a zone (config path, name): the apps' hosts, identity's, the MagicDNS base
    domain; what a zone's fix moves with it."""
    out = [(f"iluvatar:apps[{i}].host", a.host) for i, a in apps]
    if isinstance(identity, Identity):
        out += [(f"iluvatar:identity.hosts.{to_camel(f)}", h) for f, h in identity.hosts if isinstance(h, str)]
    if isinstance(remote, RemoteAccess) and remote.headscale is not None and remote.headscale.base_domain is not None:
        out.append(("iluvatar:remoteAccess.headscale.baseDomain", remote.headscale.base_domain))
    return out
