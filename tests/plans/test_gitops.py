"""The GitOps plan, checked by the real argo-cd chart, real Helm, kubeconform and Argo CD's own CRDs.

Every AppProject, ApplicationSet and Application validates against the CRDs of Argo CD v3.5.2 (the
pinned chart's appVersion) and against the CRDs the chart itself installs; the chart renders with
the program's values for both clusters of both stacks, and each value has the effect it is there
for. What Argo CD's own code makes of the ApplicationSets is tests/tools/test_appset_check.py.
"""

from __future__ import annotations

import copy
import functools
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from plans import gitops as plan
from plans.bringup import ARGOCD_CONTROLLER
from plans.merge import deep_merge
from stacks import StackConfig, gitops, load_stack_file, parse_stack, read_stack_file
from stacks.categories import DEFAULT_CATEGORIES
from stacks.chart_values import argocd_controller
from tests.edit import GOES_WITH_GITOPS, HOMELAB, RK1, without
from tests.schemas import crd_errors, prometheus_crds
from tools import upstream

APP_VERSION = "v3.5.2"


def _stack(path: Path, secrets: dict[str, str] | None = None, **settings: Any) -> StackConfig:
    raw: dict[str, Any] = dict(read_stack_file(path).config)
    raw["iluvatar:gitops"] = {**raw["iluvatar:gitops"], **settings}
    for key, value in (secrets or {}).items():
        raw[f"iluvatar:{key}"] = value
    return parse_stack(raw, frozenset(f"iluvatar:{k}" for k in secrets or {}))


def _clusters(stack: StackConfig) -> list[plan.Cluster]:
    return ["arda", "ainur"] if stack.ainur is not None else ["arda"]


def _kube_version(stack: StackConfig, cluster: plan.Cluster) -> str:
    if cluster == "ainur":
        assert stack.ainur is not None
        return stack.ainur.k3s_version.split("+")[0]
    return stack.arda.kubernetes_version


def _chart() -> Path:
    return upstream.chart(plan.CHART, "10.8.0")


@functools.cache
def _rendered(path: Path, cluster: plan.Cluster) -> tuple[dict[str, Any], ...]:
    stack = load_stack_file(path)
    # With monitoring, the Prometheus Operator's CRDs are on Arda before Argo CD (components.monitoring.crds), and
    # the chart renders its ServiceMonitors only where Helm sees their API.
    api_versions = ("monitoring.coreos.com/v1",) if stack.monitoring is not None and cluster == "arda" else ()
    return tuple(
        upstream.helm_template(
            _chart(),
            plan.helm_values(stack, cluster),
            release="argocd",
            namespace=plan.NAMESPACE,
            kube_version=_kube_version(stack, cluster),
            api_versions=api_versions,
        )
    )


def _find(objects: Any, kind: str, name: str) -> dict[str, Any]:
    [found] = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return copy.deepcopy(found)


def _argo_objects(stack: StackConfig) -> list[dict[str, Any]]:
    out = []
    for cluster in _clusters(stack):
        out += [plan.git_app_project(stack, cluster), plan.platform_app_project(), *plan.application_sets(stack, cluster)]
    return out


def _ceph_app(stack: StackConfig) -> dict[str, Any]:
    """The platform Application the storage layer makes: Rook-Ceph's nodes and devices from the inventory."""
    nodes = [{"name": n.name, "devices": [{"name": d} for d in n.data_disks]} for n in stack.arda_nodes if n.data_disks]
    values = {"cephClusterSpec": {"storage": {"useAllNodes": False, "useAllDevices": False, "nodes": nodes}}}
    return plan.platform_application(
        "rook-ceph-cluster",
        chart="rook-ceph-cluster",
        repo_url="https://charts.rook.io/release",
        version="v1.20.4",
        values=values,
        namespace="rook-ceph",
    )


# --- the pins the plan keeps in step with the chart


def test_the_default_chart_installs_the_argo_cd_the_plan_names() -> None:
    meta = yaml.safe_load((_chart() / "Chart.yaml").read_text())
    values = yaml.safe_load((_chart() / "values.yaml").read_text())
    assert (meta["version"], meta["appVersion"]) == ("10.8.0", APP_VERSION)
    assert meta["appVersion"] == plan.APP_VERSION
    assert f"{values['global']['image']['repository']}:{meta['appVersion']}" == plan.ARGOCD_IMAGE


def test_the_known_hosts_are_the_charts() -> None:
    values = yaml.safe_load((_chart() / "values.yaml").read_text())
    shipped = tuple(line for line in values["configs"]["ssh"]["knownHosts"].splitlines() if line.strip())
    assert shipped == plan.ARGOCD_KNOWN_HOSTS
    assert {line.split()[0] for line in shipped} == gitops.ARGOCD_KNOWN_SSH_HOSTS


def test_the_chart_has_no_values_schema_so_every_key_we_set_is_one_it_has() -> None:
    # argo-cd ships no values.schema.json: Helm would take a misspelt key silently. So every key path
    # we set must exist in the chart's values.yaml; configs.cm is argocd-cm itself (free-form: each
    # key is checked below against the ConfigMap and Argo CD's own settings code).
    assert upstream.values_schema(_chart()) is None
    defaults = yaml.safe_load((_chart() / "values.yaml").read_text())

    def unknown(values: dict[str, Any], known: Any, path: str = "") -> list[str]:
        out = []
        for key, value in values.items():
            where = f"{path}{key}"
            if where == "configs.cm":
                continue
            if not isinstance(known, dict) or key not in known:
                out.append(where)
            elif isinstance(value, dict) and value:
                out += unknown(value, known[key], f"{where}.")
        return out

    ssh = _stack(RK1, {"gitopsSshPrivateKey": "k"}, repoUrl="git@git.example.com:me/homelab.git", sshKnownHosts=["git.example.com ssh-ed25519 AAAA"])
    for stack in (load_stack_file(HOMELAB), load_stack_file(RK1), ssh):
        for cluster in _clusters(stack):
            assert unknown(plan.helm_values(stack, cluster), defaults) == []
    assert unknown({"redisSecretinit": {"enabled": False}, "dex": {"enabeld": False}}, defaults) == ["redisSecretinit", "dex.enabeld"]


def test_argocd_cm_keys_are_settings_argo_cd_reads() -> None:
    folder = upstream.module_dir("github.com/argoproj/argo-cd/v3", APP_VERSION) / "util" / "settings"
    settings = "".join(p.read_text() for p in sorted(folder.glob("*.go")) if not p.name.endswith("_test.go"))
    for key in plan.helm_values(load_stack_file(HOMELAB), "arda")["configs"]["cm"]:
        assert f'"{key}"' in settings, key


# --- the chart, rendered by real Helm with the program's values


@pytest.mark.parametrize(("path", "cluster"), [(HOMELAB, "arda"), (HOMELAB, "ainur"), (RK1, "arda")])
def test_the_chart_renders_and_every_object_passes_kubeconform(path: Path, cluster: plan.Cluster) -> None:
    objects = _rendered(path, cluster)
    crds = upstream.crd_schema_dir_of(objects)
    # Its ServiceMonitors (with monitoring, on Arda) against the Prometheus Operator's CRDs at the version Pulumi installs.
    stack = load_stack_file(path)
    operator = prometheus_crds(stack) if cluster == "arda" else []
    assert upstream.kubeconform(list(objects), _kube_version(stack, cluster), crd_dirs=[crds], crds=operator) == []


@pytest.mark.parametrize(("path", "cluster"), [(HOMELAB, "arda"), (HOMELAB, "ainur")])
def test_argo_cd_tracks_by_annotation_and_keeps_its_crds(path: Path, cluster: plan.Cluster) -> None:
    objects = _rendered(path, cluster)
    cm = _find(objects, "ConfigMap", "argocd-cm")
    assert cm["data"]["application.resourceTrackingMethod"] == "annotation"
    assert cm["data"]["admin.enabled"] == "true"
    assert cm["data"]["kustomize.buildOptions"] == "--enable-helm"
    for crd in (o for o in objects if o["kind"] == "CustomResourceDefinition"):
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


@pytest.mark.parametrize(("path", "cluster"), [(HOMELAB, "arda"), (HOMELAB, "ainur")])
def test_no_hook_no_dex_and_redis_reads_pulumis_secret(path: Path, cluster: plan.Cluster) -> None:
    objects = _rendered(path, cluster)
    assert not [o for o in objects if "helm.sh/hook" in (o["metadata"].get("annotations") or {})]
    assert not [o for o in objects if "dex" in o["metadata"]["name"]]
    redis = _find(objects, "Deployment", "argocd-redis")
    [env] = [e for e in redis["spec"]["template"]["spec"]["containers"][0]["env"] if e["name"] == "REDIS_PASSWORD"]
    assert env["valueFrom"]["secretKeyRef"] == {"name": "argocd-redis", "key": "auth"}
    assert plan.redis_secret("x")["metadata"]["name"] == "argocd-redis" and "auth" in plan.redis_secret("x")["stringData"]


def test_the_seed_on_the_ainur_is_smaller() -> None:
    arda = {(o["kind"], o["metadata"]["name"]) for o in _rendered(HOMELAB, "arda")}
    ainur = {(o["kind"], o["metadata"]["name"]) for o in _rendered(HOMELAB, "ainur")}
    # Arda's alone: notifications, and with monitoring the metrics Services Prometheus scrapes through their ServiceMonitors.
    metrics = [f"argocd-{part}-metrics" for part in ("application-controller", "repo-server", "server")]
    assert sorted(arda - ainur) == sorted(
        [n for n in arda if "notifications" in n[1]]
        + [("Service", name) for name in metrics]
        + [("ServiceMonitor", name.removesuffix("-metrics")) for name in metrics]
    )
    assert ("Deployment", "argocd-notifications-controller") in arda
    assert ainur < arda


def test_an_ssh_host_of_the_users_reaches_argo_cds_known_hosts() -> None:
    line = "git.example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK0wmN/Cr3JXqmLW7u+g9pTh+wyqDHpSQEIQczXkVx9q"
    stack = _stack(RK1, {"gitopsSshPrivateKey": "k"}, repoUrl="git@git.example.com:me/homelab.git", sshKnownHosts=[line])
    objects = upstream.helm_template(_chart(), plan.helm_values(stack, "arda"), release="argocd", namespace="argocd", kube_version="v1.35.1")
    known = _find(objects, "ConfigMap", "argocd-ssh-known-hosts-cm")["data"]["ssh_known_hosts"]
    assert line in known.splitlines()
    assert "github.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl" in known.splitlines()


@pytest.mark.parametrize(
    "given",
    [
        {},
        {"nameOverride": "cd"},  # contained in the release's name: the fullname stays "argocd"
        {"nameOverride": "cd-x"},
        {"fullnameOverride": "argocd"},
        {"fullnameOverride": "gitops", "controller": {"name": "controller"}},
        {"namespaceOverride": "gitops"},
        {"controller": {"dynamicClusterDistribution": True}},
    ],
    ids=["none", "a-name-in-the-release", "a-name-added", "the-same-fullname", "renamed", "moved", "a-deployment"],
)
def test_preview_knows_where_the_pinned_chart_puts_argo_cds_controller(given: dict[str, Any]) -> None:
    """The upgrader pauses Argo CD's controller by kind, namespace and name around every drain, and refuses a roll
    where it is missing from a namespace that exists; preview reads where the chart puts it (stacks.chart_values
    .argocd_controller) to refuse values that move it. The real chart, with the program's values and these, agrees."""
    values = plan.helm_values(_stack(RK1), "arda")
    for key, value in given.items():
        values[key] = {**values.get(key, {}), **value} if isinstance(value, dict) else value
    objects = upstream.helm_template(_chart(), values, release="argocd", namespace="argocd", kube_version="v1.35.1")
    made = [
        f"{o['kind']}/{o['metadata'].get('namespace', 'argocd')}/{o['metadata']['name']}"
        for o in objects
        if o["kind"] in ("StatefulSet", "Deployment")
        and any("/usr/local/bin/argocd-application-controller" in c.get("args", []) for c in o["spec"]["template"]["spec"]["containers"])
    ]
    assert made == [argocd_controller(values)]
    assert (made == [ARGOCD_CONTROLLER]) == (given in ({}, {"nameOverride": "cd"}, {"fullnameOverride": "argocd"}))


def test_the_users_values_win() -> None:
    stack = _stack(RK1, argocd={"values": {"dex": {"enabled": True}, "configs": {"cm": {"url": "https://argocd.example.com"}}}})
    values = plan.helm_values(stack, "arda")
    assert values["dex"] == {"enabled": True}
    assert values["configs"]["cm"] == {
        "application.resourceTrackingMethod": "annotation",
        "admin.enabled": True,
        "kustomize.buildOptions": "--enable-helm",
        "url": "https://argocd.example.com",
    }


# --- Argo CD's objects against its CRDs


def test_the_crd_check_can_fail() -> None:
    appset = plan.category_application_set(load_stack_file(HOMELAB), "media")
    appset["spec"]["goTemplateOption"] = appset["spec"].pop("goTemplateOptions")
    assert crd_errors(appset, APP_VERSION) == ["spec: Additional properties are not allowed ('goTemplateOption' was unexpected)"]


def test_every_object_validates_against_argo_cds_crds() -> None:
    ssh = _stack(RK1, {"gitopsSshPrivateKey": "k"}, repoUrl="git@github.com:example/turing-pi.git", categories=["games"], selfHeal=True)
    checked: Counter[str] = Counter()
    for stack in (load_stack_file(HOMELAB), load_stack_file(RK1), ssh):
        for manifest in [*_argo_objects(stack), _ceph_app(stack)]:
            assert crd_errors(manifest, APP_VERSION) == [], manifest
            checked[manifest["kind"]] += 1
    assert checked == {"ApplicationSet": 1 + 9 + 9 + 10, "AppProject": 4 + 2 + 2, "Application": 3}


def test_every_object_passes_kubeconform_against_the_crds_the_chart_installs() -> None:
    crds = upstream.crd_schema_dir_of(_rendered(HOMELAB, "arda"))
    for path in (HOMELAB, RK1):
        stack = load_stack_file(path)
        assert upstream.kubeconform([*_argo_objects(stack), _ceph_app(stack)], stack.arda.kubernetes_version, crd_dirs=[crds]) == []
        assert upstream.kubeconform(plan.namespaces(stack), stack.arda.kubernetes_version) == []


# --- what the plan says, pinned


def test_one_application_set_per_category() -> None:
    stack = _stack(HOMELAB, categories=["games"])
    assert [a["metadata"]["name"] for a in plan.application_sets(stack, "arda")] == [*DEFAULT_CATEGORIES, "games"]
    assert [a["metadata"]["name"] for a in plan.application_sets(stack, "ainur")] == ["ainur"]
    assert [n["metadata"]["name"] for n in plan.namespaces(stack)] == [*DEFAULT_CATEGORIES, "games"]
    assert [d["namespace"] for d in plan.git_app_project(stack, "arda")["spec"]["destinations"]] == [*DEFAULT_CATEGORIES, "games"]


def test_a_categorys_application_set() -> None:
    assert plan.category_application_set(load_stack_file(HOMELAB), "system") == {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "ApplicationSet",
        "metadata": {
            "name": "system",
            "namespace": "argocd",
            "labels": {"app.kubernetes.io/managed-by": "pulumi", "app.kubernetes.io/part-of": "iluvatar", "iluvatar.dev/category": "system"},
        },
        "spec": {
            "goTemplate": True,
            "goTemplateOptions": ["missingkey=error"],
            "generators": [
                {"git": {"repoURL": "git://192.168.0.15/repo.git", "revision": "main", "directories": [{"path": "kubernetes/apps/system/*"}]}}
            ],
            "template": {
                "metadata": {"name": "system-{{ .path.basenameNormalized }}", "labels": {"iluvatar.dev/category": "system"}},
                "spec": {
                    "project": "arda",
                    "source": {"repoURL": "git://192.168.0.15/repo.git", "targetRevision": "main", "path": "{{ .path.path }}"},
                    "destination": {"server": "https://kubernetes.default.svc", "namespace": "system"},
                    "syncPolicy": {
                        "automated": {"prune": True, "selfHeal": True},
                        "syncOptions": ["ServerSideApply=true", "SkipDryRunOnMissingResource=true", "PruneLast=true"],
                        "retry": {"limit": 10, "backoff": {"duration": "10s", "factor": 2, "maxDuration": "5m"}},
                    },
                },
            },
        },
    }
    # The homelab heals only `system`: workloads keep a hand fix until Git changes.
    media = plan.category_application_set(load_stack_file(HOMELAB), "media")
    assert media["spec"]["template"]["spec"]["syncPolicy"]["automated"] == {"prune": True, "selfHeal": False}


def test_without_a_mirror_argo_cd_reads_the_repository_itself() -> None:
    stack = load_stack_file(RK1)
    appset = plan.category_application_set(stack, "media")
    assert appset["spec"]["generators"][0]["git"] == {
        "repoURL": "https://github.com/example/turing-pi.git",
        "revision": "main",
        "directories": [{"path": "apps/media/*"}],
    }
    assert plan.git_app_project(stack, "arda")["spec"]["sourceRepos"] == ["https://github.com/example/turing-pi.git"]


def test_the_ainur_read_their_own_mirror_inside_their_cluster() -> None:
    stack = load_stack_file(HOMELAB)
    assert plan.repo_url(stack, "ainur") == "git://git-mirror.netboot.svc.cluster.local/repo.git"
    assert plan.repo_url(stack, "arda") == "git://192.168.0.15/repo.git"
    appset = plan.ainur_application_set(stack)
    assert appset["spec"]["generators"][0]["git"]["directories"] == [{"path": "ainur/*"}]
    assert appset["spec"]["template"]["spec"]["destination"] == {
        "server": "https://kubernetes.default.svc",
        "namespace": "{{ .path.basenameNormalized }}",
    }
    assert appset["spec"]["template"]["spec"]["syncPolicy"]["syncOptions"][-1] == "CreateNamespace=true"


def test_projects_keep_git_apps_out_of_namespaces_and_pulumis_places() -> None:
    stack = load_stack_file(HOMELAB)
    for cluster in ("arda", "ainur"):
        project = plan.git_app_project(stack, cluster)["spec"]
        assert project["clusterResourceBlacklist"] == [{"group": "", "kind": "Namespace"}]
    ainur = plan.git_app_project(stack, "ainur")["spec"]["destinations"]
    assert [d["namespace"] for d in ainur] == ["!argocd", "!default", "!kube-node-lease", "!kube-public", "!kube-system", "!netboot", "*"]


def test_category_namespaces_are_pulumis_and_argo_cd_never_prunes_them() -> None:
    [media] = [n for n in plan.namespaces(load_stack_file(HOMELAB)) if n["metadata"]["name"] == "media"]
    assert media == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": "media",
            "labels": {
                "app.kubernetes.io/managed-by": "pulumi",
                "app.kubernetes.io/part-of": "iluvatar",
                "iluvatar.dev/category": "media",
                "pod-security.kubernetes.io/enforce": "baseline",
                "pod-security.kubernetes.io/warn": "restricted",
                "pod-security.kubernetes.io/audit": "restricted",
            },
            "annotations": {"argocd.argoproj.io/sync-options": "Prune=false,Delete=false"},
        },
    }


# --- platform Applications: inline values from the inventory


def test_a_platform_application() -> None:
    app = plan.platform_application(
        "lan-pool",
        chart="pool",
        repo_url="oci://ghcr.io/example/charts",
        version="1.2.3",
        values={"cidr": "192.168.0.0/24"},
        namespace="kube-system",
    )
    assert app == {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {
            "name": "lan-pool",
            "namespace": "argocd",
            "labels": {"app.kubernetes.io/managed-by": "pulumi", "app.kubernetes.io/part-of": "iluvatar", "iluvatar.dev/platform": "true"},
            "annotations": {
                "iluvatar.dev/values-digest": plan.values_digest({"cidr": "192.168.0.0/24"}),
                "argocd.argoproj.io/compare-options": "ServerSideDiff=true",
            },
        },
        "spec": {
            "project": "platform",
            "source": {
                "repoURL": "oci://ghcr.io/example/charts",
                "chart": "pool",
                "targetRevision": "1.2.3",
                "helm": {"releaseName": "lan-pool", "valuesObject": {"cidr": "192.168.0.0/24"}},
            },
            "destination": {"server": "https://kubernetes.default.svc", "namespace": "kube-system"},
            "syncPolicy": {
                "automated": {"prune": True, "selfHeal": True},
                "syncOptions": ["ServerSideApply=true", "SkipDryRunOnMissingResource=true", "PruneLast=true"],
                "retry": {"limit": 10, "backoff": {"duration": "10s", "factor": 2, "maxDuration": "5m"}},
            },
        },
    }
    cascading = plan.platform_application("x", chart="c", repo_url="https://e.org", version="1", values={}, namespace="n", cascade_delete=True)
    assert cascading["metadata"]["finalizers"] == ["resources-finalizer.argocd.argoproj.io"]


def test_the_values_digest_is_the_values() -> None:
    assert plan.values_digest({"a": 1, "b": [1, 2]}) == plan.values_digest({"b": [1, 2], "a": 1})
    assert plan.values_digest({"a": 1}) != plan.values_digest({"a": 2})


def test_inline_values_render_the_real_chart_with_the_inventorys_disks() -> None:
    # What Argo CD does with spec.source.helm.valuesObject: hand it to Helm as the values. Rook's
    # cluster chart, rendered by real Helm with the Application's values, runs Ceph on exactly the
    # inventory's data disks, and every object passes kubeconform against Rook's CRDs.
    stack = load_stack_file(HOMELAB)
    app = _ceph_app(stack)
    chart = upstream.chart("rook-ceph-cluster", "v1.20.4")
    objects = upstream.helm_template(
        chart, app["spec"]["source"]["helm"]["valuesObject"], release="rook-ceph-cluster", namespace="rook-ceph", kube_version="v1.35.1"
    )
    cluster = _find(objects, "CephCluster", "rook-ceph")
    assert cluster["spec"]["storage"]["nodes"] == [
        {"name": "taniquetil", "devices": [{"name": "/dev/nvme0n1"}]},
        {"name": "tirion", "devices": [{"name": "/dev/nvme0n1"}]},
        {"name": "alqualonde", "devices": [{"name": "/dev/nvme0n1"}]},
    ]
    assert (cluster["spec"]["storage"]["useAllNodes"], cluster["spec"]["storage"]["useAllDevices"]) == (False, False)
    assert upstream.kubeconform(objects, "v1.35.1", crds=[("rook", "v1.20.4")]) == []


def test_a_disk_changes_only_its_nodes_values() -> None:
    raw: dict[str, Any] = dict(read_stack_file(HOMELAB).config)
    before = _ceph_app(parse_stack(raw))
    nodes = copy.deepcopy(raw["iluvatar:nodes"])
    nodes[4]["dataDisks"] = ["/dev/nvme0n1", "/dev/nvme1n1"]
    after = _ceph_app(parse_stack({**raw, "iluvatar:nodes": nodes}))
    old, new = before["spec"]["source"]["helm"]["valuesObject"], after["spec"]["source"]["helm"]["valuesObject"]
    assert [n for n in new["cephClusterSpec"]["storage"]["nodes"] if n not in old["cephClusterSpec"]["storage"]["nodes"]] == [
        {"name": "tirion", "devices": [{"name": "/dev/nvme0n1"}, {"name": "/dev/nvme1n1"}]}
    ]
    assert (
        deep_merge(before, {"spec": {"source": {"helm": {"valuesObject": new}}}, "metadata": {"annotations": after["metadata"]["annotations"]}})
        == after
    )


# --- credentials


def test_the_repository_secret_for_a_private_repository() -> None:
    https = _stack(RK1, {"gitopsToken": "t"}, private=True, username="me")
    assert plan.repository_secret(https, "TOKEN") == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "gitops-repository",
            "namespace": "argocd",
            "labels": {
                "app.kubernetes.io/managed-by": "pulumi",
                "app.kubernetes.io/part-of": "iluvatar",
                "argocd.argoproj.io/secret-type": "repository",
            },
        },
        "type": "Opaque",
        "stringData": {"type": "git", "url": "https://github.com/example/turing-pi.git", "project": "arda", "username": "me", "password": "TOKEN"},
    }
    ssh = _stack(RK1, {"gitopsSshPrivateKey": "k"}, repoUrl="git@github.com:example/turing-pi.git")
    assert plan.repository_secret(ssh, "KEY")["stringData"] == {
        "type": "git",
        "url": "git@github.com:example/turing-pi.git",
        "project": "arda",
        "sshPrivateKey": "KEY",
    }


def test_the_mirrors_credentials() -> None:
    https = _stack(HOMELAB, {"gitopsToken": "t"}, private=True, username="me")
    assert plan.mirror_credential_kind(https) == "token"
    assert plan.mirror_credentials(https, "tok/en:1") == {"git-credentials": "https://me:tok%2Fen%3A1@github.com\n"}
    ssh = _stack(HOMELAB, {"gitopsSshPrivateKey": "k"}, repoUrl="git@github.com:example/homelab.git")
    assert plan.mirror_credential_kind(ssh) == "ssh"
    files = plan.mirror_credentials(ssh, "KEY")
    assert files["ssh-privatekey"] == "KEY"
    assert files["known_hosts"].splitlines() == list(plan.ARGOCD_KNOWN_HOSTS)
    assert plan.mirror_credential_kind(load_stack_file(HOMELAB)) is None
    assert (
        "GIT_SSH_COMMAND='ssh -i /credentials/ssh-privatekey -o IdentitiesOnly=yes -o UserKnownHostsFile=/credentials/known_hosts -o StrictHostKeyChecking=yes'"
        in (plan.mirror_script("git@github.com:e/h.git", "/srv/git", 600, "ssh"))
    )
    assert "GIT_CONFIG_VALUE_0='store --file=/credentials/git-credentials'" in plan.mirror_script(
        "https://github.com/e/h.git", "/srv/git", 600, "token"
    )


def test_the_mirror_loop_and_daemon_exactly() -> None:
    """Clone into a temporary folder (a half-clone is never served), fetch every interval, keep the last copy."""
    assert plan.mirror_script("https://github.com/e/h.git", "/srv/git", 600, "token").splitlines() == [
        "set -u",
        "export GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=credential.helper GIT_CONFIG_VALUE_0='store --file=/credentials/git-credentials'",
        "repo=/srv/git/repo.git",
        "url=https://github.com/e/h.git",
        'until [ -d "$repo" ]; do',
        '  rm -rf "$repo.tmp"',
        '  if git clone --mirror "$url" "$repo.tmp" && mv "$repo.tmp" "$repo"; then break; fi',
        '  echo "mirror: cloning $url failed; retrying" >&2; sleep 30',
        "done",
        "while true; do",
        '  git -C "$repo" remote set-url origin "$url"',
        '  git -C "$repo" remote update --prune || echo "mirror: fetching $url failed; serving the last copy" >&2',
        "  sleep 600",
        "done",
    ]
    assert plan.mirror_script("https://github.com/e/h.git", "/srv/git", 600, None).splitlines()[1] == "repo=/srv/git/repo.git"
    assert plan.mirror_daemon_command("/srv/git") == [
        "git",
        "daemon",
        "--reuseaddr",
        "--export-all",
        "--informative-errors",
        "--port=9418",
        "--base-path=/srv/git",
        "/srv/git",
    ]


def test_the_redis_secret_and_the_platform_project_exactly() -> None:
    managed = {"app.kubernetes.io/managed-by": "pulumi", "app.kubernetes.io/part-of": "iluvatar"}
    assert plan.redis_secret("PW") == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "argocd-redis", "namespace": "argocd", "labels": managed},
        "type": "Opaque",
        "stringData": {"auth": "PW"},
    }
    project = plan.platform_app_project()
    assert (project["metadata"], project["spec"]["sourceRepos"], project["spec"]["destinations"]) == (
        {"name": "platform", "namespace": "argocd", "labels": managed},
        ["*"],
        [{"server": "https://kubernetes.default.svc", "namespace": "*"}],
    )
    assert project["spec"]["clusterResourceWhitelist"] == [{"group": "*", "kind": "*"}]


def test_the_ainur_application_set_exactly() -> None:
    mirror = "git://git-mirror.netboot.svc.cluster.local/repo.git"
    assert plan.ainur_application_set(load_stack_file(HOMELAB)) == {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "ApplicationSet",
        "metadata": {
            "name": "ainur",
            "namespace": "argocd",
            "labels": {"app.kubernetes.io/managed-by": "pulumi", "app.kubernetes.io/part-of": "iluvatar"},
        },
        "spec": {
            "goTemplate": True,
            "goTemplateOptions": ["missingkey=error"],
            "generators": [{"git": {"repoURL": mirror, "revision": "main", "directories": [{"path": "ainur/*"}]}}],
            "template": {
                "metadata": {"name": "ainur-{{ .path.basenameNormalized }}"},
                "spec": {
                    "project": "ainur",
                    "source": {"repoURL": mirror, "targetRevision": "main", "path": "{{ .path.path }}"},
                    "destination": {"server": "https://kubernetes.default.svc", "namespace": "{{ .path.basenameNormalized }}"},
                    # The homelab heals only Arda's `system` category (a list), so the Ainur's add-ons do not self-heal.
                    "syncPolicy": {
                        "automated": {"prune": True, "selfHeal": False},
                        "syncOptions": ["ServerSideApply=true", "SkipDryRunOnMissingResource=true", "PruneLast=true", "CreateNamespace=true"],
                        "retry": {"limit": 10, "backoff": {"duration": "10s", "factor": 2, "maxDuration": "5m"}},
                    },
                },
            },
        },
    }
    healed = plan.ainur_application_set(_stack(HOMELAB, selfHeal=True))
    assert healed["spec"]["template"]["spec"]["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True}


def test_a_registry_given_by_the_caller_decides_the_categories() -> None:
    stack = load_stack_file(HOMELAB)
    # The caller's registry replaces the stack's: its categories join the defaults.
    assert [n["metadata"]["name"] for n in plan.namespaces(stack, ["games"])] == [*DEFAULT_CATEGORIES, "games"]
    assert [a["metadata"]["name"] for a in plan.application_sets(stack, "arda", ["games"])] == [*DEFAULT_CATEGORIES, "games"]
    assert [d["namespace"] for d in plan.git_app_project(stack, "arda", ["games"])["spec"]["destinations"]] == [*DEFAULT_CATEGORIES, "games"]


def test_the_mirror_credential_keeps_the_port_and_a_public_repository_has_none() -> None:
    stack = _stack(HOMELAB, {"gitopsToken": "t"}, private=True, username="me", repoUrl="https://git.example.com:8443/e/h.git")
    assert plan.mirror_credentials(stack, "tok") == {"git-credentials": "https://me:tok@git.example.com:8443\n"}
    with pytest.raises(ValueError, match=r"^a public https repository is mirrored without a credential$"):
        plan.mirror_credentials(load_stack_file(HOMELAB), "tok")


def test_the_platform_project_exactly() -> None:
    assert plan.platform_app_project()["spec"] == {
        "description": "Applications Pulumi generates from the inventory, with inline Helm values; synced by Argo CD",
        "sourceRepos": ["*"],
        "destinations": [{"server": "https://kubernetes.default.svc", "namespace": "*"}],
        "clusterResourceWhitelist": [{"group": "*", "kind": "*"}],
    }


def test_the_git_projects_exactly() -> None:
    stack = load_stack_file(HOMELAB)
    managed = {"app.kubernetes.io/managed-by": "pulumi", "app.kubernetes.io/part-of": "iluvatar"}
    server = "https://kubernetes.default.svc"
    fenced = {"clusterResourceWhitelist": [{"group": "*", "kind": "*"}], "clusterResourceBlacklist": [{"group": "", "kind": "Namespace"}]}
    denied = ["argocd", "default", "kube-node-lease", "kube-public", "kube-system", "netboot"]
    assert plan.git_app_project(stack, "ainur") == {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AppProject",
        "metadata": {"name": "ainur", "namespace": "argocd", "labels": managed},
        "spec": {
            "description": "The Ainur's add-ons from Git, one namespace each, never the Ainur's own services' namespaces",
            "sourceRepos": ["git://git-mirror.netboot.svc.cluster.local/repo.git"],
            "destinations": [*({"server": server, "namespace": f"!{ns}"} for ns in denied), {"server": server, "namespace": "*"}],
            **fenced,
        },
    }
    assert plan.git_app_project(stack, "arda") == {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AppProject",
        "metadata": {"name": "arda", "namespace": "argocd", "labels": managed},
        "spec": {
            "description": "Arda's apps from Git: one ApplicationSet per category, each deploying into its category's namespace",
            "sourceRepos": ["git://192.168.0.15/repo.git"],
            "destinations": [{"server": server, "namespace": c} for c in DEFAULT_CATEGORIES],
            **fenced,
        },
    }


def test_the_helm_values_exactly() -> None:
    """The values themselves (the renders above show what the chart makes of them; their cache hides them from mutmut)."""
    stack = load_stack_file(HOMELAB)
    arda = {
        "crds": {"install": True, "keep": True},
        "configs": {
            "cm": {"application.resourceTrackingMethod": "annotation", "admin.enabled": True, "kustomize.buildOptions": "--enable-helm"},
            "secret": {"createSecret": True},
        },
        "redisSecretInit": {"enabled": False},
        "dex": {"enabled": False},
        # No policy of the chart's (its metrics admitted every pod): the program's (network_policies).
        "global": {"networkPolicy": {"create": False}},
        # The homelab's monitoring scrapes Argo CD's three metrics endpoints (plans.monitoring).
        **{part: {"metrics": {"enabled": True, "serviceMonitor": {"enabled": True}}} for part in ("controller", "server", "repoServer")},
    }
    assert plan.helm_values(stack, "arda") == arda
    # The Ainur's seed is scraped by nobody (monitoring runs on Arda, and watches the Pis through node-exporter).
    ainur = {k: v for k, v in arda.items() if k not in ("controller", "server", "repoServer")}
    assert plan.helm_values(stack, "ainur") == {**ainur, "notifications": {"enabled": False}}
    # Without a mirror, over https: no SSH hosts either.
    assert plan.helm_values(load_stack_file(RK1), "arda") == arda


def test_the_users_ssh_hosts_only_when_argo_cd_reads_over_ssh_itself() -> None:
    lines = [
        "git.example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK0wmN/Cr3JXqmLW7u+g9pTh+wyqDHpSQEIQczXkVx9q",
        "git.example.com ssh-ed25519 AAAAC3Nz2",
    ]
    settings: dict[str, Any] = {"repoUrl": "git@git.example.com:me/homelab.git", "sshKnownHosts": lines}
    direct = _stack(RK1, {"gitopsSshPrivateKey": "k"}, **settings)
    assert plan.reads_upstream(direct) is True
    assert plan.helm_values(direct, "arda")["configs"]["ssh"] == {"extraHosts": "\n".join(lines)}
    # Through the Ainur's mirror Argo CD reads git://, never SSH: the hosts are the mirror's business.
    mirrored = _stack(HOMELAB, {"gitopsSshPrivateKey": "k"}, **settings)
    assert plan.reads_upstream(mirrored) is False
    assert "ssh" not in plan.helm_values(mirrored, "arda")["configs"]


def test_an_apps_path_at_the_repository_root() -> None:
    stack = _stack(RK1, appsPath=".")
    assert plan.category_application_set(stack, "media")["spec"]["generators"][0]["git"]["directories"] == [{"path": "media/*"}]


def test_a_platform_application_from_a_git_folder_and_its_refusals() -> None:
    app = plan.platform_application("lp", path="deploy/chart", repo_url="https://github.com/e/r.git", version="v1", values={}, namespace="n")
    assert app["spec"]["source"] == {
        "repoURL": "https://github.com/e/r.git",
        "path": "deploy/chart",
        "targetRevision": "v1",
        "helm": {"releaseName": "lp", "valuesObject": {}},
    }
    message = r"^platform application lp: give a chart \(Helm repository\) or a path \(Git repository\), not both or neither$"
    with pytest.raises(ValueError, match=message):
        plan.platform_application("lp", repo_url="https://e.org", version="1", values={}, namespace="n")
    with pytest.raises(ValueError, match=message):
        plan.platform_application("lp", chart="c", path="p", repo_url="https://e.org", version="1", values={}, namespace="n")
    with pytest.raises(ValueError, match=r"^the stack has no iluvatar:gitops$"):
        plan.gitops_of(parse_stack(without(dict(read_stack_file(RK1).config), GOES_WITH_GITOPS), frozenset()))


def test_each_manifest_owns_its_nested_values() -> None:
    """Pulumi and the tests edit manifests in place: an edit must never reach the caller's values or the next manifest."""
    values = {"pool": {"cidr": "192.168.0.0/24"}}
    app = plan.platform_application("x", chart="c", repo_url="https://e.org", version="1", values=values, namespace="n")
    app["spec"]["source"]["helm"]["valuesObject"]["pool"]["cidr"] = "10.0.0.0/8"
    app["spec"]["syncPolicy"]["retry"]["backoff"]["duration"] = "1s"
    appset = plan.category_application_set(load_stack_file(HOMELAB), "media")
    appset["spec"]["template"]["spec"]["syncPolicy"]["retry"]["backoff"]["duration"] = "1s"
    assert values == {"pool": {"cidr": "192.168.0.0/24"}}
    assert plan.RETRY == {"limit": 10, "backoff": {"duration": "10s", "factor": 2, "maxDuration": "5m"}}


def test_an_unscraped_components_policy_has_no_ingress_list() -> None:
    """The Ainur's controller is scraped by no one: its policy admits no one, with no `ingress` at all (an empty list is
    not stored, so each server-side apply of one would stamp its manager's time anew: plans.netpol.ingress)."""
    stack = load_stack_file(HOMELAB)
    policies = {p["metadata"]["name"]: p for p in plan.network_policies(stack, "ainur")}
    assert policies["iluvatar-argocd-application-controller"]["spec"] == {
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "argocd-application-controller"}},
        "policyTypes": ["Ingress"],
    }
    scraped = {p["metadata"]["name"]: p for p in plan.network_policies(stack, "arda")}
    assert scraped["iluvatar-argocd-application-controller"]["spec"]["ingress"] == [
        {
            "from": [
                {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
                }
            ],
            "ports": [{"port": "metrics", "protocol": "TCP"}],
        }
    ]
