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
from stacks.model import Arda, Cilium
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


# --- Cilium's own values schema, kept as data ----------------------------------------------------------------------


def test_the_kept_schema_is_the_pinned_charts_own_file() -> None:
    for chart, version in chart_values.KEPT:
        folder = upstream.chart(chart, version)
        kept = chart_values.SCHEMAS / f"{chart}-{version}.values.schema.json"
        assert kept.read_bytes() == (folder / "values.schema.json").read_bytes()
        read = (chart_values.SCHEMAS / f"{chart}-{version}.template-values.txt").read_text().split()
        assert read == sorted(".".join(p) for p in upstream.template_value_paths(folder))


def test_every_schema_in_the_folder_is_kept_and_the_default_cilium_has_one() -> None:
    files = {p.name for p in chart_values.SCHEMAS.iterdir()}
    assert files == {f"{c}-{v}.{kind}" for c, v in chart_values.KEPT for kind in ("values.schema.json", "template-values.txt")}
    assert ("cilium", Cilium().version) in chart_values.KEPT


def _cilium(values: dict[str, Any], version: str = "1.18.4") -> list[tuple[str, str]]:
    arda = Arda.model_validate(
        {
            "clusterName": "arda",
            "vip": "192.168.0.10",
            "talosVersion": "v1.12.4",
            "kubernetesVersion": "v1.34.1",
            "cilium": {"version": version, "values": values},
        }
    )
    return [(p.path, p.message) for p in chart_values.check(arda, None)]


BASE = "iluvatar:arda.cilium.values"


@pytest.mark.parametrize(
    ("values", "problems"),
    [
        # A key one typo from one the chart's schema names at the same place (Iluvatar sets none of them).
        (
            {"hubble": {"metrics": {"enabeld": ["dns"]}}},
            [
                (
                    f"{BASE}.hubble.metrics.enabeld",
                    "enabeld is not a key of Cilium 1.18.4's values, and one typo from enabled, which its values schema or templates read "
                    "here; did you mean enabled: [dns]? (Helm would drop enabeld without a word)",
                )
            ],
        ),
        # In a list's items, by the item schema's alternatives (a toleration's `operator`).
        (
            {"tolerations": [{"operator": "Exists"}, {"operatr": "Exists"}]},
            [
                (
                    f"{BASE}.tolerations[1].operatr",
                    "operatr is not a key of Cilium 1.18.4's values, and one typo from operator, which its values schema or templates "
                    "read here; did you mean operator: Exists? (Helm would drop operatr without a word)",
                )
            ],
        ),
        # A key only the templates read (values.yaml comments it, so the generated schema leaves it out).
        (
            {"loadBalancer": {"algoritm": "maglev"}},
            [
                (
                    f"{BASE}.loadBalancer.algoritm",
                    "algoritm is not a key of Cilium 1.18.4's values, and one typo from algorithm, which its values schema or templates "
                    "read here; did you mean algorithm: maglev? (Helm would drop algoritm without a word)",
                )
            ],
        ),
        # What Helm's own check of the schema refuses in the middle of `pulumi up`, said at preview.
        (
            {"operator": {"replicas": "two"}},
            [
                (
                    f"{BASE}.operator.replicas",
                    "two is not a whole number, which Cilium 1.18.4's values schema takes here; Helm would refuse it in the middle of pulumi up",
                )
            ],
        ),
        (
            {"bpf": {"masquerade": "yes"}},
            [
                (
                    f"{BASE}.bpf.masquerade",
                    "yes is not null or true or false, which Cilium 1.18.4's values schema takes here; Helm would refuse it in the middle of pulumi up",
                )
            ],
        ),
        (
            {"kubeProxyReplacement": 1},
            [
                (
                    f"{BASE}.kubeProxyReplacement",
                    "1 is not text or true or false, which Cilium 1.18.4's values schema takes here; Helm would refuse it in the middle of pulumi up",
                )
            ],
        ),
        # A value its enum does not list; one that no alternative of a oneOf takes; a list item's own key of the wrong type.
        (
            {"identityManagementMode": "both-ways"},
            [
                (
                    f"{BASE}.identityManagementMode",
                    "both-ways is not one of agent, operator, both, which Cilium 1.18.4's values schema takes here; Helm would refuse it "
                    "in the middle of pulumi up",
                )
            ],
        ),
        (
            {"envoy": {"log": {"defaultLevel": "verbose"}}},
            [
                (
                    f"{BASE}.envoy.log.defaultLevel",
                    "verbose is not null or one of trace, debug, info, warning, error, critical, off, which Cilium 1.18.4's values schema "
                    "takes here; Helm would refuse it in the middle of pulumi up",
                )
            ],
        ),
        (
            {"tolerations": [{"operator": 5}]},
            [
                (
                    f"{BASE}.tolerations[0].operator",
                    "5 is not text, which Cilium 1.18.4's values schema takes here; Helm would refuse it in the middle of pulumi up",
                )
            ],
        ),
        # Valid: Kubernetes fields the item schema does not list, a free-form map, a key set to null (Helm's way to drop a
        # default), a key near none the chart names (the chart's to judge).
        ({"tolerations": [{"key": "k", "operator": "Equal", "value": "v", "effect": "NoSchedule"}]}, []),
        ({"extraConfig": {"anything": "goes"}, "cni": {"exclusive": None}, "securityContext": {"privileged": True}}, []),
        ({"frobnicate": 1}, []),
    ],
)
def test_cilium_values_are_checked_against_the_charts_own_schema(values: dict[str, Any], problems: list[tuple[str, str]]) -> None:
    assert _cilium(values) == problems


def test_a_cilium_version_with_no_schema_kept_is_checked_against_iluvatars_own_keys() -> None:
    # 1.18.5's schema is not kept: a typo of a key Iluvatar sets is still refused, a wrong type is Helm's.
    assert _cilium({"kubeProxyReplacment": True, "operator": {"replicas": "two"}}, "1.18.5") == [
        (
            f"{BASE}.kubeProxyReplacment",
            "kubeProxyReplacment is one typo from kubeProxyReplacement, a key Iluvatar's own values set here; did you mean "
            "kubeProxyReplacement: true? (a key only the chart knows is checked by Helm alone, in the middle of pulumi up)",
        )
    ]


def test_the_values_iluvatar_sets_pass_the_charts_schema() -> None:
    # Given as a user's values, the program's own (every stack it ships) are all the chart takes: the check refuses none.
    for path in (HOMELAB, RK1, MINIMAL):
        assert _cilium(cilium.helm_values(load_stack_file(path))) == []


def test_the_keys_known_at_a_place_are_the_schemas_and_the_templates_together() -> None:
    chart = chart_values.chart_schema("cilium", "1.18.4")
    assert chart is not None
    schema_only = set(chart.schema["properties"]["loadBalancer"]["properties"])
    assert "algorithm" not in schema_only and "acceleration" in schema_only  # values.yaml only comments `algorithm`
    read = {path[1] for path in chart.read if len(path) > 1 and path[0] == "loadBalancer"}
    assert "algorithm" in read and chart.known(("loadBalancer",)) == schema_only | read
    assert chart.known(("tolerations", 0)) == {"operator"}  # a list's items, through the item schema's anyOf
    assert chart_values.chart_schema("cilium", "1.18.5") is None


def test_a_typo_echoes_a_short_plain_value_and_never_a_block_or_a_long_text() -> None:
    # A mistyped key over a block (Cilium's tls.ca) or a long text (a base64 private key) is named, its value never
    # printed back into the preview's error.
    key = "LS0tLS1CRUdJTiBFQyBQUklWQVRFIEtFWS0tLS0tCk1IY0NBUUVFSUNrZXlrZXlrZXk="
    schema = chart_values.chart_schema("cilium", "1.18.4")
    assert schema is not None
    problems = chart_values._schema_typos(schema, {"tsl": {"ca": {"key": key}}, "hubble": {"enabeld": True}}, "x")
    assert [p.message for p in problems] == [
        "tsl is not a key of Cilium 1.18.4's values, and one typo from tls, which its values schema or templates read here; "
        "did you mean tls, with the value you gave tsl? (Helm would drop tsl without a word)",
        "enabeld is not a key of Cilium 1.18.4's values, and one typo from enabled, which its values schema or templates read "
        "here; did you mean enabled: true? (Helm would drop enabeld without a word)",
    ]
    assert all(key not in p.message for p in problems)
    assert chart_values._meant("key", "kye", key) == "did you mean key, with the value you gave kye?"
    assert chart_values._meant("port", "prot", 4240) == "did you mean port: 4240?"
    assert chart_values._meant("enabled", "enabeld", ["dns", "drop"]) == "did you mean enabled: [dns, drop]?"
    assert chart_values._meant("a", "b", "x" * 40) == f"did you mean a: {'x' * 40}?"
    assert chart_values._meant("a", "b", "x" * 41) == "did you mean a, with the value you gave b?"
