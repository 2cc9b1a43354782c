"""Warnings (stacks.warn): a valid stack that most likely does not mean what it says. Each is pinned word for word in
tests/fixtures/warned_stacks.yaml (tests/stacks/test_warned_stacks.py; own_lan_stacks.yaml's `warn` cases for a LAN of
its own); `iluvatar validate` prints them (tests/iluvatar/test_cli.py) and `pulumi preview` logs them
(tests/stacks/test_pulumi_source.py). None refuses the stack."""

from __future__ import annotations

from pathlib import Path

import pytest

from stacks import load_stack_file
from stacks.warn import warnings
from tests.edit import homelab_doc, write_stack


def test_the_shipped_homelab_has_none(tmp_path: Path) -> None:
    assert warnings(load_stack_file(write_stack(tmp_path, homelab_doc()), require_secrets=True)) == []


def test_a_warning_two_rules_say_alike_is_said_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """validate and `pulumi preview` print warnings() as it is: the same key and text twice would be printed twice."""
    from stacks import warn
    from stacks.errors import Problem

    device = Problem("iluvatar:network.dns[0]", "192.168.0.150 is inside network.dhcpRange")
    other = Problem("iluvatar:storage.nfs.server", "192.168.0.150 is inside network.dhcpRange")
    monkeypatch.setattr(warn, "_warnings", lambda stack: iter([device, other, device, device]))
    assert warnings(load_stack_file(write_stack(tmp_path, homelab_doc()), require_secrets=True)) == [device, other]
