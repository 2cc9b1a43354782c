"""A year unattended, day by day: the stand-ins' clocks moved 367 days past a deployment, and what the homelabber sees.

Every certificate is a real one (openssl, ending on the day a deployment gives it); each day is judged by the rule the
project's stand-ins model for the program that judges it, with the clock moved to that day:

- k3s renews a leaf certificate as it starts when it ends within its window, by the Pi's clock: the k3s stand-in's own
  `openssl x509 -checkend` (tests/plans/test_k3s.py's systemctl), its seconds moved by how far the day is from now;
- the Talos provider renews the talosconfig's client certificate within a month of its end and the kubeconfig within
  720 h (tests/talos_provider.py, the provider's code with file:line), at a `pulumi up`;
- pulumi-tls issues a local CA's certificate again at a `pulumi up` within its early renewal;
- the alerts are the stack's rendered rule (plans.monitoring.alert_rules, with the ends the deployment records),
  evaluated hour by hour by Prometheus's own rule evaluator (`promtool test rules`, tools/alert_check) over the hours
  before each checkpoint that decide what fires at it (`history`: the longest `for:` and look-back), over the series
  the exporters would serve: each Pi's textfile of its k3s certificates' ends, the blackbox probe of Headscale's
  certificate, Arda's machines' boot times; `iluvatar doctor` says what to do, and the restore drills fail on a backup
  older than its bound.

Two homelabbers: one who runs `pulumi up` on the day the doctor says "run `pulumi up` now", and one who does nothing.
The first never lets anything end and never sees an alert; for the second, Prometheus announces every end at least 21
days ahead (28 for what `pulumi up` renews), and nothing ends without an alert: nothing fails silently.
"""

from __future__ import annotations

import base64
import datetime
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from iluvatar import doctor
from plans import drill, k3s, lifetimes, monitoring, remote_access, rollout
from stacks import load_stack_file
from stacks.data import newest_within
from stacks.model import StackConfig
from tests import talos_provider
from tests.edit import HOMELAB
from tests.iluvatar.test_doctor import Issuer
from tests.test_drill import APPLETS, _newest_snapshot
from tests.test_drill_headscale import _backed_up, _drill
from tests.tools import busybox_applets
from tools import alert_check

DAY = datetime.timedelta(days=1)
YEAR = 367
# The deployment's day, fixed: the calendar decides how long the Talos provider's month is (certificates made by the
# Issuer start on 2026-01-01).
START = datetime.datetime(2027, 1, 4, tzinfo=datetime.UTC)
PIS = ("manwe", "eonwe", "ilmare")


def _b64(pem: str) -> str:
    return base64.b64encode(pem.encode()).decode()


def _at(when: datetime.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Homelab:
    """What a deployment holds on a day: each certificate as issued, and the outputs its last `pulumi up` recorded."""

    issuer: Issuer
    folder: Path
    k3s: dict[str, Path] = field(default_factory=dict)  # each Pi's k3s leaf certificate, as the Pi holds it
    recorded: dict[str, dict[str, Any]] = field(default_factory=dict)  # ainur.certificates, as the last up recorded it
    talosconfig: str = ""
    kubeconfig: str = ""
    local: dict[str, tuple[str, int, int]] = field(default_factory=dict)  # name: (PEM, validity hours, early renewal hours)
    renewed: list[tuple[int, str]] = field(default_factory=list)

    def issue(self, end: datetime.datetime) -> str:
        return self.issuer.leaf(_at(end))

    def outputs(self) -> dict[str, Any]:
        ca = self.issuer.ca
        kubeconfig = {
            "clusters": [{"name": "arda", "cluster": {"certificate-authority-data": _b64(ca)}}],
            "users": [{"name": "admin", "user": {"client-certificate-data": _b64(self.kubeconfig)}}],
        }
        return {
            "ainur": {"certificates": {pi: dict(entry) for pi, entry in self.recorded.items()}},
            "ainurKubeconfig": yaml.safe_dump({"clusters": [{"name": "ainur", "cluster": {"certificate-authority-data": _b64(ca)}}], "users": [{}]}),
            "arda": {"clientCertificateExpires": rollout.certificate_expiry(_b64(self.talosconfig))},
            "ardaKubeconfig": yaml.safe_dump(kubeconfig),
            "ardaTalosconfig": yaml.safe_dump({"contexts": {"arda": {"ca": _b64(ca)}}}),
            "caCertificate": ca,
            "localCertificates": {name: lifetimes.issued_entry(pem, early) for name, (pem, _, early) in self.local.items()},
        }


def _k3s_renews(path: Path, now: datetime.datetime) -> bool:
    """The k3s stand-in's rule as it starts (tests/plans/test_k3s.py's systemctl restart): `openssl x509 -checkend` of
    k3s's window, by the Pi's clock, here `now`: the seconds moved by how far `now` is from this machine's clock."""
    ahead = int((now - datetime.datetime.now(datetime.UTC)).total_seconds())
    window = k3s.CERTIFICATE_RENEW_DAYS * 86400
    if window + ahead < 0:
        # This machine's clock is past the window's end already (the test run long after 2027): whatever the
        # certificate, -checkend would need a time before now, which it does not take; compare the end instead.
        return _end(path.read_text()) < now + datetime.timedelta(seconds=window)
    done = subprocess.run(["openssl", "x509", "-checkend", str(window + ahead), "-noout", "-in", str(path)], capture_output=True, check=False)
    return done.returncode == 1  # "Certificate will expire"


def _end(pem: str) -> datetime.datetime:
    end = lifetimes.pem_end(pem)
    assert end is not None
    return datetime.datetime.strptime(end, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)


def deploy(folder: Path) -> Homelab:
    """The first `pulumi up`, on START: a year's leaves, each Pi's a few days apart (their first starts were)."""
    lab = Homelab(Issuer(folder / "ca"), folder)
    for i, pi in enumerate(PIS):
        path = folder / f"{pi}.crt"
        path.write_text(lab.issue(START + (365 - i) * DAY))
        lab.k3s[pi] = path
        lab.recorded[pi] = {"end": _at(_end(path.read_text())), "trigger": None}
    lab.talosconfig = lab.issue(START + 365 * DAY)
    lab.kubeconfig = lab.issue(START + 365 * DAY)
    lab.local = {
        "identity-dex": (lab.issue(START + 365 * DAY), 365 * 24, 30 * 24),
        "kms-tls": (lab.issue(START + 730 * DAY), 2 * 365 * 24, 30 * 24),
    }
    return lab


def pulumi_up(lab: Homelab, day: int) -> None:
    """A `pulumi up` on START + day, as the stand-ins model what it renews."""
    now = START + day * DAY
    for pi in PIS:
        # The k3s step runs when its trigger changes (plans.rollout.certificate_trigger), and restarts k3s, which renews.
        trigger = rollout.certificate_trigger({"certificates": lab.recorded}, pi, now)
        if trigger != lab.recorded[pi].get("trigger"):
            if _k3s_renews(lab.k3s[pi], now):
                lab.k3s[pi].write_text(lab.issue(now + 365 * DAY))
                lab.renewed.append((day, f"{pi}'s k3s certificates"))
            lab.recorded[pi] = {"end": _at(_end(lab.k3s[pi].read_text())), "trigger": trigger}
    if talos_provider.talos_client_needs_renewal(_b64(lab.talosconfig), now):
        lab.talosconfig = lab.issue(now + 365 * DAY)
        lab.renewed.append((day, "the talosconfig's client certificate"))
    if talos_provider.kubeconfig_needs_renewal(_b64(lab.kubeconfig), now):
        lab.kubeconfig = lab.issue(now + 365 * DAY)
        lab.renewed.append((day, "Arda's admin kubeconfig"))
    for name, (pem, hours, early) in list(lab.local.items()):
        if now >= _end(pem) - datetime.timedelta(hours=early):  # pulumi-tls's ready_for_renewal
            lab.local[name] = (lab.issue(now + datetime.timedelta(hours=hours)), hours, early)
            lab.renewed.append((day, f"the local CA's certificate {name}"))


# Prometheus's evaluator starts its clock at the Unix epoch: the year is moved so that START is its zero.
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
HOURS = YEAR * 24
HEADSCALE = "https://192.168.0.17/health"  # its LoadBalancer address on the LAN
ARDA = "tirion"


def _hour(when: datetime.datetime) -> int:
    return int((when - START).total_seconds()) // 3600


def _values(steps: list[tuple[int, int | None]], first: int, last: int) -> str:
    """A series piecewise constant from each step's hour to the next (None: no sample, as before its first step), from
    hour `first` to `last`, in promtool's expanding notation."""
    parts = []
    bounds = [(0, None), *steps] if steps[0][0] > 0 else steps
    for i, (start, value) in enumerate(bounds):
        end = bounds[i + 1][0] if i + 1 < len(bounds) else last + 1
        count = min(end, last + 1) - max(start, first)
        if count > 0:
            parts.append(f"_x{count}" if value is None else f"{value}+0x{count - 1}")
    return " ".join(parts)


_DURATION = re.compile(r"(\d+)([smhdw])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _duration(text: str) -> int:
    return sum(int(n) * _UNIT[u] for n, u in _DURATION.findall(text))


# An instant selector reads the newest sample up to five minutes back (prometheus v3.12.0 promql/engine.go:64).
LOOKBACK = 300


def history(rule: dict[str, Any], every: int = 3600) -> int:
    """How many hours before an evaluation the rule's series can change which alerts fire at it: an alert fires at an
    hour when its expression held at every hourly evaluation since `for:` before it (rules/alerting.go:526, a pending
    alert firing once `ts - ActiveAt >= holdDuration`; one evaluation false resets it), and each of those evaluations
    reads its ranges and offsets back, and an instant selector's five minutes. promtool starting that far before a
    checkpoint sees at the checkpoint exactly what it sees evaluating the year from its first hour."""
    worst = 0
    for group in rule["spec"]["groups"]:
        for r in group["rules"]:
            held = -(-_duration(r.get("for", "0s")) // every) * every  # the evaluations it must hold over
            back = sum(_duration(m) for m in re.findall(r"\[[^\]:]*\]|offset \w+", r["expr"]))
            worst = max(worst, held + back + LOOKBACK)
    return -(-worst // 3600) + 1


def _windows(hours: list[int], back: int) -> list[tuple[int, list[int]]]:
    """The checkpoints grouped into windows, each from `back` hours before its first checkpoint (or the year's start)
    to its last; windows that would overlap are one."""
    out: list[tuple[int, list[int]]] = []
    for hour in sorted(hours):
        start = max(0, hour - back)
        if out and start <= out[-1][1][-1]:
            out[-1][1].append(hour)
        else:
            out.append((start, [hour]))
    return out


def _at_hour(hour: int) -> str:
    return f"{hour // 24}d{hour % 24}h"


def _seconds(when: datetime.datetime) -> int:
    """A time as promtool's clock reads it."""
    return int((when - START).total_seconds())


@dataclass(frozen=True)
class Year:
    """What the exporters serve over the year and the ends the last `pulumi up` wrote into the rule."""

    ends: dict[str, str | None]
    series: list[tuple[str, list[tuple[int, int | None]]]]


def _pi_series(lab: Homelab) -> list[tuple[str, list[tuple[int, int | None]]]]:
    """Each Pi's node-exporter: up, and its textfile's ends of its k3s leaf and CA certificates."""
    out: list[tuple[str, list[tuple[int, int | None]]]] = []
    for pi in PIS:
        where = f'job="{monitoring.AINUR_JOB}",instance="{pi}:{monitoring.NODE_EXPORTER_PORT}",node="{pi}"'
        out.append((f"up{{{where}}}", [(0, 1)]))
        leaf = f'{k3s.CERTIFICATE_METRIC}{{{where},certificate="/var/lib/rancher/k3s/server/tls/client-admin.crt"}}'
        out.append((leaf, [(0, _seconds(_end(lab.k3s[pi].read_text())))]))
        ca = f'{k3s.CERTIFICATE_METRIC}{{{where},certificate="/var/lib/rancher/k3s/server/tls/client-ca.crt",ca="true"}}'
        out.append((ca, [(0, _seconds(START + 3650 * DAY))]))
    return out


def _ends(lab: Homelab) -> dict[str, str | None]:
    """The ends `pulumi up` writes into the rule (plans.lifetimes.recorded_ends over what the lab's last up holds), on
    promtool's clock."""
    outputs = lab.outputs()
    pems = {name: pem for name, (pem, _, _) in lab.local.items()}
    found = lifetimes.recorded_ends(outputs["arda"], outputs["ardaKubeconfig"], outputs["ardaTalosconfig"], outputs["caCertificate"], pems)
    moved: dict[str, str | None] = {}
    for what, end in found.items():
        assert end is not None, what
        moved[what] = _at(EPOCH + (datetime.datetime.strptime(end, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC) - START))
    return moved


def _expand(text: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m.group(1), ""), text)


# Prometheus evaluates the rules every 30 s (prometheus-operator v0.93.0 monitoring.coreos.com_prometheuses.yaml:
# 4026-4030; kube-prometheus v0.18.0 sets no evaluationInterval). Every series here but the Headscale probe's is scraped
# every 30 s and steps only on the hour, so evaluating those alerts on the hour sees what the 30 s evaluations see; the
# probe is scraped once an interval (its Probe's), so its alerts are evaluated at Prometheus's own 30 s, between samples.
EVALUATION = 30


def _sparse(rule: dict[str, Any]) -> set[str]:
    """The alerts reading the Headscale probe's series, sampled more sparsely than Prometheus evaluates."""
    return {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"] if monitoring.HEADSCALE_PROBE_JOB in r["expr"]}


def _only(rule: dict[str, Any], names: set[str], keep: bool) -> dict[str, Any]:
    groups = [{**g, "rules": [r for r in g["rules"] if (r["alert"] in names) == keep]} for g in rule["spec"]["groups"]]
    return {**rule, "spec": {**rule["spec"], "groups": [g for g in groups if g["rules"]]}}


def cases(
    stack: StackConfig, year: Year, expected: dict[int, dict[str, list[dict[str, str]]]]
) -> list[tuple[dict[str, Any], list[dict[str, Any]], str]]:
    """The stack's rule with the year's ends, and promtool's cases for it: at each hour of `expected`, every alert of
    the rule fires exactly for the label sets given (none for an alert not named). The alerts on the hourly probe are
    one suite, evaluated every EVALUATION seconds, the rest another, evaluated each hour; promtool evaluates each only
    over a window before each checkpoint (`history`), each window a test group starting at its own time on promtool's
    clock (`start_timestamp`), so the ends written in the rule and the series' values stay the year's."""
    whole = monitoring.alert_rules(stack, year.ends)
    sparse = _sparse(whole)
    out = []
    for rule, every in ((_only(whole, sparse, keep=False), 3600), (_only(whole, sparse, keep=True), EVALUATION)):
        if rule["spec"]["groups"]:
            mine = {hour: {k: v for k, v in firing.items() if (k in sparse) == (every == EVALUATION)} for hour, firing in expected.items()}
            out.append((rule, _groups(rule, year, mine, every), f"{every}s"))
    return out


def _groups(rule: dict[str, Any], year: Year, expected: dict[int, dict[str, list[dict[str, str]]]], every: int) -> list[dict[str, Any]]:
    by_name: dict[str, list[dict[str, Any]]] = {}
    for group in rule["spec"]["groups"]:
        for r in group["rules"]:
            by_name.setdefault(r["alert"], []).append(r)
    groups = []
    for start, hours in _windows(list(expected), history(rule, every)):
        checks = []
        for hour in hours:
            firing = expected[hour]
            # Every alert of the rule, and those expected whether the rule has them or not (promtool fails on a missing one).
            for name in sorted(set(by_name) | set(firing)):
                found = []
                for labels in firing.get(name, []):
                    rule_of = next((r for r in by_name.get(name, []) if all(labels.get(k) == v for k, v in r["labels"].items())), {})
                    annotations = {k: _expand(v, labels) for k, v in rule_of.get("annotations", {}).items()}
                    found.append({"exp_labels": labels, "exp_annotations": annotations})
                checks.append({"eval_time": f"{hour - start}h", "alertname": name, "exp_alerts": found})
        groups.append(
            {
                "name": f"the year from {_at_hour(start)} to {_at_hour(hours[-1])}",
                "interval": "1h",
                "start_timestamp": str(start * 3600),
                "input_series": [{"series": name, "values": _values(steps, start, hours[-1])} for name, steps in year.series],
                "alert_rule_test": checks,
            }
        )
    return groups


def judge(*years: tuple[StackConfig, Year, dict[int, dict[str, list[dict[str, str]]]]]) -> subprocess.CompletedProcess[str]:
    """promtool's verdict on each year's cases (`cases`), all in one run."""
    suites = [suite for year in years for suite in cases(*year)]
    return alert_check.unit_test_suites([(rule, groups) for rule, groups, _ in suites], intervals=[every for _, _, every in suites])


def evaluate(stack: StackConfig, year: Year, expected: dict[int, dict[str, list[dict[str, str]]]]) -> subprocess.CompletedProcess[str]:
    return judge((stack, year, expected))


def ended(lab: Homelab, now: datetime.datetime) -> list[str]:
    """What has ended by `now`: what a homelab loses (a Pi's k3s, Arda's API for Pulumi, Dex's TLS)."""
    ends = {f"{pi}'s k3s": _end(p.read_text()) for pi, p in lab.k3s.items()}
    ends |= {"talosconfig": _end(lab.talosconfig), "kubeconfig": _end(lab.kubeconfig)}
    ends |= {name: _end(pem) for name, (pem, _, _) in lab.local.items()}
    return sorted(name for name, end in ends.items() if end <= now)


@pytest.fixture(scope="module")
def stack() -> StackConfig:
    return load_stack_file(HOMELAB)


# The rest of the lab, healthy all year: the alerts on a target's absence (the log store, vmalert) stay quiet.
HEALTHY: list[tuple[str, list[tuple[int, int | None]]]] = [
    ('up{job="victoria-logs",namespace="monitoring"}', [(0, 1)]),
    ('up{job="vmalert-logs"}', [(0, 1)]),
]


def _probe_labels(stack: StackConfig) -> dict[str, str]:
    """The labels Prometheus gives the series of the rendered Probe's target: job from its jobName, instance the target
    (prometheus-operator v0.93.0 pkg/prometheus/promcfg.go:1767, :1814), namespace the Probe's (:1791)."""
    probe = monitoring.headscale_probe(stack)
    assert probe is not None
    [target] = probe["spec"]["targets"]["staticConfig"]["static"]
    return {"job": probe["spec"]["jobName"], "instance": target, "namespace": probe["metadata"]["namespace"]}


def _headscale(stack: StackConfig, renewed_until: int) -> list[tuple[str, list[tuple[int, int | None]]]]:
    """The blackbox probe of Headscale's certificate, one sample per hour (its Probe's interval): Let's Encrypt's 90
    days, renewed by autocert 30 days before each end while its renewals succeed (until day `renewed_until`); past the
    last end, the probe fails verification and serves no end (blackbox-exporter's http prober sets
    probe_ssl_earliest_cert_expiry only after a handshake)."""
    assert monitoring.HEADSCALE_PROBE_INTERVAL == "1h"
    end = 90
    steps: list[tuple[int, int | None]] = [(0, _seconds(START + 90 * DAY))]
    success: list[tuple[int, int | None]] = [(0, 1)]
    while end - 30 <= renewed_until and end - 30 < YEAR:
        end += 60
        steps.append(((end - 90) * 24, _seconds(START + end * DAY)))
    if end < YEAR:
        steps.append((end * 24, None))
        success.append((end * 24, 0))
    where = ",".join(f'{k}="{v}"' for k, v in _probe_labels(stack).items())
    return [(f"probe_ssl_earliest_cert_expiry{{{where}}}", steps), (f"probe_success{{{where}}}", success)]


def _arda(boots: list[int]) -> list[tuple[str, list[tuple[int, int | None]]]]:
    """An Arda machine's boot time (kube-prometheus's node-exporter), booted on each day of `boots` (the first may be
    before the deployment)."""
    steps: list[tuple[int, int | None]] = [(max(day, 0) * 24, _seconds(START + day * DAY)) for day in boots]
    return [(f'node_boot_time_seconds{{job="node-exporter",instance="{ARDA}"}}', steps)]


def test_a_year_with_the_doctor_s_pulumi_up_nothing_ends_and_no_alert_fires(stack: StackConfig, tmp_path: Path) -> None:
    """The homelabber reads `iluvatar doctor` each day and runs `pulumi up` on the day it says "run `pulumi up` now":
    three runs in 367 days, each renewing what it named, nothing ended, and Prometheus, evaluating the rule each run
    wrote, fires nothing up to the next run (Headscale renewing itself; Arda's machines restarted by one Talos upgrade,
    on day 200)."""
    lab = deploy(tmp_path)
    ups: list[int] = []
    held: list[tuple[Year, int]] = []
    steady = [*HEALTHY, *_headscale(stack, YEAR), *_arda([-10, 200])]
    for day in range(YEAR):
        now = START + day * DAY
        assert ended(lab, now) == [], day
        text, _ = doctor.report("homelab", stack, lab.outputs(), now)
        if "run `pulumi up` now" in text:
            ups.append(day)
            held.append((Year(_ends(lab), [*_pi_series(lab), *steady]), _hour(now)))
            pulumi_up(lab, day)
            # The run renewed what the doctor named: asked again that day, it says "now" of nothing.
            assert "run `pulumi up` now" not in doctor.report("homelab", stack, lab.outputs(), now)[0], day
    held.append((Year(_ends(lab), [*_pi_series(lab), *steady]), HOURS))
    # Up to each run, and after the last to the year's end, the rule the last run wrote fires nothing.
    quiet: dict[str, list[dict[str, str]]] = {}
    result = judge(*((stack, year, {hour: quiet}) for year, hour in held))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == 2 * len(held) == 8  # each rule's hourly suite and its probe's
    # The doctor lists what ends within 90 days: the Pis' k3s certificates from 90 days before the first of them ends
    # (ilmare's, day 363: inside k3s's 120 days, so one run renews all three), the talosconfig's and Dex's on the day
    # their month and 30 days open (a month from day 335 reaches day 365), Arda's kubeconfig the day after, strictly
    # within its 720 h; the KMS's lasts two years.
    assert ups == [363 - lifetimes.DOCTOR_DAYS, 335, 336]
    assert lab.renewed == [
        (273, "manwe's k3s certificates"),
        (273, "eonwe's k3s certificates"),
        (273, "ilmare's k3s certificates"),
        (335, "the talosconfig's client certificate"),
        (335, "the local CA's certificate identity-dex"),
        (336, "Arda's admin kubeconfig"),
    ]
    # A year on, the next ends are a year away again, and the doctor lists nothing due.
    final = doctor.report("homelab", stack, lab.outputs(), START + YEAR * DAY)
    assert "  nothing\n" in final[0]


def _pi_labels(pi: str) -> dict[str, str]:
    return {
        "job": monitoring.AINUR_JOB,
        "instance": f"{pi}:{monitoring.NODE_EXPORTER_PORT}",
        "node": pi,
        "certificate": "/var/lib/rancher/k3s/server/tls/client-admin.crt",
        "severity": "warning",
    }


def test_a_year_without_any_pulumi_up_every_end_is_alerted_ahead(stack: StackConfig, tmp_path: Path) -> None:
    """Nobody runs anything, Headscale's renewals stop on day 100 (a port forward lost), and no Arda machine restarts:
    Prometheus's evaluator, on the rule the deployment wrote, fires an alert for each end at least 21 days before it
    (the Pis' k3s certificates, the Talos provider's, Dex's, Headscale's, the kubelets' serving certificates), keeps it
    firing, and fires nothing else; none of them ends unannounced."""
    lab = deploy(tmp_path)
    ends: dict[str, int] = {}
    first_listed: dict[str, int] = {}
    for day in range(YEAR):
        now = START + day * DAY
        found, unknown = doctor.ends(stack, lab.outputs(), now)
        assert unknown == [], day
        for e in found:
            if e.when <= now + doctor.WINDOW:
                first_listed.setdefault(e.what, day)
        for name in ended(lab, now):
            ends.setdefault(name, day)
    # `iluvatar doctor`, for whoever runs it, lists each 90 days ahead.
    assert first_listed == {
        "ilmare's k3s certificates": 363 - 90,
        "eonwe's k3s certificates": 364 - 90,
        "manwe's k3s certificates": 365 - 90,
        "the talosconfig's client certificate": 365 - 90,
        "Arda's admin kubeconfig": 365 - 90,
        "the local CA's certificate identity-dex": 365 - 90,
    }
    assert ends == {
        "eonwe's k3s": 364,
        "identity-dex": 365,
        "ilmare's k3s": 363,
        "kubeconfig": 365,
        "manwe's k3s": 365,
        "talosconfig": 365,
    }
    # Each alert (its labels) with the hour it first fires and, for Headscale's expiry, the hour it gives way to the
    # probe's failure at the certificate's end (day 150: renewed on day 60, not on day 120).
    credential = {what: {"credential": what, "severity": "warning"} for what in (lifetimes.TALOSCONFIG_END, lifetimes.KUBECONFIG_END)}
    credential["dex"] = {"credential": "the local CA's certificate identity-dex", "severity": "warning"}
    probe = _probe_labels(stack)
    assert probe == {"job": monitoring.HEADSCALE_PROBE_JOB, "instance": HEADSCALE, "namespace": "monitoring"}
    fires: list[tuple[str, dict[str, str], int, int | None]] = [
        # No `for`: the first hour past 28 days before the end.
        *((monitoring.CREDENTIAL_ALERT, labels, 337 * 24 + 1, None) for labels in credential.values()),
        # `for: 1h`: an hour past the first hour inside 30 days.
        ("AinurCertificateExpiring", _pi_labels("ilmare"), 333 * 24 + 2, None),
        ("AinurCertificateExpiring", _pi_labels("eonwe"), 334 * 24 + 2, None),
        ("AinurCertificateExpiring", _pi_labels("manwe"), 335 * 24 + 2, None),
        # Read back 75 minutes: still firing the hour its end passes, gone the next.
        ("HeadscaleCertificateExpiring", {**probe, "severity": "critical"}, 129 * 24 + 2, 150 * 24 + 1),
        ("HeadscaleCertificateUnknown", {**probe, "severity": "warning"}, 150 * 24 + 6, None),
        # Booted ten days before the deployment: 335 days up on day 325.
        (monitoring.UNREBOOTED_ALERT, {"job": "node-exporter", "instance": ARDA, "severity": "warning"}, 325 * 24 + 2, None),
    ]
    hours = sorted({h for _, _, first, gone in fires for h in (first - 1, first, *([gone - 1, gone] if gone else []))} | {HOURS})
    expected: dict[int, dict[str, list[dict[str, str]]]] = {}
    for hour in hours:
        for name, labels, first, gone in fires:
            if first <= hour and (gone is None or hour < gone):
                expected.setdefault(hour, {}).setdefault(name, []).append(labels)
        expected.setdefault(hour, {})
    year = Year(_ends(lab), [*HEALTHY, *_pi_series(lab), *_headscale(stack, 100), *_arda([-10])])
    result = evaluate(stack, year, expected)
    assert result.returncode == 0, result.stdout + result.stderr
    # Every end is alerted ahead: 28 days or more for what `pulumi up` renews, 21 for Headscale's (day 150), 40 for the
    # kubelets'.
    first_fired = {f"{name} {labels.get('credential') or labels.get('node') or labels['instance']}": h // 24 for name, labels, h, _ in fires}
    assert first_fired == {
        "CredentialExpiring the talosconfig's client certificate": 337,
        "CredentialExpiring Arda's admin kubeconfig": 337,
        "CredentialExpiring the local CA's certificate identity-dex": 337,
        "AinurCertificateExpiring ilmare": 333,
        "AinurCertificateExpiring eonwe": 334,
        "AinurCertificateExpiring manwe": 335,
        "HeadscaleCertificateExpiring https://192.168.0.17/health": 129,
        "HeadscaleCertificateUnknown https://192.168.0.17/health": 150,
        "ArdaMachineNotRestarted tirion": 325,
    }


def test_an_alert_missing_from_the_rule_fails_the_year(stack: StackConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The year is judged by the rule as rendered: without Headscale's probe alerts, its certificate would end on day 150
    with nothing fired, and the evaluator says so."""
    lab = deploy(tmp_path)
    monkeypatch.setattr(monitoring, "headscale_alerts", lambda _: [])
    year = Year(_ends(lab), [*HEALTHY, *_pi_series(lab), *_headscale(stack, 100), *_arda([200])])
    probe = {**_probe_labels(stack), "severity": "critical"}
    hour = 129 * 24 + 2
    result = evaluate(stack, year, {hour: {"HeadscaleCertificateExpiring": [probe]}})
    assert result.returncode == 1
    # The window's group, named by the year's hours; the time promtool names is from the window's start.
    back = history(monitoring.alert_rules(stack, year.ends))
    said = result.stdout + result.stderr
    assert f"name: the year from {_at_hour(hour - back)} to 129d2h,\n    alertname: HeadscaleCertificateExpiring, time: {back}h," in said, said


@pytest.fixture(scope="module")
def alpine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """busybox's applets as the restic image has them, for the drill's script (tests/test_drill_headscale.py's)."""
    return busybox_applets(tmp_path_factory.mktemp("alpine"), (*APPLETS, "date"))


def test_backups_that_stop_fail_the_next_drill_and_fire_its_alert(stack: StackConfig, tmp_path: Path, alpine: Path) -> None:
    """Headscale's state backup stops after day 100's (its target's keys rotated). Each weekly drill (Sunday 04:30) is
    the real drill script over a real restic repository, its clock moved to that Sunday: day 97's passes, day 104's, the
    first past the two days' bound, fails. kube-state-metrics' series of the drill's CronJob then fire
    RestoreDrillFailed under Prometheus's evaluator, four days after the last backup, and nothing before."""
    assert stack.backup is not None
    assert stack.backup.drill.schedule == "30 4 * * 0"
    assert newest_within(remote_access.STATE_BACKUP_SCHEDULE) == datetime.timedelta(days=2)
    v = _backed_up(tmp_path)
    _, _, taken = _newest_snapshot(v)
    last_backup = START + 100 * DAY + datetime.timedelta(hours=4, minutes=17)
    runs = [day for day in range(90, 111) if (START + day * DAY).weekday() == 6]
    assert runs == [90, 97, 104]
    passed: dict[int, bool] = {}
    for day in runs[1:]:
        run = START + day * DAY + datetime.timedelta(hours=4, minutes=30)
        # The drill's clock: as far past the snapshot as the run is past day 100's backup (the newest on each run up to it).
        ahead = max(run - last_backup, datetime.timedelta(minutes=13))
        fresh = tmp_path / f"run-{day}"  # each run's own scratch folder, emptyDir and clock
        (fresh / "scratch").mkdir(parents=True)
        (fresh / "tmp").mkdir()
        passed[day] = _drill(stack, {**v, "tmp": fresh}, alpine, taken + int(ahead.total_seconds())).returncode == 0
    assert passed == {97: True, 104: False}
    # The CronJob's series as kube-state-metrics serves them on promtool's clock: each run's schedule time from the
    # hour after it, the last success from the hour after a passing run.
    where = f'namespace="{drill.NAMESPACE}",cronjob="{drill.cronjob_name(drill.HEADSCALE)}"'
    scheduled = [(day * 24 + 5, _seconds(START + day * DAY + datetime.timedelta(hours=4, minutes=30))) for day in runs]
    succeeded = [(h, t) for (h, t), day in zip(scheduled, runs, strict=True) if passed.get(day, True)]
    series: list[tuple[str, list[tuple[int, int | None]]]] = [
        *HEALTHY,
        (
            f'kube_cronjob_labels{{{where},label_iluvatar_dev_drill="{drill.HEADSCALE}",label_iluvatar_dev_drill_kind="{drill.HEADSCALE_KIND}"}}',
            [(0, 1)],
        ),
        (f"kube_cronjob_status_last_schedule_time{{{where}}}", [(0, None), *scheduled]),
        (f"kube_cronjob_status_last_successful_time{{{where}}}", [(0, None), *succeeded]),
        (f"kube_cronjob_status_active{{{where}}}", [(0, 0)]),
        (f"kube_cronjob_created{{{where}}}", [(0, 0)]),
    ]
    named = {
        "namespace": drill.NAMESPACE,
        "cronjob": drill.cronjob_name(drill.HEADSCALE),
        "label_iluvatar_dev_drill": drill.HEADSCALE,
        "label_iluvatar_dev_drill_kind": drill.HEADSCALE_KIND,
        "severity": "critical",
    }
    # `for: 5m`: pending at 05:00, when the failed run shows, firing at the next evaluation.
    result = evaluate(stack, Year({}, series), {104 * 24 + 5: {}, 104 * 24 + 6: {"RestoreDrillFailed": [named]}})
    assert result.returncode == 0, result.stdout + result.stderr
