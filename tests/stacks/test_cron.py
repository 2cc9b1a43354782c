"""Every schedule the stack renders is read as its consumer reads it: robfig/cron v3.0.1's standard parser.

A drill's and talos-backup's CronJob (the API server's validation and the CronJob controller), a ReplicationSource's
trigger (VolSync v0.16.0's CRD pattern and controller) and k3s's etcd-snapshot-schedule-cron all parse with it;
tools/cron-check runs it. stacks.data.cron_problem is what `iluvatar validate` runs: each schedule it accepts, the real
parser accepts for every consumer and runs with the same longest gap (stacks.data.longest_gap, which the drill's
staleness alert is built on); each one the parser refuses, it refuses.
"""

from __future__ import annotations

import datetime
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from stacks.data import BACKUP_GAP, DRILL_GAP, cron_problem, longest_gap, rare_months
from stacks.data_model import AppBackup, Backup, Drill
from tools import gotools

ROOT = Path(__file__).resolve().parent.parent.parent


def _schedules(value: Any) -> list[str]:
    """Every `schedule` (and `...schedule` path's value) in a parsed fixture file."""
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and key.endswith("schedule") and isinstance(item, str):
                found.append(item)
            else:
                found += _schedules(item)
    elif isinstance(value, list):
        for item in value:
            found += _schedules(item)
    return found


def _corpus() -> list[str]:
    found = [Backup(target="s3://b.example/x").etcd.schedule, Drill().schedule]
    for name in ("Pulumi.homelab.yaml", "tests/fixtures/valid_stacks.yaml", "tests/fixtures/invalid_stacks.yaml"):
        # libyaml's parser: the module is read by every test process as it collects, and the pure-Python one took 0.4 s of
        # it for the invalid stacks' 290 KB (the same data).
        found += _schedules(yaml.load((ROOT / name).read_text(), Loader=yaml.CSafeLoader))
    # What users write beside the fixtures' own: crontab(5) spellings the parser reads differently or not at all.
    found += [
        "0 3 * * 7",  # crontab(5)'s Sunday: robfig's day of week is 0-6
        "0 3 * * 0-7",
        "0 3 * * 5-7",
        "* 6 * * 0",  # meant 06:00: every minute of that hour
        "*/1 3 * * *",
        "* * * * *",
        "0 3 31 2 *",  # never
        "0 0 29 2 *",  # once in four years
        "0 3 30 2,4 *",  # the 30th of April only
        "0 3 31 2,4 *",  # never: the fix is the 28th
        "0 3 28 2,4 *",
        "0 3 28 2 *",
        "0 3 * * mon",  # names: the API server takes them, VolSync's CRD does not
        "0 3 * jan *",
        "@midnight",  # robfig's, not VolSync's
        "@every 6h",
        "@daily",
        "@weekly",
        "@hourly",
        "@yearly",
        "CRON_TZ=UTC 0 3 * * *",
        "TZ=UTC 0 3 * * *",
        "0 3 ? * *",
        "0 24 * * *",
        "60 3 * * *",
        "0 3 0 * *",
        "0 3 * 13 *",
        "0 3 * * 1-5",
        "0 3 1,15 * 1",
        "5/15 * * * *",
        "0 */0 * * *",
        "0 5-3 * * *",
        "45 2 * * 5-1",
        "45 2 * * 0,1,5,6",
        "0 0 * * *",
        "0 3 1 * *",
        "0 3 * 12 *",
        "0 3 * *",
        "0 3 * * * *",
        "15,45 */2 * * 1-5",
        "0 3 1-7 * 0",
        # Blanks as typed: the text is rendered as written, and neither consumer trims it.
        "0  2 * * *",  # aligned by hand: VolSync's pattern takes one blank between fields
        " 0 2 * * *",
        "0 2 * * * ",
        "0\t2 * * *",
        "@daily ",  # robfig reads a descriptor whole
        " @daily",
        # crontab(5)'s Sunday 7 in a range or a list, and the fixes validate gives for them.
        "15 2 * * 1-7",
        "15 2 * * *",
        "0 3 * * 0,5,6",
        "0 3 * * 7,1",
        "0 3 * * 0,1",
        # A range with a step: robfig/cron's (doc.go "3-59/15"), not VolSync's pattern.
        "0 0-23/4 * * *",
        "0 4 * * 1-5/2",
        "5-59/15 * * * *",
        "0 4 * * 1,3,5",  # the fix validate gives for 1-5/2 in an app's backup
        # Characters outside ASCII: a no-break space copied from a web page, full-width digits an IME types. Go's regexp
        # (VolSync's pattern) and strconv.Atoi (robfig's numbers) take ASCII only; robfig splits at any Unicode blank.
        "10\u00a02 * * *",
        "10 \uff12 * * *",
        "0 \uff13 * * *",
        "10 2 * * *",
        "0 3 * * *",
        "0,30, 2 * * *",  # a blank after a comma: an empty item robfig drops, VolSync's pattern refuses; the fix drops it
        "0,,30 2 * * *",  # an empty item VolSync's pattern passes (five fields after it) and robfig drops
        "0 2 * * 1,,3",
        ",0 2 * * *",
        "0 , * * *",  # a field of commas alone: robfig reads no item there, and it never runs
        "0,30 2 * * *",
        "0 2 1 13 *",  # the nearest month, 12, runs once a year: the fix runs every month
        "0 2 1 12 *",
        "0 2 1 * *",
    ]
    return sorted(set(found))


CORPUS = _corpus()


@pytest.fixture(scope="module")
def parsed() -> dict[str, dict[str, Any]]:
    result = subprocess.run(
        [str(gotools.build("cron-check"))], input=json.dumps({"schedules": CORPUS}), capture_output=True, text=True, timeout=120, check=True
    )
    return dict(zip(CORPUS, json.loads(result.stdout)["results"], strict=True))


def test_the_corpus_holds_every_kind() -> None:
    assert len(CORPUS) >= 40


@pytest.mark.parametrize("schedule", CORPUS)
def test_validate_reads_a_schedule_as_robfig_cron_does(schedule: str, parsed: dict[str, dict[str, Any]]) -> None:
    real = parsed[schedule]
    problem = cron_problem(schedule)
    if problem is None:
        # Taken by the CronJob's API server and controller and by VolSync alike, and run as validate reckons.
        assert (real["cronjob"], real["volsync"]) == ("", "")
        assert real["days"] >= 2
        assert longest_gap(schedule) == datetime.timedelta(minutes=real["longestGapMinutes"])
    elif real["cronjob"] or real["volsync"]:
        assert problem.startswith(schedule)
    else:
        # The parser takes it, validate does not: it runs every minute, never, or is a spelling VolSync's CRD refuses.
        assert real["days"] < 2 or "every minute" in problem or "not a number" in problem or "@" in schedule or "TZ" in schedule, problem


@pytest.mark.parametrize("schedule", CORPUS)
def test_a_cronjobs_schedule_is_read_as_robfig_cron_reads_it(schedule: str, parsed: dict[str, dict[str, Any]]) -> None:
    # A schedule only a CronJob and k3s read (etcd snapshots, the drills): VolSync's pattern is not theirs.
    problem = cron_problem(schedule, volsync=False)
    if problem is None:
        assert parsed[schedule]["cronjob"] == ""
        assert parsed[schedule]["days"] >= 2
        assert longest_gap(schedule) == datetime.timedelta(minutes=parsed[schedule]["longestGapMinutes"])
    elif parsed[schedule]["cronjob"]:
        assert problem.startswith(schedule)


def test_midnight_is_a_cronjobs_not_volsyncs(parsed: dict[str, dict[str, Any]]) -> None:
    # robfig's @midnight is its @daily (parser.go:400 at v3.0.1); VolSync's CRD pattern has no @midnight.
    assert parsed["@midnight"]["cronjob"] == ""
    assert parsed["@midnight"]["volsync"] != ""
    assert cron_problem("@midnight", volsync=False) is None
    assert cron_problem("@midnight") == (
        "@midnight: robfig/cron (a CronJob's) reads it as @daily, but VolSync's CRD takes only @yearly, @annually, @monthly, "
        "@weekly, @daily and @hourly (api/v1alpha1/replicationsource_types.go:50 at v0.16.0); write @daily"
    )


def test_an_empty_list_item_is_refused_only_where_volsyncs_pattern_refuses_it(parsed: dict[str, dict[str, Any]]) -> None:
    # robfig/cron drops an empty item (parser.go:238 at v3.0.1): a CronJob and k3s read the items written, and so does
    # VolSync's controller wherever its CRD pattern lets the schedule through.
    for schedule in ("0,30, 2 * * *", "0,,30 2 * * *", "0 2 * * 1,,3", ",0 2 * * *"):
        assert parsed[schedule]["cronjob"] == ""
        assert cron_problem(schedule, volsync=False) is None
        assert cron_problem(schedule, volsync=False, etcd=True) is None
        assert (cron_problem(schedule) is None) == (parsed[schedule]["volsync"] == ""), schedule
    assert cron_problem("0,,30 2 * * *") is None
    assert cron_problem("0 2 * * 1,,3") is not None


def test_a_schedule_the_parser_refuses_is_refused(parsed: dict[str, dict[str, Any]]) -> None:
    refused = sorted(s for s, r in parsed.items() if r["cronjob"] or r["volsync"])
    assert "0 3 * * 7" in refused and "0 3 * * 0-7" in refused
    assert [s for s in refused if cron_problem(s) is None] == []


@pytest.mark.parametrize(
    ("schedule", "problem"),
    [
        ("0 3 * * 7", "0 3 * * 7: 7 is outside the day of week field's 0-6 (VolSync reads Sunday as 0 only); write 0 3 * * 0"),
        ("* 6 * * 0", "* 6 * * 0: the minute field * runs it every minute of hour 6, 60 times in a row; to run it once at 06:00, write 0 6 * * 0"),
        ("* * * * *", "* * * * *: the minute field * runs it every minute, all day; write a minute (e.g. 0 * * * * for once an hour)"),
        (
            "0 3 31 2 *",
            "0 3 31 2 *: its day of month and month never meet in 2026 and 2027 (e.g. 31 in February, 29 February), so it never runs; "
            "each of its months has a day 28 every year, but 0 3 28 2 * runs only in February, up to 365 days apart, so every month is likely "
            "meant; write 0 3 28 * *",
        ),
    ],
)
def test_the_messages(schedule: str, problem: str) -> None:
    assert cron_problem(schedule) == problem


@pytest.mark.parametrize(
    ("schedule", "problem"),
    [
        ("15 2 * * 1-7", "15 2 * * 1-7: 7 is outside the day of week field's 0-6 (VolSync reads Sunday as 0 only); write 15 2 * * *"),
        ("0 3 * * 5-7", "0 3 * * 5-7: 7 is outside the day of week field's 0-6 (VolSync reads Sunday as 0 only); write 0 3 * * 0,5,6"),
        ("0 3 * * 7,1", "0 3 * * 7,1: 7 is outside the day of week field's 0-6 (VolSync reads Sunday as 0 only); write 0 3 * * 0,1"),
        ("0 3 * * 7,x", "0 3 * * 7,x: 7 is outside the day of week field's 0-6 (VolSync reads Sunday as 0 only); write Sunday as 0"),
        (
            "0  2 * * *",
            "0  2 * * *: VolSync's CRD refuses more than one blank between two fields (its pattern allows one, "
            "api/v1alpha1/replicationsource_types.go:50 at v0.16.0); write 0 2 * * *",
        ),
        ("@daily ", "@daily : robfig/cron reads a descriptor whole, blanks included, and knows no '@daily '; write @daily"),
        ("0 24 * * *", "0 24 * * *: 24 is outside the hour field's 0-23 (midnight is hour 0); write 0 0 * * *"),
        (
            "0 3 31 2,4 *",
            "0 3 31 2,4 *: its day of month and month never meet in 2026 and 2027 (e.g. 31 in February, 29 February), so it never "
            "runs; each of its months has a day 28 every year, but 0 3 28 2,4 * runs only in February and April, up to 306 days apart, so every "
            "month is likely meant; write 0 3 28 * *",
        ),
        (
            "0 4 * * 1-5/2",
            "0 4 * * 1-5/2: VolSync's CRD takes a number, a list of numbers, a range, n/step or */step in each field (its pattern, "
            "api/v1alpha1/replicationsource_types.go:50 at v0.16.0), not 0 4 * * 1-5/2; write 0 4 * * 1,3,5",
        ),
        ("60 3 * * *", "60 3 * * *: 60 is outside the minute field's 0-59 (minute 60 is the next hour's 0); write 0 3 * * *"),
        ("0 3 0 * *", "0 3 0 * *: 0 is outside the day of month field's 1-31 (days of the month count from 1); write 0 3 1 * *"),
        (
            "0 3 * 13 *",
            "0 3 * 13 *: 13 is outside the month field's 1-12; 0 3 * 12 * would run only in December; to run in every month, write 0 3 * * *",
        ),
        (
            "0 2 1 13 *",
            "0 2 1 13 *: 13 is outside the month field's 1-12; 0 2 1 12 * would run only in December; to run in every month, write 0 2 1 * *",
        ),
        (
            "0,30, 2 * * *",
            "0,30, 2 * * *: the minute field 0,30, has an empty item (a comma with nothing on one side), which robfig/cron drops "
            "(parser.go:238 at v3.0.1) but VolSync's CRD refuses (its pattern takes a list as numbers between commas, "
            "api/v1alpha1/replicationsource_types.go:50 at v0.16.0); write 0,30 2 * * *",
        ),
        (
            "10\u00a02 * * *",
            "10\u00a02 * * *: U+00A0 NO-BREAK SPACE at position 3 is not ASCII: VolSync's CRD pattern "
            "(api/v1alpha1/replicationsource_types.go:50 at v0.16.0), which the API server checks with Go's regexp, where \\d is [0-9] "
            "and \\s [\\t\\n\\f\\r ], takes ASCII digits and blanks only, so the ReplicationSource is refused and the app is not backed "
            "up; write 10 2 * * *",
        ),
        ("0 */0 * * *", "0 */0 * * *: the hour field's step 0 is not a whole number above 0; write 0 * * * *"),
        ("*/0 * * * *", "*/0 * * * *: the minute field's step 0 is not a whole number above 0; write 0 * * * *"),
        ("0 3 */0 * *", "0 3 */0 * *: the day of month field's step 0 is not a whole number above 0; write 0 3 * * *"),
        ("0 3 * */0 *", "0 3 * */0 *: the month field's step 0 is not a whole number above 0; write 0 3 * * *"),
        ("0 3 * * 1-5/0", "0 3 * * 1-5/0: the day of week field's step 0 is not a whole number above 0; write 0 3 * * 1-5"),
        ("5/0 3 * * *", "5/0 3 * * *: the minute field's step 0 is not a whole number above 0; write 5 3 * * *"),
        ("45 2 * * 5-1", "45 2 * * 5-1: the day of week range 5-1 runs backwards (cron takes no range past the field's end); write 45 2 * * 0,1,5,6"),
        (
            "0 3 25-5/3 * *",
            "0 3 25-5/3 * *: the day of month range 25-5 runs backwards (cron takes no range past the field's end); write 0 3 3,25,28,31 * *",
        ),
    ],
)
def test_the_fix_a_message_gives_is_taken(schedule: str, problem: str, parsed: dict[str, dict[str, Any]]) -> None:
    # The fix as told is accepted by validate, and (for those in the corpus) by the real parser and VolSync's pattern.
    assert cron_problem(schedule) == problem
    fix = problem.rsplit("write ", 1)[1]
    if fix != "Sunday as 0":
        assert cron_problem(fix) is None
        if fix in parsed:
            assert (parsed[fix]["cronjob"], parsed[fix]["volsync"]) == ("", "")


# Where a schedule is read: an app's backup (VolSync and robfig), the etcd snapshots' (k3s, talos-backup), a drill's CronJob.
_READERS = [(True, False, BACKUP_GAP), (False, True, BACKUP_GAP), (False, False, DRILL_GAP)]
# A fix that is a schedule (five fields or a descriptor), not advice in words; a note in parentheses may follow it.
_SCHEDULE_FIX = re.compile(r"(?P<fix>@[a-z]+|[0-9*,/-]+( [0-9*,/-]+){4})( \(.*\))?", re.ASCII)


@pytest.mark.parametrize("schedule", CORPUS)
def test_every_fix_a_refusal_gives_is_taken_and_not_warned_as_rare(schedule: str) -> None:
    # A fix said for one mistake is refused for none, and runs as often as the schedule's reader means (the rare-months
    # warning, stacks.warn._rare_months, is not set off by it unless the schedule, as robfig reads it, runs alike).
    for volsync, etcd, bound in _READERS:
        problem = cron_problem(schedule, volsync=volsync, etcd=etcd)
        if problem is None or "write " not in problem:
            continue
        said = _SCHEDULE_FIX.fullmatch(problem.rsplit("write ", 1)[1])
        if said is None:
            continue
        fix = said.group("fix")
        assert fix != schedule, problem
        assert cron_problem(fix, volsync=volsync, etcd=etcd) is None, problem
        if cron_problem(schedule, volsync=False) is not None:  # not a spelling of the same runs (`jan` as 1)
            assert rare_months(fix, bound, volsync=volsync, etcd=etcd) is None, problem


def test_volsync_takes_a_time_zone_prefix_and_validate_refuses_it_for_its_own_reckoning(parsed: dict[str, dict[str, Any]]) -> None:
    # VolSync's CRD pattern has its | outside the anchors, and its controller's parser reads CRON_TZ: it would run the
    # backup at Nairobi's 02:10. validate refuses it for its own reading in UTC, and its fix is the same time in UTC.
    written = "CRON_TZ=Africa/Nairobi 10 2 * * *"
    assert parsed[written]["volsync"] == ""
    assert parsed[written]["cronjob"] != ""  # a CronJob's API server refuses any TZ
    problem = cron_problem(written)
    assert problem is not None
    assert "VolSync takes a time-zone prefix" in problem
    fix = problem.rsplit(": ", 1)[1].removesuffix(")")
    assert fix == "10 23 * * *"
    assert cron_problem(fix) is None
    # A zone robfig/cron cannot load is refused by VolSync's controller too, and said so.
    unknown = "CRON_TZ=Africa/Wakanda 10 2 * * *"
    assert parsed[unknown]["volsync"] != ""
    assert "no time zone of the tz database" in (cron_problem(unknown) or "")


@pytest.mark.parametrize(
    "written", ["TZ=UTC 0 3 * * *", "CRON_TZ=UTC 0 3 * * *", "CRON_TZ=Etc/UTC 0 3 * * *", "TZ= 0 3 * * *", "TZ=Zulu  0 3 * * * "]
)
def test_a_utc_zone_prefix_is_read_as_the_schedule_alone_where_robfig_reads_it(written: str) -> None:
    """robfig/cron loads the zone and parses the rest, trimmed (parser.go:94-103 at v3.0.1): with UTC it runs as the five
    fields read in UTC, as Iluvatar reads them (an app's backup, VolSync's; the etcd snapshots, k3s's)."""
    volumes = [{"claim": "data", "size": "1Gi"}]
    assert AppBackup(schedule=written, volumes=volumes).schedule == "0 3 * * *"
    assert Backup(target="s3://b.example/x", etcd={"schedule": written}).etcd.schedule == "0 3 * * *"


def test_another_zone_and_a_cronjobs_prefix_are_left_as_written_for_validate_to_refuse() -> None:
    # UTC0 is a POSIX TZ string, no name of the tz database: Go's time.LoadLocation refuses it.
    for written in ("CRON_TZ=Europe/Berlin 0 3 * * *", "TZ=UTC0 0 3 * * *", "TZ=UTC"):
        assert Backup(target="s3://b.example/x", etcd={"schedule": written}).etcd.schedule == written
    # The drill's CronJobs: Kubernetes refuses any zone in a CronJob's schedule.
    assert Drill(schedule="TZ=UTC 0 3 * * *").schedule == "TZ=UTC 0 3 * * *"
