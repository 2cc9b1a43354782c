"""Stack loading: turn raw stack config (a stack file, or Pulumi's config) into a `StackConfig`.

There is one parse path for both sources, so `python -m iluvatar validate` and
`pulumi preview` accept and reject exactly the same stacks with the same messages.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from plans import zone as zone_plan
from stacks import addresses, chart_images, chart_owned, credentials, pi_listeners, special_names
from stacks import apps as app_rules
from stacks import chart_values as chart_rules
from stacks import data as data_rules
from stacks import discovery as discovery_rules
from stacks import encryption as encryption_rules
from stacks import gitops as gitops_rules
from stacks import identity as identity_rules
from stacks import logs as logs_rules
from stacks import monitoring as monitoring_rules
from stacks import power as power_rules
from stacks import remote_access as remote_rules
from stacks import secrets as secrets_rules
from stacks import storage as storage_rules
from stacks import versions as version_rules
from stacks.categories import known_categories
from stacks.data_model import Backup
from stacks.edge import edge_addresses, resolver_needed
from stacks.errors import Problem, StackConfigError, UnsetSecret, YamlInt, show
from stacks.errors import StackFileError as StackFileError  # its home is stacks.errors, which the CLI's handler loads alone
from stacks.logs_model import Logs
from stacks.model import Ainur, App, Arda, Cloudflare, Edge, GitOps, Identity, Monitoring, Network, Node, StackConfig, Storage
from stacks.remote_model import RemoteAccess
from stacks.rules import (
    Parsed,
    Taken,
    _fixed_addresses,
    _vip_list,
    _zone_names,
    check,
    devices_in_cluster_networks,
    dhcp_range_once,
    free_address,
    talos_patches_of,
)
from stacks.secrets import SecretsManager, Secure

NAMESPACE = "iluvatar"


@dataclass(frozen=True)
class Section:
    """A top-level `iluvatar:<key>` of the stack config."""

    key: str
    model: type[BaseModel] | None  # None: a list (nodes, apps), parsed one by one
    required: bool
    # Left out, the section is its model's defaults (parse_stack reads `Edge()` for no `iluvatar:edge`); else left out it
    # is off.
    defaults_when_absent: bool = False


SECTIONS: dict[str, Section] = {
    s.key: s
    for s in (
        Section("network", Network, True),
        Section("ainur", Ainur, False),
        Section("arda", Arda, True),
        Section("nodes", None, True),
        Section("apps", None, False),
        Section("edge", Edge, False, defaults_when_absent=True),
        Section("cloudflare", Cloudflare, False),
        Section("gitops", GitOps, False),
        Section("storage", Storage, False, defaults_when_absent=True),
        Section("monitoring", Monitoring, False),
        Section("identity", Identity, False),
        Section("backup", Backup, False),
        Section("logs", Logs, False, defaults_when_absent=True),
        Section("remoteAccess", RemoteAccess, False),
    )
}

# Secret keys, and the section whose presence makes each one required (None: optional, or decided
# by a rule: without a private key, SSH to the Ainur goes through the user's SSH agent; the
# Cloudflare token is required when the edge uses Cloudflare, stacks.edge).
# The secret keys. Each is required or refused by the layer that reads it: the Cloudflare token by
# stacks.edge (from the edge's modes), the Git credentials by stacks.gitops (from the repository URL).
SECRETS: tuple[str, ...] = (
    "cloudflareApiToken",
    "ainurSshPrivateKey",
    gitops_rules.TOKEN,
    gitops_rules.SSH_KEY,
    monitoring_rules.SECRET,
    identity_rules.SECRET,
    power_rules.PASSWORDS,
    # The apps' own secrets (a mapping app -> name -> encrypted value) and the S3 target's credentials (stacks.data).
    data_rules.APP_SECRETS,
    data_rules.S3_KEY_ID,
    data_rules.S3_SECRET_KEY,
    remote_rules.SECRET,
    # The KMS key put back from its backup after Pulumi's state was lost (components.kms).
    encryption_rules.KMS_RESTORE,
)

ORDER = [*SECTIONS, *SECRETS]
# The model of each top-level key's value (of each item, for the lists).
MODELS: dict[str, type[BaseModel]] = {**{k: s.model for k, s in SECTIONS.items() if s.model is not None}, "nodes": Node, "apps": App}


# --- Parsing -------------------------------------------------------------------------------


def parse_stack(
    raw: Mapping[str, Any], secret_keys: frozenset[str] = frozenset(), source: str = "stack config", *, require_secrets: bool = False
) -> StackConfig:
    """Validate raw config (full keys such as `iluvatar:network`) and return the typed stack.

    Raises StackConfigError with every problem found, sorted in config order. A secret the stack needs and does
    not set (an `UnsetSecret`) is one of them only with `require_secrets`: the program at `pulumi preview` and
    `iluvatar validate` pass it; reading the inventory (to render it, or to plan from it) does not need the secrets.
    """
    problems: list[Problem] = []
    values: dict[str, Any] = {}
    meant: set[str] = set()  # keys a misspelled key stands for: "did you mean" says it, not also "is required"
    # Credentials written where a service's docs put them, each sent to its secret key (stacks.credentials).
    raw, found = credentials.strip(raw, MODELS, SECRETS)
    for full_key, value in raw.items():
        nested = _nested(full_key, value)
        if nested is not None:
            problem, inner = nested
            found.append(credentials.Found(problem, None))
            meant.update(inner)  # said once, where the user wrote it, not also as "is required"
            continue
        ns, _, key = full_key.partition(":")
        if ns != NAMESPACE:
            elsewhere = _other_namespace(full_key, ns, key)
            if elsewhere and key in SECTIONS:
                meant.add(key)  # said once, as "did you mean", not also as "is required"
            found += elsewhere
            continue
        if key == data_rules.APP_SECRETS:
            continue  # encrypted value by value (`config set --secret --path`): stacks.data checks each
        if key in SECRETS:
            if key == power_rules.PASSWORDS:
                continue  # one password per BMC address: stacks.power checks each entry
            # A `secure:` value read from a stack file (Secure) is ciphertext whoever passes it on.
            if full_key not in secret_keys and not isinstance(value, Secure):
                if credentials.placeholder(value):
                    # The `<value>` of a command copied whole, or a word for "change me": no secret to keep from the screen.
                    problems.append(
                        Problem(
                            full_key,
                            f"is a placeholder ({show(value)}), in plain text; run `{encryption_rules.set_secret_command(full_key)}` with the real one",
                        )
                    )
                else:
                    # Never echo the value: it is the secret the user just leaked into a file.
                    problems.append(Problem(full_key, encryption_rules.plain_text_problem(full_key)))
            continue
        if key not in SECTIONS:
            closest = _closest(key, ORDER)
            if closest is not None:
                meant.add(closest)
            problems.append(Problem(full_key, f"is not a known key{_did_you_mean(closest)} (known: {', '.join(ORDER)})"))
            continue
        # A section made secret by a credential set in it (`config set --secret --path`) is read without it: its message says so.
        if full_key in secret_keys and not any(f.problem.path.startswith((f"{full_key}.", f"{full_key}[")) for f in found):
            problems.append(Problem(full_key, "is encrypted, but it is plain configuration that every layer must read; set it without --secret"))
            continue
        if value is None:
            # The section's key with nothing after its colon (its lines not yet written, or commented out): YAML's null,
            # which Pulumi hands the program as JSON null too (sdk/go/common/resource/config/object.go unmarshalObject
            # keeps nil, MarshalString writes it as `null`). Said once, here; the section stays set, as one that did not
            # parse (_section reads nothing of it), so no rule also says it is missing.
            problems.append(Problem(full_key, _blank_section(SECTIONS[key], _needed_by(key, raw))))
        values[key] = value

    for key, section in SECTIONS.items():
        if section.required and key not in values and key not in meant:
            problems.append(Problem(f"{NAMESPACE}:{key}", "is required"))

    network = _section(values, "network", problems)
    ainur = _section(values, "ainur", problems)
    arda = _section(values, "arda", problems)
    cloudflare = _section(values, "cloudflare", problems)
    gitops = _section(values, "gitops", problems)
    edge = _section(values, "edge", problems) if "edge" in values else Edge()
    storage = _section(values, "storage", problems)
    monitoring = _section(values, "monitoring", problems)
    identity = _section(values, "identity", problems)
    nodes, nodes_complete = _nodes(values.get("nodes"), problems)
    apps = _apps(values.get("apps"), problems)
    remote = _section(values, "remoteAccess", problems)
    # A zone under a special-use suffix is said once, at its key (stacks.special_names), with the names to move with
    # it: the rules below read no network, as of a section that did not parse, so none of its names is also said to be
    # outside the zone.
    special = special_names.check(network if isinstance(network, Network) else None, special_names.named_keys(apps, identity, remote))
    problems += special
    if special:
        network = None

    parsed = Parsed(
        network=network if isinstance(network, Network) else None,
        ainur=ainur if isinstance(ainur, Ainur) else None,
        ainur_set="ainur" in values,
        arda=arda if isinstance(arda, Arda) else None,
        nodes=nodes,
        nodes_complete=nodes_complete and "nodes" in values,
        apps=apps,
        edge=edge if isinstance(edge, Edge) else None,
        cloudflare=cloudflare if isinstance(cloudflare, Cloudflare) else None,
        cloudflare_set="cloudflare" in values,
        # A misspelt token key is reported once, as "did you mean", not also as missing.
        cloudflare_token_set=f"{NAMESPACE}:cloudflareApiToken" in raw or "cloudflareApiToken" in meant,
        extra_categories=gitops.categories if isinstance(gitops, GitOps) else _written_categories(values.get("gitops")),
    )
    backup = _section(values, "backup", problems)
    # The sign-in, alerting and GitOps layers' servers and the Pi image's: by address in the table, by name against the
    # internal zone.
    # A name of the internal zone is resolved through the records the plan gives the zone (plans.zone), and checked as
    # the address it stands for.
    zone_records = _zone(values, network, ainur, arda, nodes, apps, edge, identity, gitops)
    named = addresses.servers(
        identity if isinstance(identity, Identity) else None,
        monitoring if isinstance(monitoring, Monitoring) else None,
        gitops if isinstance(gitops, GitOps) else None,
        zone_records,
        network.domain if isinstance(network, Network) else None,
        [a for _, a in apps],
        addresses.netbooted_image(ainur if isinstance(ainur, Ainur) else None, [n for _, n in nodes]),
    )
    # Every layer's fixed address in one table (stacks.addresses): each rule below checks against it, less its own.
    registered = addresses.entries(
        nodes,
        _vip_list(parsed),
        identity if isinstance(identity, Identity) else None,
        remote if isinstance(remote, RemoteAccess) else None,
        backup if isinstance(backup, Backup) else None,
        network if isinstance(network, Network) else None,
        storage if isinstance(storage, Storage) else None,
        named,
        ainur if isinstance(ainur, Ainur) else None,
        talos_patches_of(arda if isinstance(arda, Arda) else None, nodes),
        zone_records,
        arda.kernel_args if isinstance(arda, Arda) else None,
    )
    # The routed devices are read by the rules below that place the homelab's own addresses (a free one suggested,
    # Headscale's); the rest read the table without them (stacks.addresses.routed says why).
    held = addresses.without_routes(registered)
    # A free address a message suggests is none of the table's, and in no range lent on the LAN (stacks.addresses.lent_ranges;
    # network.dhcpRange is read by the rules themselves, stacks.rules.Taken).
    owners = addresses.table([*registered, *addresses.services([], apps)])
    taken = Taken(
        frozenset(owners),
        tuple(
            r.range
            for r in addresses.lent_ranges(
                network if isinstance(network, Network) else None,
                ainur if isinstance(ainur, Ainur) else None,
                arda.discovery.pool if isinstance(arda, Arda) and arda.discovery is not None else None,
            )
            if r.key != addresses.DHCP_RANGE
        ),
    )
    parsed = dataclasses.replace(parsed, taken=taken)
    problems += check(parsed)
    present = {key for key in SECRETS if f"{NAMESPACE}:{key}" in raw}
    if "gitops" not in values or isinstance(gitops, GitOps):
        problems += gitops_rules.check(
            gitops if isinstance(gitops, GitOps) else None,
            ainur if isinstance(ainur, Ainur) else None,
            present,
            gitops_rules.Lab(apps, network if isinstance(network, Network) else None, nodes, arda if isinstance(arda, Arda) else None),
        )
    # The disk rules need only the nodes; the rest needs a storage section that parsed (or none: the defaults).
    problems += storage_rules.check(
        storage if isinstance(storage, Storage) else (Storage() if "storage" not in values else None),
        nodes,
        nodes_complete and "nodes" in values,
        arda if isinstance(arda, Arda) else None,
        ainur if isinstance(ainur, Ainur) else None,
        "ainur" in values,
        network if isinstance(network, Network) else None,
        "gitops" in values,
    )
    problems += monitoring_rules.check(
        monitoring if isinstance(monitoring, Monitoring) else None,
        "monitoring" in values,
        "gitops" in values,
        apps,
        storage if isinstance(storage, Storage) else (Storage() if "storage" not in values else None),
        [n for _, n in nodes],
        present,
        gitops_rules.Lab(apps, network if isinstance(network, Network) else None, nodes, arda if isinstance(arda, Arda) else None),
        named,
    )
    problems += identity_rules.check(
        identity if isinstance(identity, Identity) else None,
        "identity" in values,
        "ainur" in values,
        "gitops" in values,
        network if isinstance(network, Network) else None,
        # Headscale's address against the front door's is said once, by Headscale's rule; a DNS server's by its own; the
        # NAS's by stacks.data at backup.target (the server written there is what names the front door's address).
        # A server at the front door is said at the server's key (stacks.addresses.check), the router's DHCP server at
        # routerAddress (stacks.addresses.check), a Talos patch's NTP server at its key; a patch's host entry may name it.
        addresses.table(held, frozenset({"identity", "headscale", "dns", "nas", "router", *addresses.SERVERS, *addresses.PATCHED})),
        apps,
        _zone_names(parsed),
        present,
        free_of=taken,
        nodes=nodes,
        also=_access_groups(remote if isinstance(remote, RemoteAccess) else None),
    )
    problems += discovery_rules.check(
        arda if isinstance(arda, Arda) else None,
        ainur if isinstance(ainur, Ainur) else None,
        "ainur" in values,
        network if isinstance(network, Network) else None,
        # The Ainur lend the pool to machines being read: it must hold no address of any layer.
        addresses.table(held),
    )
    # The free addresses the messages offer, one list for Headscale's rule and the address table's (the DNS servers'),
    # so that no two offer the same one and the fixes taken together validate.
    offered: list[IPv4Address] = []

    def offer(given: Collection[IPv4Address] = ()) -> IPv4Address | None:
        spare = _free_beside(network, taken, [*offered, *given]) if isinstance(network, Network) else None
        offered.extend([spare] if spare is not None else [])
        return spare

    problems += remote_rules.check(
        remote if isinstance(remote, RemoteAccess) else None,
        "remoteAccess" in values,
        network if isinstance(network, Network) else None,
        "ainur" in values,
        identity if isinstance(identity, Identity) else None,
        "identity" in values,
        apps,
        # The front door is a kube-vip address like the VIPs: Headscale's address must be another. The NAS's is said by
        # stacks.data at backup.target, the key that wrote the server there; another server's at its own key
        # (stacks.addresses.check), the router's DHCP server's at routerAddress (stacks.addresses.check), a Talos patch's
        # NTP server's at its key (stacks.addresses.check); a route's /32 at Headscale's own address at the route
        # (stacks.remote_access._routes); a patch's host entry may name Headscale.
        addresses.table(
            [h if h.kind != "identity" else dataclasses.replace(h, owner="identity.ip (the front door)") for h in registered],
            frozenset({"headscale", "dns", "nas", "route", "router", *addresses.SERVERS, *addresses.PATCHED}),
        ),
        present,
        arda.patches if isinstance(arda, Arda) else (),
        ports_written=_apps_written_with_ports(values.get("apps")),
        free_of=taken,
        offer=offer,
        servers=addresses.server_names(named, backup if isinstance(backup, Backup) else None),
        # Every name of the internal zone but the apps' (which the rule reads from `apps`).
        zone_names={
            **_zone_names(parsed),
            **identity_rules.zone_names(
                identity if isinstance(identity, Identity) else None,
                network.domain if isinstance(network, Network) else "",
                "gitops" in values,
                "ainur" in values,
            ),
        },
        clusters=addresses.clusters_own(
            held,
            nodes,
            arda.discovery.pool if isinstance(arda, Arda) and arda.discovery is not None else None,
            network if isinstance(network, Network) else None,
            ainur if isinstance(ainur, Ainur) else None,
            arda.discovery if isinstance(arda, Arda) else None,
        ),
        # A route to a fixed address in a lent range is said by the rules that place the address, a device's by its
        # problem, which names the route with every key to move (stacks.remote_access.lent_routes, stacks.addresses.check,
        # router_pool).
        fixed={h.ip for h in held} | ({network.gateway} if isinstance(network, Network) else set()),
    )
    routes = addresses.routed(remote if isinstance(remote, RemoteAccess) else None)
    problems += addresses.check(
        held,
        network if isinstance(network, Network) else None,
        ainur if isinstance(ainur, Ainur) else None,
        offer if isinstance(network, Network) else None,
        routes,
        [*addresses.services([], apps), *addresses.ntp_pods(apps, nodes)],
    )
    problems += addresses.at_headscales_name(named, remote if isinstance(remote, RemoteAccess) else None)
    target_at_headscale = list(
        addresses.backup_at_headscales_name(backup if isinstance(backup, Backup) else None, remote if isinstance(remote, RemoteAccess) else None)
    )
    problems += target_at_headscale
    problems += addresses.host_edges(registered, network if isinstance(network, Network) else None)
    problems += addresses.link_collisions(
        talos_patches_of(arda if isinstance(arda, Arda) else None, nodes),
        nodes,
        held,
        network if isinstance(network, Network) else None,
        ainur if isinstance(ainur, Ainur) else None,
        offer if isinstance(network, Network) else None,
    )
    problems += addresses.kubernetes_names_off_arda(named, [a for _, a in apps], isinstance(ainur, Ainur))
    problems += addresses.image_server(
        named, apps, network if isinstance(network, Network) else None, nodes, arda if isinstance(arda, Arda) else None
    )
    # A server named on a Pi, on a port the Ainur's own listeners take there (stacks.pi_listeners): the certain clashes
    # here, the others warned of (stacks.warn).
    on_pis = pi_listeners.named_servers(
        named,
        storage if isinstance(storage, Storage) else None,
        backup if isinstance(backup, Backup) else None,
        storage_rules.zone_addresses(
            nodes,
            arda if isinstance(arda, Arda) else None,
            ainur if isinstance(ainur, Ainur) else None,
            network if isinstance(network, Network) else None,
        ),
    )
    problems += [p for refused, p in pi_listeners.clashes(on_pis, nodes, ainur if isinstance(ainur, Ainur) else None) if refused]
    # The image's server and, with the Ainur, the Git server, resolved through network.dns alone: no name of the zone,
    # no multicast DNS name.
    problems += addresses.unresolved_names(
        named, network if isinstance(network, Network) else None, isinstance(ainur, Ainur), {p.path for p in problems}
    )
    problems += addresses.unknown_names(
        # The other layers' servers, and the NTP servers of Arda's Talos patches written as a name of the zone.
        [
            *named,
            *addresses.patched_names(
                talos_patches_of(arda if isinstance(arda, Arda) else None, nodes),
                zone_records,
                network.domain if isinstance(network, Network) else None,
                arda.kernel_args if isinstance(arda, Arda) else None,
            ),
        ],
        network if isinstance(network, Network) else None,
        {
            *storage_rules.zone_addresses(
                nodes,
                arda if isinstance(arda, Arda) else None,
                ainur if isinstance(ainur, Ainur) else None,
                network if isinstance(network, Network) else None,
            ),
            *(app.host for _, app in apps),
            *_zone_names(parsed),
            *identity_rules.zone_names(
                identity if isinstance(identity, Identity) else None,
                network.domain if isinstance(network, Network) else "",
                "gitops" in values,
                "ainur" in values,
            ),
        },
        isinstance(ainur, Ainur),
    )
    # A name of the internal zone pinned to another address by a static host entry of Arda's Talos patches.
    problems += addresses.host_names_in_zone(
        talos_patches_of(arda if isinstance(arda, Arda) else None, nodes),
        zone_records,
        network.domain if isinstance(network, Network) else None,
        {
            **{app.host.lower(): f"apps[{i}].host ({app.name})" for i, app in apps},
            **_zone_names(parsed),
            **identity_rules.zone_names(
                identity if isinstance(identity, Identity) else None,
                network.domain if isinstance(network, Network) else "",
                "gitops" in values,
                "ainur" in values,
            ),
        },
    )
    # The devices off the LAN the clusters reach, against the clusters' own networks (stacks.rules._cluster_networks).
    problems += devices_in_cluster_networks(
        parsed, held, network if isinstance(network, Network) else None, backup.target if isinstance(backup, Backup) else None
    )
    pooled = [*held, *addresses.services([], apps)]
    problems += addresses.router_pool(pooled, ainur if isinstance(ainur, Ainur) else None, network if isinstance(network, Network) else None, routes)
    app_values, app_values_broken = (
        data_rules.read_values(raw[f"{NAMESPACE}:{data_rules.APP_SECRETS}"], Secure)
        if f"{NAMESPACE}:{data_rules.APP_SECRETS}" in raw
        else (None, None)
    )
    problems += data_rules.check(
        data_rules.Context(
            apps=apps,
            backup=backup if isinstance(backup, Backup) else None,
            backup_set="backup" in values,
            storage=storage if isinstance(storage, Storage) else (Storage() if "storage" not in values else None),
            nodes=nodes,
            nodes_complete=nodes_complete and "nodes" in values,
            arda=arda if isinstance(arda, Arda) else None,
            ainur=ainur if isinstance(ainur, Ainur) else None,
            network=network if isinstance(network, Network) else None,
            gitops_set="gitops" in values,
            secrets=present,
            app_secret_values=app_values,
            app_secrets_broken=app_values_broken,
            monitoring_set="monitoring" in values,
            identity_ip=identity.ip if isinstance(identity, Identity) else None,
            headscale_ip=remote.headscale.ip
            if isinstance(remote, RemoteAccess) and remote.flavour == "headscale" and remote.headscale is not None
            else None,
            zone=zone_records,
            target_at_headscale=bool(target_at_headscale),
        )
    )
    logs = _section(values, "logs", problems)
    problems += logs_rules.check(
        logs if isinstance(logs, Logs) else None,
        "logs" in values,
        "monitoring" in values,
        "ainur" in values,
        network if isinstance(network, Network) else None,
        edge if isinstance(edge, Edge) else None,
        storage if isinstance(storage, Storage) else (Storage() if "storage" not in values else None),
        [n for _, n in nodes],
        nodes_complete and "nodes" in values,
        len(apps),
        owners,
    )
    problems += app_rules.address_problems(
        apps,
        network if isinstance(network, Network) else None,
        addresses.table(
            [
                *held,
                *addresses.services(
                    _pool_owners(
                        network if isinstance(network, Network) else None,
                        edge if isinstance(edge, Edge) else None,
                        "ainur" in values,
                        logs if isinstance(logs, Logs) else (Logs() if "logs" not in values else None),
                        "monitoring" in values,
                        bool(apps),
                    ),
                    apps,
                ),
            ],
            # An app at another layer's server's address is that server run on Arda: its layer's rule on Arda speaks. An
            # app's address is in the load-balancer pool, where the router's DHCP server is said at routerAddress
            # (stacks.addresses.check), and so is a network.dns server where the Ainur forward to it: one slip, said
            # once at network.dns, whose fix (a DNS server off the pool) leaves the app its address. A Talos patch's host
            # entry may name an app; its NTP server in the pool is said at its key (stacks.addresses.check).
            frozenset({*addresses.SERVERS, *addresses.PATCHED, "router", *(("dns",) if isinstance(ainur, Ainur) else ())}),
        ),
    )
    problems += chart_rules.check(arda if isinstance(arda, Arda) else None, gitops if isinstance(gitops, GitOps) else None)
    problems += chart_owned.check(
        chart_owned.Layers(
            arda if isinstance(arda, Arda) else None,
            gitops if isinstance(gitops, GitOps) else None,
            network if isinstance(network, Network) else None,
            ainur if isinstance(ainur, Ainur) else None,
            identity if isinstance(identity, Identity) else None,
        )
    )
    problems += chart_images.check(arda if isinstance(arda, Arda) else None, gitops if isinstance(gitops, GitOps) else None)
    # Iluvatar's namespaces that only a layer makes, with the layer each would take, for the layers this stack leaves off
    # (plans.gitops, plans.storage's NFS CSI driver, plans.remote_access's Tailscale operator, plans.backup's VolSync and
    # talos-backup, plans.drill, plans.secrets' operator); the secret store's namespace and Kubernetes' own other than
    # kube-system run no pod at all. A category of the stack by one of these names is a namespace of its apps (and
    # `monitoring`, a default category, is always made: plans.edge).
    off = {
        "default": "Kubernetes' default namespace, where no app of Arda's runs",
        "kube-public": "Kubernetes' own",
        "kube-node-lease": "Kubernetes' own",
        "iluvatar-secrets": "the secret store's, which holds Secrets and runs none",
    }
    if "gitops" not in values:
        off["argocd"] = "Argo CD's, and iluvatar:gitops is not set"
    if not (isinstance(storage, Storage) and storage.nfs is not None):
        off["csi-nfs"] = "the NFS CSI driver's, and storage.nfs is not set"
    if not (isinstance(remote, RemoteAccess) and remote.flavour == "tailscale"):
        off["tailscale"] = "the Tailscale operator's, and remoteAccess.flavour is not tailscale"
    if "backup" not in values:
        off["volsync-system"] = "VolSync's, and iluvatar:backup is not set"
        off["etcd-backup"] = "the etcd backups', and iluvatar:backup is not set"
    elif isinstance(backup, Backup):
        target = data_rules.parse_target(backup.target)
        # talos-backup uploads to S3 alone (plans.backup.arda_etcd).
        if isinstance(target, data_rules.Target) and not (target.kind == "s3" and data_rules.arda_etcd_backup(backup)):
            off["etcd-backup"] = "talos-backup's, which runs only when Arda's etcd is backed up to an S3 target, and this stack's is not"
    if not (isinstance(backup, Backup) and "monitoring" in values and backup.drill.enabled):
        off["backup-drill"] = "the restore drills', which run with iluvatar:backup and iluvatar:monitoring unless backup.drill.enabled is false"
    if not any(app.secrets for _, app in apps):
        off["external-secrets"] = "External Secrets', which runs only for an app with secrets, and no app has any"
    for category in known_categories(gitops.categories if isinstance(gitops, GitOps) else ()):
        off.pop(category, None)
    problems += app_rules.layer_namespace_problems(apps, off)
    problems += version_rules.check(ainur if isinstance(ainur, Ainur) else None, backup if isinstance(backup, Backup) else None)
    problems += power_rules.check(
        nodes,
        nodes_complete and "nodes" in values,
        "ainur" in values,
        raw.get(f"{NAMESPACE}:{power_rules.PASSWORDS}"),
        f"{NAMESPACE}:{power_rules.PASSWORDS}" in raw,
        Secure,
        arda.kernel_args if isinstance(arda, Arda) else None,
        _bmc_addresses(values.get("nodes")),
    )
    problems = dhcp_range_once(problems, parsed.network, _fixed_addresses(parsed))
    # A credential in the wrong place says where it goes: neither its secret's "is required" nor what the model or a rule
    # says of the value that holds it (a URL with a password in it) is said again.
    given = set(credentials.given(found))
    said = {f.problem.path for f in found}
    problems = [p for p in problems if p.path not in said and not (isinstance(p, UnsetSecret) and p.where in given)]
    problems += [f.problem for f in found]
    if not require_secrets:
        problems = [p for p in problems if not isinstance(p, UnsetSecret)]
    if "apps" in values and not isinstance(values["apps"], list):
        # No app read at all (the section left blank, or not a list): what another key says of the apps it names is said
        # of apps that could not be read, so only iluvatar:apps's own problem speaks.
        apps_key = f"{NAMESPACE}:apps"
        problems = [p for p in problems if p.path.startswith(apps_key) or apps_key not in p.message]
    if problems:
        raise StackConfigError(sorted(problems, key=_config_order), source)
    stack = StackConfig.model_validate(
        {
            "network": values["network"],
            "ainur": values.get("ainur"),
            "arda": values["arda"],
            "nodes": values["nodes"],
            "apps": values.get("apps") or [],
            "edge": values.get("edge") or {},
            "cloudflare": values.get("cloudflare"),
            "gitops": values.get("gitops"),
            "storage": values.get("storage") or {},
            "monitoring": values.get("monitoring"),
            "identity": values.get("identity"),
            "backup": values.get("backup"),
            "logs": values.get("logs"),
            "remoteAccess": values.get("remoteAccess"),
        }
    )
    stack._app_secrets_set = {app: tuple(names) for app, names in (app_values or {}).items()}
    return stack


# The providers the program registers, each explicitly (pulumi:disable-default-providers): their own config namespaces
# configure only default providers, so nothing reads a key there.
PROVIDER_NAMESPACES = frozenset({"cloudflare", "kubernetes", "talos", "command", "random", "tls"})


DISABLE_DEFAULT_PROVIDERS = "disable-default-providers"


def _no_namespace(full_key: str) -> str:
    """A key with no `<namespace>:`, which Pulumi refuses with the whole stack file (sdk v3.272.0,
    go/common/resource/config/key.go:45-70 ParseKey: "could not parse ... as a configuration key"), and the key meant."""
    bare = re.sub(rf"^{NAMESPACE}[._\-/]", "", full_key, flags=re.IGNORECASE)
    meant = bare if bare in ORDER or bare in SECRETS else _closest(bare, ORDER)
    fix = f"write {NAMESPACE}:{meant}" if meant is not None else f"write it as {NAMESPACE}:<key> (its keys: {', '.join(ORDER)})"
    return f"has no namespace, and Pulumi refuses a stack file with a config key not written <namespace>:<name>; {fix}"


def _nested(full_key: str, value: Any) -> tuple[Problem, set[str]] | None:
    """Iluvatar's keys nested a level too deep, where Pulumi reads none of them (its stack file's config is one mapping
    of `<namespace>:<name>` keys, sdk v3.272.0 go/common/resource/config/key.go ParseKey): a `config:` inside `config:`
    (the project file's spelling pasted in), or the namespace as a key of its own (`iluvatar:` then `network:` under it).
    The problem, with the fix for this form, and the sections the user meant."""
    if ":" in full_key or not isinstance(value, Mapping) or not value:
        return None
    keys = [str(k) for k in value]
    if full_key == "config":
        ours = [k for k in keys if k.partition(":")[0] == NAMESPACE]
        listed = ", ".join(ours or keys)
        return (
            Problem(
                full_key,
                f"is a config: inside config:, and Pulumi reads only the stack file's top config:, so nothing under it is read; "
                f"move its keys ({listed}) one level up, under the first config:",
            ),
            {k.partition(":")[2] for k in ours},
        )
    if full_key in ORDER:
        return None  # a section without its namespace (`storage:`): the generic message says `iluvatar:storage`
    ours = [k for k in keys if k in ORDER]
    # The namespace as written, or misspelt (`Iluvatar`, `iluvatr`), or another name holding only Iluvatar's sections.
    if difflib.SequenceMatcher(None, full_key.lower(), NAMESPACE).ratio() >= 0.75 or len(ours) == len(keys):
        written = ", ".join(f"{NAMESPACE}:{k}" for k in keys)
        return (
            Problem(
                full_key,
                f"holds its keys nested under the namespace, and Pulumi reads a config key only as <namespace>:<name> on one line; "
                f"write {written} at the top of config:",
            ),
            set(ours),
        )
    return None


def _other_namespace(full_key: str, ns: str, key: str) -> list[credentials.Found]:
    """A key outside `iluvatar:` that nothing reads and the user meant for Iluvatar: a misspelt namespace (`iluvatr:`,
    `Ilúvatar:`), or a credential in a provider's own namespace (`cloudflare:apiToken`). Pulumi's own keys and other
    programs' namespaces are left to Pulumi."""
    if not key and ":" not in full_key:
        return [credentials.Found(Problem(full_key, _no_namespace(full_key)), None)]
    close = ns.lower() == NAMESPACE or difflib.SequenceMatcher(None, ns.lower(), NAMESPACE).ratio() >= 0.75
    if not close and ns not in PROVIDER_NAMESPACES and ns != "pulumi" and (key in ORDER or key in SECRETS):
        # Iluvatar's own key under another namespace (the stack's or the project's name, `homelab:monitoring`).
        return [
            credentials.Found(
                Problem(full_key, f"is in the namespace {ns}, which nothing reads, so the whole key is dropped; did you mean {NAMESPACE}:{key}?"),
                None,
            )
        ]
    if ns == "pulumi" and key != DISABLE_DEFAULT_PROVIDERS and difflib.SequenceMatcher(None, key, DISABLE_DEFAULT_PROVIDERS).ratio() >= 0.8:
        return [
            credentials.Found(
                Problem(
                    full_key,
                    f"is not a key the engine reads, so it is dropped and default providers stay on; did you mean pulumi:{DISABLE_DEFAULT_PROVIDERS}?",
                ),
                None,
            )
        ]
    if close and ns != NAMESPACE:
        known = f"; did you mean {NAMESPACE}:{key}?" if key in ORDER else f" (its keys: {', '.join(ORDER)})"
        return [credentials.Found(Problem(full_key, f"is in the namespace {ns}, which nothing reads, so the whole key is dropped{known}"), None)]
    if ns in PROVIDER_NAMESPACES and credentials.credential_key(key):
        dest = credentials.top_level(f"{ns}{key[:1].upper()}{key[1:]}", {})
        where = f"; {dest.what} goes in the secret {dest.path}: remove it and run {dest.commands}" if dest is not None else "; remove it"
        return [
            credentials.Found(
                Problem(
                    full_key,
                    f"is the {ns} provider's own key, which only a default provider reads, and every provider here is explicit "
                    f"(pulumi:disable-default-providers){where}",
                ),
                dest,
            )
        ]
    return []


def _zone(
    values: Mapping[str, Any],
    network: BaseModel | None,
    ainur: BaseModel | None,
    arda: BaseModel | None,
    nodes: Sequence[tuple[int, Node]],
    apps: Sequence[tuple[int, App]],
    edge: BaseModel | None,
    identity: BaseModel | None,
    gitops: BaseModel | None,
) -> dict[str, IPv4Address]:
    """The internal zone's records (plans.zone.records) as the plan would make them of the sections read, or none when a
    section they are made of is broken (its own problem refuses the stack) or two of its names clash (refused by the
    apps' and identity's rules)."""
    broken = any(key in values and not isinstance(model, BaseModel) for key, model in (("ainur", ainur), ("identity", identity), ("gitops", gitops)))
    if broken or not isinstance(network, Network) or not isinstance(arda, Arda) or not isinstance(edge, Edge):
        return {}
    stack = StackConfig.model_construct(
        network=network,
        ainur=ainur if isinstance(ainur, Ainur) else None,
        arda=arda,
        nodes=tuple(n for _, n in nodes),
        apps=tuple(a for _, a in apps),
        edge=edge,
        identity=identity if isinstance(identity, Identity) else None,
        gitops=gitops if isinstance(gitops, GitOps) else None,
    )
    try:
        return zone_plan.records(stack)
    except ValueError:
        return {}


def _free_beside(network: Network, taken: Taken, given: Collection[IPv4Address]) -> IPv4Address | None:
    """The LAN's first free address (stacks.rules.free_address) that is none of `given`, the ones other messages offered."""
    return free_address(network, dataclasses.replace(taken, addresses=taken.addresses | frozenset(given)))


def _written_categories(gitops: Any) -> tuple[str, ...]:
    """The categories a gitops section that did not parse lists, as written: a mistake elsewhere in the section (its
    Argo CD version) is said at its own key, and must not also refuse every app of a category the section adds."""
    categories = gitops.get("categories") if isinstance(gitops, Mapping) else None
    return tuple(c for c in categories if isinstance(c, str)) if isinstance(categories, list) else ()


def _section(values: Mapping[str, Any], key: str, problems: list[Problem]) -> BaseModel | None:
    model = SECTIONS[key].model
    if values.get(key) is None or model is None:
        return None  # left out, or left blank (said by parse_stack)
    return _validate(model, values[key], f"{NAMESPACE}:{key}", problems)


def _validate(model: type[BaseModel], value: Any, path: str, problems: list[Problem]) -> BaseModel | None:
    if not isinstance(value, Mapping):
        problems.append(Problem(path, f"{show(value)} is not a mapping of keys to values"))
        return None
    try:
        return model.model_validate(value)
    except ValidationError as e:
        problems.extend(_translate(model, e, path))
        return None


def _access_groups(remote: RemoteAccess | None) -> dict[str, list[str]]:
    """Each group remoteAccess.access names, with the keys that name it: a fix of the group's spelling at identity.groups
    names them too (stacks.identity)."""
    found: dict[str, list[str]] = {}
    for j, grant in enumerate(remote.access if remote is not None else ()):
        found.setdefault(grant.group, []).append(f"remoteAccess.access[{j}].group")
    return found


def _bmc_addresses(value: Any) -> list[str]:
    """The BMC addresses the node entries write (power.bmc.address), each once, those of entries that did not parse
    included: a password's fix names them whatever else is wrong with the entry."""
    found: list[str] = []
    for item in value if isinstance(value, list) else ():
        power = item.get("power") if isinstance(item, Mapping) else None
        bmc = power.get("bmc") if isinstance(power, Mapping) else None
        address = bmc.get("address") if isinstance(bmc, Mapping) else None
        try:
            found.append(str(IPv4Address(str(address))))
        except ValueError:
            continue  # no address, or not one: said at the entry, and no command can name it
    return list(dict.fromkeys(found))


def _nodes(value: Any, problems: list[Problem]) -> tuple[list[tuple[int, Node]], bool]:
    if value is None:
        return [], False
    if not isinstance(value, list):
        problems.append(Problem(f"{NAMESPACE}:nodes", f"{show(value)} is not a list of machines"))
        return [], False
    nodes: list[tuple[int, Node]] = []
    for i, item in enumerate(value):
        node = _validate(Node, item, f"{NAMESPACE}:nodes[{i}]", problems)
        if isinstance(node, Node):
            nodes.append((i, node))
    return nodes, len(nodes) == len(value)


def _pool_owners(
    network: Network | None, edge: Edge | None, ainur_set: bool, logs: Logs | None, monitoring_set: bool, has_apps: bool
) -> list[tuple[IPv4Address, str]]:
    """The pool addresses the stack's own Services take, as the address table names them: the gateways, the LAN
    resolver (without the Ainur) and the log store's LAN address (with the Ainur and logs on)."""
    if network is None or edge is None or network.load_balancer_pool.start > network.load_balancer_pool.end:
        return []
    found = edge_addresses(network.load_balancer_pool, edge)
    if not resolver_needed(ainur_set, has_apps):
        del found["resolver"]
    out = [(ip, f"the edge's {name} address") for name, ip in found.items()]
    if ainur_set and logs is not None and logs_rules.enabled(logs, monitoring_set):
        # Named as the stack has it: a stack without logs.address holds the default, which the user never wrote.
        written = app_rules.LOGS_ADDRESS_WRITTEN
        if logs.address is None:
            written = "the log store's LAN address (the pool's fourth from the top, taken when logs.address is not set)"
        out.append((logs_rules.address(logs, network), written))
    return out


def _apps(value: Any, problems: list[Problem]) -> list[tuple[int, App]]:
    if value is None:
        return []
    if not isinstance(value, list):
        problems.append(Problem(f"{NAMESPACE}:apps", f"{show(value)} is not a list of apps"))
        return []
    apps: list[tuple[int, App]] = []
    for i, item in enumerate(value):
        app = _validate(App, item, f"{NAMESPACE}:apps[{i}]", problems)
        if isinstance(app, App):
            apps.append((i, app))
    return apps


def _translate(model: type[BaseModel], error: ValidationError, base: str) -> list[Problem]:
    """Pydantic's errors, rewritten as Iluvatar problems with config paths and plain words."""
    out: list[Problem] = []
    errors = error.errors(include_url=False)
    inner = [_config_loc(e) for e in errors]
    # A misspelled key (extra) and the key it stands for (missing) are one mistake: say "did you mean".
    meant = set()
    for err in errors:
        if err["type"] == "extra_forbidden":
            loc = _config_loc(err)
            closest = _suggest(model, loc)
            if closest is not None:
                meant.add((*loc[:-1], *closest.split(".")[:1]))
    for err in errors:
        loc = _config_loc(err)
        if err["type"] == "too_short" and any(len(o) > len(loc) and o[: len(loc)] == loc for o in inner):
            continue  # a list emptied by its own broken items: the items' errors say why
        if err["type"] == "missing" and loc in meant:
            continue
        path = base + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)
        out.append(Problem(path, _plain(model, err)))
    return out


def _config_loc(err: Any) -> tuple[Any, ...]:
    """An error's location as config keys: union tags such as `<selector>` (stacks.model.InstallDisk) are not keys,
    nor pydantic's `[key]` after a mapping's key that failed (arda.kernelArgs: the path names the key already)."""
    return tuple(p for p in err["loc"] if not (isinstance(p, str) and (p.startswith("<") or p == "[key]")))


# What each Tolkien role is, said beside it where a role is refused (a newcomer knows the words, not the names).
ROLE_MEANINGS = {
    "valar": "an Ainur Pi, k3s server",
    "maiar": "an Ainur Pi, k3s agent",
    "valinor": "an Arda control plane",
    "istari": "an Arda worker",
}
# The words other tools use for a value these keys name otherwise (uname's machine names; Kubernetes' and Talos's
# roles): the fix is the name here.
OTHER_NAMES = {
    "x86_64": "amd64",
    "x86-64": "amd64",
    "aarch64": "arm64",
    "master": "valinor",
    "controlplane": "valinor",
    "control-plane": "valinor",
    "worker": "istari",
}


def _plain(model: type[BaseModel], err: Any) -> str:
    """One pydantic error in the user's words: what was written, and what the key takes instead."""
    kind, value, msg, ctx = err["type"], err.get("input"), err["msg"], err.get("ctx") or {}
    loc = _config_loc(err)
    if value is None and "input" in err and kind not in ("missing", "extra_forbidden"):
        return _blank(model, loc, kind)
    if kind == "value_error":
        return str(msg).removeprefix("Value error, ")
    if kind == "missing":
        # What the key takes, from the schema editors complete it with (its description and example), so the fix is here.
        what = _field_schema(model, loc)
        listed = "description" not in what and isinstance(what.get("items"), dict)
        what = what["items"] if listed else what
        example = (what.get("examples") or [None])[0]
        example = [example] if listed and example is not None else example
        described = str(what.get("description", "")).rstrip(".")
        # A model's docstring starts with a capital; in the message it follows a colon.
        described = described[:1].lower() + described[1:] if described[1:2].islower() else described
        said = ("a list, each " if listed and described else "") + described
        return "is required" + (f": {said}" if said and example is None else f": {said}, e.g. {show(example)}" if said else "")
    if kind == "extra_forbidden":
        allowed = _allowed_keys(model, loc[:-1])
        said = f"is not a known key{_did_you_mean(_suggest(model, loc))} (known: {', '.join(allowed)})"
        if str(loc[-1]) in SECTIONS:
            # A section written inside another (logs under monitoring, as one page of the docs reads them together): the
            # key it stands for is the top-level one of that name.
            return f"{said}; {loc[-1]} is a section of its own, {NAMESPACE}:{loc[-1]}: move it out, to the top level of config"
        return said
    if kind == "literal_error":
        options = str(msg).removeprefix("Input should be ").replace("'", "").replace(" or ", ", ").split(", ")
        expected = ", ".join(f"{o} ({ROLE_MEANINGS[o]})" if o in ROLE_MEANINGS else o for o in options)
        meant = OTHER_NAMES.get(value.lower()) if isinstance(value, str) else None
        return f"{show(value)} is not one of: {expected}" + (f"; write {meant}, its name here" if meant in options else "")
    if kind in ("tuple_type", "list_type", "set_type"):
        if isinstance(value, Mapping):
            return f"{show(value)} is a mapping, but this key takes a list"
        return f"{show(value)} is a single value, but this key takes a list: write [{show(value)}], or one `- item` a line"
    if kind in ("model_type", "model_attributes_type", "dict_type", "mapping_type"):
        keys = _allowed_keys(model, loc)
        expected = f" (keys: {', '.join(keys)})" if keys else ""
        if keys == ["start", "end"] and isinstance(value, str) and value.count("-") == 1:
            # A range as a router's page writes it (`a-b`): the fix is the same range in this key's form.
            start, end = (part.strip() for part in value.split("-"))
            expected += f": write {{start: {start}, end: {end}}}"
        elif len(keys) == 1 and isinstance(value, (str, int, float)) and not isinstance(value, bool):
            # A value where its one key goes (`ntfy: <url>` for `ntfy: {url: <url>}`): the fix is that key around it.
            expected += f": write {{{keys[0]}: {show(value)}}}"
        return f"{show(value)} is not a mapping of keys to values{expected}"
    if kind == "too_short":
        least = ctx.get("min_length", 1)
        return f"{show(value)} is empty; it needs at least {'one item' if least == 1 else f'{least} items'}"
    if kind == "string_too_short":
        return f"{show(value)} is empty; write a value or leave the key out"
    if kind == "too_long":
        return f"{show(value)} has more than {ctx.get('max_length')} item(s)"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"{show(value)} is not a whole number"
    if kind in ("float_parsing", "float_type"):
        return f"{show(value)} is not a number"
    if kind in ("bool_parsing", "bool_type"):
        return f"{show(value)} is not true or false"
    if kind in ("string_type", "string_sub_type"):
        return f"{show(value)} is not text; quote it"
    if kind in ("greater_than_equal", "greater_than"):
        bound = ctx.get("ge", ctx.get("gt"))
        return (
            f"{show(value)} is too small: the smallest allowed is {bound}"
            if kind == "greater_than_equal"
            else f"{show(value)} must be more than {bound}"
        )
    if kind in ("less_than_equal", "less_than"):
        bound = ctx.get("le", ctx.get("lt"))
        return (
            f"{show(value)} is too large: the largest allowed is {bound}" if kind == "less_than_equal" else f"{show(value)} must be less than {bound}"
        )
    return f"{show(value)}: {str(msg)[0].lower()}{str(msg)[1:]}"


def _blank(model: type[BaseModel], loc: tuple[Any, ...], kind: str) -> str:
    """A key (or a list's item) YAML read as null, written with nothing after its colon (its items commented out, its
    value not yet filled in): nothing to quote or to wrap in a list, so the fix is the key's absence, an empty list, or a
    value."""
    if loc and isinstance(loc[-1], int):
        return "null (a `-` with nothing, or null, after it) is not an item; remove that line, or write the item"
    said = "null (the key left blank, or written null)"
    field = _field_info(model, loc)
    optional = field is not None and not field.is_required()
    if kind in ("tuple_type", "list_type", "set_type"):
        least = int(_field_schema(model, loc).get("minItems", 0))
        if least:
            items = "one item" if least == 1 else f"{least} items"
            return f"{said} is no list, and this key takes at least {items}: write one `- item` a line" + (", or remove the key" if optional else "")
        return f"{said} is no list: write [] for none" + (", or remove the key" if optional else "") + ", or one `- item` a line"
    if optional:
        assert field is not None
        default = field.get_default(call_default_factory=True)
        shown = f" ({show(default)})" if isinstance(default, (str, int, float)) else ""
        return f"{said} is no value; remove the key for its default{shown}, or write a value"
    what = _field_schema(model, loc)
    example = (what.get("examples") or [None])[0]
    if what.get("enum"):
        return f"{said} is no value, and this key is required; write one of: {', '.join(str(o) for o in what['enum'])}"
    return f"{said} is no value, and this key is required; write one" + (f", e.g. {show(example)}" if example is not None else "")


# What a list section's items are called, and what each is.
_ITEMS: dict[str, tuple[str, type[BaseModel]]] = {"nodes": ("machines", Node), "apps": ("apps", App)}


def _needed_by(key: str, raw: Mapping[str, Any]) -> str | None:
    """The key of another section, as written, that needs section `key`: removing a blank section's line would only be
    refused next by that section's rule (stacks.edge for Cloudflare, stacks.data for an app's backup, stacks.remote_access
    for the groups of remoteAccess.access)."""
    if key == "cloudflare" and isinstance(edge := raw.get(f"{NAMESPACE}:edge"), Mapping):
        if edge.get("publicDns") == "cloudflare":
            return "edge.publicDns: cloudflare"
        if edge.get("publicIngress") == "cloudflare-tunnel":
            return "edge.publicIngress: cloudflare-tunnel"
    if key == "backup" and isinstance(apps := raw.get(f"{NAMESPACE}:apps"), list):
        backed = [i for i, app in enumerate(apps) if isinstance(app, Mapping) and app.get("backup")]
        if backed:
            return f"apps[{backed[0]}].backup"
    if key == "identity" and isinstance(remote := raw.get(f"{NAMESPACE}:remoteAccess"), Mapping) and remote.get("access"):
        return "remoteAccess.access"
    return None


def _blank_section(section: Section, needed_by: str | None = None) -> str:
    """A top-level section YAML read as null (`iluvatar:nodes:` with nothing after the colon): what it must hold, or
    that the line goes when the section is optional and nothing else in the stack needs it (`needed_by`)."""
    said = "null (the section left blank, or written null) is empty"
    if section.model is None:
        what, item = _ITEMS[section.key]
        needs = ", ".join(f.alias or n for n, f in item.model_fields.items() if f.is_required())
        write = f"write the {what} indented under it, one `- name: ...` item each with {needs}"
        if section.required:
            return f"{said}, and the section is required; {write}"
        return f"{said}; remove the line (or write []) for no {what}, or {write}"
    required = [f.alias or n for n, f in section.model.model_fields.items() if f.is_required()]
    keys = f"(required: {', '.join(required)})" if required else f"(keys: {', '.join(f.alias or n for n, f in section.model.model_fields.items())})"
    write = f"write its keys indented under it {keys}"
    if section.required:
        return f"{said}, and the section is required; {write}"
    if needed_by is not None:
        return f"{said}, and {needed_by} needs it; {write}"
    if section.defaults_when_absent:
        return f"{said}; remove the line for its defaults, or {write}"
    if not required:
        return f"{said}; remove the line to leave it out, or write {{}} for it with its defaults, or {write}"
    return f"{said}; remove the line to leave it out, or {write}"


def _field_info(model: type[BaseModel], loc: tuple[Any, ...]) -> Any:
    """The pydantic field at `loc` inside `model` (through lists and unions), or None."""
    current: Any = model
    found: Any = None
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        found = next((f for f in current.model_fields.values() if f.alias == part), None)
        if found is None:
            return None
        current = _innermost_model(found.annotation)
    return found


@functools.cache
def _schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema(by_alias=True)


def _field_schema(model: type[BaseModel], loc: tuple[Any, ...]) -> dict[str, Any]:
    """The JSON schema of the key at `loc` inside `model` (through lists, references and a union's first form), or {}."""
    root = _schema(model)
    defs = root.get("$defs", {})
    current: Any = root
    for part in loc:
        while isinstance(current, dict) and ("$ref" in current or "anyOf" in current or "oneOf" in current or "items" in current):
            if "$ref" in current:
                current = defs.get(str(current["$ref"]).rsplit("/", 1)[-1], {})
            elif isinstance(part, int) and "items" in current:
                break
            elif "items" in current:
                current = current["items"]
            else:
                forms: list[Any] = current.get("anyOf") or current.get("oneOf") or []
                current = next((o for o in forms if o.get("type") != "null"), {})
        if isinstance(part, int):
            current = current.get("items", {}) if isinstance(current, dict) else {}
            continue
        current = current.get("properties", {}).get(part, {}) if isinstance(current, dict) else {}
    while isinstance(current, dict) and "$ref" in current:
        current = defs.get(str(current["$ref"]).rsplit("/", 1)[-1], {})
    if isinstance(current, dict) and "description" not in current:
        alternatives: list[Any] = current.get("anyOf") or current.get("oneOf") or []
        current = next((o for o in alternatives if o.get("type") != "null"), current)
    return current if isinstance(current, dict) else {}


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The camelCase keys accepted at `loc` inside `model`, for 'did you mean' hints."""
    current: Any = model
    for part in loc:
        if isinstance(part, int) or not (isinstance(current, type) and issubclass(current, BaseModel)):
            continue
        field = next((f for f in current.model_fields.values() if f.alias == part), None)
        if field is None:
            return []
        current = _innermost_model(field.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or name for name, f in current.model_fields.items()]
    return []


def _suggest(model: type[BaseModel], loc: tuple[Any, ...]) -> str | None:
    """The key an unknown key at `loc` stands for: one of a key's own keys by that name (`bmc` on a machine is
    `power.bmc`), else the closest known key."""
    word = str(loc[-1])
    allowed = _allowed_keys(model, loc[:-1])
    if word in allowed:
        return None
    for key in allowed:
        inner = _allowed_keys(model, (*loc[:-1], key))
        if word in inner or word.lower() in (k.lower() for k in inner):
            return f"{key}.{next(k for k in inner if k.lower() == word.lower())}"
    return _closest(word, allowed)


def _innermost_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _innermost_model(arg)
        if found is not None:
            return found
    metadata_origin = getattr(annotation, "__origin__", None)
    if isinstance(metadata_origin, type) and issubclass(metadata_origin, BaseModel):
        return metadata_origin
    return None


def _closest(word: str, choices: list[str]) -> str | None:
    close = difflib.get_close_matches(word, choices, n=1)
    return close[0] if close else None


def _did_you_mean(closest: str | None) -> str:
    return f"; did you mean {closest}?" if closest else ""


def _config_order(p: Problem) -> tuple[Any, ...]:
    key = p.path.split(":", 1)[-1].split(".")[0].split("[")[0]
    rank = ORDER.index(key) if key in ORDER else -1
    parts = tuple(int(s) if s.isdigit() else s for s in re.split(r"(\d+)", p.path))
    return (rank, parts)


# --- Stack files ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StackFile:
    """A `Pulumi.<stack>.yaml` as Pulumi reads it: config values and which of them are secure."""

    path: Path
    config: dict[str, Any]
    secret_keys: frozenset[str]
    secrets_manager: SecretsManager = field(default_factory=SecretsManager)
    # `environment:` imports Pulumi ESC environments, whose values reach the program as config (secrets too).
    imports_environment: bool = False

    @property
    def stack(self) -> str:
        return self.path.name.removeprefix("Pulumi.").rsplit(".", 1)[0]

    def parse(self, *, require_secrets: bool = False) -> StackConfig:
        return parse_stack(self.config, self.secret_keys, source=str(self.path), require_secrets=require_secrets)

    def unset_secrets(self) -> tuple[UnsetSecret, ...]:
        """The secrets this stack needs that the file does not set, in config order (none: every one is set).

        Raises StackConfigError when the stack has other problems: what it needs is known only of a valid inventory.
        """
        try:
            self.parse(require_secrets=True)
        except StackConfigError as e:
            if all(isinstance(p, UnsetSecret) for p in e.problems):
                return e.unset_secrets()
            raise StackConfigError([p for p in e.problems if not isinstance(p, UnsetSecret)], e.source) from None
        return ()

    def with_placeholders(self, unset: tuple[UnsetSecret, ...]) -> StackFile:
        """This stack file with a placeholder secret where each of `unset` goes: what an offline render runs on."""
        config = dict(self.config)
        for secret in unset:
            key, *under = secret.where
            if not under:
                config[key] = Secure()
                continue
            value = dict(config.get(key) or {}) if isinstance(config.get(key), dict) else {}
            config[key] = value
            for part in under[:-1]:
                value[part] = dict(value.get(part) or {}) if isinstance(value.get(part), dict) else {}
                value = value[part]
            value[under[-1]] = Secure()
        keys = self.secret_keys | {s.where[0] for s in unset}
        return StackFile(self.path, config, keys, self.secrets_manager, self.imports_environment)


_FastSafeLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _PulumiYamlLoader(_FastSafeLoader):  # type: ignore[misc]
    """YAML as Pulumi's Go reader (yaml.v3, YAML 1.2) sees it.

    PyYAML follows YAML 1.1, where `10:20:30:40:50:51` is a base-60 integer and `no` is
    false; Pulumi reads both as strings, so a MAC or a name would differ between the two.
    Duplicate keys are errors in Pulumi, so they are errors here too.
    """


_YAML11_ONLY = {"tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:timestamp"}
_PulumiYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in _YAML11_ONLY] for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_NUMBER_TAG = "tag:iluvatar:go-yaml-number"
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
# What yaml.v3 tries to read as a number: a plain scalar starting with a digit or a sign (its
# resolve table's 'D' and 'S' classes), and the special floats.
_NUMBERISH = re.compile(r"^[-+]?[0-9][0-9a-zA-Z_.:+-]*$")
_SPECIAL_FLOAT = re.compile(r"^(?:[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$")
_GO_FLOAT = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")
_INT64 = (-(2**63), 2**64 - 1)


def _go_int(text: str) -> int | None:
    """strconv.ParseInt(text, 0, 64) (or ParseUint): 0x, 0o, 0b prefixes and Go's leading-zero octal."""
    sign, digits = (-1, text[1:]) if text.startswith("-") else (1, text.removeprefix("+"))
    try:
        if digits[:2].lower() in ("0x", "0o", "0b"):
            value = int(digits, 0)
        elif len(digits) > 1 and digits.startswith("0"):
            value = int(digits[1:], 8)
        else:
            value = int(digits, 10)
    except ValueError:
        return None
    value *= sign
    return value if _INT64[0] <= value <= _INT64[1] else None


def _go_yaml_number(loader: Any, node: yaml.ScalarNode) -> object:
    """A plain scalar as yaml.v3 decodes it into an untyped value, as Pulumi reads stack config.

    A date stays a string (yaml.v3 keeps timestamps as text unless the target is a time); an
    integer is Go's (underscores dropped, a leading 0 meaning octal); a number that is neither,
    such as the MAC 000000000887, becomes a float; anything else stays the text as written.
    """
    text: str = loader.construct_scalar(node)
    if _SPECIAL_FLOAT.match(text):
        return float(text.replace(".", "", 1))  # -.inf -> -inf, .NaN -> NaN: Python's spelling
    plain = text.replace("_", "")
    if (as_int := _go_int(plain)) is not None:
        # A base prefix's text is lost in the decimal (serial: 0x05e81330 reads 99095344): kept for the messages.
        return YamlInt(as_int, text) if plain.lstrip("+-")[:2].lower() in ("0x", "0o", "0b") else as_int
    if _GO_FLOAT.match(plain):
        return float(plain)
    return text


_PulumiYamlLoader.add_implicit_resolver("tag:yaml.org,2002:bool", _BOOL, list("tTfF"))
_PulumiYamlLoader.add_implicit_resolver(_NUMBER_TAG, _NUMBERISH, list("-+0123456789"))
_PulumiYamlLoader.add_implicit_resolver(_NUMBER_TAG, _SPECIAL_FLOAT, list("-+."))
_PulumiYamlLoader.add_constructor(_NUMBER_TAG, _go_yaml_number)


def _no_duplicates(loader: Any, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {show(key)}", key_node.start_mark)
        seen.add(key)
    mapping: dict[Any, Any] = loader.construct_mapping(node)
    return mapping


_PulumiYamlLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def _secure_leaves(value: Any) -> Any:
    """A stack-file value with every `secure: v1:...` mapping, at any depth, as a Secure."""
    if isinstance(value, dict) and set(value) == {"secure"}:
        # Not text (`secure: [v1:...]`): shown as the file has it, in YAML's spelling; never ciphertext.
        return Secure(value["secure"] if isinstance(value["secure"], str) else show(value["secure"]))
    if isinstance(value, dict):
        # A Pi's serial keeps a base-prefixed number's text for its message (stacks.model._pi_serial); anywhere else
        # the number goes on as a plain int, which every YAML dumper (chart values, patches) can write.
        return {k: v if k == "serial" and isinstance(v, YamlInt) else _secure_leaves(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_secure_leaves(v) for v in value]
    return int(value) if isinstance(value, YamlInt) else value


def _has_secure(value: Any) -> bool:
    if isinstance(value, Secure):
        return True
    if isinstance(value, dict):
        return any(_has_secure(v) for v in value.values())
    return isinstance(value, list) and any(_has_secure(v) for v in value)


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_PulumiYamlLoader)  # noqa: S506 - a SafeLoader subclass


# A block mapping's `key: value` line whose plain value starts with a character YAML does not take there: `*` names an
# alias, `@` and `` ` `` are reserved (YAML 1.1 and 1.2, "c-indicator"), so a cron schedule (`*/30 * * * *`, `@daily`)
# left unquoted is no string.
_UNQUOTED = re.compile(r"^\s*(?:-\s+)?(?P<key>[^\s:#'\"{}\[\],][^:#]*?):\s+(?P<value>[*@`][^#]*?)\s*(?:#.*)?$")


def _unquoted(text: str, where: Any) -> str:
    """What to do about the YAML error at `where` when its line is `key: value` with a value YAML reads as no string."""
    lines = text.splitlines()
    if where is None or not 0 <= where.line < len(lines) or (m := _UNQUOTED.match(lines[where.line])) is None:
        return ""
    key, value = m.group("key"), m.group("value")
    return (
        f"; {key}'s value {value} starts with {value[0]}, which YAML does not take at the start of an unquoted value "
        f'(* names an alias, @ and ` are reserved): quote it, {key}: "{value}"'
    )


def read_stack_file(path: str | Path) -> StackFile:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StackFileError(f"{p}: no such stack file") from None
    except UnicodeDecodeError as e:
        with p.open("rb") as f:
            start = f.read(2)
        # Windows PowerShell 5.1's `>` and some editors write UTF-16, with a byte-order mark; `pulumi config set` writes
        # UTF-8, which every step after this reads.
        kind = "UTF-16 (it starts with a byte-order mark)" if start in (b"\xff\xfe", b"\xfe\xff") else f"not UTF-8 ({e.reason} at byte {e.start})"
        raise StackFileError(f"{p}: cannot read it: {kind}; save it as UTF-8, as `pulumi config set` writes it") from None
    except OSError as e:
        raise StackFileError(f"{p}: cannot read it ({e.__class__.__name__}: {e})") from None
    try:
        doc = load_yaml(text)
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        lines = text.splitlines()
        if where is not None and where.line < len(lines) and lines[where.line][where.column : where.column + 1] == "\t":
            problem += " (a tab: YAML indents with spaces only; replace the tab with spaces)"
        raise StackFileError(f"{p}: not valid YAML{at}: {problem}{_unquoted(text, where)}") from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict) or not isinstance(doc.get("config", {}), dict):
        raise StackFileError(f"{p}: not a Pulumi stack file (expected a mapping with a `config:` mapping)")
    config: dict[str, Any] = {}
    secure: set[str] = set()
    for key, value in (doc.get("config") or {}).items():
        config[str(key)] = _secure_leaves(value)
        if _has_secure(config[str(key)]):
            # As Pulumi reads it: a value holding any `secure:` leaf (`config set --secret --path`) is a secret.
            secure.add(str(key))
    manager = SecretsManager(
        **{field: str(doc[key]) for field, key in _MANAGER_KEYS.items() if isinstance(doc.get(key), str)},
    )
    return StackFile(p, config, frozenset(secure), manager, imports_environment=bool(doc.get("environment")))


# SecretsManager's fields, by the stack file's top-level key (workspace.ProjectStack's yaml tags).
_MANAGER_KEYS = {"provider": "secretsprovider", "encrypted_key": "encryptedkey", "encryption_salt": "encryptionsalt"}


def check_stack_settings(sf: StackFile) -> list[Problem]:
    """Engine settings a stack file must carry, beyond the `iluvatar:` keys."""
    key = "pulumi:disable-default-providers"
    disabled = sf.config.get(key)
    if not isinstance(disabled, list) or not ({"*", "kubernetes"} & {str(x) for x in disabled}):
        return [
            Problem(
                key,
                f"{show(disabled) if disabled is not None else 'unset'}: must list kubernetes (or *), "
                "so no resource ever lands on an ambient kubeconfig; "
                f"run `pulumi config set --path '{key}[0]' '*'`",
            )
        ]
    return []


def load_stack_file(path: str | Path, *, require_secrets: bool = False) -> StackConfig:
    """Read, check and parse a stack file; raises StackFileError or StackConfigError (`require_secrets`: see parse_stack)."""
    return validate_stack_file(read_stack_file(path), require_secrets=require_secrets)


def ciphertext_problems(sf: StackFile) -> list[Problem]:
    """The stack file's secrets whose ciphertext its secrets manager cannot open (secrets_rules.check_ciphertexts)."""
    manager = sf.secrets_manager
    # A file with no secrets manager of its own may be read with the state's (PULUMI_FALLBACK_TO_STATE_SECRETS_MANAGER),
    # which nothing here can see: its values are then not judged.
    if not manager.symmetric and secrets_rules.falls_back_to_state_manager():
        return []
    backend = secrets_rules.current_backend(project=sf.path.parent / "Pulumi.yaml")
    return secrets_rules.check_ciphertexts(sf.config, manager, backend)


def validate_stack_file(sf: StackFile, *, require_secrets: bool = False) -> StackConfig:
    """Check a stack file already read: engine settings, its secrets' ciphertext, and the whole iluvatar config."""
    settings = [*check_stack_settings(sf), *ciphertext_problems(sf)]
    try:
        # A stack that imports a Pulumi ESC environment may get its secrets from there: nothing here can tell which.
        config = sf.parse(require_secrets=require_secrets and not sf.imports_environment)
    except StackConfigError as e:
        raise StackConfigError([*settings, *e.problems], e.source) from None
    if settings:
        raise StackConfigError(settings, str(sf.path))
    return config


def _apps_written_with_ports(apps: object) -> list[str]:
    """The names of the stack file's apps that list ports, read from the file as written: an app refused for a mistake
    in its ports is still one that has them."""
    if not isinstance(apps, list):
        return []
    return [a["name"] for a in apps if isinstance(a, dict) and isinstance(a.get("name"), str) and isinstance(a.get("ports"), list) and a["ports"]]
