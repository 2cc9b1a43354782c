"""Credentials written where a service's own docs put them: found anywhere in the stack's plain config, and sent to
the one secret key each belongs in, with the exact `pulumi config set --secret` command that puts it there.

A stack gives every credential one way: a Pulumi secret under its own key (`iluvatar:alertReceiverSecret`,
`iluvatar:identityConnectorSecret`, `iluvatar:bmcPasswords["<address>"]`, `iluvatar:appSecrets.<app>.<name>`, the S3
and Git keys...). A user who follows ntfy's, Dex's or the BMC's docs writes it beside the rest instead
(`ntfy.token`, `connector.clientSecret`, `bindPW`, `bmc.password`, a secret entry's `value`), or inside a value (a
URL's `user:password@`, a `?token=` parameter, a chat service's webhook URL, which is itself the credential, a
GitHub token pasted as a client id). Each is refused here, before the model sees the section, by its path and
never by its value; the rest of the section is then checked as if it were not there, so one mistake is one
problem (not also "is not a known key; did you mean clientId?", nor the secret's own "is required").

`strip(config)` returns the config without them and the problems, each with the secret key it belongs in
(`Found.where`), so `stacks.load` reports no "is required" for a secret the user did give, in the wrong place.
"""

from __future__ import annotations

import base64
import difflib
import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, parse_qsl, urlsplit, urlunsplit

from pydantic import BaseModel

from stacks.errors import Problem, show
from stacks.secrets import Secure, config_path

NAMESPACE = "iluvatar"
SECRETS_DOC = "docs/reference/stack.md#secrets"
STACK_DOC = "docs/reference/stack.md"

# A key a service's docs use for a credential, by its last word (camelCase, snake_case and kebab-case alike).
_ENDINGS = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "apikey",
    "privatekey",
    "secretkey",
    "accesskey",
    "accesskeyid",
    "bindpw",
    "credential",
    "credentials",
    # An HTTP header a webhook's docs put its credential in (`Authorization: Bearer ...`).
    "authorization",
)
_NAMES = frozenset({"pass", "pwd", "pw", "psk", "sshkey"})
# Keys that name where a credential is (a Secret's name, a file), or switch one on, rather than hold it.
_REFERENCES = ("name", "ref", "file", "path", "enabled", "secretname", "keyref", "selector", "mode", "type", "length", "ttl")
_NOT_HOLDERS = ("existing", "create", "use", "enable", "disable", "generate", "auto")
# Keys that are a credential only where they are: a Dex static password's `hash`, an app secret's `value`.
_IN_PLACE = {("Connector", "hash"), ("Connector", "passwordHash"), ("AppSecret", "value"), ("AppSecret", "data")}
# Known keys whose value, in this form, is a credential pasted in the wrong box: a GitHub OAuth app's client secret is
# 40 hex digits, its client id `Iv1.`/`Ov23` and 16 characters, or 20 hex digits (the app's settings page shows both).
_MISPLACED = {("Connector", "clientId"): re.compile(r"^[0-9a-f]{40}$")}


def _norm(key: str) -> str:
    """A key lower-case and without its punctuation: `bind_PW`, `bindPw` and `bind-pw` are one key."""
    return re.sub(r"[^a-z0-9]", "", key.lower())


def credential_key(key: str) -> bool:
    """Whether a key is one a service's docs hold a credential under (`token`, `clientSecret`, `bindPW`, `password`...)."""
    norm = _norm(key)
    if not norm or norm.startswith(_NOT_HOLDERS) or norm.endswith(_REFERENCES):
        return False
    return norm in _NAMES or norm.endswith(_ENDINGS)


# A PEM private key base64-encoded whole, as Helm values carry one (Cilium's `tls.ca.key`, `hubble.tls.server.key`):
# the encoding of its first line, cut at the last whole 3-byte group so it does not depend on what follows.
_PEM_KEYS = ("PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "DSA PRIVATE KEY", "OPENSSH PRIVATE KEY", "ENCRYPTED PRIVATE KEY")
_PEM_KEYS_BASE64 = "|".join(
    re.escape(base64.b64encode(head[: len(head) // 3 * 3]).decode()) for head in (f"-----BEGIN {k}-----".encode() for k in _PEM_KEYS)
)

# Values that are a credential whatever key holds them, by the form their issuer gives them.
TOKEN_FORMS: tuple[tuple[re.Pattern[str], str], ...] = (
    # GitHub's token prefixes (docs.github.com, "About authentication to GitHub": ghp_, gho_, ghu_, ghs_, ghr_, github_pat_).
    (re.compile(r"\b(gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{20,})"), "a GitHub token"),
    (re.compile(r"\bglpat-[A-Za-z0-9_-]{20,}"), "a GitLab token"),
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"), "a Slack token"),
    (re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"), "an AWS access key id"),
    # ntfy's access tokens: `tk_` and 29 letters and digits (ntfy's user/token.go, `GenerateToken`).
    (re.compile(r"\btk_[a-z0-9]{29}\b"), "an ntfy access token"),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"), "a private key"),
    (re.compile(rf"(^|\s)({_PEM_KEYS_BASE64})"), "a base64-encoded private key"),
    (re.compile(r"^\$2[aby]?\$\d\d\$[./A-Za-z0-9]{53}$"), "a bcrypt password hash"),
    # An HTTP Authorization header's value (RFC 9110 section 11.4: a scheme, then the credentials), copied whole.
    (re.compile(r"^(Bearer|Basic|Token)\s+\S{8,}$", re.IGNORECASE), "an HTTP Authorization header's credential"),
)
# URL parameters that carry a credential (ntfy's `auth`, most services' `token`, `key`, a signed URL's `sig`, and
# SideroLink's `jointoken`: the kernel argument `siderolink.api=grpc://<host>:8090?jointoken=<token>`, Talos's own
# example at cmd/talosctl/cmd/mgmt/cluster/create/cmd.go:143, v1.13.9).
_QUERY_CREDENTIALS = frozenset(
    {"token", "access_token", "accesstoken", "auth", "key", "apikey", "api_key", "password", "secret", "sig", "signature", "jointoken"}
)
# Kernel arguments whose whole value is a credential: `talos.config.inline` is a machine config, base64 (and zstd)
# encoded, with the machine's tokens and CA keys in it (KernelParamConfigInline, pkg/machinery/constants/constants.go:124
# at v1.13.9), and Talos boots it in place of the config Iluvatar serves.
CREDENTIAL_KERNEL_ARGS = frozenset({"talos.config.inline"})
# Kernel arguments whose value is KEY=VALUE, an environment variable: `talos.environment` is set for Talos's own
# services, once for each time it is written (KernelParamEnvironment, pkg/machinery/constants/constants.go:96, read by
# internal/pkg/environment/environment.go:23-35 at v1.14.0-rc.1), and it is where a proxy's URL (and its password), a
# mirror's or a cloud's keys go. Its VALUE is never printed: what it may hold has no one form.
ENVIRONMENT_KERNEL_ARGS = frozenset({"talos.environment"})
# KEY of a KEY=VALUE inside another argument's value, as environment variables and module options are named.
_INNER_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
# Chat services whose incoming-webhook URL is itself the credential (anyone with it posts to the channel), and
# which read their own message form, not Alertmanager's webhook JSON (each service's incoming-webhook docs).
CHAT_WEBHOOKS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^hooks\.slack\.com$"), "Slack"),
    (re.compile(r"^(canary\.|ptb\.)?discord(app)?\.com$"), "Discord"),
    (re.compile(r"(^|\.)webhook\.office\.com$|(^|\.)logic\.azure\.com$"), "Microsoft Teams"),
    (re.compile(r"^chat\.googleapis\.com$"), "Google Chat"),
    (re.compile(r"^api\.telegram\.org$"), "Telegram"),
)
# Self-hosted chat servers, on any host: their incoming webhook is a path holding its key. Mattermost's is
# /hooks/<26-character id> (server/public/model/utils.go, NewId: 26 lower-case base32 characters); Rocket.Chat's
# /hooks/<integration id>/<token> (its integrations' "Webhook URL").
CHAT_WEBHOOK_PATHS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^/hooks/[a-z0-9]{26}/?$"), "Mattermost"),
    (re.compile(r"^/hooks/[A-Za-z0-9]{17}/[A-Za-z0-9]{20,}/?$"), "Rocket.Chat"),
)
# Zulip's incoming webhooks, on any host (Zulip Cloud's `<org>.zulipchat.com` or a server of one's own): each integration
# at /api/v1/external/<name>, reading its own service's JSON (zulip zerver/webhooks/<name>/view.py); Alertmanager's is
# `alertmanager`. Zulip takes the bot's API key only as the URL's `api_key` parameter (its `webhook_view` decorator reads
# it from the request's parameters; zerver/webhooks/alertmanager/doc.md: `?api_key=...&stream=...`), never a bearer token.
ZULIP_WEBHOOK = re.compile(r"^/api/v1/external/([A-Za-z0-9_]+)/?$")
# Values left where a real one goes: the `<value>` of a command copied whole, or a word meaning "change me" (an address in
# brackets, `Me <me@example.org>`, is a display name's, not a placeholder).
PLACEHOLDER = re.compile(
    r"<(?![^<>@\s]+@[^<>@\s]+>)[A-Za-z][^<>]*>|^(changeme|change-me|change_me|replaceme|replace-me|replace_me|your[-_].*|xxx+)$", re.IGNORECASE
)


def looks_like_token(text: str) -> bool:
    """Whether a URL's user is a token: one of the forms above, or 20 and more letters and digits with both in it (a
    person's login is shorter, or all letters)."""
    if any(form.search(text) for form, _ in TOKEN_FORMS):
        return True
    return len(text) >= 20 and re.fullmatch(r"[A-Za-z0-9_-]+", text) is not None and any(c.isdigit() for c in text) and any(c.isalpha() for c in text)


def placeholder(value: object) -> bool:
    return isinstance(value, str) and bool(PLACEHOLDER.search(value.strip()))


@dataclass(frozen=True)
class Destination:
    """The secret key a credential belongs in: the config key and the keys under it (`--path`), what it holds there,
    and what the command's value stands for."""

    key: str
    under: tuple[str, ...] = ()
    what: str = "the credential"
    value: str = "<value>"
    note: str = ""  # what else to change (e.g. `private: true`)
    # Another secret the same value gives (an S3 URL's key id beside its secret): its key and what its value stands for.
    also: tuple[str, str] | None = None

    @property
    def path(self) -> str:
        if self.key == BMC_PASSWORDS:
            # One password per BMC address, always quoted, as stacks.power spells it (an address has dots).
            return f"{NAMESPACE}:{self.key}" + "".join(f'["{u}"]' for u in self.under)
        return config_path(f"{NAMESPACE}:{self.key}", self.under)

    @property
    def command(self) -> str:
        flag = " --path" if self.under else ""
        path = f"'{self.path}'" if self.under else self.path
        return f"pulumi config set --secret{flag} {path} {self.value}"

    @property
    def commands(self) -> str:
        """The command (or, with `also`, both) that sets it, as a message quotes them."""
        if self.also is None:
            return f"`{self.command}`"
        return f"`{self.command}` and `pulumi config set --secret {NAMESPACE}:{self.also[0]} {self.also[1]}`"

    @property
    def where(self) -> tuple[str, ...]:
        return (f"{NAMESPACE}:{self.key}", *self.under)


@dataclass(frozen=True)
class Found:
    """A credential refused where it was written: the problem, and the secret it belongs in (None: no secret takes it)."""

    problem: Problem
    destination: Destination | None


# --- Where each credential belongs, by where it was written -----------------------------------------------------


def _text(value: object, fallback: str) -> str:
    return value if isinstance(value, str) and value.strip() else fallback


def _get(config: Mapping[str, Any], section: str, *steps: str | int) -> Any:
    value: Any = config.get(f"{NAMESPACE}:{section}")
    for step in steps:
        if isinstance(step, int):
            value = value[step] if isinstance(value, list) and step < len(value) else None
        else:
            value = value.get(step) if isinstance(value, Mapping) else None
    return value


BMC_PASSWORDS = "bmcPasswords"
_ALERT_SECRET = "alertReceiverSecret"  # noqa: S105 - the secret's config key, not a secret
_IDENTITY_SECRET = "identityConnectorSecret"  # noqa: S105 - the secret's config key, not a secret
_BCRYPT = "\"$(htpasswd -nbBC 10 '' '<password>' | tr -d ':\\n')\""
# Each connector's secret, and the value its `pulumi config set --secret` command takes (stacks.identity says the same).
CONNECTOR_SECRETS = {
    "github": ("the GitHub OAuth app's client secret", "<client secret>"),
    "ldap": ("the LDAP bind password", "<bind password>"),
    "static": ("the static admin's bcrypt hash (never the password itself)", _BCRYPT),
}


def _monitoring(parts: tuple[str | int, ...]) -> Destination:
    kind = parts[parts.index("receiver") + 1] if "receiver" in parts and parts.index("receiver") + 1 < len(parts) else None
    if kind == "email":
        return Destination(_ALERT_SECRET, what="the SMTP password", value="<password>")
    if kind == "ntfy":
        return Destination(
            _ALERT_SECRET, what="ntfy's access token (sent as a bearer token; `ntfy token add <user>` makes one for a user)", value="<tk_...>"
        )
    if kind == "webhook":
        return Destination(_ALERT_SECRET, what="the webhook's bearer token", value="<token>")
    return Destination(_ALERT_SECRET, what="the alert receiver's password or token", value="<value>")


def _identity(config: Mapping[str, Any], named: str | None = None) -> Destination:
    """The connector's secret: of the connector the stack has, or (a made-up top-level key) the one its name says."""
    kind = named or _get(config, "identity", "connector", "type")
    what, value = CONNECTOR_SECRETS.get(kind if isinstance(kind, str) else "", ("the sign-in connector's secret", "<value>"))
    return Destination(_IDENTITY_SECRET, what=what, value=value)


def _node(parts: tuple[str | int, ...], holder: Mapping[str, Any]) -> Destination | str:
    if "bmc" in parts or "power" in parts:
        address = _text(holder.get("address"), "<BMC address>")
        return Destination(BMC_PASSWORDS, (address,), what="the BMC's password", value="<password>")
    return (
        "a machine takes no password here: Talos has no login, and Pulumi reaches the Pis with SSH keys "
        "(ainur.sshAuthorizedKeys, and the secret iluvatar:ainurSshPrivateKey); remove it"
    )


def _app(parts: tuple[str | int, ...], key: str, config: Mapping[str, Any]) -> Destination:
    i = parts[1] if len(parts) > 1 and isinstance(parts[1], int) else 0
    app = _text(_get(config, "apps", i, "name"), "<app>")
    if len(parts) > 3 and parts[2] == "secrets" and isinstance(parts[3], int):
        name = _text(_get(config, "apps", i, "secrets", parts[3], "name"), "<name>")
        return Destination("appSecrets", (app, name), what=f"the value of {app}'s secret {name}")
    return Destination("appSecrets", (app, key), what=f"a secret of {app}", note=f"declare it in apps[{i}].secrets as {{name: {key}}}")


def _backup(key: str) -> Destination | str:
    norm = _norm(key)
    if norm.endswith(("password", "passwd", "passphrase")):
        return "Pulumi generates each restic repository's password (kept in its state, encrypted); remove it"
    if norm.endswith(("id", "accesskey")) and "secret" not in norm:
        return Destination("backupS3AccessKeyId", what="the S3 access key id", value="<access key id>")
    return Destination("backupS3SecretAccessKey", what="the S3 secret access key", value="<secret access key>")


def _git(key: str) -> Destination:
    norm = _norm(key)
    if "key" in norm and "api" not in norm:
        return Destination("gitopsSshPrivateKey", what="the repository's SSH deploy key", value="< deploy_key")
    return Destination("gitopsToken", what="a private repository's access token", value="<token>", note="set gitops.private: true")


def destination(parts: tuple[str | int, ...], key: str, holder: Mapping[str, Any], config: Mapping[str, Any]) -> Destination | str:
    """The secret key a credential written at `parts` (under `iluvatar:`) belongs in, or why no secret key takes it.
    `holder` is the mapping it was written in, `config` the whole raw config (an app's, a BMC's name is read there)."""
    section = parts[0] if parts else ""
    if section == "monitoring":
        return _monitoring(parts)
    if section == "identity":
        return _identity(config)
    if section == "nodes":
        return _node(parts, holder)
    if section == "apps":
        return _app(parts, key, config)
    if section == "backup":
        return _backup(key)
    if section == "gitops" or (section == "ainur" and "gitMirror" in parts):
        return _git(key)
    if section == "ainur":
        norm = _norm(key)
        if "key" in norm:
            note = "sshAuthorizedKeys takes its public half (the .pub file)" if "sshAuthorizedKeys" in parts else ""
            return Destination("ainurSshPrivateKey", what="the SSH key Pulumi logs in to the Pis with", value="< ~/.ssh/id_ed25519", note=note)
        return "the Pis take no password: Pulumi logs in with an SSH key (iluvatar:ainurSshPrivateKey, or your SSH agent); remove it"
    if section in ("cloudflare", "edge"):
        return Destination("cloudflareApiToken", what="the Cloudflare API token", value="<token>")
    if section == "remoteAccess":
        if "headscale" in parts or _get(config, "remoteAccess", "flavour") == "headscale":
            return "Headscale takes no credential: Pulumi asks it for the subnet router's key itself; remove it"
        return Destination("tailscaleOauthClientSecret", what="the Tailscale OAuth client's secret", value="<tskey-client-...>")
    if section == "storage" and "nfs" in parts:
        return "NFS takes no password: the server lets in the client addresses its export allows (Arda's machines); remove it"
    return f"Iluvatar reads no credential at {section or 'this key'}, and no secret key takes it; remove it"


# A top-level key a user makes up for a credential (`iluvatar:ntfyToken`), by the words in it: where that credential goes.
_TOP_LEVEL: tuple[tuple[frozenset[str], tuple[str | int, ...]], ...] = (
    (frozenset({"ntfy"}), ("monitoring", "receiver", "ntfy")),
    (frozenset({"smtp", "email", "mail"}), ("monitoring", "receiver", "email")),
    (frozenset({"webhook", "alert", "alerts", "alertmanager"}), ("monitoring", "receiver", "webhook")),
    (frozenset({"oauth", "client", "dex", "ldap", "bind", "connector", "identity", "oidc", "sso", "static"}), ("identity", "connector")),
    (frozenset({"bmc", "turing"}), ("nodes", "power", "bmc")),
    (frozenset({"s3", "backup", "backups", "aws", "minio", "restic"}), ("backup",)),
    (frozenset({"cloudflare", "cf"}), ("cloudflare",)),
    (frozenset({"gitops", "git", "github", "gitlab", "repo", "repository", "argocd", "deploy"}), ("gitops",)),
    (frozenset({"ssh", "ainur", "pi", "pis"}), ("ainur",)),
)


def words(key: str) -> list[str]:
    """A key's words, lower-case: `githubClientSecret` -> github, client, secret; `s3_secret-key` -> s3, secret, key."""
    return re.findall(r"[a-z0-9]+", re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", key).lower())


def _bmc_holder(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """The first BMC the inventory names (a top-level BMC password is its, most likely)."""
    nodes = config.get(f"{NAMESPACE}:nodes")
    for node in nodes if isinstance(nodes, list) else []:
        bmc = node["power"].get("bmc") if isinstance(node, Mapping) and isinstance(node.get("power"), Mapping) else None
        if isinstance(bmc, Mapping):
            return bmc
    return {}


def top_level(key: str, config: Mapping[str, Any]) -> Destination | None:
    """Where a credential under a top-level key Iluvatar does not read (`ntfyToken`, `cloudflareApiKey`) belongs, by the
    words in its name, or None when they name no service here."""
    return _top_level(key, config)


def _top_level(key: str, config: Mapping[str, Any]) -> Destination | None:
    said = set(words(key))
    for names, parts in _TOP_LEVEL:
        if said & names and parts[0] == "identity":
            return _identity(config, next((k for k in ("github", "ldap", "static") if k in said), None))
        if said & names:
            holder = _bmc_holder(config) if parts[0] == "nodes" else {}
            found = destination(parts, key, holder, config)
            return found if isinstance(found, Destination) else None
    return None


# --- Finding them ------------------------------------------------------------------------------------------------


@dataclass
class _Walk:
    config: Mapping[str, Any]
    found: list[Found]

    def add(self, problem: Problem, dest: Destination | None = None) -> None:
        self.found.append(Found(problem, dest))


def _say(what_here: str, dest: Destination | str, secure: bool = False) -> tuple[str, Destination | None]:
    """The message for a credential written here (`what_here`: e.g. "is a credential, in plain text"), and its destination."""
    if isinstance(dest, str):
        return f"{what_here}; {dest} ({SECRETS_DOC})", None
    note = f"; {dest.note}" if dest.note else ""
    if secure:
        return f"is encrypted here, but Iluvatar reads {dest.what} from the secret {dest.path} only: remove it and run {dest.commands}{note}", dest
    return f"{what_here}; it is {dest.what}, which goes in the secret {dest.path}: remove it and run {dest.commands}{note}", dest


def _model_fields(model: type[BaseModel]) -> dict[str, Any]:
    return {f.alias or name: f.annotation for name, f in model.model_fields.items()}


def _innermost(annotation: Any) -> type[BaseModel] | None:
    """The model a field's annotation holds, through lists, unions and `Annotated` (whose `__args__` start with the
    annotated type), or None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _innermost(arg)
        if found is not None:
            return found
    return None


# The free-form mappings a stack passes through (Talos patches, Helm values): what each is, for the message.
FREE_FORM = {
    ("Node", "talosPatches"): "a Talos patch",
    ("Arda", "patches"): "a Talos patch",
    ("Cilium", "values"): "Cilium's chart values",
    ("ArgoCd", "values"): "Argo CD's chart values",
}


def _walk(w: _Walk, value: Any, model: type[BaseModel] | None, parts: tuple[str | int, ...], free: str | None) -> Any:
    """`value` without the credentials under it; each one found is added to `w`."""
    if isinstance(value, list):
        return [_walk(w, v, model, (*parts, i), free) for i, v in enumerate(value)]
    if isinstance(value, str):
        return _value(w, value, parts, free)
    if not isinstance(value, Mapping):
        return value
    fields = _model_fields(model) if model is not None and free is None else {}
    out: dict[str, Any] = {}
    for k, v in value.items():
        key = str(k)
        here = (*parts, key)
        if key in fields and model is not None and isinstance(v, str) and (form := _MISPLACED.get((model.__name__, key))) and form.match(v):
            message, found = _say(
                "holds 40 hex digits, a GitHub OAuth app's client secret, in plain text (the app's client id is the other value on "
                "its page: Iv1. or Ov23 and 16 characters, or 20 hex digits)",
                _identity(w.config, "github"),
            )
            w.add(Problem(_path(here), message), found)
            out[k] = v  # the section is checked on as if the id were given: one mistake, one problem
            continue
        if key in fields:
            inner = FREE_FORM.get((model.__name__, key)) if model is not None else None
            if inner is None and _placeholders(w, v, here):
                out[k] = v
                continue
            out[k] = _walk(w, v, _innermost(fields[key]), here, inner)
            continue
        in_place = model is not None and free is None and ((model.__name__, key) in _IN_PLACE or _secret_value(model, key, v, fields))
        holds = not isinstance(v, Mapping | list) and (
            free is None or (isinstance(v, str | int | float | Secure) and not isinstance(v, bool) and v != "")
        )
        if holds and (in_place or credential_key(key)):
            _key(w, here, key, v, value, free)
            continue
        # An unknown key (pydantic names it) or a free-form one: its credentials are found all the same.
        out[k] = _walk(w, v, None, here, free)
    return out


def _secret_value(model: type[BaseModel], key: str, value: Any, fields: Mapping[str, Any]) -> bool:
    """Whether an app secret entry's unknown key holds its value (`default: hunter2`, `initial: ...`): text under a key
    that is no misspelling of the entry's own (`form: jellyfin` is `from`, and pydantic says so)."""
    return model.__name__ == "AppSecret" and isinstance(value, str) and not difflib.get_close_matches(key, list(fields), n=1, cutoff=0.6)


def _placeholders(w: _Walk, value: Any, parts: tuple[str | int, ...]) -> bool:
    """Whether a key's value (text, or a list of text) is or holds a placeholder; each one is added to `w`."""
    items = [(parts, value)] if isinstance(value, str) else [((*parts, i), v) for i, v in enumerate(value)] if isinstance(value, list) else []
    marked = [(where, v) for where, v in items if placeholder(v)]
    for where, v in marked:
        w.add(Problem(_path(where), f"{show(v)} is a placeholder: write your own value in its place ({STACK_DOC})"))
    return bool(marked)


def _path(parts: tuple[str | int, ...]) -> str:
    return config_path(f"{NAMESPACE}:{parts[0]}", parts[1:])


def _key(w: _Walk, parts: tuple[str | int, ...], key: str, value: Any, holder: Mapping[str, Any], free: str | None) -> None:
    path = _path(parts)
    if free is not None:
        w.add(
            Problem(
                path,
                f"is a credential, in plain text in {free}, which the stack file and every render hold as written, and no secret key "
                f"takes it; remove it ({SECRETS_DOC})",
            )
        )
        return
    dest = destination(parts, key, holder, w.config)
    here = f"is a placeholder ({show(value)}) for a credential" if placeholder(value) else "is a credential, in plain text"
    message, found = _say(here, dest, secure=isinstance(value, Secure))
    w.add(Problem(path, message), found)


# A URL as a kernel argument's value: its scheme, its authority (userinfo@host:port) and what follows (path, query,
# fragment), none of which is parsed further, since a credential may sit in any of them (a capability URL's random path
# segment, a presigned S3 URL's query, a token after `#` or `;`).
_KERNEL_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<authority>[^/?#]*)(?P<rest>.*)$", re.DOTALL)


def masked_kernel_arg(arg: str) -> str:
    """A kernel argument as it is safe to print: its name, and of its value only what can hold no credential. An argument
    of CREDENTIAL_KERNEL_ARGS, one whose name names a credential, a value in a token's form, and a value that is no URL
    with a part in one (between / ? # & ; = , : @) are `***`; of a KEY=VALUE value, VALUE is `***` in an argument of
    ENVIRONMENT_KERNEL_ARGS or where KEY names a credential; a URL is cut to <scheme>://<host>/ and `…` for whatever
    followed, its user and password dropped and a host label in a token's form `***`. A word with no `=` is a flag,
    printed whole. Such arguments are refused (strip); this is for what prints a stack's arguments all the same (the
    summary), so that nothing there ever echoes one."""
    name, eq, value = arg.partition("=")
    if not eq:
        return arg
    if name in CREDENTIAL_KERNEL_ARGS or credential_key(name) or any(form.search(value) for form, _ in TOKEN_FORMS):
        return f"{name}=***"
    key, inner_eq, _ = value.partition("=")
    if inner_eq and _INNER_KEY.match(key) and (name in ENVIRONMENT_KERNEL_ARGS or credential_key(key)):
        return f"{name}={key}=***"
    url = _KERNEL_URL.match(value.strip())
    if url is None:
        parts = re.split(r"[/?#&;=,:@]", value)
        return f"{name}=***" if "://" in value or any(looks_like_token(p) for p in parts) else arg
    host = url["authority"].rpartition("@")[2]
    host = ".".join("***" if looks_like_token(label) else label for label in host.split("."))
    rest = url["rest"] if url["rest"] in ("", "/") else "/…"
    return f"{name}={url['scheme']}://{host}{rest}"


def _kernel_arg_at(parts: tuple[str | int, ...]) -> bool:
    """Whether the value at `parts` is a kernel argument (arda.kernelArgs, or a patch's machine.install.extraKernelArgs),
    which is printed as masked_kernel_arg prints it wherever it is printed."""
    return parts[:2] == ("arda", "kernelArgs") or (len(parts) >= 2 and parts[-2] == "extraKernelArgs")


def environment_credential(arg: str) -> str | None:
    """What makes a `talos.environment=KEY=VALUE` kernel argument hold a credential, or None: KEY naming one, VALUE in a
    token's form or with a part in one, or VALUE a URL with a password or a token parameter."""
    name, _, value = arg.partition("=")
    if name not in ENVIRONMENT_KERNEL_ARGS:
        return None
    key, _, inner = value.partition("=")
    if credential_key(key):
        return f"{key} names a credential"
    try:
        url = urlsplit(inner.strip()) if "://" in inner else None
        password = url is not None and url.password is not None
    except ValueError:
        password = False
    if password or (url is not None and any(k.lower() in _QUERY_CREDENTIALS for k, _ in parse_qsl(url.query, keep_blank_values=True))):
        return f"{key} is a URL with a credential in it"
    if any(form.search(inner) for form, _ in TOKEN_FORMS) or any(looks_like_token(p) for p in re.split(r"[/?#&;=,:@]", inner)):
        return f"{key}'s value is in a token's form"
    return None


def _value(w: _Walk, value: str, parts: tuple[str | int, ...], free: str | None) -> str:
    """The string as written; each credential in it (a URL's userinfo or token parameter, a token's own form, a kernel
    argument that is one whole) is added to `w`."""
    if parts[:2] == ("arda", "kernelArgs") and value.partition("=")[0] in CREDENTIAL_KERNEL_ARGS:
        name = value.partition("=")[0]
        w.add(
            Problem(
                _path(parts),
                f"{name}=***: {name} is a whole Talos machine config, with the machine's tokens and keys, in plain text, and "
                f"Talos boots it in place of the config Iluvatar serves; remove it (Iluvatar writes each machine's config; "
                f"change it with arda.patches or nodes[].talosPatches) ({SECRETS_DOC})",
            )
        )
        return value
    if parts[:2] == ("arda", "kernelArgs") and (held := environment_credential(value)) is not None:
        w.add(
            Problem(
                _path(parts),
                f"{masked_kernel_arg(value)}: {held}, in plain text on the kernel line, which the Ainur serve over plain HTTP in "
                f"each {parts[2]} machine's iPXE script (plans.netboot.ipxe) and Image Factory keeps in the installer's "
                "schematic (plans.talos.schematic), and no secret key takes it; remove it, and give Talos's services what they "
                f"need without a credential (a proxy or registry mirror on the LAN that admits Arda's addresses) ({SECRETS_DOC})",
            )
        )
        return value
    if "://" in value and _url(w, value, parts, free):
        return value
    for form, what in TOKEN_FORMS:
        if form.search(value):
            key = next(str(p) for p in reversed(parts) if isinstance(p, str))  # parts start with the top-level key
            dest: Destination | str = destination(parts, key, {}, w.config) if free is None else f"no secret key takes {free}; remove it"
            message, found = _say(f"holds {what}, in plain text", dest)
            w.add(Problem(_path(parts), message), found)
            break
    return value


def _url(w: _Walk, value: str, parts: tuple[str | int, ...], free: str | None) -> bool:
    """Whether a URL carries a credential (added to `w`): a user and password, a token parameter, or a chat webhook's path."""
    path = _path(parts)
    try:
        url = urlsplit(value.strip())
        host = (url.hostname or "").lower()
    except ValueError:
        return False
    by_host = (service for form, service in CHAT_WEBHOOKS if form.search(host))
    service = next(by_host, None) or next((service for form, service in CHAT_WEBHOOK_PATHS if form.match(url.path)), None)
    if service is not None:
        w.add(
            Problem(
                path,
                f"https://{host}/... is {service}'s incoming webhook: its URL is itself the credential, here in plain text, and "
                f"{service} reads its own message form, not the JSON Alertmanager posts to a webhook; send alerts to ntfy (an app on "
                f"your phone) or e-mail instead, or to a bridge that reads Alertmanager's webhook ({SECRETS_DOC})",
            )
        )
        return True
    creds = [k for k, _ in parse_qsl(url.query, keep_blank_values=True) if k.lower() in _QUERY_CREDENTIALS]
    userinfo = url.netloc.rpartition("@")[0]  # "" without an "@"
    # A user and a password are a credential; a user alone only when it is a token (GitHub takes one as the user of an
    # https URL): SSH names its login so (git@host), and Bitbucket's clone URLs carry the user's name.
    leaks = ":" in userinfo or (bool(userinfo) and looks_like_token(userinfo))
    if not creds and not leaks:
        return False
    netloc = url.netloc.rpartition("@")[2] if leaks else url.netloc
    # The other parameters shown as written (what stays in the URL); a credential's value, or one under a key that
    # names a credential, or one in the form of a token, masked.
    query = "&".join(
        f"{k}=***" if k in creds or credential_key(k) or looks_like_token(v) else f"{k}={v}" for k, v in parse_qsl(url.query, keep_blank_values=True)
    )
    shown = urlunsplit((url.scheme, ("***@" if leaks else "") + netloc, url.path, query, url.fragment))
    if _kernel_arg_at(parts):
        shown = masked_kernel_arg(value)
    held = [*(["user and password" if ":" in userinfo else "user"] if leaks else []), *(f"{k} parameter" for k in creds)]
    inside = f"the {' and '.join(held)} in it {'are' if len(held) > 1 or ':' in userinfo else 'is'} a credential, in plain text"
    if free is not None:
        w.add(Problem(path, f"{shown}: {inside} in {free}, and no secret key takes it; remove it ({SECRETS_DOC})"))
        return True
    key = str(parts[-1])  # parts start with the top-level key
    message, found = _say(f"{shown}: {inside}", _url_destination(parts, key, url, w.config))
    w.add(Problem(path, message), found)
    return True


def _url_destination(parts: tuple[str | int, ...], key: str, url: SplitResult, config: Mapping[str, Any]) -> Destination | str:
    scheme = url.scheme
    if parts[:2] == ("monitoring", "receiver") and ZULIP_WEBHOOK.match(url.path):
        return Destination(_ALERT_SECRET, what="the Zulip bot's API key (Iluvatar adds it to the URL as api_key)", value="<api key>")
    if parts and parts[0] == "backup" and scheme.startswith("s3"):
        return Destination(
            "backupS3SecretAccessKey",
            what="the S3 secret access key (and its id)",
            value="<secret access key>",
            also=("backupS3AccessKeyId", "<access key id>"),
        )
    return destination(parts, key, {}, config)


def strip(config: Mapping[str, Any], models: Mapping[str, type[BaseModel]], secrets: Collection[str]) -> tuple[dict[str, Any], list[Found]]:
    """The raw config without the credentials written in its plain keys, and each one found.

    `models` maps each top-level key (`network`, `nodes`, ...) to the model of its value (of each item, for a list);
    `secrets` are the secret keys. A key that is neither is judged by its name: `iluvatar:ntfyToken` goes to ntfy's secret."""
    w = _Walk(config, [])
    out: dict[str, Any] = {}
    for full_key, value in config.items():
        ns, _, key = full_key.partition(":")
        if ns != NAMESPACE:
            out[full_key] = value
            continue
        if key in models:
            out[full_key] = _walk(w, value, models[key], (key,), None)
            continue
        if key not in secrets and _misnamed(w, full_key, value):
            continue
        out[full_key] = value
    return out, w.found


def _misnamed(w: _Walk, full_key: str, value: Any) -> bool:
    """Whether a top-level key Iluvatar does not know holds a credential (`iluvatar:ntfyToken`); it is added to `w`, sent
    where it belongs."""
    key = full_key.partition(":")[2]
    dest = _top_level(key, w.config) if credential_key(key) else None
    if dest is None:
        return False
    if isinstance(value, Secure):
        w.add(Problem(full_key, f"is not a key Iluvatar reads; {dest.what} is the secret {dest.path}: remove this one and run {dest.commands}"), dest)
        return True
    here = f"is a placeholder ({show(value)}) for a credential" if placeholder(value) else "is a credential, in plain text"
    message, _ = _say(f"{here}, under a key Iluvatar does not read", dest)
    w.add(Problem(full_key, message), dest)
    return True


def given(found: list[Found]) -> Iterator[tuple[str, ...]]:
    """Where each secret found in the wrong place belongs: its own "is required" is not said again."""
    for f in found:
        if f.destination is not None:
            yield f.destination.where
            if f.destination.also is not None:
                yield (f"{NAMESPACE}:{f.destination.also[0]}",)
