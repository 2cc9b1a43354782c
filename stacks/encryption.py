"""Encryption at rest: which key each Arda machine's volumes are sealed with, and the rules that refuse a bad choice.

`iluvatar:arda.encryption` (stacks.model.Encryption) turns LUKS2 on for every Arda volume. The key is chosen per board,
never written in the stack: `tpm` where the board has a TPM 2.0 with Secure Boot (stacks.boards.Board.tpm), else `kms`,
the KMS the Ainur serve (plans.kms), so a disk or a machine carried out of the house finds no key. Talos's other two
keys are refused: `static` puts the passphrase in every machine config and in Pulumi's state; `nodeID` derives the key
from the machine's own UUID (Talos v1.13.9 internal/pkg/encryption/keys/nodeid.go), so a stolen machine unlocks itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Iterator

from stacks.boards import BOARDS, Board
from stacks.errors import Problem, show
from stacks.model import Encryption, StackConfig

# A key kind as Talos's EncryptionKey names it: `tpm` or `kms` (a plain str: the model reads `keys` as written, so
# each refusal can name the value; KEYS is the whole set).
Key = str
KEYS: tuple[Key, ...] = ("tpm", "kms")
PATH = "iluvatar:arda.encryption"
# The KMS key restored from its age-encrypted backup after Pulumi's state was lost (docs/layers/ainur.md, "The Ainur
# lost"): a secret, the base64 of the 32 bytes; set, it is the KMS's key in place of a generated one, for good.
KMS_RESTORE = "kmsKeyRestore"
# How it is set: piped from its backup straight into `config set`, which reads a value from its stdin when that is no
# terminal (pulumi/pulumi pkg/cmd/pulumi/config/config.go:815-823 at 1b59498), so the key is never on a command line
# (any process reads argv in /proc, the shell keeps it in its history) nor in a file in clear.
KMS_RESTORE_SET = "age --decrypt -i backup-age.key kms-key.age | base64 -w 0 | pulumi config set --secret iluvatar:kmsKeyRestore"


# What a restored key that is no key gets told (never the value).
KMS_RESTORE_FORM = (
    "is not the base64 of 32 bytes; set it from the backup's file as docs/layers/ainur.md (The Ainur lost) says, piped "
    f"from age into `pulumi config set --secret iluvatar:{KMS_RESTORE}` (never on a command line, never in a file in clear)"
)


def kms_key_bytes(value: str) -> bytes | None:
    """The restored key's 32 bytes as the KMS serves them (base64, blanks around it ignored: `base64 -w 0` ends with no
    newline, a value typed at `config set`'s prompt may), or None when it is no such key."""
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except ValueError:
        return None
    return raw if len(raw) == 32 else None


def set_secret_command(full_key: str) -> str:
    """The command that sets the secret `full_key`: the KMS key's pipe for the restored key, else `config set --secret`
    with the value to type in its place."""
    return KMS_RESTORE_SET if full_key == f"iluvatar:{KMS_RESTORE}" else f"pulumi config set --secret {full_key} <value>"


def plain_text_problem(full_key: str) -> str:
    """What `iluvatar validate` says of a secret written in plain text (never the value)."""
    if full_key == f"iluvatar:{KMS_RESTORE}":
        return (
            "is in plain text: that is the KMS key in clear in the stack file, and in git's history and every copy if it was "
            f"ever committed, where no edit removes it; remove it and run `{KMS_RESTORE_SET}` (docs/layers/ainur.md, The Ainur lost)"
        )
    return f"is in plain text; remove it and run `{set_secret_command(full_key)}`"


# The output that says the KMS key in use is the restored one (plans.kms).
KMS_RESTORED_OUTPUT = "kmsKeyRestored"
# The output that names the KMS key in use (kms_key_id), a secret: the next preview refuses a restored key that is not
# that one, as it refuses one unset (stacks.pulumi_source).
KMS_KEY_ID_OUTPUT = "kmsKeyId"
KMS_KEY_ID_LABEL = b"iluvatar kms key id v1"


def kms_key_id(key_base64: str) -> str:
    """Which KMS key this is, without the key: the first 16 bytes of HMAC-SHA256 under the key of a fixed label, in hex.
    The same key gives the same id at every run; no id tells anything about the key's bytes (HMAC is a PRF under it)."""
    return hmac.new(base64.b64decode(key_base64), KMS_KEY_ID_LABEL, hashlib.sha256).hexdigest()[:32]


# Why each of Talos's other keys is refused, in the words the refusal gives.
REFUSED: dict[str, str] = {
    "static": "a static passphrase would sit in every machine config and in Pulumi's state, beside the data it locks",
    "nodeID": "a nodeID key is derived from the machine's own UUID, so a stolen machine unlocks its disks by itself"
    " (it only protects a disk taken out alone)",
}


def default_key(board: Board) -> Key:
    """The key a board's machines use unless `keys` says otherwise: the TPM where every one has it, else the KMS."""
    return "tpm" if board.tpm else "kms"


def key_of(encryption: Encryption, board: str) -> Key | None:
    """The key a machine of `board` seals its volumes with, or None with encryption off."""
    if not encryption.enabled:
        return None
    chosen = encryption.keys.get(board)
    return chosen if chosen in KEYS else default_key(BOARDS[board])


def node_key(stack: StackConfig, board: str) -> Key | None:
    return key_of(stack.arda.encryption, board)


def uses_kms(stack: StackConfig) -> bool:
    """Whether any Arda machine (the generic worker's board included) unlocks through the Ainur's KMS."""
    boards = {n.board for n in stack.arda_nodes}
    if stack.generic_worker is not None:
        boards.add(stack.generic_worker.board)
    return any(node_key(stack, b) == "kms" for b in boards)


def problems(encryption: Encryption, arda_boards: Iterable[str], ainur_set: bool) -> Iterator[Problem]:
    """A key Talos must not use, a TPM a board lacks, the KMS without the Ainur that serve it."""
    for board, value in encryption.keys.items():
        path = f"{PATH}.keys.{board}"
        if value in REFUSED:
            yield Problem(path, f"{show(value)} is refused: {REFUSED[value]}; remove it (the board then uses {default_key(BOARDS[board])})")
        elif value not in KEYS:
            yield Problem(path, f"{show(value)} is not a key Iluvatar seals volumes with; write tpm or kms")
        elif value == "tpm" and not BOARDS[board].tpm:
            yield Problem(
                path,
                f"tpm: a {board} has no TPM 2.0 with UEFI Secure Boot that Talos can seal a key to ({BOARDS[board].tpm_source}); write kms,"
                " the Ainur's KMS",
            )
    if not encryption.enabled or ainur_set:
        return
    kms = sorted({b for b in arda_boards if key_of(encryption, b) == "kms"})
    if kms:
        yield Problem(
            f"{PATH}.enabled",
            f"true, but {', '.join(kms)} machines unlock through the KMS the Ainur serve, and this stack has no iluvatar:ainur;"
            " add the Ainur, or set it to false (volumes then stay unencrypted)",
        )
