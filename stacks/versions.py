"""Feature floors: the oldest release of a versioned part that a feature the same stack turns on works with.

Each floor is what the program gives that part, read against the part's own source at the release it names; a
stack that turns the feature on with an older release is refused at preview, naming the version key. Talos's
Kubernetes matrix already keeps Arda at 1.30 or later; the Ainur's k3s is the part a user can leave behind:

- **Sign-in** (`iluvatar:identity`): plans.apiserver gives k3s's API server an `AuthenticationConfiguration` with
  two audiences and `audienceMatchPolicy: MatchAny`. Kubernetes 1.30 is the first to read it by default: in
  k8s.io/apiserver v0.30.0 the StructuredAuthenticationConfiguration gate is beta and on
  (pkg/features/kube_features.go:350) and v1beta1 has `audienceMatchPolicy` (pkg/apis/apiserver/v1beta1/types.go:249);
  in v0.29.0 the gate is alpha and off (pkg/features/kube_features.go:314), so the API server does not start.
- **The Ainur's etcd snapshots to S3** (`iluvatar:backup` with an S3 target): plans.backup gives k3s
  `etcd-s3-config-secret`, which k3s has from v1.30.3+k3s1 (k3s-io/k3s#10487, its backport to the 1.30 line; the
  1.28 and 1.29 lines' backports are not taken here: nobody checked their releases against the source).

Longhorn's floor (Kubernetes 1.25 on the Pis) and Rook's (1.31 on Arda) are stacks.storage's.
"""

from __future__ import annotations

from stacks.data import parse_target
from stacks.data_model import Backup
from stacks.errors import Problem
from stacks.model import Ainur

K3S = "iluvatar:ainur.k3sVersion"
SIGN_IN_MIN_KUBERNETES = (1, 30)
K3S_S3_CONFIG_SECRET = (1, 30, 3)


def k3s_release(version: str) -> tuple[int, int, int]:
    """`v1.30.3+k3s1` as (1, 30, 3)."""
    major, minor, patch = version.removeprefix("v").split("+")[0].split(".")[:3]
    return int(major), int(minor), int(patch)


def _release(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


def check(ainur: Ainur | None, identity_set: bool, backup: Backup | None) -> list[Problem]:
    """The features this stack turns on that its k3s release is too old for."""
    if ainur is None:
        return []
    out: list[Problem] = []
    k3s = k3s_release(ainur.k3s_version)
    if identity_set and k3s[:2] < SIGN_IN_MIN_KUBERNETES:
        out.append(
            Problem(
                K3S,
                f"{ainur.k3s_version}: sign-in (iluvatar:identity) gives the Ainur's API server a structured authentication config, "
                f"which Kubernetes reads from {_release(SIGN_IN_MIN_KUBERNETES)} on (before, its API server does not start); "
                f"use k3s v{_release(SIGN_IN_MIN_KUBERNETES)}.0+k3s1 or later",
            )
        )
    target = parse_target(backup.target) if backup is not None else None
    if target is not None and not isinstance(target, str) and target.kind == "s3" and k3s < K3S_S3_CONFIG_SECRET:
        out.append(
            Problem(
                K3S,
                f"{ainur.k3s_version}: the Ainur's etcd snapshots go to the S3 target through k3s's etcd-s3-config-secret, which "
                f"k3s has from v{_release(K3S_S3_CONFIG_SECRET)}+k3s1; use that or later",
            )
        )
    return out
