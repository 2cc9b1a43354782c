"""The field types every stack model module shares, and the base model they all derive from.

Addresses, networks, MACs, labels, DNS names, versions and disk paths, each checked as the user wrote it
and described for the editor schema (`iluvatar schema`): a pattern and an example. `stacks.model` and
`stacks.data_model` both build on these, so neither imports the other to get them.
"""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv4Network
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator
from pydantic.alias_generators import to_camel

from stacks import pins, releases
from stacks.boards import BOARDS
from stacks.errors import show

_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_HEX = re.compile(r"^[0-9a-f]{12}$")
# A version's numbers as release tags write them: no leading zero (SemVer 2.0.0 §2, "Numeric identifiers MUST NOT include
# leading zeroes"; no Kubernetes, Talos or k3s tag has one). The text is used as written (image tags, Image Factory URLs,
# INSTALL_K3S_VERSION), so `v1.35.01`, though it reads as 1.35.1, names a release that does not exist.
_NUMBER = r"(0|[1-9][0-9]*)"
_K3S_VERSION = re.compile(rf"^v1\.{_NUMBER}\.{_NUMBER}\+k3s{_NUMBER}$")
_SEMVER_V = re.compile(rf"^v{_NUMBER}\.{_NUMBER}\.{_NUMBER}$")
_LEADING_ZEROS = re.compile(r"(?<![0-9])0+(?=[0-9])")
# A SHA-256 written with what its tool prints around it: the BSD form's line, as `sha256sum --tag`, BSD's `sha256` and
# `shasum --tag` write it (`SHA256 (<file>) = <hash>`), OpenSSL's `openssl dgst -sha256` (`SHA2-256(<file>)= <hash>`
# from 3.0, `SHA256(<file>)= <hash>` before), and a digest's `sha256:<hash>` (an OCI digest's algorithm prefix).
_TAGGED_SHA256 = re.compile(
    r"^(?:(?P<tool>SHA2?-?256)\s*\((?P<file>.*)\)\s*=\s*(?P<line>[0-9a-fA-F]{64})|sha256:(?P<digest>[0-9a-fA-F]{64}))$", re.IGNORECASE
)
_DISK = re.compile(r"^/dev/[A-Za-z0-9][A-Za-z0-9/_.:-]*$")


def _ipv4(value: object) -> object:
    if isinstance(value, IPv4Address):
        return value
    if not isinstance(value, str):
        raise ValueError(f"{show(value)} is not an IPv4 address (write it as a string, e.g. 192.168.0.10)")
    try:
        return IPv4Address(value.strip())
    except ValueError:
        raise ValueError(f"{value} is not an IPv4 address") from None


def _cidr(value: object) -> object:
    if isinstance(value, IPv4Network):
        return value
    if not isinstance(value, str) or "/" not in value:
        raise ValueError(f"{show(value)} is not an IPv4 network in CIDR form (e.g. 192.168.0.0/24)")
    try:
        return IPv4Network(value.strip(), strict=True)
    except ValueError:
        try:
            loose = IPv4Network(value.strip(), strict=False)
        except ValueError:
            raise ValueError(f"{value} is not an IPv4 network in CIDR form (e.g. 192.168.0.0/24)") from None
        raise ValueError(f"{value} has host bits set; the network is {loose}") from None


def normalise_mac(value: object) -> object:
    """Accepts the usual spellings (aa:bb:.., AA-BB-.., aabb.ccdd.eeff, aabbccddeeff) and
    returns lower-case colon form, so one machine cannot appear under two spellings."""
    if not isinstance(value, str):
        raise ValueError(f"{show(value)} is not a MAC address (write it as a quoted string)")
    compact = re.sub(r"[:\-.]", "", value.strip().lower())
    separators_ok = re.fullmatch(
        r"[0-9a-fA-F]{2}([:-])(?:[0-9a-fA-F]{2}\1){4}[0-9a-fA-F]{2}|(?:[0-9a-fA-F]{4}\.){2}[0-9a-fA-F]{4}|[0-9a-fA-F]{12}",
        value.strip(),
    )
    if not separators_ok or not _HEX.match(compact):
        raise ValueError(f"{value} is not a MAC address (e.g. d8:3a:dd:12:34:56)")
    if compact == "000000000000":
        raise ValueError(f"{value} is the all-zero MAC address, which no network card has")
    if int(compact[0:2], 16) & 1:
        raise ValueError(f"{value} is a multicast MAC address; a network card's MAC is unicast")
    return ":".join(compact[i : i + 2] for i in range(0, 12, 2))


def _label(value: object) -> object:
    if not isinstance(value, str) or not _LABEL.match(value):
        raise ValueError(
            f"{show(value)} is not a valid name: use an RFC 1123 label "
            "(lower-case letters, digits and '-', 1 to 63 characters, not starting or ending with '-')"
        )
    return value


def _dns_name(value: object) -> object:
    if not isinstance(value, str):
        raise ValueError(f"{show(value)} is not a DNS domain name")
    name = value.strip().rstrip(".")
    labels = name.split(".")
    if len(name) > 253 or len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        lower = name.lower()
        if lower != name and all(_LABEL.match(label) for label in lower.split(".")):
            # DNS is case-insensitive, but its names are rendered as written where lower case is required (a Gateway API
            # listener's or route's hostname, a certificate's DNS name, a Kubernetes object's name): said as that.
            raise ValueError(
                f"{value} has upper-case letters: it is a DNS name, but one Iluvatar renders as written where names are lower "
                f"case only (Gateway API hostnames, certificates' names); write {lower}"
            )
        raise ValueError(f"{value} is not a DNS domain name (e.g. home.arpa or example.com)")
    return name


# A semantic version's pre-release (v1.14.0-beta.1, v1.35.0-rc.1): well-formed, but no release of the pins.
_PRE_RELEASE = re.compile(r"^v\d+\.\d+\.\d+-[0-9A-Za-z.-]+$")


# A URL's host written in brackets, after an optional scheme and user: https://[fd00::40]/...,
# ssh://git@[fd00::40]:2222/..., git@[fd00::40]:path. Brackets hold an IPv6 literal alone (RFC 3986 section 3.2.2);
# Python's urlsplit raises on an IPv4 address in them (3.11.4 on), so every URL key says so before anything splits it.
BRACKETED = re.compile(r"^(?:[a-z][a-z0-9+.-]*://)?(?:[^@/\[\]]*@)?\[(?P<ip>[^\]]*)\]")


def bracketed_ipv4(url: str) -> str | None:
    """Why `url` cannot be read, an IPv4 address written in brackets, with the URL to write instead; or None."""
    literal = BRACKETED.match(url)
    if literal is None:
        return None
    try:
        IPv4Address(literal["ip"])
    except ValueError:
        return None
    fixed = url[: literal.start("ip") - 1] + literal["ip"] + url[literal.end("ip") + 1 :]
    return f"{url}: an IPv4 address is written without brackets (they hold an IPv6 address alone); write {fixed}"


def unbracketed_url(value: object) -> object:
    """A URL key's value, or ValueError when its host is an IPv4 address in brackets (bracketed_ipv4)."""
    if not isinstance(value, str) or "://" not in value:
        return value
    if (why := bracketed_ipv4(value.strip())) is not None:
        raise ValueError(why)
    try:
        # What the rules read of every URL key: a malformed host in brackets or a port past 65535 raises here.
        parts = urlsplit(value.strip())
        _ = (parts.hostname, parts.port)
    except ValueError as e:
        raise ValueError(f"{value} is not a URL Python's urlsplit reads ({e}); write scheme://host[:port]/path") from None
    if parts.port == 0:
        # urlsplit reads port 0 (its range is 0-65535), but no client can dial it: TCP ports are 1 to 65535.
        raise ValueError(
            f"{value}: port 0 is not a port a client can dial (TCP ports are 1 to 65535); write the server's port, "
            f"or leave :0 out for the scheme's own"
        )
    return value


# A public https URL with more than its host (`https://tunnel.example.net/headscale`, `https://admin@vpn.example.com`):
# a user before the host, the host as the URL pattern takes it (stacks.remote_model._PUBLIC_URL: no `@`, so a user is
# never read as part of it), a port, then a path, a query or a fragment.
_URL_PATH = re.compile(r"^https://(?:([^\s/@?#]*)@)?([^\s/:@?#]+)(?::(\d{1,5}))?([/?#]\S*)?$")
PUBLIC_URL = "public https URL"


def _public_url_fix(value: str) -> str | None:
    """What an https URL with more than its host is told, or None. Headscale, whose URL the key is, serves its control
    endpoints from the root of its host: it has no path prefix (juanfont/headscale#1126, its pull request #1422 closed
    unmerged), and the Tailscale clients build some of their control URLs from the host alone (tailscale/tailscale#8639).
    A user before the host is no part of the name: Iluvatar takes the host from the URL as written for Headscale's
    certificate (tls_letsencrypt_hostname) and the subnet router's host alias (plans.remote_access.headscale_host), and
    the API server refuses a host alias that is no DNS name. A user and a password are stacks.credentials' to refuse. The
    fix names the host alone, which the URL pattern takes; a port other than 443 is dropped from it and said to be, as
    stacks.remote_access refuses one (TLS-ALPN-01 is asked on 443 only)."""
    found = _URL_PATH.match(value)
    if found is None:
        return None
    user, host, port, rest = found.groups()
    before, hashed, fragment = (rest or "").partition("#")
    path, asked, query = before.partition("?")
    extra = [f"a path ({path})"] if path not in ("", "/") else []
    extra += [f"a query (?{query})"] if asked else []
    extra += [f"a fragment (#{fragment})"] if hashed else []
    dropped = f" (without :{port}: Headscale's certificate is asked for on port 443 only)" if port not in (None, "443") else ""
    # The API server takes a host alias only as a DNS-1123 subdomain (kubernetes pkg/apis/core/validation/validation.go,
    # validateHostAliases: lower case, no trailing dot, no `_`, no empty label, no label starting or ending with `-`),
    # and Let's Encrypt refuses a trailing dot or a `_` in a certificate's name.
    named = host.removesuffix(".").lower()
    if not _host_alias(host):
        if not _host_alias(named):
            return (
                f"{value} has the host {host}, which is no DNS name the subnet router's host alias (Kubernetes takes lower-case "
                "letters, digits and `-` in labels split by single dots, each starting and ending with a letter or digit) or "
                "Headscale's certificate can be; write the name Headscale is reached by, e.g. https://vpn.example.com"
            )
        changed = [*(["upper-case letters"] if host.lower() != host else []), *(["a trailing dot"] if host.endswith(".") else [])]
        return (
            f"{value} has {' and '.join(changed)} in its host, which the subnet router's host alias cannot have (Kubernetes takes "
            f"a lower-case DNS name without a trailing dot) and Headscale's certificate is named by; write https://{named}{dropped}"
        )
    if user is None and not extra:
        return None
    why = []
    if user is not None:
        why.append(
            f"a user ({user}@) before its host, which is no part of Headscale's name: Iluvatar would give Headscale's "
            "certificate and the subnet router's host alias that name with the user in it, which neither Let's Encrypt nor "
            "the API server takes"
        )
    if extra:
        why.append(
            f"{' and '.join(extra)}: Headscale answers at the root of its host, never under a path, and the Tailscale clients "
            "reach it by the host alone"
        )
    return f"{value} has {'; and '.join(why)}; write https://{host}{dropped}"


def _host_alias(host: str) -> bool:
    """Whether the API server takes `host` as a host alias (a DNS-1123 subdomain)."""
    return len(host) <= 253 and all(_LABEL.match(label) for label in host.split("."))


# dnsmasq 2.90 src/option.c:3885-3932 (--dhcp-range's lease): `infinite`, written so (strcmp), or digits ending in
# at most one unit, s, m, h, d or w in either case (a switch on the last character), a bare number being seconds;
# anything else is "bad dhcp-range" (`deprecated` too is read, but marks a DHCPv6 range's addresses, not a lease). It
# multiplies the digits by the unit's seconds in a C int (`atoi(...) * fac`), and raises a lease under 120 s to 120 s.
_LEASE = re.compile(r"^([0-9]+)([smhdwSMHDW]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_INT_MAX = 2**31 - 1
LEASE_TIME_FORMS = "a whole number of seconds, minutes, hours, days or weeks (e.g. 3600, 45m, 12h, 7d, 1w), or infinite"


def _lease_time(value: object) -> object:
    """A lease time as dnsmasq reads it, written as it renders into dhcp-range: its unit in lower case and a bare
    number (seconds, to dnsmasq; a number to YAML unless quoted) with its s. Refused with the fix where dnsmasq would
    not read it, or would lend another lease than written (under its 2-minute floor, past its C int)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise ValueError(f"{show(value)} is not a lease time: write {LEASE_TIME_FORMS}")
    if value.strip() != value and (value.strip() == "infinite" or _LEASE.match(value.strip())):
        raise ValueError(f"{value!r} is not a lease time as dnsmasq reads it: it has a blank inside the quotes; write {value.strip()}")
    if value == "infinite":
        return value
    if value.lower() == "infinite":
        raise ValueError(f"{value} is not a lease time as dnsmasq reads it: it takes infinite in lower case only; write infinite")
    found = _LEASE.match(value)
    if found is None:
        raise ValueError(f"{show(value)} is not a lease time: write {LEASE_TIME_FORMS}")
    unit = found.group(2).lower()
    seconds = int(found.group(1)) * _UNITS[unit]
    if seconds < 120:
        raise ValueError(f"{value} is shorter than dnsmasq lends a lease (2 minutes, the least it takes): write 2m")
    if seconds > _INT_MAX:
        raise ValueError(f"{value} is longer than dnsmasq counts a lease's seconds (in a C int: {_INT_MAX}, about 68 years): write infinite")
    return f"{int(found.group(1))}{unit or 's'}"


def _pattern(regex: re.Pattern[str], example: str, what: str) -> Any:
    def check(value: object, info: ValidationInfo) -> object:
        if "URL" in what:
            unbracketed_url(value)
        if isinstance(value, int | float) and not isinstance(value, bool) and what.endswith(" version"):
            # `kubernetesVersion: 1.34` unquoted: the stack's YAML reader gives a number (stacks.load._go_yaml_number, as
            # Pulumi's yaml.v3 does), and a float drops a trailing zero (1.10 is 1.1), so the text written is lost.
            raise ValueError(
                f"{show(value)} is a number to YAML, not the text of a {what}: a version written unquoted is read as one, and "
                f'a trailing zero goes (1.10 is 1.1); quote it, as the release is named (e.g. "{example}")'
            )
        if isinstance(value, str) and value.strip() and not regex.match(value) and regex.match(value.strip()):
            # A blank inside the quotes is invisible in the message's value: said, with the value without it.
            ends = (
                "at its start and its end" if value[0].isspace() and value[-1].isspace() else "at its start" if value[0].isspace() else "at its end"
            )
            raise ValueError(f"{value!r} is not a well-formed {what}: it has a blank {ends}, inside the quotes; write {value.strip()}")
        if isinstance(value, str) and regex is _SEMVER_V and _PRE_RELEASE.match(value):
            raise ValueError(
                f"{value} is a pre-release of {what.removesuffix(' version')}; pre-releases are not supported: pick a release (e.g. {example})"
            )
        if isinstance(value, str) and what == "Kubernetes version" and (fix := _minor_beside_talos(value, info)) is not None:
            raise ValueError(fix)
        if isinstance(value, str) and regex in (_SEMVER_V, _K3S_VERSION) and (newest := _newest_patch(value, what)) is not None:
            product = what.removesuffix(" version")
            raise ValueError(
                f"{value} names a minor, not a release: {product} is installed by release (its images and downloads are tagged "
                f"with the patch); write the newest {product} {value.lstrip('v')} patch this Iluvatar knows, {newest}"
            )
        if isinstance(value, str) and regex in (_SEMVER_V, _K3S_VERSION) and (minor := _MINOR_ONLY.match(value)) is not None:
            # A minor this Iluvatar knows no release of (past its tables, or before them): the release it ships is one
            # every rule accepts (tests/stacks/test_releases.py), whichever Talos the stack names.
            product = what.removesuffix(" version")
            raise ValueError(
                f"{value} names a minor, not a release: {product} is installed by release (its images and downloads are tagged "
                f"with the patch), and this Iluvatar knows no 1.{minor.group(1)} release; write a full release, e.g. {example}, "
                "the one it ships"
            )
        if isinstance(value, str) and what == PUBLIC_URL and (fix := _public_url_fix(value)) is not None:
            raise ValueError(fix)
        if isinstance(value, str) and what == CHART_VERSION and not regex.match(value) and (fix := _chart_version_fix(value, example)):
            raise ValueError(fix)
        if isinstance(value, str) and regex in (_SEMVER_V, _K3S_VERSION) and not regex.match(value):
            unpadded = _LEADING_ZEROS.sub("", value)
            if unpadded != value and regex.match(unpadded):
                raise ValueError(
                    f"{value} has a number with a leading zero, which no {what.removesuffix(' version')} release tag has (SemVer 2.0.0 "
                    f"§2), and it is used as written (image tags, download URLs); write {unpadded}"
                )
        if isinstance(value, str) and regex in (_SEMVER_V, _K3S_VERSION) and not regex.match(value):
            # The release as written with what its tag adds left out: the tags start with v (github.com/siderolabs/talos,
            # kubernetes/kubernetes and k3s-io/k3s releases), and k3s tags each of its builds of a Kubernetes release
            # +k3sN, its first +k3s1.
            tagged = value if value.startswith("v") else f"v{value}"
            built = f"{tagged}+k3s1" if regex is _K3S_VERSION and _SEMVER_V.match(tagged) else tagged
            if regex.match(built):
                said = ["k3s tags each of its builds of a Kubernetes release +k3sN, its first +k3s1"] if built != tagged else []
                said += ["its release tags start with v"] if tagged != value else []
                raise ValueError(f"{value} is not a well-formed {what}: {', and '.join(said)}; write {built}")
        # A line of a SHA256SUMS file pasted whole (sha256sum's `<hash>  <name>`, `<hash> *<name>` in binary mode): the
        # hash is its first word.
        words = value.split() if isinstance(value, str) else []
        if what.startswith("SHA-256") and len(words) > 1 and regex.match(words[0].lower()):
            raise ValueError(f"{show(value)} is a line of a checksum file, the hash and its file name: drop the file name; write {words[0].lower()}")
        bsd = _TAGGED_SHA256.match(value.strip()) if isinstance(value, str) and what.startswith("SHA-256") else None
        if bsd is not None and bsd["line"] is not None:
            raise ValueError(
                f"{show(value)} is a line of a checksum file in the BSD form ({bsd['tool']} (file) = hash), its file name and the "
                f"hash: drop all but the hash; write {bsd['line'].lower()}"
            )
        if bsd is not None and bsd["digest"] is not None:
            raise ValueError(
                f"{show(value)} is the hash with its algorithm's prefix (a digest's sha256:): drop the prefix; write {bsd['digest'].lower()}"
            )
        if isinstance(value, str) and not regex.match(value) and value != value.lower() and regex.match(value.lower()):
            # A digest or an id copied in capitals: the example is another value's, the fix is this one's own spelling.
            raise ValueError(f"{value} is not a well-formed {what}: it is written in upper case; write it in lower case, {value.lower()}")
        if not isinstance(value, str) or not regex.match(value):
            raise ValueError(f"{show(value)} is not a well-formed {what} (e.g. {example})")
        return value

    return BeforeValidator(check, json_schema_input_type=_text(regex.pattern, example, f"a {what}"))


_MINOR_ONLY = re.compile(r"^v?1\.(\d+)$")
# What a chart's version key is called (stacks.model: arda.cilium.version, gitops.argocd.version).
CHART_VERSION = "Helm chart version"
_CHART_MINOR = re.compile(r"^v?(\d+)\.(\d+)$")
_CHART_TAGGED = re.compile(r"^v(\d+\.\d+\.\d+)$")


def _chart_version_fix(value: str, pinned: str) -> str | None:
    """Why a chart version written as a minor (`1.18`) or as a release tag (`v1.18.4`) is not one, with the version to
    write; or None. The chart is installed at exactly the version written (the Helm releases' `version`, components/cilium.py
    and components/gitops.py), and these charts' versions are bare SemVer (the pins, stacks.pins.CHARTS, have no v): a minor
    names no chart, and the one release of it this Iluvatar knows is the one it installs and is checked with, `pinned`."""
    tagged = _CHART_TAGGED.match(value)
    if tagged is not None:
        return f"{value} is the release's tag: the chart's versions have no v; write {tagged.group(1)}"
    minor = _CHART_MINOR.match(value)
    if minor is None:
        return None
    known = f"{minor.group(1)}.{minor.group(2)}."
    release = (
        f"the {known[:-1]} release this Iluvatar installs and is checked with, {pinned}"
        if pinned.startswith(known)
        else f"e.g. {pinned}, the release this Iluvatar installs and is checked with"
    )
    return f"{value} names a minor, not a release: the chart is installed at exactly the version written; write the full version, {release}"


def _minor_beside_talos(value: str, info: ValidationInfo) -> str | None:
    """arda.kubernetesVersion written as a minor (`1.30`) that the stack's arda.talosVersion (read before it: the model's
    field order) does not run, or that has no release this Iluvatar knows: the newest release that Talos runs, which the
    Talos rule (stacks.rules._arda_versions) and the unreleased rule accept both; else None, for _newest_patch."""
    found = _MINOR_ONLY.match(value)
    data = info.data if isinstance(info.data, dict) else {}
    talos = data.get("talos_version")
    if found is None or not isinstance(talos, str) or (row := releases.BY_MINOR.get(releases.minor_of(talos))) is None:
        return None
    minor = int(found.group(1))
    if row.kubernetes[0] <= minor <= row.kubernetes[1] and minor in releases.KUBERNETES_NEWEST:
        return None
    runs = f"Talos {talos} runs Kubernetes 1.{row.kubernetes[0]} to 1.{row.kubernetes[1]}"
    known = "" if minor in releases.KUBERNETES_NEWEST else f", this Iluvatar knows no 1.{minor} release,"
    if minor < row.kubernetes[0]:
        # Below the range is a cluster upgrading across Talos minors: its Kubernetes moves one minor at a time, so the
        # release to write is the lowest this Talos runs (stacks.rules._arda_versions' example), not the newest.
        fix = f"write {releases.lowest_kubernetes(talos)}, the lowest release it runs that this Iluvatar knows (a cluster moves one minor at a time)"
    else:
        fix = f"write {releases.newest_kubernetes(talos)}, the newest release it runs that this Iluvatar knows"
    return (
        f"{value} names a minor, not a release: Kubernetes is installed by release (its images and downloads are tagged with "
        f"the patch){known} and {runs}; {fix}"
    )


def _newest_patch(value: str, what: str) -> str | None:
    """The newest patch Iluvatar knows of the minor a version without its patch names (`v1.13`), or None: Talos's from
    stacks.releases.TALOS_MINORS, Kubernetes' from KUBERNETES_NEWEST, k3s's that release with its newest +k3sN."""
    found = _MINOR_ONLY.match(value)
    if found is None:
        return None
    minor = int(found.group(1))
    if what == "Talos version":
        row = releases.BY_MINOR.get((1, minor))
        return row.newest if row is not None else None
    kubernetes = releases.KUBERNETES_NEWEST.get(minor)
    if kubernetes is None or what not in ("Kubernetes version", "k3s version"):
        return None
    return kubernetes if what == "Kubernetes version" else f"{kubernetes}+k3s{max(releases.k3s_revisions(kubernetes))}"


def _text(pattern: str, example: str, description: str) -> Any:
    """What the editor schema (`iluvatar schema`) shows for a checked string: its pattern and an example."""
    return Annotated[str, Field(pattern=pattern, examples=[example], description=description)]


def _known_board(value: object) -> object:
    if value not in BOARDS:
        raise ValueError(f"{show(value)} is not a known board (known: {', '.join(sorted(BOARDS))})")
    return value


# The JSON Schema patterns are what an editor can check alone; the validators say more (host bits,
# multicast MACs, label lengths), and `iluvatar validate` is the authority.
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = rf"^{_OCTET}(\.{_OCTET}){{3}}$"
IPv4 = Annotated[IPv4Address, BeforeValidator(_ipv4, json_schema_input_type=_text(_IPV4, "192.168.0.10", "an IPv4 address"))]
Cidr = Annotated[
    IPv4Network,
    BeforeValidator(_cidr, json_schema_input_type=_text(_IPV4[:-1] + r"/(3[0-2]|[12]?[0-9])$", "192.168.0.0/24", "an IPv4 network in CIDR form")),
]
_HEX2 = "[0-9a-fA-F]{2}"
_MAC = rf"^({_HEX2}(:{_HEX2}){{5}}|{_HEX2}(-{_HEX2}){{5}}|[0-9a-fA-F]{{4}}(\.[0-9a-fA-F]{{4}}){{2}}|[0-9a-fA-F]{{12}})$"
Mac = Annotated[str, BeforeValidator(normalise_mac, json_schema_input_type=_text(_MAC, "d8:3a:dd:12:34:56", "a MAC address"))]
Label = Annotated[str, BeforeValidator(_label, json_schema_input_type=_text(_LABEL.pattern, "tirion", "an RFC 1123 label"))]
_DNS = r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.?$"
DnsName = Annotated[str, BeforeValidator(_dns_name, json_schema_input_type=_text(_DNS, "home.arpa", "a DNS domain name"))]
DiskPath = Annotated[str, _pattern(_DISK, "/dev/nvme0n1", "disk device path")]
K3sVersion = Annotated[str, _pattern(_K3S_VERSION, pins.K3S, "k3s version")]
TalosVersion = Annotated[str, _pattern(_SEMVER_V, pins.TALOS, "Talos version")]
KubernetesVersion = Annotated[str, _pattern(_SEMVER_V, pins.KUBERNETES, "Kubernetes version")]
# Unquoted digits are a number to YAML and a lease in seconds to _lease_time, so the editor schema takes both forms:
# the number within what dnsmasq lends as written (2 minutes up to its C int).
LeaseTime = Annotated[
    str,
    BeforeValidator(
        _lease_time,
        json_schema_input_type=Annotated[
            _text(r"^([0-9]+[smhdwSMHDW]?|infinite)$", "12h", "a lease time") | Annotated[int, Field(ge=120, le=_INT_MAX)],
            Field(description="a lease time: a number of seconds, or one with its unit, or infinite"),
        ],
    ),
]
BoardName = Annotated[str, BeforeValidator(_known_board, json_schema_input_type=Literal[tuple(sorted(BOARDS))])]


class Model(BaseModel):
    """Base of every config model: immutable, camelCase keys, unknown keys rejected."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        alias_generator=to_camel,
        validate_by_alias=True,
        validate_by_name=False,
    )

    @field_validator("*", mode="before")
    @classmethod
    def _no_yes_for_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        """`port: true`, `generate: true`: pydantic's lax mode reads YAML's true as 1 and false as 0, a number the user
        never wrote (a port 1, a 1-character password refused as "too small"); a key that takes a number refuses them."""
        if isinstance(value, bool) and info.field_name is not None and _takes_number(cls.model_fields[info.field_name].annotation):
            raise ValueError(f"{show(value)} is a yes/no value, not a number; write the number this key takes")
        return value


def _takes_number(annotation: Any) -> bool:
    """Whether a field's type takes an int or a float, and not a bool (`int | None` does; `bool | tuple[...]` does not)."""
    args = {annotation, *getattr(annotation, "__args__", ())}
    return bool(args & {int, float}) and bool not in args
