"""The KMS key's backup and its restore drill, run as their pods run them: the upload (plans.kms.backup_cronjob) puts
the key's age file in a stand-in bucket with curl as the pod does, and the drill (plans.drill.kms_cronjob) fetches the
live key's object, decrypts it with age v1.3.1 built as the drill builds it, and unseals the canary with Go's GCM in the drill's
own check program. tests/plans/test_kms_server.py has the real KMS server unseal the same canary."""

from __future__ import annotations

import base64
import datetime
import hashlib
import os
import subprocess
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from iluvatar.golang import go_binary, go_env
from plans import drill, kms, monitoring
from stacks import load_stack_file
from stacks.model import StackConfig
from tests.edit import HOMELAB
from tests.plans.test_drill import _expected, _series
from tests.test_drill import APPLETS, _Bucket, _clock, _container, _key, _run
from tests.tools import busybox_applets, require
from tools import alert_check

UPLOADED = datetime.datetime(2026, 11, 20, 18, 0, tzinfo=datetime.UTC)


class _Uploads(_Bucket):
    """The drills' S3 stand-in, with PUT of an object (curl -T), recorded signed or not as its reads are, and every
    request's method and path in `requests`. Each PUT stamps the object with the target's own clock, `clock`, which a
    listing gives as its LastModified (as S3 does: RFC 3339 in UTC with milliseconds)."""

    requests: list[tuple[str, str]] = []  # noqa: RUF012 - one test's bucket
    modified: dict[str, datetime.datetime] = {}  # noqa: RUF012
    clock = UPLOADED

    def do_GET(self) -> None:  # noqa: N802 - http.server's name for the method
        _Uploads.requests.append(("GET", self.path))
        parts = urlsplit(self.path)
        if parts.path.strip("/") != "homelab":
            _Bucket.do_GET(self)
            return
        if not self.headers.get("Authorization", "").startswith("AWS4-HMAC-SHA256 Credential=drill-key/"):
            _Bucket.unsigned.append(self.path)
        query = parse_qs(parts.query)
        assert query["list-type"] == ["2"]
        keys = sorted(k for k in _Bucket.objects if k.startswith(query["prefix"][0]))
        start = int(query.get("continuation-token", ["0"])[0])
        page, rest = keys[start : start + 2], keys[start + 2 :]
        contents = "".join(
            f"<Contents><Key>{k}</Key><LastModified>{_Uploads.modified[k]:%Y-%m-%dT%H:%M:%S.000Z}</LastModified>"
            f"<Size>{len(_Bucket.objects[k])}</Size></Contents>"
            for k in page
        )
        more = (
            f"<IsTruncated>true</IsTruncated><NextContinuationToken>{start + 2}</NextContinuationToken>"
            if rest
            else "<IsTruncated>false</IsTruncated>"
        )
        body = f'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>homelab</Name>{more}{contents}</ListBucketResult>'
        self._reply(body.encode(), "application/xml")

    def do_PUT(self) -> None:  # noqa: N802 - http.server's name for the method
        _Uploads.requests.append(("PUT", self.path))
        if not self.headers.get("Authorization", "").startswith("AWS4-HMAC-SHA256 Credential=drill-key/"):
            _Bucket.unsigned.append(self.path)
        bucket, _, key = self.path.lstrip("/").partition("/")
        if bucket != "homelab" or not key:
            self.send_error(404)
            return
        _Bucket.objects[key] = self.rfile.read(int(self.headers["Content-Length"]))
        _Uploads.modified[key] = _Uploads.clock
        self._reply(b"", "application/xml")

    def do_DELETE(self) -> None:  # noqa: N802 - http.server's name for the method
        _Uploads.requests.append(("DELETE", self.path))
        self.send_error(403)


def _empty(clock: datetime.datetime = UPLOADED) -> None:
    """A new bucket, its clock at `clock`."""
    _Bucket.objects.clear()
    _Bucket.unsigned.clear()
    _Uploads.requests.clear()
    _Uploads.modified.clear()
    _Uploads.clock = clock


def _put(key: str, body: bytes, when: datetime.datetime) -> None:
    _Bucket.objects[key] = body
    _Uploads.modified[key] = when


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
    return busybox_applets(tmp_path_factory.mktemp("alpine"), (*APPLETS, "date"))


S3 = {"AWS_ACCESS_KEY_ID": "drill-key", "AWS_SECRET_ACCESS_KEY": "drill-secret"}


def _upload(stack: StackConfig, bucket: str, armored: str, tmp: Path, alpine: Path, pod_clock: str = "") -> subprocess.CompletedProcess[str]:
    """The upload's container as the CronJob runs it, its ConfigMap's file in a folder (`pod_clock`: what the pod's
    `date` says, any time at all: the upload reads none)."""
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
    (clock / "date").write_text(f"#!{busybox} sh\necho {pod_clock or '2099-01-01T00:00:00Z'}\n")
    (clock / "date").chmod(0o755)
    (clock / "sh").symlink_to(busybox)
    # curl's command line as any process of the node could read it in /proc: written down, then curl run with it.
    argv = tmp / "curl-argv"
    (clock / "curl").write_text(f'#!{busybox} sh\nprintf "%s\\n" "$@" >{argv}\nexec {require("curl")} "$@"\n')
    (clock / "curl").chmod(0o755)
    script = container["command"][2].replace("/backup/", f"{files}/")
    given = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    env = {"PATH": f"{clock}:{alpine}:{Path(require('curl')).parent}", **given, "S3_ENDPOINT": bucket, **S3}
    done = subprocess.run([str(clock / "sh"), "-c", script], env=env, capture_output=True, text=True, timeout=120)
    # The bucket answers only a request signed with the access key (tests/test_drill.py _Bucket): curl read the keys,
    # from its stdin, and neither is in its argv.
    assert "-K" in argv.read_text().splitlines() and not [k for k in S3.values() if k in argv.read_text()], argv.read_text()
    return done


def _drill(
    stack: StackConfig, bucket: str, tmp: Path, alpine: Path, identity: str, canary: str, live: str, now: int
) -> tuple[str, list[subprocess.CompletedProcess[str]]]:
    """Each step of the KMS key's drill in order, until one fails (`live`: the live key's object, `now`: the drill's
    clock)."""
    cronjob = drill.kms_cronjob(stack, canary, live)
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


def _new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


AFTER = int(UPLOADED.timestamp()) + 7200


def test_the_key_s_backup_is_uploaded_signed_to_its_one_name_and_its_drill_unseals_the_canary(
    stack: StackConfig, bucket: str, alpine: Path, tmp_path: Path
) -> None:
    """Each run writes the same file to the same name (the SHA-256 of its bytes): one object per key, never a pile."""
    identity, recipient = _key()
    key = _new_key()
    armored = kms.key_backup(key, recipient)
    live = kms.backup_object(stack, armored)
    assert live == f"kms/kms-key-{hashlib.sha256(armored.encode()).hexdigest()[:16]}.age"
    _empty(UPLOADED - datetime.timedelta(hours=6))
    assert _upload(stack, bucket, armored, tmp_path / "first", alpine).returncode == 0
    _Uploads.clock = UPLOADED
    done = _upload(stack, bucket, armored, tmp_path, alpine)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"the KMS key's backup is {live}\n"
    assert _Bucket.objects == {live: armored.encode()}
    assert _Uploads.modified == {live: UPLOADED}
    assert _Uploads.requests == [("PUT", f"/homelab/{live}")] * 2
    assert _Bucket.unsigned == [], "every request to the bucket is signed"
    step, results = _drill(stack, bucket, tmp_path / "drill", alpine, identity, kms.canary(key), live, AFTER)
    assert step == "passed", results[-1].stderr
    assert (
        results[0].stdout.strip() == f"restore drill of the KMS key's backup: the live key's backup is {live}, last written 2026-11-20T18:00:00.000Z"
    )
    assert results[-1].stdout == "restore drill of the KMS key's backup: the key from the backup unseals the canary the live key sealed\n"


def test_the_upload_only_puts_its_own_object_and_never_touches_another_key_s_backup(
    stack: StackConfig, bucket: str, alpine: Path, tmp_path: Path
) -> None:
    """A new key put in place (Pulumi's state lost, then `up`; a wrong restore) leaves the old key's backup, the one
    that opens Arda's volumes, where it is for good: the upload lists nothing and deletes nothing (a listing it read
    could be forged on a plain-HTTP target), so it needs no right but PUT, and a refused DELETE never fails it."""
    _empty()
    old = kms.key_backup(_new_key(), "age1" + "q" * 58)
    kept = {kms.backup_object(stack, old): old.encode(), "kms/README": b"not a backup", "etcd/arda/arda-2026-11-27T00:00:00Z.age": b"a snapshot"}
    for name, body in kept.items():
        _put(name, body, UPLOADED - datetime.timedelta(days=30))
    new = kms.key_backup(_new_key(), "age1" + "q" * 58)
    for n in range(3):
        done = _upload(stack, bucket, new, tmp_path / str(n), alpine)
        assert done.returncode == 0, done.stderr
    assert _Bucket.objects == {**kept, kms.backup_object(stack, new): new.encode()}
    assert _Uploads.requests == [("PUT", f"/homelab/{kms.backup_object(stack, new)}")] * 3


def test_the_drill_checks_the_live_key_s_object_not_the_newest(stack: StackConfig, bucket: str, alpine: Path, tmp_path: Path) -> None:
    """Another key's object written later (or dated ahead by any clock) is not what the drill checks: the live key's
    is, by its name; missing, the drill fails and says where to look."""
    identity, recipient = _key()
    key = _new_key()
    live = kms.backup_object(stack, kms.key_backup(key, recipient))
    _empty()
    other = kms.key_backup(_new_key(), recipient)
    _put(kms.backup_object(stack, other), other.encode(), UPLOADED)
    # A name that begins with the live one's is not it either.
    _put(live + ".partial", kms.key_backup(key, recipient).encode(), UPLOADED)
    step, results = _drill(stack, bucket, tmp_path / "none", alpine, identity, kms.canary(key), live, AFTER)
    assert step == "fetch"
    look = f"kubectl -n etcd-backup get cronjob {kms.BACKUP_NAME}; kubectl -n etcd-backup logs job/<its newest job>"
    assert results[0].stderr == (
        f"restore drill of the KMS key's backup FAILED: the live KMS key's backup, s3 homelab/{live}, is not on the target: its "
        f"uploads have not run since the key was put in place, or fail; look with: {look}\n"
    )
    _put(live, kms.key_backup(key, recipient).encode(), UPLOADED - datetime.timedelta(hours=1))
    step, results = _drill(stack, bucket, tmp_path / "live", alpine, identity, kms.canary(key), live, AFTER)
    assert step == "passed", results[-1].stderr
    assert results[0].stdout.startswith(
        f"restore drill of the KMS key's backup: the live key's backup is {live}, last written 2026-11-20T17:00:00.000Z"
    )


def test_a_backup_of_another_key_fails_the_drill_at_the_unseal(stack: StackConfig, bucket: str, alpine: Path, tmp_path: Path) -> None:
    """A backup that decrypts, but of a key that is not the live one."""
    identity, recipient = _key()
    _empty()
    armored = kms.key_backup(_new_key(), recipient)
    assert _upload(stack, bucket, armored, tmp_path, alpine).returncode == 0
    step, results = _drill(stack, bucket, tmp_path / "drill", alpine, identity, kms.canary(_new_key()), kms.backup_object(stack, armored), AFTER)
    assert step == "unseal"
    assert results[-1].stderr == (
        "restore drill of the KMS key's backup FAILED: the key from the backup does not unseal the canary the live key sealed: it is not "
        "the key Arda's volumes are sealed under, and would not unlock them\n"
    )


def test_a_backup_the_identity_does_not_open_fails_the_drill_at_the_decryption(stack: StackConfig, bucket: str, alpine: Path, tmp_path: Path) -> None:
    identity, _ = _key()
    _empty()
    key = _new_key()
    other = kms.key_backup(key, "age1" + "q" * 58)
    _put(kms.backup_object(stack, other), other.encode(), UPLOADED)
    step, results = _drill(stack, bucket, tmp_path / "drill", alpine, identity, kms.canary(key), kms.backup_object(stack, other), AFTER)
    assert step == "decrypt"
    assert results[-1].stderr.startswith("restore drill of the KMS key's backup FAILED: age could not decrypt the snapshot with the stack's key:")


@pytest.mark.parametrize(("past", "passes"), [(0, True), (1, False)], ids=["at-the-bound", "a-second-past-it"])
def test_the_drill_fails_when_the_live_backup_was_last_written_longer_ago_than_the_etcd_schedule_allows(
    stack: StackConfig, bucket: str, alpine: Path, tmp_path: Path, past: int, passes: bool
) -> None:
    """The uploads stopped: the object's LastModified (the target's clock) is older than the 6-hourly schedule allows
    (12 hours), whatever the uploading pod's clock said; the drill says where to look."""
    identity, recipient = _key()
    key = _new_key()
    armored = kms.key_backup(key, recipient)
    _empty()
    assert _upload(stack, bucket, armored, tmp_path, alpine, pod_clock="2099-01-01T00:00:00Z").returncode == 0
    live = kms.backup_object(stack, armored)
    step, results = _drill(stack, bucket, tmp_path / "drill", alpine, identity, kms.canary(key), live, int(UPLOADED.timestamp()) + 43200 + past)
    if passes:
        assert step == "passed", results[-1].stderr
        return
    assert step == "fetch"
    look = f"kubectl -n etcd-backup get cronjob {kms.BACKUP_NAME}; kubectl -n etcd-backup logs job/<its newest job>"
    assert results[0].stderr.strip() == (
        f"restore drill of the KMS key's backup FAILED: the live key's backup, {live}, is 0d 12h 0m 1s old, and backups on \"0 */6 * * *\" "
        f"keep the newest under 0d 12h 0m 0s: its uploads have stopped reaching the bucket; look with: {look}"
    )


def test_the_kms_key_drill_decrypts_the_key_into_memory_only(stack: StackConfig) -> None:
    """The decrypted key ($WORK/snapshot.db) lands in the pod's working folder: a tmpfs, never a disk of the worker."""
    cronjob = drill.kms_cronjob(stack, kms.canary(_new_key()), "kms/kms-key-0.age")
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["volumes"][0] == {"name": "work", "emptyDir": {"medium": "Memory", "sizeLimit": "512Mi"}}
    steps = [*pod["initContainers"], *pod["containers"]]
    assert [[m["mountPath"] for m in c["volumeMounts"] if m["name"] == "work"] for c in steps] == [[drill.WORK]] * 3
    assert '-o "$WORK/snapshot.db"' in steps[1]["command"][2]


def test_a_failed_or_stale_kms_key_drill_fires_the_drill_alerts_naming_it(stack: StackConfig) -> None:
    """The drill's CronJob carries what the drill alerts read (its name's prefix and its labels, as kube-state-metrics
    copies them): failed, RestoreDrillFailed names the KMS key; not passed for eight days, RestoreDrillStale."""
    cronjob = drill.kms_cronjob(stack, kms.canary(_new_key()), "kms/kms-key-0.age")
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
