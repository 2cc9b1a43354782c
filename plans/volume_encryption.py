"""Volume encryption, Talos's side: the `encryption` of each Arda machine's volumes, and the roots its KMS client trusts.

Every volume Talos formats for a machine with `iluvatar:arda.encryption` on is LUKS2 with one key, chosen per board
(stacks.encryption): `kms`, the Ainur's KMS (plans.kms), or `tpm`. Talos's schema: pkg/machinery/config/types/block/
encryption.go at v1.13.9 (EncryptionSpec, EncryptionKey*, Validate: provider luks2, a key per slot).

- `tpm` seals to PCR 7 under a policy signed by the key of the UKI the machine booted (Talos v1.13.9
  internal/pkg/secureboot/tpm2/seal.go:31-35, constants.PCRPublicKey): only the Secure Boot installer's UKI carries it
  (pkg/imager/imager.go:460-481), so a tpm board installs from Image Factory's secureboot installer (plans.talos), and
  Talos is told to refuse to enroll the key with Secure Boot off or in setup mode (keys/tpm2.go:55-64).
- `kms`: Talos sends the volume's key to the KMS to seal and keeps only the sealed blob in the LUKS2 header; at boot it
  asks the KMS to unseal it (internal/pkg/encryption/keys/kms.go). An `https://` endpoint is verified against the
  machine's trusted roots only (kms.go:137-143, httpdefaults.RootCAs: /etc/ssl/certs/ca-certificates), which a
  TrustedRootsConfig adds the local CA to once the machine config is loaded.

STATE under `kms` is left in clear, on purpose: STATE holds the machine config, so Talos must unlock it before it has
read the TrustedRootsConfig (the STATE key's settings come from META, volume_config.go:172-203; the roots from the
config, secrets/trusted_roots.go:59-75). At the next boot the KMS's certificate, signed by the local CA, would be
unverifiable and the machine would never mount STATE again. docs/layers/data.md says what that leaves in clear.
"""

from __future__ import annotations

from typing import Any

from plans import kms
from stacks import encryption
from stacks.encryption import Key
from stacks.model import StackConfig

PROVIDER = "luks2"
TRUSTED_ROOTS = "iluvatar-kms"
STATE = "STATE"
EPHEMERAL = "EPHEMERAL"


def key_document(stack: StackConfig, key: Key) -> dict[str, Any]:
    """The one key slot a volume has: the Ainur's KMS at its endpoint, or the TPM with Secure Boot checked on enroll."""
    if key == "kms":
        return {"slot": 0, "kms": {"endpoint": kms.endpoint(stack)}}
    return {"slot": 0, "tpm": {"checkSecurebootStatusOnEnroll": True}}


def spec(stack: StackConfig, board: str) -> dict[str, Any] | None:
    """A volume's `encryption` for a machine of `board`, or None with encryption off."""
    key = encryption.node_key(stack, board)
    if key is None:
        return None
    return {"provider": PROVIDER, "keys": [key_document(stack, key)]}


def encrypts_state(stack: StackConfig, board: str) -> bool:
    """Whether STATE is encrypted on `board`: with the TPM only (see the module's docstring for kms)."""
    return encryption.node_key(stack, board) == "tpm"


def documents(stack: StackConfig, board: str, ca_certificate: str, ephemeral_written: bool) -> list[dict[str, Any]]:
    """The documents encryption adds to a machine of `board`: STATE's and EPHEMERAL's VolumeConfig (EPHEMERAL's only
    when local volumes did not already write one, plans.local_volumes, as Talos takes one document per volume), and,
    under kms, the local CA as a trusted root for the KMS's certificate."""
    volume = spec(stack, board)
    if volume is None:
        return []
    docs: list[dict[str, Any]] = []
    if encrypts_state(stack, board):
        docs.append({"apiVersion": "v1alpha1", "kind": "VolumeConfig", "name": STATE, "encryption": volume})
    if not ephemeral_written:
        docs.append({"apiVersion": "v1alpha1", "kind": "VolumeConfig", "name": EPHEMERAL, "encryption": volume})
    if encryption.node_key(stack, board) == "kms":
        docs.append({"apiVersion": "v1alpha1", "kind": "TrustedRootsConfig", "name": TRUSTED_ROOTS, "certificates": ca_certificate})
    return docs
