"""stacks.chart_owned: every key Iluvatar's chart values set is owned or left to the user on purpose, and an owned key's
value is refused only where it breaks the layer relying on it."""

from __future__ import annotations

import ast
import copy
import inspect
import textwrap
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from plans import cilium, gitops, identity, metrics
from plans.merge import deep_merge
from stacks import chart_owned, load_stack_file, rules
from stacks.model import StackConfig
from tests.edit import HOMELAB, MINIMAL, RK1, edit, homelab_doc, write_stack
from tools import upstream


def _leaves(values: Mapping[str, Any], under: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for key, value in values.items():
        if isinstance(value, Mapping) and value:
            yield from _leaves(value, (*under, str(key)))
        else:
            yield (*under, str(key))


def _stacks() -> list[StackConfig]:
    return [load_stack_file(path) for path in (HOMELAB, RK1, MINIMAL)]


def _source_keys(*builders: Callable[..., Any]) -> set[tuple[str, ...]]:
    """Every key path the builders' source can set, under any condition: read from their syntax, not from a stack's run,
    so a key set only in a branch no fixture stack takes is held to the tables too."""
    found: set[tuple[str, ...]] = set()
    for builder in builders:
        found |= _KeyReader(builder).keys
    return found


class _KeyReader:
    """The key paths of a values builder: its dict literals, the local dicts placed in them, and the keys assigned
    through subscripts (`values["configs"]["ssh"] = {...}`), each at its place in the values it returns."""

    def __init__(self, builder: Callable[..., Any]) -> None:
        fn = ast.parse(textwrap.dedent(inspect.getsource(builder))).body[0]
        self.globals = builder.__globals__
        self.keys: set[tuple[str, ...]] = set()
        self.at: dict[str, set[tuple[str, ...]]] = {}  # a local dict may be placed at more than one key
        self.literals: dict[str, list[ast.expr]] = {}
        for node in ast.walk(fn):
            if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
                for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                    if isinstance(target, ast.Name):
                        self.literals.setdefault(target.id, []).append(node.value)
        self.place("values", ())
        for node in ast.walk(fn):
            if isinstance(node, ast.Return) and node.value is not None:
                self.root(node.value)
        for _ in range(3):  # a subscript's base may be placed by a later one
            for node in ast.walk(fn):
                if isinstance(node, ast.Assign):
                    for target in node.targets:
                        self.subscript(target, node.value)

    def root(self, node: ast.expr) -> None:
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "deep_merge":
            for arg in node.args:
                self.root(arg)
        elif isinstance(node, ast.Dict | ast.Name):
            self.expr(node, ())

    def place(self, name: str, path: tuple[str, ...]) -> None:
        if path in self.at.setdefault(name, set()):
            return
        self.at[name].add(path)
        for value in self.literals.get(name, []):
            if isinstance(value, ast.Dict):
                self.expr(value, path)

    def expr(self, node: ast.expr, path: tuple[str, ...]) -> None:
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if key is None:
                    self.expr(value, path)
                elif isinstance(key, ast.Constant) and isinstance(key.value, str):
                    self.expr(value, (*path, key.value))
                else:
                    self.keys.add(path)
            return
        if isinstance(node, ast.Name) and node.id in self.literals and any(isinstance(v, ast.Dict) for v in self.literals[node.id]):
            self.place(node.id, path)
            return
        if isinstance(node, ast.Name) and isinstance(self.globals.get(node.id), Mapping):
            self.keys |= {(*path, *leaf) for leaf in _leaves(self.globals[node.id])}
            return
        if isinstance(node, ast.Call) and len(node.args) == 1 and ast.unparse(node.func) in ("dict", "copy.deepcopy", "deepcopy"):
            self.expr(node.args[0], path)
            return
        if path:
            self.keys.add(path)

    def subscript(self, target: ast.expr, value: ast.expr) -> None:
        keys: list[str] = []
        while isinstance(target, ast.Subscript) and isinstance(target.slice, ast.Constant) and isinstance(target.slice.value, str):
            keys.insert(0, target.slice.value)
            target = target.value
        if keys and isinstance(target, ast.Name):
            for path in list(self.at.get(target.id, ())):
                self.expr(value, (*path, *keys))


CILIUM_BUILDERS = (cilium.helm_values, metrics.cilium)
ARGOCD_BUILDERS = (gitops.helm_values, identity.argocd_values, metrics.argocd)


def test_every_cilium_key_the_plan_sets_is_owned_or_left_to_the_user() -> None:
    run = {leaf for stack in _stacks() for leaf in _leaves(cilium.helm_values(stack))}
    set_ = _source_keys(*CILIUM_BUILDERS)
    assert run <= set_  # the source reader misses no key a run sets
    assert not set(chart_owned.CILIUM) & set(chart_owned.CILIUM_FREE)
    assert set_ - set(chart_owned.CILIUM) - set(chart_owned.CILIUM_FREE) == set()
    # The typed keys' values are owned by arda.cilium's own fields (stacks.rules._cilium_values).
    assert set(rules.CILIUM_TYPED) <= set(chart_owned.CILIUM)


def test_every_argocd_key_the_plans_set_is_owned_or_left_to_the_user() -> None:
    set_: set[tuple[str, ...]] = set()
    for stack in _stacks():
        if stack.gitops is None:
            continue
        for cluster in ("arda", "ainur"):
            set_ |= set(_leaves(gitops.helm_values(stack, cluster, identity.argocd_values(stack, cluster, "CA"))))
    assert set_ <= _source_keys(*ARGOCD_BUILDERS)  # the source reader misses no key a run sets
    set_ = _source_keys(*ARGOCD_BUILDERS)
    assert not set(chart_owned.ARGOCD) & set(chart_owned.ARGOCD_FREE)
    assert set_ - set(chart_owned.ARGOCD) - set(chart_owned.ARGOCD_FREE) == set()


def test_the_cilium_pool_default_is_the_pinned_charts() -> None:
    for version, pool in rules.CILIUM_POOL_DEFAULT.items():
        values = yaml.safe_load((upstream.chart("cilium", version) / "values.yaml").read_text())
        assert values["ipam"]["mode"] == "cluster-pool"
        assert tuple(values["ipam"]["operator"][rules.CILIUM_POOL_KEY]) == pool


def _layers(stack: StackConfig, cilium_values: dict[str, Any] | None = None, argocd_values: dict[str, Any] | None = None) -> chart_owned.Layers:
    arda = stack.arda.model_copy(update={"cilium": stack.arda.cilium.model_copy(update={"values": cilium_values or {}})})
    ops = stack.gitops
    if ops is not None and argocd_values is not None:
        ops = ops.model_copy(update={"argocd": ops.argocd.model_copy(update={"values": argocd_values})})
    return chart_owned.Layers(arda, ops, stack.network, stack.ainur, stack.identity)


@pytest.mark.parametrize(
    "values",
    [
        {"kubeProxyReplacement": True},
        {"kubeProxyReplacement": "true"},
        {"k8sServiceHost": "127.0.0.1"},
        {"k8sServicePort": 7445},
        {"l2announcements": {"enabled": True}},
        {"ipv4NativeRoutingCIDR": "10.244.0.0/16", "routingMode": "native"},
        {"ipv4NativeRoutingCIDR": "10.244.0.0/16", "routingMode": "native", "autoDirectNodeRoutes": True},
        {"routingMode": "tunnel", "autoDirectNodeRoutes": False},
        {"enableIPv4Masquerade": None},
        {"k8s": {"apiServerURLs": "https://192.168.0.20:6443 https://localhost:7445"}},
        {"ipam": {"mode": "cluster-pool", "operator": {"clusterPoolIPv4PodCIDRList": ["10.200.0.0/16"]}}},
        {"k8s": {"apiServerURLs": None}},
        {"k8s": {"apiServerURLs": ""}},
        {"autoDirectNodeRoutes": "false"},
        {"routingMode": "tunnel", "autoDirectNodeRoutes": "False"},
        {"ipMasqAgent": {"enabled": True, "config": {"nonMasqueradeCIDRs": ["10.244.0.0/16"]}}, "bpf": {"masquerade": True}},
        {"ipMasqAgent": {"enabled": False}},
    ],
)
def test_a_cilium_value_that_keeps_its_layer_working_is_taken(values: dict[str, Any]) -> None:
    assert chart_owned.check(_layers(load_stack_file(HOMELAB), values)) == []


def test_arda_own_vip_at_the_api_servers_port_is_taken() -> None:
    stack = load_stack_file(HOMELAB)
    assert chart_owned.check(_layers(stack, {"k8sServiceHost": str(stack.arda.vip), "k8sServicePort": 6443})) == []
    assert [str(p) for p in chart_owned.check(_layers(stack, {"k8sServiceHost": "192.168.0.20"}))] == [
        "iluvatar:arda.cilium.values.k8sServiceHost: 192.168.0.20 (port 7445) is Arda's VIP at a port its API server does not "
        "listen on (it listens on 6443); Iluvatar sets localhost port 7445 (KubePrism, Talos's API proxy on every Arda "
        "machine), because Arda runs no kube-proxy and Cilium's agents must reach Arda's API server before any Service "
        "works: they would never start, and Arda would have no pod network; remove k8sServiceHost and k8sServicePort (or "
        "write Arda's VIP 192.168.0.20 with k8sServicePort 6443)"
    ]
    assert [str(p) for p in chart_owned.check(_layers(stack, {"k8sServiceHost": "192.168.0.21"}))] == [
        "iluvatar:arda.cilium.values.k8sServiceHost: 192.168.0.21 (port 7445) is neither KubePrism (localhost, port 7445) "
        "nor Arda's VIP 192.168.0.20 on port 6443; Iluvatar sets localhost port 7445 (KubePrism, Talos's API proxy on "
        "every Arda machine), because Arda runs no kube-proxy and Cilium's agents must reach Arda's API server before any "
        "Service works: they would never start, and Arda would have no pod network; remove k8sServiceHost and "
        "k8sServicePort (or write Arda's VIP 192.168.0.20 with k8sServicePort 6443)"
    ]


def test_kube_proxy_replacement_off_is_taken_with_kube_proxy_on() -> None:
    stack = load_stack_file(HOMELAB)
    arda = stack.arda.model_copy(
        update={
            "patches": [{"cluster": {"proxy": {"disabled": False}}}],
            "cilium": stack.arda.cilium.model_copy(update={"values": {"kubeProxyReplacement": False}}),
        }
    )
    assert chart_owned.check(chart_owned.Layers(arda, stack.gitops, stack.network, stack.ainur, stack.identity)) == []


@pytest.mark.parametrize(
    "values",
    [
        {"configs": {"cm": {"application.resourceTrackingMethod": "annotation+label"}, "rbac": {"policy.default": "role:readonly"}}},
        {"global": {"hostAliases": [{"ip": "192.168.0.16", "hostnames": ["dex.iluvatar.home.arpa"]}, {"ip": "192.168.0.5", "hostnames": ["nas"]}]}},
    ],
)
def test_an_argocd_value_that_keeps_its_layer_working_is_taken(values: dict[str, Any]) -> None:
    assert chart_owned.check(_layers(load_stack_file(HOMELAB), argocd_values=values)) == []


def test_argocd_url_is_taken_where_it_is_the_one_dex_redirects_to() -> None:
    stack = load_stack_file(HOMELAB)
    alone = _layers(stack, argocd_values={"configs": {"cm": {"url": "https://argocd.iluvatar.home.arpa"}}})
    assert len(chart_owned.check(alone)) == 1  # the Ainur's Argo CD takes the same url
    without_ainur = chart_owned.Layers(alone.arda, alone.gitops, alone.network, None, alone.identity)
    assert chart_owned.check(without_ainur) == []


def test_identity_keys_are_free_without_identity() -> None:
    stack = load_stack_file(HOMELAB)
    layers = _layers(
        stack, argocd_values={"configs": {"cm": {"url": "https://argo.example.com", "oidc.config": "x"}, "params": {"server.insecure": False}}}
    )
    assert chart_owned.check(chart_owned.Layers(layers.arda, layers.gitops, layers.network, layers.ainur, None)) == []


@pytest.mark.parametrize(
    ("cilium_values", "argocd_values"),
    [
        ({"ipv4NativeRoutingCIDR": None}, None),
        (None, {"crds": {"keep": None}}),
        (None, {"configs": {"cm": {"application.resourceTrackingMethod": None}}}),
    ],
)
def test_a_null_that_leaves_the_charts_default_iluvatar_relies_on_is_taken(
    cilium_values: dict[str, Any] | None, argocd_values: dict[str, Any] | None
) -> None:
    assert chart_owned.check(_layers(load_stack_file(HOMELAB), cilium_values, argocd_values)) == []


def test_a_null_at_an_owned_key_is_refused() -> None:
    stack = load_stack_file(HOMELAB)
    cilium_null = chart_owned.check(_layers(stack, {"kubeProxyReplacement": None, "l2announcements": {"enabled": None}}))
    assert [p.path for p in cilium_null] == [
        "iluvatar:arda.cilium.values.kubeProxyReplacement",
        "iluvatar:arda.cilium.values.l2announcements.enabled",
    ]
    argocd_null = chart_owned.check(
        _layers(stack, argocd_values={"configs": {"params": {"server.insecure": None}, "cm": {"oidc.config": None}}, "global": {"hostAliases": None}})
    )
    assert [str(p).split(": ", 2)[:2] for p in argocd_null] == [
        ['iluvatar:gitops.argocd.values.configs.params["server.insecure"]', "null"],
        ['iluvatar:gitops.argocd.values.configs.cm["oidc.config"]', "null"],
        ["iluvatar:gitops.argocd.values.global.hostAliases", "null"],
    ]


def test_a_configmaps_create_is_read_as_the_charts_if_reads_it() -> None:
    stack = load_stack_file(HOMELAB)
    for kept in (True, "false", "yes"):
        values = {"configs": {name: {"create": kept} for name in ("cm", "params", "rbac")}}
        assert chart_owned.check(_layers(stack, argocd_values=values)) == []
    gone = chart_owned.check(_layers(stack, argocd_values={"configs": {"cm": {"create": 0}, "params": {"create": ""}}}))
    assert [p.path for p in gone] == ["iluvatar:gitops.argocd.values.configs.cm.create", "iluvatar:gitops.argocd.values.configs.params.create"]


def test_params_and_rbac_configmaps_are_free_without_identity() -> None:
    layers = _layers(load_stack_file(HOMELAB), argocd_values={"configs": {name: {"create": False} for name in ("cm", "params", "rbac")}})
    without = chart_owned.Layers(layers.arda, layers.gitops, layers.network, layers.ainur, None)
    assert [p.path for p in chart_owned.check(without)] == ["iluvatar:gitops.argocd.values.configs.cm.create"]


@pytest.mark.parametrize(
    "values",
    [
        {"configs": {"params": {"server.insecure": True}}},
        {"server": {"extraArgs": ["--insecure"]}},
        {"server": {"extraArgs": ["--insecure=true", "--loglevel=debug"]}},
    ],
)
def test_argocd_insecure_is_taken_only_without_the_ainurs_argocd(values: dict[str, Any]) -> None:
    # The Ainur's Argo CD takes the same values and serves TLS itself, behind a front door that passes TLS through.
    layers = _layers(load_stack_file(HOMELAB), argocd_values=values)
    assert len(chart_owned.check(layers)) == 1
    assert chart_owned.check(chart_owned.Layers(layers.arda, layers.gitops, layers.network, None, layers.identity)) == []


def test_argocd_insecure_off_is_refused_on_arda_alone() -> None:
    stack = load_stack_file(HOMELAB)
    for values in ({"configs": {"params": {"server.insecure": False}}}, {"server": {"extraArgs": ["--insecure=false"]}}):
        layers = _layers(stack, argocd_values=values)
        alone = chart_owned.Layers(layers.arda, layers.gitops, layers.network, None, layers.identity)
        assert len(chart_owned.check(alone)) == 1
    layers = _layers(stack, argocd_values={"server": {"extraArgs": ["--insecure=false"]}})
    assert [str(p) for p in chart_owned.check(chart_owned.Layers(layers.arda, layers.gitops, layers.network, None, layers.identity))] == [
        "iluvatar:gitops.argocd.values.server.extraArgs: [--insecure=false] turns --insecure off: Iluvatar sets it on Arda's "
        "Argo CD (configs.params.server.insecure), whose server envoy-internal reaches in plain HTTP after ending TLS "
        "(plans.identity.argocd_route); without it the server answers every plain request with a redirect to https, a loop, "
        "so Argo CD's UI and CLI never load; remove the flag"
    ]


def test_kube_proxy_replacement_is_read_as_the_charts_text() -> None:
    stack = load_stack_file(HOMELAB)
    for spelled in ("True", "TRUE", "strict"):
        said = [str(p) for p in chart_owned.check(_layers(stack, {"kubeProxyReplacement": spelled}))]
        assert said == [
            f"iluvatar:arda.cilium.values.kubeProxyReplacement: {spelled}: the chart takes only true or false here, exactly "
            "as written (its template fails on any other text, in the middle of pulumi up), and Iluvatar sets true, because "
            "Arda's Talos config runs no kube-proxy; remove it"
        ]


_HUBBLE = {"enabled": False}


def _builder_with_keys_in_branches(stack: Any, ssh: bool) -> dict[str, Any]:
    # The shape of the plans' builders, with a key under each kind of condition a fixture stack may never take.
    cm: dict[str, Any] = {"url": "x"}
    values: dict[str, Any] = {"configs": {"cm": cm}, "hubble": copy.deepcopy(_HUBBLE)}
    if not stack:
        values["bpf"] = {"masquerade": True}
    if ssh:
        values["configs"]["ssh"] = {"knownHosts": "x"}
        cm["exec.enabled"] = True
    return deep_merge(values, {"operator": dict(cm)})


def test_the_source_reader_finds_keys_set_only_in_a_branch() -> None:
    assert _source_keys(_builder_with_keys_in_branches) == {
        ("configs", "cm", "url"),
        ("configs", "cm", "exec.enabled"),
        ("configs", "ssh", "knownHosts"),
        ("bpf", "masquerade"),
        ("hubble", "enabled"),
        ("operator", "url"),
        ("operator", "exec.enabled"),
    }


@pytest.mark.parametrize(
    "values",
    [
        # The fixes the pool refusals offer: a multi-pool default pool with a share for every machine, and ipam.mode null
        # with a pool clear of the stack's networks.
        {
            "ipam": {
                "mode": "multi-pool",
                "operator": {"autoCreateCiliumPodIPPools": {"default": {"ipv4": {"cidrs": ["10.200.0.0/16"], "maskSize": 24}}}},
            }
        },
        {"ipam": {"mode": None, "operator": {"clusterPoolIPv4PodCIDRList": ["10.200.0.0/16"]}}},
    ],
)
def test_a_cilium_pool_that_serves_every_machine_is_taken(values: dict[str, Any], tmp_path: Path) -> None:
    path = write_stack(tmp_path, edit(homelab_doc(), {"iluvatar:arda.cilium": {"values": values}}, None))
    load_stack_file(path, require_secrets=True)
