"""The store alone, in a network namespace, as rendered (the real VictoriaLogs with the plan's flags): what a writer's
future-dated lines and the operator's admin calls do to it.

Lines stamped in future days: VictoriaLogs' byte bound walks its per-day partitions from the newest down and always
keeps the last two, whatever their size, then drops every older one (v1.52.1 lib/logstorage/storage.go:855-880). It
takes lines up to the day of now+futureRetention (storage.go:1071-1073, 1178-1186; at least 24h, :633): with the
default 2d, lines stamped the next two days are those last two partitions and today is dropped with the older days.
The store runs twice on one data folder: first as rendered, to take the lines; then with only its byte bound
(`-retention.maxDiskSpaceUsageBytes`) cut to a few kilobytes, so that its eviction runs on what the first run took.
The test waits for that eviction's own log line, not for a time.

The admin calls: the command docs/monitoring.md gives the operator, run as written but for where the key comes from.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import secrets
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from plans import logs as plan
from stacks import load_stack_file
from tests.edit import HOMELAB
from tests.netns import test_logs as base
from tests.netns.lan import in_ns, require_root, sh, stop
from tests.tools import require
from tools import gotools

require_root()

# This process's own namespace names (xdist may run the other logs files at once).
PREFIX = f"lg{os.getpid() % 10000}f"
BOUND = 20_000  # bytes: far under the future days' lines, so the eviction must run
REAL = 50  # lines of yesterday and of today
FORGED = 2_000  # lines of each future day
DAY = datetime.timedelta(days=1)


class Net(base.Net):
    """test_logs' LAN under this file's own names."""

    @property
    def switch(self) -> str:
        return f"{PREFIX}w"

    def ns(self, name: str) -> str:
        return f"{PREFIX}{name}"


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    require("curl")
    root = tmp_path_factory.mktemp("logs-future")
    root.chmod(0o755)
    made = Net(root, load_stack_file(HOMELAB))
    try:
        sh("ip", "netns", "add", made.switch)
        in_ns(made.switch, "ip", "link", "add", "br0", "type", "bridge")
        in_ns(made.switch, "ip", "link", "set", "br0", "up")
        made.add("a", base.STORE_IP)
        (root / "store").mkdir()
        start_store(made)
        yield made
    finally:
        for key in list(made.procs):
            stop(made.procs.pop(key))
        sh("ip", "netns", "delete", made.ns("a"), check=False)
        sh("ip", "netns", "delete", made.switch, check=False)


def start_store(net: Net, bound: int | None = None) -> None:
    """The store with the rendered flags, its data folder and key file where the test keeps them, and, given `bound`,
    its byte bound in place of the stack's."""
    auth = net.root / "auth"
    auth.mkdir(exist_ok=True)
    (auth / plan.AUTH_KEY).write_text(base.ADMIN_KEY)
    rendered = plan.store_args(net.stack)
    moved = {f"-storageDataPath={plan.STORE_DATA}": f"-storageDataPath={net.root / 'store'}"}
    moved |= {f"-{flag}=file://{plan.AUTH_DIR}/{plan.AUTH_KEY}": f"-{flag}=file://{auth / plan.AUTH_KEY}" for flag in plan.STORE_AUTH_FLAGS}
    if bound is not None:
        moved[f"-retention.maxDiskSpaceUsageBytes={plan.retention_bytes(net.stack)}"] = f"-retention.maxDiskSpaceUsageBytes={bound}"
    assert set(moved) <= set(rendered), rendered
    net.start("store", net.ns("a"), "exec " + " ".join([str(gotools.build("victoria-logs")), *(moved.get(a, a) for a in rendered)]))
    store = f"http://{base.STORE_IP}:{plan.STORE_PORT}"
    base._wait(lambda: base._get(f"{store}/health", net.ns("a")) == "OK", "the store answering /health", net, "store")


def insert(net: Net, word: str, stamp: datetime.datetime, count: int) -> None:
    """`count` lines stamped `stamp`, each with random text (so that they do not compress to nothing), into the store's
    JSON lines API; the store has taken or refused every one when its answer comes (app/vlinsert: the request's rows
    are added before it answers)."""
    body = net.root / f"{word}.json"
    line = {"_time": stamp.isoformat().replace("+00:00", "Z"), "cluster": "arda", "machine": base.TALOS_MACHINE, "service": "forged"}
    body.write_text("".join(json.dumps({**line, "_msg": f"{word} {secrets.token_hex(64)}"}) + "\n" for _ in range(count)))
    url = f"http://{base.STORE_IP}:{plan.STORE_PORT}/insert/jsonline?_stream_fields=cluster,machine,service"
    status, said = base._call(net.ns("a"), url, "-H", "Content-Type: application/stream+json", "--data-binary", f"@{body}")
    assert (status, said) == (200, ""), word


def count(net: Net, word: str, start: datetime.datetime, end: datetime.datetime) -> int:
    """The lines with `word` between `start` and `end`, as the store answers a LogsQL count over that range."""
    asked = {"query": f"{word} | stats count() as n", "start": start.isoformat(), "end": end.isoformat()}
    out = base._get(f"http://{base.STORE_IP}:{plan.STORE_PORT}/select/logsql/query?" + urllib.parse.urlencode(asked), net.ns("a"))
    return int(json.loads(out)["n"]) if out else 0


def test_lines_stamped_in_future_days_never_push_todays_out(net: Net) -> None:
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    today = now.replace(hour=0, minute=0, second=0)
    # Noon of each day, but today's lines: now (a line of the future hours of today is today's all the same).
    insert(net, "yesterday", today - DAY / 2, REAL)
    insert(net, "today", now, REAL)
    insert(net, "tomorrow", today + DAY + DAY / 2, FORGED)
    insert(net, "aftertomorrow", today + 2 * DAY + DAY / 2, FORGED)
    metrics = base._get(f"http://{base.STORE_IP}:{plan.STORE_PORT}/metrics", net.ns("a"))
    # -futureRetention=1d, the least the store allows: the day after tomorrow is refused, tomorrow taken.
    dropped = re.search(r'^vl_rows_dropped_total\{reason="too_big_timestamp"\} (\d+)$', metrics, re.M)
    assert dropped is not None and int(dropped.group(1)) == FORGED, dropped
    # The store keeps what it took across its restart (a clean stop writes its in-memory parts).
    stop(net.procs.pop("store"))
    start_store(net, bound=BOUND)
    yesterday = (today - DAY).strftime("%Y%m%d")
    evicted = f"the partition {net.root / 'store' / 'partitions' / yesterday} is scheduled to be deleted because the total size of partitions exceeds -retention.maxDiskSpaceUsageBytes={BOUND}"
    # The bound's watcher runs every ~10 s (storage.go:826-828) and drops every partition it drops in one pass.
    base._wait(lambda: evicted in (net.root / "store.log").read_text(errors="replace"), "the store to evict yesterday", net, "store", bound=60)
    log = (net.root / "store.log").read_text(errors="replace")
    assert today.strftime("%Y%m%d") not in re.findall(r"partitions/(\d{8}) is scheduled to be deleted", log), log[-4000:]
    span = (today - 2 * DAY, today + 3 * DAY)
    assert (count(net, "yesterday", *span), count(net, "today", *span), count(net, "tomorrow", *span)) == (0, REAL, FORGED)


DOCS = Path(__file__).resolve().parents[2] / "docs" / "monitoring.md"


def test_the_documented_admin_call_keeps_the_key_out_of_the_stores_log(net: Net) -> None:
    """docs/monitoring.md's admin call sends the key in a POST's form body read from the Secret: run as written (the
    key read from the test's file in place of the Secret, the store's port on the namespace's loopback as
    port-forward gives it) it reaches the handler, fails there (the day is not attached), and the store logs the
    failure with its URL but not the key; the same call with the key in its URL would put the key in the log."""
    section = DOCS.read_text().split("### The store's admin calls", 1)[1].split("\n## ", 1)[0]
    [block] = re.findall(r"```sh\n(.*?)```", section, re.S)
    forward, secret, call = block.strip().splitlines()
    assert forward == f"kubectl -n {plan.NAMESPACE} port-forward statefulset/{plan.STORE} {plan.STORE_PORT} &"
    assert secret == f"kubectl -n {plan.NAMESPACE} get secret {plan.AUTH_SECRET} -o jsonpath='{{.data.{plan.AUTH_KEY}}}' | base64 -d |"
    key = net.root / "auth" / plan.AUTH_KEY
    assert key.read_text() == base.ADMIN_KEY
    done = in_ns(net.ns("a"), "sh", "-ec", f"cat {key} |\n{call}", check=False)
    assert (done.returncode, done.stdout.strip()) == (0, 'cannot detach the partition "20261120", because it isn\'t attached'), done
    log = (net.root / "store.log").read_text(errors="replace")
    assert "requestURI: /internal/partition/detach?name=20261120" in log, log[-4000:]
    assert base.ADMIN_KEY not in log
    # The key in the URL: the same failure logs it.
    url = f"http://127.0.0.1:{plan.STORE_PORT}/internal/partition/detach?name=20261120&authKey={base.ADMIN_KEY}"
    assert base._call(net.ns("a"), url, "-X", "POST")[0] != 401
    assert base.ADMIN_KEY in (net.root / "store.log").read_text(errors="replace")
