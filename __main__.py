"""Iluvatar: the Pulumi program. Load the stack config once, build each layer in order, export.

The order is the bring-up's (docs/bring-up.md): the Ainur join k3s and serve netboot; Arda's
machines, handed the configs the Ainur serve, install, bootstrap and pass their gates; then the
edge, GitOps and storage on both clusters, and the Git mirror once its storage class serves.
"""

import functools

import pulumi

from components.ainur import BootstrapCluster, BootstrapClusterArgs
from components.arda import TalosCluster, TalosClusterArgs, TalosConfig, TalosConfigArgs
from components.data import DataSafety, DataSafetyArgs
from components.ea import Ea, EaArgs
from components.edge import Edge, EdgeArgs
from components.git_mirror import GitMirror, GitMirrorArgs
from components.gitops import GitOps, GitOpsArgs
from components.identity import Identity, IdentityArgs
from components.kms import Kms, KmsArgs
from components.local_ca import LocalCa, LocalCaArgs
from components.logs import Logs, LogsArgs, PiReach
from components.monitoring import Monitoring, MonitoringArgs
from components.netboot import Netboot, NetbootArgs
from components.power import Power, PowerArgs
from components.remote_access import RemoteAccess, RemoteAccessArgs
from components.storage import Storage, StorageArgs
from plans import identity as identity_plan
from plans import k3s as k3s_plan
from plans import kms as kms_plan
from plans import lifetimes
from plans import logs as logs_plan
from plans import talos as talos_plan
from plans import zone as zone_plan
from stacks import encryption
from stacks import outputs as exports
from stacks.pulumi_source import load

loaded = load()
stack = loaded.config

# The local root CA, first: the edge issues from it, and with identity both clusters' API servers trust Dex through it.
local_ca = LocalCa("local-ca", LocalCaArgs(stack))
trusted_ca = local_ca.certificate if stack.identity is not None else None

ea = Ea("ea", EaArgs(stack))
pulumi.export(exports.LAN, ea.lan)
pulumi.export(exports.RESERVATIONS, ea.reservations)
pulumi.export(exports.DNS_RECORDS, ea.dns_records)
pulumi.export(exports.VIPS, ea.vips)
pulumi.export(exports.GATEWAYS, ea.gateways)
pulumi.export(exports.LOAD_BALANCER_POOL, ea.load_balancer_pool)

ainur = None
if stack.ainur is not None:
    ainur = BootstrapCluster(
        "ainur",
        BootstrapClusterArgs(
            stack,
            loaded.secrets.ainur_ssh_private_key,
            deployed=loaded.ainur,
            ca_certificate=trusted_ca,
            previous=loaded.ainur_output,
            previous_dnsmasq_conf=loaded.dnsmasq_output,
        ),
    )
    pulumi.export(exports.AINUR_USER_DATA, ainur.user_data)
    pulumi.export(exports.AINUR_NETWORK_CONFIG, ainur.network_config)
    pulumi.export(exports.AINUR_KUBECONFIG, ainur.kubeconfig)
    # The Pis this deployment knows, by name and MAC: the next run tells a renamed Pi from a new one.
    pulumi.export(exports.AINUR, ainur.state)

# Arda's machines trust it too where their volumes unlock through the Ainur's KMS, whose certificate it signs
# (plans.volume_encryption).
arda_ca = local_ca.certificate if stack.identity is not None or encryption.uses_kms(stack) else None
arda_config = TalosConfig("arda-config", TalosConfigArgs(stack, ca_certificate=arda_ca))
pulumi.export(exports.ARDA_TALOSCONFIG, arda_config.talosconfig)
pulumi.export(exports.ARDA_INSTALLER_IMAGES, arda_config.installer_images)
pulumi.export(exports.ARDA_DISK_IMAGES, arda_config.disk_images)
pulumi.export(exports.ARDA_PXE_URLS, arda_config.pxe_urls)

netboot = None
if ainur is not None:
    netboot = Netboot(
        "netboot",
        NetbootArgs(
            stack,
            configs=arda_config.netboot_configs,
            boot_assets=arda_config.boot_assets,
            schematics=list(arda_config.schematics.values()),
            # The app hosts, and with identity Dex, the CA page and each Argo CD (plans.identity).
            dns_records=zone_plan.extra_records(stack),
            legacy_roots=ainur.legacy_roots,
            valar=ainur.any_valar,
            commands=ainur.access.commands,
            previous_dnsmasq_conf=loaded.dnsmasq_output,
            after_pis=[s for pi in ainur.pis.values() for s in (pi.last, pi.netboot_ready) if s is not None],
        ),
        # Its objects go with the Ainur (deleted_with), as every layer's go with their cluster.
        opts=pulumi.ResourceOptions(providers={"kubernetes": ainur.kubernetes_provider}, transformations=[ainur.access.in_cluster]),
    )
    pulumi.export(exports.DNSMASQ_CONF, netboot.dnsmasq_conf)
    if netboot.kube_vip_rolled is not None:
        pulumi.export(exports.KUBE_VIP_ROLLED, netboot.kube_vip_rolled)

# The KMS Arda's `kms` disk encryption keys unlock with (plans.kms), on the Ainur: a disk or machine out of the house cannot
# reach it. Its key is in clear only in Pulumi's state (or, restored from its backup, the stack's secret config) and the
# Ainur's Secret (age-encrypted on the backup target too, components.data): keep the exported copy outside the homelab.
kms = None
if ainur is not None and kms_plan.enabled(stack):
    kms = Kms(
        "kms",
        KmsArgs(stack, local_ca, restore=loaded.secrets.kms_key_restore),
        opts=pulumi.ResourceOptions(providers={"kubernetes": ainur.kubernetes_provider}, transformations=[ainur.access.in_cluster]),
    )
    pulumi.export(exports.KMS_KEY, kms.key)
    # Which key that is (an HMAC under it, never the key): the next preview refuses a restored key that is another one.
    pulumi.export(exports.KMS_KEY_ID, pulumi.Output.secret(kms.key.apply(encryption.kms_key_id)))
    if loaded.secrets.kms_key_restore is not None:
        pulumi.export(exports.KMS_KEY_RESTORED, True)
    pulumi.export(exports.KMS_ENDPOINT, kms_plan.endpoint(stack))

# The machines the inventory says how to power on, powered on when their apply needs them (components.power).
power = None
if any(n.power is not None for n in stack.arda_nodes):
    power = Power(
        "arda-power",
        PowerArgs(
            stack,
            arda_config,
            bmc_passwords=loaded.secrets.bmc_passwords,
            ssh_private_key=loaded.secrets.ainur_ssh_private_key,
            after=netboot.serving if netboot is not None else [],
            deployed=loaded.arda,
        ),
    )

arda = TalosCluster(
    "arda",
    TalosClusterArgs(
        stack,
        arda_config,
        netboot_serving=netboot.serving if netboot is not None else [],
        power_on=power.steps if power is not None else {},
        deployed=loaded.arda,
    ),
)
pulumi.export(exports.ARDA_KUBECONFIG, arda.kubeconfig)
# What Arda runs after this deployment: the next run reads it back to refuse an impossible version change and show its plan.
pulumi.export(exports.ARDA, arda.state)

edge = Edge(
    "edge",
    EdgeArgs(stack, arda.access, local_ca, cloudflare_api_token=loaded.secrets.cloudflare_api_token, after=[arda.ready]),
    opts=pulumi.ResourceOptions(providers={"kubernetes": arda.kubernetes_provider}, transformations=[arda.access.in_cluster]),
)
pulumi.export(exports.CA_CERTIFICATE, edge.ca_certificate)
pulumi.export(exports.EDGE, edge.summary)
if edge.cloudflare is not None:
    pulumi.export(exports.TUNNEL_ID, edge.cloudflare.tunnel.id)

# App secrets (External Secrets Operator and its store) and backups (VolSync, etcd snapshots): before Argo CD syncs anything.
data = DataSafety(
    "data",
    DataSafetyArgs(
        stack,
        arda.access,
        loaded.secrets,
        after=[arda.ready],
        namespaces=edge.category_namespaces,
        ainur=ainur.access if ainur is not None else None,
        ainur_provider=ainur.kubernetes_provider if ainur is not None else None,
        kms_key=kms.key if kms is not None else None,
    ),
    opts=pulumi.ResourceOptions(providers={"kubernetes": arda.kubernetes_provider}),
)
if data.age_identity is not None:
    # The key that decrypts Arda's etcd snapshots: keep a copy outside the homelab (docs/layers/data.md).
    pulumi.export(exports.BACKUP_AGE_KEY, data.age_identity)
if kms is not None and data.age_recipient is not None:
    # The KMS key, age-encrypted to the backups' recipient (backupAgeKey opens it): public, keep it with the backups.
    pulumi.export(
        exports.KMS_KEY_BACKUP,
        pulumi.Output.unsecret(pulumi.Output.all(kms.key, data.age_recipient).apply(lambda v: kms_plan.key_backup(v[0], v[1]))),
    )

gitops = None
if stack.gitops is not None:
    gitops = GitOps(
        "gitops",
        GitOpsArgs(
            stack,
            arda=arda.access,
            arda_after=[arda.ready, *data.ready],
            ainur=ainur.access if ainur is not None else None,
            # The seed goes into the namespace the netboot layer owns; the mirror's credential beside the mirror.
            ainur_after=[netboot.objects[f"netboot-namespace-{ns}"] for ns in ("argocd", "netboot")] if netboot is not None else [],
            credential=loaded.secrets.gitops_token or loaded.secrets.gitops_ssh_private_key,
            # The edge owns the category namespaces (and their Pod Security levels); Argo CD deploys into them.
            namespaces=edge.category_namespaces,
            ca_certificate=trusted_ca,
        ),
    )
    pulumi.export(exports.GITOPS_REPO_URLS, {"arda": gitops.arda.repo_url, **({"ainur": gitops.ainur.repo_url} if gitops.ainur else {})})

storage = Storage(
    "storage",
    StorageArgs(stack, loaded.deployed, gitops, pi_joins={n: pi.join for n, pi in ainur.pis.items()} if ainur is not None else {}),
)
# What this deployment runs Ceph on: the next run reads it back to refuse an unretired removal.
pulumi.export(exports.STORAGE, storage.state)

if ainur is not None and netboot is not None:
    # The netbooting maiar's roots wait for their volume's storage (Longhorn, an Application of the storage layer), and the
    # maiar join once the netboot service serves them their boot files and root; then their Nodes get Longhorn's labels.
    netboot.serve_pis([storage.applications["longhorn"]] if "longhorn" in storage.applications else [], ainur.connection, ainur.access.commands)
    ainur.join_netbooted(netboot.pi_serving)
    storage.label_pis({n: pi.join for n, pi in ainur.pis.items()})

if ainur is not None and netboot is not None and stack.ainur is not None and stack.ainur.git_mirror is not None:
    GitMirror(
        "git-mirror",
        GitMirrorArgs(
            stack,
            ainur.access,
            # Its namespace, its credential, and the Application that installs its storage class (Longhorn).
            after=[
                netboot.objects["netboot-namespace-netboot"],
                *([gitops.mirror_credentials] if gitops is not None and gitops.mirror_credentials is not None else []),
                *([storage.applications["longhorn"]] if "longhorn" in storage.applications else []),
            ],
        ),
        opts=pulumi.ResourceOptions(providers={"kubernetes": ainur.kubernetes_provider}, transformations=[ainur.access.in_cluster]),
    )

monitoring = None
if stack.monitoring is not None and gitops is not None and arda.monitoring_crds is not None:
    monitoring = Monitoring(
        "monitoring",
        MonitoringArgs(
            stack,
            gitops,
            crds=arda.monitoring_crds,
            namespaces=dict(edge.namespaces),
            gateways=edge.gateways,
            ainur=ainur.access if ainur is not None else None,
            ainur_provider=ainur.kubernetes_provider if ainur is not None else None,
            receiver_secret=loaded.secrets.alert_receiver_secret,
            after=[arda.ready],
        ),
    )
    pulumi.export(exports.GRAFANA_ADMIN_PASSWORD, monitoring.grafana_admin_password)
    if logs_plan.enabled(stack):
        # Every machine's logs into one store on Arda (Talos's own destinations, every pod's files, the Pis' journals).
        Logs(
            "logs",
            LogsArgs(
                stack,
                arda.access,
                arda.kubernetes_provider,
                crds=arda.monitoring_crds,
                namespace=edge.namespaces[logs_plan.NAMESPACE],
                after=[arda.ready],
                ainur=ainur.access if ainur is not None else None,
                ainur_provider=ainur.kubernetes_provider if ainur is not None else None,
                ainur_namespace=monitoring.ainur_namespace,
                pis={n: PiReach(pi.connection, pi.command_provider, [pi.join], pi.former) for n, pi in ainur.pis.items()}
                if ainur is not None
                else {},
            ),
        )

if stack.identity is not None and ainur is not None:
    assert loaded.secrets.identity_connector_secret is not None
    identity = Identity(
        "identity",
        IdentityArgs(
            stack,
            local_ca,
            loaded.secrets.identity_connector_secret,
            ainur=ainur.access,
            ainur_provider=ainur.kubernetes_provider,
            arda=arda.access,
            arda_provider=arda.kubernetes_provider,
            arda_after=[arda.ready],
            gitops=gitops,
            namespaces=dict(edge.namespaces),
            gateways=edge.gateways,
        ),
    )
    # How people sign in: Dex, the CA page, the groups, and a kubeconfig per cluster (kubelogin; no secret in it).
    kubeconfigs = {
        "arda": pulumi.Output.all(arda.kubeconfig, local_ca.certificate).apply(
            lambda v: identity_plan.kubeconfig(stack, "arda", talos_plan.cluster_endpoint(stack), identity_plan.cluster_ca(v[0]), v[1])
        ),
        "ainur": pulumi.Output.all(ainur.kubeconfig, local_ca.certificate).apply(
            lambda v: identity_plan.kubeconfig(stack, "ainur", k3s_plan.server_url(stack), identity_plan.cluster_ca(v[0]), v[1])
        ),
    }
    pulumi.export(exports.SIGN_IN, {**identity.sign_in, "kubeconfigs": {k: pulumi.Output.unsecret(v) for k, v in kubeconfigs.items()}})

if stack.remote_access is not None:
    # The homelab from anywhere over a tailnet (Tailscale, or Headscale on the Ainur): the signIn kubeconfigs work unchanged.
    remote_access = RemoteAccess(
        "remote-access",
        RemoteAccessArgs(
            stack,
            arda.access,
            arda.kubernetes_provider,
            arda_after=[arda.ready],
            oauth_client_secret=loaded.secrets.tailscale_oauth_client_secret,
            ainur=ainur.access if ainur is not None else None,
            ainur_provider=ainur.kubernetes_provider if ainur is not None else None,
            ainur_connection=ainur.connection if ainur is not None else None,
            # Headscale's state lives on the Ainur's Longhorn when it runs (as the Git mirror's does).
            ainur_after=[storage.applications["longhorn"]] if "longhorn" in storage.applications else [],
            previous=loaded.remote_access_output,
            # Headscale's state goes to the backup target too (plans.remote_access.state_backup_secret).
            # Headscale's state is drilled on Arda beside the other drills (plans.drill.headscale_cronjob).
            drill_namespace=data.drill_namespace,
            backup_s3=(
                pulumi.Output.all(loaded.secrets.s3_access_key_id, loaded.secrets.s3_secret_access_key).apply(lambda v: (str(v[0]), str(v[1])))
                if loaded.secrets.s3_access_key_id is not None and loaded.secrets.s3_secret_access_key is not None
                else None
            ),
        ),
    )
    pulumi.export(exports.REMOTE_ACCESS, remote_access.summary)

# When each certificate the local CA issued ends, and how long before its end `pulumi up` renews it (pulumi-tls's
# early_renewal_hours): what `iluvatar doctor` reads, beside the CA's own (caCertificate). Certificates are public.
pulumi.export(
    exports.LOCAL_CERTIFICATES,
    {name: pem.apply(functools.partial(lifetimes.issued_entry, hours=hours)) for name, (pem, hours) in sorted(local_ca.issued.items())},
)

# The same ends, and those of the Talos provider's certificates and the CAs, as alert rules on Arda's Prometheus: each
# warns a month ahead with nothing to scrape, and the `up` that renews one rewrites its rule. Ends are no secret.
if monitoring is not None:
    issued_pems = {name: pem for name, (pem, _) in sorted(local_ca.issued.items())}
    monitoring.alert_on(
        pulumi.Output.unsecret(
            pulumi.Output.all(arda.state, arda.kubeconfig, arda_config.talosconfig, local_ca.certificate, issued_pems).apply(
                lambda v: lifetimes.recorded_ends(v[0], v[1], v[2], v[3], v[4])
            )
        )
    )
