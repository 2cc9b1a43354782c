"""Iluvatar: the Pulumi program. Load the stack config once, build each layer in order, export."""

import pulumi

from components.ainur import BootstrapCluster, BootstrapClusterArgs
from components.arda import TalosCluster, TalosClusterArgs
from components.ea import Ea, EaArgs
from components.edge import Edge, EdgeArgs
from components.gitops import GitOps, GitOpsArgs
from components.netboot import Netboot, NetbootArgs
from components.storage import Storage, StorageArgs
from stacks.pulumi_source import load

loaded = load()
stack = loaded.config

ea = Ea("ea", EaArgs(stack))
pulumi.export("lan", ea.lan)
pulumi.export("reservations", ea.reservations)
pulumi.export("dnsRecords", ea.dns_records)
pulumi.export("vips", ea.vips)
pulumi.export("gateways", ea.gateways)
pulumi.export("loadBalancerPool", ea.load_balancer_pool)

ainur = None
if stack.ainur is not None:
    ainur = BootstrapCluster("ainur", BootstrapClusterArgs(stack, loaded.secrets.ainur_ssh_private_key), opts=pulumi.ResourceOptions(depends_on=[ea]))
    pulumi.export("ainurUserData", ainur.user_data)
    pulumi.export("ainurKubeconfig", ainur.kubeconfig)

arda = TalosCluster("arda", TalosClusterArgs(stack), opts=pulumi.ResourceOptions(depends_on=[ea]))
pulumi.export("ardaTalosconfig", arda.talosconfig)
pulumi.export("ardaKubeconfig", arda.kubeconfig)
pulumi.export("ardaInstallerImages", arda.installer_images)
pulumi.export("ardaDiskImages", arda.disk_images)
pulumi.export("ardaPxeUrls", arda.pxe_urls)

edge = Edge(
    "edge",
    EdgeArgs(stack, cloudflare_api_token=loaded.secrets.cloudflare_api_token),
    opts=pulumi.ResourceOptions(providers={"kubernetes": arda.kubernetes_provider}, depends_on=[arda.cilium]),
)
pulumi.export("caCertificate", edge.ca_certificate)
pulumi.export("edge", edge.summary)
if edge.cloudflare is not None:
    pulumi.export("tunnelId", edge.cloudflare.tunnel.id)

if ainur is not None:
    netboot = Netboot(
        "netboot",
        NetbootArgs(stack, configs=arda.netboot_configs, boot_assets=arda.boot_assets, dns_records=edge.lan_records),
        opts=pulumi.ResourceOptions(providers={"kubernetes": ainur.kubernetes_provider}),
    )
    pulumi.export("dnsmasqConf", netboot.dnsmasq_conf)

gitops = None
if stack.gitops is not None:
    gitops = GitOps(
        "gitops",
        GitOpsArgs(
            stack,
            arda_kubeconfig=arda.kubeconfig,
            arda_after=[arda.cilium],
            ainur_kubeconfig=ainur.kubeconfig if ainur is not None else None,
            # The seed goes into the namespace the netboot layer owns; the mirror's credential beside the mirror.
            ainur_after=[netboot.objects[f"netboot-namespace-{ns}"] for ns in ("argocd", "netboot")] if ainur is not None else [],
            credential=loaded.secrets.gitops_token or loaded.secrets.gitops_ssh_private_key,
            # The edge owns the category namespaces (and their Pod Security levels); Argo CD deploys into them.
            namespaces=edge.category_namespaces,
        ),
    )
    pulumi.export("gitopsRepoUrls", {"arda": gitops.arda.repo_url, **({"ainur": gitops.ainur.repo_url} if gitops.ainur else {})})

storage = Storage(
    "storage",
    StorageArgs(stack, loaded.deployed, gitops, pi_joins={n: pi.join for n, pi in ainur.pis.items()} if ainur is not None else {}),
)
# What this deployment runs Ceph on: the next run reads it back to refuse an unretired removal.
pulumi.export("storage", storage.state)
