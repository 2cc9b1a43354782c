"""Feature floors: the oldest release of a versioned part that a feature the same stack turns on works with.

Each floor is what the program gives that part, read against the part's own source at the release it names; a
stack that turns the feature on with an older release is refused at preview, naming the version key. Talos's
Kubernetes matrix already keeps Arda at 1.30 or later; the Ainur's k3s is the part a user can leave behind:

- **Every stack with the Ainur**: plans.k3s gives k3s's API server a ValidatingAdmissionPolicy and its binding at
  `admissionregistration.k8s.io/v1` (who may register a Node), as plans.remote_access does for Headscale's state stamp.
  That version is served from Kubernetes 1.30 (k8s.io/api v0.30.0 admissionregistration/v1/types.go:141 defines
  ValidatingAdmissionPolicy; v0.29.0's v1 has none, only v1beta1), so on an older k3s `pulumi up` fails creating it.
  Sign-in (`iluvatar:identity`) needs 1.30 too: its structured `AuthenticationConfiguration` with
  `audienceMatchPolicy: MatchAny` is read by default from k8s.io/apiserver v0.30.0 (pkg/features/kube_features.go:350,
  pkg/apis/apiserver/v1beta1/types.go:249), and Longhorn 1.10 on the Pis needs only 1.25: the one floor covers all three.
- **The Ainur's etcd snapshots to S3** (`iluvatar:backup` with an S3 target): plans.backup gives k3s
  `etcd-s3-config-secret`, which k3s has from v1.30.3+k3s1 (k3s-io/k3s#10487, its backport to the 1.30 line; the
  1.28 and 1.29 lines' backports are not taken here: nobody checked their releases against the source).

Rook's floor (Kubernetes 1.31 on Arda) is stacks.storage's.
"""

from __future__ import annotations

from stacks import pins
from stacks.data import parse_target
from stacks.data_model import Backup
from stacks.errors import Problem
from stacks.model import Ainur

K3S = "iluvatar:ainur.k3sVersion"
K3S_MIN_KUBERNETES = (1, 30)
K3S_S3_CONFIG_SECRET = (1, 30, 3)


def k3s_release(version: str) -> tuple[int, int, int]:
    """`v1.30.3+k3s1` as (1, 30, 3)."""
    major, minor, patch = version.removeprefix("v").split("+")[0].split(".")[:3]
    return int(major), int(minor), int(patch)


def _release(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


def check(ainur: Ainur | None, backup: Backup | None) -> list[Problem]:
    """The features this stack turns on that its k3s release is too old for."""
    if ainur is None:
        return []
    k3s = k3s_release(ainur.k3s_version)
    target = parse_target(backup.target) if backup is not None else None
    s3 = target is not None and not isinstance(target, str) and target.kind == "s3"
    if k3s[:2] < K3S_MIN_KUBERNETES:
        # One problem: the release to write is the newest floor this stack needs, the S3 one included.
        fix = f"v{_release(K3S_S3_CONFIG_SECRET)}+k3s1 (the S3 target's etcd snapshots need it)" if s3 else f"v{_release(K3S_MIN_KUBERNETES)}.0+k3s1"
        return [
            Problem(
                K3S,
                f"{ainur.k3s_version} is Kubernetes {_release(k3s[:2])}, and Iluvatar gives the Ainur a ValidatingAdmissionPolicy at "
                f"admissionregistration.k8s.io/v1 (who may register a Node), which Kubernetes serves from {_release(K3S_MIN_KUBERNETES)} "
                f"on: `pulumi up` would fail creating it; write {fix} or later (this Iluvatar is tested with {pins.K3S}). Ainur "
                f"running an older minor move one minor at a time: up to v{K3S_MIN_KUBERNETES[0]}.{K3S_MIN_KUBERNETES[1] - 1} "
                "with the Iluvatar that deployed them, then here (docs/day2.md#upgrading-k3s-on-the-ainur)",
            )
        ]
    if s3 and k3s < K3S_S3_CONFIG_SECRET:
        return [
            Problem(
                K3S,
                f"{ainur.k3s_version}: the Ainur's etcd snapshots go to the S3 target through k3s's etcd-s3-config-secret, which "
                f"k3s has from v{_release(K3S_S3_CONFIG_SECRET)}+k3s1; use that or later",
            )
        ]
    return []
