"""Heartbeat URLs that report success are accepted (stacks.monitoring.heartbeat_signal); the failures it refuses are
cases of tests/fixtures/invalid_stacks.yaml."""

from __future__ import annotations

import pytest

from stacks.monitoring import heartbeat_signal


@pytest.mark.parametrize(
    "url",
    [
        # Uptime Kuma: up exactly, or no status at all, or an empty one (`request.query.status || "up"`).
        "https://kuma.example.org/api/push/Xy12ab?status=up&msg=OK&ping=",
        "https://kuma.example.org/api/push/Xy12ab",
        "https://kuma.example.org/api/push/Xy12ab?status=&msg=OK",
        # Cronitor: a bare ping, or a completion.
        "https://cronitor.link/p/abc123def456/homelab-watchdog",
        "https://cronitor.link/p/abc123def456/homelab-watchdog?state=complete",
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
