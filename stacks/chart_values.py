"""The chart values a stack passes through (`arda.cilium.values`, `gitops.argocd.values`), checked at preview.

Helm checks a chart's values against the chart's own values schema only in the middle of `pulumi up`, and a key the
chart does not read it drops without a word. Of the two charts a stack passes values to, Cilium publishes a values
schema and Argo CD's chart (argo-helm) does not (docs/reference/validation.md#chart-values):

- **Cilium**: its values.schema.json at the pinned chart version is kept here as data (`chart_schemas/`, with the
  `.Values` paths the chart's templates read, which its generated schema leaves out where values.yaml only comments
  them); tests/stacks/test_chart_values.py holds both equal to the pinned chart's own files. The user's values are
  checked against that schema as Helm checks them (types, enums, at each key's path), and a key one typo from a key the
  schema or a template names at the same place is refused with the key meant (Cilium's schema takes any key, so Helm
  would drop it without a word). A key near none is left to the chart: its schema's item and object shapes are
  derived from values.yaml's examples (a toleration lists only `operator`), so closing it would refuse valid
  Kubernetes fields. A Cilium version with no schema kept here is checked as Argo CD is.
- **Argo CD** (and Cilium at another version): a user's key one typo from a key the program's own values set, at the
  same place (another case, a letter dropped or added, two swapped: `kubeProxyReplacment`, `enabeld`), is refused with
  the key meant (the tables below, which tests/stacks/test_chart_values.py keeps equal to what plans.cilium,
  plans.gitops and plans.identity set). The same test checks, against each pinned chart's values, schema and
  templates, that no key the chart itself takes is one typo from a key here: at the pinned versions the rule refuses
  no valid key. Any other key only the chart knows is checked by Helm alone.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema

from stacks import pins
from stacks.errors import Problem, show
from stacks.model import Arda, GitOps
from stacks.secrets import config_path

# Every key path the program's own Cilium values set (plans.cilium.helm_values, with monitoring's).
CILIUM: frozenset[tuple[str, ...]] = frozenset(
    tuple(p.split("/"))
    for p in [
        "cgroup",
        "cgroup/autoMount",
        "cgroup/autoMount/enabled",
        "cgroup/hostRoot",
        "hubble",
        "hubble/enabled",
        "hubble/relay",
        "hubble/relay/enabled",
        "hubble/ui",
        "hubble/ui/enabled",
        "ipam",
        "ipam/mode",
        "k8sClientRateLimit",
        "k8sClientRateLimit/burst",
        "k8sClientRateLimit/qps",
        "k8sServiceHost",
        "k8sServicePort",
        "kubeProxyReplacement",
        "l2announcements",
        "l2announcements/enabled",
        "loadBalancer",
        "loadBalancer/algorithm",
        "operator",
        "operator/prometheus",
        "operator/prometheus/enabled",
        "operator/prometheus/serviceMonitor",
        "operator/prometheus/serviceMonitor/enabled",
        "operator/replicas",
        "prometheus",
        "prometheus/enabled",
        "prometheus/serviceMonitor",
        "prometheus/serviceMonitor/enabled",
        "prometheus/serviceMonitor/trustCRDsExist",
        "securityContext",
        "securityContext/capabilities",
        "securityContext/capabilities/ciliumAgent",
        "securityContext/capabilities/cleanCiliumState",
    ]
)
# Every key path the program's own Argo CD values set, on either cluster (plans.gitops.helm_values, with
# plans.identity.argocd_values and monitoring's); argocd-cm's keys are dotted names, one key each.
ARGOCD: frozenset[tuple[str, ...]] = frozenset(
    tuple(p.split("/"))
    for p in [
        "configs",
        "configs/cm",
        "configs/cm/admin.enabled",
        "configs/cm/application.resourceTrackingMethod",
        "configs/cm/kustomize.buildOptions",
        "configs/cm/oidc.config",
        "configs/cm/url",
        "configs/params",
        "configs/params/server.insecure",
        "configs/rbac",
        "configs/rbac/policy.csv",
        "configs/rbac/policy.default",
        "configs/rbac/scopes",
        "configs/secret",
        "configs/secret/createSecret",
        "controller",
        "controller/metrics",
        "controller/metrics/enabled",
        "controller/metrics/serviceMonitor",
        "controller/metrics/serviceMonitor/enabled",
        "crds",
        "crds/install",
        "crds/keep",
        "dex",
        "dex/enabled",
        "global",
        "global/hostAliases",
        "global/networkPolicy",
        "global/networkPolicy/create",
        "notifications",
        "notifications/enabled",
        "redisSecretInit",
        "redisSecretInit/enabled",
        "repoServer",
        "repoServer/metrics",
        "repoServer/metrics/enabled",
        "repoServer/metrics/serviceMonitor",
        "repoServer/metrics/serviceMonitor/enabled",
        "server",
        "server/metrics",
        "server/metrics/enabled",
        "server/metrics/serviceMonitor",
        "server/metrics/serviceMonitor/enabled",
    ]
)


# Keys the pinned charts take that are one typo from one of ours: never refused (argo-cd's `configs.cmp`, its config
# management plugins, beside `configs.cm`). The test finds every such pair in the charts and keeps this list whole.
CHARTS_OWN: frozenset[tuple[str, ...]] = frozenset({("configs", "cmp")})


def one_typo(word: str, known: str) -> bool:
    """Whether `word` is `known` mistyped: another case, one letter dropped or added, or two neighbours swapped. A digit
    changed is no typo here (Cilium's `ipv4` beside `ipv6`), nor is a letter changed for another (two real keys)."""
    if word == known:
        return False
    if word.lower() == known.lower():
        return True
    short, long_ = sorted((word, known), key=len)
    if len(long_) - len(short) == 1:
        return any(long_[:i] + long_[i + 1 :] == short and long_[i].isalpha() for i in range(len(long_)))
    if len(word) == len(known):
        diff = [i for i in range(len(word)) if word[i] != known[i]]
        return len(diff) == 2 and diff[1] == diff[0] + 1 and word[diff[0]] == known[diff[1]] and word[diff[1]] == known[diff[0]]
    return False


def _meant(meant: str, key: object, value: Any) -> str:
    """`did you mean <key>: <value>?`, the value echoed only when short (a switch, a port, `[dns]`): a block or a long
    text (a base64 private key under a mistyped `key`) is never printed back into a preview's error and the logs around it."""
    shown = show(value)
    return f"did you mean {meant}: {shown}?" if len(shown) <= SHOWN_AT_MOST else f"did you mean {meant}, with the value you gave {key}?"


# The longest value a typo's message repeats.
SHOWN_AT_MOST = 40


def _typos(values: Mapping[str, Any], known: frozenset[tuple[str, ...]], base: str, under: tuple[str, ...] = ()) -> Iterator[Problem]:
    siblings = sorted(p[-1] for p in known if p[:-1] == under)
    for key, value in values.items():
        here = (*under, str(key))
        meant = next((s for s in siblings if one_typo(str(key), s)), None)
        if here not in known and here not in CHARTS_OWN and meant is not None:
            yield Problem(
                config_path(base, here),
                f"{key} is one typo from {meant}, a key Iluvatar's own values set here; {_meant(meant, key, value)} "
                "(a key only the chart knows is checked by Helm alone, in the middle of pulumi up)",
            )
        elif isinstance(value, Mapping):
            yield from _typos(value, known, base, here)


# --- A chart's own values schema, as data --------------------------------------------------------------------------

SCHEMAS = Path(__file__).resolve().parent / "chart_schemas"
# The charts whose values.schema.json is kept here, by chart and version (`<chart>-<version>.values.schema.json`, and
# `<chart>-<version>.template-values.txt`, the `.Values` paths its templates read, one a line).
KEPT = {("cilium", pins.CHARTS["cilium"])}


@dataclass(frozen=True)
class ChartSchema:
    """A chart's values schema as Helm reads it, and the `.Values` paths its templates read."""

    chart: str
    version: str
    schema: Mapping[str, Any]
    read: frozenset[tuple[str, ...]]

    @property
    def name(self) -> str:
        return f"{self.chart.capitalize()} {self.version}"

    def known(self, under: tuple[str | int, ...]) -> set[str]:
        """The keys the schema or a template names at a place in the values (a list's items by the schema alone)."""
        nodes: list[Any] = [self.schema]
        for step in under:
            # A schema's alternatives (Cilium's items are `anyOf`) each name keys of the same place.
            nodes = [n.get("items", {}) if isinstance(step, int) else n.get("properties", {}).get(step, {}) for n in _alternatives(nodes)]
        named = {key for n in _alternatives(nodes) for key in n.get("properties", {})}
        if all(isinstance(step, str) for step in under):
            named |= {p[len(under)] for p in self.read if len(p) > len(under) and p[: len(under)] == under}
        return named


def _alternatives(nodes: list[Any]) -> list[Mapping[str, Any]]:
    """The schemas, each with its `anyOf` branches beside it."""
    out: list[Mapping[str, Any]] = []
    for node in nodes:
        if isinstance(node, Mapping):
            out += [node, *(b for b in node.get("anyOf", []) if isinstance(b, Mapping))]
    return out


@functools.cache
def chart_schema(chart: str, version: str) -> ChartSchema | None:
    """The chart's values schema kept here at that version, or None."""
    if (chart, version) not in KEPT:
        return None
    schema = json.loads((SCHEMAS / f"{chart}-{version}.values.schema.json").read_text())
    read = frozenset(tuple(line.split(".")) for line in (SCHEMAS / f"{chart}-{version}.template-values.txt").read_text().split())
    return ChartSchema(chart, version, schema, read)


_TYPES = {
    "boolean": "true or false",
    "integer": "a whole number",
    "number": "a number",
    "string": "text",
    "array": "a list",
    "object": "a mapping",
    "null": "null",
}


def _without_nulls(value: Any) -> Any:
    """The values as Helm validates them: a key set to null removes the chart's default (Helm's coalescing), so it is gone."""
    if isinstance(value, Mapping):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _wanted(error: jsonschema.ValidationError) -> list[str]:
    """What the schema takes where the value failed, in words: its types, its allowed values, each alternative's."""
    if error.validator == "type":
        types = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        return [_TYPES[str(t)] for t in types]  # JSON Schema's seven types, each in _TYPES
    if error.validator == "enum":
        allowed: list[Any] = list(error.validator_value) if isinstance(error.validator_value, list) else []
        return [f"one of {', '.join(show(v) for v in allowed)}"]
    # anyOf, oneOf: every alternative's own failure at this place (Cilium's schema uses no other keyword).
    return [w for sub in error.context or () if sub.absolute_path == error.absolute_path for w in _wanted(sub)] or [error.message]


def _schema_errors(chart: ChartSchema, values: Mapping[str, Any], base: str) -> Iterator[Problem]:
    """What Helm's check of the values schema would refuse in the middle of `pulumi up`, each at its config path."""
    for error in jsonschema.Draft7Validator(chart.schema).iter_errors(_without_nulls(values)):
        # An alternative that failed deeper (a list item's own key) is said where it failed.
        deeper = [sub for sub in error.context or () if len(sub.absolute_path) > len(error.absolute_path)]
        error = jsonschema.exceptions.best_match(deeper) if deeper else error
        said = " or ".join(dict.fromkeys(_wanted(error)))
        yield Problem(
            config_path(base, tuple(error.absolute_path)),
            f"{show(error.instance)} is not {said}, which {chart.name}'s values schema takes here; Helm would refuse it in the middle of pulumi up",
        )


def _schema_typos(chart: ChartSchema, values: Any, base: str, under: tuple[str | int, ...] = ()) -> Iterator[Problem]:
    """A key one typo from a key the chart's schema or templates name at the same place: Helm drops it without a word
    (Cilium's schema takes any key), and what the user meant keeps its default. A key near none is the chart's to judge."""
    if isinstance(values, list):
        for i, item in enumerate(values):
            yield from _schema_typos(chart, item, base, (*under, i))
        return
    if not isinstance(values, Mapping):
        return
    known = chart.known(under)
    for key, value in values.items():
        meant = next((k for k in sorted(known) if one_typo(str(key), k)), None)
        if str(key) not in known and meant is not None:
            yield Problem(
                config_path(base, (*under, str(key))),
                f"{key} is not a key of {chart.name}'s values, and one typo from {meant}, which its values schema or templates read "
                f"here; {_meant(meant, key, value)} (Helm would drop {key} without a word)",
            )
        else:
            yield from _schema_typos(chart, value, base, (*under, str(key)))


# Argo CD's controller as the pinned chart makes it: the upgrader scales it to 0 while a machine is drained, so it does
# not sync against a cluster losing a node (plans.bringup passes it as `--pause`).
ARGOCD_CONTROLLER_NAME = "StatefulSet/argocd/argocd-application-controller"
# The values of Argo CD's chart (argo-cd 10.8.0) that decide where its application controller is: its kind
# (templates/argocd-application-controller/statefulset.yaml:1, deployment.yaml:1: dynamicClusterDistribution), its name
# ("<fullname>-<controller.name>" cut to 52, _helpers.tpl:7-9; the fullname is fullnameOverride, else the release name
# when it contains nameOverride, else "<release>-<nameOverride>", _common.tpl:14-25; values.yaml's nameOverride is
# "argocd") and its namespace (namespaceOverride, else the release's, _helpers.tpl:297-299). The release is "argocd" in
# namespace "argocd" (plans.gitops).
ARGOCD_CONTROLLER_VALUES = (
    ("controller", "dynamicClusterDistribution"),
    ("controller", "name"),
    ("nameOverride",),
    ("fullnameOverride",),
    ("namespaceOverride",),
)


def argocd_controller(values: Mapping[str, Any]) -> str:
    """The application controller the pinned chart makes with `values`, as KIND/NAMESPACE/NAME."""

    def value(*path: str) -> Any:
        node: Any = values
        for key in path:
            node = node.get(key) if isinstance(node, Mapping) else None
        return node

    release = "argocd"
    name = value("nameOverride") or "argocd"
    fullname = str(value("fullnameOverride") or (release if str(name) in release else f"{release}-{name}"))[:63].rstrip("-")
    controller = f"{fullname}-{value('controller', 'name') or 'application-controller'}"[:52].rstrip("-")
    kind = "Deployment" if value("controller", "dynamicClusterDistribution") else "StatefulSet"
    return f"{kind}/{value('namespaceOverride') or release}/{controller}"


def _argocd_controller(values: Mapping[str, Any], base: str) -> Iterator[Problem]:
    made = argocd_controller(values)
    if made == ARGOCD_CONTROLLER_NAME:
        return
    given = [".".join(path) for path in ARGOCD_CONTROLLER_VALUES if argocd_controller(_without(values, path)) != made]
    yield Problem(
        base,
        f"{', '.join(given)} make Argo CD's application controller {made}, not {ARGOCD_CONTROLLER_NAME}, which the upgrader "
        "pauses around every machine's drain (it would refuse each roll, finding no such workload); remove them",
    )


def _without(values: Mapping[str, Any], path: tuple[str, ...]) -> Mapping[str, Any]:
    """`values` without the key at `path`."""
    if path[0] not in values:
        return values
    if len(path) == 1:
        return {k: v for k, v in values.items() if k != path[0]}
    inner = values[path[0]]
    return {**values, path[0]: _without(inner, path[1:])} if isinstance(inner, Mapping) else values


def check(arda: Arda | None, gitops: GitOps | None) -> list[Problem]:
    """The chart values given, against the chart's own values schema where one is kept, else the typos of the keys the
    program's own values set."""
    out: list[Problem] = []
    if arda is not None:
        base = "iluvatar:arda.cilium.values"
        chart = chart_schema("cilium", arda.cilium.version)
        if chart is not None:
            out += sorted([*_schema_typos(chart, arda.cilium.values, base), *_schema_errors(chart, arda.cilium.values, base)], key=lambda p: p.path)
        else:
            out += _typos(arda.cilium.values, CILIUM, base)
    if gitops is not None:
        out += _typos(gitops.argocd.values, ARGOCD, "iluvatar:gitops.argocd.values")
        out += _argocd_controller(gitops.argocd.values, "iluvatar:gitops.argocd.values")
    return out
