"""The KMS key's backup and its restore drill, run as their pods run them: the upload (plans.kms.backup_cronjob) puts
the key's age file in a stand-in bucket with curl as the pod does, and the drill (plans.drill.kms_cronjob) fetches the
newest, decrypts it with age v1.3.1 built as the drill builds it, and unseals the canary with Go's GCM in the drill's
own check program. tests/plans/test_kms_server.py has the real KMS server unseal the same canary."""

from __future__ import annotations

import base64
import datetime
import os
import subprocess
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from iluvatar.golang import go_binary, go_env
from plans import drill, kms, monitoring
from stacks import load_stack_file
from stacks.model import StackConfig
from tests.edit import HOMELAB
from tests.plans.test_drill import _expected, _series
from tests.test_drill import APPLETS, _Bucket, _clock, _container, _key, _run
from tests.tools import require
from tools import alert_check

UPLOADED = datetime.datetime(2026, 11, 20, 18, 0, tzinfo=datetime.UTC)


class _Uploads(_Bucket):
    """The drills' S3 stand-in, with PUT of an object (curl -T), recorded signed or not as its reads are."""

    def do_PUT(self) -> None:  # noqa: N802 - http.server's name for the method
        if not self.headers.get("Authorization", "").startswith("AWS4-HMAC-SHA256 Credential=drill-key/"):
            _Bucket.unsigned.append(self.path)
        bucket, _, key = self.path.lstrip("/").partition("/")
        if bucket != "homelab" or not key:
            self.send_error(404)
            return
        _Bucket.objects[key] = self.rfile.read(int(self.headers["Content-Length"]))
        self._reply(b"", "application/xml")

    def do_DELETE(self) -> None:  # noqa: N802 - http.server's name for the method
        if not self.headers.get("Authorization", "").startswith("AWS4-HMAC-SHA256 Credential=drill-key/"):
            _Bucket.unsigned.append(self.path)
        bucket, _, key = self.path.lstrip("/").partition("/")
        if bucket != "homelab" or _Bucket.objects.pop(key, None) is None:
            self.send_error(404)
            return
        self.send_response(204)
        self.end_headers()


@pytest.fixture(scope="module")
def stack() -> StackConfig:
    return load_stack_file(HOMELAB)


@pytest.fixture(scope="module")
def bucket() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Uploads)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def alpine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    busybox = require("busybox")
    folder = tmp_path_factory.mktemp("alpine")
    for applet in (*APPLETS, "date"):
        (folder / applet).symlink_to(busybox)
    return folder


S3 = {"AWS_ACCESS_KEY_ID": "drill-key", "AWS_SECRET_ACCESS_KEY": "drill-secret"}


def _upload(
    stack: StackConfig, bucket: str, armored: str, tmp: Path, alpine: Path, when: datetime.datetime, keep: int | None = None
) -> subprocess.CompletedProcess[str]:
    """The upload's container as the CronJob runs it, its ConfigMap's file in a folder, at `when` by its `date -u`
    (`keep`: another KEEP than the stack's, so a test keeps few)."""
    cronjob = kms.backup_cronjob(stack)
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["volumes"] == [{"name": "backup", "configMap": {"name": kms.BACKUP_NAME}}]
    files = tmp / "backup"
    files.mkdir(parents=True)
    (files / kms.BACKUP_FILE).write_text(armored)
    clock = tmp / "upload-clock"
    clock.mkdir()
    busybox = require("busybox")
    (clock / "date").write_text(
        f'#!{busybox} sh\nif [ "$*" = "-u +%Y-%m-%dT%H:%M:%SZ" ]; then echo {when:%Y-%m-%dT%H:%M:%SZ}; else exec {busybox} date "$@"; fi\n'
    )
    (clock / "date").chmod(0o755)
    (clock / "sh").symlink_to(busybox)
    # curl's command line as any process of the node could read it in /proc: written down, then curl run with it.
    argv = tmp / "curl-argv"
    (clock / "curl").write_text(f'#!{busybox} sh\nprintf "%s\\n" "$@" >{argv}\nexec {require("curl")} "$@"\n')
    (clock / "curl").chmod(0o755)
    script = container["command"][2].replace("/backup/", f"{files}/")
    given = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    env = {"PATH": f"{clock}:{alpine}:{Path(require('curl')).parent}", **given, "S3_ENDPOINT": bucket, **S3}
    if keep is not None:
        env["KEEP"] = str(keep)
    done = subprocess.run([str(clock / "sh"), "-c", script], env=env, capture_output=True, text=True, timeout=120)
    # The bucket answers only a request signed with the access key (tests/test_drill.py _Bucket): curl read the keys,
    # from its stdin, and neither is in its argv.
    assert "-K" in argv.read_text().splitlines() and not [k for k in S3.values() if k in argv.read_text()], argv.read_text()
    return done


def _drill(
    stack: StackConfig, bucket: str, tmp: Path, alpine: Path, identity: str, canary: str, now: int
) -> tuple[str, list[subprocess.CompletedProcess[str]]]:
    """Each step of the KMS key's drill in order, until one fails."""
    cronjob = drill.kms_cronjob(stack, canary)
    work = tmp / "work"
    work.mkdir(parents=True)
    tools = tmp / "tools"
    tools.mkdir()
    paths = {drill.WORK: str(work), f"{drill.WORK}/tmp": str(work / "tmp"), f"{drill.WORK}/snapshot": str(work / "snapshot")}  # noqa: S108 - the pod's, moved
    paths |= {f"{drill.WORK}/go": str(work / "go"), f"{drill.WORK}/go-cache": go_env()["GOCACHE"], drill.TOOLS: str(tools)}
    path = f"{_clock(tmp / 'clock', now)}:{alpine}:{Path(require('curl')).parent}"
    results = [_run(_container(cronjob, "fetch"), {"S3_ENDPOINT": bucket, **S3}, path, paths)]
    if results[-1].returncode != 0:
        return "fetch", results
    (tmp / "identity").mkdir()
    (tmp / "identity" / "key").write_text(identity + "\n")
    step = _container(cronjob, "decrypt")
    script = step["command"][2].replace("/identity/key", str(tmp / "identity" / "key"))
    go = Path(go_binary()).parent
    goenv = {k: v for k, v in go_env().items() if k in ("GOMODCACHE", "GOPROXY", "GOSUMDB", "GOTOOLCHAIN")}
    results.append(_run({**step, "command": ["/bin/sh", "-c", script]}, {**goenv, "CGO_ENABLED": "0"}, f"{alpine}:{go}", paths))
    if results[-1].returncode != 0:
        return "decrypt", results
    results.append(_run(_container(cronjob, "unseal"), {}, f"{alpine}:{go}", paths))
    if results[-1].returncode != 0:
        return "unseal", results
    return "passed", results


def _newest(stack: StackConfig) -> str:
    return f"{kms.backup_prefix(stack)}/kms-key-{UPLOADED:%Y-%m-%dT%H:%M:%SZ}.age"


def _new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def test_the_key_s_backup_is_uploaded_signed_and_its_drill_unseals_the_canary(stack: StackConfig, bucket: str, alpine: Path, tmp_path: Path) -> None:
    identity, recipient = _key()
    key = _new_key()
    armored = kms.key_backup(key, recipient)
    _Bucket.objects.clear()
    _Bucket.unsigned.clear()
    for hours in (12, 6):  # older uploads of the same key
        assert _upload(stack, bucket, armored, tmp_path / f"old-{hours}", alpine, UPLOADED - datetime.timedelta(hours=hours)).returncode == 0
    done = _upload(stack, bucket, armored, tmp_path, alpine, UPLOADED)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"the KMS key's backup is {_newest(stack)}\n"
    assert _Bucket.objects[_newest(stack)] == armored.encode()
    assert _Bucket.unsigned == [], "every request to the bucket is signed"
    step, results = _drill(stack, bucket, tmp_path / "drill", alpine, identity, kms.canary(key), int(UPLOADED.timestamp()) + 7200)
    assert step == "passed", results[-1].stderr
    assert results[0].stdout.strip() == f"restore drill of the KMS key's backup: the newest snapshot is {_newest(stack)}"
    assert results[-1].stdout == "restore drill of the KMS key's backup: the key from the backup unseals the canary the live key sealed\n"


def test_the_upload_keeps_the_newest_backups_and_deletes_the_older(stack: StackConfig, bucket: str, alpine: Path, tmp_path: Path) -> None:
    """One object a run would pile up for good: past the newest KEEP (backup.etcd.keep, as k3s keeps the Ainur's
    snapshots), the oldest go, signed; nothing else under the prefix is touched."""
    (container,) = kms.backup_cronjob(stack)["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert stack.backup is not None
    assert {e["name"]: e.get("value") for e in container["env"]}["KEEP"] == str(stack.backup.etcd.keep) == "28"
    _Bucket.objects.clear()
    _Bucket.unsigned.clear()
    prefix = kms.backup_prefix(stack)
    _Bucket.objects[f"{prefix}/README"] = b"not a backup"
    armored = kms.key_backup(_new_key(), "age1" + "q" * 58)
    times = [UPLOADED - datetime.timedelta(hours=6 * n) for n in (4, 3, 2, 1, 0)]
    for n, when in enumerate(times):
        done = _upload(stack, bucket, armored, tmp_path / str(n), alpine, when, keep=3)
        assert done.returncode == 0, done.stderr
    assert sorted(_Bucket.objects) == [f"{prefix}/README", *(f"{prefix}/kms-key-{t:%Y-%m-%dT%H:%M:%SZ}.age" for t in times[2:])]
    assert done.stdout.splitlines() == [
        f"the KMS key's backup is {prefix}/kms-key-{times[4]:%Y-%m-%dT%H:%M:%SZ}.age",
        f"deleted the KMS key's backup {prefix}/kms-key-{times[1]:%Y-%m-%dT%H:%M:%SZ}.age (the newest 3 are kept)",
    ]
    assert _Bucket.unsigned == []


def test_a_backup_of_another_key_fails_the_drill_at_the_unseal(stack: StackConfig, bucket: str, alpine: Path, tmp_path: Path) -> None:
    """A backup that decrypts, but of a key that is not the live one (a new key made after the state was lost)."""
    identity, recipient = _key()
    _Bucket.objects.clear()
    assert _upload(stack, bucket, kms.key_backup(_new_key(), recipient), tmp_path, alpine, UPLOADED).returncode == 0
    step, results = _drill(stack, bucket, tmp_path / "drill", alpine, identity, kms.canary(_new_key()), int(UPLOADED.timestamp()) + 7200)
    assert step == "unseal"
    assert results[-1].stderr == (
        "restore drill of the KMS key's backup FAILED: the key from the backup does not unseal the canary the live key sealed: it is not "
        "the key Arda's volumes are sealed under, and would not unlock them\n"
    )


def test_a_backup_the_identity_does_not_open_fails_the_drill_at_the_decryption(stack: StackConfig, bucket: str, alpine: Path, tmp_path: Path) -> None:
    identity, _ = _key()
    _Bucket.objects.clear()
    key = _new_key()
    other = kms.key_backup(key, "age1" + "q" * 58)
    _Bucket.objects[_newest(stack)] = other.encode()
    step, results = _drill(stack, bucket, tmp_path / "drill", alpine, identity, kms.canary(key), int(UPLOADED.timestamp()) + 7200)
    assert step == "decrypt"
    assert results[-1].stderr.startswith("restore drill of the KMS key's backup FAILED: age could not decrypt the snapshot with the stack's key:")


@pytest.mark.parametrize(("past", "passes"), [(0, True), (1, False)], ids=["at-the-bound", "a-second-past-it"])
def test_the_drill_fails_when_the_newest_backup_is_older_than_the_etcd_schedule_allows(
    stack: StackConfig, bucket: str, alpine: Path, tmp_path: Path, past: int, passes: bool
) -> None:
    """The uploads stopped: the newest is older than the 6-hourly schedule allows (12 hours); the drill says where to look."""
    identity, recipient = _key()
    key = _new_key()
    _Bucket.objects.clear()
    assert _upload(stack, bucket, kms.key_backup(key, recipient), tmp_path, alpine, UPLOADED).returncode == 0
    step, results = _drill(stack, bucket, tmp_path / "drill", alpine, identity, kms.canary(key), int(UPLOADED.timestamp()) + 43200 + past)
    if passes:
        assert step == "passed", results[-1].stderr
        return
    assert step == "fetch"
    look = f"kubectl -n etcd-backup get cronjob {kms.BACKUP_NAME}; kubectl -n etcd-backup logs job/<its newest job>"
    assert results[0].stderr.strip() == (
        f'restore drill of the KMS key\'s backup FAILED: the newest snapshot, {_newest(stack)}, is 0d 12h 0m 1s old, and backups on "0 */6 * * *" '
        f"keep the newest under 0d 12h 0m 0s: snapshots have stopped reaching the bucket; look with: {look}"
    )


def test_the_kms_key_drill_decrypts_the_key_into_memory_only(stack: StackConfig) -> None:
    """The decrypted key ($WORK/snapshot.db) lands in the pod's working folder: a tmpfs, never a disk of the worker."""
    cronjob = drill.kms_cronjob(stack, kms.canary(_new_key()))
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["volumes"][0] == {"name": "work", "emptyDir": {"medium": "Memory", "sizeLimit": "512Mi"}}
    steps = [*pod["initContainers"], *pod["containers"]]
    assert [[m["mountPath"] for m in c["volumeMounts"] if m["name"] == "work"] for c in steps] == [[drill.WORK]] * 3
    assert '-o "$WORK/snapshot.db"' in steps[1]["command"][2]


def test_a_failed_or_stale_kms_key_drill_fires_the_drill_alerts_naming_it(stack: StackConfig) -> None:
    """The drill's CronJob carries what the drill alerts read (its name's prefix and its labels, as kube-state-metrics
    copies them): failed, RestoreDrillFailed names the KMS key; not passed for eight days, RestoreDrillStale."""
    cronjob = drill.kms_cronjob(stack, kms.canary(_new_key()))
    meta = cronjob["metadata"]
    where = f'namespace="{meta["namespace"]}",cronjob="{meta["name"]}"'
    assert where == 'namespace="backup-drill",cronjob="drill-kms-key"'
    labels = meta["labels"]
    copied = f'{where},label_iluvatar_dev_drill="{labels[drill.LABEL]}",label_iluvatar_dev_drill_kind="{labels[drill.KIND_LABEL]}"'
    failed = [
        _series("kube_cronjob_labels", copied, "1x400"),
        _series("kube_cronjob_status_last_schedule_time", where, "1000x400"),
        _series("kube_cronjob_status_last_successful_time", where, "500x400"),
        _series("kube_cronjob_status_active", where, "0x400"),
        _series("kube_cronjob_created", where, "0x400"),
    ]
    case = {
        "interval": "1m",
        "input_series": failed,
        "alert_rule_test": [
            {
                "eval_time": "10m",
                "alertname": "RestoreDrillFailed",
                "exp_alerts": [_expected(stack, "RestoreDrillFailed", where, "kms-key", "kms-key")],
            }
        ],
    }
    result = alert_check.unit_test_rules(monitoring.alert_rules(stack), [case])
    assert result.returncode == 0, result.stdout + result.stderr
    never = [{**s, "values": s["values"].replace("x400", "x200")} for s in failed if "successful" not in s["series"]]
    case = {
        "interval": "1h",
        "input_series": never,
        "alert_rule_test": [
            {"eval_time": "7d", "alertname": "RestoreDrillStale", "exp_alerts": []},
            {
                "eval_time": "8d3h",
                "alertname": "RestoreDrillStale",
                "exp_alerts": [_expected(stack, "RestoreDrillStale", where, "kms-key", "kms-key")],
            },
        ],
    }
    result = alert_check.unit_test_rules(monitoring.alert_rules(stack), [case], evaluation_interval="1h")
    assert result.returncode == 0, result.stdout + result.stderr
