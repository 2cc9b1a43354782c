"""The restore drill's plan: which drills a stack gets, their CronJobs, and their alerts through promtool.

The drills' scripts run for real in tests/test_drill.py; here, what the plan derives, and each alert fired (and kept
quiet) by Prometheus's own `promtool test rules` on kube-state-metrics' CronJob series, as v2.19.0 names them
(internal/store/cronjob.go: kube_cronjob_labels with the allowed labels as label_<name>, and the schedule, success,
active and created series, each labelled namespace and cronjob).
"""

from __future__ import annotations

import datetime
import re
from typing import Any

import pytest

from plans import drill, monitoring
from stacks import data, parse_stack, pins, read_stack_file, releases
from stacks.data import longest_gap, newest_within
from stacks.errors import StackConfigError
from stacks.model import StackConfig
from tests.edit import HOMELAB
from tools import alert_check


def homelab(**drill_settings: Any) -> StackConfig:
    raw = dict(read_stack_file(HOMELAB).config)
    if drill_settings:
        raw["iluvatar:backup"] = {**raw["iluvatar:backup"], "drill": drill_settings}
    return parse_stack(raw, read_stack_file(HOMELAB).secret_keys)


def test_each_backup_of_the_homelab_has_its_drill() -> None:
    stack = homelab()
    assert [(c["metadata"]["namespace"], c["metadata"]["name"]) for c in drill.cronjobs(stack)] == [
        ("home-automation", "drill-home-assistant-config"),
        ("media", "drill-jellyfin-config"),
        ("selfhosted", "drill-backups-minecraft-0"),
        ("home-automation", "drill-mosquitto-data"),
        ("backup-drill", "drill-etcd-arda"),
        ("backup-drill", "drill-etcd-ainur"),
    ]
    assert {c["spec"]["schedule"] for c in drill.cronjobs(stack)} == {"30 4 * * 0"}
    off = homelab(enabled=False)
    assert drill.cronjobs(off) == [] and drill.dashboards(off) == {} and "RestoreDrillFailed" not in {a.name for a in monitoring.alerts(off)}
    assert [c["metadata"]["name"] for c in drill.cronjobs(homelab(volumes=False, ainur=False))] == ["drill-etcd-arda"]


def test_a_stack_without_monitoring_has_no_drill() -> None:
    raw = {k: v for k, v in read_stack_file(HOMELAB).config.items() if k not in ("iluvatar:monitoring", "iluvatar:alertReceiverSecret")}
    assert drill.cronjobs(parse_stack(raw, read_stack_file(HOMELAB).secret_keys)) == []


def test_a_volumes_drill_restores_into_a_scratch_claim_of_its_class_and_size_and_never_the_live_one() -> None:
    stack = homelab()
    [job] = [c for c in drill.cronjobs(stack) if c["metadata"]["name"] == "drill-jellyfin-config"]
    spec = job["spec"]["jobTemplate"]["spec"]
    assert (spec["backoffLimit"], spec["activeDeadlineSeconds"], job["spec"]["concurrencyPolicy"]) == (0, 3 * 3600, "Forbid")
    # The finished Job goes within the hour, its pod and the pod's scratch claim with it (not at next week's run).
    assert spec["ttlSecondsAfterFinished"] == 3600
    pod = spec["template"]["spec"]
    scratch = pod["volumes"][0]
    # The live claim's class (ceph-block), as a copy that deletes the volume with its claim (tests/plans/test_storage.py).
    assert scratch["ephemeral"]["volumeClaimTemplate"]["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "storageClassName": "drill-scratch-ceph-block",
        "resources": {"requests": {"storage": "10Gi"}},
    }
    claims = [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert claims == [], "the live claim is never mounted"
    assert pod["containers"][0]["envFrom"] == [{"secretRef": {"name": "jellyfin-config-restic"}}]
    assert job["metadata"]["labels"][drill.LABEL] == "jellyfin"


def test_an_nfs_target_is_mounted_where_the_repository_says_and_has_no_etcd_drill() -> None:
    sf = read_stack_file(HOMELAB)
    raw = {k: v for k, v in sf.config.items() if k not in ("iluvatar:backupS3AccessKeyId", "iluvatar:backupS3SecretAccessKey")}
    raw["iluvatar:backup"] = {**raw["iluvatar:backup"], "target": "nfs://192.168.0.40/volume1/backups"}
    stack = parse_stack(raw, frozenset(k for k in sf.secret_keys if not k.startswith("iluvatar:backupS3")))
    jobs = drill.cronjobs(stack)
    assert [j["metadata"]["name"] for j in jobs] == [
        "drill-home-assistant-config",
        "drill-jellyfin-config",
        "drill-backups-minecraft-0",
        "drill-mosquitto-data",
    ], "k3s keeps the Ainur's on the Pis"
    pod = jobs[0]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["volumes"][-1] == {"name": "target", "nfs": {"server": "192.168.0.40", "path": "/volume1/backups"}}
    # Read-only, and as VolSync's mover runs (root), whose files are root's and owner-only, with only the privileged
    # mover's three capabilities, which restoring files not root's needs (tests/test_drill.py runs it so against a
    # real repository); an S3 target's drill stays unprivileged.
    assert pod["containers"][0]["volumeMounts"][-1] == {"name": "target", "mountPath": "/mnt/backup", "readOnly": True}
    context = pod["containers"][0]["securityContext"]
    assert (context["runAsUser"], context["runAsGroup"], context["runAsNonRoot"], context["capabilities"]) == (
        0,
        0,
        False,
        {"drop": ["ALL"], "add": ["CHOWN", "DAC_OVERRIDE", "FOWNER"]},
    )
    [s3] = [c for c in drill.cronjobs(homelab()) if c["metadata"]["name"] == "drill-jellyfin-config"]
    assert s3["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsUser"] == drill.NONROOT


def test_long_names_are_cut_to_a_cronjobs_52_characters() -> None:
    name = drill.cronjob_name("a-very-long-claim-name-of-an-app-that-keeps-its-photos-here")
    assert len(name) == 52 and name.startswith("drill-a-very-long-claim-name-of-an-app-that-ke-")
    assert drill.cronjob_name("short") == "drill-short"


@pytest.mark.parametrize(
    ("schedule", "gap"),
    [
        ("30 4 * * 0", datetime.timedelta(days=7)),
        ("@daily", datetime.timedelta(days=1)),
        ("0 */6 * * *", datetime.timedelta(hours=6)),
        ("0 3 * * 1-5", datetime.timedelta(days=3)),  # Friday to Monday
        ("0 3 1 * *", datetime.timedelta(days=31)),
        ("0 3 1,15 * 1", datetime.timedelta(days=7)),  # both day fields restricted: either matches
        ("0 0 29 2 *", datetime.timedelta(days=731)),  # not in 2026 or 2027: as good as never
    ],
)
def test_the_longest_gap_between_two_runs(schedule: str, gap: datetime.timedelta) -> None:
    assert longest_gap(schedule) == gap


@pytest.mark.parametrize(
    ("schedule", "newest"),
    [
        ("0 * * * *", datetime.timedelta(hours=2)),  # a gap under a day: twice the gap
        ("0 */6 * * *", datetime.timedelta(hours=12)),
        ("0 3 * * *", datetime.timedelta(days=2)),  # a day's gap: the gap and a day
        ("30 4 * * 0", datetime.timedelta(days=8)),  # longer: the gap and a day, never twice a week
        ("0 3 * * 1-5", datetime.timedelta(days=4)),
    ],
)
def test_how_old_the_newest_backup_may_be_when_a_drill_reads_it(schedule: str, newest: datetime.timedelta) -> None:
    assert newest_within(schedule) == newest


def test_each_drill_reads_its_own_backups_schedule_and_bound_in_utc() -> None:
    bounds = {}
    for cronjob in drill.cronjobs(homelab()):
        pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        [reader] = [c for c in [*pod.get("initContainers", []), *pod["containers"]] if c["name"] in ("drill", "fetch")]
        env = {e["name"]: e["value"] for e in reader["env"] if "value" in e}
        bounds[cronjob["metadata"]["name"]] = (env["SCHEDULE"], env["MAX_AGE"], env["TZ"])
    assert bounds == {
        "drill-home-assistant-config": ("0 3 * * *", "172800", "UTC"),
        "drill-jellyfin-config": ("30 3 * * *", "172800", "UTC"),
        "drill-backups-minecraft-0": ("45 3 * * *", "172800", "UTC"),
        "drill-mosquitto-data": ("15 3 * * *", "172800", "UTC"),
        "drill-etcd-arda": ("0 */6 * * *", "43200", "UTC"),
        "drill-etcd-ainur": ("0 */6 * * *", "43200", "UTC"),
    }


# --- The alerts, through promtool ------------------------------------------------------------------------------

DAY = 86400
# Prometheus's clock in a unit test starts at 0; these series are read at `eval_time`.
JELLYFIN = 'namespace="media",cronjob="drill-jellyfin-config"'
HASS = 'namespace="home-automation",cronjob="drill-home-assistant-config"'
ARDA = 'namespace="backup-drill",cronjob="drill-etcd-arda"'


def _series(name: str, labels: str, values: str) -> dict[str, str]:
    return {"series": f"{name}{{{labels}}}", "values": values}


def _drills() -> list[dict[str, str]]:
    return [
        _series("kube_cronjob_labels", f'{JELLYFIN},label_iluvatar_dev_drill="jellyfin",label_iluvatar_dev_drill_kind="volume"', "1x400"),
        _series("kube_cronjob_labels", f'{HASS},label_iluvatar_dev_drill="home-assistant",label_iluvatar_dev_drill_kind="volume"', "1x400"),
        _series("kube_cronjob_labels", f'{ARDA},label_iluvatar_dev_drill="arda",label_iluvatar_dev_drill_kind="etcd"', "1x400"),
        # jellyfin: scheduled at 1000 s, its run over, its last success at 500 s: failed.
        _series("kube_cronjob_status_last_schedule_time", JELLYFIN, "1000x400"),
        _series("kube_cronjob_status_last_successful_time", JELLYFIN, "500x400"),
        _series("kube_cronjob_status_active", JELLYFIN, "0x400"),
        _series("kube_cronjob_created", JELLYFIN, "0x400"),
        # home-assistant: its last run succeeded after it was scheduled.
        _series("kube_cronjob_status_last_schedule_time", HASS, "1000x400"),
        _series("kube_cronjob_status_last_successful_time", HASS, "1100x400"),
        _series("kube_cronjob_status_active", HASS, "0x400"),
        _series("kube_cronjob_created", HASS, "0x400"),
        # arda: scheduled, never succeeded yet, and still running: not failed (yet).
        _series("kube_cronjob_status_last_schedule_time", ARDA, "1000x400"),
        _series("kube_cronjob_status_active", ARDA, "1x400"),
        _series("kube_cronjob_created", ARDA, "0x400"),
    ]


def _expected(stack: StackConfig, name: str, labels: str, what: str, kind: str) -> dict[str, Any]:
    alert = next(a for a in monitoring.alerts(stack) if a.name == name)
    found = dict(part.split("=") for part in labels.replace('"', "").split(","))
    values = {**found, "label_iluvatar_dev_drill": what, "label_iluvatar_dev_drill_kind": kind}
    words = {
        "label_iluvatar_dev_drill": what,
        "label_iluvatar_dev_drill_kind": kind,
        "namespace": found["namespace"],
        "cronjob": found["cronjob"],
    }

    def expand(text: str) -> str:
        return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: words[m.group(1)], text)

    return {
        "exp_labels": {**values, "severity": alert.severity},
        "exp_annotations": {"summary": expand(alert.summary), "description": expand(alert.description)},
    }


def test_a_failed_drill_fires_naming_its_app_and_a_good_or_running_one_does_not() -> None:
    stack = homelab()
    case = {
        "interval": "1m",
        "input_series": _drills(),
        "alert_rule_test": [
            {
                "eval_time": "10m",
                "alertname": "RestoreDrillFailed",
                "exp_alerts": [_expected(stack, "RestoreDrillFailed", JELLYFIN, "jellyfin", "volume")],
            }
        ],
    }
    result = alert_check.unit_test_rules(monitoring.alert_rules(stack), [case])
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_stale_drill_fires_after_the_schedules_gap_and_a_day() -> None:
    stack = homelab()
    assert next(a for a in monitoring.alerts(stack) if a.name == "RestoreDrillStale").summary.endswith("for 8 days")
    # Eight days and a bit later, nothing has succeeded since: all three are stale (arda never succeeded, created at 0).
    series = [s for s in _drills() if "status_active" not in s["series"]] + [
        _series("kube_cronjob_status_active", labels, "0x200") for labels in (JELLYFIN, HASS, ARDA)
    ]
    series = [{**s, "values": s["values"].replace("x400", "x200")} for s in series]
    expected = [
        _expected(stack, "RestoreDrillStale", JELLYFIN, "jellyfin", "volume"),
        _expected(stack, "RestoreDrillStale", HASS, "home-assistant", "volume"),
        _expected(stack, "RestoreDrillStale", ARDA, "arda", "etcd"),
    ]
    # Hourly samples and evaluations: eight days of them.
    case = {
        "interval": "1h",
        "input_series": series,
        "alert_rule_test": [
            {"eval_time": "7d", "alertname": "RestoreDrillStale", "exp_alerts": []},  # within the gap: quiet
            {"eval_time": "8d3h", "alertname": "RestoreDrillStale", "exp_alerts": expected},
        ],
    }
    result = alert_check.unit_test_rules(monitoring.alert_rules(stack), [case], evaluation_interval="1h")
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_drill_that_succeeded_does_not_fail_its_unit_test_as_failed() -> None:
    """The deliberate break: expecting jellyfin's alert when its run succeeded fails promtool."""
    stack = homelab()
    series = [s if s["series"] != f"kube_cronjob_status_last_successful_time{{{JELLYFIN}}}" else {**s, "values": "1200x400"} for s in _drills()]
    case = {
        "interval": "1m",
        "input_series": series,
        "alert_rule_test": [
            {
                "eval_time": "10m",
                "alertname": "RestoreDrillFailed",
                "exp_alerts": [_expected(stack, "RestoreDrillFailed", JELLYFIN, "jellyfin", "volume")],
            }
        ],
    }
    result = alert_check.unit_test_rules(monitoring.alert_rules(stack), [case])
    assert result.returncode != 0 and "RestoreDrillFailed" in result.stdout + result.stderr


def test_kube_state_metrics_copies_the_drills_labels_and_grafana_shows_the_last_good_restore() -> None:
    stack = homelab()
    patch = next(p for p in monitoring.patches(stack) if p["target"]["name"] == "kube-state-metrics")
    assert patch["patch"] == (
        '[{"op": "add", "path": "/spec/template/spec/containers/0/args/-", '
        '"value": "--metric-labels-allowlist=cronjobs=[iluvatar.dev/drill,iluvatar.dev/drill-kind]"}]'
    )
    board = drill.dashboard()
    assert [p["title"] for p in board["panels"]] == ["Last good restore of each backup", "Time since the last good restore"]
    assert board["panels"][0]["targets"][0]["expr"].startswith("kube_cronjob_status_last_successful_time * 1000 * on(namespace, cronjob)")


def test_the_scratch_claims_classes_are_the_drilled_volumes_classes_and_delete() -> None:
    classes = drill.scratch_classes(homelab())
    assert [(c["metadata"]["name"], c["reclaimPolicy"], c["provisioner"]) for c in classes] == [
        ("drill-scratch-ceph-block", "Delete", "rook-ceph.rbd.csi.ceph.com")
    ]
    assert drill.scratch_classes(homelab(volumes=False)) == []


def test_arda_s_drill_keeps_age_on_its_own_claim_on_the_default_class() -> None:
    """The tools claim: Arda's default class, not awaited by Pulumi (bound by the drill's first pod); mounted in the
    decrypt step alone."""
    stack = parse_stack(dict(read_stack_file(HOMELAB).config))
    assert drill.tools_claim(stack) == {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": "drill-tools",
            "namespace": "backup-drill",
            "labels": drill.MANAGED_BY,
            "annotations": {"pulumi.com/skipAwait": "true"},
        },
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "512Mi"}}, "storageClassName": "ceph-block"},
    }
    pod = drill.etcd_cronjob(stack, "arda")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert {"name": "tools", "persistentVolumeClaim": {"claimName": "drill-tools"}} in pod["volumes"]
    mounted = {c["name"] for c in pod["initContainers"] + pod["containers"] if any(m["name"] == "tools" for m in c["volumeMounts"])}
    assert mounted == {"decrypt"}
    assert set(drill.AGE_SHA256) == {"amd64", "arm64"} and all(re.fullmatch(r"[0-9a-f]{64}", d) for d in drill.AGE_SHA256.values())


# --- etcd's minor ----------------------------------------------------------------------------------------------


def _at(talos: str, k3s: str | None = None) -> StackConfig:
    """The homelab with Arda on `talos` (and the Ainur on `k3s`)."""
    sf = read_stack_file(HOMELAB)
    raw = dict(sf.config)
    raw["iluvatar:arda"] = {**raw["iluvatar:arda"], "talosVersion": talos}
    if k3s is not None:
        raw["iluvatar:ainur"] = {**raw["iluvatar:ainur"], "k3sVersion": k3s}
    return parse_stack(raw, sf.secret_keys)


def _etcd_steps(stack: StackConfig, cluster: str) -> dict[str, tuple[str, list[str]]]:
    pod = drill.etcd_cronjob(stack, cluster)["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return {
        c["name"]: (c["image"], c["command"]) for c in [*pod["initContainers"], *pod["containers"]] if c["name"] in ("restore", "schema", "status")
    }


@pytest.mark.parametrize(
    ("talos", "image", "minor"),
    [
        ("v1.14.1", "registry.k8s.io/etcd:3.7.1", "3.7"),
        ("v1.13.9", "registry.k8s.io/etcd:3.6.5-0", "3.6"),
        ("v1.12.11", "registry.k8s.io/etcd:3.6.5-0", "3.6"),
    ],
)
def test_arda_s_drill_restores_with_the_etcdutl_of_the_etcd_minor_its_talos_runs_and_migrates_to_it(talos: str, image: str, minor: str) -> None:
    """etcdutl 3.6.5 restores a 3.7 snapshot without a word, and etcd 3.6 then refuses to start on it (tests/test_drill.py
    runs both): Arda's snapshots are restored by the etcdutl of its Talos's etcd, and the schema step, after the
    restore, brings the data directory to that minor's storage schema or fails the drill."""
    assert _etcd_steps(_at(talos), "arda") == {
        "restore": (image, ["etcdutl", "snapshot", "restore", "/work/snapshot.db", "--data-dir=/work/restored"]),
        "schema": (image, ["etcdutl", "migrate", "--data-dir=/work/restored", f"--target-version={minor}"]),
        "status": (image, ["etcdutl", "snapshot", "status", "/work/snapshot.db", "--write-out=json"]),
    }
    pod = drill.etcd_cronjob(_at(talos), "arda")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["initContainers"]] + [c["name"] for c in pod["containers"]] == ["fetch", "decrypt", "restore", "schema", "status"]


def test_the_etcdutl_of_3_7_is_the_image_talos_1_14_runs_its_etcd_from() -> None:
    """Talos v1.14.1 runs `registry.k8s.io/etcd:<DefaultEtcdVersion>` (machinery constants.go:443 and :458, which
    stacks.releases.ETCD holds and tests/stacks/test_releases.py reads); the drill restores with that very image. Every
    Talos minor a stack may name runs an etcd minor the drill has an etcdutl of."""
    assert data.ETCDUTL[(3, 7)] == f"registry.k8s.io/etcd:{releases.ETCD[pins.TALOS]}"
    assert {releases.ETCD_MINOR[row.minor] for row in releases.TALOS_MINORS if row.target} == set(data.ETCDUTL)


@pytest.mark.parametrize(("k3s", "minor"), [("v1.35.8+k3s1", "3.6"), ("v1.33.13+k3s1", "3.6"), ("v1.33.12+k3s1", "3.5")])
def test_the_ainur_s_drill_migrates_to_the_etcd_its_k3s_embeds(k3s: str, minor: str) -> None:
    """k3s embeds etcd 3.6 from v1.33.13 (stacks.day2.k3s_etcd_3_6), 3.5 before: 3.6's etcdutl restores either and
    migrates to either (its migrate takes 3.5)."""
    steps = _etcd_steps(_at(pins.TALOS, k3s), "ainur")
    assert {name: image for name, (image, _) in steps.items()} == dict.fromkeys(("restore", "schema", "status"), "registry.k8s.io/etcd:3.6.5-0")
    assert steps["schema"][1][-1] == f"--target-version={minor}"


def test_a_talos_whose_etcd_minor_the_drill_has_no_etcdutl_of_is_refused_while_arda_is_drilled(monkeypatch: pytest.MonkeyPatch) -> None:
    """The next Talos minor moves etcd again: until the drill has that minor's etcdutl, a stack asking for it is refused
    (the drill would pass on snapshots its cluster's etcd could not start from), unless Arda's drill is off."""
    monkeypatch.delitem(data.ETCDUTL, (3, 7))
    with pytest.raises(StackConfigError) as refused:
        _at("v1.14.1")
    assert [(p.path, p.message) for p in refused.value.problems] == [
        (
            "iluvatar:arda.talosVersion",
            "v1.14.1 runs etcd 3.7, and the restore drill of Arda's etcd has no etcdutl of that minor (it has 3.6: "
            "stacks.data.ETCDUTL); another minor's etcdutl restores a snapshot the cluster's etcd may not start from, and the "
            "drill would pass on it: stay on a Talos whose etcd it knows (the newest: v1.13.9, etcd 3.6), or turn the drill of "
            "Arda off (iluvatar:backup.drill.arda: false) until an Iluvatar that knows etcd 3.7",
        )
    ]
    assert _at("v1.13.9").arda.talos_version == "v1.13.9"
    off = homelab(arda=False)
    assert [c["metadata"]["name"] for c in drill.cronjobs(off) if "etcd" in c["metadata"]["name"]] == ["drill-etcd-ainur"]


def test_the_drills_s3_keys_never_reach_curls_command_line() -> None:
    # Every process of the pod reads a command line in /proc: the keys go to curl as a config on its stdin.
    assert '--user "$AWS_ACCESS_KEY_ID' not in drill.FETCH_SCRIPT
    assert '| curl -sS --fail-with-body --aws-sigv4 "aws:amz:$AWS_REGION:s3" -K - "$@"' in drill.FETCH_SCRIPT
