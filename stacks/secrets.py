"""The stack file's encrypted values: each `secure:` value must be ciphertext the stack's secrets manager can open.

The engine decrypts every `secure:` value of the stack file before the program runs, and one it cannot open stops
`pulumi preview` with a message that names no key ("could not decrypt configuration values: bad value: nonce size is
incorrect", for a value that is not ciphertext at all). So the form each secrets manager writes is checked here,
with the key and the command that sets it right. Pulumi v3.259.0 is the source:

- the passphrase manager (`encryptionsalt:` in the stack file) and a cloud KMS one (`encryptedkey:`) encrypt each
  value with `config.NewSymmetricCrypter`: `v1:<base64 nonce>:<base64 ciphertext>`, a 12-byte nonce and AES-256-GCM
  ciphertext with its 16-byte tag (sdk/go/common/resource/config/crypt.go, `EncryptValue` and `DecryptValue`:
  "bad value: nonce size is incorrect"; pkg/secrets/cloud/manager.go builds the same crypter from its data key);
- the passphrase manager's own state is `v1:<base64 salt>:<an encrypted check phrase>`
  (pkg/secrets/passphrase/manager.go, `NewPassphraseSecretsManager` and the `SplitN(state, ":", 3)` that reads it);
- the Pulumi Cloud backend's manager writes neither key into the file, and its values are plain base64
  (pkg/secrets/service/manager.go, `serviceCrypter.DecryptValue`).

Each manager writes its salt or key into the stack file the first time it encrypts, so a `v1:` value in a file that
has neither was encrypted for another stack: copied, it cannot be opened here (every stack has its own key).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from stacks.errors import Problem

NONCE_BYTES = 12  # AES-GCM's standard nonce, as encryptAES256GCGM makes it
TAG_BYTES = 16  # GCM's tag: the shortest ciphertext (an empty value) is the tag alone
SHOWN = 40  # characters of a ciphertext shown in a message: enough to recognise, never the whole

# What an offline run (iluvatar.simulate, for `iluvatar render` and the tests) hands the program for a `secure:` value
# it cannot decrypt; the engine hands the decrypted value at `pulumi preview` and `up`.
UNDECRYPTED = "[secret]"


class Secure:
    """An encrypted stack-file value (`secure: v1:...`): present, but unreadable offline.

    `ciphertext` is what the stack file holds after `secure:` (not secret: only the stack's secrets manager opens it);
    empty where there is none to see (a secret as the engine hands it to the program, a render's placeholder).
    """

    def __init__(self, ciphertext: str = "") -> None:
        self.ciphertext = ciphertext

    def __repr__(self) -> str:
        return UNDECRYPTED


@dataclass(frozen=True)
class SecretsManager:
    """How the stack file's secrets are encrypted: its top-level `secretsprovider`, `encryptedkey` and `encryptionsalt`
    (Pulumi's `workspace.ProjectStack`). The passphrase manager writes `encryptionsalt`, a cloud KMS one `encryptedkey`,
    each the first time it encrypts; a stack on the Pulumi Cloud backend's own manager has neither."""

    provider: str = ""
    encrypted_key: str = ""
    encryption_salt: str = ""

    @property
    def symmetric(self) -> bool:
        """Whether values are the symmetric crypter's `v1:` form (the passphrase or a cloud KMS manager)."""
        return bool(self.encryption_salt or self.encrypted_key or self.kms)

    @property
    def kms(self) -> bool:
        """A cloud KMS secrets provider (awskms://, gcpkms://, azurekeyvault://, hashivault://): not the passphrase's or
        the Pulumi Cloud's own (pkg/cmd/pulumi/stack/secrets.go: "passphrase" and "default"/"" are those two)."""
        return self.provider not in ("", "default", "passphrase")


def config_path(key: str, under: tuple[str | int, ...]) -> str:
    """A value's path as `pulumi config set --path` takes it: `.name`, `[index]`, or `["name"]` where a bare name would
    not parse back as one key (sdk/go/common/resource/properties_path.go reads a bare name up to the next `.` or `[`)."""
    out = key
    for part in under:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f'["{part}"]' if re.search(r'[.\[\]"]', part) or not part else f".{part}"
    return out


def _leaves(value: Any, under: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], Secure]]:
    if isinstance(value, Secure):
        yield under, value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _leaves(v, (*under, str(k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _leaves(v, (*under, i))


def _b64(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def shown(ciphertext: str) -> str:
    """A ciphertext as the stack file has it, cut short: `secure: v1:cGxh...`."""
    return f"secure: {ciphertext[:SHOWN]}{'...' if len(ciphertext) > SHOWN else ''}"


def _symmetric_problem(ciphertext: str) -> str | None:
    """Why a value is not the symmetric crypter's `v1:<nonce>:<ciphertext>` (crypt.go, DecryptValue), or None."""
    parts = ciphertext.split(":")
    if len(parts) != 3 or parts[0] != "v1":
        return "is not ciphertext this stack's secrets manager wrote (it writes v1:<nonce>:<ciphertext>)"
    nonce, sealed = _b64(parts[1]), _b64(parts[2])
    if nonce is None or sealed is None:
        return "is not ciphertext Pulumi wrote (its nonce and ciphertext are base64)"
    if len(nonce) != NONCE_BYTES:
        return f"is not ciphertext Pulumi wrote: its nonce is {len(nonce)} bytes, and Pulumi's are {NONCE_BYTES} (a placeholder?)"
    if len(sealed) < TAG_BYTES:
        return f"is not ciphertext Pulumi wrote: it is {len(sealed)} bytes, shorter than AES-GCM's {TAG_BYTES}-byte tag"
    return None


def current_backend(environ: Mapping[str, str] | None = None, home: Path | None = None, project: Path | None = None) -> str:
    """The backend `pulumi` uses now for the project whose `Pulumi.yaml` is `project`, in the engine's order (v3.259.0
    pkg/workspace/creds.go, GetCurrentCloudURLWithSource): $PULUMI_BACKEND_URL; else the project's `backend.url`; else
    `current` in the credentials `pulumi login` wrote (sdk/go/common/workspace/creds.go, getCredsFilePath:
    $PULUMI_CREDENTIALS_PATH, else $PULUMI_HOME, else ~/.pulumi: util/pulumihome); else "" (not logged in: the CLI's
    default is the Pulumi Cloud)."""
    env = os.environ if environ is None else environ
    if env.get("PULUMI_BACKEND_URL"):
        return env["PULUMI_BACKEND_URL"]
    if project is not None:
        try:
            backend = yaml.safe_load(project.read_text()).get("backend") or {}
        except (OSError, yaml.YAMLError, AttributeError):
            backend = {}
        if isinstance(backend, dict) and isinstance(backend.get("url"), str) and backend["url"]:
            return str(backend["url"])
    folder = env.get("PULUMI_CREDENTIALS_PATH") or env.get("PULUMI_HOME")
    credentials = Path(folder) if folder else (home if home is not None else Path.home()) / ".pulumi"
    try:
        current = json.loads((credentials / "credentials.json").read_text()).get("current")
    except (OSError, ValueError, AttributeError):
        return ""
    return current if isinstance(current, str) else ""


def falls_back_to_state_manager(environ: Mapping[str, str] | None = None) -> bool:
    """$PULUMI_FALLBACK_TO_STATE_SECRETS_MANAGER (sdk/go/common/env/env.go:132): a stack file with no secrets manager of
    its own takes the state's, which nothing here can read, so its values cannot be judged by the file alone."""
    value = (os.environ if environ is None else environ).get("PULUMI_FALLBACK_TO_STATE_SECRETS_MANAGER", "")
    return value.lower() in {"1", "true"}


def opens_with_passphrase(backend: str) -> bool:
    """Whether a stack with no secrets provider of its own encrypts with a passphrase on this backend: the DIY backends
    (file://, s3://, gs://, azblob:// ...: pkg/backend/diy/stack.go makes a passphrase manager), not the Pulumi Cloud's."""
    return bool(backend) and not backend.startswith(("https://", "http://"))


def ciphertext_problem(ciphertext: str, manager: SecretsManager, backend: str = "") -> str | None:
    """Why the engine could not open this `secure:` value with the stack's secrets manager, or None when it has the form
    that manager writes. `backend`: the one `pulumi` uses (current_backend), which decides the manager of a stack file
    that names none."""
    if (manager.symmetric or ciphertext.startswith("v1:")) and (why := _symmetric_problem(ciphertext)) is not None:
        return why
    if manager.kms and not manager.encrypted_key:
        return (
            f"cannot be opened: the stack's secrets provider is {manager.provider}, and the file has no encryptedkey, so the "
            "engine makes a new data key that opens no earlier value"
        )
    if manager.symmetric:
        return None
    if ciphertext.startswith("v1:"):
        return (
            "is a passphrase or KMS ciphertext, but this stack file has no encryptionsalt or encryptedkey: it was encrypted "
            "for another stack (copied?), and every stack has its own key"
        )
    if opens_with_passphrase(backend):
        return (
            f"cannot be opened: this stack file has no encryptionsalt, and on your backend ({backend}) a stack encrypts with a "
            "passphrase, whose values are v1:<nonce>:<ciphertext>"
        )
    if _b64(ciphertext) is None:
        return "is not ciphertext Pulumi wrote (the Pulumi Cloud backend's values are base64)"
    return None


def check_ciphertexts(config: Mapping[str, Any], manager: SecretsManager, backend: str = "") -> list[Problem]:
    """One problem per `secure:` value the engine could not open, naming its path and the command that sets it
    (`backend`: see ciphertext_problem)."""
    out: list[Problem] = []
    salt = manager.encryption_salt
    if salt:
        parts = salt.split(":", 2)
        if len(parts) != 3 or parts[0] != "v1" or _b64(parts[1]) is None:
            out.append(
                Problem(
                    "encryptionsalt",
                    f"{salt[:SHOWN]}: is not the state `pulumi stack init` writes (v1:<base64 salt>:<check>); "
                    "remove it and every secure value, then set them again",
                )
            )
            return out
    for key, value in config.items():
        for under, leaf in _leaves(value):
            why = ciphertext_problem(leaf.ciphertext, manager, backend)
            if why is None:
                continue
            path = config_path(key, under)
            flag = " --path" if under else ""
            out.append(Problem(path, f"{shown(leaf.ciphertext)} {why}; set it again with `pulumi config set --secret{flag} '{path}' <value>`"))
    return out
