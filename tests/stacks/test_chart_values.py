"""stacks.chart_values: the keys Iluvatar's own chart values set are what the plans set, and a key one typo from one of
them is none the pinned chart takes, so refusing it refuses no valid value."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import yaml

from plans import cilium, gitops, identity
from stacks import chart_values, load_stack_file
from stacks.chart_values import one_typo
from tests.edit import HOMELAB, MINIMAL, RK1
from tools import upstream


def _paths(values: Mapping[str, Any], under: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for key, value in values.items():
        yield (*under, str(key))
        if isinstance(value, Mapping):
            yield from _paths(value, (*under, str(key)))


def test_the_tables_are_the_keys_the_plans_set() -> None:
    ciliums: set[tuple[str, ...]] = set()
    argocds: set[tuple[str, ...]] = set()
    for path in (HOMELAB, RK1, MINIMAL):
        stack = load_stack_file(path)
        ciliums |= set(_paths(cilium.helm_values(stack)))
        for cluster in ("arda", "ainur"):
            if stack.gitops is not None:
                argocds |= set(_paths(gitops.helm_values(stack, cluster, identity.argocd_values(stack, cluster, "CA"))))
    assert ciliums == chart_values.CILIUM
    assert argocds == chart_values.ARGOCD


def _chart_keys(chart: str, version: str) -> set[tuple[str, ...]]:
    """Every key path the chart takes: its default values, its values schema's properties, what its templates read."""
    folder = upstream.chart(chart, version)
    found = set(_paths(yaml.safe_load((folder / "values.yaml").read_text()) or {}))
    found |= upstream.template_value_paths(folder)

    def schema_paths(schema: Any, under: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
        for key, sub in (schema.get("properties") or {}).items() if isinstance(schema, dict) else ():
            yield (*under, key)
            yield from schema_paths(sub, (*under, key))

    found |= set(schema_paths(upstream.charts.values_schema(folder) or {}))
    return found


# Maps whose keys are the chart's to pass on, not to read: argocd-cm's, argocd-cmd-params-cm's and argocd-rbac-cm's.
ARGOCD_MAPS = {("configs", "cm"), ("configs", "params"), ("configs", "rbac")}


@pytest.mark.parametrize(
    ("chart", "version", "known", "maps"),
    [("cilium", "1.18.4", chart_values.CILIUM, set()), ("argo-cd", "10.8.0", chart_values.ARGOCD, ARGOCD_MAPS)],
)
def test_no_key_the_pinned_chart_takes_is_one_typo_from_ours(
    chart: str, version: str, known: frozenset[tuple[str, ...]], maps: set[tuple[str, ...]]
) -> None:
    takes = _chart_keys(chart, version)
    # Ours are the chart's (tests/plans/test_cilium.py checks Cilium's against its schema too), but a map's own entries.
    assert {k for k in known if k[:-1] not in maps} <= takes
    clashes = {p for p in takes for k in known if p[:-1] == k[:-1] and one_typo(p[-1], k[-1])}
    assert clashes == {p for p in chart_values.CHARTS_OWN if p[:-1] in {k[:-1] for k in known} and p in takes}
    assert not list(chart_values._typos({"configs": {"cmp": {"x": "y"}}}, known, "v"))


@pytest.mark.parametrize(
    ("word", "known", "typo"),
    [
        ("kubeProxyReplacment", "kubeProxyReplacement", True),  # a letter dropped
        ("enabeld", "enabled", True),  # two swapped
        ("enable", "enabled", True),
        ("Hubble", "hubble", True),
        ("enabled", "enabled", False),
        ("ipv4", "ipv6", False),  # a digit: two real keys
        ("mode", "node", False),  # a letter for another: two real words
        ("k8sServiceHostRef", "k8sServiceHost", False),  # three letters more: another key
    ],
)
def test_one_typo(word: str, known: str, typo: bool) -> None:
    assert one_typo(word, known) is typo


def test_a_typo_is_of_a_key_at_the_same_place_only() -> None:
    # `enabled` is a key Iluvatar sets under hubble, not under ipam: there `enabeld` is the chart's to judge.
    assert list(chart_values._typos({"ipam": {"enabeld": True}}, chart_values.CILIUM, "v")) == []
    assert [p.path for p in chart_values._typos({"hubble": {"enabeld": True}}, chart_values.CILIUM, "v")] == ["v.hubble.enabeld"]
