"""Headscale's state backed up and restored (plans.remote_access, `state_backup_*`): what is rendered on the Ainur, and
the init container's script run for real: busybox's sh and applets as the restic image (Alpine's) has them, and a real
restic on a real repository, with a SQLite database in WAL mode as Headscale leaves it."""

# The pod's own paths (/tmp is an emptyDir there), as the manifests name them.
# ruff: noqa: S108

from __future__ import annotations

import os
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

from plans import remote_access as plan
from stacks import pins
from stacks.model import StackConfig
from tests.remote_stacks import HEADSCALE, remote_stack
from tests.tools import busybox_applets, require

APPLETS = ("sh", "timeout", "tail", "tr", "grep", "sed", "ls", "cat")
PASSWORD = "a-repository-password"


@pytest.fixture(scope="module")
def headscale() -> StackConfig:
    return remote_stack(HEADSCALE)


def _by_kind(stack: StackConfig) -> dict[tuple[str, str], dict[str, Any]]:
    return {(m["kind"], m["metadata"]["name"]): m for m in plan.headscale_manifests(stack)}


def test_headscales_pod_backs_its_state_up_before_headscale_opens_it(headscale: StackConfig) -> None:
    manifests = _by_kind(headscale)
    deployment = manifests[("Deployment", "headscale")]
    # One pod, Recreate: the init container runs only once the old Headscale is gone, so nothing writes the database.
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    [init] = pod["initContainers"]
    assert init["name"] == "state-backup"
    assert init["image"] == pins.IMAGES["restic"] == "docker.io/restic/restic:0.18.1"
    assert init["command"] == ["/bin/sh", "-c", plan.STATE_BACKUP_SCRIPT]
    assert init["envFrom"] == [{"secretRef": {"name": "headscale-restic"}}]
    assert init["volumeMounts"] == [{"name": "state", "mountPath": "/var/lib/headscale"}, {"name": "tmp", "mountPath": "/tmp"}]
    assert {e["name"]: e["value"] for e in init["env"]} == {
        "STATE": "/var/lib/headscale",
        "HOST": "headscale",
        "KEEP": "--keep-daily 7 --keep-weekly 4 --keep-monthly 6",
        "BOUND": "300",
        "TMPDIR": "/tmp",
        "RESTIC_CACHE_DIR": "/tmp/cache",
    }
    # The repository, beside the volumes' on the homelab's S3 target; the password and keys only at run time.
    shape = plan.state_backup_secret(headscale, "pw", ("id", "key"))
    assert shape["metadata"]["namespace"] == "remote-access"
    assert shape["stringData"] == {
        "RESTIC_REPOSITORY": "s3:http://192.168.0.40:9000/homelab/headscale/remote-access/headscale-state",
        "RESTIC_PASSWORD": "pw",
        "AWS_ACCESS_KEY_ID": "id",
        "AWS_SECRET_ACCESS_KEY": "key",
        "AWS_DEFAULT_REGION": "us-east-1",
    }


def test_a_daily_cronjob_restarts_headscale_for_its_backup_and_may_patch_nothing_else(headscale: StackConfig) -> None:
    manifests = _by_kind(headscale)
    assert manifests[("Role", "state-backup")]["rules"] == [
        {"apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": ["headscale"], "verbs": ["patch"]}
    ]
    assert manifests[("RoleBinding", "state-backup")]["subjects"] == [
        {"kind": "ServiceAccount", "name": "state-backup", "namespace": "remote-access"}
    ]
    cronjob = manifests[("CronJob", "state-backup")]
    assert cronjob["spec"]["schedule"] == "17 4 * * *"
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "state-backup"
    [stamp] = pod["containers"]
    assert stamp["image"] == pins.IMAGES["curl"]
    assert {e["name"]: e["value"] for e in stamp["env"]} == {
        "ANNOTATION": "iluvatar.dev/state-backup-at",
        "NAMESPACE": "remote-access",
        "DEPLOYMENT": "headscale",
        "TMPDIR": "/tmp",
    }
    # The token goes through a header file, never a command line.
    assert '-H @"$TMPDIR/auth"' in stamp["command"][2] and "Bearer $(cat" not in stamp["command"][2].split("printf")[0]


def test_no_backup_target_no_state_backup(headscale: StackConfig) -> None:
    stack = headscale.model_copy(update={"backup": None})
    manifests = _by_kind(stack)
    assert "initContainers" not in manifests[("Deployment", "headscale")]["spec"]["template"]["spec"]
    assert not [k for k in manifests if k[1] == "state-backup"]


# --- The script, for real --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def alpine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PATH of busybox's applets, as the restic image (Alpine's) has them, and restic beside them."""
    folder = busybox_applets(tmp_path_factory.mktemp("alpine"), APPLETS)
    (folder / "restic").symlink_to(require("restic"))
    return folder


def _run(headscale: StackConfig, alpine: Path, state: Path, repository: Path, password: str = PASSWORD) -> subprocess.CompletedProcess[str]:
    """The init container's script as its pod runs it: its env, the Secret's (a local repository for the target's)."""
    [init] = _by_kind(headscale)[("Deployment", "headscale")]["spec"]["template"]["spec"]["initContainers"]
    tmp = state.parent / f"{state.name}-tmp"
    tmp.mkdir(exist_ok=True)
    moved = {"/var/lib/headscale": str(state), "/tmp": str(tmp), "/tmp/cache": str(tmp / "cache")}
    env = {e["name"]: moved.get(e["value"], e["value"]) for e in init["env"]}
    shell, flag, script = init["command"]
    assert (shell, flag) == ("/bin/sh", "-c")
    return subprocess.run(
        [str(alpine / "sh"), "-c", script],
        env={"PATH": str(alpine), **env, "RESTIC_REPOSITORY": str(repository), "RESTIC_PASSWORD": password},
        capture_output=True,
        text=True,
        timeout=300,
    )


def _headscale_state(state: Path) -> None:
    """A state folder as a Headscale killed mid-run leaves it: db.sqlite in WAL mode with its -wal not yet checkpointed,
    its Noise and DERP keys."""
    state.mkdir()
    db = sqlite3.connect(state / "db.sqlite")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA wal_autocheckpoint=0")
    db.execute("CREATE TABLE nodes (id INTEGER PRIMARY KEY, hostname TEXT, node_key TEXT)")
    db.executemany("INSERT INTO nodes (hostname, node_key) VALUES (?, ?)", [("phone", "nodekey:aa"), ("laptop", "nodekey:bb")])
    db.commit()
    (state / "noise_private.key").write_text("privkey:" + os.urandom(32).hex() + "\n")
    (state / "derp_server_private.key").write_text("privkey:" + os.urandom(32).hex() + "\n")
    # Copy the files as they lie while the connection is still open (its -wal holds the rows): then close it without
    # checkpointing, as a kill would.
    snapshot = {p.name: p.read_bytes() for p in state.iterdir()}
    db.close()
    for p in state.iterdir():
        p.unlink()
    for name, content in snapshot.items():
        (state / name).write_bytes(content)
    assert (state / "db.sqlite-wal").stat().st_size > 0


def test_a_state_is_backed_up_and_a_new_empty_claim_is_filled_from_it(headscale: StackConfig, alpine: Path, tmp_path: Path) -> None:
    state, repository = tmp_path / "state", tmp_path / "repository"
    _headscale_state(state)
    backed = _run(headscale, alpine, state, repository)
    assert backed.returncode == 0, backed.stderr
    assert backed.stderr.strip() == f"iluvatar: Headscale's state: backed up to {repository}"
    # The Ainur rebuilt: a new, empty claim gets the state back before Headscale starts.
    # A new Longhorn volume is a new ext4 file system, with mkfs's lost+found: still an empty claim.
    new = tmp_path / "new-claim"
    (new / "lost+found").mkdir(parents=True)
    restored = _run(headscale, alpine, new, repository)
    assert restored.returncode == 0, restored.stderr
    assert restored.stderr.startswith("iluvatar: Headscale's state: the claim was empty: restored snapshot ")
    assert {p.name: p.read_bytes() for p in new.iterdir() if p.is_file()} == {p.name: p.read_bytes() for p in state.iterdir()}
    # And the database opens with its devices, the WAL's rows recovered.
    with sqlite3.connect(new / "db.sqlite") as db:
        assert db.execute("SELECT hostname, node_key FROM nodes ORDER BY id").fetchall() == [("phone", "nodekey:aa"), ("laptop", "nodekey:bb")]
    # A second start backs up again (a repository that exists), and forgets by the kept counts.
    again = _run(headscale, alpine, new, repository)
    assert again.returncode == 0 and again.stderr.strip() == f"iluvatar: Headscale's state: backed up to {repository}", again.stderr


def test_a_first_install_makes_the_repository_and_starts_empty(headscale: StackConfig, alpine: Path, tmp_path: Path) -> None:
    state, repository = tmp_path / "state", tmp_path / "repository"
    state.mkdir()
    done = _run(headscale, alpine, state, repository)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "iluvatar: Headscale's state: a new claim and a new repository: Headscale starts with a new state"
    assert (repository / "config").is_file() and list(state.iterdir()) == []


def test_an_empty_claim_and_an_unreadable_repository_do_not_start_an_empty_headscale(headscale: StackConfig, alpine: Path, tmp_path: Path) -> None:
    state, repository = tmp_path / "state", tmp_path / "repository"
    _headscale_state(state)
    assert _run(headscale, alpine, state, repository).returncode == 0
    new = tmp_path / "new-claim"
    new.mkdir()
    done = _run(headscale, alpine, new, repository, password="not-the-password")  # noqa: S106 - the test's wrong one
    assert done.returncode == 1
    assert f"the claim is empty and the repository {repository} is unreadable (exit 1)" in done.stderr
    assert "Headscale is not started empty (every device would have to join again)" in done.stderr
    assert list(new.iterdir()) == []


def test_a_backup_that_fails_lets_headscale_start(headscale: StackConfig, alpine: Path, tmp_path: Path) -> None:
    state, repository = tmp_path / "state", tmp_path / "repository"
    _headscale_state(state)
    assert _run(headscale, alpine, state, repository).returncode == 0
    done = _run(headscale, alpine, state, repository, password="not-the-password")  # noqa: S106 - the test's wrong one
    assert done.returncode == 0
    assert done.stderr.startswith(f"iluvatar: Headscale's state: not backed up: the repository {repository} is unreadable (exit 1)")


@pytest.mark.kube
def test_the_stamps_account_may_patch_only_the_stamp_of_headscales_deployment(headscale: StackConfig, kube_fresh: Any) -> None:
    """The real API server of the test control plane with the policy the program applies (state_backup_admission) and
    the account, Role and binding of the stamp: that account's token sends the CronJob's own patch (STATE_BACKUP_STAMP_SCRIPT's
    body and content type), which is admitted; any other change of Headscale's Deployment by it is refused; an admin
    is not bound by it. Every patch is a dry run."""
    import time

    from tools.kube_cluster import K3S, KubeClient

    cluster = kube_fresh(K3S, components=("etcd", "kube-apiserver"))
    manifests = plan.headscale_manifests(headscale)
    cluster.client.create(manifests[0])  # the namespace
    for manifest in plan.state_backup_admission(headscale):
        cluster.client.create(manifest)
    by_kind = _by_kind(headscale)
    for kind in ("ServiceAccount", "Role", "RoleBinding"):
        cluster.client.create(by_kind[(kind, "state-backup")])
    cluster.client.create(by_kind[("Deployment", "headscale")])
    status, answer = cluster.client.request(
        "POST",
        "/api/v1/namespaces/remote-access/serviceaccounts/state-backup/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
    )
    assert status == 201, answer
    stamp = KubeClient(cluster.server, cluster.pki / "ca.crt", token=answer["status"]["token"])
    path = "/apis/apps/v1/namespaces/remote-access/deployments/headscale"
    merge = "application/strategic-merge-patch+json"

    def patch(client: KubeClient, body: dict[str, Any]) -> tuple[int, str]:
        status, answer = client.request("PATCH", path, body, query={"dryRun": "All"}, content_type=merge)
        return status, answer.get("message", "") if isinstance(answer, dict) else str(answer)

    image: dict[str, Any] = {"spec": {"template": {"spec": {"containers": [{"name": "headscale", "image": "evil.example/headscale:1"}]}}}}
    refused = (
        403,
        "deployments.apps \"headscale\" is forbidden: ValidatingAdmissionPolicy 'iluvatar-backup-stamp' with binding "
        "'iluvatar-backup-stamp' denied request: state-backup may change only the pod template's annotation "
        "iluvatar.dev/state-backup-at of Deployment headscale",
    )
    # The admission plugin loads a new policy from its informer, and no API says when: the wait is for the refusal itself,
    # bounded, each probe a dry run.
    deadline = time.monotonic() + 60
    while (got := patch(stamp, image))[0] != 403:
        assert time.monotonic() < deadline, f"the API server still admits the stamp's account's new image after 60 s: {got}"
        time.sleep(0.2)
    assert got == refused
    # The CronJob's own patch, as its script sends it.
    assert patch(stamp, {"spec": {"template": {"metadata": {"annotations": {"iluvatar.dev/state-backup-at": "2026-11-27T04:17:00Z"}}}}})[0] == 200
    init: dict[str, Any] = {"spec": {"template": {"spec": {"initContainers": [{"name": "state-backup", "command": ["/bin/sh", "-c", "true"]}]}}}}
    replicas: dict[str, Any] = {"spec": {"replicas": 0}}
    other: dict[str, Any] = {"spec": {"template": {"metadata": {"annotations": {"iluvatar.dev/state-backup-at": "now", "other": "x"}}}}}
    for change in (init, replicas, other):
        assert patch(stamp, change) == refused, change
    # An admin is not the stamp's account: not matched.
    for change in (image, init, replicas, other):
        assert patch(cluster.client, change)[0] == 200, change
    stamp.close()
