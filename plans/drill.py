"""Restore drill plan: every backup restored on a schedule, away from what it backs up, and checked.

- **Each app's volumes** (`volume_cronjob`): a CronJob in the app's namespace restores the newest restic snapshot
  of the volume's repository (the volume's own restic Secret, as VolSync's mover reads it) into a scratch claim of
  the volume's class and size: a generic ephemeral volume, made with the drill's pod and deleted with it, so the live
  claim is never touched. `restic check` reads the repository's structure, the restore reads and verifies every blob of
  the snapshot, and the files that came back are counted and summed against what `restic stats --mode restore-size`
  says the snapshot holds (restic v0.18.1 cmd/restic/cmd_stats.go:276-289: every node once, each file's size once).
  A snapshot older than the backup schedule allows (`stacks.data.newest_within`) fails the drill: a restore that works
  says nothing of backups that have stopped. (A snapshot of nothing does not exist: restic refuses to save one, "unable
  to save snapshot: snapshot is empty", so VolSync's backup of an empty volume fails, and its snapshots go stale.)
- **Arda's etcd** (`etcd_cronjob`): the newest talos-backup snapshot in the bucket (`<prefix>/etcd/<cluster>/
  <cluster>-<RFC3339>.snap.age`, talos-backup v0.1.0-beta.3 pkg/talos/talos.go:44, pkg/s3/s3.go:73) is fetched,
  decrypted with the program's age identity (a Secret in `NAMESPACE` that only the drill's pod mounts), restored
  into a scratch data directory by `etcdutl snapshot restore` (which checks the snapshot's hash), brought to the
  storage schema of the etcd the cluster runs by `etcdutl migrate --target-version <minor>` (or refused by it), and
  read by `etcdutl snapshot status`. The etcdutl is of the cluster's own etcd minor (`stacks.data.ETCDUTL`, `etcdutl`):
  Arda's is its Talos's, 3.7 from Talos 1.14. **The Ainur's**: k3s's newest `etcd-snapshot-<node>-<unix time>.zip` (k3s
  pkg/etcd/snapshot: its compressed extension `.zip`) likewise, unzipped instead of decrypted. The newest snapshot must
  be younger than the etcd schedule allows, read from its name, or the drill fails: snapshots have stopped arriving.
- **Results**: each drill is a CronJob labelled `LABEL` with what it drills (the app, or the cluster); kube-state-metrics
  turns its last schedule and last success into series, which plans.monitoring's `RestoreDrillFailed` and
  `RestoreDrillStale` read, and Grafana's restore-drill dashboard shows the last good restore of each.

Plain functions returning manifests and scripts; no Pulumi here.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from plans import backup, gitops, kms, remote_access, storage
from stacks import data, day2, pins, releases
from stacks.data import ETCDUTL, etcd_minor, newest_within
from stacks.data_model import BackupVolume, Drill
from stacks.model import App, StackConfig
from stacks.storage import default_class

NAMESPACE = "backup-drill"  # the etcd drills (the volumes' run in each app's namespace, beside its restic Secret)
LABEL = "iluvatar.dev/drill"  # the app or the cluster a drill restores: what its alert and dashboard name
KIND_LABEL = "iluvatar.dev/drill-kind"
PREFIX = "drill-"
MANAGED_BY = gitops.MANAGED_BY

# restic as VolSync v0.16.0's mover runs it; busybox's find, stat and awk count what came back.
RESTIC_IMAGE = pins.IMAGES["restic"]
# curl signs S3 requests itself (--aws-sigv4); the image is Alpine's, with busybox's sh, sed, sort and unzip.
CURL_IMAGE = pins.IMAGES["curl-drill"]
# age's own command, built from its module at the version the tests build and run (tools/age): the age project
# publishes no image; the Go toolchain verifies the module against the checksum database as it fetches it.
GO_IMAGE = pins.IMAGES["golang"]
AGE_VERSION = pins.APPS["age"]
AGE_PACKAGE = f"filippo.io/age/cmd/age@{AGE_VERSION}"
# The age binary `go install -trimpath` makes of AGE_PACKAGE with CGO_ENABLED=0 and GO_IMAGE's Go (1.26.8), by GOARCH:
# Go's builds are reproducible (the same toolchain, flags and module give the same bytes; a fresh build cache and
# GOPATH gave these again), so a build, or a copy kept from one, is checked against the bytes pinned here.
AGE_SHA256 = {
    "amd64": "bcc3ffdd8860cd4c09acb5d8420f296cd6ed12dea76df290fdb747e042773dee",
    "arm64": "006ebfa5f8f9162d983e69982076bbe3843d1dda491aeb0141ffe5c4fae63b41",
}
# Arda's drill keeps age (and the modules it was built from) on a small claim of its own: built once, on the first
# run, it needs neither the internet nor a build afterwards (review M7: an outage on a Sunday morning was a false
# "that backup may not come back").
TOOLS = "/tools"
TOOLS_CLAIM = "drill-tools"
TOOLS_SIZE = "512Mi"
AGE_SECRET = "drill-age-identity"  # noqa: S105 - a Secret's name
S3_SECRET = "drill-s3"  # noqa: S105 - a Secret's name
SCRATCH = "/scratch"
WORK = "/work"
# A drill that has not finished within this is stopped, and failed (the CronJob's Job's activeDeadlineSeconds); the
# staleAfter rule allows for it (stacks.data.stale_floor).
DEADLINE_SECONDS = int(data.DRILL_DEADLINE.total_seconds())
NONROOT = 65534
# How long a finished drill's Job and pod (and its logs, for `kubectl logs`) stay: long enough to read why it failed.
FINISHED_TTL_SECONDS = 3600


def enabled(stack: StackConfig) -> bool:
    """Drills run where backups are and monitoring reports them, unless `backup.drill.enabled` is false."""
    return stack.backup is not None and stack.monitoring is not None and stack.backup.drill.enabled


def settings(stack: StackConfig) -> Drill:
    assert stack.backup is not None
    return stack.backup.drill


def volume_drills(stack: StackConfig) -> list[tuple[App, BackupVolume]]:
    if not enabled(stack) or not settings(stack).volumes:
        return []
    return [(app, volume) for app in backup.apps(stack) for volume in (app.backup.volumes if app.backup else ())]


def etcd_drills(stack: StackConfig) -> list[str]:
    """The clusters whose etcd snapshots are drilled (stacks.data.drills)."""
    if not enabled(stack):
        return []
    assert stack.backup is not None
    arda, ainur = data.drills(stack.backup, stack.ainur is not None)
    return [name for name, on in (("arda", arda), ("ainur", ainur)) if on]


def scratch_classes(stack: StackConfig) -> list[dict[str, Any]]:
    """The StorageClasses of the volume drills' scratch claims: each drilled volume's class, deleting its volumes."""
    used = sorted({backup.volume_class(stack, volume) for _, volume in volume_drills(stack)})
    return [storage.scratch_class(stack, name) for name in used]


def cronjob_name(what: str) -> str:
    """`drill-<claim>` (or `drill-etcd-<cluster>`), cut to a CronJob's 52 characters with a digest when longer."""
    name = f"{PREFIX}{what}"
    if len(name) <= 52:
        return name
    return f"{name[:46]}-{hashlib.sha256(what.encode()).hexdigest()[:5]}"


_RESTRICTED = {
    "runAsNonRoot": True,
    "runAsUser": NONROOT,
    "runAsGroup": NONROOT,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


# A volume drill reading an NFS target runs as VolSync's mover wrote it: the mover sets no user unless privileged
# (volsync v0.16.0 internal/controller/mover/restic/mover.go:489-495 drops every capability, :590-600 sets
# runAsUser 0 only for a privileged mover), so it runs as its image's user, root (the image sets no USER), and
# restic makes the repository's files owner-only (restic v0.18.1 internal/backend/util/paths.go:12 DefaultModes: 0600
# and folders 0700; the local backend then drops the write bits, internal/backend/local/local.go:195). As NONROOT without DAC_OVERRIDE the drill could read none of them on a no_root_squash export, and on
# a root_squash one only if the NAS's anonymous user were 65534; as root it is the
# mover's owner, or squashed to the same user as the mover. Not checked on a real NAS (tests/test_drill.py checks the
# uid and the read-only mount).
# It restores as root, so it keeps VolSync's privileged mover's three capabilities (volsync v0.16.0
# internal/controller/mover/restic/mover.go:595-599: DAC_OVERRIDE, CHOWN, FOWNER, "so that restores work"): at euid 0
# restic v0.18.1 reports every metadata error (internal/fs/node.go:238 ignores permission errors only when euid > 0)
# and ends the restore with exit 1 (cmd/restic/cmd_restore.go:253-254). Without CHOWN the lchown of any file not
# root's fails (node.go:252); without FOWNER the timestamps and chmod of a file it has just given away (node.go:270,
# 281); without DAC_OVERRIDE a user.* xattr on it (node_xattr.go:40-63 turns EACCES into an error). So without them
# the drill fails for any app whose files are not 0:0: a non-root image, any fsGroup. All three are in Pod Security
# `baseline`'s allowed capabilities (k8s.io/pod-security-admission v0.35.1 policy/check_capabilities_baseline.go:62-76),
# which the app namespaces enforce; baseline does not restrict runAsUser 0.
_AS_THE_MOVER = {
    "runAsNonRoot": False,
    "runAsUser": 0,
    "runAsGroup": 0,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"], "add": ["CHOWN", "DAC_OVERRIDE", "FOWNER"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _cronjob(stack: StackConfig, name: str, namespace: str, what: str, kind: str, pod: dict[str, Any]) -> dict[str, Any]:
    labels = {**MANAGED_BY, LABEL: what, KIND_LABEL: kind}
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "schedule": settings(stack).schedule,
            "concurrencyPolicy": "Forbid",
            "successfulJobsHistoryLimit": 1,
            "failedJobsHistoryLimit": 1,
            "jobTemplate": {
                "metadata": {"labels": labels},
                "spec": {
                    # A failed drill is a failure to report, not to retry until it passes.
                    "backoffLimit": 0,
                    "activeDeadlineSeconds": DEADLINE_SECONDS,
                    # The finished Job, its pod and with it the pod's scratch claim go after this: a drill's copy of a
                    # volume never waits a week for the next run. The result stays on the CronJob (lastSuccessfulTime).
                    "ttlSecondsAfterFinished": FINISHED_TTL_SECONDS,
                    "template": {"metadata": {"labels": labels}, "spec": {"restartPolicy": "Never", **pod}},
                },
            },
        },
    }


# --- The drill's clock --------------------------------------------------------------------------------------

# How long ago a backup was made, in the images' busybox sh and awk (the restic and curl images are Alpine's): `since`
# reads an RFC 3339 time as restic writes a snapshot's (Go's time.RFC3339Nano, with the mover's offset or Z: restic
# v0.18.1 internal/restic/snapshot.go Time, marshalled by encoding/json) and talos-backup names its keys (time.RFC3339
# in UTC), and prints the seconds since, or nothing for a time it cannot read; awk's mktime reads the fields as local
# time, so the pods run with TZ=UTC (`CLOCK_ENV`) and the offset is applied here. `lasted` says a length of seconds.
# MAX_AGE (seconds) is how old the newest backup may be (stacks.data.newest_within of the backups' schedule, SCHEDULE).
CLOCK_SCRIPT = r"""since() {
  printf '%s\n' "$1" | awk -v now="$(date +%s)" '
/^[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9](\.[0-9]+)?(Z|[+-][0-9][0-9]:[0-9][0-9])$/ {
  t = mktime(substr($0, 1, 4) " " substr($0, 6, 2) " " substr($0, 9, 2) " " substr($0, 12, 2) " " substr($0, 15, 2) " " substr($0, 18, 2))
  z = substr($0, length($0) - 5)
  if (substr($0, length($0)) != "Z") { off = substr(z, 2, 2) * 3600 + substr(z, 5, 2) * 60; t += substr(z, 1, 1) == "+" ? -off : off }
  print now - t
}'
}
lasted() { echo "$(( $1 / 86400 ))d $(( $1 % 86400 / 3600 ))h $(( $1 % 3600 / 60 ))m $(( $1 % 60 ))s"; }
# `stale AGE WHAT WHY` says in $late why the newest backup is too old (or dated ahead), without stopping: a drill
# verifies that snapshot all the same (while backups are stale, a damaged repository or a lost key would otherwise
# go unseen until they resume), and fails at its end naming both (`late_or_pass`); `fail` adds it to any failure.
late=""
stale() {
  # Dated ahead of the drill's clock by more than a few minutes' skew: it would stay "the newest" and pass for ever.
  if [ "$1" -lt -300 ]; then
    late="$2 is dated $(lasted $(( -$1 ))) ahead of this drill's clock: a clock that was wrong when it was taken would hide every later backup behind it; remove that snapshot, or fix the clock"
  elif [ "$1" -gt "$MAX_AGE" ]; then
    late="$2 is $(lasted "$1") old, and backups on \"$SCHEDULE\" keep the newest under $(lasted "$MAX_AGE"): $3"
  fi
}
"""


def clock_env(schedule: str) -> list[dict[str, str]]:
    """The environment CLOCK_SCRIPT reads: the backups' schedule, how old their newest may be, and UTC for awk."""
    return [
        {"name": "SCHEDULE", "value": schedule},
        {"name": "MAX_AGE", "value": str(int(newest_within(schedule).total_seconds()))},
        {"name": "TZ", "value": "UTC"},
    ]


# --- Volumes ------------------------------------------------------------------------------------------------

# The volume drill, in the restic image's sh. Its environment: the restic Secret's (RESTIC_REPOSITORY, RESTIC_PASSWORD,
# the S3 keys), DRILL (what is drilled, for every line it prints), SCRATCH (the scratch claim) and TMPDIR.
VOLUME_SCRIPT = (
    r"""set -eu
fail() { echo "restore drill of $DRILL FAILED: $*${late:+; and $late}" >&2; exit 1; }
"""
    + CLOCK_SCRIPT
    + r"""err="$TMPDIR/restic.err"
# --no-lock here too: an NFS target is mounted read-only, where restic could not write its lock.
snapshots=$(restic snapshots --no-lock --json --latest 1 2>"$err") || fail "restic snapshots: $(tail -n 5 "$err")"
id=$(printf '%s' "$snapshots" | sed -n 's/.*"short_id":"\([0-9a-f]*\)".*/\1/p')
[ -n "$id" ] || fail "the repository $RESTIC_REPOSITORY has no snapshot"
made=$(printf '%s' "$snapshots" | sed -n 's/.*"time":"\([^"]*\)".*/\1/p')
age=$(since "$made")
[ -n "$age" ] || fail "snapshot $id's time, \"$made\", is not one the drill can read"
stale "$age" "the newest snapshot, $id of $made," "its backups have stopped; look with: $LOOK"
# --no-lock: VolSync's backups take the repository's lock; a drill must not fail them, nor wait on them.
restic check --no-lock >/dev/null 2>"$err" || fail "restic check: $(tail -n 5 "$err")"
# Into a folder of its own: the scratch claim's root is a new filesystem's, with what mkfs put there (ext4's
# lost+found, which VolSync's backup excludes: volsync v0.16.0 mover-restic/entry.sh:157), never part of the snapshot.
restored="$SCRATCH/restored"
restic restore "$id" --no-lock --target "$restored" >/dev/null 2>"$err" || fail "restic restore of snapshot $id: $(tail -n 5 "$err")"
stats=$(restic stats "$id" --no-lock --json --mode restore-size 2>"$err") || fail "restic stats of snapshot $id: $(tail -n 5 "$err")"
want_files=$(printf '%s' "$stats" | sed -n 's/.*"total_file_count":\([0-9]*\).*/\1/p')
want_bytes=$(printf '%s' "$stats" | sed -n 's/.*"total_size":\([0-9]*\).*/\1/p')
got_files=$(find "$restored" -mindepth 1 | wc -l | tr -d ' ')
got_bytes=$(find "$restored" -type f -exec stat -c '%i %s' {} + | awk '!seen[$1]++ { sum += $2 } END { print sum + 0 }')
[ "$got_files" = "${want_files:-0}" ] || fail "snapshot $id holds ${want_files:-0} files and folders; $got_files came back"
[ "$got_bytes" = "${want_bytes:-0}" ] || fail "snapshot $id holds ${want_bytes:-0} bytes; $got_bytes came back"
if [ -n "$late" ]; then
  echo "restore drill of $DRILL FAILED: $late (snapshot $id itself restores: $got_files files and folders, $got_bytes bytes, as the snapshot says; restic check passed)" >&2
  exit 1
fi
echo "restore drill of $DRILL passed: snapshot $id restored into a scratch claim, $got_files files and folders, $got_bytes bytes, as the snapshot says; restic check passed"
"""
)


def volume_cronjob(stack: StackConfig, app: App, volume: BackupVolume) -> dict[str, Any]:
    """The drill of one backed-up volume, in the app's namespace."""
    assert app.backup is not None
    what = f"{app.name} ({volume.claim})"
    mover = backup._mover(stack, volume.claim)
    volumes: list[dict[str, Any]] = [
        {
            "name": "scratch",
            "ephemeral": {
                "volumeClaimTemplate": {
                    "metadata": {"labels": {**MANAGED_BY, LABEL: app.name}},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        # The volume's class, but one that deletes the copy with the claim (plans.storage.scratch_class).
                        "storageClassName": storage.scratch_class_name(backup.volume_class(stack, volume)),
                        "resources": {"requests": {"storage": volume.size}},
                    },
                }
            },
        },
        {"name": "tmp", "emptyDir": {}},
    ]
    mounts: list[dict[str, Any]] = [{"name": "scratch", "mountPath": SCRATCH}, {"name": "tmp", "mountPath": "/tmp"}]  # noqa: S108 - an emptyDir
    for extra in mover.get("moverVolumes", []):
        # An NFS target: mounted where the restic Secret's repository path says, as VolSync's mover mounts it, but
        # read-only: a drill reads the backups, never writes them (its restic commands take no lock).
        volumes.append({"name": "target", **extra["volumeSource"]})
        mounts.append({"name": "target", "mountPath": f"/mnt/{extra['mountPath']}", "readOnly": True})
    container = {
        "name": "drill",
        "image": RESTIC_IMAGE,
        "command": ["/bin/sh", "-c", VOLUME_SCRIPT],
        "envFrom": [{"secretRef": {"name": backup.restic_secret_name(volume.claim)}}],
        "env": [
            {"name": "DRILL", "value": what},
            {"name": "LOOK", "value": f"kubectl -n {app.namespace} describe replicationsource {volume.claim}"},
            *clock_env(app.backup.schedule),
            {"name": "SCRATCH", "value": SCRATCH},
            {"name": "TMPDIR", "value": "/tmp"},  # noqa: S108 - an emptyDir
            {"name": "RESTIC_CACHE_DIR", "value": "/tmp/cache"},  # noqa: S108 - an emptyDir
        ],
        "securityContext": _AS_THE_MOVER if mover.get("moverVolumes") else _RESTRICTED,
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        "volumeMounts": mounts,
    }
    pod = {"securityContext": {"fsGroup": NONROOT}, "containers": [container], "volumes": volumes}
    return _cronjob(stack, cronjob_name(volume.claim), app.namespace, app.name, "volume", pod)


def _fetch_env(stack: StackConfig, where: Any, prefix: str) -> list[dict[str, str]]:
    """What FETCH_SCRIPT and the tools' build read, the same for every drill that fetches from the S3 target: the object's
    place, and the pod's working folders on its emptyDir."""
    assert stack.backup is not None
    return [
        {"name": "S3_ENDPOINT", "value": where.endpoint},
        {"name": "S3_BUCKET", "value": where.path},
        {"name": "S3_PREFIX", "value": prefix},
        {"name": "AWS_REGION", "value": stack.backup.region},
        {"name": "WORK", "value": WORK},
        {"name": "TMPDIR", "value": f"{WORK}/tmp"},  # noqa: S108 - in the pod's emptyDir
        {"name": "OUT", "value": f"{WORK}/snapshot"},
        {"name": "HOME", "value": WORK},
        {"name": "GOPATH", "value": f"{WORK}/go"},
        {"name": "GOCACHE", "value": f"{WORK}/go-cache"},
        {"name": "TOOLS", "value": TOOLS},
    ]


# --- etcd ---------------------------------------------------------------------------------------------------

# Fetch the newest snapshot under the prefix: S3's ListObjectsV2, page by page, signed by curl (AWS Signature v4);
# `pick` chooses the newest of the keys. Environment: the S3 Secret's keys, S3_ENDPOINT, S3_BUCKET, S3_PREFIX, AWS_REGION,
# DRILL, OUT (where the object goes).
FETCH_SCRIPT = r"""set -eu
fail() { echo "restore drill of $DRILL FAILED: $*" >&2; exit 1; }
# The keys reach curl as a config on its stdin (`-K -`), never on its command line, which every process of the pod
# reads in /proc: the shell's builtin printf writes them, sed quotes them as curl's config syntax wants.
s3() {
  printf '%s:%s\n' "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" | sed 's/[\\"]/\\&/g; s/^/user = "/; s/$/"/' \
    | curl -sS --fail-with-body --aws-sigv4 "aws:amz:$AWS_REGION:s3" -K - "$@"
}
keys="$TMPDIR/keys"; : >"$keys"; token=""
while :; do
  set -- --get --data-urlencode "list-type=2" --data-urlencode "prefix=$S3_PREFIX/"
  [ -z "$token" ] || set -- "$@" --data-urlencode "continuation-token=$token"
  page=$(s3 "$@" "$S3_ENDPOINT/$S3_BUCKET") || fail "listing s3 $S3_BUCKET/$S3_PREFIX/: $page"
  # One element a line (a key holds no '<': S3 escapes it).
  printf '%s' "$page" | tr '<' '\n' >"$TMPDIR/page"
  sed -n 's/^Key>//p' "$TMPDIR/page" >>"$keys"
  grep -qx 'IsTruncated>true' "$TMPDIR/page" || break
  token=$(sed -n 's/^NextContinuationToken>//p' "$TMPDIR/page")
  [ -n "$token" ] || fail "s3 said the listing goes on, with no continuation token"
done
key=$(pick <"$keys")
[ -n "$key" ] || fail "no snapshot under s3 $S3_BUCKET/$S3_PREFIX/"
echo "restore drill of $DRILL: the newest snapshot is $key"
age=$(taken "$key")
[ -n "$age" ] || fail "when $key was taken cannot be read from its name"
stale "$age" "the newest snapshot, $key," "snapshots have stopped reaching the bucket; look with: $LOOK"
[ -z "$late" ] || { why=$late; late=""; fail "$why"; }
s3 -o "$OUT" "$S3_ENDPOINT/$S3_BUCKET/$key" || fail "downloading $key"
"""
# talos-backup's keys carry an RFC 3339 time in UTC: the last in byte order is the newest; `taken` is its age.
PICK_TALOS = 'pick() { grep \'\\.snap\\.age$\' | LC_ALL=C sort | tail -n 1; }\ntaken() { t=${1%.snap.age}; since "${t#"$S3_PREFIX/$CLUSTER-"}"; }\n'
# k3s's carry the node and a Unix time (etcd-snapshot-<node>-<time>.zip): the newest by the time, whatever the node;
# the .metadata/ folder beside them is not a snapshot.
PICK_K3S = (
    "pick() { grep -v '/\\.metadata/' | grep '\\.zip$' | sed 's/^\\(.*-\\([0-9]*\\)\\.zip\\)$/\\2 \\1/' | sort -n | tail -n 1 | cut -d' ' -f2-; }\n"
    "taken() { t=${1%.zip}; t=${t##*-}; case $t in ''|*[!0-9]*) ;; *) echo $(( $(date +%s) - t )) ;; esac; }\n"
)

DECRYPT_SCRIPT = f"""set -eu
fail() {{ echo "restore drill of $DRILL FAILED: $*" >&2; exit 1; }}
arch=$(go env GOARCH)
case "$arch" in
  amd64) sum={AGE_SHA256["amd64"]} ;;
  arm64) sum={AGE_SHA256["arm64"]} ;;
  *) fail "no age binary is pinned for $arch (plans.drill.AGE_SHA256)" ;;
esac
kept="$TOOLS/age-{AGE_VERSION}-$arch"
if ! echo "$sum  $kept" | sha256sum -c - >/dev/null 2>&1; then
  # The first run, or a kept copy that is not the pinned binary: built from the modules kept on the claim (the
  # module cache's download folder is a Go module proxy of its own, `file://`), or on the first run from the Go module
  # proxy (checked against the checksum database); then checked against the pinned bytes, and kept.
  export GOMODCACHE="$TOOLS/mod" CGO_ENABLED=0
  GOPROXY="file://$TOOLS/mod/cache/download" GOSUMDB=off go install -trimpath {AGE_PACKAGE} 2>"$TMPDIR/go.err" \\
    || go install -trimpath {AGE_PACKAGE} 2>"$TMPDIR/go.err" \\
    || fail "could not build age {AGE_VERSION} (not a backup problem: its first build needs the Go module proxy): $(tail -n 5 "$TMPDIR/go.err")"
  echo "$sum  $GOPATH/bin/age" | sha256sum -c - >/dev/null 2>&1 \\
    || fail "the age built from {AGE_PACKAGE} is not the pinned binary ($sum): $(sha256sum "$GOPATH/bin/age")"
  # Two drills share the claim and its schedule, so two pods may keep it at once: each copies to a name of its own
  # and renames it into place, a rename being atomic on one file system.
  {{ new=$(mktemp "$kept.XXXXXX") && cp "$GOPATH/bin/age" "$new" && chmod 0755 "$new" && mv "$new" "$kept"; }} \\
    || fail "could not keep the age binary on the drills' claim at $kept"
fi
"$kept" --decrypt -i /identity/key -o "$WORK/snapshot.db" "$WORK/snapshot" 2>"$TMPDIR/age.err" \\
  || fail "age could not decrypt the snapshot with the stack's key: $(cat "$TMPDIR/age.err")"
"""
UNZIP_SCRIPT = """set -eu
fail() { echo "restore drill of $DRILL FAILED: $*" >&2; exit 1; }
unzip -p "$WORK/snapshot" >"$WORK/snapshot.db" 2>"$TMPDIR/unzip.err" || fail "unzip: $(cat "$TMPDIR/unzip.err")"
"""


def s3_secret_shape() -> dict[str, Any]:
    """The drill's own copy of the S3 credentials (read access is what it needs; the target's keys are what there is)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": S3_SECRET, "namespace": NAMESPACE, "labels": dict(MANAGED_BY)},
        "type": "Opaque",
    }


def age_secret(identity: str) -> dict[str, Any]:
    """The age identity that decrypts Arda's snapshots, for the drill's pod alone (`identity` is a Pulumi secret)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": AGE_SECRET, "namespace": NAMESPACE, "labels": dict(MANAGED_BY)},
        "type": "Opaque",
        "stringData": {"key": f"{identity}\n"},
    }


def namespace(stack: StackConfig) -> dict[str, Any]:
    """The drills' namespace, Pod Security `restricted` enforced, warned and audited, whatever the target: Headscale's
    drill of an NFS target reads the export through a claim (`headscale_target`), which `restricted` admits
    (k8s.io/pod-security-admission v0.35.1 policy/check_restrictedVolumes.go:47, :117-118 refuse an inline `nfs` volume)."""
    labels = {**MANAGED_BY, **{f"pod-security.kubernetes.io/{m}": "restricted" for m in ("enforce", "warn", "audit")}}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE, "labels": labels, "annotations": dict(gitops.PULUMI_OWNED)}}


# Where a homelabber sees why a cluster's snapshots stopped: talos-backup's CronJob on Arda, k3s's own on a valar.
LOOK = {
    "arda": f"kubectl -n {backup.ETCD_NAMESPACE} get cronjob {backup.TALOS_BACKUP}; kubectl -n {backup.ETCD_NAMESPACE} logs -l app.kubernetes.io/name={backup.TALOS_BACKUP}",
    "ainur": "sudo k3s etcd-snapshot list, and sudo journalctl -u k3s | grep -i snapshot, on a valar",
}


def _env(stack: StackConfig, cluster: str) -> list[dict[str, Any]]:
    assert stack.backup is not None
    where = backup.target(stack)
    return [
        {"name": "DRILL", "value": f"{cluster}'s etcd"},
        {"name": "CLUSTER", "value": stack.arda.cluster_name if cluster == "arda" else "ainur"},
        {"name": "LOOK", "value": LOOK[cluster]},
        *clock_env(stack.backup.etcd.schedule),
        *_fetch_env(stack, where, backup.etcd_prefix(stack, stack.arda.cluster_name if cluster == "arda" else "ainur")),
    ]


def etcdutl(stack: StackConfig, cluster: str) -> tuple[releases.Minor, str]:
    """The etcd minor a cluster runs, and the etcdutl image its drill restores and migrates with (stacks.data.ETCDUTL).
    Arda's is its Talos's (stacks.releases.ETCD_MINOR; stacks.data refuses a Talos whose minor has no etcdutl there).
    The Ainur's is its k3s's: 3.6 from v1.33.13, 3.5 before (stacks.day2.k3s_etcd_3_6), which 3.6's etcdutl still
    writes (its migrate takes targets from 3.5: etcdutl v3.6.5 etcdutl/migrate_command.go:90)."""
    if cluster == "arda":
        minor = releases.ETCD_MINOR[releases.minor_of(stack.arda.talos_version)]
        return minor, ETCDUTL[minor]
    assert stack.ainur is not None
    return ((3, 6) if day2.k3s_etcd_3_6(stack.ainur.k3s_version) else (3, 5)), ETCDUTL[(3, 6)]


def etcd_cronjob(stack: StackConfig, cluster: str) -> dict[str, Any]:
    """The drill of one cluster's etcd snapshots (`arda`, `ainur`), in `NAMESPACE`."""
    env = _env(stack, cluster)
    credentials = [{"secretRef": {"name": S3_SECRET}}]
    work = [{"name": "work", "mountPath": WORK}]

    def step(name: str, image: str, command: list[str], mounts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        return {
            "name": name,
            "image": image,
            "command": command,
            "env": env,
            "securityContext": _RESTRICTED,
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "1Gi"}},
            "volumeMounts": [*work, *(mounts or [])],
        }

    prepare = 'mkdir -p "$WORK/tmp"\n'
    fetch = step("fetch", CURL_IMAGE, ["/bin/sh", "-c", prepare + CLOCK_SCRIPT + (PICK_TALOS if cluster == "arda" else PICK_K3S) + FETCH_SCRIPT])
    fetch["envFrom"] = credentials
    if cluster == "arda":
        opened = step(
            "decrypt",
            GO_IMAGE,
            ["/bin/sh", "-c", prepare + DECRYPT_SCRIPT],
            [{"name": "identity", "mountPath": "/identity", "readOnly": True}, {"name": "tools", "mountPath": TOOLS}],
        )
    else:
        opened = step("unzip", CURL_IMAGE, ["/bin/sh", "-c", prepare + UNZIP_SCRIPT])
    minor, image = etcdutl(stack, cluster)
    restore = step("restore", image, ["etcdutl", "snapshot", "restore", f"{WORK}/snapshot.db", f"--data-dir={WORK}/restored"])
    # The restore copies the snapshot's storage version as it is; the schema step is what fails a snapshot the cluster's
    # etcd could not start from. etcdutl's migrate leaves a data directory at the target alone ("storage version
    # up-to-date"), moves one of an older minor up as the etcd of the target would at its start, and refuses one it has
    # no way to (a schema it does not know: "cannot create migration plan"; a downgrade past what the WAL holds):
    # etcdutl v3.7.1 etcdutl/migrate_command.go:124-157, server/storage/schema/schema.go:53-79.
    schema = step("schema", image, ["etcdutl", "migrate", f"--data-dir={WORK}/restored", f"--target-version={etcd_minor(minor)}"])
    status = step("status", image, ["etcdutl", "snapshot", "status", f"{WORK}/snapshot.db", "--write-out=json"])
    volumes: list[dict[str, Any]] = [{"name": "work", "emptyDir": {}}]
    if cluster == "arda":
        volumes.append({"name": "identity", "secret": {"secretName": AGE_SECRET, "defaultMode": 0o400}})
        volumes.append({"name": "tools", "persistentVolumeClaim": {"claimName": TOOLS_CLAIM}})
    pod = {"securityContext": {"fsGroup": NONROOT}, "initContainers": [fetch, opened, restore, schema], "containers": [status], "volumes": volumes}
    return _cronjob(stack, cronjob_name(f"etcd-{cluster}"), NAMESPACE, cluster, "etcd", pod)


# --- The KMS key ----------------------------------------------------------------------------------------------

# The KMS key's backup (plans.kms.backup_cronjob): one object per key, `<prefix>/kms/kms-key-<SHA-256 of its age
# file>.age`, written again at every upload. The drill is told the live key's object (plans.kms.backup_object of the
# file the live key gives, OBJECT), reads when it was last written from the listing's LastModified (the target's own
# clock: a pod's clock that jumped cannot make it look fresh), fetches it, decrypts it with the same identity and age as
# Arda's snapshots, and unseals the canary the live key sealed (plans.kms.canary) with it. Another key's object (one
# in use before a mistake or a rotation) is never what it checks, and never touched. S3's ListObjectsV2 with the
# object's name as the prefix, page by page; only an entry named exactly OBJECT counts. Environment: FETCH_SCRIPT's, and
# OBJECT.
KMS_KEY = "kms-key"
KMS_FETCH_SCRIPT = r"""set -eu
fail() { echo "restore drill of $DRILL FAILED: $*" >&2; exit 1; }
# The keys reach curl on its stdin, as in FETCH_SCRIPT.
s3() {
  printf '%s:%s\n' "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" | sed 's/[\\"]/\\&/g; s/^/user = "/; s/$/"/' \
    | curl -sS --fail-with-body --aws-sigv4 "aws:amz:$AWS_REGION:s3" -K - "$@"
}
made=""; token=""
while :; do
  set -- --get --data-urlencode "list-type=2" --data-urlencode "prefix=$OBJECT"
  [ -z "$token" ] || set -- "$@" --data-urlencode "continuation-token=$token"
  page=$(s3 "$@" "$S3_ENDPOINT/$S3_BUCKET") || fail "listing s3 $S3_BUCKET/$OBJECT: $page"
  # One element a line (a key holds no '<': S3 escapes it); the LastModified of the entry whose Key is OBJECT, in
  # whichever order the entry gives the two.
  printf '%s' "$page" | tr '<' '\n' >"$TMPDIR/page"
  found=$(awk -v want="$OBJECT" '
$0 == "Contents>" { k = ""; t = "" }
/^Key>/ { k = substr($0, 5) }
/^LastModified>/ { t = substr($0, 14) }
$0 == "/Contents>" && k == want { print t; exit }' "$TMPDIR/page")
  [ -z "$found" ] || made=$found
  grep -qx 'IsTruncated>true' "$TMPDIR/page" || break
  token=$(sed -n 's/^NextContinuationToken>//p' "$TMPDIR/page")
  [ -n "$token" ] || fail "s3 said the listing goes on, with no continuation token"
done
[ -n "$made" ] || fail "the live KMS key's backup, s3 $S3_BUCKET/$OBJECT, is not on the target: its uploads have not run since the key was put in place, or fail; look with: $LOOK"
echo "restore drill of $DRILL: the live key's backup is $OBJECT, last written $made"
age=$(since "$made")
[ -n "$age" ] || fail "when $OBJECT was last written, "$made", is not a time the drill can read"
stale "$age" "the live key's backup, $OBJECT," "its uploads have stopped reaching the bucket; look with: $LOOK"
[ -z "$late" ] || { why=$late; late=""; fail "$why"; }
s3 -o "$OUT" "$S3_ENDPOINT/$S3_BUCKET/$OBJECT" || fail "downloading $OBJECT"
"""
# The check, in Go's standard library only (the drill's Go image runs it, no module needed): the canary opened as the
# server's Unseal opens a blob (plans/kmsserver/main.go: a version byte, a 12-byte nonce, AES-256-GCM with "iluvatar-kms/v1
# node <uuid>" as associated data), with the key the backup gave; tests/plans/test_kms_server.py has the real server open
# the same canary.
KMS_CHECK_GO = """package main

import (
\t"bytes"
\t"crypto/aes"
\t"crypto/cipher"
\t"encoding/base64"
\t"errors"
\t"fmt"
\t"os"
\t"strings"
)

func main() {
\tif err := check(os.Args[1]); err != nil {
\t\tfmt.Fprintf(os.Stderr, "restore drill of %s FAILED: %s\\n", os.Getenv("DRILL"), err)
\t\tos.Exit(1)
\t}
\tfmt.Printf("restore drill of %s: the key from the backup unseals the canary the live key sealed\\n", os.Getenv("DRILL"))
}

func check(path string) error {
\tkey, err := os.ReadFile(path)
\tif err != nil {
\t\treturn err
\t}
\tif len(key) != 32 {
\t\treturn fmt.Errorf("the backup holds %d bytes, not a KMS key's 32", len(key))
\t}
\tblob, err := base64.StdEncoding.DecodeString(os.Getenv("CANARY"))
\tif err != nil {
\t\treturn errors.New("the canary is not base64")
\t}
\twant, err := base64.StdEncoding.DecodeString(os.Getenv("CANARY_PLAINTEXT"))
\tif err != nil {
\t\treturn errors.New("the canary's plaintext is not base64")
\t}
\tblock, err := aes.NewCipher(key)
\tif err != nil {
\t\treturn err
\t}
\taead, err := cipher.NewGCM(block)
\tif err != nil {
\t\treturn err
\t}
\thead := 1 + aead.NonceSize()
\tif len(blob) < head || blob[0] != 1 {
\t\treturn errors.New("the canary is not a sealed value of the KMS")
\t}
\tplain, err := aead.Open(nil, blob[1:head], blob[head:], []byte("iluvatar-kms/v1 node "+strings.ToLower(os.Getenv("CANARY_NODE"))))
\tif err != nil || !bytes.Equal(plain, want) {
\t\treturn errors.New("the key from the backup does not unseal the canary the live key sealed: it is not the key Arda's volumes are sealed under, and would not unlock them")
\t}
\treturn nil
}
"""
KMS_CHECK_SCRIPT = (
    'set -eu\nmkdir -p "$WORK/check"\ncat >"$WORK/check/main.go" <<\'EOF\'\n'
    + KMS_CHECK_GO
    + 'EOF\nexport CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=\ncd "$WORK/check"\ngo build -trimpath -o check main.go\nexec ./check "$WORK/snapshot.db"\n'
)


# The KMS drill's working folder, in memory: the key's age file and the key (bytes), the check's source, and Go's module
# and build caches for the check and, on a run without the kept age, for age (tens of MiB each); well under the 1Gi
# each step may use.
KMS_WORK_SIZE = "512Mi"


def kms_drill_enabled(stack: StackConfig) -> bool:
    """The KMS key's backups are drilled wherever they are written (plans.kms.backup_enabled) and drills run."""
    return enabled(stack) and kms.backup_enabled(stack)


def kms_cronjob(stack: StackConfig, canary: str, backup_object: str) -> dict[str, Any]:
    """The drill of the KMS key's backup, in `NAMESPACE`: fetch the live key's object `backup_object`
    (plans.kms.backup_object), decrypt it, unseal `canary` with it."""
    assert stack.backup is not None
    where = backup.target(stack)
    env: list[dict[str, Any]] = [
        {"name": "DRILL", "value": "the KMS key's backup"},
        {
            "name": "LOOK",
            "value": f"kubectl -n {backup.ETCD_NAMESPACE} get cronjob {kms.BACKUP_NAME}; kubectl -n {backup.ETCD_NAMESPACE} logs job/<its newest job>",
        },
        *clock_env(stack.backup.etcd.schedule),
        *_fetch_env(stack, where, kms.backup_prefix(stack)),
        {"name": "OBJECT", "value": backup_object},
        {"name": "CANARY", "value": canary},
        {"name": "CANARY_NODE", "value": kms.CANARY_NODE},
        {"name": "CANARY_PLAINTEXT", "value": base64.b64encode(kms.CANARY_PLAINTEXT).decode()},
    ]
    work = [{"name": "work", "mountPath": WORK}]

    def step(name: str, image: str, script: str, mounts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        return {
            "name": name,
            "image": image,
            "command": ["/bin/sh", "-c", 'mkdir -p "$WORK/tmp"\n' + script],
            "env": env,
            "securityContext": _RESTRICTED,
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "1Gi"}},
            "volumeMounts": [*work, *(mounts or [])],
        }

    fetch = step("fetch", CURL_IMAGE, CLOCK_SCRIPT + KMS_FETCH_SCRIPT)
    fetch["envFrom"] = [{"secretRef": {"name": S3_SECRET}}]
    # The same age, identity and kept binary as Arda's etcd drill: the key's file lands where a snapshot's would.
    decrypt = step(
        "decrypt", GO_IMAGE, DECRYPT_SCRIPT, [{"name": "identity", "mountPath": "/identity", "readOnly": True}, {"name": "tools", "mountPath": TOOLS}]
    )
    check = step("unseal", GO_IMAGE, KMS_CHECK_SCRIPT)
    volumes: list[dict[str, Any]] = [
        # tmpfs: the key decrypted into it ($WORK/snapshot.db) never reaches a disk of the worker it runs on. Its pages
        # count against the steps' memory (kubelet's emptyDir with medium Memory); the bound is KMS_WORK_SIZE.
        {"name": "work", "emptyDir": {"medium": "Memory", "sizeLimit": KMS_WORK_SIZE}},
        {"name": "identity", "secret": {"secretName": AGE_SECRET, "defaultMode": 0o400}},
        {"name": "tools", "persistentVolumeClaim": {"claimName": TOOLS_CLAIM}},
    ]
    pod = {"securityContext": {"fsGroup": NONROOT}, "initContainers": [fetch, decrypt], "containers": [check], "volumes": volumes}
    return _cronjob(stack, cronjob_name(KMS_KEY), NAMESPACE, KMS_KEY, KMS_KEY, pod)


def tools_claim(stack: StackConfig) -> dict[str, Any]:
    """Where Arda's drill keeps age and its modules between runs: Arda's default class. Pulumi does not wait for it to
    bind (plans.storage.SKIP_AWAIT): on a WaitForFirstConsumer class only the drill's first pod binds it, a week on."""
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": TOOLS_SIZE}}}
    if (chosen := default_class(stack, "arda")) is not None:
        spec["storageClassName"] = chosen
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": TOOLS_CLAIM, "namespace": NAMESPACE, "labels": dict(MANAGED_BY), "annotations": dict(storage.SKIP_AWAIT)},
        "spec": spec,
    }


def cronjobs(stack: StackConfig) -> list[dict[str, Any]]:
    """Every drill of the stack: each backed-up volume's, then each cluster's etcd."""
    return [*(volume_cronjob(stack, a, v) for a, v in volume_drills(stack)), *(etcd_cronjob(stack, c) for c in etcd_drills(stack))]


# --- Headscale's state ----------------------------------------------------------------------------------------

# Headscale's state (plans.remote_access, `state_backup_*`) is backed up from the Ainur by an init container of its own
# pod, into a restic repository of its own on the backup target; its drill runs on Arda, away from what it backs up,
# as the etcd drills do, in NAMESPACE with a copy of that repository's Secret. It is the volume drill's script (the
# newest snapshot no older than its schedule allows, `restic check`, the restore counted and summed against restic's
# stats) and one check more: the restore holds Headscale's database, non-empty. A snapshot of another folder restores
# and counts right, and is no Headscale that comes back. On an NFS target the drill reads the export as the writer:
# the init container inherits Headscale's pod's user and group, HEADSCALE_WRITER (plans.remote_access
# headscale_manifests' pod securityContext; the container sets none), and restic makes the repository's files and
# folders owner-only (restic v0.18.1 internal/backend/util/paths.go:12), so only that uid reads them, whatever the
# export squashes (root_squash maps only uid 0). It needs no capability: restic at euid > 0 ignores the permission
# errors of restoring ownership (internal/fs/node.go:238). The export comes through a claim bound to a static,
# read-only PersistentVolume (`headscale_target`), so NAMESPACE stays Pod Security `restricted`.
HEADSCALE = "headscale"
HEADSCALE_WRITER = 65532
HEADSCALE_TARGET = "drill-headscale-target"
_AS_HEADSCALE = {**_RESTRICTED, "runAsUser": HEADSCALE_WRITER, "runAsGroup": HEADSCALE_WRITER}
HEADSCALE_KIND = "state"
HEADSCALE_SECRET = "drill-headscale-restic"  # noqa: S105 - a Secret's name
# The scratch folder's bound: the state claim's size (plans.remote_access.headscale_manifests).
HEADSCALE_SCRATCH = "1Gi"
_PASSED = 'if [ -n "$late" ]; then'
# A `restic forget --prune` that fails after each backup (a stale exclusive lock left by a prune the init container's
# timeout killed: backups still take their shared lock) is only a line in that container's log, and the repository
# grows for good. restic's policy keeps a snapshot only while a bucket of its kind has a count left, one count a
# snapshot kept (restic internal/restic/snapshot_policy.go ApplyPolicy), so a repository forgotten with --keep-daily 7
# --keep-weekly 4 --keep-monthly 6 holds at most 17 snapshots of its host; one more is a backup under way, taken and
# not forgotten yet. More than that, the forgets are failing: the drill fails, and RestoreDrillFailed says so.
HEADSCALE_KEEP_MOST = sum(remote_access.STATE_BACKUP_KEEP.values()) + 1
_FORGOTTEN = r"""kept=$(restic snapshots --no-lock --json --host "$HOST" 2>"$err" | grep -o '"short_id"' | wc -l | tr -d ' ')
[ "$kept" -le "$KEEP_MOST" ] || fail "the repository holds $kept snapshots of $HOST, and its forget policy ($KEEP) keeps at most $(( KEEP_MOST - 1 )) and one a backup under way: restic forget --prune is failing after each backup, and the repository grows; look with: $LOOK"
"""
HEADSCALE_SCRIPT = VOLUME_SCRIPT.replace(
    _PASSED,
    '[ -s "$restored/db.sqlite" ] || fail "snapshot $id holds no db.sqlite, or an empty one: it is not Headscale\'s state (its devices, keys and users)"\n'
    + _FORGOTTEN
    + _PASSED,
    1,
).replace("restored into a scratch claim", "restored into a scratch folder")


def headscale_drilled(stack: StackConfig) -> bool:
    """Headscale's state is drilled where the drills run and Headscale runs: on an S3 target with the repository's keys,
    on an NFS one through the export, as the volume drills read theirs (`headscale_cronjob`)."""
    remote = stack.remote_access
    return enabled(stack) and remote is not None and remote.headscale is not None and remote_access.state_backup_enabled(stack)


def headscale_secret(stack: StackConfig, password: str, s3: tuple[str, str] | None) -> dict[str, Any]:
    """The drill's copy of the state repository's Secret (plans.remote_access.state_backup_secret), in NAMESPACE on Arda
    (`password` and `s3` are Pulumi secrets at run time)."""
    secret = remote_access.state_backup_secret(stack, password, s3)
    secret["metadata"] = {"name": HEADSCALE_SECRET, "namespace": NAMESPACE, "labels": dict(MANAGED_BY)}
    return secret


def headscale_cronjob(stack: StackConfig) -> dict[str, Any]:
    """The drill of Headscale's state backup, `drill-headscale` in NAMESPACE: the newest snapshot, no older than the
    state backup's schedule allows (remote_access.STATE_BACKUP_SCHEDULE), restored into a scratch folder and checked."""
    mounts: list[dict[str, Any]] = [{"name": "scratch", "mountPath": SCRATCH}, {"name": "tmp", "mountPath": "/tmp"}]  # noqa: S108 - an emptyDir
    container: dict[str, Any] = {
        "name": "drill",
        "image": RESTIC_IMAGE,
        "command": ["/bin/sh", "-c", HEADSCALE_SCRIPT],
        "envFrom": [{"secretRef": {"name": HEADSCALE_SECRET}}],
        "env": [
            {"name": "DRILL", "value": "Headscale's state"},
            {
                "name": "LOOK",
                "value": f"kubectl -n {remote_access.NAMESPACE} logs deploy/{remote_access.HEADSCALE} -c {remote_access.STATE_BACKUP}, "
                f"and kubectl -n {remote_access.NAMESPACE} get cronjob {remote_access.STATE_BACKUP}, on the Ainur",
            },
            *clock_env(remote_access.STATE_BACKUP_SCHEDULE),
            {"name": "HOST", "value": remote_access.STATE_BACKUP_HOST},
            {"name": "KEEP", "value": remote_access.keep_flags()},
            {"name": "KEEP_MOST", "value": str(HEADSCALE_KEEP_MOST)},
            {"name": "SCRATCH", "value": SCRATCH},
            {"name": "TMPDIR", "value": "/tmp"},  # noqa: S108 - an emptyDir
            {"name": "RESTIC_CACHE_DIR", "value": "/tmp/cache"},  # noqa: S108 - an emptyDir
        ],
        "securityContext": _RESTRICTED,
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        "volumeMounts": mounts,
    }
    volumes: list[dict[str, Any]] = [{"name": "scratch", "emptyDir": {"sizeLimit": HEADSCALE_SCRATCH}}, {"name": "tmp", "emptyDir": {}}]
    pod_context: dict[str, Any] = {"fsGroup": NONROOT}
    if backup.target(stack).kind == "nfs":
        # The export where Headscale's init container writes (plans.remote_access.state_repository, /mnt/<MOUNT>), read
        # only, as that writer (see HEADSCALE_WRITER), through the claim of `headscale_target`.
        volumes.append({"name": "target", "persistentVolumeClaim": {"claimName": HEADSCALE_TARGET, "readOnly": True}})
        mounts.append({"name": "target", "mountPath": f"/mnt/{backup.MOUNT}", "readOnly": True})
        container["securityContext"] = _AS_HEADSCALE
        pod_context = {"fsGroup": HEADSCALE_WRITER}
    pod = {"securityContext": pod_context, "containers": [container], "volumes": volumes}
    return _cronjob(stack, cronjob_name(HEADSCALE), NAMESPACE, HEADSCALE, HEADSCALE_KIND, pod)


def headscale_target(stack: StackConfig) -> list[dict[str, Any]]:
    """The NFS export, for Headscale's drill on an NFS target: a static PersistentVolume, read only (the kubelet mounts
    it `ro`) and kept when its claim goes, reserved for the claim in NAMESPACE (claimRef), and that claim, bound to it
    by name with no class (no provisioner makes it). None on an S3 target."""
    if not headscale_drilled(stack) or backup.target(stack).kind != "nfs":
        return []
    size = {"storage": HEADSCALE_SCRATCH}  # nothing allocates it: a bound the claim and the volume must agree on
    name = f"{NAMESPACE}-{HEADSCALE_TARGET}"
    volume: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name, "labels": dict(MANAGED_BY)},
        "spec": {
            "capacity": size,
            "accessModes": ["ReadOnlyMany"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "nfs": {"server": backup.nfs_server(stack), "path": backup.target(stack).path, "readOnly": True},
            "claimRef": {"namespace": NAMESPACE, "name": HEADSCALE_TARGET},
        },
    }
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": HEADSCALE_TARGET, "namespace": NAMESPACE, "labels": dict(MANAGED_BY)},
        "spec": {"accessModes": ["ReadOnlyMany"], "storageClassName": "", "volumeName": name, "resources": {"requests": size}},
    }
    return [volume, claim]


# --- Grafana ------------------------------------------------------------------------------------------------

# The drills' series: kube-state-metrics v2.19.0 internal/store/cronjob.go (lines 41, 154, 176) with the LABEL it is
# allowed to copy (plans.monitoring's `--metric-labels-allowlist`).
DRILL_LABEL_SERIES = 'kube_cronjob_labels{label_iluvatar_dev_drill!=""}'
LAST_GOOD = "kube_cronjob_status_last_successful_time"


def dashboard() -> dict[str, Any]:
    """The last good restore of each backup, and how long ago it was."""
    per_drill = f"on(namespace, cronjob) group_left(label_iluvatar_dev_drill, label_iluvatar_dev_drill_kind) {DRILL_LABEL_SERIES}"
    prometheus = {"type": "prometheus", "uid": "${datasource}"}
    return {
        "uid": "iluvatar-restore-drills",
        "title": "Restore drills",
        "tags": ["iluvatar", "backup"],
        "timezone": "utc",
        "time": {"from": "now-30d", "to": "now"},
        "schemaVersion": 39,
        "templating": {
            "list": [{"name": "datasource", "type": "datasource", "query": "prometheus", "current": {"text": "prometheus", "value": "prometheus"}}]
        },
        "panels": [
            {
                "id": 1,
                "type": "table",
                "title": "Last good restore of each backup",
                "gridPos": {"h": 10, "w": 24, "x": 0, "y": 0},
                "datasource": prometheus,
                "fieldConfig": {"defaults": {"unit": "dateTimeAsIso"}, "overrides": []},
                "targets": [
                    {"refId": "A", "datasource": prometheus, "expr": f"{LAST_GOOD} * 1000 * {per_drill}", "format": "table", "instant": True}
                ],
            },
            {
                "id": 2,
                "type": "timeseries",
                "title": "Time since the last good restore",
                "gridPos": {"h": 10, "w": 24, "x": 0, "y": 10},
                "datasource": prometheus,
                "fieldConfig": {"defaults": {"unit": "s"}, "overrides": []},
                "targets": [
                    {
                        "refId": "A",
                        "datasource": prometheus,
                        "expr": f"(time() - {LAST_GOOD}) * {per_drill}",
                        "legendFormat": "{{label_iluvatar_dev_drill}} ({{label_iluvatar_dev_drill_kind}})",
                    }
                ],
            },
        ],
    }


def dashboards(stack: StackConfig) -> dict[str, str]:
    return {"restore-drills.json": json.dumps(dashboard(), indent=2, sort_keys=True)} if enabled(stack) else {}
