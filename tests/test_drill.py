"""The restore drill, run for real: each step's script as the drill's pod runs it, on real backups.

- **A volume**: a real restic repository (Debian's restic, whose repository format VolSync's mover reads), the drill's
  script from the rendered CronJob run by busybox's sh with busybox's find, stat, awk and sed (the restic image is
  Alpine's): a good backup passes and says what came back; a truncated pack, a corrupted pack and an empty
  repository fail, each naming the app and the claim.
- **Arda's etcd**: a snapshot taken from a test control plane's etcd (etcdctl, through etcd's Snapshot API, which
  Talos's EtcdSnapshot streams), encrypted by the real age to the recipient of the stack's key as talos-backup does,
  named as talos-backup names it among older ones in a bucket (an S3 stand-in serving ListObjectsV2 page by page);
  the rendered steps fetch the newest with curl, build age with the Go toolchain and decrypt it, and etcdutl
  restores it, migrates it to the schema of the etcd the cluster runs and reads it, each step with the etcd release
  its image is (`ETCD_BUILDS`). A snapshot tampered with after its encryption, and one whose database was corrupted
  before it, fail. A snapshot of etcd 3.7.1 (Talos 1.14's etcd) passes the drill of a stack on Talos 1.14 and etcd 3.7.1
  starts on what it restored; restored by etcdutl 3.6.5 it fails the schema step, as etcd 3.6.5 fails to start on it.
  **The Ainur's**: k3s's zipped snapshots of two valar, the newest by its time, unzipped and read likewise.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from iluvatar.golang import go_binary, go_env
from plans import age, drill
from plans import backup as backup_plan
from stacks import load_stack_file, parse_stack, read_stack_file
from stacks.data import ETCDUTL
from stacks.model import StackConfig
from tests.edit import HOMELAB
from tests.tools import busybox_applets, require
from tools import gotools
from tools.kube_cluster import Cluster, flavor_for, free_port

APPLETS = (
    "sh",
    "find",
    "stat",
    "awk",
    "sed",
    "wc",
    "tr",
    "tail",
    "grep",
    "sort",
    "cut",
    "mkdir",
    "cat",
    "unzip",
    "seq",
    "sha256sum",
    "cp",
    "mv",
    "mktemp",
    "chmod",
)
# The drills' bucket holds talos-backup's snapshots of 2026-11-20 (the newest at 18:00 UTC) and k3s's of 2025-11-24: the
# drill reads them two hours after the newest was taken (its clock, `_clock`, a `date` that says this time).
ARDA_NEWEST = datetime.datetime(2026, 11, 20, 18, 0, tzinfo=datetime.UTC)
AINUR_NEWEST = 1764000000


@pytest.fixture(scope="module")
def stack() -> StackConfig:
    return load_stack_file(HOMELAB)


@pytest.fixture(scope="module")
def alpine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PATH of busybox's applets, as the drill's Alpine images have them (restic's, curl's)."""
    return busybox_applets(tmp_path_factory.mktemp("alpine"), (*APPLETS, "date"))  # and the drills' clock (plans.drill.CLOCK_SCRIPT)


def _clock(folder: Path, now: int) -> str:
    """A folder whose `date +%s` says `now` (the drill's clock; any other `date` is busybox's), for the front of PATH."""
    folder.mkdir(parents=True, exist_ok=True)
    busybox = require("busybox")
    (folder / "date").write_text(f'#!{busybox} sh\nif [ "$*" = +%s ]; then echo {now}; else exec {busybox} date "$@"; fi\n')
    (folder / "date").chmod(0o755)
    (folder / "sh").symlink_to(busybox)  # the front of PATH is where the tests' pods find their sh (`_run`)
    return str(folder)


def _container(cronjob: dict[str, Any], name: str) -> dict[str, Any]:
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return next(c for c in [*pod.get("initContainers", []), *pod["containers"]] if c["name"] == name)


def _run(
    container: dict[str, Any], env: dict[str, str], path: str, paths: dict[str, str], wrap: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """A container's `sh -c SCRIPT` with its env (mount paths moved to the test's folders), on `path`, under `wrap`."""
    given = {e["name"]: paths.get(e["value"], e["value"]) for e in container.get("env", []) if "value" in e}
    shell, flag, script = container["command"]
    assert (shell, flag) == ("/bin/sh", "-c")
    return subprocess.run(
        [*wrap, str(Path(path.split(":")[0]) / "sh"), "-c", script],
        env={"PATH": path, **given, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )


# --- A volume ----------------------------------------------------------------------------------------------------


def _restic(repo: Path, password: str, *args: str, cwd: Path | None = None) -> None:
    done = subprocess.run(
        ["restic", "-r", str(repo), *args], env={**os.environ, "RESTIC_PASSWORD": password}, cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def backed_up(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, Path]:
    """A repository of one backup of a volume as VolSync makes it, made once per module: `restic init` costs 2.5 s of
    CPU (restic v0.14.0 internal/repository/key.go:206 calibrates its key derivation to KDFTimeout, 500 ms) and each
    open of the repository 0.45 s more. Each test's `volume` is a copy of it (a restic repository is its files); the
    backed-up folder is the module's, read only."""
    require("restic")
    root = tmp_path_factory.mktemp("backed-up")
    data = root / "volume"
    (data / "db").mkdir(parents=True)
    (data / "db" / "home-assistant_v2.db").write_bytes(os.urandom(300_000))
    (data / "configuration.yaml").write_text("homeassistant:\n  name: Home\n")
    os.link(data / "configuration.yaml", data / "configuration.hardlink")  # counted once in the size
    (data / "latest.yaml").symlink_to("configuration.yaml")
    # Not root's, as an app's volume is: its image's user (1000), and the group an fsGroup gives every file (2000),
    # with a user xattr, an owner-only mode and an mtime of its own: what a restore as root must give back.
    os.setxattr(data / "configuration.yaml", "user.origin", b"the app")
    os.chown(data / "configuration.yaml", 1000, 1000)
    os.chmod(data / "configuration.yaml", 0o640)
    os.utime(data / "configuration.yaml", (1_700_000_000, 1_700_000_000))
    os.chown(data / "db" / "home-assistant_v2.db", 1000, 2000)
    os.chown(data / "db", 0, 2000)
    # The live volume and the scratch claim are each a filesystem's root, as the class formats it (ceph-block: ext4,
    # plans/storage.py): mke2fs makes lost+found in every new ext4 filesystem (e2fsprogs misc/mke2fs.c,
    # create_lost_and_found), root's, mode 0700.
    (data / "lost+found").mkdir(mode=0o700)
    (data / "lost+found" / "#1234").write_bytes(b"an orphan fsck found")
    repo, password = root / "repository", "the-volumes-password"
    _restic(repo, password, "init")
    # VolSync's mover's backup, flags and all (volsync v0.16.0 mover-restic/entry.sh:157, from the data folder).
    _restic(repo, password, "backup", "--host", "volsync", "--exclude=lost+found", ".", cwd=data)
    return repo, password, data


@pytest.fixture
def volume(stack: StackConfig, backed_up: tuple[Path, str, Path], tmp_path: Path, alpine: Path) -> dict[str, Any]:
    """The home-assistant config volume's drill, and a copy of the module's repository of one backup of the volume,
    which the test may break."""
    app = next(a for a in backup_plan.apps(stack) if a.name == "home-assistant")
    assert app.backup is not None
    claim = app.backup.volumes[0]
    cronjob = drill.volume_cronjob(stack, app, claim)
    container = _container(cronjob, "drill")
    # It reads the volume's own restic Secret, the one VolSync's mover reads.
    assert container["envFrom"] == [{"secretRef": {"name": backup_plan.restic_secret_name(claim.claim)}}]
    (tmp_path / "scratch" / "lost+found").mkdir(mode=0o700, parents=True)
    repo, password = tmp_path / "repository", backed_up[1]
    shutil.copytree(backed_up[0], repo)
    (tmp_path / "tmp").mkdir()
    secret = {"RESTIC_REPOSITORY": str(repo), "RESTIC_PASSWORD": password}
    path = f"{alpine}:{Path(require('restic')).parent}"
    return {"container": container, "repo": repo, "secret": secret, "path": path, "tmp": tmp_path, "data": backed_up[2]}


def _drill_volume(v: dict[str, Any], wrap: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    paths = {drill.SCRATCH: str(v["tmp"] / "scratch"), "/tmp": str(v["tmp"] / "tmp"), "/tmp/cache": str(v["tmp"] / "tmp" / "cache")}  # noqa: S108 - the pod's emptyDir, moved
    return _run(v["container"], v["secret"], v["path"], paths, wrap)


def test_a_good_volume_backup_passes_its_drill_and_says_what_came_back(volume: dict[str, Any]) -> None:
    done = _drill_volume(volume)
    assert done.returncode == 0, done.stderr
    # 5 entries (db/, its file, the config, its hard link, the symlink); the bytes of each file once.
    size = 300_000 + len("homeassistant:\n  name: Home\n")
    assert done.stdout.strip().startswith("restore drill of home-assistant (home-assistant-config) passed: snapshot ")
    assert done.stdout.strip().endswith(
        f"restored into a scratch claim, 5 files and folders, {size} bytes, as the snapshot says; restic check passed"
    )
    assert (volume["tmp"] / "scratch" / "restored" / "db" / "home-assistant_v2.db").stat().st_size == 300_000


def _newest_snapshot(v: dict[str, Any]) -> tuple[str, str, int]:
    """The repository's newest snapshot as restic lists it: its short id, its time as written, and that time in seconds."""
    done = subprocess.run(
        ["restic", "-r", str(v["repo"]), "snapshots", "--json", "--latest", "1"],
        env={**os.environ, **v["secret"]},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    [snapshot] = json.loads(done.stdout)
    whole = snapshot["time"].split(".")[0] + ("Z" if snapshot["time"].endswith("Z") else snapshot["time"][-6:])
    return snapshot["short_id"], snapshot["time"], int(datetime.datetime.fromisoformat(whole).timestamp())


@pytest.mark.parametrize(("past", "passes"), [(0, True), (1, False)], ids=["at-the-bound", "a-second-past-it"])
def test_a_volume_drill_fails_when_its_newest_snapshot_is_older_than_its_schedule_allows(
    volume: dict[str, Any], tmp_path: Path, past: int, passes: bool
) -> None:
    """Backups that stopped leave a last snapshot that restores perfectly: the drill reads its time (restic's RFC 3339
    with nanoseconds and the mover's offset) and fails once it is older than the schedule allows (home-assistant's is
    daily: two days), naming how old, the bound and where to look."""
    env = {e["name"]: e["value"] for e in volume["container"]["env"] if "value" in e}
    assert (env["SCHEDULE"], env["MAX_AGE"]) == ("0 3 * * *", "172800")
    short, made, at = _newest_snapshot(volume)
    done = _drill_volume({**volume, "path": f"{_clock(tmp_path / 'clock', at + 172800 + past)}:{volume['path']}"})
    if passes:
        assert done.returncode == 0, done.stderr
        return
    assert done.returncode == 1
    # Stale, the snapshot is still verified: the failure says so, so that a damaged repository is not hidden behind it.
    size = 300_000 + len("homeassistant:\n  name: Home\n")
    assert done.stderr.strip() == (
        f"restore drill of home-assistant (home-assistant-config) FAILED: the newest snapshot, {short} of {made}, is 2d 0h 0m 1s old, "
        'and backups on "0 3 * * *" keep the newest under 2d 0h 0m 0s: its backups have stopped; '
        "look with: kubectl -n home-automation describe replicationsource home-assistant-config "
        f"(snapshot {short} itself restores: 5 files and folders, {size} bytes, as the snapshot says; restic check passed)"
    )
    assert (volume["tmp"] / "scratch" / "restored" / "db" / "home-assistant_v2.db").stat().st_size == 300_000


def test_a_stale_volume_backup_whose_repository_is_damaged_fails_its_drill_naming_both(volume: dict[str, Any], tmp_path: Path) -> None:
    """Backups stopped (the S3 keys rotated, say) and, in the same weeks, a pack damaged: the drill still runs restic
    check on the newest snapshot, and its failure names the damage and the staleness. On today's main it stopped at the
    staleness, and nobody learned of the damage until backups resumed."""
    short, made, at = _newest_snapshot(volume)
    biggest = _packs(volume["repo"])[-1]
    with biggest.open("r+b") as handle:
        handle.truncate(biggest.stat().st_size // 2)
    done = _drill_volume({**volume, "path": f"{_clock(tmp_path / 'clock', at + 172801)}:{volume['path']}"})
    assert done.returncode == 1
    assert done.stderr.startswith("restore drill of home-assistant (home-assistant-config) FAILED: restic check: "), done.stderr
    assert done.stderr.strip().endswith(
        f"; and the newest snapshot, {short} of {made}, is 2d 0h 0m 1s old, "
        'and backups on "0 3 * * *" keep the newest under 2d 0h 0m 0s: its backups have stopped; '
        "look with: kubectl -n home-automation describe replicationsource home-assistant-config"
    ), done.stderr


def _packs(repo: Path) -> list[Path]:
    return sorted((repo / "data").rglob("*"), key=lambda p: p.stat().st_size if p.is_file() else 0)


def _nfs_drill_container(app_name: str) -> dict[str, Any]:
    """The drill of the same volume with the backups on an NFS target (the homelab's, moved to a NAS)."""
    sf = read_stack_file(HOMELAB)
    raw = {k: v for k, v in sf.config.items() if k not in ("iluvatar:backupS3AccessKeyId", "iluvatar:backupS3SecretAccessKey")}
    raw["iluvatar:backup"] = {**raw["iluvatar:backup"], "target": "nfs://192.168.0.40/volume1/backups"}
    stack = parse_stack(raw, frozenset(k for k in sf.secret_keys if not k.startswith("iluvatar:backupS3")))
    app = next(a for a in backup_plan.apps(stack) if a.name == app_name)
    assert app.backup is not None
    return _container(drill.volume_cronjob(stack, app, app.backup.volumes[0]), "drill")


def test_an_nfs_targets_drill_reads_the_movers_files_from_a_read_only_mount(volume: dict[str, Any]) -> None:
    """VolSync's mover writes the repository as root, owner-only (restic's own modes, as the fixture's root-run restic
    made them). The drill of an NFS target runs as its rendered user with only its rendered capabilities (setpriv's
    bounding set: VolSync's privileged mover's CHOWN, DAC_OVERRIDE, FOWNER), with the target mounted read-only as
    rendered (a bind mount remounted ro, in a mount namespace of its own): it passes, so it reads what the mover wrote
    and writes nothing there, not even a lock; and it gives the app's files back their owners (1000, an fsGroup's
    2000), modes, times and xattrs, which each of the three capabilities is needed for."""
    container = _nfs_drill_container("home-assistant")
    [target] = [m for m in container["volumeMounts"] if m["name"] == "target"]
    assert target["readOnly"] is True
    context = container["securityContext"]
    assert context["capabilities"] == {"drop": ["ALL"], "add": ["CHOWN", "DAC_OVERRIDE", "FOWNER"]}
    assert context["allowPrivilegeEscalation"] is False
    repo = str(volume["repo"])
    made = (volume["repo"] / "config").stat()
    assert (made.st_uid, made.st_mode & 0o077) == (0, 0), "root's, owner-only, as the mover makes them"
    as_pod = (
        *("unshare", "--mount", "--propagation", "private", "/bin/sh", "-c"),
        'mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" && exec "$@"',
        repo,
        *("setpriv", f"--reuid={context['runAsUser']}", f"--regid={context['runAsGroup']}", "--clear-groups"),
        *("--inh-caps=-all", "--bounding-set=" + ",".join(["-all", *(f"+{c.lower()}" for c in context["capabilities"]["add"])]), "--no-new-privs"),
    )
    done = _drill_volume({**volume, "container": container}, as_pod)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith("restore drill of home-assistant (home-assistant-config) passed: snapshot "), done.stdout
    # Files not root's came back as they were. restic v0.18.1, the image's, fails the restore (exit 1) on any of these
    # as root (internal/fs/node.go:238, 252-283); Debian's 0.14.0 here fails it on a lost lchown only and drops the
    # mode, mtime and xattr silently (internal/restic/node.go:200-211), so they are compared here.
    restored = volume["tmp"] / "scratch" / "restored"
    for name in ("configuration.yaml", "db/home-assistant_v2.db", "db"):
        was, got = (volume["data"] / name).stat(), (restored / name).stat()
        assert (got.st_uid, got.st_gid, oct(got.st_mode), got.st_mtime_ns) == (was.st_uid, was.st_gid, oct(was.st_mode), was.st_mtime_ns), name
    assert os.getxattr(restored / "configuration.yaml", "user.origin") == b"the app"


def test_a_truncated_pack_fails_the_drill_naming_the_app(volume: dict[str, Any]) -> None:
    biggest = _packs(volume["repo"])[-1]
    with biggest.open("r+b") as handle:
        handle.truncate(biggest.stat().st_size // 2)
    done = _drill_volume(volume)
    assert done.returncode != 0
    assert done.stderr.startswith("restore drill of home-assistant (home-assistant-config) FAILED: restic check: "), done.stderr


def test_a_corrupted_pack_fails_the_drill_naming_the_app(volume: dict[str, Any]) -> None:
    biggest = _packs(volume["repo"])[-1]
    raw = bytearray(biggest.read_bytes())
    raw[len(raw) // 3] ^= 0xFF  # the same size: only reading the data finds it
    biggest.chmod(0o644)
    biggest.write_bytes(bytes(raw))
    done = _drill_volume(volume)
    assert done.returncode != 0
    assert done.stderr.startswith("restore drill of home-assistant (home-assistant-config) FAILED: restic restore of snapshot "), done.stderr


def test_a_repository_without_a_snapshot_fails_the_drill(volume: dict[str, Any], tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    _restic(empty, "other", "init")
    done = _drill_volume({**volume, "secret": {"RESTIC_REPOSITORY": str(empty), "RESTIC_PASSWORD": "other"}})
    assert done.returncode != 0
    assert done.stderr.strip() == f"restore drill of home-assistant (home-assistant-config) FAILED: the repository {empty} has no snapshot"


@pytest.mark.parametrize(
    ("fault", "said"),
    [
        ('rm "$target/configuration.hardlink"', "snapshot {id} holds 5 files and folders; 4 came back"),
        (
            'head -c 100 "$target/db/home-assistant_v2.db" > "$target/cut" && mv "$target/cut" "$target/db/home-assistant_v2.db"',
            "snapshot {id} holds {size} bytes; {cut} came back",
        ),
    ],
    ids=["a-file-lost", "a-file-cut"],
)
def test_a_restore_that_comes_back_short_fails_the_drill(volume: dict[str, Any], tmp_path: Path, fault: str, said: str) -> None:
    """The count and the size are checked against what the snapshot says, not trusted from restic's exit: a restore
    that exits 0 but leaves a file out, or a file shorter, fails (the real restic, with the fault after its restore)."""
    real = require("restic")
    shim = tmp_path / "shim"
    shim.mkdir()
    alpine_dir = volume["path"].split(":")[0]
    (shim / "restic").write_text(
        f'#!{alpine_dir}/sh\n"{real}" "$@" || exit $?\nif [ "$1" = restore ]; then target={volume["tmp"] / "scratch" / "restored"}; {fault}; fi\n'
    )
    (shim / "restic").chmod(0o755)
    done = _drill_volume({**volume, "path": f"{alpine_dir}:{shim}:{Path(real).parent}"})
    assert done.returncode != 0, done.stdout
    snapshot = done.stderr.split("FAILED: snapshot ", 1)[1].split(" ", 1)[0]
    size = 300_000 + len("homeassistant:\n  name: Home\n")
    expected = said.format(id=snapshot, size=size, cut=100 + len("homeassistant:\n  name: Home\n"))
    assert done.stderr.strip() == f"restore drill of home-assistant (home-assistant-config) FAILED: {expected}"


# --- etcd ----------------------------------------------------------------------------------------------------------


class _Bucket(BaseHTTPRequestHandler):
    """An S3 stand-in: ListObjectsV2 two keys a page (with continuation tokens), and GET of an object. It records that
    each request came signed with AWS Signature v4 (curl's --aws-sigv4); it does not check the signature."""

    objects: dict[str, bytes] = {}  # noqa: RUF012 - one test's bucket
    unsigned: list[str] = []  # noqa: RUF012

    def do_GET(self) -> None:
        if not self.headers.get("Authorization", "").startswith("AWS4-HMAC-SHA256 Credential=drill-key/"):
            _Bucket.unsigned.append(self.path)
        parts = urlsplit(self.path)
        bucket, _, key = parts.path.lstrip("/").partition("/")
        if bucket != "homelab":
            self.send_error(404)
            return
        if key:
            body = _Bucket.objects.get(key)
            if body is None:
                self.send_error(404)
                return
            self._reply(body, "application/octet-stream")
            return
        query = parse_qs(parts.query)
        assert query["list-type"] == ["2"]
        keys = sorted(k for k in _Bucket.objects if k.startswith(query["prefix"][0]))
        start = int(query.get("continuation-token", ["0"])[0])
        page, rest = keys[start : start + 2], keys[start + 2 :]
        contents = "".join(f"<Contents><Key>{k}</Key><Size>{len(_Bucket.objects[k])}</Size></Contents>" for k in page)
        more = (
            f"<IsTruncated>true</IsTruncated><NextContinuationToken>{start + 2}</NextContinuationToken>"
            if rest
            else "<IsTruncated>false</IsTruncated>"
        )
        self._reply(
            f'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>homelab</Name>{more}{contents}</ListBucketResult>'.encode(),
            "application/xml",
        )

    def _reply(self, body: bytes, kind: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture(scope="module")
def bucket() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Bucket)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A snapshot of a test control plane's etcd, with a Namespace the API server wrote in it."""
    root = tmp_path_factory.mktemp("etcd")
    binary = gotools.build("kube-control-plane")
    with Cluster(flavor_for("arda"), root / "cluster", components=("etcd", "kube-apiserver"), ready_for_pods=False).start() as cluster:
        cluster.client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "drilled"}})
        done = subprocess.run(
            [str(binary), "etcdctl", f"--endpoints={cluster.etcd_url}", "snapshot", "save", str(root / "snapshot.db")],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
    return (root / "snapshot.db").read_bytes()


# The etcd release each etcdutl image of the drill is (stacks.data.ETCDUTL), as the tests build it: Kubernetes' etcd 3.6.5
# image is the control plane's etcd (tools/kube-control-plane, etcd 3.6.5), the 3.7.1 image Talos v1.14.1's etcd
# (tools/etcd-3.7). Each binary is the etcd release's own etcd, etcdctl and etcdutl.
ETCD_BUILDS = {ETCDUTL[(3, 6)]: "kube-control-plane", ETCDUTL[(3, 7)]: "etcd-3.7"}


@contextmanager
def _etcd(build: str, data: Path, *flags: str) -> Iterator[str]:
    """etcd of a tool (`build`) serving `data` on loopback until the block ends: its client URL, once /health says
    it is healthy. It fails at once, with etcd's words, if etcd exits first."""
    client, peer = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
    log = data.parent / f"{data.name}.etcd.log"
    command = [str(gotools.build(build)), "etcd", f"--data-dir={data}", f"--listen-client-urls={client}", f"--advertise-client-urls={client}"]
    command += [f"--listen-peer-urls={peer}", "--unsafe-no-fsync", *(f.replace("PEER", peer) for f in flags)]
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not _healthy(client):
            assert process.poll() is None, f"etcd exited {process.returncode}: {log.read_text()}"
            assert time.monotonic() < deadline, f"etcd did not answer /health within 120 s: {log.read_text()}"
            time.sleep(0.05)  # the next look at /health: no result is read from the clock
        yield client
    finally:
        process.kill()
        process.wait()


def _healthy(client: str) -> bool:
    try:
        with urllib.request.urlopen(f"{client}/health", timeout=2) as answer:  # noqa: S310 - loopback
            return bool(json.loads(answer.read())["health"] == "true")
    except OSError:
        return False


def _etcdctl(build: str, client: str, *args: str) -> str:
    done = subprocess.run([str(gotools.build(build)), "etcdctl", f"--endpoints={client}", *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


# What the 3.7 snapshot holds: a key as the API server writes a Namespace (its value is not the API server's encoding).
DRILLED_KEY, DRILLED_VALUE = "/registry/namespaces/drilled-on-3.7", "written by etcdctl 3.7.1"


@pytest.fixture(scope="module")
def snapshot_3_7(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A snapshot of etcd 3.7.1, the etcd Talos v1.14.1 runs, taken through its Snapshot API by etcdctl 3.7.1 (Talos
    v1.14.1's EtcdSnapshot is client/v3 v3.7.1's), once its storage is at 3.7's schema: what talos-backup uploads from
    Arda once the roll to Talos 1.14 has moved every member (the storage version follows the cluster version, server
    v3.7.1 etcdserver/version/monitor.go:55-120)."""
    root = tmp_path_factory.mktemp("etcd-3.7")
    with _etcd("etcd-3.7", root / "data", "--name=arda-etcd", "--initial-advertise-peer-urls=PEER", "--initial-cluster=arda-etcd=PEER") as client:
        _etcdctl("etcd-3.7", client, "put", DRILLED_KEY, DRILLED_VALUE)
        deadline = time.monotonic() + 120
        while json.loads(_etcdctl("etcd-3.7", client, "endpoint", "status", "--write-out=json"))[0]["Status"].get("storageVersion") != "3.7.0":
            assert time.monotonic() < deadline, "etcd 3.7.1's storage version did not reach 3.7.0 within 120 s"
            time.sleep(0.05)  # the next look at its status: no result is read from the clock
        _etcdctl("etcd-3.7", client, "snapshot", "save", str(root / "snapshot.db"))
    return (root / "snapshot.db").read_bytes()


def _encrypt(plain: bytes, recipient: str, tmp: Path) -> bytes:
    (tmp / "plain").write_bytes(plain)
    done = subprocess.run(
        [str(gotools.build("age")), "--encrypt", "-r", recipient, "-o", str(tmp / "enc"), str(tmp / "plain")], capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return (tmp / "enc").read_bytes()


def _etcd_drill(
    stack: StackConfig,
    cluster: str,
    bucket: str,
    tmp: Path,
    alpine: Path,
    identity: str | None,
    tools: Path | None = None,
    offline: bool = False,
    now: int | None = None,
) -> tuple[str, list[subprocess.CompletedProcess[str]]]:
    """Each step of the cluster's drill, in order, until one fails: the scripts as rendered, etcdutl as its image runs it.
    `tools` is the drill's tools claim (kept between runs; a new one unless given); `offline`: no Go module proxy; `now`:
    the drill's clock (default: two hours after the bucket's newest snapshot)."""
    if now is None:
        now = (int(ARDA_NEWEST.timestamp()) if cluster == "arda" else AINUR_NEWEST) + 7200
    cronjob = drill.etcd_cronjob(stack, cluster)
    work = tmp / "work"
    work.mkdir(parents=True)
    tools = tools or tmp / "tools"
    tools.mkdir(exist_ok=True)
    paths = {drill.WORK: str(work), f"{drill.WORK}/tmp": str(work / "tmp"), f"{drill.WORK}/snapshot": str(work / "snapshot")}  # noqa: S108 - the pod's, moved
    paths |= {f"{drill.WORK}/go": str(work / "go"), f"{drill.WORK}/go-cache": go_env()["GOCACHE"], drill.TOOLS: str(tools)}
    fetch = _container(cronjob, "fetch")
    env = {
        "S3_ENDPOINT": bucket,
        "AWS_ACCESS_KEY_ID": "drill-key",
        "AWS_SECRET_ACCESS_KEY": "drill-secret",
    }
    curl = Path(require("curl")).parent
    path = f"{_clock(tmp / 'clock', now)}:{alpine}:{curl}"
    results = [_run(fetch, env, path, paths)]
    if results[-1].returncode != 0:
        return "fetch", results
    if cluster == "arda":
        assert identity is not None
        (tmp / "identity").mkdir()
        (tmp / "identity" / "key").write_text(identity + "\n")
        step = _container(cronjob, "decrypt")
        script = step["command"][2].replace("/identity/key", str(tmp / "identity" / "key"))
        assert {"name": "tools", "mountPath": drill.TOOLS} in step["volumeMounts"]
        go = Path(go_binary()).parent
        # The Go toolchain the golang image has, with the module cache and proxy this machine's builds use.
        goenv = {k: v for k, v in go_env().items() if k in ("GOMODCACHE", "GOPROXY", "GOSUMDB", "GOTOOLCHAIN")}
        if offline:
            goenv |= {"GOPROXY": "off", "GOSUMDB": "off"}
        results.append(_run({**step, "command": ["/bin/sh", "-c", script]}, {**goenv, "CGO_ENABLED": "0"}, f"{alpine}:{go}", paths))
    else:
        results.append(_run(_container(cronjob, "unzip"), {}, path, paths))
    if results[-1].returncode != 0:
        return "decrypt" if cluster == "arda" else "unzip", results
    for name in ("restore", "schema", "status"):
        step = _container(cronjob, name)
        command = [a.replace(drill.WORK, str(work)) for a in step["command"]]
        assert command[0] == "etcdutl"
        results.append(subprocess.run([str(gotools.build(ETCD_BUILDS[step["image"]])), *command], capture_output=True, text=True, timeout=120))
        if results[-1].returncode != 0:
            return name, results
    return "passed", results


def _goarch() -> str:
    """The architecture this machine's Go builds for, as the drill's `go env GOARCH` reads it."""
    return subprocess.run([go_binary(), "env", "GOARCH"], capture_output=True, text=True, check=True, timeout=60).stdout.strip()


def _key() -> tuple[str, str]:
    scalar = hashlib.sha256(b"the stack's age identity, for the test").digest()
    return age.identity(scalar), age.recipient(scalar)


def _talos_key(stack: StackConfig, when: datetime.datetime) -> str:
    # talos-backup v0.1.0-beta.3: <S3_PREFIX>/<cluster>-<time.RFC3339>.snap.age (pkg/talos/talos.go:44, pkg/s3/s3.go:73).
    return f"{backup_plan.etcd_prefix(stack, stack.arda.cluster_name)}/{stack.arda.cluster_name}-{when:%Y-%m-%dT%H:%M:%SZ}.snap.age"


def _fill_arda(stack: StackConfig, snapshot: bytes, tmp: Path, newest: bytes) -> None:
    _, recipient = _key()
    _Bucket.objects.clear()
    for hours in (18, 12, 6):
        _Bucket.objects[_talos_key(stack, ARDA_NEWEST - datetime.timedelta(hours=hours))] = _encrypt(b"an older, unreadable snapshot", recipient, tmp)
    _Bucket.objects[_talos_key(stack, ARDA_NEWEST)] = newest


def test_arda_s_newest_etcd_snapshot_is_fetched_decrypted_restored_and_read(
    stack: StackConfig, snapshot: bytes, bucket: str, alpine: Path, tmp_path: Path
) -> None:
    identity, recipient = _key()
    _fill_arda(stack, snapshot, tmp_path, _encrypt(snapshot, recipient, tmp_path))
    _Bucket.unsigned.clear()
    step, results = _etcd_drill(stack, "arda", bucket, tmp_path, alpine, identity)
    assert step == "passed", results[-1].stderr
    assert results[0].stdout.strip() == f"restore drill of arda's etcd: the newest snapshot is {_talos_key(stack, ARDA_NEWEST)}"
    status = json.loads(results[-1].stdout)
    assert status["revision"] > 1 and status["totalKey"] > 10, status
    assert _Bucket.unsigned == [], "every request to the bucket is signed"
    # What etcdutl restored is a member's data directory: the Namespace the API server wrote is in it.
    assert (tmp_path / "work" / "restored" / "member" / "snap" / "db").exists()
    assert b"/registry/namespaces/drilled" in (tmp_path / "work" / "restored" / "member" / "snap" / "db").read_bytes()
    # A snapshot of etcd 3.6 (taken before the roll to Talos 1.14): the homelab's Talos runs etcd 3.7, so the drill's
    # etcdutl 3.7.1 moves the restored copy to 3.7's schema, as etcd 3.7 moves a 3.6 member's data when it starts.
    assert 'updated storage version\t{"new-storage-version": "3.7.0"}' in results[3].stderr, results[3].stderr


def test_age_is_built_once_checked_against_its_pinned_bytes_and_kept_for_runs_without_the_internet(
    stack: StackConfig, snapshot: bytes, bucket: str, alpine: Path, tmp_path: Path
) -> None:
    """The first run builds age into the tools claim (its module fetched once, kept there); the next runs need no
    module proxy: a kept binary that is the pinned one is used as is, one that is not is rebuilt from the kept modules."""
    identity, recipient = _key()
    _fill_arda(stack, snapshot, tmp_path, _encrypt(snapshot, recipient, tmp_path))
    tools = tmp_path / "tools"
    arch = _goarch()
    kept = tools / f"age-{drill.AGE_VERSION}-{arch}"
    step, results = _etcd_drill(stack, "arda", bucket, tmp_path / "first", alpine, identity, tools)
    assert step == "passed", results[-1].stderr
    # The toolchain's own build of the module gives the pinned bytes.
    assert hashlib.sha256(kept.read_bytes()).hexdigest() == drill.AGE_SHA256[arch]
    assert (tmp_path / "first" / "work" / "go" / "bin" / "age").exists(), "built on the first run"
    step, results = _etcd_drill(stack, "arda", bucket, tmp_path / "offline", alpine, identity, tools, offline=True)
    assert step == "passed", results[-1].stderr
    assert not (tmp_path / "offline" / "work" / "go" / "bin").exists(), "the kept binary, no build"
    # A kept binary that is not the pinned one (a truncated copy, a swapped file) is not run: rebuilt, offline.
    kept.write_bytes(kept.read_bytes()[:4096])
    step, results = _etcd_drill(stack, "arda", bucket, tmp_path / "rebuilt", alpine, identity, tools, offline=True)
    assert step == "passed", results[-1].stderr
    assert hashlib.sha256(kept.read_bytes()).hexdigest() == drill.AGE_SHA256[arch]


def test_age_that_is_not_the_pinned_binary_fails_the_drill_as_a_build_problem(
    stack: StackConfig, snapshot: bytes, bucket: str, alpine: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    identity, recipient = _key()
    _fill_arda(stack, snapshot, tmp_path, _encrypt(snapshot, recipient, tmp_path))
    arch = _goarch()
    # The deliberate break: another pin for this machine's architecture than the bytes Go builds.
    monkeypatch.setattr(drill, "DECRYPT_SCRIPT", drill.DECRYPT_SCRIPT.replace(drill.AGE_SHA256[arch], "0" * 64))
    step, results = _etcd_drill(stack, "arda", bucket, tmp_path, alpine, identity)
    assert step == "decrypt"
    assert results[-1].stderr.startswith(f"restore drill of arda's etcd FAILED: the age built from {drill.AGE_PACKAGE} is not the pinned binary"), (
        results[-1].stderr
    )
    assert not (tmp_path / "tools" / f"age-{drill.AGE_VERSION}-{arch}").exists(), "a binary that is not the pinned one is not kept"


def test_a_snapshot_tampered_with_after_encryption_fails_to_decrypt(
    stack: StackConfig, snapshot: bytes, bucket: str, alpine: Path, tmp_path: Path
) -> None:
    identity, recipient = _key()
    encrypted = bytearray(_encrypt(snapshot, recipient, tmp_path))
    encrypted[len(encrypted) // 2] ^= 0x01
    _fill_arda(stack, snapshot, tmp_path, bytes(encrypted))
    step, results = _etcd_drill(stack, "arda", bucket, tmp_path, alpine, identity)
    assert step == "decrypt"
    assert results[-1].stderr.startswith("restore drill of arda's etcd FAILED: age could not decrypt the snapshot with the stack's key: "), results[
        -1
    ].stderr


def test_a_snapshot_encrypted_to_another_key_fails_to_decrypt(stack: StackConfig, snapshot: bytes, bucket: str, alpine: Path, tmp_path: Path) -> None:
    identity, _ = _key()
    other = age.recipient(hashlib.sha256(b"another stack").digest())
    _fill_arda(stack, snapshot, tmp_path, _encrypt(snapshot, other, tmp_path))
    step, results = _etcd_drill(stack, "arda", bucket, tmp_path, alpine, identity)
    assert (step, "no identity matched any of the recipients" in results[-1].stderr) == ("decrypt", True), results[-1].stderr


def test_a_snapshot_corrupted_before_encryption_fails_etcdutl(stack: StackConfig, snapshot: bytes, bucket: str, alpine: Path, tmp_path: Path) -> None:
    identity, recipient = _key()
    corrupted = bytearray(snapshot)
    corrupted[len(corrupted) // 2] ^= 0xFF  # the database changed; its hash at the end (etcd's Snapshot API adds it) did not
    _fill_arda(stack, snapshot, tmp_path, _encrypt(bytes(corrupted), recipient, tmp_path))
    step, results = _etcd_drill(stack, "arda", bucket, tmp_path, alpine, identity)
    assert step == "restore"
    # etcdutl checks the sha256 the Snapshot API appended (etcd v3.7.1 etcdutl/snapshot/v3_snapshot.go:498, the homelab's).
    assert "\nError: expected sha256 [" in results[-1].stderr, results[-1].stderr


def _homelab_at(talos: str) -> StackConfig:
    """The homelab with Arda on another Talos."""
    sf = read_stack_file(HOMELAB)
    raw = dict(sf.config)
    raw["iluvatar:arda"] = {**raw["iluvatar:arda"], "talosVersion": talos}
    return parse_stack(raw, sf.secret_keys)


def test_a_3_7_snapshot_is_restored_at_3_7_s_schema_and_the_etcd_of_talos_1_14_starts_on_it(
    stack: StackConfig, snapshot_3_7: bytes, bucket: str, alpine: Path, tmp_path: Path
) -> None:
    """Arda on Talos v1.14.1 (the homelab's) runs etcd 3.7.1, and talos-backup uploads 3.7 snapshots: the drill restores
    the newest with etcdutl 3.7.1, whose migrate finds it at 3.7's schema, and etcd 3.7.1 then starts on what was
    restored and serves what the snapshot held."""
    assert stack.arda.talos_version == "v1.14.1"
    identity, recipient = _key()
    _fill_arda(stack, snapshot_3_7, tmp_path, _encrypt(snapshot_3_7, recipient, tmp_path))
    step, results = _etcd_drill(stack, "arda", bucket, tmp_path, alpine, identity)
    assert step == "passed", results[-1].stderr
    _, _, _, schema, status = results
    assert 'storage version up-to-date\t{"storage-version": "3.7"}' in schema.stderr, schema.stderr
    assert json.loads(status.stdout)["version"] == "3.7.0"
    with _etcd("etcd-3.7", tmp_path / "work" / "restored") as client:
        assert _etcdctl("etcd-3.7", client, "get", DRILLED_KEY, "--print-value-only") == f"{DRILLED_VALUE}\n"
        [member] = json.loads(_etcdctl("etcd-3.7", client, "endpoint", "status", "--write-out=json"))
        assert (member["Status"]["version"], member["Status"]["storageVersion"]) == ("3.7.1", "3.7.0")


def test_a_3_7_snapshot_restored_by_etcdutl_3_6_fails_the_drill_at_its_schema_step_as_etcd_3_6_refuses_it(
    snapshot_3_7: bytes, bucket: str, alpine: Path, tmp_path: Path
) -> None:
    """etcdutl 3.6.5 restores a 3.7 snapshot without a word (exit 0), and etcd 3.6.5 then refuses to start on the
    result: 3.6 knows no 3.7 schema. The drill of a stack on Talos v1.13.9 (etcd 3.6) that finds a 3.7 snapshot (one
    taken after the roll to 1.14, with the stack set back) fails at its schema step with etcdutl's own words; without
    that step it passed."""
    at_1_13 = _homelab_at("v1.13.9")
    identity, recipient = _key()
    _fill_arda(at_1_13, snapshot_3_7, tmp_path, _encrypt(snapshot_3_7, recipient, tmp_path))
    step, results = _etcd_drill(at_1_13, "arda", bucket, tmp_path, alpine, identity)
    assert step == "schema", [r.stderr for r in results]
    assert results[-2].returncode == 0, "the restore said nothing"
    assert results[-1].stderr.strip().endswith('Error: cannot create migration plan: version "3.7.0" is not supported'), results[-1].stderr
    # What the drill failed on is what etcd 3.6.5 does with that restore: it refuses to start (etcdserver/bootstrap.go:239).
    client, peer = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
    restored = tmp_path / "work" / "restored"
    urls = [f"--listen-client-urls={client}", f"--advertise-client-urls={client}", f"--listen-peer-urls={peer}"]
    started = subprocess.run(
        [str(gotools.build("kube-control-plane")), "etcd", f"--data-dir={restored}", *urls],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert started.returncode == 1
    assert '"msg":"discovery failed","error":"version \\"3.7.0\\" is not supported"' in started.stderr, started.stderr


def _zipped(name: str, data: bytes) -> bytes:
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"{name}-{os.getpid()}.zip"  # noqa: S108
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr(name, data)
    body = out.read_bytes()
    out.unlink()
    return body


@pytest.mark.parametrize(("past", "passes"), [(0, True), (1, False)], ids=["at-the-bound", "a-second-past-it"])
def test_arda_s_drill_fails_when_its_newest_snapshot_is_older_than_the_etcd_schedule_allows(
    stack: StackConfig, snapshot: bytes, bucket: str, alpine: Path, tmp_path: Path, past: int, passes: bool
) -> None:
    """talos-backup stopped: the newest key in the bucket is older than the 6-hourly schedule allows (12 hours). The drill
    reads the time in its name and fails at the fetch, before it downloads anything, saying where to look."""
    identity, recipient = _key()
    _fill_arda(stack, snapshot, tmp_path, _encrypt(snapshot, recipient, tmp_path))
    step, results = _etcd_drill(stack, "arda", bucket, tmp_path, alpine, identity, now=int(ARDA_NEWEST.timestamp()) + 43200 + past)
    if passes:
        assert step == "passed", results[-1].stderr
        return
    assert step == "fetch"
    key = _talos_key(stack, ARDA_NEWEST)
    assert results[0].stderr.strip() == (
        f'restore drill of arda\'s etcd FAILED: the newest snapshot, {key}, is 0d 12h 0m 1s old, and backups on "0 */6 * * *" '
        f"keep the newest under 0d 12h 0m 0s: snapshots have stopped reaching the bucket; look with: {drill.LOOK['arda']}"
    )


def test_a_snapshot_dated_ahead_of_the_drills_clock_fails_it(stack: StackConfig, snapshot: bytes, bucket: str, alpine: Path, tmp_path: Path) -> None:
    """A snapshot taken while a clock was a day ahead stays the newest in the bucket, and would pass every drill while
    the real ones stop: past five minutes of skew it fails the drill."""
    identity, recipient = _key()
    _fill_arda(stack, snapshot, tmp_path, _encrypt(snapshot, recipient, tmp_path))
    step, results = _etcd_drill(stack, "arda", bucket, tmp_path, alpine, identity, now=int(ARDA_NEWEST.timestamp()) - 301)
    assert step == "fetch"
    assert results[0].stderr.strip() == (
        f"restore drill of arda's etcd FAILED: the newest snapshot, {_talos_key(stack, ARDA_NEWEST)}, is dated 0d 0h 5m 1s ahead of "
        "this drill's clock: a clock that was wrong when it was taken would hide every later backup behind it; remove that snapshot, or fix the clock"
    )


def test_a_snapshot_whose_name_says_no_time_fails_arda_s_drill(
    stack: StackConfig, snapshot: bytes, bucket: str, alpine: Path, tmp_path: Path
) -> None:
    identity, recipient = _key()
    _fill_arda(stack, snapshot, tmp_path, _encrypt(snapshot, recipient, tmp_path))
    odd = f"{backup_plan.etcd_prefix(stack, stack.arda.cluster_name)}/{stack.arda.cluster_name}-yesterday.snap.age"
    _Bucket.objects[odd] = b"sorted last"
    step, results = _etcd_drill(stack, "arda", bucket, tmp_path, alpine, identity)
    assert step == "fetch"
    assert results[0].stderr.strip() == f"restore drill of arda's etcd FAILED: when {odd} was taken cannot be read from its name"


def test_the_ainur_s_drill_fails_when_k3s_s_snapshots_stopped_reaching_the_bucket(
    stack: StackConfig, snapshot: bytes, bucket: str, alpine: Path, tmp_path: Path
) -> None:
    prefix = backup_plan.etcd_prefix(stack, "ainur")
    _Bucket.objects.clear()
    name = f"etcd-snapshot-manwe-{AINUR_NEWEST}"
    _Bucket.objects[f"{prefix}/{name}.zip"] = _zipped(name, snapshot)
    step, results = _etcd_drill(stack, "ainur", bucket, tmp_path, alpine, None, now=AINUR_NEWEST + 3 * 86400)
    assert step == "fetch"
    assert results[0].stderr.strip() == (
        f"restore drill of ainur's etcd FAILED: the newest snapshot, {prefix}/{name}.zip, is 3d 0h 0m 0s old, and backups on "
        f'"0 */6 * * *" keep the newest under 0d 12h 0m 0s: snapshots have stopped reaching the bucket; look with: {drill.LOOK["ainur"]}'
    )


def test_the_ainur_s_newest_snapshot_of_any_valar_is_unzipped_and_read(
    stack: StackConfig, snapshot: bytes, bucket: str, alpine: Path, tmp_path: Path
) -> None:
    prefix = backup_plan.etcd_prefix(stack, "ainur")
    _Bucket.objects.clear()
    # k3s names each valar's snapshots etcd-snapshot-<node>-<unix time>, zipped; the newest is manwe's here, though
    # another valar's name sorts after it; the metadata folder beside them is not a snapshot.
    for node, when, data in (("manwe", 1764000000, snapshot), ("varda", 1763990000, b"older"), ("manwe", 1763900000, b"oldest")):
        name = f"etcd-snapshot-{node}-{when}"
        _Bucket.objects[f"{prefix}/{name}.zip"] = _zipped(name, data)
    _Bucket.objects[f"{prefix}/.metadata/etcd-snapshot-manwe-1764000000"] = b"{}"
    step, results = _etcd_drill(stack, "ainur", bucket, tmp_path, alpine, None)
    assert step == "passed", results[-1].stderr
    assert results[0].stdout.strip() == f"restore drill of ainur's etcd: the newest snapshot is {prefix}/etcd-snapshot-manwe-1764000000.zip"


def test_the_drills_are_labelled_with_what_they_restore(stack: StackConfig) -> None:
    labels = {c["metadata"]["name"]: (c["metadata"]["namespace"], c["metadata"]["labels"][drill.LABEL]) for c in drill.cronjobs(stack)}
    assert labels == {
        "drill-home-assistant-config": ("home-automation", "home-assistant"),
        "drill-jellyfin-config": ("media", "jellyfin"),
        "drill-backups-minecraft-0": ("selfhosted", "minecraft"),
        "drill-mosquitto-data": ("home-automation", "mosquitto"),
        "drill-etcd-arda": ("backup-drill", "arda"),
        "drill-etcd-ainur": ("backup-drill", "ainur"),
    }
    # Only the Arda drill's pod mounts the age identity.
    mounted = {
        c["metadata"]["name"]: [v for v in c["spec"]["jobTemplate"]["spec"]["template"]["spec"]["volumes"] if "secret" in v]
        for c in drill.cronjobs(stack)
    }
    assert mounted["drill-etcd-arda"] == [{"name": "identity", "secret": {"secretName": drill.AGE_SECRET, "defaultMode": 0o400}}]
    assert [n for n, v in mounted.items() if v] == ["drill-etcd-arda"]
