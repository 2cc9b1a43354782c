"""The chart values a stack passes through (`arda.cilium.values`, `gitops.argocd.values`), checked at preview as far as
the program can without the chart.

What would check them whole is the chart's own values schema, closed (tools/upstream `values_errors`): Helm reads
it only in the middle of `pulumi up`, and for Cilium it takes any key. The program cannot read it at preview: the
chart comes from its project's Go module, which preview has neither the network nor Go to fetch, and nothing
fetched is kept in this repository. So a typo in a key only the chart knows still reaches `pulumi up` (the tests
check the program's own values against each pinned chart's schema: tests/plans/test_cilium.py).

What the program knows offline is the keys its own values set (plans.cilium, plans.gitops, plans.identity, as
tables here that tests/stacks/test_chart_values.py keeps equal to what they set). A user's key one typo away from
one of those, at the same place (another case, a letter dropped or added, two swapped: `kubeProxyReplacment`,
`hubble.relay.enabeld`, `enable` for `enabled`), is refused with the key meant. The same test checks, against each
pinned chart's values, schema and templates, that no key the chart itself takes is one typo from a key here: at the
pinned versions the rule refuses no valid key.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

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


def _typos(values: Mapping[str, Any], known: frozenset[tuple[str, ...]], base: str, under: tuple[str, ...] = ()) -> Iterator[Problem]:
    siblings = sorted(p[-1] for p in known if p[:-1] == under)
    for key, value in values.items():
        here = (*under, str(key))
        meant = next((s for s in siblings if one_typo(str(key), s)), None)
        if here not in known and here not in CHARTS_OWN and meant is not None:
            yield Problem(
                config_path(base, here),
                f"{key} is one typo from {meant}, a key Iluvatar's own values set here; did you mean {meant}: {show(value)}? "
                "(a key only the chart knows is checked by Helm alone, in the middle of pulumi up)",
            )
        elif isinstance(value, Mapping):
            yield from _typos(value, known, base, here)


def check(arda: Arda | None, gitops: GitOps | None) -> list[Problem]:
    """The keys of the chart values given that are a typo of one the program's own values set."""
    out: list[Problem] = []
    if arda is not None:
        out += _typos(arda.cilium.values, CILIUM, "iluvatar:arda.cilium.values")
    if gitops is not None:
        out += _typos(gitops.argocd.values, ARGOCD, "iluvatar:gitops.argocd.values")
    return out
