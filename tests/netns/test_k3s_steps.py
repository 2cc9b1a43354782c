"""The Ainur's k3s steps run for real where they can: the exact scripts the program registers, over SSH.

Each Pi of a stack (three valar and a maiar: servers before agents shows) is a network namespace
running Debian's sshd; the operator's namespace runs OpenSSH's client with the stack's key, the
Pi's user and its sudo rule come from the Pi's cloud-init user-data, and the steps' commands are
the `create` (and `stdin`) of the simulation's `command:remote:Command` registrations, run as the
engine runs them: each once every step it depends on in the dependency graph (iluvatar.graph) has
finished, in parallel otherwise. The Nodes the scripts wait for are on the real API server (the
Ainur's Kubernetes 1.33, k3s's flags, kwok marking Nodes Ready), asked by the real kubectl.

STAND-INS (k3s and systemd cannot run here): `k3s`, `systemctl`, `cloud-init` and k3s's installer,
on each Pi's PATH, described in tests/netns/pis.py: k3s "starting" makes the Pi's (stand-in) kubelet
report its Node at the installed version after KUBELET_DELAY seconds; until then the Node says what
it said before, Ready at the old version, as a real Node does until its grace period ends.
"""

from __future__ import annotations

import base64
import json
import multiprocessing
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from iluvatar.graph import Graph
from iluvatar.simulate import Registration, Simulation, simulate
from plans import credentials as credentials_plan
from plans import k3s
from stacks import load_stack_file, read_stack_file
from tests.edit import ROOT, edit, homelab_doc, write_stack
from tests.netns.lan import require_root, sh
from tests.netns.pis import KUBELET_DELAY, Pis, Step, pis, run_like_the_engine, secret
from tools import gotools
from tools.kube_cluster import K3S, Cluster

require_root()

pytestmark = pytest.mark.kube

FLASHED, UPGRADE = "v1.33.5+k3s1", "v1.33.6+k3s1"
# A Node seen Ready by the watcher up to this long after the step that waited for it ended (it polls).
SLACK = 0.5
SERVERS_FIRST = ["manwe", "eonwe", "ilmare", "varda"]


def stack_doc(pub: str, version: str, **changes: Any) -> dict[str, Any]:
    """The homelab with three valar and a maiar (varda), the test's key, at k3s `version`."""
    doc = homelab_doc()
    nodes = doc["config"]["iluvatar:nodes"]
    nodes[1]["role"] = nodes[2]["role"] = "valar"
    nodes.insert(3, {**nodes[2], "name": "varda", "role": "maiar", "mac": "d8:3a:dd:10:00:04", "ip": "192.168.0.17"})
    # Set with `pulumi config set --secret`: the simulation cannot read it, the test's SSH client uses its own copy.
    doc["config"]["iluvatar:ainurSshPrivateKey"] = {"secure": "v1:dGhlIHRlc3QncyBrZXk="}
    # No Cloudflare, no apps, no monitoring and no sign-in (whose valar step is pinned by the Ainur's component
    # tests, not run here): nothing else the Ainur's steps depend on, and a simulation in seconds.
    for key in (
        "iluvatar:cloudflare",
        "iluvatar:cloudflareApiToken",
        "iluvatar:apps",
        "iluvatar:monitoring",
        "iluvatar:alertReceiverSecret",
        "iluvatar:identity",
        "iluvatar:identityConnectorSecret",
    ):
        del doc["config"][key]
    doc["config"]["iluvatar:edge"] = {"publicIngress": "none", "publicDns": "none"}
    return edit(doc, {"iluvatar:ainur.k3sVersion": version, "iluvatar:ainur.sshAuthorizedKeys": [pub], **changes})


DOMAIN = {"iluvatar:network.domain": "lab.home.arpa"}


@dataclass
class Lab:
    pis: Pis
    # (node, kubeletVersion) -> when the watcher first saw that Node Ready at that version.
    ready: dict[tuple[str, str], float] = field(default_factory=dict)
    # The stack's simulations: as flashed (FLASHED), after a k3sVersion change (UPGRADE), after a change of the config.
    sims: dict[str, Simulation] = field(default_factory=dict)


def simulations(root: Path, pub: str) -> dict[str, Simulation]:
    sims = {}
    for name, version, changes in (("flashed", FLASHED, {}), ("upgrade", UPGRADE, {}), ("domain", UPGRADE, DOMAIN)):
        (root / name).mkdir()
        sims[name] = simulate(read_stack_file(write_stack(root / name, stack_doc(pub, version, **changes), stack="homelab")))
    return sims


def remote_steps(sim: Simulation) -> list[Registration]:
    return [r for r in Graph.of(sim).order() if r.type == "command:remote:Command" and r.name.startswith("ainur-")]


def changed(before: Simulation, after: Simulation) -> list[Registration]:
    """The remote steps the engine runs on this `up`: those whose inputs changed (pulumi-command runs `create` again)."""
    old = {r.name: r for r in remote_steps(before)}
    return [
        r
        for r in remote_steps(after)
        if r.name not in old or {k: secret(v) for k, v in old[r.name].inputs.items()} != {k: secret(v) for k, v in r.inputs.items()}
    ]


def watch(cluster: Cluster, seen: dict[tuple[str, str], float], stop: threading.Event) -> None:
    """Record when each Node became Ready at its kubelet's version, as the API server says (every 50 ms)."""
    while not stop.is_set():
        now = time.time()
        for node in cluster.client.list("v1", "Node"):
            name = node["metadata"]["name"]
            ready = [c["status"] for c in node["status"].get("conditions", []) if c["type"] == "Ready"] == ["True"]
            key = (name, node["status"].get("nodeInfo", {}).get("kubeletVersion", "")) if ready else None
            for old in [k for k in seen if k[0] == name and k != key]:
                del seen[old]
            if key is not None and key not in seen:
                seen[key] = now
        time.sleep(0.05)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("k3s-steps")
    key = root / "id_ed25519"
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "iluvatar-test", "-f", str(key))
    pub = (root / "id_ed25519.pub").read_text().strip()
    path = write_stack(root, stack_doc(pub, FLASHED), stack="homelab")
    stack = load_stack_file(path)
    kubectl = gotools.build("kube-control-plane-1.33")
    # The simulations (seconds each), in a process of their own while the namespaces and the API server start.
    # Spawned, not forked: earlier tests leave the Pulumi SDK's gRPC and asyncio threads in this process, and a
    # fork copies their held locks into a child that then waits on them for ever (a whole-suite run hung here).
    pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    simulating = pool.submit(simulations, root, pub)

    def start(address: str) -> Cluster:
        # No pod is made: no wait for the namespaces' default ServiceAccounts (the token controller runs all the same).
        return Cluster(K3S, root / "kube", address=address, ready_for_pods=False).start()

    with pool, pis(stack, root / "pis", start, kubectl, key) as lab_pis:
        the_lab = Lab(lab_pis, sims=simulating.result(timeout=300))
        done = threading.Event()
        watcher = threading.Thread(target=watch, args=(lab_pis.cluster, the_lab.ready, done), daemon=True)
        watcher.start()
        try:
            yield the_lab
        finally:
            done.set()
            watcher.join(10)


def ok(steps: dict[str, Step]) -> None:
    failed = {n: (s.returncode, s.stderr) for n, s in steps.items() if s.returncode != 0}
    assert not failed, failed


@pytest.fixture(scope="module")
def brought_up(lab: Lab) -> tuple[dict[str, Step], dict[str, Step], dict[str, list[tuple[float, str]]]]:
    """The first `up` (every remote step of the Ainur), then a second one that runs them all again."""
    sim = lab.sims["flashed"]
    first = run_like_the_engine(lab.pis, Graph.of(sim), remote_steps(sim))
    ok(first)
    before = {n: len(p.log()) for n, p in lab.pis.pis.items()}
    second = run_like_the_engine(lab.pis, Graph.of(sim), remote_steps(sim))
    ok(second)
    again = {n: p.log()[before[n] :] for n, p in lab.pis.pis.items()}
    return first, second, again


def test_the_steps_reach_each_pi_as_pulumi_command_is_told_to(lab: Lab) -> None:
    """The connection is the program's: the Pi's inventory address, port 22, the stack's user, the secret key."""
    steps = remote_steps(lab.sims["flashed"])
    assert {s.name for s in steps} == {f"ainur-{n}-{kind}" for n in SERVERS_FIRST for kind in ("join", "k3s")} | {"ainur-credentials"}
    for step in steps:
        connection = secret(step.inputs["connection"])
        pi = step.name.split("-")[1] if step.name != "ainur-credentials" else "manwe"
        assert connection["host"] == str(lab.pis.pis[pi].node.ip)
        assert connection["user"] == "ubuntu" and connection.get("port", 22) == 22
        assert connection["privateKey"] == "[secret]"  # the stack's secret, which the simulation cannot read


def test_the_first_up_joins_every_pi_and_a_second_changes_nothing(lab: Lab, brought_up: Any) -> None:
    first, second, again = brought_up
    # The first valar first; every other join after it.
    assert all(first[f"ainur-{n}-join"].start >= first["ainur-manwe-join"].end for n in SERVERS_FIRST[1:])
    # k3s was installed by cloud-init at the stack's version: the k3s steps leave it alone.
    for name in SERVERS_FIRST:
        assert f"k3s {FLASHED} already runs on {name}" in first[f"ainur-{name}-k3s"].stderr
        assert (name, FLASHED) in lab.ready
    nodes = {n["metadata"]["name"]: n for n in lab.pis.cluster.client.list("v1", "Node")}
    assert {n: nodes[n]["metadata"]["labels"]["iluvatar/role"] for n in SERVERS_FIRST} == {
        "manwe": "valar", "eonwe": "valar", "ilmare": "valar", "varda": "maiar"
    }  # fmt: skip
    # The second run: no install, no restart, the same token and kubeconfig.
    for name, actions in again.items():
        unit = k3s.service(lab.pis.pis[name].node)
        assert [a for _, a in actions] == ["cloud-init status --wait", f"systemctl enable {unit}", f"systemctl start {unit}"], name
        assert f"k3s {FLASHED} already runs on {name}" in second[f"ainur-{name}-k3s"].stderr
    server = k3s.server_url(lab.pis.stack)
    made = [credentials_plan.kubeconfig(run["ainur-credentials"].stdout, server, "ainur") for run in (first, second)]
    assert made[0] == made[1]
    token = first["ainur-credentials"].stdout
    assert '"token": "' in token and len(token) > 200
    # The token works on the real API server, as cluster-admin.
    client = lab.pis.cluster.client_for_token(base64.b64decode(json.loads(token)["token"]).decode())
    assert len(client.checked("GET", "/api/v1/nodes")["items"]) == 4
    client.close()


def upgrade_problems(lab: Lab, steps: dict[str, Step], version: str, order: list[str], since: float = 0) -> list[str]:
    """What is wrong with an upgrade's runs: a step that ended before its Node was Ready at `version`, or started
    before the previous Pi's step ended (and its Node was Ready)."""
    problems = []
    previous: Step | None = None
    for name in order:
        step = steps[f"ainur-{name}-k3s"]
        ready = lab.ready.get((name, version))
        if ready is None or ready < since or ready > step.end + SLACK:
            problems.append(f"{name}: its step ended at {step.end:.2f}, its Node Ready at {version} at {ready}")
        if previous is not None and step.start < previous.end:
            problems.append(f"{name}: started at {step.start:.2f}, before {previous.name} ended at {previous.end:.2f}")
        previous = step
    return problems


def test_a_k3s_version_change_upgrades_one_pi_at_a_time_servers_first(lab: Lab, brought_up: Any) -> None:
    before, after = lab.sims["flashed"], lab.sims["upgrade"]
    steps = changed(before, after)
    assert [s.name for s in steps] == [f"ainur-{n}-k3s" for n in SERVERS_FIRST]
    marks = {n: len(p.log()) for n, p in lab.pis.pis.items()}
    runs = run_like_the_engine(lab.pis, Graph.of(after), steps)
    ok(runs)
    assert upgrade_problems(lab, runs, UPGRADE, SERVERS_FIRST) == []
    # Servers first: every valar's step ended before the maiar's began.
    assert runs["ainur-varda-k3s"].start >= max(runs[f"ainur-{n}-k3s"].end for n in SERVERS_FIRST[:3])
    # The etcd snapshot on the first valar, before anything was installed anywhere.
    logs = {n: lab.pis.pis[n].log()[marks[n] :] for n in SERVERS_FIRST}
    snapshot = [(t, a) for t, a in logs["manwe"] if a.startswith("etcd-snapshot")]
    assert [a for _, a in snapshot] == [f"etcd-snapshot save --name iluvatar-before-{UPGRADE.replace('+', '-')}"]
    installs = [(t, n, a) for n in SERVERS_FIRST for t, a in logs[n] if a.startswith("install ")]
    assert [n for _, n, _ in sorted(installs)] == SERVERS_FIRST
    assert snapshot[0][0] < min(t for t, _, _ in installs)
    assert {a.split()[2] for _, n, a in installs if n != "varda"} == {"server"}
    assert [a.split()[2:] for _, n, a in installs if n == "varda"] == [["agent", k3s.server_url(lab.pis.stack)]]
    assert all(lab.pis.pis[n].version() == UPGRADE for n in SERVERS_FIRST)
    # Run again (an interrupted `up` resumed): nothing is installed.
    again = run_like_the_engine(lab.pis, Graph.of(after), steps)
    ok(again)
    assert all(f"k3s {UPGRADE} already runs" in s.stderr for s in again.values())


def test_a_config_change_restarts_k3s_and_only_where_it_changed(lab: Lab, brought_up: Any) -> None:
    before, after = lab.sims["upgrade"], lab.sims["domain"]
    steps = [s for s in changed(before, after) if s.name.endswith("-join")]
    # The domain is in each server's tls-san; an agent's config does not carry it.
    assert sorted(s.name for s in steps) == sorted(f"ainur-{n}-join" for n in SERVERS_FIRST[:3])
    marks = {n: len(p.log()) for n, p in lab.pis.pis.items()}
    ok(run_like_the_engine(lab.pis, Graph.of(after), steps))
    for name in SERVERS_FIRST[:3]:
        actions = [a for _, a in lab.pis.pis[name].log()[marks[name] :]]
        assert "systemctl restart k3s" in actions and "systemctl start k3s" not in actions, actions
        assert "lab.home.arpa" in (lab.pis.pis[name].root / "etc-rancher" / "k3s" / "config.yaml").read_text()
    assert not any(a.startswith("systemctl") for _, a in lab.pis.pis["varda"].log()[marks["varda"] :])


def without_ready_wait(script: str) -> str:
    """The deliberate break: the upgrade script with its wait for the Node cut out."""
    head, _, _ = script.partition("deadline=")
    assert head != script
    return head


def test_an_upgrade_that_does_not_wait_for_its_node_is_caught(lab: Lab, brought_up: Any) -> None:
    """The break: each Pi's k3s step with its wait cut out, for a version change (back to FLASHED)."""
    steps = [s for s in changed(lab.sims["domain"], lab.sims["flashed"]) if s.name.endswith("-k3s")]
    assert len(steps) == 4
    edited = {s.name: without_ready_wait(s.inputs["create"]) for s in steps}
    runs = run_like_the_engine(lab.pis, Graph.of(lab.sims["flashed"]), steps, scripts=edited)
    ok(runs)
    problems = upgrade_problems(lab, runs, FLASHED, SERVERS_FIRST, since=min(r.start for r in runs.values()))
    assert [p.split(":")[0] for p in problems if "its Node Ready" in p] == SERVERS_FIRST, problems
    # Let the stand-in kubelets catch up before the next test.
    deadline = time.monotonic() + 10 * KUBELET_DELAY
    while not all((n, FLASHED) in lab.ready for n in SERVERS_FIRST):
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_a_pi_whose_node_never_comes_back_fails_its_step_within_the_bound_naming_it(lab: Lab, brought_up: Any) -> None:
    varda = lab.pis.pis["varda"]
    step = next(s for s in remote_steps(lab.sims["upgrade"]) if s.name == "ainur-varda-k3s")
    assert lab.pis.stack.ainur is not None
    stack = load_stack_file(write_stack(lab.pis.root, stack_doc(lab.pis.stack.ainur.ssh_authorized_keys[0], UPGRADE), stack="never"))
    # The program's script with a 2 s bound instead of its 900 s (plans.k3s.upgrade_script's `timeout`).
    script = k3s.upgrade_script(stack, varda.node, snapshot=False, timeout=2)
    assert script == step.inputs["create"].replace(f"{k3s.UPGRADE_TIMEOUT_SECONDS}", "2")
    (varda.state / "broken").write_text("")
    try:
        start = time.monotonic()
        result = lab.pis.ssh(secret(step.inputs["connection"]), script, None)
        took = time.monotonic() - start
    finally:
        (varda.state / "broken").unlink()
    assert result.returncode == 1
    assert took < 2 + 3 + 3, took  # the bound, one poll interval, SSH
    assert f"iluvatar: varda was not Ready at {UPGRADE} within 2 s of its k3s upgrade" in result.stderr, result.stderr
    assert "sudo journalctl -u k3s-agent" in result.stderr


def test_a_pi_leaving_is_uninstalled_once_and_a_second_delete_is_harmless(lab: Lab, brought_up: Any) -> None:
    """The join's `delete` (a Pi leaving the inventory, or `pulumi destroy`), run twice on the maiar."""
    varda = lab.pis.pis["varda"]
    join = next(s for s in remote_steps(lab.sims["upgrade"]) if s.name == "ainur-varda-join")
    mark = len(varda.log())
    for _ in range(2):
        result = lab.pis.ssh(secret(join.inputs["connection"]), join.inputs["delete"], None)
        assert result.returncode == 0, result.stderr
    # (The last test's kubelet, back once the Pi was no longer broken, may report in between.)
    assert [a for _, a in varda.log()[mark:] if not a.startswith("kubelet-reported")] == ["uninstall", "systemctl stop k3s-agent"]
    assert not (varda.state / "version").exists()


def test_the_api_gate_passes_twice_on_the_kubeconfig_the_credentials_step_made(lab: Lab, brought_up: Any) -> None:
    """The Ainur's API gate (a local step: the upgrader's `wait-kube --api`), run twice as the engine runs it, on
    the kubeconfig the program builds from what the credentials step printed over SSH. Its one change: the
    server is the test's API server, not the VIP (kube-vip is not stood in)."""
    first, _, _ = brought_up
    gate = lab.sims["flashed"].named()["ainur-gate-api"]
    assert gate.type == "command:local:Command"
    built = credentials_plan.kubeconfig(first["ainur-credentials"].stdout, lab.pis.cluster.server, "ainur")
    assert built == credentials_plan.kubeconfig(first["ainur-credentials"].stdout, k3s.server_url(lab.pis.stack), "ainur").replace(
        k3s.server_url(lab.pis.stack), lab.pis.cluster.server
    )
    for _ in range(2):
        result = subprocess.run(
            ["sh", "-c", gate.inputs["create"]], input=json.dumps({"kubeconfig": built}), capture_output=True, text=True, timeout=120, cwd=ROOT
        )
        assert result.returncode == 0, result.stderr
        assert result.stderr == f"upgrader: {lab.pis.cluster.server.removeprefix('https://')}: API ready\n"
