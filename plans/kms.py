"""The Ainur's KMS: Talos's `kms` disk-encryption key, served on the LAN so that an Arda disk or machine carried out
of the house cannot unlock.

Talos (internal/pkg/encryption/keys/kms.go at v1.13.9) seals a volume's random passphrase with the KMS when it
formats the volume, keeps the sealed blob in the LUKS2 header, and asks the KMS to unseal it at every boot, with
the machine's SMBIOS UUID in both requests. The server (plans/kmsserver/main.go, the kms-client v0.2.0 API that
Talos's go.mod pins) seals with AES-256-GCM under one key and the node's UUID as associated data, so a blob opens
only for the node it was sealed for.

What runs where:

- **The key**: 32 random bytes, a protected Pulumi secret (components.kms), delivered as the Secret `kms-key`,
  mounted from the kubelet's tmpfs, never in a ConfigMap, an argument or a log.
- **The program**: the project publishes no images, so the pod builds the server from its source (the ConfigMap
  `kms-server`: main.go, go.mod, go.sum) with the pinned Go image, checked against go.sum, into a cache on the Pi's
  disk named by the sources' digest (public code only: a restart, or a boot with the internet down, reuses it).
  The tests build the very same files.
- **Where**: a DaemonSet on every Pi, behind a Service with the Ainur's service address as an external IP on
  PORT. kube-vip announces that address from the Pi running the netboot pod (plans.netboot.objects), kube-proxy
  hands the port to the KMS pod on that same Pi (`externalTrafficPolicy: Local`, so the machine's own address
  reaches the pod and the NetworkPolicy can name it), and when a Pi fails the address moves with the netboot pod
  to a Pi that runs a KMS pod already. A LoadBalancer Service of its own on the service address would be a second
  kube-vip election for one address (kube-vip's per-Service leases), which can hold it on two Pis at once.
- **Who reaches it**: the NetworkPolicy admits only the Arda machines' reserved addresses, on PORT, and the server
  itself answers only the addresses of the ConfigMap `kms-admitted` (the same list, read at every call): processes
  on the Pi's own host network reach the pod whatever the policy says. On Arda, no pod reaches the endpoint
  (plans.cilium.kms_egress_deny): Cilium masquerades pod traffic to the node's address, the one admitted here.
- **TLS**: a certificate of the local CA (components.local_ca) for the service address; Talos trusts the local CA
  through its TrustedRootsConfig (kms.go:139-141 dials with httpdefaults.RootCAs, the machine's bundle).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path
from typing import Any

from plans import aes_gcm, age_file, backup
from plans.netboot.pi_pods import NOT_NETBOOTED
from plans.netboot.pods import eviction_tolerations
from stacks import encryption, pins, secrets
from stacks.model import StackConfig

PORT = 4050
NAMESPACE = "kms"
NAME = "kms"
KEY_SECRET = "kms-key"  # noqa: S105 - a Secret's name
KEY_FIELD = "key"
TLS_SECRET = "kms-tls"  # noqa: S105 - a Secret's name
SOURCE_CONFIGMAP = "kms-server"
ADMITTED_CONFIGMAP = "kms-admitted"
ADMITTED_FIELD = "cidrs"
GO_IMAGE = pins.IMAGES["golang"]
# The server's sources, as the pod builds them and the tests build them.
SERVER_DIR = Path(__file__).resolve().parent / "kmsserver"
SERVER_FILES = ("main.go", "go.mod", "go.sum")
# On each Pi: the built servers (one per sources' digest) and the Go modules they were built from; public code only.
HOST_CACHE = "/var/lib/iluvatar/kms"
# The build's scratch (an emptyDir: the root file system is read-only).
SCRATCH = "/scratch"
# The server's user: nobody, never root.
USER = 65534
# A certificate of the local CA: long, renewed by `pulumi up` in its last 30 days (components.local_ca.issue).
CERTIFICATE_VALIDITY_HOURS = 2 * 365 * 24
CERTIFICATE_EARLY_RENEWAL_HOURS = 30 * 24


def enabled(stack: StackConfig) -> bool:
    """The KMS runs on the Ainur: without them there is no KMS (a `kms` key needs them)."""
    return stack.ainur is not None


def endpoint(stack: StackConfig) -> str:
    """The KMS endpoint in Talos's form (`https://host:port`, internal/pkg/endpoint/endpoint.go:23-45 at v1.13.9)."""
    assert stack.ainur is not None, "the KMS is the Ainur's"
    return f"https://{stack.ainur.service_ip}:{PORT}"


def certificate_ips(stack: StackConfig) -> list[str]:
    """The addresses the server's certificate names: the endpoint's host, which Talos's TLS checks."""
    assert stack.ainur is not None
    return [str(stack.ainur.service_ip)]


def certificate_names(stack: StackConfig) -> list[str]:
    return [f"kms.{stack.network.domain}"]


def admitted(stack: StackConfig) -> list[str]:
    """The addresses the KMS answers: every Arda machine's reserved address, in address order."""
    return [f"{ip}/32" for ip in sorted({n.ip for n in stack.arda_nodes})]


def admitted_file(stack: StackConfig) -> str:
    """The server's own list of the addresses it answers (its --admitted file): a CIDR a line."""
    return "".join(f"{cidr}\n" for cidr in admitted(stack))


def server_sources() -> dict[str, str]:
    return {name: (SERVER_DIR / name).read_text() for name in SERVER_FILES}


def sources_digest() -> str:
    """The sources and the Go image, hashed: a change of either builds (and rolls) a new server."""
    text = "\n".join(f"{name}\n{body}" for name, body in sorted(server_sources().items()))
    return hashlib.sha256(f"{GO_IMAGE}\n{text}".encode()).hexdigest()[:16]


def build_script(digest: str) -> str:
    """The init container's build: once per digest on each Pi, kept whole (a rename) or not at all."""
    return f"""set -eu
out={HOST_CACHE}/bin/kms-server-{digest}
if [ ! -x "$out" ]; then
  mkdir -p {HOST_CACHE}/bin {SCRATCH}/src
  cp /src/main.go /src/go.mod /src/go.sum {SCRATCH}/src/
  cd {SCRATCH}/src
  go build -trimpath -o "$out.partial" .
  mv "$out.partial" "$out"
fi
cp "$out" /opt/kms/kms-server
"""


def _labels() -> dict[str, str]:
    return {"app.kubernetes.io/name": NAME, "app.kubernetes.io/part-of": "iluvatar"}


def _meta(name: str) -> dict[str, Any]:
    return {"name": name, "namespace": NAMESPACE, "labels": _labels()}


# What the backup's file is encrypted under: a fresh key gives a fresh file, the same key the same one.
BACKUP_LABEL = "iluvatar kms key v1"


def key_backup(key_base64: str, recipient: str) -> str:
    """The KMS key's 32 bytes as an age file to the backups' recipient (armored): `backupAgeKey` opens it
    (`age --decrypt -i`), and the same key gives the same file at every run (plans.age_file)."""
    return age_file.encrypt(base64.b64decode(key_base64), recipient, BACKUP_LABEL)


# The key put back after Pulumi's state was lost (the secret iluvatar:kmsKeyRestore, docs/layers/ainur.md "The Ainur
# lost"): it takes the generated key's place for good, and the output below says so, so that the next run refuses to
# go on without it (a generated key would open none of the volumes sealed under it: stacks.pulumi_source). Not `pulumi
# import`: the engine keeps an import's ID, here the key itself, in clear in the state (the resource's importID).
RESTORED_OUTPUT = encryption.KMS_RESTORED_OUTPUT


# What the program serves in place of a restored key it cannot read: an offline run (`iluvatar render`) hands a `secure:`
# value as the placeholder stacks.secrets.UNDECRYPTED, and the engine the decrypted value at `preview` and `up`. A
# stand-in of the right form (32 zero bytes) lets a render show every object that carries the key; the value itself
# is judged where it is known.
OFFLINE_KEY = base64.b64encode(bytes(32)).decode()


def restored_key(value: str) -> str:
    """The restored key as the KMS serves it (base64 of 32 bytes), or a ValueError that names the key and the fix; the
    value itself is never in the message. The offline placeholder gives OFFLINE_KEY."""
    if value == secrets.UNDECRYPTED:
        return OFFLINE_KEY
    # The preview refuses such a value before any resource (stacks.pulumi_source.kms_key_restore_problems); this is
    # the last guard of a program run without that load.
    raw = encryption.kms_key_bytes(value)
    if raw is None:
        raise ValueError(f"iluvatar:{encryption.KMS_RESTORE}: {encryption.KMS_RESTORE_FORM}")
    return base64.b64encode(raw).decode()


# --- The key's backup on the backup target, and its canary -----------------------------------------------------

# On Arda, beside talos-backup (its namespace and its S3 Secret): the key's age file, uploaded on the etcd schedule.
BACKUP_NAME = "kms-key-backup"
BACKUP_FILE = "kms-key.age"
BACKUP_IMAGE = pins.IMAGES["curl-drill"]
BACKUP_USER = 65534

# A known value sealed under the key as the server seals a passphrase (plans/kmsserver/main.go Seal: a version byte,
# a 12-byte nonce, AES-256-GCM with "iluvatar-kms/v1 node <uuid>" as associated data) for a node that is no machine:
# the key's restore drill unseals it with the key it decrypted from the backup, which proves that key is the one that
# sealed Arda's volumes. The plaintext is public (a hash of a label) and the nonce comes from the key (an HMAC), so
# the same key gives the same blob at every run and no other seal repeats its nonce (a random 96-bit one would
# collide with it once in 2^96 seals).
CANARY_NODE = "00000000-1117-4000-8000-000000000000"
CANARY_PLAINTEXT = hashlib.sha256(b"iluvatar kms canary v1").digest()
CANARY_VERSION = 1


def canary(key_base64: str) -> str:
    """The canary blob (base64) sealed under the KMS key for CANARY_NODE; the server's Unseal gives CANARY_PLAINTEXT."""
    key = base64.b64decode(key_base64)
    nonce = hmac.new(key, b"iluvatar kms canary nonce v1", hashlib.sha256).digest()[:12]
    sealed = aes_gcm.seal(key, nonce, CANARY_PLAINTEXT, f"iluvatar-kms/v1 node {CANARY_NODE.lower()}".encode())
    return base64.b64encode(bytes([CANARY_VERSION]) + nonce + sealed).decode()


def backup_enabled(stack: StackConfig) -> bool:
    """The key goes to the backup target with Arda's etcd snapshots: where talos-backup uploads, to its recipient."""
    return enabled(stack) and backup.arda_etcd(stack)


def backup_prefix(stack: StackConfig) -> str:
    """`<prefix>/kms` on the backup target: beside `<prefix>/etcd`, apart from every snapshot's folder."""
    where = backup.target(stack)
    return "/".join(p for p in (where.prefix, "kms") if p)


# How many hex digits of the age file's SHA-256 name its object: 64 bits, so two keys' files never share a name.
FINGERPRINT_DIGITS = 16


def backup_object(stack: StackConfig, armored: str) -> str:
    """The one object the key's age file `armored` is uploaded to: `<prefix>/kms/kms-key-<SHA-256 of the file>.age`. The
    file is the same at every run for one key (plans.age_file), so each run overwrites it, and another key's file
    (a key made or restored after a loss) has a name of its own, never overwritten by this one's."""
    digest = hashlib.sha256(armored.encode()).hexdigest()[:FINGERPRINT_DIGITS]
    return f"{backup_prefix(stack)}/kms-key-{digest}.age"


def backup_configmap(armored: str) -> dict[str, Any]:
    """The key's age file on Arda (ciphertext: what is public about it is that it exists), for the upload to read."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": BACKUP_NAME, "namespace": backup.ETCD_NAMESPACE, "labels": _labels()},
        "data": {BACKUP_FILE: armored},
    }


# The upload: the ConfigMap's file to one object named by its own bytes' SHA-256 (backup_object: the sha256sum here is
# of the very bytes uploaded), overwritten at every run. The target then holds one object per key ever in use, never
# a pile of copies, and the job deletes nothing and lists nothing: it needs no right but PUT on `<prefix>/kms/`, and an
# older key's backup (the one that opens Arda's volumes, when a mistake put a new key in place) stays on the target
# until someone deletes it by hand. How recent the upload is, the drill reads from the object's Last-Modified, the
# target's own clock, never from a time this pod's clock wrote. Signed by curl (AWS Signature v4), as the drills'
# reads are. Environment: the S3 Secret's keys, S3_ENDPOINT, S3_BUCKET, S3_PREFIX, AWS_REGION.
# The keys reach curl as a config on its stdin (`-K -`), written by the shell's builtin printf and by sed from a pipe:
# on curl's command line the secret key would sit in its argv, readable in /proc by any process of the node that sees
# it, until curl blanks it. In the config a value is quoted, with `\` and `"` escaped (curl's docs, --config).
BACKUP_SCRIPT = f"""set -eu
s3() {{
  printf '%s:%s\\n' "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" | sed 's/[\\\\"]/\\\\&/g; s/^/user = "/; s/$/"/' \\
    | curl -sS --fail-with-body --aws-sigv4 "aws:amz:$AWS_REGION:s3" -K - "$@"
}}
sum=$(sha256sum /backup/{BACKUP_FILE} | cut -c1-{FINGERPRINT_DIGITS})
key="$S3_PREFIX/kms-key-$sum.age"
s3 -T /backup/{BACKUP_FILE} "$S3_ENDPOINT/$S3_BUCKET/$key"
echo "the KMS key's backup is $key"
"""


def backup_cronjob(stack: StackConfig) -> dict[str, Any]:
    """The CronJob on Arda that writes the key's age file to the backup target on the etcd schedule: its one object
    (backup_object) written again each run, with a new Last-Modified, so the drill can tell uploads that stopped from
    a key that did not change."""
    assert stack.backup is not None
    where = backup.target(stack)
    env = [
        {"name": "S3_ENDPOINT", "value": where.endpoint},
        {"name": "S3_BUCKET", "value": where.path},
        {"name": "S3_PREFIX", "value": backup_prefix(stack)},
        {"name": "AWS_REGION", "value": stack.backup.region},
        *(
            {"name": key, "valueFrom": {"secretKeyRef": {"name": backup.TALOS_S3_SECRET, "key": key}}}
            for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
        ),
    ]
    container = {
        "name": "upload",
        "image": BACKUP_IMAGE,
        "command": ["/bin/sh", "-c", BACKUP_SCRIPT],
        "env": env,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": BACKUP_USER,
            "runAsGroup": BACKUP_USER,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [{"name": "backup", "mountPath": "/backup", "readOnly": True}],
    }
    pod = {
        "restartPolicy": "OnFailure",
        "automountServiceAccountToken": False,
        "containers": [container],
        "volumes": [{"name": "backup", "configMap": {"name": BACKUP_NAME}}],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": BACKUP_NAME, "namespace": backup.ETCD_NAMESPACE, "labels": _labels()},
        "spec": {
            "schedule": stack.backup.etcd.schedule,
            "concurrencyPolicy": "Forbid",
            "successfulJobsHistoryLimit": 1,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {"spec": {"backoffLimit": 3, "template": {"metadata": {"labels": _labels()}, "spec": pod}}},
        },
    }


def key_secret(key_base64: str) -> dict[str, Any]:
    """The KMS key (32 bytes, base64) as the Secret the server reads; the component fills it from the Pulumi secret."""
    return {"apiVersion": "v1", "kind": "Secret", "metadata": _meta(KEY_SECRET), "type": "Opaque", "stringData": {KEY_FIELD: key_base64}}


def tls_secret(certificate: str, key: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(TLS_SECRET),
        "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": certificate, "tls.key": key},
    }


def daemon_set() -> dict[str, Any]:
    digest = sources_digest()
    labels = _labels()
    restricted = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "readOnlyRootFilesystem": True}
    pod: dict[str, Any] = {
        "serviceAccountName": NAME,
        # The server talks to no API: no token in the pod.
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}, "fsGroup": USER},
        # Never on a netbooted maia: its kubelet identity is no secret (its root is on NFS, docs/security.md) and a node
        # reads the Secrets of the pods bound to it, so the key would be one step from any device on the LAN. The
        # service address is never there either (the netboot pod keeps off them, plans.netboot.pi_pods.with_pis), and
        # nothing here tolerates their taint. Every other Pi runs one: the address may move to any of them. A Pi that
        # goes unreachable is left as the netboot pod leaves it.
        "affinity": {
            "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [NOT_NETBOOTED]}]}}
        },
        "tolerations": eviction_tolerations(),
        "initContainers": [
            {
                "name": "build",
                "image": GO_IMAGE,
                "command": ["sh", "-c", build_script(digest)],
                # Root only to write the host's cache (a root-owned hostPath); no capability, no escalation.
                "securityContext": {**restricted, "runAsUser": 0, "runAsNonRoot": False},
                "env": [
                    {"name": "CGO_ENABLED", "value": "0"},
                    {"name": "GOTOOLCHAIN", "value": "local"},
                    {"name": "GOFLAGS", "value": "-mod=readonly -buildvcs=false"},
                    {"name": "GOMODCACHE", "value": f"{HOST_CACHE}/mod"},
                    {"name": "GOCACHE", "value": f"{SCRATCH}/go-build"},
                    {"name": "HOME", "value": SCRATCH},
                    # The root file system is read-only, /tmp with it: `go build` makes its work folder in GOTMPDIR, else
                    # in TMPDIR, else /tmp (cmd/go/internal/work/action.go, os.TempDir), and fails there.
                    {"name": "GOTMPDIR", "value": SCRATCH},
                    {"name": "TMPDIR", "value": SCRATCH},
                ],
                "volumeMounts": [
                    {"name": "source", "mountPath": "/src", "readOnly": True},
                    {"name": "cache", "mountPath": HOST_CACHE},
                    {"name": "bin", "mountPath": "/opt/kms"},
                    {"name": "scratch", "mountPath": SCRATCH},
                ],
            }
        ],
        "containers": [
            {
                "name": "kms",
                "image": GO_IMAGE,
                "command": [
                    "/opt/kms/kms-server",
                    f"--listen=:{PORT}",
                    f"--key=/etc/kms/key/{KEY_FIELD}",
                    "--tls-cert=/etc/kms/tls/tls.crt",
                    "--tls-key=/etc/kms/tls/tls.key",
                    f"--admitted=/etc/kms/admitted/{ADMITTED_FIELD}",
                ],
                "ports": [{"name": "kms", "containerPort": PORT, "protocol": "TCP"}],
                "readinessProbe": {"tcpSocket": {"port": "kms"}, "periodSeconds": 5},
                "securityContext": {**restricted, "runAsUser": USER, "runAsGroup": USER, "runAsNonRoot": True},
                "volumeMounts": [
                    {"name": "key", "mountPath": "/etc/kms/key", "readOnly": True},
                    {"name": "tls", "mountPath": "/etc/kms/tls", "readOnly": True},
                    {"name": "admitted", "mountPath": "/etc/kms/admitted", "readOnly": True},
                    {"name": "bin", "mountPath": "/opt/kms", "readOnly": True},
                ],
            }
        ],
        "volumes": [
            {"name": "source", "configMap": {"name": SOURCE_CONFIGMAP}},
            # A ConfigMap volume, not an argument: a machine added changes the list, and the kubelet refreshes the
            # file in place, so the pods do not roll (the server reads it at every call).
            {"name": "admitted", "configMap": {"name": ADMITTED_CONFIGMAP}},
            {"name": "cache", "hostPath": {"path": HOST_CACHE, "type": "DirectoryOrCreate"}},
            {"name": "bin", "emptyDir": {}},
            {"name": "scratch", "emptyDir": {}},
            # Secret volumes are the kubelet's tmpfs: the key is never written to the Pi's disk by the pod.
            {"name": "key", "secret": {"secretName": KEY_SECRET, "defaultMode": 0o440}},
            {"name": "tls", "secret": {"secretName": TLS_SECRET, "defaultMode": 0o440}},
        ],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": _meta(NAME),
        "spec": {
            "selector": {"matchLabels": labels},
            # One Pi at a time: the others keep answering while one rolls.
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {"metadata": {"labels": labels, "annotations": {"iluvatar/kms-server-digest": digest}}, "spec": pod},
        },
    }


def manifests(stack: StackConfig) -> list[dict[str, Any]]:
    """The KMS namespace's objects but its two Secrets (the component's, from Pulumi secrets), Namespace first."""
    assert stack.ainur is not None
    labels = _labels()
    return [
        # Privileged only for the hostPath build cache (baseline forbids any hostPath); the containers themselves
        # drop every capability and the server runs as nobody.
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE, "labels": {"pod-security.kubernetes.io/enforce": "privileged"}}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(NAME), "automountServiceAccountToken": False},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(SOURCE_CONFIGMAP), "data": server_sources()},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(ADMITTED_CONFIGMAP), "data": {ADMITTED_FIELD: admitted_file(stack)}},
        daemon_set(),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(NAME),
            "spec": {
                "type": "ClusterIP",
                "selector": labels,
                # Not a LoadBalancer: kube-vip already holds this address for the netboot Service.
                "externalIPs": [str(stack.ainur.service_ip)],
                # The caller's address reaches the pod (the NetworkPolicy reads it), and only the Pi holding the
                # address answers for it: the policy covers "externally-facing addresses (NodePorts, ExternalIPs, and
                # LoadBalancer IPs)" (k8s.io/api core/v1 ServiceSpec.externalTrafficPolicy), which kube-proxy, k3s's,
                # hands to a node-local endpoint only, unmasqueraded.
                "externalTrafficPolicy": "Local",
                "ports": [{"name": "kms", "port": PORT, "targetPort": "kms", "protocol": "TCP"}],
            },
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": _meta(NAME),
            "spec": {
                "podSelector": {"matchLabels": labels},
                "policyTypes": ["Ingress"],
                "ingress": [{"from": [{"ipBlock": {"cidr": cidr}} for cidr in admitted(stack)], "ports": [{"protocol": "TCP", "port": PORT}]}]
                if stack.arda_nodes
                else [],
            },
        },
    ]
