"""Identity config (`iluvatar:identity`): one login for Argo CD, Headlamp and kubectl, and the local CA's page.

Dex runs on the Ainur (they outlive Arda, and Argo CD's login depends on it) behind one LAN address,
the Ainur's front door (`ip`), which also serves the Ainur's Argo CD and a page with the local CA.
People sign in through one connector (GitHub, an LDAP directory, or one static admin), whose secret
is the Pulumi secret `iluvatar:identityConnectorSecret`; each of the connector's groups the stack
binds gets a ClusterRole on both clusters and the matching Argo CD role. The model is
`stacks.model.Identity`; this module holds its rules, each naming its config path.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Container, Iterator, Mapping, Sequence
from ipaddress import IPv4Address

from stacks.apps import app_path, under
from stacks.credentials import CONNECTOR_SECRETS
from stacks.errors import Problem, UnsetSecret
from stacks.model import App, Identity, Network, Node
from stacks.rules import _static_address, node_path

IDENTITY = "iluvatar:identity"
SECRET = "identityConnectorSecret"  # noqa: S105 - the secret's config key, not a secret
# The ClusterRoles both clusters have from their first start (Kubernetes' user-facing roles): a
# binding to any other would give its group nothing, and say nothing about it.
CLUSTER_ROLES = ("cluster-admin", "admin", "edit", "view")
# Each host's key under identity.hosts and its default first label in network.domain.
HOSTS = {"dex": ("dex", "dex"), "ca": ("ca", "ca"), "argocd": ("argocd", "argocd"), "argocd_ainur": ("argocdAinur", "argocd-ainur")}
# What each connector needs besides its secret: (field, config key, what it is).
NEEDS = {
    "github": (("client_id", "clientId", "the GitHub OAuth app's client id"), ("orgs", "orgs", "the organisations whose members may sign in")),
    "ldap": (
        ("host", "host", "the directory, host:port (LDAPS)"),
        ("bind_dn", "bindDn", "who Dex binds as to search"),
        ("user_base_dn", "userBaseDn", "where the users are"),
        ("group_base_dn", "groupBaseDn", "where the groups are"),
    ),
    "static": (("email", "email", "the admin's e-mail, what they sign in with"),),
}
SECRET_IS = {
    "github": "the OAuth app's client secret",
    "ldap": "the bind password",
    # htpasswd prints `:<hash>` (an empty user name, then the hash): the command that sets it keeps the hash alone.
    "static": "the admin's bcrypt password hash, never the password itself",
}


def hosts(identity: Identity, domain: str) -> dict[str, str]:
    """Each name people reach by field (dex, ca, argocd, argocd_ainur): the stack's, else `<label>.<domain>`."""
    return {field: getattr(identity.hosts, field) or f"{label}.{domain}" for field, (_, label) in HOSTS.items()}


def published(gitops_set: bool, ainur_set: bool) -> tuple[str, ...]:
    """The fields of identity's names that the Ainur's DNS answers (plans.identity.lan_records): Dex's and the CA page's
    always, an Argo CD's only where Argo CD runs (plans.identity.argocd_clusters: Arda's with GitOps, the Ainur's with
    GitOps and the Ainur). A name no record holds is nobody's: a machine, an app or a base domain may take it."""
    return ("dex", "ca", *(("argocd",) if gitops_set else ()), *(("argocd_ainur",) if gitops_set and ainur_set else ()))


def zone_names(identity: Identity | None, domain: str, gitops_set: bool, ainur_set: bool) -> dict[str, str]:
    """identity's names in the internal zone (plans.identity.lan_records), with what owns each."""
    if identity is None:
        return {}
    shown = published(gitops_set, ainur_set)
    return {host: f"{NAMED[field]} name (identity.hosts.{HOSTS[field][0]})" for field, host in hosts(identity, domain).items() if field in shown}


def check(
    identity: Identity | None,
    identity_set: bool,
    ainur_set: bool,
    gitops_set: bool,
    network: Network | None,
    taken: Mapping[IPv4Address, str],
    apps: Sequence[tuple[int, App]],
    zone_names: Mapping[str, str],
    secrets: Collection[str],
    free_of: Container[IPv4Address] = (),
    nodes: Sequence[tuple[int, Node]] = (),
    also: Mapping[str, Sequence[str]] | None = None,
) -> list[Problem]:
    """Every identity rule. `taken` maps the LAN's static addresses (machines, VIPs) to what holds them;
    `zone_names` the internal zone's names that are not apps to what owns them; `free_of`: what an address suggested
    as free must not be (the whole address table and the lent ranges, stacks.rules.Taken), `taken`'s keys if empty.
    `also` maps a group to the other keys that name it (remoteAccess.access[].group), which a fix of its spelling
    names too: fixed at identity.groups alone, the group would be refused there next."""
    secret = f"iluvatar:{SECRET}"
    if identity is None:
        if not identity_set and SECRET in secrets:
            return [Problem(secret, f"is set, but {IDENTITY} is not; set {IDENTITY}, or remove the secret")]
        return []
    out: list[Problem] = []
    if not ainur_set:
        out.append(
            Problem(
                IDENTITY,
                "needs iluvatar:ainur: Dex runs on the Ainur, which outlive Arda (every login, Argo CD's included, depends on it)",
            )
        )
    if network is not None:
        out += _address(identity, network, taken, free_of or frozenset(taken))
        out += _hosts(identity, network, apps, zone_names, nodes, published(gitops_set, ainur_set))
    out += _connector(identity, secrets)
    out += _groups(identity, also or {})
    out += _headlamp(identity, gitops_set, apps)
    return out


def _address(identity: Identity, network: Network, taken: Mapping[IPv4Address, str], free_of: Container[IPv4Address]) -> Iterator[Problem]:
    path = f"{IDENTITY}.ip"
    yield from _static_address(path, identity.ip, network, free_of)
    if identity.ip in taken:
        yield Problem(path, f"{identity.ip} is {taken[identity.ip]}; the front door needs an address of its own")


# What each of identity's names is, as a message names it.
NAMED = {"dex": "Dex's (the sign-in's)", "ca": "the CA page's", "argocd": "Arda's Argo CD's", "argocd_ainur": "the Ainur's Argo CD's"}


def _hosts(
    identity: Identity,
    network: Network,
    apps: Sequence[tuple[int, App]],
    zone_names: Mapping[str, str],
    nodes: Sequence[tuple[int, Node]] = (),
    shown: Collection[str] = tuple(HOSTS),
) -> Iterator[Problem]:
    """identity's names: each in the internal zone, and each the zone publishes (`shown`, `published`) no other's."""
    domain = network.domain
    app_hosts = {a.host: f"apps[{i}].host ({a.name})" for i, a in apps}
    # The keys a user wrote that hold a name of the zone: an app's host, a machine's name (its record, plans.network).
    written = {a.host: (app_path(i, "host"), "host") for i, a in apps}
    written.update({f"{n.name}.{domain}": (node_path(i, "name"), "name") for i, n in nodes})
    seen: dict[str, str] = {}
    for field, host in hosts(identity, domain).items():
        key = HOSTS[field][0]
        path = f"{IDENTITY}.hosts.{key}"
        if field not in shown and getattr(identity.hosts, field) is None:
            continue  # no record holds the default, and no key was written to check
        if getattr(identity.hosts, field) is None and host in written and under(host, domain):
            # The name is identity's default, a key absent from the stack: the clash is said at the key the user wrote,
            # with identity's key as the other way out.
            where, what = written[host]
            full = "" if what == "host" else f"{host}, "
            yield Problem(
                where,
                f"{host if what == 'host' else host.removesuffix('.' + domain)} is already {NAMED[field]} name in the internal zone "
                f"({full}identity.hosts.{key} by default); pick another {what}, or set identity.hosts.{key} to another name",
            )
            seen.setdefault(host, f"identity.hosts.{key}")
            continue
        if not under(host, domain) or host == domain:
            yield Problem(
                path,
                f"{host} is outside the internal zone network.domain {domain}, which the Ainur's DNS answers for; write a name "
                f"in it, e.g. {HOSTS[field][1]}.{domain}, or leave it unset (that name is the default)",
            )
            continue
        if field == "argocd" and host.removesuffix(f".{domain}").count(".") > 0:
            yield Problem(
                path,
                f"{host} is more than one label below {domain}; envoy-internal's wildcard certificate *.{domain} covers names one label below it",
            )
        clash = zone_names.get(host) or app_hosts.get(host) or seen.get(host)
        if clash is not None and field in shown:
            yield Problem(path, f"{host} is already {clash} in the internal zone; pick another name")
        seen.setdefault(host, f"identity.hosts.{key}")


def _connector(identity: Identity, secrets: Collection[str]) -> Iterator[Problem]:
    connector = identity.connector
    path = f"{IDENTITY}.connector"
    for field, key, what in NEEDS[connector.type]:
        if not getattr(connector, field):
            yield Problem(f"{path}.{key}", f"is required for type {connector.type}: {what}")
    own = {field for field, _, _ in NEEDS[connector.type]}
    others = {field: key for kind, needs in NEEDS.items() if kind != connector.type for field, key, _ in needs if field not in own}
    for field, key in others.items():
        if getattr(connector, field):
            yield Problem(f"{path}.{key}", f"is set, but type is {connector.type}, which does not use it")
    if connector.type == "ldap" and connector.host is not None:
        yield from _ldap_host(f"{path}.host", connector.host)
    if connector.type == "ldap":
        yield from _base_dns(path, connector.user_base_dn, connector.group_base_dn)
    if connector.type == "github":
        for i, org in enumerate(connector.orgs):
            yield from _org(f"{path}.orgs[{i}]", org)
    if connector.groups and connector.type != "static":
        yield Problem(f"{path}.groups", f"is set, but type is {connector.type}, whose groups come from {connector.type} itself")
    if SECRET not in secrets:
        secret = f"iluvatar:{SECRET}"
        yield UnsetSecret(
            secret,
            f"is required: connector {connector.type} needs {SECRET_IS[connector.type]}; run `pulumi config set --secret {secret} "
            f"{CONNECTOR_SECRETS[connector.type][1]}`",
            (secret,),
        )


def _groups(identity: Identity, also: Mapping[str, Sequence[str]] | None = None) -> Iterator[Problem]:
    seen: dict[str, int] = {}
    static = identity.connector.groups if identity.connector.type == "static" else None
    groups = [b.group for b in identity.groups]
    for i, binding in enumerate(identity.groups):
        path = f"{IDENTITY}.groups[{i}]"
        orgs = [org for org in identity.connector.orgs if GITHUB_LOGIN.match(org)]
        if identity.connector.type == "github" and orgs:
            # Against the orgs written as logins: one written as a URL is said once, at its own path.
            yield from _github_group(f"{path}.group", binding.group, identity.connector.orgs, groups, (also or {}).get(binding.group, ()))
        if binding.cluster_role not in CLUSTER_ROLES:
            yield Problem(
                f"{path}.clusterRole",
                f"{binding.cluster_role} is not a ClusterRole both clusters have; pick one of {', '.join(CLUSTER_ROLES)}",
            )
        if binding.group in seen:
            yield Problem(f"{path}.group", f"{binding.group} is already groups[{seen[binding.group]}].group")
        seen.setdefault(binding.group, i)
        if static is not None and binding.group not in static:
            yield Problem(
                f"{path}.group", f"{binding.group} is not one of the static admin's groups (connector.groups: {', '.join(static) or 'none'})"
            )


def team_slug(name: str) -> str:
    """A GitHub team's slug from its name, as GitHub makes it: lower-case, each run of other characters one '-'."""
    return re.sub(r"[^a-z0-9_-]+", "-", name.lower()).strip("-")


def _github_group(path: str, group: str, written: Sequence[str], groups: Sequence[str] = (), also: Sequence[str] = ()) -> Iterator[Problem]:
    """A group Dex's GitHub connector never gives: with `orgs` listed (as plans.identity renders it, teamNameField: slug),
    a user's groups are `<org>:<team slug>` for each of their teams in those orgs, the org as the config spells it
    (dex v2.45.1, connector/github/github.go:331 formatTeamName, :343-376 groupsForOrgs, :722-733 teamGroupClaims);
    never the organisation alone, nor a team's display name, nor an org the connector does not list.

    `written` is connector.orgs as written (an entry that is no login is said at its own key), `groups` every group
    identity binds, `also` the other keys holding this group (remoteAccess.access[].group): each fix names them, so that
    applying it as written leaves no key with the old spelling.

    An org spelt in another case than connector.orgs: GitHub finds an organisation whatever the case of its URL, so the
    membership check passes (github.go:655, GET /orgs/<org>/members/<user>), but Dex keeps a user's teams only where the
    team's organisation login, as GitHub spells it, equals connector.orgs' entry letter for letter (github.go:709,
    `t.Org.Login == orgName`) and names the group with that entry (:369). So connector.orgs must be the login's own
    spelling, and the groups must spell the org as connector.orgs does: which of the two spellings is GitHub's, the
    stack cannot tell, so both fixes are offered (the entry's, in one key, when every group spells the org alike)."""
    orgs = [org for org in written if GITHUB_LOGIN.match(org)]
    org, colon, team = group.partition(":")
    listed = ", ".join(orgs)
    there = _also(also)
    if not colon:
        yield Problem(
            path,
            f"{group} is not a group Dex gives a GitHub user: their groups are <org>:<team slug>, one for each of their teams in "
            f"connector.orgs ({listed}), never an organisation alone; bind a team, e.g. {orgs[0]}:<team slug>{there}",
        )
    elif org not in orgs:
        near = next((o for o in orgs if o.lower() == org.lower()), None)
        hint = f"; add {org} to connector.orgs, or bind a team of {listed}{there}"
        if near is not None:
            k = written.index(near)
            spellings = {g.partition(":")[0] for g in groups if ":" in g and g.partition(":")[0].lower() == org.lower()}
            entry = f"connector.orgs[{k}] as {org} if that is how GitHub spells the organisation's login (github.com/{org}), or "
            yield Problem(
                path,
                f"{group}: {org} is spelt {near} in connector.orgs, and Dex keeps a user's teams only where GitHub spells the "
                "organisation's login letter for letter as connector.orgs does, and names each group with that spelling; write "
                f"{entry if spellings == {org} else ''}{near}:{team}{there}",
            )
            return
        yield Problem(path, f"{group}: {org} is not one of connector.orgs ({listed}), and Dex reads the teams of those orgs only{hint}")
    elif team != team_slug(team) or not team:
        fix = f"write {org}:{team_slug(team)}{there}" if team_slug(team) else f"name the team by its slug{there}"
        yield Problem(
            path,
            f"{group}: {team or '(nothing)'} is not a team's slug, and Dex names each team by its slug (lower-case letters, digits, "
            f"'-' and '_': github.com/orgs/{org}/teams/<slug>); {fix}",
        )


def _also(paths: Sequence[str]) -> str:
    """The other keys a group's fix is written at, as a message's tail."""
    if not paths:
        return ""
    return " both here and at " + (paths[0] if len(paths) == 1 else f"{', '.join(paths[:-1])} and {paths[-1]}")


# A GitHub organisation's login, which Dex's connector matches against the user's orgs (github.com/<login>): letters,
# digits and single hyphens, not at either end, up to 39 characters (GitHub's username rules).
GITHUB_LOGIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}$")
_GITHUB_URL = re.compile(r"^(?:https?://)?(?:www\.)?github\.com/([^/\s]+)/?$", re.IGNORECASE)


def _org(path: str, org: str) -> Iterator[Problem]:
    """An organisation Dex can ask GitHub about: its login, as github.com/<login> spells it. Dex puts each of connector.orgs
    into the API path as written (dex v2.45.1, connector/github/github.go:346-350 groupsForOrgs, :650-656 userInOrg:
    GET <api>/orgs/<org>/members/<user>), so a URL or an @-mention there finds no organisation and nobody signs in."""
    if GITHUB_LOGIN.match(org):
        return
    url = _GITHUB_URL.match(org)
    login = url.group(1) if url else org.strip().lstrip("@")
    fix = f"write {login}" if GITHUB_LOGIN.match(login) else "write the organisation's login, as in github.com/<login>"
    yield Problem(path, f"{org} is not a GitHub organisation's login, which is what Dex matches the user's organisations by; {fix}")


# A distinguished name as LDAP reads one (RFC 4514): attribute=value pairs joined by commas, a comma in a value escaped.
_DN = re.compile(r"^[A-Za-z][A-Za-z0-9-]*=(?:[^,=\\]|\\.)+(?:,\s*[A-Za-z][A-Za-z0-9-]*=(?:[^,=\\]|\\.)+)*$")


def _base_dns(path: str, user_base: str | None, group_base: str | None) -> Iterator[Problem]:
    """Where Dex searches for users and groups: a DN, the search request's BaseDN as written (dex v2.45.1,
    connector/ldap/ldap.go:431 for users, :687 for groups); the directory refuses any other text as an invalid DN at the
    first login, never at preview."""
    for key, dn in (("userBaseDn", user_base), ("groupBaseDn", group_base)):
        if dn is not None and not _DN.match(dn.strip()):
            yield Problem(
                f"{path}.{key}",
                f"{dn} is not a distinguished name, which Dex searches under as written; write the whole DN, e.g. "
                f"{'ou=people' if key == 'userBaseDn' else 'ou=groups'},dc=example,dc=org",
            )


# LDAP's plain ports and the TLS port of each: Dex dials the host with TLS (LDAPS) when the connector sets neither
# insecureNoSSL nor startTLS, as plans.identity renders it (dex v2.45.1, connector/ldap/ldap.go:258-264 and :323-346).
LDAP_PLAIN_PORTS = {389: 636, 3268: 3269}


def _ldap_host(path: str, host: str) -> Iterator[Problem]:
    name, _, port = host.rpartition(":")
    if port.isdigit() and int(port) in LDAP_PLAIN_PORTS:
        yield Problem(
            path,
            f"{host}: {port} is LDAP's plain port, and Dex dials the directory with TLS (LDAPS), which no server answers there; "
            f"use its LDAPS port, {name}:{LDAP_PLAIN_PORTS[int(port)]}",
        )


def _headlamp(identity: Identity, gitops_set: bool, apps: Sequence[tuple[int, App]]) -> Iterator[Problem]:
    if identity.headlamp is None:
        return
    path = f"{IDENTITY}.headlamp.app"
    if not gitops_set:
        yield Problem(path, "needs iluvatar:gitops: Headlamp is an Argo CD platform Application")
    name = identity.headlamp.app
    found = [(i, a) for i, a in apps if a.name == name]
    if not found:
        known = ", ".join(a.name for _, a in apps) or "none"
        yield Problem(
            path,
            f"{name} is not an app of iluvatar:apps (known: {known}); add {{name: {name}, category: system, host: {name}.<network.domain>, service: {{port: 80}}}}",
        )
        return
    i, app = found[0]
    if app.audience != "internal":
        yield Problem(
            f"iluvatar:apps[{i}].audience",
            f"{app.audience}: {name} is Headlamp, which is served on the LAN only (envoy-internal): its sign-in goes through Dex "
            "at the front door, which the internet does not reach; reach it from away through iluvatar:remoteAccess (reach: apps), "
            "and remove audience",
        )
    if app.ports:
        yield Problem(
            f"iluvatar:apps[{i}].ports",
            f"{name} is Headlamp, an HTTP app behind envoy-internal; replace ports and address with service: {{port: 80}}",
        )
