"""A new Ubuntu image for the netbooting maiar (`ainur.piImage`), rolled by the exact steps the program registers.

The Ainur of the lab (tests/netns/pis.py) are manwe, a valar that boots from its card, and eonwe (a Pi 4) and ilmare (a
Pi 5), maiar that netboot. The steps are the simulation's `command:remote:Command` registrations (their `create` and
`stdin`) and the Pis' boot pointers (`pi-boot-<pi>`, ConfigMaps applied to the lab's real API server as pulumi-kubernetes
applies them), run in the engine's order (tests/netns/pis.py, run_like_the_engine): over SSH with OpenSSH's client and
Debian's sshd, with the real sudo, kubectl (the drain, the cordon and its mark, the Nodes), curl (TFTP) and the real
dnsmasq serving TFTP on the service address from the folders the program's own pi-tftp script keeps from the pointers
(netboot_service).

STAND-INS (tests/netns/pis.py): k3s, systemd (systemctl, systemd-run) and cloud-init, as the k3s lab has them; the
kubelet's projection of the pointers into netboot-cache (a second, not its sync period); and a Pi's reboot: every
process of its namespace killed, its "bootloader" reading cmdline.txt over TFTP (curl) until it is served, then a root
of the image its nfsroot names, kept per image as the NFS server keeps them (made as flashed, with its SSH host key: a
new image's root; the one it had: an image it ran before). The NFS server itself, its roots and their isolation run for
real in tests/netns/test_pi_nfs.py, and the TFTP folders against the scripted bootloader in test_pi_netboot.py.
"""

from __future__ import annotations

import gc
import hashlib
import itertools
import multiprocessing
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from iluvatar.cli import GC_THRESHOLDS
from iluvatar.graph import Graph
from iluvatar.simulate import Registration, Simulation, simulate
from plans.netboot import roll
from plans.netboot.pis import image_id
from stacks import load_stack_file, read_stack_file, releases
from tests.edit import edit, homelab_doc, write_stack
from tests.netns.lan import require_root, wait_until
from tests.netns.pis import ETCD_LAB, NetbootService, Pis, Step, connection_of, netboot_service, pis, reboot_now, run_like_the_engine, secret
from tests.netns.test_k3s_steps import Sighting, ok, operator_key, reported, watching
from tools import gotools
from tools.kube_cluster import K3S, Cluster

require_root()

pytestmark = pytest.mark.kube

# As tests/netns/test_k3s_steps.py: the k3s release before the shipped one, then the shipped one (stacks.releases.K3S).
FLASHED, UPGRADE = "v1.35.6+k3s1", releases.K3S
NETBOOTED = ["eonwe", "ilmare"]
# The image after the stack's default (24.04.3): what a user sets to move the maiar to a new one.
NEWER = {
    "release": "24.04.4",
    "url": "https://cdimage.ubuntu.com/releases/24.04.4/release/ubuntu-24.04.4-preinstalled-server-arm64+raspi.img.xz",
    # Any image's digest but a placeholder's (one digit 64 times, which validate refuses): the lab never fetches it.
    "sha256": hashlib.sha256(b"ubuntu-24.04.4-preinstalled-server-arm64+raspi.img").hexdigest(),
}


def stack_doc(pub: str, version: str, image: dict[str, str] | None = None) -> dict[str, Any]:
    """The homelab with eonwe a netbooting Pi 4 and ilmare a netbooting Pi 5, manwe its one valar, the test's key."""
    doc = homelab_doc()
    nodes = doc["config"]["iluvatar:nodes"]
    nodes[1].update({"board": "rpi4", "boot": "netboot", "serial": "9ffefdef"})
    nodes[2].update({"boot": "netboot", "serial": "1a2b3c4d"})
    doc["config"]["iluvatar:ainurSshPrivateKey"] = {"secure": "v1:bm9uY2Vub25jZW5v:dGhlIHRlc3QncyBrZXkgY2lwaGVy"}
    for key in ("iluvatar:cloudflare", "iluvatar:cloudflareApiToken", "iluvatar:apps", "iluvatar:monitoring", "iluvatar:alertReceiverSecret"):
        del doc["config"][key]
    del doc["config"]["iluvatar:identity"]["headlamp"]
    doc["config"]["iluvatar:edge"] = {"publicIngress": "none", "publicDns": "none"}
    changes: dict[str, Any] = {"iluvatar:ainur.k3sVersion": version, "iluvatar:ainur.sshAuthorizedKeys": [pub]}
    if image is not None:
        changes["iluvatar:ainur.piImage"] = image
    return edit(doc, changes)


SIMS = {"first": (FLASHED, None), "newer": (FLASHED, NEWER), "upgrade": (UPGRADE, NEWER), "back": (UPGRADE, None)}


def simulations(root: Path, pub: str) -> dict[str, Simulation]:
    out = {}
    for name, (version, image) in SIMS.items():
        (root / name).mkdir()
        out[name] = simulate(read_stack_file(write_stack(root / name, stack_doc(pub, version, image), stack="homelab")))
    return out


def steps_of(sim: Simulation) -> list[Registration]:
    """What the Ainur run at `up` (each Pi's uninstall runs only as a delete), with the Pis' boot pointers and the maiar's
    bootstrap-token Secrets."""
    return [
        r
        for r in Graph.of(sim).order()
        if r.name.startswith("ainur-")
        and (
            (r.type == "command:remote:Command" and r.inputs.get("create"))
            or (r.type == "kubernetes:core/v1:ConfigMap" and r.name.endswith("-boot"))
            # Each maia's bootstrap-token Secret, which its join waits for (plans.agent_token).
            or (r.type == "kubernetes:core/v1:Secret" and r.name.endswith("-agent-token"))
        )
    ]


def changed(before: Simulation, after: Simulation) -> list[Registration]:
    """What the engine runs on an `up` from a state where the last `up` (of `before`) succeeded at every step: the
    steps (and pointers) whose inputs changed. After a failed `up`, only `Engine` says what the next one runs."""
    old = {r.name: r for r in steps_of(before)}
    return [
        r
        for r in steps_of(after)
        if r.name not in old or {k: secret(v) for k, v in old[r.name].inputs.items()} != {k: secret(v) for k, v in r.inputs.items()}
    ]


@dataclass
class Stored:
    """One step in Pulumi's state: the inputs it last succeeded with, and its output a later step's `triggers` read."""

    inputs: dict[str, Any]
    output: str


@dataclass
class Engine:
    """Pulumi's state of the Ainur's steps, step by step, and what an `up` does with it. The engine diffs each step's
    inputs against that step's own stored inputs, and an input that is another step's output (the `triggers`) against
    that output as it is now, the stored one or the one its run this time printed (a step waits for its inputs: the
    engine's step generator resolves them first). A step that succeeds stores its inputs and outputs; one that fails
    keeps what it had (pulumi-go-provider infer, derivedResourceController.Update/Create: partial state only for a
    ResourceInitFailedError, which pulumi-command's remote Command never returns: its commandController.go returns
    the run's plain error; pulumi/pulumi#2011, PR #2035), and so does one that did not run."""

    state: dict[str, Stored] = field(default_factory=dict)

    def inputs(self, reg: Registration, printed: Mapping[str, Any]) -> dict[str, Any]:
        got = {k: secret(v) for k, v in reg.inputs.items()}
        if reg.property_dependencies.get("triggers"):
            # The steps they come from (the mock runtime has no real outputs: their values are the lab's). Triggers of
            # literal values only (a gate's hash of its k3s step's script) read no step and stay as they are, and so does
            # one read from a resource that is no step (ainur-secrets-epoch, a RandomId whose id stays while its keepers,
            # the flag, do; the lab never changes the flag): its value is the one the mock gave.
            names = [urn.rsplit("::", 1)[1] for urn in reg.property_dependencies["triggers"]]
            read = {name: printed[name] for name in names if name in printed}
            got["triggers"] = read if len(read) == len(names) else {**read, "": got["triggers"]}
        return got

    def preview(self, sim: Simulation) -> list[str]:
        """What `pulumi preview` of `sim` shows running, in order: a step whose inputs differ from its stored ones, and
        one whose `triggers` read a step that runs (its output unknown at preview, which differs from any stored value:
        pulumi-go-provider v1.3.0, pulumi-command 1.2.1's pin, infer/resource.go:1215-1228, the diff of the inputs, a
        `replaceOnChanges` field's change made a replace)."""
        unknown = object()
        shown: list[str] = []
        for reg in steps_of(sim):
            printed: dict[str, Any] = {name: stored.output for name, stored in self.state.items()}
            printed.update(dict.fromkeys(shown, unknown))
            if reg.name not in self.state or self.state[reg.name].inputs != self.inputs(reg, printed):
                shown.append(reg.name)
        return shown

    def up(
        self,
        lab: Pis,
        sim: Simulation,
        scripts: Mapping[str, str] | None = None,
        told: Callable[[Registration, Mapping[str, Step]], object] | None = None,
    ) -> dict[str, Step]:
        """One `pulumi up` of `sim`: the steps whose inputs differ from their stored ones run, in the engine's order.
        `told` is told of each step as the engine decides on it (HeldUntilGated.decide)."""
        diffed: dict[str, dict[str, Any]] = {}
        ran: set[str] = set()

        def decide(reg: Registration, done: Mapping[str, Step]) -> bool:
            if told is not None:
                told(reg, done)
            printed = {name: stored.output for name, stored in self.state.items()}
            printed.update({name: step.stdout for name, step in done.items() if name in ran})
            diffed[reg.name] = self.inputs(reg, printed)
            if reg.name in self.state and self.state[reg.name].inputs == diffed[reg.name]:
                return False
            ran.add(reg.name)
            return True

        runs = run_like_the_engine(lab, Graph.of(sim), steps_of(sim), scripts, decide)
        for name, step in runs.items():
            if step.returncode == 0:
                self.state[name] = Stored(diffed[name], step.stdout)
        return runs


@dataclass
class Lab:
    pis: Pis
    service: NetbootService
    sims: dict[str, Simulation]
    images: dict[str, str]
    ready: dict[tuple[str, str], Sighting] = field(default_factory=dict)
    beats: dict[str, list[Sighting]] = field(default_factory=dict)

    def node(self, name: str) -> dict[str, Any]:
        got = self.pis.cluster.client.get("v1", "Node", name)
        assert got is not None
        return got

    def pointer(self, name: str) -> str:
        got = self.pis.cluster.client.get("v1", "ConfigMap", f"pi-boot-{name}", "netboot")
        return "" if got is None else str(got["data"]["image"])


def built(images: Path, image: str) -> None:
    """An image as the builder leaves it on a Pi (tests/pi_image.py builds real ones for the other tests): here only
    what pi-tftp links and the Pis' stand-in bootloader reads, and its `.complete`."""
    (images / image / "boot").mkdir(parents=True)
    for name in ("start4.elf", "config.txt", "vmlinuz", "initrd.img"):
        (images / image / "boot" / name).write_text(f"{name} of {image}\n")
    (images / image / ".complete").write_text("0" * 64 + "\n")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("pi-roll")
    key, pub = operator_key(root)
    stack = load_stack_file(write_stack(root, stack_doc(pub, FLASHED), stack="homelab"))
    (root / "newer-stack").mkdir()
    newer = load_stack_file(write_stack(root / "newer-stack", stack_doc(pub, FLASHED, NEWER), stack="homelab"))
    images = {"first": image_id(stack), "newer": image_id(newer)}
    kubectl = gotools.build("kubectl")
    # With the GC thresholds pytest runs the simulations under (tests/conftest.py): a spawned interpreter starts with
    # the default ones, which took about a sixth more CPU for the same simulations.
    pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"), initializer=gc.set_threshold, initargs=GC_THRESHOLDS)
    simulating = pool.submit(simulations, root, pub)

    def start(address: str) -> Cluster:
        return Cluster(K3S, root / "kube", address=address).start()

    with pool, pis(stack, root / "pis", start, kubectl, key, images={n: images["first"] for n in NETBOOTED}) as lab_pis:
        client = lab_pis.cluster.client
        client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "netboot"}})
        for image in images.values():
            built(root / "images", image)
        with netboot_service(lab_pis, root / "images") as service:
            the_lab = Lab(lab_pis, service, simulating.result(timeout=300), images)
            with watching(lab_pis.cluster, the_lab.ready, the_lab.beats):
                yield the_lab


@pytest.fixture(scope="module")
def first_up(lab: Lab) -> dict[str, Step]:
    """The first `up`: every Pi joins; the netbooted maiar, already booted on the stack's image, get their pointers."""
    runs = run_like_the_engine(lab.pis, Graph.of(lab.sims["first"]), steps_of(lab.sims["first"]))
    ok(runs)
    return runs


def test_the_first_up_makes_each_pointer_and_reboots_nothing(lab: Lab, first_up: dict[str, Step]) -> None:
    image = lab.images["first"]
    for name in NETBOOTED:
        assert f"iluvatar: {name} has no Node yet (it has not joined): nothing to drain" in first_up[f"ainur-{name}-drain"].stderr
        assert lab.pointer(name) == image
        assert f"iluvatar: {name} already runs {image}" in first_up[f"ainur-{name}-reboot"].stderr
        assert f"iluvatar: {name} was not cordoned by its move: left as it is" in first_up[f"ainur-{name}-uncordon"].stderr
        assert "unschedulable" not in lab.node(name)["spec"]
    assert lab.service.reboots == [] and lab.service.errors == []
    # One Pi after the other: ilmare's steps only once eonwe's last (its uncordon) ended.
    assert first_up["ainur-ilmare-drain"].start >= first_up["ainur-eonwe-uncordon"].end


def pinned(lab: Lab, name: str) -> None:
    """A workload on the Pi (a Deployment whose pod only that Pi may run, and that its owner put there on purpose: it
    tolerates a netbooted maia's taint, plans.k3s): what its drain must move off it."""
    client = lab.pis.cluster.client
    wait_until("the default ServiceAccount", lambda: client.get("v1", "ServiceAccount", "default", "default"), 60, interval=0.5)
    labels = {"app": f"on-{name}"}
    client.create(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": f"on-{name}", "namespace": "default"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "nodeSelector": {"kubernetes.io/hostname": name},
                        "tolerations": [{"key": "iluvatar/boot", "operator": "Equal", "value": "netboot", "effect": "NoExecute"}],
                        "containers": [{"name": "app", "image": "registry.example/app:1"}],
                    },
                },
            },
        }
    )
    running(lab, name, 1)


def running(lab: Lab, name: str, count: int, seconds: float = 60) -> list[dict[str, Any]]:
    def pods() -> list[dict[str, Any]]:
        return lab.pis.cluster.client.list("v1", "Pod", "default", labelSelector=f"app=on-{name}")

    up: list[dict[str, Any]] = []

    def counted() -> bool:
        up[:] = [
            p
            for p in pods()
            if p["status"].get("phase") == "Running" and p["spec"].get("nodeName") == name and not p["metadata"].get("deletionTimestamp")
        ]
        return len(up) == count

    wait_until(f"{count} pod(s) of on-{name} running on {name}", counted, seconds, pods, interval=0.5)
    return up


def roll_problems(lab: Lab, runs: dict[str, Step], image: str, order: list[str], since: float) -> list[str]:
    """What is wrong with a roll to `image`: a Pi rebooted twice, not at all, or into another image; its reboot before
    its drain ended or before its pointer named the image; its join ended before its Node reported from after the
    reboot; the next Pi drained before it was uncordoned."""
    problems = []
    for before, name in itertools.pairwise([None, *order]):
        assert name is not None
        reboots = [(t, i) for t, n, i in lab.service.reboots if n == name and t >= since]
        if [i for _, i in reboots] != [image]:
            problems.append(f"{name}: rebooted into {[i for _, i in reboots]}")
            continue
        when = reboots[0][0]
        if when < runs[f"ainur-{name}-drain"].end or when < runs[f"ainur-{name}-boot"].end:
            problems.append(f"{name}: rebooted at {when:.2f}, before its drain or its pointer")
        join = runs[f"ainur-{name}-join"]
        # The kubelet's own report (the stand-in logs it once posted, with the time from before it sent it): kwok's
        # heartbeats of a Ready Node go on across the reboot, so the Node's heartbeats say nothing of the new root.
        reported = [t for t, what in lab.pis.pis[name].log() if what.startswith("kubelet-reported") and t > when]
        if not reported or reported[0] >= join.end:
            problems.append(f"{name}: its join ended at {join.end:.2f}, its kubelet reported after the reboot at {reported[0] if reported else None}")
        if runs[f"ainur-{name}-uncordon"].start < runs[f"ainur-{name}-k3s"].end:
            problems.append(f"{name}: uncordoned before its k3s step ended")
        if before is not None and runs[f"ainur-{name}-drain"].start < runs[f"ainur-{before}-uncordon"].end:
            problems.append(f"{name}: drained at {runs[f'ainur-{name}-drain'].start:.2f}, before {before} was uncordoned")
    return problems


@pytest.fixture(scope="module")
def rolled(lab: Lab, first_up: dict[str, Step]) -> tuple[dict[str, Step], float]:
    """A new image: each netbooted maia drained, moved, rebooted into it and back, one after the other."""
    pinned(lab, "eonwe")
    since = time.time()
    # Each new root's kubelet reports only once its join's gate on the Node's report from this boot has read the Node
    # (HeldUntilGated): the Node's Ready and heartbeats from before the reboot (kwok's) pass the join's other waits.
    with HeldUntilGated(lab, NETBOOTED, since) as held:
        runs = run_like_the_engine(lab.pis, Graph.of(lab.sims["newer"]), changed(lab.sims["first"], lab.sims["newer"]), decide=held.decide)
    ok(runs)
    assert held.released == {"eonwe": "its gate", "ilmare": "its gate"}
    return runs, since


def test_a_new_image_moves_each_netbooted_maia_one_at_a_time_behind_its_gates(lab: Lab, rolled: tuple[dict[str, Step], float]) -> None:
    runs, since = rolled
    image = lab.images["newer"]
    # What the engine runs: each Pi's drain, pointer, reboot, join, k3s step, uncordon and netboot gate (triggered by its
    # k3s step's script, which names the image), one Pi after the other.
    assert list(runs) == [f"ainur-{n}-{s}" for n in NETBOOTED for s in ("drain", "boot", "reboot", "join", "k3s", "uncordon", "netboot-ready")]
    assert roll_problems(lab, runs, image, NETBOOTED, since) == []
    assert lab.service.errors == []
    for name in NETBOOTED:
        assert lab.pointer(name) == image
        assert f"iluvatar: {name} runs {lab.images['first']}; it reboots into {image}" in runs[f"ainur-{name}-reboot"].stderr
        assert "uncordoned" in runs[f"ainur-{name}-uncordon"].stderr
        node = lab.node(name)
        assert "unschedulable" not in node["spec"] and roll.CORDONED not in node["metadata"].get("annotations", {})
        # Its new root: a fresh one (cloud-init's k3s, started by the join with its config), its SSH host key kept.
        assert lab.pis.pis[name].root.name == f"{name}@{image}"
    # The workload left eonwe before its reboot and came back once it was uncordoned.
    assert running(lab, "eonwe", 1)[0]["metadata"]["creationTimestamp"] > time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since - 1))


def test_a_k3s_upgrade_of_a_netbooted_maia_is_any_pis(lab: Lab, rolled: tuple[dict[str, Step], float]) -> None:
    """A k3sVersion change runs each Pi's k3s step, the netbooted maiar's as any Pi's: no drain, no reboot."""
    steps = changed(lab.sims["newer"], lab.sims["upgrade"])
    # Each with its netboot gate after it: the step's script names the version, and the gate is triggered by it.
    assert [s.name for s in steps] == [f"ainur-{n}-{s}" for n in ("manwe", "eonwe", "ilmare") for s in ("k3s", "netboot-ready")]
    reboots = len(lab.service.reboots)
    runs = run_like_the_engine(lab.pis, Graph.of(lab.sims["upgrade"]), steps)
    ok(runs)
    assert len(lab.service.reboots) == reboots
    for name in NETBOOTED:
        pi = lab.pis.pis[name]
        assert pi.version() == UPGRADE
        assert [a.split()[:3] for _, a in pi.log() if a.startswith("install ")] == [["install", UPGRADE, "agent"]]
        # Ready at the version by its step's end: no poll started after it had not seen that yet (Sighting).
        assert (name, UPGRADE) in lab.ready and lab.ready[(name, UPGRADE)].before < runs[f"ainur-{name}-k3s"].end


class HeldUntilGated:
    """Each named Pi's kubelet kept from reporting after a boot (pis.py's `hold-kubelet-<name>`) until its join's gate on
    the Node's report from this boot (plans.netboot.roll.booted_gate) has read the Node and been answered, since `since`
    and the Pi's last boot: that answer is of the kubelet before the reboot, so the gate is then waiting, and the report
    comes after. A join that ends while its kubelet is held (a gate that does not wait) releases it too, as the engine
    moves on to the step after it (`decide`), so the test fails on what it saw rather than on a step's bound.
    `released`: what released each hold, "its gate" or "its join's end"."""

    def __init__(self, lab: Lab, names: list[str], since: float) -> None:
        self.lab, self.names, self.since = lab, names, since
        self.released: dict[str, str] = {}
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.watcher = threading.Thread(target=self.watch, daemon=True)

    def __enter__(self) -> HeldUntilGated:
        for name in self.names:
            self.hold(name).write_text("")
        self.watcher.start()
        return self

    def hold(self, name: str) -> Path:
        return self.lab.pis.root / ETCD_LAB / f"hold-kubelet-{name}"

    def release(self, name: str, why: str) -> None:
        with self.lock:
            if name not in self.released:
                self.released[name] = why
                self.hold(name).unlink(missing_ok=True)

    def gate_answered(self, name: str) -> bool:
        pi = self.lab.pis.pis[name]
        try:
            booted = (pi.root / "boot-id").stat().st_mtime  # written as the Pi boots, before its sshd starts
        except FileNotFoundError:  # a root being made by a reboot
            return False
        query = f" get node {name} -o jsonpath={{.status.nodeInfo.bootID}} "
        return any(t >= max(self.since, booted) and query in f" {args} " for t, _, args in pi.kubectl_calls())

    def watch(self) -> None:
        while not self.done.wait(0.1):
            for name in self.names:
                if name not in self.released and self.gate_answered(name):
                    self.release(name, "its gate")

    def decide(self, reg: Registration, done: Mapping[str, Step]) -> bool:
        """run_like_the_engine's hook, asked once the steps before `reg` ended: every step runs."""
        for name in self.names:
            if f"ainur-{name}-join" in done:
                self.release(name, "its join's end")
        return True

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.watcher.join(10)
        for name in self.names:
            self.release(name, "the test's end")
        # Every released kubelet's report in before the next test (whose steps would otherwise meet it).
        for name in self.names:
            reported(self.lab.pis.pis[name])


def test_a_roll_cut_anywhere_is_finished_by_the_next_up(lab: Lab, rolled: tuple[dict[str, Step], float]) -> None:
    """Back to the first image, with two cuts. eonwe's reboot step is cut once its reboot is scheduled (the engine's
    Ctrl-C, or its timeout): the step fails, the Pi reboots all the same, and nothing after it runs. The next `up` runs
    what failed or did not run: eonwe's reboot step finds it on the image; its join waits for its Node from after the
    reboot; its k3s step brings that root's older k3s to the stack's version. That `up` is cut in turn once ilmare's
    pointer moved, and ilmare loses power before its reboot step: it boots the new pointer's image by itself, and the
    third `up` finishes it."""
    if ("eonwe", UPGRADE) not in lab.ready:
        ok(run_like_the_engine(lab.pis, Graph.of(lab.sims["upgrade"]), changed(lab.sims["newer"], lab.sims["upgrade"])))
    sim = lab.sims["back"]
    image = lab.images["first"]
    todo = changed(lab.sims["upgrade"], sim)
    assert [s.name for s in todo] == [
        f"ainur-{n}-{s}" for n in NETBOOTED for s in ("drain", "boot", "reboot", "join", "k3s", "uncordon", "netboot-ready")
    ]
    since = time.time()
    # Back on a root each ran before: k3s starts at boot, the join finds its config as it left it and restarts nothing,
    # so only its gate on the Node's report from this boot (its boot id: plans.netboot.roll.booted_gate) holds it until
    # the kubelet reports. Each kubelet reports only once that gate has read the Node and been answered (HeldUntilGated):
    # the join is seen waiting at its gate, whatever the machine's load, and a join that does not wait ends first.
    with HeldUntilGated(lab, NETBOOTED, since) as held:
        cut = lab.pis.pis["eonwe"].state / "cut-after-reboot"
        cut.touch()
        first = run_like_the_engine(lab.pis, Graph.of(sim), todo, decide=held.decide)
        assert [n for n, s in first.items() if s.returncode == 0] == ["ainur-eonwe-drain", "ainur-eonwe-boot"]
        assert first["ainur-eonwe-reboot"].returncode != 0 and "closed by remote host" in first["ainur-eonwe-reboot"].stderr
        wait_until("eonwe's reboot", lambda: [r for r in lab.service.reboots if r[1] == "eonwe" and r[0] >= since], 60, lambda: lab.service.errors)
        cut.unlink()  # on the root eonwe left: a later reboot step there is not cut
        # The next `up`, cut once ilmare's pointer moved; then ilmare loses power.
        rest = [s for s in todo if first.get(s.name, Step("", 0, 0, 1, "", "")).returncode != 0]
        upto = [s for s in rest if not s.name.startswith("ainur-ilmare-") or s.name in ("ainur-ilmare-drain", "ainur-ilmare-boot")]
        second = run_like_the_engine(lab.pis, Graph.of(sim), upto, decide=held.decide)
        ok(second)
        assert f"iluvatar: eonwe already runs {image}" in second["ainur-eonwe-reboot"].stderr
        assert lab.pis.pis["eonwe"].version() == UPGRADE and f"k3s {FLASHED} -> {UPGRADE}" in second["ainur-eonwe-k3s"].stderr
        assert lab.pointer("ilmare") == image and lab.node("ilmare")["spec"].get("unschedulable") is True
        # The power cut once TFTP serves ilmare the pointer's image (pi-tftp follows the kubelet's projection within a few
        # seconds): before that it boots the image it ran, and its reboot step moves it as in the first roll.
        serial = lab.pis.pis["ilmare"].node.serial
        wait_until(
            f"TFTP to serve ilmare {image}",
            lambda: any(f"/pis/ilmare/{image}," in p.read_text() for p in lab.service.tftp.glob(f"*/{serial}/cmdline.txt")),
            60,
            lambda: (lab.service.tftp / "..").resolve(),
        )
        reboot_now(lab.pis, lab.service, "ilmare")
        third = run_like_the_engine(lab.pis, Graph.of(sim), [s for s in rest if s.name not in second], decide=held.decide)
        ok(third)
    assert list(third) == [f"ainur-ilmare-{s}" for s in ("reboot", "join", "k3s", "uncordon", "netboot-ready")]
    assert f"iluvatar: ilmare already runs {image}" in third["ainur-ilmare-reboot"].stderr
    # Each join waited at its gate with its kubelet held: its gate's answer, not the join's end, let the kubelet report.
    assert held.released == {"eonwe": "its gate", "ilmare": "its gate"}
    runs = {**first, **second, **third}
    assert roll_problems(lab, runs, image, NETBOOTED, since) == []
    for name in NETBOOTED:
        assert lab.pis.pis[name].root.name == name  # its first root, which it ran before
        assert "unschedulable" not in lab.node(name)["spec"]


def test_an_image_set_back_after_a_roll_failed_at_a_join_runs_that_pis_gates_and_uncordon(lab: Lab, first_up: dict[str, Step]) -> None:
    """A roll to the newer image fails at eonwe's join (its new root never became Ready: a deliberate break of that one
    step). Pulumi's state then holds eonwe's drain, pointer and reboot with the newer image, its join, k3s step and
    uncordon with the first (a failed step keeps its old inputs: `Engine`). The user sets the image back: that `up` runs
    eonwe's drain, pointer and reboot, and since its reboot step ran, its join, k3s step and uncordon too (their
    `triggers`: the reboot step's run mark), so eonwe is back on its first root, Ready from this boot and uncordoned;
    ilmare, whose steps never ran, is left alone; the preview shows each of them; a second `up` runs nothing."""
    engine = Engine()
    # Pulumi's state once an `up` of the first image (at the upgraded k3s) succeeded: every step run (each is safe to
    # run again), what each printed stored.
    ok(engine.up(lab.pis, lab.sims["back"]))
    assert engine.preview(lab.sims["back"]) == [] and engine.up(lab.pis, lab.sims["back"]) == {}
    since = time.time()
    broken = "echo \"iluvatar (the test's break): eonwe's new root never became Ready\" >&2; exit 1"
    failed = engine.up(lab.pis, lab.sims["upgrade"], scripts={"ainur-eonwe-join": broken})
    assert {n: s.returncode for n, s in failed.items()} == {
        "ainur-eonwe-drain": 0,
        "ainur-eonwe-boot": 0,
        "ainur-eonwe-reboot": 0,
        "ainur-eonwe-join": 1,
    }, {n: s.stderr[-2000:] for n, s in failed.items()}
    wait_until("eonwe's reboot", lambda: [r for r in lab.service.reboots if r[1] == "eonwe" and r[0] >= since], 60, lambda: lab.service.errors)
    assert [i for t, n, i in lab.service.reboots if n == "eonwe" and t >= since] == [lab.images["newer"]]
    assert lab.node("eonwe")["spec"].get("unschedulable") is True
    # What the failed `up`'s log tells the user (review 41-2 L1): the key to set back, and to which image.
    assert f"set ainur.piImage back to the image it ran, {lab.images['first']} (" in failed["ainur-eonwe-reboot"].stderr
    # The image set back.
    image = lab.images["first"]
    # (And its netboot gate after its k3s step and uncordon: the household's DHCP and DNS back before the next Pi.)
    again = [f"ainur-eonwe-{s}" for s in ("drain", "boot", "reboot", "join", "k3s", "uncordon", "netboot-ready")]
    assert engine.preview(lab.sims["back"]) == again
    since = time.time()
    # Back on its first root, where k3s starts at boot: its kubelet reports only once the join's gate on the Node's
    # report from this boot has read the Node (HeldUntilGated), so the gate, not the machine's load, orders the two.
    with HeldUntilGated(lab, ["eonwe"], since) as held:
        back = engine.up(lab.pis, lab.sims["back"], told=held.decide)
    ok(back)
    assert held.released == {"eonwe": "its gate"}
    assert list(back) == again
    assert f"iluvatar: eonwe runs {lab.images['newer']}; it reboots into {image}" in back["ainur-eonwe-reboot"].stderr
    assert roll_problems(lab, back, image, ["eonwe"], since) == []
    assert "uncordoned" in back["ainur-eonwe-uncordon"].stderr
    node = lab.node("eonwe")
    assert "unschedulable" not in node["spec"] and roll.CORDONED not in node["metadata"].get("annotations", {})
    assert lab.pis.pis["eonwe"].root.name == "eonwe" and lab.pointer("eonwe") == image
    assert [r for r in lab.service.reboots if r[1] == "ilmare" and r[0] >= since] == []
    assert engine.preview(lab.sims["back"]) == [] and engine.up(lab.pis, lab.sims["back"]) == {}


def test_a_pi_the_ainur_do_not_serve_its_new_image_is_not_rebooted_and_its_step_fails_within_its_bound(lab: Lab, first_up: dict[str, Step]) -> None:
    """Its pointer names an image its netboot Pi has not built (the builder's download failed): the reboot step waits
    for TFTP to serve the Pi that image's cmdline.txt, within its bound (the program's script, 2 s for its 300 s), then
    fails naming what it waited for and what TFTP serves; the Pi is not rebooted."""
    assert lab.pis.stack.ainur is not None
    pub = lab.pis.stack.ainur.ssh_authorized_keys[0]
    stack = load_stack_file(
        write_stack(
            lab.pis.root, stack_doc(pub, FLASHED, {**NEWER, "sha256": hashlib.sha256(b"an image the Ainur never built").hexdigest()}), stack="unbuilt"
        )
    )
    eonwe = next(n for n in stack.nodes if n.name == "eonwe")
    script = roll.reboot_script(stack, eonwe, tftp_timeout=2)
    assert script == roll.reboot_script(stack, eonwe).replace(f'wait_for {roll.TFTP_SECONDS} "the Ainur to serve', 'wait_for 2 "the Ainur to serve')
    step = next(s for s in steps_of(lab.sims["first"]) if s.name == "ainur-eonwe-reboot")
    reboots = len(lab.service.reboots)
    since = time.time()
    # Bounded by the script's own 2 s, which its line below names (waited 2 s), not by how long the run took (that
    # measured the loaded machine). It gives up within seconds; 120 s stops only a wait that never gives up, which then
    # fails the test here rather than holding it for the session's HUNG_SECONDS.
    got = lab.pis.ssh(connection_of(lab.pis, step), script, None, timeout=120)
    assert got.returncode == 1, got.stderr
    assert (
        f"iluvatar: eonwe: waited 2 s for the Ainur to serve eonwe the boot files of {image_id(stack)} over TFTP (netboot-cache's pi-tftp "
        f"follows its pi-boot-eonwe ConfigMap within about a minute); still: TFTP serves it nfsroot=192.168.0.14:/pis/eonwe/"
    ) in got.stderr
    # No reboot asked of systemd (the stand-in systemd-run logs the ask and leaves the due time, which the lab reboots the
    # Pi at), so none is to come.
    pi = lab.pis.pis["eonwe"]
    assert [a for t, a in pi.log() if t >= since and a.startswith("systemd-run")] == [] and not (pi.state / "reboot").exists()
    assert len(lab.service.reboots) == reboots


def test_a_machine_that_takes_a_netbooted_maias_address_is_refused_its_join_and_its_token(lab: Lab, first_up: dict[str, Step]) -> None:
    """Review 41-2 M4: eonwe's host key, read by its host-key step in the first `up`, is pinned in its join's connection;
    a machine answering at eonwe's address with another key (here eonwe's sshd given a new key: an impostor while the
    Pi reboots) is refused by the SSH handshake (OpenSSH's strict check of that one key, as pulumi-command's
    FixedHostKey refuses it), so the join's stdin, its k3s config with the token, is never sent."""
    assert first_up["ainur-eonwe-host-key"].stdout.startswith("ssh-ed25519 ")
    pi = lab.pis.pis["eonwe"]
    sim = lab.sims["first"]
    join = next(s for s in steps_of(sim) if s.name == "ainur-eonwe-join")
    kept = {name: (pi.root / name).read_bytes() for name in ("host_key", "host_key.pub")}
    try:
        for name in kept:
            (pi.root / name).unlink()
        lab.pis.boot("eonwe", pi.image)  # sshd on a key of its own
        assert (pi.root / "host_key.pub").read_bytes() != kept["host_key.pub"]
        got = run_like_the_engine(lab.pis, Graph.of(sim), [join])["ainur-eonwe-join"]
        assert got.returncode == 255 and "Host key verification failed" in got.stderr, got.stderr
        # The impostor's sshd (its log: sshd -e) never authenticated a session, so no command and no stdin (the config,
        # with the token) reached it.
        assert "Accepted publickey" not in (pi.root / "sshd.log").read_text()
    finally:
        for name, data in kept.items():
            (pi.root / name).write_bytes(data)
        (pi.root / "host_key").chmod(0o600)  # sshd refuses a private host key others can read
        lab.pis.boot("eonwe", pi.image)
    # The Pi itself, with the key it had, is reached as before (and its sshd logs the session the impostor's never saw).
    assert run_like_the_engine(lab.pis, Graph.of(sim), [join])["ainur-eonwe-join"].returncode == 0
    assert "Accepted publickey" in (pi.root / "sshd.log").read_text()


def test_a_report_written_over_by_an_older_status_is_put_back_and_the_join_sees_this_boot(lab: Lab, first_up: dict[str, Step]) -> None:
    """A Node's status can be written over by one from before the kubelet's report: kwok playing a stage job with the
    copy of the Node it rendered the job from (the report of the boot before, Ready False), or the last post of the boot
    before's kubelet landing late. The kubelet patches its status again when the Node's differs, every 10 s, so the join's
    gate on the report of this boot (plans.netboot.roll.booted_gate) sees it within that. Here the older status is
    written by the test, at once, as kwok's would be: a stand-in kubelet that reported only once left the join waiting
    out its 600 s."""
    pi = lab.pis.pis["eonwe"]
    boot = (pi.root / "boot-id").read_text().strip()
    node = lab.node("eonwe")
    version = node["status"]["nodeInfo"]["kubeletVersion"]
    assert node["status"]["nodeInfo"]["bootID"] == boot
    earlier = str(uuid.uuid4())
    since = time.time()
    lab.pis.cluster.client.merge_patch(node, {"status": {"nodeInfo": {"bootID": earlier}}}, subresource="status")
    sim = lab.sims["first"]
    join = next(s for s in steps_of(sim) if s.name == "ainur-eonwe-join")
    got = run_like_the_engine(lab.pis, Graph.of(sim), [join])["ainur-eonwe-join"]
    assert got.returncode == 0, got.stderr
    assert lab.node("eonwe")["status"]["nodeInfo"]["bootID"] == boot
    assert [what for t, what in pi.log() if t >= since and what.startswith("kubelet-kept ")] == [
        f"kubelet-kept {version} (the Node said boot {earlier}, {version})"
    ]
