"""A year unattended, day by day: the stand-ins' clocks moved 367 days past a deployment, and what the homelabber sees.

Every certificate is a real one (openssl, ending on the day a deployment gives it); each day is judged by the rule the
project's stand-ins model for the program that judges it, with the clock moved to that day:

- k3s renews a leaf certificate as it starts when it ends within its window, by the Pi's clock: the k3s stand-in's own
  `openssl x509 -checkend` (tests/plans/test_k3s.py's systemctl), its seconds moved by how far the day is from now;
- the Talos provider renews the talosconfig's client certificate within a month of its end and the kubeconfig within
  720 h (tests/talos_provider.py, the provider's code with file:line), at a `pulumi up`;
- pulumi-tls issues a local CA's certificate again at a `pulumi up` within its early renewal;
- the alerts fire by their thresholds (plans.k3s.CERTIFICATE_WARNING_DAYS), `iluvatar doctor` says what to do
  (iluvatar.doctor, run each day as a cron job would), and the restore drills fail on a backup older than its bound.

Two homelabbers: one who runs `pulumi up` on the day the doctor says "run `pulumi up` now", and one who does nothing.
The first never lets anything end and never sees an alert; for the second, every end is announced at least 30 days
ahead (90 by the doctor), and nothing ends without a warning: nothing fails silently.
"""

from __future__ import annotations

import base64
import datetime
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from iluvatar import doctor
from plans import k3s, lifetimes, rollout
from stacks import load_stack_file
from stacks.data import newest_within
from stacks.model import StackConfig
from tests import talos_provider
from tests.edit import HOMELAB
from tests.iluvatar.test_doctor import Issuer

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


def alerts(lab: Homelab, now: datetime.datetime) -> list[str]:
    """The alerts firing on `now`: AinurCertificateExpiring by its threshold over the Pis' certificates' ends."""
    warn = datetime.timedelta(days=k3s.CERTIFICATE_WARNING_DAYS)
    return [f"AinurCertificateExpiring {pi}" for pi in PIS if _end(lab.k3s[pi].read_text()) - now < warn]


def ended(lab: Homelab, now: datetime.datetime) -> list[str]:
    """What has ended by `now`: what a homelab loses (a Pi's k3s, Arda's API for Pulumi, Dex's TLS)."""
    ends = {f"{pi}'s k3s": _end(p.read_text()) for pi, p in lab.k3s.items()}
    ends |= {"talosconfig": _end(lab.talosconfig), "kubeconfig": _end(lab.kubeconfig)}
    ends |= {name: _end(pem) for name, (pem, _, _) in lab.local.items()}
    return sorted(name for name, end in ends.items() if end <= now)


@pytest.fixture(scope="module")
def stack() -> StackConfig:
    return load_stack_file(HOMELAB)


def test_a_year_with_the_doctor_s_pulumi_up_nothing_ends_and_no_alert_fires(stack: StackConfig, tmp_path: Path) -> None:
    """The homelabber reads `iluvatar doctor` each day and runs `pulumi up` on the day it says "run `pulumi up` now":
    three runs in 367 days, each renewing what it named, nothing ended, no alert."""
    lab = deploy(tmp_path)
    ups: list[int] = []
    for day in range(YEAR):
        now = START + day * DAY
        assert ended(lab, now) == [], day
        assert alerts(lab, now) == [], day
        text, _ = doctor.report("homelab", stack, lab.outputs(), now)
        if "run `pulumi up` now" in text:
            ups.append(day)
            pulumi_up(lab, day)
            # The run renewed what the doctor named: asked again that day, it says "now" of nothing.
            assert "run `pulumi up` now" not in doctor.report("homelab", stack, lab.outputs(), now)[0], day
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


def test_a_year_without_any_pulumi_up_every_end_is_announced_ahead(stack: StackConfig, tmp_path: Path) -> None:
    """Nobody runs anything: each certificate that ends within the year is listed by the doctor 90 days ahead, the Pis'
    also alerted 30 days ahead, and none ends unannounced."""
    lab = deploy(tmp_path)
    first_listed: dict[str, int] = {}
    first_alerted: dict[str, int] = {}
    ends: dict[str, int] = {}
    for day in range(YEAR):
        now = START + day * DAY
        found, unknown = doctor.ends(stack, lab.outputs(), now)
        assert unknown == [], day
        for e in found:
            if e.when <= now + doctor.WINDOW:
                first_listed.setdefault(e.what, day)
        for alert in alerts(lab, now):
            first_alerted.setdefault(alert.split()[-1], day)
        for name in ended(lab, now):
            ends.setdefault(name, day)
    assert ends == {
        "eonwe's k3s": 364,
        "identity-dex": 365,
        "ilmare's k3s": 363,
        "kubeconfig": 365,
        "manwe's k3s": 365,
        "talosconfig": 365,
    }
    assert first_listed == {
        "ilmare's k3s certificates": 363 - 90,
        "eonwe's k3s certificates": 364 - 90,
        "manwe's k3s certificates": 365 - 90,
        "the talosconfig's client certificate": 365 - 90,
        "Arda's admin kubeconfig": 365 - 90,
        "the local CA's certificate identity-dex": 365 - 90,
    }
    assert first_alerted == {"ilmare": 363 - 29, "eonwe": 364 - 29, "manwe": 365 - 29}


def test_backups_that_stop_fail_the_next_drill_within_the_bound(stack: StackConfig) -> None:
    """Headscale's state backup stops on day 100 (its target's keys rotated): the weekly drill on the first Sunday after
    its bound (two days) fails, RestoreDrillFailed fires; the drills' own schedule is weekly, so within nine days."""
    assert stack.backup is not None
    bound = newest_within("17 4 * * *")
    assert bound == datetime.timedelta(seconds=172800)
    assert stack.backup.drill.schedule == "30 4 * * 0"
    last_backup = START + 100 * DAY + datetime.timedelta(hours=4, minutes=17)
    day = 100
    while True:
        run = START + day * DAY + datetime.timedelta(hours=4, minutes=30)
        if run.weekday() == 6 and run > last_backup and run - last_backup > bound:
            break
        day += 1
    assert 2 < day - 100 <= 9
