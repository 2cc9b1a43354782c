"""The logs plan: what it derives from the homelab, exactly. Each program runs its part for real in
tests/netns/test_logs.py (the store, the collector, journald's forwarder, vmalert) and Talos's own code accepts the
machines' log delivery in tests/test_talos_check.py; here, the values those runs start from."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

from plans import logs, monitoring
from stacks import load_stack_file, parse_stack, read_stack_file
from stacks.logs import estimate
from stacks.model import StackConfig
from tests.edit import HOMELAB, RK1


def homelab(**settings: Any) -> StackConfig:
    sf = read_stack_file(HOMELAB)
    raw = dict(sf.config)
    if settings:
        raw["iluvatar:logs"] = settings
    return parse_stack(raw, sf.secret_keys)


def test_logs_run_with_monitoring_unless_turned_off() -> None:
    assert logs.enabled(homelab()) and logs.enabled(load_stack_file(RK1))
    off = homelab(enabled=False)
    assert not logs.enabled(off)
    assert logs.talos_logging(off, "taniquetil") == {} and logs.kmsg_document(off) == [] and logs.dashboards(off) == {}
    assert "[plugins]" not in monitoring.grafana_ini(off)
    assert "KernelOomKill" not in json.dumps(monitoring.alertmanager_config(off, None))


def test_the_store_keeps_the_retention_and_drops_the_oldest_days_before_its_volume_is_full() -> None:
    stack = homelab(retention="30d", size="50Gi", storageClass="local-path")
    assert logs.store_args(stack) == [
        "-storageDataPath=/storage",
        "-retentionPeriod=30d",
        # No line stamped past tomorrow: the bound keeps the two newest days, today among them (tests/netns/test_logs_store.py).
        "-futureRetention=1d",
        # 80 % of the 50Gi claim, in bytes: the stack's bound on every class, not a share of the filesystem.
        "-retention.maxDiskSpaceUsageBytes=42949672960",
        "-httpListenAddr=:9428",
        "-loggerFormat=json",
        "-partitionManageAuthKey=file:///etc/victoria-logs/auth/key",
        "-forceMergeAuthKey=file:///etc/victoria-logs/auth/key",
        "-forceFlushAuthKey=file:///etc/victoria-logs/auth/key",
        "-logNewStreamsAuthKey=file:///etc/victoria-logs/auth/key",
        "-flagsAuthKey=file:///etc/victoria-logs/auth/key",
        "-pprofAuthKey=file:///etc/victoria-logs/auth/key",
    ]
    statefulset = logs.store(stack)[0]
    assert statefulset["spec"]["volumeClaimTemplates"][0]["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "storageClassName": "local-path",
        "resources": {"requests": {"storage": "50Gi"}},
    }
    # The default: 14 days on 20Gi of Arda's default class.
    assert logs.store_args(homelab())[1] == "-retentionPeriod=14d"
    assert logs.store(homelab())[0]["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"] == "ceph-block"


def test_only_the_pis_reach_the_store_on_the_lan_at_the_pools_fourth_address() -> None:
    service = logs.store_lan_service(homelab())
    assert service is not None
    assert service["metadata"]["annotations"] == {"lbipam.cilium.io/ips": "192.168.0.236"}
    assert service["spec"]["loadBalancerSourceRanges"] == ["192.168.0.11/32", "192.168.0.12/32", "192.168.0.13/32"]
    # No NodePort on Arda's machines: another address of the store, where a Pi's pod would arrive as its Pi.
    assert service["spec"]["allocateLoadBalancerNodePorts"] is False
    # The inserter's port alone: the query port is not on the LAN.
    assert service["spec"]["ports"] == [{"name": "insert", "port": 9429, "targetPort": "insert", "protocol": "TCP", "nodePort": 0}]
    assert logs.store_lan_service(load_stack_file(RK1)) is None, "no Ainur, no LAN address"
    assert logs.journal_upload_conf(homelab(address="192.168.0.230")) == "[Upload]\nURL=http://192.168.0.230:9429/insert/journald\n"


def test_the_writers_reach_an_inserter_and_the_readers_a_store_whose_admin_endpoints_need_its_key() -> None:
    """The store's pod: the store on 9428 (its readers' port), its admin endpoints behind a key read from a file of its
    Secret, and an inserter on 9429 (its writers' port) that stores, reads and manages nothing, its profiles behind
    the same key."""
    statefulset, service = logs.store(homelab())
    pod = statefulset["spec"]["template"]["spec"]
    store, inserter = pod["containers"]
    assert store["ports"] == [{"name": "http", "containerPort": 9428, "protocol": "TCP"}]
    assert store["volumeMounts"] == [
        {"name": "data", "mountPath": "/storage"},
        {"name": "auth", "mountPath": "/etc/victoria-logs/auth", "readOnly": True},
    ]
    assert pod["volumes"] == [{"name": "auth", "secret": {"secretName": "victoria-logs-auth", "defaultMode": 0o440}}]
    # The key is a file's path on the command line, never the key itself.
    assert [a.split("=", 1)[1] for a in store["args"] if "AuthKey=" in a] == ["file:///etc/victoria-logs/auth/key"] * 6
    assert (inserter["name"], inserter["image"]) == ("inserter", store["image"])
    assert inserter["args"] == [
        "-httpListenAddr=:9429",
        "-storageNode=127.0.0.1:9428",
        "-select.disable",
        "-internalinsert.disable",
        "-loggerFormat=json",
        # Its profiles (a CPU profile, a trace on demand) behind the store's key, read from the same file.
        "-pprofAuthKey=file:///etc/victoria-logs/auth/key",
    ]
    assert inserter["ports"] == [{"name": "insert", "containerPort": 9429, "protocol": "TCP"}]
    assert inserter["volumeMounts"] == [{"name": "auth", "mountPath": "/etc/victoria-logs/auth", "readOnly": True}]
    assert inserter["readinessProbe"] == {"httpGet": {"path": "/health", "port": "insert"}, "periodSeconds": 10}
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 9428, "targetPort": "http", "protocol": "TCP"},
        {"name": "insert", "port": 9429, "targetPort": "insert", "protocol": "TCP"},
    ]
    assert logs.auth_secret("k") == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "victoria-logs-auth",
            "namespace": "monitoring",
            "labels": {**logs.MANAGED_BY, "app.kubernetes.io/name": "victoria-logs-auth"},
        },
        "type": "Opaque",
        "stringData": {"key": "k"},
    }


def test_the_store_admits_only_its_readers_pods_and_its_writers_hosts_and_pis() -> None:
    readers, writers = logs.store_network_policies(homelab())
    assert readers["kind"] == "NetworkPolicy" and readers["metadata"]["namespace"] == "monitoring"
    assert readers["spec"] == {
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "victoria-logs"}},
        "policyTypes": ["Ingress"],
        "ingress": [
            {
                "from": [
                    {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "grafana"}}},
                    {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "vmalert-logs"}}},
                    {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}},
                ],
                "ports": [{"port": 9428, "protocol": "TCP"}],
            }
        ],
    }
    # The writers on the inserter's port alone, the readers on the store's alone.
    port = [{"ports": [{"port": "9429", "protocol": "TCP"}]}]
    assert (writers["apiVersion"], writers["kind"], writers["metadata"]["name"]) == ("cilium.io/v2", "CiliumNetworkPolicy", "victoria-logs-writers")
    assert writers["spec"] == {
        "endpointSelector": {"matchLabels": {"app.kubernetes.io/name": "victoria-logs"}},
        "ingress": [
            {"fromEntities": ["host", "remote-node"], "toPorts": port},
            {"fromCIDR": ["192.168.0.11/32", "192.168.0.12/32", "192.168.0.13/32"], "toPorts": port},
        ],
    }
    # Without the Ainur only Arda's own collectors write.
    assert logs.store_network_policies(load_stack_file(RK1))[1]["spec"]["ingress"] == [{"fromEntities": ["host", "remote-node"], "toPorts": port}]
    assert logs.vmalert_network_policy()["spec"]["ingress"] == [
        {"from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}], "ports": [{"port": 8880, "protocol": "TCP"}]}
    ]


def test_no_collector_runs_on_a_netbooted_maia_nor_is_looked_for_there() -> None:
    sf = read_stack_file(HOMELAB)
    raw = dict(sf.config)
    raw["iluvatar:ainur"] = {**raw["iluvatar:ainur"], "netboot": {"mode": "dhcp"}}
    raw["iluvatar:nodes"] = [
        {**n, "board": "rpi4", "boot": "netboot", "serial": "9ffefdef", "dataDisks": []} if n["name"] == "eonwe" else n for n in raw["iluvatar:nodes"]
    ]
    stack = parse_stack(raw, sf.secret_keys)
    ainur = next(m for m in logs.collector(stack, "ainur") if m["kind"] == "DaemonSet")["spec"]["template"]["spec"]
    assert ainur["affinity"] == {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "iluvatar/boot", "operator": "NotIn", "values": ["netboot"]}]}]
            }
        }
    }
    arda = next(m for m in logs.collector(stack, "arda") if m["kind"] == "DaemonSet")["spec"]["template"]["spec"]
    assert "affinity" not in arda
    scrape = next(m for m in logs.monitors(stack) if m["kind"] == "ScrapeConfig")
    assert [c["labels"]["machine"] for c in scrape["spec"]["staticConfigs"]] == ["manwe", "ilmare"]


def test_no_pod_of_the_logs_mounts_an_account_token() -> None:
    """The store (with its inserter), vmalert and the collector on both clusters (root, on every host's network) call no
    Kubernetes API: none mounts its account's token, nor names an account of its own."""
    stack = homelab()
    rendered = [*logs.store(stack), *logs.vmalert(stack), *logs.collector(stack, "arda"), *logs.collector(stack, "ainur")]
    pods = {m["metadata"]["name"]: m["spec"]["template"]["spec"] for m in rendered if m["kind"] in ("StatefulSet", "Deployment", "DaemonSet")}
    assert sorted(pods) == ["log-collector", "victoria-logs", "vmalert-logs"]
    assert len([m for m in rendered if m["kind"] == "DaemonSet"]) == 2
    for manifest in rendered:
        if manifest["kind"] in ("StatefulSet", "Deployment", "DaemonSet"):
            pod = manifest["spec"]["template"]["spec"]
            assert (pod["automountServiceAccountToken"], pod.get("serviceAccountName")) == (False, None), manifest["metadata"]["name"]
    # Nothing in the collector's config reads the API (no k8sattributes processor, no k8s observer).
    assert "k8s" not in json.dumps(logs.collector_config(stack, "arda")["processors"])


def test_the_collectors_configs_on_each_cluster() -> None:
    stack = homelab()
    arda, ainur = logs.collector_config(stack, "arda"), logs.collector_config(stack, "ainur")
    # With the Ainur, Talos's lines go to the Pis' collectors (off Arda), on every address a Pi holds.
    assert list(arda["receivers"]) == ["file_log/pods"], "no Talos on Arda's collectors"
    assert list(ainur["receivers"]) == ["file_log/pods", "tcp_log/talos-services", "tcp_log/talos-kernel"]
    assert [ainur["receivers"][r]["listen_address"] for r in list(ainur["receivers"])[1:]] == ["0.0.0.0:6050", "0.0.0.0:6051"]
    assert ainur["service"]["pipelines"]["logs/talos"] == {
        "receivers": ["tcp_log/talos-services", "tcp_log/talos-kernel"],
        "processors": ["resource/talos", "batch"],
        "exporters": ["otlp_http/store"],
    }, "Talos's lines keep the machine they name, as Arda's; the Pi's name is only its pods'"
    assert ainur["processors"]["resource/talos"] == {"attributes": [{"key": "cluster", "value": "arda", "action": "upsert"}]}
    assert "logs/talos" not in arda["service"]["pipelines"] and "resource/talos" not in arda["processors"]
    # Without the Ainur, Arda's collectors receive them (the VIP's holder).
    rk1 = logs.collector_config(load_stack_file(RK1), "arda")
    assert list(rk1["receivers"]) == ["file_log/pods", "tcp_log/talos-services", "tcp_log/talos-kernel"]
    assert arda["exporters"]["otlp_http/store"]["logs_endpoint"] == "http://victoria-logs.monitoring.svc:9429/insert/opentelemetry/v1/logs"
    assert ainur["exporters"]["otlp_http/store"]["logs_endpoint"] == "http://192.168.0.236:9429/insert/opentelemetry/v1/logs"
    assert arda["processors"]["resource/machine"]["attributes"][0] == {"key": "cluster", "value": "arda", "action": "upsert"}
    # The ConfigMap holds the config as YAML, and the DaemonSet rolls when it changes (its digest in the template).
    config, daemonset = logs.collector(stack, "arda")
    assert yaml.safe_load(config["data"]["config.yaml"]) == arda
    assert daemonset["spec"]["template"]["metadata"]["annotations"]["iluvatar.dev/config-digest"]
    pod = daemonset["spec"]["template"]["spec"]
    assert (pod["hostNetwork"], pod["dnsPolicy"]) == (True, "ClusterFirstWithHostNet")


def test_talos_sends_off_the_machine_once_each_machine_named_by_its_tag_or_its_address() -> None:
    """One destination per document, at the Ainur's service address (the VIP without the Ainur); the services' lines
    carry the machine's name, the kernel's are named from the address they come from."""
    stack = homelab()
    assert logs.talos_logging(stack, "taniquetil") == {
        "destinations": [{"endpoint": "tcp://192.168.0.14:6050/", "format": "json_lines", "extraTags": {"machine": "taniquetil"}}]
    }
    assert logs.talos_logging(stack, None) == {"destinations": [{"endpoint": "tcp://192.168.0.14:6050/", "format": "json_lines"}]}
    assert logs.kmsg_document(stack) == [
        {"apiVersion": "v1alpha1", "kind": "KmsgLogConfig", "name": "iluvatar-logs", "url": "tcp://192.168.0.14:6051/"}
    ]
    assert logs.machine_by_address(stack) == {
        "192.168.0.21": "taniquetil",
        "192.168.0.22": "tirion",
        "192.168.0.23": "alqualonde",
        "192.168.0.31": "gandalf",
        "192.168.0.32": "saruman",
    }
    kernel = logs.collector_config(stack, "ainur")["receivers"]["tcp_log/talos-kernel"]
    assert kernel["add_attributes"] is True
    named = kernel["operators"][2]
    assert named["field"] == 'resource["machine"]'
    assert named["value"] == (
        'EXPR(attributes["machine"] ?? {"192.168.0.21": "taniquetil", "192.168.0.22": "tirion", "192.168.0.23": "alqualonde", '
        '"192.168.0.31": "gandalf", "192.168.0.32": "saruman"}[attributes["net.peer.ip"]] ?? attributes["net.peer.ip"])'
    )


def test_the_collector_queues_on_disk_and_retries_until_the_store_is_back() -> None:
    """The store away for hours loses nothing up to 256 MiB a machine (tests/netns/test_logs_outage.py runs it)."""
    for cluster in ("arda", "ainur"):
        config = logs.collector_config(homelab(), cluster)
        exporter = config["exporters"]["otlp_http/store"]
        assert exporter["sending_queue"] == {"storage": "file_storage/queue", "sizer": "bytes", "queue_size": 268435456}
        assert exporter["retry_on_failure"] == {"enabled": True, "max_elapsed_time": "0s"}
        assert config["extensions"]["file_storage"]["directory"] == "/var/lib/iluvatar-log-collector", "the hostPath, which outlives the pod"
        assert config["receivers"]["file_log/pods"]["storage"] == "file_storage"
        [reader] = config["service"]["telemetry"]["metrics"]["readers"]
        assert reader["pull"]["exporter"]["prometheus"]["host"] == "${env:NODE_IP}"
        assert reader["pull"]["exporter"]["prometheus"]["port"] == 8888


def test_the_pis_admit_talos_ports_only_from_ardas_machines() -> None:
    """The ruleset names exactly the inventory's Arda addresses and both ports; the Pi's step loads it, and enables the
    unit that loads it at boot, before the forwarder (tests/netns/test_logs_outage.py sends through it)."""
    stack = load_stack_file(HOMELAB)
    ruleset = logs.talos_firewall(stack)
    assert "elements = { 192.168.0.21, 192.168.0.22, 192.168.0.23, 192.168.0.31, 192.168.0.32 }" in ruleset
    assert "tcp dport { 6050, 6051 } ip saddr != @arda drop" in ruleset
    assert "tcp dport { 6050, 6051 } meta nfproto ipv6 drop" in ruleset
    # And the Pi's pods, masqueraded to its address on the way out, never reach the store's LAN address (the netns test
    # sends through it: tests/netns/test_logs_outage.py).
    assert (
        "  chain pods {\n    type filter hook prerouting priority raw; policy accept;\n    ip saddr 10.42.0.0/16 ip daddr 192.168.0.236 drop\n  }\n"
        in ruleset
    )
    script = logs.journal_upload_script(stack, stack.ainur_nodes[0])
    assert f"printf '%s' '{ruleset}' | sudo tee /etc/iluvatar/talos-logs.nft >/dev/null" in script
    assert script.index("sudo nft -f /etc/iluvatar/talos-logs.nft") < script.index("systemctl restart systemd-journal-upload.service")
    assert "sudo systemctl enable iluvatar-talos-logs-firewall.service" in script
    assert "ExecStart=/usr/sbin/nft -f /etc/iluvatar/talos-logs.nft" in logs.TALOS_FIREWALL_SERVICE


def test_a_power_cut_costs_at_most_the_queue_never_the_collector() -> None:
    """Both bbolt files are set aside when bbolt panics at open (recreate: tests/netns/test_logs_outage.py shows it);
    fsync where a torn page would crash-loop the collector anyway: Arda's disks both files, the Pis' cards the queue."""
    stack = homelab()
    fsync = {}
    for cluster in ("arda", "ainur"):
        config = logs.collector_config(stack, cluster)
        assert config["service"]["extensions"] == ["file_storage", "file_storage/queue"]
        for name, extension in config["extensions"].items():
            assert extension["recreate"] is True, name
            fsync[cluster, name] = extension["fsync"]
    assert fsync == {
        ("arda", "file_storage"): True,
        ("arda", "file_storage/queue"): True,
        ("ainur", "file_storage"): False,
        ("ainur", "file_storage/queue"): True,
    }


def test_the_backups_recreate_leaves_are_removed_before_the_collector_starts(tmp_path: Path) -> None:
    """Repeated power cuts would fill a Pi's card with 256 MiB copies: the pod's init container deletes them; its
    command run here on a folder like the hostPath removes the backups and nothing else."""
    pod = logs.collector(homelab(), "ainur")[1]["spec"]["template"]["spec"]
    [init] = pod["initContainers"]
    assert init["image"] == "docker.io/library/busybox:1.37.0"
    assert init["volumeMounts"] == [{"name": "checkpoints", "mountPath": "/var/lib/iluvatar-log-collector"}]
    for name in ("exporter_otlp_http_store_logs", "exporter_otlp_http_store_logs.20261126T023217.166Z.backup", "receiver_filelog_pods"):
        (tmp_path / name).write_text("x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "kept.backup").write_text("x")
    command = [tmp_path.as_posix() if a == logs.CHECKPOINTS else a for a in init["command"]]
    subprocess.run(command, check=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exporter_otlp_http_store_logs", "receiver_filelog_pods", "sub"]


def test_one_dashboard_per_machine_with_its_kernel_services_and_pods() -> None:
    stack = homelab()
    boards = logs.dashboards(stack)
    assert sorted(boards) == sorted(f"logs-{n.name}.json" for n in stack.nodes)
    talos = json.loads(boards["logs-tirion.json"])
    assert talos["uid"] == "iluvatar-logs-tirion"
    assert [(p["title"], p["targets"][0]["expr"]) for p in talos["panels"]] == [
        ("Kernel messages", 'cluster:=arda machine:="tirion" service:=kernel'),
        ("Talos services", 'cluster:=arda machine:="tirion" service:!=kernel k8s.pod.name:=""'),
        ("Pods", 'cluster:=arda machine:="tirion" k8s.pod.name:!=""'),
    ]
    pi = json.loads(boards["logs-manwe.json"])
    assert [p["targets"][0]["expr"] for p in pi["panels"]] == [
        '_HOSTNAME:="manwe" _TRANSPORT:=kernel',
        '_HOSTNAME:="manwe" _TRANSPORT:!=kernel',
        'cluster:=ainur machine:="manwe"',
    ]


def test_grafana_gets_the_datasource_its_plugin_and_iluvatars_dashboards() -> None:
    stack = homelab()
    datasources = json.loads(monitoring.grafana_datasources(stack))["datasources"]
    assert [d["name"] for d in datasources] == ["prometheus", "VictoriaLogs"]
    assert datasources[1] | {"url": ""} == {
        "access": "proxy",
        "editable": False,
        "name": "VictoriaLogs",
        "orgId": 1,
        "type": "victoriametrics-logs-datasource",
        "uid": "victorialogs",
        "url": "",
        "version": 1,
    }
    # In the background: Grafana starts, its metrics dashboards with it, when grafana.com cannot be reached.
    ini = monitoring.grafana_ini(stack)
    assert "[plugins]\npreinstall = victoriametrics-logs-datasource@0.30.1\n" in ini and "preinstall_sync" not in ini
    board = monitoring.dashboards_configmap(stack)
    assert board is not None and sorted(board["data"]) == sorted([*logs.dashboards(stack), "restore-drills.json"])
    targets = {p["target"]["name"] for p in monitoring.patches(stack)}
    assert {"grafana-datasources", "alertmanager-main", "kube-state-metrics"} <= targets


def test_the_log_alerts_go_to_the_receiver_with_the_others() -> None:
    route = monitoring.alertmanager_config(homelab(), None)["route"]["routes"][0]["matchers"][0]
    for name in (
        "KernelOomKill", "DiskIOError", "EtcdSlowApply", "ControlPlanePodCrashLooping", "RestoreDrillFailed",
        "MachineLogsMissing", "TalosLogsMissing", "PiJournalMissing", "LogStoreDown", "LogCollectorDropping",
    ):  # fmt: skip
        assert f"|{name}|" in route or route.endswith(f'|{name}"') or route.startswith(f'alertname=~"{name}|'), name
    assert logs.vmalert_rules(homelab())["groups"][0]["type"] == "vlogs"
    assert logs.vmalert_args(homelab())[1:4] == [
        "-datasource.url=http://victoria-logs.monitoring.svc:9428",
        "-rule.defaultRuleType=vlogs",
        "-notifier.url=http://alertmanager-main.monitoring.svc:9093",
    ]


def test_each_log_rule_looks_back_five_minutes_and_each_machine_has_its_silence_alert() -> None:
    """A line the store ingests late still counts (its own `_time`, not vmalert's one interval); a machine whose lines
    stop, and a Pi whose journal stops, alert by name (tests/netns/test_logs.py runs them against the real store)."""
    stack = homelab()
    rules = logs.vmalert_rules(stack)["groups"][0]["rules"]
    assert all(r["expr"].startswith(("_time:5m ", "_time:30m ")) for r in rules)
    missing = ("MachineLogsMissing", "TalosLogsMissing", "PiJournalMissing")
    assert all("for" not in r for r in rules if r["alert"] not in missing), "a line's alert fires at the first evaluation that finds it"
    # A silence pends 30 minutes first: a machine being installed, or a lab coming back from a power cut, pages nobody.
    assert {r.get("for") for r in rules if r["alert"] in missing} == {"30m"}
    silent = [(r["alert"], r["labels"]["machine"], r["expr"]) for r in rules if r["alert"] in missing]
    assert silent == [
        *[
            alert
            for n in stack.arda_nodes
            for alert in (
                ("MachineLogsMissing", n.name, f'_time:30m cluster:=arda machine:="{n.name}" | stats count() as lines | filter lines:=0'),
                # Talos's own lines (no pod): its pods' lines, which its own collector sends, do not hide their silence.
                (
                    "TalosLogsMissing",
                    n.name,
                    f'_time:30m cluster:=arda machine:="{n.name}" k8s.pod.name:="" | stats count() as lines | filter lines:=0',
                ),
            )
        ],
        *[("PiJournalMissing", n.name, f'_time:30m _HOSTNAME:="{n.name}" | stats count() as lines | filter lines:=0') for n in stack.ainur_nodes],
    ]
    assert not [r for r in logs.vmalert_rules(load_stack_file(RK1))["groups"][0]["rules"] if r["alert"] == "PiJournalMissing"], "no Ainur"


def test_prometheus_scrapes_every_collector_and_vmalert_by_machine() -> None:
    stack = homelab()
    podmonitor, vmalert_monitor, pis = logs.monitors(stack)
    assert podmonitor["spec"]["podMetricsEndpoints"][0]["relabelings"] == [
        {"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "machine"}
    ]
    assert vmalert_monitor["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "vmalert-logs"}
    assert pis["spec"]["staticConfigs"][0] == {"targets": ["192.168.0.11:8888"], "labels": {"machine": "manwe", "cluster": "ainur"}}
    [service] = [m for m in logs.vmalert(stack) if m["kind"] == "Service"]
    assert service["spec"]["ports"][0]["port"] == 8880
    assert len(logs.monitors(load_stack_file(RK1))) == 2, "no Pis to scrape"


def test_the_estimate_counts_each_machine_by_role_and_each_app() -> None:
    stack = homelab()
    found = estimate(stack.nodes, len(stack.apps))
    # Seven apps: the homelab's five HTTP ones, its Minecraft server and its MQTT broker, each logging as any app.
    assert found.mib_per_day == 3 * 32 + 3 * 64 + 2 * 32 + 7 * 16 == 464
    assert found.how == "the estimate: 3 Pis × 32Mi + 3 control planes × 64Mi + 2 workers × 32Mi + 7 apps × 16Mi"


def test_the_day2_plan_says_the_log_delivery_needs_no_reboot() -> None:
    from components.arda import state_digests
    from plans import rollout

    stack, node = homelab(), homelab().arda_nodes[0]
    rest, delivery = state_digests(stack, node)
    before = {"nodes": {node.name: rollout.node_state(stack, "x", rest, node.name)}, "kubernetesVersion": "v1.34.1", "order": [node.name]}
    after = {"nodes": {node.name: rollout.node_state(stack, "x", rest, node.name, 0, delivery)}, "kubernetesVersion": "v1.34.1", "order": [node.name]}
    assert [c.what for c in rollout.changes(before, after)] == [("log delivery (machine.logging, KmsgLogConfig): Talos applies it without a reboot",)]
    assert not rollout.changes(before, after)[0].disruptive
    off = homelab(enabled=False)
    assert state_digests(off, node) == (rest, ""), "the rest of the config's digest is what a deployment before logs recorded"


def test_the_journal_forwarder_restarts_forever_after_a_store_outage(tmp_path: Path) -> None:
    """systemd-journal-upload exits on a failed upload; its own unit gives up after 5 quick restarts. The drop-in the
    Pi's step writes lifts the start limit and restarts every 30 s, as systemd reads it (systemd-analyze)."""
    stack = load_stack_file(HOMELAB)
    script = logs.journal_upload_script(stack, stack.ainur_nodes[0])
    assert f"printf '%s' '{logs.JOURNAL_UPLOAD_RESTART}' | sudo tee {logs.JOURNAL_UPLOAD_DROP_IN} >/dev/null" in script
    assert script.index("daemon-reload") < script.index("systemctl restart systemd-journal-upload.service")
    unit = tmp_path / "etc" / "systemd" / "system"
    (unit / "systemd-journal-upload.service.d").mkdir(parents=True)
    (unit / "systemd-journal-upload.service").write_text("[Unit]\nDescription=upload\n[Service]\nExecStart=/bin/true\nRestart=on-failure\n")
    (unit / "systemd-journal-upload.service.d" / "iluvatar.conf").write_text(logs.JOURNAL_UPLOAD_RESTART)
    done = subprocess.run(
        ["systemd-analyze", "cat-config", "--root", str(tmp_path), "systemd/system/systemd-journal-upload.service"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().endswith("[Unit]\nStartLimitIntervalSec=0\n\n[Service]\nRestart=always\nRestartSec=30s"), done.stdout


# --- The Pi's journal step, create then delete, run by bash with stand-ins for what a Pi has ---

# Stand-ins, not the programs: each does what the two scripts rely on, on files under $ROOT, and logs its call.
PI_STAND_INS = {
    # Every /etc path the scripts name is under $ROOT.
    "sudo": 'args=(); for a in "$@"; do case "$a" in /etc/*) args+=("$ROOT$a") ;; *) args+=("$a") ;; esac; done; exec "${args[@]}"',
    "test": 'exec /usr/bin/test "$@"',
    # A unit is enabled or active while its file under $STATE exists; `disable --now` stops it too.
    "systemctl": """echo "systemctl $*" >> "$LOG"
case "$1" in
  enable) touch "$STATE/enabled.$2" ;;
  disable) [ "$2" = --now ] && { rm -f "$STATE/enabled.$3" "$STATE/active.$3"; } || rm -f "$STATE/enabled.$2" ;;
  restart) touch "$STATE/active.$2" ;;
  is-active) [ -e "$STATE/active.$3" ] ;;
esac""",
    # A table is loaded from a file that exists (`-f`), listed while loaded, deleted once.
    "nft": """echo "nft $*" >> "$LOG"
case "$1" in
  -f) [ -e "$2" ] && touch "$STATE/table" ;;
  list) [ -e "$STATE/table" ] ;;
  delete) rm "$STATE/table" ;;
esac""",
    "dpkg-query": "echo 'install ok installed'",
}


def _on_a_pi(tmp_path: Path, script: str) -> subprocess.CompletedProcess[str]:
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    # A Pi's own /etc/systemd/system, where both units go.
    for folder in (bin_dir, state, tmp_path / "root/etc/systemd/system"):
        folder.mkdir(parents=True, exist_ok=True)
    for name, body in PI_STAND_INS.items():
        (bin_dir / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_dir / name).chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "ROOT": str(tmp_path / "root"), "STATE": str(state), "LOG": str(tmp_path / "log")}
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60, env=env)


def _left(tmp_path: Path) -> tuple[list[str], list[str]]:
    files = sorted(str(p.relative_to(tmp_path / "root")) for p in (tmp_path / "root").rglob("*") if p.is_file())
    return files, sorted(p.name for p in (tmp_path / "state").iterdir())


def test_the_journal_steps_delete_undoes_what_its_create_did(tmp_path: Path) -> None:
    """Logs turned off or the Pi removed: the forwarder stopped and disabled, its config gone, Talos's firewall unit,
    ruleset and table gone. The delete also succeeds on a card the create never reached (a rebuilt Pi's step is
    replaced delete-first, components.logs) and a second time."""
    stack = load_stack_file(HOMELAB)
    node = stack.ainur_nodes[0]
    created = _on_a_pi(tmp_path, logs.journal_upload_script(stack, node))
    assert created.returncode == 0, created.stderr
    assert _left(tmp_path) == (
        [
            "etc/iluvatar/talos-logs.nft",
            "etc/systemd/journal-upload.conf",
            "etc/systemd/system/iluvatar-talos-logs-firewall.service",
            "etc/systemd/system/systemd-journal-upload.service.d/iluvatar.conf",
        ],
        ["active.systemd-journal-upload.service", "enabled.iluvatar-talos-logs-firewall.service", "enabled.systemd-journal-upload.service", "table"],
    )
    for _ in range(2):
        deleted = _on_a_pi(tmp_path, logs.journal_upload_delete_script(node))
        assert deleted.returncode == 0, deleted.stderr
        assert _left(tmp_path) == ([], [])
        assert not (tmp_path / "root/etc/systemd/system/systemd-journal-upload.service.d").exists()
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    assert _on_a_pi(fresh, logs.journal_upload_delete_script(node)).returncode == 0
