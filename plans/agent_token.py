"""Each maia's own k3s join token: a kubeadm-style bootstrap token, in k3s's secure full form, pinned to the cluster CA.

Why not the cluster's server token: anyone holding it has full admin access to the Ainur, and it is the passphrase
of k3s's bootstrap data (the CA private keys) (docs.k3s.io/cli/token). It would sit in every maia's
/etc/rancher/k3s/config.yaml, and a netbooted maia's root is an NFS export read over the LAN in clear. The valar keep
the server token: changing the servers' tokens is what made every valar refuse to start once ("cred/passwd newer than
datastore"), so nothing here touches a server.

A maia's token `K10<CA hash>::<id>.<secret>` (k3s pkg/clientaccess/token.go parseToken, :212-262 at release-1.35
2b1b737):
- `<id>.<secret>` is a bootstrap token (kubeadm.NewBootstrapTokenString: `[a-z0-9]{6}.[a-z0-9]{16}`); the agent sends
  it as `Authorization: Bearer` (token.go get/put/post, :449-451). k3s's supervisor authenticates a request with the
  API server's own authenticator (pkg/daemons/control/server.go:444, authenticator.Combine), which k3s starts with
  `--enable-bootstrap-token-auth` (server.go:215); Kubernetes' bootstrap authenticator reads the Secret
  `kube-system/bootstrap-token-<id>` of type `bootstrap.kubernetes.io/token` with `usage-bootstrap-authentication:
  "true"`, and names the user `system:bootstrap:<id>` in the group `system:bootstrappers`. The agent's routes ask for
  one of `k3s:agent`, `system:nodes`, `system:bootstrappers` (pkg/server/handlers/router.go:36): so no
  `auth-extra-groups` is needed, and none is given (what `k3s token create` writes too by default: pkg/cli/token/
  token.go:66-74, Groups only from --groups).
- `<CA hash>` pins the cluster CA: the agent downloads `/cacerts` without trust, and refuses a bundle whose hash
  differs (token.go validateCAHash, :391-409; hashCA, :165-196: sha256 of the PEM file for a single certificate). Read
  on the first valar where k3s writes it: the server token file `K10<hash>::server:<password>` (pkg/server/server.go
  printTokens, :360-364, handlers.WriteToken with Runtime.ServerCA, rewritten at every start). Only the hash leaves the
  Pi (`ca_hash_script`): the password part never does.

No expiration: a netbooted maia's root of a new image does not keep /var/lib/rancher/k3s/agent (plans.netboot.nfs
KEPT_ON_NEW_IMAGE), so its client certificates are gone and its next start authenticates with the token alone
(pkg/agent/config/config.go get, :439-450: ParseAndValidateToken WithClientCertificate(client-kubelet.crt), a
certificate that "is not an error if the files do not exist", token.go:90-99).
"""

from __future__ import annotations

import re
from typing import Any

from stacks.model import Node

NAMESPACE = "kube-system"
# Kubernetes' bootstrap token Secret (k8s.io/cluster-bootstrap/token/api: BootstrapTokenSecretPrefix, SecretTypeBootstrapToken).
SECRET_PREFIX = "bootstrap-token-"  # noqa: S105 - a Secret name's prefix
SECRET_TYPE = "bootstrap.kubernetes.io/token"  # noqa: S105 - a Secret type
ID_LENGTH = 6
SECRET_LENGTH = 16
# kubeadm's BootstrapTokenPattern (k8s.io/cluster-bootstrap/token/api/types.go): what k3s's parseToken accepts.
TOKEN_PATTERN = re.compile(r"^([a-z0-9]{6})\.([a-z0-9]{16})$")
# k3s's full form for a bootstrap token: tokenPrefix "K10", a sha256 hex, "::" (pkg/clientaccess/token.go:28-29).
FULL_PATTERN = re.compile(r"^K10([0-9a-f]{64})::([a-z0-9]{6})\.([a-z0-9]{16})$")
SERVER_TOKEN_FILE = "/var/lib/rancher/k3s/server/token"  # noqa: S105 - a path on the Pi
CA_HASH = re.compile(r"^[0-9a-f]{64}$")


def secret_name(token_id: str) -> str:
    return SECRET_PREFIX + token_id


def description(node: Node) -> str:
    return f"k3s agent join token of the Ainur maia {node.name} (Iluvatar; revoked when the Pi leaves the inventory)"


def secret_string_data(node: Node, token_id: str, token_secret: str) -> dict[str, str]:
    """The Secret's data, with the keys `k3s token create` writes (pkg/kubeadm/utils.go encodeTokenSecretData, :64-97), no
    expiration (the bootstrap authenticator then accepts it until the Secret is deleted) and one usage: authentication
    (`k3s token create` defaults to signing too, pkg/kubeadm/token.go:20-26; signing is for kubeadm's cluster-info
    ConfigMap, which no k3s agent reads)."""
    return {
        "token-id": token_id,
        "token-secret": token_secret,
        "usage-bootstrap-authentication": "true",
        "description": description(node),
    }


def secret_manifest(node: Node, token_id: str, token_secret: str) -> dict[str, Any]:
    """The whole Secret (what components.ainur declares, and what the tests apply to a real API server)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": SECRET_TYPE,
        "metadata": {"name": secret_name(token_id), "namespace": NAMESPACE, "labels": labels(node)},
        "stringData": secret_string_data(node, token_id, token_secret),
    }


def labels(node: Node) -> dict[str, str]:
    return {"app.kubernetes.io/part-of": "iluvatar", "iluvatar/pi": node.name}


def full_token(ca_hash: str, token_id: str, token_secret: str) -> str:
    """`K10<hash>::<id>.<secret>`; refuses anything k3s's parseToken would read differently."""
    text = f"K10{ca_hash}::{token_id}.{token_secret}"
    if not FULL_PATTERN.match(text):
        raise ValueError("a maia's agent token must be K10<64 hex>::<[a-z0-9]{6}>.<[a-z0-9]{16}> (k3s pkg/clientaccess/token.go parseToken)")
    return text


def ca_hash_script(token_file: str = SERVER_TOKEN_FILE) -> str:
    """Run on the first valar after its join: print the cluster CA's hash k3s wrote in its server token file, and only
    that (the password after `::server:` never leaves the Pi)."""
    return f"""set -eu
hash=$(sudo sed -n 's/^K10\\([0-9a-f]\\{{64\\}}\\)::.*$/\\1/p' {token_file} 2>/dev/null || true)
if [ -z "$hash" ]; then
  echo "iluvatar: $(hostname): {token_file} holds no K10<CA hash>:: token (k3s writes it at each start); look with: sudo journalctl -u k3s" >&2
  exit 1
fi
echo "$hash"
"""


def parse_ca_hash(printed: str) -> str:
    """The hash the step printed, checked: a maia whose token carried anything else would never join."""
    text = printed.strip()
    if not CA_HASH.match(text):
        raise ValueError(
            f"the Ainur's ca-hash step printed {text[:80]!r}, not a sha256 hex digest of the cluster CA; "
            f"look on the first valar with: sudo head -c 70 {SERVER_TOKEN_FILE}"
        )
    return text
