"""Bring-up and day-2 steps: what `pulumi up` runs between the providers' resources, and how long each may wait.

The providers cannot sequence a homelab on their own: pulumi-kubernetes checks its cluster once,
when it is configured, and refuses every create of the run if it did not answer then; Talos
bootstraps any control plane whose own etcd data directory is empty, beside a cluster the others
run (`talos_bootstrap`); custom resources are refused until their operator
has registered the CRD or their webhook answers. So the program puts an explicit step in between,
a `command.local.Command` that runs the upgrader (`upgrader/`, a Go program on Talos's machinery
and client-go, built on first need) and returns only when what comes next can succeed.

Every step here is pure data (the command line, its bound, what it waits for); `components.steps`
turns one into a resource. Secrets never appear on a command line: the component hands them to the
step on stdin. Every step is safe to run again: an interrupted `pulumi up` is finished by the next.

Bounds, and why (the figures behind them are in docs/bring-up.md):
- a machine's apply waits up to APPLY_TIMEOUT for it to answer: at the first `pulumi up` a person
  powers the Arda machines on when the Ainur serve (their own PXE boot then takes 2 to 3 minutes:
  firmware POST 30-90 s, DHCP and TFTP under 5 s, kernel and initramfs over HTTP from a Pi under
  5 s, Talos to maintenance mode 30-60 s); on a running cluster it bounds one node's reboot or
  upgrade (drain up to DRAIN_TIMEOUT, installer pull 1-5 minutes, reboot 1-3 minutes);
- the bootstrap waits for the first control plane to finish installing (the installer image, about
  300 MB from Image Factory, then a reboot from disk): 5 to 15 minutes on a home connection; and for
  every other control plane to answer (they install in parallel);
- the API gate waits for etcd to form on every control plane (each installs in parallel) and the VIP;
- the CRD, webhook and storage gates wait for an operator's pods to pull their images and start.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from plans import talos
from plans.timeouts import engine_timeout
from stacks import chart_values, day2
from stacks.day2 import DeployedArda
from stacks.model import Node, StackConfig

# Pulumi runs local commands in the project folder; Pulumi.yaml names `.venv` as the program's
# virtualenv, so this path is the same on every machine (no absolute path enters the state).
UPGRADER = (".venv/bin/iluvatar", "upgrader")

APPLY_TIMEOUT = "45m"
DRAIN_TIMEOUT = "10m"
BOOTSTRAP_TIMEOUT = "30m"
API_GATE_TIMEOUT = "30m"
NODES_GATE_TIMEOUT = "20m"
OPERATOR_GATE_TIMEOUT = "10m"
AINUR_API_TIMEOUT = "10m"
STORAGE_GATE_TIMEOUT = "30m"


@dataclass(frozen=True)
class Step:
    """One command `pulumi up` runs: its arguments after the upgrader, its bound, what it waits for."""

    args: tuple[str, ...]
    timeout: str
    waits_for: str
    # What the step's update runs, when not `args` (its create's): a change re-runs it as an update.
    update_args: tuple[str, ...] | None = None

    @property
    def command(self) -> str:
        return shlex.join([*UPGRADER, *self.args, "--timeout", self.timeout])

    @property
    def update_command(self) -> str:
        return shlex.join([*UPGRADER, *(self.args if self.update_args is None else self.update_args), "--timeout", self.timeout])

    @property
    def engine_timeout(self) -> str:
        return engine_timeout(self.timeout)


def node_arg(node: Node) -> str:
    return f"{node.name}={node.ip}"


def control_planes(stack: StackConfig) -> tuple[Node, ...]:
    return stack.by_role("valinor")


def rollout_order(stack: StackConfig) -> list[Node]:
    """The order Arda's machines are applied and rolled in: control planes, then workers, each as listed.

    Control planes go first so API servers run a new Kubernetes version before any kubelet does (the
    order `kubeadm upgrade` documents); no control plane is special once etcd is bootstrapped.
    """
    return [*control_planes(stack), *stack.by_role("istari")]


# Where the first control plane's step saves an etcd snapshot before a rollout touches anything, in the
# project folder (.gitignore'd). It holds every Kubernetes Secret in clear: mode 0600; keep it safe.
ETCD_SNAPSHOT = ".iluvatar/snapshots/arda-etcd-before-rollout.db"
# Where a run whose chain starts before the machines' own steps (a path's rolls, a Kubernetes upgrade) saves its etcd
# snapshot, first of all: named by the versions that ran before it, so the machines' own steps'
# ETCD_SNAPSHOT, taken after those steps, never overwrites the state from before them.
ETCD_SNAPSHOT_BEFORE = ".iluvatar/snapshots/arda-etcd-before-talos-{talos}-kubernetes-{kubernetes}.db"
ETCD_SNAPSHOT_TIMEOUT = "10m"
# Argo CD's controller, scaled to 0 while a machine is drained so it does not sync against a cluster
# losing a node (the upgrader restores its replicas, and notes them on it meanwhile); preview refuses the chart values
# that would move it (stacks.chart_values).
ARGOCD_CONTROLLER = chart_values.ARGOCD_CONTROLLER_NAME


def talos_apply(stack: StackConfig, node: Node) -> Step:
    """Hand one machine its config, and on a running cluster roll the change through it (stdin: talosconfig, machineConfig,
    and for a Ceph host the hooks around its reboot, plans.storage.noout_jobs)."""
    extra: list[str] = []
    if node.name == control_planes(stack)[0].name:
        extra += ["--etcd-snapshot", ETCD_SNAPSHOT]
    if stack.gitops is not None:
        extra += ["--pause", ARGOCD_CONTROLLER]
    return Step(
        ("apply", "--node", node_arg(node), "--role", talos.machine_type(node), *extra),
        APPLY_TIMEOUT,
        f"{node.name} ({node.ip}) to take its config: from maintenance mode it installs, a running node is "
        "drained, staged and rebooted only when its change needs a reboot, and upgraded when its Talos version changes",
    )


def etcd_snapshot(name: str, ip: str, talos: str, kubernetes: str) -> Step:
    """The first step of a chain that changes the cluster before the machines' own steps: an etcd snapshot from the first
    running control plane (`name` and `ip` as the last deployment left them), to a file named by what ran then (stdin:
    talosconfig)."""
    out = ETCD_SNAPSHOT_BEFORE.format(talos=talos, kubernetes=kubernetes)
    # --keep: written once. A later attempt (a resume, a path given up and tried again: the recorded versions, so the
    # name, are the same) keeps the first attempt's file, the state from before anything changed.
    return Step(
        ("etcd-snapshot", "--node", f"{name}={ip}", "--out", out, "--keep"),
        ETCD_SNAPSHOT_TIMEOUT,
        f"an etcd snapshot from {name} ({ip}) to {out} (an earlier attempt's file kept), before the path's first step changes anything",
    )


def talos_roll(stack: StackConfig, node: Node, version: str) -> Step:
    """One machine's roll of a path across Talos minors (stacks.releases.talos_path): upgraded to `version` from its
    board's schematic's installer (plans.talos.installer_image), its config left as it runs, behind the same etcd,
    drain and health checks as its own step (stdin: talosconfig, machineConfig, and a Ceph host's hooks). A machine at
    that version or a newer one is only checked healthy."""
    extra = ["--pause", ARGOCD_CONTROLLER] if stack.gitops is not None else []
    image = talos.installer_image(node.board, version, talos.kernel_args(stack, node.board), talos.secureboot(stack, node.board))
    return Step(
        ("apply", "--node", node_arg(node), "--role", talos.machine_type(node), "--installer", image, *extra),
        APPLY_TIMEOUT,
        f"{node.name} ({node.ip}) to run Talos {version}: drained, upgraded and rebooted, then healthy, before the next machine",
    )


RESET_TIMEOUT = "20m"


def talos_reset(node: Node) -> Step:
    """When a machine leaves the inventory (or the stack is destroyed): reset it, the last control plane without etcd's goodbye.

    `--mode auto` decides on the machine: a graceful reset (cordon, drain, leave etcd, wipe STATE and
    EPHEMERAL, reboot) unless it is the last etcd member, which cannot leave; then a plain one. It runs
    as the apply step's delete, so `pulumi destroy` resets workers first and the first control plane
    last (the reverse of the apply chain). A renamed machine keeps its step (an alias): never reset.
    """
    return Step(("reset", "--node", node_arg(node), "--mode", "auto"), RESET_TIMEOUT, f"{node.name} ({node.ip}) to reset")


PROBE_DEADLINE = "3s"


def probe_command(stack: StackConfig) -> str:
    """At `pulumi preview` and `pulumi up`, how each Arda machine answers: `running`, `maintenance` or `unreachable`.

    It never fails and takes at most PROBE_DEADLINE per machine, all at once. A machine found in
    maintenance mode was reset or reflashed since its config was applied: the program raises its
    generation, which re-runs its apply step and hands it its config again.
    """
    nodes = [arg for node in rollout_order(stack) for arg in ("--node", node_arg(node))]
    return shlex.join([*UPGRADER, "probe", *nodes, "--deadline", PROBE_DEADLINE])


def talos_bootstrap(stack: StackConfig) -> Step:
    """Bootstrap etcd on the first valinor, only when no etcd cluster can exist (stdin: talosconfig, whose endpoints are
    every valinor).

    Talos bootstraps any control plane whose own data directory is empty, a reflashed one still pulling etcd's image
    or joining included, beside the cluster the others run. So the upgrader asks every valinor first, right before
    each Bootstrap call: a member list that answers, or etcd data anywhere, is a cluster, and success without a
    bootstrap; a valinor that does not answer is waited for (within the bound), never taken for empty. The create
    bootstraps once every valinor is in maintenance mode or waits with an empty data directory (a new cluster). The
    update (the step's inputs changed: a valinor added, removed or moved, the first one replaced, the talosconfig
    renewed) runs with `--no-new-cluster`: this stack bootstrapped etcd before, so every valinor waiting means its
    data went with their disks, which only a restore brings back (docs/day2.md): it fails and says so.
    """
    first = control_planes(stack)[0]
    args = ("bootstrap", "--node", node_arg(first))
    return Step(args, BOOTSTRAP_TIMEOUT, f"{first.name} ({first.ip}) to install and bootstrap etcd", update_args=(*args, "--no-new-cluster"))


def _cluster_args(stack: StackConfig) -> tuple[str, ...]:
    out: list[str] = []
    for node in control_planes(stack):
        out += ["--control-plane", node_arg(node)]
    for node in stack.by_role("istari"):
        out += ["--worker", node_arg(node)]
    return (*out, "--endpoint", talos.cluster_endpoint(stack))


KUBERNETES_PREFLIGHT_TIMEOUT = "5m"


def kubernetes_preflight(stack: StackConfig, version: str | None = None) -> Step:
    """Before a Kubernetes upgrade's first machine: the version skew and the APIs the target removes
    that something still asks for (stdin: the talosconfig, which fetches the admin kubeconfig). `version`: a path's
    Kubernetes step on the way (stacks.releases.talos_path), else the stack's."""
    to = version or stack.arda.kubernetes_version
    # A step on the way, run again once the cluster is past it (its stdin changed), is done, not a downgrade (H2).
    on_the_way = ("--on-the-way",) if version not in (None, stack.arda.kubernetes_version) else ()
    return Step(
        ("kubernetes-preflight", "--to", to, *on_the_way),
        KUBERNETES_PREFLIGHT_TIMEOUT,
        f"Arda's API servers to allow Kubernetes {to} (version skew, removed APIs still requested)",
    )


# The Kubernetes upgrade's bound, per machine it goes through: a control plane pulls three images (1 to 5 minutes each on a
# home connection) and restarts three components (each waited for until the kubelet's next poll, up to 20 s, runs it, and it
# has run 30 s: the upgrader's --pods-stable), a worker pulls and restarts its kubelet; a machine that does not answer takes
# its 5 minutes (the upgrader's --reach-timeout) before it is left to its own apply.
KUBERNETES_UPGRADE_MINUTES_PER_MACHINE = 15


def running_machines(stack: StackConfig, deployed: DeployedArda, renamed: Mapping[str, str]) -> list[tuple[Node, str, str]]:
    """The machines the last deployment installed, in rollout order, each with the name its Node has in Kubernetes and the
    address it answers at until its own apply moves it (both as that deployment left them; `renamed`: former names)."""
    out = []
    for node in rollout_order(stack):
        former = renamed.get(node.name)
        if day2.installed(node, deployed, former):
            then = former or node.name
            out.append((node, then, str(deployed.nodes[then].get("ip") or node.ip)))
    return out


def kubernetes_upgrade(stack: StackConfig, running: Sequence[tuple[str, str, bool]], version: str | None = None) -> Step:
    """Between the preflight and the first machine's apply: the new Kubernetes version rolled component by component, as
    `talosctl upgrade-k8s` rolls it (each control plane's API server, then the controller-managers, then the schedulers, then
    every kubelet, control planes first), each change waited for before the next. `running` are the machines the last
    deployment left running, (the name their Node has, where they answer, control plane or not), in rollout order (stdin:
    the talosconfig and each machine's new config, by that name, whose images it puts in the running configs). `version`:
    a path's Kubernetes step on the way (its configs generated at that version), else the stack's."""
    to = version or stack.arda.kubernetes_version
    args: list[str] = ["kubernetes-upgrade", "--to", to]
    for name, ip, control_plane in running:
        args += ["--control-plane" if control_plane else "--worker", f"{name}={ip}"]
    cps = [name for name, _, control_plane in running if control_plane]
    return Step(
        tuple(args),
        f"{KUBERNETES_UPGRADE_MINUTES_PER_MACHINE * max(len(running), 1)}m",
        f"Kubernetes {to} component by component: kube-apiserver, then kube-controller-manager, then "
        f"kube-scheduler, each on {', '.join(cps)} one at a time, then the kubelets of {', '.join(name for name, _, _ in running)}; "
        "each change running before the next (every control plane pod it restarts up 30 s, the machine's API server ready)",
    )


def arda_api_gate(stack: StackConfig) -> Step:
    """Before Arda's Kubernetes provider: etcd on every control plane, their API servers, and the VIP answering."""
    return Step(
        ("health", *_cluster_args(stack), "--stage", "api"),
        API_GATE_TIMEOUT,
        f"etcd on {len(control_planes(stack))} control plane(s), their API servers, and the API at {talos.cluster_endpoint(stack)}",
    )


def arda_nodes_gate(stack: StackConfig) -> Step:
    """After the CNI: every Arda machine Ready, before anything that schedules pods on them."""
    return Step(
        ("health", *_cluster_args(stack), "--stage", "nodes"),
        NODES_GATE_TIMEOUT,
        f"all {len(stack.arda_nodes)} Arda machines Ready in Kubernetes",
    )


def kube_api_gate(cluster: str, endpoint: str) -> Step:
    """Before a k3s cluster's Kubernetes provider: its API answering through its VIP (stdin: kubeconfig)."""
    return Step(("wait-kube", "--api"), AINUR_API_TIMEOUT, f"the {cluster} API at {endpoint}")


def admits_gate(what: str, kinds: Sequence[str]) -> Step:
    """Before custom resources: the API server admits them, a server-side dry run of each (stdin: kubeconfig, manifests).

    A dry run fails with "no matches for kind" until the CRD is established and with "failed calling
    webhook" until the webhook answers, so one check covers an operator's CRDs and a webhook alike.
    """
    return Step(("wait-kube", "--admits"), OPERATOR_GATE_TIMEOUT, f"the API server to admit {', '.join(sorted(set(kinds)))} ({what})")


def storage_class_gate(name: str) -> Step:
    """Before a claim on a StorageClass an operator provides: the class exists and its CSI driver runs (stdin: kubeconfig)."""
    return Step(("wait-kube", "--storage-class", name), STORAGE_GATE_TIMEOUT, f"the StorageClass {name} and its CSI driver")
