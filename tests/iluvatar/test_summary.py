"""What `validate` says of each section: the lines the shipped stacks do not reach (tests/iluvatar/test_cli.py pins theirs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from iluvatar.summary import summary
from stacks import load_stack_file, parse_stack, read_stack_file
from stacks.secrets import Secure
from tests.edit import RK1, edit, homelab_doc, write_stack


def rk1(**config: Any) -> list[str]:
    raw = {**read_stack_file(RK1).config, **config}
    return summary(parse_stack({k: v for k, v in raw.items() if v is not None}))


def test_a_monitoring_without_a_receiver_says_where_alerts_go() -> None:
    assert (
        rk1(**{"iluvatar:monitoring": {"grafana": {"app": "grafana"}}})[-2]  # before the logs' line
        == "monitoring: Prometheus keeps 15d on 20Gi; alerts go nowhere (no receiver)"
    )
    email = {"to": "you@example.org", "from": "lab@example.org", "smarthost": "smtp.example.org:587"}
    assert (
        rk1(**{"iluvatar:monitoring": {"receiver": {"email": email}}})[-2]
        == "monitoring: Prometheus keeps 15d on 20Gi; alerts by email to you@example.org through smtp.example.org:587"
    )


def test_each_line_shows_the_servers_and_choices_it_read() -> None:
    # The values a later step relies on, shown where the summary says their section: the directory, the heartbeat,
    # the NFS export, how Arda's volumes unlock, which machine netboots.
    lines = rk1(
        **{
            "iluvatar:monitoring": {
                "receiver": {"webhook": {"url": "http://10.10.0.5:8080/alerts"}},
                "heartbeat": "https://hc-ping.com/5b9f3e1c-7a0d-4c2e-9f1a-3d8e6b2c4a71",
            },
            "iluvatar:storage": {"nfs": {"server": "10.10.0.40", "share": "/volume1/k8s"}},
        }
    )
    assert [line for line in lines if line.startswith(("storage:", "monitoring:"))] == [
        "storage: Arda ceph-block (default), local-path, nfs (10.10.0.40:/volume1/k8s), Ceph keeping 3 copies",
        "monitoring: Prometheus keeps 15d on 20Gi; alerts by webhook to http://10.10.0.5:8080/alerts; heartbeat to https://hc-ping.com/5b9f3e1c-7a0d-4c2e-9f1a-3d8e6b2c4a71",
    ]


def test_backups_say_which_cluster_s_etcd_they_keep() -> None:
    nfs = {"target": "nfs://10.10.0.40/volume1/backups"}  # Arda's etcd backup follows the target: off with NFS
    assert rk1(**{"iluvatar:backup": nfs})[-1] == (
        "backup: to NFS nfs://10.10.0.40/volume1/backups; no etcd snapshots; 0 app volumes; restore drill (30 4 * * 0) of volumes, "
        "alert when none passed in 8d"
    )
    s3 = {
        "iluvatar:backup": {"target": "s3://s3.example.org/rk1", "region": "eu-west-2"},
        "iluvatar:backupS3AccessKeyId": Secure(),
        "iluvatar:backupS3SecretAccessKey": Secure(),
    }
    assert rk1(**s3)[-1] == (
        "backup: to S3 s3://s3.example.org/rk1 (region eu-west-2); etcd snapshots of Arda (0 */6 * * *); 0 app volumes; restore drill (30 4 * * 0) of "
        "volumes, Arda's etcd, alert when none passed in 8d"
    )


def test_with_an_nfs_target_the_ainurs_snapshots_are_said_kept_on_the_valar(tmp_path: Path) -> None:
    """k3s uploads the Ainur's etcd snapshots only to S3: with an NFS target the summary says where they stay, not as if
    they went to the NAS beside the volumes."""
    doc = edit(
        homelab_doc(),
        {"iluvatar:backup.target": "nfs://192.168.0.40/volume1/backups"},
        ["iluvatar:backupS3AccessKeyId", "iluvatar:backupS3SecretAccessKey"],
    )
    [line] = [line for line in summary(load_stack_file(write_stack(tmp_path, doc))) if line.startswith("backup:")]
    assert line.startswith(
        "backup: to NFS nfs://192.168.0.40/volume1/backups; etcd snapshots of the Ainur (0 */6 * * *; k3s keeps the newest 28) kept on the valar; "
    ), line


def test_a_drill_of_no_volume_nor_etcd_says_the_kms_keys_and_headscales_drills_it_still_runs(tmp_path: Path) -> None:
    """The KMS key's and Headscale's drills run with the drill whatever volumes, arda and ainur say (plans.drill): the
    summary names them, not "of nothing"."""
    from tests.remote_stacks import HEADSCALE

    drill = {"schedule": "30 5 * * 0", "volumes": False, "arda": False, "ainur": False}
    doc = edit(homelab_doc(), {"iluvatar:backup.drill": drill, "iluvatar:remoteAccess": HEADSCALE})
    [line] = [line for line in summary(load_stack_file(write_stack(tmp_path, doc))) if line.startswith("backup:")]
    assert line.endswith("restore drill (30 5 * * 0) of the KMS key, Headscale's state, alert when none passed in 8d"), line


def test_without_monitoring_the_summary_says_no_drill_runs(tmp_path: Path) -> None:
    """The render makes no drill without iluvatar:monitoring (plans.drill.enabled): the summary says so, not a schedule
    and an alert that nothing runs."""
    from tests.edit import NAMES_REGISTRY_APPS

    doc = edit(homelab_doc(), {}, list(NAMES_REGISTRY_APPS))
    stack = load_stack_file(write_stack(tmp_path, doc))
    assert stack.monitoring is None and stack.backup is not None and stack.backup.drill.enabled
    [line] = [line for line in summary(stack) if line.startswith("backup:")]
    assert line.endswith("; no restore drill (it runs with iluvatar:monitoring)"), line
    off = edit(homelab_doc(), {"iluvatar:backup.drill": {"enabled": False}})
    [line] = [line for line in summary(load_stack_file(write_stack(tmp_path, off))) if line.startswith("backup:")]
    assert line.endswith("; no restore drill"), line


def test_sections_the_stack_lacks_get_no_line() -> None:
    lines = rk1(**{"iluvatar:apps": None, "iluvatar:monitoring": None, "iluvatar:gitops": None})
    assert [line.split(":")[0] for line in lines] == ["network", "nodes", "Arda"]
    private = rk1(**{"iluvatar:gitops": {"repoUrl": "https://github.com/example/turing-pi.git", "private": True}, "iluvatar:gitopsToken": Secure()})
    assert "GitOps: https://github.com/example/turing-pi.git at HEAD, apps under apps/ (private); Argo CD chart 10.8.0" in private


def test_remote_access_says_its_server_routes_and_groups() -> None:
    from tests.remote_stacks import HEADSCALE, TAILSCALE, remote_stack

    routes = "routes 192.168.0.10/32, 192.168.0.14/32, 192.168.0.16/32, 192.168.0.20/32, 192.168.0.238/32"
    groups = "2 groups: example:homelab-admins (apps+kubernetes), example:family (apps)"
    server = "Headscale at https://vpn.example.com (LAN 192.168.0.17, devices named under tailnet.iluvatar.home.arpa, Tailscale's DERP relays)"
    assert summary(remote_stack(HEADSCALE))[-1] == f"remote access: {server}; {routes}; {groups}"
    own = {**HEADSCALE, "headscale": {**HEADSCALE["headscale"], "baseDomain": "ts.example.net", "derp": "embedded"}}
    server = "Headscale at https://vpn.example.com (LAN 192.168.0.17, devices named under ts.example.net, its own DERP relay)"
    assert summary(remote_stack(own))[-1] == f"remote access: {server}; {routes}; {groups}"
    # replacePolicy: true (validate refuses a Tailscale stack without it) loses every rule, group and grant of the tailnet's
    # policy at the first `up`: the line says so.
    assert summary(remote_stack(TAILSCALE))[-1] == (
        "remote access: Tailscale, the tailnet of OAuth client kQ2wZp7CNTRL (the first `up` replaces the tailnet's whole policy file "
        f"with Iluvatar's: copy what it holds first); {routes}; {groups}"
    )


def test_logs_say_what_the_store_keeps_or_that_they_are_off() -> None:
    lines = rk1(**{"iluvatar:logs": {"retention": "30d", "size": "40Gi", "storageClass": "local-path"}})
    assert lines[-1] == "logs: VictoriaLogs on Arda keeps 30d on 40Gi (local-path)"
    assert rk1(**{"iluvatar:logs": {"enabled": False}})[-1] == "logs: off (logs.enabled: false)"
    assert not any(line.startswith("logs:") for line in rk1(**{"iluvatar:monitoring": None}))


def test_discovery_says_where_unknown_machines_boot() -> None:
    from tests.edit import HOMELAB

    raw = dict(read_stack_file(HOMELAB).config)
    raw["iluvatar:arda"] = {**raw["iluvatar:arda"], "discovery": {"pool": {"start": "192.168.0.200", "end": "192.168.0.209"}}}
    lines = summary(parse_stack(raw))
    assert "discovery: unknown machines on network.lan boot Talos (amd64) into maintenance mode (lends 192.168.0.200-192.168.0.209)" in lines
    raw["iluvatar:arda"]["discovery"]["arches"] = ["arm64", "amd64"]
    lines = summary(parse_stack(raw))
    assert "discovery: unknown machines on network.lan boot Talos (amd64, arm64) into maintenance mode (lends 192.168.0.200-192.168.0.209)" in lines


def test_the_nodes_line_names_the_machines_that_boot_from_the_network(tmp_path: Path) -> None:
    doc = edit(homelab_doc(), {"iluvatar:nodes[2].boot": "netboot", "iluvatar:nodes[2].serial": "3f2a91c4"})
    raw = read_stack_file(write_stack(tmp_path, doc)).config
    for key in ("cloudflareApiToken", "identityConnectorSecret", "backupS3AccessKeyId", "backupS3SecretAccessKey"):
        raw[f"iluvatar:{key}"] = Secure()
    raw["iluvatar:appSecrets"] = {"home-assistant": {"WEATHER_API_KEY": Secure()}}
    assert summary(parse_stack(raw))[1] == "nodes: 8 (Ainur 1 valar + 2 maiar; Arda 3 valinor + 2 istari); ilmare boots from the network"


def test_the_power_line_names_each_machines_bmc_slot_or_wake_on_lan_link(tmp_path: Path) -> None:
    # What `up` powers each machine with: a wrong slot or link is seen here before `up` waits on a machine that never starts.
    machines = read_stack_file(RK1).config["iluvatar:nodes"]
    machines[0] = {**machines[0], "power": {"bmc": {"address": "10.10.0.6", "slot": 1, "flash": True}}}
    machines[1] = {**machines[1], "power": {"bmc": {"address": "10.10.0.6", "slot": 2}}}
    machines[3] = {**machines[3], "power": {"bmc": {"address": "10.10.0.7", "slot": 4}}}
    passwords = {"10.10.0.6": Secure(), "10.10.0.7": Secure()}
    assert rk1(**{"iluvatar:nodes": machines, "iluvatar:bmcPasswords": passwords})[2] == (
        "power: through the BMC at 10.10.0.6: talos-1 (slot 1, flashed when new), talos-2 (slot 2); through the BMC at 10.10.0.7: talos-4 (slot 4)"
    )
    assert [line.split(":")[0] for line in rk1()][:3] == ["network", "nodes", "Arda"]  # no machine says how: no line
    doc = edit(
        homelab_doc(), {"iluvatar:nodes[6].power": {"wakeOnLan": {"link": "enp0s25"}}, "iluvatar:nodes[7].power": {"wakeOnLan": {"link": "eno1"}}}
    )
    assert summary(parse_stack(_secrets_set(read_stack_file(write_stack(tmp_path, doc)).config)))[2] == (
        "power: by Wake-on-LAN from the Ainur: gandalf (enp0s25), saruman (eno1)"
    )


def test_the_ainur_line_names_a_pi_image_release_other_than_the_default(tmp_path: Path) -> None:
    image = {
        "release": "24.04.2",
        "url": "https://cdimage.ubuntu.com/releases/24.04.2/release/ubuntu-24.04.2-preinstalled-server-arm64+raspi.img.xz",
        "sha256": "5bfd3e2fb2e3c3b5e2e4ea5d2bbd7e2d3d0dc2f69e1b5f4d47d3bd21f0c2e1a9",
    }
    doc = edit(homelab_doc(), {"iluvatar:ainur.piImage": image})
    assert summary(parse_stack(_secrets_set(read_stack_file(write_stack(tmp_path, doc)).config)))[2] == (
        "Ainur: k3s v1.35.8+k3s1, API VIP 192.168.0.10, DHCP/TFTP/HTTP/DNS at 192.168.0.14 (netboot dhcp, leases of 12h; routerPool "
        "none: no other DHCP server's lease held), Git mirror at 192.168.0.15; netbooted Pis run Ubuntu 24.04.2 (ainur.piImage); Secrets "
        "encrypted at rest"
    )
    doc = edit(homelab_doc(), {"iluvatar:ainur.piImage": {"release": "24.04.3"}})  # the default, written out
    assert "ainur.piImage" not in summary(parse_stack(_secrets_set(read_stack_file(write_stack(tmp_path, doc)).config)))[2]


def test_the_ainur_line_says_preview_asks_for_the_routers_pool_in_dhcp_mode_without_one(tmp_path: Path) -> None:
    # Validate reads no deployment: a dhcp stack without routerPool is refused by preview on a first deployment or a
    # move from proxy (stacks.netboot_mode), and the summary says so rather than reading as settled.
    doc = edit(homelab_doc(), delete=["iluvatar:ainur.netboot.routerPool"])
    assert summary(parse_stack(_secrets_set(read_stack_file(write_stack(tmp_path, doc)).config)))[2] == (
        "Ainur: k3s v1.35.8+k3s1, API VIP 192.168.0.10, DHCP/TFTP/HTTP/DNS at 192.168.0.14 (netboot dhcp, leases of 12h; "
        "ainur.netboot.routerPool not set: `pulumi preview` asks for it unless the Ainur already served the LAN's DHCP), Git mirror at "
        "192.168.0.15; Secrets encrypted at rest"
    )


def _secrets_set(raw: dict[str, Any]) -> dict[str, Any]:
    """The homelab's config with each secret it needs set, as `validate` reads it once they are."""
    for key in ("cloudflareApiToken", "identityConnectorSecret", "backupS3AccessKeyId", "backupS3SecretAccessKey"):
        raw[f"iluvatar:{key}"] = Secure()
    raw["iluvatar:appSecrets"] = {"home-assistant": {"WEATHER_API_KEY": Secure()}}
    return raw


def test_the_arda_and_gitops_lines_name_the_cilium_and_argo_cd_charts() -> None:
    arda = read_stack_file(RK1).config["iluvatar:arda"]
    lines = rk1(
        **{
            "iluvatar:arda": {**arda, "cilium": {"version": "1.18.0", "hubble": False}},
            "iluvatar:gitops": {"repoUrl": "https://github.com/example/turing-pi.git", "argocd": {"version": "9.1.0"}},
        }
    )
    assert [line for line in lines if line.startswith(("Arda:", "GitOps:"))] == [
        "Arda: turing, Talos v1.14.1, Kubernetes v1.35.1, API VIP 10.10.0.10; the control planes run workloads too; Cilium 1.18.0 without Hubble",
        "GitOps: https://github.com/example/turing-pi.git at HEAD, apps under apps/; Argo CD chart 9.1.0",
    ]


def test_the_ainur_line_says_the_leases_the_routers_pool_and_secrets_at_rest(tmp_path: Path) -> None:
    doc = edit(homelab_doc(), {"iluvatar:ainur.netboot.leaseTime": "24h", "iluvatar:ainur.netboot.routerPool": "none"})
    assert summary(parse_stack(_secrets_set(read_stack_file(write_stack(tmp_path, doc)).config)))[2] == (
        "Ainur: k3s v1.35.8+k3s1, API VIP 192.168.0.10, DHCP/TFTP/HTTP/DNS at 192.168.0.14 (netboot dhcp, leases of 24h; routerPool "
        "none: no other DHCP server's lease held), Git mirror at 192.168.0.15; Secrets encrypted at rest"
    )


def test_a_netbooting_pi_has_the_ainur_line_name_its_release_and_the_nodes_line_each_machine_on_a_vlan(tmp_path: Path) -> None:
    doc = edit(
        homelab_doc(),
        {
            "iluvatar:nodes[2].boot": "netboot",
            "iluvatar:nodes[2].serial": "3f2a91c4",
            "iluvatar:nodes[7].vlan": "iot",
            "iluvatar:nodes[7].ip": "192.168.20.32",
        },
    )
    lines = summary(parse_stack(_secrets_set(read_stack_file(write_stack(tmp_path, doc)).config)))
    assert lines[1] == "nodes: 8 (Ainur 1 valar + 2 maiar; Arda 3 valinor + 2 istari); ilmare boots from the network; saruman on VLAN iot"
    assert lines[2].endswith("; netbooted Pis run Ubuntu 24.04.3 (ainur.piImage); Secrets encrypted at rest")


def test_the_storage_line_names_cephs_copies_and_the_ainurs_encrypted_claims(tmp_path: Path) -> None:
    doc = edit(homelab_doc(), {"iluvatar:storage.arda.ceph.replicas": 2, "iluvatar:storage.ainur.encrypted": True})
    [line] = [line for line in summary(parse_stack(_secrets_set(read_stack_file(write_stack(tmp_path, doc)).config))) if line.startswith("storage:")]
    assert line == (
        "storage: Arda ceph-block (default), ceph-filesystem, local-path, Ceph keeping 2 copies; Ainur longhorn (default), the Ainur's own "
        "claims on longhorn-encrypted"
    )


ARDA_RK1 = "Arda: turing, Talos v1.14.1, Kubernetes v1.35.1, API VIP 10.10.0.10; the control planes run workloads too; Cilium 1.18.4 with Hubble"


def test_the_arda_line_says_which_machines_carry_talos_patches_what_they_touch_and_each_boards_kernel_arguments() -> None:
    """What a patch touches (its keys two deep, a config document by its kind), never what it sets: a patch may hold a
    token. A stack without patches or kernel arguments keeps its line."""
    assert rk1()[2] == ARDA_RK1
    arda = read_stack_file(RK1).config["iluvatar:arda"]
    patches = [
        {"machine": {"kubelet": {"extraArgs": {"max-pods": "150"}}, "sysctls": {"vm.max_map_count": "262144"}}},
        {"cluster": {"network": {"podSubnets": ["10.200.0.0/16"]}}, "machine": {"kubelet": {"extraArgs": {"v": "2"}}}},
        {"apiVersion": "v1alpha1", "kind": "TimeSyncConfig", "ntp": {"servers": ["10.10.0.1"]}},
    ]
    machines = read_stack_file(RK1).config["iluvatar:nodes"]
    machines[3] = {**machines[3], "talosPatches": [{"machine": {"nodeLabels": {"zone": "attic"}, "env": {"HTTP_PROXY": "http://10.10.0.5:3128"}}}]}
    line = rk1(
        **{
            "iluvatar:arda": {**arda, "patches": patches, "kernelArgs": {"rk1": ["console=ttyS2,1500000", "net.ifnames=0"]}},
            "iluvatar:nodes": machines,
        }
    )[2]
    assert line == (
        f"{ARDA_RK1}; Talos patches on every machine (machine.kubelet, machine.sysctls, cluster.network, a TimeSyncConfig document), "
        "talos-4 (machine.nodeLabels, machine.env); rk1 boots with console=ttyS2,1500000 net.ifnames=0"
    )


def test_the_arda_line_prints_no_credential_of_a_kernel_argument() -> None:
    """Such arguments are refused (stacks.credentials); the summary masks them all the same, so nothing it prints ever
    echoes a join token, an inline machine config or a URL's token."""
    stack = parse_stack(read_stack_file(RK1).config)
    args = (
        "siderolink.api=grpc://omni.lan:8090?jointoken=JOINSECRET0123456789",
        "talos.config.inline=bWFjaGluZTogCiAgdG9rZW46IGFiY2RlZg==",
        "talos.config=https://u:PW@cfg.lan/c?token=TOKSECRET&node=1",
        "console=ttyS2,1500000",
        "quiet",
    )
    patched = stack.model_copy(update={"arda": stack.arda.model_copy(update={"kernel_args": {"rk1": args}})})
    line = summary(patched)[2]
    assert line == (
        f"{ARDA_RK1}; rk1 boots with siderolink.api=grpc://omni.lan:8090/… talos.config.inline=*** "
        "talos.config=https://cfg.lan/… console=ttyS2,1500000 quiet"
    )
    assert not any(secret in line for secret in ("JOINSECRET", "bWFjaGluZT", "PW", "TOKSECRET"))


def test_the_arda_line_prints_no_value_of_talos_environment() -> None:
    """talos.environment=KEY=VALUE is an environment variable for Talos's services (a proxy with its password, a cloud's
    keys): its VALUE is never printed, and a KEY=VALUE in another argument's value is masked where KEY names a credential."""
    stack = parse_stack(read_stack_file(RK1).config)
    args = (
        "talos.environment=PASSWORD=hunter2",
        "talos.environment=AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "talos.environment=HTTPS_PROXY=http://bob:pw@proxy.lan:3128",
        "talos.environment=NO_PROXY=.lan",
        "mod.opt=passphrase=swordfish",
        "mod.opt=mode=fast",
    )
    patched = stack.model_copy(update={"arda": stack.arda.model_copy(update={"kernel_args": {"rk1": args}})})
    line = summary(patched)[2]
    assert line == (
        f"{ARDA_RK1}; rk1 boots with talos.environment=PASSWORD=*** talos.environment=AWS_SECRET_ACCESS_KEY=*** "
        "talos.environment=HTTPS_PROXY=*** talos.environment=NO_PROXY=*** mod.opt=passphrase=*** mod.opt=mode=fast"
    )
    assert not any(secret in line for secret in ("hunter2", "wJalr", "bob", "swordfish"))


APPS_RK1 = "apps: 2 (grafana, home-assistant); 0 external"


def test_the_apps_line_says_the_host_network_apps_and_the_pods_each_app_admits() -> None:
    assert rk1()[3] == APPS_RK1
    apps = read_stack_file(RK1).config["iluvatar:apps"]
    apps[1] = {**apps[1], "hostNetwork": {"node": "talos-4", "ports": [{"port": 8123}, {"port": 5353, "protocol": "udp"}]}}
    mosquitto = {
        "name": "mosquitto",
        "category": "home-automation",
        "host": "mqtt.turing.home.arpa",
        "address": "10.10.0.201",
        "ports": [{"port": 1883}, {"port": 8883, "targetPort": 18883}, {"port": 1884, "protocol": "udp"}],
        "clients": [{"namespace": "home-automation"}, {"namespace": "monitoring", "pods": {"app": "exporter", "tier": "metrics"}, "ports": [1883]}],
    }
    assert rk1(**{"iluvatar:apps": [*apps, mosquitto]})[3] == (
        "apps: 3 (grafana, home-assistant, mosquitto); 0 external; raw ports: mosquitto at 10.10.0.201 (1883/tcp, 8883/tcp, 1884/udp); "
        "on a machine's own network: home-assistant on talos-4 (8123/tcp, 5353/udp); pods admitted: mosquitto from namespace "
        "home-automation (1883/tcp, 18883/tcp, 1884/udp), pods app=exporter, tier=metrics of namespace monitoring (1883/tcp)"
    )


def test_the_app_secrets_line_names_each_secret_and_its_source_never_a_value() -> None:
    assert not any(line.startswith("app secrets:") for line in rk1())
    apps = read_stack_file(RK1).config["iluvatar:apps"]
    apps[0] = {**apps[0], "secrets": [{"name": "ADMIN_PASSWORD", "generate": 24}, {"name": "SMTP_PASSWORD"}]}
    apps[1] = {**apps[1], "secrets": [{"name": "SMTP_PASSWORD", "from": "grafana"}]}
    # A value under a name no app has (an app renamed or removed) is left alone by validate (stacks.data): shown as read.
    set_ = {"grafana": {"SMTP_PASSWORD": Secure("v1:c2VjcmV0"), "OLD_TOKEN": Secure()}, "wiki": {"DB_PASSWORD": Secure()}}
    lines = rk1(**{"iluvatar:apps": apps, "iluvatar:appSecrets": set_})
    assert lines[4] == (
        "app secrets: grafana ADMIN_PASSWORD (generated, 24 characters), SMTP_PASSWORD (set by you), OLD_TOKEN (set, read by none); "
        "home-assistant SMTP_PASSWORD (grafana's); wiki DB_PASSWORD (set, no such app)"
    )


def test_the_backup_line_says_each_apps_schedule_and_what_restic_keeps() -> None:
    apps = read_stack_file(RK1).config["iluvatar:apps"]
    volume = [{"claim": "data", "size": "1Gi"}]
    apps[0] = {**apps[0], "backup": {"schedule": "0 3 * * *", "volumes": volume}}
    apps[1] = {
        **apps[1],
        "backup": {
            "schedule": "@daily",
            "keep": {"last": 3, "daily": None, "weekly": None, "monthly": 12},
            "volumes": [*volume, {"claim": "db", "size": "2Gi"}],
        },
    }
    nfs = {"target": "nfs://10.10.0.40/volume1/backups"}
    assert rk1(**{"iluvatar:backup": nfs, "iluvatar:apps": apps})[-1] == (
        "backup: to NFS nfs://10.10.0.40/volume1/backups; no etcd snapshots; 3 app volumes (grafana's at 0 3 * * *, keeping the newest "
        "of each of the last 7 days, 4 weeks and 6 months; home-assistant's at @daily, keeping the newest 3 and the newest of each of "
        "the last 12 months); restore drill (30 4 * * 0) of volumes, alert when none passed in 8d"
    )
