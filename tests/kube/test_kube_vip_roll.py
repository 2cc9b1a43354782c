"""kube-vip-services' roll on the Ainur's real control plane (tools.kube_cluster: its DaemonSet controller, kwok as the
Pis' kubelets): the DaemonSet as the program writes it (OnDelete) replaces no pod of its own when its template changes,
and the roll step (plans.netboot.vip_roll.roll_script, run by bash with the real kubectl) replaces each, the Pi holding
the service address last, each new pod Ready before the next; a run cut short leaves what the next run finishes.

The tests of three Pis share one control plane (`ainur`), with the node-monitor-grace-period the program gives the Ainur's
k3s (plans.k3s.NODE_MONITOR_GRACE_PERIOD), which the silent-Pi tests need and the live Pis' kwok outruns: the Pis' Nodes
stay, and each test's DaemonSet, pods and Lease are gone, waited on, before the next. The one-Pi test has a plane of its
own. Six planes were a third of this file's CPU."""

from __future__ import annotations

import datetime
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from plans.k3s import NODE_MONITOR_GRACE_PERIOD
from plans.netboot import kube_vip_services, vip_roll
from stacks import load_stack_file
from tests.edit import HOMELAB
from tests.kube.nodes import kubelet_gone
from tests.kube.test_netboot_cache_roll import pi_node, valar_env
from tools.kube_cluster import K3S, Cluster

pytestmark = pytest.mark.kube

PIS = ("eonwe", "ilmare", "manwe")
HOLDER = "eonwe"  # first by name: any order but the roll's own would replace it first


def pods(cluster: Cluster) -> dict[str, dict[str, Any]]:
    """kube-vip's pods by their Pi (a Pi with two, one going, shows the one not going)."""
    found: dict[str, dict[str, Any]] = {}
    for pod in cluster.client.list("v1", "Pod", vip_roll.DAEMONSET_NAMESPACE, labelSelector=vip_roll.SELECTOR):
        node = pod["spec"].get("nodeName")
        if node and (node not in found or found[node]["metadata"].get("deletionTimestamp")):
            found[node] = pod
    return found


def revision(pod: dict[str, Any]) -> str:
    return str(pod["metadata"]["labels"]["controller-revision-hash"])


def daemonset(cluster: Cluster) -> dict[str, Any]:
    live = cluster.client.get("apps/v1", "DaemonSet", vip_roll.DAEMONSET, vip_roll.DAEMONSET_NAMESPACE)
    assert live is not None
    return live


def ready_everywhere(cluster: Cluster) -> bool | None:
    s = daemonset(cluster).get("status") or {}
    return (s.get("numberReady") == len(PIS) and s.get("updatedNumberScheduled") == len(PIS)) or None


class Roll:
    """The step's script as the valar runs it: `sudo` runs what it is given, `k3s kubectl` is the real kubectl. Its
    lines are read as they come, and `on_line` answers them (the Pis' kube-vips as the step waits on them)."""

    def __init__(self, tmp: Path, cluster: Cluster, on_line: Callable[[str], None] = lambda line: None, **kwargs: Any) -> None:
        env = valar_env(tmp, cluster)
        script = vip_roll.roll_script(**{"address": "127.0.0.1", "steady_seconds": 2, **kwargs})
        with subprocess.Popen(["bash", "-c", script], env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True) as proc:
            assert proc.stderr is not None
            lines = []
            for line in proc.stderr:
                lines.append(line.rstrip("\n"))
                on_line(lines[-1])
            self.returncode = proc.wait(timeout=300)
        self.stderr = "\n".join(lines)


def run_roll(tmp: Path, cluster: Cluster, on_line: Callable[[str], None] = lambda line: None, **kwargs: Any) -> Roll:
    return Roll(tmp, cluster, on_line, **kwargs)


@contextmanager
def dns_server() -> Iterator[int]:
    """A DNS server on 127.0.0.1 (its port yielded) that answers every query, as dnsmasq on the service address does:
    the reply is the query with the response bit set (RFC 1035 4.1.1)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(512)
            except TimeoutError:
                continue
            sock.sendto(data[:2] + b"\x81\x80" + data[4:], peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(sock.getsockname()[1])
    finally:
        stop.set()
        thread.join()
        sock.close()


def hold(cluster: Cluster, node: str) -> None:
    """The service address's Lease written by kube-vip on `node`: its election won, or its renewal."""
    live = cluster.client.get("coordination.k8s.io/v1", "Lease", vip_roll.LEASE, "netboot")
    assert live is not None
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    cluster.client.merge_patch(live, {"spec": {"holderIdentity": node, "renewTime": now}})


def renewing(cluster: Cluster) -> Callable[[str], None]:
    """The holder's new kube-vip as the step waits on it: it wins the released Lease again."""

    def on_line(line: str) -> None:
        if line.startswith("iluvatar: waiting for kube-vip on "):
            hold(cluster, line.split()[5])

    return on_line


def said(done: Roll) -> list[str]:
    return [line for line in done.stderr.splitlines() if line.startswith("iluvatar: ")]


def replaced(node: str, pod: str) -> str:
    if node == HOLDER:
        why = "it holds the service address, so it goes last: the household's DNS is away until its new kube-vip wins the released lease"
    else:
        why = "it does not hold the service address"
    return f"iluvatar: kube-vip on {node} runs an older template: its pod {pod} is replaced ({why})"


def steady(node: str, pod: dict[str, Any]) -> list[str]:
    return [
        f"iluvatar: kube-vip on {node} is Ready ({pod['metadata']['name']}): it must stay Ready with no restart for 2 s",
        f"iluvatar: kube-vip on {node} runs the new template",
    ]


def serving(node: str) -> list[str]:
    return [
        f"iluvatar: waiting for kube-vip on {node} to renew the service address's Lease and for DNS to answer on 127.0.0.1",
        f"iluvatar: kube-vip on {node} holds the service address again and DNS answers on 127.0.0.1",
    ]


GRACE = f"--node-monitor-grace-period={NODE_MONITOR_GRACE_PERIOD}"
NETBOOT = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "netboot"}}


def _fixed(cluster: Cluster) -> None:
    """What no test changes: kube-vip's account and its rights, and the netboot namespace."""
    for obj in kube_vip_services(load_stack_file(HOMELAB)):
        if obj["kind"] != "DaemonSet":
            cluster.client.create(obj)
    cluster.client.create(NETBOOT)


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The Ainur's control plane with the three Pis' Nodes (kwok their kubelets), shared by the tests of three Pis."""
    with Cluster(K3S, tmp_path_factory.mktemp("ainur"), controller_manager_args=(GRACE,)).start() as cluster:
        _fixed(cluster)
        cluster.create_nodes([pi_node(n) for n in PIS])
        yield cluster


def _kube_vip_gone(cluster: Cluster) -> bool:
    """No kube-vip DaemonSet, pod or revision, and no Lease of the service address."""
    client = cluster.client
    return (
        client.get("apps/v1", "DaemonSet", vip_roll.DAEMONSET, vip_roll.DAEMONSET_NAMESPACE) is None
        and not client.list("v1", "Pod", vip_roll.DAEMONSET_NAMESPACE, labelSelector=vip_roll.SELECTOR)
        and not client.list("apps/v1", "ControllerRevision", vip_roll.DAEMONSET_NAMESPACE, labelSelector=vip_roll.SELECTOR)
        and client.get("coordination.k8s.io/v1", "Lease", vip_roll.LEASE, "netboot") is None
    )


@pytest.fixture
def ainur(plane: Cluster) -> Iterator[Cluster]:
    """The shared plane as a fresh one was: the three Pis Ready and untainted, no kube-vip DaemonSet, no Lease; what the
    test wrote is removed after it. The Nodes stay (a Node deleted and made again at once is what kwok's and the node
    lifecycle controller's timers race on: tests/kube/nodes.py); a Pi a test silenced is handed back to kwok as it ends,
    which writes it Ready again (kwok v0.8.0's default node-initialize Stage takes any Node whose Ready is not True:
    kustomize/stage/node/fast/node-initialize.yaml:9-14), and the node lifecycle controller then lifts its taints."""
    plane.wait_for_nodes(PIS)
    assert _kube_vip_gone(plane), "the previous test's kube-vip objects are still there"
    yield plane
    client = plane.client
    # Foreground: the DaemonSet goes only once the garbage collector has deleted its pods and revisions (each with
    # blockOwnerDeletion), and kwok, the Pis' kubelet, has confirmed each pod's deletion; a new DaemonSet of the same name
    # then finds none of them.
    daemonsets = client.resource("apps/v1", "DaemonSet")
    foreground = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Foreground"}
    client.request("DELETE", daemonsets.path(vip_roll.DAEMONSET_NAMESPACE, vip_roll.DAEMONSET), foreground)
    client.delete({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": vip_roll.LEASE, "namespace": "netboot"}})
    plane.wait_for("kube-vip's DaemonSet, pods, revisions and Lease gone", lambda: _kube_vip_gone(plane), 60)


def deploy(cluster: Cluster, holder: str = HOLDER) -> None:
    """kube-vip-services' DaemonSet as the program writes it, and the service address's Lease as kube-vip on `holder`
    wrote it."""
    [ds] = [obj for obj in kube_vip_services(load_stack_file(HOMELAB)) if obj["kind"] == "DaemonSet"]
    cluster.client.create(ds)
    lease = {"holderIdentity": holder, "leaseDurationSeconds": 22, "leaseTransitions": 0}
    cluster.client.create(
        {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": vip_roll.LEASE, "namespace": "netboot"}, "spec": lease}
    )


def test_the_roll_replaces_kube_vip_one_pi_at_a_time_the_holder_of_the_service_address_last(ainur: Cluster, tmp_path: Path) -> None:
    cluster = ainur
    deploy(cluster)
    # The wait before the router's DHCP goes off on a first dhcp bring-up: it returns once each Ready Pi runs a
    # Ready kube-vip (Pulumi does not await the OnDelete DaemonSet).
    running = subprocess.run(
        ["bash", "-c", vip_roll.running_script()],
        env=valar_env(tmp_path / "running", cluster),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert (running.returncode, running.stderr) == (0, "")
    assert ready_everywhere(cluster)
    before = {n: p["metadata"]["name"] for n, p in pods(cluster).items()}
    old = {revision(p) for p in pods(cluster).values()}
    # A change of its settings (a new env value, as a kube-vip pin bump changes its image).
    live = daemonset(cluster)
    template = live["spec"]["template"]
    container = {**template["spec"]["containers"][0]}
    container["env"] = [*container["env"], {"name": "vip_loglevel", "value": "4"}]
    cluster.client.merge_patch(live, {"spec": {"template": {"spec": {"containers": [container]}}}})

    def observed() -> bool | None:
        ds = daemonset(cluster)
        return (ds.get("status") or {}).get("observedGeneration") == ds["metadata"]["generation"] or None

    # The controller has seen the new template, in the same sync that would have begun a RollingUpdate's deletions
    # (Kubernetes v1.35.1 pkg/controller/daemon/daemon_controller.go:913-926, status after): OnDelete deleted none.
    cluster.wait_for("the DaemonSet controller seeing the new template", observed, 30)
    assert {n: p["metadata"]["name"] for n, p in pods(cluster).items()} == before
    assert not [p for p in pods(cluster).values() if p["metadata"].get("deletionTimestamp")]

    # An earlier run cut short right after it deleted manwe's pod: the controller made its new one meanwhile.
    manwe = pods(cluster)["manwe"]
    cluster.client.delete(manwe)
    # Between the old pod's removal and its successor manwe has no pod at all.
    cluster.wait_for("manwe's new kube-vip", lambda: ((p := pods(cluster).get("manwe")) is not None and revision(p) not in old) or None, 60)

    with dns_server() as port:
        done = run_roll(tmp_path, cluster, renewing(cluster), dns_port=port)
    assert done.returncode == 0, done.stderr
    now = pods(cluster)
    assert said(done) == [
        replaced("ilmare", before["ilmare"]),
        *steady("ilmare", now["ilmare"]),
        replaced(HOLDER, before[HOLDER]),
        *steady(HOLDER, now[HOLDER]),
        *serving(HOLDER),
    ]
    assert {revision(p) for p in now.values()}.isdisjoint(old) and len({revision(p) for p in now.values()}) == 1
    assert not {p["metadata"]["name"] for p in now.values()} & set(before.values())
    # Run again: nothing older left, nothing said.
    again = run_roll(tmp_path / "again", cluster)
    assert (again.returncode, said(again)) == (0, [])


def test_a_pi_that_is_down_keeps_its_old_kube_vip_and_the_roll_fails_naming_it_after_the_others(ainur: Cluster, tmp_path: Path) -> None:
    """A Pi whose kubelet is silent (its Node's Ready Unknown) would never confirm its pod's deletion: the roll leaves its
    pod as it is, replaces every other Pi's (the holder last), and then fails naming it, so the next `up` runs it again."""
    cluster = ainur
    deploy(cluster)
    cluster.wait_for("a ready kube-vip on each Pi", lambda: ready_everywhere(cluster), 120)
    before = {n: p["metadata"]["name"] for n, p in pods(cluster).items()}
    with kubelet_gone(cluster, "manwe"):

        def silent() -> bool | None:
            node = cluster.client.get("v1", "Node", "manwe") or {}
            ready = [c for c in (node.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"]
            return (bool(ready) and ready[0]["status"] == "Unknown") or None

        cluster.wait_for("manwe's Node Ready Unknown", silent, 90)
        live = daemonset(cluster)
        container = {**live["spec"]["template"]["spec"]["containers"][0]}
        container["env"] = [*container["env"], {"name": "vip_loglevel", "value": "4"}]
        cluster.client.merge_patch(live, {"spec": {"template": {"spec": {"containers": [container]}}}})
        with dns_server() as port:
            done = run_roll(tmp_path, cluster, renewing(cluster), dns_port=port)
        assert done.returncode == 1
        now = pods(cluster)
        assert said(done) == [
            replaced("ilmare", before["ilmare"]),
            *steady("ilmare", now["ilmare"]),
            replaced(HOLDER, before[HOLDER]),
            *steady(HOLDER, now[HOLDER]),
            *serving(HOLDER),
            "iluvatar: kube-vip on manwe keeps its older template: the Node is not Ready, so its pod is left as it is; once "
            "it is back, pulumi up again replaces it; look with: sudo k3s kubectl -n kube-system get pods -l "
            "app.kubernetes.io/name=kube-vip -o wide",
        ]
        manwe = pods(cluster)["manwe"]
        assert manwe["metadata"]["name"] == before["manwe"] and not manwe["metadata"].get("deletionTimestamp")


def start(cluster: Cluster, pis: tuple[str, ...] = PIS, holder: str = HOLDER) -> Cluster:
    """The plane with kube-vip-services Ready on `pis` (the plane's Nodes) and the service address's Lease held by `holder`."""
    deploy(cluster, holder)

    def ready() -> bool | None:
        st = daemonset(cluster).get("status") or {}
        return (st.get("numberReady") == len(pis) and st.get("updatedNumberScheduled") == len(pis)) or None

    cluster.wait_for("a ready kube-vip on each Pi", ready, 120)
    return cluster


def change(cluster: Cluster, level: str) -> None:
    """A change of kube-vip's settings (a new env value, as a pin bump changes its image)."""
    live = daemonset(cluster)
    container = {**live["spec"]["template"]["spec"]["containers"][0]}
    container["env"] = [e for e in container["env"] if e["name"] != "vip_loglevel"] + [{"name": "vip_loglevel", "value": level}]
    cluster.client.merge_patch(live, {"spec": {"template": {"spec": {"containers": [container]}}}})


def test_the_holder_is_read_again_before_each_pi(ainur: Cluster, tmp_path: Path) -> None:
    """The netboot pod moves while the roll runs (its Deployment replaced in the same `up`, a Pi drained): the Pi that
    holds the service address when the next Pi is chosen goes last, and its Lease is the one awaited."""
    cluster = start(ainur)
    before = {n: p["metadata"]["name"] for n, p in pods(cluster).items()}
    change(cluster, "4")

    def on_line(line: str) -> None:
        # While ilmare's new kube-vip is watched, the netboot pod moves to manwe and kube-vip there wins the Lease.
        if line.startswith("iluvatar: kube-vip on ilmare is Ready"):
            hold(cluster, "manwe")
        renewing(cluster)(line)

    with dns_server() as port:
        done = run_roll(tmp_path, cluster, on_line, dns_port=port)
    assert done.returncode == 0, done.stderr
    now = pods(cluster)
    assert said(done) == [
        replaced("ilmare", before["ilmare"]),
        *steady("ilmare", now["ilmare"]),
        replaced(HOLDER, before[HOLDER]).replace(
            "it holds the service address, so it goes last: the household's DNS is away until its new kube-vip wins the released lease",
            "it does not hold the service address",
        ),
        *steady(HOLDER, now[HOLDER]),
        f"iluvatar: kube-vip on manwe runs an older template: its pod {before['manwe']} is replaced (it holds the service address, so it "
        "goes last: the household's DNS is away until its new kube-vip wins the released lease)",
        *steady("manwe", now["manwe"]),
        *serving("manwe"),
    ]


LOOK = "look with: sudo k3s kubectl -n kube-system get pods -l app.kubernetes.io/name=kube-vip -o wide"
BACK = (
    "the household has no DNS (nor DHCP in dhcp mode) until a kube-vip holds 127.0.0.1; to go back, set kube-vip's pin or "
    "settings as they were and pulumi up (the roll replaces the new pods), or delete the holder's kube-vip pod by hand"
)


def test_a_new_kube_vip_that_restarts_stops_the_roll_before_the_holder(ainur: Cluster, tmp_path: Path) -> None:
    """Ready only says kube-vip's process started (it has no probe): a new kube-vip that restarts within its steady
    window stops the roll there, naming it, and the holder keeps its old kube-vip (and the household its DNS)."""
    cluster = start(ainur)
    before = {n: p["metadata"]["name"] for n, p in pods(cluster).items()}
    change(cluster, "4")

    def on_line(line: str) -> None:
        # ilmare's new kube-vip crashes and its kubelet starts it again: its restart count goes to 1.
        if line.startswith("iluvatar: kube-vip on ilmare is Ready"):
            pod = pods(cluster)["ilmare"]
            statuses = [{**c, "restartCount": 1} for c in pod["status"]["containerStatuses"]]
            cluster.client.merge_patch(pod, {"status": {"containerStatuses": statuses}}, subresource="status")

    done = run_roll(tmp_path, cluster, on_line, steady_seconds=30)
    assert done.returncode == 1
    new = pods(cluster)["ilmare"]["metadata"]["name"]
    assert said(done) == [
        replaced("ilmare", before["ilmare"]),
        f"iluvatar: kube-vip on ilmare is Ready ({new}): it must stay Ready with no restart for 30 s",
        f"iluvatar: kube-vip's new pod {new} on ilmare did not stay up: it restarted (restart count 0 to 1); the Pis holding the "
        f"service address keep their older kube-vip: set kube-vip's pin or settings as they were and pulumi up; {LOOK}",
    ]
    assert pods(cluster)[HOLDER]["metadata"]["name"] == before[HOLDER]


def test_with_one_pi_the_roll_says_so_and_fails_loudly_when_the_lease_or_dns_does_not_come_back(tmp_path: Path) -> None:
    """With one Pi nothing is replaced before the holder: the step says so, and after the holder's new kube-vip it
    fails, naming what is wrong and the household's loss, when the Lease is not written again by that Pi, or when it
    is and DNS does not answer on the service address."""
    # A plane of its own: one Pi's Node alone.
    with Cluster(K3S, tmp_path / "ainur", controller_manager_args=(GRACE,)).start() as one:
        _fixed(one)
        one.create_nodes([pi_node(HOLDER)])
        _one_pi(start(one, pis=(HOLDER,)), tmp_path)


def _one_pi(cluster: Cluster, tmp_path: Path) -> None:
    one = (
        "iluvatar: the Ainur have one Pi, so no other kube-vip is replaced first to show the new one starts; the checks "
        "after it (its Lease renewed, DNS answering on 127.0.0.1) are the only ones"
    )
    change(cluster, "4")
    before = pods(cluster)[HOLDER]["metadata"]["name"]
    done = run_roll(tmp_path / "lease", cluster, serving_seconds=3)
    assert done.returncode == 1
    assert said(done) == [
        one,
        replaced(HOLDER, before),
        *steady(HOLDER, pods(cluster)[HOLDER]),
        serving(HOLDER)[0],
        f"iluvatar: kube-vip on {HOLDER} has not renewed the service address's Lease netboot/{vip_roll.LEASE} within 3 s (holder "
        f"now: {HOLDER}): {BACK}; {LOOK}",
    ]
    # The Lease written again, and no DNS server on the address.
    change(cluster, "5")
    before = pods(cluster)[HOLDER]["metadata"]["name"]
    with dns_server() as port:
        pass
    done = run_roll(tmp_path / "dns", cluster, renewing(cluster), serving_seconds=5, dns_port=port)
    assert done.returncode == 1
    assert said(done) == [
        one,
        replaced(HOLDER, before),
        *steady(HOLDER, pods(cluster)[HOLDER]),
        serving(HOLDER)[0],
        f"iluvatar: DNS does not answer on the service address 127.0.0.1 within 5 s after kube-vip on {HOLDER} renewed its Lease: {BACK}; {LOOK}",
    ]


def test_a_terminating_kube_vip_on_a_pi_that_is_down_does_not_hold_the_roll(ainur: Cluster, tmp_path: Path) -> None:
    """A Pi that died while its pod was being replaced: its old kube-vip stays Terminating for ever (no kubelet confirms
    it, kubernetes#117204), and the DaemonSet makes no successor while it is there. Its record is removed, as the
    clearance does for netboot-cache's, the step says which Pi is down, and the others roll, the holder last."""
    cluster = start(ainur)
    before = {n: p["metadata"]["name"] for n, p in pods(cluster).items()}
    with kubelet_gone(cluster, "manwe"):

        def silent() -> bool | None:
            node = cluster.client.get("v1", "Node", "manwe") or {}
            ready = [c for c in (node.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"]
            return (bool(ready) and ready[0]["status"] == "Unknown") or None

        cluster.wait_for("manwe's Node Ready Unknown", silent, 90)
        change(cluster, "4")
        cluster.client.delete(pods(cluster)["manwe"])
        assert pods(cluster)["manwe"]["metadata"].get("deletionTimestamp")
        with dns_server() as port:
            done = run_roll(tmp_path, cluster, renewing(cluster), dns_port=port, pod_seconds=30)
        assert done.returncode == 0, done.stderr
        now = pods(cluster)
        assert said(done) == [
            replaced("ilmare", before["ilmare"]),
            *steady("ilmare", now["ilmare"]),
            f"iluvatar: manwe is down (its kubelet stopped reporting, its Node's Ready is Unknown), so its kube-vip pod "
            f"{before['manwe']}, already deleted, would stay Terminating and hold the roll; its record is removed, and the "
            "DaemonSet starts manwe's new kube-vip when it is back (nothing left for a later run)",
            replaced(HOLDER, before[HOLDER]),
            *steady(HOLDER, now[HOLDER]),
            *serving(HOLDER),
        ]
        left = [p["metadata"]["name"] for p in cluster.client.list("v1", "Pod", "kube-system", labelSelector=vip_roll.SELECTOR)]
        assert before["manwe"] not in left
