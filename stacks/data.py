"""Data safety: the rules on the apps' secrets, their backups and `iluvatar:backup`, each naming its config path.

- **Secrets** (`apps[].secrets`): a name once per app; `from` names an app of the registry that
  declares that secret itself; a secret the user sets has its value in `iluvatar:appSecrets`
  (`pulumi config set --secret --path 'iluvatar:appSecrets.<app>.<name>' <value>`), encrypted, and that
  key holds nothing else.
- **Backups** (`apps[].backup`, `iluvatar:backup`): a target that is an NFS export the plan can resolve
  or an S3 URL, with S3 credentials exactly when it is S3; schedules cron can parse; each volume on a
  StorageClass Arda has, with CSI snapshots unless the copy method is Direct; a claim once per namespace.

The models are `stacks.data_model`; what they become is `plans.secrets` and `plans.backup`.
"""

from __future__ import annotations

import calendar
import datetime
import functools
import itertools
import re
import socket
import unicodedata
import zoneinfo
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Any, Literal
from urllib.parse import SplitResult, urlsplit, urlunsplit

from stacks import pins, releases
from stacks import storage as storage_facts
from stacks.boards import AINUR_ROLES, ARDA_ROLES
from stacks.data_model import AppBackup, Backup, CopyMethod, Drill
from stacks.errors import Problem, UnsetSecret, show
from stacks.model import Ainur, App, Arda, Network, Node, Storage
from stacks.reach import Clients, multicast_name, private_tld, unreachable

BACKUP = "iluvatar:backup"
APP_SECRETS = "appSecrets"
S3_KEY_ID = "backupS3AccessKeyId"
S3_SECRET_KEY = "backupS3SecretAccessKey"  # noqa: S105 - the secret's config key, not a secret
# Classes whose CSI driver takes snapshots and clones here: Ceph's (ceph-csi, with the snapshot
# controller and the VolumeSnapshotClasses plans.backup installs). local-path has no CSI driver;
# csi-driver-nfs runs without its snapshotter (plans.storage.csi_nfs_values).
SNAPSHOT_CLASSES = frozenset({"ceph-block", "ceph-filesystem"})
# The classes whose CSI driver clones a volume (VolSync's Clone: a claim with the source claim as its dataSource): Ceph's
# RBD and CephFS drivers, and csi-driver-nfs, which advertises CLONE_VOLUME and copies the folder on the NAS
# (pkg/nfs/nfs.go:108, copyFromVolume in pkg/nfs/controllerserver.go:571 at v4.12.1). local-path is no CSI driver.
CLONE_CLASSES = SNAPSHOT_CLASSES | {"nfs"}


def app_path(i: int, field: str = "") -> str:
    return f"iluvatar:apps[{i}]" + (f".{field}" if field else "")


# --- The target --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Where backups go: an NFS export (`nfs://server/export`) or an S3 bucket (`s3://host/bucket/prefix`)."""

    kind: Literal["nfs", "s3"]
    host: str  # the NFS server as written, or the S3 endpoint's host[:port]
    path: str  # the NFS export, or the S3 bucket
    prefix: str = ""  # S3: a folder in the bucket ('' for its root)
    secure: bool = True  # S3: https (s3://) or plain http (s3+http://)

    @property
    def endpoint(self) -> str:
        return f"{'https' if self.secure else 'http'}://{self.host}"


_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_HOST = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$")
_EXPORT = re.compile(r"^/[^\s]*$")


def _masked(parts: SplitResult) -> str:
    """A URL as messages show it: its query's and fragment's text left out (parse_target)."""
    return urlunsplit(parts._replace(query="…" if parts.query else "", fragment="…" if parts.fragment else ""))


def parse_target(text: str) -> Target | str:
    """The target, or why it is neither an NFS export nor an S3 URL."""
    if (why := _other_tools_form(text)) is not None:
        return why
    parts = urlsplit(text.strip())
    if parts.query or parts.fragment:
        # A query or a fragment is never read here, and one written from a provider's or a presigned URL carries its keys
        # and signatures (secret_key=..., X-Amz-Signature=..., also after a `#`): messages show the URL with their text
        # left out.
        text = _masked(parts)
    example = "nfs://192.168.0.40/volume1/backups or s3://s3.example.com/bucket/folder"
    if parts.scheme == "nfs":
        if parts.netloc.endswith(":") and parts.hostname:
            return f"{text}: the colon after the server is mount's form (server:/export); in a URL the export follows the server: write nfs://{parts.hostname}{parts.path}"
        if not parts.hostname or not _EXPORT.match(parts.path or "") or parts.query or parts.fragment:
            return f"{text} is not an NFS export: write nfs://<server>/<export path> (e.g. {example})"
        return Target("nfs", parts.netloc, parts.path.rstrip("/") or "/")
    if parts.scheme == "s3+https":
        return (
            f"{text}: s3:// is S3 over HTTPS already (s3+http:// over plain HTTP), so there is no s3+https://: write s3://{parts.netloc}{parts.path}"
        )
    if parts.scheme in ("s3", "s3+http"):
        bucket, _, prefix = parts.path.lstrip("/").partition("/")
        if (why := _s3_form(text, parts.hostname or "", parts.port, bucket, prefix)) is not None:
            return why
        if bucket and not _BUCKET.match(bucket) and _BUCKET.match(bucket.lower()):
            return f"{text}: {bucket} is not an S3 bucket name, which is lower-case (S3's and MinIO's naming rules): write {bucket.lower()}, as the bucket is named"
        if parts.netloc and _HOST.match(parts.netloc) and bucket and not _BUCKET.match(bucket) and not parts.query and not parts.fragment:
            # The URL's shape is right: the bucket's name is what S3 refuses, said as that.
            fixed = re.sub(r"[^a-z0-9.-]+", "-", bucket.lower()).strip(".-")
            example = f" (e.g. {fixed})" if _BUCKET.match(fixed) else ""
            return (
                f"{text}: {bucket} is not an S3 bucket name, which is 3 to 63 lower-case letters, digits, '.' and '-', beginning "
                f"and ending with a letter or digit (S3's naming rules, which MinIO and Backblaze B2 follow): write the name of "
                f"a bucket that can exist{example}"
            )
        if parts.query or parts.fragment:
            # restic, rclone and the SDKs take no options in the URL here: plans.backup hands the endpoint and the bucket
            # to each client apart, so whatever the query says is dropped.
            bare = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
            if isinstance(parse_target(bare), Target):
                region = ", and the region goes in backup.region" if "region" in parts.query.lower() else ""
                return f"{text}: a query or fragment (after ? or #) is not read in a target{region}: write {bare}"
        if parts.netloc and _HOST.match(parts.netloc) and not bucket:
            return f"{text} names no bucket: write {parts.scheme}://{parts.netloc}/<bucket>[/<folder>]"
        if not parts.netloc or not _HOST.match(parts.netloc) or not _BUCKET.match(bucket) or parts.query or parts.fragment:
            return f"{text} is not an S3 URL: write s3://<host>[:port]/<bucket>[/<folder>] (e.g. s3://s3.example.com/bucket/folder)"
        return Target("s3", parts.netloc, bucket, prefix.strip("/"), secure=parts.scheme == "s3")
    if parts.scheme in ("https", "http") and parts.hostname:
        # A public provider answers HTTPS (plain http to one is refused by _plain_http_off_the_lan): s3:// for either.
        public = public_provider(parts.hostname) is not None
        scheme = "s3" if parts.scheme == "https" or public else "s3+http"
        hosted = _virtual_hosted(parts.hostname)
        if hosted is not None:
            return (
                f"{text} is the bucket's virtual-hosted address, an {parts.scheme} URL; an S3 target is the endpoint, then the bucket: "
                f"write {scheme}://{hosted['endpoint']}/{hosted['bucket']}{parts.path.rstrip('/')}"
            )
        over = "https" if scheme == "s3" else "plain http"
        over += ", which a public provider answers" if public and parts.scheme == "http" else ""
        return (
            f"{text} is an {parts.scheme} URL; an S3 target is written {scheme}://<host>[:port]/<bucket>[/<folder>] "
            f"({over}), e.g. {scheme}://{parts.netloc}{parts.path or '/<bucket>'}"
        )
    return f"{text} is neither an NFS export nor an S3 URL (e.g. {example})"


# A bucket's virtual-hosted address, <bucket>.<endpoint>, at the S3 services whose endpoints the rules know
# (`_SIGNING_REGIONS`, `_WASABI_HOSTS`, `_R2`), each of which answers a bucket in its host as well as in its path:
#   - AWS: <bucket>.s3.amazonaws.com, <bucket>.s3.<region>.amazonaws.com, <bucket>.s3-<region>...;
#   - Backblaze B2: <bucket>.s3.<region>.backblazeb2.com ("Call the S3-Compatible API": bucketname.s3.us-east-005...);
#   - Wasabi: <bucket>.s3.<region>.wasabisys.com, <bucket>.s3.wasabisys.com;
#   - Scaleway: <bucket>.s3.<region>.scw.cloud;
#   - Cloudflare R2: <bucket>.<account>[.<jurisdiction>].r2.cloudflarestorage.com. The endpoint's first label is the
#     account's id (32 hex digits), never a bucket: <account>.r2.cloudflarestorage.com alone is the endpoint.
_VIRTUAL_HOSTED = tuple(
    re.compile(rf"^(?P<bucket>[a-z0-9][a-z0-9.-]*?)\.(?P<endpoint>{endpoint})$")
    for endpoint in (
        r"s3[.-][a-z0-9.-]*amazonaws\.com",
        r"s3\.[a-z]{2}-[a-z]+-\d{3}\.backblazeb2\.com",
        r"s3(?:\.[a-z]{2}(?:-[a-z]+)?-\d)?\.wasabisys\.com",
        r"s3\.[a-z]{2}-[a-z]{3}\.scw\.cloud",
        r"[0-9a-f]{32}(?:\.[a-z]+)?\.r2\.cloudflarestorage\.com",
    )
)


def _virtual_hosted(host: str) -> re.Match[str] | None:
    """The bucket and the endpoint of a virtual-hosted address (`_VIRTUAL_HOSTED`), or None."""
    return next((m for pattern in _VIRTUAL_HOSTED if (m := pattern.match(host)) is not None), None)


# restic's own repository forms (`s3:<endpoint>/<bucket>`, `s3:http://...`; restic's docs, "Amazon S3") and mount's NFS form
# (`server:/export`): a user of those tools writes them so, and urlsplit would read them as something else.
_RESTIC_S3 = re.compile(r"^s3:(?!//)(?P<rest>\S+)$")
_MOUNT_NFS = re.compile(r"^(?P<server>[A-Za-z0-9][A-Za-z0-9.-]*):(?P<export>/(?!/)\S*)$")


def _other_tools_form(text: str) -> str | None:
    """Why a target is in restic's or mount's form, with the URL Iluvatar reads, or None."""
    restic = _RESTIC_S3.match(text.strip())
    if restic is not None:
        rest = restic["rest"]
        url = "s3+http://" + rest[len("http://") :] if rest.startswith("http://") else "s3://" + rest.removeprefix("https://")
        return f"{text} is restic's form (s3:<endpoint>/<bucket>); Iluvatar reads a URL, s3://<host>[:port]/<bucket>[/<folder>] (s3+http:// for plain http): write {url}"
    mount = _MOUNT_NFS.match(text.strip())
    if mount is not None:
        return f"{text} is mount's form (server:/export); Iluvatar reads a URL: write nfs://{mount['server']}{mount['export'].rstrip('/') or '/'}"
    return None


def _s3_form(text: str, host: str, port: int | None, bucket: str, prefix: str) -> str | None:
    """Why an S3 URL is in another tool's form, which this one reads differently, or None.

    The AWS CLI writes `s3://<bucket>/<folder>`, with no endpoint: read here, the bucket would be the host and the folder
    the bucket. A first part with no dot and no port is read as that form (an endpoint has a domain, an address or a
    port); a virtual-hosted address (`<bucket>.s3.<region>.amazonaws.com`) with no bucket after it, likewise."""
    hosted = _virtual_hosted(host)
    if hosted is not None:
        # With a path after it the path would be read as the bucket: the endpoint is never a bucket's own address.
        rest = f"/{bucket}{'/' + prefix if prefix else ''}" if bucket else ""
        return f"{text} is the bucket's virtual-hosted address; the bucket goes after the endpoint: write s3://{hosted['endpoint']}/{hosted['bucket']}{rest}"
    if host and "." not in host and port is None and host != "localhost":
        folder = f"/{bucket}{'/' + prefix if prefix else ''}" if bucket else ""
        return (
            f"{text} names no S3 endpoint: {host} reads as a bucket, as the AWS CLI writes it (s3://<bucket>/<folder>), and "
            f"Iluvatar reads the endpoint first, s3://<host>[:port]/<bucket>[/<folder>]; for AWS write "
            f"s3://s3.<region>.amazonaws.com/{host}{folder}, for a NAS its address and port (e.g. s3+http://192.168.0.40:9000/{host})"
        )
    return None


def nfs_server_problem(server: str, resolve: Callable[[str], IPv4Address | None], network: Network | None) -> str | None:
    """Why the plan cannot mount an NFS backup target's server, or None. `resolve`: the address the internal zone's
    records give a name (zone_address), or None. The mount is made by address, the plan resolving a name from the zone's
    records as plans.backup.nfs_server does, and nothing else: a backup must not depend on a resolver."""
    if _is_address(server) or resolve(server) is not None:
        # An address inside a range the homelab lends is refused by stacks.addresses, as every device's.
        return None
    where = f" {network.domain}" if network is not None else ""
    host, colon, port = server.rpartition(":")
    if colon and port.isdigit() and (_is_address(host) or resolve(host) is not None):
        # Kubernetes' NFS volume (and csi-driver-nfs) mounts `server:share` with mount.nfs's own port choice: a port
        # in the server is read as part of its name.
        return f"the server {server} has a port; Kubernetes' NFS mounts take none (NFS's port is the standard 2049): drop :{port}"
    return (
        f"the server {server} is not an address, nor a name in the internal zone{where} (the plan resolves there only the names "
        "it gives, and a backup must not depend on a resolver); write the NAS's IPv4 address"
    )


def zone_address(host: str, records: Mapping[str, IPv4Address], network: Network | None) -> IPv4Address | None:
    """The address the internal zone's records (plans.zone.records) give a server's name, or None: a trailing dot is the
    same name, fully qualified, and DNS names have no case; a single label is read under network.domain, as the Pis'
    search list asks it. The one lookup of a backup target's name, for the rules and the plan alike."""
    name = host.rstrip(".").lower()
    if "." not in name and network is not None:
        name = f"{name}.{network.domain.lower()}"
    return records.get(name)


# The names some crons take for months and days of the week (Sunday 0), and Quartz's `?` ("no specific value"): the
# schedule is read as numbers here, so a name or `?` is said with the number or `*` that means the same.
_CRON_NAMES = {
    "month": {m: str(k) for k, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)},
    "day of week": {d: str(k) for k, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))},
}


def _as_numbers(value: str, name: str) -> str:
    """A month or day-of-week field with robfig/cron's names (any case: "SUN", "Sun" and "sun" alike, doc.go and
    parser.go's `dow`/`months` maps at v3.0.1) written as the numbers it reads them as; another field as it is."""
    names = _CRON_NAMES.get(name, {})
    return re.sub(r"[A-Za-z]+", lambda m: names.get(m.group(0).lower(), m.group(0)), value) if names else value


def _robfig_reads(value: str, name: str) -> str:
    """A field as robfig/cron reads it, in Iluvatar's numbers: its names as numbers, and `?` (the base of an item) as `*`."""
    return re.sub(r"(^|,)\?", r"\1*", _as_numbers(value, name))


def robfig_items(value: str) -> str:
    """A field's list as robfig/cron reads it: it splits the field with strings.FieldsFunc at each comma (parser.go:238,
    getField at v3.0.1), which drops an empty item, so `0,,30` and `0,30,` run as `0,30`. A field of commas alone has no
    item and is kept as written (robfig would match nothing there: never run, refused)."""
    return ",".join(item for item in value.split(",") if item) or value


def _numbers_instead(fields: Sequence[str], name: str, volsync: bool, etcd: bool) -> str:
    """The fix for a field with names, `?` or an empty list item (`0,30,` with a blank after its comma): the schedule
    with them as numbers (or `*`) and without the empty item, when its readers take it (`volsync`, `etcd`: as
    cron_problem), or the field's forms."""
    names = _CRON_NAMES.get(name, {})
    at = [n for n, _, _ in _FIELDS].index(name)
    value = fields[at]
    fixed = "*" if value == "?" else re.sub(r"[A-Za-z]+", lambda m: names.get(m.group(0).lower(), m.group(0)), value)
    fixed = ",".join(item for item in fixed.split(",") if item)
    if fixed and re.fullmatch(r"\*|[0-9,/*-]+", fixed):
        taken = _taken(" ".join([*fields[:at], _forwards(fixed, name, fields), *fields[at + 1 :]]), volsync, etcd)
        if taken is not None:
            return f"write {taken}"
    return "write numbers (e.g. 0 3 * * *: 03:00 every day; Sunday is 0)"


def _forwards(field: str, name: str, fields: Sequence[str]) -> str:
    """A field of numbers with each range that runs backwards (MON-SUN read as 1-0, which robfig/cron refuses, parser.go
    getRange at v3.0.1) written as the values meant, round the field's end; `*` when they are the whole field and, for a
    day field, the other is `*` (where neither is, robfig runs on either's match: spec.go dayMatches, lines 179-188)."""
    _, low, high = next(f for f in _FIELDS if f[0] == name)
    values: set[int] = set()
    items = []
    for item in field.split(","):
        backwards = re.fullmatch(r"(\d+)-(\d+)(?:/(\d+))?", item)
        if backwards is None or int(backwards.group(1)) <= int(backwards.group(2)):
            items.append(item)
            continue
        wrapped = _wrapped(int(backwards.group(1)), int(backwards.group(2)), int(backwards.group(3) or 1), low, high)
        values.update(wrapped)
        items.append(",".join(str(v) for v in sorted(set(wrapped))))
    other_day = {"day of month": 4, "day of week": 2}.get(name)
    if values == set(range(low, high + 1)) and (other_day is None or fields[other_day] in ("*", "?")):
        return "*"
    return ",".join(items)


def _wrapped(start: int, end: int, step: int, low: int, high: int) -> list[int]:
    """The values a range meant to run past its field's end names (FRI-MON: 5, 6, 0, 1), every `step`th from its start
    as a step counts along a range (FRI-MON/2: Friday and Sunday)."""
    return [*range(start, high + 1), *range(low, end + 1)][::step]


def _is_address(text: str) -> bool:
    try:
        IPv4Address(text)
    except ValueError:
        return False
    return True


# A host of numbers alone (decimal, or hex as 0x…), one to four parts: no DNS name has an all-numeric last label.
_NUMBERS = re.compile(r"^(0x[0-9a-f]+|\d+)(\.(0x[0-9a-f]+|\d+)){0,3}$", re.IGNORECASE)


def numeric_host(host: str, curl: bool = False) -> str | None:
    """Why `host`, written as numbers, is no IPv4 address its clients read as written, with the fix; None for an address
    or a name. Go's net.ParseIP (net/ip.go, parseIPv4) takes four decimal parts of 0-255 without leading zeros, nothing
    else: k3s, restic, talos-backup, Alertmanager, Dex and Argo CD then look the text up as a name, which no resolver has.
    C's inet_aton reads it otherwise (hex, octal for a leading zero, fewer parts), and so does curl (`curl`: the Pi image
    builder's, 7.88.1, which dials 192.168.0.13 for 192.168.0.015): another machine, maybe, so a fix names each reading."""
    name = host.rstrip(".").lower()
    if not _NUMBERS.match(name):
        return None
    try:
        IPv4Address(name)
    except ValueError:
        pass
    else:
        return None
    parts = name.split(".")
    if len(parts) == 4 and all(p.isdigit() for p in parts):
        if not all(int(p) <= 255 for p in parts):
            return f"{host} is not an IPv4 address (a part above 255); write the server's IPv4 address"
        decimal = ".".join(str(int(p)) for p in parts)
        try:
            octal = str(IPv4Address(socket.inet_aton(name)))
        except OSError:
            octal = None  # an 8 or a 9 after a leading zero: inet_aton refuses it, and the text is looked up as a name
        if curl and octal is not None and octal != decimal:
            return (
                f"{host} has a part with a leading zero, which curl (the Pi image builder's) reads as octal, as C's inet_aton does: "
                f"it dials {octal}, not {decimal}; write {octal}, the server it would dial, or {decimal} if that is the server you meant"
            )
        if octal is not None and octal != decimal:
            return (
                f"{host} is not an IPv4 address as Go reads one (a part with a leading zero), and C's inet_aton would read a part with "
                f"a leading zero as octal, giving {octal}; write {decimal} if you meant the parts in decimal, or {octal} if in octal"
            )
        return f"{host} is not an IPv4 address (a part with a leading zero); write {decimal}"
    try:
        meant = f"; if the server is {IPv4Address(socket.inet_aton(name))} (as C's inet_aton reads it), write that"
    except OSError:
        meant = "; write the server's IPv4 address so"
    return f"{host} is not an IPv4 address as Go reads one (four decimal parts, a.b.c.d: no hex, no single number, no part left out){meant}"


def target_address(target: Target) -> IPv4Address | None:
    """The target's server when it is written as an address (an NFS server, an S3 endpoint's host), else None."""
    try:
        return IPv4Address(target.host.rsplit(":", 1)[0] if target.kind == "s3" else target.host)
    except ValueError:
        return None


def target_of(backup: Backup) -> Target:
    """The parsed target of a validated stack."""
    found = parse_target(backup.target)
    assert isinstance(found, Target), found
    return found


# --- Cron ----------------------------------------------------------------------------------------

# The schedule VolSync's CRD admits (spec.trigger.schedule's pattern, v0.16.0 api/v1alpha1/replicationsource_types.go:50),
# and each field's range as robfig/cron v3.0.1 bounds it (spec.go:22-50), the parser every reader of a rendered schedule
# uses: a CronJob's API server and controller (cron.ParseStandard), VolSync's controller, k3s's etcd snapshots. Day of
# week is 0-6 there (Sunday is 0 only): a 7 that crontab(5) takes is refused by the API server. tools/cron-check runs
# that parser; tests/stacks/test_cron.py holds the two equal. re.ASCII: the API server checks the pattern with Go's regexp,
# whose \d is [0-9] and \s [\t\n\f\r ] (go/src/regexp/syntax/perl_groups.go), where Python's, on text, take any Unicode
# digit and blank.
VOLSYNC_SCHEDULE = re.compile(r"^(@(annually|yearly|monthly|weekly|daily|hourly))|((((\d+,)*\d+|(\d+(\/|-)\d+)|\*(\/\d+)?)\s?){5})$", re.ASCII)
_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 6))
_MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@hourly")
# robfig's one descriptor VolSync's CRD pattern lacks (parser.go:400 at v3.0.1 reads it as @daily): a CronJob and k3s
# take it, a ReplicationSource's trigger does not.
_ROBFIG_ONLY = "@midnight"


def _seconds_first(text: str, fields: list[str]) -> str:
    """Six fields: Quartz's and Spring's cron, whose first field is the second (Quartz's CronExpression, Spring's
    CronExpression.parse: `second minute hour day-of-month month day-of-week`). robfig/cron's standard parser, VolSync's
    pattern and Iluvatar's own reading take five, from the minute, and run at second 0: the other five fields are the
    schedule meant when the seconds field is 0. Quartz's `?` (no day given) is `*` in five fields, which VolSync's pattern
    takes too; Quartz counts the days of the week from 1 for Sunday, five-field cron from 0, so a day named by number is
    the user's to check."""
    seconds, rest = fields[0], ["*" if f == "?" else f for f in fields[1:]]
    said = (
        f"{show(text)} is six fields, read as a leading seconds field (Quartz's and Spring's cron: second minute hour day-of-month month day-of-week)"
    )
    if seconds != "0":
        return (
            f"{said}, and {seconds} is not second 0: its readers here take five fields (minute hour day-of-month month "
            "day-of-week) and run only at second 0 of a minute; write five fields, e.g. '0 3 * * *'"
        )
    days = " (Quartz numbers the days of the week from 1 for Sunday, cron from 0: check the last field)" if any(c.isdigit() for c in rest[-1]) else ""
    return f"{said}: its readers here take five fields, from the minute, and run at second 0; write {' '.join(rest)}{days}"


def _not_ascii(text: str, volsync: bool, etcd: bool) -> str | None:
    """Why a schedule with a character outside ASCII (a no-break space copied from a web page, a full-width digit an IME
    typed) is refused, naming each such character, with the fix: the schedule as ASCII (a Unicode blank as a space, a
    Unicode digit as its 0-9, a full-width symbol as its ASCII one, an invisible format character dropped); None for ASCII,
    and for Unicode blanks in a schedule robfig/cron alone reads."""
    found = [(at, c) for at, c in enumerate(text, 1) if not c.isascii()]
    if not found:
        return None
    named = ", ".join(f"U+{ord(c):04X} {unicodedata.name(c, 'an unnamed character')} at position {at}" for at, c in found)
    if volsync:
        # The API server checks VOLSYNC_SCHEDULE's pattern with Go's regexp, ASCII's \d and \s only (see there).
        why = (
            "VolSync's CRD pattern (api/v1alpha1/replicationsource_types.go:50 at v0.16.0), which the API server checks with Go's "
            "regexp, where \\d is [0-9] and \\s [\\t\\n\\f\\r ], takes ASCII digits and blanks only, so the ReplicationSource is "
            "refused and the app is not backed up"
        )
    elif all(c.isspace() for _, c in found):
        # robfig/cron splits the fields with strings.Fields, at every Unicode blank (parser.go:114 at v3.0.1): k3s and
        # the API server read the schedule as meant.
        return None
    else:
        reader = "k3s's etcd snapshots and talos-backup's CronJob refuse" if etcd else "the CronJob refuses"
        why = f"robfig/cron reads its numbers with strconv.Atoi, ASCII digits only (parser.go:331-332 at v3.0.1), so {reader} it"
    return f"{show(text)}: {named} {'is' if len(found) == 1 else 'are'} not ASCII: {why}; {_as_ascii(text, volsync, etcd)}"


def _as_ascii(text: str, volsync: bool, etcd: bool) -> str:
    """The fix of a schedule with characters outside ASCII: the schedule as ASCII when that validates, or the fix its
    own problem then gives, else what to type."""

    def ascii_of(c: str) -> str:
        if c.isascii():
            return c
        if c.isspace():
            return " "
        if (digit := unicodedata.digit(c, None)) is not None:
            return str(digit)
        folded = unicodedata.normalize("NFKC", c)  # full-width ＊ ／ ， － ＠ and letters as their ASCII
        return "" if unicodedata.category(c) == "Cf" else folded  # a zero-width space, a byte-order mark

    fixed = "".join(ascii_of(c) for c in text)
    taken = _taken(fixed, volsync, etcd) if fixed.isascii() else None
    return f"write {taken}" if taken is not None else "type it again in ASCII (digits 0-9, one space between fields, e.g. 0 3 * * *)"


def _taken(schedule: str, volsync: bool, etcd: bool) -> str | None:
    """`schedule` when its readers take it, else the fix its own problem gives when they take that, else None: a fix
    said for one mistake must not be refused for another."""
    problem = cron_problem(schedule, volsync=volsync, etcd=etcd)
    if problem is None:
        return schedule
    then = problem.rsplit("; write ", 1)[-1]
    return then if "; write " in problem and cron_problem(then, volsync=volsync, etcd=etcd) is None else None


def _unknown_zone(zone: str) -> bool:
    """Whether `zone` is no name of the tz database, as far as this machine's copy of it says (none: not judged). Go's
    time.LoadLocation reads "UTC" and "Local" itself (time/zoneinfo.go LoadLocation), and an empty name as UTC."""
    if zone in ("", "UTC", "Local"):
        return False
    try:
        zoneinfo.ZoneInfo(zone)
    except zoneinfo.ZoneInfoNotFoundError:
        return bool(zoneinfo.available_timezones())
    except ValueError:
        return True
    return False


def _in_utc(zone: str, rest: str) -> str:
    """The five fields `rest`, written for `zone`'s clock, as UTC (`, 10 23 * * *` for Africa/Nairobi's 10 2 * * *),
    where that is one schedule: a zone with one offset over the two years the rules reckon (none with daylight saving),
    a time of one minute and hour, and no day of the month or month a day's shift would move. Else what to mind."""
    try:
        where = zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return ""
    offsets = {datetime.datetime(year, month, 1, tzinfo=where).utcoffset() for year in (2026, 2027) for month in range(1, 13)}
    if len(offsets) != 1:
        return f" ({zone} keeps daylight saving, so its clock is an hour off one UTC time for part of the year)"
    (offset,) = offsets
    assert offset is not None
    if not offset:
        return f" ({zone} keeps UTC's time: {rest})"
    fields = rest.split()
    if len(fields) != len(_FIELDS) or not (fields[0].isdigit() and fields[1].isdigit()) or fields[2:4] != ["*", "*"]:
        return ""
    minutes = int(fields[1]) * 60 + int(fields[0]) - int(offset.total_seconds()) // 60
    shift, minutes = divmod(minutes, 24 * 60)
    days = fields[4]
    if shift and days != "*":
        if not all(d.isdigit() and int(d) <= 6 for d in days.split(",")):
            return ""
        days = ",".join(str((int(d) + shift) % 7) for d in sorted(days.split(","), key=lambda d: (int(d) + shift) % 7))
    utc = f"{minutes % 60} {minutes // 60} * * {days}"
    moved = {-1: " the day before", 1: " the day after"}.get(shift, "")
    return f" ({int(fields[1]):02d}:{int(fields[0]):02d} in {zone} is {minutes // 60:02d}:{minutes % 60:02d} UTC{moved}: {utc})"


def cron_problem(text: str, volsync: bool = True, etcd: bool = False) -> str | None:
    """Why its consumers cannot parse `text`, or None: robfig/cron's standard parser always (a CronJob, k3s's etcd
    snapshots), and VolSync's CRD pattern too when `volsync` (a volume's ReplicationSource trigger). `etcd`: the etcd
    snapshots' schedule (k3s, talos-backup's CronJob, the drill's clock), else a CronJob's."""
    # Read as written: the scaffold renders the text as typed, and neither consumer trims it. robfig reads a text that
    # starts with @ as a descriptor, whole (parser.go:106 and parseDescriptor's exact match, :365-433 at v3.0.1), and
    # VolSync's pattern takes at most one blank after each field.
    if (foreign := _not_ascii(text, volsync, etcd)) is not None:
        return foreign
    if text in _MACROS or (text == _ROBFIG_ONLY and not volsync):
        return None
    spec = text.strip()
    if spec == _ROBFIG_ONLY and volsync:
        return (
            f"{show(text)}: robfig/cron (a CronJob's) reads it as @daily, but VolSync's CRD takes only @yearly, @annually, @monthly, "
            "@weekly, @daily and @hourly (api/v1alpha1/replicationsource_types.go:50 at v0.16.0); write @daily"
        )
    if spec in (*_MACROS, _ROBFIG_ONLY):
        return f"{show(text)}: robfig/cron reads a descriptor whole, blanks included, and knows no {text!r}; write {spec}"
    if spec.startswith("@every "):
        # robfig's interval (parser.go:424-433, constantdelay.go at v3.0.1) counts from the time its reader passes, not
        # from a time of day: VolSync's pattern refuses it, and the drill's bound on a snapshot's age cannot be told from it.
        reader = (
            "VolSync's CRD takes only @yearly, @annually, @monthly, @weekly, @daily and @hourly"
            if volsync
            else (
                "robfig/cron takes it, but counts it from when its reader started counting (k3s's start, a CronJob's creation or "
                "last run), not from a time of day, so when a snapshot is due (the drill's bound on its age) cannot be told from it"
            )
        )
        return f"{show(text)}: {reader}; write the times as five fields (e.g. 0 */6 * * * for every 6 hours)"
    if spec.startswith("@"):
        known = (
            "VolSync's CRD takes @yearly, @annually, @monthly, @weekly, @daily and @hourly"
            if volsync
            else "robfig/cron takes @yearly, @annually, @monthly, @weekly, @daily, @midnight and @hourly"
        )
        return f"{show(text)}: {spec} is not a descriptor ({known}); write one, or five fields (e.g. 0 3 * * *)"
    if spec.startswith(("TZ=", "CRON_TZ=")):
        zone, _, rest = spec.partition(" ")
        if _unknown_zone(zone.partition("=")[2]):
            # robfig/cron loads the zone with time.LoadLocation and refuses a name it does not find (parser.go:94-103 at
            # v3.0.1): VolSync's controller and k3s alike.
            return (
                f"{show(text)}: {zone.partition('=')[2]} is no time zone of the tz database, and robfig/cron, which reads the "
                f"schedule, refuses it (parser.go:94-103 at v3.0.1); drop {zone} and write the times in UTC"
            )
        reader = (
            # VolSync's CRD pattern has its `|` outside the anchors (replicationsource_types.go:50 at v0.16.0), so the API
            # server's regexp finds the five fields at the text's end and admits the prefix, and its controller's
            # robfig/cron parser reads the zone (parser.go:94-103 at v3.0.1): VolSync would honour it (tools/cron-check).
            # Iluvatar reads the five fields alone, as UTC: a day's runs, the gaps between them, and the newest age a
            # restore drill allows a backup (newest_within, the drill's MAX_AGE), which a zone with daylight saving
            # moves by an hour twice a year.
            "VolSync takes a time-zone prefix (its CRD pattern admits it, and its controller's robfig/cron reads the zone), but "
            "Iluvatar reads an app's backup schedule as five fields in UTC: the restore drill's bound on the newest backup's "
            "age and validate's checks of the schedule are reckoned from them"
            if volsync
            # Iluvatar's CronJobs set no spec.timeZone (plans.drill, plans.backup): they run in UTC.
            else (
                'Kubernetes refuses a time zone in a CronJob\'s schedule ("cannot use TZ or CRON_TZ in schedule", '
                "pkg/apis/batch/validation/validation.go:843 at v1.35.1), and Iluvatar's CronJobs set no spec.timeZone: they run in UTC"
                if not etcd
                else (
                    "k3s's robfig/cron takes a time-zone prefix, but Iluvatar reads this schedule as five fields in UTC too: its retention and "
                    "drill checks, and with an S3 target talos-backup's CronJob, where Kubernetes refuses a time zone "
                    "(pkg/apis/batch/validation/validation.go:843 at v1.35.1) and the drill's clock"
                )
            )
        )
        utc = _in_utc(zone.partition("=")[2], rest) if cron_problem(rest, volsync=volsync, etcd=etcd) is None else ""
        return f"{show(text)}: {reader}; drop {zone} and write the times in UTC{utc}"
    fields = spec.split()
    if len(fields) == len(_FIELDS) + 1:
        return _seconds_first(text, fields)
    if len(fields) != len(_FIELDS):
        return f"{show(text)} is not a cron schedule: five fields (minute hour day-of-month month day-of-week), e.g. '0 3 * * *', or @daily"
    reading = text
    if not volsync:
        # robfig/cron takes month and day names (a CronJob's API server and controller, k3s's etcd-snapshot-schedule-cron),
        # and `?` as `*` in any field (parser.go getRange: `lowAndHigh[0] == "*" || lowAndHigh[0] == "?"` at v3.0.1, the
        # star bit included); the text is rendered as written for it to read them, and Iluvatar's own reckoning reads them
        # as its numbers and `*`.
        fields = [_robfig_reads(value, name) for value, (name, _, _) in zip(fields, _FIELDS, strict=True)]
        parts = re.split(r"(\s+)", text)
        words = [i for i, part in enumerate(parts) if part and not part.isspace()]
        for i, (name, _, _) in zip(words, _FIELDS, strict=True):
            parts[i] = _robfig_reads(parts[i], name)
        reading = "".join(parts)
    # An empty list item (`0,,30`, `0,30,` with a blank after its comma) is dropped by robfig/cron (robfig_items), the
    # parser of a CronJob, k3s and VolSync's controller alike: read without it, and warned of (stacks.warn._empty_items).
    # Only VolSync's CRD pattern may refuse it, and is asked below on the text as written.
    written = fields
    fields = [robfig_items(value) for value in fields]
    for at, (value, (name, low, high)) in enumerate(zip(fields, _FIELDS, strict=True)):
        for item in value.split(","):
            base, _, step = item.partition("/")
            if step and (not step.isdigit() or int(step) == 0):
                return f"{show(text)}: the {name} field's step {step} is not a whole number above 0; {_stepless(fields, name, item, base, low, volsync, etcd)}"
            if step and int(step) > high - low:
                # robfig/cron (parser.go:288-317, getRange at v3.0.1) and Kubernetes' copy of it take a step past the field's
                # span and match only the range's first value: */90 in the minute field is minute 0, once an hour.
                unit = {"minute": "an hour", "hour": "a day", "day of month": "a month", "month": "a year", "day of week": "a week"}[name]
                return (
                    f"{show(text)}: the {name} field's step {step} is past its {low}-{high}, so cron matches only the first "
                    f"{name} of {item} and runs once {unit}, not every {step}; write a step of at most {high - low}, or the {name}s as a list"
                )
            bounds = [] if base == "*" else base.split("-")
            if base != "*" and (len(bounds) > 2 or not all(b.isdigit() for b in bounds)):
                if volsync and name in _CRON_NAMES and all(b.isalpha() and b.lower() in _CRON_NAMES[name] for b in bounds):
                    # VolSync's CRD pattern (api/v1alpha1/replicationsource_types.go:50 at v0.16.0) takes digits, *, /, -
                    # and , only: the API server refuses the ReplicationSource.
                    return (
                        f"{show(text)}: the {name} field {written[at]} is a name, which VolSync's CRD does not take (its pattern has "
                        f"digits, *, /, - and , only: api/v1alpha1/replicationsource_types.go:50 at v0.16.0); {_numbers_instead(fields, name, volsync, etcd)}"
                    )
                return f"{show(text)}: the {name} field {written[at]} is not a number, a range, a list or */step; {_numbers_instead(fields, name, volsync, etcd)}"
            for bound in bounds:
                if name == "day of week" and int(bound) == 7:
                    # robfig/cron's day of week runs 0-6 (spec.go:40 at v3.0.1), and every consumer parses with it: the
                    # message names the schedule's own.
                    return f"{show(text)}: 7 is outside the day of week field's 0-6 ({_sunday_readers(volsync, etcd)}); write {_sunday_as_0(fields)}"
                if not low <= int(bound) <= high:
                    # The hour 24 and the minute 60 of a clock are the next day's 0 and the next hour's 0; another bound
                    # past the field is said as the field's nearest.
                    near = 0 if (name, int(bound)) in (("hour", 24), ("minute", 60)) else min(max(int(bound), low), high)
                    why = {
                        ("hour", 0): " (midnight is hour 0)",
                        ("minute", 0): " (minute 60 is the next hour's 0)",
                        ("day of month", 1): " (days of the month count from 1)",
                        ("month", 1): " (months count from 1)",
                    }.get((name, near), "")
                    fixed = "-".join(str(near) if b == bound else b for b in bounds)
                    fix = _field_instead(fields, name, item, fixed)
                    # The nearest month can leave a schedule that runs months apart (13 as 12: December alone), which the
                    # rare-months warning (stacks.warn._rare_months) then says with its own fix: that fix is said here. Its
                    # weekday reading (the fourth field as the fifth) is not: the number written was no weekday's either.
                    nearest = fix.removeprefix("write ")
                    rare = rare_months(nearest, BACKUP_GAP if volsync or etcd else DRILL_GAP, volsync=volsync, etcd=etcd)
                    if rare is not None:
                        every = _taken(" ".join([*fields[:3], "*", fields[4]]), volsync, etcd)
                        meant = rare.fix if not rare.weekday and "write " in rare.fix else f"to run in every month, write {every}" if every else ""
                        if meant:
                            fix = f"{nearest} would run only in {rare.shown}; {meant}"
                    return f"{show(text)}: {bound} is outside the {name} field's {low}-{high}{why}; {fix}"
            if len(bounds) == 2 and int(bounds[0]) > int(bounds[1]):
                # robfig/cron refuses a range whose start is past its end (parser.go getRange at v3.0.1, "beyond end of
                # range"); one meant to wrap past the field's end is its values as a list.
                wrapped = _wrapped(int(bounds[0]), int(bounds[1]), int(step or 1), low, high)
                listed = ",".join(str(v) for v in sorted(set(wrapped)))
                fix = _field_instead(fields, name, item, listed)
                other_day = {"day of month": 4, "day of week": 2}.get(name)
                if set(wrapped) == set(range(low, high + 1)) and (other_day is None or fields[other_day] in ("*", "?")):
                    # The range wraps round the whole field (MON-SUN): that is `*`. A day field only beside a `*` in the
                    # other: robfig/cron runs on either day field's match when neither is a star (spec.go dayMatches,
                    # lines 179-188 at v3.0.1), so there `*` would narrow what runs.
                    at = [n for n, _, _ in _FIELDS].index(name)
                    fix = f"write {' '.join([*fields[:at], '*', *fields[at + 1 :]])}"
                return f"{show(text)}: the {name} range {base} runs backwards (cron takes no range past the field's end); {fix}"
    # VolSync's CRD pattern is a ReplicationSource's alone: robfig/cron, which k3s and a CronJob read, takes a range with
    # a step ("3-59/15", robfig/cron v3.0.1 doc.go and parser.go getRange) wherever the pattern does not. The API server
    # matches the pattern anywhere in the text (Go's regexp, unanchored), and its `\s?` lets two fields run together, so
    # 0-23/4 passes as 0-2 and 3/4: judged as it judges, on the text as written.
    if volsync and not VOLSYNC_SCHEDULE.search(reading):
        emptied = [(value, name) for value, read, (name, _, _) in zip(written, fields, _FIELDS, strict=True) if value != read]
        if emptied and VOLSYNC_SCHEDULE.search(" ".join(fields)):
            # The pattern takes a list as numbers between commas, and the API server finds its five fields anywhere in the
            # text (see above): an empty item passes only where five fields follow it (`0,,30 2 * * *` as `30 2 * * *`,
            # which VolSync's controller, robfig, reads as 0,30), and anywhere else the ReplicationSource is refused.
            value, name = emptied[0]
            dropped = _taken(" ".join(fields), volsync, etcd)
            return (
                f"{show(text)}: the {name} field {value} has an empty item (a comma with nothing on one side), which robfig/cron "
                "drops (parser.go:238 at v3.0.1) but VolSync's CRD refuses (its pattern takes a list as numbers between commas, "
                f"api/v1alpha1/replicationsource_types.go:50 at v0.16.0); {f'write {dropped}' if dropped else 'remove the comma'}"
            )
        if VOLSYNC_SCHEDULE.search(" ".join(fields)):
            # A blank before the first field passes the pattern's second branch; two blanks between fields pass nowhere.
            return (
                f"{show(text)}: VolSync's CRD refuses more than one blank between two fields (its pattern allows one, "
                f"api/v1alpha1/replicationsource_types.go:50 at v0.16.0); write {' '.join(fields)}"
            )
        return (
            f"{show(text)}: VolSync's CRD takes a number, a list of numbers, a range, n/step or */step in each field (its pattern, "
            f"api/v1alpha1/replicationsource_types.go:50 at v0.16.0), not {spec}; write {_as_volsync_lists(fields)}"
        )
    return _often_or_never(text, fields)


_VOLSYNC_FIELD = re.compile(r"^((\d+,)*\d+|\d+[/-]\d+|\*(/\d+)?)$", re.ASCII)  # as VOLSYNC_SCHEDULE


def _as_volsync_lists(fields: Sequence[str]) -> str:
    """The schedule with each field VolSync's pattern refuses (a range with a step, a list holding a range or a step)
    written as the values robfig/cron matches there, as a list: from each range's start, every step, to its end."""
    out = []
    for value, (_, low, high) in zip(fields, _FIELDS, strict=True):
        if _VOLSYNC_FIELD.match(value):
            out.append(value)
            continue
        values: set[int] = set()
        for item in value.split(","):
            base, _, step = item.partition("/")
            first, _, last = base.partition("-")
            start = low if first == "*" else int(first)
            end = high if first == "*" or (step and not last) else int(last or first)
            values.update(range(start, end + 1, int(step or 1)))
        out.append(",".join(str(v) for v in sorted(values)))
    return " ".join(out)


def _sunday_readers(volsync: bool, etcd: bool) -> str:
    """Who reads a schedule's day of week as 0-6 (`cron_problem`): the etcd snapshots' consumers, VolSync, or a CronJob."""
    if etcd:
        return "k3s's etcd-snapshot-schedule-cron and the talos-backup CronJob, both parsed by robfig/cron, read Sunday as 0 only"
    return "VolSync reads Sunday as 0 only" if volsync else "a Kubernetes CronJob reads Sunday as 0 only"


def _stepless(fields: Sequence[str], name: str, item: str, base: str, low: int, volsync: bool, etcd: bool) -> str:
    """The fix of an item whose step is not a whole number above 0 (`*/0`): the item without its step, unless that is
    refused too (`*/0` in the minute field is `*`, every minute), then its first value alone (`0 * * * *`, once an hour)."""
    first = str(low) if base in ("*", "?") else base.split("-")[0]
    for fixed in dict.fromkeys((base, first)):
        fix = _field_instead(fields, name, item, fixed)
        if cron_problem(fix.removeprefix("write "), volsync=volsync, etcd=etcd) is None:
            return fix
    return _field_instead(fields, name, item, first)  # another field's problem: said once this one is fixed


def _field_instead(fields: Sequence[str], name: str, item: str, fixed: str) -> str:
    """The fix of one item of a field: the schedule with `item` written as `fixed`."""
    at = [n for n, _, _ in _FIELDS].index(name)
    field = ",".join(fixed if part == item else part for part in fields[at].split(","))
    return f"write {' '.join([*fields[:at], field, *fields[at + 1 :]])}"


def _sunday_as_0(fields: list[str]) -> str:
    """The schedule with crontab(5)'s Sunday 7 read as robfig's 0: the days as a plain list (VolSync's pattern takes a list
    or one range, not both), or `*` for every day (`1-7`, `0-7`)."""
    days: set[int] = set()
    try:
        for item in fields[4].split(","):
            base, _, step = item.partition("/")
            low, _, high = base.partition("-")
            first = 0 if base == "*" else int(low)
            last = 6 if base == "*" else int(high or (7 if step else low))
            days.update(d % 7 for d in range(first, last + 1, int(step or 1)))
    except ValueError:
        return "Sunday as 0"  # another item is malformed too: said once this one is fixed
    field = "*" if len(days) == 7 else ",".join(str(d) for d in sorted(days))
    return " ".join([*fields[:4], field])


# The days each month has in every year (February without its leap day).
_MONTH_DAYS = {1: 31, 2: 28, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30, 10: 31, 11: 30, 12: 31}


def _often_or_never(text: str, fields: list[str]) -> str | None:
    """A schedule the parser takes that is not what a backup or a drill means: a star in the minute field runs it every
    minute (`* 6 * * 0`, meant as 06:00, runs 60 times); day fields that never meet (`0 3 31 2 *`) never run it, and the
    CronJob controller then reports the schedule invalid (pkg/controller/cronjob/utils.go:125-131 at v1.35.1)."""
    minutes, _ = _cron_field(fields[0], 0, 59)
    if len(minutes) == 60:
        hours, hour_star = _cron_field(fields[1], 0, 23)
        rest = " ".join(fields[1:])
        if hour_star or len(hours) == 24:
            return f"{show(text)}: the minute field {fields[0]} runs it every minute, all day; write a minute (e.g. 0 {rest} for once an hour)"
        when = f"hour {min(hours)}" if len(hours) == 1 else f"hours {','.join(str(h) for h in sorted(hours))}"
        once = f"once at {min(hours):02d}:00" if len(hours) == 1 else "once in each of those hours"
        return f"{show(text)}: the minute field {fields[0]} runs it every minute of {when}, {60 * len(hours)} times in a row; to run it {once}, write 0 {rest}"
    if _run_days(fields) < 2:
        # The day every month of the month field has (February's 28: its 29th comes once in four years), as the fix.
        months, _ = _cron_field(fields[3], 1, 12)
        last = min(_MONTH_DAYS[m] for m in months) if months else 28
        fix = " ".join([*fields[:2], str(last), *fields[3:]])
        # That day in those months alone runs months apart (the months without a day 30 or 31 are at most February,
        # April, June, September and November: 92 days from November's to February's): rarer than a backup or a drill
        # means (BACKUP_GAP, DRILL_GAP; warned by stacks.warn._rare_months), so the fix runs every month, on a day every
        # month has, and the named months' reading is said beside it.
        monthly = " ".join([*fields[:2], "28", "*", *fields[4:]])
        names = [calendar.month_name[m] for m in sorted(months)]
        named = f"{', '.join(names[:-1])} and {names[-1]}" if len(names) > 1 else names[0]
        return (
            f"{show(text)}: its day of month and month never meet in 2026 and 2027 (e.g. 31 in February, 29 February), so it "
            f"never runs; each of its months has a day {last} every year, but {fix} runs only in {named}, up to "
            f"{longest_gap(fix).days} days apart, so every month is likely meant; write {monthly}"
        )
    return None


# --- The rules -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    """What the data rules need of the rest of the stack (None: absent or broken)."""

    apps: Sequence[tuple[int, App]]
    backup: Backup | None
    backup_set: bool
    storage: Storage | None
    nodes: Sequence[tuple[int, Node]]
    nodes_complete: bool  # every node parsed: the classes Arda has are known
    arda: Arda | None
    ainur: Ainur | None
    network: Network | None
    gitops_set: bool
    secrets: Collection[str]  # the secret keys present (e.g. backupS3AccessKeyId)
    # iluvatar:appSecrets as read: app -> name -> True when encrypted (None: the key is absent).
    app_secret_values: Mapping[str, Mapping[str, bool]] | None = None
    app_secrets_broken: str | None = None  # why iluvatar:appSecrets is not a mapping of apps to secrets
    monitoring_set: bool = False  # the restore drill reports to it
    identity_ip: IPv4Address | None = None  # the front door's address, on the Pis
    headscale_ip: IPv4Address | None = None  # Headscale's port forward target, on the Pis
    # The internal zone's records as the plan gives them (plans.zone.records: lower case, no trailing dot), or empty when
    # a section they are made of is broken.
    zone: Mapping[str, IPv4Address] = field(default_factory=dict)
    # backup.target's server already refused as a name of Headscale's (its public name, or under its MagicDNS base
    # domain: stacks.addresses.backup_at_headscales_name), which says what to write instead.
    target_at_headscale: bool = False


def check(ctx: Context) -> list[Problem]:
    return [*_secrets(ctx), *_values(ctx), *_target(ctx), *_backups(ctx), *_drill(ctx)]


def _secrets(ctx: Context) -> Iterator[Problem]:
    declared = {app.name: {s.name: s for s in app.secrets} for _, app in ctx.apps}
    for i, app in ctx.apps:
        first: dict[str, int] = {}
        for j, secret in enumerate(app.secrets):
            path = app_path(i, f"secrets[{j}]")
            if secret.name in first:
                yield Problem(f"{path}.name", f"{secret.name} is already apps[{i}].secrets[{first[secret.name]}].name; declare a secret once")
                continue
            first[secret.name] = j
            if secret.from_app is None:
                continue
            source = declared.get(secret.from_app)
            if secret.from_app == app.name:
                yield Problem(f"{path}.from", f"{app.name} is this app; a secret from itself is just its own (remove from)")
            elif source is None:
                known = ", ".join(sorted(declared)) or "none"
                yield Problem(f"{path}.from", f"{secret.from_app} is not an app of iluvatar:apps (apps: {known})")
            elif secret.name not in source:
                own = ", ".join(source) or "none"
                yield Problem(
                    f"{path}.from",
                    f"{secret.from_app} declares no secret {secret.name} (its secrets: {own}); declare it there, where its value comes from",
                )
            elif source[secret.name].from_app is not None:
                yield Problem(
                    f"{path}.from",
                    f"{secret.from_app}'s {secret.name} is itself from {source[secret.name].from_app}; name the app that owns it",
                )


def set_command(app: str, name: str) -> str:
    return f"pulumi config set --secret --path 'iluvatar:{APP_SECRETS}.{app}.{name}' <value>"


def _values(ctx: Context) -> Iterator[Problem]:
    key = f"iluvatar:{APP_SECRETS}"
    if ctx.app_secrets_broken is not None:
        yield Problem(key, ctx.app_secrets_broken)
        return
    values = ctx.app_secret_values or {}
    for _, app in ctx.apps:
        for secret in app.secrets:
            if secret.user_set and secret.name not in values.get(app.name, {}):
                yield UnsetSecret(
                    f"{key}.{app.name}.{secret.name}",
                    f"is required: apps {app.name} declares it, set by you; run `{set_command(app.name, secret.name)}`",
                    (key, app.name, secret.name),
                )
    # A value no declared secret uses is never read (components.data reads appSecrets by each app's declared secrets).
    # Under an app of iluvatar:apps it is refused when another app declares that name as set by the user: a secret set
    # for the wrong app, one that app then runs without. Any other such value is a leftover (a secret the app dropped,
    # e.g. an API key replaced by a sign-in, or moved to `from:`), encrypted and harmless: warned of, not refused
    # (stacks.warn._leftover_secrets), as a value under a name no app has (an app renamed or removed) is left alone, the
    # renamed app's own secrets being required by name above. A value left in clear is refused, and one beside
    # `generate` or `from`, which silently win over it.
    declared = {app.name: (i, {s.name: (j, s) for j, s in enumerate(app.secrets)}) for i, app in ctx.apps}
    for app_name, entries in values.items():
        for name, encrypted in entries.items():
            if not encrypted:
                # Never echo the value: it is the secret the user just leaked into a file.
                yield Problem(f"{key}.{app_name}.{name}", f"is in plain text; remove it and run `{set_command(app_name, name)}`")
                continue
            i, secrets = declared.get(app_name, (0, {}))
            j, source = secrets.get(name, (0, None))
            others = [a for a, (_, own) in declared.items() if name in own and own[name][1].user_set]
            if app_name in declared and source is None and others:
                yield from _undeclared(key, app_name, name, i, list(secrets), others)
            elif source is not None and source.generate is not None:
                yield Problem(
                    f"{key}.{app_name}.{name}",
                    f"is set, but apps[{i}].secrets[{j}] ({name}) is generated (generate: {source.generate}), which wins over it: this "
                    f"value is never read; remove it, or remove generate to use it",
                )
            elif source is not None and source.from_app is not None:
                yield Problem(
                    f"{key}.{app_name}.{name}",
                    f"is set, but apps[{i}].secrets[{j}] ({name}) is {source.from_app}'s (from: {source.from_app}), which wins over it: "
                    "this value is never read; remove it, or remove from to use it",
                )


def _undeclared(key: str, app: str, name: str, i: int, own: Sequence[str], others: Sequence[str]) -> Iterator[Problem]:
    """A value under an app that declares no such secret while `others` declare it, set by the user: External Secrets
    syncs only declared ones, so nothing reads it, and the value was likely meant for one of them."""
    where = f"; {' and '.join(others)} declare{'s' if len(others) == 1 else ''} it (set it there)"
    yield Problem(
        f"{key}.{app}.{name}",
        f"is set, but apps[{i}] {app} declares no secret {name} (its secrets: {', '.join(own) or 'none'}): nothing reads this "
        f"value{where}; declare it in apps[{i}].secrets ({{name: {name}}}), or remove it "
        f"(`pulumi config rm --path '{key}.{app}.{name}'`)",
    )


# An AWS regional S3 endpoint (s3.<region>.amazonaws.com, s3-<region>.amazonaws.com, s3.dualstack.<region>...), whose
# region a SigV4 signature's scope must name.
_AWS_REGIONAL = re.compile(r"^s3[.-](?:dualstack\.)?(?P<region>[a-z]{2}(?:-gov)?-[a-z]+-\d)\.amazonaws\.com(?:\.cn)?$")


# The providers whose endpoint fixes the region a SigV4 signature's scope must name: the region in the host, or the
# regions the provider takes. restic, k3s's etcd uploads, talos-backup and the drill sign with backup.region.
#   - AWS: a regional endpoint refuses a request signed for another region (AuthorizationHeaderMalformed).
#   - Backblaze B2: s3.<region>.backblazeb2.com; "a Backblaze B2 account is associated with a single region", the one
#     in the endpoint, which its SDK examples sign with (Backblaze's "Introduction to the S3-Compatible API" and "Use
#     the AWS SDK for Java V2 with Backblaze B2": Region.US_WEST_002 for s3.us-west-002.backblazeb2.com).
#   - Wasabi: s3.<region>.wasabisys.com, one endpoint per storage region, and the names _WASABI_HOSTS lists (Wasabi's
#     "Service URLs for Wasabi's Storage Regions", docs.wasabi.com/docs/service-urls-for-wasabis-storage-regions),
#     answering AuthorizationHeaderMalformed as AWS does (Wasabi's "REST API Introduction", error codes).
#   - Scaleway: s3.<region>.scw.cloud (fr-par, nl-ams, pl-waw), signed with that region (Scaleway's Object Storage
#     docs and its CLI's `scw object config` set region to it); signed for us-east-1 it answers 403 AccessDenied
#     (reported with the same keys signed both ways in gee1k/uPic discussion 263).
#   - Cloudflare R2: <account>.r2.cloudflarestorage.com signs with `auto`, "an empty value and us-east-1 will alias to
#     the auto region" (Cloudflare's "S3 API compatibility", developers.cloudflare.com/r2/api/s3/api/): the default
#     us-east-1 is right there, another region is not.
_SIGNING_REGIONS = (
    ("AWS", _AWS_REGIONAL, " (AuthorizationHeaderMalformed)"),
    ("Backblaze B2", re.compile(r"^s3\.(?P<region>[a-z]{2}-[a-z]+-\d{3})\.backblazeb2\.com$"), ""),
    ("Wasabi", re.compile(r"^s3\.(?P<region>[a-z]{2}-[a-z]+-\d)\.wasabisys\.com$"), " (AuthorizationHeaderMalformed)"),
    ("Scaleway", re.compile(r"^s3\.(?P<region>[a-z]{2}-[a-z]{3})\.scw\.cloud$"), " (AccessDenied)"),
)
_R2 = re.compile(r"^[0-9a-f]{32}(?:\.[a-z]+)?\.r2\.cloudflarestorage\.com$")
# Wasabi's service URLs that do not spell their region, each its region's, as Wasabi's "Service URLs for Wasabi's
# Storage Regions" lists them: s3.wasabisys.com is US East 1's service URL (s3.us-east-1.wasabisys.com its alias), and
# the EMEA regions' aliases name a country (s3.nl-1.wasabisys.com for s3.eu-central-1.wasabisys.com).
_WASABI_HOSTS = {
    "s3.wasabisys.com": "us-east-1",
    "s3.nl-1.wasabisys.com": "eu-central-1",
    "s3.de-1.wasabisys.com": "eu-central-2",
    "s3.uk-1.wasabisys.com": "eu-west-1",
    "s3.fr-1.wasabisys.com": "eu-west-2",
    "s3.uk-2.wasabisys.com": "eu-west-3",
    "s3.it-1.wasabisys.com": "eu-south-1",
}


# The hosts at the hosted S3 services' domains that serve S3, each answering on HTTPS's port 443 only: the rest of
# those domains is something else (B2's native API at api.backblazeb2.com and its download hosts f00N.backblazeb2.com,
# whose /file/<bucket> is the native API's: Backblaze's "Call the S3-Compatible API" names s3.<region>.backblazeb2.com
# as the one S3 endpoint; Wasabi's console.wasabisys.com, the web console) and never answers a signed S3 request.
_HOSTED_S3 = (
    _AWS_REGIONAL,
    re.compile(r"^s3(?:\.dualstack)?\.amazonaws\.com$"),
    _SIGNING_REGIONS[1][1],
    _SIGNING_REGIONS[2][1],
    re.compile(r"^s3\.(?:[a-z]{2}-\d)\.wasabisys\.com$"),
    _SIGNING_REGIONS[3][1],
    _R2,
)
_B2_REGION = re.compile(r"^[a-z]{2}-[a-z]+-\d{3}$")


_AWS_REGION = re.compile(r"^[a-z]{2}(?:-gov)?-[a-z]+-\d$")
_WASABI_REGION = re.compile(r"^[a-z]{2}-[a-z]+-\d$")
_SCALEWAY_REGION = re.compile(r"^[a-z]{2}-[a-z]{3}$")
# The AWS console's pages of a bucket (`/s3/buckets/<bucket>`, an object's `/s3/object/<bucket>`), where a region is the
# console's host's first label (`eu-west-1.console.aws.amazon.com`) or its `region` parameter.
_AWS_CONSOLE_PAGE = re.compile(r"^s3/(?:buckets|object)/(?P<bucket>[^/]+)")
_AWS_CONSOLE_HOST = re.compile(r"^(?:(?P<region>[a-z]{2}(?:-gov)?-[a-z]+-\d)\.|s3\.)?console\.aws\.amazon\.com$")


def _region_to_set(backup: Backup, endpoint: str) -> str:
    """What backup.region must say beside the endpoint a fix names, as the rest of that fix (_signing_region's rule, so
    the fix is not refused next): nothing when it says it already."""
    if "<region>" in endpoint:
        return ", with backup.region set to that region"
    if _R2.match(endpoint):
        return "" if backup.region in ("auto", "us-east-1") else ", and set backup.region: auto"
    fixed = [m["region"] for _, pattern, _ in _SIGNING_REGIONS if (m := pattern.match(endpoint)) is not None]
    fixed += [_WASABI_HOSTS[endpoint]] if endpoint in _WASABI_HOSTS else []
    return next((f", and set backup.region: {r}" for r in fixed if r != backup.region), "")


def _hosted_host_problem(backup: Backup, found: Target, query: str = "", *, from_page: bool = False) -> str | None:
    """Why an S3 target's host at a hosted service (_HOSTED_S3) is not one of its S3 endpoints, or has a port other
    than 443, with the target to write (and backup.region beside it, when the endpoint fixes another); or None.

    `found` may be read from a web address (`from_page`: a console's page, a download URL copied from the browser,
    _web_address), whose path is the page's, not a bucket and a folder: the bucket is read from the pages whose layout is
    known, else left for the user to name; `query` is its query, of which only an AWS console's `region` is read. Every
    fix is s3://:
    a hosted service answers HTTPS only (_plain_http_off_the_lan refuses plain http to one)."""
    name, _, port = found.host.partition(":")
    host = name.rstrip(".").lower()
    bucket, prefix = found.path, found.prefix
    region_set = "region" in backup.model_fields_set
    fix: str | None = None
    if any(p.match(host) for p in _HOSTED_S3) or host in _WASABI_HOSTS:
        if port and port != "443":
            # The stack's clients reach a hosted service over HTTPS only (plain http to one is refused apart), on 443.
            what = f"{host} is a hosted S3 service, reached over HTTPS on port 443, not on :{port}"
            fix = name
    elif host in ("backblazeb2.com", "backblaze.com") or host.endswith((".backblazeb2.com", ".backblaze.com")):
        if host == "backblaze.com" or host.endswith(".backblaze.com"):
            what = f"{host} is Backblaze's web site (where B2's web UI is), not its S3 API"
        elif re.match(r"^f\d{3}\.backblazeb2\.com$", host) and bucket == "file" and prefix:
            what = f"{host} is Backblaze B2's download host (its /file/<bucket> is B2's native API, not S3)"
            bucket, _, prefix = prefix.partition("/")
        elif host.startswith("api"):
            what = f"{host} is Backblaze B2's native API host, not its S3 API"
        else:
            what = f"{host} is not an S3 endpoint of Backblaze B2"
        region = backup.region if region_set and _B2_REGION.match(backup.region) else "<region>"
        fix = f"s3.{region}.backblazeb2.com"
        what += "; its S3 endpoints are s3.<region>.backblazeb2.com, the region the bucket's account is in (e.g. us-west-004, the bucket's Endpoint in B2's web UI)"
    elif host == "wasabisys.com" or host.endswith(".wasabisys.com"):
        console = "Wasabi's web console" if host.startswith("console.") else "not an S3 endpoint of Wasabi"
        what = f"{host} is {console}"
        what += "; its S3 endpoints are s3.wasabisys.com (us-east-1) and s3.<region>.wasabisys.com"
        # A region written but not one of Wasabi's form (`eu-central` for eu-central-1) says the bucket is not in
        # us-east-1, whose service URL s3.wasabisys.com is: the region is left for the user to name, as B2's is.
        written = (backup.region if _WASABI_REGION.match(backup.region) else "<region>") if region_set else None
        fix = f"s3.{written}.wasabisys.com" if written is not None else "s3.wasabisys.com"
    elif (console_host := _AWS_CONSOLE_HOST.match(host)) is not None or host.endswith(".console.aws.amazon.com"):
        what = f"{host} is the AWS web console; S3's endpoints are s3.<region>.amazonaws.com"
        page = _AWS_CONSOLE_PAGE.match(f"{bucket}/{prefix}")
        if page is not None:
            bucket, prefix = page["bucket"], ""
        # The bucket's region as the page names it (its `region` parameter, else the console's own), else backup.region.
        asked = re.search(r"(?:^|&)region=([a-z0-9-]+)", query)
        said = (asked[1] if asked else None, console_host["region"] if console_host else None)
        named = [r for r in said if r and _AWS_REGION.match(r)]
        # Without either, backup.region only when written: its default (us-east-1) says nothing of where the bucket is.
        region = named[0] if named else backup.region if region_set and _AWS_REGION.match(backup.region) else "<region>"
        fix = f"s3.{region}.amazonaws.com"
    elif host == "dash.cloudflare.com":
        # The dashboard's bucket page is dash.cloudflare.com/<account id>/r2/<jurisdiction>/buckets/<bucket>. A bucket
        # made in a jurisdiction (eu, fedramp, us) is reached only at <account id>.<jurisdiction>.r2.cloudflarestorage.com
        # (Cloudflare's "Data location" page, developers.cloudflare.com/r2/reference/data-location/): the global
        # endpoint answers NoSuchBucket. `default` is the global one.
        page = re.match(r"^r2/(?P<jurisdiction>[^/]+)/buckets/(?P<bucket>[^/]+)", prefix)
        account = bucket if re.match(r"^[0-9a-f]{32}$", bucket) else "<account id>"
        jurisdiction = ""
        if page is not None:
            bucket, prefix = page["bucket"], ""
            if page["jurisdiction"] != "default" and re.match(r"^[a-z0-9-]+$", page["jurisdiction"]):
                jurisdiction = f"{page['jurisdiction']}."
        what = f"{host} is Cloudflare's dashboard; R2's S3 endpoint is <account id>.r2.cloudflarestorage.com"
        fix = f"{account}.{jurisdiction}r2.cloudflarestorage.com"
        bucket = bucket if page is not None else "<bucket>"
    elif host == "console.scaleway.com" or host.endswith(".console.scaleway.com"):
        what = f"{host} is Scaleway's web console; its S3 endpoints are s3.<region>.scw.cloud"
        fix = f"s3.{backup.region if region_set and _SCALEWAY_REGION.match(backup.region) else '<region>'}.scw.cloud"
    if fix is None:
        return None
    # A page's path is no bucket where its layout is not one read above: the bucket is named, not guessed from it.
    read = found.path != bucket or (port and port != "443")
    if bucket != "<bucket>" and (not _BUCKET.match(bucket) or (from_page and not read)):
        bucket, prefix = "<bucket>", ""
    return f"{what}: write s3://{fix}/{bucket}{'/' + prefix.strip('/') if prefix.strip('/') else ''}{_region_to_set(backup, fix)}"


def _web_address(backup: Backup) -> str | None:
    """A target at a hosted S3 service's domain that is not its S3 endpoint (a web console's page, a download URL, a
    port other than 443), in any scheme a user copies it with (https:// from the browser, s3:// or s3+http:// by hand):
    the S3 target to write, said before parse_target reads the page's path as a bucket (which it refuses for another
    reason, with a fix that is refused next). Its query is never shown (parse_target)."""
    parts = urlsplit(backup.target.strip())
    try:
        hostname, _ = parts.hostname, parts.port
    except ValueError:
        return None  # a port past 65535: parse_target says so
    if parts.scheme not in ("s3", "s3+http", "https", "http") or not hostname or parts.username or parts.password:
        return None
    if _virtual_hosted(hostname) is not None:
        return None  # a bucket's own address at an endpoint: parse_target's, with the bucket moved after the endpoint
    bucket, _, prefix = parts.path.lstrip("/").partition("/")
    found = Target("s3", parts.netloc, bucket, prefix.strip("/"), secure=True)
    why = _hosted_host_problem(backup, found, parts.query, from_page=parts.scheme in ("https", "http"))
    if why is None:
        return None
    shown = _masked(parts) if parts.query or parts.fragment else backup.target
    return f"{shown}: {why}"


def _signing_region(backup: Backup, host: str) -> Iterator[Problem]:
    """backup.region against the region an S3 endpoint fixes (_SIGNING_REGIONS): the signatures' scope, refused at the
    provider otherwise, from the first upload."""
    written = "" if "region" in backup.model_fields_set else " (the default)"
    # A trailing dot is the same name, fully qualified, and DNS names have no case.
    name = host.rstrip(".").lower()
    if _R2.match(name) and backup.region not in ("auto", "us-east-1"):
        yield Problem(
            f"{BACKUP}.region",
            f"{backup.region}{written} is not a region Cloudflare R2 signs with: its S3 API's region is auto (us-east-1 is "
            f"taken as auto), and the drill and k3s sign with backup.region; set region: auto",
        )
    fixed = [(provider, m["region"], error) for provider, pattern, error in _SIGNING_REGIONS if (m := pattern.match(name)) is not None]
    if name in _WASABI_HOSTS:
        fixed.append(("Wasabi", _WASABI_HOSTS[name], " (AuthorizationHeaderMalformed)"))
    for provider, region, error in fixed:
        if region != backup.region:
            yield Problem(
                f"{BACKUP}.region",
                f"{backup.region}{written} is not {region}, the region of backup.target's endpoint {host}: {provider} "
                f"refuses a request signed for another region at a regional endpoint{error}, and the drill and k3s sign with "
                f"backup.region; set region: {region}",
            )


# The endpoints of public S3 providers, by the domain their hosts are under: never a server of the LAN.
PUBLIC_S3 = (
    "amazonaws.com",
    "backblazeb2.com",
    "wasabisys.com",
    "r2.cloudflarestorage.com",
    "digitaloceanspaces.com",
    "storage.googleapis.com",
    "linodeobjects.com",
    "scw.cloud",
    "cloud.ovh.net",
    "your-objectstorage.com",
    "storjshare.io",
    "contabostorage.com",
    # Filebase: s3.filebase.com, and s3.filebase.io in its newer docs.
    "filebase.com",
    "filebase.io",
    # IDrive e2: s3.<region>.idrivee2.com ("IDrive e2 Endpoint URLs", idrive.com/s3-storage-e2/e2-endpoint-urls); the
    # older per-account endpoints, <id>.<region>.idrivee2-<n>.com, are _IDRIVE_E2's.
    "idrivee2.com",
    # Exoscale SOS: https://sos-<zone>.exo.io (Exoscale's "SOS API", community.exoscale.com/api/sos: sos-ch-gva-2.exo.io,
    # sos-de-fra-1.exo.io, ...).
    "exo.io",
    # Oracle Cloud Object Storage's S3 compatibility API: https://<namespace>.compat.objectstorage.<region>.oraclecloud.com
    # (Oracle's "Amazon S3 Compatibility API", docs.oracle.com/en-us/iaas/Content/Object/Tasks/s3compatibleapi.htm), and
    # <namespace>.compat.objectstorage.<region>.oci.customer-oci.com in its newer docs ("Amazon S3 Compatibility API
    # Hosted Style Support", docs.oracle.com/en-us/iaas/Content/Object/s3-virtual-style.htm).
    "oraclecloud.com",
    "oci.customer-oci.com",
    # Alibaba Cloud OSS: oss-<region>.aliyuncs.com ("Regions and endpoints",
    # alibabacloud.com/help/en/oss/user-guide/regions-and-endpoints), s3.oss-<region>.aliyuncs.com for AWS's SDKs
    # ("Access OSS using an AWS SDK", alibabacloud.com/help/en/oss/developer-reference/use-amazon-s3-sdks-to-access-oss).
    "aliyuncs.com",
)
_IDRIVE_E2 = re.compile(r"(?:^|\.)(?P<domain>idrivee2-\d+\.com)$")


def public_provider(host: str) -> str | None:
    """The public S3 provider's domain a host is under (PUBLIC_S3, _IDRIVE_E2), or None."""
    host = host.rstrip(".").lower()
    provider = next((d for d in PUBLIC_S3 if host == d or host.endswith("." + d)), None)
    if provider is None and (idrive := _IDRIVE_E2.search(host)) is not None:
        provider = idrive["domain"]
    return provider


_PRIVATE_RANGES = tuple(IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16", "127.0.0.0/8"))


def _plain_http_off_the_lan(target: str, found: Target, address: IPv4Address | None, network: Network | None, ainur: bool) -> Iterator[Problem]:
    """An s3+http:// target across the internet: a public provider's endpoint, or an address that is neither private nor
    one of the homelab's networks. Plain http is for a NAS on the LAN (a MinIO, a Synology's S3), where the traffic never
    leaves the house, and that stays valid; so does a name Iluvatar cannot place (a name of the internal zone, or one the
    LAN's resolver may answer with a LAN address). Across the internet every request goes in clear, the Ainur's etcd
    snapshots with them (k3s uploads them as they are: only restic's and talos-backup's copies are encrypted), and
    Backblaze B2 refuses it outright ("The Backblaze B2 S3-Compatible API endpoints accept connections only over HTTPS",
    Backblaze's "Call the S3-Compatible API")."""
    host = found.host.rsplit(":", 1)[0].rstrip(".").lower()
    provider = public_provider(host)
    own = network.subnets() if network is not None else []
    # Off the LAN is whatever is not a private range (RFC 1918, CGNAT's 100.64/10 a VPN may route, link-local, loopback):
    # `is_global` alone leaves out the documentation ranges (RFC 5737), which are on no LAN either.
    public_address = address is not None and not any(address in net for net in (*_PRIVATE_RANGES, *own))
    if provider is None and not public_address:
        return
    what = f"{host}, a public provider's endpoint ({provider})" if provider is not None else f"{address}, an address on the internet"
    snapshots = ", the Ainur's etcd snapshots (which k3s uploads as they are) with them" if ainur else ""
    refused = ", and Backblaze B2 refuses plain http outright (its S3 API takes HTTPS only)" if provider == "backblazeb2.com" else ""
    yield Problem(
        f"{BACKUP}.target",
        f"{target}: plain http (s3+http://) to {what}: every upload, restore and drill would cross the internet unencrypted"
        f"{snapshots}{refused}; write "
        f"s3://{found.host}/{found.path}{'/' + found.prefix if found.prefix else ''} (s3+http:// is for a NAS on the LAN)",
    )


def _https_at_a_private_address(
    target: str, found: Target, address: IPv4Address | None, network: Network | None, refused: bool = False
) -> Iterator[Problem]:
    """An s3:// (HTTPS) target written as a private address or one of the homelab's networks': restic, k3s and
    talos-backup check the endpoint's certificate against the public authorities (the stack gives them no CA of its own
    and turns no check off), and none certifies a private address (the CA/Browser Forum's Baseline Requirements,
    section 4.2.2, forbid a certificate for a reserved address), so the certificate a NAS serves there, its own, is
    refused and no backup is ever made. On the LAN plain http is the way (restic's and talos-backup's copies are
    encrypted before they leave); a name of the NAS's that a public authority certified (DNS-01) is the other. `refused`:
    an earlier message refused the server's address itself, so the plain-http fix names the NAS's own address instead
    (at this one it would be refused again)."""
    own = network.subnets() if network is not None else []
    if address is None or not any(address in net for net in (*_PRIVATE_RANGES, *own)):
        return
    rest = f"{found.path}{'/' + found.prefix if found.prefix else ''}"
    port = f":{found.host.rpartition(':')[2]}" if ":" in found.host else ""
    yield Problem(
        f"{BACKUP}.target",
        f"{target}: HTTPS (s3://) to {address}, a private address: restic, k3s and talos-backup check the endpoint's certificate "
        "against the public certificate authorities, none of which certifies a private address, so the NAS's own certificate "
        f"is refused and no backup is made; on the LAN write "
        + (f"s3+http://<the NAS's own address>{port}/{rest} (not {address}, refused above)" if refused else f"s3+http://{found.host}/{rest}")
        + ", or s3:// with a name of the NAS a public authority certified",
    )


def on_arda(
    host: str,
    address: IPv4Address | None,
    server_name: str,
    apps: Sequence[tuple[int, App]],
    network: Network | None,
    nodes: Sequence[tuple[int, Node]],
    arda: Arda | None,
) -> list[str]:
    """What of Arda a server is, each as `the server <name> is ...`: an app's host (Arda's gateways, envoy-internal or
    envoy-external, in the load-balancer pool), an address of the load-balancer pool (a Service), an Arda machine or
    Arda's VIP. A backup kept there, or the GitOps repository that rebuilds Arda, goes with Arda in a disaster.
    `address` is the server's address, as written or resolved from the internal zone; `server_name` how to name it."""
    out: list[str] = []
    app = next(((i, a) for i, a in apps if a.host == host), None)
    if app is not None:
        out.append(f"the server {host} is apps[{app[0]}].host ({app[1].name}), an app on Arda behind its gateways")
    if address is not None and network is not None and address in network.load_balancer_pool:
        out.append(f"the server {server_name} is inside network.loadBalancerPool {network.load_balancer_pool}, a Service on Arda")
    arda_held = {n.ip: f"nodes[{i}].ip ({n.name}), an Arda machine" for i, n in nodes if n.role in ARDA_ROLES}
    if arda is not None:
        arda_held.setdefault(arda.vip, "arda.vip, Arda's API server")
    if address is not None and address in arda_held:
        out.append(f"the server {server_name} is {arda_held[address]}")
    return out


def on_ainur(address: IPv4Address | None, server_name: str, nodes: Sequence[tuple[int, Node]]) -> list[str]:
    """Why a backup server at `address` is on the Ainur: a Pi's own address, as written or resolved from its name in
    the internal zone. The disaster the backups are for is the Ainur or Arda lost (docs/layers/ainur.md), which takes
    a server on a Pi with them. (The Ainur's VIPs are refused by stacks.addresses, and by name in `_target`.)"""
    held = {n.ip: f"nodes[{i}].ip ({n.name}), a Pi of the Ainur" for i, n in nodes if n.role in AINUR_ROLES}
    if address is None or address not in held:
        return []
    return [f"the server {server_name} is {held[address]}"]


def _zone_address(ctx: Context, host: str) -> IPv4Address | None:
    """The address the internal zone gives a server's name, or None. The zone's records are the plan's own
    (plans.zone.records, the Ainur's dnsmasq answers nothing else there): machines, VIPs, the gateways, the Git mirror,
    identity's and the apps' hosts. A trailing dot is the same name, fully qualified, and DNS names have no case; a single
    label is read under network.domain, as the Pis' search list asks it. Without the records (a section they are made of
    is broken, and refused for it), the machines' and VIPs' names alone (stacks.storage.zone_addresses)."""
    if not ctx.zone:
        return storage_facts.zone_addresses(ctx.nodes, ctx.arda, ctx.ainur, ctx.network).get(host.rstrip(".").lower())
    return zone_address(host, ctx.zone, ctx.network)


def _target(ctx: Context) -> Iterator[Problem]:
    """backup.target's rules (`_target_rules`), each told what the ones before it said."""
    said: list[Problem] = []
    for problem in _target_rules(ctx, said):
        said.append(problem)
        yield problem


def _target_rules(ctx: Context, said: Sequence[Problem]) -> Iterator[Problem]:
    s3_keys = [k for k in (S3_KEY_ID, S3_SECRET_KEY) if k in ctx.secrets]
    if ctx.backup is None:
        if not ctx.backup_set:
            for key in s3_keys:
                yield Problem(f"iluvatar:{key}", f"is set, but {BACKUP} is not; remove it")
        return
    backup = ctx.backup
    # Read by k3s (etcd-snapshot-schedule-cron) and talos-backup's CronJob: robfig's parser, no VolSync.
    problem = cron_problem(backup.etcd.schedule, volsync=False, etcd=True)
    if problem is not None:
        yield Problem(f"{BACKUP}.etcd.schedule", problem)
    if (web := _web_address(backup)) is not None:
        yield Problem(f"{BACKUP}.target", web)
        return
    found = parse_target(backup.target)
    if isinstance(found, str):
        yield Problem(f"{BACKUP}.target", found)
        return
    address = target_address(found)
    server_name = str(address) if address is not None else found.host.rsplit(":", 1)[0] if found.kind == "s3" else found.host
    host = found.host.rsplit(":", 1)[0] if found.kind == "s3" else found.host
    if address is None and (numbers := numeric_host(host)) is not None:
        yield Problem(f"{BACKUP}.target", f"{backup.target}: {numbers}")
        return
    app = next(((i, a) for i, a in ctx.apps if a.host == host), None)
    if address is None and app is None and (address := _zone_address(ctx, host)) is not None:
        # A name the plan resolves (plans.backup, from the internal zone) is the same place as its address: checked as it.
        server_name = f"{host} ({address})"
        # An address kube-vip announces from the Pis by name (the same address written as itself is refused by
        # stacks.addresses): k3s's API, the netboot services or the Git mirror, which kube-vip moves between the Pis; no S3 or
        # NFS server of the backups' answers there.
        moving: dict[IPv4Address, str] = {}
        if ctx.ainur is not None:
            moving = {ctx.ainur.vip: "ainur.vip, the Ainur's API server", ctx.ainur.service_ip: "ainur.serviceIp, the netboot services"}
            if ctx.ainur.git_mirror is not None:
                moving.setdefault(ctx.ainur.git_mirror.ip, "ainur.gitMirror.ip, the Git mirror")
        if address in moving:
            # An NFS mount takes an address or a name of the zone alone (nfs_server_problem), and the zone names no NAS: its
            # names are the Ainur's and Arda's, each refused as a backup's server (on_ainur, on_arda). An S3 client resolves
            # any name.
            fix = "write the NAS's IPv4 address" if found.kind == "nfs" else "give the NAS's address or name"
            yield Problem(
                f"{BACKUP}.target",
                f"{backup.target}: the server {server_name} is {moving[address]}, an address kube-vip moves between the Pis, where "
                f"no backup server answers; {fix}",
            )
            return
    for what in on_arda(host, address, server_name, ctx.apps, ctx.network, ctx.nodes, ctx.arda):
        yield Problem(
            f"{BACKUP}.target",
            f"{backup.target}: {what}, the cluster being backed up: a disaster there takes the backups with it; keep them on a "
            "NAS or a machine off Arda",
        )
    # With S3 the valar's k3s uploads the Ainur's etcd snapshots there (etcd-s3-endpoint, plans.backup) and the
    # kms-key-backup CronJob the KMS key's copy; with NFS Arda's volumes go there. Either is lost with the Pi it is on.
    kept = "the Ainur's etcd snapshots and the KMS key's backup" if found.kind == "s3" else "the backups of Arda's volumes"
    for what in on_ainur(address, server_name, ctx.nodes):
        yield Problem(
            f"{BACKUP}.target",
            f"{backup.target}: {what}, where {kept} would be kept: losing the Pis takes the backups with them; keep them on a "
            "NAS or a machine off the Ainur and Arda",
        )
    if address is not None and address == ctx.identity_ip:
        # The front door is an address kube-vip announces from the Pis (plans.identity), as the VIPs are.
        yield Problem(
            f"{BACKUP}.target",
            f"{backup.target}: its server {address} is identity.ip, the front door, an address kube-vip moves between the Pis, "
            "where no backup server answers; write the NAS's own address, or, if the NAS does have it, give identity.ip a free one",
        )
    if address is not None and address == ctx.headscale_ip:
        # kube-vip announces Headscale's address from the Pi that runs it (plans.remote_access, its Service's
        # kube-vip.io/loadbalancerIPs), as the front door's: the server written here is the slip, said where it is written.
        yield Problem(
            f"{BACKUP}.target",
            f"{backup.target}: its server {address} is remoteAccess.headscale.ip, Headscale's port forward target, an address "
            "kube-vip announces from a Pi, where no backup server answers; write the NAS's own address, or, if the NAS does "
            "have it, give remoteAccess.headscale.ip a free one",
        )
    off_arda = "a server behind it runs on Arda, the cluster being backed up"
    if ctx.ainur is not None:
        off_arda += ", and k3s on the Pis (the Ainur's etcd uploads) resolves it through network.dns, where it does not exist"
    clients = Clients(
        "the movers, talos-backup, the drill and k3s",
        "so every upload would fail",
        "give the NAS's LAN address, or keep the backups on a machine of the LAN",
        service_name=off_arda,
    )
    local = ctx.network.subnets() if ctx.network is not None else []
    if (why := unreachable(host, clients, f"the server {server_name}", local)) is not None:
        yield Problem(f"{BACKUP}.target", f"{backup.target}: {why}")
        return
    if app is None and address is None and found.kind == "s3" and host and "." not in host and host != "localhost" and ctx.network is not None:
        # plans.backup gives the clients the name as written: the movers and talos-backup on Arda ask it as a plain name
        # (Talos gives Arda's machines no search domain: siderolabs/talos internal/app/machined/pkg/controllers/network/
        # resolver_config.go:179-196, getDefault), so it resolves only where a resolver answers plain names.
        full = f"{host.lower()}.{ctx.network.domain}"
        yield Problem(
            f"{BACKUP}.target",
            f"{backup.target}: the server {host} is a single label, which the movers and talos-backup on Arda ask as written (Talos "
            f"gives Arda's machines no search domain, so {full} is never tried), and a backup must not depend on a resolver "
            "answering plain names; write the NAS's IPv4 address",
        )
        return
    suffix = private_tld(host, ctx.network.domain) if ctx.network is not None else None
    if app is None and address is None and found.kind == "s3" and ctx.network is not None and suffix == ctx.network.domain.lower():
        # plans.backup gives the clients the name as written: k3s on the Pis and the pods ask the Ainur's dnsmasq, which
        # answers the internal zone only from the plan's records (local=/<domain>/), so a name it has none for fails.
        yield Problem(
            f"{BACKUP}.target",
            f"{backup.target}: the server {host} is not a name in the internal zone {ctx.network.domain} (the plan resolves there only "
            "the names it gives, and a backup must not depend on a resolver); write the NAS's IPv4 address",
        )
        return
    # As the NFS form (nfs_server_problem): the name goes to k3s, restic and talos-backup as written (plans.backup),
    # and every resolver they ask (CoreDNS, the Ainur's dnsmasq, the router, Talos's, the Pis' resolved as netplan
    # sets it up) is unicast DNS; a NAS's Bonjour name is answered only by multicast DNS (RFC 6762).
    mdns = multicast_name(host, "the backups' resolvers", "CoreDNS, the Ainur's dnsmasq, the router and Talos")
    if app is None and address is None and found.kind == "s3" and ctx.network is not None and mdns:
        yield Problem(f"{BACKUP}.target", f"{backup.target}: {mdns}, and a backup must not depend on a resolver; write the NAS's IPv4 address")
        return
    if found.kind == "nfs":
        # A name of the zone (an app's host among them) is a server of the homelab's own, each refused above for what it
        # is; a name of Headscale's is refused with the fix: no second message that it is not a name of the zone.
        if not ctx.target_at_headscale and (why := nfs_server_problem(found.host, lambda name: _zone_address(ctx, name), ctx.network)) is not None:
            yield Problem(f"{BACKUP}.target", f"{backup.target}: {why}")
        for key in s3_keys:
            yield Problem(f"iluvatar:{key}", f"is set, but {BACKUP}.target is NFS ({backup.target}); remove it")
        if backup.etcd.arda is True:
            yield Problem(
                f"{BACKUP}.etcd.arda",
                f"true, but talos-backup uploads Arda's etcd snapshots only to S3 and the target is NFS ({backup.target}); "
                "use an S3 target (most NAS serve S3), or leave arda out (with NFS it is off) to leave Arda's etcd without backups",
            )
    else:
        yield from _signing_region(backup, host)
        if not found.secure:
            yield from _plain_http_off_the_lan(backup.target, found, address, ctx.network, ctx.ainur is not None)
        else:
            # A fix of s3+http:// at the same server would be refused by the message that refused the server's address.
            refused = any(p.path == f"{BACKUP}.target" and f"server {address} is" in p.message for p in said)
            yield from _https_at_a_private_address(backup.target, found, address, ctx.network, refused)
        for key in (S3_KEY_ID, S3_SECRET_KEY):
            if key not in ctx.secrets:
                yield UnsetSecret(
                    f"iluvatar:{key}",
                    f"is required: {BACKUP}.target is S3 ({backup.target}); run `pulumi config set --secret iluvatar:{key} <value>`",
                    (f"iluvatar:{key}",),
                )


def _backups(ctx: Context) -> Iterator[Problem]:
    classes: list[str] | None = None
    if ctx.storage is not None and ctx.nodes_complete:
        classes = storage_facts._arda_classes(ctx.storage, [n for _, n in ctx.nodes])
    default = (ctx.storage.arda.default_class if ctx.storage is not None else None) or (classes[0] if classes else None)
    claims: dict[tuple[str, str], str] = {}
    for i, app in ctx.apps:
        if app.backup is None:
            continue
        if not ctx.backup_set:
            yield Problem(app_path(i, "backup"), f"needs {BACKUP}: its target is where the volumes are copied to")
        if not ctx.gitops_set:
            yield Problem(
                app_path(i, "backup"), "needs iluvatar:gitops: the storage classes, VolSync's copies and the restore live in the app's GitOps folder"
            )
        problem = cron_problem(app.backup.schedule)
        if problem is not None:
            yield Problem(app_path(i, "backup.schedule"), problem)
        yield from _volumes(i, app, app.backup, classes, default, claims)


def _volumes(
    i: int, app: App, backup: AppBackup, classes: list[str] | None, default: str | None, claims: dict[tuple[str, str], str]
) -> Iterator[Problem]:
    for k, volume in enumerate(backup.volumes):
        path = app_path(i, f"backup.volumes[{k}]")
        where = (app.namespace, volume.claim)
        if where in claims:
            yield Problem(f"{path}.claim", f"{volume.claim} is already {claims[where]} in the namespace {app.namespace}; a claim's name is its own")
            continue
        claims[where] = f"apps[{i}].backup.volumes[{k}].claim"
        chosen = volume.storage_class or default
        if classes is None or chosen is None or (volume.storage_class is None and chosen not in classes):
            continue  # no classes known, or a default class Arda lacks (stacks.storage says so)
        if chosen not in classes:
            yield Problem(f"{path}.class", f"{chosen} is not a StorageClass Arda has (it has: {', '.join(classes) or 'none'})")
        elif backup.copy_method == "Snapshot" and chosen not in SNAPSHOT_CLASSES:
            yield _copy_problem(
                i,
                k,
                volume.claim,
                volume.storage_class is not None,
                chosen,
                "Snapshot",
                "CSI snapshots",
                SNAPSHOT_CLASSES & set(classes) or SNAPSHOT_CLASSES,
            )
        elif backup.copy_method == "Clone" and chosen not in CLONE_CLASSES:
            yield _copy_problem(
                i,
                k,
                volume.claim,
                volume.storage_class is not None,
                chosen,
                "Clone",
                "CSI volume cloning",
                CLONE_CLASSES & set(classes) or CLONE_CLASSES,
            )


def _copy_problem(i: int, k: int, claim: str, own: bool, chosen: str, method: str, needs: str, classes: frozenset[str]) -> Problem:
    said = "its class" if own else "Arda's default class"
    return Problem(
        app_path(i, "backup.copyMethod"),
        f"{method} needs {needs}, and volumes[{k}] ({claim}) is on {said} {chosen}, which has none; "
        "leave copyMethod out (each volume then takes what its class allows: here Direct, VolSync reading the live volume, "
        f"a crash-consistent copy) or put the claim on {' or '.join(sorted(classes))}",
    )


def copy_method(backup: AppBackup, storage_class: str) -> CopyMethod:
    """How VolSync copies a volume on `storage_class`: the backup's copyMethod, else what the class allows (a CSI
    snapshot on a class with snapshots, the live volume on one without)."""
    if backup.copy_method is not None:
        return backup.copy_method
    return "Snapshot" if storage_class in SNAPSHOT_CLASSES else "Direct"


# --- The restore drill ------------------------------------------------------------------------------

DRILL = f"{BACKUP}.drill"
_MACRO_SPECS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def _cron_field(value: str, low: int, high: int) -> tuple[set[int], bool]:
    """One field's values, and whether it is a star (robfig/cron v3.0.1 parser.go getRange, lines 265 and 297: `*` or
    `?` without a step above 1), which decides how the two day fields combine."""
    found: set[int] = set()
    star = False
    value = _as_numbers(value, {(1, 12): "month", (0, 6): "day of week"}.get((low, high), ""))
    for item in robfig_items(value).split(","):
        base, _, step_text = item.partition("/")
        step = int(step_text) if step_text else 1
        if base in ("*", "?"):
            start, end = low, high
            star = star or step == 1
        elif "-" in base:
            start, end = (int(b) for b in base.split("-"))
        else:
            start = int(base)
            end = high if step_text else start
        found.update(range(start, end + 1, step))
    return found, star


# The longest gap between two runs a schedule may mean, by what it runs (stacks.warn._rare_months says it past these).
# A backup's or an etcd snapshot's: a month, 31 days, `@monthly`'s longest gap. Past it the schedule skips whole
# months (a month field that names some, `@yearly`): a volume or a cluster lost in those months has only a copy from
# before them, restic's keep.monthly finds no snapshot in them, and the usual cause is a weekday written in the month
# field (`20 1 * 1 *` for Mondays). The drill's: two months, 62 days. It may well run monthly, but past two months the
# backups can stop restoring for a season unseen, and its alert, which waits for the longest gap plus a day when
# staleAfter is left out (stale_after), is silent as long.
BACKUP_GAP = datetime.timedelta(days=31)
DRILL_GAP = datetime.timedelta(days=62)


STALE_CEILING = DRILL_GAP + BACKUP_GAP

# The longest a drill may run: its Job's activeDeadlineSeconds (plans.drill), past which it is stopped and failed.
# RestoreDrillStale reads the CronJob's lastSuccessfulTime, which the CronJob controller sets to the finished Job's
# completion time (kubernetes pkg/controller/cronjob/cronjob_controllerv2.go, syncCronJob at v1.35), so one drill that
# runs longer than the one before leaves the last good one older than the schedule's gap, by up to this much.
DRILL_DEADLINE = datetime.timedelta(hours=3)


def stale_floor(schedule: str) -> datetime.timedelta:
    """The shortest a drill's `staleAfter` may be: the schedule's longest gap and a drill's whole length (DRILL_DEADLINE)
    past it, else the alert fires between two good drills whenever one takes longer than the one before."""
    return longest_gap(schedule) + DRILL_DEADLINE


def _stale_uncapped(gap: datetime.timedelta) -> datetime.timedelta:
    """stale_bound before its ceiling, for a schedule whose longest gap is `gap`."""
    return max(gap + BACKUP_GAP, 3 * gap)


def stale_bound(schedule: str) -> datetime.timedelta:
    """The longest a drill's `staleAfter` may be: a month of missed drills past the first one missed (the schedule's
    longest gap plus BACKUP_GAP, the longest a backup schedule may leave a volume without a copy), or, for a drill rarer
    than every 15 days, two missed runs (three longest gaps), whichever is longer. The alert is what says that the drills
    have stopped (a drill that runs and fails has its own, RestoreDrillFailed); waiting longer leaves backups that no
    longer restore unseen for longer than any backup may go without a copy. A week's drill may wait 38 days: room for a
    house left a month, and still refusing `1000d` written for `10d`. Never more than STALE_CEILING (93 days, the
    longest a drill schedule may leave between runs, DRILL_GAP, plus BACKUP_GAP): a rare schedule is only warned of
    (stacks.warn._rare_months), and three of a yearly drill's gaps would let the alert wait three years."""
    return min(_stale_uncapped(longest_gap(schedule)), STALE_CEILING)


@functools.lru_cache(maxsize=1024)
def longest_gap(schedule: str) -> datetime.timedelta:
    """The longest time between two runs of a valid cron `schedule`, over two years from a fixed day, with the day
    fields combined as Kubernetes' CronJob controller combines them (robfig/cron v3.0.1 spec.go dayMatches, lines
    179-188: both restricted, either matches; else both must).

    Kept per schedule: a stack's check, its warnings and the program each ask again for the same few schedules, and
    each answer walks two years of days (see _days_run)."""
    fields = _MACRO_SPECS.get(schedule.strip(), schedule).split()
    minutes, _ = _cron_field(fields[0], 0, 59)
    hours, _ = _cron_field(fields[1], 0, 23)
    times = sorted(h * 60 + m for h in hours for m in minutes)
    # Within a day the runs are the same; between two days, the last of one to the first of the next.
    longest = datetime.timedelta(minutes=max((b - a for a, b in itertools.pairwise(times)), default=0))
    last = None
    days = _days_run(fields)
    for day in days:
        if last is not None:
            longest = max(longest, day + datetime.timedelta(minutes=times[0]) - last)
        last = day + datetime.timedelta(minutes=times[-1])
    # A schedule that runs on one day of the two years (or none) is as good as never.
    return longest if len(days) > 1 else datetime.timedelta(days=731)


def _days_run(fields: Sequence[str]) -> tuple[datetime.datetime, ...]:
    """The days of 2026 and 2027 a valid schedule's fields run on."""
    return _days_of(fields[2], fields[3], fields[4])


@functools.lru_cache(maxsize=1024)
def _days_of(day_of_month: str, month: str, day_of_week: str) -> tuple[datetime.datetime, ...]:
    """_days_run's answer, kept per day fields: it steps through 730 days, and one parse of a stack asked it again
    for each schedule's every check (the check, the never-runs rule, the gaps, the warnings); it was a seventh of the
    CPU of tests/stacks/test_invalid_stacks.py, which parses a stack per test. A tuple: every caller shares it."""
    doms, dom_star = _cron_field(day_of_month, 1, 31)
    months, _ = _cron_field(month, 1, 12)
    dows, dow_star = _cron_field(day_of_week, 0, 6)
    start, found = datetime.datetime(2026, 1, 1), []
    for offset in range(730):
        day = start + datetime.timedelta(days=offset)
        dom, dow = day.day in doms, (day.weekday() + 1) % 7 in dows
        if day.month in months and ((dom and dow) if (dom_star or dow_star) else (dom or dow)):
            found.append(day)
    return tuple(found)


def _run_days(fields: Sequence[str]) -> int:
    return len(_days_run(fields))


def newest_within(schedule: str) -> datetime.timedelta:
    """How old the newest backup made on `schedule` may be when a drill reads it: the schedule's longest gap, plus as
    much again up to a day for the run that is due to finish (a backup's own length, a node's restart, the target
    briefly away). Older, the backups have stopped, whatever the restore of the last one says."""
    gap = longest_gap(schedule)
    return gap + min(gap, datetime.timedelta(days=1))


def stale_after(drill: Drill) -> datetime.timedelta:
    """How old the last good drill may be: `staleAfter`, else the schedule's longest gap plus a day (its run's bound)."""
    if drill.stale_after is not None:
        unit = drill.stale_after[-1]
        try:
            return datetime.timedelta(**{"hours" if unit == "h" else "days": int(drill.stale_after[:-1])})
        except OverflowError:
            # Past timedelta's 999999999 days: longer than any bound, which the staleAfter rule (_drill) then refuses.
            return datetime.timedelta.max
    return longest_gap(drill.schedule) + datetime.timedelta(days=1)


def drills(backup: Backup, ainur_set: bool) -> tuple[bool, bool]:
    """Whether Arda's and the Ainur's etcd snapshots are drilled: `drill.arda`/`ainur`, else whether their snapshots
    are on the target (Arda's: talos-backup uploads them; the Ainur's: k3s uploads them to an S3 target only)."""
    found = parse_target(backup.target)
    s3 = isinstance(found, Target) and found.kind == "s3"
    arda = backup.drill.arda if backup.drill.arda is not None else arda_etcd_backup(backup) and s3
    ainur = backup.drill.ainur if backup.drill.ainur is not None else ainur_set and s3
    return arda, ainur


# The etcdutl a drill restores a cluster's etcd snapshots with, by the etcd minor the cluster runs: an image of that
# minor's etcd release. An etcdutl restores a snapshot of a newer minor without a word: its restore copies the database,
# storage version and all, checking its hash but not its storage version (etcdutl v3.6.5 snapshot/v3_snapshot.go:
# 256-347). But etcd of the older minor refuses to start on the result: at startup it validates the storage version
# against the schemas it knows (server v3.6.5 etcdserver/bootstrap.go:239), and 3.6 knows none past 3.6
# (storage/schema/schema.go:130-134; "version \"3.7.0\" is not supported", :120-122). So a drill with another minor's
# etcdutl passes on snapshots the cluster's own etcd could not start from. Arda's minor is its Talos's
# (stacks.releases.ETCD_MINOR: Talos v1.13.9 runs etcd v3.6.12, pkg/machinery/constants/constants.go:428; v1.14.1 runs
# 3.7.1, :443, from the image registry.k8s.io/etcd:3.7.1, EtcdImage at :458). 3.6: Kubernetes' image of etcd 3.6.5, the
# etcd the tests' control planes run (tools/kube-control-plane). 3.7: the image Talos v1.14.1 runs its etcd from; an
# etcd release image holds etcdutl beside etcd in /usr/local/bin (etcd-io/etcd Dockerfile), and tools/etcd-3.7 builds
# the same release's etcd and etcdutl for the tests. A Talos whose etcd minor has no entry here is refused while Arda's
# drill is on (`_drill`).
ETCDUTL: dict[releases.Minor, str] = {(3, 6): pins.IMAGES["etcd-3.6"], (3, 7): pins.IMAGES["etcd-3.7"]}


def _etcdutl_for_arda(arda: Arda) -> Iterator[Problem]:
    """Arda's Talos runs an etcd minor the drill has an etcdutl of (ETCDUTL). A Talos minor ETCD_MINOR does not know is
    not supported at all, which stacks.rules says."""
    minor = releases.ETCD_MINOR.get(releases.minor_of(arda.talos_version))
    if minor is None or minor in ETCDUTL:
        return
    drilled = [row for row in releases.TALOS_MINORS if row.target and releases.ETCD_MINOR.get(row.minor) in ETCDUTL]
    instead = (
        f"stay on a Talos whose etcd it knows (the newest: {drilled[-1].newest}, etcd {etcd_minor(releases.ETCD_MINOR[drilled[-1].minor])}), "
        if drilled
        else ""
    )
    known = ", ".join(etcd_minor(m) for m in sorted(ETCDUTL))
    yield Problem(
        "iluvatar:arda.talosVersion",
        f"{arda.talos_version} runs etcd {etcd_minor(minor)}, and the restore drill of Arda's etcd has no etcdutl of that minor "
        f"(it has {known}: stacks.data.ETCDUTL); another minor's etcdutl restores a snapshot the cluster's etcd may not start "
        f"from, and the drill would pass on it: {instead}or turn the drill of Arda off ({DRILL}.arda: false) until an Iluvatar "
        f"that knows etcd {etcd_minor(minor)}",
    )


_WEEKDAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_MONTH_NAMES = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December")


@dataclass(frozen=True)
class RareMonths:
    """A schedule that names months and runs rarer than it can mean: where, how seldom, and the fix."""

    shown: str  # the months it runs in, as a message names them: "January, April, July and October"
    days: tuple[int, int]  # the days it runs on in 2026, and in 2027
    gap: datetime.timedelta  # its longest gap (longest_gap)
    fix: str  # "<what to do>, write <schedule>", or "write * in the month field"
    weekday: bool  # the fix reads the month field as the day of week (`30 5 * 6 *` for Saturdays)

    @property
    def often(self) -> str:
        """How many days a year it runs on, as a message says it: `on 1 day a year`, `on 4 days in 2026 and 5 in 2027`."""
        first, second = self.days
        if first == second:
            return f"on {first} day{'' if first == 1 else 's'} a year"
        return f"on {first} day{'' if first == 1 else 's'} in 2026 and {second} in 2027"


def rare_months(schedule: str, bound: datetime.timedelta, *, volsync: bool = False, etcd: bool = False) -> RareMonths | None:
    """A schedule whose longest gap is past `bound` because it names months (`30 5 * 6 *` runs every day of June and
    never in the other months; `@yearly` once a year), or None; every month named is another reading (days of the month
    some months lack). The fix: the field as a weekday where it names weekday numbers (1-6) beside two day stars (the
    fourth field read as the fifth), `@weekly` for a descriptor, else every month (day 28 at most, a day every month
    has); the first of these cron takes (`volsync`, `etcd`: as cron_problem) within the bound. The rare-months warning
    (stacks.warn) and the drill's staleAfter rule, which must not lead away from it, read it alike."""
    gap = longest_gap(schedule)
    if gap <= bound:
        return None
    fields = _MACRO_SPECS.get(schedule, schedule).split()
    months, month_star = _cron_field(fields[3], 1, 12)
    if month_star:
        return None
    days = _days_run(fields)
    ran = sorted({d.month for d in days})
    doms, dom_star = _cron_field(fields[2], 1, 31)
    _, dow_star = _cron_field(fields[4], 0, 6)
    candidates: list[tuple[str, str, bool]] = []
    if schedule.startswith("@"):
        candidates.append(("for once a week, write", "@weekly", False))
    elif dom_star and dow_star and max(months) <= 6:
        named = " and ".join(f"{_WEEKDAYS[m]}s" for m in sorted(months))
        said = f"the fourth field is the month and the fifth the day of week: for {named}, write"
        candidates.append((said, " ".join([*fields[:3], "*", fields[3]]), True))
    day = fields[2] if dom_star or max(doms) <= 28 else ",".join(str(d) for d in sorted({min(d, 28) for d in doms}))
    candidates.append(("to run in every month, write", " ".join([*fields[:2], day, "*", fields[4]]), False))
    fix, weekday = next(
        ((f"{say} {c}", moved) for say, c, moved in candidates if cron_problem(c, volsync=volsync, etcd=etcd) is None and longest_gap(c) <= bound),
        ("write * in the month field", False),
    )
    names = [_MONTH_NAMES[m - 1] for m in ran]
    shown = f"{', '.join(names[:-1])} and {names[-1]}" if len(names) > 1 else names[0]
    return RareMonths(shown, (sum(d.year == 2026 for d in days), sum(d.year == 2027 for d in days)), gap, fix, weekday)


def _stale_beside(drill: Drill, problem: str) -> str:
    """What else the fix a drill schedule's problem gives needs: a staleAfter of at least the fix's stale_floor and within its
    stale_bound, since the staleAfter rules below refuse one outside (a drill `30 5 30 2 *` with staleAfter 9d, fixed to
    monthly)."""
    fix = problem.rsplit("write ", 1)[-1]
    if drill.stale_after is None or "write " not in problem or cron_problem(fix, volsync=False) is not None:
        return ""
    gap = longest_gap(fix)
    if stale_floor(fix) <= stale_after(drill) <= stale_bound(fix):
        return ""
    return (
        f", and staleAfter at least {_days(stale_floor(fix))}, its {_days(gap)} and a drill's {_days(DRILL_DEADLINE)} (e.g. "
        f"{_days(gap + datetime.timedelta(days=1))}), or leave staleAfter out"
    )


def etcd_minor(minor: releases.Minor) -> str:
    """An etcd minor as etcdutl's --target-version takes it: `3.7`."""
    return f"{minor[0]}.{minor[1]}"


def _drill(ctx: Context) -> Iterator[Problem]:
    backup = ctx.backup
    if backup is None or not backup.drill.enabled:
        return
    drill = backup.drill
    if "drill" in backup.model_fields_set and not ctx.monitoring_set:
        yield Problem(
            DRILL,
            "needs iluvatar:monitoring: each drill's result is a metric Prometheus keeps, and a failed or stale drill is its "
            "alert; set iluvatar:monitoring, or drill.enabled: false",
        )
        return
    if (problem := cron_problem(drill.schedule, volsync=False)) is not None:  # the drills' CronJobs
        yield Problem(f"{DRILL}.schedule", problem + _stale_beside(drill, problem))
    elif drill.stale_after is not None and stale_after(drill) > (bound := stale_bound(drill.schedule)):
        gap = longest_gap(drill.schedule)
        if bound < _stale_uncapped(gap):
            missed = f"the {_days(DRILL_GAP)} a drill schedule may leave between runs and a month more"
        else:
            missed = "two missed drills" if bound == 3 * gap else "a month of missed drills"
        if stale_floor(drill.schedule) > bound:
            # No staleAfter fits a schedule this rare: the one it gets when left out is its gap plus a day (stale_after),
            # and the schedule is warned of (stacks.warn._rare_months).
            fix = f"write a drill.schedule that runs at least every {_days(DRILL_GAP)}, or leave staleAfter out"
        else:
            fix = (
                f"set it to at least {_days(stale_floor(drill.schedule))} and at most {_days(bound)} (e.g. "
                f"{_days(gap + datetime.timedelta(days=1))}), or leave it out"
            )
        yield Problem(
            f"{DRILL}.staleAfter",
            f"{drill.stale_after} is longer than the {_days(bound)} RestoreDrillStale may wait for drill.schedule {drill.schedule} "
            f"(up to {_days(gap)} between two runs): once the drills stop, backups that no longer restore would go unseen for "
            f"{drill.stale_after}, past {missed}; {fix}",
        )
    elif drill.stale_after is not None and stale_after(drill) < stale_floor(drill.schedule):
        gap, floor = longest_gap(drill.schedule), stale_floor(drill.schedule)
        between = (
            f"{_days(floor)}, the {_days(gap)} between two runs of drill.schedule {drill.schedule} and a drill's own {_days(DRILL_DEADLINE)} "
            "(its Job's deadline)"
        )
        rare = rare_months(drill.schedule, DRILL_GAP)
        if rare is not None:
            # The schedule is warned of as naming months, so rare no drill means it (stacks.warn._rare_months; a weekday
            # written in the month field the likeliest): a staleAfter raised to the months it waits would bury that, so
            # the refusal names the schedule and its fix first.
            moved = rare.fix.rsplit(" write ", 1)[-1]
            after = stale_floor(moved) if " write " in rare.fix else None
            beside = (
                f", with staleAfter at least {_days(after)} (e.g. {_days(longest_gap(moved) + datetime.timedelta(days=1))})"
                if after is not None and stale_after(drill) < after
                else ""
            )
            why = "a day of the week written in the month field" if rare.weekday else f"rarer than a drill can mean, {DRILL_GAP.days} days at most"
            yield Problem(
                f"{DRILL}.staleAfter",
                f"{drill.stale_after} is shorter than {between}, and the schedule runs only in {rare.shown}: the schedule is the "
                f"likely mistake, {why} ({rare.fix}{beside}); for a drill that rare, set staleAfter to at least {_days(floor)} "
                f"(e.g. {_days(gap + datetime.timedelta(days=1))}), or leave it out",
            )
        else:
            yield Problem(
                f"{DRILL}.staleAfter",
                f"{drill.stale_after} is shorter than {between}: the alert would fire between good drills whenever one takes longer "
                f"than the one before; set it to at least {_days(floor)} (e.g. {_days(gap + datetime.timedelta(days=1))}), or leave "
                "it out",
            )
    found = parse_target(backup.target)
    if not isinstance(found, Target):
        return  # the target's own problem is reported
    if drill.arda is True and found.kind == "nfs":
        yield Problem(
            f"{DRILL}.arda",
            f"true, but Arda's etcd is not backed up to the target: talos-backup uploads only to S3, and {backup.target} is NFS; "
            "there is nothing for the drill to restore; leave arda out",
        )
    elif drill.arda is True and not arda_etcd_backup(backup):
        yield Problem(
            f"{DRILL}.arda",
            "true, but Arda's etcd is not backed up (backup.etcd.arda is false): there is nothing for the drill to restore; "
            "leave arda out, or turn etcd.arda on",
        )
    if ctx.arda is not None and drills(backup, ctx.ainur is not None)[0]:
        yield from _etcdutl_for_arda(ctx.arda)
    if drill.ainur is True and ctx.ainur is None:
        yield Problem(f"{DRILL}.ainur", "true, but the stack has no Ainur; leave ainur out")
    elif drill.ainur is True and found.kind == "nfs":
        yield Problem(
            f"{DRILL}.ainur",
            f"true, but with an NFS target ({backup.target}) k3s keeps the Ainur's snapshots on each valar's own disk, not on the "
            "target the drill reads; use an S3 target, or leave ainur out",
        )


def _days(gap: datetime.timedelta) -> str:
    return f"{gap.days}d" if gap.seconds == 0 else f"{gap.days * 24 + gap.seconds // 3600}h"


def arda_etcd_backup(backup: Backup) -> bool:
    """Whether talos-backup takes Arda's etcd snapshots: `etcd.arda`, else whether the target is S3 (the only one it
    uploads to)."""
    if backup.etcd.arda is not None:
        return backup.etcd.arda
    found = parse_target(backup.target)
    return isinstance(found, Target) and found.kind == "s3"


def read_values(value: Any, secure: type) -> tuple[dict[str, dict[str, bool]] | None, str | None]:
    """`iluvatar:appSecrets` as the rules see it: app -> name -> encrypted?, or why it is not a mapping of apps to secrets."""
    if isinstance(value, secure):
        return None, "is encrypted whole; set each value on its own: pulumi config set --secret --path 'iluvatar:appSecrets.<app>.<name>' <value>"
    if not isinstance(value, Mapping):
        return None, f"{show(type(value).__name__)} is not a mapping of apps to their secrets (app -> name -> value)"
    out: dict[str, dict[str, bool]] = {}
    for app, entries in value.items():
        if not isinstance(entries, Mapping):
            return None, f"{app}: not a mapping of secret names to values"
        out[str(app)] = {str(name): isinstance(v, secure) for name, v in entries.items()}
    return out, None
