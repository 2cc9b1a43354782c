"""The netbooted maiar's roots' objects on the Ainur's real API server (review 41-1 M1, M2): the homelab with eonwe and
ilmare netbooting and manwe booting from its card, its netboot objects and the Pis' Longhorn NodePatches written as the
program writes them, then the pods scheduled."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from iluvatar.simulate import Registration, simulate
from plans import storage
from stacks.load import read_stack_file
from tests.edit import edit, homelab_doc, write_stack
from tests.kube.deploy import deployed
from tools import kube_program

pytestmark = pytest.mark.kube

NETBOOTING = {"iluvatar:nodes[1].board": "rpi4", "iluvatar:nodes[1].boot": "netboot", "iluvatar:nodes[1].serial": "9ffefdef",
              "iluvatar:nodes[2].boot": "netboot", "iluvatar:nodes[2].serial": "1a2b3c4d"}  # fmt: skip


def test_each_pis_roots_volume_is_admitted_on_the_class_whose_replicas_only_the_card_pis_tagged_hold(tmp_path: Path) -> None:
    stack_file = read_stack_file(write_stack(tmp_path, edit(homelab_doc(), NETBOOTING), stack="homelab"))

    def roots(r: Registration) -> bool:
        return r.name.startswith(("netboot-", "storage-ainur-node-"))

    with deployed(stack_file, tmp_path / "kube", only=roots, sim=simulate(stack_file)) as deployment:
        assert deployment.report.refusals == [], "\n".join(deployment.report.refusals)
        # Each root's Longhorn Volume patch (review 41-6 H2) needs Longhorn's CRDs, which no module the proxy serves
        # holds: left out and said, not written to a server that would refuse any kind it does not know.
        assert sorted(n for n in deployment.report.not_rendered if "VolumePatch" in n) == [
            f"ainur: kubernetes:longhorn.io/v1beta2:VolumePatch (netboot-volume-{c}): {kube_program.UNRENDERABLE['longhorn']}"
            for c in ("pi-root-eonwe", "pi-root-ilmare")
        ]
        client = deployment.clusters["ainur"].client
        sc = client.get("storage.k8s.io/v1", "StorageClass", "pi-roots")
        assert sc is not None
        assert (sc["provisioner"], sc["reclaimPolicy"], sc["allowVolumeExpansion"]) == ("driver.longhorn.io", "Retain", True)
        assert sc["parameters"] == {"numberOfReplicas": "1", "staleReplicaTimeout": "30", "nodeSelector": storage.PI_ROOT_TAG, "fsType": "ext4"}
        claims = {
            name: (c["spec"]["storageClassName"], c["spec"]["resources"]["requests"]["storage"], c["metadata"]["labels"].get("iluvatar/pi"))
            for name in ("pi-root-eonwe", "pi-root-ilmare", "pi-roots")
            for c in [client.get("v1", "PersistentVolumeClaim", name, "netboot")]
            if c is not None
        }
        assert claims == {
            "pi-root-eonwe": ("pi-roots", "20Gi", "eonwe"),
            "pi-root-ilmare": ("pi-roots", "20Gi", "ilmare"),
        }
        # Longhorn's default node tags (what its kubernetes_node_controller copies into the Longhorn Node's tags) on
        # the card Pi with a data disk alone: never on a netbooting maia, whose disk a root must not depend on.
        tagged = {
            n["metadata"]["name"]: json.loads(n["metadata"]["annotations"][storage.LONGHORN_NODE_TAGS_ANNOTATION])
            for n in client.list("v1", "Node")
            if storage.LONGHORN_NODE_TAGS_ANNOTATION in n["metadata"].get("annotations", {})
        }
        assert tagged == {"manwe": [storage.PI_ROOT_TAG]}
        # A new homelab has no first version's volume (review 41-6 H1): pi-nfs mounts the Pis' own alone.
        assert client.get("v1", "PersistentVolumeClaim", "pi-roots", "netboot") is None
        # The NFS server's pod, with every Pi's volume, admitted and scheduled on the card Pi.
        nfs = deployment.workload("ainur", "Deployment netboot/pi-nfs")
        assert nfs.problems == [] and nfs.nodes == ["manwe"], nfs.problems
