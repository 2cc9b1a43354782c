"""A stack's secrets: each `secure:` value is ciphertext its secrets manager can open, and every secret the stack needs
is set before `pulumi preview` runs (stacks.secrets, stacks.errors.UnsetSecret).

The engine is the judge of the first: tools/stackfile runs Pulumi's own passphrase secrets manager and crypter
(sdk v3.272.0's config package, the manager's lines from pkg/secrets/passphrase). What it opens, the rule accepts; what
it refuses, the rule refuses too, naming the key.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path

import pulumi
import pytest
import yaml

from iluvatar.simulate import simulate
from stacks import StackConfigError, load_stack_file, read_stack_file
from stacks.errors import UnsetSecret
from stacks.secrets import (
    SHOWN,
    SecretsManager,
    Secure,
    check_ciphertexts,
    ciphertext_problem,
    config_path,
    current_backend,
    falls_back_to_state_manager,
    opens_with_passphrase,
    shown,
)
from tests.edit import HOMELAB, RK1
from tools.gotools import build

PASSPHRASE = "correct horse battery staple"
# The placeholders the homelab stack shipped until 2026-11-25: `v1:` + base64("placeholder") (11 bytes) + a text.
PLACEHOLDER = "v1:cGxhY2Vob2xkZXI=:cmVwbGFjZSB3aXRoIHlvdXIgb3duIHRva2Vu"
SALTED = SecretsManager(encryption_salt="v1:c2FsdHNhbHQ=:v1:bm9uY2Vub25jZW5v:Y2lwaGVydGV4dGNpcGhlcnRleHRjaXBoZXJ0ZXh0")
NONCE = base64.b64encode(b"n" * 12).decode()
SEALED = base64.b64encode(b"c" * 16).decode()

# What the homelab stack needs and does not set: the user sets each before `pulumi preview`.
HOMELAB_UNSET = [
    "iluvatar:cloudflareApiToken",
    "iluvatar:identityConnectorSecret",
    "iluvatar:appSecrets.home-assistant.WEATHER_API_KEY",
    "iluvatar:backupS3AccessKeyId",
    "iluvatar:backupS3SecretAccessKey",
]
# The `pulumi config set` line for each, as the messages give it.
HOMELAB_COMMANDS = [
    "pulumi config set --secret iluvatar:cloudflareApiToken <value>",
    "pulumi config set --secret iluvatar:identityConnectorSecret <client secret>",
    "pulumi config set --secret --path 'iluvatar:appSecrets.home-assistant.WEATHER_API_KEY' <value>",
    "pulumi config set --secret iluvatar:backupS3AccessKeyId <value>",
    "pulumi config set --secret iluvatar:backupS3SecretAccessKey <value>",
]


# --- The form of each ciphertext ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("ciphertext", "manager", "why"),
    [
        (PLACEHOLDER, SALTED, "is not ciphertext Pulumi wrote: its nonce is 11 bytes, and Pulumi's are 12 (a placeholder?)"),
        (PLACEHOLDER, SecretsManager(), "is not ciphertext Pulumi wrote: its nonce is 11 bytes, and Pulumi's are 12 (a placeholder?)"),
        (
            f"v1:{NONCE}:{base64.b64encode(b'c' * 15).decode()}",
            SALTED,
            "is not ciphertext Pulumi wrote: it is 15 bytes, shorter than AES-GCM's 16-byte tag",
        ),
        (f"v1:{NONCE}:not base64!", SALTED, "is not ciphertext Pulumi wrote (its nonce and ciphertext are base64)"),
        (f"v2:{NONCE}:{SEALED}", SALTED, "is not ciphertext this stack's secrets manager wrote (it writes v1:<nonce>:<ciphertext>)"),
        (SEALED, SALTED, "is not ciphertext this stack's secrets manager wrote (it writes v1:<nonce>:<ciphertext>)"),
        (
            f"v1:{NONCE}:{SEALED}",
            SecretsManager(),
            "is a passphrase or KMS ciphertext, but this stack file has no encryptionsalt or encryptedkey: it was encrypted "
            "for another stack (copied?), and every stack has its own key",
        ),
        ("not base64!", SecretsManager(), "is not ciphertext Pulumi wrote (the Pulumi Cloud backend's values are base64)"),
        (f"v1:{NONCE}:{SEALED}", SALTED, None),
        (f"v1:{NONCE}:{SEALED}", SecretsManager(encrypted_key="a2V5"), None),
        (SEALED, SecretsManager(), None),
    ],
    ids=[
        "placeholder-nonce",
        "placeholder-without-salt",
        "shorter-than-the-tag",
        "not-base64",
        "unknown-version",
        "service-form-in-a-passphrase-stack",
        "v1-without-salt-or-key",
        "service-form-not-base64",
        "passphrase-form",
        "kms-form",
        "service-form",
    ],
)
def test_a_ciphertext_has_the_form_its_manager_writes(ciphertext: str, manager: SecretsManager, why: str | None) -> None:
    assert ciphertext_problem(ciphertext, manager) == why


@pytest.mark.parametrize(
    ("ciphertext", "manager", "backend", "why"),
    [
        (
            SEALED,
            SecretsManager(),
            "file://~",
            "cannot be opened: this stack file has no encryptionsalt, and on your backend (file://~) a stack encrypts with a passphrase, whose values are v1:<nonce>:<ciphertext>",
        ),
        (
            SEALED,
            SecretsManager(),
            "s3://bucket/state",
            "cannot be opened: this stack file has no encryptionsalt, and on your backend (s3://bucket/state) a stack encrypts with a passphrase, whose values are v1:<nonce>:<ciphertext>",
        ),
        (SEALED, SecretsManager(), "https://api.pulumi.com", None),
        (SEALED, SecretsManager(), "", None),
        (
            f"v1:{NONCE}:{SEALED}",
            SecretsManager(provider="awskms://alias/homelab"),
            "file://~",
            "cannot be opened: the stack's secrets provider is awskms://alias/homelab, and the file has no encryptedkey, so the engine "
            "makes a new data key that opens no earlier value",
        ),
        (f"v1:{NONCE}:{SEALED}", SecretsManager(provider="awskms://alias/homelab", encrypted_key="a2V5"), "file://~", None),
        (
            SEALED,
            SecretsManager(provider="awskms://alias/homelab", encrypted_key="a2V5"),
            "",
            "is not ciphertext this stack's secrets manager wrote (it writes v1:<nonce>:<ciphertext>)",
        ),
        (f"v1:{NONCE}:{SEALED}", SecretsManager(provider="passphrase", encryption_salt=SALTED.encryption_salt), "file://~", None),
    ],
    ids=[
        "file-backend",
        "s3-backend",
        "cloud-backend",
        "not-logged-in",
        "kms-without-its-key",
        "kms-with-its-key",
        "kms-service-form",
        "passphrase-named",
    ],
)
def test_a_stack_without_a_manager_of_its_own_is_read_as_its_backend_would(
    ciphertext: str, manager: SecretsManager, backend: str, why: str | None
) -> None:
    """pkg/backend/diy/stack.go gives a stack with no salt a new passphrase manager; the Pulumi Cloud its own; a KMS
    provider without encryptedkey a new data key (pkg/cmd/pulumi/stack/secrets.go)."""
    assert ciphertext_problem(ciphertext, manager, backend) == why


def test_the_backend_is_the_one_pulumi_uses_now(tmp_path: Path) -> None:
    (tmp_path / ".pulumi").mkdir()
    assert current_backend({}, tmp_path) == ""
    (tmp_path / ".pulumi" / "credentials.json").write_text(json.dumps({"current": "file:///srv/pulumi", "accounts": {}}))
    assert current_backend({}, tmp_path) == "file:///srv/pulumi"
    assert current_backend({"PULUMI_BACKEND_URL": "https://api.pulumi.com"}, tmp_path) == "https://api.pulumi.com"
    (tmp_path / ".pulumi" / "credentials.json").write_text("not json")
    assert current_backend({}, tmp_path) == ""


def test_the_backend_is_looked_up_where_and_in_the_order_the_engine_does(tmp_path: Path) -> None:
    # v3.259.0 pkg/workspace/creds.go: $PULUMI_BACKEND_URL, then the project's backend.url, then the credentials file,
    # which $PULUMI_CREDENTIALS_PATH or else $PULUMI_HOME moves (sdk/go/common/workspace/creds.go, util/pulumihome).
    elsewhere = tmp_path / "creds"
    elsewhere.mkdir()
    (elsewhere / "credentials.json").write_text(json.dumps({"current": "s3://bucket"}))
    project = tmp_path / "Pulumi.yaml"
    project.write_text("name: iluvatar\nruntime: python\n")
    assert current_backend({"PULUMI_HOME": str(elsewhere)}, tmp_path, project) == "s3://bucket"
    assert current_backend({"PULUMI_CREDENTIALS_PATH": str(elsewhere), "PULUMI_HOME": str(tmp_path)}, tmp_path, project) == "s3://bucket"
    project.write_text("name: iluvatar\nruntime: python\nbackend:\n  url: file://~/state\n")
    assert current_backend({"PULUMI_HOME": str(elsewhere)}, tmp_path, project) == "file://~/state"
    assert current_backend({"PULUMI_BACKEND_URL": "gs://b", "PULUMI_HOME": str(elsewhere)}, tmp_path, project) == "gs://b"


def test_a_file_that_may_take_the_states_secrets_manager_is_not_judged_by_its_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # With PULUMI_FALLBACK_TO_STATE_SECRETS_MANAGER a salt-less file's v1: values may be the state's passphrase's.
    monkeypatch.delenv("PULUMI_BACKEND_URL", raising=False)
    path = tmp_path / "Pulumi.lab.yaml"
    value = "  iluvatar:cloudflareApiToken:\n    secure: v1:AAAAAAAAAAAAAAAA:AAAAAAAAAAAAAAAAAAAAAAAAAAAA\n"
    path.write_text(HOMELAB.read_text().replace("config:\n", "config:\n" + value, 1))
    with pytest.raises(StackConfigError) as refused:
        load_stack_file(path)
    assert [str(p).split(":", 2)[:2] for p in refused.value.problems] == [["iluvatar", "cloudflareApiToken"]]
    monkeypatch.setenv("PULUMI_FALLBACK_TO_STATE_SECRETS_MANAGER", "true")
    assert load_stack_file(path).cloudflare is not None


def test_a_stack_importing_an_esc_environment_may_leave_its_secrets_to_it(tmp_path: Path) -> None:
    doc = yaml.safe_load(HOMELAB.read_text())
    doc["environment"] = ["homelab/secrets"]
    path = tmp_path / "Pulumi.homelab.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    load_stack_file(path, require_secrets=True)
    with pytest.raises(StackConfigError):
        load_stack_file(HOMELAB, require_secrets=True)


def test_every_bad_value_is_named_by_its_path_with_the_command_that_sets_it() -> None:
    config = {
        "iluvatar:cloudflareApiToken": Secure(PLACEHOLDER),
        "iluvatar:appSecrets": {"home-assistant": {"WEATHER_API_KEY": Secure(PLACEHOLDER), "GOOD": Secure(f"v1:{NONCE}:{SEALED}")}},
        "iluvatar:bmcPasswords": {"10.10.0.5": Secure(PLACEHOLDER)},
        "iluvatar:network": {"lan": "10.10.0.0/24"},
    }
    assert [str(p) for p in check_ciphertexts(config, SALTED)] == [
        "iluvatar:cloudflareApiToken: secure: v1:cGxhY2Vob2xkZXI=:cmVwbGFjZSB3aXRoIHlv... is not ciphertext Pulumi wrote: its nonce is 11 "
        "bytes, and Pulumi's are 12 (a placeholder?); set it again with `pulumi config set --secret 'iluvatar:cloudflareApiToken' <value>`",
        "iluvatar:appSecrets.home-assistant.WEATHER_API_KEY: secure: v1:cGxhY2Vob2xkZXI=:cmVwbGFjZSB3aXRoIHlv... is not ciphertext Pulumi "
        "wrote: its nonce is 11 bytes, and Pulumi's are 12 (a placeholder?); set it again with "
        "`pulumi config set --secret --path 'iluvatar:appSecrets.home-assistant.WEATHER_API_KEY' <value>`",
        'iluvatar:bmcPasswords["10.10.0.5"]: secure: v1:cGxhY2Vob2xkZXI=:cmVwbGFjZSB3aXRoIHlv... is not ciphertext Pulumi wrote: its nonce '
        "is 11 bytes, and Pulumi's are 12 (a placeholder?); set it again with "
        """`pulumi config set --secret --path 'iluvatar:bmcPasswords["10.10.0.5"]' <value>`""",
    ]


@pytest.mark.parametrize(
    ("salt", "problem"),
    [
        (
            "v1:c2FsdA=",
            "v1:c2FsdA=: is not the state `pulumi stack init` writes (v1:<base64 salt>:<check>); remove it and every secure value, then set them again",
        ),
        (
            "v2:c2FsdA==:x",
            "v2:c2FsdA==:x: is not the state `pulumi stack init` writes (v1:<base64 salt>:<check>); remove it and every secure value, then set them again",
        ),
    ],
)
def test_a_salt_the_passphrase_manager_cannot_read_is_refused(salt: str, problem: str) -> None:
    assert [str(p) for p in check_ciphertexts({}, SecretsManager(encryption_salt=salt))] == [f"encryptionsalt: {problem}"]


@pytest.mark.parametrize(
    ("key", "under", "path"),
    [
        ("iluvatar:cloudflareApiToken", (), "iluvatar:cloudflareApiToken"),
        ("iluvatar:appSecrets", ("home-assistant", "WEATHER_API_KEY"), "iluvatar:appSecrets.home-assistant.WEATHER_API_KEY"),
        ("iluvatar:bmcPasswords", ("10.10.0.5",), 'iluvatar:bmcPasswords["10.10.0.5"]'),
        ("iluvatar:x", ("a[b]",), 'iluvatar:x["a[b]"]'),
    ],
)
def test_a_path_is_what_config_set_path_reads_back_as_one_key(key: str, under: tuple[str, ...], path: str) -> None:
    assert config_path(key, under) == path


# --- What the engine opens, with Pulumi's own code ------------------------------------------------


@pytest.fixture(scope="module")
def stackfile() -> Path:
    return build("stackfile")


def pulumi_runs(tool: Path, *args: str) -> str:
    result = subprocess.run(
        [str(tool), *args], capture_output=True, text=True, timeout=120, env={**os.environ, "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE}
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def homelab_with_secrets(tool: Path, tmp_path: Path) -> Path:
    """The homelab stack after `pulumi stack init` and one `pulumi config set --secret` per secret it needs."""
    path = tmp_path / "Pulumi.homelab.yaml"
    path.write_text(pulumi_runs(tool, "init-passphrase", str(HOMELAB)))
    for key in HOMELAB_UNSET:
        path.write_text(pulumi_runs(tool, "encrypt", str(path), key, f"value of {key}", *(["--path"] if "." in key else [])))
    return path


def test_a_stack_with_every_secret_set_by_pulumi_opens_and_validates(stackfile: Path, tmp_path: Path) -> None:
    path = homelab_with_secrets(stackfile, tmp_path)
    assert pulumi_runs(stackfile, "decrypt", str(path)) == "".join(
        f"{key}: ok\n"
        for key in [
            "iluvatar:appSecrets",
            "iluvatar:backupS3AccessKeyId",
            "iluvatar:backupS3SecretAccessKey",
            "iluvatar:cloudflareApiToken",
            "iluvatar:identityConnectorSecret",
        ]
    )
    sf = read_stack_file(path)
    assert sf.secrets_manager.encryption_salt.startswith("v1:")
    assert check_ciphertexts(sf.config, sf.secrets_manager) == []
    assert sf.unset_secrets() == ()
    load_stack_file(path, require_secrets=True)


def test_a_placeholder_the_engine_cannot_open_is_refused_by_its_key(stackfile: Path, tmp_path: Path) -> None:
    path = homelab_with_secrets(stackfile, tmp_path)
    path.write_text(pulumi_runs(stackfile, "secret", str(path), "iluvatar:cloudflareApiToken", PLACEHOLDER))
    opened = dict(line.split(": ", 1) for line in pulumi_runs(stackfile, "decrypt", str(path)).splitlines())
    assert opened["iluvatar:cloudflareApiToken"].endswith("bad value: nonce size is incorrect")
    assert {k: v for k, v in opened.items() if k != "iluvatar:cloudflareApiToken"} == dict.fromkeys(
        ["iluvatar:appSecrets", "iluvatar:backupS3AccessKeyId", "iluvatar:backupS3SecretAccessKey", "iluvatar:identityConnectorSecret"], "ok"
    )
    with pytest.raises(StackConfigError) as err:
        load_stack_file(path)
    assert err.value.paths() == ["iluvatar:cloudflareApiToken"]
    assert "its nonce is 11 bytes" in str(err.value.problems[0])


# --- Secrets a stack needs ---------------------------------------------------------------------


def test_the_shipped_stacks_hold_no_ciphertext_they_cannot_open() -> None:
    for path in (HOMELAB, RK1):
        sf = read_stack_file(path)
        assert not sf.secret_keys, f"{path.name} ships a secure value no user can decrypt"
        assert "secure:" not in path.read_text().replace("--secret", "")


def test_the_homelab_stack_names_every_secret_it_needs_with_its_command() -> None:
    unset = read_stack_file(HOMELAB).unset_secrets()
    assert [s.path for s in unset] == HOMELAB_UNSET
    assert [str(s).split("run `", 1)[1].rstrip("`") for s in unset] == HOMELAB_COMMANDS
    assert all(isinstance(s, UnsetSecret) for s in unset)
    assert read_stack_file(RK1).unset_secrets() == ()


def test_the_inventory_reads_without_its_secrets_and_validation_requires_them() -> None:
    load_stack_file(HOMELAB)  # the inventory: what a render and the plans read
    with pytest.raises(StackConfigError) as err:
        load_stack_file(HOMELAB, require_secrets=True)
    assert err.value.paths() == HOMELAB_UNSET


def test_the_program_refuses_at_preview_a_stack_with_a_secret_unset() -> None:
    with pytest.raises(pulumi.RunError) as err:
        simulate(read_stack_file(HOMELAB), preview=True, unset_secrets="refuse")
    lines = str(err.value).splitlines()
    assert lines[0] == "stack homelab: 5 problems:"
    assert [line.strip().split(": ", 1)[0] for line in lines[1:]] == HOMELAB_UNSET


def test_a_render_fills_each_unset_secret_with_the_placeholder() -> None:
    sf = read_stack_file(HOMELAB)
    filled = sf.with_placeholders(sf.unset_secrets())
    assert filled.unset_secrets() == ()
    assert filled.secret_keys == frozenset(s.split(".")[0] for s in HOMELAB_UNSET)
    assert isinstance(filled.config["iluvatar:appSecrets"]["home-assistant"]["WEATHER_API_KEY"], Secure)
    assert sf.config.get("iluvatar:appSecrets") is None, "the stack file read is left as it was"


# --- Boundaries the mutation run found unpinned (docs/proof/mutation.md, stacks/secrets.py) ---------------------------


def test_base64_is_read_strictly_as_go_decodes_it() -> None:
    # Go's base64.StdEncoding (crypt.go's DecryptValue) refuses a character outside the alphabet; a lenient decoder would
    # drop it, and the value would pass as one the engine then cannot open.
    assert (
        ciphertext_problem(f"v1:{NONCE[:4]}!{NONCE[4:]}:{SEALED}", SALTED) == "is not ciphertext Pulumi wrote (its nonce and ciphertext are base64)"
    )


def test_each_value_is_judged_on_the_backend_given() -> None:
    config = {"iluvatar:cloudflareApiToken": Secure(SEALED)}
    assert check_ciphertexts(config, SecretsManager()) == []  # no backend known: the Pulumi Cloud's form, base64
    assert [str(p) for p in check_ciphertexts(config, SecretsManager(), "file://~")] == [
        f"iluvatar:cloudflareApiToken: secure: {SEALED} cannot be opened: this stack file has no encryptionsalt, and on your "
        "backend (file://~) a stack encrypts with a passphrase, whose values are v1:<nonce>:<ciphertext>; set it again with "
        "`pulumi config set --secret 'iluvatar:cloudflareApiToken' <value>`"
    ]


def test_a_self_hosted_pulumi_cloud_over_http_keeps_its_own_manager() -> None:
    assert [opens_with_passphrase(b) for b in ("http://pulumi.lan:8080", "https://api.pulumi.com", "file://~", "")] == [False, False, True, False]


def test_a_credentials_file_naming_no_current_backend_is_not_logged_in(tmp_path: Path) -> None:
    (tmp_path / ".pulumi").mkdir()
    (tmp_path / ".pulumi" / "credentials.json").write_text('{"current": null}')
    assert current_backend({}, home=tmp_path) == ""


@pytest.mark.parametrize(("value", "falls"), [("1", True), ("true", True), ("TRUE", True), ("0", False), ("", False)])
def test_the_state_manager_fallback_is_read_from_the_environment_given(value: str, falls: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PULUMI_FALLBACK_TO_STATE_SECRETS_MANAGER", raising=False)
    assert falls_back_to_state_manager({"PULUMI_FALLBACK_TO_STATE_SECRETS_MANAGER": value}) is falls


def test_a_ciphertext_is_cut_only_when_longer_than_shown() -> None:
    assert [shown("x" * n) for n in (SHOWN, SHOWN + 1)] == [f"secure: {'x' * SHOWN}", f"secure: {'x' * SHOWN}..."]
