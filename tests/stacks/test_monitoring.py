"""Heartbeat URLs that report success are accepted (stacks.monitoring.heartbeat_signal); the failures it refuses are
cases of tests/fixtures/invalid_stacks.yaml."""

from __future__ import annotations

import pytest

from stacks.model import Monitoring
from stacks.monitoring import _heartbeat_is_receiver, heartbeat_signal


@pytest.mark.parametrize(
    "url",
    [
        # Uptime Kuma: up exactly, or no status at all, or an empty one (`request.query.status || "up"`).
        "https://kuma.example.org/api/push/Xy12ab?status=up&msg=OK&ping=",
        "https://kuma.example.org/api/push/Xy12ab",
        "https://kuma.example.org/api/push/Xy12ab?status=&msg=OK",
        # Uptime Kuma's ping as `parseFloat(ping) || null` reads it: 0 and no number are null, the top bound is let in,
        # and a repeated ping is the values joined by commas, whose first one counts.
        "https://kuma.example.org/api/push/Xy12ab?status=up&ping=0",
        "https://kuma.example.org/api/push/Xy12ab?status=up&ping=-0",
        "https://kuma.example.org/api/push/Xy12ab?status=up&ping=abc",
        "https://kuma.example.org/api/push/Xy12ab?status=up&ping=100000000000",
        "https://kuma.example.org/api/push/Xy12ab?status=up&ping=1&ping=-1",
        "https://kuma.example.org/api/push/Xy12ab?status=up&ping=12.5",
        # Cronitor: a bare ping, or a completion.
        "https://cronitor.link/p/abc123def456/homelab-watchdog",
        "https://cronitor.link/p/abc123def456/homelab-watchdog?state=complete",
        # The Ping API's completion; a Telemetry API monitor whose key is `run` (its event is ?state=).
        "https://cronitor.link/d3x0c1/complete",
        "https://cronitor.link/ping/AbC123dEf456/homelab-watchdog/complete",
        "https://cronitor.link/p/abc123def456/run",
        # A self-hosted Healthchecks's success URLs, under a path too.
        "https://hc.example.org/ping/fqOOd6-F4MMNuCEnzTU01w/homelab-watchdog",
        "https://example.org/healthchecks/ping/6b1c0f9e-7d2a-4f3b-8c1d-2e3f4a5b6c7d",
        "https://example.org/healthchecks/ping/6b1c0f9e-7d2a-4f3b-8c1d-2e3f4a5b6c7d/0",
        # Another server's /ping/<token>/fail: not read as a Healthchecks check (no UUID, no 22-character key and slug).
        "https://switch.example.org/ping/watchdog/fail",
    ],
)
def test_a_heartbeat_reporting_success_is_accepted(url: str) -> None:
    assert list(heartbeat_signal(url)) == []


@pytest.mark.parametrize(
    ("url", "fixed"),
    [
        ("https://cronitor.link/d3x0c1/fail", "https://cronitor.link/d3x0c1/complete"),
        ("https://cronitor.link/d3x0c1/RUN?msg=x", "https://cronitor.link/d3x0c1/complete?msg=x"),
        ("https://cronitor.link/ping/AbC123dEf456/homelab-watchdog/run", "https://cronitor.link/ping/AbC123dEf456/homelab-watchdog/complete"),
        ("https://kuma.example.org/api/push/Xy12ab?status[]=up&msg=OK", "https://kuma.example.org/api/push/Xy12ab?status=up&msg=OK"),
        ("https://kuma.example.org/api/push/Xy12ab?msg=OK&status%5Bx%5D=up", "https://kuma.example.org/api/push/Xy12ab?msg=OK&status=up"),
        ("https://kuma.example.org/api/push/Xy12ab?status=up&status[]=up", "https://kuma.example.org/api/push/Xy12ab?status=up"),
        ("https://kuma.example.org/api/push/Xy12ab?ping=-1&status=up", "https://kuma.example.org/api/push/Xy12ab?status=up"),
        ("https://kuma.example.org/api/push/Xy12ab?ping=%20-5abc", "https://kuma.example.org/api/push/Xy12ab"),
        ("https://kuma.example.org/api/push/Xy12ab?ping=-1&ping=1", "https://kuma.example.org/api/push/Xy12ab"),
        ("https://kuma.example.org/api/push/Xy12ab?ping[]=-1", "https://kuma.example.org/api/push/Xy12ab"),
        ("https://kuma.example.org/api/push/Xy12ab?ping=100000000001", "https://kuma.example.org/api/push/Xy12ab"),
        ("https://kuma.example.org/api/push/Xy12ab?ping=Infinity", "https://kuma.example.org/api/push/Xy12ab"),
    ],
)
def test_a_heartbeat_that_never_reports_success_is_refused_with_a_url_that_does(url: str, fixed: str) -> None:
    problems = [p.message for p in heartbeat_signal(url)]
    assert len(problems) == 1
    assert problems[0].startswith(f"{url}: ")
    assert problems[0].endswith(f"; write {fixed}")
    assert list(heartbeat_signal(fixed)) == []


def test_a_kuma_push_with_a_status_array_and_a_refused_ping_is_told_both_with_one_url_fixing_both() -> None:
    url = "https://kuma.example.org/api/push/Xy12ab?status[]=up&ping=-5"
    problems = [p.message for p in heartbeat_signal(url)]
    assert [p.split(": ", 2)[1][:30] for p in problems] == ["Express's query parser (qs) re", "ping=-5 is a ping of -5 ms, an"]
    assert all(p.endswith("; write https://kuma.example.org/api/push/Xy12ab?status=up") for p in problems)


def _problems(receiver: dict[str, dict[str, str]], heartbeat: str) -> list[str]:
    monitoring = Monitoring.model_validate({"receiver": receiver, "heartbeat": heartbeat})
    return [p.message for p in _heartbeat_is_receiver(monitoring)]


def test_a_webhook_relay_routing_by_query_may_front_receiver_and_heartbeat() -> None:
    # Two endpoints of one relay (n8n's, Node-RED's webhook node route by a query parameter).
    assert _problems({"webhook": {"url": "https://relay.example.org/hook?channel=alerts"}}, "https://relay.example.org/hook?channel=deadman") == []


def test_the_webhooks_own_url_with_its_query_is_refused() -> None:
    assert _problems({"webhook": {"url": "https://relay.example.org/hook?channel=alerts"}}, "https://relay.example.org/hook/?channel=alerts") == [
        "https://relay.example.org/hook/?channel=alerts is monitoring.receiver.webhook.url, the same URL: the Watchdog Alertmanager "
        "posts there every hour would reach you as an alert each hour, and nothing would watch for the posts stopping (a receiver is "
        "told only what is sent); use a dead man's switch off the homelab that alerts when pings stop (a healthchecks.io check's "
        "ping URL, an Uptime Kuma push monitor)"
    ]


def test_an_ntfy_topic_is_its_path_whatever_the_query() -> None:
    assert len(_problems({"ntfy": {"url": "https://ntfy.sh/homelab-alerts"}}, "https://ntfy.sh/homelab-alerts?priority=high")) == 1
