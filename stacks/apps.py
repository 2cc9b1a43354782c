"""The app registry (`iluvatar:apps`): every app the edge serves, each written once.

An app names its category (one GitOps folder and one namespace of the same name), its host, its
audience (`internal`: the LAN through `envoy-internal`; `external`: the internet through the
Cloudflare tunnel and `envoy-external`) and its backend Service. Its route, its DNS records, its
certificate coverage and its public exposure all derive from that one entry (plans.edge).

An app with `ports` (raw TCP or UDP: a Minecraft server, an MQTT broker) is instead reached at its own `address`, a
fixed address of network.loadBalancerPool that the inventory's address table reserves (plans.ports says why that
path and not the gateways'); its host resolves to that address on the LAN.

This module holds the registry's rules; the models are `stacks.model.App`, `AppService` and `AppPort`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping, Sequence
from ipaddress import IPv4Address

from stacks.boards import ARDA_ROLES
from stacks.categories import ARDA_NAMESPACES
from stacks.errors import Problem
from stacks.model import App, AppPort, Network, Node

APPS = "iluvatar:apps"
_COUNT = {2: "two", 3: "three", 4: "four"}


def app_path(i: int, field: str = "") -> str:
    return f"{APPS}[{i}]" + (f".{field}" if field else "")


def under(host: str, zone: str) -> bool:
    """The host is the zone's apex or a name inside it."""
    return host == zone or host.endswith(f".{zone}")


def zone_of(host: str, network: Network) -> str | None:
    """The zone a host belongs to: the longer of network.domain and network.externalDomain it is under."""
    zones = [z for z in (network.domain, network.external_domain) if z is not None and under(host, z)]
    return max(zones, key=len) if zones else None


def _depth(host: str, zone: str) -> int:
    return 0 if host == zone else host.removesuffix(f".{zone}").count(".") + 1


def app_problems(
    apps: Sequence[tuple[int, App]],
    network: Network | None,
    public_ingress: str,
    categories: Sequence[str],
    zone_names: Mapping[str, str],
) -> list[Problem]:
    """Every problem of the registry: names and hosts once each, hosts in a zone the gateways'
    certificates cover, external apps in the public zone with a way in, known categories.

    `zone_names` maps the internal zone's other names (machines, VIPs, gateways) to what owns them.
    """
    out: list[Problem] = []
    first_name: dict[str, int] = {}
    first_host: dict[str, tuple[int, str]] = {}
    for i, app in apps:
        if app.name in first_name:
            out.append(Problem(app_path(i, "name"), f"{app.name} is already apps[{first_name[app.name]}].name"))
        first_name.setdefault(app.name, i)
        if app.host in first_host:
            j, other = first_host[app.host]
            out.append(Problem(app_path(i, "host"), f"{app.host} is already apps[{j}].host ({other})"))
        else:
            first_host[app.host] = (i, app.name)
        out += _shape(i, app)
        if app.category not in categories:
            out.append(Problem(app_path(i, "category"), f"{app.category} is not a known category (known: {', '.join(categories)})"))
        if app.audience == "external" and public_ingress == "none":
            out.append(
                Problem(
                    app_path(i, "audience"),
                    "external, but iluvatar:edge.publicIngress is none, so nothing carries it from the internet; "
                    "set publicIngress: cloudflare-tunnel or make the app internal",
                )
            )
        if network is not None:
            out += _host(i, app, network, zone_names)
            out += _sources(i, app, network)
        if app.ports:
            out += _client_namespaces(i, app, categories, {a.name: a.category for _, a in apps})
    out += _service_collisions(apps)
    return out


def _service_collisions(apps: Sequence[tuple[int, App]]) -> Iterator[Problem]:
    """An HTTP app's Service (its chart's, from Git: `service.name`, or the app's name) named as the Service this program
    makes for an app's raw ports in the same category's namespace (`<name>-lan`, plans.ports): Pulumi and Argo CD would
    each own one object, and the second to apply it fails, or overwrites the other's ports and selector."""
    lan = {(a.category, f"{a.name}-lan"): j for j, a in apps if a.ports}
    for i, app in apps:
        if app.service is None:
            continue
        j = lan.get((app.category, app.service_name))
        if j is None:
            continue
        key = "service.name" if app.service.name else "name"
        other = next(a.name for k, a in apps if k == j)
        whose = "its own raw ports" if j == i else f"apps[{j}] ({other})'s raw ports"
        yield Problem(
            app_path(i, key),
            f"{app.service_name} names {app.name}'s Service in namespace {app.category}, which is also the Service this program "
            f"makes there for {whose} ({other}-lan): Pulumi and Argo CD would both own it, and the second to apply it fails or "
            f"replaces the other's ports; "
            + ("give the app another name" if key == "name" else "write the name the app's chart gives its Service, if that is another")
            + (", or move one of them to another category" if j != i else ""),
        )


def _client_namespaces(i: int, app: App, categories: Sequence[str], app_categories: Mapping[str, str]) -> Iterator[Problem]:
    """Each client's namespace is one Arda has. Refused, not warned of: the docs make clients "the pods of Arda", and no
    pod of Arda runs in a namespace Iluvatar does not make. Its apps from Git deploy only into the category namespaces and
    may create no Namespace (their AppProject's destinations and clusterResourceBlacklist, plans.gitops.git_app_project),
    and its platform runs in its own (`ARDA_NAMESPACES`). A client namespace outside them names pods that never exist,
    and the policy, which admits only the pods it names, shuts out the ones meant, with no error anywhere."""
    known = [*dict.fromkeys([*categories, *app_categories.values()]), *ARDA_NAMESPACES]
    for k, client in enumerate(app.clients):
        name = client.namespace
        if name in known:
            continue
        path = app_path(i, f"clients[{k}].namespace")
        why = (
            f"{name} is no namespace of Arda: Iluvatar makes one per app category and its own, and the GitOps repository's apps "
            f"may make none, so {app.name}'s policy would admit pods that never exist and shut out the ones meant"
        )
        if name in app_categories:
            fix = f"{name} is an app, which runs in its category's namespace: write {app_categories[name]}"
        else:
            close = difflib.get_close_matches(name, known, n=1)
            fix = (
                f"write {close[0]}"
                if close
                else f"write the namespace the client pods run in: their app's category ({', '.join(dict.fromkeys([*categories, *app_categories.values()]))}) "
                "or one of Iluvatar's own (e.g. envoy-gateway-system, the gateways')"
            )
        yield Problem(path, f"{why}; {fix}")


def layer_namespace_problems(apps: Sequence[tuple[int, App]], off: Mapping[str, str]) -> list[Problem]:
    """A client namespace of Iluvatar's own (`ARDA_NAMESPACES`) that this stack does not make, `off` mapping each such
    namespace to what it would take (the layer that is off): no pod runs there, so the policy would admit none, as for a
    namespace Arda has not at all (`_client_namespaces`)."""
    out: list[Problem] = []
    for i, app in apps:
        for k, client in enumerate(app.clients):
            if client.namespace in off:
                out.append(
                    Problem(
                        app_path(i, f"clients[{k}].namespace"),
                        f"{client.namespace}: no pod of this stack runs there ({off[client.namespace]}), so {app.name}'s policy "
                        "would admit none; write the namespace the client pods run in",
                    )
                )
    return out


def _sources(i: int, app: App, network: Network) -> Iterator[Problem]:
    """An app's sources are networks the stack names, at least one; its clients' ports are ports."""
    if not app.ports:
        if app.clients:
            yield Problem(app_path(i, "clients"), "is only for an app with ports (it names the pods its policy admits); remove it")
        return
    known = ["lan", *(v.name for v in network.vlans)]
    if not app.sources:
        yield Problem(
            app_path(i, "sources"),
            f"is empty, so nothing outside the cluster would reach {app.name}'s address; name at least one of {', '.join(known)}",
        )
    for k, name in enumerate(app.sources):
        if name not in known:
            yield Problem(
                app_path(i, f"sources[{k}]"),
                f"{name} is not a network of the stack: write lan (network.lan) or the name of one of network.vlans ({', '.join(known)})",
            )
    yield from _clients(i, app)


def _clients(i: int, app: App) -> Iterator[Problem]:
    """Each client's pods are labels Cilium can match, beside the namespace `namespace` gives, and its ports are ports
    the app's container serves over TCP, each once (judged here when no TCP targetPort is a name, else warned of:
    client_port_doubts)."""
    named = _named_target_ports(app)
    for k, client in enumerate(app.clients):
        yield from _client_pods(i, k, client.namespace, client.pods or {})
        seen: dict[int, int] = {}
        for m, port in enumerate(client.ports):
            path = app_path(i, f"clients[{k}].ports[{m}]")
            if port in seen:
                yield Problem(path, f"{port} is already ports[{seen[port]}]; list each port once")
                continue
            seen[port] = m
            if not 1 <= port <= 65535:
                yield Problem(path, f"{port} is not a port: TCP and UDP ports are 1 to 65535")
            elif not named and (why := _client_port(app, k, port, named)) is not None:
                yield Problem(path, why)


def client_port_doubts(apps: Sequence[App]) -> Iterator[Problem]:
    """A client's port the app serves over UDP alone, or the Service's port in front of a numeric targetPort, in an app
    one of whose TCP ports has a targetPort by name: warned, not refused. The name stands for a number validate cannot
    read, which may be the client's port (then the client is right); the rest of the app's ports are still judged,
    and the message says to write the number if the name stands for it."""
    for i, app in enumerate(apps):
        named = _named_target_ports(app)
        if not named:
            continue
        for k, client in enumerate(app.clients):
            for m, port in enumerate(client.ports):
                if client.ports.index(port) == m and 1 <= port <= 65535 and (why := _client_port(app, k, port, named)) is not None:
                    yield Problem(app_path(i, f"clients[{k}].ports[{m}]"), why)


def _named_target_ports(app: App) -> list[str]:
    return [f"ports[{j}]'s targetPort {p.target_port}" for j, p in enumerate(app.ports) if p.protocol == "tcp" and isinstance(p.target_port, str)]


def _client_port(app: App, k: int, port: int, named: Sequence[str]) -> str | None:
    """What is wrong with a client's port, or None: one the app serves over UDP alone, or the Service's port in front of a
    targetPort. A Service port in front of a targetPort by name is not judged: the name may stand for the same number."""
    udp_only = _udp_only(app)
    # A TCP port whose targetPort is a name is served too, on a number validate cannot read: the client names that number.
    tcp = [
        str(c) if isinstance(c := p.container_port, int) else f"the number ports[{j}]'s targetPort {c} stands for"
        for j, p in enumerate(app.ports)
        if p.protocol == "tcp"
    ]
    # The policy admits a client on the pod's own port: Cilium enforces ingress policy at the endpoint, after the Service
    # has translated the address and port to the pod's (plans.ports.network_policy renders the container ports for the
    # app's other sources for that reason).
    served = {c for p in app.ports if isinstance(c := p.container_port, int)}
    if port in udp_only:
        # A client's ports are rendered as TCP (plans.ports._to_ports); only ports left unset take each of the
        # app's own with its protocol. A port the app serves over UDP alone, named here, opens a TCP port nobody
        # serves and leaves the client's UDP dropped.
        others = f", or name only its TCP ports ({', '.join(tcp)})" if tcp else f" ({app.name} serves no TCP port to name)"
        return (
            f"{port} is {app.name}'s UDP port (ports[{udp_only[port]}], udp only), but a client's ports are admitted over "
            f"TCP: the policy would open {port}/tcp, which {app.name} does not serve, and still drop the client's UDP; "
            f"leave clients[{k}].ports unset to admit each of the app's ports with its protocol{others}{_if_named(named, port)}"
        )
    if port in served:
        return None
    # Only the Service's port in front of a targetPort is surely wrong: a port the app's LoadBalancer Service
    # does not carry may still be one its pod serves to the cluster (a second app's Service on the same pods,
    # as the gateway reaching Mosquitto's websockets does: docs/layers/edge.md), which the policy must admit.
    behind = [(j, p) for j, p in enumerate(app.ports) if p.port == port and p.protocol == "tcp"]
    if not behind or not isinstance(behind[0][1].container_port, int):
        return None
    j, front = behind[0]
    unset = f"leave clients[{k}].ports unset to admit each of the app's ports with its protocol"
    return (
        f"{port} is {app.name}'s Service port (ports[{j}]), whose container port is {front.container_port} (its "
        f"targetPort): Cilium applies the policy at the pod, after the Service has sent the connection to "
        f"{front.container_port}, so the clients would be dropped; write {front.container_port}, or {unset}"
        f"{_if_named(named, port)}"
    )


def _if_named(named: Sequence[str], port: int) -> str:
    """What to write when a TCP port's targetPort by name (which no check can read) stands for the client's `port`."""
    return f"; if {' or '.join(named)} stands for {port}, write targetPort {port} there instead of the name" if named else ""


def _udp_only(app: App) -> dict[int, int]:
    """The container ports an app serves over UDP and not over TCP (`apps[].ports`, a port's targetPort where set), each
    with the index of its entry. A TCP port whose targetPort is a name is left out: the number it stands for cannot be
    read here (client_port_doubts warns, saying what to write if it is the client's port)."""
    tcp = {p.container_port for p in app.ports if p.protocol == "tcp"}
    return {c: j for j, p in enumerate(app.ports) if p.protocol == "udp" and isinstance(c := p.container_port, int) and c not in tcp}


def _host(i: int, app: App, network: Network, zone_names: Mapping[str, str]) -> list[Problem]:
    path, host, external = app_path(i, "host"), app.host, network.external_domain
    zone = zone_of(host, network)
    if zone is None:
        if external is None:
            return [Problem(path, f"{host} is not under network.domain {network.domain} (and network.externalDomain is not set)")]
        return [Problem(path, f"{host} is under neither network.domain {network.domain} nor network.externalDomain {external}")]
    out = []
    if app.audience == "external" and zone != external:
        if external is None:
            out.append(Problem(app_path(i, "audience"), "external needs network.externalDomain, the public zone its record is published in"))
        else:
            out.append(
                Problem(path, f"{host} is external, so it must be under network.externalDomain {external}; names under {zone} are never published")
            )
    depth = _depth(host, zone)
    if depth > 1 and not app.ports:  # an app on its own address has no certificate of the gateways
        parent = host.split(".", depth - 1)[-1]
        out.append(
            Problem(
                path,
                f"{host} is {_COUNT.get(depth, str(depth))} labels below {zone}; the gateways' wildcard certificate *.{zone} "
                f"covers names one label below it, such as {parent}",
            )
        )
    if host in zone_names:
        # A machine's name is as likely the slip as the app's host: both ways out are given.
        other = ", or rename the machine" if "(nodes[" in zone_names[host] else ""
        out.append(Problem(path, f"{host} is already {zone_names[host]} in the internal zone; pick another host{other}"))
    return out


# What the app's own address carries: Cilium's load balancer forwards TCP and UDP as they are (plans.ports).
PROTOCOLS = ("tcp", "udp")
_EXTERNAL_WAYS = (
    "the Cloudflare tunnel carries only HTTP(S) to envoy-external, so a raw port cannot be external; the ways in from the "
    "internet are a port forward on the router to {address} (every scanner on the internet then reaches the app itself: "
    "keep it patched and authenticated; and the app's Service admits only its sources, so the forward also needs the "
    "router to masquerade to its LAN address), or Cloudflare Spectrum (a paid plan); neither is opened by this program. "
    "Use audience: internal (the LAN, and the tailnet with remoteAccess reach: ports)"
)


# A Service's name is a DNS-1035 label, which starts with a letter: ValidateServiceName is NameIsDNS1035Label
# (k8s.io/kubernetes@v1.35.1 pkg/apis/core/validation/validation.go:290; the format at k8s.io/apimachinery@v0.35.1
# pkg/util/validation/validation.go:222). An app's name, an RFC 1123 label, may start with a digit.
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def _service_name(i: int, app: App) -> Iterator[Problem]:
    """The Service names the app's entry gives: `<name>-lan` for raw ports (plans.ports), its backend's for HTTP."""
    if app.ports:
        if not _DNS1035.match(app.name):
            yield Problem(
                app_path(i, "name"),
                f"{app.name} starts with a digit, and it names the app's Service {app.name}-lan, whose name Kubernetes requires to "
                "start with a letter (a DNS-1035 label); give the app a name starting with a letter (e.g. "
                f"game-{app.name})",
            )
        elif len(app.name) > 63 - len("-lan"):
            yield Problem(
                app_path(i, "name"),
                f"{app.name} is {len(app.name)} characters, and it names the app's Service {app.name}-lan, over a Service name's 63; "
                f"give the app a name of at most {63 - len('-lan')} characters",
            )
    elif app.service is not None:
        if app.service.name is not None:
            if not _DNS1035.match(app.service.name):
                yield Problem(
                    app_path(i, "service.name"),
                    f"{app.service.name} starts with a digit, and no Service can have that name (Kubernetes requires a DNS-1035 "
                    "label, starting with a letter); write the name of the app's Service as its chart names it",
                )
        elif not _DNS1035.match(app.name):
            yield Problem(
                app_path(i, "service.name"),
                f"is left out, so the app's route sends to a Service named {app.name}, which cannot exist (Kubernetes requires a "
                "Service's name to start with a letter, a DNS-1035 label); write the name of the app's Service as its chart names it "
                "(service.name)",
            )


# A Service port's targetPort given by name: an IANA_SVC_NAME, as validateServicePort checks it (ValidatePortNumOrName,
# k8s.io/kubernetes@v1.35.1 pkg/apis/core/validation/validation.go:3488, IsValidPortName at k8s.io/apimachinery@v0.35.1
# pkg/util/validation/validation.go:321-340): at most 15 characters of a-z, 0-9 and '-', at least one letter, no
# leading or trailing '-', no '--'.
_PORT_NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


def _target_port_name(path: str, name: str) -> Iterator[Problem]:
    if name.isdigit():
        # Quoted in YAML, a number is a string, which Kubernetes reads as a port's name (one without a letter).
        yield Problem(
            path,
            f"'{name}' is a port number written as a string (quoted), which Kubernetes reads as a port's name; write it unquoted: targetPort: {int(name)}",
        )
        return
    why = []
    if len(name) > 15:
        why.append(f"is {len(name)} characters, over a port name's 15")
    if not _PORT_NAME.match(name):
        why.append("has '--' in it" if "--" in name else "is not lower-case letters, digits and single '-' between them")
    if not re.search(r"[a-z]", name):
        why.append("has no letter")
    if why:
        yield Problem(
            path,
            f"{name} {' and '.join(why)}: Kubernetes refuses it as a container port's name (an IANA service name: at most 15 "
            "characters of a-z, 0-9 and '-', at least one letter, no '--'); write the port's number, or the name the "
            "container gives the port, which obeys the same rule",
        )


# A Service's selector is labels: ValidateLabels (k8s.io/kubernetes@v1.35.1 pkg/apis/core/validation/validation.go:6630)
# checks each key as a qualified name and each value as a label value (k8s.io/apimachinery@v0.35.1
# pkg/api/validate/content/kube.go:43-93): a name part and a value of at most 63 characters of [A-Za-z0-9-_.], starting
# and ending alphanumeric (a value may be empty), a key's optional prefix a DNS-1123 subdomain of at most 253.
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_RULE = "at most 63 characters of letters, digits, '-', '_' and '.', starting and ending with a letter or digit"


def _label_key_ok(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    bad_prefix = "/" in key and (not prefix or len(prefix) > 253 or not _SUBDOMAIN.match(prefix) or "/" in prefix)
    return not bad_prefix and len(name) <= 63 and bool(_LABEL_NAME.match(name))


def _label_value_ok(value: object) -> bool:
    return isinstance(value, str) and len(value) <= 63 and (not value or bool(_LABEL_NAME.match(value)))


def _bad_label_key(key: str, carry: str) -> str:
    return (
        f"the key {key} is not a label key Kubernetes takes (a name of {_LABEL_RULE}, after an optional DNS subdomain "
        f"prefix and '/', e.g. app.kubernetes.io/name); write the key of a label {carry}"
    )


def _bad_label_value(value: object, carry: str) -> str:
    return f"{value} is not a label value Kubernetes takes ({_LABEL_RULE}, or empty); write the value of a label {carry}"


def _selector(i: int, selector: Mapping[str, str]) -> Iterator[Problem]:
    carry = "the app's pods carry (kubectl get pods --show-labels)"
    for key, value in selector.items():
        path = app_path(i, f"selector.{key}")
        if not _label_key_ok(key):
            yield Problem(path, _bad_label_key(key, carry))
        if not _label_value_ok(value):
            yield Problem(path, _bad_label_value(value, f"{carry}, e.g. its chart's instance name"))


# The label Cilium gives each endpoint for its pod's namespace (plans.ports.NAMESPACE_LABEL), without the source Cilium
# reads before a key's first ':' (cilium v1.18.4 pkg/labels/labels.go, ParseSource: `k8s:`, `any:`, none for any
# source, `$` for reserved).
_NAMESPACE_KEY = "io.kubernetes.pod.namespace"
# The keys of that label a pod's own matches: Cilium gives it the k8s source, and reads a selector's key with no source
# as any source (pkg/labels/labels.go, ParseSelectLabel). With the client's own namespace as the value such a
# key repeats what client_selector writes, harmless (warned of: stacks.warn._namespace_repeated); another source
# (`$` reserved, `container:`) is no pod's, and the policy would admit none.
NAMESPACE_KEYS = (_NAMESPACE_KEY, f"k8s:{_NAMESPACE_KEY}", f"any:{_NAMESPACE_KEY}")


def _client_pods(i: int, k: int, namespace: str, pods: Mapping[str, str]) -> Iterator[Problem]:
    """A client's pods are labels of pods, as a Service's selector is: they become the policy's
    fromEndpoints[].matchLabels (plans.ports.client_selector), whose values Cilium's CRD types as MatchLabelsValue, at most
    63 characters of the label value pattern (cilium v1.18.4 pkg/k8s/slim/k8s/apis/meta/v1/types.go), so the API server
    refuses the policy half-way through `up`; a key is not checked there, and one Kubernetes would refuse on a pod
    matches no pod. A key may carry Cilium's source before a ':' (k8s:app), which Kubernetes' rule does not see.

    The pods' namespace is `namespace`'s alone: client_selector writes it as Cilium's namespace label beside these, so a
    key of that label here replaces it (with the k8s source) or adds a second namespace no pod has (any other)."""
    carry = f"the client pods carry (kubectl get pods -n {namespace} --show-labels)"
    for key, value in pods.items():
        path = app_path(i, f"clients[{k}].pods.{key}")
        name = key.removeprefix("$").partition(":")[2] if ":" in key else key.removeprefix("$")
        if name == _NAMESPACE_KEY:
            if value == namespace and key in NAMESPACE_KEYS:
                continue
            if value == namespace:
                effect = "this key's source is no pod's (Cilium gives a pod's namespace label the k8s source), so the policy would admit none"
            elif key.startswith("k8s:"):
                effect = f"this key would replace it, and the policy admit the pods of {value} in its stead"
            else:
                effect = f"the policy would ask a pod to be in both {namespace} and {value}, and admit none"
            yield Problem(
                path,
                f"{value} names the pods' namespace by the label Cilium gives it, which clients[{k}].namespace ({namespace}) "
                f"already sets: {effect}; remove the key, and write the namespace at clients[{k}].namespace (a client entry "
                "for each namespace)",
            )
            continue
        if not _label_key_ok(name):
            yield Problem(path, _bad_label_key(key, carry))
        if not _label_value_ok(value):
            yield Problem(path, _bad_label_value(value, carry))


def _shape(i: int, app: App) -> Iterator[Problem]:
    """An app is HTTP (service) or raw ports on its address, never neither nor both; each port usable on that path."""
    yield from _service_name(i, app)
    if app.host_network is not None and app.ports:
        return  # refused once, as a host-network app (host_network_problems)
    if app.service is None and not app.ports:
        yield Problem(app_path(i), "needs service (an HTTP app behind the gateways) or ports (raw TCP/UDP on its own address); add one")
        return
    if app.service is not None and app.ports:
        yield Problem(
            app_path(i, "ports"),
            f"{app.name} has service too: an app with ports is reached at its own address, so its host cannot also be a gateway's; "
            "make the HTTP part another app with its own host, and let its gateway's pods reach that port: add "
            "{namespace: envoy-gateway-system, pods: {gateway.envoyproxy.io/owning-gateway-name: envoy-internal}, ports: [<its container port>]} "
            "to this app's clients",
        )
    if not app.ports:
        if app.address is not None:
            yield Problem(
                app_path(i, "address"), f"{app.address} is only for an app with ports (HTTP apps are reached through the gateways); remove it"
            )
        if app.selector is not None:
            yield Problem(app_path(i, "selector"), "is only for an app with ports (it picks the pods its own Service sends to); remove it")
        return
    if app.selector is not None:
        yield from _selector(i, app.selector)
    if app.address is None:
        yield Problem(app_path(i, "address"), "is required for an app with ports: name a free address of network.loadBalancerPool, its own for good")
    if app.audience == "external":
        yield Problem(app_path(i, "audience"), "external: " + _EXTERNAL_WAYS.format(address=app.address or "its address"))
    seen: dict[tuple[int, str], int] = {}
    named: dict[str, int] = {}
    for k, port in enumerate(app.ports):
        yield from _port(app_path(i, f"ports[{k}]"), port)
        key = (port.port, port.protocol)
        if key in seen:
            yield Problem(app_path(i, f"ports[{k}]"), f"{port.port}/{port.protocol} is already ports[{seen[key]}]; list each port once")
        elif port.port_name in named:
            # Kubernetes names each port of a Service apart (a repeated port's default name is said once, above).
            yield Problem(
                app_path(i, f"ports[{k}].name"), f"{port.port_name} is already the name of ports[{named[port.port_name]}]; name each port apart"
            )
        seen.setdefault(key, k)
        named.setdefault(port.port_name, k)


def _port(path: str, port: AppPort) -> Iterator[Problem]:
    if not 1 <= port.port <= 65535:
        yield Problem(f"{path}.port", f"{port.port} is not a port: TCP and UDP ports are 1 to 65535")
    if isinstance(port.target_port, int) and not 1 <= port.target_port <= 65535:
        yield Problem(f"{path}.targetPort", f"{port.target_port} is not a port: TCP and UDP ports are 1 to 65535")
    if isinstance(port.target_port, str):
        yield from _target_port_name(f"{path}.targetPort", port.target_port)
    if port.protocol == "tls":
        yield Problem(
            f"{path}.protocol",
            "tls: the app's own address carries TCP as it is and terminates no TLS; let the app serve TLS itself "
            "(Mosquitto's listener 8883 with its certificate) and write protocol: tcp",
        )
    elif port.protocol not in PROTOCOLS:
        yield Problem(f"{path}.protocol", f"{port.protocol} is not a protocol the app's address carries; write tcp or udp")


# How the address table names the log store's address written at logs.address (stacks.load._pool_owners).
LOGS_ADDRESS_WRITTEN = "the log store's LAN address (logs.address)"


def address_problems(apps: Sequence[tuple[int, App]], network: Network | None, held: Mapping[IPv4Address, str]) -> list[Problem]:
    """Each app's own address is in the load-balancer pool and nobody else's. `held` is the inventory's address table
    (stacks.addresses.table), the apps' own included: an app's address held by another owner is taken."""
    out: list[Problem] = []
    for i, app in apps:
        if not app.ports or app.address is None:
            continue
        path, ip = app_path(i, "address"), app.address
        pool = network.load_balancer_pool if network is not None else None
        if pool is not None and ip not in pool:
            out.append(Problem(path, f"{ip} is outside network.loadBalancerPool {pool}, so Cilium cannot give it to {app.name}'s Service"))
        owner = held.get(ip)
        if owner == LOGS_ADDRESS_WRITTEN:
            continue  # logs.address written onto an app's: said at logs.address (stacks.logs), the key that moved
        if owner is not None and owner != address_owner(i, app):
            out.append(Problem(path, f"{ip} is already {owner}; {app.name} needs an address of its own (Cilium gives an address to one Service)"))
    return out


def address_owner(i: int, app: App) -> str:
    """How the address table names an app's address."""
    return f"apps[{i}].address ({app.name})"


# Host networking, not a second interface: Talos ships no macvlan/ipvlan CNI plugin binaries and the project runs no
# Multus, and Cilium chains no second interface; a pod on the machine's own network namespace is what Talos + Cilium
# give as they are. mDNS and SSDP are link-local multicast, so the pod must be on the segment the devices are on.
#
# What listens, or will when a layer or a value of the stack turns it on, on an Arda worker's own network, so a
# host-network app may not take it: a port kept now for a layer turned on later would stop the app at that `up`. A
# listener on 127.0.0.1 counts too: an app's wildcard bind of the same port fails beside it (Linux refuses a bind beside
# a listening socket of the port, SO_REUSEADDR or not, socket(7)). Each as the pinned programs open it:
# - the kubelet (10250; its health endpoint 10248 on loopback) and Talos's apid (50000);
# - KubePrism, Talos's local proxy to the API server, which Cilium reaches the API through (stacks.talos_ports KUBEPRISM_PORT,
#   on 127.0.0.1; machinery v1.14.1 config/types/v1alpha1/v1alpha1_features.go:32);
# - Talos's host DNS resolver, on 127.0.0.53 and, forwarding the cluster's DNS, 169.254.116.108: the config the Talos
#   provider generates turns it on for every contract since 1.7 (machinery v1.14.1 config/generate/init.go:93-96,
#   252-258; contract.go:196, 211), and plans.talos does not turn it off;
# - Cilium 1.18.4's agent, on the node's network: its health checks (4240), Hubble's server (4244, with
#   arda.cilium.hubble), its tunnel between the nodes (the chart's routing-mode tunnel: VXLAN's 8472/udp,
#   pkg/defaults/defaults.go:509, or Geneve's 6081/udp should arda.cilium.values choose it), its health API (9879 on
#   127.0.0.1, daemon/healthz/agenthealth.go:64-66), its gops server (9890 on 127.0.0.1, pkg/gops/cell.go:44), its
#   metrics with monitoring (9962, plans.metrics), and should arda.cilium.values turn them on, WireGuard (51871/udp) and
#   Hubble's metrics (9965);
# - Cilium's Envoy DaemonSet, on the node's network: its metrics on 0.0.0.0 (9964, with monitoring or not) and its
#   health listener (9878 on 127.0.0.1) (the chart's files/cilium-envoy/configmap/bootstrap-config.yaml:6-11, 112-116);
# - Cilium's operator, on the node's network of whichever machines it runs on: its metrics (9963, the chart's default),
#   its health API (9234 on 127.0.0.1, the rendered operator-api-serve-addr) and its gops server (9891);
# - with monitoring, kube-prometheus's node-exporter (9100, plans.monitoring); with logs, the log collector's telemetry
#   (8888, plans.logs.TELEMETRY_PORT) and, on a stack without the Ainur, its receivers of Talos's logs (6050 and 6051,
#   plans.logs SERVICE_PORT and KERNEL_PORT: plans.logs.talos_cluster).
_EVERY = "on every Arda machine"
_OPERATOR = "on the machines it runs on, any of Arda's"
_VALUES = "should arda.cilium.values turn it on"
_HOST_DNS = f"taken by Talos's host DNS resolver (on 127.0.0.53, and 169.254.116.108 for the cluster's names) {_EVERY}"
NODE_LISTENERS: dict[tuple[int, str], str] = {
    (53, "tcp"): _HOST_DNS,
    (53, "udp"): _HOST_DNS,
    (4240, "tcp"): f"taken by Cilium's agent (its health checks) {_EVERY}",
    (4244, "tcp"): f"kept for Hubble's server (Cilium's agent, with arda.cilium.hubble) {_EVERY}",
    (6050, "tcp"): f"kept for the log collector's receiver of Talos's service logs (with logs, on a stack without the Ainur) {_EVERY}",
    (6051, "tcp"): f"kept for the log collector's receiver of Talos's kernel messages (with logs, on a stack without the Ainur) {_EVERY}",
    (6081, "udp"): f"kept for Cilium's Geneve tunnel between the machines ({_VALUES}) {_EVERY}",
    (7445, "tcp"): f"taken by KubePrism, Talos's proxy to the API server that Cilium reaches the API through, on 127.0.0.1 {_EVERY}",
    (8472, "udp"): f"taken by Cilium's VXLAN tunnel between the machines {_EVERY}",
    (8888, "tcp"): f"kept for the log collector's telemetry (with logs) {_EVERY}",
    (9100, "tcp"): f"kept for node-exporter (with monitoring) {_EVERY}",
    (9234, "tcp"): f"taken by Cilium's operator (its health API, on 127.0.0.1) {_OPERATOR}",
    (9878, "tcp"): f"taken by Cilium's Envoy (its health listener, on 127.0.0.1) {_EVERY}",
    (9879, "tcp"): f"taken by Cilium's agent (its health API, on 127.0.0.1) {_EVERY}",
    (9890, "tcp"): f"taken by Cilium's agent (its gops debug server, on 127.0.0.1) {_EVERY}",
    (9891, "tcp"): f"taken by Cilium's operator (its gops debug server, on 127.0.0.1) {_OPERATOR}",
    (9962, "tcp"): f"kept for Cilium's agent (its metrics, with monitoring) {_EVERY}",
    (9963, "tcp"): f"taken by Cilium's operator (its metrics) {_OPERATOR}",
    (9964, "tcp"): f"taken by Cilium's Envoy (its metrics) {_EVERY}",
    (9965, "tcp"): f"kept for Hubble's metrics ({_VALUES}) {_EVERY}",
    (10248, "tcp"): f"taken by the kubelet (its health endpoint, on 127.0.0.1) {_EVERY}",
    (10250, "tcp"): f"taken by the kubelet {_EVERY}",
    (50000, "tcp"): f"taken by Talos's apid {_EVERY}",
    (51871, "udp"): f"kept for Cilium's WireGuard encryption ({_VALUES}) {_EVERY}",
}
# Cilium's kube-proxy replacement (plans.cilium: kubeProxyReplacement) serves Kubernetes' NodePort range on every
# node address in eBPF, ahead of any socket there: a listener in it would never see its packets.
NODE_PORTS = range(30000, 32768)


def host_network_problems(apps: Sequence[tuple[int, App]], nodes: Sequence[tuple[int, Node]], nodes_complete: bool = True) -> list[Problem]:
    """An app on a machine's own network: the machine is an Arda worker of the stack, the namespace admits host
    networking, and no port is another listener's on that machine (the node's own or another such app's). With a node
    entry that did not parse (`nodes_complete` false), a machine not found is that entry's problem, said there."""
    out: list[Problem] = []
    machines = {n.name: n for _, n in nodes}
    workers = sorted(n.name for _, n in nodes if n.role == "istari")
    taken: dict[tuple[str, int, str], str] = {}
    for i, app in apps:
        host = app.host_network
        if host is None:
            continue
        path = app_path(i, "hostNetwork")
        node = machines.get(host.node)
        if node is None:
            if nodes_complete:
                out.append(
                    Problem(f"{path}.node", f"{host.node} is not a machine of the stack; name one of Arda's workers ({', '.join(workers) or 'none'})")
                )
        elif node.role not in ARDA_ROLES:
            out.append(
                Problem(f"{path}.node", f"{host.node} is an Ainur Pi ({node.role}), not Arda; name one of Arda's workers ({', '.join(workers)})")
            )
        elif node.role != "istari":
            out.append(
                Problem(
                    f"{path}.node",
                    f"{host.node} is a control plane machine (valinor): a host-network pod there would sit beside etcd's and the API "
                    f"server's own ports, so whoever owns the app reaches them from inside; name a worker ({', '.join(workers) or 'none'})",
                )
            )
        if app.ports:
            # The pod's sockets are the machine's: a LoadBalancer address in front of them would be a second way in,
            # held by whichever node wins its lease rather than the pod's, and its CiliumNetworkPolicy would filter
            # nothing (a host-network pod is no endpoint of its own: its traffic is the host's).
            ip = f" ({node.ip})" if node is not None else ""
            out.append(
                Problem(
                    app_path(i, "ports"),
                    f"{app.name} has hostNetwork too: its pod listens on {host.node}'s own address{ip}, so a Service address in front of "
                    "it would be a second way in that its network policy cannot filter; list the ports in hostNetwork.ports alone and "
                    "remove ports and address (clients reach the machine's address; an HTTP part goes behind the gateway with service)",
                )
            )
        if app.pod_security != "privileged":
            out.append(
                Problem(
                    app_path(i, "podSecurity"),
                    f"{app.pod_security or 'unset (restricted)'}, but the namespace's Pod Security level must be privileged to admit a pod "
                    "with hostNetwork (baseline forbids host namespaces); write podSecurity: privileged",
                )
            )
        seen: dict[tuple[int, str], int] = {}
        for k, port in enumerate(host.ports):
            port_path = f"{path}.ports[{k}]"
            # The machine's own sockets: TCP or UDP as the app opens them (no address of ours in front to refuse TLS at).
            problems = [q for q in _port(port_path, port) if not q.path.endswith(".protocol")]
            if port.protocol not in PROTOCOLS:
                problems.append(Problem(f"{port_path}.protocol", f"{port.protocol} is not a protocol a socket listens with; write tcp or udp"))
            if port.target_port is not None and port.target_port != port.port and not problems:
                # Nothing is rendered from these ports (no Service sits in front of a host-network pod: they exist for the
                # checks below), so a targetPort would move no traffic, only hide the port the pod really listens on
                # from the listeners it must not take. One equal to the port hides nothing: warned of as unused
                # (stacks.warn._host_target_port).
                problems.append(
                    Problem(
                        f"{port_path}.targetPort",
                        f"{port.target_port}: a host-network pod listens on {host.node}'s port itself, with no Service in front to "
                        f"translate {port.port} to another; remove targetPort, and write the port the app listens on as port",
                    )
                )
            out += problems
            key = (port.port, port.protocol)
            if problems:
                continue
            if key in seen:
                out.append(Problem(port_path, f"{port.port}/{port.protocol} is already ports[{seen[key]}]; list each port once"))
                continue
            seen[key] = k
            if key in NODE_LISTENERS:
                out.append(
                    Problem(
                        f"{port_path}.port",
                        f"{port.port}/{port.protocol} is {NODE_LISTENERS[key]}; the app must listen elsewhere",
                    )
                )
            elif port.port in NODE_PORTS:
                out.append(
                    Problem(
                        f"{port_path}.port",
                        f"{port.port} is in Kubernetes' NodePort range ({NODE_PORTS.start}-{NODE_PORTS.stop - 1}), which Cilium serves on every "
                        "node address before any socket sees it; the app must listen outside it",
                    )
                )
            elif (host.node, *key) in taken:
                out.append(
                    Problem(
                        f"{port_path}.port",
                        f"{port.port}/{port.protocol} on {host.node} is already {taken[(host.node, *key)]}; move one app to another worker or port",
                    )
                )
            else:
                taken[(host.node, *key)] = f"{app_path(i, f'hostNetwork.ports[{k}]')} ({app.name})"
    return out
