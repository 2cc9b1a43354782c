"""Charts from upstream modules: prepared as their releases package them, rendered by real Helm."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from tools import upstream
from tools.upstream import ChartSource

KUBE = "v1.35.1"


def _meta(chart: Path) -> dict[str, Any]:
    meta: dict[str, Any] = yaml.safe_load((chart / "Chart.yaml").read_text())
    return meta


def _values(chart: Path) -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load((chart / "values.yaml").read_text())
    return values


def test_cilium_is_its_module_folder_as_is() -> None:
    chart = upstream.chart("cilium", "1.18.4")
    assert (_meta(chart)["version"], _meta(chart)["appVersion"]) == ("1.18.4", "1.18.4")
    assert (chart / "values.schema.json").is_file()


def test_envoy_gateway_fills_its_values_template_and_version() -> None:
    chart = upstream.chart("gateway-helm", "v1.9.0")
    assert (_meta(chart)["version"], _meta(chart)["appVersion"]) == ("v1.9.0", "v1.9.0")
    assert _values(chart)["global"]["images"]["envoyGateway"] == {
        "image": "docker.io/envoyproxy/gateway:v1.9.0",
        "pullPolicy": "IfNotPresent",
        "pullSecrets": [],
    }
    assert (chart / "charts" / "crds" / "Chart.yaml").is_file()


def test_cert_manager_is_its_chart_template_filled_in() -> None:
    chart = upstream.chart("cert-manager", "v1.19.2")
    meta = _meta(chart)
    assert (meta["version"], meta["appVersion"]) == ("v1.19.2", "v1.19.2")
    assert meta["annotations"]["artifacthub.io/prerelease"] == "false"
    assert meta["annotations"]["artifacthub.io/signKey"].startswith("fingerprint: 1020CF3C033D4F35BAE1C19E1226061C665DF13E\n")
    assert not (chart / "Chart.template.yaml").exists() and not (chart / "signkey_annotation.txt").exists()


def test_trust_manager_gets_its_trust_package_tag() -> None:
    chart = upstream.chart("trust-manager", "v0.25.0")
    assert (_meta(chart)["version"], _meta(chart)["appVersion"]) == ("v0.25.0", "v0.25.0")
    assert _values(chart)["defaultPackageImage"]["_defaultReference"] == ":20250419.2"


def test_rook_gets_its_version_and_local_library() -> None:
    cluster = upstream.chart("rook-ceph-cluster", "v1.20.4")
    assert (_meta(cluster)["version"], _meta(cluster)["appVersion"]) == ("v1.20.4", "v1.20.4")
    assert _meta(cluster / "charts" / "library")["name"] == "library"
    # Rook's recipe replaces every `master` in values.yaml, documentation links included.
    assert "master" not in (cluster / "values.yaml").read_text()
    assert "https://github.com/rook/rook/blob/v1.20.4/Documentation/CRDs/Cluster/ceph-cluster-crd.md" in (cluster / "values.yaml").read_text()
    operator = upstream.chart("rook-ceph", "v1.20.4", omit=["ceph-csi-operator"])
    assert _values(operator)["image"] == {"repository": "docker.io/rook/ceph", "tag": "v1.20.4", "pullPolicy": "IfNotPresent"}
    assert [d["name"] for d in _meta(operator)["dependencies"]] == ["library"]


def test_argo_cd_comes_from_a_commit_with_its_subchart() -> None:
    chart = upstream.chart("argo-cd", "10.8.0")
    assert (_meta(chart)["version"], _meta(chart)["appVersion"]) == ("10.8.0", "v3.5.2")
    assert _meta(chart / "charts" / "redis-ha")["version"] == "4.38.0"


def test_a_dependency_no_module_provides_is_named() -> None:
    with pytest.raises(upstream.UpstreamError) as error:
        upstream.chart("rook-ceph", "v1.20.4")
    assert str(error.value) == (
        "chart rook-ceph v1.20.4 depends on ceph-csi-operator 1.0.4 from https://ceph.github.io/ceph-csi-operator, which no pinned "
        "Go module provides; render it with omit={'ceph-csi-operator'} only if its condition (csi.installCsiOperator) is off"
    )


def test_an_unpinned_chart_version_is_named() -> None:
    with pytest.raises(
        upstream.UpstreamError,
        match=r"^chart argo-cd 10\.4\.1 is not pinned \(pinned: 10\.8\.0\): add its commit to CHARTS in tools/upstream/charts\.py$",
    ):
        upstream.chart("argo-cd", "10.4.1")
    with pytest.raises(upstream.UpstreamError, match=r"^no chart named 'argo' \(known: argo-cd, "):
        upstream.chart("argo", "10.8.0")


def test_a_folder_holding_another_version_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = ChartSource("cilium", "github.com/cilium/cilium", "install/kubernetes/cilium", versions={"1.18.5": "v1.18.4"})
    monkeypatch.setitem(upstream.CHARTS, "cilium", wrong)
    with pytest.raises(
        upstream.UpstreamError, match=r"^github.com/cilium/cilium@v1.18.4/install/kubernetes/cilium is chart cilium 1.18.4, not cilium 1.18.5$"
    ):
        upstream.chart("cilium", "1.18.5")


# Every pinned chart, rendered by real Helm with its defaults (plus what makes it render fully),
# and every object it renders checked by real kubeconform against the pinned schemas.
RENDERS = [
    ("cilium", "1.18.4", (), {}, [("cilium", "1.18.4")], 23),
    ("gateway-helm", "v1.9.0", (), {}, [("envoy-gateway", "v1.9.0")], 40),
    ("cert-manager", "v1.19.2", (), {"crds": {"enabled": True}}, [("cert-manager", "v1.19.2")], 52),
    ("trust-manager", "v0.25.0", (), {}, [("trust-manager", "v0.25.0"), ("cert-manager", "v1.19.2")], 15),
    ("rook-ceph", "v1.20.4", ("ceph-csi-operator",), {"csi": {"installCsiOperator": False}}, [("rook", "v1.20.4")], 59),
    ("rook-ceph-cluster", "v1.20.4", (), {}, [("rook", "v1.20.4")], 27),
    ("argo-cd", "10.8.0", (), {"redis-ha": {"enabled": True}}, [("argo-cd", "v3.5.2")], 72),
]


@pytest.mark.parametrize(("name", "version", "omit", "values", "crds", "count"), RENDERS, ids=[r[0] for r in RENDERS])
def test_every_pinned_chart_renders_and_passes_kubeconform(
    name: str, version: str, omit: tuple[str, ...], values: dict[str, Any], crds: list[tuple[str, str]], count: int
) -> None:
    objects = upstream.helm_template(upstream.chart(name, version, omit), values, release=name, namespace="system", kube_version=KUBE)
    assert len(objects) == count
    assert upstream.kubeconform(objects, KUBE, crds=crds) == []


def test_the_crds_a_chart_renders_are_its_schemas() -> None:
    objects = upstream.helm_template(upstream.chart("argo-cd", "10.8.0"), {}, release="argocd", namespace="argocd", kube_version=KUBE)
    assert Counter(o["kind"] for o in objects)["CustomResourceDefinition"] == 3
    folder = upstream.crd_schema_dir_of(objects)
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*.json")) == [
        "argoproj.io/application_v1alpha1.json",
        "argoproj.io/applicationset_v1alpha1.json",
        "argoproj.io/appproject_v1alpha1.json",
    ]
    project = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AppProject",
        "metadata": {"name": "arda", "namespace": "argocd"},
        "spec": {"sourceRepos": "*"},
    }
    assert upstream.kubeconform([project], KUBE, crd_dirs=[folder]) == ["AppProject arda: /spec/sourceRepos: got string, want array"]


def test_helm_applies_a_charts_own_values_schema() -> None:
    with pytest.raises(upstream.HelmError) as error:
        upstream.helm_template(
            upstream.chart("cert-manager", "v1.19.2"), {"crds": {"enabeld": True}}, release="cm", namespace="cm", kube_version=KUBE
        )
    assert "values don't meet the specifications of the schema(s)" in str(error.value)
    assert "additional properties 'enabeld' not allowed" in str(error.value)


def test_values_errors_needs_a_values_schema() -> None:
    assert upstream.values_errors(upstream.chart("cert-manager", "v1.19.2"), {"crds": {"enabled": True}}) == []
    assert upstream.values_errors(upstream.chart("cert-manager", "v1.19.2"), {"replicaCount": "1"}) == ["replicaCount: '1' is not of type 'number'"]
    with pytest.raises(upstream.UpstreamError, match=r"^rook-ceph-cluster ships no values.schema.json: its values are checked only by rendering$"):
        upstream.values_errors(upstream.chart("rook-ceph-cluster", "v1.20.4"), {})


def test_helm_template_passes_release_namespace_and_kube_version() -> None:
    chart = upstream.chart("cilium", "1.18.4")
    objects = upstream.helm_template(chart, {}, release="cni", namespace="net", kube_version="v1.33.0")
    [agent] = [o for o in objects if o["kind"] == "DaemonSet" and o["metadata"]["name"] == "cilium"]
    assert agent["metadata"]["namespace"] == "net"
    with pytest.raises(upstream.HelmError, match=r"chart requires kubeVersion: >= 1\.21\.0-0 which is incompatible with Kubernetes v1\.20\.0"):
        upstream.helm_template(chart, {}, release="cni", namespace="net", kube_version="v1.20.0")
