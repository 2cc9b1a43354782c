"""The program's stack outputs by name: __main__.py exports each under the name here, and the day-2 checks (stacks.day2,
stacks.pulumi_source) and the CLI read them back by the same name, so that a renamed output cannot drift from its
readers (tests/stacks/test_outputs.py holds every `pulumi.export` of __main__.py to this table).
"""

from __future__ import annotations

from stacks import encryption

# Eä's network (components.ea), every stack.
LAN = "lan"
RESERVATIONS = "reservations"
DNS_RECORDS = "dnsRecords"
VIPS = "vips"
# Within `vips`, the Ainur's VIP (plans.network.vip_names); Arda's is keyed by the cluster's name.
AINUR_VIP = "ainur"
GATEWAYS = "gateways"
LOAD_BALANCER_POOL = "loadBalancerPool"
# The Ainur (components.ainur), a stack with them only.
AINUR_USER_DATA = "ainurUserData"
AINUR_NETWORK_CONFIG = "ainurNetworkConfig"
AINUR_KUBECONFIG = "ainurKubeconfig"
AINUR = "ainur"
# Arda's Talos config (components.talos), every stack.
ARDA_TALOSCONFIG = "ardaTalosconfig"
ARDA_INSTALLER_IMAGES = "ardaInstallerImages"
ARDA_DISK_IMAGES = "ardaDiskImages"
ARDA_PXE_URLS = "ardaPxeUrls"
# The netboot layer on the Ainur: its dnsmasq config, and the digest of kube-vip-services' template its roll step last
# finished with (plans.netboot.vip_roll), or "" when the step did not finish.
DNSMASQ_CONF = "dnsmasqConf"
KUBE_VIP_ROLLED = "kubeVipRolled"
# The KMS on the Ainur (plans.kms).
KMS_KEY = "kmsKey"
KMS_KEY_ID = encryption.KMS_KEY_ID_OUTPUT
KMS_KEY_RESTORED = encryption.KMS_RESTORED_OUTPUT
KMS_ENDPOINT = "kmsEndpoint"
KMS_KEY_BACKUP = "kmsKeyBackup"
# Arda (components.arda), every stack.
ARDA_KUBECONFIG = "ardaKubeconfig"
ARDA = "arda"
# The edge (components.edge).
CA_CERTIFICATE = "caCertificate"
EDGE = "edge"
TUNNEL_ID = "tunnelId"
# The data layer, GitOps, storage, monitoring, identity, remote access, and the local CA's certificates.
BACKUP_AGE_KEY = "backupAgeKey"
GITOPS_REPO_URLS = "gitopsRepoUrls"
STORAGE = "storage"
GRAFANA_ADMIN_PASSWORD = "grafanaAdminPassword"  # noqa: S105 - the output's name, not a password
SIGN_IN = "signIn"
REMOTE_ACCESS = "remoteAccess"
LOCAL_CERTIFICATES = "localCertificates"

# Within the cluster outputs `arda` and `ainur` (plans.rollout.state, ainur_state): the key of the release each cluster
# runs, and its product's name. Every deployment writes it beside `nodes`, every machine of the cluster, which is never
# empty (a stack has an odd number of valinor, and with the Ainur of valar: stacks.rules._counts), and beside
# `commands`, the steps it ran on them (the bootstrap, each Pi's join).
CLUSTER_RELEASES: dict[str, tuple[str, str]] = {ARDA: ("talosVersion", "Talos"), AINUR: ("k3sVersion", "k3s")}

# Every output, in the order __main__.py exports them (tests/stacks/test_outputs.py holds them to it), with when it was
# first exported: the time (UTC) of the first change to __main__.py that exports it (`git log --reverse -G
# 'export\(\s*"<name>"' -- __main__.py`, or the constant's name for those exported by one). An Iluvatar older than one
# wrote none of the outputs from that time on; a first `pulumi up` whose program stopped with an error part-way records
# only those exported before it stopped (stacks.day2.missing tells the two apart).
SINCE: dict[str, str] = {
    LAN: "2026-11-22 07:13",
    RESERVATIONS: "2026-11-22 07:13",
    DNS_RECORDS: "2026-11-22 07:13",
    VIPS: "2026-11-22 07:13",
    GATEWAYS: "2026-11-22 08:04",
    LOAD_BALANCER_POOL: "2026-11-22 07:13",
    AINUR_USER_DATA: "2026-11-22 07:38",
    AINUR_NETWORK_CONFIG: "2026-11-23 03:45",
    AINUR_KUBECONFIG: "2026-11-22 07:38",
    AINUR: "2026-11-23 04:17",
    ARDA_TALOSCONFIG: "2026-11-22 07:28",
    ARDA_INSTALLER_IMAGES: "2026-11-22 07:28",
    ARDA_DISK_IMAGES: "2026-11-22 16:43",
    ARDA_PXE_URLS: "2026-11-22 08:07",
    DNSMASQ_CONF: "2026-11-22 07:38",
    KUBE_VIP_ROLLED: "2026-11-27 10:50",
    KMS_KEY: "2026-11-26 19:43",
    KMS_KEY_ID: "2026-11-27 10:18",
    KMS_KEY_RESTORED: "2026-11-27 09:45",
    KMS_ENDPOINT: "2026-11-26 19:43",
    ARDA_KUBECONFIG: "2026-11-22 07:28",
    ARDA: "2026-11-23 03:45",
    CA_CERTIFICATE: "2026-11-22 18:14",
    EDGE: "2026-11-22 18:14",
    TUNNEL_ID: "2026-11-22 18:14",
    BACKUP_AGE_KEY: "2026-11-23 04:48",
    KMS_KEY_BACKUP: "2026-11-26 19:54",
    GITOPS_REPO_URLS: "2026-11-22 18:08",
    STORAGE: "2026-11-22 19:30",
    GRAFANA_ADMIN_PASSWORD: "2026-11-23 05:12",
    SIGN_IN: "2026-11-23 05:12",
    REMOTE_ACCESS: "2026-11-25 19:46",
    LOCAL_CERTIFICATES: "2026-11-27 06:50",
}
