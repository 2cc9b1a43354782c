"""Every credential, certificate, token and key the homelab depends on: how long it lasts, who renews it, what warns.

One row each (`rows`), for a stack (the backups' bounds are its schedules'). Each value the program sets is read from
the constant that sets it (plans.k3s, plans.certificates, plans.identity, plans.kms, plans.remote_access, plans.rollout,
stacks.data); a value the program leaves to an upstream default names the upstream file:line at the version the
project pins, or says "unverified" where that file was not read at that version. `scripts/lifetimes.py` prints the
table (`table`), docs/day2.md publishes it, and tests/plans/test_lifetimes.py holds the two together and each row to
the code. `iluvatar doctor` (iluvatar.doctor) reads the same constants for the ends a deployment recorded.

Plain functions; no Pulumi here.
"""

from __future__ import annotations

import base64
import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from plans import certificates, cloudflare, credentials, drill, identity, k3s, kms, monitoring, remote_access, rollout
from plans import edge as edge_plan
from stacks import data, pins
from stacks.model import StackConfig

# Talos's own lifetimes, in the machinery the provider generates the secrets with (stacks.pins.TALOS_CLIENT_MACHINERY):
# siderolabs/talos pkg/machinery/constants/constants.go:1224 TalosAPIDefaultCertificateValidityDuration (the
# talosconfig's client certificate), :272 KubernetesAdminCertDefaultLifetime (Arda's admin kubeconfig), and
# pkg/machinery/config/generate/secrets/secrets.go:15 CAValidityTime = 87600 h (every CA of the bundle, ca.go:21-58).
TALOS_CLIENT_DAYS = 365
TALOS_ADMIN_KUBECONFIG_DAYS = 365
TALOS_CA_HOURS = 87600
# The Talos provider's renewal windows: the talosconfig's client certificate within a month of its end
# (terraform-provider-talos talos_machine_secrets_resource.go:369, NotAfter.Before(now.AddDate(0, 1, 0)), read at
# v0.9.0; the pinned v0.11.0 unverified), the kubeconfig within `certificate_renewal_duration`, default 720 h
# (talos_cluster_kubeconfig_resource.go:153-154 and :548 at v0.9.0; components.arda leaves it unset).
TALOS_KUBECONFIG_RENEWAL_HOURS = 720
# k3s's leaf certificates last a year and its CAs ten (docs.k3s.io "Certificate Management"; k3s
# pkg/daemons/control/deps/deps.go through rancher/dynamiclistener's factory: unverified at the pinned k3s).
K3S_LEAF_DAYS = 365
K3S_CA_YEARS = 10
# How far ahead `iluvatar doctor` looks, and what the table calls "ahead".
DOCTOR_DAYS = 90


@dataclass(frozen=True)
class Lifetime:
    """One row: what it is, where it lives, how long it lasts, who renews it, what warns before its end, and where each
    value was read (the constant, or the upstream file:line, or "unverified")."""

    what: str
    where: str
    lifetime: str
    renewed_by: str
    alerted: str
    source: str
    # What covers its end with nobody at the keyboard: the alerts (in the stack's rendered rules) that warn ahead, or,
    # with none, why none is needed (it never ends, or the cluster renews it unattended). One of the two, always.
    alerts: tuple[str, ...] = ()
    unattended: str = ""


def days(hours: int) -> str:
    """`87600` -> `10 years`, `8760` -> `365 days`, `720` -> `30 days`, `1` -> `1 hour`."""
    if hours % (365 * 24) == 0 and hours >= 2 * 365 * 24:
        return f"{hours // (365 * 24)} years"
    if hours % 24 == 0:
        return f"{hours // 24} days"
    return f"{hours} hour{'s' if hours != 1 else ''}"


def span(text: str) -> int:
    """A Go duration as the configs write them, in hours or minutes (`720h`, `1h`, `30m`), as whole hours (0 for minutes)."""
    if text.endswith("h"):
        return int(text[:-1])
    if text.endswith("m"):
        return 0
    raise ValueError(f"{text} is not a duration of hours or minutes")


def _seconds(delta: datetime.timedelta) -> str:
    return f"{int(delta.total_seconds())} s"


def _k3s_rows() -> list[Lifetime]:
    renew, warn, trigger = k3s.CERTIFICATE_RENEW_DAYS, k3s.CERTIFICATE_WARNING_DAYS, rollout.CERTIFICATE_TRIGGER_DAYS
    return [
        Lifetime(
            "k3s leaf certificates (component clients, API server, etcd, kubelet, kube-proxy)",
            "each Pi",
            f"{K3S_LEAF_DAYS} days",
            f"k3s, as it starts within {renew} days of the end; `pulumi up` restarts it from {trigger} days (its k3s step)",
            f"AinurCertificateExpiring {warn} days ahead; AinurCertificateUnknown; every preview and up within {warn} days",
            f"plans.k3s.CERTIFICATE_RENEW_DAYS (k3s pkg/daemons/config/types.go CertificateRenewDays: 120 since v1.33.1+k3s1, "
            f"k3s-io/k3s#12232, 90 before; the file at {pins.K3S} and the {K3S_LEAF_DAYS} days unverified)",
            alerts=("AinurCertificateExpiring", "AinurCertificateUnknown"),
        ),
        Lifetime(
            "k3s CAs",
            "each Pi",
            f"{K3S_CA_YEARS} years",
            "nobody: `k3s certificate rotate-ca` by hand",
            f"AinurCACertificateExpiring {warn} days ahead",
            f"plans.k3s.CERTIFICATE_WARNING_DAYS; {K3S_CA_YEARS} years unverified at {pins.K3S}",
            alerts=("AinurCACertificateExpiring",),
        ),
        Lifetime(
            "k3s :6443 serving certificate (dynamiclistener)",
            "each valar",
            f"{K3S_LEAF_DAYS} days",
            f"k3s itself, checked every 6 hours within {renew} days",
            "not counted",
            "k3s pkg/daemons/config/types.go CertificateRenewDays, given to dynamiclistener as ExpirationDaysCheck "
            "(read in a current k3s; unverified at the pinned tag)",
            unattended="k3s renews it while it runs",
        ),
        Lifetime(
            "the API VIP kube-vip's copy of k3s's admin certificate",
            f"each valar, read once from {k3s.KUBECONFIG_PATH} as kube-vip starts",
            f"{K3S_LEAF_DAYS} days (the admin certificate's)",
            "the k3s step: after each restart of k3s on a valar (which rewrites the file), it restarts that valar's kube-vip",
            "not counted (the metric reads the file, which is fresh); the k3s step fails naming a kube-vip not started again, "
            "and the next `up` restarts both again",
            "plans.k3s.kube_vip_restart; kube-vip v0.9.2 pkg/manager/manager.go:95-130, pkg/k8s/client.go:47-66",
            alerts=("AinurCertificateExpiring",),
        ),
        Lifetime(
            "Pulumi's ServiceAccount token on the Ainur",
            f"Secret kube-system/{credentials.TOKEN_SECRET}",
            "no end (a legacy token Secret)",
            "nobody needs to; revoked by deleting its Secret",
            "none needed",
            "plans.credentials.TOKEN_SECRET",
            unattended="it never ends",
        ),
        Lifetime(
            "the maiar's bootstrap join tokens and k3s's server token",
            "each Pi, Secret kube-system/bootstrap-token-*",
            "no end (no expiration set)",
            "nobody needs to",
            "none needed",
            "plans.agent_token",
            unattended="they never end",
        ),
    ]


def _talos_rows() -> list[Lifetime]:
    kubeconfig = TALOS_KUBECONFIG_RENEWAL_HOURS
    return [
        Lifetime(
            "Talos API client certificate (the talosconfig)",
            "Pulumi's state",
            f"{TALOS_CLIENT_DAYS} days",
            "the Talos provider, at the first `pulumi up` within a month of its end (every Arda step re-runs)",
            f"{monitoring.CREDENTIAL_ALERT} {monitoring.CREDENTIAL_WARNING_DAYS} days ahead; `iluvatar doctor` from {DOCTOR_DAYS} days; "
            "the day-2 plan names the renewal",
            "talos pkg/machinery v1.13.0 constants.go:1224; terraform-provider-talos v0.11.0 talos_machine_secrets_resource.go:372-373",
            alerts=(monitoring.CREDENTIAL_ALERT,),
        ),
        Lifetime(
            "Arda's admin kubeconfig",
            "Pulumi's state",
            f"{TALOS_ADMIN_KUBECONFIG_DAYS} days",
            f"the Talos provider, at any `pulumi up` within {kubeconfig} h of its end",
            f"{monitoring.CREDENTIAL_ALERT} {monitoring.CREDENTIAL_WARNING_DAYS} days ahead; `iluvatar doctor` from {DOCTOR_DAYS} days",
            "talos pkg/machinery v1.13.0 constants.go:272; terraform-provider-talos v0.11.0 talos_cluster_kubeconfig_resource.go:150-154",
            alerts=(monitoring.CREDENTIAL_ALERT,),
        ),
        Lifetime(
            "Talos and Arda's Kubernetes and etcd CAs",
            "Pulumi's state, each machine",
            days(TALOS_CA_HOURS),
            "nobody: a CA rotation by hand (talosctl rotate-ca)",
            f"{monitoring.CREDENTIAL_ALERT} {monitoring.CREDENTIAL_WARNING_DAYS} days ahead; `iluvatar doctor` from {DOCTOR_DAYS} days",
            "talos pkg/machinery v1.13.0 config/generate/secrets/secrets.go:15, ca.go:21-58",
            alerts=(monitoring.CREDENTIAL_ALERT,),
        ),
        Lifetime(
            "Talos API server (apid) certificates",
            "each Arda machine",
            "Talos's default certificate validity",
            "machined itself, at half that validity, while the machine runs",
            "none needed (renewed on the machine)",
            "talos v1.13.0 internal/app/machined/pkg/controllers/secrets/api.go:193-201, :302",
            unattended="machined renews them while the machine runs",
        ),
        Lifetime(
            "Arda's kubelet serving certificates (self-signed)",
            "each Arda machine",
            "365 days (the kubelet's self-signed certificate; unverified at the pinned Kubernetes)",
            "only a kubelet restart: Talos deletes the certificate as the kubelet starts, so a reboot or a Talos or Kubernetes "
            "upgrade renews it; the kubelet never does while it runs",
            f"{monitoring.UNREBOOTED_ALERT} {monitoring.UNREBOOTED_DAYS} days after a machine's boot: reboot or upgrade it (little "
            "checks the certificate today: the API server is given no kubelet CA, and Prometheus's kubelet scrape skips verification)",
            "talos v1.13.0 internal/app/machined/pkg/controllers/k8s/kubelet_service.go:207, :503-521",
            alerts=(monitoring.UNREBOOTED_ALERT,),
        ),
    ]


def _local_rows(stack: StackConfig) -> list[Lifetime]:
    dex_early = days(identity.CERTIFICATE_EARLY_RENEWAL_HOURS)
    kms_early = days(kms.CERTIFICATE_EARLY_RENEWAL_HOURS)
    refresh = identity.DEX_REFRESH_TOKENS
    out = [
        Lifetime(
            "local CA (edge's cert-manager issuer, Dex's, the KMS's)",
            "Pulumi's state (protected)",
            days(certificates.CA_VALIDITY_HOURS),
            "nobody: kept for ever in the state, so every device that trusts it keeps trusting it",
            f"{monitoring.CREDENTIAL_ALERT} {monitoring.CREDENTIAL_WARNING_DAYS} days ahead; `iluvatar doctor` from {DOCTOR_DAYS} days",
            "plans.certificates.CA_VALIDITY_HOURS",
            alerts=(monitoring.CREDENTIAL_ALERT,),
        ),
        Lifetime(
            "local CA leaves: wildcard-internal (and wildcard-external without Cloudflare)",
            "Arda, namespace of the gateways",
            "90 days (cert-manager's default duration)",
            "cert-manager, 30 days before the end (a third of the duration)",
            f"CertificateExpiring {monitoring.CERT_MANAGER_ALERT_DAYS} days ahead; CertificateNotReady",
            "cert-manager's defaults: unverified at the pinned chart; the alert's threshold plans.monitoring",
            alerts=("CertificateExpiring", "CertificateNotReady"),
        ),
    ]
    dex = [
        Lifetime(
            "Dex's serving certificate",
            "Pulumi's state, Secret identity/dex-tls",
            days(identity.CERTIFICATE_VALIDITY_HOURS),
            f"`pulumi up` within {dex_early} of its end (pulumi-tls early_renewal_hours)",
            f"{monitoring.CREDENTIAL_ALERT} {monitoring.CREDENTIAL_WARNING_DAYS} days ahead; `iluvatar doctor` from {DOCTOR_DAYS} days; "
            "Dex reloads the renewed file without a restart (dex v2.45.1 cmd/dex/serve.go:529, :630-690)",
            "plans.identity.CERTIFICATE_VALIDITY_HOURS, CERTIFICATE_EARLY_RENEWAL_HOURS",
            alerts=(monitoring.CREDENTIAL_ALERT,),
        ),
        Lifetime(
            "the Ainur's Argo CD serving certificate",
            f"Pulumi's state, Secret argocd/{identity.ARGOCD_TLS_SECRET} on the Ainur",
            days(identity.CERTIFICATE_VALIDITY_HOURS),
            f"`pulumi up` within {dex_early} of its end (pulumi-tls early_renewal_hours)",
            f"{monitoring.CREDENTIAL_ALERT} {monitoring.CREDENTIAL_WARNING_DAYS} days ahead; `iluvatar doctor` from {DOCTOR_DAYS} days",
            "components.identity (ca.issue of identity-argocd-ainur), plans.identity.CERTIFICATE_VALIDITY_HOURS",
            alerts=(monitoring.CREDENTIAL_ALERT,),
        ),
        Lifetime(
            "Dex's token signing keys",
            "Dex's storage (the Ainur's API)",
            "6 hours (Dex's default expiry.signingKeys)",
            "Dex itself",
            "none needed",
            f"dex {pins.APPS['dex']} cmd/dex/serve.go:335-343",
            unattended="Dex rotates them itself",
        ),
        Lifetime(
            "Dex's refresh tokens (kubectl, Argo CD, Headlamp sign-ins)",
            "Dex's storage",
            f"{refresh['absoluteLifetime']}, or {refresh['validIfNotUsedFor']} unused; ID tokens {identity.DEX_ID_TOKENS}",
            "the user, signing in again",
            "none needed",
            "plans.identity.DEX_ID_TOKENS, DEX_REFRESH_TOKENS",
            unattended="a user's sign-in, not a service, ends with them",
        ),
    ]
    key = [
        Lifetime(
            "KMS server certificate",
            "Pulumi's state, Secret kms/kms-tls",
            days(kms.CERTIFICATE_VALIDITY_HOURS),
            f"`pulumi up` within {kms_early} of its end (pulumi-tls early_renewal_hours)",
            f"{monitoring.CREDENTIAL_ALERT} {monitoring.CREDENTIAL_WARNING_DAYS} days ahead; `iluvatar doctor` from {DOCTOR_DAYS} days",
            "plans.kms.CERTIFICATE_VALIDITY_HOURS, CERTIFICATE_EARLY_RENEWAL_HOURS",
            alerts=(monitoring.CREDENTIAL_ALERT,),
        ),
        Lifetime(
            "KMS key (Arda's disk encryption)",
            "Pulumi's state, Secret kms/kms-key",
            "no end",
            "nobody: losing it loses Arda's encrypted disks; keep the exported copy (kmsKey), and its age-encrypted copy goes "
            f"to the backup target ({kms.BACKUP_NAME}, on the etcd snapshots' schedule)",
            f"BackupJobFailed on a failed {kms.BACKUP_NAME} job",
            "plans.kms.KEY_SECRET, BACKUP_NAME",
            alerts=("BackupJobFailed",),
        ),
    ]
    return out + (dex if stack.identity is not None else []) + (key if kms.enabled(stack) else [])


def _remote_rows() -> list[Lifetime]:
    return [
        Lifetime(
            "Headscale node keys (the household's devices)",
            "Headscale's database (the Ainur)",
            "no end for a pre-auth key's node (it takes the client's requested expiry, zero)",
            "nobody needs to",
            "none needed",
            f"headscale {pins.APPS['headscale']} hscontrol/state/state.go:1407-1409, :1479 (oidc.expiry, config-example.yaml:347-351, "
            "is unused: devices enrol by pre-auth key)",
            unattended="they never end",
        ),
        Lifetime(
            "the subnet router's enrolment key",
            f"Secret {remote_access.NAMESPACE}/{remote_access.AUTHKEY_SECRET}",
            remote_access.AUTHKEY_EXPIRATION,
            "`pulumi up`, when the router has no node (single use)",
            "the enrolment step fails naming it",
            "plans.remote_access.AUTHKEY_EXPIRATION",
            unattended="needed only at an enrolment, which `pulumi up` mints it for",
        ),
        Lifetime(
            "Headscale's Noise, DERP and ACME account keys",
            "Headscale's state claim (backed up)",
            "no end",
            "nobody needs to",
            "none needed (its state's backup is below)",
            f"headscale {pins.APPS['headscale']}: unverified",
            unattended="they never end",
        ),
        Lifetime(
            "Headscale's Let's Encrypt certificate",
            "Headscale's state claim",
            "90 days (Let's Encrypt's)",
            "Headscale itself, 30 days before its end, over TLS-ALPN-01 on its public :443",
            f"HeadscaleCertificateExpiring {monitoring.HEADSCALE_CERTIFICATE_DAYS} days ahead (a blackbox probe of its public name); "
            "HeadscaleCertificateUnknown",
            f"headscale {pins.APPS['headscale']} hscontrol/app.go:874-881; golang.org/x/crypto v0.43.0 acme/autocert/autocert.go:1031-1036",
            alerts=("HeadscaleCertificateExpiring", "HeadscaleCertificateUnknown"),
        ),
    ]


def _cloudflare_rows(stack: StackConfig) -> list[Lifetime]:
    """What Cloudflare holds for a stack whose public zone it serves (`publicDns: cloudflare`, which the tunnel needs):
    the API token Pulumi and cert-manager's DNS-01 use, the certificate cert-manager gets from Let's Encrypt through it,
    and with the tunnel, its token and Cloudflare's own edge certificate."""
    if stack.public_dns != "cloudflare":
        return []
    out = [
        Lifetime(
            "Cloudflare API token (iluvatar:cloudflareApiToken)",
            f"Pulumi's config (secret), Secret {edge_plan.CERT_MANAGER_NAMESPACE}/{certificates.CLOUDFLARE_TOKEN_SECRET} for cert-manager",
            "the end its owner gave it in Cloudflare's dashboard, or none (an API token has no end unless given one)",
            "its owner: a new token in Cloudflare's dashboard, `pulumi config set --secret iluvatar:cloudflareApiToken`, `pulumi up`",
            "CertificateNotReady once cert-manager's renewal of wildcard-external fails on it (30 days before that certificate's "
            f"end), CertificateExpiring {monitoring.CERT_MANAGER_ALERT_DAYS} days ahead; every `pulumi up` fails at the Cloudflare provider",
            "plans.certificates.CLOUDFLARE_TOKEN_SECRET; Cloudflare's token expiry: unverified",
            alerts=("CertificateNotReady", "CertificateExpiring"),
        ),
        Lifetime(
            "wildcard-external (Let's Encrypt, DNS-01 through Cloudflare)",
            "Arda, namespace of the gateways",
            "90 days (Let's Encrypt's)",
            "cert-manager, 30 days before the end, over DNS-01 with the Cloudflare API token",
            f"CertificateExpiring {monitoring.CERT_MANAGER_ALERT_DAYS} days ahead; CertificateNotReady",
            "plans.certificates.acme_issuer; cert-manager's renewal at a third of the duration: unverified at the pinned chart",
            alerts=("CertificateExpiring", "CertificateNotReady"),
        ),
    ]
    if stack.public_ingress == "cloudflare-tunnel":
        out += [
            Lifetime(
                "cloudflared's tunnel token",
                f"Pulumi's state, Secret {edge_plan.GATEWAY_NAMESPACE}/{cloudflare.TOKEN_SECRET}",
                "no end (the tunnel's; a new tunnel is a new token)",
                "nobody needs to",
                "none needed",
                "plans.cloudflare.TOKEN_SECRET; the token's lifetime: unverified",
                unattended="it never ends",
            ),
            Lifetime(
                "Cloudflare's edge certificate of the external names",
                "Cloudflare",
                "Cloudflare's (Universal SSL)",
                "Cloudflare itself",
                "none needed (Cloudflare renews it; the tunnel reaches envoy-external with the certificate above)",
                "Cloudflare's Universal SSL: unverified",
                unattended="Cloudflare renews it",
            ),
        ]
    return out


def _backup_rows(stack: StackConfig) -> list[Lifetime]:
    """Each backup's freshness, as this stack takes and drills it: the volumes (VolSync, drilled unless
    `backup.drill.volumes` is false), each cluster's etcd snapshots where they reach the target (stacks.data.drills:
    Arda's only by talos-backup to S3, the Ainur's only by k3s to S3), and Headscale's state (drilled on S3 only)."""
    if stack.backup is None:
        return []
    out: list[Lifetime] = []
    stale = data.stale_after(stack.backup.drill)
    drills = ("RestoreDrillFailed", "RestoreDrillStale")
    drilled = f"RestoreDrillFailed; RestoreDrillStale after {_seconds(stale)}"
    on = drill.enabled(stack)
    from plans import backup as backup_plan

    volumes_drilled = on and stack.backup.drill.volumes
    for app in backup_plan.apps(stack):
        assert app.backup is not None
        bound = data.newest_within(app.backup.schedule)
        for volume in app.backup.volumes:
            out.append(
                Lifetime(
                    f"backup of {app.name}'s {volume.claim}",
                    "the backup target",
                    f'newest under {_seconds(bound)} ("{app.backup.schedule}")',
                    "VolSync, on its schedule",
                    f"BackupFailed; its drill: {drilled}" if volumes_drilled else "BackupFailed; not drilled (backup.drill)",
                    "stacks.data.newest_within",
                    alerts=("BackupFailed", *(drills if volumes_drilled else ())),
                )
            )
    etcd = data.newest_within(stack.backup.etcd.schedule)
    arda_drilled, ainur_drilled = data.drills(stack.backup, stack.ainur is not None)
    arda_taken = data.arda_etcd_backup(stack.backup)
    out.append(
        Lifetime(
            "arda's etcd snapshots",
            "the backup target" if arda_taken else "nowhere: talos-backup uploads to an S3 target only",
            f'newest under {_seconds(etcd)} ("{stack.backup.etcd.schedule}")' if arda_taken else "none taken",
            "talos-backup's CronJob" if arda_taken else "nobody (backup.etcd.arda)",
            (f"BackupJobFailed; its drill: {drilled}" if on and arda_drilled else "BackupJobFailed; not drilled (backup.drill)")
            if arda_taken
            else "none: no snapshot is taken",
            "stacks.data.arda_etcd_backup, drills, newest_within",
            alerts=("BackupJobFailed", *(drills if on and arda_drilled else ())) if arda_taken else (),
            unattended="" if arda_taken else "no snapshot to go stale (the stack takes none)",
        )
    )
    if stack.ainur is not None:
        on_target = on and ainur_drilled
        cards = f"{monitoring.SNAPSHOT_ALERT} on each valar's newest snapshot in {monitoring.SNAPSHOT_DIR}"
        out.append(
            Lifetime(
                "ainur's etcd snapshots",
                "the backup target (k3s uploads to S3)" if on_target else "each valar's card only (k3s uploads to an S3 target only)",
                f'newest under {_seconds(etcd)} ("{stack.backup.etcd.schedule}")',
                "k3s on each valar",
                f"{cards}; its drill: {drilled}" if on_target else cards,
                "stacks.data.drills, newest_within; plans.monitoring.SNAPSHOT_DIR",
                alerts=(monitoring.SNAPSHOT_ALERT, *(drills if on_target else ())),
            )
        )
    if stack.remote_access is not None and remote_access.state_backup_enabled(stack) and _headscale(stack):
        bound = data.newest_within(remote_access.STATE_BACKUP_SCHEDULE)
        headscale = drill.headscale_drilled(stack)
        out.append(
            Lifetime(
                "Headscale's state backup",
                "the backup target",
                f'newest under {_seconds(bound)} ("{remote_access.STATE_BACKUP_SCHEDULE}")',
                "Headscale's pod, restarted by its state-backup CronJob",
                f"drill-headscale: {drilled}; RestoreDrillFailed too when restic forget --prune keeps failing (more than "
                f"{drill.HEADSCALE_KEEP_MOST} snapshots)"
                if headscale
                else "none: not drilled (backup.drill), the init container's log only",
                "plans.remote_access.STATE_BACKUP_SCHEDULE, stacks.data.newest_within",
                alerts=drills if headscale else (),
            )
        )
    return out


def _headscale(stack: StackConfig) -> bool:
    return stack.remote_access is not None and stack.remote_access.headscale is not None


def pem_end(pem: str) -> str | None:
    """A PEM certificate's end (NotAfter) as `2027-11-25T12:07:33Z`; None when it is not one (a render's placeholder)."""
    return rollout.certificate_expiry(base64.b64encode(pem.encode()).decode())


def issued_entry(pem: str, hours: int) -> dict[str, object]:
    """What the program exports of a certificate the local CA issued (`localCertificates`): its end, and how long before
    it pulumi-tls renews it."""
    return {"end": pem_end(pem), "earlyRenewalHours": hours}


# The ends `recorded_ends` reads from what a `pulumi up` holds, by the name each alert carries (its `credential` label).
TALOSCONFIG_END = "the talosconfig's client certificate"
KUBECONFIG_END = "Arda's admin kubeconfig"
KUBERNETES_CA_END = "Arda's Kubernetes CA"
TALOS_CA_END = "Talos's CA"
LOCAL_CA_END = "the local CA"


def _b64_end(value: object) -> str | None:
    return rollout.certificate_expiry(value) if isinstance(value, str) else None


def _yaml(text: object) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(text) if isinstance(text, str) else None
    except yaml.YAMLError:
        doc = None
    return doc if isinstance(doc, dict) else {}


def recorded_ends(arda: Mapping[str, Any], kubeconfig: str, talosconfig: str, ca: str, issued: Mapping[str, str]) -> dict[str, str | None]:
    """What ends when, as this `pulumi up` holds it (plans.monitoring.credential_alerts writes one rule each): the
    talosconfig's client certificate (`arda.clientCertificateExpires`), Arda's admin kubeconfig and its CA, Talos's CA,
    the local CA and each certificate it issued (name -> PEM). None where a value is no certificate (a render's
    placeholder), so the rule says the end is unknown rather than nothing."""
    clusters = _yaml(kubeconfig).get("clusters") or [{}]
    users = _yaml(kubeconfig).get("users") or [{}]
    contexts = _yaml(talosconfig).get("contexts") or {}
    talos_ca = next((_b64_end(c.get("ca")) for c in contexts.values() if isinstance(c, dict)), None)
    client = arda.get("clientCertificateExpires")
    out: dict[str, str | None] = {
        TALOSCONFIG_END: client if isinstance(client, str) else None,
        KUBECONFIG_END: _b64_end(((users[0] or {}).get("user") or {}).get("client-certificate-data")),
        KUBERNETES_CA_END: _b64_end(((clusters[0] or {}).get("cluster") or {}).get("certificate-authority-data")),
        TALOS_CA_END: talos_ca,
        LOCAL_CA_END: pem_end(ca),
    }
    out |= {f"the local CA's certificate {name}": pem_end(pem) for name, pem in issued.items()}
    return out


def rows(stack: StackConfig) -> list[Lifetime]:
    """Every row for `stack`: the Ainur's (when it has one), Arda's, the local CA's and its leaves', the tailnet's, the
    backups'."""
    out = [*(_k3s_rows() if stack.ainur is not None else []), *_talos_rows(), *_local_rows(stack), *_cloudflare_rows(stack)]
    if _headscale(stack):
        out += _remote_rows()
    return out + _backup_rows(stack)


HEADER = ("What", "Where", "Lifetime", "Renewed by", "Alerted ahead", "Read from")


def table(stack: StackConfig) -> str:
    """The rows as a Markdown table (what docs/day2.md publishes)."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for row in rows(stack):
        cells = (row.what, row.where, row.lifetime, row.renewed_by, row.alerted, row.source)
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"
