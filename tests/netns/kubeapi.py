"""The real Kubernetes API server where the netboot pod's lease scripts reach it (tests/netns), or on
loopback for the same scripts run here (tests/plans/test_netboot.py).

The pod runs on a Pi's host network and reaches the API server at the cluster's service address.
Here the Pi is a network namespace (tests.netns.lan), and the API server is the Ainur's (k3s's
flags, Kubernetes 1.35, tools.kube_cluster) listening on a link-local veth this test owns between
the test's own namespace and the Pi's: never on the LAN, never on loopback where the Pi cannot
reach it. The netboot Namespace, ServiceAccount, Role and RoleBinding are the program's own (the
stack's simulation, written as pulumi-kubernetes writes them); the scripts get a token of that
ServiceAccount (TokenRequest, as the kubelet mounts one) and the cluster's CA, and the API
server's audit log records each call they made, as the API server saw and authorized it.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plans import netboot
from tests.netns.lan import Lan, in_ns, sh
from tests.sims import simulated
from tools.kube_cluster import K3S, Cluster, field_manager, pulumi_create
from tools.kube_program import registration_object

COLLECTION = f"/api/v1/namespaces/{netboot.NAMESPACE}/configmaps"
ITEM = f"{COLLECTION}/{netboot.LEASES_CONFIGMAP}"
SERVICE_ACCOUNT = f"system:serviceaccount:{netboot.NAMESPACE}:netboot"
# What every authenticated user may do (system:basic-user, system:discovery): not the Role's doing.
EVERYONE = {"selfsubjectaccessreviews", "selfsubjectrulesreviews", "selfsubjectreviews"}


def program_objects(path: Path) -> list[dict[str, Any]]:
    """The program's netboot Namespace, ServiceAccount, Role and RoleBinding, as it registers them."""
    wanted = {("Namespace", netboot.NAMESPACE), ("ServiceAccount", "netboot"), ("Role", "netboot-leases"), ("RoleBinding", "netboot-leases")}
    objects = [
        registration_object(r)
        for r in simulated(path).registrations
        if r.type.startswith("kubernetes:") and r.custom and (r.type.rsplit(":", 1)[1], (r.inputs.get("metadata") or {}).get("name")) in wanted
    ]
    assert sorted((o["kind"], o["metadata"]["name"]) for o in objects) == sorted(wanted)
    return sorted(objects, key=lambda o: o["kind"] != "Namespace")


@dataclass
class KubeApi:
    """The API server as the Pi's pod sees it: the environment its scripts run with, and what it recorded."""

    cluster: Cluster
    env: dict[str, str]
    role: dict[str, Any]
    net: Lan | None = None

    def calls(self) -> list[tuple[str, str, int]]:
        """The ServiceAccount's requests, as the audit log has them: (verb, URI, HTTP status)."""
        events = [json.loads(line) for line in self.cluster.audit_log.read_text().splitlines()]
        return [
            (e["verb"], e["requestURI"], e["responseStatus"]["code"])
            for e in events
            if e.get("stage") == "ResponseComplete" and e["user"]["username"] == SERVICE_ACCOUNT
        ]

    def wait_for_calls(self, count: int) -> list[tuple[str, str, int]]:
        """The calls, once the audit log has `count` of them (it is written as each request completes)."""

        def enough() -> list[tuple[str, str, int]] | None:
            calls = self.calls()
            return calls if len(calls) >= count else None

        found: list[tuple[str, str, int]] = self.cluster.wait_for(f"{count} calls in the audit log", enough, timeout=10)
        return found

    def permitted(self) -> list[dict[str, Any]]:
        """What the ServiceAccount may do in the netboot namespace, in the API server's own words (SelfSubjectRulesReview)."""
        client = self.cluster.client_for_token(self.env["TOKEN"])
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview", "spec": {"namespace": netboot.NAMESPACE}}
        answer = client.checked("POST", "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews", review)
        client.close()
        rules: list[dict[str, Any]] = answer["status"]["resourceRules"]
        return [r for r in rules if not set(r.get("resources", [])) <= EVERYONE]

    def run(self, script: str) -> subprocess.CompletedProcess[str]:
        """A script as the pod runs it: on the Pi's network (here, without a LAN), with the pod's service-account environment."""
        variables = [f"{k}={v}" for k, v in self.env.items() if k != "TOKEN"]
        if self.net is None:
            return subprocess.run(["env", *variables, "sh", "-c", script], capture_output=True, text=True, timeout=60, check=False)
        return in_ns(self.net.pi, "env", *variables, "sh", "-c", script, check=False, timeout=60)


def _link_local(prefix: str) -> tuple[str, str]:
    # A /30 of 169.254.0.0/16 of this run's own (two runs on one machine must not share one).
    block = os.getpid() % 16000 + 100
    base = (169 << 24) | (254 << 16) | (block << 2)
    return tuple(".".join(str((base + i) >> s & 255) for s in (24, 16, 8, 0)) for i in (1, 2))  # type: ignore[return-value]


@contextmanager
def kube_api(
    root: Path,
    start: Callable[..., Cluster],
    stack_path: Path,
    net: Lan | None = None,
    role: Callable[[dict[str, Any]], dict[str, Any]] = lambda role: role,
) -> Iterator[KubeApi]:
    """The real API server with the program's netboot objects (`role` may change the Role first: the
    RBAC break) and a token of the netboot ServiceAccount: on a veth into the Pi's namespace of `net`,
    or, without a LAN, on loopback for scripts run here."""
    here, there = _link_local(net.prefix) if net is not None else ("127.0.0.1", "")
    veth = f"{net.prefix}k" if net is not None else ""
    started: list[Cluster] = []
    try:
        if net is not None:
            sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "kube0", "netns", net.pi)
            sh("ip", "addr", "add", f"{here}/30", "dev", veth)
            sh("ip", "link", "set", veth, "up")
            in_ns(net.pi, "ip", "addr", "add", f"{there}/30", "dev", "kube0")
            in_ns(net.pi, "ip", "link", "set", "kube0", "up")
        cluster = start(K3S, address=here, components=("etcd", "kube-apiserver"), audit=True)
        started.append(cluster)
        the_role: dict[str, Any] = {}
        for obj in program_objects(stack_path):
            if obj["kind"] == "Role":
                obj = the_role = role(obj)
            pulumi_create(cluster.client, obj, field_manager(f"netboot/{obj['kind']}"))
        token = cluster.token(netboot.NAMESPACE, "netboot")
        sa = root / "serviceaccount"
        sa.mkdir(exist_ok=True)
        (sa / "ca.crt").write_bytes((cluster.pki / "ca.crt").read_bytes())
        (sa / "token").write_text(token)
        scratch = root / "pod-tmp"  # the pod's own /tmp: another test's scripts may run at the same time
        scratch.mkdir(exist_ok=True)
        env = {
            "KUBERNETES_SERVICE_HOST": here,
            "KUBERNETES_SERVICE_PORT": str(cluster.port),
            "SERVICEACCOUNT_DIR": str(sa),
            "TMPDIR": str(scratch),
            "TOKEN": token,
        }
        yield KubeApi(cluster, env, the_role, net)
    finally:
        for cluster in started:  # before its address goes, or the API server's shutdown waits for it
            cluster.stop()
        if veth:
            sh("ip", "link", "del", veth, check=False)
