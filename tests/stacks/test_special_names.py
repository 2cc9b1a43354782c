"""Special-use domain names (stacks.special_names): which suffixes are refused, and the zone a message offers."""

from __future__ import annotations

import pytest

from stacks.special_names import home_arpa, special_use


@pytest.mark.parametrize(
    ("name", "suffix"),
    [
        ("lab.local", "local"),
        ("LAB.Local.", "local"),
        ("ts.localhost", "localhost"),
        ("a.b.invalid", "invalid"),
        ("home.onion", "onion"),
        ("lab.home.arpa", None),
        ("lab.test", None),
        ("lab.example", None),
        ("localhost.example.com", None),
        ("notlocal", None),
        ("cluster.locals", None),
    ],
)
def test_the_suffixes_no_dns_server_is_asked_for(name: str, suffix: str | None) -> None:
    found = special_use(name)
    assert (found[0] if found is not None else None) == suffix


@pytest.mark.parametrize(
    ("name", "suffix", "fixed"), [("burrow.local", "local", "burrow.home.arpa"), ("a.b.localhost", "localhost", "a.b.home.arpa")]
)
def test_the_zone_offered_keeps_the_labels_before_the_suffix(name: str, suffix: str, fixed: str) -> None:
    assert home_arpa(name, suffix) == fixed
