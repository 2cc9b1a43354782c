"""A real Kubernetes control plane for the tests: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok (which plays the kubelet of every node), on loopback with throwaway certificates.

Everything is the upstream program, built from pinned Go modules like the other checkers
(`tools/kube-control-plane/`: Kubernetes 1.35.1, etcd 3.6.5 and kwok v0.8.0, one binary for both clusters: Arda runs
Kubernetes 1.35.1 and the Ainur k3s v1.35.8+k3s1, the same minor), and configured as the cluster it stands for
configures it:

- `TALOS` (Arda): the kube-apiserver, controller-manager and scheduler flags Talos writes (v1.14.0-rc.1, the newest
  1.14 source here: `internal/app/machined/pkg/controllers/k8s/control_plane_static_pod.go`): NodeRestriction on top
  of the default admission plugins, Node and RBAC authorization, no anonymous requests, and the
  PodSecurity admission configuration Talos generates (`pkg/machinery/config/generate/init.go`:
  enforce `baseline`, audit and warn `restricted`, `kube-system` exempt);
- `K3S` (the Ainur): k3s's own flags (`pkg/daemons/control/server.go`): the same plugins and
  authorization, and no PodSecurity configuration, so every namespace is `privileged` unless labelled.

    with Cluster(TALOS, tmp_path).start() as cluster:
        cluster.client.get("v1", "Namespace", "default")
        cluster.kubeconfig            # an admin kubeconfig for anything else

Nothing else runs: no kubelet, no container, no CNI, no operator. `kwok` marks nodes Ready and
pods Running (Job pods Succeeded) as soon as they are scheduled, but for a Node labelled `NO_CNI`, whose
status the test writes (a kubelet on a machine where no CNI runs yet, or one that never reports): the
API server refuses kwok any write to such a Node (`NO_CNI_POLICY`). Processes run in their own
session (Ctrl-C reaches pytest, which stops them in order) and die with the test process if it is
killed (`setpriv --pdeathsig`).
"""

from __future__ import annotations

import atexit
import base64
import builtins
import contextlib
import copy
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tools import gotools

COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
# The label of a Node kwok leaves alone (kwok v0.8.0 --disregard-status-with-label-selector, deprecated for the Stage API
# but still read: pkg/kwok/controllers/node_controller.go:166-179, `need`, asked at each Added, Modified and Sync event): it writes
# none of its status and holds no lease for it, so the test posts its status as its kubelet would, Ready or not
# (tests/upgrader/test_before_cni.py, Kubelet).
NO_CNI = "iluvatar.test/no-cni"
# kwok's user, the CN of its client certificate (IDENTITIES below).
KWOK_USER = "kwok"
# But `need` is asked only as an event arrives: a stage job kwok had already queued for a Node (its heartbeat, every
# 20-25 s: kustomize/stage/node/heartbeat/node-heartbeat.yaml, played as tools/kube-control-plane/main.go's defaults)
# plays on the Node object it stored and PATCHes the status of whatever Node has that name (node_controller.go:411-423,
# patchResource at :514), whatever its labels or uid. A Node's Deleted event cancels only the job its name maps to
# (:215-226), and a job can slip out of that map (preprocess files it from its own goroutine, :255-273 and :338;
# playStageWorker deletes the name's entry after popping a job, :351, even when addStageJob, :601-612, has just swapped
# a newer one in). So a Node taken from kwok (labelled NO_CNI, made anew: tests/kube/nodes.py) could still be written
# Ready, with a fresh heartbeat, by a job kwok queued for the Node before it, up to 25 s later, as no kubelet of a Pi the
# test broke would. The API server refuses that write: kwok may neither make nor change a Node carrying the label
# (a ValidatingAdmissionPolicy; admission applies to system:masters too, and kwok retries no 403: controllers/utils.go
# shouldRetry, :141-155). Anyone else (the tests, as admin or as a node's kubelet) still may.
NO_CNI_POLICY: list[dict[str, Any]] = [
    {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": "iluvatar-test-no-cni-left-to-the-test"},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"], "resources": ["nodes", "nodes/status"]}
                ],
                # Matched if the Node as it stands or as it would be carries the label (k8s.io/api v0.35.1
                # admissionregistration/v1/types.go:645-657): a status patch is matched by the Node it patches.
                "objectSelector": {"matchExpressions": [{"key": NO_CNI, "operator": "Exists"}]},
            },
            "validations": [
                {
                    "expression": f"request.userInfo.username != '{KWOK_USER}'",
                    "messageExpression": f"'Node ' + request.name + ' is labelled {NO_CNI}: kwok writes none of it, the test writes its status as its kubelet would'",
                    "reason": "Forbidden",
                }
            ],
        },
    },
    {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": "iluvatar-test-no-cni-left-to-the-test"},
        "spec": {"policyName": "iluvatar-test-no-cni-left-to-the-test", "validationActions": ["Deny"]},
    },
]


def minor_of(version: str) -> str:
    """A Kubernetes version's minor: v1.35.1 -> 1.35, v1.35.8+k3s1 -> 1.35."""
    return ".".join(version.removeprefix("v").split("+")[0].split(".")[:2])


# Kubernetes builds by minor: (Go tool, the Kubernetes version it is built from, read from its go.mod; the
# binary reports that version, `tools.gotools.kubernetes_ldflags`). One build, 1.35.1, stands for both clusters: Arda
# runs it, and the Ainur's k3s v1.35.8+k3s1 is its minor (the API server's /version says v1.35.1 there).
BUILDS: dict[str, tuple[str, str]] = {
    minor_of(version): ("kube-control-plane", version) for version in (gotools.kubernetes_version("kube-control-plane"),)
}
# The components every cluster runs from that one binary, whatever its minor (etcd and kwok).
SHARED = {"etcd": "kube-control-plane", "kwok": "kube-control-plane"}

# Talos's PodSecurity defaults (machinery v1.14.1 config/generate/init.go:115-122 from
# config/types/k8s/admission_control.go:75-95, DefaultPodSecurityAdmissionControlConfig; the same at v1.12.4), written by Talos as
# the AdmissionConfiguration kube-apiserver reads (render_config_static_pods.go).
TALOS_POD_SECURITY: dict[str, Any] = {
    "apiVersion": "pod-security.admission.config.k8s.io/v1alpha1",
    "kind": "PodSecurityConfiguration",
    "defaults": {
        "enforce": "baseline",
        "enforce-version": "latest",
        "audit": "restricted",
        "audit-version": "latest",
        "warn": "restricted",
        "warn-version": "latest",
    },
    "exemptions": {"usernames": [], "runtimeClasses": [], "namespaces": ["kube-system"]},
}
# What the audit log records when a test asks for one (Talos's own default policy: every request's metadata).
AUDIT_POLICY = {"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": [{"level": "Metadata"}]}


class ControlPlaneError(Exception):
    """A component did not start or stopped: the message names it, says why, and ends with its log."""


class ApiError(Exception):
    """The API server refused a request: its HTTP status, reason and message."""

    def __init__(self, status: int, reason: str, message: str, what: str = "") -> None:
        self.status, self.reason, self.message, self.what = status, reason, message, what
        super().__init__(f"{what + ': ' if what else ''}HTTP {status} {reason}: {message}")


@dataclass(frozen=True)
class Flavor:
    """How one kind of cluster runs its control plane: the flags its distribution passes."""

    name: str
    cluster: str  # which of the program's clusters it stands for
    minor: str
    service_cidr: str
    pod_cidr: str
    pod_security: Mapping[str, Any] | None  # the PodSecurity plugin's configuration; None: the plugin's defaults
    apiserver_args: tuple[str, ...]
    controller_manager_args: tuple[str, ...]
    scheduler_args: tuple[str, ...] = ()
    # What the node objects say about the machine (kwok keeps what the node was created with).
    os_image: str = ""

    @property
    def tool(self) -> str:
        return BUILDS[self.minor][0]

    @property
    def kubernetes_version(self) -> str:
        return BUILDS[self.minor][1]


# The API server flags Talos and k3s both pass (Talos writes an authorization-config file with the Node
# and RBAC authorizers: the same chain as k3s's --authorization-mode).
APISERVER_ARGS = (
    "--allow-privileged=true",
    "--anonymous-auth=false",
    "--enable-admission-plugins=NodeRestriction",
    "--enable-bootstrap-token-auth=true",
    "--authorization-mode=Node,RBAC",
    "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname",
    "--profiling=false",
    # Not Talos's nor k3s's (both leave priority and fairness on): a test's cost, not a behaviour it checks. With it off
    # the API server puts the max-in-flight filter (400 reads, 200 writes at once: config.go:443-444) where the APF filter was
    # (k8s.io/apiserver v0.35.1 pkg/server/config.go:1022-1031) and runs no APF config consumer (config.go:921-934,
    # options/feature.go:73-84); the flowcontrol.apiserver.k8s.io API and its bootstrap FlowSchemas stay
    # (k8s.io/kubernetes v1.35.1 pkg/controlplane/apiserver/apis.go:81 registers them whatever the flag). Authentication,
    # authorization, admission (Pod Security, NodeRestriction, CEL) and scheduling are before or after it, unchanged; no
    # test sends enough at once to be queued or refused by either filter. Deploying rk1, the API server spent 19.3 s of
    # CPU with it on and 18.4 s off (two pairs; docs/proof/performance.md, CI time, sixth pass).
    "--enable-priority-and-fairness=false",
)
TALOS = Flavor(
    name="talos",
    cluster="arda",
    minor="1.35",
    # Talos's defaults (constants.DefaultIPv4ServiceNet, DefaultIPv4PodNet).
    service_cidr="10.96.0.0/12",
    pod_cidr="10.244.0.0/16",
    pod_security=TALOS_POD_SECURITY,
    apiserver_args=APISERVER_ARGS,
    # Talos 1.14's (control_plane_final.go:270-289 at v1.14.0-rc.1, commit 3e173adf4 "move kube-controller-manager config
    # to multi-doc"): every default controller and no more (1.12's `*,tokencleaner` is gone), service-account credentials
    # on, and terminated pods collected beyond 100 (CIS 2.0; Kubernetes' default is 12,500).
    controller_manager_args=(
        "--use-service-account-credentials=true",
        "--controllers=*",
        "--configure-cloud-routes=false",
        "--allocate-node-cidrs=true",
        "--terminated-pod-gc-threshold=100",
        "--profiling=false",
    ),
    # control_plane_final.go:391-400: its authentication configuration must be read, not tolerated missing.
    scheduler_args=("--authentication-tolerate-lookup-failure=false", "--profiling=false"),
    os_image="Talos (v1.14.1)",
)
K3S = Flavor(
    name="k3s",
    cluster="ainur",
    minor="1.35",
    # k3s's defaults (--service-cidr, --cluster-cidr).
    service_cidr="10.43.0.0/16",
    pod_cidr="10.42.0.0/16",
    pod_security=None,
    apiserver_args=APISERVER_ARGS,
    # k3s runs its own cloud controller, so the controller-manager leaves out the cloud controllers.
    controller_manager_args=(
        "--use-service-account-credentials=true",
        "--controllers=*,tokencleaner,-service,-route,-cloud-node-lifecycle",
        "--configure-cloud-routes=false",
        "--allocate-node-cidrs=true",
        "--profiling=false",
    ),
    scheduler_args=("--profiling=false",),
    os_image="Ubuntu 24.04 LTS",
)
FLAVORS = {f.name: f for f in (TALOS, K3S)}


def flavor_for(cluster: str) -> Flavor:
    """The flavor that stands for the program's cluster `arda` or `ainur`."""
    found = [f for f in FLAVORS.values() if f.cluster == cluster]
    if not found:
        raise KeyError(f"no control-plane flavor stands for cluster {cluster!r}")
    return found[0]


def build_for(kubernetes_version: str) -> tuple[str, str]:
    """The Go tool and Kubernetes version that stand for `kubernetes_version` (v1.35.1, v1.35.8+k3s1)."""
    minor = minor_of(kubernetes_version)
    if minor not in BUILDS:
        raise ControlPlaneError(
            f"no control plane is built for Kubernetes {kubernetes_version} (minor {minor}; built: {', '.join(sorted(BUILDS))}): "
            "add a tools/kube-control-plane-<minor>/ module and its entry in tools.kube_cluster.BUILDS"
        )
    return BUILDS[minor]


# --- Certificates ----------------------------------------------------------------------------------------


def _openssl(*args: str) -> None:
    result = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60)  # noqa: S603, S607 - a fixed tool
    if result.returncode != 0:
        raise ControlPlaneError(f"openssl {args[0]} failed: {result.stderr.strip()}")


_EC = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
# As long as a real cluster's: the CA ten years (Talos machinery v1.14.1 config/generate/secrets/secrets.go:15,
# CAValidityTime = 87600 h, for the Kubernetes CA too: ca.go:30-39), the API server's and every client's
# certificate a year (constants.go:217, KubernetesDefaultCertificateValidityDuration, what Talos issues the API
# server's and the components' with; constants.go:287, KubernetesAdminCertDefaultLifetime, the admin
# kubeconfig's). The Talos provider renews a kubeconfig whose certificate ends within 720 h, so a shorter
# one here would make every run against these clusters a renewal (tests/tools/test_talos_api.py checks them all).
CA_DAYS = 3650
LEAF_DAYS = 365


def _leaf(pki: Path, name: str, subject: str, usage: str, sans: Sequence[str] = ()) -> None:
    args = ["req", "-x509", "-CA", str(pki / "ca.crt"), "-CAkey", str(pki / "ca.key"), *_EC, "-days", str(LEAF_DAYS)]
    args += ["-keyout", str(pki / f"{name}.key"), "-out", str(pki / f"{name}.crt"), "-subj", subject]
    args += ["-addext", "basicConstraints=critical,CA:FALSE", "-addext", "keyUsage=critical,digitalSignature", "-addext", f"extendedKeyUsage={usage}"]
    if sans:
        args += ["-addext", "subjectAltName=" + ",".join(sans)]
    _openssl(*args)


# Who each component is to the API server (the groups and names its bootstrap RBAC policy knows).
IDENTITIES = {
    "admin": "/O=system:masters/CN=iluvatar-test-admin",
    "kube-controller-manager": "/CN=system:kube-controller-manager",
    "kube-scheduler": "/CN=system:kube-scheduler",
    # kwok writes node and pod status for every node, which only an admin may.
    KWOK_USER: f"/O=system:masters/CN={KWOK_USER}",
}


def make_pki(pki: Path, addresses: Sequence[str], service_ip: str) -> None:
    """A throwaway CA, the API server's serving certificate, each component's client certificate and the service-account keys."""
    pki.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", *_EC, "-days", str(CA_DAYS), "-keyout", str(pki / "ca.key"), "-out", str(pki / "ca.crt"), "-subj", "/CN=iluvatar-test-ca",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature")  # fmt: skip
    names = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"]
    sans = [*(f"DNS:{n}" for n in names), *(f"IP:{a}" for a in dict.fromkeys(["127.0.0.1", *addresses, service_ip]))]
    _leaf(pki, "apiserver", "/CN=kube-apiserver", "serverAuth", sans)
    for name, subject in IDENTITIES.items():
        _leaf(pki, name, subject, "clientAuth")
    _openssl("ecparam", "-genkey", "-name", "prime256v1", "-noout", "-out", str(pki / "sa.key"))
    _openssl("ec", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub"))


def kubeconfig(server: str, ca: Path, cert: Path, key: Path, name: str = "iluvatar-test") -> dict[str, Any]:
    """A kubeconfig with its certificates embedded (`-data`), as Talos and k3s hand theirs out: a consumer that
    reads the data (the Talos provider, the program's cluster_ca) sees what it would see from a real cluster."""

    def data(path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode()

    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": server, "certificate-authority-data": data(ca)}}],
        "users": [{"name": name, "user": {"client-certificate-data": data(cert), "client-key-data": data(key)}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
    }


# --- The HTTPS client ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Resource:
    """Where a kind lives in the API: its plural and whether it is namespaced."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        return f"{base}/{name}" if name else base


def describe(obj: Mapping[str, Any]) -> str:
    """`Kind namespace/name` (or `Kind name`), as messages name an object."""
    meta = obj.get("metadata") or {}
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj.get('kind')} {where}{meta.get('name')}"


class KubeClient:
    """Plain HTTPS to the API server, as any client speaks it: one kept-alive connection, JSON bodies.

    Kinds are found by discovery (`/api`, `/apis/<group>/<version>`), re-read when a kind is not
    found (a CRD just established), as client-go's deferred discovery does.
    """

    def __init__(
        self,
        server: str,
        ca: Path,
        cert: Path | None = None,
        key: Path | None = None,
        token: str | None = None,
        discovered: dict[str, dict[str, Resource]] | None = None,
    ) -> None:
        url = urllib.parse.urlsplit(server)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 443
        self.context = ssl.create_default_context(cafile=str(ca))
        if cert is not None:
            self.context.load_cert_chain(str(cert), str(key) if key else None)
        self.token = token
        self._connection: http.client.HTTPSConnection | None = None
        # Shared by the clients of one cluster (one per thread): what discovery found.
        self._discovered: dict[str, dict[str, Resource]] = {} if discovered is None else discovered
        self.warnings: list[str] = []  # the Warning headers of the last answer (unknown fields, Pod Security's `warn`)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def request(
        self, method: str, path: str, body: Any = None, *, query: Mapping[str, str] | None = None, content_type: str = "application/json"
    ) -> tuple[int, Any]:
        """One request: the status and the decoded JSON answer (text when it is not JSON)."""
        if query:
            path += "?" + urllib.parse.urlencode(query)
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers["Content-Type"] = content_type
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        for attempt in (1, 2):
            if self._connection is None:
                self._connection = http.client.HTTPSConnection(self.host, self.port, context=self.context, timeout=60)
            try:
                self._connection.request(method, path, body=data, headers=headers)
                response = self._connection.getresponse()
                raw = response.read()
                self.warnings = [_warning_text(w) for w in response.headers.get_all("Warning") or []]
                break
            except (http.client.HTTPException, OSError):
                # A kept-alive connection the server closed: once more on a new one.
                self.close()
                if attempt == 2:
                    raise
        text = raw.decode(errors="replace")
        try:
            return response.status, json.loads(text) if text else None
        except json.JSONDecodeError:
            return response.status, text

    def checked(self, method: str, path: str, body: Any = None, *, what: str = "", **kwargs: Any) -> Any:
        status, answer = self.request(method, path, body, **kwargs)
        if status >= 400:
            raise api_error(status, answer, what or f"{method} {path}")
        return answer

    # --- discovery ------------------------------------------------------------------------------

    def _group_version(self, api_version: str) -> dict[str, Resource]:
        path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        status, answer = self.request("GET", path)
        if status == 404:
            return {}
        if status >= 400:
            raise api_error(status, answer, f"discovery of {api_version}")
        return {
            r["kind"]: Resource(api_version, r["kind"], r["name"], bool(r["namespaced"])) for r in answer.get("resources", []) if "/" not in r["name"]
        }

    def resource(self, api_version: str, kind: str) -> Resource:
        """The kind's resource, or ApiError 404 `no matches for kind` as kubectl and client-go say it."""
        if kind not in self._discovered.get(api_version, {}):
            self._discovered[api_version] = self._group_version(api_version)
        found = self._discovered[api_version].get(kind)
        if found is None:
            raise ApiError(404, "NoMatch", f'no matches for kind "{kind}" in version "{api_version}"', kind)
        return found

    def forget(self, api_version: str | None = None) -> None:
        if api_version is None:
            self._discovered.clear()
        else:
            self._discovered.pop(api_version, None)

    def server_version(self) -> str:
        """The version the API server reports (`/version`'s gitVersion): what discovery (client-go's
        ServerVersion) hands Helm and Argo CD as the cluster's Kubernetes version."""
        return str(self.checked("GET", "/version", what="the server's version")["gitVersion"])

    def api_versions(self) -> list[str]:
        """Every group/version the server serves (what Helm's `--api-versions` and `.Capabilities` see)."""
        found = ["v1"]
        for group in self.checked("GET", "/apis")["groups"]:
            found += [v["groupVersion"] for v in group["versions"]]
        return found

    # --- objects -----------------------------------------------------------------------------------

    def _where(self, obj: Mapping[str, Any]) -> tuple[Resource, str | None, str]:
        meta = obj.get("metadata") or {}
        resource = self.resource(str(obj["apiVersion"]), str(obj["kind"]))
        namespace = (meta.get("namespace") or "default") if resource.namespaced else None
        return resource, namespace, str(meta.get("name", ""))

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        resource = self.resource(api_version, kind)
        status, answer = self.request("GET", resource.path(namespace, name))
        if status == 404:
            return None
        if status >= 400:
            raise api_error(status, answer, f"{kind} {namespace + '/' if namespace else ''}{name}")
        found: dict[str, Any] = answer
        return found

    def list(self, api_version: str, kind: str, namespace: str | None = None, **query: str) -> list[dict[str, Any]]:
        resource = self.resource(api_version, kind)
        answer = self.checked("GET", resource.path(namespace), query={k.replace("_", ""): v for k, v in query.items()} or None)
        items: list[dict[str, Any]] = answer.get("items") or []
        for item in items:
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
        return items

    def create(self, obj: Mapping[str, Any], *, field_manager: str | None = None, field_validation: str | None = None) -> dict[str, Any]:
        resource, namespace, _ = self._where(obj)
        query = {k: v for k, v in (("fieldManager", field_manager), ("fieldValidation", field_validation)) if v}
        created: dict[str, Any] = self.checked("POST", resource.path(namespace), dict(obj), what=describe(obj), query=query or None)
        return created

    def apply(
        self, obj: Mapping[str, Any], *, field_manager: str, force: bool = False, field_validation: str | None = None, dry_run: bool = False
    ) -> dict[str, Any]:
        """Server-side apply (`application/apply-patch+yaml`; JSON is YAML)."""
        resource, namespace, name = self._where(obj)
        query = {"fieldManager": field_manager, "force": "true" if force else "false"}
        if field_validation:
            query["fieldValidation"] = field_validation
        if dry_run:
            query["dryRun"] = "All"
        applied: dict[str, Any] = self.checked(
            "PATCH", resource.path(namespace, name), dict(obj), what=describe(obj), query=query, content_type="application/apply-patch+yaml"
        )
        return applied

    def json_patch(self, obj: Mapping[str, Any], operations: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        resource, namespace, name = self._where(obj)
        patched: dict[str, Any] = self.checked(
            "PATCH", resource.path(namespace, name), [dict(o) for o in operations], what=describe(obj), content_type="application/json-patch+json"
        )
        return patched

    def merge_patch(self, obj: Mapping[str, Any], patch: Mapping[str, Any], subresource: str = "") -> dict[str, Any]:
        resource, namespace, name = self._where(obj)
        path = resource.path(namespace, name) + (f"/{subresource}" if subresource else "")
        patched: dict[str, Any] = self.checked("PATCH", path, dict(patch), what=describe(obj), content_type="application/merge-patch+json")
        return patched

    def delete(self, obj: Mapping[str, Any]) -> None:
        resource, namespace, name = self._where(obj)
        status, answer = self.request("DELETE", resource.path(namespace, name))
        if status >= 400 and status != 404:
            raise api_error(status, answer, describe(obj))

    def events_for(self, obj: Mapping[str, Any]) -> builtins.list[dict[str, Any]]:
        """The core events about an object, oldest first."""
        meta = obj["metadata"]
        selector = f"involvedObject.name={meta['name']},involvedObject.kind={obj.get('kind', 'Pod')}"
        events = self.list("v1", "Event", meta.get("namespace"), field_selector=selector)
        return sorted(events, key=lambda e: (e.get("lastTimestamp") or e.get("eventTime") or "", e["metadata"]["name"]))


def _warning_text(header: str) -> str:
    """A Warning header's text (`299 - "text"`, RFC 7234's quoted-string unescaped)."""
    quoted = header.split(" ", 2)[-1]
    if len(quoted) >= 2 and quoted[0] == quoted[-1] == '"':
        quoted = re.sub(r"\\(.)", r"\1", quoted[1:-1])
    return quoted


def api_error(status: int, answer: Any, what: str) -> ApiError:
    if isinstance(answer, dict):
        return ApiError(status, str(answer.get("reason", "")), str(answer.get("message", "")), what)
    return ApiError(status, "", str(answer)[:2000], what)


# --- Processes -------------------------------------------------------------------------------------------


def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


# A test control plane lives for a minute and holds a few hundred MiB: Go collects its garbage three times
# less often than by default (GOGC=100). Installing the charts' CRDs, the API server spent a fifth of its CPU
# collecting; with this, its CPU for a homelab deployment fell by 12 to 25 % (three paired runs).
GOGC = "300"
# And one processor for Go code each (the runtime's GOMAXPROCS, 2 on CI's 2 cores). The suite runs four workers on
# two cores, each with its control planes, so a component rarely had a second core to itself. Why one P costs less was
# measured, not traced (likely: no idle P spinning for work, GC work not spread over two). Goroutines still interleave
# (preempted asynchronously), so nothing a test checks depends on it. Deploying rk1, interleaved runs under a load of 6 to 11:
# the control plane's CPU 21.7 s on average with 2 (20.5, 22.5, 22.2) and 19.2 s with 1 (19.5, 19.7, 18.4), etcd's
# alone 1.7 s and 1.3 s (docs/proof/performance.md, CI time, sixth pass). Not kwok: it plays every kubelet, whose
# answers to a kubelet's report some tests wait for (tests/netns/test_k3s_steps.py), for 1 % of a plane's CPU.
GOMAXPROCS = "1"

# The controller-manager and the scheduler run without leader election. A plane here has one of each, so an election
# decides nothing, and it adds a way to die under the suite's load: a leader that cannot renew its lease within the
# renew deadline (10 s, component-base's default) exits (kube-scheduler v1.35.1 cmd/kube-scheduler/app/server.go:319-320,
# cmd/kube-controller-manager/app/controllermanager.go:368-369): pods are then left unscheduled, or uncreated with
# their claims unbound. Talos and k3s elect among their control planes; no test checks the election.
LEADER_ELECT = "--leader-elect=false"
ONE_PROCESSOR = frozenset({"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"})


def component_env(component: str) -> dict[str, str]:
    """The environment of a control-plane component: this process's, with the tests' GOGC, and GOMAXPROCS but for kwok."""
    return {**os.environ, "GOGC": GOGC, **({"GOMAXPROCS": GOMAXPROCS} if component in ONE_PROCESSOR else {})}


def _tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


_LIVE: list[Cluster] = []


@atexit.register
def _stop_all() -> None:
    """Whatever a test left running stops with the interpreter."""
    for cluster in list(_LIVE):
        cluster.stop()


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path


# What to wait for while a component starts: its process, what readiness means, and the probe.
Check = tuple[Process, str, Callable[[], bool]]


@dataclass
class Cluster:
    """One control plane: its own folder (certificates, etcd's data, logs), its own ports.

    `address` is where the API server listens (and what its certificate names): loopback, or an
    address a test owns (a veth into a network namespace); `components` leaves some out (etcd and
    an API server alone are enough to check RBAC). `audit` writes the API server's audit log.
    """

    flavor: Flavor
    root: Path
    address: str = "127.0.0.1"
    port: int = 0
    components: tuple[str, ...] = COMPONENTS
    audit: bool = False
    # Whether start() waits until pods can be created (the controller-manager has made the
    # `default` ServiceAccount, ~5 s after it answers); a caller that writes no pod at once need not.
    ready_for_pods: bool = True
    # More kube-apiserver flags (e.g. the authentication config a test renders), after the flavor's.
    apiserver_args: tuple[str, ...] = ()
    # More kube-controller-manager flags, after the flavor's (e.g. the node-monitor-grace-period the program gives the
    # Ainur's k3s: plans.k3s.NODE_MONITOR_GRACE_PERIOD).
    controller_manager_args: tuple[str, ...] = ()
    # Names the API server alone resolves, name -> address (an /etc/hosts of its own, bound over the
    # machine's in a mount namespace of its own: the issuer of a token the test makes, by its real name).
    hosts: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 120.0
    etcd_url: str = ""
    processes: list[Process] = field(default_factory=list)
    _clients: dict[int, KubeClient] = field(default_factory=dict)
    _discovered: dict[str, dict[str, Resource]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.pki = self.root / "pki"
        self.auto_port = self.port == 0
        if self.auto_port:
            self.port = free_port(self.address)

    @property
    def server(self) -> str:
        return f"https://{self.address}:{self.port}"

    @property
    def kubeconfig(self) -> Path:
        """The admin's kubeconfig (system:masters)."""
        return self.root / "admin.kubeconfig"

    @property
    def ca(self) -> tuple[str, str]:
        """The cluster's CA, certificate and key (PEM): what signs, and what the API server trusts in, a client certificate."""
        return (self.pki / "ca.crt").read_text(), (self.pki / "ca.key").read_text()

    @property
    def audit_log(self) -> Path:
        return self.root / "audit.log"

    @property
    def client(self) -> KubeClient:
        """The admin's client for the calling thread (a connection is not shared between threads)."""
        thread = threading.get_ident()
        if thread not in self._clients:
            pki = self.pki
            self._clients[thread] = KubeClient(self.server, pki / "ca.crt", pki / "admin.crt", pki / "admin.key", discovered=self._discovered)
        return self._clients[thread]

    def client_for_token(self, token: str) -> KubeClient:
        return KubeClient(self.server, self.pki / "ca.crt", token=token)

    # --- start and stop -----------------------------------------------------------------------------

    def _binary(self, component: str) -> Path:
        tool = SHARED.get(component, self.flavor.tool)
        try:
            return gotools.build(tool)
        except gotools.GoToolError as e:
            raise ControlPlaneError(f"{component}: the Go tool {tool} could not be built: {e}") from None

    def _spawn(self, component: str, args: Sequence[str]) -> Process:
        log = self.root / f"{component}.log"
        command = [str(self._binary(component)), component, *args]
        # Its own session: Ctrl-C reaches pytest, which stops the components in order. And killed
        # with the test process if that dies without stopping them.
        if component == "kube-apiserver" and self.hosts:
            hosts = self.root / "hosts"
            hosts.write_text(Path("/etc/hosts").read_text() + "".join(f"{address} {name}\n" for name, address in sorted(self.hosts.items())))
            bind = 'mount --bind "$0" /etc/hosts && exec "$@"'
            command = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", bind, str(hosts), *command]
        command = ["setpriv", "--pdeathsig", "KILL", "--", *command]
        with open(log, "ab") as out:
            popen = subprocess.Popen(  # noqa: S603
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=self.root,
                env=component_env(component),
            )
        process = Process(component, popen, log)
        self.processes.append(process)
        return process

    def _probe(self, url: str, expect: str = "ok") -> bool:
        """An HTTP(S) GET of a component's health endpoint, true when it answers `expect`."""
        parsed = urllib.parse.urlsplit(url)
        connection: http.client.HTTPConnection
        if parsed.scheme == "https":
            connection = http.client.HTTPSConnection(parsed.hostname or "", parsed.port, context=ssl._create_unverified_context(), timeout=2)  # noqa: S323 - a component's self-signed health endpoint on loopback
        else:
            connection = http.client.HTTPConnection(parsed.hostname or "", parsed.port, timeout=2)
        try:
            connection.request("GET", parsed.path)
            return expect in connection.getresponse().read().decode(errors="replace")
        finally:
            connection.close()

    def _write_kubeconfig(self, name: str, server: str) -> Path:
        path = self.root / f"{name}.kubeconfig"
        path.write_text(yaml.safe_dump(kubeconfig(server, self.pki / "ca.crt", self.pki / f"{name}.crt", self.pki / f"{name}.key")))
        return path

    def start(self) -> Cluster:
        """Start every component in order, each ready before the next; on any failure stop them all and raise."""
        start_all([self])
        return self

    def _steps(self) -> Iterator[list[Check]]:
        """Start the components a step at a time: each step spawns processes and yields what to wait for."""
        flavor = self.flavor
        service_ip = _first_host(flavor.service_cidr)
        if not (self.pki / "sa.pub").exists():
            make_pki(self.pki, [self.address], service_ip)
        self._write_kubeconfig("admin", self.server)
        etcd_port, peer_port = free_port(), free_port()
        data = self.root / "etcd"
        # Where etcd's clients reach it (the restore drill's test takes its snapshot there: tests/test_drill.py).
        self.etcd_url = f"http://127.0.0.1:{etcd_port}"
        if "etcd" in self.components:
            etcd = self._spawn(
                "etcd",
                [
                    "--name=etcd",
                    f"--data-dir={data}",
                    f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
                    f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
                    f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                    f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                    f"--initial-cluster=etcd=http://127.0.0.1:{peer_port}",
                    "--log-level=warn",
                    # A test's data outlives nothing: no fsync (etcd's own test setting).
                    "--unsafe-no-fsync",
                ],
            )
            yield [(etcd, "answering /health", lambda: self._probe(f"http://127.0.0.1:{etcd_port}/health", '"health":"true"'))]
        apiserver_args = [
            f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            f"--bind-address={self.address}",
            f"--advertise-address={self.address}",
            f"--secure-port={self.port}",
            f"--tls-cert-file={self.pki / 'apiserver.crt'}",
            f"--tls-private-key-file={self.pki / 'apiserver.key'}",
            f"--client-ca-file={self.pki / 'ca.crt'}",
            f"--service-account-issuer={self.server}",
            f"--api-audiences={self.server}",
            f"--service-account-key-file={self.pki / 'sa.pub'}",
            f"--service-account-signing-key-file={self.pki / 'sa.key'}",
            f"--service-cluster-ip-range={flavor.service_cidr}",
            f"--cert-dir={self.root / 'apiserver-certs'}",
            *flavor.apiserver_args,
            *self.apiserver_args,
        ]
        if flavor.pod_security is not None:
            admission = self.root / "admission-control-config.yaml"
            admission.write_text(
                yaml.safe_dump(
                    {
                        "apiVersion": "apiserver.config.k8s.io/v1",
                        "kind": "AdmissionConfiguration",
                        "plugins": [{"name": "PodSecurity", "configuration": dict(flavor.pod_security)}],
                    }
                )
            )
            apiserver_args.append(f"--admission-control-config-file={admission}")
        if self.audit:
            policy = self.root / "audit-policy.yaml"
            policy.write_text(yaml.safe_dump(AUDIT_POLICY))
            apiserver_args += [f"--audit-policy-file={policy}", f"--audit-log-path={self.audit_log}", "--audit-log-format=json"]
        if "kube-apiserver" not in self.components:
            return
        apiserver = self._spawn("kube-apiserver", apiserver_args)
        yield [(apiserver, "answering /readyz", self._ready)]
        # The controller-manager, the scheduler and kwok need only the API server: all three at once.
        waits: list[Check] = []
        if "kwok" in self.components:
            for manifest in NO_CNI_POLICY:
                self.client.create(manifest)
            # The API server's admission loads a new policy from its informer, and no API says when: start() returns once
            # kwok is refused (a dry run), so that no Node a test labels is ever open to it.
            waits.append((apiserver, f"refusing kwok's writes to a Node labelled {NO_CNI}", self._kwok_refused))
        if "kube-controller-manager" in self.components:
            kcm_port = free_port()
            config = self._write_kubeconfig("kube-controller-manager", self.server)
            kcm = self._spawn(
                "kube-controller-manager",
                [
                    f"--kubeconfig={config}",
                    f"--authentication-kubeconfig={config}",
                    f"--authorization-kubeconfig={config}",
                    "--bind-address=127.0.0.1",
                    f"--secure-port={kcm_port}",
                    f"--cert-dir={self.root / 'kcm-certs'}",
                    f"--cluster-cidr={flavor.pod_cidr}",
                    f"--service-cluster-ip-range={flavor.service_cidr}",
                    f"--cluster-signing-cert-file={self.pki / 'ca.crt'}",
                    f"--cluster-signing-key-file={self.pki / 'ca.key'}",
                    f"--root-ca-file={self.pki / 'ca.crt'}",
                    f"--service-account-private-key-file={self.pki / 'sa.key'}",
                    LEADER_ELECT,
                    *flavor.controller_manager_args,
                    *self.controller_manager_args,
                ],
            )
            waits.append((kcm, "answering /healthz", lambda: self._probe(f"https://127.0.0.1:{kcm_port}/healthz")))
        if "kube-scheduler" in self.components:
            scheduler_port = free_port()
            config = self._write_kubeconfig("kube-scheduler", self.server)
            scheduler = self._spawn(
                "kube-scheduler",
                [
                    f"--kubeconfig={config}",
                    f"--authentication-kubeconfig={config}",
                    f"--authorization-kubeconfig={config}",
                    "--bind-address=127.0.0.1",
                    f"--secure-port={scheduler_port}",
                    f"--cert-dir={self.root / 'scheduler-certs'}",
                    LEADER_ELECT,
                    *flavor.scheduler_args,
                ],
            )
            waits.append((scheduler, "answering /healthz", lambda: self._probe(f"https://127.0.0.1:{scheduler_port}/healthz")))
        if "kwok" in self.components:
            kwok_port = free_port()
            config = self._write_kubeconfig("kwok", self.server)
            kwok = self._spawn(
                "kwok",
                [
                    f"--kubeconfig={config}",
                    "--manage-all-nodes=true",
                    # A Node labelled NO_CNI is left to the test: a kubelet on a machine where no CNI runs yet,
                    # whose Ready condition the test writes as that kubelet would.
                    f"--disregard-status-with-label-selector={NO_CNI}",
                    # Node leases, as kubelets renew them; the node lifecycle controller watches them.
                    "--node-lease-duration-seconds=40",
                    f"--cidr={flavor.pod_cidr.split('/')[0].rsplit('.', 2)[0]}.0.1/16",
                    f"--server-address=127.0.0.1:{kwok_port}",
                ],
            )
            waits.append((kwok, "answering /healthz", lambda: self._probe(f"http://127.0.0.1:{kwok_port}/healthz")))
        yield waits
        if self.ready_for_pods and "kube-controller-manager" in self.components:
            # Pods need their namespace's `default` ServiceAccount, which the controller-manager makes.
            made = next(p for p in self.processes if p.name == "kube-controller-manager")
            yield [(made, "creating the default ServiceAccount", lambda: self.client.get("v1", "ServiceAccount", "default", "default") is not None)]

    def _ready(self) -> bool:
        status, answer = self.client.request("GET", "/readyz")
        return status == 200 and answer == "ok"

    def kwok_client(self) -> KubeClient:
        """A client as kwok is to the API server (its own client certificate): the caller closes it."""
        return KubeClient(self.server, self.pki / "ca.crt", self.pki / "kwok.crt", self.pki / "kwok.key")

    def _kwok_refused(self) -> bool:
        """Whether the API server refuses kwok a Node labelled NO_CNI (NO_CNI_POLICY), asked by a dry-run create."""
        client = self.kwok_client()
        try:
            node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "iluvatar-test-no-cni-probe", "labels": {NO_CNI: ""}}}
            status, answer = client.request("POST", "/api/v1/nodes", node, query={"dryRun": "All"})
        finally:
            client.close()
        if status == 403 and NO_CNI_POLICY[0]["metadata"]["name"] in str(answer):
            return True
        if status == 201:
            return False
        raise api_error(status, answer, "kwok's dry-run create of a Node labelled " + NO_CNI)

    def stop(self) -> None:
        """Stop every component, newest first (SIGTERM, then SIGKILL after 10 s); idempotent."""
        for client in self._clients.values():
            client.close()
        self._clients.clear()
        for process in reversed(self.processes):
            if process.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.popen.pid, signal.SIGTERM)
                try:
                    process.popen.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.popen.pid, signal.SIGKILL)
                    process.popen.wait(timeout=10)
        self.processes.clear()
        if self in _LIVE:
            _LIVE.remove(self)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def check_running(self) -> None:
        """Raise ControlPlaneError naming any component that has stopped since it started."""
        for process in self.processes:
            code = process.popen.poll()
            if code is not None:
                raise ControlPlaneError(f"{process.name} stopped with status {code}.\n--- {process.log}, last 30 lines ---\n{_tail(process.log)}")

    # --- helpers the tests share ---------------------------------------------------------------------

    def token(self, namespace: str, service_account: str, seconds: int = 3600) -> str:
        """A bound token of the ServiceAccount (TokenRequest), as the kubelet mounts into a pod."""
        request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": seconds}}
        path = f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token"
        answer = self.client.checked("POST", path, request, what=f"a token for {namespace}/{service_account}")
        return str(answer["status"]["token"])

    def wait_for(self, what: str, condition: Any, timeout: float = 60.0, interval: float = 0.25) -> Any:
        """Poll `condition()` until it returns something true, and return it; on timeout say what did not happen."""
        deadline = time.monotonic() + timeout
        while True:
            found = condition()
            if found:
                return found
            if time.monotonic() > deadline:
                self.check_running()
                raise TimeoutError(f"{what}: not within {timeout:.0f} s")
            time.sleep(interval)

    def wait_for_service_account(self, namespace: str, name: str = "default", timeout: float = 30.0) -> None:
        """The controller-manager gives each namespace its `default` ServiceAccount soon after it is made; pods need it."""
        self.wait_for(f"ServiceAccount {namespace}/{name}", lambda: self.client.get("v1", "ServiceAccount", name, namespace) is not None, timeout)

    def create_nodes(self, nodes: Sequence[Mapping[str, Any]], timeout: float = 60.0, wait: bool = True) -> None:
        """Create nodes (kwok plays their kubelets) and, unless `wait` is false, wait until every one is
        Ready and the node lifecycle controller has lifted its not-ready taint."""
        for node in nodes:
            self.client.create(node)
        if wait:
            self.wait_for_nodes([str(n["metadata"]["name"]) for n in nodes], timeout)

    def wait_for_nodes(self, names: Sequence[str], timeout: float = 60.0) -> None:
        """Wait until the named nodes are Ready and untainted by the node lifecycle controller."""
        self.wait_for(f"nodes {', '.join(names)} Ready", lambda: all(node_ready(self.client.get("v1", "Node", n)) for n in names), timeout)

    def pending_reason(self, pod: Mapping[str, Any]) -> str:
        """Why a pod is not scheduled, in the scheduler's words (its last FailedScheduling event), or its condition."""
        events = [e for e in self.client.events_for({"kind": "Pod", **pod}) if e.get("reason") == "FailedScheduling"]
        if events:
            return str(events[-1].get("message", ""))
        for condition in (pod.get("status") or {}).get("conditions") or []:
            if condition.get("type") == "PodScheduled" and condition.get("status") != "True":
                return f"{condition.get('reason')}: {condition.get('message')}"
        return "not scheduled yet (no FailedScheduling event)"

    def wait_for_pods_settled(self, namespace: str | None = None, timeout: float = 60.0, selector: str | None = None) -> list[dict[str, Any]]:
        """Wait until every pod is scheduled or the scheduler has said why it cannot be; return the pods."""

        def settled() -> list[dict[str, Any]] | None:
            pods = self.client.list("v1", "Pod", namespace, **({"label_selector": selector} if selector else {}))
            for pod in pods:
                if pod["spec"].get("nodeName"):
                    continue
                conditions = {c["type"]: c for c in (pod.get("status") or {}).get("conditions") or []}
                if conditions.get("PodScheduled", {}).get("reason") != "Unschedulable":
                    return None
            return pods

        pods: list[dict[str, Any]] = self.wait_for(f"pods in {namespace or 'every namespace'} scheduled or unschedulable", settled, timeout)
        return pods


def _wait_all(checks: Sequence[Check], timeout: float) -> None:
    """Poll every check until each is ready; a component that exits, or is not ready in time, is a ControlPlaneError."""
    deadline = time.monotonic() + timeout
    pending = list(checks)
    last: dict[int, str] = {}
    while pending:
        for check in list(pending):
            process, what, ready = check
            code = process.popen.poll()
            if code is not None:
                raise ControlPlaneError(
                    f"{process.name} exited with status {code} before {what}.\n--- {process.log}, last 30 lines ---\n{_tail(process.log)}"
                )
            try:
                if ready():
                    pending.remove(check)
            except (OSError, http.client.HTTPException, ApiError, ValueError) as e:
                last[id(check)] = str(e)
        if not pending:
            return
        if time.monotonic() > deadline:
            process, what, _ = pending[0]
            why = last.get(id(pending[0]), "")
            raise ControlPlaneError(
                f"{process.name} did not become ready ({what}) within {timeout:.0f} s"
                f"{': ' + why if why else ''}.\n--- {process.log}, last 30 lines ---\n{_tail(process.log)}"
            )
        time.sleep(0.2)


def start_all(clusters: Sequence[Cluster]) -> None:
    """Start several control planes side by side: each step of every cluster (etcd; the API server;
    the rest), then wait for all of them. On any failure every one is stopped and the error raised."""
    for attempt in (1, 2):
        _LIVE.extend(clusters)
        try:
            steps = [c._steps() for c in clusters]
            while steps:
                waits: list[Check] = []
                for step in list(steps):
                    try:
                        waits += next(step)
                    except StopIteration:
                        steps.remove(step)
                _wait_all(waits, max(c.timeout for c in clusters))
            return
        except ControlPlaneError as e:
            for cluster in clusters:
                cluster.stop()
            # A free port another process took between our look and the component's bind: once more, on others.
            if attempt == 2 or "address already in use" not in str(e):
                raise
            for cluster in clusters:
                shutil.rmtree(cluster.root / "etcd", ignore_errors=True)
                if cluster.auto_port:
                    cluster.port = free_port(cluster.address)
        except BaseException:
            for cluster in clusters:
                cluster.stop()
            raise


def node_ready(node: Mapping[str, Any] | None) -> bool:
    if node is None:
        return False
    conditions = {c["type"]: c["status"] for c in (node.get("status") or {}).get("conditions") or []}
    taints = {t["key"] for t in (node.get("spec") or {}).get("taints") or []}
    return conditions.get("Ready") == "True" and not taints & {"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"}


def _first_host(cidr: str) -> str:
    import ipaddress

    return str(next(ipaddress.ip_network(cidr).hosts()))


# --- Applying as pulumi-kubernetes does -------------------------------------------------------------------


@dataclass(frozen=True)
class ProviderOptions:
    """The pulumi-kubernetes Provider settings that change how it writes objects (its inputs, camelCase)."""

    server_side_apply: bool = True  # enableServerSideApply: on by default since v4
    upsert_existing_objects: bool = False  # upsertExistingObjects
    enable_patch_force: bool = False  # enablePatchForce
    enable_config_map_mutable: bool = False  # enableConfigMapMutable
    enable_secret_mutable: bool = False  # enableSecretMutable

    @classmethod
    def from_inputs(cls, inputs: Mapping[str, Any]) -> ProviderOptions:
        def flag(key: str, default: bool) -> bool:
            value = inputs.get(key)
            return default if value is None else str(value).lower() == "true"

        return cls(
            server_side_apply=flag("enableServerSideApply", True),
            upsert_existing_objects=flag("upsertExistingObjects", False),
            enable_patch_force=flag("enablePatchForce", False),
            enable_config_map_mutable=flag("enableConfigMapMutable", False),
            enable_secret_mutable=flag("enableSecretMutable", False),
        )


CSA_MANAGER = "pulumi-kubernetes"
# The field managers pulumi-kubernetes takes ownership from before an update (await.fixCSAFieldManagers).
TAKEN_OVER = (("kubectl", "Apply"), ("kubectl", "Update"), ("before-first-apply", "Update"),
              ("pulumi-kubernetes", "Update"), ("pulumi-kubernetes.exe", "Update"), ("pulumi-resource-kubernetes", "Update"))  # fmt: skip


def field_manager(seed: str) -> str:
    """The provider's SSA field manager for one resource: `pulumi-kubernetes-` and 8 hex digits
    (resource.NewUniqueName from the resource's random seed; here a hash of its URN, so stable)."""
    return "pulumi-kubernetes-" + hashlib.sha256(seed.encode()).hexdigest()[:8]


def is_patch_kind(kind: str) -> bool:
    """pulumi-kubernetes's `<Kind>Patch` resources (kinds.IsPatchResource): they patch an object someone else made."""
    return kind.endswith("Patch") and len(kind) > len("Patch")


def normalized(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What the provider's Check sends (normalizeInputs): a Secret's stringData folded into base64 data, read-only metadata dropped."""
    out = copy.deepcopy(dict(obj))
    if out.get("kind") == "Secret" and out.get("apiVersion") == "v1" and out.get("stringData"):
        data = dict(out.get("data") or {})
        data.update({k: base64.b64encode(str(v).encode()).decode() for k, v in out.pop("stringData").items()})
        out["data"] = data
    for key in ("creationTimestamp", "deletionGracePeriodSeconds", "deletionTimestamp", "generation", "managedFields", "resourceVersion", "uid"):
        (out.get("metadata") or {}).pop(key, None)
    return out


def pulumi_create(client: KubeClient, obj: Mapping[str, Any], manager: str, options: ProviderOptions = ProviderOptions()) -> dict[str, Any]:
    """await.Creation: server-side apply only for an upsert provider or a Patch resource; otherwise a
    create (POST) with the client-side manager `pulumi-kubernetes`, which the first update takes over."""
    body = normalized(obj)
    kind = str(body["kind"])
    if is_patch_kind(kind):
        body["kind"] = kind.removesuffix("Patch")
    if options.server_side_apply and (options.upsert_existing_objects or is_patch_kind(kind)):
        force = _force(body, options)
        return client.apply(body, field_manager=manager, force=force, field_validation="Warn")
    return client.create(body, field_manager=CSA_MANAGER)


def pulumi_replacement(old: Mapping[str, Any], new: Mapping[str, Any], options: ProviderOptions = ProviderOptions()) -> tuple[list[str], bool]:
    """pulumi-kubernetes 4.32.0's Diff of a ConfigMap or a Secret whose inputs go from `old` to `new`: (the changed
    properties that force a replacement, whether that replacement deletes the old object before creating the new).

    Diff compares the inputs against the properties forceNewProperties lists (provider/pkg/provider/provider.go:1559-
    1566): `.metadata.name` and `.metadata.namespace` of every kind (diff.go:207-212); a Secret's `.type`, `.stringData`
    and `.data` unless enableSecretMutable is on and the new Secret is not `immutable`; a ConfigMap's `.binaryData` and
    `.data` unless enableConfigMapMutable is on and the new ConfigMap is not `immutable` (diff.go:23-37, clients.go:334-
    337). A replacement deletes first when the new object keeps the old one's name and namespace
    (provider.go:1645-1658): the engine then deletes it, and creates it again only once the delete is done. Other kinds'
    own lists (a Deployment's selector, ...) are not modelled here."""
    kind = str(new.get("kind"))
    if new.get("apiVersion") != "v1" or kind not in ("ConfigMap", "Secret"):
        raise NotImplementedError(f"only a ConfigMap's and a Secret's replacement is modelled, not a {kind}'s")
    fields: tuple[str, ...] = (".type", ".stringData", ".data") if kind == "Secret" else (".binaryData", ".data")
    mutable = options.enable_secret_mutable if kind == "Secret" else options.enable_config_map_mutable
    forced = [".metadata.name", ".metadata.namespace"]
    if not mutable or new.get("immutable") is True:
        forced += fields

    def at(obj: Mapping[str, Any], path: str) -> Any:
        value: Any = obj
        for key in path.strip(".").split("."):
            value = value.get(key) if isinstance(value, Mapping) else None
        return value

    replaces = [path for path in forced if at(old, path) != at(new, path)]
    old_meta, new_meta = old.get("metadata") or {}, new.get("metadata") or {}
    same_name = (old_meta.get("name"), old_meta.get("namespace")) == (new_meta.get("name"), new_meta.get("namespace"))
    return replaces, bool(replaces) and same_name


def _force(obj: Mapping[str, Any], options: ProviderOptions) -> bool:
    # await.patchForce, outside a preview: the `pulumi.com/patchForce` annotation or enablePatchForce.
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get("pulumi.com/patchForce", "")).lower() == "true" or options.enable_patch_force


def pulumi_update(
    client: KubeClient, obj: Mapping[str, Any], manager: str, options: ProviderOptions = ProviderOptions()
) -> tuple[dict[str, Any], dict[str, Any]]:
    """await.ssaUpdate: take over the client-side managers' fields (fixCSAFieldManagers), then apply.

    Returns (the live object before the update, the object the apply returned), so a caller can
    tell what the update changed.
    """
    body = normalized(obj)
    kind = str(body["kind"])
    if is_patch_kind(kind):
        body["kind"] = kind.removesuffix("Patch")
    live = client.get(str(body["apiVersion"]), str(body["kind"]), str(body["metadata"]["name"]), (body.get("metadata") or {}).get("namespace"))
    if live is None:
        raise ApiError(404, "NotFound", "the object to update is gone", describe(body))
    current = live
    if not is_patch_kind(kind):
        replaced = take_over((live.get("metadata") or {}).get("managedFields") or [], manager)
        if replaced is not None:
            current = client.json_patch(body, [{"op": "replace", "path": "/metadata/managedFields", "value": replaced}])
    force = _force(body, options) or not (current.get("metadata") or {}).get("managedFields")
    return live, client.apply(body, field_manager=manager, force=force)


def take_over(entries: Sequence[Mapping[str, Any]], manager: str) -> list[dict[str, Any]] | None:
    """fluxcd/pkg/ssa's PatchReplaceFieldsManagers: the managed-fields list with every taken-over
    entry renamed to (merged into) `manager`'s Apply entry; None when there is nothing to take over."""
    previous = next((dict(e) for e in entries if e.get("manager") == manager and e.get("operation") == "Apply"), None)
    kept: list[dict[str, Any]] = []
    edited = False
    for entry in entries:
        if previous is not None and entry.get("manager") == manager and entry.get("operation") == "Apply":
            continue
        if not entry.get("subresource") and any(str(entry.get("manager", "")).startswith(m) and entry.get("operation") == op for m, op in TAKEN_OVER):
            edited = True
            if previous is None:
                previous = {**dict(entry), "manager": manager, "operation": "Apply"}
            else:
                previous["fieldsV1"] = _merge_fields(previous.get("fieldsV1") or {}, entry.get("fieldsV1") or {})
            continue
        kept.append(dict(entry))
    if not edited or previous is None:
        return None
    return [*kept, previous]


def _merge_fields(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for key, value in b.items():
        out[key] = _merge_fields(out[key], value) if isinstance(out.get(key), Mapping) and isinstance(value, Mapping) else value
    return out


@contextlib.contextmanager
def running(flavor: Flavor, root: Path, **kwargs: Any) -> Iterator[Cluster]:
    """A control plane for the duration of a `with` block."""
    cluster = Cluster(flavor, root, **kwargs)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
