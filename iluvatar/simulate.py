"""Simulate: run the real Pulumi program (`__main__.py`, unchanged) under the SDK's mock runtime.

No Pulumi CLI, no providers, no network: every resource registration is recorded with its
type, name, parent, provider, options and inputs, and the stack outputs are resolved. Tests
and the offline commands use this to see exactly what a stack would create.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import functools
import hashlib
import json
import runpy
import threading
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pulumi
from google.protobuf import struct_pb2  # type: ignore[import-untyped]
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import resource as pulumi_resource
from pulumi.runtime import rpc, settings
from pulumi.runtime.proto import resource_pb2, source_pb2
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from plans import imagefactory, k3s
from stacks import pulumi_source
from stacks.errors import StackConfigError
from stacks.load import StackFile
from stacks.secrets import Secure

ROOT = Path(__file__).resolve().parent.parent
PROGRAM = ROOT / "__main__.py"
# A secret the offline run cannot decrypt, as the program reads it (stacks.pulumi_source skips judging it).
PLACEHOLDER = pulumi_source.UNDECRYPTED
# The moment a simulated run happens (components.arda.today), unless the caller says: the same on any day.
MOCK_NOW = datetime.datetime(2026, 11, 25, 12, 0, tzinfo=datetime.UTC)


@dataclass(frozen=True)
class SecretValue:
    """A value Pulumi marked secret; renders as [secret], keeps the value for tests to check."""

    value: Any

    def __repr__(self) -> str:
        return PLACEHOLDER


@dataclass(frozen=True)
class Registration:
    """One resource registration, as the engine would have received it (a RegisterResourceRequest).

    The options are what the request carries after the SDK has merged the program's with its own
    (a provider SDK class adds `additional_secret_outputs` for the outputs its schema marks secret),
    so a test of an option the program sets asserts on the exact list.
    """

    urn: str
    type: str
    name: str
    parent: str
    custom: bool
    provider: str
    protect: bool
    dependencies: tuple[str, ...]  # depends_on and every resource an input came from, as URNs
    inputs: dict[str, Any]
    property_dependencies: dict[str, tuple[str, ...]] = field(default_factory=dict)
    providers: dict[str, str] = field(default_factory=dict)  # a component's providers, by package
    additional_secret_outputs: tuple[str, ...] = ()
    ignore_changes: tuple[str, ...] = ()
    replace_on_changes: tuple[str, ...] = ()
    delete_before_replace: bool | None = None  # None: not set, the engine's default (create first)
    retain_on_delete: bool = False
    deleted_with: str = ""
    aliases: tuple[str, ...] = ()
    custom_timeouts: dict[str, str] = field(default_factory=dict)
    import_id: str = ""
    version: str = ""
    secret_inputs: tuple[str, ...] = ()  # top-level inputs that reached the engine as secrets

    def options(self) -> dict[str, Any]:
        """The resource options that change how the engine treats it, set ones only, camelCase as the engine names them."""
        shown: dict[str, Any] = {
            "protect": self.protect,
            "additionalSecretOutputs": sorted(self.additional_secret_outputs),
            "ignoreChanges": sorted(self.ignore_changes),
            "replaceOnChanges": sorted(self.replace_on_changes),
            "deleteBeforeReplace": self.delete_before_replace,
            "retainOnDelete": self.retain_on_delete,
            "deletedWith": self.deleted_with,
            "customTimeouts": self.custom_timeouts,
            "importId": self.import_id,
        }
        return {k: v for k, v in shown.items() if v not in (False, None, "", [], {})}


@dataclass
class Simulation:
    """What a stack would create: registrations in order, and resolved stack outputs."""

    stack: str
    registrations: list[Registration] = field(default_factory=list)
    invocations: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    component_outputs: dict[str, dict[str, Any]] = field(default_factory=dict)  # by URN, as registered
    outputs: dict[str, Any] = field(default_factory=dict)
    # The moment the run happened (components.arda.today): the day-2 plan foresees the certificate's renewal against it.
    now: datetime.datetime = MOCK_NOW

    def by_type(self, type_: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == type_]

    def one(self, type_: str, name: str) -> Registration:
        found = [r for r in self.registrations if r.type == type_ and r.name == name]
        if len(found) != 1:
            raise LookupError(f"{len(found)} registrations of {type_} named {name}")
        return found[0]

    def named(self) -> dict[str, Registration]:
        """Registrations by name (names are unique within this program)."""
        return {r.name: r for r in self.registrations}

    def children(self, parent: Registration) -> list[Registration]:
        return [r for r in self.registrations if r.parent == parent.urn]


# Doubles hold every integer up to 2**53 exactly; beyond that a whole-looking double is no integer.
_EXACT = 2**53


def _unwrap(value: Any) -> Any:
    """A value as the engine hands it to a provider: secrets marked, and numbers as the provider reads them.

    Pulumi's wire format (protobuf Struct) has only doubles, so `replicas: 1` arrives as 1.0; the
    providers print a whole double as an integer (Go's encoding/json writes 1.0 as 1), so it is one
    here too. A fractional number (0.5) stays what it is.
    """
    if rpc.is_rpc_secret(value):
        return SecretValue(_unwrap(rpc.unwrap_rpc_secret(value)))
    if isinstance(value, dict):
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < _EXACT:
        return int(value)
    return value


FACTORY = "https://factory.talos.dev"


def _talos_urls(args: dict[str, Any]) -> dict[str, Any]:
    """What terraform-provider-talos v0.11.0's talos_image_factory_urls returns (its Read), offline.

    `platform: metal` gets every metal asset (machinery's platforms.MetalPlatform paths); an
    SBC (no platform) gets only the metal installer and the `metal-arm64.raw.xz` disk image, the
    rest empty, exactly as the provider does. Cloud platforms are not used by Iluvatar.
    """
    sid, arch = args["schematicId"], args.get("architecture") or "amd64"
    version = "v" + str(args["talosVersion"]).removeprefix("v")
    host = FACTORY.removeprefix("https://")
    image = f"{FACTORY}/image/{sid}/{version}"
    platform = args.get("platform") or ""
    if platform == "metal":
        urls = {
            "installer": f"{host}/metal-installer/{sid}:{version}",
            "installerSecureboot": f"{host}/metal-installer-secureboot/{sid}:{version}",
            "iso": f"{image}/metal-{arch}.iso",
            "isoSecureboot": f"{image}/metal-{arch}-secureboot.iso",
            "diskImage": f"{image}/metal-{arch}.raw.zst",
            "diskImageSecureboot": f"{image}/metal-{arch}-secureboot.raw.zst",
            "pxe": f"https://pxe.{host}/pxe/{sid}/{version}/metal-{arch}",
            "kernel": f"{image}/kernel-{arch}",
            "kernelCommandLine": f"{image}/cmdline-metal-{arch}",
            "initramfs": f"{image}/initramfs-{arch}.xz",
            "uki": f"{image}/metal-{arch}-secureboot-uki.efi",
        }
    elif platform == "" and args.get("sbc"):
        empty = ("installerSecureboot", "iso", "isoSecureboot", "diskImageSecureboot", "pxe", "kernel", "kernelCommandLine", "initramfs", "uki")
        urls = {
            **dict.fromkeys(empty, ""),
            "installer": f"{host}/metal-installer/{sid}:{version}",
            "diskImage": f"{image}/metal-arm64.raw.xz",
        }
    else:
        raise ValueError(f"talos_image_factory_urls: platform {platform!r} / sbc {args.get('sbc')!r} is not simulated (metal or an SBC only)")
    return {**args, "urls": urls}


def _machine_configuration(args: dict[str, Any]) -> dict[str, Any]:
    # The real provider merges the patches into a full config; offline we can only show them.
    patches = "---\n".join(args.get("configPatches") or [])
    header = f"# {args.get('machineType')} config for {args.get('clusterName')} at {args.get('clusterEndpoint')}\n"
    return {**args, "machineConfiguration": header + patches}


# Invoke results by token; resources' extra outputs by type. Values the engine would generate
# (keys, certificates) are fixed placeholders, so two runs are byte-identical.
def _uuid(*parts: object) -> str:
    """A stable UUID-shaped id from a name, as Cloudflare gives tunnels (so renders stay byte-identical)."""
    h = hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def _zone(args: dict[str, Any]) -> dict[str, Any]:
    # cloudflare_zone looked up by filter: the zone's id (32 hex digits) and name.
    name = (args.get("filter") or {}).get("name")
    return {**args, "id": hashlib.sha256(f"zone/{name}".encode()).hexdigest()[:32], "name": name, "status": "active"}


# What `upgrader probe` prints (at `pulumi preview` and `pulumi up`) when every machine answers as a running node.
PROBE = "command:local:run"


def _probe(args: dict[str, Any]) -> dict[str, Any]:
    nodes = [a.split("=", 1)[0] for a in str(args.get("command", "")).split() if "=" in a]
    return {**args, "stdout": json.dumps({"nodes": dict.fromkeys(nodes, "running")}), "stderr": ""}


INVOKES: dict[str, Any] = {
    PROBE: _probe,
    "talos:imageFactory/getUrls:getUrls": _talos_urls,
    "talos:machine/getConfiguration:getConfiguration": _machine_configuration,
    "talos:client/getConfiguration:getConfiguration": lambda a: {**a, "talosConfig": f"# talosconfig for {a.get('clusterName')}\n"},
    "cloudflare:index/getZone:getZone": _zone,
    # The tunnel's token: the provider returns it in clear (the program marks it secret).
    "cloudflare:index/getZeroTrustTunnelCloudflaredToken:getZeroTrustTunnelCloudflaredToken": lambda a: {**a, "token": PLACEHOLDER},
}
# What the local CA's certificate looks like under mocks: PEM-shaped, not a certificate.
MOCK_CA_PEM = "-----BEGIN CERTIFICATE-----\n(the root CA certificate pulumi-tls generates at pulumi up)\n-----END CERTIFICATE-----\n"
# A server certificate the local CA signs at pulumi up (components.local_ca.LocalCa.issue: Dex's, the Ainur's Argo CD's).
MOCK_LEAF_PEM = "-----BEGIN CERTIFICATE-----\n(a server certificate the local CA signs at pulumi up)\n-----END CERTIFICATE-----\n"
_CERT = {"cert": PLACEHOLDER, "key": PLACEHOLDER}
# The talosconfig's client certificate the Talos provider keeps (base64 of its PEM: terraform-provider-talos v0.11.0
# pkg/talos/util.go:183-205): a real one, made by machinery's secrets bundle (through tools/talos-api) with a throwaway
# CA, so the program reads its NotAfter as it does at `pulumi up` (plans.rollout.certificate_expiry). Not a secret.
MOCK_CLIENT_CERTIFICATE = (
    "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUJLRENCMjZBREFnRUNBaEJOS29BZDBWbi94aGozMjVFbHJYRUtNQVVHQXl0"
    "bGNEQVFNUTR3REFZRFZRUUsKRXdWMFlXeHZjekFlRncweU5qRXhNalV4TWpBM016TmFGdzB5TnpFeE1qVXhNakEzTXpOYU1CTXhF"
    "VEFQQmdOVgpCQW9UQ0c5ek9tRmtiV2x1TUNvd0JRWURLMlZ3QXlFQWlrL0t1UUVtNWdGMDB3WkRzRW9ESTlCU1ZhbGU0ZnpUCmhQ"
    "ejF2UDZwTXR1alNEQkdNQTRHQTFVZER3RUIvd1FFQXdJSGdEQVRCZ05WSFNVRUREQUtCZ2dyQmdFRkJRY0QKQWpBZkJnTlZIU01F"
    "R0RBV2dCUU5lRk0vbFNNV2h0L24rckw5WWMzSGdCcUFNREFGQmdNclpYQURRUUFnbkFYegpmL1VaYkNjUk1YaHVJcFE3TExFQkpG"
    "U0gvaW9iVFdVS2UrMmJWZVVvYW12dG5FdHFmRXJaUXdRbmRySnFFaXhqCmwrTGMvTk1ybHg1TndTc0kKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo="
)
MOCK_CLIENT_CERTIFICATE_EXPIRES = "2027-11-25T12:07:33Z"
# What k3s writes to /etc/rancher/k3s/k3s.yaml, with its credentials replaced.
_K3S_KUBECONFIG = f"""apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: "{PLACEHOLDER}"
    server: https://127.0.0.1:6443
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
kind: Config
users:
- name: default
  user:
    client-certificate-data: "{PLACEHOLDER}"
    client-key-data: "{PLACEHOLDER}"
"""
# What the Ainur's credentials step prints: the token Secret's CA and token, base64 as the Secret holds them.
_CREDENTIALS = json.dumps({"ca": base64.b64encode(b"(the Ainur's cluster CA)").decode(), "token": base64.b64encode(PLACEHOLDER.encode()).decode()})


# What the Ainur's ca-hash step prints (plans.agent_token): the sha256 of the cluster CA k3s wrote on the first valar.
MOCK_CA_HASH = hashlib.sha256(b"(the Ainur's cluster CA)").hexdigest()


# The earliest end of a Pi's k3s certificates its k3s step says (plans.k3s.CERTIFICATES_LINE): k3s issues them for
# 365 days (dynamiclistener's cert.NewSignedCert, through pkg/daemons/control/deps/deps.go createClientCertKey), here
# on the day of the simulated run.
MOCK_K3S_CERTIFICATES_END = (MOCK_NOW + datetime.timedelta(days=365)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _remote_stdout(script: str) -> str:
    """What a command on a Pi prints back: the credentials step's JSON, k3s's kubeconfig, the CA's hash, the end of k3s's
    certificates, or nothing."""
    if k3s.CERTIFICATES_LINE in script:
        return f"{k3s.CERTIFICATES_LINE}{MOCK_K3S_CERTIFICATES_END}\n"
    if "service-account-token" in script:
        return _CREDENTIALS
    if "K10" in script and "/server/token" in script:
        return MOCK_CA_HASH + "\n"
    return _K3S_KUBECONFIG if "k3s.yaml" in script else ""


def _mock_bytes(length: int) -> dict[str, str]:
    raw = (hashlib.sha256(f"mock random bytes {length}".encode()).digest() * (length // 32 + 1))[:length]
    return {"base64": base64.b64encode(raw).decode(), "hex": raw.hex()}


RESOURCE_STATE: dict[str, Any] = {
    "talos:machine/secrets:Secrets": lambda a: {
        "clientConfiguration": {"caCertificate": PLACEHOLDER, "clientCertificate": MOCK_CLIENT_CERTIFICATE, "clientKey": PLACEHOLDER},
        "machineSecrets": {
            "certs": {"etcd": _CERT, "k8s": _CERT, "k8sAggregator": _CERT, "k8sServiceaccount": {"key": PLACEHOLDER}, "os": _CERT},
            "cluster": {"id": PLACEHOLDER, "secret": PLACEHOLDER},
            "secrets": {"bootstrapToken": PLACEHOLDER, "secretboxEncryptionSecret": PLACEHOLDER},
            "trustdinfo": {"token": PLACEHOLDER},
        },
    },
    # Image Factory's answer to the provider's POST /schematics: its ID of the schematic, not a hash of our text (plans.imagefactory).
    "talos:imageFactory/schematic:Schematic": lambda a: {"id": imagefactory.schematic_id(str(a.get("schematic") or ""))},
    "talos:cluster/kubeconfig:Kubeconfig": lambda a: {"kubeconfigRaw": PLACEHOLDER, "kubernetesClientConfiguration": {}},
    "random:index/randomPassword:RandomPassword": lambda a: {"result": PLACEHOLDER, "bcryptHash": PLACEHOLDER},
    # Lower-case letters and digits of the asked length (a maia's bootstrap token id, plans.agent_token): new_resource
    # makes them per resource name (and a RandomPassword of those characters too), the same every run.
    "random:index/randomString:RandomString": lambda a: {"result": "0" * int(a.get("length") or 16)},
    "command:remote:Command": lambda a: {"stdout": _remote_stdout(str(a.get("create"))), "stderr": ""},
    "tls:index/privateKey:PrivateKey": lambda a: {
        "privateKeyPem": PLACEHOLDER,
        "privateKeyOpenssh": PLACEHOLDER,
        "privateKeyPemPkcs8": PLACEHOLDER,
        "publicKeyPem": "-----BEGIN PUBLIC KEY-----\n(mock)\n-----END PUBLIC KEY-----\n",
    },
    "tls:index/selfSignedCert:SelfSignedCert": lambda a: {"certPem": MOCK_CA_PEM, "readyForRenewal": False},
    "tls:index/certRequest:CertRequest": lambda a: {
        "certRequestPem": "-----BEGIN CERTIFICATE REQUEST-----\n(mock)\n-----END CERTIFICATE REQUEST-----\n"
    },
    "tls:index/locallySignedCert:LocallySignedCert": lambda a: {"certPem": MOCK_LEAF_PEM, "readyForRenewal": False},
    # Bytes of the asked length (an age identity is made of them), the same every run.
    "random:index/randomBytes:RandomBytes": lambda a: _mock_bytes(int(a.get("length") or 32)),
    "cloudflare:index/zeroTrustTunnelCloudflared:ZeroTrustTunnelCloudflared": lambda a: {"id": _uuid("tunnel", a.get("accountId"), a.get("name"))},
    # A bound claim's volume, as pulumi-kubernetes returns it once it has awaited the binding: external-provisioner names
    # the PV `pvc-<the claim's uid>`, and Longhorn names its Volume after the PV.
    "kubernetes:core/v1:PersistentVolumeClaim": lambda a: {
        "spec": {
            **(a.get("spec") or {}),
            "volumeName": "pvc-" + _uuid("claim", (a.get("metadata") or {}).get("namespace"), (a.get("metadata") or {}).get("name")),
        }
    },
}


# Inputs a resource's echoed state leaves out, for outputs nothing in the program reads: a CRD's schema is most
# of a run's bytes (4.5 MB for the Prometheus Operator's), and the SDK deserialising it back as outputs cost a
# fifth of a second of CPU per run. What the engine receives (the registration's inputs) is recorded whole.
STATE_UNREAD: dict[str, tuple[str, ...]] = {"kubernetes:apiextensions.k8s.io/v1:CustomResourceDefinition": ("spec",)}


# The Prometheus Operator's CRDs' schemas are 88 % of the values a homelab run hands the SDK (47,794 of 54,464), and
# carrying them through it (serialised on the program's side, deserialised on the mock monitor's, value by value in the
# SDK's Python) was half of every simulation's CPU (homelab: 1.39 s a run with them, 0.67 s with a one-line schema
# each). A simulation hands the SDK a reference in each schema's place and records what the SDK delivers for the schema
# itself, made once per process the way a registration's inputs travel (pulumi 3.272.0 runtime/resource.py:1286-1291:
# rpc.serialize_properties into a RegisterResourceRequest's `object`, which mocks.py:317 deserialises): the recorded
# inputs are the same, to the protobuf maps' key order (tests/iluvatar/test_simulate.py compares runs with and without).
# The real engine's program is unchanged: what it receives never passes here. The program only hands each CRD to
# components.kube.create; one that read a schema (a hash of it in an annotation) would read the reference here, and
# that test's run with the schemas whole would register something else.
CRD = "kubernetes:apiextensions.k8s.io/v1:CustomResourceDefinition"
SCHEMA_REFERENCE = "iluvatar-simulate:crd-schema:"


@functools.cache
def _delivered_schema(text: str) -> str:
    """A schema (JSON) as the monitor hands it on after the SDK's wire round trip and `_unwrap`, as JSON."""
    # The Struct `rpc.serialize_properties({"schema": ...}, {})` makes of plain JSON: its serialize_property hands a
    # mapping, list, text, number, bool or null back as itself, and it sets the result as the Struct's field, which
    # protobuf converts as Struct.update does (pulumi 3.272.0 runtime/rpc.py serialize_properties, serialize_property).
    # The SDK's walk awaits every value in Python: 0.21 s of CPU for the Prometheus Operator's ten schemas, 0.07 s here,
    # in every process that simulates (each `iluvatar render`). tests/iluvatar/test_simulate.py compares both.
    struct = struct_pb2.Struct()
    struct.update({"schema": json.loads(text)})
    request = resource_pb2.RegisterResourceRequest(object=struct)
    delivered = _unwrap(rpc.deserialize_properties(request.object))["schema"]
    return json.dumps(delivered)


@functools.cache
def _crds_by_reference(crds: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The CRDs (JSON) with each version's schema replaced by its reference, as JSON, and each reference's schema.

    Made once per process for the same CRDs: each run made it anew, loading the 4.5 MB of CRDs whole, then dumping and
    hashing every schema to throw it away (about 40 ms of a homelab run's CPU, and the collector's passes over the
    objects thrown away: docs/proof/performance.md, CI time, ninth pass).
    """
    found = json.loads(crds)
    schemas: dict[str, str] = {}
    for crd in found:
        for version in crd["spec"].get("versions") or []:
            if "schema" in version:
                text = json.dumps(version["schema"])  # in its order: the recorded inputs keep it
                reference = SCHEMA_REFERENCE + hashlib.sha256(text.encode()).hexdigest()
                schemas[reference] = text
                version["schema"] = reference
    return json.dumps(found), tuple(schemas.items())


@contextlib.contextmanager
def _crd_schemas_by_reference(schemas: dict[str, str]) -> Iterator[None]:
    """plans.monitoring.crds hands the program each CRD version's schema as a reference; `schemas` maps each back."""
    from plans import monitoring

    original = monitoring.crds

    def crds() -> list[dict[str, Any]]:
        # The plan's own crds() is its cached JSON loaded (plans.monitoring._crds_json): that text is the key. Any
        # other (a test's stand-in) is taken as it answers this time.
        own = original.__module__ == monitoring.__name__ and original.__qualname__ == "crds"
        by_reference, references = _crds_by_reference(monitoring._crds_json() if own else json.dumps(original()))
        schemas.update(references)
        found: list[dict[str, Any]] = json.loads(by_reference)  # the caller's own copy, as plans.monitoring.crds gives
        return found

    monitoring.crds = crds
    try:
        yield
    finally:
        monitoring.crds = original


def _schemas_restored(inputs: dict[str, Any], schemas: Mapping[str, str]) -> dict[str, Any]:
    """A CRD's recorded inputs with each schema reference replaced by what the SDK would have delivered for it."""
    for version in inputs.get("spec", {}).get("versions") or []:
        reference = version.get("schema")
        if isinstance(reference, str) and reference.startswith(SCHEMA_REFERENCE):
            version["schema"] = json.loads(_delivered_schema(schemas[reference]))
    return inputs


# The engine's builtin function behind StackReferences: a stack's outputs at its last deployment.
READ_STACK_OUTPUTS = "pulumi:pulumi:readStackOutputs"


class _Mocks(pulumi.runtime.Mocks):
    """Resources echo their inputs plus the outputs their provider would add; invokes answer from INVOKES.

    A read of the stack's own outputs answers `previous`: the outputs of the last deployment the
    test pretends happened (none: a first deployment).
    """

    def __init__(
        self,
        sim: Simulation,
        previous: dict[str, Any] | None = None,
        prior: Mapping[str, Mapping[str, Any]] | None = None,
        answers: Mapping[str, Callable[[dict[str, Any]], dict[str, Any]]] | None = None,
    ) -> None:
        self.sim = sim
        self.previous = previous or {}
        self.prior = prior or {}
        self.answers = {**INVOKES, **(answers or {})}
        # The inputs each resource asked the engine to ignore changes to, as the monitor saw them.
        self.ignoring: dict[str, tuple[str, ...]] = {}
        # The inputs of the registration this thread is answering, as the mock monitor deserialised them from the
        # request: the recording monitor records them rather than deserialising the same request a second time. Per
        # thread: the SDK calls the monitor from its executor's threads (pulumi 3.272.0 runtime/resource.py:1344), and the
        # monitor calls new_resource in the thread of the request it answers (runtime/mocks.py:317-328).
        self.received = threading.local()

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.received.inputs = args.inputs
        inputs = dict(args.inputs)
        # What the engine does with `ignore_changes`: a resource already in the state keeps the old
        # value of an ignored input, whatever the program now says, and its outputs follow.
        for key in self.ignoring.get(args.name, ()):
            if key in self.prior.get(args.name, {}):
                inputs[key] = self.prior[args.name][key]
        extra = RESOURCE_STATE.get(args.typ)
        state = {**inputs, **(extra(inputs) if extra else {})}
        if args.typ.startswith("random:index/random") and inputs.get("upper") is False and inputs.get("special") is False:
            # Lower-case letters and digits, distinct per resource: what a bootstrap token needs (two maiar, two ids).
            state["result"] = hashlib.sha256(f"mock {args.name}".encode()).hexdigest()[: int(inputs.get("length") or 16)]
        if args.typ == "random:index/randomId:RandomId":
            # The provider keeps an id while its keepers stay and draws a new one when they change (a replacement): the
            # id the state kept (`prior`) while its keepers are the program's, else one no earlier id equals.
            kept = self.prior.get(args.name, {})
            if kept.get("hex") and kept.get("keepers") == inputs.get("keepers"):
                state["hex"] = kept["hex"]
            else:
                drawn = hashlib.sha256(f"mock random id {args.name} {kept.get('hex', '')} {inputs.get('keepers')}".encode())
                state["hex"] = drawn.hexdigest()[: 2 * int(inputs.get("byteLength") or 8)]
        for key in STATE_UNREAD.get(args.typ, ()):
            state.pop(key, None)
        return str(state.pop("id", f"{args.name}-id")), state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        handler = self.answers.get(args.token)
        self.sim.invocations.append((args.token, _unwrap(dict(args.args))))
        if args.token == READ_STACK_OUTPUTS:
            return {"name": args.args["name"], "outputs": self.previous, "secretOutputNames": []}, []
        return (handler(dict(args.args)) if handler else {}), []


class _RecordingMonitor(pulumi_mocks.MockMonitor):
    def __init__(self, mocks: pulumi.runtime.Mocks, sim: Simulation, schemas: Mapping[str, str]) -> None:
        super().__init__(mocks)
        self.sim = sim
        self.schemas = schemas  # the CRD schemas' references (_crd_schemas_by_reference)

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        assert isinstance(self.mocks, _Mocks)
        self.mocks.ignoring[request.name] = tuple(request.ignoreChanges)
        self.mocks.received.inputs = None
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        if request.type != "pulumi:pulumi:Stack":
            # What new_resource was handed: `rpc.deserialize_properties(request.object)`, made once for both.
            raw = self.mocks.received.inputs
            if raw is None:
                raise RuntimeError(
                    "the mock monitor registered a resource without asking the mocks: the pinned SDK changed; see iluvatar/simulate.py"
                )
            registration = _registration(request, response.urn, raw)
            if registration.type == CRD:
                _schemas_restored(registration.inputs, self.schemas)
            self.sim.registrations.append(registration)
        return response

    def RegisterResourceOutputs(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        # A component's outputs go into the state file as they arrive here: what the program marked
        # secret is the only thing that keeps them secret (no provider schema applies to them).
        self.sim.component_outputs[request.urn] = _unwrap(rpc.deserialize_properties(request.outputs))
        return super().RegisterResourceOutputs(request)  # type: ignore[no-untyped-call]


def _alias(alias: Any) -> str:
    """An alias as the engine receives it: a URN, or the parts of a spec (`name=...`, `parent=...`) that differ."""
    if alias.urn:
        return str(alias.urn)
    spec = alias.spec
    parts = [f"{field}={getattr(spec, field)}" for field in ("name", "type", "parentUrn", "stack", "project") if getattr(spec, field)]
    return " ".join(parts) or "(no parent)" if spec.noParent else " ".join(parts)


def _registration(request: Any, urn: str, raw: dict[str, Any]) -> Registration:
    """A RegisterResourceRequest as a Registration: every option the engine acts on, as it arrives (`raw`: its inputs,
    `rpc.deserialize_properties(request.object)`)."""
    timeouts = request.customTimeouts
    return Registration(
        urn=urn,
        type=request.type,
        name=request.name,
        parent=request.parent,
        custom=request.custom,
        provider=request.provider,
        protect=request.protect,
        dependencies=tuple(request.dependencies),
        inputs=_unwrap(raw),
        property_dependencies={k: tuple(v.urns) for k, v in sorted(request.propertyDependencies.items()) if v.urns},
        providers=dict(sorted(request.providers.items())),
        additional_secret_outputs=tuple(request.additionalSecretOutputs),
        ignore_changes=tuple(request.ignoreChanges),
        replace_on_changes=tuple(request.replaceOnChanges),
        delete_before_replace=request.deleteBeforeReplace if request.deleteBeforeReplaceDefined else None,
        retain_on_delete=request.retainOnDelete,
        deleted_with=request.deletedWith,
        aliases=tuple(request.aliasURNs) + tuple(_alias(a) for a in request.aliases),
        custom_timeouts={k: v for k, v in (("create", timeouts.create), ("update", timeouts.update), ("delete", timeouts.delete)) if v},
        import_id=request.importId,
        version=request.version,
        secret_inputs=tuple(sorted(k for k, v in raw.items() if rpc.is_rpc_secret(v))),
    )


def pulumi_config(sf: StackFile) -> tuple[dict[str, str], list[str]]:
    """A stack file's config as the engine hands it to a program: JSON for objects, secrets marked.

    Secure values cannot be decrypted offline; they become a placeholder that stays secret.
    """
    config: dict[str, str] = {}
    for key, value in sf.config.items():
        if isinstance(value, Secure):
            config[key] = PLACEHOLDER
        elif isinstance(value, str):
            config[key] = value
        else:
            # A `secure:` leaf of a structured value (`config set --secret --path`) stays a placeholder too.
            config[key] = json.dumps(value, default=lambda v: PLACEHOLDER if isinstance(v, Secure) else repr(v))
    return config, sorted(sf.secret_keys)


@contextlib.contextmanager
def _no_source_positions() -> Iterator[None]:
    """Register without the Python stack of each resource's constructor.

    The SDK sends the engine each registration's stack (`traceback.extract_stack()`, every frame's
    source line read), for the engine to point at the line that made a resource. The mock monitor
    drops it unread, and it was a fifth of a simulation's time (`iluvatar render`'s, and the
    tests' ~90 runs of the program). What the real engine receives is unchanged: only a
    simulation goes through here.
    """
    if not hasattr(pulumi_resource, "_get_stack_trace"):
        raise RuntimeError("pulumi.runtime.resource._get_stack_trace is gone: the pinned SDK changed; see iluvatar/simulate.py")
    original = pulumi_resource._get_stack_trace
    pulumi_resource._get_stack_trace = _empty_stack_trace
    try:
        yield
    finally:
        pulumi_resource._get_stack_trace = original


@contextlib.contextmanager
def _clock(now: datetime.datetime, silent: Collection[str] = ()) -> Iterator[None]:
    """The program's clock (components.arda.today) stopped at `now` for the run, and its probe of a Pi's SSH
    (components.ainur.answers) answered offline: every Pi answers but those at the addresses in `silent`."""
    from components import ainur, arda

    original, probe = arda.today, ainur.answers
    arda.today = lambda: now
    ainur.answers = lambda address, *_args, **_kwargs: address not in silent
    try:
        yield
    finally:
        arda.today, ainur.answers = original, probe


def _empty_stack_trace() -> source_pb2.StackTrace:
    return source_pb2.StackTrace()


def simulate(
    sf: StackFile,
    program: Path = PROGRAM,
    record: Simulation | None = None,
    previous: dict[str, Any] | None = None,
    prior: Mapping[str, Mapping[str, Any]] | None = None,
    answers: Mapping[str, Callable[[dict[str, Any]], dict[str, Any]]] | None = None,
    preview: bool = False,
    unset_secrets: Literal["placeholder", "refuse"] = "placeholder",
    now: datetime.datetime | None = None,
    silent: Collection[str] = (),
) -> Simulation:
    """Run `program` for the stack file under mocks and record what it does (`pulumi up`, or `preview`).

    `previous` is the stack outputs of the deployment before this one (None: this is the first).
    `prior` is the inputs resources kept in the state from that deployment, by resource name: a
    resource that ignores changes to an input gets its prior value back, as the engine does.
    `answers` replaces the offline answer of invokes, by token (what a machine would say at run time).
    A secret the stack needs and does not set gets the placeholder every secret gets offline (`placeholder`, what a
    render shows), or is left unset (`refuse`): the program then refuses the stack, as `pulumi preview` does.
    `now` is the moment the run happens (default MOCK_NOW, so a simulation is the same on any day). `silent`: the
    addresses of Pis that do not answer on SSH at this run (every other Pi does).
    Raises whatever the program raises (pulumi.RunError for invalid config); what was
    registered before that is in `record`, when the caller passed one.
    """
    sim = record if record is not None else Simulation(stack=sf.stack)
    sim.now = now if now is not None else MOCK_NOW
    if unset_secrets == "placeholder":
        with contextlib.suppress(StackConfigError):  # an invalid stack: the program reports every problem itself
            sf = sf.with_placeholders(sf.unset_secrets())
    mocks = _Mocks(sim, previous, prior, answers)
    settings.reset_options(project="iluvatar", stack=sf.stack, preview=preview)

    def run() -> None:
        runpy.run_path(str(program), run_name="__main__")

    schemas: dict[str, str] = {}
    with _no_source_positions(), _clock(sim.now, silent), _crd_schemas_by_reference(schemas):  # set_mocks registers the root Stack
        monitor = _RecordingMonitor(mocks, sim, schemas)
        pulumi.runtime.set_mocks(mocks, project="iluvatar", stack=sf.stack, preview=preview, monitor=monitor)
        config, secret_keys = pulumi_config(sf)
        pulumi.runtime.set_all_config(config, secret_keys)
        _sync_await(run_pulumi_func(run))
    root = settings.get_root_resource()
    exported: dict[str, Any] = dict(getattr(root, "outputs", {}))
    for key, value in exported.items():
        out = pulumi.Output.from_input(value)
        resolved = _sync_await(out.future())
        resolved = _unwrap(resolved)
        sim.outputs[key] = SecretValue(resolved) if _sync_await(out.is_secret()) else resolved
    return sim
