"""A Helm release a killed `pulumi up` installed, `iluvatar recover`, and the recipe docs/bring-up.md gives for a stopped upgrade.

A real engine (v3.259, ../shared/engine-facts.md) killed while pulumi-kubernetes installed a `helm.v3.Release` left
the create pending; its provider outlived it and finished the install. The next `pulumi up` retried the create, and
Helm refused it: `cannot re-use a name that is still in use`. pulumi-kubernetes 4.32.0 creates a release with Helm's
install action and its defaults (provider/pkg/provider/helm_release.go:561-685, `helmCreate`: `action.NewInstall`,
the release's name, namespace, chart and values, `Replace` false, no adoption flag), which is what `helm install
NAME CHART --namespace NS --values FILE` runs (helm.sh/helm/v3 v3.20.2 cmd/helm/install.go:130, 224-317:
`action.NewInstall`, `runInstall`, `RunWithContext`). Helm's install refuses a name whose last revision is not uninstalled or
failed (pkg/action/install.go:531-553, availableName). So the real Helm here plays both the killed run's provider and
the retried create, on the test control plane, with the release the program declares and its values; and the state
`iluvatar recover` reads is the program's own run, exported as engine v3.259 exports it (tests/state_export.py).

Hooks are left out of both installs (`--no-hooks`): the control plane runs no pod, so a hook Job would never finish,
and neither the refusal nor the adoption depends on hooks.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from iluvatar import recover
from iluvatar.simulate import SecretValue
from plans import monitoring
from tests import runbook
from tests.edit import RK1, ROOT
from tests.sims import simulated
from tests.state_export import killed_up
from tools import gotools, upstream
from tools.kube_cluster import Cluster
from tools.kube_program import plain

pytestmark = pytest.mark.kube

RELEASE = "edge-certificates-cert-manager"  # a release of the rk1 stack: its chart holds its CRDs, Deployments and RBAC


IN_FLIGHT = [RELEASE, "edge-certificates-trust-manager", "edge-gateways-envoy-gateway"]  # three installs, as in the real run
SECTION = "## When a `pulumi up` stops half-way"


def documented(kind: str) -> str:
    """The one `kubectl ... delete secret` line docs/bring-up.md gives for a stopped run's release: `upgrade` for one a
    stopped upgrade left pending (a stopped install is `iluvatar recover`'s)."""
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


def recover_line() -> list[str]:
    """The `iluvatar recover` command of docs/bring-up.md's section, for the rk1 stack, as the venv runs it."""
    lines = runbook.commands("docs/bring-up.md", SECTION, stack="rk1")
    found = [shlex.split(line) for line in lines if line.startswith("iluvatar ")]
    assert found == [["iluvatar", "recover", "rk1"]], lines
    return [sys.executable, "-m", "iluvatar", *found[0][1:]]


def pulumi_export(tmp_path: Path, state: dict[str, Any]) -> dict[str, str]:
    """An environment whose `pulumi` answers the one command `iluvatar recover` runs, `pulumi stack export
    --show-secrets --stack rk1`, with the state: the CLI prints the deployment as JSON on its standard output
    (pulumi v3.259.0 pkg/cmd/pulumi/stack/stack_export.go). Anything else is refused."""
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    exported = tmp_path / "export.json"
    exported.write_text(json.dumps(state, indent=4))
    pulumi = folder / "pulumi"
    pulumi.write_text(
        '#!/bin/sh\n[ "$*" = "stack export --show-secrets --stack rk1" ] || { echo "not the export: $*" >&2; exit 3; }\n'
        f"exec cat {shlex.quote(str(exported))}\n"
    )
    pulumi.chmod(0o755)
    return {**os.environ, "PATH": f"{folder}{os.pathsep}{os.environ['PATH']}", "PYTHONUNBUFFERED": "1"}


def arda_state(cluster: Cluster, pending: list[str], inputs: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """rk1's state after a `pulumi up` killed while creating `pending`, Arda's provider reaching the test's cluster."""
    sim = simulated(RK1)
    provider = sim.named()["arda-kubernetes"]
    kubeconfig = {"arda-kubernetes": {**provider.inputs, "kubeconfig": SecretValue(cluster.kubeconfig.read_text())}}
    return killed_up(sim, pending, inputs={**kubeconfig, **(inputs or {})})


def records(cluster: Cluster, namespace: str, release: str) -> list[tuple[str, str]]:
    found = cluster.client.list("v1", "Secret", namespace, labelSelector=f"owner=helm,name={release}")
    return sorted((r["metadata"]["name"], r["metadata"]["labels"]["status"]) for r in found)


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


def test_a_release_a_killed_run_installed_is_adopted_after_iluvatar_recover(kube_talos: Cluster, tmp_path: Path) -> None:
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

    stopped = helm(kube_talos, tmp_path, *install)  # the killed run's provider, finishing what it started
    assert stopped.returncode == 0, stopped.stderr
    before = owned(kube_talos, release, namespace)
    assert {"Deployment/cert-manager", "Deployment/cert-manager-webhook", "Deployment/cert-manager-cainjector"} <= set(before)
    others = {s["metadata"]["uid"] for s in kube_talos.client.list("v1", "Secret", namespace)} - {
        s["metadata"]["uid"] for s in kube_talos.client.list("v1", "Secret", namespace, labelSelector=f"owner=helm,name={release}")
    }

    retried = helm(kube_talos, tmp_path, *install)  # the next `pulumi up`, retrying the pending create, without recover
    assert retried.returncode != 0
    assert "cannot re-use a name that is still in use" in retried.stderr

    env = pulumi_export(tmp_path, arda_state(kube_talos, IN_FLIGHT))
    dry = subprocess.run([*recover_line(), "--dry-run"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert (dry.returncode, dry.stderr) == (0, "")
    assert dry.stdout.splitlines()[:2] == [
        "rk1: 3 pending creates of a Helm release: dry run, nothing removed",
        f"  {RELEASE}: Helm release cert-manager/cert-manager: would remove Helm's record sh.helm.release.v1.cert-manager.v1 (deployed, chart cert-manager {inputs['version']})",
    ]
    assert records(kube_talos, namespace, release) == [("sh.helm.release.v1.cert-manager.v1", "deployed")]

    done = subprocess.run(recover_line(), env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stderr) == (0, "")
    nothing = recover.NO_RECORD
    lines = done.stdout.splitlines()
    assert lines[:4] == [
        "rk1: 3 pending creates of a Helm release",
        f"  {RELEASE}: Helm release cert-manager/cert-manager: removed Helm's record sh.helm.release.v1.cert-manager.v1 (deployed, chart cert-manager {inputs['version']}); its objects stay",
        f"  edge-certificates-trust-manager: Helm release cert-manager/trust-manager: {nothing}",
        f"  edge-gateways-envoy-gateway: Helm release envoy-gateway-system/eg: {nothing}",
    ]
    assert lines[4].startswith("next: `pulumi up`.")
    assert records(kube_talos, namespace, release) == []
    assert owned(kube_talos, release, namespace) == before, "every object of the release stays"
    assert {s["metadata"]["uid"] for s in kube_talos.client.list("v1", "Secret", namespace)} == others, "no other Secret touched"

    again = subprocess.run(recover_line(), env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)  # idempotent
    assert (again.returncode, again.stderr) == (0, "")
    assert again.stdout.splitlines()[1] == f"  {RELEASE}: Helm release cert-manager/cert-manager: {nothing}"

    adopted = helm(kube_talos, tmp_path, *install)  # `pulumi up` again: the same create
    assert adopted.returncode == 0, adopted.stderr
    assert owned(kube_talos, release, namespace) == before, "every object is the killed run's own, adopted, none made anew"
    assert records(kube_talos, namespace, release) == [(f"sh.helm.release.v1.{release}.v1", "deployed")]


WAIT_CHART = {
    "Chart.yaml": "apiVersion: v2\nname: front\nversion: 0.1.0\n",
    # Helm's install waits until a LoadBalancer Service has an ingress address (pkg/kube/ready.go:253-278): an event
    # the test makes (no load-balancer controller runs here), so the killed run's install is under way until it does.
    "templates/service.yaml": (
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {{ .Release.Name }}\n"
        "spec:\n  type: LoadBalancer\n  selector: {app: front}\n  ports: [{port: 80}]\n"
    ),
}


def test_recover_waits_for_the_killed_runs_install_to_finish_before_removing_its_record(kube_talos: Cluster, tmp_path: Path) -> None:
    """The killed run's provider is still installing (Helm's record `pending-install`): removing the record then would
    race its last write; the command waits until the install has written its outcome, then removes it."""
    chart = tmp_path / "front"
    for name, text in WAIT_CHART.items():
        (chart / name).parent.mkdir(parents=True, exist_ok=True)
        (chart / name).write_text(text)
    release = namespace = "front"
    program = plain(simulated(RK1).named()[RELEASE].inputs)
    # The pending create installs this chart: the one record it leaves is what `iluvatar recover` removes.
    state = arda_state(
        kube_talos, [RELEASE], {RELEASE: {**program, "name": release, "namespace": namespace, "chart": str(chart), "version": "0.1.0"}}
    )
    env = pulumi_export(tmp_path, state)
    helm_env = {**os.environ, **{f"HELM_{kind}_HOME": str(tmp_path / kind.lower()) for kind in ("CACHE", "CONFIG", "DATA")}}
    install = [str(gotools.build("helm")), "install", release, str(chart), "--namespace", namespace, "--create-namespace"]
    kubeconfig = ["--kubeconfig", str(kube_talos.kubeconfig)]
    # The killed run's provider: pulumi-kubernetes waits for the objects (helm_release.go:608, `Wait = !SkipAwait`).
    orphan = subprocess.Popen(
        [*install, "--wait", "--timeout", "10m", *kubeconfig], env=helm_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    waiting = None
    try:
        kube_talos.wait_for(
            "Helm to write the pending install's record",
            lambda: records(kube_talos, namespace, release) == [("sh.helm.release.v1.front.v1", "pending-install")],
        )
        waiting = subprocess.Popen(recover_line(), env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert waiting.stdout is not None
        assert waiting.stdout.readline() == "rk1: 1 pending create of a Helm release\n"
        said = waiting.stdout.readline()
        assert re.fullmatch(
            rf"  {RELEASE}: Helm release front/front: record v1 is pending-install: waiting until \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d UTC "
            "for the killed run's provider to finish it\n",
            said,
        ), said
        assert records(kube_talos, namespace, release) == [("sh.helm.release.v1.front.v1", "pending-install")], "nothing removed while it installs"

        service = kube_talos.client.get("v1", "Service", release, namespace)
        assert service is not None
        kube_talos.client.merge_patch(service, {"status": {"loadBalancer": {"ingress": [{"ip": "10.10.0.200"}]}}}, subresource="status")
        out, err = waiting.communicate(timeout=120)
        assert (waiting.returncode, err) == (0, "")
        assert out.splitlines()[0] == (
            f"  {RELEASE}: Helm release front/front: removed Helm's record sh.helm.release.v1.front.v1 (deployed, chart front 0.1.0); its objects stay"
        )
        assert orphan.wait(timeout=60) == 0, orphan.communicate()
    finally:
        for process in (orphan, waiting):
            if process is not None and process.poll() is None:
                process.kill()
                process.communicate()
    assert records(kube_talos, namespace, release) == []
    adopted = subprocess.run([*install, *kubeconfig], env=helm_env, capture_output=True, text=True, timeout=300)  # the retried create
    assert adopted.returncode == 0, adopted.stderr
    after = kube_talos.client.get("v1", "Service", release, namespace)
    assert after is not None and after["metadata"]["uid"] == service["metadata"]["uid"], "the killed run's Service, adopted"
    assert records(kube_talos, namespace, release) == [("sh.helm.release.v1.front.v1", "deployed")]


def test_recover_reaches_the_cluster_with_a_service_account_token_as_the_ainurs_provider_does(kube_talos: Cluster, tmp_path: Path) -> None:
    """The Ainur's provider holds no client certificate but a ServiceAccount token bound to cluster-admin
    (docs/bring-up.md, Credentials): the command reaches the cluster with it as a kubectl would."""
    kube_talos.client.apply(
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "iluvatar-pulumi", "namespace": "kube-system"}},
        field_manager="pulumi-kubernetes",
        force=True,
    )
    kube_talos.client.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "iluvatar-pulumi"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"kind": "ServiceAccount", "name": "iluvatar-pulumi", "namespace": "kube-system"}],
        },
        field_manager="pulumi-kubernetes",
        force=True,
    )
    admin = yaml.safe_load(kube_talos.kubeconfig.read_text())
    token_kubeconfig = {
        **admin,
        "users": [{"name": admin["users"][0]["name"], "user": {"token": kube_talos.token("kube-system", "iluvatar-pulumi")}}],
    }
    chart = tmp_path / "front"
    for name, text in WAIT_CHART.items():
        (chart / name).parent.mkdir(parents=True, exist_ok=True)
        (chart / name).write_text(text)
    release = namespace = "token-front"
    installed = helm(kube_talos, tmp_path, "install", release, str(chart), "--namespace", namespace, "--create-namespace")
    assert installed.returncode == 0, installed.stderr

    sim = simulated(RK1)
    named = sim.named()
    state = killed_up(
        sim,
        ["gitops-arda-release"],
        inputs={
            "gitops-arda-kubernetes": {**named["gitops-arda-kubernetes"].inputs, "kubeconfig": SecretValue(yaml.safe_dump(token_kubeconfig))},
            "gitops-arda-release": {
                **plain(named["gitops-arda-release"].inputs),
                **{"name": release, "namespace": namespace, "chart": str(chart), "version": "0.1.0"},
            },
        },
    )
    done = subprocess.run(recover_line(), env=pulumi_export(tmp_path, state), cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines()[1] == (
        "  gitops-arda-release: Helm release token-front/token-front: removed Helm's record sh.helm.release.v1.token-front.v1 (deployed, chart front 0.1.0); its objects stay"
    )
    assert records(kube_talos, namespace, release) == []


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
