"""Apply what the program would, in the order the engine would, to real control planes.

`iluvatar.simulate` runs the real program under Pulumi's mocks and records every registration
with its dependencies (depends_on and every resource an input came from). This walks them per
cluster (`iluvatar.render.cluster_of`: which Kubernetes provider a resource goes through) and
writes each Kubernetes object as its writer would:

- a Kubernetes resource of the program: as pulumi-kubernetes 4.32.0 creates it
  (`tools.kube_cluster.pulumi_create`: a create with the client-side manager, or server-side apply
  for an upsert provider and for `…Patch` resources), any kind, custom resources included;
- a Helm release (`kubernetes:helm.sh/v3:Release`): the pinned chart rendered by real Helm with the
  release's values (`tools.upstream`), hooks but test hooks included, CRDs first and then Helm's
  install order, created as Helm creates them;
- a chart (`kubernetes:helm.sh/v4:Chart`): the same render without hooks (the provider disables
  them), each object then a pulumi-kubernetes resource;
- a platform Application (an Argo CD Application with inline Helm values): once everything else is
  written, the chart rendered as Argo CD renders it (its release name, namespace, the cluster's
  version and API versions) and server-side applied as Argo CD's controller does, every app's CRDs
  first (its sync retries until they exist).

The order is the engine's: a resource is written only after everything it depends on, and among
those ready the one registered last goes first, so an object that works only because the program
happens to register it after what it needs (a namespace, a CRD) fails here. A dependency on a
component is a dependency on everything under it. Other providers' resources (Talos, commands,
Cloudflare, the new gate commands) are skipped and counted.

What cannot run here stands in, each recorded in the `Report`: what an operator creates at start-up
(Cilium's CRDs, from its module at the chart's version); webhooks, which no pod can serve, are
removed right after the API server admitted them. Longhorn's and csi-driver-nfs's charts are not in
any Go module the proxy serves, so their Applications are recorded as not rendered.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import json
import os
import re
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from iluvatar.render import cluster_of
from iluvatar.simulate import Registration, SecretValue, Simulation
from plans import backup as backup_plan
from plans import gitops as gitops_plan
from stacks.model import StackConfig
from tools import gotools, upstream
from tools.kube_cluster import (
    ApiError,
    Cluster,
    KubeClient,
    ProviderOptions,
    describe,
    field_manager,
    is_patch_kind,
    normalized,
    pulumi_create,
    pulumi_update,
)
from tools.upstream import kustomize
from tools.upstream.modules import go_version

PROVIDER = "pulumi:providers:kubernetes"
RELEASE = "kubernetes:helm.sh/v3:Release"
CHART = "kubernetes:helm.sh/v4:Chart"
# Kubernetes component types whose children this walker does not expand yet: naming one is an error, never a silent skip.
# (A yaml/v2 ConfigGroup or ConfigFile also asks its cluster at preview: tests/test_preview.py keeps them out of the program.)
UNEXPANDED = (
    "kubernetes:yaml/v2:ConfigFile",
    "kubernetes:yaml/v2:ConfigGroup",
    "kubernetes:yaml:",
    "kubernetes:kustomize",
    "kubernetes:helm.sh/v3:Chart",
    "kubernetes:helm.sh/v2:",
)

# Helm v3's install order (pkg/releaseutil/kind_sorter.go, InstallOrder); other kinds go last.
HELM_INSTALL_ORDER = (
    "PriorityClass", "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange", "PodSecurityPolicy", "PodDisruptionBudget",
    "ServiceAccount", "Secret", "SecretList", "ConfigMap", "StorageClass", "PersistentVolume", "PersistentVolumeClaim",
    "CustomResourceDefinition", "ClusterRole", "ClusterRoleList", "ClusterRoleBinding", "ClusterRoleBindingList", "Role",
    "RoleList", "RoleBinding", "RoleBindingList", "Service", "DaemonSet", "Pod", "ReplicationController", "ReplicaSet",
    "Deployment", "HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob", "IngressClass", "Ingress", "APIService",
    "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
)  # fmt: skip
HELM_MANAGER = "pulumi-resource-kubernetes"  # Helm's kube client names itself after the binary it runs in: the provider's
ARGOCD_MANAGER = "argocd-controller"
WEBHOOK_KINDS = ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")
# Writes at once within one chart, and in the second pass: the engine and Helm write in parallel too.
PARALLEL = 4
# How long a write refused by a webhook the walk has removed is tried again. The API server's admission reads
# webhook configurations through an informer, so a deletion reaches it a moment later: under load, once, after the
# next write (trust-manager's "trust.cert-manager.io" called on the Bundle written just after its chart). That
# refusal is the stand-in's, not the program's; any other refusal is returned at once.
REMOVED_WEBHOOK_SECONDS = 30.0

# Subcharts no Go module serves: rendered without them, and the fact recorded.
OMITTED_SUBCHARTS: dict[str, tuple[str, ...]] = {"rook-ceph": ("ceph-csi-operator",)}
# Charts an Application may name in a Git repository (not a Helm repository): (repository, path) -> chart.
GIT_CHARTS = {
    ("https://github.com/rancher/local-path-provisioner.git", "deploy/chart/local-path-provisioner"): "local-path-provisioner",
    ("https://github.com/kubernetes-sigs/headlamp.git", "charts/headlamp"): "headlamp",
}
# Charts the platform Applications install that no Go module the proxy serves holds (docs/layers/storage.md).
UNRENDERABLE = {
    "longhorn": "Longhorn's chart is in no Go module the proxy serves (github.com/longhorn/longhorn@v1.10.1 answers 403)",
    "csi-driver-nfs": "csi-driver-nfs's chart is in no Go module the proxy serves (its v4 tags have no /v4 module path; 403)",
}
# API groups whose CRDs only an UNRENDERABLE chart installs: the program's objects of them (the netbooted roots'
# Longhorn Volume patches, components.netboot) have no CRD here; skipped and said, as their chart is.
UNSERVED_GROUPS = {"longhorn.io": "longhorn"}


def _chart_version_at(name: str, tag: str) -> str:
    """The version of the chart a Git tag holds (what Argo CD renders from it), which need not be the tag's."""
    spec = upstream.CHARTS[name]
    chart = upstream.module_dir(spec.module, tag) / spec.path / "Chart.yaml"
    return str(yaml.safe_load(chart.read_text())["version"])


def _kustomization(module: str, version: str, folder: str) -> list[dict[str, Any]]:
    """A folder's plain manifests as `kustomize build` lists them (its `resources`), from the module at the Git tag."""
    root = upstream.module_dir(module, version) / folder
    listed = yaml.safe_load((root / "kustomization.yaml").read_text())
    return [doc for name in listed["resources"] for doc in yaml.safe_load_all((root / name).read_text()) if isinstance(doc, dict)]


# Plain manifests (a kustomization at a Git tag) the platform Applications name: (repoURL, path) -> the objects at a tag.
GIT_MANIFESTS: dict[tuple[str, str], Callable[[str], list[dict[str, Any]]]] = {
    # The CSI snapshot CRDs and controller (plans.backup), from external-snapshotter's modules at the tag.
    (backup_plan.SNAPSHOTTER_REPOSITORY, backup_plan.SNAPSHOT_CRDS_PATH): lambda tag: _kustomization(
        "github.com/kubernetes-csi/external-snapshotter/client/v8", tag, "config/crd"
    ),
    (backup_plan.SNAPSHOTTER_REPOSITORY, backup_plan.SNAPSHOT_CONTROLLER_PATH): lambda tag: _kustomization(
        "github.com/kubernetes-csi/external-snapshotter/v8", tag, backup_plan.SNAPSHOT_CONTROLLER_PATH
    ),
}


def talos_stand_ins(stack: StackConfig) -> list[dict[str, Any]]:
    """What Talos itself writes to Arda's API server: the `talos.dev` ServiceAccount CRD, when the control
    planes' config allows Talos API access from Kubernetes (talos-backup, plans.backup). Talos builds it in Go
    (k8stemplates.TalosServiceAccountCRDTemplate, in Talos's own module, not the machinery module the tests
    fetch): its names, scope and schema, transcribed."""
    if not backup_plan.talos_features(stack, True):
        return []
    schema = {
        "type": "object",
        "properties": {
            "spec": {"type": "object", "properties": {"roles": {"type": "array", "items": {"type": "string"}}}},
            "status": {"type": "object", "properties": {"failureReason": {"type": "string"}}},
        },
    }
    return [
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "serviceaccounts.talos.dev"},
            "spec": {
                "conversion": {"strategy": "None"},
                "group": "talos.dev",
                "names": {
                    "kind": "ServiceAccount",
                    "listKind": "ServiceAccountList",
                    "plural": "serviceaccounts",
                    "singular": "serviceaccount",
                    "shortNames": ["tsa"],
                },
                "scope": "Namespaced",
                "versions": [{"name": "v1alpha1", "served": True, "storage": True, "schema": {"openAPIV3Schema": schema}}],
            },
        }
    ]


def _operator_crds(chart: str, version: str) -> list[dict[str, Any]]:
    """What an operator creates at start-up, from its own module at the chart's version."""
    return upstream.crds(chart, version)


# Charts whose operator creates objects when it starts (not the chart): chart -> the objects.
OPERATOR_STAND_INS: dict[str, Callable[[str], list[dict[str, Any]]]] = {
    # cilium-operator registers its CRDs itself (pkg/k8s/apis/cilium.io/client), compiled in at its version.
    "cilium": lambda version: _operator_crds("cilium", version),
}


@dataclass
class Written:
    """One object written to a cluster: how, by whom, and what the server returned."""

    cluster: str
    source: str  # the registration (or chart, or Application) it came from
    writer: str  # pulumi, helm, chart, argocd, stand-in
    obj: dict[str, Any]
    manager: str
    options: ProviderOptions
    live: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class Report:
    """What happened: every object written, what stood in, what was removed or skipped, and each refusal."""

    written: list[Written] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    stand_ins: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    not_rendered: list[str] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    renders: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # "cluster/source" -> the objects rendered

    def objects(self, cluster: str) -> list[Written]:
        return [w for w in self.written if w.cluster == cluster]


# --- The engine's order --------------------------------------------------------------------------------


def _descendants(sim: Simulation) -> dict[str, list[str]]:
    children: dict[str, list[str]] = {}
    for reg in sim.registrations:
        children.setdefault(reg.parent, []).append(reg.urn)
    return children


def engine_order(sim: Simulation) -> list[Registration]:
    """Every registration after all it depends on; among those ready, the latest registered first.

    A dependency on a component (not a custom resource) is a dependency on every resource under it,
    as the engine waits for a component's children; a helm.v4 Chart is such a component, and its
    objects are written at its place.
    """
    by_urn = {r.urn: r for r in sim.registrations}
    index = {r.urn: i for i, r in enumerate(sim.registrations)}
    children = _descendants(sim)

    def expand(urn: str) -> set[str]:
        reg = by_urn.get(urn)
        if reg is None:
            return set()
        if reg.custom or reg.type == CHART:
            return {urn} | (set().union(*(expand(c) for c in children.get(urn, []))) if reg.type == CHART else set())
        return set().union(*(expand(c) for c in children.get(urn, []))) if children.get(urn) else set()

    needs = {r.urn: set().union(*(expand(d) for d in r.dependencies)) - {r.urn} if r.dependencies else set() for r in sim.registrations}
    done: set[str] = set()
    order: list[Registration] = []
    pending = set(by_urn)
    while pending:
        ready = [u for u in pending if needs[u] <= done]
        if not ready:
            raise ValueError(f"a dependency cycle among {sorted(pending)[:5]}")
        urn = max(ready, key=index.__getitem__)
        pending.discard(urn)
        done.add(urn)
        order.append(by_urn[urn])
    return order


def selected(sim: Simulation, only: Callable[[Registration], bool] | None) -> list[Registration]:
    """The engine's order of the registrations `only` selects and everything they depend on (all, without `only`)."""
    order = engine_order(sim)
    if only is None:
        return order
    by_urn = {r.urn: r for r in order}
    children = _descendants(sim)
    wanted = {r.urn for r in order if only(r)}
    pending = list(wanted)
    while pending:
        reg = by_urn[pending.pop()]
        needs = [*reg.dependencies, reg.provider.rsplit("::", 1)[0], reg.providers.get("kubernetes", "").rsplit("::", 1)[0]]
        if not reg.custom:  # a component: everything under it
            needs += children.get(reg.urn, [])
        for dep in needs:
            if dep in by_urn and dep not in wanted:
                wanted.add(dep)
                pending.append(dep)
    return [r for r in order if r.urn in wanted]


def slice_clusters(sim: Simulation, only: Callable[[Registration], bool]) -> list[str]:
    """The clusters of the Kubernetes objects `only` selects itself (not of what they depend on), in name order."""
    return sorted({cluster_of(r) for r in sim.registrations if only(r) and r.type.startswith("kubernetes:") and r.type != PROVIDER})


# --- Objects from registrations ---------------------------------------------------------------------------


def plain(value: Any) -> Any:
    """Inputs as the provider receives them: secrets unwrapped (the mocks' placeholders stay)."""
    if isinstance(value, SecretValue):
        return plain(value.value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def _base64ish(value: Any) -> Any:
    """A mocked secret (`[secret]`) where base64 belongs, made base64: the real one is base64 by then."""
    if not isinstance(value, str):
        return value
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return base64.b64encode(value.encode()).decode() if value.startswith("[secret]") else value
    return value


def registration_object(reg: Registration) -> dict[str, Any]:
    """The Kubernetes object a `kubernetes:<group/version>:<Kind>` registration asks for."""
    _, api, kind = reg.type.split(":")
    inputs = plain(reg.inputs)
    obj: dict[str, Any] = {"apiVersion": api.removeprefix("core/"), "kind": kind}
    obj.update({k: v for k, v in inputs.items() if k not in ("apiVersion", "kind")})
    obj.setdefault("metadata", {})
    if not obj["metadata"].get("name"):
        # pulumi-kubernetes autonames: the resource's name and a random suffix (stable here).
        obj["metadata"]["name"] = f"{reg.name}-{hashlib.sha256(reg.urn.encode()).hexdigest()[:8]}"
    if kind == "Secret":
        for key in ("data",):
            if isinstance(obj.get(key), dict):
                obj[key] = {k: _base64ish(v) for k, v in obj[key].items()}
    return obj


def helm_sorted(objects: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    order = {k: i for i, k in enumerate(HELM_INSTALL_ORDER)}
    return sorted(objects, key=lambda o: order.get(str(o.get("kind")), len(order)))


def _flag(value: Any) -> bool:
    """A boolean input as the provider reads it (the engine may hand it over as "true")."""
    return value is True or str(value).lower() == "true"


def _hook(obj: Mapping[str, Any]) -> str:
    return str(((obj.get("metadata") or {}).get("annotations") or {}).get("helm.sh/hook", ""))


@dataclass(frozen=True)
class ChartRef:
    """A chart to render: which pinned chart, at which version, with what, as which release."""

    chart: str
    version: str
    values: Mapping[str, Any]
    release: str
    namespace: str
    kube_version: str
    include_crds: bool = True


def render(ref: ChartRef, api_versions: Sequence[str]) -> list[dict[str, Any]]:
    """Real Helm on the pinned chart, kept as JSON in $ILUVATAR_CACHE/kube/renders/ by everything that
    decides the render (the prepared chart's folder names its module's sum), since reading Helm's YAML
    back costs more than the render."""
    chart_dir = upstream.chart(ref.chart, ref.version, omit=OMITTED_SUBCHARTS.get(ref.chart, ()))
    # The Helm binary's path names its own build (its sources' hash, iluvatar.golang): a new Helm renders anew.
    inputs = [
        str(gotools.build("helm")),
        str(chart_dir),
        ref.values,
        ref.release,
        ref.namespace,
        ref.kube_version,
        ref.include_crds,
        sorted(api_versions),
    ]
    key = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:24]
    cached = gotools.cache_dir() / "kube" / "renders" / f"{ref.chart}-{key}.json"
    if cached.exists():
        found: list[dict[str, Any]] = json.loads(cached.read_text())
        return found
    objects = upstream.helm_template(
        chart_dir,
        ref.values,
        release=ref.release,
        namespace=ref.namespace,
        kube_version=ref.kube_version,
        api_versions=api_versions,
        include_crds=ref.include_crds,
    )
    cached.parent.mkdir(parents=True, exist_ok=True)
    staging = cached.with_name(f".{cached.name}.{os.getpid()}")
    staging.write_text(json.dumps(objects))
    staging.rename(cached)
    return objects


# What tools.upstream.kustomize does before kustomize runs (the image edit, the patches appended) is part of the key.
_KUSTOMIZE_CODE = hashlib.sha256(Path(kustomize.__file__).read_bytes()).hexdigest()[:12]


def kustomize_render(
    repo_url: str, revision: str, path: str, options: Mapping[str, Any], build_options: str, kube_version: str
) -> list[dict[str, Any]]:
    """The pinned kustomize's build of an Application's kustomize source (tools.upstream.kustomize.build, as Argo CD's
    repo-server builds it), kept as JSON in $ILUVATAR_CACHE/kube/renders/ by everything that decides the build, as
    `render` keeps Helm's: the kustomize binary's path (it names its own build), the module folder at the revision (an
    immutable Go module), the path, the Application's kustomize options, the build options and the Kubernetes version,
    and with `--enable-helm` the Helm a kustomization's helmCharts would run, and the code that edits the checkout. A deployment with monitoring built
    kube-prometheus anew each time (a copy of its module, kustomize, and its YAML read back: 1.6 s of CPU, 16 ms kept)."""
    if repo_url not in kustomize.SOURCES:  # no pinned module: build says so
        return kustomize.build(repo_url, revision, path, options, build_options=build_options, kube_version=kube_version)
    inputs = [
        _KUSTOMIZE_CODE,
        str(gotools.build("kustomize")),
        str(upstream.module_dir(kustomize.SOURCES[repo_url].module, go_version(revision))),
        revision,
        path,
        options,
        build_options,
        kube_version,
        (shutil.which("helm") or "") if "--enable-helm" in build_options else "",
    ]
    key = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:24]
    cached = gotools.cache_dir() / "kube" / "renders" / f"kustomize-{key}.json"
    if cached.exists():
        found: list[dict[str, Any]] = json.loads(cached.read_text())
        return found
    objects = kustomize.build(repo_url, revision, path, options, build_options=build_options, kube_version=kube_version)
    cached.parent.mkdir(parents=True, exist_ok=True)
    staging = cached.with_name(f".{cached.name}.{os.getpid()}")
    staging.write_text(json.dumps(objects))
    staging.rename(cached)
    return objects


# apimachinery's ParseGeneric (k8s.io/apimachinery v0.34.1 pkg/util/version/version.go:40, versionMatchRE): the
# numeric part of a version, whatever follows it.
_GENERIC_VERSION = re.compile(r"^\s*v?([0-9]+(?:\.[0-9]+)*)(.*)$", re.S)


def generic_version(version: str) -> str:
    """A Kubernetes version as Argo CD passes it to Helm and kustomize (`v1.35.8+k3s1` -> `1.35.8`): argo-cd v3.5.2
    reposerver/repository/repository.go:1247-1257, parseKubeVersion, is apimachinery's ParseGeneric then String,
    which keeps only the numbers (version.go:45-70: a generic version has no pre-release or build metadata)."""
    found = _GENERIC_VERSION.match(version)
    if found is None or "." not in found.group(1):
        raise ValueError(f"could not parse kubernetes version {version!r}")
    return ".".join(str(int(part)) for part in found.group(1).split("."))


def chart_name(chart: str) -> str:
    """A Release's or Chart's `chart` as the pinned chart's name (`oci://docker.io/envoyproxy/gateway-helm` -> gateway-helm)."""
    return chart.rstrip("/").rsplit("/", 1)[-1]


# --- The walk -----------------------------------------------------------------------------------------------


@dataclass
class Walker:
    """Writes a simulation's objects into one control plane per cluster and records everything in `report`."""

    sim: Simulation
    stack: StackConfig
    clusters: Mapping[str, Cluster]
    report: Report = field(default_factory=Report)
    # For the deliberate breaks: a function that may change any object before it is written (both ups),
    # and the registrations to write (with everything they depend on); None: all of them.
    mutate: Callable[[str, dict[str, Any]], dict[str, Any]] = lambda source, obj: obj
    only: Callable[[Registration], bool] | None = None

    def __post_init__(self) -> None:
        self.providers = {r.urn: ProviderOptions.from_inputs(plain(r.inputs)) for r in self.sim.registrations if r.type == PROVIDER}
        self._batching = False
        self._removed_webhooks: dict[str, set[str]] = {}  # cluster: the names of the webhooks the walk removed
        self._versions: dict[str, str] = {}  # cluster: the version its API server reports

    # --- helpers ---

    def _options(self, reg: Registration) -> ProviderOptions:
        ref = reg.provider or reg.providers.get("kubernetes", "")
        return self.providers.get(ref.rsplit("::", 1)[0], ProviderOptions())

    def kube_version(self, cluster: str) -> str:
        """The cluster's version as pulumi-kubernetes's Helm takes it: the API server's own, from discovery
        (pulumi-kubernetes v4.32.0 provider/pkg/provider/helm/v4/chart.go:319-334, setKubeVersionAndAPIVersions;
        a v3 Release's Helm install asks discovery the same), not what the stack says it runs."""
        if cluster not in self._versions:
            self._versions[cluster] = self.clusters[cluster].client.server_version()
        return self._versions[cluster]

    def argocd_kube_version(self, cluster: str) -> str:
        """The cluster's version as Argo CD hands it to Helm and kustomize: the server's, through parseKubeVersion."""
        return generic_version(self.kube_version(cluster))

    def _namespaced(self, client: KubeClient, obj: Mapping[str, Any]) -> bool:
        try:
            return client.resource(str(obj["apiVersion"]), str(obj["kind"])).namespaced
        except ApiError:
            return True  # a kind the server does not know yet: writing it fails and says so

    def _refuse(self, cluster: str, source: str, writer: str, obj: Mapping[str, Any], error: ApiError) -> None:
        self.report.refusals.append(f"{cluster}: {describe(obj)} ({writer}, {source}) refused: HTTP {error.status} {error.reason}: {error.message}")

    def _attempt(
        self, cluster: str, source: str, writer: str, obj: dict[str, Any], manager: str, options: ProviderOptions, namespace: str | None = None
    ) -> tuple[Written, ApiError | None]:
        """Write one object as its writer would (a chart's namespaced object into the release's
        namespace when it names none); safe to call from several threads at once."""
        client = self.clusters[cluster].client
        meta = obj.setdefault("metadata", {})
        if namespace and not meta.get("namespace") and self._namespaced(client, obj):
            meta["namespace"] = namespace
        obj = self.mutate(source, obj)
        written = Written(cluster, source, writer, obj, manager, options)
        deadline = time.monotonic() + REMOVED_WEBHOOK_SECONDS
        while True:
            try:
                if writer in ("pulumi", "chart"):
                    written.live = pulumi_create(client, obj, manager, options)
                elif writer == "argocd":
                    written.live = client.apply(obj, field_manager=manager, force=False)
                else:
                    written.live = client.create(obj, field_manager=manager)
            except ApiError as e:
                if self._called_removed_webhook(cluster, e) and time.monotonic() < deadline:
                    time.sleep(0.2)
                    continue
                return written, e
            written.warnings = list(client.warnings)
            return written, None

    def _called_removed_webhook(self, cluster: str, error: ApiError) -> bool:
        """The API server refused a write by calling a webhook the walk has removed: its admission has not seen the removal yet."""
        return any(f'failed calling webhook "{name}"' in error.message for name in self._removed_webhooks.get(cluster, ()))

    def _record(self, written: Written, error: ApiError | None) -> Written | None:
        """Record a write (or its refusal), then do what must follow it: a CRD served, a webhook removed."""
        if error is not None:
            self._refuse(written.cluster, written.source, written.writer, written.obj, error)
            return None
        self.report.written.append(written)
        kind = str(written.obj.get("kind"))
        if kind == "CustomResourceDefinition" and not self._batching:
            self._served(written.cluster, [written.obj])
        elif kind in WEBHOOK_KINDS:
            self._remove_webhook(written.cluster, written)
        return written

    def _write(
        self, cluster: str, source: str, writer: str, obj: dict[str, Any], manager: str, options: ProviderOptions, namespace: str | None = None
    ) -> Written | None:
        """Write one object and record it (or the refusal)."""
        return self._record(*self._attempt(cluster, source, writer, obj, manager, options, namespace))

    def _write_all(
        self,
        cluster: str,
        source: str,
        writer: str,
        objects: Sequence[dict[str, Any]],
        manager: Callable[[dict[str, Any]], str],
        options: ProviderOptions,
        namespace: str | None = None,
    ) -> list[Written]:
        """Write a chart's objects whose CRDs are served: namespaces first, then the rest several at
        once (as Helm's and the engine's parallel writes are), webhooks last; recorded in order."""
        first = [o for o in objects if o.get("kind") == "Namespace"]
        last = [o for o in objects if o.get("kind") in WEBHOOK_KINDS]  # written alone: removed before anything else meets them
        rest = [o for o in objects if o not in first and o not in last]
        found = [self._write(cluster, source, writer, o, manager(o), options, namespace) for o in first]
        with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
            results = list(pool.map(lambda o: self._attempt(cluster, source, writer, o, manager(o), options, namespace), rest))
        found += [self._record(written, error) for written, error in results]
        found += [self._write(cluster, source, writer, o, manager(o), options, namespace) for o in last]
        return [w for w in found if w is not None]

    def _served(self, cluster: str, crds: Sequence[Mapping[str, Any]]) -> None:
        """Wait until the API server serves each CRD's kind (Established: it is in discovery), as Helm
        waits for its CRDs and as the provider's retries of a kind it does not know yet end up doing."""
        target = self.clusters[cluster]
        wanted = {
            (f"{c['spec']['group']}/{v['name']}", c["spec"]["names"]["kind"]) for c in crds for v in c["spec"]["versions"] if v.get("served", True)
        }

        def served() -> bool:
            for api_version, kind in sorted(wanted):
                target.client.forget(api_version)
                try:
                    target.client.resource(api_version, kind)
                except ApiError:
                    return False
                wanted.discard((api_version, kind))
            return True

        target.wait_for(f"{cluster}: the kinds of {len(crds)} CRDs served", served, timeout=90, interval=0.1)

    def _remove_webhook(self, cluster: str, written: Written) -> None:
        obj = written.obj
        services = sorted(
            {
                f"{w['clientConfig']['service']['namespace']}/{w['clientConfig']['service']['name']}"
                for w in obj.get("webhooks") or []
                if "service" in w.get("clientConfig", {})
            }
        )
        self._removed_webhooks.setdefault(cluster, set()).update(str(w["name"]) for w in obj.get("webhooks") or [])
        self.clusters[cluster].client.delete(obj)
        self.report.removed.append(
            f"{cluster}: {describe(obj)} ({written.source}) admitted, then removed: no pod serves {', '.join(services) or 'its URL'} here"
        )

    # --- steps ---

    def walk(self) -> Report:
        """The first `pulumi up`: every registration in the engine's order, then the platform Applications' syncs."""
        talos = talos_stand_ins(self.stack)
        own = None if self.only is None else set(slice_clusters(self.sim, self.only))
        if talos and "arda" in self.clusters:
            # Talos writes it once the API server is up, before anything of the program's reaches the cluster.
            self._crds_first("arda", "Talos", "stand-in", talos, lambda o: "talos", ProviderOptions())
            self.report.stand_ins.append("arda: Talos: the talos.dev ServiceAccount CRD its controller writes when kubernetesTalosAPIAccess is on")
        for reg in selected(self.sim, self.only):
            if reg.type == PROVIDER or not reg.type.startswith("kubernetes:"):
                if reg.type != PROVIDER:
                    self.report.skipped[reg.type] += 1
                continue
            if reg.type.startswith(UNEXPANDED):
                raise NotImplementedError(f"{reg.type} ({reg.name}): a Kubernetes component this walker does not expand yet (tools/kube_program.py)")
            cluster = cluster_of(reg)
            if own is not None and cluster not in own and cluster not in self.clusters:
                # A slice's dependency in another cluster (an Arda object hangs on the Ainur that netboots Arda):
                # another API server admits it, not the one the break is about.
                self.report.skipped[f"{cluster}: {reg.type}"] += 1
                continue
            if cluster not in self.clusters:
                raise KeyError(f"{reg.name} goes to cluster {cluster!r}, which has no control plane here")
            group = reg.type.split(":")[1].split("/")[0]
            if group in UNSERVED_GROUPS:
                self.report.not_rendered.append(f"{cluster}: {reg.type} ({reg.name}): {UNRENDERABLE[UNSERVED_GROUPS[group]]}")
                continue
            if reg.type == RELEASE:
                self._release(cluster, reg)
            elif reg.type == CHART:
                self._chart(cluster, reg)
            elif reg.custom:
                self._write(cluster, reg.name, "pulumi", registration_object(reg), field_manager(reg.urn), self._options(reg))
        if self.only is None:  # a slice may hold an Application without the one installing its CRDs
            for cluster in self.clusters:
                self._sync_applications(cluster)
        return self.report

    def _chart_ref(self, cluster: str, reg: Registration, include_crds: bool) -> ChartRef:
        inputs = plain(reg.inputs)
        return ChartRef(
            chart=chart_name(str(inputs["chart"])),
            version=str(inputs.get("version") or ""),
            values=inputs.get("values") or {},
            release=str(inputs.get("name") or reg.name),
            namespace=str(inputs.get("namespace") or "default"),
            kube_version=self.kube_version(cluster),
            include_crds=include_crds,
        )

    def _rendered(self, cluster: str, source: str, ref: ChartRef, hooks: bool) -> list[dict[str, Any]]:
        client = self.clusters[cluster].client
        objects = [o for o in render(ref, client.api_versions()) if hooks or not _hook(o)]
        objects = [o for o in objects if "test" not in _hook(o).split(",")]  # test hooks never run on install
        self.report.renders[f"{cluster}/{source}"] = objects
        return objects

    def _crds_first(
        self,
        cluster: str,
        source: str,
        writer: str,
        objects: list[dict[str, Any]],
        manager: Callable[[dict[str, Any]], str],
        options: ProviderOptions,
    ) -> list[dict[str, Any]]:
        """Write the CRDs, wait until their kinds are served, and return the rest."""
        crds = [o for o in objects if o.get("kind") == "CustomResourceDefinition"]
        self._batching = True
        try:
            written = self._write_all(cluster, source, writer, crds, manager, options)
        finally:
            self._batching = False
        if written:
            self._served(cluster, [w.obj for w in written])
        return [o for o in objects if o.get("kind") != "CustomResourceDefinition"]

    def _release(self, cluster: str, reg: Registration) -> None:
        inputs = plain(reg.inputs)
        ref = self._chart_ref(cluster, reg, include_crds=not _flag(inputs.get("skipCrds")))
        objects = self._rendered(cluster, reg.name, ref, hooks=not _flag(inputs.get("disableWebhooks")))
        options = self._options(reg)
        if _flag(inputs.get("createNamespace")):
            self._write(
                cluster, reg.name, "helm", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ref.namespace}}, HELM_MANAGER, options
            )
        rest = self._crds_first(cluster, reg.name, "helm", objects, lambda o: HELM_MANAGER, options)
        pre = [o for o in rest if "pre-install" in _hook(o)]
        main = [o for o in rest if not _hook(o)]
        post = [o for o in rest if _hook(o) and "pre-install" not in _hook(o)]
        weight = lambda o: int(((o.get("metadata") or {}).get("annotations") or {}).get("helm.sh/hook-weight", "0"))  # noqa: E731
        for obj in sorted(pre, key=weight):
            self._write(cluster, reg.name, "helm", obj, HELM_MANAGER, options, ref.namespace)
        self._write_all(cluster, reg.name, "helm", helm_sorted(main), lambda o: HELM_MANAGER, options, ref.namespace)
        for obj in sorted(post, key=weight):
            self._write(cluster, reg.name, "helm", obj, HELM_MANAGER, options, ref.namespace)
        if ref.chart in OPERATOR_STAND_INS:
            stand_ins = OPERATOR_STAND_INS[ref.chart](ref.version)
            rest = self._crds_first(cluster, f"{ref.chart} operator", "stand-in", stand_ins, lambda o: f"{ref.chart}-operator", options)
            self._write_all(cluster, f"{ref.chart} operator", "stand-in", rest, lambda o: f"{ref.chart}-operator", options)
            self.report.stand_ins.append(
                f"{cluster}: {ref.chart}'s operator: {len(stand_ins)} objects it creates at start-up, from its module at {ref.version}"
            )

    def _chart_objects(self, cluster: str, reg: Registration) -> tuple[ChartRef, list[dict[str, Any]]]:
        inputs = plain(reg.inputs)
        ref = self._chart_ref(cluster, reg, include_crds=not _flag(inputs.get("skipCrds")))
        return ref, self._rendered(cluster, reg.name, ref, hooks=False)

    def _chart(self, cluster: str, reg: Registration) -> None:
        # helm.v4 Chart: each object a pulumi-kubernetes resource; CRDs, then namespaces, then the rest (yaml/v2's ordering).
        options = self._options(reg)
        ref, objects = self._chart_objects(cluster, reg)
        rest = self._crds_first(cluster, reg.name, "chart", objects, lambda o: field_manager(f"{reg.urn}/{describe(o)}"), options)
        self._write_all(cluster, reg.name, "chart", rest, lambda o: field_manager(f"{reg.urn}/{describe(o)}"), options, ref.namespace)

    # --- Argo CD ---

    def platform_applications(self, cluster: str) -> list[dict[str, Any]]:
        """The Applications written to `cluster` that carry their chart's values inline (what Argo CD installs for the program)."""
        return [
            w.obj
            for w in self.report.objects(cluster)
            if w.obj.get("kind") == "Application" and "valuesObject" in ((w.obj.get("spec") or {}).get("source") or {}).get("helm", {})
        ]

    def manifest_applications(self, cluster: str) -> list[dict[str, Any]]:
        """The Applications written to `cluster` that name plain manifests at a Git tag (GIT_MANIFESTS)."""
        found = []
        for w in self.report.objects(cluster):
            source = (w.obj.get("spec") or {}).get("source") or {}
            if w.obj.get("kind") == "Application" and "helm" not in source and (source.get("repoURL"), source.get("path")) in GIT_MANIFESTS:
                found.append(w.obj)
        return found

    def _application_ref(self, cluster: str, app: Mapping[str, Any]) -> ChartRef | None:
        source = app["spec"]["source"]
        name = source.get("chart") or GIT_CHARTS.get((source.get("repoURL"), source.get("path")))
        label = source.get("chart") or source.get("path")
        if name is None or name in UNRENDERABLE:
            reason = UNRENDERABLE.get(str(name or label), f"no pinned chart for {source.get('repoURL')} {label}")
            self.report.not_rendered.append(f"{cluster}: Application {app['metadata']['name']} ({label} {source.get('targetRevision')}): {reason}")
            return None
        version = str(source["targetRevision"])
        if name in GIT_CHARTS.values():
            version = _chart_version_at(str(name), version)
        return ChartRef(
            chart=str(name),
            version=version,
            values=source["helm"]["valuesObject"],
            release=str(source["helm"].get("releaseName") or app["metadata"]["name"]),
            namespace=str(app["spec"]["destination"]["namespace"]),
            kube_version=self.argocd_kube_version(cluster),
        )

    def _sync_applications(self, cluster: str) -> None:
        """What Argo CD's sync does with each platform Application: every app's CRDs first, then each app's objects."""
        renders: list[tuple[str, str, list[dict[str, Any]]]] = []
        for w in self.report.objects(cluster):
            src = (w.obj.get("spec") or {}).get("source") or {} if w.obj.get("kind") == "Application" else {}
            if "kustomize" in src:
                # kube-prometheus: built by the pinned kustomize as Argo CD builds it (kustomize.buildOptions), then synced.
                name = f"Application {w.obj['metadata']['name']}"
                objects = kustomize_render(
                    str(src["repoURL"]),
                    str(src["targetRevision"]),
                    str(src.get("path") or "."),
                    src["kustomize"],
                    gitops_plan.KUSTOMIZE_BUILD_OPTIONS,
                    self.argocd_kube_version(cluster),
                )
                self.report.renders[f"{cluster}/{name}"] = objects
                renders.append((str(w.obj["spec"]["destination"]["namespace"]), name, objects))
        for app in self.platform_applications(cluster):
            ref = self._application_ref(cluster, app)
            if ref is None:
                continue
            source = f"Application {app['metadata']['name']}"
            for chart in OMITTED_SUBCHARTS.get(ref.chart, ()):
                self.report.not_rendered.append(f"{cluster}: {source}: its subchart {chart} (no Go module serves it)")
            renders.append((ref.namespace, source, self._rendered(cluster, source, ref, hooks=True)))
        for app in self.manifest_applications(cluster):
            src = app["spec"]["source"]
            source = f"Application {app['metadata']['name']}"
            objects = GIT_MANIFESTS[src["repoURL"], src["path"]](str(src["targetRevision"]))
            self.report.renders[f"{cluster}/{source}"] = objects
            renders.append((str(app["spec"]["destination"]["namespace"]), source, objects))
        for _, source, objects in renders:
            self._crds_first(cluster, source, "argocd", objects, lambda o: ARGOCD_MANAGER, ProviderOptions())
        for namespace, source, objects in renders:
            rest = helm_sorted(o for o in objects if o.get("kind") != "CustomResourceDefinition")
            self._write_all(cluster, source, "argocd", rest, lambda o: ARGOCD_MANAGER, ProviderOptions(), namespace)

    # --- the second `pulumi up` ---

    def reapply(self) -> list[str]:
        """Write everything again as the next writer would, and say what changed (nothing may).

        The program's resources and a helm.v4 chart's objects (rendered again, as each `pulumi up`
        does) go through the provider's update: the client-side manager's fields taken over, then
        server-side apply; the object must come out as it went in, and one more apply of the same
        object must not change its resourceVersion. A platform Application's objects go through Argo
        CD's next sync (rendered again), which must not change their resourceVersion either. A Helm
        release is not touched: the engine sees its inputs unchanged and calls no upgrade.
        """
        changes: list[str] = []
        fresh: dict[str, dict[str, dict[str, Any]]] = {}
        for written in self.report.written:
            if written.writer == "chart" and written.source not in fresh:
                reg = self.sim.named()[written.source]
                ref, objects = self._chart_objects(written.cluster, reg)
                for obj in objects:
                    meta = obj.setdefault("metadata", {})
                    if not meta.get("namespace") and self._namespaced(self.clusters[written.cluster].client, obj):
                        meta["namespace"] = ref.namespace
                fresh[written.source] = {describe(o): o for o in objects}
        todo = [
            w
            for w in self.report.written
            if w.writer in ("pulumi", "chart", "argocd") and w.live is not None and w.obj.get("kind") not in WEBHOOK_KINDS
        ]
        with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
            results = list(pool.map(lambda w: self._again(w, fresh), todo))
        for written, (obj, change, error) in zip(todo, results, strict=True):
            if error is not None:
                self._refuse(written.cluster, written.source, written.writer, obj, error)
            elif change:
                changes.append(change)
        return changes

    def _again(self, written: Written, fresh: Mapping[str, Mapping[str, dict[str, Any]]]) -> tuple[dict[str, Any], str, ApiError | None]:
        """One object of the second pass: (what was written, what changed or "", the refusal if any)."""
        client = self.clusters[written.cluster].client
        obj = fresh.get(written.source, {}).get(describe(written.obj), written.obj) if written.writer == "chart" else written.obj
        obj = self.mutate(written.source, copy.deepcopy(obj))
        what = f"{written.cluster}: {describe(obj)} ({written.writer}, {written.source})"
        try:
            if written.writer == "argocd":
                meta = obj["metadata"]
                before = client.get(str(obj["apiVersion"]), str(obj["kind"]), str(meta["name"]), meta.get("namespace"))
                updated = again = client.apply(obj, field_manager=written.manager, force=False)
            else:
                before, updated = pulumi_update(client, obj, written.manager, written.options)
                body = normalized(obj)
                if is_patch_kind(str(body["kind"])):
                    body["kind"] = str(body["kind"]).removesuffix("Patch")
                again = client.apply(body, field_manager=written.manager, force=False)
        except ApiError as e:
            return obj, "", e
        if written.writer != "argocd" and (unkept := unkept_empty_lists(normalized(obj), again)):
            # Such an apply is a change however often it runs, yet shows as one only when it falls in a later second
            # than the last (the manager's time is stamped to the second): caught here on every run, not on some.
            return obj, f"{what}: every apply changes it: the API server does not keep its empty {', '.join(unkept)}", None
        if before is not None and (paths := [p for p in diff_paths(before, updated) if not _controllers_own(p, obj)]):
            return obj, f"{what} changed: {', '.join(paths)}", None
        if before is not None and written.writer == "argocd" and before["metadata"]["resourceVersion"] != updated["metadata"]["resourceVersion"]:
            return obj, f"{what} changed: its managed fields", None
        if again["metadata"]["resourceVersion"] != updated["metadata"]["resourceVersion"]:
            # The object moved between the two reads. A controller may have written it in between (the Deployment
            # controller's status and revision, the PV controller's claim annotations): that is not the apply's doing
            # when the apply's own managedFields entry is as it was and nothing but those controllers' fields differs.
            paths = [p for p in diff_paths(updated, again) if not _controllers_own(p, obj)]
            if paths or _own_entries(updated, written.manager) != _own_entries(again, written.manager):
                return obj, f"{what}: a second apply changed it: {', '.join(paths) or 'its managed fields'}", None
        return obj, "", None


# What a controller writes into an object on its own schedule, so a read between two applies may see it arrive: the PV
# controller names the provisioner on an unbound claim (kubernetes pkg/controller/volume/persistentvolume/pv_controller.go,
# setClaimProvisioner: volume.kubernetes.io/storage-provisioner and its beta twin), seconds after the claim is made.
_CONTROLLER_WRITES = {
    "metadata.annotations.volume.kubernetes.io/storage-provisioner",
    "metadata.annotations.volume.beta.kubernetes.io/storage-provisioner",
}


# What changes without anyone's apply: the server's bookkeeping, the controllers' status, and the revision the
# Deployment controller writes on its own schedule (a read just after the first apply may come before it).
_VOLATILE = {
    ("metadata", "resourceVersion"),
    ("metadata", "managedFields"),
    ("metadata", "generation"),
    ("status",),
    ("metadata", "annotations", "deployment.kubernetes.io/revision"),
}


def _controllers_own(path: str, obj: Mapping[str, Any]) -> bool:
    """A path a controller writes on its own schedule (_CONTROLLER_WRITES) that the applied object does not set: it may
    arrive between the read before an update and the update, which is not the update's doing."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return path in _CONTROLLER_WRITES and path.removeprefix("metadata.annotations.") not in annotations


def unkept_empty_lists(sent: Any, stored: Any, path: tuple[str, ...] = ()) -> list[str]:
    """Where an applied object sets an empty list the stored object does not have (a built-in kind's `omitempty`
    field: k8s.io/api v0.35.1 networking/v1/types.go:80, a NetworkPolicy's `ingress`). The API server's server-side
    apply compares the merged object, which keeps the list, with the stored one, which lacks it, so it finds a change
    every time (structured-merge-diff v6.3.0 merge/update.go:246) and stamps the manager's time anew (apimachinery
    v0.35.1 pkg/util/managedfields/internal/managedfieldsupdater.go:75-76): a new resourceVersion whenever the apply
    falls in a later second than the last. An empty map is not such a change (an empty `metadata.annotations` applied
    twice a second apart keeps its resourceVersion on the Ainur's control plane)."""
    if isinstance(sent, dict) and isinstance(stored, dict):
        found = []
        for key, value in sent.items():
            if value == [] and stored.get(key) is None:
                found.append(".".join((*path, str(key))))
            else:
                found += unkept_empty_lists(value, stored.get(key), (*path, str(key)))
        return found
    if isinstance(sent, list) and isinstance(stored, list) and len(sent) == len(stored):
        return [p for i, (a, b) in enumerate(zip(sent, stored, strict=True)) for p in unkept_empty_lists(a, b, (*path, str(i)))]
    return []


def _own_entries(obj: Mapping[str, Any], manager: str) -> list[Any]:
    """The managedFields entries of one field manager: an apply that changes nothing leaves them as they were."""
    return [e for e in obj.get("metadata", {}).get("managedFields") or [] if e.get("manager") == manager]


def diff_paths(a: Any, b: Any, path: tuple[str, ...] = ()) -> list[str]:
    """Where two objects differ, as dotted paths (bookkeeping and status left out; no map and an empty one alike)."""
    if path in _VOLATILE:
        return []
    if (isinstance(a, dict) and b is None) or (a is None and isinstance(b, dict)):
        a, b = a or {}, b or {}
    if isinstance(a, dict) and isinstance(b, dict):
        return [p for k in sorted(set(a) | set(b)) for p in diff_paths(a.get(k), b.get(k), (*path, str(k)))]
    return [] if a == b else [".".join(path)]


# --- Workloads: admitted, scheduled, where ----------------------------------------------------------------

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "Pod")


@dataclass
class Workload:
    """One workload's pods as the cluster has them: where each runs, and why any is missing or Pending."""

    cluster: str
    obj: dict[str, Any]
    source: str
    uid: str = ""
    expected: int = 0
    pods: dict[str, str] = field(default_factory=dict)  # pod name -> node ("" while Pending)
    problems: list[str] = field(default_factory=list)
    makers: list[Mapping[str, Any]] = field(default_factory=list)  # what makes its pods (itself, a Deployment's ReplicaSets)

    @property
    def name(self) -> str:
        return describe(self.obj)

    @property
    def namespace(self) -> str:
        return str(self.obj["metadata"].get("namespace") or "default")

    @property
    def nodes(self) -> list[str]:
        return sorted(n for n in self.pods.values() if n)


def _owned_by(objects: Iterable[dict[str, Any]], uids: set[str]) -> list[dict[str, Any]]:
    return [o for o in objects if {r["uid"] for r in o["metadata"].get("ownerReferences") or []} & uids]


def _failed_create(client: KubeClient, objects: Iterable[Mapping[str, Any]]) -> list[str]:
    """What the controller that makes the pods was told when it tried (FailedCreate events: admission's refusals)."""
    return sorted({str(e.get("message")) for obj in objects for e in client.events_for(obj) if e.get("reason") == "FailedCreate"})


def provision_claims(cluster: Cluster) -> list[str]:
    """What a volume provisioner does, for claims no provisioner serves here: a volume bound to each
    pending claim (on the node the scheduler chose, for a WaitForFirstConsumer class). Returns what it made."""
    client = cluster.client
    made = []
    classes = {c["metadata"]["name"]: c for c in client.list("storage.k8s.io/v1", "StorageClass")}
    for claim in client.list("v1", "PersistentVolumeClaim"):
        if claim.get("status", {}).get("phase") == "Bound" or claim["spec"].get("volumeName"):
            continue
        meta, spec = claim["metadata"], claim["spec"]
        storage_class = spec.get("storageClassName") or ""
        mode = classes.get(storage_class, {}).get("volumeBindingMode", "Immediate")
        node = (meta.get("annotations") or {}).get("volume.kubernetes.io/selected-node")
        if mode == "WaitForFirstConsumer" and not node:
            continue
        volume: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": f"pv-{meta['namespace']}-{meta['name']}"[:63]},
            "spec": {
                "capacity": {"storage": spec["resources"]["requests"]["storage"]},
                "accessModes": spec["accessModes"],
                "storageClassName": storage_class,
                "persistentVolumeReclaimPolicy": "Retain",
                "claimRef": {"namespace": meta["namespace"], "name": meta["name"], "uid": meta["uid"]},
                "hostPath": {"path": f"/var/lib/stand-in/{meta['namespace']}/{meta['name']}"},
            },
        }
        if node:
            term = {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}
            volume["spec"]["nodeAffinity"] = {"required": {"nodeSelectorTerms": [term]}}
        if client.get("v1", "PersistentVolume", volume["metadata"]["name"]) is None:
            client.create(volume)
            made.append(f"{describe(claim)} ({storage_class or 'no class'}{', on ' + node if node else ''})")
    return made


def _claims_now(cluster: Cluster, pod: Mapping[str, Any]) -> str:
    """The phase of each claim of a pod the scheduler left for its claims, as the API server has it now. The scheduler's
    last word may be older than the bind (client-go's event correlator keeps a repeated event's first time), so a claim
    Bound beside it says the scheduler did not come back to the pod, not that the volume is missing."""
    namespace = pod["metadata"]["namespace"]
    names = [v["persistentVolumeClaim"]["claimName"] for v in pod["spec"].get("volumes") or [] if "persistentVolumeClaim" in v]
    if not names:
        return ""
    phases = []
    for name in names:
        claim = cluster.client.get("v1", "PersistentVolumeClaim", name, namespace)
        phases.append(f"{name} {(claim.get('status') or {}).get('phase', 'Pending')}" if claim else f"{name} missing")
    return f" (its claims now: {', '.join(phases)})"


def _observe(client: KubeClient, workload: Workload, pods: Sequence[dict[str, Any]], replica_sets: Sequence[dict[str, Any]]) -> bool:
    """Read the workload's pods; true once it is settled (every pod scheduled, or refused or unschedulable and said so)."""
    obj = workload.obj
    kind = str(obj["kind"])
    live = client.get(str(obj["apiVersion"]), kind, str(obj["metadata"]["name"]), workload.namespace)
    if live is None:
        return True
    workload.uid = live["metadata"]["uid"]
    spec, status = live.get("spec") or {}, live.get("status") or {}
    makers: list[Mapping[str, Any]] = [live]
    if kind == "Pod":
        mine, workload.expected = [live], 1
    elif kind == "Deployment":
        owned_sets = _owned_by(replica_sets, {workload.uid})
        makers += [{"kind": "ReplicaSet", **rs} for rs in owned_sets]
        mine, workload.expected = _owned_by(pods, {rs["metadata"]["uid"] for rs in owned_sets}), int(spec.get("replicas", 1))
    elif kind == "DaemonSet":
        if status.get("observedGeneration") != live["metadata"].get("generation"):
            return False
        mine, workload.expected = _owned_by(pods, {workload.uid}), int(status.get("desiredNumberScheduled", 0))
    elif kind == "StatefulSet":
        mine, workload.expected = _owned_by(pods, {workload.uid}), int(spec.get("replicas", 1))
    else:  # a Job: one pod at a time unless it already succeeded
        mine, workload.expected = _owned_by(pods, {workload.uid}), 0 if status.get("succeeded") else int(spec.get("parallelism", 1))
    workload.pods = {p["metadata"]["name"]: str(p["spec"].get("nodeName", "")) for p in mine}
    workload.makers = makers
    if any(
        not p["spec"].get("nodeName") and any(c.get("reason") == "Unschedulable" for c in (p.get("status") or {}).get("conditions") or [])
        for p in mine
    ):
        return True
    if len(mine) < workload.expected:
        return bool(_failed_create(client, makers))
    return all(workload.pods.values())


def _label_selected(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A LabelSelector's verdict on labels: matchLabels and matchExpressions (In, NotIn, Exists, DoesNotExist)."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values") or []
        if (op == "In" and labels.get(key) not in values) or (op == "NotIn" and key in labels and labels[key] in values):
            return False
        if (op == "Exists" and key not in labels) or (op == "DoesNotExist" and key in labels):
            return False
    return True


def _affinity_followed(pod: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> bool:
    """Whether `pod` has required pod affinity and every term of it selects a pod already placed on a node (in the
    term's namespaces, the pod's own when it names none; any namespace with a namespaceSelector)."""
    terms = (((pod["spec"].get("affinity") or {}).get("podAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution")) or []
    if not terms:
        return False
    own = pod["metadata"]["namespace"]
    return all(
        any(
            other["spec"].get("nodeName")
            and ("namespaceSelector" in term or other["metadata"]["namespace"] in (term.get("namespaces") or [own]))
            and _label_selected(term.get("labelSelector") or {}, other["metadata"].get("labels") or {})
            for other in pods
        )
        for term in terms
    )


def workloads(cluster_name: str, cluster: Cluster, written: Iterable[Written], timeout: float = 90.0) -> list[Workload]:
    """Every workload written to the cluster with its pods, once each is settled: all its pods
    scheduled, or the scheduler (or admission, refusing the controller's pods) has said why not."""
    client = cluster.client
    seen: dict[str, Workload] = {}
    for w in written:
        if w.cluster == cluster_name and w.obj.get("kind") in WORKLOAD_KINDS and w.live is not None:
            seen.setdefault(describe(w.obj), Workload(cluster_name, w.obj, w.source))
    found = list(seen.values())
    deadline = time.monotonic() + timeout
    while True:
        provision_claims(cluster)
        pods = client.list("v1", "Pod")
        replica_sets = client.list("apps/v1", "ReplicaSet")
        settled = [_observe(client, w, pods, replica_sets) for w in found]
        # A pod the scheduler gave up on before its volume existed is retried once the volume's event reaches
        # the scheduler: within its backoff (10 s) when the machine is idle, later when it is busy (a whole
        # test run on two cores missed a 12 s allowance). Waited for up to the deadline, like any other pod.
        waiting_for_volume = any(
            "PersistentVolumeClaim" in str(c.get("message"))
            for p in pods
            for c in (p.get("status") or {}).get("conditions") or []
            if c.get("reason") == "Unschedulable"
        )
        # So is a pod the scheduler found no place for before the pods its required pod affinity follows were
        # placed: kube-scheduler v1.35.1 requeues it on an assigned pod's add or update (InterPodAffinity's
        # EventsToRegister, pkg/scheduler/framework/plugins/interpodaffinity/plugin.go:99-101), so once those pods run it
        # is tried again; until then its Unschedulable is the order the controllers made the pods in, not a verdict.
        waiting_for_affinity = any(
            not p["spec"].get("nodeName")
            and any(c.get("reason") == "Unschedulable" for c in (p.get("status") or {}).get("conditions") or [])
            and _affinity_followed(p, pods)
            for p in pods
        )
        if all(settled) and not waiting_for_volume and not waiting_for_affinity:
            break
        if time.monotonic() > deadline:
            # A pod left pending because the scheduler or the controller-manager stopped is that component's
            # failure, said with its log, not a pod's.
            cluster.check_running()
            break
        time.sleep(0.5)
    by_name = {(p["metadata"]["namespace"], p["metadata"]["name"]): p for p in pods}
    for workload in found:
        for pod_name, node in sorted(workload.pods.items()):
            if not node:
                pod = by_name[(workload.namespace, pod_name)]
                reason = cluster.pending_reason(pod)
                claims = _claims_now(cluster, pod) if "PersistentVolumeClaim" in reason else ""
                workload.problems.append(f"pod {pod_name} Pending: {reason}{claims}")
        if len(workload.pods) < workload.expected:
            refused = _failed_create(client, workload.makers or [workload.obj])
            workload.problems.append(f"{len(workload.pods)} of {workload.expected} pods created" + (f": {'; '.join(refused)}" if refused else ""))
    return found
