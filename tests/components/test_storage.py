"""The storage component through the real program under mocks: what it registers, in what order, and
the last deployment's output read back before anything is created."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
import pytest

from iluvatar.simulate import READ_STACK_OUTPUTS, Simulation
from stacks import read_stack_file
from tests.edit import GOES_WITH_GITOPS, HOMELAB, RK1, edit, homelab_doc, write_stack
from tests.sims import simulate, simulated

APPLICATION = "kubernetes:argoproj.io/v1alpha1:Application"
LONGHORN_POLICIES = (
    "backing-image-data-source",
    "backing-image-manager",
    "instance-manager",
    "longhorn-admission-webhook",
    "longhorn-manager",
    "longhorn-recovery-backend",
    "longhorn-support-bundle-manager",
    "longhorn-ui",
)
DEPLOYED = {
    "cephOsds": {"alqualonde": ["/dev/nvme0n1"], "taniquetil": ["/dev/nvme0n1"], "tirion": ["/dev/nvme0n1"]},
    "cephRetiring": {},
}


@pytest.fixture(scope="module")
def homelab() -> Simulation:
    return simulated(HOMELAB)


def _run(tmp_path: Path, name: str, doc: dict[str, Any], previous: dict[str, Any] | None = None) -> Simulation:
    folder = tmp_path / name
    folder.mkdir()
    return simulate(read_stack_file(write_stack(folder, doc, stack="homelab")), previous=previous)


def _names(sim: Simulation, urns: tuple[str, ...]) -> set[str]:
    return {r.name for r in sim.registrations if r.urn in urns}


def test_storage_registers_its_applications_namespaces_and_labels(homelab: Simulation) -> None:
    regs = homelab.named()
    assert regs["storage"].type == "iluvatar:storage:Storage"
    assert sorted(r.name for r in homelab.children(regs["storage"])) == [
        "storage-ainur-longhorn",
        # Longhorn's encrypted class: its protected passphrase (and the random provider), the Secret, the class.
        "storage-ainur-longhorn-crypto",
        "storage-ainur-namespace-longhorn-system",
        # Who reaches Longhorn's listeners (plans.storage.longhorn_network_policies).
        *(f"storage-ainur-networkpolicy-{p}" for p in LONGHORN_POLICIES),
        "storage-ainur-node-eonwe", "storage-ainur-node-ilmare",
        "storage-ainur-node-manwe", "storage-ainur-random",
        "storage-ainur-secret-longhorn-crypto", "storage-ainur-storageclass-longhorn-encrypted",
        "storage-arda-local-path-provisioner", "storage-arda-namespace-local-path-storage",
        "storage-arda-namespace-rook-ceph", "storage-arda-rook-ceph", "storage-arda-rook-ceph-cluster",
        # The CSI snapshot CRDs and controller: the homelab's backups snapshot volumes on Ceph (plans.backup).
        "storage-arda-snapshot-controller", "storage-arda-snapshot-crds",
    ]  # fmt: skip
    cluster = regs["storage-arda-rook-ceph-cluster-application-rook-ceph-cluster"]
    assert cluster.type == APPLICATION
    assert cluster.provider.startswith(regs["gitops-arda-kubernetes"].urn + "::")
    # Argo CD syncs it only once its privileged namespace exists.
    assert _names(homelab, cluster.dependencies) == {"gitops-arda-release", "gitops-arda-appproject-platform", "storage-arda-namespace-rook-ceph"}
    values = cluster.inputs["spec"]["source"]["helm"]["valuesObject"]
    assert values["cephClusterSpec"]["storage"]["nodes"] == [
        {"name": n, "devices": [{"name": "/dev/nvme0n1"}]} for n in ("taniquetil", "tirion", "alqualonde")
    ]
    longhorn = regs["storage-ainur-longhorn-application-longhorn"]
    assert longhorn.provider.startswith(regs["gitops-ainur-kubernetes"].urn + "::")
    # Its chart runs no pod before its listeners are behind their policies, each in Pulumi's namespace.
    assert _names(homelab, longhorn.dependencies) == {
        "gitops-ainur-release",
        "gitops-ainur-appproject-platform",
        "storage-ainur-namespace-longhorn-system",
        *(f"storage-ainur-networkpolicy-{p}" for p in LONGHORN_POLICIES),
    }
    for policy in LONGHORN_POLICIES:
        assert _names(homelab, regs[f"storage-ainur-networkpolicy-{policy}"].dependencies) == {"storage-ainur-namespace-longhorn-system"}
    namespace = regs["storage-arda-namespace-rook-ceph"].inputs["metadata"]
    assert namespace["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    pi = regs["storage-ainur-node-manwe"]
    assert pi.type == "kubernetes:core/v1:NodePatch"
    assert pi.inputs["metadata"] == {"name": "manwe", "labels": {"node.longhorn.io/create-default-disk": "true"}}
    assert _names(homelab, pi.dependencies) == {"ainur-manwe-join"}


def test_the_output_records_the_osd_disks_and_classes(homelab: Simulation) -> None:
    assert homelab.outputs["storage"] == {
        **DEPLOYED,
        "classes": {"arda": {"ceph-block": True, "ceph-filesystem": False, "local-path": False}, "ainur": {"longhorn": True}},
    }
    assert (READ_STACK_OUTPUTS, {"name": "organization/iluvatar/homelab"}) in homelab.invocations


def test_rk1_has_ceph_on_its_four_rk1_disks() -> None:
    sim = simulated(RK1)
    values = sim.named()["storage-arda-rook-ceph-cluster-application-rook-ceph-cluster"].inputs["spec"]["source"]["helm"]["valuesObject"]
    assert [n["name"] for n in values["cephClusterSpec"]["storage"]["nodes"]] == ["talos-1", "talos-2", "talos-3", "talos-4"]
    assert values["cephBlockPools"][0]["spec"] == {"failureDomain": "host", "replicated": {"size": 3, "requireSafeReplicaSize": True}}
    assert sim.outputs["storage"]["classes"] == {"arda": {"ceph-block": True, "local-path": False}}


def test_adding_a_disk_changes_only_that_nodes_storage_values(tmp_path: Path) -> None:
    def state(sim: Simulation) -> dict[str, Any]:
        return {r.name: (r.type, r.inputs, _names(sim, r.dependencies)) for r in sim.registrations}

    before = state(_run(tmp_path, "before", homelab_doc()))
    after = state(_run(tmp_path, "after", edit(homelab_doc(), {"iluvatar:nodes[4].dataDisks": ["/dev/nvme0n1", "/dev/nvme1n1"]})))
    assert set(before) == set(after)
    # Tirion's own machine config (its data-disks annotation) and the CephCluster's values.
    changed = sorted(n for n in before if before[n] != after[n])
    assert changed == ["arda-tirion-apply", "storage-arda-rook-ceph-cluster-application-rook-ceph-cluster"]


def test_an_unretired_removal_is_refused_before_any_resource(tmp_path: Path) -> None:
    doc = edit(homelab_doc(), {"iluvatar:nodes[4].dataDisks": ["/dev/nvme1n1"]})
    sim = Simulation(stack="homelab")
    folder = tmp_path / "refused"
    folder.mkdir()
    with pytest.raises(pulumi.RunError) as err:
        simulate(read_stack_file(write_stack(folder, doc, stack="homelab")), record=sim, previous={"storage": DEPLOYED})
    assert sim.registrations == []
    assert str(err.value).splitlines() == [
        "stack homelab: 1 problem:",
        "  iluvatar:nodes[4].dataDisks: /dev/nvme0n1 left tirion's dataDisks, but it ran a Ceph OSD at the last deployment; removing it now "
        "takes its copies with it. Put it back, set retire: [/dev/nvme0n1] on tirion, run `pulumi up`, wait for the Job osd-retire-tirion "
        "to complete, then remove it (docs/day2.md#retiring-a-disk-or-a-machine)",
    ]


def test_the_retire_path_is_the_easy_one(tmp_path: Path) -> None:
    """Retire (a Job takes the OSD out), then remove: both runs are accepted."""
    two = ["/dev/nvme0n1", "/dev/nvme1n1"]
    deployed = {**DEPLOYED, "cephOsds": {**DEPLOYED["cephOsds"], "tirion": two}}
    retiring = _run(
        tmp_path, "retire", edit(homelab_doc(), {"iluvatar:nodes[4].dataDisks": two, "iluvatar:nodes[4].retire": ["/dev/nvme1n1"]}), deployed
    )
    job = retiring.named()["storage-arda-job-osd-retire-tirion"]
    assert job.type == "kubernetes:batch/v1:Job"
    assert _names(retiring, job.dependencies) == {"storage-arda-namespace-rook-ceph", "storage-arda-rook-ceph-cluster-application-rook-ceph-cluster"}
    assert retiring.outputs["storage"]["cephRetiring"] == {"tirion": ["/dev/nvme1n1"]}
    removed = _run(tmp_path, "removed", homelab_doc(), retiring.outputs["storage"])
    assert removed.outputs["storage"]["cephOsds"] == DEPLOYED["cephOsds"]
    assert "storage-arda-job-osd-retire-tirion" not in removed.named()


def test_without_gitops_nothing_is_installed_and_the_osds_are_remembered(tmp_path: Path) -> None:
    # With GitOps, what goes with it (tests.edit.GOES_WITH_GITOPS): Monitoring, Headlamp, the apps' backups.
    doc = edit(
        homelab_doc(),
        {"iluvatar:ainur.gitMirror.url": "https://github.com/example/homelab.git"},
        delete=list(GOES_WITH_GITOPS),
    )
    sim = _run(tmp_path, "no-gitops", doc, {"storage": DEPLOYED})
    assert [r.name for r in sim.registrations if r.name.startswith("storage")] == ["storage"]
    assert sim.outputs["storage"]["cephOsds"] == DEPLOYED["cephOsds"]


def test_the_encrypted_class_waits_for_its_secret_and_longhorn_and_its_passphrase_is_protected_and_secret(homelab: Simulation) -> None:
    """A claim of the class binds only once Longhorn's driver and the Secret are there (the sidecars read it at
    provisioning); a new passphrase would leave every encrypted volume unopenable, so it is protected; its value is a
    secret in the state and the Secret's inputs (plans.storage.crypto_secret)."""
    regs = homelab.named()
    cls = regs["storage-ainur-storageclass-longhorn-encrypted"]
    assert _names(homelab, cls.dependencies) == {"storage-ainur-longhorn-application-longhorn", "storage-ainur-secret-longhorn-crypto"}
    assert cls.inputs["parameters"]["encrypted"] == "true"
    secret = regs["storage-ainur-secret-longhorn-crypto"]
    assert _names(homelab, secret.dependencies) == {"storage-ainur-longhorn-crypto", "storage-ainur-namespace-longhorn-system"}
    assert set(secret.options()["additionalSecretOutputs"]) == {"data", "stringData"}
    assert type(secret.inputs["stringData"]).__name__ == "SecretValue"
    passphrase = regs["storage-ainur-longhorn-crypto"]
    assert (passphrase.protect, passphrase.inputs["length"], passphrase.inputs["special"]) == (True, 48, False)
