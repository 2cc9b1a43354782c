"""The restore drill of Headscale's state (plans.drill `headscale_*`), its script run for real: busybox's sh and applets
as the restic image has them, a real restic on a repository made as Headscale's init container makes it (its state
folder, `--host headscale`), and the drill's clock moved past the state backup's bound."""

from __future__ import annotations

import copy
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

from iluvatar.simulate import Simulation, simulate
from plans import drill, monitoring
from plans import remote_access as remote_plan
from stacks import load_stack_file, read_stack_file
from stacks.model import StackConfig
from tests.edit import HOMELAB, edit, homelab_doc, write_stack
from tests.remote_stacks import HEADSCALE, SHIPPED, remote_stack
from tests.test_drill import APPLETS, _clock, _newest_snapshot, _restic, _run
from tests.tools import busybox_applets, require
from tools import alert_check
from tools.kube_cluster import ApiError, Cluster, flavor_for

PASSWORD = "the-state-password"


@pytest.fixture(scope="module")
def stack() -> StackConfig:
    return remote_stack(HEADSCALE)


@pytest.fixture(scope="module")
def alpine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return busybox_applets(tmp_path_factory.mktemp("alpine"), (*APPLETS, "date"))


def _state(folder: Path, database: bool = True) -> Path:
    """Headscale's state folder as it leaves it: its database (SQLite), its Noise and DERP keys."""
    folder.mkdir(parents=True)
    if database:
        with sqlite3.connect(folder / "db.sqlite") as db:
            db.execute("CREATE TABLE nodes (id INTEGER PRIMARY KEY, given_name TEXT)")
            db.execute("INSERT INTO nodes (given_name) VALUES ('a-phone')")
        db.close()
    (folder / "noise_private.key").write_text("privkey:0123\n")
    (folder / "derp_server_private.key").write_text("privkey:4567\n")
    return folder


def _backed_up(tmp_path: Path, database: bool = True) -> dict[str, Any]:
    require("restic")
    repo = tmp_path / "repository"
    _restic(repo, PASSWORD, "init")
    # As the init container backs it up (plans.remote_access.STATE_BACKUP_SCRIPT): from the state folder, its host fixed.
    _restic(repo, PASSWORD, "backup", "--host", remote_plan.STATE_BACKUP_HOST, ".", cwd=_state(tmp_path / "state", database))
    (tmp_path / "scratch").mkdir()
    (tmp_path / "tmp").mkdir()
    return {"repo": repo, "secret": {"RESTIC_REPOSITORY": str(repo), "RESTIC_PASSWORD": PASSWORD}, "tmp": tmp_path}


def _drill(stack: StackConfig, v: dict[str, Any], alpine: Path, now: int | None = None) -> subprocess.CompletedProcess[str]:
    [container] = drill.headscale_cronjob(stack)["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    path = f"{alpine}:{Path(require('restic')).parent}"
    if now is not None:
        path = f"{_clock(v['tmp'] / 'clock', now)}:{path}"
    paths = {drill.SCRATCH: str(v["tmp"] / "scratch"), "/tmp": str(v["tmp"] / "tmp"), "/tmp/cache": str(v["tmp"] / "tmp" / "cache")}  # noqa: S108 - the pod's emptyDir, moved
    return _run(container, v["secret"], path, paths)


def test_the_drill_restores_headscale_s_state_and_finds_its_database(stack: StackConfig, alpine: Path, tmp_path: Path) -> None:
    v = _backed_up(tmp_path)
    short, _, _ = _newest_snapshot(v)
    done = _drill(stack, v, alpine)
    assert done.returncode == 0, done.stderr
    size = sum(p.stat().st_size for p in (tmp_path / "state").iterdir())
    assert done.stdout.strip() == (
        f"restore drill of Headscale's state passed: snapshot {short} restored into a scratch folder, 3 files and folders, "
        f"{size} bytes, as the snapshot says; restic check passed"
    )
    with sqlite3.connect(tmp_path / "scratch" / "restored" / "db.sqlite") as db:
        assert db.execute("SELECT given_name FROM nodes").fetchall() == [("a-phone",)]
    db.close()


@pytest.mark.parametrize(("past", "passes"), [(0, True), (1, False)], ids=["at-the-bound", "a-second-past-it"])
def test_the_drill_fails_once_the_newest_state_backup_is_older_than_two_days(
    stack: StackConfig, alpine: Path, tmp_path: Path, past: int, passes: bool
) -> None:
    """Headscale is backed up as it restarts, daily at 04:17: a state backup that stopped (the CronJob suspended, the
    target's keys rotated) leaves a last snapshot that restores perfectly, and the drill fails two days on."""
    v = _backed_up(tmp_path)
    short, made, at = _newest_snapshot(v)
    done = _drill(stack, v, alpine, at + 172800 + past)
    if passes:
        assert done.returncode == 0, done.stderr
        return
    assert done.returncode == 1
    assert done.stderr.strip().startswith(
        f"restore drill of Headscale's state FAILED: the newest snapshot, {short} of {made}, is 2d 0h 0m 1s old, "
        'and backups on "17 4 * * *" keep the newest under 2d 0h 0m 0s: its backups have stopped; look with: '
        "kubectl -n remote-access logs deploy/headscale -c state-backup, and kubectl -n remote-access get cronjob state-backup, on the Ainur "
        f"(snapshot {short} itself restores: 3 files and folders, "
    ), done.stderr


def test_a_snapshot_without_headscale_s_database_fails_the_drill(stack: StackConfig, alpine: Path, tmp_path: Path) -> None:
    """A snapshot of the wrong folder (or of a claim Headscale never wrote) restores and counts right: the drill asks for
    the database itself."""
    v = _backed_up(tmp_path, database=False)
    short, _, _ = _newest_snapshot(v)
    done = _drill(stack, v, alpine)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"restore drill of Headscale's state FAILED: snapshot {short} holds no db.sqlite, or an empty one: it is not Headscale's "
        "state (its devices, keys and users)"
    )


def test_a_repository_that_forget_no_longer_trims_fails_the_drill(stack: StackConfig, alpine: Path, tmp_path: Path) -> None:
    """The init container's `restic forget --prune` failing after each backup (a stale exclusive lock) is a log line,
    and the repository grows: past the 17 snapshots its policy keeps and one a backup under way, the drill fails, naming
    it; the real restic's forget with the init container's flags trims the same repository back, and the drill passes."""
    v = _backed_up(tmp_path)
    state = tmp_path / "state"
    # Eighteen older daily backups that nothing forgot: nineteen snapshots of the host.
    for day in range(1, 19):
        when = f"2026-{1 + day // 28:02d}-{1 + day % 28:02d} 04:17:00"
        _restic(v["repo"], PASSWORD, "backup", "--host", remote_plan.STATE_BACKUP_HOST, "--time", when, ".", cwd=state)
    done = _drill(stack, v, alpine)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "restore drill of Headscale's state FAILED: the repository holds 19 snapshots of headscale, and its forget policy "
        "(--keep-daily 7 --keep-weekly 4 --keep-monthly 6) keeps at most 17 and one a backup under way: restic forget --prune "
        "is failing after each backup, and the repository grows; look with: kubectl -n remote-access logs deploy/headscale "
        "-c state-backup, and kubectl -n remote-access get cronjob state-backup, on the Ainur"
    )
    _restic(v["repo"], PASSWORD, "forget", "--host", remote_plan.STATE_BACKUP_HOST, *remote_plan.keep_flags().split(), "--prune")
    for folder in ("scratch", "tmp"):
        shutil.rmtree(tmp_path / folder)
        (tmp_path / folder).mkdir()
    done = _drill(stack, v, alpine)
    assert done.returncode == 0, done.stderr


def test_the_drill_runs_on_arda_with_the_drills_schedule_and_the_state_backups_bound(stack: StackConfig) -> None:
    cronjob = drill.headscale_cronjob(stack)
    assert cronjob["metadata"]["name"] == "drill-headscale" and cronjob["metadata"]["namespace"] == drill.NAMESPACE == "backup-drill"
    assert cronjob["metadata"]["labels"][drill.LABEL] == "headscale" and cronjob["metadata"]["labels"][drill.KIND_LABEL] == "state"
    assert cronjob["spec"]["schedule"] == stack.backup.drill.schedule if stack.backup else False
    [container] = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert (env["SCHEDULE"], env["MAX_AGE"], env["TZ"]) == ("17 4 * * *", "172800", "UTC")
    assert (env["HOST"], env["KEEP"], env["KEEP_MOST"]) == ("headscale", "--keep-daily 7 --keep-weekly 4 --keep-monthly 6", "18")
    assert container["envFrom"] == [{"secretRef": {"name": "drill-headscale-restic"}}]
    assert container["securityContext"]["runAsNonRoot"] is True
    secret = drill.headscale_secret(stack, "pw", ("id", "key"))
    assert secret["metadata"] == {"name": "drill-headscale-restic", "namespace": "backup-drill", "labels": dict(drill.MANAGED_BY)}
    assert secret["stringData"] == remote_plan.state_backup_secret(stack, "pw", ("id", "key"))["stringData"]


def test_a_failed_or_stale_headscale_drill_fires_the_drills_alerts_naming_it(stack: StackConfig) -> None:
    """The drills' alert rules (plans.monitoring.drill_alerts) read every `drill-` CronJob with its labels: Headscale's
    drill's failure, then its staleness, fire naming `headscale (state)`, by promtool over kube-state-metrics' series."""
    labels = 'namespace="backup-drill",cronjob="drill-headscale"'
    series = [
        {"series": f'kube_cronjob_labels{{{labels},label_iluvatar_dev_drill="headscale",label_iluvatar_dev_drill_kind="state"}}', "values": "1x300"},
        # Scheduled at 1000 s, its run over, its last success at 500 s: failed, and never a success after.
        {"series": f"kube_cronjob_status_last_schedule_time{{{labels}}}", "values": "1000x300"},
        {"series": f"kube_cronjob_status_last_successful_time{{{labels}}}", "values": "500x300"},
        {"series": f"kube_cronjob_status_active{{{labels}}}", "values": "0x300"},
        {"series": f"kube_cronjob_created{{{labels}}}", "values": "0x300"},
    ]
    alerts = {a.name: a for a in monitoring.alerts(stack)}
    words = {
        "label_iluvatar_dev_drill": "headscale",
        "label_iluvatar_dev_drill_kind": "state",
        "namespace": "backup-drill",
        "cronjob": "drill-headscale",
    }

    def expected(name: str) -> dict[str, Any]:
        def expand(text: str) -> str:
            return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: words[m.group(1)], text)

        return {
            "exp_labels": {**words, "severity": alerts[name].severity},
            "exp_annotations": {"summary": expand(alerts[name].summary), "description": expand(alerts[name].description)},
        }

    case = {
        "interval": "1h",
        "input_series": series,
        "alert_rule_test": [
            {"eval_time": "2h", "alertname": "RestoreDrillFailed", "exp_alerts": [expected("RestoreDrillFailed")]},
            {"eval_time": "7d", "alertname": "RestoreDrillStale", "exp_alerts": []},
            {"eval_time": "8d3h", "alertname": "RestoreDrillStale", "exp_alerts": [expected("RestoreDrillStale")]},
        ],
    }
    result = alert_check.unit_test_rules(monitoring.alert_rules(stack), [case], evaluation_interval="1h")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_homelab_registers_the_drill_on_arda_after_the_drills_namespace_with_its_secret_secret() -> None:
    """components.remote_access makes the drill on Arda (its provider), after the drills' namespace (components.data), with
    its Secret's values a Pulumi secret from the state repository's own password."""
    # The shipped homelab with its remote access (tests.sims.simulated leaves it out, tests.edit.homelab_doc says why).
    sim = Simulation(stack="homelab")
    simulate(read_stack_file(HOMELAB), record=sim)
    named = sim.named()
    cronjob, secret = named["remote-access-arda-cronjob-drill-headscale"], named["remote-access-arda-secret-drill-headscale-restic"]
    namespace = named["data-drill-namespace-backup-drill"]
    assert cronjob.provider.split("::")[-2].endswith("arda-kubernetes") and secret.provider.split("::")[-2].endswith("arda-kubernetes")
    assert namespace.urn in cronjob.dependencies and secret.urn in cronjob.dependencies and namespace.urn in secret.dependencies
    assert cronjob.inputs["metadata"]["name"] == "drill-headscale" and cronjob.inputs["metadata"]["namespace"] == "backup-drill"
    assert "stringData" in secret.secret_inputs
    assert named["remote-access-state-backup-password"].urn in secret.property_dependencies["stringData"]


def _nfs_homelab(tmp_path: Path) -> Path:
    """The shipped homelab, its remote access included, with an NFS target (and so no S3 keys)."""
    doc = edit(
        homelab_doc(),
        {"iluvatar:backup.target": "nfs://192.168.0.40/volume1/backups"},
        delete=["iluvatar:backupS3AccessKeyId", "iluvatar:backupS3SecretAccessKey"],
    )
    doc["config"]["iluvatar:remoteAccess"] = copy.deepcopy(SHIPPED)
    return write_stack(tmp_path, doc, stack="homelab")


def test_on_an_nfs_target_the_drill_reads_the_export_as_its_writer(tmp_path: Path) -> None:
    """Headscale's init container writes its state's repository on the export as the pod's user (owner-only files, as
    restic makes them); the drill mounts the same export where the repository's path says, read only, as that user with
    no capability, through a claim bound to a static read-only volume, in the drills' namespace, which stays Pod
    Security `restricted`. Without it, a failing NFS state backup was only a log line."""
    stack = load_stack_file(_nfs_homelab(tmp_path))
    assert drill.headscale_drilled(stack)
    assert remote_plan.state_repository(stack) == "/mnt/backup/headscale/remote-access/headscale-state"
    # The writer: Headscale's pod's user and group, which the state-backup init container does not override.
    deployment = next(m for m in remote_plan.headscale_manifests(stack) if m["kind"] == "Deployment")
    writer_pod = deployment["spec"]["template"]["spec"]
    [init] = [c for c in writer_pod["initContainers"] if c["name"] == remote_plan.STATE_BACKUP]
    assert "runAsUser" not in init.get("securityContext", {}) and "runAsGroup" not in init.get("securityContext", {})
    writer = (writer_pod["securityContext"]["runAsUser"], writer_pod["securityContext"]["runAsGroup"])
    pod = drill.headscale_cronjob(stack)["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["volumes"][-1] == {"name": "target", "persistentVolumeClaim": {"claimName": "drill-headscale-target", "readOnly": True}}
    (container,) = pod["containers"]
    assert container["volumeMounts"][-1] == {"name": "target", "mountPath": "/mnt/backup", "readOnly": True}
    context = container["securityContext"]
    assert (context["runAsUser"], context["runAsGroup"]) == writer == (65532, 65532)
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert (context["runAsNonRoot"], context["allowPrivilegeEscalation"]) == (True, False)
    volume, claim = drill.headscale_target(stack)
    assert volume["spec"] == {
        "capacity": {"storage": "1Gi"},
        "accessModes": ["ReadOnlyMany"],
        "persistentVolumeReclaimPolicy": "Retain",
        "storageClassName": "",
        "nfs": {"server": "192.168.0.40", "path": "/volume1/backups", "readOnly": True},
        "claimRef": {"namespace": "backup-drill", "name": "drill-headscale-target"},
    }
    assert claim["spec"]["volumeName"] == volume["metadata"]["name"] == "backup-drill-drill-headscale-target"
    assert claim["metadata"]["namespace"] == "backup-drill"
    for target in (stack, load_stack_file(HOMELAB)):
        labels = drill.namespace(target)["metadata"]["labels"]
        assert {k.rsplit("/", 1)[1]: v for k, v in labels.items() if k.startswith("pod-security")} == {
            "enforce": "restricted",
            "warn": "restricted",
            "audit": "restricted",
        }
    # An S3 target needs no volume.
    assert drill.headscale_target(load_stack_file(HOMELAB)) == []


def test_on_an_nfs_target_the_program_makes_the_drills_namespace_and_the_drill(tmp_path: Path) -> None:
    sim = Simulation(stack="homelab")
    simulate(read_stack_file(_nfs_homelab(tmp_path)), record=sim)
    named = sim.named()
    cronjob, namespace = named["remote-access-arda-cronjob-drill-headscale"], named["data-drill-namespace-backup-drill"]
    assert namespace.urn in cronjob.dependencies
    assert "AWS_ACCESS_KEY_ID" not in named["remote-access-arda-secret-drill-headscale-restic"].inputs["stringData"].value
    # The export's volume and claim, before the CronJob mounts them; the claim in the namespace made for it.
    volume = named["remote-access-arda-persistentvolume-backup-drill-drill-headscale-target"]
    claim = named["remote-access-arda-persistentvolumeclaim-drill-headscale-target"]
    assert {volume.urn, claim.urn} <= set(cronjob.dependencies)
    assert namespace.urn in claim.dependencies


def test_on_an_s3_target_with_no_etcd_or_kms_drill_headscale_is_still_drilled(tmp_path: Path) -> None:
    """With the etcd drills' opt-outs (`backup.drill.ainur`, `backup.etcd.arda`) nothing else needs the drills'
    namespace on an S3 target; Headscale's drill is still made there, as the lifetime table says, with its own keys and
    not the etcd drills'."""
    doc = edit(homelab_doc(), {"iluvatar:backup.etcd.arda": False})
    doc["config"]["iluvatar:backup"]["drill"] = {"ainur": False}
    doc["config"]["iluvatar:remoteAccess"] = copy.deepcopy(SHIPPED)
    stack = load_stack_file(write_stack(tmp_path, doc, stack="homelab"))
    assert drill.etcd_drills(stack) == []
    assert drill.headscale_drilled(stack)
    sim = Simulation(stack="homelab")
    simulate(read_stack_file(write_stack(tmp_path, doc, stack="homelab")), record=sim)
    named = sim.named()
    cronjob, namespace = named["remote-access-arda-cronjob-drill-headscale"], named["data-drill-namespace-backup-drill"]
    assert namespace.urn in cronjob.dependencies
    assert "AWS_ACCESS_KEY_ID" in named["remote-access-arda-secret-drill-headscale-restic"].inputs["stringData"].value
    assert not [n for n in named if n.startswith("data-drill-secret")]


def test_the_nfs_drill_is_admitted_by_a_restricted_namespace_and_an_inline_nfs_volume_is_not(tmp_path: Path) -> None:
    """The drills' namespace, the export's volume and claim, and the drill's pod as rendered, sent to a real API server
    with Talos's PodSecurity admission: `restricted` admits the pod that mounts the export through its claim, and
    refuses the same pod with the export as an inline `nfs` volume (what would need `baseline`)."""
    stack = load_stack_file(_nfs_homelab(tmp_path))
    with Cluster(flavor_for("arda"), tmp_path / "cluster", components=("etcd", "kube-apiserver"), ready_for_pods=False).start() as cluster:
        client = cluster.client
        for obj in (drill.namespace(stack), *drill.headscale_target(stack)):
            client.create(obj)
        client.create({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": drill.NAMESPACE}})
        spec = drill.headscale_cronjob(stack)["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "drill", "namespace": drill.NAMESPACE}, "spec": spec}
        assert client.create(pod)["metadata"]["name"] == "drill"
        inline = {"name": "target", "nfs": {"server": "192.168.0.40", "path": "/volume1/backups", "readOnly": True}}
        refused = {**pod, "metadata": {**pod["metadata"], "name": "inline"}, "spec": {**spec, "volumes": [*spec["volumes"][:-1], inline]}}
        with pytest.raises(ApiError) as err:
            client.create(refused)
        assert (
            'violates PodSecurity "restricted:latest": restricted volume types (volume "target" uses restricted volume type "nfs")'
            in err.value.message
        )
