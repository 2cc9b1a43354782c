"""`iluvatar doctor STACK --outputs FILE [--on YYYY-MM-DD]`: what ends within 90 days of a deployment, and what to do.

It reads the deployed stack's outputs, as `pulumi stack output --json --show-secrets` writes them, for the ends the
program records or can read from what it exports (plans.lifetimes has every lifetime; this is the part with a date):

- each Pi's k3s certificates (`ainur.certificates.<pi>.end`, which its k3s step records; its clock when it was behind),
  and the k3s CA (`ainurKubeconfig`'s certificate-authority-data);
- the talosconfig's client certificate (`arda.clientCertificateExpires`) and Talos's CA (`ardaTalosconfig`), Arda's
  admin kubeconfig's client certificate and Kubernetes CA (`ardaKubeconfig`);
- the local CA (`caCertificate`) and each certificate it issued (`localCertificates`: Dex's, Argo CD's, the KMS's).

Each is listed with what to do as of the day (`--on`, default today): the `pulumi up` that renews it and from when, or
the runbook for what nothing renews. What the outputs cannot say (a secret hidden, a Pi with no recorded end, a clock
found behind) is listed too: nothing is left out silently. Exit 0 when nothing ends within the window and nothing is
unknown, 1 otherwise (a cron job's mail).
"""

from __future__ import annotations

import base64
import datetime
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from plans import lifetimes, rollout
from stacks import outputs as exports
from stacks.model import StackConfig

WINDOW = datetime.timedelta(days=lifetimes.DOCTOR_DAYS)
DAY2 = "docs/day2.md"


@dataclass(frozen=True)
class End:
    """Something that ends at `when`, and what to do about it as of the day asked."""

    when: datetime.datetime
    what: str
    todo: str


def _time(text: str) -> datetime.datetime:
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)


def _day(when: datetime.datetime) -> str:
    return when.strftime("%Y-%m-%d")


def _by_up(end: datetime.datetime, due: bool, first: datetime.datetime, on: datetime.datetime, does: str, ended: str) -> str:
    """What to do about something a `pulumi up` renews, as of `on`: `due` when a run on `on` renews it, else from the
    day `first`."""
    if end <= on:
        return ended
    if due:
        return f"run `pulumi up` now: {does}"
    return f"a `pulumi up` on or after {_day(first)} {does}; nothing to do before"


def _first_day(renews: Callable[[datetime.datetime], bool], end: datetime.datetime, longest: datetime.timedelta) -> datetime.datetime:
    """The first day (at 00:00 UTC) on which a run renews what ends at `end`, by the renewer's own rule `renews(now)`."""
    day = (end - longest - datetime.timedelta(days=2)).replace(hour=0, minute=0, second=0, microsecond=0)
    while not renews(day):
        day += datetime.timedelta(days=1)
    return day


def _renewal(
    end: datetime.datetime, on: datetime.datetime, renews: Callable[[datetime.datetime], bool], longest: datetime.timedelta
) -> tuple[bool, datetime.datetime]:
    return renews(on), _first_day(renews, end, longest)


def _within(end: datetime.datetime, window: datetime.timedelta) -> Callable[[datetime.datetime], bool]:
    """A run renews once the end is strictly within `window`: the k3s step's trigger (plans.rollout.certificate_trigger)
    and the Talos provider's kubeconfig (NotAfter before now + 720 h, tests/talos_provider.py)."""
    return lambda now: end < now + window


def _talos_month(end: datetime.datetime) -> Callable[[datetime.datetime], bool]:
    """The Talos provider's talosconfig: NotAfter before now + one month (Go's AddDate(0, 1, 0), plans.rollout.add_month)."""
    return lambda now: end < rollout.add_month(now)


def _from_window(end: datetime.datetime, window: datetime.timedelta) -> Callable[[datetime.datetime], bool]:
    """pulumi-tls's ready_for_renewal, from the moment its early renewal window opens (its exact bound unverified)."""
    return lambda now: now >= end - window


def _pem_b64_end(data: object) -> str | None:
    """The end of a certificate given as base64 of its PEM (kubeconfigs', talosconfigs'), or None."""
    return rollout.certificate_expiry(data) if isinstance(data, str) else None


def _kube_parts(text: object) -> tuple[str | None, str | None]:
    """A kubeconfig's (first) cluster CA's end and its (first) user's client certificate's end."""
    try:
        doc = yaml.safe_load(text) if isinstance(text, str) else None
    except yaml.YAMLError:
        doc = None
    if not isinstance(doc, dict):
        return None, None
    clusters, users = doc.get("clusters") or [{}], doc.get("users") or [{}]
    ca = _pem_b64_end(((clusters[0] or {}).get("cluster") or {}).get("certificate-authority-data"))
    client = _pem_b64_end(((users[0] or {}).get("user") or {}).get("client-certificate-data"))
    return ca, client


def _talos_ca(text: object) -> str | None:
    try:
        doc = yaml.safe_load(text) if isinstance(text, str) else None
    except yaml.YAMLError:
        return None
    contexts = doc.get("contexts") if isinstance(doc, dict) else None
    for context in (contexts or {}).values():
        if isinstance(context, dict):
            return _pem_b64_end(context.get("ca"))
    return None


def _hidden(value: object) -> bool:
    return value == "[secret]" or (isinstance(value, dict) and "4dabf18193072939515e22adb298388d" in value)


def _ca(what: str, end: str, how: str) -> End:
    when = _time(end)
    return End(when, what, f"nothing renews it: {how}")


def ends(stack: StackConfig, outputs: Mapping[str, Any], on: datetime.datetime) -> tuple[list[End], list[str]]:
    """Every end the outputs record or carry, and what they cannot say (each a sentence naming the output)."""
    found: list[End] = []
    unknown: list[str] = []
    if stack.ainur is not None:
        ainur = outputs.get(exports.AINUR) if isinstance(outputs.get(exports.AINUR), Mapping) else {}
        assert isinstance(ainur, Mapping)
        pis = [n.name for n in stack.ainur_nodes]
        for pi in pis:
            entry = rollout.recorded_certificates(ainur, pi)
            end, clock = entry.get("end"), entry.get("clock")
            if isinstance(clock, str):
                unknown.append(
                    f"{pi}: at the last run its clock said {clock}, behind: k3s renews by the Pi's own clock; set it (timedatectl status), then `pulumi up`"
                )
            if not isinstance(end, str):
                unknown.append(
                    f"{pi}: the outputs record no end of its k3s certificates (ainur.certificates.{pi}.end): run `pulumi up`, whose k3s step records it"
                )
                continue
            when = _time(end)
            window = datetime.timedelta(days=rollout.CERTIFICATE_TRIGGER_DAYS)
            found.append(
                End(
                    when,
                    f"{pi}'s k3s certificates",
                    _by_up(
                        when,
                        *_renewal(when, on, _within(when, window), window),
                        on,
                        f"its k3s step restarts k3s on {pi} (gated, one Pi at a time), which renews them",
                        f"ended: `pulumi up` restarts k3s on {pi} at once; with several valar all ended, restart k3s on every valar at once first ({DAY2}#the-ainurs-k3s-certificates)",
                    ),
                )
            )
        kubeconfig = outputs.get(exports.AINUR_KUBECONFIG)
        if _hidden(kubeconfig):
            unknown.append(f"{exports.AINUR_KUBECONFIG} is hidden: write the outputs with `pulumi stack output --json --show-secrets`")
        elif (ca := _kube_parts(kubeconfig)[0]) is not None:
            found.append(
                _ca("the k3s CA", ca, "rotate it with `k3s certificate rotate-ca` on the first valar, then restart k3s on every Pi, one at a time")
            )
    arda = outputs.get(exports.ARDA) if isinstance(outputs.get(exports.ARDA), Mapping) else {}
    assert isinstance(arda, Mapping)
    client = arda.get("clientCertificateExpires")
    if isinstance(client, str):
        when = _time(client)
        found.append(
            End(
                when,
                "the talosconfig's client certificate",
                _by_up(
                    when,
                    *_renewal(when, on, _talos_month(when), datetime.timedelta(days=31)),
                    on,
                    "renews it (the Talos provider; every Arda step runs again, as the day-2 plan says)",
                    "ended: `pulumi up` renews it (the Talos provider signs a new one from the secrets in the state)",
                ),
            )
        )
    else:
        unknown.append("arda.clientCertificateExpires is not in the outputs: run `pulumi up`, which records it")
    kubeconfig = outputs.get(exports.ARDA_KUBECONFIG)
    if _hidden(kubeconfig):
        unknown.append(f"{exports.ARDA_KUBECONFIG} is hidden: write the outputs with `pulumi stack output --json --show-secrets`")
    else:
        ca, user = _kube_parts(kubeconfig)
        if user is not None:
            when = _time(user)
            window = datetime.timedelta(hours=lifetimes.TALOS_KUBECONFIG_RENEWAL_HOURS)
            found.append(
                End(
                    when,
                    "Arda's admin kubeconfig",
                    _by_up(
                        when,
                        *_renewal(when, on, _within(when, window), window),
                        on,
                        "renews it (the Talos provider)",
                        "ended: `pulumi up` renews it (the Talos provider)",
                    ),
                )
            )
        if ca is not None:
            found.append(_ca("Arda's Kubernetes CA", ca, "rotate Arda's CAs by hand (talosctl rotate-ca) before then"))
    talosconfig = outputs.get(exports.ARDA_TALOSCONFIG)
    if _hidden(talosconfig):
        unknown.append(f"{exports.ARDA_TALOSCONFIG} is hidden: write the outputs with `pulumi stack output --json --show-secrets`")
    elif (ca := _talos_ca(talosconfig)) is not None:
        found.append(_ca("Talos's CA", ca, "rotate Arda's CAs by hand (talosctl rotate-ca) before then"))
    pem = outputs.get(exports.CA_CERTIFICATE)
    if isinstance(pem, str) and (ca := lifetimes.pem_end(pem)) is not None:
        found.append(_ca("the local CA", ca, "make a new one and hand it to every device that trusts this one, before then"))
    issued = outputs.get(exports.LOCAL_CERTIFICATES)
    if not isinstance(issued, Mapping):
        unknown.append(f"{exports.LOCAL_CERTIFICATES} is not in the outputs (a deployment before this version): run `pulumi up`, which exports it")
    else:
        for name, entry in sorted(issued.items()):
            end = entry.get("end") if isinstance(entry, Mapping) else None
            hours = entry.get("earlyRenewalHours") if isinstance(entry, Mapping) else None
            if not isinstance(end, str) or not isinstance(hours, int):
                unknown.append(f"localCertificates.{name} has no end: run `pulumi up`")
                continue
            when = _time(end)
            found.append(
                End(
                    when,
                    f"the local CA's certificate {name}",
                    _by_up(
                        when,
                        *_renewal(when, on, _from_window(when, datetime.timedelta(hours=hours)), datetime.timedelta(hours=hours)),
                        on,
                        "issues it again (pulumi-tls)",
                        "ended: `pulumi up` issues it again (pulumi-tls)",
                    ),
                )
            )
    return sorted(found, key=lambda e: (e.when, e.what)), unknown


def report(name: str, stack: StackConfig, outputs: Mapping[str, Any], on: datetime.datetime) -> tuple[str, int]:
    """What `iluvatar doctor` prints, and its exit code."""
    found, unknown = ends(stack, outputs, on)
    by = on + WINDOW
    due = [e for e in found if e.when <= by]
    later = [e for e in found if e.when > by]
    lines = [f"{name} on {_day(on)}: what ends within {lifetimes.DOCTOR_DAYS} days (by {_day(by)}):"]
    for e in due:
        left = (e.when - on).days
        ago = f"ended {-left} days ago" if e.when <= on else f"in {left} days"
        lines.append(f"  {_day(e.when)} ({ago})  {e.what}: {e.todo}")
    if not due:
        lines.append("  nothing")
    if unknown:
        lines.append("not known from these outputs:")
        lines += [f"  {u}" for u in unknown]
    if later:
        lines.append(f"later: {len(later)} more, the first {later[0].what} on {_day(later[0].when)}")
    if stack.backup is not None:
        if stack.monitoring is not None and stack.backup.drill.enabled:
            lines.append(
                "backups: their freshness is not in the outputs; the restore drill, on its schedule "
                f'(backup.drill.schedule "{stack.backup.drill.schedule}"), fails on a backup older than its bound '
                "(RestoreDrillFailed), RestoreDrillStale on a drill that stopped passing"
            )
        else:
            lines.append("backups: no restore drill checks their freshness (it needs the monitoring layer and backup.drill.enabled)")
    lines.append(f"every lifetime, and who renews it: {DAY2}#what-ends-and-who-renews-it")
    return "\n".join(lines) + "\n", 1 if due or unknown else 0


def b64(pem: str) -> str:
    """A PEM as kubeconfigs and talosconfigs carry it (base64), for the tests' outputs."""
    return base64.b64encode(pem.encode()).decode()
