"""plans.lifetimes: the table docs/day2.md publishes is what scripts/lifetimes.py prints, and each row says what the code
that sets the value says (the constants it imports, the alerts the homelab raises, the backups' bounds)."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
import textwrap
from collections import defaultdict
from pathlib import Path

import pytest

from plans import certificates, identity, k3s, kms, lifetimes, monitoring, remote_access, rollout
from stacks import load_stack_file
from stacks.model import StackConfig
from tests.edit import HOMELAB, edit, homelab_doc, write_stack
from tests.remote_stacks import SHIPPED

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs/day2.md"


@pytest.fixture(scope="module")
def homelab() -> StackConfig:
    return load_stack_file(HOMELAB)


def _published() -> str:
    text = DOCS.read_text(encoding="utf-8")
    start = text.index("<!-- lifetimes:")
    start = text.index("\n", start) + 1
    return text[start : text.index("<!-- /lifetimes -->")]


def _rows(stack: StackConfig) -> dict[str, lifetimes.Lifetime]:
    return {row.what: row for row in lifetimes.rows(stack)}


def test_docs_publish_what_the_script_prints() -> None:
    printed = subprocess.run([sys.executable, str(ROOT / "scripts/lifetimes.py")], capture_output=True, text=True, check=True).stdout
    assert printed.startswith("| What | Where | Lifetime | Renewed by | Alerted ahead | Read from |\n")
    assert _published() == printed


def test_k3s_rows_read_k3s_window_and_warning(homelab: StackConfig) -> None:
    row = _rows(homelab)["k3s leaf certificates (component clients, API server, etcd, kubelet, kube-proxy)"]
    assert (k3s.CERTIFICATE_RENEW_DAYS, rollout.CERTIFICATE_TRIGGER_DAYS, k3s.CERTIFICATE_WARNING_DAYS) == (120, 119, 30)
    assert row.lifetime == "365 days"
    assert row.renewed_by == "k3s, as it starts within 120 days of the end; `pulumi up` restarts it from 119 days (its k3s step)"
    assert row.alerted == "AinurCertificateExpiring 30 days ahead; AinurCertificateUnknown; every preview and up within 30 days"
    assert _rows(homelab)["k3s CAs"].alerted == "AinurCACertificateExpiring 30 days ahead"


def test_rows_follow_the_constants_not_copies(homelab: StackConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(k3s, "CERTIFICATE_RENEW_DAYS", 90)
    monkeypatch.setattr(rollout, "CERTIFICATE_TRIGGER_DAYS", 89)
    monkeypatch.setattr(k3s, "CERTIFICATE_WARNING_DAYS", 21)
    monkeypatch.setattr(certificates, "CA_VALIDITY_HOURS", 20 * 365 * 24)
    monkeypatch.setattr(identity, "CERTIFICATE_EARLY_RENEWAL_HOURS", 10 * 24)
    monkeypatch.setattr(kms, "CERTIFICATE_VALIDITY_HOURS", 3 * 365 * 24)
    monkeypatch.setattr(remote_access, "STATE_BACKUP_SCHEDULE", "17 4 * * 0")
    rows = _rows(homelab)
    assert rows["k3s leaf certificates (component clients, API server, etcd, kubelet, kube-proxy)"].renewed_by.startswith(
        "k3s, as it starts within 90 days of the end; `pulumi up` restarts it from 89 days"
    )
    assert rows["k3s CAs"].alerted == "AinurCACertificateExpiring 21 days ahead"
    assert rows["local CA (edge's cert-manager issuer, Dex's, the KMS's)"].lifetime == "20 years"
    assert rows["Dex's serving certificate"].renewed_by == "`pulumi up` within 10 days of its end (pulumi-tls early_renewal_hours)"
    assert rows["KMS server certificate"].lifetime == "3 years"
    assert rows["Headscale's state backup"].lifetime == 'newest under 691200 s ("17 4 * * 0")'


def test_each_row_against_the_code(homelab: StackConfig) -> None:
    rows = _rows(homelab)
    assert rows["local CA (edge's cert-manager issuer, Dex's, the KMS's)"].lifetime == "10 years" == lifetimes.days(certificates.CA_VALIDITY_HOURS)
    assert rows["Dex's serving certificate"].lifetime == "365 days" == lifetimes.days(identity.CERTIFICATE_VALIDITY_HOURS)
    assert rows["KMS server certificate"].lifetime == "2 years" == lifetimes.days(kms.CERTIFICATE_VALIDITY_HOURS)
    # Dex's tokens as its config says them.
    config = identity.dex_config(homelab, defaultdict(str), "x")["expiry"]
    assert rows["Dex's refresh tokens (kubectl, Argo CD, Headlamp sign-ins)"].lifetime == (
        f"{config['refreshTokens']['absoluteLifetime']}, or {config['refreshTokens']['validIfNotUsedFor']} unused; ID tokens {config['idTokens']}"
    )
    assert rows["the subnet router's enrolment key"].lifetime == remote_access.AUTHKEY_EXPIRATION == "1h"
    # The Headscale state backup's bound, as the drill's clock has it: two days for a daily backup.
    assert rows["Headscale's state backup"].lifetime == 'newest under 172800 s ("17 4 * * *")'
    assert rows["arda's etcd snapshots"].lifetime == 'newest under 43200 s ("0 */6 * * *")'
    assert rows["Arda's admin kubeconfig"].renewed_by == "the Talos provider, at any `pulumi up` within 720 h of its end"
    assert rows["local CA leaves: wildcard-internal (and wildcard-external without Cloudflare)"].alerted == (
        "CertificateExpiring 14 days ahead; CertificateNotReady"
    )


def test_every_alert_a_row_names_is_one_the_homelab_raises(homelab: StackConfig) -> None:
    raised = {alert.name for alert in monitoring.alerts(homelab)} | {monitoring.CREDENTIAL_ALERT}
    named = {name for row in lifetimes.rows(homelab) for name in re.findall(r"\b(?:[A-Z]+[a-z]+){2,}\b", row.alerted)}
    assert named == {
        "AinurCertificateExpiring",
        "AinurCertificateUnknown",
        "AinurCACertificateExpiring",
        "AinurSnapshotsStale",
        "ArdaMachineNotRestarted",
        "BackupJobFailed",
        "CertificateExpiring",
        "CertificateNotReady",
        "CredentialExpiring",
        "BackupFailed",
        "HeadscaleCertificateExpiring",
        "HeadscaleCertificateUnknown",
        "RestoreDrillFailed",
        "RestoreDrillStale",
    }
    assert named <= raised
    assert named == {name for row in lifetimes.rows(homelab) for name in row.alerts}


def _rendered_alerts(stack: StackConfig) -> set[str]:
    """The alerts of the rule the program renders, with the ends a deployment records."""
    ends = {lifetimes.TALOSCONFIG_END: "2027-11-25T12:07:33Z", lifetimes.LOCAL_CA_END: None}
    rule = monitoring.alert_rules(stack, ends)
    return {r["alert"] for group in rule["spec"]["groups"] for r in group["rules"]}


def test_every_row_is_covered_by_an_alert_the_render_holds_or_needs_none(homelab: StackConfig) -> None:
    """Each end is warned of by an alert the stack's rule holds, or says why none is needed (it never ends, or the
    cluster renews it unattended): `iluvatar doctor`, which nothing runs, covers nothing alone."""
    rendered = _rendered_alerts(homelab)
    for row in lifetimes.rows(homelab):
        assert bool(row.alerts) != bool(row.unattended), row
        assert set(row.alerts) <= rendered, row
        assert "`iluvatar doctor`" not in row.alerted or row.alerts, row


def _nfs(tmp_path: Path) -> StackConfig:
    doc = edit(
        homelab_doc(),
        {"iluvatar:backup.target": "nfs://192.168.0.40/export/homelab"},
        delete=["iluvatar:backupS3AccessKeyId", "iluvatar:backupS3SecretAccessKey"],
    )
    doc["config"]["iluvatar:remoteAccess"] = copy.deepcopy(SHIPPED)
    return load_stack_file(write_stack(tmp_path, doc))


def test_an_nfs_target_has_no_etcd_snapshots_there_and_drills_headscale_through_the_export(tmp_path: Path) -> None:
    """On NFS, talos-backup and k3s upload nothing (they speak S3 only): the table says so, and names none of the drills'
    alerts for them; Headscale's state is drilled through the export. The one row left uncovered is the Ainur's
    snapshots, which never leave the valar's cards, are alerted on from the cards themselves."""
    rows = _rows(_nfs(tmp_path))
    assert rows["arda's etcd snapshots"].where == "nowhere: talos-backup uploads to an S3 target only"
    assert rows["arda's etcd snapshots"].alerts == ()
    assert rows["ainur's etcd snapshots"].where == "each valar's card only (k3s uploads to an S3 target only)"
    assert rows["ainur's etcd snapshots"].alerts == ("AinurSnapshotsStale",)
    assert rows["Headscale's state backup"].alerts == ("RestoreDrillFailed", "RestoreDrillStale")
    uncovered = [row.what for row in rows.values() if not row.alerts and not row.unattended]
    assert uncovered == []


def test_a_drill_opted_out_is_not_said_to_alert(tmp_path: Path) -> None:
    doc = homelab_doc()
    doc["config"]["iluvatar:backup"]["drill"] = {"volumes": False, "ainur": False}
    rows = _rows(load_stack_file(write_stack(tmp_path, doc)))
    assert rows["backup of jellyfin's jellyfin-config"].alerts == ("BackupFailed",)
    assert rows["backup of jellyfin's jellyfin-config"].alerted == "BackupFailed; not drilled (backup.drill)"
    assert rows["ainur's etcd snapshots"].alerts == ("AinurSnapshotsStale",)
    assert rows["arda's etcd snapshots"].alerts == ("BackupJobFailed", "RestoreDrillFailed", "RestoreDrillStale")


def test_a_row_not_read_from_source_says_unverified(homelab: StackConfig) -> None:
    for row in lifetimes.rows(homelab):
        cited = re.search(r"\.go:\d+|plans\.|stacks\.", row.source) is not None
        assert cited or "unverified" in row.source, row


def test_a_stack_without_the_ainur_or_identity_has_no_rows_of_them() -> None:
    rk1 = load_stack_file(ROOT / "Pulumi.rk1.yaml")
    whats = [row.what for row in lifetimes.rows(rk1)]
    assert not any(w.startswith(("k3s", "Dex", "KMS", "Headscale")) for w in whats)
    assert whats[:4] == [
        "Talos API client certificate (the talosconfig)",
        "Arda's admin kubeconfig",
        "Talos and Arda's Kubernetes and etcd CAs",
        "Talos API server (apid) certificates",
    ]


def test_cloudflare_s_token_and_certificates_have_rows_with_what_warns(homelab: StackConfig) -> None:
    """The homelab's Cloudflare (DNS-01 and the tunnel): the API token, which ends only if its owner gave it an end and
    which cert-manager's renewals need, is warned of by the certificate alerts that renewal fails into; Let's Encrypt's
    wildcard-external by the same; the tunnel token and Cloudflare's edge certificate need none. Without Cloudflare, no
    row names it."""
    assert (homelab.public_dns, homelab.public_ingress) == ("cloudflare", "cloudflare-tunnel")
    rows = _rows(homelab)
    token = rows["Cloudflare API token (iluvatar:cloudflareApiToken)"]
    assert token.where == "Pulumi's config (secret), Secret cert-manager/cloudflare-api-token for cert-manager"
    assert token.alerts == ("CertificateNotReady", "CertificateExpiring")
    assert rows["wildcard-external (Let's Encrypt, DNS-01 through Cloudflare)"].alerts == ("CertificateExpiring", "CertificateNotReady")
    assert rows["cloudflared's tunnel token"].where == "Pulumi's state, Secret networking/cloudflared-token"
    assert rows["cloudflared's tunnel token"].unattended == "it never ends"
    assert rows["Cloudflare's edge certificate of the external names"].unattended == "Cloudflare renews it"
    rk1 = [row.what for row in lifetimes.rows(load_stack_file(ROOT / "Pulumi.rk1.yaml"))]
    assert not any("Cloudflare" in w and "without Cloudflare" not in w for w in rk1)


def test_the_api_vip_kube_vips_copy_of_the_admin_certificate_is_renewed_by_the_k3s_step(homelab: StackConfig) -> None:
    """kube-vip holds the admin certificate it read as it started; the table had no row for it, and the Ainur's own table
    said a kube-vip not restarted keeps the old copy. The k3s step now restarts it after every restart of k3s on a valar
    (the function the row names), and the row says so."""
    row = _rows(homelab)["the API VIP kube-vip's copy of k3s's admin certificate"]
    assert row.where == f"each valar, read once from {k3s.KUBECONFIG_PATH} as kube-vip starts"
    assert row.lifetime == "365 days (the admin certificate's)"
    assert row.renewed_by == "the k3s step: after each restart of k3s on a valar (which rewrites the file), it restarts that valar's kube-vip"
    assert row.source.startswith("plans.k3s.kube_vip_restart;") and callable(k3s.kube_vip_restart)
    valar = next(n for n in homelab.nodes if n.role == "valar")
    assert textwrap.indent(k3s.kube_vip_restart(valar), "  ") in k3s.upgrade_script(homelab, valar, snapshot=True)


def test_arda_kubelets_serving_certificate_is_renewed_only_by_a_kubelet_restart(homelab: StackConfig) -> None:
    """Talos renews apid's certificates at half their validity, but the kubelet's self-signed serving certificate only by
    deleting it as the kubelet starts (kubelet_service.go refreshSelfServingCert): a machine neither rebooted nor upgraded
    for a year serves an ended one. One row said both were "renewed on the machine", from no source."""
    rows = _rows(homelab)
    assert "Talos API server (apid) and kubelet certificates" not in rows
    kubelet = rows["Arda's kubelet serving certificates (self-signed)"]
    assert kubelet.renewed_by.startswith("only a kubelet restart: Talos deletes the certificate as the kubelet starts, so a reboot")
    assert kubelet.alerted.startswith("ArdaMachineNotRestarted 335 days after a machine's boot: reboot or upgrade it")
    assert kubelet.source == "talos v1.13.0 internal/app/machined/pkg/controllers/k8s/kubelet_service.go:207, :503-521"
    assert rows["Talos API server (apid) certificates"].source.startswith("talos v1.13.0 internal/app/machined/pkg/controllers/secrets/api.go")
