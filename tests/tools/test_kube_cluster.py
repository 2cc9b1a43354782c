"""The control plane's pure parts, without starting one: which build stands for which version, the
nodes from the inventory, and pulumi-kubernetes's field-manager rules (tests/kube/ runs them for real)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from plans import netboot, storage
from stacks import load_stack_file
from stacks.load import read_stack_file
from tests.edit import HOMELAB, RK1
from tools import kube_cluster, kube_inventory
from tools.kube_cluster import BUILDS, ControlPlaneError, ProviderOptions, build_for, field_manager, normalized, pulumi_replacement, take_over


def test_every_kubernetes_version_the_stacks_use_has_a_control_plane() -> None:
    versions = set()
    for path in (HOMELAB, RK1):
        stack = load_stack_file(path)
        versions.add(stack.arda.kubernetes_version)
        if stack.ainur is not None:
            versions.add(stack.ainur.k3s_version)
    assert sorted(versions) == ["v1.35.1", "v1.35.8+k3s1"]
    # One build for both: Arda's version, and the Ainur's k3s minor.
    assert {v: build_for(v) for v in versions} == {
        "v1.35.1": ("kube-control-plane", "v1.35.1"),
        "v1.35.8+k3s1": ("kube-control-plane", "v1.35.1"),
    }
    assert kube_cluster.TALOS.tool == kube_cluster.K3S.tool == "kube-control-plane"
    assert set(kube_cluster.SHARED.values()) == {"kube-control-plane"}


def test_a_minor_with_no_build_says_what_to_add() -> None:
    with pytest.raises(ControlPlaneError) as e:
        build_for("v1.36.0")
    assert str(e.value) == (
        "no control plane is built for Kubernetes v1.36.0 (minor 1.36; built: 1.35): "
        "add a tools/kube-control-plane-<minor>/ module and its entry in tools.kube_cluster.BUILDS"
    )


# Staging modules kwok v0.8.0's debugging server needs at its own 0.36.1 (tools/kube-control-plane/go.mod): nothing the
# four Kubernetes commands link imports them.
KWOK_STAGING = {"k8s.io/cri-api": "v0.36.1", "k8s.io/cri-client": "v0.36.1"}


def test_each_build_is_a_registered_go_tool_with_the_version_it_names() -> None:
    from tools import gotools

    for tool, version in BUILDS.values():
        assert tool in gotools.TOOLS
        gomod = (gotools.TOOLS_DIR / gotools.TOOLS[tool].folder / gotools.TOOLS[tool].modfile).read_text()
        assert re.search(rf"^\tk8s\.io/kubernetes {re.escape(version)}$", gomod, re.M), tool
        staging = re.findall(r"^\t(k8s\.io/\S+) => (k8s\.io/\S+) (v\S+)$", gomod, re.M)
        # Every staging module pinned to the same release's published version, but kwok's two.
        assert staging and all(a == b and v == KWOK_STAGING.get(a, "v0" + version[2:]) for a, b, v in staging), tool
        assert {a for a, _, v in staging if v != "v0" + version[2:]} == set(KWOK_STAGING)


def test_each_build_reports_the_kubernetes_version_of_its_go_mod() -> None:
    from tools import gotools

    # hack/lib/version.sh's -X flags, for both version packages: what kube-apiserver answers at /version.
    assert gotools.program("kube-control-plane").ldflags == (
        "-X k8s.io/client-go/pkg/version.gitVersion=v1.35.1",
        "-X k8s.io/component-base/version.gitVersion=v1.35.1",
        "-X k8s.io/client-go/pkg/version.gitMajor=1",
        "-X k8s.io/component-base/version.gitMajor=1",
        "-X k8s.io/client-go/pkg/version.gitMinor=35",
        "-X k8s.io/component-base/version.gitMinor=35",
    )
    # Only the Kubernetes builds are stamped (the control plane and kubectl alone, from one go.mod): every other
    # tool keeps its cache key.
    assert [name for name in gotools.TOOLS if gotools.program(name).ldflags] == ["kube-control-plane", "kubectl"]
    assert gotools.program("kubectl").ldflags == gotools.program("kube-control-plane").ldflags
    # A replace wins over the require it replaces (the module requires k8s.io/kubectl v0.0.0, replaced by v0.35.1).
    tool = gotools.TOOLS["kube-control-plane"]
    assert [gotools.module_version(tool, m) for m in ("k8s.io/kubernetes", "k8s.io/kubectl", "sigs.k8s.io/kwok", "go.etcd.io/etcd/server/v3")] == [
        "v1.35.1",
        "v0.35.1",
        "v0.8.0",
        "v3.6.5",
    ]
    with pytest.raises(gotools.GoToolError, match=r"^tools/kube-control-plane/go\.mod does not require k8s\.io/nothing$"):
        gotools.module_version(tool, "k8s.io/nothing")
    # A pre-release's minor takes a "+", as version.sh writes it; what is not semver is refused, as version.sh refuses it.
    assert gotools.kubernetes_ldflags("v1.35.0-rc.1")[4:] == (
        "-X k8s.io/client-go/pkg/version.gitMinor=35+",
        "-X k8s.io/component-base/version.gitMinor=35+",
    )
    with pytest.raises(gotools.GoToolError, match=r"^'1\.34\.1' is not a Kubernetes version"):
        gotools.kubernetes_ldflags("1.34.1")
    with pytest.raises(gotools.GoToolError, match="the Go tool helm is not built from Kubernetes"):
        gotools.kubernetes_version("helm")


def test_the_kubectl_the_scripts_run_is_kubernetes_own_at_the_control_planes_version() -> None:
    """The one program here this file runs: the scripts' `k3s kubectl` (tests/netns/pis.py, tests/kube) is kubectl
    alone, and says the version `k3s kubectl` of the Ainur's minor says, as the control plane's does."""
    import json
    import subprocess

    from tools import gotools

    seen = {}
    for name, command in (
        ("kubectl", [str(gotools.build("kubectl"))]),
        ("kube-control-plane", [str(gotools.build("kube-control-plane")), "kubectl"]),
    ):
        out = subprocess.run([*command, "version", "--client", "-o", "json"], capture_output=True, text=True, timeout=60, check=True)
        seen[name] = {k: v for k, v in json.loads(out.stdout)["clientVersion"].items() if k != "goVersion"}
    assert seen["kubectl"]["gitVersion"] == "v1.35.1"
    assert seen["kubectl"] == seen["kube-control-plane"]


def test_homelab_nodes_are_labelled_as_talos_and_k3s_register_them() -> None:
    stack = load_stack_file(HOMELAB)
    arda = {n["metadata"]["name"]: n for n in kube_inventory.nodes(stack, "arda")}
    assert list(arda) == ["taniquetil", "tirion", "alqualonde", "gandalf", "saruman"]
    assert arda["tirion"]["metadata"] == {
        "name": "tirion",
        "labels": {
            "beta.kubernetes.io/arch": "amd64",
            "beta.kubernetes.io/os": "linux",
            "iluvatar/board": "generic-x86",
            "iluvatar/role": "valinor",
            "iluvatar/storage": "true",
            "kubernetes.io/arch": "amd64",
            "kubernetes.io/hostname": "tirion",
            "kubernetes.io/os": "linux",
            "node-role.kubernetes.io/control-plane": "",
            "node.kubernetes.io/exclude-from-external-load-balancers": "",
        },
        "annotations": {"iluvatar/data-disks": "/dev/nvme0n1"},
    }
    assert arda["tirion"]["spec"] == {"taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]}
    assert arda["tirion"]["status"]["addresses"] == [{"type": "InternalIP", "address": "192.168.0.22"}, {"type": "Hostname", "address": "tirion"}]
    assert arda["tirion"]["status"]["nodeInfo"]["kubeletVersion"] == "v1.35.1"
    assert arda["gandalf"]["metadata"]["labels"]["iluvatar/role"] == "istari"
    assert "iluvatar/storage" not in arda["gandalf"]["metadata"]["labels"]
    assert arda["gandalf"]["spec"] == {} and arda["gandalf"]["metadata"]["annotations"] == {}
    ainur = {n["metadata"]["name"]: n for n in kube_inventory.nodes(stack, "ainur")}
    assert list(ainur) == ["manwe", "eonwe", "ilmare"]
    assert ainur["manwe"]["metadata"]["labels"] == {
        "beta.kubernetes.io/arch": "arm64",
        "beta.kubernetes.io/instance-type": "k3s",
        "beta.kubernetes.io/os": "linux",
        "iluvatar/role": "valar",
        "kubernetes.io/arch": "arm64",
        "kubernetes.io/hostname": "manwe",
        "kubernetes.io/os": "linux",
        "node-role.kubernetes.io/control-plane": "true",
        "node-role.kubernetes.io/etcd": "true",
        "node-role.kubernetes.io/master": "true",
        "node.kubernetes.io/instance-type": "k3s",
    }
    assert ainur["eonwe"]["metadata"]["labels"]["iluvatar/role"] == "maiar"
    assert "node-role.kubernetes.io/control-plane" not in ainur["eonwe"]["metadata"]["labels"]
    # k3s servers take workloads: no taint on any Pi. Longhorn's label comes from the program's NodePatch, not here.
    assert all(n["spec"] == {} for n in ainur.values())
    assert ainur["manwe"]["status"]["nodeInfo"]["kubeletVersion"] == "v1.35.8+k3s1"


def test_rk1_control_planes_take_workloads() -> None:
    stack = load_stack_file(RK1)
    arda = kube_inventory.nodes(stack, "arda")
    assert stack.arda.allow_scheduling_on_control_planes
    assert [n["spec"] for n in arda] == [{}] * len(arda)
    assert kube_inventory.nodes(stack, "ainur") == []


def test_field_managers_are_the_providers_form() -> None:
    # resource.NewUniqueName(seed, "pulumi-kubernetes-", 0, 0, nil): the prefix and 8 hex digits.
    assert re.fullmatch(r"pulumi-kubernetes-[0-9a-f]{8}", field_manager("urn:pulumi:homelab::iluvatar::x"))
    assert field_manager("a") == field_manager("a") != field_manager("b")
    assert ProviderOptions.from_inputs({"upsertExistingObjects": "true"}) == ProviderOptions(upsert_existing_objects=True)
    assert ProviderOptions.from_inputs({}) == ProviderOptions(server_side_apply=True, upsert_existing_objects=False, enable_patch_force=False)


def test_a_configmaps_data_is_replaced_unless_the_provider_says_mutable() -> None:
    """pulumi-kubernetes 4.32.0's own cases (provider/pkg/provider/diff_test.go:209-240): a ConfigMap's data change is a
    replacement without enableConfigMapMutable, an update with it, and a replacement again when it is immutable; a
    replacement under the same name deletes first (provider.go:1645-1658)."""
    old: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "n"}, "data": {"property1": "3"}}
    new = {**old, "data": {"property1": "4"}}
    mutable = ProviderOptions.from_inputs({"enableConfigMapMutable": "true"})
    assert pulumi_replacement(old, new) == ([".data"], True)
    assert pulumi_replacement(old, new, mutable) == ([], False)
    assert pulumi_replacement({**old, "immutable": True}, {**new, "immutable": True}, mutable) == ([".data"], True)
    renamed = {**new, "metadata": {"name": "d", "namespace": "n"}}
    assert pulumi_replacement(old, renamed, mutable) == ([".metadata.name"], False)
    # Its name alone unchanged: nothing.
    assert pulumi_replacement(old, {**old, "metadata": {**old["metadata"], "labels": {"a": "b"}}}) == ([], False)
    with pytest.raises(NotImplementedError):
        pulumi_replacement({"apiVersion": "apps/v1", "kind": "Deployment"}, {"apiVersion": "apps/v1", "kind": "Deployment"})


def test_a_secrets_string_data_is_sent_as_data() -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "uid": "x"}, "data": {"a": "YQ=="}, "stringData": {"b": "b"}}
    assert normalized(secret) == {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"a": "YQ==", "b": "Yg=="}}


def test_the_client_side_manager_is_taken_over_as_the_provider_does() -> None:
    entries = [
        {"manager": "pulumi-kubernetes", "operation": "Update", "apiVersion": "v1", "fieldsV1": {"f:data": {"f:a": {}}}},
        {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1", "fieldsV1": {"f:metadata": {}}},
        {"manager": "kubectl", "operation": "Update", "apiVersion": "v1", "fieldsV1": {"f:data": {"f:b": {}}}},
        {"manager": "pulumi-kubernetes", "operation": "Update", "subresource": "status", "fieldsV1": {"f:status": {}}},
    ]
    assert take_over(entries, "pulumi-kubernetes-12345678") == [
        entries[1],
        entries[3],
        {"manager": "pulumi-kubernetes-12345678", "operation": "Apply", "apiVersion": "v1", "fieldsV1": {"f:data": {"f:a": {}, "f:b": {}}}},
    ]
    assert take_over(entries[1:2], "pulumi-kubernetes-12345678") is None


def test_no_other_workload_of_ours_calls_the_api() -> None:
    """The netboot pod's lease scripts are the program's only in-cluster API client (tests/netns proves
    their Role); the Git mirror runs git, the retire Job runs ceph: neither reads a token or the API."""
    stack = read_stack_file(HOMELAB).parse()
    assert stack.ainur is not None
    mirror = [c for d in netboot.git_mirror_manifests(stack) if d["kind"] == "Deployment" for c in d["spec"]["template"]["spec"]["containers"]]
    retire = storage.retire_job(stack.arda_nodes[0].model_copy(update={"retire": True}))
    scripts: list[Any] = [c.get("command") for c in mirror] + [c.get("command") for c in retire["spec"]["template"]["spec"]["containers"]]
    text = repr(scripts)
    assert scripts and not any(word in text for word in ("KUBERNETES_SERVICE", "serviceaccount", "kubectl", "/api/v1"))
    assert "KUBERNETES_SERVICE_HOST" in netboot.restore_leases_script() and "KUBERNETES_SERVICE_HOST" in netboot.save_leases_script(
        address=str(stack.ainur.service_ip)
    )
