"""The edge's rules where the homelab fixtures cannot reach: a stack without the Ainur (its LAN resolver), defaults."""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any

import pytest

from stacks import StackConfigError, parse_stack, read_stack_file
from stacks.edge import edge_addresses
from stacks.secrets import Secure
from tests.edit import RK1, homelab_stack_file


def _rk1(**sections: Any) -> dict[str, Any]:
    raw = dict(read_stack_file(RK1).config)
    raw.update({f"iluvatar:{k}": v for k, v in sections.items()})
    return raw


def _problems(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(StackConfigError) as err:
        parse_stack(raw)
    return [str(p) for p in err.value.problems]


def test_defaults_are_the_pools_top_three() -> None:
    stack = parse_stack(_rk1())
    assert edge_addresses(stack.network.load_balancer_pool, stack.edge) == {
        "envoy-external": IPv4Address("10.10.0.219"),
        "envoy-internal": IPv4Address("10.10.0.218"),
        "resolver": IPv4Address("10.10.0.217"),
    }
    assert (stack.public_ingress, stack.public_dns) == ("none", "none")


def test_addresses_the_stack_sets_win() -> None:
    stack = parse_stack(_rk1(edge={"addresses": {"envoyExternal": "10.10.0.200", "resolver": "10.10.0.201"}}))
    assert edge_addresses(stack.network.load_balancer_pool, stack.edge) == {
        "envoy-external": IPv4Address("10.10.0.200"),
        "envoy-internal": IPv4Address("10.10.0.218"),
        "resolver": IPv4Address("10.10.0.201"),
    }


def test_without_the_ainur_the_pool_must_hold_the_resolver_too() -> None:
    raw = _rk1()
    raw["iluvatar:network"] = {**raw["iluvatar:network"], "loadBalancerPool": {"start": "10.10.0.218", "end": "10.10.0.219"}}
    assert _problems(raw) == [
        "iluvatar:network.loadBalancerPool: 10.10.0.218-10.10.0.219 has 2 addresses; without the Ainur the two Envoy gateways and the LAN resolver take its top three"
    ]
    raw["iluvatar:edge"] = {"addresses": {"resolver": "10.10.0.218"}}
    assert _problems(raw) == ["iluvatar:edge.addresses.resolver: 10.10.0.218 is also envoy-internal's address"]


def test_the_resolver_must_not_forward_to_itself() -> None:
    raw = _rk1()
    raw["iluvatar:network"] = {**raw["iluvatar:network"], "dns": ["10.10.0.217"]}
    assert _problems(raw) == [
        "iluvatar:network.dns[0]: 10.10.0.217 is the LAN resolver's address; it forwards to network.dns, so it must be another server"
    ]


def test_resolver_outside_the_pool_and_on_a_machine() -> None:
    assert _problems(_rk1(edge={"addresses": {"resolver": "10.10.0.11"}})) == [
        "iluvatar:edge.addresses.resolver: 10.10.0.11 is outside network.loadBalancerPool 10.10.0.200-10.10.0.219, so Cilium cannot give it to resolver",
        "iluvatar:edge.addresses.resolver: 10.10.0.11 is nodes[0].ip (talos-1); resolver needs an address of its own",
    ]


def test_explicit_none_modes_beat_the_legacy_cloudflare_key() -> None:
    sf = homelab_stack_file()
    raw = dict(sf.config)
    raw["iluvatar:edge"] = {"publicIngress": "none", "publicDns": "none"}
    raw["iluvatar:apps"] = [a for a in raw["iluvatar:apps"] if a.get("audience") != "external"]
    del raw["iluvatar:cloudflareApiToken"]
    stack = parse_stack(raw)
    assert stack.cloudflare is not None and not stack.uses_cloudflare


def test_cloudflare_dns_alone_is_a_valid_mode() -> None:
    """Let's Encrypt certificates for internal apps under the public zone, with nothing published."""
    sf = homelab_stack_file()
    raw = dict(sf.config)
    raw["iluvatar:edge"] = {"publicIngress": "none", "publicDns": "cloudflare", "acmeEmail": "admin@example.com"}
    raw["iluvatar:apps"] = [a for a in raw["iluvatar:apps"] if a.get("audience") != "external"]
    stack = parse_stack(raw, sf.secret_keys)
    assert (stack.public_ingress, stack.public_dns, stack.uses_cloudflare) == ("none", "cloudflare", True)


def test_a_secure_value_from_a_stack_file_is_a_secret_without_being_named_one() -> None:
    sf = homelab_stack_file()
    assert sf.secret_keys == {
        "iluvatar:cloudflareApiToken",
        "iluvatar:alertReceiverSecret",
        "iluvatar:identityConnectorSecret",
        "iluvatar:backupS3AccessKeyId",
        "iluvatar:backupS3SecretAccessKey",
        "iluvatar:appSecrets",
    }
    assert parse_stack(dict(sf.config)).uses_cloudflare
    raw = {**sf.config, "iluvatar:cloudflareApiToken": "tok-PLAIN"}
    assert _problems(raw) == [
        "iluvatar:cloudflareApiToken: is in plain text; remove it and run `pulumi config set --secret iluvatar:cloudflareApiToken <value>`"
    ]


def test_validate_asks_for_the_token_exactly_when_cloudflare_is_on_and_the_editor_never_does() -> None:
    """stacks.edge asks for the token when Cloudflare is on: the legacy key alone turns it on, both modes off turn it off.
    The editor schema asks for no secret at all: a secret is set with `pulumi config set --secret`, never typed."""
    import jsonschema

    from stacks.schema import stack_schema

    validator = jsonschema.Draft202012Validator(stack_schema())
    sf = homelab_stack_file()
    token = "iluvatar:cloudflareApiToken"

    def unset(config: dict[str, Any]) -> list[str]:
        try:
            parse_stack(config, sf.secret_keys, require_secrets=True)
        except StackConfigError as e:
            return [p.path for p in e.unset_secrets()]
        return []

    def flagged(config: dict[str, Any]) -> list[str]:
        def written(value: Any) -> Any:  # a secure value as the file spells it
            if isinstance(value, Secure):
                return {"secure": "v1:bm9uY2Vub25jZW5v:Y2lwaGVydGV4dGNpcGhlcnRleHQ="}
            return {k: written(v) for k, v in value.items()} if isinstance(value, dict) else value

        doc = {"config": {**{k: written(v) for k, v in config.items()}, "pulumi:disable-default-providers": ["*"]}}
        return [e.message for e in validator.iter_errors(doc)]

    without = {k: v for k, v in sf.config.items() if k != token}
    no_key = {k: v for k, v in without.items() if k != "iluvatar:cloudflare"}
    cases = [
        (dict(sf.config), []),
        (without, [token]),
        ({**without, "iluvatar:edge": {"publicIngress": "none", "publicDns": "none"}}, []),
        ({**without, "iluvatar:edge": {"publicDns": "none"}}, [token]),
        ({**no_key, "iluvatar:edge": {"publicDns": "cloudflare"}}, [token]),
        ({**no_key, "iluvatar:edge": {}}, []),
    ]
    for config, asked in cases:
        assert unset(config) == asked
        assert flagged(config) == []


def test_without_apps_there_is_no_resolver_and_two_pool_addresses_are_enough() -> None:
    raw = _rk1()
    del raw["iluvatar:apps"]
    del raw["iluvatar:monitoring"]  # its Grafana is an app
    raw["iluvatar:network"] = {**raw["iluvatar:network"], "loadBalancerPool": {"start": "10.10.0.218", "end": "10.10.0.219"}}
    stack = parse_stack(raw)
    assert (stack.has_lan_resolver, stack.apps) == (False, ())
    raw["iluvatar:edge"] = {"addresses": {"resolver": "10.10.0.5"}}
    assert parse_stack(raw).edge.addresses.resolver == IPv4Address("10.10.0.5"), "unused: no app, no resolver, nothing to check"
