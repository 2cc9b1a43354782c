"""Stack config from Pulumi: the one place that reads `pulumi.Config`.

The program calls `load()` once; components receive the typed models it returns, never
Pulumi config. Invalid config stops the program with `pulumi.RunError`, which Pulumi
prints as one clean error (every problem, no traceback) before any resource exists.

It also reads back what the last deployment ran (the stack's own outputs), so that before anything
is created it refuses a disk or a machine leaving the inventory without being retired first (the
output `storage`, stacks.storage.check_removals), a version change no running machine could make
(the output `arda`, stacks.day2) and a DHCP mode the LAN is not ready for (the output `dnsmasqConf`, stacks.netboot_mode).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pulumi
from pulumi.runtime import config as runtime_config

from stacks import credentials, data, day2, encryption, identity, monitoring, netboot_mode, power, remote_access, secrets, storage
from stacks import outputs as exports
from stacks.errors import Problem, StackConfigError
from stacks.load import NAMESPACE, SECRETS, parse_stack
from stacks.model import Identity, StackConfig
from stacks.secrets import Secure
from stacks.warn import warnings

# The engine's own function behind a StackReference (its builtin provider reads the stack's last
# checkpoint), called synchronously: the answer is here before the first resource is registered.
READ_STACK_OUTPUTS = "pulumi:pulumi:readStackOutputs"
STORAGE_OUTPUT = exports.STORAGE
ARDA_OUTPUT = exports.ARDA
REMOTE_ACCESS_OUTPUT = exports.REMOTE_ACCESS
AINUR_OUTPUT = exports.AINUR
# The digest of kube-vip-services' template its roll step last finished with (plans.netboot.vip_roll), or "" when
# the step did not finish: what the day-2 plan compares, not the `ainur` output's own `kubeVip` (the program's).
KUBE_VIP_OUTPUT = exports.KUBE_VIP_ROLLED


def recorded_ainur(outputs: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The output `ainur` as the day-2 plan reads it: its `kubeVip` the roll step's own record where the deployment
    wrote one (a roll that failed or was cut short records "": the plan still names the roll), else the program's
    (a deployment of an older Iluvatar)."""
    ainur = outputs.get(AINUR_OUTPUT)
    if not isinstance(ainur, Mapping) or KUBE_VIP_OUTPUT not in outputs:
        return ainur if isinstance(ainur, Mapping) else None
    rolled = outputs[KUBE_VIP_OUTPUT]
    return {**ainur, "kubeVip": rolled if isinstance(rolled, str) and rolled else None}


# The netboot layer's dnsmasq config: where day2 reads an older deployment's service address.
DNSMASQ_OUTPUT = exports.DNSMASQ_CONF
# What a secret key set in plain text reads as: present, not a secret, and never its value (parse_stack refuses it).
PLAIN = "[plain text]"


@dataclass(frozen=True)
class StackSecrets:
    """Secret config, kept as Pulumi secret Outputs so they never leave the engine in clear."""

    cloudflare_api_token: pulumi.Output[str] | None
    ainur_ssh_private_key: pulumi.Output[str] | None
    # The GitOps repository's credential (stacks.gitops decides which one a stack needs).
    gitops_token: pulumi.Output[str] | None = None
    gitops_ssh_private_key: pulumi.Output[str] | None = None
    # The alert receiver's password or token (iluvatar:alertReceiverSecret), and the sign-in connector's secret.
    alert_receiver_secret: pulumi.Output[str] | None = None
    identity_connector_secret: pulumi.Output[str] | None = None
    # The apps' secrets set by the user (app -> name -> value), and the S3 backup target's credentials.
    app_secrets: pulumi.Output[dict[str, dict[str, str]]] | None = None
    s3_access_key_id: pulumi.Output[str] | None = None
    s3_secret_access_key: pulumi.Output[str] | None = None
    # The BMCs' passwords, by BMC address (stacks.power): only when a machine is powered on by one.
    bmc_passwords: pulumi.Output[dict[str, str]] | None = None
    # The Tailscale OAuth client's secret (remote access, flavour tailscale): the operator's and pulumi-tailscale's.
    tailscale_oauth_client_secret: pulumi.Output[str] | None = None
    # The KMS key put back from its backup after Pulumi's state was lost (components.kms).
    kms_key_restore: pulumi.Output[str] | None = None


@dataclass(frozen=True)
class LoadedStack:
    """A validated stack: the typed config and its secrets."""

    config: StackConfig
    secrets: StackSecrets
    # What the last deployment ran Ceph on (empty on the first one).
    deployed: storage.Deployed = field(default_factory=lambda: storage.Deployed({}, {}))
    # What the last deployment ran on Arda: versions and each machine's state (empty on the first one).
    arda: day2.DeployedArda = field(default_factory=day2.DeployedArda)
    # The Ainur's machines at the last deployment, by name (the output `ainur`; empty on the first one).
    ainur: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # The output `ainur` itself (k3sVersion, order, nodes), for the day-2 plan (plans.rollout.describe_ainur).
    ainur_output: Mapping[str, Any] = field(default_factory=dict)
    # The output `remoteAccess` of the last deployment (its routerEnrolment; empty on the first one).
    remote_access_output: Mapping[str, Any] = field(default_factory=dict)
    # The output `dnsmasqConf` of the last deployment (None on the first one): which Pis it netbooted, where `ainur`
    # did not say (stacks.day2.netbooted_before).
    dnsmasq_output: str | None = None


def _config_keys() -> set[str]:
    # The SDK has no public way to list config keys; unknown keys must still be reported,
    # so read the runtime's config map (set by the language host, or by set_all_config in tests).
    return set(runtime_config.CONFIG.get()) | set(runtime_config.get_config_env())


def _decode(key: str, value: Any, secret: bool = True) -> Any:
    if key.removeprefix(f"{NAMESPACE}:") == power.PASSWORDS:
        # One password per BMC address: the rules see the addresses, never a password.
        return power.addresses_only(value, secret, Secure)
    if key == f"{NAMESPACE}:{data.APP_SECRETS}":
        # Its shape is checked (which app, which name); each value stays unread. Pulumi marks the whole
        # key secret when its values are (`config set --secret --path`), so then every value is.
        try:
            decoded = json.loads(value) if isinstance(value, str) else value
        except json.JSONDecodeError:
            return Secure() if secret else PLAIN
        if not isinstance(decoded, dict):
            return Secure() if secret else PLAIN
        return {
            app: {name: (Secure() if secret else PLAIN) for name in entries} if isinstance(entries, dict) else entries
            for app, entries in decoded.items()
        }
    if key.removeprefix(f"{NAMESPACE}:") in SECRETS:
        # parse_stack only needs to know it is there, and whether it was set as a secret (a Secure
        # value is ciphertext wherever it comes from); the value itself is never decoded.
        return Secure() if secret else PLAIN
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


# What `day2.unreadable`'s fix means here: the outputs a preview reads are the stack's checkpoint in the backend, not a
# file the user passes (as to `render --previous`); the Pulumi CLI edits them only by exporting and importing the state,
# where the program's outputs are those of its one resource of type pulumi:pulumi:Stack.
AT_PREVIEW = (
    ". At `pulumi preview` these are the outputs in the stack's state: `pulumi stack export --file state.json`, correct them "
    'under "outputs" of the resource of type pulumi:pulumi:Stack, then `pulumi stack import --file state.json`'
)


def load() -> LoadedStack:
    raw = {
        k: _decode(k, runtime_config.get_config(k), runtime_config.is_config_secret(k))
        for k in sorted(_config_keys())
        if k.startswith(f"{NAMESPACE}:")
    }
    secret_keys = frozenset(k for k in raw if runtime_config.is_config_secret(k))
    source = f"stack {pulumi.get_stack()}"
    try:
        # Every secret the stack needs must be set now: a preview that went on would fail at the first resource reading it.
        stack = parse_stack(raw, secret_keys, source=source, require_secrets=True)
    except StackConfigError as e:
        raise pulumi.RunError(e.report()) from None
    outputs = last_outputs()
    # Outputs `iluvatar render --previous` refuses, the preview refuses too: read as "never deployed" or planned from
    # the stack's own releases, they would plan from nothing.
    if (why := day2.unreadable(outputs)) is not None:
        raise pulumi.RunError(f"the last deployment's outputs of stack {stack_name()} are not as this program writes them: {why}{AT_PREVIEW}")
    # An older Iluvatar's outputs lack `arda` and `ainur` in the engine's state as in a file: read as never deployed,
    # every running machine would be planned as new. A first `up` that stopped part-way leaves a part too, whose fix is
    # this `up`: read so, it plans what the part lacks as a first deployment, which it is; said, and not refused, or
    # no `up` could ever finish it (`render --previous` still refuses both, naming each).
    if (why := day2.missing(outputs)) is not None:
        if not day2.may_be_a_stopped_first_up(outputs):
            raise pulumi.RunError(f"the last deployment's outputs of stack {stack_name()} are not all there: {why}")
        pulumi.log.warn(f"the last deployment's outputs of stack {stack_name()} are not all there: {why}")
    try:
        deployed = storage.Deployed.from_output(outputs.get(STORAGE_OUTPUT))
        arda = day2.DeployedArda.from_output(outputs.get(ARDA_OUTPUT))
        # Outputs written before the `arda` output recorded the cluster's name still say it (the `vips` output's key).
        if arda.deployed and "clusterName" not in arda.output and (name := day2.deployed_cluster_name(arda, outputs.get(exports.VIPS))) is not None:
            arda = replace(arda, output={**arda.output, "clusterName": name})
        # The `arda` output does not record Arda's VIP: the `vips` output keys it by the cluster's name.
        if arda.deployed and "vip" not in arda.output and (vip := day2.deployed_arda_vip(arda, outputs.get(exports.VIPS))) is not None:
            arda = replace(arda, output={**arda.output, "vip": vip})
        # Argo CD's chart is recorded only by a deployment that ran it, which exports gitopsRepoUrls (day2.warnings).
        arda = replace(arda, gitops=outputs.get(exports.GITOPS_REPO_URLS) is not None)
        ainur = day2.machines_of(outputs.get(AINUR_OUTPUT))
    except TypeError as e:
        raise pulumi.RunError(f"the last deployment's outputs of stack {stack_name()} are not as this program writes them: {e}") from None
    # The one secret whose form decides whether it works (the static admin's hash), read as the engine decrypted it.
    static_hash = runtime_config.get_config(f"{NAMESPACE}:{identity.SECRET}")
    problems = storage.check_removals(stack, deployed) + day2.check(
        stack, arda, outputs.get(AINUR_OUTPUT), outputs.get(DNSMASQ_OUTPUT), outputs.get(STORAGE_OUTPUT)
    )
    # The DHCP mode against the one the LAN runs: an unstated default never switches a live homelab's DHCP off.
    problems += netboot_mode.check(stack, outputs.get(DNSMASQ_OUTPUT))
    # A KMS key restored once stays the key: without it the program would generate a new one, which opens none of the
    # volumes sealed under the restored one (plans.kms.RESTORED_OUTPUT).
    restore_key = f"{NAMESPACE}:{encryption.KMS_RESTORE}"
    if outputs.get(encryption.KMS_RESTORED_OUTPUT) is True and restore_key not in raw:
        problems = [
            *problems,
            Problem(
                restore_key,
                "is unset, but the KMS key in use was restored from its backup by it: without it `up` would make a new key that "
                "opens none of Arda's encrypted volumes; set it back to the same value (docs/layers/ainur.md, The Ainur lost)",
            ),
        ]
    # It must be a key, judged here before any resource (a value the KMS component cannot read would otherwise fail
    # `up` half-way, at the first resource that carries it); nor may it change: a key set in its place (another
    # backup, another stack's) opens none of the volumes sealed under the one in use, and unlike the generated key it
    # is no protected resource. Judged where the engine has decrypted it (an offline run sees the placeholder),
    # against the id the last deployment exported.
    problems += kms_key_restore_problems(runtime_config.get_config(restore_key), outputs.get(encryption.KMS_KEY_ID_OUTPUT))
    if problems := problems + static_hash_problem(stack.identity, static_hash):
        raise pulumi.RunError(StackConfigError(problems, source).report())
    # What `iluvatar validate` prints as warnings, in the preview's diagnostics; none stops it.
    for warning in warnings(stack) + day2.warnings(stack, arda):
        pulumi.log.warn(str(warning))
    cfg = pulumi.Config(NAMESPACE)
    token = cfg.require_secret("cloudflareApiToken") if stack.uses_cloudflare else None
    ssh_key = cfg.get_secret("ainurSshPrivateKey")
    gitops_token, gitops_key = cfg.get_secret("gitopsToken"), cfg.get_secret("gitopsSshPrivateKey")
    receiver = cfg.get_secret(monitoring.SECRET)
    connector = cfg.require_secret(identity.SECRET) if stack.identity is not None else None
    app_secrets = cfg.get_secret_object(data.APP_SECRETS)
    # Set only where a machine is powered on by a BMC (stacks.power refuses a password for no BMC).
    bmc_passwords = cfg.get_secret_object(power.PASSWORDS)
    tailscale = stack.remote_access is not None and stack.remote_access.flavour == "tailscale"
    oauth_secret = cfg.require_secret(remote_access.SECRET) if tailscale else None
    return LoadedStack(
        stack,
        StackSecrets(
            cloudflare_api_token=token,
            ainur_ssh_private_key=ssh_key,
            gitops_token=gitops_token,
            gitops_ssh_private_key=gitops_key,
            alert_receiver_secret=receiver,
            identity_connector_secret=connector,
            app_secrets=app_secrets,
            s3_access_key_id=cfg.get_secret(data.S3_KEY_ID),
            s3_secret_access_key=cfg.get_secret(data.S3_SECRET_KEY),
            bmc_passwords=bmc_passwords,
            tailscale_oauth_client_secret=oauth_secret,
            kms_key_restore=cfg.get_secret(encryption.KMS_RESTORE),
        ),
        deployed,
        arda,
        ainur,
        dict(recorded_ainur(outputs) or {}),
        dict(outputs[REMOTE_ACCESS_OUTPUT]) if isinstance(outputs.get(REMOTE_ACCESS_OUTPUT), Mapping) else {},
        dnsmasq_output=outputs[DNSMASQ_OUTPUT] if isinstance(outputs.get(DNSMASQ_OUTPUT), str) else None,
    )


def stack_name() -> str:
    """This stack's fully qualified name, as a StackReference to it would spell it."""
    # A self-managed backend (and an SDK the CLI told no organization) names it `organization`.
    return f"{pulumi.get_organization() or 'organization'}/{pulumi.get_project()}/{pulumi.get_stack()}"


def last_outputs() -> dict[str, Any]:
    """The stack's own outputs at its last completed deployment (empty for a new stack).

    A StackReference to the stack itself reads the same thing, but asynchronously, after other
    resources may be registered (and, in `pulumi up`, created); this synchronous invoke of the
    engine's builtin provider answers first. A stack whose outputs cannot be read is refused:
    without them no removal and no version change can be checked.
    """
    try:
        result = pulumi.runtime.invoke(READ_STACK_OUTPUTS, {"name": stack_name()})
        outputs = (result.value or {}).get("outputs") or {}
    except Exception as e:  # any failure means the safety checks cannot run: say so, and refuse
        raise pulumi.RunError(
            f"cannot read the last deployment's outputs of stack {stack_name()} ({e}); they are how a disk or a machine that ran "
            "Ceph OSDs is kept from leaving the inventory unretired and a version change is checked against what runs, so nothing "
            "is deployed without them"
        ) from None
    return dict(outputs)


# A bcrypt hash as Dex takes a static password's: golang.org/x/crypto/bcrypt's form ($2a$, $2b$ or $2y$, a two-digit cost,
# 53 characters of salt and hash), else Dex does not start (dex v2.45.1, cmd/dex/config.go:131-147: "malformed bcrypt
# hash"); and a cost from bcrypt.DefaultCost (10) to 16, else every login is refused (server/server.go:568-572 and
# server/api.go:26-31, :175-188 checkCost).
# What an offline run (iluvatar.simulate, for `iluvatar render` and the tests) hands the program for a `secure:` value
# it cannot decrypt: no hash to judge there, so the check is the engine's, at `pulumi preview`.
UNDECRYPTED = secrets.UNDECRYPTED
# Matched whole (fullmatch): `$` alone would take a hash with a trailing newline, which Dex starts with (it reads the
# prefix and cost) but golang.org/x/crypto/bcrypt compares byte for byte, so every login would be refused.
BCRYPT = re.compile(r"\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}")
BCRYPT_COSTS = range(10, 17)


# A secret output as the engine's readStackOutputs may hand it: plain (the SDK's sync invoke unwraps secrets,
# pulumi/runtime/invoke.py deserialize_properties_unwrap_secrets) or still in the wire's secret form.
SECRET_SIG = "4dabf18193072939515e22adb298388d"  # noqa: S105 - the wire's marker of a secret value, public


def _unwrapped(value: Any) -> Any:
    return value.get("value") if isinstance(value, Mapping) and SECRET_SIG in value else value


def kms_key_restore_problems(restore: str | None, last_id: Any) -> list[Problem]:
    """The restored KMS key as the engine decrypted it: a value that is no key is refused, and so is another key than
    the one the last deployment served (encryption.kms_key_id), each naming the key and the fix, never the value.
    Nothing to judge offline (the placeholder) or with no key set; no id to compare with before the first deployment."""
    last_id = _unwrapped(last_id)
    if restore is None or restore == UNDECRYPTED:
        return []
    raw = encryption.kms_key_bytes(restore)
    if raw is None:
        return [Problem(f"{NAMESPACE}:{encryption.KMS_RESTORE}", encryption.KMS_RESTORE_FORM)]
    if not isinstance(last_id, str) or last_id == UNDECRYPTED or encryption.kms_key_id(base64.b64encode(raw).decode()) == last_id:
        return []
    path = f"{NAMESPACE}:{encryption.KMS_RESTORE}"
    return [
        Problem(
            path,
            "is not the KMS key the last deployment served (its id differs from the stack output "
            f"{encryption.KMS_KEY_ID_OUTPUT}): `up` would put in place a key that opens none of Arda's volumes sealed under the "
            "one in use, and a KMS key cannot change while any volume is sealed under it; set it back to the key restored "
            "before, piped from its backup as docs/layers/ainur.md (The Ainur lost) says",
        )
    ]


def static_hash_problem(config: Identity | None, secret: str | None) -> list[Problem]:
    """The static admin's secret as the engine decrypted it at preview: a bcrypt hash Dex takes, or the problem (never
    the value). htpasswd prints `:<hash>`; a password set in its place would keep Dex from starting. Only here, where the
    engine has decrypted it: `iluvatar validate` sees ciphertext."""
    if config is None or config.connector.type != "static" or secret is None or secret == UNDECRYPTED:
        return []
    path = f"{NAMESPACE}:{identity.SECRET}"
    command = f"`pulumi config set --secret {path} {credentials.CONNECTOR_SECRETS['static'][1]}`"
    form = BCRYPT.fullmatch(secret)
    if form is not None and int(form.group(1)) in BCRYPT_COSTS:
        return []
    if form is not None:
        why = f"is a bcrypt hash of cost {form.group(1)}, and Dex refuses every login with a cost outside 10 to 16 (htpasswd's -C)"
    elif secret != secret.strip() and BCRYPT.fullmatch(secret.strip()):
        why = (
            "has a space or a newline around the hash (a line piped in whole, or echo without -n), which Dex keeps as part of "
            "it: Dex starts, and refuses every login"
        )
    elif secret.startswith(":") and BCRYPT.fullmatch(secret[1:]):
        why = "starts with the ':' htpasswd prints before the hash (an empty user name), which keeps Dex from starting"
    else:
        why = "is not a bcrypt hash ($2y$10$ and 53 characters): the password itself, or another hash, which keeps Dex from starting"
    return [Problem(path, f"{why}; set it again with {command}")]
