"""Loading the stack from Pulumi config, injected with set_all_config under the iluvatar: prefix."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pytest

from stacks.load import ORDER
from stacks.pulumi_source import _decode, load
from stacks.secrets import Secure
from tests.edit import homelab_stack_file


class Mocks(pulumi.runtime.Mocks):
    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, []


def _config(**extra: str) -> dict[str, str]:
    """The homelab's config as the engine hands it over; its encrypted token arrives decrypted."""
    sf = homelab_stack_file()
    cfg = {k: "homelab-token" if k in sf.secret_keys else json.dumps(v) for k, v in sf.config.items() if k.startswith("iluvatar:")}
    # A value set with `config set --secret --path` arrives as its object, each value decrypted.
    cfg["iluvatar:appSecrets"] = json.dumps({"home-assistant": {"WEATHER_API_KEY": "homelab-token"}})
    cfg.update(extra)
    return cfg


SECRET_KEYS = sorted(homelab_stack_file().secret_keys)


@pytest.fixture(autouse=True)
def mocks() -> None:
    pulumi.runtime.set_mocks(Mocks(), project="iluvatar", stack="test", preview=False)


def test_load_reads_structured_config() -> None:
    pulumi.runtime.set_all_config(_config(), SECRET_KEYS)
    loaded = load()
    assert len(loaded.config.nodes) == 8
    assert loaded.config.arda.cluster_name == "arda"
    assert [a.name for a in loaded.config.apps] == ["home-assistant", "jellyfin", "blog", "grafana", "headlamp"]
    assert loaded.secrets.cloudflare_api_token is not None
    assert (loaded.secrets.alert_receiver_secret, loaded.secrets.identity_connector_secret) != (None, None)


def test_without_cloudflare_there_is_no_token() -> None:
    cfg = {k: v for k, v in _config(**{"iluvatar:edge": json.dumps({"publicIngress": "none", "publicDns": "none"})}).items() if k not in SECRET_KEYS}
    apps = json.loads(cfg["iluvatar:apps"])
    # Without the data-safety keys' secrets too: no app secret set by hand, no backup target.
    cfg["iluvatar:apps"] = json.dumps(
        [{k: v for k, v in a.items() if k not in ("secrets", "backup")} for a in apps if a.get("audience") != "external"]
    )
    del cfg["iluvatar:backup"]
    # And without sign-in, whose GitHub connector needs its secret.
    del cfg["iluvatar:identity"]
    pulumi.runtime.set_all_config(cfg, [])
    secrets = load().secrets
    assert (secrets.cloudflare_api_token, secrets.identity_connector_secret, secrets.alert_receiver_secret) == (None, None, None)


def test_unknown_key_in_the_namespace_is_reported() -> None:
    pulumi.runtime.set_all_config(_config(**{"iluvatar:nodez": "[]"}), SECRET_KEYS)
    with pytest.raises(pulumi.RunError) as err:
        load()
    assert str(err.value).splitlines()[:2] == [
        "stack test: 1 problem:",
        "  iluvatar:nodez: is not a known key; did you mean nodes? (known: " + ", ".join(ORDER) + ")",
    ]


def test_plain_token_is_rejected_and_not_echoed() -> None:
    cfg = _config(**{"iluvatar:cloudflare": json.dumps({"accountId": "0" * 32}), "iluvatar:cloudflareApiToken": "hunter2-token"})
    pulumi.runtime.set_all_config(cfg, [])
    with pytest.raises(pulumi.RunError) as err:
        load()
    assert "iluvatar:cloudflareApiToken: is in plain text" in str(err.value)
    assert "hunter2-token" not in str(err.value)


def test_secret_token_becomes_a_secret_output() -> None:
    cfg = _config(**{"iluvatar:cloudflare": json.dumps({"accountId": "0" * 32}), "iluvatar:cloudflareApiToken": "hunter2-token"})
    pulumi.runtime.set_all_config(cfg, sorted(SECRET_KEYS))
    ran: list[bool] = []

    @pulumi.runtime.test
    def check() -> pulumi.Output[Any]:
        token = load().secrets.cloudflare_api_token
        assert token is not None

        def inspect(args: list[Any]) -> None:
            value, secret = args
            assert value == "hunter2-token" and secret
            ran.append(True)

        secret: pulumi.Output[bool] = pulumi.Output.from_input(token.is_secret())
        return pulumi.Output.all(token, secret).apply(inspect)

    check()
    assert ran == [True]


def test_secret_keys_are_never_decoded_into_plain_values() -> None:
    assert isinstance(_decode("iluvatar:ainurSshPrivateKey", '{"key": "-----BEGIN OPENSSH PRIVATE KEY-----"}'), Secure)
    assert isinstance(_decode("iluvatar:cloudflareApiToken", "tok"), Secure)
    assert _decode("iluvatar:arda", '{"clusterName": "arda"}') == {"clusterName": "arda"}


def test_ssh_private_key_becomes_a_secret_output() -> None:
    pulumi.runtime.set_all_config(_config(**{"iluvatar:ainurSshPrivateKey": "PRIVATE-KEY-CANARY"}), ["iluvatar:ainurSshPrivateKey", *SECRET_KEYS])
    ran: list[bool] = []

    @pulumi.runtime.test
    def check() -> pulumi.Output[Any]:
        key = load().secrets.ainur_ssh_private_key
        assert key is not None

        def inspect(args: list[Any]) -> None:
            assert args == ["PRIVATE-KEY-CANARY", True]
            ran.append(True)

        secret: pulumi.Output[bool] = pulumi.Output.from_input(key.is_secret())
        return pulumi.Output.all(key, secret).apply(inspect)

    check()
    assert ran == [True]
