"""`iluvatar doctor STACK --outputs FILE --on DAY`: a deployment's outputs as `pulumi stack output --json --show-secrets`
writes them, with certificates made by the real openssl ending on known days, and exactly what the command says."""

from __future__ import annotations

import base64
import datetime
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from iluvatar.cli import main
from plans import lifetimes
from tests.edit import HOMELAB
from tests.sims import simulated

ON = "2027-10-01"
_SIGN = ("openssl", "ca", "-batch", "-config", "ca.cnf", "-in", "leaf.csr", "-out", "leaf.crt", "-notext", "-cert", "ca.crt", "-keyfile", "ca.key")
_NEW_KEY = ("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")


class Issuer:
    """A CA made by openssl (ten years from now: later than any day the tests ask about) and leaves of it ending when
    asked (`openssl ca -enddate`: `openssl x509 -days` counts only from now)."""

    def __init__(self, work: Path) -> None:
        self.work = work
        work.mkdir()
        subprocess.run(
            [*_NEW_KEY, "-x509", "-keyout", work / "ca.key", "-out", work / "ca.crt", "-subj", "/CN=test CA", "-days", "3650"],
            check=True,
            capture_output=True,
        )
        (work / "ca.cnf").write_text(
            "[ca]\ndefault_ca=d\n[d]\ndatabase=index.txt\nnew_certs_dir=.\nserial=serial\ndefault_md=sha256\npolicy=p\nunique_subject=no\n[p]\ncommonName=supplied\n"
        )
        self.count = 0
        self.ca = (work / "ca.crt").read_text()

    def leaf(self, end: str) -> str:
        self.count += 1
        (self.work / "index.txt").write_text("")
        (self.work / "serial").write_text(f"{self.count:02X}\n")
        subprocess.run(
            [*_NEW_KEY, "-keyout", self.work / "leaf.key", "-out", self.work / "leaf.csr", "-subj", "/CN=leaf"], check=True, capture_output=True
        )
        when = datetime.datetime.strptime(end, "%Y-%m-%dT%H:%M:%SZ").strftime("%Y%m%d%H%M%SZ")
        subprocess.run(
            [*_SIGN, "-startdate", "20260101000000Z", "-enddate", when],
            check=True,
            capture_output=True,
            cwd=self.work,
        )
        return (self.work / "leaf.crt").read_text()


def _b64(pem: str) -> str:
    return base64.b64encode(pem.encode()).decode()


def _kubeconfig(ca: str, client: str | None) -> str:
    user: dict[str, Any] = {"client-certificate-data": _b64(client)} if client else {"token": "t"}
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "c", "cluster": {"server": "https://192.168.0.10:6443", "certificate-authority-data": _b64(ca)}}],
            "users": [{"name": "u", "user": user}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "c",
        }
    )


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Issuer:
    return Issuer(tmp_path_factory.mktemp("doctor") / "ca")


def _outputs(issuer: Issuer) -> dict[str, Any]:
    return {
        "ainur": {
            "certificates": {
                "manwe": {"end": "2027-11-25T12:07:33Z", "trigger": None},
                "eonwe": {"end": "2028-03-01T00:00:00Z", "trigger": None},
                "ilmare": {"end": "2027-09-20T00:00:00Z", "trigger": None, "clock": "2027-05-01T00:00:00Z"},
            }
        },
        "ainurKubeconfig": _kubeconfig(issuer.ca, None),
        "arda": {"order": ["taniquetil"], "clientCertificateExpires": "2027-10-20T08:00:00Z"},
        "ardaKubeconfig": _kubeconfig(issuer.ca, issuer.leaf("2027-12-20T08:00:00Z")),
        "ardaTalosconfig": yaml.safe_dump({"context": "arda", "contexts": {"arda": {"endpoints": [], "ca": _b64(issuer.ca), "crt": "", "key": ""}}}),
        "caCertificate": issuer.ca,
        "localCertificates": {
            "identity-dex": lifetimes.issued_entry(issuer.leaf("2027-12-01T00:00:00Z"), 720),
            "kms-tls": lifetimes.issued_entry(issuer.leaf("2029-01-01T00:00:00Z"), 720),
        },
    }


def _doctor(tmp_path: Path, outputs: dict[str, Any], capsys: pytest.CaptureFixture[str], on: str = ON) -> tuple[int, list[str]]:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(outputs))
    code = main(["doctor", str(HOMELAB), "--outputs", str(path), "--on", on])
    return code, capsys.readouterr().out.splitlines()


def test_doctor_lists_what_ends_within_90_days_and_what_to_do(issuer: Issuer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = _doctor(tmp_path, _outputs(issuer), capsys)
    assert lines == [
        "homelab on 2027-10-01: what ends within 90 days (by 2027-12-30):",
        "  2027-09-20 (ended 11 days ago)  ilmare's k3s certificates: ended: `pulumi up` restarts k3s on ilmare at once; with several "
        "valar all ended, restart k3s on every valar at once first (docs/day2.md#the-ainurs-k3s-certificates)",
        "  2027-10-20 (in 19 days)  the talosconfig's client certificate: run `pulumi up` now: renews it (the Talos provider; every "
        "Arda step runs again, as the day-2 plan says)",
        "  2027-11-25 (in 55 days)  manwe's k3s certificates: run `pulumi up` now: its k3s step restarts k3s on manwe (gated, one Pi "
        "at a time), which renews them",
        "  2027-12-01 (in 61 days)  the local CA's certificate identity-dex: a `pulumi up` on or after 2027-11-01 issues it again "
        "(pulumi-tls); nothing to do before",
        "  2027-12-20 (in 80 days)  Arda's admin kubeconfig: a `pulumi up` on or after 2027-11-21 renews it (the Talos provider); "
        "nothing to do before",
        "not known from these outputs:",
        "  ilmare: at the last run its clock said 2027-05-01T00:00:00Z, behind: k3s renews by the Pi's own clock; set it "
        "(timedatectl status), then `pulumi up`",
        "later: 6 more, the first eonwe's k3s certificates on 2028-03-01",
        "backups: their freshness is not in the outputs; the restore drill, on its schedule "
        '(backup.drill.schedule "30 4 * * 0"), fails on a backup older than its bound '
        "(RestoreDrillFailed), RestoreDrillStale on a drill that stopped passing",
        "every lifetime, and who renews it: docs/day2.md#what-ends-and-who-renews-it",
    ]
    assert code == 1


def test_doctor_on_a_quiet_day_says_nothing_is_due(issuer: Issuer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outputs = _outputs(issuer)
    outputs["ainur"]["certificates"] = {pi: {"end": "2028-09-01T00:00:00Z"} for pi in ("manwe", "eonwe", "ilmare")}
    outputs["arda"]["clientCertificateExpires"] = "2028-09-01T00:00:00Z"
    outputs["ardaKubeconfig"] = _kubeconfig(issuer.ca, issuer.leaf("2028-09-01T00:00:00Z"))
    outputs["localCertificates"] = {"identity-dex": lifetimes.issued_entry(issuer.leaf("2028-09-01T00:00:00Z"), 720)}
    code, lines = _doctor(tmp_path, outputs, capsys)
    assert lines[:3] == [
        "homelab on 2027-10-01: what ends within 90 days (by 2027-12-30):",
        "  nothing",
        "later: 10 more, the first Arda's admin kubeconfig on 2028-09-01",
    ]
    assert code == 0


def test_doctor_names_what_the_outputs_do_not_say(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Outputs written without --show-secrets, from a deployment before its Pis' ends or the local certificates were recorded.
    outputs = {"ainur": {}, "ainurKubeconfig": "[secret]", "arda": {}, "ardaKubeconfig": "[secret]", "ardaTalosconfig": "[secret]"}
    code, lines = _doctor(tmp_path, outputs, capsys)
    assert lines[:12] == [
        "homelab on 2027-10-01: what ends within 90 days (by 2027-12-30):",
        "  nothing",
        "not known from these outputs:",
        "  manwe: the outputs record no end of its k3s certificates (ainur.certificates.manwe.end): run `pulumi up`, whose k3s step records it",
        "  eonwe: the outputs record no end of its k3s certificates (ainur.certificates.eonwe.end): run `pulumi up`, whose k3s step records it",
        "  ilmare: the outputs record no end of its k3s certificates (ainur.certificates.ilmare.end): run `pulumi up`, whose k3s step records it",
        "  ainurKubeconfig is hidden: write the outputs with `pulumi stack output --json --show-secrets`",
        "  arda.clientCertificateExpires is not in the outputs: run `pulumi up`, which records it",
        "  ardaKubeconfig is hidden: write the outputs with `pulumi stack output --json --show-secrets`",
        "  ardaTalosconfig is hidden: write the outputs with `pulumi stack output --json --show-secrets`",
        "  localCertificates is not in the outputs (a deployment before this version): run `pulumi up`, which exports it",
        "backups: their freshness is not in the outputs; the restore drill, on its schedule "
        '(backup.drill.schedule "30 4 * * 0"), fails on a backup older than its bound '
        "(RestoreDrillFailed), RestoreDrillStale on a drill that stopped passing",
    ]
    assert code == 1


def test_doctor_refuses_outputs_that_are_not_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "outputs.json"
    path.write_text("lan: x\n")
    assert main(["doctor", str(HOMELAB), "--outputs", str(path), "--on", ON]) == 2
    assert capsys.readouterr().err == (
        f"error: --outputs {path}: not JSON (Expecting value at line 1); write it with `pulumi stack output --json --show-secrets`\n"
    )


def test_doctor_reads_the_outputs_in_the_encodings_render_reads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--outputs` is read as `render --previous` reads its file: UTF-16 as Windows PowerShell 5.1's `>` writes it, UTF-8
    with a byte-order mark, UTF-32; text in none of them is one line naming the file and the fix, not a traceback."""
    path = tmp_path / "outputs.json"
    text = json.dumps({"arda": {}})
    path.write_text(text)
    assert main(["doctor", str(HOMELAB), "--outputs", str(path), "--on", ON]) == 1
    said = capsys.readouterr()
    for encoded in (text.encode("utf-16"), b"\xef\xbb\xbf" + text.encode(), text.encode("utf-32")):
        path.write_bytes(encoded)
        assert main(["doctor", str(HOMELAB), "--outputs", str(path), "--on", ON]) == 1
        assert capsys.readouterr() == said
    path.write_bytes(b'{"l\xe4n": 1}')
    assert main(["doctor", str(HOMELAB), "--outputs", str(path), "--on", ON]) == 2
    assert capsys.readouterr().err == (
        f"error: --outputs {path}: not text in UTF-8, UTF-16 or UTF-32; write it with `pulumi stack output --json --show-secrets > outputs.json`\n"
    )


def test_the_program_exports_each_local_certificate_with_its_renewal() -> None:
    """`localCertificates`, what doctor reads, is exported for each certificate the local CA issues (the simulation's
    certificates are placeholders, whose end is unknown: doctor then says to run `pulumi up`)."""
    outputs = simulated(HOMELAB).outputs
    hours = {"earlyRenewalHours": 720}
    assert outputs["localCertificates"] == {
        "identity-argocd-ainur": {"end": None, **hours},
        "identity-dex": {"end": None, **hours},
        "kms-tls": {"end": None, **hours},
    }
