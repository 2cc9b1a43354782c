"""A stack's state as `pulumi stack export` prints it after a killed `pulumi up`, built from the program's own run.

The engine is not available here (../shared engine facts), so this writes what engine v3.259.0 exports, shaped as
github.com/pulumi/pulumi v3.259.0 defines it: `apitype.UntypedDeployment` (sdk/go/common/apitype/core.go:382-393,
`version` 3), `DeploymentV3` (:156-174: manifest, secrets_providers, resources, pending_operations, metadata),
`ResourceV3` (:489-565) and `OperationV2` (:374-379: the resource as the step began, and `type`, here `creating`).
A secret is `{"4dabf...": "1b47...", "ciphertext": ...}`, or with `--show-secrets` `"plaintext"`: the value's JSON
(pkg/resource/stack/deployment.go:844-880). A provider reference is `<urn>::<id>`
(sdk/go/common/providers/reference.go:95-101).

The resources registered before the pending ones are in `resources`, finished; the pending ones are what the killed
run was creating, in the order given. A Release's inputs are its provider's checked ones: pulumi-kubernetes v4.32.0 `Check` fills
`namespace` and `timeout` (provider/pkg/provider/helm_release.go:361-364, `setDefaults` :428-441).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from iluvatar.simulate import Registration, SecretValue, Simulation

SIG = "4dabf18193072939515e22adb298388d"  # resource.SigKey (sdk/go/common/resource/sig/sig.go:21)
SECRET = "1b47061264138c4ac30d75fd1eb44270"  # resource.SecretSig, its value for a secret (sig.go:24)
HELM_TIMEOUT_SECONDS = 300  # helm_release.go:64 defaultTimeoutSeconds


def secret(value: Any, show_secrets: bool) -> dict[str, str]:
    if show_secrets:
        return {SIG: SECRET, "plaintext": json.dumps(value)}
    return {SIG: SECRET, "ciphertext": "v1:Zm9vYmFyYmF6:bm90IHRoZSByZWFsIGNpcGhlcnRleHQ="}


def serialized(value: Any, show_secrets: bool) -> Any:
    if isinstance(value, SecretValue):
        return secret(_plain(value.value), show_secrets)
    if isinstance(value, Mapping):
        return {k: serialized(v, show_secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [serialized(v, show_secrets) for v in value]
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, SecretValue):
        return _plain(value.value)
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _id(r: Registration) -> str:
    if r.type.startswith("pulumi:providers:"):
        return f"{r.name}-id"  # the id the program's provider references carry (iluvatar.simulate)
    if r.type == "kubernetes:helm.sh/v3:Release":
        return f"{_plain(r.inputs.get('namespace'))}/{_plain(r.inputs.get('name'))}"  # fqName: provider/pkg/provider/util.go:113
    return f"{r.name}-id"


def _resource(r: Registration, show_secrets: bool, inputs: Mapping[str, Any] | None, finished: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"urn": r.urn, "custom": r.custom}
    if finished and r.custom:
        out["id"] = _id(r)
    out["type"] = r.type
    given = dict(r.inputs if inputs is None else inputs)
    if r.type == "kubernetes:helm.sh/v3:Release":
        given.setdefault("timeout", HELM_TIMEOUT_SECONDS)
    if given:
        out["inputs"] = serialized(given, show_secrets)
    if finished:
        out["outputs"] = serialized(given, show_secrets) if r.custom else {}
    if r.parent:
        out["parent"] = r.parent
    if r.dependencies:
        out["dependencies"] = list(r.dependencies)
    if r.provider:
        out["provider"] = r.provider
    return out


def killed_up(
    sim: Simulation,
    pending: Sequence[str],
    *,
    show_secrets: bool = True,
    inputs: Mapping[str, Mapping[str, Any]] | None = None,
    finished: Sequence[str] = (),
) -> dict[str, Any]:
    """The export after a `pulumi up` killed while it created the resources named `pending`: everything registered
    before the first of them finished, plus those named in `finished`. `inputs` replaces a resource's inputs by name
    (e.g. a provider's kubeconfig, to reach the test's cluster)."""
    changed = dict(inputs or {})
    order = [r.name for r in sim.registrations]
    first = min(order.index(name) for name in pending)
    done = [r for i, r in enumerate(sim.registrations) if (i < first and r.name not in pending) or r.name in finished]
    stack = f"urn:pulumi:{sim.stack}::iluvatar::pulumi:pulumi:Stack::iluvatar-{sim.stack}"
    resources = [{"urn": stack, "custom": False, "type": "pulumi:pulumi:Stack"}]
    resources += [_resource(r, show_secrets, changed.get(r.name), True) for r in done]
    named = sim.named()
    operations = [{"resource": _resource(named[name], show_secrets, changed.get(name), False), "type": "creating"} for name in pending]
    return {
        "version": 3,
        "deployment": {
            "manifest": {"time": "2026-11-26T14:02:11.403958812Z", "magic": "", "version": "v3.259.0"},
            "secrets_providers": {"type": "passphrase", "state": {"salt": "v1:q1Vb6bPpU9A=:v1:3e5p7b2E5y8XZkLq:9Vq1mQ=="}},
            "resources": resources,
            "pending_operations": operations,
            "metadata": {},
        },
    }
