"""Warnings (stacks.warn): a valid stack that most likely does not mean what it says. Each is pinned here word for word;
`iluvatar validate` prints them (tests/iluvatar/test_cli.py) and `pulumi preview` logs them
(tests/stacks/test_pulumi_source.py). None refuses the stack."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stacks import load_stack_file
from stacks.warn import warnings
from tests.edit import edit, homelab_doc, write_stack

# The warning for the KMS's key in clear, after the value as written.
IN_CLEAR = (
    ", while Arda's machines unlock their volumes through the Ainur's KMS (iluvatar:arda.encryption): the KMS's key is then "
    "written in clear in the Ainur's datastore and in every etcd snapshot k3s uploads, so anyone with a snapshot and a "
    "stolen disk reads it; on an Ainur with one valar, set it true (k3s then seals Secrets, "
    "docs/security.md#the-ainurs-secrets-at-rest); with more, k3s's procedure for several servers is not built. On an "
    "Ainur that ran with it, the `up` that turns it off first runs k3s's disable on the first valar and rewrites every "
    "Secret in clear (ainur-secrets-off); no valar loses the flag before that is done"
)
CASES: list[tuple[str, dict[str, Any], list[str]]] = [
    # robfig/cron runs on a day either restricted day field matches: "the first Saturday" runs on 248 days in two years.
    (
        "first-saturday-is-days-1-to-7-and-every-saturday",
        {"iluvatar:apps[0].backup.schedule": "0 2 1-7 * 6"},
        [
            "iluvatar:apps[0].backup.schedule: 0 2 1-7 * 6 runs on days 1-7 of the month and on every Saturday, not only where they "
            "meet: cron runs it on a day either field matches (248 days in 2026 and 2027); for one of them, write * in the other field"
        ],
    ),
    (
        "drill-daily-over-a-weekly-backup",
        {"iluvatar:apps[1].backup.schedule": "0 2 * * 0", "iluvatar:backup.drill": {"schedule": "30 4 * * *"}},
        [
            "iluvatar:backup.drill.schedule: 30 4 * * * runs more often than the backups it restores of apps[1] jellyfin (0 2 * * 0): "
            "between two of their backups it restores the same snapshot again; run the drill as seldom as the rarest backup (e.g. "
            "the day after it), or back those up as often"
        ],
    ),
    # The drill restores the clusters' etcd snapshots too: a weekly drill over monthly snapshots restores one four times.
    (
        "drill-weekly-over-monthly-etcd-snapshots",
        {"iluvatar:backup.etcd": {"schedule": "0 3 1 * *", "keep": 28}, "iluvatar:backup.drill": {"schedule": "30 4 * * 0"}},
        [
            "iluvatar:backup.drill.schedule: 30 4 * * 0 runs more often than the backups it restores of backup.etcd (0 3 1 * *): "
            "between two of their backups it restores the same snapshot again; run the drill as seldom as the rarest backup (e.g. "
            "the day after it), or back those up as often"
        ],
    ),
    (
        "etcd-snapshots-every-ten-minutes-kept-for-hours",
        {"iluvatar:backup.etcd": {"schedule": "*/10 * * * *", "keep": 28}},
        [
            "iluvatar:backup.etcd.keep: 28 snapshots of backup.etcd.schedule */10 * * * *, which runs 144 times a day, span 4 h 40 min: "
            "a problem found the next day has no snapshot from before it; keep at least 144 (a day's), or run it less often"
        ],
    ),
    # An app's backup several times an hour ("*/5 * * * *", meant as every 5 hours): a mover and a copy each time.
    (
        "app-backup-every-five-minutes",
        {"iluvatar:apps[0].backup.schedule": "*/5 * * * *"},
        [
            "iluvatar:apps[0].backup.schedule: */5 * * * * runs 12 times an hour, 288 times on each day it runs: each run starts a "
            "VolSync mover that copies the volumes to the target, and restic's keep keeps at most one snapshot an hour "
            "(keep.hourly; one a day without it), so the others are made to be thrown away; to run it once in each hour it runs, write 0 * * * * (or "
            "0 */5 * * * for every 5 hours)"
        ],
    ),
    (
        "app-backup-twice-in-one-hour",
        {"iluvatar:apps[0].backup.schedule": "0,30 3 * * *"},
        [
            "iluvatar:apps[0].backup.schedule: 0,30 3 * * * runs 2 times an hour, 2 times on each day it runs: each run starts a "
            "VolSync mover that copies the volumes to the target, and restic's keep keeps at most one snapshot an hour "
            "(keep.hourly; one a day without it), so the others are made to be thrown away; to run it once in each hour it runs, write 0 3 * * *"
        ],
    ),
    ("app-backup-every-hour", {"iluvatar:apps[0].backup.schedule": "0 * * * *"}, []),
    (
        "cilium-chart-not-the-pinned-one",
        {"iluvatar:arda.cilium": {"version": "1.18.40"}},
        [
            "iluvatar:arda.cilium.version: 1.18.40 is not the release Iluvatar pins (1.18.4): its values are checked against "
            "1.18.4's schema, and Helm fetches 1.18.40 only at `pulumi up`, which stops there if no such chart exists; check it is "
            "one (`helm search repo cilium/cilium --versions`)"
        ],
    ),
    (
        "argocd-chart-not-the-pinned-one",
        {"iluvatar:gitops.argocd": {"version": "99.0.0"}},
        [
            "iluvatar:gitops.argocd.version: 99.0.0 is not the release Iluvatar pins (10.8.0): the values Iluvatar gives Argo CD are "
            "written and checked for 10.8.0, and Helm fetches 99.0.0 only at `pulumi up`, which stops there, after both clusters "
            "are made, if no such chart exists; check it is one (`helm search repo argo/argo-cd --versions`)"
        ],
    ),
    # What is meant reads without a warning: one day field restricted, a drill as seldom as the backups, a day's snapshots.
    ("first-of-the-month", {"iluvatar:apps[0].backup.schedule": "0 2 1 * *", "iluvatar:backup.drill": {"schedule": "30 4 2 * *"}}, []),
    ("weekly-drill-over-daily-backups", {"iluvatar:backup.drill": {"schedule": "30 4 * * 0"}}, []),
    # A backup the drill does not restore is no reason to slow it: volumes off, or neither cluster's etcd drilled.
    (
        "drill-without-volumes-over-a-weekly-backup",
        {"iluvatar:apps[1].backup.schedule": "0 2 * * 0", "iluvatar:backup.drill": {"schedule": "30 4 * * *", "volumes": False}},
        [],
    ),
    (
        "drill-of-volumes-only-over-monthly-etcd-snapshots",
        {
            "iluvatar:backup.etcd": {"schedule": "0 3 1 * *", "keep": 28},
            "iluvatar:backup.drill": {"schedule": "30 4 * * 0", "arda": False, "ainur": False},
        },
        [],
    ),
    (
        "etcd-daily-kept-one",
        {"iluvatar:backup.etcd": {"schedule": "15 3 * * *", "keep": 1}},
        [
            "iluvatar:backup.etcd.keep: 1 snapshot of backup.etcd.schedule 15 3 * * *: each run replaces the only one k3s keeps (and "
            "prunes an S3 target's copies to), so a problem found after the next run has no snapshot from before it; "
            "keep at least 2, or as many as the days you may take to notice"
        ],
    ),
    ("etcd-daily-kept-two", {"iluvatar:backup.etcd": {"schedule": "15 3 * * *", "keep": 2}}, []),
    ("etcd-every-ten-minutes-kept-a-day", {"iluvatar:backup.etcd": {"schedule": "*/10 * * * *", "keep": 144}}, []),
    # The KMS's key is a Secret on the Ainur: with their secrets encryption off it sits in clear in every etcd snapshot.
    (
        "ainur-secrets-in-clear-while-arda-unlocks-through-their-kms",
        {"iluvatar:ainur.secretsEncryption": False},
        ["iluvatar:ainur.secretsEncryption: false" + IN_CLEAR],
    ),
    # Without Arda's encryption there is no KMS key to leak: the choice is the stack's own.
    ("ainur-secrets-in-clear-without-the-kms", {"iluvatar:ainur.secretsEncryption": False, "iluvatar:arda.encryption": {"enabled": False}}, []),
    # The Ainur's claims asked encrypted where Longhorn does not run: they stay on local-path, in clear.
    (
        "ainur-claims-encrypted-without-longhorn",
        {
            "iluvatar:nodes[0].dataDisks": [],
            "iluvatar:nodes[1].dataDisks": [],
            "iluvatar:nodes[2].dataDisks": [],
            "iluvatar:storage.ainur.defaultClass": "local-path",
        },
        [
            "iluvatar:storage.ainur.encrypted: true, but Longhorn does not run on the Ainur (no Pi that boots from its card has "
            "dataDisks), so the claim of the Git mirror is made on local-path, in clear on a Pi's card; give a Pi dataDisks to "
            "have it encrypted (docs/day2.md#the-ainurs-longhorn-claims-encrypted), or write false to say it stays in clear"
        ],
    ),
]


@pytest.mark.parametrize(("name", "changes", "expected"), CASES, ids=[c[0] for c in CASES])
def test_the_warnings(name: str, changes: dict[str, Any], expected: list[str], tmp_path: Path) -> None:
    stack = load_stack_file(write_stack(tmp_path, edit(homelab_doc(), changes)), require_secrets=True)  # valid: never refused
    assert [str(w) for w in warnings(stack)] == expected


def test_the_shipped_homelab_has_none(tmp_path: Path) -> None:
    assert warnings(load_stack_file(write_stack(tmp_path, homelab_doc()), require_secrets=True)) == []


def test_a_stack_from_before_the_setting_is_warned_that_its_kms_key_is_in_clear(tmp_path: Path) -> None:
    """Absent means off (an Ainur deployed before it is not rolled onto it): said as not set, with the same fix."""
    doc = homelab_doc()
    del doc["config"]["iluvatar:ainur"]["secretsEncryption"]
    stack = load_stack_file(write_stack(tmp_path, doc), require_secrets=True)
    assert [str(w) for w in warnings(stack)] == ["iluvatar:ainur.secretsEncryption: not set (off)" + IN_CLEAR]
