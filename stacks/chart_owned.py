"""The chart values Iluvatar owns: keys of `arda.cilium.values` and `gitops.argocd.values` that another layer relies on.

The user's values are merged over Iluvatar's own (plans.cilium.helm_values, plans.gitops.helm_values: they win), and
most keys stay the user's to set. A key is owned when Iluvatar sets it, or relies on the chart's default of it, because
another layer of the stack is built on that value: Talos's config, the LAN's addresses, Dex's clients, envoy-internal.
A user value there is refused only when it breaks that layer, at its key, with the value as written, what Iluvatar sets
and why; a value that keeps the layer working (kube-proxy's replacement on, Arda's own API server) is taken.

Each chart has one table, `CILIUM` and `ARGOCD` (owned key: what Iluvatar sets and for whom), beside the keys its plan
sets and leaves to the user on purpose (`CILIUM_FREE`, `ARGOCD_FREE`, with why): tests/stacks/test_chart_owned.py
holds every key the plans set to be in exactly one of the two, so a new key is owned or left deliberately. The Cilium
keys a typed field of arda.cilium sets (stacks.rules.CILIUM_TYPED: hubble, loadBalancerAlgorithm) are owned by that
field and refused there; Cilium's IPAM mode is the user's, its pod pool checked with the stack's networks
(stacks.rules._cilium_pools).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Network
from typing import Any
from urllib.parse import urlsplit

from stacks import identity as identity_rules
from stacks.errors import Problem, show
from stacks.model import Ainur, Arda, GitOps, Identity, Network
from stacks.rules import CILIUM_POOL_KEY, CILIUM_TYPED, _arda_networks, cilium_ipam_mode
from stacks.secrets import config_path
from stacks.talos_ports import KUBEPRISM_PORT

CILIUM_BASE = "iluvatar:arda.cilium.values"
ARGOCD_BASE = "iluvatar:gitops.argocd.values"
_ABSENT = object()


@dataclass(frozen=True)
class Layers:
    """What the owned keys' checks read of the stack."""

    arda: Arda | None
    gitops: GitOps | None
    network: Network | None
    ainur: Ainur | None
    identity: Identity | None


def _get(values: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = values
    for key in path:
        node = node.get(key, _ABSENT) if isinstance(node, Mapping) else _ABSENT
    return node


def _agent_true(value: Any) -> bool:
    """A value the chart quotes into the agent's ConfigMap, as the agent reads it: Go's strconv.ParseBool, through
    viper's GetBool, takes 1, t, T, TRUE, true and True as true."""
    return str(value) in ("1", "t", "T", "TRUE", "true", "True")


def _true(value: Any) -> bool:
    """A chart's switch as its templates read it: YAML's true, or the text "true" (Cilium's kubeProxyReplacement)."""
    return value is True or (isinstance(value, str) and value.lower() == "true")


# --- Cilium ------------------------------------------------------------------------------------------------------


def _kube_proxy_on(arda: Arda) -> bool:
    """Whether a patch turns Talos's kube-proxy back on (cluster.proxy.disabled false; a later patch's key wins):
    plans.talos turns it off for every Arda machine."""
    disabled = True
    for patch in arda.patches:
        cluster = patch.get("cluster") if "kind" not in patch else None
        proxy = cluster.get("proxy") if isinstance(cluster, dict) else None
        if isinstance(proxy, dict) and isinstance(proxy.get("disabled"), bool):
            disabled = proxy["disabled"]
    return not disabled


def _kube_proxy_replacement(value: Any, layers: Layers) -> str | None:
    assert layers.arda is not None
    # The chart takes the value's text and fails unless it is exactly "true" or "false" (cilium 1.18.4
    # templates/cilium-configmap.yaml:76-82): "True" or "strict" stops pulumi up in the middle, at Helm.
    text = str(value).lower() if isinstance(value, bool) else value
    if isinstance(text, str) and text not in ("true", "false", ""):
        return (
            f"{show(value)}: the chart takes only true or false here, exactly as written (its template fails on any other "
            "text, in the middle of pulumi up), and Iluvatar sets true, because Arda's Talos config runs no kube-proxy; "
            "remove it"
        )
    if text == "true" or _kube_proxy_on(layers.arda):
        return None
    return (
        f"{show(value)}: Iluvatar sets true, because Arda's Talos config runs no kube-proxy (plans.talos: cluster.proxy."
        "disabled true); with neither, nothing serves a ClusterIP (CoreDNS, the API's kubernetes Service, every app's), so "
        "Arda never becomes Ready and pulumi up stops at its gates; remove it"
    )


# The endpoints of Arda's API server a Cilium agent reaches before any Service works (Talos runs no kube-proxy):
# KubePrism, Talos's API proxy on every machine at localhost (Iluvatar's, plans.talos), or Arda's VIP on the API
# server's port. Talos's Cilium guide: "we assume that KubePrism is enabled and configured to use the port 7445".
_KUBEPRISM_HOSTS = ("localhost", "127.0.0.1")
_APISERVER_PORT = 6443


def _api_server(layers: Layers, host: Any, port: Any, urls: bool = False) -> str | None:
    arda = layers.arda
    assert arda is not None
    text, number = str(host), str(port)
    if (text in _KUBEPRISM_HOSTS and number == str(KUBEPRISM_PORT)) or (text == str(arda.vip) and number == str(_APISERVER_PORT)):
        return None
    what = f"neither KubePrism (localhost, port {KUBEPRISM_PORT}) nor Arda's VIP {arda.vip} on port {_APISERVER_PORT}"
    if layers.ainur is not None and text == str(layers.ainur.vip):
        what = "the Ainur's API VIP (ainur.vip), whose k3s takes no token of Arda's, not Arda's API server"
    elif text in _KUBEPRISM_HOSTS:
        what = f"not KubePrism, which listens on port {KUBEPRISM_PORT} of each machine"
    elif text == str(arda.vip):
        what = f"Arda's VIP at a port its API server does not listen on (it listens on {_APISERVER_PORT})"
    fix = (
        f"remove k8s.apiServerURLs (or write https://{arda.vip}:{_APISERVER_PORT})"
        if urls
        else f"remove k8sServiceHost and k8sServicePort (or write Arda's VIP {arda.vip} with k8sServicePort {_APISERVER_PORT})"
    )
    return (
        f"{what}; Iluvatar sets localhost port {KUBEPRISM_PORT} (KubePrism, Talos's API proxy on every Arda machine), "
        "because Arda runs no kube-proxy and Cilium's agents must reach Arda's API server before any Service works: they "
        f"would never start, and Arda would have no pod network; {fix}"
    )


def _native_routing(value: Any, layers: Layers) -> str | None:
    if layers.network is None or value is None:  # null: the chart's default (none), which Iluvatar keeps
        return None
    try:
        net = IPv4Network(str(value), strict=False)
    except ValueError:
        return None  # an IPv6 range, or no range: the chart's to refuse
    own = [("network.lan", layers.network.lan), *((f"network.vlans[{i}].cidr", v.cidr) for i, v in enumerate(layers.network.vlans))]
    met = [f"{name} {n}" for name, n in own if n.overlaps(net)]
    if not met:
        return None
    assert layers.arda is not None
    nets = _arda_networks(layers.arda)[0]
    pods = next((c.net for c in nets if c.key == "cilium"), None) or next(c.net for c in nets if c.key == "podSubnets")
    return (
        f"{show(value)} overlaps {' and '.join(met)}: Cilium hands pods' traffic to this range to the network without SNAT "
        "(the chart's ipv4NativeRoutingCIDR), where Iluvatar leaves the chart's default (none), so that traffic leaves "
        "with its machine's address, which the LAN's hosts answer; pods would reach the NAS, the Git mirror and the router "
        "with pod addresses the LAN has no route back to, and backups, Argo CD's clone and DNS through the router fail; "
        f"remove it, or for native routing write Arda's pod network {pods}"
    )


def _masquerade(value: Any, layers: Layers) -> str | None:
    # null is the chart's default (cilium 1.18.4 values.yaml:2163, rendered only when set: configmap:638-639), the
    # agent's own true.
    if value is None or _go_true(value):
        return None
    return (
        f"{show(value)}: Iluvatar leaves the chart's default (masquerading on), so that pods' traffic to the LAN leaves with "
        "its machine's address, which the LAN's hosts answer; without it pods would reach the NAS, the Git mirror and the "
        "router with pod addresses the LAN has no route back to, and backups, Argo CD's clone and DNS through the router "
        "fail; remove it"
    )


def _masq_agent(layers: Layers) -> Iterator[Problem]:
    """ip-masq-agent's non-masquerade ranges (ipMasqAgent.config.nonMasqueradeCIDRs, written into the agent's ConfigMap
    only when ipMasqAgent.enabled: cilium 1.18.4 templates/cilium-configmap.yaml:1431-1439): over the LAN or a VLAN,
    they turn masquerading off there as enableIPv4Masquerade false does everywhere."""
    arda, network = layers.arda, layers.network
    assert arda is not None
    values = arda.cilium.values
    enabled = _get(values, ("ipMasqAgent", "enabled"))
    cidrs = _get(values, ("ipMasqAgent", "config", "nonMasqueradeCIDRs"))
    bpf = _get(values, ("bpf", "masquerade"))
    # The chart turns the agent's ip-masq-agent on by Go truth (configmap:664-665), and BPF masquerading only when
    # bpf.masquerade is set (configmap:655-658; its default for charts deployed since 1.10 is off, :4 and :47).
    if enabled is not _ABSENT and _go_true(enabled) and (bpf in (_ABSENT, None) or not _agent_true(bpf)):
        yield Problem(
            f"{CILIUM_BASE}.ipMasqAgent.enabled",
            f"{show(enabled)} without BPF masquerading (bpf.masquerade, which the chart leaves off): Cilium's agent refuses "
            "to start (its ip-masq-agent runs only with --enable-bpf-masquerade, Cilium's daemon/cmd initEnv), "
            "so Arda would have no pod network and pulumi up stops at its gates; remove ipMasqAgent, or write "
            "bpf.masquerade: true",
        )
    if network is None or enabled is _ABSENT or not _go_true(enabled) or not isinstance(cidrs, list):
        return
    own = [("network.lan", network.lan), *((f"network.vlans[{i}].cidr", v.cidr) for i, v in enumerate(network.vlans))]
    for n, value in enumerate(cidrs):
        try:
            net = IPv4Network(str(value), strict=False)
        except ValueError:
            continue  # the agent's to refuse
        met = [f"{name} {m}" for name, m in own if m.overlaps(net)]
        if met:
            yield Problem(
                f"{CILIUM_BASE}.ipMasqAgent.config.nonMasqueradeCIDRs[{n}]",
                f"{show(value)} overlaps {' and '.join(met)}: ip-masq-agent leaves pods' traffic to this range unmasqueraded, "
                "where Iluvatar masquerades it, so that it leaves with its machine's address, which the LAN's hosts answer; "
                "pods would reach the NAS, the Git mirror and the router with pod addresses the LAN has no route back to, "
                "and backups, Argo CD's clone and DNS through the router fail; remove it",
            )


def _routing(layers: Layers) -> Iterator[Problem]:
    """Routing values the Cilium agent refuses at its start: Arda would get no pod network and pulumi up stop at its gates."""
    arda = layers.arda
    assert arda is not None
    values = arda.cilium.values
    mode = _get(values, ("routingMode",))
    native = mode == "native"  # the chart's default is tunnel (cilium 1.18.4 templates/cilium-configmap.yaml:529)
    nets = _arda_networks(arda)[0]
    # Arda's pod network, as the fix to write; none where podSubnets is no network (refused at its own key).
    pods = next((c.net for c in nets if c.key == "cilium"), None) or next((c.net for c in nets if c.key == "podSubnets"), "<Arda's pod network>")
    cidr = _get(values, ("ipv4NativeRoutingCIDR",))
    masquerade = _get(values, ("enableIPv4Masquerade",))
    masq_agent = _get(values, ("ipMasqAgent", "enabled"))
    # The agent's check: native routing with masquerading on and no ip-masq-agent needs a native-routing CIDR
    # (Cilium's pkg/option/config.go checkIPv4NativeRoutingCIDR: "native routing cidr must be configured with option
    # --ipv4-native-routing-cidr"); the chart's own guard (configmap:532-536) misses it while enableIPv4Masquerade is null.
    masquerading = masquerade is _ABSENT or masquerade is None or _go_true(masquerade)
    if native and masquerading and not (masq_agent is not _ABSENT and _go_true(masq_agent)) and not (cidr is not _ABSENT and _go_true(cidr)):
        yield Problem(
            f"{CILIUM_BASE}.routingMode",
            f"native with no ipv4NativeRoutingCIDR: Cilium's agent refuses to start (\"native routing cidr must be configured "
            'with option --ipv4-native-routing-cidr"), so Arda would have no pod network and pulumi up stops at its gates; '
            f"write ipv4NativeRoutingCIDR: {pods} (Arda's pod network), or remove routingMode",
        )
    direct = _get(values, ("autoDirectNodeRoutes",))
    # The chart passes the value on as text (configmap:719, `| quote`), which the agent reads as a bool: "false" is off.
    if not native and direct is not _ABSENT and _agent_true(direct):
        yield Problem(
            f"{CILIUM_BASE}.autoDirectNodeRoutes",
            f"{show(direct)} under {show(mode) if mode not in (_ABSENT, None, '') else 'the default'} tunnel routing: Cilium's "
            'agent refuses to start ("auto-direct-node-routes cannot be used with tunneling", Cilium\'s daemon/cmd/'
            "daemon_main.go initEnv), so Arda would have no pod network and pulumi up stops at its gates; remove it, or "
            f"route natively with routingMode: native and ipv4NativeRoutingCIDR: {pods}",
        )


def _l2_announcements(value: Any, layers: Layers) -> str | None:
    if _true(value):
        return None
    return (
        f"{show(value)}: Iluvatar sets true, because every address of network.loadBalancerPool (envoy-internal, the apps' "
        "ports, the log store) is announced on the LAN by Cilium's L2 announcements (plans.cilium's CiliumL2AnnouncementPolicy); "
        "without them no such address answers ARP, so nothing on Arda is reachable from the LAN; remove it"
    )


Check = Callable[[Any, Layers], "str | None"]


def _null_parents(values: Mapping[str, Any], owned: list[tuple[str, ...]], base: str) -> Iterator[Problem]:
    """A null above owned keys (`configs: null`, `ipam: null`). plans.merge.deep_merge copies it over Iluvatar's whole
    subtree, and Helm drops a null key with all it holds, the chart's own defaults under it too: every owned key under
    it is unset, and the charts' templates read keys under these parents without a guard (argo-cd 10.8.0
    templates/argocd-server/service.yaml:1, cilium 1.18.4 templates/cilium-agent/clusterrole.yaml:67,
    templates/cilium-configmap.yaml:73, templates/cilium-agent/daemonset.yaml:472), so Helm fails in the middle of
    pulumi up."""
    parents: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
    for path in owned:
        for n in range(1, len(path)):
            parents.setdefault(path[:n], []).append(path)
    for parent, under in parents.items():
        node = _get(values, parent[:-1]) if len(parent) > 1 else values
        if not isinstance(node, Mapping) or parent[-1] not in node or node[parent[-1]] is not None:
            continue
        keys = ", ".join(".".join(p[len(parent) :]) for p in under)
        yield Problem(
            config_path(base, parent),
            f"null: Helm drops a null key with all it holds, the chart's own defaults under it too, so the chart's "
            f"templates, which read the keys under it, fail in the middle of pulumi up, and what Iluvatar sets or keeps "
            f"there ({keys}) goes; remove it, and write only the keys under it to change",
        )


# Cilium's owned keys: each key's check of the user's value. The API server's two keys are checked together.
CILIUM: dict[tuple[str, ...], Check | None] = {
    ("kubeProxyReplacement",): _kube_proxy_replacement,
    ("k8sServiceHost",): None,
    ("k8sServicePort",): None,
    ("l2announcements", "enabled"): _l2_announcements,
    # Not set by Iluvatar: the chart's default (none) is what the LAN's hosts rely on.
    ("ipv4NativeRoutingCIDR",): _native_routing,
    ("enableIPv4Masquerade",): _masquerade,
    # Checked by each entry, with ipMasqAgent.enabled (_masq_agent).
    ("ipMasqAgent", "config", "nonMasqueradeCIDRs"): None,
    # Checked together, by what the agent refuses at its start (_routing).
    ("routingMode",): None,
    ("autoDirectNodeRoutes",): None,
    # Checked with k8sServiceHost: the agents' own list of API servers.
    ("k8s", "apiServerURLs"): None,
    **dict.fromkeys(CILIUM_TYPED),  # refused in stacks.rules._cilium_values, pointing at the typed key
}
# The keys Iluvatar's Cilium values set that are the user's to change, with why.
CILIUM_FREE: dict[tuple[str, ...], str] = {
    ("ipam", "mode"): "cluster-pool's and multi-pool's pod pools are checked against the stack's networks (stacks.rules._cilium_pools)",
    ("operator", "replicas"): "how many operators run; one is enough to work",
    ("k8sClientRateLimit", "qps"): "tuning: a lower limit slows L2 announcements' lease renewals, stops none",
    ("k8sClientRateLimit", "burst"): "tuning, as qps",
    ("securityContext", "capabilities", "ciliumAgent"): "the agent's capabilities: Talos refuses only module loading",
    ("securityContext", "capabilities", "cleanCiliumState"): "as ciliumAgent",
    ("cgroup", "autoMount", "enabled"): "Talos mounts cgroup v2 itself; mounting it again is harmless",
    ("cgroup", "hostRoot"): "where the agent finds cgroup v2; Talos's place, which a user has no reason to move",
    ("prometheus", "enabled"): "monitoring's scrape of the agent: off loses metrics, not the network",
    ("prometheus", "serviceMonitor", "enabled"): "as prometheus.enabled",
    ("prometheus", "serviceMonitor", "trustCRDsExist"): "as prometheus.enabled",
    ("operator", "prometheus", "enabled"): "as prometheus.enabled, for the operator",
    ("operator", "prometheus", "serviceMonitor", "enabled"): "as prometheus.enabled, for the operator",
}


def _cilium(layers: Layers) -> Iterator[Problem]:
    arda = layers.arda
    if arda is None:
        return
    values = arda.cilium.values
    yield from _null_parents(values, [*CILIUM, ("ipam", "mode")], CILIUM_BASE)
    for path, check in CILIUM.items():
        value = _get(values, path)
        # A null is no "leave it": plans.merge.deep_merge copies it over Iluvatar's value and Helm unsets the key, so the
        # chart's default is what renders; each check reads null as the value it is and refuses it where that breaks.
        if check is None or value is _ABSENT:
            continue
        if (said := check(value, layers)) is not None:
            yield Problem(config_path(CILIUM_BASE, path), said)
    host, port = _get(values, ("k8sServiceHost",)), _get(values, ("k8sServicePort",))
    if host is not _ABSENT or port is not _ABSENT:
        given = host if host is not _ABSENT else "localhost"
        at = port if port is not _ABSENT else KUBEPRISM_PORT
        if (said := _api_server(layers, given, at)) is not None:
            key = "k8sServiceHost" if host is not _ABSENT else "k8sServicePort"
            yield Problem(f"{CILIUM_BASE}.{key}", f"{show(host if host is not _ABSENT else port)} (port {show(at)}) is {said}")
    urls = _get(values, ("k8s", "apiServerURLs"))
    # null: Helm drops the key, and the chart renders none (cilium 1.18.4 templates/cilium-configmap.yaml:883,
    # templates/cilium-agent/daemonset.yaml:472), its default; "": an empty list, so the agents use k8sServiceHost.
    if urls is not _ABSENT and urls is not None and str(urls).strip():
        listed = str(urls).replace(",", " ").split()
        for url in listed or [""]:
            parsed = urlsplit(url if "//" in url else f"//{url}")
            try:
                at = parsed.port or (443 if parsed.scheme == "https" else 80)
            except ValueError:
                at = 0
            if (said := _api_server(layers, parsed.hostname or "", at, urls=True)) is not None:
                which = f"{show(urls)}: {url or 'no URL'}" if len(listed) != 1 else show(urls)
                yield Problem(f"{CILIUM_BASE}.k8s.apiServerURLs", f"{which} is {said}")
                break
    yield from _routing(layers)
    yield from _masq_agent(layers)
    ipam = _get(values, ("ipam",))
    pool = _get(values, ("ipam", "operator", CILIUM_POOL_KEY))
    empty = (isinstance(pool, list) and not pool) or (isinstance(pool, str) and not pool.replace(",", " ").split())
    if isinstance(ipam, Mapping) and cilium_ipam_mode(values) == "cluster-pool" and empty:
        yield Problem(
            f"{CILIUM_BASE}.ipam.operator.{CILIUM_POOL_KEY}",
            f'{show(pool)}: cluster-pool has no address to hand out (the chart writes cluster-pool-ipv4-cidr: "", cilium '
            "1.18.4 templates/cilium-configmap.yaml:1099), so no pod on Arda gets an address and pulumi up stops at its "
            "gates; remove ipam, or give the pool: [10.244.0.0/16]",
        )


# --- Argo CD -----------------------------------------------------------------------------------------------------


def _clusters(layers: Layers) -> list[str]:
    """The clusters whose Argo CD takes gitops.argocd.values (plans.identity.argocd_clusters)."""
    return ["arda", *(["ainur"] if layers.ainur is not None else [])]


def _url(value: Any, layers: Layers) -> str | None:
    if layers.identity is None or layers.network is None:
        return None
    hosts = identity_rules.hosts(layers.identity, layers.network.domain)
    urls = {c: f"https://{hosts['argocd' if c == 'arda' else 'argocd_ainur']}" for c in _clusters(layers)}
    if all(str(value).rstrip("/") == u for u in urls.values()):
        return None
    sets = " and ".join(f"{u} on {'Arda' if c == 'arda' else 'the Ainur'}" for c, u in urls.items())
    both = ", and these values go to both Argo CDs" if len(urls) > 1 else ""
    return (
        f"{show(value)}: Iluvatar sets {sets} (identity.hosts), the redirect URIs Dex's client for each Argo CD takes; "
        f"Argo CD builds its sign-in redirect from url{both}, so Dex would refuse every sign-in (Unregistered redirect_uri); "
        "remove it, and move an Argo CD with identity.hosts.argocd or identity.hosts.argocdAinur"
    )


def _insecure_breaks(fix: str) -> str:
    """What any value of server.insecure breaks with the Ainur's Argo CD beside Arda's: they take the same values."""
    return (
        "Iluvatar sets true on Arda's Argo CD, whose server envoy-internal reaches in plain HTTP after ending TLS "
        "(plans.identity.argocd_route), and leaves the Ainur's serving TLS itself, with the certificate Iluvatar issues it "
        "(plans.identity.ARGOCD_TLS_SECRET), behind its front door, which passes TLS through by name (plans.identity."
        "front_door_conf); these values go to both Argo CDs, so a value here breaks one: not insecure, Arda's answers "
        "every plain request with a redirect to https, a loop; insecure, the Ainur's answers TLS in plain HTTP; either way "
        f"that Argo CD's UI and CLI never load; {fix}"
    )


def _insecure(value: Any, layers: Layers) -> str | None:
    if layers.identity is None:
        return None
    if layers.ainur is not None:
        return f"{show(value)}: {_insecure_breaks('remove it')}"
    if _true(value):
        return None
    return (
        f"{show(value)}: Iluvatar sets true on Arda's Argo CD, whose server envoy-internal reaches in plain HTTP after ending "
        "TLS (plans.identity.argocd_route); without --insecure the server answers every plain request with a redirect to "
        "https, a loop, so Argo CD's UI and CLI never load (Argo CD's ingress guide: run it with server.insecure); remove it"
    )


# argocd-server's own flag, which wins over server.insecure (read from argocd-cmd-params-cm as ARGOCD_SERVER_INSECURE,
# the flag's default: argo-cd 10.8.0 templates/argocd-server/deployment.yaml:78-80 puts extraArgs on its command line,
# :88-93 the variable); --insecure, --insecure=true and --insecure=false all set it.
def _server_args(value: Any, layers: Layers) -> str | None:
    if layers.identity is None or not isinstance(value, list):
        return None
    flags = [a for a in value if isinstance(a, str) and (a == "--insecure" or a.startswith("--insecure="))]
    if not flags:
        return None
    if layers.ainur is not None:
        return f"{show(value)} sets --insecure, as server.insecure does: {_insecure_breaks('remove the flag')}"
    if all(f in ("--insecure", "--insecure=true") for f in flags):
        return None
    return (
        f"{show(value)} turns --insecure off: Iluvatar sets it on Arda's Argo CD (configs.params.server.insecure), whose "
        "server envoy-internal reaches in plain HTTP after ending TLS (plans.identity.argocd_route); without it the server "
        "answers every plain request with a redirect to https, a loop, so Argo CD's UI and CLI never load; remove the flag"
    )


def _tracking(value: Any, layers: Layers) -> str | None:
    # null leaves Argo CD's own default, annotation since Argo CD 3.0 (the pinned chart's appVersion is v3.5.2).
    if value is None or str(value) in ("annotation", "annotation+label"):
        return None
    return (
        f"{show(value)}: Iluvatar sets annotation, so that the app.kubernetes.io/instance label Helm's charts put on what "
        "Pulumi installs never makes Argo CD take it for an Application's own: tracking by label, Argo CD would prune it; "
        "remove it"
    )


def _crds_kept(value: Any, layers: Layers) -> str | None:
    # null unsets it, and the chart's own default keeps the CRDs (argo-cd values.yaml:35, crds.keep: true).
    if value is None or _true(value):
        return None
    return (
        f"{show(value)}: Iluvatar sets true, so that Helm keeps Argo CD's CRDs when the chart is uninstalled or replaced: "
        "deleting the Application CRD deletes every Application with it, Pulumi's platform ones and the ApplicationSets'; "
        "remove it"
    )


def _go_true(value: Any) -> bool:
    """A value as a Helm template's `if` reads it (Go's text/template truth): false, 0, null and empty are false, and
    so unset; any other value, the text "false" too, is true."""
    return value not in (None, False, 0, "") and not (isinstance(value, (list, dict)) and not value)


def _creates(name: str, holds: str, breaks: str, identity: bool) -> Check:
    """The chart renders a ConfigMap of Argo CD's only if its `create` is true (argo-cd 10.8.0
    templates/argocd-configs/<name>.yaml:1; the chart's default true, values.yaml:194, :441, :456): without it every
    key Iluvatar sets in it goes, and Helm deletes the one a running Argo CD reads."""

    def check(value: Any, layers: Layers) -> str | None:
        if _go_true(value) or (identity and layers.identity is None):
            return None
        return (
            f"{show(value)}: Iluvatar leaves the chart's true, because {name} holds {holds}; without it the chart "
            f"renders no {name} and Helm deletes the one Argo CD reads, on every Argo CD the values go to, so {breaks}; remove it"
        )

    return check


def _identity_owned(what: str, breaks: str) -> Check:
    def check(value: Any, layers: Layers) -> str | None:
        if layers.identity is None:
            return None
        return f"{show(value)}: Iluvatar sets {what} from iluvatar:identity, and a value here replaces it on both Argo CDs, so {breaks}; remove it"

    return check


def _host_aliases(value: Any, layers: Layers) -> str | None:
    if layers.identity is None or layers.network is None:
        return None
    dex = identity_rules.hosts(layers.identity, layers.network.domain)["dex"]
    ip = str(layers.identity.ip)
    kept = isinstance(value, list) and any(isinstance(a, Mapping) and str(a.get("ip")) == ip and dex in (a.get("hostnames") or []) for a in value)
    if kept:
        return None
    return (
        f"{show(value)}: Iluvatar sets [{{ip: {ip}, hostnames: [{dex}]}}], by which Argo CD's pods reach Dex (identity.ip), "
        f"and Helm replaces a list whole; keep that entry in the list"
    )


# Argo CD's owned keys (on both clusters' Argo CD, which take the same values), each with its check.
ARGOCD: dict[tuple[str, ...], Check] = {
    ("configs", "cm", "url"): _url,
    ("configs", "params", "server.insecure"): _insecure,
    ("configs", "cm", "oidc.config"): _identity_owned("the sign-in through Dex (its issuer, client and CA)", "no one could sign in through Dex"),
    ("configs", "rbac", "policy.csv"): _identity_owned("the roles identity.groups bind", "those groups would get no role"),
    ("configs", "rbac", "scopes"): _identity_owned("[groups]", "identity.groups' bindings, which match the groups claim, would match no one"),
    ("global", "hostAliases"): _host_aliases,
    ("configs", "cm", "application.resourceTrackingMethod"): _tracking,
    ("crds", "keep"): _crds_kept,
    # Not set by Iluvatar: the flag would override server.insecure.
    ("server", "extraArgs"): _server_args,
    # Not set by Iluvatar: the chart's default (true) renders the ConfigMaps the keys above are in.
    ("configs", "cm", "create"): _creates(
        "argocd-cm",
        "configs.cm (the tracking method, and with identity the url and the sign-in through Dex)",
        'Argo CD would start without its settings (the chart: "Argo CD will not work if there is no configmap")',
        identity=False,
    ),
    ("configs", "params", "create"): _creates(
        "argocd-cmd-params-cm",
        "configs.params (server.insecure on Arda, which envoy-internal reaches in plain HTTP)",
        "Arda's Argo CD would answer envoy-internal with a redirect to https, a loop, and its UI and CLI never load",
        identity=True,
    ),
    ("configs", "rbac", "create"): _creates(
        "argocd-rbac-cm",
        "configs.rbac (the roles identity.groups bind, matched on the groups claim)",
        "those groups would get no role",
        identity=True,
    ),
}
# The keys Iluvatar's Argo CD values set that are the user's to change, with why.
ARGOCD_FREE: dict[tuple[str, ...], str] = {
    ("configs", "cm", "admin.enabled"): "the admin login: off once sign-in through Dex works",
    ("configs", "ssh", "extraHosts"): "gitops.sshKnownHosts' lines; the user's own list replaces them knowingly",
    ("configs", "cm", "kustomize.buildOptions"): "Kustomize's options for the apps in Git, which are the user's",
    ("configs", "rbac", "policy.default"): "the role of a signed-in person no group binds: a choice of access",
    ("configs", "secret", "createSecret"): "the chart's argocd-secret",
    ("crds", "install"): "the CRDs come with the chart; a user who installs them otherwise may turn this off",
    ("dex", "enabled"): "Argo CD's own Dex, beside the Ainur's",
    ("global", "networkPolicy", "create"): "the chart's own policies, which only add to the program's",
    ("notifications", "enabled"): "the notifications controller",
    ("redisSecretInit", "enabled"): "the chart's Redis password hook",
    ("controller", "metrics", "enabled"): "monitoring's scrape: off loses metrics, not Argo CD",
    ("controller", "metrics", "serviceMonitor", "enabled"): "as controller.metrics.enabled",
    ("repoServer", "metrics", "enabled"): "as controller.metrics.enabled",
    ("repoServer", "metrics", "serviceMonitor", "enabled"): "as controller.metrics.enabled",
    ("server", "metrics", "enabled"): "as controller.metrics.enabled",
    ("server", "metrics", "serviceMonitor", "enabled"): "as controller.metrics.enabled",
}


def _argocd(layers: Layers) -> Iterator[Problem]:
    if layers.gitops is None:
        return
    yield from _null_parents(layers.gitops.argocd.values, list(ARGOCD), ARGOCD_BASE)
    for path, check in ARGOCD.items():
        value = _get(layers.gitops.argocd.values, path)
        if value is _ABSENT:  # a null is checked, as for Cilium's keys
            continue
        if (said := check(value, layers)) is not None:
            yield Problem(config_path(ARGOCD_BASE, path), said)


def check(layers: Layers) -> list[Problem]:
    """The user's chart values that override a key Iluvatar owns in a way that breaks the layer relying on it."""
    return [*_cilium(layers), *_argocd(layers)]
