"""stacks.identity's checks at their boundaries (the broken-stack fixtures hold each rule's message on the homelab)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stacks import load_stack_file
from stacks.identity import _connector, _github_group, _groups, _headlamp, _hosts, _ldap_host, _org, team_slug
from stacks.model import Identity

GITHUB: dict[str, Any] = {"type": "github", "clientId": "Iv1.0123456789abcdef", "orgs": ["example"]}


def _identity(connector: dict[str, Any] | None = None, **fields: Any) -> Identity:
    return Identity.model_validate(
        {"ip": "192.168.0.16", "connector": connector or GITHUB, "groups": [{"group": "example:admins", "clusterRole": "view"}], **fields}
    )


def test_a_team_slug_is_githubs_trimmed_of_its_dashes() -> None:
    assert [team_slug(n) for n in ("Home Lab!", "--Admins--", "ops_team", "a  b")] == ["home-lab", "admins", "ops_team", "a-b"]


def test_a_group_is_split_at_its_first_colon_as_dex_joins_org_and_team() -> None:
    # formatTeamName (dex v2.45.1 connector/github/github.go:331) is org + ":" + slug, and a slug has no colon: the
    # organisation is what comes before the first one.
    assert [str(p) for p in _github_group("g", "example:admins:x", ["example"])] == [
        "g: example:admins:x: admins:x is not a team's slug, and Dex names each team by its slug (lower-case letters, digits, "
        "'-' and '_': github.com/orgs/example/teams/<slug>); write example:admins-x"
    ]


def test_every_listed_org_is_named() -> None:
    assert [str(p) for p in _github_group("g", "admins", ["example", "family"])] == [
        "g: admins is not a group Dex gives a GitHub user: their groups are <org>:<team slug>, one for each of their teams in "
        "connector.orgs (example, family), never an organisation alone; bind a team, e.g. example:<team slug>"
    ]


def test_an_ldap_hosts_port_is_after_its_last_colon() -> None:
    assert [str(p) for p in _ldap_host("h", "[fd00::10]:389")] == [
        "h: [fd00::10]:389: 389 is LDAP's plain port, and Dex dials the directory with TLS (LDAPS), which no server answers "
        "there; use its LDAPS port, [fd00::10]:636"
    ]


def test_an_ldap_host_on_another_connector_is_only_not_used() -> None:
    # Its port is LDAP's plain one, but a GitHub connector never dials it: one problem, that it is set at all.
    identity = _identity({**GITHUB, "host": "ldap.example.org:389"})
    assert [str(p) for p in _connector(identity, {"identityConnectorSecret"})] == [
        "iluvatar:identity.connector.host: is set, but type is github, which does not use it"
    ]


def test_a_group_the_static_admin_is_not_in_names_the_admins_groups() -> None:
    said = []
    for groups in (["admins", "ops"], []):
        identity = _identity({"type": "static", "email": "admin@example.org", "groups": groups}, groups=[{"group": "family", "clusterRole": "view"}])
        said += [str(p) for p in _groups(identity)]
    assert said == [
        "iluvatar:identity.groups[0].group: family is not one of the static admin's groups (connector.groups: admins, ops)",
        "iluvatar:identity.groups[0].group: family is not one of the static admin's groups (connector.groups: none)",
    ]


def test_headlamp_in_a_stack_with_no_apps_says_none_are_known() -> None:
    identity = _identity(headlamp={"app": "headlamp"})
    assert [str(p) for p in _headlamp(identity, True, [])] == [
        "iluvatar:identity.headlamp.app: headlamp is not an app of iluvatar:apps (known: none); add {name: headlamp, category: system, "
        "host: headlamp.<network.domain>, service: {port: 80}}"
    ]


def test_each_hosts_problem_is_at_its_config_key() -> None:
    # argocd_ainur's config key is argocdAinur (its default label, argocd-ainur, is no key); a clash names the key first holding it.
    network = load_stack_file(Path(__file__).parents[2] / "Pulumi.homelab.yaml").network
    identity = _identity(hosts={"argocdAinur": "argocd.example.com", "ca": "dex.iluvatar.home.arpa"})
    assert [str(p) for p in _hosts(identity, network, [], {})] == [
        "iluvatar:identity.hosts.ca: dex.iluvatar.home.arpa is already identity.hosts.dex in the internal zone; pick another name",
        "iluvatar:identity.hosts.argocdAinur: argocd.example.com is outside the internal zone network.domain iluvatar.home.arpa, which the "
        "Ainur's DNS answers for; write a name in it, e.g. argocd-ainur.iluvatar.home.arpa, or leave it unset (that name is the default)",
    ]


def test_an_org_written_as_a_mention_or_not_a_login_gets_its_fix() -> None:
    said = "is not a GitHub organisation's login, which is what Dex matches the user's organisations by"
    assert [str(p) for org in ("@Xyz", "my org!") for p in _org("o", org)] == [
        f"o: @Xyz {said}; write Xyz",  # only the @ goes
        f"o: my org! {said}; write the organisation's login, as in github.com/<login>",
    ]


def test_the_hosts_after_one_outside_the_zone_are_checked_too() -> None:
    network = load_stack_file(Path(__file__).parents[2] / "Pulumi.homelab.yaml").network
    identity = _identity(hosts={"dex": "dex.example.com", "ca": "argocd.iluvatar.home.arpa", "argocdAinur": "argocd.example.com"})
    outside = "is outside the internal zone network.domain iluvatar.home.arpa, which the Ainur's DNS answers for; write a name in it, e.g."
    default = "or leave it unset (that name is the default)"
    assert [str(p) for p in _hosts(identity, network, [], {})] == [
        f"iluvatar:identity.hosts.dex: dex.example.com {outside} dex.iluvatar.home.arpa, {default}",
        "iluvatar:identity.hosts.argocd: argocd.iluvatar.home.arpa is already identity.hosts.ca in the internal zone; pick another name",
        f"iluvatar:identity.hosts.argocdAinur: argocd.example.com {outside} argocd-ainur.iluvatar.home.arpa, {default}",
    ]
