"""The Ainur's k3s steps run for real where they can: the exact scripts the program registers, over SSH.

Each Pi of a stack (three valar and a maiar: servers before agents shows) is a network namespace
running Debian's sshd; the operator's namespace runs OpenSSH's client with the stack's key, the
Pi's user and its sudo rule come from the Pi's cloud-init user-data, and the steps' commands are
the `create` (and `stdin`) of the simulation's `command:remote:Command` registrations, run as the
engine runs them: each once every step it depends on in the dependency graph (iluvatar.graph) has
finished, in parallel otherwise. The Nodes the scripts wait for are on the real API server (the
Ainur's Kubernetes 1.35, k3s's flags, kwok marking Nodes Ready), asked by the real kubectl. The stack
has sign-in on: each valar's oidc step installs its API server's authentication config and names Dex
in /etc/hosts (and cloud-init's template of it, where the Pi has one) with the real sudo, install, sed
and tee, on a Pi's /etc that is an overlay of its own (tests/netns/pis.py), never this machine's.

STAND-INS (k3s and systemd cannot run here): `k3s`, `systemctl`, `cloud-init` and k3s's installer,
on each Pi's PATH, described in tests/netns/pis.py: k3s "starting" makes the Pi's (stand-in) kubelet
report its Node at the installed version after KUBELET_DELAY seconds; until then the Node says what
it said before, Ready at the old version, as a real Node does until its grace period ends.
"""

from __future__ import annotations

import base64
import gc
import hashlib
import itertools
import json
import multiprocessing
import re
import select
import subprocess
import threading
import time
from collections.abc import Collection, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from iluvatar import upgrader
from iluvatar.cli import GC_THRESHOLDS
from iluvatar.graph import Graph
from iluvatar.simulate import MOCK_CA_PEM, Registration, Simulation, simulate
from plans import agent_token, apiserver, k3s
from plans import credentials as credentials_plan
from stacks import load_stack_file, read_stack_file, releases
from tests.edit import ROOT, edit, homelab_doc, write_stack
from tests.kube.nodes import kubelet_gone
from tests.netns.lan import require_root, sh, wait_until
from tests.netns.pis import HOSTS_TEMPLATE_TEXT, OPERATOR_IP, Pi, Pis, Step, pis, run_like_the_engine, secret, stdin_of
from tools import gotools
from tools.kube_cluster import K3S, Cluster

require_root()

pytestmark = pytest.mark.kube

# The Pis flashed with the k3s release before the shipped one, then upgraded to it (stacks.releases.K3S).
FLASHED, UPGRADE = "v1.35.6+k3s1", releases.K3S
SERVERS_FIRST = ["manwe", "eonwe", "ilmare", "varda"]
VALAR = SERVERS_FIRST[:3]
# How long a step given a 2 s bound here may take to give up before its SSH session is stopped and the test fails: it
# gives up within seconds (8.4 s for one on a loaded CI run), so this only catches a step that never gives up, well
# before the session's own HUNG_SECONDS. Each such test asserts the step's own line naming its 2 s, never how long
# the run took: that measured the loaded machine, not the step.
GIVEN_UP_SECONDS = 120
# The Pis flashed with cloud-init's template of /etc/hosts (an image may ship none: eonwe's has none).
HOSTS_TEMPLATES = ("manwe", "ilmare", "varda")


def stack_doc(pub: str, version: str, **changes: Any) -> dict[str, Any]:
    """The homelab with three valar and a maiar (varda), the test's key, at k3s `version`."""
    doc = homelab_doc()
    nodes = doc["config"]["iluvatar:nodes"]
    nodes[1]["role"] = nodes[2]["role"] = "valar"
    nodes.insert(3, {**nodes[2], "name": "varda", "role": "maiar", "mac": "d8:3a:dd:10:00:04", "ip": "192.168.0.17"})
    # k3s's secrets encryption is refused on several valar (stacks.rules._counts): its HA procedure is not built.
    doc["config"]["iluvatar:ainur"]["secretsEncryption"] = False
    # Set with `pulumi config set --secret`: the simulation cannot read it, the test's SSH client uses its own copy.
    doc["config"]["iluvatar:ainurSshPrivateKey"] = {"secure": "v1:bm9uY2Vub25jZW5v:dGhlIHRlc3QncyBrZXkgY2lwaGVy"}
    # No Cloudflare, no apps and no monitoring: nothing else the Ainur's steps depend on, and a simulation in
    # seconds. Sign-in stays (each valar's oidc step runs here), without Headlamp, which is an app of iluvatar:apps.
    for key in ("iluvatar:cloudflare", "iluvatar:cloudflareApiToken", "iluvatar:apps", "iluvatar:monitoring", "iluvatar:alertReceiverSecret"):
        del doc["config"][key]
    del doc["config"]["iluvatar:identity"]["headlamp"]
    doc["config"]["iluvatar:edge"] = {"publicIngress": "none", "publicDns": "none"}
    return edit(doc, {"iluvatar:ainur.k3sVersion": version, "iluvatar:ainur.sshAuthorizedKeys": [pub], **changes})


DOMAIN = {"iluvatar:network.domain": "lab.home.arpa"}
# Dex's front door at another address; a group bound to a ClusterRole more (RBAC: nothing on the Pis).
DEX_MOVED = {"iluvatar:identity.ip": "192.168.0.18"}
NEW_GROUP = {
    "iluvatar:identity.groups": [
        {"group": "example:homelab-admins", "clusterRole": "cluster-admin"},
        {"group": "example:family", "clusterRole": "view"},
        {"group": "example:guests", "clusterRole": "view"},
    ]
}


@dataclass(frozen=True)
class Sighting:
    """When the watcher first saw something of a Node: `at`, the start of the poll that saw it, and `before`, the start
    of the poll before, which did not. A poll reads after it starts, so what was there by a time t is seen by every poll
    started after t: `before >= t` says it came after t, whatever the machine's load, and `before < t` is all that
    something there by t can show (the watcher's own lag is no part of either)."""

    before: float
    at: float


@dataclass
class Lab:
    pis: Pis
    # (node, kubeletVersion) -> when the watcher first saw that Node Ready at that version.
    ready: dict[tuple[str, str], Sighting] = field(default_factory=dict)
    # node -> each time the watcher saw it Ready with a heartbeat it had not seen before (a kubelet's report).
    beats: dict[str, list[Sighting]] = field(default_factory=dict)
    # The stack's simulations: as flashed (FLASHED), after a k3sVersion change (UPGRADE), after a change of the
    # config, after a change of sign-in (Dex moved, a group more).
    sims: dict[str, Simulation] = field(default_factory=dict)
    # This machine's files the oidc step would write on a Pi, as they were before the Pis started (None: absent).
    host_etc: dict[str, bytes | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Disk:
    """What a valar's oidc step writes, as the Pi sees it (None: absent)."""

    hosts: bytes
    template: bytes | None
    authentication: bytes | None
    # The authentication config's (mode, uid, gid), and when it was last written (its mtime, in seconds).
    owner: tuple[int, int, int] | None
    written: float | None


def read(path: Path) -> bytes | None:
    return path.read_bytes() if path.exists() else None


def disk(pi: Pi) -> Disk:
    config = pi.path(apiserver.K3S_FILE)
    st = config.stat() if config.exists() else None
    return Disk(
        hosts=pi.path("/etc/hosts").read_bytes(),
        template=read(pi.path(apiserver.HOSTS_TEMPLATE)),
        authentication=read(config),
        owner=(st.st_mode, st.st_uid, st.st_gid) if st else None,
        written=st.st_mtime_ns / 1e9 if st else None,
    )


def flashed_hosts(name: str) -> bytes:
    """A Pi's /etc/hosts as the lab flashes it (tests/netns/pis.py)."""
    return f"127.0.0.1 localhost\n127.0.1.1 {name}\n".encode()


def dex_line(ip: str) -> bytes:
    """The line naming Dex (at the stack's identity.ip) in a valar's /etc/hosts, and in cloud-init's template of it."""
    return f"{ip} dex.iluvatar.home.arpa # iluvatar: dex\n".encode()


def simulations(root: Path, pub: str) -> dict[str, Simulation]:
    sims = {}
    for name, version, changes in (
        ("flashed", FLASHED, {}),
        ("upgrade", UPGRADE, {}),
        ("domain", UPGRADE, DOMAIN),
        ("dex-moved", FLASHED, DEX_MOVED),
        ("new-group", FLASHED, NEW_GROUP),
    ):
        (root / name).mkdir()
        sims[name] = simulate(read_stack_file(write_stack(root / name, stack_doc(pub, version, **changes), stack="homelab")))
    return sims


def remote_steps(sim: Simulation) -> list[Registration]:
    """The Ainur's remote commands that run something at `up` (each Pi's uninstall runs only as a delete), and each maia's
    bootstrap-token Secret its join waits for (plans.agent_token; applied to the lab's API server)."""
    return [
        r
        for r in Graph.of(sim).order()
        if r.name.startswith("ainur-")
        and (
            (r.type == "command:remote:Command" and r.inputs.get("create"))
            or (r.type == "kubernetes:core/v1:Secret" and r.name.endswith("-agent-token"))
        )
    ]


def changed(before: Simulation, after: Simulation) -> list[Registration]:
    """The remote steps the engine runs on this `up`: those whose inputs changed (pulumi-command runs `create` again)."""
    old = {r.name: r for r in remote_steps(before)}
    return [
        r
        for r in remote_steps(after)
        if r.name not in old or {k: secret(v) for k, v in old[r.name].inputs.items()} != {k: secret(v) for k, v in r.inputs.items()}
    ]


def watch(cluster: Cluster, seen: dict[tuple[str, str], Sighting], beats: dict[str, list[Sighting]], stop: threading.Event) -> None:
    """Record when each Node became Ready at its kubelet's version, and when it was seen Ready with a new heartbeat,
    as the API server says (every 50 ms)."""
    last: dict[str, str] = {}
    previous = 0.0  # the start of the poll before this one
    while not stop.is_set():
        now = time.time()
        for node in cluster.client.list("v1", "Node"):
            name = node["metadata"]["name"]
            conditions = [c for c in node["status"].get("conditions", []) if c["type"] == "Ready"]
            ready = [c["status"] for c in conditions] == ["True"]
            key = (name, node["status"].get("nodeInfo", {}).get("kubeletVersion", "")) if ready else None
            for old in [k for k in seen if k[0] == name and k != key]:
                del seen[old]
            if key is not None and key not in seen:
                seen[key] = Sighting(previous, now)
            beat = conditions[0].get("lastHeartbeatTime", "") if ready else ""
            if beat and last.get(name) != beat:
                last[name] = beat
                beats.setdefault(name, []).append(Sighting(previous, now))
        previous = now
        time.sleep(0.05)


@contextmanager
def watching(cluster: Cluster, seen: dict[tuple[str, str], Sighting], beats: dict[str, list[Sighting]]) -> Iterator[None]:
    """`watch` in a thread for the body's duration (the Pi labs' module fixtures)."""
    done = threading.Event()
    watcher = threading.Thread(target=watch, args=(cluster, seen, beats, done), daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join(10)


def operator_key(root: Path) -> tuple[Path, str]:
    """The operator's SSH key the stack's Pis are flashed with: (its private key file, its public line)."""
    key = root / "id_ed25519"
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "iluvatar-test", "-f", str(key))
    return key, (root / "id_ed25519.pub").read_text().strip()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("k3s-steps")
    key, pub = operator_key(root)
    path = write_stack(root, stack_doc(pub, FLASHED), stack="homelab")
    stack = load_stack_file(path)
    kubectl = gotools.build("kubectl")
    # The simulations (seconds each), in a process of their own while the namespaces and the API server start.
    # Spawned, not forked: earlier tests leave the Pulumi SDK's gRPC and asyncio threads in this process, and a
    # fork copies their held locks into a child that then waits on them for ever (a whole-suite run hung here).
    # With the GC thresholds pytest runs the simulations under (tests/conftest.py): a spawned interpreter starts with
    # the default ones, which took about a sixth more CPU for the same simulations.
    pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"), initializer=gc.set_threshold, initargs=GC_THRESHOLDS)
    simulating = pool.submit(simulations, root, pub)

    def start(address: str) -> Cluster:
        # No pod is made: no wait for the namespaces' default ServiceAccounts (the token controller runs all the same).
        return Cluster(K3S, root / "kube", address=address, ready_for_pods=False).start()

    host_etc = {path: read(Path(path)) for path in ("/etc/hosts", apiserver.HOSTS_TEMPLATE, apiserver.K3S_FILE)}
    with pool, pis(stack, root / "pis", start, kubectl, key, hosts_templates=HOSTS_TEMPLATES) as lab_pis:
        the_lab = Lab(lab_pis, sims=simulating.result(timeout=300), host_etc=host_etc)
        with watching(lab_pis.cluster, the_lab.ready, the_lab.beats):
            yield the_lab


def ok(steps: dict[str, Step]) -> None:
    failed = {n: (s.returncode, s.stderr) for n, s in steps.items() if s.returncode != 0}
    assert not failed, failed


@dataclass(frozen=True)
class BroughtUp:
    first: dict[str, Step]
    second: dict[str, Step]
    # What the stand-ins did during the second `up`, by Pi.
    again: dict[str, list[tuple[float, str]]]
    # What the oidc steps write, by Pi, after the first `up` and after the second.
    disks: tuple[dict[str, Disk], dict[str, Disk]]


@pytest.fixture(scope="module")
def brought_up(lab: Lab) -> BroughtUp:
    """The first `up` (every remote step of the Ainur), then a second one that runs them all again."""
    sim = lab.sims["flashed"]
    first = run_like_the_engine(lab.pis, Graph.of(sim), remote_steps(sim))
    ok(first)
    after_first = {n: disk(p) for n, p in lab.pis.pis.items()}
    # A valar's join returns once its API server answers, not its kubelet, which reports KUBELET_DELAY after k3s
    # starts: the last valar's (its join now after its oidc step) could report during the second `up` and be
    # read as that `up`'s doing. Every Pi's kubelet reports first, as it would between two `pulumi up`s.
    for pi in lab.pis.pis.values():
        reported(pi)
    before = {n: len(p.log()) for n, p in lab.pis.pis.items()}
    second = run_like_the_engine(lab.pis, Graph.of(sim), remote_steps(sim))
    ok(second)
    again = {n: p.log()[before[n] :] for n, p in lab.pis.pis.items()}
    return BroughtUp(first, second, again, (after_first, {n: disk(p) for n, p in lab.pis.pis.items()}))


def test_the_steps_reach_each_pi_as_pulumi_command_is_told_to(lab: Lab) -> None:
    """The connection is the program's: the Pi's inventory address, port 22, the stack's user, the secret key."""
    steps = remote_steps(lab.sims["flashed"])
    assert {s.name for s in steps} == {f"ainur-{n}-{kind}" for n in SERVERS_FIRST for kind in ("join", "k3s", "netboot-ready")} | {
        f"ainur-{n}-oidc" for n in VALAR
    } | {"ainur-credentials", "ainur-ca-hash", "ainur-varda-agent-token"}
    for step in steps:
        if step.type == "kubernetes:core/v1:Secret":
            continue
        connection = secret(step.inputs["connection"])
        if step.name.endswith("-netboot-ready"):
            # Each Pi's netboot gate asks whichever valar holds the API VIP (the lab's first valar holds it).
            assert lab.pis.stack.ainur is not None
            assert connection["host"] == str(lab.pis.stack.ainur.vip)
            continue
        pi = step.name.split("-")[1] if step.name not in ("ainur-credentials", "ainur-ca-hash") else "manwe"
        assert connection["host"] == str(lab.pis.pis[pi].node.ip)
        assert connection["user"] == "ubuntu" and connection.get("port", 22) == 22
        assert connection["privateKey"] == "[secret]"  # the stack's secret, which the simulation cannot read


def test_the_first_up_joins_every_pi_and_a_second_changes_nothing(lab: Lab, brought_up: BroughtUp) -> None:
    first, second, again = brought_up.first, brought_up.second, brought_up.again
    # The first valar first, then each Pi once the one before it has joined (servers before agents).
    for before, after in itertools.pairwise(SERVERS_FIRST):
        assert first[f"ainur-{after}-join"].start >= first[f"ainur-{before}-join"].end, (before, after)
    # Each valar's k3s is a member of the Ainur's etcd, which never went without quorum.
    assert lab.pis.etcd_members() == set(VALAR)
    assert etcd_problems(lab.pis.etcd_log(), set(VALAR)) == []
    # k3s was installed by cloud-init at the stack's version: the k3s steps leave it alone.
    for name in SERVERS_FIRST:
        assert f"k3s {FLASHED} already runs on {name}" in first[f"ainur-{name}-k3s"].stderr
        assert (name, FLASHED) in lab.ready
    nodes = {n["metadata"]["name"]: n for n in lab.pis.cluster.client.list("v1", "Node")}
    assert {n: nodes[n]["metadata"]["labels"]["iluvatar/role"] for n in SERVERS_FIRST} == {
        "manwe": "valar", "eonwe": "valar", "ilmare": "valar", "varda": "maiar"
    }  # fmt: skip
    # The second run: no install, no restart, the same token and kubeconfig. The join starts k3s (a no-op); the k3s step
    # finds it running the version of its binary (and its Node at it), then checks the gates.
    for name, actions in again.items():
        unit = k3s.service(lab.pis.pis[name].node)
        assert [a for _, a in actions] == [
            "cloud-init status --wait", f"systemctl enable {unit}", f"systemctl is-active {unit}", f"systemctl start {unit}",
            f"systemctl is-active {unit}",
        ], name  # fmt: skip
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


def test_each_valar_trusts_dex_before_it_joins_and_a_second_up_changes_nothing(lab: Lab, brought_up: BroughtUp) -> None:
    """Each valar's oidc step, before its join: the API server's authentication config exactly as the step's stdin
    says, root's, 0644; Dex named once in /etc/hosts, and in cloud-init's template where the Pi has one (none made
    where it has none). The maiar has neither. The second `up` runs it again and changes nothing."""
    sim = lab.sims["flashed"]
    steps, graph = sim.named(), Graph.of(sim)
    first, (after_first, after_second) = brought_up.first, brought_up.disks
    line, template = dex_line("192.168.0.16"), HOSTS_TEMPLATE_TEXT.encode()
    for name in VALAR:
        oidc, join = steps[f"ainur-{name}-oidc"], steps[f"ainur-{name}-join"]
        assert oidc.inputs["create"] == apiserver.k3s_authentication_script(lab.pis.stack)
        config = secret(oidc.inputs["stdin"])
        assert config == apiserver.k3s_authentication(lab.pis.stack, MOCK_CA_PEM)
        assert replace(after_first[name], written=None) == Disk(
            hosts=flashed_hosts(name) + line,
            template=template + line if name in HOSTS_TEMPLATES else None,
            authentication=config.encode(),
            owner=(0o100644, 0, 0),
            written=None,
        ), name
        # Before its join: the engine is told so, ran it so, and the file was written before the join's first action.
        assert oidc.urn in graph.ancestors(join.urn)
        assert first[oidc.name].end <= first[join.name].start
        joined, action = lab.pis.pis[name].log()[0]
        written, rewritten = after_first[name].written, after_second[name].written
        assert action == "cloud-init status --wait"
        assert written is not None and written < joined
        # The second `up` wrote it again, to the same bytes, and left one Dex line.
        assert replace(after_second[name], written=None) == replace(after_first[name], written=None)
        assert rewritten is not None and rewritten > written
    assert "ainur-varda-oidc" not in steps
    assert after_first["varda"] == after_second["varda"] == Disk(flashed_hosts("varda"), template, None, None, None)


def test_a_sign_in_change_reruns_the_oidc_steps_it_changes_and_replaces_the_dex_line(lab: Lab, brought_up: BroughtUp) -> None:
    """A group more changes no step on the Pis (it is RBAC, on both clusters); Dex at another address changes each
    valar's oidc step only, which replaces its line in /etc/hosts and the template (twice: still one), restarts
    nothing (k3s's API server reloads its file) and leaves the authentication config as it was."""
    assert changed(lab.sims["flashed"], lab.sims["new-group"]) == []
    after = lab.sims["dex-moved"]
    steps = changed(lab.sims["flashed"], after)
    assert sorted(s.name for s in steps) == sorted(f"ainur-{n}-oidc" for n in VALAR)
    was = {n: disk(p) for n, p in lab.pis.pis.items()}
    marks = {n: len(p.log()) for n, p in lab.pis.pis.items()}
    line, template = dex_line("192.168.0.18"), HOSTS_TEMPLATE_TEXT.encode()
    for _ in range(2):
        ok(run_like_the_engine(lab.pis, Graph.of(after), steps))
        for name in VALAR:
            now = disk(lab.pis.pis[name])
            assert now.hosts == flashed_hosts(name) + line, name
            assert now.template == (template + line if name in HOSTS_TEMPLATES else None), name
            assert (now.authentication, now.owner) == (was[name].authentication, was[name].owner), name
    assert disk(lab.pis.pis["varda"]) == was["varda"]
    for name, pi in lab.pis.pis.items():
        assert not [a for _, a in pi.log()[marks[name] :] if a.startswith("systemctl")], name


def test_a_hosts_file_that_does_not_end_in_a_newline_keeps_its_last_line(lab: Lab, brought_up: BroughtUp) -> None:
    """An /etc/hosts edited by hand may lack its last newline: Dex's line goes on a line of its own (not onto the
    Pi's own name), and the next run, replacing it, leaves the Pi's line where it was."""
    eonwe = lab.pis.pis["eonwe"]
    oidc = lab.sims["flashed"].named()["ainur-eonwe-oidc"]
    connection = secret(oidc.inputs["connection"])
    result = lab.pis.ssh(connection, "sudo sed -i '/# iluvatar: dex$/d' /etc/hosts && sudo truncate -s -1 /etc/hosts", None)
    assert result.returncode == 0, result.stderr
    assert eonwe.path("/etc/hosts").read_bytes() == b"127.0.0.1 localhost\n127.0.1.1 eonwe"
    for _ in range(2):
        result = lab.pis.ssh(connection, oidc.inputs["create"], secret(oidc.inputs["stdin"]))
        assert result.returncode == 0, result.stderr
        assert eonwe.path("/etc/hosts").read_bytes() == flashed_hosts("eonwe") + dex_line("192.168.0.16")


def upgrade_problems(lab: Lab, steps: dict[str, Step], version: str, order: list[str], since: float = 0) -> list[str]:
    """What is wrong with an upgrade's runs: a step that ended before its Node was Ready at `version` (a poll that
    started after the step's end did not see it yet), or started before the previous Pi's step ended (and its Node was
    Ready)."""
    problems = []
    previous: Step | None = None
    for name in order:
        step = steps[f"ainur-{name}-k3s"]
        ready = lab.ready.get((name, version))
        if ready is None or ready.at < since or ready.before >= step.end:
            problems.append(f"{name}: its step ended at {step.end:.2f}, its Node Ready at {version} {ready}")
        if previous is not None and step.start < previous.end:
            problems.append(f"{name}: started at {step.start:.2f}, before {previous.name} ended at {previous.end:.2f}")
        previous = step
    return problems


def test_a_k3s_version_change_upgrades_one_pi_at_a_time_servers_first(lab: Lab, brought_up: BroughtUp) -> None:
    before, after = lab.sims["flashed"], lab.sims["upgrade"]
    steps = changed(before, after)
    # Each Pi's netboot gate after its k3s step: triggered by the step's inputs, it runs on an upgrade too (the step
    # prints the same certificates' end as before, which was the gate's trigger and ran nothing).
    assert [s.name for s in steps] == [f"ainur-{n}-{step}" for n in SERVERS_FIRST for step in ("k3s", "netboot-ready")]
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
    # Each gate ran after its Pi's k3s step and before the next Pi's.
    for pi, following in itertools.pairwise(SERVERS_FIRST):
        assert runs[f"ainur-{pi}-k3s"].end <= runs[f"ainur-{pi}-netboot-ready"].start, pi
        assert runs[f"ainur-{pi}-netboot-ready"].end <= runs[f"ainur-{following}-k3s"].start, pi
    # Run again (an interrupted `up` resumed): nothing is installed.
    again = run_like_the_engine(lab.pis, Graph.of(after), steps)
    ok(again)
    assert all(f"k3s {UPGRADE} already runs" in s.stderr for name, s in again.items() if name.endswith("-k3s"))


def etcd_problems(events: list[tuple[float, str, str]], members: set[str]) -> list[str]:
    """What the Ainur's etcd went through that a roll must never cause: two members down at once, or no quorum."""
    problems, down = [], set()
    for when, what, name in events:
        if what == "down":
            down.add(name)
        else:
            down.discard(name)
        if len(down) > 1:
            problems.append(f"{', '.join(sorted(down))} down at once at {when:.2f}")
        if 2 * len(members - down) <= len(members):
            problems.append(f"etcd without quorum at {when:.2f}: {len(members - down)} of {len(members)} members up")
    return problems


def roll_problems(lab: Lab, runs: dict[str, Step], order: list[str], since: float) -> list[str]:
    """What is wrong with a roll of k3s restarts: a Pi restarted twice or not at all, one restarted before the Pi before it
    had finished its join, a join that ended before its Node reported again or (a valar's) before its etcd member was
    back, and etcd's own problems."""
    events = [e for e in lab.pis.etcd_log() if e[0] >= since]
    problems = etcd_problems(events, lab.pis.etcd_members())
    previous: str | None = None
    for name in order:
        step = runs[f"ainur-{name}-join"]
        unit = k3s.service(lab.pis.pis[name].node)
        # A restart stops k3s, then starts it (plans.k3s.stopped): the stop is where the old k3s goes.
        restarts = [t for t, a in lab.pis.pis[name].log() if a == f"systemctl stop {unit}" and t >= since]
        if len(restarts) != 1:
            problems.append(f"{name}: restarted {len(restarts)} times")
            continue
        if previous is not None and restarts[0] < runs[f"ainur-{previous}-join"].end:
            problems.append(f"{name}: restarted at {restarts[0]:.2f}, before {previous}'s join ended at {runs[f'ainur-{previous}-join'].end:.2f}")
        # Its Node Ready again, by a report seen after the restart, before its join ended: no poll started after the
        # join's end had not seen it yet (Sighting).
        reported = [b for b in lab.beats.get(name, []) if b.at > restarts[0]]
        if not reported or reported[0].before >= step.end:
            problems.append(f"{name}: its join ended at {step.end:.2f}, its Node reported after the restart {reported[0] if reported else None}")
        if name in VALAR:
            back = [t for t, what, who in events if who == name and what == "up"]
            if not back or back[-1] > step.end:
                problems.append(f"{name}: its join ended at {step.end:.2f}, its etcd member up again at {back[-1] if back else None}")
        previous = name
    return problems


def test_a_shared_setting_restarts_one_pi_at_a_time_with_etcd_healthy_in_between(lab: Lab, brought_up: BroughtUp) -> None:
    """The domain is in every valar's tls-san (a key every server's config carries): each valar restarts k3s in turn,
    once the one before it is back (its Node Ready, etcd healthy with every member), so etcd keeps its quorum. With the
    joins side by side, two of the three valar restart at once and etcd goes without quorum."""
    before, after = lab.sims["upgrade"], lab.sims["domain"]
    steps = [s for s in changed(before, after) if s.name.endswith("-join")]
    # The domain is in each server's tls-san; an agent's config does not carry it.
    assert sorted(s.name for s in steps) == sorted(f"ainur-{n}-join" for n in SERVERS_FIRST[:3])
    marks = {n: len(p.log()) for n, p in lab.pis.pis.items()}
    since = time.time()
    runs = run_like_the_engine(lab.pis, Graph.of(after), steps)
    ok(runs)
    assert roll_problems(lab, runs, VALAR, since) == []
    # Every member went down once and came back, each while the other two were up.
    assert [(what, who) for _, what, who in lab.pis.etcd_log() if _ >= since] == [(w, n) for n in VALAR for w in ("down", "up")]
    for name in SERVERS_FIRST[:3]:
        actions = [a for _, a in lab.pis.pis[name].log()[marks[name] :]]
        # Restarted (stopped, then started), not started alone.
        assert [a for a in actions if a.startswith(("systemctl stop", "systemctl start"))] == ["systemctl stop k3s", "systemctl start k3s"], actions
        assert "lab.home.arpa" in (lab.pis.pis[name].root / "etc-rancher" / "k3s" / "config.yaml").read_text()
    assert not any(a.startswith("systemctl") for _, a in lab.pis.pis["varda"].log()[marks["varda"] :])


def test_a_valar_does_not_restart_while_another_etcd_member_is_down(lab: Lab, brought_up: BroughtUp) -> None:
    """ilmare's k3s stopped: eonwe's join with a changed config waits (here 2 s, the program's 300 s) for etcd healthy with
    every member, says which member is not, and neither installs the config nor restarts k3s. Then ilmare comes back."""
    eonwe = lab.pis.pis["eonwe"]
    join = lab.sims["domain"].named()["ainur-eonwe-join"]
    connection = secret(join.inputs["connection"])
    assert lab.pis.ssh(secret(lab.sims["domain"].named()["ainur-ilmare-join"].inputs["connection"]), "sudo systemctl stop k3s", None).returncode == 0
    config = eonwe.root / "etc-rancher" / "k3s" / "config.yaml"
    was, mark = config.read_bytes(), len(eonwe.log())
    script = k3s.join_script(eonwe.node, etcd_timeout=2)
    assert script == join.inputs["create"].replace(f"wait_for {k3s.ETCD_TIMEOUT_SECONDS} ", "wait_for 2 ")
    try:
        # Bounded by the script's own 2 s, which its line below names (waited 2 s): a gate that never gives up raises here.
        result = lab.pis.ssh(connection, script, str(stdin_of(lab.pis, join)) + "# a change\n", timeout=GIVEN_UP_SECONDS)
    finally:
        assert (
            lab.pis.ssh(secret(lab.sims["domain"].named()["ainur-ilmare-join"].inputs["connection"]), "sudo systemctl start k3s", None).returncode
            == 0
        )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "iluvatar: eonwe: waited 2 s for etcd healthy with every member before k3s restarts; "
        "still: etcd member ilmare (https://192.168.0.13:2379) is not healthy; look with: sudo journalctl -u k3s"
    )
    assert config.read_bytes() == was
    assert [a for _, a in eonwe.log()[mark:] if a.startswith("systemctl")] == ["systemctl enable k3s", "systemctl is-active k3s"]
    # ilmare down alone: etcd kept its quorum throughout.
    assert not [p for p in etcd_problems(lab.pis.etcd_log(), set(VALAR)) if "without quorum" in p]


def test_a_k3s_that_never_tells_systemd_it_is_ready_fails_its_join_within_the_bound(lab: Lab, brought_up: BroughtUp) -> None:
    """k3s's unit is Type=notify with TimeoutStartSec=0: `systemctl restart` would wait for ever, and pulumi-command would
    not cancel it. The join bounds it itself (here 2 s, the program's 600 s) and says so; systemd goes on starting it."""
    varda = lab.pis.pis["varda"]
    join = lab.sims["domain"].named()["ainur-varda-join"]
    script = k3s.join_script(varda.node, restart_timeout=2)
    bound = k3s.RESTART_TIMEOUT_SECONDS
    assert script == join.inputs["create"].replace(f"timeout {bound} systemctl", "timeout 2 systemctl").replace(
        f"within {bound} s of", "within 2 s of"
    )
    (varda.state / "never-ready").write_text("")
    try:
        # Bounded by the script's own 2 s (its `timeout`, whose status 124 the line below names): a restart left to wait
        # for ever raises here.
        result = lab.pis.ssh(secret(join.inputs["connection"]), script, str(stdin_of(lab.pis, join)) + "# a change\n", timeout=GIVEN_UP_SECONDS)
    finally:
        (varda.state / "never-ready").unlink()
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "iluvatar: varda: systemd did not see k3s-agent start within 2 s of its restart "
        "(its unit has no bound of its own: TimeoutStartSec=0); look with: sudo journalctl -u k3s-agent"
    )
    # systemd's job went on: the agent is up once it says it is ready, and the program's own join puts its config back.
    ok(run_like_the_engine(lab.pis, Graph.of(lab.sims["domain"]), [join]))


def owed(pi: Pi) -> Path:
    """The Pi's mark of a restart owed (plans.k3s.RESTART_OWED), as this machine sees it."""
    return pi.root / "var-lib-rancher" / Path(k3s.RESTART_OWED).relative_to("/var/lib/rancher")


def test_a_join_whose_pi_never_came_back_fails_again_on_the_next_run_rather_than_rolling_on(lab: Lab, brought_up: BroughtUp) -> None:
    """A shared setting restarts ilmare, whose Node then never reports: its join fails (here a 2 s bound, the program's
    600 s). The next `pulumi up` runs the same join, the config now unchanged on the Pi and k3s running, its API server
    answering: it must restart and wait again, and fail again, so the chain never restarts the next Pi beside a broken
    one. Unfixed, the retry found nothing to change and passed at once."""
    ilmare = lab.pis.pis["ilmare"]
    join = lab.sims["domain"].named()["ainur-ilmare-join"]
    connection, changed_config = secret(join.inputs["connection"]), str(stdin_of(lab.pis, join)) + "# a change\n"
    script = k3s.join_script(ilmare.node, node_timeout=2)
    assert script == join.inputs["create"].replace(f'wait_for {k3s.NODE_TIMEOUT_SECONDS} "its Node', 'wait_for 2 "its Node')
    mark = len(ilmare.log())
    (ilmare.state / "broken").write_text("")
    try:
        with kubelet_gone(lab.pis.cluster, "ilmare"):
            results = [lab.pis.ssh(connection, script, changed_config) for _ in range(2)]
            marked = owed(ilmare).exists()
    finally:
        (ilmare.state / "broken").unlink()
    for result in results:
        assert result.returncode == 1, (result.stderr, ilmare.log()[mark:], lab.pis.cluster.client.get("v1", "Node", "ilmare"))
        assert result.stderr.splitlines()[-1].startswith(
            "iluvatar: ilmare: waited 2 s for its Node Ready again after k3s's restart; still: its Node has not reported since the restart"
        ), result.stderr
    assert results[1].stderr.splitlines()[0] == (
        "iluvatar: ilmare: an earlier run's restart of k3s was not seen through (its Node Ready, etcd healthy): restarting it again"
    )
    assert [a for _, a in ilmare.log()[mark:] if a.startswith(("systemctl stop", "systemctl start"))] == [
        "systemctl stop k3s",
        "systemctl start k3s",
    ] * 2
    assert marked
    # Mended, the program's own join (its config back) restarts it once more, sees it through, and owes nothing.
    ok(run_like_the_engine(lab.pis, Graph.of(lab.sims["domain"]), [join]))
    assert not owed(ilmare).exists()
    assert etcd_problems(lab.pis.etcd_log(), set(VALAR)) == []


def without_ready_wait(script: str) -> str:
    """The deliberate break: the upgrade script with its wait for the Node cut out."""
    head, _, _ = script.partition("deadline=")
    assert head != script
    return head


@contextmanager
def kubelets_held(lab: Lab, names: Collection[str]) -> Iterator[None]:
    """No Node report from these Pis' kubelets while inside (pis.py's `hold-kubelet-<name>`); after, every held Pi's
    kubelet has reported its installed k3s, so nothing of this test lands in the next."""
    holds = [lab.pis.root / "etcd-lab" / f"hold-kubelet-{name}" for name in names]
    for hold in holds:
        hold.write_text("")
    try:
        yield
    finally:
        for hold in holds:
            hold.unlink()
        for name in names:
            reported(lab.pis.pis[name])


def reported(pi: Pi) -> None:
    """Wait until the Pi's kubelet has reported since k3s last started (its log's last `started` before a
    `kubelet-reported`): a report still to come would land in the next test."""

    def log() -> list[str]:
        return [what for _, what in pi.log() if what.startswith(("started ", "kubelet-reported "))]

    wait_until(
        f"{pi.node.name}'s kubelet to report since its k3s started",
        lambda: not log() or log()[-1].startswith("kubelet-reported "),
        60,
        lambda: log()[-3:],
    )


def test_an_upgrade_that_does_not_wait_for_its_node_is_caught(lab: Lab, brought_up: BroughtUp) -> None:
    """The break: each Pi's k3s step with its wait cut out, for a version change (back to FLASHED). The kubelets report
    only once every step has ended, so the break is seen whatever the machine's load: unheld, a Pi's report came within
    the half second after its cut step's end on a loaded run, and the break went unseen."""
    steps = [s for s in changed(lab.sims["domain"], lab.sims["flashed"]) if s.name.endswith("-k3s")]
    assert len(steps) == 4
    edited = {s.name: without_ready_wait(s.inputs["create"]) for s in steps}
    with kubelets_held(lab, SERVERS_FIRST):
        runs = run_like_the_engine(lab.pis, Graph.of(lab.sims["flashed"]), steps, scripts=edited)
        ok(runs)
        problems = upgrade_problems(lab, runs, FLASHED, SERVERS_FIRST, since=min(r.start for r in runs.values()))
    assert [p.split(":")[0] for p in problems if "its Node Ready" in p] == SERVERS_FIRST, problems
    # The cut scripts never reached the end that clears their mark of a restart owed: clear it, as their gates would have
    # (a Pi whose step had not written it yet when its stand-in restart answered has none: a loaded machine's run did).
    for pi in lab.pis.pis.values():
        owed(pi).unlink(missing_ok=True)
    lab.pis.cluster.wait_for("every Pi's Node Ready at the flashed version", lambda: all((n, FLASHED) in lab.ready for n in SERVERS_FIRST))


def test_a_pi_whose_node_never_comes_back_fails_its_step_within_the_bound_naming_it(lab: Lab, brought_up: BroughtUp) -> None:
    varda = lab.pis.pis["varda"]
    reported(varda)
    step = next(s for s in remote_steps(lab.sims["upgrade"]) if s.name == "ainur-varda-k3s")
    assert lab.pis.stack.ainur is not None
    stack = load_stack_file(write_stack(lab.pis.root, stack_doc(lab.pis.stack.ainur.ssh_authorized_keys[0], UPGRADE), stack="never"))
    # The program's script with a 2 s bound instead of its 900 s (plans.k3s.upgrade_script's `timeout`).
    script = k3s.upgrade_script(stack, varda.node, snapshot=False, timeout=2)
    assert script == step.inputs["create"].replace(f"{k3s.UPGRADE_TIMEOUT_SECONDS}", "2")
    (varda.state / "broken").write_text("")
    try:
        # Bounded by the script's own 2 s, which its line below names: had it no bound, the Node that never comes back
        # would hold it until the harness's hung-test timeout stopped it, with another line. A wall-clock bound here
        # measured the loaded machine, not the script (8.4 s in a CI run for a 2 s bound, one poll and SSH).
        result = lab.pis.ssh(secret(step.inputs["connection"]), script, None)
    finally:
        (varda.state / "broken").unlink()
    assert result.returncode == 1
    assert f"iluvatar: varda was not Ready at {UPGRADE} within 2 s of its k3s upgrade" in result.stderr, result.stderr
    assert "sudo journalctl -u k3s-agent" in result.stderr
    reported(varda)


def test_a_node_that_says_ready_at_the_new_version_before_the_install_is_not_taken_for_its_k3s_coming_back(lab: Lab, brought_up: BroughtUp) -> None:
    """A Node object outlives its k3s: it may say Ready at the version the step installs before k3s runs it (a Pi
    reflashed with an older k3s, a downgrade whose report never came), and says so until the node lifecycle
    controller notices the silence. The step waits for a report from after its install: here none ever comes (the
    Pi broken, its Node left to no one), and the step fails within its 2 s. Unfixed, it passed at once on the old
    report (a loaded CI run's chained tests did)."""
    varda = lab.pis.pis["varda"]
    reported(varda)
    have = varda.version()
    want = FLASHED if have == UPGRADE else UPGRADE
    step = next(s for s in remote_steps(lab.sims["flashed" if want == FLASHED else "upgrade"]) if s.name == "ainur-varda-k3s")
    assert lab.pis.stack.ainur is not None
    stack = load_stack_file(write_stack(lab.pis.root, stack_doc(lab.pis.stack.ainur.ssh_authorized_keys[0], want), stack="stale"))
    script = k3s.upgrade_script(stack, varda.node, snapshot=False, timeout=2)
    assert script == step.inputs["create"].replace(f"{k3s.UPGRADE_TIMEOUT_SECONDS}", "2")
    (varda.state / "broken").write_text("")
    try:
        with kubelet_gone(lab.pis.cluster, "varda"):
            node = lab.pis.cluster.client.get("v1", "Node", "varda")
            assert node is not None
            lab.pis.cluster.client.merge_patch(node, {"status": {"nodeInfo": {"kubeletVersion": want}}}, subresource="status")
            result = lab.pis.ssh(secret(step.inputs["connection"]), script, None)
    finally:
        (varda.state / "broken").unlink()
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines()[0] == f"iluvatar: varda: k3s {have} -> {want}", result.stderr
    assert result.stderr.splitlines()[-1].startswith(
        "iluvatar: varda: waited 2 s for its Node Ready again after k3s's restart; still: its Node has not reported since the restart"
    ), result.stderr
    reported(varda)


# Answers a TCP connection and never a request: a download that stalls (a CDN that hangs, a link that drops packets).
STALLED_SERVER = """import socket
s = socket.create_server(("0.0.0.0", 18080))
print("listening", flush=True)
held = []
while True:
    held.append(s.accept())
"""


def test_a_k3s_installer_not_fetched_or_not_finished_fails_its_step_within_its_bounds_naming_which(lab: Lab, brought_up: BroughtUp) -> None:
    """pulumi-command never cancels a remote command once it runs, so the upgrade bounds its own fetch of k3s's installer
    (the real curl's --max-time, against a server that accepts and never answers) and the install (`timeout`, around an
    installer whose download never ends). Here 2 s each, the program's 120 s and 1200 s. Nothing is installed."""
    varda = lab.pis.pis["varda"]
    sim = lab.sims["flashed" if varda.version() == UPGRADE else "upgrade"]
    step = next(s for s in remote_steps(sim) if s.name == "ainur-varda-k3s")
    assert lab.pis.stack.ainur is not None
    want = FLASHED if varda.version() == UPGRADE else UPGRADE
    stack = load_stack_file(write_stack(lab.pis.root, stack_doc(lab.pis.stack.ainur.ssh_authorized_keys[0], want), stack="installer"))
    stalled = f"http://{OPERATOR_IP}:18080/"
    fetch = k3s.upgrade_script(stack, varda.node, snapshot=False, installer=stalled, fetch_timeout=2)
    # The fetch's bound alone (its --max-time and its message), not the certificates' 120 days.
    bounded = (
        step.inputs["create"].replace(f"--max-time {k3s.FETCH_SECONDS} ", "--max-time 2 ").replace(f"within {k3s.FETCH_SECONDS} s", "within 2 s")
    )
    assert fetch == bounded.replace(k3s.INSTALLER, stalled)
    server = subprocess.Popen(["ip", "netns", "exec", lab.pis.operator, "python3", "-c", STALLED_SERVER], stdout=subprocess.PIPE, text=True)
    mark = len(varda.log())
    try:
        # Wait for the listen, not a fixed time: under load a 0.5 s sleep let curl meet a closed port (exit 7, not 28).
        assert server.stdout is not None
        ready, _, _ = select.select([server.stdout], [], [], 30)
        assert ready and server.stdout.readline() == "listening\n", "the stalled server did not listen within 30 s"
        # Bounded by curl's own --max-time 2, whose exit 28 the line below names: a fetch left to wait for ever raises here.
        fetched = lab.pis.ssh(secret(step.inputs["connection"]), fetch, None, timeout=GIVEN_UP_SECONDS)
    finally:
        server.kill()
        server.wait()
    assert fetched.returncode == 1
    assert fetched.stderr.splitlines()[-1] == (
        f"iluvatar: varda: k3s's installer was not fetched from {stalled} within 2 s (curl's exit status 28; 28: the time ran out), "
        f"so nothing was installed; look with: curl -sSfL -o /dev/null {stalled}"
    )

    install = k3s.upgrade_script(stack, varda.node, snapshot=False, install_timeout=2)
    assert install == step.inputs["create"].replace(f"timeout {k3s.INSTALL_SECONDS} ", "timeout 2 ").replace(
        f"within {k3s.INSTALL_SECONDS} s", "within 2 s"
    )
    (varda.state / "installer-hangs").write_text("")
    try:
        # Bounded by the script's `timeout 2`, whose status 124 the line below names: an install left to run for ever
        # (the stand-in's download sleeps an hour) raises here.
        installed = lab.pis.ssh(secret(step.inputs["connection"]), install, None, timeout=GIVEN_UP_SECONDS)
    finally:
        (varda.state / "installer-hangs").unlink()
    assert installed.returncode == 1
    assert installed.stderr.splitlines()[-1] == (
        "iluvatar: varda: k3s's installer did not finish within 2 s (it downloads k3s, then restarts k3s-agent, whose unit has no start "
        "timeout): stopped; look with: sudo journalctl -u k3s-agent"
    )
    # The installer started its download, and `timeout` stopped it with what it started (its process group).
    assert [a for _, a in varda.log()[mark:] if a.startswith("install")] == ["installer downloading"]
    assert not [p for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline(p) == b"sleep\x003600\x00"]
    assert varda.version() != want


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return b""


def test_an_upgrade_cut_during_its_restart_is_finished_by_the_next_run(lab: Lab, brought_up: BroughtUp) -> None:
    """k3s's installer moves the new binary into place, then restarts k3s (setup_binary, then systemd_start); cut during
    the restart (here its 2 s bound, the program's 1200 s, around a k3s that does not tell systemd it is ready), the
    step fails with the binary at the new version. The next `pulumi up` runs it again: the binary says the version, but
    the restart was never seen through, so it restarts k3s and waits for its Node at the version. Unfixed, it said
    `already runs` and passed at once, its Node never waited for."""
    varda = lab.pis.pis["varda"]
    want = FLASHED if varda.version() == UPGRADE else UPGRADE
    step = next(s for s in remote_steps(lab.sims["flashed" if want == FLASHED else "upgrade"]) if s.name == "ainur-varda-k3s")
    assert lab.pis.stack.ainur is not None
    stack = load_stack_file(write_stack(lab.pis.root, stack_doc(lab.pis.stack.ainur.ssh_authorized_keys[0], want), stack="cut"))
    cut = k3s.upgrade_script(stack, varda.node, snapshot=False, install_timeout=2)
    assert cut == step.inputs["create"].replace(f"timeout {k3s.INSTALL_SECONDS} ", "timeout 2 ").replace(
        f"within {k3s.INSTALL_SECONDS} s", "within 2 s"
    )
    connection = secret(step.inputs["connection"])
    (varda.state / "never-ready").write_text("")
    try:
        first = lab.pis.ssh(connection, cut, None)
    finally:
        (varda.state / "never-ready").unlink()
    assert first.returncode == 1
    assert first.stderr.splitlines()[-1].startswith("iluvatar: varda: k3s's installer did not finish within 2 s"), first.stderr
    assert varda.version() == want  # the binary replaced, before the restart
    mark = len(varda.log())
    start = time.time()
    again = lab.pis.ssh(connection, step.inputs["create"], None)
    end = time.time()
    assert again.returncode == 0, again.stderr
    assert again.stderr.splitlines()[0] == (
        f"iluvatar: varda: k3s {want} is installed, but an earlier run's restart was not seen through (its Node Ready): restarting k3s-agent"
    )
    restarts = [a for _, a in varda.log()[mark:] if a.startswith(("systemctl stop", "systemctl start", "systemctl restart", "install"))]
    assert restarts == ["systemctl stop k3s-agent", "systemctl start k3s-agent"]
    # Ready at the version first seen after the run began, and by its end (Sighting).
    ready = lab.ready.get(("varda", want))
    assert ready is not None and start < ready.at and ready.before < end, (start, ready, end)
    assert not owed(varda).exists()


def test_a_k3s_whose_binary_was_replaced_but_not_restarted_is_restarted_by_the_next_run(lab: Lab, brought_up: BroughtUp) -> None:
    """The installer stopped between its `mv -f` of the binary and its restart, before this change (no mark left): the
    binary says the version, the running k3s (its kubelet, on the Node) the old one. The step restarts it."""
    varda = lab.pis.pis["varda"]
    have = varda.version()
    want = FLASHED if have == UPGRADE else UPGRADE
    step = next(s for s in remote_steps(lab.sims["flashed" if want == FLASHED else "upgrade"]) if s.name == "ainur-varda-k3s")
    assert lab.ready.get(("varda", have)) is not None and not owed(varda).exists()
    (varda.state / "version").write_text(want + "\n")  # setup_binary, and nothing after
    mark = len(varda.log())
    again = lab.pis.ssh(secret(step.inputs["connection"]), step.inputs["create"], None)
    assert again.returncode == 0, again.stderr
    assert again.stderr.splitlines()[0] == (
        f"iluvatar: varda: k3s {want} is installed, but its Node's kubelet runs {have}, not the installed {want}: restarting k3s-agent"
    )
    assert [a for _, a in varda.log()[mark:] if a.startswith(("systemctl stop", "systemctl start", "install", "started"))] == [
        "systemctl stop k3s-agent",
        "systemctl start k3s-agent",
        f"started {want}",
    ]
    assert ("varda", want) in lab.ready


# --- Each maia's own join token (plans.agent_token), checked by the agent stand-in as k3s's agent does --------------

FULL_TOKEN = re.compile(r"K10([0-9a-f]{64})::([a-z0-9]{6})\.([a-z0-9]{16})")
SERVER_CA = "/var/lib/rancher/k3s/server/tls/server-ca.crt"
CLIENT_CERT = ("/var/lib/rancher/k3s/agent/client-kubelet.crt", "/var/lib/rancher/k3s/agent/client-kubelet.key")


def k3s_config(pi: Pi) -> dict[str, Any]:
    config = yaml.safe_load(pi.path(k3s.CONFIG_PATH).read_text())
    assert isinstance(config, dict)
    return config


def shared(lab: Lab) -> Path:
    """The lab's folder every Pi sees at /var/lib/rancher/etcd-lab (its supervisor's view: cacerts, passwd)."""
    return lab.pis.pis["manwe"].root.parent / "etcd-lab"


def refusals(pi: Pi) -> list[str]:
    path = pi.state / "agent-refused"
    return [line.split(" ", 1)[1] for line in path.read_text().splitlines()] if path.exists() else []


def refused_last(pi: Pi, line: str, token: str, seconds: float = 60) -> None:
    """Wait, at most `seconds`, until the agent's last refusal says `line`; fail naming the token and what it logged."""
    wait_until(f"{pi.node.name}'s agent to refuse: {line}", lambda: refusals(pi) and line in refusals(pi)[-1], seconds, lambda: (token, refusals(pi)))


def without_client_certificate(pi: Pi) -> None:
    """The agent's folder as a netbooted maia's new root has it (plans.netboot.nfs KEPT_ON_NEW_IMAGE): no client
    certificate, so its start authenticates with its token alone."""
    for path in CLIENT_CERT:
        pi.path(path).unlink(missing_ok=True)


def revoked(lab: Lab, token: str, seconds: float = 30) -> None:
    """Wait until the API server refuses `token`: its bootstrap authenticator reads Secrets through an informer, and it
    keeps a token it authenticated in a cache for seconds (a deleted Secret's token is refused within them)."""
    client = lab.pis.cluster.client_for_token(token)
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    try:
        wait_until(
            "the API server to refuse a deleted Secret's token",
            lambda: client.request("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", review)[0] == 401,
            seconds,
            interval=0.5,
        )
    finally:
        client.close()


def test_each_maia_joins_with_its_own_token_pinned_to_the_ca_and_the_valar_with_the_server_token(lab: Lab, brought_up: BroughtUp) -> None:
    manwe, varda = lab.pis.pis["manwe"], lab.pis.pis["varda"]
    ca = manwe.path(SERVER_CA).read_bytes()
    digest = hashlib.sha256(ca).hexdigest()
    # The ca-hash step printed the hash k3s wrote in its server token file, and nothing of the password.
    server = k3s_config(manwe)["token"]
    assert manwe.path(agent_token.SERVER_TOKEN_FILE).read_text() == f"K10{digest}::server:{server}\n"
    assert brought_up.first["ainur-ca-hash"].stdout == f"{digest}\n"
    assert all(k3s_config(lab.pis.pis[name])["token"] == server for name in VALAR)
    token = k3s_config(varda)["token"]
    found = FULL_TOKEN.fullmatch(token)
    assert found is not None and found.group(1) == digest, token
    assert server not in varda.path(k3s.CONFIG_PATH).read_text()
    # Its Secret on the real API server, as the program declared it; the agent's start passed at once.
    made = lab.pis.cluster.client.get("v1", "Secret", f"bootstrap-token-{found.group(2)}", namespace="kube-system")
    assert made is not None and made["type"] == "bootstrap.kubernetes.io/token"
    data = {k: base64.b64decode(v).decode() for k, v in made["data"].items()}
    assert data == agent_token.secret_string_data(varda.node, found.group(2), found.group(3))
    assert refusals(varda) == []


def test_the_agent_refuses_a_wrong_ca_hash_or_token_and_starts_with_the_programs(lab: Lab, brought_up: BroughtUp) -> None:
    """The agent stand-in follows k3s: a token whose CA hash is not the served CA's, or that the API server's bootstrap
    authenticator does not know, keeps it retrying and never ready (the join fails within its bound); the server token
    is refused where the test says so; the program's own config starts it."""
    varda, sim = lab.pis.pis["varda"], lab.sims["flashed"]
    join = sim.named()["ainur-varda-join"]
    good = stdin_of(lab.pis, join)
    assert good is not None
    found = FULL_TOKEN.search(good)
    assert found is not None
    digest, ident, value = found.groups()
    script = k3s.join_script(varda.node, restart_timeout=2)
    server_url = k3s.server_url(lab.pis.stack)
    unauthorized = f"failed to retrieve configuration from server: {server_url}/v1-k3s/config: 401 Unauthorized"
    password = k3s_config(lab.pis.pis["manwe"])["token"]
    cases = [
        (f"K10{'0' * 64}::{ident}.{value}", f"token CA hash does not match the Cluster CA certificate hash: {'0' * 64} != {digest}"),
        (f"K10{digest}::zzzzzz.{value}", unauthorized),  # an id with no Secret
        (f"K10{digest}::{ident}.{'x' * 16}", unauthorized),  # the wrong secret
        (f"K10{digest}::server:{password}", "the lab refuses a server token on an agent"),
    ]
    (shared(lab) / "refuse-server-token").write_text("")
    try:
        for token, line in cases:
            without_client_certificate(varda)
            (varda.state / "agent-refused").unlink(missing_ok=True)
            result = lab.pis.ssh(secret(join.inputs["connection"]), script, good.replace(found.group(0), token))
            assert result.returncode == 1, token
            assert "systemd did not see k3s-agent start within 2 s of its restart" in result.stderr, token
            # The join gives up after its 2 s restart bound, which says nothing of when the restarted agent tries the
            # token: its refusal is an event of its own, waited for (the last line is the restarted agent's; the one
            # before may be the previous case's, stopped by the restart).
            refused_last(varda, line, token)
            assert not (varda.state / "running").exists()
    finally:
        (shared(lab) / "refuse-server-token").unlink()
    # The program's: its join restarts the agent, which authenticates with its token alone (no client certificate).
    (varda.state / "agent-refused").unlink(missing_ok=True)
    ok(run_like_the_engine(lab.pis, Graph.of(sim), [join]))
    assert refusals(varda) == []
    assert all(varda.path(path).exists() for path in CLIENT_CERT)  # handed out once joined


def test_a_card_maia_whose_secret_is_deleted_restarts_on_its_client_certificate_and_a_new_root_does_not(lab: Lab, brought_up: BroughtUp) -> None:
    """Deleting a maia's Secret revokes its token: the API server refuses it. A maia that joined keeps its kubelet's
    client certificate, which the agent sends with the token (WithClientCertificate) and the API server's x509
    authenticator takes first: it restarts. A root without it (a netbooted maia's new image) does not, until the next
    `pulumi up --refresh` makes the Secret again."""
    varda, sim = lab.pis.pis["varda"], lab.sims["flashed"]
    regs = sim.named()
    join, made = regs["ainur-varda-join"], regs["ainur-varda-agent-token"]
    name = secret(made.inputs["metadata"])["name"]
    lab.pis.cluster.client.delete({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "kube-system"}})
    changed_config = stdin_of(lab.pis, join)
    assert changed_config is not None
    found = FULL_TOKEN.search(changed_config)
    assert found is not None
    revoked(lab, f"{found.group(2)}.{found.group(3)}")
    connection = secret(join.inputs["connection"])
    (varda.state / "agent-refused").unlink(missing_ok=True)
    result = lab.pis.ssh(connection, k3s.join_script(varda.node), changed_config + "# a change\n")
    assert result.returncode == 0, result.stderr
    without_client_certificate(varda)
    result = lab.pis.ssh(connection, k3s.join_script(varda.node, restart_timeout=2), changed_config + "# another\n")
    assert result.returncode == 1
    server_url = k3s.server_url(lab.pis.stack)
    assert f"failed to retrieve configuration from server: {server_url}/v1-k3s/config: 401 Unauthorized" in refusals(varda)[0]
    # The Secret made again (what `pulumi up --refresh` does), then the program's join.
    ok(run_like_the_engine(lab.pis, Graph.of(sim), [made, join]))


def test_a_maia_deployed_on_the_server_token_moves_to_its_own_on_the_next_up_and_a_second_changes_nothing(lab: Lab, brought_up: BroughtUp) -> None:
    """A homelab deployed before plans.agent_token: its maia joined with the server token, and no Secret exists. The next
    `up` runs what differs from that state: the ca-hash step and the maia's Secret (new) and its join (its config): the
    agent restarts with its own token (the lab now refuses the server token on an agent, and the maia has no client
    certificate, as a netbooted one's new root: the token alone must pass). A second `up` restarts nothing."""
    manwe, varda, sim = lab.pis.pis["manwe"], lab.pis.pis["varda"], lab.sims["flashed"]
    regs = sim.named()
    join, made = regs["ainur-varda-join"], regs["ainur-varda-agent-token"]
    connection = secret(join.inputs["connection"])
    deployed = k3s.config(lab.pis.stack, varda.node, k3s_config(manwe)["token"])
    assert ok_run(lab.pis.ssh(connection, join.inputs["create"], deployed))
    assert k3s_config(varda)["token"] == k3s_config(manwe)["token"]
    name = secret(made.inputs["metadata"])["name"]
    lab.pis.cluster.client.delete({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "kube-system"}})
    found = FULL_TOKEN.search(str(stdin_of(lab.pis, join)))
    assert found is not None
    revoked(lab, f"{found.group(2)}.{found.group(3)}")
    without_client_certificate(varda)
    steps = [s for s in remote_steps(sim) if s.name in ("ainur-ca-hash", "ainur-varda-agent-token", "ainur-varda-join")]
    (shared(lab) / "refuse-server-token").write_text("")
    try:
        (varda.state / "agent-refused").unlink(missing_ok=True)
        since = len(varda.log())
        runs = run_like_the_engine(lab.pis, Graph.of(sim), steps)
        ok(runs)
        assert runs["ainur-varda-agent-token"].end <= runs["ainur-varda-join"].start
        assert runs["ainur-ca-hash"].end <= runs["ainur-varda-join"].start
        assert "systemctl stop k3s-agent" in [a for _, a in varda.log()[since:]]
        assert FULL_TOKEN.fullmatch(k3s_config(varda)["token"])
        assert refusals(varda) == []
        since = len(varda.log())
        ok(run_like_the_engine(lab.pis, Graph.of(sim), steps))
        # Its join: the config unchanged, `start` of a running agent (a no-op), no restart.
        assert [a for _, a in varda.log()[since:]] == [
            "cloud-init status --wait", "systemctl enable k3s-agent", "systemctl is-active k3s-agent", "systemctl start k3s-agent",
        ]  # fmt: skip
    finally:
        (shared(lab) / "refuse-server-token").unlink()


def ok_run(result: subprocess.CompletedProcess[str]) -> bool:
    assert result.returncode == 0, result.stderr
    return True


def test_a_pi_leaving_is_uninstalled_once_and_a_second_delete_is_harmless(lab: Lab, brought_up: BroughtUp) -> None:
    """The uninstall's `delete` (a Pi leaving the inventory, or `pulumi destroy`), run twice on the maiar."""
    varda = lab.pis.pis["varda"]
    uninstall = lab.sims["upgrade"].named()["ainur-varda-uninstall"]
    assert "create" not in uninstall.inputs  # nothing runs when it is created
    mark = len(varda.log())
    for _ in range(2):
        result = lab.pis.ssh(secret(uninstall.inputs["connection"]), uninstall.inputs["delete"], None)
        assert result.returncode == 0, result.stderr
    # (The last test's kubelet, back once the Pi was no longer broken, may report in between.)
    assert [a for _, a in varda.log()[mark:] if not a.startswith("kubelet-reported")] == ["uninstall", "systemctl stop k3s-agent"]
    assert not (varda.state / "version").exists()


def test_the_api_gate_passes_twice_on_the_kubeconfig_the_credentials_step_made(lab: Lab, brought_up: BroughtUp) -> None:
    """The Ainur's API gate (a local step: the upgrader's `wait-kube --api`), run twice as the engine runs it, on
    the kubeconfig the program builds from what the credentials step printed over SSH. Its one change: the
    server is the test's API server, not the VIP (kube-vip is not stood in)."""
    first = brought_up.first
    gate = lab.sims["flashed"].named()["ainur-gate-api"]
    assert gate.type == "command:local:Command"
    built = credentials_plan.kubeconfig(first["ainur-credentials"].stdout, lab.pis.cluster.server, "ainur")
    assert built == credentials_plan.kubeconfig(first["ainur-credentials"].stdout, k3s.server_url(lab.pis.stack), "ainur").replace(
        k3s.server_url(lab.pis.stack), lab.pis.cluster.server
    )
    upgrader.build()  # a step that builds it says so first (upgrader/README.md): this test is about what the gate says
    for _ in range(2):
        result = subprocess.run(
            ["sh", "-c", gate.inputs["create"]], input=json.dumps({"kubeconfig": built}), capture_output=True, text=True, timeout=120, cwd=ROOT
        )
        assert result.returncode == 0, result.stderr
        assert result.stderr == f"upgrader: {lab.pis.cluster.server.removeprefix('https://')}: API ready\n"


def test_the_pis_wrote_nothing_in_this_machines_etc_or_roots_home(lab: Lab, brought_up: BroughtUp) -> None:
    """Last: every Pi's /etc is an overlay of its own, so what the oidc steps wrote there as root is on the Pis only."""
    assert {path: read(Path(path)) for path in lab.host_etc} == lab.host_etc
    assert lab.host_etc[apiserver.K3S_FILE] is None
    # The steps' `k3s kubectl` runs as root, whose home is this machine's: its discovery cache is in the Pis' folders.
    cached = {d.name for pi in lab.pis.pis.values() for d in (pi.state / "kube-cache" / "discovery").glob("*")}
    assert lab.pis.cluster.server.removeprefix("https://").replace(":", "_") in cached
    assert not cached & {d.name for d in (Path.home() / ".kube" / "cache" / "discovery").glob("*")}
