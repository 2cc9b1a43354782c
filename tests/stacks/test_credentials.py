"""stacks.credentials: which keys and values are credentials, and the command that sends each where it belongs."""

from __future__ import annotations

import pytest

from stacks.credentials import TOKEN_FORMS, Destination, credential_key, placeholder, strip, words
from stacks.load import MODELS, SECRETS


@pytest.mark.parametrize(
    "key",
    ["token", "password", "clientSecret", "bindPW", "bindPassword", "apiKey", "api_key", "secretAccessKey", "accessKeyId", "sshPrivateKey", "pass"],
)
def test_a_key_a_service_holds_a_credential_under_is_one(key: str) -> None:
    assert credential_key(key)


# Keys that name a Secret, a file or a switch: the chart values Iluvatar passes through are full of them.
@pytest.mark.parametrize(
    "key", ["existingSecret", "secretName", "tokenFile", "passwordFile", "createSecret", "secretKeyRef", "tokenTtl", "clientId", "bindDn", "url", ""]
)
def test_a_key_that_points_at_a_credential_is_not_one(key: str) -> None:
    assert not credential_key(key)


@pytest.mark.parametrize("value", ["<value>", "https://ntfy.sh/<topic>", "changeme", "CHANGE_ME", "your-token", "xxxx"])
def test_placeholders(value: str) -> None:
    assert placeholder(value)


@pytest.mark.parametrize("value", ["https://ntfy.sh/alerts", "admin@example.org", "a < b", "xx", 5])
def test_not_placeholders(value: object) -> None:
    assert not placeholder(value)


@pytest.mark.parametrize(
    ("value", "what"),
    [
        ("ghp_" + "a" * 36, "a GitHub token"),
        ("github_pat_" + "A1_" * 10, "a GitHub token"),
        ("xoxb-1234567890-abcdef", "a Slack token"),
        ("AKIAIOSFODNN7EXAMPLE", "an AWS access key id"),
        ("tk_" + "a1" * 14 + "b", "an ntfy access token"),
        ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl\n", "a private key"),
        ("$2y$10$" + "a" * 53, "a bcrypt password hash"),
    ],
)
def test_token_forms(value: str, what: str) -> None:
    assert [w for form, w in TOKEN_FORMS if form.search(value)] == [what]


def test_words_of_a_key() -> None:
    assert words("githubClientSecret") == ["github", "client", "secret"]
    assert words("s3_secret-key") == ["s3", "secret", "key"]


def test_a_secret_under_a_path_is_set_with_path_and_quoted() -> None:
    dest = Destination("bmcPasswords", ("10.10.0.5",), value="<password>")
    assert dest.command == "pulumi config set --secret --path 'iluvatar:bmcPasswords[\"10.10.0.5\"]' <password>"
    assert Destination("alertReceiverSecret").command == "pulumi config set --secret iluvatar:alertReceiverSecret <value>"


def test_the_config_keeps_all_but_the_credential() -> None:
    raw = {
        "iluvatar:monitoring": {"receiver": {"ntfy": {"url": "https://ntfy.sh/alerts", "token": "tk_x"}}},
        "iluvatar:alertReceiverSecret": "kept: a secret key is not walked",
        "pulumi:disable-default-providers": ["*"],
    }
    cleaned, found = strip(raw, MODELS, SECRETS)
    assert cleaned == {**raw, "iluvatar:monitoring": {"receiver": {"ntfy": {"url": "https://ntfy.sh/alerts"}}}}
    assert [f.problem.path for f in found] == ["iluvatar:monitoring.receiver.ntfy.token"]
    assert [f.destination.where for f in found if f.destination is not None] == [("iluvatar:alertReceiverSecret",)]


def test_a_value_in_chart_values_is_kept_unless_its_key_is_a_credential() -> None:
    values = {"hubble": {"tls": {"auto": {"method": "cronJob"}}, "existingSecret": "hubble-ca", "password": ""}}
    raw = {"iluvatar:arda": {"cilium": {"values": values}}}
    cleaned, found = strip(raw, MODELS, SECRETS)
    # An empty value in chart values holds no credential (a chart's default); a Secret's name is no credential.
    assert cleaned == raw
    assert found == []


@pytest.mark.parametrize(
    ("url", "leaks"),
    [
        ("https://alice@bitbucket.org/team/homelab.git", False),  # Bitbucket's clone URL names the user: no secret
        ("ssh://git@github.com/you/homelab.git", False),
        ("https://ghp_" + "a1" * 18 + "@github.com/you/homelab.git", True),
        ("https://0123456789abcdef0123456789abcdef@git.example.org/homelab.git", True),  # a token without a known form
        ("https://alice:hunter2@git.example.org/homelab.git", True),
    ],
)
def test_a_user_alone_in_a_url_is_a_credential_only_when_it_is_a_token(url: str, leaks: bool) -> None:
    _, found = strip({"iluvatar:ainur": {"gitMirror": {"url": url, "ip": "192.168.0.15"}}}, MODELS, SECRETS)
    assert bool(found) is leaks
