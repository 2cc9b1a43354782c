"""`iluvatar recover STACK`: after a killed `pulumi up`, clear the way for the next one to install its Helm releases.

A `pulumi up` killed outright (SIGKILL, a power cut) leaves each step it was running as a pending operation in the
stack's state. Its provider plugins outlive it and finish what they started (../shared engine facts, engine v3.259).
The next `up` retries each pending create. For a plain Kubernetes object that is an upsert; for a
`kubernetes:helm.sh/v3:Release` it is a plain Helm install (pulumi-kubernetes v4.32.0
provider/pkg/provider/helm_release.go, `helmCreate`: `action.NewInstall`, `Replace` only as the resource asks), and
Helm refuses a name whose latest record is not uninstalled or failed (helm.sh/helm/v3 v3.20.2
pkg/action/install.go:531-553, `availableName`): `cannot re-use a name that is still in use`.

So, for each pending create of a Release in the state, this command waits until Helm's latest record of that
release is no longer pending (the killed run's provider finishing its install; bounded: see `deadline`), then, if
they are exactly what that one install writes (`_one_install_by_this_stack`) and the state has not moved meanwhile (a
live run, `_still`), deletes that release's records, and nothing else: the Secrets `owner=helm,name=<release>` in its namespace (Helm's
secrets driver labels, pkg/storage/driver/secrets.go:212-236). The objects stay. The next `up`'s install adopts
them: each carries the release's `meta.helm.sh/release-name`/`-namespace` annotations and Helm's managed-by label
(pkg/action/install.go:332-356 `existingResourceConflict`, pkg/action/validate.go:65-92 `checkOwnership`), and Helm
updates them in place instead of creating them (install.go:452-464).

The program itself cannot do this (docs/bring-up.md#when-a-pulumi-up-stops-half-way): what it registers never says whether a
Release is a create the engine left pending or one the state tracks, and deleting a tracked release's records
loses the history its later upgrades need; a step of the program runs only when its inputs change, so it would not
run again on the retry.

The state is read as `pulumi stack export --show-secrets` prints it (a Deployment v3: github.com/pulumi/pulumi
v3.259.0 sdk/go/common/apitype/core.go:156-174 `DeploymentV3`, :374-379 `OperationV2`, :489-565 `ResourceV3`): run
here, without touching the disk, or from a file. The provider's kubeconfig is a secret, which an export without
`--show-secrets` holds only as ciphertext (pkg/resource/stack/deployment.go:844-880).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import datetime
import gzip
import http.client
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

RELEASE_TYPE = "kubernetes:helm.sh/v3:Release"
# pkg/resource/stack/deployment.go:844-880: a secret is an object carrying this key (resource.SigKey,
# sdk/go/common/resource/sig/sig.go:21) and either `ciphertext` or, exported with --show-secrets, `plaintext` (the
# value as JSON).
SECRET_SIG = "4dabf18193072939515e22adb298388d"  # noqa: S105 (a marker, not a secret)
# pulumi-kubernetes v4.32.0 provider/pkg/provider/helm_release.go:64 `defaultTimeoutSeconds`, the `timeout` a
# Release without one installs with.
HELM_TIMEOUT_SECONDS = 300
# Above Helm's own bounded waits, what an install does unbounded but quickly: rendering, creating the objects,
# writing the record (pkg/action/install.go:233-413).
MARGIN_SECONDS = 60
# Helm's statuses an operation is still under way in (pkg/release/status.go:47-49 `IsPending`).
PENDING = ("pending-install", "pending-upgrade", "pending-rollback")
# And `uninstalling` (status.go:34-35), which IsPending leaves out: an uninstall under way, the killed run's delete or an
# install's own rollback of a failure (pkg/action/install.go:506-520 `failRelease` with `atomic`), which deletes the
# objects it installed once it is done, so no record under it may be removed before it ends.
BUSY = (*PENDING, "uninstalling")
# The killed run's steps on a Release that this command looks at (apitype/core.go:348-356 `OperationType`).
OPS = ("creating", "updating", "deleting")
STEP = {"creating": "install", "updating": "upgrade", "deleting": "uninstall"}
POLL_SECONDS = 2.0
EXPORT_SECONDS = 300  # `pulumi stack export`: a remote backend's answer, a passphrase's key derivation


Key = tuple[str, str]  # a release as one cluster knows it: its provider's URN, and `namespace/name`


class RecoverError(Exception):
    """The command cannot do what was asked; the message says why and what to do."""


@dataclass(frozen=True)
class Pending:
    """A pending create of a Helm release in the state, with what reaching its cluster takes."""

    urn: str
    release: str
    namespace: str
    timeout: int  # the Release's `timeout` input (seconds), as its install ran with
    provider: str  # the provider's URN
    kubeconfig: str  # the provider's `kubeconfig` input: the kubeconfig's text, or a path (as pulumi-kubernetes takes it)
    context: str | None  # the provider's `context` input
    chart: str = ""  # the Release's `chart` input: a repository's chart name, `repo/name`, an oci:// reference or a path
    version: str = ""  # its `version` input (Check resolves it to the exact chart version: helm_release.go:389)
    gone: str = ""  # the provider reference, when the state no longer holds that provider (kubeconfig and context empty)
    op: str = "creating"  # the pending operation's type: creating, updating or deleting
    named: bool = False  # named with --release (a killed run that kept no checkpoint), not found pending in the state

    @property
    def chart_name(self) -> str:
        """The name Helm records for the chart (Chart.yaml's `name`): the input's last path segment, as each of
        the program's charts is named (`cert-manager`, `oci://docker.io/envoyproxy/gateway-helm`)."""
        return self.chart.rstrip("/").rsplit("/", 1)[-1]

    @property
    def label(self) -> str:
        return f"{self.namespace}/{self.release}"

    @property
    def key(self) -> Key:
        return (self.provider, self.label)

    @property
    def resource_name(self) -> str:
        return self.urn.rsplit("::", 1)[-1]


# --- the state ---------------------------------------------------------------------------------------------------


def plain(value: Any, where: str) -> Any:
    """A state value with its secrets opened: `plaintext` is the value as JSON; `ciphertext` cannot be opened here."""
    if isinstance(value, Mapping):
        if SECRET_SIG in value:
            if "plaintext" in value:
                return plain(json.loads(value["plaintext"]), where)
            raise RecoverError(
                f"{where} is an encrypted secret in this export: export the state with `pulumi stack export --show-secrets` "
                "(or let `iluvatar recover STACK` run it, without --state)"
            )
        return {k: plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def deployment_of(text: str, source: str) -> dict[str, Any]:
    """The `deployment` of a `pulumi stack export` (apitype.UntypedDeployment, version 3)."""
    try:
        export = json.loads(text)
    except json.JSONDecodeError as e:
        raise RecoverError(f"{source} is not JSON ({e.msg}, line {e.lineno}): give the output of `pulumi stack export --show-secrets`") from None
    if not isinstance(export, dict) or not isinstance(export.get("deployment"), dict):
        raise RecoverError(f"{source} has no `deployment`: give the output of `pulumi stack export --show-secrets`")
    if export.get("version") != 3:
        raise RecoverError(f"{source} is a version {export.get('version')!r} deployment; this command reads version 3 (Pulumi CLI v3)")
    deployment: dict[str, Any] = export["deployment"]
    return deployment


def _provider(deployment: Mapping[str, Any], reference: str, urn: str) -> dict[str, Any] | None:
    """The provider resource a reference (`<urn>::<id>`, split at its last `::`: sdk/go/common/providers/reference.go:147-160) names."""
    if "::" not in reference:
        raise RecoverError(f"{urn} names no provider in the state (its `provider` is {reference!r})")
    provider_urn, provider_id = reference.rsplit("::", 1)
    candidates = [*(deployment.get("resources") or []), *((op.get("resource") or {}) for op in deployment.get("pending_operations") or [])]
    for r in candidates:
        if r.get("urn") == provider_urn and r.get("id") == provider_id:
            return dict(r)
    return None


def tracked(deployment: Mapping[str, Any]) -> dict[Key, str]:
    """The releases the state holds, by their provider's URN and `namespace/name` (pulumi-kubernetes's id:
    provider/pkg/provider/util.go:113) -> URN. The provider is part of the key: the same `namespace/name` on two
    clusters is two releases (the homelab stack's Argo CDs are both argocd/argocd, one on each cluster).

    A resource whose delete has run (`pendingReplacement: true`: the engine sets it only once the provider's delete
    succeeded, pulumi v3.259.0 pkg/resource/deploy/step.go:770-784) owns no release any more: a delete-before-replace of
    the same name, killed during its create, is the killed install's, and is recovered. One the state keeps to delete it
    (`delete: true`) is still the release's owner: the engine marks the old half of a create-before-replace so once the new
    half's create succeeded (step.go:467-472), before the old half's delete has run, and a failed delete leaves it so;
    its release is installed and live until that delete ends. pulumi-kubernetes replaces a Release create-first
    (provider/pkg/provider/helm_release.go:932) and only when its `name` or `namespace` changes (:907), so the old half
    keeps its own `namespace/name`, and a stale pending create of that name must find it tracked.
    """
    out: dict[Key, str] = {}
    for r in deployment.get("resources") or []:
        if r.get("pendingReplacement"):
            continue
        if r.get("type") == RELEASE_TYPE and r.get("id"):
            out[(str(r.get("provider") or "").rsplit("::", 1)[0], str(r["id"]))] = str(r["urn"])
    return out


def pending_creates(deployment: Mapping[str, Any]) -> list[Pending]:
    """Every pending create of a Helm release, in the state's order."""
    return [p for p in pending_ops(deployment) if p.op == "creating"]


def pending_ops(deployment: Mapping[str, Any]) -> list[Pending]:
    """Every pending create, update or delete of a Helm release, in the state's order."""
    found = []
    for op in deployment.get("pending_operations") or []:
        r = op.get("resource") or {}
        if op.get("type") not in OPS or r.get("type") != RELEASE_TYPE:
            continue
        kind = str(op["type"])
        urn = str(r.get("urn"))
        # Only what finds the records is opened: the values may hold secrets this command has no use for.
        given = r.get("inputs") or {}
        inputs = {k: plain(given.get(k), f"{urn} inputs.{k}") for k in ("name", "namespace", "timeout", "chart", "version")}
        release, namespace = inputs.get("name"), inputs.get("namespace") or "default"
        if not isinstance(release, str) or not release:
            raise RecoverError(f"{urn}: its inputs name no release (`name`), so its Helm records cannot be told apart")
        reference = str(r.get("provider") or "")
        provider = _provider(deployment, reference, urn)
        if provider is None:
            # A stale pending create (the engine keeps them in every later state: pkg/backend/snapshot.go:757-766) of a
            # cluster since rebuilt or a provider since replaced: nothing of this state reaches its cluster.
            found.append(Pending(urn, release, str(namespace), HELM_TIMEOUT_SECONDS, reference.rsplit("::", 1)[0], "", None, gone=reference, op=kind))
            continue
        config = plain(provider.get("inputs") or {}, f"{provider['urn']} inputs")
        kubeconfig = config.get("kubeconfig")
        if isinstance(kubeconfig, Mapping):  # pulumi-kubernetes takes an object too (util.go:174-190)
            kubeconfig = json.dumps(kubeconfig)
        if not isinstance(kubeconfig, str) or not kubeconfig:
            raise RecoverError(f"{urn}: its provider {provider['urn']} has no kubeconfig in the state; every provider of this program has one")
        context = config.get("context")
        found.append(
            Pending(
                urn=urn,
                release=release,
                namespace=str(namespace),
                timeout=int(inputs.get("timeout") or HELM_TIMEOUT_SECONDS),
                provider=str(provider["urn"]),
                kubeconfig=kubeconfig,
                context=context if isinstance(context, str) and context else None,
                chart=str(inputs.get("chart") or ""),
                version=str(inputs.get("version") or ""),
                op=kind,
            )
        )
    return found


def export(stack: str, cwd: Path) -> str:
    """`pulumi stack export --show-secrets`, read from its output (nothing written to disk)."""
    pulumi = shutil.which("pulumi")
    if pulumi is None:
        raise RecoverError("`pulumi` is not on PATH: install the Pulumi CLI, or give --state FILE (`pulumi stack export --show-secrets > FILE`)")
    command = [pulumi, "stack", "export", "--show-secrets", "--stack", stack]
    try:
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=EXPORT_SECONDS, stdin=subprocess.DEVNULL)  # noqa: S603
    except subprocess.TimeoutExpired:
        raise RecoverError(f"`pulumi stack export --stack {stack}` did not answer within {EXPORT_SECONDS} s (its backend unreachable?)") from None
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise RecoverError(f"`pulumi stack export --stack {stack}` failed: {reason}")
    return done.stdout


# --- the cluster -------------------------------------------------------------------------------------------------


class Kube:
    """Plain HTTPS to one cluster's API server, as the provider's kubeconfig reaches it (certificates or a token)."""

    def __init__(self, kubeconfig: str, context: str | None) -> None:
        # The messages are fixed: the kubeconfig holds credentials, and an exception about it may quote it (an OSError
        # its name, a YAML error a line of it).
        try:
            self._load(kubeconfig, context)
        except ValueError:  # base64
            raise RecoverError("the provider's kubeconfig holds certificate or key data that is not base64") from None
        except OSError:  # ssl.SSLError is one
            raise RecoverError("the provider's kubeconfig's certificate authority, client certificate or key cannot be loaded") from None

    def _load(self, kubeconfig: str, context: str | None) -> None:
        config = _yaml(kubeconfig)  # the kubeconfig's text, YAML or JSON (pulumi-kubernetes takes both: util.go:174-190)
        if not isinstance(config, dict):  # else a path, as pulumi-kubernetes takes it (util.go:135-166)
            try:
                config = _yaml(Path(os.path.expanduser(kubeconfig.strip())).read_text())
            except OSError:
                config = None
        if not isinstance(config, dict):
            raise RecoverError("the provider's kubeconfig is neither a kubeconfig nor the path of a file holding one")
        name = context or config.get("current-context")
        ctx = _named(config, "contexts", name, "context")
        cluster = _named(config, "clusters", ctx.get("cluster"), "cluster")
        user = _named(config, "users", ctx.get("user"), "user")
        url = urllib.parse.urlsplit(str(cluster.get("server") or ""))
        if url.scheme != "https" or not url.hostname:
            raise RecoverError(f"the kubeconfig's server {cluster.get('server')!r} is not an https:// address")
        self.server = f"{url.hostname}:{url.port or 443}"
        self.host, self.port = url.hostname, url.port or 443

        def material(key: str, where: Mapping[str, Any]) -> bytes | None:
            if where.get(f"{key}-data"):
                return base64.b64decode(where[f"{key}-data"], validate=True)
            return Path(os.path.expanduser(str(where[key]))).read_bytes() if where.get(key) else None

        if cluster.get("insecure-skip-tls-verify"):
            raise RecoverError(f"the kubeconfig of {url.hostname} skips TLS verification; this command deletes nothing over an unverified connection")
        authority = material("certificate-authority", cluster)
        self.context = ssl.create_default_context(cadata=authority.decode() if authority is not None else None)
        certificate = material("client-certificate", user)
        if certificate is not None:
            _load_cert_chain(self.context, certificate + b"\n" + (material("client-key", user) or b""))
        self.token = user.get("token")

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None
        if body is not None:
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        connection = http.client.HTTPSConnection(self.host, self.port, context=self.context, timeout=30)
        try:
            connection.request(method, path, body=data, headers=headers)
            response = connection.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException) as e:
            raise RecoverError(f"cannot reach the cluster's API server at {self.server}: {e}") from None
        finally:
            connection.close()
        try:
            return response.status, json.loads(raw) if raw else None
        except json.JSONDecodeError:
            return response.status, raw.decode(errors="replace")

    def records(self, p: Pending) -> list[Record]:
        """Helm's records of the release (its storage Secrets), oldest first: the Secrets with Helm's labels that are also
        of Helm's type `helm.sh/release.v1` (pkg/storage/driver/secrets.go:243-254) and named as Helm names a record of
        this release, `sh.helm.release.v1.<release>.v<N>` (pkg/storage/storage.go:35,251-253). A Secret someone else
        labelled `owner=helm` is not one, and is never deleted."""
        query = urllib.parse.urlencode({"labelSelector": f"owner=helm,name={p.release}"})
        status, answer = self.request("GET", f"/api/v1/namespaces/{p.namespace}/secrets?{query}")
        if status != 200:
            raise RecoverError(f"cannot list Helm's records of {p.label} at {self.server}: {_reason(status, answer)}")
        name = re.compile(rf"sh\.helm\.release\.v1\.{re.escape(p.release)}\.v[1-9][0-9]*")
        return sorted(
            (
                Record.of(s)
                for s in answer.get("items") or []
                if s.get("type") == "helm.sh/release.v1" and name.fullmatch(str((s.get("metadata") or {}).get("name") or ""))
            ),
            key=lambda r: r.version,
        )

    def delete(self, p: Pending, record: Record) -> bool:
        """Delete exactly the record read (uid and resourceVersion preconditions); False if it changed since."""
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": record.uid, "resourceVersion": record.resource_version}}
        status, answer = self.request("DELETE", f"/api/v1/namespaces/{p.namespace}/secrets/{record.name}", body)
        if status in (200, 202, 404):
            return True
        if status == 409:
            return False
        raise RecoverError(f"cannot delete {p.namespace}/{record.name} at {self.server}: {_reason(status, answer)}")


def _load_cert_chain(context: ssl.SSLContext, pem: bytes) -> None:
    """The client certificate and key, given to the TLS library from memory: `load_cert_chain` reads only a file name,
    so it gets an anonymous memory file's (memfd_create(2): no name in any file system, gone with its last descriptor,
    whatever ends this process). The key never touches a disk."""
    fd = os.memfd_create("iluvatar-recover-client", os.MFD_CLOEXEC)
    try:
        os.write(fd, pem)
        context.load_cert_chain(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


def _yaml(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return None


def _named(config: Mapping[str, Any], kind: str, name: Any, key: str) -> dict[str, Any]:
    for entry in config.get(kind) or []:
        if entry.get("name") == name:
            return dict(entry.get(key) or {})
    raise RecoverError(f"the provider's kubeconfig has no {kind[:-1]} {name!r}")


def _reason(status: int, answer: Any) -> str:
    return f"{status} {answer.get('message')}" if isinstance(answer, dict) and answer.get("message") else f"HTTP {status}"


@dataclass(frozen=True)
class Record:
    """One of Helm's release records: a Secret `sh.helm.release.v1.<release>.v<version>` (pkg/storage/storage.go:251)."""

    name: str
    uid: str
    resource_version: str
    version: int
    status: str
    written: datetime.datetime | None  # info.last_deployed: when the install or upgrade wrote it
    hooks: int
    # info.deleted: when an uninstall began (helm v3.20.2 pkg/action/uninstall.go:103-105 stamps it and leaves last_deployed)
    deleted: datetime.datetime | None = None
    chart: str = ""  # chart.metadata.name, as the install recorded it
    chart_version: str = ""  # chart.metadata.version

    @property
    def described(self) -> str:
        return f"{self.name} ({self.status}{f', chart {self.chart} {self.chart_version}' if self.chart else ''})"

    @staticmethod
    def of(secret: Mapping[str, Any]) -> Record:
        meta = secret["metadata"]
        labels = meta.get("labels") or {}
        payload = _decode((secret.get("data") or {}).get("release", ""))
        info = payload.get("info") or {}
        chart = (payload.get("chart") or {}).get("metadata") or {}
        written = _time(info["last_deployed"]) if isinstance(info.get("last_deployed"), str) else None
        deleted = _time(info["deleted"]) if isinstance(info.get("deleted"), str) else None
        return Record(
            name=meta["name"],
            uid=meta["uid"],
            resource_version=meta["resourceVersion"],
            version=int(labels.get("version") or payload.get("version") or 0),
            status=str(labels.get("status") or info.get("status") or "unknown"),
            written=written,
            hooks=len(payload.get("hooks") or []),
            chart=str(chart.get("name") or ""),
            chart_version=str(chart.get("version") or ""),
            deleted=deleted,
        )


def _decode(data: str) -> dict[str, Any]:
    """A record's release: the Secret's data (base64), itself base64 of gzip'd JSON (pkg/storage/driver/util.go:58-87)."""
    try:
        raw = base64.b64decode(base64.b64decode(data))
        if raw[:3] == b"\x1f\x8b\x08":
            raw = gzip.decompress(raw)
        out = json.loads(raw)
    except (ValueError, OSError):
        return {}
    return out if isinstance(out, dict) else {}


def _time(text: str) -> datetime.datetime | None:
    """Go's RFC 3339 with nanoseconds, in the zone of the machine that ran Helm (`2026-11-26T15:04:05.123456789+01:00`:
    helm v3.20.2 pkg/time/time.go:39-48 stamps `time.Now()`), as UTC to the microsecond Python keeps; None without a zone."""
    found = re.fullmatch(r"([^.]*)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?", text.strip())
    if found is None or found.group(3) is None:
        return None
    head, fraction, zone = found.groups()
    try:
        parsed = datetime.datetime.fromisoformat(f"{head}{'.' + fraction[:6].ljust(6, '0') if fraction else ''}{zone.replace('Z', '+00:00')}")
    except ValueError:
        return None
    return parsed.astimezone(datetime.UTC)


def deadline(p: Pending, record: Record) -> datetime.datetime | None:
    """When the install, upgrade or uninstall that wrote this pending record has ended, whatever became of it.

    Helm waits on nothing longer than the release's timeout at a time (pkg/action/install.go:444-505): the objects'
    readiness once, and for each hook the delete of its previous run, its completion and its delete
    (pkg/action/hooks.go:37-134): 1 + 3 per hook timeouts at most, from the moment it wrote the pending record.
    An uninstall leaves `last_deployed` as the release's last deploy (weeks ago, maybe) and stamps `deleted` when it
    begins, before its pre-delete hooks, then its objects' deletion wait and its post-delete hooks
    (pkg/action/uninstall.go:103-148): the same bound, from `deleted` (every hook counted: more than its delete hooks).
    Past that, a record still pending was left by a step that died (its machine's power cut), not one under way.
    """
    start = record.deleted if record.status == "uninstalling" else record.written
    if start is None:
        return None
    return start + datetime.timedelta(seconds=p.timeout * (1 + 3 * record.hooks) + MARGIN_SECONDS)


# --- the command -------------------------------------------------------------------------------------------------


Now = Callable[[], datetime.datetime]


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _unchanged() -> None:
    pass


@dataclass(frozen=True)
class Provider:
    """A pulumi-resource-kubernetes process, as /proc shows it."""

    pid: int
    parent: int  # its parent's pid
    parent_program: str  # the parent's executable's file name ("" once it is gone or not ours to read)
    cwd: str  # its working directory: the project's, where the engine started it
    started: datetime.datetime | None

    @property
    def orphaned(self) -> bool:
        """No `pulumi` is its parent: the engine that started it (pulumi v3.259.0 sdk/go/common/resource/plugin/plugin.go:597
        `exec.Command`, a child of the engine) is gone, and the process was handed to init or a subreaper. One whose parent
        is a live `pulumi` belongs to a live run, and is never to be ended."""
        return self.parent_program != "pulumi"

    @property
    def described(self) -> str:
        started = f", started {self.started:%Y-%m-%d %H:%M:%S} UTC" if self.started else ""
        return f"pid {self.pid}{started}, its parent pid {self.parent} ({self.parent_program or 'gone'}), not a `pulumi`"


def _link(path: Path) -> str:
    """A /proc link's target (an executable replaced since it started reads `... (deleted)`), or "" if unreadable."""
    try:
        return os.readlink(path).removesuffix(" (deleted)")
    except OSError:
        return ""


def kubernetes_providers(proc: Path = Path("/proc")) -> list[Provider]:
    """The pulumi-resource-kubernetes processes this user can see on this machine, as /proc lists them, by pid. Each is
    known by its executable (`exe`), never its command line: reading `cmdline` takes the process's memory lock, and
    hangs on a process stuck on a dead NFS mount."""
    boot = None
    with contextlib.suppress(OSError, StopIteration, ValueError, IndexError):  # no boot time: no start time said
        boot = next(int(line.split()[1]) for line in (proc / "stat").read_text().splitlines() if line.startswith("btime "))
    tick = os.sysconf("SC_CLK_TCK")
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or Path(_link(entry / "exe")).name != "pulumi-resource-kubernetes":
            continue
        try:
            # proc(5): `pid (comm) state ppid ...`, field 22 the start in clock ticks after boot; comm may hold spaces and ')'.
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            parent, ticks = int(fields[1]), int(fields[19])
        except (OSError, IndexError, ValueError):  # gone meanwhile
            continue
        started = datetime.datetime.fromtimestamp(boot + ticks / tick, datetime.UTC).replace(microsecond=0) if boot is not None else None
        parent_program = Path(_link(proc / str(parent) / "exe")).name if parent > 0 else ""
        found.append(Provider(int(entry.name), parent, parent_program, _link(entry / "cwd"), started))
    return sorted(found, key=lambda f: f.pid)


def project_of(folder: Path) -> Path:
    """The Pulumi project a folder is in: the nearest folder up holding Pulumi.yaml, as the CLI finds it; the engine starts
    its providers there (pulumi v3.259.0 pkg/engine/project.go:45-47, the project's root when it names no `main`)."""
    folder = folder.resolve()
    for candidate in (folder, *folder.parents):
        if (candidate / "Pulumi.yaml").is_file() or (candidate / "Pulumi.yml").is_file():
            return candidate
    return folder


def orphans(project: Path, proc: Path = Path("/proc")) -> list[Provider]:
    """The killed run's kubernetes providers, as far as this host can tell: orphaned (no `pulumi` parent) and started in
    this project (every stack of the project shares its folder). A live run's, and other projects', are not counted."""
    return [f for f in kubernetes_providers(proc) if f.orphaned and f.cwd == str(project)]


def _orphans_here() -> list[Provider]:
    return orphans(project_of(Path.cwd()))


# The killed run's providers show only on the host (and in the container) that ran it: elsewhere none is found, and
# "no record" would say nothing of an install still to write one.
NO_RECORD = (
    "no record in the cluster, and no pulumi-resource-kubernetes the killed run left runs in this project on this host: nothing to "
    "remove (the next `pulumi up` installs it; run this command on the host the stack's lock names)"
)


class LiveRunError(RecoverError):
    """The state moved while the command ran: a live run, not a killed one; nothing more is done."""


class NotYetError(RecoverError):
    """No record of the release yet, while a kubernetes provider that may still write one runs."""


def recover(
    p: Pending,
    kube: Kube,
    dry_run: bool,
    say: Callable[[str], None],
    now: Now = _utc_now,
    unchanged: Callable[[], None] = _unchanged,
    providers: Callable[[], list[Provider]] = _orphans_here,
) -> list[str]:
    """Clear one release's records once no install is writing them; the names deleted (or, dry, to delete).
    `unchanged` raises if the state moved since it was read (a live run), and is asked right before deleting."""
    waited = False
    while True:
        records = kube.records(p)
        if not records:
            # No record is not no install: the provider writes the record only after it has fetched the chart
            # (pulumi-kubernetes helm_release.go:566-590), installed the chart's CRDs and waited up to 60 s for them
            # (helm v3.20.2 pkg/action/install.go:185,265) and rendered it (install.go:402 writes the record). A
            # provider still running may write it yet; one ended writes nothing more.
            found = providers()
            if found:
                # Never advise ending a live run's provider: the state, exported again, must be as the killed run left it.
                unchanged()
                line = (
                    f"{p.label}: no record in the cluster yet, and a pulumi-resource-kubernetes the killed run left runs in this project on "
                    f"this host ({'; '.join(f.described for f in found)}): a killed run's install writes its record only after fetching the "
                    "chart and installing its CRDs, so one may come yet. Once `iluvatar recover` has nothing else to wait for, end it "
                    f"(`kill {' '.join(str(f.pid) for f in found)}`: nothing it runs is left once no Helm record is pending) and run this command again"
                )
                if dry_run:
                    say(f"  {p.resource_name}: Helm release {line}")
                    return []
                raise NotYetError(line)
            say(f"  {p.resource_name}: Helm release {p.label}: {NO_RECORD}")
            return []
        latest = records[-1]
        if latest.status in BUSY:
            end = deadline(p, latest)
            if end is None or now() < end:
                until = f"until {end:%Y-%m-%d %H:%M:%S} UTC" if end else "with no end known"
                if dry_run:
                    say(
                        f"  {p.resource_name}: Helm release {p.label}: record v{latest.version} is {latest.status}: would wait {until} for it to leave {latest.status}"
                    )
                    return []
                if end is None:
                    raise RecoverError(f"{p.label}: record v{latest.version} is {latest.status} and says not when it was written")
                if not waited:
                    say(
                        f"  {p.resource_name}: Helm release {p.label}: record v{latest.version} is {latest.status}: waiting {until} "
                        "for the killed run's provider to finish it"
                    )
                    waited = True
                time.sleep(POLL_SECONDS)
                continue
            say(
                f"  {p.resource_name}: Helm release {p.label}: record v{latest.version} is still {latest.status} past {end:%Y-%m-%d %H:%M:%S} UTC: its install died"
            )
        _one_install_by_this_stack(p, records)
        names = [r.name for r in records]
        described = ", ".join(r.described for r in records)
        if dry_run:
            say(f"  {p.resource_name}: Helm release {p.label}: would remove Helm's record{'s' if len(names) > 1 else ''} {described}")
            return names
        unchanged()
        if all(kube.delete(p, r) for r in records):
            say(f"  {p.resource_name}: Helm release {p.label}: removed Helm's record{'s' if len(names) > 1 else ''} {described}; its objects stay")
            return names
        # A record changed between the read and the delete (the provider finishing): read them again.


def settle(
    p: Pending,
    kube: Kube,
    dry_run: bool,
    say: Callable[[str], None],
    now: Now = _utc_now,
    unchanged: Callable[[], None] = _unchanged,
    providers: Callable[[], list[Provider]] = _orphans_here,
) -> None:
    """A pending update or delete of a release: wait until Helm's latest record of it is no longer pending or
    uninstalling (the killed run's provider finishing its upgrade or uninstall; bounded as an install is, `deadline`),
    and remove nothing: a retried upgrade or uninstall meeting one under way stops with `another operation
    (install/upgrade/rollback) is in progress` (helm v3.20.2 pkg/action/action.go:63, errPending), and a record deleted
    under it breaks its history.

    A step seen under way and then ended has ended. One never seen under way may not have begun writing yet while the
    killed run's provider runs: an upgrade writes `pending-upgrade` only after the provider fetched its chart and Helm
    rendered it (helm v3.20.2 pkg/action/upgrade.go:276,376), an uninstall writes `uninstalling` only after its
    pre-delete hooks (uninstall.go:107-117); that is said, as for an install with no record yet."""
    waited = False
    while True:
        records = kube.records(p)
        latest = records[-1] if records else None
        if (latest is None or latest.status not in BUSY) and not waited:
            found = providers()
            if found:
                unchanged()
                state = f"its latest record v{latest.version} is {latest.status}" if latest else "it has no record"
                line = (
                    f"{p.label}: {state}, and a pulumi-resource-kubernetes the killed run left runs in this project on this host "
                    f"({'; '.join(f.described for f in found)}): the killed run's {STEP[p.op]} writes Helm's record only after its first steps "
                    "(an upgrade fetches and renders its chart, an uninstall runs its pre-delete hooks), so it may be under way yet. Once "
                    f"`iluvatar recover` has nothing else to wait for, end it (`kill {' '.join(str(f.pid) for f in found)}`) and run this command again"
                )
                if dry_run:
                    say(f"  {p.resource_name}: Helm release {line}")
                    return
                raise NotYetError(line)
        if latest is None and p.op == "deleting":
            # The uninstall ended and purged every record (pulumi-kubernetes v4.32.0 helm_release.go:1236-1243 keeps no
            # history). A pending delete stays in `resources`, so `pulumi up` runs it again, as `uninstall.Run` without
            # IgnoreNotFound, which fails on a release with no record (helm v3.20.2 pkg/action/uninstall.go:77-83;
            # pkg/storage/driver/secrets.go:130-131). A refresh's Read of a release with no record drops the resource
            # (helm_release.go:1066-1070).
            say(
                f"  {p.resource_name}: Helm release {p.label}: the killed run's uninstall ended and removed every record of it. "
                f"`pulumi up` would run the delete again and fail (`uninstall: Release not loaded: {p.release}: release: not found`): first "
                f"`pulumi refresh --stack {_stack_of(p.urn)} --target '{p.urn}' --skip-pending-creates` (it finds no release and drops the "
                "resource from the state), then `pulumi up`"
            )
            return
        if latest is None or latest.status not in BUSY:
            state = f"its latest record v{latest.version} is {latest.status}" if latest else "it has no record"
            say(f"  {p.resource_name}: Helm release {p.label}: the killed run's {STEP[p.op]} ended ({state}); `pulumi up` retries it")
            return
        end = deadline(p, latest)
        if end is not None and now() >= end:
            if latest.status == "uninstalling":
                # A retried uninstall takes up a release left uninstalling: it stops only at `uninstalled`
                # (uninstall.go:93-100), so its record must stay for it to find.
                then = "the killed run's uninstall on it died; `pulumi up` runs it again (Helm takes up a release left uninstalling)"
            else:
                then = "the killed run's step on it died; remove that one record (docs/bring-up.md, step 4), then `pulumi up`"
            say(
                f"  {p.resource_name}: Helm release {p.label}: record v{latest.version} is still {latest.status} past "
                f"{end:%Y-%m-%d %H:%M:%S} UTC: {then}"
            )
            return
        until = f"until {end:%Y-%m-%d %H:%M:%S} UTC" if end else "with no end known"
        if dry_run:
            say(f"  {p.resource_name}: Helm release {p.label}: record v{latest.version} is {latest.status}: would wait {until} for it to end")
            return
        if end is None:
            raise RecoverError(f"{p.label}: record v{latest.version} is {latest.status} and says not when it was written")
        if not waited:
            say(
                f"  {p.resource_name}: Helm release {p.label}: record v{latest.version} is {latest.status}: waiting {until} for the killed run's provider to finish it"
            )
            waited = True
        time.sleep(POLL_SECONDS)


def _stack_of(urn: str) -> str:
    """The stack a URN names: `urn:pulumi:<stack>::<project>::...` (sdk/go/common/resource/urn.go)."""
    return urn.split("::", 1)[0].removeprefix("urn:pulumi:")


def _one_install_by_this_stack(p: Pending, records: list[Record]) -> None:
    """Refuse unless the records are exactly what the pending create's install writes: one record, v1, of the chart
    and version the create asked for. Anything else is another owner's history (a `helm install` by hand, another
    stack), or a release an older kill's pending create no longer describes (the engine keeps pending creates in every
    later state: pkg/backend/snapshot.go:757-766): deleting it would lose history nobody can rebuild."""
    if p.named:
        # No pending create says which chart the killed install took; a single revision 1 is still no upgrade's history.
        if len(records) == 1 and records[0].version == 1:
            return
        raise RecoverError(
            f"{p.label} on {p.resource_name}: Helm's records are not the one install a killed run makes (a single v1): found "
            f"{', '.join(r.described for r in records)}; nothing removed. That is a release's history, not a killed install's"
        )
    version = p.version.removeprefix("v")
    if (
        p.chart_name
        and len(records) == 1
        and records[0].version == 1
        and records[0].chart == p.chart_name
        and records[0].chart_version.removeprefix("v") == version
    ):
        return
    raise RecoverError(
        f"{p.urn}: Helm's records of {p.label} are not the one install this pending create makes (a single v1 of chart "
        f"{p.chart_name} {p.version}): found {', '.join(r.described for r in records)}; nothing removed. If another owner "
        "installed it, this stack cannot install that name: rename one of them. If the pending create is stale (its release "
        "since uninstalled or replaced), `pulumi refresh --clear-pending-creates` drops it"
    )


def run(args: argparse.Namespace) -> int:
    stack = str(args.stack)
    again: Callable[[], Mapping[str, Any]] | None = None
    # The project: where `pulumi` runs for the stack (a stack file's folder), where its providers run.
    cwd = Path(stack).resolve().parent if stack.endswith((".yaml", ".yml")) else Path.cwd()
    if args.state:
        source = Path(args.state)
        try:
            text = sys.stdin.read() if args.state == "-" else source.read_text()
        except OSError as e:
            raise RecoverError(f"cannot read {source}: {e.strerror or e}") from None
        deployment = deployment_of(text, "standard input" if args.state == "-" else str(source))
    else:
        name = stack
        if stack.endswith((".yaml", ".yml")):  # a stack file: its stack, in its project
            name = Path(stack).name.removeprefix("Pulumi.").rsplit(".", 1)[0]
        deployment = deployment_of(export(name, cwd), f"`pulumi stack export --stack {name}`")

        def again() -> Mapping[str, Any]:
            return deployment_of(export(name, cwd), f"`pulumi stack export --stack {name}`")

    if args.release:
        return _named_release(args, stack, deployment, again, project_of(cwd))
    operations = deployment.get("pending_operations") or []
    if not operations:
        raise RecoverError(
            f"{stack}: the state holds no pending operation: nothing to recover (run `pulumi up`). {NO_CHECKPOINT.replace('STACK', stack)}"
        )
    steps = pending_ops(deployment)
    pending = [p for p in steps if p.op == "creating"]
    settling = [p for p in steps if p.op != "creating"]
    if not steps:
        raise RecoverError(
            f"{stack}: the state's {len(operations)} pending operation{'s' if len(operations) != 1 else ''} hold no step on a Helm release: "
            "nothing to recover; `pulumi up` retries them by itself"
        )
    states = tracked(deployment)
    for p in pending:
        if not p.gone and states.get(p.key) not in (None, p.urn):
            raise RecoverError(
                f"{p.urn}: the state already tracks Helm release {p.label} on the same provider as {states[p.key]}: its records are that resource's history. "
                "A resource renamed without an alias? Add the alias (`aliases=`) instead; nothing was removed"
            )
    others = len(operations) - len(steps)
    print(
        f"{stack}: "
        + ", ".join(
            f"{n} pending {one if n == 1 else many}"
            for n, one, many in ((len(pending), "create", "creates"), (len(settling), "upgrade or uninstall", "upgrades or uninstalls"))
            if n or (one == "create" and not settling)
        )
        + " of a Helm release"
        + (f" ({others} other pending operation{'s' if others != 1 else ''}: `pulumi up` retries them)" if others else "")
        + (": dry run, nothing removed" if args.dry_run else "")
    )
    project = project_of(cwd)

    def providers() -> list[Provider]:
        return orphans(project)

    not_yet: list[str] = []
    failed: list[str] = []
    for p in settling:
        if p.gone:
            print(f"  {p.resource_name}: Helm release {p.label}: skipped, its provider {p.gone} is no longer in the state")
            continue
        try:
            settle(p, Kube(p.kubeconfig, p.context), args.dry_run, print, unchanged=_still(stack, deployment, again), providers=providers)
        except NotYetError as e:
            print(f"  {p.resource_name}: Helm release {e}")
            not_yet.append(p.label)
        except LiveRunError:
            raise
        except RecoverError as e:
            # A cluster that does not answer (Arda still off after a power cut) stops only its own releases: nothing is
            # removed for an upgrade or uninstall, and the other clusters' releases are still seen to.
            print(f"  {p.resource_name}: Helm release {p.label}: not looked at: {e}")
            failed.append(p.label)
        except KeyboardInterrupt:
            raise RecoverError(f"stopped at {p.label}: run it again, it takes up what is left") from None
    for p in pending:
        if states.get(p.key) == p.urn:
            # The engine keeps a killed run's pending creates in every later state (pkg/backend/snapshot.go:757-766),
            # also once a later run created the resource: then its records are the tracked release's history.
            print(f"  {p.resource_name}: Helm release {p.label}: the state holds it, created by a later run: nothing to remove")
            continue
        if p.gone:
            print(
                f"  {p.resource_name}: Helm release {p.label}: skipped, its provider {p.gone} is no longer in the state (a stale pending "
                "create, from before its cluster was rebuilt or its provider replaced; `pulumi refresh --clear-pending-creates` drops it)"
            )
            continue
        try:
            recover(p, Kube(p.kubeconfig, p.context), args.dry_run, print, unchanged=_still(stack, deployment, again), providers=providers)
        except NotYetError as e:
            print(f"  {p.resource_name}: Helm release {e}")
            not_yet.append(p.label)
        except KeyboardInterrupt:
            raise RecoverError(f"stopped at {p.label}: run it again, it takes up what is left") from None
    if failed:
        raise RecoverError(
            f"{stack}: the killed run's upgrade or uninstall of {', '.join(failed)} was not looked at, as said above: run this command again"
        )
    if not_yet:
        raise RecoverError(
            f"{stack}: a step of the killed run on {', '.join(not_yet)} may be under way yet while its pulumi-resource-kubernetes "
            "runs: end it as said above, then run this command again"
        )
    print(NEXT)
    return 0


def _named_release(
    args: argparse.Namespace, stack: str, deployment: Mapping[str, Any], again: Callable[[], Mapping[str, Any]] | None, project: Path
) -> int:
    """`--release NAMESPACE/NAME --provider PROVIDER`: a release a killed run that kept no checkpoint installed
    (PULUMI_SKIP_CHECKPOINTS=true, pulumi v3.259.0 sdk/go/common/env/env.go:50, or a lost last checkpoint), which no
    pending create names. Its cluster is its provider's, as the state holds it, by the name render/<stack>/plan.txt gives
    (`[provider: ...]`): the homelab's two argocd/argocd releases are one on each cluster. Then as for a pending create."""
    namespace, _, release = str(args.release).partition("/")
    if not namespace or not release or "/" in release:
        raise RecoverError(f"--release {args.release!r}: give the release as NAMESPACE/NAME, as render/{stack}/plan.txt's `[helm release: ...]` says")
    if not args.provider:
        raise RecoverError(f"--release {args.release}: give its provider too, `--provider NAME`, as render/{stack}/plan.txt's `[provider: ...]` says")
    kinds = [r for r in deployment.get("resources") or [] if str(r.get("type")) == "pulumi:providers:kubernetes"]
    found = [r for r in kinds if str(r.get("urn")).endswith(f"::{args.provider}")]
    if len(found) != 1:
        names = ", ".join(sorted(str(r.get("urn")).rsplit("::", 1)[-1] for r in kinds)) or "none"
        raise RecoverError(f"{stack}: the state holds no kubernetes provider {args.provider!r} (it holds: {names}); nothing removed")
    provider = found[0]
    reference = f"{provider['urn']}::{provider.get('id')}"
    label = f"{namespace}/{release}"
    owner = tracked(deployment).get((str(provider["urn"]), label))
    if owner is not None:
        raise RecoverError(
            f"{stack}: the state tracks Helm release {label} on {args.provider} as {owner}: its records are that resource's history; nothing removed"
        )
    synthetic = {
        "pending_operations": [
            {
                "type": "creating",
                "resource": {"type": RELEASE_TYPE, "urn": args.provider, "provider": reference, "inputs": {"name": release, "namespace": namespace}},
            }
        ],
        "resources": [provider],
    }
    p = dataclasses.replace(pending_ops(synthetic)[0], named=True)
    print(f"{stack}: Helm release {label} on {args.provider}, named by hand" + (": dry run, nothing removed" if args.dry_run else ""))
    try:
        recover(p, Kube(p.kubeconfig, p.context), args.dry_run, print, unchanged=_still(stack, deployment, again), providers=lambda: orphans(project))
    except NotYetError as e:
        raise RecoverError(f"{e}") from None
    except KeyboardInterrupt:
        raise RecoverError(f"stopped at {label}: run it again, it takes up what is left") from None
    print(NEXT)
    return 0


def _moment(deployment: Mapping[str, Any]) -> Any:
    """What a live run changes as it goes: it writes the state at every step (manifest.time) and ends each pending
    operation it finishes (pulumi v3.259.0 pkg/backend/snapshot.go); a killed run's state never changes."""
    return ((deployment.get("manifest") or {}).get("time"), deployment.get("pending_operations") or [])


def _still(stack: str, first: Mapping[str, Any], again: Callable[[], Mapping[str, Any]] | None) -> Callable[[], None]:
    """Before deleting: export the state again and refuse if it moved since the first read. The lock cannot tell a
    killed run from a live one (another terminal's, a cron's), and a live run's install, recorded as created once it
    ends, must keep its record. A state read from a file cannot be read again: the check is the reader's."""

    def check() -> None:
        if again is None:
            return
        now = again()
        if _moment(now) != _moment(first):
            raise LiveRunError(
                f"{stack}: the state changed while this command ran (written at {(now.get('manifest') or {}).get('time')}): a `pulumi` run "
                "of this stack is live, not killed; nothing more removed. Check the process the lock message names (`ps -p PID` on "
                "its host), let it finish, and run this command only once none runs"
            )

    return check


# PULUMI_SKIP_CHECKPOINTS=true (pulumi v3.259.0 sdk/go/common/env/env.go:50) or a lost last checkpoint: a killed
# run's install left no pending create to find it by. The way out, in one line.
NO_CHECKPOINT = (
    "If `pulumi up` then stops with `cannot re-use a name that is still in use` on a Helm release (a killed run that kept no "
    "checkpoint installed it): `iluvatar recover STACK --release NAMESPACE/NAME --provider PROVIDER`, with the `[helm release: "
    "NAMESPACE/NAME]` and `[provider: PROVIDER]` render/STACK/plan.txt gives for the resource `pulumi up` names, then `pulumi up`"
)

NEXT = """\
next: `pulumi up`. If it says the stack is locked: `ps -p PID` on the host the message names; once that run is gone,
`pulumi cancel` (the killed run's lock), then `pulumi up`.
Its providers keep running, idle, after the steps they ran end; end none while a step of it runs. A local command step
runs as a child of its provider (`pgrep -d, '^pulumi-resource' | xargs -r pgrep -a -P` lists them); a Pi's SSH step runs
on the Pi and shows only there (`ps -ef --forest`); a Helm step runs inside pulumi-resource-kubernetes (this command
waited for those). Once none is left, the providers can be ended."""


__all__ = ["Pending", "Record", "RecoverError", "deadline", "pending_creates", "pending_ops", "recover", "run", "settle"]
