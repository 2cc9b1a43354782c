"""stacks.credentials: which keys and values are credentials, and the command that sends each where it belongs."""

from __future__ import annotations

from typing import Any

import pytest

from stacks.credentials import (
    TOKEN_FORMS,
    Destination,
    _bmc_holder,
    _get,
    _identity,
    credential_key,
    destination,
    given,
    looks_like_token,
    masked_kernel_arg,
    placeholder,
    strip,
    top_level,
    words,
)
from stacks.load import MODELS, SECRETS
from stacks.secrets import Secure


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
        # `base64 -w0 ca.key`, as Cilium's tls.ca.key takes it, for each PEM private key label.
        ("LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0tCk1JSUV2", "a base64-encoded private key"),
        ("LS0tLS1CRUdJTiBSU0EgUFJJVkFURSBLRVktLS0tLQpN", "a base64-encoded private key"),
        ("LS0tLS1CRUdJTiBFQyBQUklWQVRFIEtFWS0tLS0tCk1I", "a base64-encoded private key"),
        ("LS0tLS1CRUdJTiBPUEVOU1NIIFBSSVZBVEUgS0VZLS0tLS0K", "a base64-encoded private key"),
    ],
)
def test_token_forms(value: str, what: str) -> None:
    assert [w for form, w in TOKEN_FORMS if form.search(value)] == [what]


@pytest.mark.parametrize(
    "value",
    [
        "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUM=",  # a certificate, public: Cilium's tls.ca.cert
        "LS0tLS1CRUdJTiBQVUJMSUMgS0VZLS0tLS0K",  # a public key
        "-----BEGIN CERTIFICATE-----",
    ],
)
def test_what_is_public_is_no_token_form(value: str) -> None:
    assert [w for form, w in TOKEN_FORMS if form.search(value)] == []


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


# Where each credential goes, by where it was written: (path under iluvatar:, key, the mapping holding it) -> the secret's
# path, what it is, and what the command's value stands for (with any note), or why no secret key takes it.
CONFIG = {
    "iluvatar:apps": [{"name": "hass", "secrets": [{"name": "API_KEY"}, {}]}],
    "iluvatar:identity": {"connector": {"type": "ldap"}},
    "iluvatar:nodes": [{"name": "a"}, {"name": "b", "power": {"wakeOnLan": {}}}, {"name": "c", "power": {"bmc": {"address": "10.0.0.5"}}}],
}
NTFY = ("iluvatar:alertReceiverSecret", "ntfy's access token (sent as a bearer token; `ntfy token add <user>` makes one for a user)", "<tk_...>", "")
GIT_TOKEN = ("iluvatar:gitopsToken", "a private repository's access token", "<token>", "set gitops.private: true")
PIS = ("iluvatar:ainurSshPrivateKey", "the SSH key Pulumi logs in to the Pis with", "< ~/.ssh/id_ed25519")


@pytest.mark.parametrize(
    ("parts", "key", "holder", "goes"),
    [
        (("monitoring", "receiver", "email", "password"), "password", {}, ("iluvatar:alertReceiverSecret", "the SMTP password", "<password>", "")),
        (("monitoring", "receiver", "ntfy", "token"), "token", {}, NTFY),
        (("monitoring", "receiver", "webhook", "token"), "token", {}, ("iluvatar:alertReceiverSecret", "the webhook's bearer token", "<token>", "")),
        (("monitoring", "receiver"), "token", {}, ("iluvatar:alertReceiverSecret", "the alert receiver's password or token", "<value>", "")),
        (("monitoring", "token"), "token", {}, ("iluvatar:alertReceiverSecret", "the alert receiver's password or token", "<value>", "")),
        (
            ("identity", "connector", "clientSecret"),
            "clientSecret",
            {},
            ("iluvatar:identityConnectorSecret", "the LDAP bind password", "<bind password>", ""),
        ),
        (
            ("nodes", 2, "power", "bmc", "password"),
            "password",
            {"address": "10.0.0.5"},
            ('iluvatar:bmcPasswords["10.0.0.5"]', "the BMC's password", "<password>", ""),
        ),
        (("nodes", 2, "bmc", "password"), "password", {}, ('iluvatar:bmcPasswords["<BMC address>"]', "the BMC's password", "<password>", "")),
        (
            ("nodes", 2, "power", "password"),
            "password",
            {"address": ""},
            ('iluvatar:bmcPasswords["<BMC address>"]', "the BMC's password", "<password>", ""),
        ),
        (
            ("nodes", 2, "password"),
            "password",
            {},
            "a machine takes no password here: Talos has no login, and Pulumi reaches the Pis with SSH keys (ainur.sshAuthorizedKeys, "
            "and the secret iluvatar:ainurSshPrivateKey); remove it",
        ),
        (("apps", 0, "secrets", 0, "value"), "value", {}, ("iluvatar:appSecrets.hass.API_KEY", "the value of hass's secret API_KEY", "<value>", "")),
        (("apps", 0, "secrets", 1, "value"), "value", {}, ("iluvatar:appSecrets.hass.<name>", "the value of hass's secret <name>", "<value>", "")),
        (
            ("apps", 3, "secrets", 0, "value"),
            "value",
            {},
            ("iluvatar:appSecrets.<app>.<name>", "the value of <app>'s secret <name>", "<value>", ""),
        ),
        (
            ("apps", 0, "apiKey"),
            "apiKey",
            {},
            ("iluvatar:appSecrets.hass.apiKey", "a secret of hass", "<value>", "declare it in apps[0].secrets as {name: apiKey}"),
        ),
        (
            ("apps", 0, "backup", "password"),
            "password",
            {},
            ("iluvatar:appSecrets.hass.password", "a secret of hass", "<value>", "declare it in apps[0].secrets as {name: password}"),
        ),
        (("backup", "accessKeyId"), "accessKeyId", {}, ("iluvatar:backupS3AccessKeyId", "the S3 access key id", "<access key id>", "")),
        (("backup", "accessKey"), "accessKey", {}, ("iluvatar:backupS3AccessKeyId", "the S3 access key id", "<access key id>", "")),
        (("backup", "secretKeyId"), "secretKeyId", {}, ("iluvatar:backupS3SecretAccessKey", "the S3 secret access key", "<secret access key>", "")),
        (("backup", "secretKey"), "secretKey", {}, ("iluvatar:backupS3SecretAccessKey", "the S3 secret access key", "<secret access key>", "")),
        (
            ("backup", "resticPassword"),
            "resticPassword",
            {},
            "Pulumi generates each restic repository's password (kept in its state, encrypted); remove it",
        ),
        (("backup", "passphrase"), "passphrase", {}, "Pulumi generates each restic repository's password (kept in its state, encrypted); remove it"),
        (("gitops", "token"), "token", {}, GIT_TOKEN),
        (("gitops", "apiKey"), "apiKey", {}, GIT_TOKEN),
        (("gitops", "sshPrivateKey"), "sshPrivateKey", {}, ("iluvatar:gitopsSshPrivateKey", "the repository's SSH deploy key", "< deploy_key", "")),
        (("ainur", "gitMirror", "password"), "password", {}, GIT_TOKEN),
        (("ainur", "sshPrivateKey"), "sshPrivateKey", {}, (*PIS, "")),
        (("ainur", "sshAuthorizedKeys", 0), "sshAuthorizedKeys", {}, (*PIS, "sshAuthorizedKeys takes its public half (the .pub file)")),
        (
            ("ainur", "password"),
            "password",
            {},
            "the Pis take no password: Pulumi logs in with an SSH key (iluvatar:ainurSshPrivateKey, or your SSH agent); remove it",
        ),
        (("edge", "apiToken"), "apiToken", {}, ("iluvatar:cloudflareApiToken", "the Cloudflare API token", "<token>", "")),
        (("cloudflare", "apiToken"), "apiToken", {}, ("iluvatar:cloudflareApiToken", "the Cloudflare API token", "<token>", "")),
        (
            ("storage", "nfs", "password"),
            "password",
            {},
            "NFS takes no password: the server lets in the client addresses its export allows (Arda's machines); remove it",
        ),
        (("storage", "password"), "password", {}, "Iluvatar reads no credential at storage, and no secret key takes it; remove it"),
        ((), "password", {}, "Iluvatar reads no credential at this key, and no secret key takes it; remove it"),
    ],
)
def test_where_each_credential_goes(parts: tuple[str | int, ...], key: str, holder: dict[str, Any], goes: object) -> None:
    found = destination(parts, key, holder, CONFIG)
    assert (found if isinstance(found, str) else (found.path, found.what, found.value, found.note)) == goes


@pytest.mark.parametrize(
    ("key", "goes"),
    [
        ("ntfyToken", NTFY[:3]),
        ("smtpPassword", ("iluvatar:alertReceiverSecret", "the SMTP password", "<password>")),
        ("alertmanagerWebhookSecret", ("iluvatar:alertReceiverSecret", "the webhook's bearer token", "<token>")),
        ("githubClientSecret", ("iluvatar:identityConnectorSecret", "the GitHub OAuth app's client secret", "<client secret>")),
        ("ldapBindPassword", ("iluvatar:identityConnectorSecret", "the LDAP bind password", "<bind password>")),
        ("dexClientSecret", ("iluvatar:identityConnectorSecret", "the LDAP bind password", "<bind password>")),  # the stack's connector
        ("githubToken", GIT_TOKEN[:3]),
        ("bmcPassword", ('iluvatar:bmcPasswords["10.0.0.5"]', "the BMC's password", "<password>")),  # the first BMC of the inventory
        ("s3SecretKey", ("iluvatar:backupS3SecretAccessKey", "the S3 secret access key", "<secret access key>")),
        ("minioAccessKeyId", ("iluvatar:backupS3AccessKeyId", "the S3 access key id", "<access key id>")),
        ("cloudflareApiKey", ("iluvatar:cloudflareApiToken", "the Cloudflare API token", "<token>")),
        ("sshPrivateKey", PIS),
        ("fooToken", None),
        ("storagePassword", None),  # NFS takes none: no secret to send it to
    ],
)
def test_where_a_made_up_top_level_credential_goes(key: str, goes: object) -> None:
    found = top_level(key, CONFIG)
    assert (None if found is None else (found.path, found.what, found.value)) == goes


def test_the_first_bmc_of_the_inventory() -> None:
    assert _bmc_holder(CONFIG) == {"address": "10.0.0.5"}
    assert _bmc_holder({}) == {} and _bmc_holder({"iluvatar:nodes": "x"}) == {}
    assert _bmc_holder({"iluvatar:nodes": [1, {"power": "x"}, {"power": {"bmc": "x"}}]}) == {}


def _url(value: str, section: str = "monitoring") -> tuple[str, tuple[str, ...] | None]:
    where = {"monitoring": ("receiver", "webhook", "url"), "backup": ("target",), "gitops": ("repoUrl",)}[section]
    raw: dict[str, Any] = {}
    node: dict[str, Any] = {}
    raw[f"iluvatar:{section}"] = node
    for step in where[:-1]:
        node = node.setdefault(step, {})
    node[where[-1]] = value
    [(_, message, where_to)] = _found(raw)
    return message, where_to


@pytest.mark.parametrize(
    ("value", "section", "message", "where"),
    [
        (
            "https://hooks.example.org/x?token=",  # even empty, the parameter says where a token goes
            "monitoring",
            "https://hooks.example.org/x?token=***: the token parameter in it is a credential, in plain text; it is the webhook's bearer "
            "token, which goes in the secret iluvatar:alertReceiverSecret: remove it and run `pulumi config set --secret "
            "iluvatar:alertReceiverSecret <token>`",
            ("iluvatar:alertReceiverSecret",),
        ),
        (
            "https://u:p@ss@hooks.example.org/x?a=1&key=k&sig=s",  # the host is after the last @
            "monitoring",
            "https://***@hooks.example.org/x?a=1&key=***&sig=***: the user and password and key parameter and sig parameter in it are a "
            "credential, in plain text; it is the webhook's bearer token, which goes in the secret iluvatar:alertReceiverSecret: remove "
            "it and run `pulumi config set --secret iluvatar:alertReceiverSecret <token>`",
            ("iluvatar:alertReceiverSecret",),
        ),
        (
            "https://0123456789abcdef0123456789abcdef@hooks.example.org/x",
            "monitoring",
            "https://***@hooks.example.org/x: the user in it is a credential, in plain text; it is the webhook's bearer token, which goes "
            "in the secret iluvatar:alertReceiverSecret: remove it and run `pulumi config set --secret iluvatar:alertReceiverSecret <token>`",
            ("iluvatar:alertReceiverSecret",),
        ),
        (
            "s3://id:secret@s3.example.org/bucket",
            "backup",
            "s3://***@s3.example.org/bucket: the user and password in it are a credential, in plain text; it is the S3 secret access key "
            "(and its id), which goes in the secret iluvatar:backupS3SecretAccessKey: remove it and run `pulumi config set --secret "
            "iluvatar:backupS3SecretAccessKey <secret access key>` and `pulumi config set --secret iluvatar:backupS3AccessKeyId <access key id>`",
            ("iluvatar:backupS3SecretAccessKey",),
        ),
        (
            "https://user:pw@git.example.org/homelab.git",
            "gitops",
            "https://***@git.example.org/homelab.git: the user and password in it are a credential, in plain text; it is a private "
            "repository's access token, which goes in the secret iluvatar:gitopsToken: remove it and run `pulumi config set --secret "
            "iluvatar:gitopsToken <token>`; set gitops.private: true",
            ("iluvatar:gitopsToken",),
        ),
    ],
)
def test_a_credential_in_a_url(value: str, section: str, message: str, where: tuple[str, ...]) -> None:
    assert _url(value, section) == (message, where)


@pytest.mark.parametrize(
    ("host", "service"),
    [
        ("hooks.slack.com", "Slack"),
        ("discord.com", "Discord"),
        ("ptb.discordapp.com", "Discord"),
        ("example.webhook.office.com", "Microsoft Teams"),
        ("prod-01.westeurope.logic.azure.com", "Microsoft Teams"),
        ("chat.googleapis.com", "Google Chat"),
        ("api.telegram.org", "Telegram"),
    ],
)
def test_a_chat_services_own_webhook(host: str, service: str) -> None:
    message, where = _url(f"https://{host}/some/path")
    assert message.startswith(f"https://{host}/... is {service}'s incoming webhook: its URL is itself the credential")
    assert where is None  # no secret key takes it: the fix is another receiver


def test_the_secrets_given_elsewhere_are_not_also_required() -> None:
    _, found = strip({"iluvatar:backup": {"target": "s3://id:secret@s3.example.org/bucket"}}, MODELS, SECRETS)
    assert list(given(found)) == [("iluvatar:backupS3SecretAccessKey",), ("iluvatar:backupS3AccessKeyId",)]


@pytest.mark.parametrize(
    ("user", "token"),
    [
        ("a1" * 10, True),  # 20 letters and digits: the shortest token
        ("A1" * 10, True),  # capitals too
        ("a1" * 9 + "a", False),  # 19: a login
        ("a" * 25, False),  # letters only: a login, however long
        ("1" * 25, False),  # digits only: a number
        ("a1!" * 8, False),  # punctuation: not a token's alphabet
    ],
)
def test_a_urls_user_is_a_token_from_twenty_letters_and_digits(user: str, token: bool) -> None:
    assert looks_like_token(user) is token


def _found(raw: dict[str, Any]) -> list[tuple[str, str, tuple[str, ...] | None]]:
    _, found = strip(raw, MODELS, SECRETS)
    return [(f.problem.path, f.problem.message, f.destination.where if f.destination is not None else None) for f in found]


def test_a_url_with_a_credential_goes_where_its_place_says() -> None:
    """The Git mirror's URL is the GitOps repository's (its token), an app's value its app's secret under its own key,
    and an s3:// URL outside the backup target is no S3 key."""
    assert _found({"iluvatar:ainur": {"gitMirror": {"url": "https://user:pw@git.example.org/homelab.git"}}}) == [
        (
            "iluvatar:ainur.gitMirror.url",
            "https://***@git.example.org/homelab.git: the user and password in it are a credential, in plain text; it is a private "
            "repository's access token, which goes in the secret iluvatar:gitopsToken: remove it and run `pulumi config set --secret "
            "iluvatar:gitopsToken <token>`; set gitops.private: true",
            ("iluvatar:gitopsToken",),
        )
    ]
    assert _found({"iluvatar:apps": [{"name": "wiki", "env": {"DATABASE_URL": "postgres://wiki:pw@db.example.org/wiki"}}]}) == [
        (
            "iluvatar:apps[0].env.DATABASE_URL",
            "postgres://***@db.example.org/wiki: the user and password in it are a credential, in plain text; it is a secret of wiki, "
            "which goes in the secret iluvatar:appSecrets.wiki.DATABASE_URL: remove it and run `pulumi config set --secret --path "
            "'iluvatar:appSecrets.wiki.DATABASE_URL' <value>`; declare it in apps[0].secrets as {name: DATABASE_URL}",
            ("iluvatar:appSecrets", "wiki", "DATABASE_URL"),
        )
    ]
    assert _found({"iluvatar:monitoring": {"receiver": {"webhook": {"url": "s3://id:secret@hooks.example.org/x"}}}}) == [
        (
            "iluvatar:monitoring.receiver.webhook.url",
            "s3://***@hooks.example.org/x: the user and password in it are a credential, in plain text; it is the webhook's bearer "
            "token, which goes in the secret iluvatar:alertReceiverSecret: remove it and run `pulumi config set --secret "
            "iluvatar:alertReceiverSecret <token>`",
            ("iluvatar:alertReceiverSecret",),
        )
    ]


def test_a_token_in_an_apps_value_goes_to_that_apps_secret_under_its_key() -> None:
    assert _found({"iluvatar:apps": [{"name": "wiki", "env": {"GH": "ghp_" + "a" * 36}}]}) == [
        (
            "iluvatar:apps[0].env.GH",
            "holds a GitHub token, in plain text; it is a secret of wiki, which goes in the secret iluvatar:appSecrets.wiki.GH: remove it "
            "and run `pulumi config set --secret --path 'iluvatar:appSecrets.wiki.GH' <value>`; declare it in apps[0].secrets as {name: GH}",
            ("iluvatar:appSecrets", "wiki", "GH"),
        )
    ]


def test_made_up_top_level_keys_whole() -> None:
    """strip on made-up keys: the connector the key's name says (static, or none: the generic secret), a placeholder
    said to be one, and the keys after a made-up one still kept."""
    cleaned, found = strip(
        {
            "iluvatar:staticAdminPassword": "hunter2",
            "iluvatar:oidcClientSecret": "hunter2",
            "iluvatar:ntfyToken": "changeme",
            "iluvatar:network": {"lan": "10.0.0.0/24"},
        },
        MODELS,
        SECRETS,
    )
    assert cleaned == {"iluvatar:network": {"lan": "10.0.0.0/24"}}
    assert [(f.problem.path, f.problem.message, f.destination.where if f.destination else None) for f in found] == [
        (
            "iluvatar:staticAdminPassword",
            "is a credential, in plain text, under a key Iluvatar does not read; it is the static admin's bcrypt hash (never the "
            "password itself), which goes in the secret iluvatar:identityConnectorSecret: remove it and run `pulumi config set --secret "
            "iluvatar:identityConnectorSecret \"$(htpasswd -nbBC 10 '' '<password>' | tr -d ':\\n')\"`",
            ("iluvatar:identityConnectorSecret",),
        ),
        (
            "iluvatar:oidcClientSecret",
            "is a credential, in plain text, under a key Iluvatar does not read; it is the sign-in connector's secret, which goes in the "
            "secret iluvatar:identityConnectorSecret: remove it and run `pulumi config set --secret iluvatar:identityConnectorSecret <value>`",
            ("iluvatar:identityConnectorSecret",),
        ),
        (
            "iluvatar:ntfyToken",
            "is a placeholder (changeme) for a credential, under a key Iluvatar does not read; it is ntfy's access token (sent as a "
            "bearer token; `ntfy token add <user>` makes one for a user), which goes in the secret iluvatar:alertReceiverSecret: remove "
            "it and run `pulumi config set --secret iluvatar:alertReceiverSecret <tk_...>`",
            ("iluvatar:alertReceiverSecret",),
        ),
    ]


@pytest.mark.parametrize("key", ["restic-passwd", "RESTIC_PASSPHRASE", "resticPassword"])
def test_a_restic_password_is_pulumis_to_make(key: str) -> None:
    assert destination(("backup",), key, {}, {}) == "Pulumi generates each restic repository's password (kept in its state, encrypted); remove it"


@pytest.mark.parametrize(
    ("key", "goes"), [("deploy-key", "iluvatar:gitopsSshPrivateKey"), ("api_key", "iluvatar:gitopsToken"), ("token", "iluvatar:gitopsToken")]
)
def test_a_gitops_credential_by_its_keys_words(key: str, goes: str) -> None:
    found = destination(("gitops",), key, {}, {})
    assert isinstance(found, Destination) and found.path == goes


def test_a_second_apps_secret_value_goes_under_that_apps_name() -> None:
    assert _found({"iluvatar:apps": [{"name": "wiki"}, {"name": "blog", "secrets": [{"name": "DB", "value": "hunter2"}]}]}) == [
        (
            "iluvatar:apps[1].secrets[0].value",
            "is a credential, in plain text; it is the value of blog's secret DB, which goes in the secret iluvatar:appSecrets.blog.DB: "
            "remove it and run `pulumi config set --secret --path 'iluvatar:appSecrets.blog.DB' <value>`",
            ("iluvatar:appSecrets", "blog", "DB"),
        )
    ]


TOKEN = "ghp_" + "a" * 36
APP_TOKEN = "holds a GitHub token, in plain text; it is "


def _app_secret(app: str, name: str) -> str:
    path = f"iluvatar:appSecrets.{app}.{name}"
    return f"which goes in the secret {path}: remove it and run `pulumi config set --secret --path '{path}' <value>`"


@pytest.mark.parametrize(
    ("apps", "path", "message", "where"),
    [
        # The whole of `apps` a token: no app, so the first's place and a made-up name.
        (TOKEN, "iluvatar:apps", f"a secret of <app>, {_app_secret('<app>', 'apps')}; declare it in apps[0].secrets as {{name: apps}}", "<app>"),
        # The second app a token: its own index, not the first's.
        (
            [{"name": "wiki"}, TOKEN],
            "iluvatar:apps[1]",
            f"a secret of <app>, {_app_secret('<app>', 'apps')}; declare it in apps[1].secrets as {{name: apps}}",
            "<app>",
        ),
        # An app's `secrets` a token, not a list: a secret under that key, not an entry of the list.
        (
            [{"name": "wiki", "secrets": TOKEN}],
            "iluvatar:apps[0].secrets",
            f"a secret of wiki, {_app_secret('wiki', 'secrets')}; declare it in apps[0].secrets as {{name: secrets}}",
            "wiki",
        ),
        # An entry of the list a token: that entry's secret (it has no name yet).
        (
            [{"name": "wiki", "secrets": [{"name": "DB"}, TOKEN]}],
            "iluvatar:apps[0].secrets[1]",
            f"the value of wiki's secret <name>, {_app_secret('wiki', '<name>')}",
            "wiki",
        ),
    ],
)
def test_a_token_anywhere_in_apps_goes_to_the_secret_its_place_names(apps: object, path: str, message: str, where: str) -> None:
    [(at, said, goes)] = _found({"iluvatar:apps": apps})
    assert (at, said) == (path, APP_TOKEN + message)
    assert goes is not None and goes[:2] == ("iluvatar:appSecrets", where)


def test_an_s3_access_key_in_snake_case_is_the_key_id() -> None:
    # `access_key` (MinIO's and restic's spelling) is read without its punctuation: the id, not the secret key.
    found = destination(("backup",), "access_key", {}, {})
    assert isinstance(found, Destination) and (found.path, found.value) == ("iluvatar:backupS3AccessKeyId", "<access key id>")


def test_a_step_past_a_lists_end_reads_as_nothing() -> None:
    assert _get({"iluvatar:apps": []}, "apps", 0) is None
    assert _get({"iluvatar:apps": [{"name": "a"}]}, "apps", 1, "name") is None
    assert _get({"iluvatar:apps": [{"name": "a"}]}, "apps", 0, "name") == "a"


def test_a_connector_type_that_is_not_text_gets_the_generic_secret() -> None:
    found = _identity({"iluvatar:identity": {"connector": {"type": ["github"]}}})
    assert (found.what, found.value) == ("the sign-in connector's secret", "<value>")


def test_an_encrypted_made_up_key_is_taken_out_and_sent_to_its_secret() -> None:
    cleaned, found = strip({"iluvatar:ntfyToken": Secure("v1:abc")}, MODELS, SECRETS)
    assert cleaned == {}
    assert [(f.problem.path, f.problem.message) for f in found] == [
        (
            "iluvatar:ntfyToken",
            "is not a key Iluvatar reads; ntfy's access token (sent as a bearer token; `ntfy token add <user>` makes one for a user) is "
            "the secret iluvatar:alertReceiverSecret: remove this one and run `pulumi config set --secret iluvatar:alertReceiverSecret <tk_...>`",
        )
    ]


def test_a_made_up_key_with_a_second_colon_is_read_whole_after_the_namespace() -> None:
    # `iluvatar:ntfy:token`: the key is `ntfy:token` (ntfy's), not its last part `token` (which names no service).
    [(path, message, where)] = _found({"iluvatar:ntfy:token": "hunter2"})
    assert (path, where) == ("iluvatar:ntfy:token", ("iluvatar:alertReceiverSecret",))
    assert message.startswith("is a credential, in plain text, under a key Iluvatar does not read; it is ntfy's access token")


def test_a_made_up_ldap_key_names_the_ldap_secret_in_a_stack_without_a_connector() -> None:
    found = top_level("ldapBindPassword", {})
    assert found is not None and (found.what, found.value) == ("the LDAP bind password", "<bind password>")


@pytest.mark.parametrize("key", ["resticPassword", "piPassword"])
def test_a_made_up_key_no_secret_takes_is_left_to_the_unknown_key_check(key: str) -> None:
    # restic's password is Pulumi's to make and the Pis take none: no secret to send it to, so no "goes in".
    assert top_level(key, {}) is None
    assert strip({f"iluvatar:{key}": "hunter2"}, MODELS, SECRETS) == ({f"iluvatar:{key}": "hunter2"}, [])


def test_a_bmcs_url_with_a_password_goes_to_the_bmc_passwords() -> None:
    [(path, message, where)] = _found({"iluvatar:nodes": [{"name": "a", "power": {"bmc": {"url": "https://admin:pw@10.0.0.5/"}}}]})
    assert (path, where) == ("iluvatar:nodes[0].power.bmc.url", ("iluvatar:bmcPasswords", "<BMC address>"))
    assert message.startswith("https://***@10.0.0.5/: the user and password in it are a credential, in plain text; it is the BMC's password")


def _webhook(url: str) -> list[tuple[str, str, tuple[str, ...] | None]]:
    return _found({"iluvatar:monitoring": {"receiver": {"webhook": {"url": url}}}})


WEBHOOK_TOKEN = (
    "it is the webhook's bearer token, which goes in the secret iluvatar:alertReceiverSecret: remove it and run "
    "`pulumi config set --secret iluvatar:alertReceiverSecret <token>`"
)


def test_a_chat_webhook_holding_a_token_is_one_problem() -> None:
    [(_, message, _)] = _webhook("https://hooks.slack.com/services/xoxb-1234567890abcdef")
    assert message.startswith("https://hooks.slack.com/... is Slack's incoming webhook")


@pytest.mark.parametrize("url", ["https://example.org/" + TOKEN, "https://[bad/" + TOKEN])
def test_a_token_in_a_url_with_no_credential_part_or_none_python_reads_is_found_by_its_form(url: str) -> None:
    assert [m for _, m, _ in _webhook(url)] == [f"holds a GitHub token, in plain text; {WEBHOOK_TOKEN}"]


def test_a_url_with_no_host_is_a_chat_webhook_by_its_path() -> None:
    [(_, message, _)] = _webhook("file:///hooks/" + "a" * 26)
    assert message.startswith("https:///... is Mattermost's incoming webhook")


def test_a_password_after_an_address_with_an_at_is_still_a_password() -> None:
    # The user is everything before the last "@" (as urlsplit reads the host): `me@example.org:hunter2`.
    assert [m for _, m, _ in _webhook("https://me@example.org:hunter2@hooks.example.org/x")] == [
        f"https://***@hooks.example.org/x: the user and password in it are a credential, in plain text; {WEBHOOK_TOKEN}"
    ]


def test_a_login_alone_stays_in_the_url_shown() -> None:
    assert [m for _, m, _ in _webhook("https://git@hooks.example.org/x?token=abc")] == [
        f"https://git@hooks.example.org/x?token=***: the token parameter in it is a credential, in plain text; {WEBHOOK_TOKEN}"
    ]


def test_a_placeholder_url_is_one_problem_not_also_its_credentials() -> None:
    assert [m for _, m, _ in _webhook("https://<user>:<password>@hooks.example.org/x")] == [
        "https://<user>:<password>@hooks.example.org/x is a placeholder: write your own value in its place (docs/reference/stack.md)"
    ]


def test_a_token_user_and_a_token_parameter_are_two_credentials() -> None:
    assert [m for _, m, _ in _webhook(f"https://{TOKEN}@hooks.example.org/x?token=abc")] == [
        f"https://***@hooks.example.org/x?token=***: the user and token parameter in it are a credential, in plain text; {WEBHOOK_TOKEN}"
    ]


def test_a_url_with_a_token_in_chart_values_is_one_problem() -> None:
    [(path, message, where)] = _found({"iluvatar:arda": {"cilium": {"values": {"x": f"https://me:{TOKEN}@h.example.org/"}}}})
    assert (path, where) == ("iluvatar:arda.cilium.values.x", None)
    assert message == (
        "https://***@h.example.org/: the user and password in it are a credential, in plain text in Cilium's chart values, and no "
        "secret key takes it; remove it (docs/reference/stack.md#secrets)"
    )


def test_a_urls_other_parameters_are_masked_by_their_key_or_their_form() -> None:
    # client_secret by its key (its value no token), id by its value's form (its key no credential's), page shown.
    query = "token=abc&client_secret=hunter2&id=abcdefghij0123456789&page=2"
    assert [m for _, m, _ in _webhook(f"https://hooks.example.org/x?{query}")] == [
        f"https://hooks.example.org/x?token=***&client_secret=***&id=***&page=2: the token parameter in it is a credential, in plain "
        f"text; {WEBHOOK_TOKEN}"
    ]


def test_a_token_in_chart_values_goes_to_no_secret() -> None:
    raw = {"iluvatar:arda": {"cilium": {"values": {"x": TOKEN}}}}
    assert strip(raw, MODELS, SECRETS)[0] == raw  # the value stays as written: the section is checked on without a second problem
    assert _found({"iluvatar:arda": {"cilium": {"values": {"x": TOKEN}}}}) == [
        (
            "iluvatar:arda.cilium.values.x",
            "holds a GitHub token, in plain text; no secret key takes Cilium's chart values; remove it (docs/reference/stack.md#secrets)",
            None,
        )
    ]


def test_a_token_in_a_bmcs_settings_goes_to_the_bmc_passwords() -> None:
    # The value alone is read (not the mapping it is in): the address is a placeholder to fill in.
    [(path, message, where)] = _found({"iluvatar:nodes": [{"name": "a", "power": {"bmc": {"address": "10.0.0.5", "user": TOKEN}}}]})
    assert (path, where) == ("iluvatar:nodes[0].power.bmc.user", ("iluvatar:bmcPasswords", "<BMC address>"))
    assert message.startswith("holds a GitHub token, in plain text; it is the BMC's password")


def test_a_credential_key_in_chart_values_is_refused_for_text_or_a_number_never_a_switch() -> None:
    raw = {"iluvatar:arda": {"cilium": {"values": {"auth": {"password": "hunter2", "token": True, "secret": "", "apiKey": 5}}}}}
    cleaned, found = strip(raw, MODELS, SECRETS)
    assert cleaned == {"iluvatar:arda": {"cilium": {"values": {"auth": {"token": True, "secret": ""}}}}}
    said = (
        "is a credential, in plain text in Cilium's chart values, which the stack file and every render hold as written, and no "
        "secret key takes it; remove it (docs/reference/stack.md#secrets)"
    )
    assert [(f.problem.path, f.problem.message) for f in found] == [
        ("iluvatar:arda.cilium.values.auth.password", said),
        ("iluvatar:arda.cilium.values.auth.apiKey", said),
    ]


def test_a_bmc_password_goes_under_the_address_written_beside_it() -> None:
    [(path, _, where)] = _found({"iluvatar:nodes": [{"name": "a", "power": {"bmc": {"address": "10.0.0.5", "password": "hunter2"}}}]})
    assert (path, where) == ("iluvatar:nodes[0].power.bmc.password", ("iluvatar:bmcPasswords", "10.0.0.5"))


def test_the_keys_after_a_credential_are_kept() -> None:
    raw = {"iluvatar:monitoring": {"receiver": {"ntfy": {"token": "hunter2", "url": "https://ntfy.sh/alerts", "topic": "alerts"}}}}
    cleaned, found = strip(raw, MODELS, SECRETS)
    assert cleaned == {"iluvatar:monitoring": {"receiver": {"ntfy": {"url": "https://ntfy.sh/alerts", "topic": "alerts"}}}}
    assert [f.problem.path for f in found] == ["iluvatar:monitoring.receiver.ntfy.token"]


def test_a_client_secret_pasted_as_the_client_id_is_said_and_the_id_kept() -> None:
    # Kept: the connector is checked on as if an id were given (one mistake, one problem). Under an unknown key, or in
    # another form, the same text is no client id.
    secret = "0123456789abcdef0123456789abcdef01234567"
    raw = {"iluvatar:identity": {"connector": {"type": "github", "clientId": secret, "clientID": secret}}}
    cleaned, found = strip(raw, MODELS, SECRETS)
    assert cleaned == raw
    assert [(f.problem.path, f.problem.message, f.destination.where if f.destination else None) for f in found] == [
        (
            "iluvatar:identity.connector.clientId",
            "holds 40 hex digits, a GitHub OAuth app's client secret, in plain text (the app's client id is the other value on its page: "
            "Iv1. or Ov23 and 16 characters, or 20 hex digits); it is the GitHub OAuth app's client secret, which goes in the secret "
            "iluvatar:identityConnectorSecret: remove it and run `pulumi config set --secret iluvatar:identityConnectorSecret <client secret>`",
            ("iluvatar:identityConnectorSecret",),
        )
    ]
    assert strip({"iluvatar:identity": {"connector": {"type": "github", "clientId": secret.upper()}}}, MODELS, SECRETS)[1] == []
    # The value's form names GitHub's client secret whatever type the connector has (here none).
    [(_, message, _)] = _found({"iluvatar:identity": {"connector": {"clientId": secret}}})
    assert message.endswith(
        "it is the GitHub OAuth app's client secret, which goes in the secret iluvatar:identityConnectorSecret: remove it "
        "and run `pulumi config set --secret iluvatar:identityConnectorSecret <client secret>`"
    )


def test_a_credential_in_a_list_in_chart_values_is_still_in_chart_values() -> None:
    cleaned, found = strip({"iluvatar:arda": {"cilium": {"values": {"list": [{"password": "hunter2"}]}}}}, MODELS, SECRETS)
    assert cleaned == {"iluvatar:arda": {"cilium": {"values": {"list": [{}]}}}}
    assert [(f.problem.path, f.problem.message) for f in found] == [
        (
            "iluvatar:arda.cilium.values.list[0].password",
            "is a credential, in plain text in Cilium's chart values, which the stack file and every render hold as written, and no "
            "secret key takes it; remove it (docs/reference/stack.md#secrets)",
        )
    ]


def test_a_placeholder_is_kept_and_so_are_the_keys_after_it() -> None:
    raw = {"iluvatar:monitoring": {"receiver": {"ntfy": {"url": "https://ntfy.sh/<topic>", "topic": "alerts"}}}}
    cleaned, found = strip(raw, MODELS, SECRETS)
    assert cleaned == raw
    assert [(f.problem.path, f.problem.message) for f in found] == [
        (
            "iluvatar:monitoring.receiver.ntfy.url",
            "https://ntfy.sh/<topic> is a placeholder: write your own value in its place (docs/reference/stack.md)",
        )
    ]


def test_every_key_after_another_namespaces_or_a_known_section_is_kept() -> None:
    raw = {"aws:region": "eu-west-1", "iluvatar:network": {"lan": "10.0.0.0/24"}, "iluvatar:apps": [], "iluvatar:somethingElse": 1}
    assert strip(raw, MODELS, SECRETS) == (raw, [])


# A kernel argument as the summary prints it (masked_kernel_arg): a URL cut to its scheme and host wherever a credential
# sits after it (userinfo, a path segment, the query, a `;` parameter, the fragment), a host label in a token's form
# masked, a value that is no URL masked whole if a part of it is in one; flags and plain values as written.
@pytest.mark.parametrize(
    ("arg", "shown"),
    [
        ("talos.config=https://u:PW@cfg.lan/c", "talos.config=https://cfg.lan/…"),
        ("talos.config=https://JOINSECRET0123456789abcdef@cfg.lan/", "talos.config=https://cfg.lan/"),
        ("talos.config=https://cfg.lan/m/JOINSECRET0123456789abcdef", "talos.config=https://cfg.lan/…"),
        ("talos.config=https://cfg.lan/c?token=TOKSECRET&node=1", "talos.config=https://cfg.lan/…"),
        ("talos.config=https://cfg.lan/c?a=1;jointoken=JOINSECRET", "talos.config=https://cfg.lan/…"),
        ("talos.config=https://cfg.lan/c#jointoken=JOINSECRET0123456789", "talos.config=https://cfg.lan/…"),
        ("talos.config=https://cfg.lan#JOINSECRET0123456789abcdef", "talos.config=https://cfg.lan/…"),
        ("talos.config=https://b.s3.amazonaws.com/m.yaml?X-Amz-Signature=abc", "talos.config=https://b.s3.amazonaws.com/…"),
        ("talos.config=https://abcdef0123456789abcdef01.lambda-url.on.aws/", "talos.config=https://***.lambda-url.on.aws/"),
        ("talos.config=http://192.168.0.5:8080/configs/${mac}.yaml", "talos.config=http://192.168.0.5:8080/…"),
        ("siderolink.api=grpc://omni.lan:8090?jointoken=JOINSECRET0123456789", "siderolink.api=grpc://omni.lan:8090/…"),
        ("talos.config=https://cfg.lan/", "talos.config=https://cfg.lan/"),
        ("talos.config=https://cfg.lan", "talos.config=https://cfg.lan"),
        ("talos.config=cfg.lan/m/JOINSECRET0123456789abcdef", "talos.config=***"),
        ("talos.config=x,https://cfg.lan/c", "talos.config=***"),
        ("talos.config.inline=bWFjaGluZTogCiAgdG9rZW46IGFiY2RlZg==", "talos.config.inline=***"),
        ("console=ttyS2,1500000", "console=ttyS2,1500000"),
        ("ip=192.168.0.21::192.168.0.1:255.255.255.0::eth0:off", "ip=192.168.0.21::192.168.0.1:255.255.255.0::eth0:off"),
        ("quiet", "quiet"),
        # talos.environment=KEY=VALUE: VALUE never (a proxy's password, a cloud's key); KEY=VALUE in another argument's
        # value where KEY names a credential.
        ("talos.environment=PASSWORD=hunter2", "talos.environment=PASSWORD=***"),
        ("talos.environment=HTTPS_PROXY=http://proxy.lan:3128", "talos.environment=HTTPS_PROXY=***"),
        ("talos.environment=GODEBUG=x509sha1=1", "talos.environment=GODEBUG=***"),
        ("module.opt=password=abc", "module.opt=password=***"),
        ("module.opt=mode=fast", "module.opt=mode=fast"),
    ],
)
def test_a_kernel_argument_is_printed_without_what_may_hold_a_credential(arg: str, shown: str) -> None:
    assert masked_kernel_arg(arg) == shown
