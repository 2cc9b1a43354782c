"""Warnings: what a stack may mean but most likely does not. `iluvatar validate` prints them after `valid`, and
`pulumi preview` logs them (pulumi.log.warn); neither refuses the stack, since each has a reading someone could want.

Each names the config path and the value as written, says what the consumer will do with it, and what to write for
the other reading. They are read from a valid stack only: a refused one is fixed first.
"""

from __future__ import annotations

import datetime
import itertools
import re
from collections.abc import Iterator, Sequence
from ipaddress import IPv4Address, IPv4Network

from plans import zone
from stacks import cel, chart_images, encryption, pi_listeners, pins, releases
from stacks.addresses import (
    CLIENTS,
    DEVICES,
    ENDPOINTS,
    NOUNS,
    ROUTER_ADDRESS,
    Held,
    Server,
    _router_fix,
    and_list,
    arda_workers,
    entries,
    hostless,
    lent_ranges,
    netbooted_image,
    patch_endpoints,
    route_ranges,
    routed,
    router_key,
    routers,
    searching,
    servers,
    waiting_range,
)
from stacks.apps import NAMESPACE_KEYS, NODE_LISTENERS, client_port_doubts
from stacks.boards import AINUR_ROLES, BOARDS
from stacks.data import (
    _FIELDS,
    _MACRO_SPECS,
    APP_SECRETS,
    BACKUP_GAP,
    DRILL_GAP,
    _cron_field,
    _days_run,
    _robfig_reads,
    drills,
    longest_gap,
    parse_target,
    rare_months,
    robfig_items,
    target_address,
)
from stacks.data_model import AppBackup, Keep
from stacks.day2 import ARGOCD_NOTES, release
from stacks.disk_ids import by_path_one_disk, nvme_links_comparable, one_wwn
from stacks.errors import Problem, show
from stacks.gitops import Lab
from stacks.logs_model import Logs
from stacks.model import DiskSelector, Node, StackConfig
from stacks.monitoring import server_on_arda
from stacks.remote_access import WORKER_WHEN, kept_off_groups, lent_routes
from stacks.rules import _transport, by_path_bus_path, etcd_release, link_name_doubts, newer_etcd_patch, talos_patches_of
from stacks.storage import arda_classes, default_class, longhorn_pis, nfs_address, shared_disk_names, zone_addresses

# A step as "every <nth> week" says it (a day-of-week step is at most 6: a larger one is refused, stacks.data.cron_problem).
_NTH = {2: "other", 3: "third", 4: "fourth", 5: "fifth", 6: "sixth"}
_DAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")


def warnings(stack: StackConfig) -> list[Problem]:
    """Every warning of a valid stack, in config order, each once: two rules (or one rule reaching a value twice) that
    say the same of the same key would have validate and `pulumi preview` print it twice."""
    return list(dict.fromkeys(_warnings(stack)))


def _warnings(stack: StackConfig) -> Iterator[Problem]:
    # The sign-in, alerting and GitOps layers' servers and the Pi image's, a zone name resolved as the Ainur's DNS answers it.
    reached = servers(
        stack.identity,
        stack.monitoring,
        stack.gitops,
        zone.records(stack),
        stack.network.domain,
        stack.apps,
        netbooted_image(stack.ainur, stack.nodes),
    )
    yield from _size_alone(stack)
    yield from _kind_alone(stack)
    yield from _bus_path_port_maybe(stack)
    yield from _every_disk(stack)
    yield from _kernel_name_beside_link(stack)
    yield from _links_of_two_kinds(stack)
    yield from _kernel_names_of_one_bus(stack)
    yield from _netbooted_maia_data_disks(stack)
    yield from shared_disk_names(list(enumerate(stack.nodes)))
    yield from _devices_in_router_range(stack, reached)
    yield from _patch_endpoints(stack)
    yield from _host_network_dhcp(stack)
    yield from _host_network_web_port(stack)
    yield from _host_target_port(stack)
    yield from _namespace_repeated(stack)
    yield from _namespace_name_label(stack)
    yield from _pi4_nvme(stack)
    yield from _rk1_second_nvme(stack)
    yield from _rk1_sd_in_slots_1_and_2(stack)
    yield from _pi5_wake_on_lan(stack)
    yield from link_name_doubts(list(enumerate(stack.nodes)), stack.arda.patches)
    yield from _generic_worker(stack)
    yield from _etcd_newer_patch(stack)
    yield from _glob_characters(stack)
    if stack.arda.cilium.version != pins.CHARTS["cilium"]:
        yield Problem(
            "iluvatar:arda.cilium.version",
            f"{stack.arda.cilium.version} is not the release Iluvatar pins ({pins.CHARTS['cilium']}): its values are checked "
            f"against {pins.CHARTS['cilium']}'s schema, and Helm fetches {stack.arda.cilium.version} only at `pulumi up`, which "
            "stops there if no such chart exists; check it is one (`helm search repo cilium/cilium --versions`)",
        )
    if stack.gitops is not None and stack.gitops.argocd.version != pins.CHARTS["argo-cd"]:
        # As Cilium's: the version goes to the Helm release as written (components.gitops), fetched from argo-helm's
        # index only at `pulumi up`, after both clusters are made; the program's values are written for the pinned one.
        yield Problem(
            "iluvatar:gitops.argocd.version",
            f"{stack.gitops.argocd.version} is not the release Iluvatar pins ({pins.CHARTS['argo-cd']}): the values Iluvatar gives "
            f"Argo CD are written and checked for {pins.CHARTS['argo-cd']}, and Helm fetches {stack.gitops.argocd.version} only at "
            "`pulumi up`, which stops there, after both clusters are made, if no such chart exists; check it is one "
            "(`helm search repo argo/argo-cd --versions`)"
            + (
                f"; and, older than {pins.CHARTS['argo-cd']}, it may not read every key Iluvatar sets (Helm drops such a key "
                f"without a word): read the chart's changelog ({ARGOCD_NOTES}) from {stack.gitops.argocd.version} to "
                f"{pins.CHARTS['argo-cd']}, or write {pins.CHARTS['argo-cd']}"
                if release(stack.gitops.argocd.version) < release(pins.CHARTS["argo-cd"])
                else ""
            ),
        )
    yield from chart_images.doubts(stack.arda, stack.gitops)
    yield from client_port_doubts(stack.apps)
    for i, app in enumerate(stack.apps):
        if app.backup is not None:
            yield from _either_day(f"iluvatar:apps[{i}].backup.schedule", app.backup.schedule)
            yield from _weekday_step(f"iluvatar:apps[{i}].backup.schedule", app.backup.schedule)
            yield from _empty_items(f"iluvatar:apps[{i}].backup.schedule", app.backup.schedule)
            yield from _months(f"iluvatar:apps[{i}].backup.schedule", app.backup.schedule, "a backup")
            yield from _hours_as_days(f"iluvatar:apps[{i}].backup.schedule", app.backup.schedule)
            yield from _many_an_hour(f"iluvatar:apps[{i}].backup.schedule", app.backup.schedule)
            # With keep.hourly set, restic keeps a snapshot of each hour, so every hour of the named days is a recovery
            # point kept, not a run thrown away: the schedule is then most likely meant, and the fix (once that day)
            # would cut the backups to one a day.
            if app.backup.keep.hourly is None:
                yield from _every_hour(f"iluvatar:apps[{i}].backup.schedule", app.backup.schedule)
            yield from _keeps_nothing(f"iluvatar:apps[{i}].backup.keep", app.backup.keep)
            yield from _keeps_defaults(f"iluvatar:apps[{i}].backup.keep", app.backup)
    yield from _leftover_secrets(stack)
    yield from _secrets_in_clear(stack)
    yield from _claims_in_clear(stack)
    yield from _prometheus_on_nfs(stack)
    yield from _logs_settings_while_off(stack)
    yield from _dns_twice(stack)
    yield from _served_by_arda(stack, reached)
    yield from _beside_pi_listeners(stack, reached)
    yield from _single_labels(stack, reached)
    yield from _tailscale_domain(stack)
    yield from _routes_into_lent(stack, reached)
    yield from _routes_nobody_reaches(stack)
    yield from _routes_to_arda_machines(stack)
    yield from _routes_over_workers(stack)
    yield from _routes_to_a_router(stack)
    yield from _nfs_at_a_router(stack)
    backup = stack.backup
    if backup is None:
        return
    yield from _same_box(stack)
    yield from _etcd_off_an_nfs_target(stack)
    yield from _either_day("iluvatar:backup.etcd.schedule", backup.etcd.schedule)
    yield from _weekday_step("iluvatar:backup.etcd.schedule", backup.etcd.schedule)
    yield from _empty_items("iluvatar:backup.etcd.schedule", backup.etcd.schedule)
    yield from _months("iluvatar:backup.etcd.schedule", backup.etcd.schedule, "an etcd snapshot")
    yield from _hours_as_days("iluvatar:backup.etcd.schedule", backup.etcd.schedule)
    if not _minutes_meant(backup.etcd.schedule):
        yield from _many_an_hour("iluvatar:backup.etcd.schedule", backup.etcd.schedule, _ETCD_RUN)
    yield from _every_hour("iluvatar:backup.etcd.schedule", backup.etcd.schedule, _ETCD_RUN)
    yield from _short_retention(backup.etcd.schedule, backup.etcd.keep)
    drill = backup.drill
    if not drill.enabled and drill.stale_after is not None:
        # Nothing reads staleAfter with the drill off (no CronJob, no RestoreDrillStale rule): harmless, and most often a
        # drill switched off for a while and meant to come back with it, so said, not refused.
        yield Problem(
            "iluvatar:backup.drill.staleAfter",
            f"{drill.stale_after} has no effect: the drill is off (drill.enabled: false), so no drill runs and no alert waits on "
            "it; remove staleAfter, or set drill.enabled: true for the drill to run",
        )
    if drill.enabled:
        yield from _either_day("iluvatar:backup.drill.schedule", drill.schedule)
        yield from _weekday_step("iluvatar:backup.drill.schedule", drill.schedule)
        yield from _empty_items("iluvatar:backup.drill.schedule", drill.schedule)
        yield from _months("iluvatar:backup.drill.schedule", drill.schedule, "the drill")
    # What the drill restores: every backed-up app's volumes with drill.volumes (plans.drill.volume_drills), and the etcd
    # snapshots of the clusters stacks.data.drills says; a backup it does not restore is no reason to slow it down.
    arda_drilled, ainur_drilled = drills(backup, stack.ainur is not None)
    if drill.enabled:
        every = longest_gap(drill.schedule)
        restored = [(f"apps[{i}] {app.name}", app.backup.schedule) for i, app in enumerate(stack.apps) if app.backup is not None and drill.volumes]
        if arda_drilled or ainur_drilled:
            restored.append(("backup.etcd", backup.etcd.schedule))
        # A backup rarer than any backup can mean is the mistake, not the drill: it is warned at its own key (_months).
        restored = [(what, schedule) for what, schedule in restored if longest_gap(schedule) <= BACKUP_GAP]
        rarer = [(what, schedule) for what, schedule in restored if longest_gap(schedule) > every]
        if rarer:
            named = ", ".join(f"{what} ({schedule})" for what, schedule in rarer)
            yield Problem(
                "iluvatar:backup.drill.schedule",
                f"{drill.schedule} runs more often than the backups it restores of {named}: between two of their backups it "
                "restores the same snapshot again; run the drill as seldom as the rarest backup (e.g. the day after it), or back "
                "those up as often",
            )
        else:
            burst = list(_drills_in_a_row(drill.schedule, restored))
            yield from burst
            if not burst:
                yield from _many_an_hour("iluvatar:backup.drill.schedule", drill.schedule, _DRILL_RUN)
                yield from _every_hour("iluvatar:backup.drill.schedule", drill.schedule, _DRILL_DAY)


# What a size bound lets through, as a message says it: Talos compares disk.size <op> <bytes>
# (v1alpha1_provider.go:1333-1355 at v1.13.9); a size with no comparison is refused (stacks.rules.exact_size).
_BOUND = {">=": "{} or more", ">": "more than {}", "<=": "{} or less", "<": "less than {}", "==": "exactly {}"}


def _devices_in_router_range(stack: StackConfig, named: Sequence[Server]) -> Iterator[Problem]:
    """A device of the address table (stacks.addresses.entries: the NAS, the NFS class's server, a DNS server, a BMC,
    the router's DHCP server at ainur.netboot.routerAddress, the other layers' servers written as an address, and the
    NTP servers and host entries of Arda's Talos patches) inside network.dhcpRange where the router lends it (proxy mode,
    or no Ainur): a reservation on the router keeps its address, which the stack cannot see; without one, a lease that
    moves takes what reaches the device by that address with it (every backup and mount, every machine's resolver,
    `up`'s power control, sign-in, the alerts, Argo CD's clone), silently until it is next needed. In dhcp mode the Ainur
    lend the range and know no reservation of the device's: refused there (stacks.addresses.check). A server written as a
    zone name is a machine's or a VIP's address, never lent; the routed devices have their own warning
    (`_routes_into_lent`), but for a device of the table that a route names too.

    One address is one device, and one lease: the keys that name it (the NAS serving the backups, the NFS class and the
    DNS, a route to it) are said in one warning, under the first, with every harm of the one reservation missing."""
    lent = stack.network.dhcp_range
    for ip, held in _lent_devices(stack, named).items():
        first = held[0]
        written = stack.backup.target if first.kind == "nas" and stack.backup is not None else first.written
        shown = f"{written}: {ip}" if written and written != str(ip) else str(ip)
        others = [k for h in held for k in (h.path, *h.also)][1:]
        named_too = f", and {and_list(others)} name{'s' if len(others) == 1 else ''} the same device" if others else ""
        harms = list(dict.fromkeys(_LENT_ROUTE if h.kind == "route" else CLIENTS[h.kind] for h in held))
        harm = harms[0] if len(harms) == 1 else f"each loses it ({'; '.join(harms)})"
        kinds = {h.kind for h in held}
        router = next((h for h in held if h.kind == "router"), None)
        if router is not None:
            # The router's DHCP server answers from a fixed address of its own, its server identifier (RFC 2131 section
            # 4.1: an address of the server's), and lends from the pool around it, so routerAddress inside that pool is
            # most likely a slip of the key, and the DHCP probe of `up` then takes the router's answers for another
            # server's (plans/netboot/dhcp_probe.py, `judge`). Warned, not refused: the range is the router's, as
            # written here, and a router may leave its own address out of a pool that spans it.
            others = [k for h in held if h is not router for k in (h.path, *h.also)]
            named_too = f", and {and_list(others)} name{'s' if len(others) == 1 else ''} the same address" if others else ""
            yield Problem(
                f"iluvatar:{ROUTER_ADDRESS}",
                f"{ip} is inside network.dhcpRange {lent}, the addresses the router lends{named_too}: a DHCP server answers "
                f"from a fixed address of its own, not one of the pool it lends, so this is likely not the address the "
                f"router's answers carry, and {CLIENTS['router']}; {_router_fix(stack.network, 'the range')}",
            )
            continue
        fix = f"{NOUNS[first.kind]} (or give it" if kinds == {first.kind} else f"{ip} (or give the device"
        yield Problem(
            f"iluvatar:{first.path}",
            f"{shown} is inside network.dhcpRange {lent}, the addresses the router lends{named_too}: if its lease moves, {harm}; "
            f"make sure the router holds a reservation for {fix} a fixed address outside the range)",
        )


# What a route to a device's address loses when the router lends the address to another.
_LENT_ROUTE = "the tailnet would reach whichever device is lent it next"


def _patch_endpoints(stack: StackConfig) -> Iterator[Problem]:
    """A log destination, an extra manifest's URL or the discovery service of Arda's Talos patches (stacks.addresses.
    patch_endpoints) written as an address inside a range lent to others (network.dhcpRange, the discovery pool,
    ainur.netboot.routerPool) or the load-balancer pool (a Service on Arda, down whenever Arda is, and absent while it
    bootstraps): what Talos sends or fetches there reaches whichever host holds the address. A warning: the machines
    still join (the registry mirrors, proxies and NTP servers, which they cannot join without, are refused,
    stacks.addresses.check), and a reservation or a Service meant to serve it may exist."""
    lent = lent_ranges(stack.network, stack.ainur, stack.arda.discovery.pool if stack.arda is not None and stack.arda.discovery is not None else None)
    for path, written, host, kind in patch_endpoints(talos_patches_of(stack.arda, list(enumerate(stack.nodes)))):
        try:
            ip = IPv4Address(host)
        except ValueError:
            continue
        what, harm = ENDPOINTS[kind]
        inside = next((r for r in lent if ip in r.range), None)
        if inside is not None:
            yield Problem(
                f"iluvatar:{path}",
                f"{written}: its server {ip} is inside {inside.key} {inside.range}, addresses lent to others, and it is {what}: "
                f"{harm}; give its host a fixed address outside the range"
                + (" (or a reservation on the router)" if inside.lender == "router" else ""),
            )
        elif ip in stack.network.load_balancer_pool:
            yield Problem(
                f"iluvatar:{path}",
                f"{written}: its server {ip} is inside network.loadBalancerPool {stack.network.load_balancer_pool}, the addresses "
                f"Arda's Services take, and it is {what}: a Service on Arda answers nothing while Arda bootstraps or whenever "
                "Arda is down; give it a host off Arda if it must answer then",
            )


def _lent_devices(stack: StackConfig, named: Sequence[Server]) -> dict[IPv4Address, list[Held]]:
    """The devices of the address table inside network.dhcpRange where the router lends it, by address, each with the
    keys that name it in the table's order, a remote-access route to one device (/32) last; a route alone at an address
    is left to `_routes_into_lent`."""
    if stack.ainur is not None and stack.ainur.netboot.mode == "dhcp":
        return {}
    lent = stack.network.dhcp_range
    nodes = list(enumerate(stack.nodes))
    patches = talos_patches_of(stack.arda, nodes)
    kernel_args = stack.arda.kernel_args if stack.arda is not None else None
    table = entries(nodes, [], None, None, stack.backup, stack.network, stack.storage, named, stack.ainur, patches, None, kernel_args)
    out: dict[IPv4Address, list[Held]] = {}
    for d in table:
        if d.kind not in DEVICES or d.name or d.ip not in lent or d.ip == stack.network.gateway:
            continue
        out.setdefault(d.ip, []).append(d)
    for route in routed(stack.remote_access):
        if route.ip in out:
            out[route.ip].append(route)
    return out


def _host_network_dhcp(stack: StackConfig) -> Iterator[Problem]:
    """An app on an Arda machine's own network listening on 67/udp, the DHCP server's port, while the Ainur lend the LAN's
    addresses (netboot mode dhcp): a DHCP server there is a second one on the segment, whose offers the household's
    devices may take (docs/layers/netboot.md: in dhcp mode the Ainur are the LAN's one DHCP server). A warning: a DHCP
    relay or a tool that only listens (a network scanner) listens there too, and may be meant."""
    if stack.ainur is None or stack.ainur.netboot.mode != "dhcp":
        return
    for i, app in enumerate(stack.apps):
        for k, port in enumerate(app.host_network.ports if app.host_network is not None else ()):
            if port.port == 67 and port.protocol == "udp":
                yield Problem(
                    f"iluvatar:apps[{i}].hostNetwork.ports[{k}]",
                    f"67/udp is the DHCP server's port, and {app.name} listens there on {app.host_network.node if app.host_network else ''}'s "
                    "own network while the Ainur lend the LAN's addresses (ainur.netboot.mode: dhcp): a DHCP server there is a "
                    "second one on the LAN, whose answers the household's devices may take instead of the Ainur's; if the app "
                    "serves DHCP, turn that off in it (a relay or a listener only is fine)",
                )


def _host_network_web_port(stack: StackConfig) -> Iterator[Problem]:
    """An app on an Arda machine's own network whose HTTP part's `service.port` is not among its `hostNetwork.ports`: its
    pod's web port is a port of the machine itself, and only the ports listed there are checked against what already
    listens on it (stacks.apps.host_network_problems: the kubelet, node-exporter, Cilium...). A warning: the Service is
    the app's own, in Git, and may send its port to another targetPort, which is then the one to list."""
    for i, app in enumerate(stack.apps):
        host = app.host_network
        if host is None or app.service is None or any(p.port == app.service.port and p.protocol == "tcp" for p in host.ports):
            continue
        port = app.service.port
        holder = NODE_LISTENERS.get((port, "tcp"))
        taken = f" ({port}/tcp is {holder})" if holder is not None else ""
        yield Problem(
            f"iluvatar:apps[{i}].service.port",
            f"{port} is not in hostNetwork.ports, but {app.name}'s pod listens on {host.node}'s own network, where its web port is a "
            f"port of the machine{taken}; list {{port: {port}, protocol: tcp}} in hostNetwork.ports, so it is checked against what "
            "listens there (if the app's Service sends it to another targetPort, list that port instead)",
        )


def _host_target_port(stack: StackConfig) -> Iterator[Problem]:
    """A host-network port whose targetPort is the port itself: nothing is rendered from these ports (no Service sits in
    front of a host-network pod), so a targetPort translates nothing; another one is refused (stacks.apps, it would hide
    the port the pod listens on), this one hides nothing. Said, not refused: harmless, and the key is unused."""
    for i, app in enumerate(stack.apps):
        host = app.host_network
        for k, port in enumerate(host.ports if host is not None else ()):
            if host is not None and port.target_port == port.port:
                yield Problem(
                    f"iluvatar:apps[{i}].hostNetwork.ports[{k}].targetPort",
                    f"{port.target_port} is unused: a host-network pod listens on {host.node}'s port {port.port} itself, with no "
                    "Service in front to translate it; remove targetPort",
                )


def _namespace_repeated(stack: StackConfig) -> Iterator[Problem]:
    """A client's pods naming its own namespace by the label Cilium gives a pod's namespace, with a source a pod's label
    matches (stacks.apps.NAMESPACE_KEYS): plans.ports.client_selector writes that label from clients[].namespace, so the
    key repeats it, harmless. Said, not refused: it changes nothing, and the namespace is the client entry's to say (one
    naming another namespace, or with a source no pod's label has, is refused there)."""
    for i, app in enumerate(stack.apps):
        for k, client in enumerate(app.clients):
            for key, value in (client.pods or {}).items():
                if key in NAMESPACE_KEYS and value == client.namespace:
                    yield Problem(
                        f"iluvatar:apps[{i}].clients[{k}].pods.{key}",
                        f"{value} repeats clients[{k}].namespace, which Iluvatar already writes as the label Cilium gives the pods' "
                        "namespace: the key changes nothing; remove it",
                    )


# The label the API server gives every Namespace, its name (Kubernetes v1.35.1 pkg/registry/core/namespace/strategy.go:129,
# k8s.io/api core/v1 well_known_labels.go:73): a Namespace's, never set on a pod but by hand.
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


def _namespace_name_label(stack: StackConfig) -> Iterator[Problem]:
    """A client's pods selected by the label the API server gives Namespaces: plans.ports.client_selector writes each key
    as a label the client's pods must carry, and no pod carries this one unless it was set on the pod by hand, so the
    policy most likely admits no client. Said, not refused: a pod may carry any label."""
    for i, app in enumerate(stack.apps):
        for k, client in enumerate(app.clients):
            for key, value in (client.pods or {}).items():
                # A key may carry Cilium's source before a ':' (k8s:, any:), as stacks.apps reads it.
                name = key.removeprefix("$").partition(":")[2] if ":" in key else key
                if name != NAMESPACE_NAME_LABEL:
                    continue
                meant = (
                    f"clients[{k}].namespace ({client.namespace}) already selects that namespace: remove the key"
                    if value == client.namespace
                    else f"to admit the pods of namespace {value}, write clients[{k}].namespace: {value} and remove the key"
                )
                yield Problem(
                    f"iluvatar:apps[{i}].clients[{k}].pods.{key}",
                    f"{value} is asked of the client pods' own labels, but {NAMESPACE_NAME_LABEL} is the label the API server gives "
                    f"a Namespace, which no pod carries unless set by hand, so the policy would admit none of them; {meant}",
                )


def _routes_into_lent(stack: StackConfig, named: Sequence[Server]) -> Iterator[Problem]:
    """A remote-access route into a lent range (stacks.addresses.route_ranges) that the stack cannot refuse, in config order:

    - a route to one device (/32) inside a range the router lends (network.dhcpRange or ainur.netboot.routerPool in
      proxy mode, network.dhcpRange without the Ainur) where no machine waits to be discovered: as for the NAS, a reservation on the router keeps the device's address, which the stack cannot see;
      without one, the tailnet reaches whichever device is lent the address next. In dhcp mode the Ainur lend the range
      and know no reservation of the device's: refused there (stacks.remote_access.lent_routes). A device of the address
      table there is warned of at its own key (`_devices_in_router_range`), once;
    - a route that holds fixed addresses and runs into network.dhcpRange (or the router's pool in proxy mode), where
      no machine waits to be discovered, and no other lent range: the lent part reaches
      every port of whichever of the household's devices is lent one of it. The rule and its message are
      stacks.remote_access.lent_routes', which refuses a route into the other lent ranges or wholly lent."""
    if stack.remote_access is None:
        return
    discovery = stack.arda.discovery.pool if stack.arda.discovery is not None else None
    lent = route_ranges(stack.network, stack.ainur, discovery)
    # A /32 where machines wait to be discovered is refused (stacks.remote_access.lent_routes).
    waiting = waiting_range(stack.arda.discovery, stack.ainur)
    # A route to a device the address table knows is said in that device's warning (`_devices_in_router_range`).
    devices = _lent_devices(stack, named)
    for i, route in enumerate(stack.remote_access.routes):
        if route.num_addresses == 1:
            r = next((r for r in lent if r.lender == "router" and r.key not in waiting and route.network_address in r.range), None)
            if r is not None and route.network_address not in devices:
                yield Problem(
                    f"iluvatar:remoteAccess.routes[{i}]",
                    f"{route} is inside {r.key} {r.range}, the addresses the router lends: the tailnet reaches the device by "
                    "this address, so make sure the router holds a reservation for it (or give the device a fixed address outside "
                    "the range), else the tailnet reaches whichever device is lent it next",
                )
    yield from _lent_warned(stack)


def _lent_warned(stack: StackConfig) -> list[Problem]:
    """The routes into network.dhcpRange warned of (stacks.remote_access.lent_routes): a valid stack has no route the rule
    refuses, and a /32 in a lent range is said by `_routes_into_lent` or by the rules that place its address."""
    remote = stack.remote_access
    if remote is None:
        return []
    discovery = stack.arda.discovery.pool if stack.arda.discovery is not None else None
    lent = route_ranges(stack.network, stack.ainur, discovery)
    fixed = {route.network_address for route in remote.routes if route.num_addresses == 1}
    waiting = waiting_range(stack.arda.discovery, stack.ainur)
    workers = arda_workers(list(enumerate(stack.nodes)))
    return [p for p, refused in lent_routes(remote, stack.network, lent, fixed, waiting=waiting, worker_addresses=workers) if not refused]


def _routes_nobody_reaches(stack: StackConfig) -> Iterator[Problem]:
    """Routes no group of `access` reaches: the subnet router advertises them and they are approved, but the policy gives
    a route's every port only to the groups with reach: routes (plans.remote_access.destinations), so no one on the
    tailnet reaches them. Harmless, so said, not refused: most often a group's `routes` forgotten (the routes are what
    was meant), or routes left behind after the group lost it."""
    remote = stack.remote_access
    if remote is None or not remote.routes or any("routes" in g.reach for g in remote.access):
        return
    groups = ", ".join(f"access[{k}] {g.group}" for k, g in enumerate(remote.access))
    yield Problem(
        "iluvatar:remoteAccess.routes",
        f"{', '.join(str(r) for r in remote.routes)} {'is' if len(remote.routes) == 1 else 'are'} advertised, but no group of "
        f"remoteAccess.access has reach: routes ({groups}), so no one on the tailnet reaches {'it' if len(remote.routes) == 1 else 'them'}; "
        "add routes to the reach of the group that should, or remove the routes",
    )


def _routes_to_arda_machines(stack: StackConfig) -> Iterator[Problem]:
    """A route to one machine of Arda (its /32: a control plane or a worker), while a group reaches routes: the tailnet
    reaches every port of it, Talos's API (apid, 50000) and the kubelet (10250) among them, and what a pod there serves
    on the host's network, where reach: kubernetes opens only Arda's API server at arda.vip (plans.remote_access
    .destinations); the load-balancer pool is refused for the like (stacks.remote_access._routes). A group kept off the
    clusters is refused a route over a control plane there too; past that, apid and the kubelet authenticate their
    clients (Talos's by its client certificate) but for apid in maintenance mode (a machine reset, or discovered, until
    `up` configures it), which the message names, and talosctl from away is what such a route is for (reach: kubernetes
    gives it no port), so it is said, not refused, naming the machine. A wider route holding machines among other
    devices is a part of the LAN routed on purpose (as one holding a whole lent range, `_routes_into_lent`), and the
    routes a refusal offers are such parts: not warned of, but for a worker's address while a group is kept off the
    clusters (`_routes_over_workers`)."""
    remote = stack.remote_access
    if remote is None:
        return
    reaching = [g.group for g in remote.access if "routes" in g.reach]
    if not reaching:
        return  # nobody reaches the routes: `_routes_nobody_reaches`
    machines = {n.ip: f"nodes[{k}].ip ({n.name})" for k, n in enumerate(stack.nodes) if n.role not in AINUR_ROLES}
    groups = f"the group {reaching[0]} has" if len(reaching) == 1 else f"the groups {', '.join(reaching)} have"
    for i, route in enumerate(remote.routes):
        if route.num_addresses != 1 or route.network_address not in machines:
            continue
        yield Problem(
            f"iluvatar:remoteAccess.routes[{i}]",
            f"{route} is {machines[route.network_address]}, a machine of Arda: {groups} reach: routes, so the tailnet would "
            "reach every port of it (Talos's API, which in maintenance mode, a machine reset or reflashed until the next `up` "
            "or newly discovered until its apply, applies a machine configuration sent by anyone; the kubelet; what a pod "
            "there serves on the host's network), where reach: kubernetes opens only Arda's API server; remove the route, "
            "unless reaching the machine itself from away (talosctl) is meant",
        )


def _routes_to_a_router(stack: StackConfig) -> Iterator[Problem]:
    """A route holding the router's address (network.gateway, a VLAN's gateway) while a group reaches routes but not
    kubernetes: the tailnet reaches every port of the router, its admin pages among them, and the router runs the whole
    house's network. A group with reach: kubernetes administers the clusters and may well administer the router; a group
    without it (the family, reaching the printer and the NAS) is kept off the clusters (stacks.remote_access._routes), and
    the router is as much the homelab's as they are. Its admin pages ask for a password, and some owners do mean to reach
    their router from away, so it is said, not refused, with the routes around it (the routes a refusal offers leave the
    router out already, stacks.remote_access._narrowed). A route warned of for running into network.dhcpRange is said
    there once, its routes leaving the router out too (`_lent_warned`)."""
    remote = stack.remote_access
    if remote is None:
        return
    kept_off = kept_off_groups(remote)
    if not kept_off:
        return
    said = {p.path for p in _lent_warned(stack)}
    groups = f"the group {kept_off[0]} reaches" if len(kept_off) == 1 else f"the groups {', '.join(kept_off)} reach"
    for i, route in enumerate(remote.routes):
        held = [(key, ip) for key, ip in routers(stack.network) if ip in route]
        if not held or f"iluvatar:remoteAccess.routes[{i}]" in said:
            continue
        around = [route]
        # The routes offered leave Arda's workers out too (`_routes_over_workers`), so they validate with no warning.
        for ip in [ip for _, ip in held] + [ip for ip in arda_workers(list(enumerate(stack.nodes))) if ip in route]:
            around = [part for net in around for part in (net.address_exclude(IPv4Network(ip)) if ip in net else (net,))]
        around = [net for net in around if not hostless(stack.network, net)]
        named = ", ".join(f"{key} {ip}" for key, ip in held)
        what = f"is {named}, the router's address" if route.num_addresses == 1 else f"holds {named}, the router's address"
        fix = f"route {', '.join(str(n) for n in sorted(around))} instead" if around else "remove it"
        yield Problem(
            f"iluvatar:remoteAccess.routes[{i}]",
            f"{route} {what}: {groups} routes but not kubernetes, so the tailnet would reach every port of the router (its admin "
            f"pages, SSH where it has it), which runs the whole house's network; {fix}, unless {'that group' if len(kept_off) == 1 else 'they'} "
            "should administer the router",
        )


def _routes_over_workers(stack: StackConfig) -> Iterator[Problem]:
    """A route wider than one address holding Arda's workers while a group reaches routes but not kubernetes: a worker is
    not among the clusters' own addresses (its kubelet and Talos's API authenticate their clients, and what it runs is
    reached through the gateways), but a worker reset or reflashed waits in Talos's maintenance mode at its address until
    the next `up` (plans.bringup's probe "maintenance"), as a machine discovered does until its apply step, and then
    applies a configuration from anyone (stacks.remote_access._lent_harm): the group could own the machine, and the next
    `up` would meet a foreign Talos. Such a state is brief and the route may be meant, so it is said, not refused, with
    the routes around the workers and the router (which the routes a refusal offers leave out already,
    stacks.remote_access._narrowed). A /32 to a worker is said by `_routes_to_arda_machines`; a route warned of for
    running into network.dhcpRange is said there once, its routes leaving the workers out too (`_lent_warned`)."""
    remote = stack.remote_access
    if remote is None:
        return
    kept_off = kept_off_groups(remote)
    if not kept_off:
        return
    said = {p.path for p in _lent_warned(stack)}
    workers = arda_workers(list(enumerate(stack.nodes)))
    groups = f"the group {kept_off[0]} reaches" if len(kept_off) == 1 else f"the groups {', '.join(kept_off)} reach"
    for i, route in enumerate(remote.routes):
        held = sorted(ip for ip in workers if ip in route)
        if route.num_addresses == 1 or not held or f"iluvatar:remoteAccess.routes[{i}]" in said:
            continue
        around = [route]
        for ip in held + [ip for _, ip in routers(stack.network) if ip in route]:
            around = [part for net in around for part in (net.address_exclude(IPv4Network(ip)) if ip in net else (net,))]
        around = [net for net in around if not hostless(stack.network, net)]
        named = ", ".join(f"{ip} ({workers[ip].replace(' (', ', ').removesuffix(')')})" for ip in held)
        fix = f"route {', '.join(str(n) for n in sorted(around))} instead" if around else "remove it"
        yield Problem(
            f"iluvatar:remoteAccess.routes[{i}]",
            f"{route} holds Arda's worker{'s' if len(held) > 1 else ''} {named}: {groups} routes but not kubernetes, so the "
            f"tailnet would reach every port of {'each' if len(held) > 1 else 'it'}, Talos's API among them, which {WORKER_WHEN} "
            f"applies a machine configuration sent by anyone, and whoever sends one owns the machine; {fix}, unless {'that group' if len(kept_off) == 1 else 'they'} should "
            "reach the workers themselves",
        )


def _nfs_at_a_router(stack: StackConfig) -> Iterator[Problem]:
    """The NFS class's server at the address of the LAN's router (network.gateway) or a VLAN's: every volume of the class
    mounts from the router. Some routers do serve NFS (a disk on their USB port), so it is said, not refused, as a BMC
    there is (stacks.addresses._bmc_at_a_router, an appliance that serves nothing else); most often it is the NAS's
    address mistyped, and every mount fails."""
    if stack.storage.nfs is None:
        return
    try:
        server = IPv4Address(stack.storage.nfs.server)
    except ValueError:
        return  # a name of the internal zone: a machine's or a VIP's, whose own rules speak
    key = router_key(stack.network, server)
    if key is not None:
        yield Problem(
            "iluvatar:storage.nfs.server",
            f"{server} is {key}, the router's address: every volume of the nfs class would mount {stack.storage.nfs.share} from the "
            "router; some routers do serve NFS (a disk on their USB port), so make sure this one does, else write the NAS's address",
        )


def _size_alone(stack: StackConfig) -> Iterator[Problem]:
    """An install disk selector of size alone beside data disks. Talos installs on the first disk by name its selector
    matches (v1alpha1_sequencer_tasks.go:1518-1536 at v1.13.9), and a size bound matches every disk on its side of it:
    a data disk of that size whose name sorts first (/dev/nvme0n1 before /dev/sda) becomes the system disk. A warning,
    not a refusal as a type or model the data disk's name shows is (stacks.rules): the stack says no disk's size, and a
    bound between the two disks' sizes is the very thing that tells them apart (<= 500GB beside a 256GB system SSD and
    a 4TB data disk), so only the user can say whether it does."""
    for i, node in enumerate(stack.nodes):
        selector = node.install_disk
        if not isinstance(selector, DiskSelector) or selector.size is None:
            continue
        if selector.type is not None or any(_asks(v) for v in (selector.model, selector.serial, selector.wwid, selector.bus_path)):
            continue
        bound = re.match(r"^\s*(>=|<=|>|<|==)?\s*(.*?)\s*$", selector.size)
        assert bound is not None  # the pattern matches any text
        taken = _BOUND.get(bound.group(1) or "==", "{}").format(bound.group(2))
        for d, disk in enumerate(node.data_disks):
            yield Problem(
                f"iluvatar:nodes[{i}].dataDisks[{d}]",
                f"{disk} may be the disk installDisk {selector} selects: Talos installs on the first disk by name its selector "
                f"matches (v1alpha1_sequencer_tasks.go:1518-1536 at v1.13.9), and a size is all this one asks, so if {disk} holds "
                f"{taken} and its name sorts before the system disk's, the system disk and Ceph's are one; pin installDisk to the "
                "system disk's serial or wwid (`talosctl get disks --insecure -n <its address>` lists them), or write its "
                "/dev/disk/by-id path",
            )


def _asks(glob: str | None) -> bool:
    """Whether a selector's glob (model, serial, wwid, busPath) asks anything: Talos matches each as glob(pattern,
    disk.<field>) (v1alpha1_provider.go:1357-1406 and 1453-1454 at v1.13.9; celenv.go:216-220, go-glob), where `*`
    (or `**`) matches any text, so such a glob matches every disk."""
    return glob is not None and glob.strip("*") != ""


def _every_disk(stack: StackConfig) -> Iterator[Problem]:
    """An install disk selector whose every field is a glob of `*` alone (`{serial: "*"}`) beside data disks: it asks
    nothing, so it matches every disk, and Talos installs on the first by name (v1alpha1_sequencer_tasks.go:1518-1536 at
    v1.13.9), a data disk whose name sorts before the system disk's among them. Said as the size-only and type-only
    selectors are (`_size_alone`, `_kind_alone`): the stack does not say which name sorts first, but nothing else here
    tells the disks apart. A selector with a size or type beside its `*` is theirs to say."""
    for i, node in enumerate(stack.nodes):
        selector = node.install_disk
        if not isinstance(selector, DiskSelector) or selector.size is not None or selector.type is not None:
            continue
        globs = {k: v for k, v in selector.talos().items() if k not in ("size", "type")}
        roots = {k: r for k, v in globs.items() if k == "busPath" and (r := _bus_root_only(v)) is not None}
        if any(_asks(v) and k not in roots for k, v in globs.items()):
            continue
        said = " and ".join(f"{k} {v}" for k, v in globs.items())
        if roots:
            matches = (
                f"{said} match{'es' if len(globs) == 1 else ''} every disk behind the bus root {roots['busPath']} (on most machines "
                "every NVMe and SATA disk), so the selector tells no disk apart"
            )
        else:
            matches = f"{said} match{'es' if len(globs) == 1 else ''} every disk, so the selector asks nothing"
        for d, disk in enumerate(node.data_disks):
            yield Problem(
                f"iluvatar:nodes[{i}].dataDisks[{d}]",
                f"{disk} may be the disk installDisk {selector} selects: {matches} and Talos installs on the first disk by name "
                "(v1alpha1_sequencer_tasks.go:1518-1536 at v1.13.9); if "
                f"{disk}'s name sorts before the system disk's, the system disk and Ceph's are one; pin installDisk to the system "
                "disk's serial or wwid (`talosctl get disks --insecure -n <its address>` lists them), or write its /dev/disk/by-id path",
            )


# A bus root under /sys/devices, the first component of Talos's disk.bus_path: a PCI root complex (pci<domain>:<bus>)
# or the platform bus of a board's built-in controllers.
_BUS_ROOT = re.compile(r"^(pci[0-9a-f]{4}:[0-9a-f]{2}|platform)$")


def _bus_root_only(glob: str) -> str | None:
    """The bus root a busPath glob names, when that is all it names before its first wildcard (`/pci0000:00/*`): the
    rest matches any device behind it, every disk on that root complex. None when a literal component past the root
    names a controller, port or device (`/pci0000:00/0000:00:17.0/ata1/*`), or the glob has no wildcard."""
    parts = [p for p in glob.split("/") if p]
    first = next((k for k, p in enumerate(parts) if "*" in p), None)  # go-glob's one wildcard (stacks.disk_ids.glob)
    # A wildcard after a literal start of the component (0000:00:17.0*) pins the device it starts: not the root alone.
    if first is None or first == 0 or not parts[first].startswith("*") or not all(_BUS_ROOT.match(p) for p in parts[:first]):
        return None
    return "/" + "/".join(parts[:first])


_KERNEL_DISK = re.compile(r"^/dev/(?:(?P<nvme>nvme\d+n\d+)|(?P<other>sd[a-z]+|vd[a-z]+)|(?P<mmc>mmcblk\d+))$")
_LINK_DISK = re.compile(
    r"^/dev/disk/by-(?:id/(?:(?P<nvme>nvme-)|(?P<other>ata-|scsi-|usb-|wwn-|virtio-)|(?P<mmc>mmc-))|path/\S*-(?:(?P<pnvme>nvme-\d+)|(?P<pother>ata-\d+|scsi-\S+|usb-\S+|virtio-\S+)|(?P<pmmc>mmc\S*)))"
)


def _bus(disk: str) -> str | None:
    """The bus a disk's kernel name or link says (nvme, mmc, other), or None."""
    for pattern in (_KERNEL_DISK, _LINK_DISK):
        found = pattern.match(disk)
        if found is not None:
            groups = {k.removeprefix("p"): v for k, v in found.groupdict().items() if v}
            return next(iter(groups), None)
    return None


def _storage(node: Node) -> str:
    """The storage that takes a machine's data disks: Rook-Ceph on Arda, Longhorn on the Ainur (plans.cloudinit gives
    it dataDisks[0]), as a disk warning names it."""
    return "Longhorn" if node.role in AINUR_ROLES else "Ceph"


def _named_disks(node: Node) -> list[tuple[str, str]]:
    """A machine's disks written as names, each with its key: installDisk (unless a selector), then each data disk."""
    named = [("installDisk", node.install_disk)] if isinstance(node.install_disk, str) else []
    return named + [(f"dataDisks[{d}]", disk) for d, disk in enumerate(node.data_disks)]


def _kernel_name_beside_link(stack: StackConfig) -> Iterator[Problem]:
    """One machine's disks named one by its kernel name (/dev/nvme0n1) and another by a /dev/disk/by-id or by-path link of
    the same bus: the link names a device by its model and serial or its slot, which the stack does not tie to a kernel
    name, so both may be the one disk (the system disk given to Ceph) and nothing offline can tell. A warning, since a
    machine with two disks of a bus is right to name them so; named alike (both by-id), the rules compare them."""
    for i, node in enumerate(stack.nodes):
        named = _named_disks(node)
        for k, (key, disk) in enumerate(named):
            for other_key, other in named[:k]:
                # One a kernel name, the other (having a bus, and not a kernel name) a link.
                kinds = {bool(_KERNEL_DISK.match(disk)), bool(_KERNEL_DISK.match(other))}
                bus = _bus(disk)
                if kinds != {True, False} or bus is None or bus != _bus(other):
                    continue
                yield Problem(
                    f"iluvatar:nodes[{i}].{key}",
                    f"{disk} and {other_key} {other} may be one disk: one is a kernel name, the other a /dev/disk link of the "
                    f"same bus, which validate cannot compare, and if they are one, {_storage(node)} takes {'the system disk' if other_key == 'installDisk' else 'a disk twice'}; "
                    f"name both by /dev/disk/by-id links of one kind (`ls -l /dev/disk/by-id/` on {node.name} shows which kernel name each link is)",
                )
                break


# What kind of /dev/disk link a name is, and the transports a disk with such a link may have. udev gives one disk a
# link of several kinds (60-persistent-storage.rules): <ID_BUS>-<ID_SERIAL> (ata-, usb-, scsi- or virtio-: one of them,
# after the bus the disk is on), wwn-<its WWN> beside it for a SATA, SAS or USB disk that reports one, and its
# by-path link; an NVMe namespace nvme-<model>_<serial> and nvme-<its wwid> (eui., nvme., uuid.: the one wwid the kernel
# gives it) and its by-path link. sg3_utils' 55-scsi-sg3_id.rules adds scsi- links to SATA and USB disks too.
_LINK_KINDS: tuple[tuple[str, re.Pattern[str], frozenset[str]], ...] = (
    ("by-id nvme-<wwid>", re.compile(r"^/dev/disk/by-id/nvme-(?:eui|nvme|uuid)\."), frozenset({"nvme"})),
    ("by-id nvme-<model>_<serial>", re.compile(r"^/dev/disk/by-id/nvme-"), frozenset({"nvme"})),
    ("by-id ata-<model>_<serial>", re.compile(r"^/dev/disk/by-id/ata-"), frozenset({"sata"})),
    ("by-id usb-<model>_<serial>", re.compile(r"^/dev/disk/by-id/usb-"), frozenset({"usb"})),
    ("by-id scsi-<id>", re.compile(r"^/dev/disk/by-id/scsi-"), frozenset({"sata", "usb", "scsi"})),
    ("by-id wwn-<wwn>", re.compile(r"^/dev/disk/by-id/wwn-"), frozenset({"sata", "usb", "scsi"})),
    ("by-id virtio-<serial>", re.compile(r"^/dev/disk/by-id/virtio-"), frozenset({"virtio"})),
    ("by-id mmc-<name>_<serial>", re.compile(r"^/dev/disk/by-id/mmc-"), frozenset({"mmc"})),
    # by-path: path_id names the device after the way to it, its last hop the transport (a USB disk's path ends in the
    # SCSI address of its bridge, so usb is looked for first; a SATA disk behind a SAS HBA ends in -sas- or -scsi-).
    ("by-path", re.compile(r"^/dev/disk/by-path/\S*-nvme-"), frozenset({"nvme"})),
    ("by-path", re.compile(r"^/dev/disk/by-path/\S*-usb-"), frozenset({"usb"})),
    ("by-path", re.compile(r"^/dev/disk/by-path/\S*-ata-"), frozenset({"sata"})),
    ("by-path", re.compile(r"^/dev/disk/by-path/\S*-(?:sas|scsi)-"), frozenset({"sata", "scsi"})),
    ("by-path", re.compile(r"^/dev/disk/by-path/\S*mmc"), frozenset({"mmc"})),
    ("by-path", re.compile(r"^/dev/disk/by-path/\S*virtio"), frozenset({"virtio"})),
)


def _link_kind(disk: str) -> tuple[str, frozenset[str]] | None:
    """The kind of /dev/disk link `disk` is, and the transports its disk may have, or None (a kernel name, a link this
    does not know)."""
    return next(((kind, transports) for kind, pattern, transports in _LINK_KINDS if pattern.match(disk)), None)


def _links_of_two_kinds(stack: StackConfig) -> Iterator[Problem]:
    """One machine's disks named by two /dev/disk links of different kinds that one disk may have both of (ata- and
    wwn-, nvme-<model>_<serial> and nvme-eui., a by-id link and a by-path one): udev links each disk under every kind,
    and nothing in the stack ties one kind to another, so both may be the one disk (the system disk given to Ceph) and
    nothing offline can tell, as with a kernel name beside a link (`_kernel_name_beside_link`). A warning, as that one:
    a machine with two disks is right to name them so. Two by-id links of one kind are compared by the rules (udev
    gives a disk one by-id link of each kind), and links whose disks cannot share a transport (nvme- and ata-, ata- and
    usb-) are two disks. udev gives a disk several by-path links (a SATA port's compat ata-<port>, usbv<n>-, virtio-pci-),
    which are read back to one (stacks.disk_ids.by_path_one_disk): the rules refuse two that are one disk, and the compat
    ata-<port> beside a port multiplier's or a PATA slave's disk of that port, which it may link, is warned of here."""
    for i, node in enumerate(stack.nodes):
        named = _named_disks(node)
        for k, (key, disk) in enumerate(named):
            mine = _link_kind(disk)
            for other_key, other in named[:k]:
                if by_path_one_disk(disk, other) == "maybe":
                    yield Problem(
                        f"iluvatar:nodes[{i}].{key}",
                        f"{disk} and {other_key} {other} may be one disk: udev links each disk of a SATA port (behind a port "
                        "multiplier, or a PATA master and slave) as ata-<port>.<...>, and one of them, which the stack does not say, "
                        f"as the port's compat link ata-<port> too (udev-builtin-path_id.c handle_scsi_ata), and if they are one, "
                        f"{_storage(node)} takes {'the system disk' if other_key == 'installDisk' else 'a disk twice'}; name both "
                        f"disks by their ata-<port>.<...> links (`ls -l /dev/disk/by-path/` on {node.name} shows which disk each link is)",
                    )
                    break
                theirs = _link_kind(other)
                if mine is None or theirs is None or mine[0] == theirs[0] or not mine[1] & theirs[1]:
                    continue
                if one_wwn(disk, other):
                    continue  # one NAA's wwn-0x<hex> and scsi-3<hex>: the rules refuse the two
                if nvme_links_comparable(disk, other):
                    continue  # an nvme-nvme.<...> link carries the model and serial: the rules compare the two
                yield Problem(
                    f"iluvatar:nodes[{i}].{key}",
                    f"{disk} and {other_key} {other} may be one disk: udev links a disk under both kinds ({mine[0]} and "
                    f"{theirs[0]}), which validate cannot compare, and if they are one, {_storage(node)} takes "
                    f"{'the system disk' if other_key == 'installDisk' else 'a disk twice'}; name both by links of one kind "
                    f"(`ls -l /dev/disk/by-id/ /dev/disk/by-path/` on {node.name} shows which disk each link is)",
                )
                break


# What two disks' kernel names swapping does: Talos writes the system to whichever disk installDisk names at the install;
# on the Ainur cloud-init formats dataDisks[0] for Longhorn once, at the first boot, and only if it holds no partitions
# (plans.cloudinit, disk_setup overwrite: false), then mounts it by its label, so a swap then leaves Longhorn no disk.
_SWAPPED = {
    "Ceph": "at the install, Talos installs on the disk meant for Ceph",
    "Longhorn": "at the first boot, cloud-init finds the system disk under the name given to Longhorn, leaves it as it is, "
    "and Longhorn gets no disk of its own",
}


def _kernel_names_of_one_bus(stack: StackConfig) -> Iterator[Problem]:
    """A machine's install disk and a data disk both named by kernel names of one bus (/dev/sda and /dev/sdb,
    /dev/nvme0n1 and /dev/nvme1n1): the kernel numbers the disks of a bus in the order they answer at boot, which two
    disks may swap from one boot to the next (SATA ports probed at once, NVMe controllers asynchronously), and nothing
    ties either name to a disk. If they swap at the install, Talos installs on the disk meant for Ceph, and the disk
    named as data is the system disk. A warning: on most machines the order holds, and a name that works is the user's
    to keep; a by-id link names the disk itself. Virtio disks (vdX) are named in their PCI slots' order, which does not
    change; two data disks swapping is harmless (both are Ceph's)."""
    for i, node in enumerate(stack.nodes):
        install = node.install_disk
        if not isinstance(install, str) or _KERNEL_DISK.match(install) is None or install.startswith("/dev/vd"):
            continue
        bus = _bus(install)
        for d, disk in enumerate(node.data_disks):
            if disk != install and _KERNEL_DISK.match(disk) is not None and _bus(disk) == bus and not disk.startswith("/dev/vd"):
                yield Problem(
                    f"iluvatar:nodes[{i}].dataDisks[{d}]",
                    f"{disk} and installDisk {install} are kernel names of one bus, numbered in the order the disks answer at boot, "
                    "which may change from one boot to the next: if they swap "
                    f"{_SWAPPED[_storage(node)]}; name both by /dev/disk/by-id links of one kind (`ls -l /dev/disk/by-id/` on {node.name} shows which is which)",
                )


def _netbooted_maia_data_disks(stack: StackConfig) -> Iterator[Problem]:
    """A maia that netboots with dataDisks: nothing uses them. Longhorn never runs on a netbooted maia (its manager's
    account reads every Secret, and the maia's NFS root exposes its kubelet's credentials: stacks.storage.longhorn_pis,
    docs/security.md), so cloud-init formats none of its disks and no Longhorn disk is made there. A warning, not a
    refusal: an unused disk harms nothing (docs/layers/ainur.md says so). Where the last deployment kept Longhorn's
    replicas on it, stacks.day2 refuses the stack until they are evicted and the disk removed."""
    for i, node in enumerate(stack.nodes):
        if node.role == "maiar" and node.boot == "netboot" and node.data_disks:
            yield Problem(
                f"iluvatar:nodes[{i}].dataDisks",
                f"{show(list(node.data_disks))}: {node.name} netboots, and a netbooted maia's disks are no Longhorn disk "
                "(Longhorn's manager never runs where a maia's NFS root exposes its kubelet's credentials: docs/security.md), "
                f"so nothing uses them; remove {node.name}'s dataDisks, or set boot: disk to let it boot from its card and "
                "give Longhorn its dataDisks[0]",
            )


def _bus_path_port_maybe(stack: StackConfig) -> Iterator[Problem]:
    """An install disk busPath glob's SATA port ata<N> beside a data disk's by-path link of the same controller's port
    <P> at or below N (but port 1 beside ata1, which is that port). path_id writes the port's number on its controller (port_no, from 1), busPath holds its number among
    every controller's (print_id), and the two are one where the controller's ports were counted first
    (stacks.rules.by_path_bus_path): ata3 is port 1 of a controller counted after one of two ports, so the link may be
    the install disk. A warning: the stack does not say how many ports were counted before this controller's."""
    for i, node in enumerate(stack.nodes):
        selector = node.install_disk
        if not isinstance(selector, DiskSelector) or selector.bus_path is None:
            continue
        for d, disk in enumerate(node.data_disks):
            if by_path_bus_path(disk, selector.bus_path) != "maybe":
                continue
            yield Problem(
                f"iluvatar:nodes[{i}].dataDisks[{d}]",
                f"{disk} may be the disk installDisk busPath {selector.bus_path} selects: udev numbers a SATA port on its own "
                "controller (port_no, from 1) and busPath among every controller's ports (ataN), which are one only where "
                "this controller's ports were counted first, so if they are not, Ceph takes the system disk; name the data "
                f"disk by its /dev/disk/by-id link, or give installDisk the system disk's serial or wwid (`talosctl get disks "
                f"-o yaml -n <{node.name}'s address>` shows each disk's bus_path and links)",
            )


def _kind_alone(stack: StackConfig) -> Iterator[Problem]:
    """An install disk selector of type ssd or hdd alone (no size; a glob of `*` asks nothing more) beside a data disk whose name
    does not show whether it spins (sdX, an ata- or usb- link). Talos reads ssd as !disk.rotational and hdd as
    disk.rotational (v1alpha1_provider.go:1429-1447 at v1.13.9) and installs on the first disk by name that matches
    (v1alpha1_sequencer_tasks.go:1518-1536 at v1.13.9): a SATA SSD data disk named before the system disk becomes it.
    A warning, as the size-only selector's (`_size_alone`): the stack does not say which disk spins, and a spinning data
    disk beside an SSD system disk is the very thing type tells apart. An NVMe data disk against ssd is refused
    (stacks.rules: never rotational); a board whose SD card or eMMC sorts first takes that for ssd."""
    for i, node in enumerate(stack.nodes):
        selector = node.install_disk
        if not isinstance(selector, DiskSelector) or selector.type not in ("ssd", "hdd"):
            continue
        if selector.size is not None or any(_asks(v) for v in (selector.model, selector.serial, selector.wwid, selector.bus_path)):
            continue  # with a size too, the bound may be what tells the disks apart (a small SSD, a large data disk)
        if selector.type == "ssd" and BOARDS[node.board].talos_overlay is not None:
            continue
        spins = "is an SSD (not rotational)" if selector.type == "ssd" else "spins (rotational)"
        for d, disk in enumerate(node.data_disks):
            if _transport(disk) != "other":
                continue
            yield Problem(
                f"iluvatar:nodes[{i}].dataDisks[{d}]",
                f"{disk} may be the disk installDisk {selector} selects: Talos installs on the first disk by name its selector "
                f"matches (v1alpha1_sequencer_tasks.go:1518-1536 at v1.13.9), and type {selector.type} asks only whether a disk "
                f"spins, so if {disk} {spins} and its name sorts before the system disk's, the system disk and Ceph's are one; "
                "pin installDisk to the system disk's serial or wwid (`talosctl get disks --insecure -n <its address>` lists "
                "them), or write its /dev/disk/by-id path",
            )


def _pi4_nvme(stack: StackConfig) -> Iterator[Problem]:
    """An NVMe name as the data disk of an rpi4, whatever its installDisk. A Raspberry Pi 4 Model B has no PCIe slot: an
    NVMe SSD reaches it in a USB enclosure, whose bridge shows it as a USB mass-storage disk (sdX, a usb- by-id link), so
    no nvme name exists on it. But the rpi4 board is the Compute Module 4's too, whose carriers' M.2 slot takes an NVMe
    SSD under that very name: a warning naming both, not a refusal. A netbooting maia's dataDisks are no disk of
    Longhorn's (stacks.storage.longhorn_pis), so a wrong name there costs nothing and is not said."""
    for i, node in enumerate(stack.nodes):
        if node.board != "rpi4" or (node.role in AINUR_ROLES and node.boot == "netboot"):
            continue
        lost = (
            "cloud-init finds no such disk and Longhorn writes to the card's root filesystem"
            if node.role in AINUR_ROLES
            else "Rook finds no such disk and makes no OSD there"
        )
        for d, disk in enumerate(node.data_disks):
            if disk.startswith(("/dev/nvme", "/dev/disk/by-id/nvme-")):
                yield Problem(
                    f"iluvatar:nodes[{i}].dataDisks[{d}]",
                    f"{disk} is an NVMe name, which a Raspberry Pi 4 Model B never has: it has no PCIe slot, and an NVMe SSD in a "
                    f"USB enclosure shows as a USB disk (/dev/sda, a usb- link in ls -l /dev/disk/by-id/ on it), so there {lost}; "
                    "on a Model B write the USB disk's name. The rpi4 board is also the Compute Module 4, whose carrier's M.2 slot "
                    "gives an NVMe SSD this name: on a CM4 with one, it is right",
                )


# An NVMe disk of a controller past the first: the kernel numbers NVMe controllers nvme0, nvme1, ... and names a
# controller's namespaces n1, n2, ... after it (drivers/nvme/host/core.c, nvme_alloc_ns).
_LATER_NVME = re.compile(r"^/dev/nvme([1-9]\d*)n\d+$")


def _rk1_second_nvme(stack: StackConfig) -> Iterator[Problem]:
    """A second NVMe controller's disk (/dev/nvme1n1 and on) on a Turing RK1. Each slot of a Turing Pi 2 carries one M.2
    (NVMe) socket for its module, M.2 T1 to T4 on the board's back; a SATA disk (slots 3's two ports) or a USB one (slot
    4's) is sdX (docs.turingpi.com/docs/turing-pi2-specs-and-io-ports, "Specs and I/O Ports", its table of what each
    node's slot reaches). Only the Mini PCIe of slots 1 and 2 could add a second, through an M.2 adapter: so a warning
    naming it, not a refusal."""
    for i, node in enumerate(stack.nodes):
        if node.board != "rk1":
            continue
        named = [
            ("installDisk", node.install_disk, "Talos finds no disk to install on"),
            *((f"dataDisks[{d}]", disk, "Rook finds no such disk and makes no OSD there") for d, disk in enumerate(node.data_disks)),
        ]
        for where, disk, lost in named:
            if not (isinstance(disk, str) and _LATER_NVME.match(disk)):
                continue
            yield Problem(
                f"iluvatar:nodes[{i}].{where}",
                f"{disk} is a second NVMe controller's disk, and a Turing RK1's Turing Pi 2 slot has one M.2 socket, whose SSD is "
                f"/dev/nvme0n1 (a SATA disk on slot 3 or a USB one on slot 4 is /dev/sdX), so {lost}; write /dev/nvme0n1 or "
                "the disk's /dev/disk/by-id/ link. Only an NVMe adapter in the Mini PCIe of slots 1 and 2 gives a module a "
                "second: with one, it is right",
            )


def _leftover_secrets(stack: StackConfig) -> Iterator[Problem]:
    """A value under iluvatar:appSecrets for a secret its app does not declare, and no other app declares as set by the
    user (that case is refused, stacks.data._undeclared): External Secrets syncs only the declared ones (components.data),
    so nothing reads it. Most often a secret the app dropped, encrypted and harmless; a `secrets:` line forgotten
    reads the same, and is what the fix's first half is for."""
    key = f"iluvatar:{APP_SECRETS}"
    for i, app in enumerate(stack.apps):
        own = [s.name for s in app.secrets]
        for name in stack.app_secrets_set.get(app.name, ()):
            if name in own or any(name in (s.name for s in other.secrets if s.user_set) for other in stack.apps):
                continue
            yield Problem(
                f"{key}.{app.name}.{name}",
                f"is set, but apps[{i}] {app.name} declares no secret {name} (its secrets: {', '.join(own) or 'none'}): nothing "
                f"reads this value, left over from a secret the app no longer has; if the app should read it, declare it in "
                f"apps[{i}].secrets ({{name: {name}}}), else remove it (`pulumi config rm --path '{key}.{app.name}.{name}'`)",
            )


# A SATA or USB disk's kernel name (the SCSI disk driver's sdX, drivers/scsi/sd.c).
_SD_DISK = re.compile(r"^/dev/sd[a-z]+$")


def _rk1_sd_in_slots_1_and_2(stack: StackConfig) -> Iterator[Problem]:
    """An sdX disk (SATA or USB) as the install or data disk of a Turing RK1 its power.bmc places in slot 1 or 2 of a
    Turing Pi 2. The board's "Specs and I/O Ports" (docs.turingpi.com/docs/turing-pi2-specs-and-io-ports, its table of
    what each node's slot reaches) gives slot 1 its Mini PCIe, M.2 T1 and the USB 2.0 port the BMC switches between the
    slots, slot 2 its Mini PCIe and M.2 T2, slot 3 the two SATA ports, slot 4 the four USB 3.0 ones: in slots 1 and 2
    only a SATA card in the Mini PCIe, or a USB disk on the USB 2.0 port switched to the slot (`tpi usb --mode host`),
    shows an sdX disk. So a warning naming them, not a refusal, as for a second NVMe (`_rk1_second_nvme`); a slot the
    stack does not say (no power.bmc) says nothing."""
    for i, node in enumerate(stack.nodes):
        bmc = node.power.bmc if node.power is not None else None
        if node.board != "rk1" or bmc is None or bmc.slot not in (1, 2):
            continue
        named = [
            ("installDisk", node.install_disk, "Talos finds no disk to install on"),
            *((f"dataDisks[{d}]", disk, "Rook finds no such disk and makes no OSD there") for d, disk in enumerate(node.data_disks)),
        ]
        for where, disk, lost in named:
            if not (isinstance(disk, str) and _SD_DISK.match(disk)):
                continue
            yield Problem(
                f"iluvatar:nodes[{i}].{where}",
                f"{disk} is a SATA or USB disk's name, and {node.name} sits in slot {bmc.slot} of the Turing Pi 2 at {bmc.address} "
                f"(its power.bmc), which reaches neither the board's SATA ports (slot 3's) nor its USB 3.0 ones (slot 4's), so "
                f"{lost}; write /dev/nvme0n1 (the SSD in the slot's M.2 socket), or move the module and its disk to slot 3 (SATA) "
                "or 4 (USB). Only a SATA card in the Mini PCIe of slots 1 and 2, or a USB disk on the board's USB 2.0 port "
                f"switched to slot {bmc.slot} (`tpi usb --mode host --node {bmc.slot}`), gives it one: with one, it is right",
            )


def _pi5_wake_on_lan(stack: StackConfig) -> Iterator[Problem]:
    """Wake-on-LAN on a Raspberry Pi 5. The Pi 4's hardware cannot wake on LAN (stacks.power refuses it), and nothing
    Raspberry Pi publishes says the Pi 5 can: its bootloader documents waking from halt by its power button and the
    RTC's wake alarm (raspberrypi/documentation, computers/raspberry-pi/eeprom-bootloader.adoc, POWER_OFF_ON_HALT and
    WAKE_ON_GPIO; power-button.adoc), and no rpi-eeprom issue or release note says either way. Without a source for the
    refusal it is a warning, which names the way to find out and the way out."""
    for i, node in enumerate(stack.nodes):
        if node.board != "rpi5" or node.power is None or node.power.wake_on_lan is None:
            continue
        yield Problem(
            f"iluvatar:nodes[{i}].power.wakeOnLan",
            f"{node.name} is a Raspberry Pi 5, and no Raspberry Pi documentation says a Pi 5 wakes on LAN (its bootloader wakes "
            "from halt by the power button or the RTC's wake alarm; a Pi 4 cannot at all), so the magic packet may wake "
            f"nothing and `pulumi up` would wait for {node.name} until its power step times out; halt it and send one from a machine on the LAN "
            f"(`wakeonlan {node.mac}`): if it does not start, leave power out and power it on by hand",
        )


def _generic_worker(stack: StackConfig) -> Iterator[Problem]:
    """unknownMacs: generic-worker offers Talos to every machine that PXE-boots without being in the inventory, in both
    netboot modes (the proxy-DHCP answers every PXE request on the LAN as the DHCP server does), and Talos installs on the
    first disk genericWorker.installDisk matches, erasing it: a household PC that tries the network before its disk is
    wiped. A warning, not a refusal: it is the user's explicit choice, and with a selector only the Arda machines match it
    is safe."""
    if stack.ainur is None or stack.ainur.netboot.unknown_macs != "generic-worker":
        return
    yield Problem(
        "iluvatar:ainur.netboot.unknownMacs",
        "generic-worker offers Talos to every machine on network.lan that boots from the network and is not in the "
        "inventory: a household PC set to try the network first (or whose own disk fails to boot) installs Talos on the first "
        "disk netboot.genericWorker.installDisk matches, erasing it; keep ignore and add machines with arda.discovery "
        "(maintenance mode, nothing installed), or give installDisk a selector only the Arda machines match (their model)",
    )


def _secrets_in_clear(stack: StackConfig) -> Iterator[Problem]:
    """The KMS's own key is a Secret on the Ainur (plans.kms): with k3s's secrets encryption off it sits in clear in their
    datastore and in every etcd snapshot uploaded to the backup target, next to the disks it unlocks being carried off."""
    if stack.ainur is None or stack.ainur.secrets_encryption or not encryption.uses_kms(stack):
        return
    # Absent is off too (stacks.model.Ainur): a stack from before the setting says nothing, and is warned the same.
    written = "false" if "secrets_encryption" in stack.ainur.model_fields_set else "not set (off)"
    yield Problem(
        "iluvatar:ainur.secretsEncryption",
        f"{written}, while Arda's machines unlock their volumes through the Ainur's KMS (iluvatar:arda.encryption): the KMS's "
        "key is then written in clear in the Ainur's datastore and in every etcd snapshot k3s uploads, so anyone with a "
        "snapshot and a stolen disk reads it; on an Ainur with one valar, set it true (k3s then seals Secrets, "
        "docs/security.md#the-ainurs-secrets-at-rest); with more, k3s's procedure for several servers is not built. On an "
        "Ainur that ran with it, the `up` that turns it off first runs k3s's disable on the first valar and rewrites every "
        "Secret in clear (ainur-secrets-off); no valar loses the flag before that is done",
    )


def _claims_in_clear(stack: StackConfig) -> Iterator[Problem]:
    """The Ainur's claims asked encrypted where Longhorn does not run (it needs GitOps and a card Pi's data disk,
    plans.storage.longhorn_enabled): they go on local-path, in clear on a card. A warning, not a refusal: `iluvatar init`
    writes the key for every stack with Pis, so the claims land on the encrypted class as soon as Longhorn comes."""
    if stack.ainur is None or not stack.storage.ainur.encrypted:
        return
    claims = [
        *(["Headscale's state"] if stack.remote_access is not None and stack.remote_access.flavour == "headscale" else []),
        *(["the Git mirror"] if stack.ainur.git_mirror is not None else []),
    ]
    if not claims or (stack.gitops is not None and longhorn_pis(stack.nodes)):
        return
    why = (
        "iluvatar:gitops is not set (Longhorn is an Argo CD Application)" if stack.gitops is None else "no Pi that boots from its card has dataDisks"
    )
    several = len(claims) > 1
    yield Problem(
        "iluvatar:storage.ainur.encrypted",
        f"true, but Longhorn does not run on the Ainur ({why}), so the claim{'s' if several else ''} of {' and '.join(claims)} "
        f"{'are' if several else 'is'} made on local-path, in clear on a Pi's card; give a Pi dataDisks to have "
        f"{'them' if several else 'it'} encrypted (docs/day2.md#the-ainurs-longhorn-claims-encrypted), or write false to say "
        f"{'they stay' if several else 'it stays'} in clear",
    )


def _prometheus_on_nfs(stack: StackConfig) -> Iterator[Problem]:
    """Prometheus's volume on the nfs class: its TSDB there is what Prometheus says it does not support ("NFS filesystems
    (including AWS's EFS) are not supported", unrecoverable corruption may happen: prometheus docs/storage.md:127-131 at
    v3.9.1). A warning: it runs until it corrupts, and a household may accept losing its metrics."""
    if stack.monitoring is None:
        return
    written = stack.monitoring.prometheus.storage_class
    if (written or default_class(stack, "arda")) != "nfs":
        return
    if written is not None:
        path, value = "iluvatar:monitoring.prometheus.storageClass", "nfs puts"
    elif stack.storage.arda.default_class == "nfs":
        path, value = "iluvatar:storage.arda.defaultClass", "nfs puts, with monitoring.prometheus.storageClass unset,"
    else:
        path, value = "iluvatar:monitoring.prometheus.storageClass", "is unset, and nfs, Arda's only StorageClass, puts"
    others = [c for c in arda_classes(stack) if c != "nfs"]
    fix = f"write monitoring.prometheus.storageClass: {others[0]}" if others else "give Arda a local or block class (dataDisks for Ceph)"
    yield Problem(
        path,
        f"{value} Prometheus's database on NFS, which Prometheus does not support: its storage docs say NFS may corrupt it "
        f"beyond repair (https://prometheus.io/docs/prometheus/latest/storage/, Operational aspects); {fix}, or keep nfs "
        "knowing the metrics may be lost",
    )


def _logs_settings_while_off(stack: StackConfig) -> Iterator[Problem]:
    """Log store settings beside logs.enabled: false: nothing reads them with the store off (plans.logs renders nothing,
    the Pis send nowhere). Harmless, and most often logs switched off for a while and meant to come back with them, so
    said, not refused, as a drill's staleAfter beside drill.enabled: false is. claimChanged is left out: it is written
    for the `up` after logs were off (stacks.day2)."""
    logs = stack.logs
    if logs is None or logs.enabled:
        return
    written = [(Logs.model_fields[f].alias or f, getattr(logs, f)) for f in Logs.model_fields if f in logs.model_fields_set]
    written = [(key, value) for key, value in written if key not in ("enabled", "claimChanged")]
    if not written:
        return
    shown = str(written[0][1]) if len(written) == 1 else ", ".join(f"{key}: {value}" for key, value in written)
    keys = " and ".join(key for key, _ in written)
    yield Problem(
        f"iluvatar:logs.{written[0][0]}" if len(written) == 1 else "iluvatar:logs",
        f"{shown} {'has' if len(written) == 1 else 'have'} no effect: logs are off (logs.enabled: false), so no log store runs "
        f"and nothing is sent to it; remove {keys}, or set logs.enabled: true for the store to run",
    )


def _dns_twice(stack: StackConfig) -> Iterator[Problem]:
    """A server listed twice in network.dns: each entry is written as a resolver of its own (the Ainur's dnsmasq server=
    lines, plans.netboot.dnsmasq; Talos's nameservers; the Pis' netplan, plans.cloudinit), so the same server is written
    twice and no failover is gained. Harmless, so said, not refused."""
    seen: dict[IPv4Address, int] = {}
    for k, server in enumerate(stack.network.dns):
        if server in seen:
            yield Problem(
                f"iluvatar:network.dns[{k}]",
                f"{server} is network.dns[{seen[server]}] already: every resolver of the homelab is given the same server twice, "
                "which gains no failover; remove it, or write another DNS server there",
            )
        else:
            seen[server] = k


def _either_day(path: str, schedule: str) -> Iterator[Problem]:
    """Both day fields restricted: robfig/cron runs on a day either matches (spec.go dayMatches, lines 179-188 at v3.0.1),
    the textbook misreading of `0 2 1-7 * 6` as "the first Saturday of the month"."""
    fields = _MACRO_SPECS.get(schedule, schedule).split()
    _, dom_star = _cron_field(fields[2], 1, 31)
    dows, dow_star = _cron_field(fields[4], 0, 6)
    if dom_star or dow_star:
        return
    days = " and ".join(_DAYS[d] for d in sorted(dows))
    yield Problem(
        path,
        f"{schedule} runs on days {fields[2]} of the month and on every {days}, not only where they meet: cron runs it on a day "
        f"either field matches ({len(_days_run(fields))} days in 2026 and 2027); for one of them, write * in the other field",
    )


_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December")
_MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # a common year's; February has 29 in a leap year


def _weekday_step(path: str, schedule: str) -> Iterator[Problem]:
    """A day of week written as N/step with no range (`0 3 * * 1/2`, meant as every other Monday): robfig/cron reads a
    single start with a step as running to the field's end (parser.go:293-296 at v3.0.1, getRange: "N/step" means
    "N-max/step"), so 1/2 is 1-6/2, Monday, Wednesday and Friday. A week's parity is nothing cron can say; said, not
    refused, since those days can be meant."""
    fields = _MACRO_SPECS.get(schedule, schedule).split()
    if len(fields) != 5:
        return
    written = fields[4].split(",")
    read = _robfig_reads(fields[4], "day of week").split(",")
    stepped = [(w, r) for w, r in zip(written, read, strict=True) if re.fullmatch(r"\d+/\d+", r) and int(r.split("/")[1]) > 1]
    if not stepped:
        return
    item, reading = stepped[0]
    start, step = (int(part) for part in reading.split("/"))
    dows, _ = _cron_field(",".join(read), 0, 6)
    days = [_DAYS[d] for d in sorted(dows)]
    named = f"{', '.join(days[:-1])} and {days[-1]}" if len(days) > 1 else days[0]
    alone = " ".join([*fields[:4], ",".join(str(int(r.split("/")[0])) if "/" in r else r for r in read)])
    listed = " ".join([*fields[:4], ",".join(str(d) for d in sorted(dows))])
    fix = f"for {_DAYS[start]}s alone, write {alone}" + (f", or for these days, {listed}" if listed != alone else "")
    yield Problem(
        path,
        f"{schedule} runs on {named}: cron reads {item} as {start}-6/{step}, every {step} days from {_DAYS[start]} to the "
        f"week's end (Saturday), not every {_NTH[step]} week, which a cron schedule cannot say; {fix}",
    )


def _empty_items(path: str, schedule: str) -> Iterator[Problem]:
    """A list with an empty item (`0,,30`, `1,5,`): robfig/cron, the parser of a CronJob, k3s and VolSync's controller,
    drops it (strings.FieldsFunc at each comma, parser.go:238 at v3.0.1: stacks.data.robfig_items), so the items written
    run as meant, and one VolSync's CRD pattern refuses is refused (stacks.data). Said, not refused: harmless, most likely
    a number deleted or one not yet typed, which the warning lets the user see."""
    fields = schedule.split()
    read = [robfig_items(value) for value in fields]
    emptied = [(value, name) for value, fixed, (name, _, _) in zip(fields, read, _FIELDS, strict=False) if value != fixed]
    if len(fields) != len(_FIELDS) or not emptied:
        return
    value, name = emptied[0]
    yield Problem(
        path,
        f"{schedule}: the {name} field {value} has an empty item (a comma with nothing on one side), which robfig/cron drops "
        f"(parser.go:238 at v3.0.1), so it runs as {' '.join(read)}; if a number is missing there, add it, else write {' '.join(read)}",
    )


def _short_months(path: str, schedule: str) -> Iterator[Problem]:
    """Days of the month that some months have not (29, 30, 31), alone in the day fields: robfig/cron matches the
    calendar's day (spec.go dayMatches, lines 179-188 at v3.0.1, read by the CronJob controller, k3s and VolSync), so
    `40 2 31 * *`, meant as "monthly, at the month's end", runs in none of the months without a 31st. A schedule that
    never runs is refused (stacks.data); with both day fields restricted _either_day says how they combine."""
    fields = _MACRO_SPECS.get(schedule, schedule).split()
    doms, dom_star = _cron_field(fields[2], 1, 31)
    _, dow_star = _cron_field(fields[4], 0, 6)
    if dom_star or not dow_star:
        return
    months, month_star = _cron_field(fields[3], 1, 12)
    missing = [m for m in sorted(months) if not any(d <= _MONTH_DAYS[m - 1] for d in doms)]
    if not missing or len(missing) == len(months):
        return
    runs = len(months) - len(missing)
    leap = " (and February in a leap year)" if 2 in missing and 29 in doms else ""
    of = "months of 12" if month_star else f"of the {len(months)} months it names"
    fixed = " ".join([*fields[:2], "28", *fields[3:]])
    names = [_MONTHS[m - 1] for m in missing]
    lacking = f"{', '.join(names[:-1])} and {names[-1]} have" if len(names) > 1 else f"{names[0]} has"
    yield Problem(
        path,
        f"{schedule} runs on day {fields[2]} of the month, which {lacking} not: cron runs nothing in "
        f"{'those months' if len(names) > 1 else 'that month'}, so it runs in {runs} {of}{leap}; to run in every month, write a "
        f"day every month has, {fixed} (or 1 for the first day of the next month)",
    )


# What each schedule's runs are, and what a gap past its bound (stacks.data.BACKUP_GAP, DRILL_GAP) costs, as _rare_months
# says it.
_RARE = {
    "a backup": (BACKUP_GAP, "a volume lost in the months between has only a copy from before them"),
    "an etcd snapshot": (BACKUP_GAP, "a cluster restored in the months between comes back as it was before them"),
    "the drill": (
        DRILL_GAP,
        "backups that stop restoring go unseen as long, and the drill's alert (RestoreDrillStale) waits as long before it fires",
    ),
}


def _months(path: str, schedule: str, what: str) -> Iterator[Problem]:
    """A schedule that skips months: one that names months and runs so seldom it is not what `what` can mean
    (_rare_months), else days of the month some months have not (_short_months). One warning at one key: the rarer
    reading's fix gives a day every month has too."""
    rare = list(_rare_months(path, schedule, what))
    yield from rare or _short_months(path, schedule)


def _rare_months(path: str, schedule: str, what: str) -> Iterator[Problem]:
    """A backup, an etcd snapshot or a drill whose longest gap between runs (stacks.data.longest_gap, as the drill's
    staleAfter reckons it) is past what it can mean (_RARE); stacks.data.rare_months reads it and gives the fix."""
    bound, harm = _RARE[what]
    found = rare_months(schedule, bound, volsync=what == "a backup", etcd=what == "an etcd snapshot")
    if found is None:
        return
    # A quarterly or yearly copy of a volume may be an archive on purpose (kept for the record, not to restore from
    # after a loss): the fix is offered for the other reading, and the warning says which.
    unless = "unless it is meant as an archive, " if what == "a backup" else ""
    yield Problem(
        path,
        f"{schedule} runs only in {found.shown}, {found.often}, so {round(found.gap / datetime.timedelta(days=1))} "
        f"days pass between two of its runs, longer than {what} can mean ({bound.days} days at most): {harm}; {unless}{found.fix}",
    )


# The steps that cut a day into even hours (every 3, 4, 6, 8 or 12 hours), 2 aside: `*/2` in the day of month is the
# common "every other day", whose days stay 1 or 2 apart.
_HOUR_STEPS = (3, 4, 6, 8, 12)


def _hours_as_days(path: str, schedule: str) -> Iterator[Problem]:
    """A backup at 00:00 every N days by a step in the day of month (`0 0 */6 * *`), N a step of the hours: the shape of
    `0 */6 * * *` with a field too many before it, or of a six-field schedule with seconds (Quartz's or Spring's
    `0 0 */6 * * *`, every 6 hours) cut to five. robfig/cron counts a day-of-month step from the 1st, again in every
    month (parser.go getRange at v3.0.1, spec.go dayMatches), so it runs on days 1, 7, 13, 19, 25 and 31, a day apart
    at the turn of a 31-day month: not even every 6 days. Said, not refused, and only where hours are the likely
    meaning: every field but the day of month at its least (minute and hour 0, no month or weekday named), and a step
    that divides the day (3, 4, 6, 8, 12). A time of day (`0 3 */3 * *`), a named month or weekday, or a step no
    clock uses (5, 7, 10, 14, 15) says days are meant, and `*/2` is the common "every other day". The drill is left
    alone: it restores, and runs days apart by nature."""
    fields = _MACRO_SPECS.get(schedule, schedule).split()
    found = re.fullmatch(r"(?:\*|\?|1|1-31)/(\d+)", fields[2])
    if found is None or int(found.group(1)) not in _HOUR_STEPS:
        return
    minutes, _ = _cron_field(fields[0], 0, 59)
    hours, hour_star = _cron_field(fields[1], 0, 23)
    _, month_star = _cron_field(fields[3], 1, 12)
    _, dow_star = _cron_field(fields[4], 0, 6)
    if minutes != {0} or hours != {0} or hour_star or not month_star or not dow_star:
        return
    step = int(found.group(1))
    doms = sorted(_cron_field(fields[2], 1, 31)[0])
    runs = _days_run(fields)
    turns = [(b - a).days for a, b in itertools.pairwise(runs) if a.month != b.month]
    listed = f"{', '.join(str(d) for d in doms[:-1])} and {doms[-1]}"
    yield Problem(
        path,
        f"{schedule} runs at 00:00 on days {listed} of each month, not every {step} hours: a step in the day of month field "
        f"counts days, from the 1st again in every month, so the runs are {step} days apart within a month and "
        f"{min(turns)} to {max(turns)} days apart across its end; for every {step} hours, write 0 */{step} * * *",
    )


# What one run of each schedule costs and why the runs past one an hour are wasted, as _many_an_hour says it.
_APP_RUN = (
    "each run starts a VolSync mover that copies the volumes to the target, and restic's keep keeps at most one snapshot "
    "an hour (keep.hourly; one a day without it), so the others are made to be thrown away"
)
_ETCD_RUN = (
    "each run is a snapshot of the clusters' etcd (k3s's on every valar, a talos-backup Job on Arda) uploaded to the "
    "target, and backup.etcd.keep counts snapshots, so the more a day, the fewer days they reach back"
)
_DRILL_RUN = (
    "each run restores the newest snapshot of every volume and etcd it drills from the target, and one restore an hour "
    "already shows the backups restore, so the others load the target and the cluster for nothing"
)


def _many_an_hour(path: str, schedule: str, cost: str = _APP_RUN) -> Iterator[Problem]:
    """A backup that runs several times an hour (`*/5 * * * *`, meant as every 5 hours): an app's, the etcd snapshots',
    or the drill's where _drills_in_a_row does not already say so. Every minute of an hour is refused (stacks.data), a
    misreading; a few minutes an hour may be meant, so it is said, not refused. `cost` says what each run costs: an
    app's is a VolSync mover and a copy of the volumes sent to the target, and restic's keep (hourly at its finest)
    keeps one an hour; the etcd snapshots' are a snapshot per cluster, pruned by count (--etcd-snapshot-retention)."""
    fields = _MACRO_SPECS.get(schedule, schedule).split()
    minutes, _ = _cron_field(fields[0], 0, 59)
    if len(minutes) < 2:
        return
    hours, _ = _cron_field(fields[1], 0, 23)
    runs = len(minutes) * len(hours)
    step = fields[0].removeprefix("*/")
    hourly = f" (or 0 */{step} * * * for every {step} hours)" if fields[0].startswith("*/") and fields[1] == "*" and int(step) <= 23 else ""
    yield Problem(
        path,
        f"{schedule} runs {len(minutes)} times an hour, {runs} times on each day it runs: {cost}; to run it once in each hour "
        f"it runs, write 0 {' '.join(fields[1:])}{hourly}",
    )


# What the 23 runs past the one meant cost, as _every_hour says it.
_APP_DAY = "each run starts a VolSync mover that copies the volumes to the target, and restic's keep keeps one snapshot a day unless keep.hourly is set, so the others are made to be thrown away"
_DRILL_DAY = "each run restores the newest snapshot of every volume and etcd it drills from the target, and one restore that day already shows the backups restore, so the others load the target and the cluster for nothing"


def _every_hour(path: str, schedule: str, cost: str = _APP_DAY) -> Iterator[Problem]:
    """A schedule that names its days and a minute but every hour (`30 * * * 0`, meant as Sunday 00:30): robfig/cron
    reads `*` in the hour field, like 0-23 or */1, as every hour (parser.go getRange at v3.0.1), so it runs 24 times on
    each day it names. The minute-field form (`* 6 * * 0`) is refused (stacks.data); this one may be meant (every hour
    of Sundays), so it is said, not refused. An hourly schedule on every day (`30 * * * *`) names no day and is the
    plain "hourly"; several minutes an hour are _many_an_hour's."""
    fields = _MACRO_SPECS.get(schedule.strip(), schedule).split()
    minutes, _ = _cron_field(fields[0], 0, 59)
    hours, _ = _cron_field(fields[1], 0, 23)
    _, dom_star = _cron_field(fields[2], 1, 31)
    dows, dow_star = _cron_field(fields[4], 0, 6)
    if len(minutes) != 1 or len(hours) != 24 or (dom_star and dow_star):
        return
    (minute,) = minutes
    if dom_star:
        named = [_DAYS[d] for d in sorted(dows)]
        days = f"every {named[0]}" if len(named) == 1 else f"every {', '.join(named[:-1])} and {named[-1]}"
    elif dow_star:
        days = f"day{'s' if len(_cron_field(fields[2], 1, 31)[0]) > 1 else ''} {fields[2]} of the month"
    else:
        days = "each day it runs"  # both day fields restricted: _either_day says which days
    once = " ".join([fields[0], "0", *fields[2:]])
    yield Problem(
        path,
        f"{schedule}: the hour field {fields[1]} runs it at minute {minute} of every hour, 24 times on {days}, not once: "
        f"{cost}; to run it once that day at 00:{minute:02d}, write {once} (or the hour meant in place of {fields[1]})",
    )


# Steps of minutes a clock's face divides the hour by, which read as minutes meant, not as hours misplaced: none of
# them divides the day into hours (an hour step of 10 runs at 00:00, 10:00 and 20:00, then 4 hours to midnight).
_MINUTE_STEPS = (10, 15, 20, 30)


def _minutes_meant(schedule: str) -> bool:
    """Whether an etcd schedule's runs several an hour are likely meant: every 10, 15, 20 or 30 minutes of every hour,
    however written (`*/30`, `0,30`, `5,35`, `0-59/15`: the minutes as cron reads them, evenly apart round the hour).
    An etcd snapshot is the datastore's size (megabytes), cheap to take often, and keep sized to a day of them is the
    retention warning's business (_short_retention); `*/6 * * * *` beside it reads as `0 */6 * * *` misplaced."""
    fields = _MACRO_SPECS.get(schedule.strip(), schedule).split()
    minutes = sorted(_cron_field(fields[0], 0, 59)[0])
    if fields[1] != "*" or len(minutes) < 2:
        return False
    gaps = {b - a for a, b in itertools.pairwise([*minutes, minutes[0] + 60])}
    return len(gaps) == 1 and gaps.pop() in _MINUTE_STEPS


def _times_of_day(schedule: str) -> list[int]:
    """The minutes of the day a valid schedule runs at, in order."""
    fields = _MACRO_SPECS.get(schedule.strip(), schedule).split()
    minutes, _ = _cron_field(fields[0], 0, 59)
    hours, _ = _cron_field(fields[1], 0, 23)
    return sorted(h * 60 + m for h in hours for m in minutes)


def _shortest_gap(schedule: str) -> datetime.timedelta:
    """The shortest time between two runs of a valid schedule over 2026 and 2027, counted as stacks.data.longest_gap
    counts the longest: the same times each day it runs, and between two days it runs, the last of one to the first of
    the next. A schedule that runs once in the two years (or never) is as good as never."""
    times = _times_of_day(schedule)
    days = _days_run(_MACRO_SPECS.get(schedule.strip(), schedule).split())
    if len(days) * len(times) < 2:
        return datetime.timedelta(days=731)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    gaps += [int((b - a).total_seconds()) // 60 + times[0] - times[-1] for a, b in itertools.pairwise(days)]
    return datetime.timedelta(minutes=min(gaps))


def _span(gap: datetime.timedelta) -> str:
    minutes = int(gap.total_seconds()) // 60
    if minutes % (24 * 60) == 0:
        return f"{minutes // (24 * 60)} day{'s' if minutes != 24 * 60 else ''}"
    if minutes % 60 == 0:
        return f"{minutes // 60} h"
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def _drills_in_a_row(schedule: str, restored: Sequence[tuple[str, str]]) -> Iterator[Problem]:
    """A drill that runs twice between two runs of the most frequent backup it restores (`0 */2 * * 0`, meant as every
    second Sunday, is 12 drills each Sunday; `*/10 5 * * 0`, meant as 05:10, 6 in a row): each drill restores the
    newest snapshot of every volume and etcd it drills, so the later ones of the burst restore what the first did. The
    shortest gaps are compared: the backups' longest are the rule above's, which a burst inside a week never trips (a
    weekly drill's longest gap is a week, longer than a daily backup's). The fix is one run at the first time the
    schedule names on its days, or weekly at that time where those days are themselves closer than the backups."""
    if not restored:
        return
    gap = _shortest_gap(schedule)
    what, often = min(restored, key=lambda item: _shortest_gap(item[1]))
    every = _shortest_gap(often)
    if gap >= every:
        return
    fields = _MACRO_SPECS.get(schedule.strip(), schedule).split()
    first = _times_of_day(schedule)[0]
    once = f"{first % 60} {first // 60} {' '.join(fields[2:])}"
    if _shortest_gap(once) < every:
        once = f"{first % 60} {first // 60} * * 0"
    times = len(_times_of_day(schedule))
    runs = f"{times} times on each day it runs, " if times > 1 else ""
    yield Problem(
        "iluvatar:backup.drill.schedule",
        f"{schedule} runs {runs}{_span(gap)} apart at the soonest, while {what} ({often}), the most frequent backup it "
        f"restores, runs {_span(every)} apart at the soonest: each drill restores the newest snapshots, so a drill run again "
        f"before that backup runs restores the same ones again; run it once between two of its backups, at one time, e.g. {once}",
    )


def _keeps_nothing(path: str, keep: Keep) -> Iterator[Problem]:
    """A backup's keep with every count null (`{daily: null, weekly: null, monthly: null}`, meant as the defaults):
    plans.backup.retain drops the nulls, so the ReplicationSource's retain is empty, and VolSync reads an empty retain
    policy as `--keep-last 1` (internal/controller/mover/restic/mover.go:676-707 at v0.16.0, generateForgetOptions:
    "Retain policy was present, but empty"), which its restic mover runs after every backup (mover-restic/entry.sh:161-167,
    do_forget). Each backup then forgets the one before it. Said, not refused: keeping the newest alone can be meant,
    though `last: 1` (beside the nulls) says it."""
    counts = keep.model_dump()
    if any(v is not None for v in counts.values()):
        return
    written = ", ".join(f"{k}: null" for k in counts if k in keep.model_fields_set)
    yield Problem(
        path,
        f"{{{written}}} gives no count, so VolSync's retain is empty, and its restic mover then forgets every snapshot but the "
        "newest after each backup (an empty retain policy is --keep-last 1 in VolSync 0.16.0): a problem found after the next "
        "backup has no copy from before it; leave keep out for the defaults (daily 7, weekly 4, monthly 6), or write the counts "
        "(keep: {last: 1, daily: null, weekly: null, monthly: null} if only the newest is meant)",
    )


def _keeps_defaults(path: str, backup: AppBackup) -> Iterator[Problem]:
    """A `keep` written with some counts, which also keeps the defaults of the ones it leaves out (`{monthly: 12}` keeps
    daily 7 and weekly 4 beside its 12 monthly): the model fills every count it is not given (stacks.data_model.Keep),
    and plans.backup.retain hands them all to VolSync. Said, not refused: it keeps more snapshots than it names, never
    fewer, so nothing is lost but space on the target, and the defaults beside it can be meant."""
    keep = backup.keep
    if "keep" not in backup.model_fields_set or not keep.model_fields_set:
        return
    given = {f: getattr(keep, f) for f in Keep.model_fields if f in keep.model_fields_set}
    added = {f: getattr(keep, f) for f in Keep.model_fields if f not in keep.model_fields_set and getattr(keep, f) is not None}
    if not added:
        return
    yield Problem(
        path,
        f"{show(given)} also keeps {show(added)}, the defaults of the keys it leaves out; write every one you mean, a key set to null "
        f"keeping none (e.g. {show({**given, **dict.fromkeys(added)})} keeps only what it names)",
    )


def _short_retention(schedule: str, keep: int) -> Iterator[Problem]:
    """k3s keeps `keep` snapshots per server (and prunes the S3 copies to as many, --etcd-snapshot-retention): on a
    schedule that runs many times a day, they may span less than a day; with one, each run replaces the only snapshot,
    so whatever the schedule, a problem found after the next run has none from before it."""
    fields = _MACRO_SPECS.get(schedule, schedule).split()
    if keep == 1:
        yield Problem(
            "iluvatar:backup.etcd.keep",
            f"1 snapshot of backup.etcd.schedule {schedule}: each run replaces the only one k3s keeps (and prunes an S3 "
            "target's copies to), so a problem found after the next run has no snapshot from before it; keep at least 2, "
            "or as many as the days you may take to notice",
        )
        return
    minutes, _ = _cron_field(fields[0], 0, 59)
    hours, _ = _cron_field(fields[1], 0, 23)
    per_day = len(minutes) * len(hours)
    if len(_days_run(fields)) < 730 or keep >= per_day:
        return
    span = datetime.timedelta(days=keep / per_day)
    hours_span, rest = divmod(int(span.total_seconds()) // 60, 60)
    yield Problem(
        "iluvatar:backup.etcd.keep",
        f"{keep} snapshots of backup.etcd.schedule {schedule}, which runs {per_day} times a day, span {hours_span} h {rest:02d} min: "
        f"a problem found the next day has no snapshot from before it; keep at least {per_day} (a day's), or run it less often",
    )


def _literal_characters(pattern: str) -> str | None:
    """The characters of a glob pattern that fnmatch and a shell read as wildcards and go-glob as themselves, named."""
    found = [c for c in "?[" if c in pattern]
    return " and ".join(f"`{c}`" for c in found) or None


def _glob_characters(stack: StackConfig) -> Iterator[Problem]:
    """A Talos glob (an install selector's model, serial, wwid or busPath; a volume selector's glob() pattern) holding `?`
    or `[`: Talos's glob is go-glob's, where `*` is the one wildcard (glob.go:6,22-27 at v1.0.0, stacks.disk_ids.glob), so
    `?` and `[...]` match only themselves, and the pattern most likely matches no disk at all (an install finds no disk;
    a volume is never provisioned). Valid, as a value may hold them: said, not refused."""

    def said(value: str, chars: str) -> str:
        one = "itself" if len(chars) == 3 else "themselves"
        return (
            f"{value} holds {chars}: Talos's glob is go-glob's (glob.go:22-27 at v1.0.0), whose one wildcard is `*`, so {chars} "
            f"{'matches' if len(chars) == 3 else 'match'} only {one}, and the pattern most likely no disk; write * where any "
            "characters may stand"
        )

    for i, node in enumerate(stack.nodes):
        install = node.install_disk
        if not isinstance(install, DiskSelector):
            continue
        for key, value in install.talos().items():
            if key not in ("size", "type") and (chars := _literal_characters(str(value))) is not None:
                yield Problem(f"iluvatar:nodes[{i}].installDisk.{key}", said(str(value), chars))
    for path, patch in talos_patches_of(stack.arda, list(enumerate(stack.nodes))):
        provisioning = patch.get("provisioning") if "kind" in patch else None
        volume = provisioning.get("diskSelector") if isinstance(provisioning, dict) else None
        match = volume.get("match") if isinstance(volume, dict) else None
        if not isinstance(match, str):
            continue
        for pattern in cel.glob_patterns(match):
            if (chars := _literal_characters(pattern)) is not None:
                yield Problem(f"{path}.provisioning.diskSelector.match", said(f"glob('{pattern}', ...)", chars))


def _etcd_newer_patch(stack: StackConfig) -> Iterator[Problem]:
    """A patch's cluster.etcd.image at a later patch release of the etcd minor arda.talosVersion ships (3.7.2 beside
    v1.14.1's 3.7.1, pinned for a fix): etcd takes it (stacks.rules.newer_etcd_patch), so it is valid, but Iluvatar
    applies the patch over every later talosVersion's config, so no Talos upgrade moves etcd past it, and stacks.rules
    refuses it at the first talosVersion whose etcd is newer (a lower patch or minor than the cluster runs)."""
    talos = stack.arda.talos_version
    for path, patch in talos_patches_of(stack.arda, list(enumerate(stack.nodes))):
        cluster = patch.get("cluster") if "kind" not in patch else None
        etcd_config = cluster.get("etcd") if isinstance(cluster, dict) else None
        image = etcd_config.get("image") if isinstance(etcd_config, dict) else None
        if not isinstance(image, str) or not newer_etcd_patch(talos, image) or (have := etcd_release(image)) is None:
            continue
        pinned = ".".join(str(x) for x in have)
        etcd = releases.etcd_of(talos)
        yield Problem(
            f"{path}.cluster.etcd.image",
            f"{image} is etcd {pinned}, a later patch release than etcd {etcd}, the one Talos {talos} ships: etcd takes it (one "
            f"minor, one data version), but the pin is the patch's, not the release's: Iluvatar applies the patch over every "
            f"later talosVersion's config, so a Talos upgrade does not move etcd past {pinned}, and validate refuses it at the "
            f"first talosVersion whose etcd is newer; remove image from the patch once arda.talosVersion ships etcd {pinned} or "
            "later",
        )


def _etcd_off_an_nfs_target(stack: StackConfig) -> Iterator[Problem]:
    """An NFS backup target takes the volumes' backups alone: talos-backup uploads Arda's etcd snapshots only to S3
    (plans.backup.arda_etcd: off with NFS unless backup.etcd.arda says otherwise, which is refused), and k3s uploads the
    Ainur's only to S3 (etcd-s3, plans.backup.k3s_settings), keeping them on each valar's own disk otherwise. The
    disaster those snapshots are for, a control plane's disk lost, then takes them with it. A warning: a stack may
    mean it (docs/layers/data.md says so); `backup.etcd.arda: false` says Arda's is meant, and it is not said again."""
    backup = stack.backup
    if backup is None:
        return
    found = parse_target(backup.target)
    if isinstance(found, str) or found.kind != "nfs":
        return
    lost = ["Arda's etcd gets no backup (talos-backup uploads only to S3)"] if backup.etcd.arda is None else []
    if stack.ainur is not None:
        valar = stack.by_role("valar")
        where = f"the valar's own disk ({valar[0].name})" if len(valar) == 1 else "each valar's own disk"
        lost.append(f"the Ainur's etcd snapshots stay on {where}, lost with it (k3s uploads them only to S3)")
    if not lost:
        return
    yield Problem(
        "iluvatar:backup.target",
        f"{backup.target} is NFS, which takes the volumes' backups alone: {', and '.join(lost)}; for the etcd snapshots on the "
        "NAS too, use an S3 target (most NAS serve S3, e.g. s3+http://<NAS address>:<port>/<bucket>, with the two S3 secrets)",
    )


def _same_box(stack: StackConfig) -> Iterator[Problem]:
    """A volume of the nfs class backed up to the NAS that serves the class: its backups are on the box it lives on, so
    a lost NAS takes both; and an NFS target on the class's own export, where one mistake in the share takes both. A
    warning, not a refusal: restic's snapshots there still undo a deletion or a bad upgrade."""
    if stack.backup is None or stack.storage.nfs is None:
        return
    found = parse_target(stack.backup.target)
    if isinstance(found, str):
        return
    host = found.host.rsplit(":", 1)[0] if found.kind == "s3" else found.host
    zone = zone_addresses(list(enumerate(stack.nodes)), stack.arda, stack.ainur, stack.network)
    server = target_address(found) or zone.get(host)
    nfs = nfs_address(stack)
    if server is None or str(server) != nfs:
        return
    share, export = stack.storage.nfs.share.rstrip("/") or "/", found.path.rstrip("/") or "/"
    if found.kind == "nfs" and (export == share or export.startswith(share.rstrip("/") + "/") or share.startswith(export.rstrip("/") + "/")):
        # The class's own export (or a folder of it, or one holding it): csi-driver-nfs makes a folder there per claim,
        # and every VolSync mover mounts the target's export read-write, so the restic repositories sit in the same
        # tree as the volumes: one `rm -rf` in the share, or the share filling up, takes both, NAS up or not.
        yield Problem(
            "iluvatar:backup.target",
            f"{stack.backup.target} is on the export the nfs class provisions its volumes from (storage.nfs {stack.storage.nfs.server}:"
            f"{stack.storage.nfs.share}): the restic repositories would sit in the same tree as the volumes, mounted read-write "
            "by every mover, so one rm -rf there or the share filling up takes the volumes and their backups together; back up to "
            "another export (another dataset or share of the NAS at least), or another machine",
        )
    default = default_class(stack, "arda")
    for i, app in enumerate(stack.apps):
        for v, volume in enumerate(app.backup.volumes if app.backup is not None else ()):
            if (volume.storage_class or default) == "nfs":
                yield Problem(
                    f"iluvatar:apps[{i}].backup.volumes[{v}]",
                    f"{volume.claim} is on the nfs class, served by {nfs}, and backed up to {stack.backup.target} on the same "
                    "server: a lost NAS takes the volume and its backups together; back it up to another machine, or keep it on "
                    "another class",
                )


# The servers a part of Arda may serve, with what is lost when that part fails, and where else to keep them. A warning,
# since a household may accept it.
#   - The alert receiver: Alertmanager runs on Arda too, so Arda down is the dead man's switch's to tell
#     (monitoring.heartbeat, refused on Arda), and a receiver there is allowed; but an alert about a part of Arda that
#     fails (its gateways, the receiver's app, its volumes) is posted through that part and may never arrive.
#   - The LDAP directory: Dex binds to it for every sign-in, to Argo CD and kubectl on the Ainur (plans.identity) as on
#     Arda, so while Arda is down nobody signs in to the tools that repair it.
_SERVED_BY_ARDA = {
    "receiver": (
        "Alertmanager posts there from Arda, so an alert about a part of Arda that fails (its gateways, the receiver's app, its "
        "volumes) goes through what is failing and may never reach you; keep the receiver off Arda (ntfy.sh, a server on another "
        "machine), or keep it knowing those alerts may be lost"
    ),
    "ldap": (
        "Dex binds to the directory for every sign-in, to Argo CD and kubectl on the Ainur as on Arda, so while Arda is down nobody "
        "can sign in to the tools that repair it; keep the directory off Arda (the NAS, a machine off the clusters), or keep it "
        "knowing sign-in goes down with Arda"
    ),
}


def _served_by_arda(stack: StackConfig, named: Sequence[Server]) -> Iterator[Problem]:
    """The alert receiver or the LDAP directory served by Arda (an app, a Service, a machine): _SERVED_BY_ARDA says why."""
    lab = Lab(list(enumerate(stack.apps)), stack.network, list(enumerate(stack.nodes)), stack.arda)
    for server in named:
        harm = _SERVED_BY_ARDA.get(server.kind)
        if harm is None:
            continue
        for what in server_on_arda(server, lab):
            yield Problem(f"iluvatar:{server.path}", f"{server.written}: {what}: {harm}")


def _beside_pi_listeners(stack: StackConfig, named: Sequence[Server]) -> Iterator[Problem]:
    """A server on a Pi at a port one of the Ainur's listeners holds on the service address alone: a clash only if the
    server listens on every address, so warned (stacks.pi_listeners; the certain clashes are refused by stacks.load)."""
    zone = zone_addresses(list(enumerate(stack.nodes)), stack.arda, stack.ainur, stack.network)
    on_pis = pi_listeners.named_servers(named, stack.storage, stack.backup, zone)
    yield from (p for refused, p in pi_listeners.clashes(on_pis, list(enumerate(stack.nodes)), stack.ainur) if not refused)


def _single_labels(stack: StackConfig, named: Sequence[Server]) -> Iterator[Problem]:
    """A server written as a single label. Its client resolves it through a search list: Alertmanager's pod first as a
    Service of its namespace (stacks.monitoring.server_on_arda says when an app's Service is there); a client on the
    Ainur then under network.domain, a zone whose names the plan alone gives (plans.zone), and a name found there is
    checked as its address (stacks.addresses.servers). A client on Arda searches no such domain (Talos gives Arda's
    machines none: stacks.addresses.searching), so it finds even a name of the zone only through a resolver that
    answers plain names, a router's DHCP host names, which the stack cannot see: a warning, not a refusal, as for a label
    that is no name of the zone."""
    lab = Lab(list(enumerate(stack.apps)), stack.network, list(enumerate(stack.nodes)), stack.arda)
    searched = searching(stack.ainur is not None)
    for server in named:
        host = server.host.rstrip(".").lower()
        # An IPv6 literal has no dot either: stacks.addresses.unknown_names refuses it.
        if not host or "." in host or ":" in host or server_on_arda(server, lab):
            continue
        full = f"{host}.{stack.network.domain}"
        if server.address is None:
            yield Problem(
                f"iluvatar:{server.path}",
                f"{server.written}: the server {host} is a single label, and {full} is no name of the internal "
                f"zone: it resolves only if a resolver answers the plain name (a router's DHCP host names), else {CLIENTS[server.kind]}; "
                f"write {NOUNS[server.kind]}'s full name or its LAN IPv4 address",
            )
        elif server.kind not in searched:
            where = "Argo CD on Arda" if server.kind == "git" else "Alertmanager on Arda"
            yield Problem(
                f"iluvatar:{server.path}",
                f"{server.written}: the server {host} is a single label, which {where} asks as written: Talos gives Arda's machines no "
                f"search domain, so {full} is never tried; it resolves only if a resolver answers the plain name (a router's DHCP "
                f"host names), else {CLIENTS[server.kind]}; write {full}",
            )


# Tailscale's own domain: each of its tailnets has its MagicDNS names at tail<id>.ts.net.
TAILSCALE_DOMAIN = "ts.net"


def _tailscale_domain(stack: StackConfig) -> Iterator[Problem]:
    """Headscale's base domain under ts.net (most likely copied from a Tailscale tailnet): the Tailscale client takes over
    the whole base domain (headscale hscontrol/types/config.go, the comment above isSafeServerURL's call: "Tailscale takes
    over the domain in BaseDomain"), so the real names there, a Tailscale tailnet's machines, stop resolving on the
    devices. A warning: nothing of the homelab's own breaks, and the user may have no other tailnet there."""
    remote = stack.remote_access
    domain = remote.headscale.base_domain if remote is not None and remote.headscale is not None else None
    if domain is None or not (domain == TAILSCALE_DOMAIN or domain.endswith(f".{TAILSCALE_DOMAIN}")):
        return
    yield Problem(
        "iluvatar:remoteAccess.headscale.baseDomain",
        f"{domain} is under {TAILSCALE_DOMAIN}, Tailscale's own domain, where each of its tailnets has its MagicDNS names "
        "(tail<id>.ts.net): the Tailscale client answers every name under the base domain from this tailnet alone, so on its "
        "devices the real names there (a Tailscale tailnet's machines and their certificates' names) stop resolving; pick a "
        f"domain of your own, e.g. tailnet.{stack.network.domain}",
    )
