"""A Helm release a stopped `pulumi up` installed, and the recipe docs/bring-up.md gives for it.

A real engine (v3.259, ../shared/engine-facts.md) killed while pulumi-kubernetes installed a `helm.v3.Release` left
the create pending; its provider outlived it and finished the install. The next `pulumi up` retried the create, and
Helm refused it: `cannot re-use a name that is still in use`. pulumi-kubernetes 4.32.0 creates a release with Helm's
install action and its defaults (provider/pkg/provider/helm_release.go, helmCreate: `Replace` false, no adoption
flag), and Helm's install refuses a name whose last revision is not uninstalled or failed (helm.sh/helm/v3
pkg/action/install.go, availableName). So the real Helm here plays both the stopped run's provider and the retried
create, on the test control plane, with the release the program declares and its values.

Hooks are left out of both installs (`--no-hooks`): the control plane runs no pod, so a hook Job would never finish,
and neither the refusal nor the adoption depends on hooks.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from plans import monitoring
from tests.edit import RK1, ROOT
from tests.sims import simulated
from tools import gotools, upstream
from tools.kube_cluster import Cluster
from tools.kube_program import plain

pytestmark = pytest.mark.kube

RELEASE = "edge-certificates-cert-manager"  # a release of the rk1 stack: its chart holds its CRDs, Deployments and RBAC


def documented(kind: str) -> str:
    """The one `kubectl ... delete secret` line docs/bring-up.md gives for a stopped run's release: `install` for one a
    stopped create installed, `upgrade` for one a stopped upgrade left pending."""
    lines = [line.strip() for line in (ROOT / "docs" / "bring-up.md").read_text().splitlines() if "delete secret" in line and "kubectl" in line]
    found = [line for line in lines if ("status=pending-upgrade" in line) == (kind == "upgrade")]
    assert len(found) == 1, lines
    return found[0]


def selector(kind: str, release: str) -> str:
    """The label selector the documented line deletes by, for this release."""
    command = documented(kind)
    found = re.fullmatch(r"kubectl --kubeconfig \S+ --namespace <namespace> delete secret --selector (\S+)", command)
    assert found is not None, command
    return found.group(1).replace("<release>", release)


def delete_as_kubectl_does(cluster: Cluster, namespace: str, labels: str) -> list[str]:
    """`kubectl delete secret --selector`: the listed objects, each deleted; their names."""
    records = cluster.client.list("v1", "Secret", namespace, labelSelector=labels)
    for record in records:
        cluster.client.delete(record)
    return [r["metadata"]["name"] for r in records]


def helm(cluster: Cluster, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **{f"HELM_{kind}_HOME": str(tmp_path / kind.lower()) for kind in ("CACHE", "CONFIG", "DATA")}}
    return subprocess.run(
        [str(gotools.build("helm")), *args, "--kubeconfig", str(cluster.kubeconfig)], env=env, capture_output=True, text=True, timeout=300
    )


def owned(cluster: Cluster, release: str, namespace: str) -> dict[str, str]:
    """Every object Helm made for the release, by kind and name, with its UID (created anew, it would have another)."""
    out: dict[str, str] = {}
    for api_version, kind, where in (
        ("apps/v1", "Deployment", namespace),
        ("v1", "ServiceAccount", namespace),
        ("v1", "Service", namespace),
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition", None),
        ("rbac.authorization.k8s.io/v1", "ClusterRole", None),
    ):
        for obj in cluster.client.list(api_version, kind, where):
            annotations = obj["metadata"].get("annotations") or {}
            if annotations.get("meta.helm.sh/release-name") == release and annotations.get("meta.helm.sh/release-namespace") == namespace:
                out[f"{kind}/{obj['metadata']['name']}"] = obj["metadata"]["uid"]
    return out


def _established(cluster: Cluster, name: str) -> bool:
    crd = cluster.client.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", name) or {}
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in (crd.get("status") or {}).get("conditions") or [])


def test_a_release_a_stopped_run_installed_is_adopted_after_the_documented_command(kube_talos: Cluster, tmp_path: Path) -> None:
    reg = simulated(RK1).named()[RELEASE]
    inputs: dict[str, Any] = plain(reg.inputs)
    release, namespace = str(inputs["name"]), str(inputs["namespace"])
    chart = upstream.chart(str(inputs["chart"]), str(inputs["version"]))
    values = tmp_path / "values.json"
    values.write_text(json.dumps(inputs.get("values") or {}))
    install = ["install", release, str(chart), "--namespace", namespace, "--create-namespace", "--values", str(values), "--no-hooks"]

    # What comes before the release in the program: the Prometheus Operator's CRDs (the chart turns its monitors on).
    for crd in monitoring.crds():
        kube_talos.client.apply(crd, field_manager="pulumi-kubernetes", force=True)
    kube_talos.wait_for("the monitoring CRDs established", lambda: all(_established(kube_talos, c["metadata"]["name"]) for c in monitoring.crds()))

    stopped = helm(kube_talos, tmp_path, *install)  # the stopped run's provider, finishing what it started
    assert stopped.returncode == 0, stopped.stderr
    before = owned(kube_talos, release, namespace)
    assert {"Deployment/cert-manager", "Deployment/cert-manager-webhook", "Deployment/cert-manager-cainjector"} <= set(before)

    retried = helm(kube_talos, tmp_path, *install)  # the next `pulumi up`, retrying the pending create
    assert retried.returncode != 0
    assert "cannot re-use a name that is still in use" in retried.stderr

    labels = selector("install", release)
    assert labels == f"owner=helm,name={release}"
    assert delete_as_kubectl_does(kube_talos, namespace, labels) == [f"sh.helm.release.v1.{release}.v1"], "Helm's record, and nothing else"

    adopted = helm(kube_talos, tmp_path, *install)  # `pulumi up` again
    assert adopted.returncode == 0, adopted.stderr
    assert owned(kube_talos, release, namespace) == before, "every object is the stopped run's own, adopted, none made anew"
    after = kube_talos.client.list("v1", "Secret", namespace, labelSelector=labels)
    assert [(r["metadata"]["name"], r["metadata"]["labels"]["status"]) for r in after] == [(f"sh.helm.release.v1.{release}.v1", "deployed")]


def test_an_upgrade_a_power_cut_stopped_goes_on_after_the_documented_command(kube_talos: Cluster, tmp_path: Path) -> None:
    """pulumi-kubernetes updates a release with Helm's upgrade action, which refuses a release whose newest revision is
    pending (helm v3.20.2 pkg/action/upgrade.go, `IsPending` -> errPending). A power cut during an upgrade that waits
    leaves exactly that: here Helm itself is killed while it waits for the upgraded release's pods."""
    reg = simulated(RK1).named()[RELEASE]
    inputs: dict[str, Any] = plain(reg.inputs)
    release, namespace = str(inputs["name"]) + "-upgrade", str(inputs["namespace"]) + "-upgrade"
    chart = upstream.chart(str(inputs["chart"]), str(inputs["version"]))
    values = tmp_path / "values.json"
    # Its own release and namespace (the first test's are in the same cluster); its cluster-wide objects not again.
    values.write_text(json.dumps({**(inputs.get("values") or {}), "crds": {"enabled": False}, "fullnameOverride": release}))
    for crd in monitoring.crds():
        kube_talos.client.apply(crd, field_manager="pulumi-kubernetes", force=True)
    kube_talos.wait_for("the monitoring CRDs established", lambda: all(_established(kube_talos, c["metadata"]["name"]) for c in monitoring.crds()))
    common = [release, str(chart), "--namespace", namespace, "--values", str(values), "--no-hooks"]
    installed = helm(kube_talos, tmp_path, "install", *common, "--create-namespace")
    assert installed.returncode == 0, installed.stderr

    labels = f"owner=helm,name={release}"

    def statuses() -> list[str]:
        return sorted(r["metadata"]["labels"]["status"] for r in kube_talos.client.list("v1", "Secret", namespace, labelSelector=labels))

    env = {**os.environ, **{f"HELM_{kind}_HOME": str(tmp_path / kind.lower()) for kind in ("CACHE", "CONFIG", "DATA")}}
    waiting = subprocess.Popen(
        [
            str(gotools.build("helm")),
            "upgrade",
            *common,
            "--wait",
            "--timeout",
            "10m",
            "--set",
            "replicaCount=2",
            "--kubeconfig",
            str(kube_talos.kubeconfig),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        kube_talos.wait_for("Helm to write the upgrade's pending revision", lambda: statuses() == ["deployed", "pending-upgrade"])
    finally:
        waiting.kill()  # the power cut: no chance to mark anything failed
        waiting.wait()
    assert statuses() == ["deployed", "pending-upgrade"]

    retried = helm(kube_talos, tmp_path, "upgrade", *common)  # the next `pulumi up`'s update
    assert retried.returncode != 0
    assert "another operation (install/upgrade/rollback) is in progress" in retried.stderr

    pending = selector("upgrade", release)
    assert pending == f"owner=helm,name={release},status=pending-upgrade"
    assert delete_as_kubectl_does(kube_talos, namespace, pending) == [f"sh.helm.release.v1.{release}.v2"]
    again = helm(kube_talos, tmp_path, "upgrade", *common)
    assert again.returncode == 0, again.stderr
    assert statuses() == ["deployed", "superseded"]
