"""Monitoring config (`iluvatar:monitoring`): what Prometheus keeps, which app is Grafana, where alerts go.

Prometheus, Alertmanager and Grafana run on Arda as an Argo CD platform Application (kube-prometheus,
`plans.monitoring`), so monitoring needs GitOps. Prometheus keeps its samples on a volume of a
StorageClass the stack has; Grafana is reached through an app of the registry; alerts go to one
receiver (e-mail, a webhook or ntfy) whose secret is the Pulumi secret `iluvatar:alertReceiverSecret`.
The model is `stacks.model.Monitoring`; this module holds its rules, each naming its config path.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Sequence
from urllib.parse import SplitResult, parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from stacks.addresses import ALERTMANAGER_NAMESPACE, Server, cluster_name
from stacks.credentials import ZULIP_WEBHOOK
from stacks.data import on_arda
from stacks.errors import Problem, UnsetSecret
from stacks.gitops import Lab
from stacks.model import App, Monitoring, Node, Storage
from stacks.reach import Clients, unreachable
from stacks.rules import _arda_networks
from stacks.storage import _arda_classes

MONITORING = "iluvatar:monitoring"
SECRET = "alertReceiverSecret"  # noqa: S105 - the secret's config key, not a secret
# kube-prometheus names Grafana's Service `grafana` (port `http`, 3000) in its one namespace, Alertmanager's too.
GRAFANA_SERVICE = "grafana"
GRAFANA_NAMESPACE = ALERTMANAGER_NAMESPACE
# What each receiver needs to reach someone, by kind: (field, what it is).
ADDRESSES = {
    "email": (("to", "the address alerts are sent to"), ("sender", "the address they come from"), ("smarthost", "the SMTP server, host:port")),
    "webhook": (("url", "the URL Alertmanager posts alerts to"),),
    "ntfy": (("url", "the topic's URL, e.g. https://ntfy.sh/<topic>"),),
}
# The camelCase key of a field, where it differs.
KEYS = {"sender": "from"}


def check(
    monitoring: Monitoring | None,
    monitoring_set: bool,
    gitops_set: bool,
    apps: Sequence[tuple[int, App]],
    storage: Storage | None,
    nodes: Sequence[Node],
    secrets: Collection[str],
    lab: Lab | None = None,
    named: Sequence[Server] = (),
) -> list[Problem]:
    """Every monitoring rule; `monitoring` is None when the section is absent or broken (`monitoring_set`). `lab`: the
    parts of the stack a server could be on Arda through; `named`: the layers' servers (stacks.addresses.servers)."""
    secret = f"iluvatar:{SECRET}"
    if monitoring is None:
        if not monitoring_set and SECRET in secrets:
            return [Problem(secret, f"is set, but {MONITORING} is not; set {MONITORING}.receiver, or remove the secret")]
        return []
    out: list[Problem] = []
    if not gitops_set:
        out.append(
            Problem(MONITORING, "needs iluvatar:gitops: Prometheus, Alertmanager and Grafana are Argo CD platform Applications; set iluvatar:gitops")
        )
    out += _storage(monitoring, storage, nodes)
    out += _grafana(monitoring, apps)
    out += _receiver(monitoring, secrets)
    if lab is not None:
        for server in named:
            if server.kind == "heartbeat":
                out += _heartbeat(server, lab)
    if monitoring.heartbeat is not None:
        out += go_host(f"{MONITORING}.heartbeat", monitoring.heartbeat, _ALERTMANAGER_CANNOT_LOAD)
        host = unquote(urlsplit(monitoring.heartbeat).hostname or "")
        switch = Clients("Alertmanager on Arda", "so the switch never hears the Watchdog", "give the switch's LAN address or public name")
        if host and (why := unreachable(host, switch)) is not None:
            out.append(Problem(f"{MONITORING}.heartbeat", f"{monitoring.heartbeat}: {why}"))
        out += heartbeat_signal(monitoring.heartbeat)
        out += _heartbeat_is_receiver(monitoring)
    return out


# The servers whose client is Alertmanager, which runs in the namespace `monitoring` on Arda (plans.monitoring): a
# Service name or an address of Arda's cluster networks is one of Arda's own Services or pods to it.
ON_ARDA_CLIENTS = frozenset({"receiver", "heartbeat"})


def server_on_arda(server: Server, lab: Lab) -> list[str]:
    """What of Arda `server` is (stacks.data.on_arda: an app's host, a Service's address, an Arda machine or Arda's VIP),
    by address or by its name in the internal zone; and, to Alertmanager on Arda, a Service in its namespace by a single
    label, a Service name, an address of Arda's pod or Service network."""
    host = server.host.rstrip(".").lower()
    if server.kind in ON_ARDA_CLIENTS and server.address is None:
        # Alertmanager's pod searches `monitoring.svc.cluster.local svc.cluster.local cluster.local` before asking the
        # name as written (kubernetes pkg/kubelet/network/dns/dns.go:141-151 at d24fe8a, generateSearchesForDNSClusterFirst;
        # ndots:5), and Arda's CoreDNS answers cluster.local from its Services (plans.coredns): a single label is a Service
        # of Alertmanager's namespace, `<service>.<namespace>` a Service of that namespace, `<service>.<namespace>.svc` and
        # any name under cluster.local a Kubernetes name, before any of them is a name of the LAN. A name merely holding
        # a `svc` label (hc.svc.example.org) is no such name: every search expansion of it misses and it is asked as is.
        labels = host.split(".")
        service, namespace = [*labels, ALERTMANAGER_NAMESPACE][:2] if len(labels) <= 2 else ("", "")
        app = next(((i, a) for i, a in lab.apps if a.category == namespace and a.service_name == service), None)
        if app is not None:
            where = ", Alertmanager's namespace," if namespace == ALERTMANAGER_NAMESPACE else ""
            return [f"the server {host} is apps[{app[0]}]'s Service ({app[1].name}) in {namespace}{where} on Arda"]
        if cluster_name(host) or (len(labels) == 2 and namespace == ALERTMANAGER_NAMESPACE):
            return [f"the server {host} is a Kubernetes Service name, which Alertmanager resolves through Arda's cluster DNS: a Service on Arda"]
    name = server.name or host
    app_host = any(a.host == name for _, a in lab.apps)
    # An app's host is named as the app (its gateway's address in the pool says no more).
    out = on_arda(name, None if app_host else server.address, server.shown, lab.apps, lab.network, lab.nodes, lab.arda)
    if server.kind in ON_ARDA_CLIENTS and server.address is not None and lab.arda is not None and not out:
        lan = lab.network.lan if lab.network is not None else None
        for net in _arda_networks(lab.arda)[0]:
            if server.address in net.net and (lan is None or server.address not in lan):
                what = "Service" if net.key == "serviceSubnets" else "pod"
                out.append(
                    f"the server {server.shown} is inside {net.what}, which Arda's machines send to their {what}s, never to a machine "
                    f"elsewhere (one that has that address needs an address outside it, or Arda's networks moved with arda.patches): "
                    f"to Alertmanager a {what} on Arda"
                )
                break
    return out


def _heartbeat(server: Server, lab: Lab) -> Iterator[Problem]:
    # The dead man's switch tells you when Alertmanager's hourly Watchdog posts stop (plans.monitoring): on Arda, the
    # cluster whose Alertmanager it watches, it stops with Arda, and then nothing is left to tell you.
    for what in server_on_arda(server, lab):
        yield Problem(
            f"{MONITORING}.heartbeat",
            f"{server.written}: {what}, the cluster whose Alertmanager the switch watches: when Arda goes down the switch goes with it and "
            "never tells you; use a switch off Arda (a healthchecks.io check, an Uptime Kuma on a Pi of the Ainur or another machine off Arda)",
        )


# healthchecks.io's ping URLs (its docs, "Pinging API", https://healthchecks.io/docs/http_api/): a check is named by its
# UUID (https://hc-ping.com/<uuid>) or by the project's ping key and the check's slug (/<ping-key>/<slug>); a self-hosted
# Healthchecks serves the same under /ping/. After the check may come a signal: /start starts a run's timer, /log records
# an event that is neither success nor failure, /fail and /<exit-status> report a failure ("Signaling failures",
# https://healthchecks.io/docs/signaling_failures/: "exit status 0 as success and all non-zero values as failures"); a
# started run with no success within the grace time is marked down ("Measuring script run time",
# https://healthchecks.io/docs/measuring_script_run_time/). Only the bare URL, or /0, reports success.
HEALTHCHECKS_HOSTS = frozenset({"hc-ping.com", "hchk.io"})
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)
# A project's ping key (healthchecks/healthchecks hc/accounts/models.py, Project.set_ping_key: token_urlsafe(16), 22
# URL-safe characters).
_PING_KEY = re.compile(r"^[A-Za-z0-9_-]{22}$")
_CRONITOR_NO_SUCCESS = {
    "fail": "reports a failure",
    "run": "only says a job has started, and no completion follows, so the monitor alerts once the job's time is up",
}
_SIGNALS = {
    "fail": "reports a failure",
    "start": "only starts a run's timer, and no success follows, so the check is marked down once its grace time has passed",
    "log": "records an event that is neither success nor failure, so the check never hears a success and goes down",
}
# Better Stack's heartbeats (formerly Better Uptime, once served from betteruptime.com): the success URL is
# https://uptime.betterstack.com/api/v1/heartbeat/<token>; "You can explicitly report a failure by appending /fail to the
# heartbeat URL", and /<exit code> sends the job's exit code with it ("Cron and heartbeat monitor",
# https://betterstack.com/docs/uptime/cron-and-heartbeat-monitor/). The docs give /$? for a script's status and do not
# call 0 a failure, so only /fail and a non-zero code are refused.
BETTER_STACK_HOSTS = frozenset({"uptime.betterstack.com", "betteruptime.com"})
_NO_SUCCESS = (
    "Alertmanager posts the Watchdog there every hour while all is well, and the switch would report the homelab dead all "
    "the same: a false alarm that teaches you to ignore the one alert meant to say Arda is gone"
)


def _healthchecks_check(host: str, segments: list[str]) -> list[str] | None:
    """The path after a Healthchecks server's ping root (the check, then its signal), or None if not one's ping URL."""
    if host in HEALTHCHECKS_HOSTS:
        return segments
    # A self-hosted Healthchecks serves its pings under SITE_ROOT's path, which may itself have segments
    # (https://example.net/healthchecks/ping/<uuid>). Read only a UUID, or a 22-character ping key and a slug after
    # /ping/, which another server's /ping/<token> cannot be mistaken for.
    for i, segment in enumerate(segments):
        after = segments[i + 1 :]
        if segment == "ping" and after and (_UUID.match(after[0]) or (_PING_KEY.match(after[0]) and len(after) > 1)):
            return after
    return None


def heartbeat_signal(url: str) -> Iterator[Problem]:
    """A heartbeat URL that never reports success: healthchecks.io's with no check, or with a failure, start or log
    signal after it; Better Stack's with /fail or a non-zero exit code after it; Uptime Kuma's push URL with any status but
    up; Cronitor's with state=fail or state=run."""
    path = f"{MONITORING}.heartbeat"
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".").lower()
    segments = [s for s in parts.path.split("/") if s]
    check = _healthchecks_check(host, segments)
    if check is not None:
        if not check or (len(check) == 1 and not _UUID.match(check[0])):
            yield Problem(
                path,
                f"{url} names no check: healthchecks.io takes a ping for a check named by its UUID (https://hc-ping.com/<uuid>) or by "
                "the project's ping key and the check's slug (/<ping-key>/<slug>), and a ping that names none watches nothing; "
                "copy the check's ping URL from its page",
            )
            return
        signal = check[1:] if _UUID.match(check[0]) else check[2:]
        if signal:
            word = signal[0].lower()
            what = _SIGNALS.get(word)
            if what is None and word.isdigit() and int(word) != 0:
                what = f"reports exit status {word}, a failure (healthchecks.io reads every status but 0 as one)"
            if what is not None:
                base = url[: url.rindex("/" + signal[0])]
                yield Problem(path, f"{url}: /{signal[0]} {what}: {_NO_SUCCESS}; write {base}, the check's success URL")
        return
    if host in BETTER_STACK_HOSTS and segments[:3] == ["api", "v1", "heartbeat"] and len(segments) > 4:
        word = segments[4]
        what = "reports a failure" if word == "fail" else None
        if word.isdigit() and int(word) != 0:
            what = f"reports exit code {word}, a failure"
        if what is not None:
            base = url[: url.rindex("/" + word)]
            yield Problem(path, f"{url}: /{word} {what} (Better Stack's heartbeat): {_NO_SUCCESS}; write {base}, the heartbeat's success URL")
        return
    query = parse_qsl(parts.query, keep_blank_values=True)
    # Uptime Kuma's push monitor (louislam/uptime-kuma server/routers/api-router.js:52-53, `/api/push/:pushToken`):
    # `let statusString = request.query.status || "up"; const statusFromParam = statusString === "up" ? UP : DOWN;`,
    # so every status but the exact, lower-case up (down, fail, 0, Up) marks the monitor down; an empty or absent one
    # is up, and a repeated one is an array to Express, which is not "up" either.
    statuses = [v for k, v in query if k == "status"]
    if segments[:2] == ["api", "push"] and statuses and (len(statuses) > 1 or statuses[0] not in ("", "up")):
        fixed = _with_state(parts, query, "status", "up")
        shown = "&".join(f"status={v}" for v in statuses)
        yield Problem(
            path,
            f"{url}: {shown} marks the push monitor down on every push (Uptime Kuma reads every status but the exact, lower-case "
            f"up as down): {_NO_SUCCESS}; write {fixed}",
        )
        return
    if segments[:2] == ["api", "push"]:
        kuma = list(_kuma_push(url, parts, query))
        if kuma:
            yield from kuma
            return
    if host == "cronitor.link":
        event = _cronitor_event(segments)
        if event is not None and segments[event].lower() in _CRONITOR_NO_SUCCESS:
            word = segments[event]
            fixed = urlunsplit(parts._replace(path="/" + "/".join([*segments[:event], "complete", *segments[event + 1 :]])))
            yield Problem(path, f"{url}: /{word} {_CRONITOR_NO_SUCCESS[word.lower()]}: {_NO_SUCCESS}; write {fixed}")
            return
    # Cronitor's Telemetry API (https://cronitor.io/docs/telemetry-api, "Basic Usage - Jobs"): state=fail "send[s] a
    # failure event to trigger an immediate alert"; state=run only says a job has started, and a job that never
    # completes is alerted on; a bare ping or state=complete is the success.
    states = [v for k, v in query if k == "state" and v.lower() in _CRONITOR_NO_SUCCESS]
    if host == "cronitor.link" and states:
        yield Problem(
            path,
            f"{url}: state={states[0]} {_CRONITOR_NO_SUCCESS[states[0].lower()]}: {_NO_SUCCESS}; write {_with_state(parts, query, 'state', 'complete')}",
        )


def _with_state(parts: SplitResult, query: list[tuple[str, str]], key: str, value: str) -> str:
    """The URL with its one `key` set to value (every other parameter kept, in order)."""
    kept: list[tuple[str, str]] = []
    for k, v in query:
        if k != key:
            kept.append((k, v))
        elif all(k2 != key for k2, _ in kept):
            kept.append((k, value))
    return urlunsplit(parts._replace(query=urlencode(kept)))


# Cronitor's Ping API (https://cronitor.io/docs/ping-api), the URLs its older docs and SDKs write: the monitor's own URL,
# https://cronitor.link/<code> ("Resource: Monitor, cronitor.link/:monitorId/:event") or
# https://cronitor.link/ping/<ping-api-key>/<id> ("Universal, cronitor.link/ping/:pingAPIKey/:uniqueId/:event"), and the
# event as the path segment after it: /run "report task is running", /complete "report task is complete", /fail "report
# task has failed ... you will be alerted immediately". The Telemetry API's /p/<api-key>/<monitor> takes the event as
# ?state= instead (heartbeat_signal), and its last segment is the monitor's key, which may itself be `run` or `fail`.
def _cronitor_event(segments: list[str]) -> int | None:
    """Where the event segment of a Cronitor Ping API URL is (its index in `segments`), or None: a Telemetry API URL,
    or a ping URL with no event."""
    if not segments or segments[0] == "p":
        return None
    at = 3 if segments[0] == "ping" else 1
    return at if len(segments) > at else None


# Uptime Kuma's push route (louislam/uptime-kuma server/routers/api-router.js:51-60 at 6398a95, v2.5.3) reads its query
# as Express 4 parses it (express 4.22.2, package-lock.json:7983, lib/application.js:84 `query parser: extended`,
# lib/utils.js:288-292 qs.parse), with qs 6.15.3 (package-lock.json:8062): a key's parent is what comes before its first
# `[` (lib/parse.js:246-248), so `status[]=up` and `status[x]=up` make `status` an array or an object, never the string
# `up`, and `statusString === "up" ? UP : DOWN` marks the push down. `ping` is read as `parseFloat(request.query.ping) ||
# null` (an array as its elements joined by commas, so its first one counts) and a value below 0 or above 100000000000
# throws before the beat is stored: the push is answered 404 `{ok: false}` (api-router.js:140-145) and the monitor hears
# nothing, so it goes down once its interval passes. A ping of 0, or one that is no number, is null and stored.
_QS_ARRAY = re.compile(r"^(?P<parent>[^\[]*)\[")
# JavaScript's parseFloat: leading white space (ECMA-262 StrWhiteSpaceChar) skipped, then the longest prefix that is a
# decimal literal or Infinity; anything else is NaN.
_JS_FLOAT = re.compile(
    r"^[\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]*([+-]?(?:Infinity|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?))"
)
_KUMA_MAX_PING = 100000000000


def _js_parse_float(text: str) -> float | None:
    """parseFloat(text), or None for NaN."""
    match = _JS_FLOAT.match(text)
    return float(match[1]) if match else None


def _kuma_ping(query: list[tuple[str, str]]) -> float | None:
    """The ping Uptime Kuma reads of the query (`parseFloat(request.query.ping) || null`), or None when it reads none or
    the query's shape is one not modelled here (`ping[<key>]`): only `ping` and `ping[]`, whose values qs makes one
    string or, repeated, an array in their order (lib/parse.js:152), which parseFloat reads as the values joined by ','."""
    values = [v for k, v in query if k in ("ping", "ping[]")]
    if not values or any(k.startswith("ping[") and k != "ping[]" for k, _ in query):
        return None
    value = _js_parse_float(",".join(values))
    return value or None  # 0, -0 and NaN are null


def _kuma_push(url: str, parts: SplitResult, query: list[tuple[str, str]]) -> Iterator[Problem]:
    """An Uptime Kuma push URL that marks the monitor down on every push for `status` written as an array or an object,
    or whose every push is refused for its ping (the plain `status` values are heartbeat_signal's)."""
    path = f"{MONITORING}.heartbeat"
    nested = [(k, v) for k, v in query if (m := _QS_ARRAY.match(k)) is not None and m["parent"] == "status"]
    ping = _kuma_ping(query)
    bad_ping = ping is not None and (ping < 0 or ping > _KUMA_MAX_PING)
    if not nested and not bad_ping:
        return
    # One URL that fixes both: a single status=up where status was first written, and no ping (Alertmanager's posts
    # have no round-trip time to report).
    kept: list[tuple[str, str]] = []
    for k, v in query:
        parent = m["parent"] if (m := _QS_ARRAY.match(k)) is not None else k
        if nested and parent == "status":
            if all(k2 != "status" for k2, _ in kept):
                kept.append(("status", "up"))
        elif not (bad_ping and parent == "ping"):
            kept.append((k, v))
    fixed = urlunsplit(parts._replace(query=urlencode(kept)))
    if nested:
        shown = "&".join(f"{k}={v}" for k, v in nested)
        yield Problem(
            path,
            f"{url}: Express's query parser (qs) reads {shown} as an array or an object, so the status Uptime Kuma reads is never "
            f"the string up and every push marks the push monitor down: {_NO_SUCCESS}; write {fixed}",
        )
    if bad_ping:
        shown = "&".join(f"{k}={v}" for k, v in query if k in ("ping", "ping[]"))
        read = "Infinity" if ping == float("inf") else "-Infinity" if ping == float("-inf") else f"{ping:.15g}"
        yield Problem(
            path,
            f"{url}: {shown} is a ping of {read} ms, and Uptime Kuma refuses every push whose ping is below 0 or above "
            f"{_KUMA_MAX_PING} ms (answered 404, no beat stored), so the push monitor hears nothing and goes down once its "
            f"interval has passed: {_NO_SUCCESS}; write {fixed}",
        )


def _comparable(url: str, kind: str) -> tuple[str, str, tuple[tuple[str, str], ...]]:
    """What names one endpoint: the host and path, and for a webhook its query too (a relay such as n8n's or Node-RED's
    webhook node may route by a query parameter, so ?channel=alerts and ?channel=deadman are two endpoints); ntfy's
    topic is the path alone, its query only options of the message."""
    parts = urlsplit(url)
    query = tuple(sorted(parse_qsl(parts.query, keep_blank_values=True))) if kind == "webhook" else ()
    return ((parts.hostname or "").rstrip(".").lower(), parts.path.rstrip("/"), query)


def _heartbeat_is_receiver(monitoring: Monitoring) -> Iterator[Problem]:
    """The heartbeat at the alert receiver's own URL (an ntfy topic, a webhook): the Watchdog then reaches you as an alert
    every hour, and nothing watches for the posts stopping, which is what the switch is for."""
    assert monitoring.heartbeat is not None
    receiver = monitoring.receiver
    for kind in ("ntfy", "webhook"):
        part = getattr(receiver, kind) if receiver is not None else None
        if part is None or part.url is None or _comparable(part.url, kind) != _comparable(monitoring.heartbeat, kind):
            continue
        yield Problem(
            f"{MONITORING}.heartbeat",
            f"{monitoring.heartbeat} is monitoring.receiver.{kind}.url{' too' if part.url == monitoring.heartbeat else ', the same ' + ('topic' if kind == 'ntfy' else 'URL')}: "
            "the Watchdog Alertmanager posts there every hour would reach you as an alert each hour, and nothing would watch for "
            "the posts stopping (a receiver is told only what is sent); use a dead man's switch off the homelab that alerts when "
            "pings stop (a healthchecks.io check's ping URL, an Uptime Kuma push monitor)",
        )


def arda_classes(storage: Storage, nodes: Sequence[Node]) -> list[str]:
    """Arda's StorageClasses (stacks.storage), the one place monitoring reads them."""
    return _arda_classes(storage, nodes)


def _storage(monitoring: Monitoring, storage: Storage | None, nodes: Sequence[Node]) -> Iterator[Problem]:
    if storage is None:
        return  # iluvatar:storage is broken: its own errors are reported
    classes = arda_classes(storage, nodes)
    wanted = monitoring.prometheus.storage_class
    path = f"{MONITORING}.prometheus.storageClass"
    if wanted is not None and wanted not in classes:
        yield Problem(path, f"{wanted} is not a StorageClass this stack's Arda has (it has: {', '.join(classes) or 'none'})")
    elif wanted is None and not classes:
        yield Problem(path, "is required: Arda has no StorageClass (no data disks, no local volumes, no NFS) for Prometheus's volume")


def _grafana(monitoring: Monitoring, apps: Sequence[tuple[int, App]]) -> Iterator[Problem]:
    name = monitoring.grafana.app
    if name is None:
        return
    path = f"{MONITORING}.grafana.app"
    found = [(i, a) for i, a in apps if a.name == name]
    if not found:
        known = ", ".join(a.name for _, a in apps) or "none"
        yield Problem(
            path,
            f"{name} is not an app of iluvatar:apps (known: {known}); add {{name: {name}, category: {GRAFANA_NAMESPACE}, "
            f"host: {name}.<network.domain>, service: {{port: 3000}}}}",
        )
        return
    i, app = found[0]
    if app.category != GRAFANA_NAMESPACE:
        yield Problem(
            f"iluvatar:apps[{i}].category",
            f"{app.category}: {name} is Grafana, which runs in the namespace {GRAFANA_NAMESPACE}; set category: {GRAFANA_NAMESPACE}",
        )
    if app.audience != "internal" and not app.ports:
        # Served on the LAN (and the tailnet) only, as Headlamp is (stacks.identity): Headlamp because its sign-in goes
        # through Dex at the front door, which the internet does not reach; Grafana because its sign-in is one admin
        # password (plans.monitoring: no Dex, no second factor) before every machine's metrics and logs and a query
        # proxy to Prometheus and the log store. From away, remote access reaches it (reach: apps).
        yield Problem(
            f"iluvatar:apps[{i}].audience",
            f"{app.audience}: {name} is Grafana, which is served on the LAN only (envoy-internal), as Headlamp is: its sign-in is "
            "one admin password before every machine's metrics and logs; reach it from away through iluvatar:remoteAccess (reach: "
            "apps), and remove audience",
        )
    if app.ports:
        yield Problem(
            f"iluvatar:apps[{i}].ports",
            f"{name} is Grafana, an HTTP app behind envoy-internal; replace ports and address with service: {{port: 3000}}",
        )
    if app.service_name != GRAFANA_SERVICE:
        yield Problem(f"iluvatar:apps[{i}].service.name", f"{app.service_name}: Grafana's Service is {GRAFANA_SERVICE}; remove name")


# ntfy publishes to one topic, the URL's one path segment (ntfy server/server.go: topicRegex `^/[-_A-Za-z0-9]{1,64}$`).
NTFY_TOPIC = re.compile(r"^/[-_A-Za-z0-9]{1,64}$")
NTFY_HOSTS = frozenset({"ntfy.sh"})


def _ntfy_url(path: str, url: str) -> Iterator[Problem]:
    parts = urlsplit(url)
    if parts.path in ("", "/"):
        yield Problem(path, f"{url} names no topic: ntfy publishes to https://<server>/<topic>, e.g. {url.rstrip('/')}/iluvatar-alerts")
    elif not NTFY_TOPIC.match(parts.path):
        yield Problem(
            path,
            f"{url}: {parts.path.lstrip('/')} is not an ntfy topic, which is one path segment of 1 to 64 letters, digits, '-' and '_' "
            f"(https://<server>/<topic>)",
        )


# A `%` Go's net/url refuses in a host: any but the escape of a non-ASCII byte (%80 to %FF). url.Parse unescapes the host
# in encodeHost mode, where an escape of an ASCII byte, %25 included, or a malformed one is an EscapeError
# (go1.26 src/net/url/url.go:113-128, :139-141): "invalid URL escape \"%2E\"".
_GO_HOST_ESCAPE = re.compile(r"%(?![89a-fA-F][0-9a-fA-F])")
_ALERTMANAGER_CANNOT_LOAD = (
    "Alertmanager reads its configuration's URLs with Go's url.Parse (prometheus/alertmanager config/config.go, parseURL), so it "
    "cannot load its configuration and every alert would be lost"
)


def go_host(path: str, url: str, harm: str) -> Iterator[Problem]:
    """A URL whose client parses it with Go's net/url and whose host holds a `%` it refuses: the client never dials it,
    whatever host it decodes to (curl, the Pi image builder, decodes instead: stacks.addresses._url_host). The fix writes
    the host decoded, which the other rules then read as written."""
    parts = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if hostport.startswith("["):
        return
    host, colon, port = hostport.partition(":")
    bad = _GO_HOST_ESCAPE.search(host)
    if bad is None:
        return
    escape = host[bad.start() : bad.start() + 3]
    fixed = urlunsplit(parts._replace(netloc=f"{userinfo}{at}{unquote(host)}{colon}{port}"))
    yield Problem(
        path,
        f"{url}: its host {host} is percent-encoded, and Go's net/url refuses {escape} in a host (invalid URL escape, only a "
        f"non-ASCII byte may be escaped there): {harm}; write the host as it is, {fixed}",
    )


def _receiver(monitoring: Monitoring, secrets: Collection[str]) -> Iterator[Problem]:
    secret = f"iluvatar:{SECRET}"
    receiver = monitoring.receiver
    if receiver is None:
        if SECRET in secrets:
            yield Problem(secret, f"is set, but {MONITORING}.receiver is not; name the receiver, or remove the secret")
        return
    path = f"{MONITORING}.receiver"
    kinds = [k for k in ADDRESSES if getattr(receiver, k) is not None]
    if len(kinds) != 1:
        yield Problem(path, f"has {' and '.join(kinds) if kinds else 'no receiver'}; set exactly one of email, webhook, ntfy")
        return
    kind = kinds[0]
    settings = getattr(receiver, kind)
    for field, what in ADDRESSES[kind]:
        if getattr(settings, field) is None:
            yield Problem(f"{path}.{kind}.{KEYS.get(field, field)}", f"is required: {what}")
    # Alertmanager on Arda posts to the receiver from the LAN side.
    alerts = Clients("Alertmanager on Arda", "so every alert would be lost", "give the server's LAN address or public name")
    for field in ("url", "smarthost"):
        value = getattr(settings, field, None)
        if value is not None:
            # A URL's host decoded, as the address rules read it (stacks.addresses._url_host): a `%` in it is refused below
            # on its own, and the host its fix writes is checked here already.
            host = unquote(urlsplit(value).hostname or "") if "://" in value else value.rsplit(":", 1)[0]
            if "://" in value:
                yield from go_host(f"{path}.{kind}.{field}", value, _ALERTMANAGER_CANNOT_LOAD)
            if host and (why := unreachable(host, alerts)) is not None:
                yield Problem(f"{path}.{kind}.{field}", f"{value}: {why}")
    if kind == "ntfy" and settings.url is not None:
        yield from _ntfy_url(f"{path}.ntfy.url", settings.url)
    if kind == "webhook" and settings.url is not None and (urlsplit(settings.url).hostname or "").lower() in NTFY_HOSTS:
        yield Problem(
            f"{path}.webhook.url",
            f"{settings.url} is ntfy's, which would show the JSON Alertmanager posts to a webhook as the message; "
            f"move it to {path}.ntfy.url (ntfy's templates then make each alert a readable line)",
        )
    if kind == "webhook" and settings.url is not None:
        yield from _zulip(f"{path}.webhook.url", settings.url, secret, secrets)
    if kind == "email" and settings.username is not None and SECRET not in secrets:
        yield UnsetSecret(
            secret,
            f"is required: {path}.email.username {settings.username} signs in to the SMTP server with it; "
            f"run `pulumi config set --secret {secret} <password>`",
            (secret,),
        )


def zulip(url: str) -> str | None:
    """The Zulip integration a webhook URL posts to (`alertmanager`), or None for another service's URL."""
    match = ZULIP_WEBHOOK.match(urlsplit(url).path)
    return match.group(1) if match else None


def _zulip(path: str, url: str, secret: str, secrets: Collection[str]) -> Iterator[Problem]:
    """Zulip's webhooks: only its Alertmanager integration reads Alertmanager's JSON, and it answers 401 without the
    bot's API key, which Iluvatar adds to the URL from the secret (stacks.credentials.ZULIP_WEBHOOK)."""
    integration = zulip(url)
    if integration is None:
        return
    if integration != "alertmanager":
        yield Problem(
            path,
            f"{url} is Zulip's {integration} integration, which reads {integration}'s messages, not the JSON Alertmanager posts; "
            f"use Zulip's Alertmanager integration: {urlsplit(url).scheme}://{urlsplit(url).netloc}/api/v1/external/alertmanager?stream=<channel>",
        )
    elif SECRET not in secrets:
        yield UnsetSecret(
            secret,
            f"is required: Zulip ({url}) lets in only a bot's API key, which Iluvatar adds to the URL as api_key; "
            f"run `pulumi config set --secret {secret} <api key>`",
            (secret,),
        )
